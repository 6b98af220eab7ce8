//! Golden vectors: the examples a plugin ships (`tests.jsonl` in its directory)
//! and the check every version must pass before it may serve.
//!
//! One JSON object per line:
//!
//! ```json
//! {"name": "night, cross-border", "input": {"amount_usd_log": 6.0, "is_night": true}, "score": 0.9121, "tolerance": 1e-6}
//! {"name": "top reasons", "input": {…}, "score": 0.42, "reasons": ["cross_border", "is_night"]}
//! {"name": "EUR converts", "input": {"amount": 10, "currency": "EUR", "timestamp": 0}, "features": {"amount_usd": 10.8}}
//! {"name": "bad currency", "input": {"amount": 1, "currency": "XYZ", "timestamp": 0}, "error": "invalid_input"}
//! ```
//!
//! `input` is the features (scorer) or event (extractor). Exactly one of
//! `score` (scorers), `features` (extractors: every listed output must match;
//! `null` for "absent") or `error` (an error kind, as in HTTP answers) says what
//! to expect; `reasons`, optional, the leading reason codes in order.
//! Numbers match within `tolerance` (absolute, default 1e-9).
//!
//! [`check`] runs every vector under the version's production limits, twice:
//! the second pass runs on instances that already served the first, so a
//! plugin whose answers depend on what it saw before (state kept between
//! calls) fails here rather than in production. `scorehost test` and the
//! validation gate of the plugin store both call it.

use std::path::Path;
use std::time::Duration;

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use serde::Deserialize;
use serde_json::{Map, Value as Json};

use crate::sandbox::error::CallError;
use crate::sandbox::safe_read::{self, ReadError};
use crate::sandbox::world::World;
use crate::state::{self, backend::Access};
use crate::version::plugin::PluginVersion;

/// The file name of a plugin's golden vectors, in its directory.
pub const FILE: &str = "tests.jsonl";

/// Most vectors a file may hold (the gate runs them all, twice).
pub const MAX_VECTORS: usize = 10_000;

/// Most bytes [`FILE`] may hold: 16 MiB, [`MAX_VECTORS`] vectors of 1.6 KiB
/// each. [`read`] refuses a larger file without reading past the limit (a
/// `tests.jsonl` that never ends would otherwise exhaust memory).
pub const MAX_FILE_BYTES: u64 = 16 << 20;

fn default_tolerance() -> f64 {
    1e-9
}

/// One golden vector, as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vector {
    /// What the example shows; names it in reports.
    pub name: String,
    /// The features (scorer) or event (extractor).
    pub input: Map<String, Json>,
    /// The expected score (scorers).
    #[serde(default)]
    pub score: Option<f64>,
    /// The expected leading reason codes, in order (scorers, optional).
    #[serde(default)]
    pub reasons: Option<Vec<String>>,
    /// The expected outputs (extractors): each listed one must match.
    #[serde(default)]
    pub features: Option<Map<String, Json>>,
    /// The expected error kind instead of an answer.
    #[serde(default)]
    pub error: Option<String>,
    /// Absolute tolerance for numbers.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
}

/// Why a golden-vector file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum VectorsError {
    /// The file is missing or unreadable.
    #[error("cannot read {path}: {cause}")]
    Io {
        /// The file.
        path: String,
        /// The OS error (in the message, so not also a `source`).
        cause: std::io::Error,
    },
    /// A line is not a valid vector.
    #[error("{FILE} line {line}: {message}")]
    Invalid {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The file holds no vectors.
    #[error("{FILE} holds no golden vectors; a version must ship at least one")]
    Empty,
    /// The file is not a regular file (a FIFO, a device, a directory).
    #[error("{path} is a {kind}, not a regular file; {FILE} must be a regular file")]
    NotAFile {
        /// The file.
        path: String,
        /// What it is instead, e.g. `FIFO (named pipe)`.
        kind: &'static str,
    },
    /// The file is larger than [`MAX_FILE_BYTES`].
    #[error("{path} is larger than {limit} bytes, the most {FILE} may hold")]
    TooLarge {
        /// The file.
        path: String,
        /// The limit, in bytes.
        limit: u64,
    },
}

