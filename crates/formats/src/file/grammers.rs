//! grammers' `SqliteSession` files (grammers-session 0.11, `PRAGMA user_version = 1`).
//!
//! grammers keeps five tables: `dc_home(dc_id)`, `dc_option(dc_id, ipv4,
//! ipv6, auth_key)` with both addresses as text (`149.154.167.41:443`,
//! `[2001:67c:4e8:f002::a]:443`), `peer_info(peer_id, hash, subtype)` keyed by
//! Bot-API dialog id, `update_state(pts, qts, date, seq)` with at most one row
//! and `channel_state(peer_id, pts)` keyed by bare channel id. `subtype` is a
//! bit set for users (1 the logged-in user, 2 a bot) and a code for channels
//! (4 megagroup, 8 broadcast, 12 gigagroup, 16 community).
//!
//! A DC without a row is one of grammers' statically known DCs 1 to 5
//! ([`grammers_known_dcs`]): grammers connects to their addresses, so reading
//! lists them, and writing leaves out a DC that is exactly a known one without
//! a key.

use std::collections::BTreeMap;
use std::net::{SocketAddrV4, SocketAddrV6};
use std::path::Path;

use rusqlite::params;
use rusqlite::types::Value;
use session_core::model::{DEFAULT_HOME_DC, production_dcs};
use session_core::{
    AuthKey, DcOption, Error, Peer, PeerId, PeerIdKind, PeerKind, Result, SelfUser, SessionData,
    UpdateState,
};

use super::sqlite_file::{self, ForeignDb, NewFile, int, int32};
use super::telethon::valid_marked;
use super::{ExportWarning, ForeignFormat, ForeignImport, Warnings, WriteOptions};

/// The `PRAGMA user_version` grammers-session 0.11 writes and reads.
pub const GRAMMERS_VERSION: i64 = 1;

/// grammers' table definitions, byte for byte as `SqliteSession` creates them
/// (SQLite keeps this text in `sqlite_master`).
const SCHEMA: [&str; 5] = [
    "CREATE TABLE dc_home (\n                dc_id INTEGER NOT NULL,\n                PRIMARY KEY(dc_id))",
    "CREATE TABLE dc_option (\n                dc_id INTEGER NOT NULL,\n                ipv4 TEXT NOT NULL,\n                ipv6 TEXT NOT NULL,\n                auth_key BLOB,\n                PRIMARY KEY (dc_id))",
    "CREATE TABLE peer_info (\n                peer_id INTEGER NOT NULL,\n                hash INTEGER,\n                subtype INTEGER,\n                PRIMARY KEY (peer_id))",
    "CREATE TABLE update_state (\n                pts INTEGER NOT NULL,\n                qts INTEGER NOT NULL,\n                date INTEGER NOT NULL,\n                seq INTEGER NOT NULL)",
    "CREATE TABLE channel_state (\n                peer_id INTEGER NOT NULL,\n                pts INTEGER NOT NULL,\n                PRIMARY KEY (peer_id))",
];

/// The tables of a grammers session file.
pub(crate) const TABLES: [&str; 5] = [
    "dc_home",
    "dc_option",
    "peer_info",
    "update_state",
    "channel_state",
];

const FORMAT: &str = "grammers";

/// `subtype` bits and codes.
const SELF_BIT: i64 = 1;
const BOT_BIT: i64 = 2;
const MEGAGROUP: i64 = 4;
const BROADCAST: i64 = 8;
const GIGAGROUP: i64 = 12;
const COMMUNITY: i64 = 16;

