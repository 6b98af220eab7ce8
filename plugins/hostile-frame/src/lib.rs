//! # hostile-frame — a scorer whose optional export has the wrong type
//!
//! Shows: a bad version never goes live. `wit/` here is the 0.1.1 contract
//! with one change: `score-frame` returns `list<f64>` instead of
//! `frame-scores`. The names all match, so only a type check finds it; the
//! host checks every export once, at load, and refuses the version there,
//! instead of failing its first batch in production. `scorer` itself is
//! correct. Run: `cargo test -p scorehost --test all contract`.

// Only the wasm build exports anything (natively the cdylib could not link the
// component-model export names); the workspace still builds it for the lints.
#[cfg(target_arch = "wasm32")]
#[allow(missing_docs)]
mod bindings {
    wit_bindgen::generate!({ path: "wit", world: "scorer-plugin" });
}

#[cfg(target_arch = "wasm32")]
mod plugin {
    use super::bindings::exports::scorehost::plugin::{frame_scorer, scorer};
    use super::bindings::scorehost::plugin::frames::Frame;
    use super::bindings::scorehost::plugin::types::{Metadata, PluginError, Row, ScoreResult};

    struct Mistyped;

    impl scorer::Guest for Mistyped {
        fn init(_config: Vec<(String, String)>) -> Result<(), PluginError> {
            Ok(())
        }

        fn describe() -> Metadata {
            Metadata {
                name: "hostile-frame".into(),
                version: "0.1.0".into(),
                description: "score-frame has the wrong result type.".into(),
                inputs: Vec::new(),
                outputs: Vec::new(),
                open_inputs: false,
            }
        }

        fn score(_row: Row) -> Result<ScoreResult, PluginError> {
            Ok(ScoreResult { value: 0.5, reasons: Vec::new() })
        }

        fn score_batch(rows: Vec<Row>) -> Vec<Result<ScoreResult, PluginError>> {
            rows.into_iter().map(Self::score).collect()
        }
    }

    impl frame_scorer::Guest for Mistyped {
        fn score_frame(frame: Frame) -> Vec<f64> {
            vec![0.5; frame.rows as usize]
        }
    }

    super::bindings::export!(Mistyped with_types_in super::bindings);
}
