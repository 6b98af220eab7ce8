//! The id of the request a call serves, for log lines.
//!
//! The HTTP layer runs each request inside [`scope`]; the host's log import
//! and the error logging read it with [`current`], so a plugin's own log
//! lines carry the id of the request that made the call. A task-local rather
//! than a `tracing` span: an enabled span per request (allocated, formatted,
//! entered at every poll) cost scorehost ~12% of its single-row throughput
//! under `benches/load.sh` (0.83× → 0.73× of native).

use std::future::Future;

use axum::http::HeaderValue;

tokio::task_local! {
    static REQUEST_ID: HeaderValue;
}

/// Runs `f` as the work of request `id`.
pub async fn scope<F: Future>(id: HeaderValue, f: F) -> F::Output {
    REQUEST_ID.scope(id, f).await
}

/// Runs `f` (blocking, on this thread) as the work of request `id`.
pub fn sync_scope<R>(id: HeaderValue, f: impl FnOnce() -> R) -> R {
    REQUEST_ID.sync_scope(id, f)
}

/// The id of the request being served on this task, if any.
pub fn current() -> Option<HeaderValue> {
    REQUEST_ID.try_with(HeaderValue::clone).ok()
}

/// [`current`] as text for a log field ("" outside a request).
pub fn display() -> impl std::fmt::Display {
    struct Id(Option<HeaderValue>);
    impl std::fmt::Display for Id {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0.as_ref().and_then(|v| v.to_str().ok()).unwrap_or_default())
        }
    }
    Id(current())
}
