//! [`SqlStore`]: the [`SessionStore`] over sea-orm.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{SocketAddrV4, SocketAddrV6};
use std::time::Duration;

use async_trait::async_trait;
use sea_orm::{
    AccessMode, ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction,
    IsolationLevel, QueryResult, SqliteTransactionMode, TransactionOptions, TransactionTrait,
    TryGetable, Value,
};
use session_core::lease::{now_ms, validate_lease};
use session_core::model::{DEFAULT_HOME_DC, normalize_username};
use session_core::{
    AccessHash, AuthKey, Capabilities, DcOption, Error, FileKind, LeaseInfo, Peer, PeerId,
    PeerKind, PeerTable, Result, SelfUser, SentFile, SentFileKey, SessionData, SessionMeta,
    SessionStore, UpdateState, UpdateStateChange,
};

use crate::config::{Engine, SqlStoreBuilder, redact_url, url_password};
use crate::error::{ErrorMapper, Fail, R, is_transient, is_unique_violation};
use crate::migration::{self, SCHEMA_VERSION, Tables};
use crate::sql::{Keys, Sql, max_params, rows_per_chunk};

/// How often an attempt rolled back by a deadlock, a serialization failure
/// or a busy SQLite database is run again before the error is returned.
const MAX_RETRIES: u32 = 8;

/// The longest lowercased username the username index holds, in bytes.
/// Usernames are at most 1024 bytes; lowercasing grows UTF-8 by at most half.
const MAX_USERNAME_KEY_LEN: usize = 1600;

/// Runs `$body` (an expression of type `R<T>`, usually an async block's
/// content) and retries it while it fails transiently.
macro_rules! attempt {
    ($self:ident, $body:block) => {{
        let mut tries = 0u32;
        loop {
            let result: R<_> = async $body.await;
            match result {
                Ok(value) => break Ok(value),
                Err(fail) if tries < MAX_RETRIES && is_transient(&fail, $self.engine) => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(5u64 << tries.min(6))).await;
                }
                Err(fail) => break Err($self.errors.finish(fail)),
            }
        }
    }};
}

/// A session store in SQLite, PostgreSQL or MySQL/MariaDB tables, through sea-orm.
///
/// Open one with [`SqlStore::connect`] or [`SqlStore::builder`]. Cloning is
/// cheap (the pool is shared).
#[derive(Clone)]
pub struct SqlStore {
    db: DatabaseConnection,
    engine: Engine,
    tables: Tables,
    errors: ErrorMapper,
    redacted_url: String,
    max_params: usize,
    /// An in-memory SQLite database: neither durable nor shared.
    in_memory: bool,
}

impl fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStore")
            .field("engine", &self.engine)
            .field("url", &self.redacted_url)
            .field("table_prefix", &self.tables.prefix)
            .finish_non_exhaustive()
    }
}

impl SqlStoreBuilder {
    /// Connects, refuses data written by a newer schema version, applies
    /// pending migrations and returns the store.
    ///
    /// Fails with `Unavailable` when the server cannot be reached within the
    /// connect timeout, `UnsupportedSchemaVersion` for newer data (nothing is
    /// changed then), `InvalidInput` for a bad URL.
    pub async fn open(self) -> Result<SqlStore> {
        let (db, errors) = connect(&self).await?;
        let tables = Tables::new(self.engine, &self.table_prefix);
        migration::migrate(&db, self.engine, &tables, &errors).await?;
        let sqlite_limit = match self.engine {
            Engine::Sqlite => sqlite_param_limit(&db).await.map_err(|e| errors.db(e))?,
            Engine::Postgres | Engine::MySql => 0,
        };
        Ok(SqlStore {
            engine: self.engine,
            tables,
            errors,
            redacted_url: redact_url(&self.driver_url),
            max_params: max_params(self.engine, sqlite_limit),
            in_memory: self.is_sqlite_memory(),
            db,
        })
    }

    /// Drops every table of the builder's prefix (the store's whole
    /// namespace) without opening a store, so it works on data of any
    /// schema version. Missing tables are not an error.
    pub async fn drop_tables(self) -> Result<()> {
        let (db, errors) = connect(&self).await?;
        let tables = Tables::new(self.engine, &self.table_prefix);
        let result = migration::drop_tables(&db, self.engine, &tables).await;
        let _ = db.close().await;
        result.map_err(|e| errors.db(e))
    }
}

/// Opens the pool, bounded by the connect timeout.
async fn connect(builder: &SqlStoreBuilder) -> Result<(DatabaseConnection, ErrorMapper)> {
    let engine = builder.engine;
    let errors = ErrorMapper::new(engine, url_password(&builder.driver_url));
    let memory = builder.is_sqlite_memory();
    let mut options = ConnectOptions::new(builder.driver_url.clone());
    options
        .sqlx_logging(false)
        .max_connections(if memory {
            1
        } else {
            builder.max_connections.unwrap_or(10)
        })
        .min_connections(if memory { 1 } else { builder.min_connections })
        .acquire_timeout(builder.acquire_timeout)
        .idle_timeout(if memory { None } else { builder.idle_timeout })
        .max_lifetime(if memory { None } else { builder.max_lifetime });
    if let Some(name) = &builder.application_name {
        options.set_application_name(name.clone());
    }
    #[cfg(feature = "sqlite")]
    {
        let busy_timeout = builder.busy_timeout;
        options.map_sqlx_sqlite_opts(move |o| {
            let o = o
                .create_if_missing(true)
                .busy_timeout(busy_timeout)
                .foreign_keys(true)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Full);
            if memory {
                o
            } else {
                o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
            }
        });
    }
    let timeout = builder.connect_timeout;
    match tokio::time::timeout(timeout, Database::connect(options)).await {
        Ok(Ok(db)) => Ok((db, errors)),
        Ok(Err(err)) => Err(errors.db(err)),
        Err(_) => Err(Error::Unavailable {
            backend: engine.name(),
            message: format!(
                "no connection to {} within the connect timeout of {timeout:?}",
                redact_url(&builder.driver_url)
            ),
            source: None,
        }),
    }
}

/// SQLite's limit on placeholders per statement: 32766 since 3.32, 999 before.
async fn sqlite_param_limit(db: &DatabaseConnection) -> std::result::Result<usize, sea_orm::DbErr> {
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Sqlite,
            "SELECT sqlite_version()",
        ))
        .await?;
    let version = match row {
        Some(row) => row.try_get_by_index::<String>(0)?,
        None => String::new(),
    };
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    Ok(if (major, minor) >= (3, 32) {
        32_766
    } else {
        999
    })
}

impl SqlStore {
    /// Opens the store a URL names, with the settings in its query string.
    /// See [`SqlStoreBuilder::open`].
    pub async fn connect(url: &str) -> Result<SqlStore> {
        SqlStoreBuilder::new(url)?.open().await
    }

