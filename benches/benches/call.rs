//! What each step of serving a score costs, each against a baseline measured
//! in the same run (docs/performance.md has the table and what it shows):
//!
//! - `compile/*`, `load/*`: cranelift alone; a cold load (instrument, init,
//!   snapshot, compile) vs a load from the compiled cache;
//! - `call/*`: one call per example plugin — JSON → row, a warm instance of
//!   the snapshot, fuel and deadline armed, `call_async` driven as the server's
//!   async workers drive it, the result lifted — against the same plugin crate
//!   compiled natively, and the same call on a brand-new instance
//!   (`[instances] fresh_per_call`);
//! - `http/*`: a whole single-row request through the router, in-process;
//! - `batch/*`: 1, 10, 100, 1000 rows in one call (per-row throughput);
//! - `gbdt-evaluator/*`: the tree evaluator (`plugins/gbdt/src/model.rs`) per
//!   row, from the same JSON rows, in wasm and compiled natively — the same
//!   source — and the native walk alone;
//! - `budgets/*`: fuel metering and epoch checks compiled in vs not;
//! - `json-to-row/*`: request bytes → the WIT row the guest receives.
//!
//! Run: `cargo bench -p scorehost-benches --bench call`
//! (`-- --quick` for a fast pass; `-- logreg` to filter).

// criterion_group! generates an undocumented `pub fn benches`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, header};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gbdt::model::Ensemble;
use http_body_util::BodyExt;
use scorehost::http::codec::parse_object;
use scorehost::http::{App, ServerConfig, router};
use scorehost::sandbox::bindings::frames::Frame as HostFrame;
use scorehost::serving::pipeline::Pipelines;
use scorehost::serving::registry::Registry;
use scorehost::{PluginVersion, PoolSize, Runtime};
use scorehost_benches::{
    GbdtRows, copy_with, gbdt_features, gbdt_rows, gbdt_scaled, logreg_features, payment_event, staged,
    wide_features, wide_logreg_manifest,
};
use scorehost_guest::Config;
use scorehost_guest::bindings::frames::Frame as GuestFrame;
use scorehost_guest::bindings::types::Row as GuestRow;
use scorehost_guest::testing::{Harness, set_model_dir};
use serde_json::{Map, Value, json};
use tower::ServiceExt;

fn runtime() -> Runtime {
    Runtime::new(PoolSize { instances: 64, ..Default::default() }, None).expect("runtime")
}

/// A single-threaded executor, as one of the server's async workers.
fn executor() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("executor")
}

fn score(ex: &tokio::runtime::Runtime, v: &PluginVersion, f: &Map<String, Value>) {
    ex.block_on(v.score_async(black_box(f), None)).expect("score");
}

