//! The schema: table names, migrations, and the version check run on open.

use std::time::Duration;

use sea_orm::sea_query::{Alias, IntoIden};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, DynIden, Statement};
use sea_orm_migration::{MigrationName, MigrationTrait, MigratorTraitSelf, SchemaManager};
use session_core::schema::check_version;
use session_core::{Error, ErrorKind, OpenMode};

use crate::config::Engine;
use crate::error::{ErrorMapper, R, is_missing_table};

/// The schema version this build writes: the number of migrations it knows.
pub const SCHEMA_VERSION: i64 = 1;

/// Names of the migrations this build knows, oldest first.
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = ["m0001_initial"];

/// The quoted names of a store's tables.
#[derive(Clone, Debug)]
pub(crate) struct Tables {
    pub(crate) prefix: String,
    pub(crate) sessions: String,
    pub(crate) dc_options: String,
    pub(crate) channel_pts: String,
    pub(crate) peers: String,
    pub(crate) peer_usernames: String,
    pub(crate) sent_files: String,
    pub(crate) leases: String,
    pub(crate) schema: String,
    pub(crate) migrations: String,
}

/// Table suffixes, in an order that drops children before parents.
const TABLE_SUFFIXES: [&str; 9] = [
    "peer_usernames",
    "peers",
    "dc_options",
    "channel_pts",
    "sent_files",
    "sessions",
    "leases",
    "schema",
    "migrations",
];

pub(crate) fn quote(engine: Engine, name: &str) -> String {
    match engine {
        Engine::MySql => format!("`{name}`"),
        Engine::Sqlite | Engine::Postgres => format!("\"{name}\""),
    }
}

impl Tables {
    pub(crate) fn new(engine: Engine, prefix: &str) -> Tables {
        let q = |suffix: &str| quote(engine, &format!("{prefix}{suffix}"));
        Tables {
            prefix: prefix.to_owned(),
            sessions: q("sessions"),
            dc_options: q("dc_options"),
            channel_pts: q("channel_pts"),
            peers: q("peers"),
            peer_usernames: q("peer_usernames"),
            sent_files: q("sent_files"),
            leases: q("leases"),
            schema: q("schema"),
            migrations: q("migrations"),
        }
    }

    pub(crate) fn raw(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }
}

pub(crate) fn backend(engine: Engine) -> DbBackend {
    match engine {
        Engine::Sqlite => DbBackend::Sqlite,
        Engine::Postgres => DbBackend::Postgres,
        Engine::MySql => DbBackend::MySql,
    }
}

/// Column types per engine.
struct Types {
    session: &'static str,
    int: &'static str,
    bigint: &'static str,
    boolean: &'static str,
    blob: &'static str,
    key_blob: &'static str,
    md5: &'static str,
    short_text: &'static str,
    owner: &'static str,
    table_options: String,
    without_rowid: &'static str,
}

impl Types {
    fn new(engine: Engine, mysql_collation: &str) -> Types {
        match engine {
            Engine::Sqlite => Types {
                session: "TEXT",
                int: "INTEGER",
                bigint: "INTEGER",
                boolean: "INTEGER",
                blob: "BLOB",
                key_blob: "BLOB",
                md5: "BLOB",
                short_text: "TEXT",
                owner: "BLOB",
                table_options: String::new(),
                without_rowid: " WITHOUT ROWID",
            },
            Engine::Postgres => Types {
                session: "VARCHAR(255) COLLATE \"C\"",
                int: "INTEGER",
                bigint: "BIGINT",
                boolean: "BOOLEAN",
                blob: "BYTEA",
                key_blob: "BYTEA",
                md5: "BYTEA",
                short_text: "VARCHAR(64)",
                owner: "BYTEA",
                table_options: String::new(),
                without_rowid: "",
            },
            Engine::MySql => Types {
                session: "VARCHAR(255)",
                int: "INT",
                bigint: "BIGINT",
                boolean: "BOOLEAN",
                blob: "BLOB",
                key_blob: "VARBINARY(1600)",
                md5: "VARBINARY(16)",
                short_text: "VARCHAR(64)",
                owner: "VARBINARY(255)",
                table_options: format!(
                    " ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE={mysql_collation}"
                ),
                without_rowid: "",
            },
        }
    }
}

