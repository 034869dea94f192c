//! Criterion benchmarks of session-sql on SQLite, PostgreSQL and
//! MySQL/MariaDB, each next to the same workload on `MemoryStore` measured in
//! the same run as the baseline.
//!
//! The servers come from `MTSESSION_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) and `MTSESSION_TEST_MYSQL_URL`
//! (default `mysql://root@127.0.0.1:3306/test`); `MTSESSION_BENCH_ENGINES`
//! (default `sqlite,postgres,mysql`) picks the engines. Every table is
//! written under a fresh prefix that is dropped at the end, and the SQLite
//! file lives in a temporary directory.
//!
//! Run with `cargo bench -p session-sql`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main};
use session_core::{
    AuthKey, DcOption, DynStore, MemoryStore, Peer, PeerId, PeerKind, SessionData, SessionStoreExt,
    UpdateStateChange,
};
use session_sql::{Engine, SqlStore, SqlStoreBuilder};
use tokio::runtime::Runtime;

const PEERS: i64 = 10_000;
const BATCH: usize = 100;
const BIG: i64 = 100_000;

fn peer(i: i64, seen: i64) -> Peer {
    let mut peer = Peer::new(PeerId::user(i).expect("positive id"))
        .with_kind(PeerKind::User)
        .with_hash(i.wrapping_mul(0x9E37_79B9))
        .with_username(format!("User{i}"))
        .with_phone(format!("7900{i:07}"))
        .with_name(format!("User number {i}"));
    peer.last_seen = Some(seen);
    peer
}

/// One engine under test, and how to open it again.
struct Target {
    name: &'static str,
    builder: SqlStoreBuilder,
    sql: SqlStore,
    store: DynStore,
}

struct Env {
    rt: Runtime,
    memory: DynStore,
    targets: Vec<Target>,
    _dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let rt = Runtime::new().expect("tokio runtime");
        let dir = tempfile::tempdir().expect("temporary directory");
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let prefix = format!("bench_{:x}_{nanos:x}_", std::process::id());
        let engines = std::env::var("MTSESSION_BENCH_ENGINES")
            .unwrap_or_else(|_| "sqlite,postgres,mysql".to_owned());
        let mut targets = Vec::new();
        for engine in engines.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, url) = match engine {
                "sqlite" => (
                    "sqlite",
                    format!("sqlite:{}/bench.db", dir.path().display()),
                ),
                "postgres" => (
                    "postgres",
                    std::env::var("MTSESSION_TEST_POSTGRES_URL")
                        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned()),
                ),
                "mysql" => (
                    "mysql",
                    std::env::var("MTSESSION_TEST_MYSQL_URL")
                        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_owned()),
                ),
                other => panic!("MTSESSION_BENCH_ENGINES: unknown engine {other:?}"),
            };
            let builder = SqlStore::builder(&url)
                .expect("URL")
                .table_prefix(&prefix)
                .expect("prefix");
            let store = rt
                .block_on(builder.clone().open())
                .unwrap_or_else(|e| panic!("the {name} benchmarks need their database: {e}"));
            targets.push(Target {
                name,
                builder,
                store: Arc::new(store.clone()),
                sql: store,
            });
        }
        Env {
            rt,
            memory: Arc::new(MemoryStore::new()),
            targets,
            _dir: dir,
        }
    }

    /// Refreshes planner statistics after loading, as autovacuum would
    /// (the test PostgreSQL runs with autovacuum off).
    fn analyze(&self) {
        for target in &self.targets {
            self.rt.block_on(target.sql.analyze()).expect("analyze");
        }
    }

    fn stores(&self) -> Vec<(&'static str, DynStore)> {
        let mut stores = vec![("memory", Arc::clone(&self.memory))];
        stores.extend(self.targets.iter().map(|t| (t.name, Arc::clone(&t.store))));
        stores
    }
}

impl Drop for Env {
    /// Drops every table the run wrote, whatever happened.
    fn drop(&mut self) {
        for target in &self.targets {
            if target.builder.engine() != Engine::Sqlite {
                let _ = self.rt.block_on(target.builder.clone().drop_tables());
            }
        }
    }
}

