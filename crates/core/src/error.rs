//! The one error type of every store.

use std::error::Error as StdError;
use std::fmt;

use crate::string::StringFormat;

/// A boxed error source, kept so callers can walk the chain.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Result alias used across the workspace.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure a store, a format or a conversion can report.
///
/// The variants are kinds a caller can act on; backends convert their own
/// errors into [`Error::Backend`] or [`Error::Unavailable`] keeping the source.
/// Messages never contain key material or URL passwords.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The named thing (a session, a DC, a file) does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for, e.g. `session "alice"`.
        what: String,
    },
    /// The named thing exists already and the call must not overwrite it.
    #[error("{what} already exists")]
    AlreadyExists {
        /// What exists, e.g. `session "alice"`.
        what: String,
    },
    /// Another owner holds the session's lease.
    #[error(
        "lease on session {session:?} held by {owner:?} until {until_ms} ms since the Unix epoch"
    )]
    LeaseHeld {
        /// The session whose lease was asked for.
        session: String,
        /// The current holder.
        owner: String,
        /// When the current lease expires, in milliseconds since the Unix epoch.
        until_ms: i64,
    },
    /// Stored data could not be understood.
    #[error("corrupt data in {what}: {message}")]
    Corrupt {
        /// Where the bad data was found (backend, table, key or file).
        what: String,
        /// What was found and what was expected.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// The data was written by a newer (or unknown) schema version.
    #[error(
        "{what} has schema version {found}, but this build supports versions up to {supported}; \
         upgrade mtsession to open it"
    )]
    UnsupportedSchemaVersion {
        /// The store, file or namespace that carries the version.
        what: String,
        /// The version found.
        found: i64,
        /// The newest version this build reads.
        supported: i64,
    },
    /// An argument was rejected before anything was stored.
    #[error("invalid input: {message}")]
    InvalidInput {
        /// What was wrong and what was expected.
        message: String,
    },
    /// A string session could not be decoded.
    #[error("{}", malformed_string_message(*looks_like, message))]
    MalformedString {
        /// The format the string resembled, when it resembled one.
        looks_like: Option<StringFormat>,
        /// What was found and what was expected.
        message: String,
    },
    /// The backend's server could not be reached (connection refused, timed out, dropped).
    #[error("{backend} server is unreachable: {message}")]
    Unavailable {
        /// Backend name (`redis`, `postgres`, ...).
        backend: &'static str,
        /// Short description, free of credentials.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// Any other failure inside a backend.
    #[error("{backend} backend error: {source}")]
    Backend {
        /// Backend name (`sqlite`, `redis`, ...).
        backend: &'static str,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
}

fn malformed_string_message(looks_like: Option<StringFormat>, message: &str) -> String {
    match looks_like {
        Some(format) => {
            format!("malformed string session: looks like a {format} string; {message}")
        }
        None => format!("malformed string session: {message}"),
    }
}

impl Error {
    /// `NotFound` for a session name.
    pub fn session_not_found(session: &str) -> Self {
        Error::NotFound {
            what: format!("session {session:?}"),
        }
    }

    /// `AlreadyExists` for a session name.
    pub fn session_exists(session: &str) -> Self {
        Error::AlreadyExists {
            what: format!("session {session:?}"),
        }
    }

    /// `InvalidInput` with a message.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidInput {
            message: message.into(),
        }
    }

    /// `Corrupt` without a source.
    pub fn corrupt(what: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Corrupt {
            what: what.into(),
            message: message.into(),
            source: None,
        }
    }

    /// `Backend` from any error, keeping it as the source.
    pub fn backend(backend: &'static str, source: impl Into<BoxError>) -> Self {
        Error::Backend {
            backend,
            source: source.into(),
        }
    }

    /// A short, stable name of the kind, for logs and tests.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            Error::LeaseHeld { .. } => ErrorKind::LeaseHeld,
            Error::Corrupt { .. } => ErrorKind::Corrupt,
            Error::UnsupportedSchemaVersion { .. } => ErrorKind::UnsupportedSchemaVersion,
            Error::InvalidInput { .. } => ErrorKind::InvalidInput,
            Error::MalformedString { .. } => ErrorKind::MalformedString,
            Error::Unavailable { .. } => ErrorKind::Unavailable,
            Error::Backend { .. } => ErrorKind::Backend,
        }
    }
}

/// The kind of an [`Error`], without its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// See [`Error::NotFound`].
    NotFound,
    /// See [`Error::AlreadyExists`].
    AlreadyExists,
    /// See [`Error::LeaseHeld`].
    LeaseHeld,
    /// See [`Error::Corrupt`].
    Corrupt,
    /// See [`Error::UnsupportedSchemaVersion`].
    UnsupportedSchemaVersion,
    /// See [`Error::InvalidInput`].
    InvalidInput,
    /// See [`Error::MalformedString`].
    MalformedString,
    /// See [`Error::Unavailable`].
    Unavailable,
    /// See [`Error::Backend`].
    Backend,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
