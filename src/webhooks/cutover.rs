//! The cut-over from legacy instance routing (README: "Cutting over from the legacy layout"): `check` reports where an installation stands and
//! `migrate` turns every usable legacy row into exactly one integration. The database's unique keys (provider +
//! instance name or phone number id) make `migrate` idempotent and safe to run twice at once: a row another run
//! created first is reported, never duplicated.

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Value, json};

use super::integrations::{self, CreateIntegration, Provider, ProviderSecrets};
use super::outbound::{Call, Credential, Outbound, OutboundError};
use crate::domain::ChannelType;
use crate::services::{CreateInbox, Ferry, ServiceError};
use crate::store::{
    Inbox, Integration, IntegrationStatus, LegacyConfigRow, LegacyInstanceRow, StoreError,
};

type Result<T> = std::result::Result<T, ServiceError>;

/// An integration with the webhook URL to point its provider at (`tokens`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenRow {
    pub id: i64,
    pub account_id: i64,
    pub inbox_id: Option<i64>,
    pub provider: String,
    /// Its instance name or phone number id.
    pub key: Option<String>,
    pub status: IntegrationStatus,
    pub enabled: bool,
    /// `legacy`, `token` or `failed`.
    pub cutover_state: String,
    /// Masked unless revealed; none without a token.
    pub webhook_url: Option<String>,
    /// The token is in the clear (audited): asked for, and the caller administers the account.
    pub revealed: bool,
}

/// What a cut-over did (`cutover`): the instances re-pointed and skipped, and where it stopped.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CutoverReport {
    /// True when every instance named was re-pointed (or skipped with a reason).
    pub ok: bool,
    pub dry_run: bool,
    pub include_disabled: bool,
    /// Per instance: its webhook before and after, as Evolution read them back.
    #[schema(value_type = Vec<Object>)]
    pub done: Vec<Value>,
    /// Per instance: why it was left as it was.
    #[schema(value_type = Vec<Object>)]
    pub skipped: Vec<Value>,
    /// The instance where it stopped: why, and whether its previous webhook was restored.
    #[schema(value_type = Option<Object>)]
    pub failed: Option<Value>,
}

/// What a test delivery to an integration's own webhook URL showed (`ferry integrations test`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TestReport {
    pub integration_id: i64,
    pub provider: String,
    /// The webhook URL, its token masked (none for an integration without a token).
    pub url: Option<String>,
    /// Answered 2xx.
    pub ok: bool,
    /// The HTTP status, none when the request failed.
    pub status: Option<u16>,
    /// The answer's body, or why the request failed.
    pub answer: String,
    pub latency_ms: f64,
    /// Whether the route came from the cache (the server's lookup counter did not move); none without metrics.
    pub cache_hit: Option<bool>,
    /// The test message and its conversation and contact, removed afterwards.
    pub messages_removed: u64,
}

/// Where an installation stands (`check`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CheckReport {
    pub integrations_without_usable_token: Vec<UnusableIntegration>,
    pub evolution_instances: TableCheck,
    pub whatsapp_business_configs: TableCheck,
    /// Always empty: (provider, instance name / phone number id) is unique in `integrations`.
    pub duplicate_integrations: Vec<RowKey>,
    pub legacy_route: LegacyRouteUse,
}

/// An integration nothing routes to: it has no token (an older tool made it) or is disabled.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UnusableIntegration {
    pub integration_id: i64,
    pub provider: String,
    /// Its instance name or phone number id.
    pub key: Option<String>,
    /// `no token` or `disabled`.
    pub reason: &'static str,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LegacyRouteUse {
    pub enabled: bool,
    pub quiet_days: i64,
    /// The instances that used it within `quiet_days`.
    pub hits: Vec<crate::store::LegacyHits>,
}

/// Whether the legacy rows and the integrations agree (`verify`): key sets and mapped fields, never totals.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VerifyReport {
    /// True only when nothing is missing, extra or different.
    pub agree: bool,
    pub legacy_rows: usize,
    pub migrated_rows: usize,
    /// Legacy rows without an integration.
    pub missing: Vec<RowKey>,
    /// Integrations from the legacy layout without a legacy row.
    pub extra: Vec<RowKey>,
    pub different: Vec<DifferentRow>,
}

/// A legacy row's identity: its provider and instance name or phone number id.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RowKey {
    pub provider: String,
    pub key: String,
}

/// A row in both whose mapped fields differ.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DifferentRow {
    pub provider: String,
    pub key: String,
    pub integration_id: i64,
    /// Per field (`status`, `account_id`, `api_url`): `{"legacy": …, "integration": …}`.
    #[schema(value_type = Object)]
    pub fields: serde_json::Map<String, Value>,
}

/// What `cleanup` did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CleanupReport {
    /// The JSON Lines backup of every legacy table, in the data directory (mode 0600).
    pub backup: String,
    pub rows_backed_up: usize,
    /// Legacy traffic within the quiet window was overridden with `force`.
    pub forced: bool,
    /// `off`: it answers 410 Gone.
    pub legacy_route: &'static str,
    /// `dropped`.
    pub legacy_tables: &'static str,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TableCheck {
    pub total: usize,
    /// Rows in error (not migrated by design).
    pub error: usize,
    pub migrated: usize,
    pub not_migrated: Vec<String>,
    /// Rows whose organization maps to no account: they cannot be migrated.
    pub unmapped: Vec<String>,
}

