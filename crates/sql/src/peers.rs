//! The peer cache in SQL: the row format, the lookups, loading what a batch
//! touches, and applying the plan `session_core::PeerBatch::plan` computes.
//! No merge or ownership rule is decided here.
//!
//! A peer is a row of `{prefix}peers` (its phone in the `phone` column,
//! indexed by `(session, phone)`) and one row of `{prefix}peer_usernames` per
//! username (`username_lower` is the primary key with the session, so the
//! table is also the username index; `pos` keeps the order of the list).

use std::collections::{BTreeMap, HashMap};

#[cfg(feature = "postgres")]
use sea_orm::sea_query::ArrayType;
use sea_orm::{ConnectionTrait, QueryResult, Value};
use session_core::model::AccessHash;
use session_core::{Error, Peer, PeerBatch, PeerId, PeerKind, PeerPlan};

use crate::config::Engine;
use crate::error::R;
use crate::migration::Tables;
use crate::sql::{Sql, numbered, rows_per_statement, upsert};

/// The peer columns of a lookup, in the order [`decode_all`] reads them: the
/// row, then one username (`pos`, `username`) per row of the join.
pub(crate) const COLUMNS: &str = "p.id, p.kind, p.hash, p.hash_is_min, p.usernames_known, \
     p.phone, p.name, p.last_seen, u.pos, u.username";

const ROW_COLUMNS: [&str; 9] = [
    "session",
    "id",
    "kind",
    "hash",
    "hash_is_min",
    "usernames_known",
    "phone",
    "name",
    "last_seen",
];

const NAME_COLUMNS: [&str; 5] = ["session", "username_lower", "peer_id", "pos", "username"];

/// Index hints, so that a lookup seeks the same index whatever the
/// planner's statistics say: `FORCE INDEX` on MySQL, `INDEXED BY` on
/// SQLite, nothing on PostgreSQL (which has no hints; its statements are
/// shaped so that a seek is the only plan, see [`PeerSql::new`]).
#[derive(Clone, Debug, Default)]
struct Hints {
    /// The peers' primary key `(session, id)`.
    peers_key: String,
    /// The phone index `(session, phone)`.
    peers_phone: String,
    /// The usernames' primary key `(session, username_lower)`.
    names_key: String,
    /// The usernames' owner index `(session, peer_id)`.
    names_owner: String,
}

impl Hints {
    fn new(engine: Engine, tables: &Tables) -> Hints {
        let index = |name: &str| crate::migration::quote(engine, &tables.raw(name));
        match engine {
            // With stale statistics (a session filled since the last
            // `ANALYZE`), MariaDB joined the usernames by the `session`
            // prefix of their primary key, reading a whole session per peer
            // (tens of seconds for 10 000 ids), and read an id list through
            // the session prefix of the peers' key.
            Engine::MySql => Hints {
                peers_key: " FORCE INDEX (PRIMARY)".to_owned(),
                peers_phone: format!(" FORCE INDEX ({})", index("peers_phone")),
                names_key: " FORCE INDEX (PRIMARY)".to_owned(),
                names_owner: format!(" FORCE INDEX ({})", index("peer_usernames_owner")),
            },
            // Without statistics SQLite takes `session` for a selective
            // column and would rather walk a session through a key than
            // seek the phone index or the owner index. (Keys used whole are
            // unique, which SQLite trusts over any statistics.)
            Engine::Sqlite => Hints {
                peers_phone: format!(" INDEXED BY {}", index("peers_phone")),
                names_owner: format!(" INDEXED BY {}", index("peer_usernames_owner")),
                ..Hints::default()
            },
            Engine::Postgres => Hints::default(),
        }
    }
}

/// The fixed statement texts of the peer cache, for one engine and prefix.
#[derive(Clone, Debug)]
pub(crate) struct PeerSql {
    engine: Engine,
    hints: Hints,
    sessions: String,
    peers: String,
    names: String,
    /// The join of each peer `p` to its usernames `u`, one seek per peer.
    join_names: String,
    /// `?` marked id, `?` session.
    pub(crate) by_id: String,
    /// `?` username key, `?` session.
    pub(crate) by_username: String,
    /// `?` phone, `?` session.
    pub(crate) by_phone: String,
    /// `?` session: every peer of the session.
    pub(crate) all: String,
    /// PostgreSQL: `?` array of ids, `?` session.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    by_ids_array: String,
    /// PostgreSQL: the batch context (ids, keys, session, phones, session, session).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    context_array: String,
    /// PostgreSQL: the rows of a plan, as arrays.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    write_rows_array: String,
    /// PostgreSQL: username entries, as arrays.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    write_names_array: String,
    /// PostgreSQL: username entries to delete, as arrays.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    delete_names_array: String,
}

