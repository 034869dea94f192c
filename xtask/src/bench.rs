//! `cargo xtask bench`: every backend's criterion benchmarks, with the services running.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::services::{Services, target_dir, workspace_root};
use crate::testrun::cargo;

/// Packages with criterion benchmarks.
const BENCH_PACKAGES: &[&str] = &[
    "session-sqlite",
    "session-sled",
    "session-redis",
    "session-sql",
    "session-mongo",
];

pub(crate) fn bench(extra: &[String]) -> Result<(), String> {
    if extra.first().map(String::as_str) == Some("--compare") {
        return compare(&extra[1..]);
    }
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

/// The opt-in flag of `--compare` that also measures the peer libraries
/// that cannot be linked into `mtsession-bench` (grammers-session's
/// `SqliteSession`, on libsql).
const WITH_PEER_LIBRARIES: &str = "--with-peer-libraries";

/// The separate program measuring grammers-session's `SqliteSession`: its
/// own workspace and Cargo.lock, built into `target/peer-libraries`.
const GRAMMERS_SQLITE_MANIFEST: &str = "crates/bench/grammers-sqlite/Cargo.toml";
const GRAMMERS_SQLITE_BIN: &str = "mtsession-bench-grammers-sqlite";

/// `mtsession-bench`'s defaults (`Config` in crates/bench/src/main.rs), for
/// the peer libraries run without these arguments.
const DEFAULT_REPEAT: &str = "3";
const DEFAULT_PEERS: &str = "10000";
const DEFAULT_OPEN_PEERS: &str = "100000";

/// `cargo xtask bench --compare [--with-peer-libraries] [ARGS]`: each store
/// beside its raw engine, written to docs/bench/. ARGS go to
/// `mtsession-bench` (`--backends sqlite,redis`, `--repeat 5`, `--peers
/// 10000`, `--open-peers 100000`). `--with-peer-libraries` first builds and
/// runs crates/bench/grammers-sqlite (grammers-session's own `SqliteSession`
/// with the same `--repeat`, `--peers` and `--open-peers`) and hands its
/// figures to `mtsession-bench --extra-measures`, for the grammers-session
/// column of the sqlite rows.
fn compare(extra: &[String]) -> Result<(), String> {
    let with_peer_libraries = extra.iter().any(|a| a == WITH_PEER_LIBRARIES);
    let mut args: Vec<String> = extra
        .iter()
        .filter(|a| *a != WITH_PEER_LIBRARIES)
        .cloned()
        .collect();
    if with_peer_libraries && let Some(measures) = peer_libraries(&args)? {
        args.push("--extra-measures".into());
        args.push(measures.display().to_string());
    }
    let services = Services::start()?;
    println!("xtask: building mtsession-bench (release)");
    let status = cargo()
        .args(["run", "--release", "--quiet", "-p", "session-bench", "--"])
        .args(&args)
        .envs(services.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .status()
        .map_err(|e| format!("could not run mtsession-bench: {e}"))?;
    drop(services);
    if status.success() {
        let out = arg_value(&args, "--out").unwrap_or("docs/bench");
        println!("xtask: wrote {out}/RESULTS.md, {out}/ratios.svg and {out}/compare.json");
        Ok(())
    } else {
        Err("mtsession-bench failed".into())
    }
}

/// The value following `name` in `args` (`mtsession-bench`'s own syntax:
/// `--peers 10000`).
fn arg_value<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// Builds and runs the grammers-session `SqliteSession` benchmark (unless
/// `--backends` leaves out sqlite); returns the file holding its measures,
/// one JSON line each.
fn peer_libraries(args: &[String]) -> Result<Option<PathBuf>, String> {
    if let Some(backends) = arg_value(args, "--backends")
        && !backends.split(',').any(|b| b == "sqlite")
    {
        println!("xtask: {WITH_PEER_LIBRARIES}: sqlite is not measured, nothing to compare with");
        return Ok(None);
    }
    let target = target_dir().join("peer-libraries");
    println!(
        "xtask: building {GRAMMERS_SQLITE_BIN} (release, into {}; libsql compiles its SQLite \
         from C, minutes the first time)",
        target.display()
    );
    let status = cargo()
        .args(["build", "--release", "--locked", "--manifest-path"])
        .arg(workspace_root().join(GRAMMERS_SQLITE_MANIFEST))
        .arg("--target-dir")
        .arg(&target)
        .status()
        .map_err(|e| format!("could not build {GRAMMERS_SQLITE_BIN}: {e}"))?;
    if !status.success() {
        return Err(format!("building {GRAMMERS_SQLITE_BIN} failed"));
    }
    let binary = target.join("release").join(GRAMMERS_SQLITE_BIN);
    let dir = std::env::temp_dir().join(format!("mtsession-peer-libraries-{}", std::process::id()));
    let run_args = [
        (
            "--repeat",
            arg_value(args, "--repeat").unwrap_or(DEFAULT_REPEAT),
        ),
        (
            "--peers",
            arg_value(args, "--peers").unwrap_or(DEFAULT_PEERS),
        ),
        (
            "--open-peers",
            arg_value(args, "--open-peers").unwrap_or(DEFAULT_OPEN_PEERS),
        ),
    ];
    println!(
        "xtask: measuring grammers-session's SqliteSession:{}",
        run_args
            .iter()
            .map(|(name, value)| format!(" {name} {value}"))
            .collect::<String>()
    );
    let output = Command::new(&binary)
        .arg("--dir")
        .arg(&dir)
        .args(run_args.iter().flat_map(|(name, value)| [*name, *value]))
        .stderr(Stdio::inherit())
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    let output = output.map_err(|e| format!("could not run {}: {e}", binary.display()))?;
    if !output.status.success() {
        return Err(format!("{GRAMMERS_SQLITE_BIN} failed ({})", output.status));
    }
    let measures = String::from_utf8_lossy(&output.stdout);
    print!("{measures}");
    let file = target.join("grammers-sqlite.jsonl");
    std::fs::write(&file, measures.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    Ok(Some(file))
}
