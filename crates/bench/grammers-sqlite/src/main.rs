//! grammers-session 0.11's own `SqliteSession` on the workloads of
//! `mtsession-bench`, the peer of mtsession's SQLite store.
//!
//! A separate program outside the mtsession workspace: `SqliteSession` runs
//! on libsql, whose bundled SQLite must not be linked beside rusqlite's.
//! `cargo xtask bench --compare --with-peer-libraries` builds and runs it and
//! hands its output to `mtsession-bench --extra-measures FILE`.
//!
//! ```text
//! mtsession-bench-grammers-sqlite --dir DIR [--open-peers N] [--peers M] [--repeat R]
//! ```
//!
//! Prints one JSON line per workload to stdout:
//! `{"backend":"sqlite","workload":"…","engine":"grammers","runs":[ops/s, …]}`.
//! The workload names, peer ids and hashes, batch sizes and the shuffled
//! lookup order are those of `crates/bench/src/workload.rs` and of
//! `raw::grammers_memory` there.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use grammers_session::storages::SqliteSession;
use grammers_session::types::{PeerAuth, PeerId, PeerInfo};
use grammers_session::{Session, SessionData};

type AnyError = Box<dyn std::error::Error + Send + Sync>;

/// The first peer id (`workload::FIRST_ID`).
const FIRST_ID: i64 = 10_000;
/// Peers per batch in the upsert workloads (`workload::BATCH`).
const BATCH: usize = 100;
/// Opens per run of the open workload (`workload::OPENS`).
const OPENS: usize = 200;
/// Peers per `cache_peers` call while a session is filled.
const FILL_BATCH: usize = 5_000;
/// The home DC of the opened session, with [`HOME_KEY`].
const HOME_DC: i32 = 2;
const HOME_KEY: [u8; 256] = [7; 256];

/// Workload names, exactly as `crates/bench/src/workload.rs` spells them.
const LOOKUP_ID: &str = "lookup by id";
const UPSERT_NEW: &str = "batch upsert (100 per batch), new peers";
const UPSERT_EXISTING: &str = "batch upsert (100 per batch), peers exist";
const OPEN: &str = "open the store + read the home key";

/// What to run.
struct Args {
    /// Where the session files go (created if missing).
    dir: PathBuf,
    /// Peers of the session the open workload opens (0: no open workload).
    open_peers: i64,
    /// Peers of the session the upserts and lookups run on.
    peers: i64,
    /// Runs of each workload.
    repeat: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut dir = None;
    let mut open_peers = 100_000;
    let mut peers = 10_000;
    let mut repeat = 3;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        let count = |name: &str, value: String| {
            value
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| format!("{name} takes a number"))
        };
        match arg.as_str() {
            "--dir" => dir = Some(PathBuf::from(value("--dir")?)),
            "--open-peers" => open_peers = count("--open-peers", value("--open-peers")?)?,
            "--peers" => peers = count("--peers", value("--peers")?)?,
            "--repeat" => {
                repeat = value("--repeat")?
                    .parse()
                    .map_err(|_| "--repeat takes a number")?;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        dir: dir.ok_or("--dir DIR is required")?,
        open_peers,
        peers,
        repeat,
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!(
                "mtsession-bench-grammers-sqlite: {e}\n\
                 usage: mtsession-bench-grammers-sqlite --dir DIR [--open-peers N] [--peers M] [--repeat R]"
            );
            return ExitCode::from(2);
        }
    };
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mtsession-bench-grammers-sqlite: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> Result<(), AnyError> {
    std::fs::create_dir_all(&args.dir)?;
    let all: Vec<i64> = (FIRST_ID..FIRST_ID + args.peers).collect();

    let mut runs = Vec::with_capacity(args.repeat);
    for round in 0..args.repeat {
        let path = args.dir.join(format!("upsert-{round}.session"));
        remove_session(&path)?;
        let session = SqliteSession::open(&path).await?;
        let started = Instant::now();
        for batch in all.chunks(BATCH) {
            session.cache_peers(peers(batch)).await?;
        }
        runs.push(rate(all.len(), started));
        drop(session);
        remove_session(&path)?;
    }
    print_measure(UPSERT_NEW, &runs);

    let path = args.dir.join("lookups.session");
    let session = filled(&path, args.peers).await?;
    let mut runs = Vec::with_capacity(args.repeat);
    for _ in 0..args.repeat {
        let started = Instant::now();
        for batch in all.chunks(BATCH) {
            session.cache_peers(peers(batch)).await?;
        }
        runs.push(rate(all.len(), started));
    }
    print_measure(UPSERT_EXISTING, &runs);

    let ids = shuffled(args.peers);
    let mut runs = Vec::with_capacity(args.repeat);
    for _ in 0..args.repeat {
        let started = Instant::now();
        for id in &ids {
            let peer = PeerId::user(*id).ok_or("a workload id is not a user id")?;
            session.peer(peer).await?.ok_or("a peer is missing")?;
        }
        runs.push(rate(ids.len(), started));
    }
    print_measure(LOOKUP_ID, &runs);
    drop(session);
    remove_session(&path)?;

    if args.open_peers > 0 {
        let path = args.dir.join("open.session");
        drop(filled(&path, args.open_peers).await?);
        let mut runs = Vec::with_capacity(args.repeat);
        for _ in 0..args.repeat {
            let started = Instant::now();
            for _ in 0..OPENS {
                let session = SqliteSession::open(&path).await?;
                let home = session.home_dc_id()?;
                let key = session
                    .dc_option(home)?
                    .and_then(|dc| dc.auth_key)
                    .ok_or("the home key is missing")?;
                std::hint::black_box(key);
            }
            runs.push(rate(OPENS, started));
        }
        print_measure(OPEN, &runs);
        remove_session(&path)?;
    }
    Ok(())
}