impl PeerSql {
    /// The statement texts. Every lookup seeks its index whatever the
    /// statistics: on MySQL and SQLite through [`Hints`] (and a join order
    /// that starts from the keys looked up), on PostgreSQL by its shape:
    /// lists of keys are `unnest`ed and each key is looked up in a
    /// `LATERAL` subquery that the planner may not flatten (`OFFSET 0`), so
    /// the only plan is one index seek per key (a join would let it hash a
    /// whole session, which it prefers for long lists and fresh tables).
    pub(crate) fn new(engine: Engine, tables: &Tables) -> Self {
        let peers = tables.peers.clone();
        let names = tables.peer_usernames.clone();
        let sessions = &tables.sessions;
        let hints = Hints::new(engine, tables);
        let Hints {
            peers_key,
            peers_phone,
            names_key,
            names_owner,
        } = &hints;
        let plain_join = format!(
            "LEFT JOIN {names} u{names_owner} ON u.session = p.session AND u.peer_id = p.id"
        );
        let join_names = match engine {
            Engine::Postgres => format!(
                "LEFT JOIN LATERAL (SELECT u.pos, u.username FROM {names} u \
                 WHERE u.session = p.session AND u.peer_id = p.id OFFSET 0) u ON true"
            ),
            Engine::Sqlite | Engine::MySql => plain_join.clone(),
        };
        // PostgreSQL: the peer `p` of each key `t.id`, sought on its own.
        let seek_peer = |session: &str| {
            format!(
                "LATERAL (SELECT * FROM {peers} p \
                 WHERE p.session = {session} AND p.id = t.id OFFSET 0) p"
            )
        };
        let q = |text: String| numbered(engine, &text);
        let row_sets: Vec<&str> = ROW_COLUMNS[2..].to_vec();
        let name_sets: Vec<&str> = NAME_COLUMNS[2..].to_vec();
        PeerSql {
            engine,
            by_id: q(format!(
                "SELECT {COLUMNS} FROM {sessions} s \
                 LEFT JOIN {peers} p{peers_key} ON p.session = s.session AND p.id = ? \
                 {join_names} WHERE s.session = ?"
            )),
            by_username: q(format!(
                "SELECT {COLUMNS} FROM {sessions} s \
                 LEFT JOIN {names} k{names_key} ON k.session = s.session AND k.username_lower = ? \
                 LEFT JOIN {peers} p{peers_key} ON p.session = s.session AND p.id = k.peer_id \
                 {join_names} WHERE s.session = ?"
            )),
            by_phone: q(format!(
                "SELECT {COLUMNS} FROM {sessions} s \
                 LEFT JOIN {peers} p{peers_phone} ON p.session = s.session AND p.phone = ? \
                 {join_names} WHERE s.session = ?"
            )),
            // A whole session, read through its key; on PostgreSQL the
            // planner may hash the session's usernames.
            all: q(format!(
                "SELECT {COLUMNS} FROM {peers} p{peers_key} {plain_join} WHERE p.session = ?"
            )),
            by_ids_array: q(format!(
                "SELECT {COLUMNS} FROM {sessions} s CROSS JOIN unnest(?::bigint[]) AS t(id) \
                 LEFT JOIN {} ON true {join_names} WHERE s.session = ?",
                seek_peer("s.session")
            )),
            context_array: q(format!(
                "SELECT {COLUMNS} FROM (SELECT unnest(?::bigint[]) AS id \
                 UNION SELECT n.peer_id FROM unnest(?::bytea[]) AS l(key) \
                 CROSS JOIN LATERAL (SELECT n.peer_id FROM {names} n \
                 WHERE n.session = ? AND n.username_lower = l.key OFFSET 0) n \
                 UNION SELECT x.id FROM unnest(?::text[]) AS f(phone) \
                 CROSS JOIN LATERAL (SELECT x.id FROM {peers} x \
                 WHERE x.session = ? AND x.phone = f.phone OFFSET 0) x) t \
                 CROSS JOIN {} {join_names}",
                seek_peer("?")
            )),
            write_rows_array: q(format!(
                "INSERT INTO {peers} ({cols}) \
                 SELECT ?, t.id, CASE WHEN t.n & 1 = 0 THEN t.kind END, \
                 CASE WHEN t.n & 2 = 0 THEN t.hash END, t.hash_is_min, t.usernames_known, \
                 CASE WHEN t.n & 4 = 0 THEN t.phone END, CASE WHEN t.n & 8 = 0 THEN t.name END, \
                 CASE WHEN t.n & 16 = 0 THEN t.last_seen END \
                 FROM unnest(?::bigint[], ?::int[], ?::bigint[], ?::bool[], ?::bool[], ?::text[], \
                 ?::bytea[], ?::bigint[], ?::int[]) \
                 AS t(id, kind, hash, hash_is_min, usernames_known, phone, name, last_seen, n){}",
                upsert(engine, &ROW_COLUMNS[..2], &row_sets),
                cols = ROW_COLUMNS.join(", ")
            )),
            write_names_array: q(format!(
                "INSERT INTO {names} ({cols}) SELECT ?, t.k, t.id, t.pos, t.name \
                 FROM unnest(?::bytea[], ?::bigint[], ?::int[], ?::bytea[]) AS t(k, id, pos, name){}",
                upsert(engine, &NAME_COLUMNS[..2], &name_sets),
                cols = NAME_COLUMNS.join(", ")
            )),
            delete_names_array: q(format!(
                "DELETE FROM {names} WHERE session = ? AND (username_lower, peer_id) IN \
                 (SELECT * FROM unnest(?::bytea[], ?::bigint[]))"
            )),
            sessions: sessions.clone(),
            join_names,
            hints,
            peers,
            names,
        }
    }