/// Where the installation stands: per legacy table, and the legacy route's recent traffic.
pub async fn check(ferry: &Ferry, quiet_days: i64) -> Result<CheckReport> {
    legacy_tables(ferry).await?;
    let instances = ferry.store.legacy_instances().await?;
    let configs = ferry.store.legacy_business_configs().await?;
    let mut evolution = TableCheck::default_for(instances.len());
    for row in &instances {
        if row.status == "error" {
            evolution.error += 1;
        } else if row.account_id.is_none() {
            evolution.unmapped.push(row.instance_name.clone());
        } else if ferry
            .store
            .integration_by_key("evolution", &row.instance_name)
            .await?
            .is_some()
        {
            evolution.migrated += 1;
        } else {
            evolution.not_migrated.push(row.instance_name.clone());
        }
    }
    let mut business = TableCheck::default_for(configs.len());
    for row in &configs {
        if row.account_id.is_none() {
            business.unmapped.push(row.phone_number_id.clone());
        } else if ferry
            .store
            .integration_by_key(&row.provider, &row.phone_number_id)
            .await?
            .is_some()
        {
            business.migrated += 1;
        } else {
            business.not_migrated.push(row.phone_number_id.clone());
        }
    }
    let since = (chrono::Utc::now() - chrono::Duration::days(quiet_days.max(0))).date_naive();
    let hits = ferry.store.legacy_hits_since(since).await?;
    // No token (an older tool made them) or disabled: nothing routes to them.
    let unusable: Vec<UnusableIntegration> = ferry
        .store
        .all_integrations()
        .await?
        .into_iter()
        .filter(|i| i.token_ciphertext.is_none() || !i.enabled)
        .map(|i| UnusableIntegration {
            integration_id: i.id,
            reason: if i.token_ciphertext.is_none() {
                "no token"
            } else {
                "disabled"
            },
            key: i.instance_name.or(i.phone_number_id),
            provider: i.provider,
        })
        .collect();
    Ok(CheckReport {
        integrations_without_usable_token: unusable,
        evolution_instances: evolution,
        whatsapp_business_configs: business,
        duplicate_integrations: Vec::new(),
        legacy_route: LegacyRouteUse {
            enabled: ferry.store.legacy_route_enabled().await?,
            quiet_days,
            hits,
        },
    })
}

impl TableCheck {
    fn default_for(total: usize) -> Self {
        Self {
            total,
            error: 0,
            migrated: 0,
            not_migrated: Vec::new(),
            unmapped: Vec::new(),
        }
    }
}

/// What `migrate` did (or would do), one entry per legacy row in the list that fits.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct MigrateReport {
    pub dry_run: bool,
    pub migrated: Vec<MigrateItem>,
    pub updated: Vec<MigrateItem>,
    pub unchanged: Vec<MigrateItem>,
    pub skipped: Vec<MigrateItem>,
    pub errors: Vec<MigrateItem>,
}

/// One legacy row (or a token-less integration) in a `migrate` report.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MigrateItem {
    pub provider: String,
    /// Its instance name or phone number id.
    pub key: Option<String>,
    pub account_id: Option<i64>,
    pub integration_id: Option<i64>,
    pub inbox_id: Option<i64>,
    pub status: IntegrationStatus,
    /// Why it was skipped, unchanged or in error.
    pub reason: Option<String>,
}

/// One legacy row as `migrate` sees it.
struct Legacy {
    provider: &'static str,
    key: String,
    account_id: Option<i64>,
    organization_id: String,
    status: String,
    phone_number: Option<String>,
    api_url: Option<String>,
    secrets: ProviderSecrets,
}

impl Legacy {
    fn of_instance(row: LegacyInstanceRow) -> Self {
        Self {
            provider: "evolution",
            key: row.instance_name,
            account_id: row.account_id,
            organization_id: row.organization_id,
            status: row.status,
            phone_number: row.phone_number,
            api_url: row.api_url,
            secrets: ProviderSecrets {
                api_key: row.api_key,
                ..Default::default()
            },
        }
    }

    fn of_config(row: LegacyConfigRow) -> Self {
        let dialog360 = row.provider == "dialog360";
        Self {
            provider: if dialog360 {
                "dialog360"
            } else {
                "whatsapp_cloud"
            },
            key: row.phone_number_id,
            account_id: row.account_id,
            organization_id: row.organization_id,
            status: row.status,
            phone_number: row.phone_number,
            api_url: None,
            // 360dialog's access token is its D360-API-KEY.
            secrets: ProviderSecrets {
                app_secret: row.app_secret,
                verify_token: row.verify_token,
                api_key: row.access_token.clone().filter(|_| dialog360),
                access_token: row.access_token.filter(|_| !dialog360),
                ..Default::default()
            },
        }
    }

    fn table(&self) -> &'static str {
        if self.provider == "evolution" {
            "evolution_instances"
        } else {
            "whatsapp_business_configs"
        }
    }

    /// `open`→`active`, `connecting`→`pending`, `close`→`disconnected`.
    fn mapped_status(&self) -> IntegrationStatus {
        match self.status.as_str() {
            "open" | "active" => IntegrationStatus::Active,
            "connecting" | "pending" => IntegrationStatus::Pending,
            "close" | "closed" | "disconnected" => IntegrationStatus::Disconnected,
            _ => IntegrationStatus::Error,
        }
    }

    fn config(&self, current: Option<&Value>) -> Value {
        let mut config = current.cloned().unwrap_or_else(|| json!({}));
        // Marks the integration as the legacy row's: `verify` compares exactly these.
        config["legacy_origin"] = json!(self.table());
        if let Some(url) = &self.api_url {
            config["api_url"] = json!(url.trim_end_matches('/'));
        }
        config
    }

    fn item(&self, integration: Option<&Integration>, reason: Option<String>) -> MigrateItem {
        MigrateItem {
            provider: self.provider.to_owned(),
            key: Some(self.key.clone()),
            account_id: self.account_id,
            integration_id: integration.map(|i| i.id),
            inbox_id: integration.and_then(|i| i.inbox_id),
            status: self.mapped_status(),
            reason,
        }
    }
}

