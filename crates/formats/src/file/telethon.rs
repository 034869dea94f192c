//! Telethon 1.x `.session` files (schema versions 1 to 8).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddrV4, SocketAddrV6};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::params;
use rusqlite::types::Value;
use session_core::model::{CHANNEL_ID_OFFSET, DEFAULT_HOME_DC, production_dcs};
use session_core::{
    AuthKey, DcOption, Error, FileKind, Peer, PeerId, PeerIdKind, PeerKind, Result, SelfUser,
    SentFile, SentFileKey, SessionData, UpdateState,
};

use super::sqlite_file::{self, ForeignDb, NewFile, int, int_or_real, int32};
use super::{
    ExportWarning, ForeignFormat, ForeignImport, Warnings, WriteOptions, peer_with_full_hash,
};

/// The schema version Telethon 1.x writes (since 1.4x; 7 before).
pub const TELETHON_VERSION: i64 = 8;

/// Telethon's table definitions of version 8, byte for byte as it creates them.
const SCHEMA: [&str; 5] = [
    "create table version (version integer primary key)",
    "create table sessions (
                    dc_id integer primary key,
                    server_address text,
                    port integer,
                    auth_key blob,
                    takeout_id integer,
                    tmp_auth_key blob
                )",
    "create table entities (
                    id integer primary key,
                    hash integer not null,
                    username text,
                    phone integer,
                    name text,
                    date integer
                )",
    "create table sent_files (
                    md5_digest blob,
                    file_size integer,
                    type integer,
                    id integer,
                    hash integer,
                    primary key(md5_digest, file_size, type)
                )",
    "create table update_state (
                    id integer primary key,
                    pts integer,
                    qts integer,
                    date integer,
                    seq integer
                )",
];

const FORMAT: &str = "Telethon v1";
const KNOWN_TABLES: [&str; 5] = [
    "version",
    "sessions",
    "entities",
    "sent_files",
    "update_state",
];

/// Reads a Telethon 1.x `.session` file (schema versions 1 to 8) without
/// modifying it.
///
/// Errors: [`NotFound`](Error::NotFound) for a missing file;
/// [`Corrupt`](Error::Corrupt) for a file that is not SQLite, is damaged or
/// truncated, or is not a Telethon v1 session (the message names what was
/// found); [`UnsupportedSchemaVersion`](Error::UnsupportedSchemaVersion) for
/// a version above 8. Every error names the file.
pub fn read_telethon(path: impl AsRef<Path>) -> Result<ForeignImport> {
    let db = ForeignDb::open(path.as_ref())?;
    match super::detect_open(&db)? {
        ForeignFormat::TelethonV1 { .. } => read_open(&db),
        found => Err(db.not_a(
            "a Telethon v1 session (tables version, sessions, entities)",
            &found,
        )),
    }
}

