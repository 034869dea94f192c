//! [`MemoryStore`]: every session in process memory.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::lease::{LeaseInfo, now_ms, validate_lease};
use crate::model::{
    DcOption, Peer, PeerId, SelfUser, SentFile, SentFileKey, SessionData, SessionMeta, UpdateState,
    UpdateStateChange,
};
use crate::store::{Capabilities, SessionStore};

/// A peer cache with username and phone indexes, applying the merge and
/// ownership rules of [`SessionStore::cache_peers`].
#[derive(Clone, Debug, Default)]
pub struct PeerTable {
    peers: BTreeMap<PeerId, Peer>,
    by_username: HashMap<String, PeerId>,
    by_phone: HashMap<String, PeerId>,
}

impl PeerTable {
    /// Merges one normalized peer, moving its usernames and phone to it.
    pub fn upsert(&mut self, peer: &Peer) {
        let old_keys;
        let old_phone;
        let merged = match self.peers.get_mut(&peer.id) {
            Some(stored) => {
                old_keys = stored.username_keys();
                old_phone = stored.phone.clone();
                stored.merge(peer);
                stored.clone()
            }
            None => {
                old_keys = Vec::new();
                old_phone = None;
                self.peers.insert(peer.id, peer.clone());
                peer.clone()
            }
        };
        for key in old_keys {
            if self.by_username.get(&key) == Some(&peer.id) {
                self.by_username.remove(&key);
            }
        }
        if let Some(phone) = old_phone
            && self.by_phone.get(&phone) == Some(&peer.id)
        {
            self.by_phone.remove(&phone);
        }
        for key in merged.username_keys() {
            if let Some(previous) = self.by_username.insert(key.clone(), peer.id)
                && previous != peer.id
                && let Some(other) = self.peers.get_mut(&previous)
                && let Some(names) = &mut other.usernames
            {
                names.retain(|n| crate::model::normalize_username(n) != key);
            }
        }
        if let Some(phone) = &merged.phone
            && let Some(previous) = self.by_phone.insert(phone.clone(), peer.id)
            && previous != peer.id
            && let Some(other) = self.peers.get_mut(&previous)
        {
            other.phone = None;
        }
    }

    /// One peer by id.
    pub fn get(&self, id: PeerId) -> Option<&Peer> {
        self.peers.get(&id)
    }

    /// The owner of a lowercased username.
    pub fn by_username(&self, key: &str) -> Option<&Peer> {
        self.by_username.get(key).and_then(|id| self.peers.get(id))
    }

    /// The owner of a phone.
    pub fn by_phone(&self, phone: &str) -> Option<&Peer> {
        self.by_phone.get(phone).and_then(|id| self.peers.get(id))
    }

    /// Number of peers.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether there are no peers.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Every peer, by id.
    pub fn iter(&self) -> impl Iterator<Item = &Peer> {
        self.peers.values()
    }
}

#[derive(Clone, Debug)]
struct Record {
    home_dc: i32,
    dcs: BTreeMap<i32, DcOption>,
    self_user: Option<SelfUser>,
    meta: SessionMeta,
    takeout_id: Option<i64>,
    update_state: UpdateState,
    peers: PeerTable,
    sent_files: BTreeMap<SentFileKey, SentFile>,
}

impl Record {
    fn from_data(data: &SessionData, created_at_ms: i64) -> Self {
        let mut peers = PeerTable::default();
        for peer in &data.peers {
            peers.upsert(peer);
        }
        Record {
            home_dc: data.home_dc,
            dcs: data.dcs.iter().map(|dc| (dc.id, dc.clone())).collect(),
            self_user: data.self_user,
            meta: SessionMeta {
                api_id: data.api_id,
                test_mode: data.test_mode,
                created_at_ms,
                updated_at_ms: now_ms(),
            },
            takeout_id: data.takeout_id,
            update_state: data.update_state.clone(),
            peers,
            sent_files: data.sent_files.iter().copied().collect(),
        }
    }

