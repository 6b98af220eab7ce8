//! # hammer — a bounded loopback load generator for the isolation and soak scripts
//!
//! Sends JSON POSTs to a scorehost on loopback, from a weighted mix of
//! targets, either **open loop** at a fixed total rate (`--rate N`: requests
//! are due on a schedule whether or not earlier ones have answered — the way
//! independent callers arrive; a request that finds every connection busy is
//! counted as `skipped`, never queued without bound) or **closed loop**
//! (`--rate 0`: every connection sends its next request as soon as the last
//! one is answered — the way to find the maximum throughput).
//!
//! Bounded in time (`--duration`) and count (`--max-requests`). Prints one
//! JSON object: per target, the count of each status and error kind, req/s,
//! and the latency p50/p99 in µs.
//!
//! ```sh
//! hammer --addr 127.0.0.1:8080 --duration 10 --connections 16 --rate 0 \
//!        --target 'logreg,/v1/plugins/logreg/score,logreg.json,1'
//! ```
//!
//! A target is `name,path,body-file,weight`. Used by `benches/isolation.sh`
//! and `benches/soak.sh`. In a body, `{seq}` becomes the request's sequence
//! number and `{pick:N}` a number in `0..N` spread over the sequence (so a
//! stateful pipeline sees new event ids and many cards: `benches/state.sh`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::Mutex;

#[derive(Parser)]
#[command(about = "Bounded loopback load for scorehost (open or closed loop).")]
struct Args {
    /// Server address (loopback).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Seconds to run.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Total requests per second, open loop; 0 = closed loop.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Stop after this many requests, whatever the time.
    #[arg(long, default_value_t = 50_000_000)]
    max_requests: u64,
    /// `name,path,body-file,weight`; repeatable.
    #[arg(long = "target", required = true)]
    targets: Vec<String>,
    /// Count 2xx answers per plugin version (`200 v=0.2.0`), for rollouts.
    #[arg(long)]
    versions: bool,
}

struct Target {
    name: String,
    path: String,
    body: Bytes,
    /// Whether `body` holds `{seq}` or `{pick:N}` to fill per request.
    templated: bool,
}

/// Requests sent so far, over every target: the `{seq}` of the next.
static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Target {
    /// The body of the next request: the file, its placeholders filled.
    fn body(&self) -> Bytes {
        if !self.templated {
            return self.body.clone();
        }
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let text = std::str::from_utf8(&self.body).expect("a templated body is UTF-8");
        let mut out = String::with_capacity(text.len() + 16);
        let mut rest = text;
        while let Some(at) = rest.find('{') {
            out.push_str(&rest[..at]);
            rest = &rest[at..];
            if let Some(after) = rest.strip_prefix("{seq}") {
                out.push_str(&seq.to_string());
                rest = after;
            } else if let Some((n, after)) = rest.strip_prefix("{pick:").and_then(|r| r.split_once('}')) {
                let n: u64 = n.parse().expect("{pick:N} takes a whole number");
                // A multiplicative hash: consecutive requests land far apart.
                out.push_str(&(seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) % n.max(1)).to_string());
                rest = after;
            } else {
                out.push('{');
                rest = &rest[1..];
            }
        }
        out.push_str(rest);
        out.into()
    }
}

#[derive(Default)]
struct Tally {
    by_outcome: BTreeMap<String, u64>,
    latencies_us: Vec<u64>,
}

fn parse_target(spec: &str) -> (Target, u32) {
    let parts: Vec<&str> = spec.split(',').collect();
    assert!(parts.len() == 4, "target {spec:?} must be name,path,body-file,weight");
    let body = std::fs::read(parts[2]).unwrap_or_else(|e| panic!("reading {}: {e}", parts[2]));
    let weight = parts[3].parse().unwrap_or_else(|_| panic!("weight of {spec:?} must be an integer"));
    let templated = body.windows(5).any(|w| w == b"{seq}") || body.windows(6).any(|w| w == b"{pick:");
    (Target { name: parts[0].into(), path: parts[1].into(), body: body.into(), templated }, weight)
}

fn main() {
    let args = Args::parse();
    let mut targets = Vec::new();
    let mut schedule = Vec::new(); // target index per slot, by weight
    for spec in &args.targets {
        let (t, w) = parse_target(spec);
        for _ in 0..w {
            schedule.push(targets.len());
        }
        targets.push(t);
    }
    assert!(!schedule.is_empty(), "every target has weight 0");
    // One worker thread: the load generator must not compete with the server
    // for more than one of the machine's cores.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio");
    let summary = rt.block_on(run(args, Arc::new(targets), Arc::new(schedule)));
    println!("{}", serde_json::to_string_pretty(&summary).expect("json"));
}

