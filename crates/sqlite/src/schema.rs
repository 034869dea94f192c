//! The schema, its version, and the checks made when a file is opened.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use session_core::{Error, OpenMode};

use crate::db::{Failure, SqlResult, is_busy};

/// The schema version this build writes and the newest it reads.
pub const SCHEMA_VERSION: i64 = 1;

/// `PRAGMA application_id` of an mtsession store: `"mtss"` in ASCII.
pub const APPLICATION_ID: i32 = 0x6d74_7373;

/// Version 1 of the schema. Every table below `sessions` names it with
/// `ON DELETE CASCADE`; the store also deletes child rows itself, so that
/// nothing depends on `PRAGMA foreign_keys`.
const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS schema_version (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    home_dc INTEGER NOT NULL,
    self_user_id INTEGER,
    self_is_bot INTEGER,
    api_id INTEGER,
    test_mode INTEGER NOT NULL DEFAULT 0,
    takeout_id INTEGER,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    pts INTEGER NOT NULL DEFAULT 0,
    qts INTEGER NOT NULL DEFAULT 0,
    date INTEGER NOT NULL DEFAULT 0,
    seq INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS dc_options (
    session INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    dc_id INTEGER NOT NULL,
    ipv4 TEXT,
    ipv6 TEXT,
    auth_key BLOB,
    PRIMARY KEY (session, dc_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS channel_pts (
    session INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    channel_id INTEGER NOT NULL,
    pts INTEGER NOT NULL,
    PRIMARY KEY (session, channel_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS peers (
    session INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    id INTEGER NOT NULL,
    kind INTEGER,
    hash INTEGER,
    hash_is_min INTEGER,
    usernames TEXT,
    phone TEXT,
    name TEXT,
    last_seen INTEGER,
    PRIMARY KEY (session, id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS peers_by_phone ON peers (session, phone)
    WHERE phone IS NOT NULL;
CREATE TABLE IF NOT EXISTS peer_usernames (
    session INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    username_lower TEXT NOT NULL,
    peer_id INTEGER NOT NULL,
    PRIMARY KEY (session, username_lower)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sent_files (
    session INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    md5 BLOB NOT NULL,
    size INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    file_id INTEGER NOT NULL,
    access_hash INTEGER NOT NULL,
    PRIMARY KEY (session, md5, size, kind)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
    session TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS flush_marker (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS auth_keys (
    auth_key_id INTEGER PRIMARY KEY,
    auth_key BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS server_sessions (
    auth_key_id INTEGER NOT NULL REFERENCES auth_keys (auth_key_id) ON DELETE CASCADE,
    session_id INTEGER NOT NULL,
    PRIMARY KEY (auth_key_id, session_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS server_salts (
    auth_key_id INTEGER NOT NULL REFERENCES auth_keys (auth_key_id) ON DELETE CASCADE,
    valid_since INTEGER NOT NULL,
    valid_until INTEGER NOT NULL,
    salt INTEGER NOT NULL,
    PRIMARY KEY (auth_key_id, valid_since, valid_until, salt)
) WITHOUT ROWID;
";

/// What an opened file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// Nothing yet: a new or empty database.
    Empty,
    /// An mtsession store at this schema version.
    Ours(i64),
}

/// The application id, and the table names joined by newlines, in one
/// statement (so in one snapshot).
const INSPECT: &str = "SELECT (SELECT application_id FROM pragma_application_id), \
     (SELECT group_concat(name, char(10)) FROM (SELECT name FROM sqlite_schema \
      WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name))";

/// The application id and the schema version in one statement: the open
/// fast path. It fails to prepare on a file without `schema_version`.
const QUICK: &str = "SELECT (SELECT application_id FROM pragma_application_id), version \
     FROM schema_version WHERE id = 0";

/// The fast look at an existing store: `Some(Ours(version))` when the file
/// carries mtsession's application id and a version row, `None` when the
/// full [`inspect`] must decide.
pub(crate) fn inspect_quick(conn: &Connection) -> SqlResult<Option<Found>> {
    let mut stmt = match conn.prepare_cached(QUICK) {
        Ok(stmt) => stmt,
        Err(e) if is_busy(&e) => return Err(e.into()),
        Err(e)
            if matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::NotADatabase)
            ) =>
        {
            return Err(e.into());
        }
        // No schema_version table: not (yet) a store.
        Err(_) => return Ok(None),
    };
    let row: Option<(i32, i64)> = stmt
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(match row {
        Some((APPLICATION_ID, version)) => Some(Found::Ours(version)),
        _ => None,
    })
}

/// Looks at the file without writing to it: the application id, the table
/// list and the version, in one read transaction (or in the caller's
/// transaction), so that a store being created by another process at the
/// same moment is seen either whole or not at all.
pub(crate) fn inspect(conn: &Connection, what: &str) -> SqlResult<Found> {
    if conn.is_autocommit() {
        let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Deferred)?;
        let found = inspect_in_transaction(&tx, what)?;
        tx.commit()?;
        return Ok(found);
    }
    inspect_in_transaction(conn, what)
}

fn inspect_in_transaction(conn: &Connection, what: &str) -> SqlResult<Found> {
    let (application_id, tables): (i32, Option<String>) =
        conn.query_row(INSPECT, [], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let tables: Vec<String> = tables
        .unwrap_or_default()
        .split('\n')
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    if application_id == 0 && tables.is_empty() {
        return Ok(Found::Empty);
    }
    if application_id != APPLICATION_ID || !tables.iter().any(|t| t == "schema_version") {
        return Err(not_ours(what, application_id, &tables).into());
    }
    let version: Option<i64> = conn
        .query_row("SELECT version FROM schema_version WHERE id = 0", [], |r| {
            r.get(0)
        })
        .optional()?;
    match version {
        Some(version) => Ok(Found::Ours(version)),
        None => Err(Error::corrupt(what, "the schema_version table has no row").into()),
    }
}

/// The error for an SQLite file that some other program made.
fn not_ours(what: &str, application_id: i32, tables: &[String]) -> Error {
    let has = |name: &str| tables.iter().any(|t| t == name);
    let guess = if has("entities") && has("sessions") && has("version") {
        " It looks like a Telethon session file; read it with a telethon: URL and copy it \
         into an mtsession store instead."
    } else if has("datacenter") && has("channelstate") {
        " It looks like a Telethon v2 session file."
    } else if has("peers") && has("sessions") && has("version") {
        " It looks like a Pyrogram session file."
    } else {
        ""
    };
    let shown: Vec<&str> = tables.iter().take(8).map(String::as_str).collect();
    let more = if tables.len() > shown.len() {
        ", ..."
    } else {
        ""
    };
    Error::invalid(format!(
        "{what} is an SQLite database but not an mtsession store (application id \
         {application_id:#x}, expected {APPLICATION_ID:#x}; tables: {}{more}).{guess}",
        if shown.is_empty() {
            "none".to_owned()
        } else {
            shown.join(", ")
        },
    ))
}

/// The error for an SQLite database without tables, opened without
/// permission to create the store.
pub(crate) fn empty_database(what: &str) -> Error {
    Error::invalid(format!(
        "{what} is an empty SQLite database, not an mtsession store; open it with \
         OpenMode::Create to make it one"
    ))
}

/// Checks the version of an opened file and, when allowed, creates (or
/// upgrades) the schema. Writes nothing to a file that is neither empty nor
/// an mtsession store. Answers `None` when the work needs the write lock
/// and `wait` is false (the caller tries again where it may wait).
pub(crate) fn prepare(
    conn: &Connection,
    what: &str,
    mode: OpenMode,
    file: bool,
    wait: bool,
) -> SqlResult<Option<()>> {
    let found = match inspect_quick(conn)? {
        Some(found) => found,
        None => inspect(conn, what)?,
    };
    match found {
        Found::Ours(version) => {
            check_version(what, version)?;
            if version == SCHEMA_VERSION {
                return Ok(Some(()));
            }
        }
        Found::Empty if mode != OpenMode::Create => return Err(empty_database(what).into()),
        Found::Empty => {}
    }
    if !wait {
        return Ok(None);
    }
    if file {
        // WAL first: switching needs the database to itself for a moment
        // (SQLITE_BUSY otherwise, and the caller retries).
        let journal: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !journal.eq_ignore_ascii_case("wal") {
            return Err(Error::backend(
                crate::db::BACKEND,
                std::io::Error::other(format!(
                    "{what}: SQLite refused WAL mode (journal mode stays {journal}); \
                     WAL needs a local filesystem with shared memory"
                )),
            )
            .into());
        }
    }
    // Create or upgrade under the write lock; another process may have done
    // it meanwhile, so look again inside the transaction.
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    match inspect(&tx, what)? {
        Found::Empty => {
            tx.execute_batch(SCHEMA_V1)?;
            tx.pragma_update(None, "application_id", APPLICATION_ID)?;
            tx.execute(
                "INSERT INTO schema_version (id, version) VALUES (0, ?1)",
                [SCHEMA_VERSION],
            )?;
        }
        Found::Ours(version) => {
            check_version(what, version)?;
            // Version 1 is the only one so far; later versions add their
            // migrations here.
        }
    }
    tx.commit()?;
    Ok(Some(()))
}

fn check_version(what: &str, version: i64) -> SqlResult<()> {
    session_core::schema::check_version(what, version, SCHEMA_VERSION).map_err(Failure::Store)
}