/// Every non-error legacy row becomes exactly one integration (see the module). A dry run reports the same plan
/// and writes nothing.
pub async fn migrate(ferry: &Ferry, dry_run: bool, by: Option<i64>) -> Result<MigrateReport> {
    legacy_tables(ferry).await?;
    let mut report = MigrateReport {
        dry_run,
        ..Default::default()
    };
    let instances = ferry.store.legacy_instances().await?;
    let configs = ferry.store.legacy_business_configs().await?;
    let rows = instances
        .into_iter()
        .map(|row| {
            let error = (row.status == "error").then(|| "the instance is in error".to_owned());
            (Legacy::of_instance(row), error)
        })
        .chain(
            configs
                .into_iter()
                .map(|row| (Legacy::of_config(row), None)),
        );
    for (legacy, error) in rows {
        if let Some(reason) = error {
            report.skipped.push(legacy.item(None, Some(reason)));
            continue;
        }
        if legacy.account_id.is_none() {
            let reason = format!("organization {} maps to no account", legacy.organization_id);
            report.skipped.push(legacy.item(None, Some(reason)));
            continue;
        }
        match migrate_one(ferry, &legacy, dry_run).await {
            Ok((RowOutcome::Migrated, i)) => report.migrated.push(legacy.item(i.as_ref(), None)),
            Ok((RowOutcome::Updated, i)) => report.updated.push(legacy.item(i.as_ref(), None)),
            Ok((RowOutcome::Unchanged(reason), i)) => {
                report.unchanged.push(legacy.item(i.as_ref(), reason))
            }
            Ok((RowOutcome::Skipped(reason), i)) => {
                report.skipped.push(legacy.item(i.as_ref(), Some(reason)))
            }
            Err(e) => report.errors.push(legacy.item(None, Some(e.to_string()))),
        }
    }
    // Integrations without a token (made by hand or by an older tool) cannot be routed: they get one.
    for i in ferry.store.all_integrations().await? {
        if i.token_ciphertext.is_some() {
            continue;
        }
        let item = MigrateItem {
            key: i.instance_name.clone().or(i.phone_number_id.clone()),
            account_id: Some(i.account_id),
            integration_id: Some(i.id),
            inbox_id: i.inbox_id,
            status: i.status,
            reason: Some("had no token: one was issued".into()),
            provider: i.provider.clone(),
        };
        if !dry_run {
            integrations::rotate(ferry, i.account_id, i.id, chrono::Duration::zero(), None).await?;
        }
        report.updated.push(item);
    }
    if !dry_run {
        ferry
            .audit(
                None,
                by,
                "integrations.migrate",
                "integrations".into(),
                json!({"migrated": report.migrated.len(), "updated": report.updated.len(),
                       "skipped": report.skipped.len(), "errors": report.errors.len()}),
            )
            .await;
    }
    Ok(report)
}

enum RowOutcome {
    Migrated,
    Updated,
    Unchanged(Option<String>),
    Skipped(String),
}

async fn migrate_one(
    ferry: &Ferry,
    legacy: &Legacy,
    dry_run: bool,
) -> Result<(RowOutcome, Option<Integration>)> {
    let account_id = legacy.account_id.expect("checked by the caller");
    if let Some(existing) = ferry
        .store
        .integration_by_key(legacy.provider, &legacy.key)
        .await?
    {
        let config = legacy.config(Some(&existing.config.0));
        let differs = existing.status != legacy.mapped_status() || existing.config.0 != config;
        if !differs {
            return Ok((RowOutcome::Unchanged(None), Some(existing)));
        }
        if !dry_run {
            ferry
                .store
                .set_integration_from_legacy(existing.id, legacy.mapped_status(), &config)
                .await?;
        }
        return Ok((RowOutcome::Updated, Some(existing)));
    }
    let channel = Provider::parse(legacy.provider)?.channel();
    let found = inbox_for(ferry, account_id, channel, legacy.phone_number.as_deref()).await?;
    let created_inbox = found.is_none();
    let inbox = match found {
        Some(inbox) => inbox.id,
        None if dry_run => {
            return Ok((RowOutcome::Migrated, None));
        }
        None => {
            ferry
                .create_inbox(
                    CreateInbox {
                        account_id,
                        name: format!("WhatsApp {} ({})", legacy.key, channel.label()),
                        channel_type: channel,
                        phone_number: legacy.phone_number.clone(),
                        provider_config: None,
                        lock_to_single_conversation: false,
                    },
                    None,
                )
                .await?
                .id
        }
    };
    if dry_run {
        return Ok((RowOutcome::Migrated, None));
    }
    let created = integrations::create(
        ferry,
        CreateIntegration {
            account_id,
            inbox_id: inbox,
            provider: Provider::parse(legacy.provider)?,
            instance_name: (legacy.provider == "evolution").then(|| legacy.key.clone()),
            phone_number_id: (legacy.provider != "evolution").then(|| legacy.key.clone()),
            api_url: legacy.api_url.clone(),
            secrets: legacy.secrets.clone(),
        },
        None,
    )
    .await;
    let issued = match created {
        Ok(issued) => issued,
        // Another run created it between our lookup and our insert: the unique key kept it single, and the
        // inbox this run made for it goes again.
        Err(ServiceError::Conflict(_)) => {
            if created_inbox {
                ferry.store.delete_unused_inbox(account_id, inbox).await?;
            }
            let existing = ferry
                .store
                .integration_by_key(legacy.provider, &legacy.key)
                .await?;
            return Ok((
                RowOutcome::Unchanged(Some("migrated by a concurrent run".into())),
                existing,
            ));
        }
        Err(ServiceError::Validation { field, message }) => {
            return Ok((RowOutcome::Skipped(format!("{field}: {message}")), None));
        }
        Err(e) => return Err(e),
    };
    let config = legacy.config(Some(&issued.integration.config.0));
    ferry
        .store
        .set_integration_from_legacy(issued.integration.id, legacy.mapped_status(), &config)
        .await?;
    // The provider still posts to the legacy URL until `cutover` re-points it.
    ferry
        .store
        .set_integration_cutover_state(issued.integration.id, "legacy")
        .await?;
    let integration = ferry
        .store
        .get_integration(account_id, issued.integration.id)
        .await?;
    Ok((RowOutcome::Migrated, Some(integration)))
}

