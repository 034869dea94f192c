//! The data a session holds ([design §2](https://github.com/mtsession/mtsession/blob/main/docs/design.md#2-data-model-session-core)).

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use crate::auth_key::AuthKey;
use crate::error::{Error, Result};

/// The name of the session used when none is given.
pub const DEFAULT_SESSION: &str = "default";

/// The longest session name, in bytes of UTF-8.
pub const MAX_SESSION_NAME_LEN: usize = 255;

/// The home DC of a fresh session.
pub const DEFAULT_HOME_DC: i32 = 2;

/// Checks a session name: UTF-8 of 1..=255 bytes without NUL characters.
pub fn validate_session_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid("a session name must not be empty"));
    }
    if name.len() > MAX_SESSION_NAME_LEN {
        return Err(Error::invalid(format!(
            "a session name is at most {MAX_SESSION_NAME_LEN} bytes of UTF-8, got {} bytes",
            name.len()
        )));
    }
    if name.contains('\0') {
        return Err(Error::invalid(
            "a session name must not contain NUL characters",
        ));
    }
    Ok(())
}

/// Connection details of one data center, and the key used with it.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DcOption {
    /// DC id (1..=5 in production).
    pub id: i32,
    /// IPv4 address and port, if known.
    pub ipv4: Option<SocketAddrV4>,
    /// IPv6 address and port, if known.
    pub ipv6: Option<SocketAddrV6>,
    /// The authorization key for this DC, if one was generated.
    pub auth_key: Option<AuthKey>,
}

impl DcOption {
    /// A DC with addresses and no key.
    pub fn new(id: i32, ipv4: Option<SocketAddrV4>, ipv6: Option<SocketAddrV6>) -> Self {
        DcOption {
            id,
            ipv4,
            ipv6,
            auth_key: None,
        }
    }
}

/// Production data centers as a fresh session reports them.
pub fn production_dcs() -> Vec<DcOption> {
    const DCS: [(i32, [u8; 4], [u16; 8]); 5] = [
        (
            1,
            [149, 154, 175, 53],
            [0x2001, 0x0b28, 0xf23d, 0xf001, 0, 0, 0, 0xa],
        ),
        (
            2,
            [149, 154, 167, 51],
            [0x2001, 0x067c, 0x04e8, 0xf002, 0, 0, 0, 0xa],
        ),
        (
            3,
            [149, 154, 175, 100],
            [0x2001, 0x0b28, 0xf23d, 0xf003, 0, 0, 0, 0xa],
        ),
        (
            4,
            [149, 154, 167, 92],
            [0x2001, 0x067c, 0x04e8, 0xf004, 0, 0, 0, 0xa],
        ),
        (
            5,
            [91, 108, 56, 190],
            [0x2001, 0x0b28, 0xf23f, 0xf005, 0, 0, 0, 0xa],
        ),
    ];
    DCS.iter()
        .map(|(id, v4, v6)| {
            let [a, b, c, d, e, f, g, h] = *v6;
            DcOption::new(
                *id,
                Some(SocketAddrV4::new(Ipv4Addr::from(*v4), 443)),
                Some(SocketAddrV6::new(
                    Ipv6Addr::new(a, b, c, d, e, f, g, h),
                    443,
                    0,
                    0,
                )),
            )
        })
        .collect()
}

/// Who is logged in with this session.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SelfUser {
    /// The user's bare id.
    pub id: i64,
    /// Whether the account is a bot.
    pub is_bot: bool,
}

/// Session-level metadata.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SessionMeta {
    /// The application's `api_id`, if known.
    pub api_id: Option<i32>,
    /// Whether the session talks to Telegram's test servers.
    pub test_mode: bool,
    /// When the session was created, in milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// When session-level data (home DC, DC options, self user, metadata,
    /// takeout id) last changed, in milliseconds since the Unix epoch.
    pub updated_at_ms: i64,
}

