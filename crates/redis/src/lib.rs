#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod codec;
mod error;
mod keys;
mod scripts;
mod store;

pub use error::redact_url;
pub use store::{DEFAULT_PREFIX, MAX_PREFIX_LEN, RedisStore, RedisStoreBuilder, SCHEMA_VERSION};
