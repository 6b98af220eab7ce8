//! Which WIT world a component implements, and which export names match it.

use serde::Deserialize;

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
            World::Scorer => "scorehost:plugin/scorer@0.1.2",
            World::Extractor => "scorehost:plugin/extractor@0.1.2",
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
