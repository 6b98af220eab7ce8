//! A fleet replica: `scorehost serve --store … --fleet-etcd … --fleet-prefix …`
//! follows the fleet's desired state in etcd and makes this process serve it.
//!
//! - **Follow.** List every plugin's state (revision R), apply it, watch from
//!   R + 1. On a compacted or canceled watch, a broken stream, or every
//!   `relist_every` (± 20 %), list again: every list is complete, so a lost
//!   watch event costs a delay, never an update.
//! - **Apply.** Every digest the state wants (live, canary, shadow, staged,
//!   the rollback targets) that this replica lacks is pulled by digest,
//!   checked (`artifact`), unpacked and installed through [`Admin::upload`],
//!   so the same validation gate runs as for a local upload. Then the swaps
//!   go through `Admin` too (activate, canary, shadow): calls in flight finish
//!   on the version they started with. A failure keeps what serves, and is
//!   reported with its stage (`pull`, `verify`, `unpack`, `gate`, `swap`).
//!   Pull failures are retried at the next list; a digest that failed its
//!   checks or its gate is not pulled again.
//! - **Persist.** digest → name@version and the last applied state per plugin
//!   go to `<store>/.fleet/applied.json`; the live version is in the store's
//!   own `state.json`. A replica restarted while etcd is down serves that.
//! - **Report.** Under `<prefix>replicas/<id>`, with a lease kept alive every
//!   third of its TTL and revoked at shutdown: per plugin, the generation
//!   applied, the digest serving, the digests ready to serve, and failures.
//!   Activation reads these reports (`desired::DesiredState::activate`).
//! - **Ready.** [`Readiness`] stays "waiting" until the state read at start
//!   is applied — or, with etcd unreachable for `startup_timeout`, until the
//!   persisted state serves.
//!
//! None of this touches the request path: calls read the same registry, and
//! the swaps are the single-node ones.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::desired::{DesiredState, PluginStatus, ReplicaStatus};
use super::etcd::{EtcdError, FleetStore, Keeper, Versioned, Watched};
use super::registry::RegistryClient;
use crate::control::admin::Admin;
use crate::control::readiness::Readiness;
use crate::serving::registry::Registry;

mod apply;
mod report;

/// The file under `<store>/.fleet/` holding what this replica applied.
const APPLIED: &str = "applied.json";
/// Copies of live traffic a fleet shadow may have in flight on one replica.
const SHADOW_IN_FLIGHT: usize = 32;

/// How a replica follows the fleet.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// Unique in the fleet; its report's key. `serve` uses `<hostname>:<port>` unless told.
    pub id: String,
    /// etcd endpoints (`127.0.0.1:2379`).
    pub endpoints: Vec<String>,
    /// The environment's key prefix (`/scorehost/prod/`).
    pub prefix: String,
    /// Speak plain HTTP to the registry (loopback, private networks).
    pub plain_http: bool,
    /// Most bytes of layers one pulled version may have.
    pub max_bytes: u64,
    /// How long the first list may take before the persisted state is served.
    pub startup_timeout: Duration,
    /// How often the whole state is listed again, besides the watch (± 20 %).
    pub relist_every: Duration,
    /// The report's lease; kept alive every third of it.
    pub lease_ttl: Duration,
    /// Longest one etcd request may take.
    pub etcd_timeout: Duration,
    /// Longest one pull may take.
    pub pull_timeout: Duration,
    /// Pulls start after a random delay up to this, so a fleet does not hit
    /// the registry in one instant.
    pub pull_jitter: Duration,
}

impl ReplicaConfig {
    /// The defaults for replica `id` following `prefix` on `endpoints`.
    pub fn new(id: impl Into<String>, endpoints: Vec<String>, prefix: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            endpoints,
            prefix: prefix.into(),
            plain_http: false,
            max_bytes: 256 << 20,
            startup_timeout: Duration::from_secs(5),
            relist_every: Duration::from_secs(30),
            lease_ttl: Duration::from_secs(10),
            etcd_timeout: Duration::from_secs(5),
            pull_timeout: Duration::from_secs(120),
            pull_jitter: Duration::from_millis(200),
        }
    }
}

/// Why a replica could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicaError {
    /// The etcd endpoints are unusable.
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// `<store>/.fleet/applied.json` could not be read or is not what this version writes.
    #[error("the fleet state persisted in the store: {0}")]
    Persisted(String),
}

/// A version this replica holds: the plugin and the version string it packs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Known {
    name: String,
    version: String,
    /// Passed the gate here (false between recording and the gate's end).
    #[serde(default)]
    gated: bool,
}

/// The state of one plugin this replica applied, with its etcd revision.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct AppliedPlugin {
    revision: i64,
    state: DesiredState,
}

/// `<store>/.fleet/applied.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Applied {
    /// digest → what it packs: only digests installed (and gated) here.
    #[serde(default)]
    digests: BTreeMap<String, Known>,
    /// plugin → the last state applied.
    #[serde(default)]
    plugins: BTreeMap<String, AppliedPlugin>,
}

