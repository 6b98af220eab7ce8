//! What a plugin declares about itself, and what a scorer returns.

use crate::bindings::types;

/// The kind of a declared input or output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// true / false.
    Bool,
    /// A whole number.
    Int,
    /// A number.
    Float,
    /// A string.
    Text,
    /// A list of numbers.
    Floats,
}

/// One declared input or output. Build it with [`float`], [`int`], [`boolean`],
/// [`text`] or [`floats`] and refine it with [`FieldSpec::required`] and [`FieldSpec::doc`].
#[derive(Debug, Clone, PartialEq)]
pub struct FieldSpec {
    /// The name callers use in JSON.
    pub name: String,
    /// Its kind.
    pub kind: Kind,
    /// Whether the host rejects a request without it (inputs only).
    pub required: bool,
    /// One line for humans.
    pub doc: String,
}

impl FieldSpec {
    /// A field of `kind` named `name`, optional and undocumented.
    pub fn new(name: impl Into<String>, kind: Kind) -> Self {
        Self { name: name.into(), kind, required: false, doc: String::new() }
    }

    /// Marks the input required: the host rejects a request where it is null or absent.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// Sets the one-line description.
    pub fn doc(mut self, doc: impl Into<String>) -> Self {
        self.doc = doc.into();
        self
    }
}

/// A float field named `name`.
pub fn float(name: impl Into<String>) -> FieldSpec {
    FieldSpec::new(name, Kind::Float)
}
/// An int field named `name`.
pub fn int(name: impl Into<String>) -> FieldSpec {
    FieldSpec::new(name, Kind::Int)
}
/// A boolean field named `name`.
pub fn boolean(name: impl Into<String>) -> FieldSpec {
    FieldSpec::new(name, Kind::Bool)
}
/// A text field named `name`.
pub fn text(name: impl Into<String>) -> FieldSpec {
    FieldSpec::new(name, Kind::Text)
}
/// A list-of-floats field named `name`.
pub fn floats(name: impl Into<String>) -> FieldSpec {
    FieldSpec::new(name, Kind::Floats)
}

/// What a plugin says about itself; returned by `Scorer::metadata` / `Extractor::metadata`.
///
/// Start from [`Metadata::default`] to take the name and version from the
/// plugin crate's `Cargo.toml`: the export macro fills an empty `name` and an
/// empty `version` with the crate's, and the host checks them against
/// `plugin.toml` as always. [`Metadata::new`] sets them explicitly instead.
/// (In native tests no export macro runs, so they stay empty there.)
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata {
    /// Must equal the manifest's `name`; if empty, the export macro fills in
    /// the crate's package name (`CARGO_PKG_NAME`).
    pub name: String,
    /// Must equal the manifest's `version`; if empty, the export macro fills
    /// in the crate's version (`CARGO_PKG_VERSION`).
    pub version: String,
    /// One paragraph for the plugin catalogue.
    pub description: String,
    /// Declared inputs, in order.
    pub inputs: Vec<FieldSpec>,
    /// Declared outputs, in order.
    pub outputs: Vec<FieldSpec>,
    /// Whether undeclared request fields are passed by name (see [`crate::Features::extra`]).
    pub open_inputs: bool,
}

impl Metadata {
    /// Metadata for plugin `name` at `version` with nothing declared yet.
    ///
    /// The name and version are kept as given. An empty one is filled from
    /// the plugin crate's `Cargo.toml` by the export macro, so
    /// `Metadata::default()` (both empty) names the plugin after its crate;
    /// either way the host checks them against `plugin.toml`.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            description: String::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            open_inputs: false,
        }
    }

    /// Sets the description.
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = text.into();
        self
    }

    /// Declares one more input.
    pub fn input(mut self, spec: FieldSpec) -> Self {
        self.inputs.push(spec);
        self
    }

    /// Declares one more output.
    pub fn output(mut self, spec: FieldSpec) -> Self {
        self.outputs.push(spec);
        self
    }

    /// Accepts undeclared inputs by name (the slower path; see the WIT docs).
    pub fn open_inputs(mut self) -> Self {
        self.open_inputs = true;
        self
    }
}

impl From<Kind> for types::ValueKind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::Bool => types::ValueKind::Boolean,
            Kind::Int => types::ValueKind::Int,
            Kind::Float => types::ValueKind::Float,
            Kind::Text => types::ValueKind::Text,
            Kind::Floats => types::ValueKind::Floats,
        }
    }
}

impl From<&FieldSpec> for types::FieldSpec {
    fn from(f: &FieldSpec) -> Self {
        types::FieldSpec {
            name: f.name.clone(),
            kind: f.kind.into(),
            required: f.required,
            doc: f.doc.clone(),
        }
    }
}

impl From<&Metadata> for types::Metadata {
    fn from(m: &Metadata) -> Self {
        types::Metadata {
            name: m.name.clone(),
            version: m.version.clone(),
            description: m.description.clone(),
            inputs: m.inputs.iter().map(Into::into).collect(),
            outputs: m.outputs.iter().map(Into::into).collect(),
            open_inputs: m.open_inputs,
        }
    }
}

/// One contribution to a score.
#[derive(Debug, Clone, PartialEq)]
pub struct Reason {
    /// Stable machine-readable code.
    pub code: String,
    /// Signed contribution.
    pub weight: f64,
}

/// What a scorer returns for one row.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// The score; must be finite (the host rejects NaN and infinities as a plugin fault).
    pub value: f64,
    /// The main contributions, largest magnitude first.
    pub reasons: Vec<Reason>,
}

impl Score {
    /// A score without reasons.
    pub fn new(value: f64) -> Self {
        Self { value, reasons: Vec::new() }
    }

    /// Adds a reason code.
    pub fn reason(mut self, code: impl Into<String>, weight: f64) -> Self {
        self.reasons.push(Reason { code: code.into(), weight });
        self
    }
}

impl From<Score> for types::ScoreResult {
    fn from(s: Score) -> Self {
        types::ScoreResult {
            value: s.value,
            reasons: s
                .reasons
                .into_iter()
                .map(|r| types::Reason { code: r.code, weight: r.weight })
                .collect(),
        }
    }
}
