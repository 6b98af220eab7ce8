//! `scorehost new <dir> --kind scorer|extractor [--lang rust|python]`: a
//! plugin that builds and passes `scorehost test` as generated — the start of
//! a team's plugin.
//!
//! It writes `Cargo.toml` (its own workspace; the guest SDK by path from this
//! checkout; this checkout's `Cargo.lock`, so it builds with the versions
//! scorehost is tested with), `rust-toolchain.toml` (the pinned compiler and
//! the wasm32-wasip2 target), `plugin.toml` (pointing at the component cargo
//! builds), `src/lib.rs` (a small working example of the kind), golden
//! vectors in `tests.jsonl` and a README with the next commands.
//!
//! In Python: `app.py` (the same example, on the Python SDK of this checkout),
//! `test_app.py` (its pytest suite), `conftest.py` (puts the SDK on the path),
//! `requirements.txt` (componentize-py and pytest, pinned as scorehost's CI
//! pins them), `plugin.toml`, the same `tests.jsonl`, and a README with the one
//! build command.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_json::json;

/// Arguments of `scorehost new`.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The plugin's directory, created; its last component is the plugin's
    /// name (lowercase letters, digits, `-`, starting with a letter).
    dir: PathBuf,
    /// What the plugin is.
    #[arg(long, value_enum)]
    kind: Kind,
    /// The language it is written in.
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    lang: Lang,
}

/// The languages a plugin can be scaffolded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Lang {
    /// A crate on the Rust SDK, built by cargo.
    Rust,
    /// An `app.py` on the Python SDK, built by componentize-py.
    Python,
}

/// The two plugin worlds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Kind {
    /// Features in, a score out.
    Scorer,
    /// A raw event in, features out.
    Extractor,
}

/// The guest SDK of this checkout, which the new crate depends on by path.
const SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../guest-sdk");
/// The contract of this checkout, which componentize-py builds against.
const WIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../wit");

/// Creates the crate; prints what it wrote and what to run next.
pub fn run(args: NewArgs) -> anyhow::Result<ExitCode> {
    let name = args.dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        bail!("`{name}` is not a plugin name: lowercase letters, digits and `-`, starting with a letter");
    }
    if args.dir.exists() {
        bail!("{} already exists; pick a new directory", args.dir.display());
    }
    let sdk = Path::new(SDK).canonicalize().with_context(|| format!("finding the guest SDK at {SDK}"))?;
    if args.lang == Lang::Python {
        return python(&args, &name, &sdk);
    }
    let (world, source, vectors) = match args.kind {
        Kind::Scorer => ("scorer", include_str!("scaffold/scorer.rs.txt"), scorer_vectors()),
        Kind::Extractor => ("extractor", include_str!("scaffold/extractor.rs.txt"), extractor_vectors()),
    };
    let krate = name.replace('-', "_");
    let files: [(&str, String); 8] = [
        ("Cargo.toml", cargo_toml(&name, &sdk)),
        ("Cargo.lock", include_str!("../../../Cargo.lock").to_owned()),
        ("rust-toolchain.toml", include_str!("../../../rust-toolchain.toml").to_owned()),
        ("plugin.toml", plugin_toml(&name, world, &krate)),
        ("src/lib.rs", source.replace("{name}", &name)),
        ("tests.jsonl", vectors.iter().map(|v| format!("{v}\n")).collect()),
        ("README.md", readme(&name, world, &args.dir)),
        (".gitignore", "/target\n".to_owned()),
    ];
    write_all(&args.dir, &files)?;
    let dir = args.dir.display();
    println!("created {world} `{name}` in {dir}; next:");
    println!(
        "  cargo build --release --target wasm32-wasip2 --manifest-path {dir}/Cargo.toml --target-dir {dir}/target"
    );
    println!("  scorehost test {dir}");
    Ok(ExitCode::SUCCESS)
}

/// Writes `files` (path in `dir`, text), creating directories as needed.
fn write_all(dir: &Path, files: &[(&str, String)]) -> anyhow::Result<()> {
    for (path, text) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("a file in the plugin dir"))
            .with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The Python plugin: the same example and vectors as the Rust one.
fn python(args: &NewArgs, name: &str, sdk: &Path) -> anyhow::Result<ExitCode> {
    let python_sdk = sdk.join("python");
    let wit = Path::new(WIT).canonicalize().with_context(|| format!("finding the contract at {WIT}"))?;
    let (world, source, vectors) = match args.kind {
        Kind::Scorer => ("scorer", include_str!("scaffold/scorer.py.txt"), scorer_vectors()),
        Kind::Extractor => ("extractor", include_str!("scaffold/extractor.py.txt"), extractor_vectors()),
    };
    let build = format!(
        "componentize-py -d {wit} -w {world}-plugin componentize app -p . -p {sdk} -o {name}.wasm",
        wit = wit.display(),
        sdk = python_sdk.display()
    );
    let files: [(&str, String); 8] = [
        ("app.py", source.replace("{name}", name)),
        ("test_app.py", include_str!("scaffold/test_app.py.txt").to_owned()),
        (
            "conftest.py",
            format!(
                "# pytest runs the logic natively: the Python SDK of the scorehost checkout, by path.\n\
                 import sys\n\nsys.path.insert(0, {:?})\n",
                python_sdk.display().to_string()
            ),
        ),
        ("requirements.txt", include_str!("../../../guest-sdk/python/requirements.txt").to_owned()),
        ("plugin.toml", python_plugin_toml(name, world)),
        ("tests.jsonl", vectors.iter().map(|v| format!("{v}\n")).collect()),
        ("README.md", python_readme(name, world, &args.dir, &build)),
        (".gitignore", "*.wasm\n__pycache__/\n.pytest_cache/\n".to_owned()),
    ];
    write_all(&args.dir, &files)?;
    let dir = args.dir.display();
    println!("created {world} `{name}` (Python) in {dir}; next:");
    println!("  pip install -r {dir}/requirements.txt");
    println!("  cd {dir} && {build}");
    println!("  scorehost test {dir}");
    Ok(ExitCode::SUCCESS)
}

