//! What a plugin may make the host do during one call, and how host work is
//! charged to the call's budgets.
//!
//! Fuel counts only guest instructions, and the epoch deadline is only checked
//! in guest code, so without this module a host call that does work in
//! proportion to an argument (8 MiB of random bytes, a long log line, a large
//! write to stdout) would run outside both budgets. Every host function a
//! plugin can reach is therefore:
//!
//! - **bounded in bytes per host call** ([`MAX_RANDOM_BYTES`],
//!   [`MAX_STDOUT_BYTES`], the log line cut in `host.rs`, the 64 KiB captured
//!   stderr, [`MAX_RESOURCES`] live WASI handles);
//! - **charged to the call's fuel**: [`HOST_CALL_FUEL`] per call plus one unit
//!   per byte it produced or consumed. At every epoch tick the guest's fuel
//!   left is compared with the host's charges (the call stops when they meet),
//!   and when the call ends the charges are taken from the store's fuel, so
//!   `fuel_used` counts both;
//! - **checked against the call's wall-clock deadline** on entry, so a guest
//!   looping over host calls stops at its deadline, as a guest loop does.
//!
//! With the epoch callback of `instances.rs` comparing the wall clock (not a
//! count of callbacks) against the deadline, a call ends within its deadline
//! plus one tick plus one bounded host call, whatever it does.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi_io::poll::Pollable;
use wasmtime_wasi_io::streams::{OutputStream, StreamError};

/// Most bytes one `get-random-bytes` / `get-insecure-random-bytes` returns.
/// Rust's `HashMap` seeding asks for 16; a larger request traps.
pub const MAX_RANDOM_BYTES: u64 = 64 << 10;
/// Most bytes a plugin may write to stdout in one call (stdout goes nowhere;
/// the bytes are counted and dropped). Past it, the write fails.
pub const MAX_STDOUT_BYTES: u64 = 64 << 10;
/// Most WASI handles (streams, pollables, descriptors) one store may hold at
/// once. A plugin needs a handful; wasmtime's default is a million.
pub const MAX_RESOURCES: usize = 1024;
/// Fuel charged for each host call, on top of one unit per byte it handled:
/// about what the guest would spend on a short function call.
pub const HOST_CALL_FUEL: u64 = 100;

/// Why a host function refused to run: the call is over one of its budgets.
/// Raised as the host call's error (a trap of the guest call) and turned into
/// the matching [`crate::CallError`] by [`crate::sandbox::trap::classify`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostStop {
    /// The call's wall-clock deadline passed (checked on entry).
    #[error("the call's deadline passed during a host call")]
    Deadline,
    /// Guest fuel plus host work reached the call's fuel budget.
    #[error("the call's fuel ran out in host calls")]
    Fuel,
    /// One host call asked for more than its per-call byte cap.
    #[error("{what} asked for {requested} bytes, over its cap of {limit} bytes per call")]
    TooLarge {
        /// The host function, e.g. `wasi:random/random.get-random-bytes`.
        what: &'static str,
        /// What the guest asked for.
        requested: u64,
        /// The cap.
        limit: u64,
    },
}

/// The current call's budgets as host functions see them; part of
/// [`crate::sandbox::host::HostState`], reset by `start_call` before every call.
#[derive(Debug)]
pub struct HostBudget {
    /// The wall-clock end of the call; `None` for a call without a deadline
    /// (an unmetered engine).
    deadline: Option<Instant>,
    /// The call's whole fuel budget.
    fuel: u64,
    /// Fuel charged by host calls in this call, in all.
    charged: u64,
    /// Bytes written to stdout in this call, shared with the stdout stream.
    stdout: Arc<AtomicU64>,
    /// Stdout bytes already charged.
    stdout_charged: u64,
}

impl Default for HostBudget {
    fn default() -> Self {
        Self { deadline: None, fuel: u64::MAX, charged: 0, stdout: Arc::default(), stdout_charged: 0 }
    }
}

impl HostBudget {
    /// Arms the budget for a new call: its deadline and its fuel.
    pub fn start(&mut self, deadline: Option<Instant>, fuel: u64) {
        self.deadline = deadline;
        self.fuel = fuel;
        self.charged = 0;
        self.stdout.store(0, Ordering::Relaxed);
        self.stdout_charged = 0;
    }

