//! Loading a plugin version, once, off the request path: manifest → component
//! → import and world checks → `init` + snapshot (or the compiled cache) →
//! `InstancePre` → `describe()` → name → slot layouts.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use wasmtime::component::Component;

use crate::sandbox::bindings::types::Metadata;
use crate::sandbox::cache::{self, ComponentCache};
use crate::sandbox::engine::HostEngine;
use crate::sandbox::error::{LoadError, MetadataError};
use crate::sandbox::host::Linkers;
use crate::sandbox::instances::{Instances, Pre};
use crate::sandbox::limits::Limits;
use crate::sandbox::safe_read;
use crate::sandbox::snapshot::{self, InitInput};
use crate::version::breaker::Guard;
use crate::version::layout::Layout;
use crate::version::manifest::{Manifest, ManifestError};
use crate::version::plugin::PluginVersion;

/// Most bytes `plugin.toml` may hold.
pub const MAX_MANIFEST_BYTES: u64 = 64 << 10;

/// Most bytes a component may hold: 256 MiB, the store's limit on a whole
/// upload (`store::UploadLimits::default().max_bytes`).
pub const MAX_COMPONENT_BYTES: u64 = 256 << 20;

fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LoadError {
    let path = path.into();
    move |cause| LoadError::Io { path, cause }
}

/// Reads the plugin file `name` through the plugin's `Dir` with
/// [`safe_read::read_regular`]: a FIFO, a device, a symlink leading out or a
/// file over `max` is a `LoadError::Io` that names `dir/name` and says why.
fn read_file(root: &Dir, dir: &Path, name: &Path, max: u64) -> Result<Vec<u8>, LoadError> {
    safe_read::read_regular(root, name, max)
        .map_err(|e| LoadError::Io { path: dir.join(name), cause: e.into_io_error() })
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
        let bytes = read_file(&root, dir, Path::new("plugin.toml"), MAX_MANIFEST_BYTES)?;
        let text = String::from_utf8(bytes).map_err(|e| LoadError::Manifest {
            path: manifest_path.clone(),
            error: ManifestError::NotUtf8(e.utf8_error()).into(),
        })?;
        let manifest = Manifest::parse(&text)
            .map_err(|e| LoadError::Manifest { path: manifest_path, error: e.into() })?;
        let component_path = dir.join(&manifest.component);
        let wasm = read_file(&root, dir, Path::new(&manifest.component), MAX_COMPONENT_BYTES)?;
        // Held for the whole load: the path handed on is checked against it.
        let model = match &manifest.model_dir {
            Some(d) => Some(ModelDir::open(&root, dir, d)?),
            None => None,
        };
        let model_dir = model.as_ref().map(|m| m.path.as_path());
        let config = manifest.config_entries();
        let limits = manifest.limits();
        let label: Arc<str> = format!("{}@{}", manifest.name, manifest.version).into();

        let key = cache::key(engine.engine(), manifest.world, &wasm, &config, model_dir).map_err(io(dir))?;
        if let Some(model) = &model {
            model.verify()?;
        }
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
                    model_dir,
                    memory_limit: limits.memory_bytes,
                };
                let snapshot = snapshot::preinitialize(engine, &linkers.init, &wasm, &input)?;
                // A directory swapped in while init read it is not what the key hashed.
                if let Some(model) = &model {
                    model.verify()?;
                }
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
        crate::sandbox::host::check_exports(engine.engine(), &component, manifest.world)?;
        let state = manifest.state().map(Arc::new);
        let instance_pre = linkers
            .call
            .instantiate_pre(&component)
            .map_err(|e| LoadError::wrong_world(manifest.world, e))?;
        let pre =
            Pre::new(instance_pre, manifest.world).map_err(|e| LoadError::wrong_world(manifest.world, e))?;
        let instances =
            Instances::new(engine.clone(), pre, label, limits.memory_bytes, manifest.instances, state);
        instances.check_export_types(limits, manifest.world)?;
        let metadata = describe(&instances, limits, &manifest)?;
        let inputs = Layout::new(&metadata.inputs, metadata.open_inputs)
            .map_err(|e| LoadError::Metadata(MetadataError::Fields { which: "inputs", error: e.into() }))?
            .with_policy(&manifest.inputs);
        let outputs = Layout::new(&metadata.outputs, false)
            .map_err(|e| LoadError::Metadata(MetadataError::Fields { which: "outputs", error: e.into() }))?;
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

/// The model directory: opened through the plugin's `Dir` (so `..` or a
/// symlink leading out of the plugin directory fails), and the path handed on
/// to the cache key and the `/model` preopen, which take a path today. The
/// handle is held for the whole load so that the path can be checked to still
/// name the directory that was opened: a model dir that is itself a symlink,
/// or that is replaced (renamed over) while the plugin loads, is refused
/// rather than followed.
#[derive(Debug)]
struct ModelDir {
    /// The directory as opened through the plugin's `Dir`.
    #[cfg_attr(not(unix), allow(dead_code))]
    handle: Dir,
    /// `<plugin dir>/<model_dir>`.
    path: PathBuf,
}

