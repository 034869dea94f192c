//! The conformance suite against the Redis at `MTSESSION_TEST_REDIS_URL`
//! (default `redis://127.0.0.1:6379`), one fresh key prefix per case.

mod common;

use session_conformance::StoreFactory;
use session_core::{Error, Result, Store};
use session_redis::RedisStore;

use common::{drop_prefix, keys_under, raw_connection, test_url, unavailable, unique_prefix};

/// The conformance factory: one prefix per namespace on the test server.
struct RedisFactory {
    url: String,
}

impl RedisFactory {
    fn new() -> Self {
        RedisFactory { url: test_url() }
    }
}

#[async_trait::async_trait]
impl StoreFactory for RedisFactory {
    async fn create_namespace(&self) -> Result<String> {
        // Fails with a clear message when the server is missing.
        let mut con = raw_connection(&self.url).await?;
        let _: String = redis::cmd("PING")
            .query_async(&mut con)
            .await
            .map_err(|e| unavailable(&self.url, e))?;
        Ok(unique_prefix())
    }

    async fn open(&self, namespace: &str) -> Result<Store> {
        let store = RedisStore::builder(&self.url)
            .prefix(namespace)
            .open()
            .await?;
        Ok(Store::new(store))
    }

    async fn write_schema_version(&self, namespace: &str, version: i64) -> Result<()> {
        let mut con = raw_connection(&self.url).await?;
        let _: () = redis::cmd("SET")
            .arg(format!("{namespace}:schema"))
            .arg(version)
            .query_async(&mut con)
            .await
            .map_err(|e| Error::backend("redis", e))?;
        Ok(())
    }

    async fn drop_namespace(&self, namespace: &str) -> Result<()> {
        drop_prefix(&self.url, namespace).await?;
        let left = keys_under(&self.url, namespace).await?;
        if left.is_empty() {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "{} keys left under {namespace}",
                left.len()
            )))
        }
    }
}

session_conformance::conformance_tests! {
    factory: RedisFactory::new(),
    durable: true,
    shared_between_processes: true,
    leases: true,
    atomic_multi_key_writes: true,
}
