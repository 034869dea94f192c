//! `Faulty`: `MemoryStore` with one deliberate mistake, to prove the suite catches it.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use session_core::lease::now_ms;
use session_core::{
    Capabilities, ChannelsWrite, DcOption, Error, HeaderWrite, ImportMode, LeaseInfo, LeaseRequest,
    MemoryStore, Peer, PeerBatch, PeerId, Result, SentFile, SentFileKey, SessionBackend,
    SessionData, SessionHeader, UpdateState, UpdateStateWrite,
};

/// The one thing a `Faulty` store gets wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Nothing: behaves exactly like `MemoryStore` (with the capabilities given).
    None,
    /// Drops `UpdateStateChange::Channel` writes.
    ForgetsChannelPts,
    /// Compares usernames case-sensitively in lookups.
    CaseSensitiveUsernames,
    /// Lets a `min` access hash overwrite a full one.
    MinOverwritesFull,
    /// Keeps a username with its first owner instead of moving it.
    NoOwnershipMove,
    /// Stores only the first 1 000 peers of a batch.
    LosesBatchTail,
    /// `delete` hides the session, and `create` brings its old data back.
    DeleteLeavesData,
    /// Writes to a missing session create it.
    CreatesImplicitly,
    /// Update-state writes read the whole state, apply the change and write it
    /// back, without a lock: concurrent partial writes overwrite each other.
    UnlockedReadModifyWrite,
}

/// `MemoryStore` with one [`Fault`].
#[derive(Debug)]
pub(crate) struct Faulty {
    inner: MemoryStore,
    fault: Fault,
    capabilities: Capabilities,
    /// `NoOwnershipMove`: (session, username key) → the first peer that claimed it.
    claims: Mutex<HashMap<(String, String), PeerId>>,
    /// `DeleteLeavesData`: what deleted sessions held.
    graveyard: Mutex<HashMap<String, SessionData>>,
}