/// What the replica knows, behind one lock (never held across an await).
#[derive(Default)]
struct Inner {
    applied: Applied,
    status: BTreeMap<String, PluginStatus>,
    /// digest → why it failed its checks or its gate: not pulled again.
    rejected: BTreeMap<String, String>,
}

/// A failure to bring in one digest.
struct Failed {
    reason: String,
    /// A check or the gate failed: the same bytes would fail again.
    permanent: bool,
}

impl Failed {
    fn transient(stage: &str, e: impl std::fmt::Display) -> Self {
        Self { reason: format!("{stage}: {e}"), permanent: false }
    }

    fn permanent(stage: &str, e: impl std::fmt::Display) -> Self {
        Self { reason: format!("{stage}: {e}"), permanent: true }
    }
}

/// One replica of a fleet. Built once by `serve`; [`Replica::run`] follows
/// the fleet until the process ends, [`Replica::leave`] withdraws its report.
pub struct Replica {
    config: ReplicaConfig,
    admin: Arc<Admin>,
    registry: Arc<Registry>,
    readiness: Arc<Readiness>,
    oci: RegistryClient,
    etcd: FleetStore,
    inner: Mutex<Inner>,
    /// The report's lease and its keep-alive stream: one reporter at a time
    /// (the follow loop after a change, the keep-alive task every ttl/3).
    report: tokio::sync::Mutex<Reporting>,
    /// Set by [`Replica::leave`]: report nothing more.
    leaving: AtomicBool,
}

/// The lease a replica reports under, once granted.
#[derive(Default)]
struct Reporting {
    lease: Option<i64>,
    keeper: Option<Keeper>,
}

