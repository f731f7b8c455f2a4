//! `InboxMigrationStore` for both pools: SQL both dialects accept, with the few dialect-specific statements in
//! `queries/{pg,sqlite}/`. See `inbox_migration::engine` for the order of phases.

/// Both inboxes of migration $3 (source $1, destination $2) join the active set; the primary key refuses an
/// inbox that is already in it.
pub(super) const LOCK_BOTH_INBOXES: &str = "INSERT INTO inbox_migration_locks (inbox_id, migration_id, role) VALUES ($1, $3, 'source'), ($2, $3, 'destination')";

/// Every column of `messages`, as `inbox_migration_messages` copies them.
macro_rules! message_columns {
    () => {
        "id, account_id, conversation_id, message_type, content, content_type, content_attributes, source_id, \
         dedupe_key, status, starred, private, sender_type, sender_id, external_id, legacy_message_id, import_id, \
         created_at, updated_at"
    };
}

/// Every column of `attachments`, as `inbox_migration_attachments` copies them.
macro_rules! attachment_columns {
    () => {
        "id, account_id, message_id, file_type, content_type, file_name, byte_size, storage_key, checksum, status, \
         external_url, failure_reason, import_id, created_at"
    };
}

/// The source contacts deleted by this batch's merges.
macro_rules! deleted_sources {
    () => {
        "SELECT s.contact_id FROM inbox_migration_contact_inboxes p JOIN inbox_migration_contacts s \
         ON s.migration_id = p.migration_id AND s.contact_id = p.contact_id \
         WHERE p.migration_id = $1 AND p.batch = $2 AND p.action = 'merge' AND s.role = 'source' AND s.deleted"
    };
}

/// Merge rows of this batch that join two different contacts.
macro_rules! batch_merges {
    () => {
        "FROM inbox_migration_contact_inboxes p WHERE p.migration_id = $1 AND p.batch = $2 AND p.action = 'merge' \
         AND p.contact_id <> p.destination_contact_id"
    };
}

