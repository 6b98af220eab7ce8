//! Sending traffic to candidates: a sticky canary share, and shadow copies.
//!
//! **Canary.** A candidate version takes `percent` of a plugin's calls, chosen
//! by a routing key — a request header, or a field of the row (`customer_id`)
//! — hashed into 100 buckets, so one customer always sees one version while
//! the canary runs. A call without the key goes to the live version.
//!
//! **Shadow.** A candidate is called with a copy of every live call's input
//! after the live answer is ready, on its own task and its own in-flight
//! budget: it can never slow or fail the live answer (when its budget is full
//! the copy is dropped and counted). The differences between the live and
//! shadow scores, and each side's errors, are counted for `/admin/v1/plugins`
//! and `/metrics`.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use serde_json::{Map, Value as Json};
use tokio::sync::Semaphore;

use crate::sandbox::error::CallError;
use crate::state::{self, backend::Access};
use crate::version::output::Scored;
use crate::version::plugin::PluginVersion;

/// Where a request's routing key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteKey {
    /// A request header (`header:x-customer-id`).
    Header(HeaderName),
    /// A field of the row or event (`customer_id`).
    Field(String),
}

/// Why a canary's routing key is refused (from the admin API).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteKeyError {
    /// `header:<name>` with a name HTTP does not allow.
    #[error("`{name}` is not a valid header name")]
    BadHeader {
        /// The name given.
        name: String,
    },
    /// A field name that is empty or over 128 bytes.
    #[error("the routing key must be `header:<name>` or a field name (1-128 characters); got {length} bytes")]
    BadField {
        /// Its length in bytes.
        length: usize,
    },
}

impl RouteKey {
    /// Parses `header:<name>` or a field name.
    pub fn parse(spec: &str) -> Result<Self, RouteKeyError> {
        match spec.strip_prefix("header:") {
            Some(h) => HeaderName::try_from(h.trim())
                .map(RouteKey::Header)
                .map_err(|_| RouteKeyError::BadHeader { name: h.to_owned() }),
            None if !spec.is_empty() && spec.len() <= 128 => Ok(RouteKey::Field(spec.to_owned())),
            None => Err(RouteKeyError::BadField { length: spec.len() }),
        }
    }

    /// The key's value for one request row, if present.
    pub fn value(&self, headers: &HeaderMap, row: &Map<String, Json>) -> Option<String> {
        match self {
            RouteKey::Header(h) => headers.get(h).and_then(|v| v.to_str().ok()).map(str::to_owned),
            RouteKey::Field(f) => match row.get(f)? {
                Json::String(s) => Some(s.clone()),
                Json::Null => None,
                other => Some(other.to_string()),
            },
        }
    }
}

impl std::fmt::Display for RouteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteKey::Header(h) => write!(f, "header:{h}"),
            RouteKey::Field(name) => f.write_str(name),
        }
    }
}

/// A candidate taking a sticky share of traffic.
pub struct Canary {
    /// The candidate.
    pub version: Arc<PluginVersion>,
    /// Share of keys routed to it, 0–100.
    pub percent: u8,
    /// Where the key comes from.
    pub key: RouteKey,
}

impl Canary {
    /// Whether a call with routing-key value `key` goes to the candidate. The
    /// bucket depends on the key only (a fixed hash), so it is stable across
    /// calls, processes and restarts.
    pub fn takes(&self, key: Option<&str>) -> bool {
        key.is_some_and(|k| bucket(k) < u64::from(self.percent))
    }
}

/// The key's bucket in 0..100 (FNV-1a: fixed, unlike std's randomly seeded hasher).
pub fn bucket(key: &str) -> u64 {
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    key.hash(&mut h);
    h.finish() % 100
}

struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// Upper bounds of the |live − shadow| score-difference buckets.
pub const DIFF_BUCKETS: [f64; 7] = [0.0, 1e-9, 1e-6, 1e-3, 1e-2, 0.1, 1.0];

/// Live-vs-shadow counts, as published.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ShadowStats {
    /// Copies sent to the shadow and finished.
    pub compared: u64,
    /// Copies dropped because the shadow's in-flight budget was full.
    pub dropped: u64,
    /// Shadow failed where live answered, by error kind.
    pub shadow_errors: std::collections::BTreeMap<String, u64>,
    /// Both answered: counts of |live − shadow| ≤ each bound of [`DIFF_BUCKETS`]
    /// (cumulative), and beyond the last.
    pub diff_le: Vec<(f64, u64)>,
    /// Both answered with a difference above the last bound.
    pub diff_over: u64,
    /// Largest difference seen.
    pub max_diff: f64,
    /// Mean difference.
    pub mean_diff: f64,
}

