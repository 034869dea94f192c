//! [`SledStore`]: the [`SessionStore`] implementation.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use session_core::lease::{now_ms, validate_lease};
use session_core::model::normalize_username;
use session_core::{
    Capabilities, DcOption, Durability, Error, LeaseInfo, Peer, PeerId, PeerTable, Result,
    SelfUser, SentFile, SentFileKey, SessionData, SessionMeta, SessionStore, UpdateState,
    UpdateStateChange,
};
use sled::transaction::{
    ConflictableTransactionError, ConflictableTransactionResult, TransactionError,
    TransactionalTree,
};
use sled::{Batch, Transactional, Tree};
use tokio::sync::RwLock;

use crate::codec::{
    self, Decode, Record, decode_channel_pts, decode_dc, decode_file, decode_file_suffix,
    decode_peer, decode_peer_id, decode_state, encode_channel_pts, encode_dc, encode_file,
    encode_peer, encode_state, file_suffix, fixed, flip_i32, flip_i64, key, peer_suffix, prefix,
    unflip_i32, unflip_i64,
};
use crate::error::{BACKEND, corrupt, from_sled, join};
use crate::open::{Claim, open_db, restrict_modes, sync_log};

/// How a [`SledStore`] is opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SledOptions {
    /// When writes are durable (see the crate docs for what each policy
    /// guarantees). Default: [`Durability::Immediate`].
    pub durability: Durability,
    /// The most memory sled's page cache may use, in bytes. Default: 64 MiB.
    pub cache_capacity: u64,
    /// How long opening waits for sled's directory lock before reporting the
    /// store as in use. A store dropped a moment ago in this process may hold
    /// the lock for a few milliseconds while sled's threads finish. Default: 1 s.
    pub lock_timeout: Duration,
}

impl Default for SledOptions {
    fn default() -> Self {
        SledOptions {
            durability: Durability::Immediate,
            cache_capacity: 64 * 1024 * 1024,
            lock_timeout: Duration::from_secs(1),
        }
    }
}

impl SledOptions {
    /// Sets the durability policy.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Sets the page cache size in bytes.
    pub fn cache_capacity(mut self, bytes: u64) -> Self {
        self.cache_capacity = bytes;
        self
    }

    /// Sets how long opening waits for sled's directory lock.
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }
}

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

/// Batches up to this size are merged on the calling task; larger ones move
/// to a blocking thread.
const INLINE_PEER_BATCH: usize = 64;

/// Keys removed or copied per sled batch when whole generations are moved.
const CHUNK: usize = 1024;

type TxResult<T> = ConflictableTransactionResult<T, Error>;

/// Writes of a staged generation: tree name, key suffix after the session prefix, value.
type Staged = Vec<(&'static str, Vec<u8>, Vec<u8>)>;

struct Inner {
    db: sled::Db,
    log: Arc<std::fs::File>,
    trees: Trees,
    path: PathBuf,
    durability: Durability,
    /// Writers hold it shared for the length of their transaction; readers
    /// that need a stable view of a whole session (export, copy, `All`
    /// update-state writes, starved optimistic reads) hold it exclusively.
    gate: Arc<RwLock<()>>,
    _claim: Claim,
}

impl Drop for Inner {
    /// Closing makes everything durable, whatever the policy: sled flushes
    /// its log when its last tree handle goes, and the `fdatasync` here
    /// follows. Errors cannot be reported from a drop; call
    /// [`SessionStore::flush`] first to see them.
    fn drop(&mut self) {
        if self.db.flush().is_ok() {
            let _ = self.log.sync_data();
        }
    }
}

/// Sessions in a sled directory. See the crate docs for the layout and the
/// guarantees.
///
/// Clone the `Arc` you hold it in to share it; dropping the last handle
/// closes sled and releases the directory (sled's threads may keep the lock
/// for a few more milliseconds, which a new `open` in this process waits out).
pub struct SledStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for SledStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.inner.path)
            .field("durability", &self.inner.durability)
            .finish_non_exhaustive()
    }
}

fn abort<T>(error: Error) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(error))
}

fn check_name(session: &str) -> Result<()> {
    if session.is_empty() || session.len() > session_core::model::MAX_SESSION_NAME_LEN {
        return Err(Error::invalid(format!(
            "a session name is 1 to {} bytes of UTF-8, got {} bytes",
            session_core::model::MAX_SESSION_NAME_LEN,
            session.len()
        )));
    }
    Ok(())
}

