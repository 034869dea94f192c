//! SQLite store benchmarks, each beside a baseline measured in the same run:
//! the `MemoryStore` doing the same work, or (for opening) an empty file.
//!
//! Run with `cargo bench -p session-sqlite`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use session_core::{
    AuthKey, DcOption, Durability, MemoryStore, Peer, PeerId, PeerKind, SessionStore,
    SessionStoreExt, UpdateStateChange,
};
use session_sqlite::{SqliteOptions, SqliteStore};
use tokio::runtime::Runtime;

const PEERS: i64 = 10_000;
const BATCH: usize = 100;
const LOOKUPS: i64 = 10_000;
const STATE_WRITES: i64 = 10_000;
const IMMEDIATE_STATE_WRITES: i64 = 1_000;
const BIG_STORE_PEERS: i64 = 100_000;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn peer(i: i64) -> Peer {
    Peer::new(PeerId::user(i).expect("user id"))
        .with_kind(PeerKind::User)
        .with_hash(i.wrapping_mul(0x9E37_79B9))
        .with_username(format!("User_{i}"))
        .with_phone(format!("{}", 10_000_000 + i))
        .with_name(format!("Peer number {i}"))
}

fn peers(range: std::ops::RangeInclusive<i64>) -> Vec<Peer> {
    range.map(peer).collect()
}

fn sqlite(path: &Path, durability: Durability) -> Arc<dyn SessionStore> {
    Arc::new(
        SqliteStore::open_with(path, SqliteOptions::default().durability(durability))
            .expect("open"),
    )
}

struct Stores {
    _dir: tempfile::TempDir,
    /// One store per backend, by label.
    stores: Vec<(&'static str, Arc<dyn SessionStore>)>,
}

fn stores(durability: Durability) -> Stores {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bench.sqlite");
    Stores {
        stores: vec![
            (
                "memory",
                Arc::new(MemoryStore::new()) as Arc<dyn SessionStore>,
            ),
            ("sqlite", sqlite(&path, durability)),
        ],
        _dir: dir,
    }
}

fn configure(c: &mut Criterion) -> criterion::BenchmarkGroup<'_, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group("sqlite");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    group
}

fn upsert(c: &mut Criterion) {
    let rt = runtime();
    let set = stores(Durability::Immediate);
    let all = peers(1..=PEERS);
    let mut group = configure(c);
    for (label, store) in &set.stores {
        let mut round = 0u64;
        group.bench_function(
            format!("upsert {PEERS} peers in batches of {BATCH}/{label}"),
            |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        round += 1;
                        let name = format!("upsert-{round}");
                        rt.block_on(async {
                            store.create(&name).await.expect("create");
                            let started = Instant::now();
                            for batch in all.chunks(BATCH) {
                                store.cache_peers(&name, batch).await.expect("batch");
                            }
                            total += started.elapsed();
                            store.delete(&name).await.expect("delete");
                        });
                    }
                    total
                });
            },
        );
    }
    group.finish();
}

