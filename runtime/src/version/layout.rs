//! Names ↔ positions: JSON features in, positional rows to the guest, and back.
//!
//! A [`Layout`] is computed once per plugin version from its declared inputs (or
//! outputs). Per request the host walks the JSON object once, looks each key up
//! in a hash map and writes the value into its slot, so no name crosses into
//! the guest (see the `row` record in the WIT for why).

use rustc_hash::FxHashMap;
use serde::Deserialize;
use serde_json::{Map, Number, Value as Json};

use crate::sandbox::bindings::frames::Frame;
use crate::sandbox::bindings::types::{Field, FieldSpec, Row, Value, ValueKind};
use crate::sandbox::error::{CallError, InvalidValue};

/// `invalid_input` naming undeclared fields (the first 20): "undeclared
/// field(s) `a`, `b`: {who} it/them{then}". For a plugin's own inputs and for
/// a pipeline's event.
pub fn undeclared_error(names: &[&str], who: &str, then: &str) -> CallError {
    let listed: Vec<String> = names.iter().take(20).map(|n| format!("`{n}`")).collect();
    let one = names.len() == 1;
    CallError::invalid_input(format!(
        "undeclared field{} {}: {who} {}{then}",
        if one { "" } else { "s" },
        listed.join(", "),
        if one { "it" } else { "them" },
    ))
}

/// Largest integer magnitude an `int` input may have (exact in an f64 slot).
pub const MAX_EXACT_INT: i64 = 1 << 53;
/// Longest text output a plugin may return, in bytes.
pub const MAX_OUTPUT_TEXT_BYTES: usize = 64 << 10;
/// Longest floats output a plugin may return, in elements.
pub const MAX_OUTPUT_FLOATS: usize = 64 << 10;
/// Most fields a plugin may declare as inputs, or as outputs. A declaration
/// sizes every row the host builds for it (one slot per field), so it is what
/// a request costs in host memory; see also [`MAX_REQUEST_SLOTS`].
pub const MAX_DECLARED_FIELDS: usize = 4096;
/// Longest declared field name, in bytes.
pub const MAX_FIELD_NAME_BYTES: usize = 256;
/// Most slots (rows × declared fields) the host lays out for one request:
/// 2^20, 8 MiB of numbers. Past it a batch is refused before anything is
/// allocated, naming the numbers.
pub const MAX_REQUEST_SLOTS: usize = 1 << 20;

#[derive(Debug, Clone)]
struct Slot {
    kind: ValueKind,
    index: usize,
}

/// The name → slot map of one list of declared fields.
#[derive(Debug, Clone)]
pub struct Layout {
    specs: Vec<FieldSpec>,
    /// Name → index into `specs` and `slots`. Fx-hashed: names come from the
    /// plugin's own declaration, and this lookup runs once per feature per
    /// request.
    index: FxHashMap<String, usize>,
    /// The slot of each of `specs`, in order (no lookup when walking specs).
    slots: Vec<Slot>,
    /// Indices into `specs` of the required fields, checked per row.
    required: Vec<usize>,
    numbers: usize,
    texts: usize,
    vectors: usize,
    open: bool,
    /// What [`Self::row`] does with an undeclared field of closed inputs.
    undeclared: Undeclared,
    /// Undeclared fields passed over silently (`[inputs] ignore`).
    ignored: Vec<String>,
}

