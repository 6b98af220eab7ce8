//! The in-process state store: each plugin's aggregates in this process's
//! memory, with the exact semantics of [`super::window`], idempotency keys,
//! late and future events refused, and a memory quota per plugin enforced by
//! evicting the least recently used entities (sampled, as Redis does). The
//! default backend, so README's two commands need no Redis; it cannot share
//! counts between replicas (that is the Redis backend's job).
//!
//! The wall clock is passed in (`now_ms`), so tests and replays control it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use indexmap::IndexMap;

use super::hll::Hll;
use super::tiles::Tiles;
use super::window::{Window, tile_of};

/// How many entities one eviction round samples.
const EVICTION_SAMPLE: usize = 16;
/// Bytes an entity costs besides its key, tiles and sketches (map slots, headers).
const ENTITY_OVERHEAD: usize = 96;
/// Bytes one tile costs (index, count, sum, max, tree node share).
const TILE_BYTES: usize = 64;
/// Bytes one remembered idempotency key costs besides the key.
const DEDUPE_OVERHEAD: usize = 48;

/// One aggregate a plugin declared: the windows it reads and whether it counts distinct items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateSpec {
    /// The windows, in the order answers list them.
    pub windows: Vec<Window>,
    /// Whether observations carry an item whose distinct count is kept.
    pub distinct: bool,
}

/// A plugin's state: its aggregates and the rules for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// The plugin's name: nobody else's observations land here.
    pub name: String,
    /// Aggregate name → its spec.
    pub aggregates: BTreeMap<String, AggregateSpec>,
    /// Observations older than `now − max_late` are `Late`.
    pub max_late_ms: i64,
    /// Observations newer than `now + max_future` are `Future`.
    pub max_future_ms: i64,
    /// How long an idempotency key is remembered.
    pub dedupe_ms: i64,
    /// Most bytes this plugin's state may hold.
    pub quota_bytes: usize,
}

impl Namespace {
    /// The oldest time an accepted read can reach, at `now`: `now − max_late − (W + T)` for the longest window.
    fn horizon(&self, now_ms: i64) -> i64 {
        let reach = self.aggregates.values().flat_map(|a| &a.windows).map(|w| w.length_ms + w.tile_ms).max();
        now_ms - self.max_late_ms - reach.unwrap_or(0)
    }
}

/// One observation of a call: an event of `entity` at `time_ms` worth `value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// The aggregate it counts in.
    pub aggregate: String,
    /// The entity (a card number's hash, an e-mail, a device id).
    pub entity: String,
    /// The event's own time, ms since the Unix epoch: the windows' reference time.
    pub time_ms: i64,
    /// What it adds to `sum` and offers to `max`.
    pub value: i64,
    /// For a distinct aggregate, the item counted (a card, for an e-mail's distinct cards).
    pub item: Option<String>,
    /// The event's id: a retried request with the same id counts once.
    pub idempotency_key: Option<String>,
}

/// What happened to an observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Counted, then read.
    Recorded,
    /// Its idempotency key was seen within the dedupe horizon: read, not counted again.
    Duplicate,
    /// Older than `max_late`: neither counted nor read.
    Late,
    /// Further ahead than `max_future`: neither counted nor read.
    Future,
}

/// One window of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowAnswer {
    /// The window.
    pub window: Window,
    /// Observations in it.
    pub count: u64,
    /// Sum of their values.
    pub sum: i128,
    /// The largest value; `None` when empty.
    pub max: Option<i64>,
    /// Distinct items (HyperLogLog estimate), for a distinct aggregate.
    pub distinct: Option<u64>,
}

/// The answer to one observation: its status and, unless late or future, its windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// What happened to it.
    pub status: Status,
    /// One per declared window, in order; empty when late or future.
    pub windows: Vec<WindowAnswer>,
}

