//! Server-side storage for MTProto servers: auth keys by `auth_key_id`, the
//! session ids opened under each key, and server salts; plus
//! [`SessionSubject`], which tells observers about created and destroyed sessions.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::auth_key::AuthKey;
use crate::error::Result;

/// A server salt and the window in which it is valid (seconds since the Unix epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerSalt {
    /// First second the salt is valid.
    pub valid_since: i64,
    /// Last second (exclusive) the salt is valid.
    pub valid_until: i64,
    /// The salt.
    pub salt: i64,
}

impl ServerSalt {
    /// Whether the salt is valid at `t`.
    pub fn valid_at(&self, t: i64) -> bool {
        self.valid_since <= t && t < self.valid_until
    }
}

/// The storage an MTProto server needs.
///
/// # Contract
///
/// - `create_session` is atomic: of many concurrent calls with the same ids,
///   exactly one returns `true`.
/// - Destroying an auth key removes its sessions and salts too.
/// - Sessions and salts of an unknown auth key are refused with `NotFound`.
#[async_trait]
pub trait ServerStore: Send + Sync + fmt::Debug {
    /// Stores a key under its `auth_key_id` (replacing the same key).
    async fn put_auth_key(&self, key: &AuthKey) -> Result<u64>;
    /// The key with this id.
    async fn auth_key(&self, auth_key_id: u64) -> Result<Option<AuthKey>>;
    /// Removes a key with its sessions and salts; returns whether it existed.
    async fn destroy_auth_key(&self, auth_key_id: u64) -> Result<bool>;
    /// Records a session id under a key; `true` if it was new.
    async fn create_session(&self, auth_key_id: u64, session_id: i64) -> Result<bool>;
    /// Whether the session id exists under the key.
    async fn has_session(&self, auth_key_id: u64, session_id: i64) -> Result<bool>;
    /// Removes a session id; returns whether it existed.
    async fn destroy_session(&self, auth_key_id: u64, session_id: i64) -> Result<bool>;
    /// Every session id under the key, sorted.
    async fn list_sessions(&self, auth_key_id: u64) -> Result<Vec<i64>>;
    /// Adds a salt to the key.
    async fn add_salt(&self, auth_key_id: u64, salt: ServerSalt) -> Result<()>;
    /// Whether `salt` is valid for the key at time `t`.
    async fn has_valid_salt(&self, auth_key_id: u64, salt: i64, t: i64) -> Result<bool>;
    /// Up to `n` salts valid at or after `t`, by `valid_since`.
    async fn future_salts(&self, auth_key_id: u64, t: i64, n: usize) -> Result<Vec<ServerSalt>>;
}

#[derive(Default, Debug)]
struct KeyEntry {
    key: Option<AuthKey>,
    sessions: BTreeSet<i64>,
    salts: BTreeSet<ServerSalt>,
}

/// An in-memory [`ServerStore`].
#[derive(Default, Debug)]
pub struct MemoryServerStore {
    keys: Mutex<BTreeMap<u64, KeyEntry>>,
}

impl MemoryServerStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, KeyEntry>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn unknown_key(auth_key_id: u64) -> crate::Error {
    crate::Error::NotFound {
        what: format!("auth key {auth_key_id:016x}"),
    }
}

#[async_trait]
impl ServerStore for MemoryServerStore {
    async fn put_auth_key(&self, key: &AuthKey) -> Result<u64> {
        let id = key.id();
        self.lock().entry(id).or_default().key = Some(key.clone());
        Ok(id)
    }

    async fn auth_key(&self, auth_key_id: u64) -> Result<Option<AuthKey>> {
        Ok(self.lock().get(&auth_key_id).and_then(|e| e.key.clone()))
    }

    async fn destroy_auth_key(&self, auth_key_id: u64) -> Result<bool> {
        Ok(self.lock().remove(&auth_key_id).is_some())
    }

    async fn create_session(&self, auth_key_id: u64, session_id: i64) -> Result<bool> {
        let mut keys = self.lock();
        let entry = keys
            .get_mut(&auth_key_id)
            .ok_or_else(|| unknown_key(auth_key_id))?;
        Ok(entry.sessions.insert(session_id))
    }

    async fn has_session(&self, auth_key_id: u64, session_id: i64) -> Result<bool> {
        Ok(self
            .lock()
            .get(&auth_key_id)
            .is_some_and(|e| e.sessions.contains(&session_id)))
    }

    async fn destroy_session(&self, auth_key_id: u64, session_id: i64) -> Result<bool> {
        Ok(self
            .lock()
            .get_mut(&auth_key_id)
            .is_some_and(|e| e.sessions.remove(&session_id)))
    }

