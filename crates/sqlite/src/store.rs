//! [`SqliteStore`]: the `SessionStore` implementation.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{SocketAddrV4, SocketAddrV6};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, Row, params};
use session_core::lease::{now_ms, validate_lease};
use session_core::model::{normalize_username, production_dcs};
use session_core::{
    AuthKey, Capabilities, DcOption, Error, FileKind, LeaseInfo, Peer, PeerId, Result, SelfUser,
    SentFile, SentFileKey, SessionData, SessionMeta, SessionStore, UpdateState, UpdateStateChange,
};

use crate::db::{Db, Flusher, R};
use crate::options::SqliteOptions;
use crate::peers;

/// Sessions in one SQLite file (or an in-memory database).
///
/// Opening is blocking (it creates the file and checks the schema); every
/// [`SessionStore`] call runs on Tokio's blocking pool. See the crate docs for
/// the schema, the durability guarantees and the concurrency model.
pub struct SqliteStore {
    db: Arc<Db>,
    _flusher: Option<Flusher>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.db.path())
            .field("durability", &self.db.options().durability)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the store in the file at `path` with default options, creating
    /// the file (mode 0600) when it does not exist.
    ///
    /// Fails with `UnsupportedSchemaVersion` for a file written by a newer
    /// mtsession, `Corrupt` for a file that is not SQLite or is damaged, and
    /// `InvalidInput` for an SQLite file that is not an mtsession store.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// Like [`open`](Self::open), with options.
    pub fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self> {
        let db = Db::open_file(path.as_ref(), options)?;
        let flusher = db.start_flusher()?;
        Ok(SqliteStore {
            db,
            _flusher: flusher,
        })
    }

    /// A private in-memory store: neither durable nor shared.
    pub fn open_in_memory() -> Result<Self> {
        let db = Db::open_memory(SqliteOptions::default())?;
        Ok(SqliteStore { db, _flusher: None })
    }

    /// The database file, or `None` for an in-memory store.
    pub fn path(&self) -> Option<&Path> {
        self.db.path()
    }

    /// The options the store was opened with.
    pub fn options(&self) -> SqliteOptions {
        *self.db.options()
    }
}

fn not_found(session: &str) -> crate::db::Fail {
    Error::session_not_found(session).into()
}

/// The row id of a session, if it exists.
fn session_row(conn: &Connection, name: &str) -> R<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT id FROM sessions WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?)
}

/// The row id of a session, or `NotFound`.
fn session_id(conn: &Connection, name: &str) -> R<i64> {
    session_row(conn, name)?.ok_or_else(|| not_found(name))
}

/// Records that session-level data changed.
fn touch(conn: &Connection, id: i64) -> R<()> {
    conn.prepare_cached(
        "UPDATE sessions SET updated_at_ms = max(updated_at_ms, ?2) WHERE id = ?1",
    )?
    .execute(params![id, now_ms()])?;
    Ok(())
}

/// Runs one `UPDATE sessions ... WHERE name = ?1` that also touches the
/// session; `NotFound` when no row matched.
fn update_session(
    conn: &Connection,
    name: &str,
    set: &str,
    values: &[&dyn rusqlite::ToSql],
) -> R<()> {
    let sql = format!(
        "UPDATE sessions SET {set}, updated_at_ms = max(updated_at_ms, ?2) WHERE name = ?1"
    );
    let now = now_ms();
    let mut all: Vec<&dyn rusqlite::ToSql> = vec![&name, &now];
    all.extend_from_slice(values);
    let changed = conn.prepare_cached(&sql)?.execute(all.as_slice())?;
    if changed == 0 {
        return Err(not_found(name));
    }
    Ok(())
}

fn dc_corrupt(session: &str, dc: i64, message: String) -> Error {
    Error::corrupt(
        format!("the sqlite dc_options table (session {session:?}, DC {dc})"),
        message,
    )
}

