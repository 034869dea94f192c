//! Criterion benchmarks of the Redis store: the shared workloads of
//! `session_conformance::bench` on `RedisStore` and on `MemoryStore`, and,
//! in the same run, the same work done with redis-rs directly on the same
//! key shapes (one hash per kind of data per session, and the username and
//! phone index hashes) as the engine's floor.
//!
//! Needs the Redis at `MTSESSION_TEST_REDIS_URL` (default
//! `redis://127.0.0.1:6379`); everything is written under fresh
//! `mtsession-bench:*` prefixes that are removed at the end.
//!
//! Run with `cargo bench -p session-redis`.

use std::hint::black_box;
use std::sync::LazyLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::{
    BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime,
};
use redis::aio::MultiplexedConnection;
use redis::{AsyncCommands, Script};
use session_conformance::bench::{self, BATCH, BenchTarget, FIRST_ID, PEERS, peer, shuffled_ids};
use session_core::{Peer, Store};
use session_redis::RedisStore;
use tokio::runtime::Runtime;

fn url() -> String {
    std::env::var("MTSESSION_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn unique(kind: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("mtsession-bench:{kind}:{}-{nanos:x}", std::process::id())
}

async fn connect(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .expect("a Redis URL")
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("the benchmarks need Redis (MTSESSION_TEST_REDIS_URL): {e}"))
}

async fn drop_prefix(url: &str, prefix: &str) {
    let mut con = connect(url).await;
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut con)
            .await
            .expect("scan");
        if !keys.is_empty() {
            let _: i64 = con.del(keys).await.expect("del");
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

/// The raw engine's form of a peer record: the JSON object the store writes.
fn raw_record(peer: &Peer) -> String {
    let usernames = peer.usernames.clone().unwrap_or_default();
    serde_json::json!({
        "i": peer.id.marked().to_string(),
        "t": peer.kind.map(|k| k.code()),
        "h": peer.access_hash.map(|h| h.value.to_string()),
        "m": peer.access_hash.map(|h| h.min),
        "u": usernames,
        "k": peer.username_keys(),
        "p": peer.phone,
        "n": peer.name,
    })
    .to_string()
}

/// The raw engine's index lookup in one round trip, as the store does it.
static RAW_BY_INDEX: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local id = redis.call('HGET', KEYS[1], ARGV[1])
if not id then return false end
return redis.call('HGET', KEYS[2], id)
",
    )
});

struct RawKeys {
    peers: String,
    uname: String,
    phone: String,
    state: String,
    dcs: String,
    meta: String,
}

impl RawKeys {
    fn new(prefix: &str, session: &str) -> Self {
        let base = format!("{prefix}:s:{{{}}}", hex::encode(session));
        RawKeys {
            peers: format!("{base}:peers"),
            uname: format!("{base}:uname"),
            phone: format!("{base}:phone"),
            state: format!("{base}:state"),
            dcs: format!("{base}:dcs"),
            meta: format!("{base}:meta"),
        }
    }
}

/// Upserts peers the way an application on redis-rs would: one pipeline
/// per batch writing the records and both indexes, reading nothing.
async fn raw_upsert(con: &mut MultiplexedConnection, keys: &RawKeys, peers: &[Peer]) {
    let mut pipe = redis::pipe();
    let records: Vec<(i64, String)> = peers
        .iter()
        .map(|p| (p.id.marked(), raw_record(p)))
        .collect();
    pipe.hset_multiple(&keys.peers, &records).ignore();
    let names: Vec<(String, i64)> = peers
        .iter()
        .flat_map(|p| {
            p.username_keys()
                .into_iter()
                .map(move |k| (k, p.id.marked()))
        })
        .collect();
    pipe.hset_multiple(&keys.uname, &names).ignore();
    let phones: Vec<(String, i64)> = peers
        .iter()
        .filter_map(|p| p.phone.clone().map(|ph| (ph, p.id.marked())))
        .collect();
    pipe.hset_multiple(&keys.phone, &phones).ignore();
    let () = pipe.query_async(con).await.expect("raw upsert");
}

fn group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    group
}

