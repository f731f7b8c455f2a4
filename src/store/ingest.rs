//! Storing one inbound webhook message durably, in one transaction: the contact and contact_inbox found by
//! canonical WhatsApp identity (or created in the inbox's native `source_id` format), the open conversation
//! found (or opened), the message inserted once per de-duplication key. A re-delivery costs one statement.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use std::collections::{HashMap, HashSet};

use super::db::{SqlStore, Tx, db_run};
use super::{Result, StoreError};

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

#[async_trait]
impl IngestStore for SqlStore {
    async fn ingest_message(&self, m: &IngestMessage) -> Result<Ingested> {
        Ok(self.ingest_batch(std::slice::from_ref(m)).await?.remove(0))
    }

    async fn ingest_batch(&self, batch: &[IngestMessage]) -> Result<Vec<Ingested>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        // Re-deliveries first, outside the write transaction: one statement for the whole batch, and nothing
        // else when every message is one.
        let keys = batch.iter().map(|m| m.dedupe_key.as_str()).collect();
        let known = ids_by_dedupe_key(self.pool(), keys).await?;
        let pending: Vec<&IngestMessage> = batch
            .iter()
            .filter(|m| !known.contains_key(&m.dedupe_key))
            .collect();
        if pending.is_empty() {
            return Ok(batch
                .iter()
                .map(|m| Ingested::Duplicate {
                    message_id: known[&m.dedupe_key],
                })
                .collect());
        }
        let mut tx = self.pool().begin_write().await?;
        let results = store_pending(&mut tx, batch, &pending, known).await?;
        tx.commit().await?;
        Ok(results)
    }

    async fn raise_message_status(
        &self,
        account_id: i64,
        inbox_id: i64,
        provider_message_id: &str,
        status: &str,
    ) -> Result<bool> {
        // failed < pending < sent < delivered < read; a receipt never moves a message backwards.
        let done = db_run!(self.pool(), |c| {
            sqlx::query(
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
        .execute(c).await.map(|r| r.rows_affected())
        })?;
        Ok(done > 0)
    }

    async fn rewrite_message(
        &self,
        account_id: i64,
        inbox_id: i64,
        provider_message_id: &str,
        rewrite: Rewrite<'_>,
    ) -> Result<bool> {
        let mut tx = self.pool().begin_write().await?;
        let sql = format!(
            "SELECT id, content, content_attributes FROM messages WHERE account_id = $1 AND source_id = $2 \
             AND conversation_id IN (SELECT id FROM conversations WHERE inbox_id = $3) ORDER BY id LIMIT 1{}",
            tx.backend().for_update()
        );
        let found: Option<(i64, Option<String>, sqlx::types::Json<serde_json::Value>)> =
            db_run!(&mut tx, |c| sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(account_id)
                .bind(provider_message_id)
                .bind(inbox_id)
                .fetch_optional(c)
                .await)?;
        let Some((id, content, attributes)) = found else {
            return Ok(false);
        };
        let (content, attributes) = rewrite(content, attributes.0);
        db_run!(&mut tx, |c| {
            sqlx::query("UPDATE messages SET content = $1, content_attributes = $2, updated_at = $3 WHERE id = $4")
            .bind(content)
            .bind(sqlx::types::Json(attributes))
            .bind(chrono::Utc::now())
            .bind(id)
            .execute(c).await.map(|r| r.rows_affected())
        })?;
        tx.commit().await?;
        Ok(true)
    }

    async fn list_dead_letters(&self, limit: i64) -> Result<Vec<DeadLetter>> {
        Ok(db_run!(self.pool(), |c| {
            sqlx::query_as(
            "SELECT id, provider, route, integration_id, reason, status_code, body, body_bytes, headers, received_at, replayed_at \
             FROM webhook_dead_letters ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(c).await
        })?)
    }

    async fn get_dead_letter(&self, id: i64) -> Result<DeadLetter> {
        db_run!(self.pool(), |c| sqlx::query_as(
            "SELECT id, provider, route, integration_id, reason, status_code, body, body_bytes, headers, received_at, replayed_at \
             FROM webhook_dead_letters WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(c).await)?
        .ok_or(StoreError::NotFound("dead letter"))
    }

    async fn mark_dead_letter_replayed(&self, id: i64) -> Result<()> {
        db_run!(self.pool(), |c| sqlx::query(
            "UPDATE webhook_dead_letters SET replayed_at = $1 WHERE id = $2"
        )
        .bind(chrono::Utc::now())
        .bind(id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    async fn rekey_contact_inbox(
        &self,
        inbox_id: i64,
        from: &str,
        from_key: Option<&str>,
        to: &Rekey,
    ) -> Result<bool> {
        let mut tx = self.pool().begin_write().await?;
        let sql = format!(
            "SELECT id, contact_id FROM contact_inboxes WHERE inbox_id = $1 AND (wa_identity = $2 OR wa_key = $3) \
             ORDER BY CASE WHEN wa_identity = $2 THEN 0 ELSE 1 END, id LIMIT 1{}",
            tx.backend().for_update()
        );
        let row: Option<(i64, i64)> =
            db_run!(&mut tx, |c| sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(inbox_id)
                .bind(from)
                .bind(from_key)
                .fetch_optional(c)
                .await)?;
        let Some((id, contact_id)) = row else {
            return Ok(false);
        };
        let moved = db_run!(&mut tx, |c| {
            sqlx::query(
            "UPDATE contact_inboxes SET wa_identity = $1, wa_key = $2, source_id = $3 WHERE id = $4 \
             AND NOT EXISTS (SELECT 1 FROM contact_inboxes x WHERE x.inbox_id = $5 AND x.id <> $4 \
             AND (x.wa_identity = $1 OR x.source_id = $3))",
        )
        .bind(&to.wa_identity)
        .bind(&to.wa_key)
        .bind(&to.source_id)
        .bind(id)
        .bind(inbox_id)
        .execute(c).await.map(|r| r.rows_affected())
        })? > 0;
        if moved {
            db_run!(&mut tx, |c| sqlx::query(
                "UPDATE contacts SET phone_number = $1, updated_at = $2 WHERE id = $3"
            )
            .bind(&to.phone_number)
            .bind(chrono::Utc::now())
            .bind(contact_id)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        }
        tx.commit().await?;
        Ok(moved)
    }

    async fn record_dead_letter(&self, letter: &NewDeadLetter<'_>) -> Result<i64> {
        Ok(db_run!(self.pool(), |c| {
            sqlx::query_scalar(
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
        .fetch_one(c).await
        })?)
    }
}

/// The new messages of a batch, in the write transaction: their customers found or created, their open
/// conversations found or opened, the messages and their files inserted, the conversations' activity moved.
async fn store_pending(
    tx: &mut Tx,
    batch: &[IngestMessage],
    pending: &[&IngestMessage],
    known: HashMap<String, i64>,
) -> Result<Vec<Ingested>> {
    // New customers and conversations in one order for every writer (account, inbox, identity), so that two
    // batches never wait for each other's rows and account counters in opposite orders.
    let mut ordered = pending.to_vec();
    ordered.sort_by(|a, b| {
        (a.account_id, a.inbox_id, a.wa_identity.as_str()).cmp(&(
            b.account_id,
            b.inbox_id,
            b.wa_identity.as_str(),
        ))
    });
    let people = find_or_create_people(tx, pending, &ordered).await?;
    let open = find_or_open_conversations(tx, &ordered, &people).await?;
    let conversation_of = |m: &IngestMessage| open[&people[&person_of(m)].0];

    // The messages, once per de-duplication key (also within the batch).
    let mut first_with_key: HashMap<&str, usize> = HashMap::with_capacity(batch.len());
    for (i, m) in batch.iter().enumerate() {
        first_with_key.entry(m.dedupe_key.as_str()).or_insert(i);
    }
    let is_first =
        |m: &IngestMessage| std::ptr::eq(&batch[first_with_key[m.dedupe_key.as_str()]], m);
    let fresh: Vec<&IngestMessage> = pending.iter().copied().filter(|m| is_first(m)).collect();
    let inserted = insert_messages(tx, &fresh, &conversation_of).await?;
    let new_keys: HashSet<String> = inserted.keys().cloned().collect();
    let mut stored = known;
    stored.extend(inserted);
    // A concurrent delivery of the same message won: it is a duplicate here.
    let lost: Vec<&str> = fresh
        .iter()
        .map(|m| m.dedupe_key.as_str())
        .filter(|k| !stored.contains_key(*k))
        .collect();
    if !lost.is_empty() {
        stored.extend(ids_by_dedupe_key(&mut *tx, lost).await?);
    }

    let new_messages: Vec<&IngestMessage> = fresh
        .iter()
        .copied()
        .filter(|m| new_keys.contains(&m.dedupe_key))
        .collect();
    insert_attachments(tx, &new_messages, &stored).await?;
    let new_ids: Vec<i64> = new_keys.iter().map(|k| stored[k]).collect();
    advance_last_activity(tx, new_ids).await?;
    batch
        .iter()
        .map(|m| {
            // A conflicting row deleted between the insert and the re-check: nothing to answer with, so the
            // whole batch rolls back (and is retried).
            let message_id = *stored.get(&m.dedupe_key).ok_or_else(|| {
                StoreError::Invalid(format!(
                    "message {} vanished while being stored",
                    m.provider_message_id
                ))
            })?;
            Ok(if new_keys.contains(&m.dedupe_key) && is_first(m) {
                Ingested::Stored {
                    message_id,
                    conversation_id: conversation_of(m),
                }
            } else {
                Ingested::Duplicate { message_id }
            })
        })
        .collect()
}

/// `$from, $from+1, …` (`n` of them).
pub(crate) fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The ids of the messages stored under these de-duplication keys, on the pool (outside a transaction) or in
/// one: one statement.
async fn ids_by_dedupe_key<'e, E>(on: E, keys: Vec<&str>) -> Result<HashMap<String, i64>>
where
    E: super::db::Executes,
    E::Sqlite: sqlx::SqliteExecutor<'e>,
    E::Postgres: sqlx::PgExecutor<'e>,
{
    let keys = padded(keys);
    let sql = format!(
        "SELECT id, dedupe_key FROM messages WHERE dedupe_key IN ({})",
        placeholders(1, keys.len())
    );
    let found: Vec<(i64, String)> = db_run!(on, |c| {
        let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql));
        for key in &keys {
            q = q.bind(*key);
        }
        q.fetch_all(c).await
    })?;
    Ok(found.into_iter().map(|(id, key)| (key, id)).collect())
}

/// The batch's customers, `person_of` → (contact_inbox, contact): their contact_inboxes, locked in id order
/// (PostgreSQL; SQLite has one writer) so that concurrent writers can neither open two conversations for one
/// customer nor deadlock on each other, and new ones created in `ordered` order. A customer is found by
/// identity, by folded key (the account merges the Brazilian ninth digit), or by an alias (a BSUID linked to
/// their number).
async fn find_or_create_people<'m>(
    tx: &mut Tx,
    pending: &[&'m IngestMessage],
    ordered: &[&'m IngestMessage],
) -> Result<HashMap<(i64, &'m str), (i64, i64)>> {
    let rows = find_people(tx, pending).await?;
    let mut people = HashMap::with_capacity(pending.len());
    for m in pending {
        let person = person_of(m);
        if people.contains_key(&person) {
            continue;
        }
        if let Some(row) = best_row(&rows, m) {
            people.insert(person, (row.id, row.contact_id));
            link_alias(tx, m, row).await?;
        }
    }
    for m in ordered {
        let person = person_of(m);
        if let std::collections::hash_map::Entry::Vacant(new) = people.entry(person) {
            new.insert(create_person(tx, m).await?);
        }
    }
    Ok(people)
}

/// A new customer's contact and contact_inbox. Two first messages of one new customer may race (PostgreSQL):
/// the unique indexes (identity, source_id) decide, the loser drops its contact and joins the winner's.
async fn create_person(tx: &mut Tx, m: &IngestMessage) -> Result<(i64, i64)> {
    let contact_id: i64 = db_run!(tx, |c| {
        sqlx::query_scalar(
        "INSERT INTO contacts (account_id, name, phone_number) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(m.account_id)
    .bind(&m.contact_name)
    .bind(&m.phone_number)
    .fetch_one(c)
    .await
    })?;
    let ci: Option<i64> = db_run!(tx, |c| {
        sqlx::query_scalar(
        "INSERT INTO contact_inboxes (contact_id, inbox_id, source_id, wa_identity, wa_key, wa_alias) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING id",
    )
    .bind(contact_id)
    .bind(m.inbox_id)
    .bind(&m.source_id)
    .bind(&m.wa_identity)
    .bind(&m.wa_key)
    .bind(&m.alias)
    .fetch_optional(c)
    .await
    })?;
    if let Some(ci) = ci {
        return Ok((ci, contact_id));
    }
    db_run!(tx, |c| sqlx::query("DELETE FROM contacts WHERE id = $1")
        .bind(contact_id)
        .execute(c)
        .await
        .map(drop))?;
    // The row that won: by identity, else by the source_id or alias it also claims.
    let winner = format!(
        "SELECT id, contact_id FROM contact_inboxes WHERE inbox_id = $1 \
         AND (wa_identity = $2 OR source_id = $3 OR wa_alias = $2 OR wa_alias = $4) \
         ORDER BY CASE WHEN wa_identity = $2 THEN 0 ELSE 1 END, id LIMIT 1{}",
        tx.backend().for_update()
    );
    Ok(db_run!(tx, |c| sqlx::query_as(sqlx::AssertSqlSafe(
        winner
    ))
    .bind(m.inbox_id)
    .bind(&m.wa_identity)
    .bind(&m.source_id)
    .bind(&m.alias)
    .fetch_one(c)
    .await)?)
}

/// Every contact_inbox that may hold one of the batch's customers, locked in id order.
async fn find_people(tx: &mut Tx, pending: &[&IngestMessage]) -> Result<Vec<PersonRow>> {
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
    let mut sql = String::from(
        "SELECT id, contact_id, inbox_id, wa_identity, wa_key, wa_alias FROM contact_inboxes WHERE 1 = 0",
    );
    let mut binds: Vec<(i64, &str)> = Vec::new();
    for (column, mut pairs) in [
        ("wa_identity", by_identity),
        ("wa_key", by_key),
        ("wa_alias", by_alias),
    ] {
        if pairs.is_empty() {
            continue;
        }
        pairs.sort_unstable();
        pairs.dedup();
        let pairs = padded(pairs);
        let list: Vec<String> = (0..pairs.len())
            .map(|i| {
                format!(
                    "(${}, ${})",
                    2 * (binds.len() + i) + 1,
                    2 * (binds.len() + i) + 2
                )
            })
            .collect();
        sql.push_str(&format!(
            " OR (inbox_id, {column}) IN ({})",
            list.join(", ")
        ));
        binds.extend(pairs);
    }
    sql.push_str(" ORDER BY id");
    sql.push_str(tx.backend().for_update());
    Ok(db_run!(tx, |c| {
        let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql));
        for (inbox_id, value) in &binds {
            q = q.bind(*inbox_id).bind(*value);
        }
        q.fetch_all(c).await
    })?)
}

/// Links the BSUID a message brings to the contact_inbox found for its number; a contact_inbox known only by
/// that BSUID learns the number (unless another row of the inbox has it).
async fn link_alias(tx: &mut Tx, m: &IngestMessage, row: &PersonRow) -> Result<()> {
    let Some(alias) = m.alias.as_deref() else {
        return Ok(());
    };
    if row.wa_identity.as_deref() == Some(alias) {
        let linked = db_run!(tx, |c| {
            sqlx::query(
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
        .execute(c)
        .await
        .map(|r| r.rows_affected())
        })?;
        // The number belongs to another row of the inbox: this contact does not learn it.
        if linked == 0 {
            return Ok(());
        }
        db_run!(tx, |c| sqlx::query(
            "UPDATE contacts SET phone_number = $1 WHERE id = $2 AND phone_number IS NULL"
        )
        .bind(&m.phone_number)
        .bind(row.contact_id)
        .execute(c)
        .await
        .map(drop))?;
    } else if row.wa_alias.is_none() {
        db_run!(tx, |c| {
            sqlx::query(
            "UPDATE contact_inboxes SET wa_alias = $1 WHERE id = $2 AND NOT EXISTS \
             (SELECT 1 FROM contact_inboxes x WHERE x.inbox_id = $3 AND (x.wa_alias = $1 OR x.wa_identity = $1))",
        )
        .bind(alias)
        .bind(row.id)
        .bind(m.inbox_id)
        .execute(c)
        .await
        .map(drop)
        })?;
    }
    Ok(())
}

/// The customers' open conversations, contact_inbox → conversation (the newest, if several), opened where
/// there is none.
async fn find_or_open_conversations(
    tx: &mut Tx,
    ordered: &[&IngestMessage],
    people: &HashMap<(i64, &str), (i64, i64)>,
) -> Result<HashMap<i64, i64>> {
    let contact_inboxes = padded(people.values().map(|(ci, _)| *ci).collect::<Vec<i64>>());
    let sql = format!(
        "SELECT contact_inbox_id, MAX(id) FROM conversations WHERE status <> 'resolved' \
         AND contact_inbox_id IN ({}) GROUP BY contact_inbox_id",
        placeholders(1, contact_inboxes.len())
    );
    let found: Vec<(i64, i64)> = db_run!(tx, |c| {
        let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql));
        for ci in &contact_inboxes {
            q = q.bind(*ci);
        }
        q.fetch_all(c).await
    })?;
    let mut open: HashMap<i64, i64> = found.into_iter().collect();
    for m in ordered {
        let (ci, contact_id) = people[&person_of(m)];
        if let std::collections::hash_map::Entry::Vacant(new) = open.entry(ci) {
            new.insert(open_conversation(tx, m, ci, contact_id).await?);
        }
    }
    Ok(open)
}

async fn open_conversation(
    tx: &mut Tx,
    m: &IngestMessage,
    contact_inbox_id: i64,
    contact_id: i64,
) -> Result<i64> {
    let display_id: i64 = db_run!(tx, |c| {
        sqlx::query_scalar(
        "UPDATE accounts SET last_display_id = last_display_id + 1 WHERE id = $1 RETURNING last_display_id",
    )
    .bind(m.account_id)
    .fetch_one(c)
    .await
    })?;
    Ok(db_run!(tx, |c| {
        sqlx::query_scalar(
        "INSERT INTO conversations (account_id, inbox_id, contact_id, contact_inbox_id, display_id, status, \
         last_activity_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'open', $6, $6, $6) RETURNING id",
    )
    .bind(m.account_id)
    .bind(m.inbox_id)
    .bind(contact_id)
    .bind(contact_inbox_id)
    .bind(display_id)
    .bind(m.created_at)
    .fetch_one(c)
    .await
    })?)
}

/// The messages, skipping keys already stored (a concurrent delivery): dedupe key → id of those inserted.
async fn insert_messages(
    tx: &mut Tx,
    fresh: &[&IngestMessage],
    conversation_of: &(dyn Fn(&IngestMessage) -> i64 + Sync),
) -> Result<HashMap<String, i64>> {
    let rows = padded(fresh.to_vec());
    let inserted: Vec<(i64, String)> = db_run!(tx, |c| {
        let mut qb = sqlx::QueryBuilder::new(
            "INSERT INTO messages (account_id, conversation_id, message_type, content, content_type, \
             content_attributes, source_id, dedupe_key, status, created_at, updated_at) ",
        );
        qb.push_values(&rows, |mut row, m| {
            row.push_bind(m.account_id)
                .push_bind(conversation_of(m))
                .push_bind(m.message_type)
                .push_bind(&m.content)
                .push_bind(m.content_type)
                .push_bind(sqlx::types::Json(&m.content_attributes))
                .push_bind(&m.provider_message_id)
                .push_bind(&m.dedupe_key)
                .push_bind(if m.message_type == "incoming" {
                    "delivered"
                } else {
                    "sent"
                })
                .push_bind(m.created_at)
                .push_bind(m.created_at);
        });
        qb.push(" ON CONFLICT (dedupe_key) DO NOTHING RETURNING id, dedupe_key");
        qb.build_query_as().fetch_all(c).await
    })?;
    Ok(inserted.into_iter().map(|(id, key)| (key, id)).collect())
}

/// Files: ready, or placeholders with their fetch job.
async fn insert_attachments(
    tx: &mut Tx,
    messages: &[&IngestMessage],
    stored: &HashMap<String, i64>,
) -> Result<()> {
    for m in messages {
        let Some(a) = &m.attachment else { continue };
        let (key, checksum, size) = match &a.stored {
            Some((key, checksum, size)) => (Some(key), Some(checksum), Some(*size)),
            None => (None, None, None),
        };
        let attachment_id: i64 = db_run!(tx, |c| {
            sqlx::query_scalar(
            "INSERT INTO attachments (account_id, message_id, file_type, content_type, file_name, byte_size, \
             storage_key, checksum, status) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
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
        .fetch_one(c)
        .await
        })?;
        if let Some(fetch) = &a.fetch {
            let mut payload = fetch.clone();
            payload["attachment_id"] = attachment_id.into();
            db_run!(tx, |c| {
                sqlx::query(
                "INSERT INTO jobs (kind, payload, run_at, dedupe_key) VALUES ('fetch_media', $1, $2, $3)",
            )
            .bind(sqlx::types::Json(&payload))
            .bind(chrono::Utc::now())
            .bind(format!("fetch_media:{attachment_id}"))
            .execute(c)
            .await
            .map(drop)
            })?;
        }
    }
    Ok(())
}

/// Conversations' last activity moves forward only (computed by the database from the rows just inserted, so
/// that both dialects compare timestamps in their own format).
async fn advance_last_activity(tx: &mut Tx, message_ids: Vec<i64>) -> Result<()> {
    if message_ids.is_empty() {
        return Ok(());
    }
    let ids = padded(message_ids);
    let sql = format!(
        "UPDATE conversations SET last_activity_at = n.at, updated_at = n.at FROM \
         (SELECT conversation_id, MAX(created_at) AS at FROM messages WHERE id IN ({}) \
         GROUP BY conversation_id) n \
         WHERE conversations.id = n.conversation_id AND conversations.last_activity_at < n.at",
        placeholders(1, ids.len())
    );
    db_run!(tx, |c| {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in &ids {
            q = q.bind(*id);
        }
        q.execute(c).await.map(drop)
    })?;
    Ok(())
}
