//! `cargo xtask test-all`: build every test once, run the test binaries side
//! by side, and report what ran.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::services::{PrivateMongo, Services, target_dir, workspace_root};

/// The features every test build uses: every backend of the facade and the
/// command, and the shared benchmark workloads (so benches type-check).
pub(crate) const TEST_FEATURES: &str = "mtsession/all-backends,session-cli/all-backends";

/// Which test target of which package runs the conformance suite for a backend.
const BACKENDS: &[(&str, &str, &str)] = &[
    ("memory", "session-conformance", "tests/memory.rs"),
    ("sqlite", "session-sqlite", "tests/conformance.rs"),
    ("sled", "session-sled", "tests/conformance.rs"),
    ("redis", "session-redis", "tests/conformance.rs"),
    ("sql-sqlite", "session-sql", "tests/conformance_sqlite.rs"),
    (
        "sql-postgres",
        "session-sql",
        "tests/conformance_postgres.rs",
    ),
    ("sql-mysql", "session-sql", "tests/conformance_mysql.rs"),
    ("mongo", "session-mongo", "tests/conformance.rs"),
    (
        "mongo-no-tx",
        "session-mongo",
        "tests/conformance_without_transactions.rs",
    ),
    (
        "example-json",
        "example-json-backend",
        "tests/conformance.rs",
    ),
];

/// Adapters and tools with a count line of their own: every test of the package.
const ADAPTERS: &[(&str, &str)] = &[
    ("grammers adapter", "session-grammers"),
    ("formats", "session-formats"),
    ("command", "session-cli"),
    ("facade", "mtsession"),
];

/// The kinds of the fault suite, by test-name prefix.
const FAULT_KINDS: &[&str] = &[
    "crash",
    "outage",
    "concurrency",
    "corpus",
    "permissions",
    "differential",
];

/// Test binaries run at once. Most tests wait on servers, files and child
/// processes more than on the two cores.
const PARALLEL: usize = 3;

/// A test binary that runs longer than this is killed and counted as failed.
/// The slowest binary takes about four minutes on two busy cores; the limit
/// keeps a hung binary from pushing the run past CI's time.
const BINARY_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Packages whose test binaries use the MongoDB test server: when this run
/// started SecantusDB itself, each of their binaries gets a server of its own.
const MONGO_PACKAGES: &[&str] = &["session-mongo", "mtsession"];

/// The variable that points tests at the MongoDB test server.
const MONGO_URL_VAR: &str = "MTSESSION_TEST_MONGO_URL";

#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Counts {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.ignored += other.ignored;
    }
}

/// Parses libtest's `test result: ok. 3 passed; 0 failed; 1 ignored; ...`.
fn parse_result(line: &str) -> Option<Counts> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let mut counts = Counts::default();
    for part in rest.split(';') {
        let words: Vec<&str> = part.split_whitespace().collect();
        let (number, label) = match words.as_slice() {
            [_, n, label] | [n, label] => (n, label),
            _ => continue,
        };
        let Ok(n) = number.parse::<u64>() else {
            continue;
        };
        match *label {
            "passed" => counts.passed = n,
            "failed" => counts.failed = n,
            "ignored" => counts.ignored = n,
            _ => {}
        }
    }
    Some(counts)
}

/// Parses libtest's `test path::name ... ok` into the name and whether it passed.
fn parse_test_line(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix("test ")?;
    let (name, outcome) = rest.rsplit_once(" ... ")?;
    Some((name.trim(), outcome.trim()))
}

/// The fault-suite kind of a test, from its name's last segment.
fn fault_kind(name: &str) -> Option<&'static str> {
    let last = name.rsplit("::").next().unwrap_or(name);
    FAULT_KINDS.iter().copied().find(|kind| {
        last.strip_prefix(kind)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('_'))
    })
}

pub(crate) fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

/// One test binary cargo built.
#[derive(Clone, Debug)]
struct TestBinary {
    package: String,
    /// The target's source, relative to the package (`tests/x.rs`, `src/lib.rs`).
    source: String,
    executable: PathBuf,
    package_dir: PathBuf,
}

impl TestBinary {
    fn label(&self) -> String {
        format!("{} {}", self.package, self.source)
    }
}