/// Batches beyond this size lose their tail under `Fault::LosesBatchTail`.
pub(crate) const BATCH_LIMIT: usize = 1_000;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Faulty {
    /// A store with `fault`, declaring `MemoryStore`'s capabilities.
    pub(crate) fn new(fault: Fault) -> Self {
        let inner = MemoryStore::new();
        let capabilities = inner.capabilities();
        Faulty {
            inner,
            fault,
            capabilities,
            claims: Mutex::default(),
            graveyard: Mutex::default(),
        }
    }

    /// A store with `fault` that declares `capabilities`.
    pub(crate) fn with_capabilities(fault: Fault, capabilities: Capabilities) -> Self {
        Faulty {
            capabilities,
            ..Faulty::new(fault)
        }
    }

    async fn ensure(&self, session: &str) -> Result<()> {
        if self.fault == Fault::CreatesImplicitly && !self.inner.exists(session).await? {
            match self
                .inner
                .import(
                    session,
                    &SessionData::default(),
                    ImportMode::CreateOnly,
                    now_ms(),
                )
                .await
            {
                Ok(()) | Err(Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl SessionBackend for Faulty {
    fn name(&self) -> &'static str {
        "faulty"
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    async fn list(&self) -> Result<Vec<String>> {
        self.inner.list().await
    }

    async fn exists(&self, session: &str) -> Result<bool> {
        self.inner.exists(session).await
    }

    async fn delete(&self, session: &str) -> Result<bool> {
        if self.fault == Fault::DeleteLeavesData && self.inner.exists(session).await? {
            let data = self.inner.export(session).await?;
            lock(&self.graveyard).insert(session.to_owned(), data);
        }
        lock(&self.claims).retain(|(s, _), _| s != session);
        self.inner.delete(session).await
    }

    async fn export(&self, session: &str) -> Result<SessionData> {
        self.inner.export(session).await
    }

    async fn import(
        &self,
        session: &str,
        data: &SessionData,
        mode: ImportMode,
        now_ms: i64,
    ) -> Result<()> {
        if self.fault == Fault::DeleteLeavesData
            && mode == ImportMode::CreateOnly
            && *data == SessionData::default()
            && !self.inner.exists(session).await?
        {
            let old = lock(&self.graveyard).remove(session);
            if let Some(old) = old {
                return self.inner.import(session, &old, mode, now_ms).await;
            }
        }
        self.inner.import(session, data, mode, now_ms).await
    }

    async fn header(&self, session: &str) -> Result<SessionHeader> {
        self.inner.header(session).await
    }

    async fn write_header(&self, session: &str, write: &HeaderWrite) -> Result<()> {
        self.ensure(session).await?;
        self.inner.write_header(session, write).await
    }

    async fn dc_options(&self, session: &str) -> Result<Vec<DcOption>> {
        self.inner.dc_options(session).await
    }

    async fn write_dc_option(
        &self,
        session: &str,
        dc: &DcOption,
        updated_at_ms: i64,
    ) -> Result<()> {
        self.ensure(session).await?;
        self.inner.write_dc_option(session, dc, updated_at_ms).await
    }

    async fn update_state(&self, session: &str) -> Result<UpdateState> {
        self.inner.update_state(session).await
    }

    async fn write_update_state(&self, session: &str, write: &UpdateStateWrite) -> Result<()> {
        self.ensure(session).await?;
        match (self.fault, &write.channels) {
            (Fault::ForgetsChannelPts, ChannelsWrite::Set { .. }) => {
                self.inner.update_state(session).await.map(|_| ())
            }
            (Fault::UnlockedReadModifyWrite, _) => {
                let mut state = self.inner.update_state(session).await?;
                tokio::task::yield_now().await;
                write.apply_to(&mut state);
                let whole =
                    UpdateStateWrite::from_change(&session_core::UpdateStateChange::All(state));
                self.inner.write_update_state(session, &whole).await
            }
            _ => self.inner.write_update_state(session, write).await,
        }
    }

    async fn cache_peers(&self, session: &str, batch: &PeerBatch) -> Result<()> {
        self.ensure(session).await?;
        let peers = batch.peers();
        match self.fault {
            Fault::LosesBatchTail => {
                let kept = PeerBatch::new(&peers[..peers.len().min(BATCH_LIMIT)])?;
                self.inner.cache_peers(session, &kept).await
            }
            Fault::NoOwnershipMove => {
                if self.inner.exists(session).await? {
                    let mut claims = lock(&self.claims);
                    for peer in peers {
                        for key in peer.username_keys() {
                            claims.entry((session.to_owned(), key)).or_insert(peer.id);
                        }
                    }
                }
                self.inner.cache_peers(session, batch).await
            }
            Fault::MinOverwritesFull => {
                self.inner.cache_peers(session, batch).await?;
                let mut last_hash = HashMap::new();
                for peer in peers {
                    if let Some(hash) = peer.access_hash {
                        last_hash.insert(peer.id, hash);
                    }
                }
                let mut data = self.inner.export(session).await?;
                let mut changed = false;
                for stored in &mut data.peers {
                    if let Some(hash) = last_hash.get(&stored.id).filter(|h| h.min) {
                        changed |= stored.access_hash != Some(*hash);
                        stored.access_hash = Some(*hash);
                    }
                }
                if changed {
                    self.inner
                        .import(session, &data, ImportMode::Replace, now_ms())
                        .await?;
                }
                Ok(())
            }
            _ => self.inner.cache_peers(session, batch).await,
        }
    }

    async fn peers(&self, session: &str, ids: &[PeerId]) -> Result<Vec<Option<Peer>>> {
        self.inner.peers(session, ids).await
    }

    async fn peer_by_username(&self, session: &str, key: &str) -> Result<Option<Peer>> {
        match self.fault {
            Fault::CaseSensitiveUsernames => {
                // Matches the usernames as given instead of their lowercase keys.
                let found = self.inner.peer_by_username(session, key).await?;
                Ok(found.filter(|p| p.usernames.iter().flatten().any(|u| u == key)))
            }
            Fault::NoOwnershipMove => {
                let claim = lock(&self.claims)
                    .get(&(session.to_owned(), key.to_owned()))
                    .copied();
                match claim {
                    Some(first) => Ok(self.inner.peers(session, &[first]).await?.pop().flatten()),
                    None => self.inner.peer_by_username(session, key).await,
                }
            }
            _ => self.inner.peer_by_username(session, key).await,
        }
    }

    async fn peer_by_phone(&self, session: &str, phone: &str) -> Result<Option<Peer>> {
        self.inner.peer_by_phone(session, phone).await
    }

    async fn peer_count(&self, session: &str) -> Result<u64> {
        self.inner.peer_count(session).await
    }

    async fn sent_file(&self, session: &str, key: &SentFileKey) -> Result<Option<SentFile>> {
        self.inner.sent_file(session, key).await
    }

    async fn cache_sent_file(
        &self,
        session: &str,
        key: &SentFileKey,
        file: &SentFile,
    ) -> Result<()> {
        self.ensure(session).await?;
        self.inner.cache_sent_file(session, key, file).await
    }

    async fn acquire_lease(&self, session: &str, request: &LeaseRequest) -> Result<LeaseInfo> {
        self.inner.acquire_lease(session, request).await
    }

    async fn release_lease(&self, session: &str, owner: &str, now_ms: i64) -> Result<bool> {
        self.inner.release_lease(session, owner, now_ms).await
    }
}
