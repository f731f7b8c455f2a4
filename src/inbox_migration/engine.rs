//! Moves one inbox into another: plan → batches of contact_inboxes with their conversations (moved or merged,
//! journaled, progress committed in the same transaction under the lease) → sweep of conversations left in
//! the source → members union → invariant check → `completed`. Memory does not grow with the inbox: every
//! step is a bounded set-based statement; the state is the data and the journal, so a resumed run continues.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{MigrationOptions, match_key};
use crate::jobs::{Outcome, RunContext};
use crate::services::Ferry;
use crate::store::MigrationPhase;
use crate::store::{BatchContext, InboxMigration, StoreError};

/// Between two batches: stop when the lease was lost, or give the lease up for another worker when this node
/// shuts down.
pub(super) async fn at_batch_boundary(
    ctx: &RunContext,
    ferry: &Ferry,
    id: i64,
) -> Result<Option<Outcome>, StoreError> {
    if ctx.lease_is_lost() {
        return Ok(Some(Outcome::LeaseLost));
    }
    if ctx.shutting_down() {
        ferry
            .store
            .release_inbox_migration_lease(id, &ctx.token)
            .await?;
        tracing::info!("shutdown: lease released at a batch boundary");
        return Ok(Some(Outcome::Released));
    }
    Ok(None)
}

#[tracing::instrument(name = "inbox_migration", skip_all, fields(id = migration.id))]
pub async fn run(ferry: &Ferry, migration: InboxMigration, ctx: RunContext) -> Outcome {
    let id = migration.id;
    let outcome = run_recording_failure(ferry, migration, &ctx).await;
    audit_end(ferry, id, &outcome).await;
    outcome
}

async fn run_recording_failure(
    ferry: &Ferry,
    migration: InboxMigration,
    ctx: &RunContext,
) -> Outcome {
    match run_resuming(ferry, migration.clone(), ctx).await {
        Ok(outcome) => outcome,
        Err(e) => {
            tracing::error!(error = %e, "migration failed");
            let detail = format!("{e:?}");
            match ferry
                .store
                .stop_inbox_migration(
                    migration.id,
                    &ctx.token,
                    "failed",
                    Some(&e.to_string()),
                    Some(&detail),
                )
                .await
            {
                Ok(true) => Outcome::Failed,
                Ok(false) => Outcome::LeaseLost,
                Err(stop) => {
                    // The lease expires and another worker takes the migration over.
                    tracing::error!(error = %stop, "could not record the failure");
                    Outcome::Failed
                }
            }
        }
    }
}

/// The audit log keeps how every attempt ended (a retry later clears the migration's error, not this).
async fn audit_end(ferry: &Ferry, id: i64, outcome: &Outcome) {
    let action = match outcome {
        Outcome::Completed => "inbox_migration.completed",
        Outcome::Cancelled => "inbox_migration.stopped_cancelled",
        Outcome::Failed => "inbox_migration.failed",
        Outcome::LeaseLost | Outcome::Released => return,
    };
    let Ok(m) = ferry.store.get_inbox_migration(id).await else {
        return;
    };
    ferry
        .audit(
            Some(m.account_id),
            m.user_id,
            action,
            format!("inbox_migration:{id}"),
            json!({"attempt": m.attempts, "batches": m.cursor_id,
                   "error": m.error_message, "error_detail": m.error_detail}),
        )
        .await;
}

/// Attempts before a transient database failure fails the migration, and the longest pause between them.
const TRANSIENT_ATTEMPTS: u32 = 8;
const TRANSIENT_MAX_PAUSE: Duration = Duration::from_secs(30);

/// Runs the migration; a transient database failure (the batch rolled back whole) is waited out with backoff
/// and the run resumed from what the database holds, under the same lease. Only data and invariant errors, or
/// a failure that outlasts every attempt, fail the migration.
async fn run_resuming(
    ferry: &Ferry,
    migration: InboxMigration,
    ctx: &RunContext,
) -> Result<Outcome, StoreError> {
    resuming(ferry, migration, ctx, "inbox_migration", run_inner).await
}

