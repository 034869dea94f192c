//! Private database servers for the outage tests: a throwaway PostgreSQL
//! cluster (`initdb`) or MariaDB/MySQL data directory, started on a free
//! loopback port, killed (SIGKILL) or frozen (SIGSTOP) by PID, restarted on
//! the same port and data, and killed and removed on drop.
//!
//! Both are configured durable: PostgreSQL with `fsync=on` and
//! `synchronous_commit=on`, MariaDB with `innodb_flush_log_at_trx_commit=1`.
//! Run as root, the servers run as an unprivileged system user (`postgres`,
//! `mysql`, or `nobody`), which then owns the temporary directory.

#![allow(dead_code, unreachable_pub)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sea_orm::sqlx::{self, Connection};

/// How long a server may take to become ready (crash recovery included)
/// on a loaded machine.
const READY_WITHIN: Duration = Duration::from_secs(90);

/// Which server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// PostgreSQL.
    Postgres,
    /// MariaDB (or MySQL with `mysql_install_db`).
    MariaDb,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Postgres => "PostgreSQL",
            Kind::MariaDb => "MariaDB",
        }
    }
}

/// Whether missing services fail tests (`MTSESSION_REQUIRE_SERVICES=1`, as
/// `cargo xtask test-all` and CI set it) instead of skipping them.
pub fn services_required() -> bool {
    std::env::var("MTSESSION_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// The programs a server needs.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// `initdb`, or `mariadb-install-db` / `mysql_install_db`.
    init: PathBuf,
    /// `postgres`, or `mariadbd` / `mysqld`.
    server: PathBuf,
}

fn executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The first of `names` found in `dirs` or on `PATH`.
fn find(names: &[&str], dirs: &[PathBuf]) -> Option<PathBuf> {
    let path_dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    names.iter().find_map(|name| {
        dirs.iter()
            .chain(&path_dirs)
            .map(|dir| dir.join(name))
            .find(|candidate| executable(candidate))
    })
}

/// PostgreSQL's `bin` directories: `pg_config --bindir`, then
/// `/usr/lib/postgresql/*/bin` (newest first).
fn postgres_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        dirs.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by_key(|v| std::cmp::Reverse(v.0));
    dirs.extend(versions.into_iter().map(|(_, dir)| dir));
    dirs
}

impl Binaries {
    /// The programs of `kind` on this machine, if installed.
    pub fn find(kind: Kind) -> Option<Binaries> {
        match kind {
            Kind::Postgres => postgres_dirs().into_iter().find_map(|dir| {
                let init = dir.join("initdb");
                let server = dir.join("postgres");
                (executable(&init) && executable(&server)).then_some(Binaries { init, server })
            }),
            Kind::MariaDb => {
                let sbin = [
                    PathBuf::from("/usr/sbin"),
                    PathBuf::from("/usr/libexec"),
                    PathBuf::from("/usr/bin"),
                ];
                Some(Binaries {
                    init: find(&["mariadb-install-db", "mysql_install_db"], &sbin)?,
                    server: find(&["mariadbd", "mysqld"], &sbin)?,
                })
            }
        }
    }

    /// The programs, or `None` after saying why the test is skipped. Under
    /// `MTSESSION_REQUIRE_SERVICES=1` a missing program fails the test.
    pub fn or_skip(kind: Kind, test: &str) -> Option<Binaries> {
        let wanted = match kind {
            Kind::Postgres => "initdb and postgres (pg_config --bindir, /usr/lib/postgresql/*/bin)",
            Kind::MariaDb => "mariadb-install-db (or mysql_install_db) and mariadbd (or mysqld)",
        };
        match Binaries::find(kind) {
            Some(found) => Some(found),
            None if services_required() => panic!(
                "{test}: {} is not installed: {wanted} not found, and \
                 MTSESSION_REQUIRE_SERVICES=1 requires it",
                kind.name()
            ),
            None => {
                eprintln!(
                    "{test}: skipped, {} is not installed ({wanted} not found)",
                    kind.name()
                );
                None
            }
        }
    }
}

/// A free loopback port below the kernel's ephemeral range, so that no
/// outgoing connection takes it while the server is down between a kill and
/// its restart.
pub fn free_port() -> u16 {
    let ephemeral_low = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = if ephemeral_low > 12_000 {
        (10_000, ephemeral_low)
    } else {
        (ephemeral_low.max(1024), u16::MAX)
    };
    let mut state = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        ^ (u64::from(std::process::id()) << 32)
        | 1;
    for _ in 0..1000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let port = low + (state % u64::from(high - low)) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between {low} and {high}")
}

