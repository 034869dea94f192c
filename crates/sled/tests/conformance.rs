//! The shared conformance suite against `SledStore`, including the
//! differential case against `MemoryStore`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use session_conformance::StoreFactory;
use session_core::{Error, Result, Store};
use session_sled::{META_TREE, SCHEMA_VERSION_KEY, SledStore};

/// One temporary directory per factory; each namespace is a directory in it.
struct SledFactory {
    root: tempfile::TempDir,
    next: AtomicU64,
}

fn factory() -> SledFactory {
    SledFactory {
        root: tempfile::Builder::new()
            .prefix("mtsession-sled-conformance-")
            .tempdir()
            .expect("a temporary directory"),
        next: AtomicU64::new(0),
    }
}

fn io(e: std::io::Error) -> Error {
    Error::backend("sled", e)
}

/// Opens sled directly, waiting out a lock that a just-dropped store may
/// still hold for a few milliseconds.
fn raw_open(path: &Path) -> Result<sled::Db> {
    let started = Instant::now();
    loop {
        match sled::open(path) {
            Ok(db) => return Ok(db),
            Err(_) if started.elapsed() < Duration::from_secs(5) => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(Error::backend("sled", e)),
        }
    }
}

#[session_conformance::async_trait]
impl StoreFactory for SledFactory {
    async fn create_namespace(&self) -> Result<String> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let path: PathBuf = self.root.path().join(format!("ns-{n}"));
        Ok(path.to_string_lossy().into_owned())
    }

    async fn open(&self, namespace: &str) -> Result<Store> {
        Ok(Store::new(SledStore::open(namespace).await?))
    }

    async fn write_schema_version(&self, namespace: &str, version: i64) -> Result<()> {
        let path = PathBuf::from(namespace);
        tokio::task::spawn_blocking(move || {
            let db = raw_open(&path)?;
            let meta = db
                .open_tree(META_TREE)
                .map_err(|e| Error::backend("sled", e))?;
            meta.insert(SCHEMA_VERSION_KEY, &version.to_be_bytes())
                .map_err(|e| Error::backend("sled", e))?;
            db.flush().map_err(|e| Error::backend("sled", e))?;
            Ok(())
        })
        .await
        .map_err(|e| Error::backend("sled", e))?
    }

    async fn drop_namespace(&self, namespace: &str) -> Result<()> {
        match std::fs::remove_dir_all(namespace) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(e)),
            _ => Ok(()),
        }
    }
}

session_conformance::conformance_tests! {
    factory: factory(),
    durable: true,
    shared_between_processes: false,
    leases: true,
    atomic_multi_key_writes: true,
}
