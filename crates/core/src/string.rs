//! String sessions of Telethon, Pyrogram and GramJS (DESIGN §5).

use std::fmt;

use crate::auth_key::AuthKey;
use crate::error::{Error, Result};

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
    /// Lowercase name: `telethon`, `pyrogram`, `gramjs`.
    pub fn as_str(self) -> &'static str {
        match self {
            StringFormat::Telethon => "telethon",
            StringFormat::Pyrogram => "pyrogram",
            StringFormat::GramJs => "gramjs",
        }
    }
}

impl fmt::Display for StringFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            StringFormat::Telethon => "Telethon",
            StringFormat::Pyrogram => "Pyrogram",
            StringFormat::GramJs => "GramJS",
        };
        f.write_str(name)
    }
}

/// A decoded string session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StringSession {
    /// The format it came from.
    pub format: StringFormat,
    /// DC id.
    pub dc_id: i32,
    /// Server address (IP text), where the format carries one.
    pub server_address: Option<String>,
    /// Port, where the format carries one.
    pub port: Option<u16>,
    /// The key; `None` for Telethon's all-zero key.
    pub auth_key: Option<AuthKey>,
    /// `api_id` (Pyrogram current layout only).
    pub api_id: Option<i32>,
    /// Test mode (Pyrogram only).
    pub test_mode: Option<bool>,
    /// User id (Pyrogram only).
    pub user_id: Option<i64>,
    /// Bot flag (Pyrogram only).
    pub is_bot: Option<bool>,
}

/// Decodes a string, detecting the format.
pub fn decode(input: &str) -> Result<StringSession> {
    let _ = input;
    Err(Error::MalformedString { looks_like: None, message: "not implemented yet".into() })
}
