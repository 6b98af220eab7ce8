//! The Redis state backend: every replica of a fleet reads and writes the
//! same counts. One exchange is **one `EVALSHA`** of `redis.lua`: the host
//! plans every key and number ([`Plan`]), the script claims the idempotency
//! keys, records, then sums each window's tiles, atomically, and answers a
//! few numbers per window: the same answers as the in-process store
//! ([`super::memory`]; `benches/state_replay.py` compares both).
//!
//! Keys (`P` = the prefix, `sh:` by default; names are `[a-z0-9_-]`, so
//! only the entity, always last, may contain `:`):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P p:{plugin}:a:{aggregate}:{level}:{page}:{entity}` | hash | tiles `60·page … 60·page+59` of a level: field `t{i}` = `"count:sum:max"` of tile `60·page+i` |
//! | `P p:{plugin}:d:{aggregate}:{level}:{tile}:{entity}` | HyperLogLog | the distinct items of one tile |
//! | `P p:{plugin}:i:{idempotency key}` | string | a claimed event id, expiring after `dedupe` |
//! | `P l:{table}:{entity}` | hash | an offline table's features: field → value, written by batch jobs |
//!
//! (without the spaces). Levels are `1m`, `5m`, `1h`, `6h`, `1d`; a tile is
//! `floor(time_ms / level)`. Every aggregate key expires when no accepted
//! read can reach it any more ([`Namespace::retention_ms`] after its last
//! tile ends), so Redis holds a bounded history without a sweeper.
//!
//! While Redis is down an exchange fails fast: after a connection error the
//! store answers `unavailable` without trying for [`DOWN_FOR`], then lets
//! one exchange probe, so an outage costs a call microseconds, not a queue
//! behind the reconnect.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, Value};

use super::exchange::{
    Answer, Mode, Namespace, Request, Response, StateError, Status, WindowAnswer, check, timing,
};
use super::tiles::Stats;
use super::window::{MINUTE_MS, Window, tile_of};

/// Tiles per page hash.
const PAGE: i64 = 60;
/// How long the store answers `unavailable` without trying after a connection error.
pub const DOWN_FOR: Duration = Duration::from_millis(200);
/// Exchanges timed out in a row after which Redis counts as down.
pub const TIMEOUTS_TO_DOWN: u32 = 3;

/// The script (a writing script: with `#!lua`, Redis refuses it up front
/// when over `maxmemory`, before any write). A shadow's exchange runs it in
/// mode `r`, in which it writes nothing. (It cannot be flagged `no-writes`:
/// Redis counts `PFCOUNT` as a write there, as it may cache its estimate.)
fn script() -> Script {
    Script::new(concat!("#!lua\n", include_str!("redis.lua")))
}

/// The label of a tile level in keys.
fn level(tile_ms: i64) -> &'static str {
    match tile_ms / MINUTE_MS {
        1 => "1m",
        5 => "5m",
        60 => "1h",
        360 => "6h",
        _ => "1d",
    }
}

/// The key of a tile page.
pub fn page_key(
    prefix: &str,
    plugin: &str,
    aggregate: &str,
    tile_ms: i64,
    page: i64,
    entity: &str,
) -> String {
    format!("{prefix}p:{plugin}:a:{aggregate}:{}:{page}:{entity}", level(tile_ms))
}

/// The key of a tile's HyperLogLog.
pub fn distinct_key(
    prefix: &str,
    plugin: &str,
    aggregate: &str,
    tile_ms: i64,
    tile: i64,
    entity: &str,
) -> String {
    format!("{prefix}p:{plugin}:d:{aggregate}:{}:{tile}:{entity}", level(tile_ms))
}

/// The key of an offline table's row: what a batch job writes with `HSET`.
pub fn lookup_key(prefix: &str, table: &str, entity: &str) -> String {
    format!("{prefix}l:{table}:{entity}")
}

