//! The outage tests of the fault suite: each starts its own `redis-server`
//! on a free loopback port (durable where data must survive: `appendonly
//! yes`, `appendfsync always`), kills it (SIGKILL) or freezes it (SIGSTOP,
//! SIGCONT) by PID under an open store, and checks that
//!
//! - every call during the outage fails with a typed error (`Unavailable`,
//!   or `OutcomeUnknown` for a write that was sent but not answered) within
//!   the configured timeout plus 2 s, never showing the password;
//! - after the restart (or the thaw) the same store works without being
//!   opened again;
//! - no acknowledged write is lost.
//!
//! Without redis-server a test is skipped with a message, and fails under
//! `MTSESSION_REQUIRE_SERVICES=1`.

mod common;

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use session_conformance::outage::{assert_all_there, file_key, shown, user, write_one};
use session_conformance::process::Rng;
use session_core::{
    Error, ErrorKind, Peer, PeerKind, SentFile, SessionData, Store, UpdateStateChange,
};
use session_redis::RedisStore;

use common::{Persistence, TestServer, free_port, redis_server_or_skip};

const PASSWORD: &str = "0utage-Pa55word";
const CONNECT_TIMEOUT: Duration = Duration::from_millis(800);
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(800);

/// The longest a call may take during an outage: the configured timeout
/// plus 2 s. A correctness bound (a call must not hang), not a speed goal.
fn bound() -> Duration {
    CONNECT_TIMEOUT.max(RESPONSE_TIMEOUT) + Duration::from_secs(2)
}

fn url(port: u16) -> String {
    format!("redis://:{PASSWORD}@127.0.0.1:{port}/0?prefix=outage")
}

async fn open(port: u16) -> Store {
    Store::new(
        RedisStore::builder(&url(port))
            .connect_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .open()
            .await
            .expect("open the store"),
    )
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
        "{what}: took {took:?}, more than the timeout plus 2 s ({:?})",
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
        "cache peers",
        s.cache_peers(&[Peer::new(user(99)).with_username("late")])
    );
    call!("look up a username", s.peer_by_username("early"));
    call!("read home", s.home());
    call!(
        "cache a sent file",
        s.cache_sent_file(
            &file_key(-1),
            &SentFile {
                id: 1,
                access_hash: 2
            }
        )
    );
    call!(
        "create-only import",
        store.import_new("bob", &SessionData::default())
    );
    call!(
        "replacing import",
        store.import("carol", &SessionData::default())
    );
    call!("copy", store.copy("alice", "dave", true));
    call!("delete", store.delete("erin"));
    call!("list", store.list());
    call!("export", store.export("alice"));
    call!(
        "lease",
        store.acquire_lease("alice", "me", Duration::from_secs(30))
    );
    errors
}

