//! Command-line parsing and dispatch.

mod call;
mod inspect;
mod new;
mod replay;
mod serve;
mod test;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use scorehost::cache::ComponentCache;
use scorehost::{PoolSize, Runtime};

/// scorehost: run sandboxed ML feature and scoring plugins.
#[derive(Debug, Parser)]
#[command(version, about)]
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
    /// Print a plugin's world, metadata and limits.
    Inspect(inspect::InspectArgs),
    /// Create a plugin crate (scorer or extractor) that builds and passes `scorehost test`.
    New(new::NewArgs),
    /// Re-score a decision log with another plugin version and report the differences.
    Replay(replay::ReplayArgs),
    /// Serve plugins over HTTP (the bundled examples by default).
    Serve(serve::ServeArgs),
    /// Run a plugin's golden vectors (tests.jsonl) as the validation gate does.
    Test(test::TestArgs),
}

/// Runs the parsed command; the exit code is 1 when the call failed.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Scaffolding needs no engine.
    let command = match args.command {
        Command::New(a) => return new::run(a),
        other => other,
    };
    let cache = match args.cache_dir.or_else(ComponentCache::default_dir) {
        Some(dir) if !args.no_cache => Some(
            ComponentCache::new(&dir).with_context(|| format!("opening the cache dir {}", dir.display()))?,
        ),
        _ => None,
    };
    let pool = match &command {
        Command::Serve(_) => PoolSize::default(),
        _ => PoolSize { instances: 16 },
    };
    let runtime = std::sync::Arc::new(Runtime::new(pool, cache)?);
    match command {
        Command::Call(a) => call::run(&runtime, a),
        Command::Inspect(a) => inspect::run(&runtime, a),
        Command::New(_) => unreachable!("handled before the engine is built"),
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
    scorehost_plugin_artifacts::ALL
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, dir)| PathBuf::from(dir))
        .with_context(|| {
            let names: Vec<_> = scorehost_plugin_artifacts::ALL.iter().map(|(n, _)| *n).collect();
            format!("`{name}` is neither a plugin directory nor a bundled plugin ({})", names.join(", "))
        })
}
