//! Changing what runs without a restart: upload → validation gate → activate,
//! rollback, delete — the logic behind `/admin/v1/` (the HTTP side is in
//! `http/admin.rs`).
//!
//! The gate is [`Admin::gate`]: the version must load (compile, implement its
//! declared world, `init` with its config) and pass its golden vectors under
//! its production limits ([`crate::control::golden::check`]). A version that fails is removed
//! from the store and never reaches the registry; the live version keeps
//! serving. Activation is one registry swap: calls in flight finish on the
//! version they started with (they hold its `Arc`), new calls see the new one.
//! The previous `keep - 1` versions stay loaded, so a rollback is one swap too.
//!
//! Every method blocks (loading compiles and runs `init`): call them from a
//! loading thread or `spawn_blocking`, never on an async worker.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

use crate::control::store::{Fingerprint, PluginState, PluginStore, Scan, StoreError, UploadLimits};
use crate::serving::registry::Registry;
use crate::serving::traffic::ShadowStats;
use crate::version::plugin::PluginVersion;
use crate::version::runtime::Runtime;

mod candidates;
mod gate;

pub use gate::{GateError, GateRecord, VectorCost};

/// Why an admin operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// From the store: bad name, bad archive, exists, not found, I/O.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The version did not pass the validation gate; nothing changed.
    #[error("{name}@{version} failed the validation gate: {reason}")]
    GateFailed {
        /// Plugin name.
        name: String,
        /// Version.
        version: String,
        /// Whether loading or golden vectors failed, and how.
        reason: GateError,
    },
    /// The operation conflicts with the current state (deleting the live
    /// version, rolling back with no previous version).
    #[error("{0}")]
    Conflict(String),
    /// The request's parameters are invalid (a percentage over 100, a bad key).
    #[error("{0}")]
    Invalid(String),
}

/// A version that passed the gate and is in memory.
struct Loaded {
    version: Arc<PluginVersion>,
    gate: GateRecord,
}

/// A version's state, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct VersionInfo {
    /// The version string.
    pub version: String,
    /// `live`, `previous` (a rollback target), `ready` (gated, not live) or
    /// `stored` (on disk, not loaded).
    pub state: &'static str,
    /// Gate costs, when loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateRecord>,
}

/// A running canary, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct CanaryInfo {
    /// The candidate version.
    pub version: String,
    /// Its share of routing keys, %.
    pub percent: u8,
    /// Where the routing key comes from (`header:<name>` or a field).
    pub key: String,
}

/// A running shadow, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct ShadowInfo {
    /// The candidate version.
    pub version: String,
    /// Live-vs-shadow counts so far.
    pub stats: ShadowStats,
}

/// A plugin's versions, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct PluginInfo {
    /// The plugin name.
    pub name: String,
    /// The live version, if any.
    pub live: Option<String>,
    /// Every version in the store, sorted.
    pub versions: Vec<VersionInfo>,
    /// The canary, while one runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryInfo>,
    /// The shadow, while one runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowInfo>,
}

/// The outcome of an activation or a rollback.
#[derive(Debug, Clone, Serialize)]
pub struct Swap {
    /// The plugin name.
    pub name: String,
    /// Now live.
    pub live: String,
    /// Live before, if any.
    pub previous: Option<String>,
}

/// The store, the registry it feeds, and the versions held in memory.
pub struct Admin {
    store: PluginStore,
    runtime: Arc<Runtime>,
    registry: Arc<Registry>,
    loaded: Mutex<BTreeMap<(String, String), Loaded>>,
    /// Versions per plugin kept loaded: the live one and `keep - 1` previous.
    keep: usize,
    /// Bounds on one upload.
    pub limits: UploadLimits,
    /// Serialises changes (admin calls and the store watcher).
    ops: Mutex<()>,
    /// Versions the watcher found in the store that failed the gate, so a
    /// later event does not gate them again.
    rejected: Mutex<BTreeMap<(String, String), Option<Fingerprint>>>,
}