/// How far the account has read the update stream.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct UpdateState {
    /// Common message box pts.
    pub pts: i32,
    /// Secret-chat qts.
    pub qts: i32,
    /// Date of the last update.
    pub date: i32,
    /// Sequence number.
    pub seq: i32,
    /// Per-channel pts, keyed by bare channel id.
    pub channels: BTreeMap<i64, i32>,
}

/// A write to [`UpdateState`]: the whole state, or one part of it.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpdateStateChange {
    /// Replace everything, including the channel table.
    All(UpdateState),
    /// Set pts, date and seq; keep qts and channels.
    Primary {
        /// New pts.
        pts: i32,
        /// New date.
        date: i32,
        /// New seq.
        seq: i32,
    },
    /// Set qts; keep everything else.
    Secondary {
        /// New qts.
        qts: i32,
    },
    /// Set one channel's pts; keep everything else.
    Channel {
        /// Bare channel id.
        id: i64,
        /// New pts.
        pts: i32,
    },
    /// Forget one channel's pts (e.g. after leaving it).
    RemoveChannel {
        /// Bare channel id.
        id: i64,
    },
}

impl UpdateState {
    /// Applies a partial write in place.
    pub fn apply(&mut self, change: &UpdateStateChange) {
        match change {
            UpdateStateChange::All(state) => *self = state.clone(),
            UpdateStateChange::Primary { pts, date, seq } => {
                self.pts = *pts;
                self.date = *date;
                self.seq = *seq;
            }
            UpdateStateChange::Secondary { qts } => self.qts = *qts,
            UpdateStateChange::Channel { id, pts } => {
                self.channels.insert(*id, *pts);
            }
            UpdateStateChange::RemoveChannel { id } => {
                self.channels.remove(id);
            }
        }
    }
}

/// The smallest marked id of a channel: `-(10^12 + bare id)`.
pub const CHANNEL_ID_OFFSET: i64 = 1_000_000_000_000;

/// A Bot-API "marked" peer id: users `+id`, basic chats `-id`, channels `-(10^12 + id)`.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "i64", into = "i64"))]
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId(i64);

/// The three id spaces of Telegram.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerIdKind {
    /// Users and bots.
    User,
    /// Basic group chats.
    Chat,
    /// Channels, megagroups and gigagroups.
    Channel,
}

impl PeerId {
    /// A user id (`bare > 0`).
    pub fn user(bare: i64) -> Result<Self> {
        if bare <= 0 {
            return Err(Error::invalid(format!("a user id is positive, got {bare}")));
        }
        Ok(PeerId(bare))
    }

    /// A basic chat id (`0 < bare < 10^12`).
    pub fn chat(bare: i64) -> Result<Self> {
        if bare <= 0 || bare >= CHANNEL_ID_OFFSET {
            return Err(Error::invalid(format!(
                "a basic chat id is between 1 and {}, got {bare}",
                CHANNEL_ID_OFFSET - 1
            )));
        }
        Ok(PeerId(-bare))
    }

    /// A channel id (`bare > 0`, marked as `-(10^12 + bare)`).
    pub fn channel(bare: i64) -> Result<Self> {
        if bare <= 0 || bare > i64::MAX - CHANNEL_ID_OFFSET {
            return Err(Error::invalid(format!(
                "a channel id is positive, got {bare}"
            )));
        }
        Ok(PeerId(-(CHANNEL_ID_OFFSET + bare)))
    }

    /// Interprets a marked id; `0` is rejected.
    pub fn from_marked(marked: i64) -> Result<Self> {
        if marked == 0 || marked == i64::MIN {
            return Err(Error::invalid(format!("{marked} is not a marked peer id")));
        }
        Ok(PeerId(marked))
    }

    /// The marked id.
    pub fn marked(self) -> i64 {
        self.0
    }

