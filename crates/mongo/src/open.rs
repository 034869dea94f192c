//! Opening a [`MongoStore`]: the URL and its options, the builder, the
//! schema check, and the collections and indexes.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, IndexModel};
use session_core::schema::check_version;
use session_core::url::{redact, shorten};
use session_core::{Error, OpenMode, Result, StoreUrl};

use crate::codec::Fields;
use crate::error::{
    Access, BACKEND, COMMAND_NOT_FOUND, Fail, NAMESPACE_EXISTS, Place, is_duplicate_key,
};
use crate::store::{Collections, Inner, MongoStore, SCHEMA_VERSION};
use crate::url::secrets;
use crate::watch::Watch;

/// The database used when neither the builder nor the URL names one.
pub const DEFAULT_DATABASE: &str = "mtsession";

/// The collection-name prefix used unless the builder or the URL sets another.
pub const DEFAULT_PREFIX: &str = "mtsession_";

/// How long a call waits for a usable server before it fails with
/// [`Error::Unavailable`], unless the URL's `serverSelectionTimeoutMS` or
/// the builder sets another.
pub const DEFAULT_SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a call waits for the answer to each command it sent, unless the
/// URL's `response_timeout_ms` or the builder sets another.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// The URL schemes the store serves.
pub const SCHEMES: [&str; 2] = ["mongodb", "mongodb+srv"];

/// The URL options of mtsession itself: `prefix=` (the collection-name
/// prefix) and `response_timeout_ms=` (how long a call waits for each
/// answer, in milliseconds).
pub const STORE_OPTIONS: [&str; 2] = ["prefix", "response_timeout_ms"];

/// The URL options the MongoDB driver reads (compared without regard to
/// case). `socketTimeoutMS` is not among them: the driver refuses it, and
/// `response_timeout_ms` does its work.
pub const ENGINE_OPTIONS: [&str; 39] = [
    "appName",
    "authMechanism",
    "authMechanismProperties",
    "authSource",
    "compressors",
    "connectTimeoutMS",
    "directConnection",
    "enableOverloadRetargeting",
    "heartbeatFrequencyMS",
    "journal",
    "loadBalanced",
    "localThresholdMS",
    "maxAdaptiveRetries",
    "maxConnecting",
    "maxIdleTimeMS",
    "maxPoolSize",
    "maxStalenessSeconds",
    "minPoolSize",
    "readConcernLevel",
    "readPreference",
    "readPreferenceTags",
    "replicaSet",
    "retryReads",
    "retryWrites",
    "serverMonitoringMode",
    "serverSelectionTimeoutMS",
    "srvMaxHosts",
    "srvServiceName",
    "ssl",
    "tls",
    "tlsAllowInvalidCertificates",
    "tlsCAFile",
    "tlsCertificateKeyFile",
    "tlsInsecure",
    "uuidRepresentation",
    "w",
    "waitQueueTimeoutMS",
    "wTimeoutMS",
    "zlibCompressionLevel",
];

/// Every URL option accepted besides `session`.
pub(crate) fn all_options() -> &'static [&'static str] {
    static ALL: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
        let mut all: Vec<&'static str> = STORE_OPTIONS.to_vec();
        for option in ENGINE_OPTIONS {
            if !all.iter().any(|o| o.eq_ignore_ascii_case(option)) {
                all.push(option);
            }
        }
        all
    });
    &ALL
}

/// The URL shapes, for messages.
pub(crate) const SYNTAX: &str = "mongodb://[USER:PASSWORD@]HOST[:PORT][,HOST...][/DATABASE]\
     [?prefix=P&...] or mongodb+srv://...";

/// The longest timeout accepted.
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// The revision of the collections and indexes: the schema document records
/// it once they all exist, so that later opens skip creating them.
pub(crate) const LAYOUT: i64 = 1;

/// Builds a [`MongoStore`]: database, collection prefix, timeouts,
/// transactions and open mode. Options set here win over the URL's.
#[derive(Clone)]
pub struct MongoStoreBuilder {
    url: String,
    database: Option<String>,
    prefix: Option<String>,
    server_selection_timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
    response_timeout: Option<Duration>,
    use_transactions: bool,
    mode: OpenMode,
}

impl fmt::Debug for MongoStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoStoreBuilder")
            .field("url", &redact(&self.url))
            .field("database", &self.database)
            .field("prefix", &self.prefix)
            .field("server_selection_timeout", &self.server_selection_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("use_transactions", &self.use_transactions)
            .field("mode", &self.mode)
            .finish()
    }
}

