//! Tests across OS processes: the directory lock seen from a second process,
//! and durability when a process dies without closing the store.
//!
//! The parent tests run this same test binary again (`current_exe`) with
//! `--ignored --exact <child test>` and environment variables telling the
//! child what to do; the child tests are ignored in normal runs.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use session_core::{Durability, Peer, PeerId, SessionStore, SessionStoreExt, UpdateStateChange};
use session_sled::{SledOptions, SledStore, in_use_details};

const DIR_VAR: &str = "MTSESSION_SLED_CHILD_DIR";
const MODE_VAR: &str = "MTSESSION_SLED_CHILD_MODE";

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("mtsession-sled-process-")
        .tempdir()
        .expect("a temporary directory")
}

/// Runs one child test of this binary with `dir` and `mode`.
fn run_child(test: &str, dir: &Path, mode: &str) -> Output {
    let exe = std::env::current_exe().expect("the test binary");
    Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            test,
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_VAR, dir)
        .env(MODE_VAR, mode)
        .output()
        .expect("the child runs")
}

fn child_env() -> (String, String) {
    let dir = std::env::var(DIR_VAR).expect("run by a parent test, which sets the directory");
    let mode = std::env::var(MODE_VAR).expect("run by a parent test, which sets the mode");
    (dir, mode)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Child: tries to open the directory and prints what happened on one line.
#[tokio::test]
#[ignore = "child process of a_second_process_gets_a_clear_in_use_error"]
async fn child_open() {
    let (dir, _) = child_env();
    let options = SledOptions::default().lock_timeout(Duration::from_millis(300));
    match SledStore::open_with(&dir, options).await {
        Ok(store) => {
            let sessions = store.list().await.expect("list");
            println!("CHILD-RESULT opened sessions={sessions:?}");
        }
        Err(err) => {
            let details = in_use_details(&err);
            println!(
                "CHILD-RESULT error kind={} in_use={} by_this_process={} message={err}",
                err.kind(),
                details.is_some(),
                details.is_some_and(|d| d.by_this_process),
            );
        }
    }
}

#[tokio::test]
async fn a_second_process_gets_a_clear_in_use_error() {
    let dir = tempdir();
    let store = SledStore::open(dir.path()).await.expect("opens");
    store.create("held").await.expect("create");

    let output = run_child("child_open", dir.path(), "");
    let out = stdout(&output);
    assert!(
        output.status.success(),
        "the child failed or panicked:\n{out}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = out
        .lines()
        .find_map(|l| l.find("CHILD-RESULT").map(|at| &l[at..]))
        .unwrap_or_else(|| panic!("no result line in:\n{out}"));
    assert!(
        line.contains("error kind=Backend in_use=true by_this_process=false"),
        "{line}"
    );
    assert!(line.contains("in use by another process"), "{line}");
    let path = dir.path().canonicalize().expect("path");
    assert!(line.contains(&path.display().to_string()), "{line}");

    // Once this process lets go, the other one gets in.
    drop(store);
    let output = run_child("child_open", dir.path(), "");
    let out = stdout(&output);
    assert!(output.status.success(), "the child failed:\n{out}");
    assert!(
        out.contains("CHILD-RESULT opened sessions=[\"held\"]"),
        "{out}"
    );
}

/// Child: writes, then dies without closing the store (no destructors, no
/// final flush). `immediate` dies right after the writes return;
/// `write-behind` waits three write-behind periods first; `write-behind-flush`
/// has a ten-minute period and calls `flush()` instead. (With that period and
/// no flush the writes are lost, which is why this is done in a child.)
#[tokio::test]
#[ignore = "child process of writes_survive_a_process_that_dies"]
async fn child_write_then_die() {
    let (dir, mode) = child_env();
    let durability = match mode.as_str() {
        "immediate" => Durability::Immediate,
        "write-behind" => Durability::WriteBehind {
            max_delay: Duration::from_millis(100),
        },
        "write-behind-flush" => Durability::WriteBehind {
            max_delay: Duration::from_secs(600),
        },
        other => panic!("unknown mode {other}"),
    };
    let store: Arc<dyn SessionStore> = Arc::new(
        SledStore::open_with(&dir, SledOptions::default().durability(durability))
            .await
            .expect("opens"),
    );
    let session = store.open("victim").await.expect("session");
    let peers: Vec<_> = (1..=50)
        .map(|i| {
            Peer::new(PeerId::user(i).expect("id"))
                .with_hash(i)
                .with_username(format!("u{i}"))
        })
        .collect();
    session.cache_peers(&peers).await.expect("peers");
    for pts in 1..=100 {
        session
            .set_update_state(UpdateStateChange::Primary {
                pts,
                date: pts,
                seq: pts,
            })
            .await
            .expect("state");
    }
    match mode.as_str() {
        "write-behind" => std::thread::sleep(Duration::from_millis(300)),
        "write-behind-flush" => store.flush().await.expect("flush"),
        _ => {}
    }
    println!("CHILD-RESULT wrote");
    std::process::abort();
}

async fn check_survivor(mode: &str) {
    let dir = tempdir();
    let output = run_child("child_write_then_die", dir.path(), mode);
    let out = stdout(&output);
    assert!(
        out.contains("CHILD-RESULT wrote"),
        "the child did not write:\n{out}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "the child was meant to die");
    let store: Arc<dyn SessionStore> =
        Arc::new(SledStore::open(dir.path()).await.expect("reopens"));
    let session = store.session("victim").expect("handle");
    assert_eq!(session.peer_count().await.expect("count"), 50, "{mode}");
    assert_eq!(
        session.update_state().await.expect("state").pts,
        100,
        "{mode}"
    );
    let peer = session
        .peer_by_username("U50")
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(peer.id, PeerId::user(50).expect("id"));
}

#[tokio::test]
async fn writes_survive_a_process_that_dies_immediate() {
    check_survivor("immediate").await;
}

#[tokio::test]
async fn writes_survive_a_process_that_dies_write_behind_after_max_delay() {
    check_survivor("write-behind").await;
}

#[tokio::test]
async fn writes_survive_a_process_that_dies_write_behind_after_flush() {
    check_survivor("write-behind-flush").await;
}
