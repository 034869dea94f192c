//! Connection settings: the URL, the query parameters this crate reads from
//! it, the builder, and password redaction.

use std::fmt;
use std::time::Duration;

use session_core::{Error, Result};

/// The SQL engine behind a store, chosen by the URL scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Engine {
    /// SQLite (`sqlite:PATH`, `sqlite::memory:`).
    Sqlite,
    /// PostgreSQL (`postgres://`, `postgresql://`).
    Postgres,
    /// MySQL or MariaDB (`mysql://`, `mariadb://`).
    MySql,
}

impl Engine {
    /// The backend name used in errors and by [`session_core::SessionStore::backend_name`]:
    /// `sqlite`, `postgres` or `mysql`.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
            Engine::MySql => "mysql",
        }
    }

    /// The cargo feature that compiles this engine in.
    fn feature(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
            Engine::MySql => "mysql",
        }
    }

    /// Whether this build includes the engine's driver.
    pub fn is_compiled_in(self) -> bool {
        match self {
            Engine::Sqlite => cfg!(feature = "sqlite"),
            Engine::Postgres => cfg!(feature = "postgres"),
            Engine::MySql => cfg!(feature = "mysql"),
        }
    }

    /// Picks the engine from a URL's scheme.
    pub fn from_url(url: &str) -> Result<Engine> {
        let lower = url.get(..12).unwrap_or(url).to_ascii_lowercase();
        let engine = if lower.starts_with("sqlite:") {
            Engine::Sqlite
        } else if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            Engine::Postgres
        } else if lower.starts_with("mysql://") || lower.starts_with("mariadb://") {
            Engine::MySql
        } else {
            return Err(Error::invalid(format!(
                "expected a URL starting with sqlite:, postgres://, postgresql://, mysql:// or \
                 mariadb://, got {:?}",
                redact_url(url)
            )));
        };
        if !engine.is_compiled_in() {
            return Err(Error::invalid(format!(
                "session-sql was built without the `{}` feature, so it cannot open {} URLs",
                engine.feature(),
                engine.name()
            )));
        }
        Ok(engine)
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The table prefix used when none is given.
pub const DEFAULT_TABLE_PREFIX: &str = "mtsession_";

/// The longest table prefix accepted.
pub const MAX_TABLE_PREFIX_LEN: usize = 32;

/// Checks a table prefix: at most 32 characters of `a-z`, `0-9` and `_`,
/// not starting with a digit.
pub fn validate_table_prefix(prefix: &str) -> Result<()> {
    let ok_chars = prefix
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    let starts_ok = !prefix.starts_with(|c: char| c.is_ascii_digit());
    if prefix.len() > MAX_TABLE_PREFIX_LEN || !ok_chars || !starts_ok {
        return Err(Error::invalid(format!(
            "a table prefix is at most {MAX_TABLE_PREFIX_LEN} characters of a-z, 0-9 and _, \
             not starting with a digit; got {prefix:?}"
        )));
    }
    Ok(())
}

/// Replaces the password of a URL (`scheme://user:password@host/...`, or a
/// `password=` query parameter) with `***`: the shared
/// [`session_core::url::redact`].
pub fn redact_url(url: &str) -> String {
    session_core::url::redact(url)
}

/// The password of a URL, percent-decoded, if it has a non-empty one.
pub(crate) fn url_password(url: &str) -> Option<String> {
    let scheme_end = url.find("://")?;
    let rest = &url[scheme_end + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    let password = &userinfo[userinfo.find(':')? + 1..];
    if password.is_empty() {
        return None;
    }
    Some(
        url::form_urlencoded::parse(format!("p={password}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| password.to_owned()),
    )
}

/// Connection pool and namespace settings of a [`crate::SqlStore`].
///
/// Every setting can also be given as a URL query parameter, which
/// [`SqlStoreBuilder::new`] reads and removes before the URL reaches the
/// driver; settings made on the builder afterwards win.
#[derive(Clone)]
pub struct SqlStoreBuilder {
    pub(crate) engine: Engine,
    /// The URL for the driver, without this crate's parameters.
    pub(crate) driver_url: String,
    pub(crate) table_prefix: String,
    pub(crate) max_connections: Option<u32>,
    pub(crate) min_connections: u32,
    pub(crate) connect_timeout: Duration,
    pub(crate) acquire_timeout: Duration,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) max_lifetime: Option<Duration>,
    pub(crate) busy_timeout: Duration,
    pub(crate) application_name: Option<String>,
}

impl fmt::Debug for SqlStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStoreBuilder")
            .field("engine", &self.engine)
            .field("url", &redact_url(&self.driver_url))
            .field("table_prefix", &self.table_prefix)
            .field("max_connections", &self.max_connections)
            .field("min_connections", &self.min_connections)
            .field("connect_timeout", &self.connect_timeout)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_lifetime", &self.max_lifetime)
            .field("busy_timeout", &self.busy_timeout)
            .finish()
    }
}

