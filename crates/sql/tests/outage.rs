//! The outage tests of the fault suite, on PostgreSQL and MariaDB/MySQL:
//! each test starts its own server (a throwaway `initdb` cluster, or a
//! throwaway MariaDB data directory) on a free loopback port, configured
//! durable (`fsync=on`, `synchronous_commit=on`;
//! `innodb_flush_log_at_trx_commit=1`), and kills it (SIGKILL, with every
//! process it started) or freezes it (SIGSTOP, then SIGCONT) by PID under
//! an open store. It checks that
//!
//! - every call during the outage fails with a typed error (`Unavailable`,
//!   or `OutcomeUnknown` for a write that was sent but not answered) within
//!   the configured timeout plus 2 s, never showing the password;
//! - after the restart (or the thaw) the same store works without being
//!   opened again, and a call that failed `Unavailable` applied nothing;
//! - no acknowledged write is lost: every write the store acknowledged is
//!   read back after the server was killed and restarted.
//!
//! Without the server programs a test is skipped with a message, and fails
//! under `MTSESSION_REQUIRE_SERVICES=1`.

#[path = "common/servers.rs"]
mod servers;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use session_conformance::outage::{assert_all_there, file_key, shown, user, write_one};
use session_conformance::process::Rng;
use session_core::{
    Error, ErrorKind, Peer, PeerKind, SentFile, SessionData, Store, UpdateStateChange,
};
use session_sql::{SqlStore, SqlStoreBuilder};

use servers::{Binaries, Kind, TestServer};

const PASSWORD: &str = "0utage-Pa55word";
/// The store's connect, acquire and response timeouts.
const TIMEOUT: Duration = Duration::from_secs(1);

/// The longest a call may take during an outage: the configured timeout
/// plus 2 s. A correctness bound (a call must not hang), not a speed goal.
fn bound() -> Duration {
    TIMEOUT + Duration::from_secs(2)
}

fn builder(server: &TestServer) -> SqlStoreBuilder {
    SqlStore::builder(&server.url())
        .table_prefix("outage_")
        .max_connections(4)
        .connect_timeout(TIMEOUT)
        .acquire_timeout(TIMEOUT)
        .response_timeout(TIMEOUT)
}

async fn open(server: &TestServer) -> Store {
    Store::new(builder(server).open().await.expect("open the store"))
}

/// Checks one failure of the outage: its kind, its time, that it hides the
/// password and names the server.
fn check_failure(what: &str, err: &Error, took: Duration, port: u16) {
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
    let text = shown(err);
    assert!(
        !text.contains(PASSWORD),
        "{what}: the password leaked: {text}"
    );
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{what}: the error does not name the server: {err}"
    );
}

/// Runs one call of the outage and checks its failure. Returns the error.
async fn fails_in_time<T: std::fmt::Debug>(
    what: &str,
    port: u16,
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
    check_failure(what, &err, took, port);
    err
}

/// What a call of [`every_call_fails`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    Read,
    /// One statement that writes.
    Write,
    /// A transaction that writes.
    Transaction,
}

/// One read and one write of every kind, each expected to fail. The first
/// three (a peer batch, a create-only import, a header write) take the
/// pool's idle connections, when it has some, and are sent.
async fn every_call_fails(store: &Store, port: u16, round: &str) -> Vec<(String, Call, Error)> {
    let s = store.session("alice").expect("name");
    let mut errors = Vec::new();
    macro_rules! call {
        ($what:expr, $call_kind:expr, $call:expr) => {{
            let what = format!("{round}: {}", $what);
            let err = fails_in_time(&what, port, $call).await;
            errors.push((what, $call_kind, err));
        }};
    }
    call!(
        "cache peers",
        Call::Transaction,
        s.cache_peers(&[Peer::new(user(99)).with_username("late")])
    );
    call!(
        "create-only import",
        Call::Transaction,
        store.import_new("bob", &SessionData::default())
    );
    call!("write home DC", Call::Write, s.set_home_dc(3));
    call!("read header", Call::Read, s.header());
    call!(
        "write update state",
        Call::Write,
        s.set_update_state(UpdateStateChange::Secondary { qts: 9 })
    );
    call!("read update state", Call::Read, s.update_state());
    call!(
        "look up a username",
        Call::Read,
        s.peer_by_username("early")
    );
    call!("read home", Call::Read, s.home());
    call!(
        "cache a sent file",
        Call::Write,
        s.cache_sent_file(
            &file_key(-1),
            &SentFile {
                id: 1,
                access_hash: 2
            }
        )
    );
    call!(
        "replacing import",
        Call::Transaction,
        store.import("carol", &SessionData::default())
    );
    call!("copy", Call::Transaction, store.copy("alice", "dave", true));
    call!("delete", Call::Write, store.delete("erin"));
    call!("list", Call::Read, store.list());
    call!("export", Call::Read, store.export("alice"));
    call!(
        "lease",
        Call::Transaction,
        store.acquire_lease("alice", "me", Duration::from_secs(30))
    );
    errors
}

