//! Building the connection pool of a store: the driver's options per
//! engine, the health check that replaces a ping before every call, the
//! probe that makes a refused port fail at once, and the SQLite file (created
//! 0600, looked at without changing anything when read-only).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sea_orm::DatabaseConnection;
use sea_orm::sqlx;
use sea_orm::sqlx::pool::{PoolConnectionMetadata, PoolOptions};
use session_core::{Error, Result};

use crate::config::{Engine, Settings, Target};
use crate::error::ErrorMapper;

/// Remembers when a call last lost its connection, so that connections that
/// were idle since before are checked (pinged) before they are handed out
/// again. Connections are not pinged otherwise: a healthy pool costs no
/// extra round trip per call.
///
/// Also remembers when a call was last interrupted (it ran out of its
/// response timeout): the connection it held may be anywhere in a
/// statement, a `BEGIN` whose answer never came included, after which the
/// driver would believe it outside a transaction that the server has open —
/// writes acknowledged on it later would never be committed. So every
/// connection opened before that moment is closed when it is given back,
/// never reused.
#[derive(Debug)]
pub(crate) struct Health {
    epoch: Instant,
    /// Milliseconds after `epoch` of the last lost connection, plus one; 0: never.
    last_loss: AtomicU64,
    /// Microseconds after `epoch` of the last interrupted call, plus one; 0: never.
    last_interruption: AtomicU64,
}

/// Connections opened this soon after an interruption are closed too (the
/// pool measures a connection's age a moment before it is compared).
const INTERRUPTION_MARGIN: Duration = Duration::from_millis(1);

impl Health {
    pub(crate) fn new() -> Self {
        Health {
            epoch: Instant::now(),
            last_loss: AtomicU64::new(0),
            last_interruption: AtomicU64::new(0),
        }
    }

    /// Records an interrupted call now, before the call lets its connection go.
    pub(crate) fn interrupted(&self) {
        let us = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX - 1);
        self.last_interruption
            .store(us.saturating_add(1), Ordering::Release);
    }

    /// Whether a connection of age `age`, being given back, was opened
    /// before the last interrupted call (and may be the one it held).
    pub(crate) fn opened_before_interruption(&self, age: Duration) -> bool {
        let last = self.last_interruption.load(Ordering::Acquire);
        if last == 0 {
            return false;
        }
        let interrupted_at = Duration::from_micros(last - 1);
        let opened_at = self.epoch.elapsed().saturating_sub(age);
        opened_at <= interrupted_at + INTERRUPTION_MARGIN
    }

    /// Records a lost connection now.
    pub(crate) fn lost_connection(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.last_loss
            .store(ms.saturating_add(1), Ordering::Release);
    }

    /// Whether a connection idle for `idle_for` went idle before the last
    /// lost connection (and may be broken the same way).
    pub(crate) fn suspect(&self, idle_for: Duration) -> bool {
        let last = self.last_loss.load(Ordering::Acquire);
        if last == 0 {
            return false;
        }
        let lost_at = Duration::from_millis(last - 1);
        let since_loss = self.epoch.elapsed().saturating_sub(lost_at);
        idle_for > since_loss
    }
}