/// The query parameters this crate reads (and strips) from a URL.
pub const URL_PARAMETERS: [&str; 9] = [
    "max_connections",
    "min_connections",
    "connect_timeout",
    "acquire_timeout",
    "idle_timeout",
    "max_lifetime",
    "busy_timeout",
    "table_prefix",
    "session",
];

impl SqlStoreBuilder {
    /// Reads a URL and the settings in its query string (see the crate docs
    /// for the list). Fails with `InvalidInput` on an unknown scheme, an
    /// engine this build leaves out, or a malformed setting.
    pub fn new(url: &str) -> Result<SqlStoreBuilder> {
        let engine = Engine::from_url(url)?;
        let mut builder = SqlStoreBuilder {
            engine,
            driver_url: String::new(),
            table_prefix: DEFAULT_TABLE_PREFIX.to_owned(),
            max_connections: None,
            min_connections: 0,
            connect_timeout: Duration::from_secs(10),
            acquire_timeout: Duration::from_secs(10),
            idle_timeout: Some(Duration::from_secs(600)),
            max_lifetime: Some(Duration::from_secs(1800)),
            busy_timeout: Duration::from_secs(5),
            application_name: None,
        };
        let (base, query) = match url.split_once('?') {
            Some((base, query)) => (base, query),
            None => (url, ""),
        };
        let mut kept = url::form_urlencoded::Serializer::new(String::new());
        let mut kept_any = false;
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "max_connections" => {
                    builder.max_connections = Some(parse_count(&key, &value, 1)?);
                }
                "min_connections" => builder.min_connections = parse_count(&key, &value, 0)?,
                "connect_timeout" => builder.connect_timeout = parse_secs(&key, &value)?,
                "acquire_timeout" => builder.acquire_timeout = parse_secs(&key, &value)?,
                "idle_timeout" => builder.idle_timeout = parse_optional_secs(&key, &value)?,
                "max_lifetime" => builder.max_lifetime = parse_optional_secs(&key, &value)?,
                "busy_timeout" => builder.busy_timeout = parse_secs(&key, &value)?,
                "table_prefix" => {
                    validate_table_prefix(&value)?;
                    builder.table_prefix = value.into_owned();
                }
                // The session name is the URL layer's business, not the store's.
                "session" => {}
                _ => {
                    kept.append_pair(&key, &value);
                    kept_any = true;
                }
            }
        }
        let base = match engine {
            Engine::MySql if base.len() >= 10 && base[..10].eq_ignore_ascii_case("mariadb://") => {
                format!("mysql://{}", &base[10..])
            }
            _ => base.to_owned(),
        };
        builder.driver_url = if kept_any {
            format!("{base}?{}", kept.finish())
        } else {
            base
        };
        Ok(builder)
    }

    /// The engine the URL names.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Sets the table prefix (default `mtsession_`): every table of the
    /// store is named `{prefix}sessions`, `{prefix}peers`, ... so several
    /// independent stores can share one database.
    pub fn table_prefix(mut self, prefix: &str) -> Result<Self> {
        validate_table_prefix(prefix)?;
        prefix.clone_into(&mut self.table_prefix);
        Ok(self)
    }

    /// The most connections the pool opens (default 10; 1 for an in-memory SQLite database).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = Some(n.max(1));
        self
    }

    /// Connections the pool keeps open even when idle (default 0).
    pub fn min_connections(mut self, n: u32) -> Self {
        self.min_connections = n;
        self
    }

    /// How long opening the store may take before it fails with
    /// `Unavailable` (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a call waits for a pooled connection, including opening a
    /// new one, before it fails with `Unavailable` (default 10 s).
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// How long an idle connection stays open (default 10 min; `None`: forever).
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How long any connection lives before it is replaced (default 30 min; `None`: forever).
    pub fn max_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.max_lifetime = lifetime;
        self
    }

    /// SQLite only: how long a writer waits for another writer's lock
    /// before the call is retried (default 5 s).
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// PostgreSQL only: the `application_name` the connections report in
    /// `pg_stat_activity`.
    pub fn application_name(mut self, name: &str) -> Self {
        self.application_name = Some(name.to_owned());
        self
    }

    /// The URL handed to the driver, with the password replaced by `***`.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.driver_url)
    }

    pub(crate) fn is_sqlite_memory(&self) -> bool {
        self.engine == Engine::Sqlite
            && (self.driver_url.contains(":memory:") || self.driver_url.contains("mode=memory"))
    }
}

