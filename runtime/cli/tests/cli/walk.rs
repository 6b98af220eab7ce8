//! The README's five-command walk, from nothing to a new plugin served over
//! HTTP, run line by line as the README has them (`<!-- new-plugin-walk -->`):
//! `cargo run --release --` is this test build's `scorehost`, `cargo build`
//! is cargo itself, the server gets a free port instead of 8080, and the
//! `curl` line is sent over a plain socket. Also: `--kind extractor`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The walk's command lines.
fn walk() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let after = readme.split("<!-- new-plugin-walk -->").nth(1).expect("README has the walk");
    let block = after.split("```sh\n").nth(1).unwrap().split("```").next().unwrap();
    block.lines().map(str::to_owned).collect()
}

/// Splits a command line as a POSIX shell would for these lines: words,
/// single-quoted strings, a trailing `&`.
fn words(line: &str) -> Vec<String> {
    let (mut out, mut word, mut quoted, mut any) = (Vec::new(), String::new(), false, false);
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any {
                    out.push(std::mem::take(&mut word));
                    any = false;
                }
            }
            c => {
                word.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(word);
    }
    out
}

fn scorehost(dir: &Path, cache: &Path, args: &[String]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_scorehost"));
    c.current_dir(dir).arg("--cache-dir").arg(cache).args(args);
    c
}

fn cargo(dir: &Path, args: &[String]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo).current_dir(dir).args(args).output().unwrap();
    assert!(out.status.success(), "cargo {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A server process, killed (and waited for) when dropped, a failing test included.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `serve` on a free port; returns the server and its address.
fn serve(dir: &Path, cache: &Path, args: &[String]) -> (Server, String) {
    let mut args = args.to_vec();
    args.extend(["--addr".to_owned(), "127.0.0.1:0".to_owned()]);
    let mut server = Server(scorehost(dir, cache, &args).stderr(Stdio::piped()).spawn().unwrap());
    let mut lines = BufReader::new(server.0.stderr.take().unwrap()).lines();
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some(addr) = line.split("on http://").nth(1) {
            // Keep draining the server's log so it never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            return (server, addr.trim().to_owned());
        }
    }
    panic!("the server did not say where it listens");
}

/// The `curl` line, sent to `addr`: returns status and body.
fn curl(args: &[String], addr: &str) -> (u16, Value) {
    let (mut headers, mut body, mut url) = (Vec::new(), String::new(), String::new());
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "-s" => {}
            "-H" => headers.push(it.next().unwrap().clone()),
            "-d" => body = it.next().unwrap().clone(),
            u => url = u.to_owned(),
        }
    }
    let path = &url[url.find('/').expect("a path in the URL")..];
    let mut s = TcpStream::connect(addr).unwrap();
    let head: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\n{head}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let status = response.split(' ').nth(1).unwrap().parse().unwrap();
    let json = response.split("\r\n\r\n").nth(1).map_or(Value::Null, |b| serde_json::from_str(b).unwrap());
    (status, json)
}

#[test]
fn the_readme_walk_serves_a_new_plugin_over_http() {
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("cache");
    let lines = walk();
    assert_eq!(lines.len(), 5, "the walk is five commands: {lines:?}");
    let mut server = None;
    let mut answer = None;
    for line in &lines {
        let mut w = words(line);
        let background = w.last().is_some_and(|l| l == "&");
        if background {
            w.pop();
        }
        match (w[0].as_str(), w.get(1).map(String::as_str), w.get(2).map(String::as_str)) {
            ("cargo", Some("run"), Some("--release")) => {
                assert_eq!(w[3], "--");
                let args = &w[4..];
                if background {
                    server = Some(serve(root.path(), &cache, args));
                } else {
                    let out = scorehost(root.path(), &cache, args).output().unwrap();
                    assert!(out.status.success(), "{line}: {}", String::from_utf8_lossy(&out.stderr));
                }
            }
            ("cargo", Some("build"), _) => cargo(root.path(), &w[1..]),
            ("curl", _, _) => {
                let (_, addr) = server.as_ref().expect("the server runs before curl");
                answer = Some(curl(&w, addr));
            }
            _ => panic!("the walk has a command this test does not know: {line}"),
        }
    }
    drop(server);
    let (status, json) = answer.expect("the walk ends with a request");
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["plugin"], "fraud-rules");
    // The template's rule: sigmoid(-4 + 1.5 × 2.5 + 1.2).
    let want = 1.0 / (1.0 + (-(-4.0f64 + 3.75 + 1.2)).exp());
    assert!((json["score"].as_f64().unwrap() - want).abs() < 1e-9, "{json}");
    assert_eq!(json["reasons"][0]["code"], "amount_usd", "{json}");
}

