//! String sessions against fixtures made by the real Telethon, Pyrogram and GramJS
//! (fixtures/scripts/gen_strings.sh), plus the rules the fixtures cannot show.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::Deserialize;
use session_core::{AuthKey, Error, ErrorKind, SelfUser, SessionData};
use session_formats::string::pyrogram_data_center;
use session_formats::string::{PyrogramLayout, StringFormat, StringSession, decode, decode_as};

#[derive(Deserialize)]
struct Fixture {
    #[serde(default)]
    valid: Vec<Valid>,
    #[serde(default)]
    lenient: Vec<Lenient>,
    malformed: Vec<MalformedCase>,
    #[serde(default)]
    data_center: Vec<DataCenterEntry>,
}

#[derive(Deserialize)]
struct Valid {
    name: String,
    string: String,
    dc_id: i32,
    server_address: Option<String>,
    port: Option<u16>,
    auth_key: Option<String>,
    api_id: Option<i32>,
    test_mode: Option<bool>,
    user_id: Option<i64>,
    is_bot: Option<bool>,
    layout: Option<String>,
    #[serde(default)]
    pyrogram_address: Option<Address>,
}

#[derive(Deserialize)]
struct Lenient {
    name: String,
    string: String,
    canonical: String,
}

#[derive(Deserialize)]
struct MalformedCase {
    name: String,
    string: String,
    error: String,
    looks_like: Option<String>,
    message_contains: Vec<String>,
}

#[derive(Deserialize)]
struct DataCenterEntry {
    dc_id: i32,
    test_mode: bool,
    ipv6: bool,
    media: bool,
    address: Option<Address>,
}

#[derive(Deserialize)]
struct Address {
    ip: String,
    port: u16,
}

impl Address {
    fn socket_addr(&self) -> SocketAddr {
        let ip: IpAddr = self.ip.parse().expect("fixture IP");
        SocketAddr::new(ip, self.port)
    }
}

fn load(file: &str) -> Fixture {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/strings")
        .join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("cannot parse {}: {e}", path.display()))
}

fn format_named(name: &str) -> StringFormat {
    name.parse()
        .unwrap_or_else(|e| panic!("fixture format {name:?}: {e}"))
}

fn layout_named(name: &str) -> PyrogramLayout {
    PyrogramLayout::ALL
        .into_iter()
        .find(|l| l.as_str() == name)
        .unwrap_or_else(|| panic!("unknown layout {name:?}"))
}

fn expected(format: StringFormat, v: &Valid) -> StringSession {
    StringSession {
        format,
        dc_id: v.dc_id,
        server_address: v.server_address.clone(),
        port: v.port,
        auth_key: v.auth_key.as_ref().map(|hex_key| {
            AuthKey::from_slice(&hex::decode(hex_key).expect("fixture hex")).expect("256 bytes")
        }),
        api_id: v.api_id,
        test_mode: v.test_mode,
        user_id: v.user_id,
        is_bot: v.is_bot,
        pyrogram_layout: v.layout.as_deref().map(layout_named),
    }
}

fn check_valid(file: &str, format: StringFormat, minimum: usize) -> usize {
    let fixture = load(file);
    assert!(
        fixture.valid.len() >= minimum,
        "{file}: only {} valid strings",
        fixture.valid.len()
    );
    for v in &fixture.valid {
        let want = expected(format, v);
        let auto = decode(&v.string).unwrap_or_else(|e| panic!("{file} {}: {e}", v.name));
        assert_eq!(auto, want, "{file} {}: automatic detection", v.name);
        let explicit =
            decode_as(&v.string, format).unwrap_or_else(|e| panic!("{file} {}: {e}", v.name));
        assert_eq!(explicit, want, "{file} {}: decode_as", v.name);
        let padded = format!(" \n\t{}\r\n ", v.string);
        assert_eq!(
            decode(&padded).expect("whitespace is trimmed"),
            want,
            "{}",
            v.name
        );
        let encoded = auto
            .encode()
            .unwrap_or_else(|e| panic!("{file} {}: encode: {e}", v.name));
        assert_eq!(encoded, v.string, "{file} {}: re-encoding", v.name);
        assert_eq!(
            want.encode().expect("encode the known inputs"),
            v.string,
            "{}",
            v.name
        );
    }
    for l in &fixture.lenient {
        let canonical = fixture
            .valid
            .iter()
            .find(|v| v.name == l.canonical)
            .unwrap_or_else(|| panic!("{file} {}: no canonical {}", l.name, l.canonical));
        let decoded = decode(&l.string).unwrap_or_else(|e| panic!("{file} {}: {e}", l.name));
        assert_eq!(decoded, expected(format, canonical), "{file} {}", l.name);
        assert_eq!(
            decoded.encode().expect("encode"),
            canonical.string,
            "{file} {}",
            l.name
        );
        assert_eq!(
            decode_as(&l.string, format).expect("decode_as"),
            decoded,
            "{}",
            l.name
        );
    }
    fixture.valid.len() + fixture.lenient.len()
}

