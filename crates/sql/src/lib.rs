#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(not(any(feature = "sqlite", feature = "postgres", feature = "mysql")))]
compile_error!("session-sql needs at least one of the features `sqlite`, `postgres`, `mysql`");

mod config;
mod connect;
mod driver;
mod error;
#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
mod files;
mod migration;
mod peers;
mod sql;
mod store;

pub use config::{
    DEFAULT_ACQUIRE_TIMEOUT, DEFAULT_BUSY_TIMEOUT, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_RESPONSE_TIMEOUT, DEFAULT_TABLE_PREFIX, Engine,
    MAX_TABLE_PREFIX_LEN, MYSQL_OPTIONS, POSTGRES_OPTIONS, SCHEMES, STORE_OPTIONS, SqlStoreBuilder,
    redact_url, validate_table_prefix,
};
pub use driver::SqlDriver;
pub use migration::SCHEMA_VERSION;
pub use store::SqlStore;