/// The shared workloads, done with redis-rs alone on the same key shapes.
fn raw_baseline(c: &mut Criterion, rt: &Runtime, url: &str, prefix: &str) {
    const LABEL: &str = "raw redis-rs";
    let mut con = rt.block_on(connect(url));
    let mut group = group(c, "redis");
    let all: Vec<Peer> = (FIRST_ID..FIRST_ID + PEERS).map(peer).collect();

    let mut round = 0u64;
    group.bench_function(
        format!("upsert {PEERS} peers in batches of {BATCH}/{LABEL}"),
        |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    round += 1;
                    let keys = RawKeys::new(prefix, &format!("bench-upsert-{round}"));
                    rt.block_on(async {
                        let started = Instant::now();
                        for batch in all.chunks(BATCH) {
                            raw_upsert(&mut con, &keys, batch).await;
                        }
                        total += started.elapsed();
                        let _: i64 = con
                            .del(&[&keys.peers, &keys.uname, &keys.phone])
                            .await
                            .expect("del");
                    });
                }
                total
            });
        },
    );

    let keys = RawKeys::new(prefix, "bench-lookups");
    rt.block_on(async {
        for batch in all.chunks(1_000) {
            raw_upsert(&mut con, &keys, batch).await;
        }
        let () = con
            .hset_multiple(&keys.meta, &[("home_dc", "2"), ("created", "1")])
            .await
            .expect("meta");
        let () = con.hset(&keys.dcs, 2, vec![4u8; 257]).await.expect("dc");
    });
    let ids = shuffled_ids();
    let mut at = 0usize;
    let mut next = || {
        at = (at + 1) % ids.len();
        ids[at]
    };
    group.bench_function(format!("lookup by id/{LABEL}"), |b| {
        b.iter(|| {
            let raw: Option<Vec<u8>> = rt.block_on(con.hget(&keys.peers, next())).expect("lookup");
            black_box(raw);
        });
    });
    group.bench_function(format!("lookup by username/{LABEL}"), |b| {
        b.iter(|| {
            let name = format!("user{}", next());
            let raw: Option<Vec<u8>> = rt
                .block_on(
                    RAW_BY_INDEX
                        .key(&keys.uname)
                        .key(&keys.peers)
                        .arg(name)
                        .invoke_async(&mut con),
                )
                .expect("lookup");
            black_box(raw);
        });
    });
    group.bench_function(format!("lookup by phone/{LABEL}"), |b| {
        b.iter(|| {
            let phone = format!("799900{}", next());
            let raw: Option<Vec<u8>> = rt
                .block_on(
                    RAW_BY_INDEX
                        .key(&keys.phone)
                        .key(&keys.peers)
                        .arg(phone)
                        .invoke_async(&mut con),
                )
                .expect("lookup");
            black_box(raw);
        });
    });
    let mut pts = 0;
    group.bench_function(format!("update-state write/{LABEL}"), |b| {
        b.iter(|| {
            pts += 1;
            let () = rt
                .block_on(con.hset_multiple(
                    &keys.state,
                    &[("pts", pts), ("date", 1_700_000_000), ("seq", pts)],
                ))
                .expect("write");
        });
    });
    group.bench_function(format!("set DC option/{LABEL}"), |b| {
        b.iter(|| {
            let () = rt
                .block_on(con.hset(&keys.dcs, 4, vec![0u8; 1]))
                .expect("write");
        });
    });
    group.bench_function(format!("open + read the home key/{LABEL}"), |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut fresh = connect(url).await;
                let (home, dcs): (Option<i32>, std::collections::HashMap<i32, Vec<u8>>) =
                    redis::pipe()
                        .hget(&keys.meta, "home_dc")
                        .hgetall(&keys.dcs)
                        .query_async(&mut fresh)
                        .await
                        .expect("read");
                black_box(home.and_then(|h| dcs.get(&h).cloned()));
            });
        });
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let rt = Runtime::new().expect("a Tokio runtime");
    let url = url();
    let store_prefix = unique("store");
    let raw_prefix = unique("raw");
    let target = {
        let url = url.clone();
        let prefix = store_prefix.clone();
        BenchTarget::new("redis", move || {
            let url = url.clone();
            let prefix = prefix.clone();
            async move {
                let store = RedisStore::builder(&url).prefix(prefix).open().await?;
                Ok(Store::new(store))
            }
        })
    };
    bench::run(c, "redis", vec![BenchTarget::memory(), target]);
    raw_baseline(c, &rt, &url, &raw_prefix);
    rt.block_on(async {
        drop_prefix(&url, &store_prefix).await;
        drop_prefix(&url, &raw_prefix).await;
    });
}

criterion_group!(redis_benches, benches);
criterion_main!(redis_benches);
