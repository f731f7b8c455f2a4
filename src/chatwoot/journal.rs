//! Every change ferry makes to Chatwoot's rows goes through here, so that the statement that changes rows also
//! writes the journal entry that undoes it, in the same transaction. Updates are set-based and journaled grouped
//! by the columns' previous values (a batch of 5,000 messages leaving one inbox is one entry); deleted rows are
//! kept whole and come back with their ids; inserted rows are deleted again.

use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{PgConnection, Postgres};

use super::ChatwootError;

/// Chatwoot tables the journal may name: revert interpolates them into SQL, so only these are accepted.
pub const TABLES: &[&str] = &[
    "contacts",
    "contact_inboxes",
    "conversations",
    "messages",
    "reporting_events",
    "sla_events",
    "inbox_members",
    "notes",
    "taggings",
    "tags",
    "csat_survey_responses",
    "companies",
    "channel_whatsapp",
];

type Binder<'q> = Box<
    dyn FnOnce(Query<'q, Postgres, PgArguments>) -> Query<'q, Postgres, PgArguments> + Send + 'q,
>;

/// A journaled `UPDATE`: `$1` is the migration id; the binder adds `$2…`.
pub struct Update<'q> {
    pub table: &'static str,
    /// The columns the statement changes: their previous values are journaled.
    pub columns: &'static [&'static str],
    /// Which rows (alias `t`).
    pub rows: String,
    /// The SET list; may read `prior.*` (the previous values) and `map.*` when `map` is given.
    pub set: String,
    /// An extra FROM item named `map` and how it joins `t`, for per-row new values.
    pub map: Option<(String, String)>,
    pub binds: Binder<'q>,
}

