//! The circuit breaker and in-flight cap of one plugin version: what stops a
//! plugin that keeps failing from costing the host anything more.
//!
//! Every call passes [`Guard::enter`] and reports how it ended. Calls are
//! counted in a tumbling window (`window_ms`); when at least `min_calls` were
//! seen and the share of *faults* among them reaches `fault_rate` — or when
//! `consecutive_faults` calls in a row faulted, which catches a plugin that
//! fails every call within its first few, before it can burn much CPU — the
//! version is **quarantined** for a back-off period: calls are answered at once with
//! [`CallError::Quarantined`] (HTTP 503 `plugin_quarantined`, or the
//! manifest's fallback score) and no instance runs. When the back-off ends,
//! the next call is let through alone as a **probe**: if it completes, the
//! version is restored; if it faults, the quarantine starts again with twice
//! the back-off (up to `max_backoff_ms`).
//!
//! A fault is the plugin's fault: a budget hit, a trap, its own error, an
//! unusable answer. Input the host or the plugin rejected is the caller's, and
//! a deadline the *caller* tightened with `x-deadline-ms` is the caller's too —
//! otherwise a client could quarantine a plugin for everyone by asking for
//! 1 ms deadlines.
//!
//! The in-flight cap (`[limits] max_in_flight`) bounds how many calls one
//! version runs at once, so a plugin that runs to its deadline on every call
//! cannot take the server's in-flight slots or instance pool from the others.
//!
//! The closed state — a healthy plugin's — costs two atomic increments per
//! call; the lock is taken only on a fault, on a window roll-over and while
//! the breaker is open.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::sandbox::error::{CallError, ErrorKind, InvalidValue};

/// The `[breaker]` table of `plugin.toml`. Every field is optional.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerPolicy {
    /// Whether the breaker is armed at all. Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Share of faulted calls in a window that quarantines the version. Default 0.5.
    #[serde(default = "default_fault_rate")]
    pub fault_rate: f64,
    /// Calls a window must have seen before it can trip. Default 20.
    #[serde(default = "default_min_calls")]
    pub min_calls: u32,
    /// Faulted calls in a row that quarantine the version, whatever the rate. Default 5.
    #[serde(default = "default_consecutive")]
    pub consecutive_faults: u32,
    /// Length of the counting window, ms. Default 10 000.
    #[serde(default = "default_window_ms")]
    pub window_ms: u64,
    /// First quarantine, ms; doubles after each failed probe. Default 1 000.
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    /// Longest quarantine, ms. Default 60 000.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
}

fn yes() -> bool {
    true
}
fn default_fault_rate() -> f64 {
    0.5
}
fn default_min_calls() -> u32 {
    20
}
fn default_consecutive() -> u32 {
    5
}
fn default_window_ms() -> u64 {
    10_000
}
fn default_backoff_ms() -> u64 {
    1_000
}
fn default_max_backoff_ms() -> u64 {
    60_000
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            fault_rate: default_fault_rate(),
            min_calls: default_min_calls(),
            consecutive_faults: default_consecutive(),
            window_ms: default_window_ms(),
            backoff_ms: default_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
        }
    }
}

impl BreakerPolicy {
    /// Checks the ranges; the error names the field.
    pub fn validate(&self) -> Result<(), InvalidValue> {
        if !(self.fault_rate > 0.0 && self.fault_rate <= 1.0) {
            return Err(InvalidValue::new("breaker.fault_rate", self.fault_rate, "in (0, 1]"));
        }
        for (name, v) in [("min_calls", self.min_calls), ("consecutive_faults", self.consecutive_faults)] {
            if v == 0 || v > 1_000_000 {
                return Err(InvalidValue::new(format!("breaker.{name}"), v, "between 1 and 1000000"));
            }
        }
        for (name, v) in [
            ("window_ms", self.window_ms),
            ("backoff_ms", self.backoff_ms),
            ("max_backoff_ms", self.max_backoff_ms),
        ] {
            if v == 0 || v > 3_600_000 {
                return Err(InvalidValue::new(
                    format!("breaker.{name}"),
                    v,
                    "between 1 and 3600000 (one hour)",
                ));
            }
        }
        if self.max_backoff_ms < self.backoff_ms {
            return Err(InvalidValue::new(
                "breaker.max_backoff_ms",
                self.max_backoff_ms,
                format!("at least breaker.backoff_ms = {}", self.backoff_ms),
            ));
        }
        Ok(())
    }
}

