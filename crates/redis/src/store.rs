//! [`RedisStore`]: the persistence primitives of [`SessionBackend`] on Redis.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::{Cmd, FromRedisValue, Pipeline, RedisError, Script, ScriptInvocation, Value};
use session_core::backend::{decide_release, import_times};
use session_core::{
    Capabilities, ChannelsWrite, DcOption, Error, HeaderWrite, ImportMode, LeaseInfo, LeaseRequest,
    OpenMode, Peer, PeerBatch, PeerId, Result, SelfUser, SentFile, SentFileKey, SessionBackend,
    SessionData, SessionHeader, UpdateState, UpdateStateWrite,
};

use crate::codec::{
    decode_dc, decode_file, decode_file_key, decode_peer, encode_dc, encode_file, encode_file_key,
    encode_peer, parse_num, parse_opt,
};
use crate::error::{Access, BACKEND, Place, call_error, connect_error, corrupt};
use crate::keys::{CHANNELS, DCS, FILES, Keys, META, PEERS, PHONE, STATE, UNAME};
use crate::link::{Link, Live};
use crate::scripts;

/// The schema version this build writes and the newest it reads.
pub const SCHEMA_VERSION: i64 = 1;

/// Field names of the `meta` hash.
pub(crate) mod field {
    pub(crate) const HOME_DC: &str = "home_dc";
    pub(crate) const SELF_ID: &str = "self_id";
    pub(crate) const SELF_BOT: &str = "self_bot";
    pub(crate) const API_ID: &str = "api_id";
    pub(crate) const TEST_MODE: &str = "test_mode";
    pub(crate) const TAKEOUT: &str = "takeout";
    pub(crate) const CREATED: &str = "created";
    pub(crate) const UPDATED: &str = "updated";
}

/// How many times a write that found its inputs changed under it (a peer
/// batch whose context moved, an import racing another, a lease taken
/// meanwhile) is computed again before the call gives up with
/// [`Error::Busy`].
pub(crate) const MAX_ATTEMPTS: u32 = 64;

type Bytes = Vec<u8>;

fn bytes(text: impl AsRef<[u8]>) -> Bytes {
    text.as_ref().to_vec()
}

fn decimal(n: impl ToString) -> Bytes {
    n.to_string().into_bytes()
}

/// One hash changed by the [`scripts::WRITE`] script.
struct HashWrite {
    which: usize,
    clear: bool,
    del: Vec<Bytes>,
    set: Vec<(Bytes, Bytes)>,
}

impl HashWrite {
    fn new(which: usize) -> Self {
        HashWrite {
            which,
            clear: false,
            del: Vec::new(),
            set: Vec::new(),
        }
    }

    fn set(mut self, field: impl AsRef<[u8]>, value: Bytes) -> Self {
        self.set.push((bytes(field), value));
        self
    }

    /// Sets `field` to `value`, or deletes it when `value` is `None`.
    fn set_or_delete(&mut self, field: &str, value: Option<Bytes>) {
        match value {
            Some(v) => self.set.push((bytes(field), v)),
            None => self.del.push(bytes(field)),
        }
    }
}

/// What the store knows about itself: where it is, under which prefix, and
/// whether it may write.
pub(crate) struct Inner {
    pub(crate) link: Arc<Link>,
    pub(crate) keys: Keys,
    pub(crate) place: Place,
    pub(crate) mode: OpenMode,
}

/// Sessions in Redis, under a key prefix: the [`SessionBackend`] of
/// session-redis. Wrap it in a [`session_core::Store`] (or call
/// [`BackendExt::open`](session_core::BackendExt::open)) to use it.
///
/// Cheap to clone; every clone shares one multiplexed connection, made when
/// a call needs it and made again after it fails. See the crate docs for
/// the key layout and what each error means.
#[derive(Clone)]
pub struct RedisStore {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.inner.place.url)
            .field("prefix", &self.inner.keys.prefix())
            .field("mode", &self.inner.mode)
            .finish()
    }
}

impl RedisStore {
    /// The key prefix.
    pub fn prefix(&self) -> &str {
        self.inner.keys.prefix()
    }

    /// The server URL with its password replaced by `***`.
    pub fn redacted_url(&self) -> &str {
        &self.inner.place.url
    }

    /// How the store was opened.
    pub fn mode(&self) -> OpenMode {
        self.inner.mode
    }

    pub(crate) fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    pub(crate) fn key(&self, session: &str, which: usize) -> String {
        self.inner.keys.session(session, which)
    }

