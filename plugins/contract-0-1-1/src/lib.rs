//! # contract-0-1-1 — an extractor built before the contract had state
//!
//! Shows: compatibility. `wit/` here is a frozen copy of the contract as
//! released at `scorehost:plugin@0.1.1` (before the `state` import), bound
//! with wit-bindgen directly instead of the SDK, which follows the current
//! contract. The host speaks 0.1.2 and must still load this component,
//! satisfy its `log@0.1.1` import and call `extract`, without granting or
//! requiring anything new.
//!
//! It extracts `doubled = 2 * x` and fails a negative `x` as invalid input.
//! Run: `cargo test -p scorehost --test all contract`.

// Only the wasm build exports anything (natively the cdylib could not link the
// component-model export names); the workspace still builds it for the lints.
#[cfg(target_arch = "wasm32")]
#[allow(missing_docs)]
mod bindings {
    wit_bindgen::generate!({ path: "wit", world: "extractor-plugin" });
}

#[cfg(target_arch = "wasm32")]
mod plugin {
    use super::bindings::exports::scorehost::plugin::extractor::Guest;
    use super::bindings::scorehost::plugin::log::{Level, log};
    use super::bindings::scorehost::plugin::types::{
        ErrorKind, FieldSpec, Metadata, PluginError, Row, ValueKind,
    };

    struct Legacy;

    fn field(name: &str) -> FieldSpec {
        FieldSpec { name: name.into(), kind: ValueKind::Float, required: true, doc: String::new() }
    }

    impl Guest for Legacy {
        fn init(_config: Vec<(String, String)>) -> Result<(), PluginError> {
            // Uses the `log@0.1.1` import, which the host's 0.1.2 `log` satisfies.
            log(Level::Info, "built against contract 0.1.1");
            Ok(())
        }

        fn describe() -> Metadata {
            Metadata {
                name: "contract-0-1-1".into(),
                version: "0.1.0".into(),
                description: "Built against contract 0.1.1: extracts doubled = 2 * x.".into(),
                inputs: vec![field("x")],
                outputs: vec![field("doubled")],
                open_inputs: false,
            }
        }

        fn extract(event: Row) -> Result<Row, PluginError> {
            let x = event.numbers.first().copied().unwrap_or(f64::NAN);
            if x < 0.0 {
                let message = format!("x = {x} is negative");
                return Err(PluginError { kind: ErrorKind::InvalidInput, message });
            }
            Ok(Row {
                numbers: vec![2.0 * x],
                missing: Vec::new(),
                texts: Vec::new(),
                vectors: Vec::new(),
                extra: Vec::new(),
            })
        }

        fn extract_batch(events: Vec<Row>) -> Vec<Result<Row, PluginError>> {
            events.into_iter().map(Self::extract).collect()
        }
    }

    super::bindings::export!(Legacy with_types_in super::bindings);
}
