//! Connections, the blocking-call runners, retries on `SQLITE_BUSY`, error
//! mapping and the write-behind flusher.

use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};
use session_core::lease::now_ms;
use session_core::{Durability, Error, Result};

use crate::options::SqliteOptions;
use crate::schema;

/// The backend name used in errors.
pub(crate) const BACKEND: &str = "sqlite";

/// A failure inside a blocking call: either SQLite's own (which may be
/// retried when it is `SQLITE_BUSY`) or a store-level error.
#[derive(Debug)]
pub(crate) enum Fail {
    Sql(rusqlite::Error),
    Store(Error),
}

impl From<rusqlite::Error> for Fail {
    fn from(e: rusqlite::Error) -> Self {
        Fail::Sql(e)
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Store(e)
    }
}

/// Result of a blocking call.
pub(crate) type R<T> = std::result::Result<T, Fail>;

/// Whether another connection holds the lock we need (worth retrying).
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// Where the database lives.
#[derive(Clone, Debug)]
pub(crate) enum Location {
    File(PathBuf),
    Memory,
}

impl Location {
    /// How errors name the database.
    pub(crate) fn describe(&self) -> String {
        match self {
            Location::File(path) => format!("SQLite file {}", path.display()),
            Location::Memory => "in-memory SQLite database".to_owned(),
        }
    }
}

/// The open database: one writer connection, a pool of readers.
pub(crate) struct Db {
    location: Location,
    what: String,
    options: SqliteOptions,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// Write transactions committed by this process.
    writes: AtomicU64,
    /// The value of `writes` at the last sync barrier.
    synced: AtomicU64,
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Db")
            .field("location", &self.location)
            .field("durability", &self.options.durability)
            .finish_non_exhaustive()
    }
}

