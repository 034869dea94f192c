//! String sessions of Telethon, Pyrogram and GramJS ([design §5](https://github.com/mtsession/mtsession/blob/main/docs/design.md#5-foreign-formats)), byte for byte.
//!
//! | format | text | bytes |
//! |---|---|---|
//! | Telethon v1 | `'1'` + url-safe base64 with `=` padding | u8 dc id, IPv4 (4) or IPv6 (16), u16 port, 256-byte key: 263 or 275 bytes |
//! | Pyrogram | url-safe base64 without padding | see [`PyrogramLayout`]: 263, 267 or 271 bytes |
//! | GramJS | `'1'` + standard base64 with padding | u8 dc id, i16 address length, address text, i16 port, 256-byte key |
//!
//! [`decode`] tells the formats apart and explains itself when it cannot
//! ("looks like a Pyrogram string; it has 355 characters; expected 351, 356 or
//! 362"); [`decode_as`] reads one chosen format. [`StringSession::encode`] writes
//! the string again in the format (and Pyrogram layout) it was read from, so a
//! string made by the library comes back unchanged.
//!
//! Decoding accepts what the libraries themselves read as the same session and
//! re-encodes it canonically: both base64 alphabets (Python's `urlsafe_b64decode`
//! and Node's `Buffer.from(_, "base64")` accept either), non-zero trailing bits,
//! a padded Pyrogram string of the current layout (Pyrogram pads before decoding)
//! and a GramJS string without its `=` padding (Node does not need it). Whitespace
//! around the string is ignored.
//!
//! Telethon and GramJS strings both start with `'1'`. A GramJS string for a
//! 14-character IPv4 address is 275 bytes, like a Telethon IPv6 string. When the
//! bytes are valid in both formats, the alphabet decides (`-`/`_` is Telethon,
//! `+`/`/` is GramJS), and without either GramJS wins, as GramJS itself reads
//! such a string (it takes an address length up to 100 as its own format).
//! Strings of 352 characters after the prefix are always Telethon: GramJS reads
//! them as Telethon IPv4 too, so GramJS addresses of 1 to 3 bytes cannot be
//! stored in its format.
//!
//! In every format an all-zero key means "no key" (`auth_key: None`), and `None`
//! encodes as 256 zero bytes, so such strings round-trip as well.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::str::FromStr;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use zeroize::Zeroizing;

use session_core::auth_key::{AUTH_KEY_LEN, AuthKey};
use session_core::model::{DcOption, SelfUser, SessionData, production_dcs};
use session_core::{Error, Result};

/// A string-session format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StringFormat {
    /// Telethon v1 `StringSession`.
    Telethon,
    /// Pyrogram `export_session_string`.
    Pyrogram,
    /// GramJS `StringSession`.
    GramJs,
}

impl StringFormat {
    /// Every format, in the order detection reports them.
    pub const ALL: [StringFormat; 3] = [
        StringFormat::Telethon,
        StringFormat::Pyrogram,
        StringFormat::GramJs,
    ];

    /// Lowercase name: `telethon`, `pyrogram`, `gramjs`.
    pub fn as_str(self) -> &'static str {
        match self {
            StringFormat::Telethon => "telethon",
            StringFormat::Pyrogram => "pyrogram",
            StringFormat::GramJs => "gramjs",
        }
    }
}

impl StringFormat {
    /// The library's name as people write it: `Telethon`, `Pyrogram`, `GramJS`.
    pub fn display_name(self) -> &'static str {
        match self {
            StringFormat::Telethon => "Telethon",
            StringFormat::Pyrogram => "Pyrogram",
            StringFormat::GramJs => "GramJS",
        }
    }
}

impl fmt::Display for StringFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.display_name())
    }
}

impl FromStr for StringFormat {
    type Err = Error;

    /// Parses `telethon`, `pyrogram` or `gramjs`, in any case.
    fn from_str(s: &str) -> Result<Self> {
        StringFormat::ALL
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown string-session format {s:?}; expected telethon, pyrogram or gramjs"
                ))
            })
    }
}

/// Which of Pyrogram's binary layouts a Pyrogram string uses.
///
/// Pyrogram 2 writes [`PyrogramLayout::Current`] and still reads the two older
/// layouts, telling them apart by the string's length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PyrogramLayout {
    /// `>BI?256sQ?`: dc id, api_id (u32), test mode, key, user id (u64), is_bot.
    /// 271 bytes, 362 characters.
    #[default]
    Current,
    /// `>B?256sI?`: dc id, test mode, key, user id (u32), is_bot.
    /// 263 bytes, 351 characters.
    Legacy32,
    /// `>B?256sQ?`: dc id, test mode, key, user id (u64), is_bot.
    /// 267 bytes, 356 characters.
    Legacy64,
}

impl PyrogramLayout {
    /// Every layout.
    pub const ALL: [PyrogramLayout; 3] = [
        PyrogramLayout::Current,
        PyrogramLayout::Legacy32,
        PyrogramLayout::Legacy64,
    ];

    /// Lowercase name: `current`, `legacy32`, `legacy64`.
    pub fn as_str(self) -> &'static str {
        match self {
            PyrogramLayout::Current => "current",
            PyrogramLayout::Legacy32 => "legacy32",
            PyrogramLayout::Legacy64 => "legacy64",
        }
    }

    /// The layout as a Python `struct` format, as Pyrogram's source spells it.
    pub fn struct_format(self) -> &'static str {
        match self {
            PyrogramLayout::Current => ">BI?256sQ?",
            PyrogramLayout::Legacy32 => ">B?256sI?",
            PyrogramLayout::Legacy64 => ">B?256sQ?",
        }
    }

    /// Length of the packed bytes.
    pub fn byte_len(self) -> usize {
        match self {
            PyrogramLayout::Current => 1 + 4 + 1 + AUTH_KEY_LEN + 8 + 1,
            PyrogramLayout::Legacy32 => 1 + 1 + AUTH_KEY_LEN + 4 + 1,
            PyrogramLayout::Legacy64 => 1 + 1 + AUTH_KEY_LEN + 8 + 1,
        }
    }

    /// Length of the string: unpadded base64 of [`PyrogramLayout::byte_len`] bytes.
    pub fn string_len(self) -> usize {
        (self.byte_len() * 4).div_ceil(3)
    }

    fn from_string_len(len: usize) -> Option<Self> {
        PyrogramLayout::ALL
            .into_iter()
            .find(|l| l.string_len() == len)
    }
}