fn assert_reads_are_unavailable(errors: &[(String, Error)]) {
    for (what, err) in errors {
        let read = ["read", "look up", "list", "export"]
            .iter()
            .any(|w| what.contains(w));
        if read {
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
}

async fn check_seed(store: &Store) {
    let alice = store.session("alice").expect("name");
    assert_eq!(alice.home_dc().await.expect("home"), 4);
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

#[tokio::test]
async fn outage_killed_server_fails_fast_and_the_same_store_recovers() {
    let Some(_) =
        redis_server_or_skip("outage_killed_server_fails_fast_and_the_same_store_recovers")
    else {
        return;
    };
    let port = free_port();
    let mut server =
        TestServer::start_with(port, Persistence::Durable, &["--requirepass", PASSWORD]);
    let store = open(port).await;
    seed(&store).await;

    server.kill();
    let errors = every_call_fails(&store, "killed").await;
    assert_reads_are_unavailable(&errors);
    // The first call may have gone into the dead connection; from then on
    // nothing is sent: each call's connection is refused at once.
    for (what, err) in &errors[1..] {
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{what}: {err}");
        let text = err.to_string();
        assert!(
            text.contains("connection refused") && text.contains(&format!("127.0.0.1:{port}")),
            "{what}: {text}"
        );
    }

    server.restart();
    // The first call after the restart connects again and succeeds.
    check_seed(&store).await;
    store
        .session("alice")
        .expect("name")
        .set_home_dc(5)
        .await
        .expect("write after the restart");
    assert!(
        !store.exists("bob").await.expect("exists"),
        "refused import applied"
    );
}

#[tokio::test]
async fn outage_frozen_server_times_out_writes_with_an_unknown_outcome() {
    let Some(_) =
        redis_server_or_skip("outage_frozen_server_times_out_writes_with_an_unknown_outcome")
    else {
        return;
    };
    let port = free_port();
    let server = TestServer::start_with(port, Persistence::Durable, &["--requirepass", PASSWORD]);
    let store = open(port).await;
    seed(&store).await;

    server.pause();
    let errors = every_call_fails(&store, "frozen").await;
    assert_reads_are_unavailable(&errors);
    for (what, err) in &errors {
        let text = err.to_string();
        assert!(text.contains("response timeout"), "{what}: {text}");
        // A write whose script was sent has an unknown outcome (a batch of
        // new peers is sent at once). A replacing import or copy and a
        // lease first read what they change, so they fail in that read,
        // before anything is written.
        let sent_write = [
            "write home",
            "write update",
            "cache peers",
            "cache a sent",
            "create-only import",
            "delete",
        ]
        .iter()
        .any(|w| what.contains(w));
        if sent_write {
            assert_eq!(err.kind(), ErrorKind::OutcomeUnknown, "{what}: {err}");
            assert!(
                text.contains("may or may not have been applied"),
                "{what}: {text}"
            );
        }
    }
    // A store opened while the server is frozen: the TCP handshake
    // succeeds (the kernel answers it), the password exchange does not.
    let err = fails_in_time(
        "open while frozen",
        RedisStore::builder(&url(port))
            .connect_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .open(),
    )
    .await;
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("nothing was sent"), "{err}");

    server.resume();
    // The same store works again. The writes whose outcome was unknown had
    // reached the server and ran when it thawed (this call is answered
    // after them, on the same connection), each whole; the lease, which
    // failed in its read, was never taken.
    let alice = store.session("alice").expect("name");
    assert_eq!(alice.home_dc().await.expect("read after the thaw"), 3);
    assert_eq!(alice.update_state().await.expect("state").qts, 9);
    assert!(
        alice
            .sent_file(&file_key(-1))
            .await
            .expect("file")
            .is_some()
    );
    assert_eq!(
        alice
            .peer_by_username("late")
            .await
            .expect("lookup")
            .map(|p| p.id),
        Some(user(99))
    );
    assert!(
        !store.release_lease("alice", "me").await.expect("release"),
        "the lease was taken"
    );
    let mut bob = store
        .export("bob")
        .await
        .expect("the create-only import ran whole");
    bob.canonicalize();
    assert_eq!(bob, SessionData::default());
    assert_eq!(
        alice
            .peer_by_username("early")
            .await
            .expect("lookup")
            .map(|p| p.id),
        Some(user(1))
    );
    alice.set_home_dc(2).await.expect("write after the thaw");
    assert_eq!(alice.home_dc().await.expect("read"), 2);
}

#[tokio::test]
async fn outage_open_while_the_server_is_down_is_unavailable_then_works() {
    let Some(_) =
        redis_server_or_skip("outage_open_while_the_server_is_down_is_unavailable_then_works")
    else {
        return;
    };
    let port = free_port();
    let err = fails_in_time(
        "open with nothing listening",
        RedisStore::builder(&url(port))
            .connect_timeout(CONNECT_TIMEOUT)
            .open(),
    )
    .await;
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("connection refused"), "{err}");
    let _server = TestServer::start_with(port, Persistence::Durable, &["--requirepass", PASSWORD]);
    let store = open(port).await;
    store.create("x").await.expect("create");
}

/// A writer keeps writing (update state, peers, sent files) through one
/// store while the server is killed and restarted at random moments. Every
/// write the store acknowledged must be there at the end; every failure is
/// typed and in time; after each restart the same store writes again.
#[tokio::test]
async fn outage_kills_at_random_moments_lose_no_acknowledged_write() {
    let Some(_) = redis_server_or_skip("outage_kills_at_random_moments_lose_no_acknowledged_write")
    else {
        return;
    };
    let mut rng = Rng::from_env("OUTAGE_SEED");
    let port = free_port();
    let mut server =
        TestServer::start_with(port, Persistence::Durable, &["--requirepass", PASSWORD]);
    let store = open(port).await;
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
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            (acknowledged, failures)
        }
    });

    let trials = 6;
    let mut restarted = Instant::now();
    for _ in 0..trials {
        tokio::time::sleep(rng.millis(100, 400)).await;
        server.kill();
        tokio::time::sleep(rng.millis(50, 300)).await;
        server.restart();
        restarted = Instant::now();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
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
    let fresh = open(port).await;
    for reader in [&store, &fresh] {
        let session = reader.session("w").expect("name");
        assert_all_there(&session, acknowledged.iter().map(|&(n, _)| n)).await;
    }
}
