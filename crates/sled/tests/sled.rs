//! Backend-specific tests: persistence, the directory lock, file modes,
//! schema versions, damaged data, crash leftovers and the key layout.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::path::Path;
use std::time::{Duration, Instant};

use session_core::{
    AuthKey, DcOption, Durability, Error, ErrorKind, FileKind, Peer, PeerId, PeerKind, SelfUser,
    SentFile, SentFileKey, Store, UpdateState, UpdateStateChange, copy_between,
};
use session_sled::{META_TREE, SCHEMA_VERSION, SCHEMA_VERSION_KEY, SledStore};

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("mtsession-sled-test-")
        .tempdir()
        .expect("a temporary directory")
}

fn user(id: i64) -> PeerId {
    PeerId::user(id).expect("valid user id")
}

fn channel(id: i64) -> PeerId {
    PeerId::channel(id).expect("valid channel id")
}

/// Opens sled directly on a store directory, waiting out the lock of a
/// store dropped a moment ago.
fn raw_open(path: &Path) -> sled::Db {
    let started = Instant::now();
    loop {
        match sled::open(path) {
            Ok(db) => return db,
            Err(e) if started.elapsed() > Duration::from_secs(5) => panic!("raw open: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

async fn open(path: &Path) -> Store {
    Store::new(SledStore::open(path).await.expect("store opens"))
}

/// Writes every kind of data the store keeps into session `name`.
async fn fill(store: &Store, name: &str) -> SentFileKey {
    let session = store.open(name).await.expect("session opens");
    session.set_home_dc(4).await.expect("home dc");
    session
        .set_dc_option(&DcOption {
            id: 4,
            ipv4: Some(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 4), 443)),
            ipv6: Some(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 443, 0, 0)),
            auth_key: Some(AuthKey::new([0x42; 256])),
        })
        .await
        .expect("dc option");
    session
        .set_auth_key(2, Some(AuthKey::new([7; 256])))
        .await
        .expect("media dc key");
    session
        .set_self_user(Some(SelfUser {
            id: 1000,
            is_bot: true,
        }))
        .await
        .expect("self user");
    session
        .set_metadata(Some(611335), true)
        .await
        .expect("metadata");
    session.set_takeout_id(Some(-99)).await.expect("takeout");
    session
        .set_update_state(UpdateStateChange::All(UpdateState {
            pts: 10,
            qts: 20,
            date: 30,
            seq: 40,
            channels: BTreeMap::from([(5, 50), (6, 60)]),
        }))
        .await
        .expect("state");
    session
        .set_update_state(UpdateStateChange::Channel { id: 7, pts: 70 })
        .await
        .expect("channel");
    session
        .cache_peers(&[
            Peer::new(user(1))
                .with_kind(PeerKind::User)
                .with_hash(11)
                .with_username("Alice")
                .with_phone("+1 555 0101")
                .with_name("Alice A."),
            Peer::new(channel(5))
                .with_kind(PeerKind::Megagroup)
                .with_min_hash(55),
            Peer::new(PeerId::chat(3).expect("chat"))
                .with_kind(PeerKind::Chat)
                .with_name("Chat"),
        ])
        .await
        .expect("peers");
    let file_key = SentFileKey {
        md5: [9; 16],
        size: 1234,
        kind: FileKind::Photo,
    };
    session
        .cache_sent_file(
            &file_key,
            &SentFile {
                id: 77,
                access_hash: -77,
            },
        )
        .await
        .expect("sent file");
    file_key
}

#[tokio::test]
async fn every_kind_of_data_survives_reopen() {
    let dir = tempdir();
    let store = open(dir.path()).await;
    let file_key = fill(&store, "alice").await;
    store.create("empty").await.expect("create");
    let lease = store
        .acquire_lease("alice", "worker-1", Duration::from_secs(60))
        .await
        .expect("lease");
    let before = store.export("alice").await.expect("export");
    let meta_before = store.metadata("alice").await.expect("metadata");
    drop(store);

    let store = open(dir.path()).await;
    assert_eq!(
        store.list().await.expect("list"),
        vec!["alice".to_owned(), "empty".to_owned()]
    );
    assert_eq!(store.export("alice").await.expect("export"), before);
    assert_eq!(
        store.metadata("alice").await.expect("metadata"),
        meta_before
    );
    let session = store.session("alice").expect("handle");
    assert_eq!(
        session.home_auth_key().await.expect("key"),
        Some(AuthKey::new([0x42; 256]))
    );
    assert_eq!(session.peer_count().await.expect("count"), 3);
    let alice = session
        .peer_by_username("@ALICE")
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(alice.id, user(1));
    assert_eq!(
        session
            .peer_by_phone("15550101")
            .await
            .expect("lookup")
            .map(|p| p.id),
        Some(user(1))
    );
    assert_eq!(
        session.sent_file(&file_key).await.expect("file"),
        Some(SentFile {
            id: 77,
            access_hash: -77
        })
    );
    let state = session.update_state().await.expect("state");
    assert_eq!(state.channels, BTreeMap::from([(5, 50), (6, 60), (7, 70)]));
    assert_eq!(
        (state.pts, state.qts, state.date, state.seq),
        (10, 20, 30, 40)
    );
    // The lease survived too: another owner is refused until it expires.
    match store
        .acquire_lease("alice", "worker-2", Duration::from_secs(60))
        .await
    {
        Err(Error::LeaseHeld {
            owner, until_ms, ..
        }) => {
            assert_eq!(owner, "worker-1");
            assert_eq!(until_ms, lease.expires_at_ms);
        }
        other => panic!("expected LeaseHeld, got {other:?}"),
    }
    assert_eq!(
        store.export("empty").await.expect("export"),
        session_core::SessionData::default()
    );
}

#[tokio::test]
async fn write_behind_data_survives_flush_and_reopen() {
    let dir = tempdir();
    let store = Store::new(
        SledStore::builder(dir.path())
            .durability(Durability::WriteBehind {
                max_delay: Duration::from_millis(200),
            })
            .open()
            .await
            .expect("opens"),
    );
    fill(&store, "wb").await;
    let session = store.session("wb").expect("handle");
    for pts in 0..500 {
        session
            .set_update_state(UpdateStateChange::Primary {
                pts,
                date: pts,
                seq: pts,
            })
            .await
            .expect("state");
    }
    store.flush().await.expect("flush");
    let before = store.export("wb").await.expect("export");
    assert_eq!(before.update_state.pts, 499);
    drop((session, store));
    let store = open(dir.path()).await;
    assert_eq!(store.export("wb").await.expect("export"), before);
}

/// Issue 8 #8: two stores on one directory in one process share its
/// database (sled allows one opener per directory), so a copy between two
/// sessions of one store through two handles works. Before the registry the
/// second open failed with "in use: this process has it open already".
#[tokio::test]
async fn two_stores_on_one_directory_share_it() {
    let dir = tempdir();
    let first = open(dir.path()).await;
    fill(&first, "a").await;
    let second = open(dir.path()).await;
    // The same directory through another spelling of its path is the same store.
    let dotted = open(&dir.path().join(".")).await;
    copy_between(&first, "a", &second, "b", false)
        .await
        .expect("copy between two handles of one store");
    assert_eq!(
        dotted.export("b").await.expect("b"),
        first.export("a").await.expect("a")
    );
    // Writes through one handle are seen through the other at once.
    second.set_home_dc("a", 5).await.expect("write");
    assert_eq!(first.home_dc("a").await.expect("read"), 5);
    // A second handle asking for another durability policy is refused, clearly.
    let err = SledStore::builder(dir.path())
        .durability(Durability::WriteBehind {
            max_delay: Duration::from_millis(50),
        })
        .open()
        .await
        .expect_err("other durability");
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("same durability"), "{err}");
    drop((first, second, dotted));
    for _ in 0..20 {
        let store = open(dir.path()).await;
        assert!(store.exists("b").await.expect("exists"));
    }
}

