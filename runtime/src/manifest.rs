//! `plugin.toml`: what a plugin directory declares about itself.
//!
//! ```toml
//! name = "logreg"              # [a-z0-9_-], 1–64 chars; the URL path segment
//! version = "0.1.0"            # [A-Za-z0-9.+-], 1–64 chars; the plugin's own version,
//!                              # optionally + build metadata (0.1.0+model.2: new model, same code)
//! world = "scorer"             # "scorer" or "extractor"
//! component = "logreg.wasm"    # the component, relative to the plugin dir
//! model_dir = "model"          # optional: read-only at /model during init
//!
//! [limits]                     # optional, see LimitsSpec
//! fuel = 2_000_000
//! deadline_ms = 50
//! memory_mib = 16
//!
//! max_in_flight = 32           # calls of this version running at once
//!
//! [breaker]                    # optional, see crate::breaker::BreakerPolicy
//! fault_rate = 0.5             # quarantine at this share of faulted calls…
//! min_calls = 20               # …once a window has seen this many calls
//! consecutive_faults = 5       # or at this many faulted calls in a row
//! window_ms = 10_000
//! backoff_ms = 1_000           # first quarantine; doubles after a failed probe
//! max_backoff_ms = 60_000
//!
//! [fallback]                   # optional, scorers only, see FallbackPolicy
//! mode = "default"             # "fail" (the default): answer the error
//! score = 0.02                 # answered, marked as a fallback, on a plugin fault
//!
//! [inputs]                     # optional, see InputPolicy
//! undeclared = "refuse"        # a field the plugin does not declare: 422 naming it
//!                              # ("report": scored without it, named in the answer)
//! ignore = ["customer_id"]     # fields callers send that the plugin does not read
//!                              # (ids, a canary's routing key): passed over silently
//!
//! [instances]                  # optional, see InstancePolicy
//! fresh_per_call = false       # true: a brand-new instance for every call
//! max_reuse = 1000             # calls a warm instance serves before it is retired
//!
//! [config]                     # optional: handed to the plugin's init
//! model_file = "weights.json"
//! ```
//!
//! Unknown fields are an error that names the field, so a typo (`dealine_ms`)
//! never silently falls back to a default.

use std::path::{Component as PathPart, Path};

use serde::Deserialize;

use crate::breaker::BreakerPolicy;
use crate::error::{CallError, ErrorKind};
use crate::limits::{Limits, LimitsSpec};

/// Which WIT world a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum World {
    /// `scorehost:plugin/scorer-plugin`: features → score.
    Scorer,
    /// `scorehost:plugin/extractor-plugin`: event → features.
    Extractor,
}

impl World {
    /// The world's name as written in the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            World::Scorer => "scorer",
            World::Extractor => "extractor",
        }
    }

    /// The interface the component must export for this world, at the
    /// contract version this host speaks.
    pub fn export_name(self) -> &'static str {
        match self {
            World::Scorer => "scorehost:plugin/scorer@0.1.1",
            World::Extractor => "scorehost:plugin/extractor@0.1.1",
        }
    }

    /// Whether component export `name` is this world's interface at a version
    /// compatible with [`Self::export_name`]'s (semver, as wasmtime matches
    /// exports: `0.1.0` and `0.1.1` are one track, `0.2.0` another).
    pub fn exported_as(self, name: &str) -> bool {
        let (want, want_version) = split_version(self.export_name());
        let (have, have_version) = split_version(name);
        // A pre-release matches only itself, as in semver (and in wasmtime).
        if have_version.contains('-') {
            return name == self.export_name();
        }
        have == want && semver_track(have_version) == semver_track(want_version)
    }
}

fn split_version(name: &str) -> (&str, &str) {
    name.split_once('@').unwrap_or((name, ""))
}

/// The part of a version that semver compatibility keeps: the major
/// version, or `0.minor` for 0.x releases.
fn semver_track(version: &str) -> (&str, &str) {
    let mut parts = version.split('.');
    match (parts.next().unwrap_or(""), parts.next().unwrap_or("")) {
        ("0", minor) => ("0", minor),
        (major, _) => (major, ""),
    }
}

