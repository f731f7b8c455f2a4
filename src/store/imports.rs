//! Account imports (README: "Account import"): the import row, claimed under a lease like inbox migrations; each batch commits its
//! rows, its counters and its stage cursor in one transaction guarded by the lease token, so a resumed stage
//! continues exactly where the last commit left it and nothing is imported twice (legacy thread and message
//! ids are unique in the database).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::db::{SqlStore, db_run};
use super::lease::{self, Leased};

/// An import runs under the lease.
const IMPORTS: Leased = Leased {
    table: "account_imports",
    running: "status = 'running'",
};
use super::{ImportStage, ImportStatus, Result, StoreError};

#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AccountImport {
    pub id: i64,
    pub account_id: i64,
    pub user_id: Option<i64>,
    pub status: ImportStatus,
    pub stage: ImportStage,
    pub forced: bool,
    pub channels_count: i64,
    pub threads_count: i64,
    pub messages_count: i64,
    pub attachments_count: i64,
    #[serde(skip)]
    pub recent_cursor: Option<String>,
    #[serde(skip)]
    pub all_cursor: Option<String>,
    pub error_message: Option<String>,
    #[serde(skip)]
    pub error_detail: Option<String>,
    pub failed_stage: Option<String>,
    pub attempts: i64,
    pub repair_attempts: i64,
    pub next_repair_at: Option<DateTime<Utc>>,
    pub lease_owner: Option<String>,
    #[serde(skip)]
    pub lease_token: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub channels_migrated_at: Option<DateTime<Utc>>,
    /// What the recent stage had imported when it finished (the rest came with `all`).
    pub recent_threads_count: i64,
    pub recent_messages_count: i64,
    pub recent_migrated_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub(crate) const IMPORT_COLUMNS: &str = "id, account_id, user_id, status, stage, forced, channels_count, \
    threads_count, messages_count, attachments_count, recent_cursor, all_cursor, error_message, error_detail, \
    failed_stage, attempts, repair_attempts, next_repair_at, lease_owner, lease_token, started_at, \
    channels_migrated_at, recent_migrated_at, recent_threads_count, recent_messages_count, completed_at, \
    created_at, updated_at";

/// How `start_account_import` should begin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportStart {
    /// A new import from the channels stage (first time, after `channel-failure`, or forced).
    Fresh { forced: bool },
    /// The failed import `id` runs again from its stage's committed cursor.
    Resume { id: i64 },
}

/// A channel, decrypted and validated, to be created or updated as an inbox keyed by its legacy id.
#[derive(Debug, Clone)]
pub struct ImportedChannel {
    pub legacy_channel_id: String,
    pub name: String,
    pub channel_type: crate::domain::ChannelType,
    pub phone_number: Option<String>,
    pub config: serde_json::Value,
}

#[derive(Debug, Clone)]
pub struct ImportMedia {
    pub url: String,
    pub file_type: &'static str,
    pub content_type: Option<String>,
    pub file_name: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ImportMessage {
    pub legacy_message_id: String,
    /// `incoming` or `outgoing`.
    pub message_type: &'static str,
    pub content: Option<String>,
    pub status: &'static str,
    pub starred: bool,
    pub created_at: DateTime<Utc>,
    pub media: Vec<ImportMedia>,
}

/// One legacy thread with the messages of this batch.
#[derive(Debug, Clone)]
pub struct ImportThread {
    pub legacy_thread_id: String,
    pub inbox_id: i64,
    pub wa_identity: String,
    pub wa_key: String,
    pub source_id: String,
    pub contact_name: Option<String>,
    pub phone_number: Option<String>,
    /// `open` or `resolved`.
    pub status: &'static str,
    pub last_activity_at: DateTime<Utc>,
    pub messages: Vec<ImportMessage>,
}

#[derive(Debug, Clone, Default)]
pub struct ImportBatch {
    pub threads: Vec<ImportThread>,
    /// Web-widget messages are not imported; their `starred` flag goes to ferry's message of that id.
    pub starred: Vec<(i64, bool)>,
    /// The stage's cursor once this batch is in.
    pub cursor: Option<String>,
    /// The account's setting: customers match across inboxes by identity key (folded) or exact identity.
    pub merge_brazil_ninth_digit: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportBatchOutcome {
    pub threads_created: i64,
    pub messages_created: i64,
    pub attachments_created: i64,
    pub starred_applied: i64,
}

/// Attachments of an account's imports by status.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ImportAttachmentCounts {
    pub total: i64,
    pub pending: i64,
    pub failed: i64,
}

/// What a forced re-migration deleted (and kept because ferry's own rows use it).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ImportedRowsDeleted {
    pub attachments: u64,
    pub messages: u64,
    pub conversations: u64,
    pub conversations_kept: u64,
    pub contact_inboxes: u64,
    pub contacts: u64,
    pub contacts_kept: u64,
    pub inboxes: u64,
    pub inboxes_kept: u64,
}