impl MongoStore {
    /// Opens the store at `url` (`mongodb://…` or `mongodb+srv://…`),
    /// creating its collections when absent ([`OpenMode::Create`]), with the
    /// options the URL gives and defaults for the rest.
    pub async fn open(url: &str) -> Result<MongoStore> {
        MongoStore::builder(url).open().await
    }

    /// A builder for the store at `url`.
    pub fn builder(url: &str) -> MongoStoreBuilder {
        MongoStoreBuilder {
            url: url.to_owned(),
            database: None,
            prefix: None,
            server_selection_timeout: None,
            connect_timeout: None,
            response_timeout: None,
            use_transactions: true,
            mode: OpenMode::Create,
        }
    }
}

impl MongoStoreBuilder {
    /// The database that holds the collections. Default: the URL's
    /// database path if it has one, else [`DEFAULT_DATABASE`].
    pub fn database(mut self, name: impl Into<String>) -> Self {
        self.database = Some(name.into());
        self
    }

    /// The prefix of every collection name (default [`DEFAULT_PREFIX`], or
    /// the URL's `prefix=`), so several stores can share one database.
    pub fn collection_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// How long a call waits for a usable server (and, more generally, to
    /// send its first command) before it fails with [`Error::Unavailable`].
    /// Default: the URL's `serverSelectionTimeoutMS`, else
    /// [`DEFAULT_SERVER_SELECTION_TIMEOUT`].
    pub fn server_selection_timeout(mut self, timeout: Duration) -> Self {
        self.server_selection_timeout = Some(timeout);
        self
    }