/// A parsed `plugin.toml`, exactly as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Plugin name: lowercase letters, digits, `-` and `_`, 1–64 characters.
    pub name: String,
    /// Version: letters, digits, `.`, `+`, `-`, 1–64 characters.
    pub version: String,
    /// The world the component implements.
    pub world: World,
    /// Path of the component, relative to the plugin directory, inside it.
    pub component: String,
    /// Directory (relative, inside the plugin dir) granted read-only at `/model` during init.
    #[serde(default)]
    pub model_dir: Option<String>,
    /// Per-call budgets; defaults apply to absent fields.
    #[serde(default)]
    pub limits: LimitsSpec,
    /// What a call does with input fields the plugin does not declare.
    #[serde(default)]
    pub inputs: InputPolicy,
    /// Whether and how long instances are reused between calls.
    #[serde(default)]
    pub instances: InstancePolicy,
    /// When repeated faults quarantine this version.
    #[serde(default)]
    pub breaker: BreakerPolicy,
    /// What a scorer answers when it cannot score.
    #[serde(default)]
    pub fallback: FallbackPolicy,
    /// Key/values handed to the plugin's `init`.
    #[serde(default)]
    pub config: toml::Table,
}

impl Manifest {
    /// Parses and validates manifest text. The error names the offending field.
    pub fn parse(text: &str) -> Result<Self, String> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())?;
        manifest.validate()?;
        Ok(manifest)
    }

    fn validate(&self) -> Result<(), String> {
        let name_ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
        if self.name.is_empty() || self.name.len() > 64 || !self.name.chars().all(name_ok) {
            return Err(format!("name {:?} must be 1-64 characters of [a-z0-9_-]", self.name));
        }
        let version_ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-');
        if self.version.is_empty() || self.version.len() > 64 || !self.version.chars().all(version_ok) {
            return Err(format!("version {:?} must be 1-64 characters of [A-Za-z0-9.+-]", self.version));
        }
        relative_inside("component", &self.component)?;
        if let Some(dir) = &self.model_dir {
            relative_inside("model_dir", dir)?;
        }
        self.limits.validate()?;
        self.instances.validate()?;
        self.inputs.validate()?;
        self.breaker.validate()?;
        self.fallback.validate(self.world)?;
        Ok(())
    }

    /// The validated limits.
    pub fn limits(&self) -> Limits {
        self.limits.validate().expect("validated in Manifest::parse")
    }

    /// The `[config]` table as the key/value list `init` receives: strings as they
    /// are, every other value as its JSON text.
    pub fn config_entries(&self) -> Vec<(String, String)> {
        self.config
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    toml::Value::String(s) => s.clone(),
                    other => serde_json::to_string(other).unwrap_or_default(),
                };
                (k.clone(), text)
            })
            .collect()
    }
}

/// The `[inputs]` table: what a call does with input fields the plugin does
/// not declare (a client's typo, a field renamed on one side). A plugin that
/// declares open inputs receives them by name instead, and this does not apply.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputPolicy {
    /// `refuse` (the default) or `report`.
    #[serde(default)]
    pub undeclared: Undeclared,
    /// Fields callers send that the plugin does not read and that are not
    /// mistakes: request ids, a canary's routing key (`customer_id`). Passed
    /// over silently, neither refused nor reported. At most 64 names.
    #[serde(default)]
    pub ignore: Vec<String>,
}

impl InputPolicy {
    fn validate(&self) -> Result<(), String> {
        let max = crate::layout::MAX_FIELD_NAME_BYTES;
        if self.ignore.len() > 64 || self.ignore.iter().any(|n| n.is_empty() || n.len() > max) {
            return Err(format!("inputs.ignore must list at most 64 field names of 1-{max} bytes"));
        }
        Ok(())
    }
}

/// See [`InputPolicy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Undeclared {
    /// The call is refused: `invalid_input` (HTTP 422) naming every
    /// undeclared field, so a misspelled feature never silently degrades a
    /// score.
    #[default]
    Refuse,
    /// The call goes ahead without them; a score's answer lists them under
    /// `undeclared`, and `scorehost_undeclared_fields_total` counts them.
    Report,
}

/// The largest `instances.max_reuse` a manifest may ask for.
pub const MAX_REUSE: u32 = 1_000_000;

