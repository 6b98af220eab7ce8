//! What a plugin instance can reach: the host imports scorehost grants, and the
//! per-store state behind them.
//!
//! Granted: `scorehost:plugin/log`, and from WASI preview 2 only what a Rust
//! `wasm32-wasip2` component links against without asking for anything:
//! clocks, random, io, cli (empty environment and arguments, exit, stdio that
//! goes nowhere but a small captured stderr for panic messages) and the
//! filesystem — whose only preopen is the manifest's model directory,
//! read-only, during `init`. Sockets and name lookup are linked but deny
//! everything, as Spin does for a component with no allowed hosts: creating a
//! TCP or UDP socket and resolving a name fail with `access-denied` before any
//! system call (CPython, so every componentize-py plugin, imports them whether
//! or not it uses them). Nothing else — http, say: a component importing it is
//! rejected at load by [`check_imports`], naming the import.
//!
//! The monotonic clock is scorehost's own: `now` works, but its timers — the
//! only thing a plugin could block on (`std::thread::sleep`) — trap at once,
//! because a host call blocked in the kernel is beyond the reach of fuel and
//! epoch deadlines.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::Engine;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::random as wasi_random;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::random::WasiRandomView;
use wasmtime_wasi::sockets::{WasiSockets, WasiSocketsView};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::sandbox::bindings::{wit_log, wit_state};
use crate::sandbox::error::LoadError;
use crate::sandbox::host_budget::{HostBudget, MAX_RANDOM_BYTES, MAX_RESOURCES};
use crate::sandbox::limits::MemoryLimiter;
use crate::sandbox::stats::CallStats;
use crate::sandbox::world::World;
use crate::state::exchange::Namespace;

/// Interfaces (without their `@version`) a component may import.
pub const GRANTED_IMPORTS: &[&str] = &[
    "scorehost:plugin/log",
    "scorehost:plugin/types",
    "scorehost:plugin/frames",
    "scorehost:plugin/state",
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

/// Interfaces (without their `@version`) a component may import that are
/// linked deny-all ([`deny_network`]): every use fails with `access-denied`.
pub const DENIED_IMPORTS: &[&str] = &[
    "wasi:sockets/network",
    "wasi:sockets/instance-network",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
    "wasi:sockets/ip-name-lookup",
];

/// The `state` interface as the linker names it (contract 0.1.2).
const STATE_INTERFACE: &str = "scorehost:plugin/state@0.1.2";

/// How much of a guest's stderr a store keeps. A panic message fits many
/// times over; past it, writes fail (and a Rust `eprintln!` would panic).
const STDERR_CAPTURE: usize = 64 << 10;

/// The state of one store: one call, or one `init`.
pub struct HostState {
    /// The WASI context, built on the guest's first WASI call. Most calls make
    /// none, and a context costs two sets of random generators, clocks and
    /// stdio handles (`WasiCtxBuilder::build` leaves a fresh builder behind),
    /// which is a measurable share of a fresh instance (`call-loop fresh`).
    wasi: Option<WasiCtx>,
    table: ResourceTable,
    /// The memory cap, and whether the guest hit it.
    pub limiter: MemoryLimiter,
    /// `name@version` of the plugin, for log lines.
    pub plugin: Arc<str>,
    /// The version's statistics, which also hold its log-rate budget.
    pub(crate) stats: Arc<CallStats>,
    /// The plugin's `[state]` namespace; `None` during `init` (nothing is
    /// reachable then) and for a plugin without one.
    pub(crate) state: Option<Arc<Namespace>>,
    /// State exchanges the current call may still make: one per event.
    pub(crate) exchanges_left: u32,
    stderr: MemoryOutputPipe,
    log_lines: u32,
    /// The current call's deadline and fuel as host functions see them.
    pub(crate) budget: HostBudget,
}

impl HostState {
    /// State for a call: no files, no environment, stderr captured. The
    /// plugin's log lines count against `stats`' rate limit. `wasi` grants
    /// more (the model directory, for `init`); without it the call's context
    /// is built on first use. `state` is the plugin's state namespace, for
    /// calls (never for `init`).
    pub fn new(
        plugin: Arc<str>,
        stats: Arc<CallStats>,
        memory_limit: u64,
        wasi: Option<WasiCtxBuilder>,
        state: Option<Arc<Namespace>>,
    ) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_CAPTURE);
        let budget = HostBudget::default();
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        Self {
            wasi: wasi.map(|mut w| deny_network(w.stderr(stderr.clone()).stdout(budget.stdout())).build()),
            table,
            limiter: MemoryLimiter::new(memory_limit),
            plugin,
            stats,
            state,
            exchanges_left: 0,
            stderr,
            log_lines: 0,
            budget,
        }
    }

    /// Readies the state for the next call on the same instance: a fresh log
    /// allowance, the call's wall-clock `deadline` (none for an unmetered
    /// engine) and its `fuel`, for host functions to charge.
    pub(crate) fn start_call(&mut self, deadline: Option<Instant>, fuel: u64) {
        self.log_lines = 0;
        self.exchanges_left = 0;
        self.budget.start(deadline, fuel);
    }

    /// Whether the guest ever wrote to stderr (a reused instance must not have).
    pub(crate) fn wrote_stderr(&self) -> bool {
        !self.stderr.contents().is_empty()
    }

    /// What the guest wrote to stderr last, on one line: for a Rust panic,
    /// `thread … panicked at src/lib.rs:25:9: <message>`. Rust's "note: run with
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

