//! Opening a store directory: what the directory holds (looked at before
//! anything is created or changed), creation with private modes, sled's
//! lock, the schema version, and read-only opens through a private copy.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use session_core::schema::check_version;
use session_core::{Durability, Error, OpenMode, Result};

use crate::error::{BACKEND, from_sled, in_use, is_lock_error};

/// The schema version this build writes and the newest it opens.
pub const SCHEMA_VERSION: i64 = 1;

/// The `meta` tree key holding the schema version (8 bytes, big-endian `i64`).
pub const SCHEMA_VERSION_KEY: &[u8] = b"schema_version";

/// The tree holding [`SCHEMA_VERSION_KEY`].
pub const META_TREE: &str = "meta";

/// The prefix of the private copies that read-only opens make.
pub(crate) const PRIVATE_COPY_PREFIX: &str = "mtsession-sled-readonly-";

/// How a store is opened (set through [`SledBuilder`](crate::SledBuilder)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Options {
    pub(crate) durability: Durability,
    pub(crate) cache_capacity: u64,
    pub(crate) lock_timeout: Duration,
    pub(crate) mode: OpenMode,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            durability: Durability::Immediate,
            cache_capacity: 64 * 1024 * 1024,
            lock_timeout: Duration::from_secs(1),
            mode: OpenMode::Create,
        }
    }
}

/// What a path holds, found by reading directory entries only.
#[derive(Debug)]
enum Found {
    Missing,
    NotADirectory,
    Empty,
    /// sled's `conf` and `db` files, and nothing but sled's files.
    SledStore,
    /// Some of sled's files but not both `conf` and `db`: a creation that
    /// stopped half-way.
    PartOfASledStore,
    /// Entries sled never makes (their names, sorted).
    Other(Vec<String>),
}

/// Whether `name` is something sled keeps in its directory.
fn is_sled_entry(name: &OsStr, is_dir: bool) -> bool {
    match name.to_str() {
        Some("conf" | "db") => !is_dir,
        Some("blobs") => is_dir,
        Some(name) => name.starts_with("snap.") && !is_dir,
        None => false,
    }
}

fn look(path: &Path) -> Result<Found> {
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Found::Missing),
        Err(e) => return Err(io_error(path, "inspect", e)),
    };
    if !meta.is_dir() {
        return Ok(Found::NotADirectory);
    }
    let mut others = Vec::new();
    let (mut conf, mut db, mut any) = (false, false, false);
    for entry in fs::read_dir(path).map_err(|e| io_error(path, "read", e))? {
        let entry = entry.map_err(|e| io_error(path, "read", e))?;
        any = true;
        let is_dir = entry
            .file_type()
            .map_err(|e| io_error(&entry.path(), "inspect", e))?
            .is_dir();
        let name = entry.file_name();
        if is_sled_entry(&name, is_dir) {
            conf |= name == "conf";
            db |= name == "db";
        } else {
            others.push(name.to_string_lossy().into_owned());
        }
    }
    Ok(if !others.is_empty() {
        others.sort();
        Found::Other(others)
    } else if !any {
        Found::Empty
    } else if conf && db {
        Found::SledStore
    } else {
        Found::PartOfASledStore
    })
}

/// Checks, before anything is created or changed, that `path` can be opened
/// in `mode`, and creates the directory (mode 0700) when `mode` is
/// [`OpenMode::Create`] and it is missing.
pub(crate) fn prepare_dir(path: &Path, mode: OpenMode) -> Result<()> {
    let create = mode == OpenMode::Create;
    let shown = path.display();
    match look(path)? {
        Found::SledStore => Ok(()),
        Found::Missing if create => create_private_dir(path),
        Found::Empty | Found::PartOfASledStore if create => Ok(()),
        Found::Missing => Err(Error::NotFound {
            what: format!("sled store {shown}"),
        }),
        Found::NotADirectory => Err(Error::invalid(format!(
            "{shown} is a file, not an mtsession sled store (a sled store is a directory \
             holding sled's conf and db files)"
        ))),
        Found::Empty => Err(Error::invalid(format!(
            "{shown} is an empty directory, not an mtsession sled store (expected sled's \
             conf and db files); nothing was changed. Open it in create mode to make a \
             store there"
        ))),
        Found::PartOfASledStore => Err(Error::invalid(format!(
            "{shown} holds only part of a sled store (no conf or no db file: a creation \
             that stopped half-way?); nothing was changed. Open it in create mode to \
             finish it"
        ))),
        Found::Other(names) => {
            let mut listed: Vec<String> = names.iter().take(5).map(|n| format!("{n:?}")).collect();
            if names.len() > 5 {
                listed.push(format!("and {} more", names.len() - 5));
            }
            Err(Error::invalid(format!(
                "{shown} is not an mtsession sled store: it holds {}, which sled never \
                 writes (a store directory holds only sled's conf, db, blobs/ and snap.* \
                 files); nothing was changed",
                listed.join(", ")
            )))
        }
    }
}

