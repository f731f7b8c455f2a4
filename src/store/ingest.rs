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
    /// Find the customer by `wa_key` (the account folds the Brazilian ninth digit), not by `wa_identity`.
    pub by_key: bool,
    /// A second identity of the same person (a BSUID sent with the phone): linked to their contact_inbox.
    pub alias: Option<String>,
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
    /// The message's file, stored with it.
    pub attachment: Option<IngestAttachment>,
}

/// A file of an inbound message: in the attachment store already (`ready`), or a `pending` placeholder with a
/// `fetch_media` job queued in the same transaction, so that a stored message always has its fetch coming.
#[derive(Debug, Clone)]
pub struct IngestAttachment {
    pub file_type: &'static str,
    pub content_type: Option<String>,
    pub file_name: Option<String>,
    /// `(storage_key, checksum, byte_size)` when the bytes came with the delivery.
    pub stored: Option<(String, String, i64)>,
    /// Otherwise the fetch job's payload (the attachment's id is added to it).
    pub fetch: Option<serde_json::Value>,
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
    /// The size of the request's body (larger than `body` when a body over the limit was not kept).
    pub body_bytes: i64,
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
    pub body_bytes: Option<i64>,
    /// The request's headers (without credentials), and what routed it (`x-ferry-legacy-instance`).
    #[serde(skip)]
    pub headers: sqlx::types::Json<serde_json::Value>,
    pub received_at: DateTime<Utc>,
    pub replayed_at: Option<DateTime<Utc>>,
}

/// The new identity of a contact_inbox (`rekey_contact_inbox`).
#[derive(Debug, Clone)]
pub struct Rekey {
    pub wa_identity: String,
    pub wa_key: String,
    pub source_id: String,
    pub phone_number: Option<String>,
}

/// From a message's (content, content_attributes) to the new ones.
pub type Rewrite<'a> = &'a (
        dyn Fn(Option<String>, serde_json::Value) -> (Option<String>, serde_json::Value)
            + Send
            + Sync
    );

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
    /// One message: a re-delivery costs one statement (the de-duplication lookup), a new one a transaction.
    async fn ingest_message(&self, m: &IngestMessage) -> Result<Ingested>;
    /// Many messages in one transaction (group commit): one statement finds the re-deliveries (nothing else
    /// runs when all are), then a handful for the whole batch, plus a few per new customer and new conversation. Results in the batch's order; a key seen twice is stored
    /// once and the later ones are duplicates.
    async fn ingest_batch(&self, batch: &[IngestMessage]) -> Result<Vec<Ingested>>;
    /// Raises a message's status, never lowers it (`ranks` orders the statuses). Returns whether it changed.
    async fn raise_message_status(
        &self,
        account_id: i64,
        inbox_id: i64,
        provider_message_id: &str,
        status: &str,
    ) -> Result<bool>;
    /// Rewrites the content and attributes of the message `provider_message_id` of the inbox (an edit, a
    /// deletion, a reaction), under a row lock. False when no such message is stored.
    async fn rewrite_message(
        &self,
        account_id: i64,
        inbox_id: i64,
        provider_message_id: &str,
        rewrite: Rewrite<'_>,
    ) -> Result<bool>;
    /// A customer changed their number: their contact_inbox of `from` (by identity, or by folded key) takes the
    /// new identity and `source_id`, their contact the new phone. False when there is no such row, or the new
    /// number already has its own contact_inbox in the inbox (it then stays the new number's).
    async fn rekey_contact_inbox(
        &self,
        inbox_id: i64,
        from: &str,
        from_key: Option<&str>,
        to: &Rekey,
    ) -> Result<bool>;
    async fn record_dead_letter(&self, letter: &NewDeadLetter<'_>) -> Result<i64>;
    /// Newest first.
    async fn list_dead_letters(&self, limit: i64) -> Result<Vec<DeadLetter>>;
    async fn get_dead_letter(&self, id: i64) -> Result<DeadLetter>;
    async fn mark_dead_letter_replayed(&self, id: i64) -> Result<()>;
}

/// `items` with its last item repeated up to the next power of two: batch statements then come in a few
/// sizes only, so that each connection prepares and plans each shape once (repeats change nothing: IN lists,
/// `ON CONFLICT DO NOTHING` and CASE branches ignore them).
pub(crate) fn padded<T: Clone>(mut items: Vec<T>) -> Vec<T> {
    if let Some(last) = items.last().cloned() {
        items.resize(items.len().next_power_of_two(), last);
    }
    items
}

