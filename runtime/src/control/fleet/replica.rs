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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::artifact;
use super::desired::{DesiredState, PluginStatus, ReplicaStatus};
use super::etcd::{EtcdError, FleetStore, Keeper, Versioned, Watched};
use super::registry::{RegistryClient, RegistryError};
use crate::control::admin::{Admin, AdminError};
use crate::control::readiness::Readiness;
use crate::control::store::StoreError;
use crate::serving::registry::Registry;
use crate::serving::traffic::RouteKey;

/// The file under `<store>/.fleet/` holding what this replica applied.
const APPLIED: &str = "applied.json";
/// Copies of live traffic a fleet shadow may have in flight on one replica.
const SHADOW_IN_FLIGHT: usize = 32;

/// How a replica follows the fleet.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// Unique in the fleet; its report's key. `serve` uses the listen address.
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

    /// Brings in every digest `v` wants, swaps to it, persists and records the status.
    async fn apply(self: &Arc<Self>, name: &str, v: Versioned<DesiredState>) {
        let desired = v.value;
        let mut failed = BTreeMap::new();
        for digest in desired.wanted() {
            if self.version_of(name, digest).is_some() {
                continue;
            }
            if let Some(reason) = self.inner().rejected.get(digest).cloned() {
                failed.insert(digest.to_owned(), reason);
                continue;
            }
            match self.fetch(name, &desired.repository, digest).await {
                Ok(version) => tracing::info!(
                    plugin = %name,
                    "fleet: {name}@{version} ({digest}) pulled and passed the gate"
                ),
                Err(f) => {
                    tracing::error!(plugin = %name, "fleet: {digest}: {}", f.reason);
                    if f.permanent {
                        self.inner().rejected.insert(digest.to_owned(), f.reason.clone());
                    }
                    failed.insert(digest.to_owned(), f.reason);
                }
            }
        }
        let this = self.clone();
        let (n, state) = (name.to_owned(), desired.clone());
        let status = match tokio::task::spawn_blocking(move || this.swap(&n, &state, failed)).await {
            Ok(status) => status,
            Err(e) => {
                tracing::error!(plugin = %name, "fleet: applying generation {} failed: {e}", desired.generation);
                return;
            }
        };
        tracing::info!(
            plugin = %name,
            "fleet: applied generation {} of {name}: serving {}{}",
            desired.generation,
            status.live.as_deref().unwrap_or("nothing"),
            if status.failed.is_empty() { String::new() } else { format!(", {} failure(s)", status.failed.len()) }
        );
        let mut inner = self.inner();
        inner.status.insert(name.to_owned(), status);
        inner.applied.plugins.insert(name.to_owned(), AppliedPlugin { revision: v.revision, state: desired });
        let bytes = serde_json::to_vec_pretty(&inner.applied).expect("the applied state serialises");
        drop(inner);
        if let Err(e) = self.admin.store().write_fleet_file(APPLIED, &bytes) {
            tracing::error!("fleet: persisting what was applied: {e}");
        }
    }

    /// The version `digest` packs, if it is installed here for plugin `name`.
    fn version_of(&self, name: &str, digest: &str) -> Option<String> {
        let known = self.inner().applied.digests.get(digest).cloned()?;
        (known.name == name && self.admin.contains(name, &known.version)).then_some(known.version)
    }

    /// Whether `digest` passed the gate here.
    fn gated(&self, digest: &str) -> bool {
        self.inner().applied.digests.get(digest).is_some_and(|k| k.gated)
    }

    /// Marks `digest` as gated here.
    fn mark_gated(&self, digest: &str) {
        if let Some(k) = self.inner().applied.digests.get_mut(digest) {
            k.gated = true;
        }
    }

    /// The digest of `name@version`, if this replica installed it from one.
    fn digest_of(&self, name: &str, version: &str) -> Option<String> {
        let inner = self.inner();
        inner
            .applied
            .digests
            .iter()
            .find(|(_, k)| k.name == name && k.version == version)
            .map(|(d, _)| d.clone())
    }

    /// Pulls `digest`, checks it, and installs it through the gate. Returns its version.
    async fn fetch(self: &Arc<Self>, name: &str, repository: &str, digest: &str) -> Result<String, Failed> {
        let wait = self.config.pull_jitter.mul_f64(fastrand::f64());
        tokio::time::sleep(wait).await;
        let pulled = tokio::time::timeout(
            self.config.pull_timeout,
            self.oci.pull(repository, digest, self.config.max_bytes),
        )
        .await
        .map_err(|_| Failed::transient("pull", format!("timed out after {:?}", self.config.pull_timeout)))?
        .map_err(|e| match e {
            RegistryError::Registry { .. } => Failed::transient("pull", e),
            other => Failed::permanent("verify", other),
        })?;
        let (config, tar) = artifact::unpack(&pulled.config_blob, &pulled.component, &pulled.files)
            .map_err(|e| Failed::permanent("verify", e))?;
        if config.name != name {
            return Err(Failed::permanent(
                "verify",
                format!("the artifact packs plugin `{}`, not `{name}`", config.name),
            ));
        }
        let version = config.version;
        if let Some(other) = self.digest_of(name, &version).filter(|d| d != digest) {
            return Err(Failed::permanent(
                "verify",
                format!("{name}@{version} is already installed from {other}; versions are immutable"),
            ));
        }
        if self.admin.contains(name, &version) {
            return Err(Failed::permanent(
                "verify",
                format!(
                    "{name}@{version} is already in the store, not from this digest; versions are immutable"
                ),
            ));
        }
        // Recorded before the install, so a crash in between cannot leave a
        // version in the store that no digest claims; marked gated after.
        let known = Known { name: name.to_owned(), version: version.clone(), gated: false };
        self.remember(digest, Some(known.clone()));
        let this = self.clone();
        let (n, v) = (name.to_owned(), version.clone());
        let installed = tokio::task::spawn_blocking(move || this.admin.upload(&n, &v, &tar)).await;
        let failure = match installed {
            Ok(Ok(_)) => {
                self.remember(digest, Some(Known { gated: true, ..known }));
                return Ok(version);
            }
            Ok(Err(AdminError::GateFailed { reason, .. })) => Failed::permanent("gate", reason),
            Ok(Err(AdminError::Store(e @ (StoreError::InvalidUpload(_) | StoreError::InvalidName(_))))) => {
                Failed::permanent("unpack", e)
            }
            Ok(Err(e)) => Failed::transient("install", e),
            Err(e) => Failed::transient("install", e),
        };
        // Whatever the install left (a rename that happened before an fsync
        // failed) goes too, so the next attempt starts clean.
        if self.admin.contains(name, &version)
            && let Err(e) = self.admin.delete(name, &version)
        {
            tracing::error!(plugin = %name, "fleet: removing {name}@{version} after a failed install: {e}");
        }
        self.remember(digest, None);
        Err(failure)
    }

    /// Records (or forgets) what `digest` packs, and persists it.
    fn remember(&self, digest: &str, known: Option<Known>) {
        let mut inner = self.inner();
        match known {
            Some(k) => inner.applied.digests.insert(digest.to_owned(), k),
            None => inner.applied.digests.remove(digest),
        };
        let bytes = serde_json::to_vec_pretty(&inner.applied).expect("the applied state serialises");
        drop(inner);
        if let Err(e) = self.admin.store().write_fleet_file(APPLIED, &bytes) {
            tracing::error!("fleet: persisting what was applied: {e}");
        }
    }

    /// Makes `name` serve `desired` with the digests installed here: the
    /// candidates it must swap to at once are loaded (gated), the live
    /// version swaps, then a canary or shadow no longer wanted ends and new
    /// ones start; versions the state no longer wants leave the store.
    /// Blocking. Returns the status to report.
    fn swap(&self, name: &str, desired: &DesiredState, mut failed: BTreeMap<String, String>) -> PluginStatus {
        let mut loaded = Vec::new();
        let hot: Vec<&str> = [desired.live.as_deref(), desired.staged.as_deref(), desired.shadow.as_deref()]
            .into_iter()
            .flatten()
            .chain(desired.canary.as_ref().map(|c| c.digest.as_str()))
            .collect();
        for digest in desired.wanted() {
            let Some(version) = self.version_of(name, digest) else {
                failed.entry(digest.to_owned()).or_insert_with(|| "pull: not installed yet".into());
                continue;
            };
            // Candidates are held loaded; rollback targets need only have
            // passed the gate here once (a rollback loads them again).
            if hot.contains(&digest) || !self.gated(digest) {
                if let Err(e) = self.admin.prepare(name, &version) {
                    failed.insert(digest.to_owned(), format!("gate: {e}"));
                    continue;
                }
                self.mark_gated(digest);
            }
            loaded.push(digest.to_owned());
        }
        let mut fail = |digest: &str, what: &str, e: AdminError| {
            tracing::error!(plugin = %name, "fleet: {what} {digest}: {e}");
            failed.insert(digest.to_owned(), format!("swap: {what}: {e}"));
        };
        // Live first: a promoted canary's keys never pass through the old
        // version (the registry ends a canary whose version goes live).
        if let Some(digest) = &desired.live
            && let Some(version) = self.version_of(name, digest)
        {
            let serving = self.registry.get(name).map(|v| v.manifest().version.clone());
            if serving.as_deref() != Some(version.as_str()) {
                match self.admin.activate(name, &version) {
                    Ok(swap) => tracing::info!(
                        plugin = %name,
                        "fleet: {name}@{version} is live (was {})",
                        swap.previous.as_deref().unwrap_or("nothing")
                    ),
                    Err(e) => fail(digest, "activating", e),
                }
            }
        }
        let live_version = self.registry.get(name).map(|v| v.manifest().version.clone());
        let canary = desired.canary.as_ref().and_then(|c| {
            let version = self.version_of(name, &c.digest)?;
            let key = match RouteKey::parse(&c.key) {
                Ok(k) => k,
                Err(e) => {
                    fail(&c.digest, "starting the canary", AdminError::Invalid(e.to_string()));
                    return None;
                }
            };
            Some((c, version, key))
        });
        // A shadow of the live version itself would only double its load.
        let shadow = desired
            .shadow
            .as_ref()
            .and_then(|d| Some((d, self.version_of(name, d)?)))
            .filter(|(_, v)| live_version.as_ref() != Some(v));
        let entry = self.registry.entry(name);
        let running_canary = entry.as_ref().and_then(|e| e.canary.clone());
        let canary_same = match (&running_canary, &canary) {
            (Some(r), Some((c, version, key))) => {
                r.version.manifest().version == *version && r.percent == c.percent && r.key == *key
            }
            _ => false,
        };
        if running_canary.is_some()
            && !canary_same
            && let Err(e) = self.admin.abort_canary(name)
        {
            fail("the canary", "ending", e);
        }
        let running_shadow = entry.as_ref().and_then(|e| e.shadow.clone());
        let shadow_same = matches!((&running_shadow, &shadow),
            (Some(r), Some((_, version))) if r.version.manifest().version == *version);
        if running_shadow.is_some()
            && !shadow_same
            && let Err(e) = self.admin.stop_shadow(name)
        {
            fail("the shadow", "ending", e);
        }
        if let Some((c, version, key)) = canary
            && !canary_same
        {
            match self.admin.start_canary(name, &version, c.percent, key) {
                Ok(()) => tracing::info!(plugin = %name, "fleet: canary {name}@{version} on {}%", c.percent),
                Err(e) => fail(&c.digest, "starting the canary", e),
            }
        }
        if let Some((digest, version)) = shadow
            && !shadow_same
        {
            match self.admin.start_shadow(name, &version, SHADOW_IN_FLIGHT) {
                Ok(()) => tracing::info!(plugin = %name, "fleet: shadow {name}@{version}"),
                Err(e) => fail(digest, "starting the shadow", e),
            }
        }
        self.forget_unwanted(name, desired);
        let live = self.registry.get(name).and_then(|v| self.digest_of(name, &v.manifest().version));
        PluginStatus { generation: desired.generation, live, loaded, failed }
    }

    /// Removes from the store (and from memory) this plugin's versions the
    /// state no longer wants — superseded stages, rollback targets past the
    /// kept ones — unless one still serves. Bounded disk and memory over any
    /// number of rollouts; a digest staged again is pulled again.
    fn forget_unwanted(&self, name: &str, desired: &DesiredState) {
        let wanted = desired.wanted();
        let serving: Vec<String> = self
            .registry
            .entry(name)
            .map(|e| {
                std::iter::once(&e.live)
                    .chain(e.canary.as_ref().map(|c| &c.version))
                    .chain(e.shadow.as_ref().map(|s| &s.version))
                    .map(|v| v.manifest().version.clone())
                    .collect()
            })
            .unwrap_or_default();
        let unwanted: Vec<(String, String)> = self
            .inner()
            .applied
            .digests
            .iter()
            .filter(|(d, k)| k.name == name && !wanted.contains(&d.as_str()) && !serving.contains(&k.version))
            .map(|(d, k)| (d.clone(), k.version.clone()))
            .collect();
        for (digest, version) in unwanted {
            match self.admin.delete(name, &version) {
                Ok(()) | Err(AdminError::Store(StoreError::NotFound { .. })) => {
                    tracing::info!(plugin = %name, "fleet: removed {name}@{version} ({digest}): no longer wanted");
                    self.inner().applied.digests.remove(&digest);
                }
                Err(e) => tracing::warn!(plugin = %name, "fleet: removing {name}@{version}: {e}"),
            }
        }
    }

    /// Publishes the status under the lease, granting one first if needed.
    async fn publish(&self) {
        let mut reporting = self.report.lock().await;
        self.publish_locked(&mut reporting).await;
    }

    async fn publish_locked(&self, reporting: &mut Reporting) {
        if self.leaving.load(Ordering::Relaxed) {
            return;
        }
        let lease = match reporting.lease {
            Some(l) => l,
            None => match self.etcd.grant(self.config.lease_ttl).await {
                Ok(l) => {
                    *reporting = Reporting { lease: Some(l), keeper: None };
                    l
                }
                Err(e) => {
                    tracing::warn!("fleet: cannot report this replica's status: {e}");
                    return;
                }
            },
        };
        if let Err(e) = self.etcd.report(&self.status(), lease).await {
            tracing::warn!("fleet: cannot report this replica's status: {e}");
            // The lease may be gone (expired while cut off): grant a new one next time.
            *reporting = Reporting::default();
        }
    }

    /// Every third of the lease's TTL: renews it, bounded by the etcd
    /// timeout; if it is gone (expired while cut off) or etcd does not
    /// answer, grants a new one and reports again.
    async fn keep_reporting(self: Arc<Self>) {
        loop {
            tokio::time::sleep(self.config.lease_ttl / 3).await;
            if self.leaving.load(Ordering::Relaxed) {
                return;
            }
            let mut reporting = self.report.lock().await;
            let alive = match reporting.lease {
                Some(l) => {
                    let renewed = tokio::time::timeout(
                        self.config.etcd_timeout,
                        self.etcd.keep_alive(l, &mut reporting.keeper),
                    )
                    .await;
                    matches!(renewed, Ok(Ok(true)))
                }
                None => false,
            };
            if !alive {
                *reporting = Reporting::default();
                self.publish_locked(&mut reporting).await;
            }
        }
    }

    /// Withdraws this replica's report (revokes its lease) and reports
    /// nothing more. Called at shutdown, so an activation in the meantime
    /// does not wait for a replica that is gone.
    pub async fn leave(&self) {
        self.leaving.store(true, Ordering::Relaxed);
        let lease = match tokio::time::timeout(Duration::from_secs(1), self.report.lock()).await {
            Ok(mut reporting) => reporting.lease.take(),
            Err(_) => None,
        };
        if let Some(lease) = lease {
            match tokio::time::timeout(Duration::from_secs(1), self.etcd.revoke(lease)).await {
                Ok(Ok(())) => tracing::info!("fleet: report withdrawn"),
                Ok(Err(e)) => tracing::warn!("fleet: withdrawing the report: {e}"),
                Err(_) => tracing::warn!("fleet: withdrawing the report timed out"),
            }
        }
    }
}

/// `d` ± 20 %, so replicas started together do not act together.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.8 + 0.4 * fastrand::f64())
}
