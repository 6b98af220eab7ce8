//! Serving: which version answers a name ([`registry`]), canary and shadow
//! traffic ([`traffic`]), extractor → scorer chains ([`pipeline`]), the
//! decision log ([`decisions`]) and the JSON shapes of answers ([`render`]).
//! Built on [`crate::version`]; knows nothing of HTTP.

pub mod decisions;
pub mod pipeline;
pub mod registry;
pub mod render;
pub mod traffic;
