//! The on-disk cache of compiled, pre-initialised components.
//!
//! Keyed by a hash of everything the compiled artifact depends on: the
//! component bytes, the config `init` receives, every file of the model
//! directory, the engine's settings (wasmtime's compatibility hash) and the
//! scorehost version. A restart with unchanged inputs deserialises the artifact
//! instead of instrumenting, initialising and compiling again.
//!
//! An artifact is native code, so it is not trusted by its file name. The
//! directory must be a real directory (not a symlink) owned by this process's
//! effective uid and not writable by group or others ([`ComponentCache::new`]).
//! Each `<key>.cwasm` has a `<key>.cwasm.sha256` beside it, written by
//! [`ComponentCache::put`]: the SHA-256 of the key and the artifact bytes.
//! [`ComponentCache::get`] checks the file's owner and mode on the open handle,
//! reads it, and loads those same bytes only if they match that digest; an
//! entry that fails any check is logged, removed and treated as a miss.

use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::sandbox::world::World;

/// A directory of `<key>.cwasm` files and their `<key>.cwasm.sha256` digests,
/// written only by scorehost.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: PathBuf,
    /// The effective uid the directory and every entry must be owned by.
    #[cfg(unix)]
    euid: u32,
}

/// A cache key: a hex SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey(pub String);

/// The longest digest file read: a hex SHA-256 is 64 bytes.
const DIGEST_FILE_MAX: u64 = 256;

impl ComponentCache {
    /// A cache in `dir`, created if needed (mode 0700 on unix); called once at
    /// startup. Refuses a directory that is a symlink, is owned by another uid
    /// than this process's effective uid, or that group or others could write
    /// to: its files are loaded as native code. The error names the directory,
    /// its owner and its mode.
    pub fn new(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&dir)?;
        #[cfg(unix)]
        let euid = check_dir(&dir)?;
        Ok(Self {
            dir,
            #[cfg(unix)]
            euid,
        })
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