fn dc_from_row(row: &Row<'_>, session: &str) -> R<DcOption> {
    let id: i64 = row.get(0)?;
    let dc_id = i32::try_from(id)
        .map_err(|_| dc_corrupt(session, id, format!("DC id {id} is out of range")))?;
    let ipv4 = match row.get::<_, Option<String>>(1)? {
        None => None,
        Some(text) => Some(text.parse::<SocketAddrV4>().map_err(|_| {
            dc_corrupt(
                session,
                id,
                format!("IPv4 address {text:?} is not addr:port"),
            )
        })?),
    };
    let ipv6 = match row.get::<_, Option<String>>(2)? {
        None => None,
        Some(text) => Some(text.parse::<SocketAddrV6>().map_err(|_| {
            dc_corrupt(
                session,
                id,
                format!("IPv6 address {text:?} is not [addr]:port"),
            )
        })?),
    };
    let auth_key = match row.get_ref(3)? {
        ValueRef::Null => None,
        ValueRef::Blob(bytes) => Some(AuthKey::from_slice(bytes).map_err(|_| {
            dc_corrupt(
                session,
                id,
                format!("the auth key is {} bytes long, expected 256", bytes.len()),
            )
        })?),
        _ => return Err(dc_corrupt(session, id, "the auth key is not a blob".to_owned()).into()),
    };
    Ok(DcOption {
        id: dc_id,
        ipv4,
        ipv6,
        auth_key,
    })
}

fn read_dcs(conn: &Connection, id: i64, session: &str) -> R<Vec<DcOption>> {
    let mut stmt = conn.prepare_cached(
        "SELECT dc_id, ipv4, ipv6, auth_key FROM dc_options WHERE session = ?1 ORDER BY dc_id",
    )?;
    let mut rows = stmt.query([id])?;
    let mut dcs = Vec::new();
    while let Some(row) = rows.next()? {
        dcs.push(dc_from_row(row, session)?);
    }
    Ok(dcs)
}

fn write_dc(conn: &Connection, id: i64, dc: &DcOption) -> R<()> {
    conn.prepare_cached(
        "INSERT INTO dc_options (session, dc_id, ipv4, ipv6, auth_key) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (session, dc_id) DO UPDATE SET ipv4 = excluded.ipv4, ipv6 = excluded.ipv6, \
         auth_key = excluded.auth_key",
    )?
    .execute(params![
        id,
        dc.id,
        dc.ipv4.map(|a| a.to_string()),
        dc.ipv6.map(|a| a.to_string()),
        dc.auth_key.as_ref().map(|k| &k.expose()[..]),
    ])?;
    Ok(())
}

