//! `cargo xtask fuzz [--seconds N] [--target NAME]...`: the coverage-guided
//! fuzz targets of `fuzz/` (cargo-fuzz, libFuzzer), each run for a bounded
//! time.
//!
//! Installs cargo-fuzz (a pinned version) into `target/tools` when it is
//! missing, builds every target, seeds each from `fixtures/` (the
//! real-library files and strings and the hostile corpus), runs each for N
//! seconds and fails when one crashes; libFuzzer saves the crashing input
//! under `fuzz/artifacts/TARGET/`.
//!
//! cargo-fuzz passes nightly flags (`-Zsanitizer=address`); on the stable
//! toolchain the fuzz build runs with `RUSTC_BOOTSTRAP=1`, set for that
//! build only (never for the workspace).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::services::{target_dir, workspace_root};
use crate::testrun::cargo;

/// The cargo-fuzz release installed into `target/tools`.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Inputs longer than this are not tried (every seed is shorter).
const MAX_LEN: u64 = 128 * 1024;

/// How the seed corpus of a target is made.
#[derive(Clone, Copy)]
enum Seeds {
    Strings,
    Files,
    Urls,
}

/// Every target of `fuzz/Cargo.toml`.
const TARGETS: &[(&str, Seeds)] = &[
    ("string_decode", Seeds::Strings),
    ("file_telethon", Seeds::Files),
    ("file_telethon2", Seeds::Files),
    ("file_pyrogram", Seeds::Files),
    ("file_detect", Seeds::Files),
    ("url", Seeds::Urls),
];

const USAGE: &str = "usage: cargo xtask fuzz [--seconds N] [--target NAME]... \
                     [--sanitizer address|none] [-- LIBFUZZER-FLAGS]";

struct Options {
    seconds: u64,
    targets: Vec<&'static str>,
    /// cargo-fuzz's sanitizer: `address` (the default) or `none`, which
    /// builds several times faster and still guides by coverage (the code
    /// under test forbids `unsafe`).
    sanitizer: String,
    extra: Vec<String>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        seconds: 60,
        targets: Vec::new(),
        sanitizer: "address".to_owned(),
        extra: Vec::new(),
    };
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--seconds" => {
                let value = rest.next().ok_or(USAGE)?;
                options.seconds =
                    value.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                        format!("--seconds takes a positive number, got {value:?}")
                    })?;
            }
            "--target" => {
                let value = rest.next().ok_or(USAGE)?;
                let name = TARGETS
                    .iter()
                    .map(|(name, _)| *name)
                    .find(|name| name == value)
                    .ok_or_else(|| {
                        format!(
                            "no fuzz target {value:?}; the targets are {}",
                            TARGETS
                                .iter()
                                .map(|(n, _)| *n)
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })?;
                options.targets.push(name);
            }
            "--sanitizer" => {
                let value = rest.next().ok_or(USAGE)?;
                if !["address", "none"].contains(&value.as_str()) {
                    return Err(format!("--sanitizer takes address or none, got {value:?}"));
                }
                options.sanitizer.clone_from(value);
            }
            "--" => options.extra.extend(rest.by_ref().cloned()),
            other => return Err(format!("unknown argument {other:?}; {USAGE}")),
        }
    }
    if options.targets.is_empty() {
        options.targets = TARGETS.iter().map(|(name, _)| *name).collect();
    }
    Ok(options)
}

pub(crate) fn fuzz(args: &[String]) -> Result<(), String> {
    let options = parse(args)?;
    let started = Instant::now();
    let cargo_fuzz = install_cargo_fuzz()?;
    let installed = started.elapsed();

    let build_started = Instant::now();
    say("building the fuzz targets (RUSTC_BOOTSTRAP=1 for this build only)");
    let status = fuzz_command(&cargo_fuzz, "build", &options)
        .status()
        .map_err(|e| format!("could not run cargo fuzz build: {e}"))?;
    if !status.success() {
        return Err("cargo fuzz build failed".into());
    }
    let built = build_started.elapsed();

    let fuzz_dir = target_dir().join("fuzz");
    let mut results = Vec::new();
    let runs_started = Instant::now();
    for name in &options.targets {
        let seeds = TARGETS
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| *s)
            .ok_or("unknown target")?;
        let seed_dir = fuzz_dir.join("seeds").join(name);
        let count = write_seeds(seeds, &seed_dir)?;
        let corpus_dir = fuzz_dir.join("corpus").join(name);
        fs::create_dir_all(&corpus_dir).map_err(|e| format!("creating {corpus_dir:?}: {e}"))?;
        say(&format!(
            "fuzzing {name} for {} s ({count} seeds)",
            options.seconds
        ));
        results.push(run_target(
            &cargo_fuzz,
            name,
            &corpus_dir,
            &seed_dir,
            &fuzz_dir,
            &options,
        )?);
    }
    let ran = runs_started.elapsed();

    println!("\nfuzz targets ({} s each):", options.seconds);
    for r in &results {
        println!(
            "  {:<16} {:<8} {:>10} runs {:>8} runs/s {:>6} inputs in its corpus{}",
            r.name,
            if r.crashed { "CRASHED" } else { "ok" },
            r.runs.map_or("?".to_owned(), |n| n.to_string()),
            r.per_second.map_or("?".to_owned(), |n| n.to_string()),
            r.corpus,
            r.artifacts
                .iter()
                .map(|a| format!("\n    input saved: {}", a.display()))
                .collect::<String>()
        );
    }
    println!(
        "time: {} installing cargo-fuzz, {} building, {} fuzzing, {} in all",
        seconds(installed),
        seconds(built),
        seconds(ran),
        seconds(started.elapsed())
    );
    let crashed: Vec<&str> = results
        .iter()
        .filter(|r| r.crashed)
        .map(|r| r.name)
        .collect();
    if crashed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "fuzz targets crashed: {} (inputs under fuzz/artifacts; reproduce one with \
             `RUSTC_BOOTSTRAP=1 target/tools/bin/cargo-fuzz run --fuzz-dir fuzz --target-dir \
             target/fuzz TARGET fuzz/artifacts/TARGET/FILE`)",
            crashed.join(", ")
        ))
    }
}

