//! Many rows in one guest call: the columnar `frame-scorer` export (contract 0.1.1).
//!
//! The host sends a scorer's batches as one [`wit::Frame`] — every row's numbers
//! in one list — and takes back one [`wit::FrameScores`], reasons by index. The
//! default [`crate::Scorer::score_frame`] reads each row through [`Features`]
//! and calls `score`, so every scorer gets the columnar path without a line of
//! its own. A plugin that scores a dense vector and explains by input index (a
//! tree ensemble, a linear model) can override it with [`Frame::numbers`] and
//! [`FrameOut::push_indexed`] and build no reason string at all.

use std::collections::HashMap;

use crate::bindings::frames as wit;
use crate::error::{PluginError, Result};
use crate::features::{Features, Layout, Slots};
use crate::metadata::Score;

/// A read-only view of a frame's rows through the plugin's input layout.
pub struct Frame<'a> {
    frame: &'a wit::Frame,
    layout: &'a Layout,
    rows: usize,
    widths: (usize, usize, usize),
}

impl<'a> Frame<'a> {
    /// A view of `frame`, after checking that its lists hold `rows` × slots
    /// entries of each kind (an internal error naming both otherwise: host and
    /// plugin disagree on the layout).
    pub fn new(frame: &'a wit::Frame, layout: &'a Layout) -> Result<Self> {
        let rows = frame.rows as usize;
        let widths = layout.widths();
        let (n, t, v) = widths;
        let lens = (frame.numbers.len(), frame.texts.len(), frame.vectors.len());
        if lens != (rows * n, rows * t, rows * v) {
            return Err(PluginError::internal(format!(
                "frame of {rows} rows has {} numbers, {} texts, {} vectors; the plugin declares \
                 {n}, {t}, {v} per row: host and plugin disagree on the layout",
                lens.0, lens.1, lens.2
            )));
        }
        Ok(Self { frame, layout, rows, widths })
    }

    /// How many rows the frame holds.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Row `r`'s numeric slots in declared order (missing ones are NaN), as
    /// [`Features::numbers`] gives them. Panics if `r` is not below [`Self::rows`].
    pub fn numbers(&self, r: usize) -> &'a [f64] {
        let n = self.widths.0;
        &self.frame.numbers[r * n..(r + 1) * n]
    }

    /// Row `r` by name, as `score` receives it. Panics if `r` is not below [`Self::rows`].
    pub fn features(&self, r: usize) -> Features<'a> {
        let (_, t, v) = self.widths;
        let slots = Slots {
            numbers: self.numbers(r),
            missing: None,
            texts: &self.frame.texts[r * t..(r + 1) * t],
            vectors: &self.frame.vectors[r * v..(r + 1) * v],
            extra: &[],
        };
        Features::from_slots(slots, self.layout)
    }
}

/// The results of a frame, written row by row in row order.
pub struct FrameOut<'a> {
    layout: &'a Layout,
    rows: usize,
    out: wit::FrameScores,
    /// Codes that are not input names, deduplicated, by their index in `out.codes`.
    codes: HashMap<String, u32>,
}

impl<'a> FrameOut<'a> {
    /// Room for `rows` results of a plugin with input layout `layout`.
    pub fn new(layout: &'a Layout, rows: usize) -> Self {
        let out = wit::FrameScores {
            values: Vec::with_capacity(rows),
            reasons: Vec::new(),
            codes: Vec::new(),
            errors: Vec::new(),
        };
        Self { layout, rows, out, codes: HashMap::new() }
    }

    /// The row the next push is for.
    fn next_row(&self) -> u32 {
        self.out.values.len() as u32
    }

