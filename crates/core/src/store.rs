//! [`Store`]: what applications hold, over any [`SessionBackend`]; and the
//! capabilities and durability policies a backend declares.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::{ImportMode, SessionBackend, SessionHeader};
use crate::error::{Error, Result};
use crate::lease::{LeaseGuard, LeaseInfo, now_ms};
use crate::model::{
    DcOption, Peer, PeerId, SelfUser, SentFile, SentFileKey, SessionData, SessionMeta, UpdateState,
    UpdateStateChange, validate_session_name,
};
use crate::session::{Session, SessionOptions, ops, validate_data};

/// What a backend can promise. The conformance suite runs a gated case only
/// when the capability is declared, and reports it as ignored otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Capabilities {
    /// Data survives closing and reopening the store.
    pub durable: bool,
    /// Several processes may use the same store at once.
    pub shared_between_processes: bool,
    /// The backend can expire data by itself.
    pub ttl: bool,
    /// Writes that belong together (an import, a username move) are atomic.
    pub atomic_multi_key_writes: bool,
    /// Leases are implemented.
    pub leases: bool,
}

impl Capabilities {
    /// Every capability off.
    pub const NONE: Capabilities = Capabilities {
        durable: false,
        shared_between_processes: false,
        ttl: false,
        atomic_multi_key_writes: false,
        leases: false,
    };

    /// Sets `durable`.
    pub const fn durable(mut self, yes: bool) -> Self {
        self.durable = yes;
        self
    }

    /// Sets `shared_between_processes`.
    pub const fn shared_between_processes(mut self, yes: bool) -> Self {
        self.shared_between_processes = yes;
        self
    }

    /// Sets `ttl`.
    pub const fn ttl(mut self, yes: bool) -> Self {
        self.ttl = yes;
        self
    }

    /// Sets `atomic_multi_key_writes`.
    pub const fn atomic_multi_key_writes(mut self, yes: bool) -> Self {
        self.atomic_multi_key_writes = yes;
        self
    }

    /// Sets `leases`.
    pub const fn leases(mut self, yes: bool) -> Self {
        self.leases = yes;
        self
    }
}

/// When a write is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// Every write is durable when the call returns.
    #[default]
    Immediate,
    /// Writes may be buffered for at most `max_delay` before they reach
    /// durable storage; [`Store::flush`] forces them out.
    WriteBehind {
        /// The longest a write may stay buffered.
        max_delay: Duration,
    },
}

/// A store of named sessions, as applications hold it: a cheap, cloneable
/// handle on any [`SessionBackend`], chosen at run time.
///
/// Every method validates its arguments (session names, DC ids, peers,
/// channel ids) and normalizes them once, then calls the backend. Work on
/// one session through the [`Session`] handle from [`open`](Self::open).
///
/// ```
/// use session_core::{MemoryStore, Peer, PeerId, Store};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> session_core::Result<()> {
/// let store = Store::new(MemoryStore::new());
/// let session = store.open("alice").await?;
/// session.cache_peer(&Peer::new(PeerId::user(42)?).with_hash(7).with_username("Durov")).await?;
/// assert_eq!(store.peer_by_username("alice", "@durov").await?.map(|p| p.id), Some(PeerId::user(42)?));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn SessionBackend>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.backend, f)
    }
}

impl<B: SessionBackend> From<B> for Store {
    fn from(backend: B) -> Self {
        Store::new(backend)
    }
}

impl From<Arc<dyn SessionBackend>> for Store {
    fn from(backend: Arc<dyn SessionBackend>) -> Self {
        Store { backend }
    }
}

impl Store {
    /// A store over `backend`.
    pub fn new(backend: impl SessionBackend) -> Self {
        Store {
            backend: Arc::new(backend),
        }
    }

    /// A store over a shared backend.
    pub fn from_arc(backend: Arc<dyn SessionBackend>) -> Self {
        Store { backend }
    }

    /// The backend behind the store.
    pub fn backend(&self) -> &Arc<dyn SessionBackend> {
        &self.backend
    }

    /// The backend's short name (`memory`, `sqlite`, ...).
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// What the backend promises.
    pub fn capabilities(&self) -> Capabilities {
        self.backend.capabilities()
    }

    /// A handle on `name`, creating the session with defaults when absent.
    pub async fn open(&self, name: &str) -> Result<Session> {
        self.open_with(name, SessionOptions::default()).await
    }

