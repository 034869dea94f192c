//! Concurrency tests of the fault suite, on the test server
//! (`MTSESSION_TEST_MONGO_URL`): two stores, each with its own driver client
//! and connection pool (to the server, two processes), racing
//!
//! - create-only imports of one session name: exactly one wins, the other
//!   gets `AlreadyExists` and writes nothing — with transactions and without
//!   them (the write-lock path);
//! - the creation of one database: both opens succeed and leave one schema
//!   document and one set of indexes.
//!
//! Each test uses its own database and drops it afterwards.

mod common;

use std::sync::Arc;

use futures::TryStreamExt;
use session_core::{ErrorKind, FileKind, Peer, PeerId, SentFile, SentFileKey, SessionData, Store};
use session_mongo::MongoStore;
use session_mongo::mongodb::bson::{Document, doc};
use tokio::sync::Barrier;

use common::{url, with_database};

/// Races per test.
const RACES: usize = 12;

async fn store(database: &str, transactions: bool) -> Store {
    Store::new(
        MongoStore::builder(&url())
            .database(database)
            .use_transactions(transactions)
            .open()
            .await
            .expect("open"),
    )
}

/// A session that says which contender wrote it, in every kind of data.
fn data(contender: i64, race: usize) -> SessionData {
    let mut data = SessionData {
        home_dc: if contender == 1 { 2 } else { 4 },
        api_id: Some(i32::try_from(contender * 1000).unwrap_or(0)),
        ..SessionData::default()
    };
    data.update_state.pts = i32::try_from(race).unwrap_or(0) + 1;
    data.update_state.channels.insert(contender, 7);
    data.peers = (1..=20)
        .map(|i| {
            Peer::new(PeerId::user(contender * 100 + i).expect("id"))
                .with_hash(i)
                .with_username(format!("c{contender}p{i}"))
        })
        .collect();
    data.sent_files.push((
        SentFileKey {
            md5: [u8::try_from(contender).unwrap_or(0); 16],
            size: contender,
            kind: FileKind::Photo,
        },
        SentFile {
            id: contender,
            access_hash: -contender,
        },
    ));
    data
}

async fn create_only_imports_race(transactions: bool) {
    with_database(|db| async move {
        let one = store(&db, transactions).await;
        let two = store(&db, transactions).await;
        for race in 0..RACES {
            let name = format!("race-{race}");
            let barrier = Arc::new(Barrier::new(2));
            let contend = |store: Store, contender: i64| {
                let barrier = Arc::clone(&barrier);
                let name = name.clone();
                async move {
                    barrier.wait().await;
                    store.import_new(&name, &data(contender, race)).await
                }
            };
            let (a, b) = tokio::join!(
                tokio::spawn(contend(one.clone(), 1)),
                tokio::spawn(contend(two.clone(), 2))
            );
            let outcomes = [a.expect("task"), b.expect("task")];
            let winners: Vec<usize> = outcomes
                .iter()
                .enumerate()
                .filter(|(_, r)| r.is_ok())
                .map(|(i, _)| i)
                .collect();
            assert_eq!(winners.len(), 1, "race {race}: {outcomes:?}");
            let winner = winners[0];
            let loser = &outcomes[1 - winner];
            let err = loser.as_ref().expect_err("the other one lost");
            assert_eq!(err.kind(), ErrorKind::AlreadyExists, "race {race}: {err}");
            // The winner's session, whole; nothing of the loser's.
            let mut expected = data(i64::try_from(winner).unwrap_or(0) + 1, race);
            expected.canonicalize();
            for reader in [&one, &two] {
                assert_eq!(
                    reader.export(&name).await.expect("export"),
                    expected,
                    "race {race}: the stored session is not the winner's alone"
                );
            }
            let loser_peer =
                PeerId::user((2 - i64::try_from(winner).unwrap_or(0)) * 100 + 1).expect("id");
            assert_eq!(
                one.session(&name)
                    .expect("name")
                    .peers(&[loser_peer])
                    .await
                    .expect("peers"),
                vec![None]
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_create_only_imports_one_wins_with_transactions() {
    create_only_imports_race(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_create_only_imports_one_wins_without_transactions() {
    create_only_imports_race(false).await;
}

/// The names of the indexes of a collection.
async fn index_names(db: &str, collection: &str) -> Vec<String> {
    let client = common::client().await;
    let mut names: Vec<String> = client
        .database(db)
        .collection::<Document>(collection)
        .list_index_names()
        .await
        .expect("indexes");
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_two_stores_create_one_database_at_once() {
    for race in 0..RACES / 2 {
        with_database(|db| async move {
            let barrier = Arc::new(Barrier::new(2));
            let open = |contender: i64| {
                let barrier = Arc::clone(&barrier);
                let db = db.clone();
                async move {
                    barrier.wait().await;
                    let store = store(&db, true).await;
                    let name = format!("s{contender}");
                    store.create(&name).await.expect("create");
                    store
                }
            };
            let (a, b) = tokio::join!(tokio::spawn(open(1)), tokio::spawn(open(2)));
            let (a, b) = (a.expect("first open"), b.expect("second open"));
            for store in [&a, &b] {
                assert_eq!(
                    store.list().await.expect("list"),
                    ["s1", "s2"],
                    "race {race}"
                );
            }
            let client = common::client().await;
            let schema: Vec<Document> = client
                .database(&db)
                .collection::<Document>("mtsession_meta")
                .find(doc! {})
                .await
                .expect("find")
                .try_collect()
                .await
                .expect("documents");
            assert_eq!(schema.len(), 1, "race {race}: {schema:?}");
            assert_eq!(schema[0].get_i64("version").expect("version"), 1);
            assert_eq!(
                index_names(&db, "mtsession_peers").await,
                ["_id_", "session_id", "session_phone", "session_username"],
                "race {race}"
            );
            assert_eq!(
                index_names(&db, "mtsession_files").await,
                ["_id_", "session_file"],
                "race {race}"
            );
        })
        .await;
    }
}
