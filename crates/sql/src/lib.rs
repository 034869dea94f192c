#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(not(any(feature = "sqlite", feature = "postgres", feature = "mysql")))]
compile_error!("session-sql needs at least one of the features `sqlite`, `postgres`, `mysql`");

mod config;
mod error;
mod migration;
mod sql;
mod store;

pub use config::{
    DEFAULT_TABLE_PREFIX, Engine, MAX_TABLE_PREFIX_LEN, SqlStoreBuilder, URL_PARAMETERS,
    redact_url, validate_table_prefix,
};
pub use migration::SCHEMA_VERSION;
pub use store::SqlStore;
