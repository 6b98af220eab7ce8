//! scorehost: a WebAssembly plugin runtime for sandboxed ML feature and scoring logic.
//!
//! The library is in layers, each a folder that imports only from the
//! layers below it (`tests/all/layers.rs` checks this):
//!
//! 0. [`state`] — real-time state for plugins: the exact window semantics
//!    and the data structures the state backends are built on;
//! 1. [`sandbox`] — one guest call: the engine, budgets, host imports,
//!    instances, traps, pre-initialisation snapshots and the compiled cache;
//! 2. [`version`] — one plugin version: its manifest, loading, JSON ↔ rows
//!    and frames, output checks and circuit breaker;
//! 3. [`serving`] — names to versions: the registry, canary and shadow
//!    traffic, pipelines, the decision log, rendering answers;
//! 4. [`control`] — changing what is served: the store, the admin
//!    operations, the validation gate's golden vectors, the store watcher;
//! 5. [`http`] — the edge: the server, routes, and errors as responses.
//!
//! The `scorehost` binary is its own crate (`runtime/cli`). docs/architecture.md
//! follows a request, a hot-swap and start-up through these files.

pub mod control;
pub mod http;
pub mod sandbox;
pub mod serving;
pub mod state;
pub mod version;

#[cfg(test)]
mod proptests;

pub use sandbox::engine::{HostEngine, PoolSize};
pub use sandbox::error::{CallError, ErrorKind, LoadError};
pub use sandbox::instances::Outcome;
pub use sandbox::world::World;
pub use version::manifest::Manifest;
pub use version::output::Scored;
pub use version::plugin::PluginVersion;
pub use version::runtime::Runtime;
