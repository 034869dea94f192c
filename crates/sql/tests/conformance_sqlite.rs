//! session-sql on SQLite files (`sql+sqlite:`): the conformance suite and
//! engine checks.

mod common;

use common::SqlFactory;
use session_core::{ErrorKind, OpenMode, Store};
use session_sql::{Engine, SqlStore};

session_conformance::conformance_tests! {
    factory: SqlFactory::new(Engine::Sqlite),
    durable: true,
    shared_between_processes: true,
    leases: true,
    atomic_multi_key_writes: true,
}

#[tokio::test]
async fn sqlite_refuses_newer_schema() {
    common::refuses_newer_schema(Engine::Sqlite).await;
}

#[tokio::test]
async fn sqlite_refuses_unknown_migration() {
    common::refuses_unknown_migration(Engine::Sqlite).await;
}

#[tokio::test]
async fn sqlite_concurrent_first_opens() {
    common::concurrent_first_opens(Engine::Sqlite).await;
}

#[tokio::test]
async fn sqlite_names_compare_exactly() {
    common::names_compare_exactly(Engine::Sqlite).await;
}

#[tokio::test]
async fn sqlite_delete_cascades() {
    common::delete_cascades(Engine::Sqlite).await;
}

#[tokio::test]
async fn sqlite_odd_text_round_trips() {
    common::odd_text_round_trips(Engine::Sqlite).await;
}

#[tokio::test]
async fn sqlite_unknown_options_are_refused() {
    common::unknown_options_are_refused("sql+sqlite:/nonexistent/x.db").await;
}

#[tokio::test]
async fn sqlite_open_modes() {
    common::open_modes(Engine::Sqlite).await;
}

#[tokio::test]
async fn sqlite_memory_database_works() {
    let store = Store::new(SqlStore::open("sql+sqlite::memory:").await.expect("open"));
    store.create("m").await.expect("create");
    assert_eq!(store.list().await.expect("list"), ["m"]);
    assert_eq!(store.backend_name(), "sqlite");
    let caps = store.capabilities();
    assert!(!caps.durable && !caps.shared_between_processes, "{caps:?}");
    assert!(caps.leases && caps.atomic_multi_key_writes, "{caps:?}");
}

#[tokio::test]
async fn sqlite_table_prefix_from_url() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("p.db");
    let url = format!(
        "sql+sqlite:{}?table_prefix=abc_&max_connections=2",
        path.display()
    );
    let sql = SqlStore::open(&url).await.expect("open");
    assert_eq!(sql.table_prefix(), "abc_");
    let store = Store::new(sql);
    store.create("x").await.expect("create");
    drop(store);
    let conn = rusqlite::Connection::open(&path).expect("raw");
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name LIKE 'abc\\_%' ESCAPE '\\'",
            [],
            |r| r.get(0),
        )
        .expect("tables");
    assert_eq!(tables, 9);
}

#[tokio::test]
async fn sqlite_missing_directory_is_not_found() {
    let err = SqlStore::open("sql+sqlite:/nonexistent-dir/x/y.db")
        .await
        .expect_err("no dir");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err:?}");
    assert!(err.to_string().contains("/nonexistent-dir/x"), "{err}");
}

/// `sqlite:` belongs to session-sqlite; session-sql says which scheme is its own.
#[tokio::test]
async fn sqlite_scheme_points_to_sql_sqlite() {
    let err = SqlStore::open("sqlite:x.db").await.expect_err("not ours");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("sql+sqlite:"), "{err}");
}

