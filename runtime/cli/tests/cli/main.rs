//! Tests of the `scorehost` binary (`CARGO_BIN_EXE_scorehost`): its commands,
//! the README walk, serving over real sockets, replay. The library is tested
//! in process in `runtime/tests/all`.

mod commands;
#[cfg(feature = "fleet")]
mod fleet;
mod push;
mod replay;
#[cfg(feature = "fleet")]
mod replicas;
mod serve;
mod servers;
mod state_redis;
mod support;
mod walk;
