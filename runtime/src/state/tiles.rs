//! One entity's history as tiles: per tile, the count, sum and max of the
//! values observed in it, on every level the entity's windows read. Recording
//! touches one tile per level; reading a window sums its `n + 1` tiles
//! ([`super::window`]). Tiles older than a retention are dropped, so an
//! entity's memory is bounded by its windows, not by its traffic.

use std::collections::BTreeMap;

use super::window::{Window, tile_of};

/// What one tile, or a whole window, holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Observations.
    pub count: u64,
    /// Sum of their values (exact: 128 bits).
    pub sum: i128,
    /// The largest value; `None` when empty.
    pub max: Option<i64>,
}

impl Stats {
    /// Adds one observation of `value`.
    pub(crate) fn add(&mut self, value: i64) {
        self.count += 1;
        self.sum += i128::from(value);
        self.max = Some(self.max.map_or(value, |m| m.max(value)));
    }

    /// Adds everything `other` holds.
    pub(crate) fn merge(&mut self, other: &Stats) {
        self.count += other.count;
        self.sum += other.sum;
        self.max = match (self.max, other.max) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

/// One entity's tiles on the levels its windows use.
#[derive(Debug, Clone, Default)]
pub struct Tiles {
    /// Level (tile length in ms) → tile index → stats.
    levels: BTreeMap<i64, BTreeMap<i64, Stats>>,
}

impl Tiles {
    /// Empty tiles for `windows` (each level they read is kept once).
    pub fn new(windows: &[Window]) -> Self {
        Self { levels: windows.iter().map(|w| (w.tile_ms, BTreeMap::new())).collect() }
    }

    /// Keeps the levels `windows` read too (a later version may declare more).
    pub fn ensure(&mut self, windows: &[Window]) {
        for w in windows {
            self.levels.entry(w.tile_ms).or_default();
        }
    }

    /// Drops, on each level, every tile that ended before `horizon(level)`.
    pub fn prune_by_level(&mut self, horizon: impl Fn(i64) -> i64) {
        for (&tile_ms, tiles) in &mut self.levels {
            *tiles = tiles.split_off(&tile_of(horizon(tile_ms), tile_ms));
        }
    }

    /// Records `value` observed at time `e` in its tile on every level.
    pub fn record(&mut self, e: i64, value: i64) {
        for (&tile_ms, tiles) in &mut self.levels {
            tiles.entry(tile_of(e, tile_ms)).or_default().add(value);
        }
    }

    /// What `window` holds at reference time `t`. A window whose level these
    /// tiles do not keep reads as empty.
    pub fn read(&self, window: &Window, t: i64) -> Stats {
        let mut out = Stats::default();
        if let Some(tiles) = self.levels.get(&window.tile_ms) {
            for (_, s) in tiles.range(window.tiles_at(t)) {
                out.merge(s);
            }
        }
        out
    }

    /// Drops every tile that ended before `horizon` (ms): nothing an accepted
    /// read can reach. Returns how many tiles were dropped.
    pub fn prune(&mut self, horizon: i64) -> usize {
        let mut dropped = 0;
        for (&tile_ms, tiles) in &mut self.levels {
            // Tile k ends at (k + 1)·T: keep k ≥ floor(horizon / T).
            let keep = tiles.split_off(&tile_of(horizon, tile_ms));
            dropped += tiles.len();
            *tiles = keep;
        }
        dropped
    }

    /// Tiles held, over every level (for memory accounting).
    pub fn len(&self) -> usize {
        self.levels.values().map(BTreeMap::len).sum()
    }

    /// Whether no tile is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::window::MINUTE_MS;
    use proptest::prelude::*;

    /// The window's answer recomputed from the raw observations, straight
    /// from the definition: every observation whose tile is one of the
    /// window's tiles at `t`.
    fn exact(obs: &[(i64, i64)], w: &Window, t: i64) -> Stats {
        let tiles = w.tiles_at(t);
        let mut s = Stats::default();
        for &(e, v) in obs {
            if tiles.contains(&tile_of(e, w.tile_ms)) {
                s.add(v);
            }
        }
        s
    }

    fn windows() -> Vec<Window> {
        ["10m", "1h", "24h", "7d"].iter().map(|s| Window::parse(s).unwrap()).collect()
    }

    proptest! {
        #[test]
        fn reading_tiles_equals_recomputing_from_every_observation(
            obs in prop::collection::vec((0i64..(10 * 1440 * MINUTE_MS), -(1i64 << 40)..(1i64 << 40)), 0..200),
            queries in prop::collection::vec(0i64..(11 * 1440 * MINUTE_MS), 1..20),
        ) {
            let ws = windows();
            let mut tiles = Tiles::new(&ws);
            // Out of order, as events arrive.
            for &(e, v) in &obs {
                tiles.record(e, v);
            }
            for &t in &queries {
                for w in &ws {
                    prop_assert_eq!(tiles.read(w, t), exact(&obs, w, t), "window {} at {}", w, t);
                    // The window covers [t − W, t] and no more than one tile beyond.
                    let (start, end) = w.span_at(t);
                    prop_assert!(start <= t - w.length_ms && t - start <= w.length_ms + w.tile_ms && end > t);
                }
            }
        }

        #[test]
        fn pruning_keeps_every_answer_a_read_within_retention_can_give(
            obs in prop::collection::vec((0i64..(10 * 1440 * MINUTE_MS), 0i64..1000), 0..200),
            now in (8 * 1440 * MINUTE_MS)..(10 * 1440 * MINUTE_MS),
        ) {
            let ws = windows();
            let mut tiles = Tiles::new(&ws);
            for &(e, v) in &obs {
                tiles.record(e, v);
            }
            let full = tiles.clone();
            // Reads at t ≥ now − max_late reach back at most max(W) + max(T).
            let max_late = 60 * MINUTE_MS;
            let reach = ws.iter().map(|w| w.length_ms + w.tile_ms).max().unwrap();
            tiles.prune(now - max_late - reach);
            for t in [now - max_late, now - 1, now, now + 5 * MINUTE_MS] {
                for w in &ws {
                    prop_assert_eq!(tiles.read(w, t), full.read(w, t));
                }
            }
        }
    }

    #[test]
    fn an_empty_window_has_no_max_and_a_window_of_another_level_reads_empty() {
        let ws = windows();
        let mut tiles = Tiles::new(&ws[..1]);
        assert_eq!(tiles.read(&ws[0], 0), Stats::default());
        tiles.record(30_000, -5);
        tiles.record(45_000, -7);
        assert_eq!(tiles.read(&ws[0], 59_999), Stats { count: 2, sum: -12, max: Some(-5) });
        assert_eq!(tiles.read(&ws[2], 59_999), Stats::default(), "24h reads hourly tiles, not kept here");
        assert_eq!(tiles.len(), 1);
        assert_eq!(tiles.prune(60_000), 1);
        assert!(tiles.is_empty());
    }
}
