//! `MongoDriver` and the open modes against the test server
//! (`MTSESSION_TEST_MONGO_URL`): URL options (the collection prefix, the
//! database path, the response timeout, the options the MongoDB driver
//! reads), refusal of unknown ones, and read-only opens that create and
//! change nothing. Each test uses its own database and drops it afterwards.

mod common;

use std::collections::BTreeMap;

use futures::TryStreamExt;
use session_core::{
    Driver, ErrorKind, OpenMode, Peer, PeerId, SessionData, Store, StoreUrl, UpdateStateChange,
};
use session_mongo::mongodb::bson::{Document, doc};
use session_mongo::{ENGINE_OPTIONS, MongoDriver, MongoStore, STORE_OPTIONS};

use common::with_database;

/// The test server's URL naming `database`, with `options` added.
fn url_with(database: &str, options: &str) -> String {
    let base = common::url();
    let (before, query) = base.split_once('?').unwrap_or((&base, ""));
    let hosts = before.trim_end_matches('/');
    let hosts = match hosts.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}", rest.split('/').next().unwrap_or(rest)),
        None => hosts.to_owned(),
    };
    let mut url = format!("{hosts}/{database}?{query}");
    if !options.is_empty() {
        if !query.is_empty() {
            url.push('&');
        }
        url.push_str(options);
    }
    url
}

async fn open(url: &str, mode: OpenMode) -> session_core::Result<Store> {
    MongoDriver
        .open(&StoreUrl::parse(url).expect("a URL"), mode)
        .await
}

/// Every document of every collection of `db`, to prove that a call
/// changed nothing.
async fn snapshot(db: &str) -> BTreeMap<String, Vec<Document>> {
    let client = common::client().await;
    let database = client.database(db);
    let mut out = BTreeMap::new();
    for name in database.list_collection_names().await.expect("list") {
        if name.starts_with("system.") {
            continue;
        }
        let docs: Vec<Document> = database
            .collection::<Document>(&name)
            .find(doc! {})
            .sort(doc! { "_id": 1 })
            .await
            .expect("find")
            .try_collect()
            .await
            .expect("documents");
        out.insert(name, docs);
    }
    out
}

#[test]
fn the_driver_declares_its_schemes_and_options() {
    assert_eq!(MongoDriver.backend(), "mongo");
    assert_eq!(MongoDriver.schemes(), ["mongodb", "mongodb+srv"]);
    for option in STORE_OPTIONS.iter().chain(ENGINE_OPTIONS.iter()) {
        assert!(MongoDriver.options().contains(option), "{option}");
    }
    for option in [
        "prefix",
        "response_timeout_ms",
        "replicaSet",
        "authSource",
        "serverSelectionTimeoutMS",
        "connectTimeoutMS",
        "retryWrites",
        "tls",
        "w",
    ] {
        assert!(MongoDriver.options().contains(&option), "{option}");
    }
    assert!(MongoDriver.syntax().contains("mongodb://"));
}

#[tokio::test]
async fn the_prefix_option_and_the_database_path_place_every_collection() {
    with_database(|db| async move {
        let url = url_with(&db, "prefix=app_&session=ignored");
        let store = open(&url, OpenMode::Create).await.expect("open");
        let session = store.open("alice").await.expect("create");
        session
            .cache_peer(&Peer::new(PeerId::user(5).expect("id")).with_username("five"))
            .await
            .expect("peer");
        let names: Vec<String> = snapshot(&db).await.into_keys().collect();
        assert_eq!(
            names,
            [
                "app_files",
                "app_leases",
                "app_meta",
                "app_peers",
                "app_sessions"
            ]
        );
        // The same URL through MongoStore::open finds the same store.
        let again = Store::new(MongoStore::open(&url).await.expect("open"));
        assert_eq!(again.list().await.expect("list"), ["alice"]);
    })
    .await;
}

