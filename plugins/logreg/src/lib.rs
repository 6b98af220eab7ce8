//! # logreg — a logistic-regression scorer with signed reason codes
//!
//! Shows: a scorer whose model (intercept + one weight per feature) comes from a
//! file in its model directory or from its `[config]`, parsed once in `init`;
//! the positional fast path (`Features::numbers`) for a dense feature vector;
//! and reason codes — the largest contributions `w_i * x_i`, signed.
//!
//! Config: `model_file` (a JSON file in the model dir: `{"intercept": f, "weights":
//! {"feature": w, …}}`) *or* inline `intercept` and `weights`; `top_reasons`
//! (default 3); `impute_missing` (default false: every feature is required; true:
//! a missing feature contributes nothing); `open_inputs` (default false: inputs are
//! declared and arrive positionally; true: nothing is declared and features arrive
//! by name — the slower names-based path, kept for comparison in the benches).
//!
//! Run it: `cargo run -- call logreg --input '{"amount_usd_log": 6.2, "cross_border": true, …}'`
//! (see README). Test its logic natively: `cargo test -p logreg`.

pub mod model;

use std::collections::BTreeMap;

use scorehost_guest::prelude::*;
use scorehost_guest::read_model_file;
use serde::Deserialize;

/// The model: feature names in declared order, their weights, the intercept.
#[derive(Debug, Deserialize)]
struct Model {
    intercept: f64,
    weights: BTreeMap<String, f64>,
}

/// The initialised scorer.
pub struct LogReg {
    names: Vec<String>,
    weights: Vec<f64>,
    intercept: f64,
    top_reasons: usize,
    impute_missing: bool,
    /// Name → weight index, for the names-based path.
    open_inputs: Option<std::collections::HashMap<String, usize>>,
}

impl Scorer for LogReg {
    fn init(config: &Config) -> Result<Self> {
        let model: Model = match config.get("model_file") {
            Some(file) => {
                let file = file.trim_matches('"');
                let bytes = read_model_file(file)?;
                serde_json::from_slice(&bytes).map_err(|e| {
                    PluginError::internal(format!("model file `{file}` is not a logreg model: {e}"))
                })?
            }
            None => Model {
                intercept: config.parse("intercept")?.unwrap_or(0.0),
                weights: config.json("weights")?.ok_or_else(|| {
                    PluginError::internal(
                        "config needs `model_file` or `weights` (a table of feature = weight)",
                    )
                })?,
            },
        };
        if model.weights.is_empty() {
            return Err(PluginError::internal("the model has no weights"));
        }
        if let Some((name, w)) = model.weights.iter().find(|(_, w)| !w.is_finite()) {
            return Err(PluginError::internal(format!("weight of `{name}` is not finite: {w}")));
        }
        let (names, weights): (Vec<String>, Vec<f64>) = model.weights.into_iter().unzip();
        let open = config.parse("open_inputs")?.unwrap_or(false);
        Ok(LogReg {
            open_inputs: open.then(|| names.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect()),
            names,
            weights,
            intercept: model.intercept,
            top_reasons: config.parse("top_reasons")?.unwrap_or(3),
            impute_missing: config.parse("impute_missing")?.unwrap_or(false),
        })
    }

    fn metadata(&self) -> Metadata {
        let meta = Metadata::new("logreg", env!("CARGO_PKG_VERSION"))
            .description(
                "Logistic regression: probability of fraud with the top signed contributions as reasons.",
            )
            .output(float("probability").doc("P(fraud), in [0, 1]"));
        if self.open_inputs.is_some() {
            return meta.open_inputs();
        }
        self.names.iter().fold(meta, |m, name| {
            let spec = float(name).doc("model feature (bool accepted as 0/1)");
            m.input(if self.impute_missing { spec } else { spec.required() })
        })
    }

    fn score(&self, f: &Features) -> Result<Score> {
        let by_name;
        let xs = match &self.open_inputs {
            // All inputs are floats, so numbers() is exactly the weight order.
            None => f.numbers(),
            Some(index) => {
                by_name = self.by_name(f, index)?;
                &by_name
            }
        };
        let mut contributions = Vec::with_capacity(xs.len());
        let p = model::score(self.intercept, &self.weights, xs, &mut contributions);
        let score = contributions
            .iter()
            .take(self.top_reasons)
            .fold(Score::new(p), |s, &(i, c)| s.reason(self.names[i].as_str(), c));
        Ok(score)
    }
}

impl LogReg {
    /// The names-based path: look every undeclared field up by name.
    fn by_name(&self, f: &Features, index: &std::collections::HashMap<String, usize>) -> Result<Vec<f64>> {
        use scorehost_guest::bindings::types::Value as V;
        let mut xs = vec![f64::NAN; self.weights.len()];
        for field in f.extra() {
            if let Some(&i) = index.get(&field.name) {
                xs[i] = match field.value {
                    V::Float(x) => x,
                    V::Int(n) => n as f64,
                    V::Boolean(b) => f64::from(u8::from(b)),
                    V::Null => f64::NAN,
                    _ => {
                        return Err(PluginError::invalid_input(format!(
                            "field `{}` must be a number",
                            field.name
                        )));
                    }
                };
            }
        }
        if !self.impute_missing
            && let Some(i) = xs.iter().position(|x| x.is_nan())
        {
            return Err(PluginError::invalid_input(format!(
                "field `{}` is required but missing",
                self.names[i]
            )));
        }
        Ok(xs)
    }
}

export_scorer!(LogReg);

#[cfg(test)]
mod tests {
    use super::*;
    use model::sigmoid;
    use scorehost_guest::testing::Harness;
    use serde_json::json;

    fn inline() -> Harness<LogReg> {
        let config = Config::new([("intercept", "-1.0"), ("weights", r#"{"a": 2.0, "b": -0.5}"#)]);
        Harness::scorer(config).unwrap()
    }

    #[test]
    fn probability_and_signed_reasons() {
        let s = inline().score(&json!({"a": 1.0, "b": 4})).unwrap();
        // z = -1 + 2 - 2 = -1
        assert!((s.value - sigmoid(-1.0)).abs() < 1e-12);
        assert_eq!(s.reasons[0].code, "a");
        assert_eq!(s.reasons[0].weight, 2.0);
        assert_eq!(s.reasons[1].weight, -2.0);
    }

    #[test]
    fn missing_feature_is_the_callers_error() {
        let e = inline().score(&json!({"a": 1.0})).unwrap_err();
        assert_eq!(e.kind, scorehost_guest::ErrorKind::InvalidInput);
        assert!(e.message.contains("`b`"), "{}", e.message);
    }

    #[test]
    fn names_based_path_gives_the_same_score() {
        let config = |open: &str| {
            Config::new([
                ("intercept", "-1.0"),
                ("weights", r#"{"a": 2.0, "b": -0.5}"#),
                ("open_inputs", open),
            ])
        };
        let positional = Harness::<LogReg>::scorer(config("false")).unwrap();
        let named = Harness::<LogReg>::scorer(config("true")).unwrap();
        assert!(named.metadata().open_inputs && named.metadata().inputs.is_empty());
        let input = json!({"a": 1.5, "b": 3, "unrelated": "x"});
        assert_eq!(positional.score(&input).unwrap(), named.score(&input).unwrap());
        assert!(named.score(&json!({"a": 1.0})).is_err());
    }

    #[test]
    fn bundled_model_file_loads() {
        scorehost_guest::testing::set_model_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/model"));
        let h = Harness::<LogReg>::scorer(Config::new([("model_file", "weights.json")])).unwrap();
        assert!(h.metadata().inputs.len() >= 5);
    }
}
