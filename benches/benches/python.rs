//! What a Python plugin costs against its Rust twin, measured in the same run
//! (docs/performance.md, "Python plugins"): `plugins/logreg-py` and
//! `plugins/logreg` answer bit-for-bit the same (runtime/tests/all/python.rs).
//!
//! - `python/call/{rust,python}/{warm,fresh-instance}`: one row, on a warm
//!   instance and on a `fresh_per_call` copy (instantiation and teardown
//!   from the snapshot included), and `fresh-keep-2m` the same with 2 MiB
//!   of each pool slot kept resident (`serve --keep-resident-kib 2048`; the
//!   default keeps 64 KiB);
//! - `python/batch-100/{rust,python}`: a batch of 100 rows (the columnar
//!   frame path; the Python SDK's `score_frame` calls `score` per row);
//! - `python/load/{rust,python}/{cold,from-cache}`: loading the plugin: compile,
//!   `init` and snapshot; and from the compiled cache.
//!
//! It also prints each plugin's linear memory per instance (the most one
//! instance held, `plugin_memory_peak_bytes`) and its fuel per row.
//!
//! Run: `cargo bench -p scorehost-benches --bench python` (needs
//! componentize-py, else the Python plugin is not built and this says so).
//! HTTP, against FastAPI: `benches/python.sh`.

// criterion_group! generates an undocumented `pub fn benches`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use scorehost::{PluginVersion, PoolSize, Runtime};
use scorehost_benches::{copy_with, logreg_features, staged};
use serde_json::{Map, Value};

fn score(ex: &tokio::runtime::Runtime, v: &PluginVersion, f: &Map<String, Value>) -> u64 {
    ex.block_on(v.score_async(black_box(f), None)).expect("score").fuel_used
}

fn python(c: &mut Criterion) {
    let Some(py) = scorehost_plugin_artifacts::find("logreg-py") else {
        eprintln!("python: skipped, {}", scorehost_plugin_artifacts::PYTHON_SKIPPED);
        return;
    };
    let plugins: [(&str, &str, PathBuf); 2] =
        [("rust", "logreg", staged("logreg")), ("python", "logreg-py", py)];
    let rt = Runtime::new(PoolSize { instances: 64, ..Default::default() }, None).expect("runtime");
    let ex = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("executor");
    let f = logreg_features();
    let rows = vec![f.clone(); 100];

    let keep = PoolSize { instances: 64, keep_resident: 2 << 20 };
    let rt_keep = Runtime::new(keep, None).expect("runtime");

    let mut g = c.benchmark_group("python/call");
    for (label, name, dir) in &plugins {
        let warm = rt.load(dir).expect("load");
        let fuel = score(&ex, &warm, &f);
        g.bench_function(format!("{label}/warm"), |b| b.iter(|| score(&ex, &warm, &f)));
        let fresh_dir = copy_with(name, |m| format!("{m}\n[instances]\nfresh_per_call = true\n"));
        let fresh = rt.load(fresh_dir.path()).expect("load fresh");
        g.bench_function(format!("{label}/fresh-instance"), |b| b.iter(|| score(&ex, &fresh, &f)));
        let fresh = rt_keep.load(fresh_dir.path()).expect("load fresh");
        g.bench_function(format!("{label}/fresh-keep-2m"), |b| b.iter(|| score(&ex, &fresh, &f)));
        eprintln!(
            "python: {label}: {fuel} fuel per row; linear memory per instance {:.1} MiB",
            warm.stats().memory_peak() as f64 / f64::from(1 << 20)
        );
    }
    g.finish();

    let mut g = c.benchmark_group("python/batch-100");
    for (label, _, dir) in &plugins {
        let v = rt.load(dir).expect("load");
        g.bench_function(*label, |b| {
            b.iter(|| ex.block_on(v.score_batch_async(black_box(&rows), None)).expect("batch"))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("python/load");
    g.sample_size(10);
    for (label, _, dir) in &plugins {
        g.bench_function(format!("{label}/cold"), |b| b.iter(|| rt.load(dir).expect("load")));
        let cache_dir = tempfile::tempdir().expect("tempdir");
        let cache = scorehost::sandbox::cache::ComponentCache::new(cache_dir.path()).expect("cache");
        let cached =
            Runtime::new(PoolSize { instances: 16, ..Default::default() }, Some(cache)).expect("runtime");
        cached.load(dir).expect("prime the cache");
        g.bench_function(format!("{label}/from-cache"), |b| b.iter(|| cached.load(dir).expect("load")));
    }
    g.finish();
}

criterion_group!(benches, python);
criterion_main!(benches);
