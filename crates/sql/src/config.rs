//! What a store is opened on: the engine a URL names, the URL options
//! mtsession reads (and the ones it hands to the driver), and the builder.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use session_core::url::{redact, shorten};
use session_core::{Error, OpenMode, Result, StoreUrl};

/// The SQL engine behind a store, chosen by the URL scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Engine {
    /// SQLite (`sql+sqlite:PATH`).
    Sqlite,
    /// PostgreSQL (`postgres://`, `postgresql://`).
    Postgres,
    /// MySQL or MariaDB (`mysql://`, `mariadb://`).
    MySql,
}

impl Engine {
    /// The backend name used in errors: `sqlite`, `postgres` or `mysql`.
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

    /// The engine a URL scheme (lowercase, without the colon) names.
    pub fn from_scheme(scheme: &str) -> Option<Engine> {
        match scheme {
            "sql+sqlite" => Some(Engine::Sqlite),
            "postgres" | "postgresql" => Some(Engine::Postgres),
            "mysql" | "mariadb" => Some(Engine::MySql),
            _ => None,
        }
    }

    /// The URL options the engine's driver reads, besides mtsession's own
    /// ([`STORE_OPTIONS`]).
    pub fn driver_options(self) -> &'static [&'static str] {
        match self {
            Engine::Sqlite => &[],
            Engine::Postgres => &POSTGRES_OPTIONS,
            Engine::MySql => &MYSQL_OPTIONS,
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The URL schemes of this build, lowercase, without the colon.
pub const SCHEMES: &[&str] = &[
    #[cfg(feature = "postgres")]
    "postgres",
    #[cfg(feature = "postgres")]
    "postgresql",
    #[cfg(feature = "mysql")]
    "mysql",
    #[cfg(feature = "mysql")]
    "mariadb",
    #[cfg(feature = "sqlite")]
    "sql+sqlite",
];

/// The URL shapes, for messages.
pub(crate) const SYNTAX: &str = "postgres://USER[:PASSWORD]@HOST[:PORT]/DB, \
     mysql://USER[:PASSWORD]@HOST[:PORT]/DB (or mariadb://), or sql+sqlite:PATH";

/// The URL options mtsession reads itself, on every engine
/// (`response_timeout` matters on the servers only).
pub const STORE_OPTIONS: [&str; 9] = [
    "table_prefix",
    "max_connections",
    "min_connections",
    "connect_timeout",
    "acquire_timeout",
    "response_timeout",
    "idle_timeout",
    "max_lifetime",
    "busy_timeout",
];

/// The URL options the PostgreSQL driver (sqlx) reads.
pub const POSTGRES_OPTIONS: [&str; 18] = [
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

/// The URL options the MySQL driver (sqlx) reads.
pub const MYSQL_OPTIONS: [&str; 14] = [
    "sslmode",
    "ssl-mode",
    "sslca",
    "ssl-ca",
    "charset",
    "collation",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "socket",
    "timezone",
    "time-zone",
];

/// Every option of every engine, for [`SqlDriver::options`](crate::SqlDriver).
pub(crate) const ALL_OPTIONS: [&str; 9 + 18 + 6] = [
    "table_prefix",
    "max_connections",
    "min_connections",
    "connect_timeout",
    "acquire_timeout",
    "response_timeout",
    "idle_timeout",
    "max_lifetime",
    "busy_timeout",
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
    "sslca",
    "charset",
    "collation",
    "socket",
    "timezone",
    "time-zone",
];

/// The table prefix used when none is given.
pub const DEFAULT_TABLE_PREFIX: &str = "mtsession_";

/// The longest table prefix accepted.
pub const MAX_TABLE_PREFIX_LEN: usize = 32;

/// Default pool size (1 for an in-memory SQLite database).
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;

/// How long opening may take by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a call waits for a pooled connection by default.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a server may take to answer one attempt of a call by default:
/// a bound for a server that stopped answering, well above the slowest
/// calls of the conformance suite (10 000 peers in one batch, or looked up
/// at once, take a few seconds at most, every lookup being an index seek).
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a call waits for another process's SQLite lock by default.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest timeout accepted.
const MAX_TIMEOUT: Duration = Duration::from_secs(86_400);

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
             not starting with a digit; got {:?}",
            shorten(prefix)
        )));
    }
    Ok(())
}

