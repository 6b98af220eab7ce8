//! The on-disk cache of compiled, pre-initialised components.
//!
//! Keyed by a hash of everything the compiled artifact depends on: the
//! component bytes, the config `init` receives, every file of the model
//! directory, the engine's settings (wasmtime's compatibility hash) and the
//! scorehost version. A restart with unchanged inputs deserialises the artifact
//! instead of instrumenting, initialising and compiling again.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::manifest::World;

/// A directory of `<key>.cwasm` files written only by scorehost.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: PathBuf,
}

/// A cache key: a hex SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey(pub String);

impl ComponentCache {
    /// A cache in `dir`, created if needed. Refuses a directory that other
    /// users could write to: its files are loaded as native code.
    pub fn new(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&dir)?.permissions().mode();
            if mode & 0o022 != 0 {
                return Err(std::io::Error::other(format!(
                    "cache dir {} is writable by group or others (mode {:o}); use a private directory",
                    dir.display(),
                    mode & 0o777
                )));
            }
        }
        Ok(Self { dir })
    }

    /// The default location: `$SCOREHOST_CACHE_DIR`, else `$XDG_CACHE_HOME/scorehost`,
    /// else `$HOME/.cache/scorehost`; `None` (no cache) when none is set — never a
    /// shared temporary directory.
    pub fn default_dir() -> Option<PathBuf> {
        if let Some(d) = std::env::var_os("SCOREHOST_CACHE_DIR") {
            return Some(d.into());
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(base.join("scorehost"))
    }

    fn path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{}.cwasm", key.0))
    }

    /// The cached component for `key`, if present and loadable by this engine.
    /// A stale or corrupt entry is removed and reported as a miss.
    pub fn get(&self, engine: &Engine, key: &CacheKey) -> Option<Component> {
        let path = self.path(key);
        if !path.exists() {
            return None;
        }
        // SAFETY: files in the cache directory are written only by `put` below,
        // from `Component::serialize` of this same engine configuration (the key
        // includes the engine's compatibility hash); wasmtime still checks the
        // header and rejects an artifact from a different engine or version.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), "discarding unusable cache entry: {e:#}");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Stores `component` under `key`: write a temp file, then rename, so a
    /// reader never sees half an artifact.
    pub fn put(&self, key: &CacheKey, component: &Component) -> std::io::Result<()> {
        let bytes = component.serialize().map_err(std::io::Error::other)?;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        tmp.write_all(&bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(self.path(key)).map_err(|e| e.error)?;
        Ok(())
    }
}

/// Hex SHA-256 of the component bytes: the version's content hash.
pub fn content_hash(wasm: &[u8]) -> String {
    hex(&Sha256::digest(wasm))
}

/// The cache key of a component initialised as `world` with `config` and `model_dir`.
pub fn key(
    engine: &Engine,
    world: World,
    wasm: &[u8],
    config: &[(String, String)],
    model_dir: Option<&Path>,
) -> std::io::Result<CacheKey> {
    let mut h = Sha256::new();
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.update(world.as_str().as_bytes());
    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut engine_hash);
    h.update(engine_hash.finish().to_le_bytes());
    h.update(Sha256::digest(wasm));
    for (k, v) in config {
        h.update((k.len() as u64).to_le_bytes());
        h.update(k.as_bytes());
        h.update((v.len() as u64).to_le_bytes());
        h.update(v.as_bytes());
    }
    if let Some(dir) = model_dir {
        let dir = Dir::open_ambient_dir(dir, ambient_authority())?;
        hash_dir(&dir, "", &mut h)?;
    }
    Ok(CacheKey(hex(&h.finalize())))
}

/// Hashes every file under `dir` by relative path and content, in sorted order.
fn hash_dir(dir: &Dir, prefix: &str, h: &mut Sha256) -> std::io::Result<()> {
    let mut entries: Vec<_> = dir.entries()?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = format!("{prefix}/{}", entry.file_name().to_string_lossy());
        h.update(name.as_bytes());
        if entry.file_type()?.is_dir() {
            hash_dir(&entry.open_dir()?, &name, h)?;
        } else {
            let bytes = dir.read(entry.file_name())?;
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(&bytes);
        }
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_directory_others_can_write_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(ComponentCache::new(tmp.path()).is_ok());
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = ComponentCache::new(tmp.path()).unwrap_err();
        assert!(e.to_string().contains("writable by group or others"), "{e}");
    }
}
