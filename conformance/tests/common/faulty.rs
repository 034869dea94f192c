//! `Faulty`: `MemoryStore` with one deliberate mistake, to prove the suite catches it.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use session_core::model::normalize_username;
use session_core::{
    Capabilities, DcOption, Error, LeaseInfo, MemoryStore, Peer, PeerId, Result, SelfUser,
    SentFile, SentFileKey, SessionData, SessionMeta, SessionStore, UpdateState, UpdateStateChange,
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
            match self.inner.create(session).await {
                Ok(()) | Err(Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl SessionStore for Faulty {
    fn backend_name(&self) -> &'static str {
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

    async fn create(&self, session: &str) -> Result<()> {
        if self.fault == Fault::DeleteLeavesData && !self.inner.exists(session).await? {
            let old = lock(&self.graveyard).remove(session);
            if let Some(old) = old {
                return self.inner.import(session, &old).await;
            }
        }
        self.inner.create(session).await
    }

    async fn delete(&self, session: &str) -> Result<bool> {
        if self.fault == Fault::DeleteLeavesData && self.inner.exists(session).await? {
            let data = self.inner.export(session).await?;
            lock(&self.graveyard).insert(session.to_owned(), data);
        }
        lock(&self.claims).retain(|(s, _), _| s != session);
        self.inner.delete(session).await
    }

    async fn copy(&self, from: &str, to: &str, overwrite: bool) -> Result<()> {
        self.inner.copy(from, to, overwrite).await
    }

    async fn flush(&self) -> Result<()> {
        self.inner.flush().await
    }

    async fn export(&self, session: &str) -> Result<SessionData> {
        self.inner.export(session).await
    }

    async fn import(&self, session: &str, data: &SessionData) -> Result<()> {
        self.inner.import(session, data).await
    }

    async fn home_dc(&self, session: &str) -> Result<i32> {
        self.inner.home_dc(session).await
    }

    async fn set_home_dc(&self, session: &str, dc_id: i32) -> Result<()> {
        self.ensure(session).await?;
        self.inner.set_home_dc(session, dc_id).await
    }

    async fn dc_options(&self, session: &str) -> Result<Vec<DcOption>> {
        self.inner.dc_options(session).await
    }

    async fn set_dc_option(&self, session: &str, dc: &DcOption) -> Result<()> {
        self.ensure(session).await?;
        self.inner.set_dc_option(session, dc).await
    }

    async fn self_user(&self, session: &str) -> Result<Option<SelfUser>> {
        self.inner.self_user(session).await
    }

    async fn set_self_user(&self, session: &str, user: Option<SelfUser>) -> Result<()> {
        self.ensure(session).await?;
        self.inner.set_self_user(session, user).await
    }

    async fn metadata(&self, session: &str) -> Result<SessionMeta> {
        self.inner.metadata(session).await
    }

    async fn set_metadata(
        &self,
        session: &str,
        api_id: Option<i32>,
        test_mode: bool,
    ) -> Result<()> {
        self.ensure(session).await?;
        self.inner.set_metadata(session, api_id, test_mode).await
    }

    async fn takeout_id(&self, session: &str) -> Result<Option<i64>> {
        self.inner.takeout_id(session).await
    }

    async fn set_takeout_id(&self, session: &str, takeout_id: Option<i64>) -> Result<()> {
        self.ensure(session).await?;
        self.inner.set_takeout_id(session, takeout_id).await
    }

    async fn update_state(&self, session: &str) -> Result<UpdateState> {
        self.inner.update_state(session).await
    }

    async fn set_update_state(&self, session: &str, change: &UpdateStateChange) -> Result<()> {
        self.ensure(session).await?;
        match (self.fault, change) {
            (Fault::ForgetsChannelPts, UpdateStateChange::Channel { .. }) => {
                self.inner.update_state(session).await.map(|_| ())
            }
            (Fault::UnlockedReadModifyWrite, _) => {
                let mut state = self.inner.update_state(session).await?;
                tokio::task::yield_now().await;
                state.apply(change);
                self.inner
                    .set_update_state(session, &UpdateStateChange::All(state))
                    .await
            }
            _ => self.inner.set_update_state(session, change).await,
        }
    }

    async fn cache_peers(&self, session: &str, peers: &[Peer]) -> Result<()> {
        self.ensure(session).await?;
        match self.fault {
            Fault::LosesBatchTail => {
                self.inner
                    .cache_peers(session, &peers[..peers.len().min(BATCH_LIMIT)])
                    .await
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
                self.inner.cache_peers(session, peers).await
            }
            Fault::MinOverwritesFull => {
                self.inner.cache_peers(session, peers).await?;
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
                    self.inner.import(session, &data).await?;
                }
                Ok(())
            }
            _ => self.inner.cache_peers(session, peers).await,
        }
    }

    async fn peers(&self, session: &str, ids: &[PeerId]) -> Result<Vec<Option<Peer>>> {
        self.inner.peers(session, ids).await
    }

    async fn peer_by_username(&self, session: &str, username: &str) -> Result<Option<Peer>> {
        match self.fault {
            Fault::CaseSensitiveUsernames => {
                let asked = username.strip_prefix('@').unwrap_or(username);
                let found = self.inner.peer_by_username(session, username).await?;
                Ok(found.filter(|p| p.usernames.iter().flatten().any(|u| u == asked)))
            }
            Fault::NoOwnershipMove => {
                let claim = lock(&self.claims)
                    .get(&(session.to_owned(), normalize_username(username)))
                    .copied();
                match claim {
                    Some(first) => Ok(self.inner.peers(session, &[first]).await?.pop().flatten()),
                    None => self.inner.peer_by_username(session, username).await,
                }
            }
            _ => self.inner.peer_by_username(session, username).await,
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

    async fn acquire_lease(&self, session: &str, owner: &str, ttl: Duration) -> Result<LeaseInfo> {
        self.inner.acquire_lease(session, owner, ttl).await
    }

    async fn release_lease(&self, session: &str, owner: &str) -> Result<bool> {
        self.inner.release_lease(session, owner).await
    }
}
