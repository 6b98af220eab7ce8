//! The error a plugin returns, and whose fault it is.

use std::fmt;

use crate::bindings::types;

/// A failure a plugin reports to the host. The kind decides the HTTP status:
/// [`PluginError::invalid_input`] is the caller's fault (422),
/// [`PluginError::internal`] the plugin's (500).
#[derive(Debug, Clone, PartialEq)]
pub struct PluginError {
    /// Whose fault it is.
    pub kind: ErrorKind,
    /// What went wrong, naming the field or config key involved.
    pub message: String,
}

/// Whose fault a [`PluginError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller sent input the plugin cannot use.
    InvalidInput,
    /// The plugin failed: bad config, broken model, bug.
    Internal,
}

/// The result type of every plugin entry point.
pub type Result<T, E = PluginError> = std::result::Result<T, E>;

impl PluginError {
    /// The caller's fault: a missing field, a value out of range.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::InvalidInput, message: message.into() }
    }

    /// The plugin's fault: bad config, unreadable model, a bug.
    pub fn internal(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::Internal, message: message.into() }
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = match self.kind {
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::Internal => "plugin error",
        };
        write!(f, "{who}: {}", self.message)
    }
}

impl std::error::Error for PluginError {}

impl From<PluginError> for types::PluginError {
    fn from(e: PluginError) -> Self {
        let kind = match e.kind {
            ErrorKind::InvalidInput => types::ErrorKind::InvalidInput,
            ErrorKind::Internal => types::ErrorKind::Internal,
        };
        types::PluginError { kind, message: e.message }
    }
}

impl From<types::PluginError> for PluginError {
    fn from(e: types::PluginError) -> Self {
        let kind = match e.kind {
            types::ErrorKind::InvalidInput => ErrorKind::InvalidInput,
            types::ErrorKind::Internal => ErrorKind::Internal,
        };
        PluginError { kind, message: e.message }
    }
}
