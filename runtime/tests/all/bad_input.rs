//! Untrusted requests: every malformed, oversized, odd or slow request gets a
//! clear 4xx with its kind, and the server is healthy and scoring after each.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use scorehost::http::{App, ServerConfig};
use serde_json::{Map, Value, json};

use crate::http::{app, get, logreg_body, post, send};

async fn still_scoring(app: &Arc<App>, after: &str) {
    let r = send(app, post("/v1/plugins/logreg/score", logreg_body().to_string())).await;
    assert_eq!(r.status, StatusCode::OK, "not scoring after {after}: {}", r.text);
    assert_eq!(send(app, get("/healthz")).await.status, StatusCode::OK, "unhealthy after {after}");
}

fn raw_post(path: &str, content_type: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path).header(header::CONTENT_TYPE, content_type).body(body.into()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_request_is_a_clear_4xx_and_the_server_keeps_scoring() {
    let cfg = ServerConfig { max_batch_rows: 100, max_fields: 50, ..ServerConfig::default() };
    let app = app(&["logreg", "txn-features"], cfg);
    let score = "/v1/plugins/logreg/score";
    let many_fields: Map<String, Value> = (0..51).map(|i| (format!("f{i}"), json!(i))).collect();
    let deep = format!("{{\"features\": {}1{}}}", "[".repeat(5000), "]".repeat(5000));
    let huge = json!({"features": {"pad": "x".repeat(2 << 20)}}).to_string();
    let cases: Vec<(&str, Request<Body>, StatusCode, &str)> = vec![
        ("malformed", post(score, "{\"features\": {"), StatusCode::BAD_REQUEST, "malformed_request"),
        ("deeply nested", post(score, deep), StatusCode::BAD_REQUEST, "malformed_request"),
        ("huge", post(score, huge), StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
        (
            "non-UTF-8",
            raw_post(score, "application/json", &b"{\"features\": {\"x\": \"\xff\xfe\"}}"[..]),
            StatusCode::BAD_REQUEST,
            "malformed_request",
        ),
        (
            "wrong value type",
            post(score, r#"{"features": {"amount_usd_log": [1, 2]}}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        (
            "number out of f64 range",
            post(score, r#"{"features": {"amount_usd_log": 1e400}}"#),
            StatusCode::BAD_REQUEST,
            "malformed_request",
        ),
        (
            "int input beyond 2^53",
            post(
                "/v1/plugins/txn-features/extract",
                r#"{"event": {"amount": 1, "timestamp": 9007199254740993}}"#,
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        (
            "duplicate keys",
            post(score, r#"{"features": {"is_night": true, "is_night": false}}"#),
            StatusCode::BAD_REQUEST,
            "malformed_request",
        ),
        ("empty body", post(score, ""), StatusCode::BAD_REQUEST, "malformed_request"),
        (
            "wrong content type",
            raw_post(score, "text/csv", "a,b"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "too many features",
            post(score, json!({ "features": many_fields }).to_string()),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_fields",
        ),
        (
            "too many rows",
            post(score, json!({"instances": vec![json!({}); 101]}).to_string()),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_rows",
        ),
        (
            "too many fields in a row",
            post(score, json!({"instances": [{}, many_fields]}).to_string()),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_fields",
        ),
        (
            "too many fields in an event",
            post("/v1/plugins/txn-features/extract", json!({ "event": many_fields }).to_string()),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_fields",
        ),
        (
            "odd name: traversal",
            post("/v1/plugins/..%2F..%2Fetc/score", "{}"),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        ("odd name: NUL", post("/v1/plugins/log%00reg/score", "{}"), StatusCode::NOT_FOUND, "not_found"),
        (
            "odd name: unicode",
            post("/v1/plugins/l%C3%B6greg/score", "{}"),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "odd name: very long",
            post(&format!("/v1/plugins/{}/score", "a".repeat(8000)), "{}"),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        ("odd name: empty", post("/v1/plugins//score", "{}"), StatusCode::NOT_FOUND, "not_found"),
    ];
    for (what, req, status, kind) in cases {
        let r = send(&app, req).await;
        assert_eq!(r.status, status, "{what}: {}", r.text);
        assert_eq!(r.json["error"]["kind"], kind, "{what}: {}", r.text);
        let message = r.json["error"]["message"].as_str().unwrap_or("");
        assert!(!message.is_empty() && message.len() < 2000, "{what}: message {message:?}");
        still_scoring(&app, what).await;
    }
    // Limits are inclusive: exactly the maximum is fine.
    let at_limit = json!({"instances": vec![logreg_body()["features"].clone(); 100]}).to_string();
    assert_eq!(send(&app, post(score, at_limit)).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_dripping_its_body_gets_408_and_others_are_served() {
    let cfg = ServerConfig { body_read_timeout: Duration::from_millis(500), ..ServerConfig::default() };
    let app = app(&["logreg"], cfg);
    let serving = crate::http_socket::Serving::start(app.clone()).await;
    let addr = serving.addr;
    let dripped = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let body = logreg_body().to_string();
        write!(
            s,
            "POST /v1/plugins/logreg/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .unwrap();
        let started = Instant::now();
        // One byte every 100 ms, for a second: the whole body would take 20 s.
        for b in body.as_bytes().iter().take(10) {
            if s.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut answer = Vec::new();
        let mut chunk = [0u8; 1024];
        while !String::from_utf8_lossy(&answer).contains("body_timeout") {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
            }
        }
        (started.elapsed(), String::from_utf8_lossy(&answer).into_owned())
    });
    // Meanwhile a well-behaved client is served.
    tokio::time::sleep(Duration::from_millis(100)).await;
    still_scoring(&app, "a dripping client started").await;
    let (took, answer) = dripped.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    assert!(took < Duration::from_secs(5), "held for {took:?}");
    serving.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeclared_fields_are_refused_by_name_or_reported_and_counted() {
    let app = app(&["logreg"], ServerConfig::default());
    let score = "/v1/plugins/logreg/score";
    // A misspelled feature: 422 naming it (before: 200, scored without it).
    let mut features = logreg_body()["features"].clone();
    features["amount_usd_lg"] = json!(6.0);
    let r = send(&app, post(score, json!({ "features": features }).to_string())).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.json["error"]["kind"], "invalid_input");
    assert!(r.json["error"]["message"].as_str().unwrap().contains("`amount_usd_lg`"), "{}", r.text);
    // In a batch, the row with the typo fails alone.
    let batch = json!({"instances": [logreg_body()["features"], features]});
    let r = send(&app, post(score, batch.to_string())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.json["results"][0]["score"].is_number(), "{}", r.text);
    assert_eq!(r.json["results"][1]["error"]["kind"], "invalid_input", "{}", r.text);
    // Logreg's manifest ignores `customer_id` (canary routing) by name.
    let mut routed = logreg_body()["features"].clone();
    routed["customer_id"] = json!("c-1");
    assert_eq!(
        send(&app, post(score, json!({ "features": routed }).to_string())).await.status,
        StatusCode::OK
    );
    // One row and a batch in one body: ambiguous.
    let both = json!({"features": logreg_body()["features"], "instances": [logreg_body()["features"]]});
    let r = send(&app, post(score, both.to_string())).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.json["error"]["kind"], "malformed_request");

    // A plugin that chooses to report them: scored, named in the answer, counted.
    let dir = crate::support::copy_with("logreg", |m| {
        m.replace("undeclared = \"refuse\"", "undeclared = \"report\"")
    });
    let path = dir.path().to_owned();
    let app = crate::hostile::app_of(move || vec![crate::support::runtime().load(&path).unwrap()]);
    let r = send(&app, post(score, json!({ "features": features }).to_string())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["undeclared"], json!(["amount_usd_lg"]), "{}", r.text);
    let r = send(&app, post(score, json!({ "features": logreg_body()["features"] }).to_string())).await;
    assert!(r.json.get("undeclared").is_none(), "nothing to report: {}", r.text);
    let m = send(&app, get("/metrics")).await.text;
    assert!(
        m.contains(
            r#"scorehost_plugin_undeclared_fields_total{plugin="logreg",version="0.1.0",role="live"} 1"#
        ),
        "{m}"
    );

    // An extractor: refused by default, reported when it says so.
    let event = json!({"amount": 10, "currency": "USD", "timestamp": 0, "amout": 11});
    let extract = "/v1/plugins/txn-features/extract";
    let strict = crate::http::app(&["txn-features"], ServerConfig::default());
    let r = send(&strict, post(extract, json!({ "event": event }).to_string())).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains("`amout`"), "{}", r.text);
    let dir =
        crate::support::copy_with("txn-features", |m| format!("{m}\n[inputs]\nundeclared = \"report\"\n"));
    let path = dir.path().to_owned();
    let app = crate::hostile::app_of(move || vec![crate::support::runtime().load(&path).unwrap()]);
    let r = send(&app, post(extract, json!({ "event": event }).to_string())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["undeclared"], json!(["amout"]), "{}", r.text);
}