/// The account's inbox of `channel` with this phone number; without a number, its only inbox of that channel.
/// A legacy row with another number gets an inbox of its own.
async fn inbox_for(
    ferry: &Ferry,
    account_id: i64,
    channel: ChannelType,
    phone: Option<&str>,
) -> std::result::Result<Option<Inbox>, StoreError> {
    let digits = |p: &str| p.chars().filter(char::is_ascii_digit).collect::<String>();
    let candidates: Vec<Inbox> = ferry
        .store
        .list_inboxes(account_id)
        .await?
        .into_iter()
        .filter(|i| i.channel == channel)
        .collect();
    Ok(match phone.map(digits).filter(|p| !p.is_empty()) {
        Some(phone) => candidates.into_iter().find(|i| {
            i.phone_number
                .as_deref()
                .is_some_and(|p| digits(p) == phone)
        }),
        None if candidates.len() == 1 => candidates.into_iter().next(),
        None => None,
    })
}

/// Compares the legacy key set with the migrated one, and the mapped fields of the rows in both — never
/// totals. `agree` is true only when nothing is missing, extra or different.
pub async fn verify(ferry: &Ferry) -> Result<VerifyReport> {
    use std::collections::BTreeMap;
    legacy_tables(ferry).await?;
    let mut legacy: BTreeMap<(String, String), Legacy> = BTreeMap::new();
    for row in ferry.store.legacy_instances().await? {
        if row.status != "error" && row.account_id.is_some() {
            let l = Legacy::of_instance(row);
            legacy.insert((l.provider.to_owned(), l.key.clone()), l);
        }
    }
    for row in ferry.store.legacy_business_configs().await? {
        if row.account_id.is_some() {
            let l = Legacy::of_config(row);
            legacy.insert((l.provider.to_owned(), l.key.clone()), l);
        }
    }
    let mut migrated: BTreeMap<(String, String), Integration> = BTreeMap::new();
    for i in ferry.store.all_integrations().await? {
        let key = if i.provider == "evolution" {
            i.instance_name.clone()
        } else {
            i.phone_number_id.clone()
        };
        if i.config.0.get("legacy_origin").is_some()
            && let Some(key) = key
        {
            migrated.insert((i.provider.clone(), key), i);
        }
    }
    let name = |(provider, key): &(String, String)| RowKey {
        provider: provider.clone(),
        key: key.clone(),
    };
    let missing: Vec<RowKey> = legacy
        .keys()
        .filter(|k| !migrated.contains_key(*k))
        .map(name)
        .collect();
    let extra: Vec<RowKey> = migrated
        .keys()
        .filter(|k| !legacy.contains_key(*k))
        .map(name)
        .collect();
    let mut different = Vec::new();
    for (key, l) in &legacy {
        let Some(i) = migrated.get(key) else { continue };
        let mut fields = serde_json::Map::new();
        if i.status != l.mapped_status() {
            fields.insert(
                "status".into(),
                json!({"legacy": l.mapped_status(), "integration": i.status}),
            );
        }
        if Some(i.account_id) != l.account_id {
            fields.insert(
                "account_id".into(),
                json!({"legacy": l.account_id, "integration": i.account_id}),
            );
        }
        let url = l.api_url.as_deref().map(|u| u.trim_end_matches('/'));
        if url.is_some() && i.config.0.get("api_url").and_then(Value::as_str) != url {
            fields.insert(
                "api_url".into(),
                json!({"legacy": url, "integration": i.config.0.get("api_url")}),
            );
        }
        if !fields.is_empty() {
            different.push(DifferentRow {
                provider: key.0.clone(),
                key: key.1.clone(),
                integration_id: i.id,
                fields,
            });
        }
    }
    Ok(VerifyReport {
        agree: missing.is_empty() && extra.is_empty() && different.is_empty(),
        legacy_rows: legacy.len(),
        migrated_rows: migrated.len(),
        missing,
        extra,
        different,
    })
}

async fn legacy_tables(ferry: &Ferry) -> Result<()> {
    if ferry.store.legacy_tables_exist().await? {
        Ok(())
    } else {
        Err(ServiceError::Conflict(
            "the legacy tables were removed by `ferry integrations cleanup` (its backup is in the data directory)"
                .into(),
        ))
    }
}

