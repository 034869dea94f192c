//! Finding, starting and (when absent) installing the servers the tests use.
//!
//! Every backend's tests read one variable (`MTSESSION_TEST_REDIS_URL`, ...).
//! When it is unset and nothing answers on the default local port, the xtask
//! starts the server if it is installed, installs it from Debian's packages if
//! it can (root and apt-get), and otherwise fails with what to install.
//! Servers the xtask spawns itself are stopped by PID when it exits; system
//! services it starts (PostgreSQL, MariaDB) are left running.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Pinned SecantusDB, the MongoDB-wire server used where no MongoDB exists.
const SECANTUS: &str = "secantusdb==0.7.0b3";

/// Servers in use and the environment that points the tests at them.
pub(crate) struct Services {
    /// Variables to set for test processes.
    pub(crate) env: Vec<(String, String)>,
    children: Vec<(String, Child)>,
    /// Services that were running before this run (left running at the end).
    found: Vec<String>,
    /// The SecantusDB program, when this run started the shared MongoDB-wire
    /// server itself: the test binaries that use MongoDB then get a private
    /// server each (see [`PrivateMongo`]).
    pub(crate) private_mongo: Option<PathBuf>,
}

/// Starts SecantusDB (`server`) in memory on a free loopback port, its
/// stderr to `log`; returns the process and the port (it may not answer yet).
fn spawn_secantus(server: &Path, log: &Path) -> Result<(Child, u16), String> {
    let port = free_port()?;
    let file =
        std::fs::File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let child = Command::new(server)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--storage-path", ":memory:"])
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .map_err(|e| format!("could not start {}: {e}", server.display()))?;
    Ok((child, port))
}

/// A SecantusDB process serving one test binary alone, stopped on drop.
///
/// SecantusDB is one Python process: test binaries that share one server
/// compete for its interpreter, and a binary whose concurrency tests keep it
/// busy can leave another binary's driver without a heartbeat answer for
/// seconds. A server per binary keeps their load apart, and a server that
/// stops answering fails only the binary it served.
pub(crate) struct PrivateMongo {
    child: Child,
    /// The URL the binary's tests use.
    pub(crate) url: String,
    /// The server's stderr.
    pub(crate) log: PathBuf,
}

impl PrivateMongo {
    /// Starts `server` on a free loopback port, logging to `log`.
    pub(crate) fn start(server: &Path, log: PathBuf) -> Result<PrivateMongo, String> {
        let (child, port) = spawn_secantus(server, &log)?;
        let mut private = PrivateMongo {
            child,
            url: format!("mongodb://127.0.0.1:{port}/?directConnection=true"),
            log,
        };
        wait_until_answers("127.0.0.1", port, "SecantusDB", Duration::from_secs(60))?;
        if let Ok(Some(status)) = private.child.try_wait() {
            return Err(format!("SecantusDB exited at start with {status}"));
        }
        Ok(private)
    }

    /// The process id, for the report.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last `lines` lines the server wrote to its log.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for PrivateMongo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        let mut stopped = Vec::new();
        for (name, child) in &mut self.children {
            let pid = child.id();
            let _ = child.kill();
            let _ = child.wait();
            stopped.push(format!("{name} (pid {pid})"));
        }
        if stopped.is_empty() {
            println!("xtask: stopped nothing: this run started no server");
        } else {
            println!(
                "xtask: stopped the servers this run started: {}",
                stopped.join(", ")
            );
        }
        if !self.found.is_empty() {
            println!(
                "xtask: left running (system services, or not started by this run): {}",
                self.found.join(", ")
            );
        }
    }
}

pub(crate) fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

fn say(message: &str) {
    println!("xtask: {message}");
}

/// The host:port part of a URL like `scheme://user:pass@host:port/db?x`.
fn host_port(url: &str, default_port: u16) -> Option<(String, u16)> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let host_port = host_port.split(',').next()?;
    if let Some(stripped) = host_port.strip_prefix('[') {
        let (host, after) = stripped.split_once(']')?;
        let port = after
            .strip_prefix(':')
            .and_then(|p| p.parse().ok())
            .unwrap_or(default_port);
        return Some((host.to_owned(), port));
    }
    match host_port.rsplit_once(':') {
        Some((host, port)) => Some((host.to_owned(), port.parse().ok()?)),
        None => Some((host_port.to_owned(), default_port)),
    }
}

fn answers(host: &str, port: u16) -> bool {
    use std::net::ToSocketAddrs;
    let Ok(addrs) = (host, port).to_socket_addrs() else {
        return false;
    };
    addrs
        .into_iter()
        .any(|addr| TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok())
}

fn wait_until_answers(host: &str, port: u16, what: &str, limit: Duration) -> Result<(), String> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if answers(host, port) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!(
        "{what} did not answer on {host}:{port} within {limit:?}"
    ))
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

