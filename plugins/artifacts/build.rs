//! Builds every plugin crate in `plugins/` to a wasm32-wasip2 component with a
//! nested `cargo build` (its own target dir under OUT_DIR, so it never contends
//! with the outer build's lock), then stages one loadable plugin directory per
//! plugin: its `plugin.toml`, its data files (model dir, golden vectors) and the
//! component under the name the manifest declares. `src/lib.rs` exposes the
//! staged paths as constants. No `.wasm` is ever checked in.
//!
//! Python plugins (a `plugin.toml` and an `app.py`, no `Cargo.toml`) are built
//! with componentize-py against `wit/` and the Python SDK in
//! `guest-sdk/python/` when it is installed, and skipped with a warning (and
//! `PYTHON_SKIPPED` saying why) when it is not.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let here = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = here.join("../..").canonicalize().expect("workspace root exists");
    // Relative to this package, not absolute: cargo's hashes of path packages
    // ignore where the checkout lives, so a target dir shared by two clones
    // must not keep watching the other clone's files.
    // (`guest-sdk` holds the Python SDK too.)
    for watched in ["wit", "guest-sdk", "Cargo.lock", "Cargo.toml"] {
        println!("cargo:rerun-if-changed=../../{watched}");
    }
    // The whole of `plugins/` (cargo scans a directory recursively): an edited
    // plugin, and a plugin directory added or removed, rerun this script.
    println!("cargo:rerun-if-changed=..");
    let plugins = plugin_dirs(&root.join("plugins"));

    ensure_wasm_target();
    let target_dir = out.join("wasm-target");
    build_plugins(&root, &target_dir, &plugins);

    let staged = out.join("plugins");
    let mut consts = String::new();
    let mut all = String::new();
    for p in &plugins {
        let wasm = target_dir.join("wasm32-wasip2/plugin").join(format!("{}.wasm", p.replace('-', "_")));
        let dir = stage(&root.join("plugins").join(p), &staged.join(p), &wasm);
        let ident = p.to_uppercase().replace('-', "_");
        consts.push_str(&format!(
            "/// Staged plugin directory of `{p}` (manifest, component, data files).\n\
             pub const {ident}: &str = {dir:?};\n\
             /// The raw component of `{p}`, as rustc built it.\n\
             pub const {ident}_WASM: &str = {wasm:?};\n",
            dir = dir.display().to_string(),
            wasm = wasm.display().to_string(),
        ));
        all.push_str(&format!("    ({p:?}, {ident}),\n"));
    }
    // The Python plugins, when componentize-py is there; no constants of their
    // own (code that names one would not compile without it): `find` them.
    let python = python_plugin_dirs(&root.join("plugins"));
    let skipped = match componentize_py() {
        Some(tool) => {
            for p in &python {
                let wasm = build_python_plugin(&tool, &root, &out.join("python"), p);
                stage(&root.join("plugins").join(p), &staged.join(p), &wasm);
                all.push_str(&format!("    ({p:?}, {:?}),\n", staged.join(p).display().to_string()));
            }
            String::new()
        }
        None if python.is_empty() => String::new(),
        None => {
            let why = format!(
                "Python plugins ({}) not built: componentize-py is not installed \
                 (pip install -r guest-sdk/python/requirements.txt)",
                python.join(", ")
            );
            println!("cargo:warning={why}");
            why
        }
    };
    consts.push_str(&format!(
        "/// Why the Python plugins were not built (componentize-py missing); empty when they were.\n\
         pub const PYTHON_SKIPPED: &str = {skipped:?};\n"
    ));
    consts.push_str(&format!(
        "/// Every staged plugin as (name, directory).\npub const ALL: &[(&str, &str)] = &[\n{all}];\n"
    ));
    consts.push_str(&format!(
        "/// The directory holding every staged plugin directory.\npub const PLUGINS_DIR: &str = {:?};\n",
        staged.display().to_string()
    ));
    fs::write(out.join("artifacts.rs"), consts).expect("write artifacts.rs");
}

