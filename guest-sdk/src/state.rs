//! Real-time state (contract 0.1.2): record an event of an entity and read
//! its windowed aggregates back in the same call, and read features offline
//! jobs wrote — **one exchange per event**, one round trip to the store.
//!
//! ```no_run
//! use scorehost_guest::state::{self, Observe, Request};
//!
//! let request = Request::new()
//!     .observe(Observe::new("card", "c-42").at_ms(1_796_000_000_000).value(1250).event_id("evt-9"))
//!     .lookup("card_stats", "c-42", &["chargeback_rate"]);
//! match state::exchange(&request) {
//!     Ok(r) => {
//!         let card = r.observed(0);
//!         let (count_10m, amount_10m) = (card.window(0).count, card.window(0).sum);
//!         let rate: Option<f64> = r.lookup(0, 0).and_then(|v| v.parse().ok());
//!         # let _ = (count_10m, amount_10m, rate);
//!     }
//!     // The store is down, slow or over quota: use defaults and say so.
//!     Err(e) => scorehost_guest::log::warn(&format!("state: {e}")),
//! }
//! ```
//!
//! The plugin's `plugin.toml` declares what it may reach (`[state]`: its
//! aggregates and their windows, the lookup tables); the windows'
//! semantics are in `wit/state.wit` and docs/state.md. Errors never trap:
//! every failure is a [`StateError`] and the plugin picks a default.
//!
//! Natively (unit tests, no wasm) there is no store: [`exchange`] asks the
//! handler set with [`set_native_handler`], or answers `Unavailable`.

use std::fmt;

/// An event to count: `value` is added to `sum` and offered to `max`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observe {
    /// The aggregate, declared in `[state.aggregates.<name>]`.
    pub aggregate: String,
    /// The entity (1–128 bytes, no control characters).
    pub entity: String,
    /// The event's time, ms since the Unix epoch (default: now).
    pub time_ms: i64,
    /// The value (`|value| < 2^40`; default 0).
    pub value: i64,
    /// The item a distinct aggregate counts.
    pub item: Option<String>,
    /// The event's id: a retry with the same id counts once.
    pub event_id: Option<String>,
}

impl Observe {
    /// An observation of `entity` in `aggregate`, now, worth 0.
    pub fn new(aggregate: &str, entity: &str) -> Self {
        Self {
            aggregate: aggregate.into(),
            entity: entity.into(),
            time_ms: now_ms(),
            value: 0,
            item: None,
            event_id: None,
        }
    }

    /// At event time `time_ms` (ms since the Unix epoch).
    pub fn at_ms(mut self, time_ms: i64) -> Self {
        self.time_ms = time_ms;
        self
    }

    /// Worth `value` (cents, for an amount).
    pub fn value(mut self, value: i64) -> Self {
        self.value = value;
        self
    }

    /// Counting `item` among the entity's distinct items.
    pub fn item(mut self, item: &str) -> Self {
        self.item = Some(item.into());
        self
    }

    /// Of event `id`: counted once however often the event is retried.
    pub fn event_id(mut self, id: &str) -> Self {
        self.event_id = Some(id.into());
        self
    }
}

/// A read of an aggregate without recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The aggregate.
    pub aggregate: String,
    /// The entity.
    pub entity: String,
    /// The windows' reference time.
    pub time_ms: i64,
}

/// A read of an offline table's fields for one entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// The table, granted in `[state] lookups`.
    pub table: String,
    /// The entity.
    pub entity: String,
    /// The fields, answered in this order.
    pub fields: Vec<String>,
}

/// Everything one event asks of the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// Observations to record and read.
    pub observe: Vec<Observe>,
    /// Aggregates to read.
    pub query: Vec<Query>,
    /// Offline features to read.
    pub lookups: Vec<Lookup>,
}

impl Request {
    /// An empty request.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an observation; its answer is `observed(i)` in order.
    pub fn observe(mut self, o: Observe) -> Self {
        self.observe.push(o);
        self
    }

    /// Adds a read of `aggregate` for `entity` at `time_ms`; its answer is `queried(i)`.
    pub fn query(mut self, aggregate: &str, entity: &str, time_ms: i64) -> Self {
        self.query.push(Query { aggregate: aggregate.into(), entity: entity.into(), time_ms });
        self
    }

    /// Adds a lookup of `fields` of `entity` in `table`; its answer is `lookup(i, field)`.
    pub fn lookup(mut self, table: &str, entity: &str, fields: &[&str]) -> Self {
        let fields = fields.iter().map(|f| (*f).to_owned()).collect();
        self.lookups.push(Lookup { table: table.into(), entity: entity.into(), fields });
        self
    }
}

/// What happened to an observation or query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Counted, then read.
    Recorded,
    /// Its event id was already counted: read, not counted again.
    Duplicate,
    /// Older than `max_late`: neither counted nor read (no windows).
    Late,
    /// Further ahead than `max_future`: neither counted nor read (no windows).
    Future,
    /// A query, read.
    Read,
}

/// One window's numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    /// Its length, ms.
    pub length_ms: u64,
    /// Observations in it.
    pub count: u64,
    /// Their values' sum.
    pub sum: i64,
    /// The largest value; `None` when empty.
    pub max: Option<i64>,
    /// Distinct items, for a distinct aggregate (HyperLogLog, 0.81 % error).
    pub distinct: Option<u64>,
}

/// The answer to one observation or query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// What happened.
    pub status: Status,
    /// One per declared window, in declared order; empty if late or future.
    pub windows: Vec<Window>,
}

