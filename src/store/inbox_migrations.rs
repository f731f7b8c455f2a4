//! Storage for capability A. Every statement is set-based; a batch commits its data, its journal and its
//! progress in one transaction guarded by the lease token, so a worker that lost its lease writes nothing.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;

use super::{MigrationPhase, MigrationStatus, Result};
use crate::domain::ChannelType;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct InboxMigration {
    pub id: i64,
    pub account_id: i64,
    pub source_inbox_id: i64,
    pub destination_inbox_id: i64,
    pub user_id: Option<i64>,
    pub status: MigrationStatus,
    pub phase: MigrationPhase,
    pub options: Json<serde_json::Value>,
    pub conversations_count: i64,
    pub conversations_moved: i64,
    pub messages_count: i64,
    pub messages_moved: i64,
    pub attachments_count: i64,
    pub attachments_moved: i64,
    pub contact_inboxes_count: i64,
    pub contact_inboxes_moved: i64,
    pub contacts_merged: i64,
    pub duplicates: i64,
    pub cursor_id: i64,
    pub result: Option<Json<serde_json::Value>>,
    pub error_message: Option<String>,
    pub error_detail: Option<String>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub attempts: i64,
    pub cancel_requested: bool,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The revert job of this migration, once one was asked for.
    pub revert_state: Option<RevertState>,
    pub revert_user_id: Option<i64>,
    /// The runs the revert undoes, newest first: this migration and the cancelled or failed runs of the same
    /// pair it continued.
    pub revert_runs: Option<Json<Vec<i64>>>,
    pub revert_batches_total: i64,
    pub revert_batches_done: i64,
    pub revert_started_at: Option<DateTime<Utc>>,
    pub revert_completed_at: Option<DateTime<Utc>>,
    pub revert_error: Option<String>,
    pub revert_result: Option<Json<serde_json::Value>>,
    /// The migration whose revert undid this run too (a run continued by a later one).
    pub reverted_with: Option<i64>,
}

/// Where a revert job stands: `queued` → `running` → `reverted`, or `cancelled` / `failed` (the batches
/// undone so far stay undone; asking again continues).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type, utoipa::ToSchema)]
#[sqlx(type_name = "TEXT", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum RevertState {
    Queued,
    Running,
    Reverted,
    Cancelled,
    Failed,
}

impl RevertState {
    pub fn as_str(self) -> &'static str {
        match self {
            RevertState::Queued => "queued",
            RevertState::Running => "running",
            RevertState::Reverted => "reverted",
            RevertState::Cancelled => "cancelled",
            RevertState::Failed => "failed",
        }
    }

    pub fn is_active(self) -> bool {
        matches!(self, RevertState::Queued | RevertState::Running)
    }
}

impl InboxMigration {
    pub fn is_active(&self) -> bool {
        self.status.is_active()
    }

    /// A migration or its revert still has work to do (progress streams go on).
    pub fn has_work(&self) -> bool {
        self.is_active() || self.revert_state.is_some_and(RevertState::is_active)
    }
}

/// One attempt of a migration or of its revert: a claim by a worker, until it ended (or was taken over).
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct MigrationAttempt {
    /// `migrate` or `revert`.
    pub kind: String,
    pub worker: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// `completed`, `failed`, `cancelled`, `released` (shutdown), `lease_expired` (taken over), `reverted`;
    /// none while it runs.
    pub outcome: Option<String>,
    pub error: Option<String>,
    pub batches_at_start: i64,
    pub batches_at_end: Option<i64>,
}

/// How contacts of the two inboxes are matched: by canonical identity, or with the Brazilian ninth digit
/// folded (`merge_brazil_ninth_digit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKey {
    Identity,
    BrazilFolded,
}

impl MatchKey {
    pub fn column(self) -> &'static str {
        match self {
            MatchKey::Identity => "wa_identity",
            MatchKey::BrazilFolded => "wa_key",
        }
    }
}

/// One batch of a revert: `batch` of run `run` (whose source gets its rows back), under `revert`'s lease.
#[derive(Debug, Clone, Copy)]
pub struct RevertBatch<'a> {
    pub revert_id: i64,
    pub token: &'a str,
    pub run: i64,
    pub batch: i64,
    pub source_inbox_id: i64,
}

