//! Connections and where calls run: short calls inline on an idle
//! connection, the rest (and anything that would wait) on Tokio's blocking
//! pool; retries on `SQLITE_BUSY` bounded by the busy timeout; error mapping;
//! the write-behind flusher.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, TryLockError};
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};
use session_core::lease::now_ms;
use session_core::{Durability, Error, OpenMode, Result};

use crate::files::{self, FileState, Sides};
use crate::schema::{self, Found};

/// The backend name used in errors.
pub(crate) const BACKEND: &str = "sqlite";

/// Prepared statements kept per connection: more than the store uses.
const STATEMENT_CACHE_CAPACITY: usize = 64;

/// A failure inside a call: SQLite's own (retried when it is `SQLITE_BUSY`)
/// or a store-level error.
#[derive(Debug)]
pub(crate) enum Failure {
    Sql(rusqlite::Error),
    Store(Error),
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        Failure::Sql(e)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Store(e)
    }
}

/// The result of work on a connection.
pub(crate) type SqlResult<T> = std::result::Result<T, Failure>;

/// Whether another connection holds a lock the call needs.
pub(crate) fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

fn is_busy_failure(failure: &Failure) -> bool {
    matches!(failure, Failure::Sql(e) if is_busy(e))
}

/// How a store was asked to open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Options {
    pub(crate) durability: Durability,
    pub(crate) busy_timeout: Duration,
    pub(crate) mode: OpenMode,
    pub(crate) max_idle_readers: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            durability: Durability::Immediate,
            busy_timeout: Duration::from_secs(10),
            mode: OpenMode::Create,
            max_idle_readers: 4,
        }
    }
}

impl Options {
    fn write_behind(&self) -> Option<Duration> {
        match self.durability {
            Durability::WriteBehind { max_delay } => Some(max_delay),
            _ => None,
        }
    }

    fn check(&self) -> Result<()> {
        if let Some(delay) = self.write_behind()
            && delay.is_zero()
        {
            return Err(Error::invalid(
                "a write-behind delay must be positive; use Durability::Immediate for none",
            ));
        }
        Ok(())
    }
}

/// Where the database lives.
#[derive(Clone, Debug)]
pub(crate) enum Location {
    File(PathBuf),
    Memory,
}

/// How big a write is: short ones may run inline on the calling thread
/// when their commit does not wait for the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WriteSize {
    Short,
    Long,
}

/// An idle reader connection. A connection opened with `immutable=1` (a
/// read-only store whose file had no write-ahead log) carries the state of
/// the file it was opened on: it is only used while the file is unchanged.
struct Reader {
    conn: Connection,
    immutable: bool,
    opened_on: Option<FileState>,
}

/// A connection taken for one call.
enum Taken<'a> {
    Reader(Reader),
    Writer(MutexGuard<'a, Connection>),
}

impl Taken<'_> {
    fn conn(&self) -> &Connection {
        match self {
            Taken::Reader(reader) => &reader.conn,
            Taken::Writer(guard) => guard,
        }
    }
}

/// The open database: the writer connection (none when read-only) and a
/// pool of reader connections opened when first needed.
pub(crate) struct Db {
    location: Location,
    what: String,
    options: Options,
    // Readers are declared (and so dropped) before the writer: the writer
    // closes last and checkpoints the write-ahead log.
    readers: Mutex<Vec<Reader>>,
    writer: Option<Mutex<Connection>>,
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
            .field("mode", &self.options.mode)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic inside a call leaves the connection usable: an open
    // transaction is rolled back when its guard drops.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn try_lock<T>(mutex: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match mutex.try_lock() {
        Ok(guard) => Some(guard),
        Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// What the open fast path found.
enum Opened {
    Ready(Box<Db>),
    /// The file must be created, initialized or migrated, or a lock is
    /// held: finish as blocking work.
    NeedsWork,
}

impl Db {
    /// Opens the database file at `path` as `options.mode` says. Opening an
    /// existing store runs inline; creating, migrating and waiting for
    /// locks run as blocking work.
    pub(crate) async fn open_file(path: PathBuf, options: Options) -> Result<Arc<Db>> {
        options.check()?;
        match Db::open_file_once(&path, options, false)? {
            Opened::Ready(db) => Ok(Arc::from(db)),
            Opened::NeedsWork => {
                blocking(move || {
                    match Db::open_file_once(&path, options, true)? {
                        Opened::Ready(db) => Ok(Arc::from(db)),
                        // With waiting allowed, every path ends ready or failed.
                        Opened::NeedsWork => Err(Error::backend(
                            BACKEND,
                            std::io::Error::other("the store could not be prepared"),
                        )),
                    }
                })
                .await
            }
        }
    }

