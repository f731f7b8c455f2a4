//! One batch of an account import's message stage, in one transaction guarded by the lease: the stage cursor,
//! the batch's new customers and conversations (set-based: a handful of statements whatever their number), its
//! messages once per legacy id, their files with download jobs, starred flags and the import's counters.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::db::{Pool, Tx, db_run};
use super::ingest::{padded, placeholders};
use super::{ImportBatch, ImportBatchOutcome, ImportMessage, ImportThread, Result, StoreError};

/// Rows per multi-row statement (SQLite binds at most 32,766 parameters).
const CHUNK: usize = 500;

/// What every step of a batch writes with.
struct Batch<'a> {
    import_id: i64,
    account_id: i64,
    now: DateTime<Utc>,
    merge_brazil_ninth_digit: bool,
    input: &'a ImportBatch,
}

impl Batch<'_> {
    /// The key customers are matched by across the account's inboxes: the folded identity when the account
    /// merges the Brazilian ninth digit, the exact identity otherwise.
    fn key_of(&self, t: &ImportThread) -> String {
        if self.merge_brazil_ninth_digit {
            t.wa_key.clone()
        } else {
            t.wa_identity.clone()
        }
    }
}

/// `(inbox_id, identity)` → `(contact_inbox_id, contact_id)`.
type People = HashMap<(i64, String), (i64, i64)>;

pub(super) async fn import_batch(
    pool: &Pool,
    import_id: i64,
    token: &str,
    stage: &str,
    input: &ImportBatch,
) -> Result<Option<ImportBatchOutcome>> {
    let mut tx = pool.begin_write().await?;
    let now = Utc::now();
    let Some(account_id) = advance_cursor(&mut tx, import_id, token, stage, input, now).await?
    else {
        return Ok(None);
    };
    let batch = Batch {
        import_id,
        account_id,
        now,
        merge_brazil_ninth_digit: input.merge_brazil_ninth_digit,
        input,
    };
    let mut outcome = ImportBatchOutcome::default();
    let thread_ids: Vec<&str> = input
        .threads
        .iter()
        .map(|t| t.legacy_thread_id.as_str())
        .collect();
    let mut conversation_of: HashMap<String, i64> = tx
        .conversations_by_legacy_thread(account_id, &thread_ids)
        .await?
        .into_iter()
        .collect();
    let new_threads = new_threads(input, &conversation_of);
    if !new_threads.is_empty() {
        let people = find_or_create_people(&mut tx, &batch, &new_threads).await?;
        conversation_of.extend(insert_conversations(&mut tx, &batch, &new_threads, &people).await?);
        outcome.threads_created = new_threads.len() as i64;
    }
    let messages: Vec<(i64, &ImportMessage)> = input
        .threads
        .iter()
        .flat_map(|t| {
            let conversation = conversation_of[t.legacy_thread_id.as_str()];
            t.messages.iter().map(move |m| (conversation, m))
        })
        .collect();
    let created: HashMap<String, i64> = tx
        .insert_import_messages(account_id, import_id, &messages)
        .await?
        .into_iter()
        .collect();
    outcome.messages_created = created.len() as i64;
    outcome.attachments_created = insert_media(&mut tx, &batch, &messages, &created).await?;
    outcome.starred_applied = apply_starred(&mut tx, &batch).await?;
    add_to_counters(&mut tx, import_id, &outcome).await?;
    tx.commit().await?;
    Ok(Some(outcome))
}