impl<'q> Update<'q> {
    pub fn new(table: &'static str, columns: &'static [&'static str]) -> Self {
        Update {
            table,
            columns,
            rows: "false".into(),
            set: String::new(),
            map: None,
            binds: Box::new(|q| q),
        }
    }

    pub fn rows(mut self, rows: impl Into<String>) -> Self {
        self.rows = rows.into();
        self
    }

    pub fn set(mut self, set: impl Into<String>) -> Self {
        self.set = set.into();
        self
    }

    pub fn map(mut self, from: impl Into<String>, join: impl Into<String>) -> Self {
        self.map = Some((from.into(), join.into()));
        self
    }

    pub fn binds(
        mut self,
        binds: impl FnOnce(Query<'q, Postgres, PgArguments>) -> Query<'q, Postgres, PgArguments>
        + Send
        + 'q,
    ) -> Self {
        self.binds = Box::new(binds);
        self
    }

    fn sql(&self) -> String {
        let cols = self.columns.join(", ");
        let prior_cols: Vec<String> = self.columns.iter().map(|c| format!("t.{c}")).collect();
        let before: Vec<String> = self.columns.iter().map(|c| format!("'{c}', {c}")).collect();
        let (map_from, map_join) = match &self.map {
            Some((from, join)) => (format!(", {from}"), format!(" AND {join}")),
            None => (String::new(), String::new()),
        };
        format!(
            "WITH prior AS (SELECT t.id, {prior} FROM {table} t WHERE {rows} FOR UPDATE OF t), \
             changed AS (UPDATE {table} t SET {set} FROM prior{map_from} \
                 WHERE t.id = prior.id{map_join} RETURNING prior.*) \
             INSERT INTO ferry.journal (migration_id, table_name, op, ids, before) \
             SELECT $1, '{table}', 'update', array_agg(id::bigint ORDER BY id), jsonb_build_object({before}) \
             FROM changed GROUP BY {cols} RETURNING ids",
            prior = prior_cols.join(", "),
            table = self.table,
            rows = self.rows,
            set = self.set,
            before = before.join(", "),
        )
    }

    /// Runs it in one pass when `rows` guarantees the previous values: each column's value is the SQL
    /// expression given (the journal needs no read of the rows before). The ids of the changed rows.
    pub async fn run_known(
        self,
        conn: &mut PgConnection,
        migration: i64,
        known: &[&str],
    ) -> Result<Vec<i64>, ChatwootError> {
        let before: Vec<String> = self
            .columns
            .iter()
            .zip(known)
            .map(|(c, value)| format!("'{c}', {value}"))
            .collect();
        let sql = format!(
            "WITH changed AS (UPDATE {table} t SET {set} WHERE {rows} RETURNING t.id) \
             INSERT INTO ferry.journal (migration_id, table_name, op, ids, before) \
             SELECT $1, '{table}', 'update', array_agg(id::bigint ORDER BY id), jsonb_build_object({before}) \
             FROM changed HAVING count(*) > 0 RETURNING ids",
            table = self.table,
            set = self.set,
            rows = self.rows,
            before = before.join(", "),
        );
        let query = (self.binds)(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(migration));
        journaled_ids(query, conn).await
    }

    /// Runs it; the ids of the changed rows.
    pub async fn run(
        self,
        conn: &mut PgConnection,
        migration: i64,
    ) -> Result<Vec<i64>, ChatwootError> {
        let sql = self.sql();
        let query = (self.binds)(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(migration));
        journaled_ids(query, conn).await
    }
}

/// Runs a journaling statement that returns each journal entry's `ids`: the ids of all the rows it changed.
pub async fn journaled_ids(
    query: Query<'_, Postgres, PgArguments>,
    conn: &mut PgConnection,
) -> Result<Vec<i64>, ChatwootError> {
    let rows = query.fetch_all(conn).await?;
    Ok(rows
        .iter()
        .flat_map(|r| sqlx::Row::get::<Vec<i64>, _>(r, 0))
        .collect())
}

/// A journaled `DELETE` of the rows matching `rows` (alias `t`), each kept whole.
pub async fn delete<'q>(
    conn: &mut PgConnection,
    migration: i64,
    table: &'static str,
    rows: &str,
    binds: impl FnOnce(Query<'q, Postgres, PgArguments>) -> Query<'q, Postgres, PgArguments>,
) -> Result<Vec<i64>, ChatwootError> {
    let sql = format!(
        "WITH gone AS (DELETE FROM {table} t WHERE {rows} RETURNING t.*) \
         INSERT INTO ferry.journal (migration_id, table_name, op, ids, before) \
         SELECT $1, '{table}', 'delete', ARRAY[gone.id::bigint], to_jsonb(gone) FROM gone ORDER BY gone.id \
         RETURNING ids[1]"
    );
    let query = binds(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(migration));
    let rows = query.fetch_all(conn).await?;
    Ok(rows
        .iter()
        .map(|r| sqlx::Row::get::<i64, _>(r, 0))
        .collect())
}

/// A journaled `INSERT … SELECT`: `insert` is the statement up to and without `RETURNING`.
pub async fn insert<'q>(
    conn: &mut PgConnection,
    migration: i64,
    table: &'static str,
    insert: &str,
    binds: impl FnOnce(Query<'q, Postgres, PgArguments>) -> Query<'q, Postgres, PgArguments>,
) -> Result<Vec<i64>, ChatwootError> {
    let sql = format!(
        "WITH added AS ({insert} RETURNING id) \
         INSERT INTO ferry.journal (migration_id, table_name, op, ids) \
         SELECT $1, '{table}', 'insert', array_agg(id::bigint ORDER BY id) FROM added HAVING count(*) > 0 \
         RETURNING ids"
    );
    let query = binds(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(migration));
    journaled_ids(query, conn).await
}

/// One journal entry, read back to be undone.
#[derive(Debug, sqlx::FromRow)]
pub struct Entry {
    pub seq: i64,
    pub table_name: String,
    pub op: String,
    pub ids: Vec<i64>,
    pub before: Option<serde_json::Value>,
}

/// Undoes one entry: previous values back, deleted rows back with their ids, inserted rows gone.
pub async fn undo(conn: &mut PgConnection, entry: &Entry) -> Result<(), ChatwootError> {
    let table = TABLES
        .iter()
        .find(|t| **t == entry.table_name)
        .ok_or_else(|| corrupt(entry, "an unknown table"))?;
    match entry.op.as_str() {
        "update" => {
            let before = entry.before.as_ref().and_then(|b| b.as_object());
            let columns: Vec<&String> = before.map(|b| b.keys().collect()).unwrap_or_default();
            if columns.is_empty() || !columns.iter().all(|c| is_identifier(c)) {
                return Err(corrupt(entry, "no columns"));
            }
            let set: Vec<String> = columns.iter().map(|c| format!("{c} = r.{c}")).collect();
            let sql = format!(
                "UPDATE {table} t SET {} FROM jsonb_populate_record(NULL::{table}, $1) r WHERE t.id = ANY($2)",
                set.join(", ")
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&entry.before)
                .bind(&entry.ids)
                .execute(conn)
                .await?;
        }
        "delete" => {
            let sql = format!(
                "INSERT INTO {table} SELECT * FROM jsonb_populate_record(NULL::{table}, $1)"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&entry.before)
                .execute(conn)
                .await?;
        }
        "insert" => {
            let sql = format!("DELETE FROM {table} WHERE id = ANY($1)");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&entry.ids)
                .execute(conn)
                .await?;
        }
        _ => return Err(corrupt(entry, "an unknown operation")),
    }
    Ok(())
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn corrupt(entry: &Entry, what: &str) -> ChatwootError {
    ChatwootError::Refused(format!(
        "journal entry {} names {what} ({} {}): the journal was edited by hand",
        entry.seq, entry.op, entry.table_name
    ))
}
