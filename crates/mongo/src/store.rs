//! [`MongoStore`]: the persistence primitives of [`SessionBackend`] on a
//! MongoDB deployment.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use futures::TryStreamExt;
use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::{Client, ClientSession, Collection, Database};
use session_core::backend::{decide_release, import_times};
use session_core::{
    Capabilities, ChannelsWrite, DcOption, Error, HeaderWrite, ImportMode, LeaseInfo, LeaseRequest,
    OpenMode, Peer, PeerBatch, PeerId, Result, SentFile, SentFileKey, SessionBackend, SessionData,
    SessionHeader, UpdateState, UpdateStateWrite,
};

use crate::codec::{self, Fields, field};
use crate::error::{Access, BACKEND, Fail, Place, is_duplicate_key};
use crate::unit::step;
use crate::watch::Watch;

/// The newest layout this build reads and writes.
pub const SCHEMA_VERSION: i64 = 1;

/// Values per `$in` list. Large `$in` lists cost time quadratic in their
/// length on SecantusDB (a 10 000-value list takes minutes); chunks keep
/// every query linear there and cost real MongoDB nothing for usual batches.
pub(crate) const IN_CHUNK: usize = 100;

/// Documents per `insert` command when a session is imported or copied.
const INSERT_CHUNK: usize = 1_000;

/// How many times a lease compare-and-set that found the lease changed
/// under it is tried again before the call gives up with [`Error::Busy`].
const LEASE_ATTEMPTS: u32 = 64;

/// The collections of one store.
#[derive(Clone, Debug)]
pub(crate) struct Collections {
    pub(crate) sessions: Collection<Document>,
    pub(crate) peers: Collection<Document>,
    pub(crate) files: Collection<Document>,
    pub(crate) leases: Collection<Document>,
    pub(crate) locks: Collection<Document>,
    pub(crate) meta: Collection<Document>,
}

impl Collections {
    pub(crate) fn new(db: &Database, prefix: &str) -> Self {
        let c = |suffix: &str| db.collection::<Document>(&format!("{prefix}{suffix}"));
        Collections {
            sessions: c("sessions"),
            peers: c("peers"),
            files: c("files"),
            leases: c("leases"),
            locks: c("locks"),
            meta: c("meta"),
        }
    }
}

/// What the store knows about itself.
pub(crate) struct Inner {
    pub(crate) client: Client,
    pub(crate) db: Database,
    pub(crate) database: String,
    pub(crate) prefix: String,
    pub(crate) place: Place,
    pub(crate) watch: Arc<Watch>,
    pub(crate) mode: OpenMode,
    pub(crate) transactions: bool,
    pub(crate) collections: Collections,
}

impl Inner {
    /// Runs one call, bounded in time, with its failure mapped.
    pub(crate) async fn call<T>(
        &self,
        access: Access,
        call: impl std::future::Future<Output = std::result::Result<T, Fail>>,
    ) -> Result<T> {
        self.watch.call(&self.place, access, call).await
    }

    pub(crate) fn what(&self, collection: &Collection<Document>) -> String {
        format!("mongo collection {}.{}", self.database, collection.name())
    }

    pub(crate) fn session_what(&self, session: &str) -> String {
        format!(
            "mongo collection {}.{}, session {session:?}",
            self.database,
            self.collections.sessions.name()
        )
    }
}

/// Sessions in MongoDB collections, one document per session, one per cached
/// peer and one per sent file: the [`SessionBackend`] of session-mongo. Wrap
/// it in a [`session_core::Store`] (or call
/// [`BackendExt::open`](session_core::BackendExt::open)) to use it.
///
/// Cheap to clone; every clone shares one driver client (and its connection
/// pool). See the crate docs for the layout and what each error means.
#[derive(Clone)]
pub struct MongoStore {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for MongoStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoStore")
            .field("url", &self.inner.place.url)
            .field("database", &self.inner.database)
            .field("prefix", &self.inner.prefix)
            .field("mode", &self.inner.mode)
            .field("transactions", &self.inner.transactions)
            .finish()
    }
}

impl MongoStore {
    /// The database holding the collections.
    pub fn database_name(&self) -> &str {
        &self.inner.database
    }

