//! The plugin's configuration: the `[config]` table of its manifest.

use std::str::FromStr;

use serde::de::DeserializeOwned;

use crate::error::{PluginError, Result};

/// The key/values of the manifest's `[config]` table, handed to `init` once.
///
/// Strings arrive as they are; numbers, booleans, arrays and tables arrive as
/// JSON text, so [`Config::json`] reads a rate table or a weight vector directly.
/// Every accessor's error names the key, and is the plugin's fault (HTTP 500):
/// config is the plugin owner's responsibility, not the caller's.
#[derive(Debug, Clone, Default)]
pub struct Config {
    entries: Vec<(String, String)>,
}

impl Config {
    /// Builds a config from key/value pairs (what the host passes, or a test's own).
    pub fn new<K: Into<String>, V: Into<String>>(entries: impl IntoIterator<Item = (K, V)>) -> Self {
        Self { entries: entries.into_iter().map(|(k, v)| (k.into(), v.into())).collect() }
    }

    /// The raw text of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The raw text of `key`, or an error naming it.
    pub fn require(&self, key: &str) -> Result<&str> {
        self.get(key)
            .ok_or_else(|| PluginError::internal(format!("config key `{key}` is required but not set")))
    }

    /// `key` parsed with [`FromStr`] (numbers, booleans), if present.
    pub fn parse<T: FromStr>(&self, key: &str) -> Result<Option<T>>
    where
        T::Err: std::fmt::Display,
    {
        self.get(key)
            .map(|raw| {
                raw.trim_matches('"').parse::<T>().map_err(|e| {
                    PluginError::internal(format!("config key `{key}` = {raw:?} cannot be parsed: {e}"))
                })
            })
            .transpose()
    }

    /// `key` deserialised from its JSON text (tables, arrays), if present.
    pub fn json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.get(key)
            .map(|raw| {
                serde_json::from_str(raw).map_err(|e| {
                    PluginError::internal(format!("config key `{key}` has the wrong shape: {e}"))
                })
            })
            .transpose()
    }

    /// Every entry, in manifest order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Where the manifest's model directory is visible to the plugin, during `init` only.
pub const MODEL_DIR: &str = "/model";

/// Reads a file of the model directory. Call it from `init`: per-row calls have no
/// file access at all. The error names the file and is the plugin's fault.
pub fn read_model_file(name: &str) -> Result<Vec<u8>> {
    #[cfg(not(target_arch = "wasm32"))]
    let dir = crate::testing::model_dir().map_or_else(|| MODEL_DIR.to_owned(), |d| d.display().to_string());
    #[cfg(target_arch = "wasm32")]
    let dir = MODEL_DIR;
    let path = format!("{dir}/{name}");
    std::fs::read(&path).map_err(|e| PluginError::internal(format!("cannot read model file `{path}`: {e}")))
}
