//! Accepting connections: HTTP/1.1 and cleartext HTTP/2 (prior knowledge) on
//! one port, a cap on open connections, timeouts against stalled and idle
//! clients, and a graceful shutdown that stops accepting, lets in-flight
//! requests finish (up to the grace period) and then returns.
//!
//! What bounds a connection ([`ServerConfig`] has the values):
//! - `max_connections`: past it, a new connection is accepted and closed at
//!   once, before anything is read from it, so one client cannot take every
//!   file descriptor;
//! - `header_read_timeout`: a connection must deliver its first request's
//!   headers within it — protocol detection and the HTTP/2 preface included,
//!   which hyper's own header timeout does not cover;
//! - `idle_timeout`: a connection with no request in flight for that long is
//!   closed (HTTP/2: a GOAWAY), whatever its protocol.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulConnection;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::time::Sleep;

use super::routing::{Exposure, Router};
use super::{App, ServerConfig};

/// How long a connection told to close (stalled or idle) may take to finish
/// before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Connections the admin address (`--admin-addr`) holds open at once: its
/// own cap, so a flood of the public port cannot lock operators out.
const MAX_ADMIN_CONNECTIONS: usize = 64;

/// Serves every route of `app` on `listener` until `shutdown` completes,
/// then drains.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let cap = app.config.max_connections;
    serve_listeners(vec![(listener, Exposure::All, cap)], app, shutdown).await
}

/// Serves `app` with the admin API on its own listener: `public` answers
/// everything but `/admin/v1/` (404 there), `admin` only the admin API (and
/// `/healthz`). One shutdown drains both.
pub async fn serve_with_admin(
    public: TcpListener,
    admin: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let cap = app.config.max_connections;
    let listeners = vec![(public, Exposure::Public, cap), (admin, Exposure::Admin, MAX_ADMIN_CONNECTIONS)];
    serve_listeners(listeners, app, shutdown).await
}

/// The accept loop over `listeners`, each with the routes it exposes and its
/// own connection cap.
async fn serve_listeners(
    listeners: Vec<(TcpListener, Exposure, usize)>,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let routers: Vec<Router> =
        listeners.iter().map(|(_, exposure, _)| Router::exposing(app.clone(), *exposure)).collect();
    let caps: Vec<(Arc<Semaphore>, usize)> =
        listeners.iter().map(|(_, _, cap)| (Arc::new(Semaphore::new(*cap)), *cap)).collect();
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(app.config.header_read_timeout);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(Some(Duration::from_secs(20)));
    // Told once, at shutdown: every connection closes gracefully.
    let (stop, stopping) = watch::channel(false);
    let mut refused = Refusals::default();
    // The status page's history; ends with the server's runtime.
    let sampler = tokio::spawn(app.history.clone().run(app.registry.clone()));
    // Shutdown begins with the drain delay: /readyz answers 503 while the
    // listeners still accept, so a load balancer stops sending first.
    let delay = app.config.drain_delay;
    let draining_app = app.clone();
    let shutdown = async move {
        shutdown.await;
        draining_app.start_draining();
        if !delay.is_zero() {
            tracing::info!("shutting down: /readyz answers 503; still accepting for {delay:?}");
            tokio::time::sleep(delay).await;
        }
    };
    let mut shutdown = std::pin::pin!(shutdown);
    let mut first = 0;

    loop {
        // The listener polled first takes turns, so a flood of one (the
        // public port) cannot starve the other (the admin address).
        first = (first + 1) % listeners.len();
        let accept_any = std::future::poll_fn(|cx| {
            for k in 0..listeners.len() {
                let i = (first + k) % listeners.len();
                if let Poll::Ready(accepted) = listeners[i].0.poll_accept(cx) {
                    return Poll::Ready((i, accepted));
                }
            }
            Poll::Pending
        });
        tokio::select! {
            (i, accepted) = accept_any => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (open, cap) = &caps[i];
                let Ok(permit) = open.clone().try_acquire_owned() else {
                    refused.note(*cap);
                    drop(stream); // closed before anything is read
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let activity = Arc::new(Activity::default());
                let service = {
                    let (router, activity) = (routers[i].clone(), activity.clone());
                    hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let router = router.clone();
                        let busy = activity.begin();
                        async move {
                            let response = router.handle(req.map(axum::body::Body::new)).await;
                            drop(busy);
                            Ok::<_, Infallible>(response)
                        }
                    })
                };
                let conn = builder.clone().serve_connection(TokioIo::new(stream), service).into_owned();
                let conn = Bounded::new(conn, activity, &app.config, stopping.clone());
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!("connection ended with an error: {e}");
                    }
                    drop(permit);
                });
            }
            () = &mut shutdown => break,
        }
    }

    sampler.abort();
    app.start_draining();
    drop(listeners); // new connections are refused from here on
    tracing::info!("shutting down: waiting for in-flight requests");
    let _ = stop.send(true);
    let all_closed = async {
        for (open, cap) in &caps {
            let _ = open.acquire_many(u32::try_from(*cap).unwrap_or(u32::MAX)).await;
        }
    };
    tokio::select! {
        () = all_closed => tracing::info!("all connections closed"),
        () = tokio::time::sleep(app.config.shutdown_grace) => {
            tracing::warn!("grace period of {:?} over; closing remaining connections", app.config.shutdown_grace);
        }
    }
    Ok(())
}

