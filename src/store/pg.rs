//! PostgreSQL: the multi-node deployment. Any number of processes share one database. What it does in its own
//! way: the pool, and the statements below.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres, Transaction};

use super::{ImportMessage, Result, StoreError};

pub(super) async fn connect(url: &str) -> Result<PgPool> {
    diagnose(url).await?;
    Ok(PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(15))
        .after_release(super::health::released_clean)
        .connect(url)
        .await?)
}

/// One connection first, within 5 s, so that what a person can fix is said in one line with what to do: no
/// server answering, a database that does not exist yet, a refused user.
async fn diagnose(url: &str) -> Result<()> {
    use sqlx::ConnectOptions;
    let options: sqlx::postgres::PgConnectOptions = url.parse().map_err(StoreError::Database)?;
    let place = format!("{}:{}", options.get_host(), options.get_port());
    let database = options.get_database().unwrap_or("postgres").to_owned();
    let user = options.get_username().to_owned();
    let refused = |message: String| Err(StoreError::Connect(message));
    match tokio::time::timeout(Duration::from_secs(5), options.connect()).await {
        Err(_) => refused(format!(
            "no answer from PostgreSQL at {place} within 5 s: is it running, and is that its host and port?"
        )),
        Ok(Ok(conn)) => {
            let _ = sqlx::Connection::close(conn).await;
            Ok(())
        }
        Ok(Err(sqlx::Error::Database(e))) => match e.code().as_deref() {
            Some("3D000") => refused(format!(
                "database {database} does not exist: create it with `createdb {database}`"
            )),
            Some("28P01" | "28000") => refused(format!(
                "PostgreSQL at {place} refused user {user}: {}",
                e.message()
            )),
            _ => Err(StoreError::Database(sqlx::Error::Database(e))),
        },
        Ok(Err(sqlx::Error::Io(e))) => refused(format!(
            "cannot reach PostgreSQL at {place}: {e} (is it running, and is that its host and port?)"
        )),
        Ok(Err(e)) => Err(StoreError::Database(e)),
    }
}

/// `(legacy_thread_id, conversation id)` of the account's conversations imported from these threads. One
/// array parameter: an IN list of hundreds of parameters gets a generic plan that scans the table.
pub(super) async fn conversations_by_legacy_thread(
    tx: &mut Transaction<'static, Postgres>,
    account_id: i64,
    threads: &[&str],
) -> Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT legacy_thread_id, id FROM conversations WHERE account_id = $1 AND legacy_thread_id = ANY($2)",
    )
    .bind(account_id)
    .bind(threads)
    .fetch_all(&mut **tx)
    .await?)
}

/// An import batch's messages (skipping legacy ids already imported): `(legacy_message_id, id)` of the new.
pub(super) async fn insert_import_messages(
    tx: &mut Transaction<'static, Postgres>,
    account_id: i64,
    import_id: i64,
    rows: &[(i64, &ImportMessage)],
) -> Result<Vec<(String, i64)>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let column = |f: fn(&ImportMessage) -> &str| rows.iter().map(|(_, m)| f(m)).collect::<Vec<_>>();
    Ok(
        sqlx::query_as(include_str!("queries/pg/insert_import_messages.sql"))
            .bind(account_id)
            .bind(import_id)
            .bind(rows.iter().map(|(c, _)| *c).collect::<Vec<i64>>())
            .bind(column(|m| m.message_type))
            .bind(
                rows.iter()
                    .map(|(_, m)| m.content.as_deref())
                    .collect::<Vec<Option<&str>>>(),
            )
            .bind(column(|m| m.status))
            .bind(rows.iter().map(|(_, m)| m.starred).collect::<Vec<bool>>())
            .bind(column(|m| m.legacy_message_id.as_str()))
            .bind(
                rows.iter()
                    .map(|(_, m)| m.created_at)
                    .collect::<Vec<DateTime<Utc>>>(),
            )
            .fetch_all(&mut **tx)
            .await?,
    )
}

/// Ids for `n` new rows of `table`, drawn from its identity sequence: unique under any concurrency.
pub(super) async fn allocate_ids(
    tx: &mut Transaction<'static, Postgres>,
    table: &'static str,
    n: usize,
) -> Result<Vec<i64>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    Ok(
        sqlx::query_scalar(include_str!("queries/pg/allocate_ids.sql"))
            .bind(table)
            .bind(n as i64)
            .fetch_all(&mut **tx)
            .await?,
    )
}
