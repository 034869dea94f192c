//! Every fixture written by the real libraries imports with exactly the
//! manifest's contents, reading leaves it byte-identical, and exporting an
//! import to Telethon (or Pyrogram) and reading it back keeps everything the
//! target format holds.

mod support;

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use session_core::{DcOption, PeerIdKind, PeerKind, SessionData, UpdateState};
use session_formats::file::{
    self, ForeignFormat, ForeignImport, PyrogramLayout, WriteOptions, read_pyrogram, read_telethon,
    write_pyrogram, write_telethon,
};
use support::*;

fn read_fixture(name: &str, entry: &serde_json::Value) -> ForeignImport {
    let path = fixtures_dir().join(name);
    match entry["format"].as_str() {
        Some("telethon1") => read_telethon(&path),
        Some("telethon2") => file::read_telethon2(&path),
        Some("pyrogram") => read_pyrogram(&path),
        other => panic!("{name}: unknown format {other:?} in the manifest"),
    }
    .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn sidecars(dir: &std::path::Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .expect("fixtures dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with("-journal") || n.ends_with("-wal") || n.ends_with("-shm"))
        .collect()
}

#[test]
fn every_fixture_imports_with_exactly_the_manifest_contents() {
    let mut checked = 0;
    for (name, entry) in fixtures() {
        let import = read_fixture(&name, &entry);
        let want = expected_data(&entry["expected"]);
        assert_same(&name, &import.data, &want);
        assert_eq!(
            shape(&import.warnings),
            expected_warnings(&entry["expected"]),
            "{name}: warnings were {:#?}",
            import.warnings
        );
        let version = entry["version"].as_i64().expect("version");
        let format_ok = match (&import.format, entry["format"].as_str()) {
            (ForeignFormat::TelethonV1 { version: v }, Some("telethon1")) => *v == version,
            (ForeignFormat::TelethonV2 { version: v }, Some("telethon2")) => *v == version,
            (ForeignFormat::Pyrogram { version: v, layout }, Some("pyrogram")) => {
                *v == version
                    && layout
                        .to_string()
                        .eq_ignore_ascii_case(entry["layout"].as_str().unwrap_or(""))
            }
            _ => false,
        };
        assert!(
            format_ok,
            "{name}: read as {:?}, manifest says {entry}",
            import.format
        );
        assert_eq!(
            file::detect(fixtures_dir().join(&name)).expect("detect"),
            import.format
        );
        checked += 1;
    }
    assert!(checked >= 8);
}

#[test]
fn reading_leaves_every_fixture_byte_identical() {
    let dir = fixtures_dir();
    let before_sidecars = sidecars(&dir);
    for (name, entry) in fixtures() {
        let path = dir.join(&name);
        let before = std::fs::read(&path).expect("fixture");
        let modified = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .expect("mtime");
        read_fixture(&name, &entry);
        file::detect(&path).expect("detect");
        file::read_foreign(&path).expect("read_foreign");
        assert!(
            std::fs::read(&path).expect("fixture") == before,
            "{name} changed on reading"
        );
        assert_eq!(
            std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .expect("mtime"),
            modified
        );
    }
    assert_eq!(
        sidecars(&dir),
        before_sidecars,
        "reading created journal or WAL files"
    );
}

/// What a Telethon v1 file can hold of `data`, as `read_telethon` returns it.
fn telethon_projection(data: &SessionData) -> SessionData {
    let mut out = data.clone();
    out.dcs = data
        .dcs
        .iter()
        .filter(|dc| dc.id == data.home_dc)
        .map(|dc| DcOption {
            id: dc.id,
            ipv4: dc.ipv4,
            ipv6: if dc.ipv4.is_some() { None } else { dc.ipv6 },
            auth_key: dc.auth_key.clone(),
        })
        .filter(|dc| dc.ipv4.is_some() || dc.ipv6.is_some() || dc.auth_key.is_some())
        .collect();
    if let Some(me) = &mut out.self_user {
        me.is_bot = false;
    }
    out.api_id = None;
    out.test_mode = false;
    let self_id = data.self_user.map(|u| u.id);
    out.peers = data
        .peers
        .iter()
        .filter(|p| p.id.kind() == PeerIdKind::Chat || p.access_hash.is_some_and(|h| !h.min))
        .map(|p| {
            let mut p = p.clone();
            p.kind = match p.id.kind() {
                PeerIdKind::Chat => Some(PeerKind::Chat),
                _ if Some(p.id.marked()) == self_id => Some(PeerKind::SelfUser),
                _ => None,
            };
            p.usernames = p
                .usernames
                .and_then(|u| u.first().map(|f| vec![f.to_lowercase()]));
            p
        })
        .collect();
    out
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

#[test]
fn export_to_telethon_then_reimport_is_lossless() {
    let dir = temp_dir();
    for (name, entry) in fixtures() {
        let import = read_fixture(&name, &entry);
        let out = dir.path().join(format!("{name}.telethon.session"));
        let warnings = write_telethon(&out, &import.data, WriteOptions::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let back = read_telethon(&out).unwrap_or_else(|e| panic!("{name} written back: {e}"));
        assert_eq!(back.format, ForeignFormat::TelethonV1 { version: 8 });
        let want = telethon_projection(&import.data);
        assert_same(&format!("{name} -> telethon"), &back.data, &want);
        if entry["format"] == "telethon1" {
            // Telethon to Telethon: nothing at all is lost, so nothing is warned.
            assert_same(
                &format!("{name} -> telethon (full)"),
                &back.data,
                &import.data,
            );
            assert!(warnings.is_empty(), "{name}: {warnings:#?}");
        } else {
            assert!(
                !warnings.is_empty(),
                "{name}: what Telethon cannot hold must be warned"
            );
        }
        // The only warning on re-import is Telethon's own: is_bot is not stored.
        let tables: Vec<_> = back.warnings.iter().map(|w| w.table.as_str()).collect();
        assert!(
            tables.iter().all(|t| *t == "entities"),
            "{name}: {:#?}",
            back.warnings
        );
        assert_eq!(
            back.warnings.len(),
            usize::from(import.data.self_user.is_some())
        );
    }
}

/// What a Pyrogram-family file in `layout` can hold of `data`.
fn pyrogram_projection(
    data: &SessionData,
    layout: PyrogramLayout,
    got: &SessionData,
) -> SessionData {
    let mut out = data.clone();
    out.dcs = got.dcs.clone(); // addresses: checked separately below
    out.takeout_id = None;
    out.sent_files.clear();
    if layout == PyrogramLayout::Pyrogram {
        out.update_state = UpdateState::default();
    }
    let self_id = data.self_user.map(|u| u.id);
    out.peers = data
        .peers
        .iter()
        .filter(|p| p.id.kind() == PeerIdKind::Chat || p.access_hash.is_some_and(|h| !h.min))
        .map(|p| {
            let mut p = p.clone();
            p.kind = Some(match (p.kind, p.id.kind()) {
                _ if Some(p.id.marked()) == self_id => PeerKind::SelfUser,
                (Some(PeerKind::Gigagroup), _) => PeerKind::Megagroup,
                (Some(kind), _) => kind,
                (None, PeerIdKind::User) => PeerKind::User,
                (None, PeerIdKind::Chat) => PeerKind::Chat,
                (None, PeerIdKind::Channel) => PeerKind::Broadcast,
            });
            p.usernames = p.usernames.map(|u| {
                let lower: Vec<String> = u.iter().map(|n| n.to_lowercase()).collect();
                if layout == PyrogramLayout::Pyrogram {
                    lower.into_iter().take(1).collect()
                } else {
                    lower
                }
            });
            p.name = None;
            if p.last_seen.is_none() {
                let seen = got
                    .peers
                    .iter()
                    .find(|g| g.id == p.id)
                    .and_then(|g| g.last_seen);
                assert!(
                    seen.is_some_and(|s| s >= now() - 60),
                    "peer {} gets the write time",
                    p.id
                );
                p.last_seen = seen;
            }
            p
        })
        .collect();
    out
}

#[test]
fn export_to_pyrogram_layouts_then_reimport_keeps_what_they_hold() {
    let dir = temp_dir();
    for (name, entry) in fixtures() {
        let import = read_fixture(&name, &entry);
        for layout in [
            PyrogramLayout::Pyrogram,
            PyrogramLayout::Pyrofork,
            PyrogramLayout::Kurigram,
        ] {
            let out = dir.path().join(format!("{name}.{layout}.session"));
            write_pyrogram(&out, &import.data, layout, WriteOptions::default())
                .unwrap_or_else(|e| panic!("{name} as {layout}: {e}"));
            let back = read_pyrogram(&out).unwrap_or_else(|e| panic!("{name} as {layout}: {e}"));
            assert_eq!(
                back.format,
                ForeignFormat::Pyrogram {
                    version: layout.version(),
                    layout
                }
            );
            let want = pyrogram_projection(&import.data, layout, &back.data);
            assert_same(&format!("{name} -> {layout}"), &back.data, &want);
            // The home DC keeps its key; its address is the one the layout connects to.
            let home = back.data.dcs.iter().find(|d| d.id == back.data.home_dc);
            let src_home = import.data.dcs.iter().find(|d| d.id == import.data.home_dc);
            assert_eq!(
                home.and_then(|d| d.auth_key.clone()),
                src_home.and_then(|d| d.auth_key.clone()),
                "{name} -> {layout}: home key"
            );
            if layout == PyrogramLayout::Kurigram
                && let Some(src) = src_home
                && let Some(v4) = src.ipv4
            {
                assert_eq!(
                    home.and_then(|d| d.ipv4),
                    Some(v4),
                    "{name} -> kurigram address"
                );
            }
            if entry["format"] == "pyrogram"
                && layout
                    .to_string()
                    .eq_ignore_ascii_case(entry["layout"].as_str().unwrap_or(""))
            {
                // Same layout: nothing is lost at all.
                assert_same(
                    &format!("{name} -> {layout} (full)"),
                    &back.data,
                    &import.data,
                );
            }
        }
    }
}
