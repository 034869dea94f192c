//! The hostile-input corpus (`fixtures/hostile/cases.json`) as the library and the
//! command-line tests both read it: the cases, a private copy of the files they
//! use, snapshots that show any change to that copy, and the checks every
//! message must pass (no secret, no Rust in it, one line).
//!
//! Shared by `crates/formats/tests/corpus.rs` and `crates/cli/tests/corpus.rs`
//! (which includes this file by path).

#![allow(dead_code)] // each of the two tests uses part of it

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::hash::{DefaultHasher, Hasher};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The error kinds a case may expect: the Debug names of `session_core::ErrorKind`.
pub(crate) const KINDS: &[&str] = &[
    "NotFound",
    "AlreadyExists",
    "LeaseHeld",
    "Corrupt",
    "UnsupportedSchemaVersion",
    "InvalidInput",
    "MalformedString",
    "Unavailable",
    "Busy",
    "OutcomeUnknown",
    "Unsupported",
    "Backend",
];

/// The backend features a case may need, with the URL scheme each brings.
pub(crate) const FEATURES: &[(&str, &str)] = &[
    ("sqlite", "sqlite"),
    ("sled", "sled"),
    ("redis", "redis"),
    ("mongo", "mongodb"),
    ("postgres", "postgres"),
    ("mysql", "mysql"),
    ("sql-sqlite", "sql+sqlite"),
];

/// One hostile input and the error it must give.
#[derive(Debug, Clone)]
pub(crate) struct Case {
    pub(crate) id: String,
    pub(crate) about: String,
    /// The `mtsession` arguments.
    pub(crate) args: Vec<String>,
    /// The expected `ErrorKind`, by its Debug name.
    pub(crate) kind: String,
    /// Backend features the case needs.
    pub(crate) needs: Vec<String>,
    /// `cli`, `library` or both.
    pub(crate) layers: Vec<String>,
    /// The reproduction it pins, if any (`8.14`).
    pub(crate) issue: Option<String>,
}

impl Case {
    pub(crate) fn runs_in(&self, layer: &str) -> bool {
        self.layers.iter().any(|l| l == layer)
    }

    /// The arguments, shell-quoted, for messages.
    pub(crate) fn command_line(&self) -> String {
        let quoted: Vec<String> = self
            .args
            .iter()
            .map(|a| {
                if !a.is_empty()
                    && a.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_./:=?&+%@".contains(c))
                {
                    a.clone()
                } else {
                    format!("{a:?}")
                }
            })
            .collect();
        let mut line = format!("mtsession {}", quoted.join(" "));
        if line.chars().count() > 200 {
            line = line.chars().take(200).collect::<String>() + "…";
        }
        line
    }

    /// The paths (relative to the working copy) the arguments name.
    pub(crate) fn named_paths(&self) -> Vec<PathBuf> {
        self.args
            .iter()
            .filter_map(|a| {
                let body = a.split_once(':').map_or(a.as_str(), |(_, b)| b);
                let body = body.split('?').next().unwrap_or(body);
                body.starts_with("files/").then(|| PathBuf::from(body))
            })
            .collect()
    }
}

/// What to make in the working copy that git cannot hold.
#[derive(Debug, Clone)]
pub(crate) enum Setup {
    Dir(String),
    Fifo(String),
    Copy { from: String, to: String },
}

/// The whole manifest.
#[derive(Debug)]
pub(crate) struct Manifest {
    pub(crate) setup: Vec<Setup>,
    pub(crate) secrets: Vec<String>,
    pub(crate) cases: Vec<Case>,
}

pub(crate) fn repo_root() -> PathBuf {
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    while !dir.join("fixtures/hostile/cases.json").exists() {
        assert!(
            dir.pop(),
            "fixtures/hostile/cases.json not found above the crate"
        );
    }
    dir
}

fn strings(value: &Value, field: &str) -> Vec<String> {
    value[field]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().expect("a string").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn text(value: &Value, field: &str) -> String {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} must be a string in {value}"))
        .to_owned()
}