    /// Refuses writes on a store opened [`OpenMode::ReadOnly`].
    pub(crate) fn writable(&self) -> Result<()> {
        if self.inner.mode.writes() {
            Ok(())
        } else {
            Err(Error::unsupported(
                BACKEND,
                "writes to a store opened read-only",
            ))
        }
    }

    async fn live(&self) -> Result<Live> {
        self.inner
            .link
            .connection()
            .await
            .map_err(|e| connect_error(e, &self.inner.place))
    }

    fn settle<T>(
        &self,
        generation: u64,
        result: std::result::Result<T, RedisError>,
        access: Access,
    ) -> Result<T> {
        result.map_err(|e| {
            if e.is_unrecoverable_error() || (e.is_io_error() && !e.is_timeout()) {
                self.inner.link.forget(generation);
            }
            call_error(e, &self.inner.place, access)
        })
    }

    pub(crate) async fn query<T: FromRedisValue>(&self, access: Access, cmd: &Cmd) -> Result<T> {
        let mut live = self.live().await?;
        let result = cmd.query_async(&mut live.connection).await;
        self.settle(live.generation, result, access)
    }

    pub(crate) async fn query_pipeline<T: FromRedisValue>(
        &self,
        access: Access,
        pipeline: &Pipeline,
    ) -> Result<T> {
        let mut live = self.live().await?;
        let result = pipeline.query_async(&mut live.connection).await;
        self.settle(live.generation, result, access)
    }