    /// Appends the next row's result, as `score` returned it. Reason codes that
    /// name a declared input travel as its index; any other code is sent once
    /// per frame. Pushes beyond the frame's rows are ignored.
    pub fn push(&mut self, result: Result<Score>) {
        match result {
            Ok(score) => {
                let row = self.next_row();
                for r in score.reasons {
                    let code = match self.layout.index(&r.code) {
                        Some(i) => i,
                        None => self.code(r.code),
                    };
                    self.reason(row, code, r.weight);
                }
                self.value(score.value);
            }
            Err(e) => self.push_error(e),
        }
    }

    /// Appends the next row's score with reasons given as (declared input index,
    /// weight), largest magnitude first: no string is built or sent.
    /// An index that is not a declared input fails this row alone.
    pub fn push_indexed(&mut self, value: f64, reasons: &[(usize, f64)]) {
        let inputs = self.layout.specs().len();
        if let Some(&(input, _)) = reasons.iter().find(|(input, _)| *input >= inputs) {
            return self.push_error(PluginError::internal(format!(
                "reason names input {input}, but the plugin declares {inputs} inputs"
            )));
        }
        let row = self.next_row();
        if self.out.reasons.capacity() == 0 {
            // Models give most rows the same number of reasons: size for that once.
            self.out.reasons.reserve(self.rows * reasons.len());
        }
        for &(input, weight) in reasons {
            self.reason(row, input as u32, weight);
        }
        self.value(value);
    }

    /// Appends the next row as failed with `error`; the other rows are unaffected.
    pub fn push_error(&mut self, error: PluginError) {
        if self.out.values.len() < self.rows {
            self.out.errors.push(wit::FrameError { row: self.next_row(), error: error.into() });
        }
        self.value(f64::NAN);
    }

    fn reason(&mut self, row: u32, code: u32, weight: f64) {
        if (row as usize) < self.rows {
            self.out.reasons.push(wit::FrameReason { row, code, weight });
        }
    }

    fn value(&mut self, value: f64) {
        if self.out.values.len() < self.rows {
            self.out.values.push(value);
        }
    }

    fn code(&mut self, code: String) -> u32 {
        let inputs = self.layout.specs().len() as u32;
        let next = self.out.codes.len() as u32;
        *self.codes.entry(code).or_insert_with_key(|code| {
            self.out.codes.push(code.clone());
            inputs + next
        })
    }

