//! Shared fixtures: one runtime per test binary, and plugin directories that
//! tests can copy and edit.

use std::path::Path;
use std::sync::OnceLock;

use scorehost::sandbox::cache::ComponentCache;
use scorehost::{PluginVersion, PoolSize, Runtime};
use serde_json::{Map, Value};

/// The runtime every test shares (one engine, as in production), with a
/// compiled cache private to this test run.
pub fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| Runtime::new(PoolSize { instances: 64, ..Default::default() }, Some(cache())).unwrap())
}

/// This test run's compiled cache (what [`runtime`] uses), for a test that
/// needs a runtime of its own without compiling the plugins again.
pub fn cache() -> ComponentCache {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap());
    ComponentCache::new(dir.path().join("cache")).unwrap()
}

pub use scorehost_plugin_artifacts::staged;

/// Loads the bundled plugin `name`.
pub fn load(name: &str) -> PluginVersion {
    runtime().load(&staged(name)).unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

/// A private copy of the bundled plugin `name` whose manifest `edit` rewrites.
pub fn copy_with(name: &str, edit: impl FnOnce(String) -> String) -> tempfile::TempDir {
    scorehost_plugin_artifacts::copy_with(name, edit).unwrap()
}

/// Copies the directory tree `from` to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    scorehost_plugin_artifacts::copy_dir(from, to).unwrap()
}

/// A JSON object literal as a feature map.
pub fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

/// A plugin directory whose component imports `wasi:http/outgoing-handler`,
/// which scorehost never links: its load must fail naming the import. Built
/// here from WAT (a component of one import), not checked in as a binary.
pub fn http_import_plugin() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let component =
        wat::parse_str(r#"(component (import "wasi:http/outgoing-handler@0.2.6" (instance)))"#).unwrap();
    std::fs::write(dir.path().join("phone.wasm"), component).unwrap();
    std::fs::write(
        dir.path().join("plugin.toml"),
        "name = \"phone\"\nversion = \"0.1.0\"\nworld = \"scorer\"\ncomponent = \"phone.wasm\"\n",
    )
    .unwrap();
    dir
}