    /// One attempt at opening. Without `wait`, answers `NeedsWork` instead
    /// of creating anything or waiting for a lock.
    fn open_file_once(path: &Path, options: Options, wait: bool) -> Result<Opened> {
        let what = files::describe(path);
        if options.mode == OpenMode::ReadOnly {
            return Db::open_read_only(path, what, options, wait);
        }
        match files::probe(path, &what)? {
            files::Probe::Missing if options.mode == OpenMode::Create => {
                if !wait {
                    return Ok(Opened::NeedsWork);
                }
                files::create_private_file(path, &what)?;
            }
            files::Probe::Missing => return Err(files::not_found(&what)),
            files::Probe::Empty if options.mode == OpenMode::Create && !wait => {
                return Ok(Opened::NeedsWork);
            }
            files::Probe::Empty if options.mode != OpenMode::Create => {
                return Err(files::empty_file(&what, options.mode));
            }
            files::Probe::Empty | files::Probe::File => {}
        }
        let location = Location::File(path.to_owned());
        let mut db = Db::new(location, what, options, None, Vec::new());
        let deadline = Instant::now() + options.busy_timeout;
        // Even opening the connection can meet a lock (its first statement
        // reads the schema while another connection checkpoints on close):
        // it is retried with the rest.
        let mut writer: Option<Connection> = None;
        let prepared = db.with_retry_until(deadline, wait, || {
            if writer.is_none() {
                writer = Some(open_writer(&db.location, &options)?);
            }
            match &writer {
                Some(conn) => schema::prepare(conn, &db.what, options.mode, true, wait),
                None => Err(Failure::Sql(busy_error())),
            }
        })?;
        db.writer = writer.map(Mutex::new);
        match prepared {
            Some(Some(())) => {
                files::restrict_side_files(path);
                Ok(Opened::Ready(Box::new(db)))
            }
            Some(None) | None => Ok(Opened::NeedsWork),
        }
    }

    fn open_read_only(path: &Path, what: String, options: Options, wait: bool) -> Result<Opened> {
        files::check_read_only_file(path, &what)?;
        let location = Location::File(path.to_owned());
        let deadline = Instant::now() + options.busy_timeout;
        let db = Db::new(location, what, options, None, Vec::new());
        let checked = db.with_retry_until(deadline, wait, || {
            let reader = db.connect_reader()?;
            let found = schema::inspect_quick(&reader.conn)?;
            let found = match found {
                Some(found) => found,
                None => schema::inspect(&reader.conn, &db.what)?,
            };
            if !db.reader_still_valid(&reader) {
                // The file changed while it was read: look again.
                return Err(Failure::Sql(busy_error()));
            }
            Ok((found, reader))
        })?;
        let Some((found, reader)) = checked else {
            return Ok(Opened::NeedsWork);
        };
        match found {
            Found::Ours(version) => {
                session_core::schema::check_version(&db.what, version, schema::SCHEMA_VERSION)?;
            }
            Found::Empty => return Err(schema::empty_database(&db.what)),
        }
        lock(&db.readers).push(reader);
        Ok(Opened::Ready(Box::new(db)))
    }

    /// Opens a private in-memory database.
    pub(crate) fn open_memory(options: Options) -> Result<Arc<Db>> {
        options.check()?;
        let location = Location::Memory;
        let what = "in-memory SQLite database".to_owned();
        let writer = open_writer(&location, &options).map_err(|e| convert(&what, e))?;
        let db = Db::new(location, what, options, Some(writer), Vec::new());
        {
            let writer = db.writer_guard()?;
            schema::prepare(&writer, &db.what, OpenMode::Create, false, true)
                .map_err(|f| db.convert(f))?;
        }
        Ok(Arc::new(db))
    }

