//! Python plugins (componentize-py, guest-sdk/python): they load without any
//! new grant and answer what their Rust twins answer. Built by
//! plugins/artifacts when componentize-py is installed; skipped with a message
//! when it is not, except under CI (`.ci/run` installs it), where a missing
//! Python plugin fails.

use serde_json::{Value, json};

use crate::examples::logreg_features;
use crate::support::{obj, runtime};

/// The staged Python plugin `name`, or None (with a message) when
/// componentize-py was not there to build it; under CI that is a failure.
pub(crate) fn python_plugin(name: &str) -> Option<std::path::PathBuf> {
    match scorehost_plugin_artifacts::find(name) {
        Some(dir) => Some(dir),
        None if std::env::var_os("CI").is_some() => {
            panic!("{name} was not built under CI: {}", scorehost_plugin_artifacts::PYTHON_SKIPPED)
        }
        None => {
            eprintln!("skipped: {}", scorehost_plugin_artifacts::PYTHON_SKIPPED);
            None
        }
    }
}

/// Rows around logreg's example: every feature moved, some missing.
fn rows() -> Vec<Value> {
    let mut rows = vec![logreg_features(), json!({"amount_usd_log": 2.0, "cross_border": false})];
    for i in 0..8 {
        let mut f = logreg_features();
        f["amount_usd_log"] = json!(1.5 * f64::from(i));
        f["email_local_digits"] = json!(i);
        f["is_night"] = json!(i % 2 == 0);
        if i % 3 == 0 {
            f.as_object_mut().unwrap().remove("mcc_high_risk");
        }
        rows.push(f);
    }
    rows
}

#[test]
fn python_logreg_answers_what_rust_logreg_answers_alone_in_batches_and_in_frames() {
    let Some(dir) = python_plugin("logreg-py") else { return };
    let py = runtime().load(&dir).unwrap();
    let rust = crate::support::load("logreg");
    assert!(py.batches_as_frames(), "the SDK exports frame-scorer");
    let rows: Vec<_> = rows().into_iter().map(obj).collect();
    for row in &rows {
        let (p, r) = (py.score(row, None).unwrap().value, rust.score(row, None).unwrap().value);
        assert_eq!(p, r, "{row:?}");
    }
    let (p, r) = (py.score_batch(&rows, None).unwrap().value, rust.score_batch(&rows, None).unwrap().value);
    assert_eq!(p, r);
    // A wrong kind is the caller's error, before the plugin runs, for both.
    let bad = obj(json!({"amount_usd_log": "lots"}));
    assert_eq!(py.score(&bad, None).unwrap_err().kind(), rust.score(&bad, None).unwrap_err().kind());
    // Its golden vectors are logreg's: the gate passes them.
    let vectors = scorehost::control::golden::read(&dir, scorehost::World::Scorer).unwrap();
    let report = scorehost::control::golden::check(&py, &vectors);
    assert!(report.vectors.iter().all(|v| v.failure.is_none()), "{:?}", report.vectors);
}

#[test]
fn the_python_sdk_and_plugins_pass_their_native_pytest_suites() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut dirs = vec!["guest-sdk/python".to_owned()];
    for entry in std::fs::read_dir(root.join("plugins")).unwrap() {
        let dir = entry.unwrap().path();
        if dir.join("app.py").is_file() {
            dirs.push(format!("plugins/{}", dir.file_name().unwrap().to_string_lossy()));
        }
    }
    let out = std::process::Command::new("python3")
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .args(&dirs)
        .current_dir(&root)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output();
    let out = match out {
        Ok(out) if String::from_utf8_lossy(&out.stderr).contains("No module named pytest") => None,
        Ok(out) => Some(out),
        Err(_) => None,
    };
    let Some(out) = out else {
        assert!(std::env::var_os("CI").is_none(), "python3 with pytest is required under CI");
        eprintln!(
            "skipped: python3 -m pytest is not available (pip install -r guest-sdk/python/requirements.txt)"
        );
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pytest {dirs:?} failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(" passed"), "{text}");
}
