//! # hostile-loop — a scorer that never returns
//!
//! Shows: per-call budgets stop a runaway plugin. With a small fuel budget the
//! call ends as `out_of_fuel`; with a large one the wall-clock deadline (epoch
//! interruption) ends it as `deadline_exceeded`. Used by runtime/tests/all/limits.rs.

use scorehost_guest::prelude::*;

struct Spin;

impl Scorer for Spin {
    fn init(_: &Config) -> Result<Self> {
        Ok(Spin)
    }
    fn metadata(&self) -> Metadata {
        Metadata::new("hostile-loop", "0.1.0").description("Loops forever.")
    }
    fn score(&self, _: &Features) -> Result<Score> {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

export_scorer!(Spin);