impl fmt::Display for PyrogramLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A decoded string session.
///
/// Each format carries some of the fields and leaves the others `None`:
/// Telethon and GramJS carry `server_address` and `port`; Pyrogram carries
/// `api_id` (current layout only), `test_mode`, `user_id`, `is_bot` and
/// `pyrogram_layout`. `Debug` shows the key's id, never its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StringSession {
    /// The format it came from.
    pub format: StringFormat,
    /// DC id (one byte in every format: 0 to 255).
    pub dc_id: i32,
    /// Server address, where the format carries one: an IP address for
    /// Telethon (in Python's `ipaddress` compressed form when decoded), any
    /// text for GramJS.
    pub server_address: Option<String>,
    /// Port, where the format carries one.
    pub port: Option<u16>,
    /// The key; `None` for an all-zero key.
    pub auth_key: Option<AuthKey>,
    /// `api_id` (Pyrogram current layout only).
    pub api_id: Option<i32>,
    /// Test mode (Pyrogram only).
    pub test_mode: Option<bool>,
    /// User id (Pyrogram only).
    pub user_id: Option<i64>,
    /// Bot flag (Pyrogram only).
    pub is_bot: Option<bool>,
    /// The Pyrogram layout a Pyrogram string was read from, or is to be written
    /// in; `None` for the other formats (and means [`PyrogramLayout::Current`]
    /// for Pyrogram).
    pub pyrogram_layout: Option<PyrogramLayout>,
}

impl FromStr for StringSession {
    type Err = Error;

    /// Same as [`decode`].
    fn from_str(s: &str) -> Result<Self> {
        decode(s)
    }
}

// --------------------------------------------------------------------------- constants

/// Telethon's and GramJS's version prefix.
const VERSION_PREFIX: char = '1';
/// Characters after the prefix of a Telethon IPv4 / IPv6 string.
const TELETHON_V4_CHARS: usize = 352;
const TELETHON_V6_CHARS: usize = 368;
const TELETHON_V4_BYTES: usize = 1 + 4 + 2 + AUTH_KEY_LEN;
const TELETHON_V6_BYTES: usize = 1 + 16 + 2 + AUTH_KEY_LEN;
/// GramJS reads an address length above this as a Telethon IPv6 string.
const GRAMJS_MAX_ADDRESS_LEN: usize = 100;
/// Addresses of up to this many bytes give a 352-character string, which GramJS
/// reads as Telethon IPv4.
const GRAMJS_AMBIGUOUS_ADDRESS_LEN: usize = 3;
/// A string with more characters outside base64 than this resembles no format.
const MAX_STRAY_CHARS: usize = 3;
/// A padded current-layout Pyrogram string (Pyrogram pads before decoding).
const PYROGRAM_PADDED_CURRENT_CHARS: usize = 364;

const fn engine(padding: DecodePaddingMode) -> GeneralPurpose {
    GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_encode_padding(true)
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(padding),
    )
}

const DECODE_PADDED: GeneralPurpose = engine(DecodePaddingMode::RequireCanonical);
const DECODE_UNPADDED: GeneralPurpose = engine(DecodePaddingMode::RequireNone);
const DECODE_ANY_PADDING: GeneralPurpose = engine(DecodePaddingMode::Indifferent);

const EXPECTED_ANY: &str = "expected a Telethon string ('1' and 352 or 368 url-safe base64 \
     characters), a Pyrogram string (351, 356 or 362 url-safe base64 characters) or a GramJS \
     string ('1' and standard base64)";

// --------------------------------------------------------------------------- decoding

/// Why a string was refused: the format it resembled and what was expected.
struct Malformed {
    looks_like: Option<StringFormat>,
    message: String,
}

impl Malformed {
    fn new(looks_like: Option<StringFormat>, message: impl Into<String>) -> Self {
        Malformed {
            looks_like,
            message: message.into(),
        }
    }

    fn into_error(self) -> Error {
        Error::MalformedString {
            looks_like: self.looks_like.map(StringFormat::display_name),
            message: self.message,
        }
    }
}

/// Decodes a string, detecting the format.
///
/// Surrounding white space and one pair of matching quotes are ignored. Every failure is an
/// [`Error::MalformedString`] naming the format the string looked like, if any,
/// and what that format expects.
pub fn decode(input: &str) -> Result<StringSession> {
    let s = unquote(input);
    if s.is_empty() {
        return Err(
            Malformed::new(None, format!("the string is empty; {EXPECTED_ANY}")).into_error(),
        );
    }
    detect_and_decode(s).map_err(|mut m| {
        if stray_chars(s) > MAX_STRAY_CHARS {
            m.looks_like = None;
            m.message = format!(
                "it has {} characters and resembles none of the formats; {EXPECTED_ANY}",
                s.chars().count()
            );
        }
        m.into_error()
    })
}

/// Decodes a string of a known format.
///
/// Surrounding white space and one pair of matching quotes are ignored. Failures are [`Error::MalformedString`]
/// with `looks_like` set to `format`.
pub fn decode_as(input: &str, format: StringFormat) -> Result<StringSession> {
    let s = unquote(input);
    let result = if s.is_empty() {
        Err(Malformed::new(Some(format), "the string is empty"))
    } else {
        match format {
            StringFormat::Telethon => decode_telethon_only(s),
            StringFormat::Pyrogram => decode_pyrogram(s),
            StringFormat::GramJs => decode_gramjs_only(s),
        }
    };
    result.map_err(|mut m| {
        m.looks_like = Some(format);
        m.into_error()
    })
}

/// The string without surrounding white space and one pair of matching
/// quotes (`'…'`, `"…"` or `` `…` ``), as a string pasted from Python source
/// or a shell often carries. No format's alphabet holds a quote.
fn unquote(input: &str) -> &str {
    let s = input.trim();
    for quote in ['\'', '"', '`'] {
        if let Some(inner) = s
            .strip_prefix(quote)
            .and_then(|rest| rest.strip_suffix(quote))
        {
            return inner.trim();
        }
    }
    s
}

fn detect_and_decode(s: &str) -> Result<StringSession, Malformed> {
    let chars = s.chars().count();
    if let Some(rest) = s.strip_prefix(VERSION_PREFIX) {
        let rest_chars = chars - 1;
        if rest_chars.is_multiple_of(4) {
            return decode_prefixed(rest);
        }
        if PyrogramLayout::from_string_len(chars).is_some() {
            return decode_pyrogram(s);
        }
        return decode_prefixed_unpadded(rest);
    }
    if PyrogramLayout::from_string_len(chars).is_some()
        || (chars == PYROGRAM_PADDED_CURRENT_CHARS && s.ends_with("=="))
    {
        return decode_pyrogram(s);
    }
    Err(unrecognized(s, chars))
}

