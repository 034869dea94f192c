//! Pyrogram `.session` files, as written by pyrogram 1.x/2.x and its
//! maintained forks pyrofork and kurigram.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::params;
use session_core::model::normalize_username;
use session_core::{
    AuthKey, DcOption, Error, Peer, PeerIdKind, PeerKind, Result, SelfUser, SessionData,
    UpdateState,
};

use super::sqlite_file::{self, ForeignDb, NewFile, int, int32};
use super::telethon::{Candidate, resolve_conflicts, valid_marked};
use super::{
    ExportWarning, ForeignFormat, ForeignImport, Warnings, WriteOptions, peer_with_full_hash,
};

/// The newest Pyrogram-family schema version read (kurigram's).
pub const PYROGRAM_MAX_VERSION: i64 = 7;

/// Which library's table layout a Pyrogram-family file follows, and which
/// one [`write_pyrogram`] produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PyrogramLayout {
    /// pyrogram 2.0.x, version 3: `sessions`, `peers` (one username column).
    /// pyrofork and kurigram open and upgrade it too.
    Pyrogram,
    /// pyrofork, version 4: adds `update_state` and a `usernames` table keyed
    /// by username.
    Pyrofork,
    /// kurigram, version 7: `sessions` with `server_address` and `port`,
    /// usernames only in `usernames(id, username)`, and `update_state`.
    Kurigram,
}

impl PyrogramLayout {
    /// The schema version this layout is written with.
    pub fn version(self) -> i64 {
        match self {
            PyrogramLayout::Pyrogram => 3,
            PyrogramLayout::Pyrofork => 4,
            PyrogramLayout::Kurigram => 7,
        }
    }
}

impl fmt::Display for PyrogramLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PyrogramLayout::Pyrogram => "Pyrogram",
            PyrogramLayout::Pyrofork => "pyrofork",
            PyrogramLayout::Kurigram => "kurigram",
        })
    }
}

/// Tells the layout from the tables and columns.
pub(crate) fn layout(db: &ForeignDb, tables: &BTreeSet<String>) -> Result<PyrogramLayout> {
    if tables.contains("usernames") {
        let cols = db.columns("usernames")?;
        if cols.iter().any(|c| c == "peer_id") {
            return Ok(PyrogramLayout::Pyrofork);
        }
        return Ok(PyrogramLayout::Kurigram);
    }
    if db
        .columns("sessions")?
        .iter()
        .any(|c| c == "server_address")
    {
        return Ok(PyrogramLayout::Kurigram);
    }
    if tables.contains("update_state") {
        return Ok(PyrogramLayout::Pyrofork);
    }
    Ok(PyrogramLayout::Pyrogram)
}

/// The address Pyrogram connects to for a DC (its `DataCenter` table).
fn pyrogram_address(dc: i32, test_mode: bool) -> Option<(Ipv4Addr, Ipv6Addr, u16)> {
    let (v4, v6, port): (Option<[u8; 4]>, Option<[u16; 8]>, u16) = if test_mode {
        let v4 = match dc {
            1 => Some([149, 154, 175, 10]),
            2 => Some([149, 154, 167, 40]),
            3 => Some([149, 154, 175, 117]),
            _ => None,
        };
        let v6 = match dc {
            1 => Some([0x2001, 0xb28, 0xf23d, 0xf001, 0, 0, 0, 0xe]),
            2 => Some([0x2001, 0x67c, 0x4e8, 0xf002, 0, 0, 0, 0xe]),
            3 => Some([0x2001, 0xb28, 0xf23d, 0xf003, 0, 0, 0, 0xe]),
            _ => None,
        };
        (v4, v6, 80)
    } else {
        let v4 = match dc {
            1 => Some([149, 154, 175, 53]),
            2 => Some([149, 154, 167, 51]),
            3 => Some([149, 154, 175, 100]),
            4 => Some([149, 154, 167, 91]),
            5 => Some([91, 108, 56, 130]),
            203 => Some([91, 105, 192, 100]),
            _ => None,
        };
        let v6 = match dc {
            1 => Some([0x2001, 0xb28, 0xf23d, 0xf001, 0, 0, 0, 0xa]),
            2 => Some([0x2001, 0x67c, 0x4e8, 0xf002, 0, 0, 0, 0xa]),
            3 => Some([0x2001, 0xb28, 0xf23d, 0xf003, 0, 0, 0, 0xa]),
            4 => Some([0x2001, 0x67c, 0x4e8, 0xf004, 0, 0, 0, 0xa]),
            5 => Some([0x2001, 0xb28, 0xf23f, 0xf005, 0, 0, 0, 0xa]),
            203 => Some([0x2a0a, 0xf280, 0x0203, 0x000a, 0x5000, 0, 0, 0x0100]),
            _ => None,
        };
        (v4, v6, 443)
    };
    match (v4, v6) {
        (Some(v4), Some([a, b, c, d, e, f, g, h])) => Some((
            Ipv4Addr::from(v4),
            Ipv6Addr::new(a, b, c, d, e, f, g, h),
            port,
        )),
        _ => None,
    }
}

