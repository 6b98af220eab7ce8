//! `scorehost serve`: every plugin behind one HTTP endpoint.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use scorehost::control::admin::Admin;
use scorehost::http::admin::AdminApi;
use scorehost::http::{App, CallMode, ServerConfig, server};
use scorehost::sandbox::engine::KEEP_RESIDENT;
use scorehost::sandbox::limits::MAX_MEMORY_MIB;
use scorehost::serving::decisions::{DecisionLog, DecisionLogConfig};
use scorehost::serving::pipeline::Pipelines;
use scorehost::serving::registry::Registry;
use scorehost::state::backend::Backend;
use scorehost::state::memory::MemStore;
use scorehost::state::redis::RedisStore;
use scorehost::{PluginVersion, Runtime};

/// The bundled examples `serve` loads when no `--plugins` is given.
const EXAMPLES: &[&str] = &["txn-features", "velocity", "logreg", "fraud-scorer", "gbdt"];

/// The pipelines served with the bundled examples: `fraud` scores a payment
/// and its history (velocity, from the state store); `fraud-basic` the
/// payment alone.
const EXAMPLE_PIPELINES: &str = r#"
[pipelines.fraud]
extractors = ["txn-features", "velocity"]
scorer = "fraud-scorer"

[pipelines.fraud-basic]
extractors = ["txn-features"]
scorer = "logreg"
"#;

/// Where wasm calls run (see `scorehost::http::CallMode`).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Mode {
    Async,
    Blocking,
}

/// Arguments of `scorehost serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// A directory of plugin directories (each with a plugin.toml). Default: the
    /// bundled examples txn-features, logreg and gbdt, with a `fraud` pipeline.
    #[arg(long, conflicts_with = "store")]
    plugins: Option<PathBuf>,
    /// Serve from a plugin store instead (`<store>/<name>/<version>/`, created
    /// if missing), changed at run time through the admin API `/admin/v1/`.
    #[arg(long)]
    store: Option<PathBuf>,
    /// File holding the admin API's bearer token [default: $SCOREHOST_ADMIN_TOKEN].
    /// Required with --store.
    #[arg(long)]
    admin_token_file: Option<PathBuf>,
    /// Serve the admin API (`/admin/v1/`) on this address only, e.g.
    /// 127.0.0.1:8081; the public --addr then answers it 404. Without it the
    /// admin API shares --addr.
    #[arg(long, requires = "store")]
    admin_addr: Option<SocketAddr>,
    /// Versions per plugin kept loaded for an instant rollback (the live one included).
    #[arg(long, default_value_t = 3)]
    keep_versions: usize,
    /// Largest plugin upload (the tar as sent) in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    max_upload_bytes: usize,
    /// Pipelines file [default: <plugins>/pipelines.toml if present].
    #[arg(long)]
    pipelines: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Largest request body in bytes (413 beyond).
    #[arg(long, default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// Most plugin calls in flight; beyond, 503 with Retry-After.
    #[arg(long, default_value_t = 128)]
    max_in_flight: usize,
    /// KiB of the memory a finished instance dirtied that its pool slot keeps
    /// resident, reset in place, for the next instance; the rest is
    /// decommitted and faults back in. Raise it when plugins touch much memory
    /// and make new instances often (`fresh_per_call`, bursts): with 2048 a
    /// fresh Python instance costs 0.55 ms instead of 1.9 (docs/performance.md). Costs up to 256 pool slots
    /// times this in resident memory.
    #[arg(long, default_value_t = (KEEP_RESIDENT >> 10) as u32,
          value_parser = clap::value_parser!(u32).range(0..=(MAX_MEMORY_MIB << 10) as i64))]
    pub keep_resident_kib: u32,
    /// Seconds a client has to send its request headers (on a new
    /// connection: from connect to its first request's headers).
    #[arg(long, default_value_t = 5)]
    header_timeout_secs: u64,
    /// Most connections open at once; past it new ones are closed at once.
    /// Keep it under the process's file-descriptor limit (`ulimit -n`).
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// Seconds a connection may stay open with no request in flight.
    #[arg(long, default_value_t = 60)]
    idle_timeout_secs: u64,
    /// Seconds a client has to send its request body once its headers are in (408 beyond).
    #[arg(long, default_value_t = 10)]
    body_timeout_secs: u64,
    /// Most rows in one batch (413 beyond).
    #[arg(long, default_value_t = 1000)]
    max_batch_rows: usize,
    /// Most fields in one row or event (413 beyond).
    #[arg(long, default_value_t = 1000)]
    max_fields: usize,
    /// Seconds a graceful shutdown waits for in-flight requests.
    #[arg(long, default_value_t = 30)]
    shutdown_grace_secs: u64,
    /// Milliseconds the server keeps accepting after SIGTERM with /readyz
    /// answering 503, before it closes its listeners: set it above your load
    /// balancer's health-check interval × failures to mark a server down.
    #[arg(long, default_value_t = 0)]
    drain_delay_ms: u64,
    /// Where wasm calls run: as futures on the async workers (default) or on the blocking pool.
    #[arg(long, value_enum, default_value = "async")]
    call_mode: Mode,
    /// Append every answered score (input, output, version, content hash,
    /// fuel, latency, request id) to this JSONL file, for audits and
    /// `scorehost replay`. Written off the request path; see --decision-*.
    #[arg(long)]
    decision_log: Option<PathBuf>,
    /// Fraction of scores the decision log keeps, 0–1.
    #[arg(long, default_value_t = 1.0)]
    decision_sample: f64,
    /// Size at which the decision log is rotated (PATH → PATH.1 → …), in MiB.
    #[arg(long, default_value_t = 64)]
    decision_log_max_mib: u64,
    /// Rotated decision logs kept.
    #[arg(long, default_value_t = 5)]
    decision_log_keep: usize,
    #[command(flatten)]
    state: StateArgs,
    #[cfg(feature = "fleet")]
    #[command(flatten)]
    fleet: crate::fleet::FleetServeArgs,
}