    fn digest_path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{}.cwasm.sha256", key.0))
    }

    /// The cached component for `key`, if present, trusted and loadable by this
    /// engine; called by every plugin load before compiling. A stale, corrupt or
    /// untrusted entry (wrong owner or mode, missing or mismatched digest) is
    /// logged, removed and reported as a miss.
    pub fn get(&self, engine: &Engine, key: &CacheKey) -> Option<Component> {
        let path = self.path(key);
        let bytes = match self.read_verified(key, &path) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return None,
            Err(why) => {
                tracing::warn!(path = %path.display(), "discarding untrusted cache entry: {why}");
                self.discard(key);
                return None;
            }
        };
        // SAFETY: `deserialize` runs these bytes as native code, so they must be
        // what `Component::serialize` produced. Before this point: the directory
        // was checked in `new` to be a real directory owned by this process's
        // effective uid and not writable by group or others; the artifact was
        // opened (without following a symlink, on Linux) and its handle checked
        // to be a regular file with that same owner and no group/other write
        // bit; and the exact bytes read from that handle — the bytes loaded here,
        // not the file again — were hashed together with `key` and matched the
        // digest `put` wrote beside them, so a file altered or truncated after
        // `put`, or copied from another key, never gets here. The key includes
        // the engine's compatibility hash, and wasmtime still checks the header
        // and rejects an artifact from a different engine or version. Not
        // covered: a process of this same uid (or root) rewriting both files,
        // which could run any native code as this user anyway.
        match unsafe { Component::deserialize(engine, &bytes) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), "discarding unusable cache entry: {e:#}");
                self.discard(key);
                None
            }
        }
    }

    /// The bytes of `key`'s artifact at `path` once its owner, mode and digest
    /// check out; `Ok(None)` when there is no artifact (a plain miss).
    fn read_verified(&self, key: &CacheKey, path: &Path) -> Result<Option<Vec<u8>>, Rejected> {
        let mut file = match open_nofollow(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(cause) => return Err(Rejected::Io { path: path.to_owned(), cause }),
        };
        let len = self.check_handle(&file, path)?;
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        file.read_to_end(&mut bytes).map_err(|cause| Rejected::Io { path: path.to_owned(), cause })?;

        let digest_path = self.digest_path(key);
        let digest_file = match open_nofollow(&digest_path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Rejected::NoDigest { path: digest_path });
            }
            Err(cause) => return Err(Rejected::Io { path: digest_path, cause }),
        };
        self.check_handle(&digest_file, &digest_path)?;
        let mut recorded = Vec::new();
        if let Err(cause) = digest_file.take(DIGEST_FILE_MAX).read_to_end(&mut recorded) {
            return Err(Rejected::Io { path: digest_path, cause });
        }
        if !verify(key, &bytes, &recorded) {
            return Err(Rejected::Mismatch { path: digest_path });
        }
        Ok(Some(bytes))
    }

    /// Checks an open cache file (fstat, so it is the file that is read): a
    /// regular file owned by this process's effective uid that group and others
    /// cannot write. Returns its length.
    #[cfg(unix)]
    fn check_handle(&self, file: &File, path: &Path) -> Result<u64, Rejected> {
        let meta = file.metadata().map_err(|cause| Rejected::Io { path: path.to_owned(), cause })?;
        let entry = Stat::of(&meta);
        entry.check(self.euid, EntryKind::File).map_err(|why| Rejected::Untrusted {
            path: path.to_owned(),
            why,
            owner: entry.uid,
            mode: entry.mode & 0o7777,
        })?;
        Ok(meta.len())
    }

    /// Without unix owners and modes, only the length (for the read buffer).
    #[cfg(not(unix))]
    fn check_handle(&self, file: &File, path: &Path) -> Result<u64, Rejected> {
        file.metadata().map(|m| m.len()).map_err(|cause| Rejected::Io { path: path.to_owned(), cause })
    }

    /// Removes `key`'s artifact and digest; either may already be gone.
    fn discard(&self, key: &CacheKey) {
        let _ = std::fs::remove_file(self.path(key));
        let _ = std::fs::remove_file(self.digest_path(key));
    }

    /// Stores `component` under `key`; called after a plugin load compiled it.
    /// Writes the artifact, then its digest file (SHA-256 of key and artifact),
    /// each to a temp file renamed into place, so a reader never sees half of
    /// either; a reader between the two renames sees a mismatch, a miss.
    pub fn put(&self, key: &CacheKey, component: &Component) -> std::io::Result<()> {
        let bytes = component.serialize().map_err(std::io::Error::other)?;
        self.write_atomically(&self.path(key), &bytes)?;
        self.write_atomically(&self.digest_path(key), digest(key, &bytes).as_bytes())?;
        Ok(())
    }

    /// Writes `bytes` to a temp file in the cache dir (mode 0600), syncs it and
    /// renames it to `to`.
    fn write_atomically(&self, to: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        tmp.write_all(bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(to).map_err(|e| e.error)?;
        Ok(())
    }
}

/// Why [`ComponentCache::get`] refused an entry; logged, then the entry is removed.
#[derive(Debug, thiserror::Error)]
enum Rejected {
    /// A file of the entry exists but could not be opened or read.
    #[error("cannot read {}: {cause}", path.display())]
    Io {
        /// The artifact or its digest file.
        path: PathBuf,
        /// The OS error.
        cause: std::io::Error,
    },
    /// A file of the entry has the wrong type, owner or mode.
    #[error("{} {why} (owner uid {owner}, mode {mode:o})", path.display())]
    Untrusted {
        /// The artifact or its digest file.
        path: PathBuf,
        /// What is wrong with it.
        why: Untrusted,
        /// Its owner.
        owner: u32,
        /// Its permission bits.
        mode: u32,
    },
    /// The artifact has no digest file (a crash between the two renames of
    /// `put`, or an entry written by a scorehost without digests).
    #[error("its digest file {} is missing", path.display())]
    NoDigest {
        /// The expected digest file.
        path: PathBuf,
    },
    /// The artifact's bytes and key do not hash to the recorded digest.
    #[error(
        "its bytes do not match the digest in {} (changed after it was written, or copied from another key)",
        path.display()
    )]
    Mismatch {
        /// The digest file.
        path: PathBuf,
    },
}

