//! [`SqliteStore`]: the [`SessionBackend`] over one SQLite file.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{SocketAddrV4, SocketAddrV6};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OptionalExtension, Row, params};
use session_core::backend::{decide_release, import_times};
use session_core::{
    AuthKey, Capabilities, ChannelsWrite, DcOption, Durability, Error, FileKind, HeaderWrite,
    ImportMode, LeaseInfo, LeaseRequest, OpenMode, Peer, PeerBatch, PeerId, Result, SelfUser,
    SentFile, SentFileKey, SessionBackend, SessionData, SessionHeader, UpdateState,
    UpdateStateWrite,
};

use crate::builder::SqliteBuilder;
use crate::db::{BACKEND, Db, Failure, Handle, Options, SqlResult, WriteSize};
use crate::peers;

/// Peer batches up to this size are short writes (inline when the commit
/// does not wait for the disk).
const SHORT_BATCH: usize = 128;

/// Lookups of more ids than this run off the calling thread.
const LONG_LOOKUP: usize = 1024;

/// Sessions in one SQLite file (or a private in-memory database).
///
/// Open it with [`SqliteStore::open`], [`SqliteStore::builder`] or
/// [`SqliteStore::open_in_memory`], and use it through a
/// [`Store`](session_core::Store) (`store.into_store()`, or
/// `store.open("name")` for one session). See the crate docs for the
/// schema, the durability policies and the concurrency model.
pub struct SqliteStore {
    db: Handle,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.db.db().path())
            .field("durability", &self.db.db().durability())
            .field("mode", &self.db.db().mode())
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the store in the file at `path` with default options
    /// ([`OpenMode::Create`]: the file is created with mode 0600 when it
    /// does not exist; durability `Immediate`; busy timeout 10 s).
    ///
    /// Fails with `UnsupportedSchemaVersion` for a file written by a newer
    /// mtsession, `Corrupt` for a file that is not SQLite or is damaged,
    /// `InvalidInput` for an SQLite file that is not an mtsession store,
    /// and `NotFound` when the directory does not exist.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::builder(path).open().await
    }

    /// A builder, for the durability policy, the busy timeout and the
    /// [`OpenMode`].
    pub fn builder(path: impl AsRef<Path>) -> SqliteBuilder<SqliteStore> {
        SqliteBuilder::new(path.as_ref())
    }

    /// A private in-memory store: neither durable nor shared.
    pub fn open_in_memory() -> Result<Self> {
        SqliteStore::from_db(Db::open_memory(Options::default())?)
    }

    pub(crate) fn from_db(db: Arc<Db>) -> Result<Self> {
        Ok(SqliteStore {
            db: Handle::new(db),
        })
    }

    /// The database file, or `None` for an in-memory store.
    pub fn path(&self) -> Option<&Path> {
        self.db.db().path()
    }

    /// The durability policy the store was opened with.
    pub fn durability(&self) -> Durability {
        self.db.db().durability()
    }

    /// The mode the store was opened in.
    pub fn mode(&self) -> OpenMode {
        self.db.db().mode()
    }

    /// How long a call waits for another connection's or process's lock.
    pub fn busy_timeout(&self) -> std::time::Duration {
        self.db.db().busy_timeout()
    }
}

fn not_found(session: &str) -> Failure {
    Error::session_not_found(session).into()
}