    pub(crate) async fn invoke<T: FromRedisValue>(
        &self,
        access: Access,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T> {
        let mut live = self.live().await?;
        let result = invocation.invoke_async(&mut live.connection).await;
        self.settle(live.generation, result, access)
    }

    /// Sends an `EVALSHA` built by [`scripts::call`] for `script`, loading
    /// the script and sending it again when the server does not have it
    /// (as [`ScriptInvocation`] does).
    pub(crate) async fn eval<T: FromRedisValue>(
        &self,
        access: Access,
        script: &Script,
        cmd: &Cmd,
    ) -> Result<T> {
        let mut live = self.live().await?;
        let mut result = cmd.query_async(&mut live.connection).await;
        if let Err(err) = &result
            && err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
        {
            result = match script.load_async(&mut live.connection).await {
                Ok(_) => cmd.query_async(&mut live.connection).await,
                Err(err) => Err(err),
            };
        }
        self.settle(live.generation, result, access)
    }

    /// Runs the guarded WRITE script; `NotFound` if the session is missing.
    async fn write(
        &self,
        session: &str,
        updated_at_ms: Option<i64>,
        writes: &[HashWrite],
    ) -> Result<()> {
        self.writable()?;
        let mut inv = scripts::WRITE.prepare_invoke();
        inv.key(self.key(session, META));
        inv.arg(updated_at_ms.map(|t| t.to_string()).unwrap_or_default());
        for w in writes {
            inv.key(self.key(session, w.which));
            inv.arg(if w.clear { "1" } else { "0" });
            inv.arg(w.del.len());
            for d in &w.del {
                inv.arg(d.as_slice());
            }
            inv.arg(w.set.len());
            for (f, v) in &w.set {
                inv.arg(f.as_slice()).arg(v.as_slice());
            }
        }
        let done: i64 = self.invoke(Access::Write, &inv).await?;
        if done == 1 {
            Ok(())
        } else {
            Err(Error::session_not_found(session))
        }
    }

    /// Reads whole hashes of an existing session in one script call,
    /// atomically with the existence check.
    async fn read_hashes<const N: usize>(
        &self,
        session: &str,
        which: [usize; N],
    ) -> Result<[HashMap<Bytes, Bytes>; N]> {
        let mut inv = scripts::READ_HASHES.prepare_invoke();
        inv.key(self.key(session, META));
        for w in which {
            inv.key(self.key(session, w));
        }
        let reply: Vec<Value> = self.invoke(Access::Read, &inv).await?;
        let mut reply = reply.into_iter();
        match reply.next() {
            Some(Value::Int(1)) => {}
            Some(Value::Int(0)) => return Err(Error::session_not_found(session)),
            other => return Err(unexpected("read", other.as_ref())),
        }
        let maps = reply
            .map(|v| {
                redis::from_redis_value::<HashMap<Bytes, Bytes>>(v)
                    .map_err(|_| unexpected("read", Some(&Value::Nil)))
            })
            .collect::<Result<Vec<_>>>()?;
        let found = maps.len();
        maps.try_into().map_err(|_| {
            Error::backend(
                BACKEND,
                format!("the read script answered {found} hashes for {N}"),
            )
        })
    }

    /// Reads fields of one hash of an existing session, in the order asked.
    async fn fields(
        &self,
        session: &str,
        which: usize,
        fields: &[Bytes],
    ) -> Result<Vec<Option<Bytes>>> {
        let mut inv = scripts::READ_FIELDS.prepare_invoke();
        inv.key(self.key(session, META))
            .key(self.key(session, which));
        for f in fields {
            inv.arg(f.as_slice());
        }
        let reply: Vec<Value> = self.invoke(Access::Read, &inv).await?;
        let mut reply = reply.into_iter();
        match reply.next() {
            Some(Value::Int(1)) => {}
            Some(Value::Int(0)) => return Err(Error::session_not_found(session)),
            other => return Err(unexpected("field read", other.as_ref())),
        }
        let values = match reply.next() {
            Some(v) => redis::from_redis_value::<Vec<Option<Bytes>>>(v)
                .map_err(|_| unexpected("field read", Some(&Value::Nil)))?,
            None => Vec::new(),
        };
        if values.len() != fields.len() {
            return Err(Error::backend(
                BACKEND,
                format!(
                    "the read script answered {} values for {} fields",
                    values.len(),
                    fields.len()
                ),
            ));
        }
        Ok(values)
    }

    fn decode_dcs(&self, session: &str, map: &HashMap<Bytes, Bytes>) -> Result<Vec<DcOption>> {
        let key = self.key(session, DCS);
        let mut dcs = map
            .iter()
            .map(|(f, v)| decode_dc(&key, f, v))
            .collect::<Result<Vec<_>>>()?;
        dcs.sort_by_key(|dc| dc.id);
        Ok(dcs)
    }

    fn decode_state(
        &self,
        session: &str,
        state: &HashMap<Bytes, Bytes>,
        channels: &HashMap<Bytes, Bytes>,
    ) -> Result<UpdateState> {
        let skey = self.key(session, STATE);
        let get = |name: &str| -> Result<i32> {
            Ok(parse_opt(&skey, name, state.get(name.as_bytes()).map(Vec::as_slice))?.unwrap_or(0))
        };
        let ckey = self.key(session, CHANNELS);
        let channels = channels
            .iter()
            .map(|(id, pts)| {
                let id: i64 = parse_num(&ckey, "(field)", id)?;
                let pts: i32 = parse_num(&ckey, &id.to_string(), pts)?;
                Ok((id, pts))
            })
            .collect::<Result<_>>()?;
        Ok(UpdateState {
            pts: get("pts")?,
            qts: get("qts")?,
            date: get("date")?,
            seq: get("seq")?,
            channels,
        })
    }

    fn decode_header(&self, session: &str, meta: &HashMap<Bytes, Bytes>) -> Result<SessionHeader> {
        if meta.is_empty() {
            return Err(Error::session_not_found(session));
        }
        let key = self.key(session, META);
        let get = |name: &str| meta.get(name.as_bytes()).map(Vec::as_slice);
        let home_dc: i32 = parse_opt(&key, field::HOME_DC, get(field::HOME_DC))?
            .ok_or_else(|| corrupt(&key, "the home_dc field is missing"))?;
        let self_user = match parse_opt::<i64>(&key, field::SELF_ID, get(field::SELF_ID))? {
            None => None,
            Some(id) => Some(SelfUser {
                id,
                is_bot: parse_opt::<u8>(&key, field::SELF_BOT, get(field::SELF_BOT))?.unwrap_or(0)
                    != 0,
            }),
        };
        Ok(SessionHeader {
            home_dc,
            self_user,
            api_id: parse_opt(&key, field::API_ID, get(field::API_ID))?,
            test_mode: parse_opt::<u8>(&key, field::TEST_MODE, get(field::TEST_MODE))?.unwrap_or(0)
                != 0,
            takeout_id: parse_opt(&key, field::TAKEOUT, get(field::TAKEOUT))?,
            created_at_ms: parse_opt(&key, field::CREATED, get(field::CREATED))?.unwrap_or(0),
            updated_at_ms: parse_opt(&key, field::UPDATED, get(field::UPDATED))?.unwrap_or(0),
        })
    }

    /// The stored `(created, updated)` text of a session, if it exists.
    async fn stored_times(&self, session: &str) -> Result<Option<(Bytes, Bytes)>> {
        let values: Vec<Option<Bytes>> = self
            .query(
                Access::Read,
                redis::cmd("HMGET")
                    .arg(self.key(session, META))
                    .arg(field::CREATED)
                    .arg(field::UPDATED),
            )
            .await?;
        Ok(match values.as_slice() {
            [Some(created), updated] => {
                Some((created.clone(), updated.clone().unwrap_or_default()))
            }
            _ => None,
        })
    }

    /// What a replacing write expects of the target: the `EXPECT` arguments
    /// of the scripts, and the times core gives the written session.
    fn expectation(
        &self,
        session: &str,
        stored: Option<&(Bytes, Bytes)>,
        now_ms: i64,
    ) -> Result<(Vec<Bytes>, (i64, i64))> {
        match stored {
            None => Ok((
                vec![bytes("absent"), Vec::new(), Vec::new()],
                import_times(None, now_ms),
            )),
            Some((created, updated)) => {
                let key = self.key(session, META);
                let c: i64 = parse_num(&key, field::CREATED, created)?;
                let u: i64 = if updated.is_empty() {
                    0
                } else {
                    parse_num(&key, field::UPDATED, updated)?
                };
                Ok((
                    vec![bytes("present"), created.clone(), updated.clone()],
                    import_times(Some((c, u)), now_ms),
                ))
            }
        }
    }

    /// Writes `session` whole, from `source`, until what the script expects
    /// of the target holds: the target's stored times are read, core's
    /// [`import_times`] computes the new ones, and the script writes only if
    /// the target is still as read (else it answers what it found, and the
    /// times are computed again). A create-only write expects the target
    /// absent and fails with `AlreadyExists` when it is not, in one script.
    async fn replace_guarded(
        &self,
        session: &str,
        source: Source<'_>,
        create_only: bool,
        now_ms: i64,
    ) -> Result<()> {
        let started = Instant::now();
        let mut stored = if create_only {
            None
        } else {
            self.stored_times(session).await?
        };
        for _ in 0..MAX_ATTEMPTS {
            let (expect, times) = self.expectation(session, stored.as_ref(), now_ms)?;
            match self.write_whole(session, &source, &expect, times).await? {
                Found::Written => return Ok(()),
                Found::Present(..) if create_only => return Err(Error::session_exists(session)),
                Found::Absent => stored = None,
                Found::Present(created, updated) => stored = Some((created, updated)),
            }
        }
        Err(Error::Busy {
            what: format!("redis session {session:?} (written by another client meanwhile)"),
            waited: started.elapsed(),
            source: None,
        })
    }

    /// One run of the `PUT` or `COPY` script.
    async fn write_whole(
        &self,
        session: &str,
        source: &Source<'_>,
        expect: &[Bytes],
        (created, updated): (i64, i64),
    ) -> Result<Found> {
        match source {
            Source::Data { data, hashes } => {
                let mut inv = scripts::PUT.prepare_invoke();
                inv.key(self.key(session, META))
                    .key(self.keys().sessions())
                    .key(self.keys().schema());
                for (which, _) in hashes.iter() {
                    inv.key(self.key(session, *which));
                }
                inv.arg(session);
                for e in expect {
                    inv.arg(e.as_slice());
                }
                inv.arg(SCHEMA_VERSION);
                let meta = meta_pairs(data, created, updated);
                for pairs in std::iter::once(&meta).chain(hashes.iter().map(|(_, p)| p)) {
                    inv.arg(pairs.len());
                    for (f, v) in pairs {
                        inv.arg(f.as_slice()).arg(v.as_slice());
                    }
                }
                let reply: Vec<Value> = self.invoke(Access::Write, &inv).await?;
                found("import", reply)
            }
            Source::Session(from) => {
                let mut inv = scripts::COPY.prepare_invoke();
                for k in self
                    .keys()
                    .session_all(from)
                    .into_iter()
                    .chain(self.keys().session_all(session))
                {
                    inv.key(k);
                }
                inv.key(self.keys().sessions()).key(self.keys().schema());
                inv.arg(session);
                for e in expect {
                    inv.arg(e.as_slice());
                }
                inv.arg(created).arg(updated).arg(SCHEMA_VERSION);
                let reply: Vec<Value> = self.invoke(Access::Write, &inv).await?;
                if matches!(reply.as_slice(), [Value::Int(-1)]) {
                    return Err(Error::session_not_found(from));
                }
                found("copy", reply)
            }
        }
    }
}

/// What a whole-session write copies from.
enum Source<'a> {
    /// Imported data, encoded.
    Data {
        data: &'a SessionData,
        hashes: &'a [(usize, Vec<(Bytes, Bytes)>)],
    },
    /// Another session of the store, copied inside the server.
    Session(&'a str),
}

/// What a replacing script found.
enum Found {
    Written,
    Absent,
    Present(Bytes, Bytes),
}

fn found(script: &str, reply: Vec<Value>) -> Result<Found> {
    let mut it = reply.into_iter();
    match (it.next(), it.next(), it.next()) {
        (Some(Value::Int(1)), None, None) => Ok(Found::Written),
        (Some(Value::Int(0)), None, None) => Ok(Found::Absent),
        (Some(Value::Int(0)), Some(created), Some(updated)) => Ok(Found::Present(
            text_of(script, created)?,
            text_of(script, updated)?,
        )),
        (other, _, _) => Err(unexpected(script, other.as_ref())),
    }
}

fn text_of(script: &str, value: Value) -> Result<Bytes> {
    match value {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.into_bytes()),
        Value::Nil => Ok(Vec::new()),
        other => Err(unexpected(script, Some(&other))),
    }
}

