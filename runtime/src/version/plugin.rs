//! A loaded plugin version: compiled once, pre-instantiated, called many times.
//!
//! Loading is in `plugin/load.rs` (a child module, so it builds this type's
//! private fields); the instances a call runs on, and the guest
//! call itself, are in [`crate::sandbox::instances`]. Here: JSON ↔ rows around each
//! call, batches, and checking what the guest answered.
//!
//! Calls are futures (`*_async`): they run on the server's async workers. The
//! blocking methods (`score`, …) drive the same futures on the calling thread,
//! for the CLI, tests and benches.

mod load;

pub use load::{MAX_COMPONENT_BYTES, MAX_MANIFEST_BYTES};

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value as Json};

use crate::sandbox::bindings::types::Metadata;
use crate::sandbox::error::CallError;
use crate::sandbox::instances::Outcome;
use crate::sandbox::instances::{Answer, Instances, Request, block};
use crate::sandbox::limits::Limits;
use crate::sandbox::stats::CallStats;
use crate::sandbox::world::World;
use crate::version::breaker::{BreakerState, Guard};
use crate::version::frame::{self, Batch};
use crate::version::layout::Layout;
use crate::version::layout::Undeclared;
use crate::version::manifest::Manifest;
use crate::version::output::{Scored, scored};

/// Per-row results of a batch, in input order.
pub type BatchResults<T> = Vec<Result<T, CallError>>;

/// A plugin version ready to serve. Cheap to share behind an `Arc`; calls on it
/// never block each other.
pub struct PluginVersion {
    manifest: Manifest,
    /// The name, shared (metrics labels, log fields).
    name: Arc<str>,
    limits: Limits,
    metadata: Metadata,
    content_hash: String,
    inputs: Layout,
    outputs: Layout,
    instances: Instances,
    guard: Guard,
    from_cache: bool,
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

    /// How a JSON object becomes the row this version's guest receives (the
    /// declared inputs, resolved to positions at load).
    pub fn inputs(&self) -> &Layout {
        &self.inputs
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

    /// Whether batches go to the plugin as one columnar frame: it exports
    /// `frame-scorer` (contract 0.1.1) and does not declare open inputs.
    pub fn batches_as_frames(&self) -> bool {
        self.instances.frames() && !self.metadata.open_inputs
    }

    /// Warm instances of this version waiting for a call.
    pub fn idle_instances(&self) -> usize {
        self.instances.idle()
    }

    /// Drops this version's idle instances, freeing their pool slots. Called
    /// when it stops serving (replaced by a swap) and after its gate.
    pub fn release_idle(&self) {
        self.instances.release_idle();
    }

    /// Stops this version's breaker counting calls until the guard is
    /// dropped: for checks whose calls may fault on purpose (golden vectors
    /// that expect a fault) and are not the version's record.
    pub fn pause_breaker(&self) -> crate::version::breaker::Paused<'_> {
        self.guard.pause()
    }

    /// Where its circuit breaker stands.
    pub fn breaker_state(&self) -> BreakerState {
        self.guard.state()
    }

    /// Times its circuit breaker has quarantined it.
    pub fn quarantines(&self) -> u64 {
        self.guard.quarantines()
    }

    /// Calls of this version running now.
    pub fn in_flight(&self) -> u32 {
        self.guard.in_flight()
    }

    /// Runs `call` through the breaker and the in-flight cap, reports whether
    /// it faulted, and records it in the version's [`CallStats`].
    /// `own_deadline` is the plugin's own deadline for this call (a batch's
    /// scales with its rows): a call stopped before it was stopped by the
    /// caller's tighter deadline, not by the plugin.
    async fn guarded<T>(
        &self,
        own_deadline: Duration,
        call: impl Future<Output = Result<Outcome<T>, CallError>>,
    ) -> Result<Outcome<T>, CallError> {
        let pass = match self.guard.enter(self.label()) {
            Ok(pass) => pass,
            Err(refused) => {
                self.instances.stats.record(Some(&refused), None, None);
                return Err(refused);
            }
        };
        let start = Instant::now();
        let result = call.await;
        match &result {
            Err(e) => pass.fail(e, own_deadline),
            Ok(_) => pass.succeed(),
        }
        match &result {
            Ok(out) => self.instances.stats.record(None, Some(out.elapsed), Some(out.fuel_used)),
            Err(e) => self.instances.stats.record(Some(e), Some(start.elapsed()), None),
        }
        result
    }

