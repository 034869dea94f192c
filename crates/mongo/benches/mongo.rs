//! Criterion benchmarks of the MongoDB store: the shared workloads of
//! `session_conformance::bench` on `MongoStore` (with transactions, and
//! with write locks instead) and on `MemoryStore`, and, in the same run,
//! the same work done with the MongoDB driver directly on the same document
//! shapes and indexes (one document per peer with its usernames and phone,
//! one document per session) as the engine's floor.
//!
//! Needs the server at `MTSESSION_TEST_MONGO_URL` (default
//! `mongodb://127.0.0.1:27017`); everything is written to fresh
//! `mtsession_bench_*` databases that are dropped at the end. Unless the URL
//! sets `retryWrites`, it is turned off as in the tests (SecantusDB spends
//! about 35 ms on each retryable write outside a transaction).
//!
//! Run with `cargo bench -p session-mongo`.

use std::future::IntoFuture;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{
    BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime,
};
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Binary, Bson, DateTime, Document, doc, spec::BinarySubtype};
use mongodb::options::IndexOptions;
use mongodb::{Client, Collection, IndexModel};
use session_conformance::bench::{self, BATCH, BenchTarget, FIRST_ID, PEERS, peer, shuffled_ids};
use session_core::{Peer, Store};
use session_mongo::MongoStore;
use tokio::runtime::Runtime;

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

fn unique(kind: &str) -> String {
    format!("mtsession_bench_{kind}_{}", ObjectId::new().to_hex())
}

fn target(label: &str, url: &str, database: &str, transactions: bool) -> BenchTarget {
    let url = url.to_owned();
    let database = database.to_owned();
    BenchTarget::new(label, move || {
        let url = url.clone();
        let database = database.clone();
        async move {
            let store = MongoStore::builder(&url)
                .database(database)
                .use_transactions(transactions)
                .open()
                .await?;
            Ok(Store::new(store))
        }
    })
}

async fn connect(url: &str) -> Client {
    Client::with_uri_str(url)
        .await
        .unwrap_or_else(|e| panic!("the benchmarks need MongoDB (MTSESSION_TEST_MONGO_URL): {e}"))
}

/// The raw form of a peer: the document the store writes.
fn raw_peer(session: &str, peer: &Peer) -> Document {
    let usernames: Vec<Bson> = peer
        .usernames
        .iter()
        .flatten()
        .zip(peer.username_keys())
        .map(|(name, key)| Bson::Document(doc! { "name": name, "key": key }))
        .collect();
    doc! {
        "session": session,
        "id": peer.id.marked(),
        "kind": peer.kind.map_or(0, |k| k.code()),
        "hash": peer.access_hash.map_or(0, |h| h.value),
        "hash_min": false,
        "usernames": usernames,
        "phone": peer.phone.clone().unwrap_or_default(),
        "name": peer.name.clone().unwrap_or_default(),
    }
}

/// Upserts peers the way an application on the driver alone would: one
/// `update` command of upsert statements per batch, reading nothing.
async fn raw_upsert(client: &Client, db: &str, session: &str, peers: &[Peer]) {
    let statements: Vec<Bson> = peers
        .iter()
        .map(|p| {
            Bson::Document(doc! {
                "q": { "session": session, "id": p.id.marked() },
                "u": raw_peer(session, p),
                "upsert": true,
            })
        })
        .collect();
    client
        .database(db)
        .run_command(doc! { "update": "peers", "updates": statements, "ordered": true })
        .await
        .expect("raw upsert");
}

fn group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    group
}

