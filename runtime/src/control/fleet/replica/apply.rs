//! Bringing a plugin to a desired state: pulling and checking what is
//! missing, installing it through the gate, swapping through `Admin`,
//! removing what is no longer wanted, and remembering digest → version.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{APPLIED, AppliedPlugin, Failed, Known, Replica, SHADOW_IN_FLIGHT};
use crate::control::admin::AdminError;
use crate::control::fleet::artifact;
use crate::control::fleet::desired::{DesiredState, PluginStatus};
use crate::control::fleet::etcd::Versioned;
use crate::control::fleet::registry::RegistryError;
use crate::control::store::StoreError;
use crate::serving::traffic::RouteKey;

impl Replica {
    /// Brings in every digest `v` wants, swaps to it, persists and records the status.
    pub(super) async fn apply(self: &Arc<Self>, name: &str, v: Versioned<DesiredState>) {
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
    pub(super) fn swap(
        &self,
        name: &str,
        desired: &DesiredState,
        mut failed: BTreeMap<String, String>,
    ) -> PluginStatus {
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
}
