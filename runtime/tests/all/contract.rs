//! Contract versions and the two batch shapes: plugins built with the SDK
//! (contract 0.1.1) take batches as one columnar frame and answer exactly what
//! single calls answer; a plugin built against 0.1.0 still loads and batches
//! through `score-batch`; what a frame answers is checked like a row's answer.

use scorehost::ErrorKind;
use serde_json::{Value, json};

use crate::examples::logreg_features;
use crate::support::{load, obj};

/// Every row of `rows` scored alone and in one batch: same score, same reasons.
fn batch_equals_single_calls(plugin: &str, rows: &[Value]) {
    let v = load(plugin);
    let rows: Vec<_> = rows.iter().cloned().map(obj).collect();
    let batch = v.score_batch(&rows, None).unwrap().value;
    assert_eq!(batch.len(), rows.len());
    for (row, batched) in rows.iter().zip(batch) {
        match (v.score(row, None), batched) {
            (Ok(single), Ok(batched)) => assert_eq!(batched, single.value, "{plugin}: {row:?}"),
            (Err(single), Err(batched)) => assert_eq!(batched, single, "{plugin}: {row:?}"),
            (single, batched) => panic!("{plugin}: {row:?}: single {single:?}, batch {batched:?}"),
        }
    }
}

#[test]
fn sdk_scorers_batch_as_frames_and_extractors_and_0_1_0_plugins_do_not() {
    assert!(load("logreg").batches_as_frames());
    assert!(load("gbdt").batches_as_frames());
    assert!(load("hostile-output").batches_as_frames());
    assert!(!load("txn-features").batches_as_frames(), "an extractor");
    assert!(!load("contract-0-1-0").batches_as_frames(), "built before frames");
}

#[test]
fn frame_batches_answer_what_single_calls_answer() {
    let mut amounts = Vec::new();
    for i in 0..6 {
        let mut f = logreg_features();
        f["amount_usd_log"] = json!(i as f64 * 1.5);
        if i == 3 {
            f.as_object_mut().unwrap().remove("amount_usd_log"); // missing: imputed
        }
        amounts.push(f);
    }
    batch_equals_single_calls("logreg", &amounts);
    let gbdt: Vec<Value> =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins/gbdt/tests.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["input"].clone())
            .chain([json!({})])
            .collect();
    batch_equals_single_calls("gbdt", &gbdt);
}

fn names(wasm: &str, name: &str) -> bool {
    let bytes = std::fs::read(wasm).unwrap();
    bytes.windows(name.len()).any(|w| w == name.as_bytes())
}

#[test]
fn a_0_1_0_plugin_loads_scores_and_batches() {
    // It really is a 0.1.0 component: no 0.1.1 name, no frame-scorer.
    let wasm = scorehost_plugin_artifacts::CONTRACT_0_1_0_WASM;
    assert!(names(wasm, "scorehost:plugin/scorer@0.1.0") && names(wasm, "scorehost:plugin/log@0.1.0"));
    assert!(!names(wasm, "@0.1.1") && !names(wasm, "frame-scorer"));
    assert!(names(scorehost_plugin_artifacts::LOGREG_WASM, "scorehost:plugin/frame-scorer@0.1.2"));
    let v = load("contract-0-1-0");
    assert_eq!(v.score(&obj(json!({"x": 1.5})), None).unwrap().value.score, 3.0);
    let rows = [json!({"x": 1.0}), json!({"x": -1.0}), json!({}), json!({"x": 4.0})];
    batch_equals_single_calls("contract-0-1-0", &rows);
    let out = v.score_batch(&rows.map(obj), None).unwrap().value;
    assert_eq!(out[0].as_ref().unwrap().reasons, [("x".to_owned(), 1.0)]);
    assert_eq!(out[1].as_ref().unwrap_err().kind(), ErrorKind::InvalidInput, "the plugin's own refusal");
    assert_eq!(out[2].as_ref().unwrap_err().kind(), ErrorKind::InvalidInput, "the host's: x is required");
    assert_eq!(out[3].as_ref().unwrap().score, 8.0);
}

#[test]
fn a_0_1_1_plugin_loads_and_extracts_and_plugins_without_state_do_not_import_it() {
    // It really is a 0.1.1 component: no 0.1.2 name, no state import.
    let wasm = scorehost_plugin_artifacts::CONTRACT_0_1_1_WASM;
    assert!(names(wasm, "scorehost:plugin/extractor@0.1.1") && names(wasm, "scorehost:plugin/log@0.1.1"));
    assert!(!names(wasm, "@0.1.2"));
    // Built with today's SDK, a plugin that never calls `state` does not import it.
    for (plugin, wasm) in [
        ("contract-0-1-0", scorehost_plugin_artifacts::CONTRACT_0_1_0_WASM),
        ("contract-0-1-1", wasm),
        ("logreg", scorehost_plugin_artifacts::LOGREG_WASM),
        ("txn-features", scorehost_plugin_artifacts::TXN_FEATURES_WASM),
        ("fraud-scorer", scorehost_plugin_artifacts::FRAUD_SCORER_WASM),
    ] {
        assert!(!names(wasm, "scorehost:plugin/state"), "{plugin} imports state");
    }
    assert!(names(scorehost_plugin_artifacts::VELOCITY_WASM, "scorehost:plugin/state@0.1.2"));
    let v = load("contract-0-1-1");
    assert_eq!(v.extract(&obj(json!({"x": 1.5})), None).unwrap().value["doubled"], json!(3.0));
    let e = v.extract(&obj(json!({"x": -1.0})), None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "the plugin's own refusal: {e}");
}

#[test]
fn unusable_rows_of_a_frame_fail_alone() {
    let modes = ["fine", "huge", "long-code", "nan", "inf", "nan-weight", "fine"];
    let rows: Vec<_> = modes.iter().map(|m| obj(json!({"mode": m}))).collect();
    let out = load("hostile-output").score_batch(&rows, None).unwrap().value;
    for (mode, r) in modes.iter().zip(&out) {
        match *mode {
            "fine" => assert_eq!(r.as_ref().unwrap().score, 0.5),
            _ => assert_eq!(r.as_ref().unwrap_err().kind(), ErrorKind::InvalidOutput, "{mode}"),
        }
    }
    let huge = out[1].as_ref().unwrap_err().to_string();
    assert!(huge.contains("200000 reasons"), "{huge}");
    let long = out[2].as_ref().unwrap_err().to_string();
    assert!(long.contains("1048576 bytes"), "{long}");
}

#[test]
fn a_frame_scorer_of_the_wrong_type_is_refused_at_load() {
    let e = crate::support::runtime().load(&crate::support::staged("hostile-frame")).unwrap_err();
    assert!(matches!(e, scorehost::LoadError::WrongWorld { .. }), "{e:?}");
    let message = e.to_string();
    assert!(message.contains("`scorehost:plugin/frame-scorer@0.1.2` does not match"), "{message}");
}
