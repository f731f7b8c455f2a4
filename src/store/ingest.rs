//! Storing one inbound webhook message durably, in one transaction: the contact and contact_inbox found by
//! canonical WhatsApp identity (or created in the inbox's native `source_id` format), the open conversation
//! found (or opened), the message inserted once per de-duplication key. A re-delivery costs one statement.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::Result;

#[derive(Debug, Clone)]
pub struct IngestMessage {
    pub account_id: i64,
    pub inbox_id: i64,
    pub wa_identity: String,
    pub wa_key: String,
    pub source_id: String,
    pub contact_name: Option<String>,
    pub phone_number: Option<String>,
    pub dedupe_key: String,
    pub provider_message_id: String,
    /// `incoming` or `outgoing`.
    pub message_type: &'static str,
    pub content: Option<String>,
    pub content_type: &'static str,
    pub content_attributes: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

/// A webhook request that could not be stored, kept with its raw body and headers.
#[derive(Debug, Clone)]
pub struct NewDeadLetter<'a> {
    pub provider: &'a str,
    /// `token` or `legacy`.
    pub route: &'a str,
    pub integration_id: Option<i64>,
    pub reason: &'a str,
    pub status_code: u16,
    pub headers: &'a serde_json::Value,
    pub body: &'a [u8],
}

#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct DeadLetter {
    pub id: i64,
    pub provider: String,
    pub route: String,
    pub integration_id: Option<i64>,
    pub reason: String,
    pub status_code: i64,
    #[serde(skip)]
    pub body: Vec<u8>,
    pub received_at: DateTime<Utc>,
    pub replayed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingested {
    Stored {
        message_id: i64,
        conversation_id: i64,
    },
    /// Already stored under the same de-duplication key: nothing new was written.
    Duplicate { message_id: i64 },
}

