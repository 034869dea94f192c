//! [`MongoStore`]: the [`SessionStore`] on a MongoDB deployment.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use futures::TryStreamExt;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::options::{ClientOptions, IndexOptions, ReturnDocument};
use mongodb::{Client, ClientSession, Collection, Database, IndexModel};
use session_core::lease::{now_ms, validate_lease};
use session_core::model::{normalize_phone, normalize_username};
use session_core::{
    Capabilities, DcOption, Error, LeaseInfo, Peer, PeerId, PeerTable, Result, SelfUser, SentFile,
    SentFileKey, SessionData, SessionMeta, SessionStore, UpdateState, UpdateStateChange,
};

use crate::codec::{self, Fields, field};
use crate::error::{
    BACKEND, COMMAND_NOT_FOUND, Fail, NAMESPACE_EXISTS, ResultExt, WriteCommandError, db_error,
    fail_error, is_duplicate_key, is_transient, is_unknown_commit_result,
};
use crate::retry::Backoff;
use crate::url::{redact_url, scrub};

/// The newest layout this build reads and writes.
pub const SCHEMA_VERSION: i64 = 1;

/// The database used when neither the builder nor the URL names one.
pub const DEFAULT_DATABASE: &str = "mtsession";

/// The collection-name prefix used unless the builder sets another.
pub const DEFAULT_PREFIX: &str = "mtsession_";

/// How long the driver looks for a usable server before an operation fails
/// with [`Error::Unavailable`], unless the URL sets `serverSelectionTimeoutMS`.
pub const DEFAULT_SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a write lock (used only without transactions) lives unless released.
pub(crate) const LOCK_TTL: Duration = Duration::from_secs(60);

/// Values per `$in` list. Large `$in` lists cost time quadratic in their
/// length on SecantusDB (a 10 000-value list takes minutes); chunks keep
/// every query linear there and cost real MongoDB nothing for usual batches.
const IN_CHUNK: usize = 100;

/// Statements per `update` command when peers are written.
const UPDATE_CHUNK_STATEMENTS: usize = 1_000;
/// Bytes of statements per `update` command (well below the 16 MiB limit).
const UPDATE_CHUNK_BYTES: usize = 8 * 1024 * 1024;

/// Runs `$body` as one unit of work with `$s` bound to a `ClientSession`.
///
/// With transactions the body runs inside one, which is committed at the
/// end, and the whole unit is retried (with backoff) after a transient
/// error such as a write conflict with a concurrent transaction. Without
/// transactions the body's operations run one after the other while the
/// store holds the write locks of the sessions listed in `[...]`, so that
/// writers through this crate still never interleave on one session.
macro_rules! atomically {
    ($store:expr, [$($lock:expr),* $(,)?], |$s:ident| $body:block) => {{
        let store: &MongoStore = $store;
        if store.transactions {
            let mut backoff = Backoff::new();
            loop {
                let mut $s: ClientSession = store.client.start_session().await.db()?;
                $s.start_transaction().await.db()?;
                let outcome = async { $body };
                let outcome: std::result::Result<_, Fail> = outcome.await;
                match outcome {
                    Ok(value) => match commit(&mut $s).await {
                        Ok(()) => break Ok(value),
                        Err(e) if is_transient(&e) && backoff.wait().await => continue,
                        Err(e) => break Err(db_error(e)),
                    },
                    Err(fail) => {
                        // Best effort: the server also aborts an abandoned
                        // transaction after its lifetime limit.
                        let _ = $s.abort_transaction().await;
                        match fail {
                            Fail::Db(e) if is_transient(&e) && backoff.wait().await => continue,
                            fail => break Err(fail_error(fail)),
                        }
                    }
                }
            }
        } else {
            let locks = store.lock_sessions(&[$($lock),*]).await?;
            let outcome = async {
                let mut $s: ClientSession = store.client.start_session().await?;
                $body
            };
            let outcome: std::result::Result<_, Fail> = outcome.await;
            store.unlock_sessions(locks).await;
            outcome.map_err(fail_error)
        }
    }};
}

/// Commits, sending the commit again while its outcome is unknown.
async fn commit(session: &mut ClientSession) -> std::result::Result<(), mongodb::error::Error> {
    let mut attempts = 0;
    loop {
        match session.commit_transaction().await {
            Err(e) if is_unknown_commit_result(&e) && attempts < 3 => attempts += 1,
            other => return other,
        }
    }
}

/// Configures and opens a [`MongoStore`].
#[derive(Clone)]
pub struct MongoStoreBuilder {
    url: String,
    database: Option<String>,
    prefix: String,
    server_selection_timeout: Option<Duration>,
    use_transactions: bool,
}

impl fmt::Debug for MongoStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoStoreBuilder")
            .field("url", &redact_url(&self.url))
            .field("database", &self.database)
            .field("prefix", &self.prefix)
            .field("server_selection_timeout", &self.server_selection_timeout)
            .field("use_transactions", &self.use_transactions)
            .finish()
    }
}

impl MongoStoreBuilder {
    /// A builder for the deployment at `url` (`mongodb://…` or `mongodb+srv://…`).
    pub fn new(url: impl Into<String>) -> Self {
        MongoStoreBuilder {
            url: url.into(),
            database: None,
            prefix: DEFAULT_PREFIX.to_owned(),
            server_selection_timeout: None,
            use_transactions: true,
        }
    }

    /// The database that holds the collections. Default: the URL's
    /// database path if it has one, else [`DEFAULT_DATABASE`].
    pub fn database(mut self, name: impl Into<String>) -> Self {
        self.database = Some(name.into());
        self
    }