    /// Which id space the id is in.
    pub fn kind(self) -> PeerIdKind {
        if self.0 > 0 {
            PeerIdKind::User
        } else if self.0 > -CHANNEL_ID_OFFSET {
            PeerIdKind::Chat
        } else {
            PeerIdKind::Channel
        }
    }

    /// The bare id, as the API uses it.
    pub fn bare(self) -> i64 {
        match self.kind() {
            PeerIdKind::User => self.0,
            PeerIdKind::Chat => -self.0,
            PeerIdKind::Channel => -self.0 - CHANNEL_ID_OFFSET,
        }
    }
}

impl TryFrom<i64> for PeerId {
    type Error = Error;

    /// [`PeerId::from_marked`].
    fn try_from(marked: i64) -> Result<Self> {
        PeerId::from_marked(marked)
    }
}

impl From<PeerId> for i64 {
    fn from(id: PeerId) -> i64 {
        id.0
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", self.0)
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What a cached peer is.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerKind {
    /// A user.
    User,
    /// A bot account.
    Bot,
    /// The logged-in account itself.
    #[cfg_attr(feature = "serde", serde(rename = "self"))]
    SelfUser,
    /// A basic group chat.
    Chat,
    /// A broadcast channel.
    Broadcast,
    /// A supergroup.
    Megagroup,
    /// A gigagroup (broadcast group).
    Gigagroup,
    /// A community (Telegram's `community` channel constructor).
    Community,
    /// A channel's direct-messages group (a monoforum; kurigram's `direct`).
    Monoforum,
}

impl PeerKind {
    /// Every kind, in storage-code order.
    pub const ALL: [PeerKind; 9] = [
        PeerKind::User,
        PeerKind::Bot,
        PeerKind::SelfUser,
        PeerKind::Chat,
        PeerKind::Broadcast,
        PeerKind::Megagroup,
        PeerKind::Gigagroup,
        PeerKind::Community,
        PeerKind::Monoforum,
    ];

    /// The id space peers of this kind live in.
    pub fn id_kind(self) -> PeerIdKind {
        match self {
            PeerKind::User | PeerKind::Bot | PeerKind::SelfUser => PeerIdKind::User,
            PeerKind::Chat => PeerIdKind::Chat,
            PeerKind::Broadcast
            | PeerKind::Megagroup
            | PeerKind::Gigagroup
            | PeerKind::Community
            | PeerKind::Monoforum => PeerIdKind::Channel,
        }
    }

    /// A stable small integer for storage.
    pub fn code(self) -> i32 {
        match self {
            PeerKind::User => 1,
            PeerKind::Bot => 2,
            PeerKind::SelfUser => 3,
            PeerKind::Chat => 4,
            PeerKind::Broadcast => 5,
            PeerKind::Megagroup => 6,
            PeerKind::Gigagroup => 7,
            PeerKind::Community => 8,
            PeerKind::Monoforum => 9,
        }
    }

    /// The inverse of [`PeerKind::code`].
    pub fn from_code(code: i64) -> Option<Self> {
        PeerKind::ALL
            .into_iter()
            .find(|k| i64::from(k.code()) == code)
    }

    /// A stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerKind::User => "user",
            PeerKind::Bot => "bot",
            PeerKind::SelfUser => "self",
            PeerKind::Chat => "chat",
            PeerKind::Broadcast => "broadcast",
            PeerKind::Megagroup => "megagroup",
            PeerKind::Gigagroup => "gigagroup",
            PeerKind::Community => "community",
            PeerKind::Monoforum => "monoforum",
        }
    }

