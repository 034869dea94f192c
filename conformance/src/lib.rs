#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::sync::Arc;

use session_core::{Result, ServerStore, Store};

#[cfg(feature = "bench")]
pub mod bench;
pub mod cases;
mod harness;
mod macros;
pub mod outage;
pub mod process;
pub mod support;

pub use harness::{
    CaseError, CaseFailure, CaseInfo, CaseResult, Ctx, FailureStage, Namespace, Requirement,
    try_run_case, try_run_server_case,
};

/// Re-exported so that a factory can be written without a direct dependency.
pub use async_trait::async_trait;

#[doc(hidden)]
pub mod __private {
    pub use crate::harness::{caps, run_server_case, run_store_case};
    pub use session_core::Capabilities;
    pub use tokio;
}

/// Every store case of [`conformance_tests!`], with the capability it needs.
pub const STORE_CASES: &[CaseInfo] = __store_cases!(__list_cases!());

/// Every server-side case of [`server_conformance_tests!`].
pub const SERVER_CASES: &[CaseInfo] = __server_cases!(__list_cases!());

/// Makes fresh, isolated stores for the conformance suite.
///
/// Each case calls [`create_namespace`](Self::create_namespace) once, opens
/// one or more stores on it, and calls [`drop_namespace`](Self::drop_namespace)
/// when it ends, whether it passed, failed or panicked.
#[async_trait]
pub trait StoreFactory: Send + Sync + 'static {
    /// Creates a fresh, unique, empty namespace (temp file or dir, key prefix, database
    /// schema...) and returns an identifier for it.
    async fn create_namespace(&self) -> Result<String>;
    /// Opens a store on the namespace. Called again after earlier stores were dropped
    /// (persistence across reopen, for durable backends) and, for backends shared between
    /// processes, while another store on the same namespace is still open.
    async fn open(&self, namespace: &str) -> Result<Store>;
    /// Overwrites the schema version recorded in the namespace (its stores are dropped
    /// first), to test that opening refuses newer versions with UnsupportedSchemaVersion.
    async fn write_schema_version(&self, namespace: &str, version: i64) -> Result<()>;
    /// Removes the namespace and everything in it.
    async fn drop_namespace(&self, namespace: &str) -> Result<()>;
}

#[async_trait]
impl<F: StoreFactory + ?Sized> StoreFactory for Arc<F> {
    async fn create_namespace(&self) -> Result<String> {
        (**self).create_namespace().await
    }

    async fn open(&self, namespace: &str) -> Result<Store> {
        (**self).open(namespace).await
    }

    async fn write_schema_version(&self, namespace: &str, version: i64) -> Result<()> {
        (**self).write_schema_version(namespace, version).await
    }

    async fn drop_namespace(&self, namespace: &str) -> Result<()> {
        (**self).drop_namespace(namespace).await
    }
}

/// Makes fresh, isolated server stores for [`server_conformance_tests!`].
#[async_trait]
pub trait ServerStoreFactory: Send + Sync + 'static {
    /// Creates a fresh, unique, empty namespace and returns an identifier for it.
    async fn create_namespace(&self) -> Result<String>;
    /// Opens a server store on the namespace.
    async fn open(&self, namespace: &str) -> Result<Arc<dyn ServerStore>>;
    /// Removes the namespace and everything in it.
    async fn drop_namespace(&self, namespace: &str) -> Result<()>;
}

#[async_trait]
impl<F: ServerStoreFactory + ?Sized> ServerStoreFactory for Arc<F> {
    async fn create_namespace(&self) -> Result<String> {
        (**self).create_namespace().await
    }

    async fn open(&self, namespace: &str) -> Result<Arc<dyn ServerStore>> {
        (**self).open(namespace).await
    }

    async fn drop_namespace(&self, namespace: &str) -> Result<()> {
        (**self).drop_namespace(namespace).await
    }
}
