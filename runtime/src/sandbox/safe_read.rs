//! Reading plugin files without following them out.
//!
//! A plugin directory comes from outside (an upload, a directory the watcher
//! found, a path on the command line), so a file it names may be anything: a
//! symlink to `/dev/zero` (read to the end, it exhausts memory), a FIFO (a
//! plain `open` blocks until someone writes to it, with the admin lock held),
//! or a component of many gigabytes. [`read_regular`] reads a file through the
//! plugin's cap-std [`Dir`], so `..`, absolute paths and symlinks that lead
//! out of the directory fail; it opens without blocking, checks on the open
//! handle that the file is a regular file, and reads at most a limit. Each
//! refusal is a [`ReadError`] that names the file and says why.

use std::io::Read;
use std::path::{Path, PathBuf};

use cap_std::fs::{Dir, FileType, OpenOptions};

/// Why a plugin file was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The name is not a regular file: a directory, a FIFO, a device or a socket.
    #[error("{} is a {kind}, not a regular file; plugin files must be regular files", path.display())]
    NotAFile {
        /// The file, as named inside the plugin directory.
        path: PathBuf,
        /// What it is instead, e.g. `FIFO (named pipe)`.
        kind: &'static str,
    },
    /// The file holds more bytes than this file may.
    #[error("{} is larger than {}, the most this file may hold", path.display(), size(*limit))]
    TooLarge {
        /// The file, as named inside the plugin directory.
        path: PathBuf,
        /// The limit it is over, in bytes.
        limit: u64,
    },
    /// The name leads out of the plugin directory: an absolute path, `..`, or a
    /// symlink pointing outside (e.g. to `/dev/zero`).
    #[error(
        "{} leads outside the plugin directory (an absolute path, `..` or a symlink pointing out); \
         plugin files must be inside it",
        path.display()
    )]
    Outside {
        /// The file, as named inside the plugin directory.
        path: PathBuf,
    },
    /// The OS refused to open or read the file (missing, no permission, …).
    #[error("cannot read {}: {cause}", path.display())]
    Io {
        /// The file, as named inside the plugin directory.
        path: PathBuf,
        /// The OS error (in the message, so not also a `source`).
        cause: std::io::Error,
    },
}

impl ReadError {
    /// The file, as named inside the plugin directory.
    pub fn path(&self) -> &Path {
        match self {
            ReadError::NotAFile { path, .. }
            | ReadError::TooLarge { path, .. }
            | ReadError::Outside { path }
            | ReadError::Io { path, .. } => path,
        }
    }

    /// The error as an `io::Error` whose message says why without naming the
    /// file, for error types that carry the path next to an `io::Error`
    /// (`LoadError::Io`: `cannot read <path>: <this>`). The OS error itself
    /// for [`ReadError::Io`]; `InvalidInput`, `InvalidData` or
    /// `PermissionDenied` for the refusals.
    pub fn into_io_error(self) -> std::io::Error {
        use std::io::{Error, ErrorKind};
        match self {
            ReadError::NotAFile { kind, .. } => Error::new(
                ErrorKind::InvalidInput,
                format!("it is a {kind}, not a regular file; plugin files must be regular files"),
            ),
            ReadError::TooLarge { limit, .. } => Error::new(
                ErrorKind::InvalidData,
                format!("it is larger than {}, the most this file may hold", size(limit)),
            ),
            ReadError::Outside { .. } => Error::new(
                ErrorKind::PermissionDenied,
                "it leads outside the plugin directory (an absolute path, `..` or a symlink pointing \
                 out); plugin files must be inside it",
            ),
            ReadError::Io { cause, .. } => cause,
        }
    }
}

