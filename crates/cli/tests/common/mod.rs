//! Running the `mtsession` binary from tests.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn fixture(name: &str) -> PathBuf {
    root().join("fixtures/files").join(name)
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_mtsession")
}

pub fn mtsession(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run mtsession")
}

pub fn ok(args: &[&str]) -> String {
    let out = mtsession(args);
    assert!(
        out.status.success(),
        "mtsession {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// Runs a command that must fail with exit code 1, one line on stderr and
/// nothing on stdout; returns the line.
pub fn fails(args: &[&str]) -> String {
    let out = mtsession(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "mtsession {args:?}: {stderr}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "one line expected, got: {stderr}"
    );
    assert!(stderr.starts_with("mtsession: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.stdout.is_empty(), "no output on failure: {args:?}");
    stderr
}

pub fn json(args: &[&str]) -> Value {
    serde_json::from_str(&ok(args)).expect("valid JSON")
}

pub fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value.as_object().expect("object").keys().cloned().collect();
    keys.sort();
    keys
}

/// Every entry under `dir` with its mode and, for files, its bytes.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, u32, Option<Vec<u8>>)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).expect("stat");
        let mode = meta.permissions().mode();
        if meta.is_dir() {
            out.push((path.clone(), mode, None));
            for entry in std::fs::read_dir(&path).expect("read dir") {
                stack.push(entry.expect("entry").path());
            }
        } else {
            out.push((path.clone(), mode, std::fs::read(&path).ok()));
        }
    }
    out.sort();
    out
}

/// A Telethon file copied into `dir`, imported into `sqlite:store.db?session=NAME`.
pub fn sqlite_with(dir: &Path, name: &str) -> String {
    let store = format!("sqlite:{}", dir.join("store.db").display());
    let url = format!("{store}?session={name}");
    let src = format!("telethon:{}", fixture("telethon1.session").display());
    ok(&["convert", "-q", &src, &url]);
    url
}

/// What `inspect --json` says of a session's contents, without where it was
/// read, when it was written, and what its reader warned about.
pub fn contents(mut inspected: Value) -> Value {
    if let Some(map) = inspected.as_object_mut() {
        for key in [
            "source",
            "session",
            "created_at_ms",
            "updated_at_ms",
            "warnings",
        ] {
            map.remove(key);
        }
    }
    inspected
}
