//! How a store is opened.

use std::time::Duration;

use session_core::Durability;

/// Options of [`SqliteStore::open_with`](crate::SqliteStore::open_with).
///
/// Build them from [`SqliteOptions::default`] and the builder methods, or with
/// struct-update syntax: `SqliteOptions { busy_timeout, ..Default::default() }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SqliteOptions {
    /// When a write is durable; see the crate docs for what each policy guarantees.
    /// Default: [`Durability::Immediate`].
    pub durability: Durability,
    /// How long a call waits for another connection (in this or another process)
    /// to finish its write before it fails. Default: 10 s.
    pub busy_timeout: Duration,
    /// How many idle read connections are kept open. Reads never wait for each
    /// other; this only bounds how many connections are kept between calls. Default: 4.
    pub max_idle_readers: usize,
    /// Prepared statements cached per connection. Default: 64.
    pub statement_cache_capacity: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            durability: Durability::Immediate,
            busy_timeout: Duration::from_secs(10),
            max_idle_readers: 4,
            statement_cache_capacity: 64,
        }
    }
}

impl SqliteOptions {
    /// Sets the durability policy.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Sets the busy timeout.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Sets how many idle read connections are kept.
    pub fn max_idle_readers(mut self, readers: usize) -> Self {
        self.max_idle_readers = readers;
        self
    }

    /// Sets the per-connection prepared statement cache size.
    pub fn statement_cache_capacity(mut self, capacity: usize) -> Self {
        self.statement_cache_capacity = capacity;
        self
    }
}