const KNOWN_TABLES: [&str; 5] = ["version", "sessions", "peers", "usernames", "update_state"];

/// Reads a Pyrogram-family `.session` file (pyrogram 1.x/2.x, pyrofork,
/// kurigram; versions 1 to 7) without modifying it.
///
/// Errors as [`read_telethon`](super::read_telethon); versions above 7 get
/// [`UnsupportedSchemaVersion`](Error::UnsupportedSchemaVersion).
pub fn read_pyrogram(path: impl AsRef<Path>) -> Result<ForeignImport> {
    let db = ForeignDb::open(path.as_ref())?;
    match super::detect_open(&db)? {
        ForeignFormat::Pyrogram { .. } => read_open(&db),
        found => Err(db.not_a(
            "a Pyrogram session (tables version(number), sessions, peers)",
            &found,
        )),
    }
}

fn kind_of(peer_type: &str) -> Option<(PeerKind, bool)> {
    // (kind, exact): `exact` is false when the type carries more than the kind.
    match peer_type {
        "user" => Some((PeerKind::User, true)),
        "bot" => Some((PeerKind::Bot, true)),
        "group" => Some((PeerKind::Chat, true)),
        "channel" => Some((PeerKind::Broadcast, true)),
        "supergroup" => Some((PeerKind::Megagroup, true)),
        "forum" => Some((PeerKind::Megagroup, false)),
        // kurigram: a `community`, and a channel's direct-messages group (`monoforum`).
        "community" => Some((PeerKind::Community, true)),
        "direct" => Some((PeerKind::Monoforum, true)),
        _ => None,
    }
}

pub(crate) fn read_open(db: &ForeignDb) -> Result<ForeignImport> {
    let version = db.version("version", "number")?;
    if version > PYROGRAM_MAX_VERSION {
        return Err(Error::UnsupportedSchemaVersion {
            what: format!("Pyrogram session {}", db.what()),
            found: version,
            supported: PYROGRAM_MAX_VERSION,
        });
    }
    if version < 1 {
        return Err(db.corrupt(format!(
            "Pyrogram session version {version}; expected 1 to {PYROGRAM_MAX_VERSION}"
        )));
    }
    let tables = db.tables()?;
    let layout = layout(db, &tables)?;
    let context = format!("this Pyrogram version-{version} session");
    db.require(
        &tables,
        "sessions",
        &[
            "dc_id",
            "test_mode",
            "auth_key",
            "date",
            "user_id",
            "is_bot",
        ],
        &context,
    )?;
    db.require(&tables, "peers", &["id", "access_hash", "type"], &context)?;

    let mut w = Warnings::default();
    let mut data = SessionData {
        home_dc: session_core::model::DEFAULT_HOME_DC,
        dcs: Vec::new(),
        self_user: None,
        api_id: None,
        test_mode: false,
        takeout_id: None,
        update_state: UpdateState::default(),
        peers: Vec::new(),
        sent_files: Vec::new(),
    };
    read_sessions(db, &mut data, &mut w)?;
    if version >= 2 {
        read_peers(db, &tables, &mut data, &mut w)?;
    } else {
        w.add(
            "peers",
            db.count("peers")?,
            "not imported: Pyrogram deletes the peers of version-1 files when it upgrades them, because their access hashes may be wrong",
        );
        if tables.contains("usernames") {
            w.add(
                "usernames",
                db.count("usernames")?,
                "not imported with the version-1 peers",
            );
        }
    }
    if tables.contains("update_state") {
        read_update_state(db, &mut data, &mut w)?;
    }
    super::report_unknown_tables(db, &KNOWN_TABLES, "Pyrogram", &mut w)?;
    data.canonicalize();
    Ok(ForeignImport {
        format: ForeignFormat::Pyrogram { version, layout },
        data,
        warnings: w.into_vec(),
    })
}