#[cfg(unix)]
#[tokio::test]
async fn directory_and_files_are_private() {
    use std::os::unix::fs::PermissionsExt;

    let parent = tempdir();
    let path = parent.path().join("nested").join("store");
    let store = open(&path).await;
    fill(&store, "s").await;
    drop(store);
    let check = |path: &Path| {
        let mut seen_files = 0;
        let mut stack = vec![path.to_owned()];
        while let Some(dir) = stack.pop() {
            let mode = std::fs::metadata(&dir).expect("dir").permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{} has mode {mode:o}", dir.display());
            for entry in std::fs::read_dir(&dir).expect("read dir") {
                let entry = entry.expect("entry");
                if entry.file_type().expect("type").is_dir() {
                    stack.push(entry.path());
                } else {
                    seen_files += 1;
                    let mode = entry.metadata().expect("file").permissions().mode() & 0o777;
                    assert_eq!(mode, 0o600, "{} has mode {mode:o}", entry.path().display());
                }
            }
        }
        seen_files
    };
    // Reopen and check what sled created, including the database and config files.
    let store = open(&path).await;
    assert!(check(&path) >= 2, "sled's files were not found");
    assert!(path.join("db").exists() && path.join("conf").exists());
    store.flush().await.expect("flush");
    check(&path);
}

