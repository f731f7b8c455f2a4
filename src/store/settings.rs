//! Installation-wide settings kept in the database (table `settings`), so that every process (the server, a
//! worker, the CLI on another machine) agrees on them: the public URL webhook addresses are built from, whether
//! the legacy webhook route is served.

use async_trait::async_trait;

use super::Result;
use super::db::{SqlStore, db_run};

#[async_trait]
pub trait SettingsStore: Send + Sync {
    async fn get_setting(&self, key: &str) -> Result<Option<String>>;
    async fn set_setting(&self, key: &str, value: &str) -> Result<()>;
}

#[async_trait]
impl SettingsStore for SqlStore {
    async fn get_setting(&self, key: &str) -> Result<Option<String>> {
        Ok(db_run!(self.pool(), |c| sqlx::query_scalar(
            "SELECT value FROM settings WHERE key = $1"
        )
        .bind(key)
        .fetch_optional(c)
        .await)?)
    }

    async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        db_run!(self.pool(), |c| {
            sqlx::query(
            "INSERT INTO settings (key, value, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
        )
        .bind(key)
        .bind(value)
        .bind(chrono::Utc::now())
        .execute(c)
        .await
        .map(|r| r.rows_affected())
        })?;
        Ok(())
    }
}
