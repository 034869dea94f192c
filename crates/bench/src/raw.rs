//! The raw engines doing the same work as the stores: the same rows, keys and
//! indexes, the same durability, each engine's own client driven directly.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use sled::Transactional as _;

use crate::Config;
use crate::report::{Measure, RAW_READS};
use crate::workload::{
    BATCH, FIRST_ID, LOOKUP_ID, LOOKUP_PHONE, LOOKUP_USERNAME, OPEN, OPENS, Pass, SERVER_OPENS,
    STATE, STATE_WRITES, UPSERT_EXISTING, UPSERT_NEW, WRITE_BEHIND_DELAY, err, measure,
    measure_sync, rate, shuffled,
};

/// The row of one peer as the raw engines store it.
struct Row {
    id: i64,
    hash: i64,
    username: String,
    phone: String,
    name: String,
}

fn row(id: i64) -> Row {
    Row {
        id,
        hash: id.wrapping_mul(0x9E37_79B9),
        username: format!("user{id}"),
        phone: format!("799900{id}"),
        name: format!("Peer number {id}"),
    }
}

fn rows(n: i64) -> Vec<Row> {
    (FIRST_ID..FIRST_ID + n).map(row).collect()
}

/// The value the key-value engines store for a peer.
fn encoded(r: &Row) -> String {
    format!(
        "{{\"id\":{},\"kind\":1,\"hash\":{},\"usernames\":[\"{}\"],\"phone\":\"{}\",\"name\":\"{}\"}}",
        r.id, r.hash, r.username, r.phone, r.name
    )
}

/// A peer decoded from [`encoded`] into owned fields: what a lookup on a
/// key-value engine must do with the value to return a peer, as the store
/// does (the raw SQLite lookups likewise read every column into owned
/// values).
#[derive(Debug, serde::Deserialize)]
#[allow(dead_code)] // read only through `black_box`
struct Decoded {
    id: i64,
    kind: i32,
    hash: i64,
    usernames: Vec<String>,
    phone: String,
    name: String,
}

fn decoded(value: &[u8]) -> Result<Decoded, String> {
    serde_json::from_slice(value).map_err(err)
}

/// How a raw floor of the batch-upsert workloads writes a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Floor {
    /// The rows and index entries written blindly, nothing read first.
    Blind,
    /// The reads that a merging upsert cannot skip, then the same writes, in
    /// one atomic unit per batch: the stored rows of the batch's ids and the
    /// current owners of its usernames and phones (a username or phone moves
    /// from its owner to the new peer, and fields the update does not know
    /// keep their stored values), read in as few round trips as the engine
    /// allows.
    Reads,
}

impl Floor {
    /// The engine name of its measures.
    fn engine(self) -> &'static str {
        match self {
            Floor::Blind => "raw",
            Floor::Reads => RAW_READS,
        }
    }
}

/// The two batch-upsert workloads on both floors, each workload on the floor
/// with reads right after the blind one, on the same data. First session 1
/// is given every peer (written blindly in batches of 1 000) and `filled`
/// runs (the SQL engines' `ANALYZE`: the floor with reads must not be planned
/// on tables without statistics, as the store is not); then new peers go
/// into session 2 (emptied by `clear` before each run), and the same peers
/// again into session 1.
async fn upsert_workloads(
    config: &Config,
    label: &str,
    all: &[Row],
    clear: impl AsyncFn() -> Result<(), String>,
    filled: impl AsyncFnOnce() -> Result<(), String>,
    upsert: impl AsyncFn(i64, &[Row], Floor) -> Result<(), String>,
) -> Result<Vec<Measure>, String> {
    const FLOORS: [Floor; 2] = [Floor::Blind, Floor::Reads];
    let timed = async |session: i64, floor: Floor| -> Result<Pass, String> {
        let started = Instant::now();
        for batch in all.chunks(BATCH) {
            upsert(session, batch, floor).await?;
        }
        Ok(Pass::since(all.len(), started))
    };
    for batch in all.chunks(1_000) {
        upsert(1, batch, Floor::Blind).await?;
    }
    filled().await?;
    let mut out = Vec::new();
    for floor in FLOORS {
        let runs = measure(config.repeat, || {
            let (clear, timed) = (&clear, &timed);
            async move {
                clear().await?;
                timed(2, floor).await
            }
        })
        .await?;
        out.push(Measure::new(label, UPSERT_NEW, floor.engine(), runs));
    }
    for floor in FLOORS {
        let runs = measure(config.repeat, || timed(1, floor)).await?;
        out.push(Measure::new(label, UPSERT_EXISTING, floor.engine(), runs));
    }
    Ok(out)
}

/// The peer columns the SQL engines' lookups and reads return.
const COLUMNS: &str =
    "p.id, p.kind, p.hash, p.hash_is_min, p.usernames, p.phone, p.name, p.last_seen";

/// A peer row as rusqlite hands it over, every column of [`COLUMNS`] read
/// into an owned value: what a caller of the raw engine needs to use the
/// peer, and what the store turns into a `Peer`.
type SqlitePeer = (
    i64,
    Option<i64>,
    Option<i64>,
    Option<bool>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
);

/// Reads a row of [`COLUMNS`].
fn sqlite_peer(r: &rusqlite::Row<'_>) -> rusqlite::Result<SqlitePeer> {
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

/// The one statement of the SQL `raw-reads` floor: the stored rows of the
/// batch's ids, then the ids owning its usernames and its phones (the other
/// columns NULL), each an indexed lookup. `session` is the session's
/// placeholder; each lookup is given as its index hint and its predicate on
/// the list (of ids, usernames, phones).
fn sql_reads(session: &str, lookups: [(&str, &str); 3]) -> String {
    const NULLS: &str = "NULL, NULL, NULL, NULL, NULL, NULL, NULL";
    let [(id_hint, ids), (name_hint, names), (phone_hint, phones)] = lookups;
    format!(
        "SELECT {COLUMNS} FROM rawbench_peers p{id_hint} \
         WHERE p.session = {session} AND p.id {ids} \
         UNION ALL SELECT u.peer_id, {NULLS} FROM rawbench_usernames u{name_hint} \
         WHERE u.session = {session} AND u.username {names} \
         UNION ALL SELECT p.id, {NULLS} FROM rawbench_peers p{phone_hint} \
         WHERE p.session = {session} AND p.phone {phones}"
    )
}

/// Runs `statement` on each peer table, `{}` standing for its name.
async fn sql_each_table<DB: sqlx::Database>(
    pool: &sqlx::Pool<DB>,
    statement: &str,
) -> Result<(), String>
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
{
    for table in ["rawbench_peers", "rawbench_usernames"] {
        let sql = statement.replace("{}", table);
        sqlx::query::<DB>(sqlx::AssertSqlSafe(sql))
            .execute(pool)
            .await
            .map_err(err)?;
    }
    Ok(())
}

/// Decodes what [`sql_reads`] answered as a merge would read it: each row's
/// id and its text columns.
fn decode_reads<R: sqlx::Row>(rows: &[R]) -> Result<(), String>
where
    usize: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    for row in rows {
        let id: i64 = row.try_get(0).map_err(err)?;
        let mut texts: [Option<String>; 3] = Default::default();
        for (text, column) in texts.iter_mut().zip(4..) {
            *text = row.try_get(column).map_err(err)?;
        }
        std::hint::black_box((id, texts));
    }
    Ok(())
}

