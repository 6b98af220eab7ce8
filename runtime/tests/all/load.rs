//! Loading: bad components, wrong worlds, ungranted imports, bad manifests and
//! failing inits are each a clear, typed error before anything is served.

use scorehost::sandbox::cache::ComponentCache;
use scorehost::sandbox::error::{CallError, LoadError, MetadataError};
use scorehost::version::manifest::ManifestError;
use scorehost::{PoolSize, Runtime};

use crate::support::{copy_with, http_import_plugin, runtime, staged};

fn load_err(dir: &std::path::Path) -> LoadError {
    runtime().load(dir).expect_err("load should fail")
}

#[test]
fn not_wasm_is_rejected() {
    let dir = copy_with("logreg", |m| m);
    std::fs::write(dir.path().join("logreg.wasm"), b"this is not wasm").unwrap();
    let e = load_err(dir.path());
    assert!(matches!(e, LoadError::InvalidComponent { .. }), "{e}");
    assert!(e.to_string().contains("magic"), "{e}");
}

#[test]
fn truncated_component_is_rejected() {
    let dir = copy_with("logreg", |m| m);
    let path = dir.path().join("logreg.wasm");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(dir.path());
    assert!(matches!(e, LoadError::InvalidComponent { .. }), "{e}");
}

#[test]
fn core_module_is_rejected_as_not_a_component() {
    let dir = copy_with("logreg", |m| m);
    // The smallest valid core module: magic + version 1.
    std::fs::write(dir.path().join("logreg.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let e = load_err(dir.path());
    assert!(e.to_string().contains("core wasm module"), "{e}");
}

#[test]
fn wrong_world_is_rejected_naming_both() {
    let dir = copy_with("logreg", |m| m.replace("world = \"scorer\"", "world = \"extractor\""));
    let e = load_err(dir.path());
    assert!(matches!(e, LoadError::WrongWorld { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("scorehost:plugin/extractor") && msg.contains("scorehost:plugin/scorer"), "{msg}");
}

#[test]
fn ungranted_import_is_rejected_naming_it() {
    let dir = http_import_plugin();
    let e = load_err(dir.path());
    match &e {
        LoadError::UngrantedImport { imports } => {
            assert_eq!(imports, &["wasi:http/outgoing-handler@0.2.6"]);
        }
        other => panic!("expected UngrantedImport, got {other}"),
    }
    assert!(e.to_string().contains("`wasi:http/outgoing-handler@0.2.6`"), "{e}");
    // Sockets are linked (deny-all): a component importing them loads.
    runtime().load(&staged("net-import")).expect("net-import loads");
}

#[test]
fn unknown_manifest_field_is_named() {
    let dir = copy_with("logreg", |m| m.replace("deadline_ms = 50", "dealine_ms = 50"));
    let e = load_err(dir.path());
    let LoadError::Manifest { error, .. } = &e else { panic!("expected a manifest error, got {e}") };
    let typed = error.downcast_ref::<ManifestError>().expect("a ManifestError");
    assert!(matches!(typed, ManifestError::Toml(_)), "{typed:?}");
    assert!(e.to_string().contains("dealine_ms"), "{e}");
}

#[test]
fn missing_component_file_names_the_path() {
    let dir = copy_with("logreg", |m| m.replace("logreg.wasm", "missing.wasm"));
    let e = load_err(dir.path());
    assert!(matches!(e, LoadError::Io { .. }) && e.to_string().contains("missing.wasm"), "{e}");
}

#[test]
fn manifest_and_metadata_must_agree() {
    let dir = copy_with("logreg", |m| m.replace("version = \"0.1.0\"", "version = \"9.9.9\""));
    let e = load_err(dir.path());
    assert!(matches!(e, LoadError::Metadata(MetadataError::NotTheManifests { .. })), "{e}");
    assert!(e.to_string().contains("9.9.9"), "{e}");
}

#[test]
fn init_error_from_config_is_a_plugin_error() {
    let dir =
        copy_with("logreg", |m| m.replace("model_file = \"weights.json\"", "model_file = \"nope.json\""));
    match load_err(dir.path()) {
        LoadError::Init(CallError::PluginError { message }) => {
            assert!(message.contains("nope.json"), "{message}")
        }
        other => panic!("expected Init(PluginError), got {other}"),
    }
}

#[test]
fn trap_during_init_fails_the_load() {
    let dir = copy_with("hostile-panic", |m| format!("{m}\n[config]\npanic_in_init = true\n"));
    match load_err(dir.path()) {
        LoadError::Init(e) => {
            assert_eq!(e.kind(), scorehost::ErrorKind::GuestTrap, "{e}");
            assert!(e.to_string().contains("panicking in init"), "{e}");
        }
        other => panic!("expected Init, got {other}"),
    }
}

#[test]
fn a_restart_loads_from_the_compiled_cache() {
    let cache_dir = tempfile::tempdir().unwrap();
    let fresh = || {
        Runtime::new(
            PoolSize { instances: 4, ..Default::default() },
            Some(ComponentCache::new(cache_dir.path()).unwrap()),
        )
        .unwrap()
    };
    let first = fresh().load(&staged("gbdt")).unwrap();
    assert!(!first.from_cache());
    // A new runtime (a restart) with the same cache dir does not recompile.
    let second = fresh().load(&staged("gbdt")).unwrap();
    assert!(second.from_cache());
    assert_eq!(first.content_hash(), second.content_hash());
    // Changing the config changes the key: no stale snapshot is reused.
    let edited = copy_with("gbdt", |m| m.replace("top_reasons = 3", "top_reasons = 2"));
    assert!(!fresh().load(edited.path()).unwrap().from_cache());
}

/// Runs `f` on its own thread and waits at most `secs` for it, so a file that
/// blocks its reader fails the test instead of hanging the run.
#[cfg(unix)]
fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(secs))
        .unwrap_or_else(|_| panic!("no answer in {secs} s: blocked on a special file?"))
}

#[cfg(unix)]
fn mkfifo(path: &std::path::Path) {
    let status = std::process::Command::new("mkfifo").arg(path).status().expect("running mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

#[cfg(unix)]
#[test]
fn golden_vectors_symlinked_to_dev_zero_are_refused() {
    let dir = copy_with("logreg", |m| m);
    let vectors = dir.path().join("tests.jsonl");
    std::fs::remove_file(&vectors).unwrap();
    std::os::unix::fs::symlink("/dev/zero", vectors).unwrap();
    let path = dir.path().to_owned();
    // Read to the end, /dev/zero would exhaust memory; it must not be opened at all.
    let e = within(10, move || scorehost::control::golden::read(&path, scorehost::World::Scorer).err())
        .expect("a tests.jsonl leading to /dev/zero must be refused");
    let msg = e.to_string();
    assert!(msg.contains("tests.jsonl") && msg.contains("leads outside the plugin directory"), "{msg}");
}

#[cfg(unix)]
#[test]
fn golden_vectors_in_a_fifo_are_refused_without_blocking_the_gate() {
    let dir = copy_with("logreg", |m| m);
    let vectors = dir.path().join("tests.jsonl");
    std::fs::remove_file(&vectors).unwrap();
    mkfifo(&vectors);
    let path = dir.path().to_owned();
    // The gate reads the vectors with the admin lock held: a blocked open would hold it forever.
    let e = within(10, move || scorehost::control::golden::read(&path, scorehost::World::Scorer).err())
        .expect("a FIFO tests.jsonl must be refused");
    assert!(
        matches!(e, scorehost::control::golden::VectorsError::NotAFile { kind: "FIFO (named pipe)", .. }),
        "{e}"
    );
    assert!(e.to_string().contains("not a regular file"), "{e}");
}

#[cfg(unix)]
#[test]
fn plugin_files_that_are_fifos_or_lead_outside_fail_the_load_promptly() {
    // plugin.toml as a FIFO.
    let dir = copy_with("logreg", |m| m);
    let manifest = dir.path().join("plugin.toml");
    std::fs::remove_file(&manifest).unwrap();
    mkfifo(&manifest);
    let path = dir.path().to_owned();
    let e = within(10, move || runtime().load(&path).err()).expect("a FIFO plugin.toml must fail the load");
    assert!(matches!(&e, LoadError::Io { path, .. } if path.ends_with("plugin.toml")), "{e}");
    assert!(e.to_string().contains("FIFO"), "{e}");

    // The component as a FIFO, with a good manifest.
    let dir = copy_with("logreg", |m| m);
    let component = dir.path().join("logreg.wasm");
    std::fs::remove_file(&component).unwrap();
    mkfifo(&component);
    let path = dir.path().to_owned();
    let e = within(10, move || runtime().load(&path).err()).expect("a FIFO component must fail the load");
    assert!(matches!(&e, LoadError::Io { path, .. } if path.ends_with("logreg.wasm")), "{e}");
    assert!(e.to_string().contains("FIFO"), "{e}");

    // plugin.toml symlinked out of the plugin directory.
    let dir = copy_with("logreg", |m| m);
    let manifest = dir.path().join("plugin.toml");
    std::fs::remove_file(&manifest).unwrap();
    std::os::unix::fs::symlink("/dev/zero", manifest).unwrap();
    let path = dir.path().to_owned();
    let e = within(10, move || runtime().load(&path).err()).expect("a plugin.toml leading out must fail");
    assert!(e.to_string().contains("leads outside the plugin directory"), "{e}");
}

#[cfg(unix)]
#[test]
fn a_model_dir_that_is_a_symlink_is_refused() {
    // The cache key and the /model preopen reopen the model dir by path; a
    // symlink there could name another directory by the time they do.
    let dir = copy_with("logreg", |m| m);
    std::fs::rename(dir.path().join("model"), dir.path().join("model.real")).unwrap();
    std::os::unix::fs::symlink("model.real", dir.path().join("model")).unwrap();
    let e = load_err(dir.path());
    assert!(matches!(&e, LoadError::Io { path, .. } if path.ends_with("model")), "{e}");
    assert!(e.to_string().contains("symbolic link"), "{e}");
}