/// The shared workloads, done with the driver alone on the same shapes.
fn raw_baseline(c: &mut Criterion, rt: &Runtime, url: &str, db: &str) {
    const LABEL: &str = "raw mongodb driver";
    let client = rt.block_on(connect(url));
    let peers: Collection<Document> = client.database(db).collection("peers");
    let sessions: Collection<Document> = client.database(db).collection("sessions");
    rt.block_on(async {
        let index = |keys: Document, unique: bool| {
            IndexModel::builder()
                .keys(keys)
                .options(IndexOptions::builder().unique(unique).build())
                .build()
        };
        peers
            .create_indexes([
                index(doc! { "session": 1, "id": 1 }, true),
                index(doc! { "session": 1, "usernames.key": 1 }, false),
                index(doc! { "session": 1, "phone": 1 }, false),
            ])
            .await
            .expect("indexes");
    });
    let mut group = group(c, "mongo");
    let all: Vec<Peer> = (FIRST_ID..FIRST_ID + PEERS).map(peer).collect();

    let mut round = 0u64;
    group.bench_function(
        format!("upsert {PEERS} peers in batches of {BATCH}/{LABEL}"),
        |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    round += 1;
                    let session = format!("bench-upsert-{round}");
                    rt.block_on(async {
                        let started = Instant::now();
                        for batch in all.chunks(BATCH) {
                            raw_upsert(&client, db, &session, batch).await;
                        }
                        total += started.elapsed();
                        peers
                            .delete_many(doc! { "session": &session })
                            .await
                            .expect("delete");
                    });
                }
                total
            });
        },
    );

    let session = "bench-lookups";
    rt.block_on(async {
        for batch in all.chunks(1_000) {
            raw_upsert(&client, db, session, batch).await;
        }
        let key = Bson::Binary(Binary {
            subtype: BinarySubtype::Generic,
            bytes: vec![7; 256],
        });
        sessions
            .insert_one(doc! {
                "_id": session,
                "home_dc": 2,
                "dcs": { "2": { "ipv4": Bson::Null, "ipv6": Bson::Null, "auth_key": key } },
                "updated_at": DateTime::now(),
                "update_state": { "pts": 0, "qts": 0, "date": 0, "seq": 0, "channels": {} },
            })
            .await
            .expect("session");
    });
    let ids = shuffled_ids();
    let mut at = 0usize;
    let mut next = || {
        at = (at + 1) % ids.len();
        ids[at]
    };
    group.bench_function(format!("lookup by id/{LABEL}"), |b| {
        b.iter(|| {
            let filter = doc! { "session": session, "id": next() };
            black_box(
                rt.block_on(peers.find_one(filter).into_future())
                    .expect("lookup"),
            );
        });
    });
    group.bench_function(format!("lookup by username/{LABEL}"), |b| {
        b.iter(|| {
            let filter = doc! { "session": session, "usernames.key": format!("user{}", next()) };
            black_box(
                rt.block_on(peers.find_one(filter).into_future())
                    .expect("lookup"),
            );
        });
    });
    group.bench_function(format!("lookup by phone/{LABEL}"), |b| {
        b.iter(|| {
            let filter = doc! { "session": session, "phone": format!("799900{}", next()) };
            black_box(
                rt.block_on(peers.find_one(filter).into_future())
                    .expect("lookup"),
            );
        });
    });
    let mut pts = 0;
    group.bench_function(format!("update-state write/{LABEL}"), |b| {
        b.iter(|| {
            pts += 1;
            rt.block_on(
                sessions
                    .update_one(
                        doc! { "_id": session },
                        doc! { "$set": {
                            "update_state.pts": pts,
                            "update_state.date": 1_700_000_000,
                            "update_state.seq": pts,
                        } },
                    )
                    .into_future(),
            )
            .expect("write");
        });
    });
    group.bench_function(format!("set DC option/{LABEL}"), |b| {
        b.iter(|| {
            rt.block_on(sessions.update_one(
                doc! { "_id": session },
                doc! {
                    "$set": { "dcs.4": { "ipv4": Bson::Null, "ipv6": Bson::Null, "auth_key": Bson::Null } },
                    "$max": { "updated_at": DateTime::now() },
                },
            ).into_future())
            .expect("write");
        });
    });
    group.bench_function(format!("open + read the home key/{LABEL}"), |b| {
        b.iter(|| {
            rt.block_on(async {
                let fresh = connect(url).await;
                let doc = fresh
                    .database(db)
                    .collection::<Document>("sessions")
                    .find_one(doc! { "_id": session })
                    .projection(doc! { "update_state": 0 })
                    .await
                    .expect("read");
                black_box(doc);
            });
        });
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let rt = Runtime::new().expect("a Tokio runtime");
    let url = url();
    let with = unique("tx");
    let without = unique("locks");
    let raw = unique("raw");
    bench::run(
        c,
        "mongo",
        vec![
            BenchTarget::memory(),
            target("mongo transactions", &url, &with, true),
            target("mongo write locks", &url, &without, false),
        ],
    );
    raw_baseline(c, &rt, &url, &raw);
    rt.block_on(async {
        let client = connect(&url).await;
        for db in [&with, &without, &raw] {
            let _ = client.database(db).drop().await;
        }
        // Nothing else of the run is left behind.
        let left: Vec<String> = client
            .list_database_names()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|name| [&with, &without, &raw].contains(&name))
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    });
}

criterion_group!(mongo_benches, benches);
criterion_main!(mongo_benches);
