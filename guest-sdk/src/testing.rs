//! A native test harness: unit-test a plugin's logic with plain `cargo test`, no wasm.
//!
//! The harness does what the host does — `init` with a config, `metadata`, then
//! JSON with names → positional row against the declared inputs, with the same
//! required and kind checks — and calls the plugin directly.
//!
//! A plugin with an `init` of its own is built from a config with
//! [`Harness::scorer`] / [`Harness::extractor`]; a stateless one (no `init`,
//! `#[derive(Default)]`) is handed over built, with [`Harness::of_scorer`] /
//! [`Harness::of_extractor`]:
//!
//! ```
//! # use scorehost_guest::prelude::*;
//! # #[derive(Default)]
//! # struct Double;
//! # impl Scorer for Double {
//! #     fn metadata(&self) -> Metadata { Metadata::default().input(float("x").required()) }
//! #     fn score(&self, f: &Features) -> Result<Score> { Ok(Score::new(2.0 * f.float("x")?)) }
//! # }
//! # struct Scaled(f64);
//! # impl Scorer for Scaled {
//! #     fn init(c: &Config) -> Result<Self> { Ok(Scaled(c.parse("by")?.unwrap_or(1.0))) }
//! #     fn metadata(&self) -> Metadata { Metadata::new("scaled", "0.1.0").input(float("x").required()) }
//! #     fn score(&self, f: &Features) -> Result<Score> { Ok(Score::new(self.0 * f.float("x")?)) }
//! # }
//! use scorehost_guest::testing::Harness;
//! let double = Harness::of_scorer(Double);
//! assert_eq!(double.score(&serde_json::json!({"x": 21})).unwrap().value, 42.0);
//! let triple = Harness::<Scaled>::scorer(Config::new([("by", "3")])).unwrap();
//! assert_eq!(triple.score(&serde_json::json!({"x": 2})).unwrap().value, 6.0);
//! ```
//!
//! Natively no export macro runs, so a plugin that leaves its name or version
//! to `Cargo.toml` (`Metadata::default()`) has them empty in
//! [`Harness::metadata`].

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{Map, Value as Json};

use crate::bindings::frames::{Frame, FrameScores};
use crate::bindings::types::Row;
use crate::config::Config;
use crate::error::{PluginError, Result};
use crate::export::{
    EXTRACTOR_INIT_MISSING, Extractor, Loaded, SCORER_INIT_MISSING, Scorer, extract_row, score_frame,
    score_row,
};
use crate::features::{Layout, Value};
use crate::metadata::{Kind, Reason, Score};

static MODEL_DIR_OVERRIDE: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Largest integer magnitude an int input may have; the host rejects larger ones.
const MAX_EXACT_INT: i64 = 1 << 53;

/// The directory [`crate::read_model_file`] reads from in native tests.
pub(crate) fn model_dir() -> Option<PathBuf> {
    MODEL_DIR_OVERRIDE.lock().map(|g| g.clone()).unwrap_or(None)
}

/// Points [`crate::read_model_file`] at `dir` for native tests (in wasm the host
/// mounts the manifest's model directory at `/model`).
pub fn set_model_dir(dir: impl AsRef<Path>) {
    if let Ok(mut g) = MODEL_DIR_OVERRIDE.lock() {
        *g = Some(dir.as_ref().to_path_buf());
    }
}

/// An initialised plugin under test.
pub struct Harness<T> {
    loaded: Loaded<T>,
}

impl<T: Scorer> Harness<T> {
    /// Runs `init` and `metadata` of a scorer. For a scorer without `init`
    /// of its own (a `Default` one), use [`Self::of_scorer`].
    pub fn scorer(config: Config) -> Result<Self> {
        let plugin = T::init(&config).map_err(|e| no_init(e, SCORER_INIT_MISSING, "of_scorer"))?;
        Ok(Self::of_scorer(plugin))
    }

    /// Runs `metadata` of a scorer built by the test, e.g. a stateless one
    /// as `Harness::of_scorer(Plugin)` or `Harness::of_scorer(Plugin::default())`:
    /// what the export macro does for a `Default` plugin without `init`.
    pub fn of_scorer(plugin: T) -> Self {
        let metadata = plugin.metadata();
        Self { loaded: Loaded::new(plugin, metadata) }
    }

    /// Scores a JSON object of named features, as `POST /score` would.
    pub fn score(&self, features: &Json) -> Result<Score> {
        score_row(&self.loaded, &self.row(features)?)
    }

    /// Scores a positional row exactly as the plugin's export does once the
    /// host has laid it out: the native side of a wasm-vs-native benchmark,
    /// which then runs the same per-row code as the guest.
    pub fn score_row(&self, row: &Row) -> Result<Score> {
        score_row(&self.loaded, row)
    }

