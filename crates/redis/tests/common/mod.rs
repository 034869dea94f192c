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

/// The `redis-server` binary: `REDIS_SERVER` if set, else the usual place or PATH.
pub fn redis_server_binary() -> PathBuf {
    if let Ok(path) = std::env::var("REDIS_SERVER") {
        return path.into();
    }
    let usual = Path::new("/usr/bin/redis-server");
    if usual.exists() {
        usual.to_path_buf()
    } else {
        PathBuf::from("redis-server")
    }
}

/// A `redis-server` this test started on 127.0.0.1, killed on drop.
pub struct TestServer {
    child: Option<Child>,
    pub port: u16,
    args: Vec<String>,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server with no persistence on `port` plus `extra` arguments
    /// (e.g. `--requirepass x`), and waits until it accepts connections.
    pub fn start(port: u16, extra: &[&str]) -> TestServer {
        let dir = tempfile::tempdir().expect("a temporary directory for redis-server");
        let mut server = TestServer {
            child: None,
            port,
            args: extra.iter().map(|s| (*s).to_owned()).collect(),
            dir,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let has_tls = self.args.iter().any(|a| a == "--tls-port");
        let mut cmd = Command::new(redis_server_binary());
        cmd.arg("--bind").arg("127.0.0.1");
        if has_tls {
            cmd.arg("--port").arg("0");
        } else {
            cmd.arg("--port").arg(self.port.to_string());
        }
        cmd.args([
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
        ])
        .arg("--dir")
        .arg(self.dir.path())
        .arg("--logfile")
        .arg(self.dir.path().join("redis.log"))
        .args(&self.args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "could not start {}: {e}; install redis-server",
                redis_server_binary().display()
            )
        });
        self.child = Some(child);
        self.wait_ready();
    }

    /// Polls until the port accepts connections (bounded, no fixed sleep).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let log =
                    std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
                panic!("redis-server exited with {status} before it was ready:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} never became ready",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server process (by its PID) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same arguments.
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
        self.kill();
    }
}
