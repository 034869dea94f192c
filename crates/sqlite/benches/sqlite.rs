//! Benchmarks, in one run: the shared workloads of
//! `session_conformance::bench` on `SqliteStore` (a file under each
//! durability policy, and the `MemoryStore` baseline), and the same work
//! done with rusqlite directly on a file with the same schema and indexes
//! and the same durability (group `sqlite-raw`), so the ratios compare like
//! with like.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use session_conformance::bench::{BATCH, BenchTarget, FIRST_ID, PEERS, peer, shuffled_ids};
use session_core::{Durability, Peer, Store};
use session_sqlite::SqliteStore;

fn write_behind() -> Durability {
    Durability::WriteBehind {
        max_delay: Duration::from_millis(100),
    }
}

fn target(label: &str, path: PathBuf, durability: Durability) -> BenchTarget {
    BenchTarget::new(label, move || {
        let path = path.clone();
        async move {
            let store = SqliteStore::builder(&path)
                .durability(durability)
                .open()
                .await?;
            Ok(Store::new(store))
        }
    })
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temp directory");
    session_conformance::bench::run(
        c,
        "sqlite",
        vec![
            BenchTarget::memory(),
            target(
                "immediate",
                dir.path().join("immediate.sqlite"),
                Durability::Immediate,
            ),
            target(
                "write-behind",
                dir.path().join("write-behind.sqlite"),
                write_behind(),
            ),
        ],
    );
    raw::run(c, dir.path());
    raw::row_writes(c, dir.path());
    if std::env::var_os("MTSESSION_BENCH_SCALE").is_some() {
        scale(c, dir.path());
    }
}

/// With `MTSESSION_BENCH_SCALE` set: lookups and opening on stores of 1 000,
/// 100 000 and 1 000 000 peers (write-behind), to show that their cost does
/// not grow with the cache (index seeks; opening reads no peer).
fn scale(c: &mut Criterion, dir: &Path) {
    let mut group = c.benchmark_group("sqlite-scale");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    for peers in [1_000i64, 100_000, 1_000_000] {
        let path = dir.join(format!("scale-{peers}.sqlite"));
        let open = || async {
            SqliteStore::builder(&path)
                .durability(write_behind())
                .open()
                .await
                .map(Store::new)
        };
        let store = runtime.block_on(open()).expect("open");
        let session = runtime.block_on(async {
            let session = store.open("scale").await.expect("session");
            let ids: Vec<i64> = (FIRST_ID..FIRST_ID + peers).collect();
            for chunk in ids.chunks(10_000) {
                let batch: Vec<Peer> = chunk.iter().map(|id| peer(*id)).collect();
                session.cache_peers(&batch).await.expect("load");
            }
            session
                .set_auth_key(2, Some(session_core::AuthKey::new([7; 256])))
                .await
                .expect("key");
            store.flush().await.expect("flush");
            session
        });
        let mut at = 0i64;
        let mut next = || {
            at = (at + 7_919) % peers;
            FIRST_ID + at
        };
        group.bench_function(format!("lookup by id/{peers} peers"), |b| {
            b.iter(|| {
                let id = session_core::PeerId::user(next()).expect("id");
                black_box(runtime.block_on(session.peer(id)).expect("lookup"));
            });
        });
        group.bench_function(format!("lookup by username/{peers} peers"), |b| {
            b.iter(|| {
                let name = format!("user{}", next());
                black_box(
                    runtime
                        .block_on(session.peer_by_username(&name))
                        .expect("lookup"),
                );
            });
        });
        group.bench_function(format!("lookup by phone/{peers} peers"), |b| {
            b.iter(|| {
                let phone = format!("799900{}", next());
                black_box(
                    runtime
                        .block_on(session.peer_by_phone(&phone))
                        .expect("lookup"),
                );
            });
        });
        drop(session);
        drop(store);
        group.bench_function(format!("open + read the home key/{peers} peers"), |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let store = open().await.expect("open");
                    let session = store.session("scale").expect("name");
                    black_box(session.home_auth_key().await.expect("key"));
                });
            });
        });
        let _ = std::fs::remove_file(&path);
    }
    group.finish();
}

/// The same workloads with rusqlite directly: prepared statements, the
/// session's row id known, rows read into owned values, no async runtime.
mod raw {
    use super::*;

