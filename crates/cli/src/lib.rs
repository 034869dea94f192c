#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use session_core::url::{Location, Target, parse};
use session_core::{
    Error, MemoryStore, Result, Session, SessionData, SessionOptions, SessionStore, string,
};
use session_sqlite::foreign::{PyrogramLayout, WriteOptions};

/// Opens the store a store URL names (`memory:`, `sqlite:`, `sled:`, `redis://`,
/// `rediss://`, `mongodb://`, `postgres://`, `mysql://`).
///
/// `create` says whether a missing embedded store (a SQLite file, a sled
/// directory) may be created; when false, a missing path is `NotFound`.
pub async fn open_store(target: &Target, create: bool) -> Result<Arc<dyn SessionStore>> {
    let must_exist = |path: &Path| -> Result<()> {
        if !create && !path.exists() {
            return Err(Error::NotFound {
                what: format!("{}", path.display()),
            });
        }
        Ok(())
    };
    Ok(match target {
        Target::Memory => Arc::new(MemoryStore::new()),
        Target::Sqlite(path) => {
            must_exist(path)?;
            let path = path.clone();
            let store =
                tokio::task::spawn_blocking(move || session_sqlite::SqliteStore::open(path))
                    .await
                    .map_err(|e| Error::backend("sqlite", e))??;
            Arc::new(store)
        }
        Target::Sled(path) => {
            must_exist(path)?;
            Arc::new(session_sled::SledStore::open(path).await?)
        }
        Target::Redis(url) => Arc::new(session_redis::RedisStore::open(url).await?),
        Target::Mongo(url) => Arc::new(session_mongo::MongoStore::connect(url).await?),
        Target::Postgres(url) | Target::Mysql(url) => {
            Arc::new(session_sql::SqlStore::connect(url).await?)
        }
        other => {
            return Err(Error::invalid(format!(
                "{other} is a single session, not a store of sessions; expected memory:, \
                 sqlite:, sled:, redis://, mongodb://, postgres:// or mysql://"
            )));
        }
    })
}

/// Opens a store URL and returns a handle on the session it names
/// (`?session=NAME`, default `default`), creating the session when absent.
pub async fn open_url(url: &str) -> Result<Session> {
    let location = parse(url)?;
    let store = open_store(&location.target, true).await?;
    session_core::SessionStoreExt::open_with(
        &store,
        location.session_or_default(),
        SessionOptions::default(),
    )
    .await
}

/// Something a session can be read from or written to.
#[derive(Debug)]
pub enum Endpoint {
    /// A named session in a store.
    Store {
        /// The store.
        store: Arc<dyn SessionStore>,
        /// The session's name.
        session: String,
    },
    /// A Telethon v1 `.session` file.
    Telethon(PathBuf),
    /// A Telethon v2 `.session` file.
    Telethon2(PathBuf),
    /// A Pyrogram `.session` file.
    Pyrogram(PathBuf),
    /// A string session.
    String(String),
}

/// A session read from an endpoint, with what could not be carried over.
#[derive(Debug)]
pub struct Loaded {
    /// The session.
    pub data: SessionData,
    /// Things in the source the data model could not hold.
    pub warnings: Vec<String>,
}

impl Endpoint {
    /// Opens the endpoint a URL names. Embedded stores are created only when
    /// `create` is true.
    pub async fn open(location: &Location, create: bool) -> Result<Endpoint> {
        Ok(match &location.target {
            Target::Telethon(path) => Endpoint::Telethon(path.clone()),
            Target::Telethon2(path) => Endpoint::Telethon2(path.clone()),
            Target::Pyrogram(path) => Endpoint::Pyrogram(path.clone()),
            Target::String(s) => Endpoint::String(s.clone()),
            store => Endpoint::Store {
                store: open_store(store, create).await?,
                session: location.session_or_default().to_owned(),
            },
        })
    }

    /// Reads the whole session.
    pub async fn read(&self) -> Result<Loaded> {
        match self {
            Endpoint::Store { store, session } => Ok(Loaded {
                data: store.export(session).await?,
                warnings: Vec::new(),
            }),
            Endpoint::Telethon(path) => {
                let imported = session_sqlite::foreign::read_telethon(path)?;
                Ok(Loaded {
                    data: imported.data,
                    warnings: warning_lines(&imported.warnings),
                })
            }
            Endpoint::Telethon2(path) => {
                let imported = session_sqlite::foreign::read_telethon2(path)?;
                Ok(Loaded {
                    data: imported.data,
                    warnings: warning_lines(&imported.warnings),
                })
            }
            Endpoint::Pyrogram(path) => {
                let imported = session_sqlite::foreign::read_pyrogram(path)?;
                Ok(Loaded {
                    data: imported.data,
                    warnings: warning_lines(&imported.warnings),
                })
            }
            Endpoint::String(s) => Ok(Loaded {
                data: string::decode(s)?.to_session_data()?,
                warnings: Vec::new(),
            }),
        }
    }

    /// Whether there is a session to overwrite.
    pub async fn exists(&self) -> Result<bool> {
        match self {
            Endpoint::Store { store, session } => store.exists(session).await,
            Endpoint::Telethon(p) | Endpoint::Telethon2(p) | Endpoint::Pyrogram(p) => {
                Ok(p.exists())
            }
            Endpoint::String(_) => Ok(false),
        }
    }

    /// Writes the whole session, replacing what is there only with `force`.
    /// Returns what the destination format could not hold.
    pub async fn write(&self, data: &SessionData, force: bool) -> Result<Vec<String>> {
        if !force && self.exists().await? {
            return Err(Error::AlreadyExists {
                what: self.describe(),
            });
        }
        match self {
            Endpoint::Store { store, session } => {
                Session::new(Arc::clone(store), session, SessionOptions::default())?
                    .import(data)
                    .await?;
                Ok(Vec::new())
            }
            Endpoint::Telethon(path) => {
                let warnings =
                    session_sqlite::foreign::write_telethon(path, data, write_options(force))?;
                Ok(warning_lines(&warnings))
            }
            Endpoint::Pyrogram(path) => {
                let warnings = session_sqlite::foreign::write_pyrogram(
                    path,
                    data,
                    PyrogramLayout::Pyrogram,
                    write_options(force),
                )?;
                Ok(warning_lines(&warnings))
            }
            Endpoint::Telethon2(_) => Err(Error::invalid(
                "telethon2: files can be read but not written; write telethon: (v1) instead",
            )),
            Endpoint::String(_) => Err(Error::invalid(
                "string: is read-only here; use `mtsession string encode --format ...` to print one",
            )),
        }
    }

    /// A description without secrets, for messages.
    pub fn describe(&self) -> String {
        match self {
            Endpoint::Store { store, session } => {
                format!("session {session:?} in the {} store", store.backend_name())
            }
            Endpoint::Telethon(p) => format!("Telethon file {}", p.display()),
            Endpoint::Telethon2(p) => format!("Telethon v2 file {}", p.display()),
            Endpoint::Pyrogram(p) => format!("Pyrogram file {}", p.display()),
            Endpoint::String(_) => "string session".to_owned(),
        }
    }
}

fn write_options(force: bool) -> WriteOptions {
    if force {
        WriteOptions::overwrite()
    } else {
        WriteOptions::default()
    }
}

fn warning_lines<W: std::fmt::Display>(warnings: &[W]) -> Vec<String> {
    warnings.iter().map(ToString::to_string).collect()
}