/// The lease first: on PostgreSQL this also locks the import row, so a stale worker's batch waits and then
/// finds the lease gone. The account of the import, or `None` when the lease is gone.
async fn advance_cursor(
    tx: &mut Tx,
    import_id: i64,
    token: &str,
    stage: &str,
    input: &ImportBatch,
    now: DateTime<Utc>,
) -> Result<Option<i64>> {
    let cursor_column = match stage {
        "recent" => "recent_cursor",
        "all" => "all_cursor",
        other => {
            return Err(StoreError::Invalid(format!("no message stage {other:?}")));
        }
    };
    let sql = format!(
        "UPDATE account_imports SET {cursor_column} = $1, updated_at = $2 \
         WHERE id = $3 AND lease_token = $4 AND status = 'running' AND stage = $5 RETURNING account_id"
    );
    Ok(db_run!(tx, |c| sqlx::query_scalar(sqlx::AssertSqlSafe(
        sql
    ))
    .bind(&input.cursor)
    .bind(now)
    .bind(import_id)
    .bind(token)
    .bind(stage)
    .fetch_optional(c)
    .await)?)
}

/// The batch's threads not imported yet, each once.
fn new_threads<'a>(
    input: &'a ImportBatch,
    conversation_of: &HashMap<String, i64>,
) -> Vec<&'a ImportThread> {
    let mut seen = HashSet::new();
    input
        .threads
        .iter()
        .filter(|t| !conversation_of.contains_key(t.legacy_thread_id.as_str()))
        .filter(|t| seen.insert(t.legacy_thread_id.as_str()))
        .collect()
}

/// The customers of the new threads: this inbox's contact_inbox with the identity (locked on PostgreSQL
/// against a webhook storing the same customer right now), else the account's contact with that identity key
/// in another inbox, else a new contact.
async fn find_or_create_people(
    tx: &mut Tx,
    batch: &Batch<'_>,
    new_threads: &[&ImportThread],
) -> Result<People> {
    let mut people: Vec<(i64, &str)> = new_threads
        .iter()
        .map(|t| (t.inbox_id, t.wa_identity.as_str()))
        .collect();
    people.sort_unstable();
    people.dedup();
    let mut known = People::with_capacity(people.len());
    for chunk in people.chunks(CHUNK) {
        known.extend(locked_contact_inboxes(tx, chunk).await?);
    }
    let mut seen = HashSet::new();
    let missing: Vec<&ImportThread> = new_threads
        .iter()
        .copied()
        .filter(|t| !known.contains_key(&(t.inbox_id, t.wa_identity.clone())))
        .filter(|t| seen.insert((t.inbox_id, t.wa_identity.as_str())))
        .collect();
    if !missing.is_empty() {
        create_people(tx, batch, &missing, &mut known).await?;
    }
    Ok(known)
}

/// The contact_inboxes of these `(inbox, identity)` pairs, locked in id order.
async fn locked_contact_inboxes(tx: &mut Tx, pairs: &[(i64, &str)]) -> Result<People> {
    let pairs = padded(pairs.to_vec());
    let list: Vec<String> = (0..pairs.len())
        .map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
        .collect();
    let sql = format!(
        "SELECT inbox_id, wa_identity, id, contact_id FROM contact_inboxes \
         WHERE (inbox_id, wa_identity) IN ({}) ORDER BY id{}",
        list.join(", "),
        tx.backend().for_update()
    );
    let rows: Vec<(i64, String, i64, i64)> = db_run!(tx, |c| {
        let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql));
        for (inbox_id, identity) in &pairs {
            q = q.bind(*inbox_id).bind(*identity);
        }
        q.fetch_all(c).await
    })?;
    Ok(rows
        .into_iter()
        .map(|(inbox, identity, ci, contact)| ((inbox, identity), (ci, contact)))
        .collect())
}