impl Layout {
    /// Lays out `specs`; `open` passes undeclared input fields by name. Fails on a
    /// duplicate name (a plugin bug, reported at load).
    pub fn new(specs: &[FieldSpec], open: bool) -> Result<Self, LayoutError> {
        if specs.len() > MAX_DECLARED_FIELDS {
            return Err(LayoutError::TooManyFields { declared: specs.len() });
        }
        if let Some(long) = specs.iter().find(|s| s.name.len() > MAX_FIELD_NAME_BYTES) {
            return Err(LayoutError::NameTooLong {
                bytes: long.name.len(),
                start: long.name.chars().take(32).collect(),
            });
        }
        let mut layout = Layout {
            specs: specs.to_vec(),
            index: FxHashMap::with_capacity_and_hasher(specs.len(), Default::default()),
            slots: Vec::with_capacity(specs.len()),
            required: Vec::new(),
            numbers: 0,
            texts: 0,
            vectors: 0,
            open,
            undeclared: Undeclared::Refuse,
            ignored: Vec::new(),
        };
        for (i, spec) in specs.iter().enumerate() {
            let counter = match spec.kind {
                ValueKind::Boolean | ValueKind::Int | ValueKind::Float => &mut layout.numbers,
                ValueKind::Text => &mut layout.texts,
                ValueKind::Floats => &mut layout.vectors,
            };
            layout.slots.push(Slot { kind: spec.kind, index: *counter });
            *counter += 1;
            if spec.required {
                layout.required.push(i);
            }
            if layout.index.insert(spec.name.clone(), i).is_some() {
                return Err(LayoutError::DeclaredTwice { name: spec.name.clone() });
            }
        }
        Ok(layout)
    }

    /// These inputs with the manifest's policy for undeclared fields (the
    /// default refuses them; `ignore` lists those passed over silently).
    pub fn with_policy(mut self, policy: &InputPolicy) -> Self {
        self.undeclared = policy.undeclared;
        self.ignored = policy.ignore.clone();
        self
    }

    /// Refuses a request of `rows` rows whose layout would take more than
    /// [`MAX_REQUEST_SLOTS`] slots, before anything is allocated for it.
    pub fn check_request(&self, rows: usize) -> Result<(), CallError> {
        let width = self.specs.len().max(1);
        if rows.saturating_mul(width) > MAX_REQUEST_SLOTS {
            return Err(CallError::invalid_input(format!(
                "{rows} rows × {width} declared inputs = {} slots, over the limit of {MAX_REQUEST_SLOTS} \
                 per request: send fewer rows per batch",
                rows.saturating_mul(width)
            )));
        }
        Ok(())
    }