/// Everything one batch needs. `token` is the lease token the claim returned.
#[derive(Debug, Clone)]
pub struct BatchContext {
    pub migration_id: i64,
    pub token: String,
    pub source_inbox_id: i64,
    pub destination_inbox_id: i64,
    pub destination_channel: ChannelType,
    pub key: MatchKey,
    pub batch: i64,
    /// Source contact_inboxes (or, in the sweep, conversations) per batch.
    pub limit: i64,
    /// Keyset cursor: the batch takes source contact_inboxes after this id (0: from the start). When none is
    /// left after it, the batch starts over from the start once, for rows an earlier batch deferred.
    pub after_contact_inbox_id: i64,
    /// The two inboxes' channels share provider message ids: a message both hold is kept once, the
    /// destination's copy.
    pub drop_duplicates: bool,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct BatchOutcome {
    pub contact_inboxes: i64,
    pub merged_contact_inboxes: i64,
    pub conversations: i64,
    pub messages: i64,
    pub attachments: i64,
    pub contacts_deleted: i64,
    /// The highest source contact_inbox id this batch took (the next batch's cursor).
    pub last_contact_inbox_id: i64,
    /// Source messages dropped because the destination holds the same provider message id.
    pub duplicates_dropped: i64,
    /// Nothing of the source was left to move.
    pub source_empty: bool,
    pub cancel_requested: bool,
}

#[derive(Debug, Clone, Copy, Default, Serialize, sqlx::FromRow)]
pub struct PairCounts {
    pub conversations: i64,
    pub messages: i64,
    pub attachments: i64,
    pub contact_inboxes: i64,
    pub merging_contact_inboxes: i64,
}

/// A source contact that will merge into the destination's contact of the same person.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct MergingContact {
    pub contact_id: i64,
    pub name: Option<String>,
    /// Its address in the source inbox.
    pub source_identity: String,
    pub destination_contact_id: i64,
    pub destination_name: Option<String>,
    /// The same person's address in the destination inbox.
    pub destination_identity: String,
}

/// An open conversation of a person who would have more than one open conversation in the destination.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct OpenConversationOf {
    pub contact_id: i64,
    pub name: Option<String>,
    pub conversation_id: i64,
    pub inbox_id: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Violation {
    pub invariant: u8,
    pub description: String,
    pub count: i64,
}

