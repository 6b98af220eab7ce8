//! The HTTP surface (DESIGN.md §4), on hyper 1 + tokio with axum routing.
//!
//! - [`router`] builds the routes from [`ROUTES`], the table the OpenAPI test
//!   checks `docs/openapi.json` against;
//! - [`error`] is the one place errors become statuses;
//! - [`server`] accepts connections (HTTP/1.1 and cleartext HTTP/2), applies the
//!   header-read timeout and shuts down gracefully.

pub mod codec;
pub mod error;
pub mod handlers;
pub mod metrics;
pub mod server;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use tokio::sync::Semaphore;

use self::error::ApiError;
use self::handlers::MetricLabel;
use self::metrics::Metrics;
use crate::error::CallError;
use crate::pipeline::Pipelines;
use crate::registry::Registry;

/// Where a wasm call runs.
///
/// A call may legitimately run for its whole deadline (up to seconds), so it
/// must never occupy an async worker without telling tokio: inline on a worker,
/// a few slow plugins would stall every connection, /healthz included — and
/// wasmtime-wasi's synchronous bindings (a guest writing to stderr, as a Rust
/// panic does) block on the runtime, which panics on an async worker. Both
/// modes below are safe; `benches/load.sh` measures them side by side. On
/// 2 cores, wrk -c16, single-row logreg: blocking 13.2k req/s, p99 2.5 ms;
/// in place 12.8k req/s, p99 4.3 ms (block_in_place moves the worker's other
/// tasks to a fresh thread, which costs as much as the hand-off and hurts the
/// tail). So the blocking pool is the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CallMode {
    /// `tokio::task::spawn_blocking`: a hand-off to the blocking pool.
    #[default]
    Blocking,
    /// `tokio::task::block_in_place`: stays on the request's worker, whose other
    /// tasks tokio moves elsewhere first. Needs the multi-threaded runtime.
    InPlace,
}

/// Limits and knobs of the HTTP server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest accepted request body (413 beyond).
    pub max_body_bytes: usize,
    /// Most plugin calls in flight at once; beyond, 503 + Retry-After.
    pub max_in_flight: usize,
    /// Time a client has to send its request headers.
    pub header_read_timeout: Duration,
    /// Longest a graceful shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// Where wasm calls run.
    pub call_mode: CallMode,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            max_in_flight: 128,
            header_read_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(30),
            call_mode: CallMode::Blocking,
        }
    }
}

/// Everything the handlers share.
pub struct App {
    /// Live plugins.
    pub registry: Arc<Registry>,
    /// Validated pipelines.
    pub pipelines: Pipelines,
    /// Request metrics.
    pub metrics: Metrics,
    /// Server limits.
    pub config: ServerConfig,
    slots: Arc<Semaphore>,
    draining: AtomicBool,
}

impl App {
    /// Shared state for a server over `registry` and `pipelines`.
    pub fn new(registry: Arc<Registry>, pipelines: Pipelines, config: ServerConfig) -> Arc<Self> {
        Arc::new(Self {
            registry,
            pipelines,
            metrics: Metrics::default(),
            slots: Arc::new(Semaphore::new(config.max_in_flight)),
            config,
            draining: AtomicBool::new(false),
        })
    }

    /// Whether a graceful shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Marks the server as shutting down (`/readyz` turns 503).
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Runs a plugin call in an in-flight slot, where [`CallMode`] says. Sheds
    /// load (503) instead of queueing when every slot is taken.
    pub async fn run<T: Send + 'static>(
        &self,
        call: impl FnOnce() -> Result<T, CallError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::Overloaded { limit: self.config.max_in_flight })?;
        // The permit moves into the call, so it is released when the wasm call
        // ends — not when the client goes away (a dropped request future would
        // otherwise free the slot while its call still runs).
        let call = move || {
            let result = call();
            drop(permit);
            result
        };
        let result = match self.config.call_mode {
            CallMode::InPlace => tokio::task::block_in_place(call),
            CallMode::Blocking => tokio::task::spawn_blocking(call)
                .await
                .map_err(|e| ApiError::Unavailable(format!("the call's worker thread failed: {e}")))?,
        };
        Ok(result?)
    }
}

/// Every route of the surface: method, path template. `docs/openapi.json`
/// must list exactly these (tests/all/http_openapi.rs).
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/plugins/{name}/score"),
    ("POST", "/v1/plugins/{name}/extract"),
    ("POST", "/v1/pipelines/{name}"),
    ("GET", "/v1/plugins"),
    ("GET", "/v1/plugins/{name}"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
];

fn handler(method: &str, path: &str) -> MethodRouter<Arc<App>> {
    match (method, path) {
        ("POST", "/v1/plugins/{name}/score") => post(handlers::score),
        ("POST", "/v1/plugins/{name}/extract") => post(handlers::extract),
        ("POST", "/v1/pipelines/{name}") => post(handlers::run_pipeline),
        ("GET", "/v1/plugins") => get(handlers::list_plugins),
        ("GET", "/v1/plugins/{name}") => get(handlers::get_plugin),
        ("GET", "/healthz") => get(handlers::healthz),
        ("GET", "/readyz") => get(handlers::readyz),
        ("GET", "/metrics") => get(handlers::metrics),
        _ => unreachable!("every entry of ROUTES has a handler"),
    }
}

/// The router of the whole surface.
pub fn router(app: Arc<App>) -> Router {
    let mut router = Router::new();
    for (method, path) in ROUTES {
        router = router.route(path, handler(method, path).fallback(method_not_allowed));
    }
    router.fallback(no_route).layer(middleware::from_fn_with_state(app.clone(), observe)).with_state(app)
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

async fn no_route(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::NoRoute(format!("{method} {}", uri.path()))
}

/// Times every request and records it by route template and plugin.
async fn observe(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let response = next.run(req).await.into_response();
    let plugin = response.extensions().get::<MetricLabel>().map_or("", |l| l.0.as_str());
    app.metrics.observe(&route, plugin, response.status().as_u16(), start.elapsed().as_secs_f64());
    response
}
