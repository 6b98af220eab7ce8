//! # slow — a scorer that takes as long as it is asked to
//!
//! Shows: nothing a real plugin should do. It busy-waits `ms` milliseconds of
//! wall-clock time (WASI monotonic clock) and returns `ms` as the score, so the
//! HTTP tests can hold calls in flight: overload (503 + Retry-After), graceful
//! shutdown (in-flight requests finish, new ones are refused) and deadlines.
//! Without `ms` it takes `amount_usd` milliseconds, so it can be the scorer of
//! a pipeline behind txn-features.

use scorehost_guest::prelude::*;

struct Slow;

impl Scorer for Slow {
    fn init(_: &Config) -> Result<Self> {
        Ok(Slow)
    }
    fn metadata(&self) -> Metadata {
        Metadata::new("slow", "0.1.0")
            .input(float("ms").doc("milliseconds to take"))
            .input(float("amount_usd").doc("milliseconds to take when `ms` is absent"))
    }
    fn score(&self, f: &Features) -> Result<Score> {
        let ms = match f.float_opt("ms")? {
            Some(ms) => ms,
            None => f.float("amount_usd")?,
        };
        let start = std::time::Instant::now();
        while start.elapsed().as_secs_f64() * 1e3 < ms {
            std::hint::spin_loop();
        }
        Ok(Score::new(ms))
    }
}

export_scorer!(Slow);