/// The DCs grammers-session 0.11 knows without asking (its `KNOWN_DC_OPTIONS`,
/// what `SessionData::default()` lists), sorted by id, without keys.
///
/// Two of them differ from the addresses mtsession (like Telethon) gives a
/// fresh session ([`production_dcs`]): DC 2 is `149.154.167.41` here and
/// `149.154.167.51` there, DC 5 `91.108.56.104` here and `91.108.56.190` there.
pub fn grammers_known_dcs() -> Vec<DcOption> {
    const DCS: [(i32, [u8; 4], [u16; 8]); 5] = [
        (
            1,
            [149, 154, 175, 53],
            [0x2001, 0xb28, 0xf23d, 0xf001, 0, 0, 0, 0xa],
        ),
        (
            2,
            [149, 154, 167, 41],
            [0x2001, 0x67c, 0x4e8, 0xf002, 0, 0, 0, 0xa],
        ),
        (
            3,
            [149, 154, 175, 100],
            [0x2001, 0xb28, 0xf23d, 0xf003, 0, 0, 0, 0xa],
        ),
        (
            4,
            [149, 154, 167, 92],
            [0x2001, 0x67c, 0x4e8, 0xf004, 0, 0, 0, 0xa],
        ),
        (
            5,
            [91, 108, 56, 104],
            [0x2001, 0xb28, 0xf23f, 0xf005, 0, 0, 0, 0xa],
        ),
    ];
    DCS.iter()
        .map(|(id, v4, v6)| {
            DcOption::new(
                *id,
                Some(SocketAddrV4::new((*v4).into(), 443)),
                Some(SocketAddrV6::new((*v6).into(), 443, 0, 0)),
            )
        })
        .collect()
}

fn known_dc(dc_id: i32) -> Option<DcOption> {
    grammers_known_dcs().into_iter().find(|dc| dc.id == dc_id)
}

/// A DC as grammers must see it: both addresses (grammers' `DcOption` has no
/// optional one) and the key, or `None` when grammers cannot reach it.
///
/// The rules, shared by [`write_grammers`] and the session-grammers adapter:
///
/// - A DC that is not stored is, outside test mode, grammers' known DC of
///   that id ([`grammers_known_dcs`]), as grammers' own sessions answer.
/// - A stored DC without a key whose addresses are exactly the default a
///   fresh mtsession session lists ([`production_dcs`]) was never set by
///   anyone: it is answered as grammers' known DC, so that a fresh store
///   answers what grammers' `SessionData::default()` does.
/// - A missing address is taken from the known DC of the same id (outside
///   test mode); otherwise a missing IPv6 address is the IPv4-mapped one (as
///   grammers itself fills it), and a missing IPv4 address is the one an
///   IPv4-mapped IPv6 address embeds. A DC left without an IPv4 address is `None`.
pub fn grammers_dc(dc_id: i32, stored: Option<&DcOption>, test_mode: bool) -> Option<DcOption> {
    let known = if test_mode { None } else { known_dc(dc_id) };
    let Some(dc) = stored else {
        return known;
    };
    let untouched_default = dc.auth_key.is_none()
        && production_dcs()
            .iter()
            .any(|d| d.id == dc.id && d.ipv4 == dc.ipv4 && d.ipv6 == dc.ipv6);
    if untouched_default && let Some(known) = known {
        return Some(known);
    }
    let ipv4 = dc
        .ipv4
        .or_else(|| known.as_ref().and_then(|k| k.ipv4))
        .or_else(|| {
            dc.ipv6.and_then(|v6| {
                v6.ip()
                    .to_ipv4_mapped()
                    .map(|ip| SocketAddrV4::new(ip, v6.port()))
            })
        })?;
    let ipv6 = dc
        .ipv6
        .or_else(|| known.as_ref().and_then(|k| k.ipv6))
        .unwrap_or_else(|| SocketAddrV6::new(ipv4.ip().to_ipv6_mapped(), ipv4.port(), 0, 0));
    Some(DcOption {
        id: dc.id,
        ipv4: Some(ipv4),
        ipv6: Some(ipv6),
        auth_key: dc.auth_key.clone(),
    })
}

/// Reads a grammers `SqliteSession` file (grammers-session 0.11, user_version
/// 1) without modifying it.
///
/// DCs 1 to 5 without a row are listed with grammers' known addresses
/// ([`grammers_known_dcs`]), because that is where grammers connects. The
/// logged-in user is the first user row (by id, as grammers looks it up) with
/// the self bit; grammers keeps no usernames, phones, names, sent files,
/// api_id or test mode, so those stay empty.
///
/// Errors as [`read_telethon`](super::read_telethon); a user_version above 1
/// gets [`UnsupportedSchemaVersion`](Error::UnsupportedSchemaVersion).
pub fn read_grammers(path: impl AsRef<Path>) -> Result<ForeignImport> {
    let db = ForeignDb::open(path.as_ref())?;
    match super::detect_open(&db)? {
        ForeignFormat::Grammers { .. } => read_open(&db),
        found => Err(db.not_a(
            "a grammers session (tables dc_home, dc_option, peer_info, update_state, channel_state)",
            &found,
        )),
    }
}

