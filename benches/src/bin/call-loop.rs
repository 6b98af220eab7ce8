//! Runs one kind of call in a tight loop, for profilers: `perf record` or
//! `valgrind --tool=callgrind` see the call and nothing else (no load, no
//! compile, no criterion). Prints the mean time and fuel per call.
//!
//! Run: `cargo build --release -p scorehost-benches --bin call-loop`, then
//! `perf record -g <target>/release/call-loop fresh 200000` or
//! `valgrind --tool=callgrind <target>/release/call-loop fresh 2000`.
//! Kinds: `warm` (logreg, a warm instance), `unmetered` (the same on an
//! engine without fuel and epoch checks), `fresh` (logreg,
//! `fresh_per_call`), `batch100` (logreg, 100 rows), `gbdt` (gbdt batch of
//! the 40 fixture rows).
//!
//! `SCOREHOST_PERFMAP=1` makes `perf` name the guest's own functions (JIT
//! code, via /tmp/perf-<pid>.map). `--plugin-dir DIR` loads another build of
//! the plugin (its manifest as it is) to compare two builds with one binary;
//! `--pool N` sizes the instance pool (`scorehost serve` uses 256),
//! `--keep-resident-kib K` what each slot keeps resident;
//! `--python` runs plugins/logreg-py instead of logreg (same answers) for
//! `warm`, `fresh` and `batch100`.

use std::time::Instant;

use clap::Parser;
use scorehost::{PoolSize, Runtime};
use scorehost_benches::{copy_with, gbdt_rows, logreg_features, staged};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// warm | unmetered | fresh | batch100 | gbdt
    kind: String,
    /// Calls to make (after 1000 warm-up calls).
    calls: u32,
    /// Load the plugin from this directory instead of the bundled build, to
    /// compare two builds of it (a copy of the staged directory, say).
    #[arg(long)]
    plugin_dir: Option<std::path::PathBuf>,
    /// Instance pool size (`scorehost serve` uses 256).
    #[arg(long, default_value_t = 16)]
    pool: u32,
    /// KiB of a freed instance's dirtied memory its slot keeps resident
    /// (`scorehost serve --keep-resident-kib`; default as there).
    #[arg(long)]
    keep_resident_kib: Option<usize>,
    /// Run the Python twin of logreg (plugins/logreg-py; needs componentize-py
    /// at build time).
    #[arg(long)]
    python: bool,
}

fn main() {
    let args = Args::parse();
    let mut pool = PoolSize { instances: args.pool, ..Default::default() };
    if let Some(kib) = args.keep_resident_kib {
        pool.keep_resident = kib << 10;
    }
    let rt = if args.kind == "unmetered" { Runtime::unmetered(pool) } else { Runtime::new(pool, None) }
        .expect("runtime");
    let logreg = if args.python { "logreg-py" } else { "logreg" };
    let logreg_dir = if args.python {
        scorehost_plugin_artifacts::find(logreg)
            .unwrap_or_else(|| panic!("{}", scorehost_plugin_artifacts::PYTHON_SKIPPED))
    } else {
        staged(logreg)
    };
    let fresh_dir; // outlives the load
    let (dir, rows) = match args.kind.as_str() {
        "warm" | "unmetered" => (logreg_dir, vec![logreg_features()]),
        "fresh" => {
            fresh_dir = copy_with(logreg, |m| format!("{m}\n[instances]\nfresh_per_call = true\n"));
            (fresh_dir.path().to_owned(), vec![logreg_features()])
        }
        "batch100" => (logreg_dir, vec![logreg_features(); 100]),
        "gbdt" => (staged("gbdt"), gbdt_rows().maps),
        other => panic!("unknown kind {other}"),
    };
    let v = rt.load(args.plugin_dir.as_deref().unwrap_or(&dir)).expect("load");
    let ex = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("executor");
    let call = || {
        if rows.len() == 1 {
            ex.block_on(v.score_async(&rows[0], None)).map(|o| o.fuel_used)
        } else {
            ex.block_on(v.score_batch_async(&rows, None)).map(|o| o.fuel_used)
        }
    };
    for _ in 0..1000 {
        call().expect("call");
    }
    let start = Instant::now();
    let mut fuel = 0;
    for _ in 0..args.calls {
        fuel += call().expect("call");
    }
    println!(
        "{} calls, {:.2} µs per call, {} fuel per call",
        args.calls,
        start.elapsed().as_secs_f64() * 1e6 / f64::from(args.calls),
        fuel / u64::from(args.calls)
    );
}
