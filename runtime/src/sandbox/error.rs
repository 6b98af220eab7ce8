//! The error taxonomy: why a call failed, and why a plugin failed to load.
//!
//! Every failure has a stable, machine-readable [`ErrorKind`]; tests assert the
//! kind, never a message, and the HTTP layer maps each kind to a status in one
//! place. Messages are for the on-call engineer: they name the plugin part, the
//! field or the limit involved.

use std::path::PathBuf;
use std::time::Duration;

use crate::sandbox::bindings::types as wit;

/// The stable code of a failure, as it appears in `{"error":{"kind":…}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The call used its whole fuel budget.
    OutOfFuel,
    /// The call ran past its wall-clock deadline.
    DeadlineExceeded,
    /// The instance tried to grow its memory past its cap.
    MemoryLimit,
    /// The guest exhausted its wasm stack.
    StackOverflow,
    /// The guest trapped: a panic, an `unreachable`, a bad memory access.
    GuestTrap,
    /// The input was rejected, by the host (shape, kind) or by the plugin.
    InvalidInput,
    /// The plugin reported a failure of its own.
    PluginError,
    /// The plugin returned something unusable (a NaN score, a wrong-shaped row).
    InvalidOutput,
    /// No instance slot is free right now; retry later.
    Overloaded,
    /// The operation does not apply to this plugin (scoring an extractor).
    Unsupported,
    /// The plugin version faulted too often and is quarantined by its circuit
    /// breaker for a back-off period (see [`crate::version::breaker`]).
    PluginQuarantined,
}

impl ErrorKind {
    /// Every kind, in declaration order (`kind as usize` indexes it).
    pub const ALL: [ErrorKind; 11] = [
        ErrorKind::OutOfFuel,
        ErrorKind::DeadlineExceeded,
        ErrorKind::MemoryLimit,
        ErrorKind::StackOverflow,
        ErrorKind::GuestTrap,
        ErrorKind::InvalidInput,
        ErrorKind::PluginError,
        ErrorKind::InvalidOutput,
        ErrorKind::Overloaded,
        ErrorKind::Unsupported,
        ErrorKind::PluginQuarantined,
    ];

    /// The snake_case code used in JSON and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::OutOfFuel => "out_of_fuel",
            ErrorKind::DeadlineExceeded => "deadline_exceeded",
            ErrorKind::MemoryLimit => "memory_limit",
            ErrorKind::StackOverflow => "stack_overflow",
            ErrorKind::GuestTrap => "guest_trap",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::PluginError => "plugin_error",
            ErrorKind::InvalidOutput => "invalid_output",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::PluginQuarantined => "plugin_quarantined",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why one call (or one row of a batch) failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// See [`ErrorKind::OutOfFuel`].
    #[error("out of fuel: the call used its whole budget of {budget} fuel units")]
    OutOfFuel {
        /// The budget it had.
        budget: u64,
    },
    /// See [`ErrorKind::DeadlineExceeded`].
    #[error(
        "deadline exceeded: the call was stopped after {deadline:?} (the plugin itself ran {ran:?} of it)"
    )]
    DeadlineExceeded {
        /// The deadline it had.
        deadline: Duration,
        /// How long the call was on a thread (guest code and host calls);
        /// the rest it spent waiting for a busy host. The circuit breaker
        /// counts a deadline hit against the plugin only if it ran at least
        /// half of its deadline ([`crate::version::breaker::is_fault`]).
        ran: Duration,
    },
    /// See [`ErrorKind::MemoryLimit`].
    #[error("memory limit: the instance tried to grow to {requested} bytes, over its cap of {limit} bytes")]
    MemoryLimit {
        /// The cap.
        limit: u64,
        /// What it asked for.
        requested: u64,
    },
    /// See [`ErrorKind::StackOverflow`].
    #[error("stack overflow in the plugin (unbounded recursion?)")]
    StackOverflow,
    /// See [`ErrorKind::GuestTrap`].
    #[error("the plugin trapped: {message}")]
    GuestTrap {
        /// The trap and, for a panic, the plugin's panic message.
        message: String,
    },
    /// See [`ErrorKind::InvalidInput`].
    #[error("invalid input: {message}")]
    InvalidInput {
        /// Names the field and what was expected.
        message: String,
    },
    /// See [`ErrorKind::PluginError`].
    #[error("plugin error: {message}")]
    PluginError {
        /// The plugin's own message.
        message: String,
    },
    /// See [`ErrorKind::InvalidOutput`].
    #[error("invalid output from the plugin: {message}")]
    InvalidOutput {
        /// What was wrong with it.
        message: String,
    },
    /// See [`ErrorKind::Overloaded`].
    #[error("overloaded: {message}")]
    Overloaded {
        /// Which resource ran out.
        message: String,
    },
    /// See [`ErrorKind::Unsupported`].
    #[error("unsupported: {message}")]
    Unsupported {
        /// What was asked of which plugin.
        message: String,
    },
    /// See [`ErrorKind::PluginQuarantined`].
    #[error(
        "`{plugin}` is quarantined after repeated faults; a probe call is let through in {}s",
        retry_after.as_secs_f64().ceil()
    )]
    Quarantined {
        /// `name@version`.
        plugin: String,
        /// Time until the next probe may run.
        retry_after: Duration,
    },
}

