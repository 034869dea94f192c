//! grammers' `SqliteSession` files, both ways, against the real grammers.
//!
//! - The fixtures in fixtures/files/grammers*.session were written by
//!   grammers-session 0.11.0's own `SqliteSession` (fixtures/scripts/gen_grammers.sh),
//!   and fixtures/files/grammers.json holds what `SqliteSession` reads back
//!   from them. `read_grammers`, imported into a store and seen through
//!   `GrammersSession`, must answer exactly that.
//! - Files written by `write_grammers` are opened by the real `SqliteSession`
//!   (the checker program built by the same script, named by
//!   MTSESSION_GRAMMERS_CHECKER, or found in target/grammers-checker), and
//!   what it reads must be what `GrammersSession` answers over the data that
//!   was written. Without the checker these comparisons are skipped, except
//!   under MTSESSION_REQUIRE_SERVICES=1, where a missing checker fails.
//! - Reading never modifies a file; foreign, corrupt and newer files get
//!   typed errors; what a format cannot hold is warned about.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use grammers_session::types::{
    ChannelKind, DcOption as GDc, PeerAuth, PeerId as GPeerId, PeerInfo,
};
use rusqlite::Connection;
use serde_json::{Map, Value, json};
use session_core::model::production_dcs;
use session_core::{
    AuthKey, DcOption, ErrorKind, FileKind, MemoryStore, Peer, PeerId, PeerKind, SelfUser,
    SentFile, SentFileKey, SessionData, Store, UpdateState,
};
use session_formats::file::{
    self, ForeignFormat, GRAMMERS_VERSION, WriteOptions, grammers_known_dcs, read_grammers,
    read_telethon, write_grammers, write_telethon,
};
use session_grammers::GrammersSession;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> PathBuf {
    workspace().join("fixtures/files").join(name)
}

fn manifest() -> Value {
    let path = fixture("grammers.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).expect("grammers.json is JSON")
}

const FIXTURES: [&str; 3] = [
    "grammers-fresh.session",
    "grammers.session",
    "grammers-bot.session",
];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The same JSON the checker prints, from any grammers session.
async fn dump<S: grammers_session::Session>(session: &S, dc_ids: &[i32], peer_ids: &[i64]) -> Value
where
    S::Error: std::fmt::Debug,
{
    let mut ids: Vec<i32> = (1..=5).chain(dc_ids.iter().copied()).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut dcs = Map::new();
    for id in ids {
        let answer = session.dc_option(id).expect("dc_option");
        dcs.insert(id.to_string(), answer.as_ref().map_or(Value::Null, dc_json));
    }
    let mut peers = Map::new();
    for &marked in peer_ids {
        let id = GPeerId::from_bot_api_dialog_id(marked).expect("dialog id");
        let answer = session.peer(id).await.expect("peer");
        peers.insert(
            marked.to_string(),
            answer.as_ref().map_or(Value::Null, peer_json),
        );
    }
    let me = session.peer(GPeerId::self_user()).await.expect("self");
    let state = session.updates_state().await.expect("state");
    json!({
        "home_dc": session.home_dc_id().expect("home"),
        "dc_options": Value::Object(dcs),
        "peers": Value::Object(peers),
        "self": me.as_ref().map_or(Value::Null, peer_json),
        "updates_state": {
            "pts": state.pts,
            "qts": state.qts,
            "date": state.date,
            "seq": state.seq,
            "channels": state.channels.iter().map(|c| json!([c.id, c.pts])).collect::<Vec<_>>(),
        },
    })
}

fn dc_json(dc: &GDc) -> Value {
    json!({
        "ipv4": dc.ipv4.to_string(),
        "ipv6": dc.ipv6.to_string(),
        "auth_key": dc.auth_key.map(|k| hex(&k)),
    })
}

fn peer_json(peer: &PeerInfo) -> Value {
    match peer {
        PeerInfo::User {
            id,
            auth,
            bot,
            is_self,
        } => json!({
            "type": "user", "id": id, "auth": auth.map(PeerAuth::hash),
            "bot": bot, "is_self": is_self,
        }),
        PeerInfo::Chat { id } => json!({ "type": "chat", "id": id }),
        PeerInfo::Channel { id, auth, kind } => json!({
            "type": "channel", "id": id, "auth": auth.map(PeerAuth::hash),
            "kind": kind.map(|k| match k {
                ChannelKind::Broadcast => "broadcast",
                ChannelKind::Megagroup => "megagroup",
                ChannelKind::Gigagroup => "gigagroup",
                ChannelKind::Community => "community",
            }),
        }),
    }
}

/// The ids of a grammers file's `dc_option` and `peer_info` rows.
fn row_ids(path: &Path) -> (Vec<i32>, Vec<i64>) {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open");
    let ids = |sql: &str| -> Vec<i64> {
        let mut stmt = conn.prepare(sql).expect("prepare");
        stmt.query_map([], |row| row.get(0))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows")
    };
    let dcs = ids("SELECT dc_id FROM dc_option")
        .into_iter()
        .map(|id| i32::try_from(id).expect("dc id"))
        .collect();
    (dcs, ids("SELECT peer_id FROM peer_info ORDER BY peer_id"))
}

/// The subtypes of a grammers file's peers, by id.
fn subtypes(path: &Path) -> BTreeMap<i64, Option<i64>> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open");
    let mut stmt = conn
        .prepare("SELECT peer_id, subtype FROM peer_info")
        .expect("prepare");
    stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows")
}