/// Denies every network use in a context being built: no TCP or UDP socket
/// (creating one fails with `access-denied` before any system call), no name
/// lookup, no address. wasmtime-wasi's defaults say the same today; this says
/// it here, so a change of defaults cannot open the network.
fn deny_network(builder: &mut WasiCtxBuilder) -> &mut WasiCtxBuilder {
    builder
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }))
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let ctx = self.wasi.get_or_insert_with(|| {
            deny_network(WasiCtxBuilder::new().stderr(self.stderr.clone()).stdout(self.budget.stdout()))
                .build()
        });
        WasiCtxView { ctx, table: &mut self.table }
    }
}

/// Longest plugin log line kept; the rest is cut.
pub const MAX_LOG_LINE: usize = 1024;
/// Most log lines one store (one call, or one `init`) may write; the rest are dropped.
pub const MAX_LOG_LINES: u32 = 100;

impl wit_log::Host for HostState {
    fn log(&mut self, level: wit_log::Level, message: String) -> wasmtime::Result<()> {
        // The message was lifted from guest memory: its bytes count, logged or not.
        self.budget.charge(message.len() as u64)?;
        // A line the log filter would discard costs no budget.
        let enabled = match level {
            wit_log::Level::Trace => tracing::enabled!(target: "plugin", tracing::Level::TRACE),
            wit_log::Level::Debug => tracing::enabled!(target: "plugin", tracing::Level::DEBUG),
            wit_log::Level::Info => tracing::enabled!(target: "plugin", tracing::Level::INFO),
            wit_log::Level::Warn => tracing::enabled!(target: "plugin", tracing::Level::WARN),
            wit_log::Level::Error => tracing::enabled!(target: "plugin", tracing::Level::ERROR),
        };
        if !enabled {
            return Ok(());
        }
        let Some(message) = admit_log_line(&mut self.log_lines, message) else { return Ok(()) };
        if !self.stats.admit_log_line(&self.plugin) {
            return Ok(());
        }
        let (plugin, version) = self.plugin.split_once('@').unwrap_or((&self.plugin, ""));
        // Empty outside a request (init, `scorehost call`).
        let request_id = crate::sandbox::request_id::display();
        match level {
            wit_log::Level::Trace => {
                tracing::trace!(target: "plugin", plugin, version, %request_id, "{message}")
            }
            wit_log::Level::Debug => {
                tracing::debug!(target: "plugin", plugin, version, %request_id, "{message}")
            }
            wit_log::Level::Info => {
                tracing::info!(target: "plugin", plugin, version, %request_id, "{message}")
            }
            wit_log::Level::Warn => {
                tracing::warn!(target: "plugin", plugin, version, %request_id, "{message}")
            }
            wit_log::Level::Error => {
                tracing::error!(target: "plugin", plugin, version, %request_id, "{message}")
            }
        }
        Ok(())
    }
}

