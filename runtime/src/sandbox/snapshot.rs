//! Pre-initialisation: run a plugin's `init` once and snapshot the result.
//!
//! The component is instrumented by wasmtime-wizer, instantiated with the
//! model directory granted, `init` is called with the manifest's config, and
//! the initialised memories and globals are written into a new component. Every
//! instance then starts from *that* component (copy-on-write from the pooling
//! allocator), so parsing a model is paid once per plugin version.
//!
//! Consequence for plugin authors, documented in the SDK and the WIT: the model
//! directory is readable during `init` only; file handles opened in `init` do not
//! exist in the snapshot.

use std::future::Future;
use std::path::Path;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use wasmtime::Store;
use wasmtime::component::{Component, Instance, Lift, Linker, WasmList};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};
use wasmtime_wizer::{ComponentInstanceState, Wizer};

use crate::sandbox::bindings::{extractor, scorer_exports};
use crate::sandbox::engine::HostEngine;
use crate::sandbox::error::{LoadError, plugin_error};
use crate::sandbox::host::{self, HostState};
use crate::sandbox::trap;
use crate::sandbox::world::World;

/// Fuel for `init`: generous, since parsing a model happens once per version.
pub const INIT_FUEL: u64 = 20_000_000_000;
/// Wall-clock deadline for `init`.
pub const INIT_DEADLINE: Duration = Duration::from_secs(30);

/// What `init` needs: the plugin's identity, config, grant and memory cap.
pub struct InitInput<'a> {
    /// `name@version`, for log lines.
    pub plugin: Arc<str>,
    /// Which world the component implements.
    pub world: World,
    /// The manifest's `[config]` entries.
    pub config: &'a Vec<(String, String)>,
    /// The host directory to mount read-only at `/model`.
    pub model_dir: Option<&'a Path>,
    /// The instance memory cap.
    pub memory_limit: u64,
}

/// Runs `init` on `wasm` and returns the snapshotted component bytes.
pub fn preinitialize(
    engine: &HostEngine,
    linker: &Linker<HostState>,
    wasm: &[u8],
    input: &InitInput<'_>,
) -> Result<Vec<u8>, LoadError> {
    let wizer = Wizer::new();
    let (cx, instrumented) = wizer
        .instrument_component(wasm)
        .map_err(|e| LoadError::engine("instrumenting for pre-initialisation", e))?;
    let component = Component::new(engine.engine(), &instrumented)
        .map_err(|e| LoadError::engine("compiling the instrumented component", e))?;
    host::check_imports(engine.engine(), &component)?;
    host::check_exports(engine.engine(), &component, input.world)?;

    let mut wasi = WasiCtxBuilder::new();
    if let Some(dir) = input.model_dir {
        wasi.preopened_dir(dir, "/model", FsPerms::ReadOnly)
            .map_err(|e| LoadError::engine("opening the model directory", e))?;
    }
    let mut store = Store::new(
        engine.engine(),
        HostState::new(input.plugin.clone(), Default::default(), input.memory_limit, Some(wasi), None),
    );
    store.limiter(|s| &mut s.limiter);
    if engine.metered() {
        // Host calls in init (reading model files aside) are bounded too.
        store.data_mut().start_call(Some(std::time::Instant::now() + INIT_DEADLINE), INIT_FUEL);
        store.set_fuel(INIT_FUEL).map_err(|e| LoadError::engine("setting fuel", e))?;
        store.set_epoch_deadline(HostEngine::deadline_ticks(INIT_DEADLINE));
        store.epoch_deadline_trap();
    }

    let fail = |store: &Store<HostState>, e: wasmtime::Error| {
        LoadError::Init(trap::classify(e, store, INIT_FUEL, INIT_DEADLINE, INIT_DEADLINE))
    };
    let instance = linker.instantiate(&mut store, &component).map_err(|e| fail(&store, e))?;
    let outcome = match input.world {
        World::Scorer => {
            // `scorer` alone: `frame-scorer` is optional (0.1.0 plugins lack it).
            let plugin = scorer_exports::GuestIndices::new(&instance.instance_pre(&store))
                .and_then(|indices| indices.load(&mut store, &instance))
                .map_err(|e| LoadError::wrong_world(input.world, e))?;
            poll_once(plugin.call_init(&mut store, input.config))
        }
        World::Extractor => {
            let plugin = extractor::ExtractorPlugin::new(&mut store, &instance)
                .map_err(|e| LoadError::wrong_world(input.world, e))?;
            poll_once(plugin.scorehost_plugin_extractor().call_init(&mut store, input.config))
        }
    }
    .ok_or_else(|| LoadError::engine("running init", "init suspended unexpectedly"))?;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(LoadError::Init(plugin_error(e))),
        Err(e) => return Err(fail(&store, e)),
    }

    let mut access = Access { store: &mut store, instance, failed: None };
    let snapshot = poll_once(wizer.snapshot_component(&cx, &mut access))
        .ok_or_else(|| LoadError::engine("snapshotting", "the snapshot suspended unexpectedly"))?;
    if let Some(message) = access.failed {
        return Err(LoadError::engine("snapshotting", message));
    }
    snapshot.map_err(|e| LoadError::engine("snapshotting", e))
}

/// Polls a future that never suspends, once: `init` with the blocking linker
/// (whose host functions never yield) and wizer's reads through our
/// synchronous accessors. `None` if it did suspend, which is a bug reported
/// as a load error — unlike `instances::block`, which drives a call future
/// that may yield to completion.
fn poll_once<F: Future>(f: F) -> Option<F::Output> {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

/// Lets wizer read the instance's state through its instrumentation exports.
struct Access<'a> {
    store: &'a mut Store<HostState>,
    instance: Instance,
    /// The first failure; later reads return zeros and the snapshot is discarded.
    failed: Option<String>,
}

impl Access<'_> {
    /// Calls the parameterless export `instance#func` and returns its result;
    /// on failure records it and returns `None`.
    fn call<R: Lift + 'static>(&mut self, instance: &str, func: &str) -> Option<R> {
        let result = (|| {
            let (_, iface) = self.instance.get_export(&mut *self.store, None, instance)?;
            let (_, f) = self.instance.get_export(&mut *self.store, Some(&iface), func)?;
            let f = self.instance.get_typed_func::<(), (R,)>(&mut *self.store, f).ok()?;
            f.call(&mut *self.store, ()).ok().map(|(r,)| r)
        })();
        if result.is_none() {
            self.failed.get_or_insert_with(|| format!("reading {instance}#{func} failed"));
        }
        result
    }
}

impl ComponentInstanceState for Access<'_> {
    async fn call_func_ret_list_u8(
        &mut self,
        instance: &str,
        func: &str,
        contents: impl FnOnce(&[u8]) + Send,
    ) {
        match self.call::<WasmList<u8>>(instance, func) {
            Some(list) => contents(list.as_le_slice(&*self.store)),
            None => contents(&[]),
        }
    }

    async fn call_func_ret_s32(&mut self, instance: &str, func: &str) -> i32 {
        self.call::<i32>(instance, func).unwrap_or_default()
    }

    async fn call_func_ret_s64(&mut self, instance: &str, func: &str) -> i64 {
        self.call::<i64>(instance, func).unwrap_or_default()
    }

    async fn call_func_ret_f32(&mut self, instance: &str, func: &str) -> u32 {
        self.call::<f32>(instance, func).unwrap_or_default().to_bits()
    }

    async fn call_func_ret_f64(&mut self, instance: &str, func: &str) -> u64 {
        self.call::<f64>(instance, func).unwrap_or_default().to_bits()
    }
}
