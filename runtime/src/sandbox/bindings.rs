//! Host-side bindings generated from `wit/`, one module per world; the
//! extractor world reuses the scorer world's `types` and `log`.
//!
//! Exports are called with `call_async`: calls run as futures on the server's
//! async workers and yield at every epoch tick (see `plugin.rs`). `init` during
//! pre-initialisation drives the same futures to completion on its loading
//! thread; with the blocking linker they never suspend.
#![allow(missing_docs)]

/// Bindings of `scorehost:plugin/scorer-plugin`.
pub mod scorer {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "scorer-plugin",
        exports: { default: async },
        // `log` may stop the call: its bytes count against the call's fuel
        // and it refuses to run past the deadline (`host_budget.rs`).
        // `state.exchange` awaits the state store (Redis) on the async workers.
        imports: {
            "scorehost:plugin/state.exchange": async | trappable,
            default: trappable,
        },
    });
}

/// Bindings of `scorehost:plugin/extractor-plugin`.
pub mod extractor {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "extractor-plugin",
        exports: { default: async },
        with: {
            "scorehost:plugin/types": super::scorer::scorehost::plugin::types,
            "scorehost:plugin/log": super::scorer::scorehost::plugin::log,
            "scorehost:plugin/state": super::scorer::scorehost::plugin::state,
        },
    });
}

pub use scorer::exports::scorehost::plugin::frame_scorer;
pub use scorer::exports::scorehost::plugin::scorer as scorer_exports;
pub use scorer::scorehost::plugin::frames;
pub use scorer::scorehost::plugin::log as wit_log;
pub use scorer::scorehost::plugin::state as wit_state;
pub use scorer::scorehost::plugin::types;
