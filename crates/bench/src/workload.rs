//! The workloads, run on an mtsession store and on its raw engine alike.
//!
//! Peers have ids `FIRST_ID..FIRST_ID + n`, username `user{id}`, phone
//! `799900{id}`; lookups go in a fixed shuffled order.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use mtsession::{AuthKey, Peer, PeerId, PeerKind, Session, Store, UpdateStateChange};

use crate::Config;
use crate::raw;
use crate::report::Measure;

/// The first peer id.
pub(crate) const FIRST_ID: i64 = 10_000;
/// Peers per batch in the upsert workloads.
pub(crate) const BATCH: usize = 100;
/// Update-state writes per run.
pub(crate) const STATE_WRITES: usize = 2_000;
/// The bound on unsynced writes of the write-behind rows: the store's
/// `max_delay_ms`, and how often the raw floor syncs.
pub(crate) const WRITE_BEHIND_DELAY: std::time::Duration = std::time::Duration::from_millis(100);
/// Opens per run of the open workload.
pub(crate) const OPENS: usize = 200;
/// Opens per pass of a server's raw engine.
pub(crate) const SERVER_OPENS: usize = OPENS / 4;

/// Workload names, as the report shows them.
pub(crate) const LOOKUP_ID: &str = "lookup by id";
pub(crate) const LOOKUP_USERNAME: &str = "lookup by username";
pub(crate) const LOOKUP_PHONE: &str = "lookup by phone";
pub(crate) const UPSERT_NEW: &str = "batch upsert (100 per batch), new peers";
pub(crate) const UPSERT_EXISTING: &str = "batch upsert (100 per batch), peers exist";
pub(crate) const STATE: &str = "update-state write";
pub(crate) const OPEN: &str = "open the store + read the home key";

/// One workload peer.
pub(crate) fn peer(id: i64) -> Peer {
    Peer::new(PeerId::user(id).unwrap_or_else(|_| unreachable!("ids are positive")))
        .with_kind(PeerKind::User)
        .with_hash(id.wrapping_mul(0x9E37_79B9))
        .with_username(format!("user{id}"))
        .with_phone(format!("799900{id}"))
        .with_name(format!("Peer number {id}"))
}

/// One workload peer with only what grammers-session's `MemorySession`
/// keeps: id, kind and hash (no username, phone or name to index or copy).
pub(crate) fn lean_peer(id: i64) -> Peer {
    Peer::new(PeerId::user(id).unwrap_or_else(|_| unreachable!("ids are positive")))
        .with_kind(PeerKind::User)
        .with_hash(id.wrapping_mul(0x9E37_79B9))
}

/// The row label of the memory store holding [`lean_peer`]s.
pub(crate) const MEMORY_LEAN: &str = "memory, id+kind+hash peers";

/// The memory store on the same information as grammers' `MemorySession`:
/// batch upserts of new and stored peers and lookups by id.
pub(crate) async fn memory_lean(config: &Config) -> Result<Vec<Measure>, String> {
    let store = mtsession::open("memory:").await.map_err(err)?;
    let all: Vec<Peer> = (FIRST_ID..FIRST_ID + config.peers).map(lean_peer).collect();
    let mut out = Vec::new();
    let runs = upsert_new_runs(&store, &all, config.repeat).await?;
    out.push(Measure::new(MEMORY_LEAN, UPSERT_NEW, "mtsession", runs));
    let session = store.open("lean").await.map_err(err)?;
    session.cache_peers(&all).await.map_err(err)?;
    let runs = upsert_existing_runs(&session, &all, config.repeat).await?;
    out.push(Measure::new(
        MEMORY_LEAN,
        UPSERT_EXISTING,
        "mtsession",
        runs,
    ));
    let runs = lookup_by_id_runs(&session, &shuffled(config.peers), config.repeat).await?;
    out.push(Measure::new(MEMORY_LEAN, LOOKUP_ID, "mtsession", runs));
    Ok(out)
}

/// `0..n` shifted to the workload ids, in a fixed shuffled order.
pub(crate) fn shuffled(n: i64) -> Vec<i64> {
    let mut ids: Vec<i64> = (FIRST_ID..FIRST_ID + n).collect();
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    for i in (1..ids.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let j = usize::try_from(state % (i as u64 + 1)).unwrap_or(0);
        ids.swap(i, j);
    }
    ids
}

