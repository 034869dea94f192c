//! session-sql on MySQL/MariaDB: the conformance suite and engine checks.
//! The server comes from MTSESSION_TEST_MYSQL_URL
//! (default mysql://root@127.0.0.1:3306/test).

mod common;

use common::{SqlFactory, server_url};
use session_core::ErrorKind;
use session_sql::{Engine, SqlStore};

session_conformance::conformance_tests! {
    factory: SqlFactory::new(Engine::MySql),
    durable: true,
    shared_between_processes: true,
    leases: true,
    atomic_multi_key_writes: true,
}

#[tokio::test]
async fn mysql_refuses_newer_schema() {
    common::refuses_newer_schema(Engine::MySql).await;
}

#[tokio::test]
async fn mysql_refuses_unknown_migration() {
    common::refuses_unknown_migration(Engine::MySql).await;
}

#[tokio::test]
async fn mysql_concurrent_first_opens() {
    common::concurrent_first_opens(Engine::MySql).await;
}

#[tokio::test]
async fn mysql_names_compare_exactly() {
    common::names_compare_exactly(Engine::MySql).await;
}

#[tokio::test]
async fn mysql_delete_cascades() {
    common::delete_cascades(Engine::MySql).await;
}

#[tokio::test]
async fn mysql_odd_text_round_trips() {
    common::odd_text_round_trips(Engine::MySql).await;
}

#[tokio::test]
async fn mysql_open_modes() {
    common::open_modes(Engine::MySql).await;
}

#[tokio::test]
async fn mysql_unknown_options_are_refused() {
    common::unknown_options_are_refused(&server_url(Engine::MySql)).await;
}

#[tokio::test]
async fn mysql_refused_port_fails_fast() {
    common::refused_port_fails_fast(
        "mysql://root:Hunter2Secret@127.0.0.1:1/test",
        "Hunter2Secret",
    )
    .await;
}

#[tokio::test]
async fn mysql_wrong_password_never_shows() {
    let base = server_url(Engine::MySql);
    let url = base.replacen("://root@", "://root:Hunter2Secret@", 1);
    match SqlStore::open(&common::with_option(&url, "connect_timeout=5")).await {
        Err(err) => {
            assert!(
                matches!(err.kind(), ErrorKind::Backend | ErrorKind::Unavailable),
                "{err:?}"
            );
            common::assert_no_secret(&err, "Hunter2Secret");
        }
        Ok(store) => {
            let shown = format!("{store:?}");
            assert!(!shown.contains("Hunter2Secret"), "{shown}");
        }
    }
}

#[tokio::test]
async fn mariadb_scheme_is_accepted() {
    let url = server_url(Engine::MySql).replacen("mysql://", "mariadb://", 1);
    let prefix = common::unique_prefix("md");
    let builder = SqlStore::builder(&url).table_prefix(prefix);
    let store = builder.clone().open().await.expect("open");
    assert_eq!(store.engine(), Engine::MySql);
    drop(store);
    builder.drop_tables().await.expect("drop");
}

#[tokio::test]
async fn mysql_lookups_use_their_indexes() {
    common::lookups_use_their_indexes(Engine::MySql).await;
}

#[tokio::test]
async fn mysql_blocked_calls_are_abandoned_after_the_response_timeout() {
    common::blocked_calls_are_abandoned_after_the_response_timeout(Engine::MySql).await;
}