const SQLITE_SCHEMA: &str = "
PRAGMA journal_mode = WAL;
CREATE TABLE IF NOT EXISTS sessions (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
    home_dc INTEGER NOT NULL, pts INTEGER NOT NULL DEFAULT 0, qts INTEGER NOT NULL DEFAULT 0,
    date INTEGER NOT NULL DEFAULT 0, seq INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS dc_options (session INTEGER NOT NULL, dc_id INTEGER NOT NULL,
    ipv4 TEXT, ipv6 TEXT, auth_key BLOB, PRIMARY KEY (session, dc_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS peers (session INTEGER NOT NULL, id INTEGER NOT NULL, kind INTEGER,
    hash INTEGER, hash_is_min INTEGER, usernames TEXT, phone TEXT, name TEXT, last_seen INTEGER,
    PRIMARY KEY (session, id)) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS peers_by_phone ON peers (session, phone) WHERE phone IS NOT NULL;
CREATE TABLE IF NOT EXISTS peer_usernames (session INTEGER NOT NULL, username_lower TEXT NOT NULL,
    peer_id INTEGER NOT NULL, PRIMARY KEY (session, username_lower)) WITHOUT ROWID;
";

/// The reads of the SQLite `raw-reads` floor, as [`sql_reads`] gives them
/// for the servers, on the lists of a batch bound as arrays (`rarray`, as
/// the store binds them): `?1` session, `?2` ids, `?3` usernames, `?4` phones.
const SQLITE_READS: &str = "SELECT p.id, p.kind, p.hash, p.hash_is_min, p.usernames, p.phone, \
     p.name, p.last_seen FROM peers p WHERE p.session = ?1 AND p.id IN rarray(?2) \
     UNION ALL SELECT u.peer_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM peer_usernames u \
     WHERE u.session = ?1 AND u.username_lower IN rarray(?3) \
     UNION ALL SELECT p.id, NULL, NULL, NULL, NULL, NULL, NULL, NULL \
     FROM peers p INDEXED BY peers_by_phone \
     WHERE p.session = ?1 AND p.phone IS NOT NULL AND p.phone IN rarray(?4)";

fn sqlite_upsert(
    conn: &rusqlite::Connection,
    session: i64,
    batch: &[Row],
    floor: Floor,
) -> rusqlite::Result<()> {
    use rusqlite::types::Value;
    use std::rc::Rc;
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    {
        if floor == Floor::Reads {
            let list = |f: &dyn Fn(&Row) -> Value| Rc::new(batch.iter().map(f).collect::<Vec<_>>());
            let mut reads = tx.prepare_cached(SQLITE_READS)?;
            let mut rows = reads.query(rusqlite::params![
                session,
                list(&|r| Value::Integer(r.id)),
                list(&|r| Value::Text(r.username.clone())),
                list(&|r| Value::Text(r.phone.clone())),
            ])?;
            while let Some(row) = rows.next()? {
                std::hint::black_box(sqlite_peer(row)?);
            }
        }
        let mut peer = tx.prepare_cached(
            "INSERT INTO peers (session, id, kind, hash, hash_is_min, usernames, phone, name) \
             VALUES (?1, ?2, 1, ?3, 0, ?4, ?5, ?6) ON CONFLICT (session, id) DO UPDATE SET \
             kind = excluded.kind, hash = excluded.hash, hash_is_min = excluded.hash_is_min, \
             usernames = excluded.usernames, phone = excluded.phone, name = excluded.name",
        )?;
        let mut name = tx.prepare_cached(
            "INSERT INTO peer_usernames (session, username_lower, peer_id) VALUES (?1, ?2, ?3) \
             ON CONFLICT (session, username_lower) DO UPDATE SET peer_id = excluded.peer_id",
        )?;
        for r in batch {
            let list = format!("[\"{}\"]", r.username);
            peer.execute(rusqlite::params![
                session, r.id, r.hash, list, r.phone, r.name
            ])?;
            name.execute(rusqlite::params![session, r.username, r.id])?;
        }
    }
    tx.commit()
}

fn sqlite_open(path: &Path, synchronous: &str) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    rusqlite::vtab::array::load_module(&conn)?;
    conn.execute_batch(SQLITE_SCHEMA)?;
    conn.pragma_update(None, "synchronous", synchronous)?;
    Ok(conn)
}

/// rusqlite with the schema shape of session-sqlite, WAL, `synchronous=FULL`
/// for durable writes (and `NORMAL` for the write-behind row).
pub(crate) async fn sqlite(config: &Config, dir: &Path) -> Result<Vec<Measure>, String> {
    const LABEL: &str = "sqlite";
    let path = dir.join("raw.sqlite");
    let conn = sqlite_open(&path, "FULL").map_err(err)?;
    conn.execute(
        "INSERT INTO sessions (id, name, home_dc) VALUES (1, 'lookups', 2), (2, 'upserts', 2)",
        [],
    )
    .map_err(err)?;
    conn.execute(
        "INSERT INTO dc_options (session, dc_id, ipv4, auth_key) VALUES (1, 2, '149.154.167.51:443', ?1)",
        [vec![7u8; 256]],
    )
    .map_err(err)?;
    let all = rows(config.peers);
    let mut out = upsert_workloads(
        config,
        LABEL,
        &all,
        async || {
            conn.execute_batch(
                "DELETE FROM peers WHERE session = 2; DELETE FROM peer_usernames WHERE session = 2",
            )
            .map_err(err)
        },
        async || Ok(()),
        async |session, batch: &[Row], floor| {
            sqlite_upsert(&conn, session, batch, floor).map_err(err)
        },
    )
    .await?;

    let ids = shuffled(config.peers);
    let lookup = |sql: &str, key: &dyn Fn(i64) -> rusqlite::types::Value| {
        measure_sync(config.repeat, || {
            let started = Instant::now();
            let mut stmt = conn.prepare_cached(sql).map_err(err)?;
            for id in &ids {
                let found = stmt.query_row([key(*id)], sqlite_peer).map_err(err)?;
                std::hint::black_box(found);
            }
            Ok(Pass::since(ids.len(), started))
        })
    };
    let runs = lookup(
        &format!("SELECT {COLUMNS} FROM peers p WHERE p.session = 1 AND p.id = ?1"),
        &|id| rusqlite::types::Value::Integer(id),
    )?;
    out.push(Measure::new(LABEL, LOOKUP_ID, "raw", runs));
    let runs = lookup(
        &format!(
            "SELECT {COLUMNS} FROM peer_usernames u JOIN peers p ON p.session = u.session \
             AND p.id = u.peer_id WHERE u.session = 1 AND u.username_lower = ?1"
        ),
        &|id| rusqlite::types::Value::Text(format!("user{id}")),
    )?;
    out.push(Measure::new(LABEL, LOOKUP_USERNAME, "raw", runs));
    let runs = lookup(
        &format!("SELECT {COLUMNS} FROM peers p WHERE p.session = 1 AND p.phone = ?1"),
        &|id| rusqlite::types::Value::Text(format!("799900{id}")),
    )?;
    out.push(Measure::new(LABEL, LOOKUP_PHONE, "raw", runs));

    for (label, synchronous) in [("sqlite", "FULL"), ("sqlite write-behind", "NORMAL")] {
        conn.pragma_update(None, "synchronous", synchronous)
            .map_err(err)?;
        let mut pts = 0;
        let runs = measure_sync(config.repeat, || {
            let started = Instant::now();
            let mut stmt = conn
                .prepare_cached("UPDATE sessions SET pts = ?1, date = ?2, seq = ?1 WHERE id = 1")
                .map_err(err)?;
            // Write-behind as the store runs it (`WRITE_BEHIND_DELAY`): no
            // write waits for the disk, but one commit with
            // `synchronous=FULL` syncs the log at least that often and at
            // the end (the store's flush, which its runs end with).
            let barrier = |stmt: &mut rusqlite::CachedStatement<'_>, pts: i32| {
                conn.pragma_update(None, "synchronous", "FULL")?;
                stmt.execute(rusqlite::params![pts, 1_700_000_000])?;
                conn.pragma_update(None, "synchronous", "NORMAL")
            };
            let mut synced = Instant::now();
            for _ in 0..STATE_WRITES {
                pts += 1;
                stmt.execute(rusqlite::params![pts, 1_700_000_000])
                    .map_err(err)?;
                if synchronous == "NORMAL" && synced.elapsed() >= WRITE_BEHIND_DELAY {
                    barrier(&mut stmt, pts).map_err(err)?;
                    synced = Instant::now();
                }
            }
            if synchronous == "NORMAL" {
                barrier(&mut stmt, pts).map_err(err)?;
            }
            Ok(Pass::since(STATE_WRITES, started))
        })?;
        out.push(Measure::new(label, STATE, "raw", runs));
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(err)?;

    // The open workload: a store holding `open_peers` peers.
    let big = dir.join("raw-open.sqlite");
    {
        let conn = sqlite_open(&big, "OFF").map_err(err)?;
        conn.execute(
            "INSERT INTO sessions (id, name, home_dc) VALUES (1, 'open', 2)",
            [],
        )
        .map_err(err)?;
        conn.execute(
            "INSERT INTO dc_options (session, dc_id, ipv4, auth_key) VALUES (1, 2, '149.154.167.51:443', ?1)",
            [vec![7u8; 256]],
        )
        .map_err(err)?;
        let many = rows(config.open_peers);
        for batch in many.chunks(5_000) {
            sqlite_upsert(&conn, 1, batch, Floor::Blind).map_err(err)?;
        }
    }
    let opens = |path: &Path| {
        measure_sync(config.repeat, || {
            let started = Instant::now();
            for _ in 0..OPENS {
                let conn = rusqlite::Connection::open(path).map_err(err)?;
                let key: Vec<u8> = conn
                    .query_row(
                        "SELECT d.auth_key FROM sessions s JOIN dc_options d ON d.session = s.id \
                         AND d.dc_id = s.home_dc WHERE s.name = 'open'",
                        [],
                        |r| r.get(0),
                    )
                    .map_err(err)?;
                std::hint::black_box(key);
            }
            Ok(Pass::since(OPENS, started))
        })
    };
    let runs = opens(&big)?;
    // The same file with a rollback journal, as grammers-session and
    // Telethon keep theirs: opening it creates no `-wal` and `-shm` and
    // closing it checkpoints nothing, which is the whole difference between
    // the two journals on this workload.
    let rollback = dir.join("raw-open-rollback.sqlite");
    std::fs::copy(&big, &rollback).map_err(err)?;
    rusqlite::Connection::open(&rollback)
        .and_then(|c| {
            c.query_row("PRAGMA journal_mode = DELETE", [], |r| {
                r.get::<_, String>(0)
            })
        })
        .map_err(err)?;
    out.push(Measure::new(LABEL, OPEN, "raw", runs));
    out.push(Measure::new(
        SQLITE_ROLLBACK,
        OPEN,
        "raw",
        opens(&rollback)?,
    ));
    Ok(out)
}

/// The row label of the raw engine opening the SQLite file with a
/// rollback journal instead of WAL.
pub(crate) const SQLITE_ROLLBACK: &str = "sqlite, rollback journal";

/// sled with one tree per kind, keys `session ‖ id`, flushed per durable write.
pub(crate) async fn sled(config: &Config, dir: &Path) -> Result<Vec<Measure>, String> {
    const LABEL: &str = "sled";
    let path = dir.join("raw.sled");
    let db = sled::open(&path).map_err(err)?;
    let peers = db.open_tree("peers").map_err(err)?;
    let names = db.open_tree("uname").map_err(err)?;
    let phones = db.open_tree("phone").map_err(err)?;
    let state = db.open_tree("state").map_err(err)?;
    // sled 0.34's flush ends in `sync_file_range`, which neither empties the
    // device's write cache nor records a grown file size: a durable write
    // also needs `fdatasync` on the log, as session-sled does.
    let log = std::fs::File::open(path.join("db")).map_err(err)?;
    let durable = || -> Result<(), String> {
        db.flush().map_err(err)?;
        log.sync_data().map_err(err)
    };
    let key = |session: u8, tail: &[u8]| -> Vec<u8> {
        let mut k = vec![session];
        k.extend_from_slice(tail);
        k
    };
    // A peer's three entries: its record, its username's and its phone's.
    let entries = |session: u8, r: &Row| {
        let id = r.id.to_be_bytes();
        [
            (key(session, &id), encoded(r).into_bytes()),
            (key(session, r.username.as_bytes()), id.to_vec()),
            (key(session, r.phone.as_bytes()), id.to_vec()),
        ]
    };
    let upsert = |session: u8, batch: &[Row], floor: Floor| -> Result<(), String> {
        match floor {
            Floor::Blind => {
                let mut batches: [sled::Batch; 3] = Default::default();
                for r in batch {
                    for (b, (k, v)) in batches.iter_mut().zip(entries(session, r)) {
                        b.insert(k, v);
                    }
                }
                for (tree, b) in [&peers, &names, &phones].into_iter().zip(batches) {
                    tree.apply_batch(b).map_err(err)?;
                }
            }
            // One transaction over the three trees: every entry of the batch
            // read, then written.
            Floor::Reads => (&peers, &names, &phones)
                .transaction(|(p, u, ph)| {
                    let trees = [p, u, ph];
                    let batch: Vec<_> = batch.iter().map(|r| entries(session, r)).collect();
                    for peer in &batch {
                        for (tree, (k, _)) in trees.iter().zip(peer) {
                            std::hint::black_box(tree.get(k)?);
                        }
                    }
                    for peer in batch {
                        for (tree, (k, v)) in trees.iter().zip(peer) {
                            tree.insert(k, v)?;
                        }
                    }
                    Ok::<_, sled::transaction::ConflictableTransactionError<String>>(())
                })
                .map_err(err)?,
        }
        durable()
    };
    let all = rows(config.peers);
    let mut out = upsert_workloads(
        config,
        LABEL,
        &all,
        async || {
            for r in &all {
                for ((k, _), tree) in entries(2, r).into_iter().zip([&peers, &names, &phones]) {
                    tree.remove(k).map_err(err)?;
                }
            }
            Ok(())
        },
        async || Ok(()),
        async |session, batch, floor| upsert(u8::try_from(session).map_err(err)?, batch, floor),
    )
    .await?;
    let ids = shuffled(config.peers);
    let runs = measure_sync(config.repeat, || {
        let started = Instant::now();
        for id in &ids {
            let value = peers
                .get(key(1, &id.to_be_bytes()))
                .map_err(err)?
                .ok_or("missing")?;
            std::hint::black_box(decoded(&value)?);
        }
        Ok(Pass::since(ids.len(), started))
    })?;
    out.push(Measure::new(LABEL, LOOKUP_ID, "raw", runs));
    for (workload, index, text) in [
        (LOOKUP_USERNAME, &names, "user"),
        (LOOKUP_PHONE, &phones, "799900"),
    ] {
        let runs = measure_sync(config.repeat, || {
            let started = Instant::now();
            for id in &ids {
                let owner = index
                    .get(key(1, format!("{text}{id}").as_bytes()))
                    .map_err(err)?
                    .ok_or("missing")?;
                let value = peers.get(key(1, &owner)).map_err(err)?.ok_or("missing")?;
                std::hint::black_box(decoded(&value)?);
            }
            Ok(Pass::since(ids.len(), started))
        })?;
        out.push(Measure::new(LABEL, workload, "raw", runs));
    }
    let mut pts = 0u32;
    let runs = measure_sync(config.repeat, || {
        let started = Instant::now();
        for _ in 0..STATE_WRITES {
            pts += 1;
            let mut value = [0u8; 12];
            value[..4].copy_from_slice(&pts.to_be_bytes());
            value[8..].copy_from_slice(&pts.to_be_bytes());
            state.insert(key(1, b"state"), &value).map_err(err)?;
            durable()?;
        }
        Ok(Pass::since(STATE_WRITES, started))
    })?;
    out.push(Measure::new(LABEL, STATE, "raw", runs));
    state
        .insert(key(1, b"home"), &[7u8; 256][..])
        .map_err(err)?;
    let many = rows(config.open_peers);
    for batch in many.chunks(5_000) {
        upsert(3, batch, Floor::Blind)?;
    }
    drop((peers, names, phones, state));
    durable()?;
    drop((log, db));
    let runs = measure_sync(config.repeat, || {
        let started = Instant::now();
        for _ in 0..OPENS {
            let db = sled::open(&path).map_err(err)?;
            let tree = db.open_tree("state").map_err(err)?;
            let home = tree.get(key(1, b"home")).map_err(err)?.ok_or("missing")?;
            std::hint::black_box(home);
        }
        Ok(Pass::since(OPENS, started))
    })?;
    out.push(Measure::new(LABEL, OPEN, "raw", runs));
    Ok(out)
}

/// The script of the Redis `raw-reads` floor, one EVALSHA per batch. KEYS:
/// the peers, username and phone hashes of the session; ARGV: the batch's
/// size `n`, then its `n` ids, `n` usernames, `n` phones and `n` records.
/// Reads the stored records of the ids and the owners of the usernames and
/// phones, writes the three hashes and answers how many of those it found.
const REDIS_READS: &str = r"
local n = tonumber(ARGV[1])
local ids = {unpack(ARGV, 2, n + 1)}
local names = {unpack(ARGV, n + 2, 2 * n + 1)}
local phones = {unpack(ARGV, 2 * n + 2, 3 * n + 1)}
local read = {
  redis.call('HMGET', KEYS[1], unpack(ids)),
  redis.call('HMGET', KEYS[2], unpack(names)),
  redis.call('HMGET', KEYS[3], unpack(phones)),
}
local rows, by_name, by_phone = {}, {}, {}
for i = 1, n do
  rows[2 * i - 1], rows[2 * i] = ids[i], ARGV[3 * n + 1 + i]
  by_name[2 * i - 1], by_name[2 * i] = names[i], ids[i]
  by_phone[2 * i - 1], by_phone[2 * i] = phones[i], ids[i]
end
redis.call('HSET', KEYS[1], unpack(rows))
redis.call('HSET', KEYS[2], unpack(by_name))
redis.call('HSET', KEYS[3], unpack(by_phone))
local found = 0
for _, answer in ipairs(read) do
  for i = 1, n do
    if answer[i] then found = found + 1 end
  end
end
return found
";

/// redis-rs with one hash per kind of data per session.
pub(crate) async fn redis(config: &Config) -> Result<Vec<Measure>, String> {
    const LABEL: &str = "redis";
    let client = redis::Client::open(config.redis_url.as_str()).map_err(err)?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(err)?;
    let prefix = "mtsession-bench-raw";
    let k = |session: i64, what: &str| format!("{prefix}:{session}:{what}");
    let script = redis::Script::new(REDIS_READS);
    script.load_async(&mut conn).await.map_err(err)?;
    let upsert = async |session: i64, batch: &[Row], floor: Floor| -> Result<(), String> {
        let mut conn = conn.clone();
        let keys = ["peers", "uname", "phone"].map(|what| k(session, what));
        match floor {
            Floor::Blind => {
                let peers: Vec<(i64, String)> = batch.iter().map(|r| (r.id, encoded(r))).collect();
                let names: Vec<(&str, i64)> =
                    batch.iter().map(|r| (r.username.as_str(), r.id)).collect();
                let phones: Vec<(&str, i64)> =
                    batch.iter().map(|r| (r.phone.as_str(), r.id)).collect();
                redis::pipe()
                    .atomic()
                    .hset_multiple(&keys[0], &peers)
                    .ignore()
                    .hset_multiple(&keys[1], &names)
                    .ignore()
                    .hset_multiple(&keys[2], &phones)
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(err)
            }
            Floor::Reads => {
                let mut call = script.prepare_invoke();
                call.key(&keys).arg(batch.len());
                for r in batch {
                    call.arg(r.id);
                }
                for r in batch {
                    call.arg(&r.username);
                }
                for r in batch {
                    call.arg(&r.phone);
                }
                for r in batch {
                    call.arg(encoded(r));
                }
                let found: i64 = call.invoke_async(&mut conn).await.map_err(err)?;
                std::hint::black_box(found);
                Ok(())
            }
        }
    };
    let all = rows(config.peers);
    let mut out = upsert_workloads(
        config,
        LABEL,
        &all,
        async || {
            redis::cmd("DEL")
                .arg(k(2, "peers"))
                .arg(k(2, "uname"))
                .arg(k(2, "phone"))
                .query_async::<()>(&mut conn.clone())
                .await
                .map_err(err)
        },
        async || Ok(()),
        upsert,
    )
    .await?;
    let ids = shuffled(config.peers);
    let runs = measure(config.repeat, || {
        let mut conn = conn.clone();
        let ids = &ids;
        async move {
            let started = Instant::now();
            for id in ids {
                let value: Option<Vec<u8>> = redis::cmd("HGET")
                    .arg(k(1, "peers"))
                    .arg(id)
                    .query_async(&mut conn)
                    .await
                    .map_err(err)?;
                std::hint::black_box(decoded(&value.ok_or("missing")?)?);
            }
            Ok(Pass::since(ids.len(), started))
        }
    })
    .await?;
    out.push(Measure::new(LABEL, LOOKUP_ID, "raw", runs));
    for (workload, index, text) in [
        (LOOKUP_USERNAME, "uname", "user"),
        (LOOKUP_PHONE, "phone", "799900"),
    ] {
        let runs = measure(config.repeat, || {
            let mut conn = conn.clone();
            let ids = &ids;
            async move {
                let started = Instant::now();
                for id in ids {
                    let owner: Option<i64> = redis::cmd("HGET")
                        .arg(k(1, index))
                        .arg(format!("{text}{id}"))
                        .query_async(&mut conn)
                        .await
                        .map_err(err)?;
                    let value: Option<Vec<u8>> = redis::cmd("HGET")
                        .arg(k(1, "peers"))
                        .arg(owner.ok_or("missing")?)
                        .query_async(&mut conn)
                        .await
                        .map_err(err)?;
                    std::hint::black_box(decoded(&value.ok_or("missing")?)?);
                }
                Ok(Pass::since(ids.len(), started))
            }
        })
        .await?;
        out.push(Measure::new(LABEL, workload, "raw", runs));
    }
    let mut pts = 0;
    let runs = measure(config.repeat, || {
        let mut conn = conn.clone();
        let start = pts;
        pts += STATE_WRITES;
        async move {
            let started = Instant::now();
            for i in 0..STATE_WRITES {
                redis::cmd("HSET")
                    .arg(k(1, "state"))
                    .arg("pts")
                    .arg(start + i)
                    .arg("date")
                    .arg(1_700_000_000)
                    .arg("seq")
                    .arg(start + i)
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(err)?;
            }
            Ok(Pass::since(STATE_WRITES, started))
        }
    })
    .await?;
    out.push(Measure::new(LABEL, STATE, "raw", runs));
    redis::cmd("HSET")
        .arg(k(1, "dcs"))
        .arg("2")
        .arg(vec![7u8; 256])
        .query_async::<()>(&mut conn)
        .await
        .map_err(err)?;
    let schema_key = format!("{prefix}:schema");
    redis::cmd("SET")
        .arg(&schema_key)
        .arg(1)
        .query_async::<()>(&mut conn)
        .await
        .map_err(err)?;
    // Opening: connect and read the home key; the second floor first reads
    // the schema version, as the store does.
    let url = config.redis_url.clone();
    for (engine, schema) in [("raw", false), (RAW_READS, true)] {
        let runs = measure(config.repeat, || {
            let (url, schema_key) = (url.clone(), &schema_key);
            async move {
                let started = Instant::now();
                for _ in 0..OPENS {
                    let client = redis::Client::open(url.as_str()).map_err(err)?;
                    let mut conn = client
                        .get_multiplexed_async_connection()
                        .await
                        .map_err(err)?;
                    if schema {
                        let version: Option<Vec<u8>> = redis::cmd("GET")
                            .arg(schema_key)
                            .query_async(&mut conn)
                            .await
                            .map_err(err)?;
                        version.ok_or("missing")?;
                    }
                    let key: Option<Vec<u8>> = redis::cmd("HGET")
                        .arg(k(1, "dcs"))
                        .arg("2")
                        .query_async(&mut conn)
                        .await
                        .map_err(err)?;
                    key.ok_or("missing")?;
                }
                Ok(Pass::since(OPENS, started))
            }
        })
        .await?;
        out.push(Measure::new(LABEL, OPEN, engine, runs));
    }
    redis::cmd("DEL")
        .arg(&schema_key)
        .arg(k(1, "peers"))
        .arg(k(1, "uname"))
        .arg(k(1, "phone"))
        .arg(k(1, "state"))
        .arg(k(1, "dcs"))
        .arg(k(2, "peers"))
        .arg(k(2, "uname"))
        .arg(k(2, "phone"))
        .query_async::<()>(&mut conn)
        .await
        .map_err(err)?;
    Ok(out)
}

/// Drops every table of the raw SQL engines.
const SQL_DROP: &str = "DROP TABLE IF EXISTS rawbench_peers, rawbench_usernames, \
     rawbench_sessions, rawbench_schema, rawbench_migrations";

/// The schema version and migrations tables the store's open reads (the
/// same statements on PostgreSQL and MySQL), filled as a current store's.
const SQL_SCHEMA_TABLES: [&str; 4] = [
    "CREATE TABLE rawbench_schema (id INT PRIMARY KEY, version BIGINT NOT NULL)",
    "CREATE TABLE rawbench_migrations (version VARCHAR(255) PRIMARY KEY, applied_at BIGINT NOT NULL)",
    "INSERT INTO rawbench_schema VALUES (1, 1)",
    "INSERT INTO rawbench_migrations VALUES ('m0001_initial', 0)",
];

/// The schema check of session-sql's open: the version and the applied
/// migrations, one statement.
const SQL_SCHEMA_READ: &str = "SELECT version, NULL FROM rawbench_schema WHERE id = 1 \
     UNION ALL SELECT NULL, version FROM rawbench_migrations";

/// Opening: connect and read the home key (`raw`); the [`RAW_READS`] floor
/// also reads the schema version and the applied migrations first, in one
/// statement as the store does (over the text protocol on MySQL).
async fn sql_opens<DB: sqlx::Database>(
    label: &str,
    url: &str,
    config: &Config,
) -> Result<Vec<Measure>, String>
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    Vec<u8>: for<'r> sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    use sqlx::Row as _;
    let mut out = Vec::new();
    for (engine, schema) in [("raw", false), (RAW_READS, true)] {
        let runs = measure(config.repeat, || async move {
            let started = Instant::now();
            for _ in 0..SERVER_OPENS {
                let pool = sqlx::pool::PoolOptions::<DB>::new()
                    .max_connections(1)
                    .connect(url)
                    .await
                    .map_err(err)?;
                if schema {
                    let rows = sqlx::raw_sql(SQL_SCHEMA_READ)
                        .fetch_all(&pool)
                        .await
                        .map_err(err)?;
                    std::hint::black_box(rows);
                }
                let row = sqlx::query::<DB>("SELECT home_key FROM rawbench_sessions WHERE id = 1")
                    .fetch_one(&pool)
                    .await
                    .map_err(err)?;
                std::hint::black_box(row.try_get::<Vec<u8>, _>(0).map_err(err)?);
                pool.close().await;
            }
            Ok(Pass::since(SERVER_OPENS, started))
        })
        .await?;
        out.push(Measure::new(label, OPEN, engine, runs));
    }
    Ok(out)
}

/// sqlx on PostgreSQL or MySQL, with the table shape of session-sql.
pub(crate) async fn sql(backend: &str, url: &str, config: &Config) -> Result<Vec<Measure>, String> {
    let label = if backend == "postgres" {
        "postgres"
    } else {
        "mysql"
    };
    if backend == "postgres" {
        sql_postgres(label, url, config).await
    } else {
        sql_mysql(label, url, config).await
    }
}

async fn sql_postgres(label: &str, url: &str, config: &Config) -> Result<Vec<Measure>, String> {
    use sqlx::Row as _;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(url)
        .await
        .map_err(err)?;
    for statement in [
        SQL_DROP,
        "CREATE TABLE rawbench_sessions (id BIGINT PRIMARY KEY, home_dc INT NOT NULL, pts INT NOT NULL DEFAULT 0, date INT NOT NULL DEFAULT 0, seq INT NOT NULL DEFAULT 0, home_key BYTEA)",
        "CREATE TABLE rawbench_peers (session BIGINT NOT NULL, id BIGINT NOT NULL, kind INT, hash BIGINT, hash_is_min BOOLEAN, usernames TEXT, phone TEXT, name TEXT, last_seen BIGINT, PRIMARY KEY (session, id))",
        "CREATE UNIQUE INDEX rawbench_peers_phone ON rawbench_peers (session, phone)",
        "CREATE TABLE rawbench_usernames (session BIGINT NOT NULL, username TEXT NOT NULL, peer_id BIGINT NOT NULL, PRIMARY KEY (session, username))",
        "INSERT INTO rawbench_sessions (id, home_dc, home_key) VALUES (1, 2, decode(repeat('07', 256), 'hex')), (2, 2, NULL)",
    ]
    .into_iter()
    .chain(SQL_SCHEMA_TABLES)
    {
        sqlx::query(statement).execute(&pool).await.map_err(err)?;
    }
    // No hints on PostgreSQL; with statistics each lookup seeks its index.
    let reads = sql_reads(
        "$1",
        [("", "= ANY($2)"), ("", "= ANY($3)"), ("", "= ANY($4)")],
    );
    let upsert = async |session: i64, batch: &[Row], floor: Floor| -> Result<(), String> {
        let ids: Vec<i64> = batch.iter().map(|r| r.id).collect();
        let hashes: Vec<i64> = batch.iter().map(|r| r.hash).collect();
        let lists: Vec<String> = batch
            .iter()
            .map(|r| format!("[\"{}\"]", r.username))
            .collect();
        let names: Vec<String> = batch.iter().map(|r| r.username.clone()).collect();
        let phones: Vec<String> = batch.iter().map(|r| r.phone.clone()).collect();
        let display: Vec<String> = batch.iter().map(|r| r.name.clone()).collect();
        let mut tx = pool.begin().await.map_err(err)?;
        if floor == Floor::Reads {
            let rows = sqlx::query(sqlx::AssertSqlSafe(reads.as_str()))
                .bind(session)
                .bind(&ids)
                .bind(&names)
                .bind(&phones)
                .fetch_all(&mut *tx)
                .await
                .map_err(err)?;
            decode_reads(&rows)?;
        }
        sqlx::query(
            "INSERT INTO rawbench_peers (session, id, kind, hash, hash_is_min, usernames, phone, name) \
             SELECT $1, * FROM UNNEST($2::bigint[], array_fill(1, ARRAY[cardinality($2::bigint[])]), \
             $3::bigint[], array_fill(false, ARRAY[cardinality($2::bigint[])]), $4::text[], $5::text[], $6::text[]) \
             ON CONFLICT (session, id) DO UPDATE SET kind = excluded.kind, hash = excluded.hash, \
             hash_is_min = excluded.hash_is_min, usernames = excluded.usernames, phone = excluded.phone, \
             name = excluded.name",
        )
        .bind(session)
        .bind(&ids)
        .bind(&hashes)
        .bind(&lists)
        .bind(&phones)
        .bind(&display)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        sqlx::query(
            "INSERT INTO rawbench_usernames (session, username, peer_id) \
             SELECT $1, * FROM UNNEST($2::text[], $3::bigint[]) \
             ON CONFLICT (session, username) DO UPDATE SET peer_id = excluded.peer_id",
        )
        .bind(session)
        .bind(&names)
        .bind(&ids)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)
    };
    let all = rows(config.peers);
    let mut out = upsert_workloads(
        config,
        label,
        &all,
        async || sql_each_table(&pool, "DELETE FROM {} WHERE session = 2").await,
        async || sql_each_table(&pool, "ANALYZE {}").await,
        upsert,
    )
    .await?;
    let ids = shuffled(config.peers);
    for (workload, sql, text) in [
        (
            LOOKUP_ID,
            format!("SELECT {COLUMNS} FROM rawbench_peers p WHERE p.session = 1 AND p.id = $1"),
            None,
        ),
        (
            LOOKUP_USERNAME,
            format!(
                "SELECT {COLUMNS} FROM rawbench_usernames u JOIN rawbench_peers p ON p.session = u.session AND p.id = u.peer_id WHERE u.session = 1 AND u.username = $1"
            ),
            Some("user"),
        ),
        (
            LOOKUP_PHONE,
            format!("SELECT {COLUMNS} FROM rawbench_peers p WHERE p.session = 1 AND p.phone = $1"),
            Some("799900"),
        ),
    ] {
        let runs = measure(config.repeat, || {
            let pool = pool.clone();
            let ids = &ids;
            let sql = sql.clone();
            async move {
                let started = Instant::now();
                for id in ids {
                    let query = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
                    let query = match text {
                        None => query.bind(*id),
                        Some(t) => query.bind(format!("{t}{id}")),
                    };
                    let row = query.fetch_one(&pool).await.map_err(err)?;
                    std::hint::black_box(row.try_get::<i64, _>(0).map_err(err)?);
                }
                Ok(Pass::since(ids.len(), started))
            }
        })
        .await?;
        out.push(Measure::new(label, workload, "raw", runs));
    }
    let mut pts = 0;
    let runs = measure(config.repeat, || {
        let pool = pool.clone();
        let start = pts;
        pts += STATE_WRITES as i32;
        async move {
            let started = Instant::now();
            for i in 0..STATE_WRITES as i32 {
                sqlx::query(
                    "UPDATE rawbench_sessions SET pts = $1, date = $2, seq = $1 WHERE id = 1",
                )
                .bind(start + i)
                .bind(1_700_000_000)
                .execute(&pool)
                .await
                .map_err(err)?;
            }
            Ok(Pass::since(STATE_WRITES, started))
        }
    })
    .await?;
    out.push(Measure::new(label, STATE, "raw", runs));
    out.extend(sql_opens::<sqlx::Postgres>(label, url, config).await?);
    sqlx::query(SQL_DROP).execute(&pool).await.map_err(err)?;
    Ok(out)
}

