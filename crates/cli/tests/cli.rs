//! End-to-end tests of the `mtsession` binary against real files.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

fn manifest() -> Value {
    let text = std::fs::read_to_string(fixture("manifest.json")).expect("manifest");
    serde_json::from_str(&text).expect("manifest JSON")
}

fn strings(format: &str) -> Value {
    let path = root()
        .join("fixtures/strings")
        .join(format!("{format}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("JSON")
}

#[test]
fn convert_telethon_file_to_sqlite_and_inspect() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("store.db");
    let dst = format!("sqlite:{}?session=alice", db.display());
    let src = format!("telethon:{}", fixture("telethon1.session").display());
    ok(&["convert", "--quiet", &src, &dst]);

    let inspected = json(&["inspect", "--json", &dst]);
    assert_eq!(
        keys(&inspected),
        [
            "api_id",
            "counts",
            "created_at_ms",
            "dcs",
            "format_version",
            "home_dc",
            "self_user",
            "session",
            "source",
            "takeout_id",
            "test_mode",
            "update_state",
            "updated_at_ms",
            "warnings"
        ]
    );
    assert_eq!(inspected["format_version"], 1);
    assert_eq!(inspected["session"], "alice");
    assert!(inspected["created_at_ms"].as_i64().is_some());
    let expected = &manifest()["files"]["telethon1.session"]["expected"];
    assert_eq!(inspected["home_dc"], expected["home_dc"]);
    assert_eq!(inspected["self_user"], expected["self_user"]);
    assert_eq!(inspected["takeout_id"], expected["takeout_id"]);
    let counts = &inspected["counts"];
    assert_eq!(keys(counts), ["auth_keys", "dcs", "peers", "sent_files"]);
    assert_eq!(
        counts["peers"].as_u64(),
        expected["peers"].as_array().map(|p| p.len() as u64)
    );
    assert_eq!(
        counts["sent_files"].as_u64(),
        expected["sent_files"].as_array().map(|p| p.len() as u64)
    );
    let state = &inspected["update_state"];
    assert_eq!(keys(state), ["channels", "date", "pts", "qts", "seq"]);
    for field in ["pts", "qts", "date", "seq"] {
        assert_eq!(state[field], expected["update_state"][field], "{field}");
    }
    let dc = &inspected["dcs"][0];
    assert_eq!(
        keys(dc),
        ["auth_key_id", "id", "ipv4", "ipv6"],
        "no key without --reveal-key"
    );
    assert_eq!(dc["auth_key_id"].as_str().map(str::len), Some(16));

    let revealed = json(&["inspect", "--json", "--reveal-key", &dst]);
    let key = revealed["dcs"][0]["auth_key"]
        .as_str()
        .expect("revealed key");
    assert_eq!(key.len(), 512);
    assert_eq!(Some(key), expected["dcs"][0]["auth_key"].as_str());

    // Human output never shows the key either.
    let text = ok(&["inspect", &dst]);
    assert!(!text.contains(&key[..32]), "{text}");

    // The database file holds keys: 0600.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&db).expect("db").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn convert_refuses_to_overwrite_without_force() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dst = format!("sqlite:{}", dir.path().join("s.db").display());
    let src = format!("telethon:{}", fixture("telethon1.session").display());
    ok(&["convert", "-q", &src, &dst]);
    let err = fails(&["convert", "-q", &src, &dst]);
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    ok(&["convert", "-q", "--force", &src, &dst]);
}

#[test]
fn convert_all_between_stores_and_list_and_delete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = format!("sqlite:{}", dir.path().join("a.db").display());
    let b = format!("sqlite:{}", dir.path().join("b.db").display());
    for (file, name) in [("telethon1.session", "one"), ("pyrogram.session", "two")] {
        let src = format!("telethon:{}", fixture(file).display());
        let src = if file.starts_with("pyrogram") {
            src.replacen("telethon", "pyrogram", 1)
        } else {
            src
        };
        ok(&["convert", "-q", &src, &format!("{a}?session={name}")]);
    }
    ok(&["convert", "--all", "-q", &a, &b]);
    assert_eq!(ok(&["list", &b]), "one\ntwo\n");
    assert_eq!(
        contents(json(&["inspect", "--json", &format!("{a}?session=two")])),
        contents(json(&["inspect", "--json", &format!("{b}?session=two")]))
    );
    let err = fails(&["convert", "--all", "-q", &a, &b]);
    assert!(err.contains("already exists"), "{err}");
    ok(&["delete", &format!("{b}?session=one")]);
    assert_eq!(ok(&["list", &b]), "two\n");
    let err = fails(&["delete", &format!("{b}?session=one")]);
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn telethon_round_trip_through_the_cli_is_lossless() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = format!("telethon:{}", fixture("telethon1.session").display());
    let written = format!("telethon:{}", dir.path().join("out.session").display());
    ok(&["convert", "-q", &src, &written]);
    assert_eq!(
        contents(json(&["inspect", "--json", "--reveal-key", &src])),
        contents(json(&["inspect", "--json", "--reveal-key", &written]))
    );
}