/// The Redis backend.
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    script: Script,
    /// Exchanges timed out in a row: at [`TIMEOUTS_TO_DOWN`], Redis counts as down.
    timeouts: std::sync::atomic::AtomicU32,
    /// Until when (ms since `epoch`) exchanges fail fast; 0 when up.
    down_until: AtomicU64,
    epoch: Instant,
    /// `EVALSHA`s sent, for `scorehost_state_round_trips_total`.
    round_trips: AtomicU64,
    /// The last error that marked Redis down, for messages.
    last_error: Mutex<String>,
    /// Most an exchange waits (`--state-timeout-ms`).
    timeout: Duration,
}

impl RedisStore {
    /// A store on `url` (`redis://host:port/db`) with keys under `prefix`,
    /// waiting at most `timeout` per exchange. Connects lazily: the server may
    /// be down now and come up later. Must be called inside a tokio runtime
    /// (the connection manager spawns a task).
    pub fn connect(url: &str, prefix: &str, timeout: Duration) -> Result<Self, StateError> {
        let client = redis::Client::open(url)
            .map_err(|e| StateError::Unavailable(format!("bad Redis URL {url:?}: {e}")))?;
        // Each exchange is bounded by its own timeout; these only keep a dead
        // server from tying up the reconnect for long. No retries inside a
        // reconnect: a refused connection fails the exchange at once (and marks
        // Redis down), and the next exchange after `DOWN_FOR` tries again.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(250)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(0)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| StateError::Unavailable(format!("cannot set up the Redis connection: {e}")))?;
        let script = script();
        // Loaded ahead, so the first exchange is one round trip too; if Redis
        // is down now, the first `EVALSHA` after it is up loads it (NOSCRIPT).
        let (mut preload, ahead) = (conn.clone(), script.clone());
        tokio::spawn(async move {
            if let Err(e) = ahead.prepare_invoke().load_async(&mut preload).await {
                tracing::debug!(target: "scorehost::state", "state script not preloaded: {e}");
            }
        });
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
            script,
            timeouts: std::sync::atomic::AtomicU32::new(0),
            down_until: AtomicU64::new(0),
            epoch: Instant::now(),
            round_trips: AtomicU64::new(0),
            last_error: Mutex::new(String::new()),
            timeout,
        })
    }

    /// `EVALSHA`s sent so far (one per exchange that reached the network).
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Runs one exchange of plugin `ns` at wall-clock `now_ms`, waiting at
    /// most `timeout` for Redis. One round trip; none if the request is
    /// refused or Redis was found down within [`DOWN_FOR`].
    pub async fn exchange(
        &self,
        ns: &Namespace,
        now_ms: i64,
        request: &Request,
        mode: Mode,
        timeout: Duration,
    ) -> Result<Response, StateError> {
        check(ns, request)?;
        let plan = Plan::build(&self.prefix, ns, now_ms, request, mode);
        if plan.keys.is_empty() {
            // Nothing accepted and nothing to look up: no round trip.
            return plan.answer(ns, now_ms, request, mode, Vec::new());
        }
        let down_until = self.down_until.load(Ordering::Relaxed);
        if down_until > 0 {
            let now = self.now();
            // One caller wins the probe; the others fail fast until it succeeds.
            let probe = now >= down_until
                && self
                    .down_until
                    .compare_exchange(
                        down_until,
                        now + DOWN_FOR.as_millis() as u64,
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    )
                    .is_ok();
            if !probe {
                let last = self.last_error.lock().map(|e| e.clone()).unwrap_or_default();
                return Err(StateError::Unavailable(format!("Redis is down ({last}); retrying shortly")));
            }
        }
        let mut invocation = self.script.prepare_invoke();
        for k in &plan.keys {
            invocation.key(k);
        }
        for a in &plan.args {
            invocation.arg(a);
        }
        let mut conn = self.conn.clone();
        let timeout = timeout.min(self.timeout);
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let sent = tokio::time::timeout(timeout, invocation.invoke_async::<Value>(&mut conn)).await;
        let value = match sent {
            Err(_) => {
                // A server that stopped answering (frozen, packets dropped) is
                // down too: after a few timeouts in a row, fail fast as for a refusal.
                if self.timeouts.fetch_add(1, Ordering::Relaxed) + 1 >= TIMEOUTS_TO_DOWN {
                    self.mark_down(format!("{TIMEOUTS_TO_DOWN} exchanges in a row timed out"));
                }
                return Err(StateError::Timeout { ms: timeout.as_millis() as u64 });
            }
            Ok(Err(e)) => return Err(self.failed(e)),
            Ok(Ok(v)) => v,
        };
        self.timeouts.store(0, Ordering::Relaxed);
        self.down_until.store(0, Ordering::Relaxed);
        let out = match value {
            Value::Array(out) => out,
            other => return Err(bad_reply(format!("an array, got {other:?}"))),
        };
        plan.answer(ns, now_ms, request, mode, out)
    }

    /// Fails exchanges fast for [`DOWN_FOR`], saying why.
    fn mark_down(&self, why: String) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = why;
        }
        self.timeouts.store(0, Ordering::Relaxed);
        self.down_until.store(self.now() + DOWN_FOR.as_millis() as u64, Ordering::Relaxed);
    }

    /// Turns a Redis error into the plugin's typed error; a connection error
    /// marks Redis down for [`DOWN_FOR`].
    fn failed(&self, e: redis::RedisError) -> StateError {
        if e.is_timeout() {
            return StateError::Timeout { ms: 0 };
        }
        if e.code() == Some("OOM") {
            return StateError::OverQuota(format!("Redis is over its maxmemory: {e}"));
        }
        if e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() {
            self.mark_down(e.to_string());
            return StateError::Unavailable(format!("cannot reach Redis: {e}"));
        }
        // A script or protocol error is the host's bug, not the plugin's: say so in the log.
        tracing::error!(target: "scorehost::state", "Redis refused the state script: {e}");
        StateError::Unavailable(format!("Redis refused the exchange: {e}"))
    }

    /// Writes an offline table's row, as a batch job would (`HSET`), for tests and tools.
    pub async fn put_lookup(
        &self,
        table: &str,
        entity: &str,
        fields: &[(&str, &str)],
    ) -> Result<(), StateError> {
        let mut cmd = redis::cmd("HSET");
        cmd.arg(lookup_key(&self.prefix, table, entity));
        for (f, v) in fields {
            cmd.arg(*f).arg(*v);
        }
        let mut conn = self.conn.clone();
        cmd.query_async::<()>(&mut conn).await.map_err(|e| self.failed(e))
    }
}