/// Why an exchange was refused. Nothing of it was recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The plugin did not declare the aggregate.
    #[error("aggregate `{0}` is not declared in the plugin's [state] table")]
    UnknownAggregate(String),
    /// The observation breaks a rule (no item for a distinct aggregate, a value out of range).
    #[error("{0}")]
    Invalid(String),
    /// The plugin's state cannot fit its quota even after evicting everything else.
    #[error("the plugin's state quota of {quota} bytes cannot hold this observation's entity")]
    OverQuota {
        /// The quota.
        quota: usize,
    },
}

/// The largest |value| accepted: sums stay exact in any store (Redis keeps
/// them as 64-bit integers; 2^23 observations of 2^40 cannot overflow).
pub const MAX_ABS_VALUE: i64 = 1 << 40;

/// Every plugin's in-process state.
#[derive(Default)]
pub struct MemStore {
    spaces: Mutex<HashMap<String, Arc<Mutex<Space>>>>,
}

/// One plugin's state.
#[derive(Default)]
struct Space {
    entities: IndexMap<(String, String), Entity>,
    dedupe: HashMap<String, i64>,
    dedupe_prune_at: usize,
    bytes: usize,
    tick: u64,
    evictions: u64,
}

struct Entity {
    tiles: Tiles,
    /// (level, tile) → distinct items seen in it.
    sketches: BTreeMap<(i64, i64), Hll>,
    last_used: u64,
    bytes: usize,
}

impl Entity {
    fn new(spec: &AggregateSpec) -> Self {
        Self { tiles: Tiles::new(&spec.windows), sketches: BTreeMap::new(), last_used: 0, bytes: 0 }
    }

    fn weigh(&self, key: &(String, String)) -> usize {
        ENTITY_OVERHEAD
            + key.0.len()
            + key.1.len()
            + self.tiles.len() * TILE_BYTES
            + self.sketches.values().map(|h| h.bytes() + TILE_BYTES).sum::<usize>()
    }

    fn prune(&mut self, horizon: i64) {
        self.tiles.prune(horizon);
        self.sketches.retain(|&(level, tile), _| tile >= tile_of(horizon, level));
    }
}

