//! The guest SDK for scorehost plugins.
//!
//! A plugin is a Rust `cdylib` built for `wasm32-wasip2`. It implements [`Scorer`]
//! (features → score) or [`Extractor`] (event → features) and exports it with one
//! macro. A complete scorer:
//!
//! ```
//! use scorehost_guest::prelude::*;
//! #[derive(Default)]
//! struct Hello;
//! impl Scorer for Hello {
//!     fn metadata(&self) -> Metadata { Metadata::default().input(float("amount_usd").required()) }
//!     fn score(&self, f: &Features) -> Result<Score> { Ok(Score::new(f.float("amount_usd")? / 10_000.0)) }
//! }
//! export_scorer!(Hello);
//! ```
//!
//! Its name and version are its crate's (`Cargo.toml`): the export macro fills
//! an empty [`Metadata::name`] and [`Metadata::version`], and the host checks
//! them against `plugin.toml` as for any plugin ([`Metadata::new`] sets them
//! explicitly). It has no state, so it derives `Default` and has no `init`.
//! A plugin with state — a model, a rate table — builds it from its config in
//! [`Scorer::init`]:
//!
//! ```
//! use scorehost_guest::prelude::*;
//!
//! struct Scaled {
//!     factor: f64,
//! }
//!
//! impl Scorer for Scaled {
//!     fn init(config: &Config) -> Result<Self> {
//!         Ok(Scaled { factor: config.parse("factor")?.unwrap_or(2.0) })
//!     }
//!     fn metadata(&self) -> Metadata {
//!         Metadata::default().input(float("x").required())
//!     }
//!     fn score(&self, f: &Features) -> Result<Score> {
//!         Ok(Score::new(self.factor * f.float("x")?))
//!     }
//! }
//!
//! export_scorer!(Scaled);
//! ```
//!
//! How a plugin is called: the host runs `init` (or `Default::default`) once
//! per plugin version with the manifest's `[config]` (and the model directory
//! readable at [`MODEL_DIR`]), snapshots the initialised memory, and starts
//! every instance from that snapshot. An instance that finished a call
//! cleanly may serve later calls of the same plugin version (unless the
//! manifest sets `[instances] fresh_per_call = true`), so keep `score` free of
//! state of its own; one that trapped or panicked is always thrown away.
//!
//! [`Features`] reads inputs by name; the host passes them positionally, resolved
//! against [`Metadata::inputs`] once at load. Accessor errors name the field:
//! a missing required value is the caller's fault (HTTP 422); reading a field
//! that was never declared, or with the wrong kind, is the plugin's (HTTP 500).
//!
//! Batches arrive as one columnar [`Frame`] (contract 0.1.1's `frame-scorer`,
//! which the export macro exports for every scorer; plugins that declare
//! open inputs get rows instead, since a frame has no `extra`): the default
//! [`Scorer::score_frame`] calls `score` on each row, so most plugins write
//! nothing for it. A dense-vector model may override it to skip per-row work
//! (see `plugins/gbdt`).
//!
//! Features from the recent history of a card, an e-mail or a device —
//! counts and sums over sliding windows, distinct counts, offline lookups —
//! come from the host's state store through [`state::exchange`] (contract
//! 0.1.2; see `plugins/velocity`).
//!
//! Unit-test the logic natively with [`testing::Harness`] — no wasm needed
//! (`Harness::of_scorer(Hello)` for a plugin without `init`);
//! `Harness::score_batch` runs the frame path, to compare with `score`.

pub mod bindings;
mod config;
mod error;
mod export;
mod features;
mod frame;
pub mod log;
mod metadata;
pub mod state;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

pub use config::{Config, MODEL_DIR, read_model_file};
pub use error::{ErrorKind, PluginError, Result};
#[doc(hidden)]
pub use export::__private;
pub use export::{Extractor, Loaded, Scorer, extract_row, score_frame, score_row};
pub use features::{Features, Layout, Output, Value};
pub use frame::{Frame, FrameOut};
pub use metadata::{FieldSpec, Kind, Metadata, Reason, Score, boolean, float, floats, int, text};

/// Everything a plugin needs, in one import.
pub mod prelude {
    pub use crate::{
        Config, Extractor, Features, Frame, FrameOut, Metadata, Output, PluginError, Result, Score, Scorer,
        Value, boolean, export_extractor, export_scorer, float, floats, int, text,
    };
}
