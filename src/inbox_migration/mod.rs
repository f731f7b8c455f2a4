//! Capability A: inbox migration (README: "Inbox migration"). `mod.rs` holds the lifecycle operations the API and CLI share;
//! `engine` moves the data in lease-guarded batches; the durable worker (`crate::worker`) runs it.

pub mod engine;
pub mod progress;
pub mod revert;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::services::{Ferry, ServiceError};
use crate::store::MigrationStatus;
use crate::store::{Inbox, InboxMigration, MatchKey, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// The request cannot be carried out as asked (answered 422).
    #[error("{message}")]
    Refused { code: &'static str, message: String },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<StoreError> for MigrationError {
    fn from(e: StoreError) -> Self {
        MigrationError::Service(e.into())
    }
}

fn refused(code: &'static str, message: impl Into<String>) -> MigrationError {
    MigrationError::Refused {
        code,
        message: message.into(),
    }
}

/// Per-migration options (`options` in the API), stored with the migration.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrationOptions {
    /// After completion, the source's webhooks are routed to the destination (default on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_source: Option<bool>,
    /// Rows per batch transaction (10 to 100,000); default `FERRY_MIGRATION_BATCH_ROWS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 10, maximum = 100_000)]
    pub batch_rows: Option<i64>,
    /// Throttle (positive); default `FERRY_MIGRATION_MAX_ROWS_PER_SECOND`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub max_rows_per_second: Option<u64>,
}

impl MigrationOptions {
    fn validate(&self) -> Result<(), MigrationError> {
        if self
            .batch_rows
            .is_some_and(|b| !(10..=100_000).contains(&b))
        {
            return Err(refused(
                "invalid_options",
                "options.batch_rows must be between 10 and 100000",
            ));
        }
        if self.max_rows_per_second == Some(0) {
            return Err(refused(
                "invalid_options",
                "options.max_rows_per_second must be positive",
            ));
        }
        Ok(())
    }
}

/// What a migration would move (the API's `preview`, and the plan of a dry run).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Preview {
    pub source_inbox: InboxRef,
    pub destination_inbox: InboxRef,
    pub conversations: i64,
    pub messages: i64,
    pub attachments: i64,
    pub contacts: i64,
    pub contacts_to_merge: i64,
    pub duplicates: i64,
    pub warnings: Vec<Warning>,
    pub estimated_seconds: f64,
    /// The first 100 contacts that will merge, by name (`contacts_to_merge` counts them all).
    pub merging: Vec<crate::store::MergingContact>,
    /// When the destination allows one open conversation per contact: the people (at most 100) who would have
    /// several, with those conversations. Resolve all but one of each, before or after.
    pub open_conflicts: Vec<OpenConflict>,
}

/// A person who would have more than one open conversation in a destination that allows one.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OpenConflict {
    pub contact_id: i64,
    pub name: Option<String>,
    /// Their open conversations, in either inbox: `(conversation id, inbox id)`.
    pub conversations: Vec<ConversationAt>,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct ConversationAt {
    pub conversation_id: i64,
    pub inbox_id: i64,
}

/// Rows of open conversations, one conflict per person, in the order given.
pub(crate) fn conflicts(rows: Vec<crate::store::OpenConversationOf>) -> Vec<OpenConflict> {
    let mut out: Vec<OpenConflict> = Vec::new();
    for row in rows {
        let at = ConversationAt {
            conversation_id: row.conversation_id,
            inbox_id: row.inbox_id,
        };
        match out.last_mut() {
            Some(last) if last.contact_id == row.contact_id => last.conversations.push(at),
            _ => out.push(OpenConflict {
                contact_id: row.contact_id,
                name: row.name,
                conversations: vec![at],
            }),
        }
    }
    out
}

/// Something an administrator should know before starting.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Warning {
    /// `LARGE_MIGRATION`, `CONTACTS_WILL_MERGE`, `UNPORTABLE_IDENTITIES`, `DIFFERENT_PHONE_NUMBERS`,
    /// `OPEN_CONVERSATION_CONFLICTS`, `REDIRECT_ENDS` or `REDIRECT_REPLACED`.
    pub code: &'static str,
    pub message: String,
}

