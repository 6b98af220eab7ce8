//! The Redis state backend against a real `redis-server` (Debian's; `.ci/run`
//! installs it): the velocity plugin's counts shared by two stores (two
//! replicas), kept across a Redis restart, and the faults — Redis frozen
//! (SIGSTOP), stopped, or not started yet — each answered within the call's
//! deadline with the plugin's defaults (`state_ok = false` and the error's
//! kind), nothing hanging, and counting resuming once Redis is back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use scorehost::PluginVersion;
use scorehost::state::backend::{self, Access, Backend};
use scorehost::state::redis::RedisStore;
use serde_json::{Map, Value, json};

use crate::servers::redis;
use crate::support::{load, obj};

/// The manifest deadline of `velocity`, and slack for a busy 2-core machine.
const DEADLINE: Duration = Duration::from_millis(50);
const SLACK: Duration = Duration::from_millis(150);

fn event(id: &str, card: &str) -> Map<String, Value> {
    obj(json!({"event_id": id, "card": card, "amount": 10, "currency": "USD", "email": "pat@example.com"}))
}

async fn velocity() -> Arc<PluginVersion> {
    // Loading runs init through synchronous bindings: not on an async worker.
    Arc::new(tokio::task::spawn_blocking(|| load("velocity")).await.unwrap())
}

fn store(url: &str) -> Backend {
    store_waiting(url, Duration::from_millis(10))
}

/// A store that waits up to `timeout` per exchange (at most the call's
/// deadline less a margin, whatever this says).
fn store_waiting(url: &str, timeout: Duration) -> Backend {
    Backend::Redis(Arc::new(RedisStore::connect(url, "t:", timeout).unwrap()))
}

/// Calls until `b` answers (its connection made and the script loaded), on a
/// card and e-mail of its own: the counting tests check counts, not the first connect's
/// latency on a busy machine.
async fn ready(v: &PluginVersion, b: &Backend) {
    let deadline = Instant::now() + Duration::from_secs(10);
    for i in 0.. {
        let warm =
            obj(json!({"event_id": format!("warm-{i}"), "card": "warm", "amount": 1, "currency": "USD",
                              "email": "warm@example.com"}));
        let (out, _) = call(v, b, &warm).await;
        if out["state_ok"] == json!(true) {
            return;
        }
        assert!(Instant::now() < deadline, "Redis never answered: {out:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One live call: its features, and how long it took.
async fn call(v: &PluginVersion, b: &Backend, e: &Map<String, Value>) -> (Map<String, Value>, Duration) {
    let started = Instant::now();
    let out = backend::scope(Access::Live(b.clone()), v.extract_async(e, None)).await.unwrap().value;
    (out, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_counts_and_a_restart_keeps_them() {
    let Some(mut redis) = redis() else { return };
    redis.start();
    let v = velocity().await;
    // Counts, not latency: patient stores, connected before anything is asserted.
    let patient = Duration::from_secs(1);
    let (a, b) = (store_waiting(&redis.url(), patient), store_waiting(&redis.url(), patient));
    ready(&v, &a).await;
    ready(&v, &b).await;
    for i in 0..3 {
        let on = if i % 2 == 0 { &a } else { &b };
        let (out, _) = call(&v, on, &event(&format!("e{i}"), "c1")).await;
        assert_eq!(out["card_count_10m"], json!(i + 1), "{out:?}");
    }
    let (retry, _) = call(&v, &b, &event("e0", "c1")).await;
    assert_eq!(
        (retry["state_status"].clone(), retry["card_count_1h"].clone()),
        (json!("duplicate"), json!(3))
    );
    // Restarted on its AOF: the counts are there, and the script is loaded again (NOSCRIPT).
    redis.stop();
    redis.start();
    let mut out = Map::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while out.get("state_ok") != Some(&json!(true)) {
        assert!(Instant::now() < deadline, "counting did not resume after the restart: {out:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        out = call(&v, &a, &event("e3", "c1")).await.0;
    }
    assert_eq!(
        (out["card_count_24h"].clone(), out["email_distinct_cards_24h"].clone()),
        (json!(4), json!(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_times_calls_out_within_their_deadline_and_retries_count_once() {
    let Some(mut redis) = redis() else { return };
    redis.start();
    let v = velocity().await;
    let b = store(&redis.url());
    call(&v, &b, &event("f0", "c2")).await;
    redis.pause();
    let mut sent = vec!["f0".to_owned()];
    for i in 1..=5 {
        let id = format!("f{i}");
        let (out, took) = call(&v, &b, &event(&id, "c2")).await;
        assert_eq!(out["state_ok"], json!(false), "{out:?}");
        let kind = out["state_status"].as_str().unwrap().to_owned();
        assert!(kind == "timeout" || kind == "unavailable", "{out:?}");
        assert!(took < DEADLINE + SLACK, "a call took {took:?} with Redis frozen");
        sent.push(id);
    }
    redis.resume();
    // A timed-out exchange may still have been applied once Redis woke up:
    // clients retry with the same event id, and every payment counts once.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut counts = Vec::new();
    for id in &sent {
        loop {
            let (out, _) = call(&v, &b, &event(id, "c2")).await;
            if out["state_ok"] == json!(true) {
                counts.push(out["card_count_10m"].clone());
                break;
            }
            assert!(Instant::now() < deadline, "counting did not resume: {out:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(counts.last(), Some(&json!(6)), "six payments, each once: {counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_calls_fail_fast_and_counting_starts_when_it_comes_up() {
    let Some(mut redis) = redis() else { return };
    // Not started: the store connects lazily, as `serve --state redis://…` does.
    let v = velocity().await;
    let b = store(&redis.url());
    for i in 0..20 {
        let (out, took) = call(&v, &b, &event(&format!("d{i}"), "c3")).await;
        assert_eq!(
            (out["state_ok"].clone(), out["state_status"].clone()),
            (json!(false), json!("unavailable"))
        );
        assert!(took < DEADLINE + SLACK, "call {i} took {took:?} with Redis down");
    }
    redis.start();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (out, _) = call(&v, &b, &event("up", "c3")).await;
        if out["state_ok"] == json!(true) {
            assert_eq!(out["card_count_10m"], json!(1), "nothing was counted while down: {out:?}");
            break;
        }
        assert!(Instant::now() < deadline, "counting did not start: {out:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Stopped while serving: unavailable at once, then counting again after a restart.
    redis.stop();
    let (out, took) = call(&v, &b, &event("gone", "c3")).await;
    assert_eq!(out["state_ok"], json!(false), "{out:?}");
    assert!(took < DEADLINE + SLACK, "{took:?}");
}