/// Replaces the password of a URL (`scheme://user:password@host/...`, or a
/// `password=` query parameter) with `***`: the shared
/// [`session_core::url::redact`].
pub fn redact_url(url: &str) -> String {
    redact(url)
}

/// Where the data lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// A server URL for the driver, without mtsession's options and with
    /// `mariadb://` written `mysql://`.
    Server(String),
    /// An SQLite file.
    File(PathBuf),
    /// A private in-memory SQLite database.
    Memory,
}

/// Opens a [`SqlStore`](crate::SqlStore) with settings: from
/// [`SqlStore::builder`](crate::SqlStore::builder).
///
/// Every setting can also be given as a URL option (see the crate docs);
/// settings made on the builder win over the URL's.
#[derive(Clone)]
pub struct SqlStoreBuilder {
    pub(crate) url: String,
    pub(crate) table_prefix: Option<String>,
    pub(crate) max_connections: Option<u32>,
    pub(crate) min_connections: Option<u32>,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) acquire_timeout: Option<Duration>,
    pub(crate) response_timeout: Option<Duration>,
    pub(crate) idle_timeout: Option<Option<Duration>>,
    pub(crate) max_lifetime: Option<Option<Duration>>,
    pub(crate) busy_timeout: Option<Duration>,
    pub(crate) application_name: Option<String>,
    pub(crate) mode: OpenMode,
}

