//! In-process factories and stores shared by this crate's tests.

#![allow(dead_code)]

pub(crate) mod faulty;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use session_conformance::{ServerStoreFactory, StoreFactory};
use session_core::{Error, MemoryServerStore, Result, ServerStore, SessionBackend, Store};

/// The schema version the versioned in-process factory supports.
pub(crate) const SUPPORTED_SCHEMA_VERSION: i64 = 1;

/// Hands out one store per namespace, built by `make`; `open` returns the
/// same instance every time, as a store in process memory must.
///
/// A versioned factory also records a schema version per namespace and
/// refuses to open newer ones, standing in for a durable backend so that the
/// suite's durable and shared cases are themselves exercised here.
pub(crate) struct InProcessFactory<S> {
    make: Box<dyn Fn() -> S + Send + Sync>,
    versioned: bool,
    next: AtomicU64,
    namespaces: Mutex<HashMap<String, (Arc<S>, i64)>>,
}

impl<S> InProcessFactory<S> {
    /// `write_schema_version` answers `InvalidInput`, as for a store without a schema.
    pub(crate) fn new(make: impl Fn() -> S + Send + Sync + 'static) -> Self {
        InProcessFactory {
            make: Box::new(make),
            versioned: false,
            next: AtomicU64::new(0),
            namespaces: Mutex::new(HashMap::new()),
        }
    }

    /// Records schema versions and refuses to open newer ones.
    pub(crate) fn versioned(make: impl Fn() -> S + Send + Sync + 'static) -> Self {
        InProcessFactory {
            versioned: true,
            ..InProcessFactory::new(make)
        }
    }

    fn namespaces(&self) -> MutexGuard<'_, HashMap<String, (Arc<S>, i64)>> {
        self.namespaces.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn missing(namespace: &str) -> Error {
    Error::NotFound {
        what: format!("namespace {namespace:?}"),
    }
}

#[async_trait::async_trait]
impl<S: SessionBackend> StoreFactory for InProcessFactory<S> {
    async fn create_namespace(&self) -> Result<String> {
        let name = format!("ns-{}", self.next.fetch_add(1, Ordering::SeqCst));
        let store = Arc::new((self.make)());
        self.namespaces()
            .insert(name.clone(), (store, SUPPORTED_SCHEMA_VERSION));
        Ok(name)
    }

    async fn open(&self, namespace: &str) -> Result<Store> {
        let (store, version) = self
            .namespaces()
            .get(namespace)
            .cloned()
            .ok_or_else(|| missing(namespace))?;
        if version > SUPPORTED_SCHEMA_VERSION {
            return Err(Error::UnsupportedSchemaVersion {
                what: format!("namespace {namespace:?}"),
                found: version,
                supported: SUPPORTED_SCHEMA_VERSION,
            });
        }
        Ok(Store::from_arc(store))
    }

    async fn write_schema_version(&self, namespace: &str, version: i64) -> Result<()> {
        if !self.versioned {
            return Err(Error::invalid("an in-memory store has no schema version"));
        }
        let mut namespaces = self.namespaces();
        let entry = namespaces
            .get_mut(namespace)
            .ok_or_else(|| missing(namespace))?;
        entry.1 = version;
        Ok(())
    }

    async fn drop_namespace(&self, namespace: &str) -> Result<()> {
        self.namespaces()
            .remove(namespace)
            .map(|_| ())
            .ok_or_else(|| missing(namespace))
    }
}

/// A fresh `MemoryServerStore` per namespace.
#[derive(Default)]
pub(crate) struct MemoryServerFactory {
    next: AtomicU64,
    stores: Mutex<HashMap<String, Arc<MemoryServerStore>>>,
}

impl MemoryServerFactory {
    fn stores(&self) -> MutexGuard<'_, HashMap<String, Arc<MemoryServerStore>>> {
        self.stores.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait::async_trait]
impl ServerStoreFactory for MemoryServerFactory {
    async fn create_namespace(&self) -> Result<String> {
        let name = format!("ns-{}", self.next.fetch_add(1, Ordering::SeqCst));
        self.stores()
            .insert(name.clone(), Arc::new(MemoryServerStore::new()));
        Ok(name)
    }

    async fn open(&self, namespace: &str) -> Result<Arc<dyn ServerStore>> {
        let store = self
            .stores()
            .get(namespace)
            .cloned()
            .ok_or_else(|| missing(namespace))?;
        Ok(store)
    }

    async fn drop_namespace(&self, namespace: &str) -> Result<()> {
        self.stores()
            .remove(namespace)
            .map(|_| ())
            .ok_or_else(|| missing(namespace))
    }
}
