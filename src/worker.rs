//! The durable worker (inbox migrations, and media downloads beside them): claims work from the database under a lease, renews it by heartbeat, and gives it up at
//! a batch boundary on shutdown. On PostgreSQL any number of workers may run; on SQLite one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;

use crate::inbox_migration::engine::{self, Outcome, RunContext};
use crate::services::Ferry;

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
    ) -> Result<Option<Outcome>, crate::store::StoreError> {
        let token = format!("{:032x}", rand::thread_rng().r#gen::<u128>());
        let until = chrono::Utc::now() + self.lease();
        let Some(migration) = self
            .ferry
            .store
            .claim_inbox_migration(&self.id, &token, until)
            .await?
        else {
            return Ok(None);
        };
        // The claim took either the migration or its revert.
        let reverting = !migration.is_active();
        if migration.attempts > 1 && !reverting {
            tracing::warn!(
                id = migration.id,
                attempts = migration.attempts,
                "taking over a migration whose lease expired"
            );
        }
        let lost = Arc::new(AtomicBool::new(false));
        let heartbeat = tokio::spawn(heartbeat(
            self.ferry.clone(),
            Leased::InboxMigration(migration.id),
            token.clone(),
            self.lease(),
            lost.clone(),
        ));
        let ctx = RunContext {
            token,
            lease_lost: lost,
            shutdown,
        };
        let outcome = if reverting {
            crate::inbox_migration::revert::run(&self.ferry, migration, ctx).await
        } else {
            engine::run(&self.ferry, migration, ctx).await
        };
        heartbeat.abort();
        Ok(Some(outcome))
    }

    /// Claims and runs one account import, if one is waiting (or its worker's lease expired).
    pub async fn run_import_once(
        &self,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Option<Outcome>, crate::store::StoreError> {
        let token = format!("{:032x}", rand::thread_rng().r#gen::<u128>());
        let now = chrono::Utc::now();
        let Some(import) = self
            .ferry
            .store
            .claim_account_import(&self.id, &token, now, now + self.lease())
            .await?
        else {
            return Ok(None);
        };
        if import.attempts > 1 {
            tracing::warn!(
                id = import.id,
                attempts = import.attempts,
                stage = import.stage,
                "resuming an account import"
            );
        }
        let lost = Arc::new(AtomicBool::new(false));
        let heartbeat = tokio::spawn(heartbeat(
            self.ferry.clone(),
            Leased::AccountImport(import.id),
            token.clone(),
            self.lease(),
            lost.clone(),
        ));
        let outcome = crate::account_import::engine::run(
            &self.ferry,
            import,
            RunContext {
                token,
                lease_lost: lost,
                shutdown,
            },
        )
        .await;
        heartbeat.abort();
        Ok(Some(outcome))
    }
}

/// How often the worker looks for failed history imports due for an automatic repair.
const REPAIR_CHECK_EVERY: Duration = Duration::from_secs(30);

#[derive(Clone, Copy)]
enum Leased {
    InboxMigration(i64),
    AccountImport(i64),
}

/// Renews the lease three times per lease period; a renewal that finds another token marks the lease lost.
async fn heartbeat(
    ferry: Ferry,
    leased: Leased,
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
        let until = chrono::Utc::now() + lease;
        let renewed = match leased {
            Leased::InboxMigration(id) => {
                ferry
                    .store
                    .renew_inbox_migration_lease(id, &token, until)
                    .await
            }
            Leased::AccountImport(id) => {
                ferry
                    .store
                    .renew_account_import_lease(id, &token, until)
                    .await
            }
        };
        match renewed {
            Ok(true) => {}
            Ok(false) => {
                lost.store(true, Ordering::SeqCst);
                return;
            }
            Err(e) => tracing::warn!(error = %e, "lease renewal failed; retrying"),
        }
    }
}