fn read_sessions(db: &ForeignDb, data: &mut SessionData, w: &mut Warnings) -> Result<()> {
    const T: &str = "sessions";
    let rows = db.select(
        T,
        &[
            "dc_id",
            "api_id",
            "test_mode",
            "auth_key",
            "date",
            "user_id",
            "is_bot",
            "server_address",
            "port",
        ],
        "rowid",
    )?;
    w.add(
        T,
        rows.len().saturating_sub(1) as u64,
        "extra rows not imported (Pyrogram reads only the first)",
    );
    let Some(row) = rows.first() else {
        return Err(db.corrupt("the sessions table is empty; Pyrogram always writes one row"));
    };
    let dc_id = match int(&row[0]) {
        Ok(Some(id)) if (1..=i64::from(i16::MAX)).contains(&id) => i32::try_from(id).unwrap_or(2),
        Ok(Some(id)) => {
            return Err(db.corrupt(format!(
                "the sessions table's dc_id is {id}, but DC ids are 1 to 32767"
            )));
        }
        _ => return Err(db.corrupt("the sessions table's dc_id does not hold a DC id")),
    };
    data.home_dc = dc_id;
    match int(&row[1]) {
        Ok(v) => data.api_id = v.and_then(|v| i32::try_from(v).ok()),
        Err(e) => w.one(T, format!("api_id not imported: it holds {e}")),
    }
    if let Ok(Some(v)) = int(&row[1])
        && i32::try_from(v).is_err()
    {
        w.one(
            T,
            format!("api_id {v} not imported: it does not fit in 32 bits"),
        );
    }
    match int(&row[2]) {
        Ok(v) => data.test_mode = v.unwrap_or(0) != 0,
        Err(e) => w.one(T, format!("test_mode not imported: it holds {e}")),
    }
    let mut dc = DcOption::new(dc_id, None, None);
    match sqlite_file::blob(&row[3]) {
        Ok(Some(key)) if !key.is_empty() => match AuthKey::from_slice(&key) {
            Ok(key) => dc.auth_key = Some(key),
            Err(_) => w.one(
                T,
                format!(
                    "auth_key not imported: it is {} bytes long, expected 256",
                    key.len()
                ),
            ),
        },
        Ok(_) => {}
        Err(e) => w.one(T, format!("auth_key not imported: it holds {e}")),
    }
    if !matches!(int(&row[4]), Ok(None) | Ok(Some(0))) {
        w.one(T, "date (when Pyrogram last saved the file) not imported");
    }
    match (int(&row[5]), int(&row[6])) {
        (Ok(Some(id)), bot) if id > 0 => {
            let is_bot = match bot {
                Ok(Some(b)) => b != 0,
                _ => {
                    w.one(T, "the file does not record whether the logged-in account is a bot; it is read as a user account, not a bot");
                    false
                }
            };
            data.self_user = Some(SelfUser { id, is_bot });
        }
        (Ok(None), _) => {}
        _ => w.one(
            T,
            "user_id does not hold a user id; the self user is not imported",
        ),
    }
    // kurigram stores the address; the others derive it from the DC id as
    // Pyrogram's `DataCenter` does.
    let stored = match (sqlite_file::text(&row[7]), int(&row[8])) {
        (Ok(Some(addr)), Ok(Some(port))) if !addr.is_empty() => {
            match (addr.parse::<IpAddr>(), u16::try_from(port)) {
                (Ok(IpAddr::V4(ip)), Ok(port)) => {
                    dc.ipv4 = Some(SocketAddrV4::new(ip, port));
                    true
                }
                (Ok(IpAddr::V6(ip)), Ok(port)) => {
                    dc.ipv6 = Some(SocketAddrV6::new(ip, port, 0, 0));
                    true
                }
                _ => {
                    w.one(T, format!("server address {addr:?} with port {port} is not an IP address and port; not imported"));
                    true
                }
            }
        }
        _ => false,
    };
    if !stored && let Some((v4, v6, port)) = pyrogram_address(dc_id, data.test_mode) {
        dc.ipv4 = Some(SocketAddrV4::new(v4, port));
        dc.ipv6 = Some(SocketAddrV6::new(v6, port, 0, 0));
    }
    if dc.ipv4.is_some() || dc.ipv6.is_some() || dc.auth_key.is_some() {
        data.dcs.push(dc);
    }
    Ok(())
}