/// `'1'` + padded base64: Telethon or GramJS.
fn decode_prefixed(rest: &str) -> Result<StringSession, Malformed> {
    let bytes = decode_base64(rest, 1, &DECODE_PADDED)
        .map_err(|message| Malformed::new(Some(guess_prefixed(rest, None)), message))?;
    let rest_chars = rest.chars().count();
    let telethon = parse_telethon(rest_chars, &bytes);
    let gramjs = parse_gramjs(&bytes);
    match (telethon, gramjs) {
        (Ok(t), Ok(g)) => match alphabet_hint(rest, &bytes) {
            Some(StringFormat::Telethon) => Ok(t),
            _ => Ok(g),
        },
        (Ok(t), Err(gramjs_message)) => {
            // Standard base64 that GramJS would read as its own format (an address
            // length up to 100) but that does not hold together: a broken GramJS
            // string, not a Telethon one (Telethon never writes '+' or '/').
            if rest_chars == TELETHON_V6_CHARS
                && uses_standard_alphabet_only(rest)
                && declared_address_len(&bytes)
                    .is_some_and(|len| len <= GRAMJS_MAX_ADDRESS_LEN as i16)
            {
                Err(Malformed::new(Some(StringFormat::GramJs), gramjs_message))
            } else {
                Ok(t)
            }
        }
        (Err(_), Ok(g)) => Ok(g),
        (Err(te), Err(ge)) => {
            let looks_like = guess_prefixed(rest, Some(&bytes));
            let message = if looks_like == StringFormat::Telethon {
                te
            } else {
                ge
            };
            Err(Malformed::new(Some(looks_like), message))
        }
    }
}

/// `'1'` + base64 whose length is not a multiple of 4: GramJS without padding,
/// or a string whose padding was lost.
fn decode_prefixed_unpadded(rest: &str) -> Result<StringSession, Malformed> {
    let rest_chars = rest.chars().count();
    let padded = rest_chars.next_multiple_of(4);
    let telethon_length = padded == TELETHON_V4_CHARS || padded == TELETHON_V6_CHARS;
    let guess = |bytes: Option<&[u8]>| {
        let hint = raw_alphabet_hint(rest);
        if hint.is_none() && telethon_length {
            StringFormat::Telethon
        } else {
            hint.unwrap_or_else(|| guess_prefixed(rest, bytes))
        }
    };
    let bytes = match decode_base64(rest, 1, &DECODE_UNPADDED) {
        Ok(bytes) => bytes,
        Err(message) => return Err(Malformed::new(Some(guess(None)), message)),
    };
    match parse_gramjs(&bytes) {
        Ok(session) => Ok(session),
        Err(gramjs_message) => {
            let looks_like = guess(Some(&bytes));
            let message = if looks_like == StringFormat::Telethon {
                format!(
                    "its '=' padding is missing: {rest_chars} characters follow the version \
                     prefix '1'; expected 352 (IPv4) or 368 (IPv6), ending in '='"
                )
            } else {
                gramjs_message
            };
            Err(Malformed::new(Some(looks_like), message))
        }
    }
}

fn decode_telethon_only(s: &str) -> Result<StringSession, Malformed> {
    let telethon = Some(StringFormat::Telethon);
    let rest = strip_version_prefix(s)?;
    let rest_chars = rest.chars().count();
    if !rest_chars.is_multiple_of(4) {
        return Err(Malformed::new(
            telethon,
            format!(
                "{rest_chars} characters follow the version prefix '1'; expected 352 (IPv4) or \
                 368 (IPv6) characters of base64 with '=' padding"
            ),
        ));
    }
    let bytes = decode_base64(rest, 1, &DECODE_PADDED).map_err(|m| Malformed::new(telethon, m))?;
    parse_telethon(rest_chars, &bytes).map_err(|m| Malformed::new(telethon, m))
}

fn decode_gramjs_only(s: &str) -> Result<StringSession, Malformed> {
    let gramjs = Some(StringFormat::GramJs);
    let rest = strip_version_prefix(s)?;
    let rest_chars = rest.chars().count();
    if rest_chars == TELETHON_V4_CHARS {
        return Err(Malformed::new(
            gramjs,
            "352 characters follow the version prefix '1'; GramJS reads every such string as \
             Telethon IPv4, so it is not in GramJS's own format",
        ));
    }
    let bytes =
        decode_base64(rest, 1, &DECODE_ANY_PADDING).map_err(|m| Malformed::new(gramjs, m))?;
    parse_gramjs(&bytes).map_err(|m| Malformed::new(gramjs, m))
}

fn strip_version_prefix(s: &str) -> Result<&str, Malformed> {
    match s.strip_prefix(VERSION_PREFIX) {
        Some(rest) => Ok(rest),
        None => {
            let first = s.chars().next().unwrap_or(' ');
            Err(Malformed::new(
                None,
                format!("it starts with {first:?} where the version prefix '1' belongs"),
            ))
        }
    }
}

fn parse_telethon(rest_chars: usize, bytes: &[u8]) -> Result<StringSession, String> {
    let ip_len = match (rest_chars, bytes.len()) {
        (TELETHON_V4_CHARS, TELETHON_V4_BYTES) => 4,
        (TELETHON_V6_CHARS, TELETHON_V6_BYTES) => 16,
        (chars, len) => {
            return Err(format!(
                "{chars} characters after the version prefix hold {len} bytes; expected 352 \
                 characters holding 263 bytes (IPv4) or 368 holding 275 bytes (IPv6)"
            ));
        }
    };
    let mut reader = Reader(bytes);
    let missing = || "the bytes end early".to_owned();
    let dc_id = reader.u8().ok_or_else(missing)?;
    let ip = reader.take(ip_len).ok_or_else(missing)?;
    let ip = if let Ok(v4) = <[u8; 4]>::try_from(ip) {
        IpAddr::V4(Ipv4Addr::from(v4))
    } else if let Ok(v6) = <[u8; 16]>::try_from(ip) {
        IpAddr::V6(Ipv6Addr::from(v6))
    } else {
        return Err(missing());
    };
    let port = reader.u16().ok_or_else(missing)?;
    let auth_key = reader.key().ok_or_else(missing)?;
    Ok(StringSession {
        format: StringFormat::Telethon,
        dc_id: i32::from(dc_id),
        server_address: Some(python_ip_text(ip)),
        port: Some(port),
        auth_key,
        api_id: None,
        test_mode: None,
        user_id: None,
        is_bot: None,
        pyrogram_layout: None,
    })
}

