//! Live progress for event streams (API and web UI). However many streams follow a migration, the node reads
//! it once per interval: one poller per migration publishes the record whenever the row changed (never for the
//! timing fields alone, which change on every read), and every stream receives that one snapshot. The number
//! of streams per migration and per node is capped, so followers cannot crowd out webhook ingestion.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::services::Ferry;

/// How often a followed migration is read.
const POLL_EVERY: Duration = Duration::from_millis(500);

/// The migration as the API shows it, and whether it (and its revert) has ended.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub json: Arc<String>,
    pub done: bool,
}

type Feed = watch::Sender<Option<Snapshot>>;

#[derive(Default)]
pub struct ProgressHub {
    feeds: Mutex<HashMap<i64, Feed>>,
    streams: Arc<AtomicUsize>,
    polls: AtomicUsize,
}

#[derive(Debug, thiserror::Error)]
pub enum Busy {
    #[error("{0} progress streams already follow this migration on this node")]
    Migration(usize),
    #[error("this node already serves {0} progress streams")]
    Node(usize),
}

/// A stream's share of the hub: its receiver, and its place in the node's count until dropped.
pub struct Subscription {
    pub receiver: watch::Receiver<Option<Snapshot>>,
    _counted: Counted,
}

struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ProgressHub {
    /// Streams open on this node now.
    pub fn streams(&self) -> usize {
        self.streams.load(Ordering::SeqCst)
    }

    /// Reads of followed migrations so far (one per migration per interval, whatever the number of streams).
    pub fn polls(&self) -> usize {
        self.polls.load(Ordering::SeqCst)
    }

    /// Follows migration `id`, starting its poller when no stream follows it yet.
    pub fn subscribe(&self, ferry: &Ferry, id: i64) -> Result<Subscription, Busy> {
        let per_node = ferry.config.event_streams_per_node.max(1);
        let per_migration = ferry.config.event_streams_per_migration.max(1);
        if self.streams.fetch_add(1, Ordering::SeqCst) >= per_node {
            self.streams.fetch_sub(1, Ordering::SeqCst);
            return Err(Busy::Node(per_node));
        }
        let counted = Counted(self.streams.clone());
        let mut feeds = self.feeds.lock().unwrap();
        let receiver = match feeds.get(&id).filter(|feed| !feed.is_closed()) {
            Some(feed) if feed.receiver_count() >= per_migration => {
                return Err(Busy::Migration(per_migration));
            }
            Some(feed) => feed.subscribe(),
            None => {
                let (feed, receiver) = watch::channel(None);
                feeds.insert(id, feed.clone());
                tokio::spawn(poll(ferry.clone(), id, feed));
                receiver
            }
        };
        Ok(Subscription {
            receiver,
            _counted: counted,
        })
    }

    fn forget(&self, id: i64, feed: &Feed) {
        let mut feeds = self.feeds.lock().unwrap();
        if feeds.get(&id).is_some_and(|f| f.same_channel(feed)) {
            feeds.remove(&id);
        }
    }
}

/// Reads the migration every interval while anyone follows it and it has work left; publishes it when the
/// row changed.
async fn poll(ferry: Ferry, id: i64, feed: Feed) {
    let mut last = None;
    loop {
        ferry.progress.polls.fetch_add(1, Ordering::SeqCst);
        let done = match ferry.store.get_inbox_migration(id).await {
            Ok(m) => {
                let key = change_key(&m);
                let done = !m.has_work();
                if last.as_ref() != Some(&key) {
                    let json = super::to_json(&ferry, &m)
                        .await
                        .unwrap_or_else(|_| serde_json::json!({"id": id, "status": m.status}));
                    feed.send_replace(Some(Snapshot {
                        json: Arc::new(json.to_string()),
                        done,
                    }));
                    last = Some(key);
                }
                done
            }
            // Gone (deleted account), or the database is away: streams end; clients reconnect.
            Err(e) => {
                tracing::warn!(id, error = %e, "progress poll failed");
                true
            }
        };
        if done {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL_EVERY) => {}
            _ = feed.closed() => break,
        }
    }
    ferry.progress.forget(id, &feed);
}

/// The row without what changes on its own (the lease's heartbeat).
fn change_key(m: &crate::store::InboxMigration) -> String {
    let mut row = serde_json::to_value(m).unwrap_or_default();
    if let Some(row) = row.as_object_mut() {
        row.remove("lease_expires_at");
    }
    row.to_string()
}

/// One event of a migration's stream: `progress` with the migration (as the API shows it) whenever it
/// changed, then `done` once it and any revert of it ended.
pub struct ProgressEvent {
    pub name: &'static str,
    pub data: Arc<String>,
}

/// The migration's events, the current snapshot first; every stream of a migration shares one poll. Refused
/// when the migration or the node already has as many streams as configured.
pub fn events(
    ferry: &Ferry,
    id: i64,
) -> Result<impl futures::Stream<Item = ProgressEvent> + Send + use<>, Busy> {
    let subscription = ferry.progress.subscribe(ferry, id)?;
    Ok(futures::stream::unfold(
        (subscription, true),
        |(mut subscription, open)| async move {
            if !open {
                return None;
            }
            // Each change in turn; the poller's end (sender gone) ends the stream.
            loop {
                let snapshot = subscription.receiver.borrow_and_update().clone();
                if let Some(snapshot) = snapshot {
                    let name = if snapshot.done { "done" } else { "progress" };
                    let event = ProgressEvent {
                        name,
                        data: snapshot.json,
                    };
                    return Some((event, (subscription, !snapshot.done)));
                }
                subscription.receiver.changed().await.ok()?;
            }
        },
    ))
}
