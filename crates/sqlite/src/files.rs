//! The database file and its `-wal` and `-shm` files: creating them private,
//! looking at them without changing anything, and naming them in errors.

use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use session_core::{Error, OpenMode, Result};

use crate::db::BACKEND;

/// How errors name a database file.
pub(crate) fn describe(path: &Path) -> String {
    format!("SQLite file {}", path.display())
}

/// `NotFound` for a missing database file.
pub(crate) fn not_found(what: &str) -> Error {
    Error::NotFound {
        what: what.to_owned(),
    }
}

/// What is at a store's path, for a read-write open.
pub(crate) enum Probe {
    Missing,
    /// A file of 0 bytes.
    Empty,
    /// A file with content.
    File,
}

/// Looks at the path without opening it.
pub(crate) fn probe(path: &Path, what: &str) -> Result<Probe> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(is_a_directory(what)),
        Ok(meta) if meta.len() == 0 => Ok(Probe::Empty),
        Ok(_) => Ok(Probe::File),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Probe::Missing),
        Err(e) => Err(io_error(path, "cannot read the metadata of", e)),
    }
}

fn is_a_directory(what: &str) -> Error {
    Error::invalid(format!(
        "{what} is a directory; expected an SQLite file made by mtsession"
    ))
}

/// The error for a 0-byte file opened read-only or read-write.
pub(crate) fn empty_file(what: &str, mode: OpenMode) -> Error {
    let hint = if mode == OpenMode::ReadOnly {
        ""
    } else {
        "; open it with OpenMode::Create to make it one"
    };
    Error::invalid(format!(
        "{what} is an empty file (0 bytes), not an mtsession store{hint}"
    ))
}

/// The first bytes of every SQLite database file.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Checks, before SQLite sees it, that a file opened read-only exists and
/// starts like an SQLite database: SQLite would treat a 0-byte file as a new
/// database.
pub(crate) fn check_read_only_file(path: &Path, what: &str) -> Result<()> {
    match probe(path, what)? {
        Probe::Missing => return Err(not_found(what)),
        Probe::Empty => return Err(empty_file(what, OpenMode::ReadOnly)),
        Probe::File => {}
    }
    let mut header = [0u8; 100];
    let mut file = std::fs::File::open(path).map_err(|e| io_error(path, "cannot open", e))?;
    let mut read = 0;
    while read < header.len() {
        match file.read(&mut header[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error(path, "cannot read", e)),
        }
    }
    if read < header.len() || &header[..16] != SQLITE_MAGIC {
        return Err(Error::corrupt(
            what,
            format!(
                "the file is not an SQLite database (its {read} first bytes are not an SQLite \
                 header); expected a store made by mtsession"
            ),
        ));
    }
    Ok(())
}

/// Creates the database file with mode 0600 before SQLite touches it. An
/// existing file is left as it is.
pub(crate) fn create_private_file(path: &Path, what: &str) -> Result<()> {
    session_core::files::create_private_file(path, what, BACKEND)
}

fn io_error(path: &Path, doing: &str, e: io::Error) -> Error {
    Error::backend(
        BACKEND,
        io::Error::new(e.kind(), format!("{doing} {}: {e}", path.display())),
    )
}

/// The `-wal` and `-shm` files next to a database file.
pub(crate) fn side_files(path: &Path) -> [PathBuf; 2] {
    session_core::files::sqlite_side_files(path)
}

/// Which of the `-wal` and `-shm` files exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sides {
    /// Both: the store is open somewhere, or a writer stopped without closing.
    Both,
    /// No write-ahead log: the database file holds everything.
    None,
    /// A log without its index: SQLite would create the index to read it.
    LogWithoutIndex,
}

fn side_files_once(path: &Path) -> Sides {
    let [wal, shm] = side_files(path);
    match (wal.exists(), shm.exists()) {
        (true, true) => Sides::Both,
        (false, _) => Sides::None,
        (true, false) => Sides::LogWithoutIndex,
    }
}

/// Whether the `-wal` file exists.
pub(crate) fn has_log(path: &Path) -> bool {
    side_files(path)[0].exists()
}

/// Which side files exist. A log without its index exists for a moment
/// while a writer opens or closes the store; that state is looked at again
/// for up to 100 ms before it is reported.
pub(crate) fn side_files_state(path: &Path) -> Sides {
    let mut sides = side_files_once(path);
    for _ in 0..50 {
        if sides != Sides::LogWithoutIndex {
            break;
        }
        thread::sleep(Duration::from_millis(2));
        sides = side_files_once(path);
    }
    sides
}

/// The error for a read-only open of a store whose `-wal` has no `-shm`.
pub(crate) fn log_without_index(what: &str, path: &Path) -> Error {
    let [wal, shm] = side_files(path);
    Error::unsupported(
        BACKEND,
        format!(
            "reading {what} read-only while its write-ahead log {} exists without its index {} \
             (SQLite would have to create the index); open the store for writing once to \
             recover the log",
            wal.display(),
            shm.display()
        ),
    )
}

/// What identifies the content of a database file that nothing else has
/// open: a writer that changes it changes its size or modification time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileState {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
}

impl FileState {
    /// The state of the file now (`None` when it cannot be read).
    pub(crate) fn of(path: &Path) -> Option<FileState> {
        let meta = std::fs::metadata(path).ok()?;
        Some(FileState {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        })
    }
}

pub(crate) use session_core::files::restrict_sqlite_side_files as restrict_side_files;
pub(crate) use session_core::files::sqlite_literal_path as literal;

/// A `file:` URI opening `path` read-only, as an immutable file when asked.
pub(crate) fn read_only_uri(path: &Path, immutable: bool) -> String {
    let mut uri = String::from("file:");
    for &byte in literal(path).as_os_str().as_bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'/' | b'.' | b'_' | b'-' | b'~') {
            uri.push(char::from(byte));
        } else {
            uri.push_str(&format!("%{byte:02X}"));
        }
    }
    uri.push_str("?mode=ro");
    if immutable {
        uri.push_str("&immutable=1");
    }
    uri
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_take_the_path_literally() {
        assert_eq!(
            read_only_uri(Path::new("/tmp/a b?#%.db"), false),
            "file:/tmp/a%20b%3F%23%25.db?mode=ro"
        );
        assert_eq!(
            read_only_uri(Path::new("file:x"), true),
            "file:./file%3Ax?mode=ro&immutable=1"
        );
        assert_eq!(literal(Path::new(":memory:")), PathBuf::from("./:memory:"));
    }
}
