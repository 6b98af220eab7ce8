//! Paths of the plugins in `plugins/`, built from source to wasm32-wasip2
//! components by this crate's build script and staged as loadable plugin
//! directories. Tests, benches and `scorehost serve` use these; nothing in the
//! repository is a prebuilt binary.

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));
