//! [`SqliteServerStore`]: the server-side store (auth keys, sessions, salts)
//! in the same kind of file.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, params};
use session_core::{AuthKey, Error, Result, ServerSalt, ServerStore};

use crate::builder::SqliteBuilder;
use crate::db::{Db, Handle, Options, SqlResult, WriteSize};

/// The storage of an MTProto server in one SQLite file: tables `auth_keys`,
/// `server_sessions` and `server_salts`, the latter two deleted with their key
/// with their key. The file may be the same one a
/// [`SqliteStore`](crate::SqliteStore) uses; they share the schema, the
/// durability policies and the concurrency model.
pub struct SqliteServerStore {
    db: Handle,
}

impl fmt::Debug for SqliteServerStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteServerStore")
            .field("path", &self.db.db().path())
            .finish_non_exhaustive()
    }
}

impl SqliteServerStore {
    /// Opens (creating with mode 0600 when absent) the file at `path`.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::builder(path).open().await
    }

    /// A builder, for the durability policy, the busy timeout and the mode.
    pub fn builder(path: impl AsRef<Path>) -> SqliteBuilder<SqliteServerStore> {
        SqliteBuilder::new(path.as_ref())
    }

    /// A private in-memory store.
    pub fn open_in_memory() -> Result<Self> {
        SqliteServerStore::from_db(Db::open_memory(Options::default())?)
    }

    pub(crate) fn from_db(db: Arc<Db>) -> Result<Self> {
        Ok(SqliteServerStore {
            db: Handle::new(db),
        })
    }

    /// The database file, or `None` in memory.
    pub fn path(&self) -> Option<&Path> {
        self.db.db().path()
    }

    /// Makes write-behind writes durable now (a no-op for `Immediate`).
    pub async fn flush(&self) -> Result<()> {
        self.db.flush().await
    }
}

/// `auth_key_id` as SQLite's signed 64-bit integer (the same 64 bits).
fn key_id(auth_key_id: u64) -> i64 {
    i64::from_ne_bytes(auth_key_id.to_ne_bytes())
}

fn unknown_key(auth_key_id: u64) -> Error {
    Error::NotFound {
        what: format!("auth key {auth_key_id:016x}"),
    }
}

fn key_exists(conn: &Connection, auth_key_id: u64) -> SqlResult<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM auth_keys WHERE auth_key_id = ?1")?
        .query_row([key_id(auth_key_id)], |_| Ok(()))
        .optional()?
        .is_some())
}

#[async_trait]
impl ServerStore for SqliteServerStore {
    async fn put_auth_key(&self, key: &AuthKey) -> Result<u64> {
        let key = key.clone();
        self.db
            .write(WriteSize::Short, move |conn| {
                let id = key.id();
                conn.prepare_cached(
                    "INSERT INTO auth_keys (auth_key_id, auth_key) VALUES (?1, ?2) \
                     ON CONFLICT (auth_key_id) DO UPDATE SET auth_key = excluded.auth_key",
                )?
                .execute(params![key_id(id), &key.expose()[..]])?;
                Ok(id)
            })
            .await
    }

    async fn auth_key(&self, auth_key_id: u64) -> Result<Option<AuthKey>> {
        self.db
            .read(move |conn| {
                let mut stmt =
                    conn.prepare_cached("SELECT auth_key FROM auth_keys WHERE auth_key_id = ?1")?;
                let mut rows = stmt.query([key_id(auth_key_id)])?;
                let Some(row) = rows.next()? else {
                    return Ok(None);
                };
                let corrupt = |message: String| {
                    Error::corrupt(
                        format!("the sqlite auth_keys table (auth key {auth_key_id:016x})"),
                        message,
                    )
                };
                match row.get_ref(0)? {
                    ValueRef::Blob(bytes) => {
                        Ok(Some(AuthKey::from_slice(bytes).map_err(|_| {
                            corrupt(format!(
                                "the key is {} bytes long, expected 256",
                                bytes.len()
                            ))
                        })?))
                    }
                    _ => Err(corrupt("the key is not a blob".to_owned()).into()),
                }
            })
            .await
    }