pub(crate) fn read_open(db: &ForeignDb) -> Result<ForeignImport> {
    let version = db.user_version()?;
    if version > GRAMMERS_VERSION {
        return Err(Error::UnsupportedSchemaVersion {
            what: format!("grammers session {}", db.what()),
            found: version,
            supported: GRAMMERS_VERSION,
        });
    }
    let mut w = Warnings::default();
    if version < GRAMMERS_VERSION {
        w.push(super::Warning {
            table: "user_version".to_owned(),
            rows: 0,
            message: format!(
                "the file has grammers' tables but user_version {version} instead of 1; it is read \
                 as version 1, but grammers itself would fail to reopen it"
            ),
        });
    }
    let tables = db.tables()?;
    let context = "this grammers session";
    db.require(&tables, "dc_home", &["dc_id"], context)?;
    db.require(
        &tables,
        "dc_option",
        &["dc_id", "ipv4", "ipv6", "auth_key"],
        context,
    )?;
    db.require(
        &tables,
        "peer_info",
        &["peer_id", "hash", "subtype"],
        context,
    )?;
    db.require(
        &tables,
        "update_state",
        &["pts", "qts", "date", "seq"],
        context,
    )?;
    db.require(&tables, "channel_state", &["peer_id", "pts"], context)?;

    let mut data = SessionData {
        home_dc: DEFAULT_HOME_DC,
        dcs: Vec::new(),
        self_user: None,
        api_id: None,
        test_mode: false,
        takeout_id: None,
        update_state: UpdateState::default(),
        peers: Vec::new(),
        sent_files: Vec::new(),
    };
    read_home(db, &mut data, &mut w)?;
    read_dcs(db, &mut data, &mut w)?;
    read_peers(db, &mut data, &mut w)?;
    read_update_state(db, &mut data, &mut w)?;
    super::report_unknown_tables(db, &TABLES, FORMAT, &mut w)?;
    data.canonicalize();
    Ok(ForeignImport {
        format: ForeignFormat::Grammers { version },
        data,
        warnings: w.into_vec(),
    })
}

fn read_home(db: &ForeignDb, data: &mut SessionData, w: &mut Warnings) -> Result<()> {
    const T: &str = "dc_home";
    // grammers reads `SELECT * FROM dc_home LIMIT 1`: the smallest dc_id.
    let rows = db.select(T, &["dc_id"], "dc_id")?;
    if let Some(row) = rows.first() {
        let dc_id = int(&row[0])
            .map_err(|e| db.corrupt(format!("the dc_home table holds {e}")))?
            .unwrap_or(i64::from(DEFAULT_HOME_DC));
        let dc_id = i32::try_from(dc_id)
            .ok()
            .filter(|id| session_core::session::check_dc_id(*id).is_ok())
            .ok_or_else(|| {
                db.corrupt(format!(
                    "the dc_home table's dc_id is {dc_id}, but DC ids are 1 to 32767"
                ))
            })?;
        data.home_dc = dc_id;
    }
    w.add(
        T,
        rows.len().saturating_sub(1) as u64,
        "extra home DC rows ignored (grammers reads the smallest dc_id)",
    );
    Ok(())
}