impl fmt::Debug for SqlStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStoreBuilder")
            .field("url", &redact(&self.url))
            .field("table_prefix", &self.table_prefix)
            .field("max_connections", &self.max_connections)
            .field("connect_timeout", &self.connect_timeout)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("busy_timeout", &self.busy_timeout)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl SqlStoreBuilder {
    pub(crate) fn new(url: &str) -> Self {
        SqlStoreBuilder {
            url: url.to_owned(),
            table_prefix: None,
            max_connections: None,
            min_connections: None,
            connect_timeout: None,
            acquire_timeout: None,
            response_timeout: None,
            idle_timeout: None,
            max_lifetime: None,
            busy_timeout: None,
            application_name: None,
            mode: OpenMode::Create,
        }
    }

    /// The prefix of every table name (default `mtsession_`): stores with
    /// different prefixes share a database without seeing each other.
    /// At most 32 characters of `a-z`, `0-9` and `_`, checked by `open`.
    pub fn table_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.table_prefix = Some(prefix.into());
        self
    }

    /// The most connections the pool opens (default 10; 1 for an in-memory
    /// SQLite database).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = Some(n.max(1));
        self
    }

    /// Connections the pool keeps open even when idle (default 0).
    pub fn min_connections(mut self, n: u32) -> Self {
        self.min_connections = Some(n);
        self
    }

    /// How long opening may take before it fails with `Unavailable`
    /// (default 10 s). A refused connection fails at once.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// How long a call waits for a pooled connection, including opening a
    /// new one, before it fails with `Unavailable` (default 10 s).
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = Some(timeout);
        self
    }

    /// Servers only: how long the server may take to answer one attempt of
    /// a call, connection included (default 30 s; set it to the longest a
    /// call of the application may legitimately take). A call to a server that
    /// stopped answering (paused, overloaded, cut off without a reset, or
    /// waiting on another client's lock) fails then: a read, or a
    /// transaction that had not sent its `COMMIT`, with `Unavailable`
    /// (nothing was applied); a one-statement write, or a `COMMIT`, with
    /// `OutcomeUnknown` (it may still be applied). The connection the call
    /// held is closed, never reused.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = Some(timeout);
        self
    }

    /// How long an idle connection stays open (default 10 min; `None`: forever).
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// How long any connection lives before it is replaced (default 30
    /// min; `None`: forever).
    pub fn max_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.max_lifetime = Some(lifetime);
        self
    }

    /// SQLite only: the longest a call waits, in total, for a lock another
    /// connection or process holds before it fails with `Error::Busy`
    /// (default 5 s).
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = Some(timeout);
        self
    }

    /// PostgreSQL only: the `application_name` the connections report in
    /// `pg_stat_activity`.
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = Some(name.into());
        self
    }

    /// How to open (default [`OpenMode::Create`]): `Create` makes the file
    /// (mode 0600) and the tables when absent; `ReadWrite` opens an existing
    /// store only; `ReadOnly` opens an existing store for reads and creates,
    /// migrates, changes and chmods nothing (every write fails with
    /// `Unsupported`).
    pub fn mode(mut self, mode: OpenMode) -> Self {
        self.mode = mode;
        self
    }

    /// The URL with its password replaced by `***`.
    pub fn redacted_url(&self) -> String {
        redact(&self.url)
    }

    /// Reads the URL and its options, and combines them with the builder's
    /// settings.
    pub(crate) fn settings(&self) -> Result<Settings> {
        let url = parse_url(&self.url)?;
        let engine = Engine::from_scheme(url.scheme()).ok_or_else(|| {
            let hint = if url.scheme() == "sqlite" {
                "; sqlite: URLs belong to session-sqlite, and session-sql's SQLite engine is \
                 sql+sqlite:PATH"
            } else {
                ""
            };
            Error::invalid(format!(
                "{} is not a session-sql URL: expected {SYNTAX}{hint}",
                redact(&self.url)
            ))
        })?;
        if !engine.is_compiled_in() {
            return Err(Error::invalid(format!(
                "session-sql was built without the `{}` feature, so it cannot open {}: URLs",
                engine.feature(),
                url.scheme()
            )));
        }
        check_options(&url, engine)?;
        let number = |key: &str, min: u32| -> Result<Option<u32>> {
            url.param(key)?
                .map(|value| parse_count(key, &value, min))
                .transpose()
        };
        let time = |key: &str| -> Result<Option<Duration>> {
            url.param(key)?.map(|v| parse_time(key, &v)).transpose()
        };
        let optional_time = |key: &str| -> Result<Option<Option<Duration>>> {
            url.param(key)?
                .map(|v| parse_optional_time(key, &v))
                .transpose()
        };
        let table_prefix = match &self.table_prefix {
            Some(prefix) => prefix.clone(),
            None => url
                .param("table_prefix")?
                .unwrap_or_else(|| DEFAULT_TABLE_PREFIX.to_owned()),
        };
        validate_table_prefix(&table_prefix)?;
        let target = match engine {
            Engine::Sqlite => {
                if url.body() == ":memory:" {
                    Target::Memory
                } else {
                    Target::File(url.path()?)
                }
            }
            Engine::Postgres | Engine::MySql => {
                let mut driver_url = url.to_driver_url(&STORE_OPTIONS);
                if let Some(rest) = driver_url.strip_prefix("mariadb:") {
                    driver_url = format!("mysql:{rest}");
                } else if let Some(rest) = driver_url.strip_prefix("postgresql:") {
                    driver_url = format!("postgres:{rest}");
                }
                Target::Server(driver_url)
            }
        };
        let memory = target == Target::Memory;
        let settings = Settings {
            engine,
            target,
            table_prefix,
            max_connections: if memory {
                1
            } else {
                self.max_connections
                    .or(number("max_connections", 1)?)
                    .unwrap_or(DEFAULT_MAX_CONNECTIONS)
            },
            min_connections: if memory {
                1
            } else {
                self.min_connections
                    .or(number("min_connections", 0)?)
                    .unwrap_or(0)
            },
            connect_timeout: self
                .connect_timeout
                .or(time("connect_timeout")?)
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            acquire_timeout: self
                .acquire_timeout
                .or(time("acquire_timeout")?)
                .unwrap_or(DEFAULT_ACQUIRE_TIMEOUT),
            response_timeout: self
                .response_timeout
                .or(time("response_timeout")?)
                .unwrap_or(DEFAULT_RESPONSE_TIMEOUT),
            idle_timeout: if memory {
                None
            } else {
                self.idle_timeout
                    .or(optional_time("idle_timeout")?)
                    .unwrap_or(Some(Duration::from_secs(600)))
            },
            max_lifetime: if memory {
                None
            } else {
                self.max_lifetime
                    .or(optional_time("max_lifetime")?)
                    .unwrap_or(Some(Duration::from_secs(1800)))
            },
            busy_timeout: self
                .busy_timeout
                .or(time("busy_timeout")?)
                .unwrap_or(DEFAULT_BUSY_TIMEOUT),
            application_name: self.application_name.clone(),
            mode: self.mode,
        };
        for (name, timeout) in [
            ("connect timeout", settings.connect_timeout),
            ("acquire timeout", settings.acquire_timeout),
            ("response timeout", settings.response_timeout),
            ("busy timeout", settings.busy_timeout),
        ] {
            if timeout.is_zero() || timeout > MAX_TIMEOUT {
                return Err(Error::invalid(format!(
                    "the {name} is between 1 ms and 24 h, got {timeout:?}"
                )));
            }
        }
        Ok(settings)
    }
}