fn check_malformed(file: &str, minimum: usize) -> usize {
    let fixture = load(file);
    assert!(
        fixture.malformed.len() >= minimum,
        "{file}: only {}",
        fixture.malformed.len()
    );
    for m in &fixture.malformed {
        assert_eq!(m.error, "MalformedString", "{file} {}", m.name);
        let err = match decode(&m.string) {
            Ok(s) => panic!("{file} {}: decoded as {:?}", m.name, s.format),
            Err(e) => e,
        };
        assert_eq!(
            err.kind(),
            ErrorKind::MalformedString,
            "{file} {}: {err}",
            m.name
        );
        let Error::MalformedString {
            looks_like,
            message,
        } = &err
        else {
            panic!("{file} {}: {err}", m.name);
        };
        let want = m.looks_like.as_deref().map(format_named);
        assert_eq!(
            *looks_like,
            want.map(StringFormat::display_name),
            "{file} {}: {err}",
            m.name
        );
        for part in &m.message_contains {
            assert!(
                message.contains(part.as_str()),
                "{file} {}: {message:?} lacks {part:?}",
                m.name
            );
        }
        let shown = err.to_string();
        if let Some(format) = want {
            assert!(
                shown.contains(&format!("looks like a {format} string")),
                "{shown}"
            );
            // Reading it as the format it resembles fails too.
            let explicit = decode_as(&m.string, format);
            assert!(
                matches!(explicit, Err(Error::MalformedString { looks_like: Some(f), .. }) if f == format.display_name()),
                "{file} {}: decode_as gave {explicit:?}",
                m.name
            );
        }
        assert_no_chunk_of(&m.string, &shown, &m.name);
    }
    fixture.malformed.len()
}

/// The message quotes no 12-character run of the (key-bearing) input.
fn assert_no_chunk_of(input: &str, shown: &str, name: &str) {
    let chars: Vec<char> = input.chars().collect();
    for window in chars.windows(12) {
        let chunk: String = window.iter().collect();
        if chunk.chars().all(|c| c.is_ascii_alphanumeric()) {
            assert!(
                !shown.contains(&chunk),
                "{name}: the message {shown:?} quotes the input"
            );
        }
    }
}

#[test]
fn telethon_fixtures_decode_and_reencode() {
    let n = check_valid("telethon.json", StringFormat::Telethon, 10);
    assert!(n >= 12);
}

#[test]
fn pyrogram_fixtures_decode_and_reencode() {
    let n = check_valid("pyrogram.json", StringFormat::Pyrogram, 12);
    assert!(n >= 14);
}

#[test]
fn gramjs_fixtures_decode_and_reencode() {
    let n = check_valid("gramjs.json", StringFormat::GramJs, 8);
    assert!(n >= 10);
}

#[test]
fn telethon_malformed_fixtures_are_typed_errors() {
    check_malformed("telethon.json", 10);
}

#[test]
fn pyrogram_malformed_fixtures_are_typed_errors() {
    check_malformed("pyrogram.json", 10);
}

#[test]
fn gramjs_malformed_fixtures_are_typed_errors() {
    check_malformed("gramjs.json", 10);
}

#[test]
fn general_malformed_fixtures_are_typed_errors() {
    check_malformed("general.json", 5);
}

