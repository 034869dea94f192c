//! Child processes for fault tests: a test binary runs itself as the child,
//! through an ignored test named `child_process` that reads
//! its role from the environment and reports on stdout, one line per event.
//!
//! Crash, permission and concurrency tests of the file backends use it to
//! kill a writer mid-batch, start several writers on one file at a chosen
//! instant, or create a store under a given umask. A backend author can do
//! the same:
//!
//! ```no_run
//! use session_conformance::process::{Spawn, role};
//! use std::time::Duration;
//!
//! // In the test binary: the child's side, an ignored test.
//! if let Some(role) = role() {
//!     assert_eq!(role, "writer");
//!     println!("ready");
//! }
//!
//! // The parent's side.
//! let mut child = Spawn::role("writer").start("writer one");
//! child.wait_for_line("ready", Duration::from_secs(30));
//! let lines = child.kill();
//! # let _ = lines;
//! ```

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The variable naming the child's role.
pub const ROLE: &str = "MTSESSION_TEST_CHILD_ROLE";

/// The child's setting `key` (set by the parent), or a panic naming it.
pub fn setting(key: &str) -> String {
    std::env::var(format!("MTSESSION_TEST_CHILD_{key}"))
        .unwrap_or_else(|_| panic!("the parent sets MTSESSION_TEST_CHILD_{key}"))
}

/// The role of this process when it runs as a child, `None` otherwise.
pub fn role() -> Option<String> {
    std::env::var(ROLE).ok()
}

/// A multi-thread Tokio runtime for a child.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime")
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Spins until the wall clock reaches `at_ms` (two processes started apart
/// meet at the same instant this way, within scheduling jitter).
pub fn wait_until_ms(at_ms: u64) {
    while now_ms() + 2 < at_ms {
        thread::sleep(Duration::from_millis(1));
    }
    while now_ms() < at_ms {
        std::hint::spin_loop();
    }
}

/// A running child and the lines it printed.
pub struct ChildProcess {
    /// The name the parent gave it, used in messages.
    pub name: String,
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Option<JoinHandle<String>>,
    stdout_done: Option<JoinHandle<()>>,
}

/// How to start a child.
pub struct Spawn<'a> {
    /// The role the child reads with [`role`].
    pub role: &'a str,
    /// Settings the child reads with [`setting`].
    pub settings: Vec<(&'a str, String)>,
    /// Run under this umask (through `sh -c 'umask ...; exec ...'`).
    pub umask: Option<&'a str>,
    /// Give the child a pipe on stdin ([`ChildProcess::stdin`]).
    pub stdin: bool,
}

impl<'a> Spawn<'a> {
    /// A child with `role` and nothing else set.
    pub fn role(role: &'a str) -> Self {
        Spawn {
            role,
            settings: Vec::new(),
            umask: None,
            stdin: false,
        }
    }

    /// Adds the setting `key`.
    pub fn setting(mut self, key: &'a str, value: impl ToString) -> Self {
        self.settings.push((key, value.to_string()));
        self
    }

    /// Runs the child under `umask`.
    pub fn umask(mut self, umask: &'a str) -> Self {
        self.umask = Some(umask);
        self
    }

    /// Gives the child a pipe on stdin.
    pub fn with_stdin(mut self) -> Self {
        self.stdin = true;
        self
    }

    /// Starts this test binary again as the child named `name`, running
    /// its ignored `child_process` test with the role and settings.
    pub fn start(self, name: impl Into<String>) -> ChildProcess {
        let exe = std::env::current_exe().expect("the test binary");
        let args = [
            "--exact",
            "child_process",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ];
        let mut command = match self.umask {
            Some(umask) => {
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg(format!("umask {umask} && exec \"$@\""))
                    .arg("sh")
                    .arg(&exe)
                    .args(args);
                sh
            }
            None => {
                let mut direct = Command::new(&exe);
                direct.args(args);
                direct
            }
        };
        command.env(ROLE, self.role);
        for (key, value) in &self.settings {
            command.env(format!("MTSESSION_TEST_CHILD_{key}"), value);
        }
        command
            .stdin(if self.stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn the child");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let (send, lines) = mpsc::channel();
        let stdout_done = thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest prints `test child_process ... ` before the
                // child's first line.
                let line = match line.strip_prefix("test child_process ... ") {
                    Some(rest) => rest.to_owned(),
                    None => line,
                };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = thread::spawn(move || {
            let mut text = String::new();
            for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                text.push_str(&line);
                text.push('\n');
            }
            text
        });
        ChildProcess {
            name: name.into(),
            child,
            lines,
            seen: Vec::new(),
            stderr: Some(stderr),
            stdout_done: Some(stdout_done),
        }
    }
}

impl ChildProcess {
    /// Waits (up to `timeout`) for a line equal to `wanted`.
    pub fn wait_for_line(&mut self, wanted: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line == wanted;
                    self.seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let tail = &self.seen[self.seen.len().saturating_sub(20)..];
                    panic!(
                        "{} did not print {wanted:?} within {timeout:?}; its last lines: {tail:?}",
                        self.name
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let output = self.finish_output();
                    panic!("{} ended before printing {wanted:?}: {output}", self.name)
                }
            }
        }
    }

    /// The child's stdin, when it was started with one.
    pub fn stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin.take()
    }

    /// Kills the child with SIGKILL and returns every line it printed.
    pub fn kill(mut self) -> Vec<String> {
        // kill() sends SIGKILL on Unix; an exited child is not an error.
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.collect();
        self.seen
    }

    /// Waits for the child to exit; returns its status, its lines and its stderr.
    pub fn wait(mut self) -> (ExitStatus, Vec<String>, String) {
        let status = self.child.wait().expect("wait for the child");
        self.collect();
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        (status, self.seen, stderr)
    }

    /// Waits for the child and asserts that its role passed.
    pub fn wait_success(self) -> Vec<String> {
        let name = self.name.clone();
        let (status, lines, stderr) = self.wait();
        assert!(
            status.success() && lines.iter().any(|l| l.contains("1 passed")),
            "{name} failed ({status}):\n{}\n{stderr}",
            lines.join("\n")
        );
        lines
    }

    fn collect(&mut self) {
        if let Some(done) = self.stdout_done.take() {
            let _ = done.join();
        }
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }

    fn finish_output(&mut self) -> String {
        let _ = self.child.wait();
        self.collect();
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        format!("stdout:\n{}\nstderr:\n{stderr}", self.seen.join("\n"))
    }
}

