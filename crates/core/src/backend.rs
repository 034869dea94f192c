//! [`SessionBackend`]: the persistence primitives a backend implements.
//!
//! Applications never call a backend directly: they hold a [`Store`](crate::Store)
//! and [`Session`](crate::Session) handles, which validate and normalize every
//! argument once and decide every rule (peer merges, ownership moves, partial
//! update-state writes, timestamps, lease expiry) before a backend sees the
//! call. A backend only reads and writes what it is given, in the shapes
//! defined here. See [the design](https://github.com/mtsession/mtsession/blob/main/docs/design.md#8-backends-persist-core-decides).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::auth_key::AuthKey;
use crate::error::{Error, Result};
use crate::lease::LeaseInfo;
use crate::model::{
    DcOption, Peer, PeerId, SelfUser, SentFile, SentFileKey, SessionData, SessionMeta, UpdateState,
    UpdateStateChange,
};
use crate::peers::PeerBatch;
use crate::store::Capabilities;

/// The session-level fields of a session: one row, document or hash in most
/// backends, read and written as one unit.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionHeader {
    /// Home DC id.
    pub home_dc: i32,
    /// Who is logged in.
    pub self_user: Option<SelfUser>,
    /// The application's `api_id`, if known.
    pub api_id: Option<i32>,
    /// Test servers or production.
    pub test_mode: bool,
    /// Takeout session id.
    pub takeout_id: Option<i64>,
    /// When the session was created, in milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// When session-level data last changed, in milliseconds since the Unix epoch.
    pub updated_at_ms: i64,
}

impl SessionHeader {
    /// The header of a session created from `data` at `created_at_ms`,
    /// last changed at `updated_at_ms`.
    pub fn from_data(data: &SessionData, created_at_ms: i64, updated_at_ms: i64) -> Self {
        SessionHeader {
            home_dc: data.home_dc,
            self_user: data.self_user,
            api_id: data.api_id,
            test_mode: data.test_mode,
            takeout_id: data.takeout_id,
            created_at_ms,
            updated_at_ms,
        }
    }

    /// Applies a write in place: the fields it sets, and `updated_at_ms`
    /// moved forward (never back) to the write's time.
    pub fn apply(&mut self, write: &HeaderWrite) {
        if let Some(home_dc) = write.home_dc {
            self.home_dc = home_dc;
        }
        if let Some(self_user) = write.self_user {
            self.self_user = self_user;
        }
        if let Some(api_id) = write.api_id {
            self.api_id = api_id;
        }
        if let Some(test_mode) = write.test_mode {
            self.test_mode = test_mode;
        }
        if let Some(takeout_id) = write.takeout_id {
            self.takeout_id = takeout_id;
        }
        self.updated_at_ms = self.updated_at_ms.max(write.updated_at_ms);
    }

    /// The metadata part of the header.
    pub fn meta(&self) -> SessionMeta {
        SessionMeta {
            api_id: self.api_id,
            test_mode: self.test_mode,
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
        }
    }
}

/// A write to some fields of a [`SessionHeader`]. `None` leaves a field as
/// it is; `Some(None)` clears an optional one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderWrite {
    /// New home DC.
    pub home_dc: Option<i32>,
    /// New self user (or `Some(None)` to clear it).
    pub self_user: Option<Option<SelfUser>>,
    /// New api_id (or `Some(None)` to clear it).
    pub api_id: Option<Option<i32>>,
    /// New test mode.
    pub test_mode: Option<bool>,
    /// New takeout id (or `Some(None)` to clear it).
    pub takeout_id: Option<Option<i64>>,
    /// The write's time: the stored `updated_at_ms` becomes the larger of
    /// itself and this value.
    pub updated_at_ms: i64,
}

impl HeaderWrite {
    /// A write that changes nothing but the time, at `updated_at_ms`.
    pub fn at(updated_at_ms: i64) -> Self {
        HeaderWrite {
            home_dc: None,
            self_user: None,
            api_id: None,
            test_mode: None,
            takeout_id: None,
            updated_at_ms,
        }
    }
}

/// What a write does to the per-channel pts table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelsWrite {
    /// Leave the table as it is.
    Keep,
    /// Replace the whole table.
    Replace(BTreeMap<i64, i32>),
    /// Insert or replace one channel's pts.
    Set {
        /// Bare channel id.
        id: i64,
        /// New pts.
        pts: i32,
    },
    /// Remove one channel (a no-op when it is absent).
    Remove {
        /// Bare channel id.
        id: i64,
    },
}

