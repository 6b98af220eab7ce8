//! The JSON shapes of results and errors, shared by the CLI and the HTTP layer.

use serde::Serialize;
use serde_json::{Map, Value as Json, json};

use crate::sandbox::error::CallError;
use crate::sandbox::instances::Outcome;
use crate::version::output::Scored;
use crate::version::plugin::PluginVersion;

/// `{"score", "reasons":[{"code","weight"}]}` of one scored row, plus
/// `"fallback":{"kind","message"}` when the score is the declared fallback
/// and `"undeclared":[…]` when fields it ignored were reported.
pub fn scored(s: &Scored) -> Json {
    let reasons: Vec<Json> =
        s.reasons.iter().map(|(code, weight)| json!({"code": code, "weight": weight})).collect();
    let mut j = json!({"score": s.score, "reasons": reasons});
    if let Json::Object(m) = &mut j {
        if let Some(e) = &s.fallback {
            m.insert("fallback".into(), fallback(e));
        }
        if !s.undeclared.is_empty() {
            m.insert("undeclared".into(), json!(s.undeclared));
        }
    }
    j
}

/// `{"kind","message"}` of the error a fallback score stands in for.
pub fn fallback(e: &CallError) -> Json {
    json!({"kind": e.kind().as_str(), "message": e.to_string()})
}

/// `{"error":{"kind","message"}}`.
pub fn error(e: &CallError) -> Json {
    json!({"error": {"kind": e.kind().as_str(), "message": e.to_string()}})
}

/// The full answer to a single-row score: plugin, version, score, reasons,
/// cost. Serialised straight from this struct (the single-row path is the hot
/// one); fields in the same (alphabetical) order as every other answer.
#[derive(Debug, Serialize)]
pub struct ScoreResponse<'a> {
    /// Wall-clock time of the call, µs.
    pub elapsed_us: u64,
    /// Present when `score` is the manifest's fallback: the error it stands in for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Json>,
    /// Fuel the call consumed.
    pub fuel_used: u64,
    /// The plugin's name.
    pub plugin: &'a str,
    /// Reason codes with signed weights.
    pub reasons: Vec<Reason<'a>>,
    /// The score.
    pub score: f64,
    /// Input fields the plugin does not declare, ignored and reported
    /// (`[inputs] undeclared = "report"`).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub undeclared: &'a [String],
    /// The plugin's version.
    pub version: &'a str,
}

/// One reason code of a [`ScoreResponse`].
#[derive(Debug, Serialize)]
pub struct Reason<'a> {
    /// The code, as the plugin named it.
    pub code: &'a str,
    /// Its signed contribution.
    pub weight: f64,
}

/// The answer to a single-row score.
pub fn score_response<'a>(v: &'a PluginVersion, out: &'a Outcome<Scored>) -> ScoreResponse<'a> {
    ScoreResponse {
        elapsed_us: out.elapsed.as_micros() as u64,
        fallback: out.value.fallback.as_ref().map(fallback),
        fuel_used: out.fuel_used,
        plugin: &v.manifest().name,
        reasons: out.value.reasons.iter().map(|(code, weight)| Reason { code, weight: *weight }).collect(),
        score: out.value.score,
        undeclared: &out.value.undeclared,
        version: &v.manifest().version,
    }
}

/// The answer to an extraction: plugin, version, features, cost.
pub fn extract_response(v: &PluginVersion, out: &Outcome<Map<String, Json>>) -> Json {
    let mut body = identity(v, out.fuel_used, out.elapsed.as_micros() as u64);
    body.insert("features".into(), Json::Object(out.value.clone()));
    Json::Object(body)
}

/// `{"results":[…]}` of a batch: each entry a result or an `error` object, in order.
pub fn batch_response<T>(
    v: &PluginVersion,
    out: &Outcome<Vec<Result<T, CallError>>>,
    one: impl Fn(&T) -> Json,
) -> Json {
    let results: Vec<Json> = out.value.iter().map(|r| r.as_ref().map_or_else(error, &one)).collect();
    let mut body = identity(v, out.fuel_used, out.elapsed.as_micros() as u64);
    body.insert("results".into(), Json::Array(results));
    Json::Object(body)
}

fn identity(v: &PluginVersion, fuel_used: u64, elapsed_us: u64) -> Map<String, Json> {
    let mut m = Map::new();
    m.insert("plugin".into(), json!(v.manifest().name));
    m.insert("version".into(), json!(v.manifest().version));
    m.insert("fuel_used".into(), json!(fuel_used));
    m.insert("elapsed_us".into(), json!(elapsed_us));
    m
}

/// World, metadata and limits of a loaded version (`inspect`, `GET /v1/plugins/{name}`).
pub fn describe(v: &PluginVersion) -> Json {
    let m = v.metadata();
    let spec = |f: &crate::sandbox::bindings::types::FieldSpec| json!({"name": f.name, "kind": kind(f.kind), "required": f.required, "doc": f.doc});
    let limits = v.limits();
    json!({
        "name": v.manifest().name,
        "version": v.manifest().version,
        "world": v.manifest().world.as_str(),
        "description": m.description,
        "content_hash": v.content_hash(),
        "inputs": m.inputs.iter().map(spec).collect::<Vec<_>>(),
        "outputs": m.outputs.iter().map(spec).collect::<Vec<_>>(),
        "open_inputs": m.open_inputs,
        // How batches reach the plugin: one columnar frame (contract 0.1.1's
        // `frame-scorer`), or a list of rows (extractors, 0.1.0 builds, open inputs).
        "batches": if v.batches_as_frames() { "frame" } else { "rows" },
        "limits": {
            "fuel": limits.fuel,
            "deadline_ms": limits.deadline.as_millis() as u64,
            "memory_bytes": limits.memory_bytes,
            "max_in_flight": v.manifest().limits.max_in_flight,
        },
        "health": health(v),
        "fallback": v.manifest().fallback.score.map(|s| json!({"score": s})),
    })
}

/// `{"state": "ok"|"quarantined"|"probing", "retry_after_ms", "quarantines", "in_flight"}`:
/// where a version's circuit breaker stands.
pub fn health(v: &PluginVersion) -> Json {
    use crate::version::breaker::BreakerState;
    let (state, retry_after_ms) = match v.breaker_state() {
        BreakerState::Closed => ("ok", None),
        BreakerState::Open { retry_after } => ("quarantined", Some(retry_after.as_millis() as u64)),
        BreakerState::Probing => ("probing", None),
    };
    json!({
        "state": state,
        "retry_after_ms": retry_after_ms,
        "quarantines": v.quarantines(),
        "in_flight": v.in_flight(),
    })
}

fn kind(k: crate::sandbox::bindings::types::ValueKind) -> &'static str {
    use crate::sandbox::bindings::types::ValueKind as K;
    match k {
        K::Boolean => "bool",
        K::Int => "int",
        K::Float => "float",
        K::Text => "text",
        K::Floats => "floats",
    }
}
