#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod codec;
mod driver;
mod error;
mod open;
mod store;

pub use driver::{DEFAULT_MAX_DELAY, SledDriver};
pub use error::{StoreInUse, in_use_details, is_in_use};
pub use open::{META_TREE, SCHEMA_VERSION, SCHEMA_VERSION_KEY};
pub use store::{SledBuilder, SledStore};
