//! The instances of one plugin version, and the guest call.
//!
//! A call takes a warm instance of the plugin's initialised snapshot (or
//! instantiates one from the pooling allocator), arms it with the call's fuel
//! and deadline, and makes one guest call with `call_async`. A call that ends
//! cleanly returns its instance for the next call of the same version, up to
//! the manifest's `[instances]` policy; anything else — a trap, a budget hit,
//! stderr output, a cancelled future — throws the instance away.
//!
//! The epoch callback yields to the executor at every tick, so a slow plugin
//! occupies an async worker for at most one tick at a time. At each tick it
//! also compares the wall clock with the call's deadline and takes the fuel
//! host calls charged (`host_budget.rs`) from the store.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::component::{Instance, InstancePre};
use wasmtime::{AsContext, Store, UpdateDeadline};

use crate::sandbox::bindings::frames::{Frame, FrameScores};
use crate::sandbox::bindings::types::{Metadata, PluginError, Row, ScoreResult};
use crate::sandbox::bindings::{extractor, frame_scorer, scorer_exports};
use crate::sandbox::engine::HostEngine;
use crate::sandbox::error::{CallError, LoadError};
use crate::sandbox::host::HostState;
use crate::sandbox::host_budget::HostStop;
use crate::sandbox::limits::InstancePolicy;
use crate::sandbox::limits::Limits;
use crate::sandbox::stats::CallStats;
use crate::sandbox::trap;
use crate::sandbox::world::World;
use crate::state::exchange::Namespace;

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

/// The optional batch interface of contract 0.1.1.
const FRAME_SCORER: &str = "scorehost:plugin/frame-scorer@0.1.2";

/// The pre-instantiated component, typed by world.
pub(crate) enum Pre {
    /// A scorer: `scorer` always; `frame-scorer` when the plugin was built
    /// against contract 0.1.1 or later (a 0.1.0 plugin exports `scorer` only).
    Scorer {
        pre: InstancePre<HostState>,
        scorer: scorer_exports::GuestIndices,
        frames: Option<frame_scorer::GuestIndices>,
    },
    Extractor(extractor::ExtractorPluginPre<HostState>),
}

impl Pre {
    /// Type-checks `pre` against `world`'s exports, finding the optional ones.
    pub(crate) fn new(pre: InstancePre<HostState>, world: World) -> wasmtime::Result<Self> {
        Ok(match world {
            World::Scorer => Pre::Scorer {
                scorer: scorer_exports::GuestIndices::new(&pre)?,
                frames: frame_scorer::GuestIndices::new(&pre).ok(),
                pre,
            },
            World::Extractor => Pre::Extractor(extractor::ExtractorPluginPre::new(pre)?),
        })
    }
}

/// An instantiated component, typed by world.
enum Bound {
    Scorer {
        instance: Instance,
        scorer: Export<scorer_exports::GuestIndices>,
        frames: Option<Export<frame_scorer::GuestIndices>>,
    },
    Extractor(extractor::ExtractorPlugin),
}

/// One exported interface of an instance, looked up and type-checked on its
/// first call. A fresh instance serves a single call, so it checks only the
/// interface that call uses (`call-loop fresh`: checking `frame-scorer` too
/// cost ~0.5 µs per new instance).
struct Export<I: Interface> {
    indices: I,
    loaded: Option<I::Guest>,
}

impl<I: Interface> Export<I> {
    fn new(indices: &I) -> Self {
        Self { indices: indices.clone(), loaded: None }
    }

    fn get(&mut self, store: &mut Store<HostState>, instance: &Instance) -> wasmtime::Result<&I::Guest> {
        if self.loaded.is_none() {
            self.loaded = Some(self.indices.load(store, instance)?);
        }
        Ok(self.loaded.as_ref().expect("loaded just above"))
    }
}

/// The generated per-interface export indices, loadable from an instance.
trait Interface: Clone {
    type Guest;
    fn load(&self, store: &mut Store<HostState>, instance: &Instance) -> wasmtime::Result<Self::Guest>;
}

impl Interface for scorer_exports::GuestIndices {
    type Guest = scorer_exports::Guest;
    fn load(&self, store: &mut Store<HostState>, instance: &Instance) -> wasmtime::Result<Self::Guest> {
        scorer_exports::GuestIndices::load(self, store, instance)
    }
}