/// An inbox a migration names. Only `id` remains of an inbox deleted since.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InboxRef {
    pub id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel_type: Option<String>,
}

pub fn inbox_ref(inbox: &Inbox) -> InboxRef {
    InboxRef {
        id: inbox.id,
        name: Some(inbox.name.clone()),
        channel_type: Some(inbox.channel.as_str().to_owned()),
    }
}

/// Rows per second the estimate assumes (measured order of magnitude on SQLite and PostgreSQL here).
const ESTIMATED_ROWS_PER_SECOND: f64 = 50_000.0;
const LARGE_MIGRATION: i64 = 1_000;

pub async fn match_key(ferry: &Ferry, account_id: i64) -> Result<MatchKey, MigrationError> {
    let account = ferry.store.get_account(account_id).await?;
    Ok(if account.merge_brazil_ninth_digit {
        MatchKey::BrazilFolded
    } else {
        MatchKey::Identity
    })
}

/// The source inbox (must be in the account) and the checked destination.
async fn pair(
    ferry: &Ferry,
    account_id: i64,
    source_id: i64,
    destination_id: i64,
) -> Result<(Inbox, Inbox), MigrationError> {
    let source = ferry
        .store
        .get_inbox(account_id, source_id)
        .await
        .map_err(|_| MigrationError::NotFound("inbox"))?;
    // Another account's inbox is answered as a missing one: the answer must not tell which ids exist.
    let destination = match ferry.store.find_inbox(destination_id).await? {
        Some(d) if d.account_id == account_id => d,
        _ => {
            return Err(refused(
                "unknown_destination",
                format!("this account has no inbox {destination_id}"),
            ));
        }
    };
    if source.id == destination.id {
        return Err(refused(
            "same_inbox",
            "source and destination are the same inbox",
        ));
    }
    for (role, inbox) in [("source", &source), ("destination", &destination)] {
        if !inbox.channel.is_whatsapp_like() {
            return Err(refused(
                "not_whatsapp_like",
                format!(
                    "the {role} inbox is a {} inbox; only WhatsApp inboxes can be migrated",
                    inbox.channel.label()
                ),
            ));
        }
    }
    Ok((source, destination))
}

/// Messages present in both inboxes under one provider id, in the conversations of one person. Only channels
/// of one id family can share ids, so other pairs cost no query. The migration keeps the destination's copy and
/// drops the source's (journaled: revert brings it back).
pub async fn duplicates(
    ferry: &Ferry,
    source: &Inbox,
    destination: &Inbox,
    key: MatchKey,
) -> Result<i64, StoreError> {
    if source.channel.shares_message_ids_with(destination.channel) {
        ferry
            .store
            .count_duplicate_messages(source.id, destination.id, key)
            .await
    } else {
        Ok(0)
    }
}

/// LIDs are addressable only on Evolution; a BSUID only by the provider connection that issued it.
async fn unportable_identities(
    ferry: &Ferry,
    source: &crate::store::Inbox,
    destination: &crate::store::Inbox,
) -> Result<i64, MigrationError> {
    let lids = destination.channel != crate::domain::ChannelType::Evolution;
    let bsuids = source.channel != destination.channel;
    if !lids && !bsuids {
        return Ok(0);
    }
    Ok(ferry
        .store
        .count_unportable_identities(source.id, lids, bsuids)
        .await?)
}

