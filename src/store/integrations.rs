//! Storage of `integrations`: one row per provider connection, routed by the SHA-256 of its webhook token
//! (SPEC 4.3). Token and provider secrets are sealed by the caller, bound to the row id.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Result, Sealer};

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Integration {
    pub id: i64,
    pub account_id: i64,
    pub inbox_id: Option<i64>,
    pub provider: String,
    pub instance_name: Option<String>,
    pub phone_number_id: Option<String>,
    pub token_prefix: Option<String>,
    pub previous_token_expires_at: Option<DateTime<Utc>>,
    pub status: String,
    pub enabled: bool,
    pub config: sqlx::types::Json<serde_json::Value>,
    pub legacy_hits: i64,
    pub last_legacy_hit_at: Option<DateTime<Utc>>,
    pub cutover_state: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(skip)]
    pub token_ciphertext: Option<Vec<u8>>,
    #[serde(skip)]
    pub secrets_ciphertext: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
pub struct NewIntegration {
    pub account_id: i64,
    pub inbox_id: i64,
    pub provider: &'static str,
    pub instance_name: Option<String>,
    pub phone_number_id: Option<String>,
    pub config: serde_json::Value,
}

/// What a webhook needs to be routed: the integration's id and where its messages go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, sqlx::FromRow)]
pub struct TokenRoute {
    pub integration_id: i64,
    pub account_id: i64,
    pub inbox_id: Option<i64>,
    pub provider: String,
    pub enabled: bool,
    /// Set when the token is the previous one of a rotation: it routes until then.
    pub expires_at: Option<DateTime<Utc>>,
    /// The sealed provider secrets (signature keys), cached with the route so verifying costs no query.
    #[serde(skip)]
    pub secrets_ciphertext: Option<Vec<u8>>,
}

