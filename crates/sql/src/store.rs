//! [`SqlStore`]: the [`SessionBackend`] over sea-orm.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{SocketAddrV4, SocketAddrV6};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sea_orm::{
    AccessMode, ConnectionTrait, DatabaseConnection, DatabaseTransaction, IsolationLevel,
    QueryResult, SqliteTransactionMode, TransactionOptions, TransactionTrait, Value,
};
use session_core::backend::{decide_release, import_times};
use session_core::{
    AuthKey, Capabilities, ChannelsWrite, DcOption, Error, FileKind, HeaderWrite, ImportMode,
    LeaseInfo, LeaseRequest, OpenMode, Peer, PeerBatch, PeerId, Result, SelfUser, SentFile,
    SentFileKey, SessionBackend, SessionData, SessionHeader, UpdateState, UpdateStateWrite,
};

use crate::config::{Engine, Settings, SqlStoreBuilder, Target};
use crate::connect::{self, Health};
use crate::error::{Access, ErrorMapper, Fail, R, Verdict, is_unique_violation};
use crate::migration::{self, SCHEMA_VERSION, Tables};
use crate::peers::{self, PeerSql, insert_rows};
use crate::sql::{Sql, greatest, lock_clause, numbered, upsert};

/// Attempts a call makes at most after deadlocks and serialization
/// failures (while the busy timeout lasts).
const MAX_ATTEMPTS: u32 = 50;

tokio::task_local! {
    /// Set once an attempt starts its `COMMIT`: if it runs out of time
    /// then, the transaction may have been committed.
    static COMMITTING: Arc<AtomicBool>;
}

/// A session store in SQLite, PostgreSQL or MySQL/MariaDB tables, through sea-orm.
///
/// Open one with [`SqlStore::open`] or [`SqlStore::builder`], and use it
/// through a [`Store`](session_core::Store) (`Store::new(store)`, or
/// `store.open("name")` for one session). Cloning is cheap (the pool is
/// shared).
#[derive(Clone)]
pub struct SqlStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    engine: Engine,
    tables: Tables,
    q: Queries,
    peers: PeerSql,
    errors: ErrorMapper,
    health: Arc<Health>,
    mode: OpenMode,
    busy_timeout: Duration,
    /// Servers: how long one attempt of a call may wait for answers.
    response_timeout: Option<Duration>,
    /// SQLite: writers of this process take turns here, so that only other
    /// processes ever meet a locked file.
    writer: Option<tokio::sync::Mutex<()>>,
    /// A private in-memory SQLite database: neither durable nor shared.
    in_memory: bool,
}

impl fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStore")
            .field("engine", &self.inner.engine)
            .field("place", &self.inner.errors.place)
            .field("table_prefix", &self.inner.tables.prefix)
            .field("mode", &self.inner.mode)
            .finish_non_exhaustive()
    }
}

/// The header columns, in the order [`header_from`] reads them.
const HEADER: &str = "home_dc, self_user_id, self_is_bot, api_id, test_mode, takeout_id, \
     created_at_ms, updated_at_ms";

/// The session row's columns, as an import writes them.
const SESSION_COLUMNS: [&str; 13] = [
    "session",
    "home_dc",
    "self_user_id",
    "self_is_bot",
    "api_id",
    "test_mode",
    "takeout_id",
    "created_at_ms",
    "updated_at_ms",
    "state_pts",
    "state_qts",
    "state_date",
    "state_seq",
];

/// The tables below `sessions`, parents first, with their columns besides `session`.
const CHILD_TABLES: [(&str, &str); 5] = [
    ("dc_options", "dc_id, ipv4, ipv6, auth_key"),
    ("channel_pts", "channel_id, pts"),
    (
        "peers",
        "id, kind, hash, hash_is_min, usernames_known, phone, name, last_seen",
    ),
    ("peer_usernames", "username_lower, peer_id, pos, username"),
    ("sent_files", "md5, size, kind, file_id, access_hash"),
];

/// The statement texts that do not change between calls, numbered for the
/// engine: each is prepared once per connection.
#[derive(Debug)]
struct Queries {
    list: String,
    exists: String,
    delete: String,
    header: String,
    home: String,
    update_state: String,
    write_state_fields: String,
    set_channel: String,
    remove_channel: String,
    delete_channels: String,
    touch: String,
    set_dc: String,
    /// PostgreSQL: the DC and the session's time in one statement.
    set_dc_touching: String,
    sent_file: String,
    cache_sent_file: String,
    peer_count: String,
    lock_session: String,
    session_times: String,
    insert_session: String,
    delete_session: String,
    lease: String,
    insert_lease: String,
    update_lease: String,
    delete_lease: String,
    export_state: String,
    export_dcs: String,
    export_channels: String,
    export_files: String,
    copy_session: String,
    copy_children: Vec<String>,
}

