//! What the web UI shows of the conversations themselves (README: "Web admin UI"): an inbox's conversations
//! with their contact and size, searchable, and a contact's notes and labels beside a thread.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::db::{SqlStore, db_run};
use super::{Attachment, Contact, Page, Result, StoreError};

/// One row of an inbox's conversation list.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ConversationSummary {
    pub id: i64,
    pub display_id: i64,
    pub status: String,
    pub contact_id: i64,
    pub contact_name: Option<String>,
    pub phone_number: Option<String>,
    /// The contact's address in this inbox (its contact_inbox's `source_id`).
    pub source_id: Option<String>,
    pub messages: i64,
    pub last_activity_at: DateTime<Utc>,
}

/// A note on a contact, with who wrote it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ContactNote {
    pub id: i64,
    pub content: String,
    pub author: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// An audit event with who did it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub action: String,
    pub subject: String,
    pub details: sqlx::types::Json<serde_json::Value>,
    pub at: DateTime<Utc>,
    pub user_name: Option<String>,
    pub user_email: Option<String>,
}

#[async_trait]
pub trait BrowseStore: Send + Sync {
    /// The account's audit events, newest first; `kind` keeps those whose action starts with `kind.`.
    async fn browse_audit(
        &self,
        account_id: i64,
        kind: Option<&str>,
        page: Page,
    ) -> Result<Vec<AuditRow>>;
    /// The distinct actions of the account's audit events.
    async fn audit_actions(&self, account_id: i64) -> Result<Vec<String>>;
    /// The inbox's conversations, most recently active first; `search` matches part of the contact's name
    /// (any case), phone number or address in the inbox. `page.before` is the last conversation of the previous
    /// page.
    async fn browse_conversations(
        &self,
        account_id: i64,
        inbox_id: i64,
        search: Option<&str>,
        page: Page,
    ) -> Result<Vec<ConversationSummary>>;
    async fn get_contact(&self, account_id: i64, contact_id: i64) -> Result<Contact>;
    /// The conversation's message count (the counter the database's triggers keep).
    async fn count_messages(&self, conversation_id: i64) -> Result<i64>;
    /// The contact's notes, newest first, and labels by name.
    async fn contact_notes_and_labels(
        &self,
        contact_id: i64,
    ) -> Result<(Vec<ContactNote>, Vec<String>)>;
    /// An attachment of the account with the conversation its message is in.
    async fn get_attachment(
        &self,
        account_id: i64,
        attachment_id: i64,
    ) -> Result<(Attachment, i64)>;
}

/// `%part%` for LIKE, with the user's own `%`, `_` and `\` taken literally.
pub fn like_pattern(search: &str) -> String {
    format!("%{}%", like_literal(&search.trim().to_lowercase()))
}