    async fn list_sessions(&self, auth_key_id: u64) -> Result<Vec<i64>> {
        Ok(self
            .lock()
            .get(&auth_key_id)
            .map(|e| e.sessions.iter().copied().collect())
            .unwrap_or_default())
    }

    async fn add_salt(&self, auth_key_id: u64, salt: ServerSalt) -> Result<()> {
        if salt.valid_until <= salt.valid_since {
            return Err(crate::Error::invalid(
                "a salt's validity window must not be empty",
            ));
        }
        let mut keys = self.lock();
        let entry = keys
            .get_mut(&auth_key_id)
            .ok_or_else(|| unknown_key(auth_key_id))?;
        entry.salts.insert(salt);
        Ok(())
    }

    async fn has_valid_salt(&self, auth_key_id: u64, salt: i64, t: i64) -> Result<bool> {
        Ok(self
            .lock()
            .get(&auth_key_id)
            .is_some_and(|e| e.salts.iter().any(|s| s.salt == salt && s.valid_at(t))))
    }

    async fn future_salts(&self, auth_key_id: u64, t: i64, n: usize) -> Result<Vec<ServerSalt>> {
        Ok(self
            .lock()
            .get(&auth_key_id)
            .map(|e| {
                e.salts
                    .iter()
                    .filter(|s| s.valid_until > t)
                    .take(n)
                    .copied()
                    .collect()
            })
            .unwrap_or_default())
    }
}

/// What a [`SessionSubject`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SessionEvent {
    /// A session id was created under a key.
    Created {
        /// The key's id.
        auth_key_id: u64,
        /// The session id.
        session_id: i64,
    },
    /// A session id was destroyed (directly or with its key).
    Destroyed {
        /// The key's id.
        auth_key_id: u64,
        /// The session id.
        session_id: i64,
    },
}

/// Receives [`SessionEvent`]s. An error or panic here affects only this observer.
#[async_trait]
pub trait SessionObserver: Send + Sync + 'static {
    /// Handles one event.
    async fn on_event(&self, event: SessionEvent) -> Result<()>;
}

/// Wraps a [`ServerStore`] and tells every subscribed observer about created
/// and destroyed sessions, in order, each observer on its own task so that a
/// slow, failing or panicking observer neither fails the call nor holds up the
/// others.
#[derive(Clone)]
pub struct SessionSubject {
    store: Arc<dyn ServerStore>,
    observers: Arc<Mutex<Vec<mpsc::UnboundedSender<SessionEvent>>>>,
}

impl fmt::Debug for SessionSubject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionSubject")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl SessionSubject {
    /// Wraps a store.
    pub fn new(store: Arc<dyn ServerStore>) -> Self {
        SessionSubject {
            store,
            observers: Arc::default(),
        }
    }

    /// The wrapped store.
    pub fn store(&self) -> &Arc<dyn ServerStore> {
        &self.store
    }

    /// Adds an observer. Must be called inside a Tokio runtime.
    pub fn subscribe(&self, observer: Arc<dyn SessionObserver>) {
        let (tx, mut rx) = mpsc::unbounded_channel::<SessionEvent>();
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                let observer = Arc::clone(&observer);
                // Each event runs on its own task: a panic ends that task only.
                let _ = tokio::spawn(async move { observer.on_event(event).await }).await;
            }
        });
        self.observers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(tx);
    }

    fn notify(&self, event: SessionEvent) {
        let mut observers = self.observers.lock().unwrap_or_else(|p| p.into_inner());
        observers.retain(|tx| tx.send(event).is_ok());
    }

    /// Creates a session id, notifying observers when it is new.
    pub async fn create_session(&self, auth_key_id: u64, session_id: i64) -> Result<bool> {
        let created = self.store.create_session(auth_key_id, session_id).await?;
        if created {
            self.notify(SessionEvent::Created {
                auth_key_id,
                session_id,
            });
        }
        Ok(created)
    }

    /// Destroys a session id, notifying observers when it existed.
    pub async fn destroy_session(&self, auth_key_id: u64, session_id: i64) -> Result<bool> {
        let destroyed = self.store.destroy_session(auth_key_id, session_id).await?;
        if destroyed {
            self.notify(SessionEvent::Destroyed {
                auth_key_id,
                session_id,
            });
        }
        Ok(destroyed)
    }

    /// Destroys a key with its sessions, notifying observers of each session.
    pub async fn destroy_auth_key(&self, auth_key_id: u64) -> Result<bool> {
        let sessions = self.store.list_sessions(auth_key_id).await?;
        let destroyed = self.store.destroy_auth_key(auth_key_id).await?;
        for session_id in sessions {
            self.notify(SessionEvent::Destroyed {
                auth_key_id,
                session_id,
            });
        }
        Ok(destroyed)
    }
}
