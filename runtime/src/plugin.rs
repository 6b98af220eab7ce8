//! A loaded plugin version: compiled once, pre-instantiated, called many times.
//!
//! Loading is in [`crate::load`]. Every call builds a fresh `Store` with the
//! plugin's fuel, deadline and memory cap, instantiates from the pooling
//! allocator and makes one guest call.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value as Json};
use wasmtime::Store;
use wasmtime_wasi::WasiCtxBuilder;

use crate::bindings::types::{self, Metadata, Row};
use crate::bindings::{extractor, scorer};
use crate::engine::HostEngine;
use crate::error::CallError;
use crate::host::HostState;
use crate::layout::Layout;
use crate::limits::Limits;
use crate::manifest::Manifest;
use crate::snapshot;
use crate::trap;

/// The result of a successful call, with what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome<T> {
    /// What the plugin returned.
    pub value: T,
    /// Fuel the call consumed (instantiation included).
    pub fuel_used: u64,
    /// Wall-clock time of the call, instantiation included.
    pub elapsed: Duration,
}

/// One scored row.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// The score, finite.
    pub score: f64,
    /// Reason codes with signed weights, as the plugin ordered them.
    pub reasons: Vec<(String, f64)>,
}

/// Per-row results of a batch, in input order.
pub type BatchResults<T> = Vec<Result<T, CallError>>;

/// The pre-instantiated component, typed by world.
pub(crate) enum Pre {
    Scorer(scorer::ScorerPluginPre<HostState>),
    Extractor(extractor::ExtractorPluginPre<HostState>),
}

/// Makes fresh instances of one plugin version: one store and one instance per call.
pub(crate) struct Instances {
    pub(crate) engine: Arc<HostEngine>,
    pub(crate) pre: Pre,
    /// `name@version`, for log lines.
    pub(crate) label: Arc<str>,
}

impl Instances {
    /// Runs `f` in a fresh store and instance under `limits`.
    pub(crate) fn call<R>(
        &self,
        limits: Limits,
        f: impl FnOnce(&mut Store<HostState>, &Pre) -> wasmtime::Result<R>,
    ) -> Result<Outcome<R>, CallError> {
        let start = Instant::now();
        let state = HostState::new(self.label.clone(), limits.memory_bytes, WasiCtxBuilder::new());
        let mut store = Store::new(self.engine.engine(), state);
        store.limiter(|s| &mut s.limiter);
        store.set_fuel(limits.fuel).map_err(|e| CallError::GuestTrap { message: format!("{e:#}") })?;
        store.set_epoch_deadline(HostEngine::deadline_ticks(limits.deadline));
        store.epoch_deadline_trap();
        let result = f(&mut store, &self.pre);
        let fuel_used = limits.fuel - store.get_fuel().unwrap_or(0);
        match result {
            Ok(value) => Ok(Outcome { value, fuel_used, elapsed: start.elapsed() }),
            Err(e) => Err(trap::classify(e, &store, limits.fuel, limits.deadline)),
        }
    }
}

/// A plugin version ready to serve. Cheap to share behind an `Arc`; calls on it
/// never block each other.
pub struct PluginVersion {
    pub(crate) manifest: Manifest,
    pub(crate) limits: Limits,
    pub(crate) metadata: Metadata,
    pub(crate) content_hash: String,
    pub(crate) inputs: Layout,
    pub(crate) outputs: Layout,
    pub(crate) instances: Instances,
    pub(crate) from_cache: bool,
}

impl std::fmt::Debug for PluginVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginVersion")
            .field("plugin", &self.instances.label)
            .field("hash", &self.content_hash)
            .finish()
    }
}

impl PluginVersion {
    /// The manifest it was loaded from.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// What the plugin declared about itself (after `init`).
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The validated per-call limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// SHA-256 of the component as shipped (before pre-initialisation).
    pub fn content_hash(&self) -> &str {
        &self.content_hash
    }

    /// Whether the compiled component came from the on-disk cache (no
    /// recompilation, no `init`).
    pub fn from_cache(&self) -> bool {
        self.from_cache
    }

    /// `name@version`.
    pub fn label(&self) -> &str {
        &self.instances.label
    }

    fn scorer_pre(&self) -> Result<&scorer::ScorerPluginPre<HostState>, CallError> {
        match &self.instances.pre {
            Pre::Scorer(p) => Ok(p),
            Pre::Extractor(_) => Err(CallError::Unsupported {
                message: format!("`{}` is an extractor; call extract, not score", self.manifest.name),
            }),
        }
    }

    fn extractor_pre(&self) -> Result<&extractor::ExtractorPluginPre<HostState>, CallError> {
        match &self.instances.pre {
            Pre::Extractor(p) => Ok(p),
            Pre::Scorer(_) => Err(CallError::Unsupported {
                message: format!("`{}` is a scorer; call score, not extract", self.manifest.name),
            }),
        }
    }