/// Whether `e` is a deadline hit of a call that spent most of its deadline
/// waiting for a busy host (it ran less than half of it). For a plugin that
/// has been succeeding, such a call tells nothing about the plugin, and
/// [`Pass::fail`] counts it neither way: a flood of a slow but healthy
/// plugin's calls cannot quarantine it. A plugin that spins until its
/// deadline never succeeds, so its starved calls still count.
pub fn starved(e: &CallError) -> bool {
    matches!(e, CallError::DeadlineExceeded { deadline, ran } if *ran * 2 < *deadline)
}

/// Whether a failed call counts against the plugin: only faults the plugin
/// caused do. `plugin_deadline` is the plugin's own deadline for the call (a
/// batch's scales with its rows): a call stopped earlier ran under a deadline
/// the caller asked for, and a call that spent most of its deadline waiting
/// for a busy host (it ran less than half of it) was stopped by the host's
/// load, not by the plugin.
pub fn is_fault(e: &CallError, plugin_deadline: Duration) -> bool {
    match e {
        CallError::DeadlineExceeded { deadline, .. } => *deadline >= plugin_deadline,
        _ => matches!(
            e.kind(),
            ErrorKind::OutOfFuel
                | ErrorKind::MemoryLimit
                | ErrorKind::StackOverflow
                | ErrorKind::GuestTrap
                | ErrorKind::PluginError
                | ErrorKind::InvalidOutput
        ),
    }
}

/// Where a breaker stands, as the admin and status pages show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls flow.
    Closed,
    /// Quarantined; calls are refused for `retry_after` more.
    Open {
        /// Time left in the quarantine.
        retry_after: Duration,
    },
    /// The quarantine is over and one probe call is running.
    Probing,
}

#[derive(Debug, Clone, Copy)]
enum Gate {
    Closed,
    Open { until: Instant },
    Probing,
}

#[derive(Debug)]
struct Inner {
    gate: Gate,
    backoff: Duration,
}

/// The breaker and in-flight cap of one plugin version. See the module docs.
#[derive(Debug)]
pub struct Guard {
    policy: BreakerPolicy,
    max_in_flight: u32,
    in_flight: AtomicU32,
    /// Mirrors `inner.gate != Closed`, so a healthy call never locks.
    tripped: AtomicBool,
    calls: AtomicU64,
    faults: AtomicU64,
    /// Faults since the last call that did not fault.
    streak: AtomicU32,
    /// Start of the current window, in ms since `origin`.
    window_start_ms: AtomicU64,
    origin: Instant,
    /// When a call last succeeded, in ms since `origin` + 1 (0: never).
    last_ok_ms: AtomicU64,
    quarantines: AtomicU64,
    /// While above zero, outcomes are not recorded (see [`Guard::pause`]).
    paused: AtomicU32,
    inner: Mutex<Inner>,
}

/// Keeps a [`Guard`] from recording outcomes while it lives.
#[derive(Debug)]
pub struct Paused<'a>(&'a Guard);

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        self.0.paused.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A call let through by [`Guard::enter`]. Report how it ended with
/// [`Pass::finish`]; a pass dropped unfinished (the call was cancelled) frees
/// its slot and, for a probe, lets the next call probe instead.
#[derive(Debug)]
pub struct Pass<'a> {
    guard: &'a Guard,
    probe: bool,
    finished: bool,
}

