//! Running a migration (or its revert) batch after batch under its lease: each batch one transaction that also
//! renews the lease and records progress; a batch that meets a concurrent Chatwoot write (a unique conflict, a
//! lock timeout, a serialization failure) or a lost connection is rolled back and retried; a cancel or Ctrl-C
//! stops at a batch boundary; a killed run is taken over by `resume` once its lease has expired.

use std::time::{Duration, Instant};

use sqlx::{PgConnection, PgPool};
use tokio::sync::watch;

use super::bookkeeping::{self, Migration, NAMESPACE, Status};
use super::journal;
use super::mover::{self, Done, Move};
use super::{Chatwoot, ChatwootError};

/// How a run is driven.
pub struct RunOptions<'a> {
    /// Who holds the lease (`host:pid`).
    pub owner: String,
    pub lease_secs: f64,
    /// Set to true to stop at the next batch boundary (Ctrl-C).
    pub stop: watch::Receiver<bool>,
    /// Called after every committed batch.
    pub progress: Box<dyn Fn(&Migration) + Send + Sync + 'a>,
}

/// The lease holder name of this process.
pub fn owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    format!("{host}:{}", std::process::id())
}

enum Step {
    Batch(Done),
    Empty,
    Cancelled,
}

/// Keeps two processes off one source inbox for as long as the connection lives: a killed process's
/// connection closes, and the lock with it.
pub struct InboxLock(#[allow(dead_code)] PgConnection);

pub async fn lock_inbox(pool: &PgPool, inbox: i64) -> Result<InboxLock, ChatwootError> {
    let mut conn = pool.acquire().await?.detach();
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2::int)")
        .bind(NAMESPACE)
        .bind(inbox)
        .fetch_one(&mut conn)
        .await?;
    if !locked {
        return Err(ChatwootError::Refused(format!(
            "inbox {inbox} is being migrated or reverted by another ferry process right now"
        )));
    }
    Ok(InboxLock(conn))
}

/// Runs a move from its cursor to the end (or a cancel, a stop, a failure); the migration as it ended.
pub async fn run_move(
    cw: &Chatwoot,
    m: Migration,
    opts: &RunOptions<'_>,
) -> Result<Migration, ChatwootError> {
    let _lock = lock_inbox(&cw.pool, m.source_inbox_id).await?;
    let mut mv = cw.move_of(&m).await?;
    let mut cursor = m.cursor;
    let mut rescanned = false;
    loop {
        if *opts.stop.borrow() {
            return end(
                cw,
                &m,
                opts,
                Status::Cancelled,
                Some("interrupted (Ctrl-C)"),
            )
            .await;
        }
        let started = Instant::now();
        let step = retrying(|| move_step(&cw.pool, &mv, cursor, opts)).await;
        match step {
            Ok(Step::Batch(done)) => {
                cursor = done.cursor;
                mv.batch_rows = next_batch_rows(mv.batch_rows, m.batch_rows, started.elapsed());
                (opts.progress)(&bookkeeping::get(&cw.pool, m.id).await?);
            }
            Ok(Step::Cancelled) => return end(cw, &m, opts, Status::Cancelled, None).await,
            Ok(Step::Empty) if !rescanned && stragglers(&cw.pool, &mv).await? => {
                // Chatwoot may have created contact_inboxes behind the cursor meanwhile: one more pass.
                rescanned = true;
                cursor = 0;
            }
            Ok(Step::Empty) => {
                retrying(|| complete(&cw.pool, &mv, opts)).await?;
                return end(cw, &m, opts, Status::Completed, None).await;
            }
            Err(e) => {
                let _ = end(cw, &m, opts, Status::Failed, Some(&e.to_string())).await;
                return Err(e);
            }
        }
    }
}

