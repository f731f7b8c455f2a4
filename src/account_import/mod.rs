//! Capability C, on-demand account import from the legacy system (README: "Account import"): the first time an account's client
//! app asks, its channels, then its recent conversations, then its whole history are pulled in stages by a
//! background job, with per-stage failure statuses and resume rules.
//!
//! `source` is the legacy system as a trait (`api` = HTTP API + DynamoDB, `export` = export directory),
//! `engine` runs the stages under a lease, and this module holds the operations the HTTP API, the CLI and the
//! worker share.

pub mod api;
pub mod engine;
pub mod envelope;
pub mod export;
pub mod fake;
pub mod generate;
pub mod media_token;
pub mod source;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

pub use source::{LegacySource, MediaError, SourceError};

use crate::config::Config;
use crate::services::Ferry;
use crate::store::ImportStatus;
use crate::store::{Account, AccountImport, ImportFailure, ImportStart, NewAuditEvent, StoreError};

pub const NOT_STARTED: &str = "not-started";
pub const NOT_NEEDED: &str = "not-needed";

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("no legacy system is configured (set FERRY_LEGACY_API_URL or FERRY_LEGACY_EXPORT_DIR)")]
    NotConfigured,
    #[error(transparent)]
    Legacy(#[from] SourceError),
    #[error("the legacy system does not know this account: there is nothing to import")]
    NotNeeded,
    #[error("this account has no legacy reference (legacy_ref): there is nothing to import")]
    NoLegacyRef,
    #[error(
        "forced re-migration is switched off on this installation (FERRY_ALLOW_FORCE_REMIGRATION=true allows it)"
    )]
    ForceDisabled,
    #[error("an import of this account is queued or running; force a new one once it has ended")]
    Running,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Opens the configured legacy source: the export directory if set, else the HTTP API with DynamoDB.
pub async fn open_source(config: &Config) -> Option<Arc<dyn LegacySource>> {
    let legacy = &config.legacy;
    if let Some(dir) = &legacy.export_dir {
        return Some(Arc::new(export::ExportSource::new(dir)));
    }
    // The demo's export directory, when nothing else is configured.
    let demo = config.data_dir.join(generate::DEMO_EXPORT_DIR);
    if legacy.api_url.is_none() && demo.join("accounts.json").exists() {
        return Some(Arc::new(export::ExportSource::new(demo)));
    }
    let base = legacy.api_url.as_deref()?;
    Some(Arc::new(
        api::ApiSource::new(
            base,
            legacy.api_token.clone(),
            legacy
                .media_jwt_secret
                .as_ref()
                .map(|s| s.as_bytes().to_vec()),
            Duration::from_secs(legacy.api_timeout_seconds.max(1)),
            &ferry_legacy_dynamodb::Settings {
                endpoint: legacy.dynamodb_endpoint.clone(),
                region: legacy.dynamodb_region.clone(),
                threads_table: legacy.threads_table.clone(),
                messages_table: legacy.messages_table.clone(),
            },
        )
        .await,
    ))
}

/// The config envelope key: `FERRY_LEGACY_CONFIG_KEY`, else `DATA_DIR/legacy-config.key` (the demo writes one).
pub fn config_key(config: &Config) -> Result<Option<envelope::ConfigKey>, envelope::EnvelopeError> {
    let text = match &config.legacy.config_key {
        Some(key) => key.clone(),
        None => match std::fs::read_to_string(config.data_dir.join(generate::CONFIG_KEY_FILE)) {
            Ok(text) => text,
            Err(_) => return Ok(None),
        },
    };
    envelope::ConfigKey::parse(&text).map(Some)
}

fn source(ferry: &Ferry) -> Result<&Arc<dyn LegacySource>, ImportError> {
    ferry.legacy.as_ref().ok_or(ImportError::NotConfigured)
}

