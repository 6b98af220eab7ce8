//! The columnar batch of contract 0.1.1: a batch's rows laid out as one
//! `frame`, and the plugin's `frame-scores` checked and read back into one
//! result per row.
//!
//! A batch of rows costs the canonical ABI one guest allocation per list per
//! row (five per row, empty ones included) and one host string per reason; a
//! frame is four lists for the whole batch and reasons by index. What comes
//! back is checked as strictly as a row's `score-result`: a broken frame (a
//! row or code index out of range, rows out of order, the wrong number of
//! scores) fails the whole call as invalid output, and a row's own problems
//! (a non-finite score, too many reasons) fail that row alone.

use serde_json::{Map, Value as Json};

use crate::sandbox::bindings::frames::{Frame, FrameScores};
use crate::sandbox::bindings::types::{self, FieldSpec, Row};
use crate::sandbox::error::CallError;
use crate::version::layout::Layout;
use crate::version::output::{
    MAX_REASON_CODE_BYTES, MAX_REASONS, Scored, code_too_long, scored, too_many_reasons,
};

/// The rows of a batch the host accepted, in the shape the plugin takes them.
pub(crate) enum Batch {
    /// One `row` each, for `score-batch` and `extract-batch`.
    Rows(Vec<Row>),
    /// One frame, for `score-frame`: JSON goes straight into its lists.
    Frame(Frame),
}

impl Batch {
    /// An empty batch, as a frame when `frame`, with room for `rows` rows of `layout`.
    pub(crate) fn new(frame: bool, rows: usize, layout: &Layout) -> Self {
        if !frame {
            return Batch::Rows(Vec::with_capacity(rows));
        }
        let (n, t, v) = layout.widths();
        Batch::Frame(Frame {
            rows: 0,
            numbers: Vec::with_capacity(rows * n),
            texts: Vec::with_capacity(rows * t),
            vectors: Vec::with_capacity(rows * v),
        })
    }

    /// Lays `obj` out through `layout` as the next row; a refused row adds nothing.
    pub(crate) fn push(&mut self, layout: &Layout, obj: &Map<String, Json>) -> Result<(), CallError> {
        match self {
            Batch::Rows(rows) => rows.push(layout.row(obj)?),
            Batch::Frame(frame) => layout.append_to(obj, frame)?,
        }
        Ok(())
    }

    /// Whether it holds no row.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many rows it holds.
    pub(crate) fn len(&self) -> usize {
        match self {
            Batch::Rows(rows) => rows.len(),
            Batch::Frame(frame) => frame.rows as usize,
        }
    }
}

fn broken(message: String) -> CallError {
    CallError::InvalidOutput { message: format!("score-frame: {message}") }
}