/// What is not a store is refused, and a read-only open changes nothing.
#[tokio::test]
async fn sqlite_read_only_refuses_what_is_not_a_store() {
    let dir = tempfile::tempdir().expect("dir");
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").expect("empty file");
    let text = dir.path().join("notes.txt");
    std::fs::write(
        &text,
        "hello, this is not a database at all, not even close",
    )
    .expect("text");
    let missing = dir.path().join("missing.db");
    let before = listing(dir.path());
    for (path, kind) in [
        (&empty, ErrorKind::InvalidInput),
        (&text, ErrorKind::Corrupt),
        (&missing, ErrorKind::NotFound),
        (&dir.path().to_path_buf(), ErrorKind::InvalidInput),
    ] {
        let url = format!("sql+sqlite:{}", path.display());
        let err = SqlStore::builder(&url)
            .mode(OpenMode::ReadOnly)
            .open()
            .await
            .expect_err("not a store");
        assert_eq!(err.kind(), kind, "{}: {err}", path.display());
        assert_eq!(listing(dir.path()), before, "{}", path.display());
    }
    // An SQLite file of another program holds no store.
    let other = dir.path().join("other.db");
    let conn = rusqlite::Connection::open(&other).expect("plain open");
    conn.execute_batch("CREATE TABLE notes (body TEXT);")
        .expect("table");
    drop(conn);
    let before = listing(dir.path());
    let url = format!("sql+sqlite:{}", other.display());
    for mode in [OpenMode::ReadOnly, OpenMode::ReadWrite] {
        let err = SqlStore::builder(&url)
            .mode(mode)
            .open()
            .await
            .expect_err("no store");
        assert_eq!(err.kind(), ErrorKind::NotFound, "{mode:?}: {err}");
        assert_eq!(listing(dir.path()), before, "{mode:?}");
    }
}

/// A read-only open of a closed store creates no `-wal` or `-shm` and
/// changes no byte or mode.
#[tokio::test]
async fn sqlite_read_only_on_a_closed_store_changes_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("store.db");
    let url = format!("sql+sqlite:{}", path.display());
    {
        let sql = SqlStore::open(&url).await.expect("create");
        let store = Store::new(sql.clone());
        store.create("alice").await.expect("session");
        drop(store);
        sql.close().await.expect("close");
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let before = listing(dir.path());
    assert_eq!(before.len(), 1, "closed cleanly: {before:?}");
    {
        let store = Store::new(
            SqlStore::builder(&url)
                .mode(OpenMode::ReadOnly)
                .open()
                .await
                .expect("read-only"),
        );
        assert_eq!(store.list().await.expect("list"), ["alice"]);
        assert_eq!(listing(dir.path()), before, "while open");
    }
    assert_eq!(listing(dir.path()), before);
}

/// Every file in a directory: name, mode, and a digest of its bytes.
fn listing(dir: &std::path::Path) -> Vec<(String, u32, u64)> {
    use std::os::unix::fs::PermissionsExt;
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| {
            let e = e.expect("entry");
            let meta = e.metadata().expect("meta");
            let bytes = if meta.is_file() {
                std::fs::read(e.path()).expect("read")
            } else {
                Vec::new()
            };
            // FNV-1a: any changed byte shows.
            let digest = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
            });
            (
                e.file_name().to_string_lossy().into_owned(),
                meta.permissions().mode() & 0o7777,
                digest,
            )
        })
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn sqlite_lookups_use_their_indexes() {
    common::lookups_use_their_indexes(Engine::Sqlite).await;
}

/// The layout of schema version 1, as earlier releases of this crate wrote
/// it (frozen here: a change of the stored layout must come with a
/// migration), and rows as they wrote them.
const VERSION_1: &str = r#"
CREATE TABLE "mtsession_schema" (id INTEGER NOT NULL PRIMARY KEY, version INTEGER NOT NULL);
CREATE TABLE "mtsession_migrations" ("version" varchar NOT NULL PRIMARY KEY, "applied_at" bigint NOT NULL);
CREATE TABLE "mtsession_sessions" (session TEXT NOT NULL PRIMARY KEY, home_dc INTEGER NOT NULL,
  self_user_id INTEGER NULL, self_is_bot INTEGER NULL, api_id INTEGER NULL, test_mode INTEGER NOT NULL,
  takeout_id INTEGER NULL, created_at_ms INTEGER NOT NULL, updated_at_ms INTEGER NOT NULL,
  state_pts INTEGER NOT NULL, state_qts INTEGER NOT NULL, state_date INTEGER NOT NULL,
  state_seq INTEGER NOT NULL);
