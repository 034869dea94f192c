//! Decoding never panics, and whatever decodes re-encodes to the same value.

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use proptest::prelude::*;
use session_core::{Error, ErrorKind};
use session_formats::string::{StringFormat, StringSession, decode, decode_as};

/// Every valid string of the fixtures made by the real libraries.
static FIXTURE_STRINGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut out = Vec::new();
    for file in ["telethon.json", "pyrogram.json", "gramjs.json"] {
        let path = format!(
            "{}/../../fixtures/strings/{file}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let json: serde_json::Value = serde_json::from_str(&text).expect("fixture JSON");
        for entry in json["valid"].as_array().expect("valid list") {
            out.push(entry["string"].as_str().expect("string").to_owned());
        }
    }
    assert!(out.len() >= 30, "fixtures missing");
    out
});

/// Every Ok re-encodes, and the encoding decodes to the same value (both with
/// detection and as the value's own format) and encodes to itself.
fn check_round_trip(decoded: &StringSession, input: &str) -> Result<(), TestCaseError> {
    let encoded = decoded
        .encode()
        .map_err(|e| TestCaseError::fail(format!("{input:?} decoded but cannot encode: {e}")))?;
    let again = decode(&encoded).map_err(|e| {
        TestCaseError::fail(format!("re-encoding {encoded:?} does not decode: {e}"))
    })?;
    prop_assert_eq!(
        &again,
        decoded,
        "auto-detection of the re-encoding of {:?}",
        input
    );
    let explicit = decode_as(&encoded, decoded.format)
        .map_err(|e| TestCaseError::fail(format!("{encoded:?} as {}: {e}", decoded.format)))?;
    prop_assert_eq!(&explicit, decoded);
    prop_assert_eq!(again.encode().ok(), Some(encoded));
    Ok(())
}

fn check_explicit_round_trip(decoded: &StringSession, input: &str) -> Result<(), TestCaseError> {
    let encoded = decoded
        .encode()
        .map_err(|e| TestCaseError::fail(format!("{input:?} decoded but cannot encode: {e}")))?;
    let again = decode_as(&encoded, decoded.format)
        .map_err(|e| TestCaseError::fail(format!("{encoded:?} as {}: {e}", decoded.format)))?;
    prop_assert_eq!(&again, decoded);
    Ok(())
}

/// Decodes every way; errors must be typed, values must round-trip.
fn check(input: &str) -> Result<(), TestCaseError> {
    match decode(input) {
        Ok(decoded) => check_round_trip(&decoded, input)?,
        Err(e) => check_error(&e)?,
    }
    for format in StringFormat::ALL {
        match decode_as(input, format) {
            Ok(decoded) => {
                prop_assert_eq!(decoded.format, format);
                check_explicit_round_trip(&decoded, input)?;
            }
            Err(e) => {
                check_error(&e)?;
                let is_format = matches!(&e, Error::MalformedString { looks_like: Some(f), .. } if *f == format.display_name());
                prop_assert!(
                    is_format,
                    "decode_as({format}) error names another format: {e}"
                );
            }
        }
    }
    Ok(())
}

fn check_error(e: &Error) -> Result<(), TestCaseError> {
    prop_assert_eq!(e.kind(), ErrorKind::MalformedString, "{}", e);
    prop_assert!(!e.to_string().is_empty());
    Ok(())
}

/// Byte lengths around every format's sizes.
fn interesting_len() -> impl Strategy<Value = usize> {
    prop_oneof![0usize..8, 255usize..=290, Just(361), Just(380),]
}

fn bytes_of_interesting_len() -> impl Strategy<Value = Vec<u8>> {
    interesting_len().prop_flat_map(|len| proptest::collection::vec(any::<u8>(), len))
}

/// Bytes shaped like GramJS's layout, mostly consistent, so that decoding
/// often succeeds, with arbitrary address bytes, port and key.
fn gramjs_shaped() -> impl Strategy<Value = Vec<u8>> {
    let address = (0usize..=110, any::<bool>()).prop_flat_map(|(len, ascii)| {
        proptest::collection::vec(any::<u8>(), len).prop_map(move |bytes| {
            if ascii {
                bytes.iter().map(|b| b'0' + b % 10).collect()
            } else {
                bytes
            }
        })
    });
    let delta = prop_oneof![3 => Just(0i16), 1 => -3i16..=3];
    let key_len = prop_oneof![3 => Just(256usize), 1 => 250usize..=260];
    (
        any::<u8>(),
        address,
        delta,
        any::<i16>(),
        key_len.prop_flat_map(|n| proptest::collection::vec(any::<u8>(), n)),
    )
        .prop_map(|(dc, address, delta, port, key)| {
            let declared = i16::try_from(address.len())
                .unwrap_or(i16::MAX)
                .saturating_add(delta);
            let mut out = vec![dc];
            out.extend_from_slice(&declared.to_be_bytes());
            out.extend_from_slice(&address);
            out.extend_from_slice(&port.to_be_bytes());
            out.extend_from_slice(&key);
            out
        })
}

fn encodings(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for encoded in [
        STANDARD.encode(bytes),
        STANDARD_NO_PAD.encode(bytes),
        URL_SAFE.encode(bytes),
        URL_SAFE_NO_PAD.encode(bytes),
    ] {
        out.push(format!("1{encoded}"));
        out.push(format!("2{encoded}"));
        out.push(encoded);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_strings_never_panic(input in any::<String>()) {
        check(&input)?;
    }

    #[test]
    fn base64_looking_strings_never_panic(
        input in "[1A-Za-z0-9_+/=-]{0,12}|1[A-Za-z0-9_+/-]{340,380}={0,2}|[A-Za-z0-9_-]{345,370}"
    ) {
        check(&input)?;
    }

    #[test]
    fn base64_of_arbitrary_bytes_round_trips(bytes in bytes_of_interesting_len()) {
        for input in encodings(&bytes) {
            check(&input)?;
        }
    }

    #[test]
    fn base64_of_gramjs_shaped_bytes_round_trips(bytes in gramjs_shaped()) {
        for input in encodings(&bytes) {
            check(&input)?;
        }
    }

    #[test]
    fn damaged_fixture_strings_never_panic(
        pick in any::<prop::sample::Index>(),
        position in any::<prop::sample::Index>(),
        replacement in any::<char>(),
        cut in any::<bool>(),
    ) {
        let chosen = pick.get(&FIXTURE_STRINGS);
        let mut chars: Vec<char> = chosen.chars().collect();
        let at = position.index(chars.len());
        if cut {
            chars.truncate(at);
        } else {
            chars[at] = replacement;
        }
        let damaged: String = chars.into_iter().collect();
        check(&damaged)?;
    }
}
