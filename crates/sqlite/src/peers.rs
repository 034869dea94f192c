//! The peer cache in SQL: the row format, the lookups, loading what a batch
//! touches, and applying the plan `session_core::PeerBatch::plan` computes.
//! No merge or ownership rule is decided here.

use std::rc::Rc;
use std::sync::OnceLock;

use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, Row, params};
use session_core::model::AccessHash;
use session_core::{Error, Peer, PeerBatch, PeerId, PeerKind, PeerPlan};

use crate::db::{BACKEND, SqlResult};

/// The peer columns, in the order [`from_row`] reads them.
macro_rules! peer_columns {
    ($p:literal) => {
        concat!(
            $p,
            "id, ",
            $p,
            "kind, ",
            $p,
            "hash, ",
            $p,
            "hash_is_min, ",
            $p,
            "usernames, ",
            $p,
            "phone, ",
            $p,
            "name, ",
            $p,
            "last_seen"
        )
    };
}

/// One peer by id, with the session's row id: `?1` session name, `?2`
/// marked id. No row when the session is missing; NULL peer columns when
/// the peer is unknown.
pub(crate) const BY_ID: &str = concat!(
    "SELECT s.id, ",
    peer_columns!("p."),
    " FROM sessions s LEFT JOIN peers p ON p.session = s.id AND p.id = ?2 WHERE s.name = ?1"
);

/// Many peers by id, like [`BY_ID`]: `?2` an `rarray` of marked ids.
pub(crate) const BY_IDS: &str = concat!(
    "SELECT s.id, ",
    peer_columns!("p."),
    " FROM sessions s LEFT JOIN peers p ON p.session = s.id AND p.id IN rarray(?2) \
     WHERE s.name = ?1"
);

/// The owner of a username, like [`BY_ID`]: `?2` the lowercased username.
pub(crate) const BY_USERNAME: &str = concat!(
    "SELECT s.id, ",
    peer_columns!("p."),
    " FROM sessions s \
     LEFT JOIN peer_usernames u ON u.session = s.id AND u.username_lower = ?2 \
     LEFT JOIN peers p ON p.session = s.id AND p.id = u.peer_id \
     WHERE s.name = ?1"
);

/// The owner of a phone, like [`BY_ID`]: `?2` the phone (digits).
pub(crate) const BY_PHONE: &str = concat!(
    "SELECT s.id, ",
    peer_columns!("p."),
    " FROM sessions s LEFT JOIN peers p ON p.session = s.id AND p.phone = ?2 \
     WHERE s.name = ?1"
);

/// Every peer of a session (by row id `?1`), by id.
pub(crate) const ALL: &str = concat!(
    "SELECT ",
    peer_columns!(""),
    " FROM peers WHERE session = ?1 ORDER BY id"
);

/// The stored peers a batch touches, in one statement: `?1` session row id,
/// `?2` the batch's ids, `?3` its username keys, `?4` its phones (each an
/// `rarray`). A peer may come more than once.
pub(crate) const CONTEXT: &str = concat!(
    "SELECT ",
    peer_columns!(""),
    " FROM peers WHERE session = ?1 AND id IN rarray(?2) \
     UNION ALL SELECT ",
    peer_columns!("p."),
    " FROM peer_usernames u JOIN peers p ON p.session = u.session AND p.id = u.peer_id \
     WHERE u.session = ?1 AND u.username_lower IN rarray(?3) \
     UNION ALL SELECT ",
    peer_columns!(""),
    " FROM peers INDEXED BY peers_by_phone \
     WHERE session = ?1 AND phone IS NOT NULL AND phone IN rarray(?4)"
);

/// Clears a phone a peer gives up, before the rows are written (the phone
/// index is unique): `?1` session, `?2` peer, `?3` phone.
pub(crate) const CLEAR_PHONE: &str =
    "UPDATE peers SET phone = NULL WHERE session = ?1 AND id = ?2 AND phone = ?3";

/// Deletes a username index entry: `?1` session, `?2` key, `?3` the peer it named.
pub(crate) const REMOVE_USERNAME: &str =
    "DELETE FROM peer_usernames WHERE session = ?1 AND username_lower = ?2 AND peer_id = ?3";

fn corrupt(message: String) -> Error {
    Error::corrupt("the sqlite peers table", message)
}