/// Retires the legacy layout: refused while any instance used the legacy route within the quiet window (unless
/// `force`); otherwise a JSON Lines backup of every legacy table (mode 0600, in the data directory), then the
/// legacy route turned off (it answers 410 Gone), then — irreversible, so last — the legacy tables dropped.
pub async fn cleanup(
    ferry: &Ferry,
    quiet_days: i64,
    force: bool,
    by: Option<i64>,
) -> Result<CleanupReport> {
    legacy_tables(ferry).await?;
    let since = (chrono::Utc::now() - chrono::Duration::days(quiet_days.max(0))).date_naive();
    let hits = ferry.store.legacy_hits_since(since).await?;
    if !hits.is_empty() && !force {
        let busy: Vec<String> = hits
            .iter()
            .map(|h| {
                format!(
                    "{} ({} hits, last {})",
                    h.instance_name,
                    h.hits,
                    h.last_hit_at.format("%Y-%m-%d %H:%M UTC")
                )
            })
            .collect();
        return Err(ServiceError::Conflict(format!(
            "the legacy route was used within the last {quiet_days} days by {}; cut them over and wait, or force the \
             clean-up (the page's \"even if used recently\" box, or `--force` in the CLI)",
            busy.join(", ")
        )));
    }
    let rows = ferry.store.legacy_backup_rows().await?;
    let path = ferry.config.data_dir.join(format!(
        "legacy-backup-{}.jsonl",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
    ));
    write_backup(&path, &rows).map_err(|e| {
        ServiceError::Conflict(format!("cannot write the backup {}: {e}", path.display()))
    })?;
    tracing::warn!(backup = %path.display(), rows = rows.len(), "legacy tables backed up");
    let subject = "legacy".to_owned();
    ferry
        .audit(None, by, "integrations.cleanup.backup", subject.clone(),
               json!({"path": path.display().to_string(), "rows": rows.len(), "forced": force && !hits.is_empty()}))
        .await;
    ferry.store.set_legacy_route_enabled(false).await?;
    tracing::warn!("legacy webhook route turned off");
    ferry
        .audit(
            None,
            by,
            "integrations.cleanup.route_off",
            subject.clone(),
            json!({}),
        )
        .await;
    ferry.store.drop_legacy_tables().await?;
    tracing::warn!("legacy tables dropped");
    ferry
        .audit(
            None,
            by,
            "integrations.cleanup.tables_dropped",
            subject,
            json!({}),
        )
        .await;
    Ok(CleanupReport {
        backup: path.display().to_string(),
        rows_backed_up: rows.len(),
        forced: force && !hits.is_empty(),
        legacy_route: "off",
        legacy_tables: "dropped",
    })
}

/// One line per row, `{"table": …, "row": …}`, written to a new file only the owner can read (it holds the
/// legacy secrets), synced before anything is dropped.
fn write_backup(path: &std::path::Path, rows: &[(&str, Value)]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = std::io::BufWriter::new(options.open(path)?);
    for (table, row) in rows {
        serde_json::to_writer(&mut file, &json!({"table": table, "row": row}))?;
        file.write_all(b"\n")?;
    }
    let file = file.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()
}

/// The Evolution events ferry handles, and so exactly the ones the cut-over subscribes, whatever the instance
/// had: messages, their status updates, deletions, edits and revokes (`MESSAGES_EDITED`, which no
/// `MESSAGES_UPSERT` accompanies) and what the business sends from elsewhere.
pub const EVOLUTION_EVENTS: [&str; 5] = [
    "MESSAGES_UPSERT",
    "MESSAGES_UPDATE",
    "MESSAGES_DELETE",
    "MESSAGES_EDITED",
    "SEND_MESSAGE",
];

/// Which Evolution integrations `cutover` re-points.
pub enum CutoverScope {
    Instance(String),
    All,
}

/// How `cutover` runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct CutoverOptions {
    /// Read every instance's webhook and report the plan; change nothing.
    pub dry_run: bool,
    /// Also re-point instances whose webhook is disabled or unset, which enables it. Without it they are
    /// reported under `skipped` and left as they are.
    pub include_disabled: bool,
    /// The user who asked (audited); None from the CLI, the operator at the machine.
    pub by: Option<i64>,
}

/// Re-points Evolution instances at their token URLs through the Evolution API, one at a time: read the current
/// webhook (`GET /webhook/find/{instance}`), set the token URL with ferry's own events and no base64 media
/// (`POST /webhook/set/{instance}`, the nested v2 body, header `apikey`), read it back. An instance whose
/// webhook is disabled (or unset) is skipped and reported unless `include_disabled`. On any failure the previous
/// webhook is written back exactly (enabled, URL, events, by-events, base64, headers), read back and compared,
/// and the run stops, so at most one instance is ever in doubt. `ok` is false when it stopped.
pub async fn cutover(
    ferry: &Ferry,
    scope: CutoverScope,
    options: CutoverOptions,
) -> Result<CutoverReport> {
    let mut targets: Vec<Integration> = ferry
        .store
        .all_integrations()
        .await?
        .into_iter()
        .filter(|i| i.provider == "evolution" && i.enabled)
        .collect();
    if let CutoverScope::Instance(name) = &scope {
        targets.retain(|i| i.instance_name.as_deref() == Some(name.as_str()));
        if targets.is_empty() {
            return Err(ServiceError::NotFound(
                "enabled Evolution integration of that instance",
            ));
        }
    }
    let report = |done: Vec<Value>, skipped: Vec<Value>, failed: Option<Value>| CutoverReport {
        ok: failed.is_none(),
        dry_run: options.dry_run,
        include_disabled: options.include_disabled,
        done,
        skipped,
        failed,
    };
    let mut done = Vec::new();
    let mut skipped = Vec::new();
    for integration in targets {
        let instance = integration.instance_name.clone().unwrap_or_default();
        match cutover_one(ferry, &integration, options).await {
            Ok(Step::Done(step)) => done.push(step),
            Ok(Step::Skipped(step)) => {
                tracing::warn!(instance, reason = %step["reason"], "cutover skipped the instance");
                skipped.push(step);
            }
            Err(failure) => {
                if !options.dry_run {
                    ferry
                        .store
                        .set_integration_cutover_state(integration.id, "failed")
                        .await?;
                }
                tracing::error!(instance, reason = %failure["reason"],
                                restored = %failure["restored"], "cutover stopped");
                return Ok(report(done, skipped, Some(failure)));
            }
        }
    }
    Ok(report(done, skipped, None))
}

