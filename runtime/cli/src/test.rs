//! `scorehost test <plugin dir>`: the plugin's golden vectors (`tests.jsonl`),
//! run exactly as the store's validation gate runs them — loaded and
//! initialised from the directory, each vector under the manifest's
//! production limits, twice (the second pass on reused instances) — with the
//! fuel and latency of each, so a team knows before it uploads.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use scorehost::Runtime;
use scorehost::control::golden;

/// Arguments of `scorehost test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// A plugin directory (or bundled example name) with a `tests.jsonl`.
    plugin: PathBuf,
}

/// Prints one line per vector and a summary; exit code 1 if any failed.
pub fn run(runtime: &Runtime, args: TestArgs) -> anyhow::Result<ExitCode> {
    let dir = super::resolve_plugin(&args.plugin)?;
    let version = runtime.load(&dir).with_context(|| format!("loading {}", dir.display()))?;
    let vectors = golden::read(&dir, version.manifest().world)?;
    let report = golden::check(&version, &vectors);
    let limits = version.limits();
    for v in &report.vectors {
        let status = if v.failure.is_none() { "ok  " } else { "FAIL" };
        println!(
            "{status} {:<52} fuel {:>12} ({:>5.2}% of budget)  {:>8} µs",
            v.name,
            v.fuel_used,
            100.0 * v.fuel_used as f64 / limits.fuel as f64,
            v.elapsed.as_micros()
        );
        if let Some(f) = &v.failure {
            println!("     {f}");
        }
    }
    let failed = report.vectors.iter().filter(|v| v.failure.is_some()).count();
    println!(
        "{}: {} vectors, {failed} failed; max fuel {} of {}, max latency {} µs of a {} ms deadline",
        version.label(),
        report.vectors.len(),
        report.max_fuel(),
        limits.fuel,
        report.max_elapsed().as_micros(),
        limits.deadline.as_millis()
    );
    Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