/// The `[instances]` table: how a plugin's instances live between calls.
///
/// Every instance starts from the plugin's initialised snapshot. By default an
/// instance that finished a call cleanly is kept warm and serves later calls
/// of the *same plugin version* — each with its own full fuel budget and
/// deadline — until it has served `max_reuse` calls; one that trapped, hit a
/// budget, wrote to stderr or was cancelled is thrown away. What a reused
/// instance can carry from one call to the next is only what the plugin
/// itself keeps in its globals and heap: never another plugin's state, never
/// the host's. A plugin that must not see even that sets `fresh_per_call`,
/// and pays a full instantiation per call (docs/performance.md has the cost).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstancePolicy {
    /// A brand-new instance for every call. Default false.
    #[serde(default)]
    pub fresh_per_call: bool,
    /// Calls one warm instance serves before it is retired. Default 1000, at most 10^6.
    #[serde(default = "default_max_reuse")]
    pub max_reuse: u32,
}

fn default_max_reuse() -> u32 {
    1000
}

impl Default for InstancePolicy {
    fn default() -> Self {
        Self { fresh_per_call: false, max_reuse: default_max_reuse() }
    }
}

impl InstancePolicy {
    fn validate(&self) -> Result<(), String> {
        if self.max_reuse == 0 || self.max_reuse > MAX_REUSE {
            return Err(format!(
                "instances.max_reuse = {} must be between 1 and {MAX_REUSE}",
                self.max_reuse
            ));
        }
        Ok(())
    }

    /// How many calls an instance may serve: 1 when fresh per call.
    pub fn calls_per_instance(&self) -> u32 {
        if self.fresh_per_call { 1 } else { self.max_reuse }
    }
}

/// The `[fallback]` table: what a scorer answers when it cannot score.
///
/// `mode = "fail"` (the default) fails closed: the caller gets the error.
/// `mode = "default"` answers `score` instead — HTTP 200, no reasons, and a
/// `fallback` object naming the error it stands in for — whenever the plugin
/// is at fault (a budget hit, a trap, its own error, an unusable answer), is
/// quarantined, or is at its in-flight cap. Input the caller got wrong is
/// still an error: a fallback must never hide a caller's bug.
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackPolicy {
    /// `fail` or `default`.
    #[serde(default)]
    pub mode: FallbackMode,
    /// The declared default score; required by, and only allowed with, `mode = "default"`.
    #[serde(default)]
    pub score: Option<f64>,
}

/// See [`FallbackPolicy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FallbackMode {
    /// Answer the error.
    #[default]
    Fail,
    /// Answer the declared default score, marked as a fallback.
    Default,
}

impl FallbackPolicy {
    fn validate(&self, world: World) -> Result<(), String> {
        match (self.mode, self.score) {
            (FallbackMode::Fail, None) => Ok(()),
            (FallbackMode::Fail, Some(_)) => {
                Err("fallback.score is only used with fallback.mode = \"default\"".into())
            }
            (FallbackMode::Default, _) if world != World::Scorer => {
                Err("fallback.mode = \"default\" applies to scorers only".into())
            }
            (FallbackMode::Default, Some(s)) if s.is_finite() => Ok(()),
            (FallbackMode::Default, _) => {
                Err("fallback.mode = \"default\" needs fallback.score, a finite number".into())
            }
        }
    }

    /// The default score to answer instead of `error`, if this policy has one
    /// for it.
    pub fn score_for(&self, error: &CallError) -> Option<f64> {
        let stands_in = !matches!(error.kind(), ErrorKind::InvalidInput | ErrorKind::Unsupported);
        match self.mode {
            FallbackMode::Default if stands_in => self.score,
            _ => None,
        }
    }
}

