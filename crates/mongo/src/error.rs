//! Turning driver errors into the workspace's error kinds, and keeping
//! passwords out of every message.
//!
//! What a failure means depends on when it happened, which the store learns
//! from the driver's command events (see [`crate::watch`]):
//!
//! - before any command of the call was sent (no server could be selected
//!   within the server selection timeout, the connection could not be made,
//!   a DNS failure): nothing was applied — [`Error::Unavailable`];
//! - after a command was sent, without an answer (the response timeout
//!   passed, the connection dropped): a read is [`Error::Unavailable`]; a
//!   write outside a transaction, or a transaction whose commit was sent,
//!   may or may not have been applied — [`Error::OutcomeUnknown`]; a
//!   transaction whose commit was never sent was not applied —
//!   [`Error::Unavailable`];
//! - an error the server answered: nothing was applied. "Not primary",
//!   "shutting down" and similar answers are [`Error::Unavailable`], a failed
//!   authentication and everything else [`Error::Backend`].

use std::fmt;
use std::time::Duration;

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

/// Server error codes that mean "cannot serve now, nothing was applied":
/// host unreachable or not found, network timeout, shutdown in progress,
/// interrupted at shutdown or by a replica-set state change, not primary,
/// primary stepped down, socket exception.
const NOT_READY: [i32; 12] = [
    6, 7, 89, 91, 189, 10107, 11600, 11602, 13435, 13436, 9001, 262,
];

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

/// Whether the error came from the network or from finding a server (as
/// opposed to an answer of the server).
pub(crate) fn is_transport(e: &mongodb::error::Error) -> bool {
    matches!(
        e.kind.as_ref(),
        DriverKind::ServerSelection { .. }
            | DriverKind::Io(_)
            | DriverKind::ConnectionPoolCleared { .. }
            | DriverKind::DnsResolve { .. }
            | DriverKind::Shutdown
    )
}

/// Whether a transaction that failed this way lost a race with another one
/// and may simply run again: the server answered with a write conflict (or
/// another error it labels transient). Network failures are labelled
/// transient by the driver too, but retrying them would only stretch an
/// outage past the timeouts, so they are not.
pub(crate) fn is_conflict(e: &mongodb::error::Error) -> bool {
    !is_transport(e)
        && (code(e) == Some(WRITE_CONFLICT)
            || e.contains_label(mongodb::error::TRANSIENT_TRANSACTION_ERROR))
}

/// Whether a failed commit may be sent again as it is.
pub(crate) fn is_unknown_commit_result(e: &mongodb::error::Error) -> bool {
    e.contains_label(mongodb::error::UNKNOWN_TRANSACTION_COMMIT_RESULT)
}

/// Whether the server answered that it cannot serve now.
fn is_not_ready(e: &mongodb::error::Error) -> bool {
    code(e).is_some_and(|c| NOT_READY.contains(&c))
}

/// What a call may have changed, for deciding whether an unanswered call
/// has an unknown outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// Reads only: an unanswered read changed nothing.
    Read,
    /// Writes outside a transaction: unknown once a write command was sent.
    Write,
    /// One transaction: unknown once its commit was sent.
    Transaction,
}

/// What a call did before it failed: whether it sent a command that may
/// have changed data, as the command events told.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Progress {
    /// A command that writes (insert, update, delete, ...) was sent.
    pub(crate) wrote: bool,
    /// A `commitTransaction` was sent.
    pub(crate) committed: bool,
    /// Any command was sent.
    pub(crate) sent: bool,
}

impl Progress {
    /// Whether data may have changed.
    fn may_have_applied(self, access: Access) -> bool {
        match access {
            Access::Read => false,
            Access::Write => self.wrote || self.committed,
            Access::Transaction => self.committed,
        }
    }
}

/// Where the store is and how long it waits, for messages.
#[derive(Clone, Debug)]
pub(crate) struct Place {
    /// The URL with its password replaced.
    pub(crate) url: String,
    /// The hosts of the URL (`host:port`, comma-separated).
    pub(crate) hosts: String,
    /// The secrets of the URL, to scrub from driver messages.
    pub(crate) secrets: Vec<String>,
    pub(crate) server_selection_timeout: Duration,
    pub(crate) response_timeout: Duration,
}