fn read_dcs(db: &ForeignDb, data: &mut SessionData, w: &mut Warnings) -> Result<()> {
    const T: &str = "dc_option";
    let rows = db.select(T, &["dc_id", "ipv4", "ipv6", "auth_key"], "dc_id")?;
    let mut dcs: BTreeMap<i32, DcOption> = BTreeMap::new();
    for row in rows {
        let dc_id = match int(&row[0]) {
            Ok(Some(id)) => i32::try_from(id)
                .ok()
                .filter(|id| session_core::session::check_dc_id(*id).is_ok()),
            _ => None,
        };
        let Some(dc_id) = dc_id else {
            w.one(T, "row skipped: its dc_id is not a DC id (1 to 32767)");
            continue;
        };
        let mut dc = DcOption::new(dc_id, None, None);
        match sqlite_file::text(&row[1]) {
            Ok(Some(text)) => match text.parse::<SocketAddrV4>() {
                Ok(addr) => dc.ipv4 = Some(addr),
                Err(_) => w.one(
                    T,
                    format!("ipv4 {text:?} is not an IPv4 address with a port; the DC is kept without it"),
                ),
            },
            Ok(None) => w.one(T, "ipv4 is NULL; the DC is kept without it"),
            Err(e) => w.one(T, format!("ipv4 not imported: it holds {e}")),
        }
        match sqlite_file::text(&row[2]) {
            Ok(Some(text)) => match text.parse::<SocketAddrV6>() {
                Ok(addr) => dc.ipv6 = Some(addr),
                Err(_) => w.one(
                    T,
                    format!("ipv6 {text:?} is not a bracketed IPv6 address with a port; the DC is kept without it"),
                ),
            },
            Ok(None) => w.one(T, "ipv6 is NULL; the DC is kept without it"),
            Err(e) => w.one(T, format!("ipv6 not imported: it holds {e}")),
        }
        match &row[3] {
            Value::Null => {}
            Value::Blob(key) => match AuthKey::from_slice(key) {
                Ok(key) => dc.auth_key = Some(key),
                Err(_) => w.one(
                    T,
                    format!(
                        "auth_key not imported: it is {} bytes long, expected 256 (grammers refuses to open such a file)",
                        key.len()
                    ),
                ),
            },
            other => w.one(
                T,
                format!(
                    "auth_key not imported: it holds {} instead of a blob",
                    sqlite_file::describe_value(other)
                ),
            ),
        }
        dcs.insert(dc_id, dc);
    }
    for known in grammers_known_dcs() {
        dcs.entry(known.id).or_insert(known);
    }
    data.dcs = dcs.into_values().collect();
    Ok(())
}

fn read_peers(db: &ForeignDb, data: &mut SessionData, w: &mut Warnings) -> Result<()> {
    const T: &str = "peer_info";
    // By peer_id, the rowid: the order in which grammers finds the self user.
    let rows = db.select(T, &["peer_id", "hash", "subtype"], "peer_id")?;
    let mut peers: Vec<Peer> = Vec::with_capacity(rows.len());
    let mut me: Option<SelfUser> = None;
    for row in rows {
        let marked = match int(&row[0]) {
            Ok(Some(id)) => id,
            _ => {
                w.one(T, "row skipped: its peer_id is not an integer");
                continue;
            }
        };
        let Some(id) = valid_marked(marked) else {
            w.one(T, format!("row skipped: {marked} is not a valid dialog id"));
            continue;
        };
        let hash = match int(&row[1]) {
            Ok(h) => h,
            Err(e) => {
                w.one(T, format!("hash not imported: it holds {e}"));
                None
            }
        };
        let subtype = match int(&row[2]) {
            Ok(s) => s,
            Err(e) => {
                w.one(T, format!("subtype not imported: it holds {e}"));
                None
            }
        };
        let mut peer = Peer::new(id);
        match id.kind() {
            PeerIdKind::User => {
                peer.access_hash = hash.map(session_core::AccessHash::full);
                // grammers: bot = subtype & 2, is_self = subtype & 1; NULL: both unknown.
                if let Some(s) = subtype {
                    if s & !(SELF_BIT | BOT_BIT) != 0 {
                        w.one(
                            T,
                            format!("user subtype {s} has bits grammers does not write; only the self (1) and bot (2) bits are read"),
                        );
                    }
                    let bot = s & BOT_BIT != 0;
                    let kind = if s & SELF_BIT != 0 {
                        if me.is_none() {
                            me = Some(SelfUser {
                                id: id.marked(),
                                is_bot: bot,
                            });
                            PeerKind::SelfUser
                        } else {
                            w.one(
                                T,
                                "a second user marked as the logged-in one is read as an ordinary user (grammers answers the first, by id)",
                            );
                            if bot { PeerKind::Bot } else { PeerKind::User }
                        }
                    } else if bot {
                        PeerKind::Bot
                    } else {
                        PeerKind::User
                    };
                    peer.kind = Some(kind);
                }
            }
            PeerIdKind::Chat => {
                peer.kind = Some(PeerKind::Chat);
                if hash.is_some_and(|h| h != 0) {
                    w.one(
                        T,
                        "non-zero hash of a basic chat ignored (basic chats have no access hash)",
                    );
                }
                if subtype.is_some() {
                    w.one(T, "subtype of a basic chat ignored (grammers writes none)");
                }
            }
            PeerIdKind::Channel => {
                peer.access_hash = hash.map(session_core::AccessHash::full);
                peer.kind = match subtype {
                    None => None,
                    Some(MEGAGROUP) => Some(PeerKind::Megagroup),
                    Some(BROADCAST) => Some(PeerKind::Broadcast),
                    Some(GIGAGROUP) => Some(PeerKind::Gigagroup),
                    // grammers 0.11 writes 16 for a community but reads it
                    // back as an unknown kind; it is what grammers meant.
                    Some(COMMUNITY) => Some(PeerKind::Community),
                    Some(s) => {
                        w.one(
                            T,
                            format!("channel subtype {s} is not one grammers writes; read as grammers reads it"),
                        );
                        if s & GIGAGROUP == GIGAGROUP {
                            Some(PeerKind::Gigagroup)
                        } else if s & BROADCAST != 0 {
                            Some(PeerKind::Broadcast)
                        } else if s & MEGAGROUP != 0 {
                            Some(PeerKind::Megagroup)
                        } else {
                            None
                        }
                    }
                };
            }
        }
        peers.push(peer);
    }
    data.self_user = me;
    data.peers = peers;
    Ok(())
}

