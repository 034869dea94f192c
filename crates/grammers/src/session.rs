//! [`GrammersSession`]: an mtsession [`Session`] behind grammers' session trait.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use grammers_session::BoxFuture;
use grammers_session::types::{DcOption as GrammersDc, PeerId as GrammersPeerId, PeerInfo};
use grammers_session::types::{UpdateState as GrammersUpdate, UpdatesState};
use session_core::{
    DcOption, LeaseGuard, LeaseInfo, Peer, PeerId, SelfUser, Session, SessionHeader,
};
use session_formats::file::{grammers_dc, grammers_known_dcs};

use crate::convert::{
    change_from_grammers, dc_from_grammers, dc_to_grammers, former_self_kind, info_from_peer,
    peer_from_info, self_info, state_to_grammers,
};
use crate::error::{Context, Error, Result};

/// What grammers reads synchronously on every request, and who is logged in:
/// loaded by [`GrammersSession::open`], kept by this value's own writes.
#[derive(Clone, Debug)]
struct Cached {
    home_dc: i32,
    /// `dc_option`'s answer for every DC that has one: each stored DC as
    /// [`grammers_dc`] completes it, and grammers' known DCs not stored.
    dcs: BTreeMap<i32, GrammersDc>,
    test_mode: bool,
    me: Option<SelfUser>,
}

impl Cached {
    fn new(header: &SessionHeader, stored: &[DcOption]) -> Self {
        let mut cached = Cached {
            home_dc: header.home_dc,
            dcs: BTreeMap::new(),
            test_mode: header.test_mode,
            me: header.self_user,
        };
        if !header.test_mode {
            for known in grammers_known_dcs() {
                cached.set_dc(known.id, None);
            }
        }
        for dc in stored {
            cached.set_dc(dc.id, Some(dc));
        }
        cached
    }

    /// Records what grammers is answered for DC `id`, stored as `stored`.
    fn set_dc(&mut self, id: i32, stored: Option<&DcOption>) {
        match grammers_dc(id, stored, self.test_mode)
            .as_ref()
            .and_then(dc_to_grammers)
        {
            Some(answer) => self.dcs.insert(id, answer),
            None => self.dcs.remove(&id),
        };
    }
}

/// An mtsession [`Session`] (of any store: memory, SQLite, sled, Redis,
/// MongoDB, PostgreSQL, MySQL) as the session of a grammers client.
///
/// `home_dc_id` and `dc_option`, which grammers calls synchronously on every
/// request, answer from a cache loaded when the value is opened; their
/// setters write through to the store first and update the cache when the
/// store accepted the write. Everything else is read from and written to the
/// store on each call. See the crate documentation for the mapping and the
/// deliberate differences from grammers' `MemorySession`.
///
/// The cache and the logged-in user are not reloaded: another process
/// writing the same session is not seen until it is opened again.
/// [`open_exclusive`](Self::open_exclusive) makes this value the session's
/// only user, which is also what grammers requires of an auth key.
pub struct GrammersSession {
    session: Session,
    cached: Mutex<Cached>,
    /// Serializes the writes that must reach the store and the cache in the
    /// same order (home DC, DC options, the logged-in user).
    writes: tokio::sync::Mutex<()>,
    lease: Mutex<Option<LeaseGuard>>,
}

impl fmt::Debug for GrammersSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cached = self.cached();
        f.debug_struct("GrammersSession")
            .field("session", &self.session.name())
            .field("backend", &self.session.store().backend_name())
            .field("home_dc", &cached.home_dc)
            .field("dcs", &cached.dcs.keys().collect::<Vec<_>>())
            .field("leased", &self.lease_slot().is_some())
            .finish()
    }
}

