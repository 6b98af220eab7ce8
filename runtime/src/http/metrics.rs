//! `/metrics`: request counts and latencies per route and plugin, in the
//! Prometheus text format (prometheus-client).

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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

/// The server's metrics. Label values are bounded: `route` is the route
/// template, `plugin` a loaded plugin or pipeline name (never raw client input).
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<LatencyLabels, Histogram>,
    shadow_calls: Family<ShadowLabels, Counter>,
    shadow_diff: Family<ShadowDiffLabels, Histogram>,
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
            Histogram::new(crate::traffic::DIFF_BUCKETS.iter().copied())
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
        Self { registry, requests, latency, shadow_calls, shadow_diff }
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

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
