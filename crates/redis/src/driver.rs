//! [`RedisDriver`]: opens Redis stores from URLs for the `mtsession` facade
//! and command.

use async_trait::async_trait;
use session_core::{Driver, OpenMode, Result, Store, StoreUrl};

use crate::error::BACKEND;
use crate::open::{ALL_OPTIONS, SCHEMES, SYNTAX};
use crate::store::RedisStore;

/// The driver of `redis://`, `rediss://` and `redis+unix://` URLs.
///
/// It accepts mtsession's options (`prefix=`, `connect_timeout=`,
/// `response_timeout=`) and the ones redis-rs reads from its URLs
/// (`protocol=`, and `db=`, `user=`, `pass=` on `redis+unix`); any other
/// option is refused with the list of valid ones.
#[derive(Clone, Copy, Debug, Default)]
pub struct RedisDriver;

#[async_trait]
impl Driver for RedisDriver {
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
        &ALL_OPTIONS
    }

    async fn open(&self, url: &StoreUrl, mode: OpenMode) -> Result<Store> {
        url.check_params(self.options())?;
        // The URL as written, without `session=` (the store does not use it).
        let store = RedisStore::builder(&url.to_driver_url(&[]))
            .mode(mode)
            .open()
            .await?;
        Ok(Store::new(store))
    }
}