#[async_trait]
pub trait IntegrationStore: Send + Sync {
    /// Inserts the row, then seals the token (and the secrets, if any) bound to its id, in one transaction.
    async fn create_integration(
        &self,
        new: &NewIntegration,
        token_hash: &[u8],
        token_prefix: &str,
        seal_token: Sealer<'_>,
        seal_secrets: Option<Sealer<'_>>,
    ) -> Result<Integration>;
    async fn get_integration(&self, account_id: i64, id: i64) -> Result<Integration>;
    /// The account an integration belongs to (the CLI names integrations by id alone).
    async fn integration_account(&self, id: i64) -> Result<i64>;
    async fn list_integrations(&self, account_id: i64) -> Result<Vec<Integration>>;
    /// The current token becomes the previous one, routing until `previous_expires_at`; the new one routes now.
    async fn rotate_integration_token(
        &self,
        account_id: i64,
        id: i64,
        token_hash: &[u8],
        token_prefix: &str,
        seal_token: Sealer<'_>,
        previous_expires_at: DateTime<Utc>,
    ) -> Result<Integration>;
    async fn set_integration_enabled(
        &self,
        account_id: i64,
        id: i64,
        enabled: bool,
    ) -> Result<Integration>;
    /// The route of an integration by id (replaying a dead letter, which names its integration).
    async fn route_of_integration(&self, id: i64) -> Result<Option<TokenRoute>>;
    /// The route of a token by its SHA-256: the current token, or the previous one until it expires.
    async fn route_by_token_hash(
        &self,
        token_hash: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Option<TokenRoute>>;
}

macro_rules! integration_select {
    () => {
        "SELECT id, account_id, inbox_id, provider, instance_name, phone_number_id, token_prefix, \
         previous_token_expires_at, status, enabled, config, legacy_hits, last_legacy_hit_at, cutover_state, \
         created_at, updated_at, token_ciphertext, secrets_ciphertext FROM integrations "
    };
}

macro_rules! impl_integration_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::IntegrationStore for $store {
            async fn create_integration(
                &self,
                new: &NewIntegration,
                token_hash: &[u8],
                token_prefix: &str,
                seal_token: Sealer<'_>,
                seal_secrets: Option<Sealer<'_>>,
            ) -> Result<Integration> {
                let mut tx = self.pool.begin().await?;
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO integrations (account_id, inbox_id, provider, instance_name, phone_number_id, \
                     token_hash, token_prefix, config, status, cutover_state) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'active', 'token') RETURNING id",
                )
                .bind(new.account_id)
                .bind(new.inbox_id)
                .bind(new.provider)
                .bind(&new.instance_name)
                .bind(&new.phone_number_id)
                .bind(token_hash)
                .bind(token_prefix)
                .bind(sqlx::types::Json(&new.config))
                .fetch_one(&mut *tx)
                .await?;
                sqlx::query("UPDATE integrations SET token_ciphertext = $1, secrets_ciphertext = $2 WHERE id = $3")
                    .bind(seal_token(id))
                    .bind(seal_secrets.map(|seal| seal(id)))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                self.get_integration(new.account_id, id).await
            }

            async fn get_integration(&self, account_id: i64, id: i64) -> Result<Integration> {
                sqlx::query_as(concat!(integration_select!(), "WHERE account_id = $1 AND id = $2"))
                    .bind(account_id)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?
                    .ok_or(StoreError::NotFound("integration"))
            }

            async fn integration_account(&self, id: i64) -> Result<i64> {
                sqlx::query_scalar("SELECT account_id FROM integrations WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?
                    .ok_or(StoreError::NotFound("integration"))
            }

            async fn list_integrations(&self, account_id: i64) -> Result<Vec<Integration>> {
                Ok(sqlx::query_as(concat!(integration_select!(), "WHERE account_id = $1 ORDER BY id"))
                    .bind(account_id)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn rotate_integration_token(
                &self,
                account_id: i64,
                id: i64,
                token_hash: &[u8],
                token_prefix: &str,
                seal_token: Sealer<'_>,
                previous_expires_at: DateTime<Utc>,
            ) -> Result<Integration> {
                let done = sqlx::query(
                    "UPDATE integrations SET previous_token_hash = token_hash, previous_token_expires_at = $1, \
                     token_hash = $2, token_prefix = $3, token_ciphertext = $4, updated_at = $5 \
                     WHERE account_id = $6 AND id = $7",
                )
                .bind(previous_expires_at)
                .bind(token_hash)
                .bind(token_prefix)
                .bind(seal_token(id))
                .bind(chrono::Utc::now())
                .bind(account_id)
                .bind(id)
                .execute(&self.pool)
                .await?;
                self.updated_integration(done.rows_affected(), account_id, id).await
            }

            async fn set_integration_enabled(&self, account_id: i64, id: i64, enabled: bool) -> Result<Integration> {
                let done = sqlx::query("UPDATE integrations SET enabled = $1, updated_at = $2 WHERE account_id = $3 AND id = $4")
                    .bind(enabled)
                    .bind(chrono::Utc::now())
                    .bind(account_id)
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                self.updated_integration(done.rows_affected(), account_id, id).await
            }

            async fn route_of_integration(&self, id: i64) -> Result<Option<TokenRoute>> {
                Ok(sqlx::query_as(
                    "SELECT id AS integration_id, account_id, inbox_id, provider, enabled, \
                     CASE WHEN 1 = 0 THEN previous_token_expires_at END AS expires_at, secrets_ciphertext \
                     FROM integrations WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn route_by_token_hash(&self, token_hash: &[u8], now: DateTime<Utc>) -> Result<Option<TokenRoute>> {
                Ok(sqlx::query_as(
                    "SELECT id AS integration_id, account_id, inbox_id, provider, enabled, \
                     CASE WHEN token_hash = $1 THEN NULL ELSE previous_token_expires_at END AS expires_at, secrets_ciphertext \
                     FROM integrations WHERE token_hash = $1 \
                     UNION ALL \
                     SELECT id, account_id, inbox_id, provider, enabled, previous_token_expires_at, secrets_ciphertext \
                     FROM integrations WHERE previous_token_hash = $1 AND previous_token_expires_at > $2",
                )
                .bind(token_hash)
                .bind(now)
                .fetch_optional(&self.pool)
                .await?)
            }
        }

        impl $store {
            /// The integration as an UPDATE of `rows` rows left it: not found when it matched none.
            async fn updated_integration(&self, rows: u64, account_id: i64, id: i64) -> Result<Integration> {
                if rows == 0 {
                    return Err(StoreError::NotFound("integration"));
                }
                $crate::store::IntegrationStore::get_integration(self, account_id, id).await
            }
        }
    };
}

pub(super) use {impl_integration_store, integration_select};
