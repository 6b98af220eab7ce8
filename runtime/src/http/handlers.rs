//! The endpoint handlers. Each one resolves the plugin, parses the body, takes
//! an in-flight slot, runs the wasm call where [`super::CallMode`] says and renders the
//! result; every failure is an [`ApiError`] returned with `?`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value as Json, json};

use super::App;
use super::codec::{Payload, payload, read_json};
use super::error::ApiError;
use super::metrics::Label;
use crate::sandbox::error::CallError;
use crate::sandbox::instances::Outcome;
use crate::serving::decisions::DecisionLog;
use crate::serving::pipeline;
use crate::serving::registry::Entry;
use crate::serving::render;
use crate::version::output::Scored;
use crate::version::plugin::PluginVersion;

/// Which plugin or pipeline a response was about, for the metrics label.
#[derive(Debug, Clone)]
pub struct MetricLabel(pub Label);

/// A JSON response, labelled for the metrics with the plugin or pipeline it
/// was about. Serialised to bytes directly (no `Display` detour).
fn json_response(status: StatusCode, body: &impl Serialize, label: Option<Arc<str>>) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|e| {
        format!(r#"{{"error":{{"kind":"internal","message":"cannot serialise the answer: {e}"}}}}"#)
            .into_bytes()
    });
    let mut r = (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response();
    if let Some(label) = label {
        r.extensions_mut().insert(MetricLabel(Label::new(label)));
    }
    r
}

