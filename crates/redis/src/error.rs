//! Turning Redis errors into [`session_core::Error`], and keeping passwords
//! out of every message.
//!
//! What a failure means depends on when it happened:
//!
//! - while connecting (refused, no such host, no answer within the connect
//!   timeout, a TLS or handshake failure): nothing was sent, so the call had
//!   no effect — [`Error::Unavailable`] (a wrong password is
//!   [`Error::Backend`]);
//! - after the command was handed to a live connection, without an answer
//!   (the response timeout passed, the connection dropped): a read is
//!   [`Error::Unavailable`], but a write may or may not have been applied —
//!   [`Error::OutcomeUnknown`];
//! - an error the server answered: nothing was applied. `LOADING`,
//!   `MASTERDOWN`, `TRYAGAIN` and `CLUSTERDOWN` are [`Error::Unavailable`],
//!   everything else (`WRONGTYPE`, a script error) [`Error::Backend`].

use std::fmt;
use std::time::Duration;

use redis::{ErrorKind as RedisKind, RedisError, ServerErrorKind};
use session_core::Error;

/// The backend name used in errors.
pub(crate) const BACKEND: &str = "redis";

/// A connection URL with its password (and `pass`/`password` query values,
/// as unix-socket URLs carry them) replaced by `***`, safe to print: the
/// shared [`session_core::url::redact`].
pub fn redact_url(url: &str) -> String {
    session_core::url::redact(url)
}

/// Whether a call only reads, or may change stored data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// Reads only: an unanswered read changed nothing.
    Read,
    /// May write: an unanswered write has an unknown outcome.
    Write,
}

/// Where the store is and how long it waits, for messages.
#[derive(Clone, Debug)]
pub(crate) struct Place {
    /// The URL with its password replaced.
    pub(crate) url: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
}