/// The statements of the first migration, in order.
fn initial_ddl(engine: Engine, tables: &Tables, mysql_collation: &str) -> Vec<String> {
    let t = Types::new(engine, mysql_collation);
    let Types {
        session,
        int,
        bigint,
        boolean,
        blob,
        key_blob,
        md5,
        short_text,
        owner,
        ..
    } = t;
    let opts = &t.table_options;
    let rowid = t.without_rowid;
    let Tables {
        sessions,
        dc_options,
        channel_pts,
        peers,
        peer_usernames,
        sent_files,
        leases,
        schema,
        ..
    } = tables;
    let cascade = |parent: &str, cols: &str, parent_cols: &str| {
        format!("FOREIGN KEY ({cols}) REFERENCES {parent} ({parent_cols}) ON DELETE CASCADE")
    };
    let to_session = cascade(sessions, "session", "session");
    let index = |name: &str, table: &str, cols: &str| match engine {
        // MySQL has no IF NOT EXISTS for indexes; there they are declared
        // inside CREATE TABLE instead.
        Engine::MySql => None,
        Engine::Sqlite | Engine::Postgres => Some(format!(
            "CREATE INDEX IF NOT EXISTS {} ON {table} ({cols})",
            quote(engine, &tables.raw(name))
        )),
    };
    let inline_index = |name: &str, cols: &str| match engine {
        Engine::MySql => format!(", INDEX {} ({cols})", quote(engine, &tables.raw(name))),
        Engine::Sqlite | Engine::Postgres => String::new(),
    };
    let mut ddl = vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {schema} (id {int} NOT NULL PRIMARY KEY, \
             version {bigint} NOT NULL){opts}"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {sessions} (\
             session {session} NOT NULL PRIMARY KEY, \
             home_dc {int} NOT NULL, \
             self_user_id {bigint} NULL, \
             self_is_bot {boolean} NULL, \
             api_id {int} NULL, \
             test_mode {boolean} NOT NULL, \
             takeout_id {bigint} NULL, \
             created_at_ms {bigint} NOT NULL, \
             updated_at_ms {bigint} NOT NULL, \
             state_pts {int} NOT NULL, \
             state_qts {int} NOT NULL, \
             state_date {int} NOT NULL, \
             state_seq {int} NOT NULL){opts}"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {dc_options} (\
             session {session} NOT NULL, \
             dc_id {int} NOT NULL, \
             ipv4 {short_text} NULL, \
             ipv6 {short_text} NULL, \
             auth_key {blob} NULL, \
             PRIMARY KEY (session, dc_id), {to_session}){rowid}{opts}"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {channel_pts} (\
             session {session} NOT NULL, \
             channel_id {bigint} NOT NULL, \
             pts {int} NOT NULL, \
             PRIMARY KEY (session, channel_id), {to_session}){rowid}{opts}"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {peers} (\
             session {session} NOT NULL, \
             id {bigint} NOT NULL, \
             kind {int} NULL, \
             hash {bigint} NULL, \
             hash_is_min {boolean} NOT NULL, \
             usernames_known {boolean} NOT NULL, \
             phone {short_text} NULL, \
             name {blob} NULL, \
             last_seen {bigint} NULL, \
             PRIMARY KEY (session, id), {to_session}{}){rowid}{opts}",
            inline_index("peers_phone", "session, phone")
        ),
        // `peer_usernames` stays a rowid table on SQLite: without statistics,
        // SQLite prefers a covering primary key scanned by `session` alone over
        // the `(session, peer_id)` index when the primary key holds every column.
        format!(
            "CREATE TABLE IF NOT EXISTS {peer_usernames} (\
             session {session} NOT NULL, \
             username_lower {key_blob} NOT NULL, \
             peer_id {bigint} NOT NULL, \
             pos {int} NOT NULL, \
             username {blob} NOT NULL, \
             PRIMARY KEY (session, username_lower), {}{}){opts}",
            cascade(peers, "session, peer_id", "session, id"),
            inline_index("peer_usernames_owner", "session, peer_id")
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {sent_files} (\
             session {session} NOT NULL, \
             md5 {md5} NOT NULL, \
             size {bigint} NOT NULL, \
             kind {int} NOT NULL, \
             file_id {bigint} NOT NULL, \
             access_hash {bigint} NOT NULL, \
             PRIMARY KEY (session, md5, size, kind), {to_session}){rowid}{opts}"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {leases} (\
             session {session} NOT NULL PRIMARY KEY, \
             owner {owner} NOT NULL, \
             expires_at_ms {bigint} NOT NULL){opts}"
        ),
    ];
    ddl.extend(index("peers_phone", peers, "session, phone"));
    ddl.extend(index(
        "peer_usernames_owner",
        peer_usernames,
        "session, peer_id",
    ));
    ddl
}