    /// Scores JSON rows the way the host scores a batch: the rows it accepts
    /// laid out as one frame and run through the plugin's `score_frame`, the
    /// answer read back into one [`Score`] per row; a row the host would
    /// refuse keeps its own error. Compare it with [`Self::score`] row by row
    /// to check an overridden [`Scorer::score_frame`].
    pub fn score_batch(&self, rows: &[Json]) -> Vec<Result<Score>> {
        let mut good = Vec::with_capacity(rows.len());
        let refused: Vec<Option<PluginError>> =
            rows.iter().map(|r| self.row(r).map(|row| good.push(row)).err()).collect();
        let mut scored = self.score_frame(&self.frame(&good)).into_iter();
        refused
            .into_iter()
            .map(|refused| match refused {
                None => scored.next().unwrap_or_else(|| Err(PluginError::internal("no result for this row"))),
                Some(e) => Err(e),
            })
            .collect()
    }

    /// Positional rows as one frame, laid out as the host lays out a batch.
    pub fn frame(&self, rows: &[Row]) -> Frame {
        let mut frame =
            Frame { rows: rows.len() as u32, numbers: Vec::new(), texts: Vec::new(), vectors: Vec::new() };
        for row in rows {
            let base = frame.numbers.len();
            frame.numbers.extend_from_slice(&row.numbers);
            for &m in &row.missing {
                if let Some(x) = frame.numbers[base..].get_mut(m as usize) {
                    *x = f64::NAN;
                }
            }
            frame.texts.extend(row.texts.iter().cloned());
            frame.vectors.extend(row.vectors.iter().cloned());
        }
        frame
    }

    /// Runs the plugin's frame export on `frame` and reads the answer back as
    /// the host does: one result per row, reason codes resolved to names. The
    /// native side of a wasm-vs-native batch benchmark.
    pub fn score_frame(&self, frame: &Frame) -> Vec<Result<Score>> {
        unpack(&self.loaded.metadata.inputs, score_frame(&self.loaded, frame))
    }
}

/// `init`'s error, with a hint if it is the default `init` of a plugin that
/// has none: in a test such a plugin is handed over built, with `of_*`.
fn no_init(e: PluginError, missing: &str, constructor: &str) -> PluginError {
    if e.message == missing {
        PluginError { message: format!("{missing} (in a test: `Harness::{constructor}(plugin)`)"), ..e }
    } else {
        e
    }
}

/// One result per row from a frame's answer, reason indices resolved to codes.
fn unpack(inputs: &[crate::FieldSpec], out: FrameScores) -> Vec<Result<Score>> {
    let mut per_row = vec![0; out.values.len()];
    for r in &out.reasons {
        if let Some(n) = per_row.get_mut(r.row as usize) {
            *n += 1;
        }
    }
    let mut results: Vec<Result<Score>> = out
        .values
        .iter()
        .zip(per_row)
        .map(|(&value, n)| Ok(Score { value, reasons: Vec::with_capacity(n) }))
        .collect();
    for r in out.reasons {
        let code = match inputs.get(r.code as usize) {
            Some(spec) => Some(spec.name.clone()),
            None => out.codes.get(r.code as usize - inputs.len()).cloned(),
        };
        // An index the host could not resolve fails the row here too.
        let result = results.get_mut(r.row as usize);
        match (result, code) {
            (Some(Ok(score)), Some(code)) => score.reasons.push(Reason { code, weight: r.weight }),
            (Some(result), None) => {
                *result = Err(PluginError::internal(format!("reason code index {} out of range", r.code)))
            }
            (None, _) | (Some(Err(_)), Some(_)) => {}
        }
    }
    for e in out.errors {
        results[e.row as usize] = Err(e.error.into());
    }
    results
}

impl<T: Extractor> Harness<T> {
    /// Runs `init` and `metadata` of an extractor. For an extractor without
    /// `init` of its own (a `Default` one), use [`Self::of_extractor`].
    pub fn extractor(config: Config) -> Result<Self> {
        let plugin = T::init(&config).map_err(|e| no_init(e, EXTRACTOR_INIT_MISSING, "of_extractor"))?;
        Ok(Self::of_extractor(plugin))
    }

    /// Runs `metadata` of an extractor built by the test; as [`Harness::of_scorer`].
    pub fn of_extractor(plugin: T) -> Self {
        let metadata = plugin.metadata();
        Self { loaded: Loaded::new(plugin, metadata) }
    }

    /// Extracts a JSON event into named features, as `POST /extract` would.
    pub fn extract(&self, event: &Json) -> Result<Map<String, Json>> {
        let out = extract_row(&self.loaded, &self.row(event)?)?;
        Ok(named(&self.loaded.outputs, &out))
    }
}

impl<T> Harness<T> {
    /// The initialised plugin.
    pub fn plugin(&self) -> &T {
        &self.loaded.plugin
    }

    /// The metadata the plugin declared.
    pub fn metadata(&self) -> &crate::Metadata {
        &self.loaded.metadata
    }

