//! scorehost: a WebAssembly plugin runtime for sandboxed ML feature and scoring logic.
//!
//! The pieces, in the order a plugin meets them:
//! - [`manifest`] reads `plugin.toml`;
//! - [`plugin::PluginVersion::load`] validates and compiles the component,
//!   runs its `init` once and snapshots it ([`snapshot`]), caching the result
//!   on disk ([`cache`]);
//! - every call runs in an instance of its plugin version (warm, or new from
//!   the snapshot) on the one shared [`engine`], with the
//!   budgets of [`limits`] and only the imports of [`host`]; a scorer's
//!   batches travel as one columnar frame when it exports `frame-scorer`;
//! - failures come back as the typed errors of [`error`]; a version that keeps
//!   faulting is quarantined by its [`breaker`];
//! - [`registry`] maps names to live versions, [`pipeline`] chains extractors
//!   into a scorer, and [`http`] serves it all.

pub mod admin;
pub mod bindings;
pub mod breaker;
pub mod cache;
pub mod decisions;
pub mod engine;
pub mod error;
pub(crate) mod frame;
pub mod golden;
pub mod host;
pub mod host_budget;
pub mod http;
pub(crate) mod instances;
pub mod layout;
pub mod limits;
pub mod load;
pub mod manifest;
pub mod pipeline;
pub mod plugin;
pub mod registry;
pub mod render;
pub mod request_id;
mod runtime;
pub mod safe_read;
pub mod snapshot;
pub mod stats;
pub mod store;
pub mod traffic;
pub mod trap;
pub mod watch;

#[cfg(test)]
mod proptests;

pub use engine::{HostEngine, PoolSize};
pub use error::{CallError, ErrorKind, LoadError};
pub use manifest::{Manifest, World};
pub use plugin::{Outcome, PluginVersion, Scored};
pub use runtime::Runtime;