fn read_peers(
    db: &ForeignDb,
    tables: &BTreeSet<String>,
    data: &mut SessionData,
    w: &mut Warnings,
) -> Result<()> {
    const T: &str = "peers";
    let rows = db.select(
        T,
        &[
            "id",
            "access_hash",
            "type",
            "username",
            "phone_number",
            "last_update_on",
        ],
        "id",
    )?;
    let mut candidates: Vec<Candidate> = Vec::with_capacity(rows.len());
    let mut index: HashMap<i64, usize> = HashMap::new();
    for row in rows {
        let id = match int(&row[0]) {
            Ok(Some(id)) => id,
            _ => {
                w.one(T, "row skipped: its id is not an integer");
                continue;
            }
        };
        let Some(peer_id) = valid_marked(id) else {
            w.one(
                T,
                format!("row skipped: {id} is not a valid marked peer id"),
            );
            continue;
        };
        let mut peer = Peer::new(peer_id);
        let peer_type = sqlite_file::text(&row[2])
            .ok()
            .flatten()
            .unwrap_or_default();
        match kind_of(&peer_type) {
            Some((kind, exact)) if kind.id_kind() == peer_id.kind() => {
                peer.kind = Some(kind);
                if !exact {
                    w.one(
                        T,
                        format!(
                            "type {peer_type:?} read as {}: the data model has no such kind",
                            kind.as_str()
                        ),
                    );
                }
            }
            _ => w.one(
                T,
                format!("type {peer_type:?} does not fit the id's space; the kind is left unknown"),
            ),
        }
        match (peer_id.kind(), int(&row[1])) {
            (PeerIdKind::Chat, Ok(h)) => {
                if h.is_some_and(|h| h != 0) {
                    w.one(T, "non-zero access hash of a basic chat ignored (basic chats have no access hash)");
                }
            }
            (_, Ok(Some(h))) => peer = peer.with_hash(h),
            (_, Ok(None)) => {}
            (_, Err(e)) => w.one(T, format!("access_hash not imported: it holds {e}")),
        }
        match sqlite_file::text(&row[3]) {
            Ok(Some(u)) if !u.trim().is_empty() => peer.usernames = Some(vec![u]),
            Ok(_) => {}
            Err(e) => w.one(T, format!("username not imported: it holds {e}")),
        }
        match sqlite_file::phone(&row[4]) {
            Ok(p) => peer.phone = p,
            Err(e) => w.one(T, format!("phone_number not imported: {e}")),
        }
        let date = int(&row[5]).ok().flatten();
        peer.last_seen = date;
        if data.self_user.is_some_and(|me| me.id == id) {
            peer.kind = Some(PeerKind::SelfUser);
        }
        match peer.normalized() {
            Ok(peer) => {
                index.insert(id, candidates.len());
                candidates.push(Candidate {
                    peer,
                    date: date.unwrap_or(0),
                });
            }
            Err(e) => w.one(T, format!("row skipped: {e}")),
        }
    }
    if tables.contains("usernames") {
        read_usernames(db, &mut candidates, &index, w)?;
    }
    resolve_conflicts(&mut candidates, T, w);
    data.peers = candidates.into_iter().map(|c| c.peer).collect();
    Ok(())
}

fn read_usernames(
    db: &ForeignDb,
    candidates: &mut [Candidate],
    index: &HashMap<i64, usize>,
    w: &mut Warnings,
) -> Result<()> {
    const T: &str = "usernames";
    let cols = db.columns(T)?;
    // pyrofork: usernames(id = the username, peer_id); kurigram: usernames(id = peer id, username).
    let (peer_col, name_col) = if cols.iter().any(|c| c == "peer_id") {
        ("peer_id", "id")
    } else {
        ("id", "username")
    };
    let rows = db.select(T, &[peer_col, name_col], "rowid")?;
    let mut extra: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for row in rows {
        let (Ok(Some(peer)), Ok(Some(name))) = (int(&row[0]), sqlite_file::text(&row[1])) else {
            w.one(T, "row skipped: it does not hold a peer id and a username");
            continue;
        };
        if name.trim().is_empty() {
            w.one(T, "row skipped: empty username");
            continue;
        }
        match index.get(&peer) {
            Some(&i) => extra.entry(i).or_default().push(name),
            None => w.one(
                T,
                format!("username of peer {peer} not imported: the peer is not in the peers table"),
            ),
        }
    }
    for (i, names) in extra {
        let peer = &mut candidates[i].peer;
        let mut all = peer.usernames.take().unwrap_or_default();
        for name in names {
            if !all
                .iter()
                .any(|n| normalize_username(n) == normalize_username(&name))
            {
                all.push(name);
            }
        }
        peer.usernames = Some(all);
        if let Ok(normalized) = peer.normalized() {
            *peer = normalized;
        }
    }
    Ok(())
}