/// The pool settings every engine shares.
fn pool_options<DB: sqlx::Database>(settings: &Settings, health: &Arc<Health>) -> PoolOptions<DB> {
    let released = Arc::clone(health);
    let health = Arc::clone(health);
    PoolOptions::<DB>::new()
        .max_connections(settings.max_connections)
        .min_connections(settings.min_connections.min(settings.max_connections))
        .acquire_timeout(settings.acquire_timeout)
        .idle_timeout(settings.idle_timeout)
        .max_lifetime(settings.max_lifetime)
        // No ping before every call: a connection is checked only when it
        // may be broken, after a call lost one (see `Health`).
        .test_before_acquire(false)
        .before_acquire(move |conn, meta: PoolConnectionMetadata| {
            let suspect = health.suspect(meta.idle_for);
            Box::pin(async move {
                if suspect {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        // A connection an interrupted call may have held is closed (see `Health`).
        .after_release(move |_conn, meta: PoolConnectionMetadata| {
            let keep = !released.opened_before_interruption(meta.age);
            Box::pin(async move { Ok(keep) })
        })
}

/// A direct connection attempt, made when the first query of an open is
/// slow, to tell a refused or unreachable server at once.
pub(crate) type Probe = Box<
    dyn Fn() -> Pin<Box<dyn Future<Output = std::result::Result<(), sqlx::Error>> + Send>>
        + Send
        + Sync,
>;

/// How many connections of a pool are idle.
pub(crate) type Idle = Box<dyn Fn() -> usize + Send + Sync>;

/// A pool and what opening needs to know about it.
pub(crate) struct Pool {
    pub(crate) db: DatabaseConnection,
    pub(crate) probe: Option<Probe>,
    /// The URL's password, to scrub from messages.
    pub(crate) password: Option<String>,
    pub(crate) idle: Idle,
}

/// Builds the pool (connecting lazily) for the settings.
pub(crate) fn pool(settings: &Settings, health: &Arc<Health>) -> Result<Pool> {
    match (&settings.target, settings.engine) {
        #[cfg(feature = "postgres")]
        (Target::Server(url), Engine::Postgres) => postgres(url, settings, health),
        #[cfg(feature = "mysql")]
        (Target::Server(url), Engine::MySql) => mysql(url, settings, health),
        #[cfg(feature = "sqlite")]
        (Target::File(_) | Target::Memory, Engine::Sqlite) => sqlite(settings, health),
        _ => Err(Error::invalid(format!(
            "session-sql was built without the driver for {}",
            settings.engine
        ))),
    }
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
fn invalid_url(settings: &Settings, err: sqlx::Error) -> Error {
    // The driver's message names the part it could not read; the URL
    // itself is shown redacted.
    let text = err.to_string();
    let text = match url_password(settings) {
        Some(p) if !p.is_empty() => text.replace(&p, "***"),
        _ => text,
    };
    Error::invalid(format!(
        "{} cannot be used as a {} URL: {text}",
        settings.place(),
        settings.engine
    ))
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
fn url_password(settings: &Settings) -> Option<String> {
    match &settings.target {
        Target::Server(url) => url::Url::parse(url)
            .ok()
            .and_then(|u| u.password().map(str::to_owned))
            .map(|p| {
                url::form_urlencoded::parse(format!("p={p}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or(p)
            }),
        _ => None,
    }
}

#[cfg(feature = "postgres")]
fn postgres(url: &str, settings: &Settings, health: &Arc<Health>) -> Result<Pool> {
    use sea_orm::sqlx::ConnectOptions;
    use sea_orm::sqlx::postgres::PgConnectOptions;
    use std::str::FromStr;

    let mut options = PgConnectOptions::from_str(url)
        .map_err(|e| invalid_url(settings, e))?
        .disable_statement_logging();
    if let Some(name) = &settings.application_name {
        options = options.application_name(name);
    }
    if settings.mode == session_core::OpenMode::ReadOnly {
        // The server refuses writes on these connections too.
        options = options.options([("default_transaction_read_only", "on")]);
    }
    let pool = pool_options::<sqlx::Postgres>(settings, health).connect_lazy_with(options.clone());
    let idle = pool.clone();
    let probe: Probe = Box::new(move || {
        let options = options.clone();
        Box::pin(async move {
            let conn = options.connect().await?;
            sqlx::Connection::close(conn).await
        })
    });
    Ok(Pool {
        db: DatabaseConnection::from(pool),
        probe: Some(probe),
        password: url_password(settings),
        idle: Box::new(move || idle.num_idle()),
    })
}

#[cfg(feature = "mysql")]
fn mysql(url: &str, settings: &Settings, health: &Arc<Health>) -> Result<Pool> {
    use sea_orm::sqlx::ConnectOptions;
    use sea_orm::sqlx::mysql::MySqlConnectOptions;
    use std::str::FromStr;

    let options = MySqlConnectOptions::from_str(url)
        .map_err(|e| invalid_url(settings, e))?
        .disable_statement_logging();
    let pool = pool_options::<sqlx::MySql>(settings, health).connect_lazy_with(options.clone());
    let idle = pool.clone();
    let probe: Probe = Box::new(move || {
        let options = options.clone();
        Box::pin(async move {
            let conn = options.connect().await?;
            sqlx::Connection::close(conn).await
        })
    });
    Ok(Pool {
        db: DatabaseConnection::from(pool),
        probe: Some(probe),
        password: url_password(settings),
        idle: Box::new(move || idle.num_idle()),
    })
}

#[cfg(feature = "sqlite")]
fn sqlite(settings: &Settings, health: &Arc<Health>) -> Result<Pool> {
    use sea_orm::sqlx::ConnectOptions;
    use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteSynchronous};

    let mut options = SqliteConnectOptions::new()
        .busy_timeout(settings.busy_timeout)
        .foreign_keys(true)
        .create_if_missing(false)
        .disable_statement_logging();
    let mut pool = pool_options::<sqlx::Sqlite>(settings, health);
    match &settings.target {
        Target::Memory => {
            options = options.in_memory(true);
        }
        Target::File(path) => {
            options = options.filename(crate::files::literal(path));
            if settings.mode == session_core::OpenMode::ReadOnly {
                options = options.read_only(true);
                if crate::files::has_log(path) {
                    // A writer has the file open: read beside it, through
                    // its -wal and -shm. One connection stays open, so that
                    // the writer never removes them while this store lives
                    // (a read-only connection that found none would create them).
                    pool = pool
                        .min_connections(1)
                        .idle_timeout(None)
                        .max_lifetime(None);
                } else {
                    // Nobody writes: read the file as it is, creating no
                    // -wal or -shm (SQLite's immutable mode).
                    options = options.immutable(true);
                }
            } else {
                // The journal mode is the file's (a new store is made WAL
                // when its tables are created), so that opening a file that
                // holds no store changes nothing in it.
                options = options.synchronous(SqliteSynchronous::Full);
            }
        }
        Target::Server(_) => {}
    }
    let pool = pool.connect_lazy_with(options);
    let idle = pool.clone();
    Ok(Pool {
        db: DatabaseConnection::from(pool),
        probe: None,
        password: None,
        idle: Box::new(move || idle.num_idle()),
    })
}

/// How long [`settle`] waits at most.
const SETTLE_AT_MOST: Duration = Duration::from_millis(20);

/// Waits (briefly, yielding) until the connection the open used is back in the pool:
/// the driver checks a connection when it is given back, in a task of its
/// own, and a call made before that ends would open a second connection
/// (a second TLS handshake, on a server) instead of reusing the first.
pub(crate) async fn settle(idle: &Idle) {
    let started = Instant::now();
    while idle() == 0 && started.elapsed() < SETTLE_AT_MOST {
        tokio::task::yield_now().await;
    }
}

/// How long the first query of an open may take before a direct
/// connection attempt looks for the reason.
const PROBE_AFTER: Duration = Duration::from_millis(250);

/// Runs the first work of an open (which connects through the pool),
/// bounded by the connect timeout. When it is slow, a direct connection
/// attempt runs beside it: the pool retries a refused connection until its
/// timeout, the direct attempt reports it at once.
pub(crate) async fn first_contact<T>(
    work: impl Future<Output = Result<T>>,
    probe: Option<&Probe>,
    errors: &ErrorMapper,
    timeout: Duration,
) -> Result<T> {
    let bounded = async {
        tokio::pin!(work);
        let Some(probe) = probe else {
            return work.await;
        };
        tokio::select! {
            result = &mut work => return result,
            () = tokio::time::sleep(PROBE_AFTER) => {}
        }
        let attempt = probe();
        tokio::pin!(attempt);
        tokio::select! {
            result = &mut work => result,
            probed = &mut attempt => match probed {
                Err(err) => Err(errors.connect_error(err, timeout)),
                // The server answers: the pool will get its connection.
                Ok(()) => work.await,
            },
        }
    };
    match tokio::time::timeout(timeout, bounded).await {
        Ok(result) => result,
        Err(_) => Err(errors.open_timed_out(timeout)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_idle_since_before_a_loss_are_suspect() {
        let health = Health::new();
        assert!(!health.suspect(Duration::from_secs(3600)));
        std::thread::sleep(Duration::from_millis(20));
        health.lost_connection();
        // Idle for longer than the time since the loss: went idle before it.
        assert!(health.suspect(Duration::from_secs(1)));
        // Released after the loss: used successfully since.
        assert!(!health.suspect(Duration::ZERO));
    }

    #[test]
    fn connections_opened_before_an_interruption_are_not_reused() {
        let health = Health::new();
        assert!(!health.opened_before_interruption(Duration::from_secs(3600)));
        std::thread::sleep(Duration::from_millis(20));
        health.interrupted();
        // Open for longer than the time since: the interrupted call may have held it.
        assert!(health.opened_before_interruption(Duration::from_millis(15)));
        std::thread::sleep(Duration::from_millis(20));
        // Opened after the interruption.
        assert!(!health.opened_before_interruption(Duration::from_millis(5)));
    }
}
