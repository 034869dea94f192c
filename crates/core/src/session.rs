//! [`Session`]: a handle on one named session of a store, and the checks
//! every write goes through once before a backend sees it.

use std::time::Duration;

use crate::auth_key::AuthKey;
use crate::backend::{HeaderWrite, LeaseRequest, SessionBackend, SessionHeader, UpdateStateWrite};
use crate::error::{Error, Result};
use crate::lease::{LeaseGuard, LeaseInfo, now_ms, validate_lease};
use crate::model::{
    DcOption, Peer, PeerId, SelfUser, SentFile, SentFileKey, SessionData, SessionMeta, UpdateState,
    UpdateStateChange, normalize_phone, normalize_username, validate_session_name,
};
use crate::peers::{PeerBatch, PeerTable};
use crate::store::Store;

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
    store: Store,
    name: String,
    options: SessionOptions,
}

impl Session {
    /// A handle on `name` in `store`; does not create the session.
    pub fn new(store: Store, name: &str, options: SessionOptions) -> Result<Self> {
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
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The handle's options.
    pub fn options(&self) -> SessionOptions {
        self.options
    }

    fn backend(&self) -> &dyn SessionBackend {
        &**self.store.backend()
    }

    /// The session-level fields in one read.
    pub async fn header(&self) -> Result<SessionHeader> {
        self.backend().header(&self.name).await
    }

    /// Home DC id.
    pub async fn home_dc(&self) -> Result<i32> {
        Ok(self.header().await?.home_dc)
    }

    /// Sets the home DC.
    pub async fn set_home_dc(&self, dc_id: i32) -> Result<()> {
        ops::set_home_dc(self.backend(), &self.name, dc_id).await
    }

    /// Every DC option, sorted by id.
    pub async fn dc_options(&self) -> Result<Vec<DcOption>> {
        self.backend().dc_options(&self.name).await
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
        ops::set_dc_option(self.backend(), &self.name, dc).await
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
        ops::set_dc_option(self.backend(), &self.name, &dc).await
    }

    /// The header and every DC option, in one call where the backend can.
    pub async fn home(&self) -> Result<(SessionHeader, Vec<DcOption>)> {
        self.backend().home(&self.name).await
    }

    /// The home DC's key.
    pub async fn home_auth_key(&self) -> Result<Option<AuthKey>> {
        self.backend().home_auth_key(&self.name).await
    }

    /// The logged-in user.
    pub async fn self_user(&self) -> Result<Option<SelfUser>> {
        Ok(self.header().await?.self_user)
    }

    /// Sets the logged-in user.
    pub async fn set_self_user(&self, user: Option<SelfUser>) -> Result<()> {
        ops::set_self_user(self.backend(), &self.name, user).await
    }

    /// Metadata.
    pub async fn metadata(&self) -> Result<SessionMeta> {
        Ok(self.header().await?.meta())
    }

    /// Sets api_id and test mode.
    pub async fn set_metadata(&self, api_id: Option<i32>, test_mode: bool) -> Result<()> {
        ops::set_metadata(self.backend(), &self.name, api_id, test_mode).await
    }

    /// Takeout id.
    pub async fn takeout_id(&self) -> Result<Option<i64>> {
        Ok(self.header().await?.takeout_id)
    }

    /// Sets the takeout id.
    pub async fn set_takeout_id(&self, takeout_id: Option<i64>) -> Result<()> {
        ops::set_takeout_id(self.backend(), &self.name, takeout_id).await
    }

    /// Update state.
    pub async fn update_state(&self) -> Result<UpdateState> {
        self.backend().update_state(&self.name).await
    }

    /// Applies an update-state write.
    pub async fn set_update_state(&self, change: UpdateStateChange) -> Result<()> {
        ops::set_update_state(self.backend(), &self.name, &change).await
    }

    /// Caches a batch of peers (one round trip or transaction).
    pub async fn cache_peers(&self, peers: &[Peer]) -> Result<()> {
        if !self.options.cache_peers {
            return if self.backend().exists(&self.name).await? {
                Ok(())
            } else {
                Err(Error::session_not_found(&self.name))
            };
        }
        ops::cache_peers(self.backend(), &self.name, peers).await
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
        self.backend().peers(&self.name, ids).await
    }

    /// Looks up one peer by id.
    pub async fn peer(&self, id: PeerId) -> Result<Option<Peer>> {
        if !self.options.cache_peers {
            return Ok(None);
        }
        if let Some(answer) = self.backend().peer_now(&self.name, id) {
            return answer;
        }
        self.backend().peer(&self.name, id).await
    }

    /// Looks up a peer by username, ignoring case and a leading `@`.
    pub async fn peer_by_username(&self, username: &str) -> Result<Option<Peer>> {
        if !self.options.cache_peers {
            return Ok(None);
        }
        ops::peer_by_username(self.backend(), &self.name, username).await
    }

    /// Looks up a peer by phone; `+` and separators are ignored.
    pub async fn peer_by_phone(&self, phone: &str) -> Result<Option<Peer>> {
        if !self.options.cache_peers {
            return Ok(None);
        }
        ops::peer_by_phone(self.backend(), &self.name, phone).await
    }

    /// Number of cached peers.
    pub async fn peer_count(&self) -> Result<u64> {
        self.backend().peer_count(&self.name).await
    }

    /// Looks up the sent-file cache.
    pub async fn sent_file(&self, key: &SentFileKey) -> Result<Option<SentFile>> {
        self.backend().sent_file(&self.name, key).await
    }

    /// Stores a sent-file entry.
    pub async fn cache_sent_file(&self, key: &SentFileKey, file: &SentFile) -> Result<()> {
        self.backend().cache_sent_file(&self.name, key, file).await
    }

    /// The whole session.
    pub async fn export(&self) -> Result<SessionData> {
        self.backend().export(&self.name).await
    }

    /// Replaces the whole session (creating it when absent).
    pub async fn import(&self, data: &SessionData) -> Result<()> {
        let data = validate_data(data, self.options.cache_peers)?;
        self.backend()
            .import(
                &self.name,
                &data,
                crate::backend::ImportMode::Replace,
                now_ms(),
            )
            .await
    }

    /// Takes the session's lease for `owner`, renewed until the guard drops.
    pub async fn lease(&self, owner: &str, ttl: Duration) -> Result<LeaseGuard> {
        LeaseGuard::acquire(self.store.clone(), &self.name, owner, ttl).await
    }
}

/// The checks and write shapes shared by [`Store`] and [`Session`]: each
/// validates its arguments and builds what the backend applies.
pub(crate) mod ops {
    use super::*;