impl Queries {
    fn new(engine: Engine, t: &Tables) -> Self {
        let q = |text: String| numbered(engine, &text);
        let lock = lock_clause(engine);
        let max = greatest(engine);
        let sessions = &t.sessions;
        Queries {
            list: q(format!("SELECT session FROM {sessions} ORDER BY session")),
            exists: q(format!("SELECT 1 FROM {sessions} WHERE session = ?")),
            delete: q(format!("DELETE FROM {sessions} WHERE session = ?")),
            header: q(format!("SELECT {HEADER} FROM {sessions} WHERE session = ?")),
            home: q(format!(
                "SELECT s.home_dc, s.self_user_id, s.self_is_bot, s.api_id, s.test_mode, \
                 s.takeout_id, s.created_at_ms, s.updated_at_ms, d.dc_id, d.ipv4, d.ipv6, \
                 d.auth_key FROM {sessions} s LEFT JOIN {} d ON d.session = s.session \
                 WHERE s.session = ?",
                t.dc_options
            )),
            update_state: q(format!(
                "SELECT s.state_pts, s.state_qts, s.state_date, s.state_seq, c.channel_id, c.pts \
                 FROM {sessions} s LEFT JOIN {} c ON c.session = s.session WHERE s.session = ?",
                t.channel_pts
            )),
            write_state_fields: q(format!(
                "UPDATE {sessions} SET state_pts = COALESCE(?, state_pts), \
                 state_qts = COALESCE(?, state_qts), state_date = COALESCE(?, state_date), \
                 state_seq = COALESCE(?, state_seq) WHERE session = ?"
            )),
            set_channel: q(format!(
                "INSERT INTO {} (session, channel_id, pts) SELECT session, ?, ? FROM {sessions} \
                 WHERE session = ?{}",
                t.channel_pts,
                upsert(engine, &["session", "channel_id"], &["pts"])
            )),
            remove_channel: q(format!(
                "DELETE FROM {} WHERE session = ? AND channel_id = ?",
                t.channel_pts
            )),
            delete_channels: q(format!("DELETE FROM {} WHERE session = ?", t.channel_pts)),
            touch: q(format!(
                "UPDATE {sessions} SET updated_at_ms = {max}(updated_at_ms, ?) WHERE session = ?"
            )),
            set_dc: q(format!(
                "INSERT INTO {} (session, dc_id, ipv4, ipv6, auth_key) VALUES (?, ?, ?, ?, ?){}",
                t.dc_options,
                upsert(engine, &["session", "dc_id"], &["ipv4", "ipv6", "auth_key"])
            )),
            set_dc_touching: q(format!(
                "WITH s AS (UPDATE {sessions} SET updated_at_ms = {max}(updated_at_ms, ?) \
                 WHERE session = ? RETURNING session) \
                 INSERT INTO {} (session, dc_id, ipv4, ipv6, auth_key) \
                 SELECT s.session, ?, ?, ?, ? FROM s{}",
                t.dc_options,
                upsert(engine, &["session", "dc_id"], &["ipv4", "ipv6", "auth_key"])
            )),
            sent_file: q(format!(
                "SELECT f.file_id, f.access_hash FROM {sessions} s LEFT JOIN {} f \
                 ON f.session = s.session AND f.md5 = ? AND f.size = ? AND f.kind = ? \
                 WHERE s.session = ?",
                t.sent_files
            )),
            cache_sent_file: q(format!(
                "INSERT INTO {} (session, md5, size, kind, file_id, access_hash) \
                 SELECT session, ?, ?, ?, ?, ? FROM {sessions} WHERE session = ?{}",
                t.sent_files,
                upsert(
                    engine,
                    &["session", "md5", "size", "kind"],
                    &["file_id", "access_hash"]
                )
            )),
            peer_count: q(format!(
                "SELECT (SELECT COUNT(*) FROM {} p WHERE p.session = s.session) \
                 FROM {sessions} s WHERE s.session = ?",
                t.peers
            )),
            lock_session: q(format!("SELECT 1 FROM {sessions} WHERE session = ?{lock}")),
            session_times: q(format!(
                "SELECT session, created_at_ms, updated_at_ms FROM {sessions} \
                 WHERE session IN (?, ?){lock}"
            )),
            insert_session: q(format!(
                "INSERT INTO {sessions} ({}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                SESSION_COLUMNS.join(", ")
            )),
            delete_session: q(format!("DELETE FROM {sessions} WHERE session = ?")),
            lease: q(format!(
                "SELECT owner, expires_at_ms FROM {} WHERE session = ?{lock}",
                t.leases
            )),
            insert_lease: q(format!(
                "INSERT INTO {} (session, owner, expires_at_ms) VALUES (?, ?, ?)",
                t.leases
            )),
            update_lease: q(format!(
                "UPDATE {} SET owner = ?, expires_at_ms = ? WHERE session = ?",
                t.leases
            )),
            delete_lease: q(format!("DELETE FROM {} WHERE session = ?", t.leases)),
            export_state: q(format!(
                "SELECT {HEADER}, state_pts, state_qts, state_date, state_seq FROM {sessions} \
                 WHERE session = ?"
            )),
            export_dcs: q(format!(
                "SELECT dc_id, ipv4, ipv6, auth_key FROM {} WHERE session = ?",
                t.dc_options
            )),
            export_channels: q(format!(
                "SELECT channel_id, pts FROM {} WHERE session = ?",
                t.channel_pts
            )),
            export_files: q(format!(
                "SELECT md5, size, kind, file_id, access_hash FROM {} WHERE session = ?",
                t.sent_files
            )),
            copy_session: q(format!(
                "INSERT INTO {sessions} ({}) SELECT ?, home_dc, self_user_id, self_is_bot, api_id, \
                 test_mode, takeout_id, ?, ?, state_pts, state_qts, state_date, state_seq \
                 FROM {sessions} WHERE session = ?",
                SESSION_COLUMNS.join(", ")
            )),
            copy_children: CHILD_TABLES
                .iter()
                .map(|(suffix, columns)| {
                    let table = crate::migration::quote(engine, &t.raw(suffix));
                    q(format!(
                        "INSERT INTO {table} (session, {columns}) SELECT ?, {columns} \
                         FROM {table} WHERE session = ?"
                    ))
                })
                .collect(),
        }
    }
}

impl SqlStore {
    /// Opens the store a URL names (`postgres://…`, `mysql://…`,
    /// `mariadb://…`, `sql+sqlite:PATH`), with the options in its query
    /// string, creating the tables (and the SQLite file, mode 0600) when
    /// absent. See [`SqlStoreBuilder::open`].
    pub async fn open(url: &str) -> Result<SqlStore> {
        SqlStore::builder(url).open().await
    }

    /// A builder for the store at `url`, to change settings and the
    /// [`OpenMode`] before opening.
    pub fn builder(url: &str) -> SqlStoreBuilder {
        SqlStoreBuilder::new(url)
    }

    /// The engine behind the store.
    pub fn engine(&self) -> Engine {
        self.inner.engine
    }

    /// The prefix of the store's tables.
    pub fn table_prefix(&self) -> &str {
        &self.inner.tables.prefix
    }

    /// The mode the store was opened in.
    pub fn mode(&self) -> OpenMode {
        self.inner.mode
    }

    /// The schema version this build writes.
    pub fn schema_version(&self) -> i64 {
        SCHEMA_VERSION
    }

    /// The underlying sea-orm connection pool.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.inner.db
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(self) -> Result<()> {
        let errors = self.inner.errors.clone();
        self.inner
            .db
            .clone()
            .close()
            .await
            .map_err(|e| errors.db(e))
    }

