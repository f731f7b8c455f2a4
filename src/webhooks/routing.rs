//! Token → integration, with zero database queries on a cache hit (README: "Routing cache and metrics"): an in-process cache keyed by the
//! token's SHA-256 (never the raw token), bounded, with a TTL, and negative entries for unknown tokens so a
//! scanner cannot turn into database load. Rotation, disable and enable invalidate the integration's entries.
//!
//! With Redis (`FERRY_REDIS_URL`) a shared second level sits between the two: a node that has not seen a token
//! asks Redis before the database, and every invalidation is deleted there and published to every node, whose
//! subscriber drops its own entries. Pub/sub is at-most-once: a node that lost its subscription drops its whole
//! cache when it resubscribes, and the TTL bounds what a lost message can leave behind.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use moka::future::Cache;
use redis::AsyncCommands;

use crate::domain::WebhookToken;
use crate::store::{Store, StoreError, TokenRoute};

type Key = [u8; 32];

/// Tries of an invalidation's publish (about 6 s in all) before other nodes are left to their TTL.
const PUBLISH_ATTEMPTS: u32 = 6;

pub struct TokenRoutes {
    cache: Cache<Key, Option<TokenRoute>>,
    /// (account, provider, phone_number_id) → the integration owning that business number: Cloud and 360dialog
    /// deliver every number of an app or WABA to one URL, each `value` is routed by its number. Dropped whole
    /// on any invalidation (integrations change rarely).
    numbers: Cache<(i64, String, String), Option<TokenRoute>>,
    /// Counts the drops of `numbers`: a lookup that raced with one is not cached (it may predate the change).
    numbers_generation: AtomicU64,
    /// The cached token hashes of each integration (at most its current and previous token), so that an
    /// invalidation removes exactly those entries, at once.
    keys: Mutex<HashMap<i64, Vec<Key>>>,
    ttl: Duration,
    lookups: AtomicU64,
    hits: AtomicU64,
    shared: Option<Shared>,
}

/// The Redis level: entries `{prefix}:route:{hex}` (JSON of the route, `null` for an unknown token), the set
/// `{prefix}:route-keys:{integration}` of an integration's entries, and the channel `{prefix}:route-invalidate`.
struct Shared {
    client: redis::Client,
    conn: redis::aio::ConnectionManager,
    prefix: String,
    hits: AtomicU64,
}

/// What a node tells the others to drop.
enum Invalidation {
    Integration(i64),
    Token(Key),
    All,
}

impl Invalidation {
    fn encode(&self) -> String {
        match self {
            Invalidation::Integration(id) => format!("integration:{id}"),
            Invalidation::Token(key) => format!("token:{}", hex::encode(key)),
            Invalidation::All => "all".into(),
        }
    }

    fn decode(s: &str) -> Option<Self> {
        match s.split_once(':') {
            Some(("integration", id)) => id.parse().ok().map(Invalidation::Integration),
            Some(("token", key)) => hex::decode(key)
                .ok()
                .and_then(|k| k.try_into().ok())
                .map(Invalidation::Token),
            None if s == "all" => Some(Invalidation::All),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot use Redis at {url}: {source}")]
pub struct RedisError {
    url: String,
    source: redis::RedisError,
}

impl TokenRoutes {
    /// `ttl` bounds how long another node's change can go unseen without Redis invalidation.
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
            numbers: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
            numbers_generation: AtomicU64::new(0),
            keys: Mutex::new(HashMap::new()),
            ttl,
            lookups: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            shared: None,
        }
    }

    /// Adds the Redis level and starts this node's invalidation subscriber (it stops when the routes are
    /// dropped).
    pub async fn with_redis(mut self, url: &str, prefix: &str) -> Result<Arc<Self>, RedisError> {
        let failed = |source| RedisError {
            url: crate::config::redact_url(url),
            source,
        };
        let client = redis::Client::open(url).map_err(failed)?;
        let conn = client.get_connection_manager().await.map_err(failed)?;
        // Subscribed before the first lookup, so no invalidation published after it can be missed.
        let pubsub = subscribe(&client, prefix).await.map_err(failed)?;
        self.shared = Some(Shared {
            client,
            conn,
            prefix: prefix.to_owned(),
            hits: AtomicU64::new(0),
        });
        let routes = Arc::new(self);
        tokio::spawn(listen(Arc::downgrade(&routes), pubsub));
        Ok(routes)
    }

    /// The route of `token`, or None when it is unknown or its rotation overlap has ended.
    pub async fn resolve(
        &self,
        store: &dyn Store,
        token: &WebhookToken,
    ) -> Result<Option<TokenRoute>, StoreError> {
        let key = token.hash();
        let now = Utc::now();
        let entry = match self.cache.get(&key).await {
            Some(entry) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                entry
            }
            None => {
                let found = match self.shared_get(&key).await {
                    Some(entry) => entry,
                    None => {
                        self.lookups.fetch_add(1, Ordering::Relaxed);
                        let found = store.route_by_token_hash(&key, now).await?;
                        self.shared_put(&key, &found).await;
                        found
                    }
                };
                self.remember(&key, &found);
                self.cache.insert(key, found.clone()).await;
                found
            }
        };
        Ok(match entry {
            // A previous token cached before its overlap ended.
            Some(route) if route.expires_at.is_some_and(|at| at <= now) => {
                self.cache.invalidate(&key).await;
                None
            }
            other => other,
        })
    }