/// A candidate run on copies of live traffic.
pub struct Shadow {
    /// The candidate.
    pub version: Arc<PluginVersion>,
    slots: Arc<Semaphore>,
    dropped: AtomicU64,
    stats: Mutex<Tally>,
}

#[derive(Default)]
struct Tally {
    compared: u64,
    errors: std::collections::BTreeMap<String, u64>,
    buckets: [u64; DIFF_BUCKETS.len()],
    over: u64,
    sum: f64,
    both: u64,
    max: f64,
}

impl Shadow {
    /// Shadows with `version`, at most `max_in_flight` copies at once.
    pub fn new(version: Arc<PluginVersion>, max_in_flight: usize) -> Self {
        Self {
            version,
            slots: Arc::new(Semaphore::new(max_in_flight)),
            dropped: AtomicU64::new(0),
            stats: Mutex::new(Tally::default()),
        }
    }

    /// Scores a copy of `features` on the shadow after the live answer
    /// `live`, on a task of its own. Never waits: with every slot taken the
    /// copy is dropped (and counted). Must be called on a tokio runtime.
    /// `done` runs after each comparison with the outcome (`ok`, an error
    /// kind) and the difference, for metrics.
    pub fn mirror(
        self: &Arc<Self>,
        features: Map<String, Json>,
        live: Scored,
        done: impl FnOnce(&str, Option<f64>) + Send + 'static,
    ) {
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            done("dropped", None);
            return;
        };
        let shadow = self.clone();
        // As the live request's work: the shadow's log lines carry its id.
        let id = crate::sandbox::request_id::current().unwrap_or(HeaderValue::from_static(""));
        // A shadow reads the live state and writes nothing: it cannot double-count traffic.
        let access = Access::current().for_shadow();
        tokio::spawn(async move {
            let call = state::backend::scope(access, shadow.version.score_async(&features, None));
            let result = crate::sandbox::request_id::scope(id, call).await;
            drop(permit);
            let result = result.and_then(|o| o.value.into_plugin_result());
            let (outcome, diff) = shadow.record(&live, result);
            done(outcome, diff);
        });
    }

    fn record(&self, live: &Scored, shadow: Result<Scored, CallError>) -> (&'static str, Option<f64>) {
        let mut t = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        t.compared += 1;
        match shadow {
            Err(e) => {
                *t.errors.entry(e.kind().as_str().to_owned()).or_default() += 1;
                (e.kind().as_str(), None)
            }
            Ok(s) => {
                let diff = (s.score - live.score).abs();
                t.both += 1;
                t.sum += diff;
                t.max = t.max.max(diff);
                match DIFF_BUCKETS.iter().position(|&b| diff <= b) {
                    Some(i) => t.buckets[i] += 1,
                    None => t.over += 1,
                }
                ("ok", Some(diff))
            }
        }
    }

    /// The counts so far.
    pub fn stats(&self) -> ShadowStats {
        let t = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        let mut cumulative = 0;
        let diff_le = DIFF_BUCKETS
            .iter()
            .zip(t.buckets)
            .map(|(&b, n)| {
                cumulative += n;
                (b, cumulative)
            })
            .collect();
        ShadowStats {
            compared: t.compared,
            dropped: self.dropped.load(Ordering::Relaxed),
            shadow_errors: t.errors.clone(),
            diff_le,
            diff_over: t.over,
            max_diff: t.max,
            mean_diff: if t.both == 0 { 0.0 } else { t.sum / t.both as f64 },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_fixed_and_spread() {
        assert_eq!(bucket("customer-42"), bucket("customer-42"));
        let share = (0..10_000).filter(|i| bucket(&format!("c{i}")) < 10).count();
        assert!((800..1200).contains(&share), "10% of keys should land in the canary, got {share}");
    }

    #[test]
    fn route_keys_parse() {
        assert_eq!(RouteKey::parse("header:X-Customer").unwrap().to_string(), "header:x-customer");
        assert_eq!(RouteKey::parse("customer_id").unwrap(), RouteKey::Field("customer_id".into()));
        assert_eq!(RouteKey::parse(""), Err(RouteKeyError::BadField { length: 0 }));
        assert_eq!(
            RouteKey::parse("header:bad header"),
            Err(RouteKeyError::BadHeader { name: "bad header".into() })
        );
    }
}
