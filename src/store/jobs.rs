//! Background jobs (`jobs`): claimed under a lease (a crashed worker's job is taken over when it expires),
//! retried with backoff, failed for good after `max_attempts`. Media fetching is the first kind.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::Result;
use super::db::{SqlStore, Tx, db_run};
use super::lease::{self, Leased};

/// A job runs under the lease.
const JOBS: Leased = Leased {
    table: "jobs",
    running: "status = 'running'",
};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub payload: sqlx::types::Json<serde_json::Value>,
    /// Including this one.
    pub attempts: i64,
    pub max_attempts: i64,
    /// This claim's token: only its holder may finish the job (a takeover after the lease expired gets another).
    pub lease_token: String,
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
    /// The next due job of `kind` (queued and due, or running with an expired lease), now leased to `owner`
    /// under a new `token`.
    async fn claim_job(
        &self,
        kind: &str,
        owner: &str,
        token: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<Job>>;
    /// Extends the job's lease to `until` while this claim holds it (false when another claim took it over).
    async fn renew_job_lease(&self, job: &Job, until: DateTime<Utc>) -> Result<bool>;
    // The three endings below change nothing (and answer false) when `job` no longer holds the lease.
    /// Runs the job again at `run_at`.
    async fn retry_job(&self, job: &Job, error: &str, run_at: DateTime<Utc>) -> Result<bool>;
    /// The attachment is ready and the job done, in one transaction.
    async fn complete_media_job(
        &self,
        job: &Job,
        attachment_id: i64,
        file: &FetchedFile<'_>,
    ) -> Result<bool>;
    /// The job gave up: the attachment stays as a failed placeholder with the reason.
    async fn fail_media_job(&self, job: &Job, attachment_id: i64, error: &str) -> Result<bool>;
}

#[async_trait]
impl JobStore for SqlStore {
    async fn claim_job(
        &self,
        kind: &str,
        owner: &str,
        token: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<Job>> {
        let mut tx = self.pool().begin_write().await?;
        let due = "kind = $2 AND ((status = 'queued' AND run_at <= $1) \
                   OR (status = 'running' AND lease_expires_at < $1))";
        let candidate: Option<(i64,)> =
            lease::first_due(&mut tx, JOBS, "id", due, "run_at, id", now, &[kind]).await?;
        let Some((id,)) = candidate else {
            return Ok(None);
        };
        let set = "status = 'running', attempts = attempts + 1";
        lease::take(&mut tx, JOBS, set, id, (owner, token), lease_until, now).await?;
        let job = db_run!(&mut tx, |c| {
            sqlx::query_as(
            "SELECT id, kind, payload, attempts, max_attempts, lease_token FROM jobs WHERE id = $1"
        )
        .bind(id)
        .fetch_one(c)
        .await
        })?;
        tx.commit().await?;
        Ok(Some(job))
    }

    async fn renew_job_lease(&self, job: &Job, until: DateTime<Utc>) -> Result<bool> {
        lease::renew(self.pool(), JOBS, job.id, &job.lease_token, until).await
    }

    async fn retry_job(&self, job: &Job, error: &str, run_at: DateTime<Utc>) -> Result<bool> {
        let done = db_run!(self.pool(), |c| {
            sqlx::query(
                "UPDATE jobs SET status = 'queued', run_at = $2, last_error = $3, lease_owner = NULL, \
                 lease_token = NULL, lease_expires_at = NULL, updated_at = $4 \
                 WHERE id = $1 AND status = 'running' AND lease_token = $5",
            )
            .bind(job.id)
            .bind(run_at)
            .bind(error)
            .bind(Utc::now())
            .bind(&job.lease_token)
            .execute(c)
            .await
            .map(|done| done.rows_affected())
        })?;
        Ok(done == 1)
    }

    async fn complete_media_job(
        &self,
        job: &Job,
        attachment_id: i64,
        file: &FetchedFile<'_>,
    ) -> Result<bool> {
        let mut tx = self.pool().begin_write().await?;
        if !end_job(&mut tx, job, "completed", None).await? {
            return Ok(false);
        }
        db_run!(&mut tx, |c| {
            sqlx::query(
                "UPDATE attachments SET status = 'ready', storage_key = $2, checksum = $3, byte_size = $4, \
                 content_type = COALESCE(content_type, $5), failure_reason = NULL WHERE id = $1",
            )
            .bind(attachment_id)
            .bind(file.storage_key)
            .bind(file.checksum)
            .bind(file.byte_size)
            .bind(file.content_type)
            .execute(c)
            .await
            .map(drop)
        })?;
        tx.commit().await?;
        Ok(true)
    }

    async fn fail_media_job(&self, job: &Job, attachment_id: i64, error: &str) -> Result<bool> {
        let mut tx = self.pool().begin_write().await?;
        if !end_job(&mut tx, job, "failed", Some(error)).await? {
            return Ok(false);
        }
        db_run!(&mut tx, |c| {
            sqlx::query(
                "UPDATE attachments SET status = 'failed', failure_reason = $2 WHERE id = $1",
            )
            .bind(attachment_id)
            .bind(error)
            .execute(c)
            .await
            .map(drop)
        })?;
        tx.commit().await?;
        Ok(true)
    }
}

/// Ends a job this claim still holds; false (nothing written) when another claim took it over.
async fn end_job(tx: &mut Tx, job: &Job, status: &str, error: Option<&str>) -> Result<bool> {
    let done = db_run!(tx, |c| {
        sqlx::query(
            "UPDATE jobs SET status = $2, last_error = COALESCE($3, last_error), lease_owner = NULL, \
             lease_token = NULL, lease_expires_at = NULL, updated_at = $4 \
             WHERE id = $1 AND status = 'running' AND lease_token = $5",
        )
        .bind(job.id)
        .bind(status)
        .bind(error)
        .bind(Utc::now())
        .bind(&job.lease_token)
        .execute(c)
        .await
        .map(|done| done.rows_affected())
    })?;
    Ok(done == 1)
}
