//! The HTTP surface, driven in-process through the router (no socket), one
//! test per endpoint and per error status.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use scorehost::World;
use scorehost::http::{App, ServerConfig, router};
use scorehost::serving::pipeline::{PipelineError, Pipelines};
use scorehost::serving::registry::Registry;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::support::load;

pub const FRAUD: &str = "[pipelines.fraud]\nextractors = [\"txn-features\"]\nscorer = \"logreg\"\n";

pub fn app(plugins: &[&str], config: ServerConfig) -> Arc<App> {
    // Loading runs init through wasmtime-wasi's synchronous bindings, which must
    // not run on an async worker: load on a plain thread, as `serve` does before
    // it starts tokio.
    let versions = std::thread::scope(|s| {
        s.spawn(|| plugins.iter().map(|p| load(p)).collect::<Vec<_>>()).join().unwrap()
    });
    let registry = Arc::new(Registry::new(versions));
    let pipelines = if plugins.contains(&"txn-features") && plugins.contains(&"logreg") {
        Pipelines::parse(FRAUD, &registry).unwrap()
    } else {
        Pipelines::default()
    };
    App::new(registry, pipelines, config)
}

fn default_app() -> Arc<App> {
    app(
        &["txn-features", "logreg", "gbdt", "hostile-panic", "hostile-loop", "hostile-alloc"],
        ServerConfig::default(),
    )
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub json: Value,
    pub text: String,
}

pub async fn send(app: &Arc<App>, req: Request<Body>) -> Reply {
    let res = router(app.clone()).oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Reply { status, headers, json: serde_json::from_str(&text).unwrap_or(Value::Null), text }
}

pub fn post(path: &str, body: impl Into<String>) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.into()))
        .unwrap()
}

pub fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

pub fn logreg_body() -> Value {
    json!({"features": {"amount_usd_log": 6.0, "cross_border": true, "email_domain_free": true,
        "email_domain_disposable": false, "email_local_digits": 3, "is_night": true,
        "mcc_high_risk": false, "ip_private": false}})
}

fn event() -> Value {
    json!({"amount": 120.5, "currency": "EUR", "merchant_country": "DE", "card_country": "US",
        "email": "jo42@gmail.com", "ip": "81.2.69.160", "timestamp": 1764165600, "mcc": 7995})
}

