//! [`MemoryStore`]: every session in process memory, and the reference
//! implementation of the contract.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use crate::backend::{
    HeaderWrite, ImportMode, LeaseRequest, SessionBackend, SessionHeader, UpdateStateWrite,
    decide_release, import_times,
};
use crate::error::{Error, Result};
use crate::lease::LeaseInfo;
use crate::model::{DcOption, Peer, PeerId, SentFile, SentFileKey, SessionData, UpdateState};
use crate::peers::{PeerBatch, PeerTable};
use crate::store::Capabilities;

#[derive(Clone, Debug)]
struct Record {
    header: SessionHeader,
    dcs: BTreeMap<i32, DcOption>,
    update_state: UpdateState,
    peers: PeerTable,
    sent_files: BTreeMap<SentFileKey, SentFile>,
}

impl Record {
    /// A record holding `data`, which core made canonical (no username or
    /// phone owned twice), so the rows are stored as they are.
    fn from_data(data: &SessionData, created_at_ms: i64, updated_at_ms: i64) -> Self {
        Record {
            header: SessionHeader::from_data(data, created_at_ms, updated_at_ms),
            dcs: data.dcs.iter().map(|dc| (dc.id, dc.clone())).collect(),
            update_state: data.update_state.clone(),
            peers: PeerTable::from_rows(data.peers.iter().cloned()),
            sent_files: data.sent_files.iter().copied().collect(),
        }
    }

