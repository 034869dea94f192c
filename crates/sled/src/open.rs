//! Opening a store directory: creation with private modes, the one-opener
//! rule, sled's lock, and the schema version.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use session_core::{Durability, Error, Result};

use crate::error::{BACKEND, from_sled, in_use, is_lock_error};
use crate::store::SledOptions;

/// The schema version this build writes and the newest it opens.
pub const SCHEMA_VERSION: i64 = 1;

/// The `meta` tree key holding the schema version (8 bytes, big-endian `i64`).
pub const SCHEMA_VERSION_KEY: &[u8] = b"schema_version";

/// The tree holding [`SCHEMA_VERSION_KEY`].
pub const META_TREE: &str = "meta";

/// Directories opened by a live store of this process.
static OPEN_DIRS: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

fn open_dirs() -> std::sync::MutexGuard<'static, BTreeSet<PathBuf>> {
    // The set is only inserted into and removed from; a panic elsewhere
    // cannot leave it inconsistent.
    OPEN_DIRS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// This process's claim on a store directory, released on drop.
#[derive(Debug)]
pub(crate) struct Claim(PathBuf);

impl Claim {
    fn take(path: &Path) -> Result<Claim> {
        if open_dirs().insert(path.to_owned()) {
            Ok(Claim(path.to_owned()))
        } else {
            Err(in_use(path, true))
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        open_dirs().remove(&self.0);
    }
}

/// What [`open_db`] hands back.
pub(crate) struct Opened {
    pub(crate) db: sled::Db,
    /// sled's log file, opened again for `fdatasync` (see [`sync_log`]).
    pub(crate) log: fs::File,
    pub(crate) path: PathBuf,
    pub(crate) claim: Claim,
}

/// Makes what sled flushed durable. On Linux sled 0.34 ends a flush with
/// `sync_file_range`, which neither flushes the device's write cache nor
/// records a grown file size; `fdatasync` on the log file does both.
pub(crate) fn sync_log(log: &fs::File, path: &Path) -> Result<()> {
    log.sync_data()
        .map_err(|e| io_error(&path.join("db"), "sync", e))
}

/// Creates the directory (mode 0700), claims it, opens sled (waiting up to
/// `lock_timeout` for a lock that a just-dropped store may still hold) and
/// checks or records the schema version.
pub(crate) fn open_db(path: &Path, options: &SledOptions) -> Result<Opened> {
    create_private_dir(path)?;
    let path = fs::canonicalize(path).map_err(|e| io_error(path, "resolve", e))?;
    let claim = Claim::take(&path)?;
    restrict_modes(&path).map_err(|e| io_error(&path, "set private modes on", e))?;

    // sled treats an unreadable log as an empty database, so remember whether
    // there was one to find.
    let had_log = fs::metadata(path.join("db")).is_ok_and(|m| m.len() > 0);
    let started = Instant::now();
    let mut pause = Duration::from_millis(5);
    let db = loop {
        match open_sled(&path, options) {
            Ok(db) => break db,
            Err(OpenFailure::Sled(e)) if is_lock_error(&e) => {
                let waited = started.elapsed();
                if waited >= options.lock_timeout {
                    return Err(in_use(&path, false));
                }
                std::thread::sleep(pause.min(options.lock_timeout - waited));
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(e) => return Err(open_failure(&path, e)),
        }
    };
    check_schema(&db, &path, had_log)?;
    restrict_modes(&path).map_err(|e| io_error(&path, "set private modes on", e))?;
    let log = fs::File::open(path.join("db")).map_err(|e| io_error(&path, "open the log in", e))?;
    sync_log(&log, &path)?;
    // The directory entries of the files sled created, too.
    #[cfg(unix)]
    fs::File::open(&path)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| io_error(&path, "sync", e))?;
    Ok(Opened {
        db,
        log,
        path,
        claim,
    })
}

/// Why sled did not open.
enum OpenFailure {
    Sled(sled::Error),
    Panic(String),
}

fn open_sled(path: &Path, options: &SledOptions) -> std::result::Result<sled::Db, OpenFailure> {
    let flush_every_ms = match options.durability {
        Durability::WriteBehind { max_delay } => Some(
            u64::try_from(max_delay.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
        ),
        // Writes are flushed by the store itself; sled's periodic flusher
        // stays on for its segment cleaning.
        _ => Some(500),
    };
    let config = sled::Config::new()
        .path(path)
        .cache_capacity(options.cache_capacity)
        .flush_every_ms(flush_every_ms);
    // sled 0.34 panics on some kinds of damaged files instead of returning
    // an error; such a panic is reported as corruption of this directory.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| config.open())) {
        Ok(result) => result.map_err(OpenFailure::Sled),
        Err(panic) => Err(OpenFailure::Panic(
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "no message".to_owned()),
        )),
    }
}

