//! Issue 8 #1 and #6: opening in `ReadOnly` (and `ReadWrite`) mode never
//! creates, chmods or writes anything, refuses what is not a store before
//! touching it, and a read-only store refuses every write.
//!
//! Every access goes through the driver, as `mtsession list` and `inspect`
//! do. Each regression test fails on the code before the fix, which made
//! the directory 0700, its files 0600 and created sled's files in it.

#![cfg(unix)]

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use session_core::url::StoreUrl;
use session_core::{
    AuthKey, DcOption, Driver, ErrorKind, FileKind, OpenMode, Peer, PeerId, SentFile, SentFileKey,
    Store, UpdateStateChange,
};
use session_sled::{SledDriver, SledStore};

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("mtsession-sled-readonly-test-")
        .tempdir()
        .expect("a temporary directory")
}

/// Everything observable about a directory tree: for each entry, its mode,
/// its modification time and (for files) its bytes.
type Snapshot = BTreeMap<String, (u32, i64, i64, Option<Vec<u8>>)>;

fn snapshot(dir: &Path) -> Snapshot {
    let mut out = Snapshot::new();
    let meta = std::fs::metadata(dir).expect("the directory");
    out.insert(
        ".".to_owned(),
        (meta.mode(), meta.mtime(), meta.mtime_nsec(), None),
    );
    let mut stack = vec![dir.to_owned()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).expect("read dir") {
            let entry = entry.expect("entry");
            let meta = entry.metadata().expect("metadata");
            let name = entry
                .path()
                .strip_prefix(dir)
                .expect("inside")
                .display()
                .to_string();
            let bytes = if meta.is_dir() {
                stack.push(entry.path());
                None
            } else {
                Some(std::fs::read(entry.path()).expect("read"))
            };
            out.insert(name, (meta.mode(), meta.mtime(), meta.mtime_nsec(), bytes));
        }
    }
    out
}

fn url(path: &Path) -> StoreUrl {
    StoreUrl::parse(&format!("sled:{}", path.display())).expect("a sled URL")
}

async fn open_with_driver(path: &Path, mode: OpenMode) -> session_core::Result<Store> {
    SledDriver.open(&url(path), mode).await
}

/// A project directory: mode 755 with an executable script (755) and a file.
fn project(parent: &Path) -> std::path::PathBuf {
    let dir = parent.join("proj");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::write(dir.join("build.sh"), b"echo hi\n").expect("script");
    std::fs::write(dir.join("notes.txt"), b"keep me\n").expect("file");
    for path in [dir.join("build.sh"), dir.clone()] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    dir
}

#[tokio::test]
async fn readonly_and_readwrite_refuse_a_project_directory_unchanged() {
    let parent = tempdir();
    let dir = project(parent.path());
    let before = snapshot(&dir);
    for mode in [OpenMode::ReadOnly, OpenMode::ReadWrite, OpenMode::Create] {
        let err = open_with_driver(&dir, mode)
            .await
            .expect_err("a project directory is not a store");
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{mode:?}: {err}");
        let text = err.to_string();
        assert!(text.contains("not an mtsession sled store"), "{text}");
        assert!(text.contains("build.sh"), "names what it found: {text}");
        assert!(text.contains("conf, db"), "says what it expected: {text}");
        assert_eq!(snapshot(&dir), before, "{mode:?} changed the directory");
    }
    let mode = std::fs::metadata(dir.join("build.sh"))
        .expect("script")
        .mode()
        & 0o777;
    assert_eq!(mode, 0o755, "the script lost its exec bits");
}

#[tokio::test]
async fn readonly_and_readwrite_on_an_empty_directory_create_nothing() {
    let parent = tempdir();
    let dir = parent.path().join("empty");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let before = snapshot(&dir);
    for mode in [OpenMode::ReadOnly, OpenMode::ReadWrite] {
        let err = open_with_driver(&dir, mode).await.expect_err("empty");
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{mode:?}: {err}");
        assert!(err.to_string().contains("empty directory"), "{err}");
        assert_eq!(snapshot(&dir), before, "{mode:?} changed the directory");
    }
    // Create mode makes a store there.
    let store = open_with_driver(&dir, OpenMode::Create)
        .await
        .expect("create");
    store.create("s").await.expect("create a session");
}

