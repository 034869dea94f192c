//! [`Endpoint`]: anything a session can be read from or written to — a
//! session of a store, or one foreign session (a Telethon, Pyrogram or grammers
//! file, a string session) — named by a URL.

use std::path::PathBuf;

use session_core::url::StoreUrl;
use session_core::{Error, OpenMode, Result, SessionData, Store, validate_data};
use session_formats::file::{PyrogramLayout, WriteOptions};
use session_formats::string::{self, StringSession};

/// The URL shapes of single foreign sessions, for messages.
pub const SYNTAX: &[&str] = &[
    "telethon:PATH",
    "telethon2:PATH",
    "pyrogram:PATH",
    "grammers:PATH",
    "string:STRING",
];

const SINGLE_SESSION_SCHEMES: &[&str] =
    &["telethon", "telethon2", "pyrogram", "grammers", "string"];

/// Whether `scheme` names one foreign session rather than a store.
pub fn is_single_session(scheme: &str) -> bool {
    SINGLE_SESSION_SCHEMES
        .iter()
        .any(|s| s.eq_ignore_ascii_case(scheme))
}

/// Something a session can be read from or written to.
#[derive(Debug)]
#[non_exhaustive]
pub enum Endpoint {
    /// A named session in a store.
    Store {
        /// The store.
        store: Store,
        /// The session's name.
        session: String,
    },
    /// A Telethon v1 `.session` file.
    Telethon(PathBuf),
    /// A Telethon v2 `.session` file.
    Telethon2(PathBuf),
    /// A Pyrogram `.session` file.
    Pyrogram(PathBuf),
    /// A grammers `SqliteSession` file.
    Grammers(PathBuf),
    /// A Telethon, Pyrogram or GramJS string session.
    String(String),
}

/// A session read from an endpoint, with what could not be carried over.
#[derive(Debug)]
pub struct Loaded {
    /// The session.
    pub data: SessionData,
    /// Things in the source the data model could not hold, one sentence each.
    pub warnings: Vec<String>,
}

impl Endpoint {
    /// Parses a URL and opens what it names (see [`Endpoint::open_url`]).
    pub async fn open(url: &str, mode: OpenMode) -> Result<Endpoint> {
        Endpoint::open_url(&StoreUrl::parse(url)?, mode).await
    }

    /// Opens what a parsed URL names. A store is opened with `mode`; a
    /// foreign file is only named here (it is opened, read-only, when read).
    pub async fn open_url(url: &StoreUrl, mode: OpenMode) -> Result<Endpoint> {
        if !is_single_session(url.scheme()) {
            let store = crate::open_url(url, mode).await?;
            return Ok(Endpoint::on_store(store, url));
        }
        url.check_params(&[])?;
        if url.session().is_some() {
            return Err(Error::invalid(format!(
                "{}: holds exactly one session; ?session= is for stores",
                url.scheme()
            )));
        }
        Ok(match url.scheme() {
            "telethon" => Endpoint::Telethon(url.path()?),
            "telethon2" => Endpoint::Telethon2(url.path()?),
            "pyrogram" => Endpoint::Pyrogram(url.path()?),
            "grammers" => Endpoint::Grammers(url.path()?),
            _ => {
                let text = url.body();
                if text.trim().is_empty() {
                    return Err(Error::invalid(
                        "string: needs a string session after the colon",
                    ));
                }
                Endpoint::String(text.to_owned())
            }
        })
    }

    /// The session a URL names in a store that is already open (so that a
    /// copy between two sessions of one store opens it once).
    pub fn on_store(store: Store, url: &StoreUrl) -> Endpoint {
        Endpoint::Store {
            store,
            session: url.session_or_default().to_owned(),
        }
    }

    /// Reads the whole session.
    pub async fn read(&self) -> Result<Loaded> {
        let (data, warnings) = match self {
            Endpoint::Store { store, session } => (store.export(session).await?, Vec::new()),
            Endpoint::Telethon(path) => {
                let imported = session_formats::read_telethon(path)?;
                (imported.data, warning_lines(&imported.warnings))
            }
            Endpoint::Telethon2(path) => {
                let imported = session_formats::read_telethon2(path)?;
                (imported.data, warning_lines(&imported.warnings))
            }
            Endpoint::Pyrogram(path) => {
                let imported = session_formats::read_pyrogram(path)?;
                (imported.data, warning_lines(&imported.warnings))
            }
            Endpoint::Grammers(path) => {
                let imported = session_formats::read_grammers(path)?;
                (imported.data, warning_lines(&imported.warnings))
            }
            Endpoint::String(s) => (string::decode(s)?.to_session_data()?, Vec::new()),
        };
        Ok(Loaded { data, warnings })
    }

    /// Whether there is a session to overwrite.
    pub async fn exists(&self) -> Result<bool> {
        match self {
            Endpoint::Store { store, session } => store.exists(session).await,
            Endpoint::Telethon(p)
            | Endpoint::Telethon2(p)
            | Endpoint::Pyrogram(p)
            | Endpoint::Grammers(p) => Ok(p.symlink_metadata().is_ok()),
            Endpoint::String(_) => Ok(false),
        }
    }

    /// Writes the whole session. Without `overwrite` an existing session or
    /// file is `AlreadyExists` and nothing is written, atomically (of two
    /// racing writers exactly one wins). Returns what the destination format
    /// could not hold.
    pub async fn write(&self, data: &SessionData, overwrite: bool) -> Result<Vec<String>> {
        let data = validate_data(data, true)?;
        let options = if overwrite {
            WriteOptions::overwrite()
        } else {
            WriteOptions::default()
        };
        match self {
            Endpoint::Store { store, session } => {
                if overwrite {
                    store.import(session, &data).await?;
                } else {
                    store
                        .import_new(session, &data)
                        .await
                        .map_err(|e| match e {
                            Error::AlreadyExists { .. } => Error::AlreadyExists {
                                what: self.describe(),
                            },
                            other => other,
                        })?;
                }
                Ok(Vec::new())
            }
            Endpoint::Telethon(path) => Ok(warning_lines(&session_formats::write_telethon(
                path, &data, options,
            )?)),
            Endpoint::Pyrogram(path) => Ok(warning_lines(&session_formats::write_pyrogram(
                path,
                &data,
                PyrogramLayout::Pyrogram,
                options,
            )?)),
            Endpoint::Grammers(path) => Ok(warning_lines(&session_formats::write_grammers(
                path, &data, options,
            )?)),
            Endpoint::Telethon2(_) => Err(Error::invalid(
                "telethon2: files can be read but not written; write a telethon: (v1) file \
                 instead, which Telethon 2 also opens",
            )),
            Endpoint::String(_) => Err(Error::invalid(
                "string: sessions are read-only here; print one with \
                 `mtsession string encode --format FORMAT SRC`",
            )),
        }
    }

    /// Encodes the session a URL names as a string session.
    pub fn encode(data: &SessionData, format: string::StringFormat) -> Result<String> {
        StringSession::from_session_data(data, format)?.encode()
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
            Endpoint::Grammers(p) => format!("grammers file {}", p.display()),
            Endpoint::String(_) => "string session".to_owned(),
        }
    }

    /// Whether the endpoint is a session of a store.
    pub fn is_store(&self) -> bool {
        matches!(self, Endpoint::Store { .. })
    }
}

fn warning_lines<W: std::fmt::Display>(warnings: &[W]) -> Vec<String> {
    warnings.iter().map(ToString::to_string).collect()
}