fn read_update_state(db: &ForeignDb, data: &mut SessionData, w: &mut Warnings) -> Result<()> {
    const T: &str = "update_state";
    let rows = db.select(T, &["id", "pts", "qts", "date", "seq"], "id")?;
    for row in rows {
        let Ok(Some(id)) = int(&row[0]) else {
            w.one(T, "row skipped: its id is not an integer");
            continue;
        };
        let values: Vec<_> = row[1..].iter().map(int32).collect();
        if values.iter().any(|v| v.is_err()) {
            w.one(
                T,
                format!("row {id} skipped: it does not hold 32-bit integers"),
            );
            continue;
        }
        let get = |i: usize| values[i].clone().ok().flatten();
        if id == 0 {
            let s = &mut data.update_state;
            s.pts = get(0).unwrap_or(0);
            s.qts = get(1).unwrap_or(0);
            s.date = get(2).unwrap_or(0);
            s.seq = get(3).unwrap_or(0);
            continue;
        }
        match valid_marked(id) {
            Some(peer) if peer.kind() == PeerIdKind::Channel => {
                let Some(pts) = get(0) else {
                    w.one(T, "channel row skipped: its pts is NULL");
                    continue;
                };
                data.update_state.channels.insert(peer.bare(), pts);
                if get(1).is_some_and(|v| v != 0)
                    || get(2).is_some_and(|v| v != 0)
                    || get(3).is_some_and(|v| v != 0)
                {
                    w.one(T, "qts, date and seq of a channel row not imported (a channel has only a pts)");
                }
            }
            _ => w.one(T, format!("row skipped: {id} is not a marked channel id")),
        }
    }
    Ok(())
}

// Table definitions byte for byte as each library creates them.
const PYROGRAM_SCHEMA: &str = "
CREATE TABLE sessions
(
    dc_id     INTEGER PRIMARY KEY,
    api_id    INTEGER,
    test_mode INTEGER,
    auth_key  BLOB,
    date      INTEGER NOT NULL,
    user_id   INTEGER,
    is_bot    INTEGER
);

CREATE TABLE peers
(
    id             INTEGER PRIMARY KEY,
    access_hash    INTEGER,
    type           INTEGER NOT NULL,
    username       TEXT,
    phone_number   TEXT,
    last_update_on INTEGER NOT NULL DEFAULT (CAST(STRFTIME('%s', 'now') AS INTEGER))
);

CREATE TABLE version
(
    number INTEGER PRIMARY KEY
);

CREATE INDEX idx_peers_id ON peers (id);
CREATE INDEX idx_peers_username ON peers (username);
CREATE INDEX idx_peers_phone_number ON peers (phone_number);

CREATE TRIGGER trg_peers_last_update_on
    AFTER UPDATE
    ON peers
BEGIN
    UPDATE peers
    SET last_update_on = CAST(STRFTIME('%s', 'now') AS INTEGER)
    WHERE id = NEW.id;
END;
";

const PYROFORK_SCHEMA: &str = "
CREATE TABLE sessions
(
    dc_id     INTEGER PRIMARY KEY,
    api_id    INTEGER,
    test_mode INTEGER,
    auth_key  BLOB,
    date      INTEGER NOT NULL,
    user_id   INTEGER,
    is_bot    INTEGER
);

CREATE TABLE peers
(
    id             INTEGER PRIMARY KEY,
    access_hash    INTEGER,
    type           INTEGER NOT NULL,
    username       TEXT,
    phone_number   TEXT,
    last_update_on INTEGER NOT NULL DEFAULT (CAST(STRFTIME('%s', 'now') AS INTEGER))
);

