//! Units of work: several commands that must act as one.
//!
//! With transactions, a unit runs inside one, committed at the end; when it
//! loses a race with another transaction (a write conflict), the whole unit
//! — reads, the decisions made from them, and writes — runs again after a
//! short random pause. Without transactions, the unit's commands run one
//! after the other while the store holds the write locks of the sessions it
//! touches, so writers through this crate never interleave on one session.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use mongodb::ClientSession;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Bson, DateTime, doc};
use session_core::lease::now_ms;
use session_core::{Error, Result};

use crate::error::{Access, Fail, is_conflict, is_duplicate_key, is_unknown_commit_result};
use crate::retry::{Backoff, MAX_RETRY_TIME};
use crate::store::Inner;
use crate::watch::Failed;

/// How long a write lock (used only without transactions) lives unless released.
pub(crate) const LOCK_TTL: Duration = Duration::from_secs(60);

/// How long a writer waits for a write lock before it claims to be next.
const CLAIM_AFTER: Duration = Duration::from_millis(50);

/// How long a claim to be next lasts unless its writer renews it.
const CLAIM_TTL: Duration = Duration::from_secs(2);

/// One run of a unit's body: it gets the session and gives it back with
/// its outcome.
pub(crate) type Step<'a, T> =
    Pin<Box<dyn Future<Output = (ClientSession, std::result::Result<T, Fail>)> + Send + 'a>>;

/// Writes a unit's body: `step!(s, { ... })` is a closure that takes the
/// session `s` (usable as `&mut s` inside) and returns a [`Step`].
macro_rules! step {
    ($s:ident, $body:block) => {
        move |mut $s: ::mongodb::ClientSession| -> $crate::unit::Step<'_, _> {
            Box::pin(async move {
                let outcome = async { $body }.await;
                ($s, outcome)
            })
        }
    };
}
pub(crate) use step;

/// Commits, sending the commit again while its outcome is unknown.
async fn commit(session: &mut ClientSession) -> std::result::Result<(), mongodb::error::Error> {
    let mut attempts = 0;
    loop {
        match session.commit_transaction().await {
            Err(e) if is_unknown_commit_result(&e) && attempts < 3 => attempts += 1,
            other => return other,
        }
    }
}

impl Inner {
    /// Runs `body` as one unit of work touching the sessions `locks` (see
    /// the module docs). `access` is [`Access::Read`] for units that only
    /// read (for the kind of their errors).
    pub(crate) async fn unit<'a, T: Send + 'a>(
        &'a self,
        access: Access,
        locks: &[&str],
        mut body: impl FnMut(ClientSession) -> Step<'a, T> + Send + 'a,
    ) -> Result<T> {
        if !self.transactions {
            return self.locked(access, locks, body).await;
        }
        let access = if access == Access::Read {
            Access::Read
        } else {
            Access::Transaction
        };
        let started = Instant::now();
        let mut backoff = Backoff::new();
        loop {
            let attempt = async {
                let mut s = self.client.start_session().await?;
                s.start_transaction().await?;
                let (mut s, outcome) = body(s).await;
                let value = outcome?;
                commit(&mut s).await?;
                Ok(value)
            };
            match self.watch.bounded(&self.place, access, attempt).await {
                Ok(value) => return Ok(value),
                Err(Failed::Db(e, _)) if is_conflict(&e) => {
                    if !backoff.wait().await {
                        return Err(Error::Busy {
                            what: format!(
                                "a session of {} (concurrent transactions kept conflicting)",
                                self.store_what()
                            ),
                            waited: started.elapsed(),
                            source: Some(Box::new(e)),
                        });
                    }
                }
                Err(failed) => return Err(failed.into_error(access, &self.place, &self.watch)),
            }
        }
    }

    /// A unit without transactions: under the write locks of `locks`.
    async fn locked<'a, T: Send + 'a>(
        &'a self,
        access: Access,
        locks: &[&str],
        mut body: impl FnMut(ClientSession) -> Step<'a, T> + Send + 'a,
    ) -> Result<T> {
        // A read-only store writes nothing, not even a lock: its reads may
        // see a write of another store half done, as reads without
        // transactions may anyway.
        let locks = if self.mode.writes() { locks } else { &[] };
        let held = self.lock_sessions(locks).await?;
        let run = async {
            let s = self.client.start_session().await?;
            let (_s, outcome) = body(s).await;
            outcome
        };
        let outcome = self.watch.bounded(&self.place, access, run).await;
        match outcome {
            Ok(value) => {
                self.unlock_sessions(held).await;
                Ok(value)
            }
            Err(failed) => {
                let err = failed.into_error(access, &self.place, &self.watch);
                if err.kind() == session_core::ErrorKind::Unavailable
                    || err.kind() == session_core::ErrorKind::OutcomeUnknown
                {
                    // The server is away: give the locks back when it
                    // returns (or let them expire), without making the
                    // caller wait for it.
                    let inner = self.locks_handle();
                    tokio::spawn(async move { inner.release(held).await });
                } else {
                    self.unlock_sessions(held).await;
                }
                Err(err)
            }
        }
    }