    /// Many peers by id (with the session's existence): one statement per
    /// chunk of ids, one row per id (of NULLs for an id not stored) and
    /// username. MySQL seeks the ids in the peers' key (forced); SQLite
    /// starts from the list of ids (`CROSS JOIN` keeps it first) and seeks
    /// each in the key, so no statistics can make it walk the session.
    pub(crate) fn by_ids(&self, session: &str, ids: &[i64]) -> Sql {
        #[cfg(feature = "postgres")]
        if self.engine == Engine::Postgres {
            return Sql::with(
                self.engine,
                &self.by_ids_array,
                vec![int_array(ids), session.into()],
            );
        }
        let mut q = Sql::new(self.engine);
        match self.engine {
            Engine::Sqlite => {
                q.push("WITH ids(id) AS (VALUES ")
                    .bind_rows(ids.iter().map(|id| vec![Value::from(*id)]))
                    .push(&format!(
                        ") SELECT {COLUMNS} FROM {} s CROSS JOIN ids \
                         LEFT JOIN {} p ON p.session = s.session AND p.id = ids.id ",
                        self.sessions, self.peers
                    ));
            }
            Engine::Postgres | Engine::MySql => {
                q.push(&format!(
                    "SELECT {COLUMNS} FROM {} s LEFT JOIN {} p{} \
                     ON p.session = s.session AND p.id IN (",
                    self.sessions, self.peers, self.hints.peers_key
                ))
                .bind_list(ids.iter().copied())
                .push(") ");
            }
        }
        q.push(&self.join_names)
            .push(" WHERE s.session = ")
            .bind(session);
        q
    }

    /// The most ids one [`by_ids`](Self::by_ids) statement carries.
    pub(crate) fn ids_per_statement(&self) -> usize {
        match self.engine {
            Engine::Postgres => usize::MAX,
            Engine::Sqlite | Engine::MySql => rows_per_statement(self.engine, 1),
        }
    }