/// Parses a URL, never quoting input that is not URL-shaped (it may be a
/// password).
fn parse_url(input: &str) -> Result<StoreUrl> {
    StoreUrl::parse(input).map_err(|e| {
        let text = e.to_string();
        if text.contains("is not a URL") || text.contains("does not start with a URL scheme") {
            Error::invalid(format!(
                "{} is not a session-sql URL: expected {SYNTAX}",
                redact(input)
            ))
        } else {
            e
        }
    })
}

/// Refuses every option neither mtsession nor the engine's driver reads.
fn check_options(url: &StoreUrl, engine: Engine) -> Result<()> {
    let mut known: Vec<&str> = STORE_OPTIONS.to_vec();
    known.extend_from_slice(engine.driver_options());
    url.check_params(&known)
}

/// Everything needed to open a store, checked.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) engine: Engine,
    pub(crate) target: Target,
    pub(crate) table_prefix: String,
    pub(crate) max_connections: u32,
    pub(crate) min_connections: u32,
    pub(crate) connect_timeout: Duration,
    pub(crate) acquire_timeout: Duration,
    /// Servers only (SQLite calls are bounded by the busy timeout).
    pub(crate) response_timeout: Duration,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) max_lifetime: Option<Duration>,
    pub(crate) busy_timeout: Duration,
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) application_name: Option<String>,
    pub(crate) mode: OpenMode,
}

impl Settings {
    /// How errors name the place: the redacted URL, or the file.
    pub(crate) fn place(&self) -> String {
        match &self.target {
            Target::Server(url) => redact(url),
            Target::File(path) => format!("SQLite file {}", path.display()),
            Target::Memory => "in-memory SQLite database".to_owned(),
        }
    }
}

fn parse_count(key: &str, value: &str, min: u32) -> Result<u32> {
    value
        .parse::<u32>()
        .ok()
        .filter(|n| *n >= min)
        .ok_or_else(|| {
            Error::invalid(format!(
                "the URL option {key}= is a whole number of at least {min}, got {:?}",
                shorten(value)
            ))
        })
}

/// Parses a time: seconds (`2`, `2.5`), or with a unit (`500ms`, `2s`).
fn parse_time(key: &str, value: &str) -> Result<Duration> {
    let bad = || {
        Error::invalid(format!(
            "the URL option {key}= takes seconds (2.5) or a duration with a unit (500ms, 2s) \
             between 1 ms and 24 h, got {:?}",
            shorten(value)
        ))
    };
    let seconds = if let Some(ms) = value.strip_suffix("ms") {
        ms.parse::<f64>().map_err(|_| bad())? / 1000.0
    } else {
        value
            .strip_suffix('s')
            .unwrap_or(value)
            .parse::<f64>()
            .map_err(|_| bad())?
    };
    if !seconds.is_finite() || seconds < 0.001 || seconds > MAX_TIMEOUT.as_secs_f64() {
        return Err(bad());
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| bad())
}

