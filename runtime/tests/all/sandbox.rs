//! The filesystem grant: a plugin reads its model dir, and nothing else; the
//! network: sockets are linked, every use denied.

use serde_json::json;

use crate::support::{load, obj};

#[test]
fn model_dir_is_readable_but_nothing_else_and_nothing_is_writable() {
    // The targets exist on the host, so a denied read is the sandbox, not a typo.
    let staged = crate::support::staged("fs-probe");
    assert!(std::path::Path::new("/etc/passwd").exists() && staged.join("plugin.toml").exists());
    let probe = load("fs-probe");
    let out = probe.score(&obj(json!({})), None).unwrap();
    let outcome = |code: &str| {
        out.value.reasons.iter().find(|(c, _)| c == code).unwrap_or_else(|| panic!("no probe {code}")).1
    };
    assert_eq!(outcome("read_inside"), 1.0, "the model dir must be readable");
    assert_eq!(outcome("list_inside"), 1.0, "the model dir must be listable");
    assert_eq!(outcome("read_outside_abs"), 0.0, "an absolute host path must not be readable");
    assert_eq!(outcome("read_outside_dotdot"), 0.0, "`..` must not escape the model dir");
    assert_eq!(outcome("read_root"), 0.0, "nothing but /model is visible");
    assert_eq!(outcome("write_inside"), 0.0, "the model dir is read-only");
    assert_eq!(outcome("create_dir_inside"), 0.0, "the model dir is read-only");
    assert_eq!(outcome("env_visible"), 0.0, "no environment variables");
    assert!(!staged.join("model/written.txt").exists() && !staged.join("model/newdir").exists());
}

#[test]
fn sockets_load_but_every_connect_and_lookup_is_denied() {
    // A real listener on loopback: a connect that got through would land here.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let phone = load("net-import");
    let e = phone.score(&obj(json!({"addr": addr})), None).unwrap_err();
    assert!(e.to_string().contains(&format!("connect {addr}: Permission denied")), "{e}");
    assert_eq!(listener.accept().unwrap_err().kind(), std::io::ErrorKind::WouldBlock, "nothing connected");
    // Name lookup answers access-denied, which Rust's std (through wasi-libc's
    // getaddrinfo) reports as a failed lookup: even `localhost` resolves to nothing.
    let e = phone.score(&obj(json!({"host": "localhost"})), None).unwrap_err();
    assert!(e.to_string().contains("resolve localhost: failed to lookup address information"), "{e}");
}
