//! # gbdt — gradient-boosted trees from an XGBoost JSON model
//!
//! Shows: a scorer that parses a real model file once, in `init`, from its model
//! directory (`model_file`, default `model.json`: what XGBoost's
//! `Booster.save_model("model.json")` writes). Its inputs are the model's feature
//! names, so the host hands it a dense vector in model order; a null or absent
//! feature is *missing* and follows each tree's default branch, as in XGBoost.
//! Predictions equal `xgboost.predict()` (checked against fixtures made by
//! `plugins/gbdt/fixtures/make_fixtures.py`). Reasons are the per-feature
//! path contributions to the margin, largest first. Batches take the columnar
//! path (`score_frame`): one dense vector per row, reasons by feature index.
//!
//! Run it: `cargo run -- call gbdt --input '{"mean radius": 14.1, …}'`; test it:
//! `cargo test -p gbdt` (native) and `cargo test -p scorehost --test all gbdt` (in wasm).

pub mod model;

use model::{Ensemble, Objective};
use scorehost_guest::prelude::*;
use scorehost_guest::read_model_file;

/// The initialised scorer.
pub struct Gbdt {
    ensemble: Ensemble,
    top_reasons: usize,
}

impl Scorer for Gbdt {
    fn init(config: &Config) -> Result<Self> {
        let file = config.get("model_file").unwrap_or("model.json").trim_matches('"').to_owned();
        let ensemble = Ensemble::from_json(&read_model_file(&file)?)
            .map_err(|e| PluginError::internal(format!("model file `{file}`: {}", e.0)))?;
        scorehost_guest::log::info(&format!(
            "loaded {} trees over {} features",
            ensemble.len(),
            ensemble.feature_names.len()
        ));
        Ok(Gbdt { ensemble, top_reasons: config.parse("top_reasons")?.unwrap_or(3) })
    }

    fn metadata(&self) -> Metadata {
        let what = match self.ensemble.objective {
            Objective::BinaryLogistic => "probability (binary:logistic)",
            Objective::SquaredError => "prediction (reg:squarederror)",
        };
        let meta = Metadata::new("gbdt", env!("CARGO_PKG_VERSION"))
            .description("XGBoost tree ensemble; null or absent features are missing.")
            .output(float("prediction").doc(what));
        self.ensemble.feature_names.iter().fold(meta, |m, name| m.input(float(name).doc("model feature")))
    }

    fn score(&self, f: &Features) -> Result<Score> {
        let x = f.numbers(); // model order; missing = NaN
        let mut reasons = Vec::with_capacity(self.top_reasons);
        let value = self.ensemble.explain(x, self.top_reasons, &mut reasons);
        Ok(reasons
            .iter()
            .fold(Score::new(value), |s, &(i, c)| s.reason(self.ensemble.feature_names[i].as_str(), c)))
    }

    /// The batch path: the same `explain` per row, reasons by input index (the
    /// model's features are the inputs, in order), so no reason string is built.
    fn score_frame(&self, frame: &Frame, out: &mut FrameOut) {
        let mut reasons = Vec::with_capacity(self.top_reasons);
        for r in 0..frame.rows() {
            reasons.clear();
            let value = self.ensemble.explain(frame.numbers(r), self.top_reasons, &mut reasons);
            out.push_indexed(value, &reasons);
        }
    }
}

export_scorer!(Gbdt);
