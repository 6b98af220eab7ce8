//! Warm instances: a clean call leaves its instance for the next call of the
//! same version; a trap or a budget hit throws it away; `[instances]` in the
//! manifest retires instances after `max_reuse` calls or never reuses them;
//! calls, running on the async workers, yield to other requests while they
//! run; and a fresh instance finds the pages of the last one resident.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use scorehost::ErrorKind;
use scorehost::http::{CallMode, ServerConfig};
use serde_json::json;

use crate::http::{app, get, post, send};
use crate::support::{copy_with, obj, runtime};

fn ms(ms: u64) -> serde_json::Map<String, serde_json::Value> {
    obj(json!({ "ms": ms }))
}

fn slow_with(instances: &str) -> scorehost::PluginVersion {
    let dir = copy_with("slow", |m| format!("{m}\n[instances]\n{instances}\n"));
    runtime().load(dir.path()).unwrap()
}

#[test]
fn sequential_calls_share_one_warm_instance() {
    let v = slow_with("");
    // `describe` at load already left one.
    assert_eq!(v.idle_instances(), 1);
    for _ in 0..5 {
        assert_eq!(v.score(&ms(0), None).unwrap().value.score, 0.0);
        assert_eq!(v.idle_instances(), 1);
    }
}

#[test]
fn plugin_state_lives_exactly_as_long_as_its_instance() {
    // `slow` counts its calls in a global in linear memory.
    let count = || obj(json!({ "count_calls": 1 }));
    let v = slow_with("");
    let seen: Vec<f64> = (0..3).map(|_| v.score(&count(), None).unwrap().value.score).collect();
    assert_eq!(seen, [1.0, 2.0, 3.0], "a warm instance keeps the plugin's own state");
    // A fresh instance per call starts from the snapshot every time, although
    // the pooling allocator hands out the same, reset, memory slot.
    let v = slow_with("fresh_per_call = true");
    for _ in 0..5 {
        assert_eq!(v.score(&count(), None).unwrap().value.score, 1.0);
    }
}

#[test]
fn an_instance_that_failed_is_thrown_away() {
    let v = slow_with("");
    assert_eq!(v.idle_instances(), 1);
    // A trap (the plugin sleeps; the host refuses) takes the warm instance and drops it.
    let e = v.score(&obj(json!({ "sleep_ms": 1 })), None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::GuestTrap, "{e}");
    assert_eq!(v.idle_instances(), 0);
    // So does a deadline hit; the next clean call starts a new instance and keeps it.
    let e = v.score(&ms(200), Some(Duration::from_millis(5))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DeadlineExceeded, "{e}");
    assert_eq!(v.idle_instances(), 0);
    v.score(&ms(0), None).unwrap();
    assert_eq!(v.idle_instances(), 1);
}

#[test]
fn a_plugin_error_keeps_the_instance() {
    // The guest returned normally (a typed error): its instance is as clean as after a score.
    let v = crate::support::load("txn-features");
    let event = json!({"amount": 10, "currency": "XYZ", "timestamp": 0});
    let e = v.extract(&obj(event), None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("no USD rate"), "{e}");
    assert_eq!(v.idle_instances(), 1);
}

#[test]
fn max_reuse_retires_instances_and_fresh_per_call_never_keeps_one() {
    let v = slow_with("max_reuse = 2");
    assert_eq!(v.idle_instances(), 1); // describe: 1 call
    v.score(&ms(0), None).unwrap(); // 2nd call: retired
    assert_eq!(v.idle_instances(), 0);
    v.score(&ms(0), None).unwrap(); // a new instance, 1 call
    assert_eq!(v.idle_instances(), 1);

    let v = slow_with("fresh_per_call = true");
    for _ in 0..3 {
        v.score(&ms(0), None).unwrap();
        assert_eq!(v.idle_instances(), 0);
    }
}