fn read_update_state(db: &ForeignDb, data: &mut SessionData, w: &mut Warnings) -> Result<()> {
    const T: &str = "update_state";
    let rows = db.select(T, &["pts", "qts", "date", "seq"], "rowid")?;
    if let Some(row) = rows.first() {
        let values: Vec<std::result::Result<Option<i32>, String>> = row.iter().map(int32).collect();
        if let Some(Err(e)) = values.iter().find(|v| v.is_err()) {
            w.one(T, format!("update state not imported: {e}"));
        } else {
            let get = |i: usize| values[i].clone().ok().flatten().unwrap_or(0);
            data.update_state.pts = get(0);
            data.update_state.qts = get(1);
            data.update_state.date = get(2);
            data.update_state.seq = get(3);
        }
    }
    w.add(
        T,
        rows.len().saturating_sub(1) as u64,
        "extra update_state rows ignored (grammers reads the first)",
    );
    const C: &str = "channel_state";
    for row in db.select(C, &["peer_id", "pts"], "peer_id")? {
        let id = int(&row[0]).ok().flatten();
        let pts = int32(&row[1]);
        match (id, pts) {
            (Some(id), Ok(Some(pts)))
                if id > 0 && id <= i64::MAX - session_core::model::CHANNEL_ID_OFFSET =>
            {
                data.update_state.channels.insert(id, pts);
            }
            (Some(id), Ok(Some(_))) => {
                w.one(C, format!("row skipped: {id} is not a bare channel id"))
            }
            (_, Err(e)) => w.one(C, format!("row skipped: pts holds {e}")),
            _ => w.one(C, "row skipped: peer_id and pts must be integers"),
        }
    }
    Ok(())
}

/// One `peer_info` row.
struct PeerRow {
    id: i64,
    hash: Option<i64>,
    subtype: Option<i64>,
}