    fn new(
        location: Location,
        what: String,
        options: Options,
        writer: Option<Connection>,
        readers: Vec<Reader>,
    ) -> Db {
        Db {
            location,
            what,
            options,
            readers: Mutex::new(readers),
            writer: writer.map(Mutex::new),
            writes: AtomicU64::new(0),
            synced: AtomicU64::new(0),
        }
    }

    /// The writer connection, waiting for it; `Unsupported` on a read-only store.
    fn writer_guard(&self) -> Result<MutexGuard<'_, Connection>> {
        self.check_writable()?;
        match &self.writer {
            Some(writer) => Ok(lock(writer)),
            None => Err(Error::unsupported(BACKEND, "writes")),
        }
    }

    /// The file, for a file database.
    pub(crate) fn path(&self) -> Option<&Path> {
        match &self.location {
            Location::File(path) => Some(path),
            Location::Memory => None,
        }
    }

    /// The durability policy.
    pub(crate) fn durability(&self) -> Durability {
        self.options.durability
    }

    /// The busy timeout.
    pub(crate) fn busy_timeout(&self) -> Duration {
        self.options.busy_timeout
    }

    /// The mode the store was opened in.
    pub(crate) fn mode(&self) -> OpenMode {
        self.options.mode
    }

    /// Converts a failure, naming the database.
    pub(crate) fn convert(&self, failure: Failure) -> Error {
        match failure {
            Failure::Sql(e) => convert(&self.what, e),
            Failure::Store(e) => e,
        }
    }

    /// `Busy` after a wait that ran out: it names the configured timeout
    /// (the wait itself overshoots it by at most one attempt and the
    /// scheduler's delay in waking the call up).
    fn busy(&self, waited: Duration, source: rusqlite::Error) -> Error {
        Error::Busy {
            what: self.what.clone(),
            waited: waited.min(self.options.busy_timeout),
            source: Some(Box::new(source)),
        }
    }

    /// Whether a commit waits for the disk (then writes never run inline).
    fn commit_syncs(&self) -> bool {
        matches!(self.location, Location::File(_)) && self.options.write_behind().is_none()
    }

