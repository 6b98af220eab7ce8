//! The in-process state store: each plugin's aggregates in this process's
//! memory, with the semantics of [`super::exchange`] and [`super::window`],
//! idempotency keys, and a memory quota per plugin enforced by evicting the
//! least recently used entities (sampled, as Redis does). The default
//! backend, so README's two commands need no Redis; it cannot share counts
//! between replicas (that is the Redis backend's job). Lookup tables are
//! filled by the operator ([`MemStore::put_lookup`], `serve --state-lookups`).
//!
//! The wall clock is passed in (`now_ms`), so tests and replays control it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use indexmap::IndexMap;

use super::claims::Claims;
use super::exchange::{
    AggregateSpec, Answer, Mode, Namespace, Request, Response, StateError, Status, WindowAnswer, check,
    timing,
};
use super::hll::Hll;
use super::tiles::Tiles;
use super::window::tile_of;

/// How many entities one eviction round samples.
const EVICTION_SAMPLE: usize = 16;
/// Bytes an entity costs besides its key, tiles and sketches (map slots, headers).
const ENTITY_OVERHEAD: usize = 96;
/// Bytes one tile costs (index, count, sum, max, tree node share).
const TILE_BYTES: usize = 64;
/// Every plugin's in-process state, and the lookup tables.
#[derive(Default)]
pub struct MemStore {
    spaces: Mutex<HashMap<String, Arc<Mutex<Space>>>>,
    /// Table → entity → field → value.
    lookups: RwLock<HashMap<String, Table>>,
}

/// One offline table: entity → field → value.
type Table = HashMap<String, HashMap<String, String>>;

/// (aggregate, entity): one entity's key within a plugin's space.
type EntityKey = (String, String);

/// One plugin's state.
#[derive(Default)]
struct Space {
    entities: IndexMap<EntityKey, Entity>,
    /// Claimed idempotency keys, forgotten when they expire or, oldest
    /// first, under quota pressure.
    claims: Claims,
    /// Keys forgotten before their time to keep the quota.
    dedupe_evictions: u64,
    /// Bytes the entities hold (estimated); [`Space::bytes`] adds the claims.
    entity_bytes: usize,
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

    fn weigh(&self, key: &EntityKey) -> usize {
        ENTITY_OVERHEAD
            + key.0.len()
            + key.1.len()
            + self.tiles.len() * TILE_BYTES
            + self.sketches.values().map(|h| h.bytes() + TILE_BYTES).sum::<usize>()
    }

    /// Drops every tile and sketch no accepted read at `now` can reach.
    fn prune(&mut self, ns: &Namespace, now_ms: i64) {
        let horizon = |level: i64| now_ms - ns.retention_ms(level);
        self.tiles.prune_by_level(horizon);
        self.sketches.retain(|&(level, tile), _| tile >= tile_of(horizon(level), level));
    }

    /// The windows of `spec` at time `t`.
    fn read(&self, spec: &AggregateSpec, t: i64) -> Vec<WindowAnswer> {
        spec.windows
            .iter()
            .map(|w| {
                let s = self.tiles.read(w, t);
                let distinct = spec.distinct.then(|| {
                    let tiles = w.tiles_at(t);
                    Hll::count_union(
                        self.sketches
                            .range((w.tile_ms, *tiles.start())..=(w.tile_ms, *tiles.end()))
                            .map(|(_, h)| h),
                    )
                });
                WindowAnswer { window: *w, count: s.count, sum: s.sum, max: s.max, distinct }
            })
            .collect()
    }
}