    /// The statements that load the stored peers a batch touches: by id,
    /// the owners of its username keys and of its phones. One statement (on
    /// SQLite and MySQL, one per chunk when a batch has more keys than a
    /// statement may carry). Every key is sought in its index: see
    /// [`mysql_context`](Self::mysql_context),
    /// [`sqlite_context`](Self::sqlite_context) and, on PostgreSQL,
    /// `context_array` (the keys `unnest`ed, each sought in a `LATERAL`
    /// subquery, then each peer of their union).
    fn context_statements(&self, session: &str, batch: &PeerBatch) -> Vec<sea_orm::Statement> {
        let ids: Vec<i64> = batch.ids().iter().map(|id| id.marked()).collect();
        let keys: Vec<Vec<u8>> = batch
            .username_keys()
            .iter()
            .map(|k| k.as_bytes().to_vec())
            .collect();
        let phones = batch.phones();
        #[cfg(feature = "postgres")]
        if self.engine == Engine::Postgres {
            let q = Sql::with(
                self.engine,
                &self.context_array,
                vec![
                    int_array(&ids),
                    bytes_array(keys),
                    session.into(),
                    text_array(phones),
                    session.into(),
                    session.into(),
                ],
            );
            return vec![q.build()];
        }
        let mut statements = Vec::new();
        // Three key lists share the statement's parameters (on MySQL, the
        // ids come three times: see `mysql_context`).
        let lists = if self.engine == Engine::MySql { 5 } else { 3 };
        let per = (rows_per_statement(self.engine, 1) / lists)
            .saturating_sub(4)
            .max(1);
        let chunks = ids
            .len()
            .max(keys.len())
            .max(phones.len())
            .div_ceil(per)
            .max(1);
        for chunk in 0..chunks {
            let part = |len: usize| (chunk * per).min(len)..((chunk + 1) * per).min(len);
            let (ids, keys, phones) = (
                &ids[part(ids.len())],
                &keys[part(keys.len())],
                &phones[part(phones.len())],
            );
            if ids.is_empty() && keys.is_empty() && phones.is_empty() {
                continue;
            }
            let statement = match self.engine {
                Engine::Sqlite => self.sqlite_context(session, ids, keys, phones),
                Engine::Postgres | Engine::MySql => self.mysql_context(session, ids, keys, phones),
            };
            statements.push(statement.build());
        }
        statements
    }

    /// One MySQL context statement: the peers of each list, whole rows
    /// with their usernames, one `UNION ALL` branch per list (an id may
    /// come twice; [`decode_all`] merges them). Each list is forced to its
    /// index and selects whole rows: when a branch reads only indexed
    /// columns, MariaDB prefers walking the session in the index to seeking
    /// a list longer than its statistics say the session is.
    ///
    /// The owners of keys and phones that are among the ids are left out of
    /// the other branches (the ids branch reads them): each stored peer of
    /// the batch is read once, not three times (MariaDB 10.11, a batch of
    /// 100 stored peers: 1.3 ms instead of 2.0 ms on the server). The id
    /// is compared as `id + 0` so that the list filters the rows the seek
    /// found instead of joining the seek (the phone index ends with the
    /// id, and phones × ids made 10 000 ranges, 12 times slower).
    fn mysql_context(
        &self,
        session: &str,
        ids: &[i64],
        keys: &[Vec<u8>],
        phones: &[String],
    ) -> Sql {
        let Hints {
            peers_key,
            peers_phone,
            names_key,
            ..
        } = &self.hints;
        let (peers, names, join_names) = (&self.peers, &self.names, &self.join_names);
        let mut q = Sql::new(self.engine);
        let mut first = true;
        let mut branch = |q: &mut Sql, text: String| {
            if !first {
                q.push(" UNION ALL ");
            }
            first = false;
            q.push(&text);
        };
        if !ids.is_empty() {
            branch(
                &mut q,
                format!(
                    "SELECT {COLUMNS} FROM {peers} p{peers_key} {join_names} WHERE p.session = "
                ),
            );
            q.bind(session)
                .push(" AND p.id IN (")
                .bind_list(ids.iter().copied())
                .push(")");
        }
        if !keys.is_empty() {
            branch(
                &mut q,
                format!(
                    "SELECT {COLUMNS} FROM {names} k{names_key} STRAIGHT_JOIN {peers} p{peers_key} \
                     ON p.session = k.session AND p.id = k.peer_id {join_names} WHERE k.session = "
                ),
            );
            q.bind(session)
                .push(" AND k.username_lower IN (")
                .bind_list(keys.iter().cloned())
                .push(")");
            if !ids.is_empty() {
                q.push(" AND k.peer_id + 0 NOT IN (")
                    .bind_list(ids.iter().copied())
                    .push(")");
            }
        }
        if !phones.is_empty() {
            branch(
                &mut q,
                format!(
                    "SELECT {COLUMNS} FROM {peers} p{peers_phone} {join_names} WHERE p.session = "
                ),
            );
            q.bind(session)
                .push(" AND p.phone IN (")
                .bind_list(phones.iter().cloned())
                .push(")");
            if !ids.is_empty() {
                q.push(" AND p.id + 0 NOT IN (")
                    .bind_list(ids.iter().copied())
                    .push(")");
            }
        }
        q
    }

