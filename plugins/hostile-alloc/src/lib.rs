//! # hostile-alloc — a scorer that allocates until something stops it
//!
//! Shows: the per-instance memory cap. Each block is touched so the pages are
//! real; the call ends as `memory_limit`, and the host stays up. Used by
//! runtime/tests/all/limits.rs.

use scorehost_guest::prelude::*;

struct Bomb;

impl Scorer for Bomb {
    fn init(_: &Config) -> Result<Self> {
        Ok(Bomb)
    }
    fn metadata(&self) -> Metadata {
        Metadata::new("hostile-alloc", "0.1.0").description("Allocates without bound.")
    }
    fn score(&self, _: &Features) -> Result<Score> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(std::hint::black_box(vec![0xA5; 1 << 20]));
        }
    }
}

export_scorer!(Bomb);
