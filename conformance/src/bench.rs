//! The benchmark workloads every backend runs (feature `bench`), written once.
//!
//! A backend's `benches/*.rs` builds one [`BenchTarget`] per configuration
//! (and the `MemoryStore` baseline with [`BenchTarget::memory`]) and calls
//! [`run`]:
//!
//! ```ignore
//! fn benches(c: &mut criterion::Criterion) {
//!     let dir = tempfile::tempdir().unwrap();
//!     let path = dir.path().join("bench.sqlite");
//!     session_conformance::bench::run(c, "sqlite", vec![
//!         BenchTarget::memory(),
//!         BenchTarget::new("sqlite", move || {
//!             let path = path.clone();
//!             async move { Ok(Store::new(SqliteStore::open(&path).await?)) }
//!         }),
//!     ]);
//! }
//! ```
//!
//! The workloads use the shape of the performance goals: peers with ids
//! 10000..=19999, username `user{id}`, phone `799900{id}`, lookups in a
//! shuffled order.

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, Criterion, measurement::WallTime};
use session_core::{
    AuthKey, DcOption, MemoryStore, Peer, PeerId, PeerKind, Result, Session, Store,
    UpdateStateChange,
};
use tokio::runtime::Runtime;

use crate::support::Rng;

/// The first peer id of the workloads.
pub const FIRST_ID: i64 = 10_000;
/// How many peers a loaded session holds.
pub const PEERS: i64 = 10_000;
/// Peers per `cache_peers` call in the upsert workload.
pub const BATCH: usize = 100;

type Opener = dyn Fn() -> Pin<Box<dyn Future<Output = Result<Store>> + Send>> + Send + Sync;

/// One store configuration to measure: a label and how to open the store.
/// Opening must give a store on the same data each time (for the open
/// workload); a memory store is opened once and shared.
#[derive(Clone)]
pub struct BenchTarget {
    label: String,
    open: Arc<Opener>,
    reopens: bool,
}

impl BenchTarget {
    /// A target opened by `open`; every call must open the same stored data.
    pub fn new<F, Fut>(label: impl Into<String>, open: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Store>> + Send + 'static,
    {
        BenchTarget {
            label: label.into(),
            open: Arc::new(move || Box::pin(open())),
            reopens: true,
        }
    }

    /// The `MemoryStore` baseline (not measured by the open workload).
    pub fn memory() -> Self {
        let store = Store::new(MemoryStore::new());
        BenchTarget {
            label: "memory".to_owned(),
            open: Arc::new(move || {
                let store = store.clone();
                Box::pin(async move { Ok(store) })
            }),
            reopens: false,
        }
    }

    /// The target's label.
    pub fn label(&self) -> &str {
        &self.label
    }
}

/// One workload peer: id, kind, full hash, username `user{id}`, phone `799900{id}`, name.
pub fn peer(id: i64) -> Peer {
    Peer::new(PeerId::user(id).expect("a positive user id"))
        .with_kind(PeerKind::User)
        .with_hash(id.wrapping_mul(0x9E37_79B9))
        .with_username(format!("user{id}"))
        .with_phone(format!("799900{id}"))
        .with_name(format!("Peer number {id}"))
}

/// The ids of a loaded session, in a fixed shuffled order.
pub fn shuffled_ids() -> Vec<i64> {
    let mut ids: Vec<i64> = (FIRST_ID..FIRST_ID + PEERS).collect();
    let mut rng = Rng::new(7);
    for i in (1..ids.len()).rev() {
        let j = usize::try_from(rng.next_u64() % (i as u64 + 1)).unwrap_or(0);
        ids.swap(i, j);
    }
    ids
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime")
}

fn group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    group
}

async fn loaded(store: &Store, name: &str) -> Session {
    let _ = store.delete(name).await;
    let session = store.open(name).await.expect("open the session");
    let all: Vec<Peer> = (FIRST_ID..FIRST_ID + PEERS).map(peer).collect();
    for batch in all.chunks(1_000) {
        session.cache_peers(batch).await.expect("load peers");
    }
    session
        .set_auth_key(2, Some(AuthKey::new([7; 256])))
        .await
        .expect("home key");
    session
}

/// Runs every workload on every target, in one criterion group named `name`.
pub fn run(c: &mut Criterion, name: &str, targets: Vec<BenchTarget>) {
    let rt = runtime();
    let mut group = group(c, name);
    let ids = shuffled_ids();
    for target in &targets {
        let label = target.label.clone();
        let store = rt.block_on((target.open)()).expect("open the store");

        let mut round = 0u64;
        group.bench_function(
            format!("upsert {PEERS} peers in batches of {BATCH}/{label}"),
            |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        round += 1;
                        let name = format!("bench-upsert-{round}");
                        rt.block_on(async {
                            let session = store.open(&name).await.expect("open");
                            let all: Vec<Peer> = (FIRST_ID..FIRST_ID + PEERS).map(peer).collect();
                            let started = Instant::now();
                            for batch in all.chunks(BATCH) {
                                session.cache_peers(batch).await.expect("batch");
                            }
                            total += started.elapsed();
                            store.delete(&name).await.expect("delete");
                        });
                    }
                    total
                });
            },
        );

        let session = rt.block_on(loaded(&store, "bench-lookups"));
        let mut at = 0usize;
        let mut next = || {
            at = (at + 1) % ids.len();
            ids[at]
        };
        group.bench_function(format!("lookup by id/{label}"), |b| {
            b.iter(|| {
                let id = PeerId::user(next()).expect("id");
                black_box(rt.block_on(session.peer(id)).expect("lookup"));
            });
        });
        group.bench_function(format!("lookup by username/{label}"), |b| {
            b.iter(|| {
                let name = format!("user{}", next());
                black_box(
                    rt.block_on(session.peer_by_username(&name))
                        .expect("lookup"),
                );
            });
        });
        group.bench_function(format!("lookup by phone/{label}"), |b| {
            b.iter(|| {
                let phone = format!("799900{}", next());
                black_box(rt.block_on(session.peer_by_phone(&phone)).expect("lookup"));
            });
        });
        let mut pts = 0;
        group.bench_function(format!("update-state write/{label}"), |b| {
            b.iter(|| {
                pts += 1;
                rt.block_on(session.set_update_state(UpdateStateChange::Primary {
                    pts,
                    date: 1_700_000_000,
                    seq: pts,
                }))
                .expect("write");
            });
        });
        group.bench_function(format!("set DC option/{label}"), |b| {
            b.iter(|| {
                rt.block_on(session.set_dc_option(&DcOption::new(4, None, None)))
                    .expect("write");
            });
        });
        rt.block_on(store.flush()).expect("flush");
        drop(session);
        drop(store);

        if target.reopens {
            group.bench_function(format!("open + read the home key/{label}"), |b| {
                b.iter(|| {
                    rt.block_on(async {
                        let store = (target.open)().await.expect("open");
                        let session = store.session("bench-lookups").expect("name");
                        black_box(session.home_auth_key().await.expect("key"));
                    });
                });
            });
        }
    }
    group.finish();
}