fn parse_gramjs(bytes: &[u8]) -> Result<StringSession, String> {
    let mut reader = Reader(bytes);
    let too_short = || {
        format!(
            "it holds {} bytes; a GramJS string holds 1 + 2 + address + 2 + 256 bytes",
            bytes.len()
        )
    };
    let dc_id = reader.u8().ok_or_else(too_short)?;
    let address_len = reader.i16().ok_or_else(too_short)?;
    let address_len = match usize::try_from(address_len) {
        Ok(0) => return Err("it declares an empty server address".to_owned()),
        Ok(len) if len > GRAMJS_MAX_ADDRESS_LEN => {
            return Err(format!(
                "it declares a {len}-byte address; GramJS reads an address length above \
                 {GRAMJS_MAX_ADDRESS_LEN} as a Telethon IPv6 string"
            ));
        }
        Ok(len) if len <= GRAMJS_AMBIGUOUS_ADDRESS_LEN => {
            return Err(format!(
                "it declares a {len}-byte address, which makes a string of 352 characters; \
                 GramJS reads every such string as Telethon IPv4"
            ));
        }
        Ok(len) => len,
        Err(_) => return Err(format!("it declares an address length of {address_len}")),
    };
    let expected = 1 + 2 + address_len + 2 + AUTH_KEY_LEN;
    if bytes.len() != expected {
        return Err(format!(
            "it declares a {address_len}-byte address, so it should hold 1 + 2 + {address_len} \
             + 2 + 256 = {expected} bytes; it holds {}",
            bytes.len()
        ));
    }
    let address = reader.take(address_len).ok_or_else(too_short)?;
    let address = std::str::from_utf8(address)
        .map_err(|_| "its server address is not UTF-8 text".to_owned())?
        .to_owned();
    let port = reader.i16().ok_or_else(too_short)?;
    let port = match u16::try_from(port) {
        Ok(port) if port > 0 => port,
        _ => {
            return Err(format!(
                "it declares port {port}; GramJS ports are 1 to 32767"
            ));
        }
    };
    let auth_key = reader.key().ok_or_else(too_short)?;
    Ok(StringSession {
        format: StringFormat::GramJs,
        dc_id: i32::from(dc_id),
        server_address: Some(address),
        port: Some(port),
        auth_key,
        api_id: None,
        test_mode: None,
        user_id: None,
        is_bot: None,
        pyrogram_layout: None,
    })
}

fn decode_pyrogram(s: &str) -> Result<StringSession, Malformed> {
    let pyrogram = Some(StringFormat::Pyrogram);
    let chars = s.chars().count();
    let (body, layout) = match PyrogramLayout::from_string_len(chars) {
        Some(layout) => (s, layout),
        None if chars == PYROGRAM_PADDED_CURRENT_CHARS && s.ends_with("==") => {
            (&s[..s.len() - 2], PyrogramLayout::Current)
        }
        None => {
            let mut message = format!("it has {chars} characters; expected 351, 356 or 362");
            if s.contains('=') {
                message.push_str("; Pyrogram strings carry no '=' padding");
            }
            return Err(Malformed::new(pyrogram, message));
        }
    };
    let bytes =
        decode_base64(body, 0, &DECODE_UNPADDED).map_err(|m| Malformed::new(pyrogram, m))?;
    parse_pyrogram(layout, &bytes).map_err(|m| Malformed::new(pyrogram, m))
}

fn parse_pyrogram(layout: PyrogramLayout, bytes: &[u8]) -> Result<StringSession, String> {
    if bytes.len() != layout.byte_len() {
        return Err(format!(
            "it holds {} bytes; the {layout} layout {} holds {}",
            bytes.len(),
            layout.struct_format(),
            layout.byte_len()
        ));
    }
    let mut reader = Reader(bytes);
    let missing = || "the bytes end early".to_owned();
    let dc_id = reader.u8().ok_or_else(missing)?;
    let api_id = match layout {
        PyrogramLayout::Current => {
            let api_id = reader.u32().ok_or_else(missing)?;
            Some(i32::try_from(api_id).map_err(|_| {
                format!("its api_id {api_id} is above 2147483647; Telegram's api_id is a signed 32-bit integer")
            })?)
        }
        PyrogramLayout::Legacy32 | PyrogramLayout::Legacy64 => None,
    };
    let test_mode = reader.u8().ok_or_else(missing)? != 0;
    let auth_key = reader.key().ok_or_else(missing)?;
    let user_id = match layout {
        PyrogramLayout::Legacy32 => u64::from(reader.u32().ok_or_else(missing)?),
        PyrogramLayout::Current | PyrogramLayout::Legacy64 => reader.u64().ok_or_else(missing)?,
    };
    let user_id = i64::try_from(user_id).map_err(|_| {
        format!("its user_id {user_id} is above 2^63 - 1, which Pyrogram's storage cannot hold")
    })?;
    let is_bot = reader.u8().ok_or_else(missing)? != 0;
    Ok(StringSession {
        format: StringFormat::Pyrogram,
        dc_id: i32::from(dc_id),
        server_address: None,
        port: None,
        auth_key,
        api_id,
        test_mode: Some(test_mode),
        user_id: Some(user_id),
        is_bot: Some(is_bot),
        pyrogram_layout: Some(layout),
    })
}

/// The error for a string that neither starts with `'1'` nor has a Pyrogram length.
fn unrecognized(s: &str, chars: usize) -> Malformed {
    let mut it = s.chars();
    let first = it.next().unwrap_or(' ');
    let rest = it.as_str();
    let rest_chars = chars.saturating_sub(1);
    let plausible_prefixed = (340..=490).contains(&rest_chars) && rest_chars.is_multiple_of(4);
    if plausible_prefixed && (first.is_ascii_digit() || s.ends_with('=')) {
        let bytes = decode_base64(rest, 1, &DECODE_PADDED).ok();
        let looks_like = guess_prefixed(rest, bytes.as_deref().map(|b| &b[..]));
        return Malformed::new(
            Some(looks_like),
            format!("it starts with {first:?} where the version prefix '1' belongs"),
        );
    }
    if (340..=380).contains(&chars) {
        let mut message = format!("it has {chars} characters; expected 351, 356 or 362");
        if s.contains('=') {
            message.push_str("; Pyrogram strings carry no '=' padding");
        }
        return Malformed::new(Some(StringFormat::Pyrogram), message);
    }
    Malformed::new(
        None,
        format!("it has {chars} characters and resembles none of the formats; {EXPECTED_ANY}"),
    )
}

/// The likelier of Telethon and GramJS for a `'1'`-prefixed string that fits neither.
fn guess_prefixed(rest: &str, bytes: Option<&[u8]>) -> StringFormat {
    if let Some(hint) = raw_alphabet_hint(rest) {
        return hint;
    }
    let rest_chars = rest.chars().count();
    let small_address_len = bytes
        .and_then(declared_address_len)
        .is_some_and(|len| (1..=GRAMJS_MAX_ADDRESS_LEN as i16).contains(&len));
    if small_address_len && rest_chars != TELETHON_V4_CHARS {
        StringFormat::GramJs
    } else {
        StringFormat::Telethon
    }
}

/// The address length a GramJS string would declare in these bytes.
fn declared_address_len(bytes: &[u8]) -> Option<i16> {
    bytes
        .get(1..3)
        .and_then(|b| <[u8; 2]>::try_from(b).ok())
        .map(i16::from_be_bytes)
}

/// Whether the text has `+` or `/` and neither `-` nor `_`.
fn uses_standard_alphabet_only(rest: &str) -> bool {
    rest.contains(['+', '/']) && !rest.contains(['-', '_'])
}

/// Which alphabet the characters use: `-`/`_` Telethon, `+`/`/` GramJS.
fn raw_alphabet_hint(rest: &str) -> Option<StringFormat> {
    rest.chars().find_map(|c| match c {
        '-' | '_' => Some(StringFormat::Telethon),
        '+' | '/' => Some(StringFormat::GramJs),
        _ => None,
    })
}

