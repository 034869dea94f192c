#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod builder;
mod db;
mod driver;
mod files;
mod peers;
mod schema;
mod server;
mod store;

pub use builder::SqliteBuilder;
pub use driver::{DEFAULT_MAX_DELAY, SqliteDriver};
pub use schema::{APPLICATION_ID, SCHEMA_VERSION};
pub use server::SqliteServerStore;
pub use store::SqliteStore;
