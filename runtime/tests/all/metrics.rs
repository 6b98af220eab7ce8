//! `/metrics` per plugin version: calls, errors by kind, latency and fuel
//! histograms, in-flight calls and the memory high-water mark, published for
//! every call whoever made it. (Per-route request metrics are checked in
//! http.rs; swap and gate events in admin.rs.)

use axum::http::StatusCode;
use scorehost::http::ServerConfig;

use crate::http::{app, get, logreg_body, post, send};

/// The value of the sample `name{labels…}` whose labels include every one of
/// `labels` (`key="value"` each), or `None`.
pub fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
        (metric == name && labels.iter().all(|l| rest.contains(l))).then(|| value.parse().ok())?
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_of_a_version_is_counted_with_its_cost() {
    let app = app(&["logreg", "txn-features", "hostile-loop", "hostile-alloc"], ServerConfig::default());
    for _ in 0..3 {
        let r = send(&app, post("/v1/plugins/logreg/score", logreg_body().to_string())).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    // A batch is one call.
    let batch = serde_json::json!({ "instances": [logreg_body()["features"], logreg_body()["features"]] });
    assert_eq!(send(&app, post("/v1/plugins/logreg/score", batch.to_string())).await.status, StatusCode::OK);
    // A row the plugin fails is one error of the version, in a call that went through.
    let events = r#"{"instances": [{"amount": 10, "currency": "USD", "timestamp": 0},
                                    {"amount": 10, "currency": "XYZ", "timestamp": 0}]}"#;
    let r = send(&app, post("/v1/plugins/txn-features/extract", events)).await;
    assert_eq!(r.json["results"][1]["error"]["kind"], "invalid_input", "{}", r.text);
    let r = send(&app, post("/v1/plugins/hostile-loop/score", r#"{"features": {}}"#)).await;
    assert_eq!(r.json["error"]["kind"], "out_of_fuel", "{}", r.text);
    let r = send(&app, post("/v1/plugins/hostile-alloc/score", r#"{"features": {}}"#)).await;
    assert_eq!(r.json["error"]["kind"], "memory_limit", "{}", r.text);

    let m = send(&app, get("/metrics")).await;
    assert_eq!(m.status, StatusCode::OK);
    let text = &m.text;
    let logreg = [r#"plugin="logreg""#, r#"role="live""#];
    let value = |name: &str, labels: &[&str]| {
        sample(text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in:\n{text}"))
    };
    assert_eq!(value("scorehost_plugin_calls_total", &logreg), 4.0);
    assert_eq!(value("scorehost_plugin_call_duration_seconds_count", &logreg), 4.0);
    assert_eq!(value("scorehost_plugin_call_fuel_count", &logreg), 4.0);
    assert!(value("scorehost_plugin_call_fuel_sum", &logreg) > 0.0);
    assert_eq!(value("scorehost_plugin_in_flight", &logreg), 0.0);
    assert_eq!(value("scorehost_plugin_errors_total", &[logreg[0], r#"kind="out_of_fuel""#]), 0.0);
    // At least the 1 MiB initial memory of a Rust guest; below its 16 MiB cap.
    let peak = value("scorehost_plugin_memory_peak_bytes", &logreg);
    assert!((1024.0 * 1024.0..16.0 * 1024.0 * 1024.0).contains(&peak), "{peak}");

    let txn = [r#"plugin="txn-features""#];
    assert_eq!(value("scorehost_plugin_calls_total", &txn), 1.0);
    assert_eq!(value("scorehost_plugin_errors_total", &[txn[0], r#"kind="invalid_input""#]), 1.0);

    let looping = [r#"plugin="hostile-loop""#];
    assert_eq!(value("scorehost_plugin_calls_total", &looping), 1.0);
    assert_eq!(value("scorehost_plugin_errors_total", &[looping[0], r#"kind="out_of_fuel""#]), 1.0);
    assert_eq!(value("scorehost_plugin_errors_total", &[looping[0], r#"kind="guest_trap""#]), 0.0);
    // A failed call has a latency but no fuel figure.
    assert_eq!(value("scorehost_plugin_call_duration_seconds_count", &looping), 1.0);
    assert_eq!(value("scorehost_plugin_call_fuel_count", &looping), 0.0);
    // The runaway allocator's high-water mark is what it was granted (up to
    // its 16 MiB cap), not the grow it was refused.
    let alloc = [r#"plugin="hostile-alloc""#];
    assert_eq!(value("scorehost_plugin_errors_total", &[alloc[0], r#"kind="memory_limit""#]), 1.0);
    let peak = value("scorehost_plugin_memory_peak_bytes", &alloc);
    assert!((8.0 * 1024.0 * 1024.0..=16.0 * 1024.0 * 1024.0).contains(&peak), "{peak}");
}
