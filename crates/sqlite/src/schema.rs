//! The schema, its version, and the checks made when a file is opened.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use session_core::Error;

use crate::db::R;

/// The schema version this build writes and the newest it reads.
pub const SCHEMA_VERSION: i64 = 1;

/// `PRAGMA application_id` of an mtsession store: `"mtss"` in ASCII.
pub const APPLICATION_ID: i32 = 0x6d74_7373;

/// Version 1 of the schema.
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
enum Found {
    /// Nothing yet: a new or empty file.
    Empty,
    /// An mtsession store at this schema version.
    Ours(i64),
}

/// Looks at the file without writing to it.
fn inspect(conn: &Connection, what: &str) -> R<Found> {
    let application_id: i32 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let mut tables = Vec::new();
    {
        let mut stmt = conn.prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
             ORDER BY name",
        )?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        for row in rows {
            tables.push(row?);
        }
    }
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
        Some(version) if version >= 1 => Ok(Found::Ours(version)),
        Some(version) => Err(Error::corrupt(
            what,
            format!("schema_version holds {version}; versions start at 1"),
        )
        .into()),
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

/// Checks the version of an opened file, and creates (or upgrades) the schema.
/// Writes nothing to a file that is neither empty nor an mtsession store.
pub(crate) fn prepare(conn: &Connection, what: &str, file: bool) -> R<()> {
    let found = inspect(conn, what)?;
    if let Found::Ours(version) = found {
        check_version(what, version)?;
    }
    if file {
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::backend(
                crate::db::BACKEND,
                std::io::Error::other(format!(
                    "{what}: SQLite refused WAL mode (journal mode stays {mode}); \
                     WAL needs a local filesystem with shared memory"
                )),
            )
            .into());
        }
        conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    }
    if matches!(found, Found::Ours(SCHEMA_VERSION)) {
        return Ok(());
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
            // Version 1 is the first; later versions add their migrations here.
        }
    }
    tx.commit()?;
    Ok(())
}

fn check_version(what: &str, version: i64) -> R<()> {
    if version > SCHEMA_VERSION {
        return Err(Error::UnsupportedSchemaVersion {
            what: what.to_owned(),
            found: version,
            supported: SCHEMA_VERSION,
        }
        .into());
    }
    Ok(())
}