    /// The prefix of every collection name (default [`DEFAULT_PREFIX`]), so
    /// several stores can share one database.
    pub fn collection_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long to look for a usable server before failing with
    /// [`Error::Unavailable`]. Overrides the URL's `serverSelectionTimeoutMS`;
    /// without either the default is [`DEFAULT_SERVER_SELECTION_TIMEOUT`].
    pub fn server_selection_timeout(mut self, timeout: Duration) -> Self {
        self.server_selection_timeout = Some(timeout);
        self
    }

    /// Whether to use multi-document transactions where the deployment
    /// supports them (default `true`). Without them, multi-document writes
    /// (imports, copies, deletes, username moves) are no longer atomic and
    /// run under per-session write locks instead (see the crate docs); the
    /// switch exists to run that fallback path on a replica set.
    pub fn use_transactions(mut self, yes: bool) -> Self {
        self.use_transactions = yes;
        self
    }

    /// Connects, checks the schema version and creates collections and indexes.
    ///
    /// Fails with [`Error::Unavailable`] when no server answers within the
    /// server selection timeout, [`Error::InvalidInput`] for a malformed URL,
    /// database name or prefix, and [`Error::UnsupportedSchemaVersion`] when
    /// the collections were written by a newer version.
    pub async fn open(self) -> Result<MongoStore> {
        let redacted = redact_url(&self.url);
        let mut options = ClientOptions::parse(&self.url).await.map_err(|e| {
            let message = scrub(&e.to_string(), &self.url);
            if matches!(
                e.kind.as_ref(),
                mongodb::error::ErrorKind::DnsResolve { .. }
            ) {
                // DNS messages name hosts, never credentials.
                Error::Unavailable {
                    backend: BACKEND,
                    message: format!("cannot resolve {redacted}: {message}"),
                    source: Some(Box::new(e)),
                }
            } else {
                // Parse errors may quote the string: keep only the scrubbed text.
                Error::invalid(format!(
                    "expected a MongoDB connection string \
                     (mongodb://[user:password@]host[:port][,host...][/database][?options]), \
                     got {redacted}: {message}"
                ))
            }
        })?;
        let timeout = self
            .server_selection_timeout
            .or(options.server_selection_timeout)
            .unwrap_or(DEFAULT_SERVER_SELECTION_TIMEOUT);
        options.server_selection_timeout = Some(timeout);
        if options.app_name.is_none() {
            options.app_name = Some("mtsession".to_owned());
        }
        let database = self
            .database
            .clone()
            .or_else(|| options.default_database.clone())
            .unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
        validate_database_name(&database)?;
        validate_prefix(&self.prefix)?;
        let client = Client::with_options(options).map_err(|e| {
            Error::invalid(format!(
                "cannot use the MongoDB connection string {redacted}: {}",
                scrub(&e.to_string(), &self.url)
            ))
        })?;
        let server = ServerInfo::probe(&client).await.map_err(|e| match e {
            Error::Unavailable {
                message, source, ..
            } => Error::Unavailable {
                backend: BACKEND,
                message: format!(
                    "no MongoDB server at {redacted} answered within {timeout:?}: {}",
                    scrub(&message, &self.url)
                ),
                source,
            },
            other => other,
        })?;
        let db = client.database(&database);
        let name = |suffix: &str| format!("{}{suffix}", self.prefix);
        let store = MongoStore {
            sessions: db.collection(&name("sessions")),
            peers: db.collection(&name("peers")),
            files: db.collection(&name("files")),
            leases: db.collection(&name("leases")),
            locks: db.collection(&name("locks")),
            meta: db.collection(&name("meta")),
            peers_name: name("peers"),
            transactions: self.use_transactions && server.transactions,
            server,
            client,
            db,
            database,
            prefix: self.prefix,
            redacted_url: redacted,
        };
        store.check_schema().await?;
        store.create_layout().await?;
        Ok(store)
    }
}

fn validate_database_name(name: &str) -> Result<()> {
    const FORBIDDEN: &[char] = &[
        '/', '\\', '.', ' ', '"', '$', '*', '<', '>', ':', '|', '?', '\0',
    ];
    if name.is_empty() || name.len() > 63 || name.contains(FORBIDDEN) {
        return Err(Error::invalid(format!(
            "a MongoDB database name is 1 to 63 bytes without / \\ . space \" $ * < > : | ? or NUL, got {name:?}"
        )));
    }
    Ok(())
}

fn validate_prefix(prefix: &str) -> Result<()> {
    if prefix.contains(['$', '\0']) || prefix.starts_with("system.") || prefix.len() > 100 {
        return Err(Error::invalid(format!(
            "a collection prefix is at most 100 bytes without $ or NUL and does not start with \"system.\", got {prefix:?}"
        )));
    }
    Ok(())
}

/// What the deployment told us when we connected.
#[derive(Clone, Debug)]
struct ServerInfo {
    /// `buildInfo.version`, when the server answers it.
    version: Option<String>,
    /// A replica set (or mongos) recent enough for transactions.
    transactions: bool,
}

impl ServerInfo {
    async fn probe(client: &Client) -> Result<ServerInfo> {
        let admin = client.database("admin");
        let hello = match admin.run_command(doc! { "hello": 1 }).await {
            Ok(reply) => reply,
            Err(e) if crate::error::code(&e) == Some(COMMAND_NOT_FOUND) => {
                admin.run_command(doc! { "isMaster": 1 }).await.db()?
            }
            Err(e) => return Err(db_error(e)),
        };
        let fields = Fields::new(&hello, "the server's hello reply");
        let max_wire = fields.opt_i64("maxWireVersion")?.unwrap_or(0);
        let sessions = hello.contains_key("logicalSessionTimeoutMinutes");
        let replica_set = hello.contains_key("setName");
        let mongos = fields.opt_str("msg")? == Some("isdbgrid");
        let transactions =
            sessions && ((replica_set && max_wire >= 7) || (mongos && max_wire >= 8));
        let version = match admin.run_command(doc! { "buildInfo": 1 }).await {
            Ok(info) => info.get_str("version").ok().map(str::to_owned),
            Err(_) => None,
        };
        Ok(ServerInfo {
            version,
            transactions,
        })
    }
}

