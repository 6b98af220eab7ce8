//! A loaded plugin version: compiled once, pre-instantiated, called many times.
//!
//! [`PluginVersion::load`] does the expensive part once, off the request path:
//! manifest → component → import and world checks → `init` + snapshot (or the
//! compiled cache) → `InstancePre` → metadata. Every call then builds a fresh
//! `Store` with the plugin's fuel, deadline and memory cap, instantiates from
//! the pooling allocator and makes one guest call.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use serde_json::{Map, Value as Json};
use wasmtime::Store;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi::WasiCtxBuilder;

use crate::bindings::types::{self, Metadata, Row};
use crate::bindings::{extractor, scorer};
use crate::cache::{self, ComponentCache};
use crate::engine::HostEngine;
use crate::error::{CallError, LoadError};
use crate::host::HostState;
use crate::layout::Layout;
use crate::limits::Limits;
use crate::manifest::{Manifest, World};
use crate::snapshot::{self, InitInput};
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

enum Pre {
    Scorer(scorer::ScorerPluginPre<HostState>),
    Extractor(extractor::ExtractorPluginPre<HostState>),
}

/// A plugin version ready to serve. Cheap to share behind an `Arc`; calls on it
/// never block each other.
pub struct PluginVersion {
    manifest: Manifest,
    limits: Limits,
    metadata: Metadata,
    content_hash: String,
    inputs: Layout,
    outputs: Layout,
    pre: Pre,
    engine: Arc<HostEngine>,
    label: Arc<str>,
    from_cache: bool,
}

impl std::fmt::Debug for PluginVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginVersion")
            .field("plugin", &self.label)
            .field("hash", &self.content_hash)
            .finish()
    }
}

fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LoadError {
    let path = path.into();
    move |source| LoadError::Io { path, source }
}

impl PluginVersion {
    /// Loads the plugin directory `dir` (manifest, component, model dir), reading
    /// through a cap-std `Dir` so nothing outside it is reachable.
    pub fn load(
        engine: &Arc<HostEngine>,
        linker: &Linker<HostState>,
        dir: &Path,
        cache: Option<&ComponentCache>,
    ) -> Result<Self, LoadError> {
        let root = Dir::open_ambient_dir(dir, ambient_authority()).map_err(io(dir))?;
        let manifest_path = dir.join("plugin.toml");
        let text = root.read_to_string("plugin.toml").map_err(io(&manifest_path))?;
        let manifest =
            Manifest::parse(&text).map_err(|message| LoadError::Manifest { path: manifest_path, message })?;
        let component_path = dir.join(&manifest.component);
        let wasm = root.read(&manifest.component).map_err(io(&component_path))?;
        let model_dir = match &manifest.model_dir {
            Some(d) => {
                // Opened through the plugin's Dir: a symlink or path escaping it fails here.
                root.open_dir(d).map_err(io(dir.join(d)))?;
                Some(dir.join(d))
            }
            None => None,
        };
        let config = manifest.config_entries();
        let limits = manifest.limits();
        let label: Arc<str> = format!("{}@{}", manifest.name, manifest.version).into();

        let key = cache::key(engine.engine(), manifest.world, &wasm, &config, model_dir.as_deref())
            .map_err(io(dir))?;
        let cached = cache.and_then(|c| c.get(engine.engine(), &key));
        let from_cache = cached.is_some();
        let component = match cached {
            Some(component) => component,
            None => {
                check_component(&wasm, &component_path)?;
                let input = InitInput {
                    plugin: label.clone(),
                    world: manifest.world,
                    config: &config,
                    model_dir: model_dir.as_deref(),
                    memory_limit: limits.memory_bytes,
                };
                let snapshot = snapshot::preinitialize(engine, linker, &wasm, &input)?;
                let component = Component::new(engine.engine(), &snapshot)
                    .map_err(|e| LoadError::engine("compiling the initialised component", e))?;
                if let Some(cache) = cache
                    && let Err(e) = cache.put(&key, &component)
                {
                    tracing::warn!(plugin = &*label, "cannot write the compiled cache: {e}");
                }
                component
            }
        };

        // Cheap, and keeps the message that names both worlds even on a cache hit.
        crate::host::check_exports(engine.engine(), &component, manifest.world)?;
        let instance_pre = linker.instantiate_pre(&component).map_err(|e| wrong_world(manifest.world, e))?;
        let pre = match manifest.world {
            World::Scorer => Pre::Scorer(
                scorer::ScorerPluginPre::new(instance_pre).map_err(|e| wrong_world(manifest.world, e))?,
            ),
            World::Extractor => Pre::Extractor(
                extractor::ExtractorPluginPre::new(instance_pre)
                    .map_err(|e| wrong_world(manifest.world, e))?,
            ),
        };
        let mut version = PluginVersion {
            content_hash: cache::content_hash(&wasm),
            inputs: Layout::new(&[], false).expect("empty layout"),
            outputs: Layout::new(&[], false).expect("empty layout"),
            metadata: Metadata {
                name: String::new(),
                version: String::new(),
                description: String::new(),
                inputs: Vec::new(),
                outputs: Vec::new(),
                open_inputs: false,
            },
            manifest,
            limits,
            pre,
            engine: engine.clone(),
            label,
            from_cache,
        };
        version.metadata = version.fetch_metadata()?;
        version.inputs = Layout::new(&version.metadata.inputs, version.metadata.open_inputs)
            .map_err(|m| LoadError::Metadata(format!("inputs: {m}")))?;
        version.outputs = Layout::new(&version.metadata.outputs, false)
            .map_err(|m| LoadError::Metadata(format!("outputs: {m}")))?;
        Ok(version)
    }

