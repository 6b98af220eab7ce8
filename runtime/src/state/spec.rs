//! A plugin's `[state]` table in `plugin.toml`: the aggregates it keeps, the
//! offline tables it may read, and the rules for both. Parsed with the rest
//! of the manifest and checked when the plugin loads, so a bad window or
//! name is refused there, naming it — never at call time.
//!
//! ```toml
//! [state]
//! lookups = ["card_stats"]     # offline tables this plugin may read
//! dedupe = "15m"               # how long an event id is remembered (1m–24h)
//! max_future = "5m"            # events further ahead are refused as `future` (0s–1h)
//! max_late = "24h"             # older ones as `late` (default: the longest window)
//! memory_mib = 16              # the in-process store's quota for this plugin (1–1024)
//! [state.aggregates.card]      # names: 1–32 of [a-z0-9_]; at most 16 aggregates
//! windows = ["10m", "1h", "24h"]   # at most 8, each fitting a tile level (see `window`)
//! [state.aggregates.email_cards]
//! windows = ["24h"]
//! distinct = true              # observations carry an item; its distinct count is kept
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

use super::exchange::{AggregateSpec, Namespace};
use super::window::{MAX_WINDOW_MS, Window};

/// Most aggregates one plugin declares.
pub const MAX_AGGREGATES: usize = 16;
/// Most windows one aggregate declares.
pub const MAX_WINDOWS: usize = 8;
/// Most lookup tables one plugin declares.
pub const MAX_LOOKUPS: usize = 16;

/// The `[state]` table as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSpec {
    /// Offline tables the plugin may read.
    #[serde(default)]
    pub lookups: Vec<String>,
    /// How long an idempotency key is remembered.
    #[serde(default = "default_dedupe")]
    pub dedupe: String,
    /// Events further ahead of the wall clock are `future`.
    #[serde(default = "default_max_future")]
    pub max_future: String,
    /// Events further behind are `late` (default: the longest window).
    #[serde(default)]
    pub max_late: Option<String>,
    /// The in-process store's quota for this plugin, MiB.
    #[serde(default = "default_memory_mib")]
    pub memory_mib: u64,
    /// Aggregate name → its windows.
    #[serde(default)]
    pub aggregates: BTreeMap<String, AggregateToml>,
}

/// One `[state.aggregates.<name>]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateToml {
    /// Window lengths: `10m`, `1h`, `24h`, `7d`.
    pub windows: Vec<String>,
    /// Whether observations carry an item whose distinct count is kept.
    #[serde(default)]
    pub distinct: bool,
}

fn default_dedupe() -> String {
    "15m".into()
}

fn default_max_future() -> String {
    "5m".into()
}

fn default_memory_mib() -> u64 {
    16
}

