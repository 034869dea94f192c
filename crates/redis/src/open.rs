//! Opening a [`RedisStore`]: the URL and its options, the builder, and the
//! schema check.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::{AsyncConnectionConfig, Client, ConnectionAddr, IntoConnectionInfo, TlsCertificates};
use session_core::schema::check_version_text;
use session_core::url::{redact, shorten};
use session_core::{Error, OpenMode, Result, StoreUrl};

use crate::error::{Access, Place, redact_url};
use crate::keys::Keys;
use crate::link::Link;
use crate::store::{Inner, RedisStore, SCHEMA_VERSION};

/// The prefix used when none is given.
pub const DEFAULT_PREFIX: &str = "mtsession";

/// The longest prefix accepted, in bytes.
pub const MAX_PREFIX_LEN: usize = 200;

/// How long one connection attempt may take when nothing else is set.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the server may take to answer one call when nothing else is set.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The URL schemes the store serves.
pub const SCHEMES: [&str; 3] = ["redis", "rediss", "redis+unix"];

/// The URL options of mtsession itself: `prefix=` (the key prefix),
/// `connect_timeout=` and `response_timeout=` (durations such as `500ms`
/// or `2s`).
pub const STORE_OPTIONS: [&str; 3] = ["prefix", "connect_timeout", "response_timeout"];

/// The URL options redis-rs reads: `protocol=` (`resp2`/`resp3`) on every
/// scheme, `db=`, `user=` and `pass=` on `redis+unix` URLs only (a TCP URL
/// carries them in its path and user info).
pub const ENGINE_OPTIONS: [&str; 4] = ["protocol", "db", "user", "pass"];

/// Every URL option accepted besides `session`.
pub(crate) const ALL_OPTIONS: [&str; 7] = [
    "prefix",
    "connect_timeout",
    "response_timeout",
    "protocol",
    "db",
    "user",
    "pass",
];

/// The URL shapes, for messages.
pub(crate) const SYNTAX: &str = "redis://[USER][:PASSWORD@]HOST[:PORT][/DB][?prefix=P], \
     rediss://... (TLS) or redis+unix:///PATH[?db=N]";

/// The longest timeout accepted.
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// Builds a [`RedisStore`]: prefix, timeouts, TLS roots and open mode.
///
/// Options set here win over the same options in the URL.
#[derive(Clone)]
pub struct RedisStoreBuilder {
    url: String,
    prefix: Option<String>,
    connect_timeout: Option<Duration>,
    response_timeout: Option<Duration>,
    root_cert: Option<Vec<u8>>,
    mode: OpenMode,
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("url", &redact_url(&self.url))
            .field("prefix", &self.prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("root_cert", &self.root_cert.as_ref().map(|_| "set"))
            .field("mode", &self.mode)
            .finish()
    }
}

impl RedisStore {
    /// Opens the store at `url` (see [`SYNTAX`](crate#urls)), creating its
    /// schema record when absent ([`OpenMode::Create`]), with the options
    /// the URL gives and defaults for the rest.
    pub async fn open(url: &str) -> Result<RedisStore> {
        RedisStore::builder(url).open().await
    }

    /// A builder for the store at `url`.
    pub fn builder(url: &str) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.to_owned(),
            prefix: None,
            connect_timeout: None,
            response_timeout: None,
            root_cert: None,
            mode: OpenMode::Create,
        }
    }
}