/// Migration 1: every table.
struct Initial {
    engine: Engine,
    tables: Tables,
    mysql_collation: String,
}

impl MigrationName for Initial {
    fn name(&self) -> &str {
        MIGRATIONS[0]
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Initial {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for statement in initial_ddl(self.engine, &self.tables, &self.mysql_collation) {
            db.execute_unprepared(&statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for suffix in &TABLE_SUFFIXES[..7] {
            let table = quote(self.engine, &self.tables.raw(suffix));
            db.execute_unprepared(&format!("DROP TABLE IF EXISTS {table}"))
                .await?;
        }
        Ok(())
    }
}

/// The store's migrator: its migrations and its bookkeeping table
/// (`{prefix}migrations`) both live under the table prefix.
pub(crate) struct Migrator {
    engine: Engine,
    tables: Tables,
    mysql_collation: String,
}

impl MigratorTraitSelf for Migrator {
    fn migrations(&self) -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(Initial {
            engine: self.engine,
            tables: self.tables.clone(),
            mysql_collation: self.mysql_collation.clone(),
        })]
    }

    fn migration_table_name(&self) -> DynIden {
        Alias::new(self.tables.raw("migrations")).into_iden()
    }
}

/// The binary, no-pad collation that makes MySQL compare session names
/// byte for byte (trailing spaces included): `utf8mb4_0900_bin` on MySQL 8,
/// `utf8mb4_nopad_bin` on MariaDB, `utf8mb4_bin` as a last resort.
async fn mysql_collation(db: &DatabaseConnection) -> Result<String, DbErr> {
    let rows = db
        .query_all_raw(Statement::from_string(
            DbBackend::MySql,
            "SELECT COLLATION_NAME FROM information_schema.COLLATIONS \
             WHERE COLLATION_NAME IN ('utf8mb4_0900_bin', 'utf8mb4_nopad_bin')",
        ))
        .await?;
    let mut names = Vec::new();
    for row in rows {
        names.push(row.try_get_by_index::<String>(0)?);
    }
    Ok(["utf8mb4_0900_bin", "utf8mb4_nopad_bin"]
        .into_iter()
        .find(|c| names.iter().any(|n| n == c))
        .unwrap_or("utf8mb4_bin")
        .to_owned())
}

async fn has_table(db: &DatabaseConnection, name: &str) -> Result<bool, DbErr> {
    SchemaManager::new(db).has_table(name).await
}

/// What the namespace holds: the version in `{prefix}schema` and the names
/// of the applied migrations, in one statement; `None` when a table is
/// missing.
async fn stored_versions_fast(
    db: &DatabaseConnection,
    engine: Engine,
    tables: &Tables,
) -> Result<Option<(i64, Vec<String>)>, DbErr> {
    let sql = format!(
        "SELECT version, NULL FROM {} WHERE id = 1 UNION ALL SELECT NULL, version FROM {}",
        tables.schema, tables.migrations
    );
    let rows = match engine {
        #[cfg(feature = "mysql")]
        Engine::MySql => mysql_text_query(db, sql).await,
        _ => {
            db.query_all_raw(Statement::from_string(backend(engine), sql))
                .await
        }
    };
    let rows = match rows {
        Ok(rows) => rows,
        Err(err) if is_missing_table(&err) => return Ok(None),
        Err(err) => return Err(err),
    };
    let mut version = 0;
    let mut applied = Vec::new();
    for row in rows {
        if let Some(v) = row.try_get_by_index::<Option<i64>>(0)? {
            version = v;
        }
        if let Some(name) = row.try_get_by_index::<Option<String>>(1)? {
            applied.push(name);
        }
    }
    Ok(Some((version, applied)))
}

/// Runs a statement made once per open over MySQL's text protocol: one
/// round trip, where a prepared statement takes two (prepare, execute) and
/// would be kept on the connection for nothing. Errors as sea-orm gives them.
#[cfg(feature = "mysql")]
async fn mysql_text_query(
    db: &DatabaseConnection,
    sql: String,
) -> Result<Vec<sea_orm::QueryResult>, DbErr> {
    use sea_orm::sqlx;
    use sea_orm::{ConnAcquireErr, RuntimeErr};
    let mut conn = db
        .get_mysql_connection_pool()
        .acquire()
        .await
        .map_err(|e| match e {
            sqlx::Error::PoolTimedOut => DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
            sqlx::Error::PoolClosed => DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed),
            e => DbErr::Conn(RuntimeErr::SqlxError(e.into())),
        })?;
    let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| DbErr::Query(RuntimeErr::SqlxError(e.into())))?;
    Ok(rows.into_iter().map(sea_orm::QueryResult::from).collect())
}

