//! What the integration tests share: the test server's URL, unique
//! databases, cleanup that runs whatever the test did, and private
//! SecantusDB processes for the outage and standalone tests.

#![allow(dead_code, unreachable_pub)]

use futures::FutureExt;
use session_core::{Error, Result, Store};
use session_mongo::mongodb::bson::{Document, doc, oid::ObjectId};
use session_mongo::mongodb::{Client, options::ClientOptions};
use session_mongo::{MongoStore, redact_url};
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

use async_trait::async_trait;

/// The variable that names the test server.
pub const URL_VAR: &str = "MTSESSION_TEST_MONGO_URL";

/// The test server's URL as configured: `MTSESSION_TEST_MONGO_URL` or the
/// local default.
pub fn configured_url() -> String {
    std::env::var(URL_VAR).unwrap_or_else(|_| "mongodb://127.0.0.1:27017".to_owned())
}

/// The URL the tests open stores with: the configured one, with retryable
/// writes turned off and a 30-second server selection timeout unless it
/// says otherwise.
///
/// SecantusDB spends about 35 ms on the bookkeeping of every retryable
/// write outside a transaction (0.6 ms without it), which would make the
/// suite's thousands of single writes take many minutes; the store's logic
/// does not depend on the setting, and `retryable_writes_on` covers the
/// default. SecantusDB is one Python process on a machine that also runs
/// the other test binaries: under that load its answer to the driver's
/// heartbeat can take longer than the store's 5-second default, which is
/// meant for a real server; the tests about that timeout set their own.
pub fn url() -> String {
    let mut url = configured_url();
    for (option, value) in [
        ("retrywrites=", "retryWrites=false"),
        (
            "serverselectiontimeoutms=",
            "serverSelectionTimeoutMS=30000",
        ),
    ] {
        if url.to_ascii_lowercase().contains(option) {
            continue;
        }
        let after_scheme = url.split_once("://").map_or("", |(_, rest)| rest);
        url = if url.contains('?') {
            format!("{url}&{value}")
        } else if after_scheme.contains('/') {
            format!("{url}?{value}")
        } else {
            format!("{url}/?{value}")
        };
    }
    url
}

/// A database name no other test uses.
pub fn unique_database() -> String {
    format!("mtsession_test_{}", ObjectId::new().to_hex())
}

/// A driver client on the test server, failing clearly when there is none.
pub async fn client() -> Client {
    let mut options = ClientOptions::parse(url()).await.unwrap_or_else(|e| {
        panic!(
            "{URL_VAR}={} is not a MongoDB URL: {e}",
            redact_url(&configured_url())
        )
    });
    options.server_selection_timeout = Some(std::time::Duration::from_secs(30));
    let client = Client::with_options(options).expect("client");
    if let Err(e) = client
        .database("admin")
        .run_command(doc! { "ping": 1 })
        .await
    {
        panic!(
            "no MongoDB-compatible test server at {} ({e}); start one (cargo xtask starts \
             SecantusDB) or point {URL_VAR} at one",
            redact_url(&configured_url())
        );
    }
    client
}

/// Opens a store on `database` of the test server.
pub async fn open(database: &str) -> Result<MongoStore> {
    MongoStore::builder(&url()).database(database).open().await
}