impl SledStore {
    /// Opens (creating if needed) the store in directory `path` with
    /// [`SledOptions::default`]: every write durable on return.
    pub async fn open(path: impl AsRef<Path>) -> Result<SledStore> {
        SledStore::open_with(path, SledOptions::default()).await
    }

    /// Opens (creating if needed) the store in directory `path`.
    ///
    /// Errors: the directory is in use by another process or another store of
    /// this process ([`Error::Backend`] with a [`StoreInUse`](crate::StoreInUse)
    /// source, see [`is_in_use`](crate::is_in_use)); it was written by a newer
    /// version ([`Error::UnsupportedSchemaVersion`]); it is damaged or holds
    /// something else ([`Error::Corrupt`]); `path` is a file
    /// ([`Error::InvalidInput`]).
    pub async fn open_with(path: impl AsRef<Path>, options: SledOptions) -> Result<SledStore> {
        let path = path.as_ref().to_owned();
        tokio::task::spawn_blocking(move || SledStore::open_blocking(&path, &options))
            .await
            .map_err(join)?
    }

    fn open_blocking(path: &Path, options: &SledOptions) -> Result<SledStore> {
        let opened = open_db(path, options)?;
        let trees = Trees::open(&opened.db, &opened.path)?;
        let inner = Inner {
            db: opened.db,
            log: Arc::new(opened.log),
            trees,
            path: opened.path,
            durability: options.durability,
            gate: Arc::new(RwLock::new(())),
            _claim: opened.claim,
        };
        inner.collect_trash()?;
        Ok(SledStore {
            inner: Arc::new(inner),
        })
    }

    /// The store directory (canonical).
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The durability policy the store was opened with.
    pub fn durability(&self) -> Durability {
        self.inner.durability
    }

    /// Makes writes durable now if the policy is [`Durability::Immediate`].
    async fn settle(&self) -> Result<()> {
        match self.inner.durability {
            Durability::WriteBehind { .. } => Ok(()),
            _ => self.inner.flush().await,
        }
    }

    /// Runs `f` on a blocking thread with the store.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(join)?
    }

    /// A read of several keys of one session that sees no write half-done:
    /// the session's revision is checked before and after; after a few
    /// collisions with writers the read takes the exclusive gate.
    async fn read<T>(&self, session: &str, f: impl Fn(&Inner, &Record) -> Result<T>) -> Result<T> {
        check_name(session)?;
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

    /// Reads one field of the session record.
    async fn field<T>(&self, session: &str, f: impl FnOnce(&Record) -> T) -> Result<T> {
        check_name(session)?;
        tokio::task::coop::consume_budget().await;
        Ok(f(&self.inner.record(session)?))
    }

    /// Changes the session record in one transaction and marks the session updated.
    async fn update_record(&self, session: &str, f: impl Fn(&mut Record)) -> Result<()> {
        check_name(session)?;
        let inner = &*self.inner;
        {
            let _shared = inner.gate.read().await;
            let result = inner.trees.sessions.transaction(|sessions| {
                let mut record = inner.tx_record(sessions, session)?;
                f(&mut record);
                record.updated_at_ms = now_ms().max(record.updated_at_ms);
                record.revision = record.revision.wrapping_add(1);
                sessions.insert(session.as_bytes(), record.encode())?;
                Ok(())
            });
            inner.tx(result)?;
        }
        self.settle().await
    }
}

impl Inner {
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

    /// Flushes sled's log and `fdatasync`s it (see [`sync_log`]), on a
    /// blocking thread. (sled's own `flush_async` runs on sled's I/O pool and,
    /// with many concurrent callers, can occupy every thread of it waiting for
    /// log writes that need one of those threads.)
    async fn flush(&self) -> Result<()> {
        let (db, log, path) = (self.db.clone(), Arc::clone(&self.log), self.path.clone());
        tokio::task::spawn_blocking(move || {
            db.flush().map_err(|e| from_sled(&path, e))?;
            sync_log(&log, &path)
        })
        .await
        .map_err(join)?
    }

