//! The gbdt plugin in wasm reproduces xgboost's predictions on every fixture
//! (XGBoost 1.7, 2.1 and 3.x; binary:logistic and reg:squarederror; inputs
//! with missing values written as null).

use std::path::Path;

use serde_json::{Map, Value};

use crate::support::{copy_with, runtime};

#[test]
fn wasm_predictions_match_xgboost() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/gbdt/fixtures");
    let mut checked = 0;
    for version in std::fs::read_dir(&fixtures).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()) {
        for case in std::fs::read_dir(&version).unwrap().map(|e| e.unwrap().path()) {
            let dir = copy_with("gbdt", |m| m);
            std::fs::copy(case.join("model.json"), dir.path().join("model/model.json")).unwrap();
            let v = runtime().load(dir.path()).unwrap_or_else(|e| panic!("{}: {e}", case.display()));
            assert!(v.batches_as_frames());
            let cases: Value =
                serde_json::from_slice(&std::fs::read(case.join("cases.json")).unwrap()).unwrap();
            let names = cases["feature_names"].as_array().unwrap();
            let regression = cases["objective"] == "reg:squarederror";
            let rows: Vec<Map<String, Value>> = cases["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|row| {
                    // Null values are sent as null; every third row omits them instead.
                    names
                        .iter()
                        .zip(row.as_array().unwrap())
                        .filter(|(_, v)| !v.is_null() || checked % 3 != 0)
                        .map(|(n, v)| (n.as_str().unwrap().to_owned(), v.clone()))
                        .collect()
                })
                .collect();
            // Single calls and one batch must agree with xgboost.
            let batch = v.score_batch(&rows, None).unwrap().value;
            for ((row, want), batched) in rows.iter().zip(cases["expected"].as_array().unwrap()).zip(batch) {
                let want = want.as_f64().unwrap();
                let single = v.score(row, None).unwrap().value;
                let got = single.score;
                let tolerance = if regression { 1e-5 * want.abs().max(1.0) } else { 1e-6 };
                assert!((got - want).abs() <= tolerance, "{}: {got} vs xgboost {want}", case.display());
                assert_eq!(batched.unwrap(), single, "the frame path answers what a single call does");
                checked += 1;
            }
        }
    }
    assert!(checked >= 6 * 40, "checked only {checked} rows");
}