    fn to_data(&self) -> SessionData {
        let header = &self.header;
        let mut data = SessionData {
            home_dc: header.home_dc,
            dcs: self.dcs.values().cloned().collect(),
            self_user: header.self_user,
            api_id: header.api_id,
            test_mode: header.test_mode,
            takeout_id: header.takeout_id,
            update_state: self.update_state.clone(),
            peers: self.peers.iter().collect(),
            sent_files: self.sent_files.iter().map(|(k, v)| (*k, *v)).collect(),
        };
        data.canonicalize();
        data
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

    fn lock(&self) -> MutexGuard<'_, Inner> {
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
impl SessionBackend for MemoryStore {
    fn name(&self) -> &'static str {
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

    async fn delete(&self, session: &str) -> Result<bool> {
        Ok(self.lock().sessions.remove(session).is_some())
    }

    async fn copy(&self, from: &str, to: &str, overwrite: bool, now_ms: i64) -> Result<()> {
        let mut inner = self.lock();
        let source = inner
            .sessions
            .get(from)
            .ok_or_else(|| Error::session_not_found(from))?;
        let existing = inner.sessions.get(to);
        if !overwrite && existing.is_some() {
            return Err(Error::session_exists(to));
        }
        let (created, updated) = import_times(
            existing.map(|r| (r.header.created_at_ms, r.header.updated_at_ms)),
            now_ms,
        );
        let mut record = source.clone();
        record.header.created_at_ms = created;
        record.header.updated_at_ms = updated;
        inner.sessions.insert(to.to_owned(), record);
        Ok(())
    }

    async fn export(&self, session: &str) -> Result<SessionData> {
        self.with(session, Record::to_data)
    }

    async fn import(
        &self,
        session: &str,
        data: &SessionData,
        mode: ImportMode,
        now_ms: i64,
    ) -> Result<()> {
        let mut inner = self.lock();
        let existing = inner.sessions.get(session);
        if mode == ImportMode::CreateOnly && existing.is_some() {
            return Err(Error::session_exists(session));
        }
        let (created, updated) = import_times(
            existing.map(|r| (r.header.created_at_ms, r.header.updated_at_ms)),
            now_ms,
        );
        inner.sessions.insert(
            session.to_owned(),
            Record::from_data(data, created, updated),
        );
        Ok(())
    }

    async fn header(&self, session: &str) -> Result<SessionHeader> {
        self.with(session, |r| r.header.clone())
    }

    async fn write_header(&self, session: &str, write: &HeaderWrite) -> Result<()> {
        self.with_mut(session, |r| r.header.apply(write))
    }

    async fn dc_options(&self, session: &str) -> Result<Vec<DcOption>> {
        self.with(session, |r| r.dcs.values().cloned().collect())
    }

    async fn write_dc_option(
        &self,
        session: &str,
        dc: &DcOption,
        updated_at_ms: i64,
    ) -> Result<()> {
        self.with_mut(session, |r| {
            r.dcs.insert(dc.id, dc.clone());
            r.header.apply(&HeaderWrite::at(updated_at_ms));
        })
    }

    async fn home(&self, session: &str) -> Result<(SessionHeader, Vec<DcOption>)> {
        self.with(session, |r| {
            (r.header.clone(), r.dcs.values().cloned().collect())
        })
    }

    async fn update_state(&self, session: &str) -> Result<UpdateState> {
        self.with(session, |r| r.update_state.clone())
    }

    async fn write_update_state(&self, session: &str, write: &UpdateStateWrite) -> Result<()> {
        self.with_mut(session, |r| write.apply_to(&mut r.update_state))
    }

    async fn peers(&self, session: &str, ids: &[PeerId]) -> Result<Vec<Option<Peer>>> {
        self.with(session, |r| ids.iter().map(|id| r.peers.get(*id)).collect())
    }

    async fn peer(&self, session: &str, id: PeerId) -> Result<Option<Peer>> {
        self.with(session, |r| r.peers.get(id))
    }

    fn peer_now(&self, session: &str, id: PeerId) -> Option<Result<Option<Peer>>> {
        Some(self.with(session, |r| r.peers.get(id)))
    }

    async fn peer_by_username(&self, session: &str, key: &str) -> Result<Option<Peer>> {
        self.with(session, |r| r.peers.by_username(key))
    }

    async fn peer_by_phone(&self, session: &str, phone: &str) -> Result<Option<Peer>> {
        self.with(session, |r| r.peers.by_phone(phone))
    }

    async fn peer_count(&self, session: &str) -> Result<u64> {
        self.with(session, |r| r.peers.len() as u64)
    }

    async fn cache_peers(&self, session: &str, batch: &PeerBatch) -> Result<()> {
        // The reference: the rules applied directly to the table, which
        // `PeerBatch::plan` is tested against.
        self.with_mut(session, |r| {
            for peer in batch.peers() {
                r.peers.upsert(peer);
            }
        })
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

    async fn acquire_lease(&self, session: &str, request: &LeaseRequest) -> Result<LeaseInfo> {
        let mut inner = self.lock();
        let granted = request.decide(session, inner.leases.get(session))?;
        inner.leases.insert(session.to_owned(), granted.clone());
        Ok(granted)
    }

    async fn release_lease(&self, session: &str, owner: &str, now_ms: i64) -> Result<bool> {
        let mut inner = self.lock();
        let (remove, live) = decide_release(inner.leases.get(session), owner, now_ms);
        if remove {
            inner.leases.remove(session);
        }
        Ok(live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::model::PeerKind;

    /// The lookup answered without a future agrees with the awaited one,
    /// for a stored peer, an unknown one and a missing session.
    #[tokio::test]
    async fn peer_now_answers_as_peer_does() {
        let store = MemoryStore::new();
        let data = SessionData::default();
        store
            .import("a", &data, ImportMode::CreateOnly, 1)
            .await
            .expect("import");
        let known = PeerId::user(5).expect("valid");
        let peer = Peer::new(known)
            .with_kind(PeerKind::User)
            .with_hash(9)
            .with_username("Five");
        store
            .cache_peers(
                "a",
                &PeerBatch::new(std::slice::from_ref(&peer)).expect("valid"),
            )
            .await
            .expect("cache");
        let unknown = PeerId::user(6).expect("valid");
        for id in [known, unknown] {
            let now = store.peer_now("a", id).expect("answered").expect("read");
            assert_eq!(now, store.peer("a", id).await.expect("read"));
        }
        assert_eq!(
            store.peer_now("a", known).and_then(Result::ok).flatten(),
            Some(peer)
        );
        let missing = store.peer_now("b", known).expect("answered");
        assert_eq!(
            missing.expect_err("no session").kind(),
            store.peer("b", known).await.expect_err("no session").kind()
        );
        assert_eq!(
            store.peer("b", known).await.expect_err("no session").kind(),
            ErrorKind::NotFound
        );
    }
}
