//! Shared test support: cleanup on the test server, and private `redis-server` processes for the restart, password and TLS tests.

#![allow(dead_code, unreachable_pub)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use session_core::{Error, Result};

/// The shared test server's URL: `MTSESSION_TEST_REDIS_URL`, read at run time.
pub fn test_url() -> String {
    std::env::var("MTSESSION_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A prefix no other test uses: `mtsession-test:{pid}-{time}-{counter}`.
pub fn unique_prefix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "mtsession-test:{}-{nanos:x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn unavailable(url: &str, err: redis::RedisError) -> Error {
    Error::Unavailable {
        backend: "redis",
        message: format!(
            "the test Redis at {} is not reachable; start one or point \
             MTSESSION_TEST_REDIS_URL at one",
            session_redis::redact_url(url)
        ),
        source: Some(Box::new(err)),
    }
}

pub async fn raw_connection(url: &str) -> Result<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(url).map_err(|e| unavailable(url, e))?;
    client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| unavailable(url, e))
}

/// Escapes glob characters so a prefix can be used in `SCAN MATCH`.
pub fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Every key under `prefix:` (test cleanup only; the store never scans).
pub async fn keys_under(url: &str, prefix: &str) -> Result<Vec<Vec<u8>>> {
    let mut con = raw_connection(url).await?;
    let pattern = format!("{}:*", glob_escape(prefix));
    let mut cursor: u64 = 0;
    let mut keys = Vec::new();
    loop {
        let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut con)
            .await
            .map_err(|e| Error::backend("redis", e))?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// Deletes every key under `prefix:`.
pub async fn drop_prefix(url: &str, prefix: &str) -> Result<()> {
    let keys = keys_under(url, prefix).await?;
    if keys.is_empty() {
        return Ok(());
    }
    let mut con = raw_connection(url).await?;
    for chunk in keys.chunks(500) {
        let _: i64 = redis::cmd("DEL")
            .arg(chunk)
            .query_async(&mut con)
            .await
            .map_err(|e| Error::backend("redis", e))?;
    }
    Ok(())
}

/// A free loopback port (bound, read, released).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
    listener.local_addr().expect("local address").port()
}

/// Whether missing services fail tests (`MTSESSION_REQUIRE_SERVICES=1`, as
/// `cargo xtask test-all` and CI set it) instead of skipping them.
pub fn services_required() -> bool {
    std::env::var("MTSESSION_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// The `redis-server` binary: `REDIS_SERVER` if set, else the usual place
/// or the first one on `PATH`; `None` when there is none.
pub fn redis_server_binary() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("REDIS_SERVER") {
        return Some(path.into());
    }
    let usual = Path::new("/usr/bin/redis-server");
    if usual.exists() {
        return Some(usual.to_path_buf());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("redis-server"))
            .find(|candidate| candidate.exists())
    })
}

/// The binary, or `None` after saying why the test is skipped. Under
/// `MTSESSION_REQUIRE_SERVICES=1` a missing binary fails the test.
pub fn redis_server_or_skip(test: &str) -> Option<PathBuf> {
    match redis_server_binary() {
        Some(path) => Some(path),
        None if services_required() => panic!(
            "{test}: redis-server is not installed (or REDIS_SERVER is not set), and \
             MTSESSION_REQUIRE_SERVICES=1 requires it"
        ),
        None => {
            eprintln!("{test}: skipped, redis-server is not installed (set REDIS_SERVER)");
            None
        }
    }
}

/// How a test server keeps its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persistence {
    /// Nothing on disk: a restart starts empty.
    None,
    /// An append-only file synced before every reply (`appendfsync
    /// always`): every acknowledged write survives a kill.
    Durable,
}

/// A `redis-server` this test started on 127.0.0.1, killed on drop.
pub struct TestServer {
    binary: PathBuf,
    child: Option<Child>,
    pub port: u16,
    persistence: Persistence,
    args: Vec<String>,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server with no persistence on `port` plus `extra` arguments
    /// (e.g. `--requirepass x`), and waits until it accepts connections.
    /// Panics when redis-server is missing; call [`redis_server_or_skip`] first.
    pub fn start(port: u16, extra: &[&str]) -> TestServer {
        TestServer::start_with(port, Persistence::None, extra)
    }

    /// Like [`start`](Self::start), keeping data as `persistence` says.
    pub fn start_with(port: u16, persistence: Persistence, extra: &[&str]) -> TestServer {
        let dir = tempfile::tempdir().expect("a temporary directory for redis-server");
        let binary = redis_server_binary().expect("redis-server (see redis_server_or_skip)");
        let mut server = TestServer {
            binary,
            child: None,
            port,
            persistence,
            args: extra.iter().map(|s| (*s).to_owned()).collect(),
            dir,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let has_tls = self.args.iter().any(|a| a == "--tls-port");
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--bind").arg("127.0.0.1");
        if has_tls {
            cmd.arg("--port").arg("0");
        } else {
            cmd.arg("--port").arg(self.port.to_string());
        }
        match self.persistence {
            Persistence::None => cmd.args(["--save", "", "--appendonly", "no"]),
            Persistence::Durable => cmd.args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ]),
        };
        cmd.args(["--protected-mode", "yes"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.dir.path().join("redis.log"))
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {}: {e}", self.binary.display()));
        self.child = Some(child);
        self.wait_ready();
    }

    /// Polls until the server answers PING (bounded, no fixed sleep): a
    /// durable server accepts connections before it has loaded its data.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.answers_ping() {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "redis-server exited with {status} before it was ready:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} never became ready:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the server answers PING: it is up and has loaded its data
    /// (a server loading its append-only file answers `-LOADING`).
    fn answers_ping(&self) -> bool {
        use std::io::{Read, Write};
        if self.args.iter().any(|a| a == "--tls-port") {
            return TcpStream::connect(("127.0.0.1", self.port)).is_ok();
        }
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let password = self
            .args
            .iter()
            .position(|a| a == "--requirepass")
            .and_then(|i| self.args.get(i + 1));
        let mut request = Vec::new();
        let mut expected = Vec::new();
        if let Some(password) = password {
            request.extend_from_slice(
                format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{password}\r\n", password.len()).as_bytes(),
            );
            expected.extend_from_slice(b"+OK\r\n");
        }
        request.extend_from_slice(b"PING\r\n");
        expected.extend_from_slice(b"+PONG\r\n");
        if stream.write_all(&request).is_err() {
            return false;
        }
        let mut reply = vec![0u8; expected.len()];
        stream.read_exact(&mut reply).is_ok() && reply == expected
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
    /// and data directory (a durable server reloads its data).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
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
