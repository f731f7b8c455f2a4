//! Work claimed from the database under a lease: inbox migrations (and their reverts), account imports and
//! media downloads. A claim stamps a new token on the row; a heartbeat renews the lease while the job runs; a
//! renewal that finds another token means another worker took the job over (this one's lease expired), and
//! this run then writes nothing more. A job stops at a batch boundary when its node shuts down, leaving the
//! lease for another worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::services::Ferry;
use crate::store::StoreError;

/// How a run of a leased job ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    Cancelled,
    Failed,
    /// Another worker owns the job now; this one wrote nothing after losing it.
    LeaseLost,
    /// Shutdown: the lease was released at a batch boundary for another worker to continue.
    Released,
}

/// What a running job checks between two batches.
pub struct RunContext {
    pub token: String,
    pub lease_lost: Arc<AtomicBool>,
    pub shutdown: watch::Receiver<bool>,
}

impl RunContext {
    pub fn lease_is_lost(&self) -> bool {
        self.lease_lost.load(Ordering::SeqCst)
    }

    pub fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Waits `pause`, or less when the node starts shutting down.
    pub async fn pause(&self, pause: Duration) {
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// A kind of work a worker claims under a lease and runs to an outcome.
#[async_trait]
pub trait LeasedJob: Sized + Send + 'static {
    /// The next due job, now leased to `owner` under `token` until `until`.
    async fn claim(
        ferry: &Ferry,
        owner: &str,
        token: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<Self>, StoreError>;
    /// Extends the lease to `until` while `token` holds it; false when another claim took the job over.
    async fn renew(
        &self,
        ferry: &Ferry,
        token: &str,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    async fn run(self, ferry: &Ferry, ctx: RunContext) -> Result<Outcome, StoreError>;
}

/// Claims the next due job of kind `J` and runs it while a heartbeat renews its lease; `None` when no job is
/// due.
pub async fn run_one<J: LeasedJob + Clone + Sync>(
    ferry: &Ferry,
    owner: &str,
    lease: chrono::Duration,
    shutdown: watch::Receiver<bool>,
) -> Result<Option<Outcome>, StoreError> {
    let token = format!("{:032x}", rand::random::<u128>());
    let now = Utc::now();
    let Some(job) = J::claim(ferry, owner, &token, now, now + lease).await? else {
        return Ok(None);
    };
    let lease_lost = Arc::new(AtomicBool::new(false));
    let heartbeat = tokio::spawn(heartbeat(
        ferry.clone(),
        job.clone(),
        token.clone(),
        lease,
        lease_lost.clone(),
    ));
    let ctx = RunContext {
        token,
        lease_lost,
        shutdown,
    };
    let outcome = job.run(ferry, ctx).await;
    heartbeat.abort();
    outcome.map(Some)
}

/// Renews the lease three times per lease period; a renewal that finds another token marks the lease lost.
async fn heartbeat<J: LeasedJob + Sync>(
    ferry: Ferry,
    job: J,
    token: String,
    lease: chrono::Duration,
    lost: Arc<AtomicBool>,
) {
    let every = (lease / 3)
        .to_std()
        .unwrap_or(Duration::from_secs(1))
        .max(Duration::from_millis(200));
    loop {
        tokio::time::sleep(every).await;
        match job.renew(&ferry, &token, Utc::now() + lease).await {
            Ok(true) => {}
            Ok(false) => {
                lost.store(true, Ordering::SeqCst);
                return;
            }
            Err(e) => tracing::warn!(error = %e, "lease renewal failed; retrying"),
        }
    }
}
