//! `mtsession::open` serves every URL scheme of the backends it was built with.

use mtsession::{ErrorKind, OpenMode, UpdateStateChange};

fn env(var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

fn with_option(url: &str, option: &str) -> String {
    if url.contains('?') {
        format!("{url}&{option}")
    } else {
        format!("{url}?{option}")
    }
}

/// Every scheme of this build with a URL that opens a fresh store on it.
fn urls(dir: &std::path::Path) -> Vec<(&'static str, String)> {
    let unique = format!("open{}", std::process::id());
    let mut urls = vec![("memory", "memory:".to_owned())];
    #[cfg(feature = "sqlite")]
    urls.push((
        "sqlite",
        format!("sqlite:{}", dir.join("a.sqlite").display()),
    ));
    #[cfg(feature = "sled")]
    urls.push(("sled", format!("sled:{}", dir.join("a.sled").display())));
    #[cfg(feature = "sql-sqlite")]
    urls.push((
        "sql+sqlite",
        format!("sql+sqlite:{}", dir.join("b.sqlite").display()),
    ));
    #[cfg(feature = "redis")]
    urls.push((
        "redis",
        with_option(
            &env("MTSESSION_TEST_REDIS_URL", "redis://127.0.0.1:6379"),
            &format!("prefix={unique}"),
        ),
    ));
    #[cfg(feature = "postgres")]
    urls.push((
        "postgres",
        with_option(
            &env(
                "MTSESSION_TEST_POSTGRES_URL",
                "postgres://postgres@127.0.0.1:5432/test",
            ),
            &format!("table_prefix={unique}_"),
        ),
    ));
    #[cfg(feature = "mysql")]
    urls.push((
        "mysql",
        with_option(
            &env(
                "MTSESSION_TEST_MYSQL_URL",
                "mysql://root@127.0.0.1:3306/test",
            ),
            &format!("table_prefix={unique}_"),
        ),
    ));
    #[cfg(feature = "mongo")]
    if let Ok(url) = std::env::var("MTSESSION_TEST_MONGO_URL") {
        // The test server may be a busy SecantusDB: give it longer than the
        // 5-second default meant for a real server.
        urls.push((
            "mongodb",
            with_option(&url, "serverSelectionTimeoutMS=30000"),
        ));
    } else if std::env::var_os("MTSESSION_REQUIRE_SERVICES").is_some() {
        panic!("MTSESSION_TEST_MONGO_URL is not set; cargo xtask test-all sets it");
    }
    let _ = (dir, &unique);
    urls
}

#[tokio::test]
async fn every_scheme_opens_and_keeps_a_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let urls = urls(dir.path());
    let schemes: Vec<&str> = mtsession::drivers()
        .iter()
        .flat_map(|d| d.schemes().iter().copied())
        .collect();
    for (scheme, _) in &urls {
        assert!(
            schemes.contains(scheme),
            "{scheme} has no driver: {schemes:?}"
        );
    }
    for (scheme, url) in &urls {
        let store = mtsession::open(url)
            .await
            .unwrap_or_else(|e| panic!("{scheme}: {e}"));
        let session = store.open("open-test").await.expect("session");
        session
            .set_update_state(UpdateStateChange::Secondary { qts: 7 })
            .await
            .expect("write");
        assert_eq!(
            session.update_state().await.expect("read").qts,
            7,
            "{scheme}"
        );
        if *scheme != "memory" {
            let again = mtsession::open_with(url, OpenMode::ReadOnly)
                .await
                .unwrap_or_else(|e| panic!("{scheme} read-only: {e}"));
            assert_eq!(again.update_state("open-test").await.expect("read").qts, 7);
            let refused = again.set_home_dc("open-test", 3).await;
            assert_eq!(
                refused.map_err(|e| e.kind()).err(),
                Some(ErrorKind::Unsupported),
                "{scheme}: a read-only store refuses writes"
            );
        }
        assert!(store.delete("open-test").await.expect("delete"));
    }
}

#[tokio::test]
async fn unknown_and_foreign_schemes_are_explained() {
    let err = mtsession::open("ftp://x").await.expect_err("unknown");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("expected one of"), "{err}");
    let err = mtsession::open("telethon:a.session")
        .await
        .expect_err("foreign");
    assert!(err.to_string().contains("Endpoint"), "{err}");
    let err = mtsession::open("memory:?table_prefx=1")
        .await
        .expect_err("option");
    assert!(err.to_string().contains("\"table_prefx\""), "{err}");
}

#[tokio::test]
async fn a_telethon_file_reads_through_an_endpoint() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/files/telethon1.session");
    let endpoint =
        mtsession::Endpoint::open(&format!("telethon:{}", path.display()), OpenMode::ReadOnly)
            .await
            .expect("endpoint");
    let loaded = endpoint.read().await.expect("read");
    assert!(loaded.data.home_auth_key().is_some());
}
