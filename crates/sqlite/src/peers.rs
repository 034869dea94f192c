//! The peer cache in SQL: rows, merges, and username/phone ownership moves,
//! following the rules of `session_core::PeerTable` exactly.

use rusqlite::{Connection, OptionalExtension, Row, params};
use session_core::model::{AccessHash, normalize_username};
use session_core::{Error, Peer, PeerId, PeerKind};

use crate::db::R;

/// One peer by id.
pub(crate) const BY_ID: &str = "SELECT id, kind, hash, hash_is_min, usernames, phone, name, \
     last_seen FROM peers WHERE session = ?1 AND id = ?2";

/// One peer by id, with the session's row id, like [`BY_USERNAME`]: `?1`
/// session name, `?2` marked id.
pub(crate) const BY_ID_JOINED: &str = "SELECT s.id, p.id, p.kind, p.hash, p.hash_is_min, \
     p.usernames, p.phone, p.name, p.last_seen FROM sessions s \
     LEFT JOIN peers p ON p.session = s.id AND p.id = ?2 \
     WHERE s.name = ?1";

/// Every peer of a session, by id.
pub(crate) const ALL: &str = "SELECT id, kind, hash, hash_is_min, usernames, phone, name, \
     last_seen FROM peers WHERE session = ?1 ORDER BY id";

/// The owner of a username, with the session's row id: `?1` session name,
/// `?2` lowercased username. No row when the session is missing; NULL peer
/// columns when nobody owns the username.
pub(crate) const BY_USERNAME: &str = "SELECT s.id, p.id, p.kind, p.hash, p.hash_is_min, \
     p.usernames, p.phone, p.name, p.last_seen FROM sessions s \
     LEFT JOIN peer_usernames u ON u.session = s.id AND u.username_lower = ?2 \
     LEFT JOIN peers p ON p.session = s.id AND p.id = u.peer_id \
     WHERE s.name = ?1";

/// The owner of a phone, like [`BY_USERNAME`].
pub(crate) const BY_PHONE: &str = "SELECT s.id, p.id, p.kind, p.hash, p.hash_is_min, \
     p.usernames, p.phone, p.name, p.last_seen FROM sessions s \
     LEFT JOIN peers p ON p.session = s.id AND p.phone = ?2 \
     WHERE s.name = ?1";

/// Takes a phone away from every other peer: `?1` session, `?2` phone, `?3` new owner.
const TAKE_PHONE: &str =
    "UPDATE peers SET phone = NULL WHERE session = ?1 AND phone = ?2 AND id <> ?3";

/// The current owner of a lowercased username.
const USERNAME_OWNER: &str =
    "SELECT peer_id FROM peer_usernames WHERE session = ?1 AND username_lower = ?2";

fn corrupt(message: String) -> Error {
    Error::corrupt("the sqlite peers table", message)
}

/// Reads a peer from `row`, starting at column `at`.
pub(crate) fn from_row(row: &Row<'_>, at: usize) -> R<Peer> {
    let marked: i64 = row.get(at)?;
    let id = PeerId::from_marked(marked)
        .map_err(|_| corrupt(format!("{marked} is not a marked peer id")))?;
    let kind = match row.get::<_, Option<i64>>(at + 1)? {
        None => None,
        Some(code) => Some(
            PeerKind::from_code(code)
                .ok_or_else(|| corrupt(format!("peer {id} has unknown kind code {code}")))?,
        ),
    };
    let access_hash = match (
        row.get::<_, Option<i64>>(at + 2)?,
        row.get::<_, Option<bool>>(at + 3)?,
    ) {
        (Some(value), min) => Some(AccessHash {
            value,
            min: min.unwrap_or(false),
        }),
        (None, _) => None,
    };
    let usernames = match row.get::<_, Option<String>>(at + 4)? {
        None => None,
        Some(text) => {
            Some(
                serde_json::from_str::<Vec<String>>(&text).map_err(|e| Error::Corrupt {
                    what: "the sqlite peers table".to_owned(),
                    message: format!("peer {id} has usernames that are not a JSON list of strings"),
                    source: Some(Box::new(e)),
                })?,
            )
        }
    };
    Ok(Peer {
        id,
        kind,
        access_hash,
        usernames,
        phone: row.get(at + 5)?,
        name: row.get(at + 6)?,
        last_seen: row.get(at + 7)?,
    })
}

fn encode_usernames(usernames: &Option<Vec<String>>) -> R<Option<String>> {
    match usernames {
        None => Ok(None),
        Some(list) => Ok(Some(
            serde_json::to_string(list).map_err(|e| Error::backend(crate::db::BACKEND, e))?,
        )),
    }
}

/// One stored peer.
pub(crate) fn load(conn: &Connection, session: i64, id: i64) -> R<Option<Peer>> {
    let mut stmt = conn.prepare_cached(BY_ID)?;
    let mut rows = stmt.query(params![session, id])?;
    match rows.next()? {
        Some(row) => Ok(Some(from_row(row, 0)?)),
        None => Ok(None),
    }
}

