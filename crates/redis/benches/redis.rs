//! Criterion benchmarks of the Redis store, each next to the same workload on
//! `MemoryStore` measured in the same run as the baseline.
//!
//! Needs the Redis at `MTSESSION_TEST_REDIS_URL` (default
//! `redis://127.0.0.1:6379`); everything is written under a fresh
//! `mtsession-bench:*` prefix that is removed at the end.
//!
//! Run with `cargo bench -p session-redis`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use session_core::{
    AuthKey, DcOption, DynStore, MemoryStore, Peer, PeerId, PeerKind, SessionData, SessionStoreExt,
    UpdateStateChange,
};
use session_redis::RedisStore;
use tokio::runtime::Runtime;

const PEERS: i64 = 10_000;
const BATCH: usize = 100;
const BIG: i64 = 100_000;

fn url() -> String {
    std::env::var("MTSESSION_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn prefix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("mtsession-bench:{}-{nanos:x}", std::process::id())
}

fn peer(i: i64) -> Peer {
    Peer::new(PeerId::user(i).expect("positive id"))
        .with_kind(PeerKind::User)
        .with_hash(i.wrapping_mul(0x9E37_79B9))
        .with_username(format!("User{i}"))
        .with_phone(format!("7900{i:07}"))
        .with_name(format!("User number {i}"))
}

struct Stores {
    rt: Runtime,
    prefix: String,
    stores: Vec<(&'static str, DynStore)>,
}

impl Stores {
    fn new() -> Stores {
        let rt = Runtime::new().expect("tokio runtime");
        let prefix = prefix();
        let redis = rt
            .block_on(RedisStore::builder(&url()).prefix(&prefix).open())
            .unwrap_or_else(|e| {
                panic!("the benchmarks need Redis (MTSESSION_TEST_REDIS_URL): {e}")
            });
        let stores: Vec<(&'static str, DynStore)> = vec![
            ("memory", Arc::new(MemoryStore::new())),
            ("redis", Arc::new(redis)),
        ];
        Stores { rt, prefix, stores }
    }

    /// Removes everything the run wrote.
    fn cleanup(&self) {
        self.rt.block_on(async {
            let client = redis::Client::open(url()).expect("client");
            let mut con = client
                .get_multiplexed_async_connection()
                .await
                .expect("connect");
            let mut cursor: u64 = 0;
            loop {
                let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(format!("{}:*", self.prefix))
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut con)
                    .await
                    .expect("scan");
                if !keys.is_empty() {
                    let _: i64 = redis::cmd("DEL")
                        .arg(&keys)
                        .query_async(&mut con)
                        .await
                        .expect("del");
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        });
    }
}

fn fill(rt: &Runtime, store: &DynStore, session: &str) {
    rt.block_on(async {
        let _ = store.delete(session).await;
        store.create(session).await.expect("create");
        let peers: Vec<Peer> = (1..=PEERS).map(peer).collect();
        for chunk in peers.chunks(BATCH) {
            store.cache_peers(session, chunk).await.expect("fill");
        }
    });
}

fn benches(c: &mut Criterion) {
    let env = Stores::new();
    let rt = &env.rt;
    let peers: Vec<Peer> = (1..=PEERS).map(peer).collect();

    let mut group = c.benchmark_group("upsert 10k peers in batches of 100");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    for (name, store) in &env.stores {
        rt.block_on(store.create("upsert")).expect("create");
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.to_async(rt).iter(|| async {
                for chunk in peers.chunks(BATCH) {
                    store.cache_peers("upsert", chunk).await.expect("upsert");
                }
            });
        });
    }
    group.finish();

    for (_, store) in &env.stores {
        fill(rt, store, "lookups");
    }
    let ids: Vec<PeerId> = (1..=PEERS).map(|i| PeerId::user(i).expect("id")).collect();
    let mut group = c.benchmark_group("10k lookups by id, one call each");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    for (name, store) in &env.stores {
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.to_async(rt).iter(|| async {
                for id in &ids {
                    let found = store
                        .peers("lookups", std::slice::from_ref(id))
                        .await
                        .expect("lookup");
                    assert!(found[0].is_some());
                }
            });
        });
    }
    group.finish();

    let mut group = c.benchmark_group("10k lookups by id, one batch");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    for (name, store) in &env.stores {
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.to_async(rt).iter(|| async {
                let found = store.peers("lookups", &ids).await.expect("lookup");
                assert_eq!(found.len(), ids.len());
            });
        });
    }
    group.finish();

    let usernames: Vec<String> = (1..=PEERS).map(|i| format!("user{i}")).collect();
    let mut group = c.benchmark_group("10k lookups by username");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    for (name, store) in &env.stores {
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.to_async(rt).iter(|| async {
                for username in &usernames {
                    let found = store
                        .peer_by_username("lookups", username)
                        .await
                        .expect("lookup");
                    assert!(found.is_some());
                }
            });
        });
    }
    group.finish();

    let phones: Vec<String> = (1..=PEERS).map(|i| format!("7900{i:07}")).collect();
    let mut group = c.benchmark_group("10k lookups by phone");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    for (name, store) in &env.stores {
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.to_async(rt).iter(|| async {
                for phone in &phones {
                    let found = store.peer_by_phone("lookups", phone).await.expect("lookup");
                    assert!(found.is_some());
                }
            });
        });
    }
    group.finish();

    let mut group = c.benchmark_group("10k update-state writes");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    for (name, store) in &env.stores {
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.to_async(rt).iter(|| async {
                for i in 0..10_000 {
                    let change = if i % 2 == 0 {
                        UpdateStateChange::Primary {
                            pts: i,
                            date: i,
                            seq: i,
                        }
                    } else {
                        UpdateStateChange::Channel {
                            id: i64::from(i % 100) + 1,
                            pts: i,
                        }
                    };
                    store
                        .set_update_state("lookups", &change)
                        .await
                        .expect("write");
                }
            });
        });
    }
    group.finish();

    // A store holding 100 000 peers: open it and read the home auth key.
    let mut big = SessionData {
        peers: (1..=BIG).map(peer).collect(),
        ..Default::default()
    };
    let home = big.home_dc;
    big.dcs = big
        .dcs
        .into_iter()
        .map(|dc| {
            if dc.id == home {
                DcOption {
                    auth_key: Some(AuthKey::new([7; 256])),
                    ..dc
                }
            } else {
                dc
            }
        })
        .collect();
    let memory: DynStore = Arc::new(MemoryStore::new());
    rt.block_on(memory.import("big", &big)).expect("import");
    rt.block_on(env.stores[1].1.import("big", &big))
        .expect("import");
    let mut group = c.benchmark_group("open a 100k-peer store and read the home auth key");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    group.bench_function(BenchmarkId::from_parameter("memory"), |b| {
        // MemoryStore cannot be reopened; the baseline is the read alone.
        b.to_async(rt).iter(|| async {
            let session = memory.session("big").expect("session");
            assert!(session.home_auth_key().await.expect("key").is_some());
        });
    });
    let url = url();
    let prefix = env.prefix.clone();
    group.bench_function(BenchmarkId::from_parameter("redis"), |b| {
        b.to_async(rt).iter(|| async {
            let store: DynStore = Arc::new(
                RedisStore::builder(&url)
                    .prefix(&prefix)
                    .open()
                    .await
                    .expect("open"),
            );
            let session = store.session("big").expect("session");
            assert!(session.home_auth_key().await.expect("key").is_some());
        });
    });
    group.finish();

    env.cleanup();
}

criterion_group!(redis_benches, benches);
criterion_main!(redis_benches);
