//! The hostile plugin suite over HTTP, in-process: every hostile plugin in
//! `plugins/` is contained with its exact error kind and status, the host
//! keeps scoring a healthy plugin after each, and the circuit breaker and the
//! fallback policy do what the manifest says.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use scorehost::PluginVersion;
use scorehost::http::{App, ServerConfig};
use scorehost::serving::pipeline::Pipelines;
use scorehost::serving::registry::Registry;
use serde_json::json;

use crate::admin::{admin_req, server, tar_of};
use crate::http::{Reply, get, logreg_body, post, send};
use crate::support::{copy_with, http_import_plugin, runtime};

/// A server over `versions`, built off the async workers (loading runs `init`).
pub(crate) fn app_of(load: impl FnOnce() -> Vec<PluginVersion> + Send) -> Arc<App> {
    let versions = std::thread::scope(|s| s.spawn(load).join().unwrap());
    App::new(Arc::new(Registry::new(versions)), Pipelines::default(), ServerConfig::default())
}

fn load_all(names: &[&str]) -> Vec<PluginVersion> {
    names.iter().map(|n| crate::support::load(n)).collect()
}

fn assert_error(r: &Reply, status: StatusCode, kind: &str) {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(r.json["error"]["kind"], kind, "{}", r.text);
}

async fn score(app: &Arc<App>, plugin: &str, features: serde_json::Value) -> Reply {
    send(app, post(&format!("/v1/plugins/{plugin}/score"), json!({ "features": features }).to_string())).await
}

