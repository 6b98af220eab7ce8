//! The status page: `/` (static HTML and JS, embedded in the binary) and the
//! JSON it draws from, `/v1/status`.
//!
//! A sampler task ([`History::run`], started by the server) reads every
//! serving version's call counters once a second and keeps the last
//! [`KEEP`] seconds of per-second request rates and mean call latencies, so
//! the page shows the recent past as soon as it opens. `/v1/status` returns
//! the plugins (name, version, role, state, totals) and that history.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::sandbox::error::ErrorKind;
use crate::serving::registry::Registry;
use crate::version::breaker::BreakerState;
use crate::version::plugin::PluginVersion;

/// The page itself.
pub const INDEX_HTML: &str = include_str!("status/index.html");

/// Seconds of history kept.
pub const KEEP: usize = 300;

/// How often the sampler reads the counters.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// One serving version, as the page lists it.
#[derive(Debug, Clone, Serialize)]
pub struct PluginStatus {
    /// Plugin name.
    pub name: String,
    /// Version.
    pub version: String,
    /// live, canary or shadow.
    pub role: &'static str,
    /// live, canary, shadow or quarantined (the breaker holds it, or probes it).
    pub state: &'static str,
    /// Calls so far.
    pub calls: u64,
    /// Failed calls so far.
    pub errors: u64,
    /// Calls running now.
    pub in_flight: u32,
    /// Times the breaker quarantined it.
    pub quarantines: u64,
}

/// One second of one series (`name@version/role`).
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// Calls per second over the interval.
    pub rps: f64,
    /// Mean call latency over the interval, in milliseconds (null: no calls).
    pub latency_ms: Option<f64>,
}

/// One sample: when, and a point per series.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Unix time, milliseconds.
    pub ts_ms: u64,
    /// Series key → point.
    pub series: BTreeMap<String, Point>,
}

/// Counters of one series at the previous sample.
#[derive(Debug, Clone, Copy)]
struct Last {
    calls: u64,
    latency_count: u64,
    latency_ns: u64,
}

/// The sampled history.
#[derive(Debug, Default)]
pub struct History {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    samples: VecDeque<Sample>,
    last: BTreeMap<String, Last>,
    at: Option<Instant>,
}

fn key(role: &str, v: &PluginVersion) -> String {
    format!("{}/{role}", v.label())
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl History {
    /// Reads the counters of every version `registry` serves and appends a
    /// sample of the rates since the previous read. Called by [`Self::run`].
    pub fn sample(&self, registry: &Registry) {
        let Ok(mut inner) = self.inner.lock() else { return };
        let now = Instant::now();
        let seconds = inner.at.map(|at| now.duration_since(at).as_secs_f64());
        inner.at = Some(now);
        let mut series = BTreeMap::new();
        let mut last = BTreeMap::new();
        for (role, v) in registry.serving() {
            let stats = v.stats();
            let counters = Last {
                calls: stats.calls(),
                latency_count: stats.latency().count(),
                latency_ns: stats.latency().sum(),
            };
            let k = key(role, &v);
            if let (Some(seconds), Some(before)) = (seconds, inner.last.get(&k)) {
                let calls = counters.calls.saturating_sub(before.calls);
                let timed = counters.latency_count.saturating_sub(before.latency_count);
                let ns = counters.latency_ns.saturating_sub(before.latency_ns);
                let latency_ms = (timed > 0).then(|| ns as f64 / timed as f64 / 1e6);
                series.insert(k.clone(), Point { rps: calls as f64 / seconds.max(1e-3), latency_ms });
            }
            last.insert(k, counters);
        }
        inner.last = last;
        if seconds.is_some() {
            inner.samples.push_back(Sample { ts_ms: now_ms(), series });
            while inner.samples.len() > KEEP {
                inner.samples.pop_front();
            }
        }
    }

    /// Samples `registry` every [`INTERVAL`], forever. Spawned by the server.
    pub async fn run(self: Arc<Self>, registry: Arc<Registry>) {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.sample(&registry);
        }
    }

    /// The samples kept, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        self.inner.lock().map(|i| i.samples.iter().cloned().collect()).unwrap_or_default()
    }
}

/// Every serving version with its state and totals.
pub fn plugins(registry: &Registry) -> Vec<PluginStatus> {
    registry
        .serving()
        .into_iter()
        .map(|(role, v)| {
            let stats = v.stats();
            let quarantined = !matches!(v.breaker_state(), BreakerState::Closed);
            PluginStatus {
                name: v.manifest().name.clone(),
                version: v.manifest().version.clone(),
                role,
                state: if quarantined { "quarantined" } else { role },
                calls: stats.calls(),
                errors: ErrorKind::ALL.iter().map(|&k| stats.errors(k)).sum(),
                in_flight: v.in_flight(),
                quarantines: v.quarantines(),
            }
        })
        .collect()
}

/// The body of `/v1/status`.
#[derive(Debug, Serialize)]
pub struct Status {
    /// Unix time, milliseconds.
    pub now_ms: u64,
    /// Seconds between samples.
    pub interval_s: f64,
    /// Serving versions.
    pub plugins: Vec<PluginStatus>,
    /// The last [`KEEP`] samples, oldest first.
    pub history: Vec<Sample>,
}

/// Builds the body of `/v1/status`.
pub fn status(registry: &Registry, history: &History) -> Status {
    Status {
        now_ms: now_ms(),
        interval_s: INTERVAL.as_secs_f64(),
        plugins: plugins(registry),
        history: history.samples(),
    }
}