/// Reads a peer from `row`, starting at column `at`.
pub(crate) fn from_row(row: &Row<'_>, at: usize) -> SqlResult<Peer> {
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
    let usernames = match row.get_ref(at + 4)? {
        ValueRef::Null => None,
        ValueRef::Text(text) => Some(match plain_usernames(text) {
            Some(list) => list,
            None => serde_json::from_slice::<Vec<String>>(text).map_err(|e| Error::Corrupt {
                what: "the sqlite peers table".to_owned(),
                message: format!("peer {id} has usernames that are not a JSON list of strings"),
                source: Some(Box::new(e)),
            })?,
        }),
        _ => {
            return Err(corrupt(format!("peer {id} has usernames that are not text")).into());
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

/// The usernames list as [`encode_usernames`] writes it when no name needs
/// an escape (`[]`, `["a"]`, `["a","b"]`), read without the JSON parser;
/// `None` for anything else, which the parser then reads (or refuses).
fn plain_usernames(text: &[u8]) -> Option<Vec<String>> {
    let inner = text.strip_prefix(b"[")?.strip_suffix(b"]")?;
    if inner.is_empty() {
        return Some(Vec::new());
    }
    let inner = inner.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    if inner.iter().any(|&b| b == b'\\' || b < 0x20) {
        return None;
    }
    let inner = std::str::from_utf8(inner).ok()?;
    inner
        .split("\",\"")
        .map(|name| (!name.contains('"')).then(|| name.to_owned()))
        .collect()
}

/// Reads a peer from a `LEFT JOIN` row: `None` when its columns are NULL.
pub(crate) fn from_joined_row(row: &Row<'_>, at: usize) -> SqlResult<Option<Peer>> {
    if row.get_ref(at)? == ValueRef::Null {
        return Ok(None);
    }
    Ok(Some(from_row(row, at)?))
}

fn encode_usernames(usernames: &Option<Vec<String>>) -> SqlResult<Option<String>> {
    match usernames {
        None => Ok(None),
        Some(list) => Ok(Some(
            serde_json::to_string(list).map_err(|e| Error::backend(BACKEND, e))?,
        )),
    }
}

/// Statement sizes of the multi-row writes, largest first: a batch of `n`
/// rows is written in chunks of these sizes (100 = 64 + 32 + 4), so that a
/// handful of statement texts, each prepared once per connection, serve
/// every batch size. One multi-row statement measured 1.3 to 5 times faster
/// than a cached one-row statement executed per row (benches/interleaved.rs).
const CHUNKS: [usize; 7] = [64, 32, 16, 8, 4, 2, 1];

/// The texts of a multi-row `INSERT`, one per size of [`CHUNKS`]: `head`
/// (up to `VALUES`), `columns` placeholders per row, then `tail`.
struct MultiRow {
    texts: [String; CHUNKS.len()],
    columns: usize,
}

impl MultiRow {
    fn new(head: &str, columns: usize, tail: &str) -> Self {
        let texts = CHUNKS.map(|rows| {
            let values: Vec<String> = (0..rows)
                .map(|row| {
                    let params: Vec<String> = (1..=columns)
                        .map(|column| format!("?{}", row * columns + column))
                        .collect();
                    format!("({})", params.join(", "))
                })
                .collect();
            format!("{head} VALUES {} {tail}", values.join(", "))
        });
        MultiRow { texts, columns }
    }

    /// Runs the inserts for `params` (`columns` values per row).
    fn execute(&self, conn: &Connection, params: &[&dyn rusqlite::ToSql]) -> SqlResult<()> {
        let mut rows = params.len() / self.columns;
        let mut at = 0;
        for (size, text) in CHUNKS.iter().zip(&self.texts) {
            if rows < *size {
                continue;
            }
            let mut stmt = conn.prepare_cached(text)?;
            while rows >= *size {
                let end = at + size * self.columns;
                stmt.execute(&params[at..end])?;
                at = end;
                rows -= size;
            }
        }
        Ok(())
    }
}

fn row_writes() -> &'static MultiRow {
    static TEXTS: OnceLock<MultiRow> = OnceLock::new();
    TEXTS.get_or_init(|| {
        MultiRow::new(
            "INSERT INTO peers (session, id, kind, hash, hash_is_min, usernames, phone, name, \
             last_seen)",
            9,
            "ON CONFLICT (session, id) DO UPDATE SET kind = excluded.kind, \
             hash = excluded.hash, hash_is_min = excluded.hash_is_min, \
             usernames = excluded.usernames, phone = excluded.phone, name = excluded.name, \
             last_seen = excluded.last_seen",
        )
    })
}

fn username_writes() -> &'static MultiRow {
    static TEXTS: OnceLock<MultiRow> = OnceLock::new();
    TEXTS.get_or_init(|| {
        MultiRow::new(
            "INSERT INTO peer_usernames (session, username_lower, peer_id)",
            3,
            "ON CONFLICT (session, username_lower) DO UPDATE SET peer_id = excluded.peer_id",
        )
    })
}

/// The bound values of one row, borrowed from the peer where they can be.
struct RowValues<'a> {
    id: i64,
    kind: Option<i32>,
    hash: Option<i64>,
    hash_is_min: Option<bool>,
    usernames: Option<String>,
    peer: &'a Peer,
}

