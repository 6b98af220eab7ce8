//! A plugin version as an OCI artifact, and back.
//!
//! [`pack`] turns a plugin directory into an OCI image manifest with its own
//! `artifactType` ([`ARTIFACT_TYPE`]), a config blob ([`ArtifactConfig`]:
//! name, version, world, contract, limits and the sha256 of every file) and
//! two layers: the component (`application/wasm`) and an uncompressed tar of
//! the rest of the directory that `plugin.toml` uses (the manifest, the model
//! directory, `tests.jsonl`). Packing is reproducible: the same directory
//! gives the same bytes and so the same digest (sorted keys and tar entries,
//! zero owners and times, mode 0644).
//!
//! [`unpack`] is the other way, for pulled bytes: it checks the manifest's
//! digest, its types, every blob's digest and size, and every file's sha256
//! against the config before it hands back one tar for
//! [`crate::control::store::PluginStore::install_tar`] (where the upload
//! bounds apply as to any upload, and the gate runs next). Called by `scorehost
//! push` and by the fleet's replicas; it does no I/O of its own beyond reading
//! the plugin directory.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::sandbox::cache::MAX_MODEL_FILE_BYTES;
use crate::sandbox::safe_read::{self, ReadError};
use crate::version::manifest::{Manifest, ManifestError};
use crate::version::plugin::{MAX_COMPONENT_BYTES, MAX_MANIFEST_BYTES};

/// The manifest's `artifactType`: what marks an OCI artifact as a scorehost plugin version.
pub const ARTIFACT_TYPE: &str = "application/vnd.scorehost.plugin.v1";
/// The media type of the config blob ([`ArtifactConfig`] as JSON).
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.scorehost.plugin.config.v1+json";
/// The media type of the component layer.
pub const COMPONENT_MEDIA_TYPE: &str = "application/wasm";
/// The media type of the layer holding the plugin's other files (an uncompressed tar).
pub const FILES_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
/// The media type of the manifest itself.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The WIT contract version a packed plugin is built against.
pub const CONTRACT: &str = "scorehost:plugin@0.1.2";

/// Whether this host can load a plugin packed against `contract`: any
/// 0.1.x up to its own (0.1 releases only add optional things).
pub fn speaks(contract: &str) -> bool {
    let ours: u32 = CONTRACT.rsplit('.').next().and_then(|p| p.parse().ok()).unwrap_or(0);
    contract
        .strip_prefix("scorehost:plugin@0.1.")
        .and_then(|patch| patch.parse::<u32>().ok())
        .is_some_and(|patch| patch <= ours)
}
/// The annotation naming a layer's file (the component's path in the plugin directory).
const TITLE: &str = "org.opencontainers.image.title";
/// The largest manifest or config blob accepted from a registry, in bytes.
pub const MAX_METADATA_BYTES: u64 = 1 << 20;
/// The most files a plugin version may hold.
const MAX_FILES: usize = 10_000;

/// An OCI content descriptor: a blob's media type, digest and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// What the blob is.
    pub media_type: String,
    /// `sha256:<hex>` of its bytes.
    pub digest: String,
    /// Its length in bytes.
    pub size: u64,
    /// Per-blob annotations (the component's file name).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An OCI image manifest, as scorehost writes and reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// Always 2.
    pub schema_version: u32,
    /// [`MANIFEST_MEDIA_TYPE`].
    pub media_type: String,
    /// [`ARTIFACT_TYPE`].
    #[serde(default)]
    pub artifact_type: String,
    /// The config blob.
    pub config: Descriptor,
    /// The component, then the other files.
    pub layers: Vec<Descriptor>,
}

/// The config blob: what the plugin version is, readable without unpacking it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactConfig {
    /// The manifest's `name`.
    pub name: String,
    /// The manifest's `version`.
    pub version: String,
    /// `scorer` or `extractor`.
    pub world: String,
    /// [`CONTRACT`].
    pub contract: String,
    /// The manifest's `[limits]`.
    pub limits: PackedLimits,
    /// The component's path in the plugin directory.
    pub component: String,
    /// Every file of the version, component included: path → `sha256:<hex>`.
    pub files: BTreeMap<String, String>,
}

