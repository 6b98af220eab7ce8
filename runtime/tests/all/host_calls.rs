//! Work a plugin makes the host do is bounded too (`runtime/src/host_budget.rs`):
//! every host function `plugins/hostile-host` can reach is capped in bytes per
//! call, charged to the call's fuel and checked against its wall-clock
//! deadline, so a call ends near its deadline whatever it does, with the kind
//! it ends in. The host keeps serving afterwards.

use std::time::{Duration, Instant};

use scorehost::sandbox::host_budget::{HOST_CALL_FUEL, MAX_RANDOM_BYTES};
use scorehost::{CallError, ErrorKind, PluginVersion};
use serde_json::json;

use crate::support::{copy_with, load, obj, runtime};

/// The manifest deadline of `hostile-host`.
const DEADLINE: Duration = Duration::from_millis(50);
/// Slack over the deadline: the epoch tick (1 ms), one bounded host call, and
/// a busy 2-core test machine. Before the fix, 8 MiB random reads ran to 1.7 s.
const SLACK: Duration = Duration::from_millis(150);

fn call(v: &PluginVersion, mode: &str) -> (Result<u64, CallError>, Duration) {
    let started = Instant::now();
    let r = v.score(&obj(json!({ "mode": mode })), None).map(|o| o.fuel_used);
    (r, started.elapsed())
}

/// `mode` ends in `kind` within the deadline plus slack, and the version
/// still answers a plain call after it.
fn ends_in(v: &PluginVersion, mode: &str, kind: ErrorKind) -> CallError {
    let (r, took) = call(v, mode);
    let e = r.expect_err(mode);
    assert_eq!(e.kind(), kind, "{mode}: {e}");
    assert!(took < DEADLINE + SLACK, "{mode} took {took:?}, deadline {DEADLINE:?}");
    assert!(call(v, "").0.is_ok(), "{mode}: the plugin answers again");
    e
}

#[test]
fn host_call_loops_stop_at_the_wall_clock_deadline() {
    let v = load("hostile-host");
    for mode in ["random-loop", "insecure-loop", "log-loop", "clock-loop"] {
        let e = ends_in(&v, mode, ErrorKind::DeadlineExceeded);
        assert!(matches!(e, CallError::DeadlineExceeded { deadline, .. } if deadline == DEADLINE), "{e:?}");
    }
}

#[test]
fn a_host_call_over_its_byte_cap_traps_naming_the_cap() {
    let v = load("hostile-host");
    let e = ends_in(&v, "random-big", ErrorKind::GuestTrap);
    let message = e.to_string();
    assert!(
        message.contains("get-random-bytes") && message.contains(&MAX_RANDOM_BYTES.to_string()),
        "{message}"
    );
    let e = ends_in(&v, "stdout-loop", ErrorKind::GuestTrap);
    assert!(e.to_string().contains("stdout"), "{e}");
    ends_in(&v, "stderr-loop", ErrorKind::GuestTrap);
    let e = ends_in(&v, "handles", ErrorKind::GuestTrap);
    assert!(e.to_string().contains("resource table"), "{e}");
}

#[test]
fn host_work_is_charged_to_the_calls_fuel() {
    let v = load("hostile-host");
    let (plain, _) = call(&v, "");
    let (random, _) = call(&v, "random-once");
    let (plain, random) = (plain.unwrap(), random.unwrap());
    assert!(
        random >= plain + MAX_RANDOM_BYTES + HOST_CALL_FUEL,
        "64 KiB of random bytes cost {random} fuel, a plain call {plain}"
    );

    // A budget host work alone exceeds: a 1 MiB log line per iteration runs
    // out of fuel long before the deadline.
    let small = copy_with("hostile-host", |m| {
        m.replace("fuel = 10_000_000_000", "fuel = 20_000_000")
            .replace("deadline_ms = 50", "deadline_ms = 5000")
    });
    let v = runtime().load(small.path()).unwrap();
    let (r, took) = call(&v, "log-loop");
    let e = r.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutOfFuel, "{e}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[test]
fn a_huge_plugin_error_message_is_cut_where_it_is_lifted() {
    let v = load("hostile-output");
    let e = v.score(&obj(json!({ "mode": "huge-error" })), None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PluginError, "{e}");
    let message = e.to_string();
    assert!(
        message.len() < scorehost::sandbox::error::MAX_ERROR_MESSAGE_BYTES + 100,
        "{} bytes",
        message.len()
    );
    assert!(
        message.ends_with(&format!("[cut: {} bytes in all]", 50 << 20)),
        "{}",
        &message[message.len() - 60..]
    );
}
