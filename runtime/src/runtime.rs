//! [`Runtime`]: the engine, the linker and the compiled cache, built once per
//! process and used to load every plugin version.

use std::path::Path;
use std::sync::Arc;

use wasmtime::component::Linker;

use crate::cache::ComponentCache;
use crate::engine::{HostEngine, PoolSize};
use crate::error::LoadError;
use crate::host::{self, HostState};
use crate::plugin::PluginVersion;

/// Everything plugin versions share. Create one per process.
pub struct Runtime {
    engine: Arc<HostEngine>,
    linker: Linker<HostState>,
    cache: Option<ComponentCache>,
}

impl Runtime {
    /// A runtime with an instance pool of `pool` and, if given, a compiled cache.
    pub fn new(pool: PoolSize, cache: Option<ComponentCache>) -> Result<Self, LoadError> {
        let engine = HostEngine::new(pool).map_err(|e| LoadError::engine("creating the engine", e))?;
        let linker =
            host::linker(engine.engine()).map_err(|e| LoadError::engine("building the linker", e))?;
        Ok(Self { engine, linker, cache })
    }

    /// Loads the plugin directory `dir`. Compiles, initialises and snapshots it,
    /// or takes it from the compiled cache.
    pub fn load(&self, dir: &Path) -> Result<PluginVersion, LoadError> {
        PluginVersion::load(&self.engine, &self.linker, dir, self.cache.as_ref())
    }

    /// The shared engine.
    pub fn engine(&self) -> &Arc<HostEngine> {
        &self.engine
    }
}