/// The windows of an entity nobody has recorded yet.
fn empty(spec: &AggregateSpec, t: i64) -> Vec<WindowAnswer> {
    Entity::new(spec).read(spec, t)
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
    /// Event ids forgotten before their dedupe horizon to keep within the quota, so far.
    pub dedupe_evictions: u64,
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

    /// Sets `fields` of `entity` in lookup table `table` (what a batch job
    /// writes to Redis as `HSET sh:l:<table>:<entity> field value …`).
    pub fn put_lookup(&self, table: &str, entity: &str, fields: impl IntoIterator<Item = (String, String)>) {
        let mut lookups = self.lookups.write().unwrap_or_else(|p| p.into_inner());
        lookups.entry(table.to_owned()).or_default().entry(entity.to_owned()).or_default().extend(fields);
    }

    /// Runs one exchange of plugin `ns` at wall-clock time `now_ms` (see
    /// [`super::exchange`] for the semantics). The request is checked first;
    /// an exchange whose entities cannot fit the quota even alone fails,
    /// its entities evicted and its event ids released, so a retry counts.
    pub fn exchange(
        &self,
        ns: &Namespace,
        now_ms: i64,
        request: &Request,
        mode: Mode,
    ) -> Result<Response, StateError> {
        check(ns, request)?;
        let space = self.space(&ns.name);
        let mut space = lock(&space);
        let accepted: Vec<bool> =
            request.observe.iter().map(|o| timing(ns, now_ms, o.time_ms).is_none()).collect();
        let keys = request
            .observe
            .iter()
            .zip(&accepted)
            .filter(|(_, ok)| **ok)
            .filter_map(|(o, _)| o.idempotency_key.as_ref());
        let duplicates = space.claim_keys(ns, now_ms, keys, mode);
        let statuses: Vec<Status> = request
            .observe
            .iter()
            .map(|o| match timing(ns, now_ms, o.time_ms) {
                Some(s) => s,
                None if mode == Mode::Peek => Status::Read,
                None if o.idempotency_key.as_ref().is_some_and(|k| duplicates.contains(k)) => {
                    Status::Duplicate
                }
                None => Status::Recorded,
            })
            .collect();
        // Record everything first, then read: every answer sees the whole exchange.
        let mut touched: Vec<EntityKey> = Vec::new();
        if mode == Mode::Record {
            for (o, status) in request.observe.iter().zip(&statuses) {
                let spec = &ns.aggregates[&o.aggregate];
                let key = (o.aggregate.clone(), o.entity.clone());
                if *status != Status::Recorded {
                    continue;
                }
                space.tick += 1;
                let tick = space.tick;
                let entity = space.entities.entry(key.clone()).or_insert_with(|| Entity::new(spec));
                let before = entity.bytes;
                entity.last_used = tick;
                entity.prune(ns, now_ms);
                entity.tiles.ensure(&spec.windows);
                entity.tiles.record(o.time_ms, o.value);
                if let (true, Some(item)) = (spec.distinct, &o.item) {
                    for w in &spec.windows {
                        let tile = tile_of(o.time_ms, w.tile_ms);
                        entity.sketches.entry((w.tile_ms, tile)).or_default().add(item.as_bytes());
                    }
                }
                entity.bytes = entity.weigh(&key);
                let after = entity.bytes;
                space.entity_bytes = space.entity_bytes + after - before;
                if !touched.contains(&key) {
                    touched.push(key);
                }
            }
        }
        let mut response = Response::default();
        for (o, status) in request.observe.iter().zip(&statuses) {
            if matches!(status, Status::Late | Status::Future) {
                response.observed.push(Answer { status: *status, windows: Vec::new() });
                continue;
            }
            let windows = space.read(ns, &o.aggregate, &o.entity, o.time_ms, mode);
            response.observed.push(Answer { status: *status, windows });
        }
        for q in &request.query {
            let answer = match timing(ns, now_ms, q.time_ms) {
                Some(status) => Answer { status, windows: Vec::new() },
                None => Answer {
                    status: Status::Read,
                    windows: space.read(ns, &q.aggregate, &q.entity, q.time_ms, mode),
                },
            };
            response.queried.push(answer);
        }
        drop(space);
        if !request.lookups.is_empty() {
            let tables = self.lookups.read().unwrap_or_else(|p| p.into_inner());
            for l in &request.lookups {
                let row = tables.get(&l.table).and_then(|t| t.get(&l.entity));
                response.lookups.push(l.fields.iter().map(|f| row.and_then(|r| r.get(f)).cloned()).collect());
            }
        }
        if !touched.is_empty() {
            let space = self.space(&ns.name);
            let mut space = lock(&space);
            if let Err(e) = space.evict(ns.quota_bytes, &touched) {
                // Nothing of it is kept: nor are its event ids, so a retry counts.
                let fresh = request.observe.iter().zip(&statuses).filter(|(_, s)| **s == Status::Recorded);
                for key in fresh.filter_map(|(o, _)| o.idempotency_key.as_ref()) {
                    space.claims.release(key);
                }
                return Err(e);
            }
        }
        Ok(response)
    }

    /// What plugin `name`'s state holds now.
    pub fn usage(&self, name: &str) -> Usage {
        let space = self.space(name);
        let space = lock(&space);
        Usage {
            bytes: space.bytes(),
            entities: space.entities.len(),
            evictions: space.evictions,
            dedupe_evictions: space.dedupe_evictions,
        }
    }
}

