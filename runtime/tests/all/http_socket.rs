//! The server over real sockets, in process: the header-read timeout,
//! stalled, idle and excess connections, and graceful shutdown. (The
//! `scorehost serve` binary over sockets is tested in `runtime/cli/tests`.)

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use scorehost::http::{ServerConfig, server};
use serde_json::Value;

use crate::http::{FRAUD, app, logreg_body};

/// `app` served on a free loopback port by [`server::serve`]: its address,
/// and the server, which [`Serving::stop`] shuts down gracefully.
pub struct Serving {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Serving {
    pub async fn start(app: std::sync::Arc<scorehost::http::App>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(server::serve(listener, app, async {
            let _ = stopped.await;
        }));
        Self { addr, stop: Some(stop), server }
    }

    /// Tells the server to shut down (it stops accepting and drains).
    pub fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Shuts the server down and waits for it to drain.
    pub async fn stop(mut self) {
        self.signal_stop();
        self.server.await.unwrap().unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_by_the_header_timeout() {
    let cfg = ServerConfig { header_read_timeout: Duration::from_millis(300), ..ServerConfig::default() };
    let app = app(&["logreg"], cfg);
    let serving = Serving::start(app).await;
    let addr = serving.addr;
    let closed = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"POST /v1/plugins/logreg/score HTTP/1.1\r\nHost: x\r\n").unwrap(); // never finishes
        let started = Instant::now();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf); // returns when the server closes the connection
        started.elapsed()
    })
    .await
    .unwrap();
    assert!(closed < Duration::from_secs(5), "connection held for {closed:?}");
    // A client that connects and sends nothing at all is cut off the same way.
    let silent = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let started = Instant::now();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        started.elapsed()
    })
    .await
    .unwrap();
    assert!(silent < Duration::from_secs(5), "silent connection held for {silent:?}");
    serving.stop().await;
}

/// How long until the server closes `s` (EOF or reset), at most `limit`.
fn closed_after(mut s: TcpStream, limit: Duration) -> Duration {
    s.set_read_timeout(Some(limit)).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_idle_and_excess_connections_are_closed_and_the_server_keeps_answering() {
    let cfg = ServerConfig {
        header_read_timeout: Duration::from_millis(1000),
        idle_timeout: Duration::from_millis(1500),
        max_connections: 40,
        ..ServerConfig::default()
    };
    let app = app(&["logreg"], cfg);
    let serving = Serving::start(app).await;
    let addr = serving.addr;
    let score = async || post_json(addr, false, "/v1/plugins/logreg/score", &logreg_body()).await.0;

    // 30 connections that start the HTTP/2 preface and stall: protocol
    // detection is bounded by the header timeout (before: open for good).
    let stalled: Vec<TcpStream> = (0..30)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"PRI").unwrap();
            s
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(score().await, 200, "answers while 30 stalled connections are open");

    // A keep-alive connection that made one request, then idles.
    let (first, idle_conn) = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut first = [0u8; 12];
        s.read_exact(&mut first).unwrap();
        (String::from_utf8_lossy(&first).into_owned(), s)
    })
    .await
    .unwrap();
    assert_eq!(first, "HTTP/1.1 200", "{first}");
    let answered = Instant::now();
    let idle = tokio::task::spawn_blocking(move || {
        closed_after(idle_conn, Duration::from_secs(10));
        answered.elapsed()
    });

    // 20 more silent ones: past the cap of 40, the excess is closed at once.
    let opened = Instant::now();
    let extra: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let waits = tokio::task::spawn_blocking(move || {
        let handles: Vec<_> = stalled
            .into_iter()
            .chain(extra)
            .map(|s| std::thread::spawn(move || closed_after(s, Duration::from_secs(10))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>()
    });
    let waits = waits.await.unwrap();
    let prompt = waits.iter().filter(|w| **w < Duration::from_millis(500)).count();
    assert!(prompt >= 10, "at least the 10 over the cap are closed at once: {waits:?}");
    assert!(
        waits.iter().all(|w| *w < Duration::from_millis(3500)),
        "every stalled connection is closed within the header timeout and a second's grace: {waits:?}"
    );
    let idle_for = idle.await.unwrap();
    // HTTP/1.1 waits for its next request's headers under hyper's header
    // timeout (1 s here), which comes first.
    assert!(
        idle_for >= Duration::from_millis(900) && idle_for < Duration::from_millis(4500),
        "an idle HTTP/1.1 connection is closed: {idle_for:?}"
    );
    // An HTTP/2 connection idle after one request: closed (GOAWAY) after the
    // idle timeout, 1.5 s (before: kept open by pings for good).
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    let conn = tokio::spawn(conn);
    let req =
        Request::get("/healthz").header("host", addr.to_string()).body(Full::new(Bytes::new())).unwrap();
    assert_eq!(h2.send_request(req).await.unwrap().status(), 200);
    let answered = Instant::now();
    let _ = tokio::time::timeout(Duration::from_secs(10), conn)
        .await
        .expect("the server closes an idle h2 connection");
    let h2_idle = answered.elapsed();
    assert!(
        h2_idle >= Duration::from_millis(1400) && h2_idle < Duration::from_millis(4500),
        "an idle HTTP/2 connection is closed after the idle timeout: {h2_idle:?}"
    );
    assert!(opened.elapsed() < Duration::from_secs(12));
    assert_eq!(score().await, 200, "answers after");
    serving.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_and_refuses_new() {
    let app = app(&["slow", "txn-features", "logreg"], ServerConfig::default());
    assert!(scorehost::serving::pipeline::Pipelines::parse(FRAUD, &app.registry).is_ok());
    let mut serving = Serving::start(app.clone()).await;
    let addr = serving.addr;
    let in_flight = tokio::spawn(async move {
        post_json(addr, false, "/v1/plugins/slow/score", &serde_json::json!({"features": {"ms": 500}})).await
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    serving.signal_stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(app.is_draining());
    assert!(TcpStream::connect(addr).is_err(), "new connections must be refused while draining");
    let (status, json) = in_flight.await.unwrap();
    assert_eq!(status, 200, "the in-flight request must finish: {json}");
    assert_eq!(json["score"], 500.0);
    serving.stop().await;
}

/// The status of `GET path` on a new connection to `addr`.
fn get_status(addr: SocketAddr, path: &str) -> u16 {
    let mut s = TcpStream::connect(addr).expect("the server still accepts");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_delay_keeps_accepting_with_readyz_503_before_closing() {
    let config = ServerConfig { drain_delay: Duration::from_millis(1500), ..ServerConfig::default() };
    let app = app(&["logreg"], config);
    let mut serving = Serving::start(app.clone()).await;
    let addr = serving.addr;
    assert_eq!(tokio::task::spawn_blocking(move || get_status(addr, "/readyz")).await.unwrap(), 200);
    serving.signal_stop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(app.is_draining());
    // Within the delay: new connections are still taken; readiness says go
    // away, scoring still answers (a load balancer's last requests).
    assert_eq!(tokio::task::spawn_blocking(move || get_status(addr, "/readyz")).await.unwrap(), 503);
    assert_eq!(post_json(addr, false, "/v1/plugins/logreg/score", &logreg_body()).await.0, 200);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert!(TcpStream::connect(addr).is_err(), "after the delay the listener is closed");
    serving.stop().await;
}
