//! Turning driver errors into [`session_core::Error`] kinds, and deciding
//! which failed attempts may run again.
//!
//! What a failure means depends on when it happened:
//!
//! - while a connection was being taken from the pool or opened (refused,
//!   unreachable, no connection within the acquire timeout): nothing was
//!   sent, the call had no effect — [`Error::Unavailable`];
//! - after a statement was sent, the connection lost: a read is
//!   [`Error::Unavailable`]; a write inside a transaction before `COMMIT` was
//!   sent had no effect (the server rolls it back) and is run again once on a
//!   fresh connection; a `COMMIT` or a single-statement write whose answer was
//!   lost may or may not have been applied — [`Error::OutcomeUnknown`]
//!   (writes that are idempotent are run again once first);
//! - no answer within the response timeout (a server paused or cut off):
//!   the attempt is abandoned and its connection closed; a read, or a
//!   transaction that had not sent its `COMMIT`, applied nothing —
//!   [`Error::Unavailable`]; a one-statement write or a `COMMIT` may still
//!   be applied — [`Error::OutcomeUnknown`]. Nothing is run again (a server
//!   that does not answer would not answer again);
//! - rolled back by the engine (deadlock, serialization failure, SQLite
//!   busy): nothing was applied, the attempt is run again while time is left;
//!   a lock still held when the busy timeout runs out is [`Error::Busy`];
//! - any other error the server answered: [`Error::Backend`], keeping the
//!   driver error as the source.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::sqlx;
use sea_orm::{DbErr, RuntimeErr};
use session_core::Error;

use crate::config::Engine;

/// A failure inside one attempt of a call.
#[derive(Debug)]
pub(crate) enum Fail {
    /// A driver error outside a transaction, or inside one before `COMMIT`.
    Db(DbErr),
    /// A driver error while committing.
    Commit(DbErr),
    /// A finished error (not found, invalid, ...).
    Domain(Error),
    /// Another writer changed what the attempt read: run it again.
    Again(&'static str),
    /// No answer within the response timeout; `committing`: the attempt
    /// had started its `COMMIT`.
    TimedOut {
        /// Whether the `COMMIT` may have been sent.
        committing: bool,
    },
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

/// What a call does, which decides what a lost connection means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// Reads only.
    Read,
    /// One autocommit statement that writes. `idempotent`: running it twice
    /// stores the same and answers the same as running it once.
    Write {
        /// Whether running it again is harmless.
        idempotent: bool,
    },
    /// A transaction that writes (a lost `COMMIT` has an unknown outcome).
    Transaction,
}

/// What a failed attempt calls for.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Rolled back by the engine (deadlock, serialization failure, busy):
    /// run again while time is left.
    Contention(Error),
    /// The connection was lost before anything was applied, or the call is
    /// idempotent: run again once, on a connection checked first.
    Reconnect(Error),
    /// Final.
    Done(Error),
}

/// An error whose text had a password in it, kept as text without it.
#[derive(Debug)]
struct Redacted(String);

impl fmt::Display for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for Redacted {}

/// Classifies driver errors for one store, naming where it is and keeping
/// its URL password out of every message.
#[derive(Clone)]
pub(crate) struct ErrorMapper {
    pub(crate) engine: Engine,
    /// The redacted URL, or `SQLite file PATH`.
    pub(crate) place: Arc<str>,
    secret: Option<Arc<str>>,
    pub(crate) acquire_timeout: Duration,
    pub(crate) response_timeout: Duration,
    pub(crate) busy_timeout: Duration,
}

impl fmt::Debug for ErrorMapper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrorMapper")
            .field("engine", &self.engine)
            .field("place", &self.place)
            .finish_non_exhaustive()
    }
}

