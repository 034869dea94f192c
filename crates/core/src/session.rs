//! [`Session`]: a handle on one named session of a store.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::auth_key::AuthKey;
use crate::error::{Error, Result};
use crate::lease::LeaseGuard;
use crate::model::{
    DcOption, Peer, PeerId, SelfUser, SentFile, SentFileKey, SessionData, SessionMeta, UpdateState,
    UpdateStateChange, normalize_phone, normalize_username, validate_session_name,
};
use crate::store::SessionStore;

/// How a [`Session`] handle behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionOptions {
    /// Cache peers (default). When off, like Telethon's `save_entities = False`,
    /// peer writes are dropped and peer lookups answer nothing; every other
    /// kind of data is still kept.
    pub cache_peers: bool,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions { cache_peers: true }
    }
}

/// A cheap, cloneable handle on one session of a store.
#[derive(Clone, Debug)]
pub struct Session {
    store: Arc<dyn SessionStore>,
    name: String,
    options: SessionOptions,
}

impl Session {
    /// A handle on `name` in `store`; does not create the session.
    pub fn new(store: Arc<dyn SessionStore>, name: &str, options: SessionOptions) -> Result<Self> {
        validate_session_name(name)?;
        Ok(Session {
            store,
            name: name.to_owned(),
            options,
        })
    }

    /// The session's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The store behind the handle.
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    /// The handle's options.
    pub fn options(&self) -> SessionOptions {
        self.options
    }

    /// Home DC id.
    pub async fn home_dc(&self) -> Result<i32> {
        self.store.home_dc(&self.name).await
    }

    /// Sets the home DC.
    pub async fn set_home_dc(&self, dc_id: i32) -> Result<()> {
        check_dc_id(dc_id)?;
        self.store.set_home_dc(&self.name, dc_id).await
    }

    /// Every DC option, sorted by id.
    pub async fn dc_options(&self) -> Result<Vec<DcOption>> {
        self.store.dc_options(&self.name).await
    }

    /// One DC option.
    pub async fn dc_option(&self, dc_id: i32) -> Result<Option<DcOption>> {
        Ok(self
            .dc_options()
            .await?
            .into_iter()
            .find(|dc| dc.id == dc_id))
    }

    /// Inserts or replaces a DC option.
    pub async fn set_dc_option(&self, dc: &DcOption) -> Result<()> {
        check_dc_id(dc.id)?;
        self.store.set_dc_option(&self.name, dc).await
    }

    /// Sets (or clears) the key of one DC, keeping its addresses. The DC must exist.
    pub async fn set_auth_key(&self, dc_id: i32, key: Option<AuthKey>) -> Result<()> {
        let mut dc = self
            .dc_option(dc_id)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: format!("DC {dc_id} in session {:?}", self.name),
            })?;
        dc.auth_key = key;
        self.store.set_dc_option(&self.name, &dc).await
    }

    /// The home DC's key.
    pub async fn home_auth_key(&self) -> Result<Option<AuthKey>> {
        let home = self.home_dc().await?;
        Ok(self.dc_option(home).await?.and_then(|dc| dc.auth_key))
    }

    /// The logged-in user.
    pub async fn self_user(&self) -> Result<Option<SelfUser>> {
        self.store.self_user(&self.name).await
    }

    /// Sets the logged-in user.
    pub async fn set_self_user(&self, user: Option<SelfUser>) -> Result<()> {
        if let Some(user) = user
            && user.id <= 0
        {
            return Err(Error::invalid(format!(
                "a user id is positive, got {}",
                user.id
            )));
        }
        self.store.set_self_user(&self.name, user).await
    }

    /// Metadata.
    pub async fn metadata(&self) -> Result<SessionMeta> {
        self.store.metadata(&self.name).await
    }

    /// Sets api_id and test mode.
    pub async fn set_metadata(&self, api_id: Option<i32>, test_mode: bool) -> Result<()> {
        self.store.set_metadata(&self.name, api_id, test_mode).await
    }

    /// Takeout id.
    pub async fn takeout_id(&self) -> Result<Option<i64>> {
        self.store.takeout_id(&self.name).await
    }

    /// Sets the takeout id.
    pub async fn set_takeout_id(&self, takeout_id: Option<i64>) -> Result<()> {
        self.store.set_takeout_id(&self.name, takeout_id).await
    }

    /// Update state.
    pub async fn update_state(&self) -> Result<UpdateState> {
        self.store.update_state(&self.name).await
    }

    /// Applies an update-state write.
    pub async fn set_update_state(&self, change: UpdateStateChange) -> Result<()> {
        if let UpdateStateChange::Channel { id, .. } | UpdateStateChange::RemoveChannel { id } =
            change
            && id <= 0
        {
            return Err(Error::invalid(format!(
                "channel pts is keyed by the bare (positive) channel id, got {id}"
            )));
        }
        if let UpdateStateChange::All(state) = &change
            && let Some(bad) = state.channels.keys().find(|id| **id <= 0)
        {
            return Err(Error::invalid(format!(
                "channel pts is keyed by the bare (positive) channel id, got {bad}"
            )));
        }
        self.store.set_update_state(&self.name, &change).await
    }

    /// Caches a batch of peers (one round trip or transaction).
    pub async fn cache_peers(&self, peers: &[Peer]) -> Result<()> {
        if !self.options.cache_peers {
            return if self.store.exists(&self.name).await? {
                Ok(())
            } else {
                Err(Error::session_not_found(&self.name))
            };
        }
        let normalized = peers
            .iter()
            .map(Peer::normalized)
            .collect::<Result<Vec<_>>>()?;
        self.store.cache_peers(&self.name, &normalized).await
    }

    /// Caches one peer.
    pub async fn cache_peer(&self, peer: &Peer) -> Result<()> {
        self.cache_peers(std::slice::from_ref(peer)).await
    }

    /// Looks up many peers by id, in the order asked.
    pub async fn peers(&self, ids: &[PeerId]) -> Result<Vec<Option<Peer>>> {
        if !self.options.cache_peers {
            return Ok(vec![None; ids.len()]);
        }
        self.store.peers(&self.name, ids).await
    }

    /// Looks up one peer by id.
    pub async fn peer(&self, id: PeerId) -> Result<Option<Peer>> {
        Ok(self.peers(&[id]).await?.pop().flatten())
    }

    /// Looks up a peer by username, ignoring case and a leading `@`.
    pub async fn peer_by_username(&self, username: &str) -> Result<Option<Peer>> {
        let key = normalize_username(username);
        if key.is_empty() || !self.options.cache_peers {
            return Ok(None);
        }
        self.store.peer_by_username(&self.name, &key).await
    }

    /// Looks up a peer by phone; `+` and separators are ignored.
    pub async fn peer_by_phone(&self, phone: &str) -> Result<Option<Peer>> {
        let Ok(digits) = normalize_phone(phone) else {
            return Ok(None);
        };
        if !self.options.cache_peers {
            return Ok(None);
        }
        self.store.peer_by_phone(&self.name, &digits).await
    }

    /// Number of cached peers.
    pub async fn peer_count(&self) -> Result<u64> {
        self.store.peer_count(&self.name).await
    }

    /// Looks up the sent-file cache.
    pub async fn sent_file(&self, key: &SentFileKey) -> Result<Option<SentFile>> {
        self.store.sent_file(&self.name, key).await
    }

    /// Stores a sent-file entry.
    pub async fn cache_sent_file(&self, key: &SentFileKey, file: &SentFile) -> Result<()> {
        self.store.cache_sent_file(&self.name, key, file).await
    }

    /// The whole session.
    pub async fn export(&self) -> Result<SessionData> {
        self.store.export(&self.name).await
    }

    /// Replaces the whole session.
    pub async fn import(&self, data: &SessionData) -> Result<()> {
        let data = validate_data(data, self.options.cache_peers)?;
        self.store.import(&self.name, &data).await
    }

    /// Takes the session's lease for `owner`, renewed until the guard drops.
    pub async fn lease(&self, owner: &str, ttl: Duration) -> Result<LeaseGuard> {
        LeaseGuard::acquire(Arc::clone(&self.store), &self.name, owner, ttl).await
    }
}