#[test]
fn pyrogram_fixtures_cover_every_layout() {
    let fixture = load("pyrogram.json");
    for layout in PyrogramLayout::ALL {
        let count = fixture
            .valid
            .iter()
            .filter(|v| v.layout.as_deref() == Some(layout.as_str()))
            .count();
        assert!(count >= 2, "{layout}: {count} fixtures");
        let sample = fixture
            .valid
            .iter()
            .find(|v| v.layout.as_deref() == Some(layout.as_str()))
            .expect("one of each");
        assert_eq!(sample.string.len(), layout.string_len(), "{layout}");
    }
}

#[test]
fn pyrogram_data_center_matches_pyrogram() {
    let fixture = load("pyrogram.json");
    assert!(fixture.data_center.len() >= 32);
    for e in &fixture.data_center {
        let ours = pyrogram_data_center(e.dc_id, e.test_mode, e.ipv6, e.media);
        let theirs = e.address.as_ref().map(Address::socket_addr);
        assert_eq!(
            ours, theirs,
            "DC {} test={} ipv6={} media={}",
            e.dc_id, e.test_mode, e.ipv6, e.media
        );
    }
    for v in &fixture.valid {
        let test_mode = v.test_mode.expect("Pyrogram fixtures carry test mode");
        let ours = pyrogram_data_center(v.dc_id, test_mode, false, false);
        assert_eq!(
            ours,
            v.pyrogram_address.as_ref().map(Address::socket_addr),
            "{}",
            v.name
        );
    }
}

fn fixture_string(file: &str, name: &str) -> String {
    load(file)
        .valid
        .into_iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("{file}: no fixture {name}"))
        .string
}

#[test]
fn telethon_ipv6_and_gramjs_ipv4_share_a_length_and_are_told_apart() {
    let telethon_v6 = fixture_string("telethon.json", "ipv6_dc4");
    let gramjs_v4 = fixture_string("gramjs.json", "ipv4_14_chars_dc2");
    assert_eq!(telethon_v6.len(), gramjs_v4.len());
    assert_eq!(
        decode(&telethon_v6).expect("telethon").format,
        StringFormat::Telethon
    );
    assert_eq!(
        decode(&gramjs_v4).expect("gramjs").format,
        StringFormat::GramJs
    );

    // The GramJS bytes are also a valid Telethon IPv6 string; the alphabet decides.
    let as_telethon = decode_as(&gramjs_v4, StringFormat::Telethon).expect("Telethon reads it");
    assert_eq!(as_telethon.format, StringFormat::Telethon);
    let url_safe = gramjs_v4.replace('+', "-").replace('/', "_");
    assert_ne!(url_safe, gramjs_v4, "the fixture uses '+' or '/'");
    assert_eq!(
        decode(&url_safe).expect("url-safe").format,
        StringFormat::Telethon
    );
    assert_eq!(decode(&url_safe).expect("url-safe"), as_telethon);
    assert_eq!(
        decode_as(&url_safe, StringFormat::GramJs).expect("GramJS reads either alphabet"),
        decode(&gramjs_v4).expect("gramjs")
    );

    // Without '+', '/', '-' or '_', GramJS wins, as GramJS itself reads it.
    let neutral = fixture_string("gramjs.json", "ipv4_14_chars_dc1_test_port80");
    assert!(!neutral.contains(['+', '/', '-', '_']));
    assert_eq!(neutral.len(), telethon_v6.len());
    assert_eq!(
        decode(&neutral).expect("neutral").format,
        StringFormat::GramJs
    );

    // A Telethon IPv6 string in the standard alphabet stays Telethon: its
    // "address length" (0x2001) is one GramJS reads as Telethon too.
    let standard = telethon_v6.replace('-', "+").replace('_', "/");
    assert_ne!(standard, telethon_v6);
    assert_eq!(
        decode(&standard).expect("standard"),
        decode(&telethon_v6).expect("telethon")
    );
}