/// Shows a duration as `1.5 s` or `250 ms`.
pub(crate) fn seconds(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// What went wrong, before it is worded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// No connection could be had: nothing was sent.
    NoConnection,
    /// The connection broke after a statement was sent.
    Lost,
    /// Rolled back by the engine; running again may succeed.
    Contention,
    /// A lock held past the engine's own wait (SQLite busy, MySQL lock wait).
    Locked,
    /// Anything else.
    Other,
}

impl ErrorMapper {
    pub(crate) fn new(
        engine: Engine,
        place: String,
        password: Option<String>,
        acquire_timeout: Duration,
        response_timeout: Duration,
        busy_timeout: Duration,
    ) -> Self {
        ErrorMapper {
            engine,
            place: Arc::from(place),
            secret: password.filter(|p| !p.is_empty()).map(Arc::from),
            acquire_timeout,
            response_timeout,
            busy_timeout,
        }
    }

    fn backend(&self) -> &'static str {
        self.engine.name()
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

    fn classify(&self, err: &DbErr) -> Class {
        match err {
            DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => {
                // A connection could not be taken or opened: a lock the new
                // connection met is still a lock.
                match sqlx_error(err) {
                    Some(sqlx::Error::Database(db)) if self.is_locked_code(db.as_ref()) => {
                        Class::Locked
                    }
                    _ => Class::NoConnection,
                }
            }
            _ => match sqlx_error(err) {
                Some(
                    sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::Protocol(_)
                    | sqlx::Error::WorkerCrashed,
                ) => Class::Lost,
                Some(sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed) => Class::NoConnection,
                Some(sqlx::Error::Database(db)) => {
                    let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                    if self.is_locked_code(db.as_ref()) {
                        Class::Locked
                    } else if self.engine != Engine::Sqlite && (code == "40001" || code == "40P01")
                    {
                        Class::Contention
                    } else if self.engine != Engine::Sqlite
                        && (code.starts_with("08") || code.starts_with("57P"))
                    {
                        // 08xxx: connection exceptions; 57P0x: the server is
                        // shutting down or ended the connection.
                        Class::Lost
                    } else {
                        Class::Other
                    }
                }
                _ => Class::Other,
            },
        }
    }

    /// SQLite busy/locked; MySQL's lock wait timeout (1205).
    fn is_locked_code(&self, db: &dyn sqlx::error::DatabaseError) -> bool {
        match self.engine {
            Engine::Sqlite => db
                .code()
                .and_then(|c| c.parse::<i64>().ok())
                .is_some_and(|c| matches!(c & 0xff, 5 | 6)),
            Engine::MySql => mysql_number(db) == Some(1205),
            Engine::Postgres => false,
        }
    }

    /// Decides what a failed attempt calls for.
    pub(crate) fn verdict(&self, fail: Fail, access: Access, waited: Duration) -> Verdict {
        let (err, at_commit) = match fail {
            Fail::Domain(err) => return Verdict::Done(err),
            Fail::Again(why) => {
                return Verdict::Contention(Error::backend(self.backend(), why));
            }
            Fail::TimedOut { committing } => {
                return Verdict::Done(self.timed_out(access, committing));
            }
            Fail::Db(err) => (err, false),
            Fail::Commit(err) => (err, true),
        };
        match self.classify(&err) {
            Class::Contention => Verdict::Contention(self.backend_error(err)),
            Class::Locked => Verdict::Contention(self.busy(err, waited)),
            Class::NoConnection => Verdict::Done(self.no_connection(err)),
            Class::Lost => {
                let lost = |err: DbErr, unknown: bool| {
                    let message = format!("the connection to {} was lost", self.place);
                    let source = Some(self.scrub(err));
                    if unknown {
                        Error::OutcomeUnknown {
                            backend: self.backend(),
                            message,
                            source,
                        }
                    } else {
                        Error::Unavailable {
                            backend: self.backend(),
                            message: format!("{message}; nothing was applied"),
                            source,
                        }
                    }
                };
                match access {
                    Access::Read => Verdict::Reconnect(lost(err, false)),
                    Access::Transaction if !at_commit => Verdict::Reconnect(lost(err, false)),
                    Access::Transaction => Verdict::Done(lost(err, true)),
                    Access::Write { idempotent: true } => Verdict::Reconnect(lost(err, true)),
                    Access::Write { idempotent: false } => Verdict::Done(lost(err, true)),
                }
            }
            Class::Other => Verdict::Done(self.backend_error(err)),
        }
    }