/// Where plugins' real-time state lives (docs/state.md).
#[derive(Debug, clap::Args)]
pub struct StateArgs {
    /// The state store: `memory` (this process; bounded per plugin by
    /// `[state] memory_mib`), `redis://HOST:PORT/DB` (shared by every
    /// replica), or `off` (every exchange answers unavailable).
    #[arg(long = "state", id = "state", default_value = "memory")]
    store: String,
    /// Prefix of every Redis key scorehost writes or reads.
    #[arg(long, default_value = "sh:")]
    state_prefix: String,
    /// Most milliseconds an exchange waits for Redis (never more than what
    /// is left of the call's deadline).
    #[arg(long, default_value_t = 10)]
    state_timeout_ms: u64,
    /// Offline features for the in-process store: a JSONL file of
    /// `{"table": …, "entity": …, "fields": {"name": value, …}}`. With
    /// Redis, batch jobs write `HSET <prefix>l:<table>:<entity> …` instead.
    #[arg(long)]
    state_lookups: Option<PathBuf>,
}

/// Opens the state store `args` names. Inside a tokio runtime (Redis's
/// connection manager spawns its task); connects lazily.
fn state_backend(args: &StateArgs) -> anyhow::Result<Backend> {
    let backend = match args.store.as_str() {
        "memory" => Backend::Memory(Arc::new(MemStore::new())),
        "off" => Backend::Off,
        url if url.starts_with("redis://") => {
            let timeout = Duration::from_millis(args.state_timeout_ms.max(1));
            Backend::Redis(Arc::new(RedisStore::connect(url, &args.state_prefix, timeout)?))
        }
        other => bail!("--state {other:?}: expected memory, off or a redis://host:port/db URL"),
    };
    if let Some(file) = &args.state_lookups {
        let Backend::Memory(store) = &backend else {
            bail!(
                "--state-lookups fills the in-process store; with Redis, write the rows with HSET (docs/state.md)"
            );
        };
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let bad = || {
                format!(
                    "{} line {}: expected {{\"table\": …, \"entity\": …, \"fields\": {{…}}}}",
                    file.display(),
                    i + 1
                )
            };
            let row: serde_json::Value = serde_json::from_str(line).with_context(bad)?;
            let (Some(table), Some(entity), Some(fields)) =
                (row["table"].as_str(), row["entity"].as_str(), row["fields"].as_object())
            else {
                bail!(bad());
            };
            let fields = fields.iter().map(|(k, v)| match v {
                serde_json::Value::String(s) => (k.clone(), s.clone()),
                other => (k.clone(), other.to_string()),
            });
            store.put_lookup(table, entity, fields);
        }
    }
    Ok(backend)
}

fn plugin_dirs(args: &ServeArgs) -> anyhow::Result<Vec<PathBuf>> {
    let Some(root) = &args.plugins else {
        return EXAMPLES.iter().map(|name| super::resolve_plugin(Path::new(name))).collect();
    };
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .with_context(|| format!("reading {}", root.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("plugin.toml").is_file())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        bail!("{} holds no plugin directories (subdirectories with a plugin.toml)", root.display());
    }
    Ok(dirs)
}

