//! `/metrics`: request counts and latencies per route and plugin, in the
//! Prometheus text format (prometheus-client).

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::version::plugin::PluginVersion;

/// A label value: a shared string with its hash computed once, so recording a
/// request allocates nothing and the metric family's map hashes 8 bytes, not
/// the text (this is on every request's path).
#[derive(Debug, Clone)]
pub struct Label {
    text: Arc<str>,
    hash: u64,
}

impl Label {
    /// A label of `text`.
    pub fn new(text: Arc<str>) -> Self {
        let mut h = rustc_hash::FxHasher::default();
        text.hash(&mut h);
        Self { hash: h.finish(), text }
    }
}

impl PartialEq for Label {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.text == other.text
    }
}

impl Eq for Label {}

impl Hash for Label {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl EncodeLabelValue for Label {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&&*self.text, encoder)
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Label,
    plugin: Label,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    route: Label,
    plugin: Label,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShadowLabels {
    plugin: Label,
    shadow_version: Label,
    outcome: Label,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShadowDiffLabels {
    plugin: Label,
    shadow_version: Label,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FallbackLabels {
    plugin: Label,
    kind: Label,
}

/// The server's metrics. Label values are bounded: `route` is the route
/// template, `plugin` a loaded plugin or pipeline name (never raw client input).
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<LatencyLabels, Histogram>,
    shadow_calls: Family<ShadowLabels, Counter>,
    shadow_diff: Family<ShadowDiffLabels, Histogram>,
    fallbacks: Family<FallbackLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("scorehost");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<LatencyLabels, Histogram>::new_with_constructor(|| {
            // 50 µs … ~3.3 s
            Histogram::new(exponential_buckets(0.000_05, 2.0, 17))
        });
        registry.register("http_requests", "HTTP requests by route, plugin and status", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route and plugin",
            latency.clone(),
        );
        let shadow_calls = Family::<ShadowLabels, Counter>::default();
        let shadow_diff = Family::<ShadowDiffLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(crate::serving::traffic::DIFF_BUCKETS.iter().copied())
        });
        registry.register(
            "shadow_calls",
            "Shadow copies by outcome: ok, an error kind of the shadow, or dropped (budget full)",
            shadow_calls.clone(),
        );
        registry.register(
            "shadow_score_diff",
            "|live score - shadow score| when both answered",
            shadow_diff.clone(),
        );
        let fallbacks = Family::<FallbackLabels, Counter>::default();
        registry.register(
            "fallbacks",
            "Scores answered with the manifest's fallback, by plugin and the error kind it stood in for",
            fallbacks.clone(),
        );
        Self { registry, requests, latency, shadow_calls, shadow_diff, fallbacks }
    }
}

impl Metrics {
    /// Records one finished request. Called once per request by the middleware.
    pub fn observe(&self, route: Label, plugin: Label, status: u16, seconds: f64) {
        self.latency
            .get_or_create(&LatencyLabels { route: route.clone(), plugin: plugin.clone() })
            .observe(seconds);
        self.requests.get_or_create(&RequestLabels { route, plugin, status }).inc();
    }

    /// Records one shadow comparison. Called from the shadow's task.
    pub fn shadow(&self, plugin: Label, shadow_version: Label, outcome: &str, diff: Option<f64>) {
        let outcome = Label::new(Arc::from(outcome));
        self.shadow_calls
            .get_or_create(&ShadowLabels {
                plugin: plugin.clone(),
                shadow_version: shadow_version.clone(),
                outcome,
            })
            .inc();
        if let Some(d) = diff {
            self.shadow_diff.get_or_create(&ShadowDiffLabels { plugin, shadow_version }).observe(d);
        }
    }

    /// Also publishes, at every scrape, the circuit-breaker state of each
    /// version `plugins` serves. Called once, when the server is built.
    pub fn with_plugins(mut self, plugins: Arc<crate::serving::registry::Registry>) -> Self {
        self.registry.register_collector(Box::new(PluginHealth(plugins)));
        self
    }

    /// Also publishes, at every scrape, how many decisions `log` wrote and
    /// dropped (nothing when there is no decision log).
    pub fn with_decisions(mut self, log: Option<Arc<crate::serving::decisions::DecisionLog>>) -> Self {
        if let Some(log) = log {
            self.registry.register_collector(Box::new(DecisionCounts(log)));
        }
        self
    }

    /// Records one fallback answer. Called by the handlers.
    pub fn fallback(&self, plugin: Label, kind: &'static str) {
        self.fallbacks.get_or_create(&FallbackLabels { plugin, kind: Label::new(Arc::from(kind)) }).inc();
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The decision log's written and dropped counts, read at scrape time.
#[derive(Debug)]
struct DecisionCounts(Arc<crate::serving::decisions::DecisionLog>);

impl Collector for DecisionCounts {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counts = [
            ("decisions_written", "Decisions written to the decision log", self.0.written()),
            (
                "decisions_dropped",
                "Decisions dropped because the decision log's queue was full (the disk fell behind)",
                self.0.dropped(),
            ),
        ];
        for (name, help, n) in counts {
            ConstCounter::new(n).encode(encoder.encode_descriptor(
                name,
                help,
                None,
                MetricType::Counter,
            )?)?;
        }
        Ok(())
    }
}

/// Breaker state and in-flight calls of every serving version, read at scrape time.
struct PluginHealth(Arc<crate::serving::registry::Registry>);

impl std::fmt::Debug for PluginHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PluginHealth")
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    plugin: String,
    version: String,
    role: &'static str,
}