    /// Converts an error outside any call (opening, migrating).
    pub(crate) fn db(&self, err: DbErr) -> Error {
        match self.classify(&err) {
            Class::NoConnection | Class::Lost => self.no_connection(err),
            Class::Locked => self.busy(err, self.busy_timeout),
            Class::Contention | Class::Other => self.backend_error(err),
        }
    }

    /// Finishes a failure outside any call.
    pub(crate) fn finish(&self, fail: Fail) -> Error {
        match fail {
            Fail::Domain(err) => err,
            Fail::Again(why) => Error::backend(self.backend(), why),
            Fail::TimedOut { committing } => self.timed_out(Access::Transaction, committing),
            Fail::Db(err) | Fail::Commit(err) => self.db(err),
        }
    }

    /// The error of an attempt abandoned after the response timeout.
    pub(crate) fn timed_out(&self, access: Access, committing: bool) -> Error {
        let message = format!(
            "no answer from {} within the response timeout of {}",
            self.place,
            seconds(self.response_timeout)
        );
        let unavailable = |message: String| Error::Unavailable {
            backend: self.backend(),
            message,
            source: None,
        };
        match access {
            Access::Read => unavailable(message),
            Access::Transaction if !committing => unavailable(format!(
                "{message}; the transaction was not committed, nothing was applied"
            )),
            Access::Transaction | Access::Write { .. } => Error::OutcomeUnknown {
                backend: self.backend(),
                message: if committing {
                    format!("{message} to COMMIT")
                } else {
                    message
                },
                source: None,
            },
        }
    }

    fn backend_error(&self, err: DbErr) -> Error {
        Error::Backend {
            backend: self.backend(),
            source: self.scrub(err),
        }
    }

    /// `Busy`: another connection or process held the lock for the whole
    /// busy timeout.
    pub(crate) fn busy(&self, err: DbErr, waited: Duration) -> Error {
        // SQLite waits at most the busy timeout; a server's own lock wait
        // may be longer.
        let waited = match self.engine {
            Engine::Sqlite => waited.min(self.busy_timeout),
            Engine::Postgres | Engine::MySql => waited,
        };
        Error::Busy {
            what: self.place.to_string(),
            waited,
            source: Some(self.scrub(err)),
        }
    }

