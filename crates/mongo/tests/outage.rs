//! The outage tests of the fault suite: each starts its own SecantusDB on a
//! free loopback port, durable (its data in files, the log synced on every
//! commit) and requiring a password, kills it (SIGKILL) or freezes it
//! (SIGSTOP, SIGCONT) by PID under an open store, and checks that
//!
//! - every call during the outage fails with a typed error (`Unavailable`,
//!   or `OutcomeUnknown` for a write that was sent but not answered) within
//!   the configured timeouts plus 2 s, never showing the password;
//! - after the restart (or the thaw) the same store works without being
//!   opened again;
//! - no acknowledged write is lost, and a transaction that failed with
//!   `Unavailable` left nothing behind.
//!
//! SecantusDB is found through `MTSESSION_SECANTUSD` (default: the
//! virtualenv `cargo xtask services` installs under the target folder).
//! Without it a test is skipped with a message, and fails under
//! `MTSESSION_REQUIRE_SERVICES=1`.

mod common;

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use session_conformance::outage::{assert_all_there, file_key, user, write_one};
use session_conformance::process::Rng;
use session_core::{
    Error, ErrorKind, Peer, PeerKind, SentFile, SessionData, Store, UpdateStateChange,
};
use session_mongo::MongoStore;

use common::{Storage, TestServer, secantusd_or_skip, shown};

const USER: &str = "outage";
const PASSWORD: &str = "0utage-Pa55word";
const SELECTION_TIMEOUT: Duration = Duration::from_millis(1500);
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(1500);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);

/// The longest a call may take during an outage: the longer of the
/// configured timeouts plus 2 s. A correctness bound (a call must not
/// hang), not a speed goal.
fn bound() -> Duration {
    SELECTION_TIMEOUT.max(RESPONSE_TIMEOUT) + Duration::from_secs(2)
}

fn credentials() -> String {
    format!("{USER}:{PASSWORD}@")
}

async fn open(server: &TestServer) -> Store {
    Store::new(
        MongoStore::builder(&server.url(&credentials()))
            .database("outage")
            .server_selection_timeout(SELECTION_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .open()
            .await
            .expect("open the store"),
    )
}

/// A durable server requiring the test's user and password.
async fn durable_server() -> TestServer {
    let mut server = TestServer::start(Storage::Durable, &[]);
    server.provision_user(USER, PASSWORD).await;
    server
}

/// Runs one call of the outage, checking its error's kind, its time and
/// that it hides the password. Returns the error.
async fn fails_in_time<T: std::fmt::Debug>(
    what: &str,
    call: impl Future<Output = session_core::Result<T>>,
) -> Error {
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(60), call)
        .await
        .unwrap_or_else(|_| panic!("{what}: the call hung for a minute"));
    let took = started.elapsed();
    let err = match result {
        Ok(value) => panic!("{what}: succeeded during the outage: {value:?}"),
        Err(err) => err,
    };
    assert!(
        matches!(
            err.kind(),
            ErrorKind::Unavailable | ErrorKind::OutcomeUnknown
        ),
        "{what}: expected Unavailable or OutcomeUnknown, got {}: {err}",
        err.kind()
    );
    assert!(
        took <= bound(),
        "{what}: took {took:?}, more than the timeout plus 2 s ({:?}): {err}",
        bound()
    );
    let text = shown(&err);
    assert!(
        !text.contains(PASSWORD),
        "{what}: the password leaked: {text}"
    );
    err
}

/// One read and one write of every kind, each expected to fail.
async fn every_call_fails(store: &Store, round: &str) -> Vec<(String, Error)> {
    let s = store.session("alice").expect("name");
    let mut errors = Vec::new();
    macro_rules! call {
        ($what:expr, $call:expr) => {{
            let what = format!("{round}: {}", $what);
            let err = fails_in_time(&what, $call).await;
            eprintln!("{what}: {} {err}", err.kind());
            errors.push((what, err));
        }};
    }
    call!("write home DC", s.set_home_dc(3));
    call!("read header", s.header());
    call!(
        "write update state",
        s.set_update_state(UpdateStateChange::Secondary { qts: 9 })
    );
    call!("read update state", s.update_state());
    call!(
        "cache peers (transaction)",
        s.cache_peers(&[Peer::new(user(99)).with_username("late")])
    );
    call!("look up a username", s.peer_by_username("early"));
    call!("read home", s.home());
    call!(
        "cache a sent file (transaction)",
        s.cache_sent_file(
            &file_key(-1),
            &SentFile {
                id: 1,
                access_hash: 2
            }
        )
    );
    call!(
        "create-only import (transaction)",
        store.import_new("bob", &SessionData::default())
    );
    call!(
        "replacing import (transaction)",
        store.import("carol", &SessionData::default())
    );
    call!("copy (transaction)", store.copy("alice", "dave", true));
    call!("delete (transaction)", store.delete("erin"));
    call!("list", store.list());
    call!("export", store.export("alice"));
    call!(
        "lease",
        store.acquire_lease("alice", "me", Duration::from_secs(30))
    );
    errors
}

