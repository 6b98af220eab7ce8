//! A loaded plugin version: compiled once, pre-instantiated, called many times.
//!
//! Loading is in [`crate::load`]. A call takes a warm instance of the
//! plugin's initialised snapshot (or instantiates one from the pooling
//! allocator), arms it with the plugin's fuel and deadline, and makes one guest
//! call with `call_async`. A call that ends cleanly returns its instance for
//! the next call of the same version, up to the manifest's `[instances]`
//! policy; anything else — a trap, a budget hit, stderr output, a cancelled
//! future — throws the instance away.
//!
//! Calls are futures: they run on the server's async workers and yield to
//! them at every epoch tick, so a slow plugin occupies a worker for at most one
//! tick at a time. The blocking methods (`score`, …) drive the same futures on
//! the calling thread, for the CLI, tests and benches.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value as Json};
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;

use crate::bindings::types::{self, Metadata, PluginError, Row, ScoreResult};
use crate::bindings::{extractor, scorer};
use crate::engine::HostEngine;
use crate::error::CallError;
use crate::host::HostState;
use crate::layout::Layout;
use crate::limits::Limits;
use crate::manifest::{InstancePolicy, Manifest, World};
use crate::snapshot;
use crate::trap;

/// The result of a successful call, with what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome<T> {
    /// What the plugin returned.
    pub value: T,
    /// Fuel the guest call consumed.
    pub fuel_used: u64,
    /// Wall-clock time of the call, instantiation (if any) included.
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

/// An instantiated component, typed by world.
enum Bound {
    Scorer(scorer::ScorerPlugin),
    Extractor(extractor::ExtractorPlugin),
}

/// One instance with its store, ready for a call.
struct Warm {
    store: Store<HostState>,
    plugin: Bound,
    /// Calls this instance has served.
    calls: u32,
}