#[test]
fn string_decode_json_has_exact_keys_and_hides_the_key() {
    let fixtures = strings("pyrogram");
    let entry = &fixtures["valid"][0];
    let s = entry["string"].as_str().expect("string");
    let decoded = json(&["string", "decode", "--json", s]);
    assert_eq!(
        keys(&decoded),
        [
            "api_id",
            "auth_key_id",
            "dc_id",
            "format",
            "format_version",
            "is_bot",
            "port",
            "server_address",
            "test_mode",
            "user_id"
        ]
    );
    assert_eq!(decoded["format"], "pyrogram");
    assert!(decoded.get("auth_key").is_none());
    assert_eq!(decoded["dc_id"], entry["dc_id"]);
    assert_eq!(decoded["user_id"], entry["user_id"]);
    let revealed = json(&["string", "decode", "--json", "--reveal-key", s]);
    assert_eq!(revealed["auth_key"], entry["auth_key"]);
    let text = ok(&["string", "decode", s]);
    let key = entry["auth_key"].as_str().expect("key");
    assert!(!text.contains(&key[..32]), "{text}");
}

#[test]
fn every_fixture_string_decodes_with_the_right_format() {
    for (file, format) in [
        ("telethon", "telethon"),
        ("pyrogram", "pyrogram"),
        ("gramjs", "gramjs"),
    ] {
        for entry in strings(file)["valid"].as_array().expect("valid") {
            let s = entry["string"].as_str().expect("string");
            let decoded = json(&["string", "decode", "--json", "--reveal-key", s]);
            assert_eq!(decoded["format"], format, "{s}");
            assert_eq!(decoded["dc_id"], entry["dc_id"], "{s}");
            let key = entry["auth_key"]
                .as_str()
                .filter(|k| k.chars().any(|c| c != '0'));
            assert_eq!(decoded["auth_key"].as_str(), key, "{s}");
            let explicit = json(&["string", "decode", "--json", "--format", format, s]);
            assert_eq!(explicit["format"], format);
        }
    }
}

#[test]
fn string_encode_round_trips_through_a_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (file, format) in [("telethon", "telethon"), ("gramjs", "gramjs")] {
        let fixtures = strings(file);
        let entry = fixtures["valid"]
            .as_array()
            .expect("valid")
            .iter()
            .find(|e| {
                e["auth_key"]
                    .as_str()
                    .is_some_and(|k| k.chars().any(|c| c != '0'))
            })
            .expect("a fixture with a key");
        let s = entry["string"].as_str().expect("string");
        let db = format!(
            "sqlite:{}?session={format}",
            dir.path().join("s.db").display()
        );
        ok(&["convert", "-q", &format!("string:{s}"), &db]);
        let encoded = ok(&["string", "encode", "--format", format, &db]);
        assert_eq!(encoded.trim_end(), s, "{format}");
    }
}

#[test]
fn pyrogram_encode_needs_an_api_id_when_the_source_has_none() {
    let src = format!("telethon:{}", fixture("telethon1.session").display());
    let err = fails(&["string", "encode", "--format", "pyrogram", &src]);
    assert!(err.contains("api_id"), "{err}");
    let encoded = ok(&[
        "string", "encode", "--format", "pyrogram", "--api-id", "12345", &src,
    ]);
    let decoded = json(&["string", "decode", "--json", encoded.trim_end()]);
    assert_eq!(decoded["api_id"], 12345);
    assert_eq!(decoded["format"], "pyrogram");
}

#[test]
fn bad_input_gives_one_line_and_exit_code_one() {
    let dir = tempfile::tempdir().expect("tempdir");

    let err = fails(&["string", "decode", "1AAAAthis-is-not-a-session"]);
    assert!(err.contains("Telethon"), "{err}");
    let wrong_length = format!("1{}", "A".repeat(100));
    let err = fails(&["string", "decode", &wrong_length]);
    assert!(err.contains("expected"), "{err}");

    let bytes = std::fs::read(fixture("telethon1.session")).expect("fixture");
    let truncated = dir.path().join("truncated.session");
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).expect("write");
    let err = fails(&["inspect", &format!("telethon:{}", truncated.display())]);
    assert!(err.contains("truncated.session"), "{err}");

    let newer = dir.path().join("newer.session");
    std::fs::copy(fixture("telethon1.session"), &newer).expect("copy");
    {
        let db = set_version_99(&newer);
        assert!(db, "edited the version");
    }
    let err = fails(&["inspect", &format!("telethon:{}", newer.display())]);
    assert!(err.contains("99"), "{err}");

    let err = fails(&["inspect", "ftp://example"]);
    assert!(err.contains("expected one of"), "{err}");
    let err = fails(&["inspect", "redis://:hunter2@127.0.0.1:1"]);
    assert!(!err.contains("hunter2"), "{err}");

    let err = fails(&[
        "inspect",
        &format!("sqlite:{}", dir.path().join("missing.db").display()),
    ]);
    assert!(err.contains("not found"), "{err}");
    assert!(
        !dir.path().join("missing.db").exists(),
        "inspect must not create a store"
    );
}

/// Sets the Telethon file's `version` to 99.
fn set_version_99(path: &Path) -> bool {
    let db = rusqlite::Connection::open(path).expect("open copy");
    db.execute("UPDATE version SET version = 99", [])
        .expect("update")
        == 1
}

#[test]
fn usage_errors_exit_with_two() {
    let out = mtsession(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    let out = mtsession(&["string", "encode", "memory:"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "missing --format is a usage error"
    );
}

#[test]
fn telethon_encode_equals_telethons_own_string_session_save() {
    let path = root().join("fixtures/files/telethon_strings.json");
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("JSON");
    let strings = expected["strings"].as_object().expect("strings");
    assert!(
        strings.len() >= 4,
        "every Telethon v1 fixture has an expected string"
    );
    for (file, want) in strings {
        let src = format!("telethon:{}", fixture(file).display());
        let got = ok(&["string", "encode", "--format", "telethon", &src]);
        assert_eq!(
            got.trim_end_matches('\n'),
            want.as_str().expect("string"),
            "{file}"
        );
    }
}