pub(crate) fn read_open(db: &ForeignDb) -> Result<ForeignImport> {
    let version = db.version("version", "version")?;
    if version > TELETHON_VERSION {
        return Err(Error::UnsupportedSchemaVersion {
            what: format!("Telethon session {}", db.what()),
            found: version,
            supported: TELETHON_VERSION,
        });
    }
    if version < 1 {
        return Err(db.corrupt(format!(
            "Telethon session version {version}; expected 1 to {TELETHON_VERSION}"
        )));
    }
    let tables = db.tables()?;
    let context = format!("this Telethon version-{version} session");
    let mut session_cols = vec!["dc_id", "server_address", "port", "auth_key"];
    if version >= 5 {
        session_cols.push("takeout_id");
    }
    if version >= 8 {
        session_cols.push("tmp_auth_key");
    }
    db.require(&tables, "sessions", &session_cols, &context)?;
    let mut entity_cols = vec!["id", "hash", "username", "phone", "name"];
    if version >= 7 {
        entity_cols.push("date");
    }
    db.require(&tables, "entities", &entity_cols, &context)?;
    if version >= 3 {
        db.require(
            &tables,
            "sent_files",
            &["md5_digest", "file_size", "type", "id", "hash"],
            &context,
        )?;
    }
    if version >= 4 {
        db.require(
            &tables,
            "update_state",
            &["id", "pts", "qts", "date", "seq"],
            &context,
        )?;
    }

    let mut w = Warnings::default();
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
    let version_rows = db.count("version")?;
    w.add(
        "version",
        version_rows.saturating_sub(1),
        "extra version rows ignored (Telethon reads the first)",
    );

    read_sessions(db, &mut data, &mut w)?;
    if version >= 6 {
        read_entities(db, &mut data, &mut w)?;
    } else {
        w.add(
            "entities",
            db.count("entities")?,
            format!(
                "not imported: Telethon deletes the entities of version-{version} files when it upgrades them, because their access hashes may be wrong"
            ),
        );
    }
    if tables.contains("sent_files") {
        let cols = db.columns("sent_files")?;
        if ["type", "id", "hash"]
            .iter()
            .all(|c| cols.iter().any(|p| p == c))
        {
            read_sent_files(db, &mut data, &mut w)?;
        } else {
            w.add(
                "sent_files",
                db.count("sent_files")?,
                "not imported: the sent-file cache of version 2 is an older format that Telethon drops on upgrade",
            );
        }
    }
    if tables.contains("update_state") {
        read_update_state(db, &mut data, &mut w)?;
    }
    super::report_unknown_tables(db, &KNOWN_TABLES, FORMAT, &mut w)?;
    data.canonicalize();
    Ok(ForeignImport {
        format: ForeignFormat::TelethonV1 { version },
        data,
        warnings: w.into_vec(),
    })
}

/// Parses Telethon's `server_address` (IPv4, IPv6, or IPv6 in brackets as
/// Telethon wrote it before 1.0) with `port` into the DC's addresses.
fn parse_address(dc: &mut DcOption, address: &str, port: u16) -> bool {
    let trimmed = address.trim().trim_start_matches('[').trim_end_matches(']');
    match trimmed.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => {
            dc.ipv4 = Some(SocketAddrV4::new(ip, port));
            true
        }
        Ok(IpAddr::V6(ip)) => {
            dc.ipv6 = Some(SocketAddrV6::new(ip, port, 0, 0));
            true
        }
        Err(_) => false,
    }
}