/// Operations per second of `ops` operations timed from `started`.
pub(crate) fn rate(ops: usize, started: Instant) -> f64 {
    Pass::since(ops, started).per_second()
}

/// The least time one run of a workload is timed for: a run repeats its
/// pass (10 000 lookups, the batch upserts of 10 000 peers, 2 000 state
/// writes, 200 opens) until its timed parts add up to this. A SQLite
/// lookup pass takes about 30 ms, too short to time apart from the
/// machine's jitter.
pub(crate) const MIN_RUN: Duration = Duration::from_millis(500);

/// One pass of a workload: how many operations, and how long they took
/// (only the timed part: set-up outside it is not counted).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Pass {
    ops: usize,
    spent: Duration,
}

impl Pass {
    /// `ops` operations timed from `started`.
    pub(crate) fn since(ops: usize, started: Instant) -> Pass {
        Pass::new(ops, started.elapsed())
    }

    /// `ops` operations that took `spent` in all.
    pub(crate) fn new(ops: usize, spent: Duration) -> Pass {
        Pass { ops, spent }
    }

    fn add(self, other: Pass) -> Pass {
        Pass::new(self.ops + other.ops, self.spent + other.spent)
    }

    fn per_second(self) -> f64 {
        self.ops as f64 / self.spent.as_secs_f64().max(1e-9)
    }
}

/// `repeat` runs of `f`; each run calls it until the passes it timed take
/// [`MIN_RUN`] in all, and gives their ops/s.
pub(crate) async fn measure<F, Fut>(repeat: usize, mut f: F) -> Result<Vec<f64>, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Pass, String>>,
{
    let mut runs = Vec::with_capacity(repeat);
    for _ in 0..repeat {
        let mut run = f().await?;
        while run.spent < MIN_RUN {
            run = run.add(f().await?);
        }
        runs.push(run.per_second());
    }
    Ok(runs)
}

/// Like [`measure`], for synchronous engines measured on the calling thread.
pub(crate) fn measure_sync(
    repeat: usize,
    mut f: impl FnMut() -> Result<Pass, String>,
) -> Result<Vec<f64>, String> {
    let mut runs = Vec::with_capacity(repeat);
    for _ in 0..repeat {
        let mut run = f()?;
        while run.spent < MIN_RUN {
            run = run.add(f()?);
        }
        runs.push(run.per_second());
    }
    Ok(runs)
}

pub(crate) fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// A store configuration to measure on the mtsession side.
pub(crate) struct StoreSide<'a> {
    /// The label of the backend row (`sqlite`, `sqlite write-behind`, ...).
    pub(crate) label: &'a str,
    /// How to open the store (the open workload calls it repeatedly).
    pub(crate) url: String,
    /// Whether to measure the lookups and upserts (a second durability
    /// configuration measures only the update-state writes).
    pub(crate) all: bool,
    /// Peers of the store the open workload opens.
    pub(crate) open_peers: i64,
}