/// A write to some fields of the [`UpdateState`], as core derives it from an
/// [`UpdateStateChange`]: a backend writes the fields that are `Some` and
/// applies `channels`, nothing else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateStateWrite {
    /// New pts.
    pub pts: Option<i32>,
    /// New qts.
    pub qts: Option<i32>,
    /// New date.
    pub date: Option<i32>,
    /// New seq.
    pub seq: Option<i32>,
    /// The change to the per-channel table.
    pub channels: ChannelsWrite,
}

impl UpdateStateWrite {
    /// The fields each kind of change sets: `All` every field and the whole
    /// channel table, `Primary` pts, date and seq, `Secondary` qts, `Channel`
    /// and `RemoveChannel` one channel.
    pub fn from_change(change: &UpdateStateChange) -> Self {
        let none = UpdateStateWrite {
            pts: None,
            qts: None,
            date: None,
            seq: None,
            channels: ChannelsWrite::Keep,
        };
        match change {
            UpdateStateChange::All(state) => UpdateStateWrite {
                pts: Some(state.pts),
                qts: Some(state.qts),
                date: Some(state.date),
                seq: Some(state.seq),
                channels: ChannelsWrite::Replace(state.channels.clone()),
            },
            UpdateStateChange::Primary { pts, date, seq } => UpdateStateWrite {
                pts: Some(*pts),
                date: Some(*date),
                seq: Some(*seq),
                ..none
            },
            UpdateStateChange::Secondary { qts } => UpdateStateWrite {
                qts: Some(*qts),
                ..none
            },
            UpdateStateChange::Channel { id, pts } => UpdateStateWrite {
                channels: ChannelsWrite::Set { id: *id, pts: *pts },
                ..none
            },
            UpdateStateChange::RemoveChannel { id } => UpdateStateWrite {
                channels: ChannelsWrite::Remove { id: *id },
                ..none
            },
        }
    }

    /// Whether the write touches the fixed fields (pts, qts, date, seq).
    pub fn sets_fields(&self) -> bool {
        self.pts.is_some() || self.qts.is_some() || self.date.is_some() || self.seq.is_some()
    }

    /// Applies the write to a state in place.
    pub fn apply_to(&self, state: &mut UpdateState) {
        if let Some(pts) = self.pts {
            state.pts = pts;
        }
        if let Some(qts) = self.qts {
            state.qts = qts;
        }
        if let Some(date) = self.date {
            state.date = date;
        }
        if let Some(seq) = self.seq {
            state.seq = seq;
        }
        match &self.channels {
            ChannelsWrite::Keep => {}
            ChannelsWrite::Replace(channels) => state.channels.clone_from(channels),
            ChannelsWrite::Set { id, pts } => {
                state.channels.insert(*id, *pts);
            }
            ChannelsWrite::Remove { id } => {
                state.channels.remove(id);
            }
        }
    }
}

/// Whether an import may replace a session that exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ImportMode {
    /// Create the session; fail with `AlreadyExists` (writing nothing) if it
    /// exists. Check and write are one atomic step: of two concurrent
    /// create-only imports of one name, exactly one succeeds.
    CreateOnly,
    /// Replace the session whole when it exists, create it otherwise.
    Replace,
}

/// The times of a session written by an import or a copy, as
/// `(created_at_ms, updated_at_ms)`: a new session is created and updated
/// `now_ms`; a replaced one keeps its creation time and moves its update
/// time forward to `now_ms`.
pub fn import_times(existing: Option<(i64, i64)>, now_ms: i64) -> (i64, i64) {
    match existing {
        Some((created, updated)) => (created, updated.max(now_ms)),
        None => (now_ms, now_ms),
    }
}

/// A lease request, with the times core computed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRequest {
    /// Who asks (validated: 1..=255 bytes).
    pub owner: String,
    /// The time of the request, in ms since the Unix epoch.
    pub now_ms: i64,
    /// When the lease will expire if granted, in ms since the Unix epoch.
    pub expires_at_ms: i64,
    /// The TTL the times were computed from (for engines with native expiry).
    pub ttl: Duration,
}

impl LeaseRequest {
    /// Decides the request against the lease stored now (`None` when there
    /// is none): granted (and the lease to store) when there is no live lease
    /// of another owner, `LeaseHeld` otherwise. Backends that read and write
    /// leases in one transaction call this between the two.
    pub fn decide(&self, session: &str, current: Option<&LeaseInfo>) -> Result<LeaseInfo> {
        if let Some(current) = current
            && current.owner != self.owner
            && current.expires_at_ms > self.now_ms
        {
            return Err(Error::LeaseHeld {
                session: session.to_owned(),
                owner: current.owner.clone(),
                until_ms: current.expires_at_ms,
            });
        }
        Ok(LeaseInfo {
            session: session.to_owned(),
            owner: self.owner.clone(),
            expires_at_ms: self.expires_at_ms,
        })
    }
}