    fn flush_blocking(&self) -> Result<()> {
        self.db.flush().map_err(|e| self.sled(e))?;
        sync_log(&self.log, &self.path)
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

    /// Every `(key, value)` of `tree` under `prefix`.
    fn scan(&self, tree: &Tree, prefix: &[u8]) -> Result<Vec<(sled::IVec, sled::IVec)>> {
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
        let mut data = SessionData {
            home_dc: record.home_dc,
            dcs: self.dcs(&pre)?,
            self_user: record.self_user,
            api_id: record.api_id,
            test_mode: record.test_mode,
            takeout_id: record.takeout_id,
            update_state: self.update_state(&pre)?,
            peers,
            sent_files,
        };
        data.canonicalize();
        Ok(data)
    }

    /// Removes every key of one retired generation, then its trash entry.
    fn collect(&self, pre: &[u8]) -> Result<()> {
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
            self.collect(&pre)?;
        }
        if any {
            self.flush_blocking()?;
        }
        Ok(())
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

    fn data_tree(&self, name: &str) -> &Tree {
        self.trees
            .data()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map_or(&self.trees.peers, |(_, t)| t)
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
        match self.tx(result) {
            Ok(replaced) => {
                if let Some(old) = replaced {
                    self.collect(&prefix(session, old))?;
                }
                Ok(())
            }
            Err(e) => {
                self.collect(&staged)?;
                Err(e)
            }
        }
    }

    /// Merges one peer inside a `cache_peers` transaction, moving usernames
    /// and the phone to it exactly as [`PeerTable::upsert`] does. Returns
    /// whether the peer is new.
    fn upsert(
        &self,
        pre: &[u8],
        peers: &TransactionalTree,
        usernames: &TransactionalTree,
        phones: &TransactionalTree,
        peer: &Peer,
    ) -> TxResult<bool> {
        let id_bytes = flip_i64(peer.id.marked());
        let peer_key = key(pre, &peer_suffix(peer.id));
        let stored = match peers.get(&peer_key)? {
            Some(bytes) => match decode_peer(peer.id, &bytes) {
                Ok(stored) => Some(stored),
                Err(d) => return abort(self.corrupt(tree::PEERS, format!("peer {}", peer.id), d)),
            },
            None => None,
        };
        let is_new = stored.is_none();
        let (old_keys, old_phone, merged) = match stored {
            Some(mut stored) => {
                let keys = stored.username_keys();
                let phone = stored.phone.clone();
                stored.merge(peer);
                (keys, phone, stored)
            }
            None => (Vec::new(), None, peer.clone()),
        };
        for name in old_keys {
            let index_key = key(pre, name.as_bytes());
            if usernames
                .get(&index_key)?
                .is_some_and(|v| v.as_ref() == id_bytes)
            {
                usernames.remove(index_key)?;
            }
        }
        if let Some(phone) = old_phone {
            let index_key = key(pre, phone.as_bytes());
            if phones
                .get(&index_key)?
                .is_some_and(|v| v.as_ref() == id_bytes)
            {
                phones.remove(index_key)?;
            }
        }
        peers.insert(peer_key, encode_peer(&merged))?;
        for name in merged.username_keys() {
            let previous = usernames.insert(key(pre, name.as_bytes()), &id_bytes[..])?;
            if let Some(mut other) = self.previous_owner(pre, peers, previous, peer.id)?
                && let Some(names) = &mut other.usernames
            {
                names.retain(|n| normalize_username(n) != name);
                peers.insert(key(pre, &peer_suffix(other.id)), encode_peer(&other))?;
            }
        }
        if let Some(phone) = &merged.phone {
            let previous = phones.insert(key(pre, phone.as_bytes()), &id_bytes[..])?;
            if let Some(mut other) = self.previous_owner(pre, peers, previous, peer.id)? {
                other.phone = None;
                peers.insert(key(pre, &peer_suffix(other.id)), encode_peer(&other))?;
            }
        }
        Ok(is_new)
    }

    /// The peer a replaced index entry pointed at, unless it is `me`.
    fn previous_owner(
        &self,
        pre: &[u8],
        peers: &TransactionalTree,
        previous: Option<sled::IVec>,
        me: PeerId,
    ) -> TxResult<Option<Peer>> {
        let Some(previous) = previous else {
            return Ok(None);
        };
        let id = match decode_peer_id(&previous) {
            Ok(id) => id,
            Err(d) => return abort(self.corrupt("index", "entry", d)),
        };
        if id == me {
            return Ok(None);
        }
        match peers.get(key(pre, &peer_suffix(id)))? {
            Some(bytes) => match decode_peer(id, &bytes) {
                Ok(peer) => Ok(Some(peer)),
                Err(d) => abort(self.corrupt(tree::PEERS, format!("peer {id}"), d)),
            },
            None => Ok(None),
        }
    }

    fn cache_peers(&self, session: &str, batch: &[Peer]) -> Result<()> {
        let t = &self.trees;
        let result = (&t.sessions, &t.peers, &t.usernames, &t.phones).transaction(
            |(sessions, peers, usernames, phones)| {
                let mut record = self.tx_record(sessions, session)?;
                let pre = prefix(session, record.generation);
                let mut added = 0u64;
                for peer in batch {
                    if self.upsert(&pre, peers, usernames, phones, peer)? {
                        added += 1;
                    }
                }
                record.peer_count += added;
                record.revision = record.revision.wrapping_add(1);
                sessions.insert(session.as_bytes(), record.encode())?;
                Ok(())
            },
        );
        self.tx(result)
    }
}

/// The writes that make up `data` under a fresh generation, with the peer
/// table built by [`PeerTable`] so ownership conflicts inside `data` resolve
/// exactly as in the reference store.
fn data_writes(data: &SessionData) -> Result<(Staged, u64)> {
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
    let mut table = PeerTable::default();
    for peer in &data.peers {
        codec::check_peer(peer).map_err(Error::invalid)?;
        table.upsert(peer);
    }
    for peer in table.iter() {
        let id = flip_i64(peer.id.marked());
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
    Ok((writes, table.len() as u64))
}

#[async_trait]
impl SessionStore for SledStore {
    fn backend_name(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
            .durable(true)
            .atomic_multi_key_writes(true)
            .leases(true)
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
        check_name(session)?;
        tokio::task::coop::consume_budget().await;
        self.inner
            .trees
            .sessions
            .contains_key(session.as_bytes())
            .map_err(|e| self.inner.sled(e))
    }

    async fn create(&self, session: &str) -> Result<()> {
        check_name(session)?;
        let inner = &*self.inner;
        let generation = inner.db.generate_id().map_err(|e| inner.sled(e))?;
        let defaults = SessionData::default();
        let now = now_ms();
        let record = Record {
            generation,
            revision: 0,
            home_dc: defaults.home_dc,
            self_user: None,
            api_id: None,
            test_mode: false,
            takeout_id: None,
            created_at_ms: now,
            updated_at_ms: now,
            peer_count: 0,
        };
        let pre = prefix(session, generation);
        let dcs: Vec<_> = defaults
            .dcs
            .iter()
            .map(|dc| (key(&pre, &flip_i32(dc.id)), encode_dc(dc)))
            .collect();
        {
            let _shared = inner.gate.read().await;
            let result =
                (&inner.trees.sessions, &inner.trees.dcs).transaction(|(sessions, dc_tree)| {
                    if sessions.get(session.as_bytes())?.is_some() {
                        return abort(Error::session_exists(session));
                    }
                    sessions.insert(session.as_bytes(), record.encode())?;
                    for (k, v) in &dcs {
                        dc_tree.insert(k.as_slice(), v.as_slice())?;
                    }
                    Ok(())
                });
            inner.tx(result)?;
        }
        self.settle().await
    }

    async fn delete(&self, session: &str) -> Result<bool> {
        check_name(session)?;
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
                match inner.tx(result)? {
                    Some(generation) => {
                        inner.collect(&prefix(&session, generation))?;
                        Ok(true)
                    }
                    None => Ok(false),
                }
            })
            .await?;
        self.settle().await?;
        Ok(existed)
    }

