//! Background jobs (`jobs`): claimed under a lease (a crashed worker's job is taken over when it expires),
//! retried with backoff, failed for good after `max_attempts`. Media fetching is the first kind.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::Result;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub payload: sqlx::types::Json<serde_json::Value>,
    /// Including this one.
    pub attempts: i64,
    pub max_attempts: i64,
}

/// A fetched file, in the attachment store.
#[derive(Debug, Clone)]
pub struct FetchedFile<'a> {
    pub storage_key: &'a str,
    pub checksum: &'a str,
    pub byte_size: i64,
    pub content_type: Option<&'a str>,
}

#[async_trait]
pub trait JobStore: Send + Sync {
    /// The next due job of `kind` (queued and due, or running with an expired lease), now leased to `owner`.
    async fn claim_job(
        &self,
        kind: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<Job>>;
    /// Runs the job again at `run_at`.
    async fn retry_job(&self, id: i64, error: &str, run_at: DateTime<Utc>) -> Result<()>;
    /// The attachment is ready and the job done, in one transaction.
    async fn complete_media_job(
        &self,
        id: i64,
        attachment_id: i64,
        file: &FetchedFile<'_>,
    ) -> Result<()>;
    /// The job gave up: the attachment stays as a failed placeholder with the reason.
    async fn fail_media_job(&self, id: i64, attachment_id: i64, error: &str) -> Result<()>;
}

macro_rules! impl_job_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::JobStore for $store {
            async fn claim_job(
                &self,
                kind: &str,
                owner: &str,
                now: DateTime<Utc>,
                lease_until: DateTime<Utc>,
            ) -> Result<Option<$crate::store::Job>> {
                let sql = format!(
                    "UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_owner = $2, \
                     lease_expires_at = $3, updated_at = $4 WHERE id = (SELECT id FROM jobs WHERE kind = $1 \
                     AND ((status = 'queued' AND run_at <= $4) OR (status = 'running' AND lease_expires_at < $4)) \
                     ORDER BY run_at, id LIMIT 1{}) RETURNING id, kind, payload, attempts, max_attempts",
                    Self::SKIP_LOCKED
                );
                Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(kind)
                    .bind(owner)
                    .bind(lease_until)
                    .bind(now)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn retry_job(&self, id: i64, error: &str, run_at: DateTime<Utc>) -> Result<()> {
                sqlx::query(
                    "UPDATE jobs SET status = 'queued', run_at = $2, last_error = $3, lease_owner = NULL, \
                     lease_expires_at = NULL, updated_at = $4 WHERE id = $1",
                )
                .bind(id)
                .bind(run_at)
                .bind(error)
                .bind(Utc::now())
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn complete_media_job(
                &self,
                id: i64,
                attachment_id: i64,
                file: &$crate::store::FetchedFile<'_>,
            ) -> Result<()> {
                let mut tx = self.begin_write().await?;
                sqlx::query(
                    "UPDATE attachments SET status = 'ready', storage_key = $2, checksum = $3, byte_size = $4, \
                     content_type = COALESCE(content_type, $5), failure_reason = NULL WHERE id = $1",
                )
                .bind(attachment_id)
                .bind(file.storage_key)
                .bind(file.checksum)
                .bind(file.byte_size)
                .bind(file.content_type)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE jobs SET status = 'completed', lease_owner = NULL, lease_expires_at = NULL, \
                     updated_at = $2 WHERE id = $1",
                )
                .bind(id)
                .bind(Utc::now())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn fail_media_job(&self, id: i64, attachment_id: i64, error: &str) -> Result<()> {
                let mut tx = self.begin_write().await?;
                sqlx::query("UPDATE attachments SET status = 'failed', failure_reason = $2 WHERE id = $1")
                    .bind(attachment_id)
                    .bind(error)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "UPDATE jobs SET status = 'failed', last_error = $2, lease_owner = NULL, \
                     lease_expires_at = NULL, updated_at = $3 WHERE id = $1",
                )
                .bind(id)
                .bind(error)
                .bind(Utc::now())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }
        }
    };
}

pub(super) use impl_job_store;
