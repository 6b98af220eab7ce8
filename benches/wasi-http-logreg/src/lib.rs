//! # wasi-http-logreg — scorehost's logreg scorer as a plain wasi:http component
//!
//! Shows: what the logreg plugin looks like without scorehost — one
//! `wasi:http/incoming-handler` that reads `{"features": {…}}`, scores it with
//! the very same arithmetic (`plugins/logreg/src/model.rs`, included as a
//! module) and model (compiled in by `build.rs`), and answers the same JSON
//! shape as `POST /v1/plugins/logreg/score`. `benches/load.sh` serves it with
//! `wasmtime serve` and loads it beside scorehost and the native baseline.
//!
//! Build and run it by hand:
//! `cargo build --release --target wasm32-wasip2 --manifest-path benches/wasi-http-logreg/Cargo.toml`,
//! then `wasmtime serve --addr 127.0.0.1:18070 <target>/wasm32-wasip2/release/wasi_http_logreg.wasm`.

#[path = "../../../plugins/logreg/src/model.rs"]
mod model;

mod weights {
    include!(concat!(env!("OUT_DIR"), "/weights.rs"));
}

use serde_json::{Map, Value, json};
use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasip2::io::streams::StreamError;

/// Reason codes per answer, as the plugin's default `top_reasons`.
const TOP_REASONS: usize = 3;
/// Largest request body read, as scorehost's default body limit.
const MAX_BODY: usize = 1 << 20;

struct Handler;

wasip2::http::proxy::export!(Handler);

impl wasip2::exports::http::incoming_handler::Guest for Handler {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let (status, body) = match read_body(request).and_then(|b| answer(&b)) {
            Ok(v) => (200, v),
            Err((status, message)) => {
                (status, json!({"error": {"kind": "invalid_input", "message": message}}))
            }
        };
        respond(out, status, &serde_json::to_vec(&body).unwrap_or_default());
    }
}

fn read_body(request: IncomingRequest) -> Result<Vec<u8>, (u16, String)> {
    let body = request.consume().map_err(|()| (400, "no body".to_owned()))?;
    let mut bytes = Vec::new();
    {
        let stream = body.stream().map_err(|()| (400, "no body stream".to_owned()))?;
        loop {
            match stream.blocking_read(64 << 10) {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => return Err((400, e.to_debug_string())),
            }
            if bytes.len() > MAX_BODY {
                return Err((413, "body too large".to_owned()));
            }
        }
    }
    IncomingBody::finish(body);
    Ok(bytes)
}

/// The score of `{"features": {…}}`, in the shape scorehost answers.
fn answer(body: &[u8]) -> Result<Value, (u16, String)> {
    let request: Map<String, Value> = serde_json::from_slice(body).map_err(|e| (400, e.to_string()))?;
    let features =
        request.get("features").and_then(Value::as_object).ok_or((422, "no `features` object".to_owned()))?;
    let mut xs = Vec::with_capacity(weights::NAMES.len());
    for name in weights::NAMES {
        xs.push(match features.get(*name) {
            Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
            Some(Value::Bool(b)) => f64::from(u8::from(*b)),
            _ => return Err((422, format!("field `{name}` is required and must be a number"))),
        });
    }
    let mut contributions = Vec::with_capacity(xs.len());
    let p = model::score(weights::INTERCEPT, weights::WEIGHTS, &xs, &mut contributions);
    let reasons: Vec<Value> = contributions
        .iter()
        .take(TOP_REASONS)
        .map(|&(i, c)| json!({"code": weights::NAMES[i], "weight": c}))
        .collect();
    Ok(json!({"plugin": "logreg", "version": "0.1.0", "score": p, "reasons": reasons}))
}

fn respond(out: ResponseOutparam, status: u16, body: &[u8]) {
    let headers = Fields::from_list(&[("content-type".to_owned(), b"application/json".to_vec())])
        .unwrap_or_else(|_| Fields::new());
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else { return };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(stream) = outgoing.write() {
        // At most 4096 bytes per write, as the stream contract asks.
        for chunk in body.chunks(4096) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                break;
            }
        }
    }
    let _ = OutgoingBody::finish(outgoing, None);
}
