//! Fleet replicas for real: etcd and the registry (Debian's `etcd-server`
//! and `docker-registry`) and two `scorehost serve --fleet-etcd …` processes
//! on loopback. One version is pushed, staged, activated and served by
//! both; a second replaces it; a version whose gate fails on every replica
//! is refused, naming each replica and its reason; a version too large for
//! one replica is refused naming only that one; with the registry stopped,
//! a rollback still reaches both; with etcd stopped, a replica restarted
//! serves what it served before; and a watch that fell behind etcd's
//! compaction re-lists instead of losing the update. The admin API changes
//! the fleet too, and refuses local changes on a replica.
//!
//! The long run with three replicas behind haproxy and load is `benches/fleet.sh`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use scorehost::control::fleet::desired::DesiredState;
use scorehost::control::fleet::etcd::{FleetStore, Watched};
use serde_json::{Value, json};

use crate::push::push;
use crate::servers::{Etcd, Registry, etcd, registry};
use crate::support::{copy_with, logreg_body, logreg_variant, staged};

const PREFIX: &str = "/replicas/";
/// The second version: the same code (0.1.0) with another model.
const V2: &str = "0.1.0+model.2";

/// A `scorehost serve` fleet replica: its store and log survive a restart.
struct Replica {
    child: Option<Child>,
    addr: String,
    /// Its id in the fleet's reports (`<hostname>:<port>`).
    id: String,
    store: tempfile::TempDir,
    cache: tempfile::TempDir,
    token: std::path::PathBuf,
    etcd: String,
    extra: Vec<String>,
    log: std::path::PathBuf,
}

impl Replica {
    fn start(etcd: &Etcd, dir: &Path, name: &str, extra: &[&str]) -> Self {
        let token = dir.join("token");
        if !token.exists() {
            std::fs::write(&token, "0123456789abcdef0123456789abcdef").unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
            }
        }
        let mut r = Replica {
            child: None,
            addr: String::new(),
            id: String::new(),
            store: tempfile::tempdir().unwrap(),
            cache: tempfile::tempdir().unwrap(),
            token,
            etcd: etcd.endpoint.clone(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            log: dir.join(format!("{name}.log")),
        };
        r.spawn("127.0.0.1:0");
        r
    }