/// The alphabet of the characters that encode sextets 62 and 63, as judged by
/// the canonical encoding of the same bytes (so that a non-canonical last
/// character cannot change the verdict on re-encoding).
fn alphabet_hint(rest: &str, bytes: &[u8]) -> Option<StringFormat> {
    let canonical = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(bytes));
    rest.chars()
        .zip(canonical.chars())
        .find_map(|(given, canonical)| match canonical {
            '+' | '/' => Some(if matches!(given, '-' | '_') {
                StringFormat::Telethon
            } else {
                StringFormat::GramJs
            }),
            _ => None,
        })
}

fn is_base64_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '-' | '_' | '=')
}

fn stray_chars(s: &str) -> usize {
    s.chars().filter(|c| !is_base64_char(*c)).count()
}

/// Decodes base64 in either alphabet (or a mix, as Python and Node accept).
///
/// `offset` is the position of `text` in the whole string, for messages.
fn decode_base64(
    text: &str,
    offset: usize,
    engine: &GeneralPurpose,
) -> Result<Zeroizing<Vec<u8>>, String> {
    let chars = text.chars().count();
    let mut normalized = Zeroizing::new(String::with_capacity(text.len()));
    let mut padding_at = None;
    for (i, c) in text.chars().enumerate() {
        let position = offset + i;
        let data = match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '+' | '/' => c,
            '-' => '+',
            '_' => '/',
            '=' => {
                if i + 2 < chars {
                    return Err(format!(
                        "'=' at position {position} is inside the data; padding only ends a \
                         string"
                    ));
                }
                padding_at.get_or_insert(position);
                '='
            }
            other => {
                return Err(format!(
                    "character {other:?} at position {position} is not base64"
                ));
            }
        };
        if data != '=' && padding_at.is_some() {
            return Err(format!(
                "character {c:?} at position {position} follows '=' padding"
            ));
        }
        normalized.push(data);
    }
    let decoded = engine.decode(normalized.as_bytes()).map_err(|e| match e {
        base64::DecodeError::InvalidByte(i, b) => {
            format!(
                "character {:?} at position {} is misplaced",
                char::from(b),
                offset + i
            )
        }
        base64::DecodeError::InvalidLength(_) => format!(
            "{chars} characters of base64 cannot be decoded: the data characters number one \
             more than a multiple of 4"
        ),
        base64::DecodeError::InvalidLastSymbol(i, b) => {
            format!(
                "character {:?} at position {} ends the data badly",
                char::from(b),
                offset + i
            )
        }
        base64::DecodeError::InvalidPadding => match padding_at {
            Some(at) => format!("the '=' padding from position {at} does not fit the data"),
            None => format!("the '=' padding is missing: {chars} characters of base64"),
        },
    })?;
    Ok(Zeroizing::new(decoded))
}

/// A bounds-checked big-endian reader.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.0.split_at_checked(n)?;
        self.0 = tail;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N).and_then(|b| b.try_into().ok())
    }

    fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }

    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    fn i16(&mut self) -> Option<i16> {
        self.array().map(i16::from_be_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_be_bytes)
    }

    /// 256 key bytes; `Some(None)` for an all-zero key.
    fn key(&mut self) -> Option<Option<AuthKey>> {
        let bytes = self.take(AUTH_KEY_LEN)?;
        let key = AuthKey::from_slice(bytes).ok()?;
        Some(if key.is_zero() { None } else { Some(key) })
    }
}