async fn sql_mysql(label: &str, url: &str, config: &Config) -> Result<Vec<Measure>, String> {
    use sqlx::Row as _;
    let pool = sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(4)
        .connect(url)
        .await
        .map_err(err)?;
    for statement in [
        SQL_DROP,
        "CREATE TABLE rawbench_sessions (id BIGINT PRIMARY KEY, home_dc INT NOT NULL, pts INT NOT NULL DEFAULT 0, date INT NOT NULL DEFAULT 0, seq INT NOT NULL DEFAULT 0, home_key VARBINARY(256))",
        "CREATE TABLE rawbench_peers (session BIGINT NOT NULL, id BIGINT NOT NULL, kind INT, hash BIGINT, hash_is_min BOOLEAN, usernames TEXT, phone VARCHAR(64), name TEXT, last_seen BIGINT, PRIMARY KEY (session, id), UNIQUE KEY rawbench_phone (session, phone))",
        "CREATE TABLE rawbench_usernames (session BIGINT NOT NULL, username VARCHAR(255) NOT NULL, peer_id BIGINT NOT NULL, PRIMARY KEY (session, username))",
        "INSERT INTO rawbench_sessions (id, home_dc, home_key) VALUES (1, 2, UNHEX(REPEAT('07', 256))), (2, 2, NULL)",
    ]
    .into_iter()
    .chain(SQL_SCHEMA_TABLES)
    {
        sqlx::query(statement).execute(&pool).await.map_err(err)?;
    }
    let upsert = async |session: i64, batch: &[Row], floor: Floor| -> Result<(), String> {
        let mut peers = String::from(
            "INSERT INTO rawbench_peers (session, id, kind, hash, hash_is_min, usernames, phone, name) VALUES ",
        );
        let mut names =
            String::from("INSERT INTO rawbench_usernames (session, username, peer_id) VALUES ");
        let mut list = String::from("IN (");
        for (i, _) in batch.iter().enumerate() {
            let comma = if i == 0 { "" } else { "," };
            peers.push_str(&format!("{comma}(?, ?, 1, ?, FALSE, ?, ?, ?)"));
            names.push_str(&format!("{comma}(?, ?, ?)"));
            list.push_str(&format!("{comma}?"));
        }
        peers.push_str(
            " ON DUPLICATE KEY UPDATE kind = VALUES(kind), hash = VALUES(hash), hash_is_min = VALUES(hash_is_min), \
             usernames = VALUES(usernames), phone = VALUES(phone), name = VALUES(name)",
        );
        names.push_str(" ON DUPLICATE KEY UPDATE peer_id = VALUES(peer_id)");
        list.push(')');
        let batch: Vec<(i64, i64, String, String, String, String)> = batch
            .iter()
            .map(|r| {
                (
                    r.id,
                    r.hash,
                    format!("[\"{}\"]", r.username),
                    r.phone.clone(),
                    r.name.clone(),
                    r.username.clone(),
                )
            })
            .collect();
        let mut tx = pool.begin().await.map_err(err)?;
        if floor == Floor::Reads {
            // Hinted as the store's lookups are: MariaDB may walk a whole
            // session by the `session` prefix of an index.
            let reads = sql_reads(
                "?",
                [
                    (" FORCE INDEX (PRIMARY)", &list),
                    (" FORCE INDEX (PRIMARY)", &list),
                    (" FORCE INDEX (rawbench_phone)", &list),
                ],
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(reads.as_str())).bind(session);
            for (id, ..) in &batch {
                q = q.bind(id);
            }
            q = q.bind(session);
            for (.., username) in &batch {
                q = q.bind(username);
            }
            q = q.bind(session);
            for (_, _, _, phone, ..) in &batch {
                q = q.bind(phone);
            }
            decode_reads(&q.fetch_all(&mut *tx).await.map_err(err)?)?;
        }
        let mut q = sqlx::query(sqlx::AssertSqlSafe(peers.as_str()));
        for (id, hash, list, phone, name, _) in &batch {
            q = q
                .bind(session)
                .bind(id)
                .bind(hash)
                .bind(list)
                .bind(phone)
                .bind(name);
        }
        q.execute(&mut *tx).await.map_err(err)?;
        let mut q = sqlx::query(sqlx::AssertSqlSafe(names.as_str()));
        for (id, _, _, _, _, username) in &batch {
            q = q.bind(session).bind(username).bind(id);
        }
        q.execute(&mut *tx).await.map_err(err)?;
        tx.commit().await.map_err(err)
    };
    let all = rows(config.peers);
    let mut out = upsert_workloads(
        config,
        label,
        &all,
        async || sql_each_table(&pool, "DELETE FROM {} WHERE session = 2").await,
        async || Ok(()),
        upsert,
    )
    .await?;
    let ids = shuffled(config.peers);
    for (workload, sql, text) in [
        (
            LOOKUP_ID,
            format!("SELECT {COLUMNS} FROM rawbench_peers p WHERE p.session = 1 AND p.id = ?"),
            None,
        ),
        (
            LOOKUP_USERNAME,
            format!(
                "SELECT {COLUMNS} FROM rawbench_usernames u JOIN rawbench_peers p ON p.session = u.session AND p.id = u.peer_id WHERE u.session = 1 AND u.username = ?"
            ),
            Some("user"),
        ),
        (
            LOOKUP_PHONE,
            format!("SELECT {COLUMNS} FROM rawbench_peers p WHERE p.session = 1 AND p.phone = ?"),
            Some("799900"),
        ),
    ] {
        let runs = measure(config.repeat, || {
            let pool = pool.clone();
            let ids = &ids;
            let sql = sql.clone();
            async move {
                let started = Instant::now();
                for id in ids {
                    let query = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
                    let query = match text {
                        None => query.bind(*id),
                        Some(t) => query.bind(format!("{t}{id}")),
                    };
                    let row = query.fetch_one(&pool).await.map_err(err)?;
                    std::hint::black_box(row.try_get::<i64, _>(0).map_err(err)?);
                }
                Ok(Pass::since(ids.len(), started))
            }
        })
        .await?;
        out.push(Measure::new(label, workload, "raw", runs));
    }
    let mut pts = 0;
    let runs = measure(config.repeat, || {
        let pool = pool.clone();
        let start = pts;
        pts += STATE_WRITES as i32;
        async move {
            let started = Instant::now();
            for i in 0..STATE_WRITES as i32 {
                sqlx::query("UPDATE rawbench_sessions SET pts = ?, date = ?, seq = ? WHERE id = 1")
                    .bind(start + i)
                    .bind(1_700_000_000)
                    .bind(start + i)
                    .execute(&pool)
                    .await
                    .map_err(err)?;
            }
            Ok(Pass::since(STATE_WRITES, started))
        }
    })
    .await?;
    out.push(Measure::new(label, STATE, "raw", runs));
    out.extend(sql_opens::<sqlx::MySql>(label, url, config).await?);
    sqlx::query(SQL_DROP).execute(&pool).await.map_err(err)?;
    Ok(out)
}