fn seconds(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// Whether the server answered with an error that means it cannot serve
/// now (and applied nothing).
fn server_not_ready(err: &RedisError) -> bool {
    matches!(
        err.kind(),
        RedisKind::Server(
            ServerErrorKind::BusyLoading
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::TryAgain
        )
    )
}

fn authentication(err: RedisError, url: &str) -> Error {
    Error::backend(
        BACKEND,
        Contextual {
            context: format!(
                "authentication to {url} failed; check the user name and password in the URL"
            ),
            source: err,
        },
    )
}

/// Whether an error happened before a reply could be read: connection
/// failures, timeouts and dropped connections.
fn is_transport(err: &RedisError) -> bool {
    err.is_io_error() || err.is_timeout() || err.is_connection_dropped()
}

/// A failure while connecting: nothing of the call was sent.
pub(crate) fn connect_error(err: RedisError, place: &Place) -> Error {
    let url = &place.url;
    if err.kind() == RedisKind::AuthenticationFailed {
        return authentication(err, url);
    }
    if server_not_ready(&err) {
        return Error::Unavailable {
            backend: BACKEND,
            message: format!("{url} is not ready to serve (loading, or without a primary)"),
            source: Some(Box::new(err)),
        };
    }
    let what = if err.is_connection_refusal() {
        "connection refused".to_owned()
    } else if err.is_timeout() {
        format!(
            "no connection within the connect timeout of {}",
            seconds(place.connect_timeout)
        )
    } else if looks_like_name_resolution(&err) {
        "the host name could not be resolved".to_owned()
    } else if err.is_connection_dropped() {
        "the server closed the connection while it was being set up".to_owned()
    } else if err.is_io_error() {
        "the connection could not be made (a network, TLS or certificate failure)".to_owned()
    } else if err.kind() == RedisKind::InvalidClientConfig {
        return Error::invalid(format!("{url} cannot be used: {err}"));
    } else {
        "the connection could not be set up".to_owned()
    };
    Error::Unavailable {
        backend: BACKEND,
        message: format!("cannot connect to {url}: {what}; nothing was sent"),
        source: Some(Box::new(err)),
    }
}

fn looks_like_name_resolution(err: &RedisError) -> bool {
    let text = err.to_string().to_ascii_lowercase();
    [
        "lookup",
        "resolve",
        "name or service",
        "no address",
        "nodename",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

/// A failure after the command was handed to a live connection.
pub(crate) fn call_error(err: RedisError, place: &Place, access: Access) -> Error {
    let url = &place.url;
    if err.kind() == RedisKind::AuthenticationFailed {
        return authentication(err, url);
    }
    if server_not_ready(&err) {
        return Error::Unavailable {
            backend: BACKEND,
            message: format!(
                "{url} answered that it cannot serve now (loading, or without a primary); \
                 nothing was applied"
            ),
            source: Some(Box::new(err)),
        };
    }
    if !is_transport(&err) {
        return Error::backend(BACKEND, err);
    }
    let what = if err.is_timeout() {
        format!(
            "no answer from {url} within the response timeout of {}",
            seconds(place.response_timeout)
        )
    } else {
        format!("the connection to {url} was lost before the answer came")
    };
    match access {
        Access::Read => Error::Unavailable {
            backend: BACKEND,
            message: what,
            source: Some(Box::new(err)),
        },
        Access::Write => Error::OutcomeUnknown {
            backend: BACKEND,
            message: what,
            source: Some(Box::new(err)),
        },
    }
}

/// A Redis error with a sentence of context before it.
#[derive(Debug)]
pub(crate) struct Contextual {
    pub(crate) context: String,
    pub(crate) source: RedisError,
}

impl fmt::Display for Contextual {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, self.source)
    }
}

impl std::error::Error for Contextual {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// `Corrupt` for a stored value that could not be decoded.
pub(crate) fn corrupt(key: &str, message: impl Into<String>) -> Error {
    Error::corrupt(format!("redis key {key}"), message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place() -> Place {
        Place {
            url: "redis://:***@h:1".into(),
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_millis(500),
        }
    }

    #[test]
    fn password_is_replaced() {
        assert_eq!(
            redact_url("redis://:secret@127.0.0.1:6379/0"),
            "redis://:***@127.0.0.1:6379/0"
        );
        assert_eq!(
            redact_url("rediss://user:p%40ss@example.com:6380"),
            "rediss://user:***@example.com:6380"
        );
        assert_eq!(redact_url("redis://user@host:1/2"), "redis://user@host:1/2");
        let shown = redact_url("redis+unix:///run/redis.sock?db=1&pass=hunter2");
        assert!(!shown.contains("hunter2"), "{shown}");
        let shown = redact_url("redis://:hunter2@[::1");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn refused_connections_are_unavailable_and_name_the_place() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = connect_error(RedisError::from(io), &place());
        assert_eq!(err.kind(), session_core::ErrorKind::Unavailable, "{err}");
        let text = err.to_string();
        assert!(text.contains("connection refused"), "{text}");
        assert!(text.contains("redis://:***@h:1"), "{text}");
    }

    #[test]
    fn unanswered_writes_have_an_unknown_outcome_and_reads_are_unavailable() {
        let timeout = || RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        let write = call_error(timeout(), &place(), Access::Write);
        assert_eq!(write.kind(), session_core::ErrorKind::OutcomeUnknown);
        assert!(write.to_string().contains("500 ms"), "{write}");
        let read = call_error(timeout(), &place(), Access::Read);
        assert_eq!(read.kind(), session_core::ErrorKind::Unavailable);
        let dropped = RedisError::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        let write = call_error(dropped, &place(), Access::Write);
        assert_eq!(write.kind(), session_core::ErrorKind::OutcomeUnknown);
        assert!(std::error::Error::source(&write).is_some());
    }

    #[test]
    fn answered_errors_are_backend_errors_with_source() {
        let err = call_error(
            RedisError::from((RedisKind::Client, "something odd")),
            &place(),
            Access::Write,
        );
        assert_eq!(err.kind(), session_core::ErrorKind::Backend, "{err:?}");
        assert!(std::error::Error::source(&err).is_some());
    }
}