/// Every workload on an mtsession store.
pub(crate) async fn store_side(
    side: &StoreSide<'_>,
    config: &Config,
) -> Result<Vec<Measure>, String> {
    let label = side.label;
    let mut out = Vec::new();
    let store = mtsession::open(&side.url).await.map_err(err)?;
    let n = config.peers;
    let all: Vec<Peer> = (FIRST_ID..FIRST_ID + n).map(peer).collect();
    if side.all {
        let runs = upsert_new_runs(&store, &all, config.repeat).await?;
        out.push(Measure::new(label, UPSERT_NEW, "mtsession", runs));

        let _ = store.delete("bench-lookups").await;
        let session = store.open("bench-lookups").await.map_err(err)?;
        for batch in all.chunks(1_000) {
            session.cache_peers(batch).await.map_err(err)?;
        }
        session
            .set_auth_key(2, Some(AuthKey::new([7; 256])))
            .await
            .map_err(err)?;
        let runs = upsert_existing_runs(&session, &all, config.repeat).await?;
        out.push(Measure::new(label, UPSERT_EXISTING, "mtsession", runs));

        let ids = shuffled(n);
        let runs = lookup_by_id_runs(&session, &ids, config.repeat).await?;
        out.push(Measure::new(label, LOOKUP_ID, "mtsession", runs));
        let runs = measure(config.repeat, || {
            let session = session.clone();
            let ids = &ids;
            async move {
                let started = Instant::now();
                for id in ids {
                    session
                        .peer_by_username(&format!("user{id}"))
                        .await
                        .map_err(err)?
                        .ok_or("a username is missing")?;
                }
                Ok(Pass::since(ids.len(), started))
            }
        })
        .await?;
        out.push(Measure::new(label, LOOKUP_USERNAME, "mtsession", runs));
        let runs = measure(config.repeat, || {
            let session = session.clone();
            let ids = &ids;
            async move {
                let started = Instant::now();
                for id in ids {
                    session
                        .peer_by_phone(&format!("799900{id}"))
                        .await
                        .map_err(err)?
                        .ok_or("a phone is missing")?;
                }
                Ok(Pass::since(ids.len(), started))
            }
        })
        .await?;
        out.push(Measure::new(label, LOOKUP_PHONE, "mtsession", runs));
    } else {
        let _ = store.open("bench-lookups").await.map_err(err)?;
    }

    let session = store.open("bench-lookups").await.map_err(err)?;
    let mut pts = 0;
    let runs = measure(config.repeat, || {
        let session = session.clone();
        let start = pts;
        pts += STATE_WRITES as i32;
        async move {
            let started = Instant::now();
            for i in 0..STATE_WRITES as i32 {
                session
                    .set_update_state(UpdateStateChange::Primary {
                        pts: start + i,
                        date: 1_700_000_000,
                        seq: start + i,
                    })
                    .await
                    .map_err(err)?;
            }
            session.store().flush().await.map_err(err)?;
            Ok(Pass::since(STATE_WRITES, started))
        }
    })
    .await?;
    out.push(Measure::new(label, STATE, "mtsession", runs));

    if side.all && side.open_peers > 0 {
        prepare_open_store(&store, side.open_peers).await?;
        store.flush().await.map_err(err)?;
        drop(session);
        drop(store);
        let runs = measure(config.repeat, || {
            let url = side.url.clone();
            async move {
                let started = Instant::now();
                for _ in 0..OPENS {
                    let store = mtsession::open(&url).await.map_err(err)?;
                    let session = store.session("bench-open").map_err(err)?;
                    session
                        .home_auth_key()
                        .await
                        .map_err(err)?
                        .ok_or("the home key is missing")?;
                }
                Ok(Pass::since(OPENS, started))
            }
        })
        .await?;
        out.push(Measure::new(label, OPEN, "mtsession", runs));
    }
    Ok(out)
}

/// A session `bench-open` with `peers` peers and a home key.
async fn prepare_open_store(store: &Store, peers: i64) -> Result<(), String> {
    if store
        .peer_count("bench-open")
        .await
        .is_ok_and(|n| n == peers as u64)
    {
        return Ok(());
    }
    fill(store, "bench-open", peers).await
}

/// Session `name` of `store`, made afresh with `peers` workload peers (in
/// batches of 5 000) and a home key.
pub(crate) async fn fill(store: &Store, name: &str, peers: i64) -> Result<(), String> {
    let _ = store.delete(name).await;
    let session = store.open(name).await.map_err(err)?;
    let mut id = FIRST_ID;
    while id < FIRST_ID + peers {
        let end = (id + 5_000).min(FIRST_ID + peers);
        let batch: Vec<Peer> = (id..end).map(peer).collect();
        session.cache_peers(&batch).await.map_err(err)?;
        id = end;
    }
    session
        .set_auth_key(2, Some(AuthKey::new([7; 256])))
        .await
        .map_err(err)
}

/// Runs of batch upserts of `all` into a new session of `store` each pass
/// (only the upserts timed).
async fn upsert_new_runs(store: &Store, all: &[Peer], repeat: usize) -> Result<Vec<f64>, String> {
    let mut pass = 0;
    measure(repeat, || {
        pass += 1;
        async move {
            let name = format!("bench-upsert-{pass}");
            let _ = store.delete(&name).await;
            let session = store.open(&name).await.map_err(err)?;
            let started = Instant::now();
            for batch in all.chunks(BATCH) {
                session.cache_peers(batch).await.map_err(err)?;
            }
            let spent = started.elapsed();
            store.delete(&name).await.map_err(err)?;
            Ok(Pass::new(all.len(), spent))
        }
    })
    .await
}