/// Contact_inboxes for customers new to their inbox: on the account's contact of the same key, or on a new
/// contact (one per key). A webhook may have stored the same customer since the lookup (PostgreSQL): its row
/// wins, and contacts made for rows that lost are deleted.
async fn create_people(
    tx: &mut Tx,
    batch: &Batch<'_>,
    missing: &[&ImportThread],
    known: &mut People,
) -> Result<()> {
    let mut contact_of_key = contacts_by_key(tx, batch, missing).await?;
    let mut fresh: Vec<&ImportThread> = Vec::new();
    for t in missing {
        let key = batch.key_of(t);
        if !contact_of_key.contains_key(&key) && !fresh.iter().any(|f| batch.key_of(f) == key) {
            fresh.push(t);
        }
    }
    let contact_ids = insert_contacts(tx, batch, &fresh).await?;
    for (t, contact_id) in fresh.iter().zip(&contact_ids) {
        contact_of_key.insert(batch.key_of(t), *contact_id);
    }
    let ci_ids = tx.allocate_ids("contact_inboxes", missing.len()).await?;
    let rows: Vec<(&ImportThread, i64, i64)> = missing
        .iter()
        .zip(&ci_ids)
        .map(|(t, ci)| (*t, *ci, contact_of_key[&batch.key_of(t)]))
        .collect();
    let inserted = insert_contact_inboxes(tx, batch, &rows).await?;
    let mut lost = false;
    for (t, ci, contact) in rows {
        let found = if inserted.contains(&ci) {
            (ci, contact)
        } else {
            lost = true;
            let sql = tx.backend().lock_contact_inbox_sql();
            db_run!(tx, |c| sqlx::query_as(sql)
                .bind(t.inbox_id)
                .bind(&t.wa_identity)
                .fetch_one(c)
                .await)?
        };
        known.insert((t.inbox_id, t.wa_identity.clone()), found);
    }
    if lost {
        delete_unused_contacts(tx, &contact_ids).await?;
    }
    Ok(())
}

/// The account's contacts by identity key, through the account's inboxes (so that the (inbox_id, key) indexes
/// serve the lookup). Without merging, the exact identity (which is then the key) must match.
async fn contacts_by_key(
    tx: &mut Tx,
    batch: &Batch<'_>,
    missing: &[&ImportThread],
) -> Result<HashMap<String, i64>> {
    let mut keys: Vec<String> = missing.iter().map(|t| batch.key_of(t)).collect();
    keys.sort_unstable();
    keys.dedup();
    let column = if batch.merge_brazil_ninth_digit {
        "ci.wa_key"
    } else {
        "ci.wa_identity"
    };
    let mut found = HashMap::new();
    for chunk in keys.chunks(CHUNK) {
        let chunk = padded(chunk.to_vec());
        let sql = format!(
            "SELECT {column}, MIN(ci.contact_id) FROM contact_inboxes ci JOIN contacts c ON c.id = ci.contact_id \
             WHERE ci.inbox_id IN (SELECT id FROM inboxes WHERE account_id = $1) AND c.account_id = $1 \
             AND {column} IN ({}) GROUP BY {column}",
            placeholders(2, chunk.len())
        );
        let rows: Vec<(String, i64)> = db_run!(tx, |c| {
            let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(batch.account_id);
            for key in &chunk {
                q = q.bind(key);
            }
            q.fetch_all(c).await
        })?;
        found.extend(rows);
    }
    Ok(found)
}

/// New contacts, one per thread given: their ids in the same order.
async fn insert_contacts(
    tx: &mut Tx,
    batch: &Batch<'_>,
    fresh: &[&ImportThread],
) -> Result<Vec<i64>> {
    let ids = tx.allocate_ids("contacts", fresh.len()).await?;
    let rows: Vec<(&ImportThread, i64)> = fresh.iter().copied().zip(ids.iter().copied()).collect();
    for chunk in rows.chunks(CHUNK) {
        db_run!(tx, |c| {
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO contacts (id, account_id, name, phone_number, import_id, created_at, updated_at) ",
            );
            qb.push_values(chunk, |mut row, (t, contact_id)| {
                row.push_bind(*contact_id)
                    .push_bind(batch.account_id)
                    .push_bind(&t.contact_name)
                    .push_bind(&t.phone_number)
                    .push_bind(batch.import_id)
                    .push_bind(batch.now)
                    .push_bind(batch.now);
            });
            qb.build().execute(c).await.map(drop)
        })?;
    }
    Ok(ids)
}

