//! Turning Redis errors into [`session_core::Error`], and keeping passwords
//! out of every message.

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

/// Whether the error means the server cannot be used right now: refused,
/// timed out or dropped connections, and servers that are loading, busy or
/// without a primary.
pub(crate) fn is_unavailable(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_connection_refusal()
        || err.is_timeout()
        || err.is_connection_dropped()
        || matches!(
            err.kind(),
            RedisKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::TryAgain
            )
        )
}

/// Converts a Redis error, keeping it as the source. `url` must already be
/// redacted.
pub(crate) fn map_err(err: RedisError, url: &str) -> Error {
    if is_unavailable(&err) {
        let what = if err.is_connection_refusal() {
            "connection refused"
        } else if err.is_timeout() {
            "timed out"
        } else if err.is_connection_dropped() {
            "connection dropped"
        } else {
            "I/O failure"
        };
        return Error::Unavailable {
            backend: BACKEND,
            message: format!("{what} talking to {url}"),
            source: Some(Box::new(err)),
        };
    }
    if err.kind() == RedisKind::AuthenticationFailed {
        return Error::backend(
            BACKEND,
            Contextual {
                context: format!(
                    "authentication to {url} failed; check the user name and password in the URL"
                ),
                source: err,
            },
        );
    }
    Error::backend(BACKEND, err)
}

/// A Redis error with a sentence of context before it.
#[derive(Debug)]
pub(crate) struct Contextual {
    pub(crate) context: String,
    pub(crate) source: RedisError,
}

impl std::fmt::Display for Contextual {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
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
    }

    #[test]
    fn url_without_password_is_unchanged() {
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(redact_url("redis://user@host:1/2"), "redis://user@host:1/2");
    }

    #[test]
    fn query_passwords_are_replaced() {
        let shown = redact_url("redis+unix:///run/redis.sock?db=1&pass=hunter2");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("db=1"), "{shown}");
        let shown = redact_url("redis://h/?PASSWORD=hunter2");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn unparseable_url_is_not_shown() {
        let shown = redact_url("redis://:hunter2@[::1");
        assert!(!shown.contains("hunter2"), "{shown}");
        let shown = redact_url("not a url with hunter2");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn io_errors_become_unavailable() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = map_err(RedisError::from(io), "redis://:***@h:1");
        assert!(
            matches!(
                err,
                Error::Unavailable {
                    backend: "redis",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("connection refused"), "{err}");
    }

    #[test]
    fn other_errors_become_backend_errors_with_source() {
        let err = map_err(
            RedisError::from((RedisKind::Client, "something odd")),
            "redis://h:1",
        );
        assert!(
            matches!(
                err,
                Error::Backend {
                    backend: "redis",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(std::error::Error::source(&err).is_some());
    }
}
