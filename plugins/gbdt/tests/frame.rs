//! The batch path (`score_frame`: dense vectors, reasons by index) against
//! `score` row by row, natively, on the bundled model's regression rows and
//! on rows with every feature missing. The wasm build runs the same
//! comparison through the host in runtime/tests/all/gbdt.rs.

use std::path::Path;

use scorehost_guest::Config;
use scorehost_guest::testing::{Harness, set_model_dir};
use serde_json::{Value, json};

#[test]
fn score_frame_equals_score_row_by_row() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    set_model_dir(root.join("model"));
    let gbdt = Harness::<gbdt::Gbdt>::scorer(Config::new([("model_file", "model.json")])).unwrap();
    let mut rows: Vec<Value> = std::fs::read_to_string(root.join("tests.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|case| case.get("score").is_some()) // not the invalid-input case
        .map(|case| case["input"].clone())
        .collect();
    rows.push(json!({}));
    assert!(rows.len() >= 6, "{} rows", rows.len());

    let batch = gbdt.score_batch(&rows);
    assert_eq!(batch.len(), rows.len());
    let mut reasons = 0;
    for (row, framed) in rows.iter().zip(batch) {
        let single = gbdt.score(row).unwrap();
        let framed = framed.unwrap();
        assert_eq!(framed, single, "{row}");
        reasons += framed.reasons.len();
    }
    assert!(reasons >= 3 * (rows.len() - 1), "{reasons} reasons: the comparison must cover reasons");
}