#[test]
fn a_352_character_body_is_always_telethon() {
    let telethon_v4 = fixture_string("telethon.json", "ipv4_dc2");
    assert_eq!(telethon_v4.len(), 353);
    assert_eq!(
        decode(&telethon_v4).expect("telethon").format,
        StringFormat::Telethon
    );
    let err = decode_as(&telethon_v4, StringFormat::GramJs).expect_err("not GramJS's own format");
    assert!(err.to_string().contains("Telethon"), "{err}");

    let three_byte = StringSession {
        format: StringFormat::GramJs,
        dc_id: 2,
        server_address: Some("::1".into()),
        port: Some(443),
        auth_key: Some(AuthKey::new([7; 256])),
        api_id: None,
        test_mode: None,
        user_id: None,
        is_bot: None,
        pyrogram_layout: None,
    };
    let err = three_byte
        .encode()
        .expect_err("GramJS would read it back as Telethon");
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

#[test]
fn debug_never_shows_key_bytes() {
    for (file, name) in [
        ("telethon.json", "ipv4_dc2"),
        ("pyrogram.json", "current_user_dc2"),
        ("gramjs.json", "ipv6_dc4"),
    ] {
        let string = fixture_string(file, name);
        let session = decode(&string).expect("valid");
        let key = session.auth_key.as_ref().expect("has a key");
        let key_hex = hex::encode(key.expose());
        let shown = format!("{session:?} {session:#?}").to_lowercase();
        for chunk in key_hex.as_bytes().chunks(8) {
            let chunk = std::str::from_utf8(chunk).expect("hex");
            assert!(
                !shown.contains(chunk),
                "{name}: Debug shows key bytes {chunk}: {shown}"
            );
        }
        let decimal = format!("{:?}", &key.expose()[..8]);
        assert!(!shown.contains(&decimal[1..decimal.len() - 1]), "{shown}");
        assert!(shown.contains(&key.id_hex()), "{shown}");
        assert!(
            !shown.contains(&string[1..20].to_lowercase()),
            "Debug shows the string"
        );
    }
}

#[test]
fn zero_keys_decode_as_no_key_and_round_trip() {
    for (file, name) in [
        ("telethon.json", "ipv4_zero_key"),
        ("pyrogram.json", "current_zero_key"),
    ] {
        let string = fixture_string(file, name);
        let session = decode(&string).expect("valid");
        assert!(session.auth_key.is_none(), "{name}");
        assert_eq!(session.encode().expect("encode"), string, "{name}");
    }
}

fn gramjs_session(address: &str, port: u16) -> StringSession {
    StringSession {
        format: StringFormat::GramJs,
        dc_id: 2,
        server_address: Some(address.into()),
        port: Some(port),
        auth_key: Some(AuthKey::new([3; 256])),
        api_id: None,
        test_mode: None,
        user_id: None,
        is_bot: None,
        pyrogram_layout: None,
    }
}

#[test]
fn fields_a_format_cannot_carry_are_invalid_input() {
    let mut telethon = decode(&fixture_string("telethon.json", "ipv4_dc2")).expect("valid");
    telethon.server_address = Some("venus.web.telegram.org".into());
    assert_invalid(telethon.encode(), "hostname in Telethon");
    let mut telethon = decode(&fixture_string("telethon.json", "ipv4_dc2")).expect("valid");
    telethon.api_id = Some(1);
    assert_invalid(telethon.encode(), "api_id in Telethon");
    telethon.api_id = None;
    telethon.dc_id = 256;
    assert_invalid(telethon.encode(), "DC id above a byte");
    telethon.dc_id = 2;
    telethon.port = None;
    assert_invalid(telethon.encode(), "Telethon without a port");

    let mut pyrogram = decode(&fixture_string("pyrogram.json", "current_user_dc2")).expect("valid");
    pyrogram.api_id = None;
    assert_invalid(pyrogram.encode(), "current Pyrogram without api_id");
    pyrogram.api_id = Some(-1);
    assert_invalid(pyrogram.encode(), "negative api_id");
    pyrogram.api_id = Some(1);
    pyrogram.user_id = None;
    assert_invalid(pyrogram.encode(), "Pyrogram without user_id");
    pyrogram.user_id = Some(1);
    pyrogram.server_address = Some("149.154.167.51".into());
    assert_invalid(pyrogram.encode(), "address in Pyrogram");

    let mut legacy = decode(&fixture_string("pyrogram.json", "legacy32_user_dc2")).expect("valid");
    legacy.user_id = Some(1 << 32);
    assert_invalid(legacy.encode(), "legacy32 user id above 32 bits");
    legacy.user_id = Some(1);
    legacy.api_id = Some(1);
    assert_invalid(legacy.encode(), "api_id in a legacy layout");
    legacy.pyrogram_layout = Some(PyrogramLayout::Current);
    assert_eq!(
        decode(&legacy.encode().expect("current layout")).expect("decode"),
        legacy
    );

    assert_invalid(
        gramjs_session("149.154.167.51", 40000).encode(),
        "GramJS port above i16",
    );
    assert_invalid(
        gramjs_session("149.154.167.51", 0).encode(),
        "GramJS port 0",
    );
    assert_invalid(gramjs_session("", 443).encode(), "GramJS empty address");
    assert_invalid(
        gramjs_session(&"a".repeat(101), 443).encode(),
        "GramJS address above 100",
    );
    let hundred = gramjs_session(&"a".repeat(100), 443);
    assert_eq!(
        decode(&hundred.encode().expect("100 bytes fit")).expect("decode"),
        hundred
    );
}

fn assert_invalid<T: std::fmt::Debug>(result: session_core::Result<T>, what: &str) {
    match result {
        Err(e) => assert_eq!(e.kind(), ErrorKind::InvalidInput, "{what}: {e}"),
        Ok(v) => panic!("{what}: accepted as {v:?}"),
    }
}

#[test]
fn session_data_round_trips_through_every_format() {
    for file in ["telethon.json", "gramjs.json", "pyrogram.json"] {
        for v in load(file).valid {
            let session = decode(&v.string).expect("valid");
            let data = match session.to_session_data() {
                Ok(data) => data,
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{}: {e}", v.name);
                    // A host name, or a DC id no store accepts (strings can hold DC 0).
                    let bad_dc = !(1..=32767).contains(&session.dc_id);
                    assert!(v.name.contains("hostname") || bad_dc, "{}: {e}", v.name);
                    continue;
                }
            };
            assert_eq!(data.home_dc, v.dc_id, "{}", v.name);
            assert_eq!(
                data.home_auth_key(),
                session.auth_key.as_ref(),
                "{}",
                v.name
            );
            let back = StringSession::from_session_data(&data, session.format);
            if session.auth_key.is_none() {
                assert_invalid(back, &v.name);
                continue;
            }
            if session
                .pyrogram_layout
                .is_some_and(|l| l != PyrogramLayout::Current)
            {
                // The legacy layouts carry no api_id, which the current layout needs.
                assert_invalid(back, &v.name);
                let mut data = data;
                data.api_id = Some(1);
                let back = StringSession::from_session_data(&data, StringFormat::Pyrogram)
                    .unwrap_or_else(|e| panic!("{}: {e}", v.name));
                assert_eq!(back.pyrogram_layout, Some(PyrogramLayout::Current));
                let fields = (back.dc_id, back.user_id, back.is_bot, back.test_mode);
                assert_eq!(
                    fields,
                    (v.dc_id, v.user_id, v.is_bot, v.test_mode),
                    "{}",
                    v.name
                );
                assert_eq!(back.auth_key, session.auth_key, "{}", v.name);
                continue;
            }
            let back = back.unwrap_or_else(|e| panic!("{}: {e}", v.name));
            assert_eq!(back.encode().expect("encode"), v.string, "{}", v.name);
        }
    }
}

