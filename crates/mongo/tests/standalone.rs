//! The store on a standalone server (no replica set, so no transactions):
//! it must notice when it opens, declare `atomic_multi_key_writes = false`,
//! and still keep every rule through its write locks. The test starts a
//! private SecantusDB with `--standalone` on a free loopback port (see
//! `tests/outage.rs` for how it is found); without it the test is skipped,
//! and fails under `MTSESSION_REQUIRE_SERVICES=1`.

mod common;

use session_core::{Peer, PeerId, SessionBackend, SessionData, Store};
use session_mongo::MongoStore;
use session_mongo::mongodb::bson::{Document, doc};

use common::{Storage, TestServer, secantusd_or_skip};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_server_works_without_transactions() {
    let Some(_) = secantusd_or_skip("standalone_server_works_without_transactions") else {
        return;
    };
    let server = TestServer::start(Storage::Memory, &["--standalone"]);
    let mongo = MongoStore::builder(&format!("{}&retryWrites=false", server.url("")))
        .database("solo")
        .open()
        .await
        .expect("open");
    assert!(
        !mongo.uses_transactions(),
        "a standalone server has no transactions"
    );
    assert!(!mongo.capabilities().atomic_multi_key_writes);
    let client = mongo.client().clone();
    let store = Store::new(mongo);

    let session = store.open("solo").await.expect("create");
    let a = PeerId::user(1).expect("valid");
    let b = PeerId::user(2).expect("valid");
    session
        .cache_peer(&Peer::new(a).with_hash(1).with_username("Taken"))
        .await
        .expect("a");
    session
        .cache_peer(&Peer::new(b).with_hash(2).with_username("taken"))
        .await
        .expect("b");
    let owner = session
        .peer_by_username("TAKEN")
        .await
        .expect("lookup")
        .map(|p| p.id);
    assert_eq!(owner, Some(b));
    let data = SessionData {
        home_dc: 5,
        ..SessionData::default()
    };
    store.import("imported", &data).await.expect("import");
    store.copy("imported", "copied", false).await.expect("copy");
    assert_eq!(store.export("copied").await.expect("export").home_dc, 5);
    assert!(store.delete("solo").await.expect("delete"));
    assert_eq!(store.list().await.expect("list"), ["copied", "imported"]);
    let locks = client
        .database("solo")
        .collection::<Document>("mtsession_locks");
    assert_eq!(
        locks.count_documents(doc! {}).await.expect("count"),
        0,
        "locks given back"
    );
}
