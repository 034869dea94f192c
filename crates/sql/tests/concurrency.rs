//! Concurrency tests with several OS processes: two processes creating one
//! store at the same instant, two create-only imports racing (exactly one
//! wins), on `sql+sqlite:` files and on the PostgreSQL and MySQL test
//! servers; and on SQLite, a lock held by another process past the busy
//! timeout (a clear `Busy` after the timeout in total, not once per retry).

mod common;

#[cfg(feature = "sqlite")]
use std::time::{Duration, Instant};

use common::child::{self, Spawn, numbers, outcomes, setting, wait_until_ms};
#[cfg(feature = "sqlite")]
use session_core::UpdateStateChange;
use session_core::{ErrorKind, Peer, PeerId, SessionData, Store};
use session_sql::{Engine, SqlStore};

/// Time between two races.
const RACE_STEP_MS: u64 = 40;

fn races(engine: Engine) -> u64 {
    match engine {
        Engine::Sqlite => 100,
        // Creating nine tables on a server takes a while.
        _ => 10,
    }
}

fn engine_named(name: &str) -> Engine {
    match name {
        "sqlite" => Engine::Sqlite,
        "postgres" => Engine::Postgres,
        _ => Engine::MySql,
    }
}

/// The URL and table prefix of race `k`: a file of its own on SQLite, a
/// prefix of its own on a server.
fn race_target(engine: Engine, base: &str, k: u64) -> (String, String) {
    match engine {
        Engine::Sqlite => (
            format!("sql+sqlite:{base}/race-{k}.db"),
            session_sql::DEFAULT_TABLE_PREFIX.to_owned(),
        ),
        _ => (common::server_url(engine), format!("{base}{k}_")),
    }
}

#[test]
#[ignore = "child process of the concurrency tests, started by them"]
fn child_process() {
    let Some(role) = child::role() else {
        panic!("started by a concurrency test, which sets the role");
    };
    match role.as_str() {
        "create" => create_many(),
        "import" => import_many(),
        "hold-lock" => hold_the_write_lock(),
        other => panic!("unknown role {other}"),
    }
}

fn race_settings() -> (Engine, String, String, u64, u64) {
    (
        engine_named(&setting("ENGINE")),
        setting("BASE"),
        setting("ME"),
        setting("START_MS").parse().expect("a time"),
        setting("COUNT").parse().expect("a count"),
    )
}

/// Opens (creating) the store of race K at instant K and writes a session of its own.
fn create_many() {
    let (engine, base, me, start, count) = race_settings();
    let runtime = child::runtime();
    for k in 0..count {
        wait_until_ms(start + k * RACE_STEP_MS);
        let (url, prefix) = race_target(engine, &base, k);
        let result = runtime.block_on(async {
            let store = Store::new(SqlStore::builder(&url).table_prefix(prefix).open().await?);
            store.create(&format!("by-{me}")).await
        });
        match result {
            Ok(()) => println!("ok {k}"),
            Err(e) => println!("err {k} {e}"),
        }
    }
}

fn data_of(me: &str) -> SessionData {
    let mut data = SessionData::default();
    data.update_state.pts = if me == "a" { 111 } else { 222 };
    data.peers =
        vec![Peer::new(PeerId::user(if me == "a" { 1 } else { 2 }).expect("id")).with_username(me)];
    data
}

/// At instant K, a create-only import of session `sK`.
fn import_many() {
    let (engine, base, me, start, count) = race_settings();
    let (url, prefix) = race_target(engine, &base, 0);
    let runtime = child::runtime();
    let store = runtime.block_on(async {
        Store::new(
            SqlStore::builder(&url)
                .table_prefix(prefix)
                .open()
                .await
                .expect("open the store"),
        )
    });
    let data = data_of(&me);
    for k in 0..count {
        wait_until_ms(start + k * RACE_STEP_MS);
        match runtime.block_on(store.import_new(&format!("s{k}"), &data)) {
            Ok(()) => println!("won {k}"),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => println!("lost {k}"),
            Err(e) => println!("err {k} {e}"),
        }
    }
}