    /// `Unavailable` for a connection that could not be had, saying why.
    fn no_connection(&self, err: DbErr) -> Error {
        let why = match sqlx_error(&err) {
            Some(e) => describe_connect_error(e),
            None => match &err {
                DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout) => None,
                _ => Some("the connection could not be made".to_owned()),
            },
        };
        let why = why.unwrap_or_else(|| {
            format!(
                "no connection within the acquire timeout of {} (every pooled connection was \
                 busy, or the server did not accept new ones)",
                seconds(self.acquire_timeout)
            )
        });
        Error::Unavailable {
            backend: self.backend(),
            message: format!("cannot reach {}: {why}", self.place),
            source: Some(self.scrub(err)),
        }
    }

    /// Converts a failed direct connection attempt (made when a store opens).
    pub(crate) fn connect_error(&self, err: sqlx::Error, timeout: Duration) -> Error {
        if let sqlx::Error::Database(db) = &err {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            // 28xxx: invalid authorization; MySQL 1045 access denied, 1044 no such database.
            let denied = code.starts_with("28") || matches!(mysql_number(db.as_ref()), Some(1045));
            if denied {
                return Error::Backend {
                    backend: self.backend(),
                    source: self.scrub(DbErr::Conn(RuntimeErr::SqlxError(Arc::new(
                        sqlx::Error::Configuration(
                            format!(
                                "the server at {} refused the credentials: {}",
                                self.place,
                                db.message()
                            )
                            .into(),
                        ),
                    )))),
                };
            }
        }
        let unavailable = match &err {
            sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut => true,
            sqlx::Error::Database(db) => db
                .code()
                .is_some_and(|c| c.starts_with("08") || c.starts_with("57P") || c == "53300"),
            _ => false,
        };
        let why = describe_connect_error(&err)
            .unwrap_or_else(|| format!("no connection within {}", seconds(timeout)));
        let source = self.scrub(DbErr::Conn(RuntimeErr::SqlxError(Arc::new(err))));
        if unavailable {
            Error::Unavailable {
                backend: self.backend(),
                message: format!("cannot connect to {}: {why}; nothing was sent", self.place),
                source: Some(source),
            }
        } else {
            Error::Backend {
                backend: self.backend(),
                source,
            }
        }
    }

    /// `Unavailable` for an open that ran out of time.
    pub(crate) fn open_timed_out(&self, timeout: Duration) -> Error {
        Error::Unavailable {
            backend: self.backend(),
            message: format!(
                "cannot connect to {}: no answer within the connect timeout of {}",
                self.place,
                seconds(timeout)
            ),
            source: None,
        }
    }
}

/// A few words on why a connection could not be made, if the error tells.
fn describe_connect_error(err: &sqlx::Error) -> Option<String> {
    match err {
        sqlx::Error::Io(io) => Some(
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    "connection refused (nothing listens there)"
                }
                std::io::ErrorKind::TimedOut => "the connection timed out",
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted => {
                    "the server closed the connection"
                }
                std::io::ErrorKind::NotFound => "no such host or socket",
                _ => "the connection could not be made",
            }
            .to_owned(),
        ),
        sqlx::Error::Tls(_) => Some("the TLS handshake failed".to_owned()),
        sqlx::Error::PoolTimedOut => None,
        sqlx::Error::PoolClosed => Some("the store was closed".to_owned()),
        sqlx::Error::Database(db) => Some(format!("the server answered: {}", db.message())),
        sqlx::Error::Configuration(_) => Some("the URL could not be used".to_owned()),
        _ => None,
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

pub(crate) fn sqlx_error(err: &DbErr) -> Option<&sqlx::Error> {
    match err {
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => Some(e),
        _ => None,
    }
}

/// MySQL's error number.
fn mysql_number(db: &dyn sqlx::error::DatabaseError) -> Option<u16> {
    #[cfg(feature = "mysql")]
    {
        db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
            .map(|e| e.number())
    }
    #[cfg(not(feature = "mysql"))]
    {
        let _ = db;
        None
    }
}

/// Whether a failure is a unique or primary key violation.
pub(crate) fn is_unique_violation(fail: &Fail) -> bool {
    let (Fail::Db(err) | Fail::Commit(err)) = fail else {
        return false;
    };
    match sqlx_error(err) {
        Some(sqlx::Error::Database(db)) => {
            matches!(db.kind(), sqlx::error::ErrorKind::UniqueViolation)
        }
        _ => false,
    }
}