    const PEER_BY_ID: &str = "SELECT id, kind, hash, hash_is_min, usernames, phone, name, \
         last_seen FROM peers WHERE session = ?1 AND id = ?2";
    const PEER_BY_USERNAME: &str = "SELECT p.id, p.kind, p.hash, p.hash_is_min, p.usernames, \
         p.phone, p.name, p.last_seen FROM peer_usernames u JOIN peers p \
         ON p.session = u.session AND p.id = u.peer_id \
         WHERE u.session = ?1 AND u.username_lower = ?2";
    const PEER_BY_PHONE: &str = "SELECT id, kind, hash, hash_is_min, usernames, phone, name, \
         last_seen FROM peers WHERE session = ?1 AND phone = ?2";
    const UPSERT_PEER: &str = "INSERT INTO peers (session, id, kind, hash, hash_is_min, \
         usernames, phone, name, last_seen) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
         ON CONFLICT (session, id) DO UPDATE SET kind = excluded.kind, hash = excluded.hash, \
         hash_is_min = excluded.hash_is_min, usernames = excluded.usernames, \
         phone = excluded.phone, name = excluded.name, last_seen = excluded.last_seen";
    const UPSERT_USERNAME: &str = "INSERT INTO peer_usernames (session, username_lower, \
         peer_id) VALUES (?1, ?2, ?3) \
         ON CONFLICT (session, username_lower) DO UPDATE SET peer_id = excluded.peer_id";
    const HOME_KEY: &str = "SELECT d.auth_key FROM sessions s JOIN dc_options d \
         ON d.session = s.id AND d.dc_id = s.home_dc WHERE s.name = ?1";

    type Row = (
        i64,
        Option<i64>,
        Option<i64>,
        Option<bool>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<i64>,
    );

