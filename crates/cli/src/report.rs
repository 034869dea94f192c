//! What `inspect`, `peers`, `list`, `delete` and `string decode` print.
//!
//! Each command builds its JSON value first and renders its text from that
//! value, so that text and `--json` always say the same thing. The JSON
//! shapes are versioned by `format_version` (this is version
//! [`FORMAT_VERSION`]); fields are only ever added within a version.

use serde_json::{Map, Value, json};
use session_core::{AuthKey, Peer, SessionData, SessionHeader};
use session_formats::string::StringSession;

use crate::output::{printable, utc_millis, utc_seconds};

/// The version of every JSON shape the command prints.
pub const FORMAT_VERSION: u64 = 1;

fn key_fields(out: &mut Map<String, Value>, key: Option<&AuthKey>, reveal: bool) {
    out.insert(
        "auth_key_id".into(),
        key.map_or(Value::Null, |k| Value::String(k.id_hex())),
    );
    if reveal {
        out.insert(
            "auth_key".into(),
            key.map_or(Value::Null, |k| Value::String(hex::encode(k.expose()))),
        );
    }
}

/// `inspect --json`: everything a session holds except peers and files
/// themselves (counted; `mtsession peers` lists peers).
pub fn inspect_json(
    source: &str,
    session: Option<&str>,
    data: &SessionData,
    header: Option<&SessionHeader>,
    warnings: &[String],
    reveal: bool,
) -> Value {
    let dcs: Vec<Value> = data
        .dcs
        .iter()
        .map(|dc| {
            let mut out = Map::new();
            out.insert("id".into(), json!(dc.id));
            out.insert("ipv4".into(), json!(dc.ipv4.map(|a| a.to_string())));
            out.insert("ipv6".into(), json!(dc.ipv6.map(|a| a.to_string())));
            key_fields(&mut out, dc.auth_key.as_ref(), reveal);
            Value::Object(out)
        })
        .collect();
    let state = &data.update_state;
    json!({
        "format_version": FORMAT_VERSION,
        "source": source,
        "session": session,
        "home_dc": data.home_dc,
        "dcs": dcs,
        "self_user": data.self_user.map(|u| json!({"id": u.id, "is_bot": u.is_bot})),
        "api_id": data.api_id,
        "test_mode": data.test_mode,
        "takeout_id": data.takeout_id,
        "created_at_ms": header.map(|h| h.created_at_ms),
        "updated_at_ms": header.map(|h| h.updated_at_ms),
        "update_state": {
            "pts": state.pts,
            "qts": state.qts,
            "date": state.date,
            "seq": state.seq,
            "channels": state.channels.iter()
                .map(|(id, pts)| json!({"id": id, "pts": pts})).collect::<Vec<_>>(),
        },
        "counts": {
            "dcs": data.dcs.len(),
            "auth_keys": data.dcs.iter().filter(|dc| dc.auth_key.is_some()).count(),
            "peers": data.peers.len(),
            "sent_files": data.sent_files.len(),
        },
        "warnings": warnings,
    })
}

fn text_or<'a>(value: &'a Value, none: &'a str) -> std::borrow::Cow<'a, str> {
    match value {
        Value::Null => none.into(),
        Value::String(s) => printable(s).into(),
        other => other.to_string().into(),
    }
}