#[tokio::test]
async fn unknown_and_malformed_options_are_refused() {
    let url = url_with("unused", "prefx=x");
    let err = open(&url, OpenMode::Create).await.expect_err("a typo");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let text = err.to_string();
    assert!(text.contains("\"prefx\""), "{text}");
    assert!(text.contains("prefix, response_timeout_ms"), "{text}");
    assert!(text.contains("serverSelectionTimeoutMS"), "{text}");

    for (options, expected) in [
        ("response_timeout_ms=soon", "milliseconds"),
        ("response_timeout_ms=0", "1 ms"),
        ("socketTimeoutMS=100", "socketTimeoutMS"),
        ("w=notanumber&wtimeoutMS=x", "not a usable MongoDB URL"),
        ("prefix=a%24b", "collection prefix"),
    ] {
        let err = open(&url_with("unused", options), OpenMode::Create)
            .await
            .expect_err(options);
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{options}: {err}");
        assert!(err.to_string().contains(expected), "{options}: {err}");
    }
    let err = open("mongodb:///?x=1", OpenMode::Create)
        .await
        .expect_err("no host");
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

#[tokio::test]
async fn engine_options_pass_through() {
    with_database(|db| async move {
        // The test URL carries serverSelectionTimeoutMS already (see
        // common::url), and the driver refuses a repeated option.
        let url = url_with(
            &db,
            "appName=tests&w=majority&journal=true&retryReads=true&maxPoolSize=4\
             &localThresholdMS=20&connectTimeoutMS=5000&response_timeout_ms=20000",
        );
        let store = open(&url, OpenMode::Create).await.expect("open");
        let session = store.open("s").await.expect("create");
        session
            .set_update_state(UpdateStateChange::Secondary { qts: 4 })
            .await
            .expect("write");
        assert_eq!(session.update_state().await.expect("read").qts, 4);
    })
    .await;
}

#[tokio::test]
async fn read_only_and_read_write_opens_of_a_missing_store_are_not_found_and_create_nothing() {
    with_database(|db| async move {
        let url = url_with(&db, "");
        for mode in [OpenMode::ReadOnly, OpenMode::ReadWrite] {
            let err = open(&url, mode).await.expect_err("no store there");
            assert_eq!(err.kind(), ErrorKind::NotFound, "{mode:?}: {err}");
            assert!(err.to_string().contains(&db), "{err}");
        }
        assert!(snapshot(&db).await.is_empty(), "an open created something");
        let client = common::client().await;
        assert!(
            !client
                .list_database_names()
                .await
                .expect("databases")
                .contains(&db),
            "the database was created"
        );
        // A database holding something else is no store either, and stays as it was.
        client
            .database(&db)
            .collection::<Document>("other")
            .insert_one(doc! { "x": 1 })
            .await
            .expect("write");
        let before = snapshot(&db).await;
        for mode in [OpenMode::ReadOnly, OpenMode::ReadWrite] {
            let err = open(&url, mode).await.expect_err("not a store");
            assert_eq!(err.kind(), ErrorKind::NotFound, "{mode:?}: {err}");
        }
        assert_eq!(snapshot(&db).await, before);
    })
    .await;
}

#[tokio::test]
async fn a_read_only_store_reads_and_refuses_every_write_changing_nothing() {
    with_database(|db| async move {
        let url = url_with(&db, "");
        let writer = open(&url, OpenMode::Create).await.expect("create");
        let alice = writer.open("alice").await.expect("session");
        alice.set_home_dc(4).await.expect("write");
        alice
            .cache_peer(&Peer::new(PeerId::user(1).expect("id")).with_username("one"))
            .await
            .expect("peer");
        let before = snapshot(&db).await;

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
        assert_eq!(reader.export("alice").await.expect("export").home_dc, 4);
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
            session
                .cache_peers(&[])
                .await
                .expect_err("an empty batch is a write too"),
            reader.create("bob").await.expect_err("write"),
            reader.delete("alice").await.expect_err("write"),
            reader
                .copy("alice", "carol", true)
                .await
                .expect_err("write"),
            reader
                .import("alice", &SessionData::default())
                .await
                .expect_err("write"),
            reader
                .acquire_lease("alice", "me", std::time::Duration::from_secs(5))
                .await
                .expect_err("write"),
            reader
                .release_lease("alice", "me")
                .await
                .expect_err("write"),
            reader.open("dave").await.expect_err("creates"),
        ];
        for err in refusals {
            assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
            assert!(err.to_string().contains("read-only"), "{err}");
        }
        assert_eq!(
            snapshot(&db).await,
            before,
            "a read-only store changed data"
        );
        // Without transactions, a writable store's export takes the
        // session's write lock; a read-only one takes none.
        let plain = Store::new(
            MongoStore::builder(&url)
                .use_transactions(false)
                .mode(OpenMode::ReadOnly)
                .open()
                .await
                .expect("read-only without transactions"),
        );
        assert_eq!(plain.export("alice").await.expect("export").home_dc, 4);
        assert_eq!(
            snapshot(&db).await,
            before,
            "a read-only store without transactions changed data"
        );

        let rw = open(&url, OpenMode::ReadWrite).await.expect("read-write");
        rw.session("alice")
            .expect("name")
            .set_home_dc(5)
            .await
            .expect("writes");
    })
    .await;
}