/// Sessions in MongoDB collections: one document per session, one per
/// cached peer and one per sent file. See the crate docs for the layout.
pub struct MongoStore {
    client: Client,
    db: Database,
    database: String,
    prefix: String,
    redacted_url: String,
    server: ServerInfo,
    transactions: bool,
    sessions: Collection<Document>,
    peers: Collection<Document>,
    peers_name: String,
    files: Collection<Document>,
    leases: Collection<Document>,
    locks: Collection<Document>,
    meta: Collection<Document>,
}

impl fmt::Debug for MongoStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoStore")
            .field("url", &self.redacted_url)
            .field("database", &self.database)
            .field("prefix", &self.prefix)
            .field("server_version", &self.server.version)
            .field("transactions", &self.transactions)
            .finish()
    }
}

impl MongoStore {
    /// Opens a store on `url` with the default database and prefix.
    pub async fn connect(url: &str) -> Result<MongoStore> {
        MongoStoreBuilder::new(url).open().await
    }

    /// A builder to set the database, the prefix and timeouts.
    pub fn builder(url: impl Into<String>) -> MongoStoreBuilder {
        MongoStoreBuilder::new(url)
    }

    /// The database holding the collections.
    pub fn database_name(&self) -> &str {
        &self.database
    }

    /// The prefix of every collection name.
    pub fn collection_prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether multi-document writes run in transactions.
    pub fn uses_transactions(&self) -> bool {
        self.transactions
    }

    /// The server's version as `buildInfo` reports it.
    pub fn server_version(&self) -> Option<&str> {
        self.server.version.as_deref()
    }

