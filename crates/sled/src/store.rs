//! [`SledStore`]: the [`SessionBackend`] over a sled directory, and the
//! registry that shares one open database per directory inside a process.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use session_core::backend::{decide_release, import_times};
use session_core::{
    Capabilities, ChannelsWrite, DcOption, Durability, Error, HeaderWrite, ImportMode, LeaseInfo,
    LeaseRequest, OpenMode, Peer, PeerBatch, PeerId, Result, SentFile, SentFileKey, SessionBackend,
    SessionData, SessionHeader, UpdateState, UpdateStateWrite,
};
use sled::transaction::{
    ConflictableTransactionError, ConflictableTransactionResult, TransactionError,
    TransactionalTree,
};
use sled::{Batch, IVec, Transactional, Tree};
use tokio::sync::RwLock;

use crate::codec::{
    self, Decode, Record, decode_channel_pts, decode_dc, decode_file, decode_file_suffix,
    decode_lease, decode_peer, decode_peer_id, decode_state, encode_channel_pts, encode_dc,
    encode_file, encode_lease, encode_peer, encode_state, file_suffix, fixed, flip_i32, flip_i64,
    key, peer_suffix, prefix, unflip_i32, unflip_i64,
};
use crate::error::{BACKEND, corrupt, from_sled, join, read_only};
use crate::open::{
    Opened, Options, io_error, open_in_place, open_private_copy, prepare_dir, restrict_modes,
    sync_log,
};

/// Names of the trees (see the crate docs for their layout).
pub(crate) mod tree {
    pub(crate) const SESSIONS: &str = "sessions";
    pub(crate) const DCS: &str = "dcs";
    pub(crate) const STATE: &str = "state";
    pub(crate) const CHANNELS: &str = "channels";
    pub(crate) const PEERS: &str = "peers";
    pub(crate) const USERNAMES: &str = "uname_idx";
    pub(crate) const PHONES: &str = "phone_idx";
    pub(crate) const FILES: &str = "files";
    pub(crate) const LEASES: &str = "leases";
    pub(crate) const TRASH: &str = "trash";
}

#[derive(Debug)]
struct Trees {
    sessions: Tree,
    dcs: Tree,
    state: Tree,
    channels: Tree,
    peers: Tree,
    usernames: Tree,
    phones: Tree,
    files: Tree,
    leases: Tree,
    trash: Tree,
}

impl Trees {
    fn open(db: &sled::Db, path: &Path) -> Result<Trees> {
        let open = |name: &str| db.open_tree(name).map_err(|e| from_sled(path, e));
        Ok(Trees {
            sessions: open(tree::SESSIONS)?,
            dcs: open(tree::DCS)?,
            state: open(tree::STATE)?,
            channels: open(tree::CHANNELS)?,
            peers: open(tree::PEERS)?,
            usernames: open(tree::USERNAMES)?,
            phones: open(tree::PHONES)?,
            files: open(tree::FILES)?,
            leases: open(tree::LEASES)?,
            trash: open(tree::TRASH)?,
        })
    }

    /// Every tree whose keys start with a session prefix, with its name.
    fn data(&self) -> [(&'static str, &Tree); 7] {
        [
            (tree::DCS, &self.dcs),
            (tree::STATE, &self.state),
            (tree::CHANNELS, &self.channels),
            (tree::PEERS, &self.peers),
            (tree::USERNAMES, &self.usernames),
            (tree::PHONES, &self.phones),
            (tree::FILES, &self.files),
        ]
    }
}

/// How many times a reader retries when writers keep changing the session
/// under it, before it takes the store's exclusive gate.
const OPTIMISTIC_READS: usize = 3;

/// Batches up to this size are planned and applied on the calling task;
/// larger ones move to a blocking thread.
const INLINE_PEER_BATCH: usize = 64;

/// Imports and copies of up to this many keys are written in one
/// transaction; larger ones are staged under their new generation first.
const WRITE_AT_ONCE: usize = 1024;

/// Keys removed or copied per sled batch when whole generations are moved.
const CHUNK: usize = 1024;

type TxResult<T> = ConflictableTransactionResult<T, Error>;

/// Writes of a generation: tree name, key suffix after the session prefix, value.
type Staged = Vec<(&'static str, Vec<u8>, Vec<u8>)>;

/// Session name → generation, as read from the session records. An entry
/// is dropped after every transaction that may have changed the session's
/// generation (a replace, a delete), and a reader that read a record
/// before such a transaction cannot put the old generation back: it
/// remembers only when no generation was forgotten since it began.
#[derive(Default)]
struct Generations(Mutex<GenerationMap>);

#[derive(Default)]
struct GenerationMap {
    by_session: HashMap<String, u64>,
    /// Forgets so far.
    epoch: u64,
}

impl Generations {
    fn lock(&self) -> MutexGuard<'_, GenerationMap> {
        // Every change under the lock is one map operation or an increment.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn get(&self, session: &str) -> Option<u64> {
        self.lock().by_session.get(session).copied()
    }

    /// The epoch to pass to [`Generations::remember`], taken before the
    /// record is read.
    fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    fn remember(&self, session: &str, generation: u64, epoch: u64) {
        let mut map = self.lock();
        if map.epoch == epoch {
            map.by_session.insert(session.to_owned(), generation);
        }
    }

    fn forget(&self, session: &str) {
        let mut map = self.lock();
        map.epoch += 1;
        map.by_session.remove(session);
    }
}

/// One open sled database, shared by every [`SledStore`] of this process on
/// its directory (or private to one read-only store, for a private copy).
struct Inner {
    db: sled::Db,
    /// sled's log, for `fdatasync`; `None` for a private copy.
    log: Option<Arc<fs::File>>,
    trees: Trees,
    /// The store directory (canonical), also for a private copy.
    path: PathBuf,
    durability: Durability,
    /// Writers hold it shared for the length of their transaction; readers
    /// that need a stable view of a whole session (export, copy, `All`
    /// update-state writes, starved optimistic reads) hold it exclusively.
    gate: Arc<RwLock<()>>,
    /// When the store last flushed and synced the log itself (write-behind
    /// only; see [`Inner::keep_up`]).
    last_flush: tokio::sync::Mutex<Instant>,
    /// The generation of each session a lookup has read, so that the next
    /// lookups read the peer's keys only ([`Inner::generation`]).
    generations: Generations,
    /// The copy a read-only store reads; declared last, so it is removed
    /// after sled has closed it.
    _private_copy: Option<tempfile::TempDir>,
}

impl Drop for Inner {
    /// Closing makes everything durable, whatever the policy: sled flushes
    /// its log when its last tree handle goes, and the `fdatasync` here
    /// follows; files sled made since the last flush get their private
    /// modes. Errors cannot be reported from a drop; call
    /// [`SessionBackend::flush`] first to see them.
    fn drop(&mut self) {
        if let Some(log) = &self.log
            && self.db.flush().is_ok()
        {
            let _ = log.sync_data();
            let _ = restrict_modes(&self.path);
        }
    }
}

/// One slot per canonical directory: the database open on it, if any.
type Slot = Arc<Mutex<Weak<Inner>>>;

/// The databases open in this process, by canonical directory. sled locks
/// a directory for the one database that has it open, so a second store on
/// the same directory shares the first one's database instead of opening
/// another (which would fail).
static OPEN_DATABASES: Mutex<BTreeMap<PathBuf, Slot>> = Mutex::new(BTreeMap::new());

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Neither the registry nor a slot can be left half-updated by a panic
    // (each change is one insert or assignment).
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The slot of `path`, dropping the slots of databases closed since.
fn slot(path: &Path) -> Slot {
    let mut open = lock(&OPEN_DATABASES);
    open.retain(|_, slot| {
        Arc::strong_count(slot) > 1 || slot.try_lock().map_or(true, |db| db.strong_count() > 0)
    });
    Arc::clone(open.entry(path.to_owned()).or_default())
}

/// Sessions in a sled directory. See the crate docs for the layout and the
/// guarantees.
///
/// Stores opened on the same directory in one process share one sled
/// database, so any number of them can be open at once (sled itself allows
/// one opener per directory). Dropping the last of them closes sled and
/// releases the directory (sled's threads may keep the lock for a few more
/// milliseconds, which a new open waits out).
pub struct SledStore {
    inner: Arc<Inner>,
    writable: bool,
}

impl fmt::Debug for SledStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.inner.path)
            .field("durability", &self.inner.durability)
            .field("read_only", &!self.writable)
            .finish_non_exhaustive()
    }
}