/// Like [`parse_time`]; `0` or `none` means no limit.
fn parse_optional_time(key: &str, value: &str) -> Result<Option<Duration>> {
    if value == "0" || value.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    parse_time(key, value).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> Result<Settings> {
        SqlStoreBuilder::new(url).settings()
    }

    #[test]
    fn reads_options_and_passes_the_driver_its_own() {
        if !cfg!(feature = "postgres") {
            return;
        }
        let s = settings(
            "postgres://u:pw@h/db?max_connections=3&sslmode=disable&connect_timeout=2.5\
             &table_prefix=abc_&idle_timeout=0&session=alice&acquire_timeout=500ms\
             &response_timeout=1.5s",
        )
        .expect("valid");
        assert_eq!(s.engine, Engine::Postgres);
        assert_eq!(s.max_connections, 3);
        assert_eq!(s.connect_timeout, Duration::from_millis(2500));
        assert_eq!(s.acquire_timeout, Duration::from_millis(500));
        assert_eq!(s.response_timeout, Duration::from_millis(1500));
        assert_eq!(
            settings("postgres://h/db").expect("valid").response_timeout,
            DEFAULT_RESPONSE_TIMEOUT
        );
        assert_eq!(s.idle_timeout, None);
        assert_eq!(s.table_prefix, "abc_");
        assert_eq!(
            s.target,
            Target::Server("postgres://u:pw@h/db?sslmode=disable".to_owned())
        );
        assert!(!format!("{s:?}").contains("abc_x"));
        let s = settings("postgresql://h/db").expect("valid");
        assert_eq!(s.target, Target::Server("postgres://h/db".to_owned()));
    }

    #[test]
    fn builder_settings_win() {
        if !cfg!(feature = "mysql") {
            return;
        }
        let s = SqlStoreBuilder::new("mariadb://root@127.0.0.1:3306/test?table_prefix=a_")
            .table_prefix("b_")
            .max_connections(2)
            .settings()
            .expect("valid");
        assert_eq!(s.engine, Engine::MySql);
        assert_eq!(s.table_prefix, "b_");
        assert_eq!(s.max_connections, 2);
        assert_eq!(
            s.target,
            Target::Server("mysql://root@127.0.0.1:3306/test".to_owned())
        );
    }

    #[test]
    fn sqlite_paths() {
        if !cfg!(feature = "sqlite") {
            return;
        }
        let s = settings("sql+sqlite:dir/a.db?busy_timeout=1.5").expect("valid");
        assert_eq!(s.target, Target::File(PathBuf::from("dir/a.db")));
        assert_eq!(s.busy_timeout, Duration::from_millis(1500));
        assert_eq!(s.place(), "SQLite file dir/a.db");
        let s = settings("sql+sqlite:///abs/a.db").expect("valid");
        assert_eq!(s.target, Target::File(PathBuf::from("/abs/a.db")));
        let s = settings("sql+sqlite::memory:").expect("valid");
        assert_eq!((s.target, s.max_connections), (Target::Memory, 1));
    }

    #[test]
    fn unknown_options_are_refused_with_the_list() {
        if !cfg!(feature = "postgres") {
            return;
        }
        let err = settings("postgres://u:secret@h/db?table_prefx=x").expect_err("typo");
        let text = err.to_string();
        assert_eq!(err.kind(), session_core::ErrorKind::InvalidInput);
        assert!(text.contains("\"table_prefx\""), "{text}");
        assert!(
            text.contains("table_prefix") && text.contains("sslmode"),
            "{text}"
        );
        assert!(!text.contains("secret"), "{text}");
        // An option of another engine's driver is refused too.
        let err = settings("postgres://h/db?charset=utf8").expect_err("mysql option");
        assert!(err.to_string().contains("\"charset\""), "{err}");
    }

    #[test]
    fn rejects_bad_settings() {
        for url in [
            "postgres://h/db?max_connections=0",
            "postgres://h/db?connect_timeout=-1",
            "postgres://h/db?connect_timeout=abc",
            "postgres://h/db?connect_timeout=0",
            "postgres://h/db?response_timeout=0",
            "postgres://h/db?response_timeout=2d",
            "postgres://h/db?table_prefix=Bad-Prefix",
            "redis://h",
            "",
            "hunter2",
        ] {
            let err = settings(url).expect_err(url);
            assert_eq!(
                err.kind(),
                session_core::ErrorKind::InvalidInput,
                "{url}: {err}"
            );
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
        let err = settings("sqlite:a.db").expect_err("scheme");
        assert!(err.to_string().contains("sql+sqlite:PATH"), "{err}");
        assert!(validate_table_prefix("").is_ok());
        assert!(validate_table_prefix("1abc").is_err());
        assert!(validate_table_prefix(&"a".repeat(33)).is_err());
    }
}