/// What grammers' `SqliteSession` answers for `file` may differ from what
/// `GrammersSession` answers in two known ways, both from grammers' file
/// format:
///
/// - grammers 0.11 writes a community as subtype 16 but reads 16 back as an
///   unknown kind: where the file holds 16, `theirs` must say `null` and
///   `ours` `community`.
/// - grammers writes no subtype for a user known not to be a bot (nor the
///   logged-in one), so it reads such a user back with `bot` and `is_self`
///   unknown: where the file holds a user without a subtype, `theirs` must
///   say `null` for both and `ours` either that or `false` for both.
///
/// Where the difference is exactly that, `theirs` is made equal to `ours`.
fn allow_grammers_file_limits(file: &Path, theirs: &mut Value, ours: &Value) {
    for (id, subtype) in subtypes(file) {
        let key = id.to_string();
        let (ours, theirs) = (&ours["peers"][&key], &mut theirs["peers"][&key]);
        if id < 0 && subtype == Some(16) {
            assert_eq!(
                theirs["kind"],
                Value::Null,
                "grammers reads subtype 16 of {id}"
            );
            assert_eq!(ours["kind"], json!("community"), "{id}");
            theirs["kind"] = json!("community");
        }
        if id > 0 && subtype.is_none() && ours.is_object() {
            assert_eq!(
                (&theirs["bot"], &theirs["is_self"]),
                (&Value::Null, &Value::Null),
                "{id}"
            );
            let pair = (&ours["bot"], &ours["is_self"]);
            assert!(
                pair == (&Value::Null, &Value::Null) || pair == (&json!(false), &json!(false)),
                "{id}: {ours}"
            );
            theirs["bot"] = ours["bot"].clone();
            theirs["is_self"] = ours["is_self"].clone();
        }
    }
}

/// A store session holding `data`, seen through the adapter.
async fn adapter_over(data: &SessionData) -> GrammersSession {
    let store = Store::new(MemoryStore::new());
    store.import("s", data).await.expect("import");
    GrammersSession::open(store.session("s").expect("name"))
        .await
        .expect("open adapter")
}

