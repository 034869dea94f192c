//! Crash tests: a child process writes in a loop and reports every write
//! acknowledged to it; the parent kills it with SIGKILL at a random moment,
//! reopens the store, and checks that everything acknowledged is there and
//! that what survived is a consistent prefix of what was written (no half
//! of a call). One run per durability policy, each of
//! `MTSESSION_CRASH_TRIALS` (default 24, at least 20) kills on the same
//! directory, so each trial also recovers what the earlier ones left.
//!
//! The child is an ignored test of this binary that the parent starts
//! (`--ignored --exact crash_child_writes_until_killed`).

#![cfg(unix)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use session_core::{Durability, Peer, PeerId, SelfUser, SessionData, Store, UpdateStateChange};
use session_sled::SledStore;

const DIR_VAR: &str = "MTSESSION_SLED_CRASH_DIR";
const POLICY_VAR: &str = "MTSESSION_SLED_CRASH_POLICY";
const START_VAR: &str = "MTSESSION_SLED_CRASH_START";

/// Write-behind children flush (and acknowledge) every this many iterations.
const FLUSH_EVERY: i64 = 5;

fn durability(policy: &str) -> Durability {
    match policy {
        "immediate" => Durability::Immediate,
        "write-behind" => Durability::WriteBehind {
            max_delay: Duration::from_millis(50),
        },
        other => panic!("unknown policy {other}"),
    }
}

async fn open(dir: &Path, policy: &str) -> Store {
    Store::new(
        SledStore::builder(dir)
            .durability(durability(policy))
            .lock_timeout(Duration::from_secs(10))
            .open()
            .await
            .expect("the store opens"),
    )
}

fn user(id: i64) -> PeerId {
    PeerId::user(id).expect("positive id")
}

/// The peer iteration `i` caches: it takes the username `contested` from
/// the peer of iteration `i - 1`.
fn peer(i: i64) -> Peer {
    let mut peer = Peer::new(user(i)).with_hash(i).with_phone(format!("7{i}"));
    peer.usernames = Some(vec![format!("u{i}"), "contested".to_owned()]);
    peer
}

/// What iteration `i` imports as session `imp-{i}` (when `i % 10 == 0`):
/// a small session, or a large one that takes the staged path.
fn imported(i: i64) -> SessionData {
    let mut data = SessionData {
        self_user: Some(SelfUser {
            id: i,
            is_bot: false,
        }),
        ..SessionData::default()
    };
    let peers = if i % 50 == 0 { 1_500 } else { 3 };
    data.peers = (1..=peers)
        .map(|p| {
            Peer::new(user(p))
                .with_hash(p)
                .with_username(format!("p{p}"))
        })
        .collect();
    data
}

/// Child: writes iterations from `START` on until it is killed.
#[tokio::test]
#[ignore = "child process of the crash tests"]
async fn crash_child_writes_until_killed() {
    let dir = std::env::var(DIR_VAR).expect("run by a crash test");
    let policy = std::env::var(POLICY_VAR).expect("run by a crash test");
    let start: i64 = std::env::var(START_VAR)
        .expect("run by a crash test")
        .parse()
        .expect("a number");
    let store = open(Path::new(&dir), &policy).await;
    println!("OPENED");
    let session = store.session("victim").expect("name");
    let write_behind = policy == "write-behind";
    for i in start.. {
        session.cache_peers(&[peer(i)]).await.expect("peers");
        session
            .set_update_state(UpdateStateChange::Primary {
                pts: i32::try_from(i).expect("small"),
                date: 1,
                seq: 1,
            })
            .await
            .expect("state");
        if i % 10 == 0 {
            store
                .import(&format!("imp-{i}"), &imported(i))
                .await
                .expect("import");
        }
        if i % 10 == 5 {
            store
                .delete(&format!("imp-{}", i - 5))
                .await
                .expect("delete");
        }
        if !write_behind {
            println!("ACK {i}");
        } else if i % FLUSH_EVERY == 0 {
            store.flush().await.expect("flush");
            println!("ACK {i}");
        }
    }
}

/// A small xorshift generator; the seed is printed so a failure can be rerun.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Starts a child at iteration `start`, kills it `delay` after it started
/// (or, with `after_open`, after it reported the store open), and returns
/// the last iteration it acknowledged (if any).
fn run_and_kill(
    dir: &Path,
    policy: &str,
    start: i64,
    delay: Duration,
    after_open: bool,
) -> Option<i64> {
    let exe = std::env::current_exe().expect("the test binary");
    let mut child = Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            "crash_child_writes_until_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_VAR, dir)
        .env(POLICY_VAR, policy)
        .env(START_VAR, start.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the child starts");
    let acked = Arc::new(Mutex::new(None));
    let (opened_tx, opened_rx) = std::sync::mpsc::channel();
    let reader = {
        let acked = Arc::clone(&acked);
        let stdout = child.stdout.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest may print "test NAME ... " on the same line first.
                if line.ends_with("OPENED") {
                    let _ = opened_tx.send(());
                }
                if let Some(n) = line.strip_prefix("ACK ") {
                    *acked.lock().expect("lock") = Some(n.trim().parse::<i64>().expect("n"));
                }
            }
        })
    };
    if after_open {
        // A child that never opens is caught below by its panic message.
        let _ = opened_rx.recv_timeout(Duration::from_secs(60));
    }
    std::thread::sleep(delay);
    // `Child::kill` sends SIGKILL on Unix.
    child.kill().expect("kill");
    let status = child.wait().expect("wait");
    reader.join().expect("reader");
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        use std::io::Read;
        let _ = err.read_to_string(&mut stderr);
    }
    assert!(
        !status.success(),
        "the child ended by itself before the kill:\n{stderr}"
    );
    assert!(
        !stderr.contains("panicked"),
        "the child failed before the kill:\n{stderr}"
    );
    *acked.lock().expect("lock")
}

