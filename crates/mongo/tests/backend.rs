//! What is particular to the MongoDB backend, on the test server
//! (`MTSESSION_TEST_MONGO_URL`): the stored layout, exact integers, typed
//! errors, the schema document, writes that store exactly what core
//! decides, the queries the store sends (through their indexes, as few as
//! possible), data written by the previous version, and the fallback
//! without transactions. Each test uses its own database and drops it
//! afterwards.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use session_core::backend::{HeaderWrite, SessionHeader, UpdateStateWrite};
use session_core::{
    AccessHash, Error, ErrorKind, Peer, PeerBatch, PeerId, PeerKind, PeerTable, SelfUser,
    SessionBackend, SessionData, Store, UpdateStateChange,
};
use session_mongo::mongodb::bson::{Binary, Bson, Document, doc, spec::BinarySubtype};
use session_mongo::{MongoStore, SCHEMA_VERSION, redact_url};

use common::{shown, with_database};

fn user(id: i64) -> PeerId {
    PeerId::user(id).expect("a positive id")
}

async fn collection(db: &str, name: &str) -> session_mongo::mongodb::Collection<Document> {
    common::client().await.database(db).collection(name)
}

async fn all(db: &str, name: &str, filter: Document) -> Vec<Document> {
    collection(db, name)
        .await
        .find(filter)
        .sort(doc! { "_id": 1 })
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("documents")
}

async fn without_transactions(db: &str) -> MongoStore {
    MongoStore::builder(&common::url())
        .database(db)
        .use_transactions(false)
        .open()
        .await
        .expect("open")
}

#[tokio::test]
async fn layout_collections_indexes_and_the_schema_document() {
    with_database(|db| async move {
        let _store = MongoStore::builder(&common::url())
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
        let schema = all(&db, "app1_meta", doc! {}).await;
        assert_eq!(schema.len(), 1, "{schema:?}");
        assert_eq!(schema[0].get("_id"), Some(&Bson::String("schema".into())));
        assert_eq!(schema[0].get("version"), Some(&Bson::Int64(SCHEMA_VERSION)));
        assert_eq!(schema[0].get("layout"), Some(&Bson::Int64(1)));
    })
    .await;
}

#[tokio::test]
async fn ids_hashes_and_times_are_exact() {
    with_database(|db| async move {
        let store = Store::new(common::open(&db).await.expect("open"));
        let session = store.open("exact").await.expect("create");
        let channel = PeerId::channel(i64::MAX - 1_000_000_000_000).expect("valid");
        let peers = [
            Peer::new(channel)
                .with_kind(PeerKind::Broadcast)
                .with_hash(i64::MIN),
            Peer::new(user(i64::MAX)).with_min_hash(i64::MAX),
            Peer::new(user((1 << 53) + 1)).with_hash((1 << 53) + 1),
        ];
        session.cache_peers(&peers).await.expect("cache");
        let ids: Vec<PeerId> = peers.iter().map(|p| p.id).collect();
        let back = session.peers(&ids).await.expect("read");
        for (peer, back) in peers.iter().zip(back) {
            assert_eq!(back.as_ref(), Some(peer));
        }
        let raw = collection(&db, "mtsession_peers")
            .await
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
        let raw = collection(&db, "mtsession_sessions")
            .await
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
        // Times are BSON dates, exact to the millisecond. (SecantusDB
        // refuses dates outside the years 1 to 9999; MongoDB takes any.)
        let backend = common::open(&db).await.expect("open");
        let later = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
        backend
            .write_header("exact", &HeaderWrite::at(later))
            .await
            .expect("write");
        assert_eq!(
            backend.header("exact").await.expect("read").updated_at_ms,
            later
        );
    })
    .await;
}

#[tokio::test]
async fn corrupt_documents_are_typed_errors() {
    with_database(|db| async move {
        let store = Store::new(common::open(&db).await.expect("open"));
        let session = store.open("bad").await.expect("create");
        collection(&db, "mtsession_peers")
            .await
            .insert_one(doc! { "session": "bad", "id": 5_i64, "hash": "text" })
            .await
            .expect("write");
        let err = session.peer(user(5)).await.expect_err("corrupt");
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
        assert!(err.to_string().contains("hash"), "{err}");
        collection(&db, "mtsession_sessions")
            .await
            .update_one(
                doc! { "_id": "bad" },
                doc! { "$set": { "dcs.2.auth_key": Bson::Binary(Binary {
                    subtype: BinarySubtype::Generic,
                    bytes: vec![1; 100],
                }) } },
            )
            .await
            .expect("write");
        let err = session.dc_options().await.expect_err("corrupt key");
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
        assert!(err.to_string().contains("100 bytes"), "{err}");
        collection(&db, "mtsession_sessions")
            .await
            .insert_one(doc! { "_id": 7_i32, "home_dc": 2 })
            .await
            .expect("write");
        let err = store.list().await.expect_err("a name that is not a string");
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    })
    .await;
}