#[tokio::test]
async fn every_fixture_reads_as_grammers_itself_reads_it() {
    let manifest = manifest();
    let files = manifest["files"].as_object().expect("files");
    assert_eq!(files.len(), FIXTURES.len());
    for name in FIXTURES {
        let path = fixture(name);
        let import = read_grammers(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            import.format,
            ForeignFormat::Grammers {
                version: GRAMMERS_VERSION
            }
        );
        assert!(import.warnings.is_empty(), "{name}: {:#?}", import.warnings);
        let adapter = adapter_over(&import.data).await;
        let (dc_ids, peer_ids) = row_ids(&path);
        let ours = dump(&adapter, &dc_ids, &peer_ids).await;
        let mut theirs = files[name].clone();
        allow_grammers_file_limits(&path, &mut theirs, &ours);
        assert_eq!(ours, theirs, "{name}");
    }
}

#[test]
fn the_rich_fixture_maps_to_the_model_as_documented() {
    let data = read_grammers(fixture("grammers.session"))
        .expect("read")
        .data;
    assert_eq!(data.home_dc, 4);
    assert_eq!(
        data.self_user,
        Some(SelfUser {
            id: 1_000_001,
            is_bot: false
        })
    );
    // Every stored DC, plus grammers' known DCs 3 and 5 that have no row.
    assert_eq!(
        data.dcs.iter().map(|dc| dc.id).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 203]
    );
    assert!(data.dcs[1].auth_key.is_some() && data.dcs[3].auth_key.is_some());
    assert_eq!(data.dcs[2], grammers_known_dcs()[2]);
    let kind = |marked: i64| {
        data.peers
            .iter()
            .find(|p| p.id.marked() == marked)
            .map(|p| (p.kind, p.access_hash.map(|h| (h.value, h.min))))
    };
    assert_eq!(
        kind(1_000_001),
        Some((Some(PeerKind::SelfUser), Some((-7_001, false))))
    );
    assert_eq!(
        kind(1_000_002),
        Some((Some(PeerKind::Bot), Some((7_002, false))))
    );
    // grammers writes no subtype for a known non-bot user: the kind is unknown.
    assert_eq!(kind(1_000_003), Some((None, Some((i64::MAX, false)))));
    assert_eq!(kind(-4_242), Some((Some(PeerKind::Chat), None)));
    assert_eq!(
        kind(-1_000_000_003_004),
        Some((Some(PeerKind::Community), Some((8_004, false))))
    );
    assert_eq!(
        kind(-1_000_000_003_003),
        Some((Some(PeerKind::Gigagroup), Some((8_003, false))))
    );
    assert_eq!(kind(-1_000_000_003_006), Some((None, None)));
    assert_eq!(
        data.update_state.channels.into_iter().collect::<Vec<_>>(),
        [(3_001, 55), (3_002, 60), (3_003, 70)]
    );
    assert_eq!(
        (
            data.update_state.pts,
            data.update_state.qts,
            data.update_state.date,
            data.update_state.seq
        ),
        (101, 21, 1_700_000_100, 8)
    );
}

fn sha256ish(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("read bytes")
}

#[test]
fn reading_never_modifies_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    for name in FIXTURES {
        let path = dir.path().join(name);
        std::fs::copy(fixture(name), &path).expect("copy");
        let before = sha256ish(&path);
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        read_grammers(&path).expect("read");
        file::detect(&path).expect("detect");
        file::read_foreign(&path).expect("read_foreign");
        assert_eq!(sha256ish(&path), before, "{name} changed");
        assert_eq!(
            std::fs::metadata(&path).and_then(|m| m.modified()).ok(),
            modified
        );
    }
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), FIXTURES.len(), "no journal or WAL: {names:?}");
}

