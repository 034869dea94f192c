//! Criterion benchmarks: the shared workloads of `session_conformance::bench`
//! on `SledStore` with each durability policy (and `MemoryStore`), then raw
//! sled doing the same work with the same key shapes, indexes and
//! durability, as the engine floor the store is measured against.
//!
//! Stores live in a temporary directory removed at the end. Run with
//! `cargo bench -p session-sled`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use session_conformance::bench::{self, BATCH, BenchTarget, FIRST_ID, PEERS, shuffled_ids};
use session_core::{Durability, Store};
use session_sled::SledStore;
use sled::Transactional;

const WRITE_BEHIND: Durability = Durability::WriteBehind {
    max_delay: Duration::from_millis(100),
};

fn target(label: &str, path: PathBuf, durability: Durability) -> BenchTarget {
    BenchTarget::new(label, move || {
        let path = path.clone();
        async move {
            Ok(Store::new(
                SledStore::builder(&path)
                    .durability(durability)
                    .lock_timeout(Duration::from_secs(10))
                    .open()
                    .await?,
            ))
        }
    })
}

/// Raw sled with the store's key shapes: a session prefix, peers by
/// big-endian id, username and phone indexes holding the id, the update
/// state under the prefix, a DC row holding the key.
mod raw {
    use super::*;

    pub(super) struct Raw {
        pub(super) db: sled::Db,
        log: std::fs::File,
        peers: sled::Tree,
        usernames: sled::Tree,
        phones: sled::Tree,
        state: sled::Tree,
        dcs: sled::Tree,
        durable: bool,
        /// When write-behind last flushed (the store's bound: a write that
        /// finds the last flush older than 100 ms flushes and syncs).
        last_flush: std::cell::Cell<Instant>,
    }

    const PREFIX: &[u8] = b"\x05bench\0\0\0\0\0\0\0\x01";

    fn key(suffix: &[u8]) -> Vec<u8> {
        let mut k = PREFIX.to_vec();
        k.extend_from_slice(suffix);
        k
    }

    fn value(id: i64) -> Vec<u8> {
        let mut v = vec![1u8, 0x3F, 1];
        v.extend_from_slice(&id.wrapping_mul(0x9E37_79B9).to_be_bytes());
        for text in [
            format!("user{id}"),
            format!("799900{id}"),
            format!("Peer number {id}"),
        ] {
            v.extend_from_slice(&(text.len() as u32).to_be_bytes());
            v.extend_from_slice(text.as_bytes());
        }
        v
    }

    impl Raw {
        pub(super) fn open(path: &Path, durable: bool) -> Raw {
            let started = Instant::now();
            let db = loop {
                match sled::Config::new()
                    .path(path)
                    .flush_every_ms(Some(if durable { 500 } else { 100 }))
                    .open()
                {
                    Ok(db) => break db,
                    Err(_) if started.elapsed() < Duration::from_secs(10) => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => panic!("raw sled: {e}"),
                }
            };
            let tree = |name: &str| db.open_tree(name).expect("tree");
            Raw {
                log: std::fs::File::open(path.join("db")).expect("log"),
                peers: tree("peers"),
                usernames: tree("uname_idx"),
                phones: tree("phone_idx"),
                state: tree("state"),
                dcs: tree("dcs"),
                db,
                durable,
                last_flush: std::cell::Cell::new(Instant::now()),
            }
        }

        /// What the store's durability does after a write: flush and
        /// `fdatasync` for immediate; for write-behind the same once the
        /// last flush is older than the 100 ms bound.
        fn settle(&self) {
            if self.durable || self.last_flush.get().elapsed() >= Duration::from_millis(100) {
                self.db.flush().expect("flush");
                self.log.sync_data().expect("sync");
                self.last_flush.set(Instant::now());
            }
        }

        /// One transaction: read each peer and the owners of its username
        /// and phone, write the row and both index entries.
        pub(super) fn upsert(&self, ids: &[i64]) {
            (&self.peers, &self.usernames, &self.phones)
                .transaction(|(peers, usernames, phones)| {
                    for id in ids {
                        let id_bytes = id.to_be_bytes();
                        let name = key(format!("user{id}").as_bytes());
                        let phone = key(format!("799900{id}").as_bytes());
                        black_box(peers.get(key(&id_bytes))?);
                        black_box(usernames.get(&name)?);
                        black_box(phones.get(&phone)?);
                        peers.insert(key(&id_bytes), value(*id))?;
                        usernames.insert(name, &id_bytes[..])?;
                        phones.insert(phone, &id_bytes[..])?;
                    }
                    Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
                })
                .expect("transaction");
            self.settle();
        }

        pub(super) fn by_id(&self, id: i64) -> Option<sled::IVec> {
            self.peers.get(key(&id.to_be_bytes())).expect("get")
        }