/// Reads and transactions that never reached `COMMIT` applied nothing:
/// `Unavailable`. Only a one-statement write may be `OutcomeUnknown`.
fn assert_only_sent_writes_are_unknown(errors: &[(String, Call, Error)]) {
    for (what, call, err) in errors {
        if *call != Call::Write {
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
    store.create("erin").await.expect("create erin");
}

/// The seed is there, and nothing a call reported `Unavailable` for was
/// applied.
async fn check_after_outage(store: &Store, errors: &[(String, Call, Error)]) {
    let unknown = |name: &str| {
        errors
            .iter()
            .any(|(what, _, err)| what.ends_with(name) && err.kind() == ErrorKind::OutcomeUnknown)
    };
    let alice = store.session("alice").expect("name");
    let home = alice.home_dc().await.expect("home");
    if unknown("write home DC") {
        assert!(home == 4 || home == 3, "home DC {home}");
    } else {
        assert_eq!(home, 4, "a write reported Unavailable was applied");
    }
    assert_eq!(
        alice
            .peer_by_username("EARLY")
            .await
            .expect("lookup")
            .map(|p| p.id),
        Some(user(1))
    );
    let state = alice.update_state().await.expect("state");
    assert_eq!(state.channels.get(&5), Some(&50));
    if !unknown("write update state") {
        assert_eq!(state.qts, 0, "a write reported Unavailable was applied");
    }
    if !unknown("cache a sent file") {
        assert_eq!(alice.sent_file(&file_key(-1)).await.expect("file"), None);
    }
    if !unknown("delete") {
        assert!(store.exists("erin").await.expect("exists"), "erin deleted");
    }
    // The transactions never committed.
    assert_eq!(
        alice.peer_by_username("late").await.expect("lookup"),
        None,
        "an unavailable peer batch was applied"
    );
    for name in ["bob", "carol", "dave"] {
        assert!(
            !store.exists(name).await.expect("exists"),
            "{name}: an unavailable import or copy was applied"
        );
    }
    assert!(
        !store.release_lease("alice", "me").await.expect("release"),
        "an unavailable lease was taken"
    );
}

/// Writes `count` distinct values through `store` from four tasks at once
/// (update-state channels, sent files, and unless `autocommit_only` peer
/// batches, which are transactions), each of which must be acknowledged.
/// Returns their numbers.
async fn write_stream(
    store: &Store,
    session: &str,
    from: i64,
    count: i64,
    autocommit_only: bool,
) -> Vec<i64> {
    let mut tasks = Vec::new();
    for lane in 0..4 {
        let store = store.clone();
        let session = session.to_owned();
        tasks.push(tokio::spawn(async move {
            let s = store.session(&session).expect("name");
            let mut done = Vec::new();
            let mut n = from + lane;
            while n < from + count {
                if autocommit_only && n.rem_euclid(3) == 1 {
                    n += 4;
                    continue;
                }
                write_one(&s, n)
                    .await
                    .unwrap_or_else(|e| panic!("write {n} after the outage: {e}"));
                done.push(n);
                n += 4;
            }
            done
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("a writer"));
    }
    all
}

/// Restarts the server, then finds every write numbered in `written` in
/// `session`, through `store` (which outlived the restart) and through a
/// store opened afresh.
async fn all_there_after_a_restart(
    server: &mut TestServer,
    store: &Store,
    session: &str,
    written: &[i64],
) {
    server.restart().await;
    for store in [store.clone(), open(server).await] {
        assert_all_there(
            &store.session(session).expect("name"),
            written.iter().copied(),
        )
        .await;
    }
}

/// Makes calls at once until the store's pool holds at least `n` idle
/// connections (bounded).
async fn open_idle_connections(store: &Store, sql: &SqlStore, n: usize) {
    let db = sql.connection();
    let idle = || match sql.engine() {
        session_sql::Engine::Postgres => db.get_postgres_connection_pool().num_idle(),
        _ => db.get_mysql_connection_pool().num_idle(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while idle() < n {
        assert!(
            Instant::now() < deadline,
            "the pool never held {n} idle connections"
        );
        let calls: Vec<_> = (0..n + 1)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.export("alice").await.map(|_| ()) })
            })
            .collect();
        for call in calls {
            call.await.expect("a call").expect("export");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn killed_server(kind: Kind, test: &str) {
    let Some(binaries) = Binaries::or_skip(kind, test) else {
        return;
    };
    let mut server = TestServer::start(kind, binaries, PASSWORD).await;
    let port = server.port;
    let store = open(&server).await;
    seed(&store).await;

    server.kill();
    let errors = every_call_fails(&store, port, "killed").await;
    assert_only_sent_writes_are_unknown(&errors);
    // Opening a store while nothing listens: refused at once.
    let err = fails_in_time("open while down", port, builder(&server).open()).await;
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("connection refused"), "{err}");

    server.restart().await;
    // The same store works again, and lost nothing.
    check_after_outage(&store, &errors).await;
    let written = write_stream(&store, "alice", 1000, 24, false).await;
    all_there_after_a_restart(&mut server, &store, "alice", &written).await;
}

async fn frozen_server(kind: Kind, test: &str) {
    let Some(binaries) = Binaries::or_skip(kind, test) else {
        return;
    };
    let mut server = TestServer::start(kind, binaries, PASSWORD).await;
    let port = server.port;
    // Three idle connections in the pool: the first three calls of the
    // freeze are sent on them.
    let sql = builder(&server).open().await.expect("open the store");
    let store = Store::new(sql.clone());
    seed(&store).await;
    open_idle_connections(&store, &sql, 3).await;

    server.freeze();
    let errors = every_call_fails(&store, port, "frozen").await;
    assert_only_sent_writes_are_unknown(&errors);
    // The header write was sent on a pooled connection and not answered;
    // the peer batch and the import before it sent their `BEGIN`.
    assert_eq!(
        errors[2].2.kind(),
        ErrorKind::OutcomeUnknown,
        "{}",
        errors[2].2
    );
    for (what, _, err) in &errors[..3] {
        assert!(
            err.to_string().contains("response timeout"),
            "{what}: {err}"
        );
    }
    // Opening a store while the server is frozen: the kernel accepts the
    // connection, the server never answers.
    let err = fails_in_time("open while frozen", port, builder(&server).open()).await;
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");

    server.thaw();
    // The same store works again; what failed `Unavailable` was not applied.
    check_after_outage(&store, &errors).await;
    // Writes acknowledged after the thaw are committed: none of them ran on
    // a connection an interrupted call left inside a transaction (its
    // `BEGIN` answered after the thaw). A kill would lose such a write.
    let written = write_stream(&store, "alice", 1000, 60, true).await;
    all_there_after_a_restart(&mut server, &store, "alice", &written).await;
}

/// A writer keeps writing through one store while the server is killed
/// and restarted, or frozen and thawed, at random moments. Every failure is
/// typed and in time; after each outage the same store writes again; after
/// a last kill and restart, every acknowledged write is there.
async fn random_outages(kind: Kind, test: &str) {
    let Some(binaries) = Binaries::or_skip(kind, test) else {
        return;
    };
    let mut rng = Rng::from_env("OUTAGE_SEED");
    let mut server = TestServer::start(kind, binaries, PASSWORD).await;
    let port = server.port;
    let store = open(&server).await;
    store.create("w").await.expect("create");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let acks = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn({
        let store = store.clone();
        let acks = Arc::clone(&acks);
        async move {
            let session = store.session("w").expect("name");
            let mut acknowledged: Vec<(i64, Instant)> = Vec::new();
            let mut failures: HashMap<ErrorKind, usize> = HashMap::new();
            let mut n: i64 = 0;
            while !*stop_rx.borrow() {
                n += 1;
                let started = Instant::now();
                match write_one(&session, n).await {
                    Ok(()) => {
                        acknowledged.push((n, Instant::now()));
                        acks.fetch_add(1, Ordering::Release);
                    }
                    Err(err) => {
                        check_failure(&format!("write {n}"), &err, started.elapsed(), port);
                        *failures.entry(err.kind()).or_default() += 1;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            (acknowledged, failures)
        }
    });

    let trials = 4;
    let mut back = Instant::now();
    for trial in 0..trials {
        tokio::time::sleep(rng.millis(100, 500)).await;
        if trial % 2 == 0 {
            // A call cut off by the kill runs again once on a new
            // connection, which it may get if the server is back in time.
            server.kill();
            tokio::time::sleep(rng.millis(50, 1500)).await;
            server.restart().await;
        } else {
            // Longer than the response timeout: the call in flight fails.
            server.freeze();
            tokio::time::sleep(TIMEOUT + rng.millis(200, 1500)).await;
            server.thaw();
        }
        back = Instant::now();
    }
    // Let the writer write a few more after the last outage (it must,
    // within a bound).
    let at_last = acks.load(Ordering::Acquire);
    let deadline = Instant::now() + Duration::from_secs(30);
    while acks.load(Ordering::Acquire) < at_last + 5
        && Instant::now() < deadline
        && !writer.is_finished()
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop_tx.send(true).expect("stop the writer");
    let (acknowledged, failures) = writer.await.expect("the writer");
    eprintln!(
        "{test}: {} writes acknowledged over {trials} outages; failures by kind: {failures:?}",
        acknowledged.len()
    );
    assert!(
        failures.values().sum::<usize>() > 0,
        "no write failed: the outages missed the writer"
    );
    assert!(
        acknowledged.iter().any(|(_, at)| *at > back),
        "the writer's store did not write again after the last outage"
    );
    let acknowledged: Vec<i64> = acknowledged.into_iter().map(|(n, _)| n).collect();
    // A last kill: what was acknowledged is on disk.
    all_there_after_a_restart(&mut server, &store, "w", &acknowledged).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_postgres_killed_server_fails_in_time_and_the_same_store_recovers() {
    killed_server(
        Kind::Postgres,
        "outage_postgres_killed_server_fails_in_time_and_the_same_store_recovers",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_postgres_frozen_server_fails_in_time_and_the_same_store_recovers() {
    frozen_server(
        Kind::Postgres,
        "outage_postgres_frozen_server_fails_in_time_and_the_same_store_recovers",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_postgres_random_kills_and_freezes_lose_no_acknowledged_write() {
    random_outages(
        Kind::Postgres,
        "outage_postgres_random_kills_and_freezes_lose_no_acknowledged_write",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_mysql_killed_server_fails_in_time_and_the_same_store_recovers() {
    killed_server(
        Kind::MariaDb,
        "outage_mysql_killed_server_fails_in_time_and_the_same_store_recovers",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_mysql_frozen_server_fails_in_time_and_the_same_store_recovers() {
    frozen_server(
        Kind::MariaDb,
        "outage_mysql_frozen_server_fails_in_time_and_the_same_store_recovers",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_mysql_random_kills_and_freezes_lose_no_acknowledged_write() {
    random_outages(
        Kind::MariaDb,
        "outage_mysql_random_kills_and_freezes_lose_no_acknowledged_write",
    )
    .await;
}
