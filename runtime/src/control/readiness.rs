//! Whether the server should take traffic yet, beyond having plugins loaded:
//! a fleet replica is not ready until it has applied the fleet's state as it
//! was when the replica started (or, with etcd unreachable, the state it
//! persisted). `/readyz` reads it (`http/handlers.rs`); the fleet replica
//! sets it (`fleet/replica.rs`). Single-node servers never set it: ready.

use std::sync::Mutex;

/// A shared "not ready because …" flag. Starts ready.
#[derive(Debug, Default)]
pub struct Readiness {
    waiting: Mutex<Option<String>>,
}

impl Readiness {
    /// Marks the server not ready, saying what it waits for (shown by `/readyz`).
    pub fn wait_for(&self, reason: impl Into<String>) {
        *self.lock() = Some(reason.into());
    }

    /// Marks the server ready.
    pub fn ready(&self) {
        *self.lock() = None;
    }

    /// What the server still waits for; `None` when ready.
    pub fn pending(&self) -> Option<String> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