/// Builds every test target once, with one set of features, and lists the binaries.
fn build_tests() -> Result<Vec<TestBinary>, String> {
    println!("xtask: building every test target once (features {TEST_FEATURES})");
    let mut child = cargo()
        .args([
            "test",
            "--workspace",
            "--no-run",
            "--message-format=json-render-diagnostics",
            "--features",
            TEST_FEATURES,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not run cargo: {e}"))?;
    let mut binaries = Vec::new();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let Ok(message) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if message["reason"] != "compiler-artifact" || message["profile"]["test"] != true {
                continue;
            }
            let Some(executable) = message["executable"].as_str() else {
                continue;
            };
            let manifest = PathBuf::from(message["manifest_path"].as_str().unwrap_or_default());
            let package_dir = manifest.parent().map(Path::to_path_buf).unwrap_or_default();
            let src = PathBuf::from(message["target"]["src_path"].as_str().unwrap_or_default());
            let source = src
                .strip_prefix(&package_dir)
                .unwrap_or(&src)
                .display()
                .to_string();
            let package = message["package_id"]
                .as_str()
                .and_then(package_name)
                .unwrap_or_default();
            binaries.push(TestBinary {
                package,
                source,
                executable: PathBuf::from(executable),
                package_dir,
            });
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("cargo did not finish: {e}"))?;
    if !status.success() {
        return Err("the workspace's tests do not build".into());
    }
    binaries.sort_by_key(TestBinary::label);
    Ok(binaries)
}

/// The package name in a cargo package id (`path+file:///…/core#session-core@0.1.0`
/// or the older `session-core 0.1.0 (path+file://…)`).
fn package_name(id: &str) -> Option<String> {
    if let Some((_, tail)) = id.rsplit_once('#') {
        let name = tail.split('@').next()?;
        if name.chars().next().is_some_and(|c| c.is_ascii_digit()) {
            // `…/crates/core#0.1.0`: the directory name is the package name.
            let path = id.rsplit_once('#')?.0;
            return path.rsplit('/').next().map(str::to_owned);
        }
        return Some(name.to_owned());
    }
    id.split_whitespace().next().map(str::to_owned)
}

/// What one test binary did.
struct BinaryRun {
    binary: TestBinary,
    counts: Counts,
    tests: Vec<(String, String)>,
    output: String,
    problem: Option<String>,
    elapsed: Duration,
}

fn run_binary(binary: &TestBinary, env: &[(String, String)]) -> BinaryRun {
    let started = Instant::now();
    let spawned = Command::new(&binary.executable)
        .current_dir(&binary.package_dir)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("CARGO_MANIFEST_DIR", &binary.package_dir)
        .env("MTSESSION_REQUIRE_SERVICES", "1")
        .env("RUST_BACKTRACE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            return BinaryRun {
                binary: binary.clone(),
                counts: Counts::default(),
                tests: Vec::new(),
                output: String::new(),
                problem: Some(format!("could not start: {e}")),
                elapsed: started.elapsed(),
            };
        }
    };
    let collect = |mut stream: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stream.read_to_string(&mut text);
            text
        })
    };
    let out = child.stdout.take().map(|s| collect(Box::new(s)));
    let err = child.stderr.take().map(|s| collect(Box::new(s)));
    let mut problem = None;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                if !status.success() {
                    problem = Some(format!("exited with {status}"));
                }
                break;
            }
            Ok(None) if started.elapsed() > BINARY_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                problem = Some(format!("killed after {BINARY_TIMEOUT:?}"));
                break;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => {
                problem = Some(format!("could not wait for it: {e}"));
                break;
            }
        }
    }
    let stdout = out.and_then(|h| h.join().ok()).unwrap_or_default();
    let stderr = err.and_then(|h| h.join().ok()).unwrap_or_default();
    let mut counts = Counts::default();
    let mut tests = Vec::new();
    for line in stdout.lines() {
        if let Some(c) = parse_result(line) {
            counts.add(c);
        } else if let Some((name, outcome)) = parse_test_line(line) {
            tests.push((name.to_owned(), outcome.to_owned()));
        }
    }
    if problem.is_some() && counts.failed == 0 {
        counts.failed = 1;
    }
    BinaryRun {
        binary: binary.clone(),
        counts,
        tests,
        output: format!("{stdout}{stderr}"),
        problem,
        elapsed: started.elapsed(),
    }
}

/// Runs one binary, on a MongoDB-wire server of its own when it uses one
/// and `secantus` (the program) is given.
fn run_binary_with_servers(
    binary: &TestBinary,
    env: &[(String, String)],
    secantus: Option<&Path>,
) -> BinaryRun {
    let Some(server) = secantus.filter(|_| MONGO_PACKAGES.contains(&binary.package.as_str()))
    else {
        return run_binary(binary, env);
    };
    let name: String = binary
        .label()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let log = target_dir().join(format!("secantus-{name}.log"));
    let private = match PrivateMongo::start(server, log) {
        Ok(private) => private,
        Err(e) => {
            return BinaryRun {
                binary: binary.clone(),
                counts: Counts {
                    failed: 1,
                    ..Counts::default()
                },
                tests: Vec::new(),
                output: String::new(),
                problem: Some(format!("no MongoDB-wire server of its own: {e}")),
                elapsed: Duration::ZERO,
            };
        }
    };
    let mut env: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| k != MONGO_URL_VAR)
        .cloned()
        .collect();
    env.push((MONGO_URL_VAR.into(), private.url.clone()));
    let mut run = run_binary(binary, &env);
    let note = format!(
        "xtask: {} ran on its own SecantusDB (pid {}, {})\n",
        binary.label(),
        private.pid(),
        private.url
    );
    run.output.insert_str(0, &note);
    if run.problem.is_some() || run.counts.failed > 0 {
        run.output.push_str(&format!(
            "\n----- the last lines of {} -----\n{}\n",
            private.log.display(),
            private.log_tail(40)
        ));
    }
    run
}