fn read_update_state(conn: &Connection, id: i64) -> R<UpdateState> {
    let (pts, qts, date, seq) = conn
        .prepare_cached("SELECT pts, qts, date, seq FROM sessions WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
    let mut channels = BTreeMap::new();
    let mut stmt = conn.prepare_cached(
        "SELECT channel_id, pts FROM channel_pts WHERE session = ?1 ORDER BY channel_id",
    )?;
    let mut rows = stmt.query([id])?;
    while let Some(row) = rows.next()? {
        channels.insert(row.get(0)?, row.get(1)?);
    }
    Ok(UpdateState {
        pts,
        qts,
        date,
        seq,
        channels,
    })
}

fn write_channel(conn: &Connection, id: i64, channel: i64, pts: i32) -> R<()> {
    conn.prepare_cached(
        "INSERT INTO channel_pts (session, channel_id, pts) VALUES (?1, ?2, ?3) \
         ON CONFLICT (session, channel_id) DO UPDATE SET pts = excluded.pts",
    )?
    .execute(params![id, channel, pts])?;
    Ok(())
}

fn apply_update_state(conn: &Connection, name: &str, change: &UpdateStateChange) -> R<()> {
    let set = |sql: &str, values: &[&dyn rusqlite::ToSql]| -> R<()> {
        let mut all: Vec<&dyn rusqlite::ToSql> = vec![&name];
        all.extend_from_slice(values);
        if conn.prepare_cached(sql)?.execute(all.as_slice())? == 0 {
            return Err(not_found(name));
        }
        Ok(())
    };
    match change {
        UpdateStateChange::All(state) => {
            set(
                "UPDATE sessions SET pts = ?2, qts = ?3, date = ?4, seq = ?5 WHERE name = ?1",
                &[&state.pts, &state.qts, &state.date, &state.seq],
            )?;
            let id = session_id(conn, name)?;
            conn.prepare_cached("DELETE FROM channel_pts WHERE session = ?1")?
                .execute([id])?;
            for (channel, pts) in &state.channels {
                write_channel(conn, id, *channel, *pts)?;
            }
        }
        UpdateStateChange::Primary { pts, date, seq } => set(
            "UPDATE sessions SET pts = ?2, date = ?3, seq = ?4 WHERE name = ?1",
            &[pts, date, seq],
        )?,
        UpdateStateChange::Secondary { qts } => {
            set("UPDATE sessions SET qts = ?2 WHERE name = ?1", &[qts])?;
        }
        UpdateStateChange::Channel { id: channel, pts } => {
            let id = session_id(conn, name)?;
            write_channel(conn, id, *channel, *pts)?;
        }
        UpdateStateChange::RemoveChannel { id: channel } => {
            let id = session_id(conn, name)?;
            conn.prepare_cached("DELETE FROM channel_pts WHERE session = ?1 AND channel_id = ?2")?
                .execute(params![id, channel])?;
        }
    }
    Ok(())
}

fn sent_file_corrupt(session: &str, message: String) -> Error {
    Error::corrupt(
        format!("the sqlite sent_files table (session {session:?})"),
        message,
    )
}

fn read_sent_files(conn: &Connection, id: i64, session: &str) -> R<Vec<(SentFileKey, SentFile)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT md5, size, kind, file_id, access_hash FROM sent_files WHERE session = ?1",
    )?;
    let mut rows = stmt.query([id])?;
    let mut files = Vec::new();
    while let Some(row) = rows.next()? {
        let md5: Vec<u8> = row.get(0)?;
        let md5: [u8; 16] = md5.as_slice().try_into().map_err(|_| {
            sent_file_corrupt(
                session,
                format!("an md5 is {} bytes, expected 16", md5.len()),
            )
        })?;
        let code: i64 = row.get(2)?;
        let kind = FileKind::from_code(code)
            .ok_or_else(|| sent_file_corrupt(session, format!("unknown file kind {code}")))?;
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

fn write_sent_file(conn: &Connection, id: i64, key: &SentFileKey, file: &SentFile) -> R<()> {
    conn.prepare_cached(
        "INSERT INTO sent_files (session, md5, size, kind, file_id, access_hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (session, md5, size, kind) \
         DO UPDATE SET file_id = excluded.file_id, access_hash = excluded.access_hash",
    )?
    .execute(params![
        id,
        &key.md5[..],
        key.size,
        key.kind.code(),
        file.id,
        file.access_hash
    ])?;
    Ok(())
}

/// Inserts a fresh session row with default data; returns its row id.
fn insert_session(conn: &Connection, name: &str, data: &SessionData, created: i64) -> R<i64> {
    conn.prepare_cached(
        "INSERT INTO sessions (name, home_dc, self_user_id, self_is_bot, api_id, test_mode, \
         takeout_id, created_at_ms, updated_at_ms, pts, qts, date, seq) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        name,
        data.home_dc,
        data.self_user.map(|u| u.id),
        data.self_user.map(|u| u.is_bot),
        data.api_id,
        data.test_mode,
        data.takeout_id,
        created,
        now_ms().max(created),
        data.update_state.pts,
        data.update_state.qts,
        data.update_state.date,
        data.update_state.seq,
    ])?;
    Ok(conn.last_insert_rowid())
}

/// Writes everything below the session row.
fn insert_children(conn: &Connection, id: i64, data: &SessionData) -> R<()> {
    for dc in &data.dcs {
        write_dc(conn, id, dc)?;
    }
    for (channel, pts) in &data.update_state.channels {
        write_channel(conn, id, *channel, *pts)?;
    }
    for peer in &data.peers {
        peers::upsert(conn, id, peer)?;
    }
    for (key, file) in &data.sent_files {
        write_sent_file(conn, id, key, file)?;
    }
    Ok(())
}

