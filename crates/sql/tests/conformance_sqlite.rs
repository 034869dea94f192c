//! session-sql on SQLite files: the conformance suite and engine checks.

mod common;

use common::SqlFactory;
use session_core::{ErrorKind, SessionStore};
use session_sql::{Engine, SqlStore};

session_conformance::conformance_tests! {
    factory: SqlFactory::new(Engine::Sqlite),
    durable: true,
    shared_between_processes: true,
    leases: true,
    atomic_multi_key_writes: true,
}

#[tokio::test]
async fn sqlite_refuses_newer_schema() {
    common::refuses_newer_schema(Engine::Sqlite).await;
}

#[tokio::test]
async fn sqlite_refuses_unknown_migration() {
    common::refuses_unknown_migration(Engine::Sqlite).await;
}

#[tokio::test]
async fn sqlite_concurrent_first_opens() {
    common::concurrent_first_opens(Engine::Sqlite).await;
}

#[tokio::test]
async fn sqlite_names_compare_exactly() {
    common::names_compare_exactly(Engine::Sqlite).await;
}

#[tokio::test]
async fn sqlite_delete_cascades() {
    common::delete_cascades(Engine::Sqlite).await;
}

#[tokio::test]
async fn sqlite_memory_database_works() {
    let store = SqlStore::connect("sqlite::memory:").await.expect("open");
    store.create("m").await.expect("create");
    assert_eq!(store.list().await.expect("list"), ["m"]);
    assert_eq!(store.backend_name(), "sqlite");
    let caps = store.capabilities();
    assert!(!caps.durable && !caps.shared_between_processes, "{caps:?}");
    assert!(caps.leases && caps.atomic_multi_key_writes, "{caps:?}");
}

#[tokio::test]
async fn sqlite_table_prefix_from_url() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!(
        "sqlite:{}/p.db?table_prefix=abc_&max_connections=2",
        dir.path().display()
    );
    let store = SqlStore::connect(&url).await.expect("open");
    assert_eq!(store.table_prefix(), "abc_");
    store.create("x").await.expect("create");
    drop(store);
    let factory = SqlFactory::new(Engine::Sqlite);
    let ns = dir.path().display().to_string();
    // The factory looks at sessions.db; check p.db by hand.
    let db = sea_orm::Database::connect(format!("sqlite:{ns}/p.db").as_str())
        .await
        .expect("raw");
    use sea_orm::ConnectionTrait;
    let rows = db
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Sqlite,
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'abc\\_%' ESCAPE '\\'",
        ))
        .await
        .expect("tables");
    assert_eq!(rows.len(), 9);
    let _ = factory;
}

#[tokio::test]
async fn sqlite_bad_file_is_a_clear_error() {
    let err = SqlStore::connect("sqlite:/nonexistent-dir/x/y.db")
        .await
        .expect_err("no dir");
    assert!(
        matches!(err.kind(), ErrorKind::Backend | ErrorKind::Unavailable),
        "{err:?}"
    );
}

#[tokio::test]
async fn sqlite_odd_text_round_trips() {
    common::odd_text_round_trips(Engine::Sqlite).await;
}