CREATE TABLE update_state
(
    id   INTEGER PRIMARY KEY,
    pts  INTEGER,
    qts  INTEGER,
    date INTEGER,
    seq  INTEGER
);

CREATE TABLE version
(
    number INTEGER PRIMARY KEY
);

CREATE INDEX idx_peers_id ON peers (id);
CREATE INDEX idx_peers_username ON peers (username);
CREATE INDEX idx_peers_phone_number ON peers (phone_number);

CREATE TRIGGER trg_peers_last_update_on
    AFTER UPDATE
    ON peers
BEGIN
    UPDATE peers
    SET last_update_on = CAST(STRFTIME('%s', 'now') AS INTEGER)
    WHERE id = NEW.id;
END;

CREATE TABLE IF NOT EXISTS usernames
(
    id             TEXT PRIMARY KEY,
    peer_id        INTEGER NOT NULL,
    last_update_on INTEGER NOT NULL DEFAULT (CAST(STRFTIME('%s', 'now') AS INTEGER))
);

CREATE TRIGGER IF NOT EXISTS trg_usernames_last_update_on
    AFTER UPDATE
    ON usernames
BEGIN
    UPDATE usernames
    SET last_update_on = CAST(STRFTIME('%s', 'now') AS INTEGER)
    WHERE id = NEW.id;
END;
";

const KURIGRAM_SCHEMA: &str = "
CREATE TABLE sessions
(
    dc_id          INTEGER PRIMARY KEY,
    server_address TEXT,
    port           INTEGER,
    api_id         INTEGER,
    test_mode      INTEGER,
    auth_key       BLOB,
    date           INTEGER NOT NULL,
    user_id        INTEGER,
    is_bot         INTEGER
);

CREATE TABLE peers
(
    id             INTEGER PRIMARY KEY,
    access_hash    INTEGER,
    type           INTEGER NOT NULL,
    phone_number   TEXT,
    last_update_on INTEGER NOT NULL DEFAULT (CAST(STRFTIME('%s', 'now') AS INTEGER))
);

CREATE TABLE usernames
(
    id       INTEGER,
    username TEXT,
    FOREIGN KEY (id) REFERENCES peers(id)
);

CREATE TABLE update_state
(
    id   INTEGER PRIMARY KEY,
    pts  INTEGER,
    qts  INTEGER,
    date INTEGER,
    seq  INTEGER
);

CREATE TABLE version
(
    number INTEGER PRIMARY KEY
);

CREATE INDEX idx_peers_id ON peers (id);
CREATE INDEX idx_peers_phone_number ON peers (phone_number);
CREATE INDEX idx_usernames_id ON usernames (id);
CREATE INDEX idx_usernames_username ON usernames (username);

CREATE TRIGGER trg_peers_last_update_on
    AFTER UPDATE
    ON peers
BEGIN
    UPDATE peers
    SET last_update_on = CAST(STRFTIME('%s', 'now') AS INTEGER)
    WHERE id = NEW.id;
END;
";

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A peer row as Pyrogram stores it.
struct PeerRow {
    id: i64,
    hash: i64,
    peer_type: &'static str,
    usernames: Vec<String>,
    phone: Option<String>,
    date: i64,
}