    async fn copy(&self, from: &str, to: &str, overwrite: bool) -> Result<()> {
        check_name(from)?;
        check_name(to)?;
        if !self.exists(from).await? {
            return Err(Error::session_not_found(from));
        }
        if from == to {
            return if overwrite {
                Ok(())
            } else {
                Err(Error::session_exists(to))
            };
        }
        if !overwrite && self.exists(to).await? {
            return Err(Error::session_exists(to));
        }
        let (from, to) = (from.to_owned(), to.to_owned());
        self.blocking(move |inner| {
            // A stable copy of the source, then staging outside the gate.
            let (source, writes) = {
                let _exclusive = inner.gate.blocking_write();
                let source = inner.record(&from)?;
                let pre = prefix(&from, source.generation);
                let mut writes = Vec::new();
                for (name, tree) in inner.trees.data() {
                    for (k, v) in inner.scan(tree, &pre)? {
                        writes.push((name, k[pre.len()..].to_vec(), v.to_vec()));
                    }
                }
                (source, writes)
            };
            let generation = inner.stage(&to, writes)?;
            inner.publish(&to, generation, |existing| {
                if existing.is_some() && !overwrite {
                    return Err(Error::session_exists(&to));
                }
                let now = now_ms();
                Ok(Record {
                    generation,
                    revision: 0,
                    created_at_ms: now,
                    updated_at_ms: now.max(source.updated_at_ms),
                    ..source.clone()
                })
            })
        })
        .await?;
        self.settle().await
    }

