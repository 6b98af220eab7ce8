//! The status page: `/` serves the embedded page; `/v1/status` lists every
//! serving version with its state (live / canary / shadow / quarantined) and
//! the sampled per-second request rate and latency the page charts. (That the
//! charts render with data is checked in headless Chromium by
//! runtime/tests/status-page.sh.)

use axum::http::{StatusCode, header};
use scorehost::http::ServerConfig;
use serde_json::Value;

use crate::http::{app, get, logreg_body, post, send};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_and_its_data_tracks_rates_and_states() {
    let app = app(&["logreg", "hostile-panic"], ServerConfig::default());
    let page = send(&app, get("/")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
    assert!(page.text.contains("/v1/status") && page.text.contains("<canvas id=\"rate\""));

    app.history.sample(&app.registry); // the baseline the next sample's rates start from
    for _ in 0..10 {
        let r = send(&app, post("/v1/plugins/logreg/score", logreg_body().to_string())).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    // The panicking plugin faults until its breaker quarantines it.
    let mut quarantined = false;
    for _ in 0..20 {
        let r = send(&app, post("/v1/plugins/hostile-panic/score", r#"{"features": {}}"#)).await;
        if r.json["error"]["kind"] == "plugin_quarantined" {
            quarantined = true;
            break;
        }
    }
    assert!(quarantined, "hostile-panic was never quarantined");
    app.history.sample(&app.registry);

    let s = send(&app, get("/v1/status")).await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.text);
    let plugin = |name: &str| -> Value {
        s.json["plugins"].as_array().unwrap().iter().find(|p| p["name"] == name).cloned().unwrap()
    };
    let logreg = plugin("logreg");
    assert_eq!((logreg["role"].as_str(), logreg["state"].as_str()), (Some("live"), Some("live")));
    assert_eq!(logreg["calls"], 10);
    assert_eq!(logreg["errors"], 0);
    let panic = plugin("hostile-panic");
    assert_eq!((panic["role"].as_str(), panic["state"].as_str()), (Some("live"), Some("quarantined")));
    assert!(panic["errors"].as_u64().unwrap() >= 1 && panic["quarantines"] == 1, "{panic}");

    let history = s.json["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "one interval between two samples");
    let point = &history[0]["series"]["logreg@0.1.0/live"];
    assert!(point["rps"].as_f64().unwrap() > 0.0, "{point}");
    assert!(point["latency_ms"].as_f64().unwrap() > 0.0, "{point}");
}