pub async fn preview(
    ferry: &Ferry,
    account_id: i64,
    source_id: i64,
    destination_id: i64,
) -> Result<Preview, MigrationError> {
    let (source, destination) = pair(ferry, account_id, source_id, destination_id).await?;
    let key = match_key(ferry, account_id).await?;
    let counts = ferry
        .store
        .inbox_migration_counts(source.id, destination.id, key)
        .await?;
    let duplicate_messages = duplicates(ferry, &source, &destination, key).await?;
    let mut warnings = Vec::new();
    if counts.conversations > LARGE_MIGRATION {
        warnings.push(Warning {
            code: "LARGE_MIGRATION",
            message: format!(
                "{} conversations will move; the migration runs in the background",
                counts.conversations
            ),
        });
    }
    if counts.merging_contact_inboxes > 0 {
        warnings.push(Warning {
            code: "CONTACTS_WILL_MERGE",
            message: format!(
                "{} contacts exist in both inboxes and will be merged into the destination's",
                counts.merging_contact_inboxes
            ),
        });
    }
    let unportable = unportable_identities(ferry, &source, &destination).await?;
    if unportable > 0 {
        warnings.push(Warning {
            code: "UNPORTABLE_IDENTITIES",
            message: format!(
                "{unportable} contacts are known only by an identity the destination's provider cannot address \
                 (a WhatsApp LID, or a business-scoped user id of the source's business portfolio); their \
                 conversations move, their identity is kept as it is"
            ),
        });
    }
    if source.phone_number.is_some()
        && destination.phone_number.is_some()
        && source.phone_number != destination.phone_number
    {
        warnings.push(Warning {
            code: "DIFFERENT_PHONE_NUMBERS",
            message: "the two inboxes are not the same business number; customers will see replies from the \
                      destination's number"
                .into(),
        });
    }
    warnings.extend(redirect_warnings(ferry, &source, &destination).await?);
    let (merging, _) = ferry
        .store
        .merging_contacts(source.id, destination.id, key, 100)
        .await?;
    let open_conflicts = if destination.lock_to_single_conversation {
        conflicts(
            ferry
                .store
                .open_conversation_conflicts(source.id, destination.id, key, 100)
                .await?,
        )
    } else {
        Vec::new()
    };
    if !open_conflicts.is_empty() {
        warnings.push(Warning {
            code: "OPEN_CONVERSATION_CONFLICTS",
            message: format!(
                "{} people would have more than one open conversation in {}, which allows one per contact; \
                 resolve all but one of each, before or after the migration",
                open_conflicts.len(),
                destination.name
            ),
        });
    }
    let rows = counts.conversations * 2 + counts.contact_inboxes * 2;
    Ok(Preview {
        source_inbox: inbox_ref(&source),
        destination_inbox: inbox_ref(&destination),
        conversations: counts.conversations,
        messages: counts.messages,
        attachments: counts.attachments,
        contacts: counts.contact_inboxes,
        contacts_to_merge: counts.merging_contact_inboxes,
        duplicates: duplicate_messages,
        warnings,
        estimated_seconds: (rows as f64 / ESTIMATED_ROWS_PER_SECOND).max(1.0).round(),
        merging,
        open_conflicts,
    })
}

/// What happens to the redirects of earlier migrations: one that sends the destination's webhooks elsewhere
/// ends when this migration brings conversations back into it; one from the source is replaced by this one's.
async fn redirect_warnings(
    ferry: &Ferry,
    source: &Inbox,
    destination: &Inbox,
) -> Result<Vec<Warning>, MigrationError> {
    let migrations = ferry
        .store
        .list_inbox_migrations(source.account_id, None, false)
        .await?;
    let mut warnings = Vec::new();
    if let Some(m) = active_redirect(&migrations, destination.id) {
        warnings.push(Warning {
            code: "REDIRECT_ENDS",
            message: format!(
                "webhooks of {}'s integrations are redirected to inbox {} by migration {}; once this migration \
                 completes they are stored in {} again",
                destination.name, m.destination_inbox_id, m.id, destination.name
            ),
        });
    }
    if let Some(m) = active_redirect(&migrations, source.id) {
        warnings.push(Warning {
            code: "REDIRECT_REPLACED",
            message: format!(
                "webhooks of {}'s integrations are redirected to inbox {} by migration {}; once this migration \
                 completes (with redirect_source) they go to {}",
                source.name, m.destination_inbox_id, m.id, destination.name
            ),
        });
    }
    Ok(warnings)
}

