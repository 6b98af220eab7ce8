//! One plugin version: what a plugin directory declares ([`manifest`]), how
//! it is loaded ([`runtime`], [`plugin`]), how JSON becomes the rows and
//! frames a guest receives and back ([`layout`], `frame`), how a guest's
//! answer is checked ([`output`]) and what stops a faulting version
//! ([`breaker`]). Built on the [`crate::sandbox`]; knows nothing of names,
//! routing or HTTP.

pub mod breaker;
pub(crate) mod frame;
pub mod layout;
pub mod manifest;
pub mod output;
pub mod plugin;
pub mod runtime;