    /// The inverse of [`PeerKind::as_str`].
    pub fn parse(name: &str) -> Option<Self> {
        PeerKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// An access hash, and whether Telegram marked it `min` (usable only in context).
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AccessHash {
    /// The hash.
    pub value: i64,
    /// Whether the hash came from a `min` constructor.
    pub min: bool,
}

impl AccessHash {
    /// A full (non-min) hash.
    pub fn full(value: i64) -> Self {
        AccessHash { value, min: false }
    }

    /// A min hash.
    pub fn min(value: i64) -> Self {
        AccessHash { value, min: true }
    }
}

/// A cached peer. `None` fields mean "unknown": merging keeps the stored value.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Marked id.
    pub id: PeerId,
    /// What the peer is, if known.
    pub kind: Option<PeerKind>,
    /// Access hash, if known. Basic chats have none.
    pub access_hash: Option<AccessHash>,
    /// Usernames as given (looked up case-insensitively); `Some(vec![])` means "has none".
    pub usernames: Option<Vec<String>>,
    /// Phone number, digits only.
    pub phone: Option<String>,
    /// Display name.
    pub name: Option<String>,
    /// When the peer was last seen, in seconds since the Unix epoch.
    pub last_seen: Option<i64>,
}

/// The longest username or display name accepted, in bytes.
pub const MAX_PEER_TEXT_LEN: usize = 1024;

impl Peer {
    /// A peer with only an id: every other field unknown.
    pub fn new(id: PeerId) -> Self {
        Peer {
            id,
            kind: None,
            access_hash: None,
            usernames: None,
            phone: None,
            name: None,
            last_seen: None,
        }
    }

    /// Sets the kind.
    pub fn with_kind(mut self, kind: PeerKind) -> Self {
        self.kind = Some(kind);
        self
    }

    /// Sets a full access hash.
    pub fn with_hash(mut self, hash: i64) -> Self {
        self.access_hash = Some(AccessHash::full(hash));
        self
    }

    /// Sets a min access hash.
    pub fn with_min_hash(mut self, hash: i64) -> Self {
        self.access_hash = Some(AccessHash::min(hash));
        self
    }

    /// Sets one username.
    pub fn with_username(mut self, username: impl Into<String>) -> Self {
        self.usernames = Some(vec![username.into()]);
        self
    }

    /// Sets the phone.
    pub fn with_phone(mut self, phone: impl Into<String>) -> Self {
        self.phone = Some(phone.into());
        self
    }

    /// Sets the display name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Checks and normalizes the peer before it is stored: the kind matches the
    /// id space, basic chats carry no hash, usernames lose a leading `@` and
    /// duplicates, phones keep digits only.
    pub fn normalized(&self) -> Result<Peer> {
        if let Some(kind) = self.kind
            && kind.id_kind() != self.id.kind()
        {
            return Err(Error::invalid(format!(
                "peer {} is in the {:?} id space but its kind is {}",
                self.id,
                self.id.kind(),
                kind.as_str()
            )));
        }
        if self.id.kind() == PeerIdKind::Chat && self.access_hash.is_some() {
            return Err(Error::invalid(format!(
                "peer {} is a basic chat, which has no access hash",
                self.id
            )));
        }
        let usernames = match &self.usernames {
            None => None,
            Some(list) => Some(self.clean_usernames(list)?),
        };
        let phone = match &self.phone {
            // Already in the stored form (what normalize_phone would return).
            Some(p) if (1..=32).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()) => {
                Some(p.clone())
            }
            Some(p) => Some(normalize_phone(p)?),
            None => None,
        };
        if let Some(name) = &self.name
            && name.len() > MAX_PEER_TEXT_LEN
        {
            return Err(Error::invalid(format!(
                "display names are at most {MAX_PEER_TEXT_LEN} bytes, got {}",
                name.len()
            )));
        }
        Ok(Peer {
            id: self.id,
            kind: self.kind,
            access_hash: self.access_hash,
            usernames,
            phone,
            name: self.name.clone(),
            last_seen: self.last_seen,
        })
    }

