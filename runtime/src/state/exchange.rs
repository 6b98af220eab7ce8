//! What a plugin asks of its state in one call and what it gets back — an
//! *exchange* — and the checks every backend applies before touching
//! anything: the names the plugin declared, the per-call limits, and which
//! observations are too late or too far in the future to count.
//!
//! One exchange is one round trip to the store. Its semantics, the same for
//! every backend:
//!
//! 1. Observations whose time is before `now − max_late` are `Late`, after
//!    `now + max_future` `Future`: neither recorded nor read.
//! 2. Each distinct idempotency key is claimed (for `dedupe`); the
//!    observations carrying a key already claimed are `Duplicate`: read, not
//!    recorded.
//! 3. Every `Recorded` observation is recorded; **then** every observation
//!    and query is read, at its own time (see [`super::window`]); so two
//!    observations of one exchange on the same entity both see both.
//! 4. Lookups read the offline tables.
//!
//! In [`Mode::Peek`] (shadow versions) nothing is claimed or recorded: every
//! accepted observation is `Read`, and its windows are the state as it is
//! (a shadow copy runs after the live call, so the event is already counted
//! there once).

use std::collections::BTreeMap;

use super::window::{MAX_TILES, Window};

/// Most observations one exchange records.
pub const MAX_OBSERVATIONS: usize = 16;
/// Most queries one exchange reads.
pub const MAX_QUERIES: usize = 16;
/// Most lookups one exchange reads.
pub const MAX_LOOKUPS: usize = 16;
/// Most fields one lookup reads.
pub const MAX_FIELDS: usize = 32;
/// Most bytes of strings (entities, items, keys, fields) in one exchange.
pub const MAX_EXCHANGE_BYTES: usize = 16 << 10;
/// Longest entity, item or idempotency key, in bytes.
pub const MAX_KEY_BYTES: usize = 128;
/// The largest |value| accepted: sums stay exact in any store (Redis keeps
/// them as 64-bit integers; 2^23 observations of 2^40 cannot overflow).
pub const MAX_ABS_VALUE: i64 = 1 << 40;

/// One aggregate a plugin declared: the windows it reads and whether it counts distinct items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateSpec {
    /// The windows, in the order answers list them.
    pub windows: Vec<Window>,
    /// Whether observations carry an item whose distinct count is kept.
    pub distinct: bool,
}

/// A plugin's state: its aggregates, the tables it may read, and the rules
/// for both. Resolved from `plugin.toml`'s `[state]` when the plugin loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// The plugin's name: nobody else's observations land here.
    pub name: String,
    /// Aggregate name → its spec.
    pub aggregates: BTreeMap<String, AggregateSpec>,
    /// Offline tables the plugin may read.
    pub lookups: Vec<String>,
    /// Observations older than `now − max_late` are `Late`.
    pub max_late_ms: i64,
    /// Observations newer than `now + max_future` are `Future`.
    pub max_future_ms: i64,
    /// How long an idempotency key is remembered.
    pub dedupe_ms: i64,
    /// Most bytes this plugin's state may hold in the in-process store.
    pub quota_bytes: usize,
}

impl Namespace {
    /// How long after it ends a tile of level `tile_ms` is kept: past that,
    /// no accepted read reaches it (`max_late` plus the longest window a
    /// level serves, `MAX_TILES` tiles, plus one). By level, not by the windows this
    /// version declares, so versions of one plugin that declare other
    /// windows keep the same history; Redis keys expire this long after
    /// their last tile ends.
    pub fn retention_ms(&self, tile_ms: i64) -> i64 {
        self.max_late_ms + (MAX_TILES + 1) * tile_ms
    }
}

/// One observation: an event of `entity` at `time_ms` worth `value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// The aggregate it counts in.
    pub aggregate: String,
    /// The entity (a card number's hash, an e-mail, a device id).
    pub entity: String,
    /// The event's own time, ms since the Unix epoch: the windows' reference time.
    pub time_ms: i64,
    /// What it adds to `sum` and offers to `max`.
    pub value: i64,
    /// For a distinct aggregate, the item counted (a card, for an e-mail's distinct cards).
    pub item: Option<String>,
    /// The event's id: a retried request with the same id counts once.
    pub idempotency_key: Option<String>,
}

/// A read of an aggregate without recording anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The aggregate.
    pub aggregate: String,
    /// The entity.
    pub entity: String,
    /// The reference time of its windows.
    pub time_ms: i64,
}

/// A read of an offline table's fields for one entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// The table, granted in `[state] lookups`.
    pub table: String,
    /// The entity.
    pub entity: String,
    /// The fields wanted, in the order the answer lists them.
    pub fields: Vec<String>,
}

/// Everything one plugin call asks of the store: one round trip.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// Observations to record and read.
    pub observe: Vec<Observation>,
    /// Aggregates to read only.
    pub query: Vec<Query>,
    /// Offline features to read.
    pub lookups: Vec<Lookup>,
}

/// What happened to an observation or query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Counted, then read.
    Recorded,
    /// Its idempotency key was seen within the dedupe horizon: read, not counted again.
    Duplicate,
    /// Older than `max_late`: neither counted nor read.
    Late,
    /// Further ahead than `max_future`: neither counted nor read.
    Future,
    /// A query, or an observation of a shadow: read, not recorded.
    Read,
}