/// Reads the regular file `name` inside `dir`, at most `max` bytes.
///
/// Symlinks are followed only while they stay inside `dir` (cap-std's rule);
/// one leading out is [`ReadError::Outside`]. The file is opened read-only
/// and, on Linux, with `O_NONBLOCK`, so a FIFO neither blocks the open nor
/// the read; its type is then checked on the open handle (no window between
/// check and use), and anything but a regular file is
/// [`ReadError::NotAFile`]. A file of more than `max` bytes is
/// [`ReadError::TooLarge`], found by its size or, should it grow while being
/// read, by reading at most `max + 1` bytes.
pub fn read_regular(dir: &Dir, name: &Path, max: u64) -> Result<Vec<u8>, ReadError> {
    let io = |cause: std::io::Error| {
        if is_escape(&cause) {
            ReadError::Outside { path: name.to_owned() }
        } else {
            ReadError::Io { path: name.to_owned(), cause }
        }
    };

    // Without O_NONBLOCK (no libc elsewhere), check the type first: racy, but
    // it keeps a FIFO that sits there from blocking the open below.
    #[cfg(not(target_os = "linux"))]
    {
        let meta = dir.metadata(name).map_err(io)?;
        if !meta.is_file() {
            return Err(ReadError::NotAFile { path: name.to_owned(), kind: kind(meta.file_type()) });
        }
    }

    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(target_os = "linux")]
    {
        use cap_std::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = dir.open_with(name, &options).map_err(io)?;

    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(ReadError::NotAFile { path: name.to_owned(), kind: kind(meta.file_type()) });
    }
    if meta.len() > max {
        return Err(ReadError::TooLarge { path: name.to_owned(), limit: max });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(max.saturating_add(1)).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > max {
        return Err(ReadError::TooLarge { path: name.to_owned(), limit: max });
    }
    Ok(bytes)
}

/// Whether `e` is cap-std's refusal of a path that leads out of its `Dir` (an
/// absolute path, `..` past the top, or a symlink pointing outside): cap-std
/// reports it as a `PermissionDenied` of its own with no OS error code ("a
/// path led outside of the filesystem"), where a real EACCES carries one.
pub fn is_escape(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::PermissionDenied && e.raw_os_error().is_none()
}

/// What a file that is not a regular file is, in words.
fn kind(t: FileType) -> &'static str {
    if t.is_dir() {
        return "directory";
    }
    if t.is_symlink() {
        return "symbolic link";
    }
    #[cfg(unix)]
    {
        use cap_std::fs::FileTypeExt;
        if t.is_fifo() {
            return "FIFO (named pipe)";
        }
        if t.is_char_device() {
            return "character device";
        }
        if t.is_block_device() {
            return "block device";
        }
        if t.is_socket() {
            return "socket";
        }
    }
    "special file"
}

