//! Bad files get typed errors naming the file; every Telethon schema version
//! reads; rows the model cannot hold are warned about; writing refuses to
//! clobber, creates 0600 files, and lays out tables exactly as Telethon does.

mod support;

use std::path::{Path, PathBuf};

use rusqlite::Connection;
use session_core::{
    AuthKey, DcOption, Error, ErrorKind, Peer, PeerId, PeerKind, SelfUser, SessionData,
};
use session_formats::file::{
    self, ForeignFormat, PyrogramLayout, WriteOptions, read_pyrogram, read_telethon,
    read_telethon2, write_pyrogram, write_telethon,
};
use support::*;

fn copy_fixture(name: &str, dir: &Path) -> PathBuf {
    let to = dir.join(name);
    std::fs::copy(fixtures_dir().join(name), &to).expect("copy fixture");
    to
}

fn assert_names_file(e: &Error, path: &Path) {
    let shown = e.to_string();
    assert!(
        shown.contains(&path.display().to_string()),
        "error does not name the file: {shown}"
    );
}

#[test]
fn truncated_file_is_corrupt_and_named() {
    let dir = temp_dir();
    let path = copy_fixture("telethon1.session", dir.path());
    let bytes = std::fs::read(&path).expect("read");
    std::fs::write(&path, &bytes[..bytes.len() / 2 + 100]).expect("truncate");
    let e = read_telethon(&path).expect_err("truncated");
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(e.to_string().contains("truncated"), "{e}");
    assert_names_file(&e, &path);
    // Cut at a page boundary: the header still announces more pages.
    std::fs::write(&path, &bytes[..4096]).expect("truncate");
    let e = file::detect(&path).expect_err("truncated");
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(e.to_string().contains("announces"), "{e}");
}

#[test]
fn random_bytes_and_empty_files_are_not_sqlite() {
    let dir = temp_dir();
    let path = dir.path().join("random.session");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    std::fs::write(&path, &noise).expect("write");
    for e in [
        read_telethon(&path).expect_err("noise"),
        read_pyrogram(&path).expect_err("noise"),
        read_telethon2(&path).expect_err("noise"),
    ] {
        assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
        assert!(e.to_string().contains("not an SQLite database"), "{e}");
        assert_names_file(&e, &path);
    }
    let empty = dir.path().join("empty.session");
    std::fs::write(&empty, b"").expect("write");
    let e = read_telethon(&empty).expect_err("empty");
    assert_eq!(e.kind(), ErrorKind::Corrupt);
    assert!(e.to_string().contains("empty"), "{e}");
    let missing = dir.path().join("missing.session");
    let e = read_telethon(&missing).expect_err("missing");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_names_file(&e, &missing);
}

#[test]
fn damaged_pages_are_corrupt_not_a_panic() {
    let dir = temp_dir();
    let path = copy_fixture("telethon1.session", dir.path());
    let mut bytes = std::fs::read(&path).expect("read");
    for b in &mut bytes[4096..8192] {
        *b = 0xA5;
    }
    std::fs::write(&path, &bytes).expect("write");
    let e = read_telethon(&path).expect_err("damaged");
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert_names_file(&e, &path);
}

#[test]
fn other_sqlite_files_are_named_for_what_they_are() {
    let dir = temp_dir();
    let path = dir.path().join("other.sqlite");
    let conn = Connection::open(&path).expect("create");
    conn.execute_batch("create table notes (id integer primary key, body text); insert into notes values (1, 'x');")
        .expect("fill");
    drop(conn);
    assert_eq!(
        file::detect(&path).expect("detect"),
        ForeignFormat::Unknown {
            tables: vec!["notes".into()]
        }
    );
    let e = read_telethon(&path).expect_err("not telethon");
    assert_eq!(e.kind(), ErrorKind::Corrupt);
    assert!(e.to_string().contains("tables: notes"), "{e}");
    assert_names_file(&e, &path);
    // A Pyrogram file is not a Telethon file, and the other way round.
    let e = read_telethon(fixtures_dir().join("pyrogram.session")).expect_err("pyrogram");
    assert!(e.to_string().contains("found a Pyrogram session"), "{e}");
    let e = read_pyrogram(fixtures_dir().join("telethon1.session")).expect_err("telethon");
    assert!(
        e.to_string()
            .contains("found a Telethon v1 session (version 8)"),
        "{e}"
    );
    let e = read_telethon2(fixtures_dir().join("telethon1.session")).expect_err("telethon");
    assert_eq!(e.kind(), ErrorKind::Corrupt);
}

