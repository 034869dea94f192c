//! Telethon 2 `.session` files (schema version 10).

use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::path::Path;

use session_core::model::CHANNEL_ID_OFFSET;
use session_core::{AuthKey, DcOption, Error, Result, SelfUser, SessionData, UpdateState};

use super::sqlite_file::{self, ForeignDb, int, int32};
use super::{ForeignFormat, ForeignImport, Warnings};

/// The schema version Telethon 2 writes.
pub const TELETHON2_VERSION: i64 = 10;

/// Telethon 2's home DC when the session has no user row.
const TELETHON2_DEFAULT_DC: i32 = 2;

const KNOWN_TABLES: [&str; 5] = ["version", "datacenter", "user", "state", "channelstate"];

/// Reads a Telethon 2 `.session` file (schema version 10) without modifying it.
///
/// Errors as [`read_telethon`](super::read_telethon); versions other than 10
/// are refused (Telethon 2 itself migrates only from Telethon 1's version 7,
/// which [`read_telethon`](super::read_telethon) reads).
pub fn read_telethon2(path: impl AsRef<Path>) -> Result<ForeignImport> {
    let db = ForeignDb::open(path.as_ref())?;
    match super::detect_open(&db)? {
        ForeignFormat::TelethonV2 { .. } => read_open(&db),
        found => Err(db.not_a(
            "a Telethon v2 session (tables version, datacenter, user, state, channelstate)",
            &found,
        )),
    }
}

/// Parses Telethon 2's `addr`: `ip:port`, `[ipv6]:port`, or a bare IP (as
/// Telethon 2 stores the DC options it receives), which gets port 443.
fn parse_addr(addr: &str) -> Option<(SocketAddr, bool)> {
    if let Ok(sock) = addr.parse::<SocketAddr>() {
        return Some((sock, true));
    }
    let bare = addr.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>()
        .ok()
        .map(|ip| (SocketAddr::new(ip, 443), false))
}

pub(crate) fn read_open(db: &ForeignDb) -> Result<ForeignImport> {
    let version = db.version("version", "version")?;
    if version > TELETHON2_VERSION {
        return Err(Error::UnsupportedSchemaVersion {
            what: format!("Telethon v2 session {}", db.what()),
            found: version,
            supported: TELETHON2_VERSION,
        });
    }
    if version != TELETHON2_VERSION {
        return Err(db.corrupt(format!(
            "a Telethon v2 layout with version {version}; Telethon 2 writes only version {TELETHON2_VERSION}"
        )));
    }
    let tables = db.tables()?;
    let context = "this Telethon v2 session";
    db.require(&tables, "datacenter", &["id", "addr", "auth"], context)?;
    db.require(&tables, "user", &["id", "dc", "bot"], context)?;
    db.require(&tables, "state", &["pts", "qts", "date", "seq"], context)?;
    db.require(&tables, "channelstate", &["id", "pts"], context)?;

    let mut w = Warnings::default();
    let mut data = SessionData {
        home_dc: TELETHON2_DEFAULT_DC,
        dcs: Vec::new(),
        self_user: None,
        api_id: None,
        test_mode: false,
        takeout_id: None,
        update_state: UpdateState::default(),
        peers: Vec::new(),
        sent_files: Vec::new(),
    };

    for row in db.select("datacenter", &["id", "addr", "auth"], "rowid")? {
        const T: &str = "datacenter";
        let id = match int(&row[0]).map(|v| v.and_then(|v| i32::try_from(v).ok())) {
            Ok(Some(id)) if session_core::session::check_dc_id(id).is_ok() => id,
            _ => {
                w.one(T, "row skipped: its id is not a DC id (1 to 32767)");
                continue;
            }
        };
        let mut dc = DcOption::new(id, None, None);
        match sqlite_file::text(&row[1]) {
            Ok(Some(addr)) => match parse_addr(&addr) {
                Some((sock, had_port)) => {
                    match sock {
                        SocketAddr::V4(v4) => {
                            dc.ipv4 = Some(SocketAddrV4::new(*v4.ip(), v4.port()))
                        }
                        SocketAddr::V6(v6) => {
                            dc.ipv6 = Some(SocketAddrV6::new(*v6.ip(), v6.port(), 0, 0))
                        }
                    }
                    if !had_port {
                        w.one(T, "address without a port read with port 443");
                    }
                }
                None => w.one(
                    T,
                    format!("address {addr:?} is not ip:port; the DC is kept without an address"),
                ),
            },
            Ok(None) => {}
            Err(e) => w.one(T, format!("addr not imported: it holds {e}")),
        }
        match sqlite_file::blob(&row[2]) {
            Ok(Some(key)) if !key.is_empty() => match AuthKey::from_slice(&key) {
                Ok(key) => dc.auth_key = Some(key),
                Err(_) => w.one(
                    T,
                    format!(
                        "auth not imported: it is {} bytes long, expected 256",
                        key.len()
                    ),
                ),
            },
            Ok(_) => {}
            Err(e) => w.one(T, format!("auth not imported: it holds {e}")),
        }
        if data.dcs.iter().any(|d| d.id == id) {
            w.one(T, format!("second row for DC {id} not imported"));
            continue;
        }
        data.dcs.push(dc);
    }

    let users = db.select("user", &["id", "dc", "bot"], "rowid")?;
    w.add(
        "user",
        users.len().saturating_sub(1) as u64,
        "extra user rows ignored (Telethon 2 reads the first)",
    );
    if let Some(row) = users.first() {
        match (int(&row[0]), int(&row[1]), int(&row[2])) {
            (Ok(Some(id)), Ok(Some(dc)), Ok(Some(bot))) if id > 0 => {
                data.self_user = Some(SelfUser {
                    id,
                    is_bot: bot != 0,
                });
                match i32::try_from(dc) {
                    Ok(dc) if session_core::session::check_dc_id(dc).is_ok() => data.home_dc = dc,
                    _ => w.one(
                        "user",
                        format!("home DC {dc} is not a DC id (1 to 32767); DC 2 assumed, as Telethon 2 does"),
                    ),
                }
            }
            _ => w.one(
                "user",
                "the user row does not hold a user id, DC and bot flag; not imported",
            ),
        }
    }

    let states = db.select("state", &["pts", "qts", "date", "seq"], "rowid")?;
    w.add(
        "state",
        states.len().saturating_sub(1) as u64,
        "extra state rows ignored (Telethon 2 reads the first)",
    );
    if let Some(row) = states.first() {
        let values: Vec<_> = row.iter().map(int32).collect();
        if values.iter().all(|v| v.is_ok()) {
            let get = |i: usize| values[i].clone().ok().flatten().unwrap_or(0);
            data.update_state.pts = get(0);
            data.update_state.qts = get(1);
            data.update_state.date = get(2);
            data.update_state.seq = get(3);
        } else {
            w.one(
                "state",
                "the state row does not hold 32-bit integers; not imported",
            );
        }
    }
    for row in db.select("channelstate", &["id", "pts"], "id")? {
        match (int(&row[0]), int32(&row[1])) {
            (Ok(Some(id)), Ok(Some(pts))) if id > 0 && id <= i64::MAX - CHANNEL_ID_OFFSET => {
                data.update_state.channels.insert(id, pts);
            }
            _ => w.one(
                "channelstate",
                "row skipped: it does not hold a bare channel id and a pts",
            ),
        }
    }
    super::report_unknown_tables(db, &KNOWN_TABLES, "Telethon v2", &mut w)?;
    data.canonicalize();
    Ok(ForeignImport {
        format: ForeignFormat::TelethonV2 { version },
        data,
        warnings: w.into_vec(),
    })
}
