//! Factories and checks shared by the three engine test targets.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use session_conformance::StoreFactory;
use session_core::{Error, ErrorKind, Peer, PeerId, Result, SessionStore, UpdateStateChange};
use session_sql::{Engine, SqlStore};

/// The server URL a test target uses, from its environment variable.
pub fn server_url(engine: Engine) -> String {
    let (var, default) = match engine {
        Engine::Postgres => (
            "MTSESSION_TEST_POSTGRES_URL",
            "postgres://postgres@127.0.0.1:5432/test",
        ),
        Engine::MySql => (
            "MTSESSION_TEST_MYSQL_URL",
            "mysql://root@127.0.0.1:3306/test",
        ),
        _ => return String::new(),
    };
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A table prefix no other test (or test process) uses.
pub fn unique_prefix(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{tag}{:x}_{:x}_{:x}_",
        std::process::id() & 0xff_ffff,
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Namespaces are table prefixes on a server, or a temporary directory
/// holding one database file for SQLite.
pub struct SqlFactory {
    pub engine: Engine,
}

impl SqlFactory {
    pub fn new(engine: Engine) -> Self {
        SqlFactory { engine }
    }

    /// The store URL and the prefix of a namespace.
    pub fn location(&self, namespace: &str) -> (String, String) {
        match self.engine {
            Engine::Sqlite => (
                format!("sqlite:{namespace}/sessions.db"),
                session_sql::DEFAULT_TABLE_PREFIX.to_owned(),
            ),
            _ => (server_url(self.engine), namespace.to_owned()),
        }
    }

    pub async fn open_store(&self, namespace: &str) -> Result<SqlStore> {
        let (url, prefix) = self.location(namespace);
        SqlStore::builder(&url)?
            .table_prefix(&prefix)?
            .max_connections(4)
            .connect_timeout(Duration::from_secs(10))
            .open()
            .await
    }

    /// A raw connection to the namespace's database, outside any store.
    pub async fn raw(&self, namespace: &str) -> DatabaseConnection {
        let (url, _) = self.location(namespace);
        Database::connect(url.as_str()).await.unwrap_or_else(|e| {
            panic!(
                "cannot reach the {} test database at {url}: {e}",
                self.engine
            )
        })
    }

    pub fn quoted(&self, namespace: &str, suffix: &str) -> String {
        let (_, prefix) = self.location(namespace);
        match self.engine {
            Engine::MySql => format!("`{prefix}{suffix}`"),
            _ => format!("\"{prefix}{suffix}\""),
        }
    }

    /// Names of the tables of the namespace that exist.
    pub async fn tables(&self, namespace: &str) -> Vec<String> {
        let (_, prefix) = self.location(namespace);
        let db = self.raw(namespace).await;
        let sql = match self.engine {
            Engine::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table'".to_owned(),
            Engine::Postgres => "SELECT table_name::text FROM information_schema.tables \
                                 WHERE table_schema = current_schema()"
                .to_owned(),
            _ => "SELECT CAST(table_name AS CHAR) FROM information_schema.tables \
                  WHERE table_schema = DATABASE()"
                .to_owned(),
        };
        let rows = db
            .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
            .await
            .expect("list tables");
        let mut names: Vec<String> = rows
            .iter()
            .map(|r| r.try_get_by_index::<String>(0).expect("table name"))
            .filter(|n| n.starts_with(&prefix))
            .collect();
        names.sort();
        let _ = db.close().await;
        names
    }
}

#[async_trait::async_trait]
impl StoreFactory for SqlFactory {
    async fn create_namespace(&self) -> Result<String> {
        match self.engine {
            Engine::Sqlite => {
                let dir = tempfile::Builder::new()
                    .prefix("mtsession-sql-")
                    .tempdir()
                    .map_err(|e| Error::backend("sqlite", e))?;
                Ok(dir.keep().to_string_lossy().into_owned())
            }
            _ => Ok(unique_prefix("ct")),
        }
    }

    async fn open(&self, namespace: &str) -> Result<Arc<dyn SessionStore>> {
        Ok(Arc::new(self.open_store(namespace).await?))
    }

    async fn write_schema_version(&self, namespace: &str, version: i64) -> Result<()> {
        let db = self.raw(namespace).await;
        let sql = format!(
            "UPDATE {} SET version = {version} WHERE id = 1",
            self.quoted(namespace, "schema")
        );
        let done = db
            .execute_unprepared(&sql)
            .await
            .map_err(|e| Error::backend("test", e))?;
        let _ = db.close().await;
        if done.rows_affected() != 1 {
            return Err(Error::invalid(format!(
                "no schema row in namespace {namespace}"
            )));
        }
        Ok(())
    }

    async fn drop_namespace(&self, namespace: &str) -> Result<()> {
        match self.engine {
            Engine::Sqlite => {
                std::fs::remove_dir_all(namespace).map_err(|e| Error::backend("sqlite", e))
            }
            _ => {
                let (url, prefix) = self.location(namespace);
                SqlStore::builder(&url)?
                    .table_prefix(&prefix)?
                    .drop_tables()
                    .await
            }
        }
    }
}

/// Runs `check` on a fresh namespace and removes the namespace afterwards,
/// even when the check panics.
pub async fn with_namespace<F, Fut>(factory: &SqlFactory, check: F)
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let namespace = factory.create_namespace().await.expect("create namespace");
    let outcome = tokio::spawn(check(namespace.clone())).await;
    factory
        .drop_namespace(&namespace)
        .await
        .expect("drop namespace");
    if factory.engine != Engine::Sqlite {
        assert!(
            factory.tables(&namespace).await.is_empty(),
            "tables of {namespace} remain"
        );
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic.into_panic());
    }
}