/// Reads, and transactions (whose commit is never sent while the server
/// is away), changed nothing: `Unavailable`.
fn assert_reads_and_transactions_are_unavailable(errors: &[(String, Error)]) {
    for (what, err) in errors {
        let unapplied = ["read", "look up", "list", "export", "transaction"]
            .iter()
            .any(|w| what.contains(w));
        if unapplied {
            assert_eq!(err.kind(), ErrorKind::Unavailable, "{what}: {err}");
        }
    }
}

async fn seed(store: &Store) {
    let alice = store.open("alice").await.expect("create");
    alice.set_home_dc(4).await.expect("home");
    alice
        .cache_peers(&[Peer::new(user(1))
            .with_kind(PeerKind::User)
            .with_hash(11)
            .with_username("early")])
        .await
        .expect("peers");
    alice
        .set_update_state(UpdateStateChange::Channel { id: 5, pts: 50 })
        .await
        .expect("state");
    store.create("erin").await.expect("create");
}

async fn check_seed(store: &Store) {
    let alice = store.session("alice").expect("name");
    assert_eq!(
        alice
            .peer_by_username("EARLY")
            .await
            .expect("lookup")
            .map(|p| p.id),
        Some(user(1))
    );
    assert_eq!(
        alice.update_state().await.expect("state").channels.get(&5),
        Some(&50)
    );
}

