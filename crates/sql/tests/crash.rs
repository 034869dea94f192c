//! Crash tests on `sql+sqlite:`: a child process writes in a loop and prints
//! each write the store acknowledged; the parent kills it with SIGKILL at a
//! random moment, reopens the store and checks that it holds every
//! acknowledged write, trial after trial on the same file. At least 20
//! trials (`MTSESSION_CRASH_TRIALS` raises it).

#![cfg(feature = "sqlite")]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::child::{self, ChildProcess, Rng, Spawn, numbers, setting};
use session_core::{Peer, PeerId, SessionData, Store, UpdateStateChange};
use session_sql::SqlStore;

/// Ids of one trial's writes start at `trial * TRIAL_IDS`.
const TRIAL_IDS: i64 = 1_000_000;

fn trials() -> u64 {
    std::env::var("MTSESSION_CRASH_TRIALS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20)
        .max(20)
}

fn user(id: i64) -> PeerId {
    PeerId::user(id).expect("user id")
}

fn url(path: &Path) -> String {
    format!("sql+sqlite:{}", path.display())
}

/// Write `i` caches this peer, which also takes the username `hot` from
/// whoever had it.
fn peer(i: i64) -> Peer {
    Peer {
        usernames: Some(vec![format!("u{i}"), "hot".to_owned()]),
        ..Peer::new(user(i)).with_hash(i).with_phone(format!("1{i}"))
    }
}

/// Write `i` imports this session.
fn imported(i: i64) -> SessionData {
    let mut data = SessionData {
        home_dc: 1 + (i % 5) as i32,
        ..SessionData::default()
    };
    data.update_state.pts = (i % 100_000) as i32;
    data.peers = vec![
        Peer::new(user(i))
            .with_hash(-i)
            .with_username(format!("p{i}")),
    ];
    data.canonicalize();
    data
}

/// What write `i` does: 0 an update-state write, 1 a peer batch, 2 an import.
fn kind(i: i64) -> i64 {
    i % 3
}

#[test]
#[ignore = "child process of the crash tests, started by them"]
fn child_process() {
    let Some(role) = child::role() else {
        panic!("started by a crash test, which sets the role");
    };
    assert_eq!(role, "writer");
    let db = setting("DB");
    let first: i64 = setting("FIRST").parse().expect("a number");
    child::runtime().block_on(async move {
        let store = Store::new(SqlStore::open(&url(Path::new(&db))).await.expect("open"));
        let main = store.open("main").await.expect("main session");
        println!("ready");
        let mut i = first;
        loop {
            i += 1;
            match kind(i) {
                0 => main
                    .set_update_state(UpdateStateChange::Channel {
                        id: i,
                        pts: (i % 1_000_000) as i32,
                    })
                    .await
                    .expect("update-state write"),
                1 => main.cache_peers(&[peer(i)]).await.expect("peer batch"),
                _ => store
                    .import_new(&format!("s{i}"), &imported(i))
                    .await
                    .expect("import"),
            }
            println!("ack {i}");
        }
    });
}

/// Checks that the store holds every write in `acked`.
async fn check(path: &Path, acked: &BTreeSet<i64>, context: &str) {
    let sql = SqlStore::open(&url(path))
        .await
        .expect("reopen after the crash");
    let store = Store::new(sql.clone());
    let main = store.session("main").expect("handle");
    let state = main.update_state().await.expect("update state");
    let peer_ids: Vec<i64> = acked.iter().copied().filter(|i| kind(*i) == 1).collect();
    let found = main
        .peers(&peer_ids.iter().map(|i| user(*i)).collect::<Vec<_>>())
        .await
        .expect("peers");
    let sessions: BTreeSet<String> = store.list().await.expect("list").into_iter().collect();
    for &i in acked {
        match kind(i) {
            0 => assert_eq!(
                state.channels.get(&i),
                Some(&((i % 1_000_000) as i32)),
                "{context}: update-state write {i} lost"
            ),
            1 => {}
            _ => {
                let name = format!("s{i}");
                assert!(sessions.contains(&name), "{context}: import {i} lost");
                assert_eq!(
                    store.export(&name).await.expect("export"),
                    imported(i),
                    "{context}: import {i}"
                );
            }
        }
    }
    for (i, stored) in peer_ids.iter().zip(found) {
        let stored = stored.unwrap_or_else(|| panic!("{context}: peer batch {i} lost"));
        assert_eq!(stored.access_hash.map(|h| h.value), Some(*i), "{context}");
        assert_eq!(
            main.peer_by_username(&format!("u{i}"))
                .await
                .expect("lookup")
                .map(|p| p.id),
            Some(user(*i)),
            "{context}: username of peer {i}"
        );
        assert_eq!(
            main.peer_by_phone(&format!("1{i}"))
                .await
                .expect("lookup")
                .map(|p| p.id),
            Some(user(*i)),
            "{context}: phone of peer {i}"
        );
    }
    // `hot` belongs to the last peer written (at or after the last
    // acknowledged one), and only that peer lists it.
    if let Some(last) = peer_ids.last() {
        let owner = main
            .peer_by_username("hot")
            .await
            .expect("lookup")
            .expect("hot has an owner");
        assert!(
            owner.id.marked() >= *last,
            "{context}: hot went back to {owner:?}"
        );
        assert!(
            owner.usernames.iter().flatten().any(|n| n == "hot"),
            "{context}: the owner's row lists hot"
        );
        if owner.id != user(*last) {
            let stored = main.peer(user(*last)).await.expect("peer").expect("stored");
            assert!(
                !stored.usernames.iter().flatten().any(|n| n == "hot"),
                "{context}: two rows list hot"
            );
        }
    }
    drop(main);
    drop(store);
    sql.close().await.expect("close");
    let conn = rusqlite::Connection::open(path).expect("plain open");
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity check");
    assert_eq!(integrity, "ok", "{context}");
}

/// Issue 8's fault suite on session-sql's SQLite engine: a killed writer
/// loses nothing the store acknowledged.
#[test]
fn crash_sql_sqlite_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("crash.db");
    let (mut rng, seed) = Rng::from_time();
    let runtime = child::runtime();
    let mut acked = BTreeSet::new();
    let trials = trials();
    for trial in 0..trials {
        let context = format!("trial {trial} (seed {seed})");
        let mut child: ChildProcess = Spawn::role("writer")
            .setting("DB", path.display())
            .setting("FIRST", i64::try_from(trial).expect("small") * TRIAL_IDS)
            .start(format!("writer of {context}"));
        child.wait_for_line("ready", Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(5 + rng.below(300)));
        let lines = child.kill();
        acked.extend(numbers(&lines, "ack"));
        // Every acknowledged write of this trial and the earlier ones: a
        // killed process loses nothing the store acknowledged.
        runtime.block_on(check(&path, &acked, &context));
    }
    assert!(
        !acked.is_empty(),
        "no write was acknowledged in {trials} trials"
    );
    println!(
        "{trials} trials, {} acknowledged writes kept (seed {seed})",
        acked.len()
    );
}