/// Parses golden vectors for a plugin of `world`.
pub fn parse(text: &str, world: World) -> Result<Vec<Vector>, VectorsError> {
    let mut vectors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        if vectors.len() == MAX_VECTORS {
            return Err(VectorsError::Invalid {
                line: line_no,
                message: format!("more than {MAX_VECTORS} vectors"),
            });
        }
        let v: Vector = serde_json::from_str(line)
            .map_err(|e| VectorsError::Invalid { line: line_no, message: e.to_string() })?;
        let expectations = [v.score.is_some(), v.features.is_some(), v.error.is_some()];
        if expectations.iter().filter(|&&e| e).count() != 1 {
            return Err(VectorsError::Invalid {
                line: line_no,
                message: format!("`{}`: give exactly one of `score`, `features`, `error`", v.name),
            });
        }
        let wrong = match world {
            World::Scorer => v.features.is_some().then_some("`features` (scorers are checked by `score`)"),
            World::Extractor => (v.score.is_some() || v.reasons.is_some())
                .then_some("`score`/`reasons` (extractors are checked by `features`)"),
        };
        if let Some(what) = wrong {
            return Err(VectorsError::Invalid { line: line_no, message: format!("`{}`: {what}", v.name) });
        }
        if !(v.tolerance >= 0.0 && v.tolerance.is_finite()) {
            return Err(VectorsError::Invalid {
                line: line_no,
                message: format!("`{}`: tolerance must be a finite number ≥ 0", v.name),
            });
        }
        vectors.push(v);
    }
    if vectors.is_empty() {
        return Err(VectorsError::Empty);
    }
    Ok(vectors)
}

/// Reads and parses `dir/tests.jsonl`, through `dir` opened with cap-std: a
/// symlink leading out of `dir` (to `/dev/zero`, say), a FIFO, a device or a
/// file of more than [`MAX_FILE_BYTES`] is an error, never a hang or an
/// exhausted heap (see [`safe_read`]).
pub fn read(dir: &Path, world: World) -> Result<Vec<Vector>, VectorsError> {
    let root = Dir::open_ambient_dir(dir, ambient_authority())
        .map_err(|cause| VectorsError::Io { path: dir.display().to_string(), cause })?;
    let path = dir.join(FILE).display().to_string();
    let bytes = safe_read::read_regular(&root, Path::new(FILE), MAX_FILE_BYTES).map_err(|e| match e {
        ReadError::NotAFile { kind, .. } => VectorsError::NotAFile { path, kind },
        ReadError::TooLarge { limit, .. } => VectorsError::TooLarge { path, limit },
        other => VectorsError::Io { path, cause: other.into_io_error() },
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..valid].iter().filter(|&&b| b == b'\n').count() + 1;
        VectorsError::Invalid { line, message: format!("not UTF-8 text ({})", e.utf8_error()) }
    })?;
    parse(&text, world)
}

/// How one vector went.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorResult {
    /// The vector's name.
    pub name: String,
    /// `None` when it passed; otherwise what differed.
    pub failure: Option<String>,
    /// Fuel of the first run (0 when the call failed before the guest ran).
    pub fuel_used: u64,
    /// Wall-clock time of the first run.
    pub elapsed: Duration,
}

/// The outcome of [`check`].
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// One result per vector, in file order.
    pub vectors: Vec<VectorResult>,
}

impl Report {
    /// Whether every vector passed.
    pub fn passed(&self) -> bool {
        self.vectors.iter().all(|v| v.failure.is_none())
    }

    /// The failures, one line each, for an error message.
    pub fn failures(&self) -> Vec<String> {
        self.vectors.iter().filter_map(|v| v.failure.as_ref().map(|f| format!("`{}`: {f}", v.name))).collect()
    }