/// Takes the write lock with a plain connection and holds it until stdin closes.
fn hold_the_write_lock() {
    let conn = rusqlite::Connection::open(setting("DB")).expect("open");
    conn.execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    println!("locked");
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut std::io::stdin(), &mut rest);
    conn.execute_batch("ROLLBACK").expect("release");
}

/// A temporary directory (SQLite) or a unique prefix (servers) for races.
fn race_base(engine: Engine, dir: &tempfile::TempDir) -> String {
    match engine {
        Engine::Sqlite => dir.path().display().to_string(),
        _ => common::unique_prefix("race"),
    }
}

async fn drop_race_tables(engine: Engine, base: &str, count: u64) {
    if engine == Engine::Sqlite {
        return;
    }
    for k in 0..count {
        let (url, prefix) = race_target(engine, base, k);
        SqlStore::builder(&url)
            .table_prefix(prefix)
            .drop_tables()
            .await
            .expect("drop the race tables");
    }
}

/// Issue 8, defect 3 (on session-sql): `RACES` stores are each created by
/// two processes at the same instant; every open succeeds and both sessions
/// are stored.
fn two_processes_create_one_store(engine: Engine) {
    let dir = tempfile::tempdir().expect("temp dir");
    let base = race_base(engine, &dir);
    let count = races(engine);
    let start = child::now_ms() + 2_000;
    let children: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|me| {
            Spawn::role("create")
                .setting("ENGINE", engine.name())
                .setting("BASE", &base)
                .setting("ME", me)
                .setting("START_MS", start)
                .setting("COUNT", count)
                .start(format!("creator {me}"))
        })
        .collect();
    let mut failures = Vec::new();
    for child in children {
        let name = child.name.clone();
        let lines = child.wait_success();
        let results = outcomes(&lines);
        failures.extend(
            results
                .iter()
                .filter(|(_, r)| *r != "ok")
                .map(|(k, r)| format!("{name} race {k}: {r}")),
        );
        if failures.is_empty() {
            assert_eq!(numbers(&lines, "ok").len() as u64, count, "{name}");
        }
    }
    let runtime = child::runtime();
    runtime.block_on(async {
        if failures.is_empty() {
            for k in 0..count {
                let (url, prefix) = race_target(engine, &base, k);
                let store = Store::new(
                    SqlStore::builder(&url)
                        .table_prefix(prefix)
                        .mode(session_core::OpenMode::ReadOnly)
                        .open()
                        .await
                        .expect("a store"),
                );
                assert_eq!(
                    store.list().await.expect("list"),
                    ["by-a", "by-b"],
                    "race {k}"
                );
            }
        }
        drop_race_tables(engine, &base, count).await;
    });
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Issue 8, defect 2 (on session-sql): of two create-only imports of one
/// session in two processes, exactly one wins each race, the other gets
/// `AlreadyExists`, and the stored session is the winner's.
fn create_only_imports_in_two_processes_one_wins(engine: Engine) {
    let dir = tempfile::tempdir().expect("temp dir");
    let base = race_base(engine, &dir);
    let (url, prefix) = race_target(engine, &base, 0);
    let runtime = child::runtime();
    let store = runtime.block_on(async {
        Store::new(
            SqlStore::builder(&url)
                .table_prefix(prefix)
                .open()
                .await
                .expect("create the store"),
        )
    });
    let count = races(engine) * 2;
    let start = child::now_ms() + 2_000;
    let children: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|me| {
            Spawn::role("import")
                .setting("ENGINE", engine.name())
                .setting("BASE", &base)
                .setting("ME", me)
                .setting("START_MS", start)
                .setting("COUNT", count)
                .start(format!("importer {me}"))
        })
        .collect();
    let results: Vec<_> = children
        .into_iter()
        .map(|child| outcomes(&child.wait_success()))
        .collect();
    let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for k in 0..i64::try_from(count).expect("small") {
            let (a, b) = (&results[0][&k], &results[1][&k]);
            let winner = match (a.as_str(), b.as_str()) {
                ("won", "lost") => "a",
                ("lost", "won") => "b",
                other => panic!("race {k}: {other:?}, expected exactly one winner"),
            };
            let mut expected = data_of(winner);
            expected.canonicalize();
            let stored = runtime
                .block_on(store.export(&format!("s{k}")))
                .expect("export");
            assert_eq!(stored, expected, "race {k}: the winner's session is stored");
        }
    }));
    runtime.block_on(drop_race_tables(engine, &base, 1));
    if let Err(panic) = checked {
        std::panic::resume_unwind(panic);
    }
}