/// Every plugin crate: each directory under `plugins/` with both a
/// `Cargo.toml` and a `plugin.toml` (this crate has no `plugin.toml`), by
/// name, sorted. The workspace's `plugins/*` member glob is the other half
/// of the one list: a new directory is a workspace member and a plugin here.
fn plugin_dirs(plugins: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(plugins)
        .expect("read plugins/")
        .map(|e| e.expect("plugins/ entry").path())
        .filter(|dir| dir.join("Cargo.toml").is_file() && dir.join("plugin.toml").is_file())
        .map(|dir| dir.file_name().expect("a directory name").to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Every Python plugin: each directory under `plugins/` with a `plugin.toml`
/// and an `app.py` and no `Cargo.toml` (the workspace excludes them), sorted.
fn python_plugin_dirs(plugins: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(plugins)
        .expect("read plugins/")
        .map(|e| e.expect("plugins/ entry").path())
        .filter(|dir| {
            dir.join("plugin.toml").is_file()
                && dir.join("app.py").is_file()
                && !dir.join("Cargo.toml").exists()
        })
        .map(|dir| dir.file_name().expect("a directory name").to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The componentize-py command (`$COMPONENTIZE_PY`, else the one on PATH) and
/// its version line, if it runs.
fn componentize_py() -> Option<(PathBuf, String)> {
    println!("cargo:rerun-if-env-changed=COMPONENTIZE_PY");
    let tool = env::var_os("COMPONENTIZE_PY").map(PathBuf::from).unwrap_or_else(|| "componentize-py".into());
    let out = Command::new(&tool).arg("--version").output().ok().filter(|o| o.status.success())?;
    Some((tool, String::from_utf8_lossy(&out.stdout).trim().to_owned()))
}

/// Builds Python plugin `name` (its `app` module, on the Python SDK) into a
/// component under `out`, unless a build of the same sources with the same
/// componentize-py is there already (a build takes seconds; this script reruns
/// whenever anything in `plugins/` changes).
fn build_python_plugin((tool, version): &(PathBuf, String), root: &Path, out: &Path, name: &str) -> PathBuf {
    let dir = root.join("plugins").join(name);
    let sdk = root.join("guest-sdk/python");
    let manifest: toml::Table = fs::read_to_string(dir.join("plugin.toml"))
        .expect("read plugin.toml")
        .parse()
        .expect("plugin.toml is valid TOML");
    let world = match manifest.get("world").and_then(|w| w.as_str()) {
        Some("extractor") => "extractor-plugin",
        _ => "scorer-plugin",
    };
    let mut hasher = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(&(version, world), &mut hasher);
    for tree in [&dir, &sdk, &root.join("wit")] {
        hash_tree(tree, &mut hasher);
    }
    let stamp = format!("{:016x}", std::hash::Hasher::finish(&hasher));
    fs::create_dir_all(out).expect("create the Python build dir");
    let wasm = out.join(format!("{name}.wasm"));
    let stamp_file = out.join(format!("{name}.stamp"));
    if wasm.is_file() && fs::read_to_string(&stamp_file).is_ok_and(|s| s == stamp) {
        return wasm;
    }
    let status = Command::new(tool)
        .arg("-d")
        .arg(root.join("wit"))
        .args(["-w", world, "componentize", "app", "-p"])
        .arg(&dir)
        .arg("-p")
        .arg(&sdk)
        .arg("-o")
        .arg(&wasm)
        .status()
        .expect("run componentize-py");
    assert!(status.success(), "componentize-py failed to build plugins/{name} (see the errors above)");
    fs::write(&stamp_file, stamp).expect("write the build stamp");
    wasm
}

/// Feeds every `.py`, `.wit` and `.toml` file under `dir` (paths and bytes,
/// in sorted order) to `hasher`.
fn hash_tree(dir: &Path, hasher: &mut std::hash::DefaultHasher) {
    let mut entries: Vec<PathBuf> =
        fs::read_dir(dir).expect("read dir").map(|e| e.expect("entry").path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            if !path.file_name().is_some_and(|n| n.to_string_lossy().starts_with(['.', '_'])) {
                hash_tree(&path, hasher);
            }
        } else if path.extension().is_some_and(|e| e == "py" || e == "wit" || e == "toml") {
            std::hash::Hash::hash(&path, hasher);
            std::hash::Hash::hash(&fs::read(&path).expect("read file"), hasher);
        }
    }
}

/// The nested build. Wrappers and flags meant for the host build are removed:
/// `cargo clippy` sets RUSTC_WORKSPACE_WRAPPER, which must not lint wasm here.
fn build_plugins(root: &Path, target_dir: &Path, plugins: &[String]) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--target=wasm32-wasip2")
        .arg("--profile=plugin")
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", target_dir);
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_PROFILE_RELEASE_DEBUG",
    ] {
        cmd.env_remove(var);
    }
    for p in plugins {
        cmd.arg("-p").arg(p);
    }
    let status = cmd.status().expect("run the nested cargo build of plugins/");
    assert!(
        status.success(),
        "building the plugins in plugins/ for wasm32-wasip2 failed (see the errors above)"
    );
}

/// rust-toolchain.toml lists wasm32-wasip2, and rustup installs it with a fresh
/// toolchain; an older install of the same toolchain may lack it, so add it here.
fn ensure_wasm_target() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let libdir = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", "wasm32-wasip2"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if libdir.as_deref().is_some_and(Path::exists) {
        return;
    }
    println!("cargo:warning=wasm32-wasip2 target missing; running `rustup target add wasm32-wasip2`");
    let ok =
        Command::new("rustup").args(["target", "add", "wasm32-wasip2"]).status().is_ok_and(|s| s.success());
    assert!(ok, "the wasm32-wasip2 target is not installed and `rustup target add wasm32-wasip2` failed");
}

/// Copies the plugin's data files and component into `dest`, fresh each time.
fn stage(src: &Path, dest: &Path, wasm: &Path) -> PathBuf {
    let _ = fs::remove_dir_all(dest);
    fs::create_dir_all(dest).expect("create staging dir");
    for entry in fs::read_dir(src).expect("read plugin dir") {
        let entry = entry.expect("plugin dir entry");
        let name = entry.file_name();
        if ["src", "Cargo.toml", "target", "tests", "fixtures", "wit", "__pycache__", ".pytest_cache"]
            .iter()
            .any(|skip| name == *skip)
            || name.to_string_lossy().ends_with(".py")
        {
            continue;
        }
        copy_tree(&entry.path(), &dest.join(&name));
    }
    let manifest = fs::read_to_string(src.join("plugin.toml")).expect("every plugin has a plugin.toml");
    let manifest: toml::Table = manifest.parse().expect("plugin.toml is valid TOML");
    let component =
        manifest.get("component").and_then(|c| c.as_str()).expect("plugin.toml names its component");
    fs::copy(wasm, dest.join(component)).unwrap_or_else(|e| panic!("copy {}: {e}", wasm.display()));
    dest.to_path_buf()
}

fn copy_tree(src: &Path, dest: &Path) {
    if src.is_dir() {
        fs::create_dir_all(dest).expect("create dir");
        for entry in fs::read_dir(src).expect("read dir") {
            let entry = entry.expect("dir entry");
            copy_tree(&entry.path(), &dest.join(entry.file_name()));
        }
    } else {
        fs::copy(src, dest).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
    }
}