    /// `Unsupported` for a store opened read-only.
    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.writer.is_none() {
            return Err(Error::unsupported(
                BACKEND,
                format!("writing to {}, which was opened read-only", self.what),
            ));
        }
        Ok(())
    }

    /// Runs `attempt` until it succeeds, fails with something other than
    /// `SQLITE_BUSY`/`SQLITE_LOCKED`, or `deadline` passes (then
    /// `Error::Busy`). Without `wait`, a busy attempt answers `None` at once.
    fn with_retry_until<T>(
        &self,
        deadline: Instant,
        wait: bool,
        mut attempt: impl FnMut() -> SqlResult<T>,
    ) -> Result<Option<T>> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match attempt() {
                Ok(value) => return Ok(Some(value)),
                Err(Failure::Sql(e)) if is_busy(&e) => {
                    if !wait {
                        return Ok(None);
                    }
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(self.busy(started.elapsed(), e));
                    }
                    thread::sleep(pause.min(deadline - now));
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(failure) => return Err(self.convert(failure)),
            }
        }
    }

    /// Like [`with_retry_until`](Self::with_retry_until), waiting up to the busy timeout.
    fn with_retry<T>(&self, attempt: impl FnMut() -> SqlResult<T>) -> Result<T> {
        let deadline = Instant::now() + self.options.busy_timeout;
        match self.with_retry_until(deadline, true, attempt)? {
            Some(value) => Ok(value),
            None => Err(Error::backend(
                BACKEND,
                std::io::Error::other("a retried call gave no answer"),
            )),
        }
    }

    /// Opens one more reader connection.
    fn connect_reader(&self) -> SqlResult<Reader> {
        match &self.location {
            Location::File(path) if self.writer.is_none() => {
                let sides = files::side_files_state(path);
                match sides {
                    Sides::Both => Ok(Reader {
                        conn: open_read_only(path, false)?,
                        immutable: false,
                        opened_on: None,
                    }),
                    Sides::None => {
                        let opened_on = FileState::of(path);
                        let conn = open_read_only(path, true)?;
                        Ok(Reader {
                            conn,
                            immutable: true,
                            opened_on,
                        })
                    }
                    Sides::LogWithoutIndex => {
                        Err(Failure::Store(files::log_without_index(&self.what, path)))
                    }
                }
            }
            Location::File(_) => Ok(Reader {
                conn: open_writer(&self.location, &self.options)?,
                immutable: false,
                opened_on: None,
            }),
            // The in-memory database exists only on the writer connection.
            Location::Memory => Err(Failure::Sql(busy_error())),
        }
    }

    /// Whether an immutable reader still reads what the file holds.
    fn reader_still_valid(&self, reader: &Reader) -> bool {
        match &self.location {
            Location::File(path) if reader.immutable => {
                !files::has_log(path) && FileState::of(path) == reader.opened_on
            }
            _ => true,
        }
    }

    /// Takes an idle connection without waiting: a pooled reader, the idle
    /// writer, or a new reader. `None` when only waiting would give one.
    fn take_idle(&self) -> SqlResult<Option<Taken<'_>>> {
        loop {
            let pooled = lock(&self.readers).pop();
            match pooled {
                Some(reader) if self.reader_still_valid(&reader) => {
                    return Ok(Some(Taken::Reader(reader)));
                }
                // The file changed under an immutable reader: drop it.
                Some(_) => continue,
                None => break,
            }
        }
        if let Some(writer) = &self.writer
            && let Some(guard) = try_lock(writer)
        {
            return Ok(Some(Taken::Writer(guard)));
        }
        match self.location {
            Location::File(_) => Ok(Some(Taken::Reader(self.connect_reader()?))),
            Location::Memory => Ok(None),
        }
    }

    /// Takes a connection, waiting for the writer of an in-memory database.
    fn take_waiting(&self) -> SqlResult<Taken<'_>> {
        if let Some(taken) = self.take_idle()? {
            return Ok(taken);
        }
        Ok(Taken::Writer(self.writer_guard()?))
    }

    fn give_back(&self, taken: Taken<'_>) {
        if let Taken::Reader(reader) = taken {
            let mut idle = lock(&self.readers);
            if idle.len() < self.options.max_idle_readers {
                idle.push(reader);
            }
        }
    }

    /// Runs `f` once on a connection; a result read by an immutable reader
    /// while the file changed is reported as busy (read again).
    fn run_read<T>(
        &self,
        taken: Taken<'_>,
        snapshot: bool,
        f: &dyn Fn(&Connection) -> SqlResult<T>,
    ) -> SqlResult<T> {
        let result = if snapshot {
            (|| {
                let tx = rusqlite::Transaction::new_unchecked(
                    taken.conn(),
                    TransactionBehavior::Deferred,
                )?;
                let value = f(&tx)?;
                tx.commit()?;
                Ok(value)
            })()
        } else {
            f(taken.conn())
        };
        let valid = match &taken {
            Taken::Reader(reader) => self.reader_still_valid(reader),
            Taken::Writer(_) => true,
        };
        if valid {
            self.give_back(taken);
            result
        } else {
            Err(Failure::Sql(busy_error()))
        }
    }

    /// Runs a short read: inline on an idle connection, or on the blocking
    /// pool when a lock or the in-memory writer would make it wait.
    pub(crate) async fn read<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> SqlResult<T> + Send + 'static,
    {
        match self.take_idle() {
            Ok(Some(taken)) => match self.run_read(taken, false, &f) {
                Ok(value) => return Ok(value),
                Err(failure) if is_busy_failure(&failure) => {}
                Err(failure) => return Err(self.convert(failure)),
            },
            Ok(None) => {}
            Err(failure) if is_busy_failure(&failure) => {}
            Err(failure) => return Err(self.convert(failure)),
        }
        let db = Arc::clone(self);
        blocking(move || db.read_blocking(false, &f)).await
    }

    /// Runs a long read (several statements in one read transaction) as
    /// blocking work.
    pub(crate) async fn read_snapshot<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> SqlResult<T> + Send + 'static,
    {
        let db = Arc::clone(self);
        blocking(move || db.read_blocking(true, &f)).await
    }

    fn read_blocking<T>(
        &self,
        snapshot: bool,
        f: &dyn Fn(&Connection) -> SqlResult<T>,
    ) -> Result<T> {
        self.with_retry(|| {
            let taken = self.take_waiting()?;
            self.run_read(taken, snapshot, f)
        })
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction on the writer. Short
    /// writes whose commit does not wait for the disk (write-behind, in
    /// memory) run inline when the writer is idle and the lock is free;
    /// every other write runs as blocking work ([`blocking`]).
    pub(crate) async fn write<T, F>(self: &Arc<Self>, size: WriteSize, mut f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> SqlResult<T> + Send + 'static,
    {
        self.check_writable()?;
        if size == WriteSize::Short
            && !self.commit_syncs()
            && let Some(result) = self.write_now(&mut f)
        {
            return result;
        }
        let db = Arc::clone(self);
        blocking(move || db.write_blocking(f)).await
    }

    /// One inline attempt; `None` when it would have to wait.
    fn write_now<T>(&self, f: &mut dyn FnMut(&Connection) -> SqlResult<T>) -> Option<Result<T>> {
        let mut writer = try_lock(self.writer.as_ref()?)?;
        match run_write(&mut writer, f) {
            Ok(value) => {
                self.writes.fetch_add(1, Ordering::Release);
                Some(Ok(value))
            }
            Err(failure) if is_busy_failure(&failure) => None,
            Err(failure) => Some(Err(self.convert(failure))),
        }
    }

    /// Runs a write transaction, blocking the calling thread.
    pub(crate) fn write_blocking<T>(
        &self,
        mut f: impl FnMut(&Connection) -> SqlResult<T>,
    ) -> Result<T> {
        self.check_writable()?;
        let value = self.with_retry(|| {
            let mut writer = self.writer_guard()?;
            run_write(&mut writer, &mut f)
        })?;
        self.writes.fetch_add(1, Ordering::Release);
        Ok(value)
    }

    /// Makes every write committed so far by this process durable, when the
    /// store runs write-behind: commits a marker row with `synchronous=FULL`,
    /// which fsyncs the write-ahead log (and with it every frame written before).
    pub(crate) fn sync_barrier_blocking(&self) -> Result<()> {
        if self.options.write_behind().is_none()
            || matches!(self.location, Location::Memory)
            || self.writer.is_none()
        {
            return Ok(());
        }
        let target = self.writes.load(Ordering::Acquire);
        if self.synced.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        self.with_retry(|| {
            let mut conn = self.writer_guard()?;
            conn.pragma_update(None, "synchronous", "FULL")?;
            let result = run_write(&mut conn, &mut |tx: &Connection| {
                tx.prepare_cached(
                    "INSERT INTO flush_marker (id, at_ms) VALUES (0, ?1) \
                     ON CONFLICT (id) DO UPDATE SET at_ms = excluded.at_ms",
                )?
                .execute([now_ms()])?;
                Ok(())
            });
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            result
        })?;
        self.synced.fetch_max(target, Ordering::AcqRel);
        Ok(())
    }

    /// Makes buffered writes durable (see [`sync_barrier_blocking`](Self::sync_barrier_blocking)),
    /// as blocking work.
    pub(crate) async fn flush(self: &Arc<Self>) -> Result<()> {
        if self.options.write_behind().is_none() || self.writer.is_none() {
            return Ok(());
        }
        let db = Arc::clone(self);
        blocking(move || db.sync_barrier_blocking()).await
    }

    /// Starts the background thread that bounds how long a write-behind write
    /// stays unsynced. It syncs once more and stops when the returned handle
    /// is dropped; it keeps the database open until then, so that last sync
    /// always runs (off the thread that dropped the store).
    fn start_flusher(self: &Arc<Self>) -> Option<Flusher> {
        let delay = self.options.write_behind()?;
        if matches!(self.location, Location::Memory) || self.writer.is_none() {
            return None;
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
            .ok()
            .map(|_| Flusher { _stop: stop })
    }
}

/// What a store holds: the database and, for a write-behind file, the
/// flusher, started by the first write (opening spawns no thread).
pub(crate) struct Handle {
    db: Arc<Db>,
    flusher: OnceLock<Option<Flusher>>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.db, f)
    }
}