fn read_sessions(db: &ForeignDb, data: &mut SessionData, w: &mut Warnings) -> Result<()> {
    const T: &str = "sessions";
    let rows = db.select(
        T,
        &[
            "dc_id",
            "server_address",
            "port",
            "auth_key",
            "takeout_id",
            "tmp_auth_key",
        ],
        "rowid",
    )?;
    let mut first = true;
    for row in rows {
        let home = std::mem::replace(&mut first, false);
        // The first row is the session: a home DC id that is not one is
        // refused, as every store would refuse it; later rows are reported.
        let dc_id = match int(&row[0]) {
            Ok(Some(id)) => id,
            Ok(None) => 0,
            Err(e) if home => {
                return Err(db.corrupt(format!(
                    "the sessions table's dc_id holds {e}; expected a DC id (1 to 32767)"
                )));
            }
            Err(e) => {
                w.one(T, format!("row skipped: dc_id holds {e}"));
                continue;
            }
        };
        let Ok(dc_id) = i32::try_from(dc_id) else {
            if home {
                return Err(db.corrupt(format!(
                    "the sessions table's dc_id is {dc_id}, but DC ids are 1 to 32767"
                )));
            }
            w.one(T, format!("row skipped: dc_id {dc_id} is out of range"));
            continue;
        };
        let mut dc = DcOption::new(dc_id, None, None);
        let address = sqlite_file::text(&row[1]);
        let port = int(&row[2]);
        match (address, port) {
            (Ok(None), _) => {}
            (Ok(Some(a)), _) if a.is_empty() => {}
            (Ok(Some(a)), Ok(Some(p))) if (1..=65535).contains(&p) => {
                let port = u16::try_from(p).unwrap_or(443);
                if !parse_address(&mut dc, &a, port) {
                    w.one(T, format!("server address {a:?} is not an IP address; the DC is kept without an address"));
                }
            }
            (Ok(Some(a)), port) => {
                let shown = match port {
                    Ok(Some(p)) => p.to_string(),
                    Ok(None) => "NULL".to_owned(),
                    Err(e) => e,
                };
                w.one(T, format!("server address {a:?} has no valid port ({shown}); the DC is kept without an address"));
            }
            (Err(e), _) => w.one(T, format!("server_address not imported: it holds {e}")),
        }
        match sqlite_file::blob(&row[3]) {
            Ok(None) => {}
            Ok(Some(key)) if key.is_empty() => {}
            Ok(Some(key)) => match AuthKey::from_slice(&key) {
                Ok(key) => dc.auth_key = Some(key),
                Err(_) => w.one(
                    T,
                    format!(
                        "auth_key not imported: it is {} bytes long, expected 256",
                        key.len()
                    ),
                ),
            },
            Err(e) => w.one(T, format!("auth_key not imported: it holds {e}")),
        }
        match sqlite_file::blob(&row[5]) {
            Ok(None) => {}
            Ok(Some(key)) if key.is_empty() => {}
            Ok(Some(_)) => w.one(
                T,
                "the temporary (PFS) auth key is not kept: mtsession stores permanent keys only, and a client makes a new temporary key when it connects",
            ),
            Err(e) => w.one(T, format!("tmp_auth_key not imported: it holds {e}")),
        }
        let empty = dc.ipv4.is_none() && dc.ipv6.is_none() && dc.auth_key.is_none();
        if home {
            match int(&row[4]) {
                Ok(takeout) => data.takeout_id = takeout,
                Err(e) => w.one(T, format!("takeout_id not imported: it holds {e}")),
            }
            if dc_id == 0 {
                // A session that never connected: Telethon connects to its default DC.
                if !empty {
                    w.one(
                        T,
                        "the address and key of DC 0 are not imported (DC 0 does not exist)",
                    );
                }
            } else if session_core::session::check_dc_id(dc_id).is_err() {
                return Err(db.corrupt(format!(
                    "the sessions table's dc_id is {dc_id}, but DC ids are 1 to 32767"
                )));
            } else {
                data.home_dc = dc_id;
                if !empty {
                    data.dcs.push(dc);
                }
            }
        } else {
            if !matches!(int(&row[4]), Ok(None)) {
                w.one(T, "takeout_id of a row after the first is ignored (Telethon reads only the first row)");
            }
            if session_core::session::check_dc_id(dc_id).is_err()
                || empty
                || data.dcs.iter().any(|d| d.id == dc_id)
            {
                w.one(
                    T,
                    format!(
                        "extra row for DC {dc_id} not imported (Telethon reads only the first row)"
                    ),
                );
            } else {
                w.one(T, format!("extra row for DC {dc_id} imported as a non-home DC (Telethon reads only the first row)"));
                data.dcs.push(dc);
            }
        }
    }
    Ok(())
}

/// A peer read from a row, with what decides who keeps a shared username.
pub(crate) struct Candidate {
    /// The peer.
    pub(crate) peer: Peer,
    /// When it was last seen (0 when unknown).
    pub(crate) date: i64,
}

