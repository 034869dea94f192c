//! Writing SQL for one engine: placeholders, upserts, `GREATEST`, row
//! locks, and statements with bound values.
//!
//! Statement texts are written once with `?` placeholders and numbered for
//! PostgreSQL (`$1`, `$2`, ...); a text that does not change between calls
//! is prepared once per connection and reused (the driver caches prepared
//! statements by text).

use sea_orm::{Statement, Value};

use crate::config::Engine;
use crate::migration::backend;

/// `?` placeholders numbered `$1`, `$2`, ... for PostgreSQL; unchanged
/// elsewhere. The texts this crate writes hold no `?` inside literals.
pub(crate) fn numbered(engine: Engine, text: &str) -> String {
    if engine != Engine::Postgres {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut n = 0;
    for c in text.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// The upsert clause: on a conflict on `keys`, overwrite `columns` with the
/// values of the row being inserted.
pub(crate) fn upsert(engine: Engine, keys: &[&str], columns: &[&str]) -> String {
    match engine {
        Engine::Sqlite | Engine::Postgres => {
            let sets: Vec<String> = columns
                .iter()
                .map(|c| format!("{c} = excluded.{c}"))
                .collect();
            format!(
                " ON CONFLICT ({}) DO UPDATE SET {}",
                keys.join(", "),
                sets.join(", ")
            )
        }
        Engine::MySql => {
            let sets: Vec<String> = columns
                .iter()
                .map(|c| format!("{c} = VALUES({c})"))
                .collect();
            format!(" ON DUPLICATE KEY UPDATE {}", sets.join(", "))
        }
    }
}

/// The engine's two-argument maximum.
pub(crate) fn greatest(engine: Engine) -> &'static str {
    match engine {
        Engine::Sqlite => "MAX",
        Engine::Postgres | Engine::MySql => "GREATEST",
    }
}

/// The row lock that serializes writers of one session: `FOR NO KEY UPDATE`
/// on PostgreSQL (foreign-key checks of other writers are not blocked),
/// `FOR UPDATE` on MySQL, nothing on SQLite, whose write transactions are
/// serialized by `BEGIN IMMEDIATE`.
pub(crate) fn lock_clause(engine: Engine) -> &'static str {
    match engine {
        Engine::Sqlite => "",
        Engine::Postgres => " FOR NO KEY UPDATE",
        Engine::MySql => " FOR UPDATE",
    }
}

/// A statement with bound values.
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

    /// A prepared text (already numbered) with its values.
    pub(crate) fn with(engine: Engine, text: &str, values: Vec<Value>) -> Sql {
        Sql {
            engine,
            text: text.to_owned(),
            values,
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

    /// The text written so far.
    #[cfg(test)]
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    pub(crate) fn build(self) -> Statement {
        Statement::from_sql_and_values(backend(self.engine), self.text, self.values)
    }
}

/// The most placeholders one statement may carry on an engine (SQLite's
/// limit since 3.32; PostgreSQL and MySQL count them in 16 bits).
pub(crate) fn max_params(engine: Engine) -> usize {
    match engine {
        Engine::Sqlite => 32_766,
        Engine::Postgres | Engine::MySql => 65_535,
    }
}

/// Rows per multi-row statement: as many as the parameter limit allows.
pub(crate) fn rows_per_statement(engine: Engine, columns: usize) -> usize {
    (max_params(engine).saturating_sub(8) / columns.max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres() {
        assert_eq!(
            numbered(Engine::Postgres, "a = ? AND b IN (?, ?)"),
            "a = $1 AND b IN ($2, $3)"
        );
        assert_eq!(numbered(Engine::MySql, "a = ?"), "a = ?");
        let mut q = Sql::new(Engine::Postgres);
        q.push("x = ").bind(1i64).push(", y = ").bind(2i64);
        assert_eq!(q.text(), "x = $1, y = $2");
    }
}
