//! # contract-0-1-0 — a plugin built before the contract had frames
//!
//! Shows: compatibility. `wit/` here is a frozen copy of the contract as
//! released at `scorehost:plugin@0.1.0` (before `frame-scorer`), bound with
//! wit-bindgen directly instead of the SDK, which follows the current
//! contract. The host speaks 0.1.1 and must still load this component,
//! satisfy its `log@0.1.0` import and send its batches through
//! `score-batch`, since it has no `score-frame`.
//!
//! It scores `2 * x` with one reason, and fails a negative `x` as invalid
//! input. Run: `cargo test -p scorehost --test all contract`.

// Only the wasm build exports anything (natively the cdylib could not link the
// component-model export names); the workspace still builds it for the lints.
#[cfg(target_arch = "wasm32")]
#[allow(missing_docs)]
mod bindings {
    wit_bindgen::generate!({ path: "wit", world: "scorer-plugin" });
}

#[cfg(target_arch = "wasm32")]
mod plugin {
    use super::bindings::exports::scorehost::plugin::scorer::Guest;
    use super::bindings::scorehost::plugin::log::{Level, log};
    use super::bindings::scorehost::plugin::types::{
        ErrorKind, FieldSpec, Metadata, PluginError, Reason, Row, ScoreResult, ValueKind,
    };

    struct Legacy;

    impl Guest for Legacy {
        fn init(_config: Vec<(String, String)>) -> Result<(), PluginError> {
            // Uses the `log@0.1.0` import, which the host's 0.1.1 `log` satisfies.
            log(Level::Info, "built against contract 0.1.0");
            Ok(())
        }

        fn describe() -> Metadata {
            let x =
                FieldSpec { name: "x".into(), kind: ValueKind::Float, required: true, doc: String::new() };
            Metadata {
                name: "contract-0-1-0".into(),
                version: "0.1.0".into(),
                description: "Built against contract 0.1.0: scores 2 * x.".into(),
                inputs: vec![x],
                outputs: Vec::new(),
                open_inputs: false,
            }
        }

        fn score(row: Row) -> Result<ScoreResult, PluginError> {
            let x = row.numbers.first().copied().unwrap_or(f64::NAN);
            if x < 0.0 {
                let message = format!("x = {x} is negative");
                return Err(PluginError { kind: ErrorKind::InvalidInput, message });
            }
            Ok(ScoreResult { value: 2.0 * x, reasons: vec![Reason { code: "x".into(), weight: x }] })
        }

        fn score_batch(rows: Vec<Row>) -> Vec<Result<ScoreResult, PluginError>> {
            rows.into_iter().map(Self::score).collect()
        }
    }

    super::bindings::export!(Legacy with_types_in super::bindings);
}
