#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod convert;
mod error;
mod session;

pub use error::{Error, Result};
pub use session::GrammersSession;

/// The grammers-session version this crate implements (pinned exactly).
pub const GRAMMERS_SESSION_VERSION: &str = "0.11.0";