/// An open sled database and what comes with it.
pub(crate) struct Opened {
    pub(crate) db: sled::Db,
    /// sled's log file, opened again for `fdatasync` (see [`sync_log`]);
    /// `None` for a private copy, which is never synced.
    pub(crate) log: Option<fs::File>,
    /// The private copy a read-only open reads from, removed on drop.
    pub(crate) private_copy: Option<tempfile::TempDir>,
}

/// Makes what sled flushed durable. On Linux sled 0.34 ends a flush with
/// `sync_file_range`, which neither flushes the device's write cache nor
/// records a grown file size; `fdatasync` on the log file does both.
pub(crate) fn sync_log(log: &fs::File, path: &Path) -> Result<()> {
    log.sync_data()
        .map_err(|e| io_error(&path.join("db"), "sync", e))
}

/// Whether `path` holds a sled log with something in it (sled treats an
/// unreadable log as an empty database, so this is looked at first).
fn has_log(path: &Path) -> bool {
    fs::metadata(path.join("db")).is_ok_and(|m| m.len() > 0)
}

/// Opens the store in `path` (canonical; checked by [`prepare_dir`]) for
/// reads and writes, waiting up to `lock_timeout` for a lock that another
/// process (or a store of this process dropped a moment ago) holds; checks
/// or, in create mode, records the schema version; then makes every file
/// private.
pub(crate) fn open_in_place(path: &Path, options: &Options) -> Result<Opened> {
    let had_log = has_log(path);
    let started = Instant::now();
    let mut pause = Duration::from_millis(5);
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
    let db = loop {
        match open_sled(path, options.cache_capacity, flush_every_ms) {
            Ok(db) => break db,
            Err(OpenFailure::Sled(e)) if is_lock_error(&e) => {
                let waited = started.elapsed();
                if waited >= options.lock_timeout {
                    return Err(in_use(path, waited));
                }
                std::thread::sleep(pause.min(options.lock_timeout - waited));
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(e) => return Err(open_failure(path, e)),
        }
    };
    check_schema(&db, path, had_log, options.mode == OpenMode::Create)?;
    restrict_modes(path).map_err(|e| io_error(path, "set private modes on", e))?;
    let log = fs::File::open(path.join("db")).map_err(|e| io_error(path, "open the log in", e))?;
    sync_log(&log, path)?;
    // The directory entries of the files sled created, too.
    #[cfg(unix)]
    fs::File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| io_error(path, "sync", e))?;
    Ok(Opened {
        db,
        log: Some(log),
        private_copy: None,
    })
}

/// Opens the store in `path` (canonical; checked by [`prepare_dir`]) for
/// reads without writing to it: sled writes to its directory whenever it
/// opens one (its config, its log's recovery, a flush when it closes), so
/// the store's files are copied, under a shared lock on sled's log that
/// keeps every writer out meanwhile, into a private temporary directory
/// (0700, files 0600) that sled opens instead and that is removed when the
/// store is dropped.
pub(crate) fn open_private_copy(path: &Path, options: &Options) -> Result<Opened> {
    let log = fs::File::open(path.join("db")).map_err(|e| io_error(path, "open the log in", e))?;
    let started = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        match log.try_lock_shared() {
            Ok(()) => break,
            Err(fs::TryLockError::WouldBlock) => {
                let waited = started.elapsed();
                if waited >= options.lock_timeout {
                    return Err(in_use(path, waited));
                }
                std::thread::sleep(pause.min(options.lock_timeout - waited));
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_error(path, "lock the log in", e)),
        }
    }
    let mut builder = tempfile::Builder::new();
    builder.prefix(PRIVATE_COPY_PREFIX);
    // tempfile creates directories with the umask's mode unless told otherwise.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(fs::Permissions::from_mode(0o700));
    }
    let copy = builder.tempdir().map_err(|e| {
        Error::backend(
            BACKEND,
            io::Error::new(
                e.kind(),
                format!(
                    "cannot create a private copy of the sled store at {} in the \
                         temporary directory: {e}",
                    path.display()
                ),
            ),
        )
    })?;
    copy_store_files(path, copy.path())?;
    // Everything is copied: writers may come back.
    drop(log);
    let had_log = has_log(copy.path());
    let db =
        open_sled(copy.path(), options.cache_capacity, None).map_err(|e| open_failure(path, e))?;
    check_schema(&db, path, had_log, false)?;
    Ok(Opened {
        db,
        log: None,
        private_copy: Some(copy),
    })
}

/// Copies sled's files from `from` to the private directory `to`, each
/// created 0600 (directories 0700) whatever the source's modes.
fn copy_store_files(from: &Path, to: &Path) -> Result<()> {
    for entry in fs::read_dir(from).map_err(|e| io_error(from, "read", e))? {
        let entry = entry.map_err(|e| io_error(from, "read", e))?;
        let name = entry.file_name();
        let is_dir = entry
            .file_type()
            .map_err(|e| io_error(&entry.path(), "inspect", e))?
            .is_dir();
        // A snapshot being written when the copy began is not needed.
        if !is_sled_entry(&name, is_dir) || name.to_string_lossy().ends_with(".generating") {
            continue;
        }
        if is_dir {
            create_private_dir(&to.join(&name))?;
            for blob in
                fs::read_dir(entry.path()).map_err(|e| io_error(&entry.path(), "read", e))?
            {
                let blob = blob.map_err(|e| io_error(&entry.path(), "read", e))?;
                if blob.file_type().is_ok_and(|t| t.is_file()) {
                    copy_private_file(&blob.path(), &to.join(&name).join(blob.file_name()))?;
                }
            }
        } else {
            copy_private_file(&entry.path(), &to.join(&name))?;
        }
    }
    Ok(())
}