    /// How long one connection attempt (TCP, TLS and the handshake) may
    /// take. Default: the URL's `connectTimeoutMS`, else the driver's 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// How long a call waits for the answer to each command it sent before
    /// it fails: [`Error::Unavailable`] for a read or a transaction whose
    /// commit was not sent, [`Error::OutcomeUnknown`] for a write that may
    /// have been applied. Default: the URL's `response_timeout_ms`, else
    /// [`DEFAULT_RESPONSE_TIMEOUT`].
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = Some(timeout);
        self
    }

    /// Whether to use multi-document transactions where the deployment
    /// supports them (default `true`). Without them, multi-document writes
    /// (imports, copies, deletes, peer batches) are not atomic and run
    /// under per-session write locks instead (see the crate docs).
    pub fn use_transactions(mut self, yes: bool) -> Self {
        self.use_transactions = yes;
        self
    }

    /// How to open (default [`OpenMode::Create`]). [`OpenMode::ReadOnly`]
    /// creates nothing — no collection, index or schema document — and
    /// every write fails with [`Error::Unsupported`]; it and
    /// [`OpenMode::ReadWrite`] refuse a database without an mtsession store
    /// (under the prefix) with [`Error::NotFound`].
    pub fn mode(mut self, mode: OpenMode) -> Self {
        self.mode = mode;
        self
    }

    /// Connects, checks the schema version (creating the collections,
    /// indexes and schema document in [`OpenMode::Create`] when absent) and
    /// returns the store. A store opened before costs one round trip here.
    ///
    /// Fails with [`Error::InvalidInput`] for a malformed URL, an unknown
    /// option, a bad database name or prefix; [`Error::Unavailable`] when no
    /// server answers within the server selection timeout (naming the hosts
    /// and the cause); [`Error::NotFound`] when a read-only or read-write
    /// open finds no store; [`Error::UnsupportedSchemaVersion`] when a newer
    /// version wrote the database; [`Error::Backend`] otherwise (e.g. a
    /// failed authentication). No message shows the URL's password.
    pub async fn open(self) -> Result<MongoStore> {
        let target = Target::parse(&self.url)?;
        let shown = redact(&target.engine_url);
        let mut options = ClientOptions::parse(&target.engine_url)
            .await
            .map_err(|e| {
                let message = crate::url::scrub(
                    &crate::error::first_line(&e.to_string()),
                    &target.engine_url,
                );
                if matches!(
                    e.kind.as_ref(),
                    mongodb::error::ErrorKind::DnsResolve { .. }
                ) {
                    Error::Unavailable {
                        backend: BACKEND,
                        message: format!("cannot resolve the hosts of {shown}: {message}"),
                        source: Some(Box::new(e)),
                    }
                } else {
                    Error::invalid(format!(
                        "{shown} is not a usable MongoDB URL (expected {SYNTAX}): {message}"
                    ))
                }
            })?;
        let server_selection_timeout = self
            .server_selection_timeout
            .or(options.server_selection_timeout)
            .unwrap_or(DEFAULT_SERVER_SELECTION_TIMEOUT);
        let response_timeout = self
            .response_timeout
            .or(target.response_timeout)
            .unwrap_or(DEFAULT_RESPONSE_TIMEOUT);
        let connect_timeout = self.connect_timeout.or(options.connect_timeout);
        for (name, timeout) in [
            ("server selection timeout", Some(server_selection_timeout)),
            ("response timeout", Some(response_timeout)),
            ("connect timeout", connect_timeout),
        ] {
            if let Some(timeout) = timeout {
                check_timeout(name, timeout)?;
            }
        }
        options.server_selection_timeout = Some(server_selection_timeout);
        options.connect_timeout = connect_timeout;
        if options.app_name.is_none() {
            options.app_name = Some("mtsession".to_owned());
        }
        let watch = Arc::new(Watch::default());
        options.sdam_event_handler = Some(watch.sdam_handler());
        options.command_event_handler = Some(Watch::command_handler());
        let database = self
            .database
            .clone()
            .or_else(|| options.default_database.clone())
            .unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
        validate_database_name(&database)?;
        let prefix = self
            .prefix
            .or(target.prefix)
            .unwrap_or_else(|| DEFAULT_PREFIX.to_owned());
        validate_prefix(&prefix)?;
        let hosts = options
            .hosts
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let client = Client::with_options(options).map_err(|e| {
            Error::invalid(format!(
                "cannot use the MongoDB URL {shown}: {}",
                crate::url::scrub(
                    &crate::error::first_line(&e.to_string()),
                    &target.engine_url
                )
            ))
        })?;
        let place = Place {
            url: shown,
            hosts,
            secrets: secrets(&target.engine_url),
            server_selection_timeout,
            response_timeout,
        };
        let db = client.database(&database);
        let collections = Collections::new(&db, &prefix);
        let mut inner = Inner {
            client,
            db,
            database,
            prefix,
            place,
            watch,
            mode: self.mode,
            transactions: false,
            collections,
        };
        let schema = inner.read_schema().await?;
        inner.transactions = self.use_transactions && inner.detect_transactions().await?;
        match schema {
            Some(layout) if layout >= LAYOUT || !self.mode.writes() => {}
            Some(_) => {
                inner.create_layout().await?;
                inner.record_layout().await?;
            }
            None if self.mode == OpenMode::Create => {
                inner.create_layout().await?;
                inner.create_schema().await?;
            }
            None => {
                return Err(Error::NotFound {
                    what: format!(
                        "an mtsession store in {} (there is no schema document in {})",
                        inner.store_what(),
                        inner.collections.meta.name()
                    ),
                });
            }
        }
        Ok(MongoStore {
            inner: Arc::new(inner),
        })
    }
}

fn check_timeout(name: &str, timeout: Duration) -> Result<()> {
    if timeout < Duration::from_millis(1) || timeout > MAX_TIMEOUT {
        return Err(Error::invalid(format!(
            "the MongoDB {name} is between 1 ms and 1 hour, got {timeout:?}"
        )));
    }
    Ok(())
}

fn validate_database_name(name: &str) -> Result<()> {
    const FORBIDDEN: &[char] = &[
        '/', '\\', '.', ' ', '"', '$', '*', '<', '>', ':', '|', '?', '\0',
    ];
    if name.is_empty() || name.len() > 63 || name.contains(FORBIDDEN) {
        return Err(Error::invalid(format!(
            "a MongoDB database name is 1 to 63 bytes without / \\ . space \" $ * < > : | ? or \
             NUL, got {:?}",
            shorten(name)
        )));
    }
    Ok(())
}

fn validate_prefix(prefix: &str) -> Result<()> {
    if prefix.contains(['$', '\0']) || prefix.starts_with("system.") || prefix.len() > 100 {
        return Err(Error::invalid(format!(
            "a collection prefix is at most 100 bytes without $ or NUL and does not start with \
             \"system.\", got {:?}",
            shorten(prefix)
        )));
    }
    Ok(())
}

/// A URL taken apart: the URL the driver gets, and mtsession's options.
#[derive(Debug)]
struct Target {
    engine_url: String,
    prefix: Option<String>,
    response_timeout: Option<Duration>,
}