impl Place {
    /// Replaces every secret of the URL found in `text` by `***`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.secrets {
            text = text.replace(secret.as_str(), "***");
        }
        text
    }
}

/// `500 ms` or `2.0 s`.
pub(crate) fn seconds(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// A short description of what went wrong, for messages (without secrets:
/// the driver's errors hold none but the user name in some cases).
pub(crate) fn cause(e: &mongodb::error::Error) -> String {
    match e.kind.as_ref() {
        DriverKind::Io(io) => io_cause(io),
        DriverKind::DnsResolve { message, .. } => {
            format!(
                "the host name could not be resolved ({})",
                first_line(message)
            )
        }
        DriverKind::Authentication { .. } => "authentication failed".to_owned(),
        DriverKind::ConnectionPoolCleared { .. } => {
            "the connection pool was cleared after a network error".to_owned()
        }
        _ => first_line(&e.to_string()),
    }
}

fn io_cause(io: &std::io::Error) -> String {
    use std::io::ErrorKind as Io;
    match io.kind() {
        Io::ConnectionRefused => "connection refused".to_owned(),
        Io::TimedOut | Io::WouldBlock => "timed out".to_owned(),
        Io::ConnectionReset => "connection reset by the server".to_owned(),
        Io::ConnectionAborted => "connection aborted".to_owned(),
        Io::UnexpectedEof => "the server closed the connection".to_owned(),
        Io::BrokenPipe => "the connection was lost (broken pipe)".to_owned(),
        Io::NotConnected => "not connected".to_owned(),
        _ => {
            let text = io.to_string();
            let lower = text.to_ascii_lowercase();
            if ["lookup", "resolve", "name or service", "nodename"]
                .iter()
                .any(|w| lower.contains(w))
            {
                format!(
                    "the host name could not be resolved ({})",
                    first_line(&text)
                )
            } else {
                first_line(&text)
            }
        }
    }
}

/// Maps a driver error of a call that did `progress` before it failed.
/// `servers` describes what the driver knows of each server (for a failed
/// server selection).
pub(crate) fn db_error(
    e: mongodb::error::Error,
    access: Access,
    progress: Progress,
    place: &Place,
    servers: &str,
) -> Error {
    if matches!(e.kind.as_ref(), DriverKind::Authentication { .. }) {
        return Error::backend(
            BACKEND,
            Contextual {
                context: format!(
                    "authentication to {} failed; check the user name, the password and \
                     authSource in the URL",
                    place.url
                ),
                source: e,
            },
        );
    }
    if is_not_ready(&e) {
        return Error::Unavailable {
            backend: BACKEND,
            message: format!(
                "the server at {} answered that it cannot serve now ({}); nothing was applied",
                place.hosts,
                place.scrub(&cause(&e))
            ),
            source: Some(Box::new(e)),
        };
    }
    if !is_transport(&e) {
        return Error::backend(BACKEND, Scrubbed::new(e, place));
    }
    let message = match e.kind.as_ref() {
        DriverKind::ServerSelection { .. } => format!(
            "no usable server at {} within the server selection timeout of {} ({}); nothing \
             was sent",
            place.hosts,
            seconds(place.server_selection_timeout),
            place.scrub(servers)
        ),
        DriverKind::DnsResolve { .. } => format!(
            "cannot reach {}: {}; nothing was sent",
            place.url,
            place.scrub(&cause(&e))
        ),
        _ if !progress.sent => format!(
            "cannot reach the server at {}: {}; nothing was sent",
            place.hosts,
            place.scrub(&cause(&e))
        ),
        _ => format!(
            "the connection to the server at {} was lost before the answer came ({})",
            place.hosts,
            place.scrub(&cause(&e))
        ),
    };
    if progress.may_have_applied(access) {
        Error::OutcomeUnknown {
            backend: BACKEND,
            message,
            source: Some(Box::new(e)),
        }
    } else {
        Error::Unavailable {
            backend: BACKEND,
            message,
            source: Some(Box::new(e)),
        }
    }
}

/// The error of a call that ran out of time.
pub(crate) fn timeout_error(
    access: Access,
    progress: Progress,
    place: &Place,
    servers: &str,
) -> Error {
    if !progress.sent {
        return Error::Unavailable {
            backend: BACKEND,
            message: format!(
                "no command could be sent to the server at {} within the server selection \
                 timeout of {} ({}); nothing was sent",
                place.hosts,
                seconds(place.server_selection_timeout),
                place.scrub(servers)
            ),
            source: None,
        };
    }
    let message = format!(
        "no answer from the server at {} within the response timeout of {}",
        place.hosts,
        seconds(place.response_timeout)
    );
    if progress.may_have_applied(access) {
        Error::OutcomeUnknown {
            backend: BACKEND,
            message,
            source: None,
        }
    } else {
        Error::Unavailable {
            backend: BACKEND,
            message,
            source: None,
        }
    }
}

/// The first line of a message, at most 500 bytes.
pub(crate) fn first_line(text: &str) -> String {
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

/// A driver error with a sentence of context before it.
#[derive(Debug)]
pub(crate) struct Contextual {
    pub(crate) context: String,
    pub(crate) source: mongodb::error::Error,
}

impl fmt::Display for Contextual {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.context)
    }
}

