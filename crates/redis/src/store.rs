//! [`RedisStore`] and its builder.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, IntoConnectionInfo, RedisError, TlsCertificates, Value};
use session_core::lease::{now_ms, validate_lease};
use session_core::model::{normalize_username, validate_session_name};
use session_core::{
    Capabilities, DcOption, Error, LeaseInfo, Peer, PeerId, PeerTable, Result, SelfUser, SentFile,
    SentFileKey, SessionData, SessionMeta, SessionStore, UpdateState, UpdateStateChange,
};

use crate::codec::{
    decode_dc, decode_file, decode_file_key, decode_peer, encode_dc, encode_file, encode_file_key,
    encode_peer, parse_num, parse_opt,
};
use crate::error::{BACKEND, corrupt, map_err, redact_url};
use crate::keys::{CHANNELS, DCS, FILES, Keys, META, PEERS, PHONE, STATE, UNAME};
use crate::scripts;

/// The schema version this build writes and the newest it reads.
pub const SCHEMA_VERSION: i64 = 1;

/// The prefix used when none is given.
pub const DEFAULT_PREFIX: &str = "mtsession";

/// The longest prefix accepted, in bytes.
pub const MAX_PREFIX_LEN: usize = 200;

/// Field names of the `meta` hash.
mod field {
    pub(crate) const HOME_DC: &str = "home_dc";
    pub(crate) const SELF_ID: &str = "self_id";
    pub(crate) const SELF_BOT: &str = "self_bot";
    pub(crate) const API_ID: &str = "api_id";
    pub(crate) const TEST_MODE: &str = "test_mode";
    pub(crate) const TAKEOUT: &str = "takeout";
    pub(crate) const CREATED: &str = "created";
    pub(crate) const UPDATED: &str = "updated";
}

type Bytes = Vec<u8>;

/// One hash changed by the [`scripts::WRITE`] script.
struct HashWrite {
    which: usize,
    clear: bool,
    del: Vec<Bytes>,
    set: Vec<(Bytes, Bytes)>,
}

impl HashWrite {
    fn set(which: usize, set: Vec<(Bytes, Bytes)>) -> Self {
        HashWrite {
            which,
            clear: false,
            del: Vec::new(),
            set,
        }
    }
}

fn b(text: impl AsRef<[u8]>) -> Bytes {
    text.as_ref().to_vec()
}

fn num(n: impl ToString) -> Bytes {
    n.to_string().into_bytes()
}

/// Sets `field` to `value`, or deletes it when `value` is `None`.
fn set_or_del(
    field: &str,
    value: Option<Bytes>,
    set: &mut Vec<(Bytes, Bytes)>,
    del: &mut Vec<Bytes>,
) {
    match value {
        Some(v) => set.push((b(field), v)),
        None => del.push(b(field)),
    }
}

/// Builds a [`RedisStore`]: prefix, timeouts, reconnection and TLS roots.
#[derive(Clone)]
pub struct RedisStoreBuilder {
    url: String,
    prefix: String,
    connect_timeout: Duration,
    response_timeout: Duration,
    retries: usize,
    root_cert: Option<Vec<u8>>,
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("url", &redact_url(&self.url))
            .field("prefix", &self.prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("retries", &self.retries)
            .field("root_cert", &self.root_cert.as_ref().map(|_| "set"))
            .finish()
    }
}

impl RedisStoreBuilder {
    /// The key prefix (default [`DEFAULT_PREFIX`]); every key the store
    /// touches starts with `{prefix}:`. 1 to [`MAX_PREFIX_LEN`] bytes.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one connection attempt may take (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long the server may take to answer one command (default 10 s).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// How many times one reconnection retries before the waiting calls
    /// fail with [`Error::Unavailable`] (default 2, with 100 ms to 1 s of
    /// backoff). The next call starts a new reconnection.
    pub fn reconnect_retries(mut self, retries: usize) -> Self {
        self.retries = retries;
        self
    }

