//! What the calls of one plugin version did: counts, errors by kind, latency,
//! fuel and the instances' memory high-water mark.
//!
//! Every plugin version owns one [`CallStats`]; its calls update it with
//! atomics (no label lookup on the call path), whoever made them — an HTTP
//! request, a pipeline step, a shadow copy, `scorehost call`. `/metrics`
//! publishes it at scrape time for each serving version
//! (`http/metrics.rs`, in the HTTP layer above).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use crate::sandbox::error::{CallError, ErrorKind};

/// Counters and histograms of one plugin version's calls.
#[derive(Debug)]
pub struct CallStats {
    calls: AtomicU64,
    errors: [AtomicU64; ErrorKind::ALL.len()],
    latency: Log2Histogram,
    fuel: Log2Histogram,
    memory_peak: AtomicU64,
    log: Mutex<LogBucket>,
    log_dropped: AtomicU64,
    /// Set while lines are being dropped, so the host says so once per episode.
    log_dropping: AtomicBool,
    undeclared: AtomicU64,
    /// State exchanges, and the failed ones by [`STATE_ERRORS`] kind.
    state_exchanges: AtomicU64,
    state_errors: [AtomicU64; STATE_ERRORS.len()],
}

/// The kinds of a failed state exchange, as `/metrics` labels them.
pub const STATE_ERRORS: [&str; 5] = ["unavailable", "timeout", "over_quota", "denied", "invalid"];

/// Plugin log lines one version may write per second, all its instances
/// together, once its burst is spent.
pub const LOG_LINES_PER_SECOND: f64 = 100.0;
/// Plugin log lines one version may write at once after a quiet spell.
pub const LOG_BURST: f64 = 200.0;

/// A token bucket of log lines.
#[derive(Debug)]
struct LogBucket {
    tokens: f64,
    refilled: Instant,
}

