//! The store on a standalone server (no replica set, so no transactions):
//! it must notice, declare `atomic_multi_key_writes = false`, and still
//! keep every rule through its write locks.
//!
//! The server is `MTSESSION_TEST_MONGO_STANDALONE_URL` when set; otherwise
//! the test starts a private SecantusDB with `--standalone` on a free port
//! of 127.0.0.1 (from `MTSESSION_TEST_SECANTUSD`, or the virtualenv that
//! `cargo xtask` installs under `target/secantus-venv`) and stops it after.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use session_core::{Peer, PeerId, SessionData, SessionStore, SessionStoreExt};
use session_mongo::MongoStore;
use session_mongo::mongodb::bson::{Document, doc, oid::ObjectId};

/// A server process this test started; killed when dropped.
struct Private(Child);

impl Drop for Private {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn secantusd() -> PathBuf {
    if let Some(path) = std::env::var_os("MTSESSION_TEST_SECANTUSD") {
        return PathBuf::from(path);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    );
    target.join("secantus-venv/bin/secantusd-py")
}

/// The standalone server's URL, and the process when this test started it.
fn standalone() -> (String, Option<Private>) {
    if let Ok(url) = std::env::var("MTSESSION_TEST_MONGO_STANDALONE_URL") {
        return (url, None);
    }
    let program = secantusd();
    assert!(
        program.exists(),
        "no standalone MongoDB server: set MTSESSION_TEST_MONGO_STANDALONE_URL, or \
         MTSESSION_TEST_SECANTUSD to a secantusd-py binary (cargo xtask installs one \
         at {})",
        program.display()
    );
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(&program)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args([
            "--storage-path",
            ":memory:",
            "--standalone",
            "--log-level",
            "WARNING",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    let child = Private(child);
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let started = Instant::now();
    while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{} did not listen on {address} within 60 s",
            program.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (
        format!("mongodb://127.0.0.1:{port}/?retryWrites=false"),
        Some(child),
    )
}

#[tokio::test]
async fn standalone_server_works_without_transactions() {
    let (url, _server) = standalone();
    let database = format!("mtsession_test_{}", ObjectId::new().to_hex());
    let mongo = MongoStore::builder(url)
        .database(&database)
        .open()
        .await
        .expect("open");
    let client = mongo.client().clone();
    let outcome = AssertUnwindSafe(exercise(mongo, &database))
        .catch_unwind()
        .await;
    client
        .database(&database)
        .drop()
        .await
        .expect("drop the test database");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn exercise(mongo: MongoStore, database: &str) {
    assert!(
        !mongo.uses_transactions(),
        "a standalone server has no transactions"
    );
    assert!(!mongo.capabilities().atomic_multi_key_writes);
    let client = mongo.client().clone();
    let store: Arc<dyn SessionStore> = Arc::new(mongo);

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
        .database(database)
        .collection::<Document>("mtsession_locks");
    assert_eq!(
        locks.count_documents(doc! {}).await.expect("count"),
        0,
        "locks given back"
    );
}