/// Like [`stored_versions_fast`], for a namespace where a table may be
/// missing: each table is looked for first.
async fn stored_versions(
    db: &DatabaseConnection,
    engine: Engine,
    tables: &Tables,
) -> R<(i64, Vec<String>)> {
    if let Some(found) = stored_versions_fast(db, engine, tables).await? {
        return Ok(found);
    }
    let mut version = 0;
    if has_table(db, &tables.raw("schema")).await? {
        let row = db
            .query_one_raw(Statement::from_string(
                backend(engine),
                format!("SELECT version FROM {} WHERE id = 1", tables.schema),
            ))
            .await?;
        if let Some(row) = row {
            version = row.try_get_by_index::<i64>(0)?;
        }
    }
    let mut applied = Vec::new();
    if has_table(db, &tables.raw("migrations")).await? {
        let rows = db
            .query_all_raw(Statement::from_string(
                backend(engine),
                format!("SELECT version FROM {}", tables.migrations),
            ))
            .await?;
        for row in rows {
            applied.push(row.try_get_by_index::<String>(0)?);
        }
    }
    Ok((version, applied))
}

/// How error messages name a namespace.
pub(crate) fn describe(engine: Engine, tables: &Tables, place: &str) -> String {
    format!(
        "the {engine} tables with prefix {:?} in {place}",
        tables.prefix
    )
}

/// Refuses data written by a newer build: a newer recorded version, or a
/// migration this build does not know.
fn refuse_newer(what: &str, version: i64, applied: &[String]) -> R<()> {
    let unknown = applied
        .iter()
        .any(|name| !MIGRATIONS.contains(&name.as_str()));
    let mut found = version.max(i64::try_from(applied.len()).unwrap_or(i64::MAX));
    if unknown {
        found = found.max(SCHEMA_VERSION + 1);
    }
    if found == 0 {
        return Ok(());
    }
    Ok(check_version(what, found, SCHEMA_VERSION)?)
}

/// Whether the namespace is at this build's version, with every migration applied.
fn up_to_date(version: i64, applied: &[String]) -> bool {
    version == SCHEMA_VERSION
        && applied.len() == MIGRATIONS.len()
        && MIGRATIONS.iter().all(|m| applied.iter().any(|a| a == m))
}

