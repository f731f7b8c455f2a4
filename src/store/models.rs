//! Rows as the store returns them, and the inputs it takes.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;

use crate::domain::{ChannelType, Role};

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Account {
    pub id: i64,
    pub name: String,
    pub migration_status: Option<String>,
    pub legacy_ref: Option<String>,
    pub merge_brazil_ninth_digit: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewAccount {
    pub name: String,
    pub legacy_ref: Option<String>,
}

#[derive(Clone, Serialize, sqlx::FromRow)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub email: String,
    #[serde(skip)]
    pub password_hash: String,
    pub installation_admin: bool,
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub name: String,
    pub email: String,
    pub password_hash: String,
    pub installation_admin: bool,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Inbox {
    pub id: i64,
    pub account_id: i64,
    pub name: String,
    #[sqlx(rename = "channel_type", try_from = "String")]
    pub channel: ChannelType,
    pub phone_number: Option<String>,
    pub provider_config: Option<Vec<u8>>,
    pub lock_to_single_conversation: bool,
    pub legacy_channel_id: Option<String>,
    pub conversations_count: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewInbox {
    pub account_id: i64,
    pub name: String,
    pub channel_type: ChannelType,
    pub phone_number: Option<String>,
    pub lock_to_single_conversation: bool,
}

#[derive(Debug, Clone, Default)]
pub struct InboxPatch {
    pub name: Option<String>,
    /// `Some(None)` clears the number.
    pub phone_number: Option<Option<String>>,
    pub lock_to_single_conversation: Option<bool>,
    /// Replace the provider config (sealed by the caller's `Sealer`).
    pub replace_provider_config: bool,
}

#[derive(Debug, Clone, Copy, Serialize, sqlx::FromRow)]
pub struct InboxCounts {
    pub conversations: i64,
    pub messages: i64,
    pub attachments: i64,
    pub contact_inboxes: i64,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Contact {
    pub id: i64,
    pub account_id: i64,
    pub name: Option<String>,
    pub phone_number: Option<String>,
    pub email: Option<String>,
    pub identifier: Option<String>,
    #[schema(value_type = Object)]
    pub custom_attributes: Json<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ContactInbox {
    pub id: i64,
    pub contact_id: i64,
    pub inbox_id: i64,
    pub source_id: String,
    pub wa_identity: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Conversation {
    pub id: i64,
    pub account_id: i64,
    pub inbox_id: i64,
    pub contact_id: i64,
    pub contact_inbox_id: Option<i64>,
    pub contact_name: Option<String>,
    pub display_id: i64,
    pub status: String,
    pub assignee_id: Option<i64>,
    pub last_activity_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Message {
    pub id: i64,
    pub account_id: i64,
    pub conversation_id: i64,
    pub message_type: String,
    pub content: Option<String>,
    pub content_type: String,
    #[schema(value_type = Object)]
    pub content_attributes: Json<serde_json::Value>,
    pub source_id: Option<String>,
    pub status: String,
    pub starred: bool,
    pub private: bool,
    pub sender_type: Option<String>,
    pub sender_id: Option<i64>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Attachment {
    pub id: i64,
    pub message_id: i64,
    pub file_type: String,
    pub content_type: Option<String>,
    pub file_name: Option<String>,
    pub byte_size: Option<i64>,
    pub storage_key: Option<String>,
    pub checksum: Option<String>,
    pub status: String,
    pub failure_reason: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewMessage {
    pub account_id: i64,
    pub conversation_id: i64,
    pub message_type: String,
    pub content: Option<String>,
    pub source_id: Option<String>,
    pub dedupe_key: Option<String>,
    pub status: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewAuditEvent {
    pub account_id: Option<i64>,
    pub user_id: Option<i64>,
    pub action: String,
    pub subject: String,
    pub details: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AuditEvent {
    pub id: i64,
    pub account_id: Option<i64>,
    pub user_id: Option<i64>,
    pub action: String,
    pub subject: String,
    pub details: Json<serde_json::Value>,
    pub at: DateTime<Utc>,
}

/// Keyset pagination, newest first: rows with `id < before`.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub before: Option<i64>,
    pub limit: i64,
}

impl Page {
    pub const MAX_LIMIT: i64 = 200;

    pub fn first(limit: i64) -> Self {
        Self {
            before: None,
            limit,
        }
    }

    pub(crate) fn before_bound(&self) -> i64 {
        self.before.unwrap_or(i64::MAX)
    }
}

pub fn role_from_db(s: &str) -> super::Result<Role> {
    Role::parse(s).map_err(|e| super::StoreError::Corrupt(e.to_string()))
}
