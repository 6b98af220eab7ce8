//! The `scorehost serve` binary over real sockets: HTTP/1.1 and h2c, SIGTERM,
//! and start-up refusing two plugins with one name. (The server itself, in
//! process, is tested in the library's `tests/all/http_socket.rs`.)

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

use crate::support::{copy_with, logreg_body};

/// `scorehost serve` on an ephemeral port; killed on drop.
struct Served {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve_binary(cache: &std::path::Path) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_scorehost"))
        .args(["--cache-dir", cache.to_str().unwrap(), "serve", "--addr", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut addr = None;
    for line in stderr.lines().map_while(Result::ok) {
        if let Some(rest) = line.split("on http://").nth(1) {
            addr = rest.trim().parse().ok();
            break;
        }
        if Instant::now() > deadline {
            break;
        }
    }
    match addr {
        Some(addr) => Served { child, addr },
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("scorehost serve did not start listening");
        }
    }
}

async fn post_json(addr: SocketAddr, http2: bool, path: &str, body: &Value) -> (u16, Value) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let io = TokioIo::new(stream);
    let req = Request::post(path)
        .header("content-type", "application/json")
        .header("host", addr.to_string())
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let res = if http2 {
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await.unwrap();
        tokio::spawn(conn);
        send.send_request(req).await.unwrap()
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        send.send_request(req).await.unwrap()
    };
    let status = res.status().as_u16();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_binary_serves_the_bundled_examples_over_http1_and_h2c() {
    let cache = tempfile::tempdir().unwrap();
    let served = serve_binary(cache.path());
    for http2 in [false, true] {
        let (status, json) = post_json(served.addr, http2, "/v1/plugins/logreg/score", &logreg_body()).await;
        assert_eq!(status, 200, "http2={http2}: {json}");
        assert_eq!(json["plugin"], "logreg");
        let event = json!({"event": {"event_id": "e1", "card": "c1", "amount": 10, "currency": "USD", "timestamp": 0}});
        let (status, json) = post_json(served.addr, http2, "/v1/pipelines/fraud", &event).await;
        assert_eq!(status, 200, "http2={http2}: {json}");
        let basic = json!({"event": {"amount": 10, "currency": "USD", "timestamp": 0}});
        let (status, json) = post_json(served.addr, http2, "/v1/pipelines/fraud-basic", &basic).await;
        assert_eq!(status, 200, "http2={http2}: {json}");
    }
    let (status, _) = post_json(served.addr, false, "/v1/plugins/gbdt/score", &json!({"features": {}})).await;
    assert_eq!(status, 200, "gbdt with every feature missing still scores");
}

#[test]
fn sigterm_drains_and_exits_cleanly() {
    let cache = tempfile::tempdir().unwrap();
    let mut served = serve_binary(cache.path());
    let pid = served.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = served.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "serve did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    // The process has exited, so its listener is gone; probing the port here
    // would race with other tests binding ephemeral ports.
    assert!(status.success(), "{status:?}");
}

#[test]
fn two_plugins_with_one_name_fail_start_up() {
    let root = tempfile::tempdir().unwrap();
    for copy in ["a", "b"] {
        let dir = copy_with("logreg", |m| m);
        let dest = root.path().join(copy);
        std::fs::rename(dir.path(), &dest)
            .or_else(|_| Command::new("cp").arg("-r").arg(dir.path()).arg(&dest).status().map(|_| ()))
            .unwrap();
    }
    let cache = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_scorehost"))
        .args(["--cache-dir", cache.path().to_str().unwrap(), "serve", "--addr", "127.0.0.1:0", "--plugins"])
        .arg(root.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("both declare plugin `logreg`"), "{stderr}");
}