/// An IP address as Python's `ipaddress` `.compressed` writes it (what Telethon
/// reports as `server_address`): dotted IPv4; IPv6 in lowercase hextets with the
/// first longest run of two or more zero hextets replaced by `::`, and no dotted
/// tail even for IPv4-mapped addresses.
fn python_ip_text(ip: IpAddr) -> String {
    let v6 = match ip {
        IpAddr::V4(v4) => return v4.to_string(),
        IpAddr::V6(v6) => v6,
    };
    let hextets = v6.segments();
    let (mut best_start, mut best_len) = (0, 0);
    let (mut start, mut len) = (0, 0);
    for (i, h) in hextets.iter().enumerate() {
        if *h == 0 {
            if len == 0 {
                start = i;
            }
            len += 1;
            if len > best_len {
                (best_start, best_len) = (start, len);
            }
        } else {
            len = 0;
        }
    }
    let join = |part: &[u16]| {
        part.iter()
            .map(|h| format!("{h:x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    if best_len > 1 {
        format!(
            "{}::{}",
            join(&hextets[..best_start]),
            join(&hextets[best_start + best_len..])
        )
    } else {
        join(&hextets)
    }
}

// --------------------------------------------------------------------------- encoding

impl StringSession {
    /// Encodes the session in its own format (and, for Pyrogram, its own layout):
    /// a string decoded from a library's output encodes to that very string.
    ///
    /// Every field the format carries must be set and every other field must be
    /// `None`; otherwise [`Error::InvalidInput`] says which. Use
    /// [`StringSession::encode_as`] to convert between formats.
    pub fn encode(&self) -> Result<String> {
        match self.format {
            StringFormat::Telethon => self.encode_telethon(),
            StringFormat::Pyrogram => self.encode_pyrogram(),
            StringFormat::GramJs => self.encode_gramjs(),
        }
    }

    /// Converts to `format` and encodes; see [`StringSession::convert`].
    pub fn encode_as(&self, format: StringFormat) -> Result<String> {
        self.convert(format)?.encode()
    }

    /// The same session in another format.
    ///
    /// Fields the target cannot carry are dropped (a Pyrogram user id when
    /// going to Telethon, say). To Telethon or GramJS from Pyrogram, the address
    /// is Pyrogram's own for the DC and test mode ([`pyrogram_data_center`]). To
    /// Pyrogram, the current layout is used (a Pyrogram session keeps its own),
    /// and `api_id`, `test_mode`, `user_id` and `is_bot` must be set beforehand
    /// when the source lacks them, or encoding fails with
    /// [`Error::InvalidInput`].
    pub fn convert(&self, format: StringFormat) -> Result<StringSession> {
        if format == self.format {
            return Ok(self.clone());
        }
        match format {
            StringFormat::Telethon | StringFormat::GramJs => {
                let (address, port) = match (&self.server_address, self.port) {
                    (Some(address), Some(port)) => (address.clone(), port),
                    _ if self.format == StringFormat::Pyrogram => {
                        let test_mode = self.test_mode.ok_or_else(|| {
                            Error::invalid(
                                "the Pyrogram session has no test_mode, so its DC address is \
                                 unknown",
                            )
                        })?;
                        let addr = pyrogram_data_center(self.dc_id, test_mode, false, false)
                            .ok_or_else(|| {
                                Error::invalid(format!(
                                    "Pyrogram knows no address for DC {} in {}",
                                    self.dc_id,
                                    mode_name(test_mode)
                                ))
                            })?;
                        (addr.ip().to_string(), addr.port())
                    }
                    _ => {
                        return Err(Error::invalid(format!(
                            "a {format} string needs a server address and port; the session \
                             has none"
                        )));
                    }
                };
                Ok(StringSession {
                    format,
                    dc_id: self.dc_id,
                    server_address: Some(address),
                    port: Some(port),
                    auth_key: self.auth_key.clone(),
                    api_id: None,
                    test_mode: None,
                    user_id: None,
                    is_bot: None,
                    pyrogram_layout: None,
                })
            }
            StringFormat::Pyrogram => Ok(StringSession {
                format,
                dc_id: self.dc_id,
                server_address: None,
                port: None,
                auth_key: self.auth_key.clone(),
                api_id: self.api_id,
                test_mode: self.test_mode,
                user_id: self.user_id,
                is_bot: self.is_bot,
                pyrogram_layout: Some(PyrogramLayout::Current),
            }),
        }
    }

    /// A string session of `format` for a stored session: its home DC, that
    /// DC's key and address (IPv4 preferred), and for Pyrogram the `api_id`,
    /// test mode and self user.
    ///
    /// Fails with [`Error::InvalidInput`] when the session lacks what the format
    /// needs: a key for the home DC, an address (Telethon, GramJS), an `api_id`
    /// or a self user (Pyrogram).
    pub fn from_session_data(data: &SessionData, format: StringFormat) -> Result<StringSession> {
        let home = data.home_dc;
        let dc = data.dcs.iter().find(|dc| dc.id == home).ok_or_else(|| {
            Error::invalid(format!(
                "the session's home DC {home} is not among its DC options"
            ))
        })?;
        let auth_key = dc.auth_key.clone().ok_or_else(|| {
            Error::invalid(format!(
                "the session has no auth key for its home DC {home}; a string session without \
                 a key cannot log in"
            ))
        })?;
        let session = match format {
            StringFormat::Telethon | StringFormat::GramJs => {
                let addr = dc
                    .ipv4
                    .map(SocketAddr::V4)
                    .or(dc.ipv6.map(SocketAddr::V6))
                    .ok_or_else(|| {
                        Error::invalid(format!("the session's home DC {home} has no address"))
                    })?;
                StringSession {
                    format,
                    dc_id: home,
                    server_address: Some(addr.ip().to_string()),
                    port: Some(addr.port()),
                    auth_key: Some(auth_key),
                    api_id: None,
                    test_mode: None,
                    user_id: None,
                    is_bot: None,
                    pyrogram_layout: None,
                }
            }
            StringFormat::Pyrogram => {
                let api_id = data.api_id.ok_or_else(|| {
                    Error::invalid("a Pyrogram string carries the api_id; the session has none")
                })?;
                let user = data.self_user.ok_or_else(|| {
                    Error::invalid(
                        "a Pyrogram string carries the user id and bot flag; the session has no \
                         self user",
                    )
                })?;
                StringSession {
                    format,
                    dc_id: home,
                    server_address: None,
                    port: None,
                    auth_key: Some(auth_key),
                    api_id: Some(api_id),
                    test_mode: Some(data.test_mode),
                    user_id: Some(user.id),
                    is_bot: Some(user.is_bot),
                    pyrogram_layout: Some(PyrogramLayout::Current),
                }
            }
        };
        // Everything else the format checks (dc id range, port range, ...).
        session.encode()?;
        Ok(session)
    }

    /// The session as stored data: home DC, DC options with this key on the
    /// home DC, and for Pyrogram the `api_id`, test mode and self user.
    ///
    /// Telethon and GramJS sessions get the production DCs with the home DC's
    /// address replaced by the string's; Pyrogram sessions get Pyrogram's own
    /// table for the test mode ([`pyrogram_data_center`]). Fails with
    /// A Pyrogram user id of 0 means no self user. Fails with
    /// [`Error::InvalidInput`] when the DC id is not one (0, or above 32767),
    /// an address is not an IP address (a GramJS hostname), or Pyrogram knows
    /// no address for the DC.
    pub fn to_session_data(&self) -> Result<SessionData> {
        if session_core::session::check_dc_id(self.dc_id).is_err() {
            return Err(Error::invalid(format!(
                "the {} string session names DC {}, but DC ids are 1 to 32767",
                self.format, self.dc_id
            )));
        }
        let mut data = SessionData {
            home_dc: self.dc_id,
            ..SessionData::default()
        };
        match self.format {
            StringFormat::Telethon | StringFormat::GramJs => {
                let (address, port) = match (&self.server_address, self.port) {
                    (Some(address), Some(port)) => (address, port),
                    _ => {
                        return Err(Error::invalid(format!(
                            "the {} session has no server address and port",
                            self.format
                        )));
                    }
                };
                let ip: IpAddr = address.parse().map_err(|_| {
                    Error::invalid(format!(
                        "the {} session's server address {address:?} is not an IP address; \
                         stored sessions keep DC addresses as IPs",
                        self.format
                    ))
                })?;
                let (ipv4, ipv6) = match ip {
                    IpAddr::V4(v4) => (Some(SocketAddrV4::new(v4, port)), None),
                    IpAddr::V6(v6) => (None, Some(SocketAddrV6::new(v6, port, 0, 0))),
                };
                data.dcs = production_dcs();
                data.dcs.retain(|dc| dc.id != self.dc_id);
                data.dcs.push(DcOption {
                    id: self.dc_id,
                    ipv4,
                    ipv6,
                    auth_key: self.auth_key.clone(),
                });
            }
            StringFormat::Pyrogram => {
                let test_mode = self
                    .test_mode
                    .ok_or_else(|| Error::invalid("the Pyrogram session has no test_mode"))?;
                if pyrogram_data_center(self.dc_id, test_mode, false, false).is_none() {
                    return Err(Error::invalid(format!(
                        "Pyrogram knows no address for DC {} in {}",
                        self.dc_id,
                        mode_name(test_mode)
                    )));
                }
                data.dcs = pyrogram_dc_options(test_mode);
                for dc in &mut data.dcs {
                    if dc.id == self.dc_id {
                        dc.auth_key = self.auth_key.clone();
                    }
                }
                data.test_mode = test_mode;
                data.api_id = self.api_id;
                // A user id of 0 records nobody (no Telegram user has it).
                data.self_user = match (self.user_id, self.is_bot) {
                    (Some(id), Some(is_bot)) if id > 0 => Some(SelfUser { id, is_bot }),
                    _ => None,
                };
            }
        }
        data.canonicalize();
        Ok(data)
    }

    fn dc_byte(&self) -> Result<u8> {
        u8::try_from(self.dc_id).map_err(|_| {
            Error::invalid(format!(
                "a {} string stores the DC id in one byte (0 to 255); got {}",
                self.format, self.dc_id
            ))
        })
    }

    fn key_bytes(&self) -> [u8; AUTH_KEY_LEN] {
        self.auth_key
            .as_ref()
            .map_or([0; AUTH_KEY_LEN], |k| *k.expose())
    }

    /// Refuses fields the format cannot carry.
    fn refuse(&self, fields: &[(&str, bool)]) -> Result<()> {
        match fields.iter().find(|(_, set)| *set) {
            Some((name, _)) => Err(Error::invalid(format!(
                "a {} string cannot carry {name}; clear it or use encode_as to convert",
                self.format
            ))),
            None => Ok(()),
        }
    }

    fn address_and_port(&self) -> Result<(&str, u16)> {
        match (&self.server_address, self.port) {
            (Some(address), Some(port)) => Ok((address, port)),
            (None, _) => Err(Error::invalid(format!(
                "a {} string needs a server address",
                self.format
            ))),
            (_, None) => Err(Error::invalid(format!(
                "a {} string needs a port",
                self.format
            ))),
        }
    }

    fn encode_telethon(&self) -> Result<String> {
        self.refuse(&[
            ("api_id", self.api_id.is_some()),
            ("test_mode", self.test_mode.is_some()),
            ("user_id", self.user_id.is_some()),
            ("is_bot", self.is_bot.is_some()),
            ("a Pyrogram layout", self.pyrogram_layout.is_some()),
        ])?;
        let dc = self.dc_byte()?;
        let (address, port) = self.address_and_port()?;
        let ip: IpAddr = address.parse().map_err(|_| {
            Error::invalid(format!(
                "a Telethon string carries an IP address; {address:?} is not one"
            ))
        })?;
        let mut packed = Zeroizing::new(Vec::with_capacity(TELETHON_V6_BYTES));
        packed.push(dc);
        match ip {
            IpAddr::V4(v4) => packed.extend_from_slice(&v4.octets()),
            IpAddr::V6(v6) => packed.extend_from_slice(&v6.octets()),
        }
        packed.extend_from_slice(&port.to_be_bytes());
        packed.extend_from_slice(&Zeroizing::new(self.key_bytes())[..]);
        let mut out = String::from(VERSION_PREFIX);
        base64::engine::general_purpose::URL_SAFE.encode_string(&packed[..], &mut out);
        Ok(out)
    }

    fn encode_gramjs(&self) -> Result<String> {
        self.refuse(&[
            ("api_id", self.api_id.is_some()),
            ("test_mode", self.test_mode.is_some()),
            ("user_id", self.user_id.is_some()),
            ("is_bot", self.is_bot.is_some()),
            ("a Pyrogram layout", self.pyrogram_layout.is_some()),
        ])?;
        let dc = self.dc_byte()?;
        let (address, port) = self.address_and_port()?;
        let address = address.as_bytes();
        if address.is_empty() || address.len() > GRAMJS_MAX_ADDRESS_LEN {
            return Err(Error::invalid(format!(
                "a GramJS string carries an address of 1 to {GRAMJS_MAX_ADDRESS_LEN} bytes \
                 (GramJS reads longer ones as Telethon IPv6); got {} bytes",
                address.len()
            )));
        }
        if address.len() <= GRAMJS_AMBIGUOUS_ADDRESS_LEN {
            return Err(Error::invalid(format!(
                "a GramJS string with a {}-byte address is 352 characters long, which GramJS \
                 reads back as Telethon IPv4",
                address.len()
            )));
        }
        let port = i16::try_from(port).ok().filter(|p| *p > 0).ok_or_else(|| {
            Error::invalid(format!(
                "GramJS stores the port as a signed 16-bit integer (1 to 32767); got {port}"
            ))
        })?;
        let len = i16::try_from(address.len())
            .map_err(|_| Error::invalid("the address is too long for GramJS"))?;
        let mut packed = Zeroizing::new(Vec::with_capacity(5 + address.len() + AUTH_KEY_LEN));
        packed.push(dc);
        packed.extend_from_slice(&len.to_be_bytes());
        packed.extend_from_slice(address);
        packed.extend_from_slice(&port.to_be_bytes());
        packed.extend_from_slice(&Zeroizing::new(self.key_bytes())[..]);
        let mut out = String::from(VERSION_PREFIX);
        base64::engine::general_purpose::STANDARD.encode_string(&packed[..], &mut out);
        Ok(out)
    }

    fn encode_pyrogram(&self) -> Result<String> {
        let layout = self.pyrogram_layout.unwrap_or_default();
        self.refuse(&[
            ("a server address", self.server_address.is_some()),
            ("a port", self.port.is_some()),
            (
                "an api_id in the legacy layouts (use the current layout)",
                layout != PyrogramLayout::Current && self.api_id.is_some(),
            ),
        ])?;
        let dc = self.dc_byte()?;
        let required = |name: &str| {
            Error::invalid(format!(
                "a Pyrogram string ({layout} layout) needs {name}; it is not set"
            ))
        };
        let test_mode = self.test_mode.ok_or_else(|| required("test_mode"))?;
        let user_id = self.user_id.ok_or_else(|| required("user_id"))?;
        let is_bot = self.is_bot.ok_or_else(|| required("is_bot"))?;
        let mut packed = Zeroizing::new(Vec::with_capacity(layout.byte_len()));
        packed.push(dc);
        if layout == PyrogramLayout::Current {
            let api_id = self.api_id.ok_or_else(|| required("api_id"))?;
            let api_id = u32::try_from(api_id).map_err(|_| {
                Error::invalid(format!("Pyrogram stores api_id unsigned; got {api_id}"))
            })?;
            packed.extend_from_slice(&api_id.to_be_bytes());
        }
        packed.push(u8::from(test_mode));
        packed.extend_from_slice(&Zeroizing::new(self.key_bytes())[..]);
        let negative =
            || Error::invalid(format!("Pyrogram stores user_id unsigned; got {user_id}"));
        match layout {
            PyrogramLayout::Legacy32 => {
                let user_id = u32::try_from(user_id).map_err(|_| {
                    Error::invalid(format!(
                        "the legacy32 layout stores user_id in 32 bits (0 to 4294967295); got \
                         {user_id}"
                    ))
                })?;
                packed.extend_from_slice(&user_id.to_be_bytes());
            }
            PyrogramLayout::Current | PyrogramLayout::Legacy64 => {
                let user_id = u64::try_from(user_id).map_err(|_| negative())?;
                packed.extend_from_slice(&user_id.to_be_bytes());
            }
        }
        packed.push(u8::from(is_bot));
        Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&packed[..]))
    }
}