    /// What this version's calls did: counts, errors by kind, latency, fuel,
    /// memory high-water mark. Published by `/metrics`.
    pub fn stats(&self) -> &CallStats {
        &self.instances.stats
    }

    /// The manifest's fallback for a failed score, if it has one for `error`.
    fn fall_back(&self, error: CallError) -> Result<Scored, CallError> {
        match self.manifest.fallback.score_for(&error) {
            Some(score) => {
                Ok(Scored { score, reasons: Vec::new(), fallback: Some(error), undeclared: Vec::new() })
            }
            None => Err(error),
        }
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
        let start = Instant::now();
        let row = self.inputs.row(features)?;
        let result = self
            .guarded(self.limits.deadline, async {
                let out = self.instances.call(self.limits.tightened(deadline), Request::Score(&row)).await?;
                let Answer::Score(answer) = out.value else { unreachable!("score answers score") };
                let value = answer.map_err(crate::sandbox::error::plugin_error).and_then(scored)?;
                Ok(Outcome { value, fuel_used: out.fuel_used, elapsed: out.elapsed })
            })
            .await;
        let mut out = result
            .or_else(|e| Ok(Outcome { value: self.fall_back(e)?, fuel_used: 0, elapsed: start.elapsed() }))?;
        out.value.undeclared = self.report_undeclared(features);
        Ok(out)
    }

    /// The undeclared fields of `obj`, counted, when the manifest says to
    /// report them (otherwise none reach here: [`Layout::row`] refused them).
    pub(crate) fn report_undeclared(&self, obj: &Map<String, Json>) -> Vec<String> {
        if self.manifest.inputs.undeclared != Undeclared::Report {
            return Vec::new();
        }
        let names: Vec<String> = self.inputs.undeclared(obj).into_iter().map(str::to_owned).collect();
        if !names.is_empty() {
            self.instances.stats.undeclared(names.len());
        }
        names
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
        let start = Instant::now();
        let frames = self.batches_as_frames();
        let out = self
            .batch(rows, deadline, frames, async |good, limits| {
                let n = good.len();
                let out = match &good {
                    Batch::Frame(frame) => self.instances.call(limits, Request::ScoreFrame(frame)).await?,
                    Batch::Rows(rows) => self.instances.call(limits, Request::ScoreBatch(rows)).await?,
                };
                let value = match out.value {
                    Answer::ScoreFrame(answer) => frame::unpack(n, answer, &self.metadata.inputs)?,
                    Answer::ScoreBatch(results) => results
                        .into_iter()
                        .map(|r| r.map_err(crate::sandbox::error::plugin_error).and_then(scored))
                        .collect(),
                    _ => unreachable!("a batch answers a batch"),
                };
                Ok(Outcome { value, fuel_used: out.fuel_used, elapsed: out.elapsed })
            })
            .await;
        let mut out = match out {
            Ok(mut out) => {
                for r in &mut out.value {
                    if let Err(e) = r {
                        *r = self.fall_back(e.clone());
                    }
                }
                out
            }
            // The whole call failed: with a fallback, every row the host
            // accepted gets it; rows it rejected keep their own error.
            Err(e) if self.manifest.fallback.score_for(&e).is_some() => {
                let value =
                    rows.iter().map(|r| self.inputs.row(r).and_then(|_| self.fall_back(e.clone()))).collect();
                Outcome { value, fuel_used: 0, elapsed: start.elapsed() }
            }
            Err(e) => return Err(e),
        };
        for (result, row) in out.value.iter_mut().zip(rows) {
            if let Ok(scored) = result {
                scored.undeclared = self.report_undeclared(row);
            }
        }
        Ok(out)
    }

