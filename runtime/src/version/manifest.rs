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
//! [breaker]                    # optional, see crate::version::breaker::BreakerPolicy
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

use crate::sandbox::error::{CallError, ErrorKind, InvalidValue};
use crate::sandbox::limits::{InstancePolicy, Limits, LimitsSpec};
use crate::sandbox::world::World;
use crate::version::breaker::BreakerPolicy;
use crate::version::layout::InputPolicy;

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
    /// The real-time state the plugin keeps and reads (`[state]`), if any.
    #[serde(default)]
    pub state: Option<crate::state::spec::StateSpec>,
}

/// Why a `plugin.toml` is refused: each names the field (or, for TOML
/// syntax and unknown fields, the line and key `toml` reports).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The file is not UTF-8.
    #[error("not UTF-8 text ({0})")]
    NotUtf8(std::str::Utf8Error),
    /// Not TOML, an unknown field, a missing field or a value of the wrong type.
    #[error("{}", .0.to_string().trim_end())]
    Toml(toml::de::Error),
    /// `name` is not 1-64 characters of `[a-z0-9_-]`.
    #[error("name {name:?} must be 1-64 characters of [a-z0-9_-]")]
    Name {
        /// The name given.
        name: String,
    },
    /// `version` is not 1-64 characters of `[A-Za-z0-9.+-]`.
    #[error("version {version:?} must be 1-64 characters of [A-Za-z0-9.+-]")]
    Version {
        /// The version given.
        version: String,
    },
    /// `component` or `model_dir` leaves the plugin directory.
    #[error("{field} {path:?} must be a relative path inside the plugin directory")]
    PathOutside {
        /// `component` or `model_dir`.
        field: &'static str,
        /// The path given.
        path: String,
    },
    /// A limit, breaker, instance or input setting out of range.
    #[error(transparent)]
    Value(#[from] InvalidValue),
    /// `fallback.score` without `fallback.mode = "default"`.
    #[error("fallback.score is only used with fallback.mode = \"default\"")]
    FallbackScoreUnused,
    /// `fallback.mode = "default"` on an extractor.
    #[error("fallback.mode = \"default\" applies to scorers only")]
    FallbackNotScorer,
    /// `fallback.mode = "default"` without a finite `fallback.score`.
    #[error("fallback.mode = \"default\" needs fallback.score, a finite number")]
    FallbackScoreMissing,
    /// A `[state]` field out of range or malformed.
    #[error(transparent)]
    State(#[from] crate::state::spec::SpecError),
}

impl Manifest {
    /// Parses and validates manifest text. The error names the offending field.
    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        let manifest: Manifest = toml::from_str(text).map_err(ManifestError::Toml)?;
        manifest.validate()?;
        Ok(manifest)
    }

    fn validate(&self) -> Result<(), ManifestError> {
        let name_ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
        if self.name.is_empty() || self.name.len() > 64 || !self.name.chars().all(name_ok) {
            return Err(ManifestError::Name { name: self.name.clone() });
        }
        let version_ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-');
        if self.version.is_empty() || self.version.len() > 64 || !self.version.chars().all(version_ok) {
            return Err(ManifestError::Version { version: self.version.clone() });
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
        if let Some(state) = &self.state {
            state.namespace(&self.name)?;
        }
        Ok(())
    }

    /// The plugin's state namespace, from its validated `[state]` table.
    pub fn state(&self) -> Option<crate::state::exchange::Namespace> {
        self.state.as_ref().map(|s| s.namespace(&self.name).expect("validated in Manifest::parse"))
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
    fn validate(&self, world: World) -> Result<(), ManifestError> {
        match (self.mode, self.score) {
            (FallbackMode::Fail, None) => Ok(()),
            (FallbackMode::Fail, Some(_)) => Err(ManifestError::FallbackScoreUnused),
            (FallbackMode::Default, _) if world != World::Scorer => Err(ManifestError::FallbackNotScorer),
            (FallbackMode::Default, Some(s)) if s.is_finite() => Ok(()),
            (FallbackMode::Default, _) => Err(ManifestError::FallbackScoreMissing),
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
fn relative_inside(field: &'static str, path: &str) -> Result<(), ManifestError> {
    let p = Path::new(path);
    let inside =
        !path.is_empty() && p.components().all(|c| matches!(c, PathPart::Normal(_) | PathPart::CurDir));
    if inside { Ok(()) } else { Err(ManifestError::PathOutside { field, path: path.to_owned() }) }
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
        assert_eq!(m.limits.deadline_ms, crate::sandbox::limits::DEFAULT_DEADLINE_MS);
        let cfg = m.config_entries();
        assert!(cfg.contains(&("label".into(), "x".into())));
        assert!(cfg.contains(&("rates".into(), r#"{"EUR":1.1}"#.into())));
    }

    #[test]
    fn a_state_table_is_checked_at_parse_time() {
        let m = Manifest::parse(&format!("{GOOD}\n[state.aggregates.card]\nwindows = [\"10m\", \"24h\"]\n"))
            .unwrap();
        let ns = m.state().unwrap();
        assert_eq!((ns.name.as_str(), ns.aggregates["card"].windows.len()), ("logreg", 2));
        assert!(Manifest::parse(GOOD).unwrap().state().is_none());
        let e =
            Manifest::parse(&format!("{GOOD}\n[state.aggregates.card]\nwindows = [\"61m\"]\n")).unwrap_err();
        assert!(
            matches!(e, ManifestError::State(_)) && e.to_string().contains("state.aggregates.card.windows"),
            "{e}"
        );
    }

    #[test]
    fn unknown_field_is_named() {
        let e = Manifest::parse(&GOOD.replace("fuel = 1000", "fuel = 1000\ndealine_ms = 5")).unwrap_err();
        assert!(matches!(e, ManifestError::Toml(_)) && e.to_string().contains("dealine_ms"), "{e}");
        let e = Manifest::parse(&format!("colour = 1\n{GOOD}")).unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
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
        assert_eq!(
            Manifest::parse(
                &extractor.replace("[config]", "[fallback]\nmode = \"default\"\nscore = 0.25\n[config]")
            )
            .unwrap_err(),
            ManifestError::FallbackNotScorer
        );
        assert_eq!(Manifest::parse(GOOD).unwrap().fallback.score_for(&trap), None);
    }

    #[test]
    fn rejects_escaping_paths_and_bad_names() {
        use ManifestError as E;
        let value = |field: &str| {
            let field = field.to_owned();
            move |e: &E| matches!(e, E::Value(v) if v.field == field)
        };
        type Expect = Box<dyn Fn(&E) -> bool>;
        let cases: Vec<(&str, &str, Expect)> = vec![
            (
                "\"logreg.wasm\"",
                "\"../x.wasm\"",
                Box::new(|e| matches!(e, E::PathOutside { field: "component", .. })),
            ),
            ("\"logreg.wasm\"", "\"/etc/x.wasm\"", Box::new(|e| matches!(e, E::PathOutside { .. }))),
            ("\"logreg\"", "\"../evil\"", Box::new(|e| matches!(e, E::Name { .. }))),
            ("\"logreg\"", "\"Big Name\"", Box::new(|e| matches!(e, E::Name { .. }))),
            ("fuel = 1000", "fuel = 0", Box::new(value("limits.fuel"))),
            ("\"scorer\"", "\"ranker\"", Box::new(|e| matches!(e, E::Toml(_)))),
            ("[config]", "[instances]\nmax_reuse = 0\n[config]", Box::new(value("instances.max_reuse"))),
            ("[config]", "[instances]\nreuse = true\n[config]", Box::new(|e| matches!(e, E::Toml(_)))),
            ("[config]", "[breaker]\nfault_rate = 0\n[config]", Box::new(value("breaker.fault_rate"))),
            (
                "[config]",
                "[breaker]\nbackoff_ms = 10\nmax_backoff_ms = 5\n[config]",
                Box::new(value("breaker.max_backoff_ms")),
            ),
            (
                "[config]",
                "[fallback]\nmode = \"default\"\n[config]",
                Box::new(|e| *e == E::FallbackScoreMissing),
            ),
            ("[config]", "[fallback]\nscore = 0.5\n[config]", Box::new(|e| *e == E::FallbackScoreUnused)),
            (
                "[config]",
                "[fallback]\nmode = \"default\"\nscore = nan\n[config]",
                Box::new(|e| *e == E::FallbackScoreMissing),
            ),
            ("[config]", "[fallback]\nmode = \"maybe\"\n[config]", Box::new(|e| matches!(e, E::Toml(_)))),
            ("fuel = 1000", "fuel = 1000\nmax_in_flight = 0", Box::new(value("limits.max_in_flight"))),
            ("[config]", "[inputs]\nignore = [\"\"]\n[config]", Box::new(value("inputs.ignore"))),
        ];
        for (from, to, expected) in cases {
            match Manifest::parse(&GOOD.replacen(from, to, 1)) {
                Ok(_) => panic!("{to} accepted"),
                Err(e) => assert!(expected(&e), "{to}: unexpected error {e:?}"),
            }
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
