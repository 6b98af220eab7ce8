//! Every budget breach is contained and reported as its own kind.

use std::time::{Duration, Instant};

use scorehost::ErrorKind;
use serde_json::json;

use crate::support::{copy_with, load, obj, runtime};

#[test]
fn infinite_loop_runs_out_of_fuel() {
    let v = load("hostile-loop");
    let e = v.score(&obj(json!({})), None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutOfFuel, "{e}");
}

#[test]
fn infinite_loop_hits_the_deadline_when_fuel_is_ample() {
    let dir = copy_with("hostile-loop", |m| {
        m.replace("fuel = 5_000_000", "fuel = 10_000_000_000")
            .replace("deadline_ms = 1000", "deadline_ms = 30")
    });
    let v = runtime().load(dir.path()).unwrap();
    let started = Instant::now();
    let e = v.score(&obj(json!({})), None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DeadlineExceeded, "{e}");
    // Generous bound: the point is that it stops, not how precisely.
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_request_deadline_only_tightens() {
    let dir = copy_with("hostile-loop", |m| {
        m.replace("fuel = 5_000_000", "fuel = 10_000_000_000")
            .replace("deadline_ms = 1000", "deadline_ms = 200")
    });
    let v = runtime().load(dir.path()).unwrap();
    let e = v.score(&obj(json!({})), Some(Duration::from_millis(10))).unwrap_err();
    assert!(
        matches!(e, scorehost::CallError::DeadlineExceeded { deadline, .. } if deadline == Duration::from_millis(10))
    );
    let e = v.score(&obj(json!({})), Some(Duration::from_secs(50))).unwrap_err();
    assert!(
        matches!(e, scorehost::CallError::DeadlineExceeded { deadline, .. } if deadline == Duration::from_millis(200)),
        "{e:?}"
    );
}

#[test]
fn memory_bomb_hits_the_cap() {
    let v = load("hostile-alloc");
    let e = v.score(&obj(json!({})), None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MemoryLimit, "{e}");
    match e {
        scorehost::CallError::MemoryLimit { limit, requested } => {
            assert_eq!(limit, 16 << 20);
            assert!(requested > limit);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unbounded_recursion_is_a_stack_overflow() {
    let e = load("hostile-recursion").score(&obj(json!({})), None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::StackOverflow, "{e}");
}

#[test]
fn panic_is_a_guest_trap_carrying_the_message() {
    let e = load("hostile-panic").score(&obj(json!({})), None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::GuestTrap, "{e}");
    assert!(e.to_string().contains("always panics"), "{e}");
}

#[test]
fn the_host_keeps_serving_after_every_breach() {
    for name in ["hostile-loop", "hostile-alloc", "hostile-recursion", "hostile-panic"] {
        let _ = load(name).score(&obj(json!({})), None).unwrap_err();
    }
    let v = load("logreg");
    let f = json!({"amount_usd_log": 4.0, "cross_border": true, "email_domain_free": false,
        "email_domain_disposable": false, "email_local_digits": 2, "is_night": false,
        "mcc_high_risk": false, "ip_private": false});
    assert!(v.score(&obj(f), None).is_ok());
}

#[test]
fn every_call_reports_fuel_and_time() {
    let v = load("fs-probe");
    let out = v.score(&obj(json!({})), None).unwrap();
    assert!(out.fuel_used > 0 && out.fuel_used < v.limits().fuel);
    assert!(out.elapsed > Duration::ZERO);
}

#[test]
fn an_exhausted_instance_pool_is_overloaded_not_a_crash() {
    // One instance slot: a second concurrent call cannot get one.
    let rt =
        scorehost::Runtime::new(scorehost::PoolSize { instances: 1, ..Default::default() }, None).unwrap();
    let slow = std::sync::Arc::new(rt.load(&crate::support::staged("slow")).unwrap());
    let busy = {
        let slow = slow.clone();
        std::thread::spawn(move || slow.score(&obj(json!({"ms": 500})), None))
    };
    std::thread::sleep(Duration::from_millis(150));
    let e = slow.score(&obj(json!({"ms": 1})), None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Overloaded, "{e}");
    assert!(busy.join().unwrap().is_ok());
    assert!(slow.score(&obj(json!({"ms": 1})), None).is_ok(), "the slot is free again");
}

#[test]
fn sleeping_traps_instead_of_blocking_past_the_deadline() {
    let slow = crate::support::load("slow");
    let started = Instant::now();
    let e = slow.score(&obj(json!({"sleep_ms": 60_000})), None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::GuestTrap, "{e}");
    assert!(e.to_string().contains("may not sleep"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_batch_gets_the_fuel_budget_per_row() {
    // logreg's budget is 2 000 000 per call and a row costs ~2 200 fuel, so a
    // 1000-row batch needs more than one call's budget.
    let v = load("logreg");
    let row = obj(json!({"amount_usd_log": 6.0, "cross_border": true, "email_domain_free": true,
        "email_domain_disposable": false, "email_local_digits": 3, "is_night": true,
        "mcc_high_risk": false, "ip_private": false}));
    let out = v.score_batch(&vec![row; 1000], None).unwrap();
    assert!(out.fuel_used > v.limits().fuel, "fuel used {} is within one call's budget", out.fuel_used);
    assert!(out.value.iter().all(Result::is_ok));

    // Still a budget: a batch of three infinite loops stops at three budgets.
    let e = load("hostile-loop").score_batch(&vec![obj(json!({})); 3], None).unwrap_err();
    assert!(matches!(e, scorehost::CallError::OutOfFuel { budget } if budget == 15_000_000), "{e}");
}

#[test]
fn an_unmetered_runtime_scores_alike_and_reports_no_fuel() {
    // Runtime::unmetered exists for the `budgets/*` benches: same answers,
    // no fuel counted.
    let f = obj(json!({"amount_usd_log": 6.0, "cross_border": true, "email_domain_free": true,
        "email_domain_disposable": false, "email_local_digits": 3, "is_night": true,
        "mcc_high_risk": false, "ip_private": false}));
    let metered = load("logreg").score(&f, None).unwrap();
    let rt =
        scorehost::Runtime::unmetered(scorehost::PoolSize { instances: 4, ..Default::default() }).unwrap();
    let unmetered = rt.load(&crate::support::staged("logreg")).unwrap().score(&f, None).unwrap();
    assert_eq!(metered.value, unmetered.value);
    assert!(metered.fuel_used > 0);
    assert_eq!(unmetered.fuel_used, 0);
}
