//! The durable worker (inbox migrations, and media downloads beside them): claims work from the database under a lease, renews it by heartbeat, and gives it up at
//! a batch boundary on shutdown. On PostgreSQL any number of workers may run; on SQLite one.

use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;

use crate::jobs::{self, Outcome};
use crate::services::Ferry;
use crate::store::{AccountImport, InboxMigration, StoreError};

pub struct Worker {
    ferry: Ferry,
    id: String,
    poll: Duration,
}

impl Worker {
    pub fn new(ferry: Ferry) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "ferry".into());
        let id = format!(
            "{host}:{}:{:06x}",
            std::process::id(),
            rand::thread_rng().gen_range(0..0xFFFFFF)
        );
        Self {
            ferry,
            id,
            poll: Duration::from_millis(500),
        }
    }

    pub fn with_poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    fn lease(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.ferry.config.lease_seconds.max(1) as i64)
    }

    /// Runs until `shutdown` becomes true; the migration in hand is left at a batch boundary.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(worker = %self.id, "worker started");
        // Media downloads run beside migrations: a long migration must not hold files back.
        let fetcher = tokio::spawn(crate::webhooks::media::run_fetcher(
            self.ferry.clone(),
            self.id.clone(),
            shutdown.clone(),
        ));
        let mut last_repair_check = std::time::Instant::now() - REPAIR_CHECK_EVERY;
        loop {
            if *shutdown.borrow() {
                break;
            }
            match self.run_once(shutdown.clone()).await {
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "worker: claiming work failed"),
            }
            match self.run_import_once(shutdown.clone()).await {
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "worker: claiming an account import failed"),
            }
            if last_repair_check.elapsed() >= REPAIR_CHECK_EVERY {
                last_repair_check = std::time::Instant::now();
                if let Err(e) = crate::account_import::run_due_repairs(&self.ferry).await {
                    tracing::error!(error = %e, "worker: repairing failed history imports");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.poll) => {}
                _ = shutdown.changed() => {}
            }
        }
        let _ = fetcher.await;
        tracing::info!(worker = %self.id, "worker stopped");
    }

    /// Claims and runs one migration or one revert, if one is waiting.
    pub async fn run_once(
        &self,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Option<Outcome>, StoreError> {
        jobs::run_one::<InboxMigration>(&self.ferry, &self.id, self.lease(), shutdown).await
    }

    /// Claims and runs one account import, if one is waiting (or its worker's lease expired).
    pub async fn run_import_once(
        &self,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Option<Outcome>, StoreError> {
        jobs::run_one::<AccountImport>(&self.ferry, &self.id, self.lease(), shutdown).await
    }
}

/// How often the worker looks for failed history imports due for an automatic repair.
const REPAIR_CHECK_EVERY: Duration = Duration::from_secs(30);