/// Runs of batch upserts of `all` into `session`, which holds them.
async fn upsert_existing_runs(
    session: &Session,
    all: &[Peer],
    repeat: usize,
) -> Result<Vec<f64>, String> {
    measure(repeat, || async move {
        let started = Instant::now();
        for batch in all.chunks(BATCH) {
            session.cache_peers(batch).await.map_err(err)?;
        }
        Ok(Pass::since(all.len(), started))
    })
    .await
}

/// Runs of lookups by id of `ids` in `session`.
async fn lookup_by_id_runs(
    session: &Session,
    ids: &[i64],
    repeat: usize,
) -> Result<Vec<f64>, String> {
    measure(repeat, || async move {
        let started = Instant::now();
        for id in ids {
            let id = PeerId::user(*id).map_err(err)?;
            session
                .peer(id)
                .await
                .map_err(err)?
                .ok_or("a peer is missing")?;
        }
        Ok(Pass::since(ids.len(), started))
    })
    .await
}

/// Measures one backend: the mtsession store and the raw engine, in turns.
///
/// Each of `config.repeat` rounds runs every workload once on the store and
/// once on the raw engine, back to back (the store first in even rounds,
/// the raw engine first in odd ones), so that a change in the machine's
/// speed during the run (figures here move by half from one minute to the
/// next) falls on both sides of a ratio; the report divides the runs of
/// each round and takes the median of those ratios.
pub(crate) async fn run_backend(backend: &str, config: &Config) -> Result<Vec<Measure>, String> {
    if backend == "memory" {
        return memory(config).await;
    }
    let dir = tempfile::tempdir().map_err(err)?;
    if backend == "postgres" || backend == "mysql" {
        prime_statistics(backend, config).await?;
    }
    let once = config.once();
    let mut out = Vec::new();
    for round in 0..config.repeat {
        // The raw engine's files are made afresh each round; the store's
        // are reused (each store workload clears what it writes first).
        let raw_dir = dir.path().join(format!("raw-{round}"));
        std::fs::create_dir(&raw_dir).map_err(err)?;
        let mut this = Vec::new();
        if round % 2 == 0 {
            this.extend(store_sides(backend, &once, dir.path()).await?);
            this.extend(raw_side(backend, &once, &raw_dir).await?);
        } else {
            this.extend(raw_side(backend, &once, &raw_dir).await?);
            this.extend(store_sides(backend, &once, dir.path()).await?);
        }
        Measure::merge_into(&mut out, this);
        std::fs::remove_dir_all(&raw_dir).map_err(err)?;
    }
    for m in &mut out {
        m.in_turns = true;
    }
    Ok(out)
}

/// The memory store: every workload on full peers (no raw engine), then the
/// `id+kind+hash` rows and grammers' `MemorySession` in turns.
async fn memory(config: &Config) -> Result<Vec<Measure>, String> {
    let mut out = store_side(
        &StoreSide {
            label: "memory",
            url: "memory:".into(),
            all: true,
            open_peers: 0,
        },
        config,
    )
    .await?;
    let once = config.once();
    let (mut lean, mut grammers) = (Vec::new(), Vec::new());
    for _ in 0..config.repeat {
        Measure::merge_into(&mut lean, memory_lean(&once).await?);
        Measure::merge_into(&mut grammers, raw::grammers_memory(&once).await?);
    }
    // grammers keeps id, kind and hash only: its figures are the peer of
    // both memory rows; the lean rows took turns with them, the full
    // `memory` rows did not (their ratios divide medians).
    let turns = |m: Measure| Measure {
        in_turns: true,
        ..m
    };
    out.extend(lean.into_iter().map(turns));
    out.extend(grammers.iter().map(|m| {
        turns(Measure {
            backend: MEMORY_LEAN.to_owned(),
            ..m.clone()
        })
    }));
    out.extend(grammers);
    Ok(out)
}

/// The URL of the PostgreSQL or MySQL server.
fn sql_url<'a>(backend: &str, config: &'a Config) -> &'a str {
    if backend == "postgres" {
        &config.postgres_url
    } else {
        &config.mysql_url
    }
}

/// The URL of the mtsession store on the PostgreSQL or MySQL server.
fn sql_store_url(backend: &str, config: &Config) -> String {
    with_option(sql_url(backend, config), "table_prefix=bench_")
}