/// Checks the recovered store and returns the last iteration whose peer
/// survived. `complete` holds every iteration acknowledged so far (each
/// child starts after the last peer that survived, so an iteration cut off
/// by a kill is never run again); `acked` is the largest; with immediate
/// durability at most `at_most` peers survive (one beyond what was acknowledged).
async fn check(
    store: &Store,
    policy: &str,
    complete: &BTreeSet<i64>,
    at_most: i64,
    seed: u64,
) -> i64 {
    let acked = complete.last().copied().unwrap_or(0);
    let context = format!("policy {policy}, seed {seed}, acknowledged {acked}");
    let session = store.session("victim").expect("name");
    // Peers form a prefix 1..=m of the iterations, with m >= acked.
    let survived = i64::try_from(session.peer_count().await.expect("count")).expect("small");
    assert!(
        survived >= acked,
        "{context}: only {survived} peers survived"
    );
    if policy == "immediate" {
        assert!(
            survived <= at_most,
            "{context}: {survived} peers, more than one unacknowledged"
        );
    }
    let ids: Vec<PeerId> = (1..=survived + 1).map(user).collect();
    let found = session.peers(&ids).await.expect("peers");
    for (i, got) in (1..).zip(&found) {
        if i <= survived {
            let got = got
                .as_ref()
                .unwrap_or_else(|| panic!("{context}: peer {i} lost"));
            assert_eq!(got.access_hash.map(|h| h.value), Some(i), "{context}");
            let listed = got.usernames.as_deref().unwrap_or_default();
            assert!(listed.contains(&format!("u{i}")), "{context}: {got:?}");
            // Only the last peer still lists the contested username.
            assert_eq!(
                listed.iter().any(|u| u == "contested"),
                i == survived,
                "{context}: peer {i} {got:?}"
            );
        } else {
            assert!(got.is_none(), "{context}: peer {i} beyond the count");
        }
    }
    if survived > 0 {
        let owner = session
            .peer_by_username("contested")
            .await
            .expect("lookup")
            .map(|p| p.id);
        assert_eq!(
            owner,
            Some(user(survived)),
            "{context}: index and rows disagree"
        );
        let by_phone = session
            .peer_by_phone(&format!("7{survived}"))
            .await
            .expect("lookup")
            .map(|p| p.id);
        assert_eq!(by_phone, Some(user(survived)), "{context}");
    }
    let pts = i64::from(session.update_state().await.expect("state").pts);
    assert!(pts >= acked, "{context}: pts {pts}");
    assert!(pts <= survived, "{context}: pts {pts} ahead of its peer");
    // The import of an acknowledged iteration j exists until its delete
    // (at iteration j + 5) is acknowledged; a delete cut off by a kill may
    // or may not have happened, and only if that iteration's first write
    // (its peer) survived.
    let names = store.list().await.expect("list");
    for j in complete.iter().copied().filter(|j| j % 10 == 0) {
        let name = format!("imp-{j}");
        let deleted_at = j + 5;
        if complete.contains(&deleted_at) {
            assert!(!names.contains(&name), "{context}: {name} came back");
        } else if deleted_at > survived || names.contains(&name) {
            assert!(names.contains(&name), "{context}: {name} lost");
            let data = store.export(&name).await.expect("export");
            assert_eq!(data, imported(j), "{context}: {name} differs");
        }
    }
    survived
}

fn trials() -> u64 {
    std::env::var("MTSESSION_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24)
        .max(20)
}

async fn crash_run(policy: &str) {
    let seed = std::env::var("MTSESSION_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| u64::from(d.subsec_nanos()) | 1)
        });
    let mut rng = Rng(seed);
    let dir = tempfile::Builder::new()
        .prefix("mtsession-sled-crash-")
        .tempdir()
        .expect("a temporary directory");
    {
        let store = open(dir.path(), policy).await;
        store.create("victim").await.expect("create");
    }
    let mut next = 1;
    let mut killed_after_writes = 0;
    let mut complete = BTreeSet::new();
    for trial in 0..trials() {
        let delay = Duration::from_millis(rng.below(600));
        // Every other trial counts its delay from the child's start, so that
        // some kills land while the store opens and recovers.
        let after_open = trial % 2 == 1;
        let acked = run_and_kill(dir.path(), policy, next, delay, after_open);
        if let Some(acked) = acked {
            complete.extend(next..=acked);
        }
        let at_most = acked.unwrap_or(next - 1).max(next - 1) + 1;
        let store = open(dir.path(), policy).await;
        let survived = check(&store, policy, &complete, at_most, seed).await;
        if acked.is_some() && after_open {
            killed_after_writes += 1;
        }
        eprintln!(
            "crash trial {trial} ({policy}): killed after {delay:?}, acknowledged {acked:?}, \
             recovered {survived}"
        );
        next = survived + 1;
    }
    assert!(
        killed_after_writes >= trials() / 4,
        "only {killed_after_writes} trials killed a child that had written (seed {seed})"
    );
}

#[tokio::test]
async fn crash_immediate_keeps_every_acknowledged_write() {
    crash_run("immediate").await;
}

#[tokio::test]
async fn crash_write_behind_keeps_every_flushed_write() {
    crash_run("write-behind").await;
}
