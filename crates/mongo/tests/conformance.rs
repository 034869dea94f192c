//! The whole conformance suite against the test server
//! (`MTSESSION_TEST_MONGO_URL`, default `mongodb://127.0.0.1:27017`), one
//! fresh database per case, dropped afterwards.

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use session_core::{Error, Result, SessionStore};
use session_mongo::MongoStore;
use session_mongo::mongodb::Client;
use session_mongo::mongodb::bson::{Document, doc};
use tokio::sync::OnceCell;

/// The conformance suite's factory: one database per namespace.
#[derive(Default)]
struct MongoFactory {
    client: OnceCell<Client>,
    transactions: Option<bool>,
}

impl MongoFactory {
    /// A factory whose stores use transactions where the server has them.
    fn new() -> Self {
        MongoFactory::default()
    }

    /// A factory whose stores never use transactions (the fallback path).
    fn without_transactions() -> Self {
        MongoFactory {
            client: OnceCell::new(),
            transactions: Some(false),
        }
    }

    async fn client(&self) -> &Client {
        self.client.get_or_init(common::client).await
    }
}

fn backend(e: session_mongo::mongodb::error::Error) -> Error {
    Error::backend("mongo", e)
}

#[async_trait]
impl session_conformance::StoreFactory for MongoFactory {
    async fn create_namespace(&self) -> Result<String> {
        self.client().await;
        Ok(common::unique_database())
    }

    async fn open(&self, namespace: &str) -> Result<Arc<dyn SessionStore>> {
        let mut builder = MongoStore::builder(common::url()).database(namespace);
        if let Some(yes) = self.transactions {
            builder = builder.use_transactions(yes);
        }
        Ok(Arc::new(builder.open().await?))
    }

    async fn write_schema_version(&self, namespace: &str, version: i64) -> Result<()> {
        self.client()
            .await
            .database(namespace)
            .collection::<Document>("mtsession_meta")
            .update_one(
                doc! { "_id": "schema" },
                doc! { "$set": { "version": version } },
            )
            .upsert(true)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn drop_namespace(&self, namespace: &str) -> Result<()> {
        self.client()
            .await
            .database(namespace)
            .drop()
            .await
            .map_err(backend)
    }
}

session_conformance::conformance_tests! {
    factory: MongoFactory::new(),
    durable: true,
    shared_between_processes: true,
    leases: true,
    atomic_multi_key_writes: true,
}
