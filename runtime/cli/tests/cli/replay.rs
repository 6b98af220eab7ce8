//! `scorehost replay`: a decision log re-scored by another version of the
//! plugin, reported as how far the scores moved.

use std::path::Path;
use std::process::Command;

use scorehost::serving::decisions::{Decision, DecisionLog, DecisionLogConfig};
use serde_json::{Value, json};

use crate::support::{load, logreg_body, logreg_variant, obj, staged};

fn decision(i: usize) -> Decision {
    Decision {
        ts_ms: 0,
        request_id: format!("r{i:03}"),
        plugin: "logreg".into(),
        version: "0.1.0".into(),
        content_hash: "h".into(),
        input: obj(logreg_body()["features"].clone()),
        score: Some(0.5),
        reasons: vec![("amount_usd_log".into(), 0.1)],
        error: None,
        fuel: 1,
        latency_us: 1,
    }
}

#[test]
fn replay_reports_how_another_version_moves_the_scores() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.jsonl");
    let v1 = load("logreg");
    let log = DecisionLog::open(DecisionLogConfig::new(&path)).unwrap();
    let mut rows = Vec::new();
    for digits in 0..20 {
        let mut f = logreg_body()["features"].clone();
        f["email_local_digits"] = json!(digits);
        rows.push(obj(f));
    }
    for row in &rows {
        let out = v1.score(row, None).unwrap();
        log.scored_one(&v1, row, &out);
    }
    let mut other = decision(0);
    other.plugin = "gbdt".into();
    log.record(other);
    drop(log);

    let replay = |plugin: &Path| {
        let cache = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_scorehost"))
            .args([
                "--cache-dir",
                cache.path().to_str().unwrap(),
                "replay",
                path.to_str().unwrap(),
                "--plugin",
            ])
            .arg(plugin)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let same = replay(&staged("logreg"));
    assert_eq!((same["decisions"].as_u64(), same["unchanged"].as_u64()), (Some(20), Some(20)), "{same:#}");
    assert_eq!((same["changed"].as_u64(), same["max_abs_diff"].as_f64()), (Some(0), Some(0.0)));
    assert_eq!(same["skipped_other_plugins"], 1);

    let shifted = logreg_variant("0.1.0+model.2", 0.5);
    let moved = replay(shifted.path());
    assert_eq!(moved["replayed_version"], "0.1.0+model.2");
    assert_eq!(moved["logged_versions"], json!(["0.1.0"]));
    assert_eq!(moved["changed"].as_u64(), Some(20), "{moved:#}");
    assert!(moved["mean_abs_diff"].as_f64().unwrap() > 0.01);
    let top = &moved["largest_changes"];
    assert_eq!(top.as_array().unwrap().len(), 10);
    assert!(top[0]["diff"].as_f64().unwrap() > 0.0, "a larger intercept raises every score");
    assert!(top[0]["request_id"].is_string());
}
