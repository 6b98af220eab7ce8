//! The plugin store and the admin API, in-process: upload → gate → activate →
//! rollback; a failing gate leaves the live version serving; tokens; names
//! that try to leave the store; oversize and unsafe archives; and a partial
//! upload left by a crash, ignored (and removed) at start-up.

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use scorehost::control::admin::Admin;
use scorehost::http::admin::AdminApi;
use scorehost::http::{App, ServerConfig};
use scorehost::serving::pipeline::Pipelines;
use scorehost::serving::registry::Registry;
use serde_json::{Value, json};

use crate::http::{Reply, send};
use crate::support::{copy_dir, copy_with, staged};

const TOKEN: &str = "s3cret-admin-token-of-32-bytes-or-more";

/// A server over an empty (or existing) store at `root`, built off the async
/// workers (loading runs `init`).
pub fn server(root: &Path) -> Arc<App> {
    let root = root.to_owned();
    std::thread::spawn(move || {
        let runtime = Arc::new(
            scorehost::Runtime::new(scorehost::PoolSize { instances: 32, ..Default::default() }, None)
                .unwrap(),
        );
        let registry = Arc::new(Registry::default());
        let (admin, _) = Admin::open(&root, runtime, registry.clone(), 3).unwrap();
        App::with_admin(
            registry,
            Pipelines::default(),
            ServerConfig::default(),
            Some(AdminApi::new(admin, TOKEN, 1 << 20).unwrap()),
        )
    })
    .join()
    .unwrap()
}

/// A tar of the contents of `dir`.
pub fn tar_of(dir: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.append_dir_all(".", dir).unwrap();
    b.into_inner().unwrap()
}

pub fn admin_req(method: &str, path: &str, body: Vec<u8>) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(header::CONTENT_TYPE, "application/x-tar")
        .body(Body::from(body))
        .unwrap()
}

