//! Per-call cost of each example plugin — a warm instance of its snapshot plus
//! one guest call (`call_async`, driven as the server's async workers drive
//! it), JSON → row conversion included — against the same logic compiled
//! natively (the baseline, measured in the same run); and the same call on a
//! brand-new instance (`[instances] fresh_per_call`).
//!
//! Run: `cargo bench -p scorehost-benches --bench call`
//! (add `-- --quick` for a fast pass; `-- logreg` to filter).

// criterion_group! generates an undocumented `pub fn benches`.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use scorehost::{PoolSize, Runtime};
use scorehost_benches::{
    copy_with, gbdt_features, logreg_features, payment_event, staged, wide_features, wide_logreg_manifest,
};
use scorehost_guest::Config;
use scorehost_guest::testing::{Harness, set_model_dir};
use serde_json::Value;

fn runtime() -> Runtime {
    Runtime::new(PoolSize { instances: 64 }, None).expect("runtime")
}

/// A single-threaded executor, as one of the server's async workers.
fn executor() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("executor")
}

fn per_call(c: &mut Criterion) {
    let rt = runtime();
    let ex = executor();
    let mut g = c.benchmark_group("call");

    let logreg = rt.load(&staged("logreg")).expect("logreg");
    let f = logreg_features();
    g.bench_function("logreg/wasm", |b| {
        b.iter(|| ex.block_on(logreg.score_async(black_box(&f), None)).expect("score"))
    });
    let fresh = copy_with("logreg", |m| format!("{m}\n[instances]\nfresh_per_call = true\n"));
    let fresh = rt.load(fresh.path()).expect("fresh logreg");
    g.bench_function("logreg/wasm-fresh-instance", |b| {
        b.iter(|| ex.block_on(fresh.score_async(black_box(&f), None)).expect("score"))
    });
    set_model_dir(staged("logreg").join("model"));
    let native =
        Harness::<logreg::LogReg>::scorer(Config::new([("model_file", "weights.json")])).expect("native");
    let fj = Value::Object(f.clone());
    g.bench_function("logreg/native", |b| b.iter(|| native.score(black_box(&fj)).expect("score")));

    let gbdt = rt.load(&staged("gbdt")).expect("gbdt");
    let gf = gbdt_features();
    g.bench_function("gbdt/wasm", |b| {
        b.iter(|| ex.block_on(gbdt.score_async(black_box(&gf), None)).expect("score"))
    });
    set_model_dir(staged("gbdt").join("model"));
    let native = Harness::<gbdt::Gbdt>::scorer(Config::new([("model_file", "model.json")])).expect("native");
    let gj = Value::Object(gf.clone());
    g.bench_function("gbdt/native", |b| b.iter(|| native.score(black_box(&gj)).expect("score")));

    let txn = rt.load(&staged("txn-features")).expect("txn-features");
    let e = payment_event();
    g.bench_function("txn-features/wasm", |b| {
        b.iter(|| ex.block_on(txn.extract_async(black_box(&e), None)).expect("extract"))
    });
    g.finish();
}

/// The ABI question of issue #2: 30 features passed positionally (resolved
/// against declared inputs at load) vs by name (open inputs), same model.
fn abi(c: &mut Criterion) {
    let rt = runtime();
    let ex = executor();
    let mut g = c.benchmark_group("abi-30-features");
    let input = wide_features(30);
    for (label, open) in [("positional", false), ("by-name", true)] {
        let dir = copy_with("logreg", |m| wide_logreg_manifest(m, 30, open));
        let v = rt.load(dir.path()).expect("wide logreg");
        g.bench_function(label, |b| {
            b.iter(|| ex.block_on(v.score_async(black_box(&input), None)).expect("score"))
        });
    }
    g.finish();
}

fn batch(c: &mut Criterion) {
    let rt = runtime();
    let ex = executor();
    let logreg = rt.load(&staged("logreg")).expect("logreg");
    let mut g = c.benchmark_group("batch/logreg");
    for n in [1usize, 100] {
        let rows = vec![logreg_features(); n];
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &rows, |b, rows| {
            b.iter(|| ex.block_on(logreg.score_batch_async(black_box(rows), None)).expect("batch"))
        });
    }
    g.finish();
}

/// Start-up: loading from the compiled cache vs instrument + init + snapshot + compile.
fn load(c: &mut Criterion) {
    let mut g = c.benchmark_group("load/gbdt");
    g.sample_size(10);
    let cold = runtime();
    g.bench_function("cold", |b| b.iter(|| cold.load(&staged("gbdt")).expect("load")));
    let cache_dir = tempfile::tempdir().expect("tempdir");
    let cache = scorehost::cache::ComponentCache::new(cache_dir.path()).expect("cache");
    let warm = Runtime::new(PoolSize { instances: 16 }, Some(cache)).expect("runtime");
    warm.load(&staged("gbdt")).expect("prime the cache");
    g.bench_function("from-cache", |b| b.iter(|| warm.load(&staged("gbdt")).expect("load")));
    g.finish();
}

criterion_group!(benches, per_call, abi, batch, load);
criterion_main!(benches);
