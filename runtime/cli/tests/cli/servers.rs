//! The real servers the fleet tests start — Debian's `etcd-server` and
//! `docker-registry` — each on a free loopback port with a temp data dir,
//! waited for until it answers, and stopped by PID (SIGTERM, then SIGKILL)
//! on drop. Without the binary on PATH a test is skipped with a message,
//! except under CI, where `.ci/run` installs it and a missing one fails.

#![cfg_attr(not(feature = "fleet"), allow(dead_code))]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Process, installed};

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// An etcd on loopback that can be stopped and started again on the same data dir.
pub struct Etcd {
    process: Option<Process>,
    bin: PathBuf,
    /// `127.0.0.1:<client port>`.
    pub endpoint: String,
    peer: u16,
    dir: tempfile::TempDir,
}

/// A single-node etcd, healthy; `None` (skip) when it is not installed outside CI.
pub fn etcd() -> Option<Etcd> {
    let bin = installed("etcd", "etcd-server")?;
    let mut etcd = Etcd {
        process: None,
        bin,
        endpoint: format!("127.0.0.1:{}", free_port()),
        peer: free_port(),
        dir: tempfile::tempdir().unwrap(),
    };
    etcd.start();
    Some(etcd)
}

impl Etcd {
    /// Starts it (again, on the same ports and data) and waits until it is healthy.
    pub fn start(&mut self) {
        let c = format!("http://{}", self.endpoint);
        let p = format!("http://127.0.0.1:{}", self.peer);
        let mut child = Command::new(&self.bin);
        child
            .args(["--name", "n1", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &c, "--advertise-client-urls", &c])
            .args(["--listen-peer-urls", &p, "--initial-advertise-peer-urls", &p])
            .args(["--initial-cluster", &format!("n1={p}"), "--initial-cluster-state", "new"])
            .args(["--logger", "zap", "--log-level", "error"]);
        self.process = Some(start_quietly(&mut child, &format!("etcd on {c}"), || {
            let out = Command::new("curl").args(["-sf", &format!("{c}/health")]).output();
            out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("\"true\""))
        }));
    }

    /// Stops it (SIGTERM, waited for).
    pub fn stop(&mut self) {
        self.process = None;
    }
}

/// A `docker-registry` on loopback that can be stopped and started again on the same storage.
pub struct Registry {
    process: Option<Process>,
    bin: PathBuf,
    /// `127.0.0.1:<port>`.
    pub addr: String,
    dir: tempfile::TempDir,
}

/// The registry, answering; `None` (skip) when it is not installed outside CI.
pub fn registry() -> Option<Registry> {
    let bin = installed("docker-registry", "docker-registry")?;
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    std::fs::write(
        dir.path().join("config.yml"),
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: {addr}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut registry = Registry { process: None, bin, addr, dir };
    registry.start();
    Some(registry)
}

impl Registry {
    /// Starts it (again, on the same port and storage) and waits until it answers.
    pub fn start(&mut self) {
        let mut child = Command::new(&self.bin);
        child.arg("serve").arg(self.dir.path().join("config.yml"));
        let what = format!("docker-registry on {}", self.addr);
        self.process = Some(start_quietly(&mut child, &what, || get_status(&self.addr, "/v2/") == Some(200)));
    }

    /// Stops it (SIGTERM, waited for).
    pub fn stop(&mut self) {
        self.process = None;
    }
}

/// Spawns `command` with its output discarded and waits (up to 20 s) until
/// `answers`; the process is stopped by PID when the returned guard drops.
fn start_quietly(command: &mut Command, what: &str, answers: impl Fn() -> bool) -> Process {
    let process = Process(command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !answers() {
        assert!(Instant::now() < deadline, "{what} did not answer within 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    process
}

/// The status code of a plain GET, or `None` if nothing answers.
pub fn get_status(addr: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// A `redis-server` on loopback, appending every write to its AOF (so a
/// restart on the same dir keeps the counts), that can be stopped, started,
/// paused (SIGSTOP) and resumed.
pub struct Redis {
    process: Option<Process>,
    bin: PathBuf,
    /// The port it listens on.
    pub port: u16,
    dir: tempfile::TempDir,
}

/// A Redis, not started yet; `None` (skip) when it is not installed outside CI.
pub fn redis() -> Option<Redis> {
    let bin = installed("redis-server", "redis-server")?;
    Some(Redis { process: None, bin, port: free_port(), dir: tempfile::tempdir().unwrap() })
}

impl Redis {
    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts it (again, on the same port and data) and waits until it answers PING.
    pub fn start(&mut self) {
        let mut child = Command::new(&self.bin);
        child
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
            .arg(self.dir.path());
        let port = self.port;
        let what = format!("redis-server on {port}");
        self.process = Some(start_quietly(&mut child, &what, || ping(port)));
    }

    /// Stops it (SIGTERM, waited for).
    pub fn stop(&mut self) {
        self.process = None;
    }

    /// Freezes it (SIGSTOP): connections stay open, nothing is answered.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws it (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.process.as_ref().expect("started").0.id().to_string();
        assert!(Command::new("kill").args([sig, &pid]).status().unwrap().success());
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if self.process.is_some() {
            self.resume(); // a stopped process ignores SIGTERM until continued
        }
    }
}

/// Whether a Redis answers PING on `port`.
fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut reply = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}
