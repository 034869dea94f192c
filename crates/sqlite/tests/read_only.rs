//! Opening modes: `ReadOnly` creates, changes and chmods nothing (not the
//! file, not a `-wal` or `-shm` it did not find) and refuses every write;
//! `ReadWrite` opens existing stores only; `Create` makes them.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use session_core::{
    AuthKey, DcOption, Driver, ErrorKind, FileKind, HeaderWrite, ImportMode, OpenMode, Peer,
    PeerId, SentFile, SentFileKey, SessionData, Store, StoreUrl, UpdateStateChange,
};
use session_sqlite::{SCHEMA_VERSION, SqliteDriver, SqliteServerStore, SqliteStore};

/// Every file in a directory: name → (mode, modification time, bytes).
type Snapshot = BTreeMap<String, (u32, (i64, i64), Vec<u8>)>;

fn snapshot(dir: &Path) -> Snapshot {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("list the directory") {
        let entry = entry.expect("entry");
        let meta = entry.metadata().expect("metadata");
        let bytes = if meta.is_file() {
            std::fs::read(entry.path()).expect("read")
        } else {
            Vec::new()
        };
        files.insert(
            entry.file_name().to_string_lossy().into_owned(),
            (
                meta.permissions().mode() & 0o7777,
                (meta.mtime(), meta.mtime_nsec()),
                bytes,
            ),
        );
    }
    files
}

fn names(snapshot: &Snapshot) -> Vec<&str> {
    snapshot.keys().map(String::as_str).collect()
}