#[test]
fn detection_and_typed_errors() {
    let path = fixture("grammers.session");
    assert_eq!(
        file::detect(&path).expect("detect"),
        ForeignFormat::Grammers { version: 1 }
    );
    assert!(matches!(
        file::read_foreign(&path).expect("read").format,
        ForeignFormat::Grammers { .. }
    ));
    // A grammers file is not a Telethon one, and the other way round.
    let e = read_telethon(&path).expect_err("not telethon");
    assert_eq!(e.kind(), ErrorKind::Corrupt);
    assert!(e.to_string().contains("found a grammers session"), "{e}");
    let e = read_grammers(fixture("telethon1.session")).expect_err("not grammers");
    assert_eq!(e.kind(), ErrorKind::Corrupt);
    assert!(
        e.to_string().contains("expected a grammers session")
            && e.to_string().contains("Telethon v1 session"),
        "{e}"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let e = read_grammers(dir.path().join("missing.session")).expect_err("missing");
    assert_eq!(e.kind(), ErrorKind::NotFound);

    let text = dir.path().join("text.session");
    std::fs::write(&text, "not a database at all, just some words").expect("write");
    let e = read_grammers(&text).expect_err("not sqlite");
    assert_eq!(e.kind(), ErrorKind::Corrupt);
    assert!(e.to_string().contains("not an SQLite database"), "{e}");

    let truncated = dir.path().join("truncated.session");
    let bytes = std::fs::read(&path).expect("read");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2 + 100]).expect("write");
    let e = read_grammers(&truncated).expect_err("truncated");
    assert_eq!(e.kind(), ErrorKind::Corrupt);

    // A newer grammers schema is refused, never guessed at.
    let newer = dir.path().join("newer.session");
    std::fs::copy(&path, &newer).expect("copy");
    Connection::open(&newer)
        .and_then(|c| c.execute_batch("PRAGMA user_version = 2"))
        .expect("bump");
    let e = read_grammers(&newer).expect_err("newer");
    assert_eq!(e.kind(), ErrorKind::UnsupportedSchemaVersion);
    assert!(e.to_string().contains("schema version 2"), "{e}");

    // A table without the columns grammers reads.
    let broken = dir.path().join("broken.session");
    std::fs::copy(&path, &broken).expect("copy");
    Connection::open(&broken)
        .and_then(|c| {
            c.execute_batch(
                "DROP TABLE peer_info; CREATE TABLE peer_info (peer_id INTEGER PRIMARY KEY)",
            )
        })
        .expect("break");
    let e = read_grammers(&broken).expect_err("broken");
    assert_eq!(e.kind(), ErrorKind::Corrupt);
    assert!(e.to_string().contains("hash, subtype"), "{e}");
}

#[test]
fn rows_the_model_cannot_hold_are_warned_about() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("odd.session");
    std::fs::copy(fixture("grammers.session"), &path).expect("copy");
    Connection::open(&path)
        .and_then(|c| {
            c.execute_batch(
                "INSERT INTO dc_home VALUES (5);
                 INSERT INTO dc_option VALUES (7, 'nowhere', '[::1]:443', x'0102');
                 INSERT INTO peer_info VALUES (-77, 5, NULL);
                 INSERT INTO peer_info VALUES (1000009, 9, 1);
                 INSERT INTO peer_info VALUES (1000010, 10, 64);
                 INSERT INTO peer_info VALUES (-1000000003009, 9, 32);
                 INSERT INTO peer_info VALUES (0, 1, NULL);
                 INSERT INTO channel_state VALUES (-4, 1);
                 CREATE TABLE extra (a); INSERT INTO extra VALUES (1), (2);",
            )
        })
        .expect("odd rows");
    let import = read_grammers(&path).expect("still readable");
    let rows = |table: &str, needle: &str| {
        import
            .warnings
            .iter()
            .filter(|w| w.table == table && w.message.contains(needle))
            .map(|w| w.rows)
            .sum::<u64>()
    };
    assert_eq!(rows("dc_home", "extra home DC rows"), 1);
    assert_eq!(rows("dc_option", "is not an IPv4 address"), 1);
    assert_eq!(rows("dc_option", "2 bytes long, expected 256"), 1);
    assert_eq!(rows("peer_info", "basic chat ignored"), 1);
    assert_eq!(
        rows("peer_info", "a second user marked as the logged-in one"),
        1
    );
    assert_eq!(rows("peer_info", "bits grammers does not write"), 1);
    assert_eq!(rows("peer_info", "channel subtype 32"), 1);
    assert_eq!(rows("peer_info", "not a valid dialog id"), 1);
    assert_eq!(rows("channel_state", "not a bare channel id"), 1);
    assert_eq!(rows("extra", "not part of the grammers format"), 2);
    // The data read stays consistent: the first self user (by id) is kept.
    assert_eq!(import.data.home_dc, 4);
    assert_eq!(import.data.self_user.map(|u| u.id), Some(1_000_001));
    let dc7 = import.data.dcs.iter().find(|dc| dc.id == 7).expect("DC 7");
    assert_eq!((dc7.ipv4, dc7.auth_key.is_none()), (None, true));
}