/// The row id of a session, or `NotFound`.
fn session_id(conn: &Connection, name: &str) -> SqlResult<i64> {
    conn.prepare_cached("SELECT id FROM sessions WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?
        .ok_or_else(|| not_found(name))
}

/// The header columns, in the order [`header_from_row`] reads them.
macro_rules! header_columns {
    ($p:literal) => {
        concat!(
            $p,
            "home_dc, ",
            $p,
            "self_user_id, ",
            $p,
            "self_is_bot, ",
            $p,
            "api_id, ",
            $p,
            "test_mode, ",
            $p,
            "takeout_id, ",
            $p,
            "created_at_ms, ",
            $p,
            "updated_at_ms"
        )
    };
}

/// The DC columns, in the order [`dc_from_row`] reads them.
macro_rules! dc_columns {
    ($p:literal) => {
        concat!($p, "dc_id, ", $p, "ipv4, ", $p, "ipv6, ", $p, "auth_key")
    };
}

const HEADER: &str = concat!(
    "SELECT id, ",
    header_columns!(""),
    " FROM sessions WHERE name = ?1"
);

/// The header and every DC option in one statement (what a client needs to connect).
pub(crate) const HOME: &str = concat!(
    "SELECT ",
    header_columns!("s."),
    ", ",
    dc_columns!("d."),
    " FROM sessions s LEFT JOIN dc_options d ON d.session = s.id WHERE s.name = ?1 \
     ORDER BY d.dc_id"
);

/// The session's home DC and its auth key (NULL without one); no row
/// without the session.
pub(crate) const HOME_AUTH_KEY: &str = "SELECT s.home_dc, d.auth_key FROM sessions s \
     LEFT JOIN dc_options d ON d.session = s.id AND d.dc_id = s.home_dc WHERE s.name = ?1";

/// Every DC option, with the session's row id.
pub(crate) const DC_OPTIONS: &str = concat!(
    "SELECT s.id, ",
    dc_columns!("d."),
    " FROM sessions s LEFT JOIN dc_options d ON d.session = s.id WHERE s.name = ?1 \
     ORDER BY d.dc_id"
);

/// The update state in one statement.
pub(crate) const UPDATE_STATE: &str = "SELECT s.pts, s.qts, s.date, s.seq, c.channel_id, c.pts \
     FROM sessions s LEFT JOIN channel_pts c ON c.session = s.id WHERE s.name = ?1";

/// One sent file, with the session's row id.
pub(crate) const SENT_FILE: &str = "SELECT s.id, f.file_id, f.access_hash FROM sessions s \
     LEFT JOIN sent_files f ON f.session = s.id AND f.md5 = ?2 AND f.size = ?3 AND f.kind = ?4 \
     WHERE s.name = ?1";

/// The fixed update-state fields a write sets (NULL keeps a field).
const WRITE_STATE_FIELDS: &str = "UPDATE sessions SET pts = coalesce(?2, pts), \
     qts = coalesce(?3, qts), date = coalesce(?4, date), seq = coalesce(?5, seq) \
     WHERE name = ?1";

/// One channel's pts, by session name (no row when the session is missing).
const SET_CHANNEL_BY_NAME: &str = "INSERT INTO channel_pts (session, channel_id, pts) \
     SELECT id, ?2, ?3 FROM sessions WHERE name = ?1 \
     ON CONFLICT (session, channel_id) DO UPDATE SET pts = excluded.pts";

const SET_CHANNEL: &str = "INSERT INTO channel_pts (session, channel_id, pts) VALUES (?1, ?2, ?3) \
     ON CONFLICT (session, channel_id) DO UPDATE SET pts = excluded.pts";

/// One sent file, by session name (no row when the session is missing).
const SET_SENT_FILE_BY_NAME: &str = "INSERT INTO sent_files (session, md5, size, kind, file_id, \
     access_hash) SELECT id, ?2, ?3, ?4, ?5, ?6 FROM sessions WHERE name = ?1 \
     ON CONFLICT (session, md5, size, kind) \
     DO UPDATE SET file_id = excluded.file_id, access_hash = excluded.access_hash";

const SET_SENT_FILE: &str = "INSERT INTO sent_files (session, md5, size, kind, file_id, \
     access_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (session, md5, size, kind) \
     DO UPDATE SET file_id = excluded.file_id, access_hash = excluded.access_hash";

const SET_DC: &str = "INSERT INTO dc_options (session, dc_id, ipv4, ipv6, auth_key) \
     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (session, dc_id) DO UPDATE SET \
     ipv4 = excluded.ipv4, ipv6 = excluded.ipv6, auth_key = excluded.auth_key";

/// The tables below `sessions`, each keyed by `session` first.
const CHILD_TABLES: [(&str, &str); 5] = [
    ("dc_options", "dc_id, ipv4, ipv6, auth_key"),
    ("channel_pts", "channel_id, pts"),
    (
        "peers",
        "id, kind, hash, hash_is_min, usernames, phone, name, last_seen",
    ),
    ("peer_usernames", "username_lower, peer_id"),
    ("sent_files", "md5, size, kind, file_id, access_hash"),
];

fn header_from_row(row: &Row<'_>, at: usize) -> SqlResult<SessionHeader> {
    let self_id: Option<i64> = row.get(at + 1)?;
    let is_bot: Option<bool> = row.get(at + 2)?;
    Ok(SessionHeader {
        home_dc: row.get(at)?,
        self_user: self_id.map(|id| SelfUser {
            id,
            is_bot: is_bot.unwrap_or(false),
        }),
        api_id: row.get(at + 3)?,
        test_mode: row.get(at + 4)?,
        takeout_id: row.get(at + 5)?,
        created_at_ms: row.get(at + 6)?,
        updated_at_ms: row.get(at + 7)?,
    })
}

fn dc_corrupt(session: &str, dc: i64, message: String) -> Error {
    Error::corrupt(
        format!("the sqlite dc_options table (session {session:?}, DC {dc})"),
        message,
    )
}

/// Reads a DC option from `row` at column `at`; `None` for the NULL columns
/// of a `LEFT JOIN` without a DC.
fn dc_from_row(row: &Row<'_>, at: usize, session: &str) -> SqlResult<Option<DcOption>> {
    let Some(id) = row.get::<_, Option<i64>>(at)? else {
        return Ok(None);
    };
    let dc_id = i32::try_from(id)
        .map_err(|_| dc_corrupt(session, id, format!("DC id {id} is out of range")))?;
    let ipv4 = match row.get::<_, Option<String>>(at + 1)? {
        None => None,
        Some(text) => Some(text.parse::<SocketAddrV4>().map_err(|_| {
            dc_corrupt(
                session,
                id,
                format!("IPv4 address {text:?} is not addr:port"),
            )
        })?),
    };
    let ipv6 = match row.get::<_, Option<String>>(at + 2)? {
        None => None,
        Some(text) => Some(text.parse::<SocketAddrV6>().map_err(|_| {
            dc_corrupt(
                session,
                id,
                format!("IPv6 address {text:?} is not [addr]:port"),
            )
        })?),
    };
    let auth_key = auth_key_from(row.get_ref(at + 3)?, session, id)?;
    Ok(Some(DcOption {
        id: dc_id,
        ipv4,
        ipv6,
        auth_key,
    }))
}

/// The auth key column of DC `id`: NULL or a 256-byte blob.
fn auth_key_from(value: ValueRef<'_>, session: &str, id: i64) -> SqlResult<Option<AuthKey>> {
    match value {
        ValueRef::Null => Ok(None),
        ValueRef::Blob(bytes) => Ok(Some(AuthKey::from_slice(bytes).map_err(|_| {
            dc_corrupt(
                session,
                id,
                format!("the auth key is {} bytes long, expected 256", bytes.len()),
            )
        })?)),
        _ => Err(dc_corrupt(session, id, "the auth key is not a blob".to_owned()).into()),
    }
}

fn write_dc(conn: &Connection, session: i64, dc: &DcOption) -> SqlResult<()> {
    conn.prepare_cached(SET_DC)?.execute(params![
        session,
        dc.id,
        dc.ipv4.map(|a| a.to_string()),
        dc.ipv6.map(|a| a.to_string()),
        dc.auth_key.as_ref().map(|k| &k.expose()[..]),
    ])?;
    Ok(())
}

fn read_dcs(conn: &Connection, session: i64, name: &str) -> SqlResult<Vec<DcOption>> {
    let mut stmt = conn.prepare_cached(concat!(
        "SELECT ",
        dc_columns!(""),
        " FROM dc_options WHERE session = ?1 ORDER BY dc_id"
    ))?;
    let mut rows = stmt.query([session])?;
    let mut dcs = Vec::new();
    while let Some(row) = rows.next()? {
        dcs.extend(dc_from_row(row, 0, name)?);
    }
    Ok(dcs)
}

/// Reads the header, applies the write with [`SessionHeader::apply`] (the
/// one place the `updated_at` rule lives) and stores it; returns the
/// session's row id.
fn apply_header_write(conn: &Connection, name: &str, write: &HeaderWrite) -> SqlResult<i64> {
    let stored = conn
        .prepare_cached(HEADER)?
        .query_row([name], |row| {
            Ok((row.get::<_, i64>(0)?, header_from_row(row, 1)))
        })
        .optional()?;
    let Some((id, header)) = stored else {
        return Err(not_found(name));
    };
    let mut header = header?;
    header.apply(write);
    conn.prepare_cached(
        "UPDATE sessions SET home_dc = ?2, self_user_id = ?3, self_is_bot = ?4, api_id = ?5, \
         test_mode = ?6, takeout_id = ?7, updated_at_ms = ?8 WHERE id = ?1",
    )?
    .execute(params![
        id,
        header.home_dc,
        header.self_user.map(|u| u.id),
        header.self_user.map(|u| u.is_bot),
        header.api_id,
        header.test_mode,
        header.takeout_id,
        header.updated_at_ms,
    ])?;
    Ok(id)
}

fn write_update_state(conn: &Connection, name: &str, write: &UpdateStateWrite) -> SqlResult<()> {
    // The fields by session name, without reading back the session's row
    // id (a `RETURNING` clause costs as much again as the update); the
    // channel writes that need the id read it when they come.
    let updated = write.sets_fields() && {
        let changed = conn
            .prepare_cached(WRITE_STATE_FIELDS)?
            .execute(params![name, write.pts, write.qts, write.date, write.seq])?;
        if changed == 0 {
            return Err(not_found(name));
        }
        true
    };
    match &write.channels {
        ChannelsWrite::Keep => {
            if !updated {
                session_id(conn, name)?;
            }
        }
        ChannelsWrite::Set { id, pts } => {
            let changed = conn
                .prepare_cached(SET_CHANNEL_BY_NAME)?
                .execute(params![name, id, pts])?;
            if changed == 0 {
                return Err(not_found(name));
            }
        }
        ChannelsWrite::Remove { id } => {
            let session = session_id(conn, name)?;
            conn.prepare_cached("DELETE FROM channel_pts WHERE session = ?1 AND channel_id = ?2")?
                .execute(params![session, id])?;
        }
        ChannelsWrite::Replace(channels) => {
            let session = session_id(conn, name)?;
            conn.prepare_cached("DELETE FROM channel_pts WHERE session = ?1")?
                .execute([session])?;
            write_channels(conn, session, channels)?;
        }
    }
    Ok(())
}

fn write_channels(conn: &Connection, session: i64, channels: &BTreeMap<i64, i32>) -> SqlResult<()> {
    let mut stmt = conn.prepare_cached(SET_CHANNEL)?;
    for (channel, pts) in channels {
        stmt.execute(params![session, channel, pts])?;
    }
    Ok(())
}

fn sent_file_corrupt(session: &str, message: String) -> Error {
    Error::corrupt(
        format!("the sqlite sent_files table (session {session:?})"),
        message,
    )
}

fn read_sent_files(
    conn: &Connection,
    session: i64,
    name: &str,
) -> SqlResult<Vec<(SentFileKey, SentFile)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT md5, size, kind, file_id, access_hash FROM sent_files WHERE session = ?1",
    )?;
    let mut rows = stmt.query([session])?;
    let mut files = Vec::new();
    while let Some(row) = rows.next()? {
        let md5: Vec<u8> = row.get(0)?;
        let md5: [u8; 16] = md5.as_slice().try_into().map_err(|_| {
            sent_file_corrupt(name, format!("an md5 is {} bytes, expected 16", md5.len()))
        })?;
        let code: i64 = row.get(2)?;
        let kind = FileKind::from_code(code)
            .ok_or_else(|| sent_file_corrupt(name, format!("unknown file kind {code}")))?;
        files.push((
            SentFileKey {
                md5,
                size: row.get(1)?,
                kind,
            },
            SentFile {
                id: row.get(3)?,
                access_hash: row.get(4)?,
            },
        ));
    }
    Ok(files)
}