    /// The statements of the peer lookups and of a peer batch's context
    /// query, with sample values for `session` (peer id 10, username
    /// `user10`, phone `79990010`; the "many" ones with 10 000 ids, or as
    /// many as one statement carries), as the store sends them: the tests read
    /// their query plans to check that each one seeks its index.
    #[doc(hidden)]
    pub fn lookup_statements(
        &self,
        session: &str,
    ) -> Result<Vec<(&'static str, sea_orm::Statement)>> {
        let s = &self.inner;
        let batch = PeerBatch::new(&[
            Peer::new(PeerId::user(10)?)
                .with_username("user10")
                .with_phone("79990010"),
            Peer::new(PeerId::user(11)?)
                .with_username("user11")
                .with_phone("79990011"),
        ])?;
        // As many as `batch_of_ten_thousand_peers` sends: ids 1..=10 000,
        // usernames `user{i}`, phones `7999{i:04}`.
        let many_ids: Vec<i64> = (1..=10_000).collect();
        let many_ids = &many_ids[..many_ids.len().min(s.peers.ids_per_statement())];
        let many = PeerBatch::new(
            &(1..=10_000)
                .map(|i| {
                    Ok(Peer::new(PeerId::user(i)?)
                        .with_username(format!("user{i}"))
                        .with_phone(format!("7999{i:04}")))
                })
                .collect::<Result<Vec<_>>>()?,
        )?;
        Ok(vec![
            (
                "by id",
                s.sql(&s.peers.by_id, vec![10i64.into(), session.into()]),
            ),
            ("by ids", s.peers.by_ids(session, &[10, 11, 12]).build()),
            (
                "by username",
                s.sql(
                    &s.peers.by_username,
                    vec![b"user10".to_vec().into(), session.into()],
                ),
            ),
            (
                "by phone",
                s.sql(&s.peers.by_phone, vec!["79990010".into(), session.into()]),
            ),
            ("batch context", s.peers.context_statement(session, &batch)),
            ("many ids", s.peers.by_ids(session, many_ids).build()),
            (
                "many-peer batch context",
                s.peers.context_statement(session, &many),
            ),
            ("peer count", s.sql(&s.q.peer_count, vec![session.into()])),
        ])
    }

    /// Refreshes the engine's planner statistics for the store's tables
    /// (`ANALYZE`). PostgreSQL's autovacuum (and MySQL's persistent
    /// statistics) normally keep them current; call this after a bulk import
    /// when autovacuum is off or has not caught up yet, since lookups that
    /// are planned on stale statistics can scan a whole session.
    pub async fn analyze(&self) -> Result<()> {
        let t = &self.inner.tables;
        let tables = [
            t.sessions.as_str(),
            &t.peers,
            &t.peer_usernames,
            &t.dc_options,
            &t.channel_pts,
            &t.sent_files,
        ];
        let statements: Vec<String> = match self.inner.engine {
            Engine::Postgres => vec![format!("ANALYZE {}", tables.join(", "))],
            Engine::MySql => vec![format!("ANALYZE TABLE {}", tables.join(", "))],
            Engine::Sqlite => tables.iter().map(|t| format!("ANALYZE {t}")).collect(),
        };
        let statements = &statements;
        self.inner
            .run(Access::Read, || async move {
                for statement in statements {
                    self.inner.db.execute_unprepared(statement).await?;
                }
                Ok(())
            })
            .await
    }
}

impl SqlStoreBuilder {
    /// Opens the store: connects, refuses data written by a newer schema
    /// version, and (in [`OpenMode::Create`]) creates the tables or applies
    /// pending migrations. When the tables are up to date this takes one
    /// query.
    ///
    /// Fails with `InvalidInput` for a bad URL or option (naming the valid
    /// ones), `Unavailable` when the server cannot be reached (a refused
    /// connection at once, otherwise within the connect timeout; the message
    /// names the host and port, never the password), `NotFound` when a
    /// read-only or read-write open finds no store (or no SQLite file),
    /// `UnsupportedSchemaVersion` for newer data (nothing is changed then).
    pub async fn open(self) -> Result<SqlStore> {
        let settings = self.settings()?;
        // The driver's futures are tens of kilobytes: boxed, the open moves
        // a pointer where it would copy them at every step.
        Box::pin(open(settings)).await
    }

    /// Drops every table of the store's prefix (its whole namespace)
    /// without opening a store, so it works on data of any schema version.
    /// Missing tables are not an error.
    pub async fn drop_tables(self) -> Result<()> {
        let mut settings = self.settings()?;
        if settings.mode == OpenMode::ReadOnly {
            return Err(Error::unsupported(
                settings.engine.name(),
                "dropping tables of a store opened read-only",
            ));
        }
        settings.mode = OpenMode::ReadWrite;
        if let Target::File(path) = &settings.target
            && !path.exists()
        {
            return Ok(());
        }
        let health = Arc::new(Health::new());
        let pool = connect::pool(&settings, &health)?;
        let errors = mapper(&settings, pool.password.clone());
        let tables = Tables::new(settings.engine, &settings.table_prefix);
        let dropped = connect::first_contact(
            async {
                migration::drop_tables(&pool.db, settings.engine, &tables)
                    .await
                    .map_err(|e| errors.db(e))
            },
            pool.probe.as_ref(),
            &errors,
            settings.connect_timeout,
        )
        .await;
        let _ = pool.db.close().await;
        dropped
    }
}

fn mapper(settings: &Settings, password: Option<String>) -> ErrorMapper {
    ErrorMapper::new(
        settings.engine,
        settings.place(),
        password,
        settings.acquire_timeout,
        settings.response_timeout,
        settings.busy_timeout,
    )
}

async fn open(settings: Settings) -> Result<SqlStore> {
    let engine = settings.engine;
    if let Target::File(path) = &settings.target {
        crate::files::prepare(path, &settings.place(), settings.mode)?;
    }
    let health = Arc::new(Health::new());
    let pool = connect::pool(&settings, &health)?;
    let errors = mapper(&settings, pool.password.clone());
    let tables = Tables::new(engine, &settings.table_prefix);
    let prepared = connect::first_contact(
        Box::pin(migration::prepare(
            &pool.db,
            engine,
            &tables,
            &errors,
            settings.mode,
        )),
        pool.probe.as_ref(),
        &errors,
        settings.connect_timeout,
    )
    .await;
    if let Err(err) = prepared {
        let _ = pool.db.close().await;
        return Err(err);
    }
    if engine != Engine::Sqlite {
        // The pool takes back the connection the open used a moment after
        // the open's query returns; without the wait the first call opens a
        // second one. A PostgreSQL connection costs a server process and,
        // with the default `sslmode=prefer`, a TLS handshake (measured: 100
        // ms instead of 130 ms to open and read the home key over TLS); a
        // MySQL one its handshake and session setup (measured on loopback:
        // 2 connections per open and 620 opens/s without the wait, 1 and
        // 770-870/s with it). SQLite connections are cheaper than the wait.
        connect::settle(&pool.idle).await;
    }
    if let Target::File(path) = &settings.target
        && settings.mode.writes()
    {
        crate::files::restrict_side_files(path);
    }
    Ok(SqlStore {
        inner: Arc::new(Inner {
            q: Queries::new(engine, &tables),
            peers: PeerSql::new(engine, &tables),
            db: pool.db,
            engine,
            tables,
            errors,
            health,
            mode: settings.mode,
            busy_timeout: settings.busy_timeout,
            response_timeout: (engine != Engine::Sqlite).then_some(settings.response_timeout),
            writer: (engine == Engine::Sqlite).then(|| tokio::sync::Mutex::new(())),
            in_memory: settings.target == Target::Memory,
        }),
    })
}