fn set_version(path: &Path, table: &str, column: &str, version: i64) {
    let conn = Connection::open(path).expect("open copy");
    conn.execute(&format!("update {table} set {column} = ?"), [version])
        .expect("set version");
}

#[test]
fn unknown_versions_are_refused() {
    let dir = temp_dir();
    let cases = [
        ("telethon1.session", "version", "version", 99, 8),
        ("telethon2.session", "version", "version", 11, 10),
        ("kurigram.session", "version", "number", 8, 7),
    ];
    for (name, table, column, found, supported) in cases {
        let path = copy_fixture(name, dir.path());
        set_version(&path, table, column, found);
        let e = file::read_foreign(&path).expect_err("newer version");
        match &e {
            Error::UnsupportedSchemaVersion {
                found: f,
                supported: s,
                ..
            } => {
                assert_eq!((*f, *s), (found, supported), "{name}");
            }
            other => panic!("{name}: expected UnsupportedSchemaVersion, got {other}"),
        }
        assert_names_file(&e, &path);
    }
    let path = copy_fixture("telethon1-fresh.session", dir.path());
    set_version(&path, "version", "version", 0);
    assert_eq!(
        read_telethon(&path).expect_err("version 0").kind(),
        ErrorKind::Corrupt
    );
}

/// Builds a Telethon file of an old schema version the way that Telethon
/// release created it.
fn old_telethon(path: &Path, version: i64, key: &[u8]) {
    let conn = Connection::open(path).expect("create");
    let mut sessions =
        "dc_id integer primary key, server_address text, port integer, auth_key blob".to_owned();
    if version >= 5 {
        sessions.push_str(", takeout_id integer");
    }
    let mut entities =
        "id integer primary key, hash integer not null, username text, phone integer, name text"
            .to_owned();
    if version >= 7 {
        entities.push_str(", date integer");
    }
    conn.execute_batch(&format!(
        "create table version (version integer primary key);
         create table sessions ({sessions});
         create table entities ({entities});"
    ))
    .expect("schema");
    if version == 2 {
        conn.execute_batch("create table sent_files (md5_digest blob, file_size integer, file_id integer, part_count integer, primary key(md5_digest, file_size)); insert into sent_files values (x'00', 1, 2, 3);").expect("old sent_files");
    }
    if version >= 3 {
        conn.execute_batch("create table sent_files (md5_digest blob, file_size integer, type integer, id integer, hash integer, primary key(md5_digest, file_size, type));").expect("sent_files");
        conn.execute(
            "insert into sent_files values (?, 10, 1, 5, 6)",
            [vec![7u8; 16]],
        )
        .expect("file");
    }
    if version >= 4 {
        conn.execute_batch("create table update_state (id integer primary key, pts integer, qts integer, date integer, seq integer); insert into update_state values (0, 1, 2, 3, 4), (300, 9, 0, 0, 0);").expect("update_state");
    }
    conn.execute("insert into version values (?)", [version])
        .expect("version");
    if version >= 5 {
        conn.execute(
            "insert into sessions values (2, '[2001:67c:4e8:f002::a]', 443, ?, 42)",
            [key],
        )
        .expect("session");
    } else {
        conn.execute(
            "insert into sessions values (2, '[2001:67c:4e8:f002::a]', 443, ?)",
            [key],
        )
        .expect("session");
    }
    conn.execute_batch("insert into entities (id, hash, username, phone, name) values (100, 1, 'old', 155500, 'Old User'), (-5, 0, NULL, NULL, 'Chat');")
        .expect("entities");
}

