//! The one error type of every store.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

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
        /// The name of the format the string resembled (`Telethon`,
        /// `Pyrogram`, `GramJS`), when it resembled one.
        looks_like: Option<&'static str>,
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
    /// Another connection or process held the lock a call needed for longer
    /// than the configured timeout. Nothing was changed; the call may be retried.
    #[error(
        "{what} is locked by another connection or process; gave up after waiting {} \
         (the busy timeout). Retry later, or raise the timeout",
        format_wait(*waited)
    )]
    Busy {
        /// The store or file, e.g. `SQLite file sessions.db`.
        what: String,
        /// How long the call waited.
        waited: Duration,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// A request reached the server (or may have) but no answer came back in
    /// time, so whether a write took effect is unknown.
    #[error(
        "{backend}: {message}; the call was sent but not answered, so a write may or may not \
         have been applied. Read the data back before retrying"
    )]
    OutcomeUnknown {
        /// Backend name (`redis`, `postgres`, ...).
        backend: &'static str,
        /// Short description, free of credentials.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// The backend (or the way it was opened) cannot do what was asked.
    #[error("{backend}: {what} is not supported")]
    Unsupported {
        /// Backend name.
        backend: &'static str,
        /// What was asked, e.g. `leases` or `writes to a store opened read-only`.
        what: String,
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

fn format_wait(waited: Duration) -> String {
    if waited >= Duration::from_secs(1) {
        format!("{:.1} s", waited.as_secs_f64())
    } else {
        format!("{} ms", waited.as_millis())
    }
}

fn malformed_string_message(looks_like: Option<&str>, message: &str) -> String {
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

    /// `Unsupported` for an operation of a backend.
    pub fn unsupported(backend: &'static str, what: impl Into<String>) -> Self {
        Error::Unsupported {
            backend,
            what: what.into(),
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
            Error::Busy { .. } => ErrorKind::Busy,
            Error::OutcomeUnknown { .. } => ErrorKind::OutcomeUnknown,
            Error::Unsupported { .. } => ErrorKind::Unsupported,
            Error::Backend { .. } => ErrorKind::Backend,
        }
    }

    /// Whether retrying the same call may succeed and cannot do harm: the
    /// server was unreachable or a lock was held, and nothing was applied.
    /// [`Error::OutcomeUnknown`] is not retryable this way: read back first.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unavailable { .. } | Error::Busy { .. })
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
    /// See [`Error::Busy`].
    Busy,
    /// See [`Error::OutcomeUnknown`].
    OutcomeUnknown,
    /// See [`Error::Unsupported`].
    Unsupported,
    /// See [`Error::Backend`].
    Backend,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