    /// The prefix of every collection name.
    pub fn collection_prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// Whether multi-document writes run in transactions.
    pub fn uses_transactions(&self) -> bool {
        self.inner.transactions
    }

    /// How the store was opened.
    pub fn mode(&self) -> OpenMode {
        self.inner.mode
    }

    /// The server URL with its password replaced by `***`.
    pub fn redacted_url(&self) -> &str {
        &self.inner.place.url
    }

    /// The driver's client, e.g. to share its connection pool.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    fn c(&self) -> &Collections {
        &self.inner.collections
    }

    /// Refuses writes on a store opened [`OpenMode::ReadOnly`].
    fn writable(&self) -> Result<()> {
        if self.inner.mode.writes() {
            Ok(())
        } else {
            Err(Error::unsupported(
                BACKEND,
                "writes to a store opened read-only",
            ))
        }
    }

    /// One read of the session document with a projection, or `NotFound`.
    async fn session_doc(&self, session: &str, projection: Document) -> Result<Document> {
        let sessions = &self.c().sessions;
        self.inner
            .call(Access::Read, async move {
                Ok(sessions
                    .find_one(doc! { "_id": session })
                    .projection(projection)
                    .await?)
            })
            .await?
            .ok_or_else(|| Error::session_not_found(session))
    }

    /// `NotFound` unless the session exists.
    async fn require(&self, session: &str) -> Result<()> {
        if self.exists(session).await? {
            Ok(())
        } else {
            Err(Error::session_not_found(session))
        }
    }

    /// One update of the session document; `NotFound` if it is missing.
    async fn update_session(&self, session: &str, update: Document) -> Result<()> {
        self.writable()?;
        let sessions = &self.c().sessions;
        let matched = self
            .inner
            .call(Access::Write, async move {
                Ok(sessions
                    .update_one(doc! { "_id": session }, update)
                    .await?
                    .matched_count)
            })
            .await?;
        if matched == 0 {
            return Err(Error::session_not_found(session));
        }
        Ok(())
    }

    fn decode_peers(&self, docs: &[Document]) -> Result<Vec<Peer>> {
        docs.iter()
            .map(|doc| codec::decode_peer(doc, self.c().peers.name()))
            .collect()
    }

    async fn peer_by(&self, session: &str, filter: Document) -> Result<Option<Peer>> {
        let peers = &self.c().peers;
        let found = self
            .inner
            .call(
                Access::Read,
                async move { Ok(peers.find_one(filter).await?) },
            )
            .await?;
        match found {
            Some(doc) => Ok(Some(codec::decode_peer(&doc, peers.name())?)),
            None => {
                self.require(session).await?;
                Ok(None)
            }
        }
    }
}

/// Inside a unit of work: bumps the session's revision, so that concurrent
/// transactions writing the same session's peers or files conflict (and one
/// runs again) and a concurrent delete cannot leave orphans behind.
/// `NotFound` if the session does not exist.
pub(crate) async fn bump(
    sessions: &Collection<Document>,
    s: &mut ClientSession,
    session: &str,
) -> std::result::Result<(), Fail> {
    let result = sessions
        .update_one(
            doc! { "_id": session },
            doc! { "$inc": { field::REV: 1_i64 } },
        )
        .session(&mut *s)
        .await?;
    if result.matched_count == 0 {
        return Err(Fail::Store(Error::session_not_found(session)));
    }
    Ok(())
}

/// Every document matching `filter`, inside a unit of work.
pub(crate) async fn find_all(
    collection: &Collection<Document>,
    s: &mut ClientSession,
    filter: Document,
    sort: Option<Document>,
) -> std::result::Result<Vec<Document>, Fail> {
    let mut find = collection.find(filter);
    if let Some(sort) = sort {
        find = find.sort(sort);
    }
    let mut cursor = find.session(&mut *s).await?;
    let docs: Vec<Document> = cursor.stream(&mut *s).try_collect().await?;
    Ok(docs)
}

/// Inserts documents inside a unit of work, [`INSERT_CHUNK`] per command.
async fn insert_all(
    collection: &Collection<Document>,
    s: &mut ClientSession,
    docs: Vec<Document>,
) -> std::result::Result<(), Fail> {
    let mut docs = docs.into_iter().peekable();
    while docs.peek().is_some() {
        let chunk: Vec<Document> = docs.by_ref().take(INSERT_CHUNK).collect();
        collection.insert_many(chunk).session(&mut *s).await?;
    }
    Ok(())
}