    async fn destroy_auth_key(&self, auth_key_id: u64) -> Result<bool> {
        self.db
            .write(WriteSize::Short, move |conn| {
                // Sessions and salts go with their key (without relying on
                // PRAGMA foreign_keys).
                for table in ["server_sessions", "server_salts"] {
                    conn.prepare_cached(&format!("DELETE FROM {table} WHERE auth_key_id = ?1"))?
                        .execute([key_id(auth_key_id)])?;
                }
                Ok(conn
                    .prepare_cached("DELETE FROM auth_keys WHERE auth_key_id = ?1")?
                    .execute([key_id(auth_key_id)])?
                    > 0)
            })
            .await
    }

    async fn create_session(&self, auth_key_id: u64, session_id: i64) -> Result<bool> {
        self.db
            .write(WriteSize::Short, move |conn| {
                if !key_exists(conn, auth_key_id)? {
                    return Err(unknown_key(auth_key_id).into());
                }
                Ok(conn
                    .prepare_cached(
                        "INSERT INTO server_sessions (auth_key_id, session_id) VALUES (?1, ?2) \
                         ON CONFLICT DO NOTHING",
                    )?
                    .execute(params![key_id(auth_key_id), session_id])?
                    > 0)
            })
            .await
    }

    async fn has_session(&self, auth_key_id: u64, session_id: i64) -> Result<bool> {
        self.db
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT 1 FROM server_sessions WHERE auth_key_id = ?1 AND session_id = ?2",
                    )?
                    .query_row(params![key_id(auth_key_id), session_id], |_| Ok(()))
                    .optional()?
                    .is_some())
            })
            .await
    }

    async fn destroy_session(&self, auth_key_id: u64, session_id: i64) -> Result<bool> {
        self.db
            .write(WriteSize::Short, move |conn| {
                Ok(conn
                    .prepare_cached(
                        "DELETE FROM server_sessions WHERE auth_key_id = ?1 AND session_id = ?2",
                    )?
                    .execute(params![key_id(auth_key_id), session_id])?
                    > 0)
            })
            .await
    }

    async fn list_sessions(&self, auth_key_id: u64) -> Result<Vec<i64>> {
        self.db
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT session_id FROM server_sessions WHERE auth_key_id = ?1 \
                     ORDER BY session_id",
                )?;
                let ids = stmt.query_map([key_id(auth_key_id)], |r| r.get(0))?;
                Ok(ids.collect::<rusqlite::Result<Vec<i64>>>()?)
            })
            .await
    }

    async fn add_salt(&self, auth_key_id: u64, salt: ServerSalt) -> Result<()> {
        if salt.valid_until <= salt.valid_since {
            return Err(Error::invalid("a salt's validity window must not be empty"));
        }
        self.db
            .write(WriteSize::Short, move |conn| {
                if !key_exists(conn, auth_key_id)? {
                    return Err(unknown_key(auth_key_id).into());
                }
                conn.prepare_cached(
                    "INSERT INTO server_salts (auth_key_id, valid_since, valid_until, salt) \
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                )?
                .execute(params![
                    key_id(auth_key_id),
                    salt.valid_since,
                    salt.valid_until,
                    salt.salt
                ])?;
                Ok(())
            })
            .await
    }

    async fn has_valid_salt(&self, auth_key_id: u64, salt: i64, t: i64) -> Result<bool> {
        self.db
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT 1 FROM server_salts WHERE auth_key_id = ?1 AND salt = ?2 \
                         AND valid_since <= ?3 AND ?3 < valid_until LIMIT 1",
                    )?
                    .query_row(params![key_id(auth_key_id), salt, t], |_| Ok(()))
                    .optional()?
                    .is_some())
            })
            .await
    }

    async fn future_salts(&self, auth_key_id: u64, t: i64, n: usize) -> Result<Vec<ServerSalt>> {
        let limit = i64::try_from(n).unwrap_or(i64::MAX);
        self.db
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT valid_since, valid_until, salt FROM server_salts \
                     WHERE auth_key_id = ?1 AND valid_until > ?2 \
                     ORDER BY valid_since, valid_until, salt LIMIT ?3",
                )?;
                let salts = stmt.query_map(params![key_id(auth_key_id), t, limit], |r| {
                    Ok(ServerSalt {
                        valid_since: r.get(0)?,
                        valid_until: r.get(1)?,
                        salt: r.get(2)?,
                    })
                })?;
                Ok(salts.collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await
    }
}
