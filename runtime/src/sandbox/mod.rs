//! The sandbox: one guest call, and nothing above it.
//!
//! The shared wasmtime [`engine`], the per-call budgets of [`limits`] and
//! [`host_budget`], the imports a plugin may use ([`host`]), the instances a
//! call runs on ([`instances`]), turning traps into typed errors ([`trap`]),
//! pre-initialisation ([`snapshot`]) and the on-disk [`cache`] of compiled
//! components. This layer knows no JSON and no HTTP; everything above it
//! imports from here, never the other way round.

pub mod bindings;
pub mod cache;
pub mod engine;
pub mod error;
pub mod host;
pub mod host_budget;
pub mod instances;
pub mod limits;
pub mod request_id;
pub mod safe_read;
pub mod snapshot;
pub mod state_import;
pub mod stats;
pub mod trap;
pub mod world;
