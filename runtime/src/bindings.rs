//! Host-side bindings generated from `wit/`, one module per world; the
//! extractor world reuses the scorer world's `types` and `log`.
#![allow(missing_docs)]

/// Bindings of `scorehost:plugin/scorer-plugin`.
pub mod scorer {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "scorer-plugin",
    });
}

/// Bindings of `scorehost:plugin/extractor-plugin`.
pub mod extractor {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "extractor-plugin",
        with: {
            "scorehost:plugin/types": super::scorer::scorehost::plugin::types,
            "scorehost:plugin/log": super::scorer::scorehost::plugin::log,
        },
    });
}

pub use scorer::scorehost::plugin::log as wit_log;
pub use scorer::scorehost::plugin::types;