    fn spawn(&mut self, addr: &str) {
        let log = std::fs::File::create(&self.log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_scorehost"))
            .args(["--cache-dir", self.cache.path().to_str().unwrap(), "serve", "--store"])
            .arg(self.store.path())
            .arg("--admin-token-file")
            .arg(&self.token)
            .args(["--addr", addr, "--fleet-etcd", &self.etcd, "--fleet-prefix", PREFIX])
            .args(["--fleet-plain-http", "--fleet-startup-timeout-secs", "1", "--fleet-relist-secs", "5"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let (Some(id), Some(addr)) =
                (text.split("fleet mode: replica ").nth(1), text.split("on http://").nth(1))
            {
                self.id = id.split_whitespace().next().unwrap().to_owned();
                self.addr = addr.split_whitespace().next().unwrap().to_owned();
                return;
            }
            assert!(Instant::now() < deadline, "the replica did not start: {text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, waited for.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn restart(&mut self) {
        self.stop();
        let addr = self.addr.clone();
        self.spawn(&addr);
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The version that answers a logreg score, or the error's status.
    fn serves(&self) -> Result<String, String> {
        let (code, body) = curl(
            "POST",
            &format!("http://{}/v1/plugins/logreg/score", self.addr),
            Some(&logreg_body()),
            None,
        );
        match (code, body["version"].as_str()) {
            (200, Some(v)) => Ok(v.to_owned()),
            _ => Err(format!("{code} {body}")),
        }
    }

    fn ready(&self) -> u16 {
        curl("GET", &format!("http://{}/readyz", self.addr), None, None).0
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One HTTP call through curl: (status, JSON body or Null).
fn curl(method: &str, url: &str, body: Option<&Value>, token: Option<&Path>) -> (u16, Value) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "--max-time", "10", "-X", method, "-w", "\n%{http_code}"]);
    if let Some(b) = body {
        cmd.args(["-H", "content-type: application/json", "--data-binary", &b.to_string()]);
    }
    if let Some(t) = token {
        let t = std::fs::read_to_string(t).unwrap();
        cmd.args(["-H", &format!("authorization: Bearer {}", t.trim())]);
    }
    let out = cmd.arg(url).output().expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), serde_json::from_str(body).unwrap_or(Value::Null))
}

fn fleet(etcd: &Etcd, args: &[&str]) -> (i32, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_scorehost"))
        .args(["fleet", "--etcd", &etcd.endpoint, "--prefix", PREFIX])
        .args(args)
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), json, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Waits (up to 60 s) until `check` holds for the fleet's status.
fn wait_status(etcd: &Etcd, what: &str, replicas: &[&Replica], check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, status, err) = fleet(etcd, &["status"]);
        if code == 0 && check(&status) {
            return status;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = replicas.iter().map(|r| r.log()).collect();
            panic!("timed out waiting for {what}: {status} {err}\nreplica logs:\n{}", logs.join("\n----\n"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether every one of `n` replicas reports `digest` ready for logreg.
fn loaded_everywhere(status: &Value, digest: &str, n: usize) -> bool {
    let replicas = status["replicas"].as_array().cloned().unwrap_or_default();
    replicas.len() == n
        && replicas.iter().all(|r| {
            r["plugins"]["logreg"]["loaded"].as_array().is_some_and(|l| l.iter().any(|d| d == digest))
        })
}

/// Whether every one of `n` replicas reports a failure for `digest`.
fn failed_everywhere(status: &Value, digest: &str, n: usize) -> bool {
    let replicas = status["replicas"].as_array().cloned().unwrap_or_default();
    replicas.len() == n && replicas.iter().all(|r| r["plugins"]["logreg"]["failed"][digest].is_string())
}

fn converged(status: &Value) -> bool {
    status["plugins"]["logreg"]["converged"] == true
}

fn push_ref(registry: &Registry, dir: &Path, tag: &str) -> String {
    push(dir, &format!("{}/scorehost/logreg:{tag}", registry.addr))["digest"].as_str().unwrap().to_owned()
}

#[test]
fn replicas_follow_the_fleet_through_rollouts_refusals_and_outages() {
    let (Some(mut etcd), Some(mut registry)) = (etcd(), registry()) else { return };
    let v1_dir = staged("logreg");
    let v2_dir = logreg_variant(V2, 1.0);
    // Its golden vector expects a score the model does not give: every gate fails it.
    let bad_dir = copy_with("logreg", |m| m.replace("version = \"0.1.0\"", "version = \"0.1.0+model.3\""));
    let vector =
        json!({"name": "wrong", "input": {"amount_usd_log": 2.0}, "score": 0.999, "tolerance": 1e-9});
    std::fs::write(bad_dir.path().join("tests.jsonl"), format!("{vector}\n")).unwrap();
    let v1 = push_ref(&registry, &v1_dir, "v1");
    let v2 = push_ref(&registry, v2_dir.path(), "v2");
    let bad = push_ref(&registry, bad_dir.path(), "bad");
    let repo = format!("{}/scorehost/logreg", registry.addr);

    let dir = tempfile::tempdir().unwrap();
    let mut r1 = Replica::start(&etcd, dir.path(), "r1", &[]);
    let r2 = Replica::start(&etcd, dir.path(), "r2", &[]);
    // A fleet with nothing live: up, but not ready to take traffic.
    assert_eq!(r1.ready(), 503);

    // Stage → both replicas pull and gate it → activate → both serve it.
    let (code, _, err) = fleet(&etcd, &["stage", "logreg", &format!("{repo}:v1"), "--plain-http"]);
    assert_eq!(code, 0, "{err}");
    wait_status(&etcd, "v1 loaded on both", &[&r1, &r2], |s| loaded_everywhere(s, &v1, 2));
    let (code, _, err) = fleet(&etcd, &["activate", "logreg"]);
    assert_eq!(code, 0, "{err}");
    wait_status(&etcd, "convergence on v1", &[&r1, &r2], converged);
    assert_eq!((r1.serves(), r2.serves()), (Ok("0.1.0".into()), Ok("0.1.0".into())));
    assert_eq!((r1.ready(), r2.ready()), (200, 200));

    // The admin API drives the fleet too, and refuses what would make one replica differ.
    let admin = |r: &Replica, method: &str, path: &str, body: Option<&Value>| {
        curl(method, &format!("http://{}{path}", r.addr), body, Some(&r.token))
    };
    let (code, body) = admin(&r1, "POST", "/admin/v1/plugins/logreg/rollback", None);
    assert_eq!((code, body["error"]["kind"].as_str()), (409, Some("fleet_mode")), "{body}");
    let (code, body) = admin(
        &r2,
        "POST",
        "/admin/v1/fleet/plugins/logreg/stage",
        Some(&json!({"reference": format!("{repo}@{v2}")})),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["state"]["staged"], v2.as_str());
    wait_status(&etcd, "v2 loaded on both", &[&r1, &r2], |s| loaded_everywhere(s, &v2, 2));
    let (code, body) = admin(&r1, "POST", "/admin/v1/fleet/plugins/logreg/activate", None);
    assert_eq!(code, 200, "{body}");
    wait_status(&etcd, "convergence on v2", &[&r1, &r2], converged);
    assert_eq!((r1.serves(), r2.serves()), (Ok(V2.into()), Ok(V2.into())));
    let (code, body) = admin(&r1, "GET", "/admin/v1/fleet", None);
    assert_eq!((code, body["plugins"]["logreg"]["converged"].as_bool()), (200, Some(true)), "{body}");
    // Bad fleet requests get typed errors, and change nothing.
    for (path, body, want) in [
        ("stage", json!({"reference": "not-a-reference"}), (400, "invalid_request")),
        ("stage", json!({}), (400, "malformed_request")),
        (
            "canary",
            json!({"digest": v2, "percent": 10, "key": "header:bad header"}),
            (400, "invalid_request"),
        ),
        ("frobnicate", json!({}), (404, "not_found")),
    ] {
        let (code, answer) =
            admin(&r1, "POST", &format!("/admin/v1/fleet/plugins/logreg/{path}"), Some(&body));
        assert_eq!((code, answer["error"]["kind"].as_str().unwrap_or("")), want, "{path} {body}: {answer}");
    }

    // A version whose gate fails everywhere goes live nowhere; each replica is named.
    assert_eq!(fleet(&etcd, &["stage", "logreg", &format!("{repo}@{bad}")]).0, 0);
    wait_status(&etcd, "bad failed on both", &[&r1, &r2], |s| failed_everywhere(s, &bad, 2));
    let (code, _, err) = fleet(&etcd, &["activate", "logreg"]);
    assert_eq!(code, 2, "{err}");
    for r in [&r1, &r2] {
        assert!(err.contains(&format!("{} (gate: ", r.id)), "{err}");
    }
    let (code, body) = admin(&r2, "POST", "/admin/v1/fleet/plugins/logreg/activate", None);
    assert_eq!((code, body["error"]["kind"].as_str()), (409, Some("refused")), "{body}");
    assert_eq!((r1.serves(), r2.serves()), (Ok(V2.into()), Ok(V2.into())));

    // A version one replica cannot take (too large for it): refused, naming that one only.
    let r3 = Replica::start(&etcd, dir.path(), "r3", &["--max-upload-bytes", "1000"]);
    let all = [&r1, &r2, &r3];
    wait_status(&etcd, "r3 reporting", &all, |s| s["replicas"].as_array().is_some_and(|a| a.len() == 3));
    let v4_dir = logreg_variant("0.1.0+model.4", 2.0);
    let v4 = push_ref(&registry, v4_dir.path(), "v4");
    assert_eq!(fleet(&etcd, &["stage", "logreg", &format!("{repo}@{v4}")]).0, 0);
    wait_status(&etcd, "v4 on r1 and r2, failed on r3", &all, |s| {
        let rs = s["replicas"].as_array().cloned().unwrap_or_default();
        rs.len() == 3
            && rs.iter().all(|r| {
                let p = &r["plugins"]["logreg"];
                let loaded = p["loaded"].as_array().is_some_and(|l| l.iter().any(|d| d == v4.as_str()));
                if r["id"] == r3.id.as_str() { p["failed"][&v4].is_string() } else { loaded }
            })
    });
    let (code, _, err) = fleet(&etcd, &["activate", "logreg"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&format!("{} (verify: ", r3.id)) && err.contains("1 of 3 replica(s)"), "{err}");
    drop(r3);
    wait_status(&etcd, "r3's report gone", &[&r1, &r2], |s| {
        s["replicas"].as_array().is_some_and(|a| a.len() == 2)
    });

    // The registry is down: a rollback needs none of it.
    registry.stop();
    let (code, json, err) = fleet(&etcd, &["rollback", "logreg"]);
    assert_eq!((code, json["state"]["live"].as_str()), (0, Some(v1.as_str())), "{err}");
    wait_status(&etcd, "convergence on the rollback", &[&r1, &r2], converged);
    assert_eq!((r1.serves(), r2.serves()), (Ok("0.1.0".into()), Ok("0.1.0".into())));
    // The version rolled back from is no longer wanted: it left both stores.
    for r in [&r1, &r2] {
        assert!(!r.store.path().join("logreg").join(V2).exists(), "{V2} still in {}'s store", r.id);
        assert!(r.store.path().join("logreg/0.1.0").exists());
    }

    // A new replica with an empty store cannot pull the live version: up, but
    // not ready, saying why, so a load balancer sends it nothing.
    let fresh = Replica::start(&etcd, dir.path(), "r5", &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, body) = curl("GET", &format!("http://{}/readyz", fresh.addr), None, None);
        let why = body["error"]["message"].as_str().unwrap_or("").to_owned();
        if code == 503 && why.contains(&format!("logreg does not serve {v1}")) && why.contains("pull: ") {
            break;
        }
        assert!(Instant::now() < deadline, "{code} {body}\n{}", fresh.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(fresh);
    wait_status(&etcd, "r5's report gone", &[&r1, &r2], |s| {
        s["replicas"].as_array().is_some_and(|a| a.len() == 2)
    });

    // etcd is down: serving goes on, and a replica restarted serves what it applied.
    etcd.stop();
    assert_eq!(r2.serves(), Ok("0.1.0".into()));
    let (code, body) = admin(&r2, "GET", "/admin/v1/fleet", None);
    assert_eq!((code, body["error"]["kind"].as_str()), (503, Some("fleet_unavailable")), "{body}");
    r1.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    while r1.ready() != 200 {
        assert!(Instant::now() < deadline, "r1 not ready from its persisted state: {}", r1.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(r1.serves(), Ok("0.1.0".into()));
    assert!(r1.log().contains("etcd is unreachable"), "{}", r1.log());

    // etcd is back: both report again, and a change made now reaches both.
    etcd.start();
    wait_status(&etcd, "both reporting after etcd's restart", &[&r1, &r2], |s| {
        s["replicas"].as_array().is_some_and(|a| a.len() == 2) && converged(s)
    });
    // v2 was rolled back from, so the replicas dropped it: staged again, it is pulled again.
    registry.start();
    assert_eq!(fleet(&etcd, &["stage", "logreg", &format!("{repo}@{v2}")]).0, 0);
    wait_status(&etcd, "v2 loaded again", &[&r1, &r2], |s| loaded_everywhere(s, &v2, 2));
    let (code, _, err) =
        fleet(&etcd, &["canary", "logreg", &v2, "--percent", "100", "--key", "amount_usd_log"]);
    assert_eq!(code, 0, "{err}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while (r1.serves(), r2.serves()) != (Ok(V2.into()), Ok(V2.into())) {
        assert!(Instant::now() < deadline, "the canary did not reach both: {}\n{}", r1.log(), r2.log());
        std::thread::sleep(Duration::from_millis(100));
    }

    // The canary ends and v2 shadows live traffic on every replica instead.
    assert_eq!(fleet(&etcd, &["abort", "logreg"]).0, 0);
    let (code, _, err) = fleet(&etcd, &["shadow", "logreg", &v2]);
    assert_eq!(code, 0, "{err}");
    let deadline = Instant::now() + Duration::from_secs(30);
    for r in [&r1, &r2] {
        loop {
            let (_, list) = admin(r, "GET", "/admin/v1/plugins", None);
            let logreg =
                list["plugins"].as_array().and_then(|ps| ps.iter().find(|p| p["name"] == "logreg")).cloned();
            let shadow = logreg.as_ref().map(|p| (p["shadow"]["version"].clone(), p["canary"].is_null()));
            if shadow == Some((json!(V2), true)) && r.serves() == Ok("0.1.0".into()) {
                break;
            }
            assert!(Instant::now() < deadline, "no shadow of v2 on {}: {logreg:?}\n{}", r.addr, r.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // A key that is not a valid state (written straight through etcd's JSON
    // gateway): reading the fleet fails, typed; the replicas keep serving.
    let b64 = |t: &str| {
        let out =
            Command::new("base64").arg("-w0").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        use std::io::Write;
        out.stdin.as_ref().unwrap().write_all(t.as_bytes()).unwrap();
        String::from_utf8(out.wait_with_output().unwrap().stdout).unwrap()
    };
    let put = json!({"key": b64(&format!("{PREFIX}plugins/other")), "value": b64("not json")});
    let (code, _) = curl("POST", &format!("http://{}/v3/kv/put", etcd.endpoint), Some(&put), None);
    assert_eq!(code, 200);
    let (code, body) = admin(&r1, "GET", "/admin/v1/fleet", None);
    assert_eq!((code, body["error"]["kind"].as_str()), (500, Some("fleet_state_corrupt")), "{body}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!((r1.serves(), r2.serves()), (Ok("0.1.0".into()), Ok("0.1.0".into())));
    assert!(r1.log().contains("plugins/other does not hold a valid plugin state"), "{}", r1.log());
}

#[test]
fn a_watch_behind_the_compaction_says_so() {
    let Some(etcd) = etcd() else { return };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let store =
            FleetStore::connect(std::slice::from_ref(&etcd.endpoint), "/compact/", Duration::from_secs(5))
                .await
                .unwrap();
        let s = DesiredState::new("127.0.0.1:5000/scorehost/logreg");
        let first = store.put_if("logreg", 0, &s.stage("logreg", "sha256:aa", "1").unwrap()).await.unwrap();
        let read = store.plugin("logreg").await.unwrap();
        let next = read.value.unwrap().stage("logreg", "sha256:bb", "2").unwrap();
        let second = store.put_if("logreg", read.revision, &next).await.unwrap();
        // A watch from the first write sees the second.
        let mut watch = store.watch_plugins(first + 1).await.unwrap();
        match watch.next().await.unwrap() {
            Watched::Changed(changes) => {
                let (name, v) = &changes[0];
                assert_eq!(
                    (name.as_str(), v.as_ref().unwrap().as_ref().unwrap().revision),
                    ("logreg", second)
                );
            }
            other => panic!("expected the change, got {other:?}"),
        }
        // Compacted past it: a watch from there is told, so the replica lists again.
        store.compact(second).await.unwrap();
        let mut watch = store.watch_plugins(first).await.unwrap();
        assert!(matches!(watch.next().await.unwrap(), Watched::Compacted(_)));
        let (plugins, revision) = store.plugins().await.unwrap();
        assert!(revision >= second);
        assert_eq!(plugins["logreg"].value.staged.as_deref(), Some("sha256:bb"));
    });
}
