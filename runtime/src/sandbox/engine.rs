//! The one shared wasmtime [`Engine`] and its epoch ticker.
//!
//! All plugins share one engine, configured once: fuel metering and epoch
//! interruption on (every call has both budgets), the pooling allocator for
//! instances (and the fiber stacks `call_async` runs on), copy-on-write memory
//! images so an instance starts from the plugin's initialised snapshot without
//! copying it. One ticker thread advances the epoch every [`EPOCH_TICK`]; a
//! call's deadline is a number of ticks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::sandbox::limits::{MAX_MEMORY_MIB, MAX_TABLE_ELEMENTS};

/// How often the epoch advances: the resolution of call deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Default bytes of each memory slot's dirtied pages reset in place (kept
/// resident) when an instance is torn down; beyond them, pages are
/// decommitted. See the measurements in `config`.
pub const KEEP_RESIDENT: usize = 64 << 10;

/// Sizing of the instance pool: how many calls may hold an instance at once,
/// and how much of a freed instance's memory its slot keeps resident.
#[derive(Debug, Clone, Copy)]
pub struct PoolSize {
    /// Concurrent component instances (one per in-flight call, plus loads).
    pub instances: u32,
    /// Bytes of the pages an instance dirtied that its slot resets in place
    /// and keeps resident for the next instance (the rest are decommitted and
    /// fault back in). More makes new instances of big-heap plugins (Python:
    /// ~0.9 MiB touched per call) cheaper, at up to `instances` times this in
    /// resident memory. `scorehost serve --keep-resident-kib`.
    pub keep_resident: usize,
}

impl Default for PoolSize {
    fn default() -> Self {
        Self { instances: 256, keep_resident: KEEP_RESIDENT }
    }
}

/// The shared engine plus the thread that drives its epoch.
pub struct HostEngine {
    engine: Engine,
    /// Whether calls are metered (fuel) and interruptible (epoch); see
    /// [`HostEngine::unmetered`].
    metered: bool,
    stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
    /// Warm instances idle between calls, all versions together: each holds
    /// a pool slot, so they are capped at a quarter of the pool and the rest
    /// stays free for calls (and loads) of any version.
    idle: AtomicUsize,
    max_idle: usize,
}

impl HostEngine {
    /// Builds the engine and starts the epoch ticker. Called once per process.
    pub fn new(pool: PoolSize) -> wasmtime::Result<Arc<Self>> {
        Self::build(pool, true)
    }

    /// An engine with neither fuel metering nor epoch interruption compiled
    /// into the guest code: nothing stops a plugin that never returns. It
    /// exists to measure what those two checks cost (`benches/benches/call.rs`,
    /// `budgets/*`); nothing serves with it.
    pub fn unmetered(pool: PoolSize) -> wasmtime::Result<Arc<Self>> {
        Self::build(pool, false)
    }

    fn build(pool: PoolSize, metered: bool) -> wasmtime::Result<Arc<Self>> {
        let mut cfg = config(pool);
        cfg.consume_fuel(metered);
        cfg.epoch_interruption(metered);
        let engine = Engine::new(&cfg)?;
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let (engine, stop) = (engine.clone(), stop.clone());
            std::thread::Builder::new().name("scorehost-epoch".into()).spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })?
        };
        let max_idle = (pool.instances as usize / 4).max(1);
        Ok(Arc::new(Self {
            engine,
            metered,
            stop,
            ticker: Some(ticker),
            idle: AtomicUsize::new(0),
            max_idle,
        }))
    }

    /// The engine, for compiling and instantiating.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Whether guest code counts fuel and checks the epoch (always, except in
    /// an engine from [`HostEngine::unmetered`]).
    pub fn metered(&self) -> bool {
        self.metered
    }

    /// Takes one of the engine-wide idle places for a warm instance; false
    /// when they are all taken (the instance is then dropped, its slot freed).
    pub(crate) fn reserve_idle(&self) -> bool {
        self.idle
            .try_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max_idle).then_some(n + 1))
            .is_ok()
    }

    /// Gives back `n` idle places (instances taken for a call, or dropped).
    pub(crate) fn release_idle(&self, n: usize) {
        self.idle.fetch_sub(n, Ordering::AcqRel);
    }

    /// Epoch ticks for a deadline, rounded up, plus one so a call always gets
    /// at least its full deadline whatever the phase of the ticker.
    pub fn deadline_ticks(deadline: Duration) -> u64 {
        deadline.as_micros().div_ceil(EPOCH_TICK.as_micros()) as u64 + 1
    }
}

impl Drop for HostEngine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

/// The engine settings. They are part of the compiled-cache key (through
/// wasmtime's compatibility hash), so changing them invalidates the cache.
fn config(pool: PoolSize) -> Config {
    let mut cfg = Config::new();
    cfg.consume_fuel(true);
    cfg.epoch_interruption(true);
    cfg.wasm_component_model(true);
    cfg.cranelift_opt_level(wasmtime::OptLevel::Speed);
    cfg.max_wasm_stack(512 << 10);
    // For profiling guest code: `perf` names JIT-compiled wasm functions from
    // /tmp/perf-<pid>.map (docs/performance.md, "Profiling recipes").
    if std::env::var_os("SCOREHOST_PERFMAP").is_some() {
        cfg.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }

    let n = pool.instances;
    let mut p = PoolingAllocationConfig::default();
    p.total_component_instances(n);
    p.total_core_instances(n * 4);
    p.total_memories(n * 2);
    p.total_tables(n * 8);
    p.total_stacks(n);
    p.max_core_instances_per_component(16);
    p.max_memories_per_component(2);
    p.max_tables_per_component(8);
    p.max_tables_per_module(2);
    p.max_memory_size((MAX_MEMORY_MIB << 20) as usize);
    p.table_elements(MAX_TABLE_ELEMENTS);
    // Measured with `cargo bench -p scorehost-benches --bench call -- call/logreg/wasm`
    // (median per call, fresh instance): defaults 34.6 µs; 2 MiB kept resident
    // 34.5 µs; 256 KiB 35.6 µs; 64 KiB 31.6 µs; 64 KiB + decommits batched by 16
    // 26.3 µs. Pages a guest dirtied stay resident and are reset in place; the
    // rest are decommitted 16 slots at a time (a slot is reused only after its
    // reset, so batching never exposes one call's memory to the next).
    p.linear_memory_keep_resident(pool.keep_resident);
    // Issue #6, `call-loop fresh` (logreg, a new instance per call): 27.6 µs
    // per call before, 13.8 µs with PAGEMAP_SCAN. A new instance used to
    // copy-on-write fault every snapshot page the guest touched and the slot's
    // reset madvised them away again (~30% of the call in the kernel); the
    // ioctl finds exactly the dirtied pages and resets them in place, so they
    // stay resident. `Auto`: Linux 6.7+; elsewhere the madvise path as before.
    // With the scan, keeping 64 KiB, 1 MiB or 4 MiB resident measured alike
    // (13.8–14.0 µs; logreg dirties less than 64 KiB). 1 MiB let every slot
    // ever used keep up to 1 MiB resident: the 30 s soak of .ci/run then grew
    // RSS by 6.85% (limit 5%) as hostile plugins' thrown-away instances
    // spread over new slots; 64 KiB keeps it where it was.
    p.pagemap_scan(wasmtime::Enabled::Auto);
    p.table_keep_resident(64 << 10);
    p.decommit_batch_size(16);
    cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(p));
    cfg
}
