//! String sessions: `string::decode` and `decode_as` never panic; a string
//! that decodes encodes again, and that string decodes to the same session
//! and encodes to itself; what `to_session_data` accepts every store accepts.

#![no_main]

use libfuzzer_sys::fuzz_target;
use session_formats::string::{self, StringFormat, StringSession};

fn check(decoded: &StringSession) {
    let encoded = decoded
        .encode()
        .unwrap_or_else(|e| panic!("a decoded string does not encode again: {e}"));
    let again = string::decode_as(&encoded, decoded.format)
        .unwrap_or_else(|e| panic!("a re-encoded string does not decode: {e}"));
    assert_eq!(&again, decoded, "decode(encode(s)) differs from s");
    assert_eq!(
        again.encode().expect("encodes"),
        encoded,
        "the canonical string is not stable"
    );
    if let Ok(data) = decoded.to_session_data() {
        session_core::validate_data(&data, true)
            .unwrap_or_else(|e| panic!("to_session_data gave data no store accepts: {e}"));
    }
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    if let Ok(decoded) = string::decode(text) {
        check(&decoded);
    }
    for format in StringFormat::ALL {
        if let Ok(decoded) = string::decode_as(text, format) {
            assert_eq!(decoded.format, format);
            check(&decoded);
        }
    }
});
