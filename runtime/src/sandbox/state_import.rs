//! The `state` import of contract 0.1.2: a plugin's one exchange per event
//! with the state store ([`crate::state`]).
//!
//! Which store, and whether it may write, is the caller's choice
//! ([`Access::current`]: live, shadow, or a scratch store for tests), never
//! the plugin's; which aggregates and tables it reaches is its manifest's
//! `[state]` ([`HostState::state`]). Like every host call, an exchange is
//! refused past the call's deadline (a trap) and its bytes are charged to
//! the call's fuel; the store is given at most what is left of the deadline,
//! so waiting for Redis cannot make a call overrun. Everything else — the
//! store down or slow, a quota, an ungranted name — is a typed
//! `state-error` the plugin answers with a default.

use std::time::Duration;

use crate::sandbox::bindings::wit_state as wit;
use crate::sandbox::host::HostState;
use crate::state::backend::Access;
use crate::state::exchange as st;

/// How long an exchange may wait on an unmetered engine (no deadline).
const UNMETERED_WAIT: Duration = Duration::from_secs(1);
/// Kept back from the deadline: the guest needs a moment to use the answer.
const MARGIN: Duration = Duration::from_millis(1);

impl wit::Host for HostState {
    async fn exchange(
        &mut self,
        request: wit::Request,
    ) -> wasmtime::Result<Result<wit::Response, wit::StateError>> {
        self.budget.charge(request_bytes(&request))?;
        // (During `init` this is not reached: the init linker answers `unavailable`.)
        let Some(ns) = self.state.clone() else {
            return Ok(Err(wit::StateError::Denied(
                "plugin.toml has no [state] table: declare the aggregates and lookup tables this plugin \
                 uses (docs/state.md)"
                    .into(),
            )));
        };
        if self.exchanges_left == 0 {
            return Ok(Err(wit::StateError::OverQuota(
                "one state exchange per event: this call already made its exchange".into(),
            )));
        }
        self.exchanges_left -= 1;
        let wait = match self.budget.time_left() {
            Some(left) => left.saturating_sub(MARGIN),
            None => UNMETERED_WAIT,
        };
        if wait < MARGIN {
            return Ok(Err(wit::StateError::Timeout(
                "the call's deadline leaves no time for the state store".into(),
            )));
        }
        let request = from_wit(request);
        let answer = Access::current().exchange(&ns, &request, wait).await;
        self.stats.state_exchange(answer.as_ref().err());
        let answer = answer.map(to_wit).map_err(error_to_wit);
        if let Ok(response) = &answer {
            self.budget.charge_after(response_bytes(response))?;
        }
        Ok(answer)
    }
}

fn request_bytes(r: &wit::Request) -> u64 {
    let o: usize = r
        .observe
        .iter()
        .map(|o| {
            o.aggregate.len()
                + o.entity.len()
                + o.item.as_ref().map_or(0, String::len)
                + o.idempotency_key.as_ref().map_or(0, String::len)
                + 16
        })
        .sum();
    let q: usize = r.query.iter().map(|q| q.aggregate.len() + q.entity.len() + 8).sum();
    let l: usize = r
        .lookups
        .iter()
        .map(|l| l.table.len() + l.entity.len() + l.fields.iter().map(String::len).sum::<usize>())
        .sum();
    (o + q + l) as u64
}

fn response_bytes(r: &wit::Response) -> u64 {
    let windows: usize = r.observed.iter().chain(&r.queried).map(|a| a.windows.len() * 40).sum();
    let lookups: usize = r.lookups.iter().flatten().map(|v| v.as_ref().map_or(1, String::len)).sum();
    (windows + lookups) as u64
}

fn from_wit(r: wit::Request) -> st::Request {
    st::Request {
        observe: r
            .observe
            .into_iter()
            .map(|o| st::Observation {
                aggregate: o.aggregate,
                entity: o.entity,
                time_ms: o.time_ms,
                value: o.value,
                item: o.item,
                idempotency_key: o.idempotency_key,
            })
            .collect(),
        query: r
            .query
            .into_iter()
            .map(|q| st::Query { aggregate: q.aggregate, entity: q.entity, time_ms: q.time_ms })
            .collect(),
        lookups: r
            .lookups
            .into_iter()
            .map(|l| st::Lookup { table: l.table, entity: l.entity, fields: l.fields })
            .collect(),
    }
}

fn answer_to_wit(a: st::Answer) -> wit::Answer {
    wit::Answer {
        status: match a.status {
            st::Status::Recorded => wit::Status::Recorded,
            st::Status::Duplicate => wit::Status::Duplicate,
            st::Status::Late => wit::Status::Late,
            st::Status::Future => wit::Status::Future,
            st::Status::Read => wit::Status::Read,
        },
        windows: a
            .windows
            .into_iter()
            .map(|w| wit::Window {
                length_ms: w.window.length_ms as u64,
                count: w.count,
                sum: w.sum.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64,
                max: w.max,
                distinct: w.distinct,
            })
            .collect(),
    }
}

fn to_wit(r: st::Response) -> wit::Response {
    wit::Response {
        observed: r.observed.into_iter().map(answer_to_wit).collect(),
        queried: r.queried.into_iter().map(answer_to_wit).collect(),
        lookups: r.lookups,
    }
}

fn error_to_wit(e: st::StateError) -> wit::StateError {
    let message = e.to_string();
    match e {
        st::StateError::Unavailable(_) => wit::StateError::Unavailable(message),
        st::StateError::Timeout { .. } => wit::StateError::Timeout(message),
        st::StateError::OverQuota(_) => wit::StateError::OverQuota(message),
        st::StateError::Denied(_) => wit::StateError::Denied(message),
        _ => wit::StateError::Invalid(message),
    }
}