fn write_sent_file(
    conn: &Connection,
    session: i64,
    key: &SentFileKey,
    file: &SentFile,
) -> SqlResult<()> {
    conn.prepare_cached(SET_SENT_FILE)?.execute(params![
        session,
        &key.md5[..],
        key.size,
        key.kind.code(),
        file.id,
        file.access_hash
    ])?;
    Ok(())
}

/// Deletes everything below a session row (the store does not rely on
/// `PRAGMA foreign_keys` for its cascades).
fn delete_children(conn: &Connection, session: i64) -> SqlResult<()> {
    for (table, _) in CHILD_TABLES {
        conn.prepare_cached(&format!("DELETE FROM {table} WHERE session = ?1"))?
            .execute([session])?;
    }
    Ok(())
}

/// The row id, creation and update times of a session, if it exists.
fn session_times(conn: &Connection, name: &str) -> SqlResult<Option<(i64, i64, i64)>> {
    Ok(conn
        .prepare_cached("SELECT id, created_at_ms, updated_at_ms FROM sessions WHERE name = ?1")?
        .query_row([name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?)
}

/// Writes the session row of an import; returns its row id.
fn write_session_row(
    conn: &Connection,
    name: &str,
    existing: Option<i64>,
    header: &SessionHeader,
    state: &UpdateState,
) -> SqlResult<i64> {
    let values = params![
        name,
        header.home_dc,
        header.self_user.map(|u| u.id),
        header.self_user.map(|u| u.is_bot),
        header.api_id,
        header.test_mode,
        header.takeout_id,
        header.created_at_ms,
        header.updated_at_ms,
        state.pts,
        state.qts,
        state.date,
        state.seq,
    ];
    match existing {
        Some(id) => {
            conn.prepare_cached(
                "UPDATE sessions SET home_dc = ?2, self_user_id = ?3, self_is_bot = ?4, \
                 api_id = ?5, test_mode = ?6, takeout_id = ?7, created_at_ms = ?8, \
                 updated_at_ms = ?9, pts = ?10, qts = ?11, date = ?12, seq = ?13 WHERE name = ?1",
            )?
            .execute(values)?;
            Ok(id)
        }
        None => {
            conn.prepare_cached(
                "INSERT INTO sessions (name, home_dc, self_user_id, self_is_bot, api_id, \
                 test_mode, takeout_id, created_at_ms, updated_at_ms, pts, qts, date, seq) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?
            .execute(values)?;
            Ok(conn.last_insert_rowid())
        }
    }
}

fn import_session(
    conn: &Connection,
    name: &str,
    data: &SessionData,
    mode: ImportMode,
    now_ms: i64,
) -> SqlResult<()> {
    let existing = session_times(conn, name)?;
    if mode == ImportMode::CreateOnly && existing.is_some() {
        return Err(Error::session_exists(name).into());
    }
    let (created, updated) = import_times(existing.map(|(_, c, u)| (c, u)), now_ms);
    if let Some((id, _, _)) = existing {
        delete_children(conn, id)?;
    }
    let header = SessionHeader::from_data(data, created, updated);
    let id = write_session_row(
        conn,
        name,
        existing.map(|(id, _, _)| id),
        &header,
        &data.update_state,
    )?;
    for dc in &data.dcs {
        write_dc(conn, id, dc)?;
    }
    write_channels(conn, id, &data.update_state.channels)?;
    // The data is canonical (no username or phone owned twice): its rows
    // and index entries are stored as they are.
    peers::write_rows(conn, id, &data.peers)?;
    let keys: Vec<(String, PeerId)> = data
        .peers
        .iter()
        .flat_map(|p| p.username_keys().into_iter().map(move |k| (k, p.id)))
        .collect();
    peers::add_usernames(conn, id, keys.iter().map(|(k, id)| (k.as_str(), *id)))?;
    for (key, file) in &data.sent_files {
        write_sent_file(conn, id, key, file)?;
    }
    Ok(())
}

fn export_session(conn: &Connection, name: &str) -> SqlResult<SessionData> {
    let stored = conn
        .prepare_cached(HEADER)?
        .query_row([name], |row| {
            Ok((row.get::<_, i64>(0)?, header_from_row(row, 1)))
        })
        .optional()?;
    let Some((id, header)) = stored else {
        return Err(not_found(name));
    };
    let header = header?;
    let mut peer_list = Vec::new();
    {
        let mut stmt = conn.prepare_cached(peers::ALL)?;
        let mut rows = stmt.query([id])?;
        while let Some(row) = rows.next()? {
            peer_list.push(peers::from_row(row, 0)?);
        }
    }
    let (pts, qts, date, seq) = conn
        .prepare_cached("SELECT pts, qts, date, seq FROM sessions WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
    let mut channels = BTreeMap::new();
    {
        let mut stmt =
            conn.prepare_cached("SELECT channel_id, pts FROM channel_pts WHERE session = ?1")?;
        let mut rows = stmt.query([id])?;
        while let Some(row) = rows.next()? {
            channels.insert(row.get(0)?, row.get(1)?);
        }
    }
    let mut data = SessionData {
        home_dc: header.home_dc,
        dcs: read_dcs(conn, id, name)?,
        self_user: header.self_user,
        api_id: header.api_id,
        test_mode: header.test_mode,
        takeout_id: header.takeout_id,
        update_state: UpdateState {
            pts,
            qts,
            date,
            seq,
            channels,
        },
        peers: peer_list,
        sent_files: read_sent_files(conn, id, name)?,
    };
    data.canonicalize();
    Ok(data)
}

fn copy_session(
    conn: &Connection,
    from: &str,
    to: &str,
    overwrite: bool,
    now_ms: i64,
) -> SqlResult<()> {
    let source = session_id(conn, from)?;
    let existing = session_times(conn, to)?;
    if !overwrite && existing.is_some() {
        return Err(Error::session_exists(to).into());
    }
    let (created, updated) = import_times(existing.map(|(_, c, u)| (c, u)), now_ms);
    let target = match existing {
        Some((id, _, _)) => {
            delete_children(conn, id)?;
            conn.prepare_cached(
                "UPDATE sessions SET (home_dc, self_user_id, self_is_bot, api_id, test_mode, \
                 takeout_id, pts, qts, date, seq) = (SELECT home_dc, self_user_id, self_is_bot, \
                 api_id, test_mode, takeout_id, pts, qts, date, seq FROM sessions WHERE id = ?2), \
                 created_at_ms = ?3, updated_at_ms = ?4 WHERE id = ?1",
            )?
            .execute(params![id, source, created, updated])?;
            id
        }
        None => {
            conn.prepare_cached(
                "INSERT INTO sessions (name, home_dc, self_user_id, self_is_bot, api_id, \
                 test_mode, takeout_id, created_at_ms, updated_at_ms, pts, qts, date, seq) \
                 SELECT ?1, home_dc, self_user_id, self_is_bot, api_id, test_mode, takeout_id, \
                 ?3, ?4, pts, qts, date, seq FROM sessions WHERE id = ?2",
            )?
            .execute(params![to, source, created, updated])?;
            conn.last_insert_rowid()
        }
    };
    for (table, columns) in CHILD_TABLES {
        conn.prepare_cached(&format!(
            "INSERT INTO {table} (session, {columns}) SELECT ?2, {columns} FROM {table} \
             WHERE session = ?1"
        ))?
        .execute(params![source, target])?;
    }
    Ok(())
}

fn stored_lease(conn: &Connection, session: &str) -> SqlResult<Option<LeaseInfo>> {
    Ok(conn
        .prepare_cached("SELECT owner, expires_at_ms FROM leases WHERE session = ?1")?
        .query_row([session], |r| {
            Ok(LeaseInfo {
                session: session.to_owned(),
                owner: r.get(0)?,
                expires_at_ms: r.get(1)?,
            })
        })
        .optional()?)
}

/// A `LEFT JOIN` lookup of one peer: `NotFound` when the session is
/// missing (no row), `None` when no peer matched.
fn lookup_one(
    conn: &Connection,
    sql: &str,
    name: &str,
    key: &dyn rusqlite::ToSql,
) -> SqlResult<Option<Peer>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params![name, key])?;
    let Some(row) = rows.next()? else {
        return Err(not_found(name));
    };
    peers::from_joined_row(row, 1)
}

#[async_trait]
impl SessionBackend for SqliteStore {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        let file = self.db.db().path().is_some();
        Capabilities::NONE
            .durable(file)
            .shared_between_processes(file)
            .atomic_multi_key_writes(true)
            .leases(true)
    }

    async fn list(&self) -> Result<Vec<String>> {
        self.db
            .read(|conn| {
                let mut stmt = conn.prepare_cached("SELECT name FROM sessions ORDER BY name")?;
                let names = stmt.query_map([], |r| r.get(0))?;
                Ok(names.collect::<rusqlite::Result<Vec<String>>>()?)
            })
            .await
    }

    async fn exists(&self, session: &str) -> Result<bool> {
        let name = session.to_owned();
        self.db
            .read(move |conn| {
                Ok(conn
                    .prepare_cached("SELECT 1 FROM sessions WHERE name = ?1")?
                    .query_row([&name], |_| Ok(()))
                    .optional()?
                    .is_some())
            })
            .await
    }

    async fn delete(&self, session: &str) -> Result<bool> {
        let name = session.to_owned();
        self.db
            .write(WriteSize::Long, move |conn| {
                let Some((id, _, _)) = session_times(conn, &name)? else {
                    return Ok(false);
                };
                delete_children(conn, id)?;
                conn.prepare_cached("DELETE FROM sessions WHERE id = ?1")?
                    .execute([id])?;
                Ok(true)
            })
            .await
    }

    async fn copy(&self, from: &str, to: &str, overwrite: bool, now_ms: i64) -> Result<()> {
        let (from, to) = (from.to_owned(), to.to_owned());
        self.db
            .write(WriteSize::Long, move |conn| {
                copy_session(conn, &from, &to, overwrite, now_ms)
            })
            .await
    }

    async fn flush(&self) -> Result<()> {
        self.db.flush().await
    }

    async fn export(&self, session: &str) -> Result<SessionData> {
        let name = session.to_owned();
        self.db
            .read_snapshot(move |conn| export_session(conn, &name))
            .await
    }

    async fn import(
        &self,
        session: &str,
        data: &SessionData,
        mode: ImportMode,
        now_ms: i64,
    ) -> Result<()> {
        let name = session.to_owned();
        let size = if data.peers.len() <= SHORT_BATCH {
            WriteSize::Short
        } else {
            WriteSize::Long
        };
        self.db
            .write_with(size, data, move |conn, data| {
                import_session(conn, &name, data, mode, now_ms)
            })
            .await
    }

    async fn header(&self, session: &str) -> Result<SessionHeader> {
        let name = session.to_owned();
        self.db
            .read(move |conn| {
                conn.prepare_cached(HEADER)?
                    .query_row([&name], |row| Ok(header_from_row(row, 1)))
                    .optional()?
                    .ok_or_else(|| not_found(&name))?
            })
            .await
    }

    async fn write_header(&self, session: &str, write: &HeaderWrite) -> Result<()> {
        let name = session.to_owned();
        let write = write.clone();
        self.db
            .write(WriteSize::Short, move |conn| {
                apply_header_write(conn, &name, &write).map(drop)
            })
            .await
    }

    async fn dc_options(&self, session: &str) -> Result<Vec<DcOption>> {
        let name = session.to_owned();
        self.db
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(DC_OPTIONS)?;
                let mut rows = stmt.query([&name])?;
                let mut dcs = Vec::new();
                let mut found = false;
                while let Some(row) = rows.next()? {
                    found = true;
                    dcs.extend(dc_from_row(row, 1, &name)?);
                }
                if !found {
                    return Err(not_found(&name));
                }
                Ok(dcs)
            })
            .await
    }

    async fn write_dc_option(
        &self,
        session: &str,
        dc: &DcOption,
        updated_at_ms: i64,
    ) -> Result<()> {
        let name = session.to_owned();
        let dc = dc.clone();
        self.db
            .write(WriteSize::Short, move |conn| {
                let id = apply_header_write(conn, &name, &HeaderWrite::at(updated_at_ms))?;
                write_dc(conn, id, &dc)
            })
            .await
    }

    async fn home(&self, session: &str) -> Result<(SessionHeader, Vec<DcOption>)> {
        let name = session.to_owned();
        self.db
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(HOME)?;
                let mut rows = stmt.query([&name])?;
                let mut header = None;
                let mut dcs = Vec::new();
                while let Some(row) = rows.next()? {
                    if header.is_none() {
                        header = Some(header_from_row(row, 0)?);
                    }
                    dcs.extend(dc_from_row(row, 8, &name)?);
                }
                let header = header.ok_or_else(|| not_found(&name))?;
                Ok((header, dcs))
            })
            .await
    }

    async fn home_auth_key(&self, session: &str) -> Result<Option<AuthKey>> {
        let name = session.to_owned();
        self.db
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(HOME_AUTH_KEY)?;
                let mut rows = stmt.query([&name])?;
                let row = rows.next()?.ok_or_else(|| not_found(&name))?;
                auth_key_from(row.get_ref(1)?, &name, row.get(0)?)
            })
            .await
    }

    async fn update_state(&self, session: &str) -> Result<UpdateState> {
        let name = session.to_owned();
        self.db
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(UPDATE_STATE)?;
                let mut rows = stmt.query([&name])?;
                let mut state: Option<UpdateState> = None;
                while let Some(row) = rows.next()? {
                    let state = match &mut state {
                        Some(state) => state,
                        None => state.insert(UpdateState {
                            pts: row.get(0)?,
                            qts: row.get(1)?,
                            date: row.get(2)?,
                            seq: row.get(3)?,
                            channels: BTreeMap::new(),
                        }),
                    };
                    if let Some(channel) = row.get::<_, Option<i64>>(4)? {
                        state.channels.insert(channel, row.get(5)?);
                    }
                }
                state.ok_or_else(|| not_found(&name))
            })
            .await
    }

    async fn write_update_state(&self, session: &str, write: &UpdateStateWrite) -> Result<()> {
        let name = session.to_owned();
        let write = write.clone();
        let size = match &write.channels {
            ChannelsWrite::Replace(channels) if channels.len() > SHORT_BATCH => WriteSize::Long,
            _ => WriteSize::Short,
        };
        self.db
            .write(size, move |conn| write_update_state(conn, &name, &write))
            .await
    }

    async fn peer(&self, session: &str, id: PeerId) -> Result<Option<Peer>> {
        let name = session.to_owned();
        let marked = id.marked();
        self.db
            .read(move |conn| lookup_one(conn, peers::BY_ID, &name, &marked))
            .await
    }

    async fn peers(&self, session: &str, ids: &[PeerId]) -> Result<Vec<Option<Peer>>> {
        if let [only] = ids {
            return Ok(vec![self.peer(session, *only).await?]);
        }
        let name = session.to_owned();
        let long = ids.len() > LONG_LOOKUP;
        let ids = ids.to_vec();
        let lookup = move |conn: &Connection| {
            let wanted: Rc<Vec<Value>> =
                Rc::new(ids.iter().map(|id| Value::Integer(id.marked())).collect());
            let mut stmt = conn.prepare_cached(peers::BY_IDS)?;
            let mut rows = stmt.query(params![&name, wanted])?;
            let mut found = BTreeMap::new();
            let mut exists = false;
            while let Some(row) = rows.next()? {
                exists = true;
                if let Some(peer) = peers::from_joined_row(row, 1)? {
                    found.insert(peer.id, peer);
                }
            }
            if !exists {
                return Err(not_found(&name));
            }
            Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
        };
        if long {
            // Many ids: a long read, off the calling thread.
            return self.db.read_snapshot(lookup).await;
        }
        self.db.read(lookup).await
    }

    async fn peer_by_username(&self, session: &str, key: &str) -> Result<Option<Peer>> {
        let (name, key) = (session.to_owned(), key.to_owned());
        self.db
            .read(move |conn| lookup_one(conn, peers::BY_USERNAME, &name, &key))
            .await
    }

    async fn peer_by_phone(&self, session: &str, phone: &str) -> Result<Option<Peer>> {
        let (name, phone) = (session.to_owned(), phone.to_owned());
        self.db
            .read(move |conn| lookup_one(conn, peers::BY_PHONE, &name, &phone))
            .await
    }

    async fn peer_count(&self, session: &str) -> Result<u64> {
        let name = session.to_owned();
        self.db
            .read(move |conn| {
                let count: i64 = conn
                    .prepare_cached(
                        "SELECT (SELECT count(*) FROM peers WHERE session = s.id) \
                         FROM sessions s WHERE s.name = ?1",
                    )?
                    .query_row([&name], |r| r.get(0))
                    .optional()?
                    .ok_or_else(|| not_found(&name))?;
                Ok(u64::try_from(count).unwrap_or(0))
            })
            .await
    }

    async fn cache_peers(&self, session: &str, batch: &PeerBatch) -> Result<()> {
        let name = session.to_owned();
        let size = if batch.peers().len() <= SHORT_BATCH {
            WriteSize::Short
        } else {
            WriteSize::Long
        };
        self.db
            .write_with(size, batch, move |conn, batch| {
                let id = session_id(conn, &name)?;
                peers::cache(conn, id, batch)
            })
            .await
    }

    async fn sent_file(&self, session: &str, key: &SentFileKey) -> Result<Option<SentFile>> {
        let name = session.to_owned();
        let key = *key;
        self.db
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(SENT_FILE)?;
                let mut rows =
                    stmt.query(params![&name, &key.md5[..], key.size, key.kind.code()])?;
                let Some(row) = rows.next()? else {
                    return Err(not_found(&name));
                };
                let Some(id) = row.get::<_, Option<i64>>(1)? else {
                    return Ok(None);
                };
                Ok(Some(SentFile {
                    id,
                    access_hash: row.get(2)?,
                }))
            })
            .await
    }

    async fn cache_sent_file(
        &self,
        session: &str,
        key: &SentFileKey,
        file: &SentFile,
    ) -> Result<()> {
        let name = session.to_owned();
        let (key, file) = (*key, *file);
        self.db
            .write(WriteSize::Short, move |conn| {
                let changed = conn
                    .prepare_cached(SET_SENT_FILE_BY_NAME)?
                    .execute(params![
                        &name,
                        &key.md5[..],
                        key.size,
                        key.kind.code(),
                        file.id,
                        file.access_hash
                    ])?;
                if changed == 0 {
                    return Err(not_found(&name));
                }
                Ok(())
            })
            .await
    }

    async fn acquire_lease(&self, session: &str, request: &LeaseRequest) -> Result<LeaseInfo> {
        let session = session.to_owned();
        let request = request.clone();
        self.db
            .write(WriteSize::Short, move |conn| {
                let current = stored_lease(conn, &session)?;
                let granted = request.decide(&session, current.as_ref())?;
                conn.prepare_cached(
                    "INSERT INTO leases (session, owner, expires_at_ms) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (session) DO UPDATE SET owner = excluded.owner, \
                     expires_at_ms = excluded.expires_at_ms",
                )?
                .execute(params![
                    &session,
                    &granted.owner,
                    granted.expires_at_ms
                ])?;
                Ok(granted)
            })
            .await
    }

    async fn release_lease(&self, session: &str, owner: &str, now_ms: i64) -> Result<bool> {
        let (session, owner) = (session.to_owned(), owner.to_owned());
        self.db
            .write(WriteSize::Short, move |conn| {
                let current = stored_lease(conn, &session)?;
                let (remove, live) = decide_release(current.as_ref(), &owner, now_ms);
                if remove {
                    conn.prepare_cached("DELETE FROM leases WHERE session = ?1")?
                        .execute([&session])?;
                }
                Ok(live)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers::tests::{assert_seeks, schema_connection};

    /// The session-level reads are index seeks, and the DC options come in
    /// id order without a sort.
    #[test]
    fn session_reads_are_index_seeks() {
        let conn = schema_connection();
        let name = "sqlite_autoindex_sessions_1";
        assert_seeks(&conn, HEADER, &[name]);
        assert_seeks(&conn, HOME, &[name, "PRIMARY KEY"]);
        assert_seeks(&conn, HOME_AUTH_KEY, &[name, "PRIMARY KEY"]);
        assert_seeks(&conn, DC_OPTIONS, &[name, "PRIMARY KEY"]);
        assert_seeks(&conn, UPDATE_STATE, &[name, "PRIMARY KEY"]);
        assert_seeks(&conn, SENT_FILE, &[name, "PRIMARY KEY"]);
        assert_seeks(&conn, WRITE_STATE_FIELDS, &[name]);
        assert_seeks(&conn, "SELECT id FROM sessions WHERE name = ?1", &[name]);
    }
}