impl Space {
    /// Reads `aggregate`'s windows for `entity` at `t`; a read in
    /// [`Mode::Record`] counts as a use for eviction.
    fn read(
        &mut self,
        ns: &Namespace,
        aggregate: &str,
        entity: &str,
        t: i64,
        mode: Mode,
    ) -> Vec<WindowAnswer> {
        let spec = &ns.aggregates[aggregate];
        let key = (aggregate.to_owned(), entity.to_owned());
        self.tick += 1;
        let tick = self.tick;
        match self.entities.get_mut(&key) {
            Some(e) => {
                if mode == Mode::Record {
                    e.last_used = tick;
                }
                e.read(spec, t)
            }
            None => empty(spec, t),
        }
    }

    /// Claims this exchange's idempotency `keys` (in [`Mode::Peek`], only
    /// looks); returns those already claimed within the dedupe horizon:
    /// their observations are duplicates.
    fn claim_keys<'a>(
        &mut self,
        ns: &Namespace,
        now_ms: i64,
        keys: impl Iterator<Item = &'a String>,
        mode: Mode,
    ) -> Vec<String> {
        let mut duplicates = Vec::new();
        let mut fresh: Vec<&String> = Vec::new();
        for key in keys {
            if duplicates.contains(key) || fresh.contains(&key) {
                continue;
            }
            if self.claims.holds(key, now_ms) {
                duplicates.push(key.clone());
            } else {
                fresh.push(key);
            }
        }
        if mode == Mode::Peek {
            return duplicates;
        }
        for key in fresh {
            self.claims.claim(key, now_ms + ns.dedupe_ms);
        }
        self.claims.expire(now_ms);
        duplicates
    }

    /// Bytes held (estimated): the entities and the remembered keys.
    fn bytes(&self) -> usize {
        self.entity_bytes + self.claims.bytes()
    }

    /// Evicts the least recently used of a sample of entities until the
    /// space is within `quota`, never one of `current` (the exchange's own)
    /// while another remains; if only those remain, they go too and the
    /// exchange fails as over quota.
    /// Remembered event ids may take a quarter of the quota; past it the
    /// oldest are forgotten early (counted in [`Usage::dedupe_evictions`]).
    fn evict(&mut self, quota: usize, current: &[EntityKey]) -> Result<(), StateError> {
        while self.bytes() > quota && self.claims.bytes() > quota / 4 {
            if self.claims.forget_oldest() {
                self.dedupe_evictions += 1;
            }
        }
        while self.bytes() > quota {
            if self.entities.keys().all(|k| current.contains(k)) {
                for key in current {
                    if let Some(e) = self.entities.shift_remove(key) {
                        self.entity_bytes -= e.bytes;
                        self.evictions += 1;
                    }
                }
                return Err(StateError::OverQuota(format!(
                    "the plugin's in-process state quota of {quota} bytes cannot hold this exchange's entities \
                     ([state] memory_mib)"
                )));
            }
            let mut victim: Option<(usize, u64)> = None;
            for _ in 0..EVICTION_SAMPLE.min(self.entities.len()) {
                let i = fastrand::usize(..self.entities.len());
                let (key, e) = self.entities.get_index(i).expect("in range");
                if !current.contains(key) && victim.is_none_or(|(_, t)| e.last_used < t) {
                    victim = Some((i, e.last_used));
                }
            }
            let Some((i, _)) = victim else { continue };
            let (_, e) = self.entities.swap_remove_index(i).expect("in range");
            self.entity_bytes -= e.bytes;
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
    use crate::state::exchange::Observation;
    use crate::state::window::{MINUTE_MS, Window};
    use proptest::prelude::*;

    /// Records `observations` in one exchange; their answers.
    fn observe(
        store: &MemStore,
        ns: &Namespace,
        now: i64,
        observations: &[Observation],
    ) -> Result<Vec<Answer>, StateError> {
        let request = Request { observe: observations.to_vec(), ..Request::default() };
        store.exchange(ns, now, &request, Mode::Record).map(|r| r.observed)
    }

    const NOW: i64 = 1_796_214_896_000;

    fn ns(quota: usize) -> Namespace {
        let windows = |ws: &[&str]| ws.iter().map(|w| Window::parse(w).unwrap()).collect::<Vec<_>>();
        Namespace {
            name: "velocity".into(),
            aggregates: BTreeMap::from([
                ("card".into(), AggregateSpec { windows: windows(&["10m", "1h", "24h"]), distinct: false }),
                ("email_cards".into(), AggregateSpec { windows: windows(&["24h"]), distinct: true }),
            ]),
            lookups: vec!["card_stats".into()],
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
                let answers = observe(&store, &space, NOW, &[card, email]).unwrap();
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
        let first = observe(&store, &space, NOW, std::slice::from_ref(&o)).unwrap();
        let retry = observe(&store, &space, NOW + 1000, std::slice::from_ref(&o)).unwrap();
        assert_eq!((first[0].status, retry[0].status), (Status::Recorded, Status::Duplicate));
        assert_eq!(retry[0].windows[0].count, 1, "read, not counted again");
        assert_eq!(retry[0].windows, first[0].windows);
        let later = observe(&store, &space, NOW + 16 * MINUTE_MS, std::slice::from_ref(&o)).unwrap();
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
        let a = observe(&store, &space, NOW, &[late, future]).unwrap();
        assert_eq!((a[0].status, a[1].status), (Status::Late, Status::Future));
        assert!(a[0].windows.is_empty() && a[1].windows.is_empty());
        assert_eq!(store.usage("velocity").entities, 0);
        let e = observe(&store, &space, NOW, &[obs("nope", "x", NOW, 1)]).unwrap_err();
        assert!(matches!(&e, StateError::Denied(m) if m.contains("`nope`")), "{e}");
        let e = observe(&store, &space, NOW, &[obs("email_cards", "x", NOW, 1)]).unwrap_err();
        assert!(e.to_string().contains("needs an item"), "{e}");
        let e = observe(&store, &space, NOW, &[obs("card", "x", NOW, 1 << 41)]).unwrap_err();
        assert!(e.to_string().contains("2^40"), "{e}");
    }

    #[test]
    fn the_quota_holds_by_evicting_the_least_recently_used() {
        let store = MemStore::new();
        let quota = 64 << 10;
        let space = ns(quota);
        // A hot entity, touched between every cold one.
        for i in 0..5000 {
            observe(&store, &space, NOW, &[obs("card", &format!("cold-{i}"), NOW, 1)]).unwrap();
            observe(&store, &space, NOW, &[obs("card", "hot", NOW, 1)]).unwrap();
            assert!(store.usage("velocity").bytes <= quota);
        }
        let usage = store.usage("velocity");
        assert!(usage.evictions > 4000 && usage.entities < 1000, "{usage:?}");
        let hot = observe(&store, &space, NOW, &[obs("card", "hot", NOW, 1)]).unwrap();
        assert_eq!(hot[0].windows[0].count, 5001, "the hot entity was never evicted");
        let first = observe(&store, &space, NOW, &[obs("card", "cold-0", NOW, 1)]).unwrap();
        assert_eq!(first[0].windows[0].count, 1, "the first cold entity was evicted long ago");
        // Another plugin's state is its own.
        let mut other = ns(quota);
        other.name = "other".into();
        let o = observe(&store, &other, NOW, &[obs("card", "hot", NOW, 1)]).unwrap();
        assert_eq!(o[0].windows[0].count, 1);
    }
}

#[cfg(test)]
mod exchange_tests {
    use super::*;
    use crate::state::exchange::Observation;
    use crate::state::exchange::{Lookup, Query};
    use crate::state::window::{MINUTE_MS, Window};

    const NOW: i64 = 1_796_214_896_000;

    fn ns() -> Namespace {
        let windows = |ws: &[&str]| ws.iter().map(|w| Window::parse(w).unwrap()).collect::<Vec<_>>();
        Namespace {
            name: "velocity".into(),
            aggregates: BTreeMap::from([
                ("card".into(), AggregateSpec { windows: windows(&["10m", "24h"]), distinct: false }),
                ("email_cards".into(), AggregateSpec { windows: windows(&["24h"]), distinct: true }),
            ]),
            lookups: vec!["card_stats".into()],
            max_late_ms: 1440 * MINUTE_MS,
            max_future_ms: 5 * MINUTE_MS,
            dedupe_ms: 15 * MINUTE_MS,
            quota_bytes: 1 << 20,
        }
    }

    fn event(i: usize, t: i64) -> Request {
        Request {
            observe: vec![
                Observation {
                    aggregate: "card".into(),
                    entity: format!("card-{}", i % 3),
                    time_ms: t,
                    value: 100 + i as i64,
                    item: None,
                    idempotency_key: Some(format!("evt-{i}")),
                },
                Observation {
                    aggregate: "email_cards".into(),
                    entity: "a@example.com".into(),
                    time_ms: t,
                    value: 0,
                    item: Some(format!("card-{}", i % 3)),
                    idempotency_key: Some(format!("evt-{i}")),
                },
            ],
            ..Request::default()
        }
    }

    #[test]
    fn a_peek_reads_the_state_as_recording_left_it_and_writes_nothing() {
        let store = MemStore::new();
        for i in 0..20 {
            store.exchange(&ns(), NOW, &event(i, NOW - (20 - i as i64) * MINUTE_MS), Mode::Record).unwrap();
        }
        let recorded = store.exchange(&ns(), NOW, &event(20, NOW), Mode::Record).unwrap();
        let before = store.usage("velocity");
        // A shadow copy of the same event, after the live call: the same
        // windows, status `read`, nothing claimed or written.
        let peeked = store.exchange(&ns(), NOW, &event(20, NOW), Mode::Peek).unwrap();
        assert_eq!(peeked.observed[0].status, Status::Read);
        for (p, r) in peeked.observed.iter().zip(&recorded.observed) {
            assert_eq!(p.windows, r.windows);
        }
        // A new event peeked: not counted, and still not counted after.
        let new = store.exchange(&ns(), NOW, &event(23, NOW), Mode::Peek).unwrap(); // the same card
        assert_eq!(new.observed[0].windows, peeked.observed[0].windows);
        assert_eq!(store.usage("velocity"), before);
        let live = store.exchange(&ns(), NOW, &event(23, NOW), Mode::Record).unwrap();
        assert_eq!(live.observed[0].status, Status::Recorded, "the peek claimed nothing");
    }

    #[test]
    fn a_later_version_with_more_windows_records_into_its_new_levels() {
        let store = MemStore::new();
        let mut v1 = ns();
        v1.aggregates.get_mut("card").unwrap().windows.truncate(1); // 10m only
        store.exchange(&v1, NOW, &event(0, NOW), Mode::Record).unwrap();
        let v2 = ns(); // 10m and 24h
        let a = store.exchange(&v2, NOW, &event(3, NOW), Mode::Record).unwrap();
        assert_eq!(a.observed[0].windows[0].count, 2, "10m: both versions' events");
        assert_eq!(a.observed[0].windows[1].count, 1, "24h: from v2 on, as on Redis");
    }

    #[test]
    fn an_exchange_over_quota_keeps_nothing_not_even_its_event_ids() {
        let store = MemStore::new();
        let mut tiny = ns();
        tiny.quota_bytes = 100;
        let e = store.exchange(&tiny, NOW, &event(0, NOW), Mode::Record).unwrap_err();
        assert!(matches!(&e, StateError::OverQuota(m) if m.contains("memory_mib")), "{e}");
        let again = store.exchange(&ns(), NOW, &event(0, NOW), Mode::Record).unwrap();
        assert_eq!(again.observed[0].status, Status::Recorded, "the retry counts");
    }

    #[test]
    fn queries_read_lookups_answer_and_grants_hold() {
        let store = MemStore::new();
        store.exchange(&ns(), NOW, &event(0, NOW - 1000), Mode::Record).unwrap();
        store.put_lookup("card_stats", "card-0", [("chargeback_rate".into(), "0.012".into())]);
        let request = Request {
            query: vec![
                Query { aggregate: "card".into(), entity: "card-0".into(), time_ms: NOW },
                Query { aggregate: "card".into(), entity: "card-0".into(), time_ms: NOW - 1441 * MINUTE_MS },
            ],
            lookups: vec![Lookup {
                table: "card_stats".into(),
                entity: "card-0".into(),
                fields: vec!["chargeback_rate".into(), "txn_90d".into()],
            }],
            ..Request::default()
        };
        let r = store.exchange(&ns(), NOW, &request, Mode::Record).unwrap();
        assert_eq!((r.queried[0].status, r.queried[0].windows[0].count), (Status::Read, 1));
        assert_eq!((r.queried[1].status, r.queried[1].windows.len()), (Status::Late, 0));
        assert_eq!(r.lookups, vec![vec![Some("0.012".to_owned()), None]]);
        let mut other = request.clone();
        other.lookups[0].table = "device_stats".into();
        let e = store.exchange(&ns(), NOW, &other, Mode::Record).unwrap_err();
        assert!(matches!(&e, StateError::Denied(m) if m.contains("`device_stats`")), "{e}");
        let too_many = Request { query: vec![request.query[0].clone(); 17], ..Request::default() };
        let e = store.exchange(&ns(), NOW, &too_many, Mode::Record).unwrap_err();
        assert!(matches!(&e, StateError::OverQuota(m) if m.contains("17 queries")), "{e}");
        // Another plugin's namespace is its own: the same names read nothing.
        let mut stranger = ns();
        stranger.name = "stranger".into();
        let r = store.exchange(&stranger, NOW, &request, Mode::Record).unwrap();
        assert_eq!(r.queried[0].windows[0].count, 0);
    }

    #[test]
    fn two_observations_of_one_exchange_on_one_entity_both_see_both() {
        let store = MemStore::new();
        let mut r = event(0, NOW);
        r.observe[1] = r.observe[0].clone();
        r.observe[1].idempotency_key = None;
        let a = store.exchange(&ns(), NOW, &r, Mode::Record).unwrap();
        assert_eq!(a.observed[0].windows, a.observed[1].windows);
        assert_eq!(a.observed[0].windows[0].count, 2);
    }

    #[test]
    fn remembered_event_ids_take_at_most_a_quarter_of_the_quota_oldest_first() {
        let store = MemStore::new();
        let mut space = ns();
        space.quota_bytes = 64 << 10;
        for i in 0..10_000 {
            store.exchange(&space, NOW, &event(i, NOW), Mode::Record).unwrap();
            assert!(store.usage("velocity").bytes <= space.quota_bytes);
        }
        let usage = store.usage("velocity");
        assert!(usage.dedupe_evictions > 9000 && usage.entities == 4, "{usage:?}");
        // The newest ids are still remembered; the first was forgotten early.
        let retry = store.exchange(&space, NOW, &event(9_999, NOW), Mode::Record).unwrap();
        assert_eq!(retry.observed[0].status, Status::Duplicate);
        let old = store.exchange(&space, NOW, &event(0, NOW), Mode::Record).unwrap();
        assert_eq!(old.observed[0].status, Status::Recorded);
        // Expired claims go without pressure: an hour later the map is empty again.
        let later = NOW + 60 * MINUTE_MS;
        store.exchange(&space, later, &event(10_001, later), Mode::Record).unwrap();
        assert!(store.usage("velocity").bytes < usage.bytes / 2, "{:?}", store.usage("velocity"));
    }
}