/// Runs `step` on the migration as the database holds it; a transient failure is waited out with backoff
/// (counted for `job`), the migration read again and `step` run again, under the same lease.
pub(super) async fn resuming<F>(
    ferry: &Ferry,
    mut migration: InboxMigration,
    ctx: &RunContext,
    job: &'static str,
    step: F,
) -> Result<Outcome, StoreError>
where
    F: for<'a> AsyncFn(
        &'a Ferry,
        &'a InboxMigration,
        &'a RunContext,
    ) -> Result<Outcome, StoreError>,
{
    let mut attempt = 0;
    loop {
        let error = match step(ferry, &migration, ctx).await {
            Err(e) if e.is_transient() && attempt + 1 < TRANSIENT_ATTEMPTS => e,
            done => return done,
        };
        attempt += 1;
        let pause = (Duration::from_millis(500) * 2u32.pow(attempt)).min(TRANSIENT_MAX_PAUSE);
        tracing::warn!(error = %error, attempt, ?pause, "transient database failure; the batch rolled back, resuming");
        crate::metrics::transient_retry(job);
        ctx.pause(pause).await;
        if ctx.lease_is_lost() {
            return Ok(Outcome::LeaseLost);
        }
        // Where the last committed batch left it (phase, cursor); the database may still be coming back.
        match ferry.store.get_inbox_migration(migration.id).await {
            Ok(current) => migration = current,
            Err(e) if e.is_transient() => continue,
            Err(e) => return Err(e),
        }
    }
}

async fn run_inner(
    ferry: &Ferry,
    m: &InboxMigration,
    ctx: &RunContext,
) -> Result<Outcome, StoreError> {
    let pair = Pair::of(ferry, m).await?;
    if m.phase == MigrationPhase::Plan {
        if !plan(ferry, m, ctx, &pair).await? {
            return Ok(Outcome::LeaseLost);
        }
    } else {
        tracing::info!(batch = m.cursor_id, "resuming");
    }
    let moved = match move_in_batches(ferry, m, ctx, &pair).await? {
        Moved::Done(moved) => moved,
        Moved::Stopped(outcome) => return Ok(outcome),
    };
    let current = ferry.store.get_inbox_migration(m.id).await?;
    let dropped = ferry.store.inbox_migration_dropped(m.id).await?;
    let problems = problems(ferry, &pair, &current, dropped).await?;
    if !problems.is_empty() {
        let detail = serde_json::to_string(&problems).unwrap_or_default();
        let message = Some("invariant check failed");
        ferry
            .store
            .stop_inbox_migration(m.id, &ctx.token, "failed", message, Some(&detail))
            .await?;
        return Ok(Outcome::Failed);
    }
    complete(ferry, ctx, &pair, &current, &moved, dropped.0).await
}

/// The two inboxes of a migration and how their contacts are matched.
struct Pair {
    source: crate::store::Inbox,
    destination: crate::store::Inbox,
    key: crate::store::MatchKey,
}

impl Pair {
    async fn of(ferry: &Ferry, m: &InboxMigration) -> Result<Self, StoreError> {
        let store = &ferry.store;
        Ok(Self {
            source: store.get_inbox(m.account_id, m.source_inbox_id).await?,
            destination: store
                .get_inbox(m.account_id, m.destination_inbox_id)
                .await?,
            key: match_key(ferry, m.account_id)
                .await
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        })
    }
}

/// Counts what will move and records it with the source's "before" figures; false when the lease was lost.
async fn plan(
    ferry: &Ferry,
    m: &InboxMigration,
    ctx: &RunContext,
    pair: &Pair,
) -> Result<bool, StoreError> {
    let (source, destination) = (&pair.source, &pair.destination);
    let counts = ferry
        .store
        .inbox_migration_counts(source.id, destination.id, pair.key)
        .await?;
    let duplicates = super::duplicates(ferry, source, destination, pair.key).await?;
    let record = json!({"source_before": counts});
    let planned = ferry
        .store
        .plan_inbox_migration(m.id, &ctx.token, &counts, duplicates, &record)
        .await?;
    if planned {
        tracing::info!(
            conversations = counts.conversations,
            messages = counts.messages,
            merging = counts.merging_contact_inboxes,
            "planned"
        );
    }
    Ok(planned)
}

