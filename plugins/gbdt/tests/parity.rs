//! The native evaluator against xgboost's own predictions (fixtures written by
//! `fixtures/make_fixtures.py` with XGBoost 1.7, 2.1 and 3.x). The same check
//! runs on the wasm build in runtime/tests/all/gbdt.rs.

use std::path::Path;

use gbdt::model::{Ensemble, Objective};
use serde_json::Value;

fn cases() -> Vec<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut dirs = Vec::new();
    for version in std::fs::read_dir(root).unwrap() {
        let version = version.unwrap().path();
        if version.is_dir() {
            for case in std::fs::read_dir(&version).unwrap() {
                dirs.push(case.unwrap().path());
            }
        }
    }
    dirs.sort();
    dirs
}

#[test]
fn predictions_match_xgboost() {
    let dirs = cases();
    assert!(dirs.len() >= 6, "expected fixtures for 3 XGBoost versions x 2 objectives, found {dirs:?}");
    for dir in dirs {
        let model = Ensemble::from_json(&std::fs::read(dir.join("model.json")).unwrap()).unwrap();
        let cases: Value = serde_json::from_slice(&std::fs::read(dir.join("cases.json")).unwrap()).unwrap();
        let names: Vec<&str> =
            cases["feature_names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
        assert_eq!(model.feature_names, names, "{}", dir.display());
        let mut missing = 0;
        for (row, expected) in
            cases["rows"].as_array().unwrap().iter().zip(cases["expected"].as_array().unwrap())
        {
            let x: Vec<f64> =
                row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap_or(f64::NAN)).collect();
            missing += x.iter().filter(|v| v.is_nan()).count();
            let (got, want) = (model.predict(&x), expected.as_f64().unwrap());
            match model.objective {
                Objective::BinaryLogistic => {
                    assert!((got - want).abs() <= 1e-6, "{}: {got} vs {want}", dir.display())
                }
                Objective::SquaredError => {
                    assert!(
                        (got - want).abs() <= 1e-5 * want.abs().max(1.0),
                        "{}: {got} vs {want}",
                        dir.display()
                    )
                }
            }
        }
        assert!(missing > 0, "fixture {} has no missing values", dir.display());
    }
}

#[test]
fn contributions_sum_to_the_margin() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("model");
    let model = Ensemble::from_json(&std::fs::read(dir.join("model.json")).unwrap()).unwrap();
    let x = vec![f64::NAN; model.feature_names.len()];
    let with_nothing: f64 = model.contributions(&x).iter().sum();
    let x2: Vec<f64> = (0..model.feature_names.len()).map(|i| i as f64).collect();
    let with_values: f64 = model.contributions(&x2).iter().sum();
    // Contributions move the margin between rows exactly as the leaves do.
    let diff = f64::from(model.margin(&x2)) - f64::from(model.margin(&x));
    assert!(((with_values - with_nothing) - diff).abs() < 1e-4, "{with_values} - {with_nothing} vs {diff}");
}

#[test]
fn explain_is_predict_plus_the_largest_contributions() {
    // `explain` walks each tree once for both; it must agree with the
    // separate walks of `predict` and `contributions` on every fixture row.
    for dir in cases() {
        let model = Ensemble::from_json(&std::fs::read(dir.join("model.json")).unwrap()).unwrap();
        let cases: Value = serde_json::from_slice(&std::fs::read(dir.join("cases.json")).unwrap()).unwrap();
        let mut reasons = Vec::new();
        for row in cases["rows"].as_array().unwrap() {
            let x: Vec<f64> =
                row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap_or(f64::NAN)).collect();
            assert_eq!(model.explain(&x, 3, &mut reasons), model.predict(&x), "{}", dir.display());
            let mut want: Vec<(usize, f64)> =
                model.contributions(&x).into_iter().enumerate().filter(|(_, c)| *c != 0.0).collect();
            want.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
            want.truncate(3);
            assert!(!want.is_empty(), "{}: a row with no contribution", dir.display());
            assert_eq!(reasons, want, "{}", dir.display());
            assert_eq!(model.explain(&x, 0, &mut reasons), model.predict(&x));
            assert!(reasons.is_empty());
        }
    }
}

#[test]
fn rejects_what_it_cannot_evaluate() {
    for (doc, needle) in [
        (r#"{"nope": 1}"#, "learner"),
        (r#"{"learner": {"objective": {"name": "multi:softprob"}}}"#, "multi:softprob"),
        ("not json", "not JSON"),
    ] {
        let e = Ensemble::from_json(doc.as_bytes()).unwrap_err();
        assert!(e.0.contains(needle), "{}", e.0);
    }
}
