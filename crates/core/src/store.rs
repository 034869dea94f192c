//! The backend trait every store implements, and the options it is opened with.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::Result;
use crate::lease::LeaseInfo;
use crate::model::{
    DcOption, Peer, PeerId, SelfUser, SentFile, SentFileKey, SessionData, SessionMeta, UpdateState,
    UpdateStateChange,
};

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
    /// `acquire_lease` and friends are implemented.
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
    /// durable storage; [`SessionStore::flush`] forces them out.
    WriteBehind {
        /// The longest a write may stay buffered.
        max_delay: Duration,
    },
}

/// A store of named sessions: the trait a backend implements.
///
/// Every per-session method takes the session name. Applications normally use
/// it through [`crate::Session`] handles from [`crate::SessionStoreExt::open`].
///
/// # Contract
///
/// - Session names are validated by callers in core (1..=255 bytes of UTF-8);
///   backends store any such name verbatim, including unicode.
/// - A session exists from [`create`](Self::create) or
///   [`import`](Self::import) until [`delete`](Self::delete). Every
///   per-session read and write on a session that does not exist fails with
///   [`Error::NotFound`](crate::Error::NotFound); nothing creates a session
///   implicitly.
/// - A created session holds [`SessionData::default`] (home DC 2 and the five
///   production DCs, no keys, zero update state) and `created_at_ms` /
///   `updated_at_ms` set to the creation time.
/// - Sessions are isolated: nothing written to one is visible in another.
/// - [`cache_peers`](Self::cache_peers) is one round trip or one transaction
///   per call, applies [`Peer::merge`] to each stored peer, and moves
///   usernames and phones to the most recent owner: after the call no other
///   peer of the session answers a lookup by them. Callers pass peers that
///   went through [`Peer::normalized`]; the last occurrence of an id in one
///   batch wins.
/// - Username lookups ignore case and a leading `@`.
/// - [`peers`](Self::peers) answers in the order of the ids asked for.
/// - [`import`](Self::import) replaces the whole session atomically when the
///   backend declares `atomic_multi_key_writes`.
/// - Data written by a newer schema version is refused with
///   [`Error::UnsupportedSchemaVersion`](crate::Error::UnsupportedSchemaVersion)
///   when the store is opened.
#[async_trait]
pub trait SessionStore: Send + Sync + fmt::Debug {
    /// The backend's short name (`memory`, `sqlite`, ...), used in errors.
    fn backend_name(&self) -> &'static str;

    /// What the backend promises.
    fn capabilities(&self) -> Capabilities;

    /// Names of every session, sorted.
    async fn list(&self) -> Result<Vec<String>>;

    /// Whether the session exists.
    async fn exists(&self, session: &str) -> Result<bool>;

    /// Creates a fresh session; `AlreadyExists` if it exists.
    async fn create(&self, session: &str) -> Result<()>;

    /// Deletes a session and everything in it. Returns whether it existed.
    async fn delete(&self, session: &str) -> Result<bool>;

    /// Copies `from` into `to`. `NotFound` if `from` is missing;
    /// `AlreadyExists` if `to` exists and `overwrite` is false.
    async fn copy(&self, from: &str, to: &str, overwrite: bool) -> Result<()>;

    /// Makes buffered writes durable. A no-op for [`Durability::Immediate`].
    async fn flush(&self) -> Result<()>;

    /// The whole session as one value, canonicalized.
    async fn export(&self, session: &str) -> Result<SessionData>;

    /// Replaces (or creates) the session with `data`.
    async fn import(&self, session: &str, data: &SessionData) -> Result<()>;

    /// Home DC id.
    async fn home_dc(&self, session: &str) -> Result<i32>;

    /// Sets the home DC id.
    async fn set_home_dc(&self, session: &str, dc_id: i32) -> Result<()>;

    /// Every DC option, sorted by id.
    async fn dc_options(&self, session: &str) -> Result<Vec<DcOption>>;

    /// Inserts or replaces one DC option (addresses and key together).
    async fn set_dc_option(&self, session: &str, dc: &DcOption) -> Result<()>;

    /// The logged-in user.
    async fn self_user(&self, session: &str) -> Result<Option<SelfUser>>;

    /// Sets or clears the logged-in user.
    async fn set_self_user(&self, session: &str, user: Option<SelfUser>) -> Result<()>;

    /// Metadata (api_id, test mode, times).
    async fn metadata(&self, session: &str) -> Result<SessionMeta>;

    /// Sets api_id and test mode; the backend maintains the times.
    async fn set_metadata(&self, session: &str, api_id: Option<i32>, test_mode: bool)
    -> Result<()>;

    /// Takeout id.
    async fn takeout_id(&self, session: &str) -> Result<Option<i64>>;

    /// Sets or clears the takeout id.
    async fn set_takeout_id(&self, session: &str, takeout_id: Option<i64>) -> Result<()>;

    /// The update state.
    async fn update_state(&self, session: &str) -> Result<UpdateState>;

    /// Applies a (partial) update-state write.
    async fn set_update_state(&self, session: &str, change: &UpdateStateChange) -> Result<()>;

    /// Upserts a batch of peers, merging each into what is stored.
    async fn cache_peers(&self, session: &str, peers: &[Peer]) -> Result<()>;

    /// Looks up many peers by id, answering in the order asked.
    async fn peers(&self, session: &str, ids: &[PeerId]) -> Result<Vec<Option<Peer>>>;

    /// The current owner of a username (case-insensitive).
    async fn peer_by_username(&self, session: &str, username: &str) -> Result<Option<Peer>>;

    /// The current owner of a phone number (digits only).
    async fn peer_by_phone(&self, session: &str, phone: &str) -> Result<Option<Peer>>;

    /// How many peers are cached.
    async fn peer_count(&self, session: &str) -> Result<u64>;

    /// Looks up the sent-file cache.
    async fn sent_file(&self, session: &str, key: &SentFileKey) -> Result<Option<SentFile>>;

    /// Stores one sent-file entry, replacing an existing one.
    async fn cache_sent_file(
        &self,
        session: &str,
        key: &SentFileKey,
        file: &SentFile,
    ) -> Result<()>;

    /// Takes the session's lease for `owner` for `ttl`, or renews it when
    /// `owner` holds it already. `LeaseHeld` while another owner's lease is
    /// live. The session need not exist. Backends without the `leases`
    /// capability return `InvalidInput`.
    async fn acquire_lease(&self, session: &str, owner: &str, ttl: Duration) -> Result<LeaseInfo>;

    /// Gives the lease up if `owner` holds it. Returns whether it was held.
    async fn release_lease(&self, session: &str, owner: &str) -> Result<bool>;
}

/// A store shared behind an `Arc`, as applications hold it.
pub type DynStore = Arc<dyn SessionStore>;
