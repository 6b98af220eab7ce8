//! The plugins in `plugins/`, built from source to wasm32-wasip2 components
//! by this crate's build script and staged as loadable plugin directories,
//! and the helpers tests, benches and the `scorehost` CLI use to find and copy
//! them. Nothing in the repository is a prebuilt binary.

use std::io;
use std::path::{Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));

/// The staged directory of the bundled plugin `name` (its directory name
/// under `plugins/`), if there is one.
pub fn find(name: &str) -> Option<PathBuf> {
    ALL.iter().find(|(n, _)| *n == name).map(|(_, dir)| PathBuf::from(dir))
}

/// The names of every bundled plugin, for messages that list them.
pub fn names() -> impl Iterator<Item = &'static str> {
    ALL.iter().map(|(n, _)| *n)
}

/// The staged directory of the bundled plugin `name`. For tests and benches,
/// where an unknown name is a bug in the test: panics naming the plugins
/// there are.
pub fn staged(name: &str) -> PathBuf {
    find(name).unwrap_or_else(|| {
        panic!("no bundled plugin `{name}` (there are: {})", names().collect::<Vec<_>>().join(", "))
    })
}

/// A private temporary copy of the bundled plugin `name` whose `plugin.toml`
/// `edit` rewrites: for tests and benches that need a variant (other limits,
/// another version) without touching the shared staged copy.
pub fn copy_with(name: &str, edit: impl FnOnce(String) -> String) -> io::Result<tempfile::TempDir> {
    let tmp = tempfile::tempdir()?;
    copy_dir(&staged(name), tmp.path())?;
    let manifest = tmp.path().join("plugin.toml");
    let text = std::fs::read_to_string(&manifest)?;
    std::fs::write(&manifest, edit(text))?;
    Ok(tmp)
}

/// Copies the directory tree `from` to `to` (created if missing).
pub fn copy_dir(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), dest)?;
        }
    }
    Ok(())
}
