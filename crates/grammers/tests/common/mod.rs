//! Shared by the adapter's tests: store factories (one per backend the
//! differential test runs over), and a backend wrapper that counts calls.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use session_conformance::{StoreFactory, async_trait};
use session_core::backend::{
    HeaderWrite, ImportMode, LeaseRequest, SessionBackend, SessionHeader, UpdateStateWrite,
};
use session_core::peers::PeerBatch;
use session_core::{
    Capabilities, DcOption, Error, LeaseInfo, MemoryStore, Peer, PeerId, Result, SentFile,
    SentFileKey, SessionData, Store, UpdateState,
};

/// `MemoryStore`s, one per namespace, kept until the namespace is dropped
/// (so a store opened twice on one namespace sees the same sessions).
#[derive(Default)]
pub struct MemoryFactory {
    stores: Mutex<HashMap<String, Store>>,
    next: AtomicUsize,
}

#[async_trait]
impl StoreFactory for MemoryFactory {
    async fn create_namespace(&self) -> Result<String> {
        let name = format!("memory-{}", self.next.fetch_add(1, Ordering::Relaxed));
        self.stores
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.clone(), Store::new(MemoryStore::new()));
        Ok(name)
    }

    async fn open(&self, namespace: &str) -> Result<Store> {
        self.stores
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(namespace)
            .cloned()
            .ok_or_else(|| Error::NotFound {
                what: format!("namespace {namespace}"),
            })
    }

    async fn write_schema_version(&self, _namespace: &str, _version: i64) -> Result<()> {
        Err(Error::unsupported("memory", "schema versions"))
    }

    async fn drop_namespace(&self, namespace: &str) -> Result<()> {
        self.stores
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(namespace);
        Ok(())
    }
}

/// Stores in files or directories: each namespace is a fresh path in one
/// temporary directory, opened by `open` (SQLite files, sled directories).
pub struct PathFactory {
    root: tempfile::TempDir,
    next: AtomicUsize,
    open: fn(String) -> BoxFuture<'static, Result<Store>>,
}

/// A boxed future, as `PathFactory` opens stores.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

impl PathFactory {
    pub fn new(open: fn(String) -> BoxFuture<'static, Result<Store>>) -> Self {
        PathFactory {
            root: tempfile::Builder::new()
                .prefix("mtsession-grammers-")
                .tempdir()
                .expect("a temporary directory"),
            next: AtomicUsize::new(0),
            open,
        }
    }

    /// SQLite files.
    pub fn sqlite() -> Self {
        PathFactory::new(|path| {
            Box::pin(async move { Ok(Store::new(session_sqlite::SqliteStore::open(path).await?)) })
        })
    }

    /// sled directories.
    pub fn sled() -> Self {
        PathFactory::new(|path| {
            Box::pin(async move { Ok(Store::new(session_sled::SledStore::open(path).await?)) })
        })
    }
}

#[async_trait]
impl StoreFactory for PathFactory {
    async fn create_namespace(&self) -> Result<String> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Ok(self
            .root
            .path()
            .join(format!("ns-{n}"))
            .to_string_lossy()
            .into_owned())
    }

    async fn open(&self, namespace: &str) -> Result<Store> {
        (self.open)(namespace.to_owned()).await
    }

    async fn write_schema_version(&self, _namespace: &str, _version: i64) -> Result<()> {
        Err(Error::unsupported("test factory", "schema versions"))
    }

    async fn drop_namespace(&self, namespace: &str) -> Result<()> {
        // The file or directory, and an SQLite file's journal, WAL and index.
        for suffix in ["", "-journal", "-wal", "-shm"] {
            let path = std::path::PathBuf::from(format!("{namespace}{suffix}"));
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            match removed {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::backend("test factory", e)),
            }
        }
        Ok(())
    }
}