/// A script answered something it never answers. The message names only
/// the reply's shape: replies can hold key material.
pub(crate) fn unexpected(script: &str, reply: Option<&Value>) -> Error {
    let shape = match reply {
        None => "nothing",
        Some(Value::Nil) => "a value of the wrong type",
        Some(Value::Int(_)) => "an integer",
        Some(Value::BulkString(_)) => "a string",
        Some(Value::Array(_)) => "an array",
        Some(Value::SimpleString(_) | Value::Okay) => "a status",
        Some(_) => "a value of another type",
    };
    Error::backend(
        BACKEND,
        format!("unexpected reply from the {script} script: {shape}"),
    )
}

/// The `meta` pairs of a session written whole.
fn meta_pairs(data: &SessionData, created: i64, updated: i64) -> Vec<(Bytes, Bytes)> {
    let mut meta = vec![
        (bytes(field::HOME_DC), decimal(data.home_dc)),
        (bytes(field::TEST_MODE), decimal(u8::from(data.test_mode))),
        (bytes(field::CREATED), decimal(created)),
        (bytes(field::UPDATED), decimal(updated)),
    ];
    if let Some(user) = data.self_user {
        meta.push((bytes(field::SELF_ID), decimal(user.id)));
        meta.push((bytes(field::SELF_BOT), decimal(u8::from(user.is_bot))));
    }
    if let Some(api_id) = data.api_id {
        meta.push((bytes(field::API_ID), decimal(api_id)));
    }
    if let Some(takeout) = data.takeout_id {
        meta.push((bytes(field::TAKEOUT), decimal(takeout)));
    }
    meta
}