fn key(seed: u8) -> AuthKey {
    AuthKey::new(std::array::from_fn(|i| {
        (i as u8).wrapping_mul(13).wrapping_add(seed)
    }))
}

/// A session with everything the model holds, including what grammers cannot.
fn rich_data() -> SessionData {
    let v4 =
        |a, b, c, d, port| std::net::SocketAddrV4::new(std::net::Ipv4Addr::new(a, b, c, d), port);
    let mut data = SessionData {
        home_dc: 2,
        dcs: vec![
            DcOption {
                auth_key: Some(key(2)),
                ..production_dcs()[1].clone()
            },
            DcOption {
                auth_key: Some(key(4)),
                ..DcOption::new(4, Some(v4(149, 154, 167, 91, 443)), None)
            },
            production_dcs()[2].clone(),
            DcOption::new(300, Some(v4(10, 1, 2, 3, 8443)), None),
            DcOption::new(
                301,
                None,
                Some(std::net::SocketAddrV6::new(
                    std::net::Ipv6Addr::new(0x2a0a, 0, 0, 0, 0, 0, 0, 1),
                    443,
                    0,
                    0,
                )),
            ),
        ],
        self_user: Some(SelfUser {
            id: 5_000_001,
            is_bot: true,
        }),
        api_id: Some(12_345),
        test_mode: false,
        takeout_id: Some(99),
        update_state: UpdateState {
            pts: 1,
            qts: 2,
            date: 3,
            seq: 4,
            channels: [(600, 6), (601, 7)].into(),
        },
        peers: vec![
            Peer::new(PeerId::user(5_000_002).expect("succeeds"))
                .with_kind(PeerKind::User)
                .with_hash(52)
                .with_username("Someone")
                .with_phone("15550001")
                .with_name("Some One"),
            Peer::new(PeerId::user(5_000_003).expect("succeeds"))
                .with_kind(PeerKind::Bot)
                .with_hash(-53),
            Peer::new(PeerId::user(5_000_004).expect("succeeds")).with_min_hash(54),
            Peer::new(PeerId::chat(5_005).expect("succeeds")).with_kind(PeerKind::Chat),
            Peer::new(PeerId::channel(600).expect("succeeds"))
                .with_kind(PeerKind::Broadcast)
                .with_hash(i64::MIN),
            Peer::new(PeerId::channel(601).expect("succeeds"))
                .with_kind(PeerKind::Megagroup)
                .with_hash(61),
            Peer::new(PeerId::channel(602).expect("succeeds"))
                .with_kind(PeerKind::Gigagroup)
                .with_hash(62),
            Peer::new(PeerId::channel(603).expect("succeeds"))
                .with_kind(PeerKind::Community)
                .with_hash(63),
            Peer::new(PeerId::channel(1_002_147_483_700).expect("succeeds"))
                .with_kind(PeerKind::Monoforum)
                .with_hash(64),
            Peer::new(PeerId::channel(605).expect("succeeds")),
        ],
        sent_files: vec![(
            SentFileKey {
                md5: [7; 16],
                size: 10,
                kind: FileKind::Photo,
            },
            SentFile {
                id: 1,
                access_hash: 2,
            },
        )],
    };
    data.canonicalize();
    data
}