/// Reads `fixtures/hostile/cases.json`.
pub(crate) fn load() -> Manifest {
    let path = repo_root().join("fixtures/hostile/cases.json");
    let raw = fs::read_to_string(&path).expect("read cases.json");
    let json: Value = serde_json::from_str(&raw).expect("cases.json is JSON");
    assert_eq!(json["format_version"], 1, "cases.json format_version");
    let setup = json["setup"]
        .as_array()
        .expect("setup")
        .iter()
        .map(|s| match s["make"].as_str() {
            Some("dir") => Setup::Dir(text(s, "path")),
            Some("fifo") => Setup::Fifo(text(s, "path")),
            Some("copy") => Setup::Copy {
                from: text(s, "from"),
                to: text(s, "path"),
            },
            other => panic!("unknown setup {other:?}"),
        })
        .collect();
    let cases = json["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| {
            let mut layers = strings(c, "layers");
            if layers.is_empty() {
                layers = vec!["cli".into(), "library".into()];
            }
            Case {
                id: text(c, "id"),
                about: text(c, "about"),
                args: strings(c, "args"),
                kind: text(c, "kind"),
                needs: strings(c, "needs"),
                layers,
                issue: c["issue"].as_str().map(str::to_owned),
            }
        })
        .collect();
    Manifest {
        setup,
        secrets: strings(&json, "secrets"),
        cases,
    }
}

