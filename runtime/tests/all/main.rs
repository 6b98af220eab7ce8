//! scorehost integration tests: one binary, a module per topic (as in wasmtime's
//! tests/all). Every plugin used here is built from source in `plugins/` by the
//! scorehost-plugin-artifacts build script.

mod admin;
mod bad_input;
mod contract;
mod decisions;
mod examples;
mod gbdt;
mod host_calls;
mod hostile;
mod http;
mod http_openapi;
mod http_socket;
mod instances;
mod layers;
mod limits;
mod load;
mod logs;
mod metrics;
mod python;
mod sandbox;
mod state;
mod status;
mod support;
