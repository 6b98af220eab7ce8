//! Real-time state for plugins (issue #19): windowed aggregates over the
//! recent history of an entity (a card, an e-mail, a device) and lookups of
//! features written by offline jobs, read and written by a plugin through a
//! host capability. The lowest layer: pure data structures and the exact
//! window semantics, which the sandbox's host import and the backends (in
//! process, Redis) build on. docs/state-design.md has the design.
//!
//! Built so far: [`window`] (the tile ladder and what a window covers),
//! [`tiles`] (one entity's per-tile count, sum and max, and reading a window
//! from them), [`hll`] (distinct counts, the same numbers as Redis's
//! `PFCOUNT`) and [`memory`] (the in-process store: idempotency, late and
//! future events, a per-plugin quota held by sampled LRU eviction), and
//! [`spec`] (a plugin's `[state]` table, checked at load).

pub mod hll;
pub mod memory;
pub mod spec;
pub mod tiles;
pub mod window;