/// Runs the binaries, `PARALLEL` at a time, printing each one's output when it ends.
fn run_all(
    binaries: &[TestBinary],
    env: &[(String, String)],
    secantus: Option<PathBuf>,
) -> Vec<BinaryRun> {
    let queue = Arc::new(Mutex::new(binaries.to_vec()));
    let (tx, rx) = mpsc::channel::<BinaryRun>();
    let mut workers = Vec::new();
    for _ in 0..PARALLEL {
        let queue = Arc::clone(&queue);
        let tx = tx.clone();
        let env = env.to_vec();
        let secantus = secantus.clone();
        workers.push(std::thread::spawn(move || {
            loop {
                let next = queue.lock().map(|mut q| q.pop()).unwrap_or(None);
                let Some(binary) = next else { return };
                let run = run_binary_with_servers(&binary, &env, secantus.as_deref());
                if tx.send(run).is_err() {
                    return;
                }
            }
        }));
    }
    drop(tx);
    let mut runs = Vec::new();
    for run in rx {
        let c = run.counts;
        println!(
            "\n===== {} ({} passed, {} failed, {} ignored, {:.1} s) =====",
            run.binary.label(),
            c.passed,
            c.failed,
            c.ignored,
            run.elapsed.as_secs_f64()
        );
        if c.failed > 0 || run.problem.is_some() {
            print!("{}", run.output);
            if let Some(problem) = &run.problem {
                println!("xtask: {}: {problem}", run.binary.label());
            }
        } else {
            for (name, outcome) in &run.tests {
                println!("test {name} ... {outcome}");
            }
        }
        runs.push(run);
    }
    for worker in workers {
        let _ = worker.join();
    }
    runs.sort_by_key(|r| r.binary.label());
    runs
}