/// An inbox a migration may move into.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Destination {
    pub id: i64,
    pub name: String,
    pub channel_type: String,
    pub phone_number: Option<String>,
    pub conversations_count: i64,
    /// "name (N conversations)", as the web UI's select shows it.
    pub label: String,
}

/// Other WhatsApp-like inboxes of the account with their conversation counts (one query).
pub async fn eligible_destinations(
    ferry: &Ferry,
    account_id: i64,
    source_id: i64,
) -> Result<Vec<Destination>, MigrationError> {
    let inboxes = ferry.store.list_inboxes(account_id).await?;
    if !inboxes.iter().any(|i| i.id == source_id) {
        return Err(MigrationError::NotFound("inbox"));
    }
    Ok(inboxes
        .iter()
        .filter(|i| i.id != source_id && i.channel.is_whatsapp_like())
        .map(|i| Destination {
            id: i.id,
            name: i.name.clone(),
            channel_type: i.channel.as_str().to_owned(),
            phone_number: i.phone_number.clone(),
            conversations_count: i.conversations_count,
            label: format!("{} ({} conversations)", i.name, i.conversations_count),
        })
        .collect())
}

pub enum Created {
    Queued(Box<InboxMigration>),
    DryRun(Box<Preview>),
}

pub async fn create(
    ferry: &Ferry,
    account_id: i64,
    source_id: i64,
    destination_id: i64,
    dry_run: bool,
    options: MigrationOptions,
    user_id: Option<i64>,
) -> Result<Created, MigrationError> {
    options.validate()?;
    let plan = preview(ferry, account_id, source_id, destination_id).await?;
    if dry_run {
        return Ok(Created::DryRun(Box::new(plan)));
    }
    let options_json = serde_json::to_value(&options).expect("options serialize");
    let migration = ferry
        .store
        .create_inbox_migration(account_id, source_id, destination_id, user_id, &options_json)
        .await
        .map_err(|e| match e {
            // The unique partial index and the lock table: the database decides, not a prior read.
            StoreError::Conflict { .. } => refused(
                "migration_active",
                "one of these inboxes already takes part in an active migration; cancel it or wait for it to finish",
            ),
            other => other.into(),
        })?;
    let details = json!({"source_inbox_id": source_id, "destination_inbox_id": destination_id, "options": options_json});
    ferry
        .audit(
            Some(account_id),
            user_id,
            "inbox_migration.created",
            format!("inbox_migration:{}", migration.id),
            details,
        )
        .await;
    Ok(Created::Queued(Box::new(migration)))
}

/// A migration of this account, optionally required to have `source_id` as its source.
pub async fn get(
    ferry: &Ferry,
    account_id: i64,
    source_id: Option<i64>,
    id: i64,
) -> Result<InboxMigration, MigrationError> {
    let m = ferry
        .store
        .get_inbox_migration(id)
        .await
        .map_err(|_| MigrationError::NotFound("inbox migration"))?;
    if m.account_id != account_id || source_id.is_some_and(|s| s != m.source_inbox_id) {
        return Err(MigrationError::NotFound("inbox migration"));
    }
    Ok(m)
}

pub async fn cancel(
    ferry: &Ferry,
    account_id: i64,
    source_id: Option<i64>,
    id: i64,
    user_id: Option<i64>,
) -> Result<InboxMigration, MigrationError> {
    let m = get(ferry, account_id, source_id, id).await?;
    if m.revert_state
        .is_some_and(crate::store::RevertState::is_active)
    {
        return cancel_revert(ferry, &m, user_id).await;
    }
    let updated = ferry
        .store
        .cancel_inbox_migration(m.id)
        .await?
        .ok_or_else(|| {
            refused(
                "not_cancellable",
                format!("a {} migration cannot be cancelled", m.status),
            )
        })?;
    ferry
        .audit(
            Some(account_id),
            user_id,
            "inbox_migration.cancelled",
            format!("inbox_migration:{id}"),
            json!({"status_before": m.status}),
        )
        .await;
    Ok(updated)
}