CREATE TABLE "mtsession_dc_options" (session TEXT NOT NULL, dc_id INTEGER NOT NULL, ipv4 TEXT NULL,
  ipv6 TEXT NULL, auth_key BLOB NULL, PRIMARY KEY (session, dc_id),
  FOREIGN KEY (session) REFERENCES "mtsession_sessions" (session) ON DELETE CASCADE) WITHOUT ROWID;
CREATE TABLE "mtsession_channel_pts" (session TEXT NOT NULL, channel_id INTEGER NOT NULL,
  pts INTEGER NOT NULL, PRIMARY KEY (session, channel_id),
  FOREIGN KEY (session) REFERENCES "mtsession_sessions" (session) ON DELETE CASCADE) WITHOUT ROWID;
CREATE TABLE "mtsession_peers" (session TEXT NOT NULL, id INTEGER NOT NULL, kind INTEGER NULL,
  hash INTEGER NULL, hash_is_min INTEGER NOT NULL, usernames_known INTEGER NOT NULL,
  phone TEXT NULL, name BLOB NULL, last_seen INTEGER NULL, PRIMARY KEY (session, id),
  FOREIGN KEY (session) REFERENCES "mtsession_sessions" (session) ON DELETE CASCADE) WITHOUT ROWID;
CREATE TABLE "mtsession_peer_usernames" (session TEXT NOT NULL, username_lower BLOB NOT NULL,
  peer_id INTEGER NOT NULL, pos INTEGER NOT NULL, username BLOB NOT NULL,
  PRIMARY KEY (session, username_lower),
  FOREIGN KEY (session, peer_id) REFERENCES "mtsession_peers" (session, id) ON DELETE CASCADE);
CREATE TABLE "mtsession_sent_files" (session TEXT NOT NULL, md5 BLOB NOT NULL, size INTEGER NOT NULL,
  kind INTEGER NOT NULL, file_id INTEGER NOT NULL, access_hash INTEGER NOT NULL,
  PRIMARY KEY (session, md5, size, kind),
  FOREIGN KEY (session) REFERENCES "mtsession_sessions" (session) ON DELETE CASCADE) WITHOUT ROWID;
CREATE TABLE "mtsession_leases" (session TEXT NOT NULL PRIMARY KEY, owner BLOB NOT NULL,
  expires_at_ms INTEGER NOT NULL);
CREATE INDEX "mtsession_peers_phone" ON "mtsession_peers" (session, phone);
CREATE INDEX "mtsession_peer_usernames_owner" ON "mtsession_peer_usernames" (session, peer_id);
INSERT INTO "mtsession_schema" VALUES (1, 1);
INSERT INTO "mtsession_migrations" VALUES ('m0001_initial', 1700000000);
INSERT INTO "mtsession_sessions" VALUES ('alice', 4, 777, 1, 12345, 0, NULL, 1700000000000,
  1700000005000, 10, 20, 30, 40);
INSERT INTO "mtsession_dc_options" VALUES ('alice', 4, '149.154.167.91:443', NULL, zeroblob(256));
INSERT INTO "mtsession_channel_pts" VALUES ('alice', 1001, 55);
INSERT INTO "mtsession_peers" VALUES ('alice', 42, 1, -9, 0, 1, '79990042', CAST('Forty Two' AS BLOB), 1700000001);
INSERT INTO "mtsession_peers" VALUES ('alice', -1000000000043, 5, 8, 1, 0, NULL, NULL, NULL);
INSERT INTO "mtsession_peer_usernames" VALUES ('alice', CAST('second' AS BLOB), 42, 1, CAST('Second' AS BLOB));
INSERT INTO "mtsession_peer_usernames" VALUES ('alice', CAST('first' AS BLOB), 42, 0, CAST('First' AS BLOB));
INSERT INTO "mtsession_sent_files" VALUES ('alice', zeroblob(16), 99, 1, 5, 6);
"#;