/// `(thread, contact_inbox id, contact id)` rows, skipping those a concurrent writer stored first: the ids of
/// the rows inserted.
async fn insert_contact_inboxes(
    tx: &mut Tx,
    batch: &Batch<'_>,
    rows: &[(&ImportThread, i64, i64)],
) -> Result<HashSet<i64>> {
    let mut inserted = HashSet::new();
    for chunk in rows.chunks(CHUNK) {
        let ids: Vec<i64> = db_run!(tx, |c| {
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO contact_inboxes (id, contact_id, inbox_id, source_id, wa_identity, wa_key, import_id, \
                 created_at) ",
            );
            qb.push_values(chunk, |mut row, (t, ci, contact)| {
                row.push_bind(*ci)
                    .push_bind(*contact)
                    .push_bind(t.inbox_id)
                    .push_bind(&t.source_id)
                    .push_bind(&t.wa_identity)
                    .push_bind(&t.wa_key)
                    .push_bind(batch.import_id)
                    .push_bind(batch.now);
            });
            qb.push(" ON CONFLICT DO NOTHING RETURNING id");
            qb.build_query_scalar().fetch_all(c).await
        })?;
        inserted.extend(ids);
    }
    Ok(inserted)
}

/// Contacts made for contact_inboxes that lost the race are nobody's.
async fn delete_unused_contacts(tx: &mut Tx, contact_ids: &[i64]) -> Result<()> {
    for chunk in contact_ids.chunks(CHUNK) {
        let sql = format!(
            "DELETE FROM contacts WHERE id IN ({}) \
             AND NOT EXISTS (SELECT 1 FROM contact_inboxes ci WHERE ci.contact_id = contacts.id)",
            placeholders(1, chunk.len())
        );
        db_run!(tx, |c| {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(*id);
            }
            q.execute(c).await.map(drop)
        })?;
    }
    Ok(())
}

/// The new threads' conversations, with display ids taken from the account's counter after the customers, in
/// the order webhook ingestion takes them (contact rows, then the account): the two never wait for each other
/// crosswise. Legacy thread id → conversation id.
async fn insert_conversations(
    tx: &mut Tx,
    batch: &Batch<'_>,
    new_threads: &[&ImportThread],
    people: &People,
) -> Result<HashMap<String, i64>> {
    let n = new_threads.len() as i64;
    let last_display_id: i64 = db_run!(tx, |c| {
        sqlx::query_scalar(
        "UPDATE accounts SET last_display_id = last_display_id + $1 WHERE id = $2 RETURNING last_display_id",
    )
    .bind(n)
    .bind(batch.account_id)
    .fetch_one(c)
    .await
    })?;
    let first_display_id = last_display_id - n + 1;
    let ids = tx.allocate_ids("conversations", new_threads.len()).await?;
    let rows: Vec<(usize, &ImportThread)> = new_threads.iter().copied().enumerate().collect();
    for chunk in rows.chunks(CHUNK) {
        db_run!(tx, |c| {
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO conversations (id, account_id, inbox_id, contact_id, contact_inbox_id, display_id, \
                 status, last_activity_at, legacy_thread_id, import_id, created_at, updated_at) ",
            );
            qb.push_values(chunk, |mut row, (i, t)| {
                let (ci, contact) = people[&(t.inbox_id, t.wa_identity.clone())];
                row.push_bind(ids[*i])
                    .push_bind(batch.account_id)
                    .push_bind(t.inbox_id)
                    .push_bind(contact)
                    .push_bind(ci)
                    .push_bind(first_display_id + *i as i64)
                    .push_bind(t.status)
                    .push_bind(t.last_activity_at)
                    .push_bind(&t.legacy_thread_id)
                    .push_bind(batch.import_id)
                    .push_bind(t.last_activity_at)
                    .push_bind(batch.now);
            });
            qb.build().execute(c).await.map(drop)
        })?;
    }
    Ok(rows
        .into_iter()
        .map(|(i, t)| (t.legacy_thread_id.clone(), ids[i]))
        .collect())
}