impl RedisStoreBuilder {
    /// The key prefix (default [`DEFAULT_PREFIX`], or the URL's `prefix=`);
    /// every key the store touches starts with `{prefix}:`. 1 to
    /// [`MAX_PREFIX_LEN`] bytes.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// How long one connection attempt may take (default
    /// [`DEFAULT_CONNECT_TIMEOUT`], or the URL's `connect_timeout=`).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// How long the server may take to answer one call (default
    /// [`DEFAULT_RESPONSE_TIMEOUT`], or the URL's `response_timeout=`). A
    /// write not answered in time fails with [`Error::OutcomeUnknown`].
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = Some(timeout);
        self
    }

    /// Trusts this PEM root certificate (instead of the built-in web roots)
    /// for `rediss://` URLs, e.g. a private CA or a self-signed server.
    pub fn tls_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_cert = Some(pem.into());
        self
    }

    /// How to open (default [`OpenMode::Create`]). [`OpenMode::ReadOnly`]
    /// writes nothing, not even the schema record, and every write fails
    /// with [`Error::Unsupported`]; it and [`OpenMode::ReadWrite`] refuse a
    /// prefix that holds no store with [`Error::NotFound`].
    pub fn mode(mut self, mode: OpenMode) -> Self {
        self.mode = mode;
        self
    }

    /// Connects, checks the schema version under the prefix (recording
    /// [`SCHEMA_VERSION`] in [`OpenMode::Create`] if there is none) and
    /// returns the store.
    ///
    /// Fails with [`Error::InvalidInput`] for a bad URL, option or prefix,
    /// [`Error::Unavailable`] when the server cannot be reached,
    /// [`Error::NotFound`] when a read-only or read-write open finds no
    /// store, [`Error::UnsupportedSchemaVersion`] when a newer version wrote
    /// the prefix, and [`Error::Backend`] otherwise (e.g. a wrong
    /// password). No message shows the URL's password.
    pub async fn open(self) -> Result<RedisStore> {
        let target = Target::parse(&self.url)?;
        let shown = redact_url(&target.engine_url);
        let prefix = self
            .prefix
            .or(target.prefix)
            .unwrap_or_else(|| DEFAULT_PREFIX.to_owned());
        if prefix.is_empty() || prefix.len() > MAX_PREFIX_LEN {
            return Err(Error::invalid(format!(
                "a Redis key prefix is 1 to {MAX_PREFIX_LEN} bytes, got {} bytes",
                prefix.len()
            )));
        }
        let connect_timeout = self
            .connect_timeout
            .or(target.connect_timeout)
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let response_timeout = self
            .response_timeout
            .or(target.response_timeout)
            .unwrap_or(DEFAULT_RESPONSE_TIMEOUT);
        for (name, timeout) in [
            ("connect timeout", connect_timeout),
            ("response timeout", response_timeout),
        ] {
            check_timeout(name, timeout)?;
        }
        let info = target
            .engine_url
            .as_str()
            .into_connection_info()
            .map_err(|e| {
                Error::invalid(format!(
                    "{shown} is not a usable Redis URL (expected {SYNTAX}): {e}"
                ))
            })?;
        // CLIENT SETINFO would cost a round trip on every connection; with
        // neither a password nor a database to select, connecting then
        // sends nothing before the first call.
        let settings = info.redis_settings().clone().set_skip_set_lib_name();
        let info = info.set_redis_settings(settings);
        if matches!(info.addr(), ConnectionAddr::TcpTls { .. }) {
            install_crypto_provider();
        }
        let client = match self.root_cert {
            Some(pem) => Client::build_with_tls(
                info,
                TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                },
            )
            .map_err(|e| {
                Error::invalid(format!(
                    "the TLS root certificate for {shown} could not be used \
                     (expected a PEM certificate): {e}"
                ))
            })?,
            None => Client::open(info).map_err(|e| {
                Error::invalid(format!(
                    "{shown} is not a usable Redis URL (expected {SYNTAX}): {e}"
                ))
            })?,
        };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(response_timeout));
        let store = RedisStore {
            inner: Arc::new(Inner {
                link: Link::new(client, config),
                keys: Keys::new(&prefix),
                place: Place {
                    url: shown,
                    connect_timeout,
                    response_timeout,
                },
                mode: self.mode,
            }),
        };
        store.check_schema().await?;
        Ok(store)
    }
}

