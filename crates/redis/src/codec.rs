//! How values are encoded inside the hashes.
//!
//! - DC options: binary, `flags u8` then, when flagged, IPv4 (4 address bytes,
//!   u16 port), IPv6 (16 address bytes, u16 port, u32 flowinfo, u32 scope id)
//!   and the 256-byte key; integers big-endian. Flags: 1 IPv4, 2 IPv6, 4 key.
//! - Peers: a small JSON object. Every 64-bit number is a decimal *string*,
//!   so Lua scripts (which see doubles) never round one.
//! - Sent files: field = md5 (16) | size (i64 BE) | kind (u8); value = id
//!   (i64 BE) | access hash (i64 BE).
//! - Everything else: decimal text.

use std::io::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::str::FromStr;

use serde_json::Value;
use session_core::{
    AccessHash, AuthKey, DcOption, Error, FileKind, Peer, PeerId, PeerKind, Result, SentFile,
    SentFileKey,
};

use crate::error::corrupt;

const DC_IPV4: u8 = 1;
const DC_IPV6: u8 = 2;
const DC_KEY: u8 = 4;

/// Encodes one DC option.
pub(crate) fn encode_dc(dc: &DcOption) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 6 + 26 + 256);
    let flag = |present: bool, bit: u8| if present { bit } else { 0 };
    let flags = flag(dc.ipv4.is_some(), DC_IPV4)
        | flag(dc.ipv6.is_some(), DC_IPV6)
        | flag(dc.auth_key.is_some(), DC_KEY);
    out.push(flags);
    if let Some(v4) = dc.ipv4 {
        out.extend_from_slice(&v4.ip().octets());
        out.extend_from_slice(&v4.port().to_be_bytes());
    }
    if let Some(v6) = dc.ipv6 {
        out.extend_from_slice(&v6.ip().octets());
        out.extend_from_slice(&v6.port().to_be_bytes());
        out.extend_from_slice(&v6.flowinfo().to_be_bytes());
        out.extend_from_slice(&v6.scope_id().to_be_bytes());
    }
    if let Some(key) = &dc.auth_key {
        out.extend_from_slice(key.expose());
    }
    out
}

/// A cursor over a byte slice that reports short input as `Corrupt`.
struct Reader<'a> {
    bytes: &'a [u8],
    what: &'a str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.bytes.len() < n {
            return Err(corrupt(
                self.what,
                format!(
                    "value ends early: needed {n} more bytes, found {}",
                    self.bytes.len()
                ),
            ));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn finish(self) -> Result<()> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(corrupt(
                self.what,
                format!("{} unexpected trailing bytes", self.bytes.len()),
            ))
        }
    }
}

/// Decodes one DC option stored under field `id`.
pub(crate) fn decode_dc(key: &str, field: &[u8], value: &[u8]) -> Result<DcOption> {
    let id_text = std::str::from_utf8(field).unwrap_or("");
    let what = format!("{key} field {id_text:?}");
    let id: i32 = id_text
        .parse()
        .map_err(|_| corrupt(key, format!("DC id field {field:?} is not a decimal i32")))?;
    let mut r = Reader {
        bytes: value,
        what: &what,
    };
    let [flags] = r.array::<1>()?;
    if flags & !(DC_IPV4 | DC_IPV6 | DC_KEY) != 0 {
        return Err(corrupt(&what, format!("unknown DC flags {flags:#04x}")));
    }
    let ipv4 = if flags & DC_IPV4 != 0 {
        let ip = Ipv4Addr::from(r.array::<4>()?);
        let port = u16::from_be_bytes(r.array::<2>()?);
        Some(SocketAddrV4::new(ip, port))
    } else {
        None
    };
    let ipv6 = if flags & DC_IPV6 != 0 {
        let ip = Ipv6Addr::from(r.array::<16>()?);
        let port = u16::from_be_bytes(r.array::<2>()?);
        let flowinfo = u32::from_be_bytes(r.array::<4>()?);
        let scope = u32::from_be_bytes(r.array::<4>()?);
        Some(SocketAddrV6::new(ip, port, flowinfo, scope))
    } else {
        None
    };
    let auth_key = if flags & DC_KEY != 0 {
        Some(AuthKey::new(r.array::<{ session_core::AUTH_KEY_LEN }>()?))
    } else {
        None
    };
    r.finish()?;
    Ok(DcOption {
        id,
        ipv4,
        ipv6,
        auth_key,
    })
}

/// The field of a sent-file entry.
pub(crate) fn encode_file_key(key: &SentFileKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(25);
    out.extend_from_slice(&key.md5);
    out.extend_from_slice(&key.size.to_be_bytes());
    out.push(match key.kind {
        FileKind::Document => 0,
        FileKind::Photo => 1,
    });
    out
}

