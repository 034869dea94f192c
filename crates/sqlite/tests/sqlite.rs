//! Behaviour specific to SQLite files: persistence, file modes, schema
//! versions, damaged and foreign files, durability policies, leases between
//! stores on one file, and the server store.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use session_core::{
    AuthKey, DcOption, Durability, Error, ErrorKind, FileKind, OpenMode, Peer, PeerId, PeerKind,
    SelfUser, SentFile, SentFileKey, ServerSalt, ServerStore, SessionData, Store,
    UpdateStateChange,
};
use session_sqlite::{SCHEMA_VERSION, SqliteServerStore, SqliteStore};

fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.sqlite");
    (dir, path)
}

fn side(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

async fn open(path: &Path) -> Store {
    Store::new(SqliteStore::open(path).await.expect("open store"))
}

fn key(byte: u8) -> AuthKey {
    let mut bytes = [byte; 256];
    bytes[0] = 0;
    bytes[255] = 0xFF;
    AuthKey::new(bytes)
}

fn user(id: i64) -> PeerId {
    PeerId::user(id).expect("user id")
}

/// A session with every kind of data set.
fn full_data() -> SessionData {
    let mut data = SessionData {
        home_dc: 4,
        ..SessionData::default()
    };
    for dc in &mut data.dcs {
        if dc.id == 4 || dc.id == 2 {
            dc.auth_key = Some(key(u8::try_from(dc.id).expect("small")));
        }
    }
    data.dcs.push(DcOption::new(
        10_005,
        Some("127.0.0.1:8443".parse().expect("addr")),
        None,
    ));
    data.self_user = Some(SelfUser {
        id: 777,
        is_bot: true,
    });
    data.api_id = Some(12345);
    data.test_mode = true;
    data.takeout_id = Some(-9);
    data.update_state.pts = 10;
    data.update_state.qts = 20;
    data.update_state.date = 30;
    data.update_state.seq = 40;
    data.update_state.channels.insert(5, 50);
    data.update_state
        .channels
        .insert(i64::from(i32::MAX) * 4, i32::MAX);
    data.peers = vec![
        Peer::new(user(1))
            .with_kind(PeerKind::User)
            .with_hash(-5)
            .with_username("Alice")
            .with_phone("15550001")
            .with_name("Alice Ünïcode"),
        Peer::new(PeerId::chat(3).expect("chat"))
            .with_kind(PeerKind::Chat)
            .with_name("group"),
        Peer::new(PeerId::channel(9).expect("channel"))
            .with_kind(PeerKind::Megagroup)
            .with_min_hash(42),
        Peer {
            usernames: Some(vec![]),
            last_seen: Some(1_700_000_000),
            ..Peer::new(user(2))
        },
    ];
    data.sent_files = vec![(
        SentFileKey {
            md5: [7; 16],
            size: 1 << 40,
            kind: FileKind::Photo,
        },
        SentFile {
            id: -1,
            access_hash: i64::MAX,
        },
    )];
    data.canonicalize();
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistence_across_reopen() {
    let (_dir, path) = temp_db();
    let data = full_data();
    {
        let store = open(&path).await;
        store.import("alice", &data).await.expect("import");
        store.create("bob").await.expect("create");
        store
            .set_update_state("bob", &UpdateStateChange::Channel { id: 77, pts: 7 })
            .await
            .expect("channel pts");
        store.create("gone").await.expect("create");
        assert!(store.delete("gone").await.expect("delete"));
    }
    let store = open(&path).await;
    assert_eq!(store.list().await.expect("list"), ["alice", "bob"]);
    assert_eq!(store.export("alice").await.expect("export"), data);
    assert_eq!(
        store
            .update_state("bob")
            .await
            .expect("state")
            .channels
            .get(&77),
        Some(&7)
    );
    let by_name = store
        .peer_by_username("alice", "@ALICE")
        .await
        .expect("lookup");
    assert_eq!(by_name.map(|p| p.id), Some(user(1)));
    let by_phone = store
        .peer_by_phone("alice", "15550001")
        .await
        .expect("lookup");
    assert_eq!(by_phone.map(|p| p.id), Some(user(1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_private() {
    let (_dir, path) = temp_db();
    let store = open(&path).await;
    let session = store.open("default").await.expect("session");
    session.set_auth_key(2, Some(key(9))).await.expect("key");
    assert_eq!(mode(&path), 0o600, "database file");
    // The WAL and shared-memory files exist while the store is open.
    for suffix in ["-wal", "-shm"] {
        let file = side(&path, suffix);
        assert!(
            file.exists(),
            "{} exists while the store is open",
            file.display()
        );
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_uses_wal_and_is_marked_as_ours() {
    let (_dir, path) = temp_db();
    drop(open(&path).await);
    let conn = rusqlite::Connection::open(&path).expect("plain open");
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("mode");
    assert_eq!(mode, "wal");
    let app: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .expect("app id");
    assert_eq!(app, session_sqlite::APPLICATION_ID);
    let version: i64 = conn
        .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, SCHEMA_VERSION);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_schema_is_refused_and_left_alone() {
    let (_dir, path) = temp_db();
    {
        let store = open(&path).await;
        store.create("s").await.expect("create");
    }
    let conn = rusqlite::Connection::open(&path).expect("plain open");
    conn.execute(
        "UPDATE schema_version SET version = ?1",
        [SCHEMA_VERSION + 1],
    )
    .expect("bump version");
    drop(conn);
    let before = std::fs::read(&path).expect("read");
    match SqliteStore::open(&path).await {
        Err(Error::UnsupportedSchemaVersion {
            what,
            found,
            supported,
        }) => {
            assert!(what.contains(&path.display().to_string()), "{what}");
            assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
        }
        other => panic!("expected UnsupportedSchemaVersion, got {other:?}"),
    }
    assert_eq!(
        std::fs::read(&path).expect("read"),
        before,
        "the file is unchanged"
    );
    // An older or equal version opens.
    let conn = rusqlite::Connection::open(&path).expect("plain open");
    conn.execute("UPDATE schema_version SET version = ?1", [SCHEMA_VERSION])
        .expect("reset");
    drop(conn);
    assert!(open(&path).await.exists("s").await.expect("exists"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_is_not_sqlite_is_corrupt_and_unchanged() {
    let (_dir, path) = temp_db();
    let garbage: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, &garbage).expect("write");
    match SqliteStore::open(&path).await {
        Err(Error::Corrupt { what, message, .. }) => {
            assert!(what.contains(&path.display().to_string()), "{what}");
            assert!(message.contains("not an SQLite database"), "{message}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(std::fs::read(&path).expect("read"), garbage);
    assert!(!side(&path, "-wal").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_header_is_corrupt_and_unchanged() {
    let (_dir, path) = temp_db();
    drop(SqliteStore::open(&path).await.expect("open"));
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[..16].copy_from_slice(b"not-a-database!\0");
    std::fs::write(&path, &bytes).expect("write");
    let err = SqliteStore::open(&path).await.expect_err("damaged header");
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).expect("read"), bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_pages_are_reported_as_corrupt() {
    let (_dir, path) = temp_db();
    {
        let store = open(&path).await;
        let session = store.open("s").await.expect("session");
        let peers: Vec<Peer> = (1..=3000)
            .map(|i| {
                Peer::new(user(i))
                    .with_hash(i)
                    .with_name(format!("peer number {i}"))
            })
            .collect();
        session.cache_peers(&peers).await.expect("peers");
    }
    // Checkpointed on close: smash every page after the first few.
    let mut bytes = std::fs::read(&path).expect("read");
    assert!(bytes.len() > 64 * 1024, "the file has many pages");
    let page = 4096;
    for at in (page * 4..bytes.len()).step_by(page) {
        for b in &mut bytes[at + 8..at + 64] {
            *b = 0xA5;
        }
    }
    std::fs::write(&path, &bytes).expect("write");
    let result = async {
        let store = Store::new(SqliteStore::open(&path).await?);
        store.export("s").await
    }
    .await;
    match result {
        Err(Error::Corrupt { what, .. }) => {
            assert!(what.contains(&path.display().to_string()), "{what}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_values_in_rows_are_corrupt_not_panics() {
    let (_dir, path) = temp_db();
    let store = open(&path).await;
    let session = store.open("s").await.expect("session");
    session
        .cache_peer(&Peer::new(user(1)).with_kind(PeerKind::User))
        .await
        .expect("peer");
    session.set_auth_key(2, Some(key(3))).await.expect("key");
    let conn = rusqlite::Connection::open(&path).expect("plain open");
    conn.execute("UPDATE peers SET kind = 99", [])
        .expect("bad kind");
    conn.execute(
        "UPDATE dc_options SET auth_key = x'0102' WHERE dc_id = 2",
        [],
    )
    .expect("short key");
    let err = session.peer(user(1)).await.expect_err("bad kind");
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("kind"), "{err}");
    let err = session.dc_options().await.expect_err("short key");
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("2 bytes"), "{err}");
    // The home key has its own read: the same check.
    let err = session.home_auth_key().await.expect_err("short key");
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("2 bytes"), "{err}");
    conn.execute("UPDATE peers SET kind = 'text'", [])
        .expect("wrong type");
    let err = session.peer(user(1)).await.expect_err("wrong type");
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_sqlite_file_is_refused_and_unchanged() {
    let (_dir, path) = temp_db();
    let conn = rusqlite::Connection::open(&path).expect("plain open");
    conn.execute_batch(
        "CREATE TABLE version (version INTEGER PRIMARY KEY);
         INSERT INTO version VALUES (7);
         CREATE TABLE sessions (dc_id INTEGER PRIMARY KEY, server_address TEXT, port INTEGER,
             auth_key BLOB, takeout_id INTEGER);
         CREATE TABLE entities (id INTEGER PRIMARY KEY, hash INTEGER NOT NULL, username TEXT,
             phone INTEGER, name TEXT, date INTEGER);
         CREATE TABLE sent_files (md5_digest BLOB, file_size INTEGER, type INTEGER, id INTEGER,
             hash INTEGER, PRIMARY KEY (md5_digest, file_size, type));
         CREATE TABLE update_state (id INTEGER PRIMARY KEY, pts INTEGER, qts INTEGER,
             date INTEGER, seq INTEGER);",
    )
    .expect("telethon-like file");
    drop(conn);
    let before = std::fs::read(&path).expect("read");
    let err = SqliteStore::open(&path).await.expect_err("foreign file");
    assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("not an mtsession store"), "{message}");
    assert!(message.contains("Telethon"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert_eq!(std::fs::read(&path).expect("read"), before);
    assert!(!side(&path, "-wal").exists(), "not switched to WAL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_file_becomes_a_store() {
    let (_dir, path) = temp_db();
    std::fs::write(&path, b"").expect("empty");
    let store = open(&path).await;
    store.create("s").await.expect("create");
    assert_eq!(store.list().await.expect("list"), ["s"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_directory_is_an_error() {
    let (dir, _) = temp_db();
    let path = dir.path().join("no/such/dir/store.sqlite");
    let err = SqliteStore::open(&path)
        .await
        .expect_err("missing directory");
    assert!(err.to_string().contains("no/such/dir"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sessions_in_one_file() {
    let (_dir, path) = temp_db();
    let store = open(&path).await;
    let names: Vec<String> = (0..200).map(|i| format!("account-{i:03}")).collect();
    for (i, name) in names.iter().enumerate() {
        let i = i64::try_from(i).expect("small");
        let session = store.open(name).await.expect("session");
        session
            .set_self_user(Some(SelfUser {
                id: 1000 + i,
                is_bot: false,
            }))
            .await
            .expect("me");
        // The same peer id and username in every session, different data.
        session
            .cache_peer(&Peer::new(user(1)).with_hash(i).with_username("shared"))
            .await
            .expect("peer");
    }
    assert_eq!(store.list().await.expect("list"), names);
    for (i, name) in names.iter().enumerate() {
        let i = i64::try_from(i).expect("small");
        let me = store.self_user(name).await.expect("me").expect("set");
        assert_eq!(me.id, 1000 + i);
        let peer = store
            .peer_by_username(name, "shared")
            .await
            .expect("lookup")
            .expect("peer");
        assert_eq!(peer.access_hash.map(|h| h.value), Some(i));
    }
    // Deleting one session cascades to every table below it and nowhere else.
    assert!(store.delete("account-000").await.expect("delete"));
    let conn = rusqlite::Connection::open(&path).expect("plain open");
    for table in [
        "dc_options",
        "channel_pts",
        "peers",
        "peer_usernames",
        "sent_files",
    ] {
        let orphans: i64 = conn
            .query_row(
                &format!(
                    "SELECT count(*) FROM {table} WHERE session NOT IN (SELECT id FROM sessions)"
                ),
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(orphans, 0, "rows of deleted sessions left in {table}");
    }
    let peers: i64 = conn
        .query_row("SELECT count(*) FROM peers", [], |r| r.get(0))
        .expect("n");
    assert_eq!(peers, 199);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_file_share_leases() {
    let (_dir, path) = temp_db();
    let first = open(&path).await;
    let second = open(&path).await;
    let ttl = Duration::from_secs(30);
    let lease = first
        .acquire_lease("s", "first", ttl)
        .await
        .expect("acquire");
    assert_eq!(lease.owner, "first");
    match second.acquire_lease("s", "second", ttl).await {
        Err(Error::LeaseHeld {
            owner, until_ms, ..
        }) => {
            assert_eq!(owner, "first");
            assert_eq!(until_ms, lease.expires_at_ms);
        }
        other => panic!("expected LeaseHeld, got {other:?}"),
    }
    // Renewal by the holder through the other store works: the lease is per owner.
    let renewed = second
        .acquire_lease("s", "first", ttl)
        .await
        .expect("renew");
    assert!(renewed.expires_at_ms >= lease.expires_at_ms);
    assert!(
        !second
            .release_lease("s", "second")
            .await
            .expect("not the holder")
    );
    assert!(first.release_lease("s", "first").await.expect("release"));
    second
        .acquire_lease("s", "second", ttl)
        .await
        .expect("free now");
    // An expired lease can be taken over.
    second
        .acquire_lease("t", "second", Duration::from_millis(20))
        .await
        .expect("short");
    tokio::time::sleep(Duration::from_millis(40)).await;
    first
        .acquire_lease("t", "first", ttl)
        .await
        .expect("expired lease is taken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_behind_is_flushed_in_the_background() {
    let (_dir, path) = temp_db();
    let store = Store::new(
        SqliteStore::builder(&path)
            .durability(Durability::WriteBehind {
                max_delay: Duration::from_millis(50),
            })
            .open()
            .await
            .expect("open"),
    );
    let conn = rusqlite::Connection::open(&path).expect("plain open");
    let marker = || -> Option<i64> {
        conn.query_row("SELECT at_ms FROM flush_marker", [], |r| r.get(0))
            .ok()
    };
    assert_eq!(marker(), None, "nothing written, nothing flushed");
    store.create("s").await.expect("create");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while marker().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the flusher never synced"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let first = marker();
    store
        .set_update_state("s", &UpdateStateChange::Secondary { qts: 5 })
        .await
        .expect("write");
    store.flush().await.expect("flush");
    assert!(marker() >= first);
    drop(store);
    assert_eq!(
        open(&path)
            .await
            .update_state("s")
            .await
            .expect("state")
            .qts,
        5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_write_behind_delay_is_rejected() {
    let (_dir, path) = temp_db();
    let err = SqliteStore::builder(&path)
        .durability(Durability::WriteBehind {
            max_delay: Duration::ZERO,
        })
        .open()
        .await
        .expect_err("zero delay");
    assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immediate_flush_is_a_no_op() {
    let (_dir, path) = temp_db();
    let store = open(&path).await;
    store.create("s").await.expect("create");
    store.flush().await.expect("flush");
    let conn = rusqlite::Connection::open(&path).expect("plain open");
    let marks: i64 = conn
        .query_row("SELECT count(*) FROM flush_marker", [], |r| r.get(0))
        .expect("count");
    assert_eq!(marks, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_on_two_stores_lose_nothing() {
    let (_dir, path) = temp_db();
    let stores = [open(&path).await, open(&path).await];
    stores[0].create("s").await.expect("create");
    let mut tasks = Vec::new();
    for (n, store) in stores.iter().enumerate() {
        for t in 0..4i64 {
            let store = store.clone();
            let base = i64::try_from(n).expect("small") * 1_000_000 + t * 10_000;
            tasks.push(tokio::spawn(async move {
                for i in 1..=50 {
                    store
                        .set_update_state(
                            "s",
                            &UpdateStateChange::Channel {
                                id: base + i,
                                pts: 1,
                            },
                        )
                        .await?;
                    store
                        .cache_peers("s", &[Peer::new(user(base + i)).with_hash(i)])
                        .await?;
                }
                Ok::<_, Error>(())
            }));
        }
    }
    for task in tasks {
        task.await.expect("task").expect("writes");
    }
    assert_eq!(
        stores[1]
            .update_state("s")
            .await
            .expect("state")
            .channels
            .len(),
        400
    );
    assert_eq!(stores[0].peer_count("s").await.expect("count"), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_store_works_and_declares_no_durability() {
    let store = Store::new(SqliteStore::open_in_memory().expect("memory"));
    let caps = store.capabilities();
    assert!(!caps.durable && !caps.shared_between_processes);
    assert!(caps.leases && caps.atomic_multi_key_writes);
    let data = full_data();
    store.import("m", &data).await.expect("import");
    assert_eq!(store.export("m").await.expect("export"), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_store_declares_its_capabilities() {
    let (_dir, path) = temp_db();
    let caps = open(&path).await.capabilities();
    assert!(caps.durable && caps.shared_between_processes);
    assert!(caps.leases && caps.atomic_multi_key_writes);
    assert!(!caps.ttl);
}

#[test]
fn calls_work_outside_a_tokio_runtime() {
    let (_dir, path) = temp_db();
    futures::executor::block_on(async {
        let store = Store::new(SqliteStore::open(&path).await.expect("open"));
        store.create("s").await.expect("create");
        assert_eq!(store.home_dc("s").await.expect("home"), 2);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_and_errors_never_show_keys() {
    let (_dir, path) = temp_db();
    let store = open(&path).await;
    let session = store.open("s").await.expect("session");
    session
        .set_auth_key(2, Some(AuthKey::new([0xAB; 256])))
        .await
        .expect("key");
    let shown = format!("{store:?} {:?}", session.dc_options().await.expect("dcs"));
    assert!(!shown.to_lowercase().contains("abab"), "{shown}");
    let conn = rusqlite::Connection::open(&path).expect("plain open");
    conn.execute(
        "UPDATE dc_options SET auth_key = zeroblob(255) || x'AB' WHERE dc_id = 2",
        [],
    )
    .expect("bad key");
    let err = session.dc_options().await.expect_err("bad key");
    assert!(
        !format!("{err} {err:?}").to_lowercase().contains("abab"),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_store_round_trip_and_cascade() {
    let (_dir, path) = temp_db();
    let id;
    {
        let server = SqliteServerStore::open(&path).await.expect("open");
        let key = key(5);
        id = server.put_auth_key(&key).await.expect("put");
        assert_eq!(id, key.id());
        assert!(server.create_session(id, 1).await.expect("create"));
        assert!(!server.create_session(id, 1).await.expect("again"));
        server
            .add_salt(
                id,
                ServerSalt {
                    valid_since: 10,
                    valid_until: 20,
                    salt: 99,
                },
            )
            .await
            .expect("salt");
        assert!(matches!(
            server.create_session(id ^ 1, 1).await,
            Err(Error::NotFound { .. })
        ));
    }
    // Persisted, and the session store on the same file is unaffected.
    let server = SqliteServerStore::open(&path).await.expect("reopen");
    assert_eq!(
        server.auth_key(id).await.expect("key").map(|k| k.id()),
        Some(id)
    );
    assert_eq!(server.list_sessions(id).await.expect("list"), [1]);
    assert!(server.has_valid_salt(id, 99, 15).await.expect("salt"));
    assert!(!server.has_valid_salt(id, 99, 20).await.expect("expired"));
    assert!(open(&path).await.list().await.expect("sessions").is_empty());
    assert!(server.destroy_auth_key(id).await.expect("destroy"));
    let conn = rusqlite::Connection::open(&path).expect("plain open");
    for table in ["server_sessions", "server_salts"] {
        let rows: i64 = conn
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .expect("count");
        assert_eq!(rows, 0, "{table} cascades");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_write_behind_store_syncs_once_more() {
    let (_dir, path) = temp_db();
    // A second store keeps the file open, so closing the first does not checkpoint.
    let keeper = open(&path).await;
    let store = Store::new(
        SqliteStore::builder(&path)
            .durability(Durability::WriteBehind {
                max_delay: Duration::from_secs(3600),
            })
            .open()
            .await
            .expect("open"),
    );
    store.create("s").await.expect("create");
    let conn = rusqlite::Connection::open(&path).expect("plain open");
    let marker = || -> Option<i64> {
        conn.query_row("SELECT at_ms FROM flush_marker", [], |r| r.get(0))
            .ok()
    };
    assert_eq!(marker(), None, "an hour has not passed");
    drop(store);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while marker().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "no sync after the store was dropped"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(keeper.exists("s").await.expect("exists"));
}

/// The schema of version 1 as the previous release created it (copied from
/// `crates/sqlite/src/schema.rs` at `main~3`), so that this test keeps
/// checking files of that release whatever the current DDL becomes.
const RELEASED_SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS schema_version (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    home_dc INTEGER NOT NULL,
    self_user_id INTEGER,
    self_is_bot INTEGER,
    api_id INTEGER,
    test_mode INTEGER NOT NULL DEFAULT 0,
    takeout_id INTEGER,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    pts INTEGER NOT NULL DEFAULT 0,
    qts INTEGER NOT NULL DEFAULT 0,
    date INTEGER NOT NULL DEFAULT 0,
    seq INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS dc_options (
    session INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    dc_id INTEGER NOT NULL,
    ipv4 TEXT,
    ipv6 TEXT,
    auth_key BLOB,
    PRIMARY KEY (session, dc_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS channel_pts (
    session INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    channel_id INTEGER NOT NULL,
    pts INTEGER NOT NULL,
    PRIMARY KEY (session, channel_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS peers (
    session INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    id INTEGER NOT NULL,
    kind INTEGER,
    hash INTEGER,
    hash_is_min INTEGER,
    usernames TEXT,
    phone TEXT,
    name TEXT,
    last_seen INTEGER,
    PRIMARY KEY (session, id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS peers_by_phone ON peers (session, phone)
    WHERE phone IS NOT NULL;
CREATE TABLE IF NOT EXISTS peer_usernames (
    session INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    username_lower TEXT NOT NULL,
    peer_id INTEGER NOT NULL,
    PRIMARY KEY (session, username_lower)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sent_files (
    session INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    md5 BLOB NOT NULL,
    size INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    file_id INTEGER NOT NULL,
    access_hash INTEGER NOT NULL,
    PRIMARY KEY (session, md5, size, kind)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
    session TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS flush_marker (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS auth_keys (
    auth_key_id INTEGER PRIMARY KEY,
    auth_key BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS server_sessions (
    auth_key_id INTEGER NOT NULL REFERENCES auth_keys (auth_key_id) ON DELETE CASCADE,
    session_id INTEGER NOT NULL,
    PRIMARY KEY (auth_key_id, session_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS server_salts (
    auth_key_id INTEGER NOT NULL REFERENCES auth_keys (auth_key_id) ON DELETE CASCADE,
    valid_since INTEGER NOT NULL,
    valid_until INTEGER NOT NULL,
    salt INTEGER NOT NULL,
    PRIMARY KEY (auth_key_id, valid_since, valid_until, salt)
) WITHOUT ROWID;
";

/// A file written by the previous release (its DDL, its application id, its
/// row formats: usernames as a JSON list, `hash_is_min`, the username index,
/// leases by name, channels by bare id) opens in every mode and every value
/// reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_file_of_the_previous_release_opens_with_every_value() {
    let (_dir, path) = temp_db();
    {
        let conn = rusqlite::Connection::open(&path).expect("plain open");
        conn.execute_batch("PRAGMA journal_mode = WAL")
            .expect("WAL");
        conn.execute_batch(RELEASED_SCHEMA_V1)
            .expect("the released schema");
        conn.pragma_update(None, "application_id", session_sqlite::APPLICATION_ID)
            .expect("application id");
        conn.execute_batch(&format!(
            "INSERT INTO schema_version (id, version) VALUES (0, 1);
             INSERT INTO sessions (id, name, home_dc, self_user_id, self_is_bot, api_id,
                 test_mode, takeout_id, created_at_ms, updated_at_ms, pts, qts, date, seq)
             VALUES (7, 'old', 4, 777, 1, 12345, 1, -9, 1000, 2000, 10, 20, 30, 40);
             INSERT INTO dc_options (session, dc_id, ipv4, ipv6, auth_key) VALUES
                 (7, 2, '149.154.167.51:443', '[2001:67c:4e8:f002::a]:443', NULL),
                 (7, 4, '149.154.167.92:443', NULL, x'{key}');
             INSERT INTO channel_pts (session, channel_id, pts) VALUES (7, 5, 50),
                 (7, 8589934588, 2147483647);
             INSERT INTO peers (session, id, kind, hash, hash_is_min, usernames, phone, name,
                 last_seen) VALUES
                 (7, 1, 1, -5, 0, '[\"Alice\",\"al_ice\"]', '15550001', 'Alice Ünïcode', NULL),
                 (7, -3, 4, NULL, NULL, NULL, NULL, 'group', NULL),
                 (7, -1000000000009, 6, 42, 1, '[]', NULL, NULL, 1700000000);
             INSERT INTO peer_usernames (session, username_lower, peer_id) VALUES
                 (7, 'alice', 1), (7, 'al_ice', 1);
             INSERT INTO sent_files (session, md5, size, kind, file_id, access_hash) VALUES
                 (7, x'07070707070707070707070707070707', 1099511627776, 1, -1,
                  9223372036854775807);
             INSERT INTO leases (session, owner, expires_at_ms) VALUES ('old', 'w', 1);",
            key = "AB".repeat(256)
        ))
        .expect("rows as the previous release wrote them");
    }
    let mut expected = SessionData {
        home_dc: 4,
        dcs: vec![
            DcOption::new(
                2,
                Some("149.154.167.51:443".parse().expect("addr")),
                Some("[2001:67c:4e8:f002::a]:443".parse().expect("addr")),
            ),
            DcOption {
                auth_key: Some(AuthKey::new([0xAB; 256])),
                ..DcOption::new(4, Some("149.154.167.92:443".parse().expect("addr")), None)
            },
        ],
        self_user: Some(SelfUser {
            id: 777,
            is_bot: true,
        }),
        api_id: Some(12345),
        test_mode: true,
        takeout_id: Some(-9),
        ..SessionData::default()
    };
    expected.update_state.pts = 10;
    expected.update_state.qts = 20;
    expected.update_state.date = 30;
    expected.update_state.seq = 40;
    expected.update_state.channels.insert(5, 50);
    expected
        .update_state
        .channels
        .insert(8_589_934_588, i32::MAX);
    expected.peers = vec![
        Peer {
            usernames: Some(vec!["Alice".to_owned(), "al_ice".to_owned()]),
            ..Peer::new(user(1))
                .with_kind(PeerKind::User)
                .with_hash(-5)
                .with_phone("15550001")
                .with_name("Alice Ünïcode")
        },
        Peer::new(PeerId::chat(3).expect("chat"))
            .with_kind(PeerKind::Chat)
            .with_name("group"),
        Peer {
            usernames: Some(vec![]),
            last_seen: Some(1_700_000_000),
            ..Peer::new(PeerId::channel(9).expect("channel"))
                .with_kind(PeerKind::Megagroup)
                .with_min_hash(42)
        },
    ];
    expected.sent_files = vec![(
        SentFileKey {
            md5: [7; 16],
            size: 1 << 40,
            kind: FileKind::Photo,
        },
        SentFile {
            id: -1,
            access_hash: i64::MAX,
        },
    )];
    expected.canonicalize();
    for mode in [OpenMode::ReadOnly, OpenMode::ReadWrite, OpenMode::Create] {
        let store = Store::new(
            SqliteStore::builder(&path)
                .mode(mode)
                .open()
                .await
                .expect("a version-1 file opens"),
        );
        assert_eq!(store.list().await.expect("list"), ["old"], "{mode:?}");
        assert_eq!(
            store.export("old").await.expect("export"),
            expected,
            "{mode:?}"
        );
        let meta = store.metadata("old").await.expect("metadata");
        assert_eq!((meta.created_at_ms, meta.updated_at_ms), (1000, 2000));
        let session = store.session("old").expect("handle");
        assert_eq!(
            session.home_auth_key().await.expect("key"),
            Some(AuthKey::new([0xAB; 256]))
        );
        for name in ["@ALICE", "Al_Ice"] {
            assert_eq!(
                session
                    .peer_by_username(name)
                    .await
                    .expect("lookup")
                    .map(|p| p.id),
                Some(user(1)),
                "{mode:?} {name}"
            );
        }
        assert_eq!(
            session
                .peer_by_phone("+1 555 0001")
                .await
                .expect("lookup")
                .map(|p| p.id),
            Some(user(1))
        );
        assert_eq!(session.peer_count().await.expect("count"), 3);
        // The old lease row is honoured (it expired long ago: anyone may take it).
        if mode != OpenMode::ReadOnly {
            store
                .acquire_lease("old", "new-owner", Duration::from_secs(5))
                .await
                .expect("the expired lease is taken");
            assert!(
                store
                    .release_lease("old", "new-owner")
                    .await
                    .expect("release")
            );
        }
    }
    let conn = rusqlite::Connection::open(&path).expect("plain open");
    let version: i64 = conn
        .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, SCHEMA_VERSION, "the layout did not change");
}

/// The home key is the key of the home DC: another DC's key is not it, a
/// home DC without a key (or without a row) has none, and a missing
/// session is `NotFound`.
#[tokio::test]
async fn the_home_key_is_the_home_dcs() {
    let (_dir, path) = temp_db();
    let store = open(&path).await;
    let session = store.open("s").await.expect("session");
    session.set_home_dc(4).await.expect("home");
    assert_eq!(session.home_auth_key().await.expect("no DC row"), None);
    session.set_auth_key(2, Some(key(2))).await.expect("key 2");
    assert_eq!(session.home_auth_key().await.expect("another DC's"), None);
    session.set_auth_key(4, Some(key(4))).await.expect("key 4");
    assert_eq!(session.home_auth_key().await.expect("home"), Some(key(4)));
    session.set_auth_key(4, None).await.expect("no key");
    assert_eq!(session.home_auth_key().await.expect("removed"), None);
    let err = store
        .session("missing")
        .expect("handle")
        .home_auth_key()
        .await
        .expect_err("no session");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err:?}");
}