/// Why a `[state]` table is refused: the field, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state.{field}: {reason}")]
pub struct SpecError {
    /// The field, e.g. `aggregates.card.windows`.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

fn bad(field: impl Into<String>, reason: impl Into<String>) -> SpecError {
    SpecError { field: field.into(), reason: reason.into() }
}

/// Checks a state name (aggregate, lookup table): 1–32 of `[a-z0-9_]`.
fn check_name(field: &str, name: &str) -> Result<(), SpecError> {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
    if name.is_empty() || name.len() > 32 || !name.chars().all(ok) {
        return Err(bad(field, format!("{name:?} must be 1-32 characters of [a-z0-9_]")));
    }
    Ok(())
}

/// Parses a duration: a whole number and a unit, `s`, `m`, `h` or `d`; in milliseconds.
pub fn parse_duration(spec: &str) -> Option<i64> {
    let (digits, unit) = spec.split_at(spec.len().checked_sub(1)?);
    let scale = match unit {
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    if digits.is_empty() || digits.len() > 7 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<i64>().ok().map(|n| n * scale)
}

fn duration_in(field: &str, spec: &str, min_ms: i64, max_ms: i64, range: &str) -> Result<i64, SpecError> {
    match parse_duration(spec) {
        Some(ms) if (min_ms..=max_ms).contains(&ms) => Ok(ms),
        Some(_) => Err(bad(field, format!("{spec:?} must be between {range}"))),
        None => Err(bad(field, format!("{spec:?} must be a whole number of s, m, h or d, e.g. 15m"))),
    }
}

impl StateSpec {
    /// Checks the table and resolves it into plugin `plugin`'s [`Namespace`].
    pub fn namespace(&self, plugin: &str) -> Result<Namespace, SpecError> {
        if self.aggregates.is_empty() && self.lookups.is_empty() {
            return Err(bad(
                "aggregates",
                "declares nothing: add an aggregate or a lookup table, or drop [state]",
            ));
        }
        if self.aggregates.len() > MAX_AGGREGATES {
            return Err(bad(
                "aggregates",
                format!("{} declared; at most {MAX_AGGREGATES}", self.aggregates.len()),
            ));
        }
        if self.lookups.len() > MAX_LOOKUPS {
            return Err(bad("lookups", format!("{} declared; at most {MAX_LOOKUPS}", self.lookups.len())));
        }
        for table in &self.lookups {
            check_name("lookups", table)?;
        }
        let mut aggregates = BTreeMap::new();
        for (name, a) in &self.aggregates {
            check_name("aggregates", name)?;
            let field = format!("aggregates.{name}.windows");
            if a.windows.is_empty() || a.windows.len() > MAX_WINDOWS {
                return Err(bad(
                    &field,
                    format!("{} windows; 1 to {MAX_WINDOWS} are allowed", a.windows.len()),
                ));
            }
            let mut windows = Vec::new();
            for w in &a.windows {
                let window = Window::parse(w).map_err(|e| bad(&field, e.to_string()))?;
                if windows.contains(&window) {
                    return Err(bad(&field, format!("{w} twice")));
                }
                windows.push(window);
            }
            aggregates.insert(name.clone(), AggregateSpec { windows, distinct: a.distinct });
        }
        let longest = aggregates.values().flat_map(|a| &a.windows).map(|w| w.length_ms).max().unwrap_or(0);
        let max_late_ms = match &self.max_late {
            Some(spec) => duration_in("max_late", spec, 0, MAX_WINDOW_MS, "0s and 30d")?,
            None => longest,
        };
        let memory_mib = self.memory_mib;
        if !(1..=1024).contains(&memory_mib) {
            return Err(bad("memory_mib", format!("{memory_mib} must be between 1 and 1024")));
        }
        Ok(Namespace {
            name: plugin.to_owned(),
            aggregates,
            lookups: self.lookups.clone(),
            max_late_ms,
            max_future_ms: duration_in("max_future", &self.max_future, 0, 3_600_000, "0s and 1h")?,
            dedupe_ms: duration_in("dedupe", &self.dedupe, 60_000, 86_400_000, "1m and 24h")?,
            quota_bytes: (memory_mib << 20) as usize,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> Result<Namespace, String> {
        let s: StateSpec = toml::from_str(text).map_err(|e| e.to_string())?;
        s.namespace("velocity").map_err(|e| e.to_string())
    }

    #[test]
    fn a_table_resolves_with_its_defaults() {
        let ns = spec(
            "lookups = [\"card_stats\"]\n[aggregates.card]\nwindows = [\"10m\", \"1h\", \"24h\"]\n\
             [aggregates.email_cards]\nwindows = [\"24h\"]\ndistinct = true\n",
        )
        .unwrap();
        assert_eq!(ns.name, "velocity");
        assert_eq!(ns.aggregates["card"].windows.len(), 3);
        assert!(ns.aggregates["email_cards"].distinct && !ns.aggregates["card"].distinct);
        assert_eq!((ns.max_late_ms, ns.max_future_ms, ns.dedupe_ms), (86_400_000, 300_000, 900_000));
        assert_eq!(ns.quota_bytes, 16 << 20);
    }

    #[test]
    fn every_bad_field_is_named() {
        for (text, names) in [
            ("[aggregates.card]\nwindows = [\"61m\"]\n", "aggregates.card.windows"),
            ("[aggregates.card]\nwindows = []\n", "aggregates.card.windows"),
            ("[aggregates.card]\nwindows = [\"1h\", \"60m\"]\n", "twice"),
            ("[aggregates.Card]\nwindows = [\"1h\"]\n", "aggregates: \"Card\""),
            ("lookups = [\"a-b\"]\n", "lookups"),
            ("lookups = [\"t\"]\ndedupe = \"10s\"\n", "dedupe"),
            ("lookups = [\"t\"]\nmax_future = \"2h\"\n", "max_future"),
            ("lookups = [\"t\"]\nmax_late = \"31d\"\n", "max_late"),
            ("lookups = [\"t\"]\nmemory_mib = 0\n", "memory_mib"),
            ("", "declares nothing"),
            ("lookups = [\"t\"]\nwindow = \"1h\"\n", "unknown field"),
        ] {
            let e = spec(text).unwrap_err();
            assert!(e.contains(names), "{text:?}: {e}");
        }
        assert_eq!(parse_duration("90s"), Some(90_000));
        assert_eq!(parse_duration("1.5h"), None);
    }
}