#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct ImportFailure {
    pub account_id: i64,
    pub account_name: String,
    pub legacy_ref: Option<String>,
    pub import_id: i64,
    pub error_message: Option<String>,
    pub repair_attempts: i64,
    pub next_repair_at: Option<DateTime<Utc>>,
    pub status: ImportStatus,
    pub updated_at: DateTime<Utc>,
}

/// Seals a channel's config for the inbox row it is written to.
pub type ConfigSealer<'a> = &'a (dyn Fn(i64, &serde_json::Value) -> Vec<u8> + Send + Sync);

#[async_trait]
pub trait AccountImportStore: Send + Sync {
    /// Records the legacy system's answer once: only while the account has no status yet.
    async fn set_migration_status_once(&self, account_id: i64, status: &str) -> Result<bool>;
    /// Queues an import and sets the account's status, in one transaction. While an import of the account is
    /// queued or running, returns that one instead (`false`: nothing new was queued).
    async fn start_account_import(
        &self,
        account_id: i64,
        user_id: Option<i64>,
        start: ImportStart,
    ) -> Result<(AccountImport, bool)>;
    async fn get_account_import(&self, id: i64) -> Result<AccountImport>;
    async fn latest_account_import(&self, account_id: i64) -> Result<Option<AccountImport>>;
    async fn list_account_imports(&self, account_id: i64) -> Result<Vec<AccountImport>>;
    /// The oldest queued import, or a running one whose lease expired, leased to `owner` under `token`.
    async fn claim_account_import(
        &self,
        owner: &str,
        token: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<AccountImport>>;
    /// Whether another import waits (queued) that has not reached its history stage yet.
    async fn account_import_waiting(&self, except: i64) -> Result<bool>;
    async fn renew_account_import_lease(
        &self,
        id: i64,
        token: &str,
        until: DateTime<Utc>,
    ) -> Result<bool>;
    /// Shutdown: back to the queue for another worker, at a batch boundary.
    async fn release_account_import(&self, id: i64, token: &str) -> Result<bool>;
    /// The channels stage's result: inboxes created or updated by legacy channel id (configs sealed for
    /// their rows), the import moved to `recent`, the account to `channels-migrated`. None: lease lost.
    async fn import_channels(
        &self,
        id: i64,
        token: &str,
        channels: &[ImportedChannel],
        seal: ConfigSealer<'_>,
    ) -> Result<Option<Vec<(String, i64)>>>;
    /// One batch of a message stage with its cursor (`stage` is `recent` or `all`). None: lease lost.
    async fn import_batch(
        &self,
        id: i64,
        token: &str,
        stage: &str,
        batch: &ImportBatch,
    ) -> Result<Option<ImportBatchOutcome>>;
    /// Fresh planner statistics for the tables an import fills (PostgreSQL; SQLite needs none).
    async fn refresh_import_statistics(&self) -> Result<()>;
    /// `recent` done → stage `all`, account `recent-messages-migrated`; `all` done → `completed`.
    async fn finish_import_stage(&self, id: i64, token: &str, stage: &str) -> Result<bool>;
    /// The stage failed: the import is `failed`, the account gets `account_status`.
    async fn fail_account_import(
        &self,
        id: i64,
        token: &str,
        account_status: &str,
        message: &str,
        detail: &str,
        next_repair_at: Option<DateTime<Utc>>,
    ) -> Result<bool>;
    /// Failed `all` stages due for an automatic repair (the account still shows `messages-failure`).
    async fn due_import_repairs(&self, now: DateTime<Utc>) -> Result<Vec<AccountImport>>;
    /// Accounts whose history import failed (`messages-failure`), with their latest import.
    async fn import_failures(&self) -> Result<Vec<ImportFailure>>;
    async fn import_attachment_counts(&self, account_id: i64) -> Result<ImportAttachmentCounts>;
    /// Failed imported attachments (of one account, or all) pending again with their download job queued.
    async fn retry_import_attachments(&self, account_id: Option<i64>) -> Result<u64>;
    /// Deletes exactly what imports of the account created; rows that ferry's own data uses are kept and
    /// detached from the import. Refused (Conflict) while an import of the account is queued or running.
    async fn delete_imported_rows(&self, account_id: i64) -> Result<ImportedRowsDeleted>;
}

#[async_trait::async_trait]
impl AccountImportStore for SqlStore {
    async fn set_migration_status_once(&self, account_id: i64, status: &str) -> Result<bool> {
        let done = db_run!(self.pool(), |c| {
            sqlx::query(
            "UPDATE accounts SET migration_status = $1, updated_at = $2 WHERE id = $3 AND migration_status IS NULL",
        )
        .bind(status)
        .bind(Utc::now())
        .bind(account_id)
        .execute(c).await.map(|r| r.rows_affected())
        })?;
        Ok(done == 1)
    }

