//! The native baseline for `benches/load.sh`: a minimal hyper server that runs
//! the very same logreg and gbdt logic in-process (the plugin crates compiled
//! for the host, driven by the SDK's harness, which does the same JSON → row
//! conversion the runtime does) behind the same paths and JSON shapes. No
//! sandbox, no wasm: what scorehost is compared against.
//!
//! Run: `cargo run --release -p scorehost-benches --bin native-baseline -- 127.0.0.1:18090`

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use scorehost_guest::testing::{Harness, set_model_dir};
use scorehost_guest::{Config, Score};
use serde_json::{Value, json};

/// The same allocator as the `scorehost` binary.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Models {
    logreg: Harness<logreg::LogReg>,
    gbdt: Harness<gbdt::Gbdt>,
}

fn render(plugin: &str, s: &Score) -> Value {
    let reasons: Vec<Value> = s.reasons.iter().map(|r| json!({"code": r.code, "weight": r.weight})).collect();
    json!({"plugin": plugin, "version": "0.1.0", "score": s.value, "reasons": reasons, "fuel_used": 0, "elapsed_us": 0})
}

fn score(models: &Models, plugin: &str, features: &Value) -> Result<Value, String> {
    let s = match plugin {
        "logreg" => models.logreg.score(features),
        "gbdt" => models.gbdt.score(features),
        _ => return Err(format!("no plugin {plugin}")),
    };
    s.map(|s| render(plugin, &s)).map_err(|e| e.to_string())
}

async fn handle(models: Arc<Models>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let plugin =
        path.strip_prefix("/v1/plugins/").and_then(|p| p.strip_suffix("/score")).unwrap_or("").to_owned();
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let answer = serde_json::from_slice::<Value>(&body).map_err(|e| e.to_string()).and_then(|v| {
        if let Some(rows) = v.get("instances").and_then(Value::as_array) {
            let results: Vec<Value> = rows
                .iter()
                .map(|r| score(&models, &plugin, r).unwrap_or_else(|e| json!({"error": {"message": e}})))
                .collect();
            Ok(json!({"plugin": plugin, "results": results}))
        } else {
            score(&models, &plugin, &v["features"])
        }
    });
    let (status, body) = match answer {
        Ok(v) => (StatusCode::OK, v.to_string()),
        Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, json!({"error": {"message": e}}).to_string()),
    };
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18090".into()).parse()?;
    set_model_dir(scorehost_benches::staged("logreg").join("model"));
    let logreg = Harness::scorer(Config::new([("model_file", "weights.json"), ("impute_missing", "true")]))?;
    set_model_dir(scorehost_benches::staged("gbdt").join("model"));
    let gbdt = Harness::scorer(Config::new([("model_file", "model.json")]))?;
    let models = Arc::new(Models { logreg, gbdt });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!("native baseline on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let models = models.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(models.clone(), req));
            let _ = Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
