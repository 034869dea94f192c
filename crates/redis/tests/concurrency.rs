//! Concurrency tests with two OS processes on one Redis key prefix: two
//! processes creating one store at the same instant (both open it, neither
//! sees a half-made store), and two create-only imports of one session
//! racing (exactly one wins, the other gets `AlreadyExists`, and the stored
//! session is the winner's).
//!
//! The children are this test binary again, running the ignored test
//! `child_process` with their role in the environment.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use session_core::{ErrorKind, OpenMode, SelfUser, SessionData, Store};
use session_redis::RedisStore;

use common::{test_url, unique_prefix};

/// Races per test.
const RACES: u64 = 100;
/// Time between two races, in ms.
const RACE_STEP_MS: u64 = 15;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn setting(key: &str) -> String {
    std::env::var(format!("MTSESSION_RACE_{key}"))
        .unwrap_or_else(|_| panic!("the parent sets MTSESSION_RACE_{key}"))
}

/// Sleeps until `at_ms` (Unix time in ms).
async fn wait_until(at_ms: u64) {
    let now = now_ms();
    if at_ms > now {
        tokio::time::sleep(Duration::from_millis(at_ms - now)).await;
    }
}

async fn open(prefix: &str, mode: OpenMode) -> session_core::Result<Store> {
    Ok(Store::new(
        RedisStore::builder(&test_url())
            .prefix(prefix)
            .mode(mode)
            .open()
            .await?,
    ))
}

/// A session whose self user names the process that wrote it.
fn data_of(me: i64) -> SessionData {
    SessionData {
        self_user: Some(SelfUser {
            id: me,
            is_bot: false,
        }),
        ..SessionData::default()
    }
}

#[test]
#[ignore = "child process of the concurrency tests, started by them"]
fn child_process() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let role = setting("ROLE");
    let base = setting("PREFIX");
    let me: i64 = setting("ME").parse().expect("a number");
    let start: u64 = setting("START_MS").parse().expect("a time");
    runtime.block_on(async {
        for k in 0..RACES {
            wait_until(start + k * RACE_STEP_MS).await;
            let outcome = match role.as_str() {
                // Open (creating) a fresh prefix at the same instant as the
                // other process, then write a session of one's own.
                "create" => match open(&format!("{base}-{k}"), OpenMode::Create).await {
                    Ok(store) => match store.import_new(&format!("p{me}"), &data_of(me)).await {
                        Ok(()) => "ok".to_owned(),
                        Err(e) => format!("import failed: {:?}: {e}", e.kind()),
                    },
                    Err(e) => format!("open failed: {:?}: {e}", e.kind()),
                },
                // A create-only import of one name in one store.
                _ => match open(&base, OpenMode::ReadWrite).await {
                    Ok(store) => match store.import_new(&format!("race-{k}"), &data_of(me)).await {
                        Ok(()) => "won".to_owned(),
                        Err(e) if e.kind() == ErrorKind::AlreadyExists => "exists".to_owned(),
                        Err(e) => format!("import failed: {:?}: {e}", e.kind()),
                    },
                    Err(e) => format!("open failed: {:?}: {e}", e.kind()),
                },
            };
            println!("race {k} {outcome}");
        }
    });
}

/// Starts two children in `role` on prefix `base`, racing from a common
/// instant, and returns each one's outcome per race.
fn race(role: &str, base: &str) -> [BTreeMap<u64, String>; 2] {
    let start = now_ms() + 1_500;
    let exe = std::env::current_exe().expect("the test binary");
    let children: Vec<(i64, Child)> = [1_i64, 2]
        .into_iter()
        .map(|me| {
            let child = Command::new(&exe)
                .args([
                    "--exact",
                    "child_process",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("MTSESSION_RACE_ROLE", role)
                .env("MTSESSION_RACE_PREFIX", base)
                .env("MTSESSION_RACE_ME", me.to_string())
                .env("MTSESSION_RACE_START_MS", start.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start a child process");
            (me, child)
        })
        .collect();
    let mut outcomes = [BTreeMap::new(), BTreeMap::new()];
    for (i, (me, child)) in children.into_iter().enumerate() {
        let output = child.wait_with_output().expect("wait for a child");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "child {me} failed: {}\n{stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        for line in stdout.lines() {
            // The first line follows libtest's `test child_process ... `.
            let Some(rest) = line.find("race ").map(|at| &line[at + 5..]) else {
                continue;
            };
            let (k, outcome) = rest.split_once(' ').expect("race K OUTCOME");
            outcomes[i].insert(k.parse().expect("a race number"), outcome.to_owned());
        }
        assert_eq!(outcomes[i].len() as u64, RACES, "child {me}: {stdout}");
    }
    outcomes
}

/// Deletes every key under the prefixes a test used.
async fn clean(prefixes: &[String]) {
    let url = test_url();
    let mut con = common::raw_connection(&url).await.expect("the test Redis");
    for prefix in prefixes {
        let keys = common::keys_under(&url, prefix).await.expect("scan");
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL")
                .arg(keys)
                .query_async(&mut con)
                .await
                .expect("delete the test keys");
        }
    }
}

async fn require_server() -> bool {
    match common::raw_connection(&test_url()).await {
        Ok(_) => true,
        Err(e) if std::env::var_os("MTSESSION_REQUIRE_SERVICES").is_some() => {
            panic!("MTSESSION_REQUIRE_SERVICES is set but the test Redis is missing: {e}")
        }
        Err(e) => {
            eprintln!("skipped: {e}");
            false
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_two_processes_create_one_store() {
    if !require_server().await {
        return;
    }
    let base = unique_prefix();
    let outcomes = tokio::task::spawn_blocking({
        let base = base.clone();
        move || race("create", &base)
    })
    .await
    .expect("the race");
    for (i, child) in outcomes.iter().enumerate() {
        for (k, outcome) in child {
            assert_eq!(outcome, "ok", "process {} in race {k}", i + 1);
        }
    }
    let mut prefixes = Vec::new();
    for k in 0..RACES {
        let prefix = format!("{base}-{k}");
        let store = open(&prefix, OpenMode::ReadOnly)
            .await
            .expect("the raced store opens");
        assert_eq!(store.list().await.expect("list"), ["p1", "p2"], "race {k}");
        prefixes.push(prefix);
    }
    clean(&prefixes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_two_processes_racing_create_only_imports_one_wins() {
    if !require_server().await {
        return;
    }
    let base = unique_prefix();
    // The store exists before the race; only the sessions are raced.
    drop(
        open(&base, OpenMode::Create)
            .await
            .expect("create the store"),
    );
    let outcomes = tokio::task::spawn_blocking({
        let base = base.clone();
        move || race("import", &base)
    })
    .await
    .expect("the race");
    let store = open(&base, OpenMode::ReadOnly).await.expect("reopen");
    for k in 0..RACES {
        let pair = (outcomes[0][&k].as_str(), outcomes[1][&k].as_str());
        let winner = match pair {
            ("won", "exists") => 1,
            ("exists", "won") => 2,
            other => panic!("race {k}: expected exactly one winner, got {other:?}"),
        };
        let stored = store
            .export(&format!("race-{k}"))
            .await
            .expect("the raced session");
        assert_eq!(
            stored.self_user.map(|u| u.id),
            Some(winner),
            "race {k}: the stored session is the winner's"
        );
    }
    clean(&[base]).await;
}
