//! # fs-probe — what can a plugin see of the filesystem?
//!
//! Shows: a plugin's only file access is its read-only model directory, visible
//! at `/model` during `init`. `init` tries a list of file operations and records
//! which succeeded; `score` reports them as reasons (weight 1 = allowed, 0 =
//! denied), so a test can assert the grant from outside. Used by
//! runtime/tests/all/sandbox.rs.

use scorehost_guest::prelude::*;

struct Probe {
    outcomes: Vec<(&'static str, bool)>,
}

impl Scorer for Probe {
    fn init(config: &Config) -> Result<Self> {
        let outside = config.get("outside").unwrap_or("/etc/passwd").to_owned();
        let outcomes = vec![
            ("read_inside", std::fs::read("/model/allowed.txt").is_ok()),
            ("list_inside", std::fs::read_dir("/model").is_ok()),
            ("read_outside_abs", std::fs::read(&outside).is_ok()),
            ("read_outside_dotdot", std::fs::read("/model/../plugin.toml").is_ok()),
            ("read_root", std::fs::read_dir("/").map(|d| d.count() > 1).unwrap_or(false)),
            ("write_inside", std::fs::write("/model/written.txt", b"x").is_ok()),
            ("create_dir_inside", std::fs::create_dir("/model/newdir").is_ok()),
            ("env_visible", std::env::vars().next().is_some()),
        ];
        Ok(Probe { outcomes })
    }
    fn metadata(&self) -> Metadata {
        Metadata::new("fs-probe", "0.1.0").description("Reports which file operations init could do.")
    }
    fn score(&self, _: &Features) -> Result<Score> {
        Ok(self
            .outcomes
            .iter()
            .fold(Score::new(0.0), |s, &(code, ok)| s.reason(code, if ok { 1.0 } else { 0.0 })))
    }
}

export_scorer!(Probe);
