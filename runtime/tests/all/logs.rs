//! Logs: every request has an id (the caller's `x-request-id`, or a new one),
//! echoed in the response and carried into every log line the request causes,
//! the plugin's own included, which are tagged with plugin and version and
//! rate-limited per version; `--log-format json` writes one JSON object per
//! line.

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use scorehost::http::ServerConfig;
use serde_json::Value;

use crate::http::{app, get, post, send};
use crate::metrics::sample;

/// Log output captured in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// The JSON log lines so far.
    fn lines(&self) -> Vec<Value> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

/// A subscriber writing JSON lines at INFO and above into `captured`.
fn json_logs(captured: &Captured) -> impl tracing::Subscriber + Send + Sync {
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish()
}

/// Runs `test` on a single-threaded runtime with JSON logs captured (the
/// subscriber is this thread's, so the runtime must not have other workers).
fn with_logs<F: Future<Output = ()>>(test: impl FnOnce(Captured) -> F) {
    let captured = Captured::default();
    let _guard = tracing::subscriber::set_default(json_logs(&captured));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(test(captured));
}

fn plugin_lines(lines: &[Value]) -> Vec<&Value> {
    lines.iter().filter(|l| l["target"] == "plugin").collect()
}

#[test]
fn the_request_id_reaches_the_plugins_log_lines() {
    let app = app(&["slow", "logreg"], ServerConfig::default());
    with_logs(|logs| async move {
        let mut req = post("/v1/plugins/slow/score", r#"{"features": {"log_lines": 2}}"#);
        req.headers_mut().insert("x-request-id", "checkout-7f3a".parse().unwrap());
        let r = send(&app, req).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.headers["x-request-id"], "checkout-7f3a");

        let lines = logs.lines();
        let from_plugin = plugin_lines(&lines);
        assert_eq!(from_plugin.len(), 2, "{lines:#?}");
        for (i, line) in from_plugin.iter().enumerate() {
            assert_eq!(line["fields"]["message"], format!("line {} of 2", i + 1));
            assert_eq!(line["fields"]["plugin"], "slow");
            assert_eq!(line["fields"]["version"], "0.1.0");
            assert_eq!(line["fields"]["request_id"], "checkout-7f3a", "{line}");
        }

        // A plugin fault is logged for the on-call engineer, with the id.
        let mut req = post("/v1/plugins/slow/score", r#"{"features": {"sleep_ms": 1}}"#);
        req.headers_mut().insert("x-request-id", "checkout-7f3b".parse().unwrap());
        assert_eq!(send(&app, req).await.status, StatusCode::INTERNAL_SERVER_ERROR);
        let lines = logs.lines();
        let fault = lines
            .iter()
            .find(|l| l["fields"]["request_id"] == "checkout-7f3b")
            .expect("a line for the fault");
        assert_eq!(
            (fault["level"].as_str(), fault["fields"]["kind"].as_str()),
            (Some("WARN"), Some("guest_trap"))
        );
    });
}

#[test]
fn a_missing_or_unusable_request_id_is_replaced_by_a_new_one() {
    let app = app(&["logreg"], ServerConfig::default());
    with_logs(|_| async move {
        let a = send(&app, get("/healthz")).await.headers["x-request-id"].to_str().unwrap().to_owned();
        let b = send(&app, get("/healthz")).await.headers["x-request-id"].to_str().unwrap().to_owned();
        for id in [&a, &b] {
            assert!(id.len() == 32 && id.bytes().all(|c| c.is_ascii_hexdigit()), "{id}");
        }
        assert_ne!(a, b);
        for bad in ["x".repeat(129), "has space".to_owned()] {
            let mut req = get("/healthz");
            req.headers_mut().insert("x-request-id", bad.parse().unwrap());
            let id = send(&app, req).await.headers["x-request-id"].to_str().unwrap().to_owned();
            assert!(id != bad && id.len() == 32, "{bad:?} was echoed as {id:?}");
        }
    });
}

#[test]
fn a_python_plugin_logs_through_the_sdk_within_the_same_caps() {
    let Some(dir) = crate::python::python_plugin("hostile-py") else { return };
    let v = crate::support::runtime().load(&dir).unwrap();
    with_logs(|logs| async move {
        let out = v.score_async(&crate::support::obj(serde_json::json!({"mode": "log-flood"})), None).await;
        assert_eq!(out.unwrap().value.score, 0.5);
        let lines = logs.lines();
        let from_plugin = plugin_lines(&lines);
        // 1,000 warnings sent, the per-call cap kept.
        assert_eq!(from_plugin.len(), scorehost::sandbox::host::MAX_LOG_LINES as usize, "{lines:#?}");
        let first = from_plugin[0];
        assert_eq!(first["fields"]["message"], "line 0");
        assert_eq!(first["level"], "WARN");
        assert_eq!(first["fields"]["plugin"], "hostile-py");
    });
}

#[test]
fn a_chatty_plugin_is_rate_limited_and_the_drops_are_counted() {
    let app = app(&["slow"], ServerConfig::default());
    with_logs(|logs| async move {
        // 100 lines per call (the per-call cap), 4 calls: 400 lines against a
        // burst of 200 per version.
        for _ in 0..4 {
            let r = send(&app, post("/v1/plugins/slow/score", r#"{"features": {"log_lines": 100}}"#)).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        }
        let lines = logs.lines();
        let kept = plugin_lines(&lines).len();
        assert!((200..260).contains(&kept), "{kept} plugin lines kept");
        let m = send(&app, get("/metrics")).await.text;
        let dropped = sample(&m, "scorehost_plugin_log_lines_dropped_total", &[r#"plugin="slow""#]).unwrap();
        assert_eq!(dropped as usize, 400 - kept, "{m}");
        // The host says so, once.
        let notices = lines
            .iter()
            .filter(|l| l["fields"]["message"].as_str().is_some_and(|m| m.contains("log rate limit")));
        assert_eq!(notices.count(), 1);
    });
}

#[test]
fn uploads_and_store_start_up_report_their_progress() {
    use scorehost::control::admin::Admin;
    use scorehost::serving::registry::Registry;

    let store = tempfile::tempdir().unwrap();
    let runtime = Arc::new(
        scorehost::Runtime::new(scorehost::PoolSize { instances: 16, ..Default::default() }, None).unwrap(),
    );
    let captured = Captured::default();
    tracing::subscriber::with_default(json_logs(&captured), || {
        let (admin, _) =
            Admin::open(store.path(), runtime.clone(), Arc::new(Registry::default()), 3).unwrap();
        let tar = crate::admin::tar_of(&crate::support::staged("logreg"));
        admin.upload("logreg", "0.1.0", &tar).unwrap();
        admin.activate("logreg", "0.1.0").unwrap();
        // A restart loads the store again, version by version.
        Admin::open(store.path(), runtime.clone(), Arc::new(Registry::default()), 3).unwrap();
    });
    let messages: Vec<String> =
        captured.lines().iter().filter_map(|l| l["fields"]["message"].as_str().map(str::to_owned)).collect();
    let position = |needle: &str| {
        messages
            .iter()
            .position(|m| m.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in {messages:#?}"))
    };
    let unpacked = position("upload: logreg@0.1.0:");
    let compiled = position("gate: logreg@0.1.0 compiled in");
    let passed = position("gate: logreg@0.1.0 passed 3 vector(s)");
    let restart = position("[1/1] store: loading logreg@0.1.0");
    assert!(unpacked < compiled && compiled < passed && passed < restart, "{messages:#?}");
    assert!(messages[restart..].iter().any(|m| m.contains("gate: logreg@0.1.0 passed")), "{messages:#?}");
}
