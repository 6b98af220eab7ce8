//! # net-import — a plugin that wants the network
//!
//! Shows: the host grants no network. This plugin opens a TCP connection, so its
//! component imports `wasi:sockets/*`; the runtime rejects it at load with an
//! error that names the import. Used by runtime/tests/all/load.rs.

use scorehost_guest::prelude::*;

struct Phone;

impl Scorer for Phone {
    fn init(_: &Config) -> Result<Self> {
        Ok(Phone)
    }
    fn metadata(&self) -> Metadata {
        Metadata::new("net-import", "0.1.0").description("Tries to phone home.")
    }
    fn score(&self, _: &Features) -> Result<Score> {
        let ok = std::net::TcpStream::connect("127.0.0.1:9").is_ok();
        Ok(Score::new(if ok { 1.0 } else { 0.0 }))
    }
}

export_scorer!(Phone);