fn bad_reply(what: String) -> StateError {
    tracing::error!(target: "scorehost::state", "unexpected reply from the state script: {what}");
    StateError::Unavailable(format!("unexpected reply from Redis: expected {what}"))
}

/// Where one window's numbers come from in the script's output.
struct WindowPlan {
    window: Window,
    /// Its level's `R` output, and its place in it.
    read: (usize, usize),
    /// The output index of its `PFCOUNT`, for a distinct aggregate.
    distinct: Option<usize>,
}

/// One exchange lowered to the script's `KEYS` and `ARGV`.
struct Plan {
    keys: Vec<String>,
    index: HashMap<String, usize>,
    args: Vec<String>,
    /// Outputs so far (every `I`, `R`, `C`, `L` adds one).
    outputs: usize,
    /// Idempotency key → the output index of its `I`.
    claims: HashMap<String, usize>,
    /// Per observation, then per query: its windows' plans (empty if late or future).
    reads: Vec<Vec<WindowPlan>>,
    /// Per lookup: the output index of its `L`.
    lookups: Vec<usize>,
}

impl Plan {
    fn key(&mut self, key: String) -> usize {
        let next = self.keys.len() + 1;
        *self.index.entry(key).or_insert_with_key(|k| {
            self.keys.push(k.clone());
            next
        })
    }

    fn op(&mut self, args: &[&dyn ToString]) {
        self.args.extend(args.iter().map(|a| a.to_string()));
    }

    fn output(&mut self) -> usize {
        self.outputs += 1;
        self.outputs - 1
    }