    /// The fields of `obj` these inputs do not declare, in `obj`'s order:
    /// what a plugin whose policy is [`Undeclared::Report`] reports. Empty
    /// for open inputs.
    pub fn undeclared<'a>(&self, obj: &'a Map<String, Json>) -> Vec<&'a str> {
        if self.open {
            return Vec::new();
        }
        obj.keys().filter(|k| !self.accepts(k)).map(String::as_str).collect()
    }

    /// Whether `name` is a declared field.
    pub fn declares(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// Whether a call may carry `name`: declared, or ignored by the policy.
    pub fn accepts(&self, name: &str) -> bool {
        self.open || self.declares(name) || self.ignored.iter().any(|i| i == name)
    }

    /// How many slots a row has of each kind: (numbers, texts, vectors).
    pub fn widths(&self) -> (usize, usize, usize) {
        (self.numbers, self.texts, self.vectors)
    }

    /// The declared fields, in order.
    pub fn specs(&self) -> &[FieldSpec] {
        &self.specs
    }

    /// Builds the positional row for a JSON object of named features.
    /// Undeclared keys are refused, naming them, or ignored (as the policy
    /// says; see [`Self::with_policy`]), or passed by name for open inputs.
    ///
    /// A number slot that stays NaN was not given: every value written is
    /// finite (non-finite numbers are refused, ints and booleans are exact),
    /// so NaN marks exactly the slots listed in `missing`.
    pub fn row(&self, obj: &Map<String, Json>) -> Result<Row, CallError> {
        let mut row = Row {
            numbers: vec![f64::NAN; self.numbers],
            missing: Vec::new(),
            texts: vec![None; self.texts],
            vectors: vec![None; self.vectors],
            extra: Vec::new(),
        };
        let slots = Slots { numbers: &mut row.numbers, texts: &mut row.texts, vectors: &mut row.vectors };
        self.fill(obj, slots, &mut row.extra)?;
        row.missing = (0..self.numbers as u32).filter(|&i| row.numbers[i as usize].is_nan()).collect();
        Ok(row)
    }

    /// Appends `obj` to `frame` as its next row, laid out as [`Self::row`]
    /// lays out a row (missing numbers NaN). On error the frame is unchanged.
    /// Never for open inputs: a frame has no `extra`.
    pub fn append_to(&self, obj: &Map<String, Json>, frame: &mut Frame) -> Result<(), CallError> {
        let (n, t, v) = (frame.numbers.len(), frame.texts.len(), frame.vectors.len());
        frame.numbers.resize(n + self.numbers, f64::NAN);
        frame.texts.resize(t + self.texts, None);
        frame.vectors.resize(v + self.vectors, None);
        let slots = Slots {
            numbers: &mut frame.numbers[n..],
            texts: &mut frame.texts[t..],
            vectors: &mut frame.vectors[v..],
        };
        let mut extra = Vec::new();
        match self.fill(obj, slots, &mut extra) {
            Ok(()) => {
                frame.rows += 1;
                Ok(())
            }
            Err(e) => {
                frame.numbers.truncate(n);
                frame.texts.truncate(t);
                frame.vectors.truncate(v);
                Err(e)
            }
        }
    }

    /// Writes `obj`'s values into one row's slots (all missing on entry) and
    /// checks the required ones; undeclared keys go to `extra` for open inputs.
    fn fill(&self, obj: &Map<String, Json>, row: Slots<'_>, extra: &mut Vec<Field>) -> Result<(), CallError> {
        for (name, value) in obj {
            let Some(slot) = self.index.get(name).map(|&i| &self.slots[i]) else {
                if self.open {
                    extra.push(Field { name: name.clone(), value: any_value(name, value)? });
                } else if self.undeclared == Undeclared::Refuse && !self.ignored.contains(name) {
                    return Err(self.refuse_undeclared(obj));
                }
                continue;
            };
            if value.is_null() {
                continue;
            }
            match slot.kind {
                ValueKind::Float => {
                    row.numbers[slot.index] = match value {
                        Json::Number(n) => number(name, n)?,
                        Json::Bool(b) => f64::from(u8::from(*b)),
                        other => return Err(wrong_kind(name, "a number", other)),
                    };
                }
                ValueKind::Int => row.numbers[slot.index] = int(name, value)? as f64,
                ValueKind::Boolean => {
                    let b = value.as_bool().ok_or_else(|| wrong_kind(name, "true or false", value))?;
                    row.numbers[slot.index] = f64::from(u8::from(b));
                }
                ValueKind::Text => {
                    let s = value.as_str().ok_or_else(|| wrong_kind(name, "a string", value))?;
                    row.texts[slot.index] = Some(s.to_owned());
                }
                ValueKind::Floats => row.vectors[slot.index] = Some(floats(name, value)?),
            }
        }
        for &i in &self.required {
            let slot = &self.slots[i];
            let present = match slot.kind {
                ValueKind::Text => row.texts[slot.index].is_some(),
                ValueKind::Floats => row.vectors[slot.index].is_some(),
                _ => !row.numbers[slot.index].is_nan(),
            };
            if !present {
                return Err(CallError::invalid_input(format!(
                    "field `{}` is required but missing",
                    self.specs[i].name
                )));
            }
        }
        Ok(())
    }

    /// The error for an object with undeclared fields: names them all, and
    /// what is declared when that list is short enough to read.
    fn refuse_undeclared(&self, obj: &Map<String, Json>) -> CallError {
        let declared = if self.specs.len() <= 40 {
            let d: Vec<&str> = self.specs.iter().map(|s| s.name.as_str()).collect();
            format!(" (declared: {})", d.join(", "))
        } else {
            String::new()
        };
        undeclared_error(
            &self.undeclared(obj),
            "the plugin does not read",
            &format!(
                "{declared}; a misspelled name? (a plugin can accept and report them instead: \
                 `[inputs] undeclared = \"report\"`)"
            ),
        )
    }

    /// Turns a positional output row back into named JSON. A row of the wrong
    /// shape, or a non-finite float, is the plugin's fault.
    pub fn named(&self, row: &Row) -> Result<Map<String, Json>, CallError> {
        if row.numbers.len() != self.numbers
            || row.texts.len() != self.texts
            || row.vectors.len() != self.vectors
        {
            return Err(CallError::InvalidOutput {
                message: format!(
                    "row has {}/{}/{} number/text/vector slots, the declared outputs need {}/{}/{}",
                    row.numbers.len(),
                    row.texts.len(),
                    row.vectors.len(),
                    self.numbers,
                    self.texts,
                    self.vectors
                ),
            });
        }
        let too_big = |what: String| CallError::InvalidOutput { message: format!("output {what}") };
        if let Some(t) = row.texts.iter().flatten().find(|t| t.len() > MAX_OUTPUT_TEXT_BYTES) {
            return Err(too_big(format!(
                "text of {} bytes; at most {MAX_OUTPUT_TEXT_BYTES} are accepted",
                t.len()
            )));
        }
        if let Some(v) = row.vectors.iter().flatten().find(|v| v.len() > MAX_OUTPUT_FLOATS) {
            return Err(too_big(format!(
                "vector of {} floats; at most {MAX_OUTPUT_FLOATS} are accepted",
                v.len()
            )));
        }
        // `missing` lists number slots, each once, ascending: checked here in
        // one pass (it was searched per slot, outputs × missing host work).
        if row.missing.len() > self.numbers
            || row.missing.windows(2).any(|w| w[0] >= w[1])
            || row.missing.last().is_some_and(|&i| i as usize >= self.numbers)
        {
            return Err(CallError::InvalidOutput {
                message: format!(
                    "`missing` must list distinct number slots below {} in ascending order; it has {} entries",
                    self.numbers,
                    row.missing.len()
                ),
            });
        }
        let mut missing = row.missing.iter().peekable();
        let mut out = Map::with_capacity(self.specs.len());
        for (spec, slot) in self.specs.iter().zip(&self.slots) {
            let i = slot.index;
            let json = match slot.kind {
                ValueKind::Text => row.texts[i].clone().map_or(Json::Null, Json::String),
                ValueKind::Floats => row.vectors[i].as_ref().map_or(Ok(Json::Null), |v| {
                    v.iter().map(|x| finite(&spec.name, *x)).collect::<Result<Vec<_>, _>>().map(Json::Array)
                })?,
                _ if missing.next_if(|&&m| m as usize == i).is_some() => Json::Null,
                ValueKind::Boolean => match row.numbers[i] {
                    0.0 => Json::Bool(false),
                    1.0 => Json::Bool(true),
                    x => return Err(bad_output(&spec.name, "a boolean (0 or 1)", x)),
                },
                ValueKind::Int => {
                    let x = row.numbers[i];
                    if x.fract() != 0.0 || x.abs() > MAX_EXACT_INT as f64 {
                        return Err(bad_output(&spec.name, "an integer", x));
                    }
                    Json::from(x as i64)
                }
                ValueKind::Float => finite(&spec.name, row.numbers[i])?,
            };
            out.insert(spec.name.clone(), json);
        }
        Ok(out)
    }
}