fn abort<T>(error: Error) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(error))
}

/// Opens a [`SledStore`] with options: durability, page cache, lock
/// timeout and [`OpenMode`].
///
/// ```no_run
/// use std::time::Duration;
/// use session_core::{Durability, OpenMode};
/// use session_sled::SledStore;
///
/// # async fn demo() -> session_core::Result<()> {
/// let store = SledStore::builder("sessions.sled")
///     .durability(Durability::WriteBehind { max_delay: Duration::from_millis(100) })
///     .mode(OpenMode::ReadWrite)
///     .open()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct SledBuilder {
    path: PathBuf,
    options: Options,
}

impl SledBuilder {
    /// When writes are durable (see the crate docs for what each policy
    /// guarantees). Default: [`Durability::Immediate`].
    pub fn durability(mut self, durability: Durability) -> Self {
        self.options.durability = durability;
        self
    }

    /// The most memory sled's page cache may use, in bytes. Default: 64 MiB.
    pub fn cache_capacity(mut self, bytes: u64) -> Self {
        self.options.cache_capacity = bytes;
        self
    }

    /// How long opening waits for a directory that another process holds
    /// before failing with [`Error::Busy`]. Default: 1 s.
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.options.lock_timeout = timeout;
        self
    }

    /// How to open: [`OpenMode::Create`] (the default) creates the directory
    /// when it is missing or empty; [`OpenMode::ReadWrite`] opens a store
    /// that exists; [`OpenMode::ReadOnly`] opens one without writing to its
    /// directory at all (see the crate docs).
    pub fn mode(mut self, mode: OpenMode) -> Self {
        self.options.mode = mode;
        self
    }

    /// Opens the store.
    ///
    /// Errors: the path is missing (`NotFound`, except in create mode), is
    /// not a store directory (`InvalidInput`, with nothing changed), another
    /// process holds it past the lock timeout ([`Error::Busy`] with a
    /// [`StoreInUse`](crate::StoreInUse) source, see
    /// [`is_in_use`](crate::is_in_use)), it was written by a newer version
    /// ([`Error::UnsupportedSchemaVersion`]), it is damaged
    /// ([`Error::Corrupt`]), or it is open in this process already with
    /// another durability policy (`InvalidInput`).
    pub async fn open(self) -> Result<SledStore> {
        tokio::task::spawn_blocking(move || SledStore::open_blocking(&self.path, &self.options))
            .await
            .map_err(join)?
    }
}

impl SledStore {
    /// Opens the store in directory `path`, creating it when it is missing or
    /// empty, with every write durable on return. Use [`builder`](Self::builder)
    /// for the other options and open modes.
    pub async fn open(path: impl AsRef<Path>) -> Result<SledStore> {
        SledStore::builder(path).open().await
    }

    /// A builder for a store in directory `path`.
    pub fn builder(path: impl AsRef<Path>) -> SledBuilder {
        SledBuilder {
            path: path.as_ref().to_owned(),
            options: Options::default(),
        }
    }

    fn open_blocking(path: &Path, options: &Options) -> Result<SledStore> {
        prepare_dir(path, options.mode)?;
        let canonical = fs::canonicalize(path).map_err(|e| io_error(path, "resolve", e))?;
        let writable = options.mode.writes();
        let slot = slot(&canonical);
        let mut open = lock(&slot);
        if let Some(inner) = open.upgrade() {
            if writable && inner.durability != options.durability {
                return Err(Error::invalid(format!(
                    "the sled store at {} is open in this process already with durability \
                     {:?}; a second store on it shares that database, so open it with the \
                     same durability (asked for {:?})",
                    canonical.display(),
                    inner.durability,
                    options.durability
                )));
            }
            return Ok(SledStore { inner, writable });
        }
        if !writable {
            drop(open);
            let opened = open_private_copy(&canonical, options)?;
            let inner = Inner::new(opened, canonical, options.durability)?;
            return Ok(SledStore {
                inner: Arc::new(inner),
                writable: false,
            });
        }
        let opened = open_in_place(&canonical, options)?;
        let inner = Arc::new(Inner::new(opened, canonical, options.durability)?);
        inner.collect_trash()?;
        *open = Arc::downgrade(&inner);
        Ok(SledStore {
            inner,
            writable: true,
        })
    }

    /// The store directory (canonical).
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The durability policy of the database.
    pub fn durability(&self) -> Durability {
        self.inner.durability
    }

    /// Whether the store was opened with [`OpenMode::ReadOnly`] (every write
    /// fails with [`Error::Unsupported`]).
    pub fn is_read_only(&self) -> bool {
        !self.writable
    }