    /// The route of the integration of `provider` in the account that owns the business number; cached like
    /// tokens (a hit costs no query), unknown numbers included.
    pub async fn resolve_number(
        &self,
        store: &dyn Store,
        account_id: i64,
        provider: &str,
        phone_number_id: &str,
    ) -> Result<Option<TokenRoute>, StoreError> {
        let key = (account_id, provider.to_owned(), phone_number_id.to_owned());
        if let Some(entry) = self.numbers.get(&key).await {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(entry);
        }
        self.lookups.fetch_add(1, Ordering::Relaxed);
        let generation = self.numbers_generation.load(Ordering::SeqCst);
        let found = store
            .route_by_phone_number_id(account_id, provider, phone_number_id)
            .await?;
        if self.numbers_generation.load(Ordering::SeqCst) == generation {
            self.numbers.insert(key.clone(), found.clone()).await;
            // A drop between the check and the insert: the entry goes too.
            if self.numbers_generation.load(Ordering::SeqCst) != generation {
                self.numbers.invalidate(&key).await;
            }
        }
        Ok(found)
    }

    fn remember(&self, key: &Key, found: &Option<TokenRoute>) {
        if let Some(id) = found.as_ref().and_then(|route| route.integration_id) {
            let mut keys = self.keys.lock().expect("not poisoned");
            let known = keys.entry(id).or_default();
            if !known.contains(key) {
                known.push(*key);
            }
        }
    }

    /// Drops every cached route of the integration (rotate, disable, enable), here and on every node.
    pub async fn invalidate_integration(&self, integration_id: i64) {
        // Redis first: dropped locally before, the entry could come straight back from Redis.
        let what = Invalidation::Integration(integration_id);
        self.publish(&what).await;
        self.drop_local(&what).await;
    }

    /// Drops a cached answer for one token (a new token might have been probed, and negatively cached, before).
    pub async fn invalidate_token(&self, token: &WebhookToken) {
        let what = Invalidation::Token(token.hash());
        self.publish(&what).await;
        self.drop_local(&what).await;
    }

    /// Drops every cached route: where integrations' messages go changed (an inbox migration redirecting its
    /// source completed or was reverted).
    pub async fn invalidate_all(&self) {
        self.publish(&Invalidation::All).await;
        self.drop_local(&Invalidation::All).await;
    }

    async fn drop_local(&self, what: &Invalidation) {
        if !matches!(what, Invalidation::Token(_)) {
            self.numbers_generation.fetch_add(1, Ordering::SeqCst);
            self.numbers.invalidate_all();
        }
        match what {
            Invalidation::Integration(id) => {
                let keys = self
                    .keys
                    .lock()
                    .expect("not poisoned")
                    .remove(id)
                    .unwrap_or_default();
                for key in keys {
                    self.cache.invalidate(&key).await;
                }
            }
            Invalidation::Token(key) => self.cache.invalidate(key).await,
            Invalidation::All => {
                self.keys.lock().expect("not poisoned").clear();
                self.cache.invalidate_all();
            }
        }
    }

    /// Database lookups so far: a cache hit adds none.
    pub fn lookups(&self) -> u64 {
        self.lookups.load(Ordering::Relaxed)
    }

    /// Answers served from the in-process cache (including negative ones).
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Answers served from Redis (in-process misses that needed no database).
    pub fn shared_hits(&self) -> u64 {
        self.shared
            .as_ref()
            .map_or(0, |s| s.hits.load(Ordering::Relaxed))
    }

    /// Whether Redis answers (None without Redis).
    pub async fn redis_ping(&self) -> Option<bool> {
        let shared = self.shared.as_ref()?;
        let mut conn = shared.conn.clone();
        Some(
            redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .is_ok(),
        )
    }

    // Redis failures never fail a webhook: the database is the truth, Redis only spares it.