fn assert_error(r: &Reply, status: StatusCode, kind: &str) {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(r.json["error"]["kind"], kind, "{}", r.text);
    assert!(r.json["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", r.text);
}

#[tokio::test]
async fn score_one_row() {
    let r = send(&default_app(), post("/v1/plugins/logreg/score", logreg_body().to_string())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    for field in ["plugin", "version", "score", "reasons", "fuel_used", "elapsed_us"] {
        assert!(!r.json[field].is_null(), "missing {field}: {}", r.text);
    }
    assert_eq!(r.json["reasons"][0], json!({"code": "amount_usd_log", "weight": 2.7}));
}

#[tokio::test]
async fn score_a_batch_in_order_with_a_bad_row() {
    let good = logreg_body()["features"].clone();
    let body = json!({"instances": [good, {"amount_usd_log": "high"}, good]});
    let r = send(&default_app(), post("/v1/plugins/logreg/score", body.to_string())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let results = r.json["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["score"], results[2]["score"]);
    assert_eq!(results[1]["error"]["kind"], "invalid_input");
}

#[tokio::test]
async fn extract_an_event() {
    let r =
        send(&default_app(), post("/v1/plugins/txn-features/extract", json!({"event": event()}).to_string()))
            .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["features"]["mcc_high_risk"], true);
    assert_eq!(r.json["plugin"], "txn-features");
}

#[tokio::test]
async fn pipeline_scores_an_event_and_returns_features_when_asked() {
    let app = default_app();
    let r = send(&app, post("/v1/pipelines/fraud", json!({"event": event()}).to_string())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.json["score"].as_f64().unwrap() > 0.0);
    assert!(r.json.get("features").is_none());
    let r = send(
        &app,
        post("/v1/pipelines/fraud", json!({"event": event(), "return_features": true}).to_string()),
    )
    .await;
    assert_eq!(r.json["features"]["cross_border"], true, "{}", r.text);
    // The pipeline equals extract-then-score by hand.
    let f = send(&app, post("/v1/plugins/txn-features/extract", json!({"event": event()}).to_string())).await;
    // By hand, the scorer is passed what it declares, as the pipeline does
    // (the rest would be refused as undeclared).
    let logreg = app.registry.get("logreg").unwrap();
    let declared: serde_json::Map<_, _> = f.json["features"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| logreg.inputs().declares(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let s = send(&app, post("/v1/plugins/logreg/score", json!({"features": declared}).to_string())).await;
    assert_eq!(r.json["score"], s.json["score"]);
}

#[tokio::test]
async fn pipeline_errors_keep_their_status() {
    let app = default_app();
    let r = send(&app, post("/v1/pipelines/fraud", json!({"event": {"amount": 1}}).to_string())).await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    let r = send(&app, post("/v1/pipelines/nope", json!({"event": {}}).to_string())).await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
}

#[test]
fn pipeline_feature_clash_is_a_startup_error() {
    let registry = Registry::new(["txn-features", "logreg"].map(load));
    let twice = "[pipelines.x]\nextractors = [\"txn-features\", \"txn-features\"]\nscorer = \"logreg\"\n";
    let e = Pipelines::parse(twice, &registry).unwrap_err();
    assert!(matches!(&e, PipelineError::FeatureTwice { feature, .. } if feature == "amount_usd"), "{e}");
    assert!(e.to_string().contains("both"), "{e}");
    let wrong = "[pipelines.x]\nextractors = [\"logreg\"]\nscorer = \"logreg\"\n";
    let e = Pipelines::parse(wrong, &registry).unwrap_err();
    assert!(matches!(e, PipelineError::WrongWorld { wanted: World::Extractor, .. }), "{e}");
    assert!(e.to_string().contains("is a scorer, not an extractor"), "{e}");
}

#[tokio::test]
async fn list_and_describe_plugins() {
    let app = default_app();
    let r = send(&app, get("/v1/plugins")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json["plugins"].as_array().unwrap().iter().any(|p| p["name"] == "gbdt"));
    assert_eq!(r.json["pipelines"]["fraud"]["scorer"], "logreg");
    let r = send(&app, get("/v1/plugins/txn-features")).await;
    assert_eq!(r.json["world"], "extractor");
    assert_eq!(r.json["batches"], "rows");
    assert_eq!(r.json["limits"]["deadline_ms"], 50);
    assert_eq!(send(&app, get("/v1/plugins/gbdt")).await.json["batches"], "frame");
    assert_error(&send(&app, get("/v1/plugins/nope")).await, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = default_app();
    assert_eq!(send(&app, get("/healthz")).await.status, StatusCode::OK);
    assert_eq!(send(&app, get("/readyz")).await.status, StatusCode::OK);
    let empty = App::new(Arc::new(Registry::default()), Pipelines::default(), ServerConfig::default());
    assert_error(&send(&empty, get("/readyz")).await, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    send(&app, post("/v1/plugins/logreg/score", logreg_body().to_string())).await;
    send(&app, post("/v1/plugins/nope/score", "{}")).await;
    let m = send(&app, get("/metrics")).await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(
        m.text.contains(r#"scorehost_http_requests_total{route="/v1/plugins/{name}/score",plugin="logreg",status="200"} 1"#),
        "{}",
        m.text
    );
    assert!(m.text.contains("scorehost_http_request_duration_seconds_bucket"), "{}", m.text);
    // An unknown plugin name never becomes a label value.
    assert!(!m.text.contains("plugin=\"nope\""), "{}", m.text);
}

#[tokio::test]
async fn malformed_requests_are_400() {
    let app = default_app();
    for body in ["{not json", "[1, 2]", "", r#"{"features": 3}"#, r#"{"rows": []}"#, r#"{"instances": [1]}"#]
    {
        let r = send(&app, post("/v1/plugins/logreg/score", body)).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "malformed_request");
    }
    let mut req = post("/v1/plugins/logreg/score", logreg_body().to_string());
    req.headers_mut().insert("x-deadline-ms", "soon".parse().unwrap());
    assert_error(&send(&app, req).await, StatusCode::BAD_REQUEST, "malformed_request");
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let req = Request::post("/v1/plugins/logreg/score")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(logreg_body().to_string()))
        .unwrap();
    assert_error(
        &send(&default_app(), req).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
}

#[tokio::test]
async fn unknown_plugin_route_and_method() {
    let app = default_app();
    assert_error(&send(&app, post("/v1/plugins/nope/score", "{}")).await, StatusCode::NOT_FOUND, "not_found");
    assert_error(&send(&app, get("/v2/whatever")).await, StatusCode::NOT_FOUND, "no_route");
    let r = send(&app, get("/v1/plugins/logreg/score")).await;
    assert_error(&r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    // HEAD is answered as GET on GET routes, and not on POST ones.
    let head = |path: &str| Request::head(path).body(Body::empty()).unwrap();
    assert_eq!(send(&app, head("/healthz")).await.status, StatusCode::OK);
    assert_eq!(send(&app, head("/v1/plugins/logreg/score")).await.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn oversize_body_is_413() {
    let app = app(&["logreg"], ServerConfig { max_body_bytes: 1024, ..ServerConfig::default() });
    let big = json!({"features": {"pad": "x".repeat(4096)}}).to_string();
    assert_error(
        &send(&app, post("/v1/plugins/logreg/score", big)).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
    );
}

#[tokio::test]
async fn invalid_input_is_422_trap_is_500_deadline_is_504() {
    let app = default_app();
    let r = send(&app, post("/v1/plugins/logreg/score", r#"{"features": {"is_night": "yes"}}"#)).await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    let r = send(&app, post("/v1/plugins/hostile-panic/score", r#"{"features": {}}"#)).await;
    assert_error(&r, StatusCode::INTERNAL_SERVER_ERROR, "guest_trap");
    let r = send(&app, post("/v1/plugins/hostile-alloc/score", r#"{"features": {}}"#)).await;
    assert_error(&r, StatusCode::INTERNAL_SERVER_ERROR, "memory_limit");
    let r = send(&app, post("/v1/plugins/hostile-loop/score", r#"{"features": {}}"#)).await;
    assert_error(&r, StatusCode::INTERNAL_SERVER_ERROR, "out_of_fuel");
    let r = send(&app, post("/v1/plugins/txn-features/score", r#"{"features": {}}"#)).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "unsupported");
}

#[tokio::test]
async fn request_deadline_is_504_and_covers_pipelines() {
    let app = app(&["slow", "txn-features", "logreg"], ServerConfig::default());
    let mut req = post("/v1/plugins/slow/score", r#"{"features": {"ms": 2000}}"#);
    req.headers_mut().insert("x-deadline-ms", "30".parse().unwrap());
    let started = std::time::Instant::now();
    assert_error(&send(&app, req).await, StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded");
    assert!(started.elapsed() < Duration::from_millis(1500));
    // The header bounds the whole pipeline: its slow scorer gets what the
    // extractor left of the 50 ms, not its own 5 s.
    let slow_pipeline = "[pipelines.slowly]\nextractors = [\"txn-features\"]\nscorer = \"slow\"\n";
    let app = App::new(
        app.registry.clone(),
        Pipelines::parse(slow_pipeline, &app.registry).unwrap(),
        ServerConfig::default(),
    );
    let body = json!({"event": {"amount": 2000, "currency": "USD", "timestamp": 0}}).to_string();
    let mut req = post("/v1/pipelines/slowly", body.clone());
    req.headers_mut().insert("x-deadline-ms", "50".parse().unwrap());
    let started = std::time::Instant::now();
    assert_error(&send(&app, req).await, StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded");
    assert!(started.elapsed() < Duration::from_millis(1500));
    // Without the header the same pipeline finishes (2 s, inside slow's 5 s).
    let r = send(&app, post("/v1/pipelines/slowly", body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_sheds_with_503_and_retry_after() {
    let app = app(&["slow"], ServerConfig { max_in_flight: 2, ..ServerConfig::default() });
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move {
                send(&app, post("/v1/plugins/slow/score", r#"{"features": {"ms": 400}}"#)).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = send(&app, post("/v1/plugins/slow/score", r#"{"features": {"ms": 1}}"#)).await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "overloaded");
    assert_eq!(r.headers.get(header::RETRY_AFTER).unwrap(), "1");
    for b in busy {
        assert_eq!(b.await.unwrap().status, StatusCode::OK);
    }
    // Slots are released: the next call goes through.
    let r = send(&app, post("/v1/plugins/slow/score", r#"{"features": {"ms": 1}}"#)).await;
    assert_eq!(r.status, StatusCode::OK);
}