impl Guard {
    /// A guard with `policy` that lets at most `max_in_flight` calls run at once.
    pub fn new(policy: BreakerPolicy, max_in_flight: u32) -> Self {
        let origin = Instant::now();
        Self {
            policy,
            max_in_flight,
            in_flight: AtomicU32::new(0),
            tripped: AtomicBool::new(false),
            calls: AtomicU64::new(0),
            faults: AtomicU64::new(0),
            streak: AtomicU32::new(0),
            window_start_ms: AtomicU64::new(0),
            origin,
            last_ok_ms: AtomicU64::new(0),
            quarantines: AtomicU64::new(0),
            paused: AtomicU32::new(0),
            inner: Mutex::new(Inner {
                gate: Gate::Closed,
                backoff: Duration::from_millis(policy.backoff_ms),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lets a call through, or refuses it: quarantined, or at the in-flight cap.
    /// `label` (`name@version`) goes into the error message.
    pub fn enter(&self, label: &str) -> Result<Pass<'_>, CallError> {
        let mut probe = false;
        if self.tripped.load(Ordering::Acquire) {
            let mut inner = self.lock();
            let now = Instant::now();
            match inner.gate {
                Gate::Closed => {}
                Gate::Open { until } if now < until => {
                    return Err(self.quarantined(label, until - now));
                }
                Gate::Open { .. } => {
                    inner.gate = Gate::Probing;
                    probe = true;
                }
                Gate::Probing => return Err(self.quarantined(label, Duration::from_millis(100))),
            }
        }
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        if before >= self.max_in_flight {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            if probe {
                self.reopen_now();
            }
            return Err(CallError::Overloaded {
                message: format!(
                    "`{label}` already runs {} calls, its `[limits] max_in_flight`; retry shortly",
                    self.max_in_flight
                ),
            });
        }
        Ok(Pass { guard: self, probe, finished: false })
    }

    fn quarantined(&self, label: &str, retry_after: Duration) -> CallError {
        CallError::Quarantined { plugin: label.to_owned(), retry_after }
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        if !self.tripped.load(Ordering::Acquire) {
            return BreakerState::Closed;
        }
        match self.lock().gate {
            Gate::Closed => BreakerState::Closed,
            Gate::Open { until } => {
                BreakerState::Open { retry_after: until.saturating_duration_since(Instant::now()) }
            }
            Gate::Probing => BreakerState::Probing,
        }
    }

    /// Times this version has been quarantined.
    pub fn quarantines(&self) -> u64 {
        self.quarantines.load(Ordering::Relaxed)
    }

    /// Calls running now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Whether a call succeeded within the last `window_ms`.
    fn succeeded_within_window(&self) -> bool {
        match self.last_ok_ms.load(Ordering::Relaxed) {
            0 => false,
            t => (self.origin.elapsed().as_millis() as u64 + 1).saturating_sub(t) <= self.policy.window_ms,
        }
    }

    /// A cancelled (or verdict-less) probe: the next call probes again.
    fn reopen_now(&self) {
        let mut inner = self.lock();
        if matches!(inner.gate, Gate::Probing) {
            inner.gate = Gate::Open { until: Instant::now() };
        }
    }

    /// Stops recording outcomes until the returned value is dropped. For the
    /// golden-vector gate: vectors that expect a fault (`"error": "guest_trap"`)
    /// must neither quarantine a version before it serves nor count against it.
    pub fn pause(&self) -> Paused<'_> {
        self.paused.fetch_add(1, Ordering::AcqRel);
        Paused(self)
    }

    fn record(&self, probe: bool, fault: bool, ok: bool) {
        // Paused (the golden-vector gate): not a success of real traffic either.
        if !self.policy.enabled || self.paused.load(Ordering::Acquire) > 0 {
            return;
        }
        if ok {
            self.last_ok_ms.store(self.origin.elapsed().as_millis() as u64 + 1, Ordering::Relaxed);
        }
        if probe {
            let mut inner = self.lock();
            if fault {
                inner.backoff = (inner.backoff * 2).min(Duration::from_millis(self.policy.max_backoff_ms));
                inner.gate = Gate::Open { until: Instant::now() + inner.backoff };
                self.quarantines.fetch_add(1, Ordering::Relaxed);
            } else {
                inner.gate = Gate::Closed;
                inner.backoff = Duration::from_millis(self.policy.backoff_ms);
                self.reset_window(Instant::now());
                self.tripped.store(false, Ordering::Release);
            }
            return;
        }
        let now_ms = self.origin.elapsed().as_millis() as u64;
        if now_ms.saturating_sub(self.window_start_ms.load(Ordering::Relaxed)) >= self.policy.window_ms {
            let _inner = self.lock();
            // Re-checked under the lock: one caller rolls the window.
            if now_ms.saturating_sub(self.window_start_ms.load(Ordering::Relaxed)) >= self.policy.window_ms {
                self.reset_window(Instant::now());
            }
        }
        let calls = self.calls.fetch_add(1, Ordering::AcqRel) + 1;
        if !fault {
            if self.streak.load(Ordering::Relaxed) != 0 {
                self.streak.store(0, Ordering::Relaxed);
            }
            return;
        }
        let faults = self.faults.fetch_add(1, Ordering::AcqRel) + 1;
        let streak = self.streak.fetch_add(1, Ordering::AcqRel) + 1;
        let by_rate = calls >= u64::from(self.policy.min_calls)
            && (faults as f64) >= self.policy.fault_rate * calls as f64;
        if !by_rate && streak < self.policy.consecutive_faults {
            return;
        }
        let mut inner = self.lock();
        if matches!(inner.gate, Gate::Closed) {
            inner.gate = Gate::Open { until: Instant::now() + inner.backoff };
            self.quarantines.fetch_add(1, Ordering::Relaxed);
            self.tripped.store(true, Ordering::Release);
        }
    }

    /// Starts a new counting window. Called with the lock held.
    fn reset_window(&self, now: Instant) {
        self.calls.store(0, Ordering::Relaxed);
        self.faults.store(0, Ordering::Relaxed);
        self.streak.store(0, Ordering::Relaxed);
        self.window_start_ms.store(now.duration_since(self.origin).as_millis() as u64, Ordering::Relaxed);
    }
}

impl Pass<'_> {
    /// Reports the call's end: `fault` per [`is_fault`].
    pub fn finish(mut self, fault: bool) {
        self.finished = true;
        self.guard.record(self.probe, fault, false);
    }

    /// Ends a call that returned what was asked (a success, not just "not a
    /// fault").
    pub fn succeed(mut self) {
        self.finished = true;
        self.guard.record(self.probe, false, true);
    }

    /// Ends a call that failed with `e`, stopped at `plugin_deadline` or
    /// sooner: a fault of the plugin's ([`is_fault`]) counts against it,
    /// anything else for it — except a deadline hit of a call that mostly
    /// waited for a busy host ([`starved`]) while the plugin has been
    /// succeeding within the breaker's window: that one counts neither way
    /// (a probe lets the next call probe again). A plugin that never
    /// succeeds gets no such benefit of the doubt, however busy the host.
    pub fn fail(mut self, e: &CallError, plugin_deadline: Duration) {
        self.finished = true;
        if starved(e) && self.guard.succeeded_within_window() {
            if self.probe {
                self.guard.reopen_now();
            }
            return;
        }
        self.guard.record(self.probe, is_fault(e, plugin_deadline), false);
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        self.guard.in_flight.fetch_sub(1, Ordering::AcqRel);
        if !self.finished && self.probe {
            self.guard.reopen_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(min_calls: u32, backoff_ms: u64) -> BreakerPolicy {
        BreakerPolicy {
            min_calls,
            backoff_ms,
            max_backoff_ms: 4 * backoff_ms,
            consecutive_faults: 1000,
            ..BreakerPolicy::default()
        }
    }

    fn quarantined(g: &Guard) -> bool {
        matches!(g.enter("p@1"), Err(CallError::Quarantined { .. }))
    }

    #[test]
    fn starved_deadline_hits_count_only_for_a_plugin_that_never_succeeds() {
        let own = Duration::from_millis(100);
        let starved = CallError::DeadlineExceeded { deadline: own, ran: own / 10 };
        // Never succeeded: a spinning plugin on a busy host is still caught.
        let spinner = Guard::new(policy(4, 30_000), 8);
        for _ in 0..4 {
            spinner.enter("p@1").unwrap().fail(&starved, own);
        }
        assert!(quarantined(&spinner));
        // Succeeding within the window: the same hits are the host's load.
        let healthy = Guard::new(policy(4, 30_000), 8);
        healthy.enter("p@1").unwrap().succeed();
        for _ in 0..10 {
            healthy.enter("p@1").unwrap().fail(&starved, own);
        }
        assert!(!quarantined(&healthy));
        // A deadline hit that really ran counts either way.
        for _ in 0..3 {
            healthy.enter("p@1").unwrap().fail(&CallError::DeadlineExceeded { deadline: own, ran: own }, own);
        }
        assert!(quarantined(&healthy), "1 success and 3 faults: over the 0.5 fault rate");
    }

    #[test]
    fn trips_at_the_fault_rate_probes_and_restores() {
        let g = Guard::new(policy(4, 30), 8);
        // 3 good, 3 faults: 3/6 = 0.5 trips at the 6th call.
        for fault in [false, false, false, true, true] {
            g.enter("p@1").unwrap().finish(fault);
        }
        assert_eq!(g.state(), BreakerState::Closed);
        g.enter("p@1").unwrap().finish(true);
        assert!(quarantined(&g));
        assert_eq!(g.quarantines(), 1);
        std::thread::sleep(Duration::from_millis(40));
        let probe = g.enter("p@1").unwrap();
        assert_eq!(g.state(), BreakerState::Probing);
        assert!(quarantined(&g), "only one probe at a time");
        probe.finish(false);
        assert_eq!(g.state(), BreakerState::Closed);
        g.enter("p@1").unwrap().finish(true);
        assert_eq!(g.state(), BreakerState::Closed, "a fresh window after restore");
    }

    #[test]
    fn a_failed_probe_doubles_the_backoff_and_a_cancelled_one_is_retried() {
        let g = Guard::new(policy(1, 20), 8);
        g.enter("p@1").unwrap().finish(true);
        std::thread::sleep(Duration::from_millis(25));
        g.enter("p@1").unwrap().finish(true);
        match g.state() {
            BreakerState::Open { retry_after } => assert!(retry_after > Duration::from_millis(25)),
            s => panic!("{s:?}"),
        }
        std::thread::sleep(Duration::from_millis(45));
        drop(g.enter("p@1").unwrap());
        assert!(g.enter("p@1").is_ok(), "a cancelled probe lets the next call probe");
    }

    #[test]
    fn consecutive_faults_trip_before_the_window_fills() {
        let g = Guard::new(BreakerPolicy { consecutive_faults: 3, ..BreakerPolicy::default() }, 8);
        // A success breaks the streak.
        for fault in [true, true, false, true, true] {
            g.enter("p@1").unwrap().finish(fault);
        }
        assert_eq!(g.state(), BreakerState::Closed);
        g.enter("p@1").unwrap().finish(true);
        assert!(quarantined(&g), "three in a row, 5 calls < min_calls 20");
    }

    #[test]
    fn the_in_flight_cap_refuses_as_overloaded() {
        let g = Guard::new(BreakerPolicy::default(), 2);
        let a = g.enter("p@1").unwrap();
        let _b = g.enter("p@1").unwrap();
        assert_eq!(g.enter("p@1").unwrap_err().kind(), ErrorKind::Overloaded);
        a.finish(false);
        assert!(g.enter("p@1").is_ok());
    }

    #[test]
    fn caller_faults_and_tightened_deadlines_do_not_count() {
        let own = Duration::from_millis(100);
        assert!(!is_fault(&CallError::invalid_input("x"), own));
        let ms = Duration::from_millis;
        assert!(!is_fault(&CallError::DeadlineExceeded { deadline: ms(5), ran: ms(5) }, own));
        assert!(is_fault(&CallError::DeadlineExceeded { deadline: own, ran: own }, own));
        // Stopped by a busy host: it waited for a thread most of its deadline.
        let waited = CallError::DeadlineExceeded { deadline: own, ran: own / 4 };
        assert!(is_fault(&waited, own) && starved(&waited));
        assert!(is_fault(&CallError::GuestTrap { message: "x".into() }, own));
        assert!(!is_fault(&CallError::Overloaded { message: "x".into() }, own));
    }

    #[test]
    fn disabled_never_trips() {
        let g = Guard::new(BreakerPolicy { enabled: false, ..policy(1, 10) }, 8);
        for _ in 0..50 {
            g.enter("p@1").unwrap().finish(true);
        }
        assert_eq!(g.state(), BreakerState::Closed);
    }
}