fn read_entities(db: &ForeignDb, data: &mut SessionData, w: &mut Warnings) -> Result<()> {
    const T: &str = "entities";
    let rows = db.select(
        T,
        &["id", "hash", "username", "phone", "name", "date"],
        "id",
    )?;
    let mut candidates: Vec<Candidate> = Vec::with_capacity(rows.len());
    for row in rows {
        let id = match int(&row[0]) {
            Ok(Some(id)) => id,
            Ok(None) => {
                w.one(T, "row skipped: its id is NULL");
                continue;
            }
            Err(e) => {
                w.one(T, format!("row skipped: its id holds {e}"));
                continue;
            }
        };
        let hash = match int(&row[1]) {
            Ok(h) => h,
            Err(e) => {
                w.one(T, format!("row skipped: its hash holds {e}"));
                continue;
            }
        };
        if id == 0 {
            match hash {
                Some(self_id) if self_id > 0 => {
                    data.self_user = Some(SelfUser {
                        id: self_id,
                        is_bot: false,
                    });
                    w.one(
                        T,
                        "Telethon records who is logged in but not whether the account is a bot; it is read as a user account, not a bot",
                    );
                }
                _ => w.one(
                    T,
                    "the self-user row (id 0) holds no valid user id; not imported",
                ),
            }
            continue;
        }
        let Some(peer_id) = valid_marked(id) else {
            w.one(
                T,
                format!("row skipped: {id} is not a valid marked peer id"),
            );
            continue;
        };
        let mut peer = Peer::new(peer_id);
        match peer_id.kind() {
            PeerIdKind::Chat => {
                peer.kind = Some(PeerKind::Chat);
                if hash.is_some_and(|h| h != 0) {
                    w.one(
                        T,
                        "non-zero hash of a basic chat ignored (basic chats have no access hash)",
                    );
                }
            }
            PeerIdKind::User | PeerIdKind::Channel => match hash {
                Some(h) => peer = peer.with_hash(h),
                None => w.one(
                    T,
                    "NULL hash of a user or channel: the peer is imported without a hash",
                ),
            },
        }
        match sqlite_file::text(&row[2]) {
            Ok(Some(u)) if !u.trim().is_empty() => peer.usernames = Some(vec![u]),
            Ok(_) => {}
            Err(e) => w.one(T, format!("username not imported: it holds {e}")),
        }
        match sqlite_file::phone(&row[3]) {
            Ok(p) => peer.phone = p,
            Err(e) => w.one(T, format!("phone not imported: {e}")),
        }
        match sqlite_file::text(&row[4]) {
            Ok(n) => peer.name = n.filter(|n| !n.is_empty()),
            Err(e) => w.one(T, format!("name not imported: it holds {e}")),
        }
        let date = match int_or_real(&row[5]) {
            Ok(d) => d,
            Err(e) => {
                w.one(T, format!("date not imported: it holds {e}"));
                None
            }
        };
        peer.last_seen = date;
        match peer.normalized() {
            Ok(peer) => candidates.push(Candidate {
                peer,
                date: date.unwrap_or(0),
            }),
            Err(e) => w.one(T, format!("row skipped: {e}")),
        }
    }
    if let Some(me) = data.self_user {
        for c in &mut candidates {
            if c.peer.id.marked() == me.id {
                c.peer.kind = Some(PeerKind::SelfUser);
            }
        }
    }
    resolve_conflicts(&mut candidates, T, w);
    data.peers = candidates.into_iter().map(|c| c.peer).collect();
    Ok(())
}

/// A marked id the data model accepts, in Telethon's id spaces.
pub(crate) fn valid_marked(id: i64) -> Option<PeerId> {
    let peer = PeerId::from_marked(id).ok()?;
    match peer.kind() {
        PeerIdKind::Channel if peer.bare() <= 0 => None,
        _ => Some(peer),
    }
}

