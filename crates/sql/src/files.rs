//! The SQLite database file and its `-wal` and `-shm` files: created
//! private (0600), looked at without changing anything, named in errors.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use session_core::{Error, OpenMode, Result};

const BACKEND: &str = "sqlite";

/// The first bytes of every SQLite database file.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

fn io_error(path: &Path, doing: &str, e: io::Error) -> Error {
    Error::backend(
        BACKEND,
        io::Error::new(e.kind(), format!("{doing} {}: {e}", path.display())),
    )
}

/// Makes sure the file an open needs is there, as `mode` allows: creates it
/// with mode 0600 for [`OpenMode::Create`] (before SQLite would create it
/// with the umask's mode); otherwise refuses a missing file (`NotFound`), a
/// directory, and for a read-only open an empty file or one that is not
/// SQLite. Nothing is created, changed or chmodded except the new file.
pub(crate) fn prepare(path: &Path, what: &str, mode: OpenMode) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(Error::invalid(format!(
            "{what} is a directory; expected an SQLite database file"
        ))),
        Ok(meta) if meta.len() == 0 && mode != OpenMode::Create => Err(Error::invalid(format!(
            "{what} is an empty file (0 bytes), not an mtsession store{}",
            if mode == OpenMode::ReadOnly {
                ""
            } else {
                "; open it with OpenMode::Create to make it one"
            }
        ))),
        Ok(_) if mode == OpenMode::ReadOnly => check_header(path, what),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if mode == OpenMode::Create {
                create_private_file(path, what)
            } else {
                Err(Error::NotFound {
                    what: what.to_owned(),
                })
            }
        }
        Err(e) => Err(io_error(path, "cannot read the metadata of", e)),
    }
}

/// Checks that a file starts like an SQLite database.
fn check_header(path: &Path, what: &str) -> Result<()> {
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
                "the file is not an SQLite database (its first {read} bytes are not an SQLite \
                 header)"
            ),
        ));
    }
    Ok(())
}

/// Creates the database file with mode 0600. An existing file is left as it is.
fn create_private_file(path: &Path, what: &str) -> Result<()> {
    session_core::files::create_private_file(path, what, "sql")
}

/// The `-wal` and `-shm` files next to a database file.
pub(crate) fn side_files(path: &Path) -> [PathBuf; 2] {
    session_core::files::sqlite_side_files(path)
}

/// Whether the `-wal` file exists (a writer has the file open, or stopped
/// without closing it).
pub(crate) fn has_log(path: &Path) -> bool {
    side_files(path)[0].exists()
}

pub(crate) use session_core::files::restrict_sqlite_side_files as restrict_side_files;
pub(crate) use session_core::files::sqlite_literal_path as literal;
