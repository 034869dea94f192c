//! End to end: files written by mtsession are opened by the REAL Telethon and
//! Pyrogram (fixtures/scripts/check_written.py, run with the python named by
//! MTSESSION_INTEROP_PYTHON, a venv with fixtures/scripts/requirements-interop.txt
//! that `cargo xtask test-all` creates under target/interop-env). What the
//! libraries read back must be what was written.
//!
//! Without MTSESSION_INTEROP_PYTHON the test fails, like every test whose
//! server is missing: it never passes without having run.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use session_core::model::production_dcs;
use session_core::{
    AuthKey, FileKind, Peer, PeerId, PeerKind, SelfUser, SentFile, SentFileKey, SessionData,
    UpdateState,
};
use session_formats::file::{PyrogramLayout, WriteOptions, write_pyrogram, write_telethon};
use support::temp_dir;

fn interop_python() -> String {
    match std::env::var("MTSESSION_INTEROP_PYTHON") {
        Ok(p) if !p.is_empty() => p,
        _ => panic!(
            "MTSESSION_INTEROP_PYTHON is not set: point it at a python with \
             fixtures/scripts/requirements-interop.txt installed (cargo xtask test-all creates \
             target/interop-env/venv and sets it)"
        ),
    }
}

fn check(python: &str, library: &str, path: &Path, args: &[(&str, String)]) -> Value {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/scripts/check_written.py");
    let mut cmd = Command::new(python);
    cmd.arg(&script).arg(library).arg(path);
    for (flag, value) in args {
        cmd.arg(flag).arg(value);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {python}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "check_written.py {library} failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON from check_written.py: {stdout}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON {line}: {e}"))
}