    async fn shared_get(&self, key: &Key) -> Option<Option<TokenRoute>> {
        let shared = self.shared.as_ref()?;
        let mut conn = shared.conn.clone();
        match conn.get::<_, Option<String>>(shared.entry(key)).await {
            Ok(Some(json)) => match serde_json::from_str(&json) {
                Ok(entry) => {
                    shared.hits.fetch_add(1, Ordering::Relaxed);
                    Some(entry)
                }
                // Only ferry writes these keys; anything else is ignored, never trusted.
                Err(_) => None,
            },
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "Redis route lookup failed; asking the database");
                None
            }
        }
    }

    async fn shared_put(&self, key: &Key, found: &Option<TokenRoute>) {
        let Some(shared) = self.shared.as_ref() else {
            return;
        };
        let Ok(json) = serde_json::to_string(found) else {
            return;
        };
        let ttl = self.ttl.as_secs().max(1);
        let mut pipe = redis::pipe();
        pipe.set_ex(shared.entry(key), json, ttl).ignore();
        if let Some(id) = found.as_ref().and_then(|r| r.integration_id) {
            let set = shared.integration_set(id);
            pipe.sadd(&set, hex::encode(key))
                .ignore()
                .expire(&set, ttl as i64)
                .ignore();
        }
        let mut conn = shared.conn.clone();
        if let Err(e) = pipe.query_async::<()>(&mut conn).await {
            tracing::warn!(error = %e, "Redis route not cached");
        }
    }

    /// Deletes the shared entries and tells the other nodes. A failure (Redis restarting: the first command on
    /// a broken connection fails, the connection manager then reconnects) is retried for a few seconds, so the
    /// invalidation is not lost; other nodes whose subscription broke meanwhile drop everything on resubscribing.
    async fn publish(&self, what: &Invalidation) {
        let Some(shared) = self.shared.as_ref() else {
            return;
        };
        let mut pause = Duration::from_millis(100);
        for attempt in 1..=PUBLISH_ATTEMPTS {
            match self.publish_once(shared, what).await {
                Ok(()) => return,
                Err(e) if attempt == PUBLISH_ATTEMPTS => {
                    // Other nodes keep their entries until the TTL ends.
                    tracing::error!(error = %e, attempt, "Redis route invalidation failed");
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "Redis route invalidation failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    async fn publish_once(&self, shared: &Shared, what: &Invalidation) -> redis::RedisResult<()> {
        let mut conn = shared.conn.clone();
        let deleted = match what {
            Invalidation::Integration(id) => {
                let set = shared.integration_set(*id);
                match conn.smembers::<_, Vec<String>>(&set).await {
                    Ok(members) => {
                        let mut keys: Vec<String> = members
                            .iter()
                            .map(|hex| format!("{}:route:{hex}", shared.prefix))
                            .collect();
                        keys.push(set);
                        conn.del::<_, ()>(keys).await
                    }
                    Err(e) => Err(e),
                }
            }
            Invalidation::Token(key) => conn.del::<_, ()>(shared.entry(key)).await,
            Invalidation::All => shared.delete_all_entries().await,
        };
        deleted?;
        conn.publish::<_, _, ()>(shared.channel(), what.encode())
            .await
    }
}

impl Shared {
    fn entry(&self, key: &Key) -> String {
        format!("{}:route:{}", self.prefix, hex::encode(key))
    }

    fn integration_set(&self, id: i64) -> String {
        format!("{}:route-keys:{id}", self.prefix)
    }

    fn channel(&self) -> String {
        format!("{}:route-invalidate", self.prefix)
    }

    async fn delete_all_entries(&self) -> redis::RedisResult<()> {
        let mut scan = self.conn.clone();
        let pattern = format!("{}:route*", self.prefix);
        let keys: Vec<String> = {
            let mut iter = scan.scan_match::<_, String>(pattern).await?;
            let mut keys = Vec::new();
            while let Some(key) = iter.next_item().await {
                keys.push(key?);
            }
            keys
        };
        let mut conn = self.conn.clone();
        for chunk in keys.chunks(500) {
            conn.del::<_, ()>(chunk).await?;
        }
        Ok(())
    }
}

async fn subscribe(client: &redis::Client, prefix: &str) -> redis::RedisResult<redis::aio::PubSub> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub
        .subscribe(format!("{prefix}:route-invalidate"))
        .await?;
    Ok(pubsub)
}

/// This node's subscriber: applies other nodes' invalidations; resubscribes after a lost connection and then
/// drops everything, since messages published meanwhile are gone.
async fn listen(routes: Weak<TokenRoutes>, mut pubsub: redis::aio::PubSub) {
    loop {
        {
            let mut messages = pubsub.on_message();
            while let Some(msg) = messages.next().await {
                let Some(routes) = routes.upgrade() else {
                    return;
                };
                if let Some(what) = msg
                    .get_payload::<String>()
                    .ok()
                    .as_deref()
                    .and_then(Invalidation::decode)
                {
                    routes.drop_local(&what).await;
                }
            }
        }
        tracing::warn!("Redis invalidation subscription lost; resubscribing");
        pubsub = loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let Some(routes) = routes.upgrade() else {
                return;
            };
            let shared = routes.shared.as_ref().expect("listening means shared");
            if let Ok(pubsub) = subscribe(&shared.client, &shared.prefix).await {
                routes.drop_local(&Invalidation::All).await;
                break pubsub;
            }
        };
    }
}
