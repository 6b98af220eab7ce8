//! # hostile-output — a scorer whose answers the host must refuse
//!
//! Shows: the host checks what it lifts out of a guest before anyone sees it.
//! The `mode` input picks the answer:
//!
//! - `huge`: 200 000 reason codes (a few MiB of guest memory) — over the
//!   host's cap of 256 reasons;
//! - `long-code`: one reason whose code is 1 MiB — over the 256-byte cap;
//! - `nan`, `inf`, `-inf`: a score that is not a finite number;
//! - `nan-weight`: a finite score with a NaN reason weight;
//! - `huge-error`: an error whose message is 50 MiB — cut by the host to
//!   4 KiB right after it is lifted (`plugin_error`, HTTP 500);
//! - anything else, or absent: 0.5, a valid answer.
//!
//! Every refused answer is `invalid_output` (HTTP 500), a plugin fault that
//! counts towards its circuit breaker. Run: `cargo test -p scorehost --test all hostile`.

use scorehost_guest::Reason;
use scorehost_guest::prelude::*;

struct Unusable;

impl Scorer for Unusable {
    fn init(_: &Config) -> Result<Self> {
        Ok(Unusable)
    }
    fn metadata(&self) -> Metadata {
        Metadata::new("hostile-output", "0.1.0")
            .description("Answers unusable output on request.")
            .input(text("mode").doc("huge | long-code | nan | inf | -inf | nan-weight | huge-error"))
    }
    fn score(&self, f: &Features) -> Result<Score> {
        let mode = f.text_opt("mode")?.unwrap_or("");
        if mode == "huge-error" {
            return Err(PluginError::internal("x".repeat(50 << 20)));
        }
        Ok(match mode {
            "huge" => {
                let mut s = Score::new(0.5);
                s.reasons = (0..200_000).map(|i| Reason { code: format!("r{i}"), weight: 1.0 }).collect();
                s
            }
            "long-code" => Score::new(0.5).reason("x".repeat(1 << 20), 1.0),
            "nan" => Score::new(f64::NAN),
            "inf" => Score::new(f64::INFINITY),
            "-inf" => Score::new(f64::NEG_INFINITY),
            "nan-weight" => Score::new(0.5).reason("w", f64::NAN),
            _ => Score::new(0.5).reason("ok", 0.0),
        })
    }
}

export_scorer!(Unusable);
