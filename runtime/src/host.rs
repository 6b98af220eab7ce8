//! What a plugin instance can reach: the host imports scorehost grants, and the
//! per-store state behind them.
//!
//! Granted: `scorehost:plugin/log`, and from WASI preview 2 only what a Rust
//! `wasm32-wasip2` component links against without asking for anything:
//! clocks, random, io, cli (empty environment and arguments, exit, stdio that
//! goes nowhere but a small captured stderr for panic messages) and the
//! filesystem — whose only preopen is the manifest's model directory, read-only,
//! during `init`. Never sockets, name lookup or http: a component importing
//! those is rejected at load by [`check_imports`], naming the import.

use std::sync::Arc;

use wasmtime::Engine;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::random::{WasiRandom, WasiRandomView};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::wit_log;
use crate::error::LoadError;
use crate::limits::MemoryLimiter;
use crate::manifest::World;

/// Interfaces (without their `@version`) a component may import.
pub const GRANTED_IMPORTS: &[&str] = &[
    "scorehost:plugin/log",
    "scorehost:plugin/types",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
];

/// How much of a guest's stderr a store keeps (enough for a panic message).
const STDERR_CAPTURE: usize = 4096;

/// The state of one store: one call, or one `init`.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// The memory cap, and whether the guest hit it.
    pub limiter: MemoryLimiter,
    /// `name@version` of the plugin, for log lines.
    pub plugin: Arc<str>,
    stderr: MemoryOutputPipe,
}

impl HostState {
    /// State for a call: no files, no environment, stderr captured.
    pub fn new(plugin: Arc<str>, memory_limit: u64, wasi: wasmtime_wasi::WasiCtxBuilder) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_CAPTURE);
        let mut wasi = wasi;
        wasi.stderr(stderr.clone());
        Self {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(memory_limit),
            plugin,
            stderr,
        }
    }

    /// What the guest wrote to stderr last, on one line: for a Rust panic,
    /// "thread … panicked at src/lib.rs:25:9: <message>". Rust's "note: run with
    /// RUST_BACKTRACE" hint is dropped.
    pub fn stderr_tail(&self) -> Option<String> {
        let bytes = self.stderr.contents();
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("note: run with"))
            .collect();
        let tail = lines[lines.len().saturating_sub(3)..].join(" ");
        (!tail.is_empty()).then_some(tail)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl wit_log::Host for HostState {
    fn log(&mut self, level: wit_log::Level, message: String) {
        let plugin = &*self.plugin;
        match level {
            wit_log::Level::Trace => tracing::trace!(target: "plugin", plugin, "{message}"),
            wit_log::Level::Debug => tracing::debug!(target: "plugin", plugin, "{message}"),
            wit_log::Level::Info => tracing::info!(target: "plugin", plugin, "{message}"),
            wit_log::Level::Warn => tracing::warn!(target: "plugin", plugin, "{message}"),
            wit_log::Level::Error => tracing::error!(target: "plugin", plugin, "{message}"),
        }
    }
}

/// The linker every plugin is instantiated with: exactly [`GRANTED_IMPORTS`].
pub fn linker(engine: &Engine) -> wasmtime::Result<Linker<HostState>> {
    use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random, sync};

    let mut l = Linker::<HostState>::new(engine);
    wit_log::add_to_linker::<HostState, HasSelf<HostState>>(&mut l, |s| s)?;

    clocks::wall_clock::add_to_linker::<HostState, WasiClocks>(&mut l, HostState::clocks)?;
    clocks::monotonic_clock::add_to_linker::<HostState, WasiClocks>(&mut l, HostState::clocks)?;
    random::random::add_to_linker::<HostState, WasiRandom>(&mut l, HostState::random)?;
    random::insecure::add_to_linker::<HostState, WasiRandom>(&mut l, HostState::random)?;
    random::insecure_seed::add_to_linker::<HostState, WasiRandom>(&mut l, HostState::random)?;
    cli::exit::add_to_linker::<HostState, WasiCli>(&mut l, HostState::cli)?;
    cli::environment::add_to_linker::<HostState, WasiCli>(&mut l, HostState::cli)?;
    cli::stdin::add_to_linker::<HostState, WasiCli>(&mut l, HostState::cli)?;
    cli::stdout::add_to_linker::<HostState, WasiCli>(&mut l, HostState::cli)?;
    cli::stderr::add_to_linker::<HostState, WasiCli>(&mut l, HostState::cli)?;
    cli::terminal_input::add_to_linker::<HostState, WasiCli>(&mut l, HostState::cli)?;
    cli::terminal_output::add_to_linker::<HostState, WasiCli>(&mut l, HostState::cli)?;
    cli::terminal_stdin::add_to_linker::<HostState, WasiCli>(&mut l, HostState::cli)?;
    cli::terminal_stdout::add_to_linker::<HostState, WasiCli>(&mut l, HostState::cli)?;
    cli::terminal_stderr::add_to_linker::<HostState, WasiCli>(&mut l, HostState::cli)?;
    filesystem::preopens::add_to_linker::<HostState, WasiFilesystem>(&mut l, HostState::filesystem)?;
    sync::filesystem::types::add_to_linker::<HostState, WasiFilesystem>(&mut l, HostState::filesystem)?;
    wasmtime_wasi_io::bindings::wasi::io::error::add_to_linker::<HostState, HasTable>(&mut l, table)?;
    sync::io::poll::add_to_linker::<HostState, HasTable>(&mut l, table)?;
    sync::io::streams::add_to_linker::<HostState, HasTable>(&mut l, table)?;
    Ok(l)
}

struct HasTable;

impl wasmtime::component::HasData for HasTable {
    type Data<'a> = &'a mut ResourceTable;
}

fn table(s: &mut HostState) -> &mut ResourceTable {
    &mut s.table
}

/// Rejects a component that imports anything outside [`GRANTED_IMPORTS`],
/// naming the first such import.
pub fn check_imports(engine: &Engine, component: &Component) -> Result<(), LoadError> {
    for (name, item) in component.component_type().imports(engine) {
        let unversioned = name.split('@').next().unwrap_or(name);
        let granted = matches!(item.ty, ComponentItem::ComponentInstance(_) | ComponentItem::Type(_))
            && GRANTED_IMPORTS.contains(&unversioned);
        if !granted {
            return Err(LoadError::UngrantedImport { import: name.to_owned() });
        }
    }
    Ok(())
}

/// Rejects a component that does not export the interface of `world`, listing
/// what it does export (a scorer loaded as an extractor, say).
pub fn check_exports(engine: &Engine, component: &Component, world: World) -> Result<(), LoadError> {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .filter(|name| !name.starts_with("wasmtime:wizer"))
        .collect();
    if exports.iter().any(|e| e == world.export_name()) {
        return Ok(());
    }
    Err(LoadError::WrongWorld {
        world: world.as_str().into(),
        message: format!("it does not export `{}`; it exports [{}]", world.export_name(), exports.join(", ")),
    })
}
