//! Python plugins (componentize-py, guest-sdk/python): they load without any
//! new grant and answer what their Rust twins answer. Built by
//! plugins/artifacts when componentize-py is installed; skipped with a message
//! when it is not, except under CI (`.ci/run` installs it), where a missing
//! Python plugin fails.

use std::time::Duration;

use scorehost::{ErrorKind, PoolSize, Runtime};
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
fn with_more_kept_resident_a_fresh_python_instance_stops_faulting_its_heap_back_in() {
    // A Python call touches ~0.9 MiB of its snapshot (~220 pages); with the
    // default 64 KiB kept resident, every fresh instance faults them back in
    // (docs/performance.md, "Python plugins"). `serve --keep-resident-kib 2048`
    // keeps them resident, reset in place.
    if !crate::instances::kernel_has_pagemap_scan() {
        eprintln!("skipped: this kernel has no PAGEMAP_SCAN, so freed memory is decommitted");
        return;
    }
    let Some(_) = python_plugin("logreg-py") else { return };
    let pool = PoolSize { instances: 4, keep_resident: 2 << 20 };
    let rt = Runtime::new(pool, Some(crate::support::cache())).unwrap();
    let dir =
        crate::support::copy_with("logreg-py", |m| format!("{m}\n[instances]\nfresh_per_call = true\n"));
    let v = rt.load(dir.path()).unwrap();
    let row = obj(logreg_features());
    for _ in 0..5 {
        v.score(&row, None).unwrap();
    }
    let calls = 20;
    let before = crate::instances::thread_minor_faults();
    for _ in 0..calls {
        v.score(&row, None).unwrap();
    }
    let per_call = (crate::instances::thread_minor_faults() - before) as f64 / f64::from(calls);
    assert!(per_call < 20.0, "{per_call:.1} page faults per fresh Python call with 2 MiB kept resident");
}

#[test]
fn the_python_sdk_and_plugins_pass_their_native_pytest_suites() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut dirs = vec!["guest-sdk/python".to_owned()];
    for entry in std::fs::read_dir(root.join("plugins")).unwrap() {
        let dir = entry.unwrap().path();
        let has_tests = std::fs::read_dir(&dir)
            .unwrap()
            .any(|f| f.unwrap().file_name().to_string_lossy().starts_with("test_"));
        if dir.join("app.py").is_file() && has_tests {
            dirs.push(format!("plugins/{}", dir.file_name().unwrap().to_string_lossy()));
        }
    }
    // One pytest per directory: every plugin's module is `app`.
    for dir in &dirs {
        let out = std::process::Command::new("python3")
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
            .current_dir(root.join(dir))
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
            "pytest in {dir} failed:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains(" passed"), "{dir}: {text}");
    }
}

