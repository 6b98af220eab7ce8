//! The plugin store and the admin API, in-process: upload → gate → activate →
//! rollback; a failing gate leaves the live version serving; tokens; names
//! that try to leave the store; oversize and unsafe archives; and a partial
//! upload left by a crash, ignored (and removed) at start-up.

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use scorehost::admin::Admin;
use scorehost::http::admin::AdminApi;
use scorehost::http::{App, ServerConfig};
use scorehost::pipeline::Pipelines;
use scorehost::registry::Registry;
use serde_json::{Value, json};

use crate::http::{Reply, send};
use crate::support::{copy_with, staged};

const TOKEN: &str = "s3cret-admin-token";

/// A server over an empty (or existing) store at `root`, built off the async
/// workers (loading runs `init`).
fn server(root: &Path) -> Arc<App> {
    let root = root.to_owned();
    std::thread::spawn(move || {
        let runtime = Arc::new(scorehost::Runtime::new(scorehost::PoolSize { instances: 32 }, None).unwrap());
        let registry = Arc::new(Registry::default());
        let (admin, _) = Admin::open(&root, runtime, registry.clone(), 3).unwrap();
        App::with_admin(
            registry,
            Pipelines::default(),
            ServerConfig::default(),
            Some(AdminApi::new(admin, TOKEN, 1 << 20)),
        )
    })
    .join()
    .unwrap()
}

/// A tar of the contents of `dir`.
fn tar_of(dir: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.append_dir_all(".", dir).unwrap();
    b.into_inner().unwrap()
}

fn admin_req(method: &str, path: &str, body: Vec<u8>) -> Request<Body> {
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
fn logreg_variant(version: &str, shift: f64, stale_vectors: bool) -> tempfile::TempDir {
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
    let (_, scan) = scorehost::store::PluginStore::open(store.path()).unwrap();
    assert_eq!(scan.removed_partials, vec![".staging/logreg@0.2.0.123.456".to_owned()]);
    assert!(scan.versions.is_empty());
    assert!(!partial.exists());
    // And the server starts on such a store with nothing live.
    std::fs::create_dir_all(&partial).unwrap();
    let app = server(store.path());
    assert!(app.registry.is_empty());
}