/// The workload peers of `ids`, with only what grammers keeps: id, kind
/// (user) and hash (as `raw::grammers_memory` builds them).
fn peers(ids: &[i64]) -> Vec<PeerInfo> {
    ids.iter()
        .map(|&id| PeerInfo::User {
            id,
            auth: Some(PeerAuth::from_hash(id.wrapping_mul(0x9E37_79B9))),
            bot: Some(false),
            is_self: Some(false),
        })
        .collect()
}

/// A new session file at `path` with `n` workload peers (in batches of
/// [`FILL_BATCH`]) and the home DC [`HOME_DC`] holding [`HOME_KEY`].
async fn filled(path: &Path, n: i64) -> Result<SqliteSession, AnyError> {
    eprintln!(
        "mtsession-bench-grammers-sqlite: writing {n} peers to {}",
        path.display()
    );
    remove_session(path)?;
    let session = SqliteSession::open(path).await?;
    let ids: Vec<i64> = (FIRST_ID..FIRST_ID + n).collect();
    for batch in ids.chunks(FILL_BATCH) {
        session.cache_peers(peers(batch)).await?;
    }
    let mut home = SessionData::default()
        .dc_options
        .remove(&HOME_DC)
        .ok_or("DC 2 is not one of grammers' known DCs")?;
    home.auth_key = Some(HOME_KEY);
    session.set_dc_option(&home).await?;
    session.set_home_dc_id(HOME_DC).await?;
    Ok(session)
}

/// Removes the session file at `path` and its journals, if any.
fn remove_session(path: &Path) -> std::io::Result<()> {
    for suffix in ["", "-journal", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        match std::fs::remove_file(&name) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// `0..n` shifted to the workload ids, in the fixed shuffled order of
/// `workload::shuffled`.
fn shuffled(n: i64) -> Vec<i64> {
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
fn rate(ops: usize, started: Instant) -> f64 {
    ops as f64 / started.elapsed().as_secs_f64().max(1e-9)
}

/// One JSON line: the runs of `workload` on grammers' `SqliteSession`.
/// (The names hold nothing JSON would escape; the rates are finite.)
fn print_measure(workload: &str, runs: &[f64]) {
    let runs: Vec<String> = runs.iter().map(|r| format!("{r:.1}")).collect();
    println!(
        "{{\"backend\":\"sqlite\",\"workload\":\"{workload}\",\"engine\":\"grammers\",\"runs\":[{}]}}",
        runs.join(",")
    );
}
