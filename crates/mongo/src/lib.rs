#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod codec;
mod error;
mod retry;
mod store;
mod url;

pub use store::{
    DEFAULT_DATABASE, DEFAULT_PREFIX, DEFAULT_SERVER_SELECTION_TIMEOUT, MongoStore,
    MongoStoreBuilder, SCHEMA_VERSION,
};
pub use url::redact_url;

/// The MongoDB driver this crate uses, for callers that configure a
/// [`mongodb::Client`] or inspect the collections themselves.
pub use mongodb;
