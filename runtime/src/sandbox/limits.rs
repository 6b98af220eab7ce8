//! Per-call budgets: fuel, a wall-clock deadline and a memory cap.
//!
//! Set per plugin in its manifest (`[limits]`); every call gets the full fuel
//! budget and deadline, whether its instance is new or reused; the memory cap
//! is per instance. The memory cap is enforced by [`MemoryLimiter`], which
//! records the breach so the error is reported as `memory_limit` rather than as
//! whatever the guest's allocator does when a grow fails.

use std::time::Duration;

use serde::Deserialize;

use crate::sandbox::error::InvalidValue;

/// Default fuel per call: ample for feature logic and a few hundred trees.
pub const DEFAULT_FUEL: u64 = 50_000_000;
/// Default wall-clock deadline per call.
pub const DEFAULT_DEADLINE_MS: u64 = 100;
/// Default linear-memory cap per instance.
pub const DEFAULT_MEMORY_MIB: u64 = 64;
/// The largest fuel budget a manifest may ask for.
pub const MAX_FUEL: u64 = 10_000_000_000;
/// The longest deadline a manifest may ask for.
pub const MAX_DEADLINE_MS: u64 = 60_000;
/// The largest memory cap a manifest may ask for; also the size of each slot of
/// the engine's pooling allocator.
pub const MAX_MEMORY_MIB: u64 = 1024;
/// Most elements a table may grow to (the pooling allocator's slot size,
/// set in `engine.rs`).
pub const MAX_TABLE_ELEMENTS: usize = 20_000;
/// Default cap on the calls one plugin version runs at once.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 32;
/// The largest `max_in_flight` a manifest may ask for.
pub const MAX_MAX_IN_FLIGHT: u32 = 4096;

/// The `[limits]` table of `plugin.toml`. Every field is optional.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    /// Fuel per call (roughly, wasm instructions); a batch call gets this
    /// much per row. Default 50 000 000, at most 10^10.
    #[serde(default = "default_fuel")]
    pub fuel: u64,
    /// Wall-clock deadline per call, in milliseconds. Default 100, at most 60 000.
    #[serde(default = "default_deadline")]
    pub deadline_ms: u64,
    /// Linear-memory cap per instance, in MiB. Default 64, at most 1024.
    #[serde(default = "default_memory")]
    pub memory_mib: u64,
    /// Calls of this plugin version running at once; beyond, `overloaded`
    /// (503). Keeps a slow plugin from taking the server's in-flight slots
    /// and instance pool from the others. Default 32, at most 4096.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: u32,
}

fn default_fuel() -> u64 {
    DEFAULT_FUEL
}
fn default_deadline() -> u64 {
    DEFAULT_DEADLINE_MS
}
fn default_memory() -> u64 {
    DEFAULT_MEMORY_MIB
}
fn default_max_in_flight() -> u32 {
    DEFAULT_MAX_IN_FLIGHT
}

impl Default for LimitsSpec {
    fn default() -> Self {
        Self {
            fuel: DEFAULT_FUEL,
            deadline_ms: DEFAULT_DEADLINE_MS,
            memory_mib: DEFAULT_MEMORY_MIB,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }
}

impl LimitsSpec {
    /// Checks the ranges and converts to [`Limits`]; the error names the field.
    pub fn validate(&self) -> Result<Limits, InvalidValue> {
        let check = |name: &str, v: u64, max: u64| {
            if v == 0 || v > max {
                Err(InvalidValue::new(format!("limits.{name}"), v, format!("between 1 and {max}")))
            } else {
                Ok(())
            }
        };
        check("fuel", self.fuel, MAX_FUEL)?;
        check("deadline_ms", self.deadline_ms, MAX_DEADLINE_MS)?;
        check("memory_mib", self.memory_mib, MAX_MEMORY_MIB)?;
        check("max_in_flight", self.max_in_flight.into(), MAX_MAX_IN_FLIGHT.into())?;
        Ok(Limits {
            fuel: self.fuel,
            deadline: Duration::from_millis(self.deadline_ms),
            memory_bytes: self.memory_mib << 20,
        })
    }
}

/// The validated budgets of one plugin version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel per call.
    pub fuel: u64,
    /// Wall-clock deadline per call.
    pub deadline: Duration,
    /// Memory cap per instance, in bytes.
    pub memory_bytes: u64,
}