/// A store written by an earlier release (schema version 1) opens in every
/// mode and reads back exactly, and takes writes.
#[tokio::test]
async fn sqlite_opens_a_store_written_by_the_previous_release() {
    use session_core::{
        AccessHash, AuthKey, DcOption, FileKind, Peer, PeerId, PeerKind, SelfUser, SentFile,
        SentFileKey, SessionData, UpdateState,
    };
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("v1.db");
    let conn = rusqlite::Connection::open(&path).expect("plain open");
    conn.execute_batch("PRAGMA journal_mode = WAL;")
        .expect("wal");
    conn.execute_batch(VERSION_1).expect("version 1");
    drop(conn);
    let expected = SessionData {
        home_dc: 4,
        dcs: vec![DcOption {
            id: 4,
            ipv4: Some("149.154.167.91:443".parse().expect("addr")),
            ipv6: None,
            auth_key: Some(AuthKey::new([0; 256])),
        }],
        self_user: Some(SelfUser {
            id: 777,
            is_bot: true,
        }),
        api_id: Some(12345),
        test_mode: false,
        takeout_id: None,
        update_state: UpdateState {
            pts: 10,
            qts: 20,
            date: 30,
            seq: 40,
            channels: [(1001, 55)].into_iter().collect(),
        },
        peers: vec![
            Peer {
                kind: Some(PeerKind::Broadcast),
                access_hash: Some(AccessHash::min(8)),
                ..Peer::new(PeerId::channel(43).expect("id"))
            },
            Peer {
                kind: Some(PeerKind::User),
                access_hash: Some(AccessHash::full(-9)),
                usernames: Some(vec!["First".to_owned(), "Second".to_owned()]),
                phone: Some("79990042".to_owned()),
                name: Some("Forty Two".to_owned()),
                last_seen: Some(1_700_000_001),
                ..Peer::new(PeerId::user(42).expect("id"))
            },
        ],
        sent_files: vec![(
            SentFileKey {
                md5: [0; 16],
                size: 99,
                kind: FileKind::from_code(1).expect("kind"),
            },
            SentFile {
                id: 5,
                access_hash: 6,
            },
        )],
    };
    let mut expected = expected;
    expected.canonicalize();
    let url = format!("sql+sqlite:{}", path.display());
    for mode in [OpenMode::ReadOnly, OpenMode::ReadWrite, OpenMode::Create] {
        let store = Store::new(
            SqlStore::builder(&url)
                .mode(mode)
                .open()
                .await
                .unwrap_or_else(|e| panic!("{mode:?}: {e}")),
        );
        assert_eq!(
            store.export("alice").await.expect("export"),
            expected,
            "{mode:?}"
        );
        let meta = store.metadata("alice").await.expect("meta");
        assert_eq!(
            (meta.created_at_ms, meta.updated_at_ms),
            (1_700_000_000_000, 1_700_000_005_000)
        );
        assert_eq!(
            store
                .peer_by_username("alice", "SECOND")
                .await
                .expect("lookup")
                .map(|p| p.id),
            Some(PeerId::user(42).expect("id"))
        );
    }
    let store = Store::new(SqlStore::open(&url).await.expect("open"));
    store
        .cache_peers(
            "alice",
            &[Peer::new(PeerId::user(44).expect("id")).with_username("second")],
        )
        .await
        .expect("a write");
    let moved = store
        .peers("alice", &[PeerId::user(42).expect("id")])
        .await
        .expect("read");
    assert_eq!(
        moved[0].as_ref().and_then(|p| p.usernames.clone()),
        Some(vec!["First".to_owned()])
    );
}
