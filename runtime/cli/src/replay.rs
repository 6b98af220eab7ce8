//! `scorehost replay <log> --plugin <dir>`: re-scores the inputs of a decision
//! log (`serve --decision-log`) with another plugin version and reports how
//! the scores move — the check a team runs before promoting a model.
//!
//! Only decisions of the plugin's own name are replayed (a log holds every
//! plugin's); decisions that had no score (an error) are replayed and counted
//! apart. The report is JSON on stdout; exit code 0 unless the log or the
//! plugin cannot be read.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use scorehost::Runtime;
use scorehost::serving::decisions::Decision;
use scorehost::state::backend::{self, Access};
use serde_json::json;

/// Arguments of `scorehost replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// A decision log (JSONL) written by `scorehost serve --decision-log`.
    log: PathBuf,
    /// The plugin version to replay it against: a plugin directory or a
    /// bundled example.
    #[arg(long)]
    plugin: PathBuf,
    /// Score differences up to this are counted as unchanged.
    #[arg(long, default_value_t = 1e-9)]
    tolerance: f64,
    /// How many of the largest differences to list.
    #[arg(long, default_value_t = 10)]
    top: usize,
}

/// One replayed decision whose score moved.
struct Moved {
    request_id: String,
    before: f64,
    after: f64,
}

/// Replays the log; prints the report.
pub fn run(runtime: &Runtime, args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let dir = super::resolve_plugin(&args.plugin)?;
    let version = runtime.load(&dir).with_context(|| format!("loading {}", dir.display()))?;
    let name = version.manifest().name.clone();
    let file = std::fs::File::open(&args.log).with_context(|| format!("opening {}", args.log.display()))?;
    let (mut records, mut other_plugins, mut unreadable) = (0u64, 0u64, 0u64);
    let (mut same, mut errors_before, mut errors_after, mut now_failing, mut now_scoring) =
        (0u64, 0, 0, 0, 0);
    let mut moved: Vec<Moved> = Vec::new();
    let (mut sum_diff, mut max_diff, mut compared) = (0.0f64, 0.0f64, 0u64);
    let mut versions_before = std::collections::BTreeSet::new();
    // A plugin with state replays against one private store, in log order:
    // the live state is never read or written.
    let scratch = Access::scratch();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", args.log.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let Ok(d) = serde_json::from_str::<Decision>(&line) else {
            tracing::warn!("{}:{}: not a decision; skipped", args.log.display(), n + 1);
            unreadable += 1;
            continue;
        };
        if d.plugin != name {
            other_plugins += 1;
            continue;
        }
        records += 1;
        versions_before.insert(d.version.clone());
        let before = d.score.filter(|_| d.error.is_none());
        errors_before += u64::from(before.is_none());
        let after = backend::sync_scope(scratch.clone(), || version.score(&d.input, None))
            .ok()
            .and_then(|o| o.value.into_plugin_result().ok());
        errors_after += u64::from(after.is_none());
        match (before, after) {
            (Some(b), Some(a)) => {
                let diff = (a.score - b).abs();
                sum_diff += diff;
                max_diff = max_diff.max(diff);
                compared += 1;
                if diff <= args.tolerance {
                    same += 1;
                } else {
                    moved.push(Moved { request_id: d.request_id, before: b, after: a.score });
                }
            }
            (Some(_), None) => now_failing += 1,
            (None, Some(_)) => now_scoring += 1,
            (None, None) => {}
        }
    }
    moved.sort_by(|x, y| (y.after - y.before).abs().total_cmp(&(x.after - x.before).abs()));
    let report = json!({
        "plugin": name,
        "replayed_version": version.manifest().version,
        "logged_versions": versions_before,
        "decisions": records,
        "compared": compared,
        "unchanged": same,
        "changed": moved.len(),
        "tolerance": args.tolerance,
        "max_abs_diff": max_diff,
        "mean_abs_diff": if compared > 0 { sum_diff / compared as f64 } else { 0.0 },
        "errors_before": errors_before,
        "errors_after": errors_after,
        "now_failing": now_failing,
        "now_scoring": now_scoring,
        "skipped_other_plugins": other_plugins,
        "skipped_unreadable": unreadable,
        "largest_changes": moved.iter().take(args.top).map(|m| json!({
            "request_id": m.request_id, "before": m.before, "after": m.after, "diff": m.after - m.before,
        })).collect::<Vec<_>>(),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(ExitCode::SUCCESS)
}