    pub(crate) async fn set_home_dc(
        backend: &dyn SessionBackend,
        session: &str,
        dc_id: i32,
    ) -> Result<()> {
        check_dc_id(dc_id)?;
        let mut write = HeaderWrite::at(now_ms());
        write.home_dc = Some(dc_id);
        backend.write_header(session, &write).await
    }

    pub(crate) async fn set_dc_option(
        backend: &dyn SessionBackend,
        session: &str,
        dc: &DcOption,
    ) -> Result<()> {
        check_dc_id(dc.id)?;
        backend.write_dc_option(session, dc, now_ms()).await
    }

    pub(crate) async fn set_self_user(
        backend: &dyn SessionBackend,
        session: &str,
        user: Option<SelfUser>,
    ) -> Result<()> {
        if let Some(user) = user
            && user.id <= 0
        {
            return Err(Error::invalid(format!(
                "a user id is positive, got {}",
                user.id
            )));
        }
        let mut write = HeaderWrite::at(now_ms());
        write.self_user = Some(user);
        backend.write_header(session, &write).await
    }

    pub(crate) async fn set_metadata(
        backend: &dyn SessionBackend,
        session: &str,
        api_id: Option<i32>,
        test_mode: bool,
    ) -> Result<()> {
        let mut write = HeaderWrite::at(now_ms());
        write.api_id = Some(api_id);
        write.test_mode = Some(test_mode);
        backend.write_header(session, &write).await
    }

    pub(crate) async fn set_takeout_id(
        backend: &dyn SessionBackend,
        session: &str,
        takeout_id: Option<i64>,
    ) -> Result<()> {
        let mut write = HeaderWrite::at(now_ms());
        write.takeout_id = Some(takeout_id);
        backend.write_header(session, &write).await
    }

    pub(crate) async fn set_update_state(
        backend: &dyn SessionBackend,
        session: &str,
        change: &UpdateStateChange,
    ) -> Result<()> {
        check_update_state_change(change)?;
        backend
            .write_update_state(session, &UpdateStateWrite::from_change(change))
            .await
    }