/// The limits a packed version runs under, as its manifest declares them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackedLimits {
    /// Fuel per call.
    pub fuel: u64,
    /// Wall-clock deadline per call, ms.
    pub deadline_ms: u64,
    /// Memory cap, MiB.
    pub memory_mib: u64,
    /// Calls at once.
    pub max_in_flight: u32,
}

/// A packed plugin version: the manifest and the three blobs it names.
#[derive(Debug, Clone)]
pub struct Packed {
    /// The manifest's bytes, exactly as pushed.
    pub manifest: Vec<u8>,
    /// `sha256:<hex>` of [`Self::manifest`]: the version's identity in a registry.
    pub digest: String,
    /// The parsed config.
    pub config: ArtifactConfig,
    /// The config blob's bytes.
    pub config_blob: Vec<u8>,
    /// The component's bytes.
    pub component: Vec<u8>,
    /// The tar of the other files.
    pub files: Vec<u8>,
}

impl Packed {
    /// Every blob with its digest, config first: what a push uploads before the manifest.
    pub fn blobs(&self) -> [(String, &[u8]); 3] {
        [
            (digest_of(&self.config_blob), &self.config_blob),
            (digest_of(&self.component), &self.component),
            (digest_of(&self.files), &self.files),
        ]
    }
}

/// Why a plugin directory cannot be packed, or pulled bytes cannot be unpacked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArtifactError {
    /// The plugin directory or one of its files cannot be read.
    #[error("cannot read {}: {cause}", path.display())]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// A plugin file is not a regular file inside the directory, or too large.
    #[error(transparent)]
    File(#[from] ReadError),
    /// `plugin.toml` is invalid.
    #[error("plugin.toml: {0}")]
    Manifest(ManifestError),
    /// The manifest is not a scorehost plugin version as this host packs them.
    #[error("not a scorehost plugin artifact: {0}")]
    NotAPlugin(String),
    /// A blob's bytes are not the ones its descriptor names.
    #[error("{what}: expected {expected}, got {actual}")]
    Mismatch {
        /// Which blob or file, and what differs (digest, size).
        what: String,
        /// What the manifest or config says.
        expected: String,
        /// What arrived.
        actual: String,
    },
    /// The files layer is not a tar this host accepts (only regular files).
    #[error("the files layer: {0}")]
    Tar(String),
}

fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ArtifactError {
    move |cause| ArtifactError::Io { path: path.into(), cause }
}