#[test]
fn pyrogram_session_data_uses_pyrogram_addresses() {
    let session = decode(&fixture_string("pyrogram.json", "current_test_mode_dc1")).expect("valid");
    let data = session.to_session_data().expect("known DC");
    assert!(data.test_mode);
    assert_eq!(data.api_id, Some(94575));
    assert_eq!(
        data.self_user,
        Some(SelfUser {
            id: 5_000_000_005,
            is_bot: false
        })
    );
    assert_eq!(data.dcs.iter().map(|d| d.id).collect::<Vec<_>>(), [1, 2, 3]);
    let home = data.dcs.iter().find(|d| d.id == 1).expect("DC 1");
    assert_eq!(
        home.ipv4.map(SocketAddr::V4),
        pyrogram_data_center(1, true, false, false)
    );
    assert_eq!(
        home.ipv6.map(SocketAddr::V6),
        pyrogram_data_center(1, true, true, false)
    );
    assert!(data.dcs.iter().filter(|d| d.auth_key.is_some()).count() == 1);

    let mut unknown = session.clone();
    unknown.dc_id = 4; // test mode has DCs 1 to 3 only
    assert_invalid(unknown.to_session_data(), "Pyrogram test DC 4");
}

#[test]
fn session_data_without_what_a_format_needs_is_invalid_input() {
    let mut data = SessionData::default();
    assert_invalid(
        StringSession::from_session_data(&data, StringFormat::Telethon),
        "no key",
    );
    for dc in &mut data.dcs {
        if dc.id == data.home_dc {
            dc.auth_key = Some(AuthKey::new([9; 256]));
        }
    }
    let telethon = StringSession::from_session_data(&data, StringFormat::Telethon).expect("ok");
    assert_eq!(telethon.server_address.as_deref(), Some("149.154.167.51"));
    assert_eq!(
        decode(&telethon.encode().expect("encode")).expect("decode"),
        telethon
    );
    let gramjs = StringSession::from_session_data(&data, StringFormat::GramJs).expect("ok");
    assert_eq!(
        decode(&gramjs.encode().expect("encode")).expect("decode"),
        gramjs
    );

    assert_invalid(
        StringSession::from_session_data(&data, StringFormat::Pyrogram),
        "no api_id",
    );
    data.api_id = Some(12345);
    assert_invalid(
        StringSession::from_session_data(&data, StringFormat::Pyrogram),
        "no self user",
    );
    data.self_user = Some(SelfUser {
        id: 777,
        is_bot: true,
    });
    let pyrogram = StringSession::from_session_data(&data, StringFormat::Pyrogram).expect("ok");
    assert_eq!(pyrogram.pyrogram_layout, Some(PyrogramLayout::Current));
    assert_eq!(
        decode(&pyrogram.encode().expect("encode")).expect("decode"),
        pyrogram
    );

    data.dcs.retain(|dc| dc.id != data.home_dc);
    assert_invalid(
        StringSession::from_session_data(&data, StringFormat::Telethon),
        "no home DC",
    );
}