impl Limits {
    /// The limits of a batch of `rows` rows: the per-call fuel and deadline
    /// for each row (saturating; the deadline at most [`MAX_DEADLINE_MS`]),
    /// the same memory cap. A batch is the work of `rows` calls, so a caller
    /// sending big (allowed) batches cannot make a healthy plugin miss its
    /// deadline.
    pub fn for_rows(self, rows: usize) -> Self {
        let n = u64::try_from(rows.max(1)).unwrap_or(u64::MAX);
        let deadline = self
            .deadline
            .saturating_mul(u32::try_from(n).unwrap_or(u32::MAX))
            .min(Duration::from_millis(MAX_DEADLINE_MS))
            .max(self.deadline);
        Limits { fuel: self.fuel.saturating_mul(n), deadline, ..self }
    }

    /// These limits with the deadline tightened to `deadline` if that is sooner
    /// (a per-request deadline can only tighten, never extend).
    pub fn tightened(self, deadline: Option<Duration>) -> Self {
        match deadline {
            Some(d) if d < self.deadline => Limits { deadline: d, ..self },
            _ => self,
        }
    }
}

/// Enforces the memory cap of one store and remembers a breach.
#[derive(Debug, Clone)]
pub struct MemoryLimiter {
    limit: u64,
    /// The size the guest asked for when it hit the cap, if it did.
    pub breach: Option<u64>,
    /// Linear memory granted to the store's instances, in bytes, and its most.
    held: u64,
    peak: u64,
}

impl MemoryLimiter {
    /// A limiter for a cap of `limit` bytes.
    pub fn new(limit: u64) -> Self {
        Self { limit, breach: None, held: 0, peak: 0 }
    }

    /// The most linear memory the store's instances held at once, in bytes.
    pub fn peak(&self) -> u64 {
        self.peak
    }

    /// The cap in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // The cap is per instance: all its memories together (a component
        // may have two), not each of them.
        let grow = desired.saturating_sub(current) as u64;
        if desired as u64 > self.limit || self.held.saturating_add(grow) > self.limit {
            self.breach = Some(self.held.saturating_add(grow).max(desired as u64));
            // Failing the grow (rather than trapping here) lets a careful guest
            // recover; Rust's allocator aborts, which we then report as memory_limit.
            return Ok(false);
        }
        // Called at instantiation too (from 0), so this covers every memory.
        self.held += grow;
        self.peak = self.peak.max(self.held);
        Ok(true)
    }

    /// Tables are bounded by the engine's pool (`engine.rs`: 20 000
    /// elements per table, 8 tables per component), well under a MiB.
    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

#[cfg(test)]
mod tests {
    use wasmtime::ResourceLimiter;

    use super::*;

    #[test]
    fn the_memory_cap_covers_every_memory_of_an_instance_together() {
        let mut l = MemoryLimiter::new(16 << 20);
        assert!(l.memory_growing(0, 10 << 20, None).unwrap(), "the first memory fits");
        assert!(!l.memory_growing(0, 10 << 20, None).unwrap(), "a second one of 10 MiB does not");
        assert_eq!(l.breach, Some(20 << 20));
        assert!(!l.table_growing(0, MAX_TABLE_ELEMENTS + 1, None).unwrap());
    }
}

/// The largest `instances.max_reuse` a manifest may ask for.
pub const MAX_REUSE: u32 = 1_000_000;

/// The `[instances]` table: how a plugin's instances live between calls.
///
/// Every instance starts from the plugin's initialised snapshot. By default an
/// instance that finished a call cleanly is kept warm and serves later calls
/// of the *same plugin version* — each with its own full fuel budget and
/// deadline — until it has served `max_reuse` calls; one that trapped, hit a
/// budget, wrote to stderr or was cancelled is thrown away. What a reused
/// instance can carry from one call to the next is only what the plugin
/// itself keeps in its globals and heap: never another plugin's state, never
/// the host's. A plugin that must not see even that sets `fresh_per_call`,
/// and pays a full instantiation per call (docs/performance.md has the cost).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstancePolicy {
    /// A brand-new instance for every call. Default false.
    #[serde(default)]
    pub fresh_per_call: bool,
    /// Calls one warm instance serves before it is retired. Default 1000, at most 10^6.
    #[serde(default = "default_max_reuse")]
    pub max_reuse: u32,
}

fn default_max_reuse() -> u32 {
    1000
}

impl Default for InstancePolicy {
    fn default() -> Self {
        Self { fresh_per_call: false, max_reuse: default_max_reuse() }
    }
}

impl InstancePolicy {
    pub(crate) fn validate(&self) -> Result<(), InvalidValue> {
        if self.max_reuse == 0 || self.max_reuse > MAX_REUSE {
            return Err(InvalidValue::new(
                "instances.max_reuse",
                self.max_reuse,
                format!("between 1 and {MAX_REUSE}"),
            ));
        }
        Ok(())
    }

    /// How many calls an instance may serve: 1 when fresh per call.
    pub fn calls_per_instance(&self) -> u32 {
        if self.fresh_per_call { 1 } else { self.max_reuse }
    }
}