    /// Whether the call's deadline has passed. Called by the epoch callback
    /// at every tick, and by [`HostBudget::charge`].
    pub fn past_deadline(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// How long the call may still run; `None` without a deadline (an
    /// unmetered engine). A host call that waits (the state store) waits at
    /// most this long.
    pub fn time_left(&self) -> Option<std::time::Duration> {
        self.deadline.map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Charges one host call that handles `bytes` bytes: refuses it if the
    /// deadline passed or the call's fuel is spent by host work alone.
    pub fn charge(&mut self, bytes: u64) -> Result<(), HostStop> {
        if self.past_deadline() {
            return Err(HostStop::Deadline);
        }
        self.add(HOST_CALL_FUEL.saturating_add(bytes))
    }

    /// Charges `bytes` a host call handled after it ran (a state store's
    /// answer): fuel only, the deadline having been checked on entry.
    pub fn charge_after(&mut self, bytes: u64) -> Result<(), HostStop> {
        self.add(bytes)
    }

    /// Checks a per-call byte cap, naming the host function.
    pub fn cap(what: &'static str, requested: u64, limit: u64) -> Result<(), HostStop> {
        if requested > limit { Err(HostStop::TooLarge { what, requested, limit }) } else { Ok(()) }
    }

    fn add(&mut self, fuel: u64) -> Result<(), HostStop> {
        self.charged = self.charged.saturating_add(fuel);
        if self.charged > self.fuel { Err(HostStop::Fuel) } else { Ok(()) }
    }

    /// Fuel host calls charged in this call, in all, stdout writes included.
    /// Checked against the guest's fuel left at every epoch tick; taken from
    /// the store's fuel when the call ends.
    pub fn charged(&mut self) -> Result<u64, HostStop> {
        let written = self.stdout.load(Ordering::Relaxed);
        let new = written.saturating_sub(self.stdout_charged);
        self.stdout_charged = written;
        self.add(new).map(|()| self.charged)
    }

    /// The stdout the guest sees: counts into this budget, refuses writes past
    /// [`MAX_STDOUT_BYTES`] per call.
    pub fn stdout(&self) -> CountedStdout {
        CountedStdout { written: self.stdout.clone() }
    }
}

/// A plugin's stdout: bytes are counted against the call and dropped.
#[derive(Debug, Clone)]
pub struct CountedStdout {
    written: Arc<AtomicU64>,
}

impl IsTerminal for CountedStdout {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CountedStdout {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Only the WASIp2 stream is reachable: plugins are p2 components.
        Box::new(tokio::io::sink())
    }
}

impl CountedStdout {
    /// Traps (naming the cap) once `total` bytes are over it.
    fn check(total: u64) -> Result<(), StreamError> {
        HostBudget::cap(STDOUT, total, MAX_STDOUT_BYTES).map_err(|stop| StreamError::Trap(stop.into()))
    }
}

/// How the stdout cap is named in errors.
const STDOUT: &str = "wasi:cli/stdout (all writes of one call)";

#[async_trait::async_trait]
impl OutputStream for CountedStdout {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        let len = bytes.len() as u64;
        Self::check(self.written.fetch_add(len, Ordering::Relaxed).saturating_add(len))
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    /// What is left of the cap; at the cap, the trap (a permit of 0 would
    /// leave the guest polling for room that never comes).
    fn check_write(&mut self) -> Result<usize, StreamError> {
        let written = self.written.load(Ordering::Relaxed);
        if written >= MAX_STDOUT_BYTES {
            Self::check(written.saturating_add(1))?;
        }
        Ok((MAX_STDOUT_BYTES - written) as usize)
    }
}

#[async_trait::async_trait]
impl Pollable for CountedStdout {
    async fn ready(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_work_counts_against_the_calls_fuel() {
        let mut b = HostBudget::default();
        b.start(None, 1_000);
        assert_eq!(b.charge(400), Ok(()));
        assert_eq!(b.charged(), Ok(400 + HOST_CALL_FUEL));
        assert_eq!(b.charge(600), Err(HostStop::Fuel));
        b.start(None, 1_000);
        assert_eq!(b.charged(), Ok(0), "a new call starts with nothing charged");
    }

    #[test]
    fn stdout_bytes_are_charged_and_capped() {
        let mut b = HostBudget::default();
        b.start(None, u64::MAX);
        let mut out = b.stdout();
        out.write(Bytes::from(vec![0; 1000])).unwrap();
        assert_eq!(b.charged(), Ok(1000));
        assert_eq!(out.check_write().unwrap() as u64, MAX_STDOUT_BYTES - 1000);
        assert!(out.write(Bytes::from(vec![0; MAX_STDOUT_BYTES as usize])).is_err());
        b.start(None, u64::MAX);
        assert_eq!(out.check_write().unwrap() as u64, MAX_STDOUT_BYTES, "the cap is per call");
    }

    #[test]
    fn a_passed_deadline_refuses_host_calls() {
        let mut b = HostBudget::default();
        b.start(Some(Instant::now()), u64::MAX);
        assert_eq!(b.charge(0), Err(HostStop::Deadline));
        assert!(b.past_deadline());
    }
}