fn fill(rt: &Runtime, store: &DynStore, session: &str) {
    rt.block_on(async {
        let _ = store.delete(session).await;
        store.create(session).await.expect("create");
        let peers: Vec<Peer> = (1..=PEERS).map(|i| peer(i, 0)).collect();
        for chunk in peers.chunks(BATCH) {
            store.cache_peers(session, chunk).await.expect("fill");
        }
    });
}

fn benches(c: &mut Criterion) {
    let env = Env::new();
    let rt = &env.rt;
    let stores = env.stores();

    // Each round marks every peer as seen again, so every batch writes.
    for (_, store) in &stores {
        fill(rt, store, "upsert");
    }
    env.analyze();
    let mut group = c.benchmark_group("upsert 10k peers in batches of 100");
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    for (name, store) in &stores {
        let round = std::sync::atomic::AtomicI64::new(1);
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let seen = round.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let peers: Vec<Peer> = (1..=PEERS).map(|i| peer(i, seen)).collect();
                    for chunk in peers.chunks(BATCH) {
                        store.cache_peers("upsert", chunk).await.expect("upsert");
                    }
                })
            });
        });
    }
    group.finish();

    for (_, store) in &stores {
        fill(rt, store, "lookups");
    }
    env.analyze();
    let ids: Vec<PeerId> = (1..=PEERS).map(|i| PeerId::user(i).expect("id")).collect();
    let mut group = c.benchmark_group("10k lookups by id, one call each");
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    for (name, store) in &stores {
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                rt.block_on(async {
                    for id in &ids {
                        let found = store
                            .peers("lookups", std::slice::from_ref(id))
                            .await
                            .expect("lookup");
                        assert!(found[0].is_some());
                    }
                })
            });
        });
    }
    group.finish();

    let usernames: Vec<String> = (1..=PEERS).map(|i| format!("user{i}")).collect();
    let mut group = c.benchmark_group("10k lookups by username");
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    for (name, store) in &stores {
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                rt.block_on(async {
                    for username in &usernames {
                        let found = store
                            .peer_by_username("lookups", username)
                            .await
                            .expect("lookup");
                        assert!(found.is_some());
                    }
                })
            });
        });
    }
    group.finish();

    let phones: Vec<String> = (1..=PEERS).map(|i| format!("7900{i:07}")).collect();
    let mut group = c.benchmark_group("10k lookups by phone");
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    for (name, store) in &stores {
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                rt.block_on(async {
                    for phone in &phones {
                        let found = store.peer_by_phone("lookups", phone).await.expect("lookup");
                        assert!(found.is_some());
                    }
                })
            });
        });
    }
    group.finish();

    // Half primary-state writes, half channel pts writes, each durable on return.
    let mut group = c.benchmark_group("10k update-state writes");
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    for (name, store) in &stores {
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                rt.block_on(async {
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
                })
            });
        });
    }
    group.finish();

    // A store holding 100 000 peers: open it and read the home auth key.
    let mut big = SessionData {
        peers: (1..=BIG).map(|i| peer(i, 0)).collect(),
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
    for (_, store) in &stores {
        rt.block_on(store.import("big", &big)).expect("import");
    }
    env.analyze();
    let mut group = c.benchmark_group("open a 100k-peer store and read the home auth key");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    let memory = Arc::clone(&env.memory);
    group.bench_function(BenchmarkId::from_parameter("memory"), |b| {
        // MemoryStore cannot be reopened; the baseline is the read alone.
        b.iter(|| {
            rt.block_on(async {
                let session = memory.session("big").expect("session");
                assert!(session.home_auth_key().await.expect("key").is_some());
            })
        });
    });
    for target in &env.targets {
        group.bench_function(BenchmarkId::from_parameter(target.name), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let store = target.builder.clone().open().await.expect("open");
                    let shared: DynStore = Arc::new(store.clone());
                    let session = shared.session("big").expect("session");
                    assert!(session.home_auth_key().await.expect("key").is_some());
                    drop(session);
                    drop(shared);
                    store.close().await.expect("close");
                })
            });
        });
    }
    group.finish();
}

criterion_group!(sql_benches, benches);
criterion_main!(sql_benches);
