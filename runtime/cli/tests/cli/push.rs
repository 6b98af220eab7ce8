//! `scorehost push` against a real OCI registry (Debian's `docker-registry`,
//! CNCF distribution) on a free loopback port: the same directory pushes to
//! the same digest, an independent client (`curl` and `sha256sum`) reads what
//! was pushed and checks every digest, and a pull by digest unpacks into a
//! store where the version passes its golden vectors.
//!
//! The registry is started per test with a temp storage dir and stopped by
//! PID. Without `docker-registry` on PATH the tests are skipped with a message,
//! except under CI (`CI` set), where `.ci/run` installs it and a missing one
//! fails.

use std::path::Path;
use std::process::Command;

use scorehost::control::fleet::artifact;
use scorehost::control::fleet::registry::{RegistryClient, RegistryError};
use scorehost::control::store::{PluginStore, UploadLimits};
use serde_json::Value;

use crate::servers::registry;
use crate::support::staged;

/// `scorehost push DIR REFERENCE --plain-http`'s JSON.
pub fn push(dir: &Path, reference: &str) -> Value {
    let cache = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_scorehost"))
        .args(["--cache-dir", cache.path().to_str().unwrap(), "push"])
        .arg(dir)
        .args([reference, "--plain-http"])
        .output()
        .unwrap();
    assert!(out.status.success(), "push failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `curl` GET of `url` into a file; (headers, body path).
fn curl(url: &str, accept: &str, into: &Path) -> String {
    let headers = into.with_extension("headers");
    let status = Command::new("curl")
        .args(["-sSf", "-H", &format!("Accept: {accept}"), "-D"])
        .arg(&headers)
        .arg("-o")
        .arg(into)
        .arg(url)
        .status()
        .expect("curl runs");
    assert!(status.success(), "curl {url}");
    std::fs::read_to_string(headers).unwrap()
}

fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().expect("sha256sum runs");
    format!("sha256:{}", String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap())
}

#[test]
fn push_twice_gives_one_digest_and_curl_reads_what_was_pushed() {
    let Some(registry) = registry() else { return };
    let reference = format!("{}/scorehost/logreg:0.1.0", registry.addr);
    let first = push(&staged("logreg"), &reference);
    let second = push(&staged("logreg"), &reference);
    let digest = first["digest"].as_str().unwrap().to_owned();
    assert_eq!(second["digest"], first["digest"], "the same directory must push to the same digest");
    assert_eq!((first["name"].as_str(), first["version"].as_str()), (Some("logreg"), Some("0.1.0")));
    // A copy of the directory elsewhere, with other mtimes, packs the same.
    let copy = crate::support::copy_with("logreg", |m| m);
    assert_eq!(push(copy.path(), &reference)["digest"], first["digest"]);

    // The independent reader: curl and sha256sum against the distribution API.
    let tmp = tempfile::tempdir().unwrap();
    let base = format!("http://{}/v2/scorehost/logreg", registry.addr);
    let manifest_path = tmp.path().join("manifest.json");
    let headers = curl(&format!("{base}/manifests/0.1.0"), artifact::MANIFEST_MEDIA_TYPE, &manifest_path);
    assert_eq!(sha256sum(&manifest_path), digest, "the manifest's bytes hash to the pushed digest");
    assert!(
        headers.to_ascii_lowercase().contains(&format!("docker-content-digest: {digest}")),
        "the registry reports the pushed digest: {headers}"
    );
    let manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    assert_eq!(manifest["artifactType"], artifact::ARTIFACT_TYPE);
    assert_eq!(manifest["config"]["mediaType"], artifact::CONFIG_MEDIA_TYPE);
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers[0]["mediaType"], "application/wasm");
    assert_eq!(layers[1]["mediaType"], artifact::FILES_MEDIA_TYPE);
    for (i, descriptor) in std::iter::once(&manifest["config"]).chain(layers).enumerate() {
        let blob = tmp.path().join(format!("blob{i}"));
        let want = descriptor["digest"].as_str().unwrap();
        curl(&format!("{base}/blobs/{want}"), "*/*", &blob);
        assert_eq!(sha256sum(&blob), want);
        assert_eq!(std::fs::metadata(&blob).unwrap().len(), descriptor["size"].as_u64().unwrap());
    }
    let config: Value = serde_json::from_slice(&std::fs::read(tmp.path().join("blob0")).unwrap()).unwrap();
    assert_eq!(config["world"], "scorer");
    assert_eq!(config["contract"], artifact::CONTRACT);
    let wasm_hash = sha256sum(&staged("logreg").join("logreg.wasm"));
    assert_eq!(config["files"]["logreg.wasm"], wasm_hash.as_str(), "{config}");
}

#[test]
fn a_pull_by_digest_unpacks_into_a_store_and_passes_its_vectors() {
    let Some(registry) = registry() else { return };
    let reference = format!("{}/scorehost/txn-features:0.1.0", registry.addr);
    let digest = push(&staged("txn-features"), &reference)["digest"].as_str().unwrap().to_owned();
    let repository = format!("{}/scorehost/txn-features", registry.addr);
    let client = RegistryClient::new(true);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

    let pulled = rt.block_on(client.pull(&repository, &digest, 64 << 20)).unwrap();
    let (config, tar) = artifact::unpack(&pulled.config_blob, &pulled.component, &pulled.files).unwrap();
    let root = tempfile::tempdir().unwrap();
    let (store, _) = PluginStore::open(root.path()).unwrap();
    let dir = store.install_tar(&config.name, &config.version, &tar, UploadLimits::default()).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_scorehost"))
        .args(["--cache-dir", cache.path().to_str().unwrap(), "test"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the pulled version fails its vectors: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    // A layer budget below the version's size: refused before any blob is read.
    let e = rt.block_on(client.pull(&repository, &digest, 1000)).unwrap_err();
    assert!(matches!(e, RegistryError::Artifact(artifact::ArtifactError::NotAPlugin(_))), "{e}");
    // A digest the registry does not have: the registry's error, named.
    let missing = format!("sha256:{}", "0".repeat(64));
    let e = rt.block_on(client.pull(&repository, &missing, 64 << 20)).unwrap_err();
    assert!(matches!(e, RegistryError::Registry { .. }), "{e}");
}