fn parse_count(key: &str, value: &str, min: u32) -> Result<u32> {
    value
        .parse::<u32>()
        .ok()
        .filter(|n| *n >= min)
        .ok_or_else(|| {
            Error::invalid(format!(
                "URL parameter {key} is a whole number of at least {min}, got {value:?}"
            ))
        })
}

fn parse_secs(key: &str, value: &str) -> Result<Duration> {
    value
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0 && *s <= 86_400.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            Error::invalid(format!(
                "URL parameter {key} is a number of seconds between 0 and 86400, got {value:?}"
            ))
        })
}

fn parse_optional_secs(key: &str, value: &str) -> Result<Option<Duration>> {
    if value == "0" || value.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    parse_secs(key, value).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://alice:hunter2@db:5432/x?sslmode=require"),
            "postgres://alice:***@db:5432/x?sslmode=require"
        );
        assert_eq!(
            redact_url("mysql://root@127.0.0.1/test"),
            "mysql://root@127.0.0.1/test"
        );
        assert_eq!(redact_url("mysql://u:p%40ss@h/d"), "mysql://u:***@h/d");
        assert_eq!(redact_url("mysql://u:a@b@h/d"), "mysql://u:***@h/d");
        assert_eq!(redact_url("sqlite:/tmp/x.db"), "sqlite:/tmp/x.db");
        assert_eq!(
            url_password("mysql://u:p%40ss@h/d").as_deref(),
            Some("p@ss")
        );
        assert_eq!(url_password("mysql://u@h/d"), None);
        assert_eq!(url_password("mysql://u:@h/d"), None);
    }

    #[test]
    fn reads_and_strips_parameters() {
        let builder = SqlStoreBuilder::new(
            "postgres://u:pw@h/db?max_connections=3&sslmode=disable&connect_timeout=2.5\
             &table_prefix=abc_&idle_timeout=0&session=alice",
        )
        .expect("valid");
        assert_eq!(builder.engine(), Engine::Postgres);
        assert_eq!(builder.max_connections, Some(3));
        assert_eq!(builder.connect_timeout, Duration::from_millis(2500));
        assert_eq!(builder.idle_timeout, None);
        assert_eq!(builder.table_prefix, "abc_");
        assert_eq!(builder.driver_url, "postgres://u:pw@h/db?sslmode=disable");
        assert!(!format!("{builder:?}").contains("pw"));

        let maria = SqlStoreBuilder::new("mariadb://root@127.0.0.1:3306/test").expect("valid");
        assert_eq!(maria.engine(), Engine::MySql);
        assert_eq!(maria.driver_url, "mysql://root@127.0.0.1:3306/test");
    }

    #[test]
    fn rejects_bad_settings() {
        for url in [
            "postgres://h/db?max_connections=0",
            "postgres://h/db?connect_timeout=-1",
            "postgres://h/db?connect_timeout=abc",
            "postgres://h/db?table_prefix=Bad-Prefix",
            "redis://h",
            "",
        ] {
            let err = SqlStoreBuilder::new(url).expect_err(url);
            assert_eq!(
                err.kind(),
                session_core::ErrorKind::InvalidInput,
                "{url}: {err}"
            );
        }
        assert!(validate_table_prefix("").is_ok());
        assert!(validate_table_prefix("1abc").is_err());
        assert!(validate_table_prefix(&"a".repeat(33)).is_err());
    }
}
