//! The plugin store: every uploaded version on disk, written atomically.
//!
//! ```text
//! <store>/<name>/<version>/     plugin.toml, the component, model dir, tests.jsonl
//! <store>/<name>/state.json     {"live": "1.2.0", "history": ["1.1.0", "1.0.0"]}
//! <store>/.staging/<nonce>/     uploads being unpacked
//! <store>/.fleet/applied.json   a fleet replica's last applied state
//! ```
//!
//! An upload is unpacked into `.staging`, every file and directory is
//! fsynced, and the directory is renamed into place in one step, so a crash
//! mid-upload never leaves a half version under `<name>/`: what it leaves is a
//! directory in `.staging`, which [`PluginStore::open`] reports and removes.
//! `state.json` is replaced the same way (write a temporary file, fsync,
//! rename). All reads and writes below the store root go through a cap-std
//! `Dir`, and names, versions and archive paths are validated, so nothing
//! outside the store is reachable through it.

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use serde::{Deserialize, Serialize};

use crate::version::manifest::Manifest;

const STAGING: &str = ".staging";
const STATE: &str = "state.json";
/// What a fleet replica applied, beside the versions (see `fleet/replica.rs`).
const FLEET: &str = ".fleet";

/// Bounds on one upload.
#[derive(Debug, Clone, Copy)]
pub struct UploadLimits {
    /// Most bytes of file content an archive may unpack to.
    pub max_bytes: u64,
    /// Most entries (files and directories) an archive may hold.
    pub max_entries: usize,
}

impl Default for UploadLimits {
    fn default() -> Self {
        Self { max_bytes: 256 << 20, max_entries: 10_000 }
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A name or version that is not allowed (traversal, length, characters).
    #[error("{0}")]
    InvalidName(String),
    /// The archive is malformed, unsafe or over a bound.
    #[error("invalid upload: {0}")]
    InvalidUpload(String),
    /// The version is already in the store.
    #[error("{name}@{version} is already in the store; versions are immutable, upload a new one")]
    Exists {
        /// Plugin name.
        name: String,
        /// Version.
        version: String,
    },
    /// No such version in the store.
    #[error("{name}@{version} is not in the store")]
    NotFound {
        /// Plugin name.
        name: String,
        /// Version.
        version: String,
    },
    /// A filesystem operation failed.
    #[error("store I/O on {path}: {cause}")]
    Io {
        /// What was being read or written, relative to the store root.
        path: String,
        /// The OS error.
        cause: std::io::Error,
    },
}

fn io(path: impl Into<String>) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.into();
    move |cause| StoreError::Io { path, cause }
}

/// Checks a plugin name: the manifest's rule ([a-z0-9_-], 1–64).
pub fn check_name(name: &str) -> Result<(), StoreError> {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
    if name.is_empty() || name.len() > 64 || !name.chars().all(ok) {
        return Err(StoreError::InvalidName(format!(
            "plugin name {name:?} must be 1-64 characters of [a-z0-9_-]"
        )));
    }
    Ok(())
}

/// Checks a version: the manifest's rule ([A-Za-z0-9.+-], 1–64), not
/// starting with a dot (`.`/`..`, and the hidden staging directories deploy
/// tools write before renaming into place).
pub fn check_version(version: &str) -> Result<(), StoreError> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-');
    if version.is_empty() || version.len() > 64 || !version.chars().all(ok) || version.starts_with('.') {
        return Err(StoreError::InvalidName(format!(
            "version {version:?} must be 1-64 characters of [A-Za-z0-9.+-], not starting with a dot"
        )));
    }
    Ok(())
}

/// A version directory in brief; see [`PluginStore::fingerprint`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    /// Regular files (and anything else that is not a directory).
    pub files: u64,
    /// Their total size.
    pub bytes: u64,
    /// The newest modification time of any entry.
    pub newest: std::time::SystemTime,
}

/// Which version of a plugin is live, and the ones before it (newest first).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginState {
    /// The live version, if one was ever activated.
    pub live: Option<String>,
    /// Versions that were live before, newest first: what rollback goes back to.
    #[serde(default)]
    pub history: Vec<String>,
}

/// What [`PluginStore::open`] found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Every complete version: (name, version).
    pub versions: Vec<(String, String)>,
    /// Leftovers of interrupted uploads, removed (paths relative to the root).
    pub removed_partials: Vec<String>,
    /// Entries that are neither (reported, left alone).
    pub ignored: Vec<String>,
}

