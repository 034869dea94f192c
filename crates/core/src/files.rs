//! Files that hold auth keys, as every file-based backend and writer creates
//! them: mode 0600 whatever the umask, the new directory entry synced; and
//! the side files SQLite keeps next to a database.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Options that create a new file (never an existing one) for writing with
/// mode 0600 (on Unix; the umask can only narrow it).
pub fn private_file_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// The directory a path is in, `None` for a bare file name.
fn parent(path: &Path) -> Option<&Path> {
    path.parent().filter(|d| !d.as_os_str().is_empty())
}

fn io_error(backend: &'static str, path: &Path, doing: &str, e: io::Error) -> Error {
    Error::backend(
        backend,
        io::Error::new(e.kind(), format!("{doing} {}: {e}", path.display())),
    )
}

/// Creates an empty file at `path` with mode exactly 0600 and makes its
/// directory entry durable, before an engine opens it. An existing file is
/// left as it is. A missing directory is `NotFound` naming the directory
/// (`what` says what the file is, e.g. `the SQLite store`); other failures
/// are `Backend` errors of `backend`.
pub fn create_private_file(path: &Path, what: &str, backend: &'static str) -> Result<()> {
    match private_file_options().open(path) {
        Ok(file) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                file.set_permissions(std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| io_error(backend, path, "cannot set the mode of", e))?;
            }
            file.sync_all()
                .map_err(|e| io_error(backend, path, "cannot sync", e))?;
            if let Some(dir) = parent(path)
                && let Ok(dir) = File::open(dir)
            {
                // Best effort: some filesystems refuse to sync a directory.
                let _ = dir.sync_all();
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let dir = parent(path).unwrap_or(Path::new("."));
            Err(Error::NotFound {
                what: format!("directory {} (to create {what} in)", dir.display()),
            })
        }
        Err(e) => Err(io_error(backend, path, "cannot create", e)),
    }
}

/// Copies `from` into a new file `to` created with mode 0600.
pub fn copy_private_file(from: &Path, to: &Path) -> io::Result<()> {
    let mut source = File::open(from)?;
    let mut target = private_file_options().open(to)?;
    io::copy(&mut source, &mut target)?;
    Ok(())
}

/// The `-wal` and `-shm` files SQLite keeps next to a database file.
pub fn sqlite_side_files(path: &Path) -> [PathBuf; 2] {
    let with = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    [with("-wal"), with("-shm")]
}

/// SQLite gives `-wal` and `-shm` the database file's mode; makes sure they
/// never grant more than it does, whatever created them. Only stores opened
/// for writing call this.
pub fn restrict_sqlite_side_files(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(main) = std::fs::metadata(path) else {
            return;
        };
        let allowed = main.permissions().mode() & 0o777;
        for side in sqlite_side_files(path) {
            if let Ok(meta) = std::fs::metadata(&side) {
                let mode = meta.permissions().mode() & 0o777;
                if mode & !allowed != 0 {
                    let _ = std::fs::set_permissions(
                        &side,
                        std::fs::Permissions::from_mode(mode & allowed),
                    );
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// The path as SQLite must be given it to take it literally: a relative
/// path starts with `./`, so that `:memory:` and `file:...` stay file names.
pub fn sqlite_literal_path(path: &Path) -> PathBuf {
    if path.is_relative() {
        Path::new(".").join(path)
    } else {
        path.to_owned()
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
    }

    #[test]
    fn private_files_are_0600_and_existing_ones_are_left_alone() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("keys.db");
        create_private_file(&path, "a store", "test").expect("created");
        assert_eq!(mode(&path), 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        create_private_file(&path, "a store", "test").expect("exists");
        assert_eq!(mode(&path), 0o640, "an existing file keeps its mode");
        let missing = dir.path().join("no/such/dir/keys.db");
        let err = create_private_file(&missing, "a store", "test").expect_err("no directory");
        assert!(err.to_string().contains("no/such/dir"), "{err}");
        let copy = dir.path().join("copy.db");
        copy_private_file(&path, &copy).expect("copied");
        assert_eq!(mode(&copy), 0o600);
    }

    #[test]
    fn side_files_never_grant_more_than_the_database() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("s.db");
        create_private_file(&path, "a store", "test").expect("created");
        let [wal, shm] = sqlite_side_files(&path);
        assert!(wal.ends_with("s.db-wal") && shm.ends_with("s.db-shm"));
        for side in [&wal, &shm] {
            std::fs::write(side, b"").expect("write");
            std::fs::set_permissions(side, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        }
        restrict_sqlite_side_files(&path);
        assert_eq!((mode(&wal), mode(&shm)), (0o600, 0o600));
        assert_eq!(
            sqlite_literal_path(Path::new(":memory:")),
            Path::new("./:memory:")
        );
        assert_eq!(sqlite_literal_path(Path::new("/a/b")), Path::new("/a/b"));
    }
}
