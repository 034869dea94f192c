//! Peer-cache writes: core plans, MongoDB applies.
//!
//! One unit of work per batch (a transaction, or the session's write lock
//! without transactions): bump the session's revision (which checks that
//! the session exists and makes concurrent batches on one session conflict,
//! so one of them runs again), load the batch's context — the stored peers
//! of its ids and the current owners of its username keys and phones — with
//! indexed `find`s, call [`PeerBatch::plan`], and write the plan's rows with
//! one `update` command of upsert statements.
//!
//! The context is loaded with one `$in` query per index rather than one
//! `$or` query: SecantusDB scans the whole collection for an `$or` (and for
//! the sub-pipelines of `$unionWith`), which grows with every stored peer.
//!
//! Usernames and phones live in the peer documents themselves (multikey
//! indexes on `usernames.key` and `phone` serve the lookups), so the plan's
//! index entries need no writes of their own: the rows it rewrites are the
//! peers that gained or lost them.

use std::collections::{BTreeMap, BTreeSet};

use mongodb::ClientSession;
use mongodb::bson::{Bson, doc};
use session_core::{Peer, PeerBatch, Result};

use crate::codec::{self, field};
use crate::error::{Access, Fail, WriteCommandError};
use crate::store::{IN_CHUNK, Inner, bump};
use crate::unit::step;

/// Statements per `update` command when peers are written.
const UPDATE_CHUNK_STATEMENTS: usize = 1_000;
/// Bytes of statements per `update` command (well below the 16 MiB limit).
const UPDATE_CHUNK_BYTES: usize = 8 * 1024 * 1024;

pub(crate) async fn cache_peers(inner: &Inner, session: &str, batch: &PeerBatch) -> Result<()> {
    let c = &inner.collections;
    inner
        .unit(
            Access::Write,
            &[session],
            step!(s, {
                bump(&c.sessions, &mut s, session).await?;
                let stored = load_context(inner, &mut s, session, batch).await?;
                let plan = batch.plan(stored);
                if !plan.is_empty() {
                    write_rows(inner, &mut s, session, &plan.rows).await?;
                }
                Ok(())
            }),
        )
        .await
}

/// The stored peers the batch touches, each once: those of its ids, then
/// the owners of the username keys and phones that none of those holds
/// (each key and phone has one owner, so a key a stored peer of the batch
/// lists needs no lookup). Re-caching known peers costs one query; every
/// query is an `$in` on one index, [`IN_CHUNK`] values at a time.
async fn load_context(
    inner: &Inner,
    s: &mut ClientSession,
    session: &str,
    batch: &PeerBatch,
) -> std::result::Result<Vec<Peer>, Fail> {
    let mut stored: BTreeMap<i64, Peer> = BTreeMap::new();
    let ids: Vec<Bson> = batch
        .ids()
        .iter()
        .map(|id| Bson::Int64(id.marked()))
        .collect();
    find_into(inner, s, session, "id", &ids, &mut stored).await?;
    let held: BTreeSet<String> = stored.values().flat_map(Peer::username_keys).collect();
    let keys: Vec<Bson> = batch
        .username_keys()
        .iter()
        .filter(|key| !held.contains(*key))
        .map(|key| Bson::String(key.clone()))
        .collect();
    find_into(inner, s, session, "usernames.key", &keys, &mut stored).await?;
    let held: BTreeSet<&str> = stored.values().filter_map(|p| p.phone.as_deref()).collect();
    let phones: Vec<Bson> = batch
        .phones()
        .iter()
        .filter(|phone| !held.contains(phone.as_str()))
        .map(|phone| Bson::String(phone.clone()))
        .collect();
    find_into(inner, s, session, "phone", &phones, &mut stored).await?;
    Ok(stored.into_values().collect())
}

/// Adds the peers of the session whose `path` is one of `values`.
async fn find_into(
    inner: &Inner,
    s: &mut ClientSession,
    session: &str,
    path: &str,
    values: &[Bson],
    into: &mut BTreeMap<i64, Peer>,
) -> std::result::Result<(), Fail> {
    let peers = &inner.collections.peers;
    for chunk in values.chunks(IN_CHUNK) {
        let filter = doc! { field::SESSION: session, path: { "$in": chunk } };
        let mut cursor = peers.find(filter).session(&mut *s).await?;
        while let Some(doc) = cursor.next(&mut *s).await {
            let peer = codec::decode_peer(&doc?, peers.name())?;
            into.insert(peer.id.marked(), peer);
        }
    }
    Ok(())
}

/// Upserts whole peer documents with as few `update` commands as the size
/// limits allow (one for a usual batch).
async fn write_rows(
    inner: &Inner,
    s: &mut ClientSession,
    session: &str,
    rows: &[Peer],
) -> std::result::Result<(), Fail> {
    let mut statements = Vec::new();
    let mut bytes = 0;
    for (i, peer) in rows.iter().enumerate() {
        let statement = doc! {
            "q": { field::SESSION: session, "id": peer.id.marked() },
            "u": codec::peer_doc(session, peer),
            "upsert": true,
        };
        bytes += statement.to_vec().map(|v| v.len()).unwrap_or(1024);
        statements.push(Bson::Document(statement));
        let last = i + 1 == rows.len();
        if last || statements.len() >= UPDATE_CHUNK_STATEMENTS || bytes >= UPDATE_CHUNK_BYTES {
            run_update(inner, s, std::mem::take(&mut statements)).await?;
            bytes = 0;
        }
    }
    Ok(())
}

async fn run_update(
    inner: &Inner,
    s: &mut ClientSession,
    statements: Vec<Bson>,
) -> std::result::Result<(), Fail> {
    let mut command = doc! {
        "update": inner.collections.peers.name(),
        "updates": statements,
        "ordered": true,
    };
    if !inner.transactions
        && let Some(concern) = inner.client.write_concern()
        && let Ok(concern) = mongodb::bson::serialize_to_bson(concern)
    {
        command.insert("writeConcern", concern);
    }
    let reply = inner.db.run_command(command).session(&mut *s).await?;
    if let Ok(errors) = reply.get_array("writeErrors")
        && let Some(Bson::Document(first)) = errors.first()
    {
        return Err(WriteCommandError {
            command: "update",
            code: first.get_i32("code").unwrap_or(0),
            message: first.get_str("errmsg").unwrap_or_default().to_owned(),
        }
        .into());
    }
    if let Ok(concern) = reply.get_document("writeConcernError") {
        return Err(WriteCommandError {
            command: "update",
            code: concern.get_i32("code").unwrap_or(0),
            message: concern.get_str("errmsg").unwrap_or_default().to_owned(),
        }
        .into());
    }
    Ok(())
}