/// The fields of Evolution's `Webhook` row that the cut-over may change, so the ones a restore writes back and
/// compares: (name in the row, name in the `set` body).
const ROW_FIELDS: [(&str, &str); 6] = [
    ("url", "url"),
    ("enabled", "enabled"),
    ("events", "events"),
    ("webhookByEvents", "byEvents"),
    ("webhookBase64", "base64"),
    ("headers", "headers"),
];

/// An instance's webhook row as `GET /webhook/find/{instance}` answered it, on the fields of `ROW_FIELDS` (a
/// missing one is null).
#[derive(Debug, Clone, PartialEq)]
struct WebhookRow(serde_json::Map<String, Value>);

impl WebhookRow {
    /// `None` when the instance has no webhook (find answered `null`).
    fn of(found: Value) -> std::result::Result<Option<Self>, String> {
        match found {
            Value::Null => Ok(None),
            Value::Object(mut row) => Ok(Some(Self(
                ROW_FIELDS
                    .iter()
                    .map(|(field, _)| {
                        let value = row.remove(*field).unwrap_or(Value::Null);
                        ((*field).to_owned(), value)
                    })
                    .collect(),
            ))),
            other => Err(format!(
                "webhook/find answered neither a webhook nor null: {other}"
            )),
        }
    }

    fn get(&self, field: &str) -> &Value {
        self.0.get(field).unwrap_or(&Value::Null)
    }

    fn enabled(&self) -> bool {
        self.get("enabled") == &Value::Bool(true)
    }

    fn by_events(&self) -> bool {
        self.get("webhookByEvents") == &Value::Bool(true)
    }

    /// The `set` body that writes this row back: every field it has, in v2's nested form. Without headers none
    /// are sent, and Evolution leaves the stored ones alone (the cut-over's own `set` sends none either).
    fn restore_body(&self) -> Value {
        let webhook: serde_json::Map<String, Value> = ROW_FIELDS
            .iter()
            .filter(|(field, _)| !self.get(field).is_null())
            .map(|(field, name)| ((*name).to_owned(), self.get(field).clone()))
            .collect();
        json!({ "webhook": webhook })
    }

    /// The row for a report: the headers' names only, since their values may be secrets.
    fn summary(&self) -> Value {
        let mut row = self.0.clone();
        row.insert("headers".into(), header_names(self.get("headers")));
        Value::Object(row)
    }
}

fn header_names(headers: &Value) -> Value {
    match headers {
        Value::Object(h) => json!(h.keys().collect::<Vec<_>>()),
        other => other.clone(),
    }
}

fn summary(row: Option<&WebhookRow>) -> Value {
    row.map_or(Value::Null, WebhookRow::summary)
}

/// Where the read-back `now` differs from `expected` on the named fields: `{field: {"expected", "read_back"}}`
/// (headers by name only); empty when they agree.
fn differences(
    expected: Option<&WebhookRow>,
    now: Option<&WebhookRow>,
    fields: &[&str],
) -> serde_json::Map<String, Value> {
    let mut differs = serde_json::Map::new();
    match (expected, now) {
        (None, None) => {}
        (Some(expected), Some(now)) => {
            for &field in fields {
                let (e, n) = (expected.get(field), now.get(field));
                if e != n {
                    let shown = |v: &Value| {
                        if field == "headers" {
                            header_names(v)
                        } else {
                            v.clone()
                        }
                    };
                    differs.insert(
                        field.to_owned(),
                        json!({"expected": shown(e), "read_back": shown(n)}),
                    );
                }
            }
        }
        (expected, now) => {
            differs.insert(
                "webhook".into(),
                json!({"expected": summary(expected), "read_back": summary(now)}),
            );
        }
    }
    differs
}

/// The Evolution API of an integration. Its `api_url` is an account's to set, so its calls go through
/// `outbound` like media downloads: only to an allowed base URL, with the API key only there.
struct EvolutionApi {
    base: String,
    key: Option<Credential>,
    outbound: Arc<Outbound>,
}

/// A `webhook/find` answer is one small row.
const ANSWER_MAX_BYTES: u64 = 1024 * 1024;

impl EvolutionApi {
    async fn find(&self, instance: &str) -> std::result::Result<Option<WebhookRow>, String> {
        let call =
            Call::get(format!("{}/webhook/find/{instance}", self.base)).with(self.key.as_ref());
        let (status, text) = self
            .answer(call)
            .await
            .map_err(|e| format!("webhook/find: {e}"))?;
        if !status.is_success() {
            return Err(format!("webhook/find answered {status}: {text}"));
        }
        // v2 answers the stored row, or `null` (an empty body is taken as `null` too).
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .map_err(|e| format!("webhook/find answered no JSON ({e}): {text}"))?
        };
        WebhookRow::of(body)
    }

    /// `POST /webhook/set/{instance}` with `body` as it is: v2 takes the nested body only (a flat one is refused
    /// with 400), and writes `enabled` and `events` exactly as sent (`enabled: false` clears the events).
    async fn set(&self, instance: &str, body: &Value) -> std::result::Result<(), String> {
        let call = Call::post_json(format!("{}/webhook/set/{instance}", self.base), body)
            .with(self.key.as_ref());
        let (status, text) = self
            .answer(call)
            .await
            .map_err(|e| format!("webhook/set: {e}"))?;
        if !status.is_success() {
            return Err(format!("webhook/set answered {status}: {text}"));
        }
        Ok(())
    }

    /// The status and text of the answer to `call`.
    async fn answer(
        &self,
        call: Call<'_>,
    ) -> std::result::Result<(reqwest::StatusCode, String), OutboundError> {
        let response = self.outbound.send(call).await?;
        let status = response.status();
        let body = self.outbound.read(response, ANSWER_MAX_BYTES).await?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// Writes `previous` back (when there was no webhook there is nothing to write: Evolution cannot remove
    /// one) and reads it back. Restored only when the read-back equals `previous` on every field of
    /// `ROW_FIELDS`; otherwise the report says what differs.
    async fn restore(&self, instance: &str, previous: Option<&WebhookRow>) -> Value {
        let set_error = match previous {
            Some(row) => self.set(instance, &row.restore_body()).await.err(),
            None => None,
        };
        let fields: Vec<&str> = ROW_FIELDS.iter().map(|(field, _)| *field).collect();
        match self.find(instance).await {
            Ok(now) => {
                let differs = differences(previous, now.as_ref(), &fields);
                json!({"restored": differs.is_empty(), "restore_error": set_error,
                       "restore_differs": differs})
            }
            Err(e) => json!({"restored": false, "restore_error": set_error.unwrap_or(e),
                             "restore_differs": null}),
        }
    }
}

