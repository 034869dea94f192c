//! [`SqlDriver`]: opens session-sql stores from URLs for the `mtsession`
//! facade and command.

use async_trait::async_trait;
use session_core::{Driver, OpenMode, Result, Store, StoreUrl};

use crate::config::{ALL_OPTIONS, SCHEMES, SYNTAX};
use crate::store::SqlStore;

/// The driver of `postgres://`, `postgresql://` (feature `postgres`),
/// `mysql://`, `mariadb://` (feature `mysql`) and `sql+sqlite:PATH`
/// (feature `sqlite`) URLs. `sqlite:` belongs to session-sqlite.
///
/// It accepts mtsession's options ([`STORE_OPTIONS`](crate::STORE_OPTIONS))
/// and the ones the engine's driver reads from its URLs
/// ([`POSTGRES_OPTIONS`](crate::POSTGRES_OPTIONS),
/// [`MYSQL_OPTIONS`](crate::MYSQL_OPTIONS)); any other option is refused
/// with the list of valid ones for the URL's engine.
#[derive(Clone, Copy, Debug, Default)]
pub struct SqlDriver;

#[async_trait]
impl Driver for SqlDriver {
    fn backend(&self) -> &'static str {
        "sql"
    }

    fn schemes(&self) -> &'static [&'static str] {
        SCHEMES
    }

    fn syntax(&self) -> &'static str {
        SYNTAX
    }

    fn options(&self) -> &'static [&'static str] {
        &ALL_OPTIONS
    }

    async fn open(&self, url: &StoreUrl, mode: OpenMode) -> Result<Store> {
        // The URL as written, without `session=` (the store does not use it);
        // the builder checks the options against the URL's engine.
        let store = SqlStore::builder(&url.to_driver_url(&[]))
            .mode(mode)
            .open()
            .await?;
        Ok(Store::new(store))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{MYSQL_OPTIONS, POSTGRES_OPTIONS, STORE_OPTIONS};

    #[test]
    fn schemes_follow_the_features_and_options_cover_every_engine() {
        let schemes = SqlDriver.schemes();
        assert_eq!(schemes.contains(&"postgres"), cfg!(feature = "postgres"));
        assert_eq!(schemes.contains(&"postgresql"), cfg!(feature = "postgres"));
        assert_eq!(schemes.contains(&"mysql"), cfg!(feature = "mysql"));
        assert_eq!(schemes.contains(&"mariadb"), cfg!(feature = "mysql"));
        assert_eq!(schemes.contains(&"sql+sqlite"), cfg!(feature = "sqlite"));
        assert!(
            !schemes.contains(&"sqlite"),
            "sqlite: belongs to session-sqlite"
        );
        let options = SqlDriver.options();
        for option in STORE_OPTIONS
            .iter()
            .chain(&POSTGRES_OPTIONS)
            .chain(&MYSQL_OPTIONS)
        {
            assert!(options.contains(option), "{option}");
        }
        let mut sorted = options.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), options.len(), "no option twice");
    }
}
