// The README's examples use the SQLite backend, so they are the crate docs
// (and doc tests) of builds that have it.
#![cfg_attr(feature = "sqlite", doc = include_str!("../../../README.md"))]
#![cfg_attr(
    not(feature = "sqlite"),
    doc = "MTProto session storage: `mtsession::open(url)` opens a store of any backend this \
           build holds. See the repository's README for the whole documentation."
)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod endpoint;

use session_core::driver::{Driver, MemoryDriver};
use session_core::url::{StoreUrl, shorten};

pub use endpoint::{Endpoint, Loaded};
pub use session_core::{
    self as core, AuthKey, BackendExt, Capabilities, DcOption, Durability, Error, ErrorKind,
    LeaseGuard, OpenMode, Peer, PeerId, PeerKind, Result, SelfUser, Session, SessionBackend,
    SessionData, SessionOptions, Store, UpdateState, UpdateStateChange,
};
pub use session_formats as formats;

#[cfg(feature = "mongo")]
pub use session_mongo as mongo;
#[cfg(feature = "redis")]
pub use session_redis as redis;
#[cfg(feature = "sled")]
pub use session_sled as sled;
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sql-sqlite"))]
pub use session_sql as sql;
#[cfg(feature = "sqlite")]
pub use session_sqlite as sqlite;

/// Every store scheme of every backend, with the cargo feature that brings
/// its driver, so a build without it can say which feature is missing.
const STORE_SCHEMES: &[(&str, &str)] = &[
    ("memory", ""),
    ("sqlite", "sqlite"),
    ("sled", "sled"),
    ("redis", "redis"),
    ("rediss", "redis"),
    ("redis+unix", "redis"),
    ("mongodb", "mongo"),
    ("mongodb+srv", "mongo"),
    ("postgres", "postgres"),
    ("postgresql", "postgres"),
    ("mysql", "mysql"),
    ("mariadb", "mysql"),
    ("sql+sqlite", "sql-sqlite"),
];

/// The drivers this build was compiled with, `memory:` first.
pub fn drivers() -> Vec<&'static dyn Driver> {
    #[allow(unused_mut)] // no other driver in a build without backends
    let mut drivers: Vec<&'static dyn Driver> = vec![&MemoryDriver];
    #[cfg(feature = "sqlite")]
    drivers.push(&session_sqlite::SqliteDriver);
    #[cfg(feature = "sled")]
    drivers.push(&session_sled::SledDriver);
    #[cfg(feature = "redis")]
    drivers.push(&session_redis::RedisDriver);
    #[cfg(feature = "mongo")]
    drivers.push(&session_mongo::MongoDriver);
    #[cfg(any(feature = "postgres", feature = "mysql", feature = "sql-sqlite"))]
    drivers.push(&session_sql::SqlDriver);
    drivers
}

/// The driver serving `scheme` in this build.
pub fn driver_for(scheme: &str) -> Option<&'static dyn Driver> {
    drivers()
        .into_iter()
        .find(|d| d.schemes().iter().any(|s| s.eq_ignore_ascii_case(scheme)))
}

/// Every URL shape this build understands, for messages and `--help`.
pub fn known_urls() -> Vec<&'static str> {
    let mut urls: Vec<&'static str> = drivers().iter().map(|d| d.syntax()).collect();
    urls.extend(endpoint::SYNTAX);
    urls
}

/// The error for a URL whose scheme no driver of this build serves.
pub(crate) fn unknown_scheme(url: &StoreUrl) -> Error {
    let scheme = url.scheme();
    if let Some((_, feature)) = STORE_SCHEMES.iter().find(|(s, _)| *s == scheme) {
        return Error::invalid(format!(
            "{scheme}: stores are not in this build of mtsession; rebuild with the cargo \
             feature `{feature}` (or `all-backends`)"
        ));
    }
    Error::invalid(format!(
        "unknown URL scheme {:?}; expected one of {}",
        shorten(scheme),
        known_urls().join(", ")
    ))
}

/// Opens the store a URL names, creating it when absent (a SQLite file, a
/// sled directory, tables or a key prefix): `sqlite:sessions.db`,
/// `redis://127.0.0.1:6379`, `postgres://user@host/db`, `memory:`, ...
///
/// A `?session=NAME` in the URL is ignored here (it names a session, not a
/// store); use [`open_session`] for it. A URL of a single foreign session
/// (`telethon:`, `pyrogram:`, `string:`, ...) is refused with a pointer to
/// [`Endpoint`].
pub async fn open(url: &str) -> Result<Store> {
    open_with(url, OpenMode::Create).await
}

/// Like [`open`], choosing whether the store may be created, written, or
/// only read ([`OpenMode::ReadOnly`] creates, changes and chmods nothing).
pub async fn open_with(url: &str, mode: OpenMode) -> Result<Store> {
    let url = StoreUrl::parse(url)?;
    open_url(&url, mode).await
}

/// Opens the store of a parsed URL.
pub async fn open_url(url: &StoreUrl, mode: OpenMode) -> Result<Store> {
    if let Some(driver) = driver_for(url.scheme()) {
        return driver.open(url, mode).await;
    }
    if endpoint::is_single_session(url.scheme()) {
        return Err(Error::invalid(format!(
            "{}: names one foreign session, not a store of sessions; read it with \
             mtsession::Endpoint, or copy it into a store with `mtsession convert`",
            url.scheme()
        )));
    }
    Err(unknown_scheme(url))
}

/// Opens the store a URL names and the session its `?session=NAME` names
/// (`default` when none), creating both when absent.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> mtsession::Result<()> {
/// let session = mtsession::open_session("memory:?session=alice").await?;
/// assert_eq!(session.name(), "alice");
/// assert_eq!(session.home_dc().await?, 2);
/// # Ok(())
/// # }
/// ```
pub async fn open_session(url: &str) -> Result<Session> {
    let parsed = StoreUrl::parse(url)?;
    let store = open_url(&parsed, OpenMode::Create).await?;
    store.open(parsed.session_or_default()).await
}
