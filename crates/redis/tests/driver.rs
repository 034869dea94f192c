//! `RedisDriver` and the open modes against the server at
//! `MTSESSION_TEST_REDIS_URL`: URL options (the key prefix, timeouts, the
//! options redis-rs reads), refusal of unknown ones, and read-only opens
//! that change nothing. Every test works under its own prefix.

mod common;

use std::collections::BTreeMap;

use session_core::{Driver, ErrorKind, OpenMode, Peer, PeerId, StoreUrl, UpdateStateChange};
use session_redis::{RedisDriver, RedisStore};

use common::{drop_prefix, keys_under, raw_connection, test_url, unique_prefix};

/// The test server's URL with `options` added.
fn url_with(options: &str) -> String {
    let base = test_url();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}{options}")
}

/// Percent-encodes a prefix for a URL option.
fn encoded(prefix: &str) -> String {
    session_core::url::percent_encode(prefix)
}

/// Every key under `prefix` with its type and content, to prove that a
/// call changed nothing.
async fn snapshot(prefix: &str) -> BTreeMap<Vec<u8>, (String, Vec<Vec<u8>>)> {
    let mut con = raw_connection(&test_url()).await.expect("connect");
    let mut out = BTreeMap::new();
    for key in keys_under(&test_url(), prefix).await.expect("scan") {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut con)
            .await
            .expect("type");
        let content: Vec<Vec<u8>> = match kind.as_str() {
            "hash" => redis::cmd("HGETALL").arg(&key).query_async(&mut con).await,
            "zset" => {
                redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut con)
                    .await
            }
            _ => redis::cmd("GET")
                .arg(&key)
                .query_async::<Option<Vec<u8>>>(&mut con)
                .await
                .map(|v| v.into_iter().collect()),
        }
        .expect("read");
        out.insert(key, (kind, content));
    }
    out
}

async fn open(url: &str, mode: OpenMode) -> session_core::Result<session_core::Store> {
    RedisDriver
        .open(&StoreUrl::parse(url).expect("a URL"), mode)
        .await
}

#[test]
fn the_driver_declares_its_schemes_and_options() {
    assert_eq!(RedisDriver.backend(), "redis");
    assert_eq!(RedisDriver.schemes(), ["redis", "rediss", "redis+unix"]);
    for option in [
        "prefix",
        "connect_timeout",
        "response_timeout",
        "protocol",
        "db",
        "user",
        "pass",
    ] {
        assert!(RedisDriver.options().contains(&option), "{option}");
    }
    assert!(RedisDriver.syntax().contains("prefix="));
}

#[tokio::test]
async fn the_prefix_option_places_every_key() {
    let prefix = format!("{}:a b/c", unique_prefix());
    let url = url_with(&format!("prefix={}&session=ignored", encoded(&prefix)));
    let store = open(&url, OpenMode::Create).await.expect("open");
    let session = store.open("alice").await.expect("create");
    session
        .cache_peer(&Peer::new(PeerId::user(5).expect("id")).with_username("five"))
        .await
        .expect("peer");
    let keys = keys_under(&test_url(), &prefix).await.expect("scan");
    assert!(
        keys.len() >= 3,
        "the schema, the index and the session under the prefix: {keys:?}"
    );
    // The same URL through RedisStore::open finds the same store.
    let again = session_core::Store::new(RedisStore::open(&url).await.expect("open"));
    assert_eq!(again.list().await.expect("list"), ["alice"]);
    drop_prefix(&test_url(), &prefix).await.expect("cleanup");
}

#[tokio::test]
async fn unknown_and_malformed_options_are_refused() {
    let err = open(&url_with("prefx=x"), OpenMode::Create)
        .await
        .expect_err("a typo");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let text = err.to_string();
    assert!(text.contains("\"prefx\""), "{text}");
    assert!(
        text.contains("prefix, connect_timeout, response_timeout"),
        "{text}"
    );

    let err = open(&url_with("response_timeout=10"), OpenMode::Create)
        .await
        .expect_err("no unit");
    assert!(err.to_string().contains("500ms or 2s"), "{err}");
    let err = open(&url_with("db=3"), OpenMode::Create)
        .await
        .expect_err("db= on a TCP URL");
    assert!(err.to_string().contains("redis+unix"), "{err}");
    let err = open(&url_with("prefix="), OpenMode::Create)
        .await
        .expect_err("empty prefix");
    assert!(err.to_string().contains("prefix"), "{err}");
}