    fn check_writable(&self) -> Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(read_only(&self.inner.path))
        }
    }

    /// After a write: makes it durable now under [`Durability::Immediate`];
    /// under write-behind, flushes when the last flush is older than the
    /// bound ([`Inner::keep_up`]).
    async fn settle(&self) -> Result<()> {
        match self.inner.durability {
            Durability::WriteBehind { max_delay } => self.inner.keep_up(max_delay).await,
            _ => self.inner.flush().await,
        }
    }

    /// Runs `f` on a blocking thread with the database.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = Arc::clone(&self.inner);
        session_core::blocking::run(move || f(&inner))
            .await
            .map_err(join)?
    }

    /// A read of several keys of one session that sees no write half-done:
    /// the session's generation and revision are checked before and after;
    /// after a few collisions with writers the read takes the exclusive gate.
    async fn read<T>(&self, session: &str, f: impl Fn(&Inner, &Record) -> Result<T>) -> Result<T> {
        // Reads run on the calling task and never wait for I/O readiness; let
        // the scheduler run other tasks now and then, as a network read would.
        tokio::task::coop::consume_budget().await;
        let inner = &*self.inner;
        for _ in 0..OPTIMISTIC_READS {
            let before = inner.record(session)?;
            let out = f(inner, &before)?;
            let after = inner.record(session)?;
            if (before.generation, before.revision) == (after.generation, after.revision) {
                return Ok(out);
            }
        }
        let _exclusive = inner.gate.write().await;
        let record = inner.record(session)?;
        f(inner, &record)
    }

    /// Reads the session record.
    async fn record(&self, session: &str) -> Result<Record> {
        tokio::task::coop::consume_budget().await;
        self.inner.record(session)
    }

    /// A lookup of one peer by `find` (its key, or an index entry and its
    /// key), checked by `owns` (the peer found lists what the index named).
    ///
    /// The session's generation comes from memory once read: every change
    /// of it goes through this process (sled locks its directory to one
    /// process, and one `Inner` serves each directory), which forgets it
    /// once it has changed. One key read under it is a value the peer had
    /// while that generation was the session's; an index entry and the peer
    /// it names agree (the peer lists the username or phone) only as a pair
    /// that was stored together, since a username or phone has one owner.
    /// Otherwise (nothing found, or a pair torn by a write in between) the
    /// record says whether the generation is still the session's; if not,
    /// the lookup is a [`SledStore::read`] of the session as it is now.
    async fn lookup(
        &self,
        session: &str,
        find: impl Fn(&Inner, &[u8]) -> Result<Option<Peer>>,
        owns: impl Fn(&Peer) -> bool,
    ) -> Result<Option<Peer>> {
        tokio::task::coop::consume_budget().await;
        let inner = &*self.inner;
        let generation = inner.generation(session)?;
        match find(inner, &prefix(session, generation))? {
            Some(peer) if owns(&peer) => return Ok(Some(peer)),
            None if inner.record(session)?.generation == generation => return Ok(None),
            _ => {}
        }
        self.read(session, |inner, r| {
            find(inner, &prefix(session, r.generation))
        })
        .await
    }
}

impl Inner {
    fn new(opened: Opened, path: PathBuf, durability: Durability) -> Result<Inner> {
        let trees = Trees::open(&opened.db, &path)?;
        Ok(Inner {
            db: opened.db,
            log: opened.log.map(Arc::new),
            trees,
            path,
            durability,
            gate: Arc::new(RwLock::new(())),
            last_flush: tokio::sync::Mutex::new(Instant::now()),
            generations: Generations::default(),
            _private_copy: opened.private_copy,
        })
    }

    fn sled(&self, error: sled::Error) -> Error {
        from_sled(&self.path, error)
    }

    fn corrupt(&self, tree: &str, key: impl fmt::Display, decode: Decode) -> Error {
        corrupt(&self.path, tree, &key.to_string(), decode)
    }

