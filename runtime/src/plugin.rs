//! A loaded plugin version: compiled once, pre-instantiated, called many times.
//!
//! Loading is in [`crate::load`]; the instances a call runs on, and the guest
//! call itself, are in [`crate::instances`]. Here: JSON ↔ rows around each
//! call, batches, and checking what the guest answered.
//!
//! Calls are futures (`*_async`): they run on the server's async workers. The
//! blocking methods (`score`, …) drive the same futures on the calling thread,
//! for the CLI, tests and benches.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value as Json};

use crate::bindings::types::{self, Metadata};
use crate::breaker::{BreakerState, Guard};
use crate::error::CallError;
use crate::frame::{self, Batch};
use crate::instances::{Answer, Instances, Request, block};
use crate::layout::Layout;
use crate::limits::Limits;
use crate::manifest::{Manifest, Undeclared, World};
use crate::snapshot;
use crate::stats::CallStats;

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
    /// Set when `score` is the manifest's declared fallback, answered in place
    /// of this error (see [`crate::manifest::FallbackPolicy`]).
    pub fallback: Option<CallError>,
    /// Input fields the plugin does not declare that were sent anyway and
    /// ignored; only with `[inputs] undeclared = "report"` (the default
    /// refuses them).
    pub undeclared: Vec<String>,
}

impl Scored {
    /// What the plugin itself answered: the error a fallback stands in for is
    /// an error here. For checks that must see the plugin, not the policy
    /// (golden vectors, shadow comparisons).
    pub fn into_plugin_result(self) -> Result<Scored, CallError> {
        match self.fallback {
            Some(e) => Err(e),
            None => Ok(self),
        }
    }
}

/// The most reason codes a score may carry.
pub const MAX_REASONS: usize = 256;
/// The longest reason code, in bytes.
pub const MAX_REASON_CODE_BYTES: usize = 256;

/// Per-row results of a batch, in input order.
pub type BatchResults<T> = Vec<Result<T, CallError>>;

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
    pub(crate) guard: Guard,
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
                let value = answer.map_err(snapshot::plugin_error).and_then(scored)?;
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
                        .map(|r| r.map_err(snapshot::plugin_error).and_then(scored))
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
            let value = answer.map_err(snapshot::plugin_error).and_then(|r| self.outputs.named(&r))?;
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
                .map(|r| r.map_err(snapshot::plugin_error).and_then(|row| self.outputs.named(&row)))
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

/// A score with `n` > [`MAX_REASONS`] reasons (also checked by the frame path
/// before it builds them).
pub(crate) fn too_many_reasons(n: usize) -> CallError {
    CallError::InvalidOutput { message: format!("{n} reasons returned; at most {MAX_REASONS} are accepted") }
}

/// A reason code of `len` > [`MAX_REASON_CODE_BYTES`] bytes.
pub(crate) fn code_too_long(len: usize) -> CallError {
    CallError::InvalidOutput {
        message: format!(
            "a reason code of {len} bytes returned; at most {MAX_REASON_CODE_BYTES} are accepted"
        ),
    }
}

/// Validates a score: it must be finite, and so must every reason weight; at
/// most [`MAX_REASONS`] reasons of at most [`MAX_REASON_CODE_BYTES`] each.
pub(crate) fn scored(s: types::ScoreResult) -> Result<Scored, CallError> {
    if s.reasons.len() > MAX_REASONS {
        return Err(too_many_reasons(s.reasons.len()));
    }
    if let Some(r) = s.reasons.iter().find(|r| r.code.len() > MAX_REASON_CODE_BYTES) {
        return Err(code_too_long(r.code.len()));
    }
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
    Ok(Scored {
        score: s.value,
        reasons: s.reasons.into_iter().map(|r| (r.code, r.weight)).collect(),
        fallback: None,
        undeclared: Vec::new(),
    })
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