/// Runs `body` with a fresh database name and drops that database
/// afterwards, also when the body panics.
pub async fn with_database<F, Fut>(body: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()>,
{
    let client = client().await;
    let database = unique_database();
    let outcome = AssertUnwindSafe(body(database.clone()))
        .catch_unwind()
        .await;
    client
        .database(&database)
        .drop()
        .await
        .expect("drop the test database");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// The conformance suite's factory: one database per namespace.
#[derive(Default)]
pub struct MongoFactory {
    client: OnceCell<Client>,
    transactions: Option<bool>,
}

impl MongoFactory {
    /// A factory whose stores use transactions where the server has them.
    pub fn new() -> Self {
        MongoFactory::default()
    }

    /// A factory whose stores never use transactions (the fallback path).
    pub fn without_transactions() -> Self {
        MongoFactory {
            client: OnceCell::new(),
            transactions: Some(false),
        }
    }

    async fn client(&self) -> &Client {
        self.client.get_or_init(client).await
    }
}

fn backend(e: session_mongo::mongodb::error::Error) -> Error {
    Error::backend("mongo", e)
}

#[async_trait]
impl session_conformance::StoreFactory for MongoFactory {
    async fn create_namespace(&self) -> Result<String> {
        self.client().await;
        Ok(unique_database())
    }

    async fn open(&self, namespace: &str) -> Result<Store> {
        let mut builder = MongoStore::builder(&url()).database(namespace);
        if let Some(yes) = self.transactions {
            builder = builder.use_transactions(yes);
        }
        Ok(Store::new(builder.open().await?))
    }

    async fn write_schema_version(&self, namespace: &str, version: i64) -> Result<()> {
        self.client()
            .await
            .database(namespace)
            .collection::<Document>("mtsession_meta")
            .update_one(
                doc! { "_id": "schema" },
                doc! { "$set": { "version": version } },
            )
            .upsert(true)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn drop_namespace(&self, namespace: &str) -> Result<()> {
        self.client()
            .await
            .database(namespace)
            .drop()
            .await
            .map_err(backend)
    }
}

/// Whether missing services fail tests (`MTSESSION_REQUIRE_SERVICES=1`, as
/// `cargo xtask test-all` and CI set it) instead of skipping them.
pub fn services_required() -> bool {
    std::env::var("MTSESSION_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// The SecantusDB server executable: `MTSESSION_SECANTUSD` if set, else
/// the virtualenv `cargo xtask services` installs under the target folder.
pub fn secantusd() -> PathBuf {
    if let Some(path) = std::env::var_os("MTSESSION_SECANTUSD") {
        return PathBuf::from(path);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    );
    target.join("secantus-venv/bin/secantusd-py")
}

/// The server executable, or `None` after saying why the test is skipped.
/// Under `MTSESSION_REQUIRE_SERVICES=1` a missing server fails the test.
pub fn secantusd_or_skip(test: &str) -> Option<PathBuf> {
    let path = secantusd();
    if path.is_file() {
        return Some(path);
    }
    assert!(
        !services_required(),
        "{test}: SecantusDB is not installed at {} (set MTSESSION_SECANTUSD, or run cargo \
         xtask services, which installs it), and MTSESSION_REQUIRE_SERVICES=1 requires it",
        path.display()
    );
    eprintln!(
        "{test}: skipped, SecantusDB is not installed at {} (set MTSESSION_SECANTUSD)",
        path.display()
    );
    None
}

/// A free loopback port (bound, read, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// How a private server keeps its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// In memory: a restart starts empty.
    Memory,
    /// In files, the log synced on every commit (`--sync-on-commit`): every
    /// acknowledged write survives a kill.
    Durable,
}

/// A SecantusDB process this test started on 127.0.0.1, killed on drop.
pub struct TestServer {
    binary: PathBuf,
    child: Option<Child>,
    pub port: u16,
    storage: Storage,
    args: Vec<String>,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server on a free port with `extra` arguments (such as
    /// `--standalone`) and waits until it accepts connections. Panics when
    /// SecantusDB is missing; call [`secantusd_or_skip`] first.
    pub fn start(storage: Storage, extra: &[&str]) -> TestServer {
        TestServer::start_on(free_port(), storage, extra)
    }

    /// Like [`start`](Self::start), on `port`.
    pub fn start_on(port: u16, storage: Storage, extra: &[&str]) -> TestServer {
        let mut server = TestServer {
            binary: secantusd(),
            child: None,
            port,
            storage,
            args: extra.iter().map(|s| (*s).to_owned()).collect(),
            dir: tempfile::tempdir().expect("a temporary directory for SecantusDB"),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let storage = match self.storage {
            Storage::Memory => ":memory:".to_owned(),
            Storage::Durable => self.dir.path().join("data").display().to_string(),
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("the server log");
        let mut cmd = Command::new(&self.binary);
        cmd.args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--storage-path", &storage, "--log-level", "WARNING"]);
        if self.storage == Storage::Durable {
            cmd.arg("--sync-on-commit");
        }
        let child = cmd
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {}: {e}", self.binary.display()));
        self.child = Some(child);
        self.wait_ready();
    }

    /// Polls until the port accepts connections (bounded, no fixed sleep).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        loop {
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "SecantusDB exited with {status} before it was ready:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "SecantusDB on port {} never became ready:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's URL, with `credentials` (`user:password@`) if given.
    pub fn url(&self, credentials: &str) -> String {
        format!(
            "mongodb://{credentials}127.0.0.1:{}/?directConnection=true",
            self.port
        )
    }

    /// Creates a user with every right, then restarts the server requiring
    /// authentication (`--auth`).
    pub async fn provision_user(&mut self, user: &str, password: &str) {
        let mut options = ClientOptions::parse(self.url("")).await.expect("a URL");
        options.server_selection_timeout = Some(Duration::from_secs(20));
        let client = Client::with_options(options).expect("a client");
        client
            .database("admin")
            .run_command(doc! { "createUser": user, "pwd": password, "roles": ["root"] })
            .await
            .expect("create the user");
        drop(client);
        self.args.push("--auth".to_owned());
        self.restart();
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("the server runs")
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    /// Stops the process where it is (SIGSTOP): connections stay open and
    /// nothing is answered.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Lets a paused process run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// Kills the server process (SIGKILL, by its PID) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, with the same arguments
    /// and storage (a durable server reopens its data).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            // A paused process cannot die until it runs again.
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(self.pid().to_string())
                .status();
        }
        self.kill();
    }
}

/// Everything an error shows (text, Debug, every source).
#[allow(unused_imports)]
pub use session_conformance::outage::shown;