/// Copies every document of session `from` in `collection` to session `to`,
/// inside a unit of work, without decoding them.
async fn copy_documents(
    collection: &Collection<Document>,
    s: &mut ClientSession,
    from: &str,
    to: &str,
) -> std::result::Result<(), Fail> {
    let mut cursor = collection
        .find(doc! { field::SESSION: from })
        .session(&mut *s)
        .await?;
    let mut chunk = Vec::with_capacity(INSERT_CHUNK);
    while let Some(doc) = cursor.next(&mut *s).await {
        let mut doc = doc?;
        doc.remove("_id");
        doc.insert(field::SESSION, to);
        chunk.push(doc);
        if chunk.len() == INSERT_CHUNK {
            collection
                .insert_many(std::mem::take(&mut chunk))
                .session(&mut *s)
                .await?;
        }
    }
    if !chunk.is_empty() {
        collection.insert_many(chunk).session(&mut *s).await?;
    }
    Ok(())
}

/// Deletes the peers and files of a session (those a former session of the
/// name left behind, when a deletion without transactions was interrupted).
async fn delete_contents(
    c: &Collections,
    s: &mut ClientSession,
    session: &str,
) -> std::result::Result<(), Fail> {
    for collection in [&c.peers, &c.files] {
        collection
            .delete_many(doc! { field::SESSION: session })
            .session(&mut *s)
            .await?;
    }
    Ok(())
}

/// The stored `(created, updated)` times and revision of a session document.
fn stored_times(doc: &Document, what: &str) -> Result<((i64, i64), i64)> {
    let fields = Fields::new(doc, what);
    Ok((
        (
            fields.millis(field::CREATED_AT)?,
            fields.millis(field::UPDATED_AT)?,
        ),
        fields.opt_i64(field::REV)?.unwrap_or(0),
    ))
}

/// The projection of a session document's times and revision.
fn times_projection() -> Document {
    doc! { field::CREATED_AT: 1, field::UPDATED_AT: 1, field::REV: 1 }
}

/// Sets the times and revision of a session document about to be written.
fn set_times(doc: &mut Document, (created, updated): (i64, i64), rev: i64) {
    doc.insert(field::CREATED_AT, DateTime::from_millis(created));
    doc.insert(field::UPDATED_AT, DateTime::from_millis(updated));
    doc.insert(field::REV, rev);
}

/// Parses a stored lease document.
fn parse_lease(doc: &Document, session: &str, what: &str) -> Result<(LeaseInfo, Bson)> {
    let fields = Fields::new(doc, format!("{what}, lease of {session:?}"));
    let expires = doc.get("expires_at").cloned().unwrap_or(Bson::Null);
    Ok((
        LeaseInfo {
            session: session.to_owned(),
            owner: fields.str("owner")?.to_owned(),
            expires_at_ms: fields.millis("expires_at")?,
        },
        expires,
    ))
}

