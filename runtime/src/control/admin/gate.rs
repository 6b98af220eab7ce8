//! The validation gate: a version must load (compile, implement its world,
//! `init` with its config) and pass its golden vectors under its production
//! limits before it may serve. Its outcome is logged with timings (the
//! progress an upload shows) and counted as a plugin event for `/metrics`.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::Admin;
use crate::control::golden::{self, Report, VectorsError};
use crate::sandbox::error::LoadError;
use crate::serving::registry::Event;
use crate::version::plugin::PluginVersion;

/// One vector's cost at the gate.
#[derive(Debug, Clone, Serialize)]
pub struct VectorCost {
    /// The vector's name.
    pub name: String,
    /// Fuel it used.
    pub fuel_used: u64,
    /// Its latency, µs.
    pub elapsed_us: u64,
}

/// What the gate recorded for a version that passed.
#[derive(Debug, Clone, Serialize)]
pub struct GateRecord {
    /// Per vector: fuel and latency.
    pub vectors: Vec<VectorCost>,
    /// The most fuel any vector used.
    pub max_fuel: u64,
    /// The longest any vector took, µs.
    pub max_elapsed_us: u64,
}

impl GateRecord {
    fn of(report: &Report) -> Self {
        let us = |d: Duration| d.as_micros() as u64;
        Self {
            vectors: report
                .vectors
                .iter()
                .map(|v| VectorCost {
                    name: v.name.clone(),
                    fuel_used: v.fuel_used,
                    elapsed_us: us(v.elapsed),
                })
                .collect(),
            max_fuel: report.max_fuel(),
            max_elapsed_us: us(report.max_elapsed()),
        }
    }
}

/// Why a version failed the validation gate: it did not load, its golden
/// vectors could not be read, or some of them failed.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// Loading failed: manifest, component, world, `init` or metadata.
    #[error("loading failed: {0}")]
    Load(LoadError),
    /// `tests.jsonl` is missing, unreadable or malformed.
    #[error("golden vectors unreadable: {0}")]
    Vectors(VectorsError),
    /// It loaded, but golden vectors failed.
    #[error("{} of {of} golden vector(s) failed: {}", failures.len(), failures.join("; "))]
    Failed {
        /// Each failed vector, named, with what differed.
        failures: Vec<String>,
        /// How many vectors ran.
        of: usize,
    },
}

impl Admin {
    /// The validation gate for the plugin directory `dir`: load it, then run
    /// its golden vectors under its production limits. The outcome is counted
    /// as an event of plugin `name` (`/metrics`).
    pub fn gate(&self, name: &str, dir: &Path) -> Result<(PluginVersion, GateRecord), GateError> {
        let start = Instant::now();
        let ms = || start.elapsed().as_secs_f64() * 1e3;
        let gated = (|| {
            let version = self.runtime.load(dir).map_err(GateError::Load)?;
            let how = if version.from_cache() { "from the cache" } else { "compiled" };
            tracing::info!(
                plugin = name,
                "gate: {} {how} in {:.0} ms; running its vectors",
                version.label(),
                ms()
            );
            let vectors = golden::read(dir, version.manifest().world).map_err(GateError::Vectors)?;
            let report = golden::check(&version, &vectors);
            // Ready is not serving: its instances go back to the pool.
            version.release_idle();
            if !report.passed() {
                return Err(GateError::Failed { failures: report.failures(), of: vectors.len() });
            }
            tracing::info!(
                plugin = name,
                "gate: {} passed {} vector(s) in {:.0} ms",
                version.label(),
                vectors.len(),
                ms()
            );
            Ok((version, GateRecord::of(&report)))
        })();
        if let Err(e) = &gated {
            tracing::warn!(plugin = name, "gate: {} failed after {:.0} ms: {e}", dir.display(), ms());
        }
        self.registry.record(name, if gated.is_ok() { Event::GatePassed } else { Event::GateFailed });
        gated
    }
}