#[test]
fn hostile_python_is_stopped_with_the_usual_kinds_and_the_network_stays_shut() {
    let Some(dir) = python_plugin("hostile-py") else { return };
    let v = runtime().load(&dir).unwrap();
    let call =
        |mode: &str, deadline: Option<Duration>| v.score(&obj(json!({"mode": mode})), deadline).unwrap_err();
    assert_eq!(call("loop", None).kind(), ErrorKind::OutOfFuel);
    // The deadline, on a copy with fuel for ~20 s of looping: whatever the
    // machine's load, fuel cannot end it first.
    let rich =
        crate::support::copy_with("hostile-py", |m| m.replace("fuel = 200_000_000", "fuel = 10_000_000_000"));
    let rich = runtime().load(rich.path()).unwrap();
    let e = rich.score(&obj(json!({"mode": "loop"})), Some(Duration::from_millis(20))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DeadlineExceeded, "{e}");
    assert_eq!(call("memory", None).kind(), ErrorKind::MemoryLimit);
    assert_eq!(call("memory-big", None).kind(), ErrorKind::MemoryLimit);
    // CPython's own limit answers first; lifted, fuel (or the cap) does.
    let e = call("recursion", None);
    assert!(e.kind() == ErrorKind::PluginError && e.to_string().contains("RecursionError"), "{e}");
    let e = call("recursion-unbounded", None);
    assert!(
        matches!(e.kind(), ErrorKind::OutOfFuel | ErrorKind::MemoryLimit | ErrorKind::StackOverflow),
        "{e}"
    );
    // A live listener: a connect that got through would land here.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let e = v.score(&obj(json!({"mode": "socket", "addr": addr})), None).unwrap_err();
    assert!(e.to_string().contains(&format!("connect {addr}: [Errno 2] Permission denied")), "{e}");
    assert_eq!(listener.accept().unwrap_err().kind(), std::io::ErrorKind::WouldBlock, "nothing connected");
    let e = v.score(&obj(json!({"mode": "resolve", "addr": "localhost"})), None).unwrap_err();
    assert!(e.to_string().contains("resolve localhost: [Errno -4]"), "{e}");
    // In a batch (the frame path), a failing row is that row's error only.
    assert!(v.batches_as_frames());
    let rows = [json!({}), json!({"mode": "recursion"}), json!({})].map(obj);
    let out = v.score_batch(&rows, None).unwrap().value;
    assert_eq!(out[0].as_ref().unwrap().score, 0.5);
    let e = out[1].as_ref().unwrap_err();
    assert!(e.kind() == ErrorKind::PluginError && e.to_string().contains("RecursionError"), "{e}");
    assert_eq!(out[2].as_ref().unwrap().score, 0.5);
    // After all of it the plugin answers again, and so does another.
    assert_eq!(v.score(&obj(json!({})), None).unwrap().value.score, 0.5);
    assert!(crate::support::load("logreg").score(&obj(logreg_features()), None).is_ok());
}

#[test]
fn python_txn_features_extracts_what_rust_txn_features_extracts() {
    let Some(dir) = python_plugin("txn-features-py") else { return };
    let py = runtime().load(&dir).unwrap();
    let rust = crate::support::load("txn-features");
    let base = json!({"amount": 120.5, "currency": "eur", "timestamp": 1_764_165_600});
    let mut events = vec![base.clone()];
    for (i, (field, value)) in [
        ("merchant_country", json!("DE")),
        ("card_country", json!("de")),
        ("email", json!("jo42@GMAIL.com")),
        ("email", json!("x@mailinator.com")),
        ("ip", json!("10.0.0.7")),
        ("ip", json!("2001:db8::1")),
        ("ip", json!("fd12::1")),
        ("mcc", json!(7995)),
        ("mcc", json!(5411)),
        ("timestamp", json!(3_600 * 5 + 59)),
    ]
    .into_iter()
    .enumerate()
    {
        let mut e = events[i].clone();
        e[field] = value;
        events.push(e);
    }
    for bad in [
        json!({"amount": -1.0}),
        json!({"currency": "XYZ"}),
        json!({"email": "nobody"}),
        json!({"ip": "1.2.3"}),
    ] {
        let mut e = base.clone();
        e.as_object_mut().unwrap().extend(bad.as_object().unwrap().clone());
        events.push(e);
    }
    for event in events.into_iter().map(obj) {
        match (py.extract(&event, None), rust.extract(&event, None)) {
            (Ok(p), Ok(r)) => assert_eq!(p.value, r.value, "{event:?}"),
            (Err(p), Err(r)) => assert_eq!(p.kind(), r.kind(), "{event:?}: {p} / {r}"),
            (p, r) => panic!("{event:?}: python {p:?}, rust {r:?}"),
        }
    }
    let vectors = scorehost::control::golden::read(&dir, scorehost::World::Extractor).unwrap();
    let report = scorehost::control::golden::check(&py, &vectors);
    assert!(report.vectors.iter().all(|v| v.failure.is_none()), "{:?}", report.vectors);
}