/// Writes `data` as a grammers `SqliteSession` file (user_version 1), with
/// grammers' own table definitions, which grammers-session 0.11 opens and
/// uses unchanged.
///
/// The file is created with mode 0600 and moved into place when complete; an
/// existing file is refused with [`AlreadyExists`](Error::AlreadyExists)
/// unless [`WriteOptions::overwrite`] is set.
///
/// Every DC grammers can reach is written with both addresses ([`grammers_dc`]
/// fills a missing one), except a known DC without a key, which grammers
/// already knows. The logged-in user becomes a `peer_info` row with the self
/// bit (and the bot bit), even when it has no peer of its own. What grammers
/// cannot hold — usernames, phones, names, last-seen times, `min` access
/// hashes, the monoforum kind, that a user is known not to be a bot (grammers
/// writes no subtype for such a user), sent files, api_id, test mode, the
/// takeout id — is returned as warnings.
pub fn write_grammers(
    path: impl AsRef<Path>,
    data: &SessionData,
    options: WriteOptions,
) -> Result<Vec<ExportWarning>> {
    let path = path.as_ref();
    let mut w = Warnings::default();
    session_core::session::check_dc_id(data.home_dc)?;
    if let Some(id) = data.update_state.channels.keys().find(|id| **id <= 0) {
        return Err(Error::invalid(format!(
            "update state holds channel id {id}, which is not positive"
        )));
    }

    // dc_option
    let mut dc_rows: Vec<DcOption> = Vec::new();
    for dc in &data.dcs {
        session_core::session::check_dc_id(dc.id)?;
        let Some(seen) = grammers_dc(dc.id, Some(dc), data.test_mode) else {
            w.one(
                "dc_option",
                format!(
                    "DC {} not written: it has no IPv4 address and is not one of grammers' known DCs",
                    dc.id
                ),
            );
            continue;
        };
        let known = if data.test_mode {
            None
        } else {
            known_dc(dc.id)
        };
        if seen.auth_key.is_none() && known.as_ref() == Some(&seen) {
            continue;
        }
        if dc.ipv4.is_none() {
            w.one(
                "dc_option",
                format!(
                    "DC {} has no IPv4 address; written with {}",
                    dc.id,
                    describe_fill(&seen, true)
                ),
            );
        }
        if dc.ipv6.is_none() {
            w.one(
                "dc_option",
                format!(
                    "DC {} has no IPv6 address; written with {}",
                    dc.id,
                    describe_fill(&seen, false)
                ),
            );
        }
        dc_rows.push(seen);
    }
    if !data.dcs.iter().any(|dc| dc.id == data.home_dc)
        && grammers_dc(data.home_dc, None, data.test_mode).is_none()
    {
        w.one(
            "dc_home",
            format!(
                "home DC {} has no address grammers knows; grammers cannot connect to it",
                data.home_dc
            ),
        );
    }

    // peer_info
    let mut peer_rows: Vec<PeerRow> = Vec::with_capacity(data.peers.len() + 1);
    let mut lost = LostFields::default();
    let me = data.self_user;
    for peer in &data.peers {
        let peer = match peer.normalized() {
            Ok(p) => p,
            Err(e) => {
                w.one("peer_info", format!("peer not written: {e}"));
                continue;
            }
        };
        lost.count(&peer);
        let hash = match (peer.id.kind(), peer.access_hash) {
            (PeerIdKind::Chat, _) => Some(0),
            (_, Some(h)) if h.min => {
                w.one(
                    "peer_info",
                    "min access hash not written (grammers stores only hashes it can use); the peer is written without one",
                );
                None
            }
            (_, h) => h.map(|h| h.value),
        };
        let subtype = match peer.id.kind() {
            PeerIdKind::User => {
                if me.is_some_and(|u| u.id == peer.id.marked()) {
                    None // written with the self user below
                } else {
                    match peer.kind {
                        Some(PeerKind::Bot) => Some(BOT_BIT),
                        Some(PeerKind::User) => {
                            w.one(
                                "peer_info",
                                "user kind not written (grammers' file cannot tell a user known not to be a bot from one it knows nothing about)",
                            );
                            None
                        }
                        Some(PeerKind::SelfUser) => {
                            w.one(
                                "peer_info",
                                "a user of kind self that is not the session's logged-in user is written as an ordinary user",
                            );
                            None
                        }
                        _ => None,
                    }
                }
            }
            PeerIdKind::Chat => None,
            PeerIdKind::Channel => match peer.kind {
                Some(PeerKind::Megagroup) => Some(MEGAGROUP),
                Some(PeerKind::Broadcast) => Some(BROADCAST),
                Some(PeerKind::Gigagroup) => Some(GIGAGROUP),
                Some(PeerKind::Community) => Some(COMMUNITY),
                Some(PeerKind::Monoforum) => {
                    w.one(
                        "peer_info",
                        "monoforum kind not written (grammers has no such channel kind); the channel is written with an unknown kind",
                    );
                    None
                }
                _ => None,
            },
        };
        peer_rows.push(PeerRow {
            id: peer.id.marked(),
            hash,
            subtype,
        });
    }
    if let Some(me) = me {
        let subtype = SELF_BIT | if me.is_bot { BOT_BIT } else { 0 };
        match peer_rows.iter_mut().find(|r| r.id == me.id) {
            Some(row) => row.subtype = Some(subtype),
            None => {
                let id = PeerId::user(me.id)?;
                peer_rows.push(PeerRow {
                    id: id.marked(),
                    hash: None,
                    subtype: Some(subtype),
                });
            }
        }
    }
    lost.report(&mut w);

    // What the format has no place for.
    w.add(
        "sent_files",
        data.sent_files.len() as u64,
        "sent-file cache not written (grammers' file has none)",
    );
    if data.api_id.is_some() {
        w.one(
            "session",
            "api_id not written (grammers' file has no place for it)",
        );
    }
    if data.test_mode {
        w.one(
            "session",
            "test mode not written (grammers' file has no place for it; the DC addresses are written as they are)",
        );
    }
    if data.takeout_id.is_some() {
        w.one(
            "session",
            "takeout id not written (grammers' file has no place for it)",
        );
    }

    let file = NewFile::create(path, options.overwrite)?;
    sqlite_file::write_all(&file, path, |tx| {
        for ddl in SCHEMA {
            tx.execute_batch(ddl)?;
        }
        tx.execute_batch(&format!("PRAGMA user_version = {GRAMMERS_VERSION}"))?;
        tx.execute("INSERT INTO dc_home VALUES (?)", params![data.home_dc])?;
        {
            let mut stmt = tx.prepare("INSERT OR REPLACE INTO dc_option VALUES (?, ?, ?, ?)")?;
            for dc in &dc_rows {
                stmt.execute(params![
                    dc.id,
                    dc.ipv4.map(|a| a.to_string()),
                    dc.ipv6.map(|a| a.to_string()),
                    dc.auth_key.as_ref().map(|k| k.expose().to_vec()),
                ])?;
            }
        }
        {
            let mut stmt = tx.prepare("INSERT OR REPLACE INTO peer_info VALUES (?, ?, ?)")?;
            for row in &peer_rows {
                stmt.execute(params![row.id, row.hash, row.subtype])?;
            }
        }
        let s = &data.update_state;
        if (s.pts, s.qts, s.date, s.seq) != (0, 0, 0, 0) {
            tx.execute(
                "INSERT INTO update_state VALUES (?, ?, ?, ?)",
                params![s.pts, s.qts, s.date, s.seq],
            )?;
        }
        {
            let mut stmt = tx.prepare("INSERT INTO channel_state VALUES (?, ?)")?;
            for (id, pts) in &s.channels {
                stmt.execute(params![id, pts])?;
            }
        }
        Ok(())
    })?;
    file.commit(options.overwrite)?;
    Ok(w.into_vec())
}

