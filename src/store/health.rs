//! Whether this store can write right now. A read (`SELECT 1`) answers on a full disk, so readiness also asks
//! for a committed write and for the outcome of the writes that really happened: a node whose webhook batches
//! fail for lack of space is not ready, even when its small probe row happens to fit.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use sqlx::Connection;
use sqlx::pool::PoolConnectionMetadata;

use super::StoreError;

/// How long after a failed write the store still reports itself unable to write.
const FAILURE_WINDOW: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub struct WriteHealth {
    last_failure: Mutex<Option<(Instant, String)>>,
}

impl WriteHealth {
    /// Remembers a write that failed for want of the database (disk full, I/O error, lost connection).
    pub fn observe<T>(&self, result: &Result<T, StoreError>) {
        if let Err(e) = result
            && e.is_unavailable()
        {
            *self.last_failure.lock().unwrap() = Some((Instant::now(), e.to_string()));
        }
    }

    /// The error of a write that failed within the last few seconds.
    pub fn recent_failure(&self) -> Option<String> {
        let last = self.last_failure.lock().unwrap();
        last.as_ref()
            .filter(|(at, _)| at.elapsed() < FAILURE_WINDOW)
            .map(|(_, error)| error.clone())
    }
}

/// The pool's `after_release` check: a connection goes back to the pool only with no transaction open. When a
/// COMMIT fails on a full disk, SQLite has already rolled the transaction back, so sqlx's ROLLBACK fails too and
/// sqlx keeps counting an open transaction: every later `BEGIN` on that connection would fail ("non-zero
/// transaction depth"). Such a connection is closed instead, and the pool opens a fresh one.
pub fn released_clean<C: Connection>(
    conn: &mut C,
    _: PoolConnectionMetadata,
) -> BoxFuture<'_, Result<bool, sqlx::Error>> {
    Box::pin(async move {
        // Runs after the rollback a dropped transaction queued, so the count below is final.
        conn.ping().await?;
        let clean = !conn.is_in_transaction();
        if !clean {
            tracing::warn!("a connection kept a failed transaction open; closing it");
        }
        Ok(clean)
    })
}
