#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod auth_key;
pub mod error;
pub mod lease;
pub mod memory;
pub mod model;
pub mod server;
pub mod session;
pub mod store;
pub mod string;
pub mod url;

pub use auth_key::{AUTH_KEY_LEN, AuthKey};
pub use error::{BoxError, Error, ErrorKind, Result};
pub use lease::{LeaseGuard, LeaseInfo};
pub use memory::{MemoryStore, PeerTable};
pub use model::{
    AccessHash, DEFAULT_SESSION, DcOption, FileKind, Peer, PeerId, PeerIdKind, PeerKind, SelfUser,
    SentFile, SentFileKey, SessionData, SessionMeta, UpdateState, UpdateStateChange,
};
pub use server::{
    MemoryServerStore, ServerSalt, ServerStore, SessionEvent, SessionObserver, SessionSubject,
};
pub use session::{Session, SessionOptions, SessionStoreExt, copy_between};
pub use store::{Capabilities, Durability, DynStore, SessionStore};
pub use string::{PyrogramLayout, StringFormat, StringSession, pyrogram_data_center};

pub use async_trait::async_trait;
