//! Session files of other MTProto libraries: Telethon v1 and v2, Pyrogram and
//! its maintained forks (pyrofork, kurigram).
//!
//! | format | read | write |
//! | --- | --- | --- |
//! | Telethon 1.x `.session`, schema versions 1 to 8 | [`read_telethon`] | [`write_telethon`] (version 8) |
//! | Telethon 2 `.session`, schema version 10 | [`read_telethon2`] | — |
//! | Pyrogram `.session` (pyrogram 1.x/2.x, pyrofork, kurigram), versions 1 to 7 | [`read_pyrogram`] | [`write_pyrogram`] |
//! | grammers `SqliteSession` (grammers-session 0.11), user_version 1 | [`read_grammers`] | [`write_grammers`] |
//!
//! Reading never modifies the file or anything beside it: it is opened
//! read-only with `immutable=1`, so its bytes stay identical and no
//! `-journal`, `-wal` or `-shm` file is created. A file with a non-empty
//! `-wal` or `-journal` beside it (left by a writer that was killed, or still
//! writing) is copied with them into a private directory (mode 0700, files
//! 0600) in the temporary directory, where SQLite recovers the committed
//! state; the copy is removed when the read ends. A file that is not SQLite,
//! is truncated, corrupted, of another format or of an unknown schema version
//! gets a typed [`Error`](session_core::Error) that names the file and says
//! what was found; a path that is not a file (a directory, a FIFO, a device,
//! a loop of symbolic links) is [`InvalidInput`](session_core::Error::InvalidInput).
//!
//! Nothing is dropped silently: every row or value that the data model cannot
//! hold, or that a format cannot hold on export, is reported as a [`Warning`]
//! naming the table and the number of rows.
//!
//! # How the formats map to [`SessionData`]
//!
//! Telethon v1:
//! - `sessions`: the first row (by rowid, as Telethon reads it) is the home DC
//!   with its address and key (`b''` means no key) and `takeout_id`. Further
//!   rows (only very old files have them) become other DCs. A row with
//!   `dc_id = 0` (a session that never connected) means home DC 2, Telethon's
//!   default, with no DC entry. A row without address and key is the home DC
//!   id alone. A non-empty `tmp_auth_key` is reported (the model has no
//!   temporary keys).
//! - `entities`: the row `id = 0` holds the logged-in user's id in `hash`; the
//!   self user's `is_bot` is not recorded by Telethon and is read as `false`
//!   (with a warning). Other rows are peers keyed by marked id. The kind is
//!   what the id space proves: basic chats are [`PeerKind::Chat`](session_core::PeerKind::Chat), the
//!   logged-in user is [`PeerKind::SelfUser`](session_core::PeerKind::SelfUser), every other kind is left
//!   unknown (`None`) rather than guessed. `hash = 0` of a basic chat means
//!   "no hash". Phones stored as integers, reals or text become digits. When
//!   two rows claim one username (or phone) the most recently seen row keeps
//!   it, as Telethon's own lookup does. Files of versions 1 to 5 hold entities
//!   that Telethon deletes when it upgrades them (their hashes may be wrong):
//!   they are reported and not imported.
//! - `update_state`: `id = 0` is the account's pts/qts/date/seq (`date` may be
//!   a real), other ids are bare channel ids with their pts.
//! - `sent_files`: the sent-file cache (type 0 document, 1 photo).
//!
//! Telethon v2 (`datacenter`, `user`, `state`, `channelstate`): every DC with
//! its key, the user row as self user and home DC (DC 2 when absent, as
//! Telethon 2 does), the update state. It holds no peers or sent files.
//!
//! Pyrogram: `sessions` gives the home DC, its key, `api_id`, `test_mode` and
//! the self user; the DC address is the one Pyrogram itself derives from the
//! DC id and test mode (or kurigram's `server_address`/`port`). `peers`
//! carries the kind (`user`, `bot`, `group`, `channel`, `supergroup`, and
//! kurigram's `forum`, read as a megagroup, `community` and `direct`, a monoforum), the hash, phone and username; the forks' `usernames`
//! table adds more usernames and their `update_state` table the update state
//! (channel ids there are marked).
//!
//! grammers: `dc_home` is the home DC, `dc_option` every DC it connected to
//! (both addresses and the key; DCs 1 to 5 without a row are grammers' known
//! ones), `peer_info` the peers with their hash and a subtype giving the kind
//! and who is logged in, `update_state` and `channel_state` the update state.
//! See [`grammers`](mod@grammers) for the details.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::Path;

use session_core::{Peer, PeerIdKind, Result, SessionData};

pub mod grammers;
mod pyrogram;
mod sqlite_file;
mod telethon;
mod telethon2;

