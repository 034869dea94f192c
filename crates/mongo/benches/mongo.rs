//! MongoDB store benchmarks, each beside a baseline measured in the same
//! run: the `MemoryStore` doing the same work, or (for opening) a store on
//! an empty database.
//!
//! Run with `cargo bench -p session-mongo` against the server named by
//! `MTSESSION_TEST_MONGO_URL` (default `mongodb://127.0.0.1:27017`). As in
//! the tests, retryable writes are turned off unless the URL sets
//! `retryWrites` (SecantusDB spends ~35 ms on each one). Every database the
//! benchmarks create is dropped at the end.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use session_core::{
    AuthKey, MemoryStore, Peer, PeerId, PeerKind, SessionData, SessionStore, SessionStoreExt,
    UpdateStateChange,
};
use session_mongo::MongoStore;
use session_mongo::mongodb::Client;
use session_mongo::mongodb::bson::oid::ObjectId;
use tokio::runtime::Runtime;

const PEERS: i64 = 10_000;
const BATCH: usize = 100;
const LOOKUPS: i64 = 10_000;
const STATE_WRITES: i64 = 10_000;
const BIG_STORE_PEERS: i64 = 100_000;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The server's URL, with retryable writes off unless it says otherwise.
fn url() -> String {
    let url = std::env::var("MTSESSION_TEST_MONGO_URL")
        .unwrap_or_else(|_| "mongodb://127.0.0.1:27017".to_owned());
    if url.to_ascii_lowercase().contains("retrywrites=") {
        return url;
    }
    let after_scheme = url.split_once("://").map_or("", |(_, rest)| rest);
    if url.contains('?') {
        format!("{url}&retryWrites=false")
    } else if after_scheme.contains('/') {
        format!("{url}?retryWrites=false")
    } else {
        format!("{url}/?retryWrites=false")
    }
}

/// The databases one benchmark made, dropped when it ends (also when it panics).
#[derive(Default)]
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let names = std::mem::take(&mut self.0);
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            eprintln!("cannot drop the benchmark databases {names:?}: no runtime");
            return;
        };
        rt.block_on(async {
            match Client::with_uri_str(url()).await {
                Ok(client) => {
                    for name in names {
                        if let Err(e) = client.database(&name).drop().await {
                            eprintln!("cannot drop the benchmark database {name}: {e}");
                        }
                    }
                }
                Err(e) => eprintln!("cannot drop the benchmark databases {names:?}: {e}"),
            }
        });
    }
}

async fn mongo(cleanup: &mut Cleanup) -> Arc<MongoStore> {
    let name = format!("mtsession_bench_{}", ObjectId::new().to_hex());
    cleanup.0.push(name.clone());
    let store = MongoStore::builder(url())
        .database(name)
        .open()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the benchmarks need a MongoDB-compatible server (MTSESSION_TEST_MONGO_URL): {e}"
            )
        });
    Arc::new(store)
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

fn stores(rt: &Runtime, cleanup: &mut Cleanup) -> Vec<(&'static str, Arc<dyn SessionStore>)> {
    let mongo: Arc<dyn SessionStore> = rt.block_on(mongo(cleanup));
    vec![
        (
            "memory",
            Arc::new(MemoryStore::new()) as Arc<dyn SessionStore>,
        ),
        ("mongo", mongo),
    ]
}

fn configure(c: &mut Criterion) -> criterion::BenchmarkGroup<'_, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group("mongo");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    group
}

