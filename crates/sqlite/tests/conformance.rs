//! The conformance suite against SQLite files (one temp file per namespace)
//! and against in-memory stores, and the server cases.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use session_conformance::{ServerStoreFactory, StoreFactory};
use session_core::{Error, Result, ServerStore, Store};
use session_sqlite::{SqliteServerStore, SqliteStore};

/// Namespaces are files in one temp directory per factory (per test).
struct Files {
    dir: tempfile::TempDir,
    next: AtomicU64,
}

impl Files {
    fn new() -> Self {
        Files {
            dir: tempfile::tempdir().expect("a temp directory"),
            next: AtomicU64::new(0),
        }
    }

    fn fresh(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.dir
            .path()
            .join(format!("ns-{n}.sqlite"))
            .to_string_lossy()
            .into_owned()
    }
}

fn remove_with_side_files(path: &Path) -> Result<()> {
    let mut files = vec![path.to_owned()];
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        files.push(PathBuf::from(name));
    }
    for file in files {
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::backend("sqlite", e)),
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl StoreFactory for Files {
    async fn create_namespace(&self) -> Result<String> {
        Ok(self.fresh())
    }

    async fn open(&self, namespace: &str) -> Result<Store> {
        Ok(Store::new(SqliteStore::open(namespace).await?))
    }

    async fn write_schema_version(&self, namespace: &str, version: i64) -> Result<()> {
        // A namespace never opened has no file yet: make it a store first.
        if !Path::new(namespace).exists() {
            drop(StoreFactory::open(self, namespace).await?);
        }
        let conn =
            rusqlite::Connection::open(namespace).map_err(|e| Error::backend("sqlite", e))?;
        let changed = conn
            .execute(
                "UPDATE schema_version SET version = ?1 WHERE id = 0",
                [version],
            )
            .map_err(|e| Error::backend("sqlite", e))?;
        assert_eq!(changed, 1, "the namespace has a schema_version row");
        Ok(())
    }

    async fn drop_namespace(&self, namespace: &str) -> Result<()> {
        remove_with_side_files(Path::new(namespace))
    }
}

#[async_trait::async_trait]
impl ServerStoreFactory for Files {
    async fn create_namespace(&self) -> Result<String> {
        Ok(self.fresh())
    }

    async fn open(&self, namespace: &str) -> Result<Arc<dyn ServerStore>> {
        Ok(Arc::new(SqliteServerStore::open(namespace).await?))
    }

    async fn drop_namespace(&self, namespace: &str) -> Result<()> {
        remove_with_side_files(Path::new(namespace))
    }
}

/// One in-memory store per namespace; `open` hands out the same store.
#[derive(Default)]
struct InMemory {
    next: AtomicU64,
    stores: Mutex<HashMap<String, Store>>,
}

impl InMemory {
    fn stores(&self) -> std::sync::MutexGuard<'_, HashMap<String, Store>> {
        self.stores.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait::async_trait]
impl StoreFactory for InMemory {
    async fn create_namespace(&self) -> Result<String> {
        let name = format!("memory-{}", self.next.fetch_add(1, Ordering::Relaxed));
        let store = Store::new(SqliteStore::open_in_memory()?);
        self.stores().insert(name.clone(), store);
        Ok(name)
    }

    async fn open(&self, namespace: &str) -> Result<Store> {
        self.stores()
            .get(namespace)
            .cloned()
            .ok_or_else(|| Error::NotFound {
                what: format!("namespace {namespace:?}"),
            })
    }

    async fn write_schema_version(&self, _namespace: &str, _version: i64) -> Result<()> {
        Err(Error::invalid(
            "an in-memory store is not durable: it has no schema version to rewrite",
        ))
    }

    async fn drop_namespace(&self, namespace: &str) -> Result<()> {
        self.stores().remove(namespace);
        Ok(())
    }
}

/// One in-memory server store per namespace.
#[derive(Default)]
struct InMemoryServer {
    next: AtomicU64,
    stores: Mutex<HashMap<String, Arc<dyn ServerStore>>>,
}

#[async_trait::async_trait]
impl ServerStoreFactory for InMemoryServer {
    async fn create_namespace(&self) -> Result<String> {
        let name = format!("memory-{}", self.next.fetch_add(1, Ordering::Relaxed));
        let store: Arc<dyn ServerStore> = Arc::new(SqliteServerStore::open_in_memory()?);
        self.stores
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.clone(), store);
        Ok(name)
    }

    async fn open(&self, namespace: &str) -> Result<Arc<dyn ServerStore>> {
        self.stores
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(namespace)
            .cloned()
            .ok_or_else(|| Error::NotFound {
                what: format!("namespace {namespace:?}"),
            })
    }

    async fn drop_namespace(&self, namespace: &str) -> Result<()> {
        self.stores
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(namespace);
        Ok(())
    }
}

mod file {
    session_conformance::conformance_tests! {
        factory: super::Files::new(),
        durable: true,
        shared_between_processes: true,
        leases: true,
        atomic_multi_key_writes: true,
    }
}

mod in_memory {
    session_conformance::conformance_tests! {
        factory: super::InMemory::default(),
        durable: false,
        shared_between_processes: false,
        leases: true,
        atomic_multi_key_writes: true,
    }
}

mod server {
    session_conformance::server_conformance_tests! {
        factory: super::Files::new(),
    }
}

mod server_in_memory {
    session_conformance::server_conformance_tests! {
        factory: super::InMemoryServer::default(),
    }
}