fn key(byte: u8) -> AuthKey {
    let mut k = [0u8; 256];
    for (i, b) in k.iter_mut().enumerate() {
        *b = byte.wrapping_add(i as u8).wrapping_mul(31);
    }
    AuthKey::new(k)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn session(is_bot: bool) -> SessionData {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let mut dcs = production_dcs();
    dcs[1].auth_key = Some(key(2));
    dcs[3].auth_key = Some(key(4));
    let peer = |id: PeerId| Peer {
        last_seen: Some(now),
        ..Peer::new(id)
    };
    let mut data = SessionData {
        home_dc: 2,
        dcs,
        self_user: Some(SelfUser {
            id: 500_001,
            is_bot,
        }),
        api_id: Some(777),
        test_mode: false,
        takeout_id: Some(99),
        update_state: UpdateState {
            pts: 10,
            qts: 20,
            date: 1_700_000_000,
            seq: 30,
            channels: BTreeMap::from([(600_001, 40)]),
        },
        peers: vec![
            Peer {
                usernames: Some(vec!["Me_E2E".into()]),
                phone: Some("15559990001".into()),
                name: Some("Me".into()),
                ..peer(PeerId::user(500_001).expect("id"))
                    .with_kind(PeerKind::SelfUser)
                    .with_hash(11)
            },
            Peer {
                usernames: Some(vec!["e2e_bot".into()]),
                ..peer(PeerId::user(500_002).expect("id"))
                    .with_kind(PeerKind::Bot)
                    .with_hash(-22)
            },
            Peer {
                name: Some("Chat".into()),
                ..peer(PeerId::chat(600_100).expect("id")).with_kind(PeerKind::Chat)
            },
            Peer {
                usernames: Some(vec!["e2e_chan".into()]),
                ..peer(PeerId::channel(600_001).expect("id"))
                    .with_kind(PeerKind::Broadcast)
                    .with_hash(33)
            },
            peer(PeerId::channel(600_002).expect("id"))
                .with_kind(PeerKind::Megagroup)
                .with_hash(-44),
        ],
        sent_files: vec![
            (
                SentFileKey {
                    md5: [1; 16],
                    size: 100,
                    kind: FileKind::Document,
                },
                SentFile {
                    id: 5,
                    access_hash: -5,
                },
            ),
            (
                SentFileKey {
                    md5: [2; 16],
                    size: 200,
                    kind: FileKind::Photo,
                },
                SentFile {
                    id: 6,
                    access_hash: 6,
                },
            ),
        ],
    };
    data.canonicalize();
    data
}

const PEERS: &str = "500001,500002,-600100,-1000000600001,-1000000600002,777";

#[test]
fn real_telethon_reads_what_we_wrote() {
    let python = interop_python();
    let dir = temp_dir();
    let path = dir.path().join("written.session");
    let data = session(false);
    write_telethon(&path, &data, WriteOptions::default()).expect("write");
    let files = "01010101010101010101010101010101:100:document,02020202020202020202020202020202:200:photo,02020202020202020202020202020202:200:document";
    let got = check(
        &python,
        "telethon",
        &path,
        &[
            ("--peers", PEERS.into()),
            ("--usernames", "me_e2e,E2E_CHAN,e2e_bot,nobody".into()),
            ("--phones", "15559990001".into()),
            ("--files", files.into()),
        ],
    );
    println!("telethon read back: {got}");
    assert!(
        got["library"]
            .as_str()
            .is_some_and(|l| l.starts_with("telethon 1."))
    );
    assert_eq!(got["version"], 8, "a file Telethon opens without migrating");
    assert_eq!(
        got["unchanged"], true,
        "Telethon rewrote the file on opening it"
    );
    assert_eq!(got["dc_id"], 2);
    assert_eq!(got["client_dc_id"], 2);
    assert_eq!(got["server_address"], "149.154.167.51");
    assert_eq!(got["port"], 443);
    assert_eq!(got["auth_key"], hex(key(2).expose()));
    assert_eq!(got["takeout_id"], 99);
    assert_eq!(got["self_id"], 500_001);
    let user =
        |id: i64, hash: i64| json!({"type": "InputPeerUser", "user_id": id, "access_hash": hash});
    let chan = |id: i64, hash: i64| json!({"type": "InputPeerChannel", "channel_id": id, "access_hash": hash});
    assert_eq!(
        got["peers"],
        json!({
            "500001": user(500_001, 11),
            "500002": user(500_002, -22),
            "-600100": {"type": "InputPeerChat", "chat_id": 600_100},
            "-1000000600001": chan(600_001, 33),
            "-1000000600002": chan(600_002, -44),
            "777": null,
        })
    );
    assert_eq!(
        got["usernames"],
        json!({"me_e2e": user(500_001, 11), "E2E_CHAN": chan(600_001, 33), "e2e_bot": user(500_002, -22), "nobody": null})
    );
    assert_eq!(got["phones"], json!({"15559990001": user(500_001, 11)}));
    assert_eq!(
        got["update_states"],
        json!({
            "0": {"pts": 10, "qts": 20, "date": 1_700_000_000, "seq": 30},
            "600001": {"pts": 40, "qts": 0, "date": 1_700_000_000, "seq": 0},
        })
    );
    let doc = "01010101010101010101010101010101:100:document";
    let photo = "02020202020202020202020202020202:200:photo";
    let wrong_kind = "02020202020202020202020202020202:200:document";
    assert_eq!(
        got["files"],
        json!({doc: {"id": 5, "access_hash": -5}, photo: {"id": 6, "access_hash": 6}, wrong_kind: null})
    );
}

#[test]
fn real_pyrogram_reads_what_we_wrote() {
    let python = interop_python();
    let dir = temp_dir();
    let path = dir.path().join("written.session");
    let data = session(true);
    write_pyrogram(
        &path,
        &data,
        PyrogramLayout::Pyrogram,
        WriteOptions::default(),
    )
    .expect("write");
    let got = check(
        &python,
        "pyrogram",
        &path,
        &[
            ("--peers", PEERS.into()),
            ("--usernames", "me_e2e,e2e_chan,e2e_bot,nobody".into()),
            ("--phones", "15559990001".into()),
        ],
    );
    println!("pyrogram read back: {got}");
    assert!(
        got["library"]
            .as_str()
            .is_some_and(|l| l.starts_with("pyrogram 2."))
    );
    assert_eq!(got["version"], 3, "a file Pyrogram opens without upgrading");
    assert_eq!(got["dc_id"], 2);
    assert_eq!(got["api_id"], 777);
    assert_eq!(got["test_mode"], 0);
    assert_eq!(got["auth_key"], hex(key(2).expose()));
    assert_eq!(got["user_id"], 500_001);
    assert_eq!(got["is_bot"], 1);
    let user =
        |id: i64, hash: i64| json!({"type": "InputPeerUser", "user_id": id, "access_hash": hash});
    let chan = |id: i64, hash: i64| json!({"type": "InputPeerChannel", "channel_id": id, "access_hash": hash});
    assert_eq!(
        got["peers"],
        json!({
            "500001": user(500_001, 11),
            "500002": user(500_002, -22),
            "-600100": {"type": "InputPeerChat", "chat_id": 600_100},
            "-1000000600001": chan(600_001, 33),
            "-1000000600002": chan(600_002, -44),
            "777": null,
        })
    );
    assert_eq!(
        got["usernames"],
        json!({"me_e2e": user(500_001, 11), "e2e_chan": chan(600_001, 33), "e2e_bot": user(500_002, -22), "nobody": null})
    );
    assert_eq!(got["phones"], json!({"15559990001": user(500_001, 11)}));
}
