#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use session_core::backend::{decide_release, import_times};
use session_core::{
    Capabilities, DcOption, Error, HeaderWrite, ImportMode, LeaseInfo, LeaseRequest, Peer,
    PeerBatch, PeerId, PeerTable, Result, SentFile, SentFileKey, SessionBackend, SessionData,
    SessionHeader, UpdateState, UpdateStateWrite,
};

const NAME: &str = "json";

/// The schema version this backend writes and reads.
pub const SCHEMA_VERSION: i64 = 1;

/// What one session file holds.
#[derive(serde::Serialize, serde::Deserialize)]
struct SessionFile {
    header: SessionHeader,
    data: SessionData,
}

/// A session as read from its file, with its peers indexed.
struct Entry {
    file: SessionFile,
    peers: PeerTable,
}

/// Sessions as JSON files in a directory. The files are the store; sessions
/// read once are kept parsed in memory (one process owns the directory), and
/// every change is written through before the call returns.
#[derive(Debug)]
pub struct JsonDirStore {
    dir: PathBuf,
    /// Serializes every call, so each is atomic within the process; holds the
    /// parsed sessions.
    cache: Mutex<HashMap<String, Entry>>,
    leases: Mutex<HashMap<String, LeaseInfo>>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Entry")
    }
}

fn io(e: std::io::Error) -> Error {
    Error::backend(NAME, e)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes `bytes` to `path` atomically: a 0600 temporary file, renamed over.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
    }
    let temp = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)
        .map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(&temp, path).map_err(io)
}

impl JsonDirStore {
    /// Opens the store in `dir`, creating it (mode 0700) when absent.
    /// Refuses a store written by a newer schema version.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir.join("sessions"))
            .map_err(io)?;
        let schema = dir.join("schema.json");
        match fs::read_to_string(&schema) {
            Ok(text) => {
                let what = format!("JSON store {}", dir.display());
                let version: i64 = serde_json::from_str(&text).map_err(|e| Error::Corrupt {
                    what: what.clone(),
                    message: "schema.json does not hold a version number".into(),
                    source: Some(Box::new(e)),
                })?;
                session_core::schema::check_version(&what, version, SCHEMA_VERSION)?;
            }
            Err(_) => Self::write_schema_version(&dir, SCHEMA_VERSION)?,
        }
        Ok(JsonDirStore {
            dir,
            cache: Mutex::new(HashMap::new()),
            leases: Mutex::new(HashMap::new()),
        })
    }

    /// Records `version` as the store's schema version (for tests).
    pub fn write_schema_version(dir: &Path, version: i64) -> Result<()> {
        write_atomically(&dir.join("schema.json"), version.to_string().as_bytes())
    }

    /// `sessions/<hex of the name>.json`; the hex of a long name is split
    /// into directories of 200 characters, as file names hold at most 255 bytes.
    fn path(&self, session: &str) -> PathBuf {
        let hex = hex::encode(session);
        let mut path = self.dir.join("sessions");
        let mut rest = hex.as_str();
        while rest.len() > 200 {
            let (part, tail) = rest.split_at(200);
            path.push(format!("{part}.d"));
            rest = tail;
        }
        path.push(format!("{rest}.json"));
        path
    }

    fn read(&self, session: &str) -> Result<Option<SessionFile>> {
        let bytes = match fs::read(self.path(session)) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Corrupt {
                what: format!("JSON file of session {session:?}"),
                message: "it does not hold a session".into(),
                source: Some(Box::new(e)),
            })
    }

    fn write(&self, session: &str, file: &SessionFile) -> Result<()> {
        let bytes = serde_json::to_vec(file).map_err(|e| Error::backend(NAME, e))?;
        write_atomically(&self.path(session), &bytes)
    }

    /// The parsed session, read from its file the first time.
    fn entry<'a>(
        &self,
        cache: &'a mut HashMap<String, Entry>,
        session: &str,
    ) -> Result<&'a mut Entry> {
        if !cache.contains_key(session) {
            let file = self
                .read(session)?
                .ok_or_else(|| Error::session_not_found(session))?;
            let peers = PeerTable::from_rows(file.data.peers.iter().cloned());
            cache.insert(session.to_owned(), Entry { file, peers });
        }
        cache
            .get_mut(session)
            .ok_or_else(|| Error::session_not_found(session))
    }

    /// Answers from the session (`NotFound` if missing).
    fn with<T>(&self, session: &str, f: impl FnOnce(&Entry) -> T) -> Result<T> {
        let mut cache = lock(&self.cache);
        Ok(f(self.entry(&mut cache, session)?))
    }

    /// Changes the session and writes it back, under the lock.
    fn change(&self, session: &str, f: impl FnOnce(&mut SessionFile)) -> Result<()> {
        let mut cache = lock(&self.cache);
        let entry = self.entry(&mut cache, session)?;
        f(&mut entry.file);
        entry.peers = PeerTable::from_rows(entry.file.data.peers.iter().cloned());
        let written = self.write(session, &entry.file);
        if written.is_err() {
            cache.remove(session);
        }
        written
    }
}