// --------------------------------------------------------------------------- Pyrogram DCs

const fn v6(s: [u16; 8]) -> Ipv6Addr {
    Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7])
}

/// Pyrogram's `DataCenter` table (pyrogram/session/internals/data_center.py, 2.0.106).
const PYROGRAM_TEST: [(i32, Ipv4Addr); 3] = [
    (1, Ipv4Addr::new(149, 154, 175, 10)),
    (2, Ipv4Addr::new(149, 154, 167, 40)),
    (3, Ipv4Addr::new(149, 154, 175, 117)),
];
const PYROGRAM_PROD: [(i32, Ipv4Addr); 6] = [
    (1, Ipv4Addr::new(149, 154, 175, 53)),
    (2, Ipv4Addr::new(149, 154, 167, 51)),
    (3, Ipv4Addr::new(149, 154, 175, 100)),
    (4, Ipv4Addr::new(149, 154, 167, 91)),
    (5, Ipv4Addr::new(91, 108, 56, 130)),
    (203, Ipv4Addr::new(91, 105, 192, 100)),
];
const PYROGRAM_PROD_MEDIA: [(i32, Ipv4Addr); 2] = [
    (2, Ipv4Addr::new(149, 154, 167, 151)),
    (4, Ipv4Addr::new(149, 154, 164, 250)),
];
const PYROGRAM_TEST_IPV6: [(i32, Ipv6Addr); 3] = [
    (1, v6([0x2001, 0xb28, 0xf23d, 0xf001, 0, 0, 0, 0xe])),
    (2, v6([0x2001, 0x67c, 0x4e8, 0xf002, 0, 0, 0, 0xe])),
    (3, v6([0x2001, 0xb28, 0xf23d, 0xf003, 0, 0, 0, 0xe])),
];
const PYROGRAM_PROD_IPV6: [(i32, Ipv6Addr); 6] = [
    (1, v6([0x2001, 0xb28, 0xf23d, 0xf001, 0, 0, 0, 0xa])),
    (2, v6([0x2001, 0x67c, 0x4e8, 0xf002, 0, 0, 0, 0xa])),
    (3, v6([0x2001, 0xb28, 0xf23d, 0xf003, 0, 0, 0, 0xa])),
    (4, v6([0x2001, 0x67c, 0x4e8, 0xf004, 0, 0, 0, 0xa])),
    (5, v6([0x2001, 0xb28, 0xf23f, 0xf005, 0, 0, 0, 0xa])),
    (203, v6([0x2a0a, 0xf280, 0x203, 0xa, 0x5000, 0, 0, 0x100])),
];
const PYROGRAM_PROD_IPV6_MEDIA: [(i32, Ipv6Addr); 2] = [
    (2, v6([0x2001, 0x67c, 0x4e8, 0xf002, 0, 0, 0, 0xb])),
    (4, v6([0x2001, 0x67c, 0x4e8, 0xf004, 0, 0, 0, 0xb])),
];