/// A path that stays inside the plugin directory: relative, no `..`.
fn relative_inside(field: &str, path: &str) -> Result<(), String> {
    let p = Path::new(path);
    let inside =
        !path.is_empty() && p.components().all(|c| matches!(c, PathPart::Normal(_) | PathPart::CurDir));
    if inside {
        Ok(())
    } else {
        Err(format!("{field} {path:?} must be a relative path inside the plugin directory"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        name = "logreg"
        version = "0.1.0"
        world = "scorer"
        component = "logreg.wasm"
        [limits]
        fuel = 1000
        [config]
        rates = { EUR = 1.1 }
        label = "x"
    "#;

    #[test]
    fn parses_and_defaults() {
        let m = Manifest::parse(GOOD).unwrap();
        assert_eq!(m.world, World::Scorer);
        assert_eq!(m.limits.fuel, 1000);
        assert_eq!(m.limits.deadline_ms, crate::limits::DEFAULT_DEADLINE_MS);
        let cfg = m.config_entries();
        assert!(cfg.contains(&("label".into(), "x".into())));
        assert!(cfg.contains(&("rates".into(), r#"{"EUR":1.1}"#.into())));
    }

    #[test]
    fn unknown_field_is_named() {
        let e = Manifest::parse(&GOOD.replace("fuel = 1000", "fuel = 1000\ndealine_ms = 5")).unwrap_err();
        assert!(e.contains("dealine_ms"), "{e}");
        let e = Manifest::parse(&format!("colour = 1\n{GOOD}")).unwrap_err();
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn fallback_stands_in_for_plugin_faults_only() {
        let m = Manifest::parse(
            &GOOD.replace("[config]", "[fallback]\nmode = \"default\"\nscore = 0.25\n[config]"),
        )
        .unwrap();
        let trap = CallError::GuestTrap { message: "x".into() };
        assert_eq!(m.fallback.score_for(&trap), Some(0.25));
        assert_eq!(m.fallback.score_for(&CallError::invalid_input("x")), None);
        let extractor = GOOD.replace("\"scorer\"", "\"extractor\"");
        assert!(
            Manifest::parse(
                &extractor.replace("[config]", "[fallback]\nmode = \"default\"\nscore = 0.25\n[config]")
            )
            .is_err()
        );
        assert_eq!(Manifest::parse(GOOD).unwrap().fallback.score_for(&trap), None);
    }

    #[test]
    fn rejects_escaping_paths_and_bad_names() {
        for (from, to) in [
            ("\"logreg.wasm\"", "\"../x.wasm\""),
            ("\"logreg.wasm\"", "\"/etc/x.wasm\""),
            ("\"logreg\"", "\"../evil\""),
            ("\"logreg\"", "\"Big Name\""),
            ("fuel = 1000", "fuel = 0"),
            ("\"scorer\"", "\"ranker\""),
            ("[config]", "[instances]\nmax_reuse = 0\n[config]"),
            ("[config]", "[instances]\nreuse = true\n[config]"),
            ("[config]", "[breaker]\nfault_rate = 0\n[config]"),
            ("[config]", "[breaker]\nbackoff_ms = 10\nmax_backoff_ms = 5\n[config]"),
            ("[config]", "[fallback]\nmode = \"default\"\n[config]"),
            ("[config]", "[fallback]\nscore = 0.5\n[config]"),
            ("[config]", "[fallback]\nmode = \"default\"\nscore = nan\n[config]"),
            ("[config]", "[fallback]\nmode = \"maybe\"\n[config]"),
            ("fuel = 1000", "fuel = 1000\nmax_in_flight = 0"),
        ] {
            assert!(Manifest::parse(&GOOD.replacen(from, to, 1)).is_err(), "{to} accepted");
        }
    }

    #[test]
    fn exports_match_within_a_semver_track() {
        assert!(World::Scorer.exported_as("scorehost:plugin/scorer@0.1.0"));
        assert!(World::Scorer.exported_as("scorehost:plugin/scorer@0.1.1"));
        assert!(World::Scorer.exported_as("scorehost:plugin/scorer@0.1.7"));
        assert!(!World::Scorer.exported_as("scorehost:plugin/scorer@0.2.0"));
        assert!(!World::Scorer.exported_as("scorehost:plugin/scorer"));
        assert!(!World::Scorer.exported_as("scorehost:plugin/extractor@0.1.1"));
        assert!(!World::Scorer.exported_as("scorehost:plugin/scorer-x@0.1.1"));
        assert!(!World::Scorer.exported_as("scorehost:plugin/scorer@0.1.2-rc1"));
        assert!(World::Extractor.exported_as("scorehost:plugin/extractor@0.1.0"));
    }
}