// ---- checks beyond the conformance suite ------------------------------

/// A version newer than the build knows is refused, and nothing is changed.
pub async fn refuses_newer_schema(engine: Engine) {
    let factory = Arc::new(SqlFactory::new(engine));
    let f = Arc::clone(&factory);
    with_namespace(&factory, move |ns| async move {
        let store = f.open_store(&ns).await.expect("open");
        store.create("kept").await.expect("create");
        drop(store);
        f.write_schema_version(&ns, session_sql::SCHEMA_VERSION + 7)
            .await
            .expect("write");
        let err = f
            .open_store(&ns)
            .await
            .expect_err("newer version must be refused");
        match &err {
            Error::UnsupportedSchemaVersion {
                found,
                supported,
                what,
            } => {
                assert_eq!(*found, session_sql::SCHEMA_VERSION + 7);
                assert_eq!(*supported, session_sql::SCHEMA_VERSION);
                assert!(what.contains(engine.name()), "{what}");
            }
            other => panic!("expected UnsupportedSchemaVersion, got {other:?}"),
        }
        assert!(err.to_string().contains("upgrade"), "{err}");
        // Nothing was rewritten: the version stays, and the data too.
        let err = f.open_store(&ns).await.expect_err("still refused");
        assert_eq!(err.kind(), ErrorKind::UnsupportedSchemaVersion);
        f.write_schema_version(&ns, session_sql::SCHEMA_VERSION)
            .await
            .expect("write back");
        let store = f.open_store(&ns).await.expect("open again");
        assert!(store.exists("kept").await.expect("exists"));
    })
    .await;
}

/// A migration this build does not know (written by a newer build) is refused.
pub async fn refuses_unknown_migration(engine: Engine) {
    let factory = Arc::new(SqlFactory::new(engine));
    let f = Arc::clone(&factory);
    with_namespace(&factory, move |ns| async move {
        drop(f.open_store(&ns).await.expect("open"));
        let db = f.raw(&ns).await;
        let sql = format!(
            "INSERT INTO {} (version, applied_at) VALUES ('m9999_from_the_future', 0)",
            f.quoted(&ns, "migrations")
        );
        db.execute_unprepared(&sql)
            .await
            .expect("insert migration row");
        let _ = db.close().await;
        let err = f
            .open_store(&ns)
            .await
            .expect_err("unknown migration must be refused");
        assert_eq!(err.kind(), ErrorKind::UnsupportedSchemaVersion, "{err}");
    })
    .await;
}

/// Several stores opening one fresh namespace at once all succeed.
pub async fn concurrent_first_opens(engine: Engine) {
    let factory = Arc::new(SqlFactory::new(engine));
    let f = Arc::clone(&factory);
    with_namespace(&factory, move |ns| async move {
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let f = SqlFactory::new(f.engine);
            let ns = ns.clone();
            tasks.push(tokio::spawn(
                async move { f.open_store(&ns).await.map(|_| ()) },
            ));
        }
        for task in tasks {
            task.await.expect("task").expect("concurrent open");
        }
        let tables = f.tables(&ns).await;
        if engine != Engine::Sqlite {
            assert_eq!(tables.len(), 9, "{tables:?}");
        }
    })
    .await;
}