    /// Takes the write locks of `sessions` in a fixed order, so two callers
    /// never wait on each other in a cycle. A lock is a document in
    /// `{prefix}locks` that expires after [`LOCK_TTL`], so a crashed holder
    /// blocks nobody for long.
    async fn lock_sessions(&self, sessions: &[&str]) -> Result<Vec<(String, ObjectId)>> {
        let names: BTreeSet<&str> = sessions.iter().copied().collect();
        let mut held = Vec::with_capacity(names.len());
        for name in names {
            match self.lock_session(name).await {
                Ok(token) => held.push((name.to_owned(), token)),
                Err(e) => {
                    let locks = self.locks_handle();
                    tokio::spawn(async move { locks.release(held).await });
                    return Err(e);
                }
            }
        }
        Ok(held)
    }

    /// Takes one session's write lock, waiting (with short random pauses)
    /// while another writer holds it. The lock is free when its
    /// `expires_at` has passed. A writer that has waited longer than
    /// [`CLAIM_AFTER`] claims to be the next holder (`next`, renewed on
    /// every attempt and lapsing after [`CLAIM_TTL`]): while a claim of
    /// another writer is live, nobody else takes the free lock, so a writer
    /// that releases the lock and asks for it again at once cannot keep the
    /// waiting ones out. A claim records when its writer began to wait
    /// (`next_since`), and a writer that has waited longer takes the claim
    /// over: among several waiting writers the one that came first goes
    /// next, so none of them waits for more than the writers ahead of it.
    async fn lock_session(&self, session: &str) -> Result<ObjectId> {
        let token = ObjectId::new();
        let ttl_ms = i64::try_from(LOCK_TTL.as_millis()).unwrap_or(i64::MAX);
        let claim_ms = i64::try_from(CLAIM_TTL.as_millis()).unwrap_or(i64::MAX);
        let started = Instant::now();
        let waiting_since = now_ms();
        let mut backoff = Backoff::new();
        loop {
            let locks = &self.collections.locks;
            let claim = started.elapsed() >= CLAIM_AFTER;
            let taken = self
                .call(Access::Write, async move {
                    let now = DateTime::from_millis(now_ms());
                    let mine_or_none = doc! { "$or": [
                        { "next": Bson::Null },
                        { "next": token },
                        { "next_until": { "$lte": now } },
                    ] };
                    let result = locks
                        .update_one(
                            doc! {
                                "_id": session,
                                "expires_at": { "$lte": now },
                                "$and": [mine_or_none],
                            },
                            doc! {
                                "$set": {
                                    "token": token,
                                    "expires_at": DateTime::from_millis(
                                        now.timestamp_millis().saturating_add(ttl_ms),
                                    ),
                                },
                                "$unset": { "next": "", "next_until": "", "next_since": "" },
                            },
                        )
                        .upsert(true)
                        .await;
                    match result {
                        Ok(_) => return Ok(true),
                        // Held by another writer (or claimed by one): wait.
                        Err(e) if is_duplicate_key(&e) => {}
                        Err(e) => return Err(Fail::Db(e)),
                    }
                    if claim {
                        let mine_none_or_newer = doc! { "$or": [
                            { "next": Bson::Null },
                            { "next": token },
                            { "next_until": { "$lte": now } },
                            { "next_since": { "$gt": waiting_since } },
                        ] };
                        locks
                            .update_one(
                                doc! { "_id": session, "$and": [mine_none_or_newer] },
                                doc! { "$set": {
                                    "next": token,
                                    "next_since": waiting_since,
                                    "next_until": DateTime::from_millis(
                                        now.timestamp_millis().saturating_add(claim_ms),
                                    ),
                                } },
                            )
                            .await?;
                    }
                    Ok(false)
                })
                .await?;
            if taken {
                return Ok(token);
            }
            if started.elapsed() >= MAX_RETRY_TIME || !backoff.wait().await {
                return Err(Error::Busy {
                    what: format!(
                        "the write lock of session {session:?} in {}",
                        self.store_what()
                    ),
                    waited: started.elapsed(),
                    source: None,
                });
            }
        }
    }

    /// Gives write locks back. A lock that cannot be removed expires by itself.
    async fn unlock_sessions(&self, held: Vec<(String, ObjectId)>) {
        self.locks_handle().release(held).await;
    }

    fn locks_handle(&self) -> Locks {
        Locks {
            locks: self.collections.locks.clone(),
        }
    }
}

/// The lock collection, owned, for releasing locks in the background.
struct Locks {
    locks: mongodb::Collection<mongodb::bson::Document>,
}

impl Locks {
    /// Deletes each lock document, or, when a waiting writer has claimed
    /// to be next, marks it free (an `expires_at` in the past) and keeps
    /// the claim.
    async fn release(self, held: Vec<(String, ObjectId)>) {
        for (session, token) in held {
            let release = async {
                let deleted = self
                    .locks
                    .delete_one(doc! { "_id": &session, "token": token, "next": Bson::Null })
                    .await?;
                if deleted.deleted_count == 0 {
                    self.locks
                        .update_one(
                            doc! { "_id": &session, "token": token },
                            doc! { "$set": { "expires_at": DateTime::from_millis(0) } },
                        )
                        .await?;
                }
                Ok::<(), mongodb::error::Error>(())
            };
            // Bounded: a server that does not answer lets the lock expire.
            let _ = tokio::time::timeout(LOCK_TTL, release).await;
        }
    }
}