/// Opens `path` for reading; on Linux without following a symlink (`O_NOFOLLOW`
/// makes the open fail) and without blocking on a FIFO (`O_NONBLOCK`; no effect
/// on a regular file). The handle is then checked by `check_handle`.
fn open_nofollow(path: &Path) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    options.open(path)
}

/// The digest recorded beside an artifact: hex SHA-256 of the key's length
/// (u64 LE), the key and the artifact bytes. Including the key means an
/// artifact copied to another key's name, digest file and all, does not verify.
fn digest(key: &CacheKey, artifact: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update((key.0.len() as u64).to_le_bytes());
    h.update(key.0.as_bytes());
    h.update(artifact);
    hex(&h.finalize())
}

/// Whether `artifact` is what `put` wrote for `key`, given the contents of its
/// digest file (surrounding whitespace ignored).
fn verify(key: &CacheKey, artifact: &[u8], recorded: &[u8]) -> bool {
    recorded.trim_ascii() == digest(key, artifact).as_bytes()
}

/// What a directory entry is, as far as the cache's checks care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntryKind {
    Dir,
    File,
    Symlink,
    Other,
}

impl std::fmt::Display for EntryKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EntryKind::Dir => "a directory",
            EntryKind::File => "a regular file",
            EntryKind::Symlink => "a symbolic link",
            EntryKind::Other => "a special file",
        })
    }
}

/// Why an entry of (or the) cache directory is not trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum Untrusted {
    /// A symlink, or a file where a directory belongs, or the reverse.
    #[error("is {found}, not {expected}")]
    WrongKind {
        /// What it is.
        found: EntryKind,
        /// What it must be.
        expected: EntryKind,
    },
    /// Someone else owns it.
    #[error("is owned by uid {owner}, not by this process's effective uid {euid}")]
    NotOwned {
        /// Its owner.
        owner: u32,
        /// This process's effective uid.
        euid: u32,
    },
    /// Another user could replace or rewrite it.
    #[error("is writable by group or others")]
    Writable,
}

/// The owner, mode and kind of a directory entry: what the trust checks look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    uid: u32,
    /// `st_mode`, file-type bits included.
    mode: u32,
    kind: EntryKind,
}

impl Stat {
    /// The entry `meta` describes (from lstat for a path, fstat for a handle).
    #[cfg(unix)]
    fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        let t = meta.file_type();
        let kind = if t.is_symlink() {
            EntryKind::Symlink
        } else if t.is_dir() {
            EntryKind::Dir
        } else if t.is_file() {
            EntryKind::File
        } else {
            EntryKind::Other
        };
        Stat { uid: meta.uid(), mode: meta.mode(), kind }
    }

    /// Trusted as `expected` by a process with effective uid `euid`: of that
    /// kind, owned by `euid`, and not writable by group or others.
    fn check(&self, euid: u32, expected: EntryKind) -> Result<(), Untrusted> {
        if self.kind != expected {
            return Err(Untrusted::WrongKind { found: self.kind, expected });
        }
        if self.uid != euid {
            return Err(Untrusted::NotOwned { owner: self.uid, euid });
        }
        if self.mode & 0o022 != 0 {
            return Err(Untrusted::Writable);
        }
        Ok(())
    }
}

/// Checks the cache dir itself (lstat, so a symlink is seen, not followed): a
/// directory owned by this process's effective uid that group and others cannot
/// write. Returns that uid, which every file in it must be owned by too.
#[cfg(unix)]
fn check_dir(dir: &Path) -> std::io::Result<u32> {
    // Without a trailing `/` or `/.`, with which lstat would follow a symlink.
    let normalized: PathBuf = dir.components().collect();
    let entry = Stat::of(&std::fs::symlink_metadata(&normalized)?);
    let euid = effective_uid(dir)?;
    entry.check(euid, EntryKind::Dir).map_err(|why| {
        std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "cache dir {} {why} (owner uid {}, mode {:o}); use a private directory owned by uid {euid}",
                dir.display(),
                entry.uid,
                entry.mode & 0o7777
            ),
        )
    })?;
    Ok(euid)
}

