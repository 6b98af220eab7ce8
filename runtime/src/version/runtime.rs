//! [`Runtime`]: the engine, the linker and the compiled cache, built once per
//! process and used to load every plugin version.

use std::path::Path;
use std::sync::Arc;

use crate::sandbox::cache::ComponentCache;
use crate::sandbox::engine::{HostEngine, PoolSize};
use crate::sandbox::error::LoadError;
use crate::sandbox::host::Linkers;
use crate::version::plugin::PluginVersion;

/// Everything plugin versions share. Create one per process.
pub struct Runtime {
    engine: Arc<HostEngine>,
    linkers: Linkers,
    cache: Option<ComponentCache>,
}

impl Runtime {
    /// A runtime with an instance pool of `pool` and, if given, a compiled cache.
    pub fn new(pool: PoolSize, cache: Option<ComponentCache>) -> Result<Self, LoadError> {
        let engine = HostEngine::new(pool).map_err(|e| LoadError::engine("creating the engine", e))?;
        Self::with_engine(engine, cache)
    }

    /// A runtime whose calls have no fuel budget and no deadline, for
    /// measuring what the two cost (see [`HostEngine::unmetered`]). Never
    /// serve with it.
    pub fn unmetered(pool: PoolSize) -> Result<Self, LoadError> {
        let engine = HostEngine::unmetered(pool).map_err(|e| LoadError::engine("creating the engine", e))?;
        Self::with_engine(engine, None)
    }

    fn with_engine(engine: Arc<HostEngine>, cache: Option<ComponentCache>) -> Result<Self, LoadError> {
        let linkers =
            Linkers::new(engine.engine()).map_err(|e| LoadError::engine("building the linkers", e))?;
        Ok(Self { engine, linkers, cache })
    }

    /// Loads the plugin directory `dir`. Compiles, initialises and snapshots it,
    /// or takes it from the compiled cache.
    pub fn load(&self, dir: &Path) -> Result<PluginVersion, LoadError> {
        PluginVersion::load(&self.engine, &self.linkers, dir, self.cache.as_ref())
    }

    /// The shared engine.
    pub fn engine(&self) -> &Arc<HostEngine> {
        &self.engine
    }
}