impl ModelDir {
    /// Opens `rel` (the manifest's `model_dir`) inside the plugin directory
    /// `dir`, opened as `root`, and checks the path against the handle.
    fn open(root: &Dir, dir: &Path, rel: &str) -> Result<Self, LoadError> {
        let path = dir.join(rel);
        let handle = root.open_dir(rel).map_err(|cause| {
            let cause = if safe_read::is_escape(&cause) {
                safe_read::ReadError::Outside { path: rel.into() }.into_io_error()
            } else {
                cause
            };
            LoadError::Io { path: path.clone(), cause }
        })?;
        let model = ModelDir { handle, path };
        model.verify()?;
        Ok(model)
    }

    /// Checks that the path still names the directory that was opened: it is
    /// not a symlink, and (on unix) has the device and inode of the handle.
    fn verify(&self) -> Result<(), LoadError> {
        let refuse = |message: &str| LoadError::Io {
            path: self.path.clone(),
            cause: std::io::Error::new(std::io::ErrorKind::InvalidInput, message),
        };
        let named = std::fs::symlink_metadata(&self.path).map_err(io(&self.path))?;
        if named.file_type().is_symlink() {
            return Err(refuse(
                "the model directory is a symbolic link; model_dir must name a real directory inside \
                 the plugin directory (name the link's target in model_dir instead)",
            ));
        }
        #[cfg(unix)]
        {
            use cap_std::fs::MetadataExt as _;
            use std::os::unix::fs::MetadataExt as _;
            let opened = self.handle.dir_metadata().map_err(io(&self.path))?;
            if (opened.dev(), opened.ino()) != (named.dev(), named.ino()) {
                return Err(refuse(
                    "the model directory was replaced while the plugin loaded (the path no longer names \
                     the directory that was opened); load the plugin again once its directory is settled",
                ));
            }
        }
        Ok(())
    }
}

/// Calls `describe()` once and checks it against the manifest.
fn describe(instances: &Instances, limits: Limits, manifest: &Manifest) -> Result<Metadata, LoadError> {
    let meta = instances.describe(limits).map_err(|e| LoadError::Metadata(MetadataError::Describe(e)))?;
    if meta.name != manifest.name || !same_code_version(&manifest.version, &meta.version) {
        return Err(LoadError::Metadata(MetadataError::NotTheManifests {
            plugin: format!("{}@{}", meta.name, meta.version),
            plugin_version: meta.version.clone(),
            manifest: format!("{}@{}", manifest.name, manifest.version),
        }));
    }
    Ok(meta)
}

/// Whether the manifest's version is the plugin's own, optionally with semver
/// build metadata (`0.1.0+model.2` deploys code `0.1.0` with another model).
fn same_code_version(manifest: &str, plugin: &str) -> bool {
    manifest == plugin
        || manifest.strip_prefix(plugin).is_some_and(|rest| rest.len() > 1 && rest.starts_with('+'))
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

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn plugin_dir() -> (tempfile::TempDir, Dir) {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("model")).unwrap();
        let root = Dir::open_ambient_dir(tmp.path(), ambient_authority()).unwrap();
        (tmp, root)
    }

    #[test]
    fn a_model_dir_replaced_after_it_was_opened_is_refused() {
        let (tmp, root) = plugin_dir();
        let model = ModelDir::open(&root, tmp.path(), "model").unwrap();
        model.verify().unwrap();
        std::fs::rename(tmp.path().join("model"), tmp.path().join("model.old")).unwrap();
        std::fs::create_dir(tmp.path().join("model")).unwrap();
        let e = model.verify().unwrap_err();
        assert!(e.to_string().contains("was replaced while the plugin loaded"), "{e}");
    }

    #[test]
    fn a_model_dir_that_is_a_symlink_is_refused() {
        let (tmp, root) = plugin_dir();
        std::os::unix::fs::symlink("model", tmp.path().join("linked")).unwrap();
        let e = ModelDir::open(&root, tmp.path(), "linked").unwrap_err();
        assert!(matches!(&e, LoadError::Io { path, .. } if path.ends_with("linked")), "{e}");
        assert!(e.to_string().contains("is a symbolic link"), "{e}");
        std::os::unix::fs::symlink("/tmp", tmp.path().join("outside")).unwrap();
        let e = ModelDir::open(&root, tmp.path(), "outside").unwrap_err();
        assert!(e.to_string().contains("leads outside the plugin directory"), "{e}");
        // A real directory under a path inside the plugin directory is fine.
        std::fs::create_dir(tmp.path().join("model/v2")).unwrap();
        ModelDir::open(&root, tmp.path(), "model/v2").unwrap().verify().unwrap();
    }
}
