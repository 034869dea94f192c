//! The store against raw rusqlite, interleaved: `cargo bench -p session-sqlite
//! --bench interleaved`.
//!
//! The criterion bench (`benches/sqlite.rs`) measures every store workload,
//! then every raw one, minutes apart; on a machine shared with other work
//! the load drifts in between and the ratios move with it. Here each round
//! runs a block of store calls and then the same block of raw rusqlite
//! statements, on two files with the same content, schema and durability
//! (each file gets its own checkpoints), and the ratio raw time / store time
//! is taken per round: the median of 25 rounds is printed, with the median
//! times. Same data shape as the shared workloads (10 000 peers, ids
//! 10000..=19999, username `user{id}`, phone `799900{id}`, lookups in the
//! shuffled order).

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use session_conformance::bench::{BATCH, FIRST_ID, PEERS, peer, shuffled_ids};
use session_core::{Durability, Peer, PeerId, Store, UpdateStateChange};
use session_sqlite::SqliteStore;

const ROUNDS: usize = 25;

const PEER_BY_ID: &str = "SELECT id, kind, hash, hash_is_min, usernames, phone, name, last_seen \
     FROM peers WHERE session = ?1 AND id = ?2";
const PEER_BY_USERNAME: &str = "SELECT p.id, p.kind, p.hash, p.hash_is_min, p.usernames, p.phone, \
     p.name, p.last_seen FROM peer_usernames u JOIN peers p ON p.session = u.session \
     AND p.id = u.peer_id WHERE u.session = ?1 AND u.username_lower = ?2";
const PEER_BY_PHONE: &str = "SELECT id, kind, hash, hash_is_min, usernames, phone, name, \
     last_seen FROM peers WHERE session = ?1 AND phone = ?2";
const UPSERT_PEER: &str = "INSERT INTO peers (session, id, kind, hash, hash_is_min, usernames, \
     phone, name, last_seen) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
     ON CONFLICT (session, id) DO UPDATE SET kind = excluded.kind, hash = excluded.hash, \
     hash_is_min = excluded.hash_is_min, usernames = excluded.usernames, phone = excluded.phone, \
     name = excluded.name, last_seen = excluded.last_seen";
const UPSERT_USERNAME: &str = "INSERT INTO peer_usernames (session, username_lower, peer_id) \
     VALUES (?1, ?2, ?3) \
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

fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Prints one line: median times (µs per operation) and the median ratio.
fn report(what: &str, store: Vec<f64>, raw: Vec<f64>) {
    let ratios: Vec<f64> = raw.iter().zip(&store).map(|(r, s)| r / s).collect();
    println!(
        "{what:<55} store {:>9.2} µs  raw {:>9.2} µs  ratio {:.2}",
        median(store),
        median(raw),
        median(ratios)
    );
}

fn connect(path: &Path, durability: Durability) -> Connection {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .expect("open");
    if durability != Durability::Immediate {
        conn.pragma_update(None, "synchronous", "NORMAL")
            .expect("synchronous");
    }
    conn
}

/// Times `n` runs of `f`, in µs per run.
fn per_op(n: usize, mut f: impl FnMut()) -> f64 {
    let started = Instant::now();
    for _ in 0..n {
        f();
    }
    started.elapsed().as_secs_f64() * 1e6 / n as f64
}

/// Writes the batch's rows and username entries; with `read_owners`,
/// first reads what the store reads to apply the ownership rules (the stored
/// row of each peer, the current owner of each username and of the phone:
/// the same index seeks, one statement each).
fn raw_upsert(conn: &mut Connection, session: i64, batch: &[Peer], read_owners: bool) {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .expect("begin");
    if read_owners {
        let mut by_id = tx.prepare_cached(PEER_BY_ID).expect("prepare");
        let mut by_name = tx.prepare_cached(PEER_BY_USERNAME).expect("prepare");
        let mut by_phone = tx.prepare_cached(PEER_BY_PHONE).expect("prepare");
        for p in batch {
            let row = by_id.query_row(params![session, p.id.marked()], read_row);
            black_box(row.optional().expect("row"));
            for key in p.username_keys() {
                let owner = by_name.query_row(params![session, key], read_row);
                black_box(owner.optional().expect("owner"));
            }
            if let Some(phone) = &p.phone {
                let owner = by_phone.query_row(params![session, phone], read_row);
                black_box(owner.optional().expect("owner"));
            }
        }
    }
    {
        let mut rows = tx.prepare_cached(UPSERT_PEER).expect("prepare");
        let mut names = tx.prepare_cached(UPSERT_USERNAME).expect("prepare");
        for p in batch {
            let usernames = p
                .usernames
                .as_ref()
                .map(|n| serde_json::to_string(n).expect("JSON"));
            rows.execute(params![
                session,
                p.id.marked(),
                p.kind.map(|k| k.code()),
                p.access_hash.map(|h| h.value),
                p.access_hash.map(|h| h.min),
                usernames,
                p.phone,
                p.name,
                p.last_seen
            ])
            .expect("row");
            for key in p.username_keys() {
                names
                    .execute(params![session, key, p.id.marked()])
                    .expect("username");
            }
        }
    }
    tx.commit().expect("commit");
}

