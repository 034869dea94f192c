//! `cargo xtask bench`: every backend's criterion benchmarks, with the services running.

use crate::services::Services;
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

/// `cargo xtask bench --compare [ARGS]`: each store beside its raw engine,
/// written to docs/bench/. ARGS go to `mtsession-bench` (`--backends
/// sqlite,redis`, `--repeat 5`, `--peers 10000`, `--open-peers 100000`).
fn compare(extra: &[String]) -> Result<(), String> {
    let services = Services::start()?;
    println!("xtask: building mtsession-bench (release)");
    let status = cargo()
        .args(["run", "--release", "--quiet", "-p", "session-bench", "--"])
        .args(extra)
        .envs(services.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .status()
        .map_err(|e| format!("could not run mtsession-bench: {e}"))?;
    drop(services);
    if status.success() {
        println!("xtask: wrote docs/bench/RESULTS.md and docs/bench/ratios.svg");
        Ok(())
    } else {
        Err("mtsession-bench failed".into())
    }
}
