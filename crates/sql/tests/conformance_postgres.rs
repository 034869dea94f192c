//! session-sql on PostgreSQL: the conformance suite and engine checks.
//! The server comes from MTSESSION_TEST_POSTGRES_URL
//! (default postgres://postgres@127.0.0.1:5432/test).

mod common;

use std::time::Duration;

use common::{SqlFactory, server_url};
use sea_orm::{ConnectionTrait, Database};
use session_core::{ErrorKind, Store, UpdateStateChange};
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
async fn postgres_odd_text_round_trips() {
    common::odd_text_round_trips(Engine::Postgres).await;
}

#[tokio::test]
async fn postgres_open_modes() {
    common::open_modes(Engine::Postgres).await;
}

#[tokio::test]
async fn postgres_unknown_options_are_refused() {
    common::unknown_options_are_refused(&server_url(Engine::Postgres)).await;
}

#[tokio::test]
async fn postgres_refused_port_fails_fast() {
    common::refused_port_fails_fast(
        "postgres://postgres:Hunter2Secret@127.0.0.1:1/test",
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
        .table_prefix(prefix.clone())
        .open()
        .await
        .expect("open");
    let shown = format!("{store:?}");
    assert!(!shown.contains("Hunter2Secret"), "{shown}");
    assert!(shown.contains("***"), "{shown}");
    drop(store);
    SqlStore::builder(&url)
        .table_prefix(prefix)
        .drop_tables()
        .await
        .expect("drop");
}

/// Kills every connection of the store from another connection; the store
/// keeps working without a ping before each call: the first call that meets
/// a dead connection runs again on a checked one.
#[tokio::test]
async fn postgres_recovers_after_connections_are_killed() {
    common::with_namespace(Engine::Postgres, |_, ns| async move {
        let app = format!("mtsession-recovery-{ns}");
        let store = Store::new(
            SqlStore::builder(&server_url(Engine::Postgres))
                .table_prefix(ns.clone())
                .application_name(app.clone())
                .max_connections(3)
                .open()
                .await
                .expect("open"),
        );
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
        // Reads and idempotent writes after the kill work.
        assert_eq!(store.update_state("r").await.expect("read").pts, 5);
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
        assert!(store.delete("r").await.expect("delete"));
    })
    .await;
}

#[tokio::test]
async fn postgres_missing_database_is_a_clear_error() {
    let base = server_url(Engine::Postgres);
    let Some((server, _)) = base.rsplit_once('/') else {
        panic!("odd URL {base}")
    };
    let url = format!("{server}/mtsession_no_such_database?connect_timeout=5");
    let err = SqlStore::open(&url).await.expect_err("no such database");
    assert!(
        matches!(err.kind(), ErrorKind::Backend | ErrorKind::Unavailable),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("mtsession_no_such_database"),
        "{err}"
    );
}

#[tokio::test]
async fn postgres_lookups_use_their_indexes() {
    common::lookups_use_their_indexes(Engine::Postgres).await;
}

/// The backend serving the store's connection that waits for a lock, once
/// it waits.
async fn waiting_backend(admin: &sea_orm::DatabaseConnection, app: &str) -> i32 {
    for _ in 0..500 {
        let rows = admin
            .query_all_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                format!(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = '{app}' \
                     AND wait_event_type = 'Lock'"
                ),
            ))
            .await
            .expect("activity");
        if let Some(row) = rows.first() {
            return row.try_get_by_index::<i32>(0).expect("pid");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the store's call never waited for the lock");
}

async fn terminate(admin: &sea_orm::DatabaseConnection, pid: i32) {
    admin
        .execute_unprepared(&format!("SELECT pg_terminate_backend({pid})"))
        .await
        .expect("terminate");
}

/// A write whose connection is lost after it was sent: a one-statement
/// write that is not idempotent (a delete) is `OutcomeUnknown` — here it was
/// not applied, which the caller could not know; a transaction that had not
/// committed is run once more on a fresh connection and succeeds.
#[tokio::test]
async fn postgres_a_lost_write_is_outcome_unknown_and_a_lost_transaction_runs_again() {
    common::with_namespace(Engine::Postgres, |_, ns| async move {
        let app = format!("mtsession-lost-{ns}");
        let store = Store::new(
            SqlStore::builder(&server_url(Engine::Postgres))
                .table_prefix(ns.clone())
                .application_name(app.clone())
                .open()
                .await
                .expect("open"),
        );
        store.create("s").await.expect("create");
        let admin = Database::connect(server_url(Engine::Postgres).as_str())
            .await
            .expect("admin");
        let lock = format!("SELECT 1 FROM \"{ns}sessions\" WHERE session = 's' FOR UPDATE");

        // A delete, blocked by the row lock, loses its connection.
        let txn = sea_orm::TransactionTrait::begin(&admin)
            .await
            .expect("begin");
        txn.execute_unprepared(&lock).await.expect("lock");
        let deleting = tokio::spawn({
            let store = store.clone();
            async move { store.delete("s").await }
        });
        let pid = waiting_backend(&admin, &app).await;
        terminate(&admin, pid).await;
        let err = deleting
            .await
            .expect("task")
            .expect_err("the connection was lost");
        assert_eq!(err.kind(), ErrorKind::OutcomeUnknown, "{err:?}");
        assert!(err.to_string().contains("may or may not"), "{err}");
        txn.rollback().await.expect("release");
        assert!(
            store.exists("s").await.expect("exists"),
            "it was not applied"
        );

        // A peer batch (a transaction), blocked at its first statement, loses
        // its connection: it runs again and succeeds once the lock is gone.
        let txn = sea_orm::TransactionTrait::begin(&admin)
            .await
            .expect("begin");
        txn.execute_unprepared(&lock).await.expect("lock");
        let caching = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .cache_peers(
                        "s",
                        &[
                            session_core::Peer::new(session_core::PeerId::user(5).expect("id"))
                                .with_hash(5),
                        ],
                    )
                    .await
            }
        });
        let pid = waiting_backend(&admin, &app).await;
        terminate(&admin, pid).await;
        // The second attempt waits for the lock again on a new connection.
        let again = waiting_backend(&admin, &app).await;
        assert_ne!(again, pid, "a fresh connection");
        txn.rollback().await.expect("release");
        caching
            .await
            .expect("task")
            .expect("the batch ran again and committed");
        assert_eq!(store.peer_count("s").await.expect("count"), 1);
        let _ = admin.close().await;
    })
    .await;
}

#[tokio::test]
async fn postgres_blocked_calls_are_abandoned_after_the_response_timeout() {
    common::blocked_calls_are_abandoned_after_the_response_timeout(Engine::Postgres).await;
}
