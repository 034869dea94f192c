//! Shared by the foreign_* tests: the fixture folder, its manifest, and the
//! manifest's expected contents as `SessionData`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{SocketAddrV4, SocketAddrV6};
use std::path::PathBuf;

use serde_json::Value;
use session_core::{
    AccessHash, AuthKey, DcOption, FileKind, Peer, PeerId, PeerKind, SelfUser, SentFile,
    SentFileKey, SessionData, UpdateState,
};
use session_formats::Warning;

/// fixtures/files in the workspace.
pub(crate) fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/files")
}

/// The parsed manifest.json.
pub(crate) fn manifest() -> Value {
    let path = fixtures_dir().join("manifest.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).expect("manifest.json is JSON")
}

/// Every fixture: (file name, manifest entry).
pub(crate) fn fixtures() -> Vec<(String, Value)> {
    let manifest = manifest();
    let files = manifest["files"].as_object().expect("manifest has files");
    assert!(
        files.len() >= 8,
        "expected at least 8 fixture files, found {}",
        files.len()
    );
    files.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn opt_i64(v: &Value) -> Option<i64> {
    v.as_i64()
}

fn opt_string(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

pub(crate) fn hex_decode(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The manifest's `expected` object as `SessionData`.
pub(crate) fn expected_data(expected: &Value) -> SessionData {
    let dcs = expected["dcs"]
        .as_array()
        .expect("dcs")
        .iter()
        .map(|dc| DcOption {
            id: dc["id"].as_i64().expect("dc id") as i32,
            ipv4: dc["ipv4"]
                .as_str()
                .map(|a| a.parse::<SocketAddrV4>().expect("ipv4")),
            ipv6: dc["ipv6"]
                .as_str()
                .map(|a| a.parse::<SocketAddrV6>().expect("ipv6")),
            auth_key: dc["auth_key"]
                .as_str()
                .map(|k| AuthKey::from_slice(&hex_decode(k)).expect("256-byte key")),
        })
        .collect();
    let self_user = expected["self_user"].as_object().map(|u| SelfUser {
        id: u["id"].as_i64().expect("self id"),
        is_bot: u["is_bot"].as_bool().expect("is_bot"),
    });
    let state = &expected["update_state"];
    let channels: BTreeMap<i64, i32> = state["channels"]
        .as_object()
        .expect("channels")
        .iter()
        .map(|(k, v)| {
            (
                k.parse().expect("channel id"),
                v.as_i64().expect("pts") as i32,
            )
        })
        .collect();
    let peers = expected["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .map(|p| Peer {
            id: PeerId::from_marked(p["id"].as_i64().expect("peer id")).expect("marked id"),
            kind: p["kind"]
                .as_str()
                .map(|k| PeerKind::parse(k).expect("kind name")),
            access_hash: opt_i64(&p["access_hash"]).map(AccessHash::full),
            usernames: p["usernames"].as_array().map(|u| {
                u.iter()
                    .map(|n| n.as_str().expect("username").to_owned())
                    .collect()
            }),
            phone: opt_string(&p["phone"]),
            name: opt_string(&p["name"]),
            last_seen: opt_i64(&p["last_seen"]),
        })
        .collect();
    let sent_files = expected["sent_files"]
        .as_array()
        .expect("sent_files")
        .iter()
        .map(|f| {
            let md5: [u8; 16] = hex_decode(f["md5"].as_str().expect("md5"))
                .try_into()
                .expect("16");
            let kind = match f["kind"].as_str() {
                Some("photo") => FileKind::Photo,
                _ => FileKind::Document,
            };
            (
                SentFileKey {
                    md5,
                    size: f["size"].as_i64().expect("size"),
                    kind,
                },
                SentFile {
                    id: f["id"].as_i64().expect("id"),
                    access_hash: f["access_hash"].as_i64().expect("hash"),
                },
            )
        })
        .collect();
    let mut data = SessionData {
        home_dc: expected["home_dc"].as_i64().expect("home_dc") as i32,
        dcs,
        self_user,
        api_id: expected["api_id"].as_i64().map(|v| v as i32),
        test_mode: expected["test_mode"].as_bool().unwrap_or(false),
        takeout_id: opt_i64(&expected["takeout_id"]),
        update_state: UpdateState {
            pts: state["pts"].as_i64().expect("pts") as i32,
            qts: state["qts"].as_i64().expect("qts") as i32,
            date: state["date"].as_i64().expect("date") as i32,
            seq: state["seq"].as_i64().expect("seq") as i32,
            channels,
        },
        peers,
        sent_files,
    };
    data.canonicalize();
    data
}

/// The manifest's expected warnings as (table, rows).
pub(crate) fn expected_warnings(expected: &Value) -> Vec<(String, u64)> {
    expected["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .map(|w| {
            (
                w["table"].as_str().expect("table").to_owned(),
                w["rows"].as_u64().expect("rows"),
            )
        })
        .collect()
}

/// (table, rows) of warnings.
pub(crate) fn shape(warnings: &[Warning]) -> Vec<(String, u64)> {
    warnings.iter().map(|w| (w.table.clone(), w.rows)).collect()
}

/// A temporary folder for a test's files.
pub(crate) fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// Compares two sessions field by field, so a failure says where they differ.
pub(crate) fn assert_same(context: &str, got: &SessionData, want: &SessionData) {
    assert_eq!(got.home_dc, want.home_dc, "{context}: home_dc");
    assert_eq!(got.dcs, want.dcs, "{context}: dcs");
    assert_eq!(got.self_user, want.self_user, "{context}: self_user");
    assert_eq!(got.api_id, want.api_id, "{context}: api_id");
    assert_eq!(got.test_mode, want.test_mode, "{context}: test_mode");
    assert_eq!(got.takeout_id, want.takeout_id, "{context}: takeout_id");
    assert_eq!(
        got.update_state, want.update_state,
        "{context}: update_state"
    );
    let got_ids: Vec<i64> = got.peers.iter().map(|p| p.id.marked()).collect();
    let want_ids: Vec<i64> = want.peers.iter().map(|p| p.id.marked()).collect();
    assert_eq!(got_ids, want_ids, "{context}: peer ids");
    for (g, w) in got.peers.iter().zip(&want.peers) {
        assert_eq!(g, w, "{context}: peer {}", g.id);
    }
    assert_eq!(got.sent_files, want.sent_files, "{context}: sent_files");
    assert_eq!(got, want, "{context}");
}
