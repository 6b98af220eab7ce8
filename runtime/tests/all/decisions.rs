//! The decision log: every answered score (or a sample) as a JSON line, off
//! the request path, rotated by size, drops counted; and `scorehost replay`,
//! which re-scores a log with another version and reports the differences.

use std::path::Path;
use std::sync::Arc;

use axum::http::StatusCode;
use scorehost::http::ServerConfig;
use scorehost::serving::decisions::{Decision, DecisionLog, DecisionLogConfig, rotated};
use serde_json::{Value, json};

use crate::http::{app, get, logreg_body, post, send};
use crate::metrics::sample;
use crate::support::obj;

fn read(path: &Path) -> Vec<Decision> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn with_log(config: DecisionLogConfig) -> (Arc<scorehost::http::App>, Arc<DecisionLog>) {
    let log = DecisionLog::open(config).unwrap();
    let app = app(&["logreg"], ServerConfig { decisions: Some(log.clone()), ..ServerConfig::default() });
    (app, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_score_is_logged_with_its_input_output_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decisions.jsonl");
    let (app, log) = with_log(DecisionLogConfig::new(&path));
    let mut req = post("/v1/plugins/logreg/score", logreg_body().to_string());
    req.headers_mut().insert("x-request-id", "pay-991".parse().unwrap());
    let one = send(&app, req).await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.text);
    let features = logreg_body()["features"].clone();
    let mut other = features.clone();
    other["is_night"] = json!(false);
    let batch = json!({ "instances": [features, other] });
    let two = send(&app, post("/v1/plugins/logreg/score", batch.to_string())).await;
    assert_eq!(two.status, StatusCode::OK, "{}", two.text);
    log.flush();

    let d = read(&path);
    assert_eq!(d.len(), 3, "{d:?}");
    let hash = app.registry.get("logreg").unwrap().content_hash().to_owned();
    for (decision, (input, score)) in d.iter().zip([
        (&logreg_body()["features"], &one.json["score"]),
        (&batch["instances"][0], &two.json["results"][0]["score"]),
        (&batch["instances"][1], &two.json["results"][1]["score"]),
    ]) {
        assert_eq!((decision.plugin.as_str(), decision.version.as_str()), ("logreg", "0.1.0"));
        assert_eq!(decision.content_hash, hash);
        assert_eq!(&Value::Object(decision.input.clone()), input);
        assert_eq!(decision.score, score.as_f64());
        assert!(!decision.reasons.is_empty() && decision.error.is_none());
        assert!(decision.fuel > 0 && decision.latency_us > 0, "{decision:?}");
    }
    assert_eq!(d[0].request_id, "pay-991");
    assert_eq!(d[1].request_id, d[2].request_id, "a batch's rows share its request id");
    assert_eq!(d[1].request_id, two.headers["x-request-id"].to_str().unwrap());

    let m = send(&app, get("/metrics")).await.text;
    assert_eq!(sample(&m, "scorehost_decisions_written_total", &[]), Some(3.0), "{m}");
    assert_eq!(sample(&m, "scorehost_decisions_dropped_total", &[]), Some(0.0), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_keeps_about_the_configured_fraction() {
    let dir = tempfile::tempdir().unwrap();
    for (rate, range) in [(0.0, 0..=0), (0.5, 60..=140)] {
        let path = dir.path().join(format!("sampled-{rate}.jsonl"));
        let (app, log) = with_log(DecisionLogConfig { sample_rate: rate, ..DecisionLogConfig::new(&path) });
        for _ in 0..200 {
            send(&app, post("/v1/plugins/logreg/score", logreg_body().to_string())).await;
        }
        log.flush();
        let n = read(&path).len();
        assert!(range.contains(&n), "rate {rate}: {n} of 200 logged");
    }
    let bad = DecisionLog::open(DecisionLogConfig {
        sample_rate: 1.5,
        ..DecisionLogConfig::new(dir.path().join("x"))
    });
    assert!(bad.unwrap_err().to_string().contains("between 0 and 1"));
}

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
fn a_full_queue_drops_and_counts_instead_of_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.jsonl");
    // No queue at all: a decision is taken only when the writer is waiting.
    let log = DecisionLog::open(DecisionLogConfig { queue: 0, ..DecisionLogConfig::new(&path) }).unwrap();
    for i in 0..2000 {
        log.record(decision(i));
    }
    log.flush();
    assert_eq!(log.written() + log.dropped(), 2000);
    assert!(log.dropped() > 0, "nothing was dropped");
    assert_eq!(read(&path).len() as u64, log.written());
}

#[test]
fn the_log_rotates_by_size_and_keeps_what_it_is_told() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.jsonl");
    let line = serde_json::to_string(&decision(0)).unwrap().len() as u64 + 1;
    let log = DecisionLog::open(DecisionLogConfig {
        max_bytes: 10 * line,
        keep: 2,
        ..DecisionLogConfig::new(&path)
    })
    .unwrap();
    for i in 0..45 {
        log.record(decision(i));
    }
    drop(log); // drains and flushes
    let (now, one, two) = (read(&path), read(&rotated(&path, 1)), read(&rotated(&path, 2)));
    assert!(!rotated(&path, 3).exists(), "only 2 rotated files are kept");
    for (file, n) in [(&now, 5), (&one, 10), (&two, 10)] {
        assert_eq!(file.len(), n);
    }
    // Newest in PATH, then .1, then .2; the oldest 20 are gone.
    assert_eq!((two[0].request_id.as_str(), now[4].request_id.as_str()), ("r020", "r044"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelines_score_is_logged_with_the_features_its_scorer_saw() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.jsonl");
    let log = DecisionLog::open(DecisionLogConfig::new(&path)).unwrap();
    let app = app(
        &["txn-features", "logreg"],
        ServerConfig { decisions: Some(log.clone()), ..ServerConfig::default() },
    );
    let event = json!({"event": {"amount": 120.5, "currency": "EUR", "merchant_country": "DE", "card_country": "US",
        "email": "jo42@gmail.com", "ip": "81.2.69.160", "timestamp": 1764165600, "mcc": 7995},
        "return_features": true});
    let r = send(&app, post("/v1/pipelines/fraud", event.to_string())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    log.flush();
    let d = read(&path);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].plugin, "logreg");
    assert_eq!(Value::Object(d[0].input.clone()), r.json["features"]);
    assert_eq!(d[0].score, r.json["score"].as_f64());
}
