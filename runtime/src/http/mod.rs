//! The HTTP surface (DESIGN.md §4), on hyper 1 + tokio with axum routing.
//!
//! - [`routing`] dispatches [`ROUTES`] — the table the OpenAPI test checks
//!   `docs/openapi.json` against — to the [`handlers`] and times every request;
//! - [`error`] is the one place errors become statuses;
//! - [`server`] accepts connections (HTTP/1.1 and cleartext HTTP/2), applies the
//!   header-read timeout and shuts down gracefully.

pub mod admin;
pub mod codec;
pub mod error;
pub mod handlers;
pub mod metrics;
pub mod routing;
pub mod server;
pub mod status;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;

use self::error::ApiError;
use self::metrics::Metrics;
pub use self::routing::Router;
use crate::sandbox::error::CallError;
use crate::serving::pipeline::Pipelines;
use crate::serving::registry::Registry;
use crate::state::{
    self,
    backend::{Access, Backend},
};

/// Where a wasm call runs.
///
/// Calls are futures (`call_async`) whose epoch callback yields at every
/// 1 ms tick, so even a plugin that runs to a long deadline holds an async
/// worker for at most one tick at a time: /healthz and other connections
/// keep being served in between. Measured with `benches/load.sh` (2 cores,
/// wrk -t1 -c16, single-row logreg, warm instances, same run): on the async
/// workers 67.1k req/s, p99 0.94 ms; handed to the blocking pool 42.4k req/s,
/// p99 1.35 ms — the hand-off (two thread wake-ups per request) costs more
/// than the ~2 µs call. So calls run on the async workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CallMode {
    /// Polled on the request's own async worker, yielding every epoch tick.
    #[default]
    Async,
    /// Driven to completion on tokio's blocking pool (`spawn_blocking`).
    Blocking,
}

/// Limits and knobs of the HTTP server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest accepted request body (413 beyond).
    pub max_body_bytes: usize,
    /// Most plugin calls in flight at once; beyond, 503 + Retry-After.
    pub max_in_flight: usize,
    /// Time a client has to send its request headers: on a new connection,
    /// from accept to its first request's headers (protocol detection and
    /// the HTTP/2 preface included).
    pub header_read_timeout: Duration,
    /// Most connections open at once; past it, new ones are closed at once.
    pub max_connections: usize,
    /// Time a connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// Time a client has to send its request body, once its headers are in (408 beyond).
    pub body_read_timeout: Duration,
    /// Most rows in one batch (413 beyond).
    pub max_batch_rows: usize,
    /// Most fields in one row or event (413 beyond).
    pub max_fields: usize,
    /// Longest a graceful shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// How long, at shutdown, the server keeps accepting with `/readyz`
    /// answering 503 before it closes its listeners: time for a load
    /// balancer's health check to take it out of rotation first (two failed
    /// checks at its interval). Zero (the default) closes at once.
    pub drain_delay: Duration,
    /// Where wasm calls run.
    pub call_mode: CallMode,
    /// Where answered scores are logged (sampled), if anywhere.
    pub decisions: Option<Arc<crate::serving::decisions::DecisionLog>>,
    /// The state store live and canary versions record into (shadows only read).
    pub state: Backend,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            max_in_flight: 128,
            header_read_timeout: Duration::from_secs(5),
            max_connections: 1024,
            idle_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(10),
            max_batch_rows: 1000,
            max_fields: 1000,
            shutdown_grace: Duration::from_secs(30),
            drain_delay: Duration::ZERO,
            call_mode: CallMode::Async,
            decisions: None,
            state: Backend::default(),
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
    /// The admin API, when the server has a plugin store and a token.
    pub admin: Option<admin::AdminApi>,
    /// Per-second rates and latencies for the status page, filled by the
    /// sampler [`server::serve`] starts.
    pub history: Arc<status::History>,
    /// Held not ready by a fleet replica until it has applied the fleet's state.
    pub readiness: Arc<crate::control::readiness::Readiness>,
    slots: Arc<Semaphore>,
    draining: AtomicBool,
}

impl App {
    /// Shared state for a server over `registry` and `pipelines`.
    pub fn new(registry: Arc<Registry>, pipelines: Pipelines, config: ServerConfig) -> Arc<Self> {
        Self::with_admin(registry, pipelines, config, None)
    }

    /// Shared state for a server that also serves `/admin/v1/` through `admin`.
    pub fn with_admin(
        registry: Arc<Registry>,
        pipelines: Pipelines,
        config: ServerConfig,
        admin: Option<admin::AdminApi>,
    ) -> Arc<Self> {
        Arc::new(Self {
            metrics: Metrics::default()
                .with_plugins(registry.clone())
                .with_decisions(config.decisions.clone()),
            registry,
            pipelines,
            admin,
            history: Arc::default(),
            readiness: Arc::default(),
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
        call: impl Future<Output = Result<T, CallError>> + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::Overloaded { limit: self.config.max_in_flight })?;
        // The permit lives exactly as long as the call: if the client goes away
        // the request future — and the wasm call inside it — is dropped, which
        // cancels the call and frees its instance and its slot together.
        let result = match self.config.call_mode {
            CallMode::Async => {
                let result = call.await;
                drop(permit);
                result
            }
            CallMode::Blocking => {
                let runtime = tokio::runtime::Handle::current();
                let id = crate::sandbox::request_id::current();
                let access = Access::current();
                tokio::task::spawn_blocking(move || {
                    let call = || state::backend::sync_scope(access, || runtime.block_on(call));
                    let result = match id {
                        Some(id) => crate::sandbox::request_id::sync_scope(id, call),
                        None => call(),
                    };
                    drop(permit);
                    result
                })
                .await
                .map_err(|e| ApiError::Unavailable(format!("the call's worker thread failed: {e}")))?
            }
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
    ("GET", "/"),
    ("GET", "/v1/status"),
    ("GET", "/admin/v1/plugins"),
    ("PUT", "/admin/v1/plugins/{name}/versions/{version}"),
    ("DELETE", "/admin/v1/plugins/{name}/versions/{version}"),
    ("POST", "/admin/v1/plugins/{name}/versions/{version}/activate"),
    ("POST", "/admin/v1/plugins/{name}/rollback"),
    ("POST", "/admin/v1/plugins/{name}/canary"),
    ("DELETE", "/admin/v1/plugins/{name}/canary"),
    ("POST", "/admin/v1/plugins/{name}/canary/promote"),
    ("POST", "/admin/v1/plugins/{name}/shadow"),
    ("DELETE", "/admin/v1/plugins/{name}/shadow"),
    ("GET", "/admin/v1/fleet"),
    ("POST", "/admin/v1/fleet/plugins/{name}/{op}"),
];

/// The router of the whole surface, as a cloneable service.
pub fn router(app: Arc<App>) -> Router {
    Router::new(app)
}