/// The user and group ids a server runs as: `None` (this process's) unless
/// this process is root, which the servers refuse; then the first of
/// `users` in `/etc/passwd`, or `nobody`.
fn server_ids(users: &[&str]) -> Option<(u32, u32)> {
    let me = fs::metadata("/proc/self").ok()?;
    if std::os::unix::fs::MetadataExt::uid(&me) != 0 {
        return None;
    }
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let lookup = |name: &str| {
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&name) && fields.len() > 3)
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                .flatten()
        })
    };
    let ids = users
        .iter()
        .chain(&["nobody"])
        .find_map(|name| lookup(name));
    Some(ids.unwrap_or_else(|| panic!("running as root, and no user of {users:?} or nobody")))
}

/// Signals processes by PID with `kill -SIGNAL PID...`; processes that are
/// gone already are ignored.
fn signal(signal: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .args(pids.iter().map(u32::to_string))
        .stderr(Stdio::null())
        .status();
}

/// Every descendant of `pid` (children first found through `/proc`).
fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        if let Some(ppid) = after
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u32>().ok())
        {
            parents.push((child, ppid));
        }
    }
    let mut found = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for &(child, ppid) in &parents {
            if ppid == parent && !found.contains(&child) {
                found.push(child);
                frontier.push(child);
            }
        }
    }
    found
}

/// A server this test started on 127.0.0.1, with its own data directory;
/// killed, with every process it started, on drop (also when a test fails).
pub struct TestServer {
    pub kind: Kind,
    binaries: Binaries,
    pub port: u16,
    password: String,
    ids: Option<(u32, u32)>,
    child: Option<Child>,
    /// Removed on drop, after the server is dead.
    dir: tempfile::TempDir,
}