/// Where a version's histogram lives in its [`crate::sandbox::stats::CallStats`].
type VersionHistogram = fn(&PluginVersion) -> &crate::sandbox::stats::Log2Histogram;

/// One published number per serving version: name, help, type, value.
type VersionMetric = (&'static str, &'static str, MetricType, fn(&PluginVersion) -> u64);

const VERSION_METRICS: &[VersionMetric] = &[
    (
        "plugin_quarantined",
        "1 while the version's circuit breaker holds it in quarantine (or probing), else 0",
        MetricType::Gauge,
        |v| u64::from(!matches!(v.breaker_state(), crate::version::breaker::BreakerState::Closed)),
    ),
    ("plugin_quarantines", "Times the version's circuit breaker quarantined it", MetricType::Counter, |v| {
        v.quarantines()
    }),
    ("plugin_in_flight", "Calls of the version running now", MetricType::Gauge, |v| u64::from(v.in_flight())),
    (
        "plugin_calls",
        "Calls of the version: answered, failed or refused (HTTP, pipelines and shadow copies alike)",
        MetricType::Counter,
        |v| v.stats().calls(),
    ),
    (
        "plugin_log_lines_dropped",
        "Log lines of the version dropped by the per-version rate limit",
        MetricType::Counter,
        |v| v.stats().log_lines_dropped(),
    ),
    (
        "plugin_undeclared_fields",
        "Undeclared input fields the version accepted and reported (`[inputs] undeclared = \"report\"`)",
        MetricType::Counter,
        |v| v.stats().undeclared_fields(),
    ),
    (
        "plugin_state_exchanges",
        "State exchanges the version's calls made (one round trip to the state store each, when it is Redis)",
        MetricType::Counter,
        |v| v.stats().state_exchanges(),
    ),
    (
        "plugin_memory_peak_bytes",
        "The most linear memory any instance of the version has held",
        MetricType::Gauge,
        |v| v.stats().memory_peak(),
    ),
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    plugin: String,
    event: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionErrorLabels {
    plugin: String,
    version: String,
    role: &'static str,
    kind: &'static str,
}

fn version_labels(role: &'static str, v: &PluginVersion) -> VersionLabels {
    VersionLabels { plugin: v.manifest().name.clone(), version: v.manifest().version.clone(), role }
}

impl Collector for PluginHealth {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let serving = self.0.serving();
        for (name, help, kind, value) in VERSION_METRICS {
            let mut family = encoder.encode_descriptor(name, help, None, *kind)?;
            for (role, v) in &serving {
                let labels = version_labels(role, v);
                let family = family.encode_family(&labels)?;
                match kind {
                    MetricType::Counter => ConstCounter::new(value(v)).encode(family)?,
                    _ => ConstGauge::new(value(v) as i64).encode(family)?,
                }
            }
        }
        // Every call of the version, whoever made it (HTTP, pipeline, shadow).
        let mut family = encoder.encode_descriptor(
            "plugin_errors",
            "Failed calls of the version by error kind (refusals by the breaker or the in-flight cap included)",
            None,
            MetricType::Counter,
        )?;
        for (role, v) in &serving {
            for kind in crate::ErrorKind::ALL {
                let labels = VersionErrorLabels {
                    plugin: v.manifest().name.clone(),
                    version: v.manifest().version.clone(),
                    role,
                    kind: kind.as_str(),
                };
                ConstCounter::new(v.stats().errors(kind)).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "plugin_state_errors",
            "Failed state exchanges of the version by kind (the plugin answered with its defaults)",
            None,
            MetricType::Counter,
        )?;
        for (role, v) in &serving {
            if v.manifest().state.is_none() {
                continue;
            }
            for (i, kind) in crate::sandbox::stats::STATE_ERRORS.iter().enumerate() {
                let labels = VersionErrorLabels {
                    plugin: v.manifest().name.clone(),
                    version: v.manifest().version.clone(),
                    role,
                    kind,
                };
                ConstCounter::new(v.stats().state_errors(i)).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "plugin_events",
            "Swaps of the live version and validation-gate outcomes, by plugin",
            None,
            MetricType::Counter,
        )?;
        for (plugin, event, n) in self.0.events() {
            ConstCounter::new(n)
                .encode(family.encode_family(&EventLabels { plugin, event: event.as_str() })?)?;
        }
        let histograms: [(&str, &str, VersionHistogram); 2] = [
            ("plugin_call_duration_seconds", "Guest call latency of the version, answered or failed", |v| {
                v.stats().latency()
            }),
            ("plugin_call_fuel", "Fuel each answered call of the version consumed", |v| v.stats().fuel()),
        ];
        for (name, help, histogram) in histograms {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for (role, v) in &serving {
                let labels = version_labels(role, v);
                histogram(v).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