#[test]
fn writing_lays_out_grammers_tables_and_warns_about_the_rest() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("out.session");
    let data = rich_data();
    let warnings = write_grammers(&path, &data, WriteOptions::default()).expect("write");
    let rows = |table: &str, needle: &str| {
        warnings
            .iter()
            .filter(|w| w.table == table && w.message.contains(needle))
            .map(|w| w.rows)
            .sum::<u64>()
    };
    assert_eq!(rows("sent_files", "not written"), 1);
    assert_eq!(rows("session", "api_id"), 1);
    assert_eq!(rows("session", "takeout id"), 1);
    assert_eq!(rows("peer_info", "usernames not written"), 1);
    assert_eq!(rows("peer_info", "phone not written"), 1);
    assert_eq!(rows("peer_info", "display name not written"), 1);
    assert_eq!(rows("peer_info", "min access hash"), 1);
    assert_eq!(rows("peer_info", "monoforum kind"), 1);
    assert_eq!(rows("peer_info", "user kind not written"), 1);
    assert_eq!(rows("dc_option", "DC 4 has no IPv6 address"), 1);
    assert_eq!(rows("dc_option", "DC 300 has no IPv6 address"), 1);
    assert_eq!(rows("dc_option", "DC 301 not written"), 1);

    // The schema is grammers' own, byte for byte, and so is user_version.
    let schema = |path: &Path| -> Vec<(String, String)> {
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open");
        let mut stmt = conn
            .prepare("SELECT name, sql FROM sqlite_master ORDER BY name")
            .expect("prepare");
        stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows")
    };
    assert_eq!(schema(&path), schema(&fixture("grammers-fresh.session")));
    let conn = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("user_version");
    assert_eq!(version, 1);
    // Addresses as grammers formats them, keys as 256-byte blobs, the self
    // user as a row with the self and bot bits, chats with hash 0.
    let dc: Vec<(i64, String, String, Option<Vec<u8>>)> = conn
        .prepare("SELECT * FROM dc_option ORDER BY dc_id")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows");
    let shown: Vec<(i64, &str, &str, Option<usize>)> = dc
        .iter()
        .map(|(id, a, b, k)| (*id, a.as_str(), b.as_str(), k.as_ref().map(Vec::len)))
        .collect();
    assert_eq!(
        shown,
        [
            (
                2,
                "149.154.167.51:443",
                "[2001:67c:4e8:f002::a]:443",
                Some(256)
            ),
            (
                4,
                "149.154.167.91:443",
                "[2001:67c:4e8:f004::a]:443",
                Some(256)
            ),
            (300, "10.1.2.3:8443", "[::ffff:10.1.2.3]:8443", None),
        ]
    );
    let types: Vec<(i64, Option<i64>, Option<i64>)> = conn
        .prepare("SELECT peer_id, hash, subtype FROM peer_info ORDER BY peer_id")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows");
    assert_eq!(
        types,
        [
            (-2_002_147_483_700, Some(64), None),
            (-1_000_000_000_605, None, None),
            (-1_000_000_000_603, Some(63), Some(16)),
            (-1_000_000_000_602, Some(62), Some(12)),
            (-1_000_000_000_601, Some(61), Some(4)),
            (-1_000_000_000_600, Some(i64::MIN), Some(8)),
            (-5_005, Some(0), None),
            (5_000_001, None, Some(3)),
            (5_000_002, Some(52), None),
            (5_000_003, Some(-53), Some(2)),
            (5_000_004, None, None),
        ]
    );
}