    /// The usernames without a leading `@`, each lookup key once (the first
    /// spelling wins).
    fn clean_usernames(&self, list: &[String]) -> Result<Vec<String>> {
        let mut clean: Vec<String> = Vec::with_capacity(list.len());
        // Lookup keys seen so far (a single username needs none).
        let mut seen = std::collections::HashSet::new();
        for username in list {
            let trimmed = username.strip_prefix('@').unwrap_or(username);
            if trimmed.is_empty() {
                return Err(Error::invalid(format!(
                    "peer {} has an empty username",
                    self.id
                )));
            }
            if trimmed.len() > MAX_PEER_TEXT_LEN {
                return Err(Error::invalid(format!(
                    "usernames are at most {MAX_PEER_TEXT_LEN} bytes, got {}",
                    trimmed.len()
                )));
            }
            if list.len() == 1 || seen.insert(normalize_username(trimmed)) {
                clean.push(trimmed.to_owned());
            }
        }
        Ok(clean)
    }

    /// Merges `new` into `self` field by field: known values replace, unknown
    /// ones keep the stored value, and a `min` hash never replaces a full one.
    pub fn merge(&mut self, new: &Peer) {
        debug_assert_eq!(self.id, new.id);
        if new.kind.is_some() {
            self.kind = new.kind;
        }
        self.access_hash = merge_hash(self.access_hash, new.access_hash);
        if new.usernames.is_some() {
            self.usernames.clone_from(&new.usernames);
        }
        if new.phone.is_some() {
            self.phone.clone_from(&new.phone);
        }
        if new.name.is_some() {
            self.name.clone_from(&new.name);
        }
        if new.last_seen.is_some() {
            self.last_seen = new.last_seen;
        }
    }

    /// The usernames, lowercased for lookups.
    pub fn username_keys(&self) -> Vec<String> {
        self.usernames
            .iter()
            .flatten()
            .map(|u| normalize_username(u))
            .collect()
    }
}

/// The hash rule: a known hash replaces, except that a `min` one never replaces a full one.
pub fn merge_hash(old: Option<AccessHash>, new: Option<AccessHash>) -> Option<AccessHash> {
    match (old, new) {
        (old, None) => old,
        (Some(old), Some(new)) if new.min && !old.min => Some(old),
        (_, Some(new)) => Some(new),
    }
}

/// A username's lookup key: without a leading `@`, lowercased.
pub fn normalize_username(username: &str) -> String {
    username
        .strip_prefix('@')
        .unwrap_or(username)
        .to_lowercase()
}

/// A phone number's stored form: digits only. `+`, spaces, dashes, dots and
/// parentheses are dropped; anything else is rejected.
pub fn normalize_phone(phone: &str) -> Result<String> {
    let mut digits = String::with_capacity(phone.len());
    for c in phone.chars() {
        match c {
            '0'..='9' => digits.push(c),
            '+' | ' ' | '-' | '.' | '(' | ')' => {}
            other => {
                return Err(Error::invalid(format!(
                    "a phone number holds digits (optionally with + - . ( ) and spaces), found {other:?}"
                )));
            }
        }
    }
    if digits.is_empty() || digits.len() > 32 {
        return Err(Error::invalid(format!(
            "a phone number has 1 to 32 digits, got {}",
            digits.len()
        )));
    }
    Ok(digits)
}

/// Whether an uploaded file was sent as a photo or a document.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileKind {
    /// Sent as a document (Telethon type 0).
    Document,
    /// Sent as a photo (Telethon type 1).
    Photo,
}

impl FileKind {
    /// Telethon's code: 0 document, 1 photo.
    pub fn code(self) -> i32 {
        match self {
            FileKind::Document => 0,
            FileKind::Photo => 1,
        }
    }

    /// The inverse of [`FileKind::code`].
    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            0 => Some(FileKind::Document),
            1 => Some(FileKind::Photo),
            _ => None,
        }
    }
}

/// The key of the sent-file cache: what was uploaded.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SentFileKey {
    /// MD5 of the file's contents.
    pub md5: [u8; 16],
    /// Size in bytes.
    pub size: i64,
    /// Photo or document.
    pub kind: FileKind,
}

/// The value of the sent-file cache: the file as Telegram knows it.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SentFile {
    /// File id.
    pub id: i64,
    /// File access hash.
    pub access_hash: i64,
}