/// How the batches went: their number and the longest.
struct Batches {
    last: i64,
    longest: Duration,
}

enum Moved {
    Done(Batches),
    /// Cancelled, lease lost, or released at shutdown.
    Stopped(Outcome),
}

/// Runs batches until the source is empty, stopping at a batch boundary when asked to, throttled to the
/// configured rows per second.
async fn move_in_batches(
    ferry: &Ferry,
    m: &InboxMigration,
    ctx: &RunContext,
    pair: &Pair,
) -> Result<Moved, StoreError> {
    let options: MigrationOptions = serde_json::from_value(m.options.0.clone()).unwrap_or_default();
    let batch_rows = options
        .batch_rows
        .unwrap_or(ferry.config.migration_batch_rows)
        .max(10);
    let max_rows_per_second = options
        .max_rows_per_second
        .or(ferry.config.migration_max_rows_per_second);
    let started = Instant::now();
    let mut rows_done: u64 = 0;
    let mut batches = Batches {
        last: m.cursor_id,
        longest: Duration::ZERO,
    };
    let mut after_contact_inbox_id = 0;
    loop {
        if let Some(stop) = at_batch_boundary(ctx, ferry, m.id).await? {
            return Ok(Moved::Stopped(stop));
        }
        batches.last += 1;
        let batch = batches.last;
        let batch_ctx = BatchContext {
            migration_id: m.id,
            token: ctx.token.clone(),
            source_inbox_id: pair.source.id,
            destination_inbox_id: pair.destination.id,
            destination_channel: pair.destination.channel,
            key: pair.key,
            batch,
            // A contact_inbox brings about four rows: itself, its conversation(s) and their journal rows.
            limit: (batch_rows / 4).max(1),
            after_contact_inbox_id,
            drop_duplicates: pair
                .source
                .channel
                .shares_message_ids_with(pair.destination.channel),
        };
        let t = Instant::now();
        let Some(out) = ferry.store.run_inbox_migration_batch(&batch_ctx).await? else {
            tracing::warn!(batch, "lease lost: batch rolled back");
            return Ok(Moved::Stopped(Outcome::LeaseLost));
        };
        batches.longest = batches.longest.max(t.elapsed());
        record_batch(batch, t.elapsed(), &out);
        if out.cancel_requested {
            ferry
                .store
                .stop_inbox_migration(m.id, &ctx.token, "cancelled", None, None)
                .await?;
            tracing::info!(batch, "cancelled at a batch boundary");
            return Ok(Moved::Stopped(Outcome::Cancelled));
        }
        if out.source_empty {
            return Ok(Moved::Done(batches));
        }
        after_contact_inbox_id = out.last_contact_inbox_id;
        if batch == 1 {
            ferry.store.refresh_journal_statistics().await?;
        }
        rows_done += (out.contact_inboxes + out.conversations + out.messages) as u64;
        if let Some(limit) = max_rows_per_second {
            // Throttle: sleep until the average rate is back under the limit.
            let due = Duration::from_secs_f64(rows_done as f64 / limit as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
}

fn record_batch(batch: i64, took: Duration, out: &crate::store::BatchOutcome) {
    crate::metrics::batch(
        "inbox_migration",
        took.as_secs_f64(),
        &[
            ("conversations", out.conversations),
            ("messages", out.messages),
            ("contact_inboxes", out.contact_inboxes),
        ],
    );
    tracing::debug!(
        batch,
        contact_inboxes = out.contact_inboxes,
        conversations = out.conversations,
        messages = out.messages,
        ms = took.as_millis() as u64,
        "batch committed"
    );
}

/// The invariants the database can check, and invariant 4 on what moved: messages are only ever dropped as
/// reported duplicates, so every one the plan counted must have been carried by a moved conversation or dropped
/// (late arrivals only add).
async fn problems(
    ferry: &Ferry,
    pair: &Pair,
    current: &InboxMigration,
    (dropped_messages, dropped_attachments): (i64, i64),
) -> Result<Vec<serde_json::Value>, StoreError> {
    let violations = ferry
        .store
        .check_inbox_migration_invariants(pair.source.id, pair.destination.id, pair.key, None)
        .await?;
    let mut problems: Vec<serde_json::Value> = violations.iter().map(|v| json!(v)).collect();
    for (what, moved, planned) in [
        (
            "conversations",
            current.conversations_moved,
            current.conversations_count,
        ),
        (
            "messages",
            current.messages_moved + dropped_messages,
            current.messages_count,
        ),
        (
            "attachments",
            current.attachments_moved + dropped_attachments,
            current.attachments_count,
        ),
    ] {
        if moved < planned {
            problems.push(json!({"invariant": 4, "count": planned - moved,
                "description": format!("{what} moved are fewer than planned")}));
        }
    }
    Ok(problems)
}

/// Records the result and ends the migration `completed`; the source's webhooks go to the destination from now.
async fn complete(
    ferry: &Ferry,
    ctx: &RunContext,
    pair: &Pair,
    current: &InboxMigration,
    batches: &Batches,
    dropped_messages: i64,
) -> Result<Outcome, StoreError> {
    let before = current
        .result
        .as_ref()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    let open_conflicts = if pair.destination.lock_to_single_conversation {
        super::conflicts(
            ferry
                .store
                .contacts_with_several_open_conversations(pair.destination.id, 1000)
                .await?,
        )
    } else {
        Vec::new()
    };
    let conflict_ids: Vec<i64> = open_conflicts.iter().map(|c| c.contact_id).collect();
    // The first 100 with their conversations, for the pages that link to them.
    let conflict_details: Vec<_> = open_conflicts.into_iter().take(100).collect();
    let result = json!({
        "source_before": before["source_before"],
        "contacts_merged": current.contacts_merged,
        "duplicates": current.duplicates,
        "duplicates_dropped": dropped_messages,
        "open_conversation_conflicts": conflict_ids,
        "open_conflicts": conflict_details,
        "batches": batches.last,
        "longest_batch_ms": batches.longest.as_millis() as u64,
        "invariants": "ok",
    });
    let (source, destination) = (pair.source.id, pair.destination.id);
    if !ferry
        .store
        .complete_inbox_migration(current.id, &ctx.token, source, destination, &result)
        .await?
    {
        return Ok(Outcome::LeaseLost);
    }
    // Webhooks of the source's integrations now go to the destination (redirect_source).
    ferry.token_routes.invalidate_all().await;
    tracing::info!(batches = batches.last, "completed");
    Ok(Outcome::Completed)
}

/// A migration or its revert, whichever the claim took.
#[async_trait::async_trait]
impl crate::jobs::LeasedJob for InboxMigration {
    async fn claim(
        ferry: &Ferry,
        owner: &str,
        token: &str,
        _now: chrono::DateTime<chrono::Utc>,
        until: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<Self>, StoreError> {
        ferry.store.claim_inbox_migration(owner, token, until).await
    }

    async fn renew(
        &self,
        ferry: &Ferry,
        token: &str,
        until: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError> {
        ferry
            .store
            .renew_inbox_migration_lease(self.id, token, until)
            .await
    }

    async fn run(self, ferry: &Ferry, ctx: RunContext) -> Result<Outcome, StoreError> {
        if !self.is_active() {
            return Ok(super::revert::run(ferry, self, ctx).await);
        }
        if self.attempts > 1 {
            tracing::warn!(
                id = self.id,
                attempts = self.attempts,
                "taking over a migration whose lease expired"
            );
        }
        Ok(run(ferry, self, ctx).await)
    }
}
