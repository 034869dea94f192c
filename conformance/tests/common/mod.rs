//! In-process factories shared by this crate's tests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use session_conformance::{ServerStoreFactory, StoreFactory};
use session_core::{Error, MemoryServerStore, Result, ServerStore, SessionStore};

/// Hands out one store per namespace, built by `make`; `open` returns the
/// same instance every time, as a store in process memory must.
pub(crate) struct InProcessFactory<S> {
    make: fn() -> S,
    next: AtomicU64,
    stores: Mutex<HashMap<String, Arc<S>>>,
}

impl<S> InProcessFactory<S> {
    pub(crate) fn new(make: fn() -> S) -> Self {
        InProcessFactory {
            make,
            next: AtomicU64::new(0),
            stores: Mutex::new(HashMap::new()),
        }
    }

    fn stores(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<S>>> {
        self.stores.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait::async_trait]
impl<S: SessionStore + 'static> StoreFactory for InProcessFactory<S> {
    async fn create_namespace(&self) -> Result<String> {
        let name = format!("ns-{}", self.next.fetch_add(1, Ordering::SeqCst));
        self.stores().insert(name.clone(), Arc::new((self.make)()));
        Ok(name)
    }

    async fn open(&self, namespace: &str) -> Result<Arc<dyn SessionStore>> {
        let store = self.stores().get(namespace).cloned();
        match store {
            Some(store) => Ok(store),
            None => Err(Error::NotFound {
                what: format!("namespace {namespace:?}"),
            }),
        }
    }

    async fn write_schema_version(&self, _namespace: &str, _version: i64) -> Result<()> {
        Err(Error::invalid("an in-memory store has no schema version"))
    }

    async fn drop_namespace(&self, namespace: &str) -> Result<()> {
        match self.stores().remove(namespace) {
            Some(_) => Ok(()),
            None => Err(Error::NotFound {
                what: format!("namespace {namespace:?}"),
            }),
        }
    }
}

/// A fresh `MemoryServerStore` per namespace.
#[derive(Default)]
pub(crate) struct MemoryServerFactory {
    next: AtomicU64,
    stores: Mutex<HashMap<String, Arc<MemoryServerStore>>>,
}

#[async_trait::async_trait]
impl ServerStoreFactory for MemoryServerFactory {
    async fn create_namespace(&self) -> Result<String> {
        let name = format!("ns-{}", self.next.fetch_add(1, Ordering::SeqCst));
        let mut stores = self.stores.lock().unwrap_or_else(|p| p.into_inner());
        stores.insert(name.clone(), Arc::new(MemoryServerStore::new()));
        Ok(name)
    }

    async fn open(&self, namespace: &str) -> Result<Arc<dyn ServerStore>> {
        let stores = self.stores.lock().unwrap_or_else(|p| p.into_inner());
        match stores.get(namespace) {
            Some(store) => Ok(Arc::clone(store) as Arc<dyn ServerStore>),
            None => Err(Error::NotFound {
                what: format!("namespace {namespace:?}"),
            }),
        }
    }

    async fn drop_namespace(&self, namespace: &str) -> Result<()> {
        let mut stores = self.stores.lock().unwrap_or_else(|p| p.into_inner());
        match stores.remove(namespace) {
            Some(_) => Ok(()),
            None => Err(Error::NotFound {
                what: format!("namespace {namespace:?}"),
            }),
        }
    }
}