fn check_dc_id(dc_id: i32) -> Result<()> {
    if !(1..=i32::from(i16::MAX)).contains(&dc_id) {
        return Err(Error::invalid(format!(
            "a DC id is between 1 and 32767, got {dc_id}"
        )));
    }
    Ok(())
}

/// Checks and normalizes a whole session before import.
pub fn validate_data(data: &SessionData, keep_peers: bool) -> Result<SessionData> {
    let mut data = data.clone();
    check_dc_id(data.home_dc)?;
    for dc in &data.dcs {
        check_dc_id(dc.id)?;
    }
    let mut ids = std::collections::HashSet::new();
    if let Some(dup) = data.dcs.iter().find(|dc| !ids.insert(dc.id)) {
        return Err(Error::invalid(format!("DC {} appears twice", dup.id)));
    }
    if keep_peers {
        data.peers = data
            .peers
            .iter()
            .map(Peer::normalized)
            .collect::<Result<_>>()?;
        let mut ids = std::collections::HashSet::new();
        if let Some(dup) = data.peers.iter().find(|p| !ids.insert(p.id)) {
            return Err(Error::invalid(format!("peer {} appears twice", dup.id)));
        }
    } else {
        data.peers.clear();
    }
    data.canonicalize();
    Ok(data)
}

/// Conveniences on every store.
#[async_trait]
pub trait SessionStoreExt {
    /// A handle on `name`, creating the session with defaults when absent.
    async fn open(&self, name: &str) -> Result<Session>;

    /// Like [`open`](Self::open) with options.
    async fn open_with(&self, name: &str, options: SessionOptions) -> Result<Session>;

    /// A handle on `name` without creating it (calls fail with `NotFound` until it exists).
    fn session(&self, name: &str) -> Result<Session>;
}

#[async_trait]
impl SessionStoreExt for Arc<dyn SessionStore> {
    async fn open(&self, name: &str) -> Result<Session> {
        self.open_with(name, SessionOptions::default()).await
    }

    async fn open_with(&self, name: &str, options: SessionOptions) -> Result<Session> {
        let session = Session::new(Arc::clone(self), name, options)?;
        if !self.exists(name).await? {
            match self.create(name).await {
                Ok(()) | Err(Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(session)
    }

    fn session(&self, name: &str) -> Result<Session> {
        Session::new(Arc::clone(self), name, SessionOptions::default())
    }
}

/// Copies a session between two stores (any backends), through export and import.
pub async fn copy_between(
    from: &dyn SessionStore,
    from_name: &str,
    to: &dyn SessionStore,
    to_name: &str,
    overwrite: bool,
) -> Result<()> {
    validate_session_name(from_name)?;
    validate_session_name(to_name)?;
    let data = from.export(from_name).await?;
    if !overwrite && to.exists(to_name).await? {
        return Err(Error::session_exists(to_name));
    }
    to.import(to_name, &data).await
}