    /// One SQLite context statement: lists of values, each joined to its
    /// key or index (`CROSS JOIN` keeps every list first), then each peer of
    /// their union sought in the peers' key. (An `IN` list of more keys
    /// than a session holds rows is read by walking the session once
    /// statistics exist.)
    fn sqlite_context(
        &self,
        session: &str,
        ids: &[i64],
        keys: &[Vec<u8>],
        phones: &[String],
    ) -> Sql {
        let one = |v: Value| vec![v];
        let mut q = Sql::new(self.engine);
        let mut first_list = true;
        let mut next = |q: &mut Sql, name: &str| {
            q.push(if first_list { "WITH " } else { ", " })
                .push(name)
                .push(" AS (VALUES ");
            first_list = false;
        };
        if !ids.is_empty() {
            next(&mut q, "ids(id)");
            q.bind_rows(ids.iter().map(|id| one(Value::from(*id))))
                .push(")");
        }
        if !keys.is_empty() {
            next(&mut q, "usernames(k)");
            q.bind_rows(keys.iter().map(|k| one(Value::from(k.clone()))))
                .push(")");
        }
        if !phones.is_empty() {
            next(&mut q, "phones(phone)");
            q.bind_rows(phones.iter().map(|p| one(Value::from(p.clone()))))
                .push(")");
        }
        q.push(&format!(" SELECT {COLUMNS} FROM ("));
        let mut first = true;
        let mut branch = |q: &mut Sql, text: String| {
            if !first {
                q.push(" UNION ");
            }
            first = false;
            q.push(&text);
        };
        if !ids.is_empty() {
            branch(&mut q, "SELECT id FROM ids".to_owned());
        }
        if !keys.is_empty() {
            branch(
                &mut q,
                format!(
                    "SELECT n.peer_id FROM usernames CROSS JOIN {} n ON n.session = ",
                    self.names
                ),
            );
            q.bind(session).push(" AND n.username_lower = usernames.k");
        }
        if !phones.is_empty() {
            branch(
                &mut q,
                format!(
                    "SELECT x.id FROM phones CROSS JOIN {} x{} ON x.session = ",
                    self.peers, self.hints.peers_phone
                ),
            );
            q.bind(session).push(" AND x.phone = phones.phone");
        }
        q.push(&format!(") t CROSS JOIN {} p ON p.session = ", self.peers))
            .bind(session)
            .push(" AND p.id = t.id ")
            .push(&self.join_names);
        q
    }

    /// The first context statement of a batch (all of it, unless the batch
    /// is larger than one statement may carry).
    pub(crate) fn context_statement(&self, session: &str, batch: &PeerBatch) -> sea_orm::Statement {
        self.context_statements(session, batch)
            .into_iter()
            .next()
            .unwrap_or_else(|| Sql::new(self.engine).build())
    }

    /// The stored peers a batch touches (see [`context_statements`](Self::context_statements)).
    pub(crate) async fn load_context<C: ConnectionTrait>(
        &self,
        c: &C,
        session: &str,
        batch: &PeerBatch,
    ) -> R<Vec<Peer>> {
        let mut rows = Vec::new();
        for statement in self.context_statements(session, batch) {
            rows.extend(c.query_all_raw(statement).await?);
        }
        Ok(decode_all(&rows)?.into_values().collect())
    }

    /// Applies a plan, in the order it asks for: the username entries it
    /// removes, the rows, then the username rows of every peer whose list
    /// changed (the entries it adds, and the order and spelling of the
    /// names that stay). A phone's index entry is its row's `phone` column,
    /// written with the rows. `stored` is what the plan was computed from.
    pub(crate) async fn apply<C: ConnectionTrait>(
        &self,
        c: &C,
        session: &str,
        plan: &PeerPlan,
        stored: &[Peer],
    ) -> R<()> {
        let before: HashMap<PeerId, &Peer> = stored.iter().map(|p| (p.id, p)).collect();
        if !plan.usernames_removed.is_empty() {
            self.delete_names(c, session, &plan.usernames_removed)
                .await?;
        }
        self.write_rows(c, session, &plan.rows).await?;
        let changed: Vec<&Peer> = plan
            .rows
            .iter()
            .filter(|p| {
                let old = before.get(&p.id).and_then(|o| o.usernames.as_deref());
                old.unwrap_or_default() != p.usernames.as_deref().unwrap_or_default()
            })
            .collect();
        self.write_names(c, session, &changed).await
    }