async fn healthy(app: &Arc<App>) {
    let r = send(app, post("/v1/plugins/logreg/score", logreg_body().to_string())).await;
    assert_eq!(r.status, StatusCode::OK, "logreg after a hostile call: {}", r.text);
    assert_eq!(send(app, get("/healthz")).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_call_is_contained_with_its_kind_and_status() {
    // hostile-output faults on six calls in a row here; its breaker would
    // (rightly) quarantine it after five, so this copy's allows more.
    let output = copy_with("hostile-output", |m| format!("{m}\n[breaker]\nconsecutive_faults = 100\n"));
    let output_dir = output.path().to_owned();
    let app = app_of(move || {
        let mut v =
            load_all(&["logreg", "hostile-loop", "hostile-deadline", "hostile-alloc", "hostile-recursion"]);
        v.extend(load_all(&["hostile-panic", "slow"]));
        v.push(runtime().load(&output_dir).unwrap());
        v
    });
    let cases: &[(&str, serde_json::Value, StatusCode, &str)] = &[
        ("hostile-loop", json!({}), StatusCode::INTERNAL_SERVER_ERROR, "out_of_fuel"),
        ("hostile-deadline", json!({}), StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded"),
        ("hostile-alloc", json!({}), StatusCode::INTERNAL_SERVER_ERROR, "memory_limit"),
        ("hostile-recursion", json!({}), StatusCode::INTERNAL_SERVER_ERROR, "stack_overflow"),
        ("hostile-panic", json!({}), StatusCode::INTERNAL_SERVER_ERROR, "guest_trap"),
        ("hostile-output", json!({"mode": "huge"}), StatusCode::INTERNAL_SERVER_ERROR, "invalid_output"),
        ("hostile-output", json!({"mode": "long-code"}), StatusCode::INTERNAL_SERVER_ERROR, "invalid_output"),
        ("hostile-output", json!({"mode": "nan"}), StatusCode::INTERNAL_SERVER_ERROR, "invalid_output"),
        ("hostile-output", json!({"mode": "inf"}), StatusCode::INTERNAL_SERVER_ERROR, "invalid_output"),
        ("hostile-output", json!({"mode": "-inf"}), StatusCode::INTERNAL_SERVER_ERROR, "invalid_output"),
        (
            "hostile-output",
            json!({"mode": "nan-weight"}),
            StatusCode::INTERNAL_SERVER_ERROR,
            "invalid_output",
        ),
        ("slow", json!({"sleep_ms": 60_000}), StatusCode::INTERNAL_SERVER_ERROR, "guest_trap"),
    ];
    for (plugin, features, status, kind) in cases {
        let r = score(&app, plugin, features.clone()).await;
        assert_error(&r, *status, kind);
        healthy(&app).await;
    }
    // The caps name themselves.
    let r = score(&app, "hostile-output", json!({"mode": "huge"})).await;
    assert!(r.json["error"]["message"].as_str().unwrap().contains("200000 reasons"), "{}", r.text);
    // And hostile-output's valid answer goes through.
    assert_eq!(score(&app, "hostile-output", json!({"mode": "fine"})).await.status, StatusCode::OK);
    // A hostile batch fails as a whole call, with the same kind.
    let r = send(&app, post("/v1/plugins/hostile-panic/score", r#"{"instances": [{}, {}]}"#)).await;
    assert_error(&r, StatusCode::INTERNAL_SERVER_ERROR, "guest_trap");
    healthy(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_components_are_refused_at_the_gate_naming_why() {
    let store = tempfile::tempdir().unwrap();
    let app = server(store.path());
    let upload = |dir: &std::path::Path, name: &str| {
        admin_req("PUT", &format!("/admin/v1/plugins/{name}/versions/0.1.0"), tar_of(dir))
    };
    let init_trap = copy_with("hostile-panic", |m| format!("{m}\n[config]\npanic_in_init = true\n"));
    let not_wasm = copy_with("logreg", |m| m);
    std::fs::write(not_wasm.path().join("logreg.wasm"), "#!/bin/sh\necho not wasm\n").unwrap();
    let http_dir = http_import_plugin();
    let truncated = copy_with("logreg", |m| m);
    let bytes = std::fs::read(truncated.path().join("logreg.wasm")).unwrap();
    std::fs::write(truncated.path().join("logreg.wasm"), &bytes[..bytes.len() / 2]).unwrap();
    let cases: [(&std::path::Path, &str, &str); 4] = [
        (init_trap.path(), "hostile-panic", "panicking in init"),
        (http_dir.path(), "phone", "wasi:http/outgoing-handler"),
        (not_wasm.path(), "logreg", "not a valid WebAssembly component"),
        (truncated.path(), "logreg", "not a valid WebAssembly component"),
    ];
    for (dir, name, why) in cases {
        let r = send(&app, upload(dir, name)).await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "gate_failed");
        assert!(r.text.contains(why), "{name}: {why:?} not in {}", r.text);
        // Nothing of the refused version stays behind, and the server is fine.
        assert_eq!(send(&app, get(&format!("/v1/plugins/{name}"))).await.status, StatusCode::NOT_FOUND);
        assert_eq!(send(&app, get("/healthz")).await.status, StatusCode::OK);
    }
    // The same checks, loading directly: the typed load errors.
    let e = runtime().load(not_wasm.path()).unwrap_err();
    assert!(matches!(e, scorehost::LoadError::InvalidComponent { .. }), "{e}");
    let e = runtime().load(http_dir.path()).unwrap_err();
    assert!(matches!(e, scorehost::LoadError::UngrantedImport { .. }), "{e}");
}

/// `slow` with a 100 ms deadline and a breaker that trips after 4 calls and
/// quarantines for `backoff_ms`; `extra` is appended to the manifest.
fn slow_with_breaker(backoff_ms: u64, extra: &str) -> tempfile::TempDir {
    copy_with("slow", |m| {
        format!(
            "{}\n[breaker]\nmin_calls = 4\nfault_rate = 0.5\nbackoff_ms = {backoff_ms}\nmax_backoff_ms = {}\n{extra}",
            m.replace("deadline_ms = 5000", "deadline_ms = 100"),
            backoff_ms * 4
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_quarantines_probes_and_restores() {
    let dir = slow_with_breaker(400, "");
    let path = dir.path().to_owned();
    let app = app_of(move || vec![runtime().load(&path).unwrap(), crate::support::load("logreg")]);
    for _ in 0..4 {
        assert_error(
            &score(&app, "slow", json!({"ms": 1000})).await,
            StatusCode::GATEWAY_TIMEOUT,
            "deadline_exceeded",
        );
    }
    // Quarantined: refused at once, even a call that would succeed.
    let r = score(&app, "slow", json!({"ms": 1})).await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "plugin_quarantined");
    assert_eq!(r.headers["retry-after"], "1", "{:?}", r.headers);
    let d = send(&app, get("/v1/plugins/slow")).await;
    assert_eq!(d.json["health"]["state"], "quarantined", "{}", d.text);
    assert_eq!(d.json["health"]["quarantines"], 1, "{}", d.text);
    let m = send(&app, get("/metrics")).await.text;
    assert!(
        m.contains(r#"scorehost_plugin_quarantined{plugin="slow",version="0.1.0",role="live"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"scorehost_plugin_quarantined{plugin="logreg",version="0.1.0",role="live"} 0"#),
        "{m}"
    );
    // Other plugins are untouched.
    healthy(&app).await;

    // After the back-off a probe goes through; it faults, so the quarantine
    // starts again, twice as long.
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_error(
        &score(&app, "slow", json!({"ms": 1000})).await,
        StatusCode::GATEWAY_TIMEOUT,
        "deadline_exceeded",
    );
    let d = send(&app, get("/v1/plugins/slow")).await;
    assert_eq!(d.json["health"]["state"], "quarantined", "{}", d.text);
    assert!(d.json["health"]["retry_after_ms"].as_u64().unwrap() > 450, "{}", d.text);
    // After that one, a probe that completes restores the plugin.
    tokio::time::sleep(Duration::from_millis(850)).await;
    assert_eq!(score(&app, "slow", json!({"ms": 1})).await.status, StatusCode::OK);
    assert_eq!(send(&app, get("/v1/plugins/slow")).await.json["health"]["state"], "ok");
    assert_eq!(score(&app, "slow", json!({"ms": 1})).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_mistakes_never_quarantine_a_plugin() {
    let dir = slow_with_breaker(60_000, "");
    let path = dir.path().to_owned();
    let app = app_of(move || vec![runtime().load(&path).unwrap()]);
    for _ in 0..10 {
        // A deadline the caller tightened, and input the host rejects.
        let mut req = post("/v1/plugins/slow/score", r#"{"features": {"ms": 50}}"#);
        req.headers_mut().insert("x-deadline-ms", "5".parse().unwrap());
        assert_error(&send(&app, req).await, StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded");
        assert_error(
            &score(&app, "slow", json!({"ms": "soon"})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        );
    }
    assert_eq!(score(&app, "slow", json!({"ms": 1})).await.status, StatusCode::OK);
    assert_eq!(send(&app, get("/v1/plugins/slow")).await.json["health"]["quarantines"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_scorer_always_answers_and_says_so() {
    let dir = slow_with_breaker(60_000, "[fallback]\nmode = \"default\"\nscore = 0.02\n");
    let path = dir.path().to_owned();
    let app = app_of(move || vec![runtime().load(&path).unwrap()]);
    // A plugin fault: the declared score, marked, with the error it stands in for.
    let r = score(&app, "slow", json!({"ms": 1000})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["score"], 0.02);
    assert_eq!(r.json["fallback"]["kind"], "deadline_exceeded", "{}", r.text);
    assert_eq!(r.headers["x-scorehost-fallback"], "deadline_exceeded");
    // A normal answer carries no fallback mark.
    let ok = score(&app, "slow", json!({"ms": 1})).await;
    assert_eq!(ok.json["score"], 1.0);
    assert!(ok.json.get("fallback").is_none() && ok.headers.get("x-scorehost-fallback").is_none());
    // The caller's mistake is still the caller's error.
    assert_error(
        &score(&app, "slow", json!({"ms": "x"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );
    // Quarantined: still answered, as a fallback for `plugin_quarantined`.
    for _ in 0..4 {
        score(&app, "slow", json!({"ms": 1000})).await;
    }
    let r = score(&app, "slow", json!({"ms": 1})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["fallback"]["kind"], "plugin_quarantined", "{}", r.text);
    // A batch: rows the host accepted get the fallback; a rejected row keeps its error.
    let r = send(&app, post("/v1/plugins/slow/score", r#"{"instances": [{"ms": 1}, {"ms": "x"}]}"#)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["results"][0]["score"], 0.02, "{}", r.text);
    assert_eq!(r.json["results"][0]["fallback"]["kind"], "plugin_quarantined", "{}", r.text);
    assert_eq!(r.json["results"][1]["error"]["kind"], "invalid_input", "{}", r.text);
    let m = send(&app, get("/metrics")).await.text;
    // 1 + the 2 faults before the 4th call tripped the breaker; then 2 + 1 quarantined.
    assert!(m.contains(r#"scorehost_fallbacks_total{plugin="slow",kind="deadline_exceeded"} 3"#), "{m}");
    assert!(m.contains(r#"scorehost_fallbacks_total{plugin="slow",kind="plugin_quarantined"} 3"#), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_at_its_in_flight_cap_sheds_its_own_calls_only() {
    let dir = copy_with("slow", |m| m.replace("memory_mib = 16", "memory_mib = 16\nmax_in_flight = 2"));
    let path = dir.path().to_owned();
    let app = app_of(move || vec![runtime().load(&path).unwrap(), crate::support::load("logreg")]);
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { score(&app, "slow", json!({"ms": 600})).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_error(&score(&app, "slow", json!({"ms": 1})).await, StatusCode::SERVICE_UNAVAILABLE, "overloaded");
    healthy(&app).await;
    for b in busy {
        assert_eq!(b.await.unwrap().status, StatusCode::OK);
    }
    assert_eq!(score(&app, "slow", json!({"ms": 1})).await.status, StatusCode::OK);
}

#[test]
fn golden_vectors_expecting_faults_never_quarantine_the_version() {
    // Three vectors, each run twice by the gate: six guest traps in a row,
    // past `consecutive_faults = 5`.
    let dir = copy_with("hostile-panic", |m| m);
    let vector =
        |i: u32| json!({"name": format!("panics {i}"), "input": {}, "error": "guest_trap"}).to_string();
    std::fs::write(dir.path().join("tests.jsonl"), format!("{}\n{}\n{}\n", vector(1), vector(2), vector(3)))
        .unwrap();
    let v = runtime().load(dir.path()).unwrap();
    let vectors = scorehost::control::golden::read(dir.path(), scorehost::World::Scorer).unwrap();
    let report = scorehost::control::golden::check(&v, &vectors);
    assert!(report.passed(), "{:?}", report.failures());
    assert_eq!(v.breaker_state(), scorehost::version::breaker::BreakerState::Closed);
    assert_eq!(v.quarantines(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_quarantine_a_healthy_plugin_with_allowed_requests() {
    let dir = slow_with_breaker(60_000, "");
    let path = dir.path().to_owned();
    let app = app_of(move || vec![runtime().load(&path).unwrap()]);
    let quarantines =
        async || send(&app, get("/v1/plugins/slow")).await.json["health"]["quarantines"].clone();

    // Big batches: five rows of 40 ms each is 200 ms of work, twice one
    // call's 100 ms deadline; a batch gets the deadline per row.
    let rows: Vec<_> = (0..5).map(|_| json!({"ms": 40})).collect();
    for _ in 0..5 {
        let r = send(&app, post("/v1/plugins/slow/score", json!({ "instances": rows }).to_string())).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    assert_eq!(quarantines().await, 0);

    // A flood: calls of fixed CPU work, each well inside the deadline alone,
    // 24 at once on two workers. Most wait for a thread past their deadline;
    // those are the host's doing, not the plugin's.
    let work = calibrated_work(&app).await;
    let flood: Vec<_> = (0..24)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { score(&app, "slow", json!({ "work": work })).await })
        })
        .collect();
    let mut late = 0;
    for call in flood {
        let r = call.await.unwrap();
        match r.status {
            StatusCode::OK => {}
            StatusCode::GATEWAY_TIMEOUT => late += 1,
            other => panic!("{other}: {}", r.text),
        }
    }
    assert!(late > 0, "the flood made no call late: it tested nothing");
    assert_eq!(quarantines().await, 0, "{late} late calls quarantined a healthy plugin");
    assert_eq!(score(&app, "slow", json!({"ms": 1})).await.status, StatusCode::OK);
}

/// Millions of `slow` loop iterations that take about 25 ms alone here.
async fn calibrated_work(app: &Arc<App>) -> f64 {
    let mut work = 20.0;
    for _ in 0..4 {
        let started = std::time::Instant::now();
        assert_eq!(score(app, "slow", json!({ "work": work })).await.status, StatusCode::OK);
        let ms = started.elapsed().as_secs_f64() * 1e3;
        if (15.0..40.0).contains(&ms) {
            break;
        }
        work = (work * 25.0 / ms.max(0.5)).clamp(0.1, 2000.0);
    }
    work
}