#[cfg(feature = "sqlite")]
#[test]
fn concurrency_sqlite_two_processes_create_one_store() {
    two_processes_create_one_store(Engine::Sqlite);
}

#[cfg(feature = "sqlite")]
#[test]
fn concurrency_sqlite_create_only_imports_in_two_processes_one_wins() {
    create_only_imports_in_two_processes_one_wins(Engine::Sqlite);
}

#[cfg(feature = "postgres")]
#[test]
fn concurrency_postgres_two_processes_create_one_store() {
    two_processes_create_one_store(Engine::Postgres);
}

#[cfg(feature = "postgres")]
#[test]
fn concurrency_postgres_create_only_imports_in_two_processes_one_wins() {
    create_only_imports_in_two_processes_one_wins(Engine::Postgres);
}

#[cfg(feature = "mysql")]
#[test]
fn concurrency_mysql_two_processes_create_one_store() {
    two_processes_create_one_store(Engine::MySql);
}

#[cfg(feature = "mysql")]
#[test]
fn concurrency_mysql_create_only_imports_in_two_processes_one_wins() {
    create_only_imports_in_two_processes_one_wins(Engine::MySql);
}

/// Issue 8, defects 7 and 13 (on session-sql): a write blocked by another
/// process's lock waited about nine times its busy timeout (eight retries,
/// each a full timeout), then failed with a bare "database is locked". Now
/// it waits the busy timeout in total and fails with `Busy`, naming the
/// file, the timeout and that another process holds the lock; reads go on
/// beside the lock (WAL).
#[cfg(feature = "sqlite")]
#[test]
fn concurrency_sqlite_lock_held_by_another_process_is_busy() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("locked.db");
    let runtime = child::runtime();
    let timeout = Duration::from_millis(1_000);
    let store = runtime.block_on(async {
        let store = Store::new(
            SqlStore::builder(&format!("sql+sqlite:{}", db.display()))
                .busy_timeout(timeout)
                .open()
                .await
                .expect("open"),
        );
        store.create("s").await.expect("create");
        store
    });
    let mut holder = Spawn::role("hold-lock")
        .setting("DB", db.display())
        .with_stdin()
        .start("lock holder");
    holder.wait_for_line("locked", Duration::from_secs(60));
    assert!(runtime.block_on(store.exists("s")).expect("a read"));
    let writes: [(&str, Box<dyn Fn() -> _>); 2] = [
        (
            "a one-statement write",
            Box::new(|| {
                runtime
                    .block_on(store.set_update_state("s", &UpdateStateChange::Secondary { qts: 1 }))
            }),
        ),
        (
            "a transaction",
            Box::new(|| {
                runtime.block_on(
                    store.cache_peers("s", &[Peer::new(PeerId::user(1).expect("id")).with_hash(1)]),
                )
            }),
        ),
    ];
    for (what, write) in &writes {
        let started = Instant::now();
        let err = write().expect_err("the lock is held");
        let waited = started.elapsed();
        assert_eq!(err.kind(), ErrorKind::Busy, "{what}: {err:?}");
        let text = err.to_string();
        assert!(text.contains(&db.display().to_string()), "{text}");
        assert!(text.contains("another"), "{text}");
        assert!(text.contains("1.0 s"), "names the timeout: {text}");
        assert!(waited >= timeout, "{what} gave up after {waited:?}");
        assert!(
            waited < timeout * 2,
            "{what} waited {waited:?}, more than the {timeout:?} timeout allows"
        );
        assert!(
            std::error::Error::source(&err).is_some(),
            "keeps its source"
        );
    }
    drop(holder.stdin());
    holder.wait_success();
    runtime
        .block_on(store.set_update_state("s", &UpdateStateChange::Secondary { qts: 2 }))
        .expect("the lock is free again");
    assert_eq!(
        runtime.block_on(store.update_state("s")).expect("read").qts,
        2
    );
}
