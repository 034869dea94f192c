//! What the integration tests share: the test server's URL, unique
//! databases, and cleanup that runs whatever the test did.

#![allow(dead_code, unreachable_pub)]

use futures::FutureExt;
use session_core::Result;
use session_mongo::mongodb::bson::{doc, oid::ObjectId};
use session_mongo::mongodb::{Client, options::ClientOptions};
use session_mongo::{MongoStore, redact_url};
use std::future::Future;
use std::panic::AssertUnwindSafe;

/// The variable that names the test server.
pub const URL_VAR: &str = "MTSESSION_TEST_MONGO_URL";

/// The test server's URL: `MTSESSION_TEST_MONGO_URL` or the local default.
pub fn url() -> String {
    std::env::var(URL_VAR).unwrap_or_else(|_| "mongodb://127.0.0.1:27017".to_owned())
}

/// A database name no other test uses.
pub fn unique_database() -> String {
    format!("mtsession_test_{}", ObjectId::new().to_hex())
}

/// A driver client on the test server, failing clearly when there is none.
pub async fn client() -> Client {
    let mut options = ClientOptions::parse(url())
        .await
        .unwrap_or_else(|e| panic!("{URL_VAR}={} is not a MongoDB URL: {e}", redact_url(&url())));
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
            redact_url(&url())
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
