//! # hostile-host — a scorer that makes the host do the work
//!
//! Shows: fuel counts guest instructions and the epoch deadline is checked in
//! guest code, so a plugin could try to escape both inside host calls. Every
//! host function it can reach is bounded in bytes per call, charged to the
//! call's fuel and checked against its wall-clock deadline
//! (`runtime/src/sandbox/host_budget.rs`). The `mode` input picks the abuse:
//!
//! - `random-big`: one `get-random-bytes` of 8 MiB — over the 64 KiB cap:
//!   `guest_trap` naming the cap;
//! - `random-loop` / `insecure-loop`: 64 KiB of random bytes, forever —
//!   `deadline_exceeded` at the 50 ms deadline;
//! - `random-once`: 64 KiB once, then a score: its fuel shows the charge;
//! - `log-loop`: a 1 MiB log message, forever — `deadline_exceeded` (or
//!   `out_of_fuel` with a smaller budget);
//! - `stdout-loop` / `stderr-loop`: writes, forever — the 64 KiB caps:
//!   `guest_trap`;
//! - `handles`: stdout handles, never dropped — the table of 1,024 WASI
//!   handles: `guest_trap`;
//! - `clock-loop`: reads the monotonic clock, forever — `deadline_exceeded`;
//! - `state-twice`: two state exchanges for one event — the second is refused
//!   (`over-quota`), which it returns as an `internal` error naming it;
//! - `state-loop`: state exchanges, forever — `deadline_exceeded`;
//! - anything else, or absent: 0.5.
//!
//! Run: `cargo test -p scorehost --test all host_calls` (built by
//! `plugins/artifacts`; never checked in as a binary).

use std::hint::black_box;

use scorehost_guest::prelude::*;
use scorehost_guest::state;

struct Abuser;

impl Scorer for Abuser {
    fn init(_: &Config) -> Result<Self> {
        Ok(Abuser)
    }
    fn metadata(&self) -> Metadata {
        Metadata::new("hostile-host", "0.1.0")
            .description("Makes the host work for it through WASI and log calls.")
            .input(text("mode").doc(
                "random-big | random-loop | insecure-loop | random-once | log-loop | \
                 stdout-loop | stderr-loop | handles | clock-loop | state-twice | state-loop",
            ))
    }
    fn score(&self, f: &Features) -> Result<Score> {
        let mode = f.text_opt("mode")?.unwrap_or("");
        let ask = || state::exchange(&state::Request::new().observe(state::Observe::new("hits", "me")));
        match mode {
            "state-twice" => {
                let first = ask().map_err(|e| PluginError::internal(format!("first exchange: {e}")))?;
                let second =
                    ask().map(|_| ()).map_err(|e| PluginError::internal(format!("second exchange: {e}")));
                second.map(|()| Score::new(first.observed(0).window(0).count as f64))
            }
            "state-loop" => loop {
                let _ = black_box(ask());
            },
            _ => {
                abuse(mode);
                Ok(Score::new(0.5))
            }
        }
    }
}

#[cfg(target_os = "wasi")]
fn abuse(mode: &str) {
    use std::io::Write;
    match mode {
        "random-big" => {
            black_box(wasip2::random::random::get_random_bytes(8 << 20));
        }
        "random-loop" => loop {
            black_box(wasip2::random::random::get_random_bytes(64 << 10));
        },
        "insecure-loop" => loop {
            black_box(wasip2::random::insecure::get_insecure_random_bytes(64 << 10));
        },
        "random-once" => {
            black_box(wasip2::random::random::get_random_bytes(64 << 10));
        }
        "log-loop" => {
            let message = "x".repeat(1 << 20);
            loop {
                scorehost_guest::log::info(&message);
            }
        }
        "stdout-loop" => {
            let chunk = [b'o'; 4096];
            loop {
                std::io::stdout().write_all(&chunk).expect("stdout refused the write");
            }
        }
        "stderr-loop" => {
            let chunk = [b'e'; 4096];
            loop {
                std::io::stderr().write_all(&chunk).expect("stderr refused the write");
            }
        }
        "handles" => loop {
            std::mem::forget(wasip2::cli::stdout::get_stdout());
        },
        "clock-loop" => loop {
            black_box(wasip2::clocks::monotonic_clock::now());
        },
        _ => {}
    }
}

/// Natively (unit tests of the SDK harness) there is no host to abuse.
#[cfg(not(target_os = "wasi"))]
fn abuse(_: &str) {}

export_scorer!(Abuser);