#[async_trait]
pub trait InboxMigrationStore: Send + Sync {
    /// Inserts a queued migration and locks both inboxes. A unique violation means one of them already takes
    /// part in an active migration.
    async fn create_inbox_migration(
        &self,
        account_id: i64,
        source_inbox_id: i64,
        destination_inbox_id: i64,
        user_id: Option<i64>,
        options: &serde_json::Value,
    ) -> Result<InboxMigration>;
    async fn get_inbox_migration(&self, id: i64) -> Result<InboxMigration>;
    async fn list_inbox_migrations(
        &self,
        account_id: i64,
        source_inbox_id: Option<i64>,
        active_only: bool,
    ) -> Result<Vec<InboxMigration>>;
    /// Queued: cancelled at once. Running: flagged, the worker stops at the next batch. Returns None when the
    /// migration is in neither state.
    async fn cancel_inbox_migration(&self, id: i64) -> Result<Option<InboxMigration>>;
    /// Failed or cancelled → queued again, re-locking both inboxes. None when not retryable.
    async fn requeue_inbox_migration(&self, id: i64) -> Result<Option<InboxMigration>>;
    /// The oldest queued migration or revert (or a running one whose lease expired), leased to `worker`: a
    /// migration comes back `running`; a revert comes back with its migration's status and `revert_state`
    /// `running`.
    async fn claim_inbox_migration(
        &self,
        worker: &str,
        token: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<InboxMigration>>;
    async fn renew_inbox_migration_lease(
        &self,
        id: i64,
        token: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<bool>;
    /// Gives the lease up at a batch boundary (shutdown), so another worker takes over at once.
    async fn release_inbox_migration_lease(&self, id: i64, token: &str) -> Result<bool>;
    /// Counts of what will move and what will merge (the preview, the plan and the progress totals).
    async fn inbox_migration_counts(
        &self,
        source: i64,
        destination: i64,
        key: MatchKey,
    ) -> Result<PairCounts>;
    /// Records the totals at the start (first claim only). False when the lease is lost.
    async fn plan_inbox_migration(
        &self,
        id: i64,
        token: &str,
        counts: &PairCounts,
        duplicates: i64,
        before: &serde_json::Value,
    ) -> Result<bool>;
    /// One batch; None when the lease was lost (nothing written).
    async fn run_inbox_migration_batch(&self, ctx: &BatchContext) -> Result<Option<BatchOutcome>>;
    /// Members union, final status, locks released. False when the lease was lost.
    async fn complete_inbox_migration(
        &self,
        id: i64,
        token: &str,
        source: i64,
        destination: i64,
        result: &serde_json::Value,
    ) -> Result<bool>;
    /// Ends a running migration as `cancelled` or `failed`, releasing its locks.
    async fn stop_inbox_migration(
        &self,
        id: i64,
        token: &str,
        status: &str,
        message: Option<&str>,
        detail: Option<&str>,
    ) -> Result<bool>;
    /// Queues the revert of a migration that moved rows (`runs`: it and the runs it continued, newest first;
    /// `batches`: their journaled batches): locks both inboxes again. False when another active migration holds
    /// one of them, or the migration is active or already reverted or reverting.
    async fn request_inbox_migration_revert(
        &self,
        id: i64,
        runs: &[i64],
        batches: i64,
        user_id: Option<i64>,
    ) -> Result<bool>;
    /// A queued revert is cancelled at once (locks released); a running one is flagged and stops at its next
    /// batch. False when no revert is queued or running.
    async fn cancel_inbox_migration_revert(&self, id: i64) -> Result<bool>;
    /// Undoes batch `batch` of run `run` from its journal under the revert's lease (batches are undone newest
    /// first). None when the lease was lost (nothing written); else whether a cancel was asked for.
    async fn revert_inbox_migration_batch(&self, revert: RevertBatch<'_>) -> Result<Option<bool>>;
    /// Every run: the members it added removed, marked `reverted`; the revert `reverted` with what it restored,
    /// the locks released. False when the lease was lost.
    async fn finish_inbox_migration_revert(
        &self,
        id: i64,
        token: &str,
        result: &serde_json::Value,
    ) -> Result<bool>;
    /// Ends a running revert as `cancelled` or `failed` (what was undone stays undone), releasing the locks.
    async fn stop_inbox_migration_revert(
        &self,
        id: i64,
        token: &str,
        state: RevertState,
        error: Option<&str>,
    ) -> Result<bool>;
    /// Conversations, their messages and contact_inboxes that reverting `runs` has put back so far (from their
    /// journals: the batches past each run's cursor).
    async fn inbox_migration_restored(&self, runs: &[i64]) -> Result<(i64, i64, i64)>;
    /// Every attempt of the migration and of its revert, oldest first.
    async fn inbox_migration_attempts(&self, id: i64) -> Result<Vec<MigrationAttempt>>;
    /// Every row a migration may touch in this account, in a stable textual form (revert checks, `verify`).
    async fn account_rows_snapshot(&self, account_id: i64) -> Result<Vec<String>>;
    /// Messages of the source whose provider id (`source_id`) a message of the destination also has, in a
    /// conversation of the same person: the source contact_inbox merges into the destination's holding it.
    async fn count_duplicate_messages(
        &self,
        source: i64,
        destination: i64,
        key: MatchKey,
    ) -> Result<i64>;
    /// Messages and attachments a migration dropped as duplicates (kept in its journal for revert).
    async fn inbox_migration_dropped(&self, id: i64) -> Result<(i64, i64)>;
    /// Contact_inboxes of the inbox whose identity cannot be addressed elsewhere: LIDs (`lids`) and
    /// business-scoped user ids (`bsuids`). A migration keeps their `source_id` and reports them.
    async fn count_unportable_identities(
        &self,
        inbox_id: i64,
        lids: bool,
        bsuids: bool,
    ) -> Result<i64>;
    /// The open conversations of contacts with more than one open in the inbox (reported when it allows only
    /// one), at most `limit` contacts, by name.
    async fn contacts_with_several_open_conversations(
        &self,
        inbox_id: i64,
        limit: i64,
    ) -> Result<Vec<OpenConversationOf>>;
    /// The source's contacts that will merge (by name), at most `limit`, with how many there are.
    async fn merging_contacts(
        &self,
        source: i64,
        destination: i64,
        key: MatchKey,
        limit: i64,
    ) -> Result<(Vec<MergingContact>, i64)>;
    /// The open conversations, in either inbox, of the people who would have more than one open conversation
    /// in the destination after the migration (of at most `limit` people).
    async fn open_conversation_conflicts(
        &self,
        source: i64,
        destination: i64,
        key: MatchKey,
        limit: i64,
    ) -> Result<Vec<OpenConversationOf>>;
    /// Gives the planner statistics for this migration's journal rows (after its first batch): without them
    /// PostgreSQL believes a new migration id has almost no rows and plans the next batches' journal joins as
    /// nested loops, which made every migration after an installation's first about ten times slower.
    async fn refresh_journal_statistics(&self) -> Result<()>;
    /// Conversations of the two inboxes whose stored message or attachment count differs from their rows (the
    /// counts a migration reports are these columns, kept by triggers; `verify` checks them against the rows).
    async fn count_conversation_counter_drift(&self, source: i64, destination: i64) -> Result<i64>;
    /// Invariants 2, 3 and, given when the migration completed, 5 (README: "Inbox migration").
    async fn check_inbox_migration_invariants(
        &self,
        source: i64,
        destination: i64,
        key: MatchKey,
        completed_at: Option<DateTime<Utc>>,
    ) -> Result<Vec<Violation>>;
}

macro_rules! migration_select {
    () => {
        "SELECT id, account_id, source_inbox_id, destination_inbox_id, user_id, status, phase, options, \
         conversations_count, conversations_moved, messages_count, messages_moved, attachments_count, \
         attachments_moved, contact_inboxes_count, contact_inboxes_moved, contacts_merged, duplicates, cursor_id, \
         result, error_message, error_detail, lease_owner, lease_expires_at, attempts, cancel_requested, \
         started_at, completed_at, created_at, updated_at, revert_state, revert_user_id, revert_runs, \
         revert_batches_total, revert_batches_done, revert_started_at, revert_completed_at, revert_error, \
         revert_result, reverted_with FROM inbox_migrations "
    };
}

/// `source_id` in the destination's native format, computed from the canonical identity in SQL. It mirrors
/// `WhatsAppIdentity::to_source_id` (a test checks they agree); a LID cannot be addressed outside Evolution, a
/// BSUID (`US.…`, the only identities with a dot) belongs to its business portfolio and is never rewritten, and
/// a row without identity keeps its `source_id`.
pub fn native_source_id_sql(channel: ChannelType) -> &'static str {
    match channel {
        ChannelType::Evolution => {
            "CASE WHEN s.wa_identity IS NULL OR s.wa_identity LIKE '%.%' THEN s.source_id \
             WHEN s.wa_identity LIKE '%@lid' THEN s.wa_identity ELSE s.wa_identity || '@s.whatsapp.net' END"
        }
        ChannelType::TwilioWhatsapp => {
            "CASE WHEN s.wa_identity IS NULL OR s.wa_identity LIKE '%@lid' OR s.wa_identity LIKE '%.%' \
             THEN s.source_id ELSE 'whatsapp:+' || s.wa_identity END"
        }
        ChannelType::WhatsappCloud | ChannelType::Dialog360 => {
            "CASE WHEN s.wa_identity IS NULL OR s.wa_identity LIKE '%@lid' OR s.wa_identity LIKE '%.%' \
             THEN s.source_id ELSE s.wa_identity END"
        }
        _ => "s.source_id",
    }
}

pub(super) use migration_select;