fn lookups(c: &mut Criterion) {
    let rt = runtime();
    let set = stores(Durability::Immediate);
    for (_, store) in &set.stores {
        rt.block_on(async {
            store.create("s").await.expect("create");
            for batch in peers(1..=PEERS).chunks(1_000) {
                store.cache_peers("s", batch).await.expect("fill");
            }
        });
    }
    let mut group = configure(c);
    // The floor under every SQLite call: a round trip through Tokio's blocking pool.
    group.bench_function(format!("{LOOKUPS} spawn_blocking round trips"), |b| {
        b.iter(|| {
            rt.block_on(async {
                for i in 1..=LOOKUPS {
                    let echoed = tokio::task::spawn_blocking(move || i).await.expect("join");
                    black_box(echoed);
                }
            });
        });
    });
    for (label, store) in &set.stores {
        group.bench_function(format!("{LOOKUPS} lookups by id/{label}"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    for i in 1..=LOOKUPS {
                        let id = PeerId::user(i).expect("id");
                        black_box(store.peers("s", &[id]).await.expect("lookup"));
                    }
                });
            });
        });
        let all_ids: Vec<PeerId> = (1..=LOOKUPS)
            .map(|i| PeerId::user(i).expect("id"))
            .collect();
        group.bench_function(format!("{LOOKUPS} ids in one batch lookup/{label}"), |b| {
            b.iter(|| {
                let found = rt.block_on(store.peers("s", &all_ids)).expect("lookup");
                assert!(found.iter().all(Option::is_some));
            });
        });
        group.bench_function(format!("{LOOKUPS} lookups by username/{label}"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    for i in 1..=LOOKUPS {
                        let found = store
                            .peer_by_username("s", &format!("user_{i}"))
                            .await
                            .expect("lookup");
                        assert!(found.is_some());
                    }
                });
            });
        });
        group.bench_function(format!("{LOOKUPS} lookups by phone/{label}"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    for i in 1..=LOOKUPS {
                        let found = store
                            .peer_by_phone("s", &format!("{}", 10_000_000 + i))
                            .await
                            .expect("lookup");
                        assert!(found.is_some());
                    }
                });
            });
        });
    }
    group.finish();
}

fn state_writes(c: &mut Criterion) {
    let rt = runtime();
    let mut group = configure(c);
    for (durability, writes, tag) in [
        (
            Durability::WriteBehind {
                max_delay: Duration::from_millis(100),
            },
            STATE_WRITES,
            "write-behind",
        ),
        (Durability::Immediate, IMMEDIATE_STATE_WRITES, "immediate"),
    ] {
        let set = stores(durability);
        for (label, store) in &set.stores {
            rt.block_on(store.create("s")).expect("create");
            group.bench_function(
                format!("{writes} update-state writes, {tag}/{label}"),
                |b| {
                    b.iter(|| {
                        rt.block_on(async {
                            for i in 1..=writes {
                                let pts = i32::try_from(i).expect("small");
                                let change = if i % 2 == 0 {
                                    UpdateStateChange::Primary {
                                        pts,
                                        date: pts,
                                        seq: pts,
                                    }
                                } else {
                                    UpdateStateChange::Channel {
                                        id: i % 50 + 1,
                                        pts,
                                    }
                                };
                                store.set_update_state("s", &change).await.expect("write");
                            }
                        });
                    });
                },
            );
        }
    }
    group.finish();
}

/// A file with `count` peers and a home auth key.
fn big_file(dir: &Path, name: &str, count: i64, rt: &Runtime) -> PathBuf {
    let path = dir.join(name);
    let store = sqlite(
        &path,
        Durability::WriteBehind {
            max_delay: Duration::from_secs(1),
        },
    );
    rt.block_on(async {
        let session = store.open("default").await.expect("session");
        let mut home = session.dc_option(2).await.expect("dc").expect("dc 2");
        home.auth_key = Some(AuthKey::new([7; 256]));
        session
            .set_dc_option(&DcOption { ..home })
            .await
            .expect("key");
        let mut next = 1;
        while next <= count {
            let last = (next + 999).min(count);
            session
                .cache_peers(&peers(next..=last))
                .await
                .expect("fill");
            next = last + 1;
        }
        store.flush().await.expect("flush");
    });
    path
}

fn open_big(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let files = [
        ("empty", big_file(dir.path(), "empty.sqlite", 0, &rt)),
        (
            "100000 peers",
            big_file(dir.path(), "big.sqlite", BIG_STORE_PEERS, &rt),
        ),
    ];
    let mut group = configure(c);
    for (label, path) in &files {
        group.bench_function(format!("open and read the home auth key/{label}"), |b| {
            b.iter(|| {
                let store: Arc<dyn SessionStore> = Arc::new(SqliteStore::open(path).expect("open"));
                rt.block_on(async {
                    let session = store.session("default").expect("handle");
                    let key = session.home_auth_key().await.expect("key");
                    assert!(key.is_some());
                });
            });
        });
    }
    group.finish();
}

criterion_group!(benches, upsert, lookups, state_writes, open_big);
criterion_main!(benches);