impl CallError {
    /// The stable kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CallError::OutOfFuel { .. } => ErrorKind::OutOfFuel,
            CallError::DeadlineExceeded { .. } => ErrorKind::DeadlineExceeded,
            CallError::MemoryLimit { .. } => ErrorKind::MemoryLimit,
            CallError::StackOverflow => ErrorKind::StackOverflow,
            CallError::GuestTrap { .. } => ErrorKind::GuestTrap,
            CallError::InvalidInput { .. } => ErrorKind::InvalidInput,
            CallError::PluginError { .. } => ErrorKind::PluginError,
            CallError::InvalidOutput { .. } => ErrorKind::InvalidOutput,
            CallError::Overloaded { .. } => ErrorKind::Overloaded,
            CallError::Unsupported { .. } => ErrorKind::Unsupported,
            CallError::Quarantined { .. } => ErrorKind::PluginQuarantined,
        }
    }

    /// Shorthand for host-side input validation failures.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        CallError::InvalidInput { message: message.into() }
    }
}

/// Why a plugin version could not be loaded. Loading fails before anything is
/// served, so none of these ever reaches a caller of a live version.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// A file of the plugin could not be read.
    #[error("cannot read {path}: {cause}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error (in the message, so not also a `source`).
        cause: std::io::Error,
    },
    /// `plugin.toml` is malformed, has an unknown field or an invalid value.
    #[error("invalid manifest {path}: {error}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong, naming the field: a `version::manifest::ManifestError`
        /// (boxed: this layer does not know the manifest's types; downcast to
        /// match on it). In the message, so not also a `source`.
        error: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The file is not a valid WebAssembly component (or not wasm at all).
    #[error("{path} is not a valid WebAssembly component: {message}")]
    InvalidComponent {
        /// The component file.
        path: PathBuf,
        /// The validator's message.
        message: String,
    },
    /// The component imports something the host does not grant.
    #[error(
        "the component imports {}, which scorehost does not grant \
         (granted: scorehost:plugin/log, scorehost:plugin/state with a [state] table, wasi:cli environment/exit/stdio, wasi:clocks without timers, \
         wasi:random, wasi:io, wasi:filesystem read-only model dir, wasi:sockets with every use denied; never http)",
        imports.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", ")
    )]
    UngrantedImport {
        /// Every ungranted import's full name, e.g. `wasi:http/outgoing-handler@0.2.6`.
        imports: Vec<String>,
    },
    /// The component does not implement the world its manifest declares.
    #[error("the component does not implement the `{world}` world its manifest declares: {message}")]
    WrongWorld {
        /// The declared world.
        world: String,
        /// What is missing or mistyped.
        message: String,
    },
    /// `init` returned an error or trapped.
    #[error("init failed: {0}")]
    Init(CallError),
    /// The plugin's metadata contradicts its manifest or itself.
    #[error("invalid metadata: {0}")]
    Metadata(MetadataError),
    /// Anything else wasmtime reported while compiling or snapshotting.
    #[error("{context}: {message}")]
    Engine {
        /// The step that failed.
        context: &'static str,
        /// wasmtime's message.
        message: String,
    },
}