/// The key a message's customer is found by in its batch: their folded key or their identity, in the inbox.
pub(crate) fn person_of(m: &IngestMessage) -> (i64, &str) {
    (
        m.inbox_id,
        if m.by_key {
            m.wa_key.as_str()
        } else {
            m.wa_identity.as_str()
        },
    )
}

/// A contact_inbox that may hold a batch's customer.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct PersonRow {
    pub id: i64,
    pub contact_id: i64,
    pub inbox_id: i64,
    pub wa_identity: Option<String>,
    pub wa_key: Option<String>,
    pub wa_alias: Option<String>,
}

/// Whether a customer's identity may be another's alias (a business-scoped user id).
pub(crate) fn is_alias_kind(identity: &str) -> bool {
    crate::domain::WhatsAppIdentity::parse(identity).is_ok_and(|i| i.is_bsuid())
}

/// The contact_inbox of `m`'s customer among `rows` (in id order): the same identity first, then the same
/// folded key, then the row this identity is an alias of, then the row of the alias `m` brings (as its identity,
/// then as its alias).
pub(crate) fn best_row<'r>(rows: &'r [PersonRow], m: &IngestMessage) -> Option<&'r PersonRow> {
    let same = |a: &Option<String>, b: &str| a.as_deref() == Some(b);
    let brought = |column: &Option<String>| m.alias.as_deref().is_some_and(|a| same(column, a));
    let ranks: [&dyn Fn(&PersonRow) -> bool; 5] = [
        &|r| same(&r.wa_identity, &m.wa_identity),
        &|r| m.by_key && same(&r.wa_key, &m.wa_key),
        &|r| same(&r.wa_alias, &m.wa_identity),
        &|r| brought(&r.wa_identity),
        // A BSUID outlives a change of number: the row it is linked to is still this person.
        &|r| brought(&r.wa_alias),
    ];
    ranks
        .iter()
        .find_map(|rank| rows.iter().find(|r| r.inbox_id == m.inbox_id && rank(r)))
}