    fn read_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
        Ok((
            row.get(0)?,
            row.get(1)?,
            row.get(2)?,
            row.get(3)?,
            row.get(4)?,
            row.get(5)?,
            row.get(6)?,
            row.get(7)?,
        ))
    }

    fn connect(path: &Path, durability: Durability) -> Connection {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .expect("open");
        conn.busy_timeout(Duration::from_secs(10))
            .expect("busy timeout");
        if durability != Durability::Immediate {
            conn.pragma_update(None, "synchronous", "NORMAL")
                .expect("synchronous");
        }
        conn
    }

    /// A session row (with its DC 2 and a key), returning its row id.
    fn session(conn: &Connection, name: &str) -> i64 {
        conn.execute(
            "INSERT INTO sessions (name, home_dc, test_mode, created_at_ms, updated_at_ms) \
             VALUES (?1, 2, 0, 1, 1)",
            [name],
        )
        .expect("session row");
        let id = conn.last_insert_rowid();
        conn.execute(
            "INSERT INTO dc_options (session, dc_id, ipv4, auth_key) VALUES (?1, 2, \
             '149.154.167.51:443', zeroblob(256))",
            [id],
        )
        .expect("dc row");
        id
    }

    fn upsert(conn: &mut Connection, session: i64, batch: &[Peer]) {
        upsert_reading_owners(conn, session, batch, false);
    }

    /// Writes the batch's rows and username entries; with `read_owners`,
    /// first reads what the store reads to apply its rules: the stored row
    /// of each peer and the current owner of each of its usernames and of its
    /// phone (the same index seeks, one statement each).
    fn upsert_reading_owners(
        conn: &mut Connection,
        session: i64,
        batch: &[Peer],
        read_owners: bool,
    ) {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .expect("begin");
        {
            let mut rows = tx.prepare_cached(UPSERT_PEER).expect("prepare");
            let mut names = tx.prepare_cached(UPSERT_USERNAME).expect("prepare");
            if read_owners {
                let mut by_id = tx.prepare_cached(PEER_BY_ID).expect("prepare");
                let mut by_name = tx.prepare_cached(PEER_BY_USERNAME).expect("prepare");
                let mut by_phone = tx.prepare_cached(PEER_BY_PHONE).expect("prepare");
                for p in batch {
                    black_box(
                        by_id
                            .query_row(params![session, p.id.marked()], read_row)
                            .optional()
                            .expect("row"),
                    );
                    for key in p.username_keys() {
                        black_box(
                            by_name
                                .query_row(params![session, key], read_row)
                                .optional()
                                .expect("owner"),
                        );
                    }
                    if let Some(phone) = &p.phone {
                        black_box(
                            by_phone
                                .query_row(params![session, phone], read_row)
                                .optional()
                                .expect("owner"),
                        );
                    }
                }
            }
            for p in batch {
                let usernames = p
                    .usernames
                    .as_ref()
                    .map(|names| serde_json::to_string(names).expect("JSON"));
                rows.execute(params![
                    session,
                    p.id.marked(),
                    p.kind.map(|k| k.code()),
                    p.access_hash.map(|h| h.value),
                    p.access_hash.map(|h| h.min),
                    usernames,
                    p.phone,
                    p.name,
                    p.last_seen,
                ])
                .expect("peer row");
                for key in p.username_keys() {
                    names
                        .execute(params![session, key, p.id.marked()])
                        .expect("username row");
                }
            }
        }
        tx.commit().expect("commit");
    }

    pub(super) fn run(c: &mut Criterion, dir: &Path) {
        let mut group = c.benchmark_group("sqlite-raw");
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3));
        let ids = shuffled_ids();
        let all: Vec<Peer> = (FIRST_ID..FIRST_ID + PEERS).map(peer).collect();
        for (label, durability) in [
            ("immediate", Durability::Immediate),
            ("write-behind", write_behind()),
        ] {
            // The file gets the store's schema (the same tables and indexes).
            let path = dir.join(format!("raw-{label}.sqlite"));
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime");
            runtime
                .block_on(SqliteStore::open(&path))
                .expect("create the schema");
            let mut conn = connect(&path, durability);

            let mut round = 0u64;
            group.bench_function(
                format!("upsert {PEERS} peers in batches of {BATCH}/{label}"),
                |b| {
                    b.iter_custom(|iters| {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            round += 1;
                            let id = session(&conn, &format!("bench-upsert-{round}"));
                            let started = Instant::now();
                            for batch in all.chunks(BATCH) {
                                upsert(&mut conn, id, batch);
                            }
                            total += started.elapsed();
                            for table in ["peer_usernames", "peers", "dc_options"] {
                                conn.execute(
                                    &format!("DELETE FROM {table} WHERE session = ?1"),
                                    [id],
                                )
                                .expect("clean up");
                            }
                            conn.execute("DELETE FROM sessions WHERE id = ?1", [id])
                                .expect("clean up");
                        }
                        total
                    });
                },
            );

            group.bench_function(
                format!("upsert {PEERS} peers in batches of {BATCH}, reading the owners/{label}"),
                |b| {
                    b.iter_custom(|iters| {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            round += 1;
                            let id = session(&conn, &format!("bench-upsert-{round}"));
                            let started = Instant::now();
                            for batch in all.chunks(BATCH) {
                                upsert_reading_owners(&mut conn, id, batch, true);
                            }
                            total += started.elapsed();
                            for table in ["peer_usernames", "peers", "dc_options"] {
                                conn.execute(
                                    &format!("DELETE FROM {table} WHERE session = ?1"),
                                    [id],
                                )
                                .expect("clean up");
                            }
                            conn.execute("DELETE FROM sessions WHERE id = ?1", [id])
                                .expect("clean up");
                        }
                        total
                    });
                },
            );

            let id = session(&conn, "bench-lookups");
            for batch in all.chunks(1_000) {
                upsert(&mut conn, id, batch);
            }
            let mut at = 0usize;
            let mut next = || {
                at = (at + 1) % ids.len();
                ids[at]
            };
            group.bench_function(format!("lookup by id/{label}"), |b| {
                let mut stmt = conn.prepare_cached(PEER_BY_ID).expect("prepare");
                b.iter(|| {
                    black_box(stmt.query_row(params![id, next()], read_row).expect("row"));
                });
            });
            group.bench_function(format!("lookup by username/{label}"), |b| {
                let mut stmt = conn.prepare_cached(PEER_BY_USERNAME).expect("prepare");
                b.iter(|| {
                    let name = format!("user{}", next());
                    black_box(stmt.query_row(params![id, name], read_row).expect("row"));
                });
            });
            group.bench_function(format!("lookup by phone/{label}"), |b| {
                let mut stmt = conn.prepare_cached(PEER_BY_PHONE).expect("prepare");
                b.iter(|| {
                    let phone = format!("799900{}", next());
                    black_box(stmt.query_row(params![id, phone], read_row).expect("row"));
                });
            });
            let mut pts = 0;
            group.bench_function(format!("update-state write/{label}"), |b| {
                let mut stmt = conn
                    .prepare_cached(
                        "UPDATE sessions SET pts = ?2, date = ?3, seq = ?4 WHERE id = ?1",
                    )
                    .expect("prepare");
                b.iter(|| {
                    pts += 1;
                    stmt.execute(params![id, pts, 1_700_000_000, pts])
                        .expect("write");
                });
            });
            group.bench_function(format!("set DC option/{label}"), |b| {
                b.iter(|| {
                    let tx = conn
                        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                        .expect("begin");
                    tx.prepare_cached(
                        "INSERT INTO dc_options (session, dc_id, ipv4, ipv6, auth_key) \
                         VALUES (?1, 4, NULL, NULL, NULL) ON CONFLICT (session, dc_id) DO UPDATE \
                         SET ipv4 = excluded.ipv4, ipv6 = excluded.ipv6, auth_key = excluded.auth_key",
                    )
                    .expect("prepare")
                    .execute([id])
                    .expect("dc");
                    // The time of the write, as the store records it.
                    tx.prepare_cached(
                        "UPDATE sessions SET updated_at_ms = max(updated_at_ms, ?2) WHERE id = ?1",
                    )
                    .expect("prepare")
                    .execute(params![id, session_core::lease::now_ms()])
                    .expect("touch");
                    tx.commit().expect("commit");
                });
            });
            drop(conn);

            group.bench_function(format!("open + read the home key/{label}"), |b| {
                b.iter(|| {
                    let conn = connect(&path, durability);
                    let key: Vec<u8> = conn
                        .query_row(HOME_KEY, ["bench-lookups"], |r| r.get(0))
                        .expect("key");
                    black_box(key);
                });
            });
        }
        group.finish();
    }

    /// How to write the rows of a plan: a cached statement executed per row,
    /// or one multi-row upsert per batch (the statement text then depends on
    /// the batch size). Inserts of 100 new rows and updates of 100 existing
    /// ones, in a transaction rolled back each time (no fsync: only the
    /// statement work is measured).
    pub(super) fn row_writes(c: &mut Criterion, dir: &Path) {
        let mut group = c.benchmark_group("sqlite-rows");
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3));
        let path = dir.join("rows.sqlite");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime
            .block_on(SqliteStore::open(&path))
            .expect("create the schema");
        let mut conn = connect(&path, write_behind());
        let id = session(&conn, "rows");
        let existing: Vec<Peer> = (FIRST_ID..FIRST_ID + BATCH as i64).map(peer).collect();
        upsert(&mut conn, id, &existing);
        let fresh: Vec<Peer> = (FIRST_ID + PEERS..FIRST_ID + PEERS + BATCH as i64)
            .map(peer)
            .collect();
        let multi_row = {
            let values: Vec<String> = (0..BATCH)
                .map(|r| {
                    let at = r * 9;
                    format!(
                        "(?{}, ?{}, ?{}, ?{}, ?{}, ?{}, ?{}, ?{}, ?{})",
                        at + 1,
                        at + 2,
                        at + 3,
                        at + 4,
                        at + 5,
                        at + 6,
                        at + 7,
                        at + 8,
                        at + 9
                    )
                })
                .collect();
            format!(
                "INSERT INTO peers (session, id, kind, hash, hash_is_min, usernames, phone, \
                 name, last_seen) VALUES {} ON CONFLICT (session, id) DO UPDATE SET \
                 kind = excluded.kind, hash = excluded.hash, hash_is_min = excluded.hash_is_min, \
                 usernames = excluded.usernames, phone = excluded.phone, name = excluded.name, \
                 last_seen = excluded.last_seen",
                values.join(", ")
            )
        };
        for (what, rows) in [("insert", &fresh), ("update", &existing)] {
            let encoded: Vec<Vec<rusqlite::types::Value>> = rows
                .iter()
                .map(|p| {
                    use rusqlite::types::Value;
                    vec![
                        Value::Integer(id),
                        Value::Integer(p.id.marked()),
                        p.kind
                            .map_or(Value::Null, |k| Value::Integer(i64::from(k.code()))),
                        p.access_hash
                            .map_or(Value::Null, |h| Value::Integer(h.value)),
                        p.access_hash
                            .map_or(Value::Null, |h| Value::Integer(i64::from(h.min))),
                        p.usernames.as_ref().map_or(Value::Null, |u| {
                            Value::Text(serde_json::to_string(u).expect("JSON"))
                        }),
                        p.phone.clone().map_or(Value::Null, Value::Text),
                        p.name.clone().map_or(Value::Null, Value::Text),
                        p.last_seen.map_or(Value::Null, Value::Integer),
                    ]
                })
                .collect();
            group.bench_function(
                format!("{what} {BATCH} rows: a cached statement per row"),
                |b| {
                    b.iter(|| {
                        let tx = conn.transaction().expect("begin");
                        {
                            let mut stmt = tx.prepare_cached(UPSERT_PEER).expect("prepare");
                            for row in &encoded {
                                stmt.execute(rusqlite::params_from_iter(row)).expect("row");
                            }
                        }
                        tx.rollback().expect("rollback");
                    });
                },
            );
            group.bench_function(format!("{what} {BATCH} rows: one multi-row upsert"), |b| {
                b.iter(|| {
                    let tx = conn.transaction().expect("begin");
                    tx.prepare_cached(&multi_row)
                        .expect("prepare")
                        .execute(rusqlite::params_from_iter(encoded.iter().flatten()))
                        .expect("rows");
                    tx.rollback().expect("rollback");
                });
            });
        }
        group.finish();
    }
}

criterion_group!(sqlite, benches);
criterion_main!(sqlite);
