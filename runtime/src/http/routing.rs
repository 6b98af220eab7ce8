//! Dispatching a request to its handler, and timing it.
//!
//! A [`matchit`] table built once from [`ROUTES`] maps a path to its route;
//! the method picks the handler. Every request — matched or not — is recorded
//! in the metrics by route template, plugin and status, here and nowhere else.
//!
//! Every request gets an id: the caller's `x-request-id` when it is usable
//! (1–128 visible ASCII characters), a random one otherwise. It is echoed in
//! the response's `x-request-id`, and the request runs in its
//! [`crate::sandbox::request_id::scope`], so every log line the request causes — the
//! plugin's own included — carries it as `request_id`.
//!
//! This replaces axum's `Router` and a `from_fn` timing middleware: on the
//! single-row path they cost about 15% of a request (boxed and cloned
//! services, a matched-path extension, a per-request boxed middleware future);
//! measured with `benches/load.sh`, see docs/performance.md.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request};
use axum::response::{IntoResponse, Response};

use super::admin;
use super::error::ApiError;
use super::handlers::{self, MetricLabel};
use super::metrics::Label;
use super::{App, ROUTES};
use crate::state::{self, backend::Access};

/// The request-id header, read and echoed.
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The caller's request id if it is 1–128 visible ASCII characters, else a
/// new random one: 128 bits as 32 hex digits, like a W3C trace id.
fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(id) = headers.get(&REQUEST_ID)
        && (1..=128).contains(&id.len())
        && id.as_bytes().iter().all(|b| b.is_ascii_graphic())
    {
        return id.clone();
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bits = fastrand::u128(..);
    let mut text = [0u8; 32];
    for c in text.iter_mut().rev() {
        *c = HEX[(bits & 0xf) as usize];
        bits >>= 4;
    }
    HeaderValue::from_bytes(&text).expect("hex digits are a valid header value")
}

/// What a route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Score,
    Extract,
    Pipeline,
    ListPlugins,
    GetPlugin,
    Healthz,
    Readyz,
    Metrics,
    StatusPage,
    Status,
    AdminList,
    AdminUpload,
    AdminDelete,
    AdminActivate,
    AdminRollback,
    AdminCanary,
    AdminAbort,
    AdminPromote,
    AdminShadow,
    AdminUnshadow,
    FleetStatus,
    FleetChange,
}

impl Endpoint {
    fn of(method: &str, path: &str) -> Self {
        match (method, path) {
            ("POST", "/v1/plugins/{name}/score") => Self::Score,
            ("POST", "/v1/plugins/{name}/extract") => Self::Extract,
            ("POST", "/v1/pipelines/{name}") => Self::Pipeline,
            ("GET", "/v1/plugins") => Self::ListPlugins,
            ("GET", "/v1/plugins/{name}") => Self::GetPlugin,
            ("GET", "/healthz") => Self::Healthz,
            ("GET", "/readyz") => Self::Readyz,
            ("GET", "/metrics") => Self::Metrics,
            ("GET", "/") => Self::StatusPage,
            ("GET", "/v1/status") => Self::Status,
            ("GET", "/admin/v1/plugins") => Self::AdminList,
            ("PUT", "/admin/v1/plugins/{name}/versions/{version}") => Self::AdminUpload,
            ("DELETE", "/admin/v1/plugins/{name}/versions/{version}") => Self::AdminDelete,
            ("POST", "/admin/v1/plugins/{name}/versions/{version}/activate") => Self::AdminActivate,
            ("POST", "/admin/v1/plugins/{name}/rollback") => Self::AdminRollback,
            ("POST", "/admin/v1/plugins/{name}/canary") => Self::AdminCanary,
            ("DELETE", "/admin/v1/plugins/{name}/canary") => Self::AdminAbort,
            ("POST", "/admin/v1/plugins/{name}/canary/promote") => Self::AdminPromote,
            ("POST", "/admin/v1/plugins/{name}/shadow") => Self::AdminShadow,
            ("DELETE", "/admin/v1/plugins/{name}/shadow") => Self::AdminUnshadow,
            ("GET", "/admin/v1/fleet") => Self::FleetStatus,
            ("POST", "/admin/v1/fleet/plugins/{name}/{op}") => Self::FleetChange,
            _ => unreachable!("every entry of ROUTES has an endpoint"),
        }
    }
}

impl Endpoint {
    /// Whether this is a route of the admin API (`/admin/v1/…`).
    fn is_admin(self) -> bool {
        matches!(
            self,
            Self::AdminList
                | Self::AdminUpload
                | Self::AdminDelete
                | Self::AdminActivate
                | Self::AdminRollback
                | Self::AdminCanary
                | Self::AdminAbort
                | Self::AdminPromote
                | Self::AdminShadow
                | Self::AdminUnshadow
                | Self::FleetStatus
                | Self::FleetChange
        )
    }
}

/// Which routes one listener serves. With `serve --admin-addr`, the admin API
/// is only on its own address (not reachable where clients score) and the
/// public address answers it 404, as a path that does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    /// Every route: one listener for everything (the default).
    All,
    /// Every route but the admin API.
    Public,
    /// The admin API, and `/healthz` for the admin address's own checks.
    Admin,
}

impl Exposure {
    fn allows(self, endpoint: Endpoint) -> bool {
        match self {
            Exposure::All => true,
            Exposure::Public => !endpoint.is_admin(),
            Exposure::Admin => endpoint.is_admin() || endpoint == Endpoint::Healthz,
        }
    }
}

/// One method of one path: its endpoint and the route template as a metrics label.
#[derive(Debug, Clone)]
struct Route {
    method: Method,
    endpoint: Endpoint,
    template: Label,
}