impl Admin {
    /// Opens the store at `root` and makes every plugin's recorded live
    /// version live again (gated again: a version that no longer passes stays
    /// out, and is reported), with up to `keep - 1` previous versions loaded.
    /// Returns what the store scan found, for start-up logs.
    pub fn open(
        root: &Path,
        runtime: Arc<Runtime>,
        registry: Arc<Registry>,
        keep: usize,
    ) -> Result<(Self, Scan), AdminError> {
        let (store, scan) = PluginStore::open(root)?;
        let admin = Self {
            store,
            runtime,
            registry,
            loaded: Mutex::new(BTreeMap::new()),
            keep: keep.max(1),
            limits: UploadLimits::default(),
            ops: Mutex::new(()),
            rejected: Mutex::new(Default::default()),
        };
        let names: Vec<String> = scan.versions.iter().map(|(n, _)| n.clone()).collect();
        let names: std::collections::BTreeSet<&String> = names.iter().collect();
        // Progress: each version is compiled (or read from the cache) and gated.
        let mut to_load = 0;
        for name in &names {
            let state = admin.store.state(name)?;
            to_load += state.live.iter().count() + state.history.iter().take(admin.keep - 1).count();
        }
        let mut loaded = 0;
        let mut progress = |name: &str, version: &str| {
            loaded += 1;
            tracing::info!("[{loaded}/{to_load}] store: loading {name}@{version}");
        };
        for name in names {
            let state = admin.store.state(name)?;
            let Some(live) = state.live.clone() else { continue };
            progress(name, &live);
            match admin.ensure_loaded(name, &live) {
                Ok(v) => {
                    admin.registry.insert(v);
                }
                Err(e) => tracing::error!(plugin = %name, "live version {live} does not load: {e}"),
            }
            for prev in state.history.iter().take(admin.keep - 1) {
                progress(name, prev);
                if let Err(e) = admin.ensure_loaded(name, prev) {
                    tracing::warn!(plugin = %name, "previous version {prev} does not load: {e}");
                }
            }
        }
        Ok((admin, scan))
    }