async fn score(app: &Arc<App>) -> Reply {
    let req = Request::post("/v1/plugins/logreg/score")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"features": {"amount_usd_log": 2.0, "cross_border": false}}"#))
        .unwrap();
    send(app, req).await
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// logreg with its intercept moved by `shift`, as version `version`, with one
/// golden vector for the new model (or, with `stale_vectors`, the old ones).
pub fn logreg_variant(version: &str, shift: f64, stale_vectors: bool) -> tempfile::TempDir {
    let dir = copy_with("logreg", |m| m.replace("version = \"0.1.0\"", &format!("version = \"{version}\"")));
    let weights_path = dir.path().join("model/weights.json");
    let mut weights: Value = serde_json::from_str(&std::fs::read_to_string(&weights_path).unwrap()).unwrap();
    let intercept = weights["intercept"].as_f64().unwrap() + shift;
    weights["intercept"] = json!(intercept);
    std::fs::write(&weights_path, weights.to_string()).unwrap();
    if !stale_vectors {
        let z = intercept + 0.45 * 2.0; // amount_usd_log weight × 2.0; the rest imputed as 0
        let vector = json!({"name": "shifted intercept", "input": {"amount_usd_log": 2.0, "cross_border": false},
            "score": sigmoid(z), "tolerance": 1e-9});
        std::fs::write(dir.path().join("tests.jsonl"), format!("{vector}\n")).unwrap();
    }
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_gate_activate_rollback() {
    let store = tempfile::tempdir().unwrap();
    let app = server(store.path());
    assert_eq!(score(&app).await.status, StatusCode::NOT_FOUND);

    let r =
        send(&app, admin_req("PUT", "/admin/v1/plugins/logreg/versions/0.1.0", tar_of(&staged("logreg"))))
            .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["gate"]["vectors"].as_array().unwrap().len(), 3);
    assert!(r.json["gate"]["max_fuel"].as_u64().unwrap() > 0, "{}", r.text);
    // Gated but not live until activated.
    assert_eq!(score(&app).await.status, StatusCode::NOT_FOUND);
    let r = send(&app, admin_req("POST", "/admin/v1/plugins/logreg/versions/0.1.0/activate", vec![])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let v1 = score(&app).await;
    assert_eq!(v1.status, StatusCode::OK);
    assert!((v1.json["score"].as_f64().unwrap() - sigmoid(-4.2 + 0.9)).abs() < 1e-12, "{}", v1.text);

    let v2_dir = logreg_variant("0.1.0+model.2", 1.0, false);
    let r = send(
        &app,
        admin_req("PUT", "/admin/v1/plugins/logreg/versions/0.1.0+model.2", tar_of(v2_dir.path())),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = send(&app, admin_req("POST", "/admin/v1/plugins/logreg/versions/0.1.0+model.2/activate", vec![]))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["previous"], "0.1.0");
    let v2 = score(&app).await;
    assert_eq!(v2.json["version"], "0.1.0+model.2", "{}", v2.text);
    assert!((v2.json["score"].as_f64().unwrap() - sigmoid(-3.2 + 0.9)).abs() < 1e-12, "{}", v2.text);

    let r = send(&app, admin_req("GET", "/admin/v1/plugins", vec![])).await;
    let versions = &r.json["plugins"][0]["versions"];
    assert_eq!(versions[0]["state"], "previous", "{}", r.text);
    assert_eq!(versions[1]["state"], "live", "{}", r.text);

    let r = send(&app, admin_req("POST", "/admin/v1/plugins/logreg/rollback", vec![])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["live"], "0.1.0");
    assert_eq!(score(&app).await.json["score"], v1.json["score"]);
    // Nothing further back.
    let r = send(&app, admin_req("POST", "/admin/v1/plugins/logreg/rollback", vec![])).await;
    assert_eq!((r.status, r.json["error"]["kind"].as_str()), (StatusCode::CONFLICT, Some("conflict")));
    // Two swaps (the first activation replaced nothing), two gates passed.
    let m = send(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await.text;
    let events = |event: &str| {
        crate::metrics::sample(&m, "scorehost_plugin_events_total", &[r#"plugin="logreg""#, event])
    };
    assert_eq!(events(r#"event="swap""#), Some(2.0), "{m}");
    assert_eq!(events(r#"event="gate_passed""#), Some(2.0), "{m}");
    assert_eq!(events(r#"event="gate_failed""#), None, "{m}");

    // The live version cannot be deleted; another one can.
    let r = send(&app, admin_req("DELETE", "/admin/v1/plugins/logreg/versions/0.1.0", vec![])).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    let r = send(&app, admin_req("DELETE", "/admin/v1/plugins/logreg/versions/0.1.0+model.2", vec![])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(!store.path().join("logreg/0.1.0+model.2").exists());

    // A restart serves the recorded live version from the store.
    let again = server(store.path());
    assert_eq!(score(&again).await.json["score"], v1.json["score"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_gate_leaves_the_live_version_serving() {
    let store = tempfile::tempdir().unwrap();
    let app = server(store.path());
    send(&app, admin_req("PUT", "/admin/v1/plugins/logreg/versions/0.1.0", tar_of(&staged("logreg")))).await;
    send(&app, admin_req("POST", "/admin/v1/plugins/logreg/versions/0.1.0/activate", vec![])).await;
    let before = score(&app).await;

    // New weights, old golden vectors: the scores no longer match them.
    let bad = logreg_variant("0.1.0+bad", 0.5, true);
    let r =
        send(&app, admin_req("PUT", "/admin/v1/plugins/logreg/versions/0.1.0+bad", tar_of(bad.path()))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.json["error"]["kind"], "gate_failed");
    assert!(r.json["error"]["message"].as_str().unwrap().contains("is not"), "{}", r.text);
    assert!(!store.path().join("logreg/0.1.0+bad").exists(), "a rejected version stays out of the store");
    let r =
        send(&app, admin_req("POST", "/admin/v1/plugins/logreg/versions/0.1.0+bad/activate", vec![])).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);

    // A version that does not load (wrong world) is rejected the same way.
    let wrong = copy_with("logreg", |m| m.replace("world = \"scorer\"", "world = \"extractor\""));
    let r =
        send(&app, admin_req("PUT", "/admin/v1/plugins/logreg/versions/0.1.0", tar_of(wrong.path()))).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "versions are immutable: {}", r.text);

    let after = score(&app).await;
    assert_eq!((after.status, &after.json["score"]), (StatusCode::OK, &before.json["score"]));
    let m = send(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await.text;
    let events = |event: &str| {
        crate::metrics::sample(&m, "scorehost_plugin_events_total", &[r#"plugin="logreg""#, event])
    };
    assert_eq!(events(r#"event="gate_failed""#), Some(1.0), "{m}");
    assert_eq!(events(r#"event="gate_passed""#), Some(1.0), "{m}");
}

#[tokio::test]
async fn tokens_names_and_archives_are_checked() {
    let store = tempfile::tempdir().unwrap();
    let app = server(store.path());
    let tar = tar_of(&staged("logreg"));

    let mut req = admin_req("GET", "/admin/v1/plugins", vec![]);
    req.headers_mut().remove(header::AUTHORIZATION);
    assert_eq!(send(&app, req).await.status, StatusCode::UNAUTHORIZED);
    let mut req = admin_req("GET", "/admin/v1/plugins", vec![]);
    req.headers_mut().insert(header::AUTHORIZATION, "Bearer guess".parse().unwrap());
    assert_eq!(send(&app, req).await.status, StatusCode::FORBIDDEN);
    // The scheme is case-insensitive (RFC 9110); another scheme is no token.
    for (value, status) in [
        (format!("bearer {TOKEN}"), StatusCode::OK),
        (format!("BEARER  {TOKEN} "), StatusCode::OK),
        (format!("Basic {TOKEN}"), StatusCode::UNAUTHORIZED),
    ] {
        let mut req = admin_req("GET", "/admin/v1/plugins", vec![]);
        req.headers_mut().insert(header::AUTHORIZATION, value.parse().unwrap());
        assert_eq!(send(&app, req).await.status, status, "{value}");
    }
    // A short token is refused when the server starts.
    let other = tempfile::tempdir().unwrap();
    let path = other.path().to_owned();
    let e = std::thread::spawn(move || {
        let runtime = Arc::new(
            scorehost::Runtime::new(scorehost::PoolSize { instances: 4, ..Default::default() }, None)
                .unwrap(),
        );
        let (admin, _) = Admin::open(&path, runtime, Arc::new(Registry::default()), 3).unwrap();
        AdminApi::new(admin, "  s3cret  ", 1 << 20).err().unwrap()
    })
    .join()
    .unwrap();
    assert!(e.to_string().contains("at least 32"), "{e}");

    // Traversal and odd names never reach the filesystem.
    for path in [
        "/admin/v1/plugins/logreg/versions/..",
        "/admin/v1/plugins/..%2F..%2Fetc/versions/1",
        "/admin/v1/plugins/Logreg/versions/1",
        "/admin/v1/plugins/logreg/versions/%2e%2e",
    ] {
        let r = send(&app, admin_req("PUT", path, tar.clone())).await;
        assert!(matches!(r.status, StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND), "{path}: {}", r.text);
    }
    let long = "1".repeat(65);
    let r =
        send(&app, admin_req("PUT", &format!("/admin/v1/plugins/logreg/versions/{long}"), tar.clone())).await;
    assert_eq!(r.json["error"]["kind"], "invalid_name", "{}", r.text);

    // The URL and the manifest must agree.
    let r = send(&app, admin_req("PUT", "/admin/v1/plugins/logreg/versions/9.9.9", tar.clone())).await;
    assert_eq!(r.json["error"]["kind"], "invalid_upload", "{}", r.text);

    // Over the upload limit (1 MiB here): 413.
    let r = send(&app, admin_req("PUT", "/admin/v1/plugins/logreg/versions/0.1.0", vec![0u8; 2 << 20])).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);

    // Entries that leave the directory, and links, are refused.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(2);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "ok.txt", &b"hi"[..]).unwrap();
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    b.append_link(&mut link, "model", "/etc").unwrap();
    let r = send(&app, admin_req("PUT", "/admin/v1/plugins/logreg/versions/0.1.0", b.into_inner().unwrap()))
        .await;
    assert_eq!(r.json["error"]["kind"], "invalid_upload", "{}", r.text);
    assert!(r.json["error"]["message"].as_str().unwrap().contains("Symlink"), "{}", r.text);
    let mut raw = tar_of(&staged("logreg"));
    raw.truncate(raw.len() / 3); // a truncated upload
    let r = send(&app, admin_req("PUT", "/admin/v1/plugins/logreg/versions/0.1.0", raw)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    // Nothing of the refused uploads is left behind.
    assert_eq!(std::fs::read_dir(store.path().join(".staging")).unwrap().count(), 0);
    assert!(!store.path().join("logreg/0.1.0").exists());
}

#[test]
fn a_partial_upload_left_by_a_crash_is_ignored_at_start_up() {
    let store = tempfile::tempdir().unwrap();
    // What a crash mid-upload leaves: a half-written directory in .staging.
    let partial = store.path().join(".staging/logreg@0.2.0.123.456");
    std::fs::create_dir_all(&partial).unwrap();
    std::fs::write(partial.join("plugin.toml"), "name = \"logreg\"\nversion = \"0.2").unwrap();
    let (_, scan) = scorehost::control::store::PluginStore::open(store.path()).unwrap();
    assert_eq!(scan.removed_partials, vec![".staging/logreg@0.2.0.123.456".to_owned()]);
    assert!(scan.versions.is_empty());
    assert!(!partial.exists());
    // And the server starts on such a store with nothing live.
    std::fs::create_dir_all(&partial).unwrap();
    let app = server(store.path());
    assert!(app.registry.is_empty());
}

/// A server with logreg 0.1.0 live and 0.1.0+model.2 (intercept + 1) gated.
async fn two_versions(store: &Path) -> (Arc<App>, tempfile::TempDir) {
    let app = server(store);
    let v2 = logreg_variant("0.1.0+model.2", 1.0, false);
    for (path, tar) in [
        ("/admin/v1/plugins/logreg/versions/0.1.0", tar_of(&staged("logreg"))),
        ("/admin/v1/plugins/logreg/versions/0.1.0+model.2", tar_of(v2.path())),
    ] {
        let r = send(&app, admin_req("PUT", path, tar)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let r = send(&app, admin_req("POST", "/admin/v1/plugins/logreg/versions/0.1.0/activate", vec![])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    (app, v2)
}

/// (version, state) of each logreg row of `/v1/status`, the status page's data.
async fn status_states(app: &Arc<App>) -> Vec<(String, String)> {
    let s = send(app, Request::get("/v1/status").body(Body::empty()).unwrap()).await;
    let mut rows: Vec<(String, String)> = s.json["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "logreg")
        .map(|p| (p["version"].as_str().unwrap().to_owned(), p["state"].as_str().unwrap().to_owned()))
        .collect();
    rows.sort();
    rows
}

fn json_req(method: &str, path: &str, body: Value) -> Request<Body> {
    let mut r = admin_req(method, path, body.to_string().into_bytes());
    r.headers_mut().insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    r
}

async fn score_as(app: &Arc<App>, features: Value, header: Option<&str>) -> Reply {
    let mut req = Request::post("/v1/plugins/logreg/score").header(header::CONTENT_TYPE, "application/json");
    if let Some(h) = header {
        req = req.header("x-customer", h);
    }
    send(app, req.body(Body::from(features.to_string())).unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_is_sticky_per_customer_and_promotes_or_aborts() {
    let store = tempfile::tempdir().unwrap();
    let (app, _v2) = two_versions(store.path()).await;
    let start = json!({"version": "0.1.0+model.2", "percent": 30, "key": "customer_id"});
    let r = send(&app, json_req("POST", "/admin/v1/plugins/logreg/canary", start)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    let mut seen = [0, 0];
    for i in 0..60 {
        let customer = format!("customer-{i}");
        let features = json!({"features": {"amount_usd_log": 2.0, "customer_id": customer}});
        let first = score_as(&app, features.clone(), None).await;
        let again = score_as(&app, features, None).await;
        assert_eq!(first.json["version"], again.json["version"], "{customer} switched versions");
        let canary = scorehost::serving::traffic::bucket(&customer) < 30;
        let want = if canary { "0.1.0+model.2" } else { "0.1.0" };
        assert_eq!(first.json["version"], want, "{customer}: {}", first.text);
        seen[usize::from(canary)] += 1;
    }
    assert!(seen[0] > 0 && seen[1] > 0, "both versions served: {seen:?}");
    assert_eq!(
        status_states(&app).await,
        [("0.1.0".to_owned(), "live".to_owned()), ("0.1.0+model.2".to_owned(), "canary".to_owned())],
        "the status page's rows"
    );
    // No key: the live version.
    let r = score_as(&app, json!({"features": {"amount_usd_log": 2.0}}), None).await;
    assert_eq!(r.json["version"], "0.1.0");

    // In a batch, each row follows its own key.
    let rows: Vec<Value> =
        (0..20).map(|i| json!({"amount_usd_log": 2.0, "customer_id": format!("customer-{i}")})).collect();
    let r = score_as(&app, json!({ "instances": rows }), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    for (i, result) in r.json["results"].as_array().unwrap().iter().enumerate() {
        let canary = scorehost::serving::traffic::bucket(&format!("customer-{i}")) < 30;
        assert_eq!(result.get("version").is_some(), canary, "row {i}: {result}");
    }

    // A header key, everyone in: the header decides.
    let all = json!({"version": "0.1.0+model.2", "percent": 100, "key": "header:x-customer"});
    send(&app, json_req("POST", "/admin/v1/plugins/logreg/canary", all)).await;
    let f = json!({"features": {"amount_usd_log": 2.0}});
    assert_eq!(score_as(&app, f.clone(), Some("anyone")).await.json["version"], "0.1.0+model.2");
    assert_eq!(score_as(&app, f.clone(), None).await.json["version"], "0.1.0");

    // Abort: everyone back on live. Then promote a new canary: it is live.
    let r = send(&app, admin_req("DELETE", "/admin/v1/plugins/logreg/canary", vec![])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(score_as(&app, f.clone(), Some("anyone")).await.json["version"], "0.1.0");
    let all = json!({"version": "0.1.0+model.2", "percent": 10, "key": "customer_id"});
    send(&app, json_req("POST", "/admin/v1/plugins/logreg/canary", all)).await;
    let r = send(&app, admin_req("POST", "/admin/v1/plugins/logreg/canary/promote", vec![])).await;
    assert_eq!((r.status, &r.json["live"]), (StatusCode::OK, &json!("0.1.0+model.2")), "{}", r.text);
    assert_eq!(score_as(&app, f, None).await.json["version"], "0.1.0+model.2");
    let r = send(&app, admin_req("GET", "/admin/v1/plugins", vec![])).await;
    assert!(r.json["plugins"][0].get("canary").is_none(), "promotion ends the canary: {}", r.text);

    let bad = json!({"version": "0.1.0", "percent": 101, "key": "customer_id"});
    let r = send(&app, json_req("POST", "/admin/v1/plugins/logreg/canary", bad)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_never_changes_a_response_and_publishes_the_differences() {
    let store = tempfile::tempdir().unwrap();
    let (app, _v2) = two_versions(store.path()).await;
    let inputs: Vec<Value> =
        (0..20).map(|i| json!({"features": {"amount_usd_log": f64::from(i) / 4.0}})).collect();
    let mut before = Vec::new();
    for f in &inputs {
        before.push(score_as(&app, f.clone(), None).await.json);
    }

    let r =
        send(&app, json_req("POST", "/admin/v1/plugins/logreg/shadow", json!({"version": "0.1.0+model.2"})))
            .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        status_states(&app).await,
        [("0.1.0".to_owned(), "live".to_owned()), ("0.1.0+model.2".to_owned(), "shadow".to_owned())],
        "the status page's rows"
    );
    for (f, b) in inputs.iter().zip(&before) {
        let r = score_as(&app, f.clone(), None).await;
        assert_eq!(r.status, StatusCode::OK);
        for k in ["score", "reasons", "version", "plugin"] {
            assert_eq!(r.json[k], b[k], "{k} changed under a shadow: {}", r.text);
        }
    }

    // The copies finish on their own tasks, each updating the stats and then
    // the metric; wait until both show all 20 (bounded).
    let shadow_ok =
        r#"scorehost_shadow_calls_total{plugin="logreg",shadow_version="0.1.0+model.2",outcome="ok"} 20"#;
    let (mut stats, mut metrics) = (Value::Null, String::new());
    for _ in 0..100 {
        let r = send(&app, admin_req("GET", "/admin/v1/plugins", vec![])).await;
        stats = r.json["plugins"][0]["shadow"]["stats"].clone();
        metrics = send(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await.text;
        if stats["compared"] == 20 && metrics.contains(shadow_ok) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(stats["compared"], 20, "{stats}");
    assert_eq!(stats["shadow_errors"], json!({}), "{stats}");
    // The shadow's intercept is 1 higher: every score differs, by less than 0.3.
    assert!(
        stats["max_diff"].as_f64().unwrap() > 0.01 && stats["max_diff"].as_f64().unwrap() < 0.3,
        "{stats}"
    );
    assert_eq!(stats["diff_le"][0][1], 0, "no score was equal: {stats}");

    assert!(metrics.contains(shadow_ok), "{metrics}");
    let r = send(&app, admin_req("DELETE", "/admin/v1/plugins/logreg/shadow", vec![])).await;
    assert_eq!(r.json["stats"]["compared"], 20, "{}", r.text);
    let r = send(&app, admin_req("DELETE", "/admin/v1/plugins/logreg/shadow", vec![])).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_watcher_gates_new_versions_and_applies_state_json() {
    let store = tempfile::tempdir().unwrap();
    let root = store.path().to_owned();
    let app = server(&root);
    let api = app.admin.as_ref().unwrap();
    let _watcher = scorehost::control::watch::watch(api.admin(), &root).unwrap();

    // A deploy tool copies a version in (complete, then renamed into place)
    // and names it live.
    let deploy = |dir: &Path, version: &str| {
        let tmp = root.join(".staging").join(format!("deploy-{version}"));
        copy_dir(dir, &tmp);
        std::fs::create_dir_all(root.join("logreg")).unwrap();
        std::fs::rename(&tmp, root.join("logreg").join(version)).unwrap();
    };
    let set_live = |version: &str| {
        let tmp = root.join("logreg/.state.tmp");
        std::fs::write(&tmp, json!({"live": version, "history": []}).to_string()).unwrap();
        std::fs::rename(&tmp, root.join("logreg/state.json")).unwrap();
    };
    deploy(&staged("logreg"), "0.1.0");
    set_live("0.1.0");
    let served = wait_for(&app, "0.1.0").await;
    assert_eq!(served.status, StatusCode::OK, "{}", served.text);

    // A version that fails its golden vectors never goes live, even when named.
    let bad = logreg_variant("0.1.0+bad", 0.5, true);
    deploy(bad.path(), "0.1.0+bad");
    set_live("0.1.0+bad");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(score(&app).await.json["version"], "0.1.0");

    // A good one does.
    let good = logreg_variant("0.1.0+model.2", 1.0, false);
    deploy(good.path(), "0.1.0+model.2");
    set_live("0.1.0+model.2");
    let served = wait_for(&app, "0.1.0+model.2").await;
    assert_eq!(served.json["version"], "0.1.0+model.2", "{}", served.text);
}

/// Polls (bounded: 10 s) until logreg answers from `version`.
async fn wait_for(app: &Arc<App>, version: &str) -> Reply {
    let mut last = score(app).await;
    for _ in 0..200 {
        if last.json["version"] == version {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        last = score(app).await;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_in_flight_finish_on_the_version_they_started_with() {
    let store = tempfile::tempdir().unwrap();
    let app = server(store.path());
    let b = copy_with("slow", |m| m.replace("version = \"0.1.0\"", "version = \"0.1.0+b\""));
    for (path, tar) in [
        ("/admin/v1/plugins/slow/versions/0.1.0", tar_of(&staged("slow"))),
        ("/admin/v1/plugins/slow/versions/0.1.0+b", tar_of(b.path())),
    ] {
        let r = send(&app, admin_req("PUT", path, tar)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    send(&app, admin_req("POST", "/admin/v1/plugins/slow/versions/0.1.0/activate", vec![])).await;

    let in_flight = tokio::spawn({
        let app = app.clone();
        async move {
            send(&app, crate::http::post("/v1/plugins/slow/score", r#"{"features": {"ms": 800}}"#)).await
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let r = send(&app, admin_req("POST", "/admin/v1/plugins/slow/versions/0.1.0+b/activate", vec![])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(!in_flight.is_finished(), "the swap must happen while the call runs");
    let new = send(&app, crate::http::post("/v1/plugins/slow/score", r#"{"features": {"ms": 1}}"#)).await;
    assert_eq!(new.json["version"], "0.1.0+b", "{}", new.text);
    let old = in_flight.await.unwrap();
    assert_eq!((old.status, &old.json["version"]), (StatusCode::OK, &json!("0.1.0")), "{}", old.text);
}

/// `scorehost_plugin_events_total{plugin="logreg", event=…}`, 0 when absent.
async fn logreg_events(app: &Arc<App>, event: &str) -> f64 {
    let m = send(app, Request::get("/metrics").body(Body::empty()).unwrap()).await.text;
    let event = format!("event=\"{event}\"");
    crate::metrics::sample(&m, "scorehost_plugin_events_total", &[r#"plugin="logreg""#, &event])
        .unwrap_or(0.0)
}

/// Polls (bounded: 10 s) until `event` has been counted `n` times.
async fn wait_for_events(app: &Arc<App>, event: &str, n: f64) -> f64 {
    for _ in 0..200 {
        if logreg_events(app, event).await >= n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    logreg_events(app, event).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_regates_a_copy_once_complete_and_leaves_evicted_versions_out() {
    let store = tempfile::tempdir().unwrap();
    let root = store.path().to_owned();
    let app = server(&root);
    let api = app.admin.as_ref().unwrap();
    let _watcher = scorehost::control::watch::watch(api.admin(), &root).unwrap();

    // A deploy tool that copies in place, pausing longer than the debounce
    // after the manifest: gated half-copied, it fails; once the copy is
    // complete its files changed, so it is gated again and passes (before:
    // rejected for good).
    let dest = root.join("logreg/0.1.0");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::copy(staged("logreg").join("plugin.toml"), dest.join("plugin.toml")).unwrap();
    assert_eq!(wait_for_events(&app, "gate_failed", 1.0).await, 1.0, "the half copy is gated and fails");
    copy_dir(&staged("logreg"), &dest);
    assert_eq!(wait_for_events(&app, "gate_passed", 1.0).await, 1.0, "the complete copy passes");

    // Four versions activated in turn with --keep-versions 3: the oldest is
    // evicted from memory, and the watcher (woken by every state.json) does
    // not gate it back in.
    let activate = |version: &str| {
        admin_req("POST", &format!("/admin/v1/plugins/logreg/versions/{version}/activate"), vec![])
    };
    let r = send(&app, activate("0.1.0")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let variants: Vec<_> =
        (2..=4).map(|i| logreg_variant(&format!("0.1.0+model.{i}"), 0.1 * i as f64, false)).collect();
    for (i, dir) in (2..=4).zip(&variants) {
        let version = format!("0.1.0+model.{i}");
        let path = format!("/admin/v1/plugins/logreg/versions/{version}");
        assert_eq!(send(&app, admin_req("PUT", &path, tar_of(dir.path()))).await.status, StatusCode::CREATED);
        let r = send(&app, activate(&version)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        logreg_events(&app, "gate_passed").await,
        4.0,
        "one gate per version, none for the evicted one"
    );
}

/// The status code of `GET path` over a real socket, with the admin token.
fn status_of(addr: std::net::SocketAddr, path: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_admin_address_the_admin_api_is_only_there() {
    let store = tempfile::tempdir().unwrap();
    let app = server(store.path());
    let public = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (public_addr, admin_addr) = (public.local_addr().unwrap(), admin.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(scorehost::http::server::serve_with_admin(public, admin, app, async {
        let _ = stopped.await;
    }));
    let statuses = tokio::task::spawn_blocking(move || {
        [
            status_of(public_addr, "/admin/v1/plugins"),
            status_of(public_addr, "/v1/plugins"),
            status_of(admin_addr, "/admin/v1/plugins"),
            status_of(admin_addr, "/v1/plugins"),
            status_of(admin_addr, "/healthz"),
        ]
    })
    .await
    .unwrap();
    assert_eq!(statuses, [404, 200, 200, 404, 200], "public: admin, plugins; admin: admin, plugins, healthz");
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
