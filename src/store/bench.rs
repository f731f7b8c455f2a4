//! Statements only `ferry bench` runs: the baselines an inbox migration is measured against.

use async_trait::async_trait;

use super::Result;
use super::db::{SqlStore, db_run};

#[async_trait]
pub trait BenchStore: Send + Sync {
    /// Runs a multi-statement script in one transaction.
    async fn bench_script(&self, sql: &str) -> Result<()>;
    /// Leaves freshly generated data as a live database has it before the copies are taken: planner statistics
    /// and visibility map on PostgreSQL (what autovacuum does), the WAL folded into the file on SQLite.
    async fn bench_settle(&self) -> Result<()>;
    /// The reference implementation's statement pattern on the Chatwoot-shaped schema: everything loaded
    /// first, one UPDATE per moved contact_inbox and per conversation (500 conversations per transaction),
    /// messages by id lists of 500, reporting events in one UPDATE, then source contact_inboxes without
    /// conversations deleted.
    async fn bench_reference(&self, source: i64, destination: i64) -> Result<()>;
    /// Messages in the database (a benchmark checks that every request it sent was stored).
    async fn bench_count_messages(&self) -> Result<i64>;
}

#[async_trait::async_trait]
impl BenchStore for SqlStore {
    async fn bench_script(&self, sql: &str) -> Result<()> {
        let mut tx = self.pool().begin_write().await?;
        db_run!(&mut tx, |c| sqlx::raw_sql(sqlx::AssertSqlSafe(
            sql.to_owned()
        ))
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        tx.commit().await?;
        Ok(())
    }

    async fn bench_count_messages(&self) -> Result<i64> {
        Ok(db_run!(self.pool(), |c| sqlx::query_scalar(
            "SELECT COUNT(*) FROM messages"
        )
        .fetch_one(c)
        .await)?)
    }

    async fn bench_settle(&self) -> Result<()> {
        let sql = match self.pool().backend() {
            crate::store::Backend::Postgres => "VACUUM ANALYZE",
            crate::store::Backend::Sqlite => "PRAGMA wal_checkpoint(TRUNCATE)",
        };
        db_run!(self.pool(), |c| sqlx::raw_sql(sql)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    async fn bench_reference(&self, source: i64, destination: i64) -> Result<()> {
        // Contact_inboxes of both inboxes, in memory, keyed by exact source_id.
        let rows: Vec<(i64, i64, String, i64)> = db_run!(self.pool(), |c| {
            sqlx::query_as("SELECT id, contact_id, source_id, inbox_id FROM contact_inboxes WHERE inbox_id IN ($1, $2)")
                .bind(source).bind(destination).fetch_all(c).await
        })?;
        let destination_ids: std::collections::HashSet<&str> = rows
            .iter()
            .filter(|r| r.3 == destination)
            .map(|r| r.2.as_str())
            .collect();
        for (id, _, source_id, inbox) in &rows {
            if *inbox == source && !destination_ids.contains(source_id.as_str()) {
                db_run!(self.pool(), |c| sqlx::query(
                    "UPDATE contact_inboxes SET inbox_id = $1 WHERE id = $2"
                )
                .bind(destination)
                .bind(id)
                .execute(c)
                .await
                .map(|r| r.rows_affected()))?;
            }
        }
        let conversations: Vec<i64> = db_run!(self.pool(), |c| sqlx::query_scalar(
            "SELECT id FROM conversations WHERE inbox_id = $1 ORDER BY id"
        )
        .bind(source)
        .fetch_all(c)
        .await)?;
        for chunk in conversations.chunks(500) {
            let mut tx = self.pool().begin().await?;
            for id in chunk {
                db_run!(&mut tx, |c| sqlx::query(
                    "UPDATE conversations SET inbox_id = $1 WHERE id = $2"
                )
                .bind(destination)
                .bind(id)
                .execute(c)
                .await
                .map(|r| r.rows_affected()))?;
            }
            tx.commit().await?;
        }
        let messages: Vec<i64> = db_run!(self.pool(), |c| sqlx::query_scalar(
            "SELECT id FROM messages WHERE inbox_id = $1 ORDER BY id"
        )
        .bind(source)
        .fetch_all(c)
        .await)?;
        for chunk in messages.chunks(500) {
            db_run!(self.pool(), |c| {
                let mut qb = sqlx::QueryBuilder::new("UPDATE messages SET inbox_id = ");
                qb.push_bind(destination).push(" WHERE id IN (");
                let mut list = qb.separated(", ");
                for id in chunk {
                    list.push_bind(*id);
                }
                qb.push(")");
                qb.build().execute(c).await.map(drop)
            })?;
        }
        db_run!(self.pool(), |c| sqlx::query(
            "UPDATE reporting_events SET inbox_id = $1 WHERE inbox_id = $2"
        )
        .bind(destination)
        .bind(source)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        db_run!(self.pool(), |c| sqlx::query(
            "DELETE FROM contact_inboxes WHERE inbox_id = $1 AND NOT EXISTS \
                     (SELECT 1 FROM conversations c WHERE c.contact_inbox_id = contact_inboxes.id)"
        )
        .bind(source)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }
}
