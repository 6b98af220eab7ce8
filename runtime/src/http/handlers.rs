//! The endpoint handlers. Each one resolves the plugin, parses the body, takes
//! an in-flight slot, runs the wasm call off the async workers and renders the
//! result; every failure is an [`ApiError`] returned with `?`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};

use super::App;
use super::codec::{Payload, payload, read_json};
use super::error::ApiError;
use crate::error::CallError;
use crate::pipeline;
use crate::plugin::PluginVersion;
use crate::render;

/// Which plugin or pipeline a response was about, for the metrics label.
#[derive(Debug, Clone)]
pub struct MetricLabel(pub String);

fn json_response(status: StatusCode, body: &Json, label: Option<&str>) -> Response {
    let mut r = (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
    if let Some(label) = label {
        r.extensions_mut().insert(MetricLabel(label.to_owned()));
    }
    r
}

/// `x-deadline-ms`: a per-request deadline that can only tighten a plugin's own.
fn request_deadline(headers: &HeaderMap) -> Result<Option<Duration>, ApiError> {
    let Some(raw) = headers.get("x-deadline-ms") else { return Ok(None) };
    let ms: u64 =
        raw.to_str().ok().and_then(|s| s.trim().parse().ok()).filter(|&ms| ms > 0).ok_or_else(|| {
            ApiError::Malformed("x-deadline-ms must be a positive integer of milliseconds".into())
        })?;
    Ok(Some(Duration::from_millis(ms)))
}

fn plugin(app: &App, name: &str) -> Result<Arc<PluginVersion>, ApiError> {
    app.registry.get(name).ok_or_else(|| ApiError::NotFound(format!("no plugin named `{name}` is loaded")))
}

/// The shared shape of `score` and `extract`: resolve the plugin, read the
/// deadline and the body (`key` for one row, `instances` for a batch), run the
/// call in an in-flight slot, answer 200 with its JSON.
async fn call_plugin(
    app: Arc<App>,
    name: String,
    headers: HeaderMap,
    body: Body,
    key: &'static str,
    call: impl FnOnce(&PluginVersion, Payload, Option<Duration>) -> Result<Json, CallError> + Send + 'static,
) -> Result<Response, ApiError> {
    let version = plugin(&app, &name)?;
    let deadline = request_deadline(&headers)?;
    let body = payload(read_json(&headers, body, app.config.max_body_bytes).await?, key)?;
    let json = app.run(move || call(&version, body, deadline)).await?;
    Ok(json_response(StatusCode::OK, &json, Some(&name)))
}

/// `POST /v1/plugins/{name}/score`: one row (`features`) or a batch (`instances`).
pub async fn score(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    call_plugin(app, name, headers, body, "features", |v, body, deadline| match body {
        Payload::One(f) => v.score(&f, deadline).map(|o| render::score_response(v, &o)),
        Payload::Batch(rows) => {
            v.score_batch(&rows, deadline).map(|o| render::batch_response(v, &o, render::scored))
        }
    })
    .await
}

/// `POST /v1/plugins/{name}/extract`: one event (`event`) or a batch (`instances`).
pub async fn extract(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    call_plugin(app, name, headers, body, "event", |v, body, deadline| match body {
        Payload::One(e) => v.extract(&e, deadline).map(|o| render::extract_response(v, &o)),
        Payload::Batch(rows) => v
            .extract_batch(&rows, deadline)
            .map(|o| render::batch_response(v, &o, |f| json!({ "features": f }))),
    })
    .await
}

/// `POST /v1/pipelines/{name}`: event → extractors → scorer. `"return_features":
/// true` in the body adds the merged features to the answer.
pub async fn run_pipeline(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let spec = app
        .pipelines
        .get(&name)
        .cloned()
        .ok_or_else(|| ApiError::NotFound(format!("no pipeline named `{name}`")))?;
    let deadline = request_deadline(&headers)?;
    let mut body = read_json(&headers, body, app.config.max_body_bytes).await?;
    let with_features = match body.remove("return_features") {
        None | Some(Json::Bool(false)) => false,
        Some(Json::Bool(true)) => true,
        Some(_) => return Err(ApiError::Malformed("`return_features` must be true or false".into())),
    };
    let Payload::One(event) = payload(body, "event")? else {
        return Err(ApiError::Malformed("pipelines take one `event` per request".into()));
    };
    let registry = app.registry.clone();
    let (spec, run) =
        app.run(move || pipeline::run(&spec, &registry, &event, deadline).map(|r| (spec, r))).await?;
    let mut answer = json!({
        "pipeline": name,
        "scorer": spec.scorer,
        "extractors": spec.extractors,
        "fuel_used": run.fuel_used,
        "elapsed_us": run.elapsed.as_micros() as u64,
    });
    if let (Json::Object(a), Json::Object(s)) = (&mut answer, render::scored(&run.scored)) {
        a.extend(s);
        if with_features {
            a.insert("features".into(), Json::Object(run.features));
        }
    }
    Ok(json_response(StatusCode::OK, &answer, Some(&name)))
}

/// `GET /v1/plugins`: every live plugin with its world, schema and limits.
pub async fn list_plugins(State(app): State<Arc<App>>) -> Response {
    let plugins: Vec<Json> = app.registry.all().iter().map(|v| render::describe(v)).collect();
    let pipelines: serde_json::Map<String, Json> = app
        .pipelines
        .all()
        .iter()
        .map(|(n, s)| (n.clone(), json!({"extractors": s.extractors, "scorer": s.scorer})))
        .collect();
    json_response(StatusCode::OK, &json!({"plugins": plugins, "pipelines": pipelines}), None)
}

/// `GET /v1/plugins/{name}`.
pub async fn get_plugin(State(app): State<Arc<App>>, Path(name): Path<String>) -> Result<Response, ApiError> {
    let v = plugin(&app, &name)?;
    Ok(json_response(StatusCode::OK, &render::describe(&v), Some(&name)))
}

/// `GET /healthz`: the process is up.
pub async fn healthz() -> Response {
    json_response(StatusCode::OK, &json!({"status": "ok"}), None)
}

/// `GET /readyz`: plugins are loaded and the server is not draining.
pub async fn readyz(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    if app.is_draining() {
        return Err(ApiError::Unavailable("shutting down".into()));
    }
    if app.registry.is_empty() {
        return Err(ApiError::Unavailable("no plugins loaded".into()));
    }
    Ok(json_response(StatusCode::OK, &json!({"status": "ready", "plugins": app.registry.len()}), None))
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        app.metrics.encode(),
    )
        .into_response()
}