    /// Held by every change, so admin calls and the watcher never interleave.
    fn op(&self) -> MutexGuard<'_, ()> {
        self.ops.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Brings memory in line with the store after a change made on disk (the
    /// watcher's way in): every new version is gated (and stays `ready`, or
    /// is reported and skipped), and a plugin whose `state.json` names
    /// another live version than the one serving is swapped to it — if that
    /// version passes the gate; otherwise the live one keeps serving.
    pub fn sync_from_store(&self) -> Result<(), AdminError> {
        let _op = self.op();
        let versions = self.store.versions()?;
        let mut retired: BTreeMap<&String, Vec<String>> = BTreeMap::new();
        for (name, version) in &versions {
            let key = (name.clone(), version.clone());
            // Versions that were live and fell out of `--keep-versions`
            // stay unloaded: `commit()` evicted them on purpose.
            if !retired.contains_key(name) {
                // One unreadable state.json must not stop the others' gating.
                let evicted = match self.store.state(name) {
                    Ok(state) => state.history.iter().skip(self.keep.saturating_sub(1)).cloned().collect(),
                    Err(e) => {
                        tracing::error!(plugin = %name, "store: {name}/state.json: {e}");
                        Vec::new()
                    }
                };
                retired.insert(name, evicted);
            }
            if retired[name].contains(version) || self.loaded().contains_key(&key) {
                continue;
            }
            // A rejected version is gated again only once its files change.
            let print = self.store.fingerprint(name, version);
            if self.rejected.lock().is_ok_and(|r| r.get(&key) == Some(&print)) {
                continue;
            }
            match self.ensure_loaded(name, version) {
                Ok(_) => {
                    tracing::info!(plugin = %name, "store: {name}@{version} passed the gate; ready");
                    if let Ok(mut r) = self.rejected.lock() {
                        r.remove(&key);
                    }
                }
                Err(e) => {
                    tracing::error!(plugin = %name, "store: {name}@{version} rejected: {e}");
                    if let Ok(mut r) = self.rejected.lock() {
                        r.insert(key, print);
                    }
                }
            }
        }
        let names: std::collections::BTreeSet<&String> = versions.iter().map(|(n, _)| n).collect();
        for name in names {
            let state = self.store.state(name)?;
            let Some(live) = state.live.clone() else { continue };
            let serving = self.registry.get(name).map(|v| v.manifest().version.clone());
            if serving.as_deref() == Some(live.as_str()) {
                continue;
            }
            match self.ensure_loaded(name, &live) {
                Ok(v) => {
                    self.registry.insert(v);
                    tracing::info!(plugin = %name, "store: {name}@{live} is live (state.json)");
                }
                Err(e) => tracing::error!(
                    plugin = %name,
                    "store: state.json names {name}@{live}, which cannot go live ({e}); {} keeps serving",
                    serving.as_deref().unwrap_or("nothing")
                ),
            }
        }
        Ok(())
    }

    fn loaded(&self) -> MutexGuard<'_, BTreeMap<(String, String), Loaded>> {
        self.loaded.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Loads and gates `name@version` from the store unless it is loaded.
    fn ensure_loaded(&self, name: &str, version: &str) -> Result<Arc<PluginVersion>, AdminError> {
        let key = (name.to_owned(), version.to_owned());
        if let Some(l) = self.loaded().get(&key) {
            return Ok(l.version.clone());
        }
        if !self.store.contains(name, version) {
            return Err(StoreError::NotFound { name: name.into(), version: version.into() }.into());
        }
        let (v, gate) = self.gate(name, &self.store.version_path(name, version)).map_err(|reason| {
            AdminError::GateFailed { name: name.into(), version: version.into(), reason }
        })?;
        let v = Arc::new(v);
        self.loaded().insert(key, Loaded { version: v.clone(), gate });
        Ok(v)
    }

    /// Makes sure `name@version`, already in the store, is loaded and past the
    /// gate (gating it again if it was unloaded), without changing what serves.
    /// A fleet replica calls it for the versions it must be able to swap to at once.
    pub fn prepare(&self, name: &str, version: &str) -> Result<(), AdminError> {
        let _op = self.op();
        self.ensure_loaded(name, version).map(drop)
    }

    /// Whether `name@version` is in the store.
    pub fn contains(&self, name: &str, version: &str) -> bool {
        self.store.contains(name, version)
    }

    /// The store, for a fleet replica's own files (`.fleet/`).
    pub fn store(&self) -> &PluginStore {
        &self.store
    }

    /// Stores an uploaded tar as `name@version` and gates it. On a gate failure
    /// the version is removed again and the error says why.
    pub fn upload(&self, name: &str, version: &str, tar: &[u8]) -> Result<GateRecord, AdminError> {
        let _op = self.op();
        let dir = self.store.install_tar(name, version, tar, self.limits)?;
        tracing::info!(plugin = name, "upload: {name}@{version}: {} bytes unpacked; gating", tar.len());
        match self.gate(name, &dir) {
            Ok((v, gate)) => {
                let record = gate.clone();
                self.loaded().insert((name.into(), version.into()), Loaded { version: Arc::new(v), gate });
                Ok(record)
            }
            Err(reason) => {
                if let Err(e) = self.store.remove(name, version) {
                    tracing::error!("removing {name}@{version} after a failed gate: {e}");
                }
                Err(AdminError::GateFailed { name: name.into(), version: version.into(), reason })
            }
        }
    }

    /// Makes `name@version` live; the version it replaces becomes the newest
    /// rollback target.
    pub fn activate(&self, name: &str, version: &str) -> Result<Swap, AdminError> {
        let _op = self.op();
        self.activate_locked(name, version)
    }

    fn activate_locked(&self, name: &str, version: &str) -> Result<Swap, AdminError> {
        let v = self.ensure_loaded(name, version)?;
        let mut state = self.store.state(name)?;
        let previous = state.live.clone();
        if previous.as_deref() == Some(version) {
            return Ok(Swap { name: name.into(), live: version.into(), previous });
        }
        if let Some(p) = &previous {
            state.history.retain(|h| h != p && h != version);
            state.history.insert(0, p.clone());
        }
        state.history.retain(|h| h != version);
        state.live = Some(version.into());
        self.commit(name, &state, v)?;
        Ok(Swap { name: name.into(), live: version.into(), previous })
    }

    /// Makes the previous version live again. The version rolled back from is
    /// not a rollback target itself (a second rollback goes further back).
    pub fn rollback(&self, name: &str) -> Result<Swap, AdminError> {
        let _op = self.op();
        let mut state = self.store.state(name)?;
        let Some(target) = state.history.first().cloned() else {
            return Err(AdminError::Conflict(format!("{name} has no previous version to roll back to")));
        };
        let v = self.ensure_loaded(name, &target)?;
        let previous = state.live.replace(target.clone());
        state.history.remove(0);
        self.commit(name, &state, v)?;
        Ok(Swap { name: name.into(), live: target, previous })
    }

    /// Persists `state`, swaps `live` in, and unloads versions beyond `keep`.
    fn commit(&self, name: &str, state: &PluginState, live: Arc<PluginVersion>) -> Result<(), AdminError> {
        self.store.set_state(name, state)?;
        if let Some(replaced) = self.registry.insert(live.clone())
            && !Arc::ptr_eq(&replaced, &live)
        {
            replaced.release_idle();
        }
        let keep: Vec<&String> = state.live.iter().chain(state.history.iter().take(self.keep - 1)).collect();
        // Only versions that were live before are unloaded; gated uploads not yet
        // activated stay ready.
        self.loaded().retain(|(n, v), _| n != name || keep.contains(&v) || !state.history.contains(v));
        Ok(())
    }

    /// Removes `name@version` from memory and the store. The live version
    /// cannot be deleted.
    pub fn delete(&self, name: &str, version: &str) -> Result<(), AdminError> {
        let _op = self.op();
        let mut state = self.store.state(name)?;
        if state.live.as_deref() == Some(version) {
            return Err(AdminError::Conflict(format!(
                "{name}@{version} is live; activate another version (or roll back) first"
            )));
        }
        self.store.remove(name, version)?;
        self.loaded().remove(&(name.to_owned(), version.to_owned()));
        if state.history.iter().any(|h| h == version) {
            state.history.retain(|h| h != version);
            self.store.set_state(name, &state)?;
        }
        Ok(())
    }

    /// Every plugin in the store with its versions and their states.
    pub fn list(&self) -> Result<Vec<PluginInfo>, AdminError> {
        let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (n, v) in self.store.versions()? {
            by_name.entry(n).or_default().push(v);
        }
        let loaded = self.loaded();
        let mut out = Vec::new();
        for (name, versions) in by_name {
            let state = self.store.state(&name)?;
            let versions = versions
                .into_iter()
                .map(|v| {
                    let gate = loaded.get(&(name.clone(), v.clone())).map(|l| l.gate.clone());
                    let st = if state.live.as_deref() == Some(v.as_str()) {
                        "live"
                    } else if state.history.contains(&v) {
                        "previous"
                    } else if gate.is_some() {
                        "ready"
                    } else {
                        "stored"
                    };
                    VersionInfo { version: v, state: st, gate }
                })
                .collect();
            let entry = self.registry.entry(&name);
            let canary = entry.as_ref().and_then(|e| e.canary.as_ref()).map(|c| CanaryInfo {
                version: c.version.manifest().version.clone(),
                percent: c.percent,
                key: c.key.to_string(),
            });
            let shadow = entry
                .as_ref()
                .and_then(|e| e.shadow.as_ref())
                .map(|s| ShadowInfo { version: s.version.manifest().version.clone(), stats: s.stats() });
            out.push(PluginInfo { name, live: state.live, versions, canary, shadow });
        }
        Ok(out)
    }
}