    fn fetch_metadata(&self) -> Result<Metadata, LoadError> {
        let meta = self
            .call(self.limits, |store, pre| match pre {
                Pre::Scorer(p) => p.instantiate(&mut *store)?.scorehost_plugin_scorer().call_describe(store),
                Pre::Extractor(p) => {
                    p.instantiate(&mut *store)?.scorehost_plugin_extractor().call_describe(store)
                }
            })
            .map_err(|e| LoadError::Metadata(format!("calling describe() failed: {e}")))?
            .value;
        let m = &self.manifest;
        if meta.name != m.name || meta.version != m.version {
            return Err(LoadError::Metadata(format!(
                "the plugin says it is {}@{}, the manifest says {}@{}",
                meta.name, meta.version, m.name, m.version
            )));
        }
        Ok(meta)
    }

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
        &self.label
    }

    /// Runs `f` in a fresh store and instance under `limits`.
    fn call<R>(
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

    fn scorer_pre(&self) -> Result<&scorer::ScorerPluginPre<HostState>, CallError> {
        match &self.pre {
            Pre::Scorer(p) => Ok(p),
            Pre::Extractor(_) => Err(CallError::Unsupported {
                message: format!("`{}` is an extractor; call extract, not score", self.manifest.name),
            }),
        }
    }

    fn extractor_pre(&self) -> Result<&extractor::ExtractorPluginPre<HostState>, CallError> {
        match &self.pre {
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
        let out = self.call(self.limits.tightened(deadline), |store, _| {
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
        let out = self.call(self.limits.tightened(deadline), |store, _| {
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
            self.call(self.limits.tightened(deadline), |store, _| run(store, &good))?
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

fn wrong_world(world: World, e: wasmtime::Error) -> LoadError {
    LoadError::WrongWorld { world: world.as_str().into(), message: format!("{e:#}") }
}

/// Rejects bytes that are not a component before handing them to wizer, with
/// a message that says what the file is instead.
fn check_component(wasm: &[u8], path: &Path) -> Result<(), LoadError> {
    let invalid = |message: String| LoadError::InvalidComponent { path: path.to_owned(), message };
    if !wasm.starts_with(b"\0asm") {
        return Err(invalid("the file does not start with the wasm magic bytes".into()));
    }
    if wasm.get(4..8) == Some(&[1, 0, 0, 0]) {
        return Err(invalid("this is a core wasm module, not a component (build for wasm32-wasip2)".into()));
    }
    let mut validator = wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all());
    validator.validate_all(wasm).map(|_| ()).map_err(|e| invalid(e.to_string()))
}