/// `bytes` for a message: in KiB or MiB when it is a whole number of them.
fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b.is_multiple_of(1 << 20) => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b.is_multiple_of(1 << 10) => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use cap_std::ambient_authority;

    use super::*;

    fn plugin_dir() -> (tempfile::TempDir, Dir) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open_ambient_dir(tmp.path(), ambient_authority()).unwrap();
        (tmp, dir)
    }

    fn mkfifo(path: &Path) {
        let status = std::process::Command::new("mkfifo").arg(path).status().expect("running mkfifo");
        assert!(status.success(), "mkfifo {}", path.display());
    }

    #[test]
    fn a_regular_file_reads_up_to_the_limit() {
        let (tmp, dir) = plugin_dir();
        std::fs::write(tmp.path().join("plugin.toml"), b"name = \"x\"\n").unwrap();
        assert_eq!(read_regular(&dir, Path::new("plugin.toml"), 11).unwrap(), b"name = \"x\"\n");
        assert_eq!(read_regular(&dir, Path::new("plugin.toml"), 1 << 20).unwrap().len(), 11);
        std::fs::write(tmp.path().join("empty"), b"").unwrap();
        assert!(read_regular(&dir, Path::new("empty"), 0).unwrap().is_empty());
    }

    #[test]
    fn a_file_over_the_limit_is_refused() {
        let (tmp, dir) = plugin_dir();
        std::fs::write(tmp.path().join("big.wasm"), vec![0u8; 4097]).unwrap();
        let e = read_regular(&dir, Path::new("big.wasm"), 4096).unwrap_err();
        assert!(matches!(e, ReadError::TooLarge { limit: 4096, .. }), "{e}");
        assert!(e.to_string().contains("big.wasm") && e.to_string().contains("4 KiB"), "{e}");
    }

    #[test]
    fn a_fifo_is_refused_promptly() {
        let (tmp, dir) = plugin_dir();
        mkfifo(&tmp.path().join("tests.jsonl"));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || tx.send(read_regular(&dir, Path::new("tests.jsonl"), 1 << 20)));
        let e = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("reading a FIFO must not block")
            .expect_err("a FIFO is not a regular file");
        assert!(matches!(e, ReadError::NotAFile { kind: "FIFO (named pipe)", .. }), "{e}");
        assert!(e.to_string().contains("tests.jsonl is a FIFO"), "{e}");
    }

    #[test]
    fn a_directory_is_refused() {
        let (tmp, dir) = plugin_dir();
        std::fs::create_dir(tmp.path().join("logreg.wasm")).unwrap();
        let e = read_regular(&dir, Path::new("logreg.wasm"), 1 << 20).unwrap_err();
        assert!(matches!(e, ReadError::NotAFile { kind: "directory", .. }), "{e}");
    }

    #[test]
    fn a_symlink_out_of_the_directory_is_refused() {
        let (tmp, dir) = plugin_dir();
        std::os::unix::fs::symlink("/dev/zero", tmp.path().join("tests.jsonl")).unwrap();
        let e = read_regular(&dir, Path::new("tests.jsonl"), 1 << 20).unwrap_err();
        assert!(matches!(e, ReadError::Outside { .. }), "{e}");
        assert!(e.to_string().contains("leads outside the plugin directory"), "{e}");
        for name in ["../secret", "/etc/passwd"] {
            let e = read_regular(&dir, Path::new(name), 1 << 20).unwrap_err();
            assert!(matches!(e, ReadError::Outside { .. }), "{name}: {e}");
        }
    }

    #[test]
    fn a_symlink_inside_the_directory_is_followed() {
        let (tmp, dir) = plugin_dir();
        std::fs::create_dir(tmp.path().join("v2")).unwrap();
        std::fs::write(tmp.path().join("v2/tests.jsonl"), b"{}\n").unwrap();
        std::os::unix::fs::symlink("v2/tests.jsonl", tmp.path().join("tests.jsonl")).unwrap();
        assert_eq!(read_regular(&dir, Path::new("tests.jsonl"), 16).unwrap(), b"{}\n");
    }

    #[test]
    fn a_character_device_is_refused() {
        // A symlink in a plugin directory cannot reach /dev (see above), and
        // making a device node needs privileges; so read /dev itself as the Dir.
        let dev = Dir::open_ambient_dir("/dev", ambient_authority()).unwrap();
        let e = read_regular(&dev, Path::new("zero"), 1 << 20).unwrap_err();
        assert!(matches!(e, ReadError::NotAFile { kind: "character device", .. }), "{e}");
    }

    #[test]
    fn a_missing_file_is_an_io_error_naming_it() {
        let (_tmp, dir) = plugin_dir();
        let e = read_regular(&dir, Path::new("missing.wasm"), 1 << 20).unwrap_err();
        match &e {
            ReadError::Io { cause, .. } => assert_eq!(cause.kind(), std::io::ErrorKind::NotFound),
            other => panic!("expected Io, got {other}"),
        }
        assert_eq!(e.path(), Path::new("missing.wasm"));
        assert_eq!(e.into_io_error().kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size(256 << 20), "256 MiB");
        assert_eq!(size(64 << 10), "64 KiB");
        assert_eq!(size(1000), "1000 bytes");
    }
}
