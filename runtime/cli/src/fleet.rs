//! `scorehost fleet …`: read and change the fleet's desired state in etcd
//! (built with the `fleet` feature). Every change reads a plugin's state,
//! applies one transition of `control::fleet::desired` and writes it back
//! with a compare-and-swap on the revision it read: if another operator
//! changed it in between, nothing is written and the command says so.
//!
//! Exit codes: 0 done, 1 error (etcd or the registry unreachable, bad
//! arguments), 2 refused (nothing staged, replicas not ready — each named
//! with its reason), 3 conflict (someone else changed it first).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use scorehost::control::fleet::desired::{DEFAULT_KEEP_PREVIOUS, DesiredState, Refusal, ReplicaStatus};
use scorehost::control::fleet::etcd::{EtcdError, FleetStore};
use scorehost::control::fleet::registry::RegistryClient;

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
        if let Op::Status = args.op {
            return status(&store).await;
        }
        let plugin = plugin_of(&args.op).to_owned();
        let read = store.plugin(&plugin).await?;
        let replicas = store.replicas().await?;
        let next = match transition(read.value.as_ref(), &args.op, &replicas).await {
            Ok(next) => next,
            Err(Failure::Refused(r)) => {
                eprintln!("refused: {r}");
                return Ok(ExitCode::from(2));
            }
            Err(Failure::Error(e)) => return Err(e),
        };
        match store.put_if(&plugin, read.revision, &next).await {
            Ok(revision) => {
                println!("{}", serde_json::json!({"plugin": plugin, "revision": revision, "state": next}));
                Ok(ExitCode::SUCCESS)
            }
            Err(e @ EtcdError::Conflict { .. }) => {
                eprintln!("conflict: {e}");
                Ok(ExitCode::from(3))
            }
            Err(e) => Err(e.into()),
        }
    })
}

fn plugin_of(op: &Op) -> &str {
    match op {
        Op::Status => "",
        Op::Stage { plugin, .. }
        | Op::Activate { plugin, .. }
        | Op::Rollback { plugin }
        | Op::Canary { plugin, .. }
        | Op::Promote { plugin, .. }
        | Op::Abort { plugin }
        | Op::Shadow { plugin, .. } => plugin,
    }
}

enum Failure {
    Refused(Refusal),
    Error(anyhow::Error),
}

impl From<Refusal> for Failure {
    fn from(r: Refusal) -> Self {
        Failure::Refused(r)
    }
}

/// The next state, from the state read (`None`: the fleet has no such plugin yet).
async fn transition(
    state: Option<&DesiredState>,
    op: &Op,
    replicas: &[ReplicaStatus],
) -> Result<DesiredState, Failure> {
    let plugin = plugin_of(op);
    let existing = || {
        state.ok_or_else(|| {
            Failure::Error(anyhow::anyhow!("the fleet has no plugin `{plugin}`: stage a version first"))
        })
    };
    Ok(match op {
        Op::Status => unreachable!("status changes nothing"),
        Op::Stage { reference, plain_http, .. } => {
            let (repository, digest, version) =
                resolve(reference, *plain_http).await.map_err(Failure::Error)?;
            let base = match state {
                Some(s) if s.repository != repository => {
                    return Err(Failure::Error(anyhow::anyhow!(
                        "{plugin} is pulled from {}, not {repository}",
                        s.repository
                    )));
                }
                Some(s) => s.clone(),
                None => DesiredState::new(repository),
            };
            base.stage(plugin, &digest, &version)?
        }
        Op::Activate { keep_versions, .. } => existing()?.activate(plugin, replicas, *keep_versions)?,
        Op::Rollback { .. } => existing()?.rollback(plugin)?,
        Op::Canary { digest, percent, key, .. } => {
            existing()?.canary(plugin, digest, *percent, key, replicas)?
        }
        Op::Promote { keep_versions, .. } => existing()?.promote(plugin, replicas, *keep_versions)?,
        Op::Abort { .. } => existing()?.abort(plugin)?,
        Op::Shadow { digest, .. } => existing()?.shadow(plugin, digest.as_deref(), replicas)?,
    })
}

/// `<registry>/<repo>@sha256:…` as given, or `<registry>/<repo>:<tag>`
/// resolved to the digest it points at now: (repository, digest, version
/// label — the tag, or the digest's first 12 hex digits).
async fn resolve(reference: &str, plain_http: bool) -> anyhow::Result<(String, String, String)> {
    if let Some((repository, digest)) = reference.split_once('@') {
        let label = digest.trim_start_matches("sha256:").chars().take(12).collect();
        return Ok((repository.to_owned(), digest.to_owned(), label));
    }
    let (repository, tag) = reference
        .rsplit_once(':')
        .filter(|(repo, tag)| repo.contains('/') && !tag.contains('/'))
        .with_context(|| {
            format!("`{reference}` is neither <registry>/<repo>:<tag> nor <registry>/<repo>@<digest>")
        })?;
    let digest = RegistryClient::new(plain_http).resolve(reference).await?;
    Ok((repository.to_owned(), digest, tag.to_owned()))
}

async fn status(store: &FleetStore) -> anyhow::Result<ExitCode> {
    let (plugins, revision) = store.plugins().await?;
    let replicas = store.replicas().await?;
    let plugins: serde_json::Map<String, serde_json::Value> = plugins
        .iter()
        .map(|(name, v)| {
            let converged = v.value.converged(name, &replicas);
            (
                name.clone(),
                serde_json::json!({"revision": v.revision, "converged": converged, "state": v.value}),
            )
        })
        .collect();
    println!("{}", serde_json::json!({"revision": revision, "plugins": plugins, "replicas": replicas}));
    Ok(ExitCode::SUCCESS)
}