    fn build(prefix: &str, ns: &Namespace, now_ms: i64, request: &Request, mode: Mode) -> Plan {
        let mut p = Plan {
            keys: Vec::new(),
            index: HashMap::new(),
            args: vec![if mode == Mode::Record { "w" } else { "r" }.to_owned()],
            outputs: 0,
            claims: HashMap::new(),
            reads: Vec::new(),
            lookups: Vec::new(),
        };
        let accepted = |t: i64| timing(ns, now_ms, t).is_none();
        // Claims first, then writes, then reads: the script runs them in order.
        // A peek claims nothing and writes nothing.
        for o in request.observe.iter().filter(|o| mode == Mode::Record && accepted(o.time_ms)) {
            if let Some(key) = &o.idempotency_key
                && !p.claims.contains_key(key)
            {
                let k = p.key(format!("{prefix}p:{}:i:{key}", ns.name));
                p.op(&[&"I", &k, &ns.dedupe_ms]);
                let out = p.output();
                p.claims.insert(key.clone(), out);
            }
        }
        if mode == Mode::Record {
            for o in request.observe.iter().filter(|o| accepted(o.time_ms)) {
                let idem = match &o.idempotency_key {
                    Some(key) => p.index[&format!("{prefix}p:{}:i:{key}", ns.name)],
                    None => 0,
                };
                let spec = &ns.aggregates[&o.aggregate];
                let mut levels: Vec<i64> = spec.windows.iter().map(|w| w.tile_ms).collect();
                levels.sort_unstable();
                levels.dedup();
                for &t in &levels {
                    let tile = tile_of(o.time_ms, t);
                    let (page, slot) = (tile.div_euclid(PAGE), tile.rem_euclid(PAGE));
                    let k = p.key(page_key(prefix, &ns.name, &o.aggregate, t, page, &o.entity));
                    let expire_at = (page + 1) * PAGE * t + ns.retention_ms(t);
                    p.op(&[&"A", &k, &slot, &o.value, &expire_at, &idem]);
                    if let (true, Some(item)) = (spec.distinct, &o.item) {
                        let k = p.key(distinct_key(prefix, &ns.name, &o.aggregate, t, tile, &o.entity));
                        let expire_at = (tile + 1) * t + ns.retention_ms(t);
                        p.op(&[&"D", &k, item, &expire_at, &idem]);
                    }
                }
            }
        }
        let targets = request
            .observe
            .iter()
            .map(|o| (&o.aggregate, &o.entity, o.time_ms))
            .chain(request.query.iter().map(|q| (&q.aggregate, &q.entity, q.time_ms)));
        let targets: Vec<_> = targets.collect();
        for (aggregate, entity, t) in targets {
            if !accepted(t) {
                p.reads.push(Vec::new());
                continue;
            }
            let spec = &ns.aggregates[aggregate];
            // One `R` per level: the tiles of its longest window, every window summed from them.
            let mut reads: Vec<(i64, usize)> = Vec::new(); // (level, output)
            let mut windows = Vec::new();
            for w in &spec.windows {
                let level = match reads.iter().find(|(l, _)| *l == w.tile_ms) {
                    Some(&(_, out)) => out,
                    None => {
                        let same: Vec<&Window> =
                            spec.windows.iter().filter(|v| v.tile_ms == w.tile_ms).collect();
                        let longest = same.iter().map(|v| v.tiles).max().unwrap_or(0);
                        let k = tile_of(t, w.tile_ms);
                        let pages: Vec<i64> = ((k - longest).div_euclid(PAGE)..=k.div_euclid(PAGE)).collect();
                        p.op(&[&"R", &pages.len()]);
                        for page in pages {
                            let key = p.key(page_key(prefix, &ns.name, aggregate, w.tile_ms, page, entity));
                            let first = page * PAGE;
                            let lo = (k - longest - first).max(0);
                            let hi = (k - first).min(PAGE - 1);
                            p.op(&[&key, &lo, &hi, &(k - first)]);
                        }
                        p.op(&[&same.len()]);
                        for v in &same {
                            p.op(&[&v.tiles]);
                        }
                        let out = p.output();
                        reads.push((w.tile_ms, out));
                        out
                    }
                };
                let place = spec.windows.iter().filter(|v| v.tile_ms == w.tile_ms).position(|v| v == w);
                let tiles = w.tiles_at(t);
                let distinct = spec.distinct.then(|| {
                    let ks: Vec<usize> = tiles
                        .map(|tile| p.key(distinct_key(prefix, &ns.name, aggregate, w.tile_ms, tile, entity)))
                        .collect();
                    p.op(&[&"C", &ks.len()]);
                    for k in ks {
                        p.op(&[&k]);
                    }
                    p.output()
                });
                windows.push(WindowPlan { window: *w, read: (level, place.unwrap_or(0)), distinct });
            }
            p.reads.push(windows);
        }
        for l in &request.lookups {
            let k = p.key(lookup_key(prefix, &l.table, &l.entity));
            p.op(&[&"L", &k, &l.fields.len()]);
            for f in &l.fields {
                p.op(&[f]);
            }
            let out = p.output();
            p.lookups.push(out);
        }
        p
    }

