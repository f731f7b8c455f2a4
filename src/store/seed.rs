//! Row batches written by the data generator. Rows refer to each other by index within the batch; the store
//! allocates ids inside one transaction, so a batch is all-or-nothing. Messages and attachments, the bulk of
//! the data, are not sent row by row: each conversation carries a plan (how many messages, how far apart,
//! which sample file) that the database expands set-based (`queries/seed_messages.sql`).

use chrono::{DateTime, Utc};

use super::Result;
use super::db::{Pool, Tx, db_run};

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

/// Multi-row INSERT of `$rows` in chunks that stay under the dialect's bind-parameter limit.
macro_rules! bulk_insert {
    ($tx:expr, $head:literal, $cols:expr, $rows:expr, |$b:ident, $row:pat_param| $push:block) => {{
        let rows = $rows;
        for chunk in rows.chunks((30_000 / $cols).max(1)) {
            db_run!($tx, |c| {
                let mut qb = sqlx::QueryBuilder::new($head);
                qb.push_values(chunk, |mut $b, $row| $push);
                qb.build().execute(c).await.map(drop)
            })?;
        }
    }};
}

/// Ids of a batch's new rows, in the batch's order.
struct Ids {
    contacts: Vec<i64>,
    contact_inboxes: Vec<i64>,
    conversations: Vec<i64>,
}

/// Writes a batch in one transaction: its people, conversations, messages expanded from each conversation's
/// plan, files and reporting events.
pub(super) async fn write_batch(pool: &Pool, batch: &SeedBatch) -> Result<()> {
    let mut tx = pool.begin_write().await?;
    let ids = Ids {
        contacts: tx.allocate_ids("contacts", batch.contacts.len()).await?,
        contact_inboxes: tx
            .allocate_ids("contact_inboxes", batch.contact_inboxes.len())
            .await?,
        conversations: tx
            .allocate_ids("conversations", batch.conversations.len())
            .await?,
    };
    insert_people(&mut tx, batch, &ids).await?;
    insert_conversations(&mut tx, batch, &ids).await?;
    expand_messages(&mut tx, batch, &ids).await?;
    attach_files(&mut tx, batch, &ids).await?;
    insert_reporting_events(&mut tx, batch, &ids).await?;
    tx.commit().await
}

/// Contacts with their labels and notes, and their contact_inboxes.
async fn insert_people(tx: &mut Tx, batch: &SeedBatch, ids: &Ids) -> Result<()> {
    let (account, contact_ids, ci_ids) = (batch.account_id, &ids.contacts, &ids.contact_inboxes);
    bulk_insert!(
        tx,
        "INSERT INTO contacts (id, account_id, name, phone_number, email, custom_attributes, created_at, updated_at) ",
        8,
        batch.contacts.iter().zip(contact_ids).collect::<Vec<_>>(),
        |b, (c, id)| {
            b.push_bind(**id)
                .push_bind(account)
                .push_bind(c.name.as_str())
                .push_bind(c.phone_number.as_deref())
                .push_bind(c.email.as_deref())
                .push_bind(sqlx::types::Json(&c.custom_attributes))
                .push_bind(c.created_at)
                .push_bind(c.created_at);
        }
    );
    bulk_insert!(
        tx,
        "INSERT INTO contact_labels (contact_id, label) ",
        2,
        &batch.contact_labels,
        |b, (c, label)| {
            b.push_bind(contact_ids[*c]).push_bind(label.as_str());
        }
    );
    bulk_insert!(
        tx,
        "INSERT INTO contact_notes (account_id, contact_id, content) ",
        3,
        &batch.contact_notes,
        |b, (c, note)| {
            b.push_bind(account)
                .push_bind(contact_ids[*c])
                .push_bind(note.as_str());
        }
    );
    bulk_insert!(
        tx,
        "INSERT INTO contact_inboxes (id, contact_id, inbox_id, source_id, wa_identity, wa_key) ",
        6,
        batch.contact_inboxes.iter().zip(ci_ids).collect::<Vec<_>>(),
        |b, (ci, id)| {
            b.push_bind(**id)
                .push_bind(contact_ids[ci.contact])
                .push_bind(ci.inbox_id)
                .push_bind(ci.source_id.as_str())
                .push_bind(ci.wa_identity.as_deref())
                .push_bind(ci.wa_key.as_deref());
        }
    );
    Ok(())
}