/// Writes whole rows (insert, or replace every column), in multi-row statements.
pub(crate) fn write_rows<'a>(
    conn: &Connection,
    session: i64,
    rows: impl IntoIterator<Item = &'a Peer>,
) -> SqlResult<()> {
    let values = rows
        .into_iter()
        .map(|peer| {
            Ok(RowValues {
                id: peer.id.marked(),
                kind: peer.kind.map(PeerKind::code),
                hash: peer.access_hash.map(|h| h.value),
                hash_is_min: peer.access_hash.map(|h| h.min),
                usernames: encode_usernames(&peer.usernames)?,
                peer,
            })
        })
        .collect::<SqlResult<Vec<_>>>()?;
    let mut params: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(values.len() * 9);
    for row in &values {
        params.extend_from_slice(&[
            &session,
            &row.id,
            &row.kind,
            &row.hash,
            &row.hash_is_min,
            &row.usernames,
            &row.peer.phone,
            &row.peer.name,
            &row.peer.last_seen,
        ]);
    }
    row_writes().execute(conn, &params)
}

/// Writes username index entries (replacing the owner a key has), in
/// multi-row statements.
pub(crate) fn add_usernames<'a>(
    conn: &Connection,
    session: i64,
    entries: impl IntoIterator<Item = (&'a str, PeerId)>,
) -> SqlResult<()> {
    let entries: Vec<(&str, i64)> = entries
        .into_iter()
        .map(|(key, owner)| (key, owner.marked()))
        .collect();
    let mut params: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(entries.len() * 3);
    for (key, owner) in &entries {
        params.extend_from_slice(&[&session, key, owner]);
    }
    username_writes().execute(conn, &params)
}

fn text_array(values: &[String]) -> Rc<Vec<Value>> {
    Rc::new(values.iter().cloned().map(Value::Text).collect())
}

/// The stored peers the batch touches (by id, username and phone), in one statement.
pub(crate) fn load_context(
    conn: &Connection,
    session: i64,
    batch: &PeerBatch,
) -> SqlResult<Vec<Peer>> {
    let ids: Rc<Vec<Value>> = Rc::new(
        batch
            .ids()
            .iter()
            .map(|id| Value::Integer(id.marked()))
            .collect(),
    );
    let mut stmt = conn.prepare_cached(CONTEXT)?;
    let mut rows = stmt.query(params![
        session,
        ids,
        text_array(batch.username_keys()),
        text_array(batch.phones())
    ])?;
    let mut stored = Vec::new();
    while let Some(row) = rows.next()? {
        stored.push(from_row(row, 0)?);
    }
    Ok(stored)
}

/// Applies a plan in the order it asks for: removed index entries (and the
/// phones given up, since the phone index is unique), the rows, then the
/// added username entries. A phone's index entry is its row's `phone`
/// column, so `phones_added` is written with the rows.
pub(crate) fn apply(conn: &Connection, session: i64, plan: &PeerPlan) -> SqlResult<()> {
    if !plan.usernames_removed.is_empty() {
        let mut stmt = conn.prepare_cached(REMOVE_USERNAME)?;
        for (key, id) in &plan.usernames_removed {
            stmt.execute(params![session, key, id.marked()])?;
        }
    }
    if !plan.phones_removed.is_empty() {
        let mut stmt = conn.prepare_cached(CLEAR_PHONE)?;
        for (phone, id) in &plan.phones_removed {
            stmt.execute(params![session, id.marked(), phone])?;
        }
    }
    write_rows(conn, session, &plan.rows)?;
    add_usernames(
        conn,
        session,
        plan.usernames_added
            .iter()
            .map(|(key, id)| (key.as_str(), *id)),
    )
}