#[tokio::test]
async fn newer_schema_is_refused_naming_the_directory() {
    let dir = tempdir();
    drop(SledStore::open(dir.path()).await.expect("opens"));
    {
        let db = raw_open(dir.path());
        let meta = db.open_tree(META_TREE).expect("meta");
        let stored = meta
            .get(SCHEMA_VERSION_KEY)
            .expect("read")
            .expect("version written");
        assert_eq!(stored.as_ref(), SCHEMA_VERSION.to_be_bytes());
        meta.insert(SCHEMA_VERSION_KEY, &(SCHEMA_VERSION + 1).to_be_bytes())
            .expect("write");
        db.flush().expect("flush");
    }
    match SledStore::open(dir.path()).await {
        Err(Error::UnsupportedSchemaVersion {
            what,
            found,
            supported,
        }) => {
            assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
            assert!(
                what.contains(
                    &dir.path()
                        .canonicalize()
                        .expect("path")
                        .display()
                        .to_string()
                )
            );
        }
        other => panic!("expected UnsupportedSchemaVersion, got {other:?}"),
    }
    // The refused open did not rewrite the version.
    let db = raw_open(dir.path());
    let meta = db.open_tree(META_TREE).expect("meta");
    let stored = meta.get(SCHEMA_VERSION_KEY).expect("read").expect("kept");
    assert_eq!(stored.as_ref(), (SCHEMA_VERSION + 1).to_be_bytes());
}

#[tokio::test]
async fn bad_schema_values_are_corrupt_and_foreign_databases_refused() {
    for bad in [&0i64.to_be_bytes()[..], &[1, 2, 3][..]] {
        let dir = tempdir();
        drop(SledStore::open(dir.path()).await.expect("opens"));
        {
            let db = raw_open(dir.path());
            db.open_tree(META_TREE)
                .expect("meta")
                .insert(SCHEMA_VERSION_KEY, bad)
                .expect("write");
            db.flush().expect("flush");
        }
        let err = SledStore::open(dir.path()).await.expect_err("corrupt");
        assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    }
    let dir = tempdir();
    {
        let db = raw_open(dir.path());
        db.insert("someone else's", "data").expect("write");
        db.flush().expect("flush");
    }
    match SledStore::open(dir.path()).await {
        Err(Error::InvalidInput { message }) => {
            assert!(
                message.contains(
                    &dir.path()
                        .canonicalize()
                        .expect("path")
                        .display()
                        .to_string()
                ),
                "{message}"
            );
            assert!(message.contains("not an mtsession store"), "{message}");
            assert!(message.contains("schema version"), "{message}");
        }
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    // The refusal wrote nothing into the foreign database: no meta tree.
    let db = raw_open(dir.path());
    assert!(
        !db.tree_names()
            .iter()
            .any(|name| name.as_ref() == META_TREE.as_bytes())
    );
}

async fn damage(files: &[(&str, Vec<u8>)]) -> (tempfile::TempDir, Error) {
    let dir = tempdir();
    let store = open(dir.path()).await;
    fill(&store, "s").await;
    drop(store);
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).expect("overwrite");
    }
    let err = SledStore::open(dir.path()).await.expect_err("damaged");
    (dir, err)
}

