//! The registry: plugin name → what serves it — the live version, and while
//! one runs, a canary and a shadow.
//!
//! A request clones what it needs once and keeps it for the whole call, so
//! replacing a version never waits for (or disturbs) calls in flight; the
//! old version is dropped after its last call. The map itself sits behind an
//! `ArcSwap`, so readers never take a lock.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::serving::traffic::{Canary, Shadow};
use crate::version::plugin::PluginVersion;

/// What serves one plugin name.
#[derive(Clone)]
pub struct Entry {
    /// The version every call goes to unless the canary takes it.
    pub live: Arc<PluginVersion>,
    /// A candidate taking a sticky share of traffic.
    pub canary: Option<Arc<Canary>>,
    /// A candidate run on a copy of live traffic, off the response path.
    pub shadow: Option<Arc<Shadow>>,
}

impl Entry {
    fn live(live: Arc<PluginVersion>) -> Self {
        Self { live, canary: None, shadow: None }
    }
}

/// Something that happened to a plugin's versions, counted per plugin for
/// `/metrics` (`scorehost_plugin_events_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Event {
    /// A version became live in place of another (activate, rollback, canary
    /// promotion, a reload from disk).
    Swap,
    /// A version passed the validation gate: at upload, and each stored
    /// version again when the server starts from its store.
    GatePassed,
    /// A version failed the validation gate and was kept out.
    GateFailed,
}

impl Event {
    /// The label value in `/metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Swap => "swap",
            Event::GatePassed => "gate_passed",
            Event::GateFailed => "gate_failed",
        }
    }
}

/// Name → entry, swapped atomically.
#[derive(Default)]
pub struct Registry {
    map: ArcSwap<BTreeMap<String, Entry>>,
    /// (plugin, event) → count. Events are rare (admin operations), so a lock will do.
    events: Mutex<BTreeMap<(String, Event), u64>>,
}

impl Registry {
    /// A registry serving `versions`, keyed by their manifest name.
    pub fn new(versions: impl IntoIterator<Item = PluginVersion>) -> Self {
        let map =
            versions.into_iter().map(|v| (v.manifest().name.clone(), Entry::live(Arc::new(v)))).collect();
        Self { map: ArcSwap::from_pointee(map), events: Mutex::default() }
    }

    /// Counts one `event` of `plugin`.
    pub fn record(&self, plugin: &str, event: Event) {
        if let Ok(mut events) = self.events.lock() {
            *events.entry((plugin.to_owned(), event)).or_default() += 1;
        }
    }

    /// Every event count so far: plugin, event, count.
    pub fn events(&self) -> Vec<(String, Event, u64)> {
        self.events.lock().map_or_else(
            |_| Vec::new(),
            |events| events.iter().map(|((plugin, event), n)| (plugin.clone(), *event, *n)).collect(),
        )
    }

    /// The live version of `name`, if any.
    pub fn get(&self, name: &str) -> Option<Arc<PluginVersion>> {
        self.map.load().get(name).map(|e| e.live.clone())
    }

    /// Everything serving `name`. Called once per plugin request.
    pub fn entry(&self, name: &str) -> Option<Entry> {
        self.map.load().get(name).cloned()
    }

    /// Every version serving traffic — live, canary and shadow — with its role.
    pub fn serving(&self) -> Vec<(&'static str, Arc<PluginVersion>)> {
        let map = self.map.load();
        let mut out = Vec::new();
        for e in map.values() {
            out.push(("live", e.live.clone()));
            if let Some(c) = &e.canary {
                out.push(("canary", c.version.clone()));
            }
            if let Some(s) = &e.shadow {
                out.push(("shadow", s.version.clone()));
            }
        }
        out
    }

    /// Every live version, by name.
    pub fn all(&self) -> Vec<Arc<PluginVersion>> {
        self.map.load().values().map(|e| e.live.clone()).collect()
    }

    /// Makes `version` the live version of its name; returns the one it
    /// replaced. A canary of that same version ends (it is now live); a
    /// shadow stays.
    pub fn insert(&self, version: impl Into<Arc<PluginVersion>>) -> Option<Arc<PluginVersion>> {
        let version: Arc<PluginVersion> = version.into();
        let name = version.manifest().name.clone();
        let mut old = None;
        self.map.rcu(|map| {
            let mut next = BTreeMap::clone(map);
            let entry = match next.get(&name) {
                Some(e) => {
                    old = Some(e.live.clone());
                    let canary = e.canary.clone().filter(|c| !Arc::ptr_eq(&c.version, &version));
                    Entry { live: version.clone(), canary, shadow: e.shadow.clone() }
                }
                None => {
                    old = None;
                    Entry::live(version.clone())
                }
            };
            next.insert(name.clone(), entry);
            next
        });
        if old.as_ref().is_some_and(|o| !Arc::ptr_eq(o, &version)) {
            self.record(&name, Event::Swap);
        }
        old
    }

    /// Changes the canary or shadow of a live plugin; false if `name` is not live.
    pub fn update(&self, name: &str, change: impl Fn(&mut Entry)) -> bool {
        let mut found = false;
        self.map.rcu(|map| {
            let mut next = BTreeMap::clone(map);
            found = match next.get_mut(name) {
                Some(e) => {
                    change(e);
                    true
                }
                None => false,
            };
            next
        });
        found
    }

    /// Number of live plugins.
    pub fn len(&self) -> usize {
        self.map.load().len()
    }

    /// Whether no plugin is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