/// The HTTP surface as a service: cheap to clone (one `Arc`), usable from
/// hyper (see `server.rs`) and, through its `tower::Service` impl, in-process
/// from tests.
#[derive(Clone)]
pub struct Router {
    app: Arc<App>,
    table: Arc<matchit::Router<Vec<Route>>>,
    unmatched: Label,
    no_plugin: Label,
    exposure: Exposure,
}

impl Router {
    /// Builds the table from [`ROUTES`], every route exposed.
    pub fn new(app: Arc<App>) -> Self {
        Self::exposing(app, Exposure::All)
    }

    /// Builds the table from [`ROUTES`], serving only what `exposure` allows
    /// (the rest is 404, as if it did not exist).
    pub fn exposing(app: Arc<App>, exposure: Exposure) -> Self {
        let mut by_path: Vec<(&str, Vec<Route>)> = Vec::new();
        for &(method, path) in ROUTES {
            let entry = Route {
                method: method.parse().expect("ROUTES holds valid methods"),
                endpoint: Endpoint::of(method, path),
                template: Label::new(Arc::from(path)),
            };
            match by_path.iter_mut().find(|(p, _)| *p == path) {
                Some((_, entries)) => entries.push(entry),
                None => by_path.push((path, vec![entry])),
            }
        }
        let mut table = matchit::Router::new();
        for (path, entries) in by_path {
            table.insert(path, entries).expect("ROUTES holds distinct, valid templates");
        }
        Self {
            app,
            table: Arc::new(table),
            unmatched: Label::new(Arc::from("unmatched")),
            no_plugin: Label::new(Arc::from("")),
            exposure,
        }
    }

    /// Answers one request, and records it.
    pub async fn handle(&self, req: Request<Body>) -> Response {
        let start = Instant::now();
        let id = request_id(req.headers());
        // Plugin calls made for a request serve traffic: they record into the
        // live state (a shadow copy peeks, a golden gate uses a scratch store).
        let live = Access::Live(self.app.config.state.clone());
        let (route, mut response) =
            crate::sandbox::request_id::scope(id.clone(), state::backend::scope(live, self.dispatch(req)))
                .await;
        response.headers_mut().insert(REQUEST_ID, id);
        let plugin = response
            .extensions()
            .get::<MetricLabel>()
            .map_or_else(|| self.no_plugin.clone(), |l| l.0.clone());
        self.app.metrics.observe(route, plugin, response.status().as_u16(), start.elapsed().as_secs_f64());
        response
    }

    /// Finds the route and runs its handler; returns the route's label too.
    async fn dispatch(&self, req: Request<Body>) -> (Label, Response) {
        let app = self.app.clone();
        let path = req.uri().path();
        let Ok(matched) = self.table.at(path) else {
            let error = ApiError::NoRoute(format!("{} {path}", req.method()));
            return (self.unmatched.clone(), error.into_response());
        };
        // HEAD is answered as GET (hyper sends the headers only).
        let method = if req.method() == Method::HEAD { &Method::GET } else { req.method() };
        if !self.exposure.allows(matched.value[0].endpoint) {
            let error = ApiError::NoRoute(format!("{} {path}", req.method()));
            return (self.unmatched.clone(), error.into_response());
        }
        let Some(entry) = matched.value.iter().find(|e| e.method == *method) else {
            let template = matched.value[0].template.clone();
            return (template, ApiError::MethodNotAllowed.into_response());
        };
        // Plugin and pipeline names are [a-z0-9_-]: a name that needs
        // percent-decoding cannot exist, and is answered 404 as it stands.
        let name = matched.params.get("name").unwrap_or_default().to_owned();
        let version = matched.params.get("version").unwrap_or_default().to_owned();
        let template = entry.template.clone();
        let response = match entry.endpoint {
            Endpoint::Score => handlers::score(app, name, req).await.into_response(),
            Endpoint::Extract => handlers::extract(app, name, req).await.into_response(),
            Endpoint::Pipeline => handlers::run_pipeline(app, name, req).await.into_response(),
            Endpoint::ListPlugins => handlers::list_plugins(app),
            Endpoint::GetPlugin => handlers::get_plugin(app, name).into_response(),
            Endpoint::Healthz => handlers::healthz(),
            Endpoint::Readyz => handlers::readyz(app).into_response(),
            Endpoint::Metrics => handlers::metrics(app),
            Endpoint::StatusPage => handlers::status_page(),
            Endpoint::Status => handlers::status(app),
            Endpoint::AdminList => admin::list(app, req).await.into_response(),
            Endpoint::AdminUpload => admin::upload(app, name, version, req).await.into_response(),
            Endpoint::AdminDelete => admin::delete(app, name, version, req).await.into_response(),
            Endpoint::AdminActivate => admin::activate(app, name, version, req).await.into_response(),
            Endpoint::AdminRollback => admin::rollback(app, name, req).await.into_response(),
            Endpoint::AdminCanary => admin::canary(app, name, req).await.into_response(),
            Endpoint::AdminAbort => admin::abort(app, name, req).await.into_response(),
            Endpoint::AdminPromote => admin::promote(app, name, req).await.into_response(),
            Endpoint::AdminShadow => admin::shadow(app, name, req).await.into_response(),
            Endpoint::AdminUnshadow => admin::unshadow(app, name, req).await.into_response(),
            Endpoint::FleetStatus => admin::fleet_status(app, req).await.into_response(),
            Endpoint::FleetChange => {
                let op = matched.params.get("op").unwrap_or_default().to_owned();
                admin::fleet_change(app, name, op, req).await.into_response()
            }
        };
        (template, response)
    }
}

impl tower::Service<Request<Body>> for Router {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let router = self.clone();
        Box::pin(async move { Ok(router.handle(req).await) })
    }
}