impl GrammersSession {
    /// Opens `session` for a grammers client: loads the home DC, the DC
    /// options, test mode and the logged-in user in one read.
    ///
    /// The session must exist (`store.open(name)` creates it; a fresh one
    /// answers as grammers' `SessionData::default()`); a missing one is
    /// `NotFound`.
    pub async fn open(session: Session) -> Result<GrammersSession> {
        let (header, dcs) = session.home().await.during("open")?;
        Ok(GrammersSession {
            session,
            cached: Mutex::new(Cached::new(&header, &dcs)),
            writes: tokio::sync::Mutex::new(()),
            lease: Mutex::new(None),
        })
    }

    /// Takes the session's lease for `owner` (see [`Session::lease`]), then
    /// opens it like [`open`](Self::open). The lease is renewed in the
    /// background while the value lives and released when it is dropped (or
    /// by [`release_lease`](Self::release_lease)).
    ///
    /// While another owner holds a live lease this fails with a
    /// [`LeaseHeld`](session_core::Error::LeaseHeld) error naming the holder
    /// and when its lease expires, instead of letting a second process use
    /// the same auth key (`AUTH_KEY_DUPLICATED`). Needs a store with leases
    /// (every backend has them); must be called inside a Tokio runtime.
    pub async fn open_exclusive(
        session: Session,
        owner: &str,
        ttl: Duration,
    ) -> Result<GrammersSession> {
        let guard = session.lease(owner, ttl).await.during("open_exclusive")?;
        let opened = GrammersSession::open(session).await?;
        *opened.lease_slot() = Some(guard);
        Ok(opened)
    }

    /// The mtsession session behind the adapter.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The state of the lease taken by [`open_exclusive`](Self::open_exclusive):
    /// `None` without one (or after [`release_lease`](Self::release_lease)),
    /// otherwise the last renewal's outcome.
    pub fn lease_status(&self) -> Option<std::result::Result<LeaseInfo, String>> {
        self.lease_slot().as_ref().map(LeaseGuard::status)
    }

    /// Stops renewing the lease and releases it now. Returns whether a live
    /// lease was released. The session stays usable, but without the lease
    /// another process may take it: call this when the client is done.
    pub async fn release_lease(&self) -> Result<bool> {
        let guard = self.lease_slot().take();
        match guard {
            Some(guard) => guard.release().await.during("release_lease"),
            None => Ok(false),
        }
    }

    fn lease_slot(&self) -> MutexGuard<'_, Option<LeaseGuard>> {
        // Only assignments happen under this lock; a poisoned one is consistent.
        self.lease.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cached(&self) -> MutexGuard<'_, Cached> {
        // Every change under this lock is a single assignment or map insert,
        // so a poisoned cache is still consistent.
        self.cached.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn write_home_dc(&self, dc_id: i32) -> Result<()> {
        let _order = self.writes.lock().await;
        self.session
            .set_home_dc(dc_id)
            .await
            .during("set_home_dc_id")?;
        self.cached().home_dc = dc_id;
        Ok(())
    }

    async fn write_dc_option(&self, dc: DcOption) -> Result<()> {
        let _order = self.writes.lock().await;
        self.session
            .set_dc_option(&dc)
            .await
            .during("set_dc_option")?;
        self.cached().set_dc(dc.id, Some(&dc));
        Ok(())
    }

    async fn read_peer(&self, id: GrammersPeerId) -> Result<Option<PeerInfo>> {
        const OP: &str = "peer";
        let me = self.cached().me;
        // PeerId::self_user() is the logged-in user the store records.
        let marked = match (id.bot_api_dialog_id(), me) {
            (Some(marked), _) => marked,
            (None, Some(me)) => me.id,
            (None, None) => return Ok(None),
        };
        let id = PeerId::from_marked(marked).during(OP)?;
        let stored = self.session.peer(id).await.during(OP)?;
        Ok(match (stored, me) {
            (Some(peer), me) => Some(info_from_peer(&peer, me)),
            // The logged-in user is known even without a peer of its own.
            (None, Some(me)) if me.id == marked => Some(self_info(me)),
            (None, _) => None,
        })
    }

