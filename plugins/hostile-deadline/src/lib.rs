//! # hostile-deadline — a scorer that runs to its deadline on every call
//!
//! Shows: the wall-clock deadline (epoch interruption) stops an infinite loop
//! that has fuel to spare, as `deadline_exceeded` (HTTP 504). Its fuel budget
//! is the largest a manifest may ask for, so only the 50 ms deadline ends it.
//! Every call burns its whole deadline of CPU, which makes it the plugin the
//! circuit breaker and the fault-isolation benchmark (`benches/isolation.sh`)
//! are about. Its sibling `hostile-loop` is the same loop stopped by fuel.
//!
//! Run: `cargo test -p scorehost --test all hostile` (built by
//! `plugins/artifacts`; never checked in as a binary).

use scorehost_guest::prelude::*;

struct Spin;

impl Scorer for Spin {
    fn init(_: &Config) -> Result<Self> {
        Ok(Spin)
    }
    fn metadata(&self) -> Metadata {
        Metadata::new("hostile-deadline", "0.1.0").description("Loops until the deadline stops it.")
    }
    fn score(&self, _: &Features) -> Result<Score> {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

export_scorer!(Spin);