/// Sets up the venv with the real Telethon and Pyrogram that the end-to-end
/// interop tests drive, and returns its python.
fn interop_python() -> Result<Option<String>, String> {
    let requirements = workspace_root().join("fixtures/scripts/requirements-interop.txt");
    if !requirements.is_file() {
        return Ok(None);
    }
    let venv = target_dir().join("interop-env").join("venv");
    let python = venv.join("bin").join("python");
    let stamp = venv.join("requirements.stamp");
    let wanted = std::fs::read_to_string(&requirements).map_err(|e| e.to_string())?;
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
        println!("xtask: creating {} for the interop tests", venv.display());
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status();
        if !ok.is_ok_and(|s| s.success()) {
            return Err("python3 -m venv failed; install python3-venv".into());
        }
        let ok = Command::new(venv.join("bin").join("pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(&requirements)
            .status();
        if !ok.is_ok_and(|s| s.success()) {
            return Err(format!("pip install -r {} failed", requirements.display()));
        }
        std::fs::write(&stamp, wanted).map_err(|e| e.to_string())?;
    }
    Ok(Some(python.display().to_string()))
}

/// Runs the doc tests (they need rustdoc, so cargo runs them).
fn doc_tests(env: &[(String, String)]) -> Result<Counts, String> {
    println!("\n===== doc tests =====");
    let output = cargo()
        .args(["test", "--workspace", "--doc", "--features", TEST_FEATURES])
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("MTSESSION_REQUIRE_SERVICES", "1")
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("could not run cargo test --doc: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut counts = Counts::default();
    for line in stdout.lines() {
        if let Some(c) = parse_result(line) {
            counts.add(c);
        }
    }
    if !output.status.success() {
        print!("{stdout}");
        if counts.failed == 0 {
            counts.failed = 1;
        }
    }
    println!(
        "doc tests: {} passed, {} failed, {} ignored",
        counts.passed, counts.failed, counts.ignored
    );
    Ok(counts)
}

pub(crate) fn test_all(extra: &[String]) -> Result<(), String> {
    if !extra.is_empty() {
        return Err(format!("test-all takes no arguments, got {extra:?}"));
    }
    let started = Instant::now();
    let services = Services::start()?;
    let mut env = services.env.clone();
    if let Some(python) = interop_python()? {
        env.push(("MTSESSION_INTEROP_PYTHON".into(), python));
    }
    env.extend(crate::tools::checkers()?);
    let binaries = build_tests()?;
    println!(
        "xtask: built {} test binaries in {:.0} s; running {PARALLEL} at a time",
        binaries.len(),
        started.elapsed().as_secs_f64()
    );
    let runs = run_all(&binaries, &env, services.private_mongo.clone());
    let docs = doc_tests(&env)?;
    let mut problems: Vec<String> = Vec::new();

    println!("\n===== conformance by backend =====");
    println!(
        "{:<14} {:>7} {:>7} {:>8}",
        "backend", "passed", "failed", "ignored"
    );
    for (backend, package, target) in BACKENDS {
        let mut counts = Counts::default();
        let mut found = false;
        for run in &runs {
            if run.binary.package == *package && Path::new(&run.binary.source) == Path::new(target)
            {
                counts.add(run.counts);
                found = true;
            }
        }
        println!(
            "{backend:<14} {:>7} {:>7} {:>8}",
            counts.passed, counts.failed, counts.ignored
        );
        if !found || counts.passed == 0 {
            problems.push(format!(
                "backend {backend} ran no conformance test ({package} {target})"
            ));
        }
    }

    println!("\n===== adapters and tools =====");
    for (label, package) in ADAPTERS {
        let mut counts = Counts::default();
        for run in runs.iter().filter(|r| r.binary.package == *package) {
            counts.add(run.counts);
        }
        println!(
            "{label:<18} {:>7} passed {:>4} failed {:>4} ignored",
            counts.passed, counts.failed, counts.ignored
        );
        if counts.passed == 0 {
            problems.push(format!("{label} ({package}) ran no test"));
        }
    }

    println!("\n===== fault suite by kind and package (tests passed) =====");
    let mut by_kind: BTreeMap<(&str, String), u64> = BTreeMap::new();
    for run in &runs {
        for (name, outcome) in &run.tests {
            if let Some(kind) = fault_kind(name)
                && outcome == "ok"
            {
                *by_kind
                    .entry((kind, run.binary.package.clone()))
                    .or_default() += 1;
            }
        }
    }
    for kind in FAULT_KINDS {
        let rows: Vec<String> = by_kind
            .iter()
            .filter(|((k, _), _)| k == kind)
            .map(|((_, package), n)| format!("{package} {n}"))
            .collect();
        let total: u64 = by_kind
            .iter()
            .filter(|((k, _), _)| k == kind)
            .map(|(_, n)| n)
            .sum();
        println!("{kind:<12} {total:>4}  ({})", rows.join(", "));
        if total == 0 {
            problems.push(format!("no {kind} test ran"));
        }
    }

    let mut total = Counts::default();
    for run in &runs {
        total.add(run.counts);
        if run.counts.failed > 0 || run.problem.is_some() {
            problems.push(format!(
                "{}: {} failed{}",
                run.binary.label(),
                run.counts.failed,
                run.problem
                    .as_ref()
                    .map(|p| format!(" ({p})"))
                    .unwrap_or_default()
            ));
        }
    }
    total.add(docs);
    if docs.failed > 0 {
        problems.push("doc tests failed".into());
    }
    println!(
        "\nall tests: {} passed, {} failed, {} ignored, in {:.0} s",
        total.passed,
        total.failed,
        total.ignored,
        started.elapsed().as_secs_f64()
    );
    drop(services);
    if problems.is_empty() {
        println!("xtask: test-all passed");
        Ok(())
    } else {
        Err(format!("test-all failed:\n  {}", problems.join("\n  ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_libtest_summary() {
        let line = "test result: ok. 52 passed; 1 failed; 3 ignored; 0 measured; 0 filtered out; finished in 1.2s";
        assert_eq!(
            parse_result(line),
            Some(Counts {
                passed: 52,
                failed: 1,
                ignored: 3
            })
        );
        assert_eq!(parse_result("running 3 tests"), None);
    }

    #[test]
    fn parses_test_lines_and_kinds() {
        assert_eq!(
            parse_test_line("test crash_immediate_loses_nothing ... ok"),
            Some(("crash_immediate_loses_nothing", "ok"))
        );
        assert_eq!(fault_kind("outage::outage_redis_sigstop"), Some("outage"));
        assert_eq!(fault_kind("crashes_are_fine"), None);
        assert_eq!(fault_kind("corpus"), Some("corpus"));
    }

    #[test]
    fn package_names_from_ids() {
        assert_eq!(
            package_name("path+file:///work/main/crates/core#session-core@0.1.0").as_deref(),
            Some("session-core")
        );
        assert_eq!(
            package_name("path+file:///work/main/xtask#0.0.0").as_deref(),
            Some("xtask")
        );
        assert_eq!(
            package_name("session-core 0.1.0 (path+file:///x)").as_deref(),
            Some("session-core")
        );
    }
}
