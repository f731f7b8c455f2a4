//! Token → integration, with zero database queries on a cache hit (SPEC 4.2): an in-process cache keyed by the
//! token's SHA-256 (never the raw token), bounded, with a TTL, and negative entries for unknown tokens so a
//! scanner cannot turn into database load. Rotation, disable and enable invalidate the integration's entries.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use moka::future::Cache;

use crate::domain::WebhookToken;
use crate::store::{Store, StoreError, TokenRoute};

pub struct TokenRoutes {
    cache: Cache<[u8; 32], Option<TokenRoute>>,
    /// The cached token hashes of each integration (at most its current and previous token), so that an
    /// invalidation removes exactly those entries, at once.
    keys: Mutex<HashMap<i64, Vec<[u8; 32]>>>,
    lookups: AtomicU64,
    hits: AtomicU64,
}

impl TokenRoutes {
    /// `ttl` bounds how long another node's change can go unseen without Redis invalidation.
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
            keys: Mutex::new(HashMap::new()),
            lookups: AtomicU64::new(0),
            hits: AtomicU64::new(0),
        }
    }

    /// The route of `token`, or None when it is unknown or its rotation overlap has ended.
    pub async fn resolve(
        &self,
        store: &dyn Store,
        token: &WebhookToken,
    ) -> Result<Option<TokenRoute>, StoreError> {
        let key = token.hash();
        let now = Utc::now();
        if let Some(entry) = self.cache.get(&key).await {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(match entry {
                // A previous token cached before its overlap ended.
                Some(route) if route.expires_at.is_some_and(|at| at <= now) => {
                    self.cache.invalidate(&key).await;
                    None
                }
                other => other,
            });
        }
        self.lookups.fetch_add(1, Ordering::Relaxed);
        let found = store.route_by_token_hash(&key, now).await?;
        if let Some(id) = found.as_ref().and_then(|route| route.integration_id) {
            let mut keys = self.keys.lock().expect("not poisoned");
            let known = keys.entry(id).or_default();
            if !known.contains(&key) {
                known.push(key);
            }
        }
        self.cache.insert(key, found.clone()).await;
        Ok(found)
    }

    /// Drops every cached route of the integration (rotate, disable, enable).
    pub async fn invalidate_integration(&self, integration_id: i64) {
        let keys = self
            .keys
            .lock()
            .expect("not poisoned")
            .remove(&integration_id)
            .unwrap_or_default();
        for key in keys {
            self.cache.invalidate(&key).await;
        }
    }

    /// Drops every cached route: where integrations' messages go changed (an inbox migration redirecting its
    /// source completed or was reverted).
    pub async fn invalidate_all(&self) {
        self.keys.lock().expect("not poisoned").clear();
        self.cache.invalidate_all();
    }

    /// Drops a cached answer for one token (a new token might have been probed, and negatively cached, before).
    pub async fn invalidate_token(&self, token: &WebhookToken) {
        self.cache.invalidate(&token.hash()).await;
    }

    /// Database lookups so far: a cache hit adds none.
    pub fn lookups(&self) -> u64 {
        self.lookups.load(Ordering::Relaxed)
    }

    /// Answers served from the cache (including negative ones).
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}
