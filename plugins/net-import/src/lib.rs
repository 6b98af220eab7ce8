//! # net-import — a plugin that wants the network
//!
//! Shows: the host grants no network. This plugin opens a TCP connection to
//! loopback, so its component imports `wasi:sockets/*`; the host links those
//! deny-all, so it loads, and the connect fails with access denied before any
//! system call. It answers that failure as an internal error naming it (a 1.0
//! would mean it connected); with `host`, it resolves a name instead, which
//! is denied the same way. Used by runtime/tests/all/sandbox.rs.

use scorehost_guest::prelude::*;

struct Phone;

impl Scorer for Phone {
    fn init(_: &Config) -> Result<Self> {
        Ok(Phone)
    }
    fn metadata(&self) -> Metadata {
        Metadata::new("net-import", "0.1.0")
            .description("Tries to phone home.")
            .input(text("addr").doc("where to connect (default 127.0.0.1:9)"))
            .input(text("host").doc("a name to resolve instead (e.g. localhost)"))
    }
    fn score(&self, f: &Features) -> Result<Score> {
        if let Some(host) = f.text_opt("host")? {
            return match std::net::ToSocketAddrs::to_socket_addrs(&(host, 80)) {
                Ok(_) => Ok(Score::new(1.0)),
                Err(e) => Err(PluginError::internal(format!("resolve {host}: {e} ({:?})", e.kind()))),
            };
        }
        let addr = f.text_opt("addr")?.unwrap_or("127.0.0.1:9");
        match std::net::TcpStream::connect(addr) {
            Ok(_) => Ok(Score::new(1.0)),
            Err(e) => Err(PluginError::internal(format!("connect {addr}: {e} ({:?})", e.kind()))),
        }
    }
}

export_scorer!(Phone);