fn pipelines_text(args: &ServeArgs) -> anyhow::Result<String> {
    let file = match (&args.pipelines, &args.plugins) {
        (Some(f), _) => Some(f.clone()),
        (None, _) if args.store.is_some() => None,
        (None, Some(root)) => Some(root.join("pipelines.toml")).filter(|f| f.is_file()),
        (None, None) => return Ok(EXAMPLE_PIPELINES.to_owned()),
    };
    match file {
        Some(f) => std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display())),
        None => Ok(String::new()),
    }
}

/// Loads every plugin (all must load), validates the pipelines and serves until
/// SIGTERM or Ctrl-C, then drains gracefully.
pub fn run(runtime: &Arc<Runtime>, args: ServeArgs) -> anyhow::Result<()> {
    let dirs = if args.store.is_some() { Vec::new() } else { plugin_dirs(&args)? };
    let mut versions: Vec<PluginVersion> = Vec::new();
    let mut failures = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let started = Instant::now();
        match runtime.load(dir) {
            Ok(v) => {
                let how = if v.from_cache() { "from cache" } else { "compiled" };
                tracing::info!(
                    "[{}/{}] loaded {} ({how}) in {:.0} ms",
                    i + 1,
                    dirs.len(),
                    v.label(),
                    started.elapsed().as_secs_f64() * 1e3
                );
                versions.push(v);
            }
            Err(e) => failures.push(format!("{}: {e}", dir.display())),
        }
    }
    let mut seen: std::collections::BTreeMap<&str, &Path> = std::collections::BTreeMap::new();
    for (v, dir) in versions.iter().zip(&dirs) {
        if let Some(first) = seen.insert(&v.manifest().name, dir) {
            failures.push(format!(
                "{} and {} both declare plugin `{}`",
                first.display(),
                dir.display(),
                v.manifest().name
            ));
        }
    }
    if !failures.is_empty() {
        bail!("{} plugin(s) failed to load:\n  {}", failures.len(), failures.join("\n  "));
    }
    let registry = Arc::new(Registry::new(versions));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
    let admin = match &args.store {
        Some(root) => Some(open_store(runtime, &registry, root, &args)?),
        None => None,
    };
    #[cfg(feature = "fleet")]
    let admin = match admin {
        Some(api) => Some(rt.block_on(crate::fleet::admin_api(api, &args.fleet))?),
        None => None,
    };
    // Kept for the life of the server: versions written into the store by a
    // deploy tool are gated, and a rewritten state.json is applied. Not in
    // fleet mode, where the fleet's desired state says what serves.
    let _watcher = match (&admin, &args.store) {
        (Some(api), Some(root)) if !fleet_mode(&args) => Some(
            scorehost::control::watch::watch(api.admin(), root)
                .with_context(|| format!("watching the plugin store {}", root.display()))?,
        ),
        _ => None,
    };
    let pipelines = Pipelines::parse(&pipelines_text(&args)?, &registry)
        .map_err(|e| anyhow::anyhow!("invalid pipelines: {e}"))?;
    let state = {
        let _tokio = rt.enter();
        state_backend(&args.state)?
    };
    tracing::info!("state store: {}", args.state.store);
    let config = ServerConfig {
        state,
        max_body_bytes: args.max_body_bytes,
        max_in_flight: args.max_in_flight,
        header_read_timeout: Duration::from_secs(args.header_timeout_secs),
        max_connections: args.max_connections.max(1),
        idle_timeout: Duration::from_secs(args.idle_timeout_secs.max(1)),
        body_read_timeout: Duration::from_secs(args.body_timeout_secs),
        max_batch_rows: args.max_batch_rows,
        max_fields: args.max_fields,
        shutdown_grace: Duration::from_secs(args.shutdown_grace_secs),
        drain_delay: Duration::from_millis(args.drain_delay_ms),
        call_mode: match args.call_mode {
            Mode::Async => CallMode::Async,
            Mode::Blocking => CallMode::Blocking,
        },
        decisions: match &args.decision_log {
            None => None,
            Some(path) => Some(
                DecisionLog::open(DecisionLogConfig {
                    sample_rate: args.decision_sample,
                    max_bytes: args.decision_log_max_mib << 20,
                    keep: args.decision_log_keep,
                    ..DecisionLogConfig::new(path)
                })
                .with_context(|| format!("opening the decision log {}", path.display()))?,
            ),
        },
    };
    let app = App::with_admin(registry, pipelines, config, admin);
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("binding {}", args.addr))?;
        // The handlers are installed before "serving" is logged: a SIGTERM
        // that arrives the moment the server is up still drains it, instead
        // of killing the process with the default action.
        let signal = shutdown_signal().context("installing the SIGTERM/Ctrl-C handlers")?;
        #[cfg(feature = "fleet")]
        let replica = crate::fleet::start_replica(&args.fleet, &app, listener.local_addr()?).await?;
        let shutdown = async move {
            signal.await;
            #[cfg(feature = "fleet")]
            if let Some(replica) = replica {
                replica.leave().await;
            }
        };
        tracing::info!("serving {} plugin(s) on http://{}", app.registry.len(), listener.local_addr()?);
        match args.admin_addr {
            Some(admin_addr) => {
                let admin = tokio::net::TcpListener::bind(admin_addr)
                    .await
                    .with_context(|| format!("binding the admin address {admin_addr}"))?;
                tracing::info!("admin API on http://{} only", admin.local_addr()?);
                server::serve_with_admin(listener, admin, app, shutdown).await.context("serving")
            }
            None => {
                if app.admin.is_some() && !args.addr.ip().is_loopback() {
                    tracing::warn!(
                        "the admin API shares the public address {}; --admin-addr puts it on its own",
                        args.addr
                    );
                }
                server::serve(listener, app, shutdown).await.context("serving")
            }
        }
    })
}