#[tokio::test]
async fn engine_options_pass_through() {
    let prefix = unique_prefix();
    let url = url_with(&format!(
        "protocol=resp3&prefix={}&connect_timeout=1500ms&response_timeout=3s",
        encoded(&prefix)
    ));
    let store = open(&url, OpenMode::Create).await.expect("RESP3 works");
    let session = store.open("s").await.expect("create");
    session
        .set_update_state(UpdateStateChange::Secondary { qts: 4 })
        .await
        .expect("write");
    assert_eq!(session.update_state().await.expect("read").qts, 4);
    let err = open(&url_with("protocol=resp9"), OpenMode::Create)
        .await
        .expect_err("bad protocol");
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    drop_prefix(&test_url(), &prefix).await.expect("cleanup");
}

#[tokio::test]
async fn read_only_and_read_write_opens_of_a_missing_store_are_not_found_and_create_nothing() {
    let prefix = unique_prefix();
    let url = url_with(&format!("prefix={}", encoded(&prefix)));
    for mode in [OpenMode::ReadOnly, OpenMode::ReadWrite] {
        let err = open(&url, mode).await.expect_err("no store there");
        assert_eq!(err.kind(), ErrorKind::NotFound, "{mode:?}: {err}");
        assert!(err.to_string().contains(&prefix), "{err}");
    }
    assert!(
        keys_under(&test_url(), &prefix)
            .await
            .expect("scan")
            .is_empty()
    );
}

#[tokio::test]
async fn a_read_only_store_reads_and_refuses_every_write_changing_nothing() {
    let prefix = unique_prefix();
    let url = url_with(&format!("prefix={}", encoded(&prefix)));
    let writer = open(&url, OpenMode::Create).await.expect("create");
    let alice = writer.open("alice").await.expect("session");
    alice.set_home_dc(4).await.expect("write");
    alice
        .cache_peer(&Peer::new(PeerId::user(1).expect("id")).with_username("one"))
        .await
        .expect("peer");
    let before = snapshot(&prefix).await;

    let reader = open(&url, OpenMode::ReadOnly).await.expect("read-only");
    let session = reader.session("alice").expect("name");
    assert_eq!(session.home_dc().await.expect("read"), 4);
    assert!(
        session
            .peer_by_username("one")
            .await
            .expect("lookup")
            .is_some()
    );
    assert_eq!(reader.list().await.expect("list"), ["alice"]);
    let refusals = [
        session.set_home_dc(2).await.expect_err("write"),
        session
            .set_update_state(UpdateStateChange::Secondary { qts: 1 })
            .await
            .expect_err("write"),
        session
            .cache_peer(&Peer::new(PeerId::user(2).expect("id")))
            .await
            .expect_err("write"),
        reader.create("bob").await.expect_err("write"),
        reader.delete("alice").await.expect_err("write"),
        reader
            .copy("alice", "carol", true)
            .await
            .expect_err("write"),
        reader
            .import("alice", &session_core::SessionData::default())
            .await
            .expect_err("write"),
        reader
            .acquire_lease("alice", "me", std::time::Duration::from_secs(5))
            .await
            .expect_err("write"),
        reader.open("dave").await.expect_err("creates"),
    ];
    for err in refusals {
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
        assert!(err.to_string().contains("read-only"), "{err}");
    }
    assert_eq!(
        snapshot(&prefix).await,
        before,
        "a read-only store changed data"
    );

    let rw = open(&url, OpenMode::ReadWrite).await.expect("read-write");
    rw.session("alice")
        .expect("name")
        .set_home_dc(5)
        .await
        .expect("writes");
    drop_prefix(&test_url(), &prefix).await.expect("cleanup");
}

#[tokio::test]
async fn a_prefix_holding_something_else_is_refused_clearly() {
    let prefix = unique_prefix();
    let mut con = raw_connection(&test_url()).await.expect("connect");
    let _: () = redis::cmd("HSET")
        .arg(format!("{prefix}:schema"))
        .arg("a")
        .arg("b")
        .query_async(&mut con)
        .await
        .expect("hset");
    let url = url_with(&format!("prefix={}", encoded(&prefix)));
    for mode in [OpenMode::ReadOnly, OpenMode::ReadWrite, OpenMode::Create] {
        let err = open(&url, mode).await.expect_err("not a store");
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{mode:?}: {err}");
        let text = err.to_string();
        assert!(text.contains("does not hold an mtsession store"), "{text}");
        assert!(text.contains(":schema is not a string"), "{text}");
    }
    drop_prefix(&test_url(), &prefix).await.expect("cleanup");
}
