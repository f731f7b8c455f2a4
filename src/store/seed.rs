//! Row batches written by the data generator. Rows refer to each other by index within the batch; the store
//! allocates ids inside one transaction, so a batch is all-or-nothing. Messages and attachments, the bulk of
//! the data, are not sent row by row: each conversation carries a plan (how many messages, how far apart,
//! which sample file) that the database expands set-based (`queries/seed_messages.sql`).

use chrono::{DateTime, Utc};

#[derive(Debug, Default)]
pub struct SeedBatch {
    pub account_id: i64,
    pub contacts: Vec<SeedContact>,
    pub contact_inboxes: Vec<SeedContactInbox>,
    pub contact_labels: Vec<(usize, String)>,
    pub contact_notes: Vec<(usize, String)>,
    pub conversations: Vec<SeedConversation>,
    pub reporting_events: Vec<SeedReportingEvent>,
}

#[derive(Debug)]
pub struct SeedContact {
    pub name: String,
    pub phone_number: Option<String>,
    pub email: Option<String>,
    pub custom_attributes: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug)]
pub struct SeedContactInbox {
    pub contact: usize,
    pub inbox_id: i64,
    pub source_id: String,
    pub wa_identity: Option<String>,
    /// `WhatsAppIdentity::match_key(true)`: the identity with the Brazilian ninth digit folded.
    pub wa_key: Option<String>,
}

#[derive(Debug)]
pub struct SeedConversation {
    pub inbox_id: i64,
    pub contact: usize,
    pub contact_inbox: usize,
    pub display_id: i64,
    pub status: &'static str,
    pub created_at: DateTime<Utc>,
    pub last_activity_at: DateTime<Utc>,
    /// Messages to generate (1–50), alternating incoming and outgoing, `gap_seconds` apart after `created_at`.
    pub messages: i64,
    pub gap_seconds: i64,
    /// Prefix of the provider message ids (`3EB0`, `wamid.`, `SM`); None for channels without them.
    pub source_prefix: Option<&'static str>,
    pub channel: &'static str,
    pub attachment: Option<SeedAttachment>,
}

/// A sample file attached to the first message of a conversation.
#[derive(Debug, Clone)]
pub struct SeedAttachment {
    pub file_type: &'static str,
    pub content_type: &'static str,
    pub file_name: String,
    pub byte_size: i64,
    pub storage_key: String,
    pub checksum: String,
}

#[derive(Debug)]
pub struct SeedReportingEvent {
    pub conversation: usize,
    pub name: &'static str,
    pub value: f64,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct LegacyEvolutionInstance {
    pub instance_name: String,
    pub organization_id: String,
    pub status: String,
    pub phone_number: Option<String>,
    pub api_url: Option<String>,
    pub api_key: Option<String>,
    pub webhook_url: Option<String>,
    pub error_message: Option<String>,
}

#[derive(Debug, Clone)]
pub struct LegacyBusinessConfig {
    pub organization_id: String,
    pub provider: String,
    pub phone_number_id: String,
    pub phone_number: Option<String>,
    pub business_account_id: Option<String>,
    pub access_token: Option<String>,
    pub app_secret: Option<String>,
    pub verify_token: Option<String>,
    pub status: String,
}