#[tokio::test]
async fn damaged_files_are_corrupt_not_a_panic() {
    let garbage_conf = ("conf", vec![0xFFu8; 64]);
    let garbage_db = ("db", vec![0xA5u8; 1 << 16]);
    let files_sets = [
        vec![garbage_conf.clone(), garbage_db.clone()],
        vec![garbage_conf],
        vec![garbage_db],
    ];
    for files in files_sets {
        let (dir, err) = damage(&files).await;
        match &err {
            Error::Corrupt { what, .. } => {
                let path = dir.path().canonicalize().expect("path");
                assert!(what.contains(&path.display().to_string()), "{what}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_file_is_not_a_store_directory() {
    let dir = tempdir();
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").expect("write");
    let err = SledStore::open(&file).await.expect_err("a file");
    assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
}

#[tokio::test]
async fn corrupt_values_name_the_store_and_tree() {
    let dir = tempdir();
    let store = open(dir.path()).await;
    fill(&store, "s").await;
    drop(store);
    {
        let db = raw_open(dir.path());
        let peers = db.open_tree("peers").expect("peers");
        let (k, _) = peers.iter().next().expect("a peer").expect("read");
        peers.insert(k, vec![1u8, 0x80]).expect("write garbage");
        db.flush().expect("flush");
    }
    let store = open(dir.path()).await;
    let err = store.export("s").await.expect_err("corrupt");
    match &err {
        Error::Corrupt { what, message, .. } => {
            assert!(what.contains("tree peers"), "{what}");
            assert!(
                what.contains(
                    &dir.path()
                        .canonicalize()
                        .expect("path")
                        .display()
                        .to_string()
                )
            );
            assert!(message.contains("unknown flags"), "{message}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

/// Every key of the data trees, as (tree, key) pairs.
fn data_keys(db: &sled::Db) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for name in [
        "dcs",
        "state",
        "channels",
        "peers",
        "uname_idx",
        "phone_idx",
        "files",
    ] {
        let tree = db.open_tree(name).expect("tree");
        for k in tree.iter().keys() {
            out.push((name.to_owned(), k.expect("key").to_vec()));
        }
    }
    out
}

fn session_prefix(name: &str) -> Vec<u8> {
    let mut p = vec![u8::try_from(name.len()).expect("short name")];
    p.extend_from_slice(name.as_bytes());
    p
}

#[tokio::test]
async fn delete_import_and_copy_leave_no_stray_keys() {
    let dir = tempdir();
    let store = open(dir.path()).await;
    fill(&store, "a").await;
    fill(&store, "ab").await;
    let data = store.export("a").await.expect("export");
    store.import("imported", &data).await.expect("import");
    store.import("imported", &data).await.expect("import over");
    store.copy("a", "copied", false).await.expect("copy");
    store.copy("ab", "copied", true).await.expect("copy over");
    assert!(store.delete("a").await.expect("delete"));
    assert_eq!(
        store.export("ab").await.expect("ab intact"),
        store.export("copied").await.expect("copy")
    );
    assert_eq!(store.export("imported").await.expect("import"), data);
    drop(store);

    let db = raw_open(dir.path());
    let keys = data_keys(&db);
    // "a" is gone entirely (and "ab"'s keys, which share its first letter, are not its).
    assert!(
        !keys
            .iter()
            .any(|(_, k)| k.starts_with(&session_prefix("a"))),
        "stray keys of a"
    );
    assert!(db.open_tree("trash").expect("trash").is_empty());
    // Each live session has exactly one generation of keys.
    let sessions = db.open_tree("sessions").expect("sessions");
    let mut live = 0;
    for name in ["ab", "copied", "imported"] {
        assert!(sessions.contains_key(name).expect("read"));
        let prefix = session_prefix(name);
        let mut generations: Vec<_> = keys
            .iter()
            .filter(|(_, k)| k.starts_with(&prefix))
            .map(|(_, k)| k[prefix.len()..prefix.len() + 8].to_vec())
            .collect();
        generations.dedup();
        generations.sort();
        generations.dedup();
        assert_eq!(
            generations.len(),
            1,
            "{name} has {} generations",
            generations.len()
        );
        live += keys.iter().filter(|(_, k)| k.starts_with(&prefix)).count();
    }
    assert_eq!(live, keys.len(), "keys of no live session remain");
}

#[tokio::test]
async fn leftovers_of_an_interrupted_import_are_collected_on_open() {
    let dir = tempdir();
    let store = open(dir.path()).await;
    fill(&store, "s").await;
    drop(store);
    // What a crash in the middle of staging an import leaves: keys under a
    // generation no session points at, and its trash entry.
    let mut stray = session_prefix("s");
    stray.extend_from_slice(&u64::MAX.to_be_bytes());
    {
        let db = raw_open(dir.path());
        let peers = db.open_tree("peers").expect("peers");
        for i in 0..3000u64 {
            let mut k = stray.clone();
            k.extend_from_slice(&i.to_be_bytes());
            peers.insert(k, vec![1u8, 0]).expect("write");
        }
        db.open_tree("trash")
            .expect("trash")
            .insert(&stray, vec![])
            .expect("write");
        db.flush().expect("flush");
    }
    let store = open(dir.path()).await;
    assert_eq!(store.peer_count("s").await.expect("count"), 3);
    drop(store);
    let db = raw_open(dir.path());
    assert!(!data_keys(&db).iter().any(|(_, k)| k.starts_with(&stray)));
    assert!(db.open_tree("trash").expect("trash").is_empty());
}

#[tokio::test]
async fn sessions_in_one_directory_are_isolated_by_prefix() {
    let dir = tempdir();
    let store = open(dir.path()).await;
    let a = store.open("a").await.expect("a");
    let ab = store.open("ab").await.expect("ab");
    a.cache_peer(&Peer::new(user(1)).with_username("x").with_phone("1"))
        .await
        .expect("a peer");
    ab.cache_peer(&Peer::new(user(2)).with_username("x").with_phone("1"))
        .await
        .expect("ab peer");
    assert_eq!(
        a.peer_by_username("x").await.expect("a").map(|p| p.id),
        Some(user(1))
    );
    assert_eq!(
        ab.peer_by_username("x").await.expect("ab").map(|p| p.id),
        Some(user(2))
    );
    assert_eq!(
        a.peer_by_phone("1").await.expect("a").map(|p| p.id),
        Some(user(1))
    );
    assert_eq!(a.peer(user(2)).await.expect("a"), None);
    assert_eq!(ab.peer(user(1)).await.expect("ab"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_and_exports_stay_consistent() {
    let dir = tempdir();
    let store = open(dir.path()).await;
    store.create("s").await.expect("create");
    let mut tasks = Vec::new();
    for writer in 0..8i64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let session = store.session("s").expect("handle");
            for round in 0..25i64 {
                // Every writer fights over the same username and phone.
                let id = user(writer * 1000 + round + 1);
                session
                    .cache_peers(&[Peer::new(id).with_username("Contested").with_phone("999")])
                    .await
                    .expect("cache");
                session
                    .set_update_state(UpdateStateChange::Channel {
                        id: writer + 1,
                        pts: i32::try_from(round).expect("small"),
                    })
                    .await
                    .expect("state");
            }
        }));
    }
    for _ in 0..5 {
        let data = store.export("s").await.expect("export");
        let owners = data
            .peers
            .iter()
            .filter(|p| p.usernames.as_ref().is_some_and(|u| !u.is_empty()))
            .count();
        assert!(owners <= 1, "{owners} peers own the username in one export");
        assert!(data.peers.iter().filter(|p| p.phone.is_some()).count() <= 1);
    }
    for task in tasks {
        task.await.expect("writer");
    }
    let session = store.session("s").expect("handle");
    assert_eq!(session.peer_count().await.expect("count"), 200);
    let owner = session
        .peer_by_username("contested")
        .await
        .expect("lookup")
        .expect("owned");
    assert_eq!(
        session
            .peer_by_phone("999")
            .await
            .expect("lookup")
            .map(|p| p.id),
        Some(owner.id)
    );
    let data = store.export("s").await.expect("export");
    assert_eq!(data.peers.len(), 200);
    assert_eq!(data.peers.iter().filter(|p| p.phone.is_some()).count(), 1);
    assert_eq!(data.update_state.channels.len(), 8);
    assert!(data.update_state.channels.values().all(|pts| *pts == 24));
}

#[tokio::test]
async fn large_batches_run_in_one_transaction() {
    let dir = tempdir();
    let store = open(dir.path()).await;
    let session = store.open("s").await.expect("session");
    let peers: Vec<_> = (1..=10_000)
        .map(|i| {
            Peer::new(user(i))
                .with_hash(i)
                .with_username(format!("user{i}"))
                .with_phone(format!("{i}"))
        })
        .collect();
    session.cache_peers(&peers).await.expect("big batch");
    assert_eq!(session.peer_count().await.expect("count"), 10_000);
    // A batch that fails half-way (its session vanished) writes nothing.
    let err = store
        .cache_peers("missing", &peers)
        .await
        .expect_err("not found");
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert_eq!(
        session
            .peer_by_username("USER9999")
            .await
            .expect("lookup")
            .map(|p| p.id),
        Some(user(9999))
    );
    drop(session);
    drop(store);
    let db = raw_open(dir.path());
    assert!(
        !data_keys(&db)
            .iter()
            .any(|(_, k)| k.starts_with(&session_prefix("missing")))
    );
}

#[tokio::test]
async fn leases_are_compare_and_set() {
    let dir = tempdir();
    let store = open(dir.path()).await;
    let ttl = Duration::from_millis(300);
    store
        .acquire_lease("any", "a", ttl)
        .await
        .expect("a takes it");
    assert!(matches!(
        store.acquire_lease("any", "b", ttl).await,
        Err(Error::LeaseHeld { .. })
    ));
    assert!(
        !store
            .release_lease("any", "b")
            .await
            .expect("b does not hold it")
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    // A long TTL from here on, so that the lease is still live when it is
    // released however slow the machine is.
    let taken = store
        .acquire_lease("any", "b", Duration::from_secs(600))
        .await
        .expect("b after expiry");
    assert_eq!(taken.owner, "b");
    assert!(store.release_lease("any", "b").await.expect("released"));
    assert!(
        !store
            .release_lease("any", "b")
            .await
            .expect("already released")
    );
}

/// The stored layout of schema version 1, written key by key from the
/// table in the crate docs (not with the store's own encoder), opens and
/// reads back: data written by earlier builds stays readable.
#[tokio::test]
async fn schema_version_1_layout_written_by_hand_reads_back() {
    fn flip64(v: i64) -> [u8; 8] {
        ((v as u64) ^ (1 << 63)).to_be_bytes()
    }
    fn flip32(v: i32) -> [u8; 4] {
        ((v as u32) ^ (1 << 31)).to_be_bytes()
    }
    fn text(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u32).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    let dir = tempdir();
    let generation: u64 = 77;
    let mut p = vec![1u8, b's'];
    p.extend_from_slice(&generation.to_be_bytes());
    let k = |suffix: &[u8]| [p.as_slice(), suffix].concat();
    {
        let db = sled::open(dir.path()).expect("raw sled");
        let tree = |name: &str| db.open_tree(name).expect("tree");
        tree("meta")
            .insert("schema_version", &1i64.to_be_bytes())
            .expect("meta");
        // The session record: format, generation, revision, home DC,
        // flags (self user | bot | api_id | test mode | takeout), self id,
        // api_id, takeout id, created, updated, peer count.
        let mut record = vec![1u8];
        record.extend_from_slice(&generation.to_be_bytes());
        record.extend_from_slice(&3u64.to_be_bytes());
        record.extend_from_slice(&4i32.to_be_bytes());
        record.push(0b1_1111);
        record.extend_from_slice(&1000i64.to_be_bytes());
        record.extend_from_slice(&611_335i32.to_be_bytes());
        record.extend_from_slice(&(-99i64).to_be_bytes());
        record.extend_from_slice(&1_000i64.to_be_bytes());
        record.extend_from_slice(&2_000i64.to_be_bytes());
        record.extend_from_slice(&1u64.to_be_bytes());
        tree("sessions").insert("s", record).expect("record");
        // DC 4: IPv4 and a key.
        let mut dc = vec![1u8, 0b101, 10, 0, 0, 4];
        dc.extend_from_slice(&443u16.to_be_bytes());
        dc.extend_from_slice(&[0x42; 256]);
        tree("dcs").insert(k(&flip32(4)), dc).expect("dc");
        let mut state = vec![1u8];
        for v in [10i32, 20, 30, 40] {
            state.extend_from_slice(&v.to_be_bytes());
        }
        tree("state").insert(k(&[]), state).expect("state");
        let mut pts = vec![1u8];
        pts.extend_from_slice(&50i32.to_be_bytes());
        tree("channels")
            .insert(k(&flip64(5)), pts)
            .expect("channel");
        // Peer 7: kind (user = 1), full hash, one username, phone.
        let mut peer = vec![1u8, 0b1_1011, 1];
        peer.extend_from_slice(&70i64.to_be_bytes());
        peer.extend_from_slice(&1u32.to_be_bytes());
        text(&mut peer, "Seven");
        text(&mut peer, "79");
        tree("peers").insert(k(&flip64(7)), peer).expect("peer");
        tree("uname_idx")
            .insert(k(b"seven"), &flip64(7))
            .expect("username");
        tree("phone_idx")
            .insert(k(b"79"), &flip64(7))
            .expect("phone");
        let mut file_key = vec![9u8; 16];
        file_key.extend_from_slice(&flip64(1234));
        file_key.push(1);
        let mut file = vec![1u8];
        file.extend_from_slice(&77i64.to_be_bytes());
        file.extend_from_slice(&(-77i64).to_be_bytes());
        tree("files").insert(k(&file_key), file).expect("file");
        db.flush().expect("flush");
    }
    let store = open(dir.path()).await;
    let data = store.export("s").await.expect("export");
    let expected = session_core::SessionData {
        home_dc: 4,
        dcs: vec![DcOption {
            id: 4,
            ipv4: Some(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 4), 443)),
            ipv6: None,
            auth_key: Some(AuthKey::new([0x42; 256])),
        }],
        self_user: Some(SelfUser {
            id: 1000,
            is_bot: true,
        }),
        api_id: Some(611_335),
        test_mode: true,
        takeout_id: Some(-99),
        update_state: UpdateState {
            pts: 10,
            qts: 20,
            date: 30,
            seq: 40,
            channels: BTreeMap::from([(5, 50)]),
        },
        peers: vec![
            Peer::new(user(7))
                .with_kind(PeerKind::User)
                .with_hash(70)
                .with_username("Seven")
                .with_phone("79"),
        ],
        sent_files: vec![(
            SentFileKey {
                md5: [9; 16],
                size: 1234,
                kind: FileKind::Photo,
            },
            SentFile {
                id: 77,
                access_hash: -77,
            },
        )],
    };
    assert_eq!(data, expected);
    let meta = store.metadata("s").await.expect("metadata");
    assert_eq!((meta.created_at_ms, meta.updated_at_ms), (1_000, 2_000));
    assert_eq!(store.peer_count("s").await.expect("count"), 1);
    let session = store.session("s").expect("handle");
    assert_eq!(
        session
            .peer_by_username("@SEVEN")
            .await
            .expect("lookup")
            .map(|p| p.id),
        Some(user(7))
    );
    assert_eq!(
        session
            .peer_by_phone("+7 9")
            .await
            .expect("lookup")
            .map(|p| p.id),
        Some(user(7))
    );
    // Written through the store, it moves on from there.
    session
        .cache_peer(&Peer::new(user(8)).with_username("seven"))
        .await
        .expect("write");
    assert_eq!(
        session
            .peer_by_username("seven")
            .await
            .expect("lookup")
            .map(|p| p.id),
        Some(user(8))
    );
}

/// Issue 8 #2 for sled: create-only imports race to one winner, for small
/// imports (one transaction) and large ones (staged, then published); the
/// losers get `AlreadyExists` and leave no keys behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_create_only_imports_have_one_winner() {
    let dir = tempdir();
    let store = open(dir.path()).await;
    for (name, peers) in [("small", 10), ("large", 2_000)] {
        let mut tasks = Vec::new();
        for racer in 1..=6i64 {
            let store = store.clone();
            let mut data = session_core::SessionData {
                self_user: Some(SelfUser {
                    id: racer,
                    is_bot: false,
                }),
                ..Default::default()
            };
            data.peers = (1..=peers)
                .map(|i| {
                    Peer::new(user(i))
                        .with_hash(racer)
                        .with_username(format!("n{i}"))
                })
                .collect();
            tasks.push(tokio::spawn(async move {
                (racer, store.import_new(name, &data).await)
            }));
        }
        let mut winners = Vec::new();
        for task in tasks {
            let (racer, result) = task.await.expect("task");
            match result {
                Ok(()) => winners.push(racer),
                Err(e) => assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{name}: {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "{name}: winners {winners:?}");
        let data = store.export(name).await.expect("export");
        assert_eq!(data.self_user.map(|u| u.id), Some(winners[0]), "{name}");
        assert!(
            data.peers
                .iter()
                .all(|p| p.access_hash.map(|h| h.value) == Some(winners[0]))
        );
        assert_eq!(store.peer_count(name).await.expect("count"), peers as u64);
    }
    drop(store);
    // Only the winners' generations are left.
    let db = raw_open(dir.path());
    let keys = data_keys(&db);
    let sessions = db.open_tree("sessions").expect("sessions");
    assert_eq!(sessions.len(), 2);
    for name in ["small", "large"] {
        let prefix = session_prefix(name);
        let mut generations: Vec<_> = keys
            .iter()
            .filter(|(_, k)| k.starts_with(&prefix))
            .map(|(_, k)| k[prefix.len()..prefix.len() + 8].to_vec())
            .collect();
        generations.sort();
        generations.dedup();
        assert_eq!(
            generations.len(),
            1,
            "{name}: {} generations",
            generations.len()
        );
    }
    assert!(db.open_tree("trash").expect("trash").is_empty());
}

/// A lookup by id reads the session's generation once and then only the
/// peer's key: every way a session gets a new generation (a replacing
/// import, small or staged; a copy over it; a delete and a new session)
/// must be seen by the next lookup, through any store on the directory.
#[tokio::test]
async fn lookups_by_id_follow_every_new_generation() {
    let dir = tempdir();
    let store = open(dir.path()).await;
    let other = open(dir.path()).await;
    let s = store.open("s").await.expect("s");
    let id = user(7);
    let named = |name: &str| Peer::new(id).with_kind(PeerKind::User).with_name(name);
    let name_of = |peer: Option<Peer>| peer.and_then(|p| p.name);
    s.cache_peer(&named("first")).await.expect("cache");
    assert_eq!(
        name_of(s.peer(id).await.expect("lookup")),
        Some("first".into())
    );

    // A replacing import of a few keys (one transaction), then of more keys
    // than one transaction takes (staged, then published), through the
    // other store handle on the same directory.
    for (round, extra) in [(1_i64, 10_i64), (2, 3_000)] {
        let mut data = store.export("s").await.expect("export");
        data.peers = (0..extra).map(|i| Peer::new(user(1_000 + i))).collect();
        data.peers.push(named(&format!("import {round}")));
        other
            .session("s")
            .expect("handle")
            .import(&data)
            .await
            .expect("import");
        assert_eq!(
            name_of(s.peer(id).await.expect("lookup")),
            Some(format!("import {round}"))
        );
    }

    // A copy over it.
    let t = store.open("t").await.expect("t");
    t.cache_peer(&named("copied")).await.expect("cache");
    store.copy("t", "s", true).await.expect("copy");
    assert_eq!(
        name_of(s.peer(id).await.expect("lookup")),
        Some("copied".into())
    );

    // A delete: the session is gone, not empty; a new one is empty.
    assert!(other.delete("s").await.expect("delete"));
    let gone = s.peer(id).await.expect_err("deleted");
    assert_eq!(gone.kind(), ErrorKind::NotFound);
    store.create("s").await.expect("create");
    assert_eq!(s.peer(id).await.expect("lookup"), None);
    s.cache_peer(&named("new")).await.expect("cache");
    assert_eq!(
        name_of(s.peer(id).await.expect("lookup")),
        Some("new".into())
    );
}

/// Lookups racing replacing imports never see a peer of a generation
/// older than the last import that had finished when the lookup began.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_racing_imports_never_go_back() {
    let dir = tempdir();
    let store = open(dir.path()).await;
    let s = store.open("s").await.expect("s");
    let id = user(7);
    let version =
        |peer: Option<Peer>| -> i64 { peer.and_then(|p| p.last_seen).expect("the peer is there") };
    s.cache_peer(&Peer {
        last_seen: Some(0),
        ..Peer::new(id)
    })
    .await
    .expect("cache");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
    let writer = {
        let store = store.clone();
        let done = std::sync::Arc::clone(&done);
        tokio::spawn(async move {
            for v in 1..=200_i64 {
                let mut data = store.export("s").await.expect("export");
                data.peers = vec![Peer {
                    last_seen: Some(v),
                    ..Peer::new(id)
                }];
                store
                    .session("s")
                    .expect("handle")
                    .import(&data)
                    .await
                    .expect("import");
                done.store(v, std::sync::atomic::Ordering::SeqCst);
            }
        })
    };
    while !writer.is_finished() {
        let floor = done.load(std::sync::atomic::Ordering::SeqCst);
        let seen = version(s.peer(id).await.expect("lookup"));
        assert!(
            seen >= floor,
            "saw version {seen} after {floor} was imported"
        );
        tokio::task::yield_now().await;
    }
    writer.await.expect("writer");
    assert_eq!(version(s.peer(id).await.expect("lookup")), 200);
}

/// Lookups by username and phone racing writes that move both between two
/// peers (and replacing imports) always find the one owner: never nothing,
/// never a peer that does not list what was asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_lookups_racing_moves_find_the_owner() {
    let dir = tempdir();
    let store = open(dir.path()).await;
    let s = store.open("s").await.expect("s");
    let owner = |id: i64| {
        Peer::new(user(id))
            .with_username("Moving")
            .with_phone("555")
    };
    s.cache_peer(&owner(1)).await.expect("cache");
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let s = store.session("s").expect("handle");
            for round in 0..300_i64 {
                let to = 1 + round % 2;
                if round % 50 == 49 {
                    let mut data = store.export("s").await.expect("export");
                    data.peers = vec![owner(to), Peer::new(user(3 - to))];
                    s.import(&data).await.expect("import");
                } else {
                    s.cache_peer(&owner(to)).await.expect("move");
                }
            }
        })
    };
    let mut lookups = 0;
    while !writer.is_finished() {
        let by_name = s.peer_by_username("@moving").await.expect("lookup");
        let by_name = by_name.expect("the username has an owner");
        assert_eq!(by_name.usernames, Some(vec!["Moving".to_owned()]));
        let by_phone = s.peer_by_phone("+555").await.expect("lookup");
        assert_eq!(
            by_phone.expect("the phone has an owner").phone.as_deref(),
            Some("555")
        );
        lookups += 1;
        tokio::task::yield_now().await;
    }
    writer.await.expect("writer");
    assert!(lookups > 0);
}
