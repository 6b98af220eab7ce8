//! What the binary's tests share: the staged plugins, a runtime to load them
//! in process, and request bodies.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use scorehost::{PluginVersion, PoolSize, Runtime};
pub use scorehost_plugin_artifacts::staged;
use serde_json::{Map, Value, json};

/// A private copy of the bundled plugin `name` whose manifest `edit` rewrites.
pub fn copy_with(name: &str, edit: impl FnOnce(String) -> String) -> tempfile::TempDir {
    scorehost_plugin_artifacts::copy_with(name, edit).unwrap()
}

/// Loads the bundled plugin `name` on a runtime shared by this test binary.
pub fn load(name: &str) -> PluginVersion {
    static RT: OnceLock<Runtime> = OnceLock::new();
    let runtime =
        RT.get_or_init(|| Runtime::new(PoolSize { instances: 16, ..Default::default() }, None).unwrap());
    runtime.load(&staged(name)).unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

/// A JSON object literal as a feature map.
pub fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

/// A request body the bundled logreg scores.
pub fn logreg_body() -> Value {
    json!({"features": {"amount_usd_log": 6.0, "cross_border": true, "email_domain_free": true,
        "email_domain_disposable": false, "email_local_digits": 3, "is_night": true,
        "mcc_high_risk": false, "ip_private": false}})
}

/// The bundled logreg as version `version` with its intercept moved by
/// `shift`, with golden vectors that match the shifted model.
pub fn logreg_variant(version: &str, shift: f64) -> tempfile::TempDir {
    let dir = copy_with("logreg", |m| m.replace("version = \"0.1.0\"", &format!("version = \"{version}\"")));
    let weights_path = dir.path().join("model/weights.json");
    let mut weights: Value = serde_json::from_str(&std::fs::read_to_string(&weights_path).unwrap()).unwrap();
    let intercept = weights["intercept"].as_f64().unwrap() + shift;
    weights["intercept"] = json!(intercept);
    std::fs::write(&weights_path, weights.to_string()).unwrap();
    let z = intercept + 0.45 * 2.0; // amount_usd_log weight × 2.0; the rest imputed as 0
    let vector = json!({"name": "shifted intercept", "input": {"amount_usd_log": 2.0, "cross_border": false},
        "score": 1.0 / (1.0 + (-z).exp()), "tolerance": 1e-9});
    std::fs::write(dir.path().join("tests.jsonl"), format!("{vector}\n")).unwrap();
    dir
}

/// A server process a test started (a registry, etcd): stopped by PID on
/// drop, SIGTERM first, SIGKILL if it is still running after 5 s.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `binary` on PATH, or `None` with a message saying to install `package`,
/// so a test can skip; under CI (`CI` set), where `.ci/run` installs it, a
/// missing one fails instead.
pub fn installed(binary: &str, package: &str) -> Option<PathBuf> {
    let found =
        std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(binary)).find(|p| p.is_file());
    if found.is_none() {
        assert!(std::env::var_os("CI").is_none(), "{binary} is not installed (.ci/run installs {package})");
        eprintln!("skipped: {binary} is not installed (apt-get install {package})");
    }
    found
}
