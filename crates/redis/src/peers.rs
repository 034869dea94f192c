//! Peer-cache writes: core plans, Redis applies.
//!
//! A plan is a pure function of the batch and of its *context*: the stored
//! records of the batch's ids, the owners of its username keys and phones,
//! and those owners' records. [`scripts::PEER_APPLY`] applies a plan in one
//! atomic script only after reading the context again and finding it to be
//! the one the plan was computed from; otherwise it writes nothing.
//!
//! - First, the batch is planned as if its context were empty (no id
//!   stored, no key or phone owned: new peers) and sent. When that holds,
//!   the batch costs one round trip.
//! - When it does not, the script answers the real context with a digest of
//!   it, the batch is planned again from that, and sent with the digest: a
//!   second round trip. If another writer changed the context in between,
//!   the script answers the context as it is then, and the batch is planned
//!   again from it; if that collides too, after a short random pause, from a
//!   context loaded afresh.
//!   Writers that touch disjoint peers never retry each other.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::{ScriptInvocation, Value};
use session_core::{Error, Peer, PeerBatch, PeerId, PeerPlan, Result};

use crate::codec::{decode_peer, encode_peer};
use crate::error::Access;
use crate::keys::{META, PEERS, PHONE, UNAME};
use crate::scripts;
use crate::store::{MAX_ATTEMPTS, RedisStore, unexpected};

/// A context as a script answered it: its digest and the stored records.
struct Context {
    digest: Vec<u8>,
    stored: Vec<Peer>,
}

/// What the apply script did.
enum Applied {
    Written,
    /// The context is not the one planned from (nothing written); this is
    /// the one there is now.
    Moved(Context),
}

fn context_args(inv: &mut ScriptInvocation<'_>, batch: &PeerBatch) {
    inv.arg(batch.ids().len());
    for id in batch.ids() {
        inv.arg(id.marked());
    }
    inv.arg(batch.username_keys().len());
    for key in batch.username_keys() {
        inv.arg(key.as_str());
    }
    inv.arg(batch.phones().len());
    for phone in batch.phones() {
        inv.arg(phone.as_str());
    }
}

fn session_keys(store: &RedisStore, inv: &mut ScriptInvocation<'_>, session: &str) {
    for which in [META, PEERS, UNAME, PHONE] {
        inv.key(store.key(session, which));
    }
}

/// The stored records in one array of a context reply.
fn records(store: &RedisStore, session: &str, value: Value, into: &mut Vec<Peer>) -> Result<()> {
    let Value::Array(items) = value else {
        return Err(unexpected("peer context", Some(&value)));
    };
    let key = store.key(session, PEERS);
    for item in items {
        match item {
            Value::Nil => {}
            Value::BulkString(raw) => into.push(decode_peer(&key, &raw)?),
            other => return Err(unexpected("peer context", Some(&other))),
        }
    }
    Ok(())
}

/// Decodes `digest, records of the ids, records of the other owners`.
fn context_from(
    store: &RedisStore,
    session: &str,
    mut it: impl Iterator<Item = Value>,
) -> Result<Context> {
    let digest = match it.next() {
        Some(Value::BulkString(digest)) => digest,
        other => return Err(unexpected("peer context", other.as_ref())),
    };
    let (Some(rows), Some(extra_rows), None) = (it.next(), it.next(), it.next()) else {
        return Err(unexpected("peer context", None));
    };
    let mut stored = Vec::new();
    records(store, session, rows, &mut stored)?;
    records(store, session, extra_rows, &mut stored)?;
    Ok(Context { digest, stored })
}

async fn load(store: &RedisStore, session: &str, batch: &PeerBatch) -> Result<Context> {
    let mut inv = scripts::PEER_CONTEXT.prepare_invoke();
    session_keys(store, &mut inv, session);
    context_args(&mut inv, batch);
    let reply: Vec<Value> = store.invoke(Access::Read, &inv).await?;
    let mut it = reply.into_iter();
    match it.next() {
        Some(Value::Int(1)) => context_from(store, session, it),
        Some(Value::Int(0)) => Err(Error::session_not_found(session)),
        other => Err(unexpected("peer context", other.as_ref())),
    }
}

fn pairs<'a>(
    inv: &mut ScriptInvocation<'_>,
    entries: impl ExactSizeIterator<Item = (&'a str, i64)>,
) {
    inv.arg(entries.len());
    for (key, id) in entries {
        inv.arg(key).arg(id);
    }
}