/// A store rooted at a directory.
pub struct PluginStore {
    root: PathBuf,
    dir: Dir,
}

impl PluginStore {
    /// Opens (creating if needed) the store at `root`, removes what interrupted
    /// uploads left in `.staging`, and lists what it holds.
    pub fn open(root: &Path) -> Result<(Self, Scan), StoreError> {
        std::fs::create_dir_all(root).map_err(io(root.display().to_string()))?;
        let dir = Dir::open_ambient_dir(root, ambient_authority()).map_err(io(root.display().to_string()))?;
        dir.create_dir_all(STAGING).map_err(io(STAGING))?;
        let store = Self { root: root.to_owned(), dir };
        let mut scan = Scan::default();
        let staging = store.dir.open_dir(STAGING).map_err(io(STAGING))?;
        for entry in staging.entries().map_err(io(STAGING))? {
            let entry = entry.map_err(io(STAGING))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = format!("{STAGING}/{name}");
            let removed = if entry.file_type().map_err(io(&rel))?.is_dir() {
                staging.remove_dir_all(&name)
            } else {
                staging.remove_file(&name)
            };
            removed.map_err(io(&rel))?;
            scan.removed_partials.push(rel);
        }
        scan.versions = store.list(&mut scan.ignored)?;
        Ok((store, scan))
    }

    /// Every complete version in the store, sorted: (name, version).
    pub fn versions(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.list(&mut Vec::new())
    }

