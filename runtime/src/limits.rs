//! Per-call budgets: fuel, a wall-clock deadline and a memory cap.
//!
//! Set per plugin in its manifest (`[limits]`); every call gets the full fuel
//! budget and deadline, whether its instance is new or reused; the memory cap
//! is per instance. The memory cap is enforced by [`MemoryLimiter`], which
//! records the breach so the error is reported as `memory_limit` rather than as
//! whatever the guest's allocator does when a grow fails.

use std::time::Duration;

use serde::Deserialize;

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
    pub fn validate(&self) -> Result<Limits, String> {
        let check = |name: &str, v: u64, max: u64| {
            if v == 0 || v > max {
                Err(format!("limits.{name} = {v} must be between 1 and {max}"))
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
    /// The limits of a batch of `rows` rows: the per-call fuel for each row
    /// (saturating), the same deadline and memory cap for the whole call.
    pub fn for_rows(self, rows: usize) -> Self {
        let rows = u64::try_from(rows.max(1)).unwrap_or(u64::MAX);
        Limits { fuel: self.fuel.saturating_mul(rows), ..self }
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
        if desired as u64 > self.limit {
            self.breach = Some(desired as u64);
            // Failing the grow (rather than trapping here) lets a careful guest
            // recover; Rust's allocator aborts, which we then report as memory_limit.
            return Ok(false);
        }
        // Called at instantiation too (from 0), so this covers every memory.
        self.held += desired.saturating_sub(current) as u64;
        self.peak = self.peak.max(self.held);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}