/// Applies the log limits: counts the line against `lines`, drops it past
/// [`MAX_LOG_LINES`], cuts it at [`MAX_LOG_LINE`] bytes (on a char boundary),
/// and escapes control characters, so a plugin's message stays on its own
/// line and cannot forge host log lines (`\n2026-… INFO …`) in text format.
fn admit_log_line(lines: &mut u32, mut message: String) -> Option<String> {
    *lines += 1;
    if *lines > MAX_LOG_LINES {
        return None;
    }
    // Cut before escaping (an escape is up to 10 bytes: a message of control
    // characters must not make the host build a string 10 times its size),
    // then again after.
    let mut cut = crate::sandbox::error::truncate_at(&mut message, MAX_LOG_LINE);
    if message.contains(char::is_control) {
        message = message.chars().flat_map(EscapeControl::new).collect();
        cut |= crate::sandbox::error::truncate_at(&mut message, MAX_LOG_LINE);
    }
    if cut {
        message.push_str("… [cut]");
    }
    if *lines == MAX_LOG_LINES {
        message.push_str(" [log limit reached: further lines of this call are dropped]");
    }
    Some(message)
}

/// A char, or its escape (`\n`, `\u{1b}`) if it is a control character.
enum EscapeControl {
    Plain(std::iter::Once<char>),
    Escaped(std::char::EscapeDefault),
}

impl EscapeControl {
    fn new(c: char) -> Self {
        if c.is_control() { Self::Escaped(c.escape_default()) } else { Self::Plain(std::iter::once(c)) }
    }
}

impl Iterator for EscapeControl {
    type Item = char;
    fn next(&mut self) -> Option<char> {
        match self {
            Self::Plain(c) => c.next(),
            Self::Escaped(e) => e.next(),
        }
    }
}

/// Which flavour of the WASI I/O bindings a linker carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostIo {
    /// Synchronous bindings, for `init` on a plain (non-async) thread: they
    /// block on a private tokio runtime when a guest reads its model files.
    Blocking,
    /// Asynchronous bindings, for calls made as futures on the server's async
    /// workers (`call_async`), where blocking on a runtime would panic.
    Async,
}

/// The linker every plugin is instantiated with: exactly [`GRANTED_IMPORTS`]
/// and [`DENIED_IMPORTS`],
/// with I/O bindings of the `io` flavour.
pub fn linker(engine: &Engine, io: HostIo) -> wasmtime::Result<Linker<HostState>> {
    use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random, sockets, sync};

    let mut l = Linker::<HostState>::new(engine);
    wit_log::add_to_linker::<HostState, HasSelf<HostState>>(&mut l, |s| s)?;
    match io {
        // `init` runs on a plain thread with synchronous calls, which cannot
        // reach an async host function; nothing of the state store may reach
        // the snapshot anyway, so during init an exchange is refused at once.
        HostIo::Blocking => {
            l.instance(STATE_INTERFACE)?.func_wrap(
                "exchange",
                |_, (_request,): (wit_state::Request,)| -> wasmtime::Result<_> {
                    let refused = wit_state::StateError::Unavailable(
                        "the state store is not reachable during init: exchange in score or extract".into(),
                    );
                    Ok((Err::<wit_state::Response, _>(refused),))
                },
            )?;
        }
        HostIo::Async => wit_state::add_to_linker::<HostState, HasSelf<HostState>>(&mut l, |s| s)?,
    }

    clocks::wall_clock::add_to_linker::<HostState, WasiClocks>(&mut l, HostState::clocks)?;
    // Our own monotonic clock: `now` works, timers trap (the `Host` impl below).
    clocks::monotonic_clock::add_to_linker::<HostState, HasSelf<HostState>>(&mut l, |s| s)?;
    // Our own random: bounded and charged per call (the impls below).
    random::random::add_to_linker::<HostState, HasSelf<HostState>>(&mut l, |s| s)?;
    random::insecure::add_to_linker::<HostState, HasSelf<HostState>>(&mut l, |s| s)?;
    random::insecure_seed::add_to_linker::<HostState, HasSelf<HostState>>(&mut l, |s| s)?;
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
    // Sockets, all denied by the context (`deny_network`).
    sockets::tcp_create_socket::add_to_linker::<HostState, WasiSockets>(&mut l, HostState::sockets)?;
    sockets::instance_network::add_to_linker::<HostState, WasiSockets>(&mut l, HostState::sockets)?;
    sockets::network::add_to_linker::<HostState, WasiSockets>(
        &mut l,
        &sockets::network::LinkOptions::default(),
        HostState::sockets,
    )?;
    wasmtime_wasi_io::bindings::wasi::io::error::add_to_linker::<HostState, HasTable>(&mut l, table)?;
    match io {
        HostIo::Blocking => {
            sync::filesystem::types::add_to_linker::<HostState, WasiFilesystem>(
                &mut l,
                HostState::filesystem,
            )?;
            sync::io::poll::add_to_linker::<HostState, HasTable>(&mut l, table)?;
            sync::io::streams::add_to_linker::<HostState, HasTable>(&mut l, table)?;
            sync::sockets::tcp::add_to_linker::<HostState, WasiSockets>(&mut l, HostState::sockets)?;
            sync::sockets::udp::add_to_linker::<HostState, WasiSockets>(&mut l, HostState::sockets)?;
            sync::sockets::udp_create_socket::add_to_linker::<HostState, WasiSockets>(
                &mut l,
                HostState::sockets,
            )?;
            sync::sockets::ip_name_lookup::add_to_linker::<HostState, WasiSockets>(
                &mut l,
                HostState::sockets,
            )?;
        }
        HostIo::Async => {
            filesystem::types::add_to_linker::<HostState, WasiFilesystem>(&mut l, HostState::filesystem)?;
            wasmtime_wasi_io::bindings::wasi::io::poll::add_to_linker::<HostState, HasTable>(&mut l, table)?;
            wasmtime_wasi_io::bindings::wasi::io::streams::add_to_linker::<HostState, HasTable>(
                &mut l, table,
            )?;
            sockets::tcp::add_to_linker::<HostState, WasiSockets>(&mut l, HostState::sockets)?;
            sockets::udp::add_to_linker::<HostState, WasiSockets>(&mut l, HostState::sockets)?;
            sockets::udp_create_socket::add_to_linker::<HostState, WasiSockets>(&mut l, HostState::sockets)?;
            sockets::ip_name_lookup::add_to_linker::<HostState, WasiSockets>(&mut l, HostState::sockets)?;
        }
    }
    Ok(l)
}

