//! kurigram's peer types `community` (Telegram's community constructor) and
//! `direct` (a channel's direct-messages group, a monoforum) read as
//! `PeerKind::Community` and `PeerKind::Monoforum` and are written back as
//! kurigram writes them (kurigram 2.2's `Client.fetch_peers` and its
//! storage's `get_input_peer`, which takes both as channels). pyrogram and
//! pyrofork know neither type (their `get_input_peer` raises on an unknown
//! one), so their layouts get `supergroup`, with a warning.

use std::path::{Path, PathBuf};

use rusqlite::Connection;
use session_core::{Peer, PeerId, PeerKind, SessionData};
use session_formats::file::{PyrogramLayout, WriteOptions, read_pyrogram, write_pyrogram};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/files")
        .join(name)
}

fn peer_types(path: &Path) -> Vec<(i64, String)> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open");
    let mut stmt = conn
        .prepare("SELECT id, type FROM peers ORDER BY id")
        .expect("select");
    stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("rows")
        .collect::<rusqlite::Result<_>>()
        .expect("rows")
}

const COMMUNITY: i64 = 400_001;
const MONOFORUM: i64 = 1_002_147_483_700;

fn marked_channel(bare: i64) -> i64 {
    PeerId::channel(bare).expect("channel").marked()
}

#[test]
fn kurigram_community_and_direct_peers_read_as_their_kinds() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("kurigram.session");
    std::fs::copy(fixture("kurigram.session"), &path).expect("copy fixture");
    {
        let conn = Connection::open(&path).expect("open copy");
        conn.execute(
            "INSERT INTO peers (id, access_hash, type, phone_number, last_update_on) VALUES (?, ?, 'community', NULL, 1700000000)",
            (marked_channel(COMMUNITY), 41i64),
        )
        .expect("community row");
        conn.execute(
            "INSERT INTO peers (id, access_hash, type, phone_number, last_update_on) VALUES (?, ?, 'direct', NULL, 1700000000)",
            (marked_channel(MONOFORUM), -42i64),
        )
        .expect("direct row");
    }
    let import = read_pyrogram(&path).expect("read");
    let kind_of = |bare: i64| {
        import
            .data
            .peers
            .iter()
            .find(|p| p.id == PeerId::channel(bare).expect("id"))
            .and_then(|p| p.kind)
    };
    assert_eq!(kind_of(COMMUNITY), Some(PeerKind::Community));
    assert_eq!(kind_of(MONOFORUM), Some(PeerKind::Monoforum));
    let about_types: Vec<_> = import
        .warnings
        .iter()
        .filter(|w| w.message.contains("community") || w.message.contains("direct"))
        .collect();
    assert!(about_types.is_empty(), "{about_types:#?}");
}

#[test]
fn a_community_or_direct_type_on_a_user_id_is_refused_as_a_kind() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("kurigram.session");
    std::fs::copy(fixture("kurigram.session"), &path).expect("copy fixture");
    {
        let conn = Connection::open(&path).expect("open copy");
        conn.execute(
            "INSERT INTO peers (id, access_hash, type, phone_number, last_update_on) VALUES (777, 1, 'direct', NULL, 1700000000)",
            (),
        )
        .expect("bad row");
    }
    let import = read_pyrogram(&path).expect("read");
    let peer = import
        .data
        .peers
        .iter()
        .find(|p| p.id == PeerId::user(777).expect("id"))
        .expect("imported");
    assert_eq!(peer.kind, None);
    assert!(
        import
            .warnings
            .iter()
            .any(|w| w.message.contains("\"direct\" does not fit the id's space")),
        "{:#?}",
        import.warnings
    );
}

fn data_with_both_kinds() -> SessionData {
    let mut data = SessionData {
        peers: vec![
            Peer::new(PeerId::channel(COMMUNITY).expect("id"))
                .with_kind(PeerKind::Community)
                .with_hash(41),
            Peer::new(PeerId::channel(MONOFORUM).expect("id"))
                .with_kind(PeerKind::Monoforum)
                .with_hash(-42),
        ],
        ..SessionData::default()
    };
    data.canonicalize();
    data
}

#[test]
fn the_kurigram_layout_writes_community_and_direct() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("out.session");
    let data = data_with_both_kinds();
    let warnings = write_pyrogram(
        &path,
        &data,
        PyrogramLayout::Kurigram,
        WriteOptions::default(),
    )
    .expect("write");
    let about_types: Vec<_> = warnings
        .iter()
        .filter(|w| w.message.contains("community") || w.message.contains("monoforum"))
        .collect();
    assert!(about_types.is_empty(), "{about_types:#?}");
    assert_eq!(
        peer_types(&path),
        vec![
            (marked_channel(MONOFORUM), "direct".to_owned()),
            (marked_channel(COMMUNITY), "community".to_owned()),
        ]
    );
    let back = read_pyrogram(&path).expect("read back");
    let kinds: Vec<_> = back.data.peers.iter().map(|p| (p.id, p.kind)).collect();
    let want: Vec<_> = data.peers.iter().map(|p| (p.id, p.kind)).collect();
    assert_eq!(kinds, want);
}

#[test]
fn other_layouts_write_supergroup_and_say_so() {
    for layout in [PyrogramLayout::Pyrogram, PyrogramLayout::Pyrofork] {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.session");
        let warnings = write_pyrogram(
            &path,
            &data_with_both_kinds(),
            layout,
            WriteOptions::default(),
        )
        .expect("write");
        for needle in ["community written as", "monoforum written as"] {
            assert!(
                warnings
                    .iter()
                    .any(|w| w.table == "peers" && w.message.contains(needle)),
                "{layout}: no warning {needle:?}: {warnings:#?}"
            );
        }
        assert!(
            peer_types(&path).iter().all(|(_, t)| t == "supergroup"),
            "{layout}: {:?}",
            peer_types(&path)
        );
    }
}