/// A queued revert stops at once; a running one at its next batch boundary (what was undone stays undone).
async fn cancel_revert(
    ferry: &Ferry,
    m: &InboxMigration,
    user_id: Option<i64>,
) -> Result<InboxMigration, MigrationError> {
    if !ferry.store.cancel_inbox_migration_revert(m.id).await? {
        return Err(refused(
            "not_cancellable",
            "the revert ended before it could be cancelled",
        ));
    }
    ferry
        .audit(
            Some(m.account_id),
            user_id,
            "inbox_migration.revert_cancel_requested",
            format!("inbox_migration:{}", m.id),
            json!({"revert_state_before": m.revert_state}),
        )
        .await;
    Ok(ferry.store.get_inbox_migration(m.id).await?)
}

pub async fn retry(
    ferry: &Ferry,
    account_id: i64,
    source_id: Option<i64>,
    id: i64,
    user_id: Option<i64>,
) -> Result<InboxMigration, MigrationError> {
    let m = get(ferry, account_id, source_id, id).await?;
    let updated = ferry
        .store
        .requeue_inbox_migration(m.id)
        .await
        .map_err(|e| match e {
            StoreError::Conflict { .. } => refused(
                "migration_active",
                "one of these inboxes takes part in another active migration",
            ),
            other => other.into(),
        })?
        .ok_or_else(|| {
            refused(
                "not_retryable",
                format!(
                    "only failed or cancelled migrations can be retried; this one is {}",
                    m.status
                ),
            )
        })?;
    ferry
        .audit(
            Some(account_id),
            user_id,
            "inbox_migration.retried",
            format!("inbox_migration:{id}"),
            json!({}),
        )
        .await;
    Ok(updated)
}

/// Queues the revert of a migration (README: "Inbox migration"): a leased job the worker runs from the journals, newest batch
/// first, to the exact prior state, merged contacts un-merged. Conversations created in the destination
/// afterwards stay; new messages follow their conversation. A completed migration is reverted together with the
/// cancelled or failed runs of the same pair it continued; a cancelled or failed run that moved rows can be
/// reverted on its own. Refused while a later migration of either inbox changed those rows.
pub async fn revert(
    ferry: &Ferry,
    account_id: i64,
    source_id: Option<i64>,
    id: i64,
    user_id: Option<i64>,
) -> Result<InboxMigration, MigrationError> {
    let m = get(ferry, account_id, source_id, id).await?;
    revertible(&m)?;
    if let Some(later) = later_migration(ferry, &m).await? {
        return Err(refused(
            "later_migration",
            format!(
                "migration {} (inbox {} → {}) changed the conversations this one moved; revert it first",
                later.id, later.source_inbox_id, later.destination_inbox_id
            ),
        ));
    }
    let runs = continued_runs(ferry, &m).await?;
    let batches = runs.iter().map(|(_, batches)| batches).sum();
    let ids: Vec<i64> = runs.iter().map(|(id, _)| *id).collect();
    if !ferry
        .store
        .request_inbox_migration_revert(m.id, &ids, batches, user_id)
        .await?
    {
        return Err(refused(
            "migration_active",
            "one of these inboxes takes part in another active migration",
        ));
    }
    ferry
        .audit(
            Some(account_id),
            user_id,
            "inbox_migration.revert_requested",
            format!("inbox_migration:{id}"),
            json!({"runs": ids, "batches": batches}),
        )
        .await;
    Ok(ferry.store.get_inbox_migration(m.id).await?)
}

/// Completed, or cancelled or failed after moving rows; not reverted, and no revert of it under way.
fn revertible(m: &InboxMigration) -> Result<(), MigrationError> {
    if m.revert_state
        .is_some_and(crate::store::RevertState::is_active)
    {
        return Err(refused(
            "not_revertible",
            "this migration is being reverted already",
        ));
    }
    let moved = m.status == MigrationStatus::Completed || m.cursor_id > 0;
    if !m.status.is_revertible() || !moved {
        return Err(refused(
            "not_revertible",
            format!(
                "only a completed migration, or a cancelled or failed one that moved conversations, can be reverted; this one is {}{}",
                m.status,
                if moved { "" } else { " and moved nothing" }
            ),
        ));
    }
    Ok(())
}