fn describe_fill(dc: &DcOption, ipv4: bool) -> String {
    let known = known_dc(dc.id);
    let from_known = known.as_ref().is_some_and(|k| {
        if ipv4 {
            k.ipv4 == dc.ipv4
        } else {
            k.ipv6 == dc.ipv6
        }
    });
    let addr = if ipv4 {
        dc.ipv4.map(|a| a.to_string())
    } else {
        dc.ipv6.map(|a| a.to_string())
    }
    .unwrap_or_default();
    if from_known {
        format!("grammers' known address {addr} (grammers needs both)")
    } else if ipv4 {
        format!("{addr}, the IPv4 address its IPv6 address embeds (grammers needs both)")
    } else {
        format!("{addr}, the IPv4-mapped address, as grammers itself fills it")
    }
}

/// Counts of peer fields grammers has no place for.
#[derive(Default)]
struct LostFields {
    usernames: u64,
    phones: u64,
    names: u64,
    last_seen: u64,
}

impl LostFields {
    fn count(&mut self, peer: &Peer) {
        self.usernames += u64::from(peer.usernames.as_ref().is_some_and(|u| !u.is_empty()));
        self.phones += u64::from(peer.phone.is_some());
        self.names += u64::from(peer.name.is_some());
        self.last_seen += u64::from(peer.last_seen.is_some());
    }

    fn report(&self, w: &mut Warnings) {
        const T: &str = "peer_info";
        w.add(
            T,
            self.usernames,
            "usernames not written (grammers keeps no usernames)",
        );
        w.add(
            T,
            self.phones,
            "phone not written (grammers keeps no phones)",
        );
        w.add(
            T,
            self.names,
            "display name not written (grammers keeps no names)",
        );
        w.add(
            T,
            self.last_seen,
            "last-seen time not written (grammers keeps none)",
        );
    }
}