    /// Trusts this PEM root certificate (instead of the built-in web roots)
    /// for `rediss://` URLs, e.g. a private CA or a self-signed server.
    pub fn tls_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_cert = Some(pem.into());
        self
    }

    /// Connects, checks the schema version under the prefix (recording
    /// [`SCHEMA_VERSION`] if there is none) and returns the store.
    ///
    /// Fails with [`Error::InvalidInput`] for a bad URL or prefix,
    /// [`Error::Unavailable`] when the server cannot be reached,
    /// [`Error::UnsupportedSchemaVersion`] when a newer version wrote the
    /// prefix, and [`Error::Backend`] otherwise (e.g. a wrong password).
    /// No message shows the URL's password.
    pub async fn open(self) -> Result<RedisStore> {
        let shown = redact_url(&self.url);
        if self.prefix.is_empty() || self.prefix.len() > MAX_PREFIX_LEN {
            return Err(Error::invalid(format!(
                "a Redis key prefix is 1 to {MAX_PREFIX_LEN} bytes, got {} bytes",
                self.prefix.len()
            )));
        }
        let bad_url = |e: RedisError| {
            Error::invalid(format!(
                "{shown} is not a usable Redis URL (expected redis://[user:password@]host[:port][/db] \
                 or rediss://...): {e}"
            ))
        };
        let info = self.url.as_str().into_connection_info().map_err(bad_url)?;
        if matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }) {
            install_crypto_provider();
        }
        let client = match self.root_cert {
            Some(pem) => Client::build_with_tls(
                info,
                TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                },
            )
            .map_err(|e| {
                Error::invalid(format!(
                    "the TLS root certificate for {shown} could not be used \
                     (expected a PEM certificate): {e}"
                ))
            })?,
            None => Client::open(info).map_err(bad_url)?,
        };
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.response_timeout))
            .set_number_of_retries(self.retries)
            .set_min_delay(Duration::from_millis(100))
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| map_err(e, &shown))?;
        let store = RedisStore {
            conn,
            keys: Keys::new(&self.prefix),
            url: shown.into(),
        };
        store.check_schema().await?;
        Ok(store)
    }
}

/// Sessions in Redis, under a key prefix. See the crate docs for the key
/// layout. Cheap to share behind an `Arc`; every call goes through one
/// multiplexed, self-reconnecting connection.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    keys: Keys,
    url: Arc<str>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.url)
            .field("prefix", &self.keys.prefix())
            .finish()
    }
}

impl RedisStore {
    /// Opens a store at `url` (`redis://` or `rediss://`) with the default
    /// prefix and timeouts.
    pub async fn open(url: &str) -> Result<RedisStore> {
        RedisStore::builder(url).open().await
    }