fn write_behind(options: &SqliteOptions) -> Option<Duration> {
    match options.durability {
        Durability::WriteBehind { max_delay } => Some(max_delay),
        _ => None,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic inside a blocking call leaves the connection usable: an open
    // transaction is rolled back when its guard drops.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Db {
    /// Opens (creating when absent) the database file at `path`.
    pub(crate) fn open_file(path: &Path, options: SqliteOptions) -> Result<Arc<Db>> {
        check_options(&options)?;
        let location = Location::File(path.to_owned());
        let what = location.describe();
        create_private_file(path)?;
        let writer = open_connection(&location, &options, false).map_err(|e| convert(&what, e))?;
        let db = Db {
            location,
            what,
            options,
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
            writes: AtomicU64::new(0),
            synced: AtomicU64::new(0),
        };
        db.with_retry(|| {
            let conn = lock(&db.writer);
            schema::prepare(&conn, &db.what, true)
        })?;
        restrict_side_files(path);
        Ok(Arc::new(db))
    }

    /// Opens a private in-memory database.
    pub(crate) fn open_memory(options: SqliteOptions) -> Result<Arc<Db>> {
        check_options(&options)?;
        let location = Location::Memory;
        let what = location.describe();
        let writer = open_connection(&location, &options, false).map_err(|e| convert(&what, e))?;
        let db = Db {
            location,
            what,
            options,
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
            writes: AtomicU64::new(0),
            synced: AtomicU64::new(0),
        };
        db.with_retry(|| {
            let conn = lock(&db.writer);
            schema::prepare(&conn, &db.what, false)
        })?;
        Ok(Arc::new(db))
    }

    /// The file, for a file database.
    pub(crate) fn path(&self) -> Option<&Path> {
        match &self.location {
            Location::File(path) => Some(path),
            Location::Memory => None,
        }
    }

    /// The options the store was opened with.
    pub(crate) fn options(&self) -> &SqliteOptions {
        &self.options
    }

    /// Converts a failure, naming the database.
    pub(crate) fn convert(&self, fail: Fail) -> Error {
        match fail {
            Fail::Sql(e) => convert(&self.what, e),
            Fail::Store(e) => e,
        }
    }

    /// Runs `attempt` until it succeeds, fails with something other than
    /// `SQLITE_BUSY`/`SQLITE_LOCKED`, or the busy timeout has passed.
    fn with_retry<T>(&self, mut attempt: impl FnMut() -> R<T>) -> Result<T> {
        let deadline = Instant::now() + self.options.busy_timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            match attempt() {
                Ok(value) => return Ok(value),
                Err(Fail::Sql(e)) if is_busy(&e) && Instant::now() < deadline => {
                    thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(fail) => return Err(self.convert(fail)),
            }
        }
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction on the writer connection,
    /// blocking the calling thread.
    pub(crate) fn write_blocking<T>(&self, mut f: impl FnMut(&Connection) -> R<T>) -> Result<T> {
        let value = self.with_retry(|| {
            let mut conn = lock(&self.writer);
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        })?;
        self.writes.fetch_add(1, Ordering::Release);
        Ok(value)
    }

    /// Runs `f` on a reader connection, blocking the calling thread: inside
    /// a read transaction (one consistent snapshot) when `snapshot` is set,
    /// else as is, for a single statement (atomic by itself).
    pub(crate) fn read_blocking<T>(
        &self,
        snapshot: bool,
        mut f: impl FnMut(&Connection) -> R<T>,
    ) -> Result<T> {
        let mut run = |conn: &mut Connection| -> R<T> {
            if !snapshot {
                return f(conn);
            }
            let tx = conn.transaction()?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        };
        if matches!(self.location, Location::Memory) {
            return self.with_retry(|| run(&mut lock(&self.writer)));
        }
        let mut conn = match lock(&self.readers).pop() {
            Some(conn) => conn,
            None => open_connection(&self.location, &self.options, true)
                .map_err(|e| convert(&self.what, e))?,
        };
        let result = self.with_retry(|| run(&mut conn));
        let mut idle = lock(&self.readers);
        if idle.len() < self.options.max_idle_readers {
            idle.push(conn);
        }
        result
    }

    /// Runs a write on Tokio's blocking pool (or inline outside a runtime).
    pub(crate) async fn write<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> R<T> + Send + 'static,
    {
        let db = Arc::clone(self);
        blocking(move || db.write_blocking(f)).await
    }

    /// Runs a read on Tokio's blocking pool (or inline outside a runtime).
    pub(crate) async fn read<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> R<T> + Send + 'static,
    {
        let db = Arc::clone(self);
        blocking(move || db.read_blocking(true, f)).await
    }

    /// Runs a single-statement read on Tokio's blocking pool (or inline
    /// outside a runtime), without a read transaction around it.
    pub(crate) async fn read_one<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> R<T> + Send + 'static,
    {
        let db = Arc::clone(self);
        blocking(move || db.read_blocking(false, f)).await
    }

    /// Makes every write committed so far by this process durable, when the
    /// store runs write-behind: commits a marker row with `synchronous=FULL`,
    /// which fsyncs the WAL file (and with it every frame written before).
    pub(crate) fn sync_barrier_blocking(&self) -> Result<()> {
        if write_behind(&self.options).is_none() || matches!(self.location, Location::Memory) {
            return Ok(());
        }
        let target = self.writes.load(Ordering::Acquire);
        if self.synced.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        self.with_retry(|| {
            let mut conn = lock(&self.writer);
            conn.pragma_update(None, "synchronous", "FULL")?;
            let result = (|| -> R<()> {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                tx.prepare_cached(
                    "INSERT INTO flush_marker (id, at_ms) VALUES (0, ?1) \
                     ON CONFLICT (id) DO UPDATE SET at_ms = excluded.at_ms",
                )?
                .execute([now_ms()])?;
                tx.commit()?;
                Ok(())
            })();
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            result
        })?;
        self.synced.fetch_max(target, Ordering::AcqRel);
        Ok(())
    }

    /// Starts the background thread that bounds how long a write-behind write
    /// stays unsynced. It syncs once more and stops when the returned handle
    /// is dropped; it keeps the database open until then, so that last sync
    /// always runs.
    pub(crate) fn start_flusher(self: &Arc<Self>) -> Result<Option<Flusher>> {
        let Some(delay) = write_behind(&self.options) else {
            return Ok(None);
        };
        if matches!(self.location, Location::Memory) {
            return Ok(None);
        }
        let (stop, stopped) = mpsc::channel::<()>();
        let db = Arc::clone(self);
        thread::Builder::new()
            .name("mtsession-sqlite-flusher".to_owned())
            .spawn(move || {
                loop {
                    let last =
                        !matches!(stopped.recv_timeout(delay), Err(RecvTimeoutError::Timeout));
                    // A failed barrier is retried at the next tick; flush()
                    // reports its own errors to the caller.
                    let _ = db.sync_barrier_blocking();
                    if last {
                        return;
                    }
                }
            })
            .map_err(|e| Error::backend(BACKEND, e))?;
        Ok(Some(Flusher { _stop: stop }))
    }
}

/// Stops the flusher thread when dropped.
#[derive(Debug)]
pub(crate) struct Flusher {
    _stop: mpsc::Sender<()>,
}

fn check_options(options: &SqliteOptions) -> Result<()> {
    if let Some(delay) = write_behind(options)
        && delay.is_zero()
    {
        return Err(Error::invalid(
            "a write-behind delay must be positive; use Durability::Immediate for none",
        ));
    }
    Ok(())
}

/// Runs blocking work off the async runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle
            .spawn_blocking(f)
            .await
            .map_err(|e| Error::backend(BACKEND, e))?,
        Err(_) => f(),
    }
}

/// Maps a SQLite error, naming the database.
pub(crate) fn convert(what: &str, e: rusqlite::Error) -> Error {
    use rusqlite::Error as E;
    let corrupt = match &e {
        E::FromSqlConversionFailure(..)
        | E::IntegralValueOutOfRange(..)
        | E::InvalidColumnType(..)
        | E::Utf8Error(..) => Some("a stored value has an unexpected type or range"),
        _ => match e.sqlite_error_code() {
            Some(ErrorCode::NotADatabase) => Some("the file is not an SQLite database"),
            Some(ErrorCode::DatabaseCorrupt) => Some("the SQLite database is damaged"),
            _ => None,
        },
    };
    match corrupt {
        Some(message) => Error::Corrupt {
            what: what.to_owned(),
            message: message.to_owned(),
            source: Some(Box::new(e)),
        },
        None => Error::backend(BACKEND, e),
    }
}

