//! The idempotency keys (event ids) the in-process store remembers, each
//! until its dedupe horizon, so a retried event counts once. Used by
//! [`super::memory`] under a plugin space's lock, once per exchange.
//!
//! A busy plugin remembers hundreds of thousands of keys. One big hash map
//! would stop the calls now and then to rehash all of them when it grows
//! (a 40 ms pause at 115,000 keys was measured in a debug build; the calls
//! have a 50 ms deadline), so the keys are spread over [`SHARDS`] small maps,
//! each growing on its own, and each key is held as a 128-bit keyed hash
//! (SipHash under two random keys of this process) rather than as its text:
//! fixed size, and no client can pick event ids that collide.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};

/// How many maps the keys are spread over: a growing map rehashes at most
/// 1/`SHARDS` of the keys.
const SHARDS: usize = 64;
/// Bytes one remembered key costs in its map (hash, horizon, control byte,
/// spare capacity), estimated.
const ENTRY_BYTES: usize = 40;
/// Bytes one entry of a shard's claim order costs (horizon, number, hash).
const ORDER_BYTES: usize = 32;

/// One shard: its keys, and the order they were claimed in.
#[derive(Default)]
struct Shard {
    /// Key hash → until when it is remembered.
    until: HashMap<u128, i64>,
    /// (until, claim number, key hash) in the order claimed, so in order of
    /// expiry. A key released or claimed again leaves a stale entry here,
    /// dropped when it reaches the front.
    order: VecDeque<(i64, u64, u128)>,
}

/// The remembered keys of one plugin space.
pub struct Claims {
    hashers: (RandomState, RandomState),
    shards: Vec<Shard>,
    /// Keys held, over all shards.
    entries: usize,
    /// Claim-order entries held (stale ones included), over all shards.
    ordered: usize,
    /// Claims made so far: numbers them, so the oldest is known across shards.
    claimed: u64,
}

impl Default for Claims {
    fn default() -> Self {
        Self {
            hashers: (RandomState::new(), RandomState::new()),
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            entries: 0,
            ordered: 0,
            claimed: 0,
        }
    }
}

impl Claims {
    /// The key's hash; its low bits pick the shard.
    fn hash(&self, key: &str) -> u128 {
        (u128::from(self.hashers.0.hash_one(key)) << 64) | u128::from(self.hashers.1.hash_one(key))
    }

    fn shard(&mut self, h: u128) -> &mut Shard {
        &mut self.shards[(h as usize) % SHARDS]
    }

    /// Whether `key` is remembered at `now_ms` (claimed, not yet past its horizon).
    pub fn holds(&self, key: &str, now_ms: i64) -> bool {
        let h = self.hash(key);
        self.shards[(h as usize) % SHARDS].until.get(&h).is_some_and(|&until| until > now_ms)
    }

    /// Remembers `key` until `until_ms`.
    pub fn claim(&mut self, key: &str, until_ms: i64) {
        let h = self.hash(key);
        self.claimed += 1;
        let n = self.claimed;
        let shard = self.shard(h);
        let added = shard.until.insert(h, until_ms).is_none();
        shard.order.push_back((until_ms, n, h));
        self.entries += usize::from(added);
        self.ordered += 1;
    }

    /// Forgets `key` now (an exchange that failed releases its keys, so a retry counts).
    pub fn release(&mut self, key: &str) {
        let h = self.hash(key);
        if self.shard(h).until.remove(&h).is_some() {
            self.entries -= 1;
        }
    }

    /// Forgets every key whose horizon is at or before `now_ms`.
    pub fn expire(&mut self, now_ms: i64) {
        for i in 0..SHARDS {
            while self.shards[i].order.front().is_some_and(|&(until, _, _)| until <= now_ms) {
                self.pop_front(i);
            }
        }
    }

    /// Forgets the key claimed first (under quota pressure, before its
    /// horizon); whether a key was held (`false` when only a stale entry
    /// went, or there was nothing).
    pub fn forget_oldest(&mut self) -> bool {
        let oldest = (0..SHARDS).filter_map(|i| self.shards[i].order.front().map(|&(_, n, _)| (n, i))).min();
        oldest.is_some_and(|(_, i)| self.pop_front(i))
    }

    /// Drops shard `i`'s oldest claim-order entry and, unless it is stale, its key.
    fn pop_front(&mut self, i: usize) -> bool {
        let shard = &mut self.shards[i];
        let Some((until, _, h)) = shard.order.pop_front() else { return false };
        self.ordered -= 1;
        // A key claimed again later has a newer entry: only the last one forgets it.
        if shard.until.get(&h) == Some(&until) {
            shard.until.remove(&h);
            self.entries -= 1;
            return true;
        }
        false
    }

    /// Bytes held (estimated), counted against the plugin's quota.
    pub fn bytes(&self) -> usize {
        self.entries * ENTRY_BYTES + self.ordered * ORDER_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_held_until_their_horizon_and_released_on_demand() {
        let mut c = Claims::default();
        c.claim("evt-1", 100);
        c.claim("evt-2", 200);
        assert!(c.holds("evt-1", 99) && !c.holds("evt-1", 100) && !c.holds("evt-3", 0));
        c.release("evt-2");
        assert!(!c.holds("evt-2", 0));
        c.expire(100);
        assert!(!c.holds("evt-1", 0), "expired keys are gone, not just past");
        // evt-2's order entry is stale: dropping it frees no key.
        assert!(!c.forget_oldest());
        assert_eq!(c.bytes(), 0);
    }

    #[test]
    fn under_pressure_the_oldest_claim_goes_first_across_shards() {
        let mut c = Claims::default();
        for i in 0..1000 {
            c.claim(&format!("evt-{i}"), 1000 + i / 100); // ten claims per horizon
        }
        for _ in 0..10 {
            assert!(c.forget_oldest());
        }
        assert!((0..10).all(|i| !c.holds(&format!("evt-{i}"), 0)));
        assert!((10..1000).all(|i| c.holds(&format!("evt-{i}"), 0)));
        // A key claimed again keeps its newer horizon when the old one passes.
        c.expire(1008);
        c.claim("evt-999", 5000);
        c.expire(1009);
        assert!(c.holds("evt-999", 4999));
        assert_eq!(c.bytes(), ENTRY_BYTES + ORDER_BYTES);
    }
}
