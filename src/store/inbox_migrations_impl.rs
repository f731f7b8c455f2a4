//! `InboxMigrationStore` for both pools: SQL both dialects accept, with the few dialect-specific statements in
//! `queries/{pg,sqlite}/`. See `inbox_migration::engine` for the order of phases.

use chrono::{DateTime, Utc};

use super::db::{SqlStore, Tx, db_run};
use super::inbox_migrations::*;
use super::lease::{self, Leased};
use super::{Result, StoreError};

/// Both inboxes of migration $3 (source $1, destination $2) join the active set; the primary key refuses an
/// inbox that is already in it.
pub(super) const LOCK_BOTH_INBOXES: &str = "INSERT INTO inbox_migration_locks (inbox_id, migration_id, role) VALUES ($1, $3, 'source'), ($2, $3, 'destination')";

/// A migration or its revert runs under the lease.
const MIGRATIONS: Leased = Leased {
    table: "inbox_migrations",
    running: "(status = 'running' OR revert_state = 'running')",
};

/// Every column of `messages`, as `inbox_migration_messages` copies them.
macro_rules! message_columns {
    () => {
        "id, account_id, conversation_id, message_type, content, content_type, content_attributes, source_id, \
         dedupe_key, status, starred, private, sender_type, sender_id, external_id, legacy_message_id, import_id, \
         created_at, updated_at"
    };
}

/// Every column of `attachments`, as `inbox_migration_attachments` copies them.
macro_rules! attachment_columns {
    () => {
        "id, account_id, message_id, file_type, content_type, file_name, byte_size, storage_key, checksum, status, \
         external_url, failure_reason, import_id, created_at"
    };
}

/// The source contacts deleted by this batch's merges.
macro_rules! deleted_sources {
    () => {
        "SELECT s.contact_id FROM inbox_migration_contact_inboxes p JOIN inbox_migration_contacts s \
         ON s.migration_id = p.migration_id AND s.contact_id = p.contact_id \
         WHERE p.migration_id = $1 AND p.batch = $2 AND p.action = 'merge' AND s.role = 'source' AND s.deleted"
    };
}

/// Merge rows of this batch that join two different contacts.
macro_rules! batch_merges {
    () => {
        "FROM inbox_migration_contact_inboxes p WHERE p.migration_id = $1 AND p.batch = $2 AND p.action = 'merge' \
         AND p.contact_id <> p.destination_contact_id"
    };
}

