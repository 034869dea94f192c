//! Factories and checks shared by the engine test targets.

#![allow(dead_code, unreachable_pub)]

/// Child processes for the fault suite: the conformance crate's helpers.
pub mod child {
    #[allow(unused_imports)]
    pub use session_conformance::process::*;
}

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use session_conformance::StoreFactory;
use session_core::{Error, ErrorKind, OpenMode, Peer, PeerId, Result, Store, UpdateStateChange};
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
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// The URL with one more option.
pub fn with_option(url: &str, option: &str) -> String {
    if url.contains('?') {
        format!("{url}&{option}")
    } else {
        format!("{url}?{option}")
    }
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
                format!("sql+sqlite:{namespace}/sessions.db"),
                session_sql::DEFAULT_TABLE_PREFIX.to_owned(),
            ),
            _ => (server_url(self.engine), namespace.to_owned()),
        }
    }

    /// The SQLite file of a namespace.
    pub fn file(&self, namespace: &str) -> PathBuf {
        PathBuf::from(format!("{namespace}/sessions.db"))
    }

    pub fn builder(&self, namespace: &str) -> session_sql::SqlStoreBuilder {
        let (url, prefix) = self.location(namespace);
        SqlStore::builder(&url)
            .table_prefix(prefix)
            .max_connections(4)
            .connect_timeout(Duration::from_secs(10))
    }

    pub async fn open_store(&self, namespace: &str) -> Result<SqlStore> {
        self.builder(namespace).open().await
    }

    pub async fn open_with(&self, namespace: &str, mode: OpenMode) -> Result<Store> {
        Ok(Store::new(self.builder(namespace).mode(mode).open().await?))
    }

    /// A raw connection to the namespace's database, outside any store.
    pub async fn raw(&self, namespace: &str) -> DatabaseConnection {
        let url = match self.engine {
            Engine::Sqlite => format!("sqlite:{}", self.file(namespace).display()),
            _ => server_url(self.engine),
        };
        Database::connect(url.as_str()).await.unwrap_or_else(|e| {
            panic!(
                "cannot reach the {} test database at {}: {e}",
                self.engine,
                session_sql::redact_url(&url)
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

    /// Runs one statement on the namespace's database.
    pub async fn execute(&self, namespace: &str, sql: &str) -> u64 {
        let db = self.raw(namespace).await;
        let done = db
            .execute_unprepared(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let _ = db.close().await;
        done.rows_affected()
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

    async fn open(&self, namespace: &str) -> Result<Store> {
        Ok(Store::new(self.open_store(namespace).await?))
    }

    async fn write_schema_version(&self, namespace: &str, version: i64) -> Result<()> {
        // A namespace never opened has no tables yet: make it a store first.
        if self.tables(namespace).await.is_empty() {
            drop(self.open_store(namespace).await?);
        }
        let sql = format!(
            "UPDATE {} SET version = {version} WHERE id = 1",
            self.quoted(namespace, "schema")
        );
        if self.execute(namespace, &sql).await != 1 {
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
                SqlStore::builder(&url)
                    .table_prefix(prefix)
                    .drop_tables()
                    .await
            }
        }
    }
}

/// Runs `check` on a fresh namespace and removes the namespace afterwards,
/// even when the check panics.
pub async fn with_namespace<F, Fut>(engine: Engine, check: F)
where
    F: FnOnce(Arc<SqlFactory>, String) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let factory = Arc::new(SqlFactory::new(engine));
    let namespace = factory.create_namespace().await.expect("create namespace");
    let outcome = tokio::spawn(check(Arc::clone(&factory), namespace.clone())).await;
    factory
        .drop_namespace(&namespace)
        .await
        .expect("drop namespace");
    if engine != Engine::Sqlite {
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
    with_namespace(engine, |f, ns| async move {
        let store = Store::new(f.open_store(&ns).await.expect("open"));
        store.create("kept").await.expect("create");
        drop(store);
        f.write_schema_version(&ns, session_sql::SCHEMA_VERSION + 7)
            .await
            .expect("write");
        for mode in [OpenMode::Create, OpenMode::ReadWrite, OpenMode::ReadOnly] {
            let err = f
                .open_with(&ns, mode)
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
                other => panic!("{mode:?}: expected UnsupportedSchemaVersion, got {other:?}"),
            }
            assert!(err.to_string().contains("upgrade"), "{err}");
        }
        // Nothing was rewritten: the version stays, and the data too.
        let sql = format!("SELECT version FROM {}", f.quoted(&ns, "schema"));
        let db = f.raw(&ns).await;
        let row = db
            .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
            .await
            .expect("read")
            .expect("row");
        assert_eq!(
            row.try_get_by_index::<i64>(0).expect("version"),
            session_sql::SCHEMA_VERSION + 7
        );
        let _ = db.close().await;
        let sql = format!(
            "UPDATE {} SET version = {}",
            f.quoted(&ns, "schema"),
            session_sql::SCHEMA_VERSION
        );
        f.execute(&ns, &sql).await;
        let store = Store::new(f.open_store(&ns).await.expect("open again"));
        assert!(store.exists("kept").await.expect("exists"));
    })
    .await;
}

/// A migration this build does not know (written by a newer build) is refused.
pub async fn refuses_unknown_migration(engine: Engine) {
    with_namespace(engine, |f, ns| async move {
        drop(f.open_store(&ns).await.expect("open"));
        let sql = format!(
            "INSERT INTO {} (version, applied_at) VALUES ('m9999_from_the_future', 0)",
            f.quoted(&ns, "migrations")
        );
        f.execute(&ns, &sql).await;
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
    with_namespace(engine, |f, ns| async move {
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let f = Arc::clone(&f);
            let ns = ns.clone();
            tasks.push(tokio::spawn(
                async move { f.open_store(&ns).await.map(|_| ()) },
            ));
        }
        for task in tasks {
            task.await.expect("task").expect("concurrent open");
        }
        assert_eq!(f.tables(&ns).await.len(), 9);
    })
    .await;
}

/// Names differing only by trailing spaces or case are distinct sessions,
/// and `list` sorts by bytes.
pub async fn names_compare_exactly(engine: Engine) {
    with_namespace(engine, |f, ns| async move {
        let store = Store::new(f.open_store(&ns).await.expect("open"));
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
    with_namespace(engine, |f, ns| async move {
        let sql = f.open_store(&ns).await.expect("open");
        let store = Store::new(sql.clone());
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
        sql.analyze().await.expect("analyze");
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

/// Issue 8, defect 12: a URL whose port nobody listens on failed after the
/// 10 s pool timeout with "pool timed out while waiting for an open
/// connection", naming neither host nor cause. Now it fails at once with
/// `Unavailable`, saying that the connection was refused and where (host
/// and port), never showing the password.
pub async fn refused_port_fails_fast(url: &str, password: &str) {
    let started = Instant::now();
    let err = SqlStore::open(url)
        .await
        .expect_err("nothing listens there");
    let elapsed = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err:?}");
    let text = err.to_string();
    assert!(text.contains("connection refused"), "{text}");
    assert!(text.contains("127.0.0.1:1/"), "names host and port: {text}");
    // The default connect and acquire timeouts are 10 s; a refusal is
    // reported long before.
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    assert_no_secret(&err, password);
}

/// A call blocked on another client's row lock for longer than the
/// response timeout is abandoned in time: a peer batch (a transaction that
/// never sent its `COMMIT`) with `Unavailable`, applying nothing; a header
/// write (one statement, sent) with `OutcomeUnknown` — the server may still
/// run it once the lock is gone. The connections the two calls held are
/// closed, and the store keeps working.
pub async fn blocked_calls_are_abandoned_after_the_response_timeout(engine: Engine) {
    with_namespace(engine, |factory, ns| async move {
        let timeout = Duration::from_millis(500);
        let store = Store::new(
            factory
                .builder(&ns)
                .response_timeout(timeout)
                .open()
                .await
                .expect("open"),
        );
        let s = store.open("s").await.expect("create");
        s.set_home_dc(1).await.expect("home");
        let admin = factory.raw(&ns).await;
        let txn = sea_orm::TransactionTrait::begin(&admin)
            .await
            .expect("begin");
        txn.execute_unprepared(&format!(
            "SELECT 1 FROM {} WHERE session = 's' FOR UPDATE",
            factory.quoted(&ns, "sessions")
        ))
        .await
        .expect("lock the session row");

        let user = |id| PeerId::user(id).expect("id");
        let started = Instant::now();
        let err = s
            .cache_peers(&[Peer::new(user(5)).with_hash(5)])
            .await
            .expect_err("blocked by the lock");
        let took = started.elapsed();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        let text = err.to_string();
        assert!(text.contains("response timeout of 500 ms"), "{text}");
        assert!(text.contains("nothing was applied"), "{text}");
        assert!(
            took >= timeout && took < timeout + Duration::from_secs(2),
            "took {took:?}"
        );
        let started = Instant::now();
        let err = s.set_home_dc(2).await.expect_err("blocked by the lock");
        let took = started.elapsed();
        assert_eq!(err.kind(), ErrorKind::OutcomeUnknown, "{err}");
        assert!(err.to_string().contains("may or may not"), "{err}");
        assert!(took < timeout + Duration::from_secs(2), "took {took:?}");
        // Reads do not wait for the row lock.
        assert_eq!(s.peer_count().await.expect("count"), 0);

        txn.rollback().await.expect("release the lock");
        let _ = admin.close().await;
        let home = s.home_dc().await.expect("home");
        assert!(home == 1 || home == 2, "home DC {home}");
        assert_eq!(
            s.peer_count().await.expect("count"),
            0,
            "the abandoned peer batch was applied"
        );
        s.cache_peers(&[Peer::new(user(6)).with_hash(6)])
            .await
            .expect("a peer batch after the timeouts");
        s.set_home_dc(3)
            .await
            .expect("a header write after the timeouts");
        assert_eq!(s.peer_count().await.expect("count"), 1);
        assert_eq!(s.home_dc().await.expect("home"), 3);
    })
    .await;
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
    with_namespace(engine, |f, ns| async move {
        let store = Store::new(f.open_store(&ns).await.expect("open"));
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

/// Issue 8, defect 17: an option neither mtsession nor the driver knows
/// (the typo `table_prefx`) was ignored and the default tables written.
/// Now it is refused with the list of valid options, before anything is
/// opened.
pub async fn unknown_options_are_refused(url: &str) {
    let typo = with_option(url, "table_prefx=typo_");
    let err = SqlStore::open(&typo).await.expect_err("a typo");
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let text = err.to_string();
    assert!(text.contains("\"table_prefx\""), "{text}");
    assert!(
        text.contains("table_prefix"),
        "lists the valid ones: {text}"
    );
    // Through the driver, as the facade and the command open URLs.
    let parsed = session_core::StoreUrl::parse(&typo).expect("a URL");
    let err = session_core::Driver::open(&session_sql::SqlDriver, &parsed, OpenMode::Create)
        .await
        .expect_err("a typo");
    assert!(err.to_string().contains("\"table_prefx\""), "{err}");
}

/// Read-only and read-write opens of a namespace without a store are
/// `NotFound` and create nothing; a read-only store reads everything and
/// refuses every write with `Unsupported`.
pub async fn open_modes(engine: Engine) {
    with_namespace(engine, |f, ns| async move {
        for mode in [OpenMode::ReadOnly, OpenMode::ReadWrite] {
            let err = f.open_with(&ns, mode).await.expect_err("no store");
            assert_eq!(err.kind(), ErrorKind::NotFound, "{mode:?}: {err}");
            if engine != Engine::Sqlite {
                assert!(f.tables(&ns).await.is_empty(), "{mode:?} created tables");
            }
        }
        let writer = f.open_with(&ns, OpenMode::Create).await.expect("create");
        let session = writer.open("alice").await.expect("session");
        session
            .set_auth_key(2, Some(session_core::AuthKey::new([5; 256])))
            .await
            .expect("key");
        session
            .cache_peers(&[Peer::new(PeerId::user(7).expect("id"))
                .with_hash(70)
                .with_username("Seven")
                .with_phone("777")])
            .await
            .expect("peers");
        let data = writer.export("alice").await.expect("export");
        let reader = f
            .open_with(&ns, OpenMode::ReadOnly)
            .await
            .expect("read-only");
        assert_eq!(reader.list().await.expect("list"), ["alice"]);
        assert_eq!(reader.export("alice").await.expect("export"), data);
        let read = reader.session("alice").expect("handle");
        assert_eq!(
            read.home_auth_key().await.expect("key"),
            Some(session_core::AuthKey::new([5; 256]))
        );
        assert_eq!(
            read.peer_by_phone("777")
                .await
                .expect("phone")
                .map(|p| p.id),
            Some(PeerId::user(7).expect("id"))
        );
        let refused = [
            reader.create("bob").await,
            reader.delete("alice").await.map(drop),
            reader.set_home_dc("alice", 3).await,
            read.cache_peer(&Peer::new(PeerId::user(8).expect("id")))
                .await,
            read.set_update_state(UpdateStateChange::Secondary { qts: 1 })
                .await,
            reader.copy("alice", "carol", false).await,
            reader
                .acquire_lease("alice", "me", Duration::from_secs(5))
                .await
                .map(drop),
        ];
        for (n, result) in refused.into_iter().enumerate() {
            let err = result.expect_err("a write on a read-only store");
            assert_eq!(err.kind(), ErrorKind::Unsupported, "write {n}: {err}");
            assert!(err.to_string().contains("read-only"), "write {n}: {err}");
        }
        let rw = f
            .open_with(&ns, OpenMode::ReadWrite)
            .await
            .expect("existing");
        rw.create("bob").await.expect("writes work");
        assert_eq!(reader.list().await.expect("list"), ["alice", "bob"]);
    })
    .await;
}

/// The query plan of a statement, one line per step: `EXPLAIN QUERY PLAN`
/// on SQLite (the detail column), `EXPLAIN` on PostgreSQL (text format)
/// and MySQL (`table type key key_len ref` per row).
pub async fn plan(store: &SqlStore, statement: &Statement) -> Vec<String> {
    let db = store.connection();
    let backend = db.get_database_backend();
    let values = statement.values.clone().map(|v| v.0).unwrap_or_default();
    let (prefix, setup) = match store.engine() {
        Engine::Sqlite => ("EXPLAIN QUERY PLAN ", None),
        // A plan that seeks an index even on small tables; a scan then
        // means no index can serve the statement.
        Engine::Postgres => ("EXPLAIN ", Some("SET LOCAL enable_seqscan = off")),
        _ => ("EXPLAIN ", None),
    };
    let txn = sea_orm::TransactionTrait::begin(db).await.expect("begin");
    if let Some(setup) = setup {
        txn.execute_unprepared(setup).await.expect("setup");
    }
    let explain =
        Statement::from_sql_and_values(backend, format!("{prefix}{}", statement.sql), values);
    let rows = txn.query_all_raw(explain).await.expect("explain");
    let _ = txn.rollback().await;
    rows.iter()
        .map(|row| match store.engine() {
            Engine::Sqlite => row.try_get_by_index::<String>(3).expect("detail"),
            Engine::Postgres => row.try_get_by_index::<String>(0).expect("plan line"),
            _ => {
                let text = |name: &str| {
                    row.try_get::<Option<String>>("", name)
                        .ok()
                        .flatten()
                        .unwrap_or_default()
                };
                format!(
                    "{} {} {} {} {}",
                    text("table"),
                    text("type"),
                    text("key"),
                    text("key_len"),
                    text("ref")
                )
            }
        })
        .collect()
}

/// Issue 10: the lookups by id, username and phone, of a few and of
/// 10 000 ids, and the context of a peer batch of 2 and of 10 000 peers
/// seek their indexes, the join to the usernames included (the old
/// `peer_by_phone` ordered by `p.id, u.pos`, which made SQLite scan every
/// peer of the session; MariaDB joined the usernames by the session prefix
/// of their primary key, and a lookup of 10 000 ids took 30 s and more).
/// The plans of the statements the store really sends are read on a store
/// holding two sessions of 3 000 peers each, before and after `ANALYZE`.
/// On MySQL, "before" is deterministic: the statistics are those of the
/// empty tables (automatic recalculation is turned off for the test), as
/// when a session has just been filled.
pub async fn lookups_use_their_indexes(engine: Engine) {
    with_namespace(engine, |f, ns| async move {
        let sql = f.open_store(&ns).await.expect("open");
        let store = Store::new(sql.clone());
        let (_, prefix) = f.location(&ns);
        let before = if engine == Engine::MySql {
            for table in ["peers", "peer_usernames"] {
                sql.connection()
                    .execute_unprepared(&format!(
                        "ALTER TABLE `{prefix}{table}` STATS_AUTO_RECALC = 0"
                    ))
                    .await
                    .expect("no automatic statistics");
            }
            sql.analyze().await.expect("statistics of the empty tables");
            "with the statistics of the empty tables"
        } else {
            // SQLite keeps no statistics unless asked.
            "without statistics"
        };
        for session in ["s", "other"] {
            store.create(session).await.expect("create");
            let peers: Vec<Peer> = (1..=3000)
                .map(|i| {
                    Peer::new(PeerId::user(i).expect("id"))
                        .with_hash(i)
                        .with_username(format!("user{i}"))
                        .with_phone(format!("7999{i:04}"))
                })
                .collect();
            for batch in peers.chunks(500) {
                store.cache_peers(session, batch).await.expect("load");
            }
        }
        check_plans(engine, &sql, &prefix, before).await;
        sql.analyze().await.expect("analyze");
        check_plans(engine, &sql, &prefix, "after ANALYZE").await;
    })
    .await;
}

/// Reads the plan of every lookup statement and fails when one scans a
/// table, seeks a whole session or sorts its result.
async fn check_plans(engine: Engine, sql: &SqlStore, prefix: &str, stage: &str) {
    let peers = format!("{prefix}peers");
    let names = format!("{prefix}peer_usernames");
    for (name, statement) in sql.lookup_statements("s").expect("statements") {
        let steps = plan(sql, &statement).await;
        let shown = steps.join("\n");
        let name = format!("{name} ({stage})");
        let whole_session_allowed = name.starts_with("peer count");

        match engine {
            Engine::Sqlite => {
                for step in &steps {
                    // Only the lists of keys looked up (`ids`, `usernames`,
                    // `phones`, their `VALUES` rows) and the union of the
                    // batch context (`t`) may be scanned; every table step
                    // is a seek.
                    let scanned = step.strip_prefix("SCAN ");
                    let list = scanned.is_some_and(|what| {
                        matches!(what, "t" | "ids" | "usernames" | "phones")
                            || what.ends_with(" CONSTANT ROWS")
                    });
                    let scans = scanned.is_some() && !list;
                    assert!(!scans, "{name} scans a table:\n{shown}");
                    // A sort of the results (the old `ORDER BY p.id,
                    // u.pos`) is refused; the union of the batch
                    // context removes duplicate ids with a small one.
                    assert!(
                        !step.contains("TEMP B-TREE") || step.starts_with("UNION"),
                        "{name} sorts:\n{shown}"
                    );
                    let on_session_only = step.contains("(session=?)");
                    let sessions_table =
                        step.contains("sqlite_autoindex_") && step.contains("_sessions_");
                    assert!(
                        !on_session_only || whole_session_allowed || sessions_table,
                        "{name} seeks a whole session:\n{shown}"
                    );
                }
                assert!(
                    steps.iter().any(|s| s.contains("peers_phone"))
                        || !name.starts_with("by phone"),
                    "{name} uses the phone index:\n{shown}"
                );
            }
            Engine::Postgres => {
                // The table of the step a line belongs to, or the index of a
                // bitmap index scan (`{prefix}peers_pkey`, …): both start
                // with the table's name.
                let mut table = String::new();
                let is_ours = |table: &str| table.starts_with(&peers) || table.starts_with(&names);
                for line in &steps {
                    if let Some(at) = line.find(" on ") {
                        table = line[at + 4..]
                            .split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_owned();
                        let ours = is_ours(&table);
                        assert!(
                            !(ours && line.contains("Seq Scan")),
                            "{name} scans {table}:\n{shown}"
                        );
                    }
                    let ours = is_ours(&table);
                    if ours && line.contains("Index Cond:") && !whole_session_allowed {
                        assert!(
                            line.contains(" AND "),
                            "{name} seeks a whole session of {table}:\n{shown}"
                        );
                    }
                }
                assert!(
                    steps.iter().any(|s| s.contains("peers_phone"))
                        || !name.starts_with("by phone"),
                    "{name} uses the phone index:\n{shown}"
                );
            }
            _ => {
                for step in &steps {
                    let mut words = step.split(' ');
                    let (table, kind, _key, key_len) = (
                        words.next().unwrap_or_default(),
                        words.next().unwrap_or_default(),
                        words.next().unwrap_or_default(),
                        words.next().unwrap_or_default(),
                    );
                    let peer_table =
                        matches!(table, "p" | "u" | "k") || table == peers || table == names;
                    assert!(
                        !((peer_table || table == "s") && matches!(kind, "ALL" | "index")),
                        "{name} scans {table}:\n{shown}"
                    );
                    // Every key of the peer tables starts with `session`
                    // (VARCHAR(255) in utf8mb4: 4 × 255 + 2 = 1 022 bytes);
                    // a seek that uses no more of its key reads a whole
                    // session.
                    let used: u32 = key_len.parse().unwrap_or(0);
                    assert!(
                        !peer_table || whole_session_allowed || used > 1022,
                        "{name} seeks a whole session of {table}:\n{shown}"
                    );
                }
                assert!(
                    steps.iter().any(|s| s.contains("peers_phone"))
                        || !name.starts_with("by phone"),
                    "{name} uses the phone index:\n{shown}"
                );
            }
        }
        println!("{name}:\n{shown}\n");
    }
}