/// What a release does with the stored lease, as core decides it: `(remove,
/// was_live)`. The lease is removed when `owner` holds it (live or expired);
/// the call reports whether it was still live at `now_ms`.
pub fn decide_release(current: Option<&LeaseInfo>, owner: &str, now_ms: i64) -> (bool, bool) {
    match current {
        Some(lease) if lease.owner == owner => (true, lease.expires_at_ms > now_ms),
        _ => (false, false),
    }
}

/// The persistence primitives of a store of named sessions.
///
/// Implement this for a new storage engine; wrap it in a
/// [`Store`](crate::Store) to use it. Fourteen of the methods are plain reads
/// and writes of one kind of data; the peer cache write
/// ([`cache_peers`](Self::cache_peers)) loads what a batch touches and applies
/// the plan core computes from it. The optional methods have defaults.
///
/// # Contract
///
/// What a backend may assume:
///
/// - Every session name was validated (1..=255 bytes of UTF-8, no NUL).
///   Every argument was validated and normalized: DC ids are in 1..=32767,
///   peers went through [`Peer::normalized`], usernames given to
///   [`peer_by_username`](Self::peer_by_username) are lowercased without
///   `@`, phones are digits, channel ids are positive, an imported
///   [`SessionData`] is canonical (sorted, no duplicate ids, no username or
///   phone owned twice). A backend neither normalizes nor re-validates.
/// - Every time (`updated_at_ms`, `now_ms`, lease expiry) comes from core.
///
/// What a backend must guarantee (the conformance suite checks each point):
///
/// - **Existence.** A session exists from an [`import`](Self::import) until
///   [`delete`](Self::delete). Every per-session read and write of a session
///   that does not exist fails with [`Error::NotFound`] (use
///   [`Error::session_not_found`]) and creates nothing, including calls with
///   empty batches.
/// - **Isolation.** Nothing written to one session is visible in another.
/// - **Import.** [`import`](Self::import) writes the whole session: the
///   header from `data` with the times of [`import_times`], and every DC,
///   channel, peer (with its username and phone index entries) and sent
///   file, replacing everything the session held. With
///   [`ImportMode::CreateOnly`] it fails with `AlreadyExists` when the
///   session exists, atomically (of two racing create-only imports exactly
///   one succeeds). With `atomic_multi_key_writes`, readers never see half an
///   import.
/// - **Header.** [`write_header`](Self::write_header) applies the fields it
///   sets and `updated_at_ms = max(stored, write.updated_at_ms)`, as
///   [`SessionHeader::apply`] does, without losing a concurrent write to
///   other fields. [`write_dc_option`](Self::write_dc_option) replaces one DC
///   whole (addresses and key) and moves `updated_at_ms` forward the same way.
/// - **Update state.** [`write_update_state`](Self::write_update_state) sets
///   exactly the fields the write sets and applies its channel change, as
///   [`UpdateStateWrite::apply_to`] does; concurrent writes to different
///   fields or channels do not overwrite each other.
/// - **Peers.** [`cache_peers`](Self::cache_peers) is one round trip or one
///   transaction per call: it loads the stored peers the batch touches
///   ([`PeerBatch::ids`], and the owners of [`PeerBatch::username_keys`] and
///   [`PeerBatch::phones`]), calls [`PeerBatch::plan`] with them, and applies
///   the resulting [`PeerPlan`](crate::peers::PeerPlan) in the same
///   transaction (or proves, with the differential test, that an
///   engine-native path stores the same result). Lookups by username and
///   phone answer from the index the plans maintain.
/// - **Order.** [`list`](Self::list) is sorted by bytes;
///   [`dc_options`](Self::dc_options) by id; [`peers`](Self::peers) answers
///   in the order asked; [`export`](Self::export) is canonical
///   ([`SessionData::canonicalize`]).
/// - **Exactness.** Every value reads back bit for bit: i64 extremes, 256-byte
///   keys, unicode text up to 1 024 bytes.
/// - **Schema.** Data written by a newer schema version is refused with
///   [`Error::UnsupportedSchemaVersion`] when the store is opened
///   ([`crate::schema::check_version`]), never read or rewritten.
/// - **Errors.** Backend failures keep their source
///   ([`Error::Backend`], [`Error::Unavailable`], [`Error::Busy`],
///   [`Error::OutcomeUnknown`]) and never contain key bytes or passwords.
/// - **Leases** (when declared): [`acquire_lease`](Self::acquire_lease) reads
///   the stored lease and stores the one [`LeaseRequest::decide`] grants, in
///   one atomic step; [`release_lease`](Self::release_lease) applies
///   [`decide_release`] the same way.
#[async_trait]
pub trait SessionBackend: Send + Sync + fmt::Debug + 'static {
    /// The backend's short name (`memory`, `sqlite`, ...), used in errors.
    fn name(&self) -> &'static str;

    /// What the backend promises.
    fn capabilities(&self) -> Capabilities;

    /// Names of every session, sorted by bytes.
    async fn list(&self) -> Result<Vec<String>>;

    /// Whether the session exists.
    async fn exists(&self, session: &str) -> Result<bool>;

    /// Deletes a session and everything in it. Returns whether it existed.
    async fn delete(&self, session: &str) -> Result<bool>;

    /// The whole session, canonical.
    async fn export(&self, session: &str) -> Result<SessionData>;

    /// Writes the whole session (see the contract). `now_ms` is the time of
    /// the write, for [`import_times`].
    async fn import(
        &self,
        session: &str,
        data: &SessionData,
        mode: ImportMode,
        now_ms: i64,
    ) -> Result<()>;

    /// The session-level fields.
    async fn header(&self, session: &str) -> Result<SessionHeader>;

    /// Writes some session-level fields.
    async fn write_header(&self, session: &str, write: &HeaderWrite) -> Result<()>;

    /// Every DC option, sorted by id.
    async fn dc_options(&self, session: &str) -> Result<Vec<DcOption>>;

    /// Inserts or replaces one DC option (addresses and key together) and
    /// moves `updated_at_ms` forward to `updated_at_ms`.
    async fn write_dc_option(&self, session: &str, dc: &DcOption, updated_at_ms: i64)
    -> Result<()>;

    /// The update state.
    async fn update_state(&self, session: &str) -> Result<UpdateState>;

    /// Writes some fields of the update state.
    async fn write_update_state(&self, session: &str, write: &UpdateStateWrite) -> Result<()>;

    /// Peers by id, in the order asked (`None` for unknown ids).
    async fn peers(&self, session: &str, ids: &[PeerId]) -> Result<Vec<Option<Peer>>>;

    /// One peer by id. The default asks [`peers`](Self::peers) for it; a
    /// backend overrides it when one lookup can skip building the list.
    async fn peer(&self, session: &str, id: PeerId) -> Result<Option<Peer>> {
        Ok(self.peers(session, &[id]).await?.pop().flatten())
    }

    /// One peer by id, answered on the calling thread without waiting, when
    /// the backend can (its data in process memory): [`Session::peer`] asks
    /// this first and awaits [`peer`](Self::peer) only on `None`, sparing the
    /// future's allocation on the hottest call a client makes. The answer
    /// must be the one `peer` would give. The default is `None`.
    ///
    /// [`Session::peer`]: crate::Session::peer
    fn peer_now(&self, session: &str, id: PeerId) -> Option<Result<Option<Peer>>> {
        let _ = (session, id);
        None
    }

    /// The owner of a username key (lowercased, without `@`).
    async fn peer_by_username(&self, session: &str, key: &str) -> Result<Option<Peer>>;

    /// The owner of a phone (digits only).
    async fn peer_by_phone(&self, session: &str, phone: &str) -> Result<Option<Peer>>;

    /// How many peers the session caches.
    async fn peer_count(&self, session: &str) -> Result<u64>;

    /// Loads what the batch touches, plans with [`PeerBatch::plan`] and
    /// applies the plan, in one transaction.
    async fn cache_peers(&self, session: &str, batch: &PeerBatch) -> Result<()>;

    /// One entry of the sent-file cache.
    async fn sent_file(&self, session: &str, key: &SentFileKey) -> Result<Option<SentFile>>;

    /// Inserts or replaces one entry of the sent-file cache.
    async fn cache_sent_file(
        &self,
        session: &str,
        key: &SentFileKey,
        file: &SentFile,
    ) -> Result<()>;

    /// Copies session `from` to `to` (never the same name: core answers
    /// that case). `NotFound` when `from` is missing; with `overwrite` false,
    /// `AlreadyExists` when `to` exists, atomically. The default exports and
    /// imports; backends override it to copy inside the engine.
    async fn copy(&self, from: &str, to: &str, overwrite: bool, now_ms: i64) -> Result<()> {
        let data = self.export(from).await?;
        let mode = if overwrite {
            ImportMode::Replace
        } else {
            ImportMode::CreateOnly
        };
        self.import(to, &data, mode, now_ms).await
    }

    /// Makes buffered writes durable; the default has nothing to flush.
    async fn flush(&self) -> Result<()> {
        Ok(())
    }

    /// The auth key of the session's home DC, if it has one: what a client
    /// reads first. The default reads [`home`](Self::home).
    async fn home_auth_key(&self, session: &str) -> Result<Option<AuthKey>> {
        let (header, dcs) = self.home(session).await?;
        Ok(dcs
            .into_iter()
            .find(|dc| dc.id == header.home_dc)
            .and_then(|dc| dc.auth_key))
    }

    /// The header and the DC options together (what a client needs to
    /// connect), ideally in one round trip. The default makes two calls.
    async fn home(&self, session: &str) -> Result<(SessionHeader, Vec<DcOption>)> {
        let header = self.header(session).await?;
        let dcs = self.dc_options(session).await?;
        Ok((header, dcs))
    }

    /// Takes or renews the session's lease (see the contract). The session
    /// need not exist. The default answers `Unsupported`.
    async fn acquire_lease(&self, session: &str, request: &LeaseRequest) -> Result<LeaseInfo> {
        let _ = (session, request);
        Err(Error::unsupported(self.name(), "leases"))
    }

    /// Gives the lease up if `owner` holds it; returns whether it was live at
    /// `now_ms`. The default answers `Unsupported`.
    async fn release_lease(&self, session: &str, owner: &str, now_ms: i64) -> Result<bool> {
        let _ = (session, owner, now_ms);
        Err(Error::unsupported(self.name(), "leases"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_writes_move_time_forward_only() {
        let mut header = SessionHeader::from_data(&SessionData::default(), 10, 20);
        let mut write = HeaderWrite::at(15);
        write.home_dc = Some(4);
        write.self_user = Some(Some(SelfUser {
            id: 1,
            is_bot: true,
        }));
        header.apply(&write);
        assert_eq!((header.home_dc, header.updated_at_ms), (4, 20));
        header.apply(&HeaderWrite::at(30));
        assert_eq!(header.updated_at_ms, 30);
        assert_eq!(header.created_at_ms, 10);
        let mut clear = HeaderWrite::at(0);
        clear.self_user = Some(None);
        header.apply(&clear);
        assert_eq!(header.self_user, None);
        assert_eq!(header.home_dc, 4);
    }

    #[test]
    fn partial_update_state_writes() {
        let mut state = UpdateState {
            pts: 1,
            qts: 2,
            date: 3,
            seq: 4,
            channels: BTreeMap::from([(7, 70)]),
        };
        UpdateStateWrite::from_change(&UpdateStateChange::Primary {
            pts: 10,
            date: 30,
            seq: 40,
        })
        .apply_to(&mut state);
        assert_eq!(
            (state.pts, state.qts, state.date, state.seq),
            (10, 2, 30, 40)
        );
        UpdateStateWrite::from_change(&UpdateStateChange::Channel { id: 8, pts: 80 })
            .apply_to(&mut state);
        UpdateStateWrite::from_change(&UpdateStateChange::RemoveChannel { id: 7 })
            .apply_to(&mut state);
        assert_eq!(state.channels, BTreeMap::from([(8, 80)]));
        let all = UpdateState::default();
        UpdateStateWrite::from_change(&UpdateStateChange::All(all.clone())).apply_to(&mut state);
        assert_eq!(state, all);
    }

    #[test]
    fn lease_decisions() {
        let request = LeaseRequest {
            owner: "a".into(),
            now_ms: 100,
            expires_at_ms: 200,
            ttl: Duration::from_millis(100),
        };
        let other = LeaseInfo {
            session: "s".into(),
            owner: "b".into(),
            expires_at_ms: 150,
        };
        assert!(matches!(
            request.decide("s", Some(&other)),
            Err(Error::LeaseHeld { until_ms: 150, .. })
        ));
        let expired = LeaseInfo {
            expires_at_ms: 100,
            ..other.clone()
        };
        assert_eq!(
            request.decide("s", Some(&expired)).expect("granted").owner,
            "a"
        );
        assert_eq!(decide_release(Some(&other), "b", 100), (true, true));
        assert_eq!(decide_release(Some(&other), "b", 150), (true, false));
        assert_eq!(decide_release(Some(&other), "a", 100), (false, false));
        assert_eq!(import_times(None, 5), (5, 5));
        assert_eq!(import_times(Some((1, 9)), 5), (1, 9));
        assert_eq!(import_times(Some((1, 3)), 5), (1, 5));
    }
}
