//! # slow — a scorer that takes as long as it is asked to
//!
//! Shows: nothing a real plugin should do. It busy-waits `ms` milliseconds of
//! wall-clock time (WASI wall clock) and returns `ms` as the score, so the
//! HTTP tests can hold calls in flight: overload (503 + Retry-After), graceful
//! shutdown (in-flight requests finish, new ones are refused) and deadlines.
//! Without `ms` it takes `amount_usd` milliseconds, so it can be the scorer of
//! a pipeline behind txn-features. With `sleep_ms` it calls
//! `std::thread::sleep`, which the host refuses (a trap, not a blocked thread).
//! With `count_calls` it returns how many calls this instance has served,
//! counted in a global: what the isolation tests use to see whether an
//! instance (and its memory) was reused or brand new. With `log_lines` it
//! writes that many info lines ("line i of n") to the host's log and returns
//! n: the logging tests (request ids, rate limits) use it. With `work` it does
//! a fixed amount of CPU work (`work` million loop iterations), however long
//! the host takes to give it the CPU: the breaker tests flood the host with it.

use std::sync::atomic::{AtomicU32, Ordering};

use scorehost_guest::prelude::*;

/// Calls this instance has served; lives in linear memory like any plugin state.
static CALLS: AtomicU32 = AtomicU32::new(0);

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
            .input(float("count_calls").doc("answer the calls this instance has served instead"))
            .input(float("log_lines").doc("write this many log lines instead"))
            .input(float("work").doc("millions of loop iterations of CPU work to do instead"))
    }
    fn score(&self, f: &Features) -> Result<Score> {
        let calls = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
        if f.float_opt("count_calls")?.is_some() {
            return Ok(Score::new(f64::from(calls)));
        }
        if let Some(n) = f.float_opt("log_lines")? {
            for i in 1..=n as u32 {
                scorehost_guest::log::info(&format!("line {i} of {n}"));
            }
            return Ok(Score::new(n));
        }
        if let Some(m) = f.float_opt("work")? {
            // A fixed amount of CPU, however long the host takes to run it.
            let mut x: u64 = 0;
            for i in 0..(m * 1e6) as u64 {
                x = std::hint::black_box(x.wrapping_add(i));
            }
            std::hint::black_box(x);
            return Ok(Score::new(m));
        }
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