/// The transactions that failed with `Unavailable` left nothing behind.
async fn check_failed_transactions_applied_nothing(store: &Store) {
    let alice = store.session("alice").expect("name");
    assert_eq!(
        alice.peer_by_username("late").await.expect("lookup"),
        None,
        "a peer batch that failed as Unavailable was applied"
    );
    assert_eq!(
        alice.sent_file(&file_key(-1)).await.expect("file"),
        None,
        "a sent file that failed as Unavailable was applied"
    );
    for name in ["bob", "carol", "dave"] {
        assert!(
            !store.exists(name).await.expect("exists"),
            "an import or copy of {name} that failed as Unavailable was applied"
        );
    }
    assert!(
        store.exists("erin").await.expect("exists"),
        "a failed delete was applied"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_killed_server_fails_fast_and_the_same_store_recovers() {
    let Some(_) = secantusd_or_skip("outage_killed_server_fails_fast_and_the_same_store_recovers")
    else {
        return;
    };
    let mut server = durable_server().await;
    let store = open(&server).await;
    seed(&store).await;

    server.kill();
    let errors = every_call_fails(&store, "killed").await;
    assert_reads_and_transactions_are_unavailable(&errors);
    // The first call may have gone into the dead connection; from then on
    // nothing is sent: each call finds no server.
    for (what, err) in &errors[1..] {
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{what}: {err}");
        let text = err.to_string();
        assert!(
            text.contains(&format!("127.0.0.1:{}", server.port)) && text.contains("refused"),
            "{what}: the message names neither the server nor the cause: {text}"
        );
        assert!(text.contains("nothing was sent"), "{what}: {text}");
    }

    server.restart();
    // The same store works again, and nothing refused was applied.
    check_seed(&store).await;
    check_failed_transactions_applied_nothing(&store).await;
    let alice = store.session("alice").expect("name");
    alice.set_home_dc(5).await.expect("write after the restart");
    assert_eq!(alice.home_dc().await.expect("read"), 5);
    alice
        .cache_peers(&[Peer::new(user(2)).with_username("after")])
        .await
        .expect("a transaction after the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_frozen_server_times_out_writes_with_an_unknown_outcome() {
    let Some(_) =
        secantusd_or_skip("outage_frozen_server_times_out_writes_with_an_unknown_outcome")
    else {
        return;
    };
    let server = durable_server().await;
    let store = open(&server).await;
    seed(&store).await;

    server.pause();
    let errors = every_call_fails(&store, "frozen").await;
    assert_reads_and_transactions_are_unavailable(&errors);
    // The first write went into the open connection and was not answered:
    // its outcome is unknown, and the message says so. The calls after it
    // wait for a new connection, whose handshake is never answered, so they
    // send nothing. Only a write sent outside a transaction is ever unknown.
    let (what, err) = &errors[0];
    assert_eq!(err.kind(), ErrorKind::OutcomeUnknown, "{what}: {err}");
    let text = err.to_string();
    assert!(
        text.contains("may or may not have been applied") && text.contains("response timeout"),
        "{what}: {text}"
    );
    for (what, err) in &errors {
        if err.kind() == ErrorKind::OutcomeUnknown {
            assert!(what.contains("write "), "{what}: {err}");
        } else {
            assert!(
                err.to_string().contains("nothing was sent"),
                "{what}: {err}"
            );
        }
    }
    // A store opened while the server is frozen: the connection's
    // handshake is never answered.
    let err = fails_in_time(
        "open while frozen",
        MongoStore::builder(&server.url(&credentials()))
            .database("outage")
            .server_selection_timeout(SELECTION_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .open(),
    )
    .await;
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");

    server.resume();
    // The same store works again. Every transaction that failed as
    // Unavailable left nothing; the writes of unknown outcome are each
    // either applied whole or not at all.
    check_seed(&store).await;
    check_failed_transactions_applied_nothing(&store).await;
    let alice = store.session("alice").expect("name");
    assert!(matches!(alice.home_dc().await.expect("read"), 3 | 4));
    assert!(matches!(
        alice.update_state().await.expect("state").qts,
        0 | 9
    ));
    alice.set_home_dc(2).await.expect("write after the thaw");
    assert_eq!(alice.home_dc().await.expect("read"), 2);
    alice
        .cache_peers(&[Peer::new(user(2)).with_username("after")])
        .await
        .expect("a transaction after the thaw");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_open_while_the_server_is_down_is_unavailable_then_works() {
    let Some(_) =
        secantusd_or_skip("outage_open_while_the_server_is_down_is_unavailable_then_works")
    else {
        return;
    };
    let port = common::free_port();
    let url = format!(
        "mongodb://{}127.0.0.1:{port}/?directConnection=true",
        credentials()
    );
    let err = fails_in_time(
        "open with nothing listening",
        MongoStore::builder(&url)
            .server_selection_timeout(SELECTION_TIMEOUT)
            .open(),
    )
    .await;
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("127.0.0.1:{port}")) && text.contains("connection refused"),
        "{text}"
    );
    let _server = TestServer::start_on(port, Storage::Durable, &[]);
    let store = Store::new(
        MongoStore::builder(&format!(
            "mongodb://127.0.0.1:{port}/?directConnection=true"
        ))
        .open()
        .await
        .expect("open once the server is up"),
    );
    store.create("x").await.expect("create");
}

/// A writer keeps writing (update state, peers, sent files) through one
/// store while the server is killed and restarted at random moments. Every
/// write the store acknowledged must be there at the end; every failure is
/// typed and in time; after each restart the same store writes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_kills_at_random_moments_lose_no_acknowledged_write() {
    let Some(_) = secantusd_or_skip("outage_kills_at_random_moments_lose_no_acknowledged_write")
    else {
        return;
    };
    let mut rng = Rng::from_env("OUTAGE_SEED");
    let mut server = durable_server().await;
    let store = open(&server).await;
    store.create("w").await.expect("create");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let writer = tokio::spawn({
        let store = store.clone();
        async move {
            let session = store.session("w").expect("name");
            let mut acknowledged: Vec<(i64, Instant)> = Vec::new();
            let mut failures: HashMap<String, usize> = HashMap::new();
            let mut n: i64 = 0;
            while !*stop_rx.borrow() {
                n += 1;
                let started = Instant::now();
                match write_one(&session, n).await {
                    Ok(()) => acknowledged.push((n, Instant::now())),
                    Err(err) => {
                        let took = started.elapsed();
                        assert!(
                            matches!(
                                err.kind(),
                                ErrorKind::Unavailable | ErrorKind::OutcomeUnknown
                            ),
                            "write {n}: {err}"
                        );
                        assert!(took <= bound(), "write {n} took {took:?}: {err}");
                        assert!(!shown(&err).contains(PASSWORD));
                        *failures.entry(err.kind().to_string()).or_default() += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            (acknowledged, failures)
        }
    });

    let trials = 4;
    let mut restarted = Instant::now();
    for _ in 0..trials {
        tokio::time::sleep(rng.millis(300, 1200)).await;
        server.kill();
        tokio::time::sleep(rng.millis(50, 500)).await;
        server.restart();
        restarted = Instant::now();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop_tx.send(true).expect("stop the writer");
    let (acknowledged, failures) = writer.await.expect("the writer");
    eprintln!(
        "{} writes acknowledged over {trials} kills; failures by kind: {failures:?}",
        acknowledged.len()
    );
    assert!(
        failures.values().sum::<usize>() > 0,
        "no write failed: the kills missed the writer"
    );
    assert!(
        acknowledged.iter().any(|(_, at)| *at > restarted),
        "the writer's store did not write again after the last restart"
    );

    // Read everything back on a fresh store as well as the writer's own.
    let fresh = open(&server).await;
    for reader in [&store, &fresh] {
        let session = reader.session("w").expect("name");
        assert_all_there(&session, acknowledged.iter().map(|&(n, _)| n)).await;
    }
}