impl Target {
    fn parse(input: &str) -> Result<Target> {
        let url = StoreUrl::parse(input).map_err(|e| {
            // The parser quotes input that is not URL-shaped, and such
            // input may be a password: say it in words of its own.
            let text = e.to_string();
            if text.contains("is not a URL") || text.contains("does not start with a URL scheme") {
                Error::invalid(format!(
                    "{} is not a MongoDB URL: expected {SYNTAX}",
                    redact(input)
                ))
            } else {
                e
            }
        })?;
        if !SCHEMES.contains(&url.scheme()) {
            return Err(Error::invalid(format!(
                "{url} is not a MongoDB URL: expected {SYNTAX}"
            )));
        }
        url.check_params(all_options())?;
        let response_timeout = match url.param("response_timeout_ms")? {
            None => None,
            Some(text) => {
                let ms = text.parse::<u64>().map_err(|_| {
                    Error::invalid(format!(
                        "the URL option response_timeout_ms= takes a whole number of \
                         milliseconds, got {:?}",
                        shorten(&text)
                    ))
                })?;
                let timeout = Duration::from_millis(ms);
                check_timeout("response timeout", timeout)?;
                Some(timeout)
            }
        };
        Ok(Target {
            engine_url: url.to_driver_url(&STORE_OPTIONS),
            prefix: url.param("prefix")?,
            response_timeout,
        })
    }
}

impl Inner {
    /// What the store is, for messages: database, prefix and server.
    pub(crate) fn store_what(&self) -> String {
        format!(
            "mongo database {:?} (collections {:?}) at {}",
            self.database,
            format!("{}*", self.prefix),
            self.place.url
        )
    }

    /// Reads the schema document: `None` when there is none, else the
    /// layout revision it records (0 for stores whose layout was never
    /// recorded). Refuses newer versions.
    async fn read_schema(&self) -> Result<Option<i64>> {
        let meta = self.collections.meta.clone();
        let found = self
            .call(Access::Read, async move {
                Ok(meta.find_one(doc! { "_id": "schema" }).await?)
            })
            .await?;
        let Some(doc) = found else {
            return Ok(None);
        };
        let what = self.store_what();
        let fields = Fields::new(&doc, format!("{what}, schema document"));
        let version = fields.i64("version")?;
        check_version(&what, version, SCHEMA_VERSION)?;
        Ok(Some(fields.opt_i64("layout")?.unwrap_or(0)))
    }

    /// Whether the deployment supports transactions: what the driver learnt
    /// while it connected, or (when it does not tell) a `hello` command.
    async fn detect_transactions(&self) -> Result<bool> {
        if let Some(known) = self.watch.transactions() {
            return Ok(known);
        }
        let admin = self.client.database("admin");
        let hello = self
            .call(Access::Read, async move {
                match admin.run_command(doc! { "hello": 1 }).await {
                    Ok(reply) => Ok(reply),
                    Err(e) if crate::error::code(&e) == Some(COMMAND_NOT_FOUND) => {
                        Ok(admin.run_command(doc! { "isMaster": 1 }).await?)
                    }
                    Err(e) => Err(Fail::Db(e)),
                }
            })
            .await?;
        Ok(transactions_from_hello(&hello))
    }