/// `text` for LIKE with `%`, `_` and `\` escaped.
fn like_literal(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[async_trait]
impl BrowseStore for SqlStore {
    async fn browse_audit(
        &self,
        account_id: i64,
        kind: Option<&str>,
        page: Page,
    ) -> Result<Vec<AuditRow>> {
        let prefix = kind.map(|k| format!("{}.%", like_literal(k)));
        Ok(db_run!(self.pool(), |c| {
            sqlx::query_as(
            "SELECT e.id, e.action, e.subject, e.details, e.at, u.name AS user_name, u.email AS user_email \
             FROM audit_events e LEFT JOIN users u ON u.id = e.user_id \
             WHERE e.account_id = $1 AND e.id < $2 AND ($3 IS NULL OR e.action LIKE $3 ESCAPE '\\') \
             ORDER BY e.id DESC LIMIT $4"
        )
        .bind(account_id)
        .bind(page.before_bound())
        .bind(prefix.clone())
        .bind(page.limit)
        .fetch_all(c)
        .await
        })?)
    }

    async fn audit_actions(&self, account_id: i64) -> Result<Vec<String>> {
        Ok(db_run!(self.pool(), |c| sqlx::query_scalar(
            "SELECT DISTINCT action FROM audit_events WHERE account_id = $1 ORDER BY action"
        )
        .bind(account_id)
        .fetch_all(c)
        .await)?)
    }

    async fn browse_conversations(
        &self,
        account_id: i64,
        inbox_id: i64,
        search: Option<&str>,
        page: Page,
    ) -> Result<Vec<ConversationSummary>> {
        let pattern = search
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(like_pattern);
        Ok(db_run!(self.pool(), |c| {
            sqlx::query_as(
                "SELECT c.id, c.display_id, c.status, c.contact_id, ct.name AS contact_name, ct.phone_number, \
                 ci.source_id, c.messages_count AS messages, \
                 c.last_activity_at \
                 FROM conversations c JOIN contacts ct ON ct.id = c.contact_id \
                 LEFT JOIN contact_inboxes ci ON ci.id = c.contact_inbox_id \
                 LEFT JOIN conversations b ON b.id = $3 AND b.inbox_id = c.inbox_id \
                 WHERE c.account_id = $1 AND c.inbox_id = $2 \
                   AND ($3 = 0 OR (b.id IS NOT NULL AND (c.last_activity_at < b.last_activity_at \
                        OR (c.last_activity_at = b.last_activity_at AND c.id < b.id)))) \
                   AND ($5 IS NULL OR LOWER(COALESCE(ct.name, '')) LIKE $5 ESCAPE '\\' \
                        OR COALESCE(ct.phone_number, '') LIKE $5 ESCAPE '\\' \
                        OR LOWER(COALESCE(ci.source_id, '')) LIKE $5 ESCAPE '\\') \
                 ORDER BY c.last_activity_at DESC, c.id DESC LIMIT $4",
            )
            .bind(account_id)
            .bind(inbox_id)
            .bind(page.before.unwrap_or(0))
            .bind(page.limit)
            .bind(pattern.clone())
            .fetch_all(c)
            .await
        })?)
    }

    async fn get_contact(&self, account_id: i64, contact_id: i64) -> Result<Contact> {
        db_run!(self.pool(), |c| sqlx::query_as(
            "SELECT id, account_id, name, phone_number, email, identifier, custom_attributes, created_at, \
             updated_at FROM contacts WHERE account_id = $1 AND id = $2"
        )
        .bind(account_id)
        .bind(contact_id)
        .fetch_optional(c)
        .await)?
        .ok_or(StoreError::NotFound("contact"))
    }

    async fn count_messages(&self, conversation_id: i64) -> Result<i64> {
        Ok(db_run!(self.pool(), |c| sqlx::query_scalar(
            "SELECT messages_count FROM conversations WHERE id = $1"
        )
        .bind(conversation_id)
        .fetch_one(c)
        .await)?)
    }

    async fn contact_notes_and_labels(
        &self,
        contact_id: i64,
    ) -> Result<(Vec<ContactNote>, Vec<String>)> {
        let notes = db_run!(self.pool(), |c| {
            sqlx::query_as(
            "SELECT n.id, n.content, u.name AS author, n.created_at FROM contact_notes n \
             LEFT JOIN users u ON u.id = n.user_id WHERE n.contact_id = $1 ORDER BY n.created_at DESC, n.id DESC"
        )
        .bind(contact_id)
        .fetch_all(c)
        .await
        })?;
        let labels = db_run!(self.pool(), |c| sqlx::query_scalar(
            "SELECT label FROM contact_labels WHERE contact_id = $1 ORDER BY label"
        )
        .bind(contact_id)
        .fetch_all(c)
        .await)?;
        Ok((notes, labels))
    }

    async fn get_attachment(
        &self,
        account_id: i64,
        attachment_id: i64,
    ) -> Result<(Attachment, i64)> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            attachment: Attachment,
            conversation_id: i64,
        }
        let row: Row = db_run!(self.pool(), |c| sqlx::query_as(
            "SELECT a.id, a.message_id, a.file_type, a.content_type, a.file_name, a.byte_size, a.storage_key, \
             a.checksum, a.status, a.failure_reason, m.conversation_id \
             FROM attachments a JOIN messages m ON m.id = a.message_id \
             WHERE a.account_id = $1 AND a.id = $2"
        )
        .bind(account_id)
        .bind(attachment_id)
        .fetch_optional(c)
        .await)?
        .ok_or(StoreError::NotFound("attachment"))?;
        Ok((row.attachment, row.conversation_id))
    }
}

#[cfg(test)]
mod tests {
    use super::like_pattern;

    #[test]
    fn a_search_is_a_literal_part_in_any_case() {
        assert_eq!(like_pattern(" Ana "), "%ana%");
        assert_eq!(like_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
    }
}