/// Usage figures for one plugin's state, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes held (estimated).
    pub bytes: usize,
    /// Entities held.
    pub entities: usize,
    /// Entities evicted to keep within the quota, so far.
    pub evictions: u64,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn space(&self, name: &str) -> Arc<Mutex<Space>> {
        let mut spaces = self.spaces.lock().unwrap_or_else(|p| p.into_inner());
        spaces.entry(name.to_owned()).or_default().clone()
    }

    /// Records and reads `observations` of plugin `ns` at wall-clock time
    /// `now_ms`: one answer per observation, in order. Every observation is
    /// validated before any is recorded; an entity that cannot fit the quota
    /// even alone fails the exchange at that observation (those before it
    /// stay recorded, as they would in Redis).
    pub fn observe(
        &self,
        ns: &Namespace,
        now_ms: i64,
        observations: &[Observation],
    ) -> Result<Vec<Answer>, StateError> {
        for o in observations {
            let spec = ns
                .aggregates
                .get(&o.aggregate)
                .ok_or_else(|| StateError::UnknownAggregate(o.aggregate.clone()))?;
            if spec.distinct && o.item.is_none() {
                return Err(StateError::Invalid(format!(
                    "aggregate `{}` counts distinct items: the observation needs an item",
                    o.aggregate
                )));
            }
            if o.value.unsigned_abs() >= MAX_ABS_VALUE as u64 {
                return Err(StateError::Invalid(format!(
                    "value {} is out of range: |value| must be below 2^40 (amounts in cents fit)",
                    o.value
                )));
            }
        }
        let space = self.space(&ns.name);
        let mut space = lock(&space);
        let duplicates = space.claim_keys(ns, now_ms, observations);
        let horizon = ns.horizon(now_ms);
        let mut answers = Vec::with_capacity(observations.len());
        for o in observations {
            let status = if o.time_ms < now_ms - ns.max_late_ms {
                Status::Late
            } else if o.time_ms > now_ms + ns.max_future_ms {
                Status::Future
            } else if o.idempotency_key.as_ref().is_some_and(|k| duplicates.contains(k)) {
                Status::Duplicate
            } else {
                Status::Recorded
            };
            if matches!(status, Status::Late | Status::Future) {
                answers.push(Answer { status, windows: Vec::new() });
                continue;
            }
            let spec = &ns.aggregates[&o.aggregate];
            let key = (o.aggregate.clone(), o.entity.clone());
            space.tick += 1;
            let tick = space.tick;
            let entity = space.entities.entry(key.clone()).or_insert_with(|| Entity::new(spec));
            let before = entity.bytes;
            entity.last_used = tick;
            entity.prune(horizon);
            if status == Status::Recorded {
                entity.tiles.record(o.time_ms, o.value);
                if let (true, Some(item)) = (spec.distinct, &o.item) {
                    for w in &spec.windows {
                        let tile = tile_of(o.time_ms, w.tile_ms);
                        entity.sketches.entry((w.tile_ms, tile)).or_default().add(item.as_bytes());
                    }
                }
            }
            let windows = spec
                .windows
                .iter()
                .map(|w| {
                    let s = entity.tiles.read(w, o.time_ms);
                    let distinct = spec.distinct.then(|| {
                        let tiles = w.tiles_at(o.time_ms);
                        Hll::count_union(
                            entity
                                .sketches
                                .range((w.tile_ms, *tiles.start())..=(w.tile_ms, *tiles.end()))
                                .map(|(_, h)| h),
                        )
                    });
                    WindowAnswer { window: *w, count: s.count, sum: s.sum, max: s.max, distinct }
                })
                .collect();
            entity.bytes = entity.weigh(&key);
            let after = entity.bytes;
            space.bytes = space.bytes + after - before;
            space.evict(ns.quota_bytes, &key)?;
            answers.push(Answer { status, windows });
        }
        Ok(answers)
    }

    /// What plugin `name`'s state holds now.
    pub fn usage(&self, name: &str) -> Usage {
        let space = self.space(name);
        let space = lock(&space);
        Usage { bytes: space.bytes, entities: space.entities.len(), evictions: space.evictions }
    }
}

impl Space {
    /// Remembers this exchange's idempotency keys; returns those already
    /// remembered (within the dedupe horizon): their observations are duplicates.
    fn claim_keys(&mut self, ns: &Namespace, now_ms: i64, observations: &[Observation]) -> Vec<String> {
        let mut duplicates = Vec::new();
        let mut fresh: Vec<&String> = Vec::new();
        for key in observations.iter().filter_map(|o| o.idempotency_key.as_ref()) {
            if duplicates.contains(key) || fresh.contains(&key) {
                continue;
            }
            match self.dedupe.get(key) {
                Some(&until) if until > now_ms => duplicates.push(key.clone()),
                _ => fresh.push(key),
            }
        }
        for key in fresh {
            if self.dedupe.insert(key.clone(), now_ms + ns.dedupe_ms).is_none() {
                self.bytes += key.len() + DEDUPE_OVERHEAD;
            }
        }
        // Expired keys go in a sweep whenever the map has doubled since the last one.
        if self.dedupe.len() > self.dedupe_prune_at.max(1024) {
            let before: usize = self.dedupe.keys().map(|k| k.len() + DEDUPE_OVERHEAD).sum();
            self.dedupe.retain(|_, until| *until > now_ms);
            let after: usize = self.dedupe.keys().map(|k| k.len() + DEDUPE_OVERHEAD).sum();
            self.bytes -= before - after;
            self.dedupe_prune_at = self.dedupe.len() * 2;
        }
        duplicates
    }