fn copy_private_file(from: &Path, to: &Path) -> Result<()> {
    session_core::files::copy_private_file(from, to).map_err(|e| io_error(to, "copy into", e))
}

/// Why sled did not open.
enum OpenFailure {
    Sled(sled::Error),
    Panic(String),
}

fn open_sled(
    path: &Path,
    cache_capacity: u64,
    flush_every_ms: Option<u64>,
) -> std::result::Result<sled::Db, OpenFailure> {
    let config = sled::Config::new()
        .path(path)
        .cache_capacity(cache_capacity)
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

/// Checks the stored schema version with [`check_version`]. A database
/// without one is a new store only when it holds nothing at all and
/// `may_create`; then the version is recorded. Nothing is written otherwise
/// (not even the `meta` tree of a foreign database).
fn check_schema(db: &sled::Db, path: &Path, had_log: bool, may_create: bool) -> Result<()> {
    let what = || format!("sled store {}", path.display());
    let names = db.tree_names();
    let has_meta = names.iter().any(|n| n.as_ref() == META_TREE.as_bytes());
    let stored = if has_meta {
        let meta = db.open_tree(META_TREE).map_err(|e| from_sled(path, e))?;
        meta.get(SCHEMA_VERSION_KEY)
            .map_err(|e| from_sled(path, e))?
    } else {
        None
    };
    if let Some(bytes) = stored {
        let array: [u8; 8] = bytes.as_ref().try_into().map_err(|_| {
            Error::corrupt(
                what(),
                format!(
                    "the schema version is {} bytes long, expected 8",
                    bytes.len()
                ),
            )
        })?;
        return check_version(&what(), i64::from_be_bytes(array), SCHEMA_VERSION);
    }
    let trees: Vec<String> = names
        .iter()
        .filter(|n| n.as_ref() != b"__sled__default")
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    let holds_data = !db.is_empty() || trees.iter().any(|n| n != META_TREE);
    if holds_data {
        let mut shown: Vec<String> = trees.iter().take(8).map(|n| format!("{n:?}")).collect();
        if trees.len() > 8 {
            shown.push(format!("and {} more", trees.len() - 8));
        }
        let found = if shown.is_empty() {
            "data in its default tree".to_owned()
        } else {
            format!("the trees {}", shown.join(", "))
        };
        return Err(Error::invalid(format!(
            "{} is a sled database but not an mtsession store: it has no mtsession schema \
             version in a meta tree, and holds {found}",
            path.display()
        )));
    }
    if had_log {
        return Err(Error::corrupt(
            what(),
            "the directory holds a sled log in which sled found no data and no \
             mtsession schema version: it is damaged, or was never a finished store",
        ));
    }
    if !may_create {
        return Err(Error::invalid(format!(
            "{} holds an empty sled database, not an mtsession store (no schema version); \
             nothing was changed. Open it in create mode to make a store there",
            path.display()
        )));
    }
    let meta = db.open_tree(META_TREE).map_err(|e| from_sled(path, e))?;
    meta.insert(SCHEMA_VERSION_KEY, &SCHEMA_VERSION.to_be_bytes())
        .map_err(|e| from_sled(path, e))?;
    db.flush().map_err(|e| from_sled(path, e))?;
    Ok(())
}

pub(crate) fn io_error(path: &Path, action: &str, error: io::Error) -> Error {
    Error::backend(
        BACKEND,
        io::Error::new(
            error.kind(),
            format!("cannot {action} {}: {error}", path.display()),
        ),
    )
}

/// Creates `path` and its missing parents with mode 0700 (whatever the umask).
fn create_private_dir(path: &Path) -> Result<()> {
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

/// Sets the store directory and sled's `blobs/` directory to 0700 and every
/// file in them to 0600 (sled creates `conf`, `db`, `blobs/` and `snap.*`
/// files with the process umask). Only called on a directory that
/// [`prepare_dir`] found to hold nothing but sled's files.
#[cfg(unix)]
pub(crate) fn restrict_modes(dir: &Path) -> io::Result<()> {
    fn walk(dir: &Path, depth: usize) -> io::Result<()> {
        set_mode(dir, 0o700)?;
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() && depth < 2 {
                walk(&entry.path(), depth + 1)?;
            } else if kind.is_file() {
                match set_mode(&entry.path(), 0o600) {
                    // sled may remove a snapshot file while we walk.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    other => other?,
                }
            }
        }
        Ok(())
    }
    /// Changes the mode only when it differs (no needless metadata write).
    fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let current = fs::symlink_metadata(path)?.permissions().mode() & 0o7777;
        if current != mode {
            fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
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
