//! # fraud-scorer — the `fraud` pipeline's model: a payment and its history
//!
//! Shows: a scorer over two extractors' features — the payment's own
//! (`txn-features`) and its recent history from the state store
//! (`velocity`) — where a missing history feature (the store down, no
//! e-mail) contributes nothing, so the pipeline still scores when state is
//! unavailable. The weights are `[config]`, so a retrained model is a new
//! version, not new code; the arithmetic is logreg's (`plugins/logreg/src/model.rs`).
//!
//! Run it: `cargo run -p scorehost-cli -- serve`, then `curl -s
//! localhost:8080/v1/pipelines/fraud -d '{"event_id": "e1", "card": "c1",
//! "amount": 120.5, "currency": "EUR", "timestamp": 1764165600}'`. Test it
//! natively: `cargo test -p fraud-scorer`.

#[path = "../../logreg/src/model.rs"]
mod model;

use std::collections::BTreeMap;

use scorehost_guest::prelude::*;

/// The model: feature names (sorted), their weights, the intercept.
pub struct FraudScorer {
    names: Vec<String>,
    weights: Vec<f64>,
    intercept: f64,
    top_reasons: usize,
}

impl Scorer for FraudScorer {
    fn init(config: &Config) -> Result<Self> {
        let weights: BTreeMap<String, f64> = config
            .json("weights")?
            .ok_or_else(|| PluginError::internal("config `weights` (feature = weight) is required"))?;
        if let Some((name, w)) = weights.iter().find(|(_, w)| !w.is_finite()) {
            return Err(PluginError::internal(format!("weight of `{name}` is not finite: {w}")));
        }
        let (names, weights) = weights.into_iter().unzip();
        Ok(FraudScorer {
            names,
            weights,
            intercept: config.parse("intercept")?.unwrap_or(0.0),
            top_reasons: config.parse("top_reasons")?.unwrap_or(3),
        })
    }

    fn metadata(&self) -> Metadata {
        let meta = Metadata::new("fraud-scorer", env!("CARGO_PKG_VERSION"))
            .description(
                "P(fraud) from a payment and its recent history, with the top contributions as reasons.",
            )
            .output(float("probability").doc("P(fraud), in [0, 1]"));
        self.names
            .iter()
            .fold(meta, |m, name| m.input(float(name).doc("model feature; missing contributes nothing")))
    }

    fn score(&self, f: &Features) -> Result<Score> {
        let mut contributions = Vec::with_capacity(self.weights.len());
        let p = model::score(self.intercept, &self.weights, f.numbers(), &mut contributions);
        Ok(contributions
            .iter()
            .take(self.top_reasons)
            .fold(Score::new(p), |s, &(i, c)| s.reason(self.names[i].as_str(), c)))
    }
}

export_scorer!(FraudScorer);

#[cfg(test)]
mod tests {
    use super::*;
    use scorehost_guest::testing::Harness;
    use serde_json::json;

    fn harness() -> Harness<FraudScorer> {
        let weights = r#"{"card_count_10m": 0.5, "cross_border": 1.0, "card_chargeback_rate": 8.0}"#;
        Harness::scorer(Config::new([("weights", weights), ("intercept", "-2.0")])).unwrap()
    }

    #[test]
    fn history_raises_the_score_and_its_absence_contributes_nothing() {
        let h = harness();
        let quiet = h.score(&json!({"cross_border": true, "card_count_10m": 1})).unwrap();
        let busy = h.score(&json!({"cross_border": true, "card_count_10m": 9})).unwrap();
        let unknown = h.score(&json!({"cross_border": true})).unwrap();
        assert!(busy.value > quiet.value && quiet.value > unknown.value);
        assert_eq!(busy.reasons[0].code, "card_count_10m");
        assert!((unknown.value - model::sigmoid(-1.0)).abs() < 1e-12);
    }
}
