//! Tests of what is particular to the MongoDB backend: layout, exact
//! integers, typed errors for an unreachable server and newer schemas,
//! credential redaction, the fallback without transactions, and concurrent
//! writers. Each test uses its own database and drops it afterwards.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::with_database;
use futures::TryStreamExt;
use session_core::{
    ErrorKind, Peer, PeerId, PeerKind, SessionData, SessionStore, SessionStoreExt,
    UpdateStateChange,
};
use session_mongo::mongodb::bson::{Bson, Document, doc};
use session_mongo::{MongoStore, SCHEMA_VERSION, redact_url};

#[tokio::test]
async fn unreachable_server_is_unavailable_in_bounded_time() {
    let started = Instant::now();
    let err = MongoStore::builder("mongodb://127.0.0.1:1/?connectTimeoutMS=200")
        .server_selection_timeout(Duration::from_millis(500))
        .open()
        .await
        .expect_err("nothing listens on port 1");
    let elapsed = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(matches!(
        err,
        session_core::Error::Unavailable {
            backend: "mongo",
            ..
        }
    ));
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    assert!(
        std::error::Error::source(&err).is_some(),
        "the driver error is kept as the source"
    );
}

#[tokio::test]
async fn url_timeout_option_bounds_the_wait() {
    let started = Instant::now();
    let err = MongoStore::connect("mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300")
        .await
        .expect_err("nothing listens on port 1");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn passwords_never_appear_in_errors_or_debug() {
    let secret = "Sup3rS3cretPw";
    let url = format!("mongodb://alice:{secret}@127.0.0.1:1/?serverSelectionTimeoutMS=200");
    let builder = MongoStore::builder(url.clone());
    assert!(!format!("{builder:?}").contains(secret));
    let err = builder.open().await.expect_err("unreachable");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(secret), "{shown}");
    assert!(
        shown.contains("alice:***@"),
        "the redacted URL says where: {shown}"
    );

    // A malformed string is rejected as invalid input, still without the password.
    let err = MongoStore::connect(&format!(
        "mongodb://alice:{secret}@h/?w=notanumber&wtimeoutMS=x"
    ))
    .await
    .expect_err("malformed");
    let shown = format!("{err} {err:?}");
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{shown}");
    assert!(!shown.contains(secret), "{shown}");
    assert!(!redact_url(&url).contains(secret));
}

#[tokio::test]
async fn debug_of_an_open_store_is_redacted() {
    with_database(|db| async move {
        let store = common::open(&db).await.expect("open");
        let shown = format!("{store:?}");
        assert!(
            shown.contains(&db) && shown.contains("mtsession_"),
            "{shown}"
        );
    })
    .await;
}

#[tokio::test]
async fn bad_database_names_and_prefixes_are_invalid_input() {
    for name in ["", "a.b", "has space", "x$y", &"d".repeat(64)] {
        let err = MongoStore::builder(common::url())
            .database(name)
            .open()
            .await
            .expect_err(name);
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{name:?}: {err}");
    }
    for prefix in ["a$", "system.x"] {
        let err = MongoStore::builder(common::url())
            .collection_prefix(prefix)
            .open()
            .await
            .expect_err(prefix);
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{prefix:?}: {err}");
    }
}