/// This process's effective uid: the owner the cache dir and its files must have.
#[cfg(target_os = "linux")]
fn effective_uid(_dir: &Path) -> std::io::Result<u32> {
    // SAFETY: geteuid takes no arguments, touches no memory and always succeeds.
    Ok(unsafe { libc::geteuid() })
}

/// This process's effective uid, without libc: the owner of a file it has just
/// created (unlinked at once) in `dir`, which is always the creator's euid.
#[cfg(all(unix, not(target_os = "linux")))]
fn effective_uid(dir: &Path) -> std::io::Result<u32> {
    use std::os::unix::fs::MetadataExt;
    Ok(tempfile::tempfile_in(dir)?.metadata()?.uid())
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

/// The largest model file hashed into a cache key (and so loaded), in bytes.
pub const MAX_MODEL_FILE_BYTES: u64 = 1 << 30;

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
            // A FIFO or device in the model dir is refused, not read forever.
            let bytes = crate::sandbox::safe_read::read_regular(
                dir,
                std::path::Path::new(&entry.file_name()),
                MAX_MODEL_FILE_BYTES,
            )
            .map_err(crate::sandbox::safe_read::ReadError::into_io_error)?;
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

    /// `(component)` in the binary format: the smallest component, compiled in
    /// milliseconds.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\x00\x01\x00";

    fn test_key(c: char) -> CacheKey {
        CacheKey(c.to_string().repeat(64))
    }

    /// A cache in a fresh private directory, an engine, and a component stored
    /// under `key`.
    fn cache_with(key: &CacheKey) -> (tempfile::TempDir, ComponentCache, Engine) {
        let tmp = tempfile::tempdir().unwrap();
        let cache = ComponentCache::new(tmp.path()).unwrap();
        let engine = Engine::default();
        let component = Component::from_binary(&engine, EMPTY_COMPONENT).unwrap();
        cache.put(key, &component).unwrap();
        (tmp, cache, engine)
    }

    fn gone(path: &Path) -> bool {
        std::fs::symlink_metadata(path).is_err()
    }

    #[test]
    fn a_directory_others_can_write_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(ComponentCache::new(tmp.path()).is_ok());
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = ComponentCache::new(tmp.path()).unwrap_err();
        assert!(e.to_string().contains("writable by group or others"), "{e}");
        assert!(e.to_string().contains("mode 777"), "{e}");
        assert!(e.to_string().contains(&tmp.path().display().to_string()), "{e}");
    }

    #[test]
    fn a_symlinked_directory_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o700)).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(ComponentCache::new(&real).is_ok());
        let e = ComponentCache::new(&link).unwrap_err();
        assert!(e.to_string().contains("is a symbolic link, not a directory"), "{e}");
        // A trailing slash would make lstat follow the link.
        let e = ComponentCache::new(link.join("")).unwrap_err();
        assert!(e.to_string().contains("is a symbolic link"), "{e}");
    }

    #[test]
    fn only_an_unshared_entry_of_this_uid_and_the_right_kind_is_trusted() {
        let dir = Stat { uid: 1000, mode: 0o040700, kind: EntryKind::Dir };
        assert_eq!(dir.check(1000, EntryKind::Dir), Ok(()));
        assert_eq!(dir.check(1001, EntryKind::Dir), Err(Untrusted::NotOwned { owner: 1000, euid: 1001 }));
        assert_eq!(Stat { mode: 0o040720, ..dir }.check(1000, EntryKind::Dir), Err(Untrusted::Writable));
        assert_eq!(Stat { mode: 0o040702, ..dir }.check(1000, EntryKind::Dir), Err(Untrusted::Writable));
        assert_eq!(
            Stat { mode: 0o120777, kind: EntryKind::Symlink, ..dir }.check(1000, EntryKind::Dir),
            Err(Untrusted::WrongKind { found: EntryKind::Symlink, expected: EntryKind::Dir })
        );
        let file = Stat { uid: 1000, mode: 0o100600, kind: EntryKind::File };
        assert_eq!(file.check(1000, EntryKind::File), Ok(()));
        assert_eq!(file.check(0, EntryKind::File), Err(Untrusted::NotOwned { owner: 1000, euid: 0 }));
        assert_eq!(
            Stat { kind: EntryKind::Other, ..file }.check(1000, EntryKind::File),
            Err(Untrusted::WrongKind { found: EntryKind::Other, expected: EntryKind::File })
        );
    }

    #[test]
    fn a_digest_binds_the_key_and_the_bytes() {
        let (a, b) = (test_key('a'), test_key('b'));
        let d = digest(&a, b"artifact");
        assert_eq!(d.len(), 64);
        assert!(verify(&a, b"artifact", d.as_bytes()));
        assert!(verify(&a, b"artifact", format!("{d}\n").as_bytes()));
        assert!(!verify(&a, b"artifacT", d.as_bytes()));
        assert!(!verify(&b, b"artifact", d.as_bytes()));
        assert!(!verify(&a, b"artifact", b""));
    }

    #[test]
    fn an_entry_put_is_got_back() {
        let k = test_key('a');
        let (_tmp, cache, engine) = cache_with(&k);
        let recorded = std::fs::read(cache.digest_path(&k)).unwrap();
        assert!(verify(&k, &std::fs::read(cache.path(&k)).unwrap(), &recorded));
        assert!(cache.get(&engine, &k).is_some());
        assert!(cache.path(&k).exists() && cache.digest_path(&k).exists());
        // No entry at all is a plain miss.
        assert!(matches!(cache.read_verified(&test_key('b'), &cache.path(&test_key('b'))), Ok(None)));
    }

    #[test]
    fn an_artifact_changed_after_put_is_a_miss_and_removed() {
        let k = test_key('a');
        let (_tmp, cache, engine) = cache_with(&k);
        let path = cache.path(&k);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(cache.read_verified(&k, &path), Err(Rejected::Mismatch { .. })));
        assert!(cache.get(&engine, &k).is_none());
        assert!(gone(&path) && gone(&cache.digest_path(&k)));
    }

    #[test]
    fn an_entry_copied_over_another_keys_is_a_miss_and_removed() {
        let (a, b) = (test_key('a'), test_key('b'));
        let (_tmp, cache, engine) = cache_with(&a);
        std::fs::copy(cache.path(&a), cache.path(&b)).unwrap();
        std::fs::copy(cache.digest_path(&a), cache.digest_path(&b)).unwrap();
        assert!(matches!(cache.read_verified(&b, &cache.path(&b)), Err(Rejected::Mismatch { .. })));
        assert!(cache.get(&engine, &b).is_none());
        assert!(gone(&cache.path(&b)) && gone(&cache.digest_path(&b)));
        assert!(cache.get(&engine, &a).is_some(), "the original entry still loads");
    }

    #[test]
    fn an_artifact_without_its_digest_is_a_miss_and_removed() {
        let k = test_key('a');
        let (_tmp, cache, engine) = cache_with(&k);
        std::fs::remove_file(cache.digest_path(&k)).unwrap();
        assert!(matches!(cache.read_verified(&k, &cache.path(&k)), Err(Rejected::NoDigest { .. })));
        assert!(cache.get(&engine, &k).is_none());
        assert!(gone(&cache.path(&k)));
    }

    #[test]
    fn an_artifact_others_can_write_is_a_miss_and_removed() {
        let k = test_key('a');
        let (_tmp, cache, engine) = cache_with(&k);
        let path = cache.path(&k);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o622)).unwrap();
        assert!(matches!(
            cache.read_verified(&k, &path),
            Err(Rejected::Untrusted { why: Untrusted::Writable, mode: 0o622, .. })
        ));
        assert!(cache.get(&engine, &k).is_none());
        assert!(gone(&path) && gone(&cache.digest_path(&k)));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_symlinked_artifact_is_not_followed() {
        let k = test_key('a');
        let (tmp, cache, engine) = cache_with(&k);
        let path = cache.path(&k);
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::rename(&path, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        assert!(matches!(cache.read_verified(&k, &path), Err(Rejected::Io { .. })));
        assert!(cache.get(&engine, &k).is_none());
        assert!(gone(&path) && elsewhere.exists(), "the link is removed, not its target");
    }
}
