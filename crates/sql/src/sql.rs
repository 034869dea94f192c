//! A small statement writer that knows each engine's placeholders and
//! upsert syntax.

use sea_orm::{Statement, Value};

use crate::config::Engine;
use crate::migration::backend;

/// A list of keys to match with `IN`.
#[derive(Clone, Debug)]
pub(crate) enum Keys {
    /// BIGINT keys.
    Ids(Vec<i64>),
    /// Text keys.
    Texts(Vec<String>),
    /// Binary keys.
    Bytes(Vec<Vec<u8>>),
}

impl Keys {
    /// The keys in pieces of at most `n`.
    pub(crate) fn chunks(&self, n: usize) -> Vec<Keys> {
        let n = n.max(1);
        match self {
            Keys::Ids(v) => v.chunks(n).map(|c| Keys::Ids(c.to_vec())).collect(),
            Keys::Texts(v) => v.chunks(n).map(|c| Keys::Texts(c.to_vec())).collect(),
            Keys::Bytes(v) => v.chunks(n).map(|c| Keys::Bytes(c.to_vec())).collect(),
        }
    }

    fn into_values(self) -> Vec<Value> {
        match self {
            Keys::Ids(v) => v.into_iter().map(Value::from).collect(),
            Keys::Texts(v) => v.into_iter().map(Value::from).collect(),
            Keys::Bytes(v) => v.into_iter().map(Value::from).collect(),
        }
    }

    /// The keys as one PostgreSQL array parameter.
    #[cfg(feature = "postgres")]
    fn into_array(self) -> Value {
        match self {
            Keys::Ids(v) => Value::from(v),
            Keys::Texts(v) => Value::from(v),
            Keys::Bytes(v) => Value::from(v),
        }
    }
}

/// SQL text with bound values, written for one engine.
#[derive(Debug)]
pub(crate) struct Sql {
    engine: Engine,
    text: String,
    values: Vec<Value>,
}

impl Sql {
    pub(crate) fn new(engine: Engine) -> Sql {
        Sql {
            engine,
            text: String::with_capacity(256),
            values: Vec::new(),
        }
    }

    /// Appends SQL text.
    pub(crate) fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder bound to `value`.
    pub(crate) fn bind(&mut self, value: impl Into<Value>) -> &mut Self {
        self.values.push(value.into());
        match self.engine {
            Engine::Postgres => {
                self.text.push('$');
                self.text.push_str(&self.values.len().to_string());
            }
            Engine::Sqlite | Engine::MySql => self.text.push('?'),
        }
        self
    }

    /// Appends `v1, v2, ...` as placeholders.
    pub(crate) fn bind_list<V: Into<Value>>(
        &mut self,
        values: impl IntoIterator<Item = V>,
    ) -> &mut Self {
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.bind(value);
        }
        self
    }

    /// Appends a test that `column` is one of `keys`: `column IN (?, ?, ...)`,
    /// or `column = ANY($n)` with one array parameter on PostgreSQL, whose
    /// plan does not depend on how many keys there are.
    pub(crate) fn in_keys(&mut self, column: &str, keys: Keys) -> &mut Self {
        #[cfg(feature = "postgres")]
        if self.engine == Engine::Postgres {
            self.text.push_str(column);
            self.text.push_str(" = ANY(");
            self.bind(keys.into_array());
            self.text.push(')');
            return self;
        }
        self.text.push_str(column);
        self.text.push_str(" IN (");
        self.bind_list(keys.into_values());
        self.text.push(')');
        self
    }

    /// On PostgreSQL, appends `unnest($n)` for the keys, as a table to join.
    #[cfg(feature = "postgres")]
    pub(crate) fn unnest(&mut self, keys: Keys) -> &mut Self {
        self.text.push_str("unnest(");
        self.bind(keys.into_array());
        self.text.push(')');
        self
    }

    /// Appends `(v1, v2, ...)` rows separated by commas.
    pub(crate) fn bind_rows(&mut self, rows: impl IntoIterator<Item = Vec<Value>>) -> &mut Self {
        for (i, row) in rows.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.text.push('(');
            self.bind_list(row);
            self.text.push(')');
        }
        self
    }

    /// Appends the upsert clause: on a conflict on `keys`, overwrite `columns`
    /// with the values of the row being inserted (or do nothing when
    /// `columns` is empty).
    pub(crate) fn on_conflict_update(&mut self, keys: &[&str], columns: &[&str]) -> &mut Self {
        match self.engine {
            Engine::Sqlite | Engine::Postgres => {
                self.text.push_str(" ON CONFLICT (");
                self.text.push_str(&keys.join(", "));
                if columns.is_empty() {
                    self.text.push_str(") DO NOTHING");
                } else {
                    self.text.push_str(") DO UPDATE SET ");
                    let sets: Vec<String> = columns
                        .iter()
                        .map(|c| format!("{c} = excluded.{c}"))
                        .collect();
                    self.text.push_str(&sets.join(", "));
                }
            }
            Engine::MySql => {
                self.text.push_str(" ON DUPLICATE KEY UPDATE ");
                let sets: Vec<String> = if columns.is_empty() {
                    keys.iter().take(1).map(|c| format!("{c} = {c}")).collect()
                } else {
                    columns
                        .iter()
                        .map(|c| format!("{c} = VALUES({c})"))
                        .collect()
                };
                self.text.push_str(&sets.join(", "));
            }
        }
        self
    }

    /// The engine's `GREATEST` function.
    pub(crate) fn greatest(&self) -> &'static str {
        match self.engine {
            Engine::Sqlite => "MAX",
            Engine::Postgres | Engine::MySql => "GREATEST",
        }
    }

    /// The row lock that serializes writers of one session: `FOR NO KEY
    /// UPDATE` on PostgreSQL (so foreign-key checks of other writers are not
    /// blocked), `FOR UPDATE` on MySQL, nothing on SQLite, whose write
    /// transactions are serialized by `BEGIN IMMEDIATE`.
    pub(crate) fn lock_clause(&self) -> &'static str {
        match self.engine {
            Engine::Sqlite => "",
            Engine::Postgres => " FOR NO KEY UPDATE",
            Engine::MySql => " FOR UPDATE",
        }
    }

    pub(crate) fn build(self) -> Statement {
        Statement::from_sql_and_values(backend(self.engine), self.text, self.values)
    }
}

/// The most placeholders one statement may carry on an engine.
pub(crate) fn max_params(engine: Engine, sqlite_limit: usize) -> usize {
    match engine {
        Engine::Sqlite => sqlite_limit,
        // Both protocols count parameters in a u16.
        Engine::Postgres | Engine::MySql => 65_535,
    }
}

/// Rows per multi-row statement: as many as the parameter limit allows, at most 1000.
pub(crate) fn rows_per_chunk(max_params: usize, columns: usize) -> usize {
    (max_params.saturating_sub(8) / columns.max(1)).clamp(1, 1000)
}