/// Marks a response whose score is a declared fallback: the
/// `x-scorehost-fallback` header names the error kind it stands in for.
fn mark_fallback(app: &App, response: &mut Response, plugin: Arc<str>, e: &CallError) {
    app.metrics.fallback(Label::new(plugin), e.kind().as_str());
    response
        .headers_mut()
        .insert("x-scorehost-fallback", header::HeaderValue::from_static(e.kind().as_str()));
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

/// A client-supplied name, quoted for an error message: cut to 64 characters
/// (the longest valid name) so a hostile path cannot bloat the answer or the log.
fn shown(name: &str) -> String {
    match name.char_indices().nth(64) {
        None => format!("`{name}`"),
        Some((cut, _)) => format!("`{}…` ({} characters)", &name[..cut], name.chars().count()),
    }
}

fn plugin(app: &App, name: &str) -> Result<Arc<PluginVersion>, ApiError> {
    app.registry
        .get(name)
        .ok_or_else(|| ApiError::NotFound(format!("no plugin named {} is loaded", shown(name))))
}

/// The shared first half of `score` and `extract`: resolve what serves the
/// plugin, read the deadline and the body (`key` for one row, `instances` for
/// a batch).
async fn prepare(
    app: &App,
    name: &str,
    request: Request,
    key: &'static str,
) -> Result<(Entry, Option<Duration>, Payload, HeaderMap), ApiError> {
    let entry = app
        .registry
        .entry(name)
        .ok_or_else(|| ApiError::NotFound(format!("no plugin named {} is loaded", shown(name))))?;
    let (parts, body) = request.into_parts();
    let deadline = request_deadline(&parts.headers)?;
    let body = payload(read_json(&parts.headers, body, &app.config).await?, key, &app.config)?;
    Ok((entry, deadline, body, parts.headers))
}

/// The version a row goes to: the canary's, if it takes the row's key.
fn pick(entry: &Entry, headers: &HeaderMap, row: &Map<String, Json>) -> Arc<PluginVersion> {
    match &entry.canary {
        Some(c) if c.takes(c.key.value(headers, row).as_deref()) => c.version.clone(),
        _ => entry.live.clone(),
    }
}

/// `POST /v1/plugins/{name}/score`: one row (`features`) or a batch (`instances`).
pub async fn score(app: Arc<App>, name: String, request: Request) -> Result<Response, ApiError> {
    let (entry, deadline, body, headers) = prepare(&app, &name, request, "features").await?;
    match body {
        Payload::One(f) => {
            let v = pick(&entry, &headers, &f);
            // Shadow copies are of live traffic only (not of the canary's share).
            let shadow = entry.shadow.filter(|_| Arc::ptr_eq(&v, &entry.live));
            let app2 = app.clone();
            app.run(async move {
                let out = v.score_async(&f, deadline).await?;
                if let Some(log) = &app2.config.decisions {
                    log.scored_one(&v, &f, &out);
                }
                let mut response =
                    json_response(StatusCode::OK, &render::score_response(&v, &out), Some(v.name_label()));
                if let Some(e) = &out.value.fallback {
                    mark_fallback(&app2, &mut response, v.name_label(), e);
                    return Ok(response);
                }
                if let Some(shadow) = shadow {
                    let (plugin, version) = (
                        Label::new(v.name_label()),
                        Label::new(shadow.version.manifest().version.as_str().into()),
                    );
                    shadow.mirror(f, out.value, move |outcome, diff| {
                        app2.metrics.shadow(plugin, version, outcome, diff)
                    });
                }
                Ok(response)
            })
            .await
        }
        Payload::Batch(rows) => {
            let Some(canary) = entry.canary.clone() else {
                let v = entry.live;
                let decisions = app.config.decisions.clone();
                return app
                    .run(async move {
                        let out = v.score_batch_async(&rows, deadline).await?;
                        if let Some(log) = decisions {
                            log_batch(&log, &v, &rows.iter().collect::<Vec<_>>(), &out);
                        }
                        let body = render::batch_response(&v, &out, render::scored);
                        Ok(json_response(StatusCode::OK, &body, Some(v.name_label())))
                    })
                    .await;
            };
            // With a canary, each row goes where its key sends it.
            let to_canary: Vec<bool> =
                rows.iter().map(|r| !Arc::ptr_eq(&pick(&entry, &headers, r), &entry.live)).collect();
            let live = entry.live;
            let decisions = app.config.decisions.clone();
            app.run(score_split(live, canary.version.clone(), rows, to_canary, deadline, decisions)).await
        }
    }
}

/// A score batch split between the live version and a canary: one guest call
/// each, results back in row order, the canary's rows marked with its version.
async fn score_split(
    live: Arc<PluginVersion>,
    canary: Arc<PluginVersion>,
    rows: Vec<Map<String, Json>>,
    to_canary: Vec<bool>,
    deadline: Option<Duration>,
    decisions: Option<Arc<DecisionLog>>,
) -> Result<Response, CallError> {
    let (b, a): (Vec<_>, Vec<_>) = rows.into_iter().zip(&to_canary).partition(|(_, c)| **c);
    let (a, b): (Vec<_>, Vec<_>) =
        (a.into_iter().map(|(r, _)| r).collect(), b.into_iter().map(|(r, _)| r).collect());
    let empty = || Outcome { value: Vec::new(), fuel_used: 0, elapsed: Duration::ZERO };
    let la = if a.is_empty() { empty() } else { live.score_batch_async(&a, deadline).await? };
    let lb = if b.is_empty() { empty() } else { canary.score_batch_async(&b, deadline).await? };
    if let Some(log) = decisions {
        log_batch(&log, &live, &a.iter().collect::<Vec<_>>(), &la);
        log_batch(&log, &canary, &b.iter().collect::<Vec<_>>(), &lb);
    }
    let (fuel, elapsed) = (la.fuel_used + lb.fuel_used, la.elapsed + lb.elapsed);
    let (mut ia, mut ib) = (la.value.into_iter(), lb.value.into_iter());
    let canary_version = &canary.manifest().version;
    let results: Vec<Json> = to_canary
        .iter()
        .map(|&c| {
            let r = if c { ib.next() } else { ia.next() };
            let mut j = match r {
                Some(Ok(s)) => render::scored(&s),
                Some(Err(e)) => render::error(&e),
                None => render::error(&CallError::InvalidOutput { message: "missing result".into() }),
            };
            if let (true, Json::Object(m)) = (c, &mut j) {
                m.insert("version".into(), Json::String(canary_version.clone()));
            }
            j
        })
        .collect();
    let body = json!({
        "plugin": live.manifest().name, "version": live.manifest().version,
        "fuel_used": fuel, "elapsed_us": elapsed.as_micros() as u64, "results": results,
    });
    Ok(json_response(StatusCode::OK, &body, Some(live.name_label())))
}

/// Logs a scored batch, row by row, in the decision log.
fn log_batch(
    log: &DecisionLog,
    v: &PluginVersion,
    rows: &[&Map<String, Json>],
    out: &Outcome<Vec<Result<Scored, CallError>>>,
) {
    let results: Vec<Result<&Scored, &CallError>> = out.value.iter().map(Result::as_ref).collect();
    log.scored(v, rows, &results, out.fuel_used, out.elapsed);
}

/// `POST /v1/plugins/{name}/extract`: one event (`event`) or a batch (`instances`).
pub async fn extract(app: Arc<App>, name: String, request: Request) -> Result<Response, ApiError> {
    let (entry, deadline, body, headers) = prepare(&app, &name, request, "event").await?;
    let v = match &body {
        Payload::One(e) => pick(&entry, &headers, e),
        // A canary takes single events; batches of events stay on the live version.
        Payload::Batch(_) => entry.live.clone(),
    };
    app.run(async move {
        match body {
            Payload::One(e) => v.extract_async(&e, deadline).await.map(|o| {
                let mut body = render::extract_response(&v, &o);
                // Reported (and counted, by extract_async) only under
                // `[inputs] undeclared = "report"`; refused otherwise.
                if v.manifest().inputs.undeclared == crate::version::layout::Undeclared::Report
                    && let Json::Object(m) = &mut body
                {
                    let names = v.inputs().undeclared(&e);
                    if !names.is_empty() {
                        m.insert("undeclared".into(), json!(names));
                    }
                }
                json_response(StatusCode::OK, &body, Some(v.name_label()))
            }),
            Payload::Batch(rows) => v.extract_batch_async(&rows, deadline).await.map(|o| {
                let body = render::batch_response(&v, &o, |f| json!({ "features": f }));
                json_response(StatusCode::OK, &body, Some(v.name_label()))
            }),
        }
    })
    .await
}

/// `POST /v1/pipelines/{name}`: event → extractors → scorer. `"return_features":
/// true` in the body adds the merged features to the answer.
pub async fn run_pipeline(app: Arc<App>, name: String, request: Request) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let spec = app
        .pipelines
        .get(&name)
        .cloned()
        .ok_or_else(|| ApiError::NotFound(format!("no pipeline named {}", shown(&name))))?;
    let deadline = request_deadline(&headers)?;
    let mut body = read_json(&headers, body, &app.config).await?;
    let with_features = match body.remove("return_features") {
        None | Some(Json::Bool(false)) => false,
        Some(Json::Bool(true)) => true,
        Some(_) => return Err(ApiError::Malformed("`return_features` must be true or false".into())),
    };
    let Payload::One(event) = payload(body, "event", &app.config)? else {
        return Err(ApiError::Malformed("pipelines take one `event` per request".into()));
    };
    let registry = app.registry.clone();
    let (spec, run) = app
        .run(async move { pipeline::run(&spec, &registry, &event, deadline).await.map(|r| (spec, r)) })
        .await?;
    if let Some(log) = &app.config.decisions {
        let (scorer, fuel, elapsed) = &run.scorer;
        log.scored(scorer, &[&run.features], &[Ok(&run.scored)], *fuel, *elapsed);
    }
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
    let mut response = json_response(StatusCode::OK, &answer, Some(name.into()));
    if let Some(e) = &run.scored.fallback {
        mark_fallback(&app, &mut response, spec.scorer.as_str().into(), e);
    }
    Ok(response)
}

