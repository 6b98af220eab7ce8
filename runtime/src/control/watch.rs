//! The store watcher: the way in for deploy tools that write the store
//! directly instead of calling the admin API.
//!
//! A version directory renamed into `<store>/<name>/` is gated and becomes
//! `ready`; a `state.json` rewritten to name another live version swaps it in
//! (if it passes the gate — otherwise the live version keeps serving and the
//! reason is logged). Events are debounced, then [`Admin::sync_from_store`]
//! compares the store with what is in memory; it takes the same lock as admin
//! calls, so the two ways in never interleave.

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher};

use crate::control::admin::Admin;

/// A change is handled once the store has been quiet this long: events
/// closer together than this are one change (a copy in progress keeps
/// writing, so it is not gated half-done).
pub const DEBOUNCE: Duration = Duration::from_millis(200);
/// The longest a stream of events delays handling them: a store that never
/// goes quiet is still synced this often.
pub const MAX_SETTLE: Duration = Duration::from_secs(10);

/// A running watcher; dropping it stops watching (and its thread ends).
pub struct StoreWatcher {
    _watcher: notify::RecommendedWatcher,
    _thread: JoinHandle<()>,
}

/// Watches the store at `root` and keeps `admin` in line with it.
pub fn watch(admin: Arc<Admin>, root: &Path) -> notify::Result<StoreWatcher> {
    let (tx, rx) = std::sync::mpsc::channel::<notify::Result<notify::Event>>();
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = tx.send(event);
    })?;
    watcher.watch(root, RecursiveMode::Recursive)?;
    let thread = std::thread::Builder::new()
        .name("scorehost-store-watch".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                if let Err(e) = first {
                    tracing::warn!("store watcher: {e}");
                }
                // Quiet for DEBOUNCE since the *last* event (not the first),
                // at most MAX_SETTLE in all.
                let give_up = Instant::now() + MAX_SETTLE;
                while Instant::now() < give_up && rx.recv_timeout(DEBOUNCE).is_ok() {}
                if let Err(e) = admin.sync_from_store() {
                    tracing::error!("store watcher: {e}");
                }
            }
        })
        .map_err(|e| notify::Error::generic(&e.to_string()))?;
    Ok(StoreWatcher { _watcher: watcher, _thread: thread })
}