    /// Lists versions; anything that is neither a version nor a state file goes to `ignored`.
    fn list(&self, ignored: &mut Vec<String>) -> Result<Vec<(String, String)>, StoreError> {
        let mut versions = Vec::new();
        for entry in self.dir.entries().map_err(io("."))? {
            let entry = entry.map_err(io("."))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == STAGING || name == FLEET {
                continue;
            }
            if check_name(&name).is_err() || !entry.file_type().map_err(io(&name))?.is_dir() {
                ignored.push(name);
                continue;
            }
            let plugin = self.dir.open_dir(&name).map_err(io(&name))?;
            for v in plugin.entries().map_err(io(&name))? {
                let v = v.map_err(io(&name))?;
                let version = v.file_name().to_string_lossy().into_owned();
                if version == STATE || version.starts_with(".state") {
                    continue;
                }
                if check_version(&version).is_ok() && v.file_type().map_err(io(&name))?.is_dir() {
                    versions.push((name.clone(), version));
                } else {
                    ignored.push(format!("{name}/{version}"));
                }
            }
        }
        versions.sort();
        Ok(versions)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Reads `<store>/.fleet/<file>`; `None` if it does not exist.
    pub fn read_fleet_file(&self, file: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let rel = format!("{FLEET}/{file}");
        match self.dir.read(&rel) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Io { path: rel, cause: e }),
        }
    }

    /// Replaces `<store>/.fleet/<file>` atomically (temporary file, fsync, rename).
    pub fn write_fleet_file(&self, file: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.dir.create_dir_all(FLEET).map_err(io(FLEET))?;
        let dir = self.dir.open_dir(FLEET).map_err(io(FLEET))?;
        let tmp = format!(".{file}.{}.{}", std::process::id(), nanos());
        let mut f = dir.create(&tmp).map_err(io(format!("{FLEET}/{tmp}")))?;
        f.write_all(bytes).and_then(|()| f.sync_all()).map_err(io(format!("{FLEET}/{tmp}")))?;
        dir.rename(&tmp, &dir, file).map_err(io(format!("{FLEET}/{file}")))?;
        sync_dir(&self.root.join(FLEET))
    }

    /// The directory of `name@version` (for loading it).
    pub fn version_path(&self, name: &str, version: &str) -> PathBuf {
        self.root.join(name).join(version)
    }

    /// What `name@version`'s directory holds, in brief: files, bytes and the
    /// newest modification. A version the gate rejected is gated again when
    /// this changes (a copy that was still in progress, or a fix).
    pub fn fingerprint(&self, name: &str, version: &str) -> Option<Fingerprint> {
        fn walk(dir: &cap_std::fs::Dir, into: &mut Fingerprint) -> std::io::Result<()> {
            for entry in dir.entries()? {
                let entry = entry?;
                let meta = entry.metadata()?;
                if let Ok(modified) = meta.modified() {
                    into.newest = into.newest.max(modified.into_std());
                }
                if meta.is_dir() {
                    walk(&entry.open_dir()?, into)?;
                } else {
                    into.files += 1;
                    into.bytes += meta.len();
                }
            }
            Ok(())
        }
        let dir = self.dir.open_dir(Path::new(name).join(version)).ok()?;
        let mut print = Fingerprint { files: 0, bytes: 0, newest: std::time::SystemTime::UNIX_EPOCH };
        walk(&dir, &mut print).ok()?;
        Some(print)
    }

    /// Whether `name@version` is in the store.
    pub fn contains(&self, name: &str, version: &str) -> bool {
        check_name(name).is_ok()
            && check_version(version).is_ok()
            && self.dir.is_dir(Path::new(name).join(version))
    }

    /// Unpacks a tar of a plugin directory's contents as `name@version`,
    /// atomically. The manifest inside must say the same name and version.
    pub fn install_tar(
        &self,
        name: &str,
        version: &str,
        tar: &[u8],
        limits: UploadLimits,
    ) -> Result<PathBuf, StoreError> {
        check_name(name)?;
        check_version(version)?;
        if self.contains(name, version) {
            return Err(StoreError::Exists { name: name.into(), version: version.into() });
        }
        let nonce = format!("{name}@{version}.{}.{}", std::process::id(), nanos());
        let staging = self.dir.open_dir(STAGING).map_err(io(STAGING))?;
        staging.create_dir(&nonce).map_err(io(format!("{STAGING}/{nonce}")))?;
        let result = (|| {
            let target = staging.open_dir(&nonce).map_err(io(format!("{STAGING}/{nonce}")))?;
            unpack(tar, &target, limits)?;
            let text = target.read_to_string("plugin.toml").map_err(|e| {
                StoreError::InvalidUpload(format!("the archive has no readable plugin.toml: {e}"))
            })?;
            let manifest =
                Manifest::parse(&text).map_err(|e| StoreError::InvalidUpload(format!("plugin.toml: {e}")))?;
            if manifest.name != name || manifest.version != version {
                return Err(StoreError::InvalidUpload(format!(
                    "the archive's plugin.toml says {}@{}, the upload is for {name}@{version}",
                    manifest.name, manifest.version
                )));
            }
            sync_dir(&self.root.join(STAGING).join(&nonce))?;
            self.dir.create_dir_all(name).map_err(io(name))?;
            staging
                .rename(&nonce, &self.dir, Path::new(name).join(version))
                .map_err(io(format!("{name}/{version}")))?;
            sync_dir(&self.root.join(name))?;
            Ok(self.version_path(name, version))
        })();
        if result.is_err() {
            let _ = staging.remove_dir_all(&nonce);
        }
        result
    }

    /// Removes `name@version` from the store.
    pub fn remove(&self, name: &str, version: &str) -> Result<(), StoreError> {
        if !self.contains(name, version) {
            return Err(StoreError::NotFound { name: name.into(), version: version.into() });
        }
        // Renamed into staging first, so a crash mid-delete leaves a partial
        // there (cleaned at start-up), never a half version in place.
        let nonce = format!("deleted-{name}@{version}.{}.{}", std::process::id(), nanos());
        let staging = self.dir.open_dir(STAGING).map_err(io(STAGING))?;
        self.dir
            .rename(Path::new(name).join(version), &staging, &nonce)
            .map_err(io(format!("{name}/{version}")))?;
        sync_dir(&self.root.join(name))?;
        staging.remove_dir_all(&nonce).map_err(io(format!("{STAGING}/{nonce}")))
    }

    /// The live/history state of `name` (empty if never written).
    pub fn state(&self, name: &str) -> Result<PluginState, StoreError> {
        check_name(name)?;
        let path = Path::new(name).join(STATE);
        match self.dir.read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| StoreError::Io {
                path: format!("{name}/{STATE}"),
                cause: std::io::Error::other(e),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(PluginState::default()),
            Err(e) => Err(StoreError::Io { path: format!("{name}/{STATE}"), cause: e }),
        }
    }

    /// Replaces the state of `name` atomically (temporary file, fsync, rename).
    pub fn set_state(&self, name: &str, state: &PluginState) -> Result<(), StoreError> {
        check_name(name)?;
        self.dir.create_dir_all(name).map_err(io(name))?;
        let plugin = self.dir.open_dir(name).map_err(io(name))?;
        let tmp = format!(".state.{}.{}", std::process::id(), nanos());
        let text = serde_json::to_vec_pretty(state).expect("the state serialises");
        let mut f = plugin.create(&tmp).map_err(io(format!("{name}/{tmp}")))?;
        f.write_all(&text).and_then(|()| f.sync_all()).map_err(io(format!("{name}/{tmp}")))?;
        plugin.rename(&tmp, &plugin, STATE).map_err(io(format!("{name}/{STATE}")))?;
        sync_dir(&self.root.join(name))
    }
}

fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

/// fsyncs a directory, so a rename into it is durable.
fn sync_dir(path: &Path) -> Result<(), StoreError> {
    std::fs::File::open(path).and_then(|d| d.sync_all()).map_err(io(path.display().to_string()))
}

/// Unpacks `tar` into `target`: regular files and directories only, relative
/// paths without `..`, within `limits`; every file fsynced.
fn unpack(tar: &[u8], target: &Dir, limits: UploadLimits) -> Result<(), StoreError> {
    let bad = |m: String| StoreError::InvalidUpload(m);
    let mut archive = tar::Archive::new(tar);
    let mut total: u64 = 0;
    let mut count = 0usize;
    let mut dirs: Vec<PathBuf> = Vec::new();
    for entry in archive.entries().map_err(|e| bad(format!("not a tar archive: {e}")))? {
        let mut entry = entry.map_err(|e| bad(format!("corrupt tar entry: {e}")))?;
        count += 1;
        if count > limits.max_entries {
            return Err(bad(format!("more than {} entries", limits.max_entries)));
        }
        let raw = entry.path().map_err(|e| bad(format!("unreadable entry path: {e}")))?.into_owned();
        let mut rel = PathBuf::new();
        for part in raw.components() {
            match part {
                Component::Normal(p) => rel.push(p),
                Component::CurDir => {}
                _ => return Err(bad(format!("entry {} leaves the plugin directory", raw.display()))),
            }
        }
        let kind = entry.header().entry_type();
        if rel.as_os_str().is_empty() {
            if kind.is_dir() {
                continue; // `./` itself
            }
            return Err(bad(format!("entry {} has no name", raw.display())));
        }
        let shown = rel.display().to_string();
        if kind.is_dir() {
            target.create_dir_all(&rel).map_err(io(&shown))?;
            dirs.push(rel);
        } else if kind.is_file() {
            let size = entry.header().size().map_err(|e| bad(format!("{shown}: bad size: {e}")))?;
            total = total.saturating_add(size);
            if total > limits.max_bytes {
                return Err(bad(format!("unpacks to more than {} bytes", limits.max_bytes)));
            }
            if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
                target.create_dir_all(parent).map_err(io(&shown))?;
            }
            let mut file = target.create(&rel).map_err(io(&shown))?;
            let mut buf = Vec::with_capacity(size as usize);
            entry.by_ref().take(size).read_to_end(&mut buf).map_err(io(&shown))?;
            file.write_all(&buf).and_then(|()| file.sync_all()).map_err(io(&shown))?;
        } else {
            return Err(bad(format!(
                "entry {shown} is a {kind:?}; only regular files and directories are accepted (no links, no devices)"
            )));
        }
    }
    for d in dirs {
        let _ = target.open(&d).and_then(|f| f.sync_all());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions_are_checked() {
        for bad in ["", "..", "a/b", "A", &"x".repeat(65), "a.b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        for bad in ["", ".", "..", "1/2", "1\\2", &"1".repeat(65), "1 0"] {
            assert!(check_version(bad).is_err(), "{bad:?}");
        }
        check_name("txn-features_2").unwrap();
        check_version("1.2.0-rc.1+build.5").unwrap();
    }

    fn archive(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, path, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn unpacking_is_bounded_in_entries_and_bytes() {
        let tar = archive(&[("a", b"12345"), ("d/b", b"678")]);
        let dir = tempfile::tempdir().unwrap();
        let target = || Dir::open_ambient_dir(dir.path(), ambient_authority()).unwrap();
        unpack(&tar, &target(), UploadLimits { max_bytes: 8, max_entries: 2 }).unwrap();
        assert_eq!(std::fs::read(dir.path().join("d/b")).unwrap(), b"678");
        let e = unpack(&tar, &target(), UploadLimits { max_bytes: 8, max_entries: 1 }).unwrap_err();
        assert!(e.to_string().contains("more than 1 entries"), "{e}");
        let e = unpack(&tar, &target(), UploadLimits { max_bytes: 7, max_entries: 2 }).unwrap_err();
        assert!(e.to_string().contains("more than 7 bytes"), "{e}");
    }
}
