//! The store's connection: one multiplexed connection, made when a call
//! needs it and dropped when it fails, so every call knows whether its
//! command was sent.
//!
//! redis-rs's `ConnectionManager` reconnects by itself but reports a failed
//! connection attempt and a request that went unanswered with the same
//! error kinds. Here the two phases are apart: [`Link::connection`] either
//! hands out a live connection or fails before anything was sent (so the
//! call is `Unavailable` and had no effect), and only what happens after
//! that can leave a write's outcome unknown.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisError};

/// A connection and the number of the attempt that made it.
#[derive(Clone)]
pub(crate) struct Live {
    pub(crate) generation: u64,
    pub(crate) connection: MultiplexedConnection,
}

type Attempt = Shared<BoxFuture<'static, Result<MultiplexedConnection, RedisError>>>;

enum Slot {
    /// No connection: the next call makes one.
    Idle,
    /// A connection attempt every caller waits on (one attempt at a time,
    /// so a server that does not answer costs one connect timeout, not one
    /// per waiting call).
    Connecting { generation: u64, attempt: Attempt },
    /// A connection believed to work.
    Ready(Live),
}

/// The one connection of a store, shared by every clone of it.
pub(crate) struct Link {
    client: Client,
    config: AsyncConnectionConfig,
    slot: Mutex<Slot>,
    attempts: AtomicU64,
}

impl Link {
    pub(crate) fn new(client: Client, config: AsyncConnectionConfig) -> Arc<Link> {
        Arc::new(Link {
            client,
            config,
            slot: Mutex::new(Slot::Idle),
            attempts: AtomicU64::new(0),
        })
    }

    fn slot(&self) -> MutexGuard<'_, Slot> {
        // Every critical section is a single assignment or clone, so a
        // panic elsewhere cannot leave the slot half-written.
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn next_generation(&self) -> u64 {
        self.attempts.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A live connection, connecting first when there is none. An error
    /// here means nothing of the caller's was sent.
    pub(crate) async fn connection(&self) -> Result<Live, RedisError> {
        let (generation, attempt) = {
            let mut slot = self.slot();
            match &*slot {
                Slot::Ready(live) => return Ok(live.clone()),
                Slot::Connecting {
                    generation,
                    attempt,
                } => (*generation, attempt.clone()),
                Slot::Idle => {
                    let generation = self.next_generation();
                    let client = self.client.clone();
                    let config = self.config.clone();
                    let attempt: Attempt = async move {
                        client
                            .get_multiplexed_async_connection_with_config(&config)
                            .await
                    }
                    .boxed()
                    .shared();
                    *slot = Slot::Connecting {
                        generation,
                        attempt: attempt.clone(),
                    };
                    (generation, attempt)
                }
            }
        };
        let outcome = attempt.await;
        let mut slot = self.slot();
        let current = matches!(&*slot, Slot::Connecting { generation: g, .. } if *g == generation);
        match outcome {
            Ok(connection) => {
                let live = Live {
                    generation,
                    connection,
                };
                if current {
                    *slot = Slot::Ready(live.clone());
                }
                Ok(live)
            }
            Err(err) => {
                if current {
                    *slot = Slot::Idle;
                }
                Err(err)
            }
        }
    }

    /// Drops the connection of `generation` after it failed, so the next
    /// call connects again. A newer connection is kept.
    pub(crate) fn forget(&self, generation: u64) {
        let mut slot = self.slot();
        if matches!(&*slot, Slot::Ready(live) if live.generation == generation) {
            *slot = Slot::Idle;
        }
    }
}
