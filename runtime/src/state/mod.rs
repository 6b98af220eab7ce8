//! Real-time state for plugins (issue #19): windowed aggregates over the
//! recent history of an entity (a card, an e-mail, a device) and lookups of
//! features written by offline jobs, read and written by a plugin through a
//! host capability. The lowest layer: pure data structures, the exact window
//! semantics and the stores, which the sandbox's `state` import calls.
//! docs/state.md describes the model; docs/state-design.md the research.
//!
//! [`window`] (the tile ladder and what a window covers), [`tiles`] (one
//! entity's per-tile count, sum and max), [`hll`] (distinct counts, the same
//! numbers as Redis's `PFCOUNT`), [`exchange`] (one call's request and
//! answer, and the checks every backend applies), [`claims`] (the event ids
//! the in-process store remembers), [`spec`] (a plugin's
//! `[state]` table), the stores — [`memory`] (in process, the default) and
//! [`redis`] (shared by every replica) — and [`backend`], which picks one.

pub mod backend;
pub mod claims;
pub mod exchange;
pub mod hll;
pub mod memory;
pub mod redis;
pub mod spec;
pub mod tiles;
pub mod window;