    /// Creates the collections used inside transactions (servers before
    /// 4.4 cannot create them there) and the indexes. Idempotent.
    pub(crate) async fn create_layout(&self) -> Result<()> {
        let db = self.db.clone();
        let c = self.collections.clone();
        self.call(Access::Write, async move {
            for collection in [&c.sessions, &c.leases] {
                match db.create_collection(collection.name()).await {
                    Ok(()) => {}
                    Err(e) if crate::error::code(&e) == Some(NAMESPACE_EXISTS) => {}
                    Err(e) => return Err(Fail::Db(e)),
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
            c.peers
                .create_indexes([
                    index(doc! { "session": 1, "id": 1 }, "session_id", true),
                    index(
                        doc! { "session": 1, "usernames.key": 1 },
                        "session_username",
                        false,
                    ),
                    index(doc! { "session": 1, "phone": 1 }, "session_phone", false),
                ])
                .await?;
            c.files
                .create_index(index(
                    doc! { "session": 1, "md5": 1, "size": 1, "kind": 1 },
                    "session_file",
                    true,
                ))
                .await?;
            Ok(())
        })
        .await
    }

    /// Writes the schema document of a new store (another process creating
    /// the same store at once is fine: the first document stays) and checks
    /// the one that is there.
    async fn create_schema(&self) -> Result<()> {
        let meta = self.collections.meta.clone();
        self.call(Access::Write, async move {
            let result = meta
                .update_one(
                    doc! { "_id": "schema" },
                    doc! { "$setOnInsert": {
                        "version": SCHEMA_VERSION,
                        "layout": LAYOUT,
                        "created_at": DateTime::now(),
                    } },
                )
                .upsert(true)
                .await;
            match result {
                Ok(_) => Ok(()),
                Err(e) if is_duplicate_key(&e) => Ok(()),
                Err(e) => Err(Fail::Db(e)),
            }
        })
        .await?;
        match self.read_schema().await? {
            Some(_) => Ok(()),
            None => Err(Error::backend(
                BACKEND,
                format!(
                    "the schema document of {} vanished while the store was created",
                    self.store_what()
                ),
            )),
        }
    }

    /// Records that the collections and indexes exist (a store written
    /// before the schema document recorded it).
    async fn record_layout(&self) -> Result<()> {
        let meta = self.collections.meta.clone();
        self.call(Access::Write, async move {
            meta.update_one(
                doc! { "_id": "schema" },
                doc! { "$max": { "layout": LAYOUT } },
            )
            .await?;
            Ok(())
        })
        .await
    }
}

/// Whether a `hello` reply describes a deployment with transactions.
fn transactions_from_hello(hello: &Document) -> bool {
    let int = |key: &str| match hello.get(key) {
        Some(Bson::Int32(v)) => i64::from(*v),
        Some(Bson::Int64(v)) => *v,
        Some(Bson::Double(v)) => *v as i64,
        _ => 0,
    };
    let max_wire = int("maxWireVersion");
    let sessions = hello.contains_key("logicalSessionTimeoutMinutes");
    let replica_set = hello.contains_key("setName");
    let mongos = hello.get_str("msg").ok() == Some("isdbgrid");
    sessions && ((replica_set && max_wire >= 7) || (mongos && max_wire >= 8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_taken_out_and_the_rest_passes_through() {
        let target = Target::parse(
            "mongodb://u:pw@h:1,g:2/db?prefix=app%5F&replicaSet=rs&response_timeout_ms=750&session=a",
        )
        .expect("parses");
        assert_eq!(target.prefix.as_deref(), Some("app_"));
        assert_eq!(target.response_timeout, Some(Duration::from_millis(750)));
        assert_eq!(target.engine_url, "mongodb://u:pw@h:1,g:2/db?replicaSet=rs");
    }

    #[test]
    fn unknown_options_are_refused_with_the_valid_ones() {
        let err = Target::parse("mongodb://h/?prefx=a").expect_err("typo");
        let text = err.to_string();
        assert!(text.contains("\"prefx\""), "{text}");
        assert!(
            text.contains("prefix, response_timeout_ms, appName"),
            "{text}"
        );
        assert!(text.contains("serverSelectionTimeoutMS"), "{text}");
        let err = Target::parse("mongodb://h/?socketTimeoutMS=5").expect_err("not supported");
        assert_eq!(err.kind(), session_core::ErrorKind::InvalidInput);
        assert!(Target::parse("mongodb://h/?SERVERSELECTIONTIMEOUTMS=5").is_ok());
        let err = Target::parse("redis://h").expect_err("scheme");
        assert!(err.to_string().contains("mongodb://"), "{err}");
        for secret in ["hunter2", "hun\\ter\"2"] {
            let err = Target::parse(secret).expect_err("not a url");
            assert!(!format!("{err} {err:?}").contains("ter"), "{err}");
        }
        let err = Target::parse("mongodb://h/?response_timeout_ms=soon").expect_err("number");
        assert!(err.to_string().contains("milliseconds"), "{err}");
        assert!(Target::parse("mongodb://h/?response_timeout_ms=0").is_err());
    }

    #[test]
    fn hello_replies() {
        let rs = doc! { "setName": "rs", "maxWireVersion": 21, "logicalSessionTimeoutMinutes": 30 };
        assert!(transactions_from_hello(&rs));
        let standalone = doc! { "maxWireVersion": 21, "logicalSessionTimeoutMinutes": 30 };
        assert!(!transactions_from_hello(&standalone));
        let mongos =
            doc! { "msg": "isdbgrid", "maxWireVersion": 8_i64, "logicalSessionTimeoutMinutes": 30 };
        assert!(transactions_from_hello(&mongos));
        let old = doc! { "setName": "rs", "maxWireVersion": 6 };
        assert!(!transactions_from_hello(&old));
    }
}