#[async_trait]
impl SessionBackend for MongoStore {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
            .durable(true)
            .shared_between_processes(true)
            .atomic_multi_key_writes(self.inner.transactions)
            .leases(true)
    }

    async fn list(&self) -> Result<Vec<String>> {
        let sessions = &self.c().sessions;
        let docs: Vec<Document> = self
            .inner
            .call(Access::Read, async move {
                Ok(sessions
                    .find(doc! {})
                    .projection(doc! { "_id": 1 })
                    .sort(doc! { "_id": 1 })
                    .await?
                    .try_collect()
                    .await?)
            })
            .await?;
        let what = self.inner.what(sessions);
        let mut names = docs
            .into_iter()
            .map(|doc| match doc.get("_id") {
                Some(Bson::String(name)) => Ok(name.clone()),
                _ => Err(Error::corrupt(
                    what.as_str(),
                    "a session document's _id should be its name (a string)",
                )),
            })
            .collect::<Result<Vec<_>>>()?;
        // The server sorts strings by its collation's rules for the binary
        // comparison; sorting again costs little and does not depend on it.
        names.sort();
        Ok(names)
    }

    async fn exists(&self, session: &str) -> Result<bool> {
        let sessions = &self.c().sessions;
        Ok(self
            .inner
            .call(Access::Read, async move {
                Ok(sessions
                    .find_one(doc! { "_id": session })
                    .projection(doc! { "_id": 1 })
                    .await?)
            })
            .await?
            .is_some())
    }

    async fn delete(&self, session: &str) -> Result<bool> {
        self.writable()?;
        let c = self.c();
        self.inner
            .unit(
                Access::Write,
                &[session],
                step!(s, {
                    // Contents first: a deletion without transactions that
                    // is interrupted leaves the session, not orphans.
                    delete_contents(c, &mut s, session).await?;
                    let deleted = c
                        .sessions
                        .delete_one(doc! { "_id": session })
                        .session(&mut s)
                        .await?;
                    Ok(deleted.deleted_count > 0)
                }),
            )
            .await
    }

    async fn export(&self, session: &str) -> Result<SessionData> {
        let c = self.c();
        let (doc, peers, files) = self
            .inner
            .unit(
                Access::Read,
                &[session],
                step!(s, {
                    let Some(doc) = c
                        .sessions
                        .find_one(doc! { "_id": session })
                        .session(&mut s)
                        .await?
                    else {
                        return Err(Fail::Store(Error::session_not_found(session)));
                    };
                    let peers = find_all(
                        &c.peers,
                        &mut s,
                        doc! { field::SESSION: session },
                        Some(doc! { field::SESSION: 1, "id": 1 }),
                    )
                    .await?;
                    let files =
                        find_all(&c.files, &mut s, doc! { field::SESSION: session }, None).await?;
                    Ok((doc, peers, files))
                }),
            )
            .await?;
        let what = self.inner.session_what(session);
        let header = codec::decode_header(&doc, &what)?;
        let files_what = self.inner.what(&c.files);
        let mut data = SessionData {
            home_dc: header.home_dc,
            dcs: codec::decode_dcs_of(&doc, &what)?,
            self_user: header.self_user,
            api_id: header.api_id,
            test_mode: header.test_mode,
            takeout_id: header.takeout_id,
            update_state: codec::decode_state_of(&doc, &what)?,
            peers: self.decode_peers(&peers)?,
            sent_files: files
                .iter()
                .map(|doc| codec::decode_file(doc, &files_what))
                .collect::<Result<_>>()?,
        };
        data.canonicalize();
        Ok(data)
    }

    async fn import(
        &self,
        session: &str,
        data: &SessionData,
        mode: ImportMode,
        now_ms: i64,
    ) -> Result<()> {
        self.writable()?;
        let c = self.c();
        let what = self.inner.session_what(session);
        let what = what.as_str();
        self.inner
            .unit(
                Access::Write,
                &[session],
                step!(s, {
                    let mut doc = codec::session_doc(session, data, now_ms, now_ms, 0);
                    if mode == ImportMode::CreateOnly {
                        // The insert decides: of two racing creations, the
                        // second finds the first's document (or conflicts
                        // with its transaction and, run again, finds it).
                        match c.sessions.insert_one(doc).session(&mut s).await {
                            Ok(_) => {}
                            Err(e) if is_duplicate_key(&e) => {
                                return Err(Fail::Store(Error::session_exists(session)));
                            }
                            Err(e) => return Err(Fail::Db(e)),
                        }
                        delete_contents(c, &mut s, session).await?;
                    } else {
                        let existing = c
                            .sessions
                            .find_one(doc! { "_id": session })
                            .projection(times_projection())
                            .session(&mut s)
                            .await?;
                        let (times, rev) = match &existing {
                            Some(stored) => {
                                let (times, rev) = stored_times(stored, what)?;
                                (import_times(Some(times), now_ms), rev + 1)
                            }
                            None => (import_times(None, now_ms), 0),
                        };
                        set_times(&mut doc, times, rev);
                        delete_contents(c, &mut s, session).await?;
                        c.sessions
                            .replace_one(doc! { "_id": session }, doc)
                            .upsert(true)
                            .session(&mut s)
                            .await?;
                    }
                    let peers = data
                        .peers
                        .iter()
                        .map(|peer| codec::peer_doc(session, peer))
                        .collect();
                    insert_all(&c.peers, &mut s, peers).await?;
                    let files = data
                        .sent_files
                        .iter()
                        .map(|(key, file)| codec::file_doc(session, key, file))
                        .collect();
                    insert_all(&c.files, &mut s, files).await?;
                    Ok(())
                }),
            )
            .await
    }

    async fn copy(&self, from: &str, to: &str, overwrite: bool, now_ms: i64) -> Result<()> {
        self.writable()?;
        let c = self.c();
        let what = self.inner.session_what(to);
        let what = what.as_str();
        self.inner
            .unit(
                Access::Write,
                &[from, to],
                step!(s, {
                    let Some(mut doc) = c
                        .sessions
                        .find_one(doc! { "_id": from })
                        .session(&mut s)
                        .await?
                    else {
                        return Err(Fail::Store(Error::session_not_found(from)));
                    };
                    doc.insert(field::ID, to);
                    if overwrite {
                        let existing = c
                            .sessions
                            .find_one(doc! { "_id": to })
                            .projection(times_projection())
                            .session(&mut s)
                            .await?;
                        let (times, rev) = match &existing {
                            Some(stored) => {
                                let (times, rev) = stored_times(stored, what)?;
                                (import_times(Some(times), now_ms), rev + 1)
                            }
                            None => (import_times(None, now_ms), 0),
                        };
                        set_times(&mut doc, times, rev);
                        delete_contents(c, &mut s, to).await?;
                        c.sessions
                            .replace_one(doc! { "_id": to }, doc)
                            .upsert(true)
                            .session(&mut s)
                            .await?;
                    } else {
                        set_times(&mut doc, import_times(None, now_ms), 0);
                        match c.sessions.insert_one(doc).session(&mut s).await {
                            Ok(_) => {}
                            Err(e) if is_duplicate_key(&e) => {
                                return Err(Fail::Store(Error::session_exists(to)));
                            }
                            Err(e) => return Err(Fail::Db(e)),
                        }
                        delete_contents(c, &mut s, to).await?;
                    }
                    copy_documents(&c.peers, &mut s, from, to).await?;
                    copy_documents(&c.files, &mut s, from, to).await?;
                    Ok(())
                }),
            )
            .await
    }

    async fn header(&self, session: &str) -> Result<SessionHeader> {
        let doc = self
            .session_doc(session, doc! { field::DCS: 0, field::UPDATE_STATE: 0 })
            .await?;
        codec::decode_header(&doc, &self.inner.session_what(session))
    }

    async fn write_header(&self, session: &str, write: &HeaderWrite) -> Result<()> {
        let mut set = Document::new();
        if let Some(home_dc) = write.home_dc {
            set.insert(field::HOME_DC, home_dc);
        }
        if let Some(user) = write.self_user {
            set.insert(field::SELF_USER, codec::self_user_value(user));
        }
        if let Some(api_id) = write.api_id {
            set.insert(field::API_ID, codec::opt_i32(api_id));
        }
        if let Some(test_mode) = write.test_mode {
            set.insert(field::TEST_MODE, test_mode);
        }
        if let Some(takeout_id) = write.takeout_id {
            set.insert(field::TAKEOUT_ID, codec::opt_i64(takeout_id));
        }
        let mut update =
            doc! { "$max": { field::UPDATED_AT: DateTime::from_millis(write.updated_at_ms) } };
        if !set.is_empty() {
            update.insert("$set", set);
        }
        self.update_session(session, update).await
    }

    async fn dc_options(&self, session: &str) -> Result<Vec<DcOption>> {
        let doc = self.session_doc(session, doc! { field::DCS: 1 }).await?;
        codec::decode_dcs_of(&doc, &self.inner.session_what(session))
    }

    async fn write_dc_option(
        &self,
        session: &str,
        dc: &DcOption,
        updated_at_ms: i64,
    ) -> Result<()> {
        let key = format!("{}.{}", field::DCS, dc.id);
        self.update_session(
            session,
            doc! {
                "$set": { key: codec::dc_doc(dc) },
                "$max": { field::UPDATED_AT: DateTime::from_millis(updated_at_ms) },
            },
        )
        .await
    }

    async fn home(&self, session: &str) -> Result<(SessionHeader, Vec<DcOption>)> {
        let doc = self
            .session_doc(session, doc! { field::UPDATE_STATE: 0 })
            .await?;
        let what = self.inner.session_what(session);
        Ok((
            codec::decode_header(&doc, &what)?,
            codec::decode_dcs_of(&doc, &what)?,
        ))
    }

    async fn update_state(&self, session: &str) -> Result<UpdateState> {
        let doc = self
            .session_doc(session, doc! { field::UPDATE_STATE: 1 })
            .await?;
        codec::decode_state_of(&doc, &self.inner.session_what(session))
    }

    async fn write_update_state(&self, session: &str, write: &UpdateStateWrite) -> Result<()> {
        let state = field::UPDATE_STATE;
        let mut set = Document::new();
        let mut unset = Document::new();
        for (name, value) in [
            ("pts", write.pts),
            ("qts", write.qts),
            ("date", write.date),
            ("seq", write.seq),
        ] {
            if let Some(value) = value {
                set.insert(format!("{state}.{name}"), value);
            }
        }
        match &write.channels {
            ChannelsWrite::Keep => {}
            ChannelsWrite::Replace(channels) => {
                let table: Document = channels
                    .iter()
                    .map(|(id, pts)| (id.to_string(), Bson::Int32(*pts)))
                    .collect();
                set.insert(format!("{state}.channels"), table);
            }
            ChannelsWrite::Set { id, pts } => {
                set.insert(format!("{state}.channels.{id}"), *pts);
            }
            ChannelsWrite::Remove { id } => {
                unset.insert(format!("{state}.channels.{id}"), "");
            }
        }
        let mut update = Document::new();
        if !set.is_empty() {
            update.insert("$set", set);
        }
        if !unset.is_empty() {
            update.insert("$unset", unset);
        }
        if update.is_empty() {
            // Nothing to write; still a write to a session that must exist.
            self.writable()?;
            return self.require(session).await;
        }
        self.update_session(session, update).await
    }

    async fn peers(&self, session: &str, ids: &[PeerId]) -> Result<Vec<Option<Peer>>> {
        if ids.is_empty() {
            self.require(session).await?;
            return Ok(Vec::new());
        }
        let mut unique: Vec<i64> = ids.iter().map(|id| id.marked()).collect();
        unique.sort_unstable();
        unique.dedup();
        let peers = &self.c().peers;
        let unique = &unique;
        let docs: Vec<Document> = self
            .inner
            .call(Access::Read, async move {
                let mut docs = Vec::with_capacity(unique.len());
                if let [one] = unique.as_slice() {
                    // The usual lookup: one id, one document, no cursor.
                    let filter = doc! { field::SESSION: session, "id": one };
                    docs.extend(peers.find_one(filter).await?);
                } else {
                    for chunk in unique.chunks(IN_CHUNK) {
                        let filter = doc! { field::SESSION: session, "id": { "$in": chunk } };
                        let found: Vec<Document> = peers.find(filter).await?.try_collect().await?;
                        docs.extend(found);
                    }
                }
                Ok(docs)
            })
            .await?;
        if docs.len() < unique.len() {
            self.require(session).await?;
        }
        let found: HashMap<PeerId, Peer> = self
            .decode_peers(&docs)?
            .into_iter()
            .map(|p| (p.id, p))
            .collect();
        Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
    }

    async fn peer_by_username(&self, session: &str, key: &str) -> Result<Option<Peer>> {
        self.peer_by(
            session,
            doc! { field::SESSION: session, "usernames.key": key },
        )
        .await
    }

    async fn peer_by_phone(&self, session: &str, phone: &str) -> Result<Option<Peer>> {
        self.peer_by(session, doc! { field::SESSION: session, "phone": phone })
            .await
    }

    async fn peer_count(&self, session: &str) -> Result<u64> {
        let peers = &self.c().peers;
        let count = self
            .inner
            .call(Access::Read, async move {
                Ok(peers
                    .count_documents(doc! { field::SESSION: session })
                    .await?)
            })
            .await?;
        if count == 0 {
            self.require(session).await?;
        }
        Ok(count)
    }

    async fn cache_peers(&self, session: &str, batch: &PeerBatch) -> Result<()> {
        self.writable()?;
        if batch.is_empty() {
            return self.require(session).await;
        }
        crate::peers::cache_peers(&self.inner, session, batch).await
    }

    async fn sent_file(&self, session: &str, key: &SentFileKey) -> Result<Option<SentFile>> {
        let files = &self.c().files;
        let found = self
            .inner
            .call(Access::Read, async move {
                Ok(files.find_one(codec::file_filter(session, key)).await?)
            })
            .await?;
        match found {
            Some(doc) => Ok(Some(codec::decode_file_value(
                &doc,
                &self.inner.what(files),
            )?)),
            None => {
                self.require(session).await?;
                Ok(None)
            }
        }
    }

    async fn cache_sent_file(
        &self,
        session: &str,
        key: &SentFileKey,
        file: &SentFile,
    ) -> Result<()> {
        self.writable()?;
        let c = self.c();
        self.inner
            .unit(
                Access::Write,
                &[session],
                step!(s, {
                    bump(&c.sessions, &mut s, session).await?;
                    c.files
                        .update_one(
                            codec::file_filter(session, key),
                            doc! { "$set": { "file_id": file.id, "hash": file.access_hash } },
                        )
                        .upsert(true)
                        .session(&mut s)
                        .await?;
                    Ok(())
                }),
            )
            .await
    }

    async fn acquire_lease(&self, session: &str, request: &LeaseRequest) -> Result<LeaseInfo> {
        self.writable()?;
        let leases = &self.c().leases;
        let what = self.inner.what(leases);
        let started = Instant::now();
        for _ in 0..LEASE_ATTEMPTS {
            let current = self
                .inner
                .call(Access::Read, async move {
                    Ok(leases.find_one(doc! { "_id": session }).await?)
                })
                .await?;
            let current = current
                .map(|doc| parse_lease(&doc, session, &what))
                .transpose()?;
            let granted = request.decide(session, current.as_ref().map(|(lease, _)| lease))?;
            let value = doc! {
                "owner": granted.owner.as_str(),
                "expires_at": DateTime::from_millis(granted.expires_at_ms),
            };
            let stored = self
                .inner
                .call(Access::Write, async move {
                    match current {
                        None => {
                            let mut lease = value;
                            lease.insert("_id", session);
                            match leases.insert_one(lease).await {
                                Ok(_) => Ok(true),
                                Err(e) if is_duplicate_key(&e) => Ok(false),
                                Err(e) => Err(Fail::Db(e)),
                            }
                        }
                        Some((lease, expires)) => Ok(leases
                            .update_one(
                                doc! {
                                    "_id": session,
                                    "owner": lease.owner.as_str(),
                                    "expires_at": expires,
                                },
                                doc! { "$set": value },
                            )
                            .await?
                            .matched_count
                            == 1),
                    }
                })
                .await?;
            if stored {
                return Ok(granted);
            }
        }
        Err(Error::Busy {
            what: format!("the lease of mongo session {session:?}"),
            waited: started.elapsed(),
            source: None,
        })
    }

    async fn release_lease(&self, session: &str, owner: &str, now_ms: i64) -> Result<bool> {
        self.writable()?;
        let leases = &self.c().leases;
        let what = self.inner.what(leases);
        let started = Instant::now();
        for _ in 0..LEASE_ATTEMPTS {
            let current = self
                .inner
                .call(Access::Read, async move {
                    Ok(leases.find_one(doc! { "_id": session }).await?)
                })
                .await?;
            let current = current
                .map(|doc| parse_lease(&doc, session, &what))
                .transpose()?;
            let (remove, was_live) =
                decide_release(current.as_ref().map(|(lease, _)| lease), owner, now_ms);
            let Some((lease, expires)) = current.filter(|_| remove) else {
                return Ok(was_live);
            };
            let deleted = self
                .inner
                .call(Access::Write, async move {
                    Ok(leases
                        .delete_one(doc! {
                            "_id": session,
                            "owner": lease.owner.as_str(),
                            "expires_at": expires,
                        })
                        .await?
                        .deleted_count)
                })
                .await?;
            if deleted == 1 {
                return Ok(was_live);
            }
        }
        Err(Error::Busy {
            what: format!("the lease of mongo session {session:?}"),
            waited: started.elapsed(),
            source: None,
        })
    }
}