/// One result per row of a frame of `rows` rows from the plugin's answer.
/// Reason codes are resolved against `inputs` (the plugin's declared inputs)
/// and the answer's own `codes`.
pub(crate) fn unpack(
    rows: usize,
    out: FrameScores,
    inputs: &[FieldSpec],
) -> Result<Vec<Result<Scored, CallError>>, CallError> {
    if out.values.len() != rows {
        return Err(broken(format!("frame of {rows} rows returned {} scores", out.values.len())));
    }
    let code_count = inputs.len() + out.codes.len();
    // Check every index before building anything, and count each row's reasons.
    let mut per_row = vec![0usize; rows];
    let mut last = 0;
    for r in &out.reasons {
        let row = r.row as usize;
        if row >= rows || row < last {
            return Err(broken(format!("reason for row {row} out of order or range (frame of {rows} rows)")));
        }
        if r.code as usize >= code_count {
            return Err(broken(format!(
                "reason code index {} out of range ({} inputs, {} codes)",
                r.code,
                inputs.len(),
                out.codes.len()
            )));
        }
        last = row;
        per_row[row] += 1;
    }
    let mut failed: Vec<Option<types::PluginError>> = vec![None; rows];
    let mut after = None;
    for e in out.errors {
        let row = e.row as usize;
        if row >= rows || after.is_some_and(|a| row <= a) {
            return Err(broken(format!("error for row {row} out of order or range (frame of {rows} rows)")));
        }
        after = Some(row);
        failed[row] = Some(e.error);
    }

    let code = |i: u32| -> &str {
        let i = i as usize;
        match inputs.get(i) {
            Some(spec) => &spec.name,
            None => &out.codes[i - inputs.len()],
        }
    };
    let mut reasons = out.reasons.iter().peekable();
    let mut results = Vec::with_capacity(rows);
    for (row, (&value, error)) in out.values.iter().zip(failed).enumerate() {
        // The caps `scored` applies, checked before any string is built: one
        // long code can be named by every reason of every row.
        let count = per_row[row];
        let mut own = Vec::with_capacity(if count > MAX_REASONS { 0 } else { count });
        let mut too_long = None;
        while let Some(r) = reasons.next_if(|r| r.row as usize == row) {
            let code = code(r.code);
            if code.len() > MAX_REASON_CODE_BYTES {
                too_long.get_or_insert(code.len());
            } else if count <= MAX_REASONS && too_long.is_none() {
                own.push(types::Reason { code: code.to_owned(), weight: r.weight });
            }
        }
        results.push(if let Some(e) = error {
            Err(crate::sandbox::error::plugin_error(e))
        } else if count > MAX_REASONS {
            Err(too_many_reasons(count))
        } else if let Some(len) = too_long {
            Err(code_too_long(len))
        } else {
            scored(types::ScoreResult { value, reasons: own })
        });
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::bindings::frames::{FrameError, FrameReason};
    use crate::sandbox::bindings::types::{ErrorKind as WitKind, PluginError, ValueKind};
    use crate::sandbox::error::ErrorKind;

    fn inputs() -> Vec<FieldSpec> {
        ["a", "b"]
            .iter()
            .map(|n| FieldSpec {
                name: (*n).into(),
                kind: ValueKind::Float,
                required: false,
                doc: String::new(),
            })
            .collect()
    }

    fn reason(row: u32, code: u32, weight: f64) -> FrameReason {
        FrameReason { row, code, weight }
    }

    fn answer(values: Vec<f64>, reasons: Vec<FrameReason>) -> FrameScores {
        FrameScores { values, reasons, codes: vec!["custom".into()], errors: Vec::new() }
    }

    #[test]
    fn reasons_resolve_to_input_names_and_extra_codes() {
        let out = answer(vec![0.1, 0.2], vec![reason(0, 1, 2.0), reason(0, 2, -1.0), reason(1, 0, 0.5)]);
        let got = unpack(2, out, &inputs()).unwrap();
        let got: Vec<_> = got.into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(got[0].reasons, [("b".to_owned(), 2.0), ("custom".to_owned(), -1.0)]);
        assert_eq!((got[1].score, got[1].reasons.clone()), (0.2, vec![("a".to_owned(), 0.5)]));
    }

    #[test]
    fn a_row_error_or_bad_score_fails_that_row_alone() {
        let mut out = answer(vec![f64::NAN, 0.3, f64::INFINITY], vec![reason(1, 0, f64::NAN)]);
        out.errors.push(FrameError {
            row: 0,
            error: PluginError { kind: WitKind::InvalidInput, message: "no amount".into() },
        });
        let got = unpack(3, out, &inputs()).unwrap();
        assert_eq!(got[0].as_ref().unwrap_err().kind(), ErrorKind::InvalidInput);
        assert_eq!(got[1].as_ref().unwrap_err().kind(), ErrorKind::InvalidOutput, "NaN weight");
        assert_eq!(got[2].as_ref().unwrap_err().kind(), ErrorKind::InvalidOutput, "infinite score");
    }

    #[test]
    fn too_many_reasons_fail_the_row_without_building_them() {
        let many = (0..=MAX_REASONS as u32).map(|_| reason(0, 0, 1.0)).collect();
        let got = unpack(2, answer(vec![0.5, 0.5], many), &inputs()).unwrap();
        let message = got[0].as_ref().unwrap_err().to_string();
        assert!(message.contains("257 reasons"), "{message}");
        assert!(got[1].is_ok());
    }

    #[test]
    fn a_code_over_the_cap_fails_each_row_naming_it_and_is_never_copied() {
        let mut out = answer(vec![0.5; 3], Vec::new());
        out.codes = vec!["x".repeat(1 << 20)];
        out.reasons = (0..2).flat_map(|row| (0..200).map(move |_| reason(row, 2, 1.0))).collect();
        out.reasons.push(reason(2, 0, 1.0));
        let got = unpack(3, out, &inputs()).unwrap();
        for row in &got[..2] {
            let message = row.as_ref().unwrap_err().to_string();
            assert!(message.contains("1048576 bytes"), "{message}");
        }
        assert_eq!(got[2].as_ref().unwrap().reasons, [("a".to_owned(), 1.0)]);
    }

    #[test]
    fn a_broken_frame_fails_the_whole_call() {
        let cases = [
            (answer(vec![0.5], Vec::new()), "returned 1 scores"),
            (answer(vec![0.5, 0.5], vec![reason(2, 0, 1.0)]), "row 2 out of order or range"),
            (answer(vec![0.5, 0.5], vec![reason(1, 0, 1.0), reason(0, 0, 1.0)]), "row 0 out of order"),
            (answer(vec![0.5, 0.5], vec![reason(0, 3, 1.0)]), "code index 3 out of range"),
        ];
        for (out, want) in cases {
            let e = unpack(2, out, &inputs()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidOutput);
            assert!(e.to_string().contains(want), "{e} lacks {want}");
        }
        let mut twice = answer(vec![0.5, 0.5], Vec::new());
        let error = PluginError { kind: WitKind::Internal, message: "x".into() };
        twice.errors = vec![FrameError { row: 1, error: error.clone() }, FrameError { row: 1, error }];
        assert!(unpack(2, twice, &inputs()).unwrap_err().to_string().contains("error for row 1"));
    }
}