/// `GET /v1/plugins`: every live plugin with its world, schema and limits.
pub fn list_plugins(app: Arc<App>) -> Response {
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
pub fn get_plugin(app: Arc<App>, name: String) -> Result<Response, ApiError> {
    let v = plugin(&app, &name)?;
    Ok(json_response(StatusCode::OK, &render::describe(&v), Some(v.name_label())))
}

/// `GET /healthz`: the process is up.
pub fn healthz() -> Response {
    json_response(StatusCode::OK, &json!({"status": "ok"}), None)
}

/// `GET /`: the status page (HTML and JS embedded in the binary).
pub fn status_page() -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], super::status::INDEX_HTML)
        .into_response()
}

/// `GET /v1/status`: serving versions, their state and totals, and the
/// sampled history of rates and latencies the status page draws.
pub fn status(app: Arc<App>) -> Response {
    json_response(StatusCode::OK, &super::status::status(&app.registry, &app.history), None)
}

/// `GET /readyz`: plugins are loaded, the server is not draining, and (a
/// fleet replica) it has applied the fleet's state.
pub fn readyz(app: Arc<App>) -> Result<Response, ApiError> {
    if app.is_draining() {
        return Err(ApiError::Unavailable("shutting down".into()));
    }
    if let Some(waiting) = app.readiness.pending() {
        return Err(ApiError::Unavailable(waiting));
    }
    if app.registry.is_empty() {
        return Err(ApiError::Unavailable("no plugins loaded".into()));
    }
    Ok(json_response(StatusCode::OK, &json!({"status": "ready", "plugins": app.registry.len()}), None))
}

/// `GET /metrics`: Prometheus text format.
pub fn metrics(app: Arc<App>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        app.metrics.encode(),
    )
        .into_response()
}