/// A whole session as one value, for export, import and copy.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionData {
    /// Home DC id.
    pub home_dc: i32,
    /// Every known DC, sorted by id.
    pub dcs: Vec<DcOption>,
    /// Who is logged in.
    pub self_user: Option<SelfUser>,
    /// `api_id`, if known.
    pub api_id: Option<i32>,
    /// Test servers or production.
    pub test_mode: bool,
    /// Takeout session id.
    pub takeout_id: Option<i64>,
    /// Update state.
    pub update_state: UpdateState,
    /// Cached peers, sorted by marked id.
    pub peers: Vec<Peer>,
    /// Sent-file cache, sorted by key.
    pub sent_files: Vec<(SentFileKey, SentFile)>,
}

impl Default for SessionData {
    fn default() -> Self {
        SessionData {
            home_dc: DEFAULT_HOME_DC,
            dcs: production_dcs(),
            self_user: None,
            api_id: None,
            test_mode: false,
            takeout_id: None,
            update_state: UpdateState::default(),
            peers: Vec::new(),
            sent_files: Vec::new(),
        }
    }
}

impl SessionData {
    /// Sorts every list into canonical order, so two exports compare equal.
    pub fn canonicalize(&mut self) {
        self.dcs.sort_by_key(|dc| dc.id);
        self.peers.sort_by_key(|p| p.id);
        self.sent_files.sort_by_key(|(k, _)| *k);
    }

    /// The home DC's auth key, if any.
    pub fn home_auth_key(&self) -> Option<&AuthKey> {
        self.dcs
            .iter()
            .find(|dc| dc.id == self.home_dc)
            .and_then(|dc| dc.auth_key.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marked_ids() {
        let user = PeerId::user(42).expect("valid");
        assert_eq!(
            (user.marked(), user.kind(), user.bare()),
            (42, PeerIdKind::User, 42)
        );
        let chat = PeerId::chat(42).expect("valid");
        assert_eq!(
            (chat.marked(), chat.kind(), chat.bare()),
            (-42, PeerIdKind::Chat, 42)
        );
        let channel = PeerId::channel(42).expect("valid");
        assert_eq!(channel.marked(), -1_000_000_000_042);
        assert_eq!((channel.kind(), channel.bare()), (PeerIdKind::Channel, 42));
        assert!(PeerId::from_marked(0).is_err());
        assert!(PeerId::user(0).is_err());
    }

    #[test]
    fn kind_codes_and_names_are_stable() {
        let table: Vec<(i32, &str)> = PeerKind::ALL
            .into_iter()
            .map(|k| (k.code(), k.as_str()))
            .collect();
        assert_eq!(
            table,
            [
                (1, "user"),
                (2, "bot"),
                (3, "self"),
                (4, "chat"),
                (5, "broadcast"),
                (6, "megagroup"),
                (7, "gigagroup"),
                (8, "community"),
                (9, "monoforum"),
            ]
        );
        for kind in PeerKind::ALL {
            assert_eq!(PeerKind::from_code(i64::from(kind.code())), Some(kind));
            assert_eq!(PeerKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(PeerKind::Monoforum.id_kind(), PeerIdKind::Channel);
        assert_eq!(PeerKind::from_code(10), None);
    }

    #[test]
    fn min_hash_never_replaces_full() {
        let full = Some(AccessHash::full(1));
        let min = Some(AccessHash::min(2));
        assert_eq!(merge_hash(full, min), full);
        assert_eq!(merge_hash(min, full), full);
        assert_eq!(merge_hash(None, min), min);
        assert_eq!(merge_hash(full, None), full);
    }

    #[test]
    fn phone_normalization() {
        assert_eq!(normalize_phone("+1 (555) 010-99").expect("ok"), "155501099");
        assert!(normalize_phone("12a").is_err());
        assert!(normalize_phone("+").is_err());
    }
}
