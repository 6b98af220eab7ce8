//! The `scorehost` binary: a thin CLI over the `scorehost` library, in its
//! own crate (as wasmtime-cli sits on wasmtime) so the library carries no
//! clap, anyhow, log formatting or global allocator, and builds no plugins.
//!
//! - `scorehost serve` serves plugins over HTTP (the bundled examples by default);
//! - `scorehost call <plugin> --input '<json>'` runs one call under production
//!   limits and prints the result with fuel used and elapsed time;
//! - `scorehost inspect <plugin dir | file.wasm>` prints world, metadata, limits;
//! - `scorehost test <plugin>` runs its golden vectors as the gate does;
//! - `scorehost replay <log> --plugin <dir>` re-scores a decision log;
//! - `scorehost new <dir>` scaffolds a plugin crate;
//! - `scorehost push <plugin> <registry>/<repo>:<tag>` pushes it as an OCI artifact.
//!
//! `<plugin>` is a plugin directory, or the name of a bundled plugin, built
//! from `plugins/` by the scorehost-plugin-artifacts crate.

mod call;
#[cfg(feature = "fleet")]
mod fleet;
mod inspect;
mod new;
mod push;
mod replay;
mod serve;
mod test;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use scorehost::sandbox::cache::ComponentCache;
use scorehost::{PoolSize, Runtime};

/// scorehost: run sandboxed ML feature and scoring plugins.
#[derive(Debug, Parser)]
#[command(name = "scorehost", version, about)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
    /// Where compiled, initialised components are cached [default:
    /// $SCOREHOST_CACHE_DIR, else $XDG_CACHE_HOME/scorehost, else ~/.cache/scorehost].
    #[arg(long, global = true)]
    cache_dir: Option<PathBuf>,
    /// Compile from scratch and write nothing to the cache.
    #[arg(long, global = true)]
    no_cache: bool,
    /// Log lines on stderr as human text or as one JSON object per line
    /// (level filter: $SCOREHOST_LOG, default `info`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event, with its spans' fields.
    Text,
    /// One JSON object per event: timestamp, level, target, fields, spans.
    Json,
}

impl Args {
    /// The log format asked for, for setting up logging before [`run`].
    pub fn log_format(&self) -> LogFormat {
        self.log_format
    }
}

// Parsed once per process: the size of `serve`'s many options does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run one call locally under the plugin's production limits.
    Call(call::CallArgs),
    /// Read and change the fleet's desired state in etcd (built with `--features fleet`).
    #[cfg(feature = "fleet")]
    Fleet(fleet::FleetArgs),
    /// Print a plugin's world, metadata and limits.
    Inspect(inspect::InspectArgs),
    /// Create a plugin crate (scorer or extractor) that builds and passes `scorehost test`.
    New(new::NewArgs),
    /// Pack a plugin as an OCI artifact and push it to a registry; prints its digest.
    Push(push::PushArgs),
    /// Re-score a decision log with another plugin version and report the differences.
    Replay(replay::ReplayArgs),
    /// Serve plugins over HTTP (the bundled examples by default).
    Serve(serve::ServeArgs),
    /// Run a plugin's golden vectors (tests.jsonl) as the validation gate does.
    Test(test::TestArgs),
}

/// Runs the parsed command; the exit code is 1 when the call failed.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Scaffolding, pushing and the fleet need no engine.
    let command = match args.command {
        Command::New(a) => return new::run(a),
        Command::Push(a) => return push::run(a),
        #[cfg(feature = "fleet")]
        Command::Fleet(a) => return fleet::run(a),
        other => other,
    };
    let cache = match args.cache_dir.or_else(ComponentCache::default_dir) {
        Some(dir) if !args.no_cache => Some(
            ComponentCache::new(&dir).with_context(|| format!("opening the cache dir {}", dir.display()))?,
        ),
        _ => None,
    };
    let pool = match &command {
        Command::Serve(a) => {
            PoolSize { keep_resident: (a.keep_resident_kib as usize) << 10, ..PoolSize::default() }
        }
        _ => PoolSize { instances: 16, ..Default::default() },
    };
    let runtime = std::sync::Arc::new(Runtime::new(pool, cache)?);
    match command {
        Command::Call(a) => call::run(&runtime, a),
        Command::Inspect(a) => inspect::run(&runtime, a),
        Command::New(_) | Command::Push(_) => unreachable!("handled before the engine is built"),
        #[cfg(feature = "fleet")]
        Command::Fleet(_) => unreachable!("handled before the engine is built"),
        Command::Replay(a) => replay::run(&runtime, a),
        Command::Serve(a) => serve::run(&runtime, a).map(|()| ExitCode::SUCCESS),
        Command::Test(a) => test::run(&runtime, a),
    }
}

/// A plugin directory as given, or the staged directory of a bundled example.
pub fn resolve_plugin(arg: &Path) -> anyhow::Result<PathBuf> {
    if arg.exists() {
        return Ok(arg.to_owned());
    }
    let name = arg.to_string_lossy();
    scorehost_plugin_artifacts::find(&name).with_context(|| {
        let names: Vec<_> = scorehost_plugin_artifacts::names().collect();
        format!("`{name}` is neither a plugin directory nor a bundled plugin ({})", names.join(", "))
    })
}

/// mimalloc instead of glibc malloc: a request allocates a few dozen small
/// objects across threads, which glibc's arenas make expensive (see
/// docs/performance.md for the before/after).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    disable_transparent_huge_pages();
    let args = Args::parse();
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
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    match run(args) {
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
