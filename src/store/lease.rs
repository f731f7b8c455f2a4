//! Claiming a row of a leased table (`inbox_migrations`, `account_imports`, `jobs`) and renewing its lease.
//! Each table has `lease_owner`, `lease_token` and `lease_expires_at`; a claim takes the first due row and
//! stamps a new token on it, and only the holder of that token may write the row's progress or end it.

use chrono::{DateTime, Utc};

use super::Result;
use super::db::{Tx, db_run};

/// A leased table and the condition its rows hold while a worker runs them.
#[derive(Clone, Copy)]
pub(super) struct Leased {
    pub table: &'static str,
    pub running: &'static str,
}

/// The first row of `leased` that `due` selects (`$1` is now, `$2`… are `params`), in `order`, locked for this transaction; on
/// PostgreSQL other claimers skip it (SKIP LOCKED) instead of waiting, so any number of workers claim at once.
/// SQLite runs this inside `BEGIN IMMEDIATE` (one writer). `columns` are what is returned of it.
pub(super) async fn first_due<T>(
    tx: &mut Tx,
    leased: Leased,
    columns: &str,
    due: &str,
    order: &str,
    now: DateTime<Utc>,
    params: &[&str],
) -> Result<Option<T>>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
        + Send
        + Unpin,
{
    let sql = format!(
        "SELECT {columns} FROM {table} WHERE {due} ORDER BY {order} LIMIT 1{lock}",
        table = leased.table,
        lock = tx.backend().skip_locked()
    );
    Ok(db_run!(tx, |c| {
        let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(now);
        for p in params {
            q = q.bind(*p);
        }
        q.fetch_optional(c).await
    })?)
}

/// The lease of row `id` given to `owner` under `token` until `until`, with `set` changing the row's own
/// state as the claim does (`$4` is now).
pub(super) async fn take(
    tx: &mut Tx,
    leased: Leased,
    set: &str,
    id: i64,
    (owner, token): (&str, &str),
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<()> {
    let sql = format!(
        "UPDATE {table} SET {set}, lease_owner = $1, lease_token = $2, lease_expires_at = $3, updated_at = $4 \
         WHERE id = $5",
        table = leased.table
    );
    db_run!(tx, |c| sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(owner)
        .bind(token)
        .bind(until)
        .bind(now)
        .bind(id)
        .execute(c)
        .await
        .map(drop))?;
    Ok(())
}

/// Extends the lease of row `id` to `until` while `token` holds it and the row runs; false when another claim
/// took it over (or it ended).
pub(super) async fn renew(
    pool: &super::db::Pool,
    leased: Leased,
    id: i64,
    token: &str,
    until: DateTime<Utc>,
) -> Result<bool> {
    let sql = format!(
        "UPDATE {table} SET lease_expires_at = $3 WHERE id = $1 AND lease_token = $2 AND {running}",
        table = leased.table,
        running = leased.running
    );
    let renewed = db_run!(pool, |c| sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(token)
        .bind(until)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(renewed == 1)
}