    /// Extracts the features of one JSON event.
    pub async fn extract_async(
        &self,
        event: &Map<String, Json>,
        deadline: Option<Duration>,
    ) -> Result<Outcome<Map<String, Json>>, CallError> {
        self.expect(World::Extractor, "extract")?;
        let row = self.inputs.row(event)?;
        self.report_undeclared(event);
        self.guarded(self.limits.deadline, async {
            let out = self.instances.call(self.limits.tightened(deadline), Request::Extract(&row)).await?;
            let Answer::Extract(answer) = out.value else { unreachable!("extract answers extract") };
            let value =
                answer.map_err(crate::sandbox::error::plugin_error).and_then(|r| self.outputs.named(&r))?;
            Ok(Outcome { value, fuel_used: out.fuel_used, elapsed: out.elapsed })
        })
        .await
    }

    /// Extracts many events in one instance and one guest call, as [`Self::score_batch_async`].
    pub async fn extract_batch_async(
        &self,
        events: &[Map<String, Json>],
        deadline: Option<Duration>,
    ) -> Result<Outcome<BatchResults<Map<String, Json>>>, CallError> {
        self.expect(World::Extractor, "extract")?;
        for event in events {
            self.report_undeclared(event);
        }
        self.batch(events, deadline, false, async |good, limits| {
            let Batch::Rows(good) = good else { unreachable!("extractors take rows") };
            let out = self.instances.call(limits, Request::ExtractBatch(&good)).await?;
            let Answer::ExtractBatch(results) = out.value else { unreachable!("a batch answers a batch") };
            let value = results
                .into_iter()
                .map(|r| {
                    r.map_err(crate::sandbox::error::plugin_error).and_then(|row| self.outputs.named(&row))
                })
                .collect();
            Ok(Outcome { value, fuel_used: out.fuel_used, elapsed: out.elapsed })
        })
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

    /// Converts every row (into one frame when `frame`), sends the good ones in
    /// one guest call (`send`, under the batch's limits), and merges the per-row
    /// results back into input order.
    async fn batch<T>(
        &self,
        rows: &[Map<String, Json>],
        deadline: Option<Duration>,
        frame: bool,
        send: impl AsyncFnOnce(Batch, Limits) -> Result<Outcome<BatchResults<T>>, CallError>,
    ) -> Result<Outcome<BatchResults<T>>, CallError> {
        // Refused before anything is laid out: rows × declared inputs bounds
        // what the host allocates for one request.
        self.inputs.check_request(rows.len())?;
        // Rows the host refuses keep their error; the rest go to the guest.
        let mut good = Batch::new(frame, rows.len(), &self.inputs);
        let refused: Vec<Option<CallError>> =
            rows.iter().map(|row| good.push(&self.inputs, row).err()).collect();
        let out = if good.is_empty() {
            Outcome { value: Vec::new(), fuel_used: 0, elapsed: Duration::ZERO }
        } else {
            // A batch is `good.len()` calls fused into one: each row gets the
            // plugin's per-call fuel and deadline (`Limits::for_rows`); a
            // request deadline bounds the whole batch.
            let own = self.limits.for_rows(good.len());
            let sent = good.len();
            self.guarded(own.deadline, async {
                let out = send(good, own.tightened(deadline)).await?;
                // A wrong count is the plugin's fault: checked inside the guard.
                if out.value.len() != sent {
                    return Err(CallError::InvalidOutput {
                        message: format!("batch of {sent} rows returned {} results", out.value.len()),
                    });
                }
                Ok(out)
            })
            .await?
        };
        // A row the plugin failed is an error of this version, like a failed call.
        for e in out.value.iter().filter_map(|r| r.as_ref().err()) {
            self.instances.stats.row_error(e);
        }
        let mut results = out.value.into_iter();
        let merged = refused
            .into_iter()
            .map(|refused| match refused {
                None => results.next().expect("one result per good row"),
                Some(e) => Err(e),
            })
            .collect();
        Ok(Outcome { value: merged, fuel_used: out.fuel_used, elapsed: out.elapsed })
    }
}