impl TestServer {
    /// Creates a data directory, starts the server on a free port and waits
    /// until it answers a query as the test user (password `password`).
    pub async fn start(kind: Kind, binaries: Binaries, password: &str) -> TestServer {
        let ids = server_ids(match kind {
            Kind::Postgres => &["postgres"],
            Kind::MariaDb => &["mysql"],
        });
        let dir = tempfile::Builder::new()
            .prefix("mtsession-outage-")
            .tempdir()
            .expect("a temporary directory");
        // A temporary directory of the server's own: bootstraps running at
        // once in a shared one remove each other's files.
        let tmp = dir.path().join("tmp");
        fs::create_dir(&tmp).expect("a temporary directory for the server");
        if let Some((uid, gid)) = ids {
            for path in [dir.path(), &tmp] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid))
                    .expect("give the temporary directory to the server's user");
            }
        }
        let mut server = TestServer {
            kind,
            binaries,
            port: free_port(),
            password: password.to_owned(),
            ids,
            child: None,
            dir,
        };
        server.init();
        server.spawn();
        server.wait_ready().await;
        server
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn data(&self) -> PathBuf {
        self.path("data")
    }

    /// A command run as the server's user, in the temporary directory,
    /// its output appended to `log`.
    fn command(&self, program: &Path, log: &str) -> Command {
        let mut cmd = Command::new(program);
        if let Some((uid, gid)) = self.ids {
            cmd.uid(uid).gid(gid);
        }
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(log))
            .expect("a log file");
        let err = out.try_clone().expect("a log file");
        cmd.current_dir(self.dir.path())
            .env("HOME", self.dir.path())
            .env("TMPDIR", self.path("tmp"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        cmd
    }

    fn write(&self, name: &str, text: &str) {
        let path = self.path(name);
        fs::write(&path, text).expect("write a server file");
        if let Some((uid, gid)) = self.ids {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid)).expect("chown a server file");
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
    }

    /// Makes the data directory.
    fn init(&self) {
        let mut cmd = self.command(&self.binaries.init, "init.log");
        match self.kind {
            Kind::Postgres => {
                self.write("password", &format!("{}\n", self.password));
                cmd.arg("-D")
                    .arg(self.data())
                    .args(["-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"])
                    .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
                    .arg(format!("--pwfile={}", self.path("password").display()));
            }
            Kind::MariaDb => {
                // Run on every start: creates the test user and database.
                self.write(
                    "init.sql",
                    &format!(
                        "CREATE DATABASE IF NOT EXISTS outage;\n\
                         CREATE USER IF NOT EXISTS 'outage'@'127.0.0.1' IDENTIFIED BY '{}';\n\
                         GRANT ALL ON outage.* TO 'outage'@'127.0.0.1';\n",
                        self.password
                    ),
                );
                cmd.arg("--no-defaults")
                    .arg(format!("--datadir={}", self.data().display()))
                    .arg("--auth-root-authentication-method=normal");
            }
        }
        let status = cmd
            .status()
            .unwrap_or_else(|e| panic!("could not run {}: {e}", self.binaries.init.display()));
        assert!(
            status.success(),
            "{} failed with {status}:\n{}",
            self.binaries.init.display(),
            self.log("init.log")
        );
    }

    fn spawn(&mut self) {
        let mut cmd = self.command(&self.binaries.server, "server.log");
        match self.kind {
            Kind::Postgres => {
                cmd.arg("-D")
                    .arg(self.data())
                    .arg("-p")
                    .arg(self.port.to_string())
                    .arg("-k")
                    .arg(self.dir.path())
                    .args(["-c", "listen_addresses=127.0.0.1"])
                    .args(["-c", "fsync=on", "-c", "synchronous_commit=on"])
                    .args(["-c", "full_page_writes=on", "-c", "shared_buffers=16MB"])
                    .args(["-c", "max_connections=40", "-c", "autovacuum=off"]);
            }
            Kind::MariaDb => {
                cmd.arg("--no-defaults")
                    .arg(format!("--datadir={}", self.data().display()))
                    .arg(format!("--port={}", self.port))
                    .arg("--bind-address=127.0.0.1")
                    .arg(format!("--socket={}", self.path("mysqld.sock").display()))
                    .arg(format!("--pid-file={}", self.path("mysqld.pid").display()))
                    .arg(format!("--log-error={}", self.path("server.log").display()))
                    .arg(format!("--init-file={}", self.path("init.sql").display()))
                    .arg(format!("--tmpdir={}", self.path("tmp").display()))
                    .args([
                        "--innodb-flush-log-at-trx-commit=1",
                        "--innodb-doublewrite=1",
                        "--innodb-buffer-pool-size=32M",
                        "--skip-name-resolve",
                        "--max-connections=60",
                    ]);
            }
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {}: {e}", self.binaries.server.display()));
        self.child = Some(child);
    }

    /// The URL of the test database, with the password.
    pub fn url(&self) -> String {
        match self.kind {
            Kind::Postgres => format!(
                "postgres://postgres:{}@127.0.0.1:{}/postgres?sslmode=disable",
                self.password, self.port
            ),
            Kind::MariaDb => format!(
                "mysql://outage:{}@127.0.0.1:{}/outage",
                self.password, self.port
            ),
        }
    }

    /// Whether the server answers `SELECT 1` as the test user.
    async fn answers(&self) -> bool {
        let url = self.url();
        let attempt = async {
            match self.kind {
                Kind::Postgres => {
                    let mut conn = sqlx::PgConnection::connect(&url).await?;
                    sqlx::query("SELECT 1").execute(&mut conn).await?;
                    conn.close().await
                }
                Kind::MariaDb => {
                    let mut conn = sqlx::MySqlConnection::connect(&url).await?;
                    sqlx::query("SELECT 1").execute(&mut conn).await?;
                    conn.close().await
                }
            }
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(3), attempt).await,
            Ok(Ok(()))
        )
    }

    /// Polls until the server answers a query (bounded; no fixed sleep):
    /// after a kill it first recovers from its logs.
    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if self.answers().await {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                panic!(
                    "{} exited with {status} before it was ready:\n{}",
                    self.kind.name(),
                    self.log("server.log")
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} on port {} was not ready within {READY_WITHIN:?}:\n{}",
                self.kind.name(),
                self.port,
                self.log("server.log")
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("the server runs")
    }

    /// Stops the server where it is (SIGSTOP), with every process it
    /// started: connections stay open, the kernel still accepts new ones,
    /// and nothing is answered.
    pub fn freeze(&self) {
        let pid = self.pid();
        // The main process first, so that it starts no process meanwhile.
        signal("STOP", &[pid]);
        signal("STOP", &descendants(pid));
    }

    /// Lets a frozen server run again (SIGCONT).
    pub fn thaw(&self) {
        let pid = self.pid();
        signal("CONT", &descendants(pid));
        signal("CONT", &[pid]);
    }

    /// Kills the server (SIGKILL by PID, with every process it started, as
    /// a crash would) and waits for it to exit.
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id();
        // Stopped first, it starts no process while its family is listed.
        signal("STOP", &[pid]);
        let family = descendants(pid);
        signal("KILL", &family);
        let _ = child.kill();
        let _ = child.wait();
        // Wait until the whole family is gone (or a zombie), so that a
        // restart finds no process attached to the old data directory.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline
            && family.iter().any(|p| {
                fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                    s.rsplit(')')
                        .next()
                        .is_some_and(|r| !r.trim_start().starts_with('Z'))
                })
            })
        {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Starts the server again on the same port and data directory (after
    /// a kill it recovers from its logs), and waits until it is ready.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn();
        self.wait_ready().await;
    }

    /// One of the server's logs, for failure messages.
    pub fn log(&self, name: &str) -> String {
        fs::read_to_string(self.path(name)).unwrap_or_default()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // SIGKILL ends stopped processes too.
        self.kill();
    }
}