/// The account's `migration_status`, asking the legacy system once (and remembering the answer) while it has
/// none. An outage is an error, never `not-needed`.
pub async fn migration_status(ferry: &Ferry, account: &Account) -> Result<String, ImportError> {
    if let Some(status) = &account.migration_status {
        return Ok(status.clone());
    }
    // Nothing to ask about: reported, not stored (a legacy source configured later may still know it).
    let (Some(legacy_ref), Some(source)) = (&account.legacy_ref, &ferry.legacy) else {
        return Ok(NOT_NEEDED.into());
    };
    let known = source.account_exists(legacy_ref).await?;
    let status = if known { NOT_STARTED } else { NOT_NEEDED };
    ferry
        .store
        .set_migration_status_once(account.id, status)
        .await?;
    // A concurrent request may have answered first (and an import started since): the stored one wins.
    Ok(ferry
        .store
        .get_account(account.id)
        .await?
        .migration_status
        .unwrap_or_else(|| status.into()))
}

/// `POST /migrate`: queues the import (or resumes the failed one, as "Stages and what happens on failure" in the README says) and returns at once. While an
/// import is queued or running, returns that one (`false`). `force` deletes what earlier imports created first.
pub async fn start(
    ferry: &Ferry,
    account_id: i64,
    user_id: Option<i64>,
    force: bool,
) -> Result<(AccountImport, bool), ImportError> {
    source(ferry)?;
    let account = ferry.store.get_account(account_id).await?;
    if account.legacy_ref.is_none() {
        return Err(ImportError::NoLegacyRef);
    }
    if force {
        if !ferry.config.legacy.allow_force_remigration {
            return Err(ImportError::ForceDisabled);
        }
        let deleted = ferry
            .store
            .delete_imported_rows(account_id)
            .await
            .map_err(|e| match e {
                StoreError::Conflict { .. } => ImportError::Running,
                other => other.into(),
            })?;
        let started = queue(
            ferry,
            account_id,
            user_id,
            ImportStart::Fresh { forced: true },
        )
        .await?;
        ferry
            .store
            .record_audit(&NewAuditEvent {
                account_id: Some(account_id),
                user_id,
                action: "account_import.forced".into(),
                subject: format!("account_import:{}", started.0.id),
                details: json!({ "deleted": deleted }),
            })
            .await?;
        return Ok(started);
    }
    let status = migration_status(ferry, &account).await?;
    let latest = ferry.store.latest_account_import(account_id).await?;
    let start = match (status.as_str(), &latest) {
        (NOT_NEEDED, _) => return Err(ImportError::NotNeeded),
        ("completed", Some(done)) if done.status == ImportStatus::Completed => {
            return Ok((done.clone(), false));
        }
        ("recent-messages-failure" | "messages-failure", Some(failed))
            if failed.status == ImportStatus::Failed =>
        {
            ImportStart::Resume { id: failed.id }
        }
        // not-started, channel-failure (from scratch), or a status whose import is still active.
        _ => ImportStart::Fresh { forced: false },
    };
    queue(ferry, account_id, user_id, start).await
}

async fn queue(
    ferry: &Ferry,
    account_id: i64,
    user_id: Option<i64>,
    start: ImportStart,
) -> Result<(AccountImport, bool), ImportError> {
    match ferry
        .store
        .start_account_import(account_id, user_id, start)
        .await
    {
        // Two first calls at once (PostgreSQL): the unique index let one in; the other returns it. Two
        // resumes at once: the first requeued it, the second finds it no longer failed.
        Err(StoreError::Conflict { .. } | StoreError::NotFound(_)) => {
            let active = ferry.store.latest_account_import(account_id).await?;
            active
                .map(|a| (a, false))
                .ok_or(ImportError::Store(StoreError::NotFound("account import")))
        }
        other => Ok(other?),
    }
}

/// Resumes failed history imports (`messages-failure`): one account, or all of them.
pub async fn repair(
    ferry: &Ferry,
    account_id: Option<i64>,
) -> Result<Vec<AccountImport>, ImportError> {
    source(ferry)?;
    let mut resumed = Vec::new();
    for failure in ferry.store.import_failures().await? {
        if account_id.is_some_and(|id| id != failure.account_id)
            || failure.status != ImportStatus::Failed
        {
            continue;
        }
        let (import, _) = queue(
            ferry,
            failure.account_id,
            None,
            ImportStart::Resume {
                id: failure.import_id,
            },
        )
        .await?;
        resumed.push(import);
    }
    Ok(resumed)
}

