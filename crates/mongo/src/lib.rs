#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod codec;
mod driver;
mod error;
mod open;
mod peers;
mod retry;
mod store;
mod unit;
mod url;
mod watch;

pub use driver::MongoDriver;
pub use open::{
    DEFAULT_DATABASE, DEFAULT_PREFIX, DEFAULT_RESPONSE_TIMEOUT, DEFAULT_SERVER_SELECTION_TIMEOUT,
    ENGINE_OPTIONS, MongoStoreBuilder, SCHEMES, STORE_OPTIONS,
};
pub use store::{MongoStore, SCHEMA_VERSION};
pub use url::redact_url;

/// The MongoDB driver this crate uses, for callers that configure a
/// [`mongodb::Client`] or inspect the collections themselves.
pub use mongodb;
