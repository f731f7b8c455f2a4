//! Revert as a leased job, like the migration itself: asked for over HTTP, the UI or the CLI (which only queue
//! it), claimed by a worker, run batch by batch from the journals — newest run first, newest batch first, each
//! batch one transaction under the lease — and resumed by any worker after a kill. A cancel stops it at a batch
//! boundary; what was undone stays undone and asking again continues.

use serde_json::json;

use super::engine::{at_batch_boundary, resuming};
use crate::jobs::{Outcome, RunContext};
use crate::services::Ferry;
use crate::store::{InboxMigration, RevertBatch, RevertState, StoreError};

#[tracing::instrument(name = "inbox_migration_revert", skip_all, fields(id = migration.id))]
pub async fn run(ferry: &Ferry, migration: InboxMigration, ctx: RunContext) -> Outcome {
    let id = migration.id;
    let outcome = match resuming(ferry, migration, &ctx, "inbox_migration_revert", run_inner).await
    {
        Ok(outcome) => outcome,
        Err(e) => {
            tracing::error!(error = %e, "revert failed");
            match ferry
                .store
                .stop_inbox_migration_revert(
                    id,
                    &ctx.token,
                    RevertState::Failed,
                    Some(&e.to_string()),
                )
                .await
            {
                Ok(true) => Outcome::Failed,
                Ok(false) => Outcome::LeaseLost,
                Err(stop) => {
                    tracing::error!(error = %stop, "could not record the revert's failure");
                    Outcome::Failed
                }
            }
        }
    };
    audit_end(ferry, id, &outcome).await;
    outcome
}

async fn run_inner(
    ferry: &Ferry,
    m: &InboxMigration,
    ctx: &RunContext,
) -> Result<Outcome, StoreError> {
    let runs = runs_of(m);
    for &run_id in &runs {
        let run = ferry.store.get_inbox_migration(run_id).await?;
        for batch in (1..=run.cursor_id).rev() {
            if let Some(stop) = at_batch_boundary(ctx, ferry, m.id).await? {
                return Ok(stop);
            }
            let undone = ferry
                .store
                .revert_inbox_migration_batch(RevertBatch {
                    revert_id: m.id,
                    token: &ctx.token,
                    run: run_id,
                    batch,
                    source_inbox_id: run.source_inbox_id,
                })
                .await?;
            match undone {
                None => return Ok(Outcome::LeaseLost),
                Some(true) => {
                    ferry
                        .store
                        .stop_inbox_migration_revert(m.id, &ctx.token, RevertState::Cancelled, None)
                        .await?;
                    tracing::info!(run = run_id, batch, "revert cancelled at a batch boundary");
                    return Ok(Outcome::Cancelled);
                }
                Some(false) => tracing::debug!(run = run_id, batch, "batch undone"),
            }
        }
    }
    let result = restored(ferry, &runs).await?;
    if !ferry
        .store
        .finish_inbox_migration_revert(m.id, &ctx.token, &json!(result))
        .await?
    {
        return Ok(Outcome::LeaseLost);
    }
    // The source's webhooks stop being redirected to the destination.
    ferry.token_routes.invalidate_all().await;
    tracing::info!(?result, "reverted");
    Ok(Outcome::Completed)
}

/// The runs a revert undoes, newest first (the migration itself when the record predates the list).
pub fn runs_of(m: &InboxMigration) -> Vec<i64> {
    m.revert_runs
        .as_ref()
        .map(|r| r.0.clone())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| vec![m.id])
}

/// What reverting `runs` has put back so far, as the API, UI and CLI report it.
pub async fn restored(ferry: &Ferry, runs: &[i64]) -> Result<Restored, StoreError> {
    let (conversations, messages, contact_inboxes) =
        ferry.store.inbox_migration_restored(runs).await?;
    Ok(Restored {
        runs: runs.to_vec(),
        conversations,
        messages,
        contact_inboxes,
    })
}

/// What a revert put back in the source so far (kept as the revert's result once it finished).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Restored {
    /// The runs it undoes, newest first.
    pub runs: Vec<i64>,
    pub conversations: i64,
    pub messages: i64,
    pub contact_inboxes: i64,
}

impl Restored {
    /// The revert's stored result, or what the journals say now.
    pub async fn of(ferry: &Ferry, m: &InboxMigration) -> Result<Self, StoreError> {
        match m
            .revert_result
            .as_ref()
            .and_then(|r| serde_json::from_value(r.0.clone()).ok())
        {
            Some(result) => Ok(result),
            None => restored(ferry, &runs_of(m)).await,
        }
    }
}

/// The audit log keeps every end of a revert, with what it restored.
async fn audit_end(ferry: &Ferry, id: i64, outcome: &Outcome) {
    let action = match outcome {
        Outcome::Completed => "inbox_migration.reverted",
        Outcome::Cancelled => "inbox_migration.revert_cancelled",
        Outcome::Failed => "inbox_migration.revert_failed",
        Outcome::LeaseLost | Outcome::Released => return,
    };
    let Ok(m) = ferry.store.get_inbox_migration(id).await else {
        return;
    };
    let restored = Restored::of(ferry, &m).await.unwrap_or_default();
    ferry
        .audit(
            Some(m.account_id),
            m.revert_user_id,
            action,
            format!("inbox_migration:{id}"),
            json!({"restored": restored, "error": m.revert_error}),
        )
        .await;
}