impl Default for CallStats {
    fn default() -> Self {
        Self {
            calls: AtomicU64::new(0),
            errors: std::array::from_fn(|_| AtomicU64::new(0)),
            // Nanoseconds, published in seconds: 8.2 µs … 8.2 µs · 2^28 (~2 200 s), then +Inf.
            latency: Log2Histogram::new(8_192, 1e-9),
            // Fuel units: 1 024 … 2^38 (~2.7 × 10^11, past the largest budget), then +Inf.
            fuel: Log2Histogram::new(1_024, 1.0),
            memory_peak: AtomicU64::new(0),
            log: Mutex::new(LogBucket { tokens: LOG_BURST, refilled: Instant::now() }),
            log_dropped: AtomicU64::new(0),
            undeclared: AtomicU64::new(0),
            log_dropping: AtomicBool::new(false),
            state_exchanges: AtomicU64::new(0),
            state_errors: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// Buckets of a [`Log2Histogram`], the last one unbounded.
const BUCKETS: usize = 30;

/// A histogram of integer observations whose bucket bounds double, recorded
/// with two relaxed atomic adds and no lock. (prometheus-client's `Histogram`
/// takes a mutex and scans its bounds on every observation, and every call
/// of a version, on every worker, observes two.)
#[derive(Debug)]
pub struct Log2Histogram {
    /// Upper bound of the first bucket, in observation units (a power of two).
    first: u64,
    /// Published value of one observation unit (1e-9: nanoseconds → seconds).
    scale: f64,
    counts: [AtomicU64; BUCKETS],
    sum: AtomicU64,
}

impl Log2Histogram {
    /// Buckets `first`, `2·first`, `4·first`, … (`first` a power of two), each
    /// published as that bound × `scale`.
    fn new(first: u64, scale: f64) -> Self {
        debug_assert!(first.is_power_of_two());
        Self { first, scale, counts: std::array::from_fn(|_| AtomicU64::new(0)), sum: AtomicU64::new(0) }
    }

    /// Records one observation of `v` units.
    pub fn observe(&self, v: u64) {
        // The smallest i with v <= first · 2^i.
        let i =
            if v <= self.first { 0 } else { (u64::BITS - ((v - 1) / self.first).leading_zeros()) as usize };
        self.counts[i.min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(v, Ordering::Relaxed);
    }

    /// Sum of the observations, in observation units (nanoseconds for latency).
    pub fn sum(&self) -> u64 {
        self.sum.load(Ordering::Relaxed)
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

impl EncodeMetric for Log2Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = self
            .counts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let bound = match i {
                    _ if i == BUCKETS - 1 => f64::INFINITY,
                    _ => (self.first << i) as f64 * self.scale,
                };
                (bound, c.load(Ordering::Relaxed))
            })
            .collect();
        let count = buckets.iter().map(|(_, c)| c).sum();
        let sum = self.sum.load(Ordering::Relaxed) as f64 * self.scale;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
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
            self.latency.observe(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        }
        if let Some(f) = fuel {
            self.fuel.observe(f);
        }
    }

    /// Counts the error of one row of a batch whose call went through (the
    /// call itself was recorded by [`Self::record`]).
    pub(crate) fn row_error(&self, error: &CallError) {
        self.errors[error.kind() as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Raises the memory high-water mark to `bytes` (the linear memory an
    /// instance held at the end of a call) if it is higher.
    pub(crate) fn state_exchange(&self, error: Option<&crate::state::exchange::StateError>) {
        use crate::state::exchange::StateError as E;
        self.state_exchanges.fetch_add(1, Ordering::Relaxed);
        let kind = match error {
            None => return,
            Some(E::Unavailable(_)) => 0,
            Some(E::Timeout { .. }) => 1,
            Some(E::OverQuota(_)) => 2,
            Some(E::Denied(_)) => 3,
            Some(_) => 4,
        };
        self.state_errors[kind].fetch_add(1, Ordering::Relaxed);
    }

    /// State exchanges the version's calls made.
    pub fn state_exchanges(&self) -> u64 {
        self.state_exchanges.load(Ordering::Relaxed)
    }

    /// Failed state exchanges of kind `STATE_ERRORS[i]`.
    pub fn state_errors(&self, i: usize) -> u64 {
        self.state_errors.get(i).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    pub(crate) fn memory(&self, bytes: u64) {
        self.memory_peak.fetch_max(bytes, Ordering::Relaxed);
    }

    /// Whether the version may write one more log line now (see
    /// [`LOG_LINES_PER_SECOND`]). A refused line is counted as dropped; the
    /// first refusal of an episode is announced in the host's own log.
    pub(crate) fn admit_log_line(&self, plugin: &str) -> bool {
        let (admitted, rested) = self.log.lock().map_or((false, false), |mut b| {
            let now = Instant::now();
            let refill = now.duration_since(b.refilled).as_secs_f64() * LOG_LINES_PER_SECOND;
            b.tokens = (b.tokens + refill).min(LOG_BURST);
            b.refilled = now;
            // A full bucket means a quiet spell: a later drop is a new episode.
            let rested = b.tokens >= LOG_BURST;
            let admitted = b.tokens >= 1.0;
            if admitted {
                b.tokens -= 1.0;
            }
            (admitted, rested)
        });
        if rested {
            self.log_dropping.store(false, Ordering::Relaxed);
        }
        if !admitted {
            self.log_dropped.fetch_add(1, Ordering::Relaxed);
            if !self.log_dropping.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    plugin,
                    "plugin log rate limit ({LOG_LINES_PER_SECOND}/s) reached: dropping its lines \
                     (counted in scorehost_plugin_log_lines_dropped_total)"
                );
            }
        }
        admitted
    }

    /// Counts `n` undeclared input fields accepted and reported.
    pub(crate) fn undeclared(&self, n: usize) {
        self.undeclared.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Undeclared input fields accepted and reported (see
    /// [`crate::version::layout::Undeclared::Report`]).
    pub fn undeclared_fields(&self) -> u64 {
        self.undeclared.load(Ordering::Relaxed)
    }

    /// Plugin log lines dropped by the rate limit.
    pub fn log_lines_dropped(&self) -> u64 {
        self.log_dropped.load(Ordering::Relaxed)
    }

    /// Calls made, including those refused before they ran.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Failed calls of `kind`.
    pub fn errors(&self, kind: ErrorKind) -> u64 {
        self.errors[kind as usize].load(Ordering::Relaxed)
    }

    /// Call latency (published in seconds): every call that ran, answered or not.
    pub fn latency(&self) -> &Log2Histogram {
        &self.latency
    }

    /// Fuel consumed by each answered call.
    pub fn fuel(&self) -> &Log2Histogram {
        &self.fuel
    }

    /// The most linear memory, in bytes, any instance of the version held.
    pub fn memory_peak(&self) -> u64 {
        self.memory_peak.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_kind_has_its_own_counter() {
        // `errors[kind as usize]` must stay in bounds and distinct.
        for (i, kind) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(*kind as usize, i, "{kind} is out of place in ErrorKind::ALL");
        }
    }

    #[test]
    fn a_steady_overload_is_announced_once() {
        let stats = CallStats::default();
        let admitted = (0..1_000).filter(|_| stats.admit_log_line("p")).count();
        assert!((200..210).contains(&admitted), "{admitted}");
        // Refills let a line through now and then; the episode goes on, so
        // the host does not announce it again.
        std::thread::sleep(Duration::from_millis(20));
        let again = (0..100).filter(|_| stats.admit_log_line("p")).count();
        assert!((1..100).contains(&again), "{again}");
        assert!(stats.log_dropping.load(Ordering::Relaxed));
        assert_eq!(stats.log_lines_dropped(), (1_000 - admitted + 100 - again) as u64);
    }

    #[test]
    fn each_observation_lands_in_the_first_bucket_that_holds_it() {
        let h = Log2Histogram::new(1_024, 1.0);
        for v in [0, 1_024, 1_025, 2_048, 2_049, 1 << 20, u64::MAX] {
            h.observe(v);
        }
        let counts: Vec<u64> = h.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        // ≤1024: 0 and 1024; ≤2048: 1025 and 2048; ≤4096: 2049; 2^20 = 1024·2^10.
        assert_eq!(&counts[..4], &[2, 2, 1, 0]);
        assert_eq!(counts[10], 1);
        assert_eq!(counts[BUCKETS - 1], 1, "beyond the last bound: +Inf");
        assert_eq!(h.count(), 7);
    }

    #[test]
    fn publishes_cumulative_buckets_in_scaled_units() {
        let mut registry = prometheus_client::registry::Registry::default();
        let h = Log2Histogram::new(8_192, 1e-9);
        h.observe(5_000); // 5 µs
        h.observe(20_000); // 20 µs
        #[derive(Debug)]
        struct One(Log2Histogram);
        impl prometheus_client::collector::Collector for One {
            fn encode(
                &self,
                mut encoder: prometheus_client::encoding::DescriptorEncoder,
            ) -> Result<(), std::fmt::Error> {
                let metric = encoder.encode_descriptor("d", "help", None, MetricType::Histogram)?;
                self.0.encode(metric)
            }
        }
        registry.register_collector(Box::new(One(h)));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "d_sum 0.000025",
            "d_count 2",
            r#"d_bucket{le="0.000008192"} 1"#,
            r#"d_bucket{le="0.000032768"} 2"#,
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
        assert!(text.contains(r#"d_bucket{le="+Inf"} 2"#), "{text}");
    }
}