    fn tx<T>(&self, result: std::result::Result<T, TransactionError<Error>>) -> Result<T> {
        result.map_err(|e| match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => self.sled(e),
        })
    }

    /// Flushes sled's log and `fdatasync`s it (see [`sync_log`]), as
    /// blocking work ([`session_core::blocking::run`]). (sled's own
    /// `flush_async` runs on sled's I/O pool and, with many concurrent
    /// callers, can occupy every thread of it waiting for log writes that
    /// need one of those threads.)
    async fn flush(&self) -> Result<()> {
        let Some(log) = &self.log else {
            return Ok(());
        };
        let (db, log, path) = (self.db.clone(), Arc::clone(log), self.path.clone());
        session_core::blocking::run(move || {
            db.flush().map_err(|e| from_sled(&path, e))?;
            sync_log(&log, &path)
        })
        .await
        .map_err(join)?
    }

    /// Under write-behind, the write that finds the last flush older than
    /// `max_delay` flushes and syncs the log before it returns (and writers
    /// wait for it meanwhile). sled accepts writes into memory faster than it
    /// writes its log out; unchecked, the backlog of a steady stream of small
    /// writes grows past `max_delay` and, in sled 0.34, ends in a deadlock of
    /// its I/O thread pool (every thread waiting for the segment lock that a
    /// writer holds while it waits for a file truncation queued behind
    /// them). This keeps the backlog to what the disk takes in `max_delay`.
    async fn keep_up(&self, max_delay: Duration) -> Result<()> {
        let mut last = self.last_flush.lock().await;
        if last.elapsed() < max_delay {
            return Ok(());
        }
        self.flush().await?;
        *last = Instant::now();
        Ok(())
    }

    fn flush_blocking(&self) -> Result<()> {
        self.db.flush().map_err(|e| self.sled(e))?;
        match &self.log {
            Some(log) => sync_log(log, &self.path),
            None => Ok(()),
        }
    }

    fn decode_record(&self, session: &str, bytes: &[u8]) -> Result<Record> {
        Record::decode(bytes)
            .map_err(|d| self.corrupt(tree::SESSIONS, format!("session {session:?}"), d))
    }

    fn record_opt(&self, session: &str) -> Result<Option<Record>> {
        match self
            .trees
            .sessions
            .get(session.as_bytes())
            .map_err(|e| self.sled(e))?
        {
            Some(bytes) => Ok(Some(self.decode_record(session, &bytes)?)),
            None => Ok(None),
        }
    }

    fn record(&self, session: &str) -> Result<Record> {
        self.record_opt(session)?
            .ok_or_else(|| Error::session_not_found(session))
    }

    /// The session's generation: remembered, or read from its record and
    /// remembered (see [`Generations`]).
    fn generation(&self, session: &str) -> Result<u64> {
        if let Some(generation) = self.generations.get(session) {
            return Ok(generation);
        }
        let epoch = self.generations.epoch();
        let generation = self.record(session)?.generation;
        self.generations.remember(session, generation, epoch);
        Ok(generation)
    }

    fn tx_record_opt(
        &self,
        sessions: &TransactionalTree,
        session: &str,
    ) -> TxResult<Option<Record>> {
        match sessions.get(session.as_bytes())? {
            Some(bytes) => match self.decode_record(session, &bytes) {
                Ok(record) => Ok(Some(record)),
                Err(e) => abort(e),
            },
            None => Ok(None),
        }
    }

    fn tx_record(&self, sessions: &TransactionalTree, session: &str) -> TxResult<Record> {
        match self.tx_record_opt(sessions, session)? {
            Some(record) => Ok(record),
            None => abort(Error::session_not_found(session)),
        }
    }

    /// Writes the record back with its revision bumped.
    fn tx_put_record(
        &self,
        sessions: &TransactionalTree,
        session: &str,
        record: &mut Record,
    ) -> TxResult<()> {
        record.revision = record.revision.wrapping_add(1);
        sessions.insert(session.as_bytes(), record.encode())?;
        Ok(())
    }

    /// Every `(key, value)` of `tree` under `prefix`.
    fn scan(&self, tree: &Tree, prefix: &[u8]) -> Result<Vec<(IVec, IVec)>> {
        tree.scan_prefix(prefix)
            .collect::<sled::Result<Vec<_>>>()
            .map_err(|e| self.sled(e))
    }

    fn peer(&self, pre: &[u8], id: PeerId) -> Result<Option<Peer>> {
        let k = key(pre, &peer_suffix(id));
        match self.trees.peers.get(k).map_err(|e| self.sled(e))? {
            Some(bytes) => decode_peer(id, &bytes)
                .map(Some)
                .map_err(|d| self.corrupt(tree::PEERS, format!("peer {id}"), d)),
            None => Ok(None),
        }
    }

    fn tx_peer(&self, peers: &TransactionalTree, pre: &[u8], id: PeerId) -> TxResult<Option<Peer>> {
        match peers.get(key(pre, &peer_suffix(id)))? {
            Some(bytes) => match decode_peer(id, &bytes) {
                Ok(peer) => Ok(Some(peer)),
                Err(d) => abort(self.corrupt(tree::PEERS, format!("peer {id}"), d)),
            },
            None => Ok(None),
        }
    }

    /// The peer an index entry points at.
    fn indexed_peer(
        &self,
        index: &Tree,
        name: &str,
        pre: &[u8],
        suffix: &[u8],
    ) -> Result<Option<Peer>> {
        match index.get(key(pre, suffix)).map_err(|e| self.sled(e))? {
            Some(bytes) => {
                let id =
                    decode_peer_id(&bytes).map_err(|d| self.corrupt(name, "index entry", d))?;
                self.peer(pre, id)
            }
            None => Ok(None),
        }
    }

    fn dcs(&self, pre: &[u8]) -> Result<Vec<DcOption>> {
        self.scan(&self.trees.dcs, pre)?
            .into_iter()
            .map(|(k, v)| {
                let id = codec::suffix(&k, pre.len())
                    .and_then(|s| fixed::<4>(s, "DC id"))
                    .map(unflip_i32)
                    .map_err(|d| self.corrupt(tree::DCS, "key", d))?;
                decode_dc(id, &v).map_err(|d| self.corrupt(tree::DCS, format!("DC {id}"), d))
            })
            .collect()
    }

    fn update_state(&self, pre: &[u8]) -> Result<UpdateState> {
        let mut state = match self.trees.state.get(pre).map_err(|e| self.sled(e))? {
            Some(bytes) => {
                decode_state(&bytes).map_err(|d| self.corrupt(tree::STATE, "state", d))?
            }
            None => UpdateState::default(),
        };
        for (k, v) in self.scan(&self.trees.channels, pre)? {
            let id = codec::suffix(&k, pre.len())
                .and_then(|s| fixed::<8>(s, "channel id"))
                .map(unflip_i64)
                .map_err(|d| self.corrupt(tree::CHANNELS, "key", d))?;
            let pts = decode_channel_pts(&v)
                .map_err(|d| self.corrupt(tree::CHANNELS, format!("channel {id}"), d))?;
            state.channels.insert(id, pts);
        }
        Ok(state)
    }

    /// The whole session; the caller holds the exclusive gate.
    fn export(&self, session: &str) -> Result<SessionData> {
        let record = self.record(session)?;
        let pre = prefix(session, record.generation);
        let mut peers = Vec::new();
        for (k, v) in self.scan(&self.trees.peers, &pre)? {
            let id = codec::suffix(&k, pre.len())
                .and_then(decode_peer_id)
                .map_err(|d| self.corrupt(tree::PEERS, "key", d))?;
            peers.push(
                decode_peer(id, &v)
                    .map_err(|d| self.corrupt(tree::PEERS, format!("peer {id}"), d))?,
            );
        }
        let mut sent_files = Vec::new();
        for (k, v) in self.scan(&self.trees.files, &pre)? {
            let file_key = codec::suffix(&k, pre.len())
                .and_then(decode_file_suffix)
                .map_err(|d| self.corrupt(tree::FILES, "key", d))?;
            let file = decode_file(&v).map_err(|d| self.corrupt(tree::FILES, "sent file", d))?;
            sent_files.push((file_key, file));
        }
        let header = &record.header;
        let mut data = SessionData {
            home_dc: header.home_dc,
            dcs: self.dcs(&pre)?,
            self_user: header.self_user,
            api_id: header.api_id,
            test_mode: header.test_mode,
            takeout_id: header.takeout_id,
            update_state: self.update_state(&pre)?,
            peers,
            sent_files,
        };
        data.canonicalize();
        Ok(data)
    }

    /// Removes every key of one retired generation, then its trash entry.
    fn collect_generation(&self, pre: &[u8]) -> Result<()> {
        for (_, tree) in self.trees.data() {
            loop {
                let keys = tree
                    .scan_prefix(pre)
                    .keys()
                    .take(CHUNK)
                    .collect::<sled::Result<Vec<_>>>()
                    .map_err(|e| self.sled(e))?;
                if keys.is_empty() {
                    break;
                }
                let mut batch = Batch::default();
                for k in keys {
                    batch.remove(k);
                }
                tree.apply_batch(batch).map_err(|e| self.sled(e))?;
            }
        }
        self.trees.trash.remove(pre).map_err(|e| self.sled(e))?;
        Ok(())
    }

    /// Collects every generation left in the trash (by a crash mid-way).
    fn collect_trash(&self) -> Result<()> {
        let pending = self
            .trees
            .trash
            .iter()
            .keys()
            .collect::<sled::Result<Vec<_>>>()
            .map_err(|e| self.sled(e))?;
        let any = !pending.is_empty();
        for pre in pending {
            self.collect_generation(&pre)?;
        }
        if any {
            self.flush_blocking()?;
        }
        Ok(())
    }

    fn data_tree(&self, name: &str) -> &Tree {
        self.trees
            .data()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map_or(&self.trees.peers, |(_, t)| t)
    }

    /// Writes `writes` as a new generation of `session` and points the
    /// session at it, atomically. `decide` sees the current record (if any)
    /// and the new generation, and returns the new record or an error that
    /// cancels everything. The replaced generation is collected afterwards.
    /// The caller holds the gate shared when the writes are few (they go in
    /// one transaction); it must not hold it otherwise ([`Inner::publish`]
    /// takes it).
    fn write_generation(
        &self,
        session: &str,
        writes: Staged,
        decide: impl Fn(Option<&Record>, u64) -> Result<Record>,
    ) -> Result<()> {
        let generation = self.db.generate_id().map_err(|e| self.sled(e))?;
        let pre = prefix(session, generation);
        let t = &self.trees;
        let result = (
            &t.sessions,
            &t.trash,
            &t.dcs,
            &t.state,
            &t.channels,
            &t.peers,
            &t.usernames,
            &t.phones,
            &t.files,
        )
            .transaction(
                |(sessions, trash, dcs, state, channels, peers, usernames, phones, files)| {
                    let old = self.tx_record_opt(sessions, session)?;
                    let new = match decide(old.as_ref(), generation) {
                        Ok(record) => record,
                        Err(e) => return abort(e),
                    };
                    let data = [
                        (tree::DCS, dcs),
                        (tree::STATE, state),
                        (tree::CHANNELS, channels),
                        (tree::PEERS, peers),
                        (tree::USERNAMES, usernames),
                        (tree::PHONES, phones),
                        (tree::FILES, files),
                    ];
                    for (name, k, v) in &writes {
                        let tree = data
                            .iter()
                            .find(|(n, _)| n == name)
                            .map_or(peers, |(_, t)| *t);
                        tree.insert(key(&pre, k), v.as_slice())?;
                    }
                    if let Some(old) = &old {
                        trash.insert(prefix(session, old.generation), Vec::new())?;
                    }
                    sessions.insert(session.as_bytes(), new.encode())?;
                    Ok(old.map(|o| o.generation))
                },
            );
        self.generations.forget(session);
        if let Some(old) = self.tx(result)? {
            self.collect_generation(&prefix(session, old))?;
        }
        Ok(())
    }

    /// Writes a large generation: staged first, then published.
    fn write_large_generation(
        &self,
        session: &str,
        writes: Staged,
        decide: impl Fn(Option<&Record>, u64) -> Result<Record>,
    ) -> Result<()> {
        let generation = self.stage(session, writes)?;
        self.publish(session, generation, |old| decide(old, generation))
    }

    /// Writes `writes` (tree name, key, value) under a fresh generation that
    /// nothing points at yet, recorded in the trash until [`Inner::publish`]
    /// takes it out, so that a crash half-way leaves only collectable keys.
    fn stage(&self, session: &str, writes: Staged) -> Result<u64> {
        let generation = self.db.generate_id().map_err(|e| self.sled(e))?;
        let pre = prefix(session, generation);
        self.trees
            .trash
            .insert(pre.as_slice(), Vec::new())
            .map_err(|e| self.sled(e))?;
        let mut batches: Vec<(&Tree, Batch, usize)> = Vec::new();
        for (name, k, v) in writes {
            let tree = self.data_tree(name);
            let slot = match batches.iter().position(|(t, _, _)| std::ptr::eq(*t, tree)) {
                Some(slot) => slot,
                None => {
                    batches.push((tree, Batch::default(), 0));
                    batches.len() - 1
                }
            };
            let (tree, batch, count) = &mut batches[slot];
            batch.insert(key(&pre, &k), v);
            *count += 1;
            if *count >= CHUNK {
                tree.apply_batch(std::mem::take(batch))
                    .map_err(|e| self.sled(e))?;
                *count = 0;
            }
        }
        for (tree, batch, count) in batches {
            if count > 0 {
                tree.apply_batch(batch).map_err(|e| self.sled(e))?;
            }
        }
        // The staged keys reach the disk before the record that points at them.
        self.flush_blocking()?;
        Ok(generation)
    }

    /// Points `session` at a staged generation in one transaction. `decide`
    /// sees the current record (if any) and returns the new one, or an error
    /// that cancels the publication (the staged keys are then collected).
    /// The replaced generation is collected afterwards.
    fn publish(
        &self,
        session: &str,
        generation: u64,
        decide: impl Fn(Option<&Record>) -> Result<Record>,
    ) -> Result<()> {
        let staged = prefix(session, generation);
        let result = {
            let _shared = self.gate.blocking_read();
            (&self.trees.sessions, &self.trees.trash).transaction(|(sessions, trash)| {
                let old = self.tx_record_opt(sessions, session)?;
                let new = match decide(old.as_ref()) {
                    Ok(record) => record,
                    Err(e) => return abort(e),
                };
                if let Some(old) = &old {
                    trash.insert(prefix(session, old.generation), Vec::new())?;
                }
                trash.remove(staged.as_slice())?;
                sessions.insert(session.as_bytes(), new.encode())?;
                Ok(old.map(|o| o.generation))
            })
        };
        self.generations.forget(session);
        match self.tx(result) {
            Ok(replaced) => {
                if let Some(old) = replaced {
                    self.collect_generation(&prefix(session, old))?;
                }
                Ok(())
            }
            Err(e) => {
                self.collect_generation(&staged)?;
                Err(e)
            }
        }
    }

    /// Loads what `batch` touches, plans it with [`PeerBatch::plan`] and
    /// applies the plan, in one transaction (which sled may run more than
    /// once; the plan is a pure function of what it read). Returns whether
    /// anything was written.
    fn cache_peers(&self, session: &str, batch: &PeerBatch) -> Result<bool> {
        let t = &self.trees;
        let result = (&t.sessions, &t.peers, &t.usernames, &t.phones).transaction(
            |(sessions, peers, usernames, phones)| {
                let mut record = self.tx_record(sessions, session)?;
                let pre = prefix(session, record.generation);
                let mut stored: BTreeMap<PeerId, Peer> = BTreeMap::new();
                for id in batch.ids() {
                    if let Some(peer) = self.tx_peer(peers, &pre, *id)? {
                        stored.insert(*id, peer);
                    }
                }
                let indexes = [
                    (usernames, tree::USERNAMES, batch.username_keys()),
                    (phones, tree::PHONES, batch.phones()),
                ];
                for (index, name, keys) in indexes {
                    for k in keys {
                        let Some(owner) = index.get(key(&pre, k.as_bytes()))? else {
                            continue;
                        };
                        let owner = match decode_peer_id(&owner) {
                            Ok(id) => id,
                            Err(d) => return abort(self.corrupt(name, "index entry", d)),
                        };
                        if !stored.contains_key(&owner)
                            && let Some(peer) = self.tx_peer(peers, &pre, owner)?
                        {
                            stored.insert(owner, peer);
                        }
                    }
                }
                let plan = batch.plan(stored.into_values());
                if plan.is_empty() {
                    return Ok(false);
                }
                let removed = [
                    (usernames, &plan.usernames_removed),
                    (phones, &plan.phones_removed),
                ];
                for (index, entries) in removed {
                    for (k, id) in entries {
                        let entry = key(&pre, k.as_bytes());
                        if index
                            .get(&entry)?
                            .is_some_and(|v| v.as_ref() == peer_suffix(*id))
                        {
                            index.remove(entry)?;
                        }
                    }
                }
                for row in &plan.rows {
                    peers.insert(key(&pre, &peer_suffix(row.id)), encode_peer(row))?;
                }
                for (index, entries) in [
                    (usernames, &plan.usernames_added),
                    (phones, &plan.phones_added),
                ] {
                    for (k, id) in entries {
                        index.insert(key(&pre, k.as_bytes()), &peer_suffix(*id)[..])?;
                    }
                }
                record.peer_count += plan.inserted;
                self.tx_put_record(sessions, session, &mut record)?;
                Ok(true)
            },
        );
        self.tx(result)
    }

    /// Writes the fields an update-state write sets and applies its channel
    /// change, in one transaction. `replace` carries, for a write that
    /// replaces the channel table, the generation the caller read and the
    /// channel keys stored under it (the caller holds the exclusive gate).
    fn write_update_state(
        &self,
        session: &str,
        write: &UpdateStateWrite,
        replace: Option<(u64, &[IVec])>,
    ) -> Result<()> {
        let t = &self.trees;
        let result =
            (&t.sessions, &t.state, &t.channels).transaction(|(sessions, state_tree, channels)| {
                // Read for its existence and generation (and so that a
                // concurrent delete or import conflicts with this write).
                let mut record = self.tx_record(sessions, session)?;
                let pre = prefix(session, record.generation);
                if let Some((generation, stale)) = replace {
                    if record.generation != generation {
                        // Unreachable while the gate is held; refuse rather than mix generations.
                        return abort(Error::backend(
                            BACKEND,
                            format!(
                                "session {session:?} was replaced during an update-state write"
                            ),
                        ));
                    }
                    for k in stale {
                        channels.remove(k.as_ref())?;
                    }
                }
                if write.sets_fields() {
                    let mut state = match state_tree.get(&pre)? {
                        Some(bytes) => match decode_state(&bytes) {
                            Ok(state) => state,
                            Err(d) => return abort(self.corrupt(tree::STATE, "state", d)),
                        },
                        None => UpdateState::default(),
                    };
                    // The fixed fields; the channel table lives in its own tree.
                    write.apply_to(&mut state);
                    state_tree.insert(pre.as_slice(), encode_state(&state))?;
                }
                match &write.channels {
                    ChannelsWrite::Keep => {}
                    ChannelsWrite::Replace(table) => {
                        for (id, pts) in table {
                            channels.insert(key(&pre, &flip_i64(*id)), encode_channel_pts(*pts))?;
                        }
                    }
                    ChannelsWrite::Set { id, pts } => {
                        channels.insert(key(&pre, &flip_i64(*id)), encode_channel_pts(*pts))?;
                    }
                    ChannelsWrite::Remove { id } => {
                        channels.remove(key(&pre, &flip_i64(*id)))?;
                    }
                }
                // A write of one key is atomic by itself; readers of several
                // keys need the revision bumped only when a write changes more.
                if touches_several_keys(write) {
                    self.tx_put_record(sessions, session, &mut record)?;
                }
                Ok(())
            });
        self.tx(result)
    }

    /// Changes the session record in one transaction.
    fn update_record(&self, session: &str, change: impl Fn(&mut Record)) -> Result<()> {
        let result = self.trees.sessions.transaction(|sessions| {
            let mut record = self.tx_record(sessions, session)?;
            change(&mut record);
            self.tx_put_record(sessions, session, &mut record)
        });
        self.tx(result)
    }
}