/// The periodic repair job: resumes the failed history imports whose backoff has passed.
pub async fn run_due_repairs(ferry: &Ferry) -> Result<usize, ImportError> {
    if ferry.legacy.is_none() {
        return Ok(0);
    }
    let due = ferry.store.due_import_repairs(chrono::Utc::now()).await?;
    for import in &due {
        tracing::info!(
            account = import.account_id,
            import = import.id,
            attempt = import.repair_attempts + 1,
            "repairing a failed history import"
        );
        if let Err(e) = queue(
            ferry,
            import.account_id,
            None,
            ImportStart::Resume { id: import.id },
        )
        .await
        {
            tracing::error!(error = %e, import = import.id, "could not queue the repair");
        }
    }
    Ok(due.len())
}

/// Delay before the next automatic repair: `base` × 2^attempts, at most a day.
pub fn repair_backoff(base_seconds: u64, attempts: i64) -> chrono::Duration {
    let factor = 1u64 << attempts.clamp(0, 20);
    chrono::Duration::seconds(base_seconds.saturating_mul(factor).min(86_400) as i64)
}

pub async fn failures(ferry: &Ferry) -> Result<Vec<ImportFailure>, ImportError> {
    Ok(ferry.store.import_failures().await?)
}

pub async fn retry_attachments(ferry: &Ferry, account_id: Option<i64>) -> Result<u64, ImportError> {
    Ok(ferry.store.retry_import_attachments(account_id).await?)
}

/// A legacy media file for the download job.
pub async fn fetch_media(
    ferry: &Ferry,
    url: &str,
) -> Result<(Vec<u8>, Option<String>), MediaError> {
    let source = ferry
        .legacy
        .as_ref()
        .ok_or_else(|| MediaError::Invalid("no legacy system is configured".into()))?;
    source.media(url).await
}

/// `GET /migration-status` (README: "What the client app does").
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ImportStatusView {
    /// `not-started`, `not-needed`, `migrating`, `channels-migrated`, `recent-messages-migrated`, `completed`,
    /// `channel-failure`, `recent-messages-failure`; `messages-failure` only with `?detail=true` (clients see
    /// `completed`).
    pub status: String,
    /// `channels`, `recent`, `all` or `done`; null before the first import.
    pub stage: Option<String>,
    pub counts: ImportCounts,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// `?detail=true` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachments_pending: Option<i64>,
    /// `?detail=true` only: the latest import record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import: Option<AccountImport>,
}

#[derive(Debug, Clone, Copy, serde::Serialize, utoipa::ToSchema)]
pub struct ImportCounts {
    pub channels: i64,
    pub threads: i64,
    pub messages: i64,
    pub attachments: i64,
    pub attachments_failed: i64,
}

/// `GET /migration-status`: `{status, stage, counts, updated_at}`. The client sees `messages-failure` as
/// `completed` (its history keeps arriving through repairs); `detail` shows the truth and the import itself.
pub async fn status(
    ferry: &Ferry,
    account: &Account,
    detail: bool,
) -> Result<ImportStatusView, ImportError> {
    let status = migration_status(ferry, account).await?;
    let import = ferry.store.latest_account_import(account.id).await?;
    let files = ferry.store.import_attachment_counts(account.id).await?;
    let hidden_failure = status == "messages-failure" && !detail;
    let client_status = if hidden_failure {
        "completed".to_owned()
    } else {
        status.clone()
    };
    let stage = if hidden_failure {
        Some("done".to_owned())
    } else {
        import.as_ref().map(|i| i.stage.to_string())
    };
    Ok(ImportStatusView {
        status: client_status,
        stage,
        counts: ImportCounts {
            channels: import.as_ref().map_or(0, |i| i.channels_count),
            threads: import.as_ref().map_or(0, |i| i.threads_count),
            messages: import.as_ref().map_or(0, |i| i.messages_count),
            attachments: files.total,
            attachments_failed: files.failed,
        },
        updated_at: import
            .as_ref()
            .map_or(account.updated_at, |i| i.updated_at.max(account.updated_at)),
        attachments_pending: detail.then_some(files.pending),
        import: if detail { import } else { None },
    })
}

/// [`status`] as JSON, for the CLI.
pub async fn status_view(
    ferry: &Ferry,
    account: &Account,
    detail: bool,
) -> Result<Value, ImportError> {
    let mut view = json!(status(ferry, account, detail).await?);
    if detail && view.get("import").is_none() {
        view["import"] = Value::Null;
    }
    Ok(view)
}