    fn to_data(&self) -> SessionData {
        let mut data = SessionData {
            home_dc: self.home_dc,
            dcs: self.dcs.values().cloned().collect(),
            self_user: self.self_user,
            api_id: self.meta.api_id,
            test_mode: self.meta.test_mode,
            takeout_id: self.takeout_id,
            update_state: self.update_state.clone(),
            peers: self.peers.iter().cloned().collect(),
            sent_files: self.sent_files.iter().map(|(k, v)| (*k, *v)).collect(),
        };
        data.canonicalize();
        data
    }

    fn touch(&mut self) {
        self.meta.updated_at_ms = now_ms().max(self.meta.updated_at_ms);
    }
}

#[derive(Debug, Default)]
struct Inner {
    sessions: BTreeMap<String, Record>,
    leases: HashMap<String, LeaseInfo>,
}

/// Every session in process memory. Not durable, not shared between
/// processes; writes are atomic under one lock. Leases work between tasks
/// and handles of the same process.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a record half-written
        // (every mutation is a single assignment or map operation), so the
        // poisoned state is still consistent.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn with<T>(&self, session: &str, f: impl FnOnce(&Record) -> T) -> Result<T> {
        let inner = self.lock();
        let record = inner
            .sessions
            .get(session)
            .ok_or_else(|| Error::session_not_found(session))?;
        Ok(f(record))
    }

    fn with_mut<T>(&self, session: &str, f: impl FnOnce(&mut Record) -> T) -> Result<T> {
        let mut inner = self.lock();
        let record = inner
            .sessions
            .get_mut(session)
            .ok_or_else(|| Error::session_not_found(session))?;
        Ok(f(record))
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    fn backend_name(&self) -> &'static str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
            .atomic_multi_key_writes(true)
            .leases(true)
    }

    async fn list(&self) -> Result<Vec<String>> {
        Ok(self.lock().sessions.keys().cloned().collect())
    }

    async fn exists(&self, session: &str) -> Result<bool> {
        Ok(self.lock().sessions.contains_key(session))
    }

    async fn create(&self, session: &str) -> Result<()> {
        let mut inner = self.lock();
        if inner.sessions.contains_key(session) {
            return Err(Error::session_exists(session));
        }
        let now = now_ms();
        inner.sessions.insert(
            session.to_owned(),
            Record::from_data(&SessionData::default(), now),
        );
        Ok(())
    }

    async fn delete(&self, session: &str) -> Result<bool> {
        Ok(self.lock().sessions.remove(session).is_some())
    }

    async fn copy(&self, from: &str, to: &str, overwrite: bool) -> Result<()> {
        let mut inner = self.lock();
        let record = inner
            .sessions
            .get(from)
            .ok_or_else(|| Error::session_not_found(from))?
            .clone();
        if from == to {
            return if overwrite {
                Ok(())
            } else {
                Err(Error::session_exists(to))
            };
        }
        if !overwrite && inner.sessions.contains_key(to) {
            return Err(Error::session_exists(to));
        }
        let mut record = record;
        record.meta.created_at_ms = now_ms();
        record.touch();
        inner.sessions.insert(to.to_owned(), record);
        Ok(())
    }

    async fn flush(&self) -> Result<()> {
        Ok(())
    }

    async fn export(&self, session: &str) -> Result<SessionData> {
        self.with(session, Record::to_data)
    }

    async fn import(&self, session: &str, data: &SessionData) -> Result<()> {
        let mut inner = self.lock();
        let created = inner
            .sessions
            .get(session)
            .map_or_else(now_ms, |r| r.meta.created_at_ms);
        inner
            .sessions
            .insert(session.to_owned(), Record::from_data(data, created));
        Ok(())
    }

    async fn home_dc(&self, session: &str) -> Result<i32> {
        self.with(session, |r| r.home_dc)
    }

    async fn set_home_dc(&self, session: &str, dc_id: i32) -> Result<()> {
        self.with_mut(session, |r| {
            r.home_dc = dc_id;
            r.touch();
        })
    }

    async fn dc_options(&self, session: &str) -> Result<Vec<DcOption>> {
        self.with(session, |r| r.dcs.values().cloned().collect())
    }

    async fn set_dc_option(&self, session: &str, dc: &DcOption) -> Result<()> {
        self.with_mut(session, |r| {
            r.dcs.insert(dc.id, dc.clone());
            r.touch();
        })
    }

    async fn self_user(&self, session: &str) -> Result<Option<SelfUser>> {
        self.with(session, |r| r.self_user)
    }

    async fn set_self_user(&self, session: &str, user: Option<SelfUser>) -> Result<()> {
        self.with_mut(session, |r| {
            r.self_user = user;
            r.touch();
        })
    }

    async fn metadata(&self, session: &str) -> Result<SessionMeta> {
        self.with(session, |r| r.meta.clone())
    }

    async fn set_metadata(
        &self,
        session: &str,
        api_id: Option<i32>,
        test_mode: bool,
    ) -> Result<()> {
        self.with_mut(session, |r| {
            r.meta.api_id = api_id;
            r.meta.test_mode = test_mode;
            r.touch();
        })
    }

    async fn takeout_id(&self, session: &str) -> Result<Option<i64>> {
        self.with(session, |r| r.takeout_id)
    }

    async fn set_takeout_id(&self, session: &str, takeout_id: Option<i64>) -> Result<()> {
        self.with_mut(session, |r| {
            r.takeout_id = takeout_id;
            r.touch();
        })
    }

    async fn update_state(&self, session: &str) -> Result<UpdateState> {
        self.with(session, |r| r.update_state.clone())
    }

    async fn set_update_state(&self, session: &str, change: &UpdateStateChange) -> Result<()> {
        self.with_mut(session, |r| r.update_state.apply(change))
    }

    async fn cache_peers(&self, session: &str, peers: &[Peer]) -> Result<()> {
        self.with_mut(session, |r| {
            for peer in peers {
                r.peers.upsert(peer);
            }
        })
    }

    async fn peers(&self, session: &str, ids: &[PeerId]) -> Result<Vec<Option<Peer>>> {
        self.with(session, |r| {
            ids.iter().map(|id| r.peers.get(*id).cloned()).collect()
        })
    }

    async fn peer_by_username(&self, session: &str, username: &str) -> Result<Option<Peer>> {
        let key = crate::model::normalize_username(username);
        self.with(session, |r| r.peers.by_username(&key).cloned())
    }

    async fn peer_by_phone(&self, session: &str, phone: &str) -> Result<Option<Peer>> {
        self.with(session, |r| r.peers.by_phone(phone).cloned())
    }

    async fn peer_count(&self, session: &str) -> Result<u64> {
        self.with(session, |r| r.peers.len() as u64)
    }

    async fn sent_file(&self, session: &str, key: &SentFileKey) -> Result<Option<SentFile>> {
        self.with(session, |r| r.sent_files.get(key).copied())
    }

    async fn cache_sent_file(
        &self,
        session: &str,
        key: &SentFileKey,
        file: &SentFile,
    ) -> Result<()> {
        self.with_mut(session, |r| {
            r.sent_files.insert(*key, *file);
        })
    }

    async fn acquire_lease(&self, session: &str, owner: &str, ttl: Duration) -> Result<LeaseInfo> {
        validate_lease(owner, ttl)?;
        let mut inner = self.lock();
        let now = now_ms();
        if let Some(current) = inner.leases.get(session)
            && current.owner != owner
            && current.expires_at_ms > now
        {
            return Err(Error::LeaseHeld {
                session: session.to_owned(),
                owner: current.owner.clone(),
                until_ms: current.expires_at_ms,
            });
        }
        let info = LeaseInfo {
            session: session.to_owned(),
            owner: owner.to_owned(),
            expires_at_ms: now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)),
        };
        inner.leases.insert(session.to_owned(), info.clone());
        Ok(info)
    }

    async fn release_lease(&self, session: &str, owner: &str) -> Result<bool> {
        let mut inner = self.lock();
        let now = now_ms();
        match inner.leases.get(session) {
            Some(current) if current.owner == owner => {
                let live = current.expires_at_ms > now;
                inner.leases.remove(session);
                Ok(live)
            }
            _ => Ok(false),
        }
    }
}
