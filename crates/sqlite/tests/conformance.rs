//! The conformance suite against SQLite files: one temp file per namespace.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use session_conformance::{ServerStoreFactory, StoreFactory};
use session_core::{Error, Result, ServerStore, SessionStore};
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

fn io(e: std::io::Error) -> Error {
    Error::backend("sqlite", e)
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
            Err(e) => return Err(io(e)),
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl StoreFactory for Files {
    async fn create_namespace(&self) -> Result<String> {
        Ok(self.fresh())
    }

    async fn open(&self, namespace: &str) -> Result<Arc<dyn SessionStore>> {
        let path = PathBuf::from(namespace);
        let store = tokio::task::spawn_blocking(move || SqliteStore::open(path))
            .await
            .map_err(|e| Error::backend("sqlite", e))??;
        Ok(Arc::new(store))
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
        let path = PathBuf::from(namespace);
        let store = tokio::task::spawn_blocking(move || SqliteServerStore::open(path))
            .await
            .map_err(|e| Error::backend("sqlite", e))??;
        Ok(Arc::new(store))
    }

    async fn drop_namespace(&self, namespace: &str) -> Result<()> {
        remove_with_side_files(Path::new(namespace))
    }
}

mod store {
    session_conformance::conformance_tests! {
        factory: super::Files::new(),
        durable: true,
        shared_between_processes: true,
        leases: true,
        atomic_multi_key_writes: true,
    }
}

mod server {
    session_conformance::server_conformance_tests! {
        factory: super::Files::new(),
    }
}