    /// The driver's client, e.g. to share its connection pool.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn what(&self, collection: &Collection<Document>) -> String {
        format!("mongo collection {}.{}", self.database, collection.name())
    }

    fn session_what(&self, session: &str) -> String {
        format!(
            "mongo collection {}.{}, session {session:?}",
            self.database,
            self.sessions.name()
        )
    }

    async fn check_schema(&self) -> Result<()> {
        let what = self.what(&self.meta);
        for _ in 0..3 {
            if let Some(doc) = self.meta.find_one(doc! { "_id": "schema" }).await.db()? {
                let found = Fields::new(&doc, what.clone()).i64("version")?;
                if found > SCHEMA_VERSION {
                    return Err(Error::UnsupportedSchemaVersion {
                        what: format!(
                            "mongo database {:?} (prefix {:?})",
                            self.database, self.prefix
                        ),
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
                if found < 1 {
                    return Err(Error::corrupt(
                        what,
                        format!("schema version should be 1..={SCHEMA_VERSION}, found {found}"),
                    ));
                }
                return Ok(());
            }
            let result = self
                .meta
                .update_one(
                    doc! { "_id": "schema" },
                    doc! { "$setOnInsert": { "version": SCHEMA_VERSION, "created_at": DateTime::now() } },
                )
                .upsert(true)
                .await;
            match result {
                Ok(_) => {}
                // Another process created it at the same moment: read theirs.
                Err(e) if is_duplicate_key(&e) => {}
                Err(e) => return Err(db_error(e)),
            }
        }
        Err(Error::corrupt(
            what,
            "the schema document vanished while it was being read",
        ))
    }

    async fn create_layout(&self) -> Result<()> {
        // Collections used inside transactions must exist beforehand on
        // servers before 4.4, which cannot create them in a transaction.
        for collection in [&self.sessions, &self.peers, &self.files, &self.leases] {
            match self.db.create_collection(collection.name()).await {
                Ok(()) => {}
                Err(e) if crate::error::code(&e) == Some(NAMESPACE_EXISTS) => {}
                Err(e) => return Err(db_error(e)),
            }
        }
        let index = |keys: Document, name: &str, unique: bool| {
            IndexModel::builder()
                .keys(keys)
                .options(
                    IndexOptions::builder()
                        .name(name.to_owned())
                        .unique(unique)
                        .build(),
                )
                .build()
        };
        self.peers
            .create_indexes([
                index(doc! { "session": 1, "id": 1 }, "session_id", true),
                index(
                    doc! { "session": 1, "usernames.key": 1 },
                    "session_username",
                    false,
                ),
                index(doc! { "session": 1, "phone": 1 }, "session_phone", false),
            ])
            .await
            .db()?;
        self.files
            .create_index(index(
                doc! { "session": 1, "md5": 1, "size": 1, "kind": 1 },
                "session_file",
                true,
            ))
            .await
            .db()?;
        Ok(())
    }

    /// One field set of a session document, or `NotFound`.
    async fn session_fields(&self, session: &str, projection: Document) -> Result<Document> {
        self.sessions
            .find_one(doc! { "_id": session })
            .projection(projection)
            .await
            .db()?
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

    /// Updates session-level fields and `updated_at`; `NotFound` if absent.
    async fn touch_session(&self, session: &str, set: Document) -> Result<()> {
        let result = self
            .sessions
            .update_one(
                doc! { "_id": session },
                doc! { "$set": set, "$max": { field::UPDATED_AT: DateTime::from_millis(now_ms()) } },
            )
            .await
            .db()?;
        if result.matched_count == 0 {
            return Err(Error::session_not_found(session));
        }
        Ok(())
    }

    /// Inside a unit of work: bumps the session's revision, so that
    /// concurrent transactions writing the same session's peers or files
    /// conflict (and one retries) and a concurrent delete cannot leave
    /// orphans behind. `NotFound` if the session does not exist.
    async fn lock_session(
        &self,
        s: &mut ClientSession,
        session: &str,
    ) -> std::result::Result<(), Fail> {
        let result = self
            .sessions
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

    /// Without transactions: takes the write locks of `sessions` (in a fixed
    /// order, so two callers never wait on each other in a cycle). A lock
    /// is a document in `{prefix}locks` that expires after [`LOCK_TTL`], so
    /// a crashed holder blocks nobody for long.
    async fn lock_sessions(&self, sessions: &[&str]) -> Result<Vec<(String, ObjectId)>> {
        let names: BTreeSet<&str> = sessions.iter().copied().collect();
        let mut held = Vec::with_capacity(names.len());
        for name in names {
            match self.lock_session_document(name).await {
                Ok(token) => held.push((name.to_owned(), token)),
                Err(e) => {
                    self.unlock_sessions(held).await;
                    return Err(e);
                }
            }
        }
        Ok(held)
    }

    async fn lock_session_document(&self, session: &str) -> Result<ObjectId> {
        let token = ObjectId::new();
        let ttl_ms = i64::try_from(LOCK_TTL.as_millis()).unwrap_or(i64::MAX);
        let mut backoff = Backoff::new();
        loop {
            let now = now_ms();
            let result = self
                .locks
                .update_one(
                    doc! { "_id": session, "expires_at": { "$lte": DateTime::from_millis(now) } },
                    doc! { "$set": { "token": token, "expires_at": DateTime::from_millis(now.saturating_add(ttl_ms)) } },
                )
                .upsert(true)
                .await;
            match result {
                Ok(_) => return Ok(token),
                // Held by another writer: wait for it.
                Err(e) if is_duplicate_key(&e) => {
                    if !backoff.wait().await {
                        return Err(Error::backend(
                            BACKEND,
                            WriteCommandError {
                                command: "lock",
                                code: 0,
                                message: format!(
                                    "gave up waiting for the write lock of session {session:?} after {:?}",
                                    crate::retry::MAX_RETRY_TIME
                                ),
                            },
                        ));
                    }
                }
                Err(e) => return Err(db_error(e)),
            }
        }
    }

    /// Gives write locks back. A lock that cannot be removed (the server went
    /// away) expires by itself.
    async fn unlock_sessions(&self, held: Vec<(String, ObjectId)>) {
        for (session, token) in held {
            let _ = self
                .locks
                .delete_one(doc! { "_id": session, "token": token })
                .await;
        }
    }

    /// Every document of `collection` matching `filter`, inside a unit of work.
    async fn find_all(
        collection: &Collection<Document>,
        s: &mut ClientSession,
        filter: Document,
        sort: Option<Document>,
        projection: Option<Document>,
    ) -> std::result::Result<Vec<Document>, Fail> {
        let mut find = collection.find(filter);
        if let Some(sort) = sort {
            find = find.sort(sort);
        }
        if let Some(projection) = projection {
            find = find.projection(projection);
        }
        let mut cursor = find.session(&mut *s).await?;
        let docs: Vec<Document> = cursor.stream(&mut *s).try_collect().await?;
        Ok(docs)
    }

    /// Upserts whole peer documents with as few `update` commands as the
    /// size limits allow (one for a usual batch).
    async fn write_peers(
        &self,
        s: &mut ClientSession,
        session: &str,
        peers: &[&Peer],
    ) -> std::result::Result<(), Fail> {
        let mut statements = Vec::new();
        let mut bytes = 0;
        for (i, peer) in peers.iter().enumerate() {
            let statement = doc! {
                "q": { "session": session, "id": peer.id.marked() },
                "u": codec::peer_doc(session, peer),
                "upsert": true,
            };
            bytes += statement.to_vec().map(|v| v.len()).unwrap_or(1024);
            statements.push(Bson::Document(statement));
            let last = i + 1 == peers.len();
            if last || statements.len() >= UPDATE_CHUNK_STATEMENTS || bytes >= UPDATE_CHUNK_BYTES {
                self.run_update(s, std::mem::take(&mut statements)).await?;
                bytes = 0;
            }
        }
        Ok(())
    }

    async fn run_update(
        &self,
        s: &mut ClientSession,
        statements: Vec<Bson>,
    ) -> std::result::Result<(), Fail> {
        let mut command = doc! {
            "update": self.peers_name.as_str(),
            "updates": statements,
            "ordered": true,
        };
        if !self.transactions
            && let Some(concern) = self.client.write_concern()
            && let Ok(concern) = mongodb::bson::serialize_to_bson(concern)
        {
            command.insert("writeConcern", concern);
        }
        let reply = self.db.run_command(command).session(&mut *s).await?;
        if let Ok(errors) = reply.get_array("writeErrors")
            && let Some(Bson::Document(first)) = errors.first()
        {
            return Err(WriteCommandError {
                command: "update",
                code: first.get_i32("code").unwrap_or(0),
                message: first.get_str("errmsg").unwrap_or_default().to_owned(),
            }
            .into());
        }
        if let Ok(concern) = reply.get_document("writeConcernError") {
            return Err(WriteCommandError {
                command: "update",
                code: concern.get_i32("code").unwrap_or(0),
                message: concern.get_str("errmsg").unwrap_or_default().to_owned(),
            }
            .into());
        }
        Ok(())
    }

    /// Inserts documents inside a unit of work (the driver splits large batches).
    async fn insert_all(
        collection: &Collection<Document>,
        s: &mut ClientSession,
        docs: Vec<Document>,
    ) -> std::result::Result<(), Fail> {
        if !docs.is_empty() {
            collection.insert_many(docs).session(&mut *s).await?;
        }
        Ok(())
    }

    fn decode_peers(&self, docs: &[Document]) -> Result<Vec<Peer>> {
        docs.iter()
            .map(|doc| codec::decode_peer(doc, self.peers.name()))
            .collect()
    }
}

fn session_names(docs: Vec<Document>, what: &str) -> Result<Vec<String>> {
    docs.into_iter()
        .map(|doc| match doc.get("_id") {
            Some(Bson::String(name)) => Ok(name.clone()),
            _ => Err(Error::corrupt(
                what,
                "a session document's _id should be its name (a string)",
            )),
        })
        .collect()
}

#[async_trait]
impl SessionStore for MongoStore {
    fn backend_name(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
            .durable(true)
            .shared_between_processes(true)
            .atomic_multi_key_writes(self.transactions)
            .leases(true)
    }

    async fn list(&self) -> Result<Vec<String>> {
        let docs: Vec<Document> = self
            .sessions
            .find(doc! {})
            .projection(doc! { "_id": 1 })
            .sort(doc! { "_id": 1 })
            .await
            .db()?
            .try_collect()
            .await
            .db()?;
        let mut names = session_names(docs, &self.what(&self.sessions))?;
        names.sort();
        Ok(names)
    }

    async fn exists(&self, session: &str) -> Result<bool> {
        Ok(self
            .sessions
            .find_one(doc! { "_id": session })
            .projection(doc! { "_id": 1 })
            .await
            .db()?
            .is_some())
    }

    async fn create(&self, session: &str) -> Result<()> {
        let now = now_ms();
        let doc = codec::session_doc(session, &SessionData::default(), now, now, 0);
        if self.transactions {
            // One insert: a session's peers and files never outlive it,
            // since delete removes them in the same transaction.
            return match self.sessions.insert_one(doc).await {
                Ok(_) => Ok(()),
                Err(e) if is_duplicate_key(&e) => Err(Error::session_exists(session)),
                Err(e) => Err(db_error(e)),
            };
        }
        atomically!(self, [session], |s| {
            let existing = self
                .sessions
                .find_one(doc! { "_id": session })
                .projection(doc! { "_id": 1 })
                .session(&mut s)
                .await?;
            if existing.is_some() {
                return Err(Fail::Store(Error::session_exists(session)));
            }
            // Without transactions a delete interrupted half-way may have
            // left peers or files of a former session of this name behind.
            self.peers
                .delete_many(doc! { "session": session })
                .session(&mut s)
                .await?;
            self.files
                .delete_many(doc! { "session": session })
                .session(&mut s)
                .await?;
            match self.sessions.insert_one(doc.clone()).session(&mut s).await {
                Ok(_) => Ok(()),
                Err(e) if is_duplicate_key(&e) => Err(Fail::Store(Error::session_exists(session))),
                Err(e) => Err(Fail::Db(e)),
            }
        })
    }

    async fn delete(&self, session: &str) -> Result<bool> {
        atomically!(self, [session], |s| {
            let deleted = self
                .sessions
                .delete_one(doc! { "_id": session })
                .session(&mut s)
                .await?;
            self.peers
                .delete_many(doc! { "session": session })
                .session(&mut s)
                .await?;
            self.files
                .delete_many(doc! { "session": session })
                .session(&mut s)
                .await?;
            Ok(deleted.deleted_count > 0)
        })
    }

    async fn copy(&self, from: &str, to: &str, overwrite: bool) -> Result<()> {
        atomically!(self, [from, to], |s| {
            let Some(mut doc) = self
                .sessions
                .find_one(doc! { "_id": from })
                .session(&mut s)
                .await?
            else {
                return Err(Fail::Store(Error::session_not_found(from)));
            };
            if from == to {
                return if overwrite {
                    Ok(())
                } else {
                    Err(Fail::Store(Error::session_exists(to)))
                };
            }
            let target = self
                .sessions
                .find_one(doc! { "_id": to })
                .projection(doc! { field::REV: 1 })
                .session(&mut s)
                .await?;
            if target.is_some() && !overwrite {
                return Err(Fail::Store(Error::session_exists(to)));
            }
            let source = codec::decode_session(&doc, &self.session_what(from))?;
            let now = now_ms();
            let rev = match &target {
                Some(t) => {
                    Fields::new(t, self.session_what(to))
                        .opt_i64(field::REV)?
                        .unwrap_or(0)
                        + 1
                }
                None => 0,
            };
            doc.insert(field::ID, to);
            doc.insert(field::CREATED_AT, DateTime::from_millis(now));
            doc.insert(
                field::UPDATED_AT,
                DateTime::from_millis(now.max(source.updated_at_ms)),
            );
            doc.insert(field::REV, rev);
            self.peers
                .delete_many(doc! { "session": to })
                .session(&mut s)
                .await?;
            self.files
                .delete_many(doc! { "session": to })
                .session(&mut s)
                .await?;
            self.sessions
                .replace_one(doc! { "_id": to }, doc)
                .upsert(true)
                .session(&mut s)
                .await?;
            for collection in [&self.peers, &self.files] {
                let docs = Self::find_all(collection, &mut s, doc! { "session": from }, None, None)
                    .await?;
                let docs = docs
                    .into_iter()
                    .map(|mut doc| {
                        doc.remove("_id");
                        doc.insert("session", to);
                        doc
                    })
                    .collect();
                Self::insert_all(collection, &mut s, docs).await?;
            }
            Ok(())
        })
    }

    async fn flush(&self) -> Result<()> {
        Ok(())
    }

    async fn export(&self, session: &str) -> Result<SessionData> {
        let (doc, peers, files) = atomically!(self, [session], |s| {
            let Some(doc) = self
                .sessions
                .find_one(doc! { "_id": session })
                .session(&mut s)
                .await?
            else {
                return Err(Fail::Store(Error::session_not_found(session)));
            };
            let peers = Self::find_all(
                &self.peers,
                &mut s,
                doc! { "session": session },
                Some(doc! { "session": 1, "id": 1 }),
                None,
            )
            .await?;
            let files =
                Self::find_all(&self.files, &mut s, doc! { "session": session }, None, None)
                    .await?;
            Ok((doc, peers, files))
        })?;
        let stored = codec::decode_session(&doc, &self.session_what(session))?;
        let files_what = self.what(&self.files);
        let mut data = SessionData {
            home_dc: stored.home_dc,
            dcs: stored.dcs,
            self_user: stored.self_user,
            api_id: stored.api_id,
            test_mode: stored.test_mode,
            takeout_id: stored.takeout_id,
            update_state: stored.update_state,
            peers: self.decode_peers(&peers)?,
            sent_files: files
                .iter()
                .map(|doc| codec::decode_file(doc, &files_what))
                .collect::<Result<_>>()?,
        };
        data.canonicalize();
        Ok(data)
    }

    async fn import(&self, session: &str, data: &SessionData) -> Result<()> {
        // The ownership rules decide which peer keeps a username or phone
        // that several imported peers claim, exactly as a sequence of
        // cache_peers calls would.
        let mut table = PeerTable::default();
        for peer in &data.peers {
            table.upsert(peer);
        }
        atomically!(self, [session], |s| {
            let existing = self
                .sessions
                .find_one(doc! { "_id": session })
                .projection(doc! { field::CREATED_AT: 1, field::REV: 1 })
                .session(&mut s)
                .await?;
            let now = now_ms();
            let (created, rev) = match &existing {
                Some(doc) => {
                    let fields = Fields::new(doc, self.session_what(session));
                    (
                        fields.millis(field::CREATED_AT)?,
                        fields.opt_i64(field::REV)?.unwrap_or(0) + 1,
                    )
                }
                None => (now, 0),
            };
            self.peers
                .delete_many(doc! { "session": session })
                .session(&mut s)
                .await?;
            self.files
                .delete_many(doc! { "session": session })
                .session(&mut s)
                .await?;
            self.sessions
                .replace_one(
                    doc! { "_id": session },
                    codec::session_doc(session, data, created, now, rev),
                )
                .upsert(true)
                .session(&mut s)
                .await?;
            let peers = table
                .iter()
                .map(|peer| codec::peer_doc(session, peer))
                .collect();
            Self::insert_all(&self.peers, &mut s, peers).await?;
            let files = data
                .sent_files
                .iter()
                .map(|(key, file)| codec::file_doc(session, key, file))
                .collect();
            Self::insert_all(&self.files, &mut s, files).await?;
            Ok(())
        })
    }

    async fn home_dc(&self, session: &str) -> Result<i32> {
        let doc = self
            .session_fields(session, doc! { field::HOME_DC: 1 })
            .await?;
        Fields::new(&doc, self.session_what(session)).i32(field::HOME_DC)
    }

    async fn set_home_dc(&self, session: &str, dc_id: i32) -> Result<()> {
        self.touch_session(session, doc! { field::HOME_DC: dc_id })
            .await
    }

    async fn dc_options(&self, session: &str) -> Result<Vec<DcOption>> {
        let doc = self.session_fields(session, doc! { field::DCS: 1 }).await?;
        let what = self.session_what(session);
        match Fields::new(&doc, what.clone()).opt_doc(field::DCS)? {
            None => Ok(Vec::new()),
            Some(dcs) => codec::decode_dcs(dcs, &what),
        }
    }

    async fn set_dc_option(&self, session: &str, dc: &DcOption) -> Result<()> {
        let key = format!("{}.{}", field::DCS, dc.id);
        self.touch_session(session, doc! { key: codec::dc_doc(dc) })
            .await
    }

    async fn self_user(&self, session: &str) -> Result<Option<SelfUser>> {
        let doc = self
            .session_fields(session, doc! { field::SELF_USER: 1 })
            .await?;
        let what = self.session_what(session);
        match Fields::new(&doc, what.clone()).opt_doc(field::SELF_USER)? {
            None => Ok(None),
            Some(user) => {
                let fields = Fields::new(user, format!("{what}, self_user"));
                Ok(Some(SelfUser {
                    id: fields.i64("id")?,
                    is_bot: fields.opt_bool("is_bot")?.unwrap_or(false),
                }))
            }
        }
    }

    async fn set_self_user(&self, session: &str, user: Option<SelfUser>) -> Result<()> {
        self.touch_session(
            session,
            doc! { field::SELF_USER: codec::self_user_value(user) },
        )
        .await
    }

    async fn metadata(&self, session: &str) -> Result<SessionMeta> {
        let doc = self
            .session_fields(
                session,
                doc! { field::API_ID: 1, field::TEST_MODE: 1, field::CREATED_AT: 1, field::UPDATED_AT: 1 },
            )
            .await?;
        let fields = Fields::new(&doc, self.session_what(session));
        Ok(SessionMeta {
            api_id: fields.opt_i32(field::API_ID)?,
            test_mode: fields.opt_bool(field::TEST_MODE)?.unwrap_or(false),
            created_at_ms: fields.millis(field::CREATED_AT)?,
            updated_at_ms: fields.millis(field::UPDATED_AT)?,
        })
    }

    async fn set_metadata(
        &self,
        session: &str,
        api_id: Option<i32>,
        test_mode: bool,
    ) -> Result<()> {
        self.touch_session(
            session,
            doc! { field::API_ID: codec::opt_i32(api_id), field::TEST_MODE: test_mode },
        )
        .await
    }

    async fn takeout_id(&self, session: &str) -> Result<Option<i64>> {
        let doc = self
            .session_fields(session, doc! { field::TAKEOUT_ID: 1 })
            .await?;
        Fields::new(&doc, self.session_what(session)).opt_i64(field::TAKEOUT_ID)
    }

    async fn set_takeout_id(&self, session: &str, takeout_id: Option<i64>) -> Result<()> {
        self.touch_session(
            session,
            doc! { field::TAKEOUT_ID: codec::opt_i64(takeout_id) },
        )
        .await
    }

    async fn update_state(&self, session: &str) -> Result<UpdateState> {
        let doc = self
            .session_fields(session, doc! { field::UPDATE_STATE: 1 })
            .await?;
        let what = self.session_what(session);
        match Fields::new(&doc, what.clone()).opt_doc(field::UPDATE_STATE)? {
            None => Ok(UpdateState::default()),
            Some(state) => codec::decode_state(state, &what),
        }
    }

    async fn set_update_state(&self, session: &str, change: &UpdateStateChange) -> Result<()> {
        let state = field::UPDATE_STATE;
        let update = match change {
            UpdateStateChange::All(all) => doc! { "$set": { state: codec::state_doc(all) } },
            UpdateStateChange::Primary { pts, date, seq } => doc! { "$set": {
                format!("{state}.pts"): pts,
                format!("{state}.date"): date,
                format!("{state}.seq"): seq,
            } },
            UpdateStateChange::Secondary { qts } => {
                doc! { "$set": { format!("{state}.qts"): qts } }
            }
            UpdateStateChange::Channel { id, pts } => {
                doc! { "$set": { format!("{state}.channels.{id}"): pts } }
            }
            UpdateStateChange::RemoveChannel { id } => {
                doc! { "$unset": { format!("{state}.channels.{id}"): "" } }
            }
        };
        let result = self
            .sessions
            .update_one(doc! { "_id": session }, update)
            .await
            .db()?;
        if result.matched_count == 0 {
            return Err(Error::session_not_found(session));
        }
        Ok(())
    }

    async fn cache_peers(&self, session: &str, peers: &[Peer]) -> Result<()> {
        if peers.is_empty() {
            return self.require(session).await;
        }
        let ids: Vec<i64> = peers
            .iter()
            .map(|p| p.id.marked())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        atomically!(self, [session], |s| {
            self.lock_session(&mut s, session).await?;
            let mut stored = Vec::new();
            for chunk in ids.chunks(IN_CHUNK) {
                let filter = doc! { "session": session, "id": { "$in": chunk } };
                stored.extend(Self::find_all(&self.peers, &mut s, filter, None, None).await?);
            }
            let stored = self.decode_peers(&stored)?;
            // Merge in memory with the reference rules, starting from what
            // is stored for these ids.
            let mut table = PeerTable::default();
            for peer in &stored {
                table.upsert(peer);
            }
            for peer in peers {
                table.upsert(peer);
            }
            let before: HashMap<PeerId, &Peer> = stored.iter().map(|p| (p.id, p)).collect();
            let changed: Vec<&Peer> = table
                .iter()
                .filter(|peer| before.get(&peer.id).is_none_or(|old| *old != *peer))
                .collect();
            self.write_peers(&mut s, session, &changed).await?;
            // Usernames and phones now belong to the peers of this batch:
            // take them from every other peer of the session. A key or phone
            // that a peer of the batch already held before is held by no one
            // else (each one has a single owner), so only new claims are
            // looked up, and re-caching known peers costs no query here.
            let mut keys = BTreeSet::new();
            let mut phones = BTreeSet::new();
            for peer in table.iter() {
                let old = before.get(&peer.id);
                let old_keys = old.map(|p| p.username_keys()).unwrap_or_default();
                keys.extend(
                    peer.username_keys()
                        .into_iter()
                        .filter(|k| !old_keys.contains(k)),
                );
                if let Some(phone) = &peer.phone
                    && old.and_then(|p| p.phone.as_ref()) != Some(phone)
                {
                    phones.insert(phone.clone());
                }
            }
            let keys: Vec<String> = keys.into_iter().collect();
            let phones: Vec<String> = phones.into_iter().collect();
            let batch: BTreeSet<i64> = ids.iter().copied().collect();
            let mut lost_keys = BTreeSet::new();
            let mut key_losers = BTreeSet::new();
            for chunk in keys.chunks(IN_CHUNK) {
                let filter = doc! { "session": session, "usernames.key": { "$in": chunk } };
                for doc in Self::find_all(&self.peers, &mut s, filter, None, None).await? {
                    let peer = codec::decode_peer(&doc, self.peers.name())?;
                    if !batch.contains(&peer.id.marked()) {
                        key_losers.insert(peer.id.marked());
                        lost_keys.extend(
                            peer.username_keys()
                                .into_iter()
                                .filter(|k| keys.binary_search(k).is_ok()),
                        );
                    }
                }
            }
            if !key_losers.is_empty() {
                let losers: Vec<i64> = key_losers.into_iter().collect();
                let lost: Vec<String> = lost_keys.into_iter().collect();
                self.peers
                    .update_many(
                        doc! { "session": session, "id": { "$in": losers } },
                        doc! { "$pull": { "usernames": { "key": { "$in": lost } } } },
                    )
                    .session(&mut s)
                    .await?;
            }
            let mut phone_losers = BTreeSet::new();
            for chunk in phones.chunks(IN_CHUNK) {
                let filter = doc! { "session": session, "phone": { "$in": chunk } };
                let projection = Some(doc! { "id": 1 });
                for doc in Self::find_all(&self.peers, &mut s, filter, None, projection).await? {
                    let id = Fields::new(&doc, self.what(&self.peers)).i64("id")?;
                    if !batch.contains(&id) {
                        phone_losers.insert(id);
                    }
                }
            }
            if !phone_losers.is_empty() {
                let losers: Vec<i64> = phone_losers.into_iter().collect();
                self.peers
                    .update_many(
                        doc! { "session": session, "id": { "$in": losers } },
                        doc! { "$unset": { "phone": "" } },
                    )
                    .session(&mut s)
                    .await?;
            }
            Ok(())
        })
    }

    async fn peers(&self, session: &str, ids: &[PeerId]) -> Result<Vec<Option<Peer>>> {
        if ids.is_empty() {
            self.require(session).await?;
            return Ok(Vec::new());
        }
        let unique: BTreeSet<i64> = ids.iter().map(|id| id.marked()).collect();
        let unique: Vec<i64> = unique.into_iter().collect();
        let mut docs: Vec<Document> = Vec::with_capacity(unique.len());
        if let [one] = unique.as_slice() {
            // The usual lookup: one id, one document, no cursor.
            let filter = doc! { "session": session, "id": one };
            docs.extend(self.peers.find_one(filter).await.db()?);
        } else {
            for chunk in unique.chunks(IN_CHUNK) {
                let filter = doc! { "session": session, "id": { "$in": chunk } };
                let found: Vec<Document> = self
                    .peers
                    .find(filter)
                    .await
                    .db()?
                    .try_collect()
                    .await
                    .db()?;
                docs.extend(found);
            }
        }
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

    async fn peer_by_username(&self, session: &str, username: &str) -> Result<Option<Peer>> {
        let key = normalize_username(username);
        if !key.is_empty()
            && let Some(doc) = self
                .peers
                .find_one(doc! { "session": session, "usernames.key": &key })
                .await
                .db()?
        {
            return Ok(Some(codec::decode_peer(&doc, self.peers.name())?));
        }
        self.require(session).await?;
        Ok(None)
    }

    async fn peer_by_phone(&self, session: &str, phone: &str) -> Result<Option<Peer>> {
        if let Ok(digits) = normalize_phone(phone)
            && let Some(doc) = self
                .peers
                .find_one(doc! { "session": session, "phone": &digits })
                .await
                .db()?
        {
            return Ok(Some(codec::decode_peer(&doc, self.peers.name())?));
        }
        self.require(session).await?;
        Ok(None)
    }

    async fn peer_count(&self, session: &str) -> Result<u64> {
        let count = self
            .peers
            .count_documents(doc! { "session": session })
            .await
            .db()?;
        if count == 0 {
            self.require(session).await?;
        }
        Ok(count)
    }

    async fn sent_file(&self, session: &str, key: &SentFileKey) -> Result<Option<SentFile>> {
        if let Some(doc) = self
            .files
            .find_one(codec::file_filter(session, key))
            .await
            .db()?
        {
            return Ok(Some(codec::decode_file_value(
                &doc,
                &self.what(&self.files),
            )?));
        }
        self.require(session).await?;
        Ok(None)
    }

    async fn cache_sent_file(
        &self,
        session: &str,
        key: &SentFileKey,
        file: &SentFile,
    ) -> Result<()> {
        atomically!(self, [session], |s| {
            self.lock_session(&mut s, session).await?;
            self.files
                .update_one(
                    codec::file_filter(session, key),
                    doc! { "$set": { "file_id": file.id, "hash": file.access_hash } },
                )
                .upsert(true)
                .session(&mut s)
                .await?;
            Ok(())
        })
    }

    async fn acquire_lease(&self, session: &str, owner: &str, ttl: Duration) -> Result<LeaseInfo> {
        validate_lease(owner, ttl)?;
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let mut backoff = Backoff::new();
        loop {
            let now = now_ms();
            let expires = now.saturating_add(ttl_ms);
            let result = self
                .leases
                .find_one_and_update(
                    doc! {
                        "_id": session,
                        "$or": [ { "owner": owner }, { "expires_at": { "$lte": DateTime::from_millis(now) } } ],
                    },
                    doc! { "$set": { "owner": owner, "expires_at": DateTime::from_millis(expires) } },
                )
                .upsert(true)
                .return_document(ReturnDocument::After)
                .await;
            match result {
                Ok(_) => {
                    return Ok(LeaseInfo {
                        session: session.to_owned(),
                        owner: owner.to_owned(),
                        expires_at_ms: expires,
                    });
                }
                // The filter missed because another owner holds a live
                // lease, and the upsert then collided with its document.
                Err(e) if is_duplicate_key(&e) => {
                    let current = self.leases.find_one(doc! { "_id": session }).await.db()?;
                    if let Some(current) = current {
                        let fields = Fields::new(&current, self.what(&self.leases));
                        let holder = fields.str("owner")?;
                        let until = fields.millis("expires_at")?;
                        if holder != owner && until > now_ms() {
                            return Err(Error::LeaseHeld {
                                session: session.to_owned(),
                                owner: holder.to_owned(),
                                until_ms: until,
                            });
                        }
                    }
                    // It expired or was released in the meantime: try again.
                    if !backoff.wait().await {
                        return Err(db_error(e));
                    }
                }
                Err(e) => return Err(db_error(e)),
            }
        }
    }

    async fn release_lease(&self, session: &str, owner: &str) -> Result<bool> {
        let removed = self
            .leases
            .find_one_and_delete(doc! { "_id": session, "owner": owner })
            .await
            .db()?;
        match removed {
            None => Ok(false),
            Some(doc) => {
                let until = Fields::new(&doc, self.what(&self.leases)).millis("expires_at")?;
                Ok(until > now_ms())
            }
        }
    }
}