/// The two linkers of a runtime, both linking exactly [`GRANTED_IMPORTS`] and [`DENIED_IMPORTS`].
pub struct Linkers {
    /// For `init` and its snapshot, run once per version on a loading thread.
    pub init: Linker<HostState>,
    /// For calls, made with `call_async`.
    pub call: Linker<HostState>,
}

impl Linkers {
    /// Builds both linkers for `engine`. Called once per runtime.
    pub fn new(engine: &Engine) -> wasmtime::Result<Self> {
        Ok(Self { init: linker(engine, HostIo::Blocking)?, call: linker(engine, HostIo::Async)? })
    }
}

struct HasTable;

impl wasmtime::component::HasData for HasTable {
    type Data<'a> = &'a mut ResourceTable;
}

fn table(s: &mut HostState) -> &mut ResourceTable {
    &mut s.table
}

/// Rejects a component that imports anything outside [`GRANTED_IMPORTS`] and [`DENIED_IMPORTS`],
/// naming every such import.
pub fn check_imports(engine: &Engine, component: &Component) -> Result<(), LoadError> {
    let ungranted: Vec<String> = component
        .component_type()
        .imports(engine)
        .filter(|(name, item)| {
            let unversioned = name.split('@').next().unwrap_or(name);
            !(matches!(item.ty, ComponentItem::ComponentInstance(_) | ComponentItem::Type(_))
                && (GRANTED_IMPORTS.contains(&unversioned) || DENIED_IMPORTS.contains(&unversioned)))
        })
        .map(|(name, _)| name.to_owned())
        .collect();
    if ungranted.is_empty() { Ok(()) } else { Err(LoadError::UngrantedImport { imports: ungranted }) }
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
    if exports.iter().any(|e| world.exported_as(e)) {
        return Ok(());
    }
    Err(LoadError::WrongWorld {
        world: world.as_str().into(),
        message: format!("it does not export `{}`; it exports [{}]", world.export_name(), exports.join(", ")),
    })
}