fn bad_output(name: &str, expected: &str, x: f64) -> CallError {
    CallError::InvalidOutput { message: format!("output `{name}` must be {expected}, got {x}") }
}

fn finite(name: &str, x: f64) -> Result<Json, CallError> {
    Number::from_f64(x).map(Json::Number).ok_or_else(|| CallError::InvalidOutput {
        message: format!("output `{name}` is {x}, not a finite number"),
    })
}

fn describe(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

fn wrong_kind(name: &str, expected: &str, got: &Json) -> CallError {
    CallError::invalid_input(format!("field `{name}` must be {expected}, got {}", describe(got)))
}

fn number(name: &str, n: &Number) -> Result<f64, CallError> {
    n.as_f64()
        .filter(|x| x.is_finite())
        .ok_or_else(|| CallError::invalid_input(format!("field `{name}` = {n} is out of range for a float")))
}

fn int(name: &str, value: &Json) -> Result<i64, CallError> {
    let Json::Number(n) = value else { return Err(wrong_kind(name, "an integer", value)) };
    let i = match (n.as_i64(), n.as_f64()) {
        (Some(i), _) => i,
        (None, Some(x)) if x.fract() == 0.0 && x.abs() < MAX_EXACT_INT as f64 => x as i64,
        (None, Some(x)) if x.fract() != 0.0 => {
            return Err(CallError::invalid_input(format!("field `{name}` must be an integer, got {n}")));
        }
        _ => i64::MAX,
    };
    if i.unsigned_abs() > MAX_EXACT_INT as u64 {
        return Err(CallError::invalid_input(format!(
            "field `{name}` = {n} is out of range (|int| <= 2^53)"
        )));
    }
    Ok(i)
}

fn floats(name: &str, value: &Json) -> Result<Vec<f64>, CallError> {
    let Json::Array(items) = value else { return Err(wrong_kind(name, "an array of numbers", value)) };
    items
        .iter()
        .map(|x| match x {
            Json::Number(n) => number(name, n),
            other => Err(wrong_kind(name, "an array of numbers", other)),
        })
        .collect()
}

/// JSON → WIT value with the DESIGN mapping, for open (undeclared) inputs.
pub fn any_value(name: &str, value: &Json) -> Result<Value, CallError> {
    Ok(match value {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(number(name, n)?),
        },
        Json::String(s) => Value::Text(s.clone()),
        Json::Array(_) => Value::Floats(floats(name, value)?),
        Json::Object(_) => return Err(wrong_kind(name, "a feature value", value)),
    })
}