/// Whether an error says a table does not exist (PostgreSQL 42P01, MySQL
/// 42S02, SQLite "no such table").
pub(crate) fn is_missing_table(err: &DbErr) -> bool {
    match sqlx_error(err) {
        Some(sqlx::Error::Database(db)) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            code == "42P01" || code == "42S02" || db.message().contains("no such table")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapper(engine: Engine) -> ErrorMapper {
        ErrorMapper::new(
            engine,
            "postgres://u:***@h/d".to_owned(),
            Some("s3cret".to_owned()),
            Duration::from_secs(3),
            Duration::from_millis(1500),
            Duration::from_secs(1),
        )
    }

    fn io(kind: std::io::ErrorKind) -> DbErr {
        DbErr::Exec(RuntimeErr::SqlxError(Arc::new(sqlx::Error::Io(
            std::io::Error::from(kind),
        ))))
    }

    #[test]
    fn passwords_never_reach_messages() {
        let err = mapper(Engine::Postgres).db(DbErr::Custom(
            "could not use postgres://u:s3cret@h/d".to_owned(),
        ));
        let text = format!("{err} {err:?} {:?}", err.source());
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("u:***@h"), "{text}");
    }

    #[test]
    fn pool_timeouts_are_unavailable_and_name_the_place() {
        let m = mapper(Engine::MySql);
        let err = m.db(DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout));
        assert_eq!(err.kind(), session_core::ErrorKind::Unavailable);
        assert!(err.to_string().contains("3.0 s"), "{err}");
        assert!(err.to_string().contains("postgres://u:***@h/d"), "{err}");
        let err = m.db(DbErr::Custom("other".to_owned()));
        assert_eq!(err.kind(), session_core::ErrorKind::Backend);
    }

    #[test]
    fn a_lost_connection_depends_on_what_was_sent() {
        let m = mapper(Engine::Postgres);
        let reset = std::io::ErrorKind::ConnectionReset;
        let kinds = |fail: Fail, access: Access| match m.verdict(fail, access, Duration::ZERO) {
            Verdict::Reconnect(e) => ("again", e.kind()),
            Verdict::Done(e) => ("done", e.kind()),
            Verdict::Contention(e) => ("contention", e.kind()),
        };
        use session_core::ErrorKind::{OutcomeUnknown, Unavailable};
        assert_eq!(
            kinds(Fail::Db(io(reset)), Access::Read),
            ("again", Unavailable)
        );
        assert_eq!(
            kinds(Fail::Db(io(reset)), Access::Transaction),
            ("again", Unavailable)
        );
        assert_eq!(
            kinds(Fail::Commit(io(reset)), Access::Transaction),
            ("done", OutcomeUnknown)
        );
        assert_eq!(
            kinds(Fail::Db(io(reset)), Access::Write { idempotent: false }),
            ("done", OutcomeUnknown)
        );
        assert_eq!(
            kinds(Fail::Db(io(reset)), Access::Write { idempotent: true }),
            ("again", OutcomeUnknown)
        );
    }

    #[test]
    fn a_timed_out_attempt_is_unknown_only_when_a_write_may_have_been_sent() {
        let m = mapper(Engine::Postgres);
        let kind = |access: Access, committing: bool| match m.verdict(
            Fail::TimedOut { committing },
            access,
            Duration::ZERO,
        ) {
            Verdict::Done(e) => {
                let text = e.to_string();
                assert!(text.contains("postgres://u:***@h/d"), "{text}");
                assert!(text.contains("response timeout of 1.5 s"), "{text}");
                e.kind()
            }
            other => panic!("a timed-out attempt is not run again: {other:?}"),
        };
        use session_core::ErrorKind::{OutcomeUnknown, Unavailable};
        assert_eq!(kind(Access::Read, false), Unavailable);
        assert_eq!(kind(Access::Transaction, false), Unavailable);
        assert_eq!(kind(Access::Transaction, true), OutcomeUnknown);
        assert_eq!(
            kind(Access::Write { idempotent: true }, false),
            OutcomeUnknown
        );
        assert_eq!(
            kind(Access::Write { idempotent: false }, false),
            OutcomeUnknown
        );
    }

    #[test]
    fn refused_connections_say_so() {
        let m = mapper(Engine::Postgres);
        let err = m.connect_error(
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
            Duration::from_secs(2),
        );
        assert_eq!(err.kind(), session_core::ErrorKind::Unavailable);
        let text = err.to_string();
        assert!(text.contains("connection refused"), "{text}");
        assert!(text.contains("postgres://u:***@h/d"), "{text}");
    }
}