    /// The response, from the script's outputs.
    fn answer(
        &self,
        ns: &Namespace,
        now_ms: i64,
        request: &Request,
        mode: Mode,
        out: Vec<Value>,
    ) -> Result<Response, StateError> {
        if out.len() != self.outputs {
            return Err(bad_reply(format!("{} outputs, got {}", self.outputs, out.len())));
        }
        let int = |i: usize| match &out[i] {
            Value::Int(n) => Ok(*n),
            other => Err(bad_reply(format!("an integer, got {other:?}"))),
        };
        let observed = request.observe.iter().map(|o| (Some(o), o.time_ms));
        let queried = request.query.iter().map(|q| (None, q.time_ms));
        let mut answers = Vec::with_capacity(self.reads.len());
        for ((o, t), plans) in observed.chain(queried).zip(&self.reads) {
            let status = match (timing(ns, now_ms, t), o) {
                (Some(status), _) => status,
                (None, None) => Status::Read,
                (None, Some(_)) if mode == Mode::Peek => Status::Read,
                (None, Some(o)) => match o.idempotency_key.as_ref().map(|k| self.claims[k]) {
                    Some(i) if int(i)? == 0 => Status::Duplicate,
                    _ => Status::Recorded,
                },
            };
            let mut windows = Vec::with_capacity(plans.len());
            for w in plans {
                let s = window_stats(&out[w.read.0], w.read.1)?;
                let distinct = match w.distinct {
                    Some(i) => Some(int(i)?.max(0) as u64),
                    None => None,
                };
                windows.push(WindowAnswer {
                    window: w.window,
                    count: s.count,
                    sum: s.sum,
                    max: s.max,
                    distinct,
                });
            }
            answers.push(Answer { status, windows });
        }
        let queried = answers.split_off(request.observe.len());
        let mut response = Response { observed: answers, queried, lookups: Vec::new() };
        for &i in &self.lookups {
            let Value::Array(values) = &out[i] else {
                return Err(bad_reply(format!("HMGET's array, got {:?}", out[i])));
            };
            response.lookups.push(values.iter().map(text).collect());
        }
        Ok(response)
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Window `i` of an `R` output: `{count, sum, max or nil}`.
fn window_stats(v: &Value, i: usize) -> Result<Stats, StateError> {
    let Value::Array(windows) = v else {
        return Err(bad_reply(format!("an array of windows, got {v:?}")));
    };
    let Some(Value::Array(w)) = windows.get(i) else {
        return Err(bad_reply(format!("window {i} of {v:?}")));
    };
    let int = |x: Option<&Value>| match x {
        Some(Value::Int(n)) => Ok(Some(*n)),
        Some(Value::Nil) | None => Ok(None),
        other => Err(bad_reply(format!("an integer in a window, got {other:?}"))),
    };
    Ok(Stats {
        count: int(w.first())?.unwrap_or(0).max(0) as u64,
        sum: i128::from(int(w.get(1))?.unwrap_or(0)),
        max: int(w.get(2))?,
    })
}