/// The removed index entries worth sending: one whose key the plan adds
/// again is overwritten by the add anyway.
fn removals<'a>(
    removed: &'a [(String, PeerId)],
    added: &[(String, PeerId)],
) -> Vec<(&'a str, i64)> {
    let added: HashSet<&str> = added.iter().map(|(k, _)| k.as_str()).collect();
    removed
        .iter()
        .filter(|(k, _)| !added.contains(k.as_str()))
        .map(|(k, id)| (k.as_str(), id.marked()))
        .collect()
}

/// Sends the plan with the digest of the context it was computed from
/// (`None`: computed from an empty context).
async fn apply(
    store: &RedisStore,
    session: &str,
    batch: &PeerBatch,
    digest: Option<&[u8]>,
    plan: &PeerPlan,
) -> Result<Applied> {
    let mut inv = scripts::PEER_APPLY.prepare_invoke();
    session_keys(store, &mut inv, session);
    inv.arg(digest.unwrap_or_default());
    context_args(&mut inv, batch);
    pairs(
        &mut inv,
        removals(&plan.usernames_removed, &plan.usernames_added).into_iter(),
    );
    pairs(
        &mut inv,
        removals(&plan.phones_removed, &plan.phones_added).into_iter(),
    );
    inv.arg(plan.rows.len());
    for row in &plan.rows {
        inv.arg(row.id.marked()).arg(encode_peer(row));
    }
    for added in [&plan.usernames_added, &plan.phones_added] {
        pairs(
            &mut inv,
            added.iter().map(|(k, id)| (k.as_str(), id.marked())),
        );
    }
    match store.invoke::<Value>(Access::Write, &inv).await? {
        Value::Int(1) => Ok(Applied::Written),
        Value::Int(0) => Err(Error::session_not_found(session)),
        Value::Array(items) => Ok(Applied::Moved(context_from(
            store,
            session,
            items.into_iter(),
        )?)),
        other => Err(unexpected("peer apply", Some(&other))),
    }
}

/// A random pause of up to `attempt` ms (at most 20 ms), so that writers
/// whose batches keep colliding stop arriving in lockstep.
async fn backoff(attempt: u32) {
    static STATE: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()))
        .unwrap_or(0);
    let mut x = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed) ^ nanos;
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^= x >> 33;
    let ceiling_us = u64::from(attempt.min(20)) * 1_000;
    tokio::time::sleep(Duration::from_micros(x % ceiling_us.max(1))).await;
}

/// [`SessionBackend::cache_peers`](session_core::SessionBackend::cache_peers)
/// on Redis: plan, apply, and plan again while the context is not the one
/// planned from (see the module docs).
pub(crate) async fn cache_peers(
    store: &RedisStore,
    session: &str,
    batch: &PeerBatch,
) -> Result<()> {
    store.writable()?;
    let started = Instant::now();
    // An empty batch writes nothing, but still answers NotFound for a
    // missing session: the context script checks.
    let mut context = if batch.is_empty() {
        Some(load(store, session, batch).await?)
    } else {
        None
    };
    let mut conflicts = 0;
    for _ in 0..MAX_ATTEMPTS {
        let (digest, stored) = match context.take() {
            Some(Context { digest, stored }) => (Some(digest), stored),
            None => (None, Vec::new()),
        };
        let plan = batch.plan(stored);
        if plan.is_empty() {
            return Ok(());
        }
        let planned_from_stored = digest.is_some();
        match apply(store, session, batch, digest.as_deref(), &plan).await? {
            Applied::Written => return Ok(()),
            // The batch touches stored peers: plan from them at once.
            Applied::Moved(now) if !planned_from_stored => context = Some(now),
            // Another writer changed them in between. The first time, plan
            // from what the script answered; after that, let writers that
            // keep colliding drift apart before loading afresh.
            Applied::Moved(now) => {
                conflicts += 1;
                context = if conflicts == 1 {
                    Some(now)
                } else {
                    backoff(conflicts).await;
                    Some(load(store, session, batch).await?)
                };
            }
        }
    }
    Err(Error::Busy {
        what: format!(
            "the peer cache of redis session {session:?} (other clients kept changing the \
             peers this batch touches)"
        ),
        waited: started.elapsed(),
        source: None,
    })
}
