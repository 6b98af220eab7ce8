//! The registry: plugin name → the live version.
//!
//! A request clones the version's `Arc` once and keeps it for the whole call,
//! so replacing a version never waits for (or disturbs) calls in flight; the
//! old version is dropped after its last call. The map itself sits behind an
//! `ArcSwap`, so readers never take a lock.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::plugin::PluginVersion;

/// Name → live version, swapped atomically.
#[derive(Default)]
pub struct Registry {
    live: ArcSwap<BTreeMap<String, Arc<PluginVersion>>>,
}

impl Registry {
    /// A registry serving `versions`, keyed by their manifest name.
    pub fn new(versions: impl IntoIterator<Item = PluginVersion>) -> Self {
        let map = versions.into_iter().map(|v| (v.manifest().name.clone(), Arc::new(v))).collect();
        Self { live: ArcSwap::from_pointee(map) }
    }

    /// The live version of `name`, if any. Called once per request.
    pub fn get(&self, name: &str) -> Option<Arc<PluginVersion>> {
        self.live.load().get(name).cloned()
    }

    /// Every live version, by name.
    pub fn all(&self) -> Vec<Arc<PluginVersion>> {
        self.live.load().values().cloned().collect()
    }

    /// Makes `version` the live version of its name; returns the one it replaced.
    pub fn insert(&self, version: impl Into<Arc<PluginVersion>>) -> Option<Arc<PluginVersion>> {
        let version: Arc<PluginVersion> = version.into();
        let name = version.manifest().name.clone();
        let mut old = None;
        self.live.rcu(|map| {
            let mut next = BTreeMap::clone(map);
            old = next.insert(name.clone(), version.clone());
            next
        });
        old
    }

    /// Number of live plugins.
    pub fn len(&self) -> usize {
        self.live.load().len()
    }

    /// Whether no plugin is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