#[async_trait]
impl SessionBackend for JsonDirStore {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
            .durable(true)
            .atomic_multi_key_writes(true)
            .leases(true)
    }

    async fn list(&self) -> Result<Vec<String>> {
        let _guard = lock(&self.cache);
        let mut names = Vec::new();
        let mut dirs = vec![(self.dir.join("sessions"), String::new())];
        while let Some((dir, prefix)) = dirs.pop() {
            for entry in fs::read_dir(&dir).map_err(io)? {
                let file_name = entry.map_err(io)?.file_name();
                let file_name = file_name.to_string_lossy();
                if let Some(part) = file_name.strip_suffix(".d") {
                    dirs.push((dir.join(&*file_name), format!("{prefix}{part}")));
                } else if let Some(stem) = file_name.strip_suffix(".json")
                    && let Some(name) = hex::decode(format!("{prefix}{stem}"))
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                {
                    names.push(name);
                }
            }
        }
        names.sort();
        Ok(names)
    }

    async fn exists(&self, session: &str) -> Result<bool> {
        let cache = lock(&self.cache);
        Ok(cache.contains_key(session) || self.path(session).exists())
    }

    async fn delete(&self, session: &str) -> Result<bool> {
        let mut cache = lock(&self.cache);
        cache.remove(session);
        match fs::remove_file(self.path(session)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io(e)),
        }
    }

    async fn export(&self, session: &str) -> Result<SessionData> {
        self.with(session, |e| e.file.data.clone())
    }

    async fn import(
        &self,
        session: &str,
        data: &SessionData,
        mode: ImportMode,
        now_ms: i64,
    ) -> Result<()> {
        let mut cache = lock(&self.cache);
        let existing = match self.entry(&mut cache, session) {
            Ok(entry) => Some((
                entry.file.header.created_at_ms,
                entry.file.header.updated_at_ms,
            )),
            Err(Error::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        if mode == ImportMode::CreateOnly && existing.is_some() {
            return Err(Error::session_exists(session));
        }
        let (created, updated) = import_times(existing, now_ms);
        let file = SessionFile {
            header: SessionHeader::from_data(data, created, updated),
            data: data.clone(),
        };
        cache.remove(session);
        self.write(session, &file)
    }

    async fn header(&self, session: &str) -> Result<SessionHeader> {
        self.with(session, |e| e.file.header.clone())
    }

    async fn write_header(&self, session: &str, write: &HeaderWrite) -> Result<()> {
        self.change(session, |f| {
            f.header.apply(write);
            let h = &f.header;
            f.data.home_dc = h.home_dc;
            f.data.self_user = h.self_user;
            f.data.api_id = h.api_id;
            f.data.test_mode = h.test_mode;
            f.data.takeout_id = h.takeout_id;
        })
    }

    async fn dc_options(&self, session: &str) -> Result<Vec<DcOption>> {
        self.with(session, |e| e.file.data.dcs.clone())
    }

    async fn write_dc_option(&self, session: &str, dc: &DcOption, at_ms: i64) -> Result<()> {
        self.change(session, |f| {
            f.data.dcs.retain(|d| d.id != dc.id);
            f.data.dcs.push(dc.clone());
            f.data.dcs.sort_by_key(|d| d.id);
            f.header.apply(&HeaderWrite::at(at_ms));
        })
    }

    async fn update_state(&self, session: &str) -> Result<UpdateState> {
        self.with(session, |e| e.file.data.update_state.clone())
    }

    async fn write_update_state(&self, session: &str, write: &UpdateStateWrite) -> Result<()> {
        self.change(session, |f| write.apply_to(&mut f.data.update_state))
    }

    async fn peers(&self, session: &str, ids: &[PeerId]) -> Result<Vec<Option<Peer>>> {
        self.with(session, |e| ids.iter().map(|id| e.peers.get(*id)).collect())
    }

    async fn peer_by_username(&self, session: &str, key: &str) -> Result<Option<Peer>> {
        self.with(session, |e| e.peers.by_username(key))
    }

    async fn peer_by_phone(&self, session: &str, phone: &str) -> Result<Option<Peer>> {
        self.with(session, |e| e.peers.by_phone(phone))
    }

    async fn peer_count(&self, session: &str) -> Result<u64> {
        self.with(session, |e| e.peers.len() as u64)
    }

    async fn cache_peers(&self, session: &str, batch: &PeerBatch) -> Result<()> {
        self.change(session, |f| {
            // Every stored peer is context enough; the index is derived from
            // the rows, so the plan's rows are all there is to write.
            let plan = batch.plan(f.data.peers.iter().cloned());
            let mut peers: HashMap<PeerId, Peer> =
                f.data.peers.drain(..).map(|p| (p.id, p)).collect();
            for row in plan.rows {
                peers.insert(row.id, row);
            }
            f.data.peers = peers.into_values().collect();
            f.data.peers.sort_by_key(|p| p.id);
        })
    }

    async fn sent_file(&self, session: &str, key: &SentFileKey) -> Result<Option<SentFile>> {
        self.with(session, |e| {
            e.file
                .data
                .sent_files
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| *v)
        })
    }

    async fn cache_sent_file(
        &self,
        session: &str,
        key: &SentFileKey,
        file: &SentFile,
    ) -> Result<()> {
        self.change(session, |f| {
            f.data.sent_files.retain(|(k, _)| k != key);
            f.data.sent_files.push((*key, *file));
            f.data.sent_files.sort_by_key(|(k, _)| *k);
        })
    }

    async fn acquire_lease(&self, session: &str, request: &LeaseRequest) -> Result<LeaseInfo> {
        let mut leases = lock(&self.leases);
        let granted = request.decide(session, leases.get(session))?;
        leases.insert(session.to_owned(), granted.clone());
        Ok(granted)
    }

    async fn release_lease(&self, session: &str, owner: &str, now_ms: i64) -> Result<bool> {
        let mut leases = lock(&self.leases);
        let (remove, live) = decide_release(leases.get(session), owner, now_ms);
        if remove {
            leases.remove(session);
        }
        Ok(live)
    }
}