#[tokio::test]
async fn newer_schema_is_refused_and_left_untouched() {
    with_database(|db| async move {
        let store = common::open(&db).await.expect("open");
        drop(store);
        let client = common::client().await;
        let meta = client
            .database(&db)
            .collection::<Document>("mtsession_meta");
        let doc = meta
            .find_one(doc! { "_id": "schema" })
            .await
            .expect("read")
            .expect("written");
        assert_eq!(doc.get("version"), Some(&Bson::Int64(SCHEMA_VERSION)));
        meta.update_one(
            doc! { "_id": "schema" },
            doc! { "$set": { "version": SCHEMA_VERSION + 1 } },
        )
        .await
        .expect("write");
        let err = common::open(&db).await.expect_err("newer");
        match &err {
            session_core::Error::UnsupportedSchemaVersion {
                found, supported, ..
            } => {
                assert_eq!((*found, *supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
            }
            other => panic!("expected UnsupportedSchemaVersion, got {other:?}"),
        }
        let doc = meta
            .find_one(doc! { "_id": "schema" })
            .await
            .expect("read")
            .expect("kept");
        assert_eq!(
            doc.get("version"),
            Some(&Bson::Int64(SCHEMA_VERSION + 1)),
            "not rewritten"
        );
    })
    .await;
}

#[tokio::test]
async fn a_schema_version_of_the_wrong_type_is_corrupt() {
    with_database(|db| async move {
        let client = common::client().await;
        let meta = client
            .database(&db)
            .collection::<Document>("mtsession_meta");
        meta.insert_one(doc! { "_id": "schema", "version": "one" })
            .await
            .expect("write");
        let err = common::open(&db).await.expect_err("corrupt");
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
        assert!(err.to_string().contains("version"), "{err}");
    })
    .await;
}

#[tokio::test]
async fn layout_collections_and_indexes() {
    with_database(|db| async move {
        let _store = MongoStore::builder(common::url())
            .database(&db)
            .collection_prefix("app1_")
            .open()
            .await
            .expect("open");
        let client = common::client().await;
        let database = client.database(&db);
        let mut names = database.list_collection_names().await.expect("list");
        names.sort();
        assert_eq!(
            names,
            [
                "app1_files",
                "app1_leases",
                "app1_meta",
                "app1_peers",
                "app1_sessions"
            ]
        );
        let indexes: Vec<_> = database
            .collection::<Document>("app1_peers")
            .list_indexes()
            .await
            .expect("indexes")
            .try_collect()
            .await
            .expect("indexes");
        let find = |name: &str| {
            indexes
                .iter()
                .find(|i| i.options.as_ref().and_then(|o| o.name.as_deref()) == Some(name))
                .unwrap_or_else(|| panic!("index {name} missing: {indexes:?}"))
        };
        let by_id = find("session_id");
        assert_eq!(by_id.keys, doc! { "session": 1, "id": 1 });
        assert_eq!(by_id.options.as_ref().and_then(|o| o.unique), Some(true));
        assert_eq!(
            find("session_username").keys,
            doc! { "session": 1, "usernames.key": 1 }
        );
        assert_eq!(
            find("session_phone").keys,
            doc! { "session": 1, "phone": 1 }
        );
    })
    .await;
}

#[tokio::test]
async fn ids_and_hashes_are_exact_int64() {
    with_database(|db| async move {
        let store: Arc<dyn SessionStore> = Arc::new(common::open(&db).await.expect("open"));
        let session = store.open("exact").await.expect("create");
        let channel = PeerId::channel(i64::MAX - 1_000_000_000_000).expect("valid");
        let peers = [
            Peer::new(channel)
                .with_kind(PeerKind::Broadcast)
                .with_hash(i64::MIN),
            Peer::new(PeerId::user(i64::MAX).expect("valid")).with_min_hash(i64::MAX),
            Peer::new(PeerId::user((1 << 53) + 1).expect("valid")).with_hash((1 << 53) + 1),
        ];
        session.cache_peers(&peers).await.expect("cache");
        let ids: Vec<PeerId> = peers.iter().map(|p| p.id).collect();
        let back = session.peers(&ids).await.expect("read");
        for (peer, back) in peers.iter().zip(back) {
            assert_eq!(back.as_ref(), Some(peer));
        }
        let client = common::client().await;
        let raw = client
            .database(&db)
            .collection::<Document>("mtsession_peers")
            .find_one(doc! { "id": channel.marked() })
            .await
            .expect("read")
            .expect("stored");
        assert_eq!(raw.get("id"), Some(&Bson::Int64(channel.marked())));
        assert_eq!(raw.get("hash"), Some(&Bson::Int64(i64::MIN)));
        assert_eq!(raw.get("session"), Some(&Bson::String("exact".into())));
        session
            .set_takeout_id(Some(i64::MIN))
            .await
            .expect("takeout");
        let raw = client
            .database(&db)
            .collection::<Document>("mtsession_sessions")
            .find_one(doc! { "_id": "exact" })
            .await
            .expect("read")
            .expect("stored");
        assert_eq!(raw.get("takeout_id"), Some(&Bson::Int64(i64::MIN)));
        assert!(matches!(
            raw.get_document("dcs")
                .expect("dcs")
                .get_document("2")
                .expect("dc 2")
                .get("auth_key"),
            Some(Bson::Null)
        ));
    })
    .await;
}

#[tokio::test]
async fn corrupt_documents_are_typed_errors() {
    with_database(|db| async move {
        let store: Arc<dyn SessionStore> = Arc::new(common::open(&db).await.expect("open"));
        let session = store.open("bad").await.expect("create");
        let client = common::client().await;
        let database = client.database(&db);
        database
            .collection::<Document>("mtsession_peers")
            .insert_one(doc! { "session": "bad", "id": 5_i64, "hash": "text" })
            .await
            .expect("write");
        let err = session
            .peer(PeerId::user(5).expect("valid"))
            .await
            .expect_err("corrupt");
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
        assert!(err.to_string().contains("hash"), "{err}");
        database
            .collection::<Document>("mtsession_sessions")
            .update_one(
                doc! { "_id": "bad" },
                doc! { "$set": { "dcs.2.auth_key": Bson::Binary(
                session_mongo::mongodb::bson::Binary {
                    subtype: session_mongo::mongodb::bson::spec::BinarySubtype::Generic,
                    bytes: vec![1; 100],
                }) } },
            )
            .await
            .expect("write");
        let err = session.dc_options().await.expect_err("corrupt key");
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
        assert!(err.to_string().contains("100 bytes"), "{err}");
    })
    .await;
}

#[tokio::test]
async fn prefixes_share_a_database_without_seeing_each_other() {
    with_database(|db| async move {
        let open = |prefix: &'static str| {
            let db = db.clone();
            async move {
                let store: Arc<dyn SessionStore> = Arc::new(
                    MongoStore::builder(common::url())
                        .database(db)
                        .collection_prefix(prefix)
                        .open()
                        .await
                        .expect("open"),
                );
                store
            }
        };
        let a = open("a_").await;
        let b = open("b_").await;
        a.open("same").await.expect("create in a");
        assert!(!b.exists("same").await.expect("exists"));
        b.open("same").await.expect("create in b");
        a.delete("same").await.expect("delete in a");
        assert!(b.exists("same").await.expect("still in b"));
    })
    .await;
}

#[tokio::test]
async fn transactions_are_detected() {
    with_database(|db| async move {
        let store = common::open(&db).await.expect("open");
        // The test server is a replica set (SecantusDB presents a one-node set).
        assert!(store.uses_transactions(), "{store:?}");
        assert!(store.capabilities().atomic_multi_key_writes);
        let store = MongoStore::builder(common::url())
            .database(&db)
            .use_transactions(false)
            .open()
            .await
            .expect("open");
        assert!(!store.uses_transactions());
        assert!(!store.capabilities().atomic_multi_key_writes);
        assert!(store.server_version().is_some());
    })
    .await;
}

/// Many tasks write overlapping batches of one session at once: every peer
/// ends up stored, and every username has exactly one owner.
async fn concurrent_batches(store: Arc<dyn SessionStore>) {
    let session = store.open("busy").await.expect("create");
    let tasks = 8;
    let batches = 6;
    let per_batch = 10;
    let mut handles = Vec::new();
    for task in 0..tasks {
        let session = session.clone();
        handles.push(tokio::spawn(async move {
            for batch in 0..batches {
                let peers: Vec<Peer> = (0..per_batch)
                    .map(|i| {
                        let n = (task * batches + batch) * per_batch + i + 1;
                        // Every task also claims the shared usernames "shared<i>".
                        Peer::new(PeerId::user(n).expect("valid"))
                            .with_hash(n)
                            .with_username(if i < 2 {
                                format!("Shared{i}")
                            } else {
                                format!("u{n}")
                            })
                    })
                    .collect();
                session.cache_peers(&peers).await.expect("batch");
            }
        }));
    }
    for handle in handles {
        handle.await.expect("task");
    }
    let total = (tasks * batches * per_batch) as u64;
    assert_eq!(session.peer_count().await.expect("count"), total);
    let data = session.export().await.expect("export");
    let mut owners = HashSet::new();
    for peer in &data.peers {
        for key in peer.username_keys() {
            assert!(owners.insert(key.clone()), "username {key} has two owners");
        }
    }
    for i in 0..2 {
        let owner = session
            .peer_by_username(&format!("shared{i}"))
            .await
            .expect("lookup");
        let owner = owner.expect("someone owns it");
        assert_eq!(owner.username_keys(), vec![format!("shared{i}")]);
    }
}

#[tokio::test]
async fn concurrent_batches_with_transactions() {
    with_database(|db| async move {
        concurrent_batches(Arc::new(common::open(&db).await.expect("open"))).await;
    })
    .await;
}

#[tokio::test]
async fn concurrent_batches_without_transactions() {
    with_database(|db| async move {
        let store = MongoStore::builder(common::url())
            .database(&db)
            .use_transactions(false)
            .open()
            .await
            .expect("open");
        concurrent_batches(Arc::new(store)).await;
        // Every write lock was given back.
        let client = common::client().await;
        let locks = client
            .database(&db)
            .collection::<Document>("mtsession_locks");
        assert_eq!(locks.count_documents(doc! {}).await.expect("count"), 0);
    })
    .await;
}

#[tokio::test]
async fn fallback_without_transactions_keeps_the_rules() {
    with_database(|db| async move {
        let store: Arc<dyn SessionStore> = Arc::new(
            MongoStore::builder(common::url())
                .database(&db)
                .use_transactions(false)
                .open()
                .await
                .expect("open"),
        );
        let session = store.open("plain").await.expect("create");
        let a = PeerId::user(1).expect("valid");
        let b = PeerId::user(2).expect("valid");
        session
            .cache_peers(&[Peer::new(a)
                .with_hash(1)
                .with_username("Name")
                .with_phone("+1 555")])
            .await
            .expect("a");
        session
            .cache_peers(&[Peer::new(b)
                .with_hash(2)
                .with_username("name")
                .with_phone("1555")])
            .await
            .expect("b");
        assert_eq!(
            session
                .peer_by_username("NAME")
                .await
                .expect("lookup")
                .map(|p| p.id),
            Some(b)
        );
        assert_eq!(
            session
                .peer_by_phone("1555")
                .await
                .expect("lookup")
                .map(|p| p.id),
            Some(b)
        );
        let old = session.peer(a).await.expect("read").expect("kept");
        assert_eq!((old.usernames, old.phone), (Some(vec![]), None));
        session
            .set_update_state(UpdateStateChange::Channel { id: 7, pts: 70 })
            .await
            .expect("pts");
        store.copy("plain", "copy", false).await.expect("copy");
        let copied = store.export("copy").await.expect("export");
        assert_eq!(copied, store.export("plain").await.expect("export"));
        store
            .import("imported", &SessionData::default())
            .await
            .expect("import");
        assert_eq!(
            store.list().await.expect("list"),
            ["copy", "imported", "plain"]
        );
        assert!(store.delete("plain").await.expect("delete"));
        let err = session.peer_count().await.expect_err("gone");
        assert_eq!(err.kind(), ErrorKind::NotFound);
        let again = store.open("plain").await.expect("recreate");
        assert_eq!(
            again.peer_count().await.expect("count"),
            0,
            "no orphans come back"
        );
    })
    .await;
}

#[tokio::test]
async fn retryable_writes_on() {
    // The other tests turn retryable writes off for speed (see common::url);
    // this one runs the main paths with the driver's default.
    let configured = common::configured_url();
    with_database(|db| async move {
        let store: Arc<dyn SessionStore> = Arc::new(
            MongoStore::builder(configured)
                .database(&db)
                .open()
                .await
                .expect("open"),
        );
        let session = store.open("retry").await.expect("create");
        session.set_home_dc(4).await.expect("home");
        session
            .set_update_state(UpdateStateChange::Primary {
                pts: 1,
                date: 2,
                seq: 3,
            })
            .await
            .expect("state");
        let peer = Peer::new(PeerId::user(9).expect("valid"))
            .with_hash(9)
            .with_username("Nine");
        session.cache_peer(&peer).await.expect("peer");
        assert_eq!(
            session.peer_by_username("nine").await.expect("lookup"),
            Some(peer)
        );
        store.copy("retry", "copy", false).await.expect("copy");
        assert_eq!(store.export("copy").await.expect("export").home_dc, 4);
        store
            .acquire_lease("retry", "me", Duration::from_secs(5))
            .await
            .expect("lease");
        assert!(store.release_lease("retry", "me").await.expect("release"));
        assert!(store.delete("retry").await.expect("delete"));
    })
    .await;
}

#[tokio::test]
async fn leases_between_two_stores() {
    with_database(|db| async move {
        let one = common::open(&db).await.expect("open");
        let two = common::open(&db).await.expect("open");
        let ttl = Duration::from_millis(400);
        let held = one.acquire_lease("s", "one", ttl).await.expect("first");
        let err = two.acquire_lease("s", "two", ttl).await.expect_err("held");
        match err {
            session_core::Error::LeaseHeld {
                owner, until_ms, ..
            } => {
                assert_eq!((owner.as_str(), until_ms), ("one", held.expires_at_ms));
            }
            other => panic!("expected LeaseHeld, got {other:?}"),
        }
        tokio::time::sleep(ttl + Duration::from_millis(50)).await;
        two.acquire_lease("s", "two", ttl)
            .await
            .expect("expired lease is taken over");
        assert!(
            !one.release_lease("s", "one").await.expect("release"),
            "not the holder"
        );
        assert!(two.release_lease("s", "two").await.expect("release"));
    })
    .await;
}