impl Answer {
    /// Window `i` (declared order); all zeros if the answer has none (late, future).
    pub fn window(&self, i: usize) -> Window {
        self.windows.get(i).copied().unwrap_or_default()
    }
}

/// The store's answers, in the request's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    /// One per observation.
    pub observed: Vec<Answer>,
    /// One per query.
    pub queried: Vec<Answer>,
    /// Per lookup, per field: the value as written, or `None`.
    pub lookups: Vec<Vec<Option<String>>>,
}

impl Response {
    /// The answer to observation `i`.
    ///
    /// # Panics
    /// If the request had fewer observations: a bug in the plugin.
    pub fn observed(&self, i: usize) -> &Answer {
        &self.observed[i]
    }

    /// The answer to query `i`.
    ///
    /// # Panics
    /// If the request had fewer queries.
    pub fn queried(&self, i: usize) -> &Answer {
        &self.queried[i]
    }

    /// Field `field` of lookup `i`, if the table has it.
    pub fn lookup(&self, i: usize, field: usize) -> Option<&str> {
        self.lookups.get(i)?.get(field)?.as_deref()
    }
}

/// Why an exchange failed: use a default and go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    /// The store cannot be reached (or there is none: during `init`, natively).
    Unavailable(String),
    /// The store did not answer within the store timeout or the call's deadline.
    Timeout(String),
    /// A quota or per-call limit (a second exchange for one event).
    OverQuota(String),
    /// Something `[state]` does not grant.
    Denied(String),
    /// A bad request (a missing item, a value out of range).
    Invalid(String),
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, m) = match self {
            StateError::Unavailable(m) => ("unavailable", m),
            StateError::Timeout(m) => ("timeout", m),
            StateError::OverQuota(m) => ("over quota", m),
            StateError::Denied(m) => ("denied", m),
            StateError::Invalid(m) => ("invalid", m),
        };
        write!(f, "{kind}: {m}")
    }
}

impl std::error::Error for StateError {}

/// The wall clock, ms since the Unix epoch (an event's default time).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Records and reads, in one round trip to the store. At most one call per
/// event: a second in the same call answers [`StateError::OverQuota`].
pub fn exchange(request: &Request) -> Result<Response, StateError> {
    #[cfg(target_arch = "wasm32")]
    {
        wasm::exchange(request)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        native::exchange(request)
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub use native::set_native_handler;

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use super::{Request, Response, StateError};
    use std::cell::RefCell;

    type Handler = Box<dyn FnMut(&Request) -> Result<Response, StateError>>;

    thread_local! {
        static HANDLER: RefCell<Option<Handler>> = const { RefCell::new(None) };
    }

    /// Natively (unit tests), answers this thread's exchanges with `handler`:
    /// canned answers for the plugin's logic, errors for its defaults.
    pub fn set_native_handler(handler: impl FnMut(&Request) -> Result<Response, StateError> + 'static) {
        HANDLER.with(|h| *h.borrow_mut() = Some(Box::new(handler)));
    }

    pub(super) fn exchange(request: &Request) -> Result<Response, StateError> {
        HANDLER.with(|h| match h.borrow_mut().as_mut() {
            Some(handler) => handler(request),
            None => Err(StateError::Unavailable(
                "no state store natively: set one with state::set_native_handler".into(),
            )),
        })
    }
}

#[cfg(target_arch = "wasm32")]
mod wasm {
    use super::*;
    use crate::bindings::scorer::scorehost::plugin::state as wit;

    pub(super) fn exchange(request: &Request) -> Result<Response, StateError> {
        let request = wit::Request {
            observe: request
                .observe
                .iter()
                .map(|o| wit::Observation {
                    aggregate: o.aggregate.clone(),
                    entity: o.entity.clone(),
                    time_ms: o.time_ms,
                    value: o.value,
                    item: o.item.clone(),
                    idempotency_key: o.event_id.clone(),
                })
                .collect(),
            query: request
                .query
                .iter()
                .map(|q| wit::Query {
                    aggregate: q.aggregate.clone(),
                    entity: q.entity.clone(),
                    time_ms: q.time_ms,
                })
                .collect(),
            lookups: request
                .lookups
                .iter()
                .map(|l| wit::Lookup {
                    table: l.table.clone(),
                    entity: l.entity.clone(),
                    fields: l.fields.clone(),
                })
                .collect(),
        };
        match wit::exchange(&request) {
            Ok(r) => Ok(Response {
                observed: r.observed.into_iter().map(answer).collect(),
                queried: r.queried.into_iter().map(answer).collect(),
                lookups: r.lookups,
            }),
            Err(wit::StateError::Unavailable(m)) => Err(StateError::Unavailable(m)),
            Err(wit::StateError::Timeout(m)) => Err(StateError::Timeout(m)),
            Err(wit::StateError::OverQuota(m)) => Err(StateError::OverQuota(m)),
            Err(wit::StateError::Denied(m)) => Err(StateError::Denied(m)),
            Err(wit::StateError::Invalid(m)) => Err(StateError::Invalid(m)),
        }
    }

    fn answer(a: wit::Answer) -> Answer {
        Answer {
            status: match a.status {
                wit::Status::Recorded => Status::Recorded,
                wit::Status::Duplicate => Status::Duplicate,
                wit::Status::Late => Status::Late,
                wit::Status::Future => Status::Future,
                wit::Status::Read => Status::Read,
            },
            windows: a
                .windows
                .into_iter()
                .map(|w| Window {
                    length_ms: w.length_ms,
                    count: w.count,
                    sum: w.sum,
                    max: w.max,
                    distinct: w.distinct,
                })
                .collect(),
        }
    }
}
