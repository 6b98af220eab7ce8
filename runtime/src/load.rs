//! Loading a plugin version, once, off the request path: manifest → component
//! → import and world checks → `init` + snapshot (or the compiled cache) →
//! `InstancePre` → `describe()` → name → slot layouts.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use wasmtime::component::Component;

use crate::bindings::types::Metadata;
use crate::breaker::Guard;
use crate::cache::{self, ComponentCache};
use crate::engine::HostEngine;
use crate::error::LoadError;
use crate::host::Linkers;
use crate::instances::{Instances, Pre};
use crate::layout::Layout;
use crate::limits::Limits;
use crate::manifest::{Manifest, World};
use crate::plugin::PluginVersion;
use crate::snapshot::{self, InitInput};

fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LoadError {
    let path = path.into();
    move |cause| LoadError::Io { path, cause }
}

impl PluginVersion {
    /// Loads the plugin directory `dir` (manifest, component, model dir), reading
    /// through a cap-std `Dir` so nothing outside it is reachable.
    pub fn load(
        engine: &Arc<HostEngine>,
        linkers: &Linkers,
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
                let snapshot = snapshot::preinitialize(engine, &linkers.init, &wasm, &input)?;
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
        let instance_pre =
            linkers.call.instantiate_pre(&component).map_err(|e| wrong_world(manifest.world, e))?;
        let pre = Pre::new(instance_pre, manifest.world).map_err(|e| wrong_world(manifest.world, e))?;
        let instances = Instances::new(engine.clone(), pre, label, limits.memory_bytes, manifest.instances);
        instances
            .check_exports(limits)
            .map_err(|message| LoadError::WrongWorld { world: manifest.world.as_str().into(), message })?;
        let metadata = describe(&instances, limits, &manifest)?;
        let inputs = Layout::new(&metadata.inputs, metadata.open_inputs)
            .map_err(|m| LoadError::Metadata(format!("inputs: {m}")))?
            .with_policy(&manifest.inputs);
        let outputs = Layout::new(&metadata.outputs, false)
            .map_err(|m| LoadError::Metadata(format!("outputs: {m}")))?;
        Ok(PluginVersion {
            name: manifest.name.as_str().into(),
            guard: Guard::new(manifest.breaker, manifest.limits.max_in_flight),
            content_hash: cache::content_hash(&wasm),
            manifest,
            limits,
            metadata,
            inputs,
            outputs,
            instances,
            from_cache,
        })
    }
}

/// Calls `describe()` once and checks it against the manifest.
fn describe(instances: &Instances, limits: Limits, manifest: &Manifest) -> Result<Metadata, LoadError> {
    let meta = instances
        .describe(limits)
        .map_err(|e| LoadError::Metadata(format!("calling describe() failed: {e}")))?;
    if meta.name != manifest.name || !same_code_version(&manifest.version, &meta.version) {
        return Err(LoadError::Metadata(format!(
            "the plugin says it is {}@{}, the manifest says {}@{} (a manifest version may add \
             `+build` metadata to the plugin's, e.g. {}+model.2, for a new model with the same code)",
            meta.name, meta.version, manifest.name, manifest.version, meta.version
        )));
    }
    Ok(meta)
}

/// Whether the manifest's version is the plugin's own, optionally with semver
/// build metadata (`0.1.0+model.2` deploys code `0.1.0` with another model).
fn same_code_version(manifest: &str, plugin: &str) -> bool {
    manifest == plugin
        || manifest.strip_prefix(plugin).is_some_and(|rest| rest.len() > 1 && rest.starts_with('+'))
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
