//! The bindings wit-bindgen generates from `wit/`, one module per world.
//!
//! Plugins rarely touch these directly: the [`crate::export_scorer`] and
//! [`crate::export_extractor`] macros wire a plugin's types to them.
#![allow(missing_docs, clippy::all)]

/// Bindings of the `scorer-plugin` world. Owns the shared `types`, `frames` and `log` interfaces.
pub mod scorer {
    wit_bindgen::generate!({
        path: "../wit",
        world: "scorer-plugin",
        pub_export_macro: true,
        export_macro_name: "export_scorer_world",
        default_bindings_module: "::scorehost_guest::bindings::scorer",
    });
}

/// Bindings of the `extractor-plugin` world, sharing `types` and `log` with [`scorer`].
pub mod extractor {
    wit_bindgen::generate!({
        path: "../wit",
        world: "extractor-plugin",
        pub_export_macro: true,
        export_macro_name: "export_extractor_world",
        default_bindings_module: "::scorehost_guest::bindings::extractor",
        with: {
            "scorehost:plugin/types@0.1.2": super::scorer::scorehost::plugin::types,
            "scorehost:plugin/log@0.1.2": super::scorer::scorehost::plugin::log,
            "scorehost:plugin/state@0.1.2": super::scorer::scorehost::plugin::state,
        },
    });
}

pub use scorer::scorehost::plugin::frames;
pub use scorer::scorehost::plugin::types;