/// Connections refused at the cap, logged at most once a second.
#[derive(Default)]
struct Refusals {
    since_log: u64,
    logged: Option<Instant>,
}

impl Refusals {
    fn note(&mut self, cap: usize) {
        self.since_log += 1;
        if self.logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            tracing::warn!(
                refused = self.since_log,
                "at --max-connections = {cap}: closing new connections until some end"
            );
            self.since_log = 0;
            self.logged = Some(Instant::now());
        }
    }
}

/// What one connection's requests are doing, shared by its service and its
/// timer.
#[derive(Default)]
struct Activity {
    /// A request has arrived (the protocol is known, the headers are in).
    started: AtomicBool,
    in_flight: AtomicUsize,
    /// When the last request ended, in ms since the process's epoch.
    last_ms: AtomicU64,
}

impl Activity {
    /// Marks a request in flight until the returned guard drops.
    fn begin(self: &Arc<Self>) -> Busy {
        self.started.store(true, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    /// When the connection went idle, if it is.
    fn idle_since(&self) -> Option<Duration> {
        (self.in_flight.load(Ordering::Acquire) == 0)
            .then(|| Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// A request in flight on a connection.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.last_ms.store(since_start().as_millis() as u64, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Time since the process's first connection: a cheap clock for `last_ms`.
fn since_start() -> Duration {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

/// A connection with the stall and idle timeouts around it: it polls the
/// connection, and when its timer fires and the connection is stalled or
/// idle, starts a graceful close; one that has not closed [`CLOSE_GRACE`]
/// later is dropped.
struct Bounded<C> {
    conn: Pin<Box<C>>,
    activity: Arc<Activity>,
    timer: Pin<Box<Sleep>>,
    header_timeout: Duration,
    idle_timeout: Duration,
    /// Resolves when the server shuts down; `None` once seen.
    stopping: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// Set once a graceful close has begun: when the timer fires next, the
    /// connection is dropped.
    closing: bool,
}

impl<C: GracefulConnection> Bounded<C> {
    fn new(conn: C, activity: Arc<Activity>, config: &ServerConfig, mut stop: watch::Receiver<bool>) -> Self {
        activity.last_ms.store(since_start().as_millis() as u64, Ordering::Relaxed);
        let stopping = async move {
            while !*stop.borrow_and_update() {
                if stop.changed().await.is_err() {
                    return;
                }
            }
        };
        Self {
            conn: Box::pin(conn),
            activity,
            timer: Box::pin(tokio::time::sleep(config.header_read_timeout)),
            header_timeout: config.header_read_timeout,
            idle_timeout: config.idle_timeout,
            stopping: Some(Box::pin(stopping)),
            closing: false,
        }
    }

    /// Starts a graceful close; the connection is dropped if it has not
    /// closed `grace` later.
    fn close(&mut self, grace: Duration) {
        self.conn.as_mut().graceful_shutdown();
        self.closing = true;
        self.timer.as_mut().reset(tokio::time::Instant::now() + grace);
    }

    /// On the timer: closes a stalled or idle connection, or re-arms for
    /// when it next could be.
    fn on_timer(&mut self) {
        if !self.activity.started.load(Ordering::Relaxed) {
            return self.close(CLOSE_GRACE); // no request within the header timeout
        }
        let now = since_start();
        let wait = match self.activity.idle_since() {
            Some(since) if now.saturating_sub(since) >= self.idle_timeout => {
                return self.close(CLOSE_GRACE);
            }
            Some(since) => self.idle_timeout - now.saturating_sub(since),
            // A request is in flight: look again later.
            None => self.idle_timeout.max(self.header_timeout),
        };
        self.timer.as_mut().reset(tokio::time::Instant::now() + wait);
    }
}

impl<C: GracefulConnection> Future for Bounded<C> {
    type Output = Result<(), C::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            if let Poll::Ready(r) = self.conn.as_mut().poll(cx) {
                return Poll::Ready(r);
            }
            if let Some(stopping) = self.stopping.as_mut()
                && stopping.as_mut().poll(cx).is_ready()
            {
                // Server shutdown: in-flight requests finish; the server's
                // own grace period bounds the wait, not this connection. One
                // already closing (stalled or idle) keeps its short grace.
                self.stopping = None;
                if !self.closing {
                    self.close(Duration::from_secs(24 * 3600));
                }
                continue;
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if self.closing {
                return Poll::Ready(Ok(())); // dropped: it did not close in time
            }
            self.on_timer();
        }
    }
}
