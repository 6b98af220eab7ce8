//! # hostile-panic — a scorer that panics
//!
//! Shows: a Rust panic in a plugin is a trap (`guest_trap`, HTTP 500 later) and
//! the host carries on. With `panic_in_init = true` in its config it panics
//! during init instead, so the version fails to load with `init_failed`.

use scorehost_guest::prelude::*;

struct Panics;

impl Scorer for Panics {
    fn init(config: &Config) -> Result<Self> {
        if config.parse::<bool>("panic_in_init")?.unwrap_or(false) {
            panic!("hostile-panic: panicking in init as configured");
        }
        Ok(Panics)
    }
    fn metadata(&self) -> Metadata {
        Metadata::new("hostile-panic", "0.1.0").description("Panics in score.")
    }
    fn score(&self, _: &Features) -> Result<Score> {
        panic!("hostile-panic: this plugin always panics");
    }
}

export_scorer!(Panics);