fn check_timeout(name: &str, timeout: Duration) -> Result<()> {
    if timeout < Duration::from_millis(1) || timeout > MAX_TIMEOUT {
        return Err(Error::invalid(format!(
            "the Redis {name} is between 1 ms and 1 hour, got {timeout:?}"
        )));
    }
    Ok(())
}

/// A URL taken apart: the URL redis-rs gets, and mtsession's options.
#[derive(Debug)]
struct Target {
    engine_url: String,
    prefix: Option<String>,
    connect_timeout: Option<Duration>,
    response_timeout: Option<Duration>,
}

impl Target {
    fn parse(input: &str) -> Result<Target> {
        // A fragment (`rediss://host/#insecure`) belongs to redis-rs; it
        // comes last in a URL, after the options.
        let (main, fragment) = match input.split_once('#') {
            Some((main, fragment)) => (main, Some(fragment)),
            None => (input, None),
        };
        let url = StoreUrl::parse(main).map_err(|e| {
            // The parser quotes input that is not URL-shaped, and such
            // input may be a password: say it in words of its own instead.
            // (Its other errors are about `session=` and quote nothing.)
            let text = e.to_string();
            if text.contains("is not a URL") || text.contains("does not start with a URL scheme") {
                Error::invalid(format!(
                    "{} is not a Redis URL: expected {SYNTAX}",
                    redact(input)
                ))
            } else {
                e
            }
        })?;
        if !SCHEMES.contains(&url.scheme()) {
            return Err(Error::invalid(format!(
                "{url} is not a Redis URL: expected {SYNTAX}"
            )));
        }
        url.check_params(&ALL_OPTIONS)?;
        if url.scheme() != "redis+unix"
            && let Some((key, _)) = url.params().iter().find(|(k, _)| {
                ["db", "user", "pass"]
                    .iter()
                    .any(|o| o.eq_ignore_ascii_case(k))
            })
        {
            return Err(Error::invalid(format!(
                "the URL option {key}= applies to redis+unix URLs only; a {}:// URL carries \
                 the user and password before the host and the database in its path, \
                 e.g. redis://user:password@host:6379/1",
                url.scheme()
            )));
        }
        let duration = |name: &str| -> Result<Option<Duration>> {
            url.param(name)?
                .map(|text| parse_duration(name, &text))
                .transpose()
        };
        let mut engine_url = url.to_driver_url(&STORE_OPTIONS);
        if let Some(fragment) = fragment {
            engine_url.push('#');
            engine_url.push_str(fragment);
        }
        Ok(Target {
            engine_url,
            prefix: url.param("prefix")?,
            connect_timeout: duration("connect_timeout")?,
            response_timeout: duration("response_timeout")?,
        })
    }
}

/// Parses `500ms`, `2s` or `1.5s`.
fn parse_duration(option: &str, text: &str) -> Result<Duration> {
    let bad = || {
        Error::invalid(format!(
            "the URL option {option}= takes a duration such as 500ms or 2s, got {:?}",
            shorten(text)
        ))
    };
    let duration = if let Some(ms) = text.strip_suffix("ms") {
        Duration::from_millis(ms.parse::<u64>().map_err(|_| bad())?)
    } else if let Some(s) = text.strip_suffix('s') {
        let seconds = s.parse::<f64>().map_err(|_| bad())?;
        if !seconds.is_finite() || seconds < 0.0 {
            return Err(bad());
        }
        Duration::try_from_secs_f64(seconds).map_err(|_| bad())?
    } else {
        return Err(bad());
    };
    check_timeout(option, duration)?;
    Ok(duration)
}