pub use grammers::{
    GRAMMERS_VERSION, grammers_dc, grammers_known_dcs, read_grammers, write_grammers,
};
pub use pyrogram::{PYROGRAM_MAX_VERSION, PyrogramLayout, read_pyrogram, write_pyrogram};
pub use telethon::{TELETHON_VERSION, read_telethon, write_telethon};
pub use telethon2::{TELETHON2_VERSION, read_telethon2};

use sqlite_file::ForeignDb;

/// `PRAGMA application_id` of an mtsession SQLite store (`"mtss"` in ASCII),
/// as session-sqlite writes it: such a file is a store, not a foreign file.
pub const MTSESSION_APPLICATION_ID: i32 = 0x6d74_7373;

/// A foreign session file, as [`detect`] recognizes it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForeignFormat {
    /// Telethon 1.x: tables `version`, `sessions`, `entities`, ...
    TelethonV1 {
        /// The number in the `version` table.
        version: i64,
    },
    /// Telethon 2: tables `version`, `datacenter`, `user`, `state`, `channelstate`.
    TelethonV2 {
        /// The number in the `version` table.
        version: i64,
    },
    /// Pyrogram or one of its forks: tables `version(number)`, `sessions`, `peers`.
    Pyrogram {
        /// The number in the `version` table.
        version: i64,
        /// Which library's layout the tables follow.
        layout: PyrogramLayout,
    },
    /// grammers' `SqliteSession`: tables `dc_home`, `dc_option`, `peer_info`,
    /// `update_state`, `channel_state`.
    Grammers {
        /// `PRAGMA user_version`.
        version: i64,
    },
    /// mtsession's own SQLite store (open it with the SQLite backend).
    Mtsession,
    /// An SQLite file of none of the formats above.
    Unknown {
        /// The tables found in it.
        tables: Vec<String>,
    },
}

impl fmt::Display for ForeignFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForeignFormat::TelethonV1 { version } => {
                write!(f, "Telethon v1 session (version {version})")
            }
            ForeignFormat::TelethonV2 { version } => {
                write!(f, "Telethon v2 session (version {version})")
            }
            ForeignFormat::Pyrogram { version, layout } => {
                write!(f, "{layout} session (version {version})")
            }
            ForeignFormat::Grammers { version } => {
                write!(f, "grammers session (user_version {version})")
            }
            ForeignFormat::Mtsession => write!(f, "mtsession SQLite store"),
            ForeignFormat::Unknown { tables } if tables.is_empty() => {
                write!(f, "SQLite file with no tables")
            }
            ForeignFormat::Unknown { tables } => {
                write!(f, "unknown SQLite file (tables: {})", tables.join(", "))
            }
        }
    }
}

/// Something a file held that was not imported, or that a format could not
/// hold on export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// The table concerned: the foreign file's table on import, the target
    /// format's table (or the part of the model) on export.
    pub table: String,
    /// How many rows (or values) it concerns.
    pub rows: u64,
    /// What happened to them, and why.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let noun = if self.rows == 1 { "row" } else { "rows" };
        write!(
            f,
            "{} ({} {noun} of the {} table)",
            self.message, self.rows, self.table
        )
    }
}

/// A warning raised while importing a foreign file.
pub type ImportWarning = Warning;
/// A warning raised while exporting to a foreign format.
pub type ExportWarning = Warning;

/// What a foreign file held, in terms of the data model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForeignImport {
    /// The format and version the file was read as.
    pub format: ForeignFormat,
    /// The session, canonicalized (lists sorted).
    pub data: SessionData,
    /// What the file held that `data` does not.
    pub warnings: Vec<ImportWarning>,
}

/// Options of [`write_telethon`], [`write_pyrogram`] and [`write_grammers`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Replace an existing file (atomically). When `false` (the default), an
    /// existing file is an [`Error::AlreadyExists`](session_core::Error::AlreadyExists).
    pub overwrite: bool,
}

impl WriteOptions {
    /// Options that replace an existing file.
    pub fn overwrite() -> Self {
        WriteOptions { overwrite: true }
    }
}

/// Tells which kind of session file `path` is, from its tables and version.
///
/// Errors: the file is missing ([`NotFound`](session_core::Error::NotFound)),
/// or is not a readable SQLite database ([`Corrupt`](session_core::Error::Corrupt)).
/// An SQLite file of another kind is `Ok(ForeignFormat::Unknown)`.
pub fn detect(path: impl AsRef<Path>) -> Result<ForeignFormat> {
    let db = ForeignDb::open(path.as_ref())?;
    detect_open(&db)
}