/// Caches a batch: loads its context, plans, applies, all in the caller's
/// transaction.
pub(crate) fn cache(conn: &Connection, session: i64, batch: &PeerBatch) -> SqlResult<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let stored = load_context(conn, session, batch)?;
    let plan = batch.plan(stored);
    if plan.is_empty() {
        return Ok(());
    }
    apply(conn, session, &plan)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::schema;
    use session_core::OpenMode;

    /// The plain reading of a usernames list agrees with the JSON parser
    /// wherever it answers, and answers for every list written without escapes.
    #[test]
    fn plain_usernames_read_as_json_does() {
        let lists: [&[&str]; 7] = [
            &[],
            &[""],
            &["durov"],
            &["Alice", "bob_2", "Ωmega"],
            &["quo\"te", "x"],
            &["back\\slash"],
            &["tab\t", "a,b", "]["],
        ];
        for list in lists {
            let list: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
            let text = encode_usernames(&Some(list.clone()))
                .expect("encode")
                .expect("some");
            let plain = plain_usernames(text.as_bytes());
            let escaped = text.contains('\\');
            assert_eq!(plain.is_some(), !escaped, "{text}");
            if let Some(plain) = plain {
                assert_eq!(plain, list, "{text}");
            }
        }
        for text in [
            "[",
            "]",
            "[\"]",
            "[\"a\"",
            "[\"a\",\"b]",
            "[\"a\" ,\"b\"]",
            "[ \"a\"]",
            "[\"a\"b\"]",
            "[\"a\",,\"b\"]",
            "[\"\u{1}\"]",
            "[1]",
            "[\"a\",\"\"]",
            "{}",
            "",
        ] {
            let json = serde_json::from_str::<Vec<String>>(text).ok();
            if let Some(plain) = plain_usernames(text.as_bytes()) {
                assert_eq!(Some(plain), json, "{text:?}");
            }
        }
        assert_eq!(plain_usernames(b"[\"a\xff\"]"), None);
    }

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

    /// Every table step of `sql` is an index seek (no `SCAN` of a table,
    /// no temporary B-tree), and the named indexes are used.
    pub(crate) fn assert_seeks(conn: &Connection, sql: &str, indexes: &[&str]) {
        let steps = plan(conn, sql);
        for step in &steps {
            let scans_a_table = step.starts_with("SCAN") && !step.contains("VIRTUAL TABLE");
            assert!(
                !scans_a_table && !step.contains("TEMP B-TREE"),
                "{sql}: {steps:?}"
            );
        }
        for index in indexes {
            assert!(
                steps
                    .iter()
                    .any(|s| s.starts_with("SEARCH") && s.contains(index)),
                "{sql} uses {index}: {steps:?}"
            );
        }
    }

    pub(crate) fn schema_connection() -> Connection {
        let conn = Connection::open_in_memory().expect("memory");
        rusqlite::vtab::array::load_module(&conn).expect("rarray");
        schema::prepare(&conn, "test", OpenMode::Create, false, true).expect("schema");
        conn
    }

    /// Every batch size is written whole by the chunked multi-row statements.
    #[test]
    fn multi_row_writes_cover_every_size() {
        let conn = schema_connection();
        conn.execute(
            "INSERT INTO sessions (id, name, home_dc, test_mode, created_at_ms, updated_at_ms) \
             VALUES (1, 's', 2, 0, 0, 0)",
            [],
        )
        .expect("session");
        for n in 0..=130i64 {
            conn.execute_batch("DELETE FROM peers; DELETE FROM peer_usernames")
                .expect("clear");
            let peers: Vec<Peer> = (1..=n)
                .map(|i| {
                    Peer::new(PeerId::user(i).expect("id"))
                        .with_hash(i)
                        .with_username(format!("u{i}"))
                })
                .collect();
            write_rows(&conn, 1, &peers).expect("rows");
            let keys: Vec<String> = peers.iter().flat_map(Peer::username_keys).collect();
            add_usernames(
                &conn,
                1,
                keys.iter().zip(&peers).map(|(k, p)| (k.as_str(), p.id)),
            )
            .expect("usernames");
            let stored: Vec<Peer> = {
                let mut stmt = conn.prepare(ALL).expect("prepare");
                let mut rows = stmt.query([1]).expect("query");
                let mut all = Vec::new();
                while let Some(row) = rows.next().expect("row") {
                    all.push(from_row(row, 0).expect("peer"));
                }
                all
            };
            assert_eq!(stored, peers, "{n} rows");
            let entries: i64 = conn
                .query_row("SELECT count(*) FROM peer_usernames", [], |r| r.get(0))
                .expect("count");
            assert_eq!(entries, n, "{n} username entries");
        }
    }

    /// Lookups, the batch context and the plan's writes are index seeks
    /// (logarithmic), never scans.
    #[test]
    fn lookups_are_index_seeks() {
        let conn = schema_connection();
        let name = "sqlite_autoindex_sessions_1";
        assert_seeks(&conn, BY_ID, &[name, "PRIMARY KEY"]);
        assert_seeks(&conn, BY_IDS, &[name, "PRIMARY KEY"]);
        assert_seeks(&conn, BY_USERNAME, &[name, "PRIMARY KEY"]);
        assert_seeks(&conn, BY_PHONE, &[name, "peers_by_phone"]);
        assert_seeks(&conn, CONTEXT, &["PRIMARY KEY", "peers_by_phone"]);
        assert_seeks(&conn, CLEAR_PHONE, &["PRIMARY KEY"]);
        assert_seeks(&conn, REMOVE_USERNAME, &["PRIMARY KEY"]);
        assert_seeks(&conn, ALL, &["PRIMARY KEY"]);
    }
}