    /// Deletes username entries `(key, peer)`.
    async fn delete_names<C: ConnectionTrait>(
        &self,
        c: &C,
        session: &str,
        entries: &[(String, PeerId)],
    ) -> R<()> {
        #[cfg(feature = "postgres")]
        if self.engine == Engine::Postgres {
            let q = Sql::with(
                self.engine,
                &self.delete_names_array,
                vec![
                    session.into(),
                    bytes_array(entries.iter().map(|(k, _)| k.as_bytes().to_vec()).collect()),
                    int_array(
                        &entries
                            .iter()
                            .map(|(_, id)| id.marked())
                            .collect::<Vec<_>>(),
                    ),
                ],
            );
            c.execute_raw(q.build()).await?;
            return Ok(());
        }
        for chunk in entries.chunks(rows_per_statement(self.engine, 2)) {
            let mut q = Sql::new(self.engine);
            q.push(&format!("DELETE FROM {} WHERE session = ", self.names))
                .bind(session)
                .push(" AND (username_lower, peer_id) IN (")
                .bind_rows(chunk.iter().map(|(key, id)| {
                    vec![
                        Value::from(key.as_bytes().to_vec()),
                        Value::from(id.marked()),
                    ]
                }))
                .push(")");
            c.execute_raw(q.build()).await?;
        }
        Ok(())
    }

    /// Writes whole rows (insert, or replace every column).
    pub(crate) async fn write_rows<C: ConnectionTrait>(
        &self,
        c: &C,
        session: &str,
        rows: &[Peer],
    ) -> R<()> {
        if rows.is_empty() {
            return Ok(());
        }
        #[cfg(feature = "postgres")]
        if self.engine == Engine::Postgres {
            let mut ids = Vec::with_capacity(rows.len());
            let mut kinds = Vec::with_capacity(rows.len());
            let mut hashes = Vec::with_capacity(rows.len());
            let mut mins = Vec::with_capacity(rows.len());
            let mut known = Vec::with_capacity(rows.len());
            let mut phones = Vec::with_capacity(rows.len());
            let mut names = Vec::with_capacity(rows.len());
            let mut seen = Vec::with_capacity(rows.len());
            let mut nulls = Vec::with_capacity(rows.len());
            for p in rows {
                let mut n = 0i32;
                ids.push(Value::from(p.id.marked()));
                kinds.push(Value::from(p.kind.map_or_else(
                    || {
                        n |= 1;
                        0
                    },
                    PeerKind::code,
                )));
                hashes.push(Value::from(p.access_hash.map_or_else(
                    || {
                        n |= 2;
                        0
                    },
                    |h| h.value,
                )));
                mins.push(Value::from(p.access_hash.is_some_and(|h| h.min)));
                known.push(Value::from(p.usernames.is_some()));
                phones.push(Value::from(p.phone.clone().unwrap_or_else(|| {
                    n |= 4;
                    String::new()
                })));
                names.push(Value::from(p.name.clone().map_or_else(
                    || {
                        n |= 8;
                        Vec::new()
                    },
                    String::into_bytes,
                )));
                seen.push(Value::from(p.last_seen.unwrap_or_else(|| {
                    n |= 16;
                    0
                })));
                nulls.push(Value::from(n));
            }
            let array =
                |ty: ArrayType, values: Vec<Value>| Value::Array(ty, Some(Box::new(values)));
            let q = Sql::with(
                self.engine,
                &self.write_rows_array,
                vec![
                    session.into(),
                    array(ArrayType::BigInt, ids),
                    array(ArrayType::Int, kinds),
                    array(ArrayType::BigInt, hashes),
                    array(ArrayType::Bool, mins),
                    array(ArrayType::Bool, known),
                    array(ArrayType::String, phones),
                    array(ArrayType::Bytes, names),
                    array(ArrayType::BigInt, seen),
                    array(ArrayType::Int, nulls),
                ],
            );
            c.execute_raw(q.build()).await?;
            return Ok(());
        }
        let values = rows.iter().map(|p| row_values(session, p));
        insert_rows(
            c,
            self.engine,
            &self.peers,
            &ROW_COLUMNS,
            2,
            values.collect(),
        )
        .await
    }

