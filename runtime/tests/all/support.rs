//! Shared fixtures: one runtime per test binary, and plugin directories that
//! tests can copy and edit.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use scorehost::cache::ComponentCache;
use scorehost::{PluginVersion, PoolSize, Runtime};
use serde_json::{Map, Value};

/// The runtime every test shares (one engine, as in production), with a
/// compiled cache private to this test run.
pub fn runtime() -> &'static Runtime {
    static RT: OnceLock<(Runtime, tempfile::TempDir)> = OnceLock::new();
    &RT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let cache = ComponentCache::new(dir.path().join("cache")).unwrap();
        (Runtime::new(PoolSize { instances: 64 }, Some(cache)).unwrap(), dir)
    })
    .0
}

/// The staged directory of the bundled plugin `name`.
pub fn staged(name: &str) -> PathBuf {
    let (_, dir) = scorehost_plugin_artifacts::ALL.iter().find(|(n, _)| *n == name).expect("known plugin");
    PathBuf::from(dir)
}

/// Loads the bundled plugin `name`.
pub fn load(name: &str) -> PluginVersion {
    runtime().load(&staged(name)).unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

/// A private copy of the bundled plugin `name` whose manifest `edit` rewrites.
pub fn copy_with(name: &str, edit: impl FnOnce(String) -> String) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&staged(name), tmp.path());
    let manifest = tmp.path().join("plugin.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, edit(text)).unwrap();
    tmp
}

/// Copies the directory tree `from` to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// A JSON object literal as a feature map.
pub fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}
