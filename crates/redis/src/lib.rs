#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod codec;
mod driver;
mod error;
mod keys;
mod link;
mod open;
mod peers;
mod scripts;
mod store;

pub use driver::RedisDriver;
pub use error::redact_url;
pub use open::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_PREFIX, DEFAULT_RESPONSE_TIMEOUT, ENGINE_OPTIONS,
    MAX_PREFIX_LEN, RedisStoreBuilder, SCHEMES, STORE_OPTIONS,
};
pub use store::{RedisStore, SCHEMA_VERSION};