/// The text of `inspect`, rendered from [`inspect_json`]'s value.
pub fn inspect_text(report: &Value) -> Vec<String> {
    let mut lines = vec![text_or(&report["source"], "").into_owned()];
    lines.push(format!("home DC:        {}", report["home_dc"]));
    let dcs = report["dcs"].as_array().cloned().unwrap_or_default();
    let reveal = dcs.iter().any(|dc| dc.get("auth_key").is_some());
    lines.push(format!(
        "DCs:            {} known, {} with an auth key (\"-\" means not set)",
        dcs.len(),
        report["counts"]["auth_keys"]
    ));
    lines.push(format!(
        "  {:>3}  {:<22} {:<42} {}",
        "DC", "IPv4 address", "IPv6 address", "auth key id"
    ));
    for dc in &dcs {
        let key = match (&dc["auth_key_id"], dc.get("auth_key")) {
            (Value::Null, _) => "- (no key)".to_owned(),
            (id, Some(Value::String(hex))) => format!("{} key {hex}", text_or(id, "-")),
            (id, _) => format!("{} (key hidden; --reveal-key prints it)", text_or(id, "-")),
        };
        lines.push(format!(
            "  {:>3}  {:<22} {:<42} {key}",
            dc["id"].to_string(),
            text_or(&dc["ipv4"], "-"),
            text_or(&dc["ipv6"], "-"),
        ));
    }
    if !reveal && dcs.iter().any(|dc| !dc["auth_key_id"].is_null()) {
        lines.push(
            "  (the key id identifies a key without revealing it: the low 64 bits of its SHA-1)"
                .to_owned(),
        );
    }
    let user = &report["self_user"];
    lines.push(match user {
        Value::Null => "logged in as:   nobody recorded".to_owned(),
        user => format!(
            "logged in as:   user {} ({})",
            user["id"],
            if user["is_bot"] == Value::Bool(true) {
                "a bot"
            } else {
                "not a bot"
            }
        ),
    });
    lines.push(format!(
        "api_id:         {}",
        text_or(&report["api_id"], "- (not recorded)")
    ));
    lines.push(format!(
        "test mode:      {}",
        if report["test_mode"] == Value::Bool(true) {
            "yes (Telegram's test servers)"
        } else {
            "no (production servers)"
        }
    ));
    lines.push(format!(
        "takeout id:     {}",
        text_or(&report["takeout_id"], "- (none)")
    ));
    for (label, key) in [
        ("created:        ", "created_at_ms"),
        ("last changed:   ", "updated_at_ms"),
    ] {
        if let Some(ms) = report[key].as_i64() {
            lines.push(format!("{label}{} ({ms} ms)", utc_millis(ms)));
        }
    }
    let state = &report["update_state"];
    let date = state["date"].as_i64().unwrap_or(0);
    lines.push(format!(
        "update state:   pts {}, qts {}, date {}{}, seq {}",
        state["pts"],
        state["qts"],
        date,
        if date > 0 {
            format!(" ({})", utc_seconds(date))
        } else {
            String::new()
        },
        state["seq"]
    ));
    let channels = state["channels"].as_array().cloned().unwrap_or_default();
    lines.push(format!(
        "channels:       {} with their own pts",
        channels.len()
    ));
    for channel in &channels {
        lines.push(format!(
            "  channel {}: pts {}",
            channel["id"], channel["pts"]
        ));
    }
    lines.push(format!(
        "peers:          {} cached (`mtsession peers URL` lists them)",
        report["counts"]["peers"]
    ));
    lines.push(format!(
        "sent files:     {} cached",
        report["counts"]["sent_files"]
    ));
    lines
}

/// One peer as `peers --json` shows it; the access hash only with `reveal`.
pub fn peer_json(peer: &Peer, reveal: bool) -> Value {
    let mut out = Map::new();
    out.insert("id".into(), json!(peer.id.marked()));
    out.insert("kind".into(), json!(peer.kind.map(|k| k.as_str())));
    out.insert("usernames".into(), json!(peer.usernames));
    out.insert("phone".into(), json!(peer.phone));
    out.insert("name".into(), json!(peer.name));
    out.insert("last_seen".into(), json!(peer.last_seen));
    out.insert("has_access_hash".into(), json!(peer.access_hash.is_some()));
    out.insert(
        "access_hash_is_min".into(),
        json!(peer.access_hash.map(|h| h.min)),
    );
    if reveal {
        out.insert(
            "access_hash".into(),
            json!(peer.access_hash.map(|h| h.value)),
        );
    }
    Value::Object(out)
}

/// `peers --json`.
pub fn peers_json(source: &str, total: u64, peers: &[Value]) -> Value {
    json!({
        "format_version": FORMAT_VERSION,
        "source": source,
        "total": total,
        "shown": peers.len(),
        "peers": peers,
    })
}

/// The text of `peers`, rendered from [`peers_json`]'s value.
pub fn peers_text(report: &Value) -> Vec<String> {
    let peers = report["peers"].as_array().cloned().unwrap_or_default();
    let reveal = peers.iter().any(|p| p.get("access_hash").is_some());
    let mut lines = vec![format!(
        "{}: {} of {} cached peers (\"-\" means not known)",
        text_or(&report["source"], ""),
        report["shown"],
        report["total"]
    )];
    lines.push(format!(
        "{:>15}  {:<9}  {:<24}  {:<15}  {:<24}  {:<23}{}",
        "id",
        "kind",
        "username",
        "phone",
        "name",
        "last seen",
        if reveal { "  access hash" } else { "" }
    ));
    for peer in &peers {
        let usernames = peer["usernames"]
            .as_array()
            .map(|names| {
                if names.is_empty() {
                    "(none)".to_owned()
                } else {
                    names
                        .iter()
                        .map(|n| format!("@{}", text_or(n, "")))
                        .collect::<Vec<_>>()
                        .join(" ")
                }
            })
            .unwrap_or_else(|| "-".to_owned());
        let seen = peer["last_seen"]
            .as_i64()
            .map_or_else(|| "-".to_owned(), utc_seconds);
        let hash = match peer.get("access_hash") {
            Some(Value::Null) => "  -".to_owned(),
            Some(value) => format!(
                "  {value}{}",
                if peer["access_hash_is_min"] == Value::Bool(true) {
                    " (min)"
                } else {
                    ""
                }
            ),
            None => String::new(),
        };
        lines.push(format!(
            "{:>15}  {:<9}  {:<24}  {:<15}  {:<24}  {:<23}{hash}",
            peer["id"].to_string(),
            text_or(&peer["kind"], "-"),
            usernames,
            text_or(&peer["phone"], "-"),
            text_or(&peer["name"], "-"),
            seen,
        ));
    }
    if !reveal {
        lines.push("(access hashes are hidden; --reveal-hashes prints them)".to_owned());
    }
    lines
}