/// Column `i` of a row.
fn col<T: sea_orm::TryGetable>(
    row: &QueryResult,
    i: usize,
) -> std::result::Result<T, sea_orm::DbErr> {
    row.try_get_by_index(i)
}

fn header_from(row: &QueryResult, at: usize) -> R<SessionHeader> {
    let self_id: Option<i64> = col(row, at + 1)?;
    let is_bot: Option<bool> = col(row, at + 2)?;
    Ok(SessionHeader {
        home_dc: col(row, at)?,
        self_user: self_id.map(|id| SelfUser {
            id,
            is_bot: is_bot.unwrap_or(false),
        }),
        api_id: col(row, at + 3)?,
        test_mode: col(row, at + 4)?,
        takeout_id: col(row, at + 5)?,
        created_at_ms: col(row, at + 6)?,
        updated_at_ms: col(row, at + 7)?,
    })
}

fn dc_corrupt(id: i32, message: String) -> Fail {
    Fail::Domain(Error::corrupt(
        format!("the dc_options table (DC {id})"),
        message,
    ))
}

/// A DC option from `row` at column `at`; `None` for the NULL columns of a
/// `LEFT JOIN` without a DC.
fn dc_from(row: &QueryResult, at: usize) -> R<Option<DcOption>> {
    let Some(id) = col::<Option<i32>>(row, at)? else {
        return Ok(None);
    };
    let ipv4 = match col::<Option<String>>(row, at + 1)? {
        Some(text) => Some(
            text.parse::<SocketAddrV4>()
                .map_err(|_| dc_corrupt(id, format!("IPv4 address {text:?} is not ADDR:PORT")))?,
        ),
        None => None,
    };
    let ipv6 = match col::<Option<String>>(row, at + 2)? {
        Some(text) => Some(
            text.parse::<SocketAddrV6>()
                .map_err(|_| dc_corrupt(id, format!("IPv6 address {text:?} is not [ADDR]:PORT")))?,
        ),
        None => None,
    };
    let auth_key = match col::<Option<Vec<u8>>>(row, at + 3)? {
        Some(mut bytes) => {
            let key = AuthKey::from_slice(&bytes).map_err(|_| {
                dc_corrupt(
                    id,
                    format!("the auth key is {} bytes; expected 256", bytes.len()),
                )
            });
            bytes.fill(0);
            Some(key?)
        }
        None => None,
    };
    Ok(Some(DcOption {
        id,
        ipv4,
        ipv6,
        auth_key,
    }))
}

fn dc_values(session: &str, dc: &DcOption) -> Vec<Value> {
    vec![
        session.into(),
        dc.id.into(),
        dc.ipv4.map(|a| a.to_string()).into(),
        dc.ipv6.map(|a| a.to_string()).into(),
        dc.auth_key.as_ref().map(|k| k.expose().to_vec()).into(),
    ]
}

fn sent_file_from(row: &QueryResult) -> R<(SentFileKey, SentFile)> {
    let md5: Vec<u8> = col(row, 0)?;
    let kind: i32 = col(row, 2)?;
    let corrupt = |message: String| Fail::Domain(Error::corrupt("the sent_files table", message));
    let md5: [u8; 16] = md5
        .as_slice()
        .try_into()
        .map_err(|_| corrupt(format!("an MD5 is {} bytes; expected 16", md5.len())))?;
    let kind = FileKind::from_code(i64::from(kind))
        .ok_or_else(|| corrupt(format!("file kind code {kind}; expected 0 or 1")))?;
    Ok((
        SentFileKey {
            md5,
            size: col(row, 1)?,
            kind,
        },
        SentFile {
            id: col(row, 3)?,
            access_hash: col(row, 4)?,
        },
    ))
}

fn not_found(session: &str) -> Fail {
    Fail::Domain(Error::session_not_found(session))
}

impl Inner {
    fn sql(&self, text: &str, values: Vec<Value>) -> sea_orm::Statement {
        Sql::with(self.engine, text, values).build()
    }

    async fn exec<C: ConnectionTrait>(&self, c: &C, text: &str, values: Vec<Value>) -> R<u64> {
        Ok(c.execute_raw(self.sql(text, values)).await?.rows_affected())
    }

    async fn all<C: ConnectionTrait>(
        &self,
        c: &C,
        text: &str,
        values: Vec<Value>,
    ) -> R<Vec<QueryResult>> {
        Ok(c.query_all_raw(self.sql(text, values)).await?)
    }

    async fn one<C: ConnectionTrait>(
        &self,
        c: &C,
        text: &str,
        values: Vec<Value>,
    ) -> R<Option<QueryResult>> {
        Ok(c.query_one_raw(self.sql(text, values)).await?)
    }

    fn check_writable(&self) -> Result<()> {
        if self.mode == OpenMode::ReadOnly {
            return Err(Error::unsupported(
                self.engine.name(),
                format!(
                    "writing to {}, which was opened read-only",
                    self.errors.place
                ),
            ));
        }
        Ok(())
    }