enum Step {
    Done(Value),
    Skipped(Value),
}

async fn cutover_one(
    ferry: &Ferry,
    integration: &Integration,
    options: CutoverOptions,
) -> std::result::Result<Step, Value> {
    let instance = integration.instance_name.clone().unwrap_or_default();
    let fail = |reason: String, restored: Option<bool>| json!({"instance": instance, "integration_id": integration.id, "reason": reason, "restored": restored});
    let secrets = integrations::integration_secrets(ferry, integration)
        .map_err(|e| fail(format!("integration secrets: {e}"), None))?;
    let api = EvolutionApi {
        base: integration
            .config
            .0
            .get("api_url")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| ferry.config.evolution_api_url.clone())
            .map(|u| u.trim_end_matches('/').to_owned())
            .ok_or_else(|| {
                fail(
                    "no Evolution API URL: set the integration's api_url or FERRY_EVOLUTION_API_URL".into(),
                    None,
                )
            })?,
        key: secrets
            .get("api_key")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| ferry.config.evolution_api_key.clone())
            .map(Credential::EvolutionKey),
        outbound: ferry.outbound.clone(),
    };
    // Remembered before anything changes: a restore writes exactly this back.
    let previous = api.find(&instance).await.map_err(|e| fail(e, None))?;
    let previous_url = previous
        .as_ref()
        .and_then(|row| row.get("url").as_str())
        .unwrap_or("")
        .to_owned();
    if !options.include_disabled && !previous.as_ref().is_some_and(WebhookRow::enabled) {
        let reason = if previous.is_some() {
            "the instance's webhook is disabled (--include-disabled re-points and enables it)"
        } else {
            "the instance has no webhook (--include-disabled sets one)"
        };
        let skipped = json!({"instance": instance, "integration_id": integration.id, "reason": reason,
                             "webhook": summary(previous.as_ref())});
        return Ok(Step::Skipped(skipped));
    }
    let issued = integrations::reveal(ferry, integration.account_id, integration.id, None)
        .await
        .map_err(|e| fail(format!("token: {e}"), None))?;
    // Ferry's own subscription: its events, media fetched through getBase64FromMediaMessage rather than inlined
    // (`base64: false`); by-events kept, since the token route takes the trailing event segment either way.
    let by_events = previous.as_ref().is_some_and(WebhookRow::by_events);
    let body = json!({"webhook": {
        "enabled": true,
        "url": issued.webhook_url,
        "byEvents": by_events,
        "base64": false,
        "events": EVOLUTION_EVENTS,
    }});
    let step = json!({"instance": instance, "integration_id": integration.id, "from": previous_url,
                      "to": issued.webhook_url, "previous": summary(previous.as_ref()),
                      "events": EVOLUTION_EVENTS, "by_events": by_events, "base64": false});
    if options.dry_run {
        return Ok(Step::Done(step));
    }
    let expected = WebhookRow::of(json!({"url": issued.webhook_url, "enabled": true,
                                         "events": EVOLUTION_EVENTS, "webhookByEvents": by_events,
                                         "webhookBase64": false}))
    .expect("an object");
    let confirmed = match api.set(&instance, &body).await {
        Ok(()) => match api.find(&instance).await {
            Ok(now) => {
                let differs = differences(
                    expected.as_ref(),
                    now.as_ref(),
                    &[
                        "url",
                        "enabled",
                        "events",
                        "webhookByEvents",
                        "webhookBase64",
                    ],
                );
                if differs.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "the webhook read back differs from the one set: {}",
                        Value::Object(differs)
                    ))
                }
            }
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    match confirmed {
        Ok(()) => {
            ferry
                .store
                .set_integration_cutover_state(integration.id, "token")
                .await
                .map_err(|e| fail(e.to_string(), None))?;
            ferry
                .audit(
                    Some(integration.account_id),
                    options.by,
                    "integration.cutover",
                    format!("integration:{}", integration.id),
                    json!({"instance": instance, "from": previous_url,
                           "previous": summary(previous.as_ref())}),
                )
                .await;
            Ok(Step::Done(step))
        }
        Err(reason) => {
            // Put the previous webhook back, so the instance keeps delivering where (and whether) it did.
            let restore = api.restore(&instance, previous.as_ref()).await;
            let mut failure = fail(reason, restore["restored"].as_bool());
            failure["previous"] = summary(previous.as_ref());
            failure["restore_error"] = restore["restore_error"].clone();
            failure["restore_differs"] = restore["restore_differs"].clone();
            Err(failure)
        }
    }
}