/// Checks the namespace as `mode` allows: refuses newer data, and then in
/// [`OpenMode::Create`] (and for an older store in [`OpenMode::ReadWrite`])
/// applies pending migrations and records the version. When the namespace
/// is up to date this is one statement. Safe to run from several processes
/// at once: a losing racer re-reads what the winner applied.
pub(crate) async fn prepare(
    db: &DatabaseConnection,
    engine: Engine,
    tables: &Tables,
    errors: &ErrorMapper,
    mode: OpenMode,
) -> session_core::Result<()> {
    let what = describe(engine, tables, &errors.place);
    let mut attempt = 0;
    loop {
        match prepare_once(db, engine, tables, &what, mode).await {
            Ok(()) => return Ok(()),
            Err(fail) => {
                let err = errors.finish(fail);
                // Another opener may be creating the same tables right now;
                // a lost server, newer data or a missing store is final.
                let retry = mode == OpenMode::Create
                    && !matches!(
                        err.kind(),
                        ErrorKind::Unavailable
                            | ErrorKind::UnsupportedSchemaVersion
                            | ErrorKind::NotFound
                    );
                if !retry || attempt >= 5 {
                    return Err(err);
                }
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
            }
        }
    }
}

async fn prepare_once(
    db: &DatabaseConnection,
    engine: Engine,
    tables: &Tables,
    what: &str,
    mode: OpenMode,
) -> R<()> {
    let (version, applied) = match stored_versions_fast(db, engine, tables).await? {
        Some(found) => found,
        None => stored_versions(db, engine, tables).await?,
    };
    refuse_newer(what, version, &applied)?;
    if up_to_date(version, &applied) {
        return Ok(());
    }
    let empty = version == 0 && applied.is_empty();
    match mode {
        OpenMode::Create => {}
        OpenMode::ReadWrite if !empty => {}
        OpenMode::ReadWrite | OpenMode::ReadOnly if empty => {
            return Err(Error::NotFound {
                what: format!(
                    "an mtsession store in {what} (open it with OpenMode::Create to make one)"
                ),
            }
            .into());
        }
        OpenMode::ReadWrite | OpenMode::ReadOnly => {
            return Err(Error::unsupported(
                engine.name(),
                format!(
                    "reading {what} read-only: it has schema version {version} and needs \
                     migrating to {SCHEMA_VERSION}; open it for writing once"
                ),
            )
            .into());
        }
    }
    let mysql_collation = match engine {
        Engine::MySql => mysql_collation(db).await?,
        Engine::Sqlite | Engine::Postgres => String::new(),
    };
    if engine == Engine::Sqlite {
        // Readers never block the writer, and a commit appends to the log.
        db.execute_unprepared("PRAGMA journal_mode = WAL").await?;
    }
    let migrator = Migrator {
        engine,
        tables: tables.clone(),
        mysql_collation,
    };
    migrator.up(db, None).await?;
    let upsert = match engine {
        Engine::Sqlite | Engine::Postgres => format!(
            "INSERT INTO {t} (id, version) VALUES (1, {SCHEMA_VERSION}) ON CONFLICT (id) \
             DO UPDATE SET version = excluded.version WHERE {t}.version < excluded.version",
            t = tables.schema
        ),
        Engine::MySql => format!(
            "INSERT INTO {t} (id, version) VALUES (1, {SCHEMA_VERSION}) \
             ON DUPLICATE KEY UPDATE version = GREATEST(version, VALUES(version))",
            t = tables.schema
        ),
    };
    db.execute_unprepared(&upsert).await?;
    let (version, applied) = stored_versions(db, engine, tables).await?;
    refuse_newer(what, version, &applied)
}

/// Drops every table of the prefix (children first). Missing tables are fine.
pub(crate) async fn drop_tables(
    db: &DatabaseConnection,
    engine: Engine,
    tables: &Tables,
) -> Result<(), DbErr> {
    for suffix in TABLE_SUFFIXES {
        let table = quote(engine, &tables.raw(suffix));
        let cascade = if engine == Engine::Postgres {
            " CASCADE"
        } else {
            ""
        };
        db.execute_unprepared(&format!("DROP TABLE IF EXISTS {table}{cascade}"))
            .await?;
    }
    Ok(())
}