#[test]
fn every_telethon_schema_version_reads() {
    let dir = temp_dir();
    let key = [9u8; 256];
    for version in 1..=7 {
        let path = dir.path().join(format!("v{version}.session"));
        old_telethon(&path, version, &key);
        let import = read_telethon(&path).unwrap_or_else(|e| panic!("version {version}: {e}"));
        assert_eq!(import.format, ForeignFormat::TelethonV1 { version });
        let data = &import.data;
        assert_eq!(data.home_dc, 2);
        assert_eq!(data.dcs.len(), 1, "version {version}");
        assert_eq!(
            data.dcs[0].ipv6.map(|a| a.to_string()).as_deref(),
            Some("[2001:67c:4e8:f002::a]:443")
        );
        assert_eq!(
            data.dcs[0].auth_key.as_ref().map(|k| *k.expose()),
            Some(key)
        );
        assert_eq!(data.takeout_id, (version >= 5).then_some(42));
        let entity_warning = import.warnings.iter().find(|w| w.table == "entities");
        if version <= 5 {
            assert!(
                data.peers.is_empty(),
                "version {version}: Telethon drops these entities"
            );
            assert_eq!(entity_warning.map(|w| w.rows), Some(2), "version {version}");
        } else {
            assert_eq!(data.peers.len(), 2, "version {version}");
            assert_eq!(data.peers[1].phone.as_deref(), Some("155500"));
            assert_eq!(data.peers[0].kind, Some(PeerKind::Chat));
            assert!(
                entity_warning.is_none(),
                "version {version}: {:?}",
                import.warnings
            );
        }
        assert_eq!(
            data.sent_files.len(),
            usize::from(version >= 3),
            "version {version}"
        );
        let old_files = import.warnings.iter().find(|w| w.table == "sent_files");
        assert_eq!(
            old_files.map(|w| w.rows),
            (version == 2).then_some(1),
            "version {version}"
        );
        if version >= 4 {
            assert_eq!((data.update_state.pts, data.update_state.seq), (1, 4));
            assert_eq!(data.update_state.channels.get(&300), Some(&9));
        } else {
            assert_eq!(data.update_state, Default::default());
        }
    }
}

#[test]
fn rows_the_model_cannot_hold_are_warned_with_table_and_count() {
    let dir = temp_dir();
    let path = copy_fixture("telethon1.session", dir.path());
    {
        let conn = Connection::open(&path).expect("open copy");
        conn.execute("update sessions set tmp_auth_key = ?", [vec![1u8; 256]])
            .expect("tmp key");
        conn.execute_batch(
            "update entities set hash = 77 where id = -200001;
             insert into entities values (100070, 70, NULL, 'not a phone', 'Bad Phone', 1);
             insert into entities values (-1000000000000, 5, NULL, NULL, 'Bad Id', 1);
             insert into sent_files values (x'0102', 1, 0, 1, 1);
             insert into sent_files values (x'00112233445566778899aabbccddeeff', 1, 7, 1, 1);
             insert into update_state values (-5, 1, 0, 0, 0);
             create table extra (a); insert into extra values (1), (2), (3);
             create table empty_extra (a);",
        )
        .expect("damage rows");
    }
    let import = read_telethon(&path).expect("still readable");
    let find = |table: &str, needle: &str| {
        import
            .warnings
            .iter()
            .find(|w| w.table == table && w.message.contains(needle))
            .map(|w| w.rows)
            .unwrap_or_else(|| {
                panic!(
                    "no {table} warning about {needle:?}: {:#?}",
                    import.warnings
                )
            })
    };
    assert_eq!(find("sessions", "temporary (PFS) auth key"), 1);
    assert_eq!(find("entities", "basic chat"), 1);
    assert_eq!(find("entities", "phone not imported"), 1);
    assert_eq!(find("entities", "not a valid marked peer id"), 1);
    assert_eq!(find("sent_files", "expected 16"), 1);
    assert_eq!(find("sent_files", "type 7"), 1);
    assert_eq!(find("update_state", "not a bare channel id"), 1);
    assert_eq!(find("extra", "not part of the Telethon v1 format"), 3);
    assert_eq!(find("empty_extra", "not part of the Telethon v1 format"), 0);
    // The rest still imports, and the peer with the bad phone keeps everything else.
    let bad_phone = import
        .data
        .peers
        .iter()
        .find(|p| p.id.marked() == 100070)
        .expect("peer");
    assert_eq!(
        (bad_phone.phone.as_deref(), bad_phone.name.as_deref()),
        (None, Some("Bad Phone"))
    );
    for w in &import.warnings {
        assert!(!w.to_string().is_empty());
    }
}

