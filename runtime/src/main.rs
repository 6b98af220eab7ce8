//! The `scorehost` binary: a thin CLI over the library.
//!
//! - `scorehost call <plugin> --input '<json>'` runs one call under production
//!   limits and prints the result with fuel used and elapsed time;
//! - `scorehost inspect <plugin dir | file.wasm>` prints world, metadata, limits.
//!
//! `<plugin>` is a plugin directory, or the name of a bundled example
//! (txn-features, logreg, gbdt), built from `plugins/` by this crate's build.

mod cli;

/// mimalloc instead of glibc malloc: a request allocates a few dozen small
/// objects across threads, which glibc's arenas make expensive (see
/// docs/performance.md for the before/after).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SCOREHOST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // If stderr goes away (a closed pipe), drop log lines rather than let
        // tracing's own eprintln! panic the server.
        .log_internal_errors(false)
        .init();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
