//! Retrying units of work that lost a race with another transaction.

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

/// How long a unit of work is retried after transient failures, in total.
pub(crate) const MAX_RETRY_TIME: Duration = Duration::from_secs(60);

/// Randomized exponential backoff between attempts.
#[derive(Debug)]
pub(crate) struct Backoff {
    attempt: u32,
    started: Instant,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        Backoff {
            attempt: 0,
            started: Instant::now(),
        }
    }

    /// Waits before the next attempt; `false` when the time for retries is up.
    pub(crate) async fn wait(&mut self) -> bool {
        if self.started.elapsed() >= MAX_RETRY_TIME {
            return false;
        }
        self.attempt = self.attempt.saturating_add(1);
        // 1 ms, 2 ms, 4 ms ... capped at 128 ms, then a random point below it,
        // so that writers that collided do not collide again in lockstep.
        let ceiling_us: u64 = 1_000u64 << self.attempt.min(7);
        let jitter = random_u64() % ceiling_us.max(1);
        tokio::time::sleep(Duration::from_micros(ceiling_us / 4 + jitter)).await;
        true
    }
}

/// A random number from the standard library's per-process hash seed.
fn random_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(Instant::now().elapsed().as_nanos());
    hasher.finish()
}
