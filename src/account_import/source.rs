//! The legacy system as ferry reads it (`reference/legacy-source.md`): one trait, two implementations — the HTTP
//! API with DynamoDB (`api.rs`) and the offline export directory (`export.rs`). Threads and messages arrive as
//! the same JSON objects from both, and pages carry opaque cursors that a stage commits with its rows.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The legacy system could not answer (down, timed out, 5xx, unexpected answer): try again later.
    #[error("the legacy system is unavailable: {0}")]
    Unavailable(String),
    /// It answered with data ferry cannot use.
    #[error("the legacy data is invalid: {0}")]
    Invalid(String),
}

/// Why a legacy media file could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    #[error("the legacy media service refused the token (HTTP {0})")]
    Refused(u16),
    #[error("the legacy media file is missing")]
    Missing,
    /// Worth another attempt.
    #[error("the legacy media service is unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Invalid(String),
}

/// A channel of the configs-migration answer; `config` is still the encrypted envelope.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LegacyChannel {
    pub channel_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub phone_number: Option<String>,
    pub config: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfigsAnswer {
    pub account_id: String,
    pub channels: Vec<LegacyChannel>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LegacyThread {
    pub account_id: String,
    pub thread_id: String,
    pub channel_id: String,
    pub contact_wa_id: String,
    #[serde(default)]
    pub contact_name: Option<String>,
    /// Unix seconds.
    pub last_message_at: i64,
    #[serde(default = "open")]
    pub status: String,
    #[serde(default)]
    pub starred: bool,
}

fn open() -> String {
    "open".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LegacyMedia {
    pub url: String,
    #[serde(default)]
    pub mime_type: Option<String>,
    #[serde(default)]
    pub filename: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LegacyMessage {
    pub thread_id: String,
    pub sk: String,
    pub message_id: String,
    /// Unix milliseconds.
    pub sent_at: i64,
    /// `in` or `out`.
    pub direction: String,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub media: Vec<LegacyMedia>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub starred: bool,
    /// Web-widget messages only: the id of the same message in ferry.
    #[serde(default)]
    pub external_id: Option<String>,
}

impl LegacyMessage {
    /// The DynamoDB sort key: 13-digit zero-padded unix milliseconds, `#`, message id.
    pub fn sort_key(sent_at: i64, message_id: &str) -> String {
        format!("{sent_at:013}#{message_id}")
    }
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// None: nothing follows. A page may be empty and still have a next cursor.
    pub next: Option<String>,
}

/// Parses items, naming the first one that does not fit.
pub fn parse_items<T: serde::de::DeserializeOwned>(
    what: &str,
    items: Vec<serde_json::Value>,
) -> Result<Vec<T>, SourceError> {
    items
        .into_iter()
        .map(|item| {
            // Named by its ids only: the item holds message bodies and phone numbers.
            let name = ["message_id", "thread_id"]
                .iter()
                .find_map(|k| item.get(*k).and_then(|v| v.as_str()).map(str::to_owned))
                .unwrap_or_else(|| "without an id".into());
            serde_json::from_value(item)
                .map_err(|e| SourceError::Invalid(format!("{what} {name}: {e}")))
        })
        .collect()
}

#[async_trait]
pub trait LegacySource: Send + Sync {
    /// `export` or `dynamodb`.
    fn kind(&self) -> &'static str;
    /// Whether the legacy system knows the account (`false` only on a definite "no").
    async fn account_exists(&self, legacy_ref: &str) -> Result<bool, SourceError>;
    async fn channels(&self, legacy_ref: &str) -> Result<ConfigsAnswer, SourceError>;
    /// Threads active since `since_secs`, newest first.
    async fn recent_threads_page(
        &self,
        legacy_ref: &str,
        since_secs: i64,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<LegacyThread>, SourceError>;
    /// All threads, in thread id order.
    async fn threads_page(
        &self,
        legacy_ref: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<LegacyThread>, SourceError>;
    /// A thread's messages oldest first, or newest first.
    async fn messages_page(
        &self,
        thread_id: &str,
        cursor: Option<&str>,
        limit: usize,
        newest_first: bool,
    ) -> Result<Page<LegacyMessage>, SourceError>;
    /// The bytes of a media `url` and their content type, if the server said.
    async fn media(&self, url: &str) -> Result<(Vec<u8>, Option<String>), MediaError>;
}
