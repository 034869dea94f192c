//! `cargo xtask test-all` and `cargo xtask bench`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::services::{Services, target_dir, workspace_root};

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
];

/// Every package whose tests run, in order.
const PACKAGES: &[&str] = &[
    "session-core",
    "session-conformance",
    "session-sqlite",
    "session-sled",
    "session-redis",
    "session-sql",
    "session-mongo",
    "session-cli",
    "xtask",
];

/// Packages with criterion benchmarks.
const BENCH_PACKAGES: &[&str] = &[
    "session-sqlite",
    "session-sled",
    "session-redis",
    "session-sql",
    "session-mongo",
];

#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
struct Counts {
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

/// The test target named by cargo's `Running tests/x.rs (target/...)` line.
fn parse_running(line: &str) -> Option<&str> {
    let rest = line.trim().strip_prefix("Running ")?;
    Some(rest.split(" (").next().unwrap_or(rest).trim())
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

/// Runs `cargo test -p package`, echoing its output, and returns the counts per target.
fn test_package(package: &str, env: &[(String, String)]) -> Result<Vec<(String, Counts)>, String> {
    println!("\n===== cargo test -p {package} =====");
    let mut child = cargo()
        .args(["test", "--no-fail-fast", "-p", package])
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("MTSESSION_REQUIRE_SERVICES", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not run cargo test: {e}"))?;
    // Merge stderr (cargo's "Running" lines) and stdout (libtest's results) in order.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        }));
    }
    if let Some(err) = child.stderr.take() {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        }));
    }
    drop(tx);
    let mut results = Vec::new();
    let mut current = String::from("?");
    for line in rx {
        println!("{line}");
        if let Some(target) = parse_running(&line) {
            current = target.to_owned();
        } else if line.trim().starts_with("Doc-tests ") {
            current = "doc-tests".to_owned();
        } else if let Some(counts) = parse_result(&line) {
            results.push((current.clone(), counts));
        }
    }
    for reader in readers {
        let _ = reader.join();
    }
    let status = child
        .wait()
        .map_err(|e| format!("cargo test did not finish: {e}"))?;
    if !status.success() && results.iter().all(|(_, c)| c.failed == 0) {
        return Err(format!(
            "cargo test -p {package} failed ({status}) before running its tests"
        ));
    }
    Ok(results)
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

pub(crate) fn test_all(extra: &[String]) -> Result<(), String> {
    if !extra.is_empty() {
        return Err(format!("test-all takes no arguments, got {extra:?}"));
    }
    let services = Services::start()?;
    let mut env = services.env.clone();
    if let Some(python) = interop_python()? {
        env.push(("MTSESSION_INTEROP_PYTHON".into(), python));
    }
    println!("xtask: building every test target");
    let status = cargo()
        .args(["test", "--workspace", "--no-run"])
        .status()
        .map_err(|e| format!("could not run cargo: {e}"))?;
    if !status.success() {
        return Err("the workspace's tests do not build".into());
    }

    let mut per_target: Vec<(String, String, Counts)> = Vec::new();
    let mut problems = Vec::new();
    for package in PACKAGES {
        match test_package(package, &env) {
            Ok(results) => {
                for (target, counts) in results {
                    per_target.push(((*package).to_owned(), target, counts));
                }
            }
            Err(e) => problems.push(e),
        }
    }

    println!("\n===== conformance by backend =====");
    println!(
        "{:<14} {:>7} {:>7} {:>8}",
        "backend", "passed", "failed", "ignored"
    );
    for (backend, package, target) in BACKENDS {
        let mut counts = Counts::default();
        for (p, t, c) in &per_target {
            if p == package && Path::new(t) == Path::new(target) {
                counts.add(*c);
            }
        }
        println!(
            "{backend:<14} {:>7} {:>7} {:>8}",
            counts.passed, counts.failed, counts.ignored
        );
        if counts.passed + counts.failed == 0 {
            problems.push(format!(
                "backend {backend} ran no conformance test ({package} {target})"
            ));
        }
    }
    let mut total = Counts::default();
    for (_, _, c) in &per_target {
        total.add(*c);
    }
    if total.failed > 0 {
        let failing: Vec<String> = per_target
            .iter()
            .filter(|(_, _, c)| c.failed > 0)
            .map(|(p, t, c)| format!("{p} {t}: {} failed", c.failed))
            .collect();
        problems.push(format!("failing tests in {}", failing.join(", ")));
    }
    println!(
        "\nall tests: {} passed, {} failed, {} ignored",
        total.passed, total.failed, total.ignored
    );
    drop(services);
    if problems.is_empty() {
        println!("xtask: test-all passed");
        Ok(())
    } else {
        Err(format!("test-all failed:\n  {}", problems.join("\n  ")))
    }
}

pub(crate) fn bench(extra: &[String]) -> Result<(), String> {
    let services = Services::start()?;
    let mut failed = Vec::new();
    for package in BENCH_PACKAGES {
        println!("\n===== cargo bench -p {package} =====");
        let status = cargo()
            .args(["bench", "-p", package])
            .args(extra)
            .envs(services.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("MTSESSION_REQUIRE_SERVICES", "1")
            .status()
            .map_err(|e| format!("could not run cargo bench: {e}"))?;
        if !status.success() {
            failed.push(*package);
        }
    }
    drop(services);
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("benchmarks failed in {}", failed.join(", ")))
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
    fn parses_running_line() {
        let line = "     Running tests/conformance.rs (target/debug/deps/conformance-0a1b)";
        assert_eq!(parse_running(line), Some("tests/conformance.rs"));
        assert_eq!(
            parse_running("     Running unittests src/lib.rs (x)"),
            Some("unittests src/lib.rs")
        );
    }
}