    /// The largest fuel any vector used.
    pub fn max_fuel(&self) -> u64 {
        self.vectors.iter().map(|v| v.fuel_used).max().unwrap_or(0)
    }

    /// The longest any vector took.
    pub fn max_elapsed(&self) -> Duration {
        self.vectors.iter().map(|v| v.elapsed).max().unwrap_or_default()
    }
}

/// What one call of a vector answered, reduced to what vectors compare.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Score { score: f64, reasons: Vec<String> },
    Features(Map<String, Json>),
    Error(String),
}

fn run_one(version: &PluginVersion, v: &Vector) -> (Answer, u64, Duration) {
    let answer: Result<(Answer, u64, Duration), CallError> = match version.manifest().world {
        // A fallback score stands in for an error: vectors check the plugin.
        World::Scorer => version.score(&v.input, None).and_then(|o| {
            let value = o.value.into_plugin_result()?;
            let reasons = value.reasons.iter().map(|(c, _)| c.clone()).collect();
            Ok((Answer::Score { score: value.score, reasons }, o.fuel_used, o.elapsed))
        }),
        World::Extractor => {
            version.extract(&v.input, None).map(|o| (Answer::Features(o.value), o.fuel_used, o.elapsed))
        }
    };
    answer.unwrap_or_else(|e| (Answer::Error(format!("{} ({e})", e.kind().as_str())), 0, Duration::ZERO))
}

fn close(a: f64, b: f64, tolerance: f64) -> bool {
    (a - b).abs() <= tolerance
}

fn json_close(got: &Json, want: &Json, tolerance: f64) -> bool {
    match (got, want) {
        (Json::Number(g), Json::Number(w)) => match (g.as_f64(), w.as_f64()) {
            (Some(g), Some(w)) => close(g, w, tolerance),
            _ => g == w,
        },
        (Json::Array(g), Json::Array(w)) => {
            g.len() == w.len() && g.iter().zip(w).all(|(g, w)| json_close(g, w, tolerance))
        }
        _ => got == want,
    }
}

/// Compares an answer with what the vector expects.
fn compare(v: &Vector, got: &Answer) -> Option<String> {
    if let Some(kind) = &v.error {
        return match got {
            Answer::Error(e) if e.split(' ').next() == Some(kind.as_str()) => None,
            Answer::Error(e) => Some(format!("expected error `{kind}`, got error {e}")),
            _ => Some(format!("expected error `{kind}`, got an answer")),
        };
    }
    match got {
        Answer::Error(e) => Some(format!("failed: {e}")),
        Answer::Score { score, reasons } => {
            let want = v.score.unwrap_or(f64::NAN);
            if !close(*score, want, v.tolerance) {
                return Some(format!("score {score} is not {want} ± {}", v.tolerance));
            }
            if let Some(want) = &v.reasons
                && reasons.get(..want.len()) != Some(want.as_slice())
            {
                return Some(format!("reasons {reasons:?} do not start with {want:?}"));
            }
            None
        }
        Answer::Features(features) => {
            let want = v.features.as_ref()?;
            for (name, expected) in want {
                let actual = features.get(name).unwrap_or(&Json::Null);
                if !json_close(actual, expected, v.tolerance) {
                    return Some(format!(
                        "feature `{name}` is {actual}, expected {expected} ± {}",
                        v.tolerance
                    ));
                }
            }
            None
        }
    }
}