fn lookup<T: Copy>(table: &[(i32, T)], dc_id: i32) -> Option<T> {
    table
        .iter()
        .find(|(id, _)| *id == dc_id)
        .map(|(_, addr)| *addr)
}

/// Where Pyrogram connects for a DC, as its `DataCenter(dc_id, test_mode, ipv6,
/// media)` answers: port 80 in test mode, 443 in production; media addresses
/// only in production, falling back to the DC's own. `None` where Pyrogram
/// raises `KeyError`.
pub fn pyrogram_data_center(
    dc_id: i32,
    test_mode: bool,
    ipv6: bool,
    media: bool,
) -> Option<SocketAddr> {
    let port = if test_mode { 80 } else { 443 };
    let ip = match (test_mode, ipv6) {
        (true, false) => IpAddr::V4(lookup(&PYROGRAM_TEST, dc_id)?),
        (true, true) => IpAddr::V6(lookup(&PYROGRAM_TEST_IPV6, dc_id)?),
        (false, false) => {
            let prod = lookup(&PYROGRAM_PROD, dc_id)?;
            let media_ip = if media {
                lookup(&PYROGRAM_PROD_MEDIA, dc_id)
            } else {
                None
            };
            IpAddr::V4(media_ip.unwrap_or(prod))
        }
        (false, true) => {
            let prod = lookup(&PYROGRAM_PROD_IPV6, dc_id)?;
            let media_ip = if media {
                lookup(&PYROGRAM_PROD_IPV6_MEDIA, dc_id)
            } else {
                None
            };
            IpAddr::V6(media_ip.unwrap_or(prod))
        }
    };
    Some(SocketAddr::new(ip, port))
}

/// Every DC of Pyrogram's table for a mode, with IPv4 and IPv6 addresses.
fn pyrogram_dc_options(test_mode: bool) -> Vec<DcOption> {
    let ids: Vec<i32> = if test_mode {
        PYROGRAM_TEST.iter().map(|(id, _)| *id).collect()
    } else {
        PYROGRAM_PROD.iter().map(|(id, _)| *id).collect()
    };
    ids.into_iter()
        .map(|id| {
            let ipv4 = match pyrogram_data_center(id, test_mode, false, false) {
                Some(SocketAddr::V4(a)) => Some(a),
                _ => None,
            };
            let ipv6 = match pyrogram_data_center(id, test_mode, true, false) {
                Some(SocketAddr::V6(a)) => Some(a),
                _ => None,
            };
            DcOption::new(id, ipv4, ipv6)
        })
        .collect()
}

fn mode_name(test_mode: bool) -> &'static str {
    if test_mode { "test mode" } else { "production" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_lengths() {
        let lens: Vec<_> = PyrogramLayout::ALL
            .iter()
            .map(|l| (l.byte_len(), l.string_len()))
            .collect();
        assert_eq!(lens, [(271, 362), (263, 351), (267, 356)]);
    }

    #[test]
    fn python_compressed_ipv6() {
        let cases = [
            ("::", "::"),
            ("::1", "::1"),
            ("1::", "1::"),
            ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
            ("1:0:1:1:1:1:1:1", "1:0:1:1:1:1:1:1"),
            ("::ffff:1.2.3.4", "::ffff:102:304"),
            (
                "2001:067c:04e8:f002:0000:0000:0000:000b",
                "2001:67c:4e8:f002::b",
            ),
        ];
        for (input, expected) in cases {
            let ip: IpAddr = input.parse().expect("test address");
            assert_eq!(python_ip_text(ip), expected, "{input}");
        }
    }

    #[test]
    fn reader_never_overruns() {
        let mut r = Reader(&[1, 2, 3]);
        assert_eq!(r.u16(), Some(0x0102));
        assert_eq!(r.u16(), None);
        assert_eq!(r.u8(), Some(3));
        assert_eq!(r.u8(), None);
        assert!(r.key().is_none());
    }
}

#[cfg(test)]
mod unquote_tests {
    use super::unquote;

    #[test]
    fn one_pair_of_matching_quotes_is_dropped() {
        assert_eq!(unquote("  '1abc'  "), "1abc");
        assert_eq!(unquote("\"1abc\""), "1abc");
        assert_eq!(unquote("`1abc`"), "1abc");
        assert_eq!(unquote("'1abc\""), "'1abc\"");
        assert_eq!(unquote("'"), "'");
        assert_eq!(unquote("1abc"), "1abc");
    }
}
