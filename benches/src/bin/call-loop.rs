//! Runs one kind of call in a tight loop, for profilers: `perf record` or
//! `valgrind --tool=callgrind` see the call and nothing else (no load, no
//! compile, no criterion). Prints the mean time per call.
//!
//! Run: `cargo build --release -p scorehost-benches --bin call-loop`, then
//! `perf record -g <target>/release/call-loop fresh 200000` or
//! `valgrind --tool=callgrind <target>/release/call-loop fresh 2000`.
//! Kinds: `warm` (logreg, a warm instance), `unmetered` (the same on an
//! engine without fuel and epoch checks), `fresh` (logreg,
//! `fresh_per_call`), `batch100` (logreg, 100 rows), `gbdt` (gbdt batch of
//! the 40 fixture rows).

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
}

fn main() {
    let args = Args::parse();
    let pool = PoolSize { instances: 16 };
    let rt = if args.kind == "unmetered" { Runtime::unmetered(pool) } else { Runtime::new(pool, None) }
        .expect("runtime");
    let fresh_dir; // outlives the load
    let (dir, rows) = match args.kind.as_str() {
        "warm" | "unmetered" => (staged("logreg"), vec![logreg_features()]),
        "fresh" => {
            fresh_dir = copy_with("logreg", |m| format!("{m}\n[instances]\nfresh_per_call = true\n"));
            (fresh_dir.path().to_owned(), vec![logreg_features()])
        }
        "batch100" => (staged("logreg"), vec![logreg_features(); 100]),
        "gbdt" => (staged("gbdt"), gbdt_rows().maps),
        other => panic!("unknown kind {other}"),
    };
    let v = rt.load(&dir).expect("load");
    let ex = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("executor");
    let call = || {
        if rows.len() == 1 {
            ex.block_on(v.score_async(&rows[0], None)).map(drop)
        } else {
            ex.block_on(v.score_batch_async(&rows, None)).map(drop)
        }
    };
    for _ in 0..1000 {
        call().expect("call");
    }
    let start = Instant::now();
    for _ in 0..args.calls {
        call().expect("call");
    }
    println!(
        "{} calls, {:.2} µs per call",
        args.calls,
        start.elapsed().as_secs_f64() * 1e6 / f64::from(args.calls)
    );
}