    /// Evicts the least recently used of a sample of entities until the
    /// space is within `quota`, never `current` while another remains.
    fn evict(&mut self, quota: usize, current: &(String, String)) -> Result<(), StateError> {
        while self.bytes > quota {
            let others = self.entities.len().saturating_sub(1);
            if others == 0 {
                let gone = self.entities.shift_remove(current).map_or(0, |e| e.bytes);
                self.bytes -= gone;
                self.evictions += 1;
                return Err(StateError::OverQuota { quota });
            }
            let mut victim: Option<(usize, u64)> = None;
            for _ in 0..EVICTION_SAMPLE.min(self.entities.len()) {
                let i = fastrand::usize(..self.entities.len());
                let (key, e) = self.entities.get_index(i).expect("in range");
                if key != current && victim.is_none_or(|(_, t)| e.last_used < t) {
                    victim = Some((i, e.last_used));
                }
            }
            let Some((i, _)) = victim else { continue };
            let (_, e) = self.entities.swap_remove_index(i).expect("in range");
            self.bytes -= e.bytes;
            self.evictions += 1;
        }
        Ok(())
    }
}

fn lock(space: &Mutex<Space>) -> MutexGuard<'_, Space> {
    space.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::window::MINUTE_MS;
    use proptest::prelude::*;

    const NOW: i64 = 1_796_214_896_000;

    fn ns(quota: usize) -> Namespace {
        let windows = |ws: &[&str]| ws.iter().map(|w| Window::parse(w).unwrap()).collect::<Vec<_>>();
        Namespace {
            name: "velocity".into(),
            aggregates: BTreeMap::from([
                ("card".into(), AggregateSpec { windows: windows(&["10m", "1h", "24h"]), distinct: false }),
                ("email_cards".into(), AggregateSpec { windows: windows(&["24h"]), distinct: true }),
            ]),
            max_late_ms: 1440 * MINUTE_MS,
            max_future_ms: 5 * MINUTE_MS,
            dedupe_ms: 15 * MINUTE_MS,
            quota_bytes: quota,
        }
    }

    fn obs(aggregate: &str, entity: &str, time_ms: i64, value: i64) -> Observation {
        Observation {
            aggregate: aggregate.into(),
            entity: entity.into(),
            time_ms,
            value,
            item: None,
            idempotency_key: None,
        }
    }

    proptest! {
        /// Every answer equals a recomputation from every observation
        /// recorded before it (and itself), under the window definition.
        #[test]
        fn answers_equal_an_exact_recomputation(
            events in prop::collection::vec((0usize..3, -(1440 * MINUTE_MS)..(5 * MINUTE_MS), 0i64..100_000, 0usize..5), 1..150),
        ) {
            let store = MemStore::new();
            let space = ns(64 << 20);
            let mut seen: Vec<(usize, i64, i64, usize)> = Vec::new();
            for &(entity, offset, value, item) in &events {
                let t = NOW + offset;
                let mut card = obs("card", &format!("c{entity}"), t, value);
                card.idempotency_key = None;
                let mut email = obs("email_cards", &format!("e{entity}"), t, 0);
                email.item = Some(format!("card{item}"));
                let answers = store.observe(&space, NOW, &[card, email]).unwrap();
                seen.push((entity, t, value, item));
                for (w, got) in space.aggregates["card"].windows.iter().zip(&answers[0].windows) {
                    let tiles = w.tiles_at(t);
                    let hits: Vec<i64> = seen.iter()
                        .filter(|(e, te, _, _)| *e == entity && tiles.contains(&tile_of(*te, w.tile_ms)))
                        .map(|(_, _, v, _)| *v).collect();
                    prop_assert_eq!(got.count, hits.len() as u64);
                    prop_assert_eq!(got.sum, hits.iter().map(|&v| i128::from(v)).sum::<i128>());
                    prop_assert_eq!(got.max, hits.iter().copied().max());
                }
                let w = &space.aggregates["email_cards"].windows[0];
                let tiles = w.tiles_at(t);
                let mut items: Vec<usize> = seen.iter()
                    .filter(|(e, te, _, _)| *e == entity && tiles.contains(&tile_of(*te, w.tile_ms)))
                    .map(|(_, _, _, i)| *i).collect();
                items.sort_unstable();
                items.dedup();
                // Five items at most: HyperLogLog is exact at this size.
                prop_assert_eq!(answers[1].windows[0].distinct, Some(items.len() as u64));
            }
        }
    }

    #[test]
    fn a_retried_event_counts_once_until_its_key_is_forgotten() {
        let store = MemStore::new();
        let space = ns(1 << 20);
        let mut o = obs("card", "c1", NOW, 1250);
        o.idempotency_key = Some("evt-1".into());
        let first = store.observe(&space, NOW, std::slice::from_ref(&o)).unwrap();
        let retry = store.observe(&space, NOW + 1000, std::slice::from_ref(&o)).unwrap();
        assert_eq!((first[0].status, retry[0].status), (Status::Recorded, Status::Duplicate));
        assert_eq!(retry[0].windows[0].count, 1, "read, not counted again");
        assert_eq!(retry[0].windows, first[0].windows);
        let later = store.observe(&space, NOW + 16 * MINUTE_MS, std::slice::from_ref(&o)).unwrap();
        assert_eq!(
            (later[0].status, later[0].windows[2].count),
            (Status::Recorded, 2),
            "past the dedupe horizon"
        );
    }

    #[test]
    fn late_and_future_events_are_neither_counted_nor_read() {
        let store = MemStore::new();
        let space = ns(1 << 20);
        let late = obs("card", "c1", NOW - 1441 * MINUTE_MS, 5);
        let future = obs("card", "c1", NOW + 6 * MINUTE_MS, 5);
        let a = store.observe(&space, NOW, &[late, future]).unwrap();
        assert_eq!((a[0].status, a[1].status), (Status::Late, Status::Future));
        assert!(a[0].windows.is_empty() && a[1].windows.is_empty());
        assert_eq!(store.usage("velocity").entities, 0);
        let e = store.observe(&space, NOW, &[obs("nope", "x", NOW, 1)]).unwrap_err();
        assert_eq!(e, StateError::UnknownAggregate("nope".into()));
        let e = store.observe(&space, NOW, &[obs("email_cards", "x", NOW, 1)]).unwrap_err();
        assert!(e.to_string().contains("needs an item"), "{e}");
        let e = store.observe(&space, NOW, &[obs("card", "x", NOW, 1 << 41)]).unwrap_err();
        assert!(e.to_string().contains("2^40"), "{e}");
    }

    #[test]
    fn the_quota_holds_by_evicting_the_least_recently_used() {
        let store = MemStore::new();
        let quota = 64 << 10;
        let space = ns(quota);
        // A hot entity, touched between every cold one.
        for i in 0..5000 {
            store.observe(&space, NOW, &[obs("card", &format!("cold-{i}"), NOW, 1)]).unwrap();
            store.observe(&space, NOW, &[obs("card", "hot", NOW, 1)]).unwrap();
            assert!(store.usage("velocity").bytes <= quota);
        }
        let usage = store.usage("velocity");
        assert!(usage.evictions > 4000 && usage.entities < 1000, "{usage:?}");
        let hot = store.observe(&space, NOW, &[obs("card", "hot", NOW, 1)]).unwrap();
        assert_eq!(hot[0].windows[0].count, 5001, "the hot entity was never evicted");
        let first = store.observe(&space, NOW, &[obs("card", "cold-0", NOW, 1)]).unwrap();
        assert_eq!(first[0].windows[0].count, 1, "the first cold entity was evicted long ago");
        // Another plugin's state is its own.
        let mut other = ns(quota);
        other.name = "other".into();
        let o = store.observe(&other, NOW, &[obs("card", "hot", NOW, 1)]).unwrap();
        assert_eq!(o[0].windows[0].count, 1);
    }
}