/// When several peers claim one username or phone, the most recently seen
/// keeps it (ties: the later row, as Telethon's own username lookup does);
/// the others lose it, with a warning.
pub(crate) fn resolve_conflicts(candidates: &mut [Candidate], table: &str, w: &mut Warnings) {
    let mut by_username: HashMap<String, usize> = HashMap::new();
    let mut by_phone: HashMap<String, usize> = HashMap::new();
    // Rows in file order, then stable by date: later entries win.
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by_key(|&i| candidates[i].date);
    for &i in &order {
        for key in candidates[i].peer.username_keys() {
            if let Some(prev) = by_username.insert(key.clone(), i)
                && prev != i
                && let Some(names) = &mut candidates[prev].peer.usernames
            {
                names.retain(|n| session_core::model::normalize_username(n) != key);
                w.one(
                    table,
                    "a username listed for two peers was kept by the one seen most recently, as the library itself resolves it",
                );
            }
        }
        if let Some(phone) = candidates[i].peer.phone.clone()
            && let Some(prev) = by_phone.insert(phone, i)
            && prev != i
        {
            candidates[prev].peer.phone = None;
            w.one(
                table,
                "a phone number listed for two peers was kept by the one seen most recently, as the library itself resolves it",
            );
        }
    }
    for c in candidates.iter_mut() {
        if c.peer.usernames.as_ref().is_some_and(|u| u.is_empty()) {
            c.peer.usernames = None;
        }
    }
}

fn read_sent_files(db: &ForeignDb, data: &mut SessionData, w: &mut Warnings) -> Result<()> {
    const T: &str = "sent_files";
    let rows = db.select(
        T,
        &["md5_digest", "file_size", "type", "id", "hash"],
        "rowid",
    )?;
    let mut files = BTreeMap::new();
    for row in rows {
        let md5: [u8; 16] = match sqlite_file::blob(&row[0]) {
            Ok(Some(b)) => match <[u8; 16]>::try_from(b.as_slice()) {
                Ok(md5) => md5,
                Err(_) => {
                    w.one(
                        T,
                        format!("row skipped: md5_digest is {} bytes, expected 16", b.len()),
                    );
                    continue;
                }
            },
            Ok(None) => {
                w.one(T, "row skipped: md5_digest is NULL");
                continue;
            }
            Err(e) => {
                w.one(T, format!("row skipped: md5_digest holds {e}"));
                continue;
            }
        };
        let fields = (int(&row[1]), int(&row[2]), int(&row[3]), int(&row[4]));
        let (Ok(Some(size)), Ok(Some(kind)), Ok(Some(id)), Ok(Some(hash))) = fields else {
            w.one(
                T,
                "row skipped: file_size, type, id and hash must be integers",
            );
            continue;
        };
        let Some(kind) = FileKind::from_code(kind) else {
            w.one(
                T,
                format!("row skipped: type {kind} is neither 0 (document) nor 1 (photo)"),
            );
            continue;
        };
        files.insert(
            SentFileKey { md5, size, kind },
            SentFile {
                id,
                access_hash: hash,
            },
        );
    }
    data.sent_files = files.into_iter().collect();
    Ok(())
}

