//! `scorehost fleet …`: read and change the fleet's desired state in etcd
//! (built with the `fleet` feature). Every change reads a plugin's state,
//! applies one transition of `control::fleet::desired` and writes it back
//! with a compare-and-swap on the revision it read: if another operator
//! changed it in between, nothing is written and the command says so.
//!
//! Exit codes: 0 done, 1 error (etcd or the registry unreachable, bad
//! arguments), 2 refused (nothing staged, replicas not ready — each named
//! with its reason), 3 conflict (someone else changed it first).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use scorehost::control::fleet::desired::DEFAULT_KEEP_PREVIOUS;
use scorehost::control::fleet::etcd::FleetStore;
use scorehost::control::fleet::ops::{FleetControl, FleetOp, FleetOpError};
use scorehost::control::fleet::replica::{Replica, ReplicaConfig};
use scorehost::http::App;
use scorehost::http::admin::AdminApi;

/// Arguments of `scorehost fleet`.
#[derive(Debug, clap::Args)]
pub struct FleetArgs {
    /// etcd endpoints, comma-separated (`127.0.0.1:2379`).
    #[arg(long, value_delimiter = ',', required = true)]
    etcd: Vec<String>,
    /// The key prefix of this environment, e.g. `/scorehost/prod/`.
    #[arg(long)]
    prefix: String,
    /// Give up on etcd after this many seconds.
    #[arg(long, default_value_t = 5)]
    timeout_secs: u64,
    #[command(subcommand)]
    op: Op,
}

#[derive(Debug, clap::Subcommand)]
enum Op {
    /// Every plugin's desired state, every replica's report, and whether each plugin has converged.
    Status,
    /// Stage a version: replicas pull and gate it; nothing serves it yet.
    Stage {
        /// The plugin.
        plugin: String,
        /// `<registry>/<repo>:<tag>` (resolved to a digest once, now) or `<registry>/<repo>@sha256:…`.
        reference: String,
        /// Speak plain HTTP to the registry.
        #[arg(long)]
        plain_http: bool,
    },
    /// Make the staged version live, if every replica reports it gated.
    Activate {
        /// The plugin.
        plugin: String,
        /// Earlier live versions kept for rollback.
        #[arg(long, default_value_t = DEFAULT_KEEP_PREVIOUS)]
        keep_versions: usize,
    },
    /// Make the previous live version live again (no registry needed).
    Rollback {
        /// The plugin.
        plugin: String,
    },
    /// Send a sticky share of routing keys to a version, fleet-wide.
    Canary {
        /// The plugin.
        plugin: String,
        /// The candidate's digest (`sha256:…`).
        digest: String,
        /// Share of routing keys, 1–100.
        #[arg(long)]
        percent: u32,
        /// The routing key: `header:<name>` or a field name.
        #[arg(long)]
        key: String,
    },
    /// Make the canary live.
    Promote {
        /// The plugin.
        plugin: String,
        /// Earlier live versions kept for rollback.
        #[arg(long, default_value_t = DEFAULT_KEEP_PREVIOUS)]
        keep_versions: usize,
    },
    /// Stop the canary.
    Abort {
        /// The plugin.
        plugin: String,
    },
    /// Run a version on a copy of live traffic; without a digest, stop the shadow.
    Shadow {
        /// The plugin.
        plugin: String,
        /// The candidate's digest; none stops the shadow.
        digest: Option<String>,
    },
}

/// Runs one fleet command.
pub fn run(args: FleetArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let timeout = Duration::from_secs(args.timeout_secs);
        let store = FleetStore::connect(&args.etcd, &args.prefix, timeout).await?;
        let (plugin, op) = match args.op {
            Op::Status => {
                println!("{}", serde_json::to_string(&store.status().await?)?);
                return Ok(ExitCode::SUCCESS);
            }
            Op::Stage { plugin, reference, plain_http } => (plugin, FleetOp::Stage { reference, plain_http }),
            Op::Activate { plugin, keep_versions } => (plugin, FleetOp::Activate { keep_versions }),
            Op::Rollback { plugin } => (plugin, FleetOp::Rollback),
            Op::Canary { plugin, digest, percent, key } => (plugin, FleetOp::Canary { digest, percent, key }),
            Op::Promote { plugin, keep_versions } => (plugin, FleetOp::Promote { keep_versions }),
            Op::Abort { plugin } => (plugin, FleetOp::Abort),
            Op::Shadow { plugin, digest } => (plugin, FleetOp::Shadow { digest }),
        };
        match store.change(&plugin, op).await {
            Ok(changed) => {
                println!("{}", serde_json::to_string(&changed)?);
                Ok(ExitCode::SUCCESS)
            }
            Err(FleetOpError::Refused(r)) => {
                eprintln!("refused: {r}");
                Ok(ExitCode::from(2))
            }
            Err(e @ FleetOpError::Conflict(_)) => {
                eprintln!("conflict: {e}");
                Ok(ExitCode::from(3))
            }
            Err(e) => Err(e.into()),
        }
    })
}