/// The mongodb driver: one document per peer with indexed username and phone fields.
pub(crate) async fn mongo(config: &Config) -> Result<Vec<Measure>, String> {
    use bson::doc;
    const LABEL: &str = "mongo";
    let client = mongodb::Client::with_uri_str(&config.mongo_url)
        .await
        .map_err(err)?;
    let db = client.database("mtsession_rawbench");
    db.drop().await.map_err(err)?;
    let peers = db.collection::<bson::Document>("peers");
    let sessions = db.collection::<bson::Document>("sessions");
    // The store's key shape: a unique index on (session, id) beside the
    // username and phone indexes.
    for (keys, unique) in [
        (doc! {"s": 1, "id": 1}, true),
        (doc! {"s": 1, "u": 1}, false),
        (doc! {"s": 1, "phone": 1}, false),
    ] {
        let options = mongodb::options::IndexOptions::builder()
            .unique(unique)
            .build();
        peers
            .create_index(
                mongodb::IndexModel::builder()
                    .keys(keys)
                    .options(options)
                    .build(),
            )
            .await
            .map_err(err)?;
    }
    sessions
        .insert_one(doc! {"_id": 1, "home_dc": 2, "pts": 0, "home_key": bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: vec![7u8; 256] }})
        .await
        .map_err(err)?;
    let peers = Arc::new(peers);
    let upsert = async |session: i64, batch: &[Row], floor: Floor| -> Result<(), String> {
        if floor == Floor::Reads {
            // One `$in` query per index, as the store loads a batch's
            // context (SecantusDB scans a whole collection for an `$or`).
            let ids: Vec<i64> = batch.iter().map(|r| r.id).collect();
            let names: Vec<&str> = batch.iter().map(|r| r.username.as_str()).collect();
            let phones: Vec<&str> = batch.iter().map(|r| r.phone.as_str()).collect();
            for filter in [
                doc! {"s": session, "id": {"$in": ids}},
                doc! {"s": session, "u": {"$in": names}},
                doc! {"s": session, "phone": {"$in": phones}},
            ] {
                let mut found = peers.find(filter).await.map_err(err)?;
                while found.advance().await.map_err(err)? {
                    std::hint::black_box(found.current());
                }
            }
        }
        // One `update` command of upserts per batch, as the store writes.
        let updates: Vec<bson::Bson> = batch
            .iter()
            .map(|r| {
                doc! {
                    "q": {"s": session, "id": r.id},
                    "u": {"s": session, "id": r.id, "kind": 1, "hash": r.hash,
                          "usernames": [&r.username], "u": [&r.username], "phone": &r.phone,
                          "name": &r.name},
                    "upsert": true,
                }
                .into()
            })
            .collect();
        db.run_command(doc! {"update": "peers", "updates": updates, "ordered": true})
            .await
            .map_err(err)?;
        Ok(())
    };
    let all = rows(config.peers);
    let mut out = upsert_workloads(
        config,
        LABEL,
        &all,
        async || {
            peers.delete_many(doc! {"s": 2}).await.map_err(err)?;
            Ok(())
        },
        async || Ok(()),
        upsert,
    )
    .await?;
    let ids = shuffled(config.peers);
    for workload in [LOOKUP_ID, LOOKUP_USERNAME, LOOKUP_PHONE] {
        let runs = measure(config.repeat, || {
            let peers = Arc::clone(&peers);
            let ids = &ids;
            async move {
                let started = Instant::now();
                for id in ids {
                    let filter = match workload {
                        LOOKUP_ID => doc! {"s": 1_i64, "id": *id},
                        LOOKUP_USERNAME => doc! {"s": 1_i64, "u": format!("user{id}")},
                        _ => doc! {"s": 1_i64, "phone": format!("799900{id}")},
                    };
                    peers
                        .find_one(filter)
                        .await
                        .map_err(err)?
                        .ok_or("missing")?;
                }
                Ok(Pass::since(ids.len(), started))
            }
        })
        .await?;
        out.push(Measure::new(LABEL, workload, "raw", runs));
    }
    let mut pts = 0;
    let runs = measure(config.repeat, || {
        let sessions = sessions.clone();
        let start = pts;
        pts += STATE_WRITES as i32;
        async move {
            let started = Instant::now();
            for i in 0..STATE_WRITES as i32 {
                sessions
                    .update_one(
                        doc! {"_id": 1},
                        doc! {"$set": {"pts": start + i, "date": 1_700_000_000, "seq": start + i}},
                    )
                    .await
                    .map_err(err)?;
            }
            Ok(Pass::since(STATE_WRITES, started))
        }
    })
    .await?;
    out.push(Measure::new(LABEL, STATE, "raw", runs));
    db.collection::<bson::Document>("meta")
        .insert_one(doc! {"_id": "schema", "version": 1, "layout": 1})
        .await
        .map_err(err)?;
    // Opening: connect and read the home key; the second floor first reads
    // the schema document, as the store does.
    let url = config.mongo_url.clone();
    for (engine, schema) in [("raw", false), (RAW_READS, true)] {
        let runs = measure(config.repeat, || {
            let url = url.clone();
            async move {
                let started = Instant::now();
                for _ in 0..SERVER_OPENS {
                    let client = mongodb::Client::with_uri_str(&url).await.map_err(err)?;
                    let db = client.database("mtsession_rawbench");
                    if schema {
                        let found = db
                            .collection::<bson::Document>("meta")
                            .find_one(doc! {"_id": "schema"})
                            .await
                            .map_err(err)?;
                        found.ok_or("missing")?;
                    }
                    let found = db
                        .collection::<bson::Document>("sessions")
                        .find_one(doc! {"_id": 1})
                        .await
                        .map_err(err)?;
                    found.ok_or("missing")?;
                }
                Ok(Pass::since(SERVER_OPENS, started))
            }
        })
        .await?;
        out.push(Measure::new(LABEL, OPEN, engine, runs));
    }
    db.drop().await.map_err(err)?;
    Ok(out)
}

