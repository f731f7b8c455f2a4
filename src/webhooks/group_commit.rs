//! Group commit of inbound messages: every delivery waits for its message to be committed before it is
//! answered 2xx, but concurrent deliveries share one transaction, so the database pays one commit (one WAL
//! sync) and a handful of set-based statements per batch instead of per message.
//!
//! Writers take what has queued up (at most `max_batch`) as soon as the previous batch committed: under light
//! load a batch is one message and adds no delay; under heavy load batches grow by themselves. A failed batch
//! is retried one message at a time, so one bad message cannot fail the others.

use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

use crate::store::{IngestMessage, Ingested, Store, StoreError};

type Reply = oneshot::Sender<Result<Ingested, StoreError>>;

pub struct GroupCommit {
    jobs: mpsc::Sender<(IngestMessage, Reply)>,
}

impl GroupCommit {
    /// Starts `writers` writer tasks (SQLite takes one writer at a time; PostgreSQL commits in parallel). They
    /// stop when the last `GroupCommit` handle is dropped.
    pub fn start(store: Arc<dyn Store>, writers: usize, max_batch: usize) -> Self {
        let (jobs, queue) = mpsc::channel(max_batch * writers * 4);
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..writers.max(1) {
            tokio::spawn(write(store.clone(), queue.clone(), max_batch.max(1)));
        }
        Self { jobs }
    }

    /// Stores one message with whatever else is being stored now; answers once it is committed.
    pub async fn ingest(&self, message: IngestMessage) -> Result<Ingested, StoreError> {
        let (reply, answer) = oneshot::channel();
        // Answered 500 (the provider retries); the delivery is kept as a dead letter meanwhile.
        let stopped = || StoreError::Database(sqlx::Error::PoolClosed);
        self.jobs
            .send((message, reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn write(
    store: Arc<dyn Store>,
    queue: Arc<Mutex<mpsc::Receiver<(IngestMessage, Reply)>>>,
    max_batch: usize,
) {
    loop {
        let mut batch = Vec::with_capacity(max_batch);
        {
            // One writer collects at a time; the others are committing meanwhile.
            let mut queue = queue.lock().await;
            if queue.recv_many(&mut batch, max_batch).await == 0 {
                return;
            }
        }
        let (messages, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let started = std::time::Instant::now();
        match stored(store.as_ref(), &messages).await {
            Ok(results) => {
                tracing::debug!(
                    size = messages.len(),
                    ms = started.elapsed().as_secs_f64() * 1000.0,
                    "batch"
                );
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            Err(e) if messages.len() == 1 => {
                let _ = replies.into_iter().next().map(|reply| reply.send(Err(e)));
            }
            Err(e) => {
                tracing::warn!(error = %e, size = messages.len(), "batch not stored; storing its messages one by one");
                for (message, reply) in messages.iter().zip(replies) {
                    let result = stored(store.as_ref(), std::slice::from_ref(message))
                        .await
                        .map(|mut r| r.remove(0));
                    let _ = reply.send(result);
                }
            }
        }
    }
}

/// Stores a batch; a deadlock victim (concurrent writers on other nodes) or a busy database is run again, as
/// its transaction rolled back whole.
async fn stored(
    store: &dyn Store,
    messages: &[IngestMessage],
) -> Result<Vec<Ingested>, StoreError> {
    let result =
        crate::store::retrying("webhook_batch", || guarded(store.ingest_batch(messages))).await;
    store.write_health().observe(&result);
    result
}

/// A panic while storing becomes an error for that batch: the writer lives on, and no delivery waits forever.
async fn guarded(
    work: impl std::future::Future<Output = Result<Vec<Ingested>, StoreError>>,
) -> Result<Vec<Ingested>, StoreError> {
    use futures::FutureExt;
    std::panic::AssertUnwindSafe(work)
        .catch_unwind()
        .await
        .unwrap_or_else(|_| Err(StoreError::Invalid("storing the batch panicked".into())))
}