fn say(message: &str) {
    println!("xtask: {message}");
}

fn seconds(d: Duration) -> String {
    format!("{:.0} s", d.as_secs_f64())
}

/// `target/tools/bin/cargo-fuzz` at the pinned version, installed when it
/// is missing or another version.
fn install_cargo_fuzz() -> Result<PathBuf, String> {
    let root = target_dir().join("tools");
    let binary = root.join("bin").join("cargo-fuzz");
    let version = Command::new(&binary)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if version.split_whitespace().any(|w| w == CARGO_FUZZ_VERSION) {
        return Ok(binary);
    }
    say(&format!(
        "installing cargo-fuzz {CARGO_FUZZ_VERSION} into {}",
        root.display()
    ));
    let status = cargo()
        .args(["install", "--locked", "--quiet"])
        .arg(format!("cargo-fuzz@{CARGO_FUZZ_VERSION}"))
        .arg("--root")
        .arg(&root)
        .status()
        .map_err(|e| format!("could not run cargo install: {e}"))?;
    if !status.success() {
        return Err(format!("installing cargo-fuzz {CARGO_FUZZ_VERSION} failed"));
    }
    Ok(binary)
}

/// `cargo fuzz SUBCOMMAND` on `fuzz/`, built into `target/fuzz`.
fn fuzz_command(cargo_fuzz: &Path, subcommand: &str, options: &Options) -> Command {
    let mut command = Command::new(cargo_fuzz);
    command
        .current_dir(workspace_root())
        .arg(subcommand)
        .arg("--sanitizer")
        .arg(&options.sanitizer)
        .arg("--fuzz-dir")
        .arg("fuzz")
        .arg("--target-dir")
        .arg(target_dir().join("fuzz"))
        // cargo-fuzz passes -Z flags; allow them on stable, for this build only.
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_INCREMENTAL", "0");
    command
}

struct TargetResult {
    name: &'static str,
    crashed: bool,
    runs: Option<u64>,
    per_second: Option<u64>,
    corpus: usize,
    artifacts: Vec<PathBuf>,
}

fn run_target(
    cargo_fuzz: &Path,
    name: &'static str,
    corpus_dir: &Path,
    seed_dir: &Path,
    fuzz_dir: &Path,
    options: &Options,
) -> Result<TargetResult, String> {
    let logs = fuzz_dir.join("logs");
    fs::create_dir_all(&logs).map_err(|e| format!("creating {logs:?}: {e}"))?;
    let log_path = logs.join(format!("{name}.log"));
    let log = fs::File::create(&log_path).map_err(|e| format!("creating {log_path:?}: {e}"))?;
    let artifact_dir = workspace_root().join("fuzz").join("artifacts").join(name);
    // The file targets write each input to a file in the temporary
    // directory: a private one, removed after the run.
    let tmp = fuzz_dir.join("tmp").join(name);
    fs::create_dir_all(&tmp).map_err(|e| format!("creating {tmp:?}: {e}"))?;
    let started = SystemTime::now();
    let status = fuzz_command(cargo_fuzz, "run", options)
        .env("TMPDIR", &tmp)
        .arg(name)
        .arg(corpus_dir)
        .arg(seed_dir)
        .arg("--")
        .arg(format!("-max_total_time={}", options.seconds))
        .arg(format!("-max_len={MAX_LEN}"))
        .arg("-timeout=30")
        .arg("-rss_limit_mb=2048")
        .arg("-print_final_stats=1")
        .args(&options.extra)
        .stdout(Stdio::null())
        .stderr(log)
        .status()
        .map_err(|e| format!("could not run cargo fuzz run {name}: {e}"))?;
    let _ = fs::remove_dir_all(&tmp);
    let text = fs::read_to_string(&log_path).unwrap_or_default();
    let stat = |key: &str| {
        text.lines()
            .filter_map(|l| l.strip_prefix(key))
            .filter_map(|v| v.trim().parse::<u64>().ok())
            .next_back()
    };
    let artifacts: Vec<PathBuf> = fs::read_dir(&artifact_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= started)
        })
        .map(|e| e.path())
        .collect();
    let crashed = !status.success();
    if crashed {
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        eprintln!(
            "xtask: {name} failed ({status}); the end of {}:",
            log_path.display()
        );
        for line in tail.iter().rev() {
            eprintln!("  {line}");
        }
    }
    let corpus = fs::read_dir(corpus_dir).map(|d| d.count()).unwrap_or(0);
    Ok(TargetResult {
        name,
        crashed,
        runs: stat("stat::number_of_executed_units:"),
        per_second: stat("stat::average_exec_per_sec:"),
        corpus,
        artifacts,
    })
}