/// Creates the database file with mode 0600 before SQLite touches it. An
/// existing file is left as it is.
fn create_private_file(path: &Path) -> Result<()> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(file) => {
            // The umask may only narrow the mode; make sure it is exactly 0600.
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| io_error(path, "cannot set the mode of", e))?;
            file.sync_all()
                .map_err(|e| io_error(path, "cannot sync", e))?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                // Make the new directory entry durable too (best effort: some
                // filesystems refuse to sync a directory).
                if let Ok(dir) = std::fs::File::open(dir) {
                    let _ = dir.sync_all();
                }
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_error(path, "cannot create", e)),
    }
}

fn io_error(path: &Path, doing: &str, e: io::Error) -> Error {
    Error::backend(
        BACKEND,
        io::Error::new(e.kind(), format!("{doing} {}: {e}", path.display())),
    )
}

/// The `-wal` and `-shm` files next to a database file.
pub(crate) fn side_files(path: &Path) -> [PathBuf; 2] {
    let with = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    [with("-wal"), with("-shm")]
}

/// SQLite gives `-wal` and `-shm` the database file's mode; make sure they
/// never grant more than it does, whatever created them.
fn restrict_side_files(path: &Path) {
    let Ok(main) = std::fs::metadata(path) else {
        return;
    };
    let allowed = main.permissions().mode() & 0o777;
    for side in side_files(path) {
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

/// Opens one connection and sets its per-connection pragmas.
fn open_connection(
    location: &Location,
    options: &SqliteOptions,
    reader: bool,
) -> rusqlite::Result<Connection> {
    let conn = match location {
        // No SQLITE_OPEN_CREATE: the file was created (mode 0600) beforehand,
        // and no SQLITE_OPEN_URI: a path is a path.
        Location::File(path) => Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?,
        Location::Memory => Connection::open_in_memory()?,
    };
    conn.busy_timeout(options.busy_timeout)?;
    conn.set_prepared_statement_cache_capacity(options.statement_cache_capacity);
    conn.pragma_update(None, "foreign_keys", "ON")?;
    let synchronous = if write_behind(options).is_some() {
        "NORMAL"
    } else {
        "FULL"
    };
    conn.pragma_update(None, "synchronous", synchronous)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    if reader {
        conn.pragma_update(None, "query_only", "ON")?;
    }
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synchronous(conn: &Connection) -> i64 {
        conn.query_row("PRAGMA synchronous", [], |r| r.get(0))
            .expect("pragma")
    }

    /// Immediate runs with synchronous=FULL (2), write-behind with NORMAL (1),
    /// on the writer and on readers alike.
    #[test]
    fn durability_sets_synchronous() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (durability, expected) in [
            (Durability::Immediate, 2),
            (
                Durability::WriteBehind {
                    max_delay: Duration::from_millis(100),
                },
                1,
            ),
        ] {
            let path = dir.path().join(format!("{expected}.sqlite"));
            let db = Db::open_file(&path, SqliteOptions::default().durability(durability))
                .expect("open");
            assert_eq!(synchronous(&lock(&db.writer)), expected);
            let on_reader = db
                .read_blocking(true, |conn| Ok(synchronous(conn)))
                .expect("read");
            assert_eq!(on_reader, expected);
            let wal: String = lock(&db.writer)
                .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                .expect("journal mode");
            assert_eq!(wal, "wal");
        }
    }

    /// A write waits for another connection's write lock instead of failing.
    #[test]
    fn a_busy_writer_waits() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("busy.sqlite");
        let db = Db::open_file(&path, SqliteOptions::default()).expect("open");
        let other = Connection::open(&path).expect("other connection");
        other
            .execute_batch("BEGIN IMMEDIATE")
            .expect("hold the write lock");
        let release = thread::spawn(move || {
            thread::sleep(Duration::from_millis(300));
            other.execute_batch("COMMIT").expect("release");
        });
        let started = Instant::now();
        db.write_blocking(|conn| {
            conn.execute("INSERT INTO flush_marker (id, at_ms) VALUES (0, 1)", [])?;
            Ok(())
        })
        .expect("the write waits, then succeeds");
        assert!(started.elapsed() >= Duration::from_millis(250));
        release.join().expect("thread");
    }

    /// When the lock is held past the busy timeout, the error says so.
    #[test]
    fn a_write_gives_up_after_the_busy_timeout() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("busy.sqlite");
        let options = SqliteOptions::default().busy_timeout(Duration::from_millis(100));
        let db = Db::open_file(&path, options).expect("open");
        let other = Connection::open(&path).expect("other connection");
        other
            .execute_batch("BEGIN IMMEDIATE")
            .expect("hold the write lock");
        let err = db.write_blocking(|_| Ok(())).expect_err("still locked");
        assert!(matches!(err, Error::Backend { .. }), "{err:?}");
        other.execute_batch("COMMIT").expect("release");
    }
}
