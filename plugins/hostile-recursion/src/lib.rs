//! # hostile-recursion — a scorer that recurses without bound
//!
//! Shows: wasm stack exhaustion is caught as `stack_overflow`, not a host crash.
//! Used by runtime/tests/all/limits.rs.

use scorehost_guest::prelude::*;

struct Deep;

/// Recurses until `depth` reaches `limit`; the limit is never reached in practice
/// (it is u64::MAX, passed through black_box so the compiler cannot see that).
#[inline(never)]
fn descend(depth: u64, limit: u64, pad: [u64; 16]) -> u64 {
    let pad = std::hint::black_box(pad);
    if depth == limit {
        return 0;
    }
    pad[(depth % 16) as usize] + descend(depth + 1, limit, pad) + 1
}

impl Scorer for Deep {
    fn init(_: &Config) -> Result<Self> {
        Ok(Deep)
    }
    fn metadata(&self) -> Metadata {
        Metadata::new("hostile-recursion", "0.1.0").description("Recurses without bound.")
    }
    fn score(&self, _: &Features) -> Result<Score> {
        Ok(Score::new(descend(0, std::hint::black_box(u64::MAX), [1; 16]) as f64))
    }
}

export_scorer!(Deep);