    pub(crate) async fn cache_peers(
        backend: &dyn SessionBackend,
        session: &str,
        peers: &[Peer],
    ) -> Result<()> {
        let batch = PeerBatch::new(peers)?;
        backend.cache_peers(session, &batch).await
    }

    pub(crate) async fn peer_by_username(
        backend: &dyn SessionBackend,
        session: &str,
        username: &str,
    ) -> Result<Option<Peer>> {
        let key = normalize_username(username);
        if key.is_empty() {
            // Still a read of the session: a missing one is NotFound.
            return if backend.exists(session).await? {
                Ok(None)
            } else {
                Err(Error::session_not_found(session))
            };
        }
        backend.peer_by_username(session, &key).await
    }

    pub(crate) async fn peer_by_phone(
        backend: &dyn SessionBackend,
        session: &str,
        phone: &str,
    ) -> Result<Option<Peer>> {
        let Ok(digits) = normalize_phone(phone) else {
            return if backend.exists(session).await? {
                Ok(None)
            } else {
                Err(Error::session_not_found(session))
            };
        };
        backend.peer_by_phone(session, &digits).await
    }

    pub(crate) async fn acquire_lease(
        backend: &dyn SessionBackend,
        session: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<LeaseInfo> {
        validate_lease(owner, ttl)?;
        let now = now_ms();
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let request = LeaseRequest {
            owner: owner.to_owned(),
            now_ms: now,
            expires_at_ms: now.saturating_add(ttl_ms),
            ttl,
        };
        backend.acquire_lease(session, &request).await
    }
}

/// Checks a DC id: 1..=32767 (Telethon and Pyrogram store it in 16 bits or less).
pub fn check_dc_id(dc_id: i32) -> Result<()> {
    if !(1..=i32::from(i16::MAX)).contains(&dc_id) {
        return Err(Error::invalid(format!(
            "a DC id is between 1 and 32767, got {dc_id}"
        )));
    }
    Ok(())
}

fn check_update_state_change(change: &UpdateStateChange) -> Result<()> {
    let bad = match change {
        UpdateStateChange::Channel { id, .. } | UpdateStateChange::RemoveChannel { id } => {
            (*id <= 0).then_some(*id)
        }
        UpdateStateChange::All(state) => state.channels.keys().copied().find(|id| *id <= 0),
        UpdateStateChange::Primary { .. } | UpdateStateChange::Secondary { .. } => None,
    };
    match bad {
        Some(id) => Err(Error::invalid(format!(
            "channel pts is keyed by the bare (positive) channel id, got {id}"
        ))),
        None => Ok(()),
    }
}

/// Checks and normalizes a whole session before import: DC ids in range and
/// unique, peers normalized and unique, and every username and phone owned by
/// one peer at most (applying the ownership rules in id order, as a batch
/// would). With `keep_peers` false the peers are dropped. The result is canonical.
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
    if let Some(user) = data.self_user
        && user.id <= 0
    {
        return Err(Error::invalid(format!(
            "a user id is positive, got {}",
            user.id
        )));
    }
    if let Some(bad) = data.update_state.channels.keys().find(|id| **id <= 0) {
        return Err(Error::invalid(format!(
            "channel pts is keyed by the bare (positive) channel id, got {bad}"
        )));
    }
    if keep_peers {
        let mut peers = data
            .peers
            .iter()
            .map(Peer::normalized)
            .collect::<Result<Vec<_>>>()?;
        peers.sort_by_key(|p| p.id);
        if let Some(dup) = peers.windows(2).find(|w| w[0].id == w[1].id) {
            return Err(Error::invalid(format!("peer {} appears twice", dup[0].id)));
        }
        let mut table = PeerTable::default();
        for peer in &peers {
            table.upsert(peer);
        }
        data.peers = table.into_rows().collect();
    } else {
        data.peers.clear();
    }
    data.canonicalize();
    Ok(data)
}

/// Copies a session between two stores (any backends), through export and
/// import. With `overwrite` false the destination is created atomically
/// (`AlreadyExists` if it exists, nothing written).
pub async fn copy_between(
    from: &Store,
    from_name: &str,
    to: &Store,
    to_name: &str,
    overwrite: bool,
) -> Result<()> {
    validate_session_name(from_name)?;
    validate_session_name(to_name)?;
    let data = from.export(from_name).await?;
    if overwrite {
        to.import(to_name, &data).await
    } else {
        to.import_new(to_name, &data).await
    }
}