impl Handle {
    pub(crate) fn new(db: Arc<Db>) -> Handle {
        Handle {
            db,
            flusher: OnceLock::new(),
        }
    }

    /// The database.
    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    /// See [`Db::read`].
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> SqlResult<T> + Send + 'static,
    {
        self.db.read(f).await
    }

    /// See [`Db::read_snapshot`].
    pub(crate) async fn read_snapshot<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> SqlResult<T> + Send + 'static,
    {
        self.db.read_snapshot(f).await
    }

    /// See [`Db::write`]; starts the flusher with the first write.
    pub(crate) async fn write<T, F>(&self, size: WriteSize, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> SqlResult<T> + Send + 'static,
    {
        let result = self.db.write(size, f).await;
        self.after_write(result.is_ok()).await?;
        result
    }

    /// Like [`write`](Self::write), for a write over a large `input`: an
    /// inline attempt borrows it; only a write that goes to the blocking
    /// pool clones it.
    pub(crate) async fn write_with<T, B, F>(&self, size: WriteSize, input: &B, f: F) -> Result<T>
    where
        T: Send + 'static,
        B: Clone + Send + 'static,
        F: Fn(&Connection, &B) -> SqlResult<T> + Send + 'static,
    {
        self.db.check_writable()?;
        let inline = if size == WriteSize::Short && !self.db.commit_syncs() {
            self.db.write_now(&mut |conn: &Connection| f(conn, input))
        } else {
            None
        };
        let result = match inline {
            Some(result) => result,
            None => {
                let input = input.clone();
                let db = Arc::clone(&self.db);
                blocking(move || db.write_blocking(|conn| f(conn, &input))).await
            }
        };
        self.after_write(result.is_ok()).await?;
        result
    }

    async fn after_write(&self, wrote: bool) -> Result<()> {
        if !wrote {
            return Ok(());
        }
        let started = self.flusher.get_or_init(|| self.db.start_flusher());
        if started.is_none() && self.db.options.write_behind().is_some() {
            // No thread (in memory, or it could not be started): a
            // write-behind file is synced at once instead.
            let db = Arc::clone(&self.db);
            blocking(move || db.sync_barrier_blocking()).await?;
        }
        Ok(())
    }

    /// See [`Db::flush`].
    pub(crate) async fn flush(&self) -> Result<()> {
        self.db.flush().await
    }
}

/// One `BEGIN IMMEDIATE` transaction around `f`.
fn run_write<T>(
    conn: &mut Connection,
    f: &mut dyn FnMut(&Connection) -> SqlResult<T>,
) -> SqlResult<T> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let value = f(&tx)?;
    tx.commit()?;
    Ok(value)
}