/// Writes `data` as a Pyrogram-family `.session` file in `layout`, which
/// that library (and, for [`PyrogramLayout::Pyrogram`], pyrofork and
/// kurigram after their own upgrade) opens and uses.
///
/// The file is created with mode 0600 and moved into place when complete; an
/// existing file is refused unless [`WriteOptions::overwrite`] is set. What
/// the layout cannot hold (other DCs, sent files, takeout id, the update state
/// in the Pyrogram layout, addresses other than Pyrogram's own, peers without
/// a full hash) is returned as warnings.
pub fn write_pyrogram(
    path: impl AsRef<Path>,
    data: &SessionData,
    layout: PyrogramLayout,
    options: WriteOptions,
) -> Result<Vec<ExportWarning>> {
    let path = path.as_ref();
    let mut w = Warnings::default();
    let now = now_secs();
    let home = data.dcs.iter().find(|dc| dc.id == data.home_dc);
    let known = pyrogram_address(data.home_dc, data.test_mode);
    if known.is_none() {
        w.one(
            "sessions",
            format!(
                "Pyrogram has no address for DC {} (test mode {}); it cannot connect to it",
                data.home_dc, data.test_mode
            ),
        );
    }
    let mut server: Option<(String, u16)> = None;
    if let Some(dc) = home {
        let v4 = dc.ipv4.map(|a| (IpAddr::V4(*a.ip()), a.port()));
        let v6 = dc.ipv6.map(|a| (IpAddr::V6(*a.ip()), a.port()));
        if layout == PyrogramLayout::Kurigram {
            server = v4.or(v6).map(|(ip, port)| (ip.to_string(), port));
            if v4.is_some() && v6.is_some() {
                w.one(
                    "sessions",
                    "IPv6 address of the home DC not written (kurigram keeps one address)",
                );
            }
        } else if let Some((k4, k6, kport)) = known {
            let differs = v4.is_some_and(|a| a != (IpAddr::V4(k4), kport))
                || v6.is_some_and(|a| a != (IpAddr::V6(k6), kport));
            if differs {
                w.one("sessions", "home DC address not written: Pyrogram connects to its own address for the DC id");
            }
        }
    }
    if server.is_none()
        && layout == PyrogramLayout::Kurigram
        && let Some((v4, _, port)) = known
    {
        server = Some((v4.to_string(), port));
    }
    let key: Option<Vec<u8>> = home
        .and_then(|dc| dc.auth_key.as_ref())
        .map(|k| k.expose().to_vec());
    let others: Vec<&DcOption> = data.dcs.iter().filter(|dc| dc.id != data.home_dc).collect();
    w.add(
        "sessions",
        others.len() as u64,
        "DC other than the home DC not written (Pyrogram keeps only the home DC)",
    );
    w.add(
        "sessions",
        others.iter().filter(|dc| dc.auth_key.is_some()).count() as u64,
        "auth key of a non-home DC not written (Pyrogram keeps only the home DC's key)",
    );
    if data.takeout_id.is_some() {
        w.one(
            "sessions",
            "takeout id not written (Pyrogram's file has no place for it)",
        );
    }
    w.add(
        "sent_files",
        data.sent_files.len() as u64,
        "sent-file cache not written (Pyrogram's file has none)",
    );
    let state = &data.update_state;
    let has_update_table = layout != PyrogramLayout::Pyrogram;
    if !has_update_table && (*state != UpdateState::default()) {
        w.one(
            "update_state",
            "update state not written (the Pyrogram layout has no update_state table)",
        );
    }
    if let Some(id) = state.channels.keys().find(|id| **id <= 0) {
        return Err(Error::invalid(format!(
            "update state holds channel id {id}, which is not positive"
        )));
    }

    let mut peers: Vec<PeerRow> = Vec::with_capacity(data.peers.len());
    for peer in &data.peers {
        let Some((peer, hash)) = peer_with_full_hash(peer, "peers", "Pyrogram", &mut w) else {
            continue;
        };
        let peer_type = match (peer.kind, peer.id.kind()) {
            (Some(PeerKind::User), _) => "user",
            (Some(PeerKind::Bot), _) => "bot",
            (Some(PeerKind::SelfUser), _) => {
                if data.self_user.is_some_and(|u| u.is_bot) {
                    "bot"
                } else {
                    "user"
                }
            }
            (Some(PeerKind::Chat), _) | (None, PeerIdKind::Chat) => "group",
            (Some(PeerKind::Broadcast), _) => "channel",
            (Some(PeerKind::Megagroup), _) => "supergroup",
            (Some(PeerKind::Gigagroup), _) => {
                w.one(
                    "peers",
                    "gigagroup written as \"supergroup\" (Pyrogram has no gigagroup type)",
                );
                "supergroup"
            }
            (Some(PeerKind::Community), _) if layout == PyrogramLayout::Kurigram => "community",
            (Some(PeerKind::Community), _) => {
                w.one(
                    "peers",
                    format!("community written as \"supergroup\" (the {layout} layout has no community type; kurigram's has)"),
                );
                "supergroup"
            }
            (Some(PeerKind::Monoforum), _) if layout == PyrogramLayout::Kurigram => "direct",
            (Some(PeerKind::Monoforum), _) => {
                w.one(
                    "peers",
                    format!("monoforum written as \"supergroup\" (the {layout} layout has no direct type; kurigram's has)"),
                );
                "supergroup"
            }
            (None, PeerIdKind::User) => {
                w.one("peers", "user of unknown kind written as \"user\"");
                "user"
            }
            (None, PeerIdKind::Channel) => {
                w.one("peers", "channel of unknown kind written as \"channel\"");
                "channel"
            }
        };
        let mut usernames = Vec::new();
        for name in peer.usernames.iter().flatten() {
            let lower = name.to_lowercase();
            if &lower != name {
                w.one(
                    "peers",
                    "username written in lowercase (Pyrogram stores usernames lowercased)",
                );
            }
            usernames.push(lower);
        }
        if layout == PyrogramLayout::Pyrogram && usernames.len() > 1 {
            w.add(
                "peers",
                (usernames.len() - 1) as u64,
                "username beyond a peer's first not written (the Pyrogram layout keeps one per peer)",
            );
        }
        if peer.name.is_some() {
            w.one(
                "peers",
                "display name not written (Pyrogram's file has no place for it)",
            );
        }
        peers.push(PeerRow {
            id: peer.id.marked(),
            hash,
            peer_type,
            usernames,
            phone: peer.phone.clone(),
            date: peer.last_seen.unwrap_or(now),
        });
    }

    let file = NewFile::create(path, options.overwrite)?;
    sqlite_file::write_all(&file, path, |tx| {
        let schema = match layout {
            PyrogramLayout::Pyrogram => PYROGRAM_SCHEMA,
            PyrogramLayout::Pyrofork => PYROFORK_SCHEMA,
            PyrogramLayout::Kurigram => KURIGRAM_SCHEMA,
        };
        tx.execute_batch(schema)?;
        tx.execute("INSERT INTO version VALUES (?)", params![layout.version()])?;
        let user_id = data.self_user.map(|u| u.id);
        let is_bot = data.self_user.map(|u| i64::from(u.is_bot));
        let test_mode = i64::from(data.test_mode);
        if layout == PyrogramLayout::Kurigram {
            let (addr, port) = match &server {
                Some((a, p)) => (Some(a.as_str()), Some(*p)),
                None => (None, None),
            };
            tx.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                params![
                    data.home_dc,
                    addr,
                    port,
                    data.api_id,
                    test_mode,
                    key,
                    now,
                    user_id,
                    is_bot
                ],
            )?;
        } else {
            tx.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?)",
                params![
                    data.home_dc,
                    data.api_id,
                    test_mode,
                    key,
                    now,
                    user_id,
                    is_bot
                ],
            )?;
        }
        for p in &peers {
            match layout {
                PyrogramLayout::Kurigram => {
                    tx.execute(
                        "REPLACE INTO peers (id, access_hash, type, phone_number, last_update_on) VALUES (?, ?, ?, ?, ?)",
                        params![p.id, p.hash, p.peer_type, p.phone, p.date],
                    )?;
                    for name in &p.usernames {
                        tx.execute(
                            "REPLACE INTO usernames (id, username) VALUES (?, ?)",
                            params![p.id, name],
                        )?;
                    }
                }
                PyrogramLayout::Pyrogram | PyrogramLayout::Pyrofork => {
                    tx.execute(
                        "REPLACE INTO peers (id, access_hash, type, username, phone_number, last_update_on) VALUES (?, ?, ?, ?, ?, ?)",
                        params![p.id, p.hash, p.peer_type, p.usernames.first(), p.phone, p.date],
                    )?;
                    if layout == PyrogramLayout::Pyrofork && p.usernames.len() > 1 {
                        for name in &p.usernames {
                            tx.execute(
                                "REPLACE INTO usernames (peer_id, id, last_update_on) VALUES (?, ?, ?)",
                                params![p.id, name, p.date],
                            )?;
                        }
                    }
                }
            }
        }
        if has_update_table {
            tx.execute(
                "INSERT INTO update_state (id, pts, qts, date, seq) VALUES (?, ?, ?, ?, ?)",
                params![0i64, state.pts, state.qts, state.date, state.seq],
            )?;
            for (id, pts) in &state.channels {
                let marked = -(session_core::model::CHANNEL_ID_OFFSET + id);
                tx.execute(
                    "INSERT INTO update_state (id, pts, qts, date, seq) VALUES (?, ?, NULL, NULL, NULL)",
                    params![marked, pts],
                )?;
            }
        }
        Ok(())
    })?;
    file.commit(options.overwrite)?;
    Ok(w.into_vec())
}