/// Whether missing services fail tests (`MTSESSION_REQUIRE_SERVICES=1`, as
/// `cargo xtask test-all` and CI set it) instead of skipping them.
pub fn services_required() -> bool {
    std::env::var("MTSESSION_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// Stores on the test Redis (`MTSESSION_TEST_REDIS_URL`, default
/// `redis://127.0.0.1:6379`), one fresh key prefix per namespace, its keys
/// deleted when the namespace is dropped.
pub struct RedisFactory {
    url: String,
    next: AtomicUsize,
}

impl RedisFactory {
    /// The factory when the test Redis answers. When it does not, `None`
    /// (the caller skips, saying so), or a panic under `MTSESSION_REQUIRE_SERVICES=1`.
    pub fn reachable() -> Option<RedisFactory> {
        let url = std::env::var("MTSESSION_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        let factory = RedisFactory {
            url,
            next: AtomicUsize::new(0),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        match runtime.block_on(factory.connection()) {
            Ok(_) => Some(factory),
            Err(e) if services_required() => panic!("{e}"),
            Err(e) => {
                eprintln!("skipped: {e}");
                None
            }
        }
    }

    async fn connection(&self) -> Result<redis::aio::MultiplexedConnection> {
        let unreachable = |e: redis::RedisError| Error::Unavailable {
            backend: "redis",
            message: format!(
                "the test Redis at {} does not answer; start one or point MTSESSION_TEST_REDIS_URL at one",
                session_redis::redact_url(&self.url)
            ),
            source: Some(Box::new(e)),
        };
        let client = redis::Client::open(self.url.as_str()).map_err(unreachable)?;
        let mut con = client
            .get_multiplexed_async_connection()
            .await
            .map_err(unreachable)?;
        let _: String = redis::cmd("PING")
            .query_async(&mut con)
            .await
            .map_err(unreachable)?;
        Ok(con)
    }
}

#[async_trait]
impl StoreFactory for RedisFactory {
    async fn create_namespace(&self) -> Result<String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        Ok(format!(
            "mtsession-test:grammers-{}-{nanos:x}-{}",
            std::process::id(),
            self.next.fetch_add(1, Ordering::Relaxed)
        ))
    }

    async fn open(&self, namespace: &str) -> Result<Store> {
        let store = session_redis::RedisStore::builder(&self.url)
            .prefix(namespace)
            .open()
            .await?;
        Ok(Store::new(store))
    }

    async fn write_schema_version(&self, _namespace: &str, _version: i64) -> Result<()> {
        Err(Error::unsupported("test factory", "schema versions"))
    }

    async fn drop_namespace(&self, namespace: &str) -> Result<()> {
        let mut con = self.connection().await?;
        // Prefixes made here hold no glob characters; SCAN then DEL.
        let pattern = format!("{namespace}:*");
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut con)
                .await
                .map_err(|e| Error::backend("redis", e))?;
            if !keys.is_empty() {
                let _: i64 = redis::cmd("DEL")
                    .arg(keys)
                    .query_async(&mut con)
                    .await
                    .map_err(|e| Error::backend("redis", e))?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

/// A backend that forwards to another and counts the calls of each method,
/// to check how many round trips an adapter call makes.
#[derive(Debug)]
pub struct Counting<B> {
    inner: B,
    calls: Mutex<HashMap<&'static str, usize>>,
}

impl<B> Counting<B> {
    pub fn new(inner: B) -> Self {
        Counting {
            inner,
            calls: Mutex::new(HashMap::new()),
        }
    }

    fn count(&self, method: &'static str) {
        *self
            .calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(method)
            .or_default() += 1;
    }

    /// How often each method was called since the last `take`.
    pub fn take(&self) -> HashMap<&'static str, usize> {
        std::mem::take(&mut *self.calls.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// A counting memory store, shared between the test and its `Store`.
pub fn counting_memory() -> (Arc<Counting<MemoryStore>>, Store) {
    let backend = Arc::new(Counting::new(MemoryStore::new()));
    let store = Store::from_arc(backend.clone());
    (backend, store)
}

#[async_trait]
impl<B: SessionBackend> SessionBackend for Counting<B> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn list(&self) -> Result<Vec<String>> {
        self.count("list");
        self.inner.list().await
    }
    async fn exists(&self, session: &str) -> Result<bool> {
        self.count("exists");
        self.inner.exists(session).await
    }
    async fn delete(&self, session: &str) -> Result<bool> {
        self.count("delete");
        self.inner.delete(session).await
    }
    async fn export(&self, session: &str) -> Result<SessionData> {
        self.count("export");
        self.inner.export(session).await
    }
    async fn import(
        &self,
        session: &str,
        data: &SessionData,
        mode: ImportMode,
        now_ms: i64,
    ) -> Result<()> {
        self.count("import");
        self.inner.import(session, data, mode, now_ms).await
    }
    async fn header(&self, session: &str) -> Result<SessionHeader> {
        self.count("header");
        self.inner.header(session).await
    }
    async fn write_header(&self, session: &str, write: &HeaderWrite) -> Result<()> {
        self.count("write_header");
        self.inner.write_header(session, write).await
    }
    async fn dc_options(&self, session: &str) -> Result<Vec<DcOption>> {
        self.count("dc_options");
        self.inner.dc_options(session).await
    }
    async fn write_dc_option(&self, session: &str, dc: &DcOption, at: i64) -> Result<()> {
        self.count("write_dc_option");
        self.inner.write_dc_option(session, dc, at).await
    }
    async fn home(&self, session: &str) -> Result<(SessionHeader, Vec<DcOption>)> {
        self.count("home");
        self.inner.home(session).await
    }
    async fn update_state(&self, session: &str) -> Result<UpdateState> {
        self.count("update_state");
        self.inner.update_state(session).await
    }
    async fn write_update_state(&self, session: &str, write: &UpdateStateWrite) -> Result<()> {
        self.count("write_update_state");
        self.inner.write_update_state(session, write).await
    }
    async fn peers(&self, session: &str, ids: &[PeerId]) -> Result<Vec<Option<Peer>>> {
        self.count("peers");
        self.inner.peers(session, ids).await
    }
    async fn peer_by_username(&self, session: &str, key: &str) -> Result<Option<Peer>> {
        self.count("peer_by_username");
        self.inner.peer_by_username(session, key).await
    }
    async fn peer_by_phone(&self, session: &str, phone: &str) -> Result<Option<Peer>> {
        self.count("peer_by_phone");
        self.inner.peer_by_phone(session, phone).await
    }
    async fn peer_count(&self, session: &str) -> Result<u64> {
        self.count("peer_count");
        self.inner.peer_count(session).await
    }
    async fn cache_peers(&self, session: &str, batch: &PeerBatch) -> Result<()> {
        self.count("cache_peers");
        self.inner.cache_peers(session, batch).await
    }
    async fn sent_file(&self, session: &str, key: &SentFileKey) -> Result<Option<SentFile>> {
        self.count("sent_file");
        self.inner.sent_file(session, key).await
    }
    async fn cache_sent_file(
        &self,
        session: &str,
        key: &SentFileKey,
        file: &SentFile,
    ) -> Result<()> {
        self.count("cache_sent_file");
        self.inner.cache_sent_file(session, key, file).await
    }
    async fn acquire_lease(&self, session: &str, request: &LeaseRequest) -> Result<LeaseInfo> {
        self.count("acquire_lease");
        self.inner.acquire_lease(session, request).await
    }
    async fn release_lease(&self, session: &str, owner: &str, now_ms: i64) -> Result<bool> {
        self.count("release_lease");
        self.inner.release_lease(session, owner, now_ms).await
    }
}