/// Whether an update-state write changes more than one key (the state row
/// and channel rows, or several channels).
fn touches_several_keys(write: &UpdateStateWrite) -> bool {
    match write.channels {
        ChannelsWrite::Keep => false,
        ChannelsWrite::Set { .. } | ChannelsWrite::Remove { .. } => write.sets_fields(),
        ChannelsWrite::Replace(_) => true,
    }
}

/// What an import or a copy writes into the session record.
struct Replacement {
    /// The new header; its times are set by [`import_times`].
    header: SessionHeader,
    peer_count: u64,
    /// Whether an existing session may be replaced (else `AlreadyExists`).
    may_replace: bool,
    now_ms: i64,
}

impl Replacement {
    /// The record of `session` pointing at `generation`, given the record
    /// stored now.
    fn record(&self, session: &str, existing: Option<&Record>, generation: u64) -> Result<Record> {
        if existing.is_some() && !self.may_replace {
            return Err(Error::session_exists(session));
        }
        let (created_at_ms, updated_at_ms) = import_times(
            existing.map(|r| (r.header.created_at_ms, r.header.updated_at_ms)),
            self.now_ms,
        );
        Ok(Record {
            generation,
            revision: 0,
            header: SessionHeader {
                created_at_ms,
                updated_at_ms,
                ..self.header.clone()
            },
            peer_count: self.peer_count,
        })
    }
}

