//! The hostile-input corpus through the `mtsession` binary: every case of
//! `fixtures/hostile/cases.json` exits 1 with exactly one line on stderr that
//! starts `mtsession: `, reads as a sentence, shows no secret, prints nothing
//! on stdout, and leaves every file, directory and mode of its working copy as
//! it was (nothing created, not even in `TMPDIR`).

#[path = "../../formats/tests/corpus/harness.rs"]
mod harness;

use std::path::Path;
use std::process::{Command, Output};

use harness::{FEATURES, SecretScanner, WorkingCopy, changes, snapshot};

fn mtsession(args: &[String], dir: &Path, tmp: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mtsession"))
        .args(args)
        .current_dir(dir)
        .env("TMPDIR", tmp)
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LOG")
        .output()
        .expect("run mtsession")
}

/// Asks the binary which backends it was built with: a URL of a backend
/// that is not in the build is refused with the cargo feature that brings
/// it. The probe URLs carry an unknown option, so a backend that is in the
/// build refuses them before touching a file or a network.
fn built_features(dir: &Path, tmp: &Path) -> Vec<&'static str> {
    FEATURES
        .iter()
        .filter(|(_, scheme)| {
            let url = match *scheme {
                "sqlite" | "sled" | "sql+sqlite" => {
                    format!("{scheme}:no/such/dir/probe?mtsession_probe=1")
                }
                "mongodb" => "mongodb://127.0.0.1:1/probe?mtsession_probe=1".to_owned(),
                _ => format!("{scheme}://127.0.0.1:1/probe?mtsession_probe=1"),
            };
            let out = mtsession(&["list".into(), url], dir, tmp);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "probe of {scheme}: {stderr}");
            !stderr.contains("not in this build")
        })
        .map(|(feature, _)| *feature)
        .collect()
}

/// Everything wrong with how the binary handled one case.
fn problems(out: &Output, scanner: &SecretScanner) -> Vec<String> {
    let mut found = Vec::new();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.code() != Some(1) {
        found.push(format!("exit status {:?}, expected 1", out.status.code()));
    }
    if !out.stdout.is_empty() {
        found.push(format!("printed on stdout: {stdout:?}"));
    }
    let lines: Vec<&str> = stderr.lines().collect();
    if lines.len() != 1 {
        found.push(format!("{} lines on stderr, expected 1", lines.len()));
    }
    if !stderr.ends_with('\n') {
        found.push("stderr does not end with a new line".into());
    }
    for line in &lines {
        if !line.starts_with("mtsession: ") {
            found.push(format!(
                "a stderr line does not start with `mtsession: `: {line:?}"
            ));
        }
    }
    if stderr.contains("panicked") || stderr.contains("internal error") {
        found.push("it panicked".into());
    }
    for text in [&stderr, &stdout] {
        if let Some(secret) = scanner.leak(text) {
            found.push(format!("it shows a secret ({secret})"));
        }
    }
    let message = stderr
        .trim_end()
        .strip_prefix("mtsession: ")
        .unwrap_or(&stderr);
    let unreadable = harness::unreadable_parts(message, false);
    if !unreadable.is_empty() {
        found.push(format!("the message holds {}", unreadable.join(", ")));
    }
    if message.chars().next().is_some_and(char::is_whitespace) {
        found.push("the message starts with white space".into());
    }
    if !found.is_empty() {
        found.push(format!("stderr: {stderr:?}"));
    }
    found
}

#[test]
fn corpus_every_case_fails_cleanly_through_the_command() {
    let manifest = harness::load();
    let work = WorkingCopy::new(&manifest);
    let tmp = work.tmp();
    let scanner = SecretScanner::new(&manifest.secrets);
    let built = built_features(work.path(), &tmp);
    let whole = |_: &Path| true;
    let start = snapshot(work.path(), &whole);
    let mut failures = Vec::new();
    let mut ran = 0;
    let mut skipped = Vec::new();
    for case in manifest.cases.iter().filter(|c| c.runs_in("cli")) {
        if !case.needs.iter().all(|n| built.contains(&n.as_str())) {
            skipped.push(case.id.clone());
            continue;
        }
        ran += 1;
        let named = case.named_paths();
        let hash_named = |p: &Path| named.iter().any(|n| p.starts_with(n));
        let before = snapshot(work.path(), &hash_named);
        let out = mtsession(&case.args, work.path(), &tmp);
        let after = snapshot(work.path(), &hash_named);
        let line = case.command_line();
        for change in changes(&before, &after) {
            failures.push(format!("{}: `{line}` changed the files: {change}", case.id));
        }
        for problem in problems(&out, &scanner) {
            failures.push(format!("{}: `{line}`: {problem}", case.id));
        }
    }
    let end = snapshot(work.path(), &whole);
    for change in changes(&start, &end) {
        failures.push(format!("the run changed the files: {change}"));
    }
    if harness::services_required() && !skipped.is_empty() {
        failures.push(format!(
            "MTSESSION_REQUIRE_SERVICES=1, but the binary lacks the backends of {} cases ({}); \
             build it with --features all-backends",
            skipped.len(),
            skipped.join(", ")
        ));
    }
    eprintln!(
        "corpus through the command: {ran} cases ran, {} skipped (backend not in this build: \
         it has {})",
        skipped.len(),
        if built.is_empty() {
            "memory: only".to_owned()
        } else {
            built.join(", ")
        }
    );
    assert!(
        failures.is_empty(),
        "{} problems in {ran} cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The checks themselves catch what they are meant to catch.
#[test]
fn corpus_checks_catch_leaks_and_unreadable_messages() {
    let key = "00112233445566778899aabbccddeeff".repeat(16);
    let scanner = SecretScanner::new(&[key.clone(), "hunter2".into()]);
    assert!(scanner.leak(&format!("key {}", &key[100..121])).is_some());
    assert!(
        scanner
            .leak(&format!("KEY {}", key[40..70].to_ascii_uppercase()))
            .is_some()
    );
    assert!(scanner.leak("redis://:hunter2@host").is_some());
    assert!(
        scanner
            .leak("redis://:***@host, key id 0011223344556677")
            .is_none()
    );
    for bad in [
        "found Some(3)",
        "io error: Os { code: 2, kind: NotFound }",
        "file dir/.out.session.31449-0.tmp not found",
        "found a unknown SQLite file",
        "session \"a\\\\nb\" not found",
        "read it with mtsession::Endpoint",
        "expected one of:",
    ] {
        assert!(
            !harness::unreadable_parts(bad, false).is_empty(),
            "not caught: {bad}"
        );
    }
    assert!(
        harness::unreadable_parts(
            "corrupt data in file x.session: the file is empty (0 bytes); expected an SQLite \
             database",
            false
        )
        .is_empty()
    );
}