#[tokio::test]
async fn newer_schema_is_refused_and_left_untouched() {
    with_database(|db| async move {
        drop(common::open(&db).await.expect("open"));
        let meta = collection(&db, "mtsession_meta").await;
        meta.update_one(
            doc! { "_id": "schema" },
            doc! { "$set": { "version": SCHEMA_VERSION + 1 }, "$unset": { "layout": "" } },
        )
        .await
        .expect("write");
        let before = all(&db, "mtsession_meta", doc! {}).await;
        for mode in [
            session_core::OpenMode::Create,
            session_core::OpenMode::ReadWrite,
            session_core::OpenMode::ReadOnly,
        ] {
            let err = MongoStore::builder(&common::url())
                .database(&db)
                .mode(mode)
                .open()
                .await
                .expect_err("newer");
            match &err {
                Error::UnsupportedSchemaVersion {
                    found, supported, ..
                } => {
                    assert_eq!((*found, *supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
                }
                other => panic!("{mode:?}: expected UnsupportedSchemaVersion, got {other:?}"),
            }
            assert!(err.to_string().contains(&db), "{err}");
        }
        assert_eq!(
            all(&db, "mtsession_meta", doc! {}).await,
            before,
            "not rewritten"
        );
    })
    .await;
}

#[tokio::test]
async fn a_schema_version_of_the_wrong_type_is_corrupt() {
    with_database(|db| async move {
        collection(&db, "mtsession_meta")
            .await
            .insert_one(doc! { "_id": "schema", "version": "one" })
            .await
            .expect("write");
        let err = common::open(&db).await.expect_err("corrupt");
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
        assert!(err.to_string().contains("version"), "{err}");
    })
    .await;
}

#[tokio::test]
async fn prefixes_share_a_database_without_seeing_each_other() {
    with_database(|db| async move {
        let open = |prefix: &'static str| {
            let db = db.clone();
            async move {
                Store::new(
                    MongoStore::builder(&common::url())
                        .database(db)
                        .collection_prefix(prefix)
                        .open()
                        .await
                        .expect("open"),
                )
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
        let store = without_transactions(&db).await;
        assert!(!store.uses_transactions());
        assert!(!store.capabilities().atomic_multi_key_writes);
    })
    .await;
}

/// Header writes on the store give what `SessionHeader::apply` gives on a
/// copy of the header: the fields written, `updated_at` never moving back.
#[tokio::test]
async fn header_writes_match_session_header_apply() {
    with_database(|db| async move {
        let store = common::open(&db).await.expect("open");
        store
            .import(
                "h",
                &SessionData::default(),
                session_core::ImportMode::CreateOnly,
                1_000,
            )
            .await
            .expect("create");
        let mut expected = SessionHeader::from_data(&SessionData::default(), 1_000, 1_000);
        assert_eq!(store.header("h").await.expect("header"), expected);
        let mut writes = Vec::new();
        let mut w = HeaderWrite::at(5_000);
        w.home_dc = Some(4);
        w.self_user = Some(Some(SelfUser {
            id: 77,
            is_bot: true,
        }));
        writes.push(w);
        let mut w = HeaderWrite::at(3_000);
        w.api_id = Some(Some(12345));
        w.test_mode = Some(true);
        writes.push(w);
        let mut w = HeaderWrite::at(9_000);
        w.takeout_id = Some(Some(i64::MIN));
        w.self_user = Some(None);
        writes.push(w);
        let mut w = HeaderWrite::at(2_000);
        w.api_id = Some(None);
        w.takeout_id = Some(None);
        writes.push(w);
        writes.push(HeaderWrite::at(8_000));
        for (i, write) in writes.iter().enumerate() {
            store.write_header("h", write).await.expect("write");
            expected.apply(write);
            assert_eq!(
                store.header("h").await.expect("header"),
                expected,
                "after write {i}"
            );
        }
        let dc = session_core::DcOption {
            id: 9,
            ipv4: Some("1.2.3.4:443".parse().expect("address")),
            ipv6: None,
            auth_key: None,
        };
        store.write_dc_option("h", &dc, 7_000).await.expect("dc");
        let (header, dcs) = store.home("h").await.expect("home");
        assert_eq!(header.updated_at_ms, 9_000, "moved back by a DC write");
        assert!(dcs.contains(&dc));
        store.write_dc_option("h", &dc, 10_000).await.expect("dc");
        assert_eq!(
            store.header("h").await.expect("header").updated_at_ms,
            10_000
        );
        let err = store
            .write_header("missing", &HeaderWrite::at(1))
            .await
            .expect_err("missing");
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(!store.exists("missing").await.expect("exists"));
    })
    .await;
}

/// An update-state write changes exactly its fields and its one channel in
/// the stored document, and nothing else of the session.
#[tokio::test]
async fn update_state_writes_set_exactly_their_fields() {
    with_database(|db| async move {
        let store = common::open(&db).await.expect("open");
        let mut data = SessionData::default();
        data.update_state.pts = 1;
        data.update_state.qts = 2;
        data.update_state.date = 3;
        data.update_state.seq = 4;
        data.update_state.channels.insert(10, 100);
        data.update_state.channels.insert(11, 110);
        store
            .import("u", &data, session_core::ImportMode::CreateOnly, 1_000)
            .await
            .expect("create");
        let raw = || {
            let db = db.clone();
            async move {
                let mut doc = collection(&db, "mtsession_sessions")
                    .await
                    .find_one(doc! { "_id": "u" })
                    .await
                    .expect("read")
                    .expect("stored");
                doc.remove("rev");
                doc
            }
        };
        let mut expected = raw().await;
        let mut reference = data.update_state.clone();
        let changes = [
            UpdateStateChange::Secondary { qts: 20 },
            UpdateStateChange::Primary {
                pts: 5,
                date: 6,
                seq: 7,
            },
            UpdateStateChange::Channel { id: 12, pts: 120 },
            UpdateStateChange::Channel { id: 10, pts: 101 },
            UpdateStateChange::RemoveChannel { id: 11 },
            UpdateStateChange::RemoveChannel { id: 99 },
        ];
        for change in &changes {
            let write = UpdateStateWrite::from_change(change);
            store.write_update_state("u", &write).await.expect("write");
            write.apply_to(&mut reference);
            let state = expected
                .get_document_mut("update_state")
                .expect("the state subdocument");
            for (name, value) in [
                ("pts", write.pts),
                ("qts", write.qts),
                ("date", write.date),
                ("seq", write.seq),
            ] {
                if let Some(value) = value {
                    state.insert(name, value);
                }
            }
            let channels = state.get_document_mut("channels").expect("channels");
            match &write.channels {
                session_core::ChannelsWrite::Set { id, pts } => {
                    channels.insert(id.to_string(), *pts);
                }
                session_core::ChannelsWrite::Remove { id } => {
                    channels.remove(id.to_string());
                }
                _ => {}
            }
            assert_eq!(raw().await, expected, "after {change:?}");
            assert_eq!(store.update_state("u").await.expect("state"), reference);
        }
        // Replacing the whole state replaces the channel table too.
        let all = UpdateStateWrite::from_change(&UpdateStateChange::All(Default::default()));
        store.write_update_state("u", &all).await.expect("write");
        assert_eq!(
            store.update_state("u").await.expect("state"),
            Default::default()
        );
    })
    .await;
}

/// A small deterministic generator for the random batches.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn random_peer(rng: &mut Rng) -> Peer {
    let mut peer = Peer::new(user(1 + rng.below(12) as i64));
    match rng.below(3) {
        0 => peer.usernames = None,
        1 => peer.usernames = Some(Vec::new()),
        _ => {
            peer.usernames = Some(
                (0..1 + rng.below(2))
                    .map(|_| format!("Name{}", rng.below(8)))
                    .collect(),
            );
        }
    }
    if rng.below(2) == 0 {
        peer.phone = Some(format!("+7 {}", rng.below(6)));
    }
    match rng.below(3) {
        0 => peer.access_hash = Some(AccessHash::min(rng.below(9) as i64)),
        1 => peer.access_hash = Some(AccessHash::full(rng.below(9) as i64)),
        _ => {}
    }
    peer
}

/// Random batches applied by the store leave the same peers, and the same
/// username and phone owners, as core's reference table; every stored
/// document carries exactly the lookup keys of its usernames.
#[tokio::test]
async fn peer_batches_store_exactly_what_core_plans() {
    with_database(|db| async move {
        for transactions in [true, false] {
            let store = if transactions {
                common::open(&db).await.expect("open")
            } else {
                without_transactions(&db).await
            };
            let name = format!("plans-{transactions}");
            store
                .import(
                    &name,
                    &SessionData::default(),
                    session_core::ImportMode::CreateOnly,
                    1,
                )
                .await
                .expect("create");
            let mut rng = Rng(0x2545_f491_4f6c_dd1d);
            let mut reference = PeerTable::default();
            for round in 0..40 {
                let peers: Vec<Peer> = (0..1 + rng.below(5))
                    .map(|_| random_peer(&mut rng))
                    .collect();
                let batch = PeerBatch::new(&peers).expect("valid");
                for peer in batch.peers() {
                    reference.upsert(peer);
                }
                store.cache_peers(&name, &batch).await.expect("batch");
                let docs = all(&db, "mtsession_peers", doc! { "session": &name }).await;
                let mut stored: Vec<Peer> = store.export(&name).await.expect("export").peers;
                stored.sort_by_key(|p| p.id);
                let expected: Vec<Peer> = reference.iter().collect();
                assert_eq!(stored, expected, "round {round}");
                for doc in &docs {
                    let names: Vec<(String, String)> = doc
                        .get_array("usernames")
                        .map(|a| {
                            a.iter()
                                .filter_map(Bson::as_document)
                                .map(|u| {
                                    (
                                        u.get_str("name").expect("name").to_owned(),
                                        u.get_str("key").expect("key").to_owned(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    for (name, key) in names {
                        assert_eq!(key, session_core::model::normalize_username(&name));
                    }
                }
                for i in 0..8 {
                    let key = format!("name{i}");
                    assert_eq!(
                        store
                            .peer_by_username(&name, &key)
                            .await
                            .expect("lookup")
                            .map(|p| p.id),
                        reference.by_username(&key).map(|p| p.id),
                        "round {round}: owner of {key}"
                    );
                }
                for i in 0..6 {
                    let phone = format!("7{i}");
                    assert_eq!(
                        store
                            .peer_by_phone(&name, &phone)
                            .await
                            .expect("lookup")
                            .map(|p| p.id),
                        reference.by_phone(&phone).map(|p| p.id),
                        "round {round}: owner of {phone}"
                    );
                }
            }
        }
    })
    .await;
}

/// Many tasks write overlapping batches of one session at once, all
/// claiming two shared usernames: every peer ends up stored, and every
/// username has exactly one owner.
async fn concurrent_batches(store: Store) {
    let session = store.open("busy").await.expect("create");
    let tasks = 6;
    let batches = 5;
    let per_batch = 10;
    let mut handles = Vec::new();
    for task in 0..tasks {
        let session = session.clone();
        handles.push(tokio::spawn(async move {
            for batch in 0..batches {
                let peers: Vec<Peer> = (0..per_batch)
                    .map(|i| {
                        let n = (task * batches + batch) * per_batch + i + 1;
                        Peer::new(user(n)).with_hash(n).with_username(if i < 2 {
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
    let total = u64::try_from(tasks * batches * per_batch).expect("count");
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
            .expect("lookup")
            .expect("someone owns it");
        assert_eq!(owner.username_keys(), vec![format!("shared{i}")]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_overlapping_batches_keep_one_owner_per_username() {
    with_database(|db| async move {
        concurrent_batches(Store::new(common::open(&db).await.expect("open"))).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_overlapping_batches_without_transactions_give_every_lock_back() {
    with_database(|db| async move {
        concurrent_batches(Store::new(without_transactions(&db).await)).await;
        let locks = collection(&db, "mtsession_locks").await;
        let held = doc! { "expires_at": { "$gt": session_mongo::mongodb::bson::DateTime::now() } };
        assert_eq!(locks.count_documents(held).await.expect("count"), 0);
    })
    .await;
}

/// Without transactions, a writer that gives the session's write lock back
/// and asks for it again at once does not keep another writer waiting until
/// it stops: the waiting one claims to be next, and gets the lock while the
/// first is still writing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_taking_the_lock_again_and_again_does_not_starve_another() {
    with_database(|db| async move {
        let store = Store::new(without_transactions(&db).await);
        let session = store.open("fair").await.expect("create");
        // Three writers take the lock again as soon as they give it back,
        // until a fixed time, with batches long enough that a waiting writer
        // backs off to its longest pauses.
        let until = Instant::now() + Duration::from_secs(15);
        let greedy: Vec<_> = (0..3i64)
            .map(|g| {
                let session = session.clone();
                tokio::spawn(async move {
                    let mut n = 0;
                    while Instant::now() < until {
                        let peers: Vec<Peer> = (0..150)
                            .map(|_| {
                                n += 1;
                                let id = g * 1_000_000 + n;
                                Peer::new(user(id)).with_username(format!("g{id}"))
                            })
                            .collect();
                        session.cache_peers(&peers).await.expect("greedy batch");
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
        for k in 0..3 {
            session
                .cache_peer(&Peer::new(user(9_000_000 + k)).with_username(format!("p{k}")))
                .await
                .expect("a patient batch");
        }
        let done = Instant::now();
        for task in greedy {
            task.await.expect("a greedy writer");
        }
        assert!(
            done < until,
            "the patient writer got its three batches in only after the greedy ones stopped"
        );
    })
    .await;
}

/// A database as the previous version of the crate wrote it: a schema
/// document without the layout record, no indexes yet, and documents of
/// every kind in the same layout.
async fn write_previous_version(db: &str) {
    let client = common::client().await;
    let database = client.database(db);
    database
        .collection::<Document>("mtsession_meta")
        .insert_one(
            doc! { "_id": "schema", "version": 1_i64, "created_at": Bson::DateTime(
            session_mongo::mongodb::bson::DateTime::from_millis(1_600_000_000_000)) },
        )
        .await
        .expect("schema");
    let key = Bson::Binary(Binary {
        subtype: BinarySubtype::Generic,
        bytes: vec![9; 256],
    });
    database
        .collection::<Document>("mtsession_sessions")
        .insert_one(doc! {
            "_id": "old",
            "home_dc": 2,
            "dcs": {
                "2": { "ipv4": "149.154.167.51:443", "ipv6": Bson::Null, "auth_key": key },
                "4": { "ipv4": Bson::Null, "ipv6": "[2001:67c:4e8:f004::a]:443", "auth_key": Bson::Null },
            },
            "self_user": { "id": 5_i64, "is_bot": false },
            "api_id": 6,
            "test_mode": false,
            "takeout_id": Bson::Null,
            "created_at": session_mongo::mongodb::bson::DateTime::from_millis(1_600_000_000_000),
            "updated_at": session_mongo::mongodb::bson::DateTime::from_millis(1_600_000_001_000),
            "update_state": { "pts": 1, "qts": 2, "date": 3, "seq": 4, "channels": { "77": 70 } },
            "rev": 3_i64,
        })
        .await
        .expect("session");
    database
        .collection::<Document>("mtsession_peers")
        .insert_many([
            doc! { "session": "old", "id": 5_i64, "kind": 1_i64, "hash": -5_i64, "hash_min": false,
            "usernames": [{ "name": "Five", "key": "five" }], "phone": "15550005",
            "name": "Five", "last_seen": 17_i64 },
            doc! { "session": "old", "id": -1_000_000_000_077_i64, "kind": 4_i64, "hash": 77_i64,
            "hash_min": true, "usernames": [] },
        ])
        .await
        .expect("peers");
    database
        .collection::<Document>("mtsession_files")
        .insert_one(doc! { "session": "old", "md5": Bson::Binary(Binary {
        subtype: BinarySubtype::Generic, bytes: vec![1; 16] }),
        "size": 100_i64, "kind": 1_i64, "file_id": 8_i64, "hash": 9_i64 })
        .await
        .expect("files");
}

#[tokio::test]
async fn data_written_by_the_previous_version_opens_reads_and_updates() {
    with_database(|db| async move {
        write_previous_version(&db).await;
        // Read-only: reads everything, adds nothing.
        let reader = Store::new(
            MongoStore::builder(&common::url())
                .database(&db)
                .mode(session_core::OpenMode::ReadOnly)
                .open()
                .await
                .expect("read-only open"),
        );
        let data = reader.export("old").await.expect("export");
        assert_eq!(data.home_dc, 2);
        assert_eq!(data.dcs.len(), 2);
        assert_eq!(
            data.dcs[0].auth_key.as_ref().map(|k| k.expose()[0]),
            Some(9)
        );
        assert_eq!(data.self_user.map(|u| u.id), Some(5));
        assert_eq!(data.update_state.channels.get(&77), Some(&70));
        assert_eq!(data.peers.len(), 2);
        assert_eq!(data.sent_files.len(), 1);
        let meta = all(&db, "mtsession_meta", doc! {}).await;
        assert!(meta[0].get("layout").is_none(), "a read-only open wrote");
        let indexes = collection(&db, "mtsession_peers")
            .await
            .list_index_names()
            .await
            .expect("indexes");
        assert_eq!(indexes, ["_id_"], "a read-only open created indexes");

        // Read-write: creates the indexes once and records them.
        let store = Store::new(common::open(&db).await.expect("open"));
        let meta = all(&db, "mtsession_meta", doc! {}).await;
        assert_eq!(meta[0].get("layout"), Some(&Bson::Int64(1)));
        assert_eq!(
            meta[0].get("version"),
            Some(&Bson::Int64(1)),
            "version kept"
        );
        let session = store.session("old").expect("name");
        assert_eq!(
            session
                .peer_by_username("FIVE")
                .await
                .expect("lookup")
                .map(|p| p.id),
            Some(user(5))
        );
        assert_eq!(
            session
                .peer_by_phone("+1 555 0005")
                .await
                .expect("lookup")
                .map(|p| p.id),
            Some(user(5))
        );
        session
            .cache_peer(&Peer::new(user(6)).with_username("five"))
            .await
            .expect("write");
        assert_eq!(
            session
                .peer(user(5))
                .await
                .expect("read")
                .and_then(|p| p.usernames),
            Some(vec![])
        );
        session
            .set_update_state(UpdateStateChange::Channel { id: 77, pts: 71 })
            .await
            .expect("state");
        assert_eq!(session.update_state().await.expect("state").pts, 1);
        assert_eq!(session.home_dc().await.expect("home"), 2);
        assert_eq!(
            session.metadata().await.expect("meta").created_at_ms,
            1_600_000_000_000
        );
    })
    .await;
}

#[tokio::test]
async fn a_store_opened_before_skips_creating_its_indexes() {
    with_database(|db| async move {
        drop(common::open(&db).await.expect("create"));
        let peers = collection(&db, "mtsession_peers").await;
        peers
            .drop_index("session_phone")
            .await
            .expect("drop an index");
        // The schema document records the layout: opening creates nothing.
        drop(common::open(&db).await.expect("open"));
        assert!(
            !peers
                .list_index_names()
                .await
                .expect("indexes")
                .contains(&"session_phone".to_owned()),
            "an open of a known store created indexes"
        );
        // Without the record, the next writable open creates them again.
        collection(&db, "mtsession_meta")
            .await
            .update_one(
                doc! { "_id": "schema" },
                doc! { "$unset": { "layout": "" } },
            )
            .await
            .expect("write");
        drop(common::open(&db).await.expect("open"));
        assert!(
            peers
                .list_index_names()
                .await
                .expect("indexes")
                .contains(&"session_phone".to_owned())
        );
    })
    .await;
}

/// The commands the store sent to `db` while `body` ran, from the
/// server's profiler: `(command name, collection, filter)`.
async fn profiled<F, Fut>(db: &str, body: F) -> Vec<(String, String, Document)>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let client = common::client().await;
    let database = client.database(db);
    database
        .run_command(doc! { "profile": 2 })
        .await
        .expect("profiling on");
    let started = session_mongo::mongodb::bson::DateTime::now();
    body().await;
    database
        .run_command(doc! { "profile": 0 })
        .await
        .expect("profiling off");
    let entries: Vec<Document> = database
        .collection::<Document>("system.profile")
        .find(doc! { "ts": { "$gte": started } })
        .sort(doc! { "ts": 1 })
        .await
        .expect("profile")
        .try_collect()
        .await
        .expect("profile");
    entries
        .into_iter()
        .filter_map(|entry| {
            let command = entry.get_document("command").ok()?.clone();
            let (name, target) = command.iter().next()?;
            let target = target.as_str().unwrap_or_default().to_owned();
            if name == "profile" {
                return None;
            }
            let filter = command
                .get_document("filter")
                .or_else(|_| command.get_document("query"))
                .cloned()
                .unwrap_or_default();
            Some((name.clone(), target, filter))
        })
        .collect()
}

/// The index a find with `filter` on `collection` uses, from `explain`.
async fn index_of(db: &str, collection: &str, filter: &Document) -> Option<String> {
    let client = common::client().await;
    let plan = client
        .database(db)
        .run_command(doc! {
            "explain": { "find": collection, "filter": filter.clone() },
            "verbosity": "queryPlanner",
        })
        .await
        .expect("explain");
    let mut stage = plan
        .get_document("queryPlanner")
        .and_then(|p| p.get_document("winningPlan"))
        .ok()?
        .clone();
    loop {
        if let Ok(name) = stage.get_str("indexName") {
            return Some(name.to_owned());
        }
        stage = stage.get_document("inputStage").ok()?.clone();
    }
}

/// Every query the store sends for lookups and peer batches goes through
/// an index (checked with `explain` on the filters the profiler recorded),
/// and opening a known store, reading the home DC or a peer costs one
/// command each.
#[tokio::test]
async fn lookups_and_batches_query_through_indexes_in_few_commands() {
    with_database(|db| async move {
        let store = Store::new(common::open(&db).await.expect("open"));
        let session = store.open("q").await.expect("create");
        session
            .cache_peers(&[Peer::new(user(1)).with_username("one").with_phone("111")])
            .await
            .expect("seed");
        let commands = profiled(&db, || async {
            let s = store.session("q").expect("name");
            s.peer(user(1)).await.expect("by id");
            s.peers(&[user(1), user(2), user(3)]).await.expect("by ids");
            s.peer_by_username("ONE").await.expect("by username");
            s.peer_by_phone("111").await.expect("by phone");
            s.cache_peers(&[
                Peer::new(user(2)).with_username("one").with_phone("222"),
                Peer::new(user(3)).with_username("three").with_phone("111"),
            ])
            .await
            .expect("a batch moving a username and a phone");
        })
        .await;
        let finds: Vec<_> = commands
            .iter()
            .filter(|(name, target, _)| name == "find" && target == "mtsession_peers")
            .collect();
        assert!(finds.len() >= 7, "{commands:?}");
        for (_, target, filter) in finds {
            let index = index_of(&db, target, filter).await;
            assert!(
                matches!(
                    index.as_deref(),
                    Some("session_id" | "session_username" | "session_phone")
                ),
                "{filter} uses {index:?}"
            );
        }
        let moved = store.session("q").expect("name");
        assert_eq!(
            moved
                .peer_by_username("one")
                .await
                .expect("lookup")
                .map(|p| p.id),
            Some(user(2))
        );
        assert_eq!(
            moved
                .peer_by_phone("111")
                .await
                .expect("lookup")
                .map(|p| p.id),
            Some(user(3))
        );

        let commands = profiled(&db, || async {
            let reopened = Store::new(common::open(&db).await.expect("reopen"));
            reopened
                .session("q")
                .expect("name")
                .home()
                .await
                .expect("home");
        })
        .await;
        let names: Vec<(&str, &str)> = commands
            .iter()
            .map(|(name, target, _)| (name.as_str(), target.as_str()))
            .collect();
        assert_eq!(
            names,
            [("find", "mtsession_meta"), ("find", "mtsession_sessions")],
            "opening a known store and reading the home DC and keys"
        );
    })
    .await;
}

/// A copy moves the documents inside the server without decoding them:
/// fields this version does not know are copied too.
#[tokio::test]
async fn copy_keeps_documents_whole() {
    with_database(|db| async move {
        let store = Store::new(common::open(&db).await.expect("open"));
        let session = store.open("from").await.expect("create");
        session
            .cache_peer(&Peer::new(user(1)).with_username("x"))
            .await
            .expect("peer");
        collection(&db, "mtsession_peers")
            .await
            .update_one(
                doc! { "session": "from", "id": 1_i64 },
                doc! { "$set": { "extra": "kept" } },
            )
            .await
            .expect("write");
        store.copy("from", "to", false).await.expect("copy");
        let copied = all(&db, "mtsession_peers", doc! { "session": "to" }).await;
        assert_eq!(copied.len(), 1);
        assert_eq!(copied[0].get_str("extra").ok(), Some("kept"));
        let err = store.copy("from", "to", false).await.expect_err("exists");
        assert_eq!(err.kind(), ErrorKind::AlreadyExists);
        assert_eq!(
            all(&db, "mtsession_peers", doc! { "session": "to" })
                .await
                .len(),
            1
        );
    })
    .await;
}

#[tokio::test]
async fn fallback_without_transactions_keeps_the_rules() {
    with_database(|db| async move {
        let store = Store::new(without_transactions(&db).await);
        let session = store.open("plain").await.expect("create");
        let a = user(1);
        let b = user(2);
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
        let old = session.peer(a).await.expect("read").expect("kept");
        assert_eq!((old.usernames, old.phone), (Some(vec![]), None));
        store.copy("plain", "copy", false).await.expect("copy");
        assert_eq!(
            store.export("copy").await.expect("export"),
            store.export("plain").await.expect("export")
        );
        assert!(store.delete("plain").await.expect("delete"));
        assert_eq!(
            session.peer_count().await.expect_err("gone").kind(),
            ErrorKind::NotFound
        );
        let again = store.open("plain").await.expect("recreate");
        assert_eq!(again.peer_count().await.expect("count"), 0, "no orphans");
        // A deletion interrupted by the previous version left peers of a
        // session that no longer exists: creating the name again drops them.
        collection(&db, "mtsession_peers")
            .await
            .insert_one(doc! { "session": "ghost", "id": 9_i64 })
            .await
            .expect("orphan");
        let ghost = store.open("ghost").await.expect("create");
        assert_eq!(ghost.peer_count().await.expect("count"), 0);
        let locks = collection(&db, "mtsession_locks").await;
        assert_eq!(locks.count_documents(doc! {}).await.expect("count"), 0);
    })
    .await;
}

#[tokio::test]
async fn retryable_writes_on() {
    // The other tests turn retryable writes off for speed (see common::url);
    // this one runs the main paths with the driver's default.
    let configured = common::configured_url();
    with_database(|db| async move {
        let store = Store::new(
            MongoStore::builder(&configured)
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
        let peer = Peer::new(user(9)).with_hash(9).with_username("Nine");
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
        let one = Store::new(common::open(&db).await.expect("open"));
        let two = Store::new(common::open(&db).await.expect("open"));
        let ttl = Duration::from_millis(400);
        let held = one.acquire_lease("s", "one", ttl).await.expect("first");
        let err = two.acquire_lease("s", "two", ttl).await.expect_err("held");
        match err {
            Error::LeaseHeld {
                owner, until_ms, ..
            } => {
                assert_eq!((owner.as_str(), until_ms), ("one", held.expires_at_ms));
            }
            other => panic!("expected LeaseHeld, got {other:?}"),
        }
        let stored = all(&db, "mtsession_leases", doc! {}).await;
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].get_str("owner").ok(), Some("one"));
        assert!(matches!(
            stored[0].get("expires_at"),
            Some(Bson::DateTime(_))
        ));
        tokio::time::sleep(ttl + Duration::from_millis(50)).await;
        two.acquire_lease("s", "two", ttl)
            .await
            .expect("expired lease is taken over");
        assert!(
            !one.release_lease("s", "one").await.expect("release"),
            "not the holder"
        );
        assert!(two.release_lease("s", "two").await.expect("release"));
        assert!(all(&db, "mtsession_leases", doc! {}).await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn unreachable_server_is_unavailable_naming_host_and_cause() {
    let secret = "Sup3rS3cretPw";
    let url = format!("mongodb://alice:{secret}@127.0.0.1:1/?directConnection=true");
    let builder = MongoStore::builder(&url).server_selection_timeout(Duration::from_millis(500));
    assert!(!format!("{builder:?}").contains(secret));
    let started = Instant::now();
    let err = builder.open().await.expect_err("nothing listens on port 1");
    assert!(
        started.elapsed() < Duration::from_millis(500) + Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("127.0.0.1:1") && text.contains("connection refused"),
        "{text}"
    );
    assert!(!shown(&err).contains(secret), "{}", shown(&err));
    assert!(std::error::Error::source(&err).is_some() || text.contains("nothing was sent"));

    // The URL's own timeout option bounds the wait as well.
    let started = Instant::now();
    let err = MongoStore::open("mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300")
        .await
        .expect_err("nothing listens on port 1");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(started.elapsed() < Duration::from_millis(2300));
}

#[tokio::test]
async fn an_unknown_host_is_unavailable_and_named() {
    let err = MongoStore::builder("mongodb://no-such-host.invalid:27017/")
        .server_selection_timeout(Duration::from_millis(800))
        .open()
        .await
        .expect_err("no such host");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("no-such-host.invalid"), "{err}");
}

#[tokio::test]
async fn malformed_urls_and_bad_names_are_invalid_input_without_the_password() {
    let secret = "Sup3rS3cretPw";
    let err = MongoStore::open(&format!(
        "mongodb://alice:{secret}@h/?w=notanumber&wtimeoutMS=x"
    ))
    .await
    .expect_err("malformed");
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(!shown(&err).contains(secret), "{}", shown(&err));
    assert!(!redact_url(&format!("mongodb://a:{secret}@h")).contains(secret));
    for name in ["", "a.b", "has space", "x$y", &"d".repeat(64)] {
        let err = MongoStore::builder(&common::url())
            .database(name)
            .open()
            .await
            .expect_err(name);
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{name:?}: {err}");
    }
    for prefix in ["a$", "system.x"] {
        let err = MongoStore::builder(&common::url())
            .collection_prefix(prefix)
            .open()
            .await
            .expect_err(prefix);
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{prefix:?}: {err}");
    }
    let err = MongoStore::builder(&common::url())
        .response_timeout(Duration::ZERO)
        .open()
        .await
        .expect_err("a zero timeout");
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

#[tokio::test]
async fn debug_shows_where_but_never_the_password_or_keys() {
    with_database(|db| async move {
        let store = common::open(&db).await.expect("open");
        let shown = format!("{store:?}");
        assert!(
            shown.contains(&db) && shown.contains("mtsession_"),
            "{shown}"
        );
        let url = "mongodb://u:hunter2@h:1/?w=1";
        let builder = MongoStore::builder(url);
        assert!(!format!("{builder:?}").contains("hunter2"));
        let mut data = SessionData::default();
        data.dcs[0].auth_key = Some(session_core::AuthKey::new([0xAB; 256]));
        let session = Store::new(store);
        session.import("k", &data).await.expect("import");
        let everything = BTreeMap::from([("export", format!("{:?}", session.export("k").await))]);
        assert!(!format!("{everything:?}").contains("abababab"));
    })
    .await;
}