fn export_session(conn: &Connection, name: &str) -> R<SessionData> {
    let row = conn
        .prepare_cached(
            "SELECT id, home_dc, self_user_id, self_is_bot, api_id, test_mode, takeout_id \
             FROM sessions WHERE name = ?1",
        )?
        .query_row([name], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i32>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, Option<bool>>(3)?,
                r.get::<_, Option<i32>>(4)?,
                r.get::<_, bool>(5)?,
                r.get::<_, Option<i64>>(6)?,
            ))
        })
        .optional()?;
    let Some((id, home_dc, self_id, is_bot, api_id, test_mode, takeout_id)) = row else {
        return Err(not_found(name));
    };
    let mut peer_list = Vec::new();
    {
        let mut stmt = conn.prepare_cached(peers::ALL)?;
        let mut rows = stmt.query([id])?;
        while let Some(row) = rows.next()? {
            peer_list.push(peers::from_row(row, 0)?);
        }
    }
    let mut data = SessionData {
        home_dc,
        dcs: read_dcs(conn, id, name)?,
        self_user: self_id.map(|id| SelfUser {
            id,
            is_bot: is_bot.unwrap_or(false),
        }),
        api_id,
        test_mode,
        takeout_id,
        update_state: read_update_state(conn, id)?,
        peers: peer_list,
        sent_files: read_sent_files(conn, id, name)?,
    };
    data.canonicalize();
    Ok(data)
}

fn import_session(conn: &Connection, name: &str, data: &SessionData) -> R<()> {
    let existing = conn
        .prepare_cached("SELECT id, created_at_ms FROM sessions WHERE name = ?1")?
        .query_row([name], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
        .optional()?;
    let created = match existing {
        Some((id, created)) => {
            // Delete and re-insert the row: the cascade empties every table below it.
            conn.prepare_cached("DELETE FROM sessions WHERE id = ?1")?
                .execute([id])?;
            created
        }
        None => now_ms(),
    };
    let id = insert_session(conn, name, data, created)?;
    insert_children(conn, id, data)
}

fn copy_session(conn: &Connection, from: &str, to: &str, overwrite: bool) -> R<()> {
    let source = session_id(conn, from)?;
    if from == to {
        return if overwrite {
            Ok(())
        } else {
            Err(Error::session_exists(to).into())
        };
    }
    if let Some(target) = session_row(conn, to)? {
        if !overwrite {
            return Err(Error::session_exists(to).into());
        }
        conn.prepare_cached("DELETE FROM sessions WHERE id = ?1")?
            .execute([target])?;
    }
    let now = now_ms();
    conn.prepare_cached(
        "INSERT INTO sessions (name, home_dc, self_user_id, self_is_bot, api_id, test_mode, \
         takeout_id, created_at_ms, updated_at_ms, pts, qts, date, seq) \
         SELECT ?2, home_dc, self_user_id, self_is_bot, api_id, test_mode, takeout_id, ?3, \
         max(updated_at_ms, ?3), pts, qts, date, seq FROM sessions WHERE id = ?1",
    )?
    .execute(params![source, to, now])?;
    let target = conn.last_insert_rowid();
    for (table, columns) in [
        ("dc_options", "dc_id, ipv4, ipv6, auth_key"),
        ("channel_pts", "channel_id, pts"),
        (
            "peers",
            "id, kind, hash, hash_is_min, usernames, phone, name, last_seen",
        ),
        ("peer_usernames", "username_lower, peer_id"),
        ("sent_files", "md5, size, kind, file_id, access_hash"),
    ] {
        conn.prepare_cached(&format!(
            "INSERT INTO {table} (session, {columns}) SELECT ?2, {columns} FROM {table} \
             WHERE session = ?1"
        ))?
        .execute(params![source, target])?;
    }
    Ok(())
}

/// Takes or renews a lease with one compare-and-set upsert.
fn acquire_lease(conn: &Connection, session: &str, owner: &str, ttl_ms: i64) -> R<LeaseInfo> {
    let now = now_ms();
    let expires_at_ms = now.saturating_add(ttl_ms);
    let changed = conn
        .prepare_cached(
            "INSERT INTO leases (session, owner, expires_at_ms) VALUES (?1, ?2, ?3) \
             ON CONFLICT (session) DO UPDATE SET owner = excluded.owner, \
             expires_at_ms = excluded.expires_at_ms \
             WHERE leases.owner = excluded.owner OR leases.expires_at_ms <= ?4",
        )?
        .execute(params![session, owner, expires_at_ms, now])?;
    if changed == 0 {
        let (holder, until_ms) = conn
            .prepare_cached("SELECT owner, expires_at_ms FROM leases WHERE session = ?1")?
            .query_row([session], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })?;
        return Err(Error::LeaseHeld {
            session: session.to_owned(),
            owner: holder,
            until_ms,
        }
        .into());
    }
    Ok(LeaseInfo {
        session: session.to_owned(),
        owner: owner.to_owned(),
        expires_at_ms,
    })
}