/// The writes that make up `data` (canonical, as core hands it over: no
/// username or phone owned twice) and its number of peers.
fn data_writes(data: &SessionData) -> (Staged, u64) {
    let mut writes = Vec::new();
    for dc in &data.dcs {
        writes.push((tree::DCS, flip_i32(dc.id).to_vec(), encode_dc(dc)));
    }
    writes.push((tree::STATE, Vec::new(), encode_state(&data.update_state)));
    for (id, pts) in &data.update_state.channels {
        writes.push((
            tree::CHANNELS,
            flip_i64(*id).to_vec(),
            encode_channel_pts(*pts),
        ));
    }
    for peer in &data.peers {
        let id = peer_suffix(peer.id);
        writes.push((tree::PEERS, id.to_vec(), encode_peer(peer)));
        for name in peer.username_keys() {
            writes.push((tree::USERNAMES, name.into_bytes(), id.to_vec()));
        }
        if let Some(phone) = &peer.phone {
            writes.push((tree::PHONES, phone.clone().into_bytes(), id.to_vec()));
        }
    }
    for (file_key, file) in &data.sent_files {
        writes.push((
            tree::FILES,
            file_suffix(file_key).to_vec(),
            encode_file(file),
        ));
    }
    (writes, data.peers.len() as u64)
}