#[tokio::test]
async fn readonly_and_readwrite_on_a_missing_path_are_not_found() {
    let parent = tempdir();
    let missing = parent.path().join("no").join("store");
    for mode in [OpenMode::ReadOnly, OpenMode::ReadWrite] {
        let err = open_with_driver(&missing, mode).await.expect_err("missing");
        assert_eq!(err.kind(), ErrorKind::NotFound, "{mode:?}: {err}");
        assert!(err.to_string().contains("sled store"), "{err}");
    }
    assert!(
        !parent.path().join("no").exists(),
        "a directory was created"
    );
}

#[tokio::test]
async fn readonly_on_a_file_is_refused_unchanged() {
    let parent = tempdir();
    let file = parent.path().join("x.sled");
    std::fs::write(&file, b"not a store").expect("write");
    let before = std::fs::read(&file).expect("read");
    let err = open_with_driver(&file, OpenMode::ReadOnly)
        .await
        .expect_err("a file");
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(std::fs::read(&file).expect("read"), before);
}

fn key(byte: u8) -> AuthKey {
    AuthKey::new([byte; 256])
}

fn user(id: i64) -> PeerId {
    PeerId::user(id).expect("id")
}

/// A closed store holding one session with a key, peers and a sent file.
async fn real_store(path: &Path) {
    let store = Store::new(SledStore::open(path).await.expect("opens"));
    let session = store.open("alice").await.expect("session");
    session.set_auth_key(2, Some(key(9))).await.expect("key");
    session
        .cache_peers(&[Peer::new(user(7)).with_hash(70).with_username("Seven")])
        .await
        .expect("peers");
    store.create("bob").await.expect("bob");
    store.flush().await.expect("flush");
}

#[tokio::test]
async fn readonly_on_a_store_changes_no_mode_bit_and_no_byte() {
    let parent = tempdir();
    let dir = parent.path().join("store");
    real_store(&dir).await;
    // Modes a read-write open would reset (it makes the directory 0700 and
    // every file 0600): a read-only one must keep them.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).expect("chmod");
    std::fs::set_permissions(dir.join("conf"), std::fs::Permissions::from_mode(0o640))
        .expect("chmod");
    let before = snapshot(&dir);
    for _ in 0..2 {
        let store = open_with_driver(&dir, OpenMode::ReadOnly)
            .await
            .expect("opens read-only");
        // What `list` and `inspect` do.
        assert_eq!(store.list().await.expect("list"), ["alice", "bob"]);
        let session = store.session("alice").expect("handle");
        assert_eq!(session.home_auth_key().await.expect("key"), Some(key(9)));
        let data = store.export("alice").await.expect("export");
        assert_eq!(data.peers.len(), 1);
        assert_eq!(
            session
                .peer_by_username("seven")
                .await
                .expect("lookup")
                .map(|p| p.id),
            Some(user(7))
        );
        store.flush().await.expect("flush is a no-op");
        drop((session, store));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(snapshot(&dir), before, "a read-only open changed the store");
    }
}