    /// Caches a whole grammers batch in one `cache_peers` call (and one
    /// header write when the logged-in user changes). Should the header write
    /// fail after the batch was stored, the call fails and the logged-in user
    /// stays the previous one, in the store and in the cache.
    async fn write_peers(&self, infos: Vec<PeerInfo>) -> Result<()> {
        const OP: &str = "cache_peers";
        let mut batch: Vec<Peer> = infos
            .iter()
            .map(peer_from_info)
            .collect::<session_core::Result<_>>()
            .during(OP)?;
        let _order = self.writes.lock().await;
        let before = self.cached().me;
        // Who is logged in after the batch, in its order: a user with
        // `is_self: Some(true)` becomes the logged-in user; the logged-in
        // user seen with `is_self: Some(false)` no longer is.
        let mut after = before;
        for info in &infos {
            if let PeerInfo::User {
                id, bot, is_self, ..
            } = info
            {
                match is_self {
                    Some(true) => {
                        let was_bot = after.filter(|u| u.id == *id).map(|u| u.is_bot);
                        after = Some(SelfUser {
                            id: *id,
                            is_bot: bot.or(was_bot).unwrap_or(false),
                        });
                    }
                    Some(false) if after.is_some_and(|u| u.id == *id) => after = None,
                    _ => {}
                }
            }
        }
        // One logged-in user: those the batch named but that lost the place
        // to a later entry, and the previous one, become ordinary users.
        for (peer, info) in batch.iter_mut().zip(&infos) {
            if let PeerInfo::User { bot, .. } = info
                && peer.kind == Some(session_core::PeerKind::SelfUser)
                && after.is_none_or(|u| u.id != peer.id.marked())
            {
                peer.kind = former_self_kind(*bot);
            }
        }
        if let Some(old) = before
            && after.is_none_or(|u| u.id != old.id)
        {
            let demoted = Peer {
                kind: former_self_kind(Some(old.is_bot)),
                ..Peer::new(PeerId::user(old.id).during(OP)?)
            };
            batch.insert(0, demoted);
        }
        self.session.cache_peers(&batch).await.during(OP)?;
        if after != before {
            self.session.set_self_user(after).await.during(OP)?;
            self.cached().me = after;
        }
        Ok(())
    }

    async fn read_updates_state(&self) -> Result<UpdatesState> {
        let state = self.session.update_state().await.during("updates_state")?;
        Ok(state_to_grammers(state))
    }

    async fn write_update_state(&self, update: GrammersUpdate) -> Result<()> {
        self.session
            .set_update_state(change_from_grammers(update))
            .await
            .during("set_update_state")
    }
}

impl grammers_session::Session for GrammersSession {
    type Error = Error;

    fn home_dc_id(&self) -> Result<i32> {
        Ok(self.cached().home_dc)
    }

    fn set_home_dc_id(&self, dc_id: i32) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.write_home_dc(dc_id))
    }

    fn dc_option(&self, dc_id: i32) -> Result<Option<GrammersDc>> {
        Ok(self.cached().dcs.get(&dc_id).cloned())
    }

    fn set_dc_option(&self, dc_option: &GrammersDc) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.write_dc_option(dc_from_grammers(dc_option)))
    }

    fn peer(&self, peer: GrammersPeerId) -> BoxFuture<'_, Result<Option<PeerInfo>>> {
        Box::pin(self.read_peer(peer))
    }

    fn cache_peer(&self, peer: PeerInfo) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.write_peers(vec![peer]))
    }

    fn cache_peers(&self, peers: Vec<PeerInfo>) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.write_peers(peers))
    }

    fn updates_state(&self) -> BoxFuture<'_, Result<UpdatesState>> {
        Box::pin(self.read_updates_state())
    }

    fn set_update_state(&self, update: GrammersUpdate) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.write_update_state(update))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn futures_and_errors_are_what_grammers_needs() {
        fn send_sync_static<T: Send + Sync + 'static>() {}
        fn error<E: std::error::Error + Send + Sync + 'static>() {}
        send_sync_static::<GrammersSession>();
        error::<Error>();
    }
}
