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

use crate::sandbox::error::CallError;
use crate::sandbox::instances::Outcome;
use crate::sandbox::world::World;
use crate::serving::registry::Registry;
use crate::version::layout::Undeclared;
use crate::version::output::Scored;
use crate::version::plugin::PluginVersion;

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
    pub fn parse(text: &str, registry: &Registry) -> Result<Self, PipelineError> {
        let file: PipelinesFile = toml::from_str(text).map_err(PipelineError::Toml)?;
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

fn validate(name: &str, spec: &PipelineSpec, registry: &Registry) -> Result<(), PipelineError> {
    let pipeline = || name.to_owned();
    if spec.extractors.is_empty() {
        return Err(PipelineError::NoExtractor { pipeline: pipeline() });
    }
    let mut owner: HashMap<String, &str> = HashMap::new();
    for ex in &spec.extractors {
        let v = registry
            .get(ex)
            .ok_or_else(|| PipelineError::NotLoaded { pipeline: pipeline(), plugin: ex.clone() })?;
        if v.manifest().world != World::Extractor {
            return Err(PipelineError::WrongWorld {
                pipeline: pipeline(),
                plugin: ex.clone(),
                is: v.manifest().world,
                wanted: World::Extractor,
            });
        }
        for out in &v.metadata().outputs {
            if let Some(first) = owner.insert(out.name.clone(), ex) {
                return Err(PipelineError::FeatureTwice {
                    pipeline: pipeline(),
                    feature: out.name.clone(),
                    first: first.to_owned(),
                    second: ex.clone(),
                });
            }
        }
    }
    let s = registry
        .get(&spec.scorer)
        .ok_or_else(|| PipelineError::NotLoaded { pipeline: pipeline(), plugin: spec.scorer.clone() })?;
    if s.manifest().world != World::Scorer {
        return Err(PipelineError::WrongWorld {
            pipeline: pipeline(),
            plugin: spec.scorer.clone(),
            is: s.manifest().world,
            wanted: World::Scorer,
        });
    }
    Ok(())
}

/// Why a pipelines file is refused at start-up: each names the pipeline and
/// the plugin or feature at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// Not TOML, an unknown field, a missing field.
    #[error("{}", .0.to_string().trim_end())]
    Toml(toml::de::Error),
    /// `extractors` is empty.
    #[error("pipeline `{pipeline}` needs at least one extractor")]
    NoExtractor {
        /// The pipeline.
        pipeline: String,
    },
    /// A stage names a plugin that is not loaded.
    #[error("pipeline `{pipeline}`: no plugin `{plugin}` is loaded")]
    NotLoaded {
        /// The pipeline.
        pipeline: String,
        /// The plugin it names.
        plugin: String,
    },
    /// A scorer as an extractor stage, or an extractor as the scorer.
    #[error("pipeline `{pipeline}`: `{plugin}` is a {}, not {}", is.as_str(), article(*wanted))]
    WrongWorld {
        /// The pipeline.
        pipeline: String,
        /// The plugin.
        plugin: String,
        /// What it is.
        is: World,
        /// What the stage needs.
        wanted: World,
    },
    /// Two extractors produce one feature.
    #[error("pipeline `{pipeline}`: feature `{feature}` is produced by both `{first}` and `{second}`")]
    FeatureTwice {
        /// The pipeline.
        pipeline: String,
        /// The feature.
        feature: String,
        /// The first extractor producing it.
        first: String,
        /// The second.
        second: String,
    },
}

fn article(world: World) -> &'static str {
    match world {
        World::Scorer => "a scorer",
        World::Extractor => "an extractor",
    }
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
    Err(crate::version::layout::undeclared_error(
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
