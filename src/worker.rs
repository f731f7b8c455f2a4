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
        loop {
            if *shutdown.borrow() {
                break;
            }
            match self.run_once(shutdown.clone()).await {
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "worker: claiming work failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.poll) => {}
                _ = shutdown.changed() => {}
            }
        }
        let _ = fetcher.await;
        tracing::info!(worker = %self.id, "worker stopped");
    }

    /// Claims and runs one migration, if one is waiting.
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
        if migration.attempts > 1 {
            tracing::warn!(
                id = migration.id,
                attempts = migration.attempts,
                "taking over a migration whose lease expired"
            );
        }
        let lost = Arc::new(AtomicBool::new(false));
        let heartbeat = tokio::spawn(heartbeat(
            self.ferry.clone(),
            migration.id,
            token.clone(),
            self.lease(),
            lost.clone(),
        ));
        let outcome = engine::run(
            &self.ferry,
            migration,
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

/// Renews the lease three times per lease period; a renewal that finds another token marks the lease lost.
async fn heartbeat(
    ferry: Ferry,
    id: i64,
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
        match ferry
            .store
            .renew_inbox_migration_lease(id, &token, chrono::Utc::now() + lease)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                lost.store(true, Ordering::SeqCst);
                return;
            }
            Err(e) => tracing::warn!(error = %e, id, "lease renewal failed; retrying"),
        }
    }
}
