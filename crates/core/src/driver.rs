//! [`Driver`]: how a backend crate opens its stores from URLs.
//!
//! Each backend crate exports one driver that declares the URL schemes it
//! serves and the options it accepts (sqlx's `AnyDriver` is the model). The
//! `mtsession` facade collects the drivers of the backends it was built with,
//! so adding a backend never means editing a list of schemes in core.

use async_trait::async_trait;

use crate::error::Result;
use crate::memory::MemoryStore;
use crate::store::Store;
use crate::url::StoreUrl;

/// How a store is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpenMode {
    /// For reads only: nothing is created, changed or chmodded (a missing
    /// store is `NotFound`, something that is not a store is refused), and
    /// every write fails with `Unsupported`.
    ReadOnly,
    /// Open a store that exists, for reads and writes; a missing embedded
    /// store is `NotFound`.
    ReadWrite,
    /// Open a store, creating it (file, directory, tables) when absent.
    Create,
}

impl OpenMode {
    /// Whether the store may be written.
    pub fn writes(self) -> bool {
        !matches!(self, OpenMode::ReadOnly)
    }
}

/// Opens stores of one backend from URLs.
#[async_trait]
pub trait Driver: Send + Sync + 'static {
    /// The backend's short name (`sqlite`, `redis`, ...).
    fn backend(&self) -> &'static str;

    /// The URL schemes the driver serves, lowercase, without the colon.
    fn schemes(&self) -> &'static [&'static str];

    /// The URL's shape, for messages: `sqlite:PATH`, `redis://HOST[:PORT][/DB]`.
    fn syntax(&self) -> &'static str;

    /// Every URL option the driver accepts besides `session` (its own and its
    /// engine's); any other option is refused with this list.
    fn options(&self) -> &'static [&'static str];

    /// Opens the store the URL names.
    async fn open(&self, url: &StoreUrl, mode: OpenMode) -> Result<Store>;
}

/// The driver of `memory:` (a new, empty [`MemoryStore`] each time).
#[derive(Clone, Copy, Debug, Default)]
pub struct MemoryDriver;

#[async_trait]
impl Driver for MemoryDriver {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn schemes(&self) -> &'static [&'static str] {
        &["memory"]
    }

    fn syntax(&self) -> &'static str {
        "memory:"
    }

    fn options(&self) -> &'static [&'static str] {
        &[]
    }

    async fn open(&self, url: &StoreUrl, _mode: OpenMode) -> Result<Store> {
        url.check_params(self.options())?;
        if !url.body().is_empty() {
            return Err(crate::Error::invalid(format!(
                "memory: takes nothing after the colon, got {:?}",
                crate::url::shorten(url.body())
            )));
        }
        Ok(Store::new(MemoryStore::new()))
    }
}
