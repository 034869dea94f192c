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
//! - When the context is not empty but is exactly the one that plan writes
//!   (every id holds the very record the plan would write, byte for byte,
//!   and every username key and phone is owned by the id the plan gives
//!   it: typically the batch was cached already), the script writes nothing
//!   and says so. That context is then known whole without reading it, so
//!   the batch is planned from it; when that plan is empty (the usual case)
//!   the batch is done, in one round trip. Otherwise the context is loaded
//!   as below.
//! - Otherwise the script answers the real context with a digest of
//!   it, the batch is planned again from that, and sent with the digest: a
//!   second round trip. If another writer changed the context in between,
//!   the script answers the context as it is then, and the batch is planned
//!   again from it; if that collides too, after a short random pause, from a
//!   context loaded afresh.
//!   Writers that touch disjoint peers never retry each other.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::{Cmd, Value};
use session_core::{Error, Peer, PeerBatch, PeerId, PeerPlan, Result};

use crate::codec::{decode_peer, encode_peer_into};
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
    /// Nothing written: the context is the one the plan (computed from an
    /// empty context) writes. With the plan of the batch on that context.
    AsPlanned(PeerPlan),
    /// The context is not the one planned from (nothing written); this is
    /// the one there is now.
    Moved(Context),
}

fn context_args(cmd: &mut Cmd, batch: &PeerBatch) {
    cmd.arg(batch.ids().len());
    for id in batch.ids() {
        cmd.arg(id.marked());
    }
    cmd.arg(batch.username_keys().len());
    for key in batch.username_keys() {
        cmd.arg(key.as_str());
    }
    cmd.arg(batch.phones().len());
    for phone in batch.phones() {
        cmd.arg(phone.as_str());
    }
}

fn session_keys(store: &RedisStore, session: &str) -> [String; 4] {
    [META, PEERS, UNAME, PHONE].map(|which| store.key(session, which))
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
    let mut cmd = scripts::call(&scripts::PEER_CONTEXT, &session_keys(store, session));
    context_args(&mut cmd, batch);
    let reply: Vec<Value> = store
        .eval(Access::Read, &scripts::PEER_CONTEXT, &cmd)
        .await?;
    let mut it = reply.into_iter();
    match it.next() {
        Some(Value::Int(1)) => context_from(store, session, it),
        Some(Value::Int(0)) => Err(Error::session_not_found(session)),
        other => Err(unexpected("peer context", other.as_ref())),
    }
}

fn pairs<'a>(cmd: &mut Cmd, entries: impl ExactSizeIterator<Item = (&'a str, i64)>) {
    cmd.arg(entries.len());
    for (key, id) in entries {
        cmd.arg(key).arg(id);
    }
}

/// Whether a plan computed from an empty context lines up with the batch's
/// context: it removes nothing, its rows are the batch's ids and its added
/// usernames and phones the batch's keys and phones, in the same order. The
/// apply script can then tell, entry by entry, whether the stored context
/// is the one the plan writes ([`Applied::AsPlanned`]).
fn lines_up(batch: &PeerBatch, plan: &PeerPlan) -> bool {
    fn same<'a, T: PartialEq + 'a>(
        a: impl ExactSizeIterator<Item = T>,
        b: impl ExactSizeIterator<Item = T>,
    ) -> bool {
        a.len() == b.len() && a.zip(b).all(|(x, y)| x == y)
    }
    plan.usernames_removed.is_empty()
        && plan.phones_removed.is_empty()
        && same(plan.rows.iter().map(|r| r.id), batch.ids().iter().copied())
        && same(
            plan.usernames_added.iter().map(|(k, _)| k.as_str()),
            batch.username_keys().iter().map(String::as_str),
        )
        && same(
            plan.phones_added.iter().map(|(p, _)| p.as_str()),
            batch.phones().iter().map(String::as_str),
        )
}

/// The removed index entries worth sending: one whose key the plan adds
/// again is overwritten by the add anyway.
fn removals<'a>(
    removed: &'a [(String, PeerId)],
    added: &[(String, PeerId)],
) -> Vec<(&'a str, i64)> {
    if removed.is_empty() {
        return Vec::new();
    }
    let added: HashSet<&str> = added.iter().map(|(k, _)| k.as_str()).collect();
    removed
        .iter()
        .filter(|(k, _)| !added.contains(k.as_str()))
        .map(|(k, id)| (k.as_str(), id.marked()))
        .collect()
}

/// Sends the plan with the digest of the context it was computed from
/// (`None`: computed from an empty context; then, when the plan lines up
/// with the batch, the script also answers whether the context is the one
/// the plan writes).
async fn apply(
    store: &RedisStore,
    session: &str,
    batch: &PeerBatch,
    digest: Option<&[u8]>,
    plan: PeerPlan,
) -> Result<Applied> {
    let ask = digest.is_none() && lines_up(batch, &plan);
    let mut cmd = scripts::call(&scripts::PEER_APPLY, &session_keys(store, session));
    cmd.arg(digest.unwrap_or_default())
        .arg(if ask { "1" } else { "0" });
    context_args(&mut cmd, batch);
    pairs(
        &mut cmd,
        removals(&plan.usernames_removed, &plan.usernames_added).into_iter(),
    );
    pairs(
        &mut cmd,
        removals(&plan.phones_removed, &plan.phones_added).into_iter(),
    );
    cmd.arg(plan.rows.len());
    let mut record = Vec::with_capacity(256);
    for row in &plan.rows {
        record.clear();
        encode_peer_into(row, &mut record);
        cmd.arg(row.id.marked()).arg(record.as_slice());
    }
    for added in [&plan.usernames_added, &plan.phones_added] {
        pairs(
            &mut cmd,
            added.iter().map(|(k, id)| (k.as_str(), id.marked())),
        );
    }
    match store
        .eval::<Value>(Access::Write, &scripts::PEER_APPLY, &cmd)
        .await?
    {
        Value::Int(1) => Ok(Applied::Written),
        Value::Int(2) if ask => Ok(Applied::AsPlanned(batch.plan(plan.rows))),
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
        match apply(store, session, batch, digest.as_deref(), plan).await? {
            Applied::Written => return Ok(()),
            // The stored context is the one `plan` writes: the batch's ids
            // hold its rows and nothing else owns the batch's usernames and
            // phones. `replanned` is the batch planned on exactly that;
            // usually it changes nothing (the batch is cached already), and
            // there is nothing to send. Otherwise load the context with its
            // digest and go on from there.
            Applied::AsPlanned(replanned) => {
                if replanned.is_empty() {
                    return Ok(());
                }
                context = Some(load(store, session, batch).await?);
            }
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
