//! Pipelines: event → one or more extractors (features merged) → scorer, in one call.
//!
//! Defined in a TOML file and validated at start-up: every plugin exists and
//! implements the right world, and no two extractors declare the same output
//! (a clash would make the merged features depend on evaluation order).
//!
//! ```toml
//! [pipelines.fraud]
//! extractors = ["txn-features"]
//! scorer = "logreg"
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Map, Value as Json};

use crate::error::CallError;
use crate::manifest::{Undeclared, World};
use crate::plugin::{Outcome, PluginVersion, Scored};
use crate::registry::Registry;

/// One pipeline as written in the file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    /// Extractor plugin names, run in order on the same event.
    pub extractors: Vec<String>,
    /// The scorer plugin name, fed the merged features.
    pub scorer: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelinesFile {
    #[serde(default)]
    pipelines: BTreeMap<String, PipelineSpec>,
}

/// The validated pipelines, by name.
#[derive(Debug, Clone, Default)]
pub struct Pipelines {
    specs: BTreeMap<String, PipelineSpec>,
}

/// The result of running a pipeline on one event.
#[derive(Debug, Clone)]
pub struct PipelineRun {
    /// The scorer's result.
    pub scored: Scored,
    /// The scorer version that answered, and what its call cost (fuel, time):
    /// what the decision log records for a pipeline's score.
    pub scorer: (Arc<PluginVersion>, u64, Duration),
    /// The merged features the scorer saw.
    pub features: Map<String, Json>,
    /// Fuel used by all stages together.
    pub fuel_used: u64,
    /// Wall-clock time of all stages.
    pub elapsed: Duration,
}

impl Pipelines {
    /// Parses and validates a pipelines file against the plugins in `registry`.
    /// The error names the pipeline and the offending plugin or feature.
    pub fn parse(text: &str, registry: &Registry) -> Result<Self, String> {
        let file: PipelinesFile = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())?;
        for (name, spec) in &file.pipelines {
            validate(name, spec, registry)?;
        }
        Ok(Self { specs: file.pipelines })
    }

    /// The pipeline called `name`.
    pub fn get(&self, name: &str) -> Option<&PipelineSpec> {
        self.specs.get(name)
    }

    /// Every pipeline, by name.
    pub fn all(&self) -> &BTreeMap<String, PipelineSpec> {
        &self.specs
    }
}

fn validate(name: &str, spec: &PipelineSpec, registry: &Registry) -> Result<(), String> {
    if spec.extractors.is_empty() {
        return Err(format!("pipeline `{name}` needs at least one extractor"));
    }
    let mut owner: HashMap<String, &str> = HashMap::new();
    for ex in &spec.extractors {
        let v = registry.get(ex).ok_or_else(|| format!("pipeline `{name}`: no plugin `{ex}` is loaded"))?;
        if v.manifest().world != World::Extractor {
            return Err(format!(
                "pipeline `{name}`: `{ex}` is a {}, not an extractor",
                v.manifest().world.as_str()
            ));
        }
        for out in &v.metadata().outputs {
            if let Some(first) = owner.insert(out.name.clone(), ex) {
                return Err(format!(
                    "pipeline `{name}`: feature `{}` is produced by both `{first}` and `{ex}`",
                    out.name
                ));
            }
        }
    }
    let s = registry
        .get(&spec.scorer)
        .ok_or_else(|| format!("pipeline `{name}`: no plugin `{}` is loaded", spec.scorer))?;
    if s.manifest().world != World::Scorer {
        return Err(format!("pipeline `{name}`: `{}` is an extractor, not a scorer", spec.scorer));
    }
    Ok(())
}

/// The fields of `obj` that `v` declares (all of them for open inputs): each
/// stage of a pipeline gets only what it reads.
fn declared(v: &PluginVersion, obj: &Map<String, Json>) -> Map<String, Json> {
    if v.metadata().open_inputs {
        return obj.clone();
    }
    obj.iter().filter(|(k, _)| v.inputs().declares(k)).map(|(k, x)| (k.clone(), x.clone())).collect()
}

/// Refuses an event with fields no extractor of the pipeline reads, naming
/// them, unless every extractor's manifest reports undeclared fields instead
/// (then they are counted by each and ignored).
fn unread_fields(extractors: &[Arc<PluginVersion>], event: &Map<String, Json>) -> Result<(), CallError> {
    let unread: Vec<&str> = event
        .keys()
        .filter(|k| !extractors.iter().any(|v| v.inputs().accepts(k)))
        .map(String::as_str)
        .collect();
    if unread.is_empty() {
        return Ok(());
    }
    if extractors.iter().all(|v| v.manifest().inputs.undeclared == Undeclared::Report) {
        for v in extractors {
            v.stats().undeclared(unread.len());
        }
        return Ok(());
    }
    Err(crate::layout::undeclared_error(
        &unread,
        "no extractor of the pipeline reads",
        "; a misspelled name?",
    ))
}

/// Time left until `deadline`, or a deadline error if none is.
fn remaining(deadline: Option<Instant>, budget: Duration) -> Result<Option<Duration>, CallError> {
    match deadline {
        None => Ok(None),
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                Err(CallError::DeadlineExceeded { deadline: budget, ran: Duration::ZERO })
            } else {
                Ok(Some(left))
            }
        }
    }
}

/// Runs `spec` on one event. `deadline`, if any, bounds the whole pipeline: each
/// stage gets what is left of it (or its own deadline, if sooner).
pub async fn run(
    spec: &PipelineSpec,
    registry: &Registry,
    event: &Map<String, Json>,
    budget: Option<Duration>,
) -> Result<PipelineRun, CallError> {
    let start = Instant::now();
    let deadline = budget.map(|b| start + b);
    let budget = budget.unwrap_or_default();
    let extractors = spec
        .extractors
        .iter()
        .map(|ex| {
            registry
                .get(ex)
                .ok_or_else(|| CallError::Unsupported { message: format!("extractor `{ex}` is not loaded") })
        })
        .collect::<Result<Vec<_>, _>>()?;
    unread_fields(&extractors, event)?;
    let mut features = Map::new();
    let mut fuel_used = 0;
    for v in &extractors {
        let Outcome { value, fuel_used: f, .. } =
            v.extract_async(&declared(v, event), remaining(deadline, budget)?).await?;
        fuel_used += f;
        features.extend(value);
    }
    let scorer = registry.get(&spec.scorer).ok_or_else(|| CallError::Unsupported {
        message: format!("scorer `{}` is not loaded", spec.scorer),
    })?;
    // Features the scorer does not read are the extractors' business, not a
    // caller's typo: the scorer gets only what it declares.
    let out = scorer.score_async(&declared(&scorer, &features), remaining(deadline, budget)?).await?;
    Ok(PipelineRun {
        scored: out.value,
        scorer: (scorer.clone(), out.fuel_used, out.elapsed),
        features,
        fuel_used: fuel_used + out.fuel_used,
        elapsed: start.elapsed(),
    })
}