/// Stops the flusher thread when dropped.
#[derive(Debug)]
struct Flusher {
    _stop: mpsc::Sender<()>,
}

/// Runs blocking work from async code ([`session_core::blocking::run`]).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    session_core::blocking::run(f)
        .await
        .map_err(|e| Error::backend(BACKEND, e))?
}

/// An `SQLITE_BUSY` error made here, to ask for another attempt.
fn busy_error() -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
        Some("the file changed while it was read".to_owned()),
    )
}

/// Maps an SQLite error, naming the database.
pub(crate) fn convert(what: &str, e: rusqlite::Error) -> Error {
    use rusqlite::Error as E;
    if is_busy(&e) {
        return Error::Busy {
            what: what.to_owned(),
            waited: Duration::ZERO,
            source: Some(Box::new(e)),
        };
    }
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

/// Sets what every connection needs: no busy handler (waits are retried by
/// the store, bounded by its busy timeout), the statement cache, and the
/// `rarray` table-valued function for batch lookups.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::ZERO)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
    rusqlite::vtab::array::load_module(conn)?;
    Ok(())
}

/// Opens a read-write connection (the writer, or a reader of a writable store).
fn open_writer(location: &Location, options: &Options) -> rusqlite::Result<Connection> {
    let conn = match location {
        // No SQLITE_OPEN_CREATE: the file was created (mode 0600)
        // beforehand. The path is made literal: `file:` and `:memory:` mean
        // something else to SQLite.
        Location::File(path) => Connection::open_with_flags(
            files::literal(path),
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?,
        Location::Memory => Connection::open_in_memory()?,
    };
    configure(&conn)?;
    // synchronous is FULL by default; write-behind lowers it to NORMAL.
    if options.write_behind().is_some() {
        conn.pragma_update(None, "synchronous", "NORMAL")?;
    }
    Ok(conn)
}

/// Opens a read-only connection that creates nothing: on a store whose
/// `-wal` and `-shm` files exist (another connection has it open, or a
/// writer crashed), through them; on a store without them, as an
/// immutable file (SQLite would otherwise create both).
fn open_read_only(path: &Path, immutable: bool) -> rusqlite::Result<Connection> {
    let uri = files::read_only_uri(path, immutable);
    let conn = Connection::open_with_flags(
        uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    configure(&conn)?;
    // The last connection to close a write-ahead log checkpoints it into the
    // database file and deletes it; a read-only store never does.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synchronous(conn: &Connection) -> i64 {
        conn.query_row("PRAGMA synchronous", [], |r| r.get(0))
            .expect("pragma")
    }

    fn open(path: &Path, options: Options) -> Arc<Db> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime
            .block_on(Db::open_file(path.to_owned(), options))
            .expect("open")
    }

    /// Immediate runs with synchronous=FULL (2), write-behind with NORMAL (1).
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
            let db = open(
                &path,
                Options {
                    durability,
                    ..Options::default()
                },
            );
            assert_eq!(synchronous(&db.writer_guard().expect("writer")), expected);
            let wal: String = db
                .writer_guard()
                .expect("writer")
                .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                .expect("journal mode");
            assert_eq!(wal, "wal");
        }
    }

    /// Opening a write-behind store spawns no thread; its first write starts
    /// the flusher.
    #[test]
    fn the_flusher_starts_with_the_first_write() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("lazy.sqlite");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let options = Options {
            durability: Durability::WriteBehind {
                max_delay: Duration::from_millis(10),
            },
            ..Options::default()
        };
        let handle = Handle::new(
            runtime
                .block_on(Db::open_file(path, options))
                .expect("open"),
        );
        assert!(handle.flusher.get().is_none(), "no thread after opening");
        runtime
            .block_on(handle.write(WriteSize::Short, |conn| {
                conn.execute("INSERT INTO flush_marker (id, at_ms) VALUES (0, 1)", [])?;
                Ok(())
            }))
            .expect("write");
        assert!(
            matches!(handle.flusher.get(), Some(Some(_))),
            "the first write started the flusher"
        );
    }

    /// A write waits for another connection's write lock instead of failing.
    #[test]
    fn a_busy_writer_waits() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("busy.sqlite");
        let db = open(&path, Options::default());
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

    /// When the lock is held past the busy timeout, the error is `Busy`.
    #[test]
    fn a_write_gives_up_after_the_busy_timeout() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("busy.sqlite");
        let db = open(
            &path,
            Options {
                busy_timeout: Duration::from_millis(100),
                ..Options::default()
            },
        );
        let other = Connection::open(&path).expect("other connection");
        other
            .execute_batch("BEGIN IMMEDIATE")
            .expect("hold the write lock");
        let err = db.write_blocking(|_| Ok(())).expect_err("still locked");
        assert!(matches!(err, Error::Busy { .. }), "{err:?}");
        other.execute_batch("COMMIT").expect("release");
    }
}