fn release_lease(conn: &Connection, session: &str, owner: &str) -> R<bool> {
    let expires: Option<i64> = conn
        .prepare_cached(
            "DELETE FROM leases WHERE session = ?1 AND owner = ?2 RETURNING expires_at_ms",
        )?
        .query_row([session, owner], |r| r.get(0))
        .optional()?;
    Ok(expires.is_some_and(|at| at > now_ms()))
}

#[async_trait]
impl SessionStore for SqliteStore {
    fn backend_name(&self) -> &'static str {
        crate::db::BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        let file = self.db.path().is_some();
        Capabilities::NONE
            .durable(file)
            .shared_between_processes(file)
            .atomic_multi_key_writes(true)
            .leases(true)
    }

    async fn list(&self) -> Result<Vec<String>> {
        self.db
            .read_one(|conn| {
                let mut stmt = conn.prepare_cached("SELECT name FROM sessions ORDER BY name")?;
                let names = stmt.query_map([], |r| r.get(0))?;
                Ok(names.collect::<rusqlite::Result<Vec<String>>>()?)
            })
            .await
    }

    async fn exists(&self, session: &str) -> Result<bool> {
        let name = session.to_owned();
        self.db
            .read_one(move |conn| Ok(session_row(conn, &name)?.is_some()))
            .await
    }

    async fn create(&self, session: &str) -> Result<()> {
        let name = session.to_owned();
        self.db
            .write(move |conn| {
                if session_row(conn, &name)?.is_some() {
                    return Err(Error::session_exists(&name).into());
                }
                let data = SessionData::default();
                let now = now_ms();
                let id = insert_session(conn, &name, &data, now)?;
                for dc in production_dcs() {
                    write_dc(conn, id, &dc)?;
                }
                Ok(())
            })
            .await
    }

    async fn delete(&self, session: &str) -> Result<bool> {
        let name = session.to_owned();
        self.db
            .write(move |conn| {
                Ok(conn
                    .prepare_cached("DELETE FROM sessions WHERE name = ?1")?
                    .execute([&name])?
                    > 0)
            })
            .await
    }

    async fn copy(&self, from: &str, to: &str, overwrite: bool) -> Result<()> {
        let (from, to) = (from.to_owned(), to.to_owned());
        self.db
            .write(move |conn| copy_session(conn, &from, &to, overwrite))
            .await
    }

    async fn flush(&self) -> Result<()> {
        let db = Arc::clone(&self.db);
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle
                .spawn_blocking(move || db.sync_barrier_blocking())
                .await
                .map_err(|e| Error::backend(crate::db::BACKEND, e))?,
            Err(_) => db.sync_barrier_blocking(),
        }
    }

    async fn export(&self, session: &str) -> Result<SessionData> {
        let name = session.to_owned();
        self.db.read(move |conn| export_session(conn, &name)).await
    }

    async fn import(&self, session: &str, data: &SessionData) -> Result<()> {
        let name = session.to_owned();
        let data = data.clone();
        self.db
            .write(move |conn| import_session(conn, &name, &data))
            .await
    }

    async fn home_dc(&self, session: &str) -> Result<i32> {
        let name = session.to_owned();
        self.db
            .read_one(move |conn| {
                conn.prepare_cached("SELECT home_dc FROM sessions WHERE name = ?1")?
                    .query_row([&name], |r| r.get(0))
                    .optional()?
                    .ok_or_else(|| not_found(&name))
            })
            .await
    }

    async fn set_home_dc(&self, session: &str, dc_id: i32) -> Result<()> {
        let name = session.to_owned();
        self.db
            .write(move |conn| update_session(conn, &name, "home_dc = ?3", &[&dc_id]))
            .await
    }

    async fn dc_options(&self, session: &str) -> Result<Vec<DcOption>> {
        let name = session.to_owned();
        self.db
            .read(move |conn| {
                let id = session_id(conn, &name)?;
                read_dcs(conn, id, &name)
            })
            .await
    }

    async fn set_dc_option(&self, session: &str, dc: &DcOption) -> Result<()> {
        let name = session.to_owned();
        let dc = dc.clone();
        self.db
            .write(move |conn| {
                let id = session_id(conn, &name)?;
                write_dc(conn, id, &dc)?;
                touch(conn, id)
            })
            .await
    }

    async fn self_user(&self, session: &str) -> Result<Option<SelfUser>> {
        let name = session.to_owned();
        self.db
            .read_one(move |conn| {
                let row = conn
                    .prepare_cached(
                        "SELECT self_user_id, self_is_bot FROM sessions WHERE name = ?1",
                    )?
                    .query_row([&name], |r| {
                        Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, Option<bool>>(1)?))
                    })
                    .optional()?;
                let (id, is_bot) = row.ok_or_else(|| not_found(&name))?;
                Ok(id.map(|id| SelfUser {
                    id,
                    is_bot: is_bot.unwrap_or(false),
                }))
            })
            .await
    }

    async fn set_self_user(&self, session: &str, user: Option<SelfUser>) -> Result<()> {
        let name = session.to_owned();
        self.db
            .write(move |conn| {
                let id = user.map(|u| u.id);
                let is_bot = user.map(|u| u.is_bot);
                update_session(
                    conn,
                    &name,
                    "self_user_id = ?3, self_is_bot = ?4",
                    &[&id, &is_bot],
                )
            })
            .await
    }

    async fn metadata(&self, session: &str) -> Result<SessionMeta> {
        let name = session.to_owned();
        self.db
            .read_one(move |conn| {
                conn.prepare_cached(
                    "SELECT api_id, test_mode, created_at_ms, updated_at_ms FROM sessions \
                     WHERE name = ?1",
                )?
                .query_row([&name], |r| {
                    Ok(SessionMeta {
                        api_id: r.get(0)?,
                        test_mode: r.get(1)?,
                        created_at_ms: r.get(2)?,
                        updated_at_ms: r.get(3)?,
                    })
                })
                .optional()?
                .ok_or_else(|| not_found(&name))
            })
            .await
    }

    async fn set_metadata(
        &self,
        session: &str,
        api_id: Option<i32>,
        test_mode: bool,
    ) -> Result<()> {
        let name = session.to_owned();
        self.db
            .write(move |conn| {
                update_session(
                    conn,
                    &name,
                    "api_id = ?3, test_mode = ?4",
                    &[&api_id, &test_mode],
                )
            })
            .await
    }

    async fn takeout_id(&self, session: &str) -> Result<Option<i64>> {
        let name = session.to_owned();
        self.db
            .read_one(move |conn| {
                conn.prepare_cached("SELECT takeout_id FROM sessions WHERE name = ?1")?
                    .query_row([&name], |r| r.get(0))
                    .optional()?
                    .ok_or_else(|| not_found(&name))
            })
            .await
    }

    async fn set_takeout_id(&self, session: &str, takeout_id: Option<i64>) -> Result<()> {
        let name = session.to_owned();
        self.db
            .write(move |conn| update_session(conn, &name, "takeout_id = ?3", &[&takeout_id]))
            .await
    }

    async fn update_state(&self, session: &str) -> Result<UpdateState> {
        let name = session.to_owned();
        self.db
            .read(move |conn| {
                let id = session_id(conn, &name)?;
                read_update_state(conn, id)
            })
            .await
    }

    async fn set_update_state(&self, session: &str, change: &UpdateStateChange) -> Result<()> {
        let name = session.to_owned();
        let change = change.clone();
        self.db
            .write(move |conn| apply_update_state(conn, &name, &change))
            .await
    }

    async fn cache_peers(&self, session: &str, peers: &[Peer]) -> Result<()> {
        let name = session.to_owned();
        let batch = peers.to_vec();
        self.db
            .write(move |conn| {
                let id = session_id(conn, &name)?;
                for peer in &batch {
                    peers::upsert(conn, id, peer)?;
                }
                Ok(())
            })
            .await
    }

    async fn peers(&self, session: &str, ids: &[PeerId]) -> Result<Vec<Option<Peer>>> {
        let name = session.to_owned();
        if let [only] = ids {
            // One statement: no read transaction needed.
            let marked = only.marked();
            return self
                .db
                .read_one(move |conn| {
                    Ok(vec![lookup_joined(
                        conn,
                        peers::BY_ID_JOINED,
                        &name,
                        &marked,
                    )?])
                })
                .await;
        }
        let ids = ids.to_vec();
        self.db
            .read(move |conn| {
                let id = session_id(conn, &name)?;
                ids.iter()
                    .map(|peer| peers::load(conn, id, peer.marked()))
                    .collect()
            })
            .await
    }

    async fn peer_by_username(&self, session: &str, username: &str) -> Result<Option<Peer>> {
        let name = session.to_owned();
        let key = normalize_username(username);
        self.db
            .read_one(move |conn| lookup_joined(conn, peers::BY_USERNAME, &name, &key))
            .await
    }

    async fn peer_by_phone(&self, session: &str, phone: &str) -> Result<Option<Peer>> {
        let name = session.to_owned();
        let phone = phone.to_owned();
        self.db
            .read_one(move |conn| lookup_joined(conn, peers::BY_PHONE, &name, &phone))
            .await
    }

    async fn peer_count(&self, session: &str) -> Result<u64> {
        let name = session.to_owned();
        self.db
            .read(move |conn| {
                let id = session_id(conn, &name)?;
                let count: i64 = conn
                    .prepare_cached("SELECT count(*) FROM peers WHERE session = ?1")?
                    .query_row([id], |r| r.get(0))?;
                Ok(u64::try_from(count).unwrap_or(0))
            })
            .await
    }

    async fn sent_file(&self, session: &str, key: &SentFileKey) -> Result<Option<SentFile>> {
        let name = session.to_owned();
        let key = *key;
        self.db
            .read(move |conn| {
                let id = session_id(conn, &name)?;
                Ok(conn
                    .prepare_cached(
                        "SELECT file_id, access_hash FROM sent_files \
                         WHERE session = ?1 AND md5 = ?2 AND size = ?3 AND kind = ?4",
                    )?
                    .query_row(params![id, &key.md5[..], key.size, key.kind.code()], |r| {
                        Ok(SentFile {
                            id: r.get(0)?,
                            access_hash: r.get(1)?,
                        })
                    })
                    .optional()?)
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
            .write(move |conn| {
                let id = session_id(conn, &name)?;
                write_sent_file(conn, id, &key, &file)
            })
            .await
    }

    async fn acquire_lease(&self, session: &str, owner: &str, ttl: Duration) -> Result<LeaseInfo> {
        validate_lease(owner, ttl)?;
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let (session, owner) = (session.to_owned(), owner.to_owned());
        self.db
            .write(move |conn| acquire_lease(conn, &session, &owner, ttl_ms))
            .await
    }

    async fn release_lease(&self, session: &str, owner: &str) -> Result<bool> {
        let (session, owner) = (session.to_owned(), owner.to_owned());
        self.db
            .write(move |conn| release_lease(conn, &session, &owner))
            .await
    }
}

/// Runs a `sessions LEFT JOIN ... peers` lookup: `NotFound` when the session
/// is missing, `None` when no peer matched.
fn lookup_joined(
    conn: &Connection,
    sql: &str,
    name: &str,
    key: &dyn rusqlite::ToSql,
) -> R<Option<Peer>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params![name, key])?;
    let Some(row) = rows.next()? else {
        return Err(not_found(name));
    };
    if row.get_ref(1)? == ValueRef::Null {
        return Ok(None);
    }
    Ok(Some(peers::from_row(row, 1)?))
}