/// The two ways to write a plan's rows, alternating: a cached statement
/// per row against one multi-row upsert (whose text depends on the batch
/// size), for 100 new rows and 100 existing ones, in a rolled-back
/// transaction (no fsync: only the statement work). Ratio = per-row loop
/// time / multi-row time, so above 1 means the multi-row upsert is faster.
fn row_writes(dir: &Path) {
    let path = dir.join("rows.sqlite");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(SqliteStore::open(&path)).expect("schema");
    let mut conn = connect(
        &path,
        Durability::WriteBehind {
            max_delay: Duration::from_millis(100),
        },
    );
    conn.execute(
        "INSERT INTO sessions (name, home_dc, test_mode, created_at_ms, updated_at_ms) \
         VALUES ('rows', 2, 0, 1, 1)",
        [],
    )
    .expect("session row");
    let sid = conn.last_insert_rowid();
    let existing: Vec<Peer> = (FIRST_ID..FIRST_ID + BATCH as i64).map(peer).collect();
    raw_upsert(&mut conn, sid, &existing, false);
    let fresh: Vec<Peer> = (FIRST_ID + PEERS..FIRST_ID + PEERS + BATCH as i64)
        .map(peer)
        .collect();
    let values: Vec<String> = (0..BATCH)
        .map(|r| {
            let params: Vec<String> = (1..=9).map(|c| format!("?{}", r * 9 + c)).collect();
            format!("({})", params.join(", "))
        })
        .collect();
    let multi_row = UPSERT_PEER.replace(
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        &format!("VALUES {}", values.join(", ")),
    );
    for (what, rows) in [("new", &fresh), ("existing", &existing)] {
        use rusqlite::types::Value;
        let encoded: Vec<Vec<Value>> = rows
            .iter()
            .map(|p| {
                vec![
                    Value::Integer(sid),
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
        let (mut per_row, mut multi) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            per_row.push(per_op(20, || {
                let tx = conn.transaction().expect("begin");
                {
                    let mut stmt = tx.prepare_cached(UPSERT_PEER).expect("prepare");
                    for row in &encoded {
                        stmt.execute(rusqlite::params_from_iter(row)).expect("row");
                    }
                }
                tx.rollback().expect("rollback");
            }));
            multi.push(per_op(20, || {
                let tx = conn.transaction().expect("begin");
                tx.prepare_cached(&multi_row)
                    .expect("prepare")
                    .execute(rusqlite::params_from_iter(encoded.iter().flatten()))
                    .expect("rows");
                tx.rollback().expect("rollback");
            }));
        }
        let ratios: Vec<f64> = per_row.iter().zip(&multi).map(|(l, m)| l / m).collect();
        println!(
            "write {BATCH} {what} rows: per-row statement {:>8.1} µs, multi-row upsert {:>8.1} µs, \
             ratio {:.2}",
            median(per_row),
            median(multi),
            median(ratios)
        );
    }
}

fn main() {
    let dir = tempfile::tempdir().expect("a temp directory");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let ids = shuffled_ids();
    let all: Vec<Peer> = (FIRST_ID..FIRST_ID + PEERS).map(peer).collect();
    for (label, durability) in [
        ("immediate", Durability::Immediate),
        (
            "write-behind",
            Durability::WriteBehind {
                max_delay: Duration::from_millis(100),
            },
        ),
    ] {
        let path = dir.path().join(format!("{label}.sqlite"));
        let open = || async {
            SqliteStore::builder(&path)
                .durability(durability)
                .open()
                .await
                .map(Store::new)
                .expect("open")
        };
        let store = rt.block_on(open());
        let session = rt.block_on(async {
            let session = store.open("s").await.expect("session");
            for batch in all.chunks(1_000) {
                session.cache_peers(batch).await.expect("load");
            }
            session
                .set_auth_key(2, Some(session_core::AuthKey::new([7; 256])))
                .await
                .expect("key");
            store.flush().await.expect("flush");
            session
        });
        // The raw file: a consistent copy of the store's.
        let raw_path = dir.path().join(format!("raw-{label}.sqlite"));
        Connection::open(&path)
            .expect("open")
            .execute("VACUUM INTO ?1", [raw_path.to_str().expect("UTF-8 path")])
            .expect("copy");
        let _: String = Connection::open(&raw_path)
            .expect("open")
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .expect("WAL");
        let mut conn = connect(&raw_path, durability);
        let sid: i64 = conn
            .query_row("SELECT id FROM sessions WHERE name = 's'", [], |r| r.get(0))
            .expect("session row");

        let mut at = 0usize;
        let ids = &ids;
        let mut next = move || {
            at = (at + 1) % ids.len();
            ids[at]
        };
        for (kind, sql) in [
            ("id", PEER_BY_ID),
            ("username", PEER_BY_USERNAME),
            ("phone", PEER_BY_PHONE),
        ] {
            let (mut ours, mut raw) = (Vec::new(), Vec::new());
            for _ in 0..ROUNDS {
                ours.push(per_op(2_000, || {
                    let id = next();
                    let found = match kind {
                        "id" => rt.block_on(session.peer(PeerId::user(id).expect("id"))),
                        "username" => rt.block_on(session.peer_by_username(&format!("user{id}"))),
                        _ => rt.block_on(session.peer_by_phone(&format!("799900{id}"))),
                    };
                    black_box(found.expect("lookup"));
                }));
                let mut stmt = conn.prepare_cached(sql).expect("prepare");
                raw.push(per_op(2_000, || {
                    let id = next();
                    let row = match kind {
                        "id" => stmt.query_row(params![sid, id], read_row),
                        "username" => stmt.query_row(params![sid, format!("user{id}")], read_row),
                        _ => stmt.query_row(params![sid, format!("799900{id}")], read_row),
                    };
                    black_box(row.expect("row"));
                }));
            }
            report(&format!("lookup by {kind}/{label}"), ours, raw);
        }

        let (mut ours, mut raw) = (Vec::new(), Vec::new());
        let mut pts = 0;
        let writes = if durability == Durability::Immediate {
            20
        } else {
            500
        };
        for _ in 0..ROUNDS {
            ours.push(per_op(writes, || {
                pts += 1;
                rt.block_on(session.set_update_state(UpdateStateChange::Primary {
                    pts,
                    date: 1_700_000_000,
                    seq: pts,
                }))
                .expect("write");
            }));
            let mut stmt = conn
                .prepare_cached("UPDATE sessions SET pts = ?2, date = ?3, seq = ?4 WHERE id = ?1")
                .expect("prepare");
            raw.push(per_op(writes, || {
                pts += 1;
                stmt.execute(params![sid, pts, 1_700_000_000, pts])
                    .expect("write");
            }));
        }
        report(&format!("update-state write/{label}"), ours, raw);

        let (mut ours, mut raw, mut raw_reading) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..8 {
            let name = format!("upsert-{round}");
            let batches = (PEERS as usize).div_ceil(BATCH);
            ours.push(rt.block_on(async {
                let target = store.open(&name).await.expect("session");
                let started = Instant::now();
                for batch in all.chunks(BATCH) {
                    target.cache_peers(batch).await.expect("batch");
                }
                let took = started.elapsed().as_secs_f64() * 1e6 / batches as f64;
                store.delete(&name).await.expect("delete");
                took
            }));
            for (read_owners, times) in [(false, &mut raw), (true, &mut raw_reading)] {
                conn.execute(
                    "INSERT INTO sessions (name, home_dc, test_mode, created_at_ms, \
                     updated_at_ms) VALUES (?1, 2, 0, 1, 1)",
                    [&name],
                )
                .expect("session row");
                let id = conn.last_insert_rowid();
                let started = Instant::now();
                for batch in all.chunks(BATCH) {
                    raw_upsert(&mut conn, id, batch, read_owners);
                }
                times.push(started.elapsed().as_secs_f64() * 1e6 / batches as f64);
                for table in ["peer_usernames", "peers", "sessions"] {
                    let key = if table == "sessions" { "id" } else { "session" };
                    conn.execute(&format!("DELETE FROM {table} WHERE {key} = ?1"), [id])
                        .expect("clean up");
                }
            }
        }
        report(
            &format!("upsert, per batch of {BATCH} new peers/{label}"),
            ours.clone(),
            raw,
        );
        report(
            &format!("  the same, raw reading the owners too/{label}"),
            ours,
            raw_reading,
        );
        drop(session);
        drop(store);
        drop(conn);

        let (mut ours, mut raw) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            ours.push(per_op(40, || {
                rt.block_on(async {
                    let store = open().await;
                    let session = store.session("s").expect("name");
                    black_box(session.home_auth_key().await.expect("key"));
                });
            }));
            raw.push(per_op(40, || {
                let conn = connect(&raw_path, durability);
                let key: Option<Vec<u8>> = conn
                    .query_row(HOME_KEY, ["s"], |r| r.get(0))
                    .optional()
                    .expect("key");
                black_box(key);
            }));
        }
        report(&format!("open + read the home key/{label}"), ours, raw);
    }
    row_writes(dir.path());
}