/// Files of the new messages: pending placeholders, each with its download job. How many were created.
async fn insert_media(
    tx: &mut Tx,
    batch: &Batch<'_>,
    messages: &[(i64, &ImportMessage)],
    created: &HashMap<String, i64>,
) -> Result<i64> {
    let files: Vec<(i64, &super::ImportMedia)> = messages
        .iter()
        .filter_map(|(_, m)| created.get(&m.legacy_message_id).map(|id| (*id, m)))
        .flat_map(|(message_id, m)| m.media.iter().map(move |f| (message_id, f)))
        .collect();
    let mut count = 0;
    for chunk in files.chunks(CHUNK) {
        let attachments: Vec<(i64, String)> = db_run!(tx, |c| {
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO attachments (account_id, message_id, file_type, content_type, file_name, status, \
                 external_url, import_id, created_at) ",
            );
            qb.push_values(chunk, |mut row, (message_id, f)| {
                row.push_bind(batch.account_id)
                    .push_bind(*message_id)
                    .push_bind(f.file_type)
                    .push_bind(&f.content_type)
                    .push_bind(&f.file_name)
                    .push_bind("pending")
                    .push_bind(&f.url)
                    .push_bind(batch.import_id)
                    .push_bind(batch.now);
            });
            qb.push(" RETURNING id, external_url");
            qb.build_query_as().fetch_all(c).await
        })?;
        count += attachments.len() as i64;
        insert_download_jobs(tx, batch.now, &attachments).await?;
    }
    Ok(count)
}

/// A `fetch_media` job per `(attachment id, legacy URL)`.
async fn insert_download_jobs(
    tx: &mut Tx,
    now: DateTime<Utc>,
    attachments: &[(i64, String)],
) -> Result<()> {
    let kind = crate::webhooks::media::JOB_KIND;
    db_run!(tx, |c| {
        let mut qb =
            sqlx::QueryBuilder::new("INSERT INTO jobs (kind, payload, run_at, dedupe_key) ");
        qb.push_values(attachments, |mut row, (attachment_id, url)| {
            row.push_bind(kind)
                .push_bind(sqlx::types::Json(serde_json::json!({
                    "attachment_id": attachment_id,
                    "integration_id": null,
                    "source": {"from": "legacy", "url": url},
                })))
                .push_bind(now)
                .push_bind(format!("{kind}:{attachment_id}"));
        });
        qb.build().execute(c).await.map(drop)
    })?;
    Ok(())
}

/// Web-widget messages' starred flags, applied to ferry's messages of those ids. How many changed.
async fn apply_starred(tx: &mut Tx, batch: &Batch<'_>) -> Result<i64> {
    let mut applied = 0;
    for (message_id, starred) in &batch.input.starred {
        let done = db_run!(tx, |c| {
            sqlx::query(
            "UPDATE messages SET starred = $1, updated_at = $2 WHERE id = $3 AND account_id = $4 AND starred <> $1",
        )
        .bind(*starred)
        .bind(batch.now)
        .bind(*message_id)
        .bind(batch.account_id)
        .execute(c)
        .await
        .map(|r| r.rows_affected())
        })?;
        applied += done as i64;
    }
    Ok(applied)
}

async fn add_to_counters(tx: &mut Tx, import_id: i64, outcome: &ImportBatchOutcome) -> Result<()> {
    db_run!(tx, |c| {
        sqlx::query(
        "UPDATE account_imports SET threads_count = threads_count + $1, messages_count = messages_count + $2, \
         attachments_count = attachments_count + $3 WHERE id = $4",
    )
    .bind(outcome.threads_created)
    .bind(outcome.messages_created)
    .bind(outcome.attachments_created)
    .bind(import_id)
    .execute(c)
    .await
    .map(drop)
    })?;
    Ok(())
}