#[async_trait]
impl SessionBackend for SledStore {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
            .durable(true)
            .atomic_multi_key_writes(true)
            .leases(self.writable)
    }

    async fn list(&self) -> Result<Vec<String>> {
        tokio::task::coop::consume_budget().await;
        let inner = &*self.inner;
        inner
            .trees
            .sessions
            .iter()
            .keys()
            .map(|k| {
                let k = k.map_err(|e| inner.sled(e))?;
                String::from_utf8(k.to_vec()).map_err(|_| {
                    inner.corrupt(
                        tree::SESSIONS,
                        "key",
                        Decode("a session name is not UTF-8".to_owned()),
                    )
                })
            })
            .collect()
    }

    async fn exists(&self, session: &str) -> Result<bool> {
        tokio::task::coop::consume_budget().await;
        self.inner
            .trees
            .sessions
            .contains_key(session.as_bytes())
            .map_err(|e| self.inner.sled(e))
    }

    async fn delete(&self, session: &str) -> Result<bool> {
        self.check_writable()?;
        let session = session.to_owned();
        let existed = self
            .blocking(move |inner| {
                let result = {
                    let _shared = inner.gate.blocking_read();
                    (&inner.trees.sessions, &inner.trees.trash).transaction(|(sessions, trash)| {
                        let Some(record) = inner.tx_record_opt(sessions, &session)? else {
                            return Ok(None);
                        };
                        sessions.remove(session.as_bytes())?;
                        trash.insert(prefix(&session, record.generation), Vec::new())?;
                        Ok(Some(record.generation))
                    })
                };
                inner.generations.forget(&session);
                match inner.tx(result)? {
                    Some(generation) => {
                        inner.collect_generation(&prefix(&session, generation))?;
                        Ok(true)
                    }
                    None => Ok(false),
                }
            })
            .await?;
        if existed {
            self.settle().await?;
        }
        Ok(existed)
    }

    async fn export(&self, session: &str) -> Result<SessionData> {
        let exclusive = Arc::clone(&self.inner.gate).write_owned().await;
        let session = session.to_owned();
        self.blocking(move |inner| {
            let _exclusive = exclusive;
            inner.export(&session)
        })
        .await
    }

    async fn import(
        &self,
        session: &str,
        data: &SessionData,
        mode: ImportMode,
        now_ms: i64,
    ) -> Result<()> {
        self.check_writable()?;
        let (writes, peer_count) = data_writes(data);
        let replacement = Replacement {
            header: SessionHeader::from_data(data, now_ms, now_ms),
            peer_count,
            may_replace: mode == ImportMode::Replace,
            now_ms,
        };
        if writes.len() <= WRITE_AT_ONCE {
            let _shared = self.inner.gate.read().await;
            self.inner
                .write_generation(session, writes, |existing, generation| {
                    replacement.record(session, existing, generation)
                })?;
        } else {
            let session = session.to_owned();
            self.blocking(move |inner| {
                inner.write_large_generation(&session, writes, |existing, generation| {
                    replacement.record(&session, existing, generation)
                })
            })
            .await?;
        }
        self.settle().await
    }

    async fn copy(&self, from: &str, to: &str, overwrite: bool, now_ms: i64) -> Result<()> {
        self.check_writable()?;
        let (from, to) = (from.to_owned(), to.to_owned());
        self.blocking(move |inner| {
            // A stable copy of the source under the exclusive gate.
            let (source, writes) = {
                let _exclusive = inner.gate.blocking_write();
                let source = inner.record(&from)?;
                let pre = prefix(&from, source.generation);
                let mut writes: Staged = Vec::new();
                for (name, tree) in inner.trees.data() {
                    for (k, v) in inner.scan(tree, &pre)? {
                        writes.push((name, k[pre.len()..].to_vec(), v.to_vec()));
                    }
                }
                (source, writes)
            };
            let replacement = Replacement {
                header: source.header,
                peer_count: source.peer_count,
                may_replace: overwrite,
                now_ms,
            };
            let decide = |existing: Option<&Record>, generation: u64| {
                replacement.record(&to, existing, generation)
            };
            if writes.len() <= WRITE_AT_ONCE {
                let _shared = inner.gate.blocking_read();
                inner.write_generation(&to, writes, decide)
            } else {
                inner.write_large_generation(&to, writes, decide)
            }
        })
        .await?;
        self.settle().await
    }

    async fn header(&self, session: &str) -> Result<SessionHeader> {
        Ok(self.record(session).await?.header)
    }

    async fn write_header(&self, session: &str, write: &HeaderWrite) -> Result<()> {
        self.check_writable()?;
        {
            let _shared = self.inner.gate.read().await;
            self.inner
                .update_record(session, |record| record.header.apply(write))?;
        }
        self.settle().await
    }

    async fn dc_options(&self, session: &str) -> Result<Vec<DcOption>> {
        self.read(session, |inner, r| {
            inner.dcs(&prefix(session, r.generation))
        })
        .await
    }

    async fn write_dc_option(
        &self,
        session: &str,
        dc: &DcOption,
        updated_at_ms: i64,
    ) -> Result<()> {
        self.check_writable()?;
        let inner = &*self.inner;
        let value = encode_dc(dc);
        let moved = HeaderWrite::at(updated_at_ms);
        {
            let _shared = inner.gate.read().await;
            let result =
                (&inner.trees.sessions, &inner.trees.dcs).transaction(|(sessions, dcs)| {
                    let mut record = inner.tx_record(sessions, session)?;
                    let pre = prefix(session, record.generation);
                    dcs.insert(key(&pre, &flip_i32(dc.id)), value.as_slice())?;
                    record.header.apply(&moved);
                    inner.tx_put_record(sessions, session, &mut record)
                });
            inner.tx(result)?;
        }
        self.settle().await
    }

    async fn home(&self, session: &str) -> Result<(SessionHeader, Vec<DcOption>)> {
        self.read(session, |inner, r| {
            Ok((r.header.clone(), inner.dcs(&prefix(session, r.generation))?))
        })
        .await
    }

    async fn update_state(&self, session: &str) -> Result<UpdateState> {
        self.read(session, |inner, r| {
            inner.update_state(&prefix(session, r.generation))
        })
        .await
    }

    async fn write_update_state(&self, session: &str, write: &UpdateStateWrite) -> Result<()> {
        self.check_writable()?;
        let inner = &*self.inner;
        if matches!(write.channels, ChannelsWrite::Replace(_)) {
            // Replacing the channel table needs the keys stored now, which
            // a transaction cannot scan for: hold every writer off instead.
            let _exclusive = inner.gate.write().await;
            let record = inner.record(session)?;
            let pre = prefix(session, record.generation);
            let stale: Vec<IVec> = inner
                .trees
                .channels
                .scan_prefix(&pre)
                .keys()
                .collect::<sled::Result<_>>()
                .map_err(|e| inner.sled(e))?;
            inner.write_update_state(session, write, Some((record.generation, &stale)))?;
        } else {
            let _shared = inner.gate.read().await;
            inner.write_update_state(session, write, None)?;
        }
        self.settle().await
    }

    async fn peers(&self, session: &str, ids: &[PeerId]) -> Result<Vec<Option<Peer>>> {
        self.read(session, |inner, r| {
            let pre = prefix(session, r.generation);
            ids.iter().map(|id| inner.peer(&pre, *id)).collect()
        })
        .await
    }

    async fn peer(&self, session: &str, id: PeerId) -> Result<Option<Peer>> {
        self.lookup(session, |inner, pre| inner.peer(pre, id), |_| true)
            .await
    }

    async fn peer_by_username(&self, session: &str, key: &str) -> Result<Option<Peer>> {
        self.lookup(
            session,
            |inner, pre| {
                inner.indexed_peer(&inner.trees.usernames, tree::USERNAMES, pre, key.as_bytes())
            },
            |peer| peer.username_keys().iter().any(|k| k == key),
        )
        .await
    }

    async fn peer_by_phone(&self, session: &str, phone: &str) -> Result<Option<Peer>> {
        self.lookup(
            session,
            |inner, pre| {
                inner.indexed_peer(&inner.trees.phones, tree::PHONES, pre, phone.as_bytes())
            },
            |peer| peer.phone.as_deref() == Some(phone),
        )
        .await
    }

    async fn peer_count(&self, session: &str) -> Result<u64> {
        Ok(self.record(session).await?.peer_count)
    }

    async fn cache_peers(&self, session: &str, batch: &PeerBatch) -> Result<()> {
        self.check_writable()?;
        if batch.is_empty() {
            // Still a write to the session: a missing one is NotFound.
            self.record(session).await?;
            return Ok(());
        }
        let written = if batch.peers().len() <= INLINE_PEER_BATCH {
            let _shared = self.inner.gate.read().await;
            self.inner.cache_peers(session, batch)?
        } else {
            let shared = Arc::clone(&self.inner.gate).read_owned().await;
            let (session, batch) = (session.to_owned(), batch.clone());
            self.blocking(move |inner| {
                let _shared = shared;
                inner.cache_peers(&session, &batch)
            })
            .await?
        };
        if written {
            self.settle().await?;
        }
        Ok(())
    }

    async fn sent_file(&self, session: &str, file_key: &SentFileKey) -> Result<Option<SentFile>> {
        self.read(session, |inner, r| {
            let k = key(&prefix(session, r.generation), &file_suffix(file_key));
            match inner.trees.files.get(k).map_err(|e| inner.sled(e))? {
                Some(bytes) => decode_file(&bytes)
                    .map(Some)
                    .map_err(|d| inner.corrupt(tree::FILES, "sent file", d)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn cache_sent_file(
        &self,
        session: &str,
        file_key: &SentFileKey,
        file: &SentFile,
    ) -> Result<()> {
        self.check_writable()?;
        let inner = &*self.inner;
        let value = encode_file(file);
        {
            let _shared = inner.gate.read().await;
            let result =
                (&inner.trees.sessions, &inner.trees.files).transaction(|(sessions, files)| {
                    let mut record = inner.tx_record(sessions, session)?;
                    let k = key(&prefix(session, record.generation), &file_suffix(file_key));
                    files.insert(k, value.as_slice())?;
                    inner.tx_put_record(sessions, session, &mut record)
                });
            inner.tx(result)?;
        }
        self.settle().await
    }

    async fn flush(&self) -> Result<()> {
        if !self.writable {
            return Ok(());
        }
        self.inner.flush().await?;
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            restrict_modes(&inner.path)
                .map_err(|e| io_error(&inner.path, "set private modes on", e))
        })
        .await
        .map_err(join)?
    }

    async fn acquire_lease(&self, session: &str, request: &LeaseRequest) -> Result<LeaseInfo> {
        self.check_writable()?;
        let inner = &*self.inner;
        let leases = &inner.trees.leases;
        let granted = loop {
            let current = leases.get(session.as_bytes()).map_err(|e| inner.sled(e))?;
            let stored = current
                .as_ref()
                .map(|bytes| decode_lease(session, bytes))
                .transpose()
                .map_err(|d| inner.corrupt(tree::LEASES, format!("lease on {session:?}"), d))?;
            let granted = request.decide(session, stored.as_ref())?;
            let swapped = leases
                .compare_and_swap(
                    session.as_bytes(),
                    current.as_ref(),
                    Some(encode_lease(&granted.owner, granted.expires_at_ms)),
                )
                .map_err(|e| inner.sled(e))?;
            if swapped.is_ok() {
                break granted;
            }
        };
        self.settle().await?;
        Ok(granted)
    }

    async fn release_lease(&self, session: &str, owner: &str, now_ms: i64) -> Result<bool> {
        self.check_writable()?;
        let inner = &*self.inner;
        let leases = &inner.trees.leases;
        let live = loop {
            let Some(current) = leases.get(session.as_bytes()).map_err(|e| inner.sled(e))? else {
                return Ok(false);
            };
            let stored = decode_lease(session, &current)
                .map_err(|d| inner.corrupt(tree::LEASES, format!("lease on {session:?}"), d))?;
            let (remove, live) = decide_release(Some(&stored), owner, now_ms);
            if !remove {
                return Ok(live);
            }
            let swapped = leases
                .compare_and_swap(session.as_bytes(), Some(&current), None::<&[u8]>)
                .map_err(|e| inner.sled(e))?;
            if swapped.is_ok() {
                break live;
            }
        };
        self.settle().await?;
        Ok(live)
    }
}
