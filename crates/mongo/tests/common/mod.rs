//! What the integration tests share: the test server's URL, unique
//! databases, and cleanup that runs whatever the test did.

#![allow(dead_code, unreachable_pub)]

use futures::FutureExt;
use session_core::{Error, Result, SessionStore};
use session_mongo::mongodb::bson::{Document, doc, oid::ObjectId};
use session_mongo::mongodb::{Client, options::ClientOptions};
use session_mongo::{MongoStore, redact_url};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use tokio::sync::OnceCell;

use async_trait::async_trait;

/// The variable that names the test server.
pub const URL_VAR: &str = "MTSESSION_TEST_MONGO_URL";

/// The test server's URL as configured: `MTSESSION_TEST_MONGO_URL` or the
/// local default.
pub fn configured_url() -> String {
    std::env::var(URL_VAR).unwrap_or_else(|_| "mongodb://127.0.0.1:27017".to_owned())
}

/// The URL the tests open stores with: the configured one, with retryable
/// writes turned off unless it says otherwise. SecantusDB spends about
/// 35 ms on the bookkeeping of every retryable write outside a transaction
/// (0.6 ms without it), which would make the suite's thousands of single
/// writes take many minutes; the store's logic does not depend on the
/// setting, and `retryable_writes_on` covers the default.
pub fn url() -> String {
    let url = configured_url();
    if url.to_ascii_lowercase().contains("retrywrites=") {
        return url;
    }
    let after_scheme = url.split_once("://").map_or("", |(_, rest)| rest);
    if url.contains('?') {
        format!("{url}&retryWrites=false")
    } else if after_scheme.contains('/') {
        format!("{url}?retryWrites=false")
    } else {
        format!("{url}/?retryWrites=false")
    }
}

/// A database name no other test uses.
pub fn unique_database() -> String {
    format!("mtsession_test_{}", ObjectId::new().to_hex())
}

/// A driver client on the test server, failing clearly when there is none.
pub async fn client() -> Client {
    let mut options = ClientOptions::parse(url()).await.unwrap_or_else(|e| {
        panic!(
            "{URL_VAR}={} is not a MongoDB URL: {e}",
            redact_url(&configured_url())
        )
    });
    options.server_selection_timeout = Some(std::time::Duration::from_secs(5));
    let client = Client::with_options(options).expect("client");
    if let Err(e) = client
        .database("admin")
        .run_command(doc! { "ping": 1 })
        .await
    {
        panic!(
            "no MongoDB-compatible test server at {} ({e}); start one (cargo xtask starts \
             SecantusDB) or point {URL_VAR} at one",
            redact_url(&configured_url())
        );
    }
    client
}

/// Opens a store on `database` of the test server.
pub async fn open(database: &str) -> Result<MongoStore> {
    MongoStore::builder(url()).database(database).open().await
}

/// Runs `body` with a fresh database name and drops that database
/// afterwards, also when the body panics.
pub async fn with_database<F, Fut>(body: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()>,
{
    let client = client().await;
    let database = unique_database();
    let outcome = AssertUnwindSafe(body(database.clone()))
        .catch_unwind()
        .await;
    client
        .database(&database)
        .drop()
        .await
        .expect("drop the test database");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// The conformance suite's factory: one database per namespace.
#[derive(Default)]
pub struct MongoFactory {
    client: OnceCell<Client>,
    transactions: Option<bool>,
}

impl MongoFactory {
    /// A factory whose stores use transactions where the server has them.
    pub fn new() -> Self {
        MongoFactory::default()
    }

    /// A factory whose stores never use transactions (the fallback path).
    pub fn without_transactions() -> Self {
        MongoFactory {
            client: OnceCell::new(),
            transactions: Some(false),
        }
    }

    async fn client(&self) -> &Client {
        self.client.get_or_init(client).await
    }
}

fn backend(e: session_mongo::mongodb::error::Error) -> Error {
    Error::backend("mongo", e)
}

#[async_trait]
impl session_conformance::StoreFactory for MongoFactory {
    async fn create_namespace(&self) -> Result<String> {
        self.client().await;
        Ok(unique_database())
    }

    async fn open(&self, namespace: &str) -> Result<Arc<dyn SessionStore>> {
        let mut builder = MongoStore::builder(url()).database(namespace);
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