/// What to ask the guest.
enum Request<'a> {
    Describe,
    Score(&'a Row),
    ScoreBatch(&'a [Row]),
    Extract(&'a Row),
    ExtractBatch(&'a [Row]),
}

/// What the guest answered, by request.
enum Answer {
    Describe(Metadata),
    Score(Result<ScoreResult, PluginError>),
    ScoreBatch(Vec<Result<ScoreResult, PluginError>>),
    Extract(Result<Row, PluginError>),
    ExtractBatch(Vec<Result<Row, PluginError>>),
}

/// Hands out instances of one plugin version and takes them back.
pub(crate) struct Instances {
    engine: Arc<HostEngine>,
    pre: Pre,
    /// `name@version`, for log lines.
    label: Arc<str>,
    memory_limit: u64,
    policy: InstancePolicy,
    /// Warm instances between calls, at most `max_idle`.
    idle: Mutex<Vec<Warm>>,
    max_idle: usize,
}

impl Instances {
    /// Instances of `pre`, living by `policy`.
    pub(crate) fn new(
        engine: Arc<HostEngine>,
        pre: Pre,
        label: Arc<str>,
        memory_limit: u64,
        policy: InstancePolicy,
    ) -> Self {
        // Calls run on the async workers and rarely yield, so about one call per
        // core is in flight at a time; a few spare cover bursts without pinning
        // many pool slots per version.
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self { engine, pre, label, memory_limit, policy, idle: Mutex::new(Vec::new()), max_idle: 2 * cores }
    }

    /// Warm instances currently idle (for tests and metrics).
    pub(crate) fn idle(&self) -> usize {
        self.idle.lock().map_or(0, |v| v.len())
    }

    /// A new store and instance. Its epoch callback yields to the executor at
    /// every tick and interrupts the guest when the call's ticks run out.
    async fn instantiate(&self, limits: Limits) -> Result<Warm, CallError> {
        let state = HostState::new(self.label.clone(), self.memory_limit, WasiCtxBuilder::new());
        let mut store = Store::new(self.engine.engine(), state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_callback(|mut cx| {
            let state = cx.data_mut();
            if state.ticks_left <= 1 {
                return Ok(UpdateDeadline::Interrupt);
            }
            state.ticks_left -= 1;
            Ok(UpdateDeadline::Yield(1))
        });
        arm(&mut store, limits)?;
        let plugin = match &self.pre {
            Pre::Scorer(p) => p.instantiate_async(&mut store).await.map(Bound::Scorer),
            Pre::Extractor(p) => p.instantiate_async(&mut store).await.map(Bound::Extractor),
        };
        match plugin {
            Ok(plugin) => Ok(Warm { store, plugin, calls: 0 }),
            Err(e) => Err(trap::classify(e, &store, limits.fuel, limits.deadline)),
        }
    }

    /// Makes one guest call under `limits` on a warm or new instance.
    async fn call(&self, limits: Limits, request: Request<'_>) -> Result<Outcome<Answer>, CallError> {
        let start = Instant::now();
        let reused = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut warm = match reused {
            Some(warm) => warm,
            None => self.instantiate(limits).await?,
        };
        arm(&mut warm.store, limits)?;
        let result = invoke(&mut warm, request).await;
        let fuel_used = limits.fuel - warm.store.get_fuel().unwrap_or(0);
        match result {
            Ok(value) => {
                let elapsed = start.elapsed();
                warm.calls += 1;
                self.give_back(warm);
                Ok(Outcome { value, fuel_used, elapsed })
            }
            // The instance is dropped here: nothing of a failed call survives.
            Err(e) => Err(trap::classify(e, &warm.store, limits.fuel, limits.deadline)),
        }
    }

    /// Keeps `warm` for another call if the policy allows and it is clean.
    fn give_back(&self, warm: Warm) {
        let state = warm.store.data();
        let clean = state.limiter.breach.is_none() && !state.wrote_stderr();
        if !clean || warm.calls >= self.policy.calls_per_instance() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.max_idle
        {
            idle.push(warm);
        }
    }

    /// Calls `describe()`, blocking (at load).
    pub(crate) fn describe(&self, limits: Limits) -> Result<Metadata, CallError> {
        match block(self.call(limits, Request::Describe))?.value {
            Answer::Describe(m) => Ok(m),
            _ => unreachable!("describe answers describe"),
        }
    }
}

/// Sets a call's budgets on `store`: all of its fuel, all of its deadline.
fn arm(store: &mut Store<HostState>, limits: Limits) -> Result<(), CallError> {
    store.set_fuel(limits.fuel).map_err(|e| CallError::GuestTrap { message: format!("{e:#}") })?;
    store.data_mut().start_call(HostEngine::deadline_ticks(limits.deadline));
    store.set_epoch_deadline(1);
    Ok(())
}

/// The guest call itself.
async fn invoke(warm: &mut Warm, request: Request<'_>) -> wasmtime::Result<Answer> {
    let store = &mut warm.store;
    Ok(match (&warm.plugin, request) {
        (Bound::Scorer(p), Request::Describe) => {
            Answer::Describe(p.scorehost_plugin_scorer().call_describe(store).await?)
        }
        (Bound::Extractor(p), Request::Describe) => {
            Answer::Describe(p.scorehost_plugin_extractor().call_describe(store).await?)
        }
        (Bound::Scorer(p), Request::Score(row)) => {
            Answer::Score(p.scorehost_plugin_scorer().call_score(store, row).await?)
        }
        (Bound::Scorer(p), Request::ScoreBatch(rows)) => {
            Answer::ScoreBatch(p.scorehost_plugin_scorer().call_score_batch(store, rows).await?)
        }
        (Bound::Extractor(p), Request::Extract(row)) => {
            Answer::Extract(p.scorehost_plugin_extractor().call_extract(store, row).await?)
        }
        (Bound::Extractor(p), Request::ExtractBatch(rows)) => {
            Answer::ExtractBatch(p.scorehost_plugin_extractor().call_extract_batch(store, rows).await?)
        }
        _ => wasmtime::bail!("request does not match the plugin's world"),
    })
}

/// Drives a call future to completion on the current (non-async) thread.
fn block<F: Future>(f: F) -> F::Output {
    wasmtime_wasi::runtime::in_tokio(f)
}

/// A plugin version ready to serve. Cheap to share behind an `Arc`; calls on it
/// never block each other.
pub struct PluginVersion {
    pub(crate) manifest: Manifest,
    /// The name, shared (metrics labels, log fields).
    pub(crate) name: Arc<str>,
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

    /// The plugin's name as a shared string, for labels that outlive a request.
    pub fn name_label(&self) -> Arc<str> {
        self.name.clone()
    }

    /// `name@version`.
    pub fn label(&self) -> &str {
        &self.instances.label
    }

    /// Warm instances of this version waiting for a call.
    pub fn idle_instances(&self) -> usize {
        self.instances.idle()
    }

    fn expect(&self, world: World, verb: &str) -> Result<(), CallError> {
        if self.manifest.world == world {
            return Ok(());
        }
        let (is, call) = match world {
            World::Scorer => ("an extractor", "extract"),
            World::Extractor => ("a scorer", "score"),
        };
        Err(CallError::Unsupported {
            message: format!("`{}` is {is}; call {call}, not {verb}", self.manifest.name),
        })
    }

    /// Scores one JSON object of named features. `deadline` can only tighten the
    /// plugin's own deadline.
    pub async fn score_async(
        &self,
        features: &Map<String, Json>,
        deadline: Option<Duration>,
    ) -> Result<Outcome<Scored>, CallError> {
        self.expect(World::Scorer, "score")?;
        let row = self.inputs.row(features)?;
        let out = self.instances.call(self.limits.tightened(deadline), Request::Score(&row)).await?;
        let Answer::Score(answer) = out.value else { unreachable!("score answers score") };
        let value = answer.map_err(snapshot::plugin_error).and_then(scored)?;
        Ok(Outcome { value, fuel_used: out.fuel_used, elapsed: out.elapsed })
    }

    /// Scores many rows in one instance and one guest call. A row that fails
    /// conversion or scoring fails alone; the outer error is for the whole call
    /// (a trap, a budget) and then no row has a result.
    pub async fn score_batch_async(
        &self,
        rows: &[Map<String, Json>],
        deadline: Option<Duration>,
    ) -> Result<Outcome<BatchResults<Scored>>, CallError> {
        self.expect(World::Scorer, "score")?;
        self.batch(
            rows,
            deadline,
            |rows| Request::ScoreBatch(rows),
            |answer| match answer {
                Answer::ScoreBatch(results) => {
                    results.into_iter().map(|r| r.map_err(snapshot::plugin_error).and_then(scored)).collect()
                }
                _ => unreachable!("a score batch answers a score batch"),
            },
        )
        .await
    }

    /// Extracts the features of one JSON event.
    pub async fn extract_async(
        &self,
        event: &Map<String, Json>,
        deadline: Option<Duration>,
    ) -> Result<Outcome<Map<String, Json>>, CallError> {
        self.expect(World::Extractor, "extract")?;
        let row = self.inputs.row(event)?;
        let out = self.instances.call(self.limits.tightened(deadline), Request::Extract(&row)).await?;
        let Answer::Extract(answer) = out.value else { unreachable!("extract answers extract") };
        let value = answer.map_err(snapshot::plugin_error).and_then(|r| self.outputs.named(&r))?;
        Ok(Outcome { value, fuel_used: out.fuel_used, elapsed: out.elapsed })
    }

    /// Extracts many events in one instance and one guest call, as [`Self::score_batch_async`].
    pub async fn extract_batch_async(
        &self,
        events: &[Map<String, Json>],
        deadline: Option<Duration>,
    ) -> Result<Outcome<BatchResults<Map<String, Json>>>, CallError> {
        self.expect(World::Extractor, "extract")?;
        self.batch(
            events,
            deadline,
            |rows| Request::ExtractBatch(rows),
            |answer| match answer {
                Answer::ExtractBatch(results) => results
                    .into_iter()
                    .map(|r| r.map_err(snapshot::plugin_error).and_then(|row| self.outputs.named(&row)))
                    .collect(),
                _ => unreachable!("an extract batch answers an extract batch"),
            },
        )
        .await
    }

    /// [`Self::score_async`], blocking the calling thread. Not for async contexts.
    pub fn score(
        &self,
        features: &Map<String, Json>,
        deadline: Option<Duration>,
    ) -> Result<Outcome<Scored>, CallError> {
        block(self.score_async(features, deadline))
    }

    /// [`Self::score_batch_async`], blocking the calling thread. Not for async contexts.
    pub fn score_batch(
        &self,
        rows: &[Map<String, Json>],
        deadline: Option<Duration>,
    ) -> Result<Outcome<BatchResults<Scored>>, CallError> {
        block(self.score_batch_async(rows, deadline))
    }

    /// [`Self::extract_async`], blocking the calling thread. Not for async contexts.
    pub fn extract(
        &self,
        event: &Map<String, Json>,
        deadline: Option<Duration>,
    ) -> Result<Outcome<Map<String, Json>>, CallError> {
        block(self.extract_async(event, deadline))
    }

    /// [`Self::extract_batch_async`], blocking the calling thread. Not for async contexts.
    pub fn extract_batch(
        &self,
        events: &[Map<String, Json>],
        deadline: Option<Duration>,
    ) -> Result<Outcome<BatchResults<Map<String, Json>>>, CallError> {
        block(self.extract_batch_async(events, deadline))
    }

    /// Converts every row, sends the good ones in one guest call, and merges the
    /// per-row results back into input order.
    async fn batch<T>(
        &self,
        rows: &[Map<String, Json>],
        deadline: Option<Duration>,
        request: for<'a> fn(&'a [Row]) -> Request<'a>,
        results: impl FnOnce(Answer) -> BatchResults<T>,
    ) -> Result<Outcome<BatchResults<T>>, CallError> {
        let converted: Vec<Result<Row, CallError>> = rows.iter().map(|r| self.inputs.row(r)).collect();
        let good: Vec<Row> = converted.iter().filter_map(|r| r.as_ref().ok().cloned()).collect();
        let out = if good.is_empty() {
            Outcome { value: Vec::new(), fuel_used: 0, elapsed: Duration::ZERO }
        } else {
            let out = self.instances.call(self.limits.tightened(deadline), request(&good)).await?;
            Outcome { value: results(out.value), fuel_used: out.fuel_used, elapsed: out.elapsed }
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