    /// Runs one call: `attempt` again after a deadlock, a serialization
    /// failure or a busy SQLite file while the busy timeout lasts (in total,
    /// never once per attempt), and once more on a checked connection after
    /// a connection was lost before anything was applied. On a server, an
    /// attempt that gets no answer within the response timeout is
    /// abandoned, and the connection it held is closed (see `Health`).
    async fn run<T, F, Fut>(&self, access: Access, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = R<T>>,
    {
        let writes = access != Access::Read;
        if writes {
            self.check_writable()?;
        }
        let started = Instant::now();
        let deadline = started + self.busy_timeout;
        let mut reconnected = false;
        let mut attempts = 0u32;
        let mut pause = Duration::from_millis(1);
        loop {
            attempts += 1;
            let turn = match (&self.writer, writes) {
                (Some(writer), true) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match tokio::time::timeout(left, writer.lock()).await {
                        Ok(turn) => Some(turn),
                        Err(_) => {
                            return Err(Error::Busy {
                                what: self.errors.place.to_string(),
                                waited: started.elapsed().min(self.busy_timeout),
                                source: None,
                            });
                        }
                    }
                }
                _ => None,
            };
            let result = match self.response_timeout {
                Some(limit) => self.bounded(limit, attempt()).await,
                None => attempt().await,
            };
            drop(turn);
            let fail = match result {
                Ok(value) => return Ok(value),
                Err(fail) => fail,
            };
            match self.errors.verdict(fail, access, started.elapsed()) {
                Verdict::Done(err) => return Err(err),
                Verdict::Reconnect(err) => {
                    self.health.lost_connection();
                    if reconnected {
                        return Err(err);
                    }
                    reconnected = true;
                }
                Verdict::Contention(err) => {
                    let now = Instant::now();
                    if now + pause >= deadline || attempts >= MAX_ATTEMPTS {
                        return Err(err);
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
            }
        }
    }

    /// Runs one attempt for at most `limit`.
    async fn bounded<T>(
        &self,
        limit: Duration,
        attempt: impl std::future::Future<Output = R<T>>,
    ) -> R<T> {
        let committing = Arc::new(AtomicBool::new(false));
        let mut attempt = Box::pin(COMMITTING.scope(Arc::clone(&committing), attempt));
        match tokio::time::timeout(limit, &mut attempt).await {
            Ok(result) => result,
            Err(_) => {
                // Recorded before the attempt lets its connection go, so
                // that the pool closes that connection when it comes back.
                self.health.interrupted();
                drop(attempt);
                Err(Fail::TimedOut {
                    committing: committing.load(Ordering::Acquire),
                })
            }
        }
    }

    async fn begin_write(&self) -> R<DatabaseTransaction> {
        let options = TransactionOptions {
            sqlite_transaction_mode: (self.engine == Engine::Sqlite)
                .then_some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        };
        Ok(self.db.begin_with_options(options).await?)
    }

    /// A transaction that reads one consistent snapshot.
    async fn begin_read(&self) -> R<DatabaseTransaction> {
        let options = match self.engine {
            Engine::Postgres => TransactionOptions {
                isolation_level: Some(IsolationLevel::RepeatableRead),
                access_mode: Some(AccessMode::ReadOnly),
                ..TransactionOptions::default()
            },
            // MySQL's default isolation is REPEATABLE READ already; SQLite
            // reads one snapshot per transaction.
            Engine::MySql | Engine::Sqlite => TransactionOptions::default(),
        };
        Ok(self.db.begin_with_options(options).await?)
    }

    async fn commit(&self, txn: DatabaseTransaction) -> R<()> {
        let _ = COMMITTING.try_with(|c| c.store(true, Ordering::Release));
        txn.commit().await.map_err(Fail::Commit)
    }

    /// Locks the session's row until the transaction ends; `NotFound` when
    /// the session does not exist.
    async fn lock_session(&self, txn: &DatabaseTransaction, session: &str) -> R<()> {
        match self
            .one(txn, &self.q.lock_session, vec![session.into()])
            .await?
        {
            Some(_) => Ok(()),
            None => Err(not_found(session)),
        }
    }

    async fn require_session<C: ConnectionTrait>(&self, c: &C, session: &str) -> R<()> {
        match self.one(c, &self.q.exists, vec![session.into()]).await? {
            Some(_) => Ok(()),
            None => Err(not_found(session)),
        }
    }

    /// The creation and update times of `a` and `b` (each `None` when
    /// missing), locking the rows that exist.
    async fn times_of(
        &self,
        txn: &DatabaseTransaction,
        a: &str,
        b: &str,
    ) -> R<(Option<(i64, i64)>, Option<(i64, i64)>)> {
        let rows = self
            .all(txn, &self.q.session_times, vec![a.into(), b.into()])
            .await?;
        let (mut first, mut second) = (None, None);
        for row in rows {
            let name: String = col(&row, 0)?;
            let times = (col(&row, 1)?, col(&row, 2)?);
            if name == a {
                first = Some(times);
            }
            if name == b {
                second = Some(times);
            }
        }
        Ok((first, second))
    }

    /// Inserts the session row; `AlreadyExists` when another writer created
    /// it first (the caller decides whether that is final).
    async fn insert_session_row(
        &self,
        txn: &DatabaseTransaction,
        session: &str,
        header: &SessionHeader,
        state: &UpdateState,
    ) -> R<()> {
        let values: Vec<Value> = vec![
            session.into(),
            header.home_dc.into(),
            header.self_user.map(|u| u.id).into(),
            header.self_user.map(|u| u.is_bot).into(),
            header.api_id.into(),
            header.test_mode.into(),
            header.takeout_id.into(),
            header.created_at_ms.into(),
            header.updated_at_ms.into(),
            state.pts.into(),
            state.qts.into(),
            state.date.into(),
            state.seq.into(),
        ];
        match self.exec(txn, &self.q.insert_session, values).await {
            Ok(_) => Ok(()),
            Err(fail) if is_unique_violation(&fail) => Err(Error::session_exists(session).into()),
            Err(fail) => Err(fail),
        }
    }

    async fn import_in(
        &self,
        txn: &DatabaseTransaction,
        session: &str,
        data: &SessionData,
        mode: ImportMode,
        now_ms: i64,
    ) -> R<()> {
        let (existing, _) = self.times_of(txn, session, session).await?;
        if mode == ImportMode::CreateOnly && existing.is_some() {
            return Err(Error::session_exists(session).into());
        }
        let (created, updated) = import_times(existing, now_ms);
        if existing.is_some() {
            // Everything below the row goes with it (ON DELETE CASCADE).
            self.exec(txn, &self.q.delete_session, vec![session.into()])
                .await?;
        }
        let header = SessionHeader::from_data(data, created, updated);
        match self
            .insert_session_row(txn, session, &header, &data.update_state)
            .await
        {
            Ok(()) => {}
            // Created by another writer since it was looked for: a create-only
            // import lost the race; a replacing one runs again.
            Err(Fail::Domain(_)) if mode == ImportMode::Replace => return Err(again()),
            Err(fail) => return Err(fail),
        }
        let t = &self.tables;
        insert_rows(
            txn,
            self.engine,
            &t.dc_options,
            &["session", "dc_id", "ipv4", "ipv6", "auth_key"],
            5,
            data.dcs.iter().map(|dc| dc_values(session, dc)).collect(),
        )
        .await?;
        insert_rows(
            txn,
            self.engine,
            &t.channel_pts,
            &["session", "channel_id", "pts"],
            3,
            data.update_state
                .channels
                .iter()
                .map(|(id, pts)| vec![session.into(), (*id).into(), (*pts).into()])
                .collect(),
        )
        .await?;
        // The data is canonical (no username or phone owned twice): its rows
        // and index entries are stored as they are.
        self.peers.write_rows(txn, session, &data.peers).await?;
        let all: Vec<&Peer> = data.peers.iter().collect();
        self.peers.write_names(txn, session, &all).await?;
        insert_rows(
            txn,
            self.engine,
            &t.sent_files,
            &["session", "md5", "size", "kind", "file_id", "access_hash"],
            6,
            data.sent_files
                .iter()
                .map(|(key, file)| {
                    vec![
                        session.into(),
                        key.md5.to_vec().into(),
                        key.size.into(),
                        key.kind.code().into(),
                        file.id.into(),
                        file.access_hash.into(),
                    ]
                })
                .collect(),
        )
        .await
    }

    async fn copy_in(
        &self,
        txn: &DatabaseTransaction,
        from: &str,
        to: &str,
        overwrite: bool,
        now_ms: i64,
    ) -> R<()> {
        let (source, target) = self.times_of(txn, from, to).await?;
        if source.is_none() {
            return Err(not_found(from));
        }
        if target.is_some() && !overwrite {
            return Err(Error::session_exists(to).into());
        }
        let (created, updated) = import_times(target, now_ms);
        if target.is_some() {
            self.exec(txn, &self.q.delete_session, vec![to.into()])
                .await?;
        }
        let copied = self
            .exec(
                txn,
                &self.q.copy_session,
                vec![to.into(), created.into(), updated.into(), from.into()],
            )
            .await;
        match copied {
            Ok(_) => {}
            Err(fail) if is_unique_violation(&fail) => {
                return Err(if overwrite {
                    again()
                } else {
                    Error::session_exists(to).into()
                });
            }
            Err(fail) => return Err(fail),
        }
        for text in &self.q.copy_children {
            self.exec(txn, text, vec![to.into(), from.into()]).await?;
        }
        Ok(())
    }

    async fn export_in(&self, txn: &DatabaseTransaction, session: &str) -> R<SessionData> {
        let q = &self.q;
        let key = || vec![Value::from(session)];
        let Some(row) = self.one(txn, &q.export_state, key()).await? else {
            return Err(not_found(session));
        };
        let header = header_from(&row, 0)?;
        let mut data = SessionData {
            home_dc: header.home_dc,
            dcs: Vec::new(),
            self_user: header.self_user,
            api_id: header.api_id,
            test_mode: header.test_mode,
            takeout_id: header.takeout_id,
            update_state: UpdateState {
                pts: col(&row, 8)?,
                qts: col(&row, 9)?,
                date: col(&row, 10)?,
                seq: col(&row, 11)?,
                channels: BTreeMap::new(),
            },
            peers: Vec::new(),
            sent_files: Vec::new(),
        };
        for row in self.all(txn, &q.export_dcs, key()).await? {
            data.dcs.extend(dc_from(&row, 0)?);
        }
        for row in self.all(txn, &q.export_channels, key()).await? {
            data.update_state
                .channels
                .insert(col(&row, 0)?, col(&row, 1)?);
        }
        let rows = self.all(txn, &self.peers.all, key()).await?;
        data.peers = peers::decode_all(&rows)?.into_values().collect();
        for row in self.all(txn, &q.export_files, key()).await? {
            data.sent_files.push(sent_file_from(&row)?);
        }
        data.canonicalize();
        Ok(data)
    }

    async fn cache_peers_in(
        &self,
        txn: &DatabaseTransaction,
        session: &str,
        batch: &PeerBatch,
    ) -> R<()> {
        self.lock_session(txn, session).await?;
        let stored = self.peers.load_context(txn, session, batch).await?;
        let plan = batch.plan(stored.iter().cloned());
        if plan.is_empty() {
            return Ok(());
        }
        self.peers.apply(txn, session, &plan, &stored).await
    }

    async fn lookup(&self, session: &str, text: &str, values: Vec<Value>) -> R<Option<Peer>> {
        let rows = self.all(&self.db, text, values).await?;
        peers::decode_one(&rows, session)
    }

    async fn write_update_state_in<C: ConnectionTrait>(
        &self,
        c: &C,
        session: &str,
        write: &UpdateStateWrite,
    ) -> R<()> {
        let key = || Value::from(session);
        if write.sets_fields() {
            let changed = self
                .exec(
                    c,
                    &self.q.write_state_fields,
                    vec![
                        write.pts.into(),
                        write.qts.into(),
                        write.date.into(),
                        write.seq.into(),
                        key(),
                    ],
                )
                .await?;
            if changed == 0 {
                return Err(not_found(session));
            }
        }
        match &write.channels {
            ChannelsWrite::Keep => {
                if !write.sets_fields() {
                    self.require_session(c, session).await?;
                }
            }
            ChannelsWrite::Set { id, pts } => {
                let changed = self
                    .exec(
                        c,
                        &self.q.set_channel,
                        vec![(*id).into(), (*pts).into(), key()],
                    )
                    .await?;
                if changed == 0 {
                    return Err(not_found(session));
                }
            }
            ChannelsWrite::Remove { id } => {
                let changed = self
                    .exec(c, &self.q.remove_channel, vec![key(), (*id).into()])
                    .await?;
                if changed == 0 && !write.sets_fields() {
                    self.require_session(c, session).await?;
                }
            }
            ChannelsWrite::Replace(channels) => {
                if !write.sets_fields() {
                    self.require_session(c, session).await?;
                }
                self.exec(c, &self.q.delete_channels, vec![key()]).await?;
                insert_rows(
                    c,
                    self.engine,
                    &self.tables.channel_pts,
                    &["session", "channel_id", "pts"],
                    3,
                    channels
                        .iter()
                        .map(|(id, pts)| vec![key(), (*id).into(), (*pts).into()])
                        .collect(),
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn stored_lease(&self, txn: &DatabaseTransaction, session: &str) -> R<Option<LeaseInfo>> {
        let Some(row) = self.one(txn, &self.q.lease, vec![session.into()]).await? else {
            return Ok(None);
        };
        let owner: Vec<u8> = col(&row, 0)?;
        let owner = String::from_utf8(owner).map_err(|_| {
            Fail::Domain(Error::corrupt(
                "the leases table",
                format!("the owner of the lease on session {session:?} is not UTF-8"),
            ))
        })?;
        Ok(Some(LeaseInfo {
            session: session.to_owned(),
            owner,
            expires_at_ms: col(&row, 1)?,
        }))
    }
}

/// A failure that means "run the transaction again": a row another writer
/// created between the look and the write.
fn again() -> Fail {
    Fail::Again("a row was created by another writer during the transaction")
}

#[async_trait]
impl SessionBackend for SqlStore {
    fn name(&self) -> &'static str {
        self.inner.engine.name()
    }

    fn capabilities(&self) -> Capabilities {
        let shared = !self.inner.in_memory;
        Capabilities::NONE
            .durable(shared)
            .shared_between_processes(shared)
            .atomic_multi_key_writes(true)
            .leases(true)
    }

    async fn list(&self) -> Result<Vec<String>> {
        let s = &self.inner;
        s.run(Access::Read, || async move {
            let mut names = Vec::new();
            for row in s.all(&s.db, &s.q.list, Vec::new()).await? {
                names.push(col::<String>(&row, 0)?);
            }
            // The collations compare bytes already; this keeps the order
            // exact whatever a server's collation does.
            names.sort();
            Ok(names)
        })
        .await
    }

    async fn exists(&self, session: &str) -> Result<bool> {
        let s = &self.inner;
        s.run(Access::Read, || async move {
            Ok(s.one(&s.db, &s.q.exists, vec![session.into()])
                .await?
                .is_some())
        })
        .await
    }

    async fn delete(&self, session: &str) -> Result<bool> {
        let s = &self.inner;
        s.run(Access::Write { idempotent: false }, || async move {
            Ok(s.exec(&s.db, &s.q.delete, vec![session.into()]).await? > 0)
        })
        .await
    }

    async fn export(&self, session: &str) -> Result<SessionData> {
        let s = &self.inner;
        s.run(Access::Read, || async move {
            let txn = s.begin_read().await?;
            let data = s.export_in(&txn, session).await?;
            txn.commit().await?;
            Ok(data)
        })
        .await
    }

    async fn import(
        &self,
        session: &str,
        data: &SessionData,
        mode: ImportMode,
        now_ms: i64,
    ) -> Result<()> {
        let s = &self.inner;
        s.run(Access::Transaction, || async move {
            let txn = s.begin_write().await?;
            s.import_in(&txn, session, data, mode, now_ms).await?;
            s.commit(txn).await
        })
        .await
    }

    async fn header(&self, session: &str) -> Result<SessionHeader> {
        let s = &self.inner;
        s.run(Access::Read, || async move {
            match s.one(&s.db, &s.q.header, vec![session.into()]).await? {
                Some(row) => header_from(&row, 0),
                None => Err(not_found(session)),
            }
        })
        .await
    }

    async fn write_header(&self, session: &str, write: &HeaderWrite) -> Result<()> {
        let s = &self.inner;
        // `SessionHeader::apply` in one statement: the fields the write
        // sets, and `updated_at_ms` moved forward only.
        let mut q = Sql::new(s.engine);
        q.push(&format!("UPDATE {} SET ", s.tables.sessions));
        if let Some(home_dc) = write.home_dc {
            q.push("home_dc = ").bind(home_dc).push(", ");
        }
        if let Some(user) = write.self_user {
            q.push("self_user_id = ")
                .bind(user.map(|u| u.id))
                .push(", self_is_bot = ")
                .bind(user.map(|u| u.is_bot))
                .push(", ");
        }
        if let Some(api_id) = write.api_id {
            q.push("api_id = ").bind(api_id).push(", ");
        }
        if let Some(test_mode) = write.test_mode {
            q.push("test_mode = ").bind(test_mode).push(", ");
        }
        if let Some(takeout_id) = write.takeout_id {
            q.push("takeout_id = ").bind(takeout_id).push(", ");
        }
        q.push(&format!(
            "updated_at_ms = {}(updated_at_ms, ",
            greatest(s.engine)
        ))
        .bind(write.updated_at_ms)
        .push(") WHERE session = ")
        .bind(session);
        let statement = &q.build();
        s.run(Access::Write { idempotent: true }, || async move {
            let changed = s.db.execute_raw(statement.clone()).await?.rows_affected();
            if changed == 0 {
                return Err(not_found(session));
            }
            Ok(())
        })
        .await
    }

    async fn dc_options(&self, session: &str) -> Result<Vec<DcOption>> {
        Ok(self.home(session).await?.1)
    }

    async fn write_dc_option(
        &self,
        session: &str,
        dc: &DcOption,
        updated_at_ms: i64,
    ) -> Result<()> {
        let s = &self.inner;
        if s.engine == Engine::Postgres {
            let mut values = vec![Value::from(updated_at_ms), session.into()];
            values.extend(dc_values(session, dc).into_iter().skip(1));
            let values = &values;
            return s
                .run(Access::Write { idempotent: true }, || async move {
                    let changed = s.exec(&s.db, &s.q.set_dc_touching, values.clone()).await?;
                    if changed == 0 {
                        return Err(not_found(session));
                    }
                    Ok(())
                })
                .await;
        }
        s.run(Access::Transaction, || async move {
            let txn = s.begin_write().await?;
            let changed = s
                .exec(&txn, &s.q.touch, vec![updated_at_ms.into(), session.into()])
                .await?;
            if changed == 0 {
                return Err(not_found(session));
            }
            s.exec(&txn, &s.q.set_dc, dc_values(session, dc)).await?;
            s.commit(txn).await
        })
        .await
    }

    async fn home(&self, session: &str) -> Result<(SessionHeader, Vec<DcOption>)> {
        let s = &self.inner;
        s.run(Access::Read, || async move {
            let rows = s.all(&s.db, &s.q.home, vec![session.into()]).await?;
            let Some(first) = rows.first() else {
                return Err(not_found(session));
            };
            let header = header_from(first, 0)?;
            let mut dcs = Vec::new();
            for row in &rows {
                dcs.extend(dc_from(row, 8)?);
            }
            dcs.sort_by_key(|dc| dc.id);
            Ok((header, dcs))
        })
        .await
    }

    async fn update_state(&self, session: &str) -> Result<UpdateState> {
        let s = &self.inner;
        s.run(Access::Read, || async move {
            let rows = s
                .all(&s.db, &s.q.update_state, vec![session.into()])
                .await?;
            let Some(first) = rows.first() else {
                return Err(not_found(session));
            };
            let mut state = UpdateState {
                pts: col(first, 0)?,
                qts: col(first, 1)?,
                date: col(first, 2)?,
                seq: col(first, 3)?,
                channels: BTreeMap::new(),
            };
            for row in &rows {
                let id: Option<i64> = col(row, 4)?;
                let pts: Option<i32> = col(row, 5)?;
                if let (Some(id), Some(pts)) = (id, pts) {
                    state.channels.insert(id, pts);
                }
            }
            Ok(state)
        })
        .await
    }

    async fn write_update_state(&self, session: &str, write: &UpdateStateWrite) -> Result<()> {
        let s = &self.inner;
        // One statement when the write touches one thing; a transaction otherwise.
        let single = match &write.channels {
            ChannelsWrite::Keep => true,
            ChannelsWrite::Set { .. } | ChannelsWrite::Remove { .. } => !write.sets_fields(),
            ChannelsWrite::Replace(_) => false,
        };
        if single {
            // Setting fields or a channel, or removing one, twice stores
            // the same as once.
            return s
                .run(Access::Write { idempotent: true }, || async move {
                    s.write_update_state_in(&s.db, session, write).await
                })
                .await;
        }
        s.run(Access::Transaction, || async move {
            let txn = s.begin_write().await?;
            s.write_update_state_in(&txn, session, write).await?;
            s.commit(txn).await
        })
        .await
    }

    async fn peers(&self, session: &str, ids: &[PeerId]) -> Result<Vec<Option<Peer>>> {
        let s = &self.inner;
        if let [only] = ids {
            let peer = s
                .run(Access::Read, || async move {
                    s.lookup(
                        session,
                        &s.peers.by_id,
                        vec![only.marked().into(), session.into()],
                    )
                    .await
                })
                .await?;
            return Ok(vec![peer]);
        }
        let mut unique: Vec<i64> = ids.iter().map(|id| id.marked()).collect();
        unique.sort_unstable();
        unique.dedup();
        let unique = &unique;
        let found = s
            .run(Access::Read, || async move {
                let mut found = BTreeMap::new();
                if unique.is_empty() {
                    s.require_session(&s.db, session).await?;
                }
                for chunk in unique.chunks(s.peers.ids_per_statement()) {
                    let statement = s.peers.by_ids(session, chunk).build();
                    let rows = s.db.query_all_raw(statement).await?;
                    if rows.is_empty() {
                        return Err(not_found(session));
                    }
                    found.extend(peers::decode_all(&rows)?);
                }
                Ok(found)
            })
            .await?;
        Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
    }

    async fn peer_by_username(&self, session: &str, key: &str) -> Result<Option<Peer>> {
        let s = &self.inner;
        s.run(Access::Read, || async move {
            s.lookup(
                session,
                &s.peers.by_username,
                vec![key.as_bytes().to_vec().into(), session.into()],
            )
            .await
        })
        .await
    }

    async fn peer_by_phone(&self, session: &str, phone: &str) -> Result<Option<Peer>> {
        let s = &self.inner;
        s.run(Access::Read, || async move {
            s.lookup(
                session,
                &s.peers.by_phone,
                vec![phone.into(), session.into()],
            )
            .await
        })
        .await
    }

    async fn peer_count(&self, session: &str) -> Result<u64> {
        let s = &self.inner;
        s.run(Access::Read, || async move {
            match s.one(&s.db, &s.q.peer_count, vec![session.into()]).await? {
                Some(row) => Ok(u64::try_from(col::<i64>(&row, 0)?).unwrap_or(0)),
                None => Err(not_found(session)),
            }
        })
        .await
    }

    async fn cache_peers(&self, session: &str, batch: &PeerBatch) -> Result<()> {
        let s = &self.inner;
        if batch.is_empty() {
            // Still a call on the session: a missing one is NotFound.
            return s
                .run(Access::Read, || async move {
                    s.require_session(&s.db, session).await
                })
                .await;
        }
        s.run(Access::Transaction, || async move {
            let txn = s.begin_write().await?;
            s.cache_peers_in(&txn, session, batch).await?;
            s.commit(txn).await
        })
        .await
    }

    async fn sent_file(&self, session: &str, key: &SentFileKey) -> Result<Option<SentFile>> {
        let s = &self.inner;
        s.run(Access::Read, || async move {
            let values = vec![
                key.md5.to_vec().into(),
                key.size.into(),
                key.kind.code().into(),
                session.into(),
            ];
            let Some(row) = s.one(&s.db, &s.q.sent_file, values).await? else {
                return Err(not_found(session));
            };
            let Some(id) = col::<Option<i64>>(&row, 0)? else {
                return Ok(None);
            };
            Ok(Some(SentFile {
                id,
                access_hash: col(&row, 1)?,
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
        let s = &self.inner;
        s.run(Access::Write { idempotent: true }, || async move {
            let values = vec![
                key.md5.to_vec().into(),
                key.size.into(),
                key.kind.code().into(),
                file.id.into(),
                file.access_hash.into(),
                session.into(),
            ];
            if s.exec(&s.db, &s.q.cache_sent_file, values).await? == 0 {
                return Err(not_found(session));
            }
            Ok(())
        })
        .await
    }

    async fn copy(&self, from: &str, to: &str, overwrite: bool, now_ms: i64) -> Result<()> {
        let s = &self.inner;
        s.run(Access::Transaction, || async move {
            let txn = s.begin_write().await?;
            s.copy_in(&txn, from, to, overwrite, now_ms).await?;
            s.commit(txn).await
        })
        .await
    }

    async fn acquire_lease(&self, session: &str, request: &LeaseRequest) -> Result<LeaseInfo> {
        let s = &self.inner;
        s.run(Access::Transaction, || async move {
            let txn = s.begin_write().await?;
            let current = s.stored_lease(&txn, session).await?;
            let granted = request.decide(session, current.as_ref())?;
            let owner = granted.owner.as_bytes().to_vec();
            if current.is_some() {
                s.exec(
                    &txn,
                    &s.q.update_lease,
                    vec![owner.into(), granted.expires_at_ms.into(), session.into()],
                )
                .await?;
            } else {
                let inserted = s
                    .exec(
                        &txn,
                        &s.q.insert_lease,
                        vec![session.into(), owner.into(), granted.expires_at_ms.into()],
                    )
                    .await;
                match inserted {
                    Ok(_) => {}
                    // Taken by another caller since it was looked at: look again.
                    Err(fail) if is_unique_violation(&fail) => return Err(again()),
                    Err(fail) => return Err(fail),
                }
            }
            s.commit(txn).await?;
            Ok(granted)
        })
        .await
    }

    async fn release_lease(&self, session: &str, owner: &str, now_ms: i64) -> Result<bool> {
        let s = &self.inner;
        s.run(Access::Transaction, || async move {
            let txn = s.begin_write().await?;
            let current = s.stored_lease(&txn, session).await?;
            let (remove, live) = decide_release(current.as_ref(), owner, now_ms);
            if remove {
                s.exec(&txn, &s.q.delete_lease, vec![session.into()])
                    .await?;
            }
            s.commit(txn).await?;
            Ok(live)
        })
        .await
    }
}