    /// Writes the username rows of `peers` (each key replaces whatever entry it had).
    pub(crate) async fn write_names<C: ConnectionTrait>(
        &self,
        c: &C,
        session: &str,
        peers: &[&Peer],
    ) -> R<()> {
        let entries: Vec<(Vec<u8>, i64, i32, Vec<u8>)> = peers
            .iter()
            .flat_map(|p| {
                // The index key of each name is core's (`Peer::username_keys`,
                // in the order of the list).
                p.usernames
                    .iter()
                    .flatten()
                    .zip(p.username_keys())
                    .enumerate()
                    .map(move |(pos, (name, key))| {
                        (
                            key.into_bytes(),
                            p.id.marked(),
                            i32::try_from(pos).unwrap_or(i32::MAX),
                            name.as_bytes().to_vec(),
                        )
                    })
            })
            .collect();
        if entries.is_empty() {
            return Ok(());
        }
        #[cfg(feature = "postgres")]
        if self.engine == Engine::Postgres {
            let mut keys = Vec::with_capacity(entries.len());
            let mut ids = Vec::with_capacity(entries.len());
            let mut positions = Vec::with_capacity(entries.len());
            let mut names = Vec::with_capacity(entries.len());
            for (key, id, pos, name) in entries {
                keys.push(Value::from(key));
                ids.push(Value::from(id));
                positions.push(Value::from(pos));
                names.push(Value::from(name));
            }
            let array =
                |ty: ArrayType, values: Vec<Value>| Value::Array(ty, Some(Box::new(values)));
            let q = Sql::with(
                self.engine,
                &self.write_names_array,
                vec![
                    session.into(),
                    array(ArrayType::Bytes, keys),
                    array(ArrayType::BigInt, ids),
                    array(ArrayType::Int, positions),
                    array(ArrayType::Bytes, names),
                ],
            );
            c.execute_raw(q.build()).await?;
            return Ok(());
        }
        let values = entries
            .into_iter()
            .map(|(key, id, pos, name)| {
                vec![
                    Value::from(session),
                    Value::from(key),
                    Value::from(id),
                    Value::from(pos),
                    Value::from(name),
                ]
            })
            .collect();
        insert_rows(c, self.engine, &self.names, &NAME_COLUMNS, 2, values).await
    }
}

/// Multi-row `INSERT ... ON CONFLICT DO UPDATE` of `rows` (the first `keys`
/// columns are the conflict target), as few statements as the engine's
/// parameter limit allows.
pub(crate) async fn insert_rows<C: ConnectionTrait>(
    c: &C,
    engine: Engine,
    table: &str,
    columns: &[&str],
    keys: usize,
    rows: Vec<Vec<Value>>,
) -> R<()> {
    let per = rows_per_statement(engine, columns.len());
    let clause = if keys < columns.len() {
        upsert(engine, &columns[..keys], &columns[keys..])
    } else {
        String::new()
    };
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<Vec<Value>> = rows.by_ref().take(per).collect();
        let mut q = Sql::new(engine);
        q.push(&format!(
            "INSERT INTO {table} ({}) VALUES ",
            columns.join(", ")
        ))
        .bind_rows(chunk)
        .push(&clause);
        c.execute_raw(q.build()).await?;
    }
    Ok(())
}

fn row_values(session: &str, p: &Peer) -> Vec<Value> {
    vec![
        session.into(),
        p.id.marked().into(),
        p.kind.map(PeerKind::code).into(),
        p.access_hash.map(|h| h.value).into(),
        p.access_hash.is_some_and(|h| h.min).into(),
        p.usernames.is_some().into(),
        p.phone.clone().into(),
        p.name.clone().map(String::into_bytes).into(),
        p.last_seen.into(),
    ]
}

#[cfg(feature = "postgres")]
fn int_array(ids: &[i64]) -> Value {
    Value::Array(
        ArrayType::BigInt,
        Some(Box::new(ids.iter().map(|id| Value::from(*id)).collect())),
    )
}