/// One window of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowAnswer {
    /// The window.
    pub window: Window,
    /// Observations in it.
    pub count: u64,
    /// Sum of their values.
    pub sum: i128,
    /// The largest value; `None` when empty.
    pub max: Option<i64>,
    /// Distinct items (HyperLogLog estimate), for a distinct aggregate.
    pub distinct: Option<u64>,
}

/// The answer to one observation or query: its status and, unless late or future, its windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// What happened to it.
    pub status: Status,
    /// One per declared window, in order; empty when late or future.
    pub windows: Vec<WindowAnswer>,
}

/// The store's answer to a [`Request`], in the request's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    /// One per observation.
    pub observed: Vec<Answer>,
    /// One per query.
    pub queried: Vec<Answer>,
    /// One per lookup: each field's value, `None` where the table has none.
    pub lookups: Vec<Vec<Option<String>>>,
}

/// Whether an exchange may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Live and canary versions: observations are recorded.
    Record,
    /// Shadow versions: nothing is claimed or written; observations are read (`Read`).
    Peek,
}

/// Why an exchange failed: the plugin picks a default and goes on. Nothing
/// of a request refused before it reached the store was recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The store cannot be reached, or refused to work.
    #[error("the state store is unavailable: {0}")]
    Unavailable(String),
    /// The store did not answer in time (the store timeout, or what was left of the call's deadline).
    #[error("the state store did not answer within {ms} ms")]
    Timeout {
        /// How long the exchange waited.
        ms: u64,
    },
    /// A quota or per-call limit was reached.
    #[error("over quota: {0}")]
    OverQuota(String),
    /// The plugin asked for something its `[state]` does not grant.
    #[error("denied: {0}")]
    Denied(String),
    /// The request breaks a rule (a missing item, a value out of range, a bad entity).
    #[error("invalid state request: {0}")]
    Invalid(String),
}

/// Whether an event time is accepted at `now`.
pub(crate) fn timing(ns: &Namespace, now_ms: i64, time_ms: i64) -> Option<Status> {
    if time_ms < now_ms - ns.max_late_ms {
        Some(Status::Late)
    } else if time_ms > now_ms + ns.max_future_ms {
        Some(Status::Future)
    } else {
        None
    }
}

fn check_key(what: &str, s: &str) -> Result<usize, StateError> {
    if s.is_empty() || s.len() > MAX_KEY_BYTES || s.contains(char::is_control) {
        return Err(StateError::Invalid(format!(
            "{what} {s:?} must be 1-{MAX_KEY_BYTES} bytes without control characters"
        )));
    }
    Ok(s.len())
}

fn aggregate<'a>(ns: &'a Namespace, name: &str) -> Result<&'a AggregateSpec, StateError> {
    ns.aggregates.get(name).ok_or_else(|| {
        StateError::Denied(format!("aggregate `{name}` is not declared in the plugin's [state] table"))
    })
}

/// Checks `request` against `ns` and the per-call limits before any backend
/// touches it: every name declared, every string and value in range.
pub fn check(ns: &Namespace, request: &Request) -> Result<(), StateError> {
    let over = |what: &str, n: usize, max: usize| {
        StateError::OverQuota(format!("{n} {what} in one exchange; at most {max}"))
    };
    if request.observe.len() > MAX_OBSERVATIONS {
        return Err(over("observations", request.observe.len(), MAX_OBSERVATIONS));
    }
    if request.query.len() > MAX_QUERIES {
        return Err(over("queries", request.query.len(), MAX_QUERIES));
    }
    if request.lookups.len() > MAX_LOOKUPS {
        return Err(over("lookups", request.lookups.len(), MAX_LOOKUPS));
    }
    let mut bytes = 0;
    for o in &request.observe {
        let spec = aggregate(ns, &o.aggregate)?;
        bytes += check_key("entity", &o.entity)?;
        match (&o.item, spec.distinct) {
            (Some(item), true) => bytes += check_key("item", item)?,
            (None, true) => {
                return Err(StateError::Invalid(format!(
                    "aggregate `{}` counts distinct items: the observation needs an item",
                    o.aggregate
                )));
            }
            (Some(_), false) => {
                return Err(StateError::Invalid(format!(
                    "aggregate `{}` does not count distinct items: declare `distinct = true` or send no item",
                    o.aggregate
                )));
            }
            (None, false) => {}
        }
        if let Some(key) = &o.idempotency_key {
            bytes += check_key("idempotency key", key)?;
        }
        if o.value.unsigned_abs() >= MAX_ABS_VALUE as u64 {
            return Err(StateError::Invalid(format!(
                "value {} is out of range: |value| must be below 2^40 (amounts in cents fit)",
                o.value
            )));
        }
    }
    for q in &request.query {
        aggregate(ns, &q.aggregate)?;
        bytes += check_key("entity", &q.entity)?;
    }
    for l in &request.lookups {
        if !ns.lookups.contains(&l.table) {
            return Err(StateError::Denied(format!(
                "lookup table `{}` is not granted in the plugin's [state] lookups",
                l.table
            )));
        }
        bytes += check_key("entity", &l.entity)?;
        if l.fields.is_empty() || l.fields.len() > MAX_FIELDS {
            return Err(over("fields in one lookup", l.fields.len(), MAX_FIELDS));
        }
        for f in &l.fields {
            bytes += check_key("field", f)?;
        }
    }
    if bytes > MAX_EXCHANGE_BYTES {
        return Err(StateError::OverQuota(format!(
            "{bytes} bytes of keys in one exchange; at most {MAX_EXCHANGE_BYTES}"
        )));
    }
    Ok(())
}