    /// Like [`open`](Self::open), with options.
    pub async fn open_with(&self, name: &str, options: SessionOptions) -> Result<Session> {
        let session = Session::new(self.clone(), name, options)?;
        if !self.backend.exists(name).await? {
            match self.create(name).await {
                Ok(()) | Err(Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(session)
    }

    /// A handle on `name` without creating it (calls fail with `NotFound`
    /// until the session exists).
    pub fn session(&self, name: &str) -> Result<Session> {
        Session::new(self.clone(), name, SessionOptions::default())
    }

    /// Names of every session, sorted by bytes.
    pub async fn list(&self) -> Result<Vec<String>> {
        self.backend.list().await
    }

    /// Whether the session exists.
    pub async fn exists(&self, session: &str) -> Result<bool> {
        validate_session_name(session)?;
        self.backend.exists(session).await
    }

    /// Creates a fresh session ([`SessionData::default`]); `AlreadyExists` if it exists.
    pub async fn create(&self, session: &str) -> Result<()> {
        validate_session_name(session)?;
        self.backend
            .import(
                session,
                &SessionData::default(),
                ImportMode::CreateOnly,
                now_ms(),
            )
            .await
    }

    /// Deletes a session and everything in it. Returns whether it existed.
    pub async fn delete(&self, session: &str) -> Result<bool> {
        validate_session_name(session)?;
        self.backend.delete(session).await
    }

    /// Copies `from` into `to`. `NotFound` if `from` is missing;
    /// `AlreadyExists` if `to` exists and `overwrite` is false.
    pub async fn copy(&self, from: &str, to: &str, overwrite: bool) -> Result<()> {
        validate_session_name(from)?;
        validate_session_name(to)?;
        if from == to {
            if !self.backend.exists(from).await? {
                return Err(Error::session_not_found(from));
            }
            return if overwrite {
                Ok(())
            } else {
                Err(Error::session_exists(to))
            };
        }
        self.backend.copy(from, to, overwrite, now_ms()).await
    }

    /// Makes buffered writes durable. A no-op for [`Durability::Immediate`].
    pub async fn flush(&self) -> Result<()> {
        self.backend.flush().await
    }

    /// The whole session as one value, canonical.
    pub async fn export(&self, session: &str) -> Result<SessionData> {
        validate_session_name(session)?;
        self.backend.export(session).await
    }

    /// Replaces (or creates) the session with `data`.
    pub async fn import(&self, session: &str, data: &SessionData) -> Result<()> {
        self.import_with(session, data, ImportMode::Replace).await
    }

    /// Creates the session from `data`; `AlreadyExists` (with nothing
    /// written) if it exists. Of two racing calls, exactly one succeeds.
    pub async fn import_new(&self, session: &str, data: &SessionData) -> Result<()> {
        self.import_with(session, data, ImportMode::CreateOnly)
            .await
    }

    /// Imports with an explicit [`ImportMode`].
    pub async fn import_with(
        &self,
        session: &str,
        data: &SessionData,
        mode: ImportMode,
    ) -> Result<()> {
        validate_session_name(session)?;
        let data = validate_data(data, true)?;
        self.backend.import(session, &data, mode, now_ms()).await
    }

    /// The session-level fields (home DC, self user, metadata, takeout id).
    pub async fn header(&self, session: &str) -> Result<SessionHeader> {
        validate_session_name(session)?;
        self.backend.header(session).await
    }

    /// Home DC id.
    pub async fn home_dc(&self, session: &str) -> Result<i32> {
        Ok(self.header(session).await?.home_dc)
    }

    /// Sets the home DC id.
    pub async fn set_home_dc(&self, session: &str, dc_id: i32) -> Result<()> {
        validate_session_name(session)?;
        ops::set_home_dc(&*self.backend, session, dc_id).await
    }

    /// Every DC option, sorted by id.
    pub async fn dc_options(&self, session: &str) -> Result<Vec<DcOption>> {
        validate_session_name(session)?;
        self.backend.dc_options(session).await
    }

    /// Inserts or replaces one DC option (addresses and key together).
    pub async fn set_dc_option(&self, session: &str, dc: &DcOption) -> Result<()> {
        validate_session_name(session)?;
        ops::set_dc_option(&*self.backend, session, dc).await
    }

    /// The logged-in user.
    pub async fn self_user(&self, session: &str) -> Result<Option<SelfUser>> {
        Ok(self.header(session).await?.self_user)
    }

    /// Sets or clears the logged-in user.
    pub async fn set_self_user(&self, session: &str, user: Option<SelfUser>) -> Result<()> {
        validate_session_name(session)?;
        ops::set_self_user(&*self.backend, session, user).await
    }

    /// Metadata (api_id, test mode, times).
    pub async fn metadata(&self, session: &str) -> Result<SessionMeta> {
        Ok(self.header(session).await?.meta())
    }

    /// Sets api_id and test mode; the times are maintained by the store.
    pub async fn set_metadata(
        &self,
        session: &str,
        api_id: Option<i32>,
        test_mode: bool,
    ) -> Result<()> {
        validate_session_name(session)?;
        ops::set_metadata(&*self.backend, session, api_id, test_mode).await
    }

    /// Takeout id.
    pub async fn takeout_id(&self, session: &str) -> Result<Option<i64>> {
        Ok(self.header(session).await?.takeout_id)
    }

    /// Sets or clears the takeout id.
    pub async fn set_takeout_id(&self, session: &str, takeout_id: Option<i64>) -> Result<()> {
        validate_session_name(session)?;
        ops::set_takeout_id(&*self.backend, session, takeout_id).await
    }

    /// The update state.
    pub async fn update_state(&self, session: &str) -> Result<UpdateState> {
        validate_session_name(session)?;
        self.backend.update_state(session).await
    }

    /// Applies a (partial) update-state write.
    pub async fn set_update_state(&self, session: &str, change: &UpdateStateChange) -> Result<()> {
        validate_session_name(session)?;
        ops::set_update_state(&*self.backend, session, change).await
    }

    /// Merges a batch of peers into the cache (one round trip or transaction).
    pub async fn cache_peers(&self, session: &str, peers: &[Peer]) -> Result<()> {
        validate_session_name(session)?;
        ops::cache_peers(&*self.backend, session, peers).await
    }

    /// Looks up many peers by id, answering in the order asked.
    pub async fn peers(&self, session: &str, ids: &[PeerId]) -> Result<Vec<Option<Peer>>> {
        validate_session_name(session)?;
        self.backend.peers(session, ids).await
    }

    /// The current owner of a username, ignoring case and a leading `@`.
    pub async fn peer_by_username(&self, session: &str, username: &str) -> Result<Option<Peer>> {
        validate_session_name(session)?;
        ops::peer_by_username(&*self.backend, session, username).await
    }

    /// The current owner of a phone number; `+` and separators are ignored.
    pub async fn peer_by_phone(&self, session: &str, phone: &str) -> Result<Option<Peer>> {
        validate_session_name(session)?;
        ops::peer_by_phone(&*self.backend, session, phone).await
    }

    /// How many peers are cached.
    pub async fn peer_count(&self, session: &str) -> Result<u64> {
        validate_session_name(session)?;
        self.backend.peer_count(session).await
    }

    /// Looks up the sent-file cache.
    pub async fn sent_file(&self, session: &str, key: &SentFileKey) -> Result<Option<SentFile>> {
        validate_session_name(session)?;
        self.backend.sent_file(session, key).await
    }

    /// Stores one sent-file entry, replacing an existing one.
    pub async fn cache_sent_file(
        &self,
        session: &str,
        key: &SentFileKey,
        file: &SentFile,
    ) -> Result<()> {
        validate_session_name(session)?;
        self.backend.cache_sent_file(session, key, file).await
    }

    /// Takes the session's lease for `owner` for `ttl`, or renews it when
    /// `owner` holds it already. `LeaseHeld` while another owner's lease is
    /// live; `Unsupported` when the backend has no leases. The session need
    /// not exist.
    pub async fn acquire_lease(
        &self,
        session: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<LeaseInfo> {
        validate_session_name(session)?;
        ops::acquire_lease(&*self.backend, session, owner, ttl).await
    }

    /// Gives the lease up if `owner` holds it. Returns whether it was held (and live).
    pub async fn release_lease(&self, session: &str, owner: &str) -> Result<bool> {
        validate_session_name(session)?;
        self.backend.release_lease(session, owner, now_ms()).await
    }

    /// Takes the session's lease for `owner`, renewed in the background until
    /// the guard drops.
    pub async fn lease(&self, session: &str, owner: &str, ttl: Duration) -> Result<LeaseGuard> {
        validate_session_name(session)?;
        LeaseGuard::acquire(self.clone(), session, owner, ttl).await
    }
}

/// Conveniences on every concrete backend type.
pub trait BackendExt: SessionBackend + Sized {
    /// Wraps the backend in a [`Store`].
    fn into_store(self) -> Store {
        Store::new(self)
    }

    /// Wraps the backend in a [`Store`] and opens (creating when absent) the
    /// session `name`: `SqliteStore::open(path).await?.open("alice").await?`.
    /// The session's [`Session::store`] opens more.
    fn open(self, name: &str) -> impl std::future::Future<Output = Result<Session>> + Send {
        let store = Store::new(self);
        let name = name.to_owned();
        async move { store.open(&name).await }
    }
}

impl<B: SessionBackend> BackendExt for B {}