impl RedisStore {
    /// Reads (and in [`OpenMode::Create`] first records) the schema
    /// version under the prefix: one round trip.
    async fn check_schema(&self) -> Result<()> {
        let key = self.keys().schema();
        let what = format!(
            "redis prefix {:?} at {}",
            self.prefix(),
            self.redacted_url()
        );
        let found: std::result::Result<Option<Vec<u8>>, Error> = if self.mode() == OpenMode::Create
        {
            let mut pipe = redis::pipe();
            pipe.cmd("SET")
                .arg(&key)
                .arg(SCHEMA_VERSION)
                .arg("NX")
                .ignore();
            pipe.cmd("GET").arg(&key);
            // Recording the version is idempotent and nothing else is
            // written, so an unanswered open is reported as unreachable.
            self.query_pipeline::<(Option<Vec<u8>>,)>(Access::Read, &pipe)
                .await
                .map(|(found,)| found)
        } else {
            self.query(Access::Read, redis::cmd("GET").arg(&key)).await
        };
        let found = match found {
            Ok(found) => found,
            Err(err) if is_wrong_type(&err) => {
                return Err(Error::invalid(format!(
                    "{what} does not hold an mtsession store: the key {key} is not a string \
                     holding a schema version"
                )));
            }
            Err(err) => return Err(err),
        };
        match found {
            Some(text) => {
                let text = String::from_utf8_lossy(&text);
                check_version_text(&what, &text, SCHEMA_VERSION).map(|_| ())
            }
            None if self.mode() == OpenMode::Create => Err(Error::backend(
                crate::error::BACKEND,
                format!("the schema version {key} vanished while {what} was opened"),
            )),
            None => Err(Error::NotFound {
                what: format!("an mtsession store under {what} (there is no key {key})"),
            }),
        }
    }
}

fn is_wrong_type(err: &Error) -> bool {
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(redis) = cause.downcast_ref::<redis::RedisError>() {
            // A pipeline reports its commands' errors inside its own.
            return redis.code() == Some("WRONGTYPE") || redis.to_string().contains("WRONGTYPE");
        }
        source = cause.source();
    }
    false
}

/// Makes sure rustls has a process-wide crypto provider before the first TLS
/// connection. An application that installed its own keeps it.
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: either provider works.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("x", "250ms").expect("ms"),
            Duration::from_millis(250)
        );
        assert_eq!(
            parse_duration("x", "1.5s").expect("s"),
            Duration::from_millis(1500)
        );
        for bad in ["", "5", "-1s", "0ms", "2h", "1e9s", "nans", "infs"] {
            assert!(parse_duration("x", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn options_are_taken_out_and_the_rest_passes_through() {
        let target = Target::parse(
            "rediss://:pw@h:6380/2?prefix=app%3Ax&protocol=resp3&response_timeout=750ms#insecure",
        )
        .expect("parses");
        assert_eq!(target.prefix.as_deref(), Some("app:x"));
        assert_eq!(target.response_timeout, Some(Duration::from_millis(750)));
        assert_eq!(target.connect_timeout, None);
        assert_eq!(
            target.engine_url,
            "rediss://:pw@h:6380/2?protocol=resp3#insecure"
        );
        let target =
            Target::parse("redis+unix:///run/r.sock?db=3&pass=x&session=a").expect("parses");
        assert_eq!(target.engine_url, "redis+unix:///run/r.sock?db=3&pass=x");
    }

    #[test]
    fn unknown_and_misplaced_options_are_refused() {
        let err = Target::parse("redis://h/?prefx=a").expect_err("typo");
        let text = err.to_string();
        assert!(
            text.contains("\"prefx\"") && text.contains("prefix"),
            "{text}"
        );
        let err = Target::parse("redis://h/?db=1").expect_err("db on tcp");
        assert!(err.to_string().contains("redis+unix"), "{err}");
        let err = Target::parse("postgres://h/db").expect_err("scheme");
        assert!(err.to_string().contains("redis://"), "{err}");
        for secret in ["hunter2", "hun\\ter\"2"] {
            let err = Target::parse(secret).expect_err("not a url");
            assert!(!format!("{err} {err:?}").contains("ter"), "{err}");
        }
    }
}
