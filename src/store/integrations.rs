//! Storage of `integrations`: one row per provider connection, routed by the SHA-256 of its webhook token
//! (README: "Integrations and webhook tokens"). Token and provider secrets are sealed by the caller, bound to the row id.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::db::{SqlStore, db_run};
use super::{IntegrationStatus, Result, Sealer, StoreError};

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
    pub status: IntegrationStatus,
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
    /// None on the legacy route for an instance that has no integration yet.
    pub integration_id: Option<i64>,
    pub account_id: i64,
    /// The integration's own inbox: the scope of de-duplication keys, the same before and after a redirect.
    pub origin_inbox_id: Option<i64>,
    /// Where messages are stored: the origin, or the destination of a completed redirecting inbox migration.
    pub inbox_id: Option<i64>,
    /// The channel of `inbox_id` (the native `source_id` format of new contacts).
    pub channel_type: Option<String>,
    pub provider: String,
    pub enabled: bool,
    /// Set when the token is the previous one of a rotation: it routes until then.
    pub expires_at: Option<DateTime<Utc>>,
    /// The sealed provider secrets (signature keys), cached with the route so verifying costs no query (sealed
    /// bound to the integration: a cache holding it learns nothing).
    pub secrets_ciphertext: Option<Vec<u8>>,
    /// The business number (Cloud, 360dialog) whose `value`s this integration stores.
    #[serde(default)]
    pub phone_number_id: Option<String>,
    /// The Evolution instance whose events this integration stores.
    #[serde(default)]
    pub instance_name: Option<String>,
    /// The account folds the Brazilian ninth digit when matching customers.
    #[serde(default)]
    pub merge_brazil_ninth_digit: bool,
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
    /// The route of the integration of `provider` in the account that owns the business number
    /// `phone_number_id` (Cloud and 360dialog deliver every number of an app or WABA to one URL).
    async fn route_by_phone_number_id(
        &self,
        account_id: i64,
        provider: &str,
        phone_number_id: &str,
    ) -> Result<Option<TokenRoute>>;
    /// The route of a token by its SHA-256: the current token, or the previous one until it expires.
    async fn route_by_token_hash(
        &self,
        token_hash: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Option<TokenRoute>>;
    /// Whether the legacy by-instance-name route is served (setting `legacy_webhook_route`, on by default).
    async fn legacy_route_enabled(&self) -> Result<bool>;
    async fn set_legacy_route_enabled(&self, enabled: bool) -> Result<()>;
    /// The legacy route of an Evolution instance (README: "Cutting over from the legacy layout"): `evolution_instances` → organization → account →
    /// the account's Evolution inbox with the instance's phone number, or its only Evolution inbox.
    async fn route_by_instance_name(&self, instance_name: &str) -> Result<Option<TokenRoute>>;
    /// Counts one legacy-route hit of the instance (per UTC day) and on its integration, if it has one.
    async fn record_legacy_hit(
        &self,
        instance_name: &str,
        integration_id: Option<i64>,
        at: DateTime<Utc>,
    ) -> Result<()>;
    /// Legacy-route hits per instance since `since` (a UTC day), busiest first.
    async fn legacy_hits_since(&self, since: chrono::NaiveDate) -> Result<Vec<LegacyHits>>;
    /// Every `evolution_instances` row with the account its organization maps to (None: unmapped).
    async fn legacy_instances(&self) -> Result<Vec<LegacyInstanceRow>>;
    /// Every `whatsapp_business_configs` row with the account its organization maps to.
    async fn legacy_business_configs(&self) -> Result<Vec<LegacyConfigRow>>;
    /// The integration of `provider` keyed by `key` (the instance name for Evolution, else the phone number id).
    async fn integration_by_key(&self, provider: &str, key: &str) -> Result<Option<Integration>>;
    /// Every row of the legacy tables, whole (secrets included), as `(table, row)` for the cleanup's backup.
    async fn legacy_backup_rows(&self) -> Result<Vec<(&'static str, serde_json::Value)>>;
    /// Drops the legacy tables (irreversible: the cleanup's last step, after its backup).
    async fn drop_legacy_tables(&self) -> Result<()>;
    /// Whether the legacy tables still exist (false after the cleanup).
    async fn legacy_tables_exist(&self) -> Result<bool>;
    /// `legacy` (provider still posts to the legacy URL), `token` (re-pointed) or `failed`.
    async fn set_integration_cutover_state(&self, id: i64, state: &str) -> Result<()>;
    /// Removes the synthetic messages `ferry integrations test` sent (provider id `source_id`, sender
    /// `wa_identity`), with the conversation, contact_inbox and contact they alone needed. Returns how many
    /// messages went.
    async fn delete_test_messages(
        &self,
        account_id: i64,
        source_id: &str,
        wa_identity: &str,
    ) -> Result<u64>;
    /// Every integration of the installation (the cut-over works across accounts).
    async fn all_integrations(&self) -> Result<Vec<Integration>>;
    /// Deletes an inbox nothing uses yet (no conversation, contact or integration); false otherwise.
    async fn delete_unused_inbox(&self, account_id: i64, inbox_id: i64) -> Result<bool>;
    /// Sets what the cut-over's migrate maps from a legacy row; false when nothing changed.
    async fn set_integration_from_legacy(
        &self,
        id: i64,
        status: IntegrationStatus,
        config: &serde_json::Value,
    ) -> Result<bool>;
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct BackupOrganization {
    pub organization_id: String,
    pub account_id: i64,
    pub name: Option<String>,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct BackupInstance {
    pub id: i64,
    pub instance_name: String,
    pub organization_id: String,
    pub status: String,
    pub phone_number: Option<String>,
    pub api_url: Option<String>,
    pub api_key: Option<String>,
    pub webhook_url: Option<String>,
    pub owner_jid: Option<String>,
    pub profile_name: Option<String>,
    pub error_message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct BackupBusinessConfig {
    pub id: i64,
    pub organization_id: String,
    pub provider: String,
    pub phone_number_id: String,
    pub phone_number: Option<String>,
    pub business_account_id: Option<String>,
    pub access_token: Option<String>,
    pub app_secret: Option<String>,
    pub verify_token: Option<String>,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct LegacyInstanceRow {
    pub instance_name: String,
    pub organization_id: String,
    pub status: String,
    pub phone_number: Option<String>,
    pub api_url: Option<String>,
    #[serde(skip)]
    pub api_key: Option<String>,
    pub account_id: Option<i64>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct LegacyConfigRow {
    pub organization_id: String,
    pub provider: String,
    pub phone_number_id: String,
    pub phone_number: Option<String>,
    #[serde(skip)]
    pub access_token: Option<String>,
    #[serde(skip)]
    pub app_secret: Option<String>,
    #[serde(skip)]
    pub verify_token: Option<String>,
    pub status: String,
    pub account_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct LegacyHits {
    pub instance_name: String,
    pub hits: i64,
    pub last_hit_at: DateTime<Utc>,
}

/// The integrations a token hash routes: its current token, or its previous one until the overlap ends.
pub(crate) const ROUTES_BY_TOKEN_HASH: &str = "WITH routes AS (\
     SELECT id AS integration_id, account_id, inbox_id, provider, enabled, \
     CASE WHEN token_hash = $1 THEN NULL ELSE previous_token_expires_at END AS expires_at, secrets_ciphertext \
     FROM integrations WHERE token_hash = $1 \
     UNION ALL \
     SELECT id, account_id, inbox_id, provider, enabled, previous_token_expires_at, secrets_ciphertext \
     FROM integrations WHERE previous_token_hash = $1 AND previous_token_expires_at > $2) ";

pub(crate) const ROUTES_BY_PHONE_NUMBER_ID: &str = "WITH routes AS (\
     SELECT id AS integration_id, account_id, inbox_id, provider, enabled, \
     CASE WHEN 1 = 0 THEN previous_token_expires_at END AS expires_at, secrets_ciphertext \
     FROM integrations WHERE account_id = $1 AND provider = $2 AND phone_number_id = $3) ";

pub(crate) const ROUTES_BY_ID: &str = "WITH routes AS (\
     SELECT id AS integration_id, account_id, inbox_id, provider, enabled, \
     CASE WHEN 1 = 0 THEN previous_token_expires_at END AS expires_at, secrets_ciphertext \
     FROM integrations WHERE id = $1) ";

/// The legacy tables resolve the instance; once it was migrated to an integration, that integration decides
/// (its inbox, whether it is enabled) and counts the hit, so both URLs store into the same inbox.
pub(crate) const ROUTES_BY_INSTANCE_NAME: &str = "WITH routes AS (\
     SELECT g.id AS integration_id, COALESCE(g.account_id, oa.account_id) AS account_id, \
     COALESCE(g.inbox_id, \
       (SELECT MIN(ib.id) FROM inboxes ib WHERE ib.account_id = oa.account_id AND ib.channel_type = 'evolution' \
         AND replace(ib.phone_number, '+', '') = replace(e.phone_number, '+', '')), \
       (SELECT MIN(ib.id) FROM inboxes ib WHERE ib.account_id = oa.account_id AND ib.channel_type = 'evolution' \
         HAVING COUNT(*) = 1)) AS inbox_id, \
     'evolution' AS provider, COALESCE(g.enabled, TRUE) AS enabled, \
     (SELECT x.previous_token_expires_at FROM integrations x WHERE 1 = 0) AS expires_at, \
     (SELECT x.secrets_ciphertext FROM integrations x WHERE 1 = 0) AS secrets_ciphertext \
     FROM evolution_instances e JOIN organization_accounts oa ON oa.organization_id = e.organization_id \
     LEFT JOIN integrations g ON g.provider = 'evolution' AND g.instance_name = e.instance_name \
     WHERE e.instance_name = $1) ";

macro_rules! integration_select {
    () => {
        "SELECT id, account_id, inbox_id, provider, instance_name, phone_number_id, token_prefix, \
         previous_token_expires_at, status, enabled, config, legacy_hits, last_legacy_hit_at, cutover_state, \
         created_at, updated_at, token_ciphertext, secrets_ciphertext FROM integrations "
    };
}

#[async_trait::async_trait]
impl IntegrationStore for SqlStore {
    async fn create_integration(
        &self,
        new: &NewIntegration,
        token_hash: &[u8],
        token_prefix: &str,
        seal_token: Sealer<'_>,
        seal_secrets: Option<Sealer<'_>>,
    ) -> Result<Integration> {
        let mut tx = self.pool().begin().await?;
        let id: i64 = db_run!(&mut tx, |c| {
            sqlx::query_scalar(
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
        .fetch_one(c).await
        })?;
        db_run!(&mut tx, |c| sqlx::query(
            "UPDATE integrations SET token_ciphertext = $1, secrets_ciphertext = $2 WHERE id = $3"
        )
        .bind(seal_token(id))
        .bind(seal_secrets.map(|seal| seal(id)))
        .bind(id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        tx.commit().await?;
        self.get_integration(new.account_id, id).await
    }

    async fn get_integration(&self, account_id: i64, id: i64) -> Result<Integration> {
        db_run!(self.pool(), |c| sqlx::query_as(concat!(
            integration_select!(),
            "WHERE account_id = $1 AND id = $2"
        ))
        .bind(account_id)
        .bind(id)
        .fetch_optional(c)
        .await)?
        .ok_or(StoreError::NotFound("integration"))
    }

    async fn integration_account(&self, id: i64) -> Result<i64> {
        db_run!(self.pool(), |c| sqlx::query_scalar(
            "SELECT account_id FROM integrations WHERE id = $1"
        )
        .bind(id)
        .fetch_optional(c)
        .await)?
        .ok_or(StoreError::NotFound("integration"))
    }

    async fn list_integrations(&self, account_id: i64) -> Result<Vec<Integration>> {
        Ok(db_run!(self.pool(), |c| sqlx::query_as(concat!(
            integration_select!(),
            "WHERE account_id = $1 ORDER BY id"
        ))
        .bind(account_id)
        .fetch_all(c)
        .await)?)
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
        let done = db_run!(self.pool(), |c| {
            sqlx::query(
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
        .execute(c).await.map(|r| r.rows_affected())
        })?;
        updated_integration(self, done, account_id, id).await
    }

    async fn set_integration_enabled(
        &self,
        account_id: i64,
        id: i64,
        enabled: bool,
    ) -> Result<Integration> {
        let done = db_run!(self.pool(), |c| {
            sqlx::query("UPDATE integrations SET enabled = $1, updated_at = $2 WHERE account_id = $3 AND id = $4")
            .bind(enabled)
            .bind(chrono::Utc::now())
            .bind(account_id)
            .bind(id)
            .execute(c).await.map(|r| r.rows_affected())
        })?;
        updated_integration(self, done, account_id, id).await
    }

    async fn route_of_integration(&self, id: i64) -> Result<Option<TokenRoute>> {
        let sql = format!(
            "{}{}",
            crate::store::integrations::ROUTES_BY_ID,
            self.pool().backend().route_sql()
        );
        Ok(db_run!(self.pool(), |c| sqlx::query_as(
            sqlx::AssertSqlSafe(sql)
        )
        .bind(id)
        .fetch_optional(c)
        .await)?)
    }

    async fn route_by_phone_number_id(
        &self,
        account_id: i64,
        provider: &str,
        phone_number_id: &str,
    ) -> Result<Option<TokenRoute>> {
        let sql = format!(
            "{}{}",
            crate::store::integrations::ROUTES_BY_PHONE_NUMBER_ID,
            self.pool().backend().route_sql()
        );
        Ok(db_run!(self.pool(), |c| sqlx::query_as(
            sqlx::AssertSqlSafe(sql)
        )
        .bind(account_id)
        .bind(provider)
        .bind(phone_number_id)
        .fetch_optional(c)
        .await)?)
    }

    async fn route_by_token_hash(
        &self,
        token_hash: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Option<TokenRoute>> {
        let sql = format!(
            "{}{}",
            crate::store::integrations::ROUTES_BY_TOKEN_HASH,
            self.pool().backend().route_sql()
        );
        Ok(db_run!(self.pool(), |c| sqlx::query_as(
            sqlx::AssertSqlSafe(sql)
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(c)
        .await)?)
    }

    async fn legacy_route_enabled(&self) -> Result<bool> {
        let value = super::SettingsStore::get_setting(self, "legacy_webhook_route").await?;
        Ok(value.as_deref() != Some("disabled"))
    }

    async fn set_legacy_route_enabled(&self, enabled: bool) -> Result<()> {
        let value = if enabled { "enabled" } else { "disabled" };
        super::SettingsStore::set_setting(self, "legacy_webhook_route", value).await
    }

    async fn route_by_instance_name(&self, instance_name: &str) -> Result<Option<TokenRoute>> {
        let sql = format!(
            "{}{}",
            crate::store::integrations::ROUTES_BY_INSTANCE_NAME,
            self.pool().backend().route_sql()
        );
        Ok(db_run!(self.pool(), |c| sqlx::query_as(
            sqlx::AssertSqlSafe(sql)
        )
        .bind(instance_name)
        .fetch_optional(c)
        .await)?)
    }

    async fn record_legacy_hit(
        &self,
        instance_name: &str,
        integration_id: Option<i64>,
        at: DateTime<Utc>,
    ) -> Result<()> {
        db_run!(self.pool(), |c| {
            sqlx::query(
            "INSERT INTO legacy_route_hits (instance_name, day, hits, last_hit_at) VALUES ($1, $2, 1, $3) \
             ON CONFLICT (instance_name, day) DO UPDATE SET hits = legacy_route_hits.hits + 1, \
             last_hit_at = excluded.last_hit_at",
        )
        .bind(instance_name)
        .bind(at.date_naive())
        .bind(at)
        .execute(c).await.map(|r| r.rows_affected())
        })?;
        if let Some(id) = integration_id {
            db_run!(self.pool(), |c| {
                sqlx::query("UPDATE integrations SET legacy_hits = legacy_hits + 1, last_legacy_hit_at = $1 WHERE id = $2")
                .bind(at)
                .bind(id)
                .execute(c).await.map(|r| r.rows_affected())
            })?;
        }
        Ok(())
    }

    async fn legacy_instances(&self) -> Result<Vec<crate::store::LegacyInstanceRow>> {
        Ok(db_run!(self.pool(), |c| {
            sqlx::query_as(
            "SELECT e.instance_name, e.organization_id, e.status, e.phone_number, e.api_url, e.api_key, \
             oa.account_id FROM evolution_instances e \
             LEFT JOIN organization_accounts oa ON oa.organization_id = e.organization_id ORDER BY e.instance_name",
        )
        .fetch_all(c).await
        })?)
    }

    async fn legacy_business_configs(&self) -> Result<Vec<crate::store::LegacyConfigRow>> {
        Ok(db_run!(self.pool(), |c| {
            sqlx::query_as(
            "SELECT c.organization_id, c.provider, c.phone_number_id, c.phone_number, c.access_token, \
             c.app_secret, c.verify_token, c.status, oa.account_id FROM whatsapp_business_configs c \
             LEFT JOIN organization_accounts oa ON oa.organization_id = c.organization_id \
             ORDER BY c.phone_number_id",
        )
        .fetch_all(c).await
        })?)
    }

    async fn integration_by_key(&self, provider: &str, key: &str) -> Result<Option<Integration>> {
        Ok(db_run!(self.pool(), |c| {
            sqlx::query_as(concat!(
            integration_select!(),
            "WHERE provider = $1 AND (CASE WHEN provider = 'evolution' THEN instance_name ELSE phone_number_id END) = $2"
        ))
        .bind(provider)
        .bind(key)
        .fetch_optional(c).await
        })?)
    }

    async fn legacy_backup_rows(&self) -> Result<Vec<(&'static str, serde_json::Value)>> {
        use crate::store::integrations::{
            BackupBusinessConfig, BackupInstance, BackupOrganization,
        };
        let mut rows = Vec::new();
        let organizations: Vec<BackupOrganization> = db_run!(self.pool(), |c| {
            sqlx::query_as("SELECT organization_id, account_id, name FROM organization_accounts ORDER BY organization_id")
                .fetch_all(c).await
        })?;
        rows.extend(
            organizations
                .iter()
                .map(|r| ("organization_accounts", serde_json::json!(r))),
        );
        let instances: Vec<BackupInstance> = db_run!(self.pool(), |c| {
            sqlx::query_as(
            "SELECT id, instance_name, organization_id, status, phone_number, api_url, api_key, webhook_url, \
             owner_jid, profile_name, error_message, created_at, updated_at FROM evolution_instances ORDER BY id",
        )
        .fetch_all(c).await
        })?;
        rows.extend(
            instances
                .iter()
                .map(|r| ("evolution_instances", serde_json::json!(r))),
        );
        let configs: Vec<BackupBusinessConfig> = db_run!(self.pool(), |c| {
            sqlx::query_as(
            "SELECT id, organization_id, provider, phone_number_id, phone_number, business_account_id, \
             access_token, app_secret, verify_token, status, created_at, updated_at \
             FROM whatsapp_business_configs ORDER BY id",
        )
        .fetch_all(c).await
        })?;
        rows.extend(
            configs
                .iter()
                .map(|r| ("whatsapp_business_configs", serde_json::json!(r))),
        );
        Ok(rows)
    }

    async fn drop_legacy_tables(&self) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        for table in [
            "evolution_instances",
            "whatsapp_business_configs",
            "organization_accounts",
        ] {
            db_run!(&mut tx, |c| sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP TABLE IF EXISTS {table}"
            )))
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn legacy_tables_exist(&self) -> Result<bool> {
        // Works on both: a missing table is an error, an empty one is not.
        Ok(db_run!(self.pool(), |c| sqlx::query(
            "SELECT 1 FROM evolution_instances LIMIT 1"
        )
        .fetch_optional(c)
        .await
        .map(|row| row.is_some()))
        .is_ok())
    }

    async fn set_integration_cutover_state(&self, id: i64, state: &str) -> Result<()> {
        db_run!(self.pool(), |c| sqlx::query(
            "UPDATE integrations SET cutover_state = $2, updated_at = $3 WHERE id = $1"
        )
        .bind(id)
        .bind(state)
        .bind(chrono::Utc::now())
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    async fn delete_test_messages(
        &self,
        account_id: i64,
        source_id: &str,
        wa_identity: &str,
    ) -> Result<u64> {
        let mut tx = self.pool().begin_write().await?;
        let gone = db_run!(&mut tx, |c| sqlx::query(
            "DELETE FROM messages WHERE account_id = $1 AND source_id = $2"
        )
        .bind(account_id)
        .bind(source_id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        for sql in [
            "DELETE FROM conversations WHERE account_id = $1 AND contact_inbox_id IN \
             (SELECT id FROM contact_inboxes WHERE wa_identity = $2) \
             AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = conversations.id)",
            "DELETE FROM contact_inboxes WHERE wa_identity = $2 AND contact_id IN \
             (SELECT id FROM contacts WHERE account_id = $1) \
             AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.contact_inbox_id = contact_inboxes.id)",
            "DELETE FROM contacts WHERE account_id = $1 AND phone_number = '+' || $2 \
             AND NOT EXISTS (SELECT 1 FROM contact_inboxes ci WHERE ci.contact_id = contacts.id) \
             AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.contact_id = contacts.id)",
        ] {
            db_run!(&mut tx, |c| sqlx::query(sql)
                .bind(account_id)
                .bind(wa_identity)
                .execute(c)
                .await
                .map(|r| r.rows_affected()))?;
        }
        tx.commit().await?;
        Ok(gone)
    }

    async fn all_integrations(&self) -> Result<Vec<Integration>> {
        Ok(db_run!(self.pool(), |c| sqlx::query_as(concat!(
            integration_select!(),
            "ORDER BY id"
        ))
        .fetch_all(c)
        .await)?)
    }

    async fn delete_unused_inbox(&self, account_id: i64, inbox_id: i64) -> Result<bool> {
        let done = db_run!(self.pool(), |c| sqlx::query(
            "DELETE FROM inboxes WHERE id = $1 AND account_id = $2 \
             AND NOT EXISTS (SELECT 1 FROM conversations WHERE inbox_id = $1) \
             AND NOT EXISTS (SELECT 1 FROM contact_inboxes WHERE inbox_id = $1) \
             AND NOT EXISTS (SELECT 1 FROM integrations WHERE inbox_id = $1)",
        )
        .bind(inbox_id)
        .bind(account_id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(done > 0)
    }

    async fn set_integration_from_legacy(
        &self,
        id: i64,
        status: IntegrationStatus,
        config: &serde_json::Value,
    ) -> Result<bool> {
        let done = db_run!(self.pool(), |c| sqlx::query(
            "UPDATE integrations SET status = $2, config = $3, updated_at = $4 \
             WHERE id = $1 AND (status <> $2 OR config <> $3)",
        )
        .bind(id)
        .bind(status)
        .bind(sqlx::types::Json(config))
        .bind(chrono::Utc::now())
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(done > 0)
    }

    async fn legacy_hits_since(
        &self,
        since: chrono::NaiveDate,
    ) -> Result<Vec<crate::store::LegacyHits>> {
        Ok(db_run!(self.pool(), |c| {
            sqlx::query_as(
            "SELECT instance_name, CAST(SUM(hits) AS BIGINT) AS hits, MAX(last_hit_at) AS last_hit_at FROM legacy_route_hits \
             WHERE day >= $1 GROUP BY instance_name ORDER BY SUM(hits) DESC, instance_name",
        )
        .bind(since)
        .fetch_all(c).await
        })?)
    }
}

/// The integration as an UPDATE of `rows` rows left it: not found when it matched none.
async fn updated_integration(
    store: &SqlStore,
    rows: u64,
    account_id: i64,
    id: i64,
) -> Result<Integration> {
    if rows == 0 {
        return Err(StoreError::NotFound("integration"));
    }
    store.get_integration(account_id, id).await
}