macro_rules! impl_ingest_store {
    ($store:ty, $db:ty) => {
        impl $store {
            /// Every contact_inbox that may hold one of the batch's customers, locked in id order.
            async fn find_people(
                tx: &mut sqlx::Transaction<'static, $db>,
                pending: &[&IngestMessage],
            ) -> Result<Vec<$crate::store::ingest::PersonRow>> {
                use $crate::store::ingest::is_alias_kind;
                let (mut by_identity, mut by_key, mut by_alias) = (Vec::new(), Vec::new(), Vec::new());
                for m in pending {
                    if m.by_key {
                        by_key.push((m.inbox_id, m.wa_key.as_str()));
                    } else {
                        by_identity.push((m.inbox_id, m.wa_identity.as_str()));
                    }
                    if let Some(alias) = &m.alias {
                        // The BSUID may be a row's identity, or already linked to a row of the old number.
                        by_identity.push((m.inbox_id, alias.as_str()));
                        by_alias.push((m.inbox_id, alias.as_str()));
                    }
                    if is_alias_kind(&m.wa_identity) {
                        by_alias.push((m.inbox_id, m.wa_identity.as_str()));
                    }
                }
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT id, contact_id, inbox_id, wa_identity, wa_key, wa_alias FROM contact_inboxes WHERE 1 = 0",
                );
                for (column, mut pairs) in [("wa_identity", by_identity), ("wa_key", by_key), ("wa_alias", by_alias)] {
                    if pairs.is_empty() {
                        continue;
                    }
                    pairs.sort_unstable();
                    pairs.dedup();
                    qb.push(format!(" OR (inbox_id, {column}) IN ("));
                    let mut list = qb.separated(", ");
                    for (inbox_id, value) in $crate::store::ingest::padded(pairs) {
                        list.push("(");
                        list.push_bind_unseparated(inbox_id);
                        list.push_unseparated(", ");
                        list.push_bind_unseparated(value);
                        list.push_unseparated(")");
                    }
                    qb.push(")");
                }
                qb.push(" ORDER BY id");
                qb.push(Self::FOR_UPDATE);
                Ok(qb.build_query_as().fetch_all(&mut **tx).await?)
            }

            /// Links the BSUID a message brings to the contact_inbox found for its number; a contact_inbox known
            /// only by that BSUID learns the number (unless another row of the inbox has it).
            async fn link_alias(
                tx: &mut sqlx::Transaction<'static, $db>,
                m: &IngestMessage,
                row: &$crate::store::ingest::PersonRow,
            ) -> Result<()> {
                let Some(alias) = m.alias.as_deref() else {
                    return Ok(());
                };
                if row.wa_identity.as_deref() == Some(alias) {
                    let linked = sqlx::query(
                        "UPDATE contact_inboxes SET wa_identity = $1, wa_key = $2, source_id = $3, wa_alias = $4 \
                         WHERE id = $5 AND NOT EXISTS (SELECT 1 FROM contact_inboxes x WHERE x.inbox_id = $6 \
                         AND x.id <> $5 AND (x.wa_identity = $1 OR x.source_id = $3 OR x.wa_alias = $4))",
                    )
                    .bind(&m.wa_identity)
                    .bind(&m.wa_key)
                    .bind(&m.source_id)
                    .bind(alias)
                    .bind(row.id)
                    .bind(m.inbox_id)
                    .execute(&mut **tx)
                    .await?;
                    // The number belongs to another row of the inbox: this contact does not learn it.
                    if linked.rows_affected() == 0 {
                        return Ok(());
                    }
                    sqlx::query("UPDATE contacts SET phone_number = $1 WHERE id = $2 AND phone_number IS NULL")
                        .bind(&m.phone_number)
                        .bind(row.contact_id)
                        .execute(&mut **tx)
                        .await?;
                } else if row.wa_alias.is_none() {
                    sqlx::query(
                        "UPDATE contact_inboxes SET wa_alias = $1 WHERE id = $2 AND NOT EXISTS \
                         (SELECT 1 FROM contact_inboxes x WHERE x.inbox_id = $3 AND (x.wa_alias = $1 OR x.wa_identity = $1))",
                    )
                    .bind(alias)
                    .bind(row.id)
                    .bind(m.inbox_id)
                    .execute(&mut **tx)
                    .await?;
                }
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::IngestStore for $store {
            async fn ingest_message(&self, m: &IngestMessage) -> Result<Ingested> {
                Ok(self.ingest_batch(std::slice::from_ref(m)).await?.remove(0))
            }

            async fn ingest_batch(&self, batch: &[IngestMessage]) -> Result<Vec<Ingested>> {
                use std::collections::HashMap;
                if batch.is_empty() {
                    return Ok(Vec::new());
                }
                // Re-deliveries first, outside the write transaction: one statement for the whole batch, and
                // nothing else when every message is one.
                let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT id, dedupe_key FROM messages WHERE dedupe_key IN (");
                let mut list = qb.separated(", ");
                for m in $crate::store::ingest::padded(batch.iter().collect()) {
                    list.push_bind(&m.dedupe_key);
                }
                qb.push(")");
                let known_messages: HashMap<String, i64> = qb
                    .build_query_as::<(i64, String)>()
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map(|(id, key)| (key, id))
                    .collect();
                let pending: Vec<&IngestMessage> =
                    batch.iter().filter(|m| !known_messages.contains_key(&m.dedupe_key)).collect();
                if pending.is_empty() {
                    return Ok(batch
                        .iter()
                        .map(|m| Ingested::Duplicate { message_id: known_messages[&m.dedupe_key] })
                        .collect());
                }
                let mut tx = self.begin_write().await?;

                // The batch's customers: their contact_inboxes, locked in id order (PostgreSQL; SQLite has one
                // writer) so that concurrent writers can neither open two conversations for one customer nor
                // deadlock on each other. A customer is found by identity, by folded key (the account merges the
                // Brazilian ninth digit), or by an alias (a BSUID linked to their number).
                use $crate::store::ingest::person_of;
                let rows = Self::find_people(&mut tx, &pending).await?;
                let mut known: HashMap<(i64, &str), (i64, i64)> = HashMap::with_capacity(pending.len());
                for m in &pending {
                    let person = person_of(m);
                    if known.contains_key(&person) {
                        continue;
                    }
                    if let Some(row) = $crate::store::ingest::best_row(&rows, m) {
                        known.insert(person, (row.id, row.contact_id));
                        Self::link_alias(&mut tx, m, row).await?;
                    }
                }
                // New customers and conversations in one order for every writer (account, inbox, identity), so
                // that two batches never wait for each other's rows and account counters in opposite orders.
                let mut ordered = pending.clone();
                ordered.sort_by(|a, b| {
                    (a.account_id, a.inbox_id, a.wa_identity.as_str()).cmp(&(b.account_id, b.inbox_id, b.wa_identity.as_str()))
                });
                for m in &ordered {
                    let person = person_of(m);
                    if known.contains_key(&person) {
                        continue;
                    }
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
                        "INSERT INTO contact_inboxes (contact_id, inbox_id, source_id, wa_identity, wa_key, wa_alias) \
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING id",
                    )
                    .bind(contact_id)
                    .bind(m.inbox_id)
                    .bind(&m.source_id)
                    .bind(&m.wa_identity)
                    .bind(&m.wa_key)
                    .bind(&m.alias)
                    .fetch_optional(&mut *tx)
                    .await?;
                    let found = match ci {
                        Some(ci) => (ci, contact_id),
                        None => {
                            sqlx::query("DELETE FROM contacts WHERE id = $1")
                                .bind(contact_id)
                                .execute(&mut *tx)
                                .await?;
                            // The row that won: by identity, else by the source_id or alias it also claims.
                            let winner = format!(
                                "SELECT id, contact_id FROM contact_inboxes WHERE inbox_id = $1 \
                                 AND (wa_identity = $2 OR source_id = $3 OR wa_alias = $2 OR wa_alias = $4) \
                                 ORDER BY CASE WHEN wa_identity = $2 THEN 0 ELSE 1 END, id LIMIT 1{}",
                                Self::FOR_UPDATE
                            );
                            sqlx::query_as(sqlx::AssertSqlSafe(winner))
                                .bind(m.inbox_id)
                                .bind(&m.wa_identity)
                                .bind(&m.source_id)
                                .bind(&m.alias)
                                .fetch_one(&mut *tx)
                                .await?
                        }
                    };
                    known.insert(person, found);
                }

                // Their open conversations (the newest, if several), opened where there is none.
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT contact_inbox_id, MAX(id) FROM conversations WHERE status <> 'resolved' AND contact_inbox_id IN (",
                );
                let mut list = qb.separated(", ");
                for (ci, _) in $crate::store::ingest::padded(known.values().copied().collect()) {
                    list.push_bind(ci);
                }
                qb.push(") GROUP BY contact_inbox_id");
                let mut open: HashMap<i64, i64> = qb
                    .build_query_as::<(i64, i64)>()
                    .fetch_all(&mut *tx)
                    .await?
                    .into_iter()
                    .collect();
                for m in &ordered {
                    let (ci, contact_id) = known[&person_of(m)];
                    if open.contains_key(&ci) {
                        continue;
                    }
                    let display_id: i64 = sqlx::query_scalar(
                        "UPDATE accounts SET last_display_id = last_display_id + 1 WHERE id = $1 RETURNING last_display_id",
                    )
                    .bind(m.account_id)
                    .fetch_one(&mut *tx)
                    .await?;
                    let conversation_id: i64 = sqlx::query_scalar(
                        "INSERT INTO conversations (account_id, inbox_id, contact_id, contact_inbox_id, display_id, \
                         status, last_activity_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'open', $6, $6, $6) RETURNING id",
                    )
                    .bind(m.account_id)
                    .bind(m.inbox_id)
                    .bind(contact_id)
                    .bind(ci)
                    .bind(display_id)
                    .bind(m.created_at)
                    .fetch_one(&mut *tx)
                    .await?;
                    open.insert(ci, conversation_id);
                }
                let conversation_of = |m: &IngestMessage| open[&known[&person_of(m)].0];

                // The messages, once per de-duplication key (also within the batch).
                let mut first_with_key: HashMap<&str, usize> = HashMap::with_capacity(batch.len());
                for (i, m) in batch.iter().enumerate() {
                    first_with_key.entry(m.dedupe_key.as_str()).or_insert(i);
                }
                let fresh: Vec<&IngestMessage> = pending
                    .iter()
                    .copied()
                    .filter(|m| std::ptr::eq(&batch[first_with_key[m.dedupe_key.as_str()]], *m))
                    .collect();
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO messages (account_id, conversation_id, message_type, content, content_type, \
                     content_attributes, source_id, dedupe_key, status, created_at, updated_at) ",
                );
                qb.push_values($crate::store::ingest::padded(fresh.clone()), |mut row, m| {
                    row.push_bind(m.account_id)
                        .push_bind(conversation_of(m))
                        .push_bind(m.message_type)
                        .push_bind(&m.content)
                        .push_bind(m.content_type)
                        .push_bind(sqlx::types::Json(&m.content_attributes))
                        .push_bind(&m.provider_message_id)
                        .push_bind(&m.dedupe_key)
                        .push_bind(if m.message_type == "incoming" { "delivered" } else { "sent" })
                        .push_bind(m.created_at)
                        .push_bind(m.created_at);
                });
                qb.push(" ON CONFLICT (dedupe_key) DO NOTHING RETURNING id, dedupe_key");
                let mut stored: HashMap<String, i64> = known_messages;
                let inserted: HashMap<String, i64> = qb
                    .build_query_as::<(i64, String)>()
                    .fetch_all(&mut *tx)
                    .await?
                    .into_iter()
                    .map(|(id, key)| (key, id))
                    .collect();
                let new_keys: std::collections::HashSet<String> = inserted.keys().cloned().collect();
                stored.extend(inserted);
                // A concurrent delivery of the same message won: it is a duplicate here.
                let lost: Vec<&str> = fresh
                    .iter()
                    .map(|m| m.dedupe_key.as_str())
                    .filter(|k| !stored.contains_key(*k))
                    .collect();
                if !lost.is_empty() {
                    let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT id, dedupe_key FROM messages WHERE dedupe_key IN (");
                    let mut list = qb.separated(", ");
                    for key in $crate::store::ingest::padded(lost) {
                        list.push_bind(key);
                    }
                    qb.push(")");
                    for (id, key) in qb.build_query_as::<(i64, String)>().fetch_all(&mut *tx).await? {
                        stored.insert(key, id);
                    }
                }

                // Files: ready, or placeholders with their fetch job.
                for m in fresh.iter().filter(|m| new_keys.contains(&m.dedupe_key)) {
                    let Some(a) = &m.attachment else { continue };
                    let (key, checksum, size) = match &a.stored {
                        Some((key, checksum, size)) => (Some(key), Some(checksum), Some(*size)),
                        None => (None, None, None),
                    };
                    let attachment_id: i64 = sqlx::query_scalar(
                        "INSERT INTO attachments (account_id, message_id, file_type, content_type, file_name, \
                         byte_size, storage_key, checksum, status) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
                    )
                    .bind(m.account_id)
                    .bind(stored[&m.dedupe_key])
                    .bind(a.file_type)
                    .bind(&a.content_type)
                    .bind(&a.file_name)
                    .bind(size)
                    .bind(key)
                    .bind(checksum)
                    .bind(if a.stored.is_some() { "ready" } else { "pending" })
                    .fetch_one(&mut *tx)
                    .await?;
                    if let Some(fetch) = &a.fetch {
                        let mut payload = fetch.clone();
                        payload["attachment_id"] = attachment_id.into();
                        sqlx::query(
                            "INSERT INTO jobs (kind, payload, run_at, dedupe_key) VALUES ('fetch_media', $1, $2, $3)",
                        )
                        .bind(sqlx::types::Json(payload))
                        .bind(chrono::Utc::now())
                        .bind(format!("fetch_media:{attachment_id}"))
                        .execute(&mut *tx)
                        .await?;
                    }
                }

                // Conversations' last activity moves forward only (computed by the database from the rows just
                // inserted, so that both dialects compare timestamps in their own format).
                if !new_keys.is_empty() {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "UPDATE conversations SET last_activity_at = n.at, updated_at = n.at FROM \
                         (SELECT conversation_id, MAX(created_at) AS at FROM messages WHERE id IN (",
                    );
                    let mut list = qb.separated(", ");
                    for id in $crate::store::ingest::padded(new_keys.iter().map(|k| stored[k]).collect()) {
                        list.push_bind(id);
                    }
                    qb.push(
                        ") GROUP BY conversation_id) n \
                         WHERE conversations.id = n.conversation_id AND conversations.last_activity_at < n.at",
                    );
                    qb.build().execute(&mut *tx).await?;
                }
                let results = batch
                    .iter()
                    .map(|m| {
                        // A conflicting row deleted between the insert and the re-check: nothing to answer
                        // with, so the whole batch rolls back (and is retried).
                        let message_id = *stored.get(&m.dedupe_key).ok_or_else(|| {
                            StoreError::Invalid(format!("message {} vanished while being stored", m.provider_message_id))
                        })?;
                        let first = first_with_key[m.dedupe_key.as_str()];
                        Ok(if new_keys.contains(&m.dedupe_key) && std::ptr::eq(&batch[first], m) {
                            Ingested::Stored { message_id, conversation_id: conversation_of(m) }
                        } else {
                            Ingested::Duplicate { message_id }
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                tx.commit().await?;
                Ok(results)
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

            async fn rewrite_message(&self, account_id: i64, inbox_id: i64, provider_message_id: &str, rewrite: Rewrite<'_>) -> Result<bool> {
                let mut tx = self.begin_write().await?;
                let sql = format!(
                    "SELECT id, content, content_attributes FROM messages WHERE account_id = $1 AND source_id = $2 \
                     AND conversation_id IN (SELECT id FROM conversations WHERE inbox_id = $3) ORDER BY id LIMIT 1{}",
                    Self::FOR_UPDATE
                );
                let found: Option<(i64, Option<String>, sqlx::types::Json<serde_json::Value>)> =
                    sqlx::query_as(sqlx::AssertSqlSafe(sql))
                        .bind(account_id)
                        .bind(provider_message_id)
                        .bind(inbox_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                let Some((id, content, attributes)) = found else {
                    return Ok(false);
                };
                let (content, attributes) = rewrite(content, attributes.0);
                sqlx::query("UPDATE messages SET content = $1, content_attributes = $2, updated_at = $3 WHERE id = $4")
                    .bind(content)
                    .bind(sqlx::types::Json(attributes))
                    .bind(chrono::Utc::now())
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn list_dead_letters(&self, limit: i64) -> Result<Vec<DeadLetter>> {
                Ok(sqlx::query_as(
                    "SELECT id, provider, route, integration_id, reason, status_code, body, body_bytes, headers, received_at, replayed_at \
                     FROM webhook_dead_letters ORDER BY id DESC LIMIT $1",
                )
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn get_dead_letter(&self, id: i64) -> Result<DeadLetter> {
                sqlx::query_as(
                    "SELECT id, provider, route, integration_id, reason, status_code, body, body_bytes, headers, received_at, replayed_at \
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

            async fn rekey_contact_inbox(&self, inbox_id: i64, from: &str, from_key: Option<&str>, to: &Rekey) -> Result<bool> {
                let mut tx = self.begin_write().await?;
                let row: Option<(i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT id, contact_id FROM contact_inboxes WHERE inbox_id = $1 AND (wa_identity = $2 OR wa_key = $3) \
                     ORDER BY CASE WHEN wa_identity = $2 THEN 0 ELSE 1 END, id LIMIT 1{}",
                    Self::FOR_UPDATE
                )))
                .bind(inbox_id)
                .bind(from)
                .bind(from_key)
                .fetch_optional(&mut *tx)
                .await?;
                let Some((id, contact_id)) = row else {
                    return Ok(false);
                };
                let moved = sqlx::query(
                    "UPDATE contact_inboxes SET wa_identity = $1, wa_key = $2, source_id = $3 WHERE id = $4 \
                     AND NOT EXISTS (SELECT 1 FROM contact_inboxes x WHERE x.inbox_id = $5 AND x.id <> $4 \
                     AND (x.wa_identity = $1 OR x.source_id = $3))",
                )
                .bind(&to.wa_identity)
                .bind(&to.wa_key)
                .bind(&to.source_id)
                .bind(id)
                .bind(inbox_id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    > 0;
                if moved {
                    sqlx::query("UPDATE contacts SET phone_number = $1, updated_at = $2 WHERE id = $3")
                        .bind(&to.phone_number)
                        .bind(chrono::Utc::now())
                        .bind(contact_id)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(moved)
            }

            async fn record_dead_letter(&self, letter: &NewDeadLetter<'_>) -> Result<i64> {
                Ok(sqlx::query_scalar(
                    "INSERT INTO webhook_dead_letters (provider, route, integration_id, reason, status_code, headers, body, body_bytes) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                )
                .bind(letter.provider)
                .bind(letter.route)
                .bind(letter.integration_id)
                .bind(letter.reason)
                .bind(letter.status_code as i64)
                .bind(sqlx::types::Json(letter.headers))
                .bind(letter.body)
                .bind(letter.body_bytes)
                .fetch_one(&self.pool)
                .await?)
            }
        }
    };
}

pub(super) use impl_ingest_store;