#[test]
fn keys_never_appear_in_debug_output() {
    let import = read_telethon(fixtures_dir().join("telethon1.session")).expect("read");
    let key = import.data.home_auth_key().expect("key");
    let hex: String = key.expose()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let shown = format!("{import:?}").to_lowercase();
    assert!(!shown.contains(&hex));
    assert!(shown.contains(&key.id_hex()));
}

fn schema_of(path: &Path) -> Vec<(String, String, Option<String>)> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open");
    let mut stmt = conn
        .prepare("select type, name, sql from sqlite_master order by name")
        .expect("query");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("rows")
        .collect::<rusqlite::Result<_>>()
        .expect("schema")
}

#[test]
fn written_telethon_file_has_telethons_exact_schema_and_types() {
    let dir = temp_dir();
    let import = read_telethon(fixtures_dir().join("telethon1.session")).expect("read");
    let out = dir.path().join("out.session");
    write_telethon(&out, &import.data, WriteOptions::default()).expect("write");
    assert_eq!(
        schema_of(&out),
        schema_of(&fixtures_dir().join("telethon1.session"))
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let conn = Connection::open_with_flags(&out, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open");
    let types: Vec<String> = conn
        .prepare("select typeof(dc_id) || typeof(server_address) || typeof(port) || typeof(auth_key) || typeof(takeout_id) || typeof(tmp_auth_key) from sessions")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("types");
    assert_eq!(types, vec!["integertextintegerblobintegerblob".to_owned()]);
    let phone: String = conn
        .query_row(
            "select typeof(phone) from entities where id = 100002",
            [],
            |r| r.get(0),
        )
        .expect("phone");
    assert_eq!(phone, "integer", "Telethon stores phones as integers");
    let self_row: (i64, i64) = conn
        .query_row("select id, hash from entities where id = 0", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("self row");
    assert_eq!(self_row, (0, 100001));
    // No key: b'' as Telethon writes it.
    let fresh = read_telethon(fixtures_dir().join("telethon1-fresh.session")).expect("fresh");
    let out2 = dir.path().join("fresh.session");
    write_telethon(&out2, &fresh.data, WriteOptions::default()).expect("write");
    let conn = Connection::open(&out2).expect("open");
    let key: Vec<u8> = conn
        .query_row("select auth_key from sessions", [], |r| r.get(0))
        .expect("key");
    assert!(key.is_empty());
}

#[test]
fn writers_refuse_to_overwrite_unless_asked() {
    let dir = temp_dir();
    let data = SessionData::default();
    let out = dir.path().join("exists.session");
    std::fs::write(&out, b"precious").expect("write");
    let e = write_telethon(&out, &data, WriteOptions::default()).expect_err("exists");
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    assert_names_file(&e, &out);
    let e = write_pyrogram(
        &out,
        &data,
        PyrogramLayout::Pyrogram,
        WriteOptions::default(),
    )
    .expect_err("exists");
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    assert_eq!(std::fs::read(&out).expect("read"), b"precious");
    write_telethon(&out, &data, WriteOptions::overwrite()).expect("overwrite");
    assert!(matches!(
        file::detect(&out).expect("detect"),
        ForeignFormat::TelethonV1 { version: 8 }
    ));
    write_pyrogram(
        &out,
        &data,
        PyrogramLayout::Kurigram,
        WriteOptions::overwrite(),
    )
    .expect("overwrite");
    assert!(matches!(
        file::detect(&out).expect("detect"),
        ForeignFormat::Pyrogram { version: 7, .. }
    ));
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn export_warns_about_what_telethon_cannot_hold() {
    let dir = temp_dir();
    let mut data = SessionData::default(); // five production DCs with IPv4 and IPv6
    data.dcs[1].auth_key = Some(AuthKey::new([3; 256]));
    data.dcs[3].auth_key = Some(AuthKey::new([4; 256]));
    data.api_id = Some(1);
    data.test_mode = true;
    data.self_user = Some(SelfUser {
        id: 7,
        is_bot: true,
    });
    data.peers = vec![
        Peer::new(PeerId::user(7).expect("id"))
            .with_kind(PeerKind::SelfUser)
            .with_hash(1),
        Peer::new(PeerId::user(8).expect("id"))
            .with_kind(PeerKind::Bot)
            .with_hash(2),
        Peer::new(PeerId::user(9).expect("id")).with_min_hash(3),
        Peer::new(PeerId::user(10).expect("id")),
        Peer {
            usernames: Some(vec!["First".into(), "second".into()]),
            phone: Some("0123".into()),
            ..Peer::new(PeerId::channel(11).expect("id"))
                .with_kind(PeerKind::Megagroup)
                .with_hash(4)
        },
    ];
    let out = dir.path().join("lossy.session");
    let warnings = write_telethon(&out, &data, WriteOptions::default()).expect("write");
    let rows = |needle: &str| {
        warnings
            .iter()
            .filter(|w| w.message.contains(needle))
            .map(|w| w.rows)
            .sum::<u64>()
    };
    assert_eq!(rows("DC other than the home DC"), 4, "{warnings:#?}");
    assert_eq!(rows("auth key of a non-home DC"), 1);
    assert_eq!(rows("IPv6 address of the home DC"), 1);
    assert_eq!(rows("api_id"), 1);
    assert_eq!(rows("test mode"), 1);
    assert_eq!(rows("is_bot"), 1);
    assert_eq!(rows("min access hash"), 1);
    assert_eq!(rows("without an access hash"), 1);
    assert_eq!(rows("peer kind not written"), 2);
    assert_eq!(rows("lowercase"), 1);
    assert_eq!(rows("beyond a peer's first"), 1);
    assert_eq!(rows("phone not written"), 1);
    let back = read_telethon(&out).expect("read back");
    assert_eq!(back.data.peers.len(), 3);
    assert_eq!(
        back.data.dcs,
        vec![DcOption {
            ipv6: None,
            ..data.dcs[1].clone()
        }]
    );
}

#[test]
fn mtsessions_own_store_is_recognized_and_not_read_as_foreign() {
    let dir = temp_dir();
    let path = dir.path().join("own.sqlite");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let store = runtime
        .block_on(session_sqlite::SqliteStore::open(&path))
        .expect("open store");
    drop(store);
    assert_eq!(
        file::detect(&path).expect("detect"),
        ForeignFormat::Mtsession
    );
    let e = file::read_foreign(&path).expect_err("not foreign");
    assert_eq!(e.kind(), ErrorKind::Corrupt);
    assert!(e.to_string().contains("mtsession SQLite store"), "{e}");
}