#[test]
fn converting_between_formats() {
    let pyrogram = decode(&fixture_string("pyrogram.json", "current_user_dc2")).expect("valid");
    let telethon = decode(
        &pyrogram
            .encode_as(StringFormat::Telethon)
            .expect("to Telethon"),
    )
    .expect("decode");
    assert_eq!(telethon.format, StringFormat::Telethon);
    assert_eq!(telethon.server_address.as_deref(), Some("149.154.167.51"));
    assert_eq!(telethon.port, Some(443));
    assert_eq!(telethon.auth_key, pyrogram.auth_key);

    let gramjs =
        decode(&telethon.encode_as(StringFormat::GramJs).expect("to GramJS")).expect("decode");
    assert_eq!(gramjs.format, StringFormat::GramJs);
    assert_eq!((gramjs.dc_id, gramjs.port), (2, Some(443)));

    // Telethon knows no api_id, user or test mode: they must be given.
    assert_invalid(
        telethon.encode_as(StringFormat::Pyrogram),
        "Telethon to Pyrogram",
    );
    let mut filled = telethon.convert(StringFormat::Pyrogram).expect("convert");
    filled.api_id = Some(12345);
    filled.test_mode = Some(false);
    filled.user_id = Some(123456789);
    filled.is_bot = Some(false);
    assert_eq!(
        filled.encode().expect("encode"),
        pyrogram.encode().expect("encode")
    );

    // Converting to the same format changes nothing, legacy layouts included.
    let legacy = decode(&fixture_string("pyrogram.json", "legacy64_bot_dc5")).expect("valid");
    assert_eq!(
        legacy.encode_as(StringFormat::Pyrogram).expect("same"),
        legacy.encode().expect("encode")
    );
}

#[test]
fn formats_parse_from_their_names() {
    for format in StringFormat::ALL {
        assert_eq!(
            format.as_str().parse::<StringFormat>().expect("name"),
            format
        );
        assert_eq!(
            format
                .to_string()
                .parse::<StringFormat>()
                .expect("display name"),
            format
        );
    }
    assert_eq!(
        "nope".parse::<StringFormat>().expect_err("unknown").kind(),
        ErrorKind::InvalidInput
    );
}