/// WASI random, bounded: at most [`MAX_RANDOM_BYTES`] per host call, every
/// byte charged to the call (`host_budget.rs`); the bytes come from
/// wasmtime-wasi's generators.
impl wasi_random::random::Host for HostState {
    fn get_random_bytes(&mut self, len: u64) -> wasmtime::Result<Vec<u8>> {
        HostBudget::cap("wasi:random/random.get-random-bytes", len, MAX_RANDOM_BYTES)?;
        self.budget.charge(len)?;
        wasi_random::random::Host::get_random_bytes(self.random(), len)
    }

    fn get_random_u64(&mut self) -> wasmtime::Result<u64> {
        self.budget.charge(8)?;
        wasi_random::random::Host::get_random_u64(self.random())
    }
}

impl wasi_random::insecure::Host for HostState {
    fn get_insecure_random_bytes(&mut self, len: u64) -> wasmtime::Result<Vec<u8>> {
        HostBudget::cap("wasi:random/insecure.get-insecure-random-bytes", len, MAX_RANDOM_BYTES)?;
        self.budget.charge(len)?;
        wasi_random::insecure::Host::get_insecure_random_bytes(self.random(), len)
    }

    fn get_insecure_random_u64(&mut self) -> wasmtime::Result<u64> {
        self.budget.charge(8)?;
        wasi_random::insecure::Host::get_insecure_random_u64(self.random())
    }
}

impl wasi_random::insecure_seed::Host for HostState {
    fn insecure_seed(&mut self) -> wasmtime::Result<(u64, u64)> {
        self.budget.charge(16)?;
        wasi_random::insecure_seed::Host::insecure_seed(self.random())
    }
}

/// The monotonic clock plugins see: readable, but with no timers.
impl wasmtime_wasi::p2::bindings::clocks::monotonic_clock::Host for HostState {
    fn now(&mut self) -> wasmtime::Result<u64> {
        self.budget.charge(8)?;
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        Ok(START.get_or_init(std::time::Instant::now).elapsed().as_nanos() as u64)
    }

    fn resolution(&mut self) -> wasmtime::Result<u64> {
        Ok(1)
    }

    fn subscribe_instant(
        &mut self,
        _when: u64,
    ) -> wasmtime::Result<wasmtime::component::Resource<wasmtime_wasi::p2::DynPollable>> {
        Err(no_timers())
    }

    fn subscribe_duration(
        &mut self,
        _duration: u64,
    ) -> wasmtime::Result<wasmtime::component::Resource<wasmtime_wasi::p2::DynPollable>> {
        Err(no_timers())
    }
}

fn no_timers() -> wasmtime::Error {
    wasmtime::format_err!(
        "plugins may not sleep or wait on timers (std::thread::sleep): a blocked call escapes its deadline"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_are_cut_and_counted() {
        let mut lines = 0;
        let long = "é".repeat(MAX_LOG_LINE); // 2 bytes each: the cut must respect char boundaries
        let cut = admit_log_line(&mut lines, long).unwrap();
        assert!(cut.len() <= MAX_LOG_LINE + "… [cut]".len() && cut.ends_with("… [cut]"));
        for _ in 1..MAX_LOG_LINES - 1 {
            assert_eq!(admit_log_line(&mut lines, "x".into()).as_deref(), Some("x"));
        }
        assert!(admit_log_line(&mut lines, "x".into()).unwrap().contains("log limit reached"));
        assert_eq!(admit_log_line(&mut lines, "x".into()), None);
    }

    #[test]
    fn a_line_of_control_characters_is_cut_before_it_is_escaped() {
        // Escaped first, 1 MiB of \u{1} would become a 6 MiB string on the host.
        let line = admit_log_line(&mut 0, "\u{1}".repeat(1 << 20)).unwrap();
        assert!(line.len() <= MAX_LOG_LINE + "… [cut]".len(), "{} bytes", line.len());
        assert!(line.starts_with("\\u{1}") && line.ends_with("… [cut]"), "{line}");
    }

    #[test]
    fn log_lines_cannot_forge_host_lines() {
        let forged = "ok\n2026-12-02T00:00:00Z  INFO scorehost: admin token rotated\r\u{1b}[2J";
        let line = admit_log_line(&mut 0, forged.into()).unwrap();
        assert!(!line.contains(['\n', '\r', '\u{1b}']), "{line}");
        assert_eq!(line, "ok\\n2026-12-02T00:00:00Z  INFO scorehost: admin token rotated\\r\\u{1b}[2J");
    }
}