/// Cranelift alone, on the component as shipped; and the start-up paths.
fn compile_and_load(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("compile");
    g.sample_size(10);
    for name in ["logreg", "gbdt"] {
        let wasm = std::fs::read(staged(name).join(format!("{name}.wasm"))).expect("component");
        g.bench_function(name, |b| {
            b.iter(|| {
                wasmtime::component::Component::new(rt.engine().engine(), black_box(&wasm)).expect("compile")
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("load/gbdt");
    g.sample_size(10);
    g.bench_function("cold", |b| b.iter(|| rt.load(&staged("gbdt")).expect("load")));
    let cache_dir = tempfile::tempdir().expect("tempdir");
    let cache = scorehost::sandbox::cache::ComponentCache::new(cache_dir.path()).expect("cache");
    let warm = Runtime::new(PoolSize { instances: 16, ..Default::default() }, Some(cache)).expect("runtime");
    warm.load(&staged("gbdt")).expect("prime the cache");
    g.bench_function("from-cache", |b| b.iter(|| warm.load(&staged("gbdt")).expect("load")));
    g.finish();
}

fn per_call(c: &mut Criterion) {
    let rt = runtime();
    let ex = executor();
    let mut g = c.benchmark_group("call");

    let logreg = rt.load(&staged("logreg")).expect("logreg");
    let f = logreg_features();
    g.bench_function("logreg/wasm", |b| b.iter(|| score(&ex, &logreg, &f)));
    let fresh = copy_with("logreg", |m| format!("{m}\n[instances]\nfresh_per_call = true\n"));
    let fresh = rt.load(fresh.path()).expect("fresh logreg");
    g.bench_function("logreg/wasm-fresh-instance", |b| b.iter(|| score(&ex, &fresh, &f)));
    set_model_dir(staged("logreg").join("model"));
    let native =
        Harness::<logreg::LogReg>::scorer(Config::new([("model_file", "weights.json")])).expect("native");
    let fj = Value::Object(f.clone());
    g.bench_function("logreg/native", |b| b.iter(|| native.score(black_box(&fj)).expect("score")));

    let gbdt = rt.load(&staged("gbdt")).expect("gbdt");
    let gf = gbdt_features();
    g.bench_function("gbdt/wasm", |b| b.iter(|| score(&ex, &gbdt, &gf)));
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

/// A whole single-row request, in-process: routing, body read, strict JSON
/// parse, the call, the response JSON, metrics. The denominator of "what a
/// fresh instance adds to a request"; `logreg-fresh` is the same request to a
/// `fresh_per_call` copy, instantiation and teardown included
/// (`benches/fresh.sh` measures the same over real sockets).
fn http(c: &mut Criterion) {
    let rt = runtime();
    let ex = executor();
    let fresh = copy_with("logreg", |m| format!("{m}\n[instances]\nfresh_per_call = true\n"));
    let body = json!({"features": logreg_features()}).to_string();
    let mut g = c.benchmark_group("http");
    for (label, dir) in [("logreg", staged("logreg")), ("logreg-fresh", fresh.path().to_owned())] {
        let registry = Arc::new(Registry::new([rt.load(&dir).expect("logreg")]));
        let app = App::new(registry, Pipelines::default(), ServerConfig::default());
        g.bench_function(format!("{label}/in-process"), |b| {
            b.iter(|| {
                ex.block_on(async {
                    let req = Request::post("/v1/plugins/logreg/score")
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(Body::from(body.clone()))
                        .expect("request");
                    let res = router(app.clone()).oneshot(req).await.expect("infallible");
                    assert!(res.status().is_success());
                    black_box(res.into_body().collect().await.expect("body").to_bytes())
                })
            })
        });
    }
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
        g.bench_function(label, |b| b.iter(|| score(&ex, &v, &input)));
    }
    g.finish();
}

fn batch(c: &mut Criterion) {
    let rt = runtime();
    let ex = executor();
    let logreg = rt.load(&staged("logreg")).expect("logreg");
    let mut g = c.benchmark_group("batch/logreg");
    for n in [1usize, 10, 100, 1000] {
        let rows = vec![logreg_features(); n];
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &rows, |b, rows| {
            b.iter(|| ex.block_on(logreg.score_batch_async(black_box(rows), None)).expect("batch"))
        });
    }
    g.finish();
}

/// The tree evaluator per row: every row of the fixture, from the request's
/// JSON rows, scored in one batch call in wasm (JSON → the batch's frame,
/// lowering, the plugin's `score_frame`, lifting, reasons resolved to names)
/// and natively, two ways from the same JSON rows and the same host layout:
/// `native` runs the plugin's per-row `score` on each row (the shared
/// `Ensemble::explain`, reason strings built in the plugin), `native-frame`
/// lays the rows out as the same frame and runs the same `score_frame`,
/// resolving its reasons to names as the host does. The target is against
/// the faster of the two. `evaluator-only` is the native walk alone, from
/// ready vectors. With the bundled 25-tree model, and with a 500-tree one
/// where the tree walk dominates.
fn gbdt_evaluator(c: &mut Criterion) {
    let rt = runtime();
    let ex = executor();
    let GbdtRows { vectors: rows, maps } = gbdt_rows();
    let mut g = c.benchmark_group("gbdt-evaluator");
    g.throughput(Throughput::Elements(rows.len() as u64));
    for times in [1, 20] {
        let (dir, model) = gbdt_scaled(times);
        let trees = 25 * times;
        let gbdt = rt.load(dir.path()).expect("gbdt");
        g.bench_function(format!("{trees}-trees/wasm"), |b| {
            b.iter(|| ex.block_on(gbdt.score_batch_async(black_box(&maps), None)).expect("batch"))
        });
        set_model_dir(dir.path().join("model"));
        let native =
            Harness::<gbdt::Gbdt>::scorer(Config::new([("model_file", "model.json")])).expect("native");
        g.bench_function(format!("{trees}-trees/native"), |b| {
            b.iter(|| {
                for m in black_box(&maps) {
                    let row = guest_row(gbdt.inputs().row(m).expect("row"));
                    black_box(native.score_row(&row).expect("score"));
                }
            })
        });
        g.bench_function(format!("{trees}-trees/native-frame"), |b| {
            b.iter(|| {
                let mut frame =
                    HostFrame { rows: 0, numbers: Vec::new(), texts: Vec::new(), vectors: Vec::new() };
                for m in black_box(&maps) {
                    gbdt.inputs().append_to(m, &mut frame).expect("row");
                }
                for score in native.score_frame(&guest_frame(frame)) {
                    black_box(score.expect("score"));
                }
            })
        });
        let ensemble = Ensemble::from_json(&model).expect("ensemble");
        let mut reasons = Vec::new();
        g.bench_function(format!("{trees}-trees/evaluator-only"), |b| {
            b.iter(|| {
                for x in &rows {
                    black_box(ensemble.explain(black_box(x), 3, &mut reasons));
                }
            })
        });
    }
    g.finish();
}

/// The host's positional row as the guest SDK's type (what lowering and the
/// guest's lifting produce in wasm), for the native side of `gbdt-evaluator`.
fn guest_row(row: scorehost::sandbox::bindings::types::Row) -> GuestRow {
    assert!(row.extra.is_empty(), "gbdt declares no open inputs");
    GuestRow {
        numbers: row.numbers,
        missing: row.missing,
        texts: row.texts,
        vectors: row.vectors,
        extra: Vec::new(),
    }
}

/// The host's frame as the guest SDK's type, for the native side of `gbdt-evaluator`.
fn guest_frame(frame: HostFrame) -> GuestFrame {
    GuestFrame { rows: frame.rows, numbers: frame.numbers, texts: frame.texts, vectors: frame.vectors }
}

/// Fuel metering and epoch checks compiled into the guest vs not.
fn budgets(c: &mut Criterion) {
    let ex = executor();
    let maps = gbdt_rows().maps;
    let mut g = c.benchmark_group("budgets");
    for (label, rt) in [
        ("metered", runtime()),
        ("unmetered", Runtime::unmetered(PoolSize { instances: 16, ..Default::default() }).expect("runtime")),
    ] {
        let logreg = rt.load(&staged("logreg")).expect("logreg");
        let f = logreg_features();
        g.bench_function(format!("logreg/{label}"), |b| b.iter(|| score(&ex, &logreg, &f)));
        let gbdt = rt.load(&staged("gbdt")).expect("gbdt");
        g.bench_function(format!("gbdt-batch/{label}"), |b| {
            b.iter(|| ex.block_on(gbdt.score_batch_async(black_box(&maps), None)).expect("batch"))
        });
    }
    g.finish();
}

/// The request body's bytes to the row the guest receives: strict JSON parse,
/// then the positional layout resolved at load.
fn json_to_row(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("json-to-row");
    for (name, features) in [("logreg", logreg_features()), ("gbdt", gbdt_features())] {
        let v = rt.load(&staged(name)).expect("plugin");
        let body = json!({"features": features}).to_string().into_bytes();
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut req = parse_object(black_box(&body)).expect("json");
                let Some(Value::Object(features)) = req.remove("features") else { panic!("features") };
                black_box(v.inputs().row(&features).expect("row"))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, compile_and_load, per_call, http, abi, batch, gbdt_evaluator, budgets, json_to_row);
criterion_main!(benches);