/// Keeps batch transactions under a second whatever the rows cost on this database: halves the rows after a
/// batch over 0.8 s, grows them back toward the configured size after one under 0.3 s.
fn next_batch_rows(current: i64, configured: i64, took: Duration) -> i64 {
    if took > Duration::from_millis(800) {
        (current / 2).max(1)
    } else if took < Duration::from_millis(300) {
        (current * 2).min(configured)
    } else {
        current
    }
}

async fn end(
    cw: &Chatwoot,
    m: &Migration,
    opts: &RunOptions<'_>,
    status: Status,
    error: Option<&str>,
) -> Result<Migration, ChatwootError> {
    bookkeeping::finish(&cw.pool, m.id, &opts.owner, status, error).await?;
    let ended = bookkeeping::get(&cw.pool, m.id).await?;
    (opts.progress)(&ended);
    Ok(ended)
}

/// One batch transaction: lease renewed, cancel honoured, the batch, its progress.
async fn move_step(
    pool: &PgPool,
    mv: &Move,
    cursor: i64,
    opts: &RunOptions<'_>,
) -> Result<Step, ChatwootError> {
    let started = Instant::now();
    let mut tx = begin_batch(pool, mv.migration, opts).await?;
    if bookkeeping::cancel_requested(&mut tx, mv.migration).await? {
        return Ok(Step::Cancelled);
    }
    let Some(done) = mover::batch(&mut tx, mv, cursor).await? else {
        return Ok(Step::Empty);
    };
    record(&mut tx, mv.migration, &done, started).await?;
    tx.commit().await?;
    Ok(Step::Batch(done))
}

/// A transaction that waits at most 2 s for a row Chatwoot holds, with the lease renewed in it.
async fn begin_batch(
    pool: &PgPool,
    migration: i64,
    opts: &RunOptions<'_>,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, ChatwootError> {
    let mut tx = pool.begin().await?;
    // A lock Chatwoot holds makes the batch retry rather than wait. A commit need not wait for its WAL flush:
    // a batch lost in a server crash is lost whole, journal and progress with it, and the run redoes it.
    sqlx::query(
        "SELECT set_config('lock_timeout', '2s', true), set_config('synchronous_commit', 'off', true)",
    )
    .execute(&mut *tx)
    .await?;
    if !bookkeeping::renew(&mut tx, migration, &opts.owner, opts.lease_secs).await? {
        return Err(ChatwootError::LeaseLost(migration));
    }
    Ok(tx)
}

async fn record(
    tx: &mut PgConnection,
    migration: i64,
    done: &Done,
    started: Instant,
) -> Result<(), ChatwootError> {
    sqlx::query(
        "UPDATE ferry.migrations SET cursor = $2, conversations_moved = conversations_moved + $3, \
             messages_moved = messages_moved + $4, contact_inboxes_moved = contact_inboxes_moved + $5, \
             contact_inboxes_merged = contact_inboxes_merged + $6, contacts_merged = contacts_merged + $7, \
             left_behind = left_behind + $8, batches = batches + 1, \
             longest_batch_ms = GREATEST(longest_batch_ms, $9), updated_at = now() \
         WHERE id = $1",
    )
    .bind(migration)
    .bind(done.cursor)
    .bind(done.conversations)
    .bind(done.messages)
    .bind(done.contact_inboxes_moved)
    .bind(done.contact_inboxes_merged)
    .bind(done.contacts_merged)
    .bind(done.left_behind)
    .bind(started.elapsed().as_millis().min(i32::MAX as u128) as i32)
    .execute(tx)
    .await?;
    Ok(())
}

/// Whether the source still has contact_inboxes that were neither moved nor left behind.
async fn stragglers(pool: &PgPool, mv: &Move) -> Result<bool, ChatwootError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM contact_inboxes ci WHERE ci.inbox_id = $1 AND NOT EXISTS \
             (SELECT 1 FROM ferry.left_behind l WHERE l.migration_id = $2 AND l.contact_inbox_id = ci.id))",
    )
    .bind(mv.from.0)
    .bind(mv.migration)
    .fetch_one(pool)
    .await?)
}