    /// A builder for the URL, to change settings before opening.
    pub fn builder(url: &str) -> Result<SqlStoreBuilder> {
        SqlStoreBuilder::new(url)
    }

    /// The engine behind the store.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The prefix of the store's tables.
    pub fn table_prefix(&self) -> &str {
        &self.tables.prefix
    }

    /// The schema version this build writes.
    pub fn schema_version(&self) -> i64 {
        SCHEMA_VERSION
    }

    /// The underlying sea-orm connection pool.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(self) -> Result<()> {
        let errors = self.errors.clone();
        self.db.close().await.map_err(|e| errors.db(e))
    }

    /// Refreshes the engine's planner statistics for the store's tables
    /// (`ANALYZE`). PostgreSQL's autovacuum (and MySQL's persistent
    /// statistics) normally keep them current; call this after a bulk import
    /// when autovacuum is off or has not caught up yet, since lookups that
    /// are planned on stale statistics can scan a whole session.
    pub async fn analyze(&self) -> Result<()> {
        let t = &self.tables;
        let tables = [
            &t.sessions,
            &t.peers,
            &t.peer_usernames,
            &t.dc_options,
            &t.channel_pts,
            &t.sent_files,
        ];
        let statements: Vec<String> = match self.engine {
            Engine::Postgres => vec![format!(
                "ANALYZE {}",
                tables
                    .iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )],
            Engine::MySql => vec![format!(
                "ANALYZE TABLE {}",
                tables
                    .iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )],
            Engine::Sqlite => tables.iter().map(|t| format!("ANALYZE {t}")).collect(),
        };
        attempt!(self, {
            for statement in &statements {
                self.db.execute_unprepared(statement).await?;
            }
            Ok(())
        })
    }

    fn sql(&self) -> Sql {
        Sql::new(self.engine)
    }

    fn chunk_rows(&self, columns: usize) -> usize {
        rows_per_chunk(self.max_params, columns)
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

    async fn exec<C: ConnectionTrait>(&self, c: &C, sql: Sql) -> R<u64> {
        Ok(c.execute_raw(sql.build()).await?.rows_affected())
    }

    async fn all<C: ConnectionTrait>(&self, c: &C, sql: Sql) -> R<Vec<QueryResult>> {
        Ok(c.query_all_raw(sql.build()).await?)
    }

    async fn one<C: ConnectionTrait>(&self, c: &C, sql: Sql) -> R<Option<QueryResult>> {
        Ok(c.query_one_raw(sql.build()).await?)
    }

    async fn session_exists<C: ConnectionTrait>(&self, c: &C, session: &str) -> R<bool> {
        let mut q = self.sql();
        q.push(&format!(
            "SELECT 1 FROM {} WHERE session = ",
            self.tables.sessions
        ))
        .bind(session);
        Ok(self.one(c, q).await?.is_some())
    }

    async fn require_session<C: ConnectionTrait>(&self, c: &C, session: &str) -> R<()> {
        if self.session_exists(c, session).await? {
            Ok(())
        } else {
            Err(Error::session_not_found(session).into())
        }
    }

    /// Locks the session's row until the transaction ends; `false` if the
    /// session does not exist.
    async fn lock_session(&self, txn: &DatabaseTransaction, session: &str) -> R<bool> {
        let mut q = self.sql();
        let lock = q.lock_clause();
        q.push(&format!(
            "SELECT 1 FROM {} WHERE session = ",
            self.tables.sessions
        ))
        .bind(session)
        .push(lock);
        Ok(self.one(txn, q).await?.is_some())
    }

    /// Runs an `UPDATE {sessions} SET {set} ... WHERE session = ?` that also
    /// moves `updated_at_ms` forward; `NotFound` if no row matched.
    async fn update_session<C: ConnectionTrait>(
        &self,
        c: &C,
        session: &str,
        touch: bool,
        set: impl FnOnce(&mut Sql),
    ) -> R<()> {
        let mut q = self.sql();
        q.push(&format!("UPDATE {} SET ", self.tables.sessions));
        set(&mut q);
        if touch {
            let greatest = q.greatest();
            q.push(&format!(", updated_at_ms = {greatest}(updated_at_ms, "))
                .bind(now_ms())
                .push(")");
        }
        q.push(" WHERE session = ").bind(session);
        if self.exec(c, q).await? == 0 {
            return Err(Error::session_not_found(session).into());
        }
        Ok(())
    }

    async fn session_row<C: ConnectionTrait>(
        &self,
        c: &C,
        session: &str,
        columns: &str,
    ) -> R<QueryResult> {
        let mut q = self.sql();
        q.push(&format!(
            "SELECT {columns} FROM {} WHERE session = ",
            self.tables.sessions
        ))
        .bind(session);
        self.one(c, q)
            .await?
            .ok_or_else(|| Fail::Domain(Error::session_not_found(session)))
    }

    fn corrupt(&self, table: &str, message: impl Into<String>) -> Fail {
        Fail::Domain(Error::corrupt(
            format!("{} table {}{table}", self.engine, self.tables.prefix),
            message,
        ))
    }

    // ---- rows <-> model -------------------------------------------------

    fn decode_dc(&self, row: &QueryResult) -> R<DcOption> {
        let id: i32 = col(row, 0)?;
        let ipv4: Option<String> = col(row, 1)?;
        let ipv6: Option<String> = col(row, 2)?;
        let key: Option<Vec<u8>> = col(row, 3)?;
        let ipv4 = match ipv4 {
            Some(text) => Some(text.parse::<SocketAddrV4>().map_err(|_| {
                self.corrupt(
                    "dc_options",
                    format!("DC {id} has IPv4 address {text:?}; expected ADDR:PORT"),
                )
            })?),
            None => None,
        };
        let ipv6 = match ipv6 {
            Some(text) => Some(text.parse::<SocketAddrV6>().map_err(|_| {
                self.corrupt(
                    "dc_options",
                    format!("DC {id} has IPv6 address {text:?}; expected [ADDR]:PORT"),
                )
            })?),
            None => None,
        };
        let auth_key = match key {
            Some(mut bytes) => {
                let key = AuthKey::from_slice(&bytes).map_err(|_| {
                    self.corrupt(
                        "dc_options",
                        format!(
                            "the auth key of DC {id} is {} bytes; expected 256",
                            bytes.len()
                        ),
                    )
                });
                bytes.fill(0);
                Some(key?)
            }
            None => None,
        };
        Ok(DcOption {
            id,
            ipv4,
            ipv6,
            auth_key,
        })
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

    fn peer_select(&self) -> String {
        format!(
            "SELECT p.id, p.kind, p.hash, p.hash_is_min, p.usernames_known, p.phone, p.name, \
             p.last_seen, u.username FROM {} p LEFT JOIN {} u \
             ON u.session = p.session AND u.peer_id = p.id",
            self.tables.peers, self.tables.peer_usernames
        )
    }

    /// Peers from rows of [`Self::peer_select`] ordered by id and username position.
    fn decode_peers(&self, rows: &[QueryResult]) -> R<Vec<Peer>> {
        let mut peers: Vec<Peer> = Vec::new();
        for row in rows {
            let id: i64 = col(row, 0)?;
            let username: Option<Vec<u8>> = col(row, 8)?;
            let same = peers.last().is_some_and(|p| p.id.marked() == id);
            if !same {
                peers.push(self.decode_peer(row, id)?);
            }
            if let Some(bytes) = username {
                let text = String::from_utf8(bytes).map_err(|_| {
                    self.corrupt(
                        "peer_usernames",
                        format!("a username of peer {id} is not UTF-8"),
                    )
                })?;
                if let Some(peer) = peers.last_mut() {
                    peer.usernames.get_or_insert_with(Vec::new).push(text);
                }
            }
        }
        Ok(peers)
    }

    fn decode_peer(&self, row: &QueryResult, id: i64) -> R<Peer> {
        let kind: Option<i32> = col(row, 1)?;
        let hash: Option<i64> = col(row, 2)?;
        let hash_is_min: bool = col(row, 3)?;
        let usernames_known: bool = col(row, 4)?;
        let phone: Option<String> = col(row, 5)?;
        let name: Option<Vec<u8>> = col(row, 6)?;
        let last_seen: Option<i64> = col(row, 7)?;
        let peer_id = PeerId::from_marked(id)
            .map_err(|_| self.corrupt("peers", format!("{id} is not a marked peer id")))?;
        let kind = match kind {
            Some(code) => Some(PeerKind::from_code(i64::from(code)).ok_or_else(|| {
                self.corrupt(
                    "peers",
                    format!("peer {id} has kind code {code}; expected 1 to 7"),
                )
            })?),
            None => None,
        };
        let name = match name {
            Some(bytes) => Some(String::from_utf8(bytes).map_err(|_| {
                self.corrupt("peers", format!("the name of peer {id} is not UTF-8"))
            })?),
            None => None,
        };
        Ok(Peer {
            id: peer_id,
            kind,
            access_hash: hash.map(|value| AccessHash {
                value,
                min: hash_is_min,
            }),
            usernames: usernames_known.then(Vec::new),
            phone,
            name,
            last_seen,
        })
    }

    fn peer_values(session: &str, p: &Peer) -> Vec<Value> {
        vec![
            session.into(),
            p.id.marked().into(),
            p.kind.map(PeerKind::code).into(),
            p.access_hash.map(|h| h.value).into(),
            p.access_hash.is_some_and(|h| h.min).into(),
            p.usernames.is_some().into(),
            p.phone.clone().into(),
            p.name.clone().map(String::into_bytes).into(),
            p.last_seen.into(),
        ]
    }

    fn username_rows(session: &str, p: &Peer) -> Vec<Vec<Value>> {
        let mut seen = BTreeSet::new();
        let mut rows = Vec::new();
        for (pos, name) in p.usernames.iter().flatten().enumerate() {
            let key = normalize_username(name);
            if seen.insert(key.clone()) {
                rows.push(vec![
                    session.into(),
                    key.into_bytes().into(),
                    p.id.marked().into(),
                    i32::try_from(pos).unwrap_or(i32::MAX).into(),
                    name.clone().into_bytes().into(),
                ]);
            }
        }
        rows
    }

    // ---- multi-row writes -----------------------------------------------

    async fn insert_rows(
        &self,
        txn: &DatabaseTransaction,
        table: &str,
        columns: &[&str],
        upsert: Option<(&[&str], &[&str])>,
        rows: Vec<Vec<Value>>,
    ) -> R<()> {
        let per_chunk = self.chunk_rows(columns.len());
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            let chunk: Vec<Vec<Value>> = rows.by_ref().take(per_chunk).collect();
            let mut q = self.sql();
            q.push(&format!(
                "INSERT INTO {table} ({}) VALUES ",
                columns.join(", ")
            ))
            .bind_rows(chunk);
            if let Some((keys, update)) = upsert {
                q.on_conflict_update(keys, update);
            }
            self.exec(txn, q).await?;
        }
        Ok(())
    }

    async fn upsert_peers(
        &self,
        txn: &DatabaseTransaction,
        session: &str,
        peers: &[&Peer],
    ) -> R<()> {
        const COLUMNS: [&str; 9] = [
            "session",
            "id",
            "kind",
            "hash",
            "hash_is_min",
            "usernames_known",
            "phone",
            "name",
            "last_seen",
        ];
        let rows = peers
            .iter()
            .map(|p| Self::peer_values(session, p))
            .collect();
        let table = self.tables.peers.clone();
        self.insert_rows(
            txn,
            &table,
            &COLUMNS,
            Some((&COLUMNS[..2], &COLUMNS[2..])),
            rows,
        )
        .await
    }

    async fn insert_usernames(
        &self,
        txn: &DatabaseTransaction,
        session: &str,
        peers: &[&Peer],
    ) -> R<()> {
        const COLUMNS: [&str; 5] = ["session", "username_lower", "peer_id", "pos", "username"];
        let rows = peers
            .iter()
            .flat_map(|p| Self::username_rows(session, p))
            .collect();
        let table = self.tables.peer_usernames.clone();
        self.insert_rows(txn, &table, &COLUMNS, None, rows).await
    }

    /// How many keys one lookup statement carries: all of them on
    /// PostgreSQL (one array parameter), else as many as fit.
    fn keys_per_statement(&self) -> usize {
        match self.engine {
            Engine::Postgres => usize::MAX,
            Engine::Sqlite | Engine::MySql => self.chunk_rows(1),
        }
    }

    /// Loads the peers with these ids (unknown ids are skipped).
    async fn load_peers<C: ConnectionTrait>(
        &self,
        c: &C,
        session: &str,
        ids: Vec<i64>,
    ) -> R<BTreeMap<PeerId, Peer>> {
        let mut found = BTreeMap::new();
        for chunk in Keys::Ids(ids).chunks(self.keys_per_statement()) {
            let mut q = self.sql();
            q.push(&self.peer_select())
                .push(" WHERE p.session = ")
                .bind(session)
                .push(" AND ")
                .in_keys("p.id", chunk)
                .push(" ORDER BY p.id, u.pos");
            let rows = self.all(c, q).await?;
            for peer in self.decode_peers(&rows)? {
                found.insert(peer.id, peer);
            }
        }
        Ok(found)
    }

    /// Ids of the peers that own any of these phones.
    async fn phone_owners(
        &self,
        txn: &DatabaseTransaction,
        session: &str,
        phones: Vec<String>,
    ) -> R<BTreeSet<i64>> {
        let mut owners = BTreeSet::new();
        for chunk in Keys::Texts(phones).chunks(self.keys_per_statement()) {
            let mut q = self.sql();
            q.push(&format!(
                "SELECT id FROM {} WHERE session = ",
                self.tables.peers
            ))
            .bind(session)
            .push(" AND ")
            .in_keys("phone", chunk);
            for row in self.all(txn, q).await? {
                owners.insert(col::<i64>(&row, 0)?);
            }
        }
        Ok(owners)
    }

    /// Ids of the peers that own any of these lowercased usernames.
    async fn username_owners(
        &self,
        txn: &DatabaseTransaction,
        session: &str,
        keys: Vec<Vec<u8>>,
    ) -> R<BTreeSet<i64>> {
        let mut owners = BTreeSet::new();
        for chunk in Keys::Bytes(keys).chunks(self.keys_per_statement()) {
            let mut q = self.sql();
            match self.engine {
                // One primary-key probe per key, whatever the statistics say.
                #[cfg(feature = "postgres")]
                Engine::Postgres => {
                    q.push(&format!(
                        "SELECT (SELECT u.peer_id FROM {} u WHERE u.session = ",
                        self.tables.peer_usernames
                    ))
                    .bind(session)
                    .push(" AND u.username_lower = k.v) FROM ")
                    .unnest(chunk)
                    .push(" AS k(v)");
                }
                _ => {
                    q.push(&format!(
                        "SELECT peer_id FROM {} WHERE session = ",
                        self.tables.peer_usernames
                    ))
                    .bind(session)
                    .push(" AND ")
                    .in_keys("username_lower", chunk);
                }
            }
            for row in self.all(txn, q).await? {
                owners.extend(col::<Option<i64>>(&row, 0)?);
            }
        }
        Ok(owners)
    }

    /// One attempt of `cache_peers`, inside a write transaction: read the
    /// stored peers of the batch and the current owners of its usernames
    /// and phones, apply the batch in memory with the reference rules, then
    /// write back only what changed.
    async fn cache_peers_in(
        &self,
        txn: &DatabaseTransaction,
        session: &str,
        peers: &[Peer],
    ) -> R<()> {
        if !self.lock_session(txn, session).await? {
            return Err(Error::session_not_found(session).into());
        }
        if peers.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = peers
            .iter()
            .map(|p| p.id.marked())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut stored = self.load_peers(txn, session, ids).await?;
        let keys: BTreeSet<String> = peers.iter().flat_map(Peer::username_keys).collect();
        let phones: BTreeSet<String> = peers.iter().filter_map(|p| p.phone.clone()).collect();
        let mut owners = BTreeSet::new();
        if !keys.is_empty() {
            let keys = keys.into_iter().map(String::into_bytes).collect();
            owners.extend(self.username_owners(txn, session, keys).await?);
        }
        if !phones.is_empty() {
            owners.extend(
                self.phone_owners(txn, session, phones.into_iter().collect())
                    .await?,
            );
        }
        let extra: Vec<i64> = owners
            .into_iter()
            .filter(|id| PeerId::from_marked(*id).map_or(true, |id| !stored.contains_key(&id)))
            .collect();
        if !extra.is_empty() {
            stored.extend(self.load_peers(txn, session, extra).await?);
        }

        let mut table = PeerTable::default();
        for peer in stored.values() {
            table.upsert(peer);
        }
        for peer in peers {
            table.upsert(peer);
        }

        let mut changed: Vec<&Peer> = Vec::new();
        let mut drop_names: Vec<i64> = Vec::new();
        let mut add_names: Vec<&Peer> = Vec::new();
        for peer in table.iter() {
            let old = stored.get(&peer.id);
            if old == Some(peer) {
                continue;
            }
            changed.push(peer);
            let old_names = old.and_then(|o| o.usernames.as_deref()).unwrap_or_default();
            let new_names = peer.usernames.as_deref().unwrap_or_default();
            if old_names != new_names {
                if !old_names.is_empty() {
                    drop_names.push(peer.id.marked());
                }
                if !new_names.is_empty() {
                    add_names.push(peer);
                }
            }
        }
        self.upsert_peers(txn, session, &changed).await?;
        for chunk in Keys::Ids(drop_names).chunks(self.keys_per_statement()) {
            let mut q = self.sql();
            q.push(&format!(
                "DELETE FROM {} WHERE session = ",
                self.tables.peer_usernames
            ))
            .bind(session)
            .push(" AND ")
            .in_keys("peer_id", chunk);
            self.exec(txn, q).await?;
        }
        self.insert_usernames(txn, session, &add_names).await
    }

    async fn insert_session_data(
        &self,
        txn: &DatabaseTransaction,
        session: &str,
        data: &SessionData,
    ) -> R<()> {
        let t = &self.tables;
        let dcs = data
            .dcs
            .iter()
            .map(|dc| Self::dc_values(session, dc))
            .collect();
        self.insert_rows(
            txn,
            &t.dc_options,
            &["session", "dc_id", "ipv4", "ipv6", "auth_key"],
            None,
            dcs,
        )
        .await?;
        let channels = data
            .update_state
            .channels
            .iter()
            .map(|(id, pts)| vec![session.into(), (*id).into(), (*pts).into()])
            .collect();
        self.insert_rows(
            txn,
            &t.channel_pts,
            &["session", "channel_id", "pts"],
            None,
            channels,
        )
        .await?;
        let mut table = PeerTable::default();
        for peer in &data.peers {
            table.upsert(peer);
        }
        let peers: Vec<&Peer> = table.iter().collect();
        self.upsert_peers(txn, session, &peers).await?;
        self.insert_usernames(txn, session, &peers).await?;
        let files = data
            .sent_files
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
            .collect();
        self.insert_rows(
            txn,
            &t.sent_files,
            &["session", "md5", "size", "kind", "file_id", "access_hash"],
            Some((
                &["session", "md5", "size", "kind"],
                &["file_id", "access_hash"],
            )),
            files,
        )
        .await
    }

    async fn import_in(
        &self,
        txn: &DatabaseTransaction,
        session: &str,
        data: &SessionData,
    ) -> R<()> {
        let t = &self.tables;
        let now = now_ms();
        let mut q = self.sql();
        q.push(&format!(
            "INSERT INTO {} (session, home_dc, self_user_id, self_is_bot, api_id, test_mode, \
             takeout_id, created_at_ms, updated_at_ms, state_pts, state_qts, state_date, \
             state_seq) VALUES (",
            t.sessions
        ))
        .bind_list::<Value>([
            session.into(),
            data.home_dc.into(),
            data.self_user.map(|u| u.id).into(),
            data.self_user.map(|u| u.is_bot).into(),
            data.api_id.into(),
            data.test_mode.into(),
            data.takeout_id.into(),
            now.into(),
            now.into(),
            data.update_state.pts.into(),
            data.update_state.qts.into(),
            data.update_state.date.into(),
            data.update_state.seq.into(),
        ])
        .push(")")
        .on_conflict_update(
            &["session"],
            &[
                "home_dc",
                "self_user_id",
                "self_is_bot",
                "api_id",
                "test_mode",
                "takeout_id",
                "updated_at_ms",
                "state_pts",
                "state_qts",
                "state_date",
                "state_seq",
            ],
        );
        self.exec(txn, q).await?;
        for table in [
            &t.dc_options,
            &t.channel_pts,
            &t.peer_usernames,
            &t.peers,
            &t.sent_files,
        ] {
            let mut q = self.sql();
            q.push(&format!("DELETE FROM {table} WHERE session = "))
                .bind(session);
            self.exec(txn, q).await?;
        }
        self.insert_session_data(txn, session, data).await
    }

    async fn create_in(&self, txn: &DatabaseTransaction, session: &str) -> R<()> {
        let now = now_ms();
        let mut q = self.sql();
        q.push(&format!(
            "INSERT INTO {} (session, home_dc, self_user_id, self_is_bot, api_id, test_mode, \
             takeout_id, created_at_ms, updated_at_ms, state_pts, state_qts, state_date, \
             state_seq) VALUES (",
            self.tables.sessions
        ))
        .bind_list::<Value>([
            session.into(),
            DEFAULT_HOME_DC.into(),
            Option::<i64>::None.into(),
            Option::<bool>::None.into(),
            Option::<i32>::None.into(),
            false.into(),
            Option::<i64>::None.into(),
            now.into(),
            now.into(),
            0i32.into(),
            0i32.into(),
            0i32.into(),
            0i32.into(),
        ])
        .push(")");
        match self.exec(txn, q).await {
            Ok(_) => {}
            Err(fail) if is_unique_violation(&fail) => {
                return Err(Error::session_exists(session).into());
            }
            Err(fail) => return Err(fail),
        }
        self.insert_session_data(txn, session, &SessionData::default())
            .await
    }

    async fn copy_in(
        &self,
        txn: &DatabaseTransaction,
        from: &str,
        to: &str,
        overwrite: bool,
    ) -> R<()> {
        let t = &self.tables;
        if !self.lock_session(txn, from).await? {
            return Err(Error::session_not_found(from).into());
        }
        if from == to {
            return if overwrite {
                Ok(())
            } else {
                Err(Error::session_exists(to).into())
            };
        }
        if self.lock_session(txn, to).await? {
            if !overwrite {
                return Err(Error::session_exists(to).into());
            }
            let mut q = self.sql();
            q.push(&format!("DELETE FROM {} WHERE session = ", t.sessions))
                .bind(to);
            self.exec(txn, q).await?;
        }
        let now = now_ms();
        let mut q = self.sql();
        let greatest = q.greatest();
        q.push(&format!(
            "INSERT INTO {s} (session, home_dc, self_user_id, self_is_bot, api_id, test_mode, \
             takeout_id, created_at_ms, updated_at_ms, state_pts, state_qts, state_date, \
             state_seq) SELECT ",
            s = t.sessions
        ))
        .bind(to)
        .push(", home_dc, self_user_id, self_is_bot, api_id, test_mode, takeout_id, ")
        .bind(now)
        .push(&format!(", {greatest}(updated_at_ms, "))
        .bind(now)
        .push(&format!(
            "), state_pts, state_qts, state_date, state_seq FROM {} WHERE session = ",
            t.sessions
        ))
        .bind(from);
        self.exec(txn, q).await?;
        let children: [(&str, &str); 5] = [
            (&t.dc_options, "dc_id, ipv4, ipv6, auth_key"),
            (&t.channel_pts, "channel_id, pts"),
            (
                &t.peers,
                "id, kind, hash, hash_is_min, usernames_known, phone, name, last_seen",
            ),
            (&t.peer_usernames, "username_lower, peer_id, pos, username"),
            (&t.sent_files, "md5, size, kind, file_id, access_hash"),
        ];
        for (table, columns) in children {
            let mut q = self.sql();
            q.push(&format!("INSERT INTO {table} (session, {columns}) SELECT "))
                .bind(to)
                .push(&format!(", {columns} FROM {table} WHERE session = "))
                .bind(from);
            self.exec(txn, q).await?;
        }
        Ok(())
    }

    async fn export_in(&self, txn: &DatabaseTransaction, session: &str) -> R<SessionData> {
        let t = &self.tables;
        let row = self
            .session_row(
                txn,
                session,
                "home_dc, self_user_id, self_is_bot, api_id, test_mode, takeout_id, \
                 state_pts, state_qts, state_date, state_seq",
            )
            .await?;
        let self_user_id: Option<i64> = col(&row, 1)?;
        let self_is_bot: Option<bool> = col(&row, 2)?;
        let mut data = SessionData {
            home_dc: col(&row, 0)?,
            dcs: Vec::new(),
            self_user: self_user_id.map(|id| SelfUser {
                id,
                is_bot: self_is_bot.unwrap_or(false),
            }),
            api_id: col(&row, 3)?,
            test_mode: col(&row, 4)?,
            takeout_id: col(&row, 5)?,
            update_state: UpdateState {
                pts: col(&row, 6)?,
                qts: col(&row, 7)?,
                date: col(&row, 8)?,
                seq: col(&row, 9)?,
                channels: BTreeMap::new(),
            },
            peers: Vec::new(),
            sent_files: Vec::new(),
        };
        data.dcs = self.dcs_in(txn, session).await?;
        let mut q = self.sql();
        q.push(&format!(
            "SELECT channel_id, pts FROM {} WHERE session = ",
            t.channel_pts
        ))
        .bind(session);
        for row in self.all(txn, q).await? {
            data.update_state
                .channels
                .insert(col(&row, 0)?, col(&row, 1)?);
        }
        let mut q = self.sql();
        q.push(&self.peer_select())
            .push(" WHERE p.session = ")
            .bind(session)
            .push(" ORDER BY p.id, u.pos");
        data.peers = self.decode_peers(&self.all(txn, q).await?)?;
        let mut q = self.sql();
        q.push(&format!(
            "SELECT md5, size, kind, file_id, access_hash FROM {} WHERE session = ",
            t.sent_files
        ))
        .bind(session);
        for row in self.all(txn, q).await? {
            data.sent_files.push(self.decode_sent_file(&row)?);
        }
        data.canonicalize();
        Ok(data)
    }

    fn decode_sent_file(&self, row: &QueryResult) -> R<(SentFileKey, SentFile)> {
        let md5: Vec<u8> = col(row, 0)?;
        let kind: i32 = col(row, 2)?;
        let md5: [u8; 16] = md5.as_slice().try_into().map_err(|_| {
            self.corrupt(
                "sent_files",
                format!("an MD5 is {} bytes; expected 16", md5.len()),
            )
        })?;
        let kind = FileKind::from_code(i64::from(kind)).ok_or_else(|| {
            self.corrupt(
                "sent_files",
                format!("file kind code {kind}; expected 0 or 1"),
            )
        })?;
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

    async fn dcs_in<C: ConnectionTrait>(&self, c: &C, session: &str) -> R<Vec<DcOption>> {
        let mut q = self.sql();
        q.push(&format!(
            "SELECT dc_id, ipv4, ipv6, auth_key FROM {} WHERE session = ",
            self.tables.dc_options
        ))
        .bind(session)
        .push(" ORDER BY dc_id");
        self.all(c, q)
            .await?
            .iter()
            .map(|row| self.decode_dc(row))
            .collect()
    }

    /// One attempt at a lease: `Ok(None)` when another owner holds it.
    async fn try_acquire(
        &self,
        session: &str,
        owner: &str,
        expires: i64,
        now: i64,
    ) -> R<Option<()>> {
        let t = &self.tables;
        let owner_bytes = owner.as_bytes().to_vec();
        let won = match self.engine {
            Engine::Sqlite | Engine::Postgres => {
                let mut q = self.sql();
                q.push(&format!(
                    "INSERT INTO {l} (session, owner, expires_at_ms) VALUES (",
                    l = t.leases
                ))
                .bind(session)
                .push(", ")
                .bind(owner_bytes)
                .push(", ")
                .bind(expires)
                .push(&format!(
                    ") ON CONFLICT (session) DO UPDATE SET owner = excluded.owner, \
                     expires_at_ms = excluded.expires_at_ms WHERE {l}.owner = excluded.owner \
                     OR {l}.expires_at_ms <= ",
                    l = t.leases
                ))
                .bind(now);
                self.exec(&self.db, q).await? > 0
            }
            Engine::MySql => {
                let mut q = self.sql();
                q.push(&format!(
                    "INSERT INTO {} (session, owner, expires_at_ms) VALUES (",
                    t.leases
                ))
                .bind(session)
                .push(", ")
                .bind(owner_bytes.clone())
                .push(", ")
                .bind(expires)
                .push(")")
                .on_conflict_update(&["session"], &[]);
                self.exec(&self.db, q).await?;
                let mut q = self.sql();
                q.push(&format!("UPDATE {} SET owner = ", t.leases))
                    .bind(owner_bytes.clone())
                    .push(", expires_at_ms = ")
                    .bind(expires)
                    .push(" WHERE session = ")
                    .bind(session)
                    .push(" AND (owner = ")
                    .bind(owner_bytes)
                    .push(" OR expires_at_ms <= ")
                    .bind(now)
                    .push(")");
                self.exec(&self.db, q).await? > 0
            }
        };
        Ok(won.then_some(()))
    }

    async fn lease_holder(&self, session: &str) -> R<Option<(String, i64)>> {
        let mut q = self.sql();
        q.push(&format!(
            "SELECT owner, expires_at_ms FROM {} WHERE session = ",
            self.tables.leases
        ))
        .bind(session);
        match self.one(&self.db, q).await? {
            Some(row) => {
                let owner: Vec<u8> = col(&row, 0)?;
                Ok(Some((
                    String::from_utf8_lossy(&owner).into_owned(),
                    col(&row, 1)?,
                )))
            }
            None => Ok(None),
        }
    }
}

/// Column `i` of a row.
fn col<T: TryGetable>(row: &QueryResult, i: usize) -> std::result::Result<T, sea_orm::DbErr> {
    row.try_get_by_index(i)
}

fn check_username_keys(peers: &[Peer]) -> Result<()> {
    for peer in peers {
        for key in peer.username_keys() {
            if key.len() > MAX_USERNAME_KEY_LEN {
                return Err(Error::invalid(format!(
                    "a lowercased username is at most {MAX_USERNAME_KEY_LEN} bytes, got {}",
                    key.len()
                )));
            }
        }
    }
    Ok(())
}

#[async_trait]
impl SessionStore for SqlStore {
    fn backend_name(&self) -> &'static str {
        self.engine.name()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
            .durable(!self.in_memory)
            .shared_between_processes(!self.in_memory)
            .atomic_multi_key_writes(true)
            .leases(true)
    }

    async fn list(&self) -> Result<Vec<String>> {
        attempt!(self, {
            let mut q = self.sql();
            q.push(&format!(
                "SELECT session FROM {} ORDER BY session",
                self.tables.sessions
            ));
            let mut names = Vec::new();
            for row in self.all(&self.db, q).await? {
                names.push(col::<String>(&row, 0)?);
            }
            names.sort();
            Ok(names)
        })
    }

    async fn exists(&self, session: &str) -> Result<bool> {
        attempt!(self, { self.session_exists(&self.db, session).await })
    }

    async fn create(&self, session: &str) -> Result<()> {
        attempt!(self, {
            let txn = self.begin_write().await?;
            self.create_in(&txn, session).await?;
            txn.commit().await?;
            Ok(())
        })
    }

    async fn delete(&self, session: &str) -> Result<bool> {
        attempt!(self, {
            let mut q = self.sql();
            q.push(&format!(
                "DELETE FROM {} WHERE session = ",
                self.tables.sessions
            ))
            .bind(session);
            Ok(self.exec(&self.db, q).await? > 0)
        })
    }

    async fn copy(&self, from: &str, to: &str, overwrite: bool) -> Result<()> {
        attempt!(self, {
            let txn = self.begin_write().await?;
            self.copy_in(&txn, from, to, overwrite).await?;
            txn.commit().await?;
            Ok(())
        })
    }

    async fn flush(&self) -> Result<()> {
        Ok(())
    }

    async fn export(&self, session: &str) -> Result<SessionData> {
        attempt!(self, {
            let txn = self.begin_read().await?;
            let data = self.export_in(&txn, session).await?;
            txn.commit().await?;
            Ok(data)
        })
    }

    async fn import(&self, session: &str, data: &SessionData) -> Result<()> {
        check_username_keys(&data.peers)?;
        attempt!(self, {
            let txn = self.begin_write().await?;
            self.import_in(&txn, session, data).await?;
            txn.commit().await?;
            Ok(())
        })
    }

    async fn home_dc(&self, session: &str) -> Result<i32> {
        attempt!(self, {
            let row = self.session_row(&self.db, session, "home_dc").await?;
            Ok(col::<i32>(&row, 0)?)
        })
    }

    async fn set_home_dc(&self, session: &str, dc_id: i32) -> Result<()> {
        attempt!(self, {
            self.update_session(&self.db, session, true, |q| {
                q.push("home_dc = ").bind(dc_id);
            })
            .await
        })
    }

    async fn dc_options(&self, session: &str) -> Result<Vec<DcOption>> {
        attempt!(self, {
            let dcs = self.dcs_in(&self.db, session).await?;
            if dcs.is_empty() {
                self.require_session(&self.db, session).await?;
            }
            Ok(dcs)
        })
    }

    async fn set_dc_option(&self, session: &str, dc: &DcOption) -> Result<()> {
        attempt!(self, {
            let txn = self.begin_write().await?;
            self.update_session(&txn, session, true, |q| {
                q.push("home_dc = home_dc");
            })
            .await?;
            let table = self.tables.dc_options.clone();
            self.insert_rows(
                &txn,
                &table,
                &["session", "dc_id", "ipv4", "ipv6", "auth_key"],
                Some((&["session", "dc_id"], &["ipv4", "ipv6", "auth_key"])),
                vec![Self::dc_values(session, dc)],
            )
            .await?;
            txn.commit().await?;
            Ok(())
        })
    }

    async fn self_user(&self, session: &str) -> Result<Option<SelfUser>> {
        attempt!(self, {
            let row = self
                .session_row(&self.db, session, "self_user_id, self_is_bot")
                .await?;
            let id: Option<i64> = col(&row, 0)?;
            let is_bot: Option<bool> = col(&row, 1)?;
            Ok(id.map(|id| SelfUser {
                id,
                is_bot: is_bot.unwrap_or(false),
            }))
        })
    }

    async fn set_self_user(&self, session: &str, user: Option<SelfUser>) -> Result<()> {
        attempt!(self, {
            self.update_session(&self.db, session, true, |q| {
                q.push("self_user_id = ")
                    .bind(user.map(|u| u.id))
                    .push(", self_is_bot = ")
                    .bind(user.map(|u| u.is_bot));
            })
            .await
        })
    }

    async fn metadata(&self, session: &str) -> Result<SessionMeta> {
        attempt!(self, {
            let row = self
                .session_row(
                    &self.db,
                    session,
                    "api_id, test_mode, created_at_ms, updated_at_ms",
                )
                .await?;
            Ok(SessionMeta {
                api_id: col(&row, 0)?,
                test_mode: col(&row, 1)?,
                created_at_ms: col(&row, 2)?,
                updated_at_ms: col(&row, 3)?,
            })
        })
    }

    async fn set_metadata(
        &self,
        session: &str,
        api_id: Option<i32>,
        test_mode: bool,
    ) -> Result<()> {
        attempt!(self, {
            self.update_session(&self.db, session, true, |q| {
                q.push("api_id = ")
                    .bind(api_id)
                    .push(", test_mode = ")
                    .bind(test_mode);
            })
            .await
        })
    }

    async fn takeout_id(&self, session: &str) -> Result<Option<i64>> {
        attempt!(self, {
            let row = self.session_row(&self.db, session, "takeout_id").await?;
            Ok(col::<Option<i64>>(&row, 0)?)
        })
    }

    async fn set_takeout_id(&self, session: &str, takeout_id: Option<i64>) -> Result<()> {
        attempt!(self, {
            self.update_session(&self.db, session, true, |q| {
                q.push("takeout_id = ").bind(takeout_id);
            })
            .await
        })
    }

    async fn update_state(&self, session: &str) -> Result<UpdateState> {
        attempt!(self, {
            let mut q = self.sql();
            q.push(&format!(
                "SELECT s.state_pts, s.state_qts, s.state_date, s.state_seq, c.channel_id, c.pts \
                 FROM {} s LEFT JOIN {} c ON c.session = s.session WHERE s.session = ",
                self.tables.sessions, self.tables.channel_pts
            ))
            .bind(session);
            let rows = self.all(&self.db, q).await?;
            let Some(first) = rows.first() else {
                return Err(Error::session_not_found(session).into());
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
    }

    async fn set_update_state(&self, session: &str, change: &UpdateStateChange) -> Result<()> {
        attempt!(self, {
            match change {
                UpdateStateChange::All(state) => {
                    let txn = self.begin_write().await?;
                    self.update_session(&txn, session, false, |q| {
                        q.push("state_pts = ")
                            .bind(state.pts)
                            .push(", state_qts = ")
                            .bind(state.qts)
                            .push(", state_date = ")
                            .bind(state.date)
                            .push(", state_seq = ")
                            .bind(state.seq);
                    })
                    .await?;
                    let mut q = self.sql();
                    q.push(&format!(
                        "DELETE FROM {} WHERE session = ",
                        self.tables.channel_pts
                    ))
                    .bind(session);
                    self.exec(&txn, q).await?;
                    let rows = state
                        .channels
                        .iter()
                        .map(|(id, pts)| vec![session.into(), (*id).into(), (*pts).into()])
                        .collect();
                    let table = self.tables.channel_pts.clone();
                    self.insert_rows(&txn, &table, &["session", "channel_id", "pts"], None, rows)
                        .await?;
                    txn.commit().await?;
                    Ok(())
                }
                UpdateStateChange::Primary { pts, date, seq } => {
                    self.update_session(&self.db, session, false, |q| {
                        q.push("state_pts = ")
                            .bind(*pts)
                            .push(", state_date = ")
                            .bind(*date)
                            .push(", state_seq = ")
                            .bind(*seq);
                    })
                    .await
                }
                UpdateStateChange::Secondary { qts } => {
                    self.update_session(&self.db, session, false, |q| {
                        q.push("state_qts = ").bind(*qts);
                    })
                    .await
                }
                UpdateStateChange::Channel { id, pts } => {
                    let mut q = self.sql();
                    q.push(&format!(
                        "INSERT INTO {} (session, channel_id, pts) SELECT session, ",
                        self.tables.channel_pts
                    ))
                    .bind(*id)
                    .push(", ")
                    .bind(*pts)
                    .push(&format!(" FROM {} WHERE session = ", self.tables.sessions))
                    .bind(session)
                    .on_conflict_update(&["session", "channel_id"], &["pts"]);
                    if self.exec(&self.db, q).await? == 0 {
                        return Err(Error::session_not_found(session).into());
                    }
                    Ok(())
                }
                UpdateStateChange::RemoveChannel { id } => {
                    let mut q = self.sql();
                    q.push(&format!(
                        "DELETE FROM {} WHERE session = ",
                        self.tables.channel_pts
                    ))
                    .bind(session)
                    .push(" AND channel_id = ")
                    .bind(*id);
                    if self.exec(&self.db, q).await? == 0 {
                        self.require_session(&self.db, session).await?;
                    }
                    Ok(())
                }
            }
        })
    }

    async fn cache_peers(&self, session: &str, peers: &[Peer]) -> Result<()> {
        check_username_keys(peers)?;
        attempt!(self, {
            let txn = self.begin_write().await?;
            self.cache_peers_in(&txn, session, peers).await?;
            txn.commit().await?;
            Ok(())
        })
    }

    async fn peers(&self, session: &str, ids: &[PeerId]) -> Result<Vec<Option<Peer>>> {
        attempt!(self, {
            let unique: Vec<i64> = ids
                .iter()
                .map(|id| id.marked())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let asked = unique.len();
            let found = self.load_peers(&self.db, session, unique).await?;
            if found.len() < asked || asked == 0 {
                self.require_session(&self.db, session).await?;
            }
            Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
        })
    }

    async fn peer_by_username(&self, session: &str, username: &str) -> Result<Option<Peer>> {
        let key = normalize_username(username);
        attempt!(self, {
            let mut q = self.sql();
            q.push(&format!(
                "SELECT p.id, p.kind, p.hash, p.hash_is_min, p.usernames_known, p.phone, p.name, \
                 p.last_seen, u.username FROM {names} k \
                 JOIN {peers} p ON p.session = k.session AND p.id = k.peer_id \
                 LEFT JOIN {names} u ON u.session = p.session AND u.peer_id = p.id \
                 WHERE k.session = ",
                names = self.tables.peer_usernames,
                peers = self.tables.peers
            ))
            .bind(session)
            .push(" AND k.username_lower = ")
            .bind(key.clone().into_bytes())
            .push(" ORDER BY u.pos");
            let rows = self.all(&self.db, q).await?;
            let peer = self.decode_peers(&rows)?.into_iter().next();
            if peer.is_none() {
                self.require_session(&self.db, session).await?;
            }
            Ok(peer)
        })
    }

    async fn peer_by_phone(&self, session: &str, phone: &str) -> Result<Option<Peer>> {
        attempt!(self, {
            let mut q = self.sql();
            q.push(&self.peer_select())
                .push(" WHERE p.session = ")
                .bind(session)
                .push(" AND p.phone = ")
                .bind(phone)
                .push(" ORDER BY p.id, u.pos");
            let rows = self.all(&self.db, q).await?;
            let peer = self.decode_peers(&rows)?.into_iter().next();
            if peer.is_none() {
                self.require_session(&self.db, session).await?;
            }
            Ok(peer)
        })
    }

    async fn peer_count(&self, session: &str) -> Result<u64> {
        attempt!(self, {
            let mut q = self.sql();
            q.push(&format!(
                "SELECT COUNT(*) FROM {} WHERE session = ",
                self.tables.peers
            ))
            .bind(session);
            let count = match self.one(&self.db, q).await? {
                Some(row) => col::<i64>(&row, 0)?,
                None => 0,
            };
            if count == 0 {
                self.require_session(&self.db, session).await?;
            }
            Ok(u64::try_from(count).unwrap_or(0))
        })
    }

    async fn sent_file(&self, session: &str, key: &SentFileKey) -> Result<Option<SentFile>> {
        attempt!(self, {
            let mut q = self.sql();
            q.push(&format!(
                "SELECT md5, size, kind, file_id, access_hash FROM {} WHERE session = ",
                self.tables.sent_files
            ))
            .bind(session)
            .push(" AND md5 = ")
            .bind(key.md5.to_vec())
            .push(" AND size = ")
            .bind(key.size)
            .push(" AND kind = ")
            .bind(key.kind.code());
            match self.one(&self.db, q).await? {
                Some(row) => Ok(Some(self.decode_sent_file(&row)?.1)),
                None => {
                    self.require_session(&self.db, session).await?;
                    Ok(None)
                }
            }
        })
    }

    async fn cache_sent_file(
        &self,
        session: &str,
        key: &SentFileKey,
        file: &SentFile,
    ) -> Result<()> {
        attempt!(self, {
            let mut q = self.sql();
            q.push(&format!(
                "INSERT INTO {} (session, md5, size, kind, file_id, access_hash) SELECT session, ",
                self.tables.sent_files
            ))
            .bind_list::<Value>([
                key.md5.to_vec().into(),
                key.size.into(),
                key.kind.code().into(),
                file.id.into(),
                file.access_hash.into(),
            ])
            .push(&format!(" FROM {} WHERE session = ", self.tables.sessions))
            .bind(session)
            .on_conflict_update(
                &["session", "md5", "size", "kind"],
                &["file_id", "access_hash"],
            );
            if self.exec(&self.db, q).await? == 0 {
                return Err(Error::session_not_found(session).into());
            }
            Ok(())
        })
    }

    async fn acquire_lease(&self, session: &str, owner: &str, ttl: Duration) -> Result<LeaseInfo> {
        validate_lease(owner, ttl)?;
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        attempt!(self, {
            // A holder seen here may expire or release before it is read
            // back; then the lease is simply tried again.
            let mut round = 0;
            loop {
                let now = now_ms();
                let expires_at_ms = now.saturating_add(ttl_ms);
                if self
                    .try_acquire(session, owner, expires_at_ms, now)
                    .await?
                    .is_some()
                {
                    return Ok(LeaseInfo {
                        session: session.to_owned(),
                        owner: owner.to_owned(),
                        expires_at_ms,
                    });
                }
                round += 1;
                match self.lease_holder(session).await? {
                    Some((holder, until_ms)) if holder != owner && until_ms > now_ms() => {
                        return Err(Error::LeaseHeld {
                            session: session.to_owned(),
                            owner: holder,
                            until_ms,
                        }
                        .into());
                    }
                    _ if round < 5 => continue,
                    _ => {
                        return Err(Error::backend(
                            self.engine.name(),
                            "the lease kept changing hands while it was being acquired",
                        )
                        .into());
                    }
                }
            }
        })
    }

    async fn release_lease(&self, session: &str, owner: &str) -> Result<bool> {
        attempt!(self, {
            let t = &self.tables;
            let mut q = self.sql();
            q.push(&format!("DELETE FROM {} WHERE session = ", t.leases))
                .bind(session)
                .push(" AND owner = ")
                .bind(owner.as_bytes().to_vec())
                .push(" AND expires_at_ms > ")
                .bind(now_ms());
            if self.exec(&self.db, q).await? > 0 {
                return Ok(true);
            }
            let mut q = self.sql();
            q.push(&format!("DELETE FROM {} WHERE session = ", t.leases))
                .bind(session)
                .push(" AND owner = ")
                .bind(owner.as_bytes().to_vec());
            self.exec(&self.db, q).await?;
            Ok(false)
        })
    }
}
