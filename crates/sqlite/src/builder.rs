//! [`SqliteBuilder`]: how a store is opened.

use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::time::Duration;

use session_core::{Durability, OpenMode, Result};

use crate::db::{Db, Options};
use crate::server::SqliteServerStore;
use crate::store::SqliteStore;

/// Opens a [`SqliteStore`] or a [`SqliteServerStore`] with options: from
/// [`SqliteStore::builder`] or [`SqliteServerStore::builder`].
///
/// ```
/// use std::time::Duration;
/// use session_core::{Durability, OpenMode};
/// use session_sqlite::SqliteStore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> session_core::Result<()> {
/// # let dir = tempfile::tempdir().expect("temp dir");
/// # let path = dir.path().join("sessions.sqlite");
/// let store = SqliteStore::builder(&path)
///     .durability(Durability::WriteBehind { max_delay: Duration::from_millis(100) })
///     .busy_timeout(Duration::from_secs(2))
///     .mode(OpenMode::Create)
///     .open()
///     .await?;
/// # drop(store);
/// # Ok(())
/// # }
/// ```
pub struct SqliteBuilder<S> {
    path: PathBuf,
    options: Options,
    store: PhantomData<fn() -> S>,
}

impl<S> fmt::Debug for SqliteBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteBuilder")
            .field("path", &self.path)
            .field("options", &self.options)
            .finish()
    }
}

impl<S> SqliteBuilder<S> {
    pub(crate) fn new(path: &Path) -> Self {
        SqliteBuilder {
            path: path.to_owned(),
            options: Options::default(),
            store: PhantomData,
        }
    }

    /// When a write is durable (see the crate docs). Default:
    /// [`Durability::Immediate`]. A write-behind delay must be positive.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.options.durability = durability;
        self
    }

    /// How long a call waits for a lock another connection or process holds
    /// before it fails with `Error::Busy`; the whole wait of a call is
    /// bounded by it. Default: 10 s.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.options.busy_timeout = timeout;
        self
    }

    /// What opening may do: [`OpenMode::Create`] (the default) creates the
    /// file (mode 0600) and the schema when absent; [`OpenMode::ReadWrite`]
    /// opens an existing store only; [`OpenMode::ReadOnly`] opens an existing
    /// store for reads and creates, changes and chmods nothing.
    pub fn mode(mut self, mode: OpenMode) -> Self {
        self.options.mode = mode;
        self
    }

    /// How many idle reader connections are kept between calls (readers are
    /// opened when a read finds no idle connection). Default: 4.
    pub fn max_idle_readers(mut self, readers: usize) -> Self {
        self.options.max_idle_readers = readers;
        self
    }
}

impl SqliteBuilder<SqliteStore> {
    /// Opens the session store.
    pub async fn open(self) -> Result<SqliteStore> {
        let db = Db::open_file(self.path, self.options).await?;
        SqliteStore::from_db(db)
    }
}

impl SqliteBuilder<SqliteServerStore> {
    /// Opens the server store.
    pub async fn open(self) -> Result<SqliteServerStore> {
        let db = Db::open_file(self.path, self.options).await?;
        SqliteServerStore::from_db(db)
    }
}