fn side(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

async fn open(path: &Path, mode: OpenMode) -> session_core::Result<Store> {
    Ok(Store::new(
        SqliteStore::builder(path).mode(mode).open().await?,
    ))
}

fn user(id: i64) -> PeerId {
    PeerId::user(id).expect("user id")
}

fn file_key() -> SentFileKey {
    SentFileKey {
        md5: [3; 16],
        size: 99,
        kind: FileKind::Document,
    }
}

/// A store with one session holding every kind of data, closed again.
async fn make_store(path: &Path) -> SessionData {
    let store = open(path, OpenMode::Create).await.expect("create");
    let session = store.open("alice").await.expect("session");
    session
        .set_auth_key(2, Some(AuthKey::new([5; 256])))
        .await
        .expect("key");
    session
        .cache_peers(&[Peer::new(user(7))
            .with_hash(70)
            .with_username("Seven")
            .with_phone("777")])
        .await
        .expect("peers");
    session
        .set_update_state(UpdateStateChange::Channel { id: 9, pts: 90 })
        .await
        .expect("state");
    session
        .cache_sent_file(
            &file_key(),
            &SentFile {
                id: 1,
                access_hash: 2,
            },
        )
        .await
        .expect("sent file");
    let data = store.export("alice").await.expect("export");
    drop(session);
    drop(store);
    data
}

/// Every read a command makes; every write refused with `Unsupported`.
async fn read_everything_and_try_every_write(store: &Store, data: &SessionData) {
    assert_eq!(store.list().await.expect("list"), ["alice"]);
    assert!(store.exists("alice").await.expect("exists"));
    assert_eq!(&store.export("alice").await.expect("export"), data);
    let session = store.session("alice").expect("handle");
    assert_eq!(
        session.home_auth_key().await.expect("home key"),
        Some(AuthKey::new([5; 256]))
    );
    assert_eq!(session.header().await.expect("header").home_dc, 2);
    assert_eq!(session.dc_options().await.expect("dcs"), data.dcs);
    assert_eq!(
        session
            .peer_by_username("seven")
            .await
            .expect("name")
            .map(|p| p.id),
        Some(user(7))
    );
    assert_eq!(
        session
            .peer_by_phone("777")
            .await
            .expect("phone")
            .map(|p| p.id),
        Some(user(7))
    );
    assert_eq!(session.peer_count().await.expect("count"), 1);
    assert_eq!(
        session
            .update_state()
            .await
            .expect("state")
            .channels
            .get(&9),
        Some(&90)
    );
    assert!(
        session
            .sent_file(&file_key())
            .await
            .expect("file")
            .is_some()
    );

    let backend = store.backend();
    let refused = [
        backend
            .write_header("alice", &HeaderWrite::at(1))
            .await
            .map(drop),
        session
            .set_update_state(UpdateStateChange::Secondary { qts: 1 })
            .await,
        session.cache_peer(&Peer::new(user(8))).await,
        session.set_dc_option(&DcOption::new(3, None, None)).await,
        session
            .cache_sent_file(
                &file_key(),
                &SentFile {
                    id: 5,
                    access_hash: 6,
                },
            )
            .await,
        store.create("bob").await,
        store.import("bob", &SessionData::default()).await,
        backend.import("alice", data, ImportMode::Replace, 1).await,
        store.delete("alice").await.map(drop),
        store.copy("alice", "carol", false).await,
        store
            .acquire_lease("alice", "me", Duration::from_secs(5))
            .await
            .map(drop),
        store.release_lease("alice", "me").await.map(drop),
    ];
    for (n, result) in refused.into_iter().enumerate() {
        let err = result.expect_err("a write on a read-only store");
        assert_eq!(err.kind(), ErrorKind::Unsupported, "write {n}: {err}");
        assert!(err.to_string().contains("read-only"), "write {n}: {err}");
    }
    store.flush().await.expect("nothing to flush");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_on_a_missing_file_is_not_found_and_creates_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("missing.sqlite");
    for mode in [OpenMode::ReadOnly, OpenMode::ReadWrite] {
        let err = open(&path, mode).await.expect_err("missing");
        assert_eq!(err.kind(), ErrorKind::NotFound, "{mode:?}: {err}");
        assert!(err.to_string().contains("missing.sqlite"), "{err}");
        assert!(snapshot(dir.path()).is_empty(), "{mode:?} created a file");
    }
}

/// Issue 8, defect 6: a read turned a 0-byte file into a 61 440-byte store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_on_an_empty_file_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("e.db");
    std::fs::write(&path, b"").expect("empty file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let before = snapshot(dir.path());
    for mode in [OpenMode::ReadOnly, OpenMode::ReadWrite] {
        let err = open(&path, mode).await.expect_err("an empty file");
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{mode:?}: {err}");
        let text = err.to_string();
        assert!(text.contains("empty") && text.contains("e.db"), "{text}");
        assert_eq!(snapshot(dir.path()), before, "{mode:?} changed something");
    }
    // Through the driver, as the command-line tool opens it.
    let url = StoreUrl::parse(&format!("sqlite:{}", path.display())).expect("url");
    let err = SqliteDriver
        .open(&url, OpenMode::ReadOnly)
        .await
        .expect_err("empty");
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(snapshot(dir.path()), before);
    // Create makes it a store.
    let store = open(&path, OpenMode::Create).await.expect("create");
    store.create("s").await.expect("session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_on_a_closed_store_reads_everything_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.sqlite");
    let data = make_store(&path).await;
    // A mode the store would never set, so that a chmod would show.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let before = snapshot(dir.path());
    assert_eq!(names(&before), ["store.sqlite"], "closed cleanly");
    {
        let store = open(&path, OpenMode::ReadOnly).await.expect("read-only");
        read_everything_and_try_every_write(&store, &data).await;
        assert_eq!(
            names(&snapshot(dir.path())),
            ["store.sqlite"],
            "no -wal or -shm while open"
        );
    }
    assert_eq!(snapshot(dir.path()), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_beside_an_open_writer_sees_its_writes_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.sqlite");
    let data = make_store(&path).await;
    let writer = open(&path, OpenMode::ReadWrite).await.expect("writer");
    writer.create("bob").await.expect("bob");
    let db_before = std::fs::read(&path).expect("read");
    let modes_before: Vec<u32> = [path.clone(), side(&path, "-wal"), side(&path, "-shm")]
        .iter()
        .map(|p| std::fs::metadata(p).expect("exists").permissions().mode())
        .collect();
    {
        let reader = open(&path, OpenMode::ReadOnly).await.expect("read-only");
        assert_eq!(reader.list().await.expect("list"), ["alice", "bob"]);
        writer.create("carol").await.expect("carol");
        assert_eq!(
            reader.list().await.expect("list"),
            ["alice", "bob", "carol"],
            "the reader sees the writer's later writes"
        );
        assert_eq!(&reader.export("alice").await.expect("export"), &data);
    }
    assert_eq!(std::fs::read(&path).expect("read"), db_before);
    let modes_after: Vec<u32> = [path.clone(), side(&path, "-wal"), side(&path, "-shm")]
        .iter()
        .map(|p| std::fs::metadata(p).expect("exists").permissions().mode())
        .collect();
    assert_eq!(modes_after, modes_before);
    writer.create("dave").await.expect("the writer still works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_sees_a_writer_that_opens_after_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.sqlite");
    make_store(&path).await;
    let reader = open(&path, OpenMode::ReadOnly).await.expect("read-only");
    assert_eq!(reader.list().await.expect("list"), ["alice"]);
    {
        let writer = open(&path, OpenMode::ReadWrite).await.expect("writer");
        writer.create("bob").await.expect("bob");
        assert_eq!(reader.list().await.expect("list"), ["alice", "bob"]);
    }
    // The writer closed (and checkpointed into the file): still seen.
    assert_eq!(reader.list().await.expect("list"), ["alice", "bob"]);
    assert!(reader.exists("bob").await.expect("exists"));
}

/// The files a writer killed mid-run leaves: the database, a `-wal` with
/// committed transactions not yet in the database file, and a `-shm`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_reads_a_crashed_writers_log_and_leaves_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let live = dir.path().join("live.sqlite");
    let crashed = dir.path().join("crashed.sqlite");
    make_store(&live).await;
    let writer = open(&live, OpenMode::ReadWrite).await.expect("writer");
    writer.create("only-in-the-log").await.expect("write");
    for suffix in ["", "-wal", "-shm"] {
        std::fs::copy(side(&live, suffix), side(&crashed, suffix)).expect("copy");
    }
    drop(writer);
    let db_before = std::fs::read(&crashed).expect("read");
    let wal_before = std::fs::read(side(&crashed, "-wal")).expect("read");
    assert!(!wal_before.is_empty(), "the log holds the last write");
    {
        let reader = open(&crashed, OpenMode::ReadOnly).await.expect("read-only");
        assert_eq!(
            reader.list().await.expect("list"),
            ["alice", "only-in-the-log"]
        );
    }
    assert_eq!(std::fs::read(&crashed).expect("read"), db_before);
    assert_eq!(
        std::fs::read(side(&crashed, "-wal")).expect("the log is still there"),
        wal_before
    );
    assert!(side(&crashed, "-shm").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_refuses_what_is_not_a_store_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A Telethon-like file (rollback journal).
    let telethon = dir.path().join("a.session");
    let conn = rusqlite::Connection::open(&telethon).expect("plain open");
    conn.execute_batch(
        "CREATE TABLE version (version INTEGER PRIMARY KEY);
         INSERT INTO version VALUES (7);
         CREATE TABLE sessions (dc_id INTEGER PRIMARY KEY, server_address TEXT, port INTEGER,
             auth_key BLOB, takeout_id INTEGER);
         CREATE TABLE entities (id INTEGER PRIMARY KEY, hash INTEGER NOT NULL, username TEXT,
             phone INTEGER, name TEXT, date INTEGER);",
    )
    .expect("telethon-like file");
    drop(conn);
    // A WAL-mode database of another program, closed (no -wal).
    let other = dir.path().join("other.db");
    let conn = rusqlite::Connection::open(&other).expect("plain open");
    conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE notes (body TEXT);")
        .expect("WAL file");
    drop(conn);
    // Not SQLite at all.
    let text = dir.path().join("notes.txt");
    std::fs::write(
        &text,
        "hello, this is not a database at all, not even close",
    )
    .expect("text");
    // A directory.
    let folder = dir.path().join("folder");
    std::fs::create_dir(&folder).expect("dir");
    let before = snapshot(dir.path());
    for (path, kind, says) in [
        (&telethon, ErrorKind::InvalidInput, "Telethon"),
        (&other, ErrorKind::InvalidInput, "not an mtsession store"),
        (&text, ErrorKind::Corrupt, "not an SQLite database"),
        (&folder, ErrorKind::InvalidInput, "directory"),
    ] {
        for mode in [OpenMode::ReadOnly, OpenMode::ReadWrite, OpenMode::Create] {
            let err = open(path, mode).await.expect_err("not a store");
            assert_eq!(err.kind(), kind, "{} {mode:?}: {err}", path.display());
            assert!(err.to_string().contains(says), "{err}");
            assert_eq!(snapshot(dir.path()), before, "{} {mode:?}", path.display());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_refuses_a_newer_schema_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.sqlite");
    make_store(&path).await;
    let conn = rusqlite::Connection::open(&path).expect("plain open");
    conn.execute(
        "UPDATE schema_version SET version = ?1",
        [SCHEMA_VERSION + 1],
    )
    .expect("bump");
    drop(conn);
    let before = snapshot(dir.path());
    let err = open(&path, OpenMode::ReadOnly).await.expect_err("newer");
    assert_eq!(err.kind(), ErrorKind::UnsupportedSchemaVersion, "{err}");
    assert_eq!(snapshot(dir.path()), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_server_store_refuses_writes() {
    use session_core::ServerStore;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("server.sqlite");
    let key = AuthKey::new([9; 256]);
    {
        let server = SqliteServerStore::open(&path).await.expect("create");
        server.put_auth_key(&key).await.expect("put");
    }
    let before = snapshot(dir.path());
    let server = SqliteServerStore::builder(&path)
        .mode(OpenMode::ReadOnly)
        .open()
        .await
        .expect("read-only");
    assert_eq!(
        server
            .auth_key(key.id())
            .await
            .expect("read")
            .map(|k| k.id()),
        Some(key.id())
    );
    let err = server.put_auth_key(&key).await.expect_err("write");
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    drop(server);
    assert_eq!(snapshot(dir.path()), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_write_opens_existing_stores_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.sqlite");
    let data = make_store(&path).await;
    let store = open(&path, OpenMode::ReadWrite).await.expect("existing");
    assert_eq!(store.export("alice").await.expect("export"), data);
    store.create("bob").await.expect("writes work");
}