#[tokio::test]
async fn readonly_store_refuses_every_write() {
    let parent = tempdir();
    let dir = parent.path().join("store");
    real_store(&dir).await;
    let before = snapshot(&dir);
    let store = open_with_driver(&dir, OpenMode::ReadOnly)
        .await
        .expect("opens read-only");
    assert!(!store.capabilities().leases);
    let session = store.session("alice").expect("handle");
    let file_key = SentFileKey {
        md5: [1; 16],
        size: 1,
        kind: FileKind::Photo,
    };
    let data = store.export("alice").await.expect("export");
    let results = [
        ("create", store.create("new").await),
        ("delete", store.delete("bob").await.map(drop)),
        ("import", store.import("bob", &data).await),
        ("import_new", store.import_new("carol", &data).await),
        ("copy", store.copy("alice", "carol", false).await),
        ("set_home_dc", session.set_home_dc(4).await),
        (
            "set_dc_option",
            session.set_dc_option(&DcOption::new(4, None, None)).await,
        ),
        ("set_self_user", session.set_self_user(None).await),
        ("set_metadata", session.set_metadata(Some(1), true).await),
        ("set_takeout_id", session.set_takeout_id(Some(1)).await),
        (
            "set_update_state",
            session
                .set_update_state(UpdateStateChange::Secondary { qts: 1 })
                .await,
        ),
        (
            "cache_peers",
            session.cache_peers(&[Peer::new(user(8))]).await,
        ),
        (
            "cache_sent_file",
            session
                .cache_sent_file(
                    &file_key,
                    &SentFile {
                        id: 1,
                        access_hash: 1,
                    },
                )
                .await,
        ),
        (
            "acquire_lease",
            store
                .acquire_lease("alice", "me", Duration::from_secs(1))
                .await
                .map(drop),
        ),
        (
            "release_lease",
            store.release_lease("alice", "me").await.map(drop),
        ),
    ];
    for (call, result) in results {
        let err = result.expect_err(call);
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{call}: {err}");
        assert!(err.to_string().contains("read-only"), "{call}: {err}");
    }
    assert_eq!(store.export("alice").await.expect("unchanged"), data);
    drop((session, store));
    assert_eq!(snapshot(&dir), before);
}

#[tokio::test]
async fn readonly_shares_a_store_open_in_this_process() {
    let parent = tempdir();
    let dir = parent.path().join("store");
    let writer = Store::new(SledStore::open(&dir).await.expect("opens"));
    writer.create("s").await.expect("create");
    let reader = open_with_driver(&dir, OpenMode::ReadOnly)
        .await
        .expect("read-only beside the writer");
    writer.set_home_dc("s", 3).await.expect("write");
    assert_eq!(
        reader.home_dc("s").await.expect("read"),
        3,
        "sees live writes"
    );
    assert_eq!(
        reader
            .set_home_dc("s", 4)
            .await
            .expect_err("read-only")
            .kind(),
        ErrorKind::Unsupported
    );
    writer
        .set_home_dc("s", 5)
        .await
        .expect("the writer still writes");
    assert_eq!(reader.home_dc("s").await.expect("read"), 5);
}

#[tokio::test]
async fn readonly_rejects_a_foreign_sled_database_unchanged() {
    let parent = tempdir();
    let dir = parent.path().join("foreign");
    {
        let db = sled::open(&dir).expect("sled");
        db.open_tree("theirs")
            .expect("tree")
            .insert("k", "v")
            .expect("write");
        db.flush().expect("flush");
    }
    std::thread::sleep(Duration::from_millis(100));
    let before = snapshot(&dir);
    let err = open_with_driver(&dir, OpenMode::ReadOnly)
        .await
        .expect_err("not mtsession");
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("\"theirs\""), "{err}");
    assert_eq!(snapshot(&dir), before);
}

/// Why read-only opens read a private copy: sled itself writes to a store
/// directory whenever it opens one, even for reads only (it grows and
/// rewrites its log and adds a `snap.*` file). Should a sled upgrade stop
/// doing so, this fails, and reading in place becomes possible.
#[tokio::test]
async fn readonly_is_needed_because_sled_writes_when_it_opens_a_store() {
    let parent = tempdir();
    let dir = parent.path().join("store");
    real_store(&dir).await;
    std::thread::sleep(Duration::from_millis(100));
    let before = snapshot(&dir);
    {
        let db = sled::Config::new()
            .path(&dir)
            .flush_every_ms(None)
            .open()
            .expect("sled opens");
        let sessions = db.open_tree("sessions").expect("tree");
        assert_eq!(sessions.len(), 2);
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_ne!(snapshot(&dir), before, "sled no longer writes on open");
}