    /// Scores one JSON object of named features. `deadline` can only tighten the
    /// plugin's own deadline.
    pub fn score(
        &self,
        features: &Map<String, Json>,
        deadline: Option<Duration>,
    ) -> Result<Outcome<Scored>, CallError> {
        let pre = self.scorer_pre()?;
        let row = self.inputs.row(features)?;
        let out = self.instances.call(self.limits.tightened(deadline), |store, _| {
            pre.instantiate(&mut *store)?.scorehost_plugin_scorer().call_score(store, &row)
        })?;
        let value = out.value.map_err(snapshot::plugin_error).and_then(scored)?;
        Ok(Outcome { value, fuel_used: out.fuel_used, elapsed: out.elapsed })
    }

    /// Scores many rows in one instance and one guest call. A row that fails
    /// conversion or scoring fails alone; the outer error is for the whole call
    /// (a trap, a budget) and then no row has a result.
    pub fn score_batch(
        &self,
        rows: &[Map<String, Json>],
        deadline: Option<Duration>,
    ) -> Result<Outcome<BatchResults<Scored>>, CallError> {
        let pre = self.scorer_pre()?;
        self.batch(rows, deadline, |store, good| {
            let results =
                pre.instantiate(&mut *store)?.scorehost_plugin_scorer().call_score_batch(store, good)?;
            Ok(results.into_iter().map(|r| r.map_err(snapshot::plugin_error).and_then(scored)).collect())
        })
    }

    /// Extracts the features of one JSON event.
    pub fn extract(
        &self,
        event: &Map<String, Json>,
        deadline: Option<Duration>,
    ) -> Result<Outcome<Map<String, Json>>, CallError> {
        let pre = self.extractor_pre()?;
        let row = self.inputs.row(event)?;
        let out = self.instances.call(self.limits.tightened(deadline), |store, _| {
            pre.instantiate(&mut *store)?.scorehost_plugin_extractor().call_extract(store, &row)
        })?;
        let value = out.value.map_err(snapshot::plugin_error).and_then(|r| self.outputs.named(&r))?;
        Ok(Outcome { value, fuel_used: out.fuel_used, elapsed: out.elapsed })
    }

    /// Extracts many events in one instance and one guest call, as [`Self::score_batch`].
    pub fn extract_batch(
        &self,
        events: &[Map<String, Json>],
        deadline: Option<Duration>,
    ) -> Result<Outcome<BatchResults<Map<String, Json>>>, CallError> {
        let pre = self.extractor_pre()?;
        self.batch(events, deadline, |store, good| {
            let results =
                pre.instantiate(&mut *store)?.scorehost_plugin_extractor().call_extract_batch(store, good)?;
            Ok(results
                .into_iter()
                .map(|r| r.map_err(snapshot::plugin_error).and_then(|row| self.outputs.named(&row)))
                .collect())
        })
    }

    /// Converts every row, sends the good ones in one guest call, and merges the
    /// per-row results back into input order.
    fn batch<T>(
        &self,
        rows: &[Map<String, Json>],
        deadline: Option<Duration>,
        run: impl FnOnce(&mut Store<HostState>, &[Row]) -> wasmtime::Result<BatchResults<T>>,
    ) -> Result<Outcome<BatchResults<T>>, CallError> {
        let converted: Vec<Result<Row, CallError>> = rows.iter().map(|r| self.inputs.row(r)).collect();
        let good: Vec<Row> = converted.iter().filter_map(|r| r.as_ref().ok().cloned()).collect();
        let out = if good.is_empty() {
            Outcome { value: Vec::new(), fuel_used: 0, elapsed: Duration::ZERO }
        } else {
            self.instances.call(self.limits.tightened(deadline), |store, _| run(store, &good))?
        };
        if out.value.len() != good.len() {
            return Err(CallError::InvalidOutput {
                message: format!("batch of {} rows returned {} results", good.len(), out.value.len()),
            });
        }
        let mut results = out.value.into_iter();
        let merged = converted
            .into_iter()
            .map(|c| match c {
                Ok(_) => results.next().expect("one result per good row"),
                Err(e) => Err(e),
            })
            .collect();
        Ok(Outcome { value: merged, fuel_used: out.fuel_used, elapsed: out.elapsed })
    }
}

/// Validates a score: it must be finite, and so must every reason weight.
fn scored(s: types::ScoreResult) -> Result<Scored, CallError> {
    if !s.value.is_finite() {
        return Err(CallError::InvalidOutput {
            message: format!("score is {}, not a finite number", s.value),
        });
    }
    if let Some(r) = s.reasons.iter().find(|r| !r.weight.is_finite()) {
        return Err(CallError::InvalidOutput {
            message: format!("reason `{}` has weight {}", r.code, r.weight),
        });
    }
    Ok(Scored { score: s.value, reasons: s.reasons.into_iter().map(|r| (r.code, r.weight)).collect() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn non_finite_scores_and_weights_are_invalid_output() {
        let score = |value: f64, weight: f64| types::ScoreResult {
            value,
            reasons: vec![types::Reason { code: "x".into(), weight }],
        };
        for (v, w) in [(f64::NAN, 1.0), (f64::INFINITY, 1.0), (0.5, f64::NEG_INFINITY)] {
            assert_eq!(scored(score(v, w)).unwrap_err().kind(), ErrorKind::InvalidOutput);
        }
        assert_eq!(scored(score(0.5, -2.0)).unwrap().score, 0.5);
    }
}
