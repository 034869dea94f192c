#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod db;
pub mod foreign;
mod options;
mod peers;
mod schema;
mod server;
mod store;

pub use options::SqliteOptions;
pub use schema::{APPLICATION_ID, SCHEMA_VERSION};
pub use server::SqliteServerStore;
pub use store::SqliteStore;
