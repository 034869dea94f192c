//! [`MongoDriver`]: opens MongoDB stores from URLs for the `mtsession`
//! facade and command.

use async_trait::async_trait;
use session_core::{Driver, OpenMode, Result, Store, StoreUrl};

use crate::error::BACKEND;
use crate::open::{SCHEMES, SYNTAX, all_options};
use crate::store::MongoStore;

/// The driver of `mongodb://` and `mongodb+srv://` URLs.
///
/// It accepts mtsession's options (`prefix=`, `response_timeout_ms=`) and
/// every option the MongoDB driver reads from a connection string
/// ([`ENGINE_OPTIONS`](crate::ENGINE_OPTIONS): `replicaSet=`, `authSource=`,
/// `serverSelectionTimeoutMS=`, `connectTimeoutMS=`, `tls=`, `w=`, ...);
/// any other option is refused with the list of valid ones.
#[derive(Clone, Copy, Debug, Default)]
pub struct MongoDriver;

#[async_trait]
impl Driver for MongoDriver {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn schemes(&self) -> &'static [&'static str] {
        &SCHEMES
    }

    fn syntax(&self) -> &'static str {
        SYNTAX
    }

    fn options(&self) -> &'static [&'static str] {
        all_options()
    }

    async fn open(&self, url: &StoreUrl, mode: OpenMode) -> Result<Store> {
        url.check_params(self.options())?;
        // The URL as written, without `session=` (the store does not use it).
        let store = MongoStore::builder(&url.to_driver_url(&[]))
            .mode(mode)
            .open()
            .await?;
        Ok(Store::new(store))
    }
}