/// Whether a missing service or backend must fail the run rather than skip.
pub(crate) fn services_required() -> bool {
    std::env::var("MTSESSION_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

// --------------------------------------------------------------------------- the working copy

/// The working copy's temporary directory (`TMPDIR` of the commands).
pub(crate) const TMP: &str = "tmp";

/// A private copy of `fixtures/hostile/files` (as `files/`) plus the setup
/// entries, and an empty `tmp/` to use as `TMPDIR`.
pub(crate) struct WorkingCopy {
    dir: tempfile::TempDir,
}

fn copy_tree(from: &Path, to: &Path) {
    let meta = fs::symlink_metadata(from).expect("stat fixture");
    if meta.file_type().is_symlink() {
        symlink(fs::read_link(from).expect("read link"), to).expect("copy link");
    } else if meta.is_dir() {
        fs::create_dir(to).expect("create dir");
        let mut entries: Vec<_> = fs::read_dir(from)
            .expect("list fixture dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        entries.sort();
        for name in entries {
            copy_tree(&from.join(&name), &to.join(&name));
        }
        fs::set_permissions(to, meta.permissions()).expect("dir mode");
    } else {
        fs::copy(from, to).expect("copy file");
    }
}

impl WorkingCopy {
    pub(crate) fn new(manifest: &Manifest) -> WorkingCopy {
        let dir = tempfile::Builder::new()
            .prefix("mtsession-corpus-")
            .tempdir()
            .expect("temp dir");
        copy_tree(
            &repo_root().join("fixtures/hostile/files"),
            &dir.path().join("files"),
        );
        fs::create_dir(dir.path().join(TMP)).expect("tmp dir");
        for entry in &manifest.setup {
            match entry {
                Setup::Dir(p) => fs::create_dir_all(dir.path().join(p)).expect("setup dir"),
                Setup::Fifo(p) => {
                    let status = std::process::Command::new("mkfifo")
                        .arg(dir.path().join(p))
                        .status()
                        .expect("run mkfifo");
                    assert!(status.success(), "mkfifo {p}");
                }
                Setup::Copy { from, to } => {
                    fs::copy(dir.path().join(from), dir.path().join(to)).expect("setup copy");
                }
            }
        }
        WorkingCopy { dir }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn tmp(&self) -> PathBuf {
        self.dir.path().join(TMP)
    }
}

// --------------------------------------------------------------------------- snapshots

/// What a snapshot records of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// `file`, `dir`, `link -> TARGET` or `other`.
    pub(crate) what: String,
    pub(crate) mode: u32,
    pub(crate) len: u64,
    pub(crate) modified_ns: i128,
    /// Hash of the bytes of a regular file, when hashed.
    pub(crate) hash: Option<u64>,
}

/// Every entry under a directory (not following links), with a content
/// hash of regular files when `hash` says so.
pub(crate) fn snapshot(root: &Path, hash: &dyn Fn(&Path) -> bool) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    walk(root, root, hash, &mut out);
    out
}

fn walk(
    root: &Path,
    path: &Path,
    hash: &dyn Fn(&Path) -> bool,
    out: &mut BTreeMap<PathBuf, Entry>,
) {
    let meta = fs::symlink_metadata(path).expect("stat");
    let relative = path.strip_prefix(root).expect("under root").to_owned();
    let file_type = meta.file_type();
    let what = if file_type.is_symlink() {
        format!(
            "link -> {}",
            fs::read_link(path).expect("read link").display()
        )
    } else if file_type.is_dir() {
        "dir".to_owned()
    } else if file_type.is_file() {
        "file".to_owned()
    } else {
        "other".to_owned()
    };
    let content = (file_type.is_file() && hash(&relative)).then(|| {
        let mut hasher = DefaultHasher::new();
        hasher.write(&fs::read(path).expect("read file"));
        hasher.finish()
    });
    out.insert(
        relative,
        Entry {
            what,
            mode: meta.permissions().mode(),
            len: if file_type.is_dir() { 0 } else { meta.len() },
            modified_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            hash: content,
        },
    );
    if file_type.is_dir() {
        let mut names: Vec<_> = fs::read_dir(path)
            .expect("list dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        names.sort();
        for name in names {
            walk(root, &path.join(name), hash, out);
        }
    }
}

/// What changed between two snapshots, one line per entry.
pub(crate) fn changes(
    before: &BTreeMap<PathBuf, Entry>,
    after: &BTreeMap<PathBuf, Entry>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (path, old) in before {
        match after.get(path) {
            None => out.push(format!("{} was removed", path.display())),
            // The temporary directory may be used (its listing must not change).
            Some(new) if path == Path::new(TMP) && new.what == old.what && new.mode == old.mode => {
            }
            Some(new) if new != old => {
                out.push(format!("{} changed: {old:?} -> {new:?}", path.display()))
            }
            Some(_) => {}
        }
    }
    for path in after.keys() {
        if !before.contains_key(path) {
            out.push(format!("{} was created", path.display()));
        }
    }
    out
}

// --------------------------------------------------------------------------- message checks

/// Finds secrets in text: any 20-character window of a secret (the whole
/// secret when shorter), so that part of a key or string shows as a leak too.
pub(crate) struct SecretScanner {
    windows: HashSet<String>,
    short: Vec<String>,
}

const WINDOW: usize = 20;

impl SecretScanner {
    pub(crate) fn new(secrets: &[String]) -> SecretScanner {
        let mut windows = HashSet::new();
        let mut short = Vec::new();
        for secret in secrets {
            assert!(secret.is_ascii(), "secrets are ASCII");
            if secret.len() < WINDOW {
                short.push(secret.clone());
                continue;
            }
            for i in 0..=secret.len() - WINDOW {
                windows.insert(secret[i..i + WINDOW].to_owned());
                // Hex also appears in upper case.
                windows.insert(secret[i..i + WINDOW].to_ascii_uppercase());
            }
        }
        SecretScanner { windows, short }
    }

    /// The first secret-looking piece of `text`, if any.
    pub(crate) fn leak(&self, text: &str) -> Option<String> {
        for s in &self.short {
            if text.contains(s.as_str()) {
                return Some(s.clone());
            }
        }
        let bytes = text.as_bytes();
        (0..bytes.len().saturating_sub(WINDOW - 1))
            .filter_map(|i| std::str::from_utf8(&bytes[i..i + WINDOW]).ok())
            .find(|w| self.windows.contains(*w))
            .map(str::to_owned)
    }
}

/// Pieces that do not belong in a message a user reads: Rust's Debug
/// output, type and variant names, internal temporary files, wrong articles.
/// With `allow_paths`, Rust paths (`mtsession::Endpoint`) pass: a library
/// error may point a programmer at an API.
pub(crate) fn unreadable_parts(message: &str, allow_paths: bool) -> Vec<String> {
    const TOKENS: &[&str] = &[
        "Some(",
        "None",
        "Ok(",
        "Err(",
        "::",
        "Os {",
        "Custom {",
        "kind:",
        "code:",
        "Error {",
        "ErrorKind",
        "ErrorCode",
        "SqliteFailure",
        "rusqlite",
        "PathBuf",
        "StoreUrl",
        "SessionData",
        "NotFound",
        "InvalidInput",
        "AlreadyExists",
        "UnsupportedSchemaVersion",
        "MalformedString",
        "panicked",
        "RUST_BACKTRACE",
        "unwrap",
        "internal error",
        ".tmp",
        "\\\\",
        "a unknown",
        "a empty",
        "a existing",
        "a invalid",
        "a integer",
        "a other",
        "a old",
        "a error",
        "a SQLite",
        "tables: )",
        "(tables: ,",
    ];
    let mut found: Vec<String> = TOKENS
        .iter()
        .filter(|t| !(allow_paths && **t == "::"))
        .filter(|t| message.contains(**t))
        .map(|t| format!("{t:?}"))
        .collect();
    if message.trim_end().ends_with(':') || message.trim_end().ends_with(',') {
        found.push("ends in the middle of a sentence".into());
    }
    found
}