/// grammers-session 0.11's own `MemorySession`, the peer of `MemoryStore`:
/// the same workloads as `memory_lean`.
pub(crate) async fn grammers_memory(config: &Config) -> Result<Vec<Measure>, String> {
    use grammers_session::Session as _;
    use grammers_session::storages::MemorySession;
    use grammers_session::types::{PeerAuth, PeerId as GPeerId, PeerInfo};
    const LABEL: &str = "memory";
    let info = |id: i64| PeerInfo::User {
        id,
        auth: Some(PeerAuth::from_hash(id.wrapping_mul(0x9E37_79B9))),
        bot: Some(false),
        is_self: Some(false),
    };
    let all: Vec<i64> = (FIRST_ID..FIRST_ID + config.peers).collect();
    let cache_all = async |session: &MemorySession| -> Result<(), String> {
        for batch in all.chunks(BATCH) {
            session
                .cache_peers(batch.iter().map(|id| info(*id)).collect())
                .await
                .map_err(|_| "grammers cache_peers failed")?;
        }
        Ok(())
    };
    let mut out = Vec::new();
    let runs = measure(config.repeat, || async {
        let session = MemorySession::default();
        let started = Instant::now();
        cache_all(&session).await?;
        Ok(Pass::since(all.len(), started))
    })
    .await?;
    out.push(Measure::new(LABEL, UPSERT_NEW, "grammers", runs));
    let session = MemorySession::default();
    cache_all(&session).await?;
    let runs = measure(config.repeat, || async {
        let started = Instant::now();
        cache_all(&session).await?;
        Ok(Pass::since(all.len(), started))
    })
    .await?;
    out.push(Measure::new(LABEL, UPSERT_EXISTING, "grammers", runs));
    let ids = shuffled(config.peers);
    let runs = measure(config.repeat, || async {
        let started = Instant::now();
        for id in &ids {
            let peer = GPeerId::user(*id).ok_or("bad id")?;
            session
                .peer(peer)
                .await
                .map_err(|_| "grammers peer failed")?
                .ok_or("missing")?;
        }
        Ok(Pass::since(ids.len(), started))
    })
    .await?;
    out.push(Measure::new(LABEL, LOOKUP_ID, "grammers", runs));
    Ok(out)
}