async fn complete(pool: &PgPool, mv: &Move, opts: &RunOptions<'_>) -> Result<(), ChatwootError> {
    let started = Instant::now();
    let mut tx = begin_batch(pool, mv.migration, opts).await?;
    let mut done = mover::sweep(&mut tx, mv).await?;
    done.cursor = sqlx::query_scalar("SELECT cursor FROM ferry.migrations WHERE id = $1")
        .bind(mv.migration)
        .fetch_one(&mut *tx)
        .await?;
    record(&mut tx, mv.migration, &done, started).await?;
    tx.commit().await?;
    Ok(())
}

/// Retries what a concurrent writer or a lost connection made fail, with a growing pause; anything else fails
/// at once.
async fn retrying<T, F, Fut>(mut attempt: F) -> Result<T, ChatwootError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ChatwootError>>,
{
    let mut pause = Duration::from_millis(50);
    for _ in 0..12 {
        match attempt().await {
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "batch rolled back; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            other => return other,
        }
    }
    attempt().await
}

/// Undoes a migration from its journal, newest entry first, in batches; refuses one whose rows a later,
/// unreverted migration changed too (the revert would not be exact).
pub async fn revert(
    cw: &Chatwoot,
    id: i64,
    opts: &RunOptions<'_>,
) -> Result<Migration, ChatwootError> {
    if let Some(later) = later_migration(&cw.pool, id).await? {
        return Err(ChatwootError::Refused(format!(
            "migration {later} changed rows that migration {id} changed, and is not reverted: revert {later} first"
        )));
    }
    let from = [
        Status::Completed,
        Status::Failed,
        Status::Cancelled,
        Status::Reverting,
    ];
    let m = bookkeeping::claim(
        &cw.pool,
        id,
        &from,
        Status::Reverting,
        &opts.owner,
        opts.lease_secs,
    )
    .await?;
    let _lock = lock_inbox(&cw.pool, m.source_inbox_id).await?;
    start_revert(&cw.pool, id).await?;
    loop {
        if *opts.stop.borrow() {
            // Stays `reverting` with its lease released: `revert` again continues it.
            bookkeeping::finish(
                &cw.pool,
                id,
                &opts.owner,
                Status::Reverting,
                Some("interrupted (Ctrl-C)"),
            )
            .await?;
            return bookkeeping::get(&cw.pool, id).await;
        }
        match retrying(|| revert_step(&cw.pool, id, m.batch_rows, opts)).await {
            Ok(true) => (opts.progress)(&bookkeeping::get(&cw.pool, id).await?),
            Ok(false) => return end(cw, &m, opts, Status::Reverted, None).await,
            Err(e) => {
                let _ = bookkeeping::finish(
                    &cw.pool,
                    id,
                    &opts.owner,
                    Status::Reverting,
                    Some(&e.to_string()),
                )
                .await;
                return Err(e);
            }
        }
    }
}