/// The `-wal` or `-shm` file next to `path`.
pub fn side(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The numbers after `prefix ` in lines like `ack 12`.
pub fn numbers(lines: &[String], prefix: &str) -> Vec<i64> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(prefix)?.strip_prefix(' '))
        .filter_map(|n| n.trim().parse().ok())
        .collect()
}

/// Lines `word K REST` by K.
pub fn outcomes(lines: &[String]) -> HashMap<i64, String> {
    let mut found = HashMap::new();
    for line in lines {
        let mut parts = line.splitn(3, ' ');
        if let (Some(word), Some(k)) = (parts.next(), parts.next())
            && let Ok(k) = k.parse::<i64>()
        {
            found.insert(
                k,
                format!("{word} {}", parts.next().unwrap_or(""))
                    .trim()
                    .to_owned(),
            );
        }
    }
    found
}

/// A small pseudo-random generator (xorshift), seeded by the caller.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    /// A generator seeded from the clock, and the seed (print it to replay a run).
    pub fn from_time() -> (Self, u64) {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(7);
        (Rng::new(seed), seed)
    }

    /// A generator seeded from the variable `var` when it holds a number,
    /// from the clock otherwise; prints `VAR=seed` so that a failing run can
    /// be replayed with that variable.
    pub fn from_env(var: &str) -> Self {
        let seed = std::env::var(var)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| Rng::from_time().1);
        eprintln!("{var}={seed}");
        Rng::new(seed)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }

    /// A duration of `from` milliseconds or more, below `to` (`from` when
    /// `to` is not above it).
    pub fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to.saturating_sub(from)))
    }
}
