//! Stress: a steady stream of small writes under write-behind durability
//! keeps going and the store closes promptly afterwards.
//!
//! sled accepts writes into memory faster than it writes its log out; with
//! nothing holding writers back, the backlog of such a stream grew without
//! bound and sled 0.34's I/O thread pool deadlocked (the benchmark of
//! update-state writes hung after 46 000 to 306 000 writes, before and
//! after the port to `SessionBackend`; every sled thread was waiting for
//! the segment lock that the writer held while it waited for a truncation
//! queued behind them). The store now flushes when a write finds the last
//! flush older than `max_delay`. This run takes a minute or two, so it is
//! ignored by default: `cargo test -p session-sled --release --test stress
//! -- --ignored`. A stall of 30 s fails it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use session_core::{Durability, Store, UpdateStateChange};
use session_sled::SledStore;

const WRITES: u64 = 300_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "stress test of a minute or two; run with --release -- --ignored"]
async fn stress_write_behind_stream_of_writes_keeps_going() {
    let dir = tempfile::Builder::new()
        .prefix("mtsession-sled-stress-")
        .tempdir()
        .expect("a temporary directory");
    let progress = Arc::new(AtomicU64::new(0));
    let watched = Arc::clone(&progress);
    // A deadlock cannot be interrupted from inside; the watchdog ends the
    // process with a message instead of letting the run hang.
    std::thread::spawn(move || {
        let mut last = u64::MAX;
        loop {
            std::thread::sleep(Duration::from_secs(30));
            let now = watched.load(Ordering::Relaxed);
            if now == last {
                eprintln!("stalled: no progress for 30 s after {now} of {WRITES} steps");
                std::process::exit(101);
            }
            last = now;
        }
    });
    {
        let store = Store::new(
            SledStore::builder(dir.path())
                .durability(Durability::WriteBehind {
                    max_delay: Duration::from_millis(100),
                })
                .open()
                .await
                .expect("opens"),
        );
        let session = store.open("s").await.expect("session");
        for pts in 0..WRITES {
            let pts = i32::try_from(pts).expect("small");
            session
                .set_update_state(UpdateStateChange::Primary {
                    pts,
                    date: 1,
                    seq: pts,
                })
                .await
                .expect("write");
            progress.fetch_add(1, Ordering::Relaxed);
        }
    }
    // Closing (flush and sync) counts as one more step.
    progress.fetch_add(1, Ordering::Relaxed);
    let store = Store::new(SledStore::open(dir.path()).await.expect("reopens"));
    let pts = store.update_state("s").await.expect("state").pts;
    assert_eq!(i64::from(pts), i64::try_from(WRITES).expect("small") - 1);
}