#[async_trait]
pub trait IngestStore: Send + Sync {
    async fn ingest_message(&self, m: &IngestMessage) -> Result<Ingested>;
    /// Raises a message's status, never lowers it (`ranks` orders the statuses). Returns whether it changed.
    async fn raise_message_status(
        &self,
        account_id: i64,
        inbox_id: i64,
        provider_message_id: &str,
        status: &str,
    ) -> Result<bool>;
    async fn record_dead_letter(&self, letter: &NewDeadLetter<'_>) -> Result<i64>;
    /// Newest first.
    async fn list_dead_letters(&self, limit: i64) -> Result<Vec<DeadLetter>>;
    async fn get_dead_letter(&self, id: i64) -> Result<DeadLetter>;
    async fn mark_dead_letter_replayed(&self, id: i64) -> Result<()>;
}

macro_rules! impl_ingest_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::IngestStore for $store {
            async fn ingest_message(&self, m: &IngestMessage) -> Result<Ingested> {
                if let Some(id) = sqlx::query_scalar::<_, i64>("SELECT id FROM messages WHERE dedupe_key = $1")
                    .bind(&m.dedupe_key)
                    .fetch_optional(&self.pool)
                    .await?
                {
                    return Ok(Ingested::Duplicate { message_id: id });
                }
                let mut tx = self.begin_write().await?;
                // The contact_inbox row is locked (PostgreSQL; SQLite has one writer) so that two messages of
                // one customer cannot both open a conversation.
                let found: Option<(i64, i64)> = sqlx::query_as(Self::LOCK_CONTACT_INBOX_SQL)
                .bind(m.inbox_id)
                .bind(&m.wa_identity)
                .fetch_optional(&mut *tx)
                .await?;
                let (contact_inbox_id, contact_id) = match found {
                    Some(found) => found,
                    None => {
                        let contact_id: i64 = sqlx::query_scalar(
                            "INSERT INTO contacts (account_id, name, phone_number) VALUES ($1, $2, $3) RETURNING id",
                        )
                        .bind(m.account_id)
                        .bind(&m.contact_name)
                        .bind(&m.phone_number)
                        .fetch_one(&mut *tx)
                        .await?;
                        // Two first messages of one new customer may race (PostgreSQL): the unique indexes
                        // (identity, source_id) decide, the loser drops its contact and joins the winner's.
                        let ci: Option<i64> = sqlx::query_scalar(
                            "INSERT INTO contact_inboxes (contact_id, inbox_id, source_id, wa_identity, wa_key) \
                             VALUES ($1, $2, $3, $4, $5) \
                             ON CONFLICT DO NOTHING RETURNING id",
                        )
                        .bind(contact_id)
                        .bind(m.inbox_id)
                        .bind(&m.source_id)
                        .bind(&m.wa_identity)
                        .bind(&m.wa_key)
                        .fetch_optional(&mut *tx)
                        .await?;
                        match ci {
                            Some(ci) => (ci, contact_id),
                            None => {
                                sqlx::query("DELETE FROM contacts WHERE id = $1")
                                    .bind(contact_id)
                                    .execute(&mut *tx)
                                    .await?;
                                sqlx::query_as(Self::LOCK_CONTACT_INBOX_SQL)
                                .bind(m.inbox_id)
                                .bind(&m.wa_identity)
                                .fetch_one(&mut *tx)
                                .await?
                            }
                        }
                    }
                };
                let open: Option<i64> = sqlx::query_scalar(
                    "SELECT id FROM conversations WHERE contact_inbox_id = $1 AND inbox_id = $2 AND status <> 'resolved' \
                     ORDER BY id DESC LIMIT 1",
                )
                .bind(contact_inbox_id)
                .bind(m.inbox_id)
                .fetch_optional(&mut *tx)
                .await?;
                let conversation_id = match open {
                    Some(id) => id,
                    None => {
                        let display_id: i64 = sqlx::query_scalar(
                            "UPDATE accounts SET last_display_id = last_display_id + 1 WHERE id = $1 RETURNING last_display_id",
                        )
                        .bind(m.account_id)
                        .fetch_one(&mut *tx)
                        .await?;
                        sqlx::query_scalar(
                            "INSERT INTO conversations (account_id, inbox_id, contact_id, contact_inbox_id, display_id, \
                             status, last_activity_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'open', $6, $6, $6) RETURNING id",
                        )
                        .bind(m.account_id)
                        .bind(m.inbox_id)
                        .bind(contact_id)
                        .bind(contact_inbox_id)
                        .bind(display_id)
                        .bind(m.created_at)
                        .fetch_one(&mut *tx)
                        .await?
                    }
                };
                let inserted: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO messages (account_id, conversation_id, message_type, content, content_type, content_attributes, \
                     source_id, dedupe_key, status, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
                )
                .bind(m.account_id)
                .bind(conversation_id)
                .bind(m.message_type)
                .bind(&m.content)
                .bind(m.content_type)
                .bind(sqlx::types::Json(&m.content_attributes))
                .bind(&m.provider_message_id)
                .bind(&m.dedupe_key)
                .bind(if m.message_type == "incoming" { "delivered" } else { "sent" })
                .bind(m.created_at)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(message_id) = inserted else {
                    // A concurrent delivery of the same message won: nothing of this one is kept.
                    tx.rollback().await?;
                    let id: i64 = sqlx::query_scalar("SELECT id FROM messages WHERE dedupe_key = $1")
                        .bind(&m.dedupe_key)
                        .fetch_one(&self.pool)
                        .await?;
                    return Ok(Ingested::Duplicate { message_id: id });
                };
                sqlx::query(
                    "UPDATE conversations SET last_activity_at = CASE WHEN last_activity_at < $1 THEN $1 ELSE last_activity_at END, \
                     updated_at = $2 WHERE id = $3",
                )
                .bind(m.created_at)
                .bind(chrono::Utc::now())
                .bind(conversation_id)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(Ingested::Stored { message_id, conversation_id })
            }

            async fn raise_message_status(&self, account_id: i64, inbox_id: i64, provider_message_id: &str, status: &str) -> Result<bool> {
                // failed < pending < sent < delivered < read; a receipt never moves a message backwards.
                let done = sqlx::query(
                    "UPDATE messages SET status = $1, updated_at = $2 WHERE account_id = $3 AND source_id = $4 \
                     AND conversation_id IN (SELECT id FROM conversations WHERE inbox_id = $5) \
                     AND (CASE status WHEN 'failed' THEN 0 WHEN 'pending' THEN 1 WHEN 'sent' THEN 2 WHEN 'delivered' THEN 3 ELSE 4 END) \
                       < (CASE $1 WHEN 'failed' THEN 0 WHEN 'pending' THEN 1 WHEN 'sent' THEN 2 WHEN 'delivered' THEN 3 ELSE 4 END)",
                )
                .bind(status)
                .bind(chrono::Utc::now())
                .bind(account_id)
                .bind(provider_message_id)
                .bind(inbox_id)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn list_dead_letters(&self, limit: i64) -> Result<Vec<DeadLetter>> {
                Ok(sqlx::query_as(
                    "SELECT id, provider, route, integration_id, reason, status_code, body, received_at, replayed_at \
                     FROM webhook_dead_letters ORDER BY id DESC LIMIT $1",
                )
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn get_dead_letter(&self, id: i64) -> Result<DeadLetter> {
                sqlx::query_as(
                    "SELECT id, provider, route, integration_id, reason, status_code, body, received_at, replayed_at \
                     FROM webhook_dead_letters WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await?
                .ok_or(StoreError::NotFound("dead letter"))
            }

            async fn mark_dead_letter_replayed(&self, id: i64) -> Result<()> {
                sqlx::query("UPDATE webhook_dead_letters SET replayed_at = $1 WHERE id = $2")
                    .bind(chrono::Utc::now())
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn record_dead_letter(&self, letter: &NewDeadLetter<'_>) -> Result<i64> {
                Ok(sqlx::query_scalar(
                    "INSERT INTO webhook_dead_letters (provider, route, integration_id, reason, status_code, headers, body) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                )
                .bind(letter.provider)
                .bind(letter.route)
                .bind(letter.integration_id)
                .bind(letter.reason)
                .bind(letter.status_code as i64)
                .bind(sqlx::types::Json(letter.headers))
                .bind(letter.body)
                .fetch_one(&self.pool)
                .await?)
            }
        }
    };
}

pub(super) use impl_ingest_store;