fn detect_open(db: &ForeignDb) -> Result<ForeignFormat> {
    let tables = db.tables()?;
    let has = |name: &str| tables.contains(name);
    if has("version") {
        let version_columns = db.columns("version")?;
        if version_columns.iter().any(|c| c == "version") {
            if has("sessions") && has("entities") {
                return Ok(ForeignFormat::TelethonV1 {
                    version: db.version("version", "version")?,
                });
            }
            if has("datacenter") && has("user") && has("state") && has("channelstate") {
                return Ok(ForeignFormat::TelethonV2 {
                    version: db.version("version", "version")?,
                });
            }
        }
        if version_columns.iter().any(|c| c == "number") && has("sessions") && has("peers") {
            let layout = pyrogram::layout(db, &tables)?;
            return Ok(ForeignFormat::Pyrogram {
                version: db.version("version", "number")?,
                layout,
            });
        }
    }
    if grammers::TABLES.iter().all(|t| has(t)) {
        return Ok(ForeignFormat::Grammers {
            version: db.user_version()?,
        });
    }
    if db.application_id()? == MTSESSION_APPLICATION_ID {
        return Ok(ForeignFormat::Mtsession);
    }
    Ok(ForeignFormat::Unknown {
        tables: tables.into_iter().collect(),
    })
}

/// Reads any supported foreign file, choosing the reader by [`detect`].
pub fn read_foreign(path: impl AsRef<Path>) -> Result<ForeignImport> {
    let path = path.as_ref();
    let db = ForeignDb::open(path)?;
    match detect_open(&db)? {
        ForeignFormat::TelethonV1 { .. } => telethon::read_open(&db),
        ForeignFormat::TelethonV2 { .. } => telethon2::read_open(&db),
        ForeignFormat::Pyrogram { .. } => pyrogram::read_open(&db),
        ForeignFormat::Grammers { .. } => grammers::read_open(&db),
        found => Err(db.not_a("a Telethon, Pyrogram or grammers session", &found)),
    }
}

/// Collects warnings, merging repeats of one message into one row count.
#[derive(Debug, Default)]
pub(crate) struct Warnings {
    list: Vec<Warning>,
    index: HashMap<(String, String), usize>,
}

impl Warnings {
    /// Counts `rows` more rows under `message` in `table`.
    pub(crate) fn add(&mut self, table: &str, rows: u64, message: impl Into<String>) {
        if rows == 0 {
            return;
        }
        let message = message.into();
        let key = (table.to_owned(), message);
        if let Some(&i) = self.index.get(&key) {
            self.list[i].rows += rows;
        } else {
            self.index.insert(key.clone(), self.list.len());
            self.list.push(Warning {
                table: key.0,
                rows,
                message: key.1,
            });
        }
    }

    /// One more row under `message`.
    pub(crate) fn one(&mut self, table: &str, message: impl Into<String>) {
        self.add(table, 1, message);
    }

    /// Adds a warning as is, even for zero rows.
    pub(crate) fn push(&mut self, warning: Warning) {
        self.list.push(warning);
    }

    pub(crate) fn into_vec(self) -> Vec<Warning> {
        self.list
    }
}

/// Prepares a peer for a format that stores only full access hashes (and 0
/// for basic chats): the normalized peer and the hash to write, or `None`
/// after recording in `table` why the peer is not written.
pub(crate) fn peer_with_full_hash(
    peer: &Peer,
    table: &str,
    library: &str,
    w: &mut Warnings,
) -> Option<(Peer, i64)> {
    let peer = match peer.normalized() {
        Ok(p) => p,
        Err(e) => {
            w.one(table, format!("peer not written: {e}"));
            return None;
        }
    };
    let hash = match (peer.id.kind(), peer.access_hash) {
        (PeerIdKind::Chat, _) => 0,
        (_, Some(h)) if !h.min => h.value,
        (_, Some(_)) => {
            w.one(
                table,
                format!(
                    "peer with only a min access hash not written ({library} stores only full hashes)"
                ),
            );
            return None;
        }
        (_, None) => {
            w.one(
                table,
                format!(
                    "user or channel without an access hash not written ({library} needs the hash)"
                ),
            );
            return None;
        }
    };
    Some((peer, hash))
}

/// Reports tables of the file that the format does not define.
pub(crate) fn report_unknown_tables(
    db: &ForeignDb,
    known: &[&str],
    format: &str,
    warnings: &mut Warnings,
) -> Result<()> {
    let tables: BTreeSet<String> = db.tables()?;
    for table in tables {
        if !known.contains(&table.as_str()) {
            let rows = db.count(&table)?;
            warnings.push(Warning {
                table,
                rows,
                message: format!("table not imported: it is not part of the {format} format"),
            });
        }
    }
    Ok(())
}