/// One row's slots, wherever they live: a [`Row`]'s own lists or a stretch of a [`Frame`]'s.
struct Slots<'a> {
    numbers: &'a mut [f64],
    texts: &'a mut [Option<String>],
    vectors: &'a mut [Option<Vec<f64>>],
}

/// Why a plugin's declared fields cannot be laid out (at load, from its
/// `describe()`): each names the limit or the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// More fields than [`MAX_DECLARED_FIELDS`].
    #[error("{declared} fields declared, over the limit of {MAX_DECLARED_FIELDS}")]
    TooManyFields {
        /// How many the plugin declared.
        declared: usize,
    },
    /// A field name longer than [`MAX_FIELD_NAME_BYTES`].
    #[error("a field name of {bytes} bytes (`{start}…`), over the limit of {MAX_FIELD_NAME_BYTES}")]
    NameTooLong {
        /// Its length.
        bytes: usize,
        /// Its first 32 characters.
        start: String,
    },
    /// Two fields with one name.
    #[error("field `{name}` is declared twice")]
    DeclaredTwice {
        /// The name.
        name: String,
    },
}

/// The `[inputs]` table: what a call does with input fields the plugin does
/// not declare (a client's typo, a field renamed on one side). A plugin that
/// declares open inputs receives them by name instead, and this does not apply.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputPolicy {
    /// `refuse` (the default) or `report`.
    #[serde(default)]
    pub undeclared: Undeclared,
    /// Fields callers send that the plugin does not read and that are not
    /// mistakes: request ids, a canary's routing key (`customer_id`). Passed
    /// over silently, neither refused nor reported. At most 64 names.
    #[serde(default)]
    pub ignore: Vec<String>,
}

impl InputPolicy {
    pub(crate) fn validate(&self) -> Result<(), InvalidValue> {
        let max = MAX_FIELD_NAME_BYTES;
        if self.ignore.len() > 64 || self.ignore.iter().any(|n| n.is_empty() || n.len() > max) {
            return Err(InvalidValue::new(
                "inputs.ignore",
                format!("[{} names]", self.ignore.len()),
                format!("at most 64 field names of 1-{max} bytes"),
            ));
        }
        Ok(())
    }
}