    /// The finished results. Rows the plugin left unanswered fail with an
    /// internal error, so the host always gets one result per row.
    pub fn finish(mut self) -> wit::FrameScores {
        let answered = self.out.values.len();
        while self.out.values.len() < self.rows {
            self.push_error(PluginError::internal(format!(
                "score_frame answered {answered} of {} rows",
                self.rows
            )));
        }
        self.out
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use serde_json::json;

    use crate::prelude::*;
    use crate::testing::Harness;

    /// Reads every kind, fails on request, and explains with an input name
    /// and with a code that is no input.
    struct Mixed;

    impl Scorer for Mixed {
        fn init(_: &Config) -> Result<Self> {
            Ok(Mixed)
        }
        fn metadata(&self) -> Metadata {
            Metadata::new("mixed", "0.1.0")
                .input(float("amount").required())
                .input(text("country"))
                .input(int("count"))
                .input(floats("embedding"))
        }
        fn score(&self, f: &Features) -> Result<Score> {
            let amount = f.float("amount")?;
            if amount < 0.0 {
                return Err(PluginError::invalid_input(format!("amount {amount} is negative")));
            }
            let country = f.text_opt("country")?.unwrap_or("??");
            let count = f.int_opt("count")?.unwrap_or(-1) as f64;
            let norm: f64 = f.floats_opt("embedding")?.map_or(0.0, |v| v.iter().sum());
            Ok(Score::new(amount + count + norm)
                .reason("amount", amount)
                .reason(format!("country_{country}"), 1.0)
                .reason("country_??", 0.5))
        }
    }

    #[test]
    fn the_default_frame_path_equals_score_row_by_row() {
        let h = Harness::<Mixed>::scorer(Config::new(Vec::<(String, String)>::new())).unwrap();
        let rows = [
            json!({"amount": 3.0, "country": "DE", "count": 2, "embedding": [1.0, 2.0]}),
            json!({"amount": 1.5}),
            json!({"amount": -1.0, "country": "FR"}),
            json!({"amount": 0.0, "country": "DE", "count": 0}),
        ];
        let batch = h.score_batch(&rows);
        assert_eq!(batch.len(), rows.len());
        for (row, framed) in rows.iter().zip(&batch) {
            assert_eq!(framed, &h.score(row), "{row}");
        }
        assert!(batch[2].is_err() && batch[1].is_ok() && batch[3].is_ok());
        // A row the host would refuse fails alone, as in the host.
        let refused = h.score_batch(&[json!({"amount": "lots"}), json!({"amount": 2.0})]);
        assert_eq!(refused[0].as_ref().unwrap_err().kind, crate::ErrorKind::InvalidInput);
        assert_eq!(refused[1].as_ref().unwrap().value, 1.0);
    }

    #[test]
    fn codes_that_are_not_inputs_are_sent_once_per_frame() {
        let h = Harness::<Mixed>::scorer(Config::new(Vec::<(String, String)>::new())).unwrap();
        let rows: Vec<_> = (0..5).map(|_| h.row(&json!({"amount": 1.0, "country": "DE"})).unwrap()).collect();
        let layout = crate::Layout::new(&h.metadata().inputs);
        let frame = h.frame(&rows);
        let view = super::Frame::new(&frame, &layout).unwrap();
        let mut out = super::FrameOut::new(&layout, rows.len());
        h.plugin().score_frame(&view, &mut out);
        let out = out.finish();
        assert_eq!(out.codes, ["country_DE", "country_??"]);
        assert_eq!(out.reasons.len(), 15);
        assert_eq!(out.reasons[0].code, 0, "`amount` is input 0");
        assert_eq!(out.reasons[1].code, 4, "the first code after the 4 inputs");
    }

    #[test]
    fn a_frame_of_the_wrong_shape_fails_every_row() {
        let h = Harness::<Mixed>::scorer(Config::new(Vec::<(String, String)>::new())).unwrap();
        let rows = vec![h.row(&json!({"amount": 1.0})).unwrap(); 2];
        let mut frame = h.frame(&rows);
        frame.numbers.pop();
        let results = h.score_frame(&frame);
        assert_eq!(results.len(), 2);
        for r in results {
            let e = r.unwrap_err();
            assert!(e.message.contains("host and plugin disagree on the layout"), "{e}");
        }
    }

    #[test]
    fn rows_a_plugin_leaves_unanswered_fail_and_extra_pushes_are_dropped() {
        let layout = crate::Layout::new(&[float("x")]);
        let mut short = super::FrameOut::new(&layout, 3);
        short.push_indexed(0.5, &[(0, 1.0)]);
        let out = short.finish();
        assert_eq!(out.values.len(), 3);
        assert_eq!(out.errors.iter().map(|e| e.row).collect::<Vec<_>>(), [1, 2]);
        assert!(out.errors[0].error.message.contains("answered 1 of 3 rows"));

        let mut bad = super::FrameOut::new(&layout, 2);
        bad.push_indexed(0.5, &[(1, 1.0)]);
        bad.push_indexed(0.7, &[(0, 1.0)]);
        let out = bad.finish();
        assert_eq!((out.values[1], out.reasons.len(), out.errors.len()), (0.7, 1, 1));
        assert!(out.errors[0].error.message.contains("declares 1 inputs"), "{:?}", out.errors);

        let mut long = super::FrameOut::new(&layout, 1);
        long.push_indexed(0.5, &[]);
        long.push_indexed(0.7, &[(0, 1.0)]);
        long.push_error(PluginError::internal("late"));
        let out = long.finish();
        assert_eq!((out.values, out.reasons.len(), out.errors.len()), (vec![0.5], 0, 0));
    }
}
