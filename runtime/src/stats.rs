//! What the calls of one plugin version did: counts, errors by kind, latency,
//! fuel and the instances' memory high-water mark.
//!
//! Every plugin version owns one [`CallStats`]; its calls update it with
//! atomics (no label lookup on the call path), whoever made them — an HTTP
//! request, a pipeline step, a shadow copy, `scorehost call`. `/metrics`
//! publishes it at scrape time for each serving version
//! (`crate::http::metrics`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use crate::error::{CallError, ErrorKind};

/// Counters and histograms of one plugin version's calls.
#[derive(Debug)]
pub struct CallStats {
    calls: AtomicU64,
    errors: [AtomicU64; ErrorKind::ALL.len()],
    latency: Histogram,
    fuel: Histogram,
    memory_peak: AtomicU64,
}

impl Default for CallStats {
    fn default() -> Self {
        Self {
            calls: AtomicU64::new(0),
            errors: std::array::from_fn(|_| AtomicU64::new(0)),
            // 10 µs … ~5 s
            latency: Histogram::new(exponential_buckets(0.000_01, 2.0, 20)),
            // 1 000 … ~10^10 fuel units (the largest budget a manifest may set)
            fuel: Histogram::new(exponential_buckets(1_000.0, 4.0, 17)),
            memory_peak: AtomicU64::new(0),
        }
    }
}

impl CallStats {
    /// Records one call of the version: refused before it ran (quarantined,
    /// overloaded), failed, or answered. `ran` is how long the guest call
    /// took when it ran; `fuel` what an answered call consumed.
    pub(crate) fn record(&self, error: Option<&CallError>, ran: Option<Duration>, fuel: Option<u64>) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if let Some(e) = error {
            self.errors[e.kind() as usize].fetch_add(1, Ordering::Relaxed);
        }
        if let Some(d) = ran {
            self.latency.observe(d.as_secs_f64());
        }
        if let Some(f) = fuel {
            self.fuel.observe(f as f64);
        }
    }

    /// Raises the memory high-water mark to `bytes` (the linear memory an
    /// instance held at the end of a call) if it is higher.
    pub(crate) fn memory(&self, bytes: u64) {
        self.memory_peak.fetch_max(bytes, Ordering::Relaxed);
    }

    /// Calls made, including those refused before they ran.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Failed calls of `kind`.
    pub fn errors(&self, kind: ErrorKind) -> u64 {
        self.errors[kind as usize].load(Ordering::Relaxed)
    }

    /// Call latency in seconds: every call that ran, answered or not.
    pub fn latency(&self) -> &Histogram {
        &self.latency
    }

    /// Fuel consumed by each answered call.
    pub fn fuel(&self) -> &Histogram {
        &self.fuel
    }

    /// The most linear memory, in bytes, any instance of the version held.
    pub fn memory_peak(&self) -> u64 {
        self.memory_peak.load(Ordering::Relaxed)
    }
}
