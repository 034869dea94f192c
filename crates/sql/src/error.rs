//! Turning driver errors into [`session_core::Error`] kinds.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use sea_orm::{DbErr, RuntimeErr};
use session_core::Error;

use crate::config::Engine;

/// A failure inside one attempt of an operation: either a driver error,
/// still to be classified, or a finished [`Error`] (not found, invalid, ...).
#[derive(Debug)]
pub(crate) enum Fail {
    Db(DbErr),
    Domain(Error),
}

impl From<DbErr> for Fail {
    fn from(err: DbErr) -> Self {
        Fail::Db(err)
    }
}

impl From<Error> for Fail {
    fn from(err: Error) -> Self {
        Fail::Domain(err)
    }
}

/// Result of one attempt.
pub(crate) type R<T> = std::result::Result<T, Fail>;

/// An error whose text had a password in it, kept as text with the password removed.
#[derive(Debug)]
struct Redacted(String);

impl fmt::Display for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for Redacted {}

/// Classifies driver errors for one store, and keeps its URL password out
/// of every message.
#[derive(Clone)]
pub(crate) struct ErrorMapper {
    pub(crate) engine: Engine,
    secret: Option<Arc<str>>,
}

impl fmt::Debug for ErrorMapper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrorMapper")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

impl ErrorMapper {
    pub(crate) fn new(engine: Engine, password: Option<String>) -> Self {
        ErrorMapper {
            engine,
            secret: password.map(Arc::from),
        }
    }

    /// Finishes a failed attempt.
    pub(crate) fn finish(&self, fail: Fail) -> Error {
        match fail {
            Fail::Domain(err) => err,
            Fail::Db(err) => self.db(err),
        }
    }

    /// Classifies a driver error: connection-level failures become
    /// `Unavailable`, everything else `Backend`, with the source kept.
    pub(crate) fn db(&self, err: DbErr) -> Error {
        let backend = self.engine.name();
        let unavailable = is_unavailable(&err);
        let source = self.scrub(err);
        if unavailable {
            let message = format!("{source}");
            Error::Unavailable {
                backend,
                message,
                source: Some(source),
            }
        } else {
            Error::Backend { backend, source }
        }
    }

    /// Boxes an error, replacing it by its text without the password when
    /// the password shows up anywhere in it.
    fn scrub(&self, err: DbErr) -> Box<dyn StdError + Send + Sync> {
        if let Some(secret) = self.secret.as_deref() {
            let text = chain_text(&err);
            let debug = format!("{err:?}");
            if text.contains(secret) || debug.contains(secret) {
                return Box::new(Redacted(text.replace(secret, "***")));
            }
        }
        Box::new(err)
    }
}

/// The error and its sources, joined with `: `.
fn chain_text(err: &dyn StdError) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(next) = source {
        let next_text = next.to_string();
        if !text.contains(&next_text) {
            text.push_str(": ");
            text.push_str(&next_text);
        }
        source = next.source();
    }
    text
}

fn sqlx_error(err: &DbErr) -> Option<&sea_orm::sqlx::Error> {
    match err {
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => Some(e),
        _ => None,
    }
}

/// The SQLSTATE (PostgreSQL, MySQL) or extended result code (SQLite) of a
/// database error.
fn database_code(err: &DbErr) -> Option<String> {
    match sqlx_error(err)? {
        sea_orm::sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// Whether the server could not be reached or dropped the connection.
fn is_unavailable(err: &DbErr) -> bool {
    use sea_orm::sqlx::Error as X;
    if matches!(err, DbErr::ConnectionAcquire(_)) {
        return true;
    }
    match sqlx_error(err) {
        Some(X::Io(_) | X::Tls(_) | X::PoolTimedOut | X::PoolClosed | X::WorkerCrashed) => true,
        Some(X::Database(db)) => db.code().is_some_and(|code| {
            // 08xxx: connection exceptions; 57P0x: the server is shutting
            // down or terminated the connection; 53300: too many connections.
            code.starts_with("08") || code.starts_with("57P") || code == "53300"
        }),
        _ => false,
    }
}

/// Whether the attempt was rolled back by the engine and may simply be
/// run again: deadlocks, serialization failures, SQLite busy/locked.
pub(crate) fn is_transient(fail: &Fail, engine: Engine) -> bool {
    let Fail::Db(err) = fail else { return false };
    let Some(code) = database_code(err) else {
        return false;
    };
    match engine {
        Engine::Sqlite => code.parse::<i64>().is_ok_and(|c| matches!(c & 0xff, 5 | 6)),
        // 40001: serialization failure (and MySQL's deadlock 1213);
        // 40P01: PostgreSQL deadlock.
        Engine::Postgres | Engine::MySql => code == "40001" || code == "40P01",
    }
}

/// Whether the error is a unique or primary key violation.
pub(crate) fn is_unique_violation(fail: &Fail) -> bool {
    let Fail::Db(err) = fail else { return false };
    match sqlx_error(err) {
        Some(sea_orm::sqlx::Error::Database(db)) => {
            matches!(db.kind(), sea_orm::sqlx::error::ErrorKind::UniqueViolation)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        let mapper = ErrorMapper::new(Engine::Postgres, Some("s3cret".to_owned()));
        let err = mapper.db(DbErr::Custom(
            "could not use postgres://u:s3cret@h/d".to_owned(),
        ));
        let text = format!("{err} {err:?} {:?}", err.source());
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("u:***@h"), "{text}");
    }

    #[test]
    fn pool_timeouts_are_unavailable() {
        let mapper = ErrorMapper::new(Engine::MySql, None);
        let err = mapper.db(DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout));
        assert_eq!(err.kind(), session_core::ErrorKind::Unavailable);
        let err = mapper.db(DbErr::Custom("other".to_owned()));
        assert_eq!(err.kind(), session_core::ErrorKind::Backend);
    }
}
