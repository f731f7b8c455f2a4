//! Storage of the web UI's sessions and failed sign-ins (README: "Web admin UI"). Tokens arrive hashed; nothing here ever
//! sees a session cookie.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::db::{SqlStore, db_run};
use super::{Account, Result, User};
use crate::domain::Role;

/// A signed-in browser: its user and the CSRF token its forms carry.
#[derive(Debug, Clone)]
pub struct WebSession {
    pub user: User,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

#[async_trait]
pub trait WebStore: Send + Sync {
    /// Stores a new session and drops the user's expired ones.
    async fn create_web_session(
        &self,
        token_hash: &[u8],
        user_id: i64,
        csrf_token: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<()>;
    /// The session of this token if it has not expired.
    async fn web_session(
        &self,
        token_hash: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Option<WebSession>>;
    async fn delete_web_session(&self, token_hash: &[u8]) -> Result<()>;
    /// Records a sign-in attempt as failed under a throttle key (until its password is verified and
    /// `clear_login_failures` runs) and answers how many failed in the key's current window (begun after
    /// `since`), this one included, and when that window began.
    async fn record_login_failure(
        &self,
        key: &str,
        now: DateTime<Utc>,
        since: DateTime<Utc>,
    ) -> Result<(i64, Option<DateTime<Utc>>)>;
    async fn clear_login_failures(&self, key: &str) -> Result<()>;
    /// Takes one attempt back from a key's count (a sign-in that turned out right), keeping the others.
    async fn forgive_login_attempt(&self, key: &str) -> Result<()>;
    /// The accounts a user has a role in, by name.
    async fn user_accounts(&self, user_id: i64) -> Result<Vec<(Account, Role)>>;
    /// The newest imported attachments of the account that could not be downloaded, with their reasons.
    async fn import_attachment_failures(
        &self,
        account_id: i64,
        limit: i64,
    ) -> Result<Vec<AttachmentFailure>>;
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttachmentFailure {
    pub id: i64,
    pub file_type: String,
    pub file_name: Option<String>,
    pub failure_reason: Option<String>,
    pub conversation_id: i64,
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
pub(super) struct SessionRow {
    id: i64,
    name: String,
    email: String,
    password_hash: String,
    installation_admin: bool,
    created_at: DateTime<Utc>,
    csrf_token: String,
    expires_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
pub(super) struct AccountRoleRow {
    #[sqlx(flatten)]
    pub(super) account: Account,
    pub(super) role: String,
}

#[async_trait::async_trait]
impl WebStore for SqlStore {
    async fn create_web_session(
        &self,
        token_hash: &[u8],
        user_id: i64,
        csrf_token: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        db_run!(&mut tx, |c| sqlx::query(
            "DELETE FROM web_sessions WHERE user_id = $1 AND expires_at <= $2"
        )
        .bind(user_id)
        .bind(now)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        db_run!(&mut tx, |c| sqlx::query(
            "INSERT INTO web_sessions (token_hash, user_id, csrf_token, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(csrf_token)
        .bind(now)
        .bind(expires_at)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        tx.commit().await?;
        Ok(())
    }

    async fn web_session(
        &self,
        token_hash: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Option<crate::store::WebSession>> {
        let row: Option<crate::store::web::SessionRow> = db_run!(self.pool(), |c| {
            sqlx::query_as(
            "SELECT u.id, u.name, u.email, u.password_hash, u.installation_admin, u.created_at, \
             s.csrf_token, s.expires_at FROM web_sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(c).await
        })?;
        Ok(row.map(crate::store::web::SessionRow::into_session))
    }

    async fn delete_web_session(&self, token_hash: &[u8]) -> Result<()> {
        db_run!(self.pool(), |c| sqlx::query(
            "DELETE FROM web_sessions WHERE token_hash = $1"
        )
        .bind(token_hash)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    async fn record_login_failure(
        &self,
        key: &str,
        now: DateTime<Utc>,
        since: DateTime<Utc>,
    ) -> Result<(i64, Option<DateTime<Utc>>)> {
        // Windows that ended count no more (of any key): the table stays as small as the window.
        db_run!(self.pool(), |c| sqlx::query(
            "DELETE FROM web_login_failures WHERE window_started_at < $1"
        )
        .bind(since)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        // One statement: the row lock serializes concurrent attempts on the same key.
        let (failures, started): (i64, DateTime<Utc>) = db_run!(self.pool(), |c| {
            sqlx::query_as(
            "INSERT INTO web_login_failures (throttle_key, failures, window_started_at) VALUES ($1, 1, $2) \
             ON CONFLICT (throttle_key) DO UPDATE SET \
             failures = CASE WHEN web_login_failures.window_started_at < $3 THEN 1 \
                             ELSE web_login_failures.failures + 1 END, \
             window_started_at = CASE WHEN web_login_failures.window_started_at < $3 THEN excluded.window_started_at \
                                      ELSE web_login_failures.window_started_at END \
             RETURNING failures, window_started_at",
        )
        .bind(key)
        .bind(now)
        .bind(since)
        .fetch_one(c).await
        })?;
        Ok((failures, Some(started)))
    }

    async fn forgive_login_attempt(&self, key: &str) -> Result<()> {
        db_run!(self.pool(), |c| {
            sqlx::query(
            "UPDATE web_login_failures SET failures = failures - 1 WHERE throttle_key = $1 AND failures > 0",
        )
        .bind(key)
        .execute(c).await.map(|r| r.rows_affected())
        })?;
        Ok(())
    }

    async fn clear_login_failures(&self, key: &str) -> Result<()> {
        db_run!(self.pool(), |c| sqlx::query(
            "DELETE FROM web_login_failures WHERE throttle_key = $1"
        )
        .bind(key)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    async fn user_accounts(&self, user_id: i64) -> Result<Vec<(crate::store::Account, Role)>> {
        let rows: Vec<crate::store::web::AccountRoleRow> = db_run!(self.pool(), |c| {
            sqlx::query_as(
            "SELECT a.id, a.name, a.migration_status, a.legacy_ref, a.merge_brazil_ninth_digit, \
             a.created_at, a.updated_at, au.role FROM account_users au \
             JOIN accounts a ON a.id = au.account_id WHERE au.user_id = $1 ORDER BY a.name, a.id",
        )
        .bind(user_id)
        .fetch_all(c).await
        })?;
        rows.into_iter()
            .map(|r| Ok((r.account, crate::store::role_from_db(&r.role)?)))
            .collect()
    }

    async fn import_attachment_failures(
        &self,
        account_id: i64,
        limit: i64,
    ) -> Result<Vec<crate::store::AttachmentFailure>> {
        Ok(db_run!(self.pool(), |c| {
            sqlx::query_as(
            "SELECT a.id, a.file_type, a.file_name, a.failure_reason, m.conversation_id, a.created_at \
             FROM attachments a JOIN messages m ON m.id = a.message_id \
             WHERE a.status = 'failed' AND a.import_id IN (SELECT id FROM account_imports WHERE account_id = $1) \
             ORDER BY a.id DESC LIMIT $2",
        )
        .bind(account_id)
        .bind(limit)
        .fetch_all(c).await
        })?)
    }
}

impl SessionRow {
    pub(super) fn into_session(self) -> WebSession {
        WebSession {
            user: User {
                id: self.id,
                name: self.name,
                email: self.email,
                password_hash: self.password_hash,
                installation_admin: self.installation_admin,
                created_at: self.created_at,
            },
            csrf_token: self.csrf_token,
            expires_at: self.expires_at,
        }
    }
}