/// `scorehost serve`'s fleet options: follow the desired state under a
/// prefix in etcd instead of taking changes through the local admin routes.
#[derive(Debug, clap::Args)]
pub struct FleetServeArgs {
    /// Serve in fleet mode: follow the desired state in these etcd endpoints
    /// (comma-separated, `127.0.0.1:2379`). Needs --store (the local cache of
    /// versions) and --fleet-prefix.
    #[arg(long = "fleet-etcd", value_delimiter = ',', requires_all = ["fleet_prefix", "store"])]
    fleet_etcd: Vec<String>,
    /// The environment's key prefix in etcd, e.g. `/scorehost/prod/`.
    #[arg(long, requires = "fleet_etcd")]
    fleet_prefix: Option<String>,
    /// This replica's id in the fleet's reports, unique in the fleet
    /// [default: <hostname>:<port>, e.g. the pod name in Kubernetes].
    #[arg(long, requires = "fleet_etcd")]
    replica_id: Option<String>,
    /// Pull from the registry over plain HTTP (loopback, private networks).
    #[arg(long, requires = "fleet_etcd")]
    fleet_plain_http: bool,
    /// Seconds the first read of the desired state may take before the state
    /// this replica applied last (persisted in the store) is served.
    #[arg(long, default_value_t = 5)]
    fleet_startup_timeout_secs: u64,
    /// Seconds between full re-reads of the desired state, besides the watch.
    #[arg(long, default_value_t = 30)]
    fleet_relist_secs: u64,
}

impl FleetServeArgs {
    /// Whether fleet mode is on.
    pub fn enabled(&self) -> bool {
        !self.fleet_etcd.is_empty()
    }

    fn prefix(&self) -> &str {
        self.fleet_prefix.as_deref().unwrap_or("/scorehost/")
    }
}

/// In fleet mode, the admin API changes the fleet (`/admin/v1/fleet/…`)
/// and refuses the local changes that would fight it.
pub async fn admin_api(api: AdminApi, args: &FleetServeArgs) -> anyhow::Result<AdminApi> {
    if !args.enabled() {
        return Ok(api);
    }
    let store = FleetStore::connect(&args.fleet_etcd, args.prefix(), Duration::from_secs(5)).await?;
    Ok(api.with_fleet(Arc::new(store)))
}

/// This machine's name: two replicas on one port of different hosts (every
/// replica listening on `0.0.0.0:8080`) must not report under one id.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Starts following the fleet, when `--fleet-etcd` is given: restores what
/// was applied before, then lists, applies and watches on its own task.
pub async fn start_replica(
    args: &FleetServeArgs,
    app: &Arc<App>,
    addr: SocketAddr,
) -> anyhow::Result<Option<Arc<Replica>>> {
    if !args.enabled() {
        return Ok(None);
    }
    let api = app.admin.as_ref().context("fleet mode needs --store")?;
    let id = args.replica_id.clone().unwrap_or_else(|| format!("{}:{}", hostname(), addr.port()));
    let mut config = ReplicaConfig::new(id.clone(), args.fleet_etcd.clone(), args.prefix());
    config.plain_http = args.fleet_plain_http;
    config.max_bytes = api.max_upload_bytes as u64;
    config.startup_timeout = Duration::from_secs(args.fleet_startup_timeout_secs);
    config.relist_every = Duration::from_secs(args.fleet_relist_secs.max(1));
    let replica = Replica::connect(config, api.admin(), app.registry.clone(), app.readiness.clone()).await?;
    let restoring = replica.clone();
    tokio::task::spawn_blocking(move || restoring.restore()).await.context("restoring the fleet state")?;
    tokio::spawn(replica.clone().run());
    tracing::info!(
        "fleet mode: replica {id} follows {} on etcd {}",
        args.prefix(),
        args.fleet_etcd.join(",")
    );
    Ok(Some(replica))
}