#[cfg(feature = "postgres")]
fn bytes_array(values: Vec<Vec<u8>>) -> Value {
    Value::Array(
        ArrayType::Bytes,
        Some(Box::new(values.into_iter().map(Value::from).collect())),
    )
}

#[cfg(feature = "postgres")]
fn text_array(values: &[String]) -> Value {
    Value::Array(
        ArrayType::String,
        Some(Box::new(values.iter().cloned().map(Value::from).collect())),
    )
}

fn corrupt(message: String) -> Error {
    Error::corrupt("the peers tables", message)
}

/// Column `i` of a row.
fn col<T: sea_orm::TryGetable>(row: &QueryResult, i: usize) -> Result<T, sea_orm::DbErr> {
    row.try_get_by_index(i)
}

/// The peer of a row of [`COLUMNS`] (at column 0), `None` for the NULL
/// columns of a `LEFT JOIN` without a peer.
fn decode_row(row: &QueryResult) -> R<Option<Peer>> {
    let Some(marked) = col::<Option<i64>>(row, 0)? else {
        return Ok(None);
    };
    let id = PeerId::from_marked(marked)
        .map_err(|_| corrupt(format!("{marked} is not a marked peer id")))?;
    let kind = match col::<Option<i32>>(row, 1)? {
        None => None,
        Some(code) => Some(PeerKind::from_code(i64::from(code)).ok_or_else(|| {
            corrupt(format!(
                "peer {id} has kind code {code}, which no peer kind has"
            ))
        })?),
    };
    let access_hash = match col::<Option<i64>>(row, 2)? {
        None => None,
        Some(value) => Some(AccessHash {
            value,
            min: col::<Option<bool>>(row, 3)?.unwrap_or(false),
        }),
    };
    let usernames_known: bool = col(row, 4)?;
    let name = match col::<Option<Vec<u8>>>(row, 6)? {
        None => None,
        Some(bytes) => Some(
            String::from_utf8(bytes)
                .map_err(|_| corrupt(format!("the name of peer {id} is not UTF-8")))?,
        ),
    };
    Ok(Some(Peer {
        id,
        kind,
        access_hash,
        usernames: usernames_known.then(Vec::new),
        phone: col(row, 5)?,
        name,
        last_seen: col(row, 7)?,
    }))
}

/// The username of a row of [`COLUMNS`]: `(pos, username)`.
fn decode_username(row: &QueryResult, id: PeerId) -> R<Option<(i32, String)>> {
    let Some(pos) = col::<Option<i32>>(row, 8)? else {
        return Ok(None);
    };
    let bytes: Vec<u8> = col(row, 9)?;
    let name = String::from_utf8(bytes)
        .map_err(|_| corrupt(format!("a username of peer {id} is not UTF-8")))?;
    Ok(Some((pos, name)))
}

/// Every peer of rows of [`COLUMNS`] (several rows per peer, one per
/// username, in any order), by id.
pub(crate) fn decode_all(rows: &[QueryResult]) -> R<BTreeMap<PeerId, Peer>> {
    let mut peers: BTreeMap<PeerId, (Peer, Vec<(i32, String)>)> = BTreeMap::new();
    for row in rows {
        let Some(peer) = decode_row(row)? else {
            continue;
        };
        let id = peer.id;
        let username = decode_username(row, id)?;
        let entry = peers.entry(id).or_insert_with(|| (peer, Vec::new()));
        if let Some(username) = username {
            entry.1.push(username);
        }
    }
    Ok(peers
        .into_iter()
        .map(|(id, (mut peer, mut names))| {
            names.sort();
            names.dedup();
            if !names.is_empty() {
                peer.usernames = Some(names.into_iter().map(|(_, n)| n).collect());
            }
            (id, peer)
        })
        .collect())
}

/// The one peer of a lookup's rows: `NotFound` when there is no row (the
/// session is missing), `None` when no peer matched.
pub(crate) fn decode_one(rows: &[QueryResult], session: &str) -> R<Option<Peer>> {
    if rows.is_empty() {
        return Err(Error::session_not_found(session).into());
    }
    // Stored data keeps a phone with one peer; were two to share one, the
    // lowest id answers.
    Ok(decode_all(rows)?.into_values().next())
}
