//! Turning driver errors into the workspace's error kinds.

use std::fmt;

use mongodb::error::{ErrorKind as DriverKind, WriteFailure};
use session_core::Error;

/// The backend name used in errors.
pub(crate) const BACKEND: &str = "mongo";

/// Server error code of a duplicate key.
pub(crate) const DUPLICATE_KEY: i32 = 11000;
/// Server error code of a write conflict between transactions.
pub(crate) const WRITE_CONFLICT: i32 = 112;
/// Server error code of a namespace that exists already.
pub(crate) const NAMESPACE_EXISTS: i32 = 48;
/// Server error code of an unknown command.
pub(crate) const COMMAND_NOT_FOUND: i32 = 59;

/// A failure inside a unit of work: a driver error (maybe worth a retry)
/// or a decision of the store (`NotFound`, `AlreadyExists`, ...).
#[derive(Debug)]
pub(crate) enum Fail {
    Db(mongodb::error::Error),
    Store(Error),
}

impl From<mongodb::error::Error> for Fail {
    fn from(e: mongodb::error::Error) -> Self {
        Fail::Db(e)
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Store(e)
    }
}

impl From<WriteCommandError> for Fail {
    fn from(e: WriteCommandError) -> Self {
        Fail::Store(Error::backend(BACKEND, e))
    }
}

/// The server's error code, wherever the driver put it.
pub(crate) fn code(e: &mongodb::error::Error) -> Option<i32> {
    match e.kind.as_ref() {
        DriverKind::Command(c) => Some(c.code),
        DriverKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        DriverKind::Write(WriteFailure::WriteConcernError(w)) => Some(w.code),
        DriverKind::InsertMany(m) => m
            .write_errors
            .as_ref()
            .and_then(|errors| errors.first())
            .map(|w| w.code),
        _ => None,
    }
}

/// Whether the error is a duplicate-key violation.
pub(crate) fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    code(e) == Some(DUPLICATE_KEY)
}

/// Whether a unit of work that failed this way may simply run again.
pub(crate) fn is_transient(e: &mongodb::error::Error) -> bool {
    e.contains_label(mongodb::error::TRANSIENT_TRANSACTION_ERROR) || code(e) == Some(WRITE_CONFLICT)
}

/// Whether a failed commit may be sent again as it is.
pub(crate) fn is_unknown_commit_result(e: &mongodb::error::Error) -> bool {
    e.contains_label(mongodb::error::UNKNOWN_TRANSACTION_COMMIT_RESULT)
}

/// Maps a driver error: an unreachable server becomes `Unavailable`, every
/// other failure `Backend`, the source kept in both.
pub(crate) fn db_error(e: mongodb::error::Error) -> Error {
    match e.kind.as_ref() {
        DriverKind::ServerSelection { .. }
        | DriverKind::Io(_)
        | DriverKind::ConnectionPoolCleared { .. }
        | DriverKind::DnsResolve { .. } => Error::Unavailable {
            backend: BACKEND,
            message: first_line(&e.to_string()),
            source: Some(Box::new(e)),
        },
        _ => Error::backend(BACKEND, e),
    }
}

/// Maps a failure of a unit of work.
pub(crate) fn fail_error(fail: Fail) -> Error {
    match fail {
        Fail::Db(e) => db_error(e),
        Fail::Store(e) => e,
    }
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.len() > 500 {
        let mut end = 500;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &line[..end])
    } else {
        line.to_owned()
    }
}

/// A write error reported inside the reply of a raw write command.
#[derive(Debug)]
pub(crate) struct WriteCommandError {
    pub(crate) command: &'static str,
    pub(crate) code: i32,
    pub(crate) message: String,
}

impl fmt::Display for WriteCommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} command failed with code {}: {}",
            self.command, self.code, self.message
        )
    }
}

impl std::error::Error for WriteCommandError {}

/// Maps the result of a typed operation, keeping a store decision as it is.
pub(crate) trait ResultExt<T> {
    /// `?`-friendly mapping into [`Error`].
    fn db(self) -> session_core::Result<T>;
}

impl<T> ResultExt<T> for Result<T, mongodb::error::Error> {
    fn db(self) -> session_core::Result<T> {
        self.map_err(db_error)
    }
}
