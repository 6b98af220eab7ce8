//! What real-time state costs a call (docs/performance.md, "Real-time
//! state"), each against a baseline measured in the same run:
//!
//! - `state/memory/exchange-hot`: velocity's exchange (three observations
//!   under one event id, one lookup) on the in-process store, one card, one
//!   e-mail, one IP over and over — tiles and sketches warm;
//! - `state/memory/exchange-spread`: the same over 100,000 cards, e-mails
//!   and IPs — mostly new or cold entities;
//! - `call/velocity/memory` vs `call/velocity/off` vs `call/txn-features`:
//!   the velocity plugin's whole extract call with its state in process, and
//!   with the store off (the exchange fails at once: the plugin's own work),
//!   and a stateless extractor of similar size;
//! - `state/redis/ping` vs `state/redis/exchange`: on an idle `redis-server`
//!   on loopback (started here; skipped with a message when it is not
//!   installed), a bare `PING` on the same kind of connection the store uses
//!   (the round trip: both sockets, the connection task, the wake-ups) and
//!   velocity's whole exchange (the same plus one run of the script), each
//!   from a two-worker tokio runtime as `serve` has on this machine.
//!
//! Run: `cargo bench -p scorehost-benches --bench state` (`-- --quick` for a
//! fast pass). The Redis backend under load: `benches/state.sh`.

// criterion_group! generates an undocumented `pub fn benches`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use scorehost::state::backend::{self, Access, Backend, now_ms};
use scorehost::state::exchange::{Lookup, Mode, Observation, Request};
use scorehost::state::memory::MemStore;
use scorehost::state::redis::RedisStore;
use scorehost::{PoolSize, Runtime};
use scorehost_benches::{payment_event, staged};
use serde_json::{Map, Value, json};

/// Velocity's request for payment `i` of card `card`.
fn request(i: u64, card: u64, now: i64) -> Request {
    let key = Some(format!("evt-{i}"));
    let o = |aggregate: &str, entity: String, value: i64, item: Option<String>| Observation {
        aggregate: aggregate.into(),
        entity,
        time_ms: now,
        value,
        item,
        idempotency_key: key.clone(),
    };
    Request {
        observe: vec![
            o("card", format!("card-{card}"), 4250, None),
            o("email_cards", format!("u{card}@example.com"), 0, Some(format!("card-{card}"))),
            o("ip", format!("10.0.{}.{}", card / 250 % 250, card % 250), 0, None),
        ],
        query: Vec::new(),
        lookups: vec![Lookup {
            table: "card_stats".into(),
            entity: format!("card-{card}"),
            fields: vec!["chargeback_rate".into()],
        }],
    }
}

/// The payment as velocity reads it (it refuses fields it does not declare),
/// at the time of the call (the fixture's 2025 timestamp would be `late`).
fn velocity_event() -> Map<String, Value> {
    let p = payment_event();
    let mut e: Map<String, Value> =
        ["amount", "currency", "email", "ip"].iter().map(|k| ((*k).to_owned(), p[*k].clone())).collect();
    e.insert("card".into(), json!("card-7"));
    e
}

fn exchange(c: &mut Criterion) {
    let runtime = Runtime::new(PoolSize { instances: 16, ..Default::default() }, None).expect("runtime");
    let velocity = runtime.load(&staged("velocity")).expect("velocity");
    let ns = velocity.manifest().state().expect("velocity declares [state]");
    let now = now_ms();
    let mut g = c.benchmark_group("state/memory");
    let store = MemStore::new();
    store.put_lookup("card_stats", "card-7", [("chargeback_rate".into(), "0.01".into())]);
    let mut i = 0;
    g.bench_function("exchange-hot", |b| {
        b.iter(|| {
            i += 1;
            store.exchange(&ns, now, black_box(&request(i, 7, now)), Mode::Record).expect("exchange")
        })
    });
    let store = MemStore::new();
    g.bench_function("exchange-spread", |b| {
        b.iter(|| {
            i += 1;
            store
                .exchange(&ns, now, black_box(&request(i, i % 100_000, now)), Mode::Record)
                .expect("exchange")
        })
    });
    g.finish();

    let ex = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("executor");
    let txn = runtime.load(&staged("txn-features")).expect("txn-features");
    let mut g = c.benchmark_group("call");
    for (label, b) in [("memory", Backend::Memory(Arc::new(MemStore::new()))), ("off", Backend::Off)] {
        let mut event = velocity_event();
        g.bench_function(format!("velocity/{label}"), |bench| {
            bench.iter(|| {
                i += 1;
                event.insert("event_id".into(), Value::String(format!("evt-{i}")));
                let call = velocity.extract_async(black_box(&event), None);
                ex.block_on(backend::scope(Access::Live(b.clone()), call)).expect("extract")
            })
        });
    }
    let event = payment_event();
    g.bench_function("txn-features", |bench| {
        bench.iter(|| {
            i += 1;
            black_box(format!("evt-{i}")); // as the velocity calls do
            ex.block_on(txn.extract_async(black_box(&event), None)).expect("extract")
        })
    });
    g.finish();
}

/// A `redis-server` on a free loopback port, stopped when dropped.
struct RedisServer {
    child: std::process::Child,
    port: u16,
}

impl RedisServer {
    fn start() -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let server = Self { child, port };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(server);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        None
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn redis(c: &mut Criterion) {
    let Some(server) = RedisServer::start() else {
        eprintln!("state/redis: skipped, redis-server is not installed (apt-get install redis-server)");
        return;
    };
    let url = format!("redis://127.0.0.1:{}/0", server.port);
    let ex =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("executor");
    let runtime = Runtime::new(PoolSize { instances: 1, ..Default::default() }, None).expect("runtime");
    let velocity = runtime.load(&staged("velocity")).expect("velocity");
    let ns = velocity.manifest().state().expect("velocity declares [state]");
    let timeout = std::time::Duration::from_millis(50);
    let store = ex.block_on(async { RedisStore::connect(&url, "sh:", timeout) }).expect("store");
    let mut conn = ex
        .block_on(redis::aio::ConnectionManager::new(redis::Client::open(url.as_str()).expect("url")))
        .expect("connection");
    let mut g = c.benchmark_group("state/redis");
    g.bench_function("ping", |b| {
        b.iter(|| ex.block_on(redis::cmd("PING").query_async::<String>(&mut conn)).expect("ping"))
    });
    // The floor: PING on a bare socket, no connection task in between.
    let mut raw = ex.block_on(tokio::net::TcpStream::connect(("127.0.0.1", server.port))).expect("socket");
    raw.set_nodelay(true).expect("nodelay");
    g.bench_function("ping-bare-socket", |b| {
        b.iter(|| {
            ex.block_on(async {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                raw.write_all(b"PING\r\n").await.expect("write");
                let mut reply = [0u8; 7];
                raw.read_exact(&mut reply).await.expect("read");
                reply
            })
        })
    });
    let now = now_ms();
    let mut i = 0;
    g.bench_function("exchange", |b| {
        b.iter(|| {
            i += 1;
            let request = request(i, i % 5_000, now);
            ex.block_on(store.exchange(&ns, now, black_box(&request), Mode::Record, timeout))
                .expect("exchange")
        })
    });
    g.finish();
}

criterion_group!(benches, exchange, redis);
criterion_main!(benches);