fn open_failure(path: &Path, failure: OpenFailure) -> Error {
    let what = format!("sled store {}", path.display());
    let unreadable = "the directory does not hold a readable sled database";
    match failure {
        OpenFailure::Panic(message) => {
            Error::corrupt(what, format!("{unreadable} (sled stopped with: {message})"))
        }
        OpenFailure::Sled(
            error @ (sled::Error::Corruption { .. }
            | sled::Error::Unsupported(_)
            | sled::Error::ReportableBug(_)),
        ) => Error::Corrupt {
            what,
            message: unreadable.to_owned(),
            source: Some(Box::new(error)),
        },
        OpenFailure::Sled(sled::Error::Io(io))
            if matches!(
                io.kind(),
                io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData
            ) =>
        {
            Error::Corrupt {
                what,
                message: unreadable.to_owned(),
                source: Some(Box::new(io)),
            }
        }
        OpenFailure::Sled(other) => from_sled(path, other),
    }
}

fn check_schema(db: &sled::Db, path: &Path, had_log: bool) -> Result<()> {
    let what = || format!("sled store {}", path.display());
    let meta = db.open_tree(META_TREE).map_err(|e| from_sled(path, e))?;
    match meta
        .get(SCHEMA_VERSION_KEY)
        .map_err(|e| from_sled(path, e))?
    {
        Some(bytes) => {
            let array: [u8; 8] = bytes.as_ref().try_into().map_err(|_| {
                Error::corrupt(
                    what(),
                    format!(
                        "the schema version is {} bytes long, expected 8",
                        bytes.len()
                    ),
                )
            })?;
            let found = i64::from_be_bytes(array);
            if found > SCHEMA_VERSION {
                return Err(Error::UnsupportedSchemaVersion {
                    what: what(),
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
            if found < 1 {
                return Err(Error::corrupt(
                    what(),
                    format!("schema version {found} is not a version this store ever wrote"),
                ));
            }
            Ok(())
        }
        None => {
            let foreign = db.tree_names().iter().any(|name| {
                name.as_ref() != b"__sled__default" && name.as_ref() != META_TREE.as_bytes()
            }) || !db.is_empty()
                || !meta.is_empty();
            if foreign {
                return Err(Error::corrupt(
                    what(),
                    "the directory holds a sled database without an mtsession schema version",
                ));
            }
            if had_log {
                return Err(Error::corrupt(
                    what(),
                    "the directory holds a sled log in which sled found no data and no \
                     mtsession schema version: it is damaged, or was never a finished store",
                ));
            }
            meta.insert(SCHEMA_VERSION_KEY, &SCHEMA_VERSION.to_be_bytes())
                .map_err(|e| from_sled(path, e))?;
            db.flush().map_err(|e| from_sled(path, e))?;
            Ok(())
        }
    }
}

fn io_error(path: &Path, action: &str, error: io::Error) -> Error {
    Error::backend(
        BACKEND,
        io::Error::new(
            error.kind(),
            format!("cannot {action} {}: {error}", path.display()),
        ),
    )
}

fn create_private_dir(path: &Path) -> Result<()> {
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(Error::invalid(format!(
            "{} is not a directory; a sled store is a directory",
            path.display()
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut builder = fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt;
                builder.mode(0o700);
            }
            builder
                .create(path)
                .map_err(|e| io_error(path, "create", e))
        }
        Err(e) => Err(io_error(path, "inspect", e)),
    }
}

/// Sets the store directory and every directory under it to 0700 and every
/// file to 0600 (sled creates `conf`, `db`, `blobs/` and `snap.*` files with
/// the process umask).
#[cfg(unix)]
pub(crate) fn restrict_modes(dir: &Path) -> io::Result<()> {
    fn walk(dir: &Path, depth: usize) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() && depth < 8 {
                walk(&entry.path(), depth + 1)?;
            } else if kind.is_file() {
                match fs::set_permissions(entry.path(), fs::Permissions::from_mode(0o600)) {
                    // sled may remove a snapshot file while we walk.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    other => other?,
                }
            }
        }
        Ok(())
    }
    walk(dir, 0)
}

/// Modes are a Unix notion; elsewhere the directory keeps its defaults.
#[cfg(not(unix))]
pub(crate) fn restrict_modes(_dir: &Path) -> io::Result<()> {
    Ok(())
}