/// Names differing only by trailing spaces or case are distinct sessions,
/// and `list` sorts by bytes.
pub async fn names_compare_exactly(engine: Engine) {
    let factory = Arc::new(SqlFactory::new(engine));
    let f = Arc::clone(&factory);
    with_namespace(&factory, move |ns| async move {
        let store = f.open_store(&ns).await.expect("open");
        let names = ["a", "a ", "A", "ä", "a\u{301}", "b"];
        for name in names {
            store.create(name).await.expect("create");
        }
        store
            .set_update_state("a ", &UpdateStateChange::Secondary { qts: 5 })
            .await
            .expect("write");
        assert_eq!(store.update_state("a").await.expect("read").qts, 0);
        assert_eq!(store.update_state("a ").await.expect("read").qts, 5);
        let mut expected: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        expected.sort();
        assert_eq!(store.list().await.expect("list"), expected);
    })
    .await;
}

/// A peer cache written in batches holds every peer, and deleting the
/// session removes its rows from every table (cascades work).
pub async fn delete_cascades(engine: Engine) {
    let factory = Arc::new(SqlFactory::new(engine));
    let f = Arc::clone(&factory);
    with_namespace(&factory, move |ns| async move {
        let store = f.open_store(&ns).await.expect("open");
        store.create("s").await.expect("create");
        let peers: Vec<Peer> = (1..=300)
            .map(|i| {
                Peer::new(PeerId::user(i).expect("id"))
                    .with_hash(i * 7)
                    .with_username(format!("User{i}"))
                    .with_phone(format!("{}", 10_000 + i))
            })
            .collect();
        store.cache_peers("s", &peers).await.expect("cache");
        store.analyze().await.expect("analyze");
        let found = store.peer_by_phone("s", "10150").await.expect("lookup");
        assert_eq!(found.map(|p| p.id), Some(PeerId::user(150).expect("id")));
        store
            .set_update_state("s", &UpdateStateChange::Channel { id: 5, pts: 9 })
            .await
            .expect("channel");
        assert!(store.delete("s").await.expect("delete"));
        let db = f.raw(&ns).await;
        for table in [
            "peers",
            "peer_usernames",
            "dc_options",
            "channel_pts",
            "sent_files",
        ] {
            let sql = format!("SELECT COUNT(*) FROM {}", f.quoted(&ns, table));
            let row = db
                .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
                .await
                .expect("count")
                .expect("row");
            assert_eq!(
                row.try_get_by_index::<i64>(0).expect("n"),
                0,
                "{table} keeps rows"
            );
        }
        let _ = db.close().await;
        store.create("s").await.expect("create again");
        assert_eq!(store.peer_count("s").await.expect("count"), 0);
    })
    .await;
}

/// A URL whose port nobody listens on fails with `Unavailable`, quickly,
/// and never shows its password.
pub async fn unreachable_is_unavailable(url: &str, password: &str) {
    let started = Instant::now();
    let err = SqlStore::connect(url)
        .await
        .expect_err("nothing listens there");
    let elapsed = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err:?}");
    assert!(elapsed < Duration::from_secs(8), "took {elapsed:?}");
    assert_no_secret(&err, password);
}

/// Neither the error's message, its debug form nor its sources contain `secret`.
pub fn assert_no_secret(err: &Error, secret: &str) {
    let mut text = format!("{err} {err:?}");
    let mut source = std::error::Error::source(err);
    while let Some(next) = source {
        text.push_str(&format!(" {next} {next:?}"));
        source = next.source();
    }
    assert!(!text.contains(secret), "the password shows in: {text}");
}

/// Names and usernames with NUL and other control characters, and the
/// extreme i64 values, round-trip on every engine.
pub async fn odd_text_round_trips(engine: Engine) {
    let factory = Arc::new(SqlFactory::new(engine));
    let f = Arc::clone(&factory);
    with_namespace(&factory, move |ns| async move {
        let store = f.open_store(&ns).await.expect("open");
        store.create("s").await.expect("create");
        let mut peer = Peer::new(PeerId::user(i64::MAX).expect("id"))
            .with_hash(i64::MIN)
            .with_name("nul \0 inside, tab \t, emoji \u{1F600}");
        peer.usernames = Some(vec!["Nul\0Name".to_owned(), "Ωmega".to_owned()]);
        peer.last_seen = Some(i64::MIN);
        store
            .cache_peers("s", std::slice::from_ref(&peer))
            .await
            .expect("cache");
        let found = store.peers("s", &[peer.id]).await.expect("read");
        assert_eq!(found, vec![Some(peer.clone())]);
        let by_name = store
            .peer_by_username("s", "nul\0name")
            .await
            .expect("lookup");
        assert_eq!(by_name, Some(peer.clone()));
        let by_name = store.peer_by_username("s", "@ΩMEGA").await.expect("lookup");
        assert_eq!(by_name, Some(peer));
    })
    .await;
}