fn python_plugin_toml(name: &str, world: &str) -> String {
    format!(
        r#"# The manifest scorehost loads. Fields: runtime/src/version/manifest.rs in scorehost.
name = "{name}"
version = "0.1.0"
world = "{world}"
# What the componentize-py command of README.md writes.
component = "{name}.wasm"

# CPython costs more than Rust per call: more fuel and memory (scorehost's
# docs/plugins-python.md, Limits).
[limits]
fuel = 100_000_000
deadline_ms = 50
memory_mib = 64
"#
    )
}

fn python_readme(name: &str, world: &str, dir: &Path, build: &str) -> String {
    let dir = dir.display();
    format!(
        r#"# {name}

A scorehost {world} in Python, created by `scorehost new --lang python`. The
logic is in `app.py`, its native tests in `test_app.py`, the manifest in
`plugin.toml`, the golden vectors (what the validation gate checks before any
version may serve) in `tests.jsonl`.

```sh
pip install -r requirements.txt          # componentize-py and pytest, pinned
python3 -m pytest                        # the logic, natively
{build}
```

Then, from the scorehost checkout:

```sh
cargo run --release -- test {dir}
cargo run --release -- call {dir} --input '<json>'
```

Import every module at the top of `app.py`: componentize-py keeps what the
module imported when it was built, and there is no file system to import from
at run time. Python code on the `-p` paths is bundled (the SDK is); native
wheels cannot be.
"#
    )
}

fn cargo_toml(name: &str, sdk: &Path) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
# A cdylib built for wasm32-wasip2 is the plugin's WebAssembly component.
crate-type = ["cdylib"]

[dependencies]
scorehost-guest = {{ path = "{sdk}" }}

# Its own workspace, even when created inside another one.
[workspace]

[profile.release]
strip = true
"#,
        sdk = sdk.display()
    )
}

fn plugin_toml(name: &str, world: &str, krate: &str) -> String {
    format!(
        r#"# The manifest scorehost loads. Fields: runtime/src/version/manifest.rs in scorehost.
name = "{name}"
version = "0.1.0"
world = "{world}"
# What `cargo build --release --target wasm32-wasip2 --target-dir target` writes.
component = "target/wasm32-wasip2/release/{krate}.wasm"

[limits]
fuel = 10_000_000
deadline_ms = 50
memory_mib = 16
"#
    )
}

fn readme(name: &str, world: &str, dir: &Path) -> String {
    let dir = dir.display();
    format!(
        r#"# {name}

A scorehost {world}, created by `scorehost new`. The logic is in
`src/lib.rs`, the manifest in `plugin.toml`, the golden vectors (what the
validation gate checks before any version may serve) in `tests.jsonl`.

From the scorehost checkout:

```sh
cargo build --release --target wasm32-wasip2 --manifest-path {dir}/Cargo.toml --target-dir {dir}/target
cargo run --release -- test {dir}
cargo run --release -- call {dir} --input '<json>'
```

Change the logic, then the vectors, then run the two commands again.
"#
    )
}

/// The scorer template's rule, computed here to write its golden vectors.
fn scorer_score(amount_usd: f64, cross_border: bool) -> f64 {
    let z = -4.0 + 1.5 * amount_usd / 1000.0 + if cross_border { 1.2 } else { 0.0 };
    1.0 / (1.0 + (-z).exp())
}

fn scorer_vectors() -> Vec<serde_json::Value> {
    vec![
        json!({"name": "small domestic payment", "input": {"amount_usd": 120.0, "cross_border": false},
               "score": scorer_score(120.0, false), "reasons": ["amount_usd"], "tolerance": 1e-9}),
        json!({"name": "large cross-border payment", "input": {"amount_usd": 2500.0, "cross_border": true},
               "score": scorer_score(2500.0, true), "reasons": ["amount_usd", "cross_border"], "tolerance": 1e-9}),
        json!({"name": "cross_border missing counts as no", "input": {"amount_usd": 800.0},
               "score": scorer_score(800.0, false), "tolerance": 1e-9}),
        json!({"name": "a negative amount is the caller's mistake", "input": {"amount_usd": -1.0},
               "error": "invalid_input"}),
        json!({"name": "the amount is required", "input": {"cross_border": true}, "error": "invalid_input"}),
    ]
}

fn extractor_vectors() -> Vec<serde_json::Value> {
    vec![
        json!({"name": "EUR converts", "input": {"amount": 100.0, "currency": "EUR"},
               "features": {"amount_usd": 108.0, "is_large": false}}),
        json!({"name": "a large GBP payment", "input": {"amount": 1000.0, "currency": "GBP"},
               "features": {"amount_usd": 1270.0, "is_large": true}}),
        json!({"name": "an unknown currency is the caller's mistake", "input": {"amount": 5.0, "currency": "JPY"},
               "error": "invalid_input"}),
    ]
}
