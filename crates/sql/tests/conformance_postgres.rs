//! session-sql on PostgreSQL: the conformance suite and engine checks.
//! The server comes from MTSESSION_TEST_POSTGRES_URL
//! (default postgres://postgres@127.0.0.1:5432/test).

mod common;

use std::time::Duration;

use common::{SqlFactory, server_url};
use sea_orm::{ConnectionTrait, Database};
use session_core::{ErrorKind, SessionStore, UpdateStateChange};
use session_sql::{Engine, SqlStore};

session_conformance::conformance_tests! {
    factory: SqlFactory::new(Engine::Postgres),
    durable: true,
    shared_between_processes: true,
    leases: true,
    atomic_multi_key_writes: true,
}

#[tokio::test]
async fn postgres_refuses_newer_schema() {
    common::refuses_newer_schema(Engine::Postgres).await;
}

#[tokio::test]
async fn postgres_refuses_unknown_migration() {
    common::refuses_unknown_migration(Engine::Postgres).await;
}

#[tokio::test]
async fn postgres_concurrent_first_opens() {
    common::concurrent_first_opens(Engine::Postgres).await;
}

#[tokio::test]
async fn postgres_names_compare_exactly() {
    common::names_compare_exactly(Engine::Postgres).await;
}

#[tokio::test]
async fn postgres_delete_cascades() {
    common::delete_cascades(Engine::Postgres).await;
}

#[tokio::test]
async fn postgres_unreachable_is_unavailable_and_redacted() {
    common::unreachable_is_unavailable(
        "postgres://postgres:Hunter2Secret@127.0.0.1:9/test?connect_timeout=2",
        "Hunter2Secret",
    )
    .await;
}

#[tokio::test]
async fn postgres_password_never_shows() {
    // The test server trusts local connections, so a password is ignored and
    // the store opens; its Debug form must still hide the password.
    let base = server_url(Engine::Postgres);
    let url = base.replacen("://postgres@", "://postgres:Hunter2Secret@", 1);
    if url == base {
        // A URL with its own credentials: check the redaction helper alone.
        assert!(!session_sql::redact_url(&base).contains("Hunter2Secret"));
        return;
    }
    let prefix = common::unique_prefix("pw");
    let store = SqlStore::builder(&url)
        .expect("url")
        .table_prefix(&prefix)
        .expect("prefix")
        .open()
        .await
        .expect("open");
    let shown = format!("{store:?}");
    assert!(!shown.contains("Hunter2Secret"), "{shown}");
    assert!(shown.contains("***"), "{shown}");
    drop(store);
    SqlStore::builder(&url)
        .expect("url")
        .table_prefix(&prefix)
        .expect("prefix")
        .drop_tables()
        .await
        .expect("drop");
}

/// Kills every connection of the store from another connection; the store
/// keeps working, its pool opening new connections.
#[tokio::test]
async fn postgres_recovers_after_connections_are_killed() {
    let factory = std::sync::Arc::new(SqlFactory::new(Engine::Postgres));
    let f = std::sync::Arc::clone(&factory);
    common::with_namespace(&factory, move |ns| async move {
        let app = format!("mtsession-recovery-{ns}");
        let store = SqlStore::builder(&server_url(Engine::Postgres))
            .expect("url")
            .table_prefix(&ns)
            .expect("prefix")
            .application_name(&app)
            .max_connections(3)
            .open()
            .await
            .expect("open");
        store.create("r").await.expect("create");
        for pts in 1..=5 {
            store
                .set_update_state(
                    "r",
                    &UpdateStateChange::Primary {
                        pts,
                        date: 1,
                        seq: 1,
                    },
                )
                .await
                .expect("write");
        }
        let admin = Database::connect(server_url(Engine::Postgres).as_str())
            .await
            .expect("admin");
        let killed = admin
            .query_all_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                format!(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE datname = current_database() AND pid <> pg_backend_pid() \
                     AND application_name = '{app}'"
                ),
            ))
            .await
            .expect("terminate");
        assert!(!killed.is_empty(), "the store had no connection to kill");
        let _ = admin.close().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Every call after the kill works: the pool tests connections
        // before handing them out and replaces dead ones.
        for pts in 6..=10 {
            store
                .set_update_state(
                    "r",
                    &UpdateStateChange::Primary {
                        pts,
                        date: 2,
                        seq: 2,
                    },
                )
                .await
                .expect("write after the kill");
        }
        assert_eq!(store.update_state("r").await.expect("read").pts, 10);
        let _ = f;
    })
    .await;
}

#[tokio::test]
async fn postgres_missing_database_is_a_backend_error() {
    let base = server_url(Engine::Postgres);
    let Some((server, _)) = base.rsplit_once('/') else {
        panic!("odd URL {base}")
    };
    let url = format!("{server}/mtsession_no_such_database?connect_timeout=5");
    let err = SqlStore::connect(&url).await.expect_err("no such database");
    assert!(
        matches!(err.kind(), ErrorKind::Backend | ErrorKind::Unavailable),
        "{err:?}"
    );
}

#[tokio::test]
async fn postgres_odd_text_round_trips() {
    common::odd_text_round_trips(Engine::Postgres).await;
}