#[test]
fn an_extractor_scaffold_builds_and_passes_its_vectors_and_names_are_checked() {
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("cache");
    let run = |args: &[&str]| run_in(root.path(), &cache, args);
    let out = run(&["new", "p/amount-features", "--kind", "extractor"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let args: Vec<String> =
        "build --release --target wasm32-wasip2 --manifest-path p/amount-features/Cargo.toml \
                             --target-dir p/amount-features/target"
            .split_whitespace()
            .map(str::to_owned)
            .collect();
    cargo(root.path(), &args);
    let out = run(&["test", "p/amount-features"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 vectors, 0 failed"));
    let out = run(&["call", "p/amount-features", "--input", r#"{"amount": 100, "currency": "EUR"}"#]);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["features"]["amount_usd"], 108.0, "{json}");

    // Existing directories and bad names are refused, with the reason.
    for (dir, why) in [("p/amount-features", "already exists"), ("p/Fraud_Rules", "not a plugin name")] {
        let out = run(&["new", dir, "--kind", "scorer"]);
        assert_eq!(out.status.code(), Some(2));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(why),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `scorehost new --lang python`, both kinds: built with the one command its
/// README gives, it passes its golden vectors and its own pytest suite.
/// Needs componentize-py and pytest (skipped with a message without them,
/// except under CI, where `.ci/run` installs them).
#[test]
fn python_scaffolds_build_with_one_command_and_pass_their_vectors_and_tests() {
    if !python_tools() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("cache");
    let run = |args: &[&str]| run_in(root.path(), &cache, args);
    for (kind, vectors) in [("scorer", "5 vectors, 0 failed"), ("extractor", "3 vectors, 0 failed")] {
        let dir = format!("p/py-{kind}");
        let out = run(&["new", &dir, "--kind", kind, "--lang", "python"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        build_as_the_readme_says(&root.path().join(&dir), "");
        let pytest = Command::new("python3")
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
            .current_dir(root.path().join(&dir))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output()
            .unwrap();
        assert!(pytest.status.success(), "{}", String::from_utf8_lossy(&pytest.stdout));
        let out = run(&["test", &dir]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && stdout.contains(vectors), "{stdout}");
    }
    let out = run(&["call", "p/py-scorer", "--input", r#"{"amount_usd": 2500, "cross_border": true}"#]);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let want = 1.0 / (1.0 + (-(-4.0f64 + 3.75 + 1.2)).exp());
    assert!((json["score"].as_f64().unwrap() - want).abs() < 1e-9, "{json}");
}

/// Whether componentize-py and pytest are installed; without them a Python
/// test is skipped with a message, except under CI (`.ci/run` installs them).
fn python_tools() -> bool {
    let have =
        |cmd: &str, args: &[&str]| Command::new(cmd).args(args).output().is_ok_and(|o| o.status.success());
    if !have("componentize-py", &["--version"]) || !have("python3", &["-m", "pytest", "--version"]) {
        assert!(std::env::var_os("CI").is_none(), "componentize-py and pytest are required under CI");
        eprintln!(
            "skipped: componentize-py or pytest missing (pip install -r guest-sdk/python/requirements.txt)"
        );
        return false;
    }
    true
}

/// A Python scorer built on a third-party pure-Python package: `packaging`
/// (pytest depends on it, so it is installed wherever pytest is).
const CLIENT_AGE_APP: &str = r#""""client-age: scores a payment by how old the client app that sent it is.

Shows: a third-party pure-Python package (`packaging`) bundled from a `-p`
directory and called in the sandbox. Versions compare as versions, not as
text: 4.10.0 is newer than 4.2.
"""

from packaging.version import InvalidVersion, Version

import scorehost_guest as sh

OLDEST_SUPPORTED = Version("4.2")


class Plugin(sh.Scorer):
    name, version = "client-age", "0.1.0"
    description = "Risk from the age of the client app's version."
    inputs = [sh.Field.text("client_version", required=True, doc="the app's version, e.g. 4.10.1")]

    def score(self, f):
        raw = f.text("client_version")
        try:
            old = Version(raw) < OLDEST_SUPPORTED
        except InvalidVersion:
            raise sh.PluginError.invalid_input(f"client_version {raw!r} is not a version") from None
        return sh.Score(0.9 if old else 0.1).reason("client_version", 1.0 if old else 0.0)


Scorer, FrameScorer = sh.export_scorer(Plugin)
"#;

#[test]
fn a_pure_python_package_on_a_p_path_is_bundled_and_runs_in_the_sandbox() {
    // What docs/plugins-python.md ("What packages work") tells a data
    // scientist to do: install the package into a directory (as `pip install
    // --target deps packaging` would; here a copy of the installed one, so the
    // test needs no network) and add `-p deps` to the scaffold's build command.
    if !python_tools() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("cache");
    let run = |args: &[&str]| run_in(root.path(), &cache, args);
    let out = run(&["new", "p/client-age", "--kind", "scorer", "--lang", "python"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dir = root.path().join("p/client-age");
    let where_ = Command::new("python3")
        .args(["-c", "import os, packaging; print(os.path.dirname(packaging.__file__))"])
        .output()
        .unwrap();
    assert!(where_.status.success(), "packaging is installed with pytest");
    let installed = String::from_utf8(where_.stdout).unwrap();
    scorehost_plugin_artifacts::copy_dir(Path::new(installed.trim()), &dir.join("deps/packaging")).unwrap();
    std::fs::write(dir.join("app.py"), CLIENT_AGE_APP).unwrap();
    std::fs::write(
        dir.join("tests.jsonl"),
        concat!(
            r#"{"name": "old", "input": {"client_version": "4.1.9"}, "score": 0.9, "reasons": ["client_version"]}"#,
            "\n",
            r#"{"name": "newer as a version, older as text", "input": {"client_version": "4.10.0"}, "score": 0.1}"#,
            "\n",
            r#"{"name": "not a version", "input": {"client_version": "four"}, "error": "invalid_input"}"#,
            "\n"
        ),
    )
    .unwrap();
    build_as_the_readme_says(&dir, "-p deps");
    let out = run(&["test", "p/client-age"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("3 vectors, 0 failed"), "{stdout}");
}

/// Builds the Python scaffold in `dir` with the componentize-py command its
/// README gives, exactly, plus `extra` arguments (e.g. another `-p` path).
fn build_as_the_readme_says(dir: &Path, extra: &str) {
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    let build = readme.lines().find(|l| l.starts_with("componentize-py ")).expect("a build command");
    let build = format!("{build} {extra}");
    let status = Command::new("sh").args(["-c", &build]).current_dir(dir).status().unwrap();
    assert!(status.success(), "{build}");
}

/// `scorehost ARGS` in `root` with compiled cache `cache`; its output.
fn run_in(root: &Path, cache: &Path, args: &[&str]) -> std::process::Output {
    scorehost(root, cache, &args.iter().map(|a| a.to_string()).collect::<Vec<_>>()).output().unwrap()
}