// --------------------------------------------------------------------------- seeds

/// Writes the seed corpus of a target into `dir` (emptied first) and returns
/// how many seeds it holds.
fn write_seeds(kind: Seeds, dir: &Path) -> Result<usize, String> {
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(|e| format!("emptying {dir:?}: {e}"))?;
    }
    fs::create_dir_all(dir).map_err(|e| format!("creating {dir:?}: {e}"))?;
    let seeds = match kind {
        Seeds::Strings => string_seeds()?,
        Seeds::Files => file_seeds()?,
        Seeds::Urls => url_seeds()?,
    };
    for (i, seed) in seeds.iter().enumerate() {
        fs::write(dir.join(format!("seed-{i:04}")), seed)
            .map_err(|e| format!("writing a seed into {dir:?}: {e}"))?;
    }
    Ok(seeds.len())
}

fn read_json(relative: &str) -> Result<Value, String> {
    let path = workspace_root().join(relative);
    let text = fs::read_to_string(&path).map_err(|e| format!("reading {relative}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("{relative} is not JSON: {e}"))
}

/// Every string value of `field` in the objects of `array`.
fn fields<'a>(array: &'a Value, field: &'a str) -> impl Iterator<Item = String> + 'a {
    array
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(move |item| item[field].as_str().map(str::to_owned))
}

/// The arguments of every hostile case.
fn corpus_args() -> Result<Vec<Vec<String>>, String> {
    let manifest = read_json("fixtures/hostile/cases.json")?;
    Ok(manifest["cases"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|case| {
            case["args"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect()
        })
        .collect())
}

fn string_seeds() -> Result<Vec<Vec<u8>>, String> {
    let mut seeds: Vec<String> = Vec::new();
    for file in ["telethon", "pyrogram", "gramjs"] {
        let json = read_json(&format!("fixtures/strings/{file}.json"))?;
        seeds.extend(fields(&json["valid"], "string"));
    }
    seeds.extend(fields(
        &read_json("fixtures/strings/general.json")?["malformed"],
        "string",
    ));
    if let Some(strings) = read_json("fixtures/files/telethon_strings.json")?["strings"].as_object()
    {
        seeds.extend(
            strings
                .values()
                .filter_map(|v| v.as_str().map(str::to_owned)),
        );
    }
    for args in corpus_args()? {
        if args.len() >= 2 && args[0] == "string" && args[1] == "decode" {
            seeds.extend(args.last().cloned());
        }
        seeds.extend(
            args.iter()
                .filter_map(|a| a.strip_prefix("string:").map(str::to_owned)),
        );
    }
    seeds.sort();
    seeds.dedup();
    Ok(seeds
        .into_iter()
        .map(String::into_bytes)
        .filter(|s| s.len() as u64 <= MAX_LEN)
        .collect())
}

fn file_seeds() -> Result<Vec<Vec<u8>>, String> {
    let mut paths = Vec::new();
    for dir in ["fixtures/files", "fixtures/hostile/files"] {
        collect_files(&workspace_root().join(dir), &mut paths);
    }
    paths.sort();
    let mut seeds = Vec::new();
    for path in paths {
        let is_json = path.extension().is_some_and(|e| e == "json");
        let small = fs::metadata(&path).is_ok_and(|m| m.len() <= MAX_LEN);
        if !is_json && small {
            seeds.push(fs::read(&path).map_err(|e| format!("reading {path:?}: {e}"))?);
        }
    }
    Ok(seeds)
}

/// Regular files under `dir`, not following symbolic links.
fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            collect_files(&entry.path(), out);
        } else if kind.is_file() {
            out.push(entry.path());
        }
    }
}

fn url_seeds() -> Result<Vec<Vec<u8>>, String> {
    let mut seeds: Vec<String> = corpus_args()?
        .into_iter()
        .flatten()
        .filter(|a| a.contains(':') && !a.starts_with("string:") && a.len() < 1000)
        .collect();
    seeds.extend(
        [
            "redis|u|hunter22|127.0.0.1:6379|0?prefix=x",
            "postgres|mt|s3cret-pw|db.example.org:5432|test?table_prefix=a_",
            "mongodb|root|pa%40ss%3Aword|a:1,b:2|?replicaSet=rs",
            "mysql||only-a-password|127.0.0.1|test",
            "sqlite:sessions.db?session=alice",
            "memory:?session=a%20b",
        ]
        .map(str::to_owned),
    );
    seeds.sort();
    seeds.dedup();
    Ok(seeds.into_iter().map(String::into_bytes).collect())
}