#[test]
fn writing_refuses_to_clobber_and_creates_private_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("out.session");
    write_grammers(&path, &SessionData::default(), WriteOptions::default()).expect("write");
    let e = write_grammers(&path, &rich_data(), WriteOptions::default()).expect_err("exists");
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    assert_eq!(
        read_grammers(&path).expect("unchanged").data.self_user,
        None
    );
    write_grammers(&path, &rich_data(), WriteOptions::overwrite()).expect("overwrite");
    assert!(
        read_grammers(&path)
            .expect("replaced")
            .data
            .self_user
            .is_some()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let e = write_grammers(
        dir.path().join("no/such/dir/x.session"),
        &rich_data(),
        WriteOptions::default(),
    )
    .expect_err("no dir");
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

/// The parts of a session grammers holds, as `read_grammers` reads them back.
fn grammers_part(data: &SessionData) -> SessionData {
    let mut out = SessionData {
        api_id: None,
        takeout_id: None,
        sent_files: Vec::new(),
        ..data.clone()
    };
    let mut dcs: BTreeMap<i32, DcOption> = BTreeMap::new();
    for dc in &data.dcs {
        if let Some(seen) = file::grammers_dc(dc.id, Some(dc), data.test_mode) {
            dcs.insert(dc.id, seen);
        }
    }
    for known in grammers_known_dcs() {
        dcs.entry(known.id).or_insert(known);
    }
    out.dcs = dcs.into_values().collect();
    let me = data.self_user;
    out.peers = data
        .peers
        .iter()
        .map(|p| {
            let mut p = Peer {
                usernames: None,
                phone: None,
                name: None,
                last_seen: None,
                access_hash: p.access_hash.filter(|h| !h.min),
                ..p.clone()
            };
            if me.is_some_and(|u| u.id == p.id.marked()) {
                p.kind = Some(PeerKind::SelfUser);
            } else if matches!(p.kind, Some(PeerKind::User) | Some(PeerKind::Monoforum)) {
                // grammers writes no subtype for these
                p.kind = None;
            }
            p
        })
        .collect();
    if let Some(me) = me
        && !out.peers.iter().any(|p| p.id.marked() == me.id)
    {
        out.peers
            .push(Peer::new(PeerId::user(me.id).expect("succeeds")).with_kind(PeerKind::SelfUser));
    }
    out.canonicalize();
    out
}

#[test]
fn what_is_written_reads_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (n, data) in [SessionData::default(), rich_data()]
        .into_iter()
        .enumerate()
    {
        let path = dir.path().join(format!("{n}.session"));
        write_grammers(&path, &data, WriteOptions::default()).expect("write");
        let back = read_grammers(&path).expect("read back");
        assert!(back.warnings.is_empty(), "{:#?}", back.warnings);
        assert_eq!(back.data, grammers_part(&data), "session {n}");
    }
    // A fresh grammers file round-trips to the same tables.
    let data = read_grammers(fixture("grammers-fresh.session"))
        .expect("read")
        .data;
    let path = dir.path().join("fresh.session");
    write_grammers(&path, &data, WriteOptions::default()).expect("write");
    assert_eq!(row_ids(&path), (vec![], vec![]));
}

fn checker() -> Option<PathBuf> {
    let required = std::env::var("MTSESSION_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
    let path = match std::env::var_os("MTSESSION_GRAMMERS_CHECKER") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => workspace().join("target/grammers-checker/release/grammers-session-fixtures"),
    };
    if path.is_file() {
        return Some(path);
    }
    assert!(
        !required,
        "the grammers checker {} is missing; build it with fixtures/scripts/gen_grammers.sh \
         --checker (or point MTSESSION_GRAMMERS_CHECKER at it)",
        path.display()
    );
    eprintln!(
        "skipped: no grammers checker at {} (fixtures/scripts/gen_grammers.sh --checker builds it)",
        path.display()
    );
    None
}

