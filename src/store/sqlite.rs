//! SQLite: the embedded default. One file, WAL, one writer at a time (writers wait on `busy_timeout`).

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

use super::{ImportMessage, Result, StoreError};

/// Checkpoints the WAL from a background task so that a committing writer never pays for copying pages back
/// into the database file (SQLite's automatic checkpoint runs inside the COMMIT that crosses the threshold).
/// Stops when the store is dropped.
pub(super) struct Checkpointer(tokio::task::AbortHandle);

impl Checkpointer {
    pub(super) fn spawn(pool: SqlitePool) -> Self {
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !pool.is_closed() {
                tick.tick().await;
                // PASSIVE never waits for or blocks readers and writers; frames it cannot copy yet wait for the
                // next tick.
                if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .execute(&pool)
                    .await
                {
                    tracing::debug!(error = %e, "WAL checkpoint");
                }
            }
        });
        Self(task.abort_handle())
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(super) async fn connect(url: &str) -> Result<SqlitePool> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // FULL: a commit is on disk before it returns (a webhook is answered 2xx only after its commit;
        // group commit makes that one sync per batch).
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(30))
        .foreign_keys(true)
        // The background checkpointer keeps the WAL short; this is only the fallback.
        .pragma("wal_autocheckpoint", "20000")
        .pragma("cache_size", "-16384");
    if let Some(parent) = options.get_filename().parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
    }
    Ok(SqlitePoolOptions::new()
        .max_connections(8)
        .after_release(super::health::released_clean)
        .connect_with(options)
        .await?)
}

/// `(legacy_thread_id, conversation id)` of the account's conversations imported from these threads.
pub(super) async fn conversations_by_legacy_thread(
    tx: &mut Transaction<'static, Sqlite>,
    account_id: i64,
    threads: &[&str],
) -> Result<Vec<(String, i64)>> {
    let mut found = Vec::new();
    for chunk in threads.chunks(500) {
        let mut qb = sqlx::QueryBuilder::<Sqlite>::new(
            "SELECT legacy_thread_id, id FROM conversations WHERE account_id = ",
        );
        qb.push_bind(account_id);
        qb.push(" AND legacy_thread_id IN (");
        let mut list = qb.separated(", ");
        for t in super::ingest::padded(chunk.to_vec()) {
            list.push_bind(t);
        }
        qb.push(")");
        found.extend(
            qb.build_query_as::<(String, i64)>()
                .fetch_all(&mut **tx)
                .await?,
        );
    }
    Ok(found)
}

/// An import batch's messages (skipping legacy ids already imported): `(legacy_message_id, id)` of the new.
pub(super) async fn insert_import_messages(
    tx: &mut Transaction<'static, Sqlite>,
    account_id: i64,
    import_id: i64,
    rows: &[(i64, &ImportMessage)],
) -> Result<Vec<(String, i64)>> {
    let mut created = Vec::with_capacity(rows.len());
    // SQLite binds at most 32,766 parameters per statement.
    for chunk in rows.chunks(500) {
        let mut qb = sqlx::QueryBuilder::<Sqlite>::new(
            "INSERT INTO messages (account_id, conversation_id, message_type, content, status, starred, \
             legacy_message_id, import_id, created_at, updated_at) ",
        );
        qb.push_values(
            super::ingest::padded(chunk.to_vec()),
            |mut row, (conversation, m)| {
                row.push_bind(account_id)
                    .push_bind(conversation)
                    .push_bind(m.message_type)
                    .push_bind(&m.content)
                    .push_bind(m.status)
                    .push_bind(m.starred)
                    .push_bind(&m.legacy_message_id)
                    .push_bind(import_id)
                    .push_bind(m.created_at)
                    .push_bind(m.created_at);
            },
        );
        qb.push(" ON CONFLICT (legacy_message_id) DO NOTHING RETURNING legacy_message_id, id");
        created.extend(
            qb.build_query_as::<(String, i64)>()
                .fetch_all(&mut **tx)
                .await?,
        );
    }
    Ok(created)
}

/// Ids for `n` new rows of `table`. Safe because the caller holds the write lock (`begin_write`).
pub(super) async fn allocate_ids(
    tx: &mut Transaction<'static, Sqlite>,
    table: &'static str,
    n: usize,
) -> Result<Vec<i64>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let sql = include_str!("queries/sqlite/allocate_ids.sql").replace("{table}", table);
    let max: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(&mut **tx)
        .await?;
    Ok((max + 1..=max + n as i64).collect())
}