async fn insert_conversations(tx: &mut Tx, batch: &SeedBatch, ids: &Ids) -> Result<()> {
    let (account, contact_ids, ci_ids, conv_ids) = (
        batch.account_id,
        &ids.contacts,
        &ids.contact_inboxes,
        &ids.conversations,
    );
    bulk_insert!(
        tx,
        "INSERT INTO conversations (id, account_id, inbox_id, contact_id, contact_inbox_id, display_id, status, last_activity_at, created_at, updated_at) ",
        10,
        batch.conversations.iter().zip(conv_ids).collect::<Vec<_>>(),
        |b, (c, id)| {
            b.push_bind(**id)
                .push_bind(account)
                .push_bind(c.inbox_id)
                .push_bind(contact_ids[c.contact])
                .push_bind(ci_ids[c.contact_inbox])
                .push_bind(c.display_id)
                .push_bind(c.status)
                .push_bind(c.last_activity_at)
                .push_bind(c.created_at)
                .push_bind(c.last_activity_at);
        }
    );
    Ok(())
}

async fn expand_messages(tx: &mut Tx, batch: &SeedBatch, ids: &Ids) -> Result<()> {
    let (account, conv_ids) = (batch.account_id, &ids.conversations);
    // Messages and attachments: expanded from each conversation's plan by the database.
    let plans: Vec<_> = batch.conversations.iter().zip(conv_ids).collect();
    let sql = include_str!("queries/seed_messages.sql")
        .replace("{created_at}", tx.backend().seed_created_at());
    let (head, tail) = sql.split_once("{plan}").expect("{plan} marker");
    for chunk in plans.chunks(2_000) {
        db_run!(tx, |conn| {
            let mut qb = sqlx::QueryBuilder::new(head);
            qb.push_values(chunk, |mut b, (c, id)| {
                b.push_bind(account)
                    .push_bind(**id)
                    .push_bind(c.messages)
                    .push_bind(c.created_at)
                    .push_bind(c.gap_seconds)
                    .push_bind(c.source_prefix)
                    .push_bind(c.channel);
            });
            qb.push(tail);
            qb.build().execute(conn).await.map(drop)
        })?;
    }
    Ok(())
}

async fn attach_files(tx: &mut Tx, batch: &SeedBatch, ids: &Ids) -> Result<()> {
    let (account, conv_ids) = (batch.account_id, &ids.conversations);
    let files: Vec<_> = batch
        .conversations
        .iter()
        .zip(conv_ids)
        .filter_map(|(c, id)| c.attachment.as_ref().map(|a| (a, *id)))
        .collect();
    for chunk in files.chunks(2_000) {
        db_run!(tx, |conn| {
            let mut qb = sqlx::QueryBuilder::new(
                "WITH files (conversation_id, account_id, file_type, content_type, file_name, byte_size, \
             storage_key, checksum) AS (",
            );
            qb.push_values(chunk, |mut b, (a, id)| {
                b.push_bind(*id)
                    .push_bind(account)
                    .push_bind(a.file_type)
                    .push_bind(a.content_type)
                    .push_bind(a.file_name.as_str())
                    .push_bind(a.byte_size)
                    .push_bind(a.storage_key.as_str())
                    .push_bind(a.checksum.as_str());
            });
            // Each file goes on the conversation's first message.
            qb.push(
            ") INSERT INTO attachments (account_id, message_id, file_type, content_type, file_name, \
             byte_size, storage_key, checksum) \
             SELECT f.account_id, (SELECT MIN(m.id) FROM messages m WHERE m.conversation_id = f.conversation_id), \
             f.file_type, f.content_type, f.file_name, f.byte_size, f.storage_key, f.checksum FROM files f",
        );
            qb.build().execute(conn).await.map(drop)
        })?;
    }
    Ok(())
}

async fn insert_reporting_events(tx: &mut Tx, batch: &SeedBatch, ids: &Ids) -> Result<()> {
    let (account, conv_ids) = (batch.account_id, &ids.conversations);
    bulk_insert!(
        tx,
        "INSERT INTO reporting_events (account_id, conversation_id, name, value, created_at) ",
        5,
        &batch.reporting_events,
        |b, e| {
            b.push_bind(account)
                .push_bind(conv_ids[e.conversation])
                .push_bind(e.name)
                .push_bind(e.value)
                .push_bind(e.created_at);
        }
    );
    Ok(())
}
