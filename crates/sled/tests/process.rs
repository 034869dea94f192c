//! The directory lock seen from a second process: a clear `Busy` error
//! naming the directory, for read-write and read-only opens, until the
//! first process lets go.
//!
//! The parent test runs this same test binary again (`current_exe`) with
//! `--ignored --exact child_open` and environment variables telling the
//! child what to do; the child test is ignored in normal runs.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use session_core::{OpenMode, SessionBackend};

use session_sled::{SledStore, in_use_details};

const DIR_VAR: &str = "MTSESSION_SLED_CHILD_DIR";
const MODE_VAR: &str = "MTSESSION_SLED_CHILD_MODE";

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("mtsession-sled-process-")
        .tempdir()
        .expect("a temporary directory")
}

/// Runs the child test of this binary on `dir`, opening in `mode`.
fn run_child(dir: &Path, mode: &str) -> Output {
    let exe = std::env::current_exe().expect("the test binary");
    Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            "child_open",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_VAR, dir)
        .env(MODE_VAR, mode)
        .output()
        .expect("the child runs")
}

/// Child: tries to open the directory and prints what happened on one line.
#[tokio::test]
#[ignore = "child process of the concurrency tests, started by them"]
async fn child_open() {
    let dir = std::env::var(DIR_VAR).expect("run by the parent test");
    let mode = match std::env::var(MODE_VAR).as_deref() {
        Ok("read-only") => OpenMode::ReadOnly,
        _ => OpenMode::ReadWrite,
    };
    let opened = SledStore::builder(&dir)
        .mode(mode)
        .lock_timeout(Duration::from_millis(300))
        .open()
        .await;
    match opened {
        Ok(store) => {
            let sessions = store.list().await.expect("list");
            println!("CHILD-RESULT opened sessions={sessions:?}");
        }
        Err(err) => println!(
            "CHILD-RESULT error kind={} in_use={} message={err} source={}",
            err.kind(),
            in_use_details(&err).is_some(),
            std::error::Error::source(&err).map_or(String::new(), |s| s.to_string()),
        ),
    }
}

fn result_line(output: &Output) -> String {
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "the child failed or panicked:\n{out}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    out.lines()
        .find_map(|l| l.find("CHILD-RESULT").map(|at| l[at..].to_owned()))
        .unwrap_or_else(|| panic!("no result line in:\n{out}"))
}

#[tokio::test]
async fn concurrency_a_lock_held_by_another_process_is_a_clear_busy_error() {
    let dir = tempdir();
    let store = session_core::Store::new(SledStore::open(dir.path()).await.expect("opens"));
    store.create("held").await.expect("create");
    let path = dir.path().canonicalize().expect("path");
    for mode in ["read-write", "read-only"] {
        let line = result_line(&run_child(dir.path(), mode));
        assert!(
            line.contains("error kind=Busy in_use=true"),
            "{mode}: {line}"
        );
        assert!(
            line.contains("locked by another connection or process"),
            "{mode}: {line}"
        );
        assert!(line.contains("source=the sled store at"), "{mode}: {line}");
        assert!(line.contains("in use by another process"), "{mode}: {line}");
        assert!(line.contains("gave up after waiting"), "{mode}: {line}");
        assert!(line.contains(&path.display().to_string()), "{mode}: {line}");
    }
    drop(store);
}

#[tokio::test]
async fn concurrency_a_second_process_gets_in_once_the_first_lets_go() {
    let dir = tempdir();
    {
        let store = session_core::Store::new(SledStore::open(dir.path()).await.expect("opens"));
        store.create("held").await.expect("create");
    }
    for mode in ["read-write", "read-only"] {
        let line = result_line(&run_child(dir.path(), mode));
        assert!(
            line.contains("opened sessions=[\"held\"]"),
            "{mode}: {line}"
        );
    }
}
