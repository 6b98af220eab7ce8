//! Turning a failed wasm call into a typed [`CallError`].
//!
//! Order matters: a memory-cap breach is checked first because the guest's
//! allocator turns a failed grow into an ordinary `unreachable` trap; then a
//! host function's refusal ([`HostStop`]); then wasmtime's own trap codes; anything else is a guest trap with the panic
//! message the guest printed, if any.

use std::time::Duration;

use wasmtime::{Store, Trap};

use crate::sandbox::error::CallError;
use crate::sandbox::host::HostState;
use crate::sandbox::host_budget::HostStop;

/// Classifies `err` from a call made in `store` under the given budgets.
/// `ran` is how long the call was on a thread (see
/// [`CallError::DeadlineExceeded`]); for a call that ran to its deadline
/// without waiting, pass the deadline.
pub fn classify(
    err: wasmtime::Error,
    store: &Store<HostState>,
    fuel: u64,
    deadline: Duration,
    ran: Duration,
) -> CallError {
    let state = store.data();
    if let Some(requested) = state.limiter.breach {
        return CallError::MemoryLimit { limit: state.limiter.limit(), requested };
    }
    // A host function refused to run on (`host_budget.rs`).
    if let Some(stop) = err.downcast_ref::<HostStop>() {
        return match stop {
            HostStop::Deadline => CallError::DeadlineExceeded { deadline, ran },
            HostStop::Fuel => CallError::OutOfFuel { budget: fuel },
            HostStop::TooLarge { .. } => CallError::GuestTrap { message: stop.to_string() },
        };
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => CallError::OutOfFuel { budget: fuel },
        Some(Trap::Interrupt) => CallError::DeadlineExceeded { deadline, ran },
        Some(Trap::StackOverflow) => CallError::StackOverflow,
        Some(Trap::AllocationTooLarge) => {
            CallError::MemoryLimit { limit: state.limiter.limit(), requested: state.limiter.limit() }
        }
        Some(trap) => {
            let message = match state.stderr_tail() {
                Some(line) => format!("{trap}; plugin stderr: {line}"),
                None => trap.to_string(),
            };
            CallError::GuestTrap { message }
        }
        None if err.downcast_ref::<wasmtime::PoolConcurrencyLimitError>().is_some() => {
            CallError::Overloaded { message: format!("{err:#}") }
        }
        None => CallError::GuestTrap { message: format!("{err:#}") },
    }
}
