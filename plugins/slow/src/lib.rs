//! # slow — a scorer that takes as long as it is asked to
//!
//! Shows: nothing a real plugin should do. It busy-waits `ms` milliseconds of
//! wall-clock time (WASI wall clock) and returns `ms` as the score, so the
//! HTTP tests can hold calls in flight: overload (503 + Retry-After), graceful
//! shutdown (in-flight requests finish, new ones are refused) and deadlines.
//! Without `ms` it takes `amount_usd` milliseconds, so it can be the scorer of
//! a pipeline behind txn-features. With `sleep_ms` it calls
//! `std::thread::sleep`, which the host refuses (a trap, not a blocked thread).

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
            .input(float("sleep_ms").doc("sleep this long instead (the host forbids it: a trap)"))
    }
    fn score(&self, f: &Features) -> Result<Score> {
        if let Some(ms) = f.float_opt("sleep_ms")? {
            std::thread::sleep(std::time::Duration::from_secs_f64(ms / 1e3));
            return Ok(Score::new(ms));
        }
        let ms = match f.float_opt("ms")? {
            Some(ms) => ms,
            None => f.float("amount_usd")?,
        };
        // The wall clock: plugins get no monotonic clock (nothing to sleep on).
        let start = std::time::SystemTime::now();
        while start.elapsed().map_or(0.0, |d| d.as_secs_f64() * 1e3) < ms {
            std::hint::spin_loop();
        }
        Ok(Score::new(ms))
    }
}

export_scorer!(Slow);