impl std::error::Error for Contextual {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// A driver error shown with the URL's secrets scrubbed from its text. The
/// driver's error stays the source, so callers can still inspect it.
#[derive(Debug)]
pub(crate) struct Scrubbed {
    text: String,
    source: mongodb::error::Error,
}

impl Scrubbed {
    pub(crate) fn new(source: mongodb::error::Error, place: &Place) -> Self {
        Scrubbed {
            text: place.scrub(&first_line(&source.to_string())),
            source,
        }
    }
}

impl fmt::Display for Scrubbed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for Scrubbed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
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

impl From<WriteCommandError> for Fail {
    fn from(e: WriteCommandError) -> Self {
        Fail::Store(Error::backend(BACKEND, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use session_core::ErrorKind;

    fn place() -> Place {
        Place {
            url: "mongodb://u:***@h:1/".into(),
            hosts: "h:1".into(),
            secrets: vec!["hunter2".into()],
            server_selection_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_millis(500),
        }
    }

    fn io(kind: std::io::ErrorKind) -> mongodb::error::Error {
        mongodb::error::Error::from(std::io::Error::from(kind))
    }

    #[test]
    fn refused_before_sending_is_unavailable_and_names_the_place() {
        let progress = Progress::default();
        let err = db_error(
            io(std::io::ErrorKind::ConnectionRefused),
            Access::Write,
            progress,
            &place(),
            "",
        );
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        let text = err.to_string();
        assert!(
            text.contains("connection refused") && text.contains("h:1"),
            "{text}"
        );
        assert!(text.contains("nothing was sent"), "{text}");
    }

    #[test]
    fn lost_answers_of_writes_have_an_unknown_outcome() {
        let wrote = Progress {
            wrote: true,
            committed: false,
            sent: true,
        };
        let err = db_error(
            io(std::io::ErrorKind::UnexpectedEof),
            Access::Write,
            wrote,
            &place(),
            "",
        );
        assert_eq!(err.kind(), ErrorKind::OutcomeUnknown, "{err}");
        let read = db_error(
            io(std::io::ErrorKind::UnexpectedEof),
            Access::Read,
            wrote,
            &place(),
            "",
        );
        assert_eq!(read.kind(), ErrorKind::Unavailable, "{read}");
        // A transaction whose commit was never sent changed nothing.
        let txn = timeout_error(Access::Transaction, wrote, &place(), "");
        assert_eq!(txn.kind(), ErrorKind::Unavailable, "{txn}");
        assert!(txn.to_string().contains("500 ms"), "{txn}");
        let committed = Progress {
            committed: true,
            ..wrote
        };
        let txn = timeout_error(Access::Transaction, committed, &place(), "");
        assert_eq!(txn.kind(), ErrorKind::OutcomeUnknown, "{txn}");
        let unsent = timeout_error(
            Access::Write,
            Progress::default(),
            &place(),
            "h:1: timed out",
        );
        assert_eq!(unsent.kind(), ErrorKind::Unavailable, "{unsent}");
        assert!(unsent.to_string().contains("h:1: timed out"), "{unsent}");
    }

    #[test]
    fn secrets_are_scrubbed() {
        assert_eq!(place().scrub("pw hunter2 here"), "pw *** here");
    }
}