    /// A builder for a store at `url`.
    pub fn builder(url: &str) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.to_owned(),
            prefix: DEFAULT_PREFIX.to_owned(),
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(10),
            retries: 2,
            root_cert: None,
        }
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        self.keys.prefix()
    }

    /// The server URL with its password replaced by `***`.
    pub fn redacted_url(&self) -> &str {
        &self.url
    }

    fn con(&self) -> ConnectionManager {
        self.conn.clone()
    }

    fn err(&self, e: RedisError) -> Error {
        map_err(e, &self.url)
    }

    fn key(&self, session: &str, which: usize) -> String {
        self.keys.session(session, which)
    }

    async fn check_schema(&self) -> Result<()> {
        let key = self.keys.schema();
        // Not MULTI: the first command on a connection may be refused (e.g.
        // NOAUTH), and a refused MULTI trips up the client library.
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(&key)
            .arg(SCHEMA_VERSION)
            .arg("NX")
            .ignore();
        pipe.cmd("GET").arg(&key);
        let (found,): (Option<Bytes>,) = pipe
            .query_async(&mut self.con())
            .await
            .map_err(|e| self.err(e))?;
        let found =
            found.ok_or_else(|| corrupt(&key, "the schema version vanished while opening"))?;
        let version: i64 = parse_num(&key, "(value)", &found)?;
        if version > SCHEMA_VERSION {
            return Err(Error::UnsupportedSchemaVersion {
                what: format!("redis prefix {:?}", self.keys.prefix()),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        if version < 1 {
            return Err(corrupt(
                &key,
                format!("schema version {version}, expected 1 to {SCHEMA_VERSION}"),
            ));
        }
        Ok(())
    }

    /// Runs the guarded WRITE script; `NotFound` if the session is missing.
    async fn write(&self, session: &str, touch: bool, writes: Vec<HashWrite>) -> Result<()> {
        let mut inv = scripts::WRITE.prepare_invoke();
        inv.key(self.key(session, META));
        inv.arg(if touch {
            now_ms().to_string()
        } else {
            String::new()
        });
        for w in &writes {
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
        let done: i64 = inv
            .invoke_async(&mut self.con())
            .await
            .map_err(|e| self.err(e))?;
        if done == 1 {
            Ok(())
        } else {
            Err(Error::session_not_found(session))
        }
    }

    /// Reads `meta` fields with one `HMGET`, together with `created`, which
    /// is always set while the session exists; `NotFound` if it is missing.
    async fn meta_fields(
        &self,
        session: &str,
        fields: &[&str],
    ) -> Result<(Bytes, Vec<Option<Bytes>>)> {
        let mut all = vec![field::CREATED];
        all.extend_from_slice(fields);
        let mut values: Vec<Option<Bytes>> = redis::cmd("HMGET")
            .arg(self.key(session, META))
            .arg(&all)
            .query_async(&mut self.con())
            .await
            .map_err(|e| self.err(e))?;
        if values.len() != all.len() {
            return Err(Error::backend(
                BACKEND,
                format!(
                    "HMGET answered {} values for {} fields",
                    values.len(),
                    all.len()
                ),
            ));
        }
        let Some(created) = values.remove(0) else {
            return Err(Error::session_not_found(session));
        };
        Ok((created, values))
    }

    /// Reads one whole hash of an existing session, atomically with the
    /// existence check.
    async fn hash(&self, session: &str, which: usize) -> Result<HashMap<Bytes, Bytes>> {
        let mut maps = self.hashes(session, &[which]).await?;
        maps.pop()
            .ok_or_else(|| Error::backend(BACKEND, "the read script answered no hash"))
    }

    /// Reads whole hashes of an existing session in one script call,
    /// atomically with the existence check.
    async fn hashes(&self, session: &str, which: &[usize]) -> Result<Vec<HashMap<Bytes, Bytes>>> {
        let mut inv = scripts::READ_HASHES.prepare_invoke();
        inv.key(self.key(session, META));
        for w in which {
            inv.key(self.key(session, *w));
        }
        let reply: Vec<Value> = inv
            .invoke_async(&mut self.con())
            .await
            .map_err(|e| self.err(e))?;
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
        if maps.len() != which.len() {
            return Err(Error::backend(
                BACKEND,
                format!(
                    "the read script answered {} hashes for {}",
                    maps.len(),
                    which.len()
                ),
            ));
        }
        Ok(maps)
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
        let reply: Vec<Value> = inv
            .invoke_async(&mut self.con())
            .await
            .map_err(|e| self.err(e))?;
        let mut reply = reply.into_iter();
        match reply.next() {
            Some(Value::Int(1)) => {}
            Some(Value::Int(0)) => return Err(Error::session_not_found(session)),
            other => return Err(unexpected("field read", other.as_ref())),
        }
        let values = match reply.next() {
            // An empty Lua table comes back as an empty array.
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

    fn decode_dcs(&self, session: &str, map: HashMap<Bytes, Bytes>) -> Result<Vec<DcOption>> {
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
        state: HashMap<Bytes, Bytes>,
        channels: HashMap<Bytes, Bytes>,
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

    fn decode_meta(
        &self,
        session: &str,
        meta: &HashMap<Bytes, Bytes>,
    ) -> Result<(i32, Option<SelfUser>, SessionMeta, Option<i64>)> {
        let key = self.key(session, META);
        let get = |name: &str| meta.get(name.as_bytes()).map(Vec::as_slice);
        let home_dc: i32 = parse_opt(&key, field::HOME_DC, get(field::HOME_DC))?
            .ok_or_else(|| corrupt(&key, "the home_dc field is missing"))?;
        let self_user = self_user_from(&key, get(field::SELF_ID), get(field::SELF_BOT))?;
        let meta = SessionMeta {
            api_id: parse_opt(&key, field::API_ID, get(field::API_ID))?,
            test_mode: parse_opt::<u8>(&key, field::TEST_MODE, get(field::TEST_MODE))?.unwrap_or(0)
                != 0,
            created_at_ms: parse_opt(&key, field::CREATED, get(field::CREATED))?.unwrap_or(0),
            updated_at_ms: parse_opt(&key, field::UPDATED, get(field::UPDATED))?.unwrap_or(0),
        };
        let takeout = parse_opt(&key, field::TAKEOUT, get(field::TAKEOUT))?;
        Ok((home_dc, self_user, meta, takeout))
    }

    /// Runs the PUT script for `data` in `mode` (`create` or `import`).
    /// Returns whether it wrote.
    async fn put(&self, session: &str, data: &SessionData, mode: &str) -> Result<bool> {
        validate_session_name(session)?;
        let mut meta: Vec<(Bytes, Bytes)> = vec![
            (b(field::HOME_DC), num(data.home_dc)),
            (b(field::TEST_MODE), num(u8::from(data.test_mode))),
        ];
        if let Some(user) = data.self_user {
            meta.push((b(field::SELF_ID), num(user.id)));
            meta.push((b(field::SELF_BOT), num(u8::from(user.is_bot))));
        }
        if let Some(api_id) = data.api_id {
            meta.push((b(field::API_ID), num(api_id)));
        }
        if let Some(takeout) = data.takeout_id {
            meta.push((b(field::TAKEOUT), num(takeout)));
        }
        let dcs: Vec<(Bytes, Bytes)> = data
            .dcs
            .iter()
            .map(|dc| (num(dc.id), encode_dc(dc)))
            .collect();
        let st = &data.update_state;
        let state: Vec<(Bytes, Bytes)> = vec![
            (b("pts"), num(st.pts)),
            (b("qts"), num(st.qts)),
            (b("date"), num(st.date)),
            (b("seq"), num(st.seq)),
        ];
        let channels: Vec<(Bytes, Bytes)> = st
            .channels
            .iter()
            .map(|(id, pts)| (num(id), num(pts)))
            .collect();
        // Apply the ownership rules exactly as the reference table does.
        let mut table = PeerTable::default();
        for peer in &data.peers {
            table.upsert(peer);
        }
        let mut peers = Vec::with_capacity(table.len());
        let mut unames = Vec::new();
        let mut phones = Vec::new();
        for peer in table.iter() {
            let id = num(peer.id.marked());
            for key in peer.username_keys() {
                unames.push((b(key), id.clone()));
            }
            if let Some(phone) = &peer.phone {
                phones.push((b(phone), id.clone()));
            }
            peers.push((id, encode_peer(peer).into_bytes()));
        }
        let files: Vec<(Bytes, Bytes)> = data
            .sent_files
            .iter()
            .map(|(k, f)| (encode_file_key(k), encode_file(f)))
            .collect();

        let mut inv = scripts::PUT.prepare_invoke();
        inv.key(self.key(session, META)).key(self.keys.sessions());
        inv.arg(session).arg(mode).arg(now_ms());
        let rest: [(usize, &Vec<(Bytes, Bytes)>); 8] = [
            (META, &meta),
            (DCS, &dcs),
            (STATE, &state),
            (CHANNELS, &channels),
            (PEERS, &peers),
            (UNAME, &unames),
            (PHONE, &phones),
            (FILES, &files),
        ];
        for (which, pairs) in rest {
            if which != META {
                inv.key(self.key(session, which));
            }
            inv.arg(pairs.len());
            for (f, v) in pairs {
                inv.arg(f.as_slice()).arg(v.as_slice());
            }
        }
        let done: i64 = inv
            .invoke_async(&mut self.con())
            .await
            .map_err(|e| self.err(e))?;
        Ok(done == 1)
    }

    async fn peer_by_index(
        &self,
        session: &str,
        which: usize,
        index_key: &str,
    ) -> Result<Option<Peer>> {
        let reply: Vec<Value> = scripts::PEER_BY_INDEX
            .key(self.key(session, META))
            .key(self.key(session, which))
            .key(self.key(session, PEERS))
            .arg(index_key)
            .invoke_async(&mut self.con())
            .await
            .map_err(|e| self.err(e))?;
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

/// Makes sure rustls has a process-wide crypto provider before the first TLS
/// connection. An application that installed its own keeps it.
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: either provider works.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// A script answered something it never answers. The message names only
/// the reply's shape: replies can hold key material.
fn unexpected(script: &str, reply: Option<&Value>) -> Error {
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

fn self_user_from(key: &str, id: Option<&[u8]>, bot: Option<&[u8]>) -> Result<Option<SelfUser>> {
    let Some(id) = parse_opt::<i64>(key, field::SELF_ID, id)? else {
        return Ok(None);
    };
    let is_bot = parse_opt::<u8>(key, field::SELF_BOT, bot)?.unwrap_or(0) != 0;
    Ok(Some(SelfUser { id, is_bot }))
}

#[async_trait]
impl SessionStore for RedisStore {
    fn backend_name(&self) -> &'static str {
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
        let names: Vec<Bytes> = redis::cmd("ZRANGE")
            .arg(self.keys.sessions())
            .arg(0)
            .arg(-1)
            .query_async(&mut self.con())
            .await
            .map_err(|e| self.err(e))?;
        let mut names = names
            .into_iter()
            .map(|n| {
                String::from_utf8(n)
                    .map_err(|_| corrupt(&self.keys.sessions(), "a session name is not UTF-8"))
            })
            .collect::<Result<Vec<_>>>()?;
        // Members share score 0, so Redis already sorts them by bytes;
        // sorting again costs little and does not depend on that.
        names.sort();
        Ok(names)
    }

    async fn exists(&self, session: &str) -> Result<bool> {
        redis::cmd("EXISTS")
            .arg(self.key(session, META))
            .query_async(&mut self.con())
            .await
            .map_err(|e| self.err(e))
    }

    async fn create(&self, session: &str) -> Result<()> {
        if self.put(session, &SessionData::default(), "create").await? {
            Ok(())
        } else {
            Err(Error::session_exists(session))
        }
    }

    async fn delete(&self, session: &str) -> Result<bool> {
        let mut inv = scripts::DELETE.prepare_invoke();
        for k in self.keys.session_all(session) {
            inv.key(k);
        }
        inv.key(self.keys.sessions()).arg(session);
        let existed: i64 = inv
            .invoke_async(&mut self.con())
            .await
            .map_err(|e| self.err(e))?;
        Ok(existed == 1)
    }

    async fn copy(&self, from: &str, to: &str, overwrite: bool) -> Result<()> {
        validate_session_name(to)?;
        let mut inv = scripts::COPY.prepare_invoke();
        for k in self.keys.session_all(from) {
            inv.key(k);
        }
        for k in self.keys.session_all(to) {
            inv.key(k);
        }
        inv.key(self.keys.sessions());
        inv.arg(to)
            .arg(if overwrite { "1" } else { "0" })
            .arg(now_ms())
            .arg(if from == to { "1" } else { "0" });
        let done: i64 = inv
            .invoke_async(&mut self.con())
            .await
            .map_err(|e| self.err(e))?;
        match done {
            1 => Ok(()),
            -1 => Err(Error::session_not_found(from)),
            -2 => Err(Error::session_exists(to)),
            other => Err(Error::backend(
                BACKEND,
                format!("unexpected reply {other} from the copy script"),
            )),
        }
    }

    async fn flush(&self) -> Result<()> {
        Ok(())
    }

    async fn export(&self, session: &str) -> Result<SessionData> {
        let maps = self
            .hashes(session, &[META, DCS, STATE, CHANNELS, PEERS, FILES])
            .await?;
        let [meta, dcs, state, channels, peers, files]: [HashMap<Bytes, Bytes>; 6] =
            maps.try_into().map_err(|_| {
                Error::backend(
                    BACKEND,
                    "the read script answered the wrong number of hashes",
                )
            })?;
        let (home_dc, self_user, m, takeout_id) = self.decode_meta(session, &meta)?;
        let pkey = self.key(session, PEERS);
        let fkey = self.key(session, FILES);
        let mut data = SessionData {
            home_dc,
            dcs: self.decode_dcs(session, dcs)?,
            self_user,
            api_id: m.api_id,
            test_mode: m.test_mode,
            takeout_id,
            update_state: self.decode_state(session, state, channels)?,
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

    async fn import(&self, session: &str, data: &SessionData) -> Result<()> {
        self.put(session, data, "import").await.map(|_| ())
    }

    async fn home_dc(&self, session: &str) -> Result<i32> {
        let (_, values) = self.meta_fields(session, &[field::HOME_DC]).await?;
        let key = self.key(session, META);
        parse_opt(&key, field::HOME_DC, values[0].as_deref())?
            .ok_or_else(|| corrupt(&key, "the home_dc field is missing"))
    }

    async fn set_home_dc(&self, session: &str, dc_id: i32) -> Result<()> {
        let w = HashWrite::set(META, vec![(b(field::HOME_DC), num(dc_id))]);
        self.write(session, true, vec![w]).await
    }

    async fn dc_options(&self, session: &str) -> Result<Vec<DcOption>> {
        let map = self.hash(session, DCS).await?;
        self.decode_dcs(session, map)
    }

    async fn set_dc_option(&self, session: &str, dc: &DcOption) -> Result<()> {
        let w = HashWrite::set(DCS, vec![(num(dc.id), encode_dc(dc))]);
        self.write(session, true, vec![w]).await
    }

    async fn self_user(&self, session: &str) -> Result<Option<SelfUser>> {
        let (_, values) = self
            .meta_fields(session, &[field::SELF_ID, field::SELF_BOT])
            .await?;
        self_user_from(
            &self.key(session, META),
            values[0].as_deref(),
            values[1].as_deref(),
        )
    }

    async fn set_self_user(&self, session: &str, user: Option<SelfUser>) -> Result<()> {
        let (mut set, mut del) = (Vec::new(), Vec::new());
        set_or_del(field::SELF_ID, user.map(|u| num(u.id)), &mut set, &mut del);
        set_or_del(
            field::SELF_BOT,
            user.map(|u| num(u8::from(u.is_bot))),
            &mut set,
            &mut del,
        );
        let w = HashWrite {
            which: META,
            clear: false,
            del,
            set,
        };
        self.write(session, true, vec![w]).await
    }

    async fn metadata(&self, session: &str) -> Result<SessionMeta> {
        let fields = [field::API_ID, field::TEST_MODE, field::UPDATED];
        let (created, values) = self.meta_fields(session, &fields).await?;
        let key = self.key(session, META);
        Ok(SessionMeta {
            api_id: parse_opt(&key, field::API_ID, values[0].as_deref())?,
            test_mode: parse_opt::<u8>(&key, field::TEST_MODE, values[1].as_deref())?.unwrap_or(0)
                != 0,
            created_at_ms: parse_num(&key, field::CREATED, &created)?,
            updated_at_ms: parse_opt(&key, field::UPDATED, values[2].as_deref())?.unwrap_or(0),
        })
    }

    async fn set_metadata(
        &self,
        session: &str,
        api_id: Option<i32>,
        test_mode: bool,
    ) -> Result<()> {
        let (mut set, mut del) = (Vec::new(), Vec::new());
        set_or_del(field::API_ID, api_id.map(num), &mut set, &mut del);
        set.push((b(field::TEST_MODE), num(u8::from(test_mode))));
        let w = HashWrite {
            which: META,
            clear: false,
            del,
            set,
        };
        self.write(session, true, vec![w]).await
    }

    async fn takeout_id(&self, session: &str) -> Result<Option<i64>> {
        let (_, values) = self.meta_fields(session, &[field::TAKEOUT]).await?;
        parse_opt(
            &self.key(session, META),
            field::TAKEOUT,
            values[0].as_deref(),
        )
    }

    async fn set_takeout_id(&self, session: &str, takeout_id: Option<i64>) -> Result<()> {
        let (mut set, mut del) = (Vec::new(), Vec::new());
        set_or_del(field::TAKEOUT, takeout_id.map(num), &mut set, &mut del);
        let w = HashWrite {
            which: META,
            clear: false,
            del,
            set,
        };
        self.write(session, true, vec![w]).await
    }

    async fn update_state(&self, session: &str) -> Result<UpdateState> {
        let maps = self.hashes(session, &[STATE, CHANNELS]).await?;
        let [state, channels]: [HashMap<Bytes, Bytes>; 2] = maps.try_into().map_err(|_| {
            Error::backend(
                BACKEND,
                "the read script answered the wrong number of hashes",
            )
        })?;
        self.decode_state(session, state, channels)
    }

    async fn set_update_state(&self, session: &str, change: &UpdateStateChange) -> Result<()> {
        let writes = match change {
            UpdateStateChange::All(st) => vec![
                HashWrite {
                    which: STATE,
                    clear: true,
                    del: Vec::new(),
                    set: vec![
                        (b("pts"), num(st.pts)),
                        (b("qts"), num(st.qts)),
                        (b("date"), num(st.date)),
                        (b("seq"), num(st.seq)),
                    ],
                },
                HashWrite {
                    which: CHANNELS,
                    clear: true,
                    del: Vec::new(),
                    set: st
                        .channels
                        .iter()
                        .map(|(id, pts)| (num(id), num(pts)))
                        .collect(),
                },
            ],
            UpdateStateChange::Primary { pts, date, seq } => vec![HashWrite::set(
                STATE,
                vec![
                    (b("pts"), num(pts)),
                    (b("date"), num(date)),
                    (b("seq"), num(seq)),
                ],
            )],
            UpdateStateChange::Secondary { qts } => {
                vec![HashWrite::set(STATE, vec![(b("qts"), num(qts))])]
            }
            UpdateStateChange::Channel { id, pts } => {
                vec![HashWrite::set(CHANNELS, vec![(num(id), num(pts))])]
            }
            UpdateStateChange::RemoveChannel { id } => vec![HashWrite {
                which: CHANNELS,
                clear: false,
                del: vec![num(id)],
                set: Vec::new(),
            }],
        };
        self.write(session, false, writes).await
    }

    async fn cache_peers(&self, session: &str, peers: &[Peer]) -> Result<()> {
        let mut inv = scripts::CACHE_PEERS.prepare_invoke();
        inv.key(self.key(session, META))
            .key(self.key(session, PEERS))
            .key(self.key(session, UNAME))
            .key(self.key(session, PHONE));
        for peer in peers {
            inv.arg(encode_peer(peer));
        }
        let done: i64 = inv
            .invoke_async(&mut self.con())
            .await
            .map_err(|e| self.err(e))?;
        if done == 1 {
            Ok(())
        } else {
            Err(Error::session_not_found(session))
        }
    }

    async fn peers(&self, session: &str, ids: &[PeerId]) -> Result<Vec<Option<Peer>>> {
        let fields: Vec<Bytes> = ids.iter().map(|id| num(id.marked())).collect();
        let raws = self.fields(session, PEERS, &fields).await?;
        let key = self.key(session, PEERS);
        raws.iter()
            .map(|raw| raw.as_deref().map(|r| decode_peer(&key, r)).transpose())
            .collect()
    }

    async fn peer_by_username(&self, session: &str, username: &str) -> Result<Option<Peer>> {
        self.peer_by_index(session, UNAME, &normalize_username(username))
            .await
    }

    async fn peer_by_phone(&self, session: &str, phone: &str) -> Result<Option<Peer>> {
        self.peer_by_index(session, PHONE, phone).await
    }

    async fn peer_count(&self, session: &str) -> Result<u64> {
        let count: i64 = scripts::COUNT
            .key(self.key(session, META))
            .key(self.key(session, PEERS))
            .invoke_async(&mut self.con())
            .await
            .map_err(|e| self.err(e))?;
        u64::try_from(count).map_err(|_| Error::session_not_found(session))
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
        let w = HashWrite::set(FILES, vec![(encode_file_key(key), encode_file(file))]);
        self.write(session, false, vec![w]).await
    }

    async fn acquire_lease(&self, session: &str, owner: &str, ttl: Duration) -> Result<LeaseInfo> {
        validate_lease(owner, ttl)?;
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let expires = now_ms().saturating_add(ttl_ms);
        let reply: Vec<Value> = scripts::ACQUIRE_LEASE
            .key(self.keys.lease(session))
            .arg(owner)
            .arg(ttl_ms)
            .arg(expires)
            .invoke_async(&mut self.con())
            .await
            .map_err(|e| self.err(e))?;
        match reply.as_slice() {
            [Value::Int(1)] => Ok(LeaseInfo {
                session: session.to_owned(),
                owner: owner.to_owned(),
                expires_at_ms: expires,
            }),
            [
                Value::Int(0),
                Value::BulkString(holder),
                Value::BulkString(until),
            ] => {
                let key = self.keys.lease(session);
                Err(Error::LeaseHeld {
                    session: session.to_owned(),
                    owner: String::from_utf8_lossy(holder).into_owned(),
                    until_ms: parse_num(&key, "(expiry)", until)?,
                })
            }
            other => Err(unexpected("lease", other.first())),
        }
    }

    async fn release_lease(&self, session: &str, owner: &str) -> Result<bool> {
        let released: i64 = scripts::RELEASE_LEASE
            .key(self.keys.lease(session))
            .arg(owner)
            .invoke_async(&mut self.con())
            .await
            .map_err(|e| self.err(e))?;
        Ok(released == 1)
    }
}
