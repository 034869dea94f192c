//! The commands' JSON shapes, the text that says the same, and `peers`.

mod common;

use common::*;
use serde_json::Value;

#[test]
fn inspect_text_and_json_agree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sqlite_with(dir.path(), "alice");
    let value = json(&["inspect", "--json", &url]);
    let text = ok(&["inspect", &url]);
    assert!(
        text.starts_with("session \"alice\" in the sqlite store\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!("home DC:        {}\n", value["home_dc"])),
        "{text}"
    );
    for dc in value["dcs"].as_array().expect("dcs") {
        let id = dc["auth_key_id"].as_str().map(str::to_owned);
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{} ", dc["id"])))
            .unwrap_or_else(|| panic!("no line for DC {}: {text}", dc["id"]));
        match id {
            Some(id) => assert!(line.contains(&format!("{id} (key hidden")), "{line}"),
            None => assert!(line.contains("- (no key)"), "{line}"),
        }
        if let Some(v4) = dc["ipv4"].as_str() {
            assert!(line.contains(v4), "{line}");
        }
    }
    let user = &value["self_user"];
    assert!(
        text.contains(&format!("logged in as:   user {} (", user["id"])),
        "{text}"
    );
    assert!(
        text.contains(&format!("takeout id:     {}\n", value["takeout_id"])),
        "{text}"
    );
    let state = &value["update_state"];
    assert!(
        text.contains(&format!(
            "pts {}, qts {}, date {}",
            state["pts"], state["qts"], state["date"]
        )),
        "{text}"
    );
    for channel in state["channels"].as_array().expect("channels") {
        assert!(
            text.contains(&format!(
                "channel {}: pts {}",
                channel["id"], channel["pts"]
            )),
            "{text}"
        );
    }
    assert!(
        text.contains(&format!(
            "peers:          {} cached",
            value["counts"]["peers"]
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "sent files:     {} cached",
            value["counts"]["sent_files"]
        )),
        "{text}"
    );
    assert!(text.contains("api_id:         - (not recorded)"), "{text}");
    assert!(text.contains("test mode:      no"), "{text}");
}

#[test]
fn list_and_delete_speak_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let alice = sqlite_with(dir.path(), "alice");
    sqlite_with(dir.path(), "bob");
    let store = format!("sqlite:{}", dir.path().join("store.db").display());
    let listed = json(&["list", "--json", &store]);
    assert_eq!(keys(&listed), ["format_version", "sessions", "store"]);
    assert_eq!(listed["sessions"], serde_json::json!(["alice", "bob"]));
    assert_eq!(ok(&["list", &store]), "alice\nbob\n");
    let deleted = json(&["delete", "--json", &alice]);
    assert_eq!(
        deleted,
        serde_json::json!({"format_version": 1, "session": "alice", "deleted": true})
    );
    assert_eq!(ok(&["list", &store]), "bob\n");
    let err = fails(&["delete", &alice]);
    assert!(
        err.contains("not found") && err.contains("\"bob\""),
        "{err}"
    );
}

#[test]
fn a_missing_session_names_the_ones_that_exist() {
    let dir = tempfile::tempdir().expect("tempdir");
    sqlite_with(dir.path(), "alice");
    let store = format!("sqlite:{}", dir.path().join("store.db").display());
    let err = fails(&["inspect", &store]);
    assert!(
        err.contains("session \"default\" in the sqlite store not found")
            && err.ends_with(
                "The store holds \"alice\"; pick one by adding ?session=NAME to the URL\n"
            ),
        "{err}"
    );
}

#[test]
fn peers_lists_filters_and_hides_hashes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sqlite_with(dir.path(), "alice");
    let all = json(&["peers", "--json", &url]);
    assert_eq!(
        keys(&all),
        ["format_version", "peers", "shown", "source", "total"]
    );
    let total = all["total"].as_u64().expect("total");
    assert!(total >= 3, "{all}");
    assert_eq!(all["shown"].as_u64(), Some(total));
    let peers = all["peers"].as_array().expect("peers");
    for peer in peers {
        assert_eq!(
            keys(peer),
            [
                "access_hash_is_min",
                "has_access_hash",
                "id",
                "kind",
                "last_seen",
                "name",
                "phone",
                "usernames"
            ]
        );
    }
    let named = peers
        .iter()
        .find(|p| p["usernames"].as_array().is_some_and(|u| !u.is_empty()))
        .expect("a peer with a username");
    let username = named["usernames"][0].as_str().expect("username");
    let found = json(&[
        "peers",
        "--json",
        "--username",
        &format!("@{}", username.to_uppercase()),
        &url,
    ]);
    assert_eq!(found["peers"], serde_json::json!([named]));
    let by_id = json(&["peers", "--json", "--id", &named["id"].to_string(), &url]);
    assert_eq!(by_id["peers"], serde_json::json!([named]));
    if let Some(phone) = peers.iter().find_map(|p| p["phone"].as_str()) {
        let found = json(&["peers", "--json", "--phone", &format!("+{phone}"), &url]);
        assert_eq!(found["peers"][0]["phone"], phone);
    }
    let one = json(&["peers", "--json", "--limit", "1", &url]);
    assert_eq!(one["shown"], 1);
    assert_eq!(one["total"].as_u64(), Some(total));
    let none = json(&["peers", "--json", "--username", "nobody_has_this", &url]);
    assert_eq!(none["peers"], serde_json::json!([]));

    let revealed = json(&["peers", "--json", "--reveal-hashes", &url]);
    let hashes: Vec<i64> = revealed["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .filter_map(|p| p["access_hash"].as_i64())
        .collect();
    assert!(!hashes.is_empty());
    let text = ok(&["peers", &url]);
    for hash in &hashes {
        assert!(
            !text.contains(&hash.to_string()),
            "hash {hash} shown: {text}"
        );
    }
    assert!(text.contains("--reveal-hashes"), "{text}");
    let shown = ok(&["peers", "--reveal-hashes", &url]);
    assert!(shown.contains(&hashes[0].to_string()), "{shown}");
    // Text and JSON list the same peers.
    for peer in peers {
        assert!(text.contains(&peer["id"].to_string()), "{text}");
    }
}

#[test]
fn peers_of_a_foreign_file_and_bad_filters() {
    let src = format!("telethon:{}", fixture("telethon1.session").display());
    let listed = json(&["peers", "--json", &src]);
    assert!(listed["total"].as_u64().is_some_and(|n| n > 0));
    let err = fails(&["peers", "--phone", "12ab", &src]);
    assert!(
        err.contains("a phone number holds digits") && err.contains("--phone"),
        "{err}"
    );
    let err = fails(&["peers", "--id", "0", &src]);
    assert!(err.contains("--id takes a marked id"), "{err}");
}

#[test]
fn decode_text_and_json_agree() {
    let path = root().join("fixtures/strings/telethon.json");
    let fixtures: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("JSON");
    let s = fixtures["valid"][0]["string"].as_str().expect("string");
    let value = json(&["string", "decode", "--json", s]);
    let text = ok(&["string", "decode", s]);
    assert!(
        text.contains(&format!("DC id           {}", value["dc_id"])),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "auth key id     {} (key hidden",
            value["auth_key_id"].as_str().expect("id")
        )),
        "{text}"
    );
    assert!(
        text.contains("api_id          - (not in this format)"),
        "{text}"
    );
}