/// The value of a sent-file entry.
pub(crate) fn encode_file(file: &SentFile) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&file.id.to_be_bytes());
    out.extend_from_slice(&file.access_hash.to_be_bytes());
    out
}

/// Decodes a sent-file field.
pub(crate) fn decode_file_key(key: &str, field: &[u8]) -> Result<SentFileKey> {
    let what = format!("{key} (a field)");
    let mut r = Reader {
        bytes: field,
        what: &what,
    };
    let md5 = r.array::<16>()?;
    let size = i64::from_be_bytes(r.array::<8>()?);
    let [code] = r.array::<1>()?;
    r.finish()?;
    let kind = FileKind::from_code(i64::from(code))
        .ok_or_else(|| corrupt(&what, format!("file kind {code} is neither 0 nor 1")))?;
    Ok(SentFileKey { md5, size, kind })
}

/// Decodes a sent-file value.
pub(crate) fn decode_file(key: &str, value: &[u8]) -> Result<SentFile> {
    let what = format!("{key} (a value)");
    let mut r = Reader {
        bytes: value,
        what: &what,
    };
    let id = i64::from_be_bytes(r.array::<8>()?);
    let access_hash = i64::from_be_bytes(r.array::<8>()?);
    r.finish()?;
    Ok(SentFile { id, access_hash })
}

/// Parses decimal text stored in `key`/`field`.
pub(crate) fn parse_num<T: FromStr>(key: &str, field: &str, text: &[u8]) -> Result<T> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| {
            corrupt(
                key,
                format!(
                    "field {field} holds {:?}, expected a decimal {}",
                    String::from_utf8_lossy(text),
                    std::any::type_name::<T>()
                ),
            )
        })
}

/// Parses an optional decimal field.
pub(crate) fn parse_opt<T: FromStr>(
    key: &str,
    field: &str,
    text: Option<&[u8]>,
) -> Result<Option<T>> {
    text.map(|t| parse_num(key, field, t)).transpose()
}

/// Encodes a peer as a JSON object: `h` hash, `i` marked id, `k` the
/// usernames' lookup keys (what the index holds; kept for readers of schema
/// version 1 that merge in Lua), `m` min flag, `n` name, `p` phone, `s` last
/// seen, `t` kind code, `u` usernames. Unknown fields are left out.
///
/// Written by hand, in the bytes serde_json writes for the same object with
/// sorted keys (a peer batch encodes every row it writes, so this is on the
/// hot path), and the same bytes in every build whatever serde_json's
/// features: the apply script compares stored records with planned ones.
pub(crate) fn encode_peer(peer: &Peer) -> String {
    let mut out = Vec::with_capacity(160);
    encode_peer_into(peer, &mut out);
    // Only ASCII punctuation and the peer's own UTF-8 text were written.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// [`encode_peer`], appended to `out`.
pub(crate) fn encode_peer_into(peer: &Peer, out: &mut Vec<u8>) {
    let mut first = true;
    let mut field = |out: &mut Vec<u8>, name: &[u8]| {
        out.push(if first { b'{' } else { b',' });
        first = false;
        out.push(b'"');
        out.extend_from_slice(name);
        out.extend_from_slice(b"\":");
    };
    if let Some(hash) = peer.access_hash {
        field(out, b"h");
        quoted_int(out, hash.value);
    }
    field(out, b"i");
    quoted_int(out, peer.id.marked());
    if peer.usernames.is_some() {
        field(out, b"k");
        string_list(out, peer.username_keys().iter().map(String::as_str));
    }
    if let Some(hash) = peer.access_hash {
        field(out, b"m");
        out.extend_from_slice(if hash.min { b"true" } else { b"false" });
    }
    if let Some(name) = &peer.name {
        field(out, b"n");
        json_string(out, name);
    }
    if let Some(phone) = &peer.phone {
        field(out, b"p");
        json_string(out, phone);
    }
    if let Some(seen) = peer.last_seen {
        field(out, b"s");
        quoted_int(out, seen);
    }
    if let Some(kind) = peer.kind {
        field(out, b"t");
        decimal_into(out, i64::from(kind.code()));
    }
    if let Some(names) = &peer.usernames {
        field(out, b"u");
        string_list(out, names.iter().map(String::as_str));
    }
    out.push(b'}');
}

fn quoted_int(out: &mut Vec<u8>, n: i64) {
    out.push(b'"');
    decimal_into(out, n);
    out.push(b'"');
}

/// `n` in decimal, as `i64::to_string` writes it.
fn decimal_into(out: &mut Vec<u8>, n: i64) {
    // Writing into a `Vec` cannot fail.
    let _ = write!(out, "{n}");
}

fn string_list<'a>(out: &mut Vec<u8>, items: impl Iterator<Item = &'a str>) {
    out.push(b'[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_string(out, item);
    }
    out.push(b']');
}