fn upsert(c: &mut Criterion) {
    let rt = runtime();
    let mut cleanup = Cleanup::default();
    let set = stores(&rt, &mut cleanup);
    let all = peers(1..=PEERS);
    let mut group = configure(c);
    for (label, store) in &set {
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
    let mut cleanup = Cleanup::default();
    let set = stores(&rt, &mut cleanup);
    for (_, store) in &set {
        rt.block_on(async {
            store.create("s").await.expect("create");
            for batch in peers(1..=PEERS).chunks(1_000) {
                store.cache_peers("s", batch).await.expect("fill");
            }
        });
    }
    let mut group = configure(c);
    for (label, store) in &set {
        group.bench_function(format!("{LOOKUPS} lookups by id/{label}"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    for i in 1..=LOOKUPS {
                        let id = PeerId::user(i).expect("id");
                        let found = store.peers("s", &[id]).await.expect("lookup");
                        assert!(found[0].is_some());
                        black_box(found);
                    }
                });
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
                        black_box(found);
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
                        black_box(found);
                    }
                });
            });
        });
    }
    group.finish();
}

fn state_writes(c: &mut Criterion) {
    let rt = runtime();
    let mut cleanup = Cleanup::default();
    let set = stores(&rt, &mut cleanup);
    for (_, store) in &set {
        rt.block_on(store.create("s")).expect("create");
    }
    let mut group = configure(c);
    for (label, store) in &set {
        group.bench_function(format!("{STATE_WRITES} update-state writes/{label}"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    for i in 1..=STATE_WRITES {
                        let pts = i32::try_from(i).expect("small");
                        // The hot path of a client: mostly common-box pts,
                        // every fourth write a channel's pts.
                        let change = if i % 4 == 0 {
                            UpdateStateChange::Channel {
                                id: i % 64 + 1,
                                pts,
                            }
                        } else {
                            UpdateStateChange::Primary {
                                pts,
                                date: pts,
                                seq: pts,
                            }
                        };
                        store.set_update_state("s", &change).await.expect("write");
                    }
                });
            });
        });
    }
    group.finish();
}

fn open_big_store(c: &mut Criterion) {
    let rt = runtime();
    let mut cleanup = Cleanup::default();
    // One database with 100 000 cached peers and a home key, one empty.
    let (big, empty) = rt.block_on(async {
        let big = mongo(&mut cleanup).await;
        let empty = mongo(&mut cleanup).await;
        let mut data = SessionData::default();
        data.dcs[1].auth_key = Some(AuthKey::new([0x5A; 256]));
        for store in [&big, &empty] {
            store.import("default", &data).await.expect("import");
        }
        let all = peers(1..=BIG_STORE_PEERS);
        for batch in all.chunks(1_000) {
            big.cache_peers("default", batch).await.expect("fill");
        }
        assert_eq!(
            big.peer_count("default").await.expect("count"),
            BIG_STORE_PEERS as u64
        );
        (big, empty)
    });
    let memory: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    rt.block_on(async {
        let mut data = SessionData::default();
        data.dcs[1].auth_key = Some(AuthKey::new([0x5A; 256]));
        data.peers = peers(1..=BIG_STORE_PEERS);
        memory.import("default", &data).await.expect("import");
    });
    let mut group = configure(c);
    let read_key = |store: Arc<dyn SessionStore>| async move {
        let session = store.session("default").expect("name");
        let key = session.home_auth_key().await.expect("read").expect("a key");
        black_box(key.id());
    };
    group.bench_function(
        format!("read the home auth key of a store of {BIG_STORE_PEERS} peers/memory"),
        |b| b.iter(|| rt.block_on(read_key(Arc::clone(&memory)))),
    );
    for (label, database) in [
        (
            format!("{BIG_STORE_PEERS} peers"),
            big.database_name().to_owned(),
        ),
        ("no peers".to_owned(), empty.database_name().to_owned()),
    ] {
        group.bench_function(
            format!("open a store of {label} and read the home auth key/mongo"),
            |b| {
                b.iter(|| {
                    rt.block_on(async {
                        let store: Arc<dyn SessionStore> = Arc::new(
                            MongoStore::builder(url())
                                .database(&database)
                                .open()
                                .await
                                .expect("open"),
                        );
                        read_key(store).await;
                    });
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, upsert, lookups, state_writes, open_big_store);
criterion_main!(benches);