/// One run of every workload on the mtsession store(s) of `backend`,
/// whose files (if any) are in `dir`.
async fn store_sides(backend: &str, config: &Config, dir: &Path) -> Result<Vec<Measure>, String> {
    let side = |label, url, open_peers| StoreSide {
        label,
        url,
        all: true,
        open_peers,
    };
    match backend {
        "sqlite" => {
            let path = dir.join("store.sqlite");
            let mut out = store_side(
                &side(
                    "sqlite",
                    format!("sqlite:{}", path.display()),
                    config.open_peers,
                ),
                config,
            )
            .await?;
            let behind = dir.join("behind.sqlite");
            out.extend(
                store_side(
                    &StoreSide {
                        label: "sqlite write-behind",
                        url: format!(
                            "sqlite:{}?durability=write-behind&max_delay_ms={}",
                            behind.display(),
                            WRITE_BEHIND_DELAY.as_millis()
                        ),
                        all: false,
                        open_peers: 0,
                    },
                    config,
                )
                .await?,
            );
            Ok(out)
        }
        "sled" => {
            let path = dir.join("store.sled");
            store_side(
                &side(
                    "sled",
                    format!("sled:{}", path.display()),
                    config.open_peers,
                ),
                config,
            )
            .await
        }
        "redis" => {
            let url = with_option(&config.redis_url, "prefix=mtsession-bench");
            store_side(&side("redis", url, config.peers), config).await
        }
        "postgres" | "mysql" => {
            store_side(
                &side(backend, sql_store_url(backend, config), config.peers),
                config,
            )
            .await
        }
        "mongo" => {
            store_side(
                &side("mongo", config.mongo_url.clone(), config.peers),
                config,
            )
            .await
        }
        other => Err(format!("unknown backend {other:?}")),
    }
}

/// One run of every workload on the raw engine of `backend`, whose files
/// (if any) go to `dir`.
async fn raw_side(backend: &str, config: &Config, dir: &Path) -> Result<Vec<Measure>, String> {
    match backend {
        "sqlite" => raw::sqlite(config, dir).await,
        "sled" => raw::sled(config, dir).await,
        "redis" => raw::redis(config).await,
        "postgres" | "mysql" => raw::sql(backend, sql_url(backend, config), config).await,
        "mongo" => raw::mongo(config).await,
        other => Err(format!("unknown backend {other:?}")),
    }
}

/// Gives the planner statistics for the store's tables before they are
/// measured, as the raw side has for its own: loads a session of
/// `config.peers` peers, runs `ANALYZE` (autovacuum is off on the test
/// server, and a plan made while a table was empty scans it) and deletes it.
async fn prime_statistics(backend: &str, config: &Config) -> Result<(), String> {
    use sqlx::Connection as _;
    let base = sql_url(backend, config);
    let store = mtsession::open(&sql_store_url(backend, config))
        .await
        .map_err(err)?;
    let _ = store.delete("bench-warm-up").await;
    let session = store.open("bench-warm-up").await.map_err(err)?;
    let all: Vec<Peer> = (FIRST_ID..FIRST_ID + config.peers).map(peer).collect();
    for batch in all.chunks(1_000) {
        session.cache_peers(batch).await.map_err(err)?;
    }
    if backend == "postgres" {
        let mut conn = sqlx::PgConnection::connect(base).await.map_err(err)?;
        sqlx::query(
            "ANALYZE bench_sessions, bench_peers, bench_peer_usernames, bench_dc_options, \
             bench_channel_pts, bench_sent_files",
        )
        .execute(&mut conn)
        .await
        .map_err(err)?;
    } else {
        let mut conn = sqlx::MySqlConnection::connect(base).await.map_err(err)?;
        sqlx::query(
            "ANALYZE TABLE bench_sessions, bench_peers, bench_peer_usernames, \
             bench_dc_options, bench_channel_pts, bench_sent_files",
        )
        .execute(&mut conn)
        .await
        .map_err(err)?;
    }
    store.delete("bench-warm-up").await.map_err(err)?;
    Ok(())
}

/// `url` with one more query option.
pub(crate) fn with_option(url: &str, option: &str) -> String {
    if url.contains('?') {
        format!("{url}&{option}")
    } else {
        format!("{url}?{option}")
    }
}