/// `sha256:<hex>` of `bytes`.
pub fn digest_of(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in hash {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Packs the plugin directory `dir` (see the module docs). Reads only what
/// `plugin.toml` uses, through [`safe_read`]: the manifest, the component,
/// every regular file under `model_dir`, and `tests.jsonl` if present.
pub fn pack(dir: &Path) -> Result<Packed, ArtifactError> {
    let root = Dir::open_ambient_dir(dir, ambient_authority()).map_err(io(dir))?;
    let read = |name: &str, max: u64| safe_read::read_regular(&root, Path::new(name), max);
    let manifest_text = read("plugin.toml", MAX_MANIFEST_BYTES)?;
    let text = std::str::from_utf8(&manifest_text)
        .map_err(|e| ArtifactError::Manifest(ManifestError::NotUtf8(e)))?;
    let manifest = Manifest::parse(text).map_err(ArtifactError::Manifest)?;
    let component = read(&manifest.component, MAX_COMPONENT_BYTES)?;

    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    files.insert("plugin.toml".into(), manifest_text.clone());
    if root.is_file("tests.jsonl") {
        files.insert("tests.jsonl".into(), read("tests.jsonl", MAX_MODEL_FILE_BYTES)?);
    }
    if let Some(model) = &manifest.model_dir {
        for path in walk(&root, Path::new(model))? {
            let bytes = safe_read::read_regular(&root, &path, MAX_MODEL_FILE_BYTES)?;
            files.insert(slash_path(&path), bytes);
        }
    }
    let mut hashes: BTreeMap<String, String> = files.iter().map(|(p, b)| (p.clone(), digest_of(b))).collect();
    hashes.insert(manifest.component.clone(), digest_of(&component));
    let config = ArtifactConfig {
        name: manifest.name.clone(),
        version: manifest.version.clone(),
        world: manifest.world.as_str().into(),
        contract: CONTRACT.into(),
        limits: PackedLimits {
            fuel: manifest.limits.fuel,
            deadline_ms: manifest.limits.deadline_ms,
            memory_mib: manifest.limits.memory_mib,
            max_in_flight: manifest.limits.max_in_flight,
        },
        component: manifest.component.clone(),
        files: hashes,
    };
    let config_blob = serde_json::to_vec(&config).expect("the config serialises");
    let files_tar = tar_of(&files)?;
    let descriptor = |media_type: &str, bytes: &[u8], title: Option<&str>| Descriptor {
        media_type: media_type.into(),
        digest: digest_of(bytes),
        size: bytes.len() as u64,
        annotations: title.map(|t| BTreeMap::from([(TITLE.to_owned(), t.to_owned())])).unwrap_or_default(),
    };
    let image = ImageManifest {
        schema_version: 2,
        media_type: MANIFEST_MEDIA_TYPE.into(),
        artifact_type: ARTIFACT_TYPE.into(),
        config: descriptor(CONFIG_MEDIA_TYPE, &config_blob, None),
        layers: vec![
            descriptor(COMPONENT_MEDIA_TYPE, &component, Some(&manifest.component)),
            descriptor(FILES_MEDIA_TYPE, &files_tar, None),
        ],
    };
    let manifest_bytes = serde_json::to_vec(&image).expect("the manifest serialises");
    Ok(Packed {
        digest: digest_of(&manifest_bytes),
        manifest: manifest_bytes,
        config,
        config_blob,
        component,
        files: files_tar,
    })
}

/// Every regular file under `dir` (relative to the plugin root), sorted.
fn walk(root: &Dir, dir: &Path) -> Result<Vec<PathBuf>, ArtifactError> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(d) = pending.pop() {
        for entry in root.read_dir(&d).map_err(io(&d))? {
            let entry = entry.map_err(io(&d))?;
            let path = d.join(entry.file_name());
            if entry.file_type().map_err(io(&path))?.is_dir() {
                pending.push(path);
            } else {
                // Regular files only: read_regular refuses the rest, naming them.
                out.push(path);
            }
            if out.len() > MAX_FILES {
                return Err(ArtifactError::Tar(format!(
                    "more than {MAX_FILES} files under {}",
                    dir.display()
                )));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn slash_path(p: &Path) -> String {
    p.iter().map(|c| c.to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// A reproducible tar of `files`: ustar, sorted by path, mode 0644, owner 0,
/// time 0, regular files only.
fn tar_of(files: &BTreeMap<String, Vec<u8>>) -> Result<Vec<u8>, ArtifactError> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, bytes) in files {
        let mut header = tar::Header::new_ustar();
        header.set_path(path).map_err(|e| ArtifactError::Tar(format!("{path}: {e}")))?;
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_cksum();
        builder.append(&header, bytes.as_slice()).map_err(|e| ArtifactError::Tar(format!("{path}: {e}")))?;
    }
    builder.into_inner().map_err(|e| ArtifactError::Tar(e.to_string()))
}

/// Checks manifest bytes pulled for `digest`: their sha256, and that they
/// describe a scorehost plugin version (artifact type, config type, one
/// component layer and one files layer, sizes within `max_bytes`).
pub fn check_manifest(bytes: &[u8], digest: &str, max_bytes: u64) -> Result<ImageManifest, ArtifactError> {
    let actual = digest_of(bytes);
    if actual != digest {
        return Err(mismatch("the manifest's digest", digest, actual));
    }
    let m: ImageManifest =
        serde_json::from_slice(bytes).map_err(|e| ArtifactError::NotAPlugin(format!("the manifest: {e}")))?;
    let not = |what: String| Err(ArtifactError::NotAPlugin(what));
    if m.schema_version != 2 || m.media_type != MANIFEST_MEDIA_TYPE {
        return not(format!("schemaVersion {} mediaType `{}`", m.schema_version, m.media_type));
    }
    if m.artifact_type != ARTIFACT_TYPE {
        return not(format!("artifactType `{}`, expected `{ARTIFACT_TYPE}`", m.artifact_type));
    }
    if m.config.media_type != CONFIG_MEDIA_TYPE || m.config.size > MAX_METADATA_BYTES {
        return not(format!("config `{}` of {} bytes", m.config.media_type, m.config.size));
    }
    let types: Vec<&str> = m.layers.iter().map(|l| l.media_type.as_str()).collect();
    if types != [COMPONENT_MEDIA_TYPE, FILES_MEDIA_TYPE] {
        return not(format!("layers {types:?}, expected [{COMPONENT_MEDIA_TYPE}, {FILES_MEDIA_TYPE}]"));
    }
    let total: u64 = m.layers.iter().map(|l| l.size).fold(0, u64::saturating_add);
    if total > max_bytes {
        return not(format!("{total} bytes of layers, over the limit of {max_bytes}"));
    }
    Ok(m)
}

/// Checks a blob pulled for `descriptor`: its size and sha256.
pub fn check_blob(what: &str, descriptor: &Descriptor, bytes: &[u8]) -> Result<(), ArtifactError> {
    if bytes.len() as u64 != descriptor.size {
        return Err(mismatch(&format!("{what}'s size"), descriptor.size, bytes.len()));
    }
    let actual = digest_of(bytes);
    if actual != descriptor.digest {
        return Err(mismatch(&format!("{what}'s digest"), &descriptor.digest, actual));
    }
    Ok(())
}

fn mismatch(what: &str, expected: impl ToString, actual: impl ToString) -> ArtifactError {
    ArtifactError::Mismatch { what: what.into(), expected: expected.to_string(), actual: actual.to_string() }
}

/// Pulled and checked blobs (see [`check_manifest`], [`check_blob`]) → the
/// config and one tar of the plugin directory for the store, after checking
/// every file against the config's sha256 and that the files are exactly the
/// config's.
pub fn unpack(
    config_blob: &[u8],
    component: &[u8],
    files: &[u8],
) -> Result<(ArtifactConfig, Vec<u8>), ArtifactError> {
    let config: ArtifactConfig = serde_json::from_slice(config_blob)
        .map_err(|e| ArtifactError::NotAPlugin(format!("the config: {e}")))?;
    if !speaks(&config.contract) {
        return Err(ArtifactError::NotAPlugin(format!(
            "contract `{}`; this host speaks `{CONTRACT}`",
            config.contract
        )));
    }
    let mut entries: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut archive = tar::Archive::new(files);
    for entry in archive.entries().map_err(|e| ArtifactError::Tar(e.to_string()))? {
        let mut entry = entry.map_err(|e| ArtifactError::Tar(e.to_string()))?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(ArtifactError::Tar("an entry that is not a regular file".into()));
        }
        let path =
            entry.path().map_err(|e| ArtifactError::Tar(e.to_string()))?.to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(|e| ArtifactError::Tar(format!("{path}: {e}")))?;
        if entries.insert(path.clone(), bytes).is_some() || entries.len() > MAX_FILES {
            return Err(ArtifactError::Tar(format!("`{path}` twice, or over {MAX_FILES} files")));
        }
    }
    if entries.contains_key(&config.component) {
        return Err(ArtifactError::Tar(format!(
            "the component `{}` is also in the files layer",
            config.component
        )));
    }
    entries.insert(config.component.clone(), component.to_vec());
    let listed: Vec<&String> = config.files.keys().collect();
    let present: Vec<&String> = entries.keys().collect();
    if listed != present {
        return Err(mismatch("the files", format!("{listed:?}"), format!("{present:?}")));
    }
    for (path, bytes) in &entries {
        let actual = digest_of(bytes);
        if config.files[path] != actual {
            return Err(mismatch(&format!("`{path}`'s sha256"), &config.files[path], actual));
        }
    }
    Ok((config, tar_of(&entries)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_0_1_contract_up_to_ours_is_spoken() {
        for c in ["scorehost:plugin@0.1.0", "scorehost:plugin@0.1.1", CONTRACT] {
            assert!(speaks(c), "{c}");
        }
        for c in ["scorehost:plugin@0.1.3", "scorehost:plugin@0.2.0", "scorehost:plugin@0.1.x", "other@0.1.0"]
        {
            assert!(!speaks(c), "{c}");
        }
    }

    fn plugin_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(
            p.join("plugin.toml"),
            "name = \"p\"\nversion = \"1.0.0\"\nworld = \"scorer\"\ncomponent = \"p.wasm\"\nmodel_dir = \"model\"\n",
        )
        .unwrap();
        std::fs::write(p.join("p.wasm"), b"\0asm-not-really").unwrap();
        std::fs::create_dir_all(p.join("model/sub")).unwrap();
        std::fs::write(p.join("model/w.json"), b"{}").unwrap();
        std::fs::write(p.join("model/sub/x.bin"), [1u8, 2, 3]).unwrap();
        std::fs::write(p.join("tests.jsonl"), b"").unwrap();
        std::fs::write(p.join("notes.txt"), b"not part of the version").unwrap();
        dir
    }

    #[test]
    fn packing_is_reproducible_and_round_trips() {
        let dir = plugin_dir();
        let a = pack(dir.path()).unwrap();
        // Another copy, written later (other mtimes), packs to the same bytes.
        let copy = plugin_dir();
        let b = pack(copy.path()).unwrap();
        assert_eq!((a.digest.as_str(), &a.manifest), (b.digest.as_str(), &b.manifest));
        assert_eq!(
            a.config.files.keys().collect::<Vec<_>>(),
            ["model/sub/x.bin", "model/w.json", "p.wasm", "plugin.toml", "tests.jsonl"]
        );
        let m = check_manifest(&a.manifest, &a.digest, 1 << 20).unwrap();
        check_blob("config", &m.config, &a.config_blob).unwrap();
        check_blob("component", &m.layers[0], &a.component).unwrap();
        check_blob("files", &m.layers[1], &a.files).unwrap();
        let (config, tar) = unpack(&a.config_blob, &a.component, &a.files).unwrap();
        assert_eq!(config, a.config);
        let mut names: Vec<String> = tar::Archive::new(tar.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, config.files.keys().cloned().collect::<Vec<_>>());
    }

    #[test]
    fn tampered_bytes_are_refused_naming_what_differs() {
        let a = pack(plugin_dir().path()).unwrap();
        let m = check_manifest(&a.manifest, &a.digest, 1 << 20).unwrap();
        let other = "sha256:".to_owned() + &"0".repeat(64);
        assert!(matches!(check_manifest(&a.manifest, &other, 1 << 20), Err(ArtifactError::Mismatch { .. })));
        assert!(matches!(check_manifest(&a.manifest, &a.digest, 10), Err(ArtifactError::NotAPlugin(_))));
        let mut component = a.component.clone();
        component[0] ^= 1;
        let e = check_blob("component", &m.layers[0], &component).unwrap_err();
        assert!(e.to_string().contains("component's digest"), "{e}");
        // A config that lies about a file: the files layer no longer matches it.
        let mut config = a.config.clone();
        config.files.insert("model/w.json".into(), digest_of(b"[]"));
        let e = unpack(&serde_json::to_vec(&config).unwrap(), &a.component, &a.files).unwrap_err();
        assert!(e.to_string().contains("`model/w.json`'s sha256"), "{e}");
        // A config naming a file the layer lacks.
        let mut config = a.config.clone();
        config.files.insert("model/extra".into(), digest_of(b""));
        assert!(matches!(
            unpack(&serde_json::to_vec(&config).unwrap(), &a.component, &a.files),
            Err(ArtifactError::Mismatch { .. })
        ));
    }

    #[test]
    fn a_manifest_of_another_kind_is_not_a_plugin() {
        let a = pack(plugin_dir().path()).unwrap();
        let mut m: ImageManifest = serde_json::from_slice(&a.manifest).unwrap();
        m.artifact_type = "application/vnd.example.other".into();
        let bytes = serde_json::to_vec(&m).unwrap();
        let e = check_manifest(&bytes, &digest_of(&bytes), 1 << 20).unwrap_err();
        assert!(e.to_string().contains("artifactType"), "{e}");
    }
}