/// `m` and the earlier cancelled or failed runs of the same pair that it continued (nothing else touched
/// either inbox in between), newest first, each with its journaled batches.
async fn continued_runs(
    ferry: &Ferry,
    m: &InboxMigration,
) -> Result<Vec<(i64, i64)>, MigrationError> {
    let inboxes = [m.source_inbox_id, m.destination_inbox_id];
    let mut earlier: Vec<InboxMigration> = ferry
        .store
        .list_inbox_migrations(m.account_id, None, false)
        .await?
        .into_iter()
        .filter(|n| n.id < m.id)
        .filter(|n| {
            inboxes.contains(&n.source_inbox_id) || inboxes.contains(&n.destination_inbox_id)
        })
        .collect();
    earlier.sort_by_key(|n| std::cmp::Reverse(n.id));
    let mut runs = vec![(m.id, m.cursor_id)];
    for n in earlier {
        let same_pair = n.source_inbox_id == m.source_inbox_id
            && n.destination_inbox_id == m.destination_inbox_id;
        match n.status {
            _ if !same_pair => break,
            MigrationStatus::Reverted => continue,
            MigrationStatus::Cancelled | MigrationStatus::Failed if n.cursor_id > 0 => {
                runs.push((n.id, n.cursor_id))
            }
            MigrationStatus::Cancelled | MigrationStatus::Failed => continue,
            MigrationStatus::Queued | MigrationStatus::Running | MigrationStatus::Completed => {
                break;
            }
        }
    }
    Ok(runs)
}

/// The newest later migration of either inbox of `m` that moved rows and is not reverted: reverting `m` first
/// would put conversations back from under it.
async fn later_migration(
    ferry: &Ferry,
    m: &InboxMigration,
) -> Result<Option<InboxMigration>, MigrationError> {
    let inboxes = [m.source_inbox_id, m.destination_inbox_id];
    Ok(ferry
        .store
        .list_inbox_migrations(m.account_id, None, false)
        .await?
        .into_iter()
        .filter(|n| n.id > m.id && n.status != MigrationStatus::Reverted)
        .filter(|n| {
            inboxes.contains(&n.source_inbox_id) || inboxes.contains(&n.destination_inbox_id)
        })
        .filter(|n| n.status == MigrationStatus::Completed || n.cursor_id > 0)
        .max_by_key(|n| n.id))
}

/// The completed migration whose redirect sends `inbox`'s webhooks elsewhere now (the newest redirecting one
/// from it, unless a later one brought conversations back into it): what the route query computes.
pub fn active_redirect(migrations: &[InboxMigration], inbox: i64) -> Option<&InboxMigration> {
    let completed = |m: &&InboxMigration| m.status == MigrationStatus::Completed;
    let order = |m: &InboxMigration| (m.completed_at, m.id);
    let redirecting = migrations
        .iter()
        .filter(completed)
        .filter(|m| m.source_inbox_id == inbox)
        .filter(|m| m.options.0.get("redirect_source") != Some(&Value::Bool(false)))
        .max_by_key(|m| order(m))?;
    let back = migrations
        .iter()
        .filter(completed)
        .filter(|m| m.destination_inbox_id == inbox)
        .any(|m| order(m) > order(redirecting));
    (!back).then_some(redirecting)
}

/// A migration as the API shows it (README: "Inbox migration").
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MigrationView {
    pub id: i64,
    pub status: crate::store::MigrationStatus,
    pub phase: crate::store::MigrationPhase,
    pub source_inbox: InboxRef,
    pub destination_inbox: InboxRef,
    pub options: MigrationOptions,
    pub progress: Progress,
    pub timing: Timing,
    /// The final counts, once completed.
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    pub error: Option<MigrationFailure>,
    pub cancel_requested: bool,
    pub attempts: i64,
    pub initiated_by: Option<UserRef>,
    /// Its revert job, once one was asked for.
    pub revert: Option<RevertView>,
    /// Set on a cancelled or failed run that the revert of this later migration of the pair undid too.
    pub reverted_with: Option<i64>,
    /// Every attempt of the migration and of its revert, oldest first: none is overwritten by a retry.
    pub history: Vec<crate::store::MigrationAttempt>,
}