fn grammers_reads(checker: &Path, file: &Path) -> Value {
    let output = Command::new(checker)
        .arg("check")
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", checker.display()));
    assert!(
        output.status.success(),
        "grammers could not open {}: {}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("checker prints JSON")
}

/// Writes `data` as a grammers file, has the real grammers read it, and
/// compares with what `GrammersSession` answers over the same data.
async fn check_written(checker: &Path, dir: &Path, name: &str, data: &SessionData) -> Value {
    let path = dir.join(format!("{name}.session"));
    write_grammers(&path, data, WriteOptions::default()).expect("write");
    let before = std::fs::read(&path).expect("bytes");
    let mut theirs = grammers_reads(checker, &path);
    assert_eq!(
        std::fs::read(&path).expect("bytes"),
        before,
        "{name}: grammers rewrote the file on open"
    );
    let adapter = adapter_over(data).await;
    let (dc_ids, peer_ids) = row_ids(&path);
    let ours = dump(&adapter, &dc_ids, &peer_ids).await;
    allow_grammers_file_limits(&path, &mut theirs, &ours);
    assert_eq!(theirs, ours, "{name}");
    theirs
}

#[tokio::test]
async fn grammers_opens_what_we_write_and_reads_what_the_adapter_answers() {
    let Some(checker) = checker() else { return };
    let dir = tempfile::tempdir().expect("temp dir");

    let fresh = check_written(&checker, dir.path(), "fresh", &SessionData::default()).await;
    assert_eq!(fresh["self"], Value::Null);

    let rich = check_written(&checker, dir.path(), "rich", &rich_data()).await;
    assert_eq!(rich["self"]["id"], json!(5_000_001));
    assert_eq!(rich["self"]["bot"], json!(true));
    assert_eq!(rich["dc_options"]["2"]["ipv4"], json!("149.154.167.51:443"));

    // Telethon and Pyrogram sessions (files written by the real libraries)
    // convert into grammers files that grammers reads as logged in.
    for (name, read) in [
        (
            "telethon1.session",
            read_telethon(fixture("telethon1.session")).expect("telethon"),
        ),
        (
            "pyrogram.session",
            session_formats::read_pyrogram(fixture("pyrogram.session")).expect("pyrogram"),
        ),
        (
            "kurigram.session",
            session_formats::read_pyrogram(fixture("kurigram.session")).expect("kurigram"),
        ),
    ] {
        let data = session_core::validate_data(&read.data, true).expect("valid");
        let seen = check_written(&checker, dir.path(), name, &data).await;
        let me = data.self_user.expect("the fixture is logged in");
        assert_eq!(seen["self"]["id"], json!(me.id), "{name}");
        let home = data.home_auth_key().expect("home key");
        assert_eq!(
            seen["dc_options"][data.home_dc.to_string()]["auth_key"],
            json!(hex(home.expose())),
            "{name}"
        );
    }

    // The grammers fixtures, read and written again, read the same in grammers.
    for name in FIXTURES {
        let data = read_grammers(fixture(name)).expect("read").data;
        let again = check_written(&checker, dir.path(), &format!("again-{name}"), &data).await;
        let mut original = manifest()["files"][name].clone();
        allow_grammers_file_limits(&fixture(name), &mut original, &again);
        assert_eq!(again, original, "{name}");
    }
}

/// Telethon → grammers → Telethon keeps everything both formats hold.
#[test]
fn telethon_to_grammers_and_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let original = read_telethon(fixture("telethon1.session"))
        .expect("telethon")
        .data;
    let grammers_file = dir.path().join("converted.session");
    write_grammers(&grammers_file, &original, WriteOptions::default()).expect("to grammers");
    let through = read_grammers(&grammers_file).expect("read grammers").data;
    let telethon_file = dir.path().join("back.session");
    write_telethon(&telethon_file, &through, WriteOptions::default()).expect("to telethon");
    let back = read_telethon(&telethon_file).expect("read telethon").data;
    assert_eq!(back.home_dc, original.home_dc);
    assert_eq!(
        back.self_user.map(|u| u.id),
        original.self_user.map(|u| u.id)
    );
    assert_eq!(back.home_auth_key(), original.home_auth_key());
    assert_eq!(back.update_state, original.update_state);
    let with_hash = |data: &SessionData| -> Vec<(i64, Option<i64>)> {
        data.peers
            .iter()
            .filter(|p| p.access_hash.is_some_and(|h| !h.min) || p.kind == Some(PeerKind::Chat))
            .map(|p| (p.id.marked(), p.access_hash.map(|h| h.value)))
            .collect()
    };
    assert_eq!(with_hash(&back), with_hash(&original));
}