/// Why what a plugin's `describe()` declares cannot be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    /// `describe()` itself failed.
    #[error("calling describe() failed: {0}")]
    Describe(CallError),
    /// The plugin's name or version is not the manifest's.
    #[error(
        "the plugin says it is {plugin}, the manifest says {manifest} (a manifest version may add \
         `+build` metadata to the plugin's, e.g. {plugin_version}+model.2, for a new model with the same code)"
    )]
    NotTheManifests {
        /// `name@version` as the plugin declares it.
        plugin: String,
        /// The plugin's version alone.
        plugin_version: String,
        /// `name@version` as the manifest declares it.
        manifest: String,
    },
    /// The declared inputs or outputs cannot be laid out: a
    /// `version::layout::LayoutError` (boxed: this layer does not know its
    /// type), naming the field or the limit.
    #[error("{which}: {error}")]
    Fields {
        /// `inputs` or `outputs`.
        which: &'static str,
        /// What is wrong with them.
        error: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A configured value outside what scorehost accepts: a manifest's limit,
/// breaker or instance setting, a field list. Names the field, the value given
/// and what is allowed, e.g. `limits.fuel = 0 must be between 1 and 10000000000`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} = {value} must be {allowed}")]
pub struct InvalidValue {
    /// The field, as written in `plugin.toml` (`limits.fuel`).
    pub field: String,
    /// The value given, as text.
    pub value: String,
    /// What is accepted (`between 1 and 50`, `in (0, 1]`).
    pub allowed: String,
}

impl InvalidValue {
    /// `field = value` is outside `allowed`.
    pub fn new(field: impl Into<String>, value: impl std::fmt::Display, allowed: impl Into<String>) -> Self {
        Self { field: field.into(), value: value.to_string(), allowed: allowed.into() }
    }
}

/// Cuts `s` to at most `max` bytes on a char boundary; whether it did. For
/// the messages a plugin hands the host (log lines, error messages), which
/// are kept only up to a cap.
pub(crate) fn truncate_at(s: &mut String, max: usize) -> bool {
    if s.len() <= max {
        return false;
    }
    s.truncate(s.floor_char_boundary(max));
    true
}

/// Longest plugin error message the host keeps, in bytes; the rest is cut
/// right after the message is lifted, before it is copied into a response,
/// a log line or a metric (a 50 MiB message once grew the server by 300 MiB).
pub const MAX_ERROR_MESSAGE_BYTES: usize = 4096;

/// A plugin-reported error, by whose fault it is, its message cut to
/// [`MAX_ERROR_MESSAGE_BYTES`].
pub fn plugin_error(e: wit::PluginError) -> CallError {
    let message = cut(e.message, MAX_ERROR_MESSAGE_BYTES);
    match e.kind {
        wit::ErrorKind::InvalidInput => CallError::InvalidInput { message },
        wit::ErrorKind::Internal => CallError::PluginError { message },
    }
}

/// `s` cut to at most `max` bytes (on a char boundary), saying so.
fn cut(mut s: String, max: usize) -> String {
    let total = s.len();
    if truncate_at(&mut s, max) {
        s.shrink_to_fit();
        s.push_str(&format!("… [cut: {total} bytes in all]"));
    }
    s
}

impl LoadError {
    /// The component does not implement `world`: what wasmtime found missing or mistyped.
    pub(crate) fn wrong_world(world: crate::sandbox::world::World, e: impl std::fmt::Display) -> Self {
        LoadError::WrongWorld { world: world.as_str().into(), message: format!("{e:#}") }
    }

    pub(crate) fn engine(context: &'static str, err: impl std::fmt::Display) -> Self {
        LoadError::Engine { context, message: format!("{err:#}") }
    }
}