#[test]
fn a_long_call_yields_the_async_worker_to_other_requests() {
    // One async worker thread, one plugin call busy for a second: /healthz is
    // still answered while the call runs, because the call yields at every
    // epoch tick instead of holding the thread.
    let app = app(&["slow"], ServerConfig::default());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let busy = tokio::spawn({
            let app = app.clone();
            async move {
                let r = send(&app, post("/v1/plugins/slow/score", r#"{"features": {"ms": 1000}}"#)).await;
                (r.status, Instant::now())
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let health = send(&app, get("/healthz")).await;
        let answered = Instant::now();
        let (status, finished) = busy.await.unwrap();
        assert_eq!(health.status, StatusCode::OK);
        assert_eq!(status, StatusCode::OK);
        assert!(answered < finished, "/healthz waited for the plugin call to finish");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_blocking_call_mode_serves_the_same_answers() {
    let app = app(&["slow"], ServerConfig { call_mode: CallMode::Blocking, ..ServerConfig::default() });
    let r = send(&app, post("/v1/plugins/slow/score", r#"{"features": {"ms": 1}}"#)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["score"], 1.0);
    let r = send(&app, post("/v1/plugins/slow/score", r#"{"features": {"sleep_ms": 1}}"#)).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text);
}

/// Minor page faults of the calling thread so far.
pub(crate) fn thread_minor_faults() -> i64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid rusage to write to; RUSAGE_THREAD is Linux's.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) }, 0);
    usage.ru_minflt
}

/// Whether the kernel has PAGEMAP_SCAN (Linux 6.7+), with which the pooling
/// allocator resets a freed instance's memory in place.
pub(crate) fn kernel_has_pagemap_scan() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse::<u32>().ok());
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (6, 7)
}

#[test]
fn a_fresh_instance_reuses_the_pages_of_the_last_one() {
    // The pooling allocator resets the pages a call dirtied in place, so the
    // next instance in the slot finds them resident. wasmtime 50.0.1 as
    // published decommitted them instead (runtime/vendor/README.md): ~5 page
    // faults per fresh logreg call, where in-place reset costs ~0.1.
    if !kernel_has_pagemap_scan() {
        eprintln!("skipped: this kernel has no PAGEMAP_SCAN, so freed memory is decommitted");
        return;
    }
    let dir = copy_with("logreg", |m| format!("{m}\n[instances]\nfresh_per_call = true\n"));
    let v = runtime().load(dir.path()).unwrap();
    let row = obj(json!({ "amount_usd_log": 6.0, "cross_border": true }));
    for _ in 0..20 {
        v.score(&row, None).unwrap();
    }
    let calls = 200;
    let before = thread_minor_faults();
    for _ in 0..calls {
        v.score(&row, None).unwrap();
    }
    let per_call = (thread_minor_faults() - before) as f64 / calls as f64;
    assert!(
        per_call < 1.0,
        "{per_call:.2} page faults per fresh call: freed memory is no longer reset in place"
    );
}

#[test]
fn idle_instances_of_other_versions_do_not_starve_the_pool() {
    // A pool of two instance slots: idle instances may hold a quarter of it
    // (one). Before, every loaded version kept its load-time instance idle,
    // and with two versions loaded no call could get a slot.
    let runtime =
        scorehost::Runtime::new(scorehost::PoolSize { instances: 2, ..Default::default() }, None).unwrap();
    let a = runtime.load(&crate::support::staged("logreg")).unwrap();
    let copy = copy_with("logreg", |m| m.replace("version = \"0.1.0\"", "version = \"0.1.0+b\""));
    let b = runtime.load(copy.path()).unwrap();
    assert_eq!(a.idle_instances() + b.idle_instances(), 1, "one idle instance in all");
    let row = obj(crate::examples::logreg_features());
    for _ in 0..3 {
        b.score(&row, None).unwrap();
        a.score(&row, None).unwrap();
    }
    b.release_idle();
    assert_eq!(b.idle_instances(), 0);
}

#[test]
fn a_version_that_stopped_serving_keeps_no_instance_until_it_serves_again() {
    let v = std::sync::Arc::new(crate::support::load("slow"));
    let quick = obj(json!({"ms": 1}));
    v.score(&quick, None).unwrap();
    assert_eq!(v.idle_instances(), 1);
    // A call in flight when the version is replaced (release_idle) drops its
    // instance when it ends, instead of parking it for a version nobody calls.
    let in_flight = {
        let v = v.clone();
        std::thread::spawn(move || v.score(&obj(json!({"ms": 300})), None).map(|o| o.value.score))
    };
    std::thread::sleep(Duration::from_millis(100));
    v.release_idle();
    assert_eq!(in_flight.join().unwrap().unwrap(), 300.0);
    assert_eq!(v.idle_instances(), 0, "the in-flight call's instance was dropped");
    // The next call to start means it serves again: it keeps its instance.
    v.score(&quick, None).unwrap();
    assert_eq!(v.idle_instances(), 1);
}