/// A revert job's own progress.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RevertView {
    pub status: crate::store::RevertState,
    /// The runs it undoes, newest first: this migration and the cancelled or failed runs it continued.
    pub runs: Vec<i64>,
    pub percentage: f64,
    pub batches_total: i64,
    pub batches_done: i64,
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub completed_at: Option<chrono::DateTime<chrono::Utc>>,
    pub error: Option<String>,
    /// What is back in the source so far.
    pub restored: revert::Restored,
    pub requested_by: Option<i64>,
}

async fn revert_view(
    ferry: &Ferry,
    m: &InboxMigration,
) -> Result<Option<RevertView>, MigrationError> {
    let Some(status) = m.revert_state else {
        return Ok(None);
    };
    let runs = revert::runs_of(m);
    let restored = revert::Restored::of(ferry, m).await?;
    Ok(Some(RevertView {
        status,
        percentage: revert_percentage(m),
        runs,
        batches_total: m.revert_batches_total,
        batches_done: m.revert_batches_done,
        started_at: m.revert_started_at,
        completed_at: m.revert_completed_at,
        error: m.revert_error.clone(),
        restored,
        requested_by: m.revert_user_id,
    }))
}

/// Batches undone of those the revert found, 100 only once reverted.
pub fn revert_percentage(m: &InboxMigration) -> f64 {
    match (m.revert_state, m.revert_batches_total) {
        (Some(crate::store::RevertState::Reverted), _) => 100.0,
        (_, 0) => 0.0,
        (_, total) => {
            ((m.revert_batches_done as f64 * 1000.0 / total as f64).floor() / 10.0).min(99.9)
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Progress {
    /// Weighted by rows; 100 only when completed.
    pub percentage: f64,
    pub conversations: EntityProgress,
    pub messages: EntityProgress,
    pub attachments: EntityProgress,
    pub contact_inboxes: EntityProgress,
    pub contacts_merged: i64,
    pub duplicates: i64,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct EntityProgress {
    pub total: i64,
    pub moved: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Timing {
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub completed_at: Option<chrono::DateTime<chrono::Utc>>,
    pub duration_seconds: Option<f64>,
    pub eta_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MigrationFailure {
    pub message: String,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserRef {
    pub id: i64,
    pub name: String,
    pub email: String,
}

pub async fn to_view(ferry: &Ferry, m: &InboxMigration) -> Result<MigrationView, MigrationError> {
    let source = ferry.store.find_inbox(m.source_inbox_id).await?;
    let destination = ferry.store.find_inbox(m.destination_inbox_id).await?;
    let initiated_by = match m.user_id {
        Some(id) => ferry.store.get_user(id).await.ok().map(|u| UserRef {
            id: u.id,
            name: u.name,
            email: u.email,
        }),
        None => None,
    };
    let named = |i: Option<Inbox>, id: i64| {
        i.map(|i| inbox_ref(&i)).unwrap_or(InboxRef {
            id,
            name: None,
            channel_type: None,
        })
    };
    let duration = match (m.started_at, m.completed_at) {
        (Some(s), Some(c)) => Some((c - s).num_milliseconds() as f64 / 1000.0),
        (Some(s), None) => Some((chrono::Utc::now() - s).num_milliseconds() as f64 / 1000.0),
        _ => None,
    };
    Ok(MigrationView {
        id: m.id,
        status: m.status,
        phase: m.phase,
        source_inbox: named(source, m.source_inbox_id),
        destination_inbox: named(destination, m.destination_inbox_id),
        options: serde_json::from_value(m.options.0.clone()).unwrap_or_default(),
        progress: progress(m),
        timing: Timing {
            created_at: m.created_at,
            started_at: m.started_at,
            completed_at: m.completed_at,
            duration_seconds: duration,
            eta_seconds: eta_seconds(m, duration),
        },
        result: m.result.as_ref().map(|r| r.0.clone()),
        error: m.error_message.as_ref().map(|message| MigrationFailure {
            message: message.clone(),
            detail: m.error_detail.clone(),
        }),
        cancel_requested: m.cancel_requested,
        attempts: m.attempts,
        initiated_by,
        revert: revert_view(ferry, m).await?,
        reverted_with: m.reverted_with,
        history: ferry.store.inbox_migration_attempts(m.id).await?,
    })
}

/// The API's shape as JSON, for the CLI and the web UI.
pub async fn to_json(ferry: &Ferry, m: &InboxMigration) -> Result<Value, MigrationError> {
    Ok(json!(to_view(ferry, m).await?))
}

/// Percentage weighted by rows: every conversation, message, attachment and contact_inbox counts one.
pub fn progress(m: &InboxMigration) -> Progress {
    let total =
        m.conversations_count + m.messages_count + m.attachments_count + m.contact_inboxes_count;
    let moved =
        (m.conversations_moved + m.messages_moved + m.attachments_moved + m.contact_inboxes_moved)
            .min(total);
    let percentage = match (m.status, total) {
        (MigrationStatus::Completed, _) => 100.0,
        (_, 0) => 0.0,
        _ => ((moved as f64 * 1000.0 / total as f64).floor() / 10.0).min(99.9),
    };
    let entity = |total: i64, moved: i64| EntityProgress {
        total,
        moved: moved.min(total.max(moved)),
    };
    Progress {
        percentage,
        conversations: entity(m.conversations_count, m.conversations_moved),
        messages: entity(m.messages_count, m.messages_moved),
        attachments: entity(m.attachments_count, m.attachments_moved),
        contact_inboxes: entity(m.contact_inboxes_count, m.contact_inboxes_moved),
        contacts_merged: m.contacts_merged,
        duplicates: m.duplicates,
    }
}

fn eta_seconds(m: &InboxMigration, elapsed: Option<f64>) -> Option<f64> {
    if m.status != MigrationStatus::Running {
        return None;
    }
    let total =
        m.conversations_count + m.messages_count + m.attachments_count + m.contact_inboxes_count;
    let moved =
        m.conversations_moved + m.messages_moved + m.attachments_moved + m.contact_inboxes_moved;
    remaining_seconds(total - moved, moved, elapsed?, throttle(m))
}

/// Seconds for `remaining` rows at the rate so far (`moved` in `elapsed` seconds). A throttled run goes no faster
/// than its throttle, whatever its first batches did.
fn remaining_seconds(
    remaining: i64,
    moved: i64,
    elapsed: f64,
    throttle: Option<f64>,
) -> Option<f64> {
    if moved <= 0 || elapsed <= 0.0 {
        return None;
    }
    let observed = moved as f64 / elapsed;
    let rate = throttle.map_or(observed, |limit| observed.min(limit));
    Some((remaining.max(0) as f64 / rate).round())
}

/// The migration's throttle in rows per second, when it has one.
fn throttle(m: &InboxMigration) -> Option<f64> {
    m.options
        .0
        .get("max_rows_per_second")
        .and_then(serde_json::Value::as_f64)
        .filter(|limit| *limit > 0.0)
}

#[cfg(test)]
mod eta_tests {
    use super::remaining_seconds;

    #[test]
    fn a_throttle_bounds_the_rate_the_estimate_assumes() {
        // 1,000 rows in 1 s, 9,000 left: 9 s at that rate, 90 s at a 100 rows/s throttle.
        assert_eq!(remaining_seconds(9_000, 1_000, 1.0, None), Some(9.0));
        assert_eq!(
            remaining_seconds(9_000, 1_000, 1.0, Some(100.0)),
            Some(90.0)
        );
        // A throttle above the observed rate changes nothing.
        assert_eq!(
            remaining_seconds(9_000, 1_000, 1.0, Some(5_000.0)),
            Some(9.0)
        );
        assert_eq!(remaining_seconds(9_000, 0, 1.0, Some(100.0)), None);
    }
}