/// `string decode --json`.
pub fn decoded_json(s: &StringSession, reveal: bool) -> Value {
    let mut out = Map::new();
    out.insert("format_version".into(), json!(FORMAT_VERSION));
    out.insert("format".into(), json!(s.format.as_str()));
    out.insert("dc_id".into(), json!(s.dc_id));
    out.insert("server_address".into(), json!(s.server_address));
    out.insert("port".into(), json!(s.port));
    key_fields(&mut out, s.auth_key.as_ref(), reveal);
    out.insert("api_id".into(), json!(s.api_id));
    out.insert("test_mode".into(), json!(s.test_mode));
    out.insert("user_id".into(), json!(s.user_id));
    out.insert("is_bot".into(), json!(s.is_bot));
    Value::Object(out)
}

/// The text of `string decode`, rendered from [`decoded_json`]'s value.
pub fn decoded_text(report: &Value) -> Vec<String> {
    let labels = [
        ("format", "format"),
        ("dc_id", "DC id"),
        ("server_address", "server address"),
        ("port", "port"),
        ("auth_key_id", "auth key id"),
        ("auth_key", "auth key"),
        ("api_id", "api_id"),
        ("test_mode", "test mode"),
        ("user_id", "user id"),
        ("is_bot", "is a bot"),
    ];
    let mut lines = Vec::new();
    for (key, label) in labels {
        let Some(value) = report.get(key) else {
            continue;
        };
        let shown = match (key, value) {
            ("auth_key_id", Value::String(id)) if report.get("auth_key").is_none() => {
                format!("{id} (key hidden; --reveal-key prints it)")
            }
            (_, Value::Null) => "- (not in this format)".to_owned(),
            (_, value) => text_or(value, "-").into_owned(),
        };
        lines.push(format!("{label:<15} {shown}"));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use session_core::{AuthKey, PeerId, SelfUser};

    #[test]
    fn inspect_text_says_what_json_says() {
        let mut data = SessionData::default();
        data.dcs[1].auth_key = Some(AuthKey::new([3; 256]));
        data.self_user = Some(SelfUser {
            id: 42,
            is_bot: true,
        });
        data.update_state.channels.insert(9, 99);
        let json = inspect_json("somewhere", Some("s"), &data, None, &[], false);
        let text = inspect_text(&json).join("\n");
        let id = data.dcs[1]
            .auth_key
            .as_ref()
            .map(AuthKey::id_hex)
            .unwrap_or_default();
        assert!(text.contains(&format!("{id} (key hidden")), "{text}");
        assert!(text.contains("- (no key)"), "{text}");
        assert!(text.contains("user 42 (a bot)"), "{text}");
        assert!(text.contains("channel 9: pts 99"), "{text}");
        assert!(json["dcs"][1].get("auth_key").is_none());
        let revealed = inspect_json("somewhere", None, &data, None, &[], true);
        assert_eq!(
            revealed["dcs"][1]["auth_key"],
            Value::String(hex::encode([3u8; 256]))
        );
    }

    #[test]
    fn peer_hashes_only_when_revealed() {
        let peer = Peer::new(PeerId::user(5).expect("id"))
            .with_hash(123)
            .with_username("Bob\nEve");
        let hidden = peer_json(&peer, false);
        assert!(hidden.get("access_hash").is_none());
        let text = peers_text(&peers_json("x", 1, &[hidden])).join("\n");
        assert!(!text.contains("123"), "{text}");
        assert!(text.contains("@Bob\\nEve"), "{text}");
        let shown = peers_text(&peers_json("x", 1, &[peer_json(&peer, true)])).join("\n");
        assert!(shown.contains("123"), "{shown}");
    }
}