/// A JSON string as serde_json writes it: `"` and `\` escaped, control
/// characters as `\b \t \n \f \r` or `\u00XX`, everything else as is.
fn json_string(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x09 => b"\\t",
            0x0A => b"\\n",
            0x0C => b"\\f",
            0x0D => b"\\r",
            0x00..=0x1F => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xF)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Decodes a peer record written by [`encode_peer`] or by an earlier
/// version's Lua merge script (which writes an empty list as `{}`).
pub(crate) fn decode_peer(key: &str, raw: &[u8]) -> Result<Peer> {
    let bad = |message: String| corrupt(key, message);
    let value: Value = serde_json::from_slice(raw).map_err(|e| Error::Corrupt {
        what: format!("redis key {key}"),
        message: "a peer record is not valid JSON".into(),
        source: Some(Box::new(e)),
    })?;
    let Value::Object(obj) = value else {
        return Err(bad("a peer record is not a JSON object".into()));
    };
    let text = |name: &str| -> Result<Option<&str>> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(bad(format!(
                "peer field {name:?} is {other}, expected a string"
            ))),
        }
    };
    let int = |name: &str| -> Result<Option<i64>> {
        text(name)?
            .map(|t| {
                t.parse::<i64>().map_err(|_| {
                    bad(format!(
                        "peer field {name:?} is {t:?}, expected a decimal i64"
                    ))
                })
            })
            .transpose()
    };
    let list = |name: &str| -> Result<Option<Vec<String>>> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            // The Lua JSON encoder writes an empty array as `{}`.
            Some(Value::Object(o)) if o.is_empty() => Ok(Some(Vec::new())),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(bad(format!(
                        "peer field {name:?} holds {other}, expected strings"
                    ))),
                })
                .collect::<Result<Vec<_>>>()
                .map(Some),
            Some(other) => Err(bad(format!(
                "peer field {name:?} is {other}, expected an array"
            ))),
        }
    };
    let id = int("i")?.ok_or_else(|| bad("a peer record has no id".into()))?;
    let id = PeerId::from_marked(id).map_err(|e| bad(e.to_string()))?;
    let kind = match obj.get("t") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let code = v
                .as_i64()
                .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
                .ok_or_else(|| bad(format!("peer kind {v} is not an integer")))?;
            Some(
                PeerKind::from_code(code)
                    .ok_or_else(|| bad(format!("unknown peer kind {code}")))?,
            )
        }
    };
    let access_hash = match int("h")? {
        None => None,
        Some(value) => {
            let min = match obj.get("m") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(other) => {
                    return Err(bad(format!(
                        "peer field \"m\" is {other}, expected a boolean"
                    )));
                }
            };
            Some(AccessHash { value, min })
        }
    };
    Ok(Peer {
        id,
        kind,
        access_hash,
        usernames: list("u")?,
        phone: text("p")?.map(str::to_owned),
        name: text("n")?.map(str::to_owned),
        last_seen: int("s")?,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// The object `encode_peer` writes, built with serde_json, keys sorted.
    fn reference_encoding(peer: &Peer) -> String {
        let mut m = BTreeMap::new();
        m.insert("i", Value::String(peer.id.marked().to_string()));
        if let Some(kind) = peer.kind {
            m.insert("t", Value::from(kind.code()));
        }
        if let Some(hash) = peer.access_hash {
            m.insert("h", Value::String(hash.value.to_string()));
            m.insert("m", Value::Bool(hash.min));
        }
        if let Some(names) = &peer.usernames {
            m.insert("u", names.iter().cloned().map(Value::String).collect());
            m.insert(
                "k",
                peer.username_keys()
                    .into_iter()
                    .map(Value::String)
                    .collect(),
            );
        }
        if let Some(phone) = &peer.phone {
            m.insert("p", Value::String(phone.clone()));
        }
        if let Some(name) = &peer.name {
            m.insert("n", Value::String(name.clone()));
        }
        if let Some(seen) = peer.last_seen {
            m.insert("s", Value::String(seen.to_string()));
        }
        serde_json::to_string(&m).expect("serializes")
    }

    #[test]
    fn peer_encoding_is_serde_jsons() {
        let mut peers = vec![
            Peer::new(PeerId::user(1).expect("id")),
            Peer::new(PeerId::user(i64::from(i32::MAX)).expect("id"))
                .with_kind(PeerKind::User)
                .with_hash(i64::MIN)
                .with_username("Some_Name")
                .with_phone("123")
                .with_name("Peer \"q\" \\ \u{0}\u{1f}\u{7f} \n\r\t\u{8}\u{c} ü / 𝄞"),
            Peer::new(PeerId::channel(i64::MAX - 1_000_000_000_000).expect("id"))
                .with_kind(PeerKind::Megagroup)
                .with_min_hash(i64::MAX)
                .with_name(""),
            Peer::new(PeerId::chat(5).expect("id")).with_hash(-1),
        ];
        peers[0].usernames = Some(vec![]);
        peers[1].last_seen = Some(i64::MIN);
        peers[2].last_seen = Some(0);
        peers[3].usernames = Some(vec!["Ab".into(), "cD".into()]);
        for peer in &peers {
            let raw = encode_peer(peer);
            assert_eq!(raw, reference_encoding(peer));
            assert_eq!(&decode_peer("k", raw.as_bytes()).expect("decodes"), peer);
        }
    }

    #[test]
    fn dc_round_trip() {
        let dc = DcOption {
            id: 4,
            ipv4: Some("149.154.167.92:443".parse().expect("addr")),
            ipv6: Some(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 80, 7, 9)),
            auth_key: Some(AuthKey::new([7; 256])),
        };
        let bytes = encode_dc(&dc);
        assert_eq!(bytes.len(), 1 + 6 + 26 + 256);
        assert_eq!(decode_dc("k", b"4", &bytes).expect("decodes"), dc);
        let bare = DcOption::new(1, None, None);
        assert_eq!(
            decode_dc("k", b"1", &encode_dc(&bare)).expect("decodes"),
            bare
        );
    }

    #[test]
    fn bad_dc_is_corrupt() {
        let err = decode_dc("k", b"2", &[DC_KEY, 1, 2]).expect_err("short");
        assert_eq!(err.kind(), session_core::ErrorKind::Corrupt);
        let err = decode_dc("k", b"x", &[0]).expect_err("bad id");
        assert_eq!(err.kind(), session_core::ErrorKind::Corrupt);
        let err = decode_dc("k", b"1", &[0x80]).expect_err("bad flags");
        assert_eq!(err.kind(), session_core::ErrorKind::Corrupt);
        let err = decode_dc("k", b"1", &[0, 0]).expect_err("trailing");
        assert_eq!(err.kind(), session_core::ErrorKind::Corrupt);
    }

    #[test]
    fn peer_round_trip_keeps_i64_exact() {
        let peer = Peer::new(PeerId::channel(i64::MAX - 1_000_000_000_000).expect("id"))
            .with_kind(PeerKind::Megagroup)
            .with_min_hash(i64::MIN)
            .with_username("Big_Group")
            .with_name("ü \"quoted\" \u{0}");
        let mut peer = peer;
        peer.last_seen = Some(i64::MAX);
        let raw = encode_peer(&peer);
        assert!(raw.contains("\"big_group\""), "{raw}");
        assert_eq!(decode_peer("k", raw.as_bytes()).expect("decodes"), peer);
    }

    #[test]
    fn lua_empty_array_is_an_empty_list() {
        let peer = decode_peer("k", br#"{"i":"5","u":{},"k":{}}"#).expect("decodes");
        assert_eq!(peer.usernames, Some(vec![]));
        let peer = decode_peer("k", br#"{"i":"5","t":2.0}"#).expect("decodes");
        assert_eq!(peer.kind, Some(PeerKind::Bot));
    }

    #[test]
    fn bad_peer_is_corrupt() {
        for raw in [
            &b"not json"[..],
            br#"[1]"#,
            br#"{"t":1}"#,
            br#"{"i":"0"}"#,
            br#"{"i":5}"#,
            br#"{"i":"5","t":99}"#,
            br#"{"i":"5","h":"x"}"#,
            br#"{"i":"5","u":[1]}"#,
        ] {
            let err = decode_peer("k", raw).expect_err("corrupt");
            assert_eq!(err.kind(), session_core::ErrorKind::Corrupt, "{raw:?}");
        }
    }

    #[test]
    fn file_round_trip() {
        let key = SentFileKey {
            md5: [9; 16],
            size: -3,
            kind: FileKind::Photo,
        };
        let file = SentFile {
            id: i64::MIN,
            access_hash: i64::MAX,
        };
        assert_eq!(
            decode_file_key("k", &encode_file_key(&key)).expect("key"),
            key
        );
        assert_eq!(decode_file("k", &encode_file(&file)).expect("value"), file);
        assert!(decode_file_key("k", &[0; 24]).is_err());
        assert!(decode_file("k", &[0; 17]).is_err());
    }
}
