//! Which store a plugin's exchanges go to, and in which mode — decided by
//! who makes the call, never by the plugin:
//!
//! - **Live** ([`Access::Live`]): live and canary versions serving traffic.
//!   They record into the process's [`Backend`] (in-process or Redis), under
//!   the plugin's own name, so a canary and the live version share state.
//! - **Peek** ([`Access::Peek`]): shadow versions. Same store, nothing
//!   written ([`Mode::Peek`]): a shadow cannot double-count traffic.
//! - **Scratch** ([`Access::Scratch`]): golden-vector gates, `scorehost
//!   test`, `call` and `replay`. A private in-process store that starts
//!   empty and is dropped after; the live state is never touched.
//!
//! A call made outside any scope gets a scratch store of its own: a path
//! that forgets to choose can never write to the live state.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::exchange::{Mode, Namespace, Request, Response, StateError};
use super::memory::MemStore;
use super::redis::RedisStore;

/// The store serving live traffic's state.
#[derive(Clone)]
pub enum Backend {
    /// This process's memory (the default).
    Memory(Arc<MemStore>),
    /// A Redis server shared by every replica.
    Redis(Arc<RedisStore>),
    /// No store: every exchange is `unavailable` (for measuring the cost of state).
    Off,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

impl Default for Backend {
    fn default() -> Self {
        Backend::Memory(Arc::new(MemStore::new()))
    }
}

impl Backend {
    /// `memory`, `redis` or `off`, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Backend::Memory(_) => "memory",
            Backend::Redis(_) => "redis",
            Backend::Off => "off",
        }
    }

    /// Runs one exchange in `mode`, waiting at most `timeout` for a remote store.
    pub async fn exchange(
        &self,
        ns: &Namespace,
        request: &Request,
        mode: Mode,
        timeout: Duration,
    ) -> Result<Response, StateError> {
        let now = now_ms();
        match self {
            Backend::Memory(m) => m.exchange(ns, now, request, mode),
            Backend::Redis(r) => r.exchange(ns, now, request, mode, timeout).await,
            Backend::Off => {
                Err(StateError::Unavailable("the server runs without a state store (--state off)".into()))
            }
        }
    }
}

/// The wall clock, ms since the Unix epoch: the reference for late and future events.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Who is calling, and so where a plugin's exchanges go.
#[derive(Clone)]
pub enum Access {
    /// Serving traffic as the live or canary version: record into the backend.
    Live(Backend),
    /// Serving a copy of traffic as a shadow: read the backend, write nothing.
    Peek(Backend),
    /// Testing: a private store.
    Scratch(Arc<MemStore>),
}

impl Access {
    /// A scratch store of its own.
    pub fn scratch() -> Self {
        Access::Scratch(Arc::new(MemStore::new()))
    }

    /// The access of a shadow copy of a call made with this one: the same
    /// store, read only.
    pub fn for_shadow(self) -> Self {
        match self {
            Access::Live(b) | Access::Peek(b) => Access::Peek(b),
            scratch => scratch,
        }
    }

    /// Runs one exchange the way this access allows.
    pub async fn exchange(
        &self,
        ns: &Namespace,
        request: &Request,
        timeout: Duration,
    ) -> Result<Response, StateError> {
        match self {
            Access::Live(b) => b.exchange(ns, request, Mode::Record, timeout).await,
            Access::Peek(b) => b.exchange(ns, request, Mode::Peek, timeout).await,
            Access::Scratch(m) => m.exchange(ns, now_ms(), request, Mode::Record),
        }
    }

    /// The access of the call being made: the innermost [`scope`], or a
    /// fresh scratch store outside any.
    pub fn current() -> Access {
        ACCESS.try_with(Clone::clone).unwrap_or_else(|_| Access::scratch())
    }
}

tokio::task_local! {
    static ACCESS: Access;
}

/// Runs `f` (a call, or a whole request) with `access`.
pub async fn scope<F: Future>(access: Access, f: F) -> F::Output {
    ACCESS.scope(access, f).await
}

/// Runs `f` with `access`, for calls driven to completion on this thread.
pub fn sync_scope<R>(access: Access, f: impl FnOnce() -> R) -> R {
    ACCESS.sync_scope(access, f)
}