/// Every hash of a session written whole, except `meta`, in
/// `keys::SESSION_SUFFIXES` order: the data as core gave it (canonical, every
/// username and phone owned once), with the index entries its peers list.
fn session_pairs(data: &SessionData) -> [(usize, Vec<(Bytes, Bytes)>); 7] {
    let dcs = data
        .dcs
        .iter()
        .map(|dc| (decimal(dc.id), encode_dc(dc)))
        .collect();
    let st = &data.update_state;
    let state = vec![
        (bytes("pts"), decimal(st.pts)),
        (bytes("qts"), decimal(st.qts)),
        (bytes("date"), decimal(st.date)),
        (bytes("seq"), decimal(st.seq)),
    ];
    let channels = st
        .channels
        .iter()
        .map(|(id, pts)| (decimal(id), decimal(pts)))
        .collect();
    let mut peers = Vec::with_capacity(data.peers.len());
    let mut unames = Vec::new();
    let mut phones = Vec::new();
    for peer in &data.peers {
        let id = decimal(peer.id.marked());
        for key in peer.username_keys() {
            unames.push((bytes(key), id.clone()));
        }
        if let Some(phone) = &peer.phone {
            phones.push((bytes(phone), id.clone()));
        }
        peers.push((id, encode_peer(peer).into_bytes()));
    }
    let files = data
        .sent_files
        .iter()
        .map(|(k, f)| (encode_file_key(k), encode_file(f)))
        .collect();
    [
        (DCS, dcs),
        (STATE, state),
        (CHANNELS, channels),
        (PEERS, peers),
        (UNAME, unames),
        (PHONE, phones),
        (FILES, files),
    ]
}