fn which(program: &str) -> Option<PathBuf> {
    let candidates = [
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
        "/usr/local/bin",
        "/usr/local/sbin",
    ];
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(candidates)
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .map_err(|e| format!("could not run {shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed with {status}"))
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn apt_install(packages: &[&str], what: &str) -> Result<(), String> {
    if !is_root() || which("apt-get").is_none() {
        return Err(format!(
            "{what} is not installed and this run cannot install it (needs root and apt-get); \
             install the Debian package(s) {} or point the test variable at a running server",
            packages.join(" ")
        ));
    }
    say(&format!(
        "installing {} with apt-get (for {what})",
        packages.join(" ")
    ));
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

impl Services {
    /// Makes every service answer, starting or installing what is missing.
    pub(crate) fn start() -> Result<Services, String> {
        let mut services = Services {
            env: Vec::new(),
            children: Vec::new(),
            found: Vec::new(),
            private_mongo: None,
        };
        services.redis()?;
        services.postgres()?;
        services.mysql()?;
        services.mongo()?;
        Ok(services)
    }

    fn set(&mut self, var: &str, value: String) {
        self.env.push((var.to_owned(), value));
    }

    fn configured(var: &str) -> Option<String> {
        std::env::var(var).ok().filter(|v| !v.is_empty())
    }

    /// Uses the server `var` names (it must answer), or one already on the
    /// local default port; `false` when there is none and one must be started.
    fn use_running(
        &mut self,
        var: &str,
        name: &str,
        label: &str,
        default_port: u16,
        default_url: String,
    ) -> Result<bool, String> {
        if let Some(url) = Self::configured(var) {
            let (host, port) =
                host_port(&url, default_port).ok_or(format!("{var} is not a URL"))?;
            wait_until_answers(
                &host,
                port,
                &format!("{label} at {var}"),
                Duration::from_secs(5),
            )?;
            say(&format!("{name}: using {var} ({host}:{port})"));
            self.found.push(format!("{name} at {host}:{port}"));
            return Ok(true);
        }
        if answers("127.0.0.1", default_port) {
            say(&format!(
                "{name}: using the server at 127.0.0.1:{default_port}"
            ));
            self.set(var, default_url);
            self.found
                .push(format!("{name} at 127.0.0.1:{default_port}"));
            return Ok(true);
        }
        Ok(false)
    }

    fn redis(&mut self) -> Result<(), String> {
        const VAR: &str = "MTSESSION_TEST_REDIS_URL";
        if self.use_running(VAR, "redis", "Redis", 6379, "redis://127.0.0.1:6379".into())? {
            return Ok(());
        }
        if which("redis-server").is_none() {
            apt_install(&["redis-server"], "Redis")?;
        }
        let server = which("redis-server").ok_or("redis-server still not found after install")?;
        let port = free_port()?;
        let child = Command::new(server)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("could not start redis-server: {e}"))?;
        say(&format!(
            "redis: nothing on 127.0.0.1:6379, started redis-server pid {} on port {port}",
            child.id()
        ));
        self.children.push(("redis-server".into(), child));
        wait_until_answers("127.0.0.1", port, "redis-server", Duration::from_secs(30))?;
        self.set(VAR, format!("redis://127.0.0.1:{port}"));
        Ok(())
    }

    fn postgres(&mut self) -> Result<(), String> {
        const VAR: &str = "MTSESSION_TEST_POSTGRES_URL";
        if self.use_running(
            VAR,
            "postgres",
            "PostgreSQL",
            5432,
            "postgres://postgres@127.0.0.1:5432/test".into(),
        )? {
            return Ok(());
        }
        let mut fresh_install = false;
        if which("pg_ctlcluster").is_none() || !Path::new("/etc/postgresql").is_dir() {
            apt_install(&["postgresql"], "PostgreSQL")?;
            fresh_install = true;
        }
        let version = std::fs::read_dir("/etc/postgresql")
            .map_err(|e| format!("PostgreSQL is installed but /etc/postgresql is unreadable: {e}"))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .max()
            .ok_or("PostgreSQL is installed but has no cluster in /etc/postgresql")?;
        say(&format!(
            "postgres: nothing on 127.0.0.1:5432, starting cluster {version}/main"
        ));
        run(Command::new("pg_ctlcluster").args([
            "--skip-systemctl-redirect",
            &version,
            "main",
            "start",
        ]))?;
        wait_until_answers("127.0.0.1", 5432, "PostgreSQL", Duration::from_secs(60))?;
        self.found.push(format!(
            "postgres cluster {version}/main (started by this run as a system service)"
        ));
        if fresh_install {
            // A fresh Debian cluster asks TCP clients for a password: give the
            // postgres role one and create the test database.
            let psql = |sql: &str| {
                run(Command::new("runuser").args(["-u", "postgres", "--", "psql", "-q", "-c", sql]))
            };
            psql("ALTER USER postgres PASSWORD 'mtsession'")?;
            let _ = psql("CREATE DATABASE test");
            self.set(
                VAR,
                "postgres://postgres:mtsession@127.0.0.1:5432/test".into(),
            );
        } else {
            self.set(VAR, "postgres://postgres@127.0.0.1:5432/test".into());
        }
        Ok(())
    }

    fn mysql(&mut self) -> Result<(), String> {
        const VAR: &str = "MTSESSION_TEST_MYSQL_URL";
        if self.use_running(
            VAR,
            "mysql",
            "MySQL",
            3306,
            "mysql://root@127.0.0.1:3306/test".into(),
        )? {
            return Ok(());
        }
        let mut fresh_install = false;
        if which("mariadbd").is_none() {
            apt_install(&["mariadb-server"], "MariaDB")?;
            fresh_install = true;
        }
        let daemon = which("mariadbd").ok_or("mariadbd still not found after install")?;
        say("mysql: nothing on 127.0.0.1:3306, starting mariadbd");
        std::fs::create_dir_all("/run/mysqld")
            .map_err(|e| format!("cannot create /run/mysqld: {e}"))?;
        let _ = Command::new("chown")
            .args(["mysql:mysql", "/run/mysqld"])
            .status();
        run(Command::new("start-stop-daemon")
            .args(["--start", "--oknodo", "--background", "--exec"])
            .arg(&daemon))?;
        wait_until_answers("127.0.0.1", 3306, "MariaDB", Duration::from_secs(60))?;
        self.found
            .push("mariadbd (started by this run as a system service)".to_owned());
        if fresh_install {
            // A fresh MariaDB authenticates root by socket only: add a TCP user.
            let sql = "CREATE DATABASE IF NOT EXISTS test; \
                       CREATE USER IF NOT EXISTS 'mtsession'@'127.0.0.1' IDENTIFIED BY 'mtsession'; \
                       GRANT ALL ON *.* TO 'mtsession'@'127.0.0.1'; FLUSH PRIVILEGES;";
            run(Command::new("mariadb").args(["-e", sql]))?;
            self.set(
                VAR,
                "mysql://mtsession:mtsession@127.0.0.1:3306/test".into(),
            );
        } else {
            self.set(VAR, "mysql://root@127.0.0.1:3306/test".into());
        }
        Ok(())
    }

    /// Installs SecantusDB into target/secantus-venv when missing and
    /// returns its server program. The mongo outage tests start private
    /// servers from it (`MTSESSION_SECANTUSD`), so it is installed even
    /// when a running MongoDB serves the shared tests.
    fn secantus(&mut self) -> Result<PathBuf, String> {
        const VAR: &str = "MTSESSION_SECANTUSD";
        if let Some(path) = std::env::var_os(VAR).filter(|p| !p.is_empty()) {
            let path = PathBuf::from(path);
            self.set(VAR, path.display().to_string());
            return Ok(path);
        }
        let venv = target_dir().join("secantus-venv");
        let server = venv.join("bin").join("secantusd-py");
        if !server.is_file() {
            say(&format!(
                "mongo: installing {SECANTUS} into {}",
                venv.display()
            ));
            let python = which("python3").ok_or("python3 is needed to install SecantusDB")?;
            run(Command::new(python).args(["-m", "venv"]).arg(&venv))?;
            run(Command::new(venv.join("bin").join("pip")).args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                SECANTUS,
            ]))?;
        }
        self.set(VAR, server.display().to_string());
        Ok(server)
    }

    fn mongo(&mut self) -> Result<(), String> {
        const VAR: &str = "MTSESSION_TEST_MONGO_URL";
        let server = self.secantus()?;
        if self.use_running(
            VAR,
            "mongo",
            "MongoDB",
            27017,
            "mongodb://127.0.0.1:27017".into(),
        )? {
            return Ok(());
        }
        let (child, port) = spawn_secantus(&server, &target_dir().join("secantus.log"))?;
        say(&format!(
            "mongo: started SecantusDB pid {} on port {port}",
            child.id()
        ));
        self.children.push(("SecantusDB".into(), child));
        wait_until_answers("127.0.0.1", port, "SecantusDB", Duration::from_secs(60))?;
        self.private_mongo = Some(server);
        self.set(
            VAR,
            format!("mongodb://127.0.0.1:{port}/?directConnection=true"),
        );
        Ok(())
    }
}

/// `cargo xtask services`: start everything and wait for Ctrl-C.
pub(crate) fn serve_forever() -> Result<(), String> {
    let services = Services::start()?;
    for (var, value) in &services.env {
        println!("export {var}='{value}'");
    }
    println!("xtask: services are up; press Ctrl-C to stop the ones this run started");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, std::sync::Arc::clone(&stop))
            .map_err(|e| format!("cannot wait for Ctrl-C: {e}"))?;
    }
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("xtask: Ctrl-C received");
    drop(services);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::host_port;

    #[test]
    fn parses_host_and_port() {
        assert_eq!(
            host_port("redis://:pw@10.0.0.1:6380/0", 6379),
            Some(("10.0.0.1".into(), 6380))
        );
        assert_eq!(host_port("mongodb://h", 27017), Some(("h".into(), 27017)));
        assert_eq!(
            host_port("postgres://u@[::1]:5433/db", 5432),
            Some(("::1".into(), 5433))
        );
        assert_eq!(
            host_port("mysql://root@127.0.0.1/test", 3306),
            Some(("127.0.0.1".into(), 3306))
        );
    }
}
