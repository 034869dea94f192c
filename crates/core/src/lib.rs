#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod auth_key;
pub mod backend;
pub mod blocking;
pub mod driver;
pub mod error;
pub mod files;
pub mod lease;
pub mod memory;
pub mod model;
pub mod peers;
pub mod schema;
pub mod server;
pub mod session;
pub mod store;
pub mod url;

pub use auth_key::{AUTH_KEY_LEN, AuthKey};
pub use backend::{
    ChannelsWrite, HeaderWrite, ImportMode, LeaseRequest, SessionBackend, SessionHeader,
    UpdateStateWrite,
};
pub use driver::{Driver, MemoryDriver, OpenMode};
pub use error::{BoxError, Error, ErrorKind, Result};
pub use lease::{LeaseGuard, LeaseInfo};
pub use memory::MemoryStore;
pub use model::{
    AccessHash, DEFAULT_SESSION, DcOption, FileKind, Peer, PeerId, PeerIdKind, PeerKind, SelfUser,
    SentFile, SentFileKey, SessionData, SessionMeta, UpdateState, UpdateStateChange,
};
pub use peers::{PeerBatch, PeerPlan, PeerTable};
pub use server::{
    MemoryServerStore, ServerSalt, ServerStore, SessionEvent, SessionObserver, SessionSubject,
};
pub use session::{Session, SessionOptions, copy_between, validate_data};
pub use store::{BackendExt, Capabilities, Durability, Store};
pub use url::StoreUrl;

pub use async_trait::async_trait;
