//! The exact window semantics: which tiles a window reads.
//!
//! Time is milliseconds since the Unix epoch. A **tile** of level `T` (one of
//! [`LEVELS`]: 1 min, 5 min, 1 h, 6 h, 1 d) is `[k·T, (k+1)·T)`; the tile of
//! a time `e` is `k(e) = floor(e / T)`. A window of length `W` uses the
//! finest level `T` that divides `W` into `n = W / T ≤ 30` tiles. The window
//! at reference time `t` is the union of the `n + 1` tiles `k(t) − n ..=
//! k(t)`: it always covers `[t − W, t]`, reaches back at most `W + T`, and
//! includes the rest of `t`'s own tile. So `10m` at 12:34:56 reads
//! `[12:24:00, 12:35:00)`, and `24h` at the same time reads from 12:00 the day
//! before to 13:00. Counting by tiles makes every aggregate a fixed number of
//! small reads, in memory or in Redis, at the cost of up to one tile of
//! extra history — the trade Chronon and Tecton make too.

use std::fmt;

/// One minute, in milliseconds.
pub const MINUTE_MS: i64 = 60_000;

/// The tile levels, finest first, in milliseconds: 1 min, 5 min, 1 h, 6 h, 1 d.
pub const LEVELS: [i64; 5] = [MINUTE_MS, 5 * MINUTE_MS, 60 * MINUTE_MS, 360 * MINUTE_MS, 1440 * MINUTE_MS];

/// Most tiles one window reads, besides the reference time's own.
pub const MAX_TILES: i64 = 30;

/// The longest window: 30 days.
pub const MAX_WINDOW_MS: i64 = 30 * 1440 * MINUTE_MS;

/// A window length that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("window `{spec}`: {reason}")]
pub struct WindowError {
    /// As written.
    pub spec: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A window length and the tiles it is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Window {
    /// Its length `W`, in milliseconds.
    pub length_ms: i64,
    /// The tile level `T` it reads, in milliseconds.
    pub tile_ms: i64,
    /// `W / T`: it reads `tiles + 1` tiles.
    pub tiles: i64,
}

impl Window {
    /// Parses `10m`, `1h`, `24h`, `7d` (a positive integer and a unit: `m`,
    /// `h` or `d`; at most 30 days) and picks its tile level. Called when a
    /// manifest is loaded, so a window no level fits (`61m`) is refused there.
    pub fn parse(spec: &str) -> Result<Self, WindowError> {
        let err = |reason: &str| WindowError { spec: spec.to_owned(), reason: reason.to_owned() };
        let (digits, unit) = spec.split_at(spec.len().saturating_sub(1));
        let scale = match unit {
            "m" => MINUTE_MS,
            "h" => 60 * MINUTE_MS,
            "d" => 1440 * MINUTE_MS,
            _ => return Err(err("must be a whole number of minutes (m), hours (h) or days (d), e.g. 10m")),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 6 {
            return Err(err("must be a whole number of minutes (m), hours (h) or days (d), e.g. 10m"));
        }
        let n: i64 = digits.parse().map_err(|_| err("not a number"))?;
        let length_ms = n * scale;
        if length_ms == 0 || length_ms > MAX_WINDOW_MS {
            return Err(err("must be longer than 0 and at most 30d"));
        }
        Self::of_length(length_ms).ok_or_else(|| {
            err("no tile level fits it: it must be a multiple of 1m, 5m, 1h, 6h or 1d of at most 30 tiles (e.g. 30m or 35m, not 31m)")
        })
    }

    /// The window of `length_ms` on the finest level that divides it into at most [`MAX_TILES`].
    pub fn of_length(length_ms: i64) -> Option<Self> {
        LEVELS.iter().find(|&&t| length_ms % t == 0 && length_ms / t <= MAX_TILES).map(|&t| Window {
            length_ms,
            tile_ms: t,
            tiles: length_ms / t,
        })
    }

    /// The tiles read at reference time `t`: `k(t) − n ..= k(t)` on this window's level.
    pub fn tiles_at(&self, t: i64) -> std::ops::RangeInclusive<i64> {
        let k = tile_of(t, self.tile_ms);
        (k - self.tiles)..=k
    }

    /// The span the window covers at `t`, `[start, end)` in milliseconds.
    pub fn span_at(&self, t: i64) -> (i64, i64) {
        let tiles = self.tiles_at(t);
        (tiles.start() * self.tile_ms, (tiles.end() + 1) * self.tile_ms)
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (d, h, m) = (1440 * MINUTE_MS, 60 * MINUTE_MS, MINUTE_MS);
        if self.length_ms % d == 0 {
            write!(f, "{}d", self.length_ms / d)
        } else if self.length_ms % h == 0 {
            write!(f, "{}h", self.length_ms / h)
        } else {
            write!(f, "{}m", self.length_ms / m)
        }
    }
}

/// The tile of time `e` on level `tile_ms`: `floor(e / T)`, also before 1970.
pub fn tile_of(e: i64, tile_ms: i64) -> i64 {
    e.div_euclid(tile_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_window_takes_the_finest_level_of_at_most_30_tiles() {
        let pick = |s: &str| {
            let w = Window::parse(s).unwrap();
            (w.tile_ms / MINUTE_MS, w.tiles)
        };
        assert_eq!(pick("10m"), (1, 10));
        assert_eq!(pick("30m"), (1, 30));
        assert_eq!(pick("1h"), (5, 12));
        assert_eq!(pick("90m"), (5, 18));
        assert_eq!(pick("24h"), (60, 24));
        assert_eq!(pick("7d"), (360, 28));
        assert_eq!(pick("30d"), (1440, 30));
        for bad in ["61m", "31m", "0m", "31d", "10", "m", "1.5h", "-1h", "10s", "9999999m"] {
            assert!(Window::parse(bad).is_err(), "{bad}");
        }
        let e = Window::parse("61m").unwrap_err();
        assert!(e.to_string().contains("no tile level fits"), "{e}");
        assert_eq!(Window::parse("1440m").unwrap().to_string(), "1d");
    }

    #[test]
    fn a_window_covers_its_length_and_at_most_one_tile_more() {
        // 12:34:56 on 2026-12-02.
        let t = 1_796_214_896_000;
        let w = Window::parse("10m").unwrap();
        let (start, end) = w.span_at(t);
        assert_eq!((t - start, end - t), (10 * MINUTE_MS + 56_000, 4_000));
        let day = Window::parse("24h").unwrap();
        let (start, end) = day.span_at(t);
        assert!(start <= t - day.length_ms && t - start <= day.length_ms + day.tile_ms && end > t);
        // Before 1970 the tiles are still whole: floor, not truncation.
        assert_eq!(tile_of(-1, MINUTE_MS), -1);
        assert_eq!(tile_of(-MINUTE_MS, MINUTE_MS), -1);
    }
}