/// Parses a stored lease, `{expires_ms}:{owner}`.
fn parse_lease(key: &str, session: &str, raw: &[u8]) -> Result<LeaseInfo> {
    let text = std::str::from_utf8(raw).map_err(|_| corrupt(key, "the lease is not UTF-8 text"))?;
    let (expires, owner) = text
        .split_once(':')
        .ok_or_else(|| corrupt(key, "the lease is not {expires_ms}:{owner}"))?;
    Ok(LeaseInfo {
        session: session.to_owned(),
        owner: owner.to_owned(),
        expires_at_ms: parse_num(key, "(expiry)", expires.as_bytes())?,
    })
}

/// The Redis expiry of a lease key: twice the lease's TTL. Whether a lease
/// is live is decided by core from its `expires_at_ms`; the key's own expiry
/// only removes leases nobody released.
fn lease_key_expiry_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis())
        .unwrap_or(i64::MAX / 2)
        .saturating_mul(2)
        .max(1)
}

impl RedisStore {
    /// One compare-and-set of the lease key: `Ok(None)` when it stored
    /// `new` (or deleted the key for an empty `new`), `Ok(Some(now))` with
    /// the value found instead.
    async fn swap_lease(
        &self,
        key: &str,
        expected: &[u8],
        new: &[u8],
        expiry_ms: i64,
    ) -> Result<Option<Bytes>> {
        let mut inv = scripts::LEASE_SWAP.prepare_invoke();
        inv.key(key).arg(expected).arg(new).arg(expiry_ms);
        let reply: Vec<Value> = self.invoke(Access::Write, &inv).await?;
        let mut it = reply.into_iter();
        match (it.next(), it.next()) {
            (Some(Value::Int(1)), None) => Ok(None),
            (Some(Value::Int(0)), Some(now)) => Ok(Some(text_of("lease", now)?)),
            (other, _) => Err(unexpected("lease", other.as_ref())),
        }
    }

    async fn read_lease(&self, key: &str) -> Result<Bytes> {
        let raw: Option<Bytes> = self.query(Access::Read, redis::cmd("GET").arg(key)).await?;
        Ok(raw.unwrap_or_default())
    }
}