    async fn start_account_import(
        &self,
        account_id: i64,
        user_id: Option<i64>,
        start: ImportStart,
    ) -> Result<(AccountImport, bool)> {
        use ImportStart;
        let mut tx = self.pool().begin_write().await?;
        let sql = format!(
            "SELECT {} FROM account_imports WHERE account_id = $1 AND status IN ('queued', 'running')",
            IMPORT_COLUMNS
        );
        let active: Option<AccountImport> =
            db_run!(&mut tx, |c| sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(account_id)
                .fetch_optional(c)
                .await)?;
        if let Some(active) = active {
            return Ok((active, false));
        }
        let now = Utc::now();
        let (id, account_status): (i64, Option<&str>) = match start {
            ImportStart::Fresh { forced } => {
                // The counters continue from the previous import (the rows it created are still here),
                // except after a forced re-migration deleted them.
                let previous: Option<(i64, i64, i64, i64)> = if forced {
                    None
                } else {
                    db_run!(&mut tx, |c| sqlx::query_as(
                        "SELECT channels_count, threads_count, messages_count, attachments_count \
                         FROM account_imports WHERE account_id = $1 ORDER BY id DESC LIMIT 1",
                    )
                    .bind(account_id)
                    .fetch_optional(c)
                    .await)?
                };
                let (channels, threads, messages, attachments) = previous.unwrap_or_default();
                let id: i64 = db_run!(&mut tx, |c| {
                    sqlx::query_scalar(
                    "INSERT INTO account_imports (account_id, user_id, forced, channels_count, threads_count, \
                     messages_count, attachments_count, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING id",
                )
                .bind(account_id)
                .bind(user_id)
                .bind(forced)
                .bind(channels)
                .bind(threads)
                .bind(messages)
                .bind(attachments)
                .bind(now)
                .fetch_one(c).await
                })?;
                (id, Some("migrating"))
            }
            ImportStart::Resume { id } => {
                let stage: Option<String> = db_run!(&mut tx, |c| {
                    sqlx::query_scalar(
                    "UPDATE account_imports SET status = 'queued', lease_owner = NULL, lease_token = NULL, \
                     lease_expires_at = NULL, next_repair_at = NULL, updated_at = $1, \
                     repair_attempts = repair_attempts + CASE WHEN stage = 'all' THEN 1 ELSE 0 END \
                     WHERE id = $2 AND account_id = $3 AND status = 'failed' RETURNING stage",
                )
                .bind(now)
                .bind(id)
                .bind(account_id)
                .fetch_optional(c).await
                })?;
                let stage = stage.ok_or(StoreError::NotFound("failed account import"))?;
                // A resumed recent stage shows where it stands again; a history repair keeps the
                // client's `completed` (messages-failure) until it succeeds.
                (id, (stage == "recent").then_some("channels-migrated"))
            }
        };
        if let Some(status) = account_status {
            db_run!(&mut tx, |c| sqlx::query(
                "UPDATE accounts SET migration_status = $1, updated_at = $2 WHERE id = $3"
            )
            .bind(status)
            .bind(now)
            .bind(account_id)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        }
        let sql = format!(
            "SELECT {} FROM account_imports WHERE id = $1",
            IMPORT_COLUMNS
        );
        let import = db_run!(&mut tx, |c| sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_one(c)
            .await)?;
        tx.commit().await?;
        Ok((import, true))
    }

    async fn get_account_import(&self, id: i64) -> Result<AccountImport> {
        let sql = format!(
            "SELECT {} FROM account_imports WHERE id = $1",
            IMPORT_COLUMNS
        );
        db_run!(self.pool(), |c| sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(c)
            .await)?
        .ok_or(StoreError::NotFound("account import"))
    }

    async fn latest_account_import(&self, account_id: i64) -> Result<Option<AccountImport>> {
        let sql = format!(
            "SELECT {} FROM account_imports WHERE account_id = $1 ORDER BY id DESC LIMIT 1",
            IMPORT_COLUMNS
        );
        Ok(db_run!(self.pool(), |c| sqlx::query_as(
            sqlx::AssertSqlSafe(sql)
        )
        .bind(account_id)
        .fetch_optional(c)
        .await)?)
    }

    async fn list_account_imports(&self, account_id: i64) -> Result<Vec<AccountImport>> {
        let sql = format!(
            "SELECT {} FROM account_imports WHERE account_id = $1 ORDER BY id DESC",
            IMPORT_COLUMNS
        );
        Ok(db_run!(self.pool(), |c| sqlx::query_as(
            sqlx::AssertSqlSafe(sql)
        )
        .bind(account_id)
        .fetch_all(c)
        .await)?)
    }

    async fn claim_account_import(
        &self,
        owner: &str,
        token: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<AccountImport>> {
        let mut tx = self.pool().begin_write().await?;
        // First stages before long histories, then by age; a running import counts when its lease expired.
        let candidate: Option<(i64, String)> = lease::first_due(
            &mut tx,
            IMPORTS,
            "id, status",
            "status = 'queued' OR (status = 'running' AND lease_expires_at < $1)",
            "CASE WHEN stage IN ('channels', 'recent') THEN 0 ELSE 1 END, id",
            now,
            &[],
        )
        .await?;
        let Some((id, previous)) = candidate else {
            return Ok(None);
        };
        let set =
            "status = 'running', attempts = attempts + 1, started_at = COALESCE(started_at, $4)";
        lease::take(&mut tx, IMPORTS, set, id, (owner, token), until, now).await?;
        if previous == "running" {
            crate::metrics::lease_takeover("account_import");
        }
        let sql = format!(
            "SELECT {} FROM account_imports WHERE id = $1",
            IMPORT_COLUMNS
        );
        let import = db_run!(&mut tx, |c| sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_one(c)
            .await)?;
        tx.commit().await?;
        Ok(Some(import))
    }

    async fn account_import_waiting(&self, except: i64) -> Result<bool> {
        let n: i64 = db_run!(self.pool(), |c| {
            sqlx::query_scalar(
            "SELECT COUNT(*) FROM account_imports WHERE status = 'queued' AND stage IN ('channels', 'recent') AND id <> $1",
        )
        .bind(except)
        .fetch_one(c).await
        })?;
        Ok(n > 0)
    }

    async fn renew_account_import_lease(
        &self,
        id: i64,
        token: &str,
        until: DateTime<Utc>,
    ) -> Result<bool> {
        lease::renew(self.pool(), IMPORTS, id, token, until).await
    }

    async fn release_account_import(&self, id: i64, token: &str) -> Result<bool> {
        let done = db_run!(self.pool(), |c| {
            sqlx::query(
            "UPDATE account_imports SET status = 'queued', lease_owner = NULL, lease_token = NULL, \
             lease_expires_at = NULL, updated_at = $1 WHERE id = $2 AND lease_token = $3 AND status = 'running'",
        )
        .bind(Utc::now())
        .bind(id)
        .bind(token)
        .execute(c).await.map(|r| r.rows_affected())
        })?;
        Ok(done == 1)
    }

    async fn import_channels(
        &self,
        id: i64,
        token: &str,
        channels: &[ImportedChannel],
        seal: ConfigSealer<'_>,
    ) -> Result<Option<Vec<(String, i64)>>> {
        let mut tx = self.pool().begin_write().await?;
        let now = Utc::now();
        let account_id: Option<i64> = db_run!(&mut tx, |c| {
            sqlx::query_scalar(
            "UPDATE account_imports SET stage = 'recent', channels_count = $1, channels_migrated_at = $2, \
             recent_cursor = NULL, all_cursor = NULL, updated_at = $2 \
             WHERE id = $3 AND lease_token = $4 AND status = 'running' RETURNING account_id",
        )
        .bind(channels.len() as i64)
        .bind(now)
        .bind(id)
        .bind(token)
        .fetch_optional(c).await
        })?;
        let Some(account_id) = account_id else {
            return Ok(None);
        };
        let mut inboxes = Vec::with_capacity(channels.len());
        for channel in channels {
            // Created once per legacy channel (the unique key decides), updated on every later import.
            let inbox_id: i64 = db_run!(&mut tx, |c| {
                sqlx::query_scalar(
                "INSERT INTO inboxes (account_id, name, channel_type, phone_number, legacy_channel_id, import_id, \
                 created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
                 ON CONFLICT (account_id, legacy_channel_id) DO UPDATE SET name = excluded.name, \
                 channel_type = excluded.channel_type, phone_number = excluded.phone_number, updated_at = excluded.updated_at \
                 RETURNING id",
            )
            .bind(account_id)
            .bind(&channel.name)
            .bind(channel.channel_type.as_str())
            .bind(&channel.phone_number)
            .bind(&channel.legacy_channel_id)
            .bind(id)
            .bind(now)
            .fetch_one(c).await
            })?;
            db_run!(&mut tx, |c| sqlx::query(
                "UPDATE inboxes SET provider_config = $1 WHERE id = $2"
            )
            .bind(seal(inbox_id, &channel.config))
            .bind(inbox_id)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
            inboxes.push((channel.legacy_channel_id.clone(), inbox_id));
        }
        db_run!(&mut tx, |c| {
            sqlx::query("UPDATE accounts SET migration_status = 'channels-migrated', updated_at = $1 WHERE id = $2")
            .bind(now)
            .bind(account_id)
            .execute(c).await.map(|r| r.rows_affected())
        })?;
        tx.commit().await?;
        Ok(Some(inboxes))
    }

    async fn refresh_import_statistics(&self) -> Result<()> {
        if self.pool().backend() == super::Backend::Postgres {
            // ANALYZE samples a bounded number of rows: its cost does not grow with the tables.
            db_run!(self.pool(), |c| sqlx::raw_sql(
                "ANALYZE conversations, contacts, contact_inboxes"
            )
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        }
        Ok(())
    }

    async fn import_batch(
        &self,
        id: i64,
        token: &str,
        stage: &str,
        batch: &ImportBatch,
    ) -> Result<Option<ImportBatchOutcome>> {
        super::import_batch::import_batch(self.pool(), id, token, stage, batch).await
    }

    async fn finish_import_stage(&self, id: i64, token: &str, stage: &str) -> Result<bool> {
        let mut tx = self.pool().begin_write().await?;
        let now = Utc::now();
        let (sql, account_status) = match stage {
            "recent" => (
                "UPDATE account_imports SET stage = 'all', recent_migrated_at = $1, updated_at = $1, \
                 recent_threads_count = threads_count, recent_messages_count = messages_count \
                 WHERE id = $2 AND lease_token = $3 AND status = 'running' AND stage = 'recent' RETURNING account_id",
                "recent-messages-migrated",
            ),
            "all" => (
                "UPDATE account_imports SET stage = 'done', status = 'completed', completed_at = $1, updated_at = $1, \
                 lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, next_repair_at = NULL \
                 WHERE id = $2 AND lease_token = $3 AND status = 'running' AND stage = 'all' RETURNING account_id",
                "completed",
            ),
            other => return Err(StoreError::Invalid(format!("no stage {other:?} to finish"))),
        };
        let account_id: Option<i64> = db_run!(&mut tx, |c| sqlx::query_scalar(sql)
            .bind(now)
            .bind(id)
            .bind(token)
            .fetch_optional(c)
            .await)?;
        let Some(account_id) = account_id else {
            return Ok(false);
        };
        // A history repair after `messages-failure` keeps showing that (the client sees `completed`)
        // until the history is in.
        let guard = if stage == "recent" {
            " AND migration_status <> 'messages-failure'"
        } else {
            ""
        };
        db_run!(&mut tx, |c| sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE accounts SET migration_status = $1, updated_at = $2 WHERE id = $3{guard}"
        )))
        .bind(account_status)
        .bind(now)
        .bind(account_id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        tx.commit().await?;
        Ok(true)
    }

    async fn fail_account_import(
        &self,
        id: i64,
        token: &str,
        account_status: &str,
        message: &str,
        detail: &str,
        next_repair_at: Option<DateTime<Utc>>,
    ) -> Result<bool> {
        let mut tx = self.pool().begin_write().await?;
        let now = Utc::now();
        let account_id: Option<i64> = db_run!(&mut tx, |c| {
            sqlx::query_scalar(
            "UPDATE account_imports SET status = 'failed', failed_stage = stage, error_message = $1, error_detail = $2, \
             next_repair_at = $3, lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, updated_at = $4 \
             WHERE id = $5 AND lease_token = $6 AND status = 'running' RETURNING account_id",
        )
        .bind(message)
        .bind(detail)
        .bind(next_repair_at)
        .bind(now)
        .bind(id)
        .bind(token)
        .fetch_optional(c).await
        })?;
        let Some(account_id) = account_id else {
            return Ok(false);
        };
        db_run!(&mut tx, |c| sqlx::query(
            "UPDATE accounts SET migration_status = $1, updated_at = $2 WHERE id = $3"
        )
        .bind(account_status)
        .bind(now)
        .bind(account_id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        tx.commit().await?;
        Ok(true)
    }

    async fn due_import_repairs(&self, now: DateTime<Utc>) -> Result<Vec<AccountImport>> {
        let sql = format!(
            "SELECT {} FROM account_imports i WHERE status = 'failed' AND stage = 'all' AND next_repair_at <= $1 \
             AND id = (SELECT MAX(id) FROM account_imports j WHERE j.account_id = i.account_id) \
             AND EXISTS (SELECT 1 FROM accounts a WHERE a.id = i.account_id AND a.migration_status = 'messages-failure') \
             ORDER BY next_repair_at",
            IMPORT_COLUMNS
        );
        Ok(db_run!(self.pool(), |c| sqlx::query_as(
            sqlx::AssertSqlSafe(sql)
        )
        .bind(now)
        .fetch_all(c)
        .await)?)
    }

    async fn import_failures(&self) -> Result<Vec<ImportFailure>> {
        Ok(db_run!(self.pool(), |c| {
            sqlx::query_as(
            "SELECT a.id AS account_id, a.name AS account_name, a.legacy_ref, i.id AS import_id, i.error_message, \
             i.repair_attempts, i.next_repair_at, i.status, i.updated_at \
             FROM accounts a JOIN account_imports i ON i.id = (SELECT MAX(id) FROM account_imports j WHERE j.account_id = a.id) \
             WHERE a.migration_status = 'messages-failure' ORDER BY a.id",
        )
        .fetch_all(c).await
        })?)
    }

    async fn import_attachment_counts(&self, account_id: i64) -> Result<ImportAttachmentCounts> {
        let rows: Vec<(String, i64)> = db_run!(self.pool(), |c| sqlx::query_as(
            "SELECT status, COUNT(*) FROM attachments WHERE import_id IN \
             (SELECT id FROM account_imports WHERE account_id = $1) GROUP BY status",
        )
        .bind(account_id)
        .fetch_all(c)
        .await)?;
        let mut counts = ImportAttachmentCounts::default();
        for (status, n) in rows {
            counts.total += n;
            match status.as_str() {
                "pending" => counts.pending += n,
                "failed" => counts.failed += n,
                _ => {}
            }
        }
        Ok(counts)
    }

    async fn retry_import_attachments(&self, account_id: Option<i64>) -> Result<u64> {
        let mut tx = self.pool().begin_write().await?;
        let now = Utc::now();
        let scope =
            "import_id IN (SELECT id FROM account_imports WHERE $1 IS NULL OR account_id = $1)";
        let sql = format!(
            "UPDATE jobs SET status = 'queued', attempts = 0, run_at = $2, last_error = NULL, updated_at = $2 \
             WHERE kind = '{}' AND status = 'failed' AND dedupe_key IN \
             (SELECT '{}:' || id FROM attachments WHERE status = 'failed' AND {scope})",
            crate::webhooks::media::JOB_KIND,
            crate::webhooks::media::JOB_KIND
        );
        db_run!(&mut tx, |c| sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account_id)
            .bind(now)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        let sql = format!(
            "UPDATE attachments SET status = 'pending', failure_reason = NULL WHERE status = 'failed' AND {scope}"
        );
        let done = db_run!(&mut tx, |c| sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account_id)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        tx.commit().await?;
        Ok(done)
    }

    async fn delete_imported_rows(&self, account_id: i64) -> Result<ImportedRowsDeleted> {
        let mut tx = self.pool().begin_write().await?;
        let active: i64 = db_run!(&mut tx, |c| {
            sqlx::query_scalar(
            "SELECT COUNT(*) FROM account_imports WHERE account_id = $1 AND status IN ('queued', 'running')",
        )
        .bind(account_id)
        .fetch_one(c).await
        })?;
        if active > 0 {
            return Err(StoreError::Conflict {
                constraint: "account_imports_one_active".into(),
            });
        }
        let imports = "(SELECT id FROM account_imports WHERE account_id = $1)";
        let mut deleted = ImportedRowsDeleted::default();
        let mut run = async |sql: String| -> Result<u64> {
            Ok(db_run!(&mut tx, |c| sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(account_id)
                .execute(c)
                .await
                .map(|r| r.rows_affected()))?)
        };
        let kind = crate::webhooks::media::JOB_KIND;
        run(format!(
            "DELETE FROM jobs WHERE kind = '{kind}' AND dedupe_key IN \
             (SELECT '{kind}:' || id FROM attachments WHERE import_id IN {imports})"
        ))
        .await?;
        deleted.attachments = run(format!(
            "DELETE FROM attachments WHERE import_id IN {imports}"
        ))
        .await?;
        deleted.messages = run(format!(
            "DELETE FROM messages WHERE import_id IN {imports} \
             AND conversation_id IN (SELECT id FROM conversations WHERE account_id = $1)"
        ))
        .await?;
        // A conversation that ferry's own messages joined since is kept (its legacy id too, so that a new
        // import fills it again); only its import mark goes.
        deleted.conversations = run(format!(
            "DELETE FROM conversations WHERE import_id IN {imports} \
             AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = conversations.id) \
             AND NOT EXISTS (SELECT 1 FROM reporting_events r WHERE r.conversation_id = conversations.id)"
        ))
        .await?;
        deleted.conversations_kept = run(format!(
            "UPDATE conversations SET import_id = NULL WHERE import_id IN {imports}"
        ))
        .await?;
        deleted.contact_inboxes = run(format!(
            "DELETE FROM contact_inboxes WHERE import_id IN {imports} \
             AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.contact_inbox_id = contact_inboxes.id)"
        ))
        .await?;
        run(format!(
            "UPDATE contact_inboxes SET import_id = NULL WHERE import_id IN {imports}"
        ))
        .await?;
        deleted.contacts = run(format!(
            "DELETE FROM contacts WHERE import_id IN {imports} \
             AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.contact_id = contacts.id) \
             AND NOT EXISTS (SELECT 1 FROM contact_inboxes ci WHERE ci.contact_id = contacts.id) \
             AND NOT EXISTS (SELECT 1 FROM contact_notes n WHERE n.contact_id = contacts.id) \
             AND NOT EXISTS (SELECT 1 FROM contact_labels l WHERE l.contact_id = contacts.id)"
        ))
        .await?;
        deleted.contacts_kept = run(format!(
            "UPDATE contacts SET import_id = NULL WHERE import_id IN {imports}"
        ))
        .await?;
        deleted.inboxes = run(format!(
            "DELETE FROM inboxes WHERE import_id IN {imports} \
             AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.inbox_id = inboxes.id) \
             AND NOT EXISTS (SELECT 1 FROM contact_inboxes ci WHERE ci.inbox_id = inboxes.id) \
             AND NOT EXISTS (SELECT 1 FROM integrations g WHERE g.inbox_id = inboxes.id) \
             AND NOT EXISTS (SELECT 1 FROM inbox_members im WHERE im.inbox_id = inboxes.id) \
             AND NOT EXISTS (SELECT 1 FROM inbox_migrations im WHERE im.source_inbox_id = inboxes.id \
                             OR im.destination_inbox_id = inboxes.id)"
        ))
        .await?;
        deleted.inboxes_kept = run(format!(
            "UPDATE inboxes SET import_id = NULL WHERE import_id IN {imports}"
        ))
        .await?;
        run("UPDATE accounts SET migration_status = 'not-started' WHERE id = $1".to_owned())
            .await?;
        tx.commit().await?;
        Ok(deleted)
    }
}