/// Every integration with its webhook URL: the token masked, or in the clear with `reveal` (each reveal
/// audited).
pub async fn tokens(ferry: &Ferry, reveal: bool, by: Option<i64>) -> Result<Vec<TokenRow>> {
    let mut out = Vec::new();
    for i in ferry.store.all_integrations().await? {
        // A user sees a token in the clear only where they administer its account (the installation flag does
        // not open other accounts); the CLI (`by` None) is the operator holding the database and its key.
        let allowed = match by {
            None => true,
            Some(user) => {
                ferry.store.account_role(i.account_id, user).await?
                    == Some(crate::domain::Role::Administrator)
            }
        };
        let revealed = reveal && allowed && i.token_ciphertext.is_some();
        let url = if revealed {
            Some(
                integrations::reveal(ferry, i.account_id, i.id, by)
                    .await?
                    .webhook_url,
            )
        } else {
            integrations::masked_webhook_url(ferry, &i)
        };
        out.push(TokenRow {
            id: i.id,
            account_id: i.account_id,
            inbox_id: i.inbox_id,
            key: i.instance_name.or(i.phone_number_id),
            provider: i.provider,
            status: i.status,
            enabled: i.enabled,
            cutover_state: i.cutover_state,
            webhook_url: url,
            revealed,
        });
    }
    Ok(out)
}

/// The sender of `ferry integrations test` messages: a number no customer has.
pub const TEST_SENDER: &str = "5500000000001";

/// Sends a correctly signed synthetic inbound message through the running server's token route (at `base`, or
/// `FERRY_PUBLIC_URL`) and reports the answer, the latency and whether the route came from the server's cache
/// (its `/metrics` lookups did not move); then removes the message again.
pub async fn test_delivery(ferry: &Ferry, id: i64, base: Option<&str>) -> Result<TestReport> {
    let account_id = ferry.store.integration_account(id).await?;
    let integration = ferry.store.get_integration(account_id, id).await?;
    let issued = integrations::reveal(ferry, account_id, id, None).await?;
    let secrets = integrations::integration_secrets(ferry, &integration)?;
    let secret = |name: &str| {
        secrets
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let path = &issued.webhook_url[issued.webhook_url.find("/webhooks/").unwrap_or(0)..];
    let public = ferry.public_url();
    let base = base.unwrap_or(&public).trim_end_matches('/');
    let message_id = format!("FERRYTEST{:016X}", rand::random::<u64>());
    let now = chrono::Utc::now().timestamp();
    let client = super::http_client();
    let mut request = client.post(format!("{base}{path}"));
    request = match integration.provider.as_str() {
        "evolution" => request.json(&json!({
            "event": "messages.upsert", "instance": integration.instance_name,
            "data": {"key": {"remoteJid": format!("{TEST_SENDER}@s.whatsapp.net"), "fromMe": false, "id": message_id},
                     "pushName": "ferry test", "message": {"conversation": "ferry integrations test"},
                     "messageType": "conversation", "messageTimestamp": now}})),
        "whatsapp_cloud" | "dialog360" => {
            let body = serde_json::to_vec(&json!({"object": "whatsapp_business_account", "entry": [{"id": "0",
                "changes": [{"field": "messages", "value": {"messaging_product": "whatsapp",
                "metadata": {"phone_number_id": integration.phone_number_id},
                "contacts": [{"profile": {"name": "ferry test"}, "wa_id": TEST_SENDER}],
                "messages": [{"from": TEST_SENDER, "id": message_id, "timestamp": now.to_string(),
                              "type": "text", "text": {"body": "ferry integrations test"}}]}}]}]}))
            .expect("serializable");
            request
                .header("content-type", "application/json")
                .header("x-hub-signature-256", super::cloud::sign(secret("app_secret").as_bytes(), &body))
                .body(body)
        }
        _ => {
            let params: Vec<(String, String)> = vec![
                ("MessageSid".into(), format!("SM{}", message_id.to_lowercase())),
                ("From".into(), format!("whatsapp:+{TEST_SENDER}")),
                ("Body".into(), "ferry integrations test".into()),
                ("NumMedia".into(), "0".into()),
            ];
            let signature = super::twilio::sign(secret("auth_token").as_bytes(), &issued.webhook_url, &params);
            let form = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&params)
                .finish();
            request
                .header("content-type", "application/x-www-form-urlencoded")
                .header("x-twilio-signature", signature)
                .body(form)
        }
    };
    let lookups = |page: String| {
        page.lines()
            .find_map(|l| l.strip_prefix("ferry_webhook_route_lookups_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let metrics = || async {
        client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()
    };
    let before = metrics().await.and_then(lookups);
    let started = std::time::Instant::now();
    let answer = request.send().await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let after = metrics().await.and_then(lookups);
    let (status, body) = match answer {
        Ok(r) => (
            Some(r.status().as_u16()),
            r.text().await.unwrap_or_default(),
        ),
        Err(e) => (None, e.to_string()),
    };
    let source_id = if integration.provider == "twilio_whatsapp" {
        format!("SM{}", message_id.to_lowercase())
    } else {
        message_id.clone()
    };
    let removed = ferry
        .store
        .delete_test_messages(account_id, &source_id, TEST_SENDER)
        .await?;
    Ok(TestReport {
        integration_id: id,
        url: integrations::masked_webhook_url(ferry, &integration),
        provider: integration.provider,
        ok: status.is_some_and(|s| (200..300).contains(&s)),
        status,
        answer: body,
        latency_ms: (latency_ms * 100.0).round() / 100.0,
        cache_hit: before.zip(after).map(|(b, a)| a == b),
        messages_removed: removed,
    })
}