/// Whether `serve` follows a fleet (`--fleet-etcd`).
fn fleet_mode(args: &ServeArgs) -> bool {
    #[cfg(feature = "fleet")]
    return args.fleet.enabled();
    #[cfg(not(feature = "fleet"))]
    {
        let _ = args;
        false
    }
}

/// Opens the plugin store, makes its live versions live, and guards the admin
/// API with the token.
fn open_store(
    runtime: &Arc<Runtime>,
    registry: &Arc<Registry>,
    root: &Path,
    args: &ServeArgs,
) -> anyhow::Result<AdminApi> {
    let token = match &args.admin_token_file {
        Some(f) => read_token_file(f)?,
        None => std::env::var("SCOREHOST_ADMIN_TOKEN").unwrap_or_default(),
    };
    if token.trim().is_empty() {
        bail!("--store needs an admin token: --admin-token-file <file> or SCOREHOST_ADMIN_TOKEN");
    }
    let (admin, scan) = Admin::open(root, runtime.clone(), registry.clone(), args.keep_versions)
        .with_context(|| format!("opening the plugin store {}", root.display()))?;
    for partial in &scan.removed_partials {
        tracing::warn!("store: removed {partial}, left by an interrupted upload or delete");
    }
    for other in &scan.ignored {
        tracing::warn!("store: ignoring {other} (not a plugin name/version directory)");
    }
    tracing::info!("store {}: {} version(s), {} live", root.display(), scan.versions.len(), registry.len());
    Ok(AdminApi::new(admin, token.trim(), args.max_upload_bytes)?)
}

/// Reads the admin token file: a regular file (no FIFO, at most 4 KiB,
/// through `safe_read`) that only its owner can read, as ssh insists for keys.
fn read_token_file(path: &Path) -> anyhow::Result<String> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = Path::new(path.file_name().with_context(|| format!("{} names no file", path.display()))?);
    let handle = cap_std::fs::Dir::open_ambient_dir(dir, cap_std::ambient_authority())
        .with_context(|| format!("opening {}", dir.display()))?;
    #[cfg(unix)]
    {
        use cap_std::fs::PermissionsExt;
        let meta = handle.metadata(name).with_context(|| format!("reading {}", path.display()))?;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            bail!(
                "the admin token file {} is readable or writable by others (mode {:o}); `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            );
        }
    }
    let bytes = scorehost::sandbox::safe_read::read_regular(&handle, name, 4096)
        .map_err(|e| anyhow::anyhow!("the admin token file: {e}"))?;
    String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8 text", path.display()))
}

/// Installs the SIGTERM and Ctrl-C handlers now, and returns a future that
/// resolves on either.
#[cfg(unix)]
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => tracing::info!("Ctrl-C received"),
            _ = term.recv() => tracing::info!("SIGTERM received"),
        }
    })
}

/// Ctrl-C only, where there is no SIGTERM.
#[cfg(not(unix))]
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("Ctrl-C received");
    })
}