impl Interface for frame_scorer::GuestIndices {
    type Guest = frame_scorer::Guest;
    fn load(&self, store: &mut Store<HostState>, instance: &Instance) -> wasmtime::Result<Self::Guest> {
        frame_scorer::GuestIndices::load(self, store, instance)
    }
}

impl Drop for Instances {
    fn drop(&mut self) {
        self.release_idle();
    }
}

/// One instance with its store, ready for a call.
struct Warm {
    store: Store<HostState>,
    plugin: Bound,
    /// Calls this instance has served.
    calls: u32,
}

/// What to ask the guest.
pub(crate) enum Request<'a> {
    Describe,
    Score(&'a Row),
    ScoreBatch(&'a [Row]),
    /// Only for a plugin whose [`Instances::frames`] is true.
    ScoreFrame(&'a Frame),
    Extract(&'a Row),
    ExtractBatch(&'a [Row]),
}

impl Request<'_> {
    /// The events (rows) the request carries: each may make one state exchange.
    fn events(&self) -> u32 {
        let n = match self {
            Request::Describe => 0,
            Request::Score(_) | Request::Extract(_) => 1,
            Request::ScoreBatch(rows) | Request::ExtractBatch(rows) => rows.len(),
            Request::ScoreFrame(frame) => frame.rows as usize,
        };
        u32::try_from(n).unwrap_or(u32::MAX)
    }
}

/// What the guest answered, by request.
pub(crate) enum Answer {
    Describe(Metadata),
    Score(Result<ScoreResult, PluginError>),
    ScoreBatch(Vec<Result<ScoreResult, PluginError>>),
    ScoreFrame(FrameScores),
    Extract(Result<Row, PluginError>),
    ExtractBatch(Vec<Result<Row, PluginError>>),
}

/// Hands out instances of one plugin version and takes them back.
pub(crate) struct Instances {
    engine: Arc<HostEngine>,
    pre: Pre,
    /// `name@version`, for log lines.
    pub(crate) label: Arc<str>,
    memory_limit: u64,
    policy: InstancePolicy,
    /// Warm instances between calls, at most `max_idle`.
    idle: Mutex<Vec<Warm>>,
    max_idle: usize,
    /// Set by [`Instances::release_idle`] (the version stopped serving):
    /// calls still in flight then drop their instances instead of keeping
    /// them. The next call to start clears it (the version serves again).
    retired: AtomicBool,
    /// The version's call statistics; calls raise its memory high-water mark.
    pub(crate) stats: Arc<CallStats>,
    /// The plugin's `[state]` namespace, handed to every instance's host state.
    state: Option<Arc<Namespace>>,
}

impl Instances {
    /// Instances of `pre`, living by `policy`, reaching the state of `state`.
    pub(crate) fn new(
        engine: Arc<HostEngine>,
        pre: Pre,
        label: Arc<str>,
        memory_limit: u64,
        policy: InstancePolicy,
        state: Option<Arc<Namespace>>,
    ) -> Self {
        // Calls run on the async workers and rarely yield, so about one call per
        // core is in flight at a time; a few spare cover bursts without pinning
        // many pool slots per version.
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            engine,
            pre,
            label,
            memory_limit,
            policy,
            idle: Mutex::new(Vec::new()),
            max_idle: 2 * cores,
            retired: AtomicBool::new(false),
            stats: Arc::default(),
            state,
        }
    }

    /// Whether the plugin exports `frame-scorer` (contract 0.1.1), so batches
    /// can be sent as one [`Frame`].
    pub(crate) fn frames(&self) -> bool {
        matches!(self.pre, Pre::Scorer { frames: Some(_), .. })
    }

    /// Warm instances currently idle (for tests and metrics).
    pub(crate) fn idle(&self) -> usize {
        self.idle.lock().map_or(0, |v| v.len())
    }

    /// A new store and instance. Its epoch callback yields to the executor at
    /// every tick and interrupts the guest when the call's ticks run out.
    async fn instantiate(&self, limits: Limits) -> Result<Warm, CallError> {
        let state = HostState::new(
            self.label.clone(),
            self.stats.clone(),
            self.memory_limit,
            None,
            self.state.clone(),
        );
        let mut store = Store::new(self.engine.engine(), state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_callback(|mut cx| {
            // Wall-clock: time in host calls, or waiting for a busy executor
            // after a yield, counts however few ticks the guest saw.
            if cx.data().budget.past_deadline() {
                return Ok(UpdateDeadline::Interrupt);
            }
            // Host work and guest work share the fuel: stop when they meet.
            let charged = cx.data_mut().budget.charged()?;
            if charged > 0 && charged >= cx.as_context().get_fuel()? {
                return Err(HostStop::Fuel.into());
            }
            Ok(UpdateDeadline::Yield(1))
        });
        arm(&mut store, self.engine.metered(), limits)?;
        let plugin = match &self.pre {
            Pre::Scorer { pre, scorer, frames } => {
                pre.instantiate_async(&mut store).await.map(|instance| Bound::Scorer {
                    instance,
                    scorer: Export::new(scorer),
                    frames: frames.as_ref().map(Export::new),
                })
            }
            Pre::Extractor(p) => p.instantiate_async(&mut store).await.map(Bound::Extractor),
        };
        match plugin {
            Ok(plugin) => Ok(Warm { store, plugin, calls: 0 }),
            Err(e) => Err(trap::classify(e, &store, limits.fuel, limits.deadline, limits.deadline)),
        }
    }

    /// Makes one guest call under `limits` on a warm or new instance.
    pub(crate) async fn call(
        &self,
        limits: Limits,
        request: Request<'_>,
    ) -> Result<Outcome<Answer>, CallError> {
        let start = Instant::now();
        if self.retired.load(Ordering::Relaxed) {
            self.retired.store(false, Ordering::Relaxed);
        }
        let reused = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        if reused.is_some() {
            self.engine.release_idle(1);
        }
        let mut warm = match reused {
            Some(warm) => warm,
            None => self.instantiate(limits).await?,
        };
        arm(&mut warm.store, self.engine.metered(), limits)?;
        warm.store.data_mut().exchanges_left = request.events();
        // Time on a thread, summed over polls: a deadline hit after waiting
        // for a busy executor is the host's doing, not the plugin's.
        let mut ran = Duration::ZERO;
        let mut result = {
            let mut call = std::pin::pin!(invoke(&mut warm, request));
            std::future::poll_fn(|cx| {
                let polled = Instant::now();
                let p = call.as_mut().poll(cx);
                ran += polled.elapsed();
                p
            })
            .await
        };
        self.stats.memory(warm.store.data().limiter.peak());
        // (Asking an unmetered store for its fuel builds an error, backtrace and all.)
        let fuel_used = match self.engine.metered() {
            true => {
                // Host work counts as fuel used: a call whose guest and host
                // work together ran past the budget fails.
                if let (Ok(_), Err(e)) = (&result, charge_host_work(&mut warm.store)) {
                    result = Err(e);
                }
                limits.fuel - warm.store.get_fuel().unwrap_or(0)
            }
            false => 0,
        };
        match result {
            Ok(value) => {
                let elapsed = start.elapsed();
                warm.calls += 1;
                self.give_back(warm);
                Ok(Outcome { value, fuel_used, elapsed })
            }
            // The instance is dropped here: nothing of a failed call survives.
            Err(e) => Err(trap::classify(e, &warm.store, limits.fuel, limits.deadline, ran)),
        }
    }

    /// Keeps `warm` for another call if the policy allows and it is clean.
    fn give_back(&self, warm: Warm) {
        let state = warm.store.data();
        let clean = state.limiter.breach.is_none() && !state.wrote_stderr();
        if !clean || warm.calls >= self.policy.calls_per_instance() {
            return;
        }
        // `retired` is read under the lock `release_idle` sets it under.
        if let Ok(mut idle) = self.idle.lock()
            && !self.retired.load(Ordering::Relaxed)
            && idle.len() < self.max_idle
            && self.engine.reserve_idle()
        {
            idle.push(warm);
        }
    }

    /// Drops every idle instance, freeing their pool slots: for a version
    /// that stops serving (replaced, or only gated and waiting).
    /// Calls in flight drop their instances too, until a new call starts.
    pub(crate) fn release_idle(&self) {
        let dropped = self
            .idle
            .lock()
            .map(|mut idle| {
                self.retired.store(true, Ordering::Relaxed);
                std::mem::take(&mut *idle)
            })
            .unwrap_or_default();
        self.engine.release_idle(dropped.len());
    }

    /// Type-checks every interface the component exports against the contract,
    /// blocking (at load, before anything is called): a new instance otherwise
    /// checks only what its call uses, and a mismatched `frame-scorer` must
    /// not go live to fail its first batch. The error names the interface.
    pub(crate) fn check_export_types(&self, limits: Limits, world: World) -> Result<(), LoadError> {
        let wrong = |message: String| LoadError::WrongWorld { world: world.as_str().into(), message };
        block(async {
            let mut warm = self.instantiate(limits).await.map_err(|e| wrong(e.to_string()))?;
            let Warm { store, plugin, .. } = &mut warm;
            if let Bound::Scorer { instance, scorer, frames } = plugin {
                let mismatch = |name: &str, e: wasmtime::Error| {
                    wrong(format!("its export `{name}` does not match the contract: {e:#}"))
                };
                scorer.get(store, instance).map_err(|e| mismatch(World::Scorer.export_name(), e))?;
                if let Some(frames) = frames {
                    frames.get(store, instance).map_err(|e| mismatch(FRAME_SCORER, e))?;
                }
            }
            self.give_back(warm);
            Ok(())
        })
    }

    /// Calls `describe()`, blocking (at load).
    pub(crate) fn describe(&self, limits: Limits) -> Result<Metadata, CallError> {
        match block(self.call(limits, Request::Describe))?.value {
            Answer::Describe(m) => Ok(m),
            _ => unreachable!("describe answers describe"),
        }
    }
}

/// Readies `store` for a call: a fresh log allowance and, unless the engine is
/// [`HostEngine::unmetered`], all of the call's fuel and all of its deadline.
fn arm(store: &mut Store<HostState>, metered: bool, limits: Limits) -> Result<(), CallError> {
    if !metered {
        store.data_mut().start_call(None, u64::MAX);
        return Ok(());
    }
    store.data_mut().start_call(Some(Instant::now() + limits.deadline), limits.fuel);
    store.set_fuel(limits.fuel).map_err(|e| CallError::GuestTrap { message: format!("{e:#}") })?;
    store.set_epoch_deadline(1);
    Ok(())
}

/// Takes the fuel host calls charged from the store's fuel at the end of a
/// call; fails the call (as out of fuel) when there is not that much left.
fn charge_host_work(store: &mut Store<HostState>) -> wasmtime::Result<()> {
    let charged = store.data_mut().budget.charged()?;
    if charged == 0 {
        return Ok(());
    }
    let left = store.get_fuel()?;
    store.set_fuel(left.saturating_sub(charged))?;
    if left < charged {
        return Err(HostStop::Fuel.into());
    }
    Ok(())
}

/// The guest call itself.
async fn invoke(warm: &mut Warm, request: Request<'_>) -> wasmtime::Result<Answer> {
    let store = &mut warm.store;
    Ok(match (&mut warm.plugin, request) {
        (Bound::Scorer { instance, scorer, .. }, Request::Describe) => {
            Answer::Describe(scorer.get(store, instance)?.call_describe(store).await?)
        }
        (Bound::Extractor(p), Request::Describe) => {
            Answer::Describe(p.scorehost_plugin_extractor().call_describe(store).await?)
        }
        (Bound::Scorer { instance, scorer, .. }, Request::Score(row)) => {
            Answer::Score(scorer.get(store, instance)?.call_score(store, row).await?)
        }
        (Bound::Scorer { instance, scorer, .. }, Request::ScoreBatch(rows)) => {
            Answer::ScoreBatch(scorer.get(store, instance)?.call_score_batch(store, rows).await?)
        }
        (Bound::Scorer { instance, frames: Some(f), .. }, Request::ScoreFrame(frame)) => {
            Answer::ScoreFrame(f.get(store, instance)?.call_score_frame(store, frame).await?)
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
pub(crate) fn block<F: Future>(f: F) -> F::Output {
    wasmtime_wasi::runtime::in_tokio(f)
}