    /// Converts named JSON into a positional row the way the host does.
    pub fn row(&self, json: &Json) -> Result<Row> {
        let obj =
            json.as_object().ok_or_else(|| PluginError::invalid_input("input must be a JSON object"))?;
        let layout = &self.loaded.inputs;
        let mut row = layout.empty_row();
        for spec in layout.specs() {
            let value = obj.get(&spec.name).map(json_value).transpose()?.unwrap_or(Value::Null);
            if value == Value::Null && spec.required {
                return Err(PluginError::invalid_input(format!(
                    "field `{}` is required but missing",
                    spec.name
                )));
            }
            // The host's coercions: a bool feeds a float input as 0/1, an
            // integral float feeds an int input.
            let value = match (spec.kind, value) {
                (Kind::Float, Value::Bool(b)) => Value::Float(f64::from(u8::from(b))),
                (Kind::Int, Value::Float(x)) if x.fract() == 0.0 && x.abs() <= MAX_EXACT_INT as f64 => {
                    Value::Int(x as i64)
                }
                (Kind::Int, Value::Int(i)) if i.unsigned_abs() > MAX_EXACT_INT as u64 => {
                    return Err(PluginError::invalid_input(format!(
                        "field `{}` = {i} is out of range (|int| <= 2^53)",
                        spec.name
                    )));
                }
                (_, v) => v,
            };
            let mut out = crate::features::Output::new(layout);
            out.set(&spec.name, value).map_err(|_| {
                PluginError::invalid_input(format!("field `{}` must be {:?}", spec.name, spec.kind))
            })?;
            merge(&mut row, out.into_row());
        }
        if self.loaded.metadata.open_inputs {
            for (name, v) in obj.iter().filter(|(k, _)| layout.specs().iter().all(|s| &s.name != *k)) {
                row.extra.push(crate::bindings::types::Field {
                    name: name.clone(),
                    value: wit_value(json_value(v)?),
                });
            }
        }
        Ok(row)
    }
}

fn merge(into: &mut Row, from: Row) {
    for (i, x) in from.numbers.iter().enumerate() {
        if !from.missing.contains(&(i as u32)) {
            into.numbers[i] = *x;
            into.missing.retain(|&m| m as usize != i);
        }
    }
    for (slot, t) in into.texts.iter_mut().zip(from.texts) {
        if t.is_some() {
            *slot = t;
        }
    }
    for (slot, v) in into.vectors.iter_mut().zip(from.vectors) {
        if v.is_some() {
            *slot = v;
        }
    }
}

/// JSON → value, with the mapping of the HTTP layer.
fn json_value(v: &Json) -> Result<Value> {
    Ok(match v {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::Text(s.clone()),
        Json::Array(xs) => Value::Floats(
            xs.iter()
                .map(|x| {
                    x.as_f64().ok_or_else(|| PluginError::invalid_input("arrays must hold numbers only"))
                })
                .collect::<Result<_>>()?,
        ),
        Json::Object(_) => return Err(PluginError::invalid_input("nested objects are not feature values")),
    })
}

fn wit_value(v: Value) -> crate::bindings::types::Value {
    use crate::bindings::types::Value as W;
    match v {
        Value::Null => W::Null,
        Value::Bool(b) => W::Boolean(b),
        Value::Int(i) => W::Int(i),
        Value::Float(x) => W::Float(x),
        Value::Text(s) => W::Text(s),
        Value::Floats(v) => W::Floats(v),
    }
}

/// Positional output row → named JSON, the way the host answers `/extract`.
fn named(layout: &Layout, row: &Row) -> Map<String, Json> {
    let (mut n, mut t, mut v) = (0usize, 0usize, 0usize);
    let mut out = Map::new();
    for spec in layout.specs() {
        let json = match spec.kind {
            Kind::Text => {
                t += 1;
                row.texts[t - 1].clone().map_or(Json::Null, Json::String)
            }
            Kind::Floats => {
                v += 1;
                row.vectors[v - 1].clone().map_or(Json::Null, |xs| serde_json::json!(xs))
            }
            kind => {
                n += 1;
                let x = row.numbers[n - 1];
                if row.missing.contains(&((n - 1) as u32)) {
                    Json::Null
                } else {
                    match kind {
                        Kind::Bool => Json::Bool(x != 0.0),
                        Kind::Int => Json::from(x as i64),
                        _ => serde_json::Number::from_f64(x).map_or(Json::Null, Json::Number),
                    }
                }
            }
        };
        out.insert(spec.name.clone(), json);
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::Harness;
    use crate::prelude::*;

    /// A stateless scorer: no `init`, `Default`.
    #[derive(Default)]
    struct Half;

    impl Scorer for Half {
        fn metadata(&self) -> Metadata {
            Metadata::default().input(float("x").required())
        }
        fn score(&self, f: &Features) -> Result<Score> {
            Ok(Score::new(f.float("x")? / 2.0))
        }
    }

    #[test]
    fn a_stateless_scorer_is_tested_as_built() {
        let half = Harness::of_scorer(Half);
        assert_eq!(half.score(&json!({"x": 3})).unwrap().value, 1.5);
        // No export macro runs natively: the name stays empty.
        assert_eq!(half.metadata().name, "");

        let Err(e) = Harness::<Half>::scorer(Config::default()) else {
            panic!("a scorer without init cannot be built from a config");
        };
        assert!(e.message.contains("implement `Scorer::init`"), "{}", e.message);
        assert!(e.message.contains("Harness::of_scorer"), "{}", e.message);
    }
}