/// The raw engine's lookups by id at `n` peers, for the scale check of the
/// embedded engines (rusqlite, sled with its default cache): ops/s per run
/// over `ids` (or about `run_time`); on sled also opening the database and
/// reading one value (at most 1 000 opens or about `run_time` per run).
/// Each measured workload with its runs; none for the other engines.
pub(crate) fn scale_lookups(
    backend: &str,
    n: i64,
    dir: &Path,
    repeat: usize,
    ids: &[i64],
    run_time: std::time::Duration,
) -> Result<Vec<(&'static str, Vec<f64>)>, String> {
    let timed = |get: &mut dyn FnMut(i64) -> Result<(), String>| -> Result<f64, String> {
        let started = Instant::now();
        let mut done = 0;
        for id in ids {
            get(*id)?;
            done += 1;
            if started.elapsed() >= run_time {
                break;
            }
        }
        Ok(rate(done, started))
    };
    match backend {
        "sqlite" => {
            let path = dir.join(format!("raw-scale-{n}.sqlite"));
            let conn = sqlite_open(&path, "OFF").map_err(err)?;
            for batch in rows(n).chunks(5_000) {
                sqlite_upsert(&conn, 1, batch, Floor::Blind).map_err(err)?;
            }
            let mut runs = Vec::new();
            for _ in 0..repeat {
                let mut stmt = conn
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM peers p WHERE p.session = 1 AND p.id = ?1"
                    ))
                    .map_err(err)?;
                runs.push(timed(&mut |id| {
                    let found = stmt.query_row([id], sqlite_peer).map_err(err)?;
                    std::hint::black_box(found);
                    Ok(())
                })?);
            }
            drop(conn);
            let _ = std::fs::remove_file(&path);
            Ok(vec![(LOOKUP_ID, runs)])
        }
        "sled" => {
            let path = dir.join(format!("raw-scale-{n}.sled"));
            let db = sled::open(&path).map_err(err)?;
            let peers = db.open_tree("peers").map_err(err)?;
            let key = |id: i64| {
                let mut k = vec![1u8];
                k.extend_from_slice(&id.to_be_bytes());
                k
            };
            for chunk in rows(n).chunks(5_000) {
                let mut batch = sled::Batch::default();
                for r in chunk {
                    batch.insert(key(r.id), encoded(r).as_bytes());
                }
                peers.apply_batch(batch).map_err(err)?;
            }
            let mut runs = Vec::new();
            for _ in 0..repeat {
                runs.push(timed(&mut |id| {
                    let value = peers.get(key(id)).map_err(err)?.ok_or("missing")?;
                    std::hint::black_box(decoded(&value)?);
                    Ok(())
                })?);
            }
            peers.insert(key(0), vec![7u8; 256]).map_err(err)?;
            db.flush().map_err(err)?;
            drop((peers, db));
            // Opening: sled reads its whole log (recovery) before the first
            // read, so its own open grows with the store.
            let mut opens = Vec::new();
            for _ in 0..repeat {
                let started = Instant::now();
                let mut done = 0;
                while done < 1_000 && (done == 0 || started.elapsed() < run_time) {
                    let db = sled::open(&path).map_err(err)?;
                    let peers = db.open_tree("peers").map_err(err)?;
                    let home = peers.get(key(0)).map_err(err)?.ok_or("missing")?;
                    std::hint::black_box(home);
                    done += 1;
                }
                opens.push(rate(done, started));
            }
            let _ = std::fs::remove_dir_all(&path);
            Ok(vec![(LOOKUP_ID, runs), (OPEN, opens)])
        }
        _ => Ok(Vec::new()),
    }
}
