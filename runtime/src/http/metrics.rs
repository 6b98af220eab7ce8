//! `/metrics`: request counts and latencies per route and plugin, in the
//! Prometheus text format (prometheus-client).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    plugin: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    route: String,
    plugin: String,
}

/// The server's metrics. Label values are bounded: `route` is the route
/// template, `plugin` a loaded plugin or pipeline name (never raw client input).
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<LatencyLabels, Histogram>,
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
        Self { registry, requests, latency }
    }
}

impl Metrics {
    /// Records one finished request. Called once per request by the middleware.
    pub fn observe(&self, route: &str, plugin: &str, status: u16, seconds: f64) {
        let (route, plugin) = (route.to_owned(), plugin.to_owned());
        self.latency
            .get_or_create(&LatencyLabels { route: route.clone(), plugin: plugin.clone() })
            .observe(seconds);
        self.requests.get_or_create(&RequestLabels { route, plugin, status }).inc();
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