/// See [`InputPolicy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Undeclared {
    /// The call is refused: `invalid_input` (HTTP 422) naming every
    /// undeclared field, so a misspelled feature never silently degrades a
    /// score.
    #[default]
    Refuse,
    /// The call goes ahead without them; a score's answer lists them under
    /// `undeclared`, and `scorehost_undeclared_fields_total` counts them.
    Report,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::error::ErrorKind;
    use serde_json::json;

    fn spec(name: &str, kind: ValueKind, required: bool) -> FieldSpec {
        FieldSpec { name: name.into(), kind, required, doc: String::new() }
    }

    fn layout() -> Layout {
        Layout::new(
            &[
                spec("a", ValueKind::Float, true),
                spec("n", ValueKind::Int, false),
                spec("t", ValueKind::Text, false),
                spec("b", ValueKind::Boolean, false),
            ],
            false,
        )
        .unwrap()
    }

    fn obj(v: Json) -> Map<String, Json> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn undeclared_fields_are_refused_by_name_or_reported() {
        let body = obj(json!({"a": 1.5, "amount_usd_lg": 2.0, "b": true, "zz": 1}));
        let e = layout().row(&body).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidInput);
        let m = e.to_string();
        assert!(m.contains("`amount_usd_lg`, `zz`") && m.contains("declared: a, n, t, b"), "{m}");
        let report = layout().with_policy(&InputPolicy { undeclared: Undeclared::Report, ignore: vec![] });
        assert!(report.row(&body).is_ok());
        assert_eq!(report.undeclared(&body), ["amount_usd_lg", "zz"]);
        let ignoring =
            InputPolicy { undeclared: Undeclared::Refuse, ignore: vec!["zz".into(), "amount_usd_lg".into()] };
        assert!(layout().with_policy(&ignoring).row(&body).is_ok(), "ignored fields pass silently");
    }

    #[test]
    fn declarations_and_requests_are_bounded_in_size() {
        let many: Vec<FieldSpec> =
            (0..=MAX_DECLARED_FIELDS).map(|i| spec(&format!("f{i}"), ValueKind::Float, false)).collect();
        assert_eq!(
            Layout::new(&many, false).unwrap_err(),
            LayoutError::TooManyFields { declared: many.len() }
        );
        let long = [spec(&"x".repeat(MAX_FIELD_NAME_BYTES + 1), ValueKind::Float, false)];
        assert!(matches!(Layout::new(&long, false), Err(LayoutError::NameTooLong { .. })));
        let wide = Layout::new(&many[..MAX_DECLARED_FIELDS], false).unwrap();
        assert!(wide.check_request(MAX_REQUEST_SLOTS / MAX_DECLARED_FIELDS).is_ok());
        let e = wide.check_request(1000).unwrap_err();
        assert!(e.to_string().contains("1000 rows × 4096 declared inputs"), "{e}");
    }

    #[test]
    fn positional_rows_with_explicit_missing() {
        let report = InputPolicy { undeclared: Undeclared::Report, ignore: vec![] };
        let row =
            layout().with_policy(&report).row(&obj(json!({"a": 1.5, "b": true, "ignored": "x"}))).unwrap();
        assert_eq!(row.numbers[0], 1.5);
        assert_eq!(row.numbers[2], 1.0);
        assert_eq!(row.missing, vec![1]);
        assert_eq!(row.texts, vec![None]);
        assert!(row.extra.is_empty());
    }

    #[test]
    fn zeros_and_false_are_present_and_nulls_missing() {
        let l = layout();
        let row = l.row(&obj(json!({"a": 0.0, "n": 0, "b": false, "t": "x"}))).unwrap();
        assert_eq!(row.numbers, vec![0.0, 0.0, 0.0]);
        assert!(row.missing.is_empty());
        let row = l.row(&obj(json!({"a": -0.0, "n": null, "b": null}))).unwrap();
        assert_eq!(row.missing, vec![1, 2]);
        assert!(row.numbers[1].is_nan() && row.numbers[2].is_nan());
        let e = l.row(&obj(json!({"a": null, "n": 1}))).unwrap_err();
        assert!(e.to_string().contains("`a` is required"), "{e}");
    }

    #[test]
    fn type_and_range_errors_name_the_field() {
        let l = layout();
        for (body, field) in [
            (json!({"n": 1}), "a"),
            (json!({"a": "x"}), "a"),
            (json!({"a": 1, "n": 1.5}), "n"),
            (json!({"a": 1, "n": 9007199254740993u64}), "n"),
            (json!({"a": 1, "n": -9223372036854775807i64}), "n"),
            (json!({"a": 1, "t": 3}), "t"),
        ] {
            let e = l.row(&obj(body)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            assert!(e.to_string().contains(&format!("`{field}`")), "{e}");
        }
    }

    #[test]
    fn duplicate_declarations_are_rejected() {
        assert_eq!(
            Layout::new(&[spec("a", ValueKind::Float, false), spec("a", ValueKind::Int, false)], false)
                .unwrap_err(),
            LayoutError::DeclaredTwice { name: "a".into() }
        );
    }

    #[test]
    fn a_wrong_shaped_output_row_is_invalid_output() {
        let row = Row { numbers: vec![1.0], missing: vec![], texts: vec![], vectors: vec![], extra: vec![] };
        assert_eq!(layout().named(&row).unwrap_err().kind(), ErrorKind::InvalidOutput);
    }

    #[test]
    fn a_missing_list_out_of_range_unsorted_or_too_long_is_invalid_output() {
        let row = |missing: Vec<u32>| Row {
            numbers: vec![1.0, 2.0, 0.0],
            missing,
            texts: vec![None],
            vectors: vec![],
            extra: vec![],
        };
        let named = layout().named(&row(vec![0, 2])).unwrap();
        assert_eq!(
            (named["a"].clone(), named["n"].clone(), named["b"].clone()),
            (Json::Null, json!(2), Json::Null)
        );
        for bad in [vec![3], vec![2, 0], vec![1, 1], vec![0; 1_000_000]] {
            assert_eq!(layout().named(&row(bad)).unwrap_err().kind(), ErrorKind::InvalidOutput);
        }
    }

    #[test]
    fn non_integral_ints_and_non_boolean_bools_are_invalid_output() {
        let row = |n: f64, b: f64| Row {
            numbers: vec![1.0, n, b],
            missing: vec![],
            texts: vec![None],
            vectors: vec![],
            extra: vec![],
        };
        for (n, b) in [(1.5, 1.0), (f64::NAN, 0.0), (1e300, 0.0), (2.0, f64::NAN), (2.0, 0.5)] {
            assert_eq!(layout().named(&row(n, b)).unwrap_err().kind(), ErrorKind::InvalidOutput, "{n} {b}");
        }
        let ok = layout().named(&row(7.0, 1.0)).unwrap();
        assert_eq!(ok["n"], json!(7));
        assert_eq!(ok["b"], json!(true));
    }

    #[test]
    fn append_to_lays_out_rows_like_row_and_rolls_back_a_refused_one() {
        let l = layout();
        let mut frame = Frame { rows: 0, numbers: Vec::new(), texts: Vec::new(), vectors: Vec::new() };
        let first = json!({"a": 1.5, "t": "x", "b": true});
        let refused = json!({"a": 2.0, "n": "seven", "t": "y"});
        let second = json!({"a": 3.0, "n": 4});
        for obj in [&first, &second] {
            l.append_to(obj.as_object().unwrap(), &mut frame).unwrap();
            let before = (frame.numbers.len(), frame.texts.len());
            let e = l.append_to(refused.as_object().unwrap(), &mut frame).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            assert_eq!((frame.numbers.len(), frame.texts.len()), before, "a refused row leaves nothing");
        }
        assert_eq!(frame.rows, 2);
        let rows = [l.row(first.as_object().unwrap()).unwrap(), l.row(second.as_object().unwrap()).unwrap()];
        let numbers: Vec<f64> = rows.iter().flat_map(|r| r.numbers.clone()).collect();
        assert_eq!(format!("{:?}", frame.numbers), format!("{numbers:?}"), "NaN where missing, as in rows");
        assert_eq!(frame.texts, [Some("x".to_owned()), None]);
        assert!(l.append_to(json!({}).as_object().unwrap(), &mut frame).is_err(), "`a` is required");
    }
}
