//! The fleet's desired state against a real etcd (Debian's `etcd-server`) on
//! free loopback ports with a temp data dir, stopped by PID: two operators
//! racing from one revision cannot both write, and `scorehost fleet` stages,
//! refuses to activate what no replica has gated (naming them), activates,
//! rolls back and reports convergence. Built with `--features fleet`;
//! without `etcd` on PATH skipped with a message, except under CI.

use std::process::Command;
use std::time::Duration;

use scorehost::control::fleet::desired::{DesiredState, PluginStatus, ReplicaStatus};
use scorehost::control::fleet::etcd::{EtcdError, FleetStore};
use serde_json::Value;

use crate::servers::{Etcd, etcd};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

async fn store(etcd: &Etcd, prefix: &str) -> FleetStore {
    FleetStore::connect(std::slice::from_ref(&etcd.endpoint), prefix, Duration::from_secs(5)).await.unwrap()
}

#[test]
fn two_operators_racing_from_one_revision_cannot_both_write() {
    let Some(etcd) = etcd() else { return };
    rt().block_on(async {
        let (a, b) = (store(&etcd, "/race/").await, store(&etcd, "/race/").await);
        // Creating: both saw no key.
        let s = DesiredState::new("127.0.0.1:5000/scorehost/logreg");
        let first = s.stage("logreg", "sha256:aa", "1").unwrap();
        let second = s.stage("logreg", "sha256:bb", "2").unwrap();
        let (ra, rb) = tokio::join!(a.put_if("logreg", 0, &first), b.put_if("logreg", 0, &second));
        assert_eq!([ra.is_ok(), rb.is_ok()].iter().filter(|ok| **ok).count(), 1, "{ra:?} {rb:?}");
        let loser = if ra.is_ok() { rb } else { ra };
        assert!(matches!(loser, Err(EtcdError::Conflict { read: 0, .. })), "{loser:?}");

        // Changing: both read the same revision; the second write is refused,
        // naming the revision and generation that won.
        let read = a.plugin("logreg").await.unwrap();
        let state = read.value.clone().unwrap();
        let one = state.stage("logreg", "sha256:cc", "3").unwrap();
        let two = state.stage("logreg", "sha256:dd", "4").unwrap();
        let won = a.put_if("logreg", read.revision, &one).await.unwrap();
        let lost = b.put_if("logreg", read.revision, &two).await.unwrap_err();
        match &lost {
            EtcdError::Conflict { read: r, now, generation, .. } => {
                assert_eq!((*r, *now, *generation), (read.revision, won, one.generation));
            }
            other => panic!("expected a conflict, got {other}"),
        }
        assert!(lost.to_string().contains("changed by someone else"), "{lost}");
        assert_eq!(b.plugin("logreg").await.unwrap().value.unwrap().staged.as_deref(), Some("sha256:cc"));
    });
}

fn fleet(etcd: &Etcd, args: &[&str]) -> (i32, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_scorehost"))
        .args(["fleet", "--etcd", &etcd.endpoint, "--prefix", "/cli/"])
        .args(args)
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), json, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn stage_activate_and_roll_back_through_the_cli_gated_by_the_replicas() {
    let Some(etcd) = etcd() else { return };
    let (a, b) = ("sha256:".to_owned() + &"a".repeat(64), "sha256:".to_owned() + &"b".repeat(64));
    let repo = "127.0.0.1:5000/scorehost/logreg";
    let (code, json, err) = fleet(&etcd, &["stage", "logreg", &format!("{repo}@{a}")]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json["state"]["staged"], a.as_str());

    // No replica reports: nobody gated it, so it goes live nowhere.
    let (code, _, err) = fleet(&etcd, &["activate", "logreg"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no replica is reporting"), "{err}");

    // Two replicas report under a lease: one gated it, one failed its gate.
    let rt = rt();
    let report = |id: &str, loaded: &[&str], failed: &[(&str, &str)]| ReplicaStatus {
        id: id.into(),
        plugins: [(
            "logreg".to_owned(),
            PluginStatus {
                loaded: loaded.iter().map(|d| d.to_string()).collect(),
                failed: failed.iter().map(|(d, r)| (d.to_string(), r.to_string())).collect(),
                ..PluginStatus::default()
            },
        )]
        .into(),
    };
    let replicas = rt.block_on(store(&etcd, "/cli/"));
    let lease = rt.block_on(replicas.grant(Duration::from_secs(30))).unwrap();
    rt.block_on(replicas.report(&report("r1", &[&a], &[]), lease)).unwrap();
    rt.block_on(replicas.report(&report("r2", &[], &[(&a, "gate: 1 of 3 golden vector(s) failed")]), lease))
        .unwrap();
    let (code, _, err) = fleet(&etcd, &["activate", "logreg"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("r2 (gate: 1 of 3 golden vector(s) failed)") && !err.contains("r1 ("), "{err}");

    rt.block_on(replicas.report(&report("r2", &[&a], &[]), lease)).unwrap();
    let (code, json, err) = fleet(&etcd, &["activate", "logreg"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json["state"]["live"], a.as_str());

    // A second version, then one step back.
    rt.block_on(replicas.report(&report("r1", &[&a, &b], &[]), lease)).unwrap();
    rt.block_on(replicas.report(&report("r2", &[&a, &b], &[]), lease)).unwrap();
    assert_eq!(fleet(&etcd, &["stage", "logreg", &format!("{repo}@{b}")]).0, 0);
    let (code, json, err) = fleet(&etcd, &["activate", "logreg"]);
    assert_eq!(
        (code, json["state"]["live"].as_str(), json["state"]["previous"][0].as_str()),
        (0, Some(b.as_str()), Some(a.as_str())),
        "{err}"
    );
    let (code, json, err) = fleet(&etcd, &["rollback", "logreg"]);
    assert_eq!((code, json["state"]["live"].as_str()), (0, Some(a.as_str())), "{err}");
    let (code, _, err) = fleet(&etcd, &["rollback", "logreg"]);
    assert_eq!(code, 2, "nothing left to roll back to: {err}");

    let (code, json, err) = fleet(&etcd, &["status"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json["plugins"]["logreg"]["state"]["live"], a.as_str());
    assert_eq!(json["plugins"]["logreg"]["converged"], false, "no replica reports serving it yet");
    assert_eq!(json["replicas"].as_array().unwrap().len(), 2);
}