    async fn flush(&self) -> Result<()> {
        self.inner.flush().await?;
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            restrict_modes(&inner.path).map_err(|e| Error::backend(BACKEND, e))
        })
        .await
        .map_err(join)?
    }

    async fn export(&self, session: &str) -> Result<SessionData> {
        check_name(session)?;
        let exclusive = Arc::clone(&self.inner.gate).write_owned().await;
        let session = session.to_owned();
        self.blocking(move |inner| {
            let _exclusive = exclusive;
            inner.export(&session)
        })
        .await
    }

    async fn import(&self, session: &str, data: &SessionData) -> Result<()> {
        check_name(session)?;
        let (writes, peer_count) = data_writes(data)?;
        let mut template = Record {
            generation: 0,
            revision: 0,
            home_dc: data.home_dc,
            self_user: data.self_user,
            api_id: data.api_id,
            test_mode: data.test_mode,
            takeout_id: data.takeout_id,
            created_at_ms: 0,
            updated_at_ms: 0,
            peer_count,
        };
        let session = session.to_owned();
        self.blocking(move |inner| {
            let generation = inner.stage(&session, writes)?;
            template.generation = generation;
            inner.publish(&session, generation, |existing| {
                let now = now_ms();
                Ok(Record {
                    created_at_ms: existing.map_or(now, |r| r.created_at_ms),
                    updated_at_ms: now,
                    ..template.clone()
                })
            })
        })
        .await?;
        self.settle().await
    }

    async fn home_dc(&self, session: &str) -> Result<i32> {
        self.field(session, |r| r.home_dc).await
    }

    async fn set_home_dc(&self, session: &str, dc_id: i32) -> Result<()> {
        self.update_record(session, |r| r.home_dc = dc_id).await
    }

    async fn dc_options(&self, session: &str) -> Result<Vec<DcOption>> {
        self.read(session, |inner, r| {
            inner.dcs(&prefix(session, r.generation))
        })
        .await
    }

    async fn set_dc_option(&self, session: &str, dc: &DcOption) -> Result<()> {
        check_name(session)?;
        let inner = &*self.inner;
        let value = encode_dc(dc);
        {
            let _shared = inner.gate.read().await;
            let result =
                (&inner.trees.sessions, &inner.trees.dcs).transaction(|(sessions, dcs)| {
                    let mut record = inner.tx_record(sessions, session)?;
                    let pre = prefix(session, record.generation);
                    dcs.insert(key(&pre, &flip_i32(dc.id)), value.as_slice())?;
                    record.updated_at_ms = now_ms().max(record.updated_at_ms);
                    record.revision = record.revision.wrapping_add(1);
                    sessions.insert(session.as_bytes(), record.encode())?;
                    Ok(())
                });
            inner.tx(result)?;
        }
        self.settle().await
    }

    async fn self_user(&self, session: &str) -> Result<Option<SelfUser>> {
        self.field(session, |r| r.self_user).await
    }

    async fn set_self_user(&self, session: &str, user: Option<SelfUser>) -> Result<()> {
        self.update_record(session, |r| r.self_user = user).await
    }

    async fn metadata(&self, session: &str) -> Result<SessionMeta> {
        self.field(session, |r| SessionMeta {
            api_id: r.api_id,
            test_mode: r.test_mode,
            created_at_ms: r.created_at_ms,
            updated_at_ms: r.updated_at_ms,
        })
        .await
    }

    async fn set_metadata(
        &self,
        session: &str,
        api_id: Option<i32>,
        test_mode: bool,
    ) -> Result<()> {
        self.update_record(session, |r| {
            r.api_id = api_id;
            r.test_mode = test_mode;
        })
        .await
    }

    async fn takeout_id(&self, session: &str) -> Result<Option<i64>> {
        self.field(session, |r| r.takeout_id).await
    }

    async fn set_takeout_id(&self, session: &str, takeout_id: Option<i64>) -> Result<()> {
        self.update_record(session, |r| r.takeout_id = takeout_id)
            .await
    }

    async fn update_state(&self, session: &str) -> Result<UpdateState> {
        self.read(session, |inner, r| {
            inner.update_state(&prefix(session, r.generation))
        })
        .await
    }

    async fn set_update_state(&self, session: &str, change: &UpdateStateChange) -> Result<()> {
        check_name(session)?;
        let inner = &*self.inner;
        let t = &inner.trees;
        match change {
            UpdateStateChange::All(state) => {
                // Replacing the channel table needs the keys stored now, which
                // a transaction cannot scan for: hold every writer off instead.
                let _exclusive = inner.gate.write().await;
                let record = inner.record(session)?;
                let pre = prefix(session, record.generation);
                let stale: Vec<_> = t
                    .channels
                    .scan_prefix(&pre)
                    .keys()
                    .collect::<sled::Result<_>>()
                    .map_err(|e| inner.sled(e))?;
                let result =
                    (&t.sessions, &t.state, &t.channels).transaction(|(sessions, st, channels)| {
                        let mut current = inner.tx_record(sessions, session)?;
                        if current.generation != record.generation {
                            // Unreachable while the gate is held; refuse rather than mix generations.
                            return abort(Error::backend(
                                BACKEND,
                                format!(
                                    "session {session:?} was replaced during an update-state write"
                                ),
                            ));
                        }
                        for k in &stale {
                            channels.remove(k)?;
                        }
                        for (id, pts) in &state.channels {
                            channels.insert(key(&pre, &flip_i64(*id)), encode_channel_pts(*pts))?;
                        }
                        st.insert(pre.as_slice(), encode_state(state))?;
                        current.revision = current.revision.wrapping_add(1);
                        sessions.insert(session.as_bytes(), current.encode())?;
                        Ok(())
                    });
                inner.tx(result)?;
            }
            UpdateStateChange::Channel { id, pts } => {
                let _shared = inner.gate.read().await;
                let result = (&t.sessions, &t.channels).transaction(|(sessions, channels)| {
                    let mut record = inner.tx_record(sessions, session)?;
                    let pre = prefix(session, record.generation);
                    channels.insert(key(&pre, &flip_i64(*id)), encode_channel_pts(*pts))?;
                    record.revision = record.revision.wrapping_add(1);
                    sessions.insert(session.as_bytes(), record.encode())?;
                    Ok(())
                });
                inner.tx(result)?;
            }
            UpdateStateChange::RemoveChannel { id } => {
                let _shared = inner.gate.read().await;
                let result = (&t.sessions, &t.channels).transaction(|(sessions, channels)| {
                    let mut record = inner.tx_record(sessions, session)?;
                    let pre = prefix(session, record.generation);
                    channels.remove(key(&pre, &flip_i64(*id)))?;
                    record.revision = record.revision.wrapping_add(1);
                    sessions.insert(session.as_bytes(), record.encode())?;
                    Ok(())
                });
                inner.tx(result)?;
            }
            UpdateStateChange::Primary { .. } | UpdateStateChange::Secondary { .. } => {
                let _shared = inner.gate.read().await;
                let result = (&t.sessions, &t.state).transaction(|(sessions, st)| {
                    let mut record = inner.tx_record(sessions, session)?;
                    let pre = prefix(session, record.generation);
                    let mut state = match st.get(&pre)? {
                        Some(bytes) => match decode_state(&bytes) {
                            Ok(state) => state,
                            Err(d) => return abort(inner.corrupt(tree::STATE, "state", d)),
                        },
                        None => UpdateState::default(),
                    };
                    state.apply(change);
                    st.insert(pre.as_slice(), encode_state(&state))?;
                    record.revision = record.revision.wrapping_add(1);
                    sessions.insert(session.as_bytes(), record.encode())?;
                    Ok(())
                });
                inner.tx(result)?;
            }
        }
        self.settle().await
    }

    async fn cache_peers(&self, session: &str, peers: &[Peer]) -> Result<()> {
        check_name(session)?;
        for peer in peers {
            codec::check_peer(peer).map_err(Error::invalid)?;
        }
        if peers.len() <= INLINE_PEER_BATCH {
            let _shared = self.inner.gate.read().await;
            self.inner.cache_peers(session, peers)?;
        } else {
            let shared = Arc::clone(&self.inner.gate).read_owned().await;
            let (session, peers) = (session.to_owned(), peers.to_vec());
            self.blocking(move |inner| {
                let _shared = shared;
                inner.cache_peers(&session, &peers)
            })
            .await?;
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

    async fn peer_by_username(&self, session: &str, username: &str) -> Result<Option<Peer>> {
        let name = normalize_username(username);
        self.read(session, |inner, r| {
            let pre = prefix(session, r.generation);
            inner.indexed_peer(
                &inner.trees.usernames,
                tree::USERNAMES,
                &pre,
                name.as_bytes(),
            )
        })
        .await
    }

    async fn peer_by_phone(&self, session: &str, phone: &str) -> Result<Option<Peer>> {
        self.read(session, |inner, r| {
            let pre = prefix(session, r.generation);
            inner.indexed_peer(&inner.trees.phones, tree::PHONES, &pre, phone.as_bytes())
        })
        .await
    }

    async fn peer_count(&self, session: &str) -> Result<u64> {
        self.field(session, |r| r.peer_count).await
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
        check_name(session)?;
        let inner = &*self.inner;
        let value = encode_file(file);
        {
            let _shared = inner.gate.read().await;
            let result =
                (&inner.trees.sessions, &inner.trees.files).transaction(|(sessions, files)| {
                    let mut record = inner.tx_record(sessions, session)?;
                    let k = key(&prefix(session, record.generation), &file_suffix(file_key));
                    files.insert(k, value.as_slice())?;
                    record.revision = record.revision.wrapping_add(1);
                    sessions.insert(session.as_bytes(), record.encode())?;
                    Ok(())
                });
            inner.tx(result)?;
        }
        self.settle().await
    }

    async fn acquire_lease(&self, session: &str, owner: &str, ttl: Duration) -> Result<LeaseInfo> {
        check_name(session)?;
        validate_lease(owner, ttl)?;
        let inner = &*self.inner;
        let leases = &inner.trees.leases;
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let info = loop {
            let current = leases.get(session.as_bytes()).map_err(|e| inner.sled(e))?;
            let now = now_ms();
            if let Some(bytes) = &current {
                let (holder, until_ms) = codec::decode_lease(bytes)
                    .map_err(|d| inner.corrupt(tree::LEASES, format!("lease on {session:?}"), d))?;
                if holder != owner && until_ms > now {
                    return Err(Error::LeaseHeld {
                        session: session.to_owned(),
                        owner: holder,
                        until_ms,
                    });
                }
            }
            let expires_at_ms = now.saturating_add(ttl_ms);
            let swapped = leases
                .compare_and_swap(
                    session.as_bytes(),
                    current.as_ref(),
                    Some(codec::encode_lease(owner, expires_at_ms)),
                )
                .map_err(|e| inner.sled(e))?;
            if swapped.is_ok() {
                break LeaseInfo {
                    session: session.to_owned(),
                    owner: owner.to_owned(),
                    expires_at_ms,
                };
            }
        };
        self.settle().await?;
        Ok(info)
    }

    async fn release_lease(&self, session: &str, owner: &str) -> Result<bool> {
        check_name(session)?;
        let inner = &*self.inner;
        let leases = &inner.trees.leases;
        let live = loop {
            let Some(current) = leases.get(session.as_bytes()).map_err(|e| inner.sled(e))? else {
                return Ok(false);
            };
            let (holder, until_ms) = codec::decode_lease(&current)
                .map_err(|d| inner.corrupt(tree::LEASES, format!("lease on {session:?}"), d))?;
            if holder != owner {
                return Ok(false);
            }
            let swapped = leases
                .compare_and_swap(session.as_bytes(), Some(&current), None::<&[u8]>)
                .map_err(|e| inner.sled(e))?;
            if swapped.is_ok() {
                break until_ms > now_ms();
            }
        };
        self.settle().await?;
        Ok(live)
    }
}