/// Writes a whole peer row (insert or replace its fields in place).
fn store(conn: &Connection, session: i64, peer: &Peer) -> R<()> {
    let usernames = encode_usernames(&peer.usernames)?;
    conn.prepare_cached(
        "INSERT INTO peers (session, id, kind, hash, hash_is_min, usernames, phone, name, last_seen) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
         ON CONFLICT (session, id) DO UPDATE SET kind = excluded.kind, hash = excluded.hash, \
         hash_is_min = excluded.hash_is_min, usernames = excluded.usernames, \
         phone = excluded.phone, name = excluded.name, last_seen = excluded.last_seen",
    )?
    .execute(params![
        session,
        peer.id.marked(),
        peer.kind.map(PeerKind::code),
        peer.access_hash.map(|h| h.value),
        peer.access_hash.map(|h| h.min),
        usernames,
        peer.phone,
        peer.name,
        peer.last_seen,
    ])?;
    Ok(())
}

/// Merges one normalized peer into the cache, moving its usernames and phone
/// to it (the most recent owner wins).
pub(crate) fn upsert(conn: &Connection, session: i64, peer: &Peer) -> R<()> {
    let id = peer.id.marked();
    let (merged, old_keys) = match load(conn, session, id)? {
        Some(mut stored) => {
            let old_keys = stored.username_keys();
            stored.merge(peer);
            (stored, old_keys)
        }
        None => (peer.clone(), Vec::new()),
    };
    let new_keys = merged.username_keys();

    // Usernames this peer no longer has stop pointing at it.
    for key in old_keys.iter().filter(|k| !new_keys.contains(k)) {
        conn.prepare_cached(
            "DELETE FROM peer_usernames WHERE session = ?1 AND username_lower = ?2 AND peer_id = ?3",
        )?
        .execute(params![session, key, id])?;
    }

    // The phone moves: whoever had it loses it.
    if let Some(phone) = &merged.phone {
        conn.prepare_cached(TAKE_PHONE)?
            .execute(params![session, phone, id])?;
    }
    store(conn, session, &merged)?;

    // Usernames move: the previous owner's list loses them.
    for key in &new_keys {
        let previous: Option<i64> = conn
            .prepare_cached(USERNAME_OWNER)?
            .query_row(params![session, key], |r| r.get(0))
            .optional()?;
        match previous {
            Some(owner) if owner == id => continue,
            Some(owner) => drop_username(conn, session, owner, key)?,
            None => {}
        }
        conn.prepare_cached(
            "INSERT INTO peer_usernames (session, username_lower, peer_id) VALUES (?1, ?2, ?3) \
             ON CONFLICT (session, username_lower) DO UPDATE SET peer_id = excluded.peer_id",
        )?
        .execute(params![session, key, id])?;
    }
    Ok(())
}

/// Removes `key` from the usernames of peer `owner`.
fn drop_username(conn: &Connection, session: i64, owner: i64, key: &str) -> R<()> {
    if let Some(mut other) = load(conn, session, owner)?
        && let Some(names) = &mut other.usernames
    {
        names.retain(|n| normalize_username(n) != key);
        let encoded = encode_usernames(&other.usernames)?;
        conn.prepare_cached("UPDATE peers SET usernames = ?3 WHERE session = ?1 AND id = ?2")?
            .execute(params![session, owner, encoded])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The query plan of `sql`, one detail line per step.
    fn plan(conn: &Connection, sql: &str) -> Vec<String> {
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("explain");
        // Parameters stay unbound (NULL): the plan does not depend on them.
        let mut rows = stmt.raw_query();
        let mut steps = Vec::new();
        while let Some(row) = rows.next().expect("plan row") {
            steps.push(row.get::<_, String>(3).expect("detail"));
        }
        steps
    }

    fn assert_seeks(conn: &Connection, sql: &str, index: &str) {
        let steps = plan(conn, sql);
        assert!(
            steps.iter().all(|s| s.starts_with("SEARCH")),
            "{sql}: {steps:?}"
        );
        assert!(
            steps.iter().any(|s| s.contains(index)),
            "{sql} uses {index}: {steps:?}"
        );
    }

    /// Lookups and ownership moves are index seeks (logarithmic), never scans.
    #[test]
    fn lookups_are_index_seeks() {
        let conn = Connection::open_in_memory().expect("memory");
        crate::schema::prepare(&conn, "test", false).expect("schema");
        assert_seeks(&conn, BY_ID, "PRIMARY KEY");
        assert_seeks(&conn, BY_ID_JOINED, "PRIMARY KEY");
        assert_seeks(&conn, BY_USERNAME, "PRIMARY KEY");
        assert_seeks(&conn, BY_PHONE, "peers_by_phone");
        assert_seeks(&conn, TAKE_PHONE, "peers_by_phone");
        assert_seeks(&conn, USERNAME_OWNER, "PRIMARY KEY");
        assert_seeks(
            &conn,
            "SELECT id FROM sessions WHERE name = ?1",
            "sqlite_autoindex_sessions",
        );
    }
}
