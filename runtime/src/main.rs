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
    disable_transparent_huge_pages();
    let args = cli::Args::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SCOREHOST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // If stderr goes away (a closed pipe), drop log lines rather than let
        // tracing's own eprintln! panic the server.
        .log_internal_errors(false);
    match args.log_format() {
        cli::LogFormat::Text => logs.init(),
        cli::LogFormat::Json => logs.json().init(),
    }
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Turns transparent huge pages off for this process. mimalloc advises its
/// arenas for huge pages, so under load the heap grew in 2 MiB steps for about
/// 100 s before it settled (soak, dev build: 148 → 166 MiB; without huge pages
/// 109 → 111 MiB, flat from the first 20 s), which a leak check cannot tell
/// from a leak. Throughput before/after is in docs/performance.md. Linux
/// only; a kernel that refuses the call leaves things as they were.
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes one integer argument and only sets a
    // flag on this process; the unused arguments must be zero.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}