        fn by_index(&self, index: &sled::Tree, text: &str) -> Option<sled::IVec> {
            let id = index.get(key(text.as_bytes())).expect("get")?;
            self.peers.get(key(&id)).expect("get")
        }

        pub(super) fn by_username(&self, name: &str) -> Option<sled::IVec> {
            self.by_index(&self.usernames, name)
        }

        pub(super) fn by_phone(&self, phone: &str) -> Option<sled::IVec> {
            self.by_index(&self.phones, phone)
        }

        pub(super) fn write_state(&self, pts: i32) {
            let mut v = vec![1u8];
            for field in [pts, 0, 1_700_000_000, pts] {
                v.extend_from_slice(&field.to_be_bytes());
            }
            self.state.insert(PREFIX, v).expect("insert");
            self.settle();
        }

        /// The update-state write as the store does it: one transaction that
        /// reads the session row and the state row and writes the state.
        pub(super) fn write_state_in_transaction(&self, pts: i32) {
            (&self.dcs, &self.state)
                .transaction(|(sessions, state)| {
                    black_box(sessions.get(PREFIX)?);
                    black_box(state.get(PREFIX)?);
                    let mut v = vec![1u8];
                    for field in [pts, 0, 1_700_000_000, pts] {
                        v.extend_from_slice(&field.to_be_bytes());
                    }
                    state.insert(PREFIX, v)?;
                    Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
                })
                .expect("transaction");
            self.settle();
        }

        pub(super) fn write_dc(&self) {
            self.dcs
                .insert(key(&4i32.to_be_bytes()), vec![1u8, 0])
                .expect("insert");
            self.settle();
        }

        pub(super) fn write_home_key(&self) {
            let mut v = vec![1u8, 4];
            v.extend_from_slice(&[7u8; 256]);
            self.dcs
                .insert(key(&2i32.to_be_bytes()), v)
                .expect("insert");
            self.settle();
        }

        pub(super) fn home_key(&self) -> Option<sled::IVec> {
            self.dcs.get(key(&2i32.to_be_bytes())).expect("get")
        }
    }
}

/// The shared workloads' shapes on raw sled, one criterion group.
fn raw_benches(c: &mut Criterion, root: &Path) {
    let mut group = c.benchmark_group("sled-raw");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let ids = shuffled_ids();
    for (label, durable) in [
        ("raw sled immediate", true),
        ("raw sled write-behind 100ms", false),
    ] {
        let path = root.join(label.replace(' ', "-"));
        let store = raw::Raw::open(&path, durable);
        let all: Vec<i64> = (FIRST_ID..FIRST_ID + PEERS).collect();
        group.bench_function(
            format!("upsert {PEERS} peers in batches of {BATCH}/{label}"),
            |b| {
                b.iter(|| {
                    for batch in all.chunks(BATCH) {
                        store.upsert(batch);
                    }
                });
            },
        );
        store.write_home_key();
        let mut at = 0usize;
        let mut next = || {
            at = (at + 1) % ids.len();
            ids[at]
        };
        group.bench_function(format!("lookup by id/{label}"), |b| {
            b.iter(|| black_box(store.by_id(next())));
        });
        group.bench_function(format!("lookup by username/{label}"), |b| {
            b.iter(|| black_box(store.by_username(&format!("user{}", next()))));
        });
        group.bench_function(format!("lookup by phone/{label}"), |b| {
            b.iter(|| black_box(store.by_phone(&format!("799900{}", next()))));
        });
        let mut pts = 0;
        group.bench_function(format!("update-state write/{label}"), |b| {
            b.iter(|| {
                pts += 1;
                store.write_state(pts);
            });
        });
        group.bench_function(
            format!("update-state write in a transaction/{label}"),
            |b| {
                b.iter(|| {
                    pts += 1;
                    store.write_state_in_transaction(pts);
                });
            },
        );
        group.bench_function(format!("set DC option/{label}"), |b| {
            b.iter(|| store.write_dc());
        });
        store.db.flush().expect("flush");
        drop(store);
        group.bench_function(format!("open + read the home key/{label}"), |b| {
            b.iter(|| {
                let store = raw::Raw::open(&path, durable);
                black_box(store.home_key());
            });
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    let root = tempfile::Builder::new()
        .prefix("mtsession-sled-bench-")
        .tempdir()
        .expect("temp dir");
    bench::run(
        c,
        "sled",
        vec![
            BenchTarget::memory(),
            target(
                "sled immediate",
                root.path().join("immediate"),
                Durability::Immediate,
            ),
            target(
                "sled write-behind 100ms",
                root.path().join("write-behind"),
                WRITE_BEHIND,
            ),
        ],
    );
    raw_benches(c, root.path());
}

criterion_group!(sled_benches, benches);
criterion_main!(sled_benches);