async fn run(args: Args, targets: Arc<Vec<Target>>, schedule: Arc<Vec<usize>>) -> Value {
    let tallies: Arc<Vec<std::sync::Mutex<Tally>>> =
        Arc::new(targets.iter().map(|_| std::sync::Mutex::new(Tally::default())).collect());
    let issued = Arc::new(AtomicU64::new(0));
    let skipped = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.duration);
    let closed = args.rate <= 0.0;
    // Open loop: a ticker hands out due requests through a bounded channel.
    let (tx, rx) = tokio::sync::mpsc::channel::<usize>(args.connections);
    let rx = Arc::new(Mutex::new(rx));
    let mut workers = Vec::new();
    for c in 0..args.connections {
        let (targets, schedule, tallies, issued, rx) =
            (targets.clone(), schedule.clone(), tallies.clone(), issued.clone(), rx.clone());
        let (addr, max, versions) = (args.addr, args.max_requests, args.versions);
        workers.push(tokio::spawn(async move {
            let mut conn = None;
            let mut n = c; // stagger the closed-loop mix per connection
            loop {
                let target = if closed {
                    if Instant::now() >= end || issued.fetch_add(1, Ordering::Relaxed) >= max {
                        break;
                    }
                    n += 1;
                    schedule[n % schedule.len()]
                } else {
                    match rx.lock().await.recv().await {
                        Some(t) => t,
                        None => break,
                    }
                };
                let t = &targets[target];
                let began = Instant::now();
                let outcome = send(&mut conn, addr, t, versions).await;
                let us = began.elapsed().as_micros() as u64;
                let mut tally = tallies[target].lock().expect("tally");
                *tally.by_outcome.entry(outcome).or_default() += 1;
                tally.latencies_us.push(us);
            }
        }));
    }
    if !closed {
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        let mut sent = 0u64;
        while Instant::now() < end && sent < args.max_requests {
            tick.tick().await;
            let due = (start.elapsed().as_secs_f64() * args.rate) as u64;
            while sent < due.min(args.max_requests) {
                let target = schedule[(sent as usize) % schedule.len()];
                if tx.try_send(target).is_err() {
                    skipped.fetch_add(1, Ordering::Relaxed);
                }
                sent += 1;
            }
        }
        drop(tx);
    }
    for w in workers {
        let _ = w.await;
    }
    let secs = start.elapsed().as_secs_f64();
    let mut per_target = serde_json::Map::new();
    for (t, tally) in targets.iter().zip(tallies.iter()) {
        let mut tally = tally.lock().expect("tally");
        tally.latencies_us.sort_unstable();
        let n = tally.latencies_us.len();
        let pct = |p: f64| if n == 0 { 0 } else { tally.latencies_us[((n as f64 * p) as usize).min(n - 1)] };
        per_target.insert(
            t.name.clone(),
            json!({
                "requests": n,
                "rps": n as f64 / secs,
                "p50_us": pct(0.50),
                "p99_us": pct(0.99),
                "outcomes": tally.by_outcome,
            }),
        );
    }
    json!({
        "seconds": secs,
        "mode": if closed { "closed" } else { "open" },
        "rate": args.rate,
        "connections": args.connections,
        "skipped": skipped.load(Ordering::Relaxed),
        "targets": per_target,
    })
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// One request on this worker's keep-alive connection (reconnecting when the
/// server closed it). The outcome is `<status>` or `<status> <error kind>`,
/// or `io: …` when the connection failed; with `versions`, a 2xx outcome
/// also names the version that answered (`200 v=0.2.0`).
async fn send(conn: &mut Option<Sender>, addr: SocketAddr, t: &Target, versions: bool) -> String {
    for _ in 0..2 {
        if conn.as_ref().is_none_or(|c| c.is_closed()) {
            match connect(addr).await {
                Ok(c) => *conn = Some(c),
                Err(e) => return format!("io: {e}"),
            }
        }
        let sender = conn.as_mut().expect("connected");
        if sender.ready().await.is_err() {
            *conn = None;
            continue;
        }
        let req = hyper::Request::post(t.path.as_str())
            .header("host", "bench")
            .header("content-type", "application/json")
            .body(Full::new(t.body()))
            .expect("request");
        let res = match sender.send_request(req).await {
            Ok(res) => res,
            Err(_) => {
                *conn = None;
                continue;
            }
        };
        let status = res.status().as_u16();
        let body = match res.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return format!("io: {e}"),
        };
        if status < 300 {
            let json = serde_json::from_slice::<Value>(&body).ok();
            let fallback = json.as_ref().and_then(|v| v["fallback"]["kind"].as_str().map(str::to_owned));
            let version = json.as_ref().and_then(|v| v["version"].as_str()).filter(|_| versions);
            return match (fallback, version) {
                (Some(kind), _) => format!("{status} fallback:{kind}"),
                (None, Some(v)) => format!("{status} v={v}"),
                (None, None) => status.to_string(),
            };
        }
        let kind = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["error"]["kind"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "?".into());
        return format!("{status} {kind}");
    }
    "io: connection closed twice".into()
}

async fn connect(addr: SocketAddr) -> std::io::Result<Sender> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    Ok(sender)
}