macro_rules! impl_inbox_migration_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::InboxMigrationStore for $store {
            async fn create_inbox_migration(
                &self,
                account_id: i64,
                source_inbox_id: i64,
                destination_inbox_id: i64,
                user_id: Option<i64>,
                options: &serde_json::Value,
            ) -> Result<InboxMigration> {
                let mut tx = self.begin_write().await?;
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO inbox_migrations (account_id, source_inbox_id, destination_inbox_id, user_id, options) \
                     VALUES ($1, $2, $3, $4, $5) RETURNING id",
                )
                .bind(account_id)
                .bind(source_inbox_id)
                .bind(destination_inbox_id)
                .bind(user_id)
                .bind(sqlx::types::Json(options))
                .fetch_one(&mut *tx)
                .await?;
                sqlx::query(LOCK_BOTH_INBOXES).bind(source_inbox_id).bind(destination_inbox_id).bind(id).execute(&mut *tx).await?;
                tx.commit().await?;
                self.get_inbox_migration(id).await
            }

            async fn get_inbox_migration(&self, id: i64) -> Result<InboxMigration> {
                sqlx::query_as(concat!(migration_select!(), "WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?
                    .ok_or(StoreError::NotFound("inbox migration"))
            }

            async fn list_inbox_migrations(&self, account_id: i64, source_inbox_id: Option<i64>, active_only: bool) -> Result<Vec<InboxMigration>> {
                Ok(sqlx::query_as(concat!(
                    migration_select!(),
                    "WHERE account_id = $1 AND ($2 = 0 OR source_inbox_id = $2) \
                     AND ($3 = 0 OR status IN ('queued', 'running')) ORDER BY id DESC LIMIT 200"
                ))
                .bind(account_id)
                .bind(source_inbox_id.unwrap_or(0))
                .bind(active_only as i64)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn cancel_inbox_migration(&self, id: i64) -> Result<Option<InboxMigration>> {
                let mut tx = self.begin_write().await?;
                let now = chrono::Utc::now();
                let status: Option<String> = sqlx::query_scalar(
                    "UPDATE inbox_migrations SET \
                     status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END, \
                     completed_at = CASE WHEN status = 'queued' THEN $2 ELSE completed_at END, \
                     cancel_requested = TRUE, updated_at = $2 \
                     WHERE id = $1 AND status IN ('queued', 'running') RETURNING status",
                )
                .bind(id)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                match status.as_deref() {
                    None => return Ok(None),
                    Some("cancelled") => {
                        sqlx::query("DELETE FROM inbox_migration_locks WHERE migration_id = $1").bind(id).execute(&mut *tx).await?;
                    }
                    Some(_) => {}
                }
                tx.commit().await?;
                self.get_inbox_migration(id).await.map(Some)
            }

            async fn requeue_inbox_migration(&self, id: i64) -> Result<Option<InboxMigration>> {
                let mut tx = self.begin_write().await?;
                let row: Option<(i64, i64)> = sqlx::query_as(
                    "UPDATE inbox_migrations SET status = 'queued', cancel_requested = FALSE, error_message = NULL, \
                     error_detail = NULL, completed_at = NULL, lease_owner = NULL, lease_token = NULL, \
                     lease_expires_at = NULL, updated_at = $2 \
                     WHERE id = $1 AND status IN ('failed', 'cancelled') RETURNING source_inbox_id, destination_inbox_id",
                )
                .bind(id)
                .bind(chrono::Utc::now())
                .fetch_optional(&mut *tx)
                .await?;
                let Some((source, destination)) = row else { return Ok(None) };
                sqlx::query(LOCK_BOTH_INBOXES).bind(source).bind(destination).bind(id).execute(&mut *tx).await?;
                tx.commit().await?;
                self.get_inbox_migration(id).await.map(Some)
            }

            async fn claim_inbox_migration(&self, worker: &str, token: &str, lease_until: DateTime<Utc>) -> Result<Option<InboxMigration>> {
                // The oldest queued migration or revert, or a running one whose worker's lease expired. On
                // PostgreSQL SKIP LOCKED lets any number of workers claim at once without waiting on, or taking, the
                // same row; SQLite runs this inside BEGIN IMMEDIATE (one writer).
                let mut tx = self.begin_write().await?;
                let now = chrono::Utc::now();
                let sql = format!(
                    "SELECT id, status IN ('queued', 'running'), COALESCE(status = 'running' OR revert_state = 'running', FALSE) \
                     FROM inbox_migrations WHERE status = 'queued' OR revert_state = 'queued' \
                     OR ((status = 'running' OR revert_state = 'running') AND lease_expires_at < $1) ORDER BY id LIMIT 1{}",
                    Self::SKIP_LOCKED
                );
                let candidate: Option<(i64, bool, bool)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some((id, migrating, taken_over)) = candidate else {
                    return Ok(None);
                };
                // A migration counts its attempts; a revert keeps its own start.
                let (kind, claim) = if migrating {
                    ("migrate", "UPDATE inbox_migrations SET status = 'running', lease_owner = $1, lease_token = $2, \
                     lease_expires_at = $3, attempts = attempts + 1, started_at = COALESCE(started_at, $4), \
                     updated_at = $4 WHERE id = $5")
                } else {
                    ("revert", "UPDATE inbox_migrations SET revert_state = 'running', lease_owner = $1, lease_token = $2, \
                     lease_expires_at = $3, revert_started_at = COALESCE(revert_started_at, $4), updated_at = $4 WHERE id = $5")
                };
                sqlx::query(claim)
                    .bind(worker)
                    .bind(token)
                    .bind(lease_until)
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                Self::open_attempt(&mut tx, id, kind, worker, now).await?;
                tx.commit().await?;
                if taken_over {
                    $crate::metrics::lease_takeover(if migrating { "inbox_migration" } else { "inbox_migration_revert" });
                }
                self.get_inbox_migration(id).await.map(Some)
            }

            async fn renew_inbox_migration_lease(&self, id: i64, token: &str, lease_until: DateTime<Utc>) -> Result<bool> {
                let done = sqlx::query(
                    "UPDATE inbox_migrations SET lease_expires_at = $3 WHERE id = $1 AND lease_token = $2 \
                     AND (status = 'running' OR revert_state = 'running')",
                )
                .bind(id)
                .bind(token)
                .bind(lease_until)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn release_inbox_migration_lease(&self, id: i64, token: &str) -> Result<bool> {
                let mut tx = self.begin_write().await?;
                let now = chrono::Utc::now();
                let done = sqlx::query(
                    "UPDATE inbox_migrations SET lease_owner = NULL, lease_token = NULL, lease_expires_at = $3 \
                     WHERE id = $1 AND lease_token = $2 AND (status = 'running' OR revert_state = 'running')",
                )
                .bind(id)
                .bind(token)
                .bind(now - chrono::Duration::seconds(1))
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                Self::close_attempt(&mut tx, id, "released", None, now).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn inbox_migration_counts(&self, source: i64, destination: i64, key: MatchKey) -> Result<PairCounts> {
                let k = key.column();
                let sql = format!(
                    "SELECT (SELECT COUNT(*) FROM conversations WHERE inbox_id = $1) AS conversations, \
                     (SELECT CAST(COALESCE(SUM(messages_count), 0) AS BIGINT) FROM conversations WHERE inbox_id = $1) AS messages, \
                     (SELECT CAST(COALESCE(SUM(attachments_count), 0) AS BIGINT) FROM conversations WHERE inbox_id = $1) AS attachments, \
                     (SELECT COUNT(*) FROM contact_inboxes WHERE inbox_id = $1) AS contact_inboxes, \
                     (SELECT COUNT(*) FROM contact_inboxes s WHERE s.inbox_id = $1 AND EXISTS \
                      (SELECT 1 FROM contact_inboxes d WHERE d.inbox_id = $2 AND d.{k} = s.{k})) AS merging_contact_inboxes"
                );
                Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(source).bind(destination).fetch_one(&self.pool).await?)
            }

            async fn plan_inbox_migration(&self, id: i64, token: &str, counts: &PairCounts, duplicates: i64, before: &serde_json::Value) -> Result<bool> {
                let done = sqlx::query(
                    "UPDATE inbox_migrations SET phase = 'moving', conversations_count = $3, messages_count = $4, \
                     attachments_count = $5, contact_inboxes_count = $6, result = $7, updated_at = $8, duplicates = $9 \
                     WHERE id = $1 AND lease_token = $2 AND status = 'running'",
                )
                .bind(id)
                .bind(token)
                .bind(counts.conversations)
                .bind(counts.messages)
                .bind(counts.attachments)
                .bind(counts.contact_inboxes)
                .bind(sqlx::types::Json(before))
                .bind(chrono::Utc::now())
                .bind(duplicates)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn run_inbox_migration_batch(&self, ctx: &BatchContext) -> Result<Option<BatchOutcome>> {
                let k = ctx.key.column();
                let native = native_source_id_sql(ctx.destination_channel);
                let mut tx = self.begin_write().await?;
                let mut out = BatchOutcome::default();
                let (m, b, s, d) = (ctx.migration_id, ctx.batch, ctx.source_inbox_id, ctx.destination_inbox_id);

                // 1. Plan: the lowest source contact_inboxes, each matched to the destination's by identity. A
                //    second source row of the same identity waits for a later batch, where it merges into the
                //    first one's new home.
                let plan = format!(
                    "INSERT INTO inbox_migration_contact_inboxes (migration_id, contact_inbox_id, batch, action, contact_id, \
                     source_id, wa_identity, wa_key, wa_alias, import_id, created_at, new_source_id, destination_contact_inbox_id, destination_contact_id) \
                     SELECT $1, s.id, $2, CASE WHEN m.id IS NULL THEN 'move' ELSE 'merge' END, s.contact_id, s.source_id, \
                     s.wa_identity, s.wa_key, s.wa_alias, s.import_id, s.created_at, {native}, m.id, m.contact_id \
                     FROM (SELECT s.*, (SELECT MIN(x.id) FROM contact_inboxes x WHERE x.inbox_id = $4 AND x.{k} = s.{k}) AS match_id \
                           FROM (SELECT * FROM contact_inboxes WHERE inbox_id = $3 AND id > $6 ORDER BY inbox_id, id LIMIT $5) s \
                           WHERE s.{k} IS NULL OR s.id = (SELECT MIN(s2.id) FROM contact_inboxes s2 WHERE s2.inbox_id = $3 AND s2.{k} = s.{k})) s \
                     LEFT JOIN contact_inboxes m ON m.id = s.match_id"
                );
                // The cursor spares PostgreSQL from walking the index entries of rows already moved.
                for after in [ctx.after_contact_inbox_id, 0] {
                    out.contact_inboxes = sqlx::query(sqlx::AssertSqlSafe(plan.clone()))
                        .bind(m).bind(b).bind(s).bind(d).bind(ctx.limit).bind(after)
                        .execute(&mut *tx).await?.rows_affected() as i64;
                    if out.contact_inboxes > 0 || after == 0 {
                        break;
                    }
                }

                if out.contact_inboxes > 0 {
                    out.last_contact_inbox_id = sqlx::query_scalar(
                        "SELECT MAX(contact_inbox_id) FROM inbox_migration_contact_inboxes WHERE migration_id = $1 AND batch = $2",
                    )
                    .bind(m).bind(b)
                    .fetch_one(&mut *tx).await?;
                    for role in ["destination", "source"] {
                        let column = if role == "source" { "contact_id" } else { "destination_contact_id" };
                        let snapshot = format!(
                            "INSERT INTO inbox_migration_contacts (migration_id, contact_id, role, account_id, name, phone_number, \
                             email, identifier, custom_attributes, import_id, created_at, updated_at) \
                             SELECT $1, c.id, '{role}', c.account_id, c.name, c.phone_number, c.email, c.identifier, \
                             c.custom_attributes, c.import_id, c.created_at, c.updated_at FROM contacts c \
                             WHERE c.id IN (SELECT p.{column} {merges}) ON CONFLICT (migration_id, contact_id) DO NOTHING",
                            merges = batch_merges!()
                        );
                        sqlx::query(sqlx::AssertSqlSafe(snapshot)).bind(m).bind(b).execute(&mut *tx).await?;
                    }
                    // Each conversation journaled with its old and new references (a merge re-points it to the
                    // destination's contact and contact_inbox).
                    out.conversations = sqlx::query(
                        "INSERT INTO inbox_migration_conversations (migration_id, conversation_id, batch, inbox_id, contact_id, \
                         contact_inbox_id, new_contact_id, new_contact_inbox_id) \
                         SELECT $1, c.id, $2, c.inbox_id, c.contact_id, c.contact_inbox_id, \
                         COALESCE(p.destination_contact_id, c.contact_id), COALESCE(p.destination_contact_inbox_id, c.contact_inbox_id) \
                         FROM inbox_migration_contact_inboxes p JOIN conversations c ON c.contact_inbox_id = p.contact_inbox_id \
                         WHERE p.migration_id = $1 AND p.batch = $2 AND +c.inbox_id = $3",
                    )
                    .bind(m).bind(b).bind(s)
                    .execute(&mut *tx).await?.rows_affected() as i64;
                    if ctx.drop_duplicates {
                        // The source's copy of a message the person's destination conversations already hold
                        // (same provider id) is dropped; row and attachments journaled first, for revert.
                        out.duplicates_dropped = sqlx::query(concat!(
                            "INSERT INTO inbox_migration_messages (migration_id, batch, kept_message_id, ", message_columns!(), ") \
                             SELECT $1, $2, k.kept, ", message_columns!(), " FROM messages JOIN \
                             (SELECT m.id AS message_id, (SELECT MIN(m2.id) FROM messages m2 JOIN conversations c2 ON c2.id = m2.conversation_id \
                               WHERE m2.account_id = m.account_id AND m2.source_id = m.source_id \
                               AND c2.contact_inbox_id = p.destination_contact_inbox_id) AS kept \
                              FROM inbox_migration_contact_inboxes p \
                              JOIN inbox_migration_conversations j ON j.migration_id = p.migration_id AND j.batch = p.batch \
                                AND j.contact_inbox_id = p.contact_inbox_id \
                              JOIN messages m ON m.conversation_id = j.conversation_id \
                              WHERE p.migration_id = $1 AND p.batch = $2 AND p.action = 'merge' AND m.source_id IS NOT NULL) k \
                             ON k.message_id = messages.id WHERE k.kept IS NOT NULL"))
                        .bind(m).bind(b)
                        .execute(&mut *tx).await?.rows_affected() as i64;
                        if out.duplicates_dropped > 0 {
                            sqlx::query(concat!(
                                "INSERT INTO inbox_migration_attachments (migration_id, batch, ", attachment_columns!(), ") \
                                 SELECT $1, $2, ", attachment_columns!(), " FROM attachments WHERE message_id IN \
                                 (SELECT id FROM inbox_migration_messages WHERE migration_id = $1 AND batch = $2)"))
                                .bind(m).bind(b).execute(&mut *tx).await?;
                            // The cascade takes the attachments; triggers keep the conversations' counts.
                            sqlx::query("DELETE FROM messages WHERE id IN \
                                 (SELECT id FROM inbox_migration_messages WHERE migration_id = $1 AND batch = $2)")
                                .bind(m).bind(b).execute(&mut *tx).await?;
                        }
                    }
                    sqlx::query(
                        // UPDATE … FROM the batch's journal rows: both planners drive it from them.
                        "UPDATE conversations SET inbox_id = $3, contact_id = j.new_contact_id, contact_inbox_id = j.new_contact_inbox_id \
                         FROM inbox_migration_conversations j \
                         WHERE j.migration_id = $1 AND j.batch = $2 AND conversations.id = j.conversation_id",
                    )
                    .bind(m).bind(b).bind(d)
                    .execute(&mut *tx).await?;
                    out.merged_contact_inboxes = sqlx::query(
                        "DELETE FROM contact_inboxes WHERE id IN (SELECT contact_inbox_id FROM inbox_migration_contact_inboxes \
                         WHERE migration_id = $1 AND batch = $2 AND action = 'merge')",
                    )
                    .bind(m).bind(b)
                    .execute(&mut *tx).await?.rows_affected() as i64;
                    sqlx::query(
                        // A moved row keeps its alias (a BSUID) unless a destination row already holds it.
                        "UPDATE contact_inboxes SET inbox_id = $3, source_id = x.new_source_id, \
                         wa_alias = CASE WHEN EXISTS (SELECT 1 FROM contact_inboxes d WHERE d.inbox_id = $3 \
                         AND d.wa_alias = contact_inboxes.wa_alias) THEN NULL ELSE contact_inboxes.wa_alias END \
                         FROM (SELECT contact_inbox_id, new_source_id FROM inbox_migration_contact_inboxes \
                               WHERE migration_id = $1 AND batch = $2 AND action = 'move') x \
                         WHERE contact_inboxes.id = x.contact_inbox_id",
                    )
                    .bind(m).bind(b).bind(d)
                    .execute(&mut *tx).await?;
                    // Labels: the union on the destination contact, journaled before it is written.
                    sqlx::query(
                        "INSERT INTO inbox_migration_labels (migration_id, contact_id, label, change) \
                         SELECT DISTINCT $1, p.destination_contact_id, l.label, 'added' \
                         FROM inbox_migration_contact_inboxes p JOIN contact_labels l ON l.contact_id = p.contact_id \
                         WHERE p.migration_id = $1 AND p.batch = $2 AND p.action = 'merge' AND p.contact_id <> p.destination_contact_id \
                         AND NOT EXISTS (SELECT 1 FROM contact_labels x WHERE x.contact_id = p.destination_contact_id AND x.label = l.label) \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(m).bind(b)
                    .execute(&mut *tx).await?;
                    sqlx::query(
                        "INSERT INTO contact_labels (contact_id, label) SELECT DISTINCT p.destination_contact_id, l.label \
                         FROM inbox_migration_contact_inboxes p JOIN contact_labels l ON l.contact_id = p.contact_id \
                         WHERE p.migration_id = $1 AND p.batch = $2 AND p.action = 'merge' AND p.contact_id <> p.destination_contact_id \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(m).bind(b)
                    .execute(&mut *tx).await?;
                    // Source contacts left with nothing are deleted; their labels and notes are journaled, the
                    // notes move to the destination contact.
                    out.contacts_deleted = sqlx::query(
                        "UPDATE inbox_migration_contacts SET deleted = TRUE WHERE migration_id = $1 AND role = 'source' AND deleted = FALSE \
                         AND contact_id IN (SELECT p.contact_id FROM inbox_migration_contact_inboxes p WHERE p.migration_id = $1 \
                           AND p.batch = $2 AND p.action = 'merge' AND p.contact_id <> p.destination_contact_id) \
                         AND NOT EXISTS (SELECT 1 FROM contact_inboxes ci WHERE ci.contact_id = inbox_migration_contacts.contact_id) \
                         AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.contact_id = inbox_migration_contacts.contact_id)",
                    )
                    .bind(m).bind(b)
                    .execute(&mut *tx).await?.rows_affected() as i64;
                    if out.contacts_deleted > 0 {
                        sqlx::query(concat!(
                            "INSERT INTO inbox_migration_labels (migration_id, contact_id, label, label_id, change) \
                             SELECT $1, l.contact_id, l.label, l.id, 'deleted' FROM contact_labels l WHERE l.contact_id IN (",
                            deleted_sources!(), ") ON CONFLICT DO NOTHING"))
                            .bind(m).bind(b).execute(&mut *tx).await?;
                        sqlx::query(concat!(
                            "INSERT INTO inbox_migration_notes (migration_id, note_id, contact_id) \
                             SELECT $1, n.id, n.contact_id FROM contact_notes n WHERE n.contact_id IN (", deleted_sources!(), ")"))
                            .bind(m).bind(b).execute(&mut *tx).await?;
                        sqlx::query(concat!(
                            "UPDATE contact_notes SET contact_id = (SELECT MIN(p.destination_contact_id) FROM inbox_migration_contact_inboxes p \
                             WHERE p.migration_id = $1 AND p.batch = $2 AND p.action = 'merge' AND p.contact_id = contact_notes.contact_id) \
                             WHERE contact_id IN (", deleted_sources!(), ")"))
                            .bind(m).bind(b).execute(&mut *tx).await?;
                        sqlx::query(concat!("DELETE FROM contacts WHERE id IN (", deleted_sources!(), ")"))
                            .bind(m).bind(b).execute(&mut *tx).await?;
                    }
                    sqlx::query(Self::MERGE_CONTACT_FIELDS_SQL).bind(m).bind(b).execute(&mut *tx).await?;
                } else {
                    // Sweep: conversations still in the source without a contact_inbox there (late or odd rows).
                    out.conversations = sqlx::query(
                        "INSERT INTO inbox_migration_conversations (migration_id, conversation_id, batch, inbox_id, contact_id, contact_inbox_id) \
                         SELECT $1, c.id, $2, c.inbox_id, c.contact_id, c.contact_inbox_id FROM conversations c \
                         WHERE c.inbox_id = $3 ORDER BY c.inbox_id, c.id LIMIT $4",
                    )
                    .bind(m).bind(b).bind(s).bind(ctx.limit)
                    .execute(&mut *tx).await?.rows_affected() as i64;
                    sqlx::query(
                        "UPDATE conversations SET inbox_id = $3 WHERE id IN \
                         (SELECT conversation_id FROM inbox_migration_conversations WHERE migration_id = $1 AND batch = $2)",
                    )
                    .bind(m).bind(b).bind(d)
                    .execute(&mut *tx).await?;
                    out.source_empty = out.conversations == 0;
                }
                if out.conversations > 0 {
                    // The conversations' own counts (kept by triggers): no message is visited.
                    let (messages, attachments): (i64, i64) = sqlx::query_as(
                        "SELECT CAST(COALESCE(SUM(c.messages_count), 0) AS BIGINT), CAST(COALESCE(SUM(c.attachments_count), 0) AS BIGINT) \
                         FROM inbox_migration_conversations j JOIN conversations c ON c.id = j.conversation_id \
                         WHERE j.migration_id = $1 AND j.batch = $2",
                    )
                    .bind(m).bind(b)
                    .fetch_one(&mut *tx).await?;
                    out.messages = messages;
                    out.attachments = attachments;
                }
                // Progress, guarded by the lease: a worker that lost its lease rolls everything back.
                let cancel: Option<bool> = sqlx::query_scalar(
                    "UPDATE inbox_migrations SET contact_inboxes_moved = contact_inboxes_moved + $3, \
                     conversations_moved = conversations_moved + $4, messages_moved = messages_moved + $5, \
                     attachments_moved = attachments_moved + $6, contacts_merged = contacts_merged + $7, \
                     cursor_id = $8, updated_at = $9 \
                     WHERE id = $1 AND lease_token = $2 AND status = 'running' RETURNING cancel_requested",
                )
                .bind(m)
                .bind(&ctx.token)
                .bind(out.contact_inboxes)
                .bind(out.conversations)
                .bind(out.messages)
                .bind(out.attachments)
                .bind(out.merged_contact_inboxes)
                .bind(b)
                .bind(chrono::Utc::now())
                .fetch_optional(&mut *tx)
                .await?;
                let Some(cancel) = cancel else {
                    tx.rollback().await?;
                    return Ok(None);
                };
                tx.commit().await?;
                out.cancel_requested = cancel;
                Ok(Some(out))
            }

            async fn complete_inbox_migration(&self, id: i64, token: &str, source: i64, destination: i64, result: &serde_json::Value) -> Result<bool> {
                let mut tx = self.begin_write().await?;
                sqlx::query(
                    "INSERT INTO inbox_migration_members (migration_id, inbox_id, user_id) \
                     SELECT $1, $3, m.user_id FROM inbox_members m WHERE m.inbox_id = $2 \
                     AND NOT EXISTS (SELECT 1 FROM inbox_members x WHERE x.inbox_id = $3 AND x.user_id = m.user_id) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(id).bind(source).bind(destination)
                .execute(&mut *tx).await?;
                sqlx::query(
                    "INSERT INTO inbox_members (inbox_id, user_id) SELECT inbox_id, user_id FROM inbox_migration_members \
                     WHERE migration_id = $1 ON CONFLICT DO NOTHING",
                )
                .bind(id)
                .execute(&mut *tx).await?;
                if !Self::end_under_lease(&mut tx, id, token, "completed", Some(result), None, None).await? {
                    tx.rollback().await?;
                    return Ok(false);
                }
                tx.commit().await?;
                Ok(true)
            }

            async fn stop_inbox_migration(&self, id: i64, token: &str, status: &str, message: Option<&str>, detail: Option<&str>) -> Result<bool> {
                let mut tx = self.begin_write().await?;
                if !Self::end_under_lease(&mut tx, id, token, status, None, message, detail).await? {
                    tx.rollback().await?;
                    return Ok(false);
                }
                tx.commit().await?;
                Ok(true)
            }

            async fn request_inbox_migration_revert(&self, id: i64, runs: &[i64], batches: i64, user_id: Option<i64>) -> Result<bool> {
                let mut tx = self.begin_write().await?;
                let row: Option<(i64, i64)> = sqlx::query_as(
                    "UPDATE inbox_migrations SET revert_state = 'queued', revert_runs = $2, revert_batches_total = $3, \
                     revert_batches_done = 0, revert_user_id = $4, revert_error = NULL, revert_completed_at = NULL, \
                     cancel_requested = FALSE, updated_at = $5 \
                     WHERE id = $1 AND status IN ('completed', 'failed', 'cancelled') \
                     AND (revert_state IS NULL OR revert_state IN ('cancelled', 'failed')) \
                     RETURNING source_inbox_id, destination_inbox_id",
                )
                .bind(id)
                .bind(sqlx::types::Json(runs))
                .bind(batches)
                .bind(user_id)
                .bind(chrono::Utc::now())
                .fetch_optional(&mut *tx)
                .await?;
                let Some((source, destination)) = row else { return Ok(false) };
                sqlx::query(
                    "INSERT INTO inbox_migration_locks (inbox_id, migration_id, role) VALUES ($1, $3, 'source'), ($2, $3, 'destination') \
                     ON CONFLICT DO NOTHING",
                )
                .bind(source).bind(destination).bind(id)
                .execute(&mut *tx).await?;
                let ours: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM inbox_migration_locks WHERE migration_id = $1")
                    .bind(id).fetch_one(&mut *tx).await?;
                if ours != 2 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                tx.commit().await?;
                Ok(true)
            }

            async fn cancel_inbox_migration_revert(&self, id: i64) -> Result<bool> {
                let mut tx = self.begin_write().await?;
                let now = chrono::Utc::now();
                let state: Option<RevertState> = sqlx::query_scalar(
                    "UPDATE inbox_migrations SET \
                     revert_state = CASE WHEN revert_state = 'queued' THEN 'cancelled' ELSE revert_state END, \
                     revert_completed_at = CASE WHEN revert_state = 'queued' THEN $2 ELSE revert_completed_at END, \
                     cancel_requested = (revert_state = 'running'), updated_at = $2 \
                     WHERE id = $1 AND revert_state IN ('queued', 'running') RETURNING revert_state",
                )
                .bind(id)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                match state {
                    None => return Ok(false),
                    Some(RevertState::Cancelled) => {
                        sqlx::query("DELETE FROM inbox_migration_locks WHERE migration_id = $1").bind(id).execute(&mut *tx).await?;
                    }
                    Some(_) => {}
                }
                tx.commit().await?;
                Ok(true)
            }

            async fn revert_inbox_migration_batch(&self, revert: RevertBatch<'_>) -> Result<Option<bool>> {
                let mut tx = self.begin_write().await?;
                let cancel_requested: Option<bool> = sqlx::query_scalar(
                    "UPDATE inbox_migrations SET revert_batches_done = revert_batches_done + 1, updated_at = $3 \
                     WHERE id = $1 AND lease_token = $2 AND revert_state = 'running' RETURNING cancel_requested",
                )
                .bind(revert.revert_id)
                .bind(revert.token)
                .bind(chrono::Utc::now())
                .fetch_optional(&mut *tx)
                .await?;
                let Some(cancel_requested) = cancel_requested else {
                    tx.rollback().await?;
                    return Ok(None);
                };
                let (id, batch, source) = (revert.run, revert.batch, revert.source_inbox_id);
                // a. destination contacts back to their before-image (frees emails taken from the source)
                sqlx::query(concat!("UPDATE contacts SET name = (SELECT s.name FROM inbox_migration_contacts s WHERE s.migration_id = $1 AND s.role = 'destination' AND s.contact_id = contacts.id), phone_number = (SELECT s.phone_number FROM inbox_migration_contacts s WHERE s.migration_id = $1 AND s.role = 'destination' AND s.contact_id = contacts.id), email = (SELECT s.email FROM inbox_migration_contacts s WHERE s.migration_id = $1 AND s.role = 'destination' AND s.contact_id = contacts.id), identifier = (SELECT s.identifier FROM inbox_migration_contacts s WHERE s.migration_id = $1 AND s.role = 'destination' AND s.contact_id = contacts.id), custom_attributes = (SELECT s.custom_attributes FROM inbox_migration_contacts s WHERE s.migration_id = $1 AND s.role = 'destination' AND s.contact_id = contacts.id), updated_at = (SELECT s.updated_at FROM inbox_migration_contacts s WHERE s.migration_id = $1 AND s.role = 'destination' AND s.contact_id = contacts.id) WHERE id IN (SELECT p.destination_contact_id ", batch_merges!(), ") \
                    AND EXISTS (SELECT 1 FROM inbox_migration_contacts s WHERE s.migration_id = $1 AND s.role = 'destination' \
                    AND s.contact_id = contacts.id)"))
                    .bind(id).bind(batch).execute(&mut *tx).await?;
                // b. deleted source contacts come back with their ids
                sqlx::query(
                    "INSERT INTO contacts (id, account_id, name, phone_number, email, identifier, custom_attributes, import_id, created_at, updated_at) \
                     SELECT s.contact_id, s.account_id, s.name, s.phone_number, s.email, s.identifier, s.custom_attributes, s.import_id, \
                     s.created_at, s.updated_at FROM inbox_migration_contacts s WHERE s.migration_id = $1 AND s.role = 'source' AND s.deleted \
                     AND s.contact_id IN (SELECT p.contact_id FROM inbox_migration_contact_inboxes p WHERE p.migration_id = $1 AND p.batch = $2 AND p.action = 'merge') \
                     AND NOT EXISTS (SELECT 1 FROM contacts c WHERE c.id = s.contact_id)",
                )
                .bind(id).bind(batch).execute(&mut *tx).await?;
                // c. labels: the union undone, the deleted contacts' labels back with their ids
                sqlx::query(concat!(
                    "DELETE FROM contact_labels WHERE contact_id IN (SELECT p.destination_contact_id ", batch_merges!(), ") \
                     AND EXISTS (SELECT 1 FROM inbox_migration_labels j WHERE j.migration_id = $1 AND j.change = 'added' \
                     AND j.contact_id = contact_labels.contact_id AND j.label = contact_labels.label)"))
                    .bind(id).bind(batch).execute(&mut *tx).await?;
                sqlx::query(concat!(
                    "INSERT INTO contact_labels (id, contact_id, label) SELECT j.label_id, j.contact_id, j.label FROM inbox_migration_labels j \
                     WHERE j.migration_id = $1 AND j.change = 'deleted' AND j.contact_id IN (SELECT p.contact_id ", batch_merges!(), ") \
                     AND NOT EXISTS (SELECT 1 FROM contact_labels x WHERE x.contact_id = j.contact_id AND x.label = j.label)"))
                    .bind(id).bind(batch).execute(&mut *tx).await?;
                // d. notes back to their contact
                sqlx::query(concat!(
                    "UPDATE contact_notes SET contact_id = (SELECT j.contact_id FROM inbox_migration_notes j \
                     WHERE j.migration_id = $1 AND j.note_id = contact_notes.id) \
                     WHERE id IN (SELECT j.note_id FROM inbox_migration_notes j WHERE j.migration_id = $1 \
                     AND j.contact_id IN (SELECT p.contact_id ", batch_merges!(), "))"))
                    .bind(id).bind(batch).execute(&mut *tx).await?;
                // e. merged contact_inboxes re-created; f. moved ones back with their old source_id
                sqlx::query(
                    "INSERT INTO contact_inboxes (id, contact_id, inbox_id, source_id, wa_identity, wa_key, wa_alias, import_id, created_at) \
                     SELECT p.contact_inbox_id, p.contact_id, $3, p.source_id, p.wa_identity, p.wa_key, p.wa_alias, p.import_id, p.created_at \
                     FROM inbox_migration_contact_inboxes p WHERE p.migration_id = $1 AND p.batch = $2 AND p.action = 'merge'",
                )
                .bind(id).bind(batch).bind(source).execute(&mut *tx).await?;
                sqlx::query(
                    "UPDATE contact_inboxes SET inbox_id = $3, source_id = (SELECT p.source_id FROM inbox_migration_contact_inboxes p \
                     WHERE p.migration_id = $1 AND p.contact_inbox_id = contact_inboxes.id), \
                     wa_alias = (SELECT p.wa_alias FROM inbox_migration_contact_inboxes p \
                     WHERE p.migration_id = $1 AND p.contact_inbox_id = contact_inboxes.id) \
                     WHERE id IN (SELECT contact_inbox_id FROM inbox_migration_contact_inboxes WHERE migration_id = $1 AND batch = $2 AND action = 'move')",
                )
                .bind(id).bind(batch).bind(source).execute(&mut *tx).await?;
                // g. conversations back to their inbox, contact and contact_inbox
                sqlx::query(
                    "UPDATE conversations SET \
                     inbox_id = (SELECT j.inbox_id FROM inbox_migration_conversations j WHERE j.migration_id = $1 AND j.conversation_id = conversations.id), \
                     contact_id = (SELECT j.contact_id FROM inbox_migration_conversations j WHERE j.migration_id = $1 AND j.conversation_id = conversations.id), \
                     contact_inbox_id = (SELECT j.contact_inbox_id FROM inbox_migration_conversations j WHERE j.migration_id = $1 AND j.conversation_id = conversations.id) \
                     WHERE id IN (SELECT conversation_id FROM inbox_migration_conversations WHERE migration_id = $1 AND batch = $2)",
                )
                .bind(id).bind(batch).execute(&mut *tx).await?;
                // h. dropped duplicates back with their ids, then their attachments
                sqlx::query(concat!(
                    "INSERT INTO messages (", message_columns!(), ") SELECT ", message_columns!(),
                    " FROM inbox_migration_messages WHERE migration_id = $1 AND batch = $2 \
                     AND NOT EXISTS (SELECT 1 FROM messages x WHERE x.id = inbox_migration_messages.id)"))
                    .bind(id).bind(batch).execute(&mut *tx).await?;
                sqlx::query(concat!(
                    "INSERT INTO attachments (", attachment_columns!(), ") SELECT ", attachment_columns!(),
                    " FROM inbox_migration_attachments WHERE migration_id = $1 AND batch = $2 \
                     AND NOT EXISTS (SELECT 1 FROM attachments x WHERE x.id = inbox_migration_attachments.id)"))
                    .bind(id).bind(batch).execute(&mut *tx).await?;
                sqlx::query("UPDATE inbox_migrations SET cursor_id = $2 - 1, updated_at = $3 WHERE id = $1")
                    .bind(id).bind(batch).bind(chrono::Utc::now()).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(Some(cancel_requested))
            }

            async fn finish_inbox_migration_revert(&self, id: i64, token: &str, result: &serde_json::Value) -> Result<bool> {
                let mut tx = self.begin_write().await?;
                let now = chrono::Utc::now();
                let runs: Option<sqlx::types::Json<Vec<i64>>> = sqlx::query_scalar(
                    "UPDATE inbox_migrations SET revert_state = 'reverted', revert_result = $3, revert_completed_at = $4, \
                     updated_at = $4, lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL \
                     WHERE id = $1 AND lease_token = $2 AND revert_state = 'running' RETURNING revert_runs",
                )
                .bind(id).bind(token).bind(sqlx::types::Json(result)).bind(now)
                .fetch_optional(&mut *tx).await?;
                let Some(runs) = runs else {
                    tx.rollback().await?;
                    return Ok(false);
                };
                for run in runs.0 {
                    sqlx::query(
                        "DELETE FROM inbox_members WHERE inbox_id = (SELECT destination_inbox_id FROM inbox_migrations WHERE id = $1) \
                         AND user_id IN (SELECT user_id FROM inbox_migration_members WHERE migration_id = $1)",
                    )
                    .bind(run).execute(&mut *tx).await?;
                    sqlx::query(
                        "UPDATE inbox_migrations SET status = 'reverted', phase = 'reverted', updated_at = $3, \
                         reverted_with = CASE WHEN id = $2 THEN NULL ELSE $2 END WHERE id = $1",
                    )
                    .bind(run).bind(id).bind(now).execute(&mut *tx).await?;
                }
                Self::close_attempt(&mut tx, id, "reverted", None, now).await?;
                sqlx::query("DELETE FROM inbox_migration_locks WHERE migration_id = $1").bind(id).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn stop_inbox_migration_revert(&self, id: i64, token: &str, state: RevertState, error: Option<&str>) -> Result<bool> {
                let mut tx = self.begin_write().await?;
                let now = chrono::Utc::now();
                let done = sqlx::query(
                    "UPDATE inbox_migrations SET revert_state = $3, revert_error = $4, revert_completed_at = $5, \
                     cancel_requested = FALSE, updated_at = $5, lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL \
                     WHERE id = $1 AND lease_token = $2 AND revert_state = 'running'",
                )
                .bind(id).bind(token).bind(state).bind(error).bind(now)
                .execute(&mut *tx).await?;
                if done.rows_affected() != 1 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                let outcome = if state == RevertState::Cancelled { "cancelled" } else { "failed" };
                Self::close_attempt(&mut tx, id, outcome, error, now).await?;
                sqlx::query("DELETE FROM inbox_migration_locks WHERE migration_id = $1").bind(id).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn inbox_migration_restored(&self, runs: &[i64]) -> Result<(i64, i64, i64)> {
                let mut total = (0, 0, 0);
                for &run in runs {
                    let (conversations, messages, contact_inboxes): (i64, i64, i64) = sqlx::query_as(
                        "SELECT (SELECT COUNT(*) FROM inbox_migration_conversations j, inbox_migrations m \
                                 WHERE j.migration_id = $1 AND m.id = $1 AND j.batch > m.cursor_id), \
                                (SELECT CAST(COALESCE(SUM(c.messages_count), 0) AS BIGINT) FROM inbox_migration_conversations j \
                                 JOIN inbox_migrations m ON m.id = j.migration_id JOIN conversations c ON c.id = j.conversation_id \
                                 WHERE j.migration_id = $1 AND j.batch > m.cursor_id), \
                                (SELECT COUNT(*) FROM inbox_migration_contact_inboxes p, inbox_migrations m \
                                 WHERE p.migration_id = $1 AND m.id = $1 AND p.batch > m.cursor_id)",
                    )
                    .bind(run)
                    .fetch_one(&self.pool)
                    .await?;
                    total = (total.0 + conversations, total.1 + messages, total.2 + contact_inboxes);
                }
                Ok(total)
            }

            async fn inbox_migration_attempts(&self, id: i64) -> Result<Vec<MigrationAttempt>> {
                Ok(sqlx::query_as(
                    "SELECT kind, worker, started_at, ended_at, outcome, error, batches_at_start, batches_at_end \
                     FROM inbox_migration_attempts WHERE migration_id = $1 ORDER BY id",
                )
                .bind(id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn account_rows_snapshot(&self, account_id: i64) -> Result<Vec<String>> {
                let mut out = Vec::new();
                let contacts: Vec<(i64, Option<String>, Option<String>, Option<String>, Option<String>, sqlx::types::Json<serde_json::Value>, Option<i64>, DateTime<Utc>, DateTime<Utc>)> =
                    sqlx::query_as("SELECT id, name, phone_number, email, identifier, custom_attributes, import_id, created_at, updated_at \
                        FROM contacts WHERE account_id = $1 ORDER BY id")
                    .bind(account_id).fetch_all(&self.pool).await?;
                out.extend(contacts.iter().map(|r| format!("contact {r:?}")));
                let cis: Vec<(i64, i64, i64, String, Option<String>, Option<String>, Option<String>, Option<i64>, DateTime<Utc>)> =
                    sqlx::query_as("SELECT ci.id, ci.contact_id, ci.inbox_id, ci.source_id, ci.wa_identity, ci.wa_key, ci.wa_alias, ci.import_id, ci.created_at \
                        FROM contact_inboxes ci JOIN inboxes i ON i.id = ci.inbox_id WHERE i.account_id = $1 ORDER BY ci.id")
                    .bind(account_id).fetch_all(&self.pool).await?;
                out.extend(cis.iter().map(|r| format!("contact_inbox {r:?}")));
                let conversations: Vec<(i64, i64, i64, Option<i64>, i64, String, Option<i64>, DateTime<Utc>, DateTime<Utc>, DateTime<Utc>)> =
                    sqlx::query_as("SELECT id, inbox_id, contact_id, contact_inbox_id, display_id, status, assignee_id, last_activity_at, \
                        created_at, updated_at FROM conversations WHERE account_id = $1 ORDER BY id")
                    .bind(account_id).fetch_all(&self.pool).await?;
                out.extend(conversations.iter().map(|r| format!("conversation {r:?}")));
                let labels: Vec<(i64, i64, String)> = sqlx::query_as(
                    "SELECT l.id, l.contact_id, l.label FROM contact_labels l JOIN contacts c ON c.id = l.contact_id \
                     WHERE c.account_id = $1 ORDER BY l.id")
                    .bind(account_id).fetch_all(&self.pool).await?;
                out.extend(labels.iter().map(|r| format!("label {r:?}")));
                let notes: Vec<(i64, i64, Option<i64>, String, DateTime<Utc>)> = sqlx::query_as(
                    "SELECT id, contact_id, user_id, content, created_at FROM contact_notes WHERE account_id = $1 ORDER BY id")
                    .bind(account_id).fetch_all(&self.pool).await?;
                out.extend(notes.iter().map(|r| format!("note {r:?}")));
                let members: Vec<(i64, i64, i64)> = sqlx::query_as(
                    "SELECT m.id, m.inbox_id, m.user_id FROM inbox_members m JOIN inboxes i ON i.id = m.inbox_id \
                     WHERE i.account_id = $1 ORDER BY m.id")
                    .bind(account_id).fetch_all(&self.pool).await?;
                out.extend(members.iter().map(|r| format!("member {r:?}")));
                Ok(out)
            }

            async fn count_duplicate_messages(&self, source: i64, destination: i64, key: MatchKey) -> Result<i64> {
                let k = key.column();
                let sql = format!(
                    "SELECT COUNT(*) FROM contact_inboxes s \
                     JOIN contact_inboxes d ON d.id = (SELECT MIN(x.id) FROM contact_inboxes x WHERE x.inbox_id = $2 AND x.{k} = s.{k}) \
                     JOIN conversations c ON c.contact_inbox_id = s.id \
                     JOIN messages m ON m.conversation_id = c.id \
                     WHERE s.inbox_id = $1 AND c.inbox_id = $1 AND m.source_id IS NOT NULL AND EXISTS (SELECT 1 FROM messages m2 \
                     JOIN conversations c2 ON c2.id = m2.conversation_id WHERE m2.account_id = m.account_id \
                     AND m2.source_id = m.source_id AND c2.contact_inbox_id = d.id)"
                );
                Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(source)
                    .bind(destination)
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn inbox_migration_dropped(&self, id: i64) -> Result<(i64, i64)> {
                Ok(sqlx::query_as(
                    "SELECT (SELECT COUNT(*) FROM inbox_migration_messages WHERE migration_id = $1), \
                     (SELECT COUNT(*) FROM inbox_migration_attachments WHERE migration_id = $1)",
                )
                .bind(id)
                .fetch_one(&self.pool)
                .await?)
            }

            async fn count_conversation_counter_drift(&self, source: i64, destination: i64) -> Result<i64> {
                Ok(sqlx::query_scalar(
                    "SELECT COUNT(*) FROM conversations c WHERE c.inbox_id IN ($1, $2) \
                     AND (c.messages_count <> (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id) \
                     OR c.attachments_count <> (SELECT COUNT(*) FROM attachments a JOIN messages m ON m.id = a.message_id \
                     WHERE m.conversation_id = c.id))",
                )
                .bind(source)
                .bind(destination)
                .fetch_one(&self.pool)
                .await?)
            }

            async fn refresh_journal_statistics(&self) -> Result<()> {
                if Self::BACKEND == $crate::store::Backend::Postgres {
                    // ANALYZE samples a bounded number of rows: its cost does not grow with the journal.
                    sqlx::raw_sql(
                        "ANALYZE inbox_migration_contact_inboxes, inbox_migration_conversations, inbox_migration_contacts, \
                         inbox_migration_labels, inbox_migration_notes",
                    )
                    .execute(&self.pool)
                    .await?;
                }
                Ok(())
            }

            async fn count_unportable_identities(&self, inbox_id: i64, lids: bool, bsuids: bool) -> Result<i64> {
                Ok(sqlx::query_scalar(
                    "SELECT COUNT(*) FROM contact_inboxes WHERE inbox_id = $1 \
                     AND (($2 AND wa_identity LIKE '%@lid') OR ($3 AND wa_identity LIKE '%.%'))",
                )
                .bind(inbox_id)
                .bind(lids)
                .bind(bsuids)
                .fetch_one(&self.pool)
                .await?)
            }

            async fn contacts_with_several_open_conversations(&self, inbox_id: i64) -> Result<Vec<i64>> {
                Ok(sqlx::query_scalar(
                    "SELECT contact_id FROM conversations WHERE inbox_id = $1 AND status = 'open' \
                     GROUP BY contact_id HAVING COUNT(*) > 1 ORDER BY contact_id LIMIT 1000",
                )
                .bind(inbox_id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn check_inbox_migration_invariants(&self, source: i64, destination: i64, key: MatchKey, completed_at: Option<DateTime<Utc>>) -> Result<Vec<Violation>> {
                let k = key.column();
                let mut out = Vec::new();
                let wrong_refs: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM conversations c JOIN contact_inboxes ci ON ci.id = c.contact_inbox_id \
                     WHERE c.inbox_id IN ($1, $2) AND (ci.inbox_id <> c.inbox_id OR ci.contact_id <> c.contact_id)",
                )
                .bind(source).bind(destination)
                .fetch_one(&self.pool).await?;
                if wrong_refs > 0 {
                    out.push(Violation { invariant: 2, count: wrong_refs,
                        description: "conversations whose contact_inbox is in another inbox or of another contact".into() });
                }
                let sql = format!(
                    "SELECT COUNT(*) FROM (SELECT {k} FROM contact_inboxes WHERE inbox_id = $1 AND {k} IS NOT NULL \
                     GROUP BY {k} HAVING COUNT(*) > 1) dup"
                );
                let shared: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(destination).fetch_one(&self.pool).await?;
                if shared > 0 {
                    out.push(Violation { invariant: 3, count: shared,
                        description: "identities held by two contact_inboxes of the destination".into() });
                }
                if let Some(completed_at) = completed_at {
                    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM conversations WHERE inbox_id = $1 AND created_at <= $2")
                        .bind(source).bind(completed_at).fetch_one(&self.pool).await?;
                    if left > 0 {
                        out.push(Violation { invariant: 5, count: left,
                            description: "conversations older than the migration are still in the source".into() });
                    }
                }
                Ok(out)
            }
        }

        impl $store {
            /// Ends a running migration (completed, cancelled or failed) if `token` still holds its lease, and
            /// releases its inboxes. False when the lease was lost: the caller rolls back.
            async fn end_under_lease(
                tx: &mut sqlx::Transaction<'static, $db>,
                id: i64,
                token: &str,
                status: &str,
                result: Option<&serde_json::Value>,
                message: Option<&str>,
                detail: Option<&str>,
            ) -> Result<bool> {
                let done = sqlx::query(
                    "UPDATE inbox_migrations SET status = $3, \
                     phase = CASE WHEN $3 = 'completed' THEN 'done' ELSE phase END, \
                     result = COALESCE($4, result), error_message = $5, error_detail = $6, completed_at = $7, \
                     updated_at = $7, lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL \
                     WHERE id = $1 AND lease_token = $2 AND status = 'running'",
                )
                .bind(id)
                .bind(token)
                .bind(status)
                .bind(result.map(sqlx::types::Json))
                .bind(message)
                .bind(detail)
                .bind(chrono::Utc::now())
                .execute(&mut **tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                Self::close_attempt(tx, id, status, message, chrono::Utc::now()).await?;
                sqlx::query("DELETE FROM inbox_migration_locks WHERE migration_id = $1")
                    .bind(id)
                    .execute(&mut **tx)
                    .await?;
                Ok(true)
            }

            /// A new attempt of `kind` by `worker`; an attempt still open was taken over (its lease expired).
            async fn open_attempt(
                tx: &mut sqlx::Transaction<'static, $db>,
                id: i64,
                kind: &str,
                worker: &str,
                now: DateTime<Utc>,
            ) -> Result<()> {
                Self::close_attempt(tx, id, "lease_expired", None, now).await?;
                sqlx::query(
                    "INSERT INTO inbox_migration_attempts (migration_id, kind, worker, started_at, batches_at_start) \
                     SELECT id, $2, $3, $4, CASE WHEN $2 = 'revert' THEN revert_batches_done ELSE cursor_id END \
                     FROM inbox_migrations WHERE id = $1",
                )
                .bind(id)
                .bind(kind)
                .bind(worker)
                .bind(now)
                .execute(&mut **tx)
                .await?;
                Ok(())
            }

            /// Ends the migration's open attempt (if any) with `outcome`.
            async fn close_attempt(
                tx: &mut sqlx::Transaction<'static, $db>,
                id: i64,
                outcome: &str,
                error: Option<&str>,
                now: DateTime<Utc>,
            ) -> Result<()> {
                sqlx::query(
                    "UPDATE inbox_migration_attempts SET ended_at = $3, outcome = $2, error = $4, \
                     batches_at_end = (SELECT CASE WHEN inbox_migration_attempts.kind = 'revert' \
                     THEN m.revert_batches_done ELSE m.cursor_id END FROM inbox_migrations m WHERE m.id = $1) \
                     WHERE migration_id = $1 AND ended_at IS NULL",
                )
                .bind(id)
                .bind(outcome)
                .bind(now)
                .bind(error)
                .execute(&mut **tx)
                .await?;
                Ok(())
            }
        }
    };
}

pub(super) use {
    attachment_columns, batch_merges, deleted_sources, impl_inbox_migration_store, message_columns,
};
