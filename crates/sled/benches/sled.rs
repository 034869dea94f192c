//! Criterion benchmarks of the sled store, each next to a baseline measured in
//! the same run: `MemoryStore` for the data workloads, an empty sled store for
//! opening.
//!
//! Stores live in a temporary directory removed at the end. Run with
//! `cargo bench -p session-sled` (the immediate-durability update-state case
//! does 10 000 fsyncs per iteration and takes a few minutes).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, criterion_group, criterion_main};
use session_core::{
    AuthKey, DcOption, Durability, DynStore, MemoryStore, Peer, PeerId, PeerKind, SessionData,
    SessionStoreExt, UpdateStateChange,
};
use session_sled::{SledOptions, SledStore};
use tokio::runtime::Runtime;

const PEERS: i64 = 10_000;
const BATCH: usize = 100;
const BIG: i64 = 100_000;

fn peer(i: i64) -> Peer {
    Peer::new(PeerId::user(i).expect("positive id"))
        .with_kind(PeerKind::User)
        .with_hash(i.wrapping_mul(0x9E37_79B9))
        .with_username(format!("User{i}"))
        .with_phone(format!("7900{i:07}"))
        .with_name(format!("User number {i}"))
}

fn write_behind() -> SledOptions {
    SledOptions::default().durability(Durability::WriteBehind {
        max_delay: Duration::from_millis(100),
    })
}

async fn sled(path: &Path, options: SledOptions) -> DynStore {
    Arc::new(
        SledStore::open_with(path, options)
            .await
            .expect("sled store opens"),
    )
}

fn group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sampling_mode(SamplingMode::Flat);
    group
}

fn benches(c: &mut Criterion) {
    let rt = Runtime::new().expect("tokio runtime");
    let root = tempfile::Builder::new()
        .prefix("mtsession-sled-bench-")
        .tempdir()
        .expect("temp dir");
    let stores: Vec<(&str, DynStore)> = rt.block_on(async {
        vec![
            ("memory", Arc::new(MemoryStore::new()) as DynStore),
            (
                "sled immediate",
                sled(&root.path().join("immediate"), SledOptions::default()).await,
            ),
            (
                "sled write-behind 100ms",
                sled(&root.path().join("write-behind"), write_behind()).await,
            ),
        ]
    });
    let peers: Vec<Peer> = (1..=PEERS).map(peer).collect();
    let counter = AtomicU64::new(0);

    let mut g = group(c, "upsert 10k peers in batches of 100");
    for (name, store) in &stores {
        g.bench_function(*name, |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (store, peers, counter) = (store.clone(), &peers, &counter);
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let session = format!("upsert-{}", counter.fetch_add(1, Ordering::Relaxed));
                        store.create(&session).await.expect("create");
                        let started = Instant::now();
                        for chunk in peers.chunks(BATCH) {
                            store.cache_peers(&session, chunk).await.expect("upsert");
                        }
                        total += started.elapsed();
                        store.delete(&session).await.expect("delete");
                    }
                    total
                }
            });
        });
    }
    g.finish();

    // Lookups do not depend on the durability policy: one sled store.
    let readers = [&stores[0], &stores[1]];
    rt.block_on(async {
        for (_, store) in readers {
            store.create("lookup").await.expect("create");
            for chunk in peers.chunks(1000) {
                store.cache_peers("lookup", chunk).await.expect("fill");
            }
        }
    });
    let mut g = group(c, "10k lookups by id");
    for (name, store) in readers {
        g.bench_function(*name, |b| {
            b.to_async(&rt).iter(|| async {
                for i in 1..=PEERS {
                    let id = PeerId::user(i).expect("id");
                    let found = store.peers("lookup", &[id]).await.expect("lookup");
                    assert!(found[0].is_some());
                }
            });
        });
    }
    g.finish();
    let mut g = group(c, "10k lookups by username");
    for (name, store) in readers {
        g.bench_function(*name, |b| {
            b.to_async(&rt).iter(|| async {
                for i in 1..=PEERS {
                    let found = store.peer_by_username("lookup", &format!("user{i}")).await;
                    assert!(found.expect("lookup").is_some());
                }
            });
        });
    }
    g.finish();
    let mut g = group(c, "10k lookups by phone");
    for (name, store) in readers {
        g.bench_function(*name, |b| {
            b.to_async(&rt).iter(|| async {
                for i in 1..=PEERS {
                    let found = store.peer_by_phone("lookup", &format!("7900{i:07}")).await;
                    assert!(found.expect("lookup").is_some());
                }
            });
        });
    }
    g.finish();

    rt.block_on(async {
        for (_, store) in &stores {
            store.create("state").await.expect("create");
        }
    });
    let mut g = group(c, "10k update-state writes");
    for (name, store) in &stores {
        g.bench_function(*name, |b| {
            b.to_async(&rt).iter(|| async {
                for pts in 0..10_000 {
                    let change = UpdateStateChange::Primary {
                        pts,
                        date: pts,
                        seq: pts,
                    };
                    store
                        .set_update_state("state", &change)
                        .await
                        .expect("write");
                }
            });
        });
    }
    g.finish();
    drop(stores);

    // A directory holding 100 000 peers and a home auth key, and an empty one.
    let full = root.path().join("full");
    let empty = root.path().join("empty");
    rt.block_on(async {
        let store = sled(&full, SledOptions::default()).await;
        let data = SessionData {
            home_dc: 2,
            dcs: vec![DcOption {
                auth_key: Some(AuthKey::new([7; 256])),
                ..DcOption::new(2, None, None)
            }],
            peers: (1..=BIG).map(peer).collect(),
            ..SessionData::default()
        };
        store
            .import("default", &data)
            .await
            .expect("import 100k peers");
        let empty_store = sled(&empty, SledOptions::default()).await;
        let session = empty_store.open("default").await.expect("session");
        session
            .set_auth_key(2, Some(AuthKey::new([7; 256])))
            .await
            .expect("key");
    });
    let mut g = group(c, "open and read the home auth key");
    for (name, path) in [
        ("sled, empty store (baseline)", &empty),
        ("sled, 100k peers", &full),
    ] {
        g.bench_function(name, |b| {
            b.to_async(&rt).iter_custom(|iters| async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let started = Instant::now();
                    let store = sled(path, SledOptions::default()).await;
                    let key = store
                        .session("default")
                        .expect("handle")
                        .home_auth_key()
                        .await;
                    assert!(key.expect("read").is_some());
                    total += started.elapsed();
                    drop(store);
                    // sled's threads let go of the directory a moment after the drop.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                total
            });
        });
    }
    g.finish();
}

criterion_group!(sled_benches, benches);
criterion_main!(sled_benches);