impl Replica {
    /// A replica serving through `admin` and `registry`, holding `readiness`
    /// not ready until it has applied the fleet's state. Reads what it
    /// applied before from the store; does not touch etcd yet.
    pub async fn connect(
        config: ReplicaConfig,
        admin: Arc<Admin>,
        registry: Arc<Registry>,
        readiness: Arc<Readiness>,
    ) -> Result<Arc<Self>, ReplicaError> {
        let etcd = FleetStore::connect(&config.endpoints, &config.prefix, config.etcd_timeout).await?;
        let applied = match admin.store().read_fleet_file(APPLIED) {
            Ok(None) => Applied::default(),
            Ok(Some(bytes)) => serde_json::from_slice(&bytes)
                .map_err(|e| ReplicaError::Persisted(format!(".fleet/{APPLIED}: {e}")))?,
            Err(e) => return Err(ReplicaError::Persisted(e.to_string())),
        };
        readiness.wait_for(format!(
            "fleet: waiting for the first read of {} from etcd {}",
            config.prefix,
            config.endpoints.join(",")
        ));
        Ok(Arc::new(Self {
            oci: RegistryClient::new(config.plain_http),
            config,
            admin,
            registry,
            readiness,
            etcd,
            inner: Mutex::new(Inner { applied, ..Inner::default() }),
            report: tokio::sync::Mutex::new(Reporting::default()),
            leaving: AtomicBool::new(false),
        }))
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What this replica reports: per plugin, the generation applied, the
    /// digest serving, the digests ready and the failures.
    pub fn status(&self) -> ReplicaStatus {
        ReplicaStatus { id: self.config.id.clone(), plugins: self.inner().status.clone() }
    }

    /// Makes the persisted state serve again: the store already made each
    /// plugin's live version live; this restores canaries and shadows and
    /// the report. Blocking (it may gate): call it before serving.
    pub fn restore(&self) {
        let plugins = self.inner().applied.plugins.clone();
        for (name, applied) in plugins {
            let status = self.swap(&name, &applied.state, BTreeMap::new());
            tracing::info!(
                plugin = %name,
                "fleet: restored generation {} from the store (live {})",
                applied.state.generation,
                status.live.as_deref().unwrap_or("none")
            );
            self.inner().status.insert(name, status);
        }
    }

    /// Follows the fleet until the process ends: list, apply, watch, report;
    /// list again after any break in the watch and every `relist_every`.
    /// The lease is kept alive by a task of its own, so a long pull or gate
    /// never lets this replica's report expire.
    pub async fn run(self: Arc<Self>) {
        tokio::spawn(self.clone().keep_reporting());
        let started = Instant::now();
        let mut waiting = true;
        let mut backoff = Duration::from_millis(100);
        let mut etcd_down = false;
        loop {
            let listed = tokio::time::timeout(self.config.etcd_timeout, self.etcd.plugin_entries()).await;
            let (entries, revision) = match listed {
                Ok(Ok(listed)) => listed,
                failed => {
                    let why = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => format!("listing timed out after {:?}", self.config.etcd_timeout),
                    };
                    if !etcd_down {
                        tracing::warn!(
                            "fleet: cannot read the desired state ({why}); serving what was applied"
                        );
                        etcd_down = true;
                    }
                    if waiting && started.elapsed() >= self.config.startup_timeout {
                        waiting = !self.serve_persisted(&why);
                    }
                    tokio::time::sleep(jitter(backoff)).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            if etcd_down {
                tracing::info!("fleet: etcd answers again; listed at revision {revision}");
                etcd_down = false;
            }
            backoff = Duration::from_millis(100);
            for (name, entry) in entries {
                match entry {
                    Ok(v) if self.needs(&name, &v) => self.apply(&name, v).await,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!(plugin = %name, "fleet: {e}; this plugin keeps serving what it serves")
                    }
                }
            }
            self.check_started(&mut waiting, revision);
            self.publish().await;
            self.follow(revision, &mut waiting).await;
        }
    }

    /// At start, ready once every plugin serves the fleet's live digest;
    /// until then `/readyz` says which does not, and why.
    fn check_started(&self, waiting: &mut bool, revision: i64) {
        if !*waiting {
            return;
        }
        let inner = self.inner();
        let behind: Vec<String> = inner
            .applied
            .plugins
            .iter()
            .filter_map(|(name, applied)| {
                let want = applied.state.live.as_ref()?;
                let status = inner.status.get(name);
                if status.is_some_and(|s| s.live.as_ref() == Some(want)) {
                    return None;
                }
                let why = status.and_then(|s| s.failed.get(want)).map_or("not applied yet", String::as_str);
                Some(format!("{name} does not serve {want} yet ({why})"))
            })
            .collect();
        drop(inner);
        if behind.is_empty() {
            tracing::info!("fleet: serving the desired state read at revision {revision}; ready");
            self.readiness.ready();
            *waiting = false;
        } else {
            self.readiness.wait_for(format!("fleet: {}", behind.join("; ")));
        }
    }

    /// Watches from `revision + 1` until the watch breaks or it is time to
    /// list again (soon, while still starting: failed pulls are retried then).
    async fn follow(self: &Arc<Self>, revision: i64, waiting: &mut bool) {
        let mut watch = match self.etcd.watch_plugins(revision + 1).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!("fleet: {e}; listing again");
                tokio::time::sleep(jitter(Duration::from_millis(500))).await;
                return;
            }
        };
        let every = if *waiting { Duration::from_secs(2) } else { self.config.relist_every };
        let relist = tokio::time::sleep(jitter(every));
        tokio::pin!(relist);
        loop {
            tokio::select! {
                watched = watch.next() => match watched {
                    Ok(Watched::Changed(changes)) => {
                        for (name, change) in changes {
                            match change {
                                Ok(Some(v)) if self.needs(&name, &v) => self.apply(&name, v).await,
                                Ok(Some(_)) => {}
                                Ok(None) => tracing::warn!(
                                    plugin = %name,
                                    "fleet: the desired state of {name} was deleted; it keeps serving what it serves"
                                ),
                                Err(e) => tracing::error!(plugin = %name, "fleet: {e}"),
                            }
                        }
                        self.check_started(waiting, revision);
                        self.publish().await;
                    }
                    Ok(Watched::Compacted(at)) => {
                        tracing::info!("fleet: the watch fell behind etcd's compaction at revision {at}; listing again");
                        return;
                    }
                    Ok(Watched::Ended(why)) => {
                        tracing::info!("fleet: {why}; listing again");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!("fleet: {e}; listing again");
                        return;
                    }
                },
                () = &mut relist => return,
            }
        }
    }

    /// Whether `v` must be applied: newer than what was applied, or what was
    /// applied left something to retry (a failed pull, a version not serving).
    fn needs(&self, name: &str, v: &Versioned<DesiredState>) -> bool {
        let inner = self.inner();
        let Some(applied) = inner.applied.plugins.get(name) else { return true };
        if applied.revision < v.revision {
            return true;
        }
        inner.status.get(name).is_none_or(|s| {
            s.live != v.value.live || s.failed.keys().any(|d| !inner.rejected.contains_key(d))
        })
    }

    /// With etcd unreachable at start: serve what was persisted, and say so.
    /// Returns whether that made the replica ready.
    fn serve_persisted(&self, why: &str) -> bool {
        let plugins = self.inner().applied.plugins.len();
        if plugins == 0 || self.registry.is_empty() {
            tracing::error!(
                "fleet: etcd is unreachable ({why}) and this replica has applied nothing before: \
                 not ready until etcd answers"
            );
            self.readiness.wait_for(format!("fleet: etcd unreachable and nothing applied before: {why}"));
            return false;
        }
        tracing::warn!(
            "fleet: etcd is unreachable ({why}); ready with the state applied before ({plugins} plugin(s))"
        );
        self.readiness.ready();
        true
    }
}

/// `d` ± 20 %, so replicas started together do not act together.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.8 + 0.4 * fastrand::f64())
}