#[async_trait::async_trait]
impl InboxMigrationStore for SqlStore {
    async fn create_inbox_migration(
        &self,
        account_id: i64,
        source_inbox_id: i64,
        destination_inbox_id: i64,
        user_id: Option<i64>,
        options: &serde_json::Value,
    ) -> Result<InboxMigration> {
        let mut tx = self.pool().begin_write().await?;
        let id: i64 = db_run!(&mut tx, |c| {
            sqlx::query_scalar(
            "INSERT INTO inbox_migrations (account_id, source_inbox_id, destination_inbox_id, user_id, options) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(account_id)
        .bind(source_inbox_id)
        .bind(destination_inbox_id)
        .bind(user_id)
        .bind(sqlx::types::Json(options))
        .fetch_one(c).await
        })?;
        db_run!(&mut tx, |c| sqlx::query(LOCK_BOTH_INBOXES)
            .bind(source_inbox_id)
            .bind(destination_inbox_id)
            .bind(id)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        tx.commit().await?;
        self.get_inbox_migration(id).await
    }

    async fn get_inbox_migration(&self, id: i64) -> Result<InboxMigration> {
        db_run!(self.pool(), |c| sqlx::query_as(concat!(
            migration_select!(),
            "WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(c)
        .await)?
        .ok_or(StoreError::NotFound("inbox migration"))
    }

    async fn list_inbox_migrations(
        &self,
        account_id: i64,
        source_inbox_id: Option<i64>,
        active_only: bool,
    ) -> Result<Vec<InboxMigration>> {
        Ok(db_run!(self.pool(), |c| sqlx::query_as(concat!(
            migration_select!(),
            "WHERE account_id = $1 AND ($2 = 0 OR source_inbox_id = $2) \
             AND ($3 = 0 OR status IN ('queued', 'running')) ORDER BY id DESC LIMIT 200"
        ))
        .bind(account_id)
        .bind(source_inbox_id.unwrap_or(0))
        .bind(active_only as i64)
        .fetch_all(c)
        .await)?)
    }

    async fn cancel_inbox_migration(&self, id: i64) -> Result<Option<InboxMigration>> {
        let mut tx = self.pool().begin_write().await?;
        let now = chrono::Utc::now();
        let status: Option<String> = db_run!(&mut tx, |c| sqlx::query_scalar(
            "UPDATE inbox_migrations SET \
             status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END, \
             completed_at = CASE WHEN status = 'queued' THEN $2 ELSE completed_at END, \
             cancel_requested = TRUE, updated_at = $2 \
             WHERE id = $1 AND status IN ('queued', 'running') RETURNING status",
        )
        .bind(id)
        .bind(now)
        .fetch_optional(c)
        .await)?;
        match status.as_deref() {
            None => return Ok(None),
            Some("cancelled") => {
                db_run!(&mut tx, |c| sqlx::query(
                    "DELETE FROM inbox_migration_locks WHERE migration_id = $1"
                )
                .bind(id)
                .execute(c)
                .await
                .map(|r| r.rows_affected()))?;
            }
            Some(_) => {}
        }
        tx.commit().await?;
        self.get_inbox_migration(id).await.map(Some)
    }

    async fn requeue_inbox_migration(&self, id: i64) -> Result<Option<InboxMigration>> {
        let mut tx = self.pool().begin_write().await?;
        let row: Option<(i64, i64)> = db_run!(&mut tx, |c| {
            sqlx::query_as(
            "UPDATE inbox_migrations SET status = 'queued', cancel_requested = FALSE, error_message = NULL, \
             error_detail = NULL, completed_at = NULL, lease_owner = NULL, lease_token = NULL, \
             lease_expires_at = NULL, updated_at = $2 \
             WHERE id = $1 AND status IN ('failed', 'cancelled') RETURNING source_inbox_id, destination_inbox_id",
        )
        .bind(id)
        .bind(chrono::Utc::now())
        .fetch_optional(c).await
        })?;
        let Some((source, destination)) = row else {
            return Ok(None);
        };
        db_run!(&mut tx, |c| sqlx::query(LOCK_BOTH_INBOXES)
            .bind(source)
            .bind(destination)
            .bind(id)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        tx.commit().await?;
        self.get_inbox_migration(id).await.map(Some)
    }

    async fn claim_inbox_migration(
        &self,
        worker: &str,
        token: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<InboxMigration>> {
        // The oldest queued migration or revert, or a running one whose worker's lease expired. On
        // PostgreSQL SKIP LOCKED lets any number of workers claim at once without waiting on, or taking, the
        // same row; SQLite runs this inside BEGIN IMMEDIATE (one writer).
        let mut tx = self.pool().begin_write().await?;
        let now = chrono::Utc::now();
        let candidate: Option<(i64, bool, bool)> = lease::first_due(
            &mut tx,
            MIGRATIONS,
            "id, status IN ('queued', 'running'), \
             COALESCE(status = 'running' OR revert_state = 'running', FALSE)",
            "status = 'queued' OR revert_state = 'queued' \
             OR ((status = 'running' OR revert_state = 'running') AND lease_expires_at < $1)",
            "id",
            now,
            &[],
        )
        .await?;
        let Some((id, migrating, taken_over)) = candidate else {
            return Ok(None);
        };
        // A migration counts its attempts; a revert keeps its own start.
        let (kind, set) = if migrating {
            (
                "migrate",
                "status = 'running', attempts = attempts + 1, started_at = COALESCE(started_at, $4)",
            )
        } else {
            (
                "revert",
                "revert_state = 'running', revert_started_at = COALESCE(revert_started_at, $4)",
            )
        };
        lease::take(
            &mut tx,
            MIGRATIONS,
            set,
            id,
            (worker, token),
            lease_until,
            now,
        )
        .await?;
        open_attempt(&mut tx, id, kind, worker, now).await?;
        tx.commit().await?;
        if taken_over {
            crate::metrics::lease_takeover(if migrating {
                "inbox_migration"
            } else {
                "inbox_migration_revert"
            });
        }
        self.get_inbox_migration(id).await.map(Some)
    }

    async fn renew_inbox_migration_lease(
        &self,
        id: i64,
        token: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<bool> {
        lease::renew(self.pool(), MIGRATIONS, id, token, lease_until).await
    }

    async fn release_inbox_migration_lease(&self, id: i64, token: &str) -> Result<bool> {
        let mut tx = self.pool().begin_write().await?;
        let now = chrono::Utc::now();
        let done = db_run!(&mut tx, |c| {
            sqlx::query(
            "UPDATE inbox_migrations SET lease_owner = NULL, lease_token = NULL, lease_expires_at = $3 \
             WHERE id = $1 AND lease_token = $2 AND (status = 'running' OR revert_state = 'running')",
        )
        .bind(id)
        .bind(token)
        .bind(now - chrono::Duration::seconds(1))
        .execute(c).await.map(|r| r.rows_affected())
        })?;
        if done != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        close_attempt(&mut tx, id, "released", None, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn inbox_migration_counts(
        &self,
        source: i64,
        destination: i64,
        key: MatchKey,
    ) -> Result<PairCounts> {
        let k = key.column();
        let sql = format!(
            "SELECT (SELECT COUNT(*) FROM conversations WHERE inbox_id = $1) AS conversations, \
             (SELECT CAST(COALESCE(SUM(messages_count), 0) AS BIGINT) FROM conversations WHERE inbox_id = $1) AS messages, \
             (SELECT CAST(COALESCE(SUM(attachments_count), 0) AS BIGINT) FROM conversations WHERE inbox_id = $1) AS attachments, \
             (SELECT COUNT(*) FROM contact_inboxes WHERE inbox_id = $1) AS contact_inboxes, \
             (SELECT COUNT(*) FROM contact_inboxes s WHERE s.inbox_id = $1 AND EXISTS \
              (SELECT 1 FROM contact_inboxes d WHERE d.inbox_id = $2 AND d.{k} = s.{k})) AS merging_contact_inboxes"
        );
        Ok(db_run!(self.pool(), |c| sqlx::query_as(
            sqlx::AssertSqlSafe(sql)
        )
        .bind(source)
        .bind(destination)
        .fetch_one(c)
        .await)?)
    }

    async fn plan_inbox_migration(
        &self,
        id: i64,
        token: &str,
        counts: &PairCounts,
        duplicates: i64,
        before: &serde_json::Value,
    ) -> Result<bool> {
        let done = db_run!(self.pool(), |c| {
            sqlx::query(
            "UPDATE inbox_migrations SET phase = 'moving', conversations_count = $3, messages_count = $4, \
             attachments_count = $5, contact_inboxes_count = $6, result = $7, updated_at = $8, duplicates = $9 \
             WHERE id = $1 AND lease_token = $2 AND status = 'running'",
        )
        .bind(id)
        .bind(token)
        .bind(counts.conversations)
        .bind(counts.messages)
        .bind(counts.attachments)
        .bind(counts.contact_inboxes)
        .bind(sqlx::types::Json(before))
        .bind(chrono::Utc::now())
        .bind(duplicates)
        .execute(c).await.map(|r| r.rows_affected())
        })?;
        Ok(done == 1)
    }

    async fn run_inbox_migration_batch(&self, ctx: &BatchContext) -> Result<Option<BatchOutcome>> {
        super::inbox_migration_batch::run_batch(self.pool(), ctx).await
    }

    async fn complete_inbox_migration(
        &self,
        id: i64,
        token: &str,
        source: i64,
        destination: i64,
        result: &serde_json::Value,
    ) -> Result<bool> {
        let mut tx = self.pool().begin_write().await?;
        db_run!(&mut tx, |c| {
            sqlx::query(
            "INSERT INTO inbox_migration_members (migration_id, inbox_id, user_id) \
             SELECT $1, $3, m.user_id FROM inbox_members m WHERE m.inbox_id = $2 \
             AND NOT EXISTS (SELECT 1 FROM inbox_members x WHERE x.inbox_id = $3 AND x.user_id = m.user_id) \
             ON CONFLICT DO NOTHING",
        )
        .bind(id).bind(source).bind(destination)
        .execute(c).await.map(|r| r.rows_affected())
        })?;
        db_run!(&mut tx, |c| {
            sqlx::query(
            "INSERT INTO inbox_members (inbox_id, user_id) SELECT inbox_id, user_id FROM inbox_migration_members \
             WHERE migration_id = $1 ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .execute(c).await.map(|r| r.rows_affected())
        })?;
        if !end_under_lease(&mut tx, id, token, "completed", Some(result), None, None).await? {
            tx.rollback().await?;
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn stop_inbox_migration(
        &self,
        id: i64,
        token: &str,
        status: &str,
        message: Option<&str>,
        detail: Option<&str>,
    ) -> Result<bool> {
        let mut tx = self.pool().begin_write().await?;
        if !end_under_lease(&mut tx, id, token, status, None, message, detail).await? {
            tx.rollback().await?;
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn request_inbox_migration_revert(
        &self,
        id: i64,
        runs: &[i64],
        batches: i64,
        user_id: Option<i64>,
    ) -> Result<bool> {
        let mut tx = self.pool().begin_write().await?;
        let row: Option<(i64, i64)> = db_run!(&mut tx, |c| {
            sqlx::query_as(
            "UPDATE inbox_migrations SET revert_state = 'queued', revert_runs = $2, revert_batches_total = $3, \
             revert_batches_done = 0, revert_user_id = $4, revert_error = NULL, revert_completed_at = NULL, \
             cancel_requested = FALSE, updated_at = $5 \
             WHERE id = $1 AND status IN ('completed', 'failed', 'cancelled') \
             AND (revert_state IS NULL OR revert_state IN ('cancelled', 'failed')) \
             RETURNING source_inbox_id, destination_inbox_id",
        )
        .bind(id)
        .bind(sqlx::types::Json(runs))
        .bind(batches)
        .bind(user_id)
        .bind(chrono::Utc::now())
        .fetch_optional(c).await
        })?;
        let Some((source, destination)) = row else {
            return Ok(false);
        };
        db_run!(&mut tx, |c| {
            sqlx::query(
            "INSERT INTO inbox_migration_locks (inbox_id, migration_id, role) VALUES ($1, $3, 'source'), ($2, $3, 'destination') \
             ON CONFLICT DO NOTHING",
        )
        .bind(source).bind(destination).bind(id)
        .execute(c).await.map(|r| r.rows_affected())
        })?;
        let ours: i64 = db_run!(&mut tx, |c| sqlx::query_scalar(
            "SELECT COUNT(*) FROM inbox_migration_locks WHERE migration_id = $1"
        )
        .bind(id)
        .fetch_one(c)
        .await)?;
        if ours != 2 {
            tx.rollback().await?;
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn cancel_inbox_migration_revert(&self, id: i64) -> Result<bool> {
        let mut tx = self.pool().begin_write().await?;
        let now = chrono::Utc::now();
        let state: Option<RevertState> = db_run!(&mut tx, |c| {
            sqlx::query_scalar(
            "UPDATE inbox_migrations SET \
             revert_state = CASE WHEN revert_state = 'queued' THEN 'cancelled' ELSE revert_state END, \
             revert_completed_at = CASE WHEN revert_state = 'queued' THEN $2 ELSE revert_completed_at END, \
             cancel_requested = (revert_state = 'running'), updated_at = $2 \
             WHERE id = $1 AND revert_state IN ('queued', 'running') RETURNING revert_state",
        )
        .bind(id)
        .bind(now)
        .fetch_optional(c).await
        })?;
        match state {
            None => return Ok(false),
            Some(RevertState::Cancelled) => {
                db_run!(&mut tx, |c| sqlx::query(
                    "DELETE FROM inbox_migration_locks WHERE migration_id = $1"
                )
                .bind(id)
                .execute(c)
                .await
                .map(|r| r.rows_affected()))?;
            }
            Some(_) => {}
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn revert_inbox_migration_batch(&self, revert: RevertBatch<'_>) -> Result<Option<bool>> {
        super::inbox_migration_batch::revert_batch(self.pool(), revert).await
    }

    async fn finish_inbox_migration_revert(
        &self,
        id: i64,
        token: &str,
        result: &serde_json::Value,
    ) -> Result<bool> {
        let mut tx = self.pool().begin_write().await?;
        let now = chrono::Utc::now();
        let runs: Option<sqlx::types::Json<Vec<i64>>> = db_run!(&mut tx, |c| {
            sqlx::query_scalar(
            "UPDATE inbox_migrations SET revert_state = 'reverted', revert_result = $3, revert_completed_at = $4, \
             updated_at = $4, lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL \
             WHERE id = $1 AND lease_token = $2 AND revert_state = 'running' RETURNING revert_runs",
        )
        .bind(id).bind(token).bind(sqlx::types::Json(result)).bind(now)
        .fetch_optional(c).await
        })?;
        let Some(runs) = runs else {
            tx.rollback().await?;
            return Ok(false);
        };
        for run in runs.0 {
            db_run!(&mut tx, |c| {
                sqlx::query(
                "DELETE FROM inbox_members WHERE inbox_id = (SELECT destination_inbox_id FROM inbox_migrations WHERE id = $1) \
                 AND user_id IN (SELECT user_id FROM inbox_migration_members WHERE migration_id = $1)",
            )
            .bind(run).execute(c).await.map(|r| r.rows_affected())
            })?;
            db_run!(&mut tx, |c| {
                sqlx::query(
                "UPDATE inbox_migrations SET status = 'reverted', phase = 'reverted', updated_at = $3, \
                 reverted_with = CASE WHEN id = $2 THEN NULL ELSE $2 END WHERE id = $1",
            )
            .bind(run).bind(id).bind(now).execute(c).await.map(|r| r.rows_affected())
            })?;
        }
        close_attempt(&mut tx, id, "reverted", None, now).await?;
        db_run!(&mut tx, |c| sqlx::query(
            "DELETE FROM inbox_migration_locks WHERE migration_id = $1"
        )
        .bind(id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        tx.commit().await?;
        Ok(true)
    }

    async fn stop_inbox_migration_revert(
        &self,
        id: i64,
        token: &str,
        state: RevertState,
        error: Option<&str>,
    ) -> Result<bool> {
        let mut tx = self.pool().begin_write().await?;
        let now = chrono::Utc::now();
        let done = db_run!(&mut tx, |c| {
            sqlx::query(
            "UPDATE inbox_migrations SET revert_state = $3, revert_error = $4, revert_completed_at = $5, \
             cancel_requested = FALSE, updated_at = $5, lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL \
             WHERE id = $1 AND lease_token = $2 AND revert_state = 'running'",
        )
        .bind(id).bind(token).bind(state).bind(error).bind(now)
        .execute(c).await.map(|r| r.rows_affected())
        })?;
        if done != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        let outcome = if state == RevertState::Cancelled {
            "cancelled"
        } else {
            "failed"
        };
        close_attempt(&mut tx, id, outcome, error, now).await?;
        db_run!(&mut tx, |c| sqlx::query(
            "DELETE FROM inbox_migration_locks WHERE migration_id = $1"
        )
        .bind(id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        tx.commit().await?;
        Ok(true)
    }

    async fn inbox_migration_restored(&self, runs: &[i64]) -> Result<(i64, i64, i64)> {
        let mut total = (0, 0, 0);
        for &run in runs {
            let (conversations, messages, contact_inboxes): (i64, i64, i64) = db_run!(
                self.pool(),
                |c| {
                    sqlx::query_as(
                "SELECT (SELECT COUNT(*) FROM inbox_migration_conversations j, inbox_migrations m \
                         WHERE j.migration_id = $1 AND m.id = $1 AND j.batch > m.cursor_id), \
                        (SELECT CAST(COALESCE(SUM(c.messages_count), 0) AS BIGINT) FROM inbox_migration_conversations j \
                         JOIN inbox_migrations m ON m.id = j.migration_id JOIN conversations c ON c.id = j.conversation_id \
                         WHERE j.migration_id = $1 AND j.batch > m.cursor_id), \
                        (SELECT COUNT(*) FROM inbox_migration_contact_inboxes p, inbox_migrations m \
                         WHERE p.migration_id = $1 AND m.id = $1 AND p.batch > m.cursor_id)",
            )
            .bind(run)
            .fetch_one(c).await
                }
            )?;
            total = (
                total.0 + conversations,
                total.1 + messages,
                total.2 + contact_inboxes,
            );
        }
        Ok(total)
    }

    async fn inbox_migration_attempts(&self, id: i64) -> Result<Vec<MigrationAttempt>> {
        Ok(db_run!(self.pool(), |c| {
            sqlx::query_as(
            "SELECT kind, worker, started_at, ended_at, outcome, error, batches_at_start, batches_at_end \
             FROM inbox_migration_attempts WHERE migration_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(c).await
        })?)
    }

    async fn account_rows_snapshot(&self, account_id: i64) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let contacts: Vec<(
            i64,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            sqlx::types::Json<serde_json::Value>,
            Option<i64>,
            DateTime<Utc>,
            DateTime<Utc>,
        )> = db_run!(self.pool(), |c| {
            sqlx::query_as("SELECT id, name, phone_number, email, identifier, custom_attributes, import_id, created_at, updated_at \
                FROM contacts WHERE account_id = $1 ORDER BY id")
            .bind(account_id).fetch_all(c).await
        })?;
        out.extend(contacts.iter().map(|r| format!("contact {r:?}")));
        let cis: Vec<(
            i64,
            i64,
            i64,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<i64>,
            DateTime<Utc>,
        )> = db_run!(self.pool(), |c| {
            sqlx::query_as("SELECT ci.id, ci.contact_id, ci.inbox_id, ci.source_id, ci.wa_identity, ci.wa_key, ci.wa_alias, ci.import_id, ci.created_at \
                FROM contact_inboxes ci JOIN inboxes i ON i.id = ci.inbox_id WHERE i.account_id = $1 ORDER BY ci.id")
            .bind(account_id).fetch_all(c).await
        })?;
        out.extend(cis.iter().map(|r| format!("contact_inbox {r:?}")));
        let conversations: Vec<(
            i64,
            i64,
            i64,
            Option<i64>,
            i64,
            String,
            Option<i64>,
            DateTime<Utc>,
            DateTime<Utc>,
            DateTime<Utc>,
        )> = db_run!(self.pool(), |c| {
            sqlx::query_as("SELECT id, inbox_id, contact_id, contact_inbox_id, display_id, status, assignee_id, last_activity_at, \
                created_at, updated_at FROM conversations WHERE account_id = $1 ORDER BY id")
            .bind(account_id).fetch_all(c).await
        })?;
        out.extend(conversations.iter().map(|r| format!("conversation {r:?}")));
        let labels: Vec<(i64, i64, String)> = db_run!(self.pool(), |c| {
            sqlx::query_as(
            "SELECT l.id, l.contact_id, l.label FROM contact_labels l JOIN contacts c ON c.id = l.contact_id \
             WHERE c.account_id = $1 ORDER BY l.id")
            .bind(account_id).fetch_all(c).await
        })?;
        out.extend(labels.iter().map(|r| format!("label {r:?}")));
        let notes: Vec<(i64, i64, Option<i64>, String, DateTime<Utc>)> = db_run!(
            self.pool(),
            |c| {
                sqlx::query_as(
            "SELECT id, contact_id, user_id, content, created_at FROM contact_notes WHERE account_id = $1 ORDER BY id")
            .bind(account_id).fetch_all(c).await
            }
        )?;
        out.extend(notes.iter().map(|r| format!("note {r:?}")));
        let members: Vec<(i64, i64, i64)> = db_run!(self.pool(), |c| {
            sqlx::query_as(
            "SELECT m.id, m.inbox_id, m.user_id FROM inbox_members m JOIN inboxes i ON i.id = m.inbox_id \
             WHERE i.account_id = $1 ORDER BY m.id")
            .bind(account_id).fetch_all(c).await
        })?;
        out.extend(members.iter().map(|r| format!("member {r:?}")));
        Ok(out)
    }

    async fn count_duplicate_messages(
        &self,
        source: i64,
        destination: i64,
        key: MatchKey,
    ) -> Result<i64> {
        let k = key.column();
        let sql = format!(
            "SELECT COUNT(*) FROM contact_inboxes s \
             JOIN contact_inboxes d ON d.id = (SELECT MIN(x.id) FROM contact_inboxes x WHERE x.inbox_id = $2 AND x.{k} = s.{k}) \
             JOIN conversations c ON c.contact_inbox_id = s.id \
             JOIN messages m ON m.conversation_id = c.id \
             WHERE s.inbox_id = $1 AND c.inbox_id = $1 AND m.source_id IS NOT NULL AND EXISTS (SELECT 1 FROM messages m2 \
             JOIN conversations c2 ON c2.id = m2.conversation_id WHERE m2.account_id = m.account_id \
             AND m2.source_id = m.source_id AND c2.contact_inbox_id = d.id)"
        );
        Ok(db_run!(self.pool(), |c| sqlx::query_scalar(
            sqlx::AssertSqlSafe(sql)
        )
        .bind(source)
        .bind(destination)
        .fetch_one(c)
        .await)?)
    }

    async fn inbox_migration_dropped(&self, id: i64) -> Result<(i64, i64)> {
        Ok(db_run!(self.pool(), |c| sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM inbox_migration_messages WHERE migration_id = $1), \
             (SELECT COUNT(*) FROM inbox_migration_attachments WHERE migration_id = $1)",
        )
        .bind(id)
        .fetch_one(c)
        .await)?)
    }

    async fn count_conversation_counter_drift(&self, source: i64, destination: i64) -> Result<i64> {
        Ok(db_run!(self.pool(), |c| {
            sqlx::query_scalar(
            "SELECT COUNT(*) FROM conversations c WHERE c.inbox_id IN ($1, $2) \
             AND (c.messages_count <> (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id) \
             OR c.attachments_count <> (SELECT COUNT(*) FROM attachments a JOIN messages m ON m.id = a.message_id \
             WHERE m.conversation_id = c.id))",
        )
        .bind(source)
        .bind(destination)
        .fetch_one(c).await
        })?)
    }

    async fn refresh_journal_statistics(&self) -> Result<()> {
        if self.pool().backend() == super::Backend::Postgres {
            // ANALYZE samples a bounded number of rows: its cost does not grow with the journal.
            db_run!(self.pool(), |c| {
                sqlx::raw_sql(
                "ANALYZE inbox_migration_contact_inboxes, inbox_migration_conversations, inbox_migration_contacts, \
                 inbox_migration_labels, inbox_migration_notes",
            )
            .execute(c).await.map(|r| r.rows_affected())
            })?;
        }
        Ok(())
    }

    async fn count_unportable_identities(
        &self,
        inbox_id: i64,
        lids: bool,
        bsuids: bool,
    ) -> Result<i64> {
        Ok(db_run!(self.pool(), |c| sqlx::query_scalar(
            "SELECT COUNT(*) FROM contact_inboxes WHERE inbox_id = $1 \
             AND (($2 AND wa_identity LIKE '%@lid') OR ($3 AND wa_identity LIKE '%.%'))",
        )
        .bind(inbox_id)
        .bind(lids)
        .bind(bsuids)
        .fetch_one(c)
        .await)?)
    }

    async fn merging_contacts(
        &self,
        source: i64,
        destination: i64,
        key: MatchKey,
        limit: i64,
    ) -> Result<(Vec<MergingContact>, i64)> {
        let k = key.column();
        let pairs = format!(
            "FROM contact_inboxes s JOIN contact_inboxes d ON d.inbox_id = $2 AND d.{k} = s.{k} \
             JOIN contacts sc ON sc.id = s.contact_id JOIN contacts dc ON dc.id = d.contact_id \
             WHERE s.inbox_id = $1"
        );
        let listed = format!(
            "SELECT sc.id AS contact_id, sc.name, s.source_id AS source_identity, \
             dc.id AS destination_contact_id, dc.name AS destination_name, d.source_id AS destination_identity \
             {pairs} ORDER BY sc.name, s.id LIMIT $3"
        );
        let rows = db_run!(self.pool(), |c| sqlx::query_as(sqlx::AssertSqlSafe(
            listed.clone()
        ))
        .bind(source)
        .bind(destination)
        .bind(limit)
        .fetch_all(c)
        .await)?;
        let total = db_run!(self.pool(), |c| sqlx::query_scalar(sqlx::AssertSqlSafe(
            format!("SELECT COUNT(*) {pairs}")
        ))
        .bind(source)
        .bind(destination)
        .fetch_one(c)
        .await)?;
        Ok((rows, total))
    }

    async fn open_conversation_conflicts(
        &self,
        source: i64,
        destination: i64,
        key: MatchKey,
        limit: i64,
    ) -> Result<Vec<OpenConversationOf>> {
        let k = key.column();
        // Each source contact_inbox with the destination's of the same person (if any): the person's open
        // conversations in both inboxes end up together in the destination.
        let sql = format!(
            "WITH people AS ( \
               SELECT s.id AS sid, d.id AS did, s.contact_id AS contact_id FROM contact_inboxes s \
               LEFT JOIN contact_inboxes d ON d.inbox_id = $2 AND d.{k} = s.{k} WHERE s.inbox_id = $1), \
             crowded AS ( \
               SELECT p.sid, p.did, p.contact_id FROM people p \
               WHERE (SELECT COUNT(*) FROM conversations c WHERE c.status = 'open' \
                      AND ((c.inbox_id = $1 AND c.contact_inbox_id = p.sid) \
                        OR (c.inbox_id = $2 AND c.contact_inbox_id = p.did))) > 1 \
               ORDER BY p.sid LIMIT $3) \
             SELECT w.contact_id, ct.name, c.id AS conversation_id, c.inbox_id FROM crowded w \
             JOIN contacts ct ON ct.id = w.contact_id \
             JOIN conversations c ON c.status = 'open' \
               AND ((c.inbox_id = $1 AND c.contact_inbox_id = w.sid) OR (c.inbox_id = $2 AND c.contact_inbox_id = w.did)) \
             ORDER BY ct.name, w.contact_id, c.id"
        );
        Ok(db_run!(self.pool(), |c| sqlx::query_as(
            sqlx::AssertSqlSafe(sql.clone())
        )
        .bind(source)
        .bind(destination)
        .bind(limit)
        .fetch_all(c)
        .await)?)
    }

    async fn contacts_with_several_open_conversations(
        &self,
        inbox_id: i64,
        limit: i64,
    ) -> Result<Vec<OpenConversationOf>> {
        Ok(db_run!(self.pool(), |c| {
            sqlx::query_as(
            "WITH crowded AS ( \
               SELECT contact_id FROM conversations WHERE inbox_id = $1 AND status = 'open' \
               GROUP BY contact_id HAVING COUNT(*) > 1 ORDER BY contact_id LIMIT $2) \
             SELECT w.contact_id, ct.name, c.id AS conversation_id, c.inbox_id FROM crowded w \
             JOIN contacts ct ON ct.id = w.contact_id \
             JOIN conversations c ON c.inbox_id = $1 AND c.status = 'open' AND c.contact_id = w.contact_id \
             ORDER BY ct.name, w.contact_id, c.id",
        )
        .bind(inbox_id)
        .bind(limit)
        .fetch_all(c)
        .await
        })?)
    }

    async fn check_inbox_migration_invariants(
        &self,
        source: i64,
        destination: i64,
        key: MatchKey,
        completed_at: Option<DateTime<Utc>>,
    ) -> Result<Vec<Violation>> {
        let k = key.column();
        let mut out = Vec::new();
        let wrong_refs: i64 = db_run!(self.pool(), |c| {
            sqlx::query_scalar(
            "SELECT COUNT(*) FROM conversations c JOIN contact_inboxes ci ON ci.id = c.contact_inbox_id \
             WHERE c.inbox_id IN ($1, $2) AND (ci.inbox_id <> c.inbox_id OR ci.contact_id <> c.contact_id)",
        )
        .bind(source).bind(destination)
        .fetch_one(c).await
        })?;
        if wrong_refs > 0 {
            out.push(Violation {
                invariant: 2,
                count: wrong_refs,
                description:
                    "conversations whose contact_inbox is in another inbox or of another contact"
                        .into(),
            });
        }
        let sql = format!(
            "SELECT COUNT(*) FROM (SELECT {k} FROM contact_inboxes WHERE inbox_id = $1 AND {k} IS NOT NULL \
             GROUP BY {k} HAVING COUNT(*) > 1) dup"
        );
        let shared: i64 = db_run!(self.pool(), |c| sqlx::query_scalar(sqlx::AssertSqlSafe(
            sql
        ))
        .bind(destination)
        .fetch_one(c)
        .await)?;
        if shared > 0 {
            out.push(Violation {
                invariant: 3,
                count: shared,
                description: "identities held by two contact_inboxes of the destination".into(),
            });
        }
        if let Some(completed_at) = completed_at {
            let left: i64 = db_run!(self.pool(), |c| sqlx::query_scalar(
                "SELECT COUNT(*) FROM conversations WHERE inbox_id = $1 AND created_at <= $2"
            )
            .bind(source)
            .bind(completed_at)
            .fetch_one(c)
            .await)?;
            if left > 0 {
                out.push(Violation {
                    invariant: 5,
                    count: left,
                    description: "conversations older than the migration are still in the source"
                        .into(),
                });
            }
        }
        Ok(out)
    }
}

/// Ends a running migration (completed, cancelled or failed) if `token` still holds its lease, and
/// releases its inboxes. False when the lease was lost: the caller rolls back.
async fn end_under_lease(
    tx: &mut Tx,
    id: i64,
    token: &str,
    status: &str,
    result: Option<&serde_json::Value>,
    message: Option<&str>,
    detail: Option<&str>,
) -> Result<bool> {
    let done = db_run!(tx, |c| sqlx::query(
        "UPDATE inbox_migrations SET status = $3, \
         phase = CASE WHEN $3 = 'completed' THEN 'done' ELSE phase END, \
         result = COALESCE($4, result), error_message = $5, error_detail = $6, completed_at = $7, \
         updated_at = $7, lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL \
         WHERE id = $1 AND lease_token = $2 AND status = 'running'",
    )
    .bind(id)
    .bind(token)
    .bind(status)
    .bind(result.map(sqlx::types::Json))
    .bind(message)
    .bind(detail)
    .bind(chrono::Utc::now())
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    if done != 1 {
        return Ok(false);
    }
    close_attempt(tx, id, status, message, chrono::Utc::now()).await?;
    db_run!(tx, |c| sqlx::query(
        "DELETE FROM inbox_migration_locks WHERE migration_id = $1"
    )
    .bind(id)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(true)
}

/// A new attempt of `kind` by `worker`; an attempt still open was taken over (its lease expired).
async fn open_attempt(
    tx: &mut Tx,
    id: i64,
    kind: &str,
    worker: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    close_attempt(tx, id, "lease_expired", None, now).await?;
    db_run!(tx, |c| {
        sqlx::query(
        "INSERT INTO inbox_migration_attempts (migration_id, kind, worker, started_at, batches_at_start) \
         SELECT id, $2, $3, $4, CASE WHEN $2 = 'revert' THEN revert_batches_done ELSE cursor_id END \
         FROM inbox_migrations WHERE id = $1",
    )
    .bind(id)
    .bind(kind)
    .bind(worker)
    .bind(now)
    .execute(c).await.map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// Ends the migration's open attempt (if any) with `outcome`.
async fn close_attempt(
    tx: &mut Tx,
    id: i64,
    outcome: &str,
    error: Option<&str>,
    now: DateTime<Utc>,
) -> Result<()> {
    db_run!(tx, |c| sqlx::query(
        "UPDATE inbox_migration_attempts SET ended_at = $3, outcome = $2, error = $4, \
         batches_at_end = (SELECT CASE WHEN inbox_migration_attempts.kind = 'revert' \
         THEN m.revert_batches_done ELSE m.cursor_id END FROM inbox_migrations m WHERE m.id = $1) \
         WHERE migration_id = $1 AND ended_at IS NULL",
    )
    .bind(id)
    .bind(outcome)
    .bind(now)
    .bind(error)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

pub(super) use {attachment_columns, batch_merges, deleted_sources, message_columns};