/// Runs every vector on `version` under its production limits, twice (see the
/// module docs). Blocking: call it from a loading thread, never an async worker.
///
/// Each pass runs the vectors in order against a scratch state store of its
/// own, so a stateful plugin's vectors can express a sequence of events, the
/// live state is never touched, and the second pass must answer exactly as
/// the first.
pub fn check(version: &PluginVersion, vectors: &[Vector]) -> Report {
    // Vectors may expect faults; they are not the version's record.
    let _paused = version.pause_breaker();
    let pass = || {
        state::backend::sync_scope(Access::scratch(), || {
            vectors.iter().map(|v| run_one(version, v)).collect::<Vec<(Answer, u64, Duration)>>()
        })
    };
    let first = pass();
    let second = pass();
    let results = vectors
        .iter()
        .zip(first)
        .zip(second)
        .map(|((v, (answer, fuel_used, elapsed)), (again, _, _))| {
            let mut failure = compare(v, &answer);
            if failure.is_none() && again != answer {
                failure = Some(format!(
                    "a second run answered differently ({again:?} after {answer:?}): the plugin keeps \
                     state between calls"
                ));
            }
            VectorResult { name: v.name.clone(), failure, fuel_used, elapsed }
        })
        .collect();
    Report { vectors: results }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_checks_shape_per_world() {
        let ok = r#"{"name": "a", "input": {"x": 1}, "score": 0.5}"#;
        assert_eq!(parse(ok, World::Scorer).unwrap()[0].tolerance, 1e-9);
        assert!(parse(ok, World::Extractor).is_err());
        let both = r#"{"name": "a", "input": {}, "score": 0.5, "error": "invalid_input"}"#;
        assert!(parse(both, World::Scorer).unwrap_err().to_string().contains("exactly one"));
        let typo = r#"{"name": "a", "input": {}, "scroe": 0.5}"#;
        assert!(parse(typo, World::Scorer).unwrap_err().to_string().contains("scroe"));
        assert!(matches!(parse("\n\n", World::Scorer), Err(VectorsError::Empty)));
        let e = parse(&format!("{ok}\nnot json"), World::Scorer).unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn read_names_the_line_that_is_not_utf8_and_refuses_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let ok = r#"{"name": "a", "input": {"x": 1}, "score": 0.5}"#;
        let mut bytes = format!("{ok}\n{ok}\n").into_bytes();
        bytes.extend_from_slice(b"\"\xff\"\n");
        std::fs::write(dir.path().join(FILE), bytes).unwrap();
        let e = read(dir.path(), World::Scorer).unwrap_err();
        assert!(matches!(e, VectorsError::Invalid { line: 3, .. }), "{e}");
        assert!(e.to_string().contains("not UTF-8"), "{e}");
        std::fs::remove_file(dir.path().join(FILE)).unwrap();
        std::fs::create_dir(dir.path().join(FILE)).unwrap();
        let e = read(dir.path(), World::Scorer).unwrap_err();
        assert!(matches!(e, VectorsError::NotAFile { kind: "directory", .. }), "{e}");
    }

    #[test]
    fn compare_uses_tolerance_reasons_and_error_kinds() {
        let v = |extra: &str| {
            parse(&format!(r#"{{"name": "a", "input": {{}}, {extra}}}"#), World::Scorer).unwrap()
        };
        let got = Answer::Score { score: 0.5000001, reasons: vec!["x".into(), "y".into()] };
        assert!(compare(&v(r#""score": 0.5, "tolerance": 1e-6"#)[0], &got).is_none());
        assert!(compare(&v(r#""score": 0.5"#)[0], &got).is_some());
        assert!(compare(&v(r#""score": 0.5, "tolerance": 1e-6, "reasons": ["x"]"#)[0], &got).is_none());
        assert!(compare(&v(r#""score": 0.5, "tolerance": 1e-6, "reasons": ["y"]"#)[0], &got).is_some());
        let err = Answer::Error("invalid_input (field `x` is required)".into());
        assert!(compare(&v(r#""error": "invalid_input""#)[0], &err).is_none());
        assert!(compare(&v(r#""error": "out_of_fuel""#)[0], &err).is_some());
        assert!(compare(&v(r#""score": 0.5"#)[0], &err).unwrap().contains("invalid_input"));
    }
}