#[async_trait]
impl SessionBackend for RedisStore {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
            .durable(true)
            .shared_between_processes(true)
            .atomic_multi_key_writes(true)
            .leases(true)
    }

    async fn list(&self) -> Result<Vec<String>> {
        let key = self.keys().sessions();
        let names: Vec<Bytes> = self
            .query(Access::Read, redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1))
            .await?;
        let mut names = names
            .into_iter()
            .map(|n| String::from_utf8(n).map_err(|_| corrupt(&key, "a session name is not UTF-8")))
            .collect::<Result<Vec<_>>>()?;
        // Members share score 0, so Redis already sorts them by bytes;
        // sorting again costs little and does not depend on that.
        names.sort();
        Ok(names)
    }

    async fn exists(&self, session: &str) -> Result<bool> {
        self.query(
            Access::Read,
            redis::cmd("EXISTS").arg(self.key(session, META)),
        )
        .await
    }

    async fn delete(&self, session: &str) -> Result<bool> {
        self.writable()?;
        let mut inv = scripts::DELETE.prepare_invoke();
        for k in self.keys().session_all(session) {
            inv.key(k);
        }
        inv.key(self.keys().sessions()).arg(session);
        let existed: i64 = self.invoke(Access::Write, &inv).await?;
        Ok(existed == 1)
    }

    async fn copy(&self, from: &str, to: &str, overwrite: bool, now_ms: i64) -> Result<()> {
        self.writable()?;
        self.replace_guarded(to, Source::Session(from), !overwrite, now_ms)
            .await
    }

    async fn export(&self, session: &str) -> Result<SessionData> {
        let [meta, dcs, state, channels, peers, files] = self
            .read_hashes(session, [META, DCS, STATE, CHANNELS, PEERS, FILES])
            .await?;
        let header = self.decode_header(session, &meta)?;
        let pkey = self.key(session, PEERS);
        let fkey = self.key(session, FILES);
        let mut data = SessionData {
            home_dc: header.home_dc,
            dcs: self.decode_dcs(session, &dcs)?,
            self_user: header.self_user,
            api_id: header.api_id,
            test_mode: header.test_mode,
            takeout_id: header.takeout_id,
            update_state: self.decode_state(session, &state, &channels)?,
            peers: peers
                .values()
                .map(|raw| decode_peer(&pkey, raw))
                .collect::<Result<_>>()?,
            sent_files: files
                .iter()
                .map(|(k, v)| Ok((decode_file_key(&fkey, k)?, decode_file(&fkey, v)?)))
                .collect::<Result<_>>()?,
        };
        data.canonicalize();
        Ok(data)
    }

    async fn import(
        &self,
        session: &str,
        data: &SessionData,
        mode: ImportMode,
        now_ms: i64,
    ) -> Result<()> {
        self.writable()?;
        let hashes = session_pairs(data);
        let source = Source::Data {
            data,
            hashes: &hashes,
        };
        self.replace_guarded(session, source, mode == ImportMode::CreateOnly, now_ms)
            .await
    }

    async fn header(&self, session: &str) -> Result<SessionHeader> {
        let meta: HashMap<Bytes, Bytes> = self
            .query(
                Access::Read,
                redis::cmd("HGETALL").arg(self.key(session, META)),
            )
            .await?;
        self.decode_header(session, &meta)
    }

    async fn write_header(&self, session: &str, write: &HeaderWrite) -> Result<()> {
        let mut meta = HashWrite::new(META);
        if let Some(home_dc) = write.home_dc {
            meta.set.push((bytes(field::HOME_DC), decimal(home_dc)));
        }
        if let Some(user) = write.self_user {
            meta.set_or_delete(field::SELF_ID, user.map(|u| decimal(u.id)));
            meta.set_or_delete(field::SELF_BOT, user.map(|u| decimal(u8::from(u.is_bot))));
        }
        if let Some(api_id) = write.api_id {
            meta.set_or_delete(field::API_ID, api_id.map(decimal));
        }
        if let Some(test_mode) = write.test_mode {
            meta.set
                .push((bytes(field::TEST_MODE), decimal(u8::from(test_mode))));
        }
        if let Some(takeout) = write.takeout_id {
            meta.set_or_delete(field::TAKEOUT, takeout.map(decimal));
        }
        self.write(session, Some(write.updated_at_ms), &[meta])
            .await
    }

    async fn dc_options(&self, session: &str) -> Result<Vec<DcOption>> {
        let [dcs] = self.read_hashes(session, [DCS]).await?;
        self.decode_dcs(session, &dcs)
    }

    async fn write_dc_option(
        &self,
        session: &str,
        dc: &DcOption,
        updated_at_ms: i64,
    ) -> Result<()> {
        let w = HashWrite::new(DCS).set(dc.id.to_string(), encode_dc(dc));
        self.write(session, Some(updated_at_ms), &[w]).await
    }

    async fn home(&self, session: &str) -> Result<(SessionHeader, Vec<DcOption>)> {
        let [meta, dcs] = self.read_hashes(session, [META, DCS]).await?;
        Ok((
            self.decode_header(session, &meta)?,
            self.decode_dcs(session, &dcs)?,
        ))
    }

    async fn update_state(&self, session: &str) -> Result<UpdateState> {
        let [state, channels] = self.read_hashes(session, [STATE, CHANNELS]).await?;
        self.decode_state(session, &state, &channels)
    }

    async fn write_update_state(&self, session: &str, write: &UpdateStateWrite) -> Result<()> {
        let mut writes = Vec::with_capacity(2);
        if write.sets_fields() {
            let mut state = HashWrite::new(STATE);
            for (name, value) in [
                ("pts", write.pts),
                ("qts", write.qts),
                ("date", write.date),
                ("seq", write.seq),
            ] {
                if let Some(v) = value {
                    state.set.push((bytes(name), decimal(v)));
                }
            }
            writes.push(state);
        }
        match &write.channels {
            ChannelsWrite::Keep => {}
            ChannelsWrite::Replace(channels) => {
                let mut w = HashWrite::new(CHANNELS);
                w.clear = true;
                w.set = channels
                    .iter()
                    .map(|(id, pts)| (decimal(id), decimal(pts)))
                    .collect();
                writes.push(w);
            }
            ChannelsWrite::Set { id, pts } => {
                writes.push(HashWrite::new(CHANNELS).set(id.to_string(), decimal(pts)));
            }
            ChannelsWrite::Remove { id } => {
                let mut w = HashWrite::new(CHANNELS);
                w.del.push(decimal(id));
                writes.push(w);
            }
        }
        self.write(session, None, &writes).await
    }

    async fn peers(&self, session: &str, ids: &[PeerId]) -> Result<Vec<Option<Peer>>> {
        let fields: Vec<Bytes> = ids.iter().map(|id| decimal(id.marked())).collect();
        let raws = self.fields(session, PEERS, &fields).await?;
        let key = self.key(session, PEERS);
        raws.iter()
            .map(|raw| raw.as_deref().map(|r| decode_peer(&key, r)).transpose())
            .collect()
    }

    async fn peer_by_username(&self, session: &str, key: &str) -> Result<Option<Peer>> {
        self.peer_by_index(session, UNAME, key).await
    }

    async fn peer_by_phone(&self, session: &str, phone: &str) -> Result<Option<Peer>> {
        self.peer_by_index(session, PHONE, phone).await
    }

    async fn peer_count(&self, session: &str) -> Result<u64> {
        let mut inv = scripts::COUNT.prepare_invoke();
        inv.key(self.key(session, META))
            .key(self.key(session, PEERS));
        let count: i64 = self.invoke(Access::Read, &inv).await?;
        u64::try_from(count).map_err(|_| Error::session_not_found(session))
    }

    async fn cache_peers(&self, session: &str, batch: &PeerBatch) -> Result<()> {
        crate::peers::cache_peers(self, session, batch).await
    }

    async fn sent_file(&self, session: &str, key: &SentFileKey) -> Result<Option<SentFile>> {
        let mut values = self.fields(session, FILES, &[encode_file_key(key)]).await?;
        values
            .pop()
            .flatten()
            .map(|r| decode_file(&self.key(session, FILES), &r))
            .transpose()
    }

    async fn cache_sent_file(
        &self,
        session: &str,
        key: &SentFileKey,
        file: &SentFile,
    ) -> Result<()> {
        let w = HashWrite::new(FILES).set(encode_file_key(key), encode_file(file));
        self.write(session, None, &[w]).await
    }

    async fn acquire_lease(&self, session: &str, request: &LeaseRequest) -> Result<LeaseInfo> {
        self.writable()?;
        let key = self.keys().lease(session);
        let started = Instant::now();
        let mut raw = self.read_lease(&key).await?;
        for _ in 0..MAX_ATTEMPTS {
            let current = if raw.is_empty() {
                None
            } else {
                Some(parse_lease(&key, session, &raw)?)
            };
            let granted = request.decide(session, current.as_ref())?;
            let value = format!("{}:{}", granted.expires_at_ms, granted.owner);
            match self
                .swap_lease(
                    &key,
                    &raw,
                    value.as_bytes(),
                    lease_key_expiry_ms(request.ttl),
                )
                .await?
            {
                None => return Ok(granted),
                Some(now) => raw = now,
            }
        }
        Err(Error::Busy {
            what: format!("the lease of redis session {session:?}"),
            waited: started.elapsed(),
            source: None,
        })
    }

    async fn release_lease(&self, session: &str, owner: &str, now_ms: i64) -> Result<bool> {
        self.writable()?;
        let key = self.keys().lease(session);
        let started = Instant::now();
        let mut raw = self.read_lease(&key).await?;
        for _ in 0..MAX_ATTEMPTS {
            let current = if raw.is_empty() {
                None
            } else {
                Some(parse_lease(&key, session, &raw)?)
            };
            let (remove, was_live) = decide_release(current.as_ref(), owner, now_ms);
            if !remove {
                return Ok(was_live);
            }
            match self.swap_lease(&key, &raw, b"", 1).await? {
                None => return Ok(was_live),
                Some(now) => raw = now,
            }
        }
        Err(Error::Busy {
            what: format!("the lease of redis session {session:?}"),
            waited: started.elapsed(),
            source: None,
        })
    }
}

impl RedisStore {
    async fn peer_by_index(
        &self,
        session: &str,
        which: usize,
        index_key: &str,
    ) -> Result<Option<Peer>> {
        let mut inv = scripts::PEER_BY_INDEX.prepare_invoke();
        inv.key(self.key(session, META))
            .key(self.key(session, which))
            .key(self.key(session, PEERS))
            .arg(index_key);
        let reply: Vec<Value> = self.invoke(Access::Read, &inv).await?;
        match reply.as_slice() {
            [Value::Int(0)] => Err(Error::session_not_found(session)),
            [Value::Int(1)] => Ok(None),
            [Value::Int(1), Value::BulkString(raw)] => {
                Ok(Some(decode_peer(&self.key(session, PEERS), raw)?))
            }
            other => Err(unexpected("peer lookup", other.first())),
        }
    }
}