fn read_update_state(db: &ForeignDb, data: &mut SessionData, w: &mut Warnings) -> Result<()> {
    const T: &str = "update_state";
    let rows = db.select(T, &["id", "pts", "qts", "date", "seq"], "id")?;
    for row in rows {
        let id = match int(&row[0]) {
            Ok(Some(id)) => id,
            other => {
                let shown = match other {
                    Err(e) => e,
                    _ => "NULL".to_owned(),
                };
                w.one(T, format!("row skipped: its id holds {shown}"));
                continue;
            }
        };
        let values: Vec<std::result::Result<Option<i32>, String>> =
            row[1..].iter().map(int32).collect();
        if let Some(Err(e)) = values.iter().find(|v| v.is_err()) {
            w.one(T, format!("row {id} skipped: {e}"));
            continue;
        }
        let get = |i: usize| values[i].clone().ok().flatten();
        if id == 0 {
            data.update_state.pts = get(0).unwrap_or(0);
            data.update_state.qts = get(1).unwrap_or(0);
            data.update_state.date = get(2).unwrap_or(0);
            data.update_state.seq = get(3).unwrap_or(0);
        } else if id > 0 && id <= i64::MAX - CHANNEL_ID_OFFSET {
            let Some(pts) = get(0) else {
                w.one(T, format!("channel {id} skipped: its pts is NULL"));
                continue;
            };
            data.update_state.channels.insert(id, pts);
            if get(1).unwrap_or(0) != 0 || get(3).unwrap_or(0) != 0 {
                w.one(
                    T,
                    "qts and seq of a channel row not imported (a channel has only a pts)",
                );
            }
        } else {
            w.one(T, format!("row skipped: {id} is not a bare channel id"));
        }
    }
    Ok(())
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Writes `data` as a Telethon 1.x session file of version 8, the layout
/// Telethon 1.4x creates, which it opens and uses without a migration.
///
/// The file is created with mode 0600 and moved into place when complete. An
/// existing file is refused with [`AlreadyExists`](Error::AlreadyExists)
/// unless [`WriteOptions::overwrite`] is set.
///
/// Telethon keeps one DC, no peer kinds, one lowercase username per peer, and
/// no `api_id`, test mode or bot flag; what `data` holds beyond that is
/// returned as warnings. Peers without a full access hash (users and
/// channels with none, or only a `min` one) are not written: Telethon only
/// stores hashes it can use.
pub fn write_telethon(
    path: impl AsRef<Path>,
    data: &SessionData,
    options: WriteOptions,
) -> Result<Vec<ExportWarning>> {
    let path = path.as_ref();
    let mut w = Warnings::default();
    let now = now_secs();

    // sessions
    let mut home = data.dcs.iter().find(|dc| dc.id == data.home_dc).cloned();
    let mut address: Option<(String, u16)> = None;
    if let Some(dc) = &mut home {
        if dc.ipv4.is_none() && dc.ipv6.is_none() && dc.auth_key.is_some() {
            let known = if data.test_mode {
                None
            } else {
                production_dcs().into_iter().find(|p| p.id == dc.id)
            };
            match known {
                Some(p) => {
                    dc.ipv4 = p.ipv4;
                    w.one("sessions", format!("home DC {} has a key but no address; written with the production address of DC {}", dc.id, dc.id));
                }
                None => w.one(
                    "sessions",
                    format!("home DC {} has a key but no address; Telethon will connect to its default DC 2 and use this key there", dc.id),
                ),
            }
        }
        if let Some(v4) = dc.ipv4 {
            address = Some((v4.ip().to_string(), v4.port()));
            if dc.ipv6.is_some() {
                w.one("sessions", "IPv6 address of the home DC not written (Telethon keeps one address; the IPv4 one is written)");
            }
        } else if let Some(v6) = dc.ipv6 {
            address = Some((v6.ip().to_string(), v6.port()));
            w.one("sessions", "only an IPv6 address is known for the home DC; Telethon uses it only when the client is set to IPv6");
        }
    }
    let key: Vec<u8> = home
        .as_ref()
        .and_then(|dc| dc.auth_key.as_ref())
        .map(|k| k.expose().to_vec())
        .unwrap_or_default();
    let others: Vec<&DcOption> = data.dcs.iter().filter(|dc| dc.id != data.home_dc).collect();
    w.add(
        "sessions",
        others.len() as u64,
        "DC other than the home DC not written (Telethon keeps only the home DC)",
    );
    w.add(
        "sessions",
        others.iter().filter(|dc| dc.auth_key.is_some()).count() as u64,
        "auth key of a non-home DC not written (Telethon keeps only the home DC's key)",
    );
    if data.api_id.is_some() {
        w.one(
            "sessions",
            "api_id not written (Telethon's file has no place for it)",
        );
    }
    if data.test_mode {
        w.one(
            "sessions",
            "test mode not written (Telethon's file has no place for it)",
        );
    }
    if data.self_user.is_some_and(|u| u.is_bot) {
        w.one(
            "entities",
            "the self user's is_bot flag not written (Telethon records only the self user's id)",
        );
    }

    // entities
    struct Row {
        id: i64,
        hash: i64,
        username: Option<String>,
        phone: Option<Value>,
        name: Option<String>,
        date: Option<i64>,
    }
    let mut entities: Vec<Row> = Vec::with_capacity(data.peers.len());
    for peer in &data.peers {
        let Some((peer, hash)) = peer_with_full_hash(peer, "entities", "Telethon", &mut w) else {
            continue;
        };
        let derivable = match peer.kind {
            None | Some(PeerKind::Chat) => true,
            Some(PeerKind::SelfUser) => data.self_user.is_some_and(|u| u.id == peer.id.marked()),
            Some(_) => false,
        };
        if !derivable {
            w.one(
                "entities",
                "peer kind not written (Telethon infers what it needs from the id)",
            );
        }
        let mut username = None;
        if let Some(names) = &peer.usernames {
            if let Some(first) = names.first() {
                let lower = first.to_lowercase();
                if &lower != first {
                    w.one(
                        "entities",
                        "username written in lowercase (Telethon stores usernames lowercased)",
                    );
                }
                username = Some(lower);
            }
            w.add(
                "entities",
                names.len().saturating_sub(1) as u64,
                "username beyond a peer's first not written (Telethon keeps one username per peer)",
            );
        }
        let phone = match &peer.phone {
            None => None,
            Some(p) => match p.parse::<i64>() {
                Ok(n) if !p.starts_with('0') => Some(Value::Integer(n)),
                _ => {
                    w.one(
                        "entities",
                        "phone not written: Telethon stores phones as integers, which cannot hold this one exactly (leading zero or too long)",
                    );
                    None
                }
            },
        };
        entities.push(Row {
            id: peer.id.marked(),
            hash,
            username,
            phone,
            name: peer.name.clone(),
            date: peer.last_seen,
        });
    }
    if data.update_state.channels.keys().any(|id| *id <= 0) {
        return Err(Error::invalid(
            "update state holds a channel id that is not positive",
        ));
    }

    let file = NewFile::create(path, options.overwrite)?;
    sqlite_file::write_all(&file, path, |tx| {
        for ddl in SCHEMA {
            tx.execute_batch(ddl)?;
        }
        tx.execute("insert into version values (?)", params![TELETHON_VERSION])?;
        let (server, port) = match &address {
            Some((a, p)) => (Some(a.as_str()), Some(*p)),
            None => (None, None),
        };
        tx.execute(
            "insert or replace into sessions values (?,?,?,?,?,?)",
            params![
                data.home_dc,
                server,
                port,
                key,
                data.takeout_id,
                Vec::<u8>::new()
            ],
        )?;
        {
            let mut stmt = tx.prepare("insert or replace into entities values (?,?,?,?,?,?)")?;
            if let Some(me) = data.self_user {
                stmt.execute(params![
                    0i64,
                    me.id,
                    None::<String>,
                    None::<i64>,
                    None::<String>,
                    now
                ])?;
            }
            for row in &entities {
                stmt.execute(params![
                    row.id,
                    row.hash,
                    row.username,
                    row.phone,
                    row.name,
                    row.date
                ])?;
            }
        }
        {
            let mut stmt = tx.prepare("insert or replace into sent_files values (?,?,?,?,?)")?;
            for (k, v) in &data.sent_files {
                stmt.execute(params![
                    k.md5.to_vec(),
                    k.size,
                    k.kind.code(),
                    v.id,
                    v.access_hash
                ])?;
            }
        }
        {
            let s = &data.update_state;
            let mut stmt = tx.prepare("insert or replace into update_state values (?,?,?,?,?)")?;
            stmt.execute(params![0i64, s.pts, s.qts, s.date, s.seq])?;
            for (id, pts) in &s.channels {
                stmt.execute(params![id, pts, 0i64, s.date, 0i64])?;
            }
        }
        Ok(())
    })?;
    file.commit(options.overwrite)?;
    Ok(w.into_vec())
}
