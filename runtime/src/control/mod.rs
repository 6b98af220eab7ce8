//! Control: changing what is served without a restart. The on-disk plugin
//! [`store`], the [`admin`] operations (upload → validation gate → activate,
//! canary, shadow, rollback), the [`golden`] vectors the gate runs, and the
//! store [`watch`]er for deploy tools that write the store directly, the
//! [`fleet`] mode that follows a fleet-wide desired state, and the
//! [`readiness`] flag it holds `/readyz` with. Built on
//! [`crate::serving`]; the HTTP routes for it are in `http/admin.rs`, the layer above.

pub mod admin;
pub mod fleet;
pub mod golden;
pub mod readiness;
pub mod store;
pub mod watch;