/// A later migration, not reverted, whose journal names a row this one's journal names.
async fn later_migration(pool: &PgPool, id: i64) -> Result<Option<i64>, ChatwootError> {
    Ok(sqlx::query_scalar(
        "SELECT b.migration_id FROM \
             (SELECT table_name, unnest(ids) AS id FROM ferry.journal WHERE migration_id = $1) a \
         JOIN (SELECT j.migration_id, j.table_name, unnest(j.ids) AS id FROM ferry.journal j \
               JOIN ferry.migrations m ON m.id = j.migration_id \
               WHERE j.migration_id > $1 AND m.status <> 'reverted') b \
           ON a.table_name = b.table_name AND a.id = b.id \
         ORDER BY b.migration_id DESC LIMIT 1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?)
}

async fn start_revert(pool: &PgPool, id: i64) -> Result<(), ChatwootError> {
    sqlx::query(
        "UPDATE ferry.migrations SET \
             revert_cursor = (SELECT COALESCE(max(seq), 0) + 1 FROM ferry.journal WHERE migration_id = $1), \
             revert_entries_total = (SELECT COALESCE(sum(cardinality(ids)), 0) FROM ferry.journal \
                                     WHERE migration_id = $1), \
             revert_entries_done = 0 \
         WHERE id = $1 AND revert_cursor IS NULL",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

/// One revert batch: the newest journal entries not yet undone, up to `batch_rows` rows; false when none is left.
async fn revert_step(
    pool: &PgPool,
    id: i64,
    batch_rows: i64,
    opts: &RunOptions<'_>,
) -> Result<bool, ChatwootError> {
    let mut tx = begin_batch(pool, id, opts).await?;
    let entries: Vec<journal::Entry> = sqlx::query_as(
        "SELECT j.seq, j.table_name, j.op, j.ids, j.before FROM ferry.journal j, ferry.migrations m \
         WHERE m.id = $1 AND j.migration_id = $1 AND j.seq < m.revert_cursor ORDER BY j.seq DESC LIMIT 500",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    if entries.is_empty() {
        return Ok(false);
    }
    let (mut rows, mut last) = (0i64, i64::MAX);
    for entry in &entries {
        if rows > 0 && rows + entry.ids.len() as i64 > batch_rows {
            break;
        }
        journal::undo(&mut tx, entry).await?;
        rows += entry.ids.len() as i64;
        last = entry.seq;
    }
    sqlx::query(
        "UPDATE ferry.migrations SET revert_cursor = $2, revert_entries_done = revert_entries_done + $3, \
             updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(last)
    .bind(rows)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// A new move migration of the previewed pair, running under this process's lease.
pub async fn create_move(
    cw: &Chatwoot,
    preview: &super::preview::Preview,
    batch_rows: i64,
    opts: &RunOptions<'_>,
) -> Result<Migration, ChatwootError> {
    if batch_rows < 1 {
        return Err(ChatwootError::Refused(format!(
            "--batch-rows must be at least 1, not {batch_rows}"
        )));
    }
    let new = bookkeeping::NewMigration {
        kind: bookkeeping::MigrationKind::Move,
        account_id: preview.account_id,
        source_inbox_id: preview.from.id,
        destination_inbox_id: Some(preview.to.id),
        params: serde_json::json!({"from_kind": preview.from.kind, "to_kind": preview.to.kind}),
        batch_rows,
        conversations_total: preview.conversations_moving,
        messages_total: preview.messages_moving,
        owner: &opts.owner,
        lease_secs: opts.lease_secs,
    };
    bookkeeping::create(&cw.pool, &new).await
}

/// Continues a move that was cancelled, failed, or whose process died (once its lease expired).
pub async fn resume(
    cw: &Chatwoot,
    id: i64,
    opts: &RunOptions<'_>,
) -> Result<Migration, ChatwootError> {
    let m = bookkeeping::get(&cw.pool, id).await?;
    if m.kind != bookkeeping::MigrationKind::Move {
        return Err(ChatwootError::Refused(format!(
            "migration {id} is a provider conversion: it is done in one step and has nothing to resume"
        )));
    }
    let from = [Status::Running, Status::Cancelled, Status::Failed];
    let m = bookkeeping::claim(
        &cw.pool,
        id,
        &from,
        Status::Running,
        &opts.owner,
        opts.lease_secs,
    )
    .await?;
    run_move(cw, m, opts).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_batches_shrink_and_fast_ones_grow_back_to_the_configured_size() {
        let slow = Duration::from_millis(1200);
        let fast = Duration::from_millis(100);
        assert_eq!(next_batch_rows(5000, 5000, slow), 2500);
        assert_eq!(next_batch_rows(1, 5000, slow), 1);
        assert_eq!(next_batch_rows(2500, 5000, fast), 5000);
        assert_eq!(next_batch_rows(5000, 5000, fast), 5000);
        assert_eq!(
            next_batch_rows(3000, 5000, Duration::from_millis(500)),
            3000
        );
    }
}
