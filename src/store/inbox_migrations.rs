//! Storage for capability A. Every statement is set-based; a batch commits its data, its journal and its
//! progress in one transaction guarded by the lease token, so a worker that lost its lease writes nothing.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;

use super::Result;
use crate::domain::ChannelType;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct InboxMigration {
    pub id: i64,
    pub account_id: i64,
    pub source_inbox_id: i64,
    pub destination_inbox_id: i64,
    pub user_id: Option<i64>,
    pub status: String,
    pub phase: String,
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
}

impl InboxMigration {
    pub fn is_active(&self) -> bool {
        self.status == "queued" || self.status == "running"
    }
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
    /// Starts (or resumes) reverting a completed migration: locks both inboxes again. False when another
    /// active migration holds one of them or the migration is not completed.
    async fn begin_inbox_migration_revert(&self, id: i64) -> Result<bool>;
    /// Undoes one batch from the journal (batches are undone newest first).
    async fn revert_inbox_migration_batch(&self, id: i64, batch: i64, source: i64) -> Result<()>;
    /// Removes the members the migration added, marks it `reverted` and releases the locks.
    async fn finish_inbox_migration_revert(&self, id: i64, destination: i64) -> Result<()>;
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
    /// Contacts with more than one open conversation in the inbox (reported when it allows only one).
    async fn contacts_with_several_open_conversations(&self, inbox_id: i64) -> Result<Vec<i64>>;
    /// Gives the planner statistics for this migration's journal rows (after its first batch): without them
    /// PostgreSQL believes a new migration id has almost no rows and plans the next batches' journal joins as
    /// nested loops, which made every migration after an installation's first about ten times slower.
    async fn refresh_journal_statistics(&self) -> Result<()>;
    /// Conversations of the two inboxes whose stored message or attachment count differs from their rows (the
    /// counts a migration reports are these columns, kept by triggers; `verify` checks them against the rows).
    async fn count_conversation_counter_drift(&self, source: i64, destination: i64) -> Result<i64>;
    /// Invariants 2, 3 and, given when the migration completed, 5 (SPEC 3.5).
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
         started_at, completed_at, created_at, updated_at FROM inbox_migrations "
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
