//! One batch of an inbox migration and one batch of its revert, each in one transaction guarded by the lease.
//! A migration batch plans its contact_inboxes (move or merge), snapshots the contacts a merge touches,
//! journals the conversations, drops duplicate messages (journaled), moves the rows, merges labels, notes and
//! contact fields, and records its progress. A revert batch undoes one migration batch from that journal.

use super::db::{Pool, Tx, db_run};
use super::inbox_migrations::native_source_id_sql;
use super::inbox_migrations_impl::{
    attachment_columns, batch_merges, deleted_sources, message_columns,
};
use super::{BatchContext, BatchOutcome, Result, RevertBatch};

/// Runs `sql` with these integer parameters (`$1`, `$2`, …): the rows it changed.
async fn exec(tx: &mut Tx, sql: &str, params: &[i64]) -> Result<i64> {
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    let changed = db_run!(tx, |c| {
        let mut q = sqlx::query(sql);
        for p in params {
            q = q.bind(*p);
        }
        q.execute(c).await.map(|r| r.rows_affected())
    })?;
    Ok(changed as i64)
}

pub(super) async fn run_batch(pool: &Pool, ctx: &BatchContext) -> Result<Option<BatchOutcome>> {
    let mut tx = pool.begin_write().await?;
    let mut out = BatchOutcome::default();
    let (m, b) = (ctx.migration_id, ctx.batch);
    out.contact_inboxes = plan(&mut tx, ctx).await?;
    if out.contact_inboxes > 0 {
        out.last_contact_inbox_id = db_run!(&mut tx, |c| {
            sqlx::query_scalar(
            "SELECT MAX(contact_inbox_id) FROM inbox_migration_contact_inboxes WHERE migration_id = $1 AND batch = $2",
        )
        .bind(m)
        .bind(b)
        .fetch_one(c)
        .await
        })?;
        snapshot_contacts(&mut tx, m, b).await?;
        out.conversations = journal_conversations(&mut tx, ctx).await?;
        if ctx.drop_duplicates {
            out.duplicates_dropped = drop_duplicates(&mut tx, m, b).await?;
        }
        out.merged_contact_inboxes = move_rows(&mut tx, ctx).await?;
        merge_labels(&mut tx, m, b).await?;
        out.contacts_deleted = delete_emptied_contacts(&mut tx, m, b).await?;
        let merge_fields = tx.backend().merge_contact_fields_sql();
        exec(&mut tx, merge_fields, &[m, b]).await?;
    } else {
        out.conversations = sweep(&mut tx, ctx).await?;
        out.source_empty = out.conversations == 0;
    }
    if out.conversations > 0 {
        (out.messages, out.attachments) = moved_counts(&mut tx, m, b).await?;
    }
    let Some(cancel) = record_progress(&mut tx, ctx, &out).await? else {
        tx.rollback().await?;
        return Ok(None);
    };
    tx.commit().await?;
    out.cancel_requested = cancel;
    Ok(Some(out))
}

/// The lowest source contact_inboxes, each matched to the destination's by identity. A second source row of
/// the same identity waits for a later batch, where it merges into the first one's new home. How many.
async fn plan(tx: &mut Tx, ctx: &BatchContext) -> Result<i64> {
    let k = ctx.key.column();
    let native = native_source_id_sql(ctx.destination_channel);
    let sql = format!(
        "INSERT INTO inbox_migration_contact_inboxes (migration_id, contact_inbox_id, batch, action, contact_id, \
         source_id, wa_identity, wa_key, wa_alias, import_id, created_at, new_source_id, \
         destination_contact_inbox_id, destination_contact_id) \
         SELECT $1, s.id, $2, CASE WHEN m.id IS NULL THEN 'move' ELSE 'merge' END, s.contact_id, s.source_id, \
         s.wa_identity, s.wa_key, s.wa_alias, s.import_id, s.created_at, {native}, m.id, m.contact_id \
         FROM (SELECT s.*, (SELECT MIN(x.id) FROM contact_inboxes x WHERE x.inbox_id = $4 AND x.{k} = s.{k}) AS match_id \
               FROM (SELECT * FROM contact_inboxes WHERE inbox_id = $3 AND id > $6 ORDER BY inbox_id, id LIMIT $5) s \
               WHERE s.{k} IS NULL \
               OR s.id = (SELECT MIN(s2.id) FROM contact_inboxes s2 WHERE s2.inbox_id = $3 AND s2.{k} = s.{k})) s \
         LEFT JOIN contact_inboxes m ON m.id = s.match_id"
    );
    let (m, b, s, d) = (
        ctx.migration_id,
        ctx.batch,
        ctx.source_inbox_id,
        ctx.destination_inbox_id,
    );
    // The cursor spares PostgreSQL from walking the index entries of rows already moved.
    let mut planned = 0;
    for after in [ctx.after_contact_inbox_id, 0] {
        planned = exec(tx, &sql, &[m, b, s, d, ctx.limit, after]).await?;
        if planned > 0 || after == 0 {
            break;
        }
    }
    Ok(planned)
}

/// Before-images of the contacts this batch's merges touch, on both sides.
async fn snapshot_contacts(tx: &mut Tx, m: i64, b: i64) -> Result<()> {
    for (role, column) in [
        ("destination", "destination_contact_id"),
        ("source", "contact_id"),
    ] {
        let sql = format!(
            "INSERT INTO inbox_migration_contacts (migration_id, contact_id, role, account_id, name, phone_number, \
             email, identifier, custom_attributes, import_id, created_at, updated_at) \
             SELECT $1, c.id, '{role}', c.account_id, c.name, c.phone_number, c.email, c.identifier, \
             c.custom_attributes, c.import_id, c.created_at, c.updated_at FROM contacts c \
             WHERE c.id IN (SELECT p.{column} {merges}) ON CONFLICT (migration_id, contact_id) DO NOTHING",
            merges = batch_merges!()
        );
        exec(tx, &sql, &[m, b]).await?;
    }
    Ok(())
}

/// Each conversation journaled with its old and new references (a merge re-points it to the destination's
/// contact and contact_inbox). How many.
async fn journal_conversations(tx: &mut Tx, ctx: &BatchContext) -> Result<i64> {
    let sql = "INSERT INTO inbox_migration_conversations (migration_id, conversation_id, batch, inbox_id, \
               contact_id, contact_inbox_id, new_contact_id, new_contact_inbox_id) \
               SELECT $1, c.id, $2, c.inbox_id, c.contact_id, c.contact_inbox_id, \
               COALESCE(p.destination_contact_id, c.contact_id), \
               COALESCE(p.destination_contact_inbox_id, c.contact_inbox_id) \
               FROM inbox_migration_contact_inboxes p JOIN conversations c ON c.contact_inbox_id = p.contact_inbox_id \
               WHERE p.migration_id = $1 AND p.batch = $2 AND +c.inbox_id = $3";
    exec(tx, sql, &[ctx.migration_id, ctx.batch, ctx.source_inbox_id]).await
}

/// The source's copy of a message the person's destination conversations already hold (same provider id) is
/// dropped; row and attachments journaled first, for revert. How many.
async fn drop_duplicates(tx: &mut Tx, m: i64, b: i64) -> Result<i64> {
    let journal = concat!(
        "INSERT INTO inbox_migration_messages (migration_id, batch, kept_message_id, ",
        message_columns!(),
        ") SELECT $1, $2, k.kept, ",
        message_columns!(),
        " FROM messages JOIN \
         (SELECT m.id AS message_id, (SELECT MIN(m2.id) FROM messages m2 JOIN conversations c2 ON c2.id = m2.conversation_id \
           WHERE m2.account_id = m.account_id AND m2.source_id = m.source_id \
           AND c2.contact_inbox_id = p.destination_contact_inbox_id) AS kept \
          FROM inbox_migration_contact_inboxes p \
          JOIN inbox_migration_conversations j ON j.migration_id = p.migration_id AND j.batch = p.batch \
            AND j.contact_inbox_id = p.contact_inbox_id \
          JOIN messages m ON m.conversation_id = j.conversation_id \
          WHERE p.migration_id = $1 AND p.batch = $2 AND p.action = 'merge' AND m.source_id IS NOT NULL) k \
         ON k.message_id = messages.id WHERE k.kept IS NOT NULL"
    );
    let dropped = exec(tx, journal, &[m, b]).await?;
    if dropped > 0 {
        let attachments = concat!(
            "INSERT INTO inbox_migration_attachments (migration_id, batch, ",
            attachment_columns!(),
            ") SELECT $1, $2, ",
            attachment_columns!(),
            " FROM attachments WHERE message_id IN \
             (SELECT id FROM inbox_migration_messages WHERE migration_id = $1 AND batch = $2)"
        );
        exec(tx, attachments, &[m, b]).await?;
        // The cascade takes the attachments; triggers keep the conversations' counts.
        let delete = "DELETE FROM messages WHERE id IN \
                      (SELECT id FROM inbox_migration_messages WHERE migration_id = $1 AND batch = $2)";
        exec(tx, delete, &[m, b]).await?;
    }
    Ok(dropped)
}

/// Conversations to the destination (re-pointed where merged), merged contact_inboxes deleted, moved ones
/// re-homed with their native `source_id`. How many were merged.
async fn move_rows(tx: &mut Tx, ctx: &BatchContext) -> Result<i64> {
    let (m, b, d) = (ctx.migration_id, ctx.batch, ctx.destination_inbox_id);
    // UPDATE … FROM the batch's journal rows: both planners drive it from them.
    let conversations = "UPDATE conversations SET inbox_id = $3, contact_id = j.new_contact_id, \
                         contact_inbox_id = j.new_contact_inbox_id FROM inbox_migration_conversations j \
                         WHERE j.migration_id = $1 AND j.batch = $2 AND conversations.id = j.conversation_id";
    exec(tx, conversations, &[m, b, d]).await?;
    let merged = "DELETE FROM contact_inboxes WHERE id IN (SELECT contact_inbox_id FROM \
                  inbox_migration_contact_inboxes WHERE migration_id = $1 AND batch = $2 AND action = 'merge')";
    let merged = exec(tx, merged, &[m, b]).await?;
    // A moved row keeps its alias (a BSUID) unless a destination row already holds it.
    let moved = "UPDATE contact_inboxes SET inbox_id = $3, source_id = x.new_source_id, \
                 wa_alias = CASE WHEN EXISTS (SELECT 1 FROM contact_inboxes d WHERE d.inbox_id = $3 \
                 AND d.wa_alias = contact_inboxes.wa_alias) THEN NULL ELSE contact_inboxes.wa_alias END \
                 FROM (SELECT contact_inbox_id, new_source_id FROM inbox_migration_contact_inboxes \
                       WHERE migration_id = $1 AND batch = $2 AND action = 'move') x \
                 WHERE contact_inboxes.id = x.contact_inbox_id";
    exec(tx, moved, &[m, b, d]).await?;
    Ok(merged)
}

/// Labels: the union on the destination contact, journaled before it is written.
async fn merge_labels(tx: &mut Tx, m: i64, b: i64) -> Result<()> {
    let journal = "INSERT INTO inbox_migration_labels (migration_id, contact_id, label, change) \
                   SELECT DISTINCT $1, p.destination_contact_id, l.label, 'added' \
                   FROM inbox_migration_contact_inboxes p JOIN contact_labels l ON l.contact_id = p.contact_id \
                   WHERE p.migration_id = $1 AND p.batch = $2 AND p.action = 'merge' \
                   AND p.contact_id <> p.destination_contact_id \
                   AND NOT EXISTS (SELECT 1 FROM contact_labels x WHERE x.contact_id = p.destination_contact_id \
                   AND x.label = l.label) ON CONFLICT DO NOTHING";
    exec(tx, journal, &[m, b]).await?;
    let union = "INSERT INTO contact_labels (contact_id, label) SELECT DISTINCT p.destination_contact_id, l.label \
                 FROM inbox_migration_contact_inboxes p JOIN contact_labels l ON l.contact_id = p.contact_id \
                 WHERE p.migration_id = $1 AND p.batch = $2 AND p.action = 'merge' \
                 AND p.contact_id <> p.destination_contact_id ON CONFLICT DO NOTHING";
    exec(tx, union, &[m, b]).await?;
    Ok(())
}

/// Source contacts left with nothing are deleted; their labels and notes are journaled, the notes move to the
/// destination contact. How many.
async fn delete_emptied_contacts(tx: &mut Tx, m: i64, b: i64) -> Result<i64> {
    let mark = "UPDATE inbox_migration_contacts SET deleted = TRUE WHERE migration_id = $1 AND role = 'source' \
                AND deleted = FALSE AND contact_id IN (SELECT p.contact_id FROM inbox_migration_contact_inboxes p \
                WHERE p.migration_id = $1 AND p.batch = $2 AND p.action = 'merge' \
                AND p.contact_id <> p.destination_contact_id) \
                AND NOT EXISTS (SELECT 1 FROM contact_inboxes ci WHERE ci.contact_id = inbox_migration_contacts.contact_id) \
                AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.contact_id = inbox_migration_contacts.contact_id)";
    let deleted = exec(tx, mark, &[m, b]).await?;
    if deleted == 0 {
        return Ok(0);
    }
    let steps = [
        concat!(
            "INSERT INTO inbox_migration_labels (migration_id, contact_id, label, label_id, change) \
             SELECT $1, l.contact_id, l.label, l.id, 'deleted' FROM contact_labels l WHERE l.contact_id IN (",
            deleted_sources!(),
            ") ON CONFLICT DO NOTHING"
        ),
        concat!(
            "INSERT INTO inbox_migration_notes (migration_id, note_id, contact_id) \
             SELECT $1, n.id, n.contact_id FROM contact_notes n WHERE n.contact_id IN (",
            deleted_sources!(),
            ")"
        ),
        concat!(
            "UPDATE contact_notes SET contact_id = (SELECT MIN(p.destination_contact_id) \
             FROM inbox_migration_contact_inboxes p WHERE p.migration_id = $1 AND p.batch = $2 \
             AND p.action = 'merge' AND p.contact_id = contact_notes.contact_id) WHERE contact_id IN (",
            deleted_sources!(),
            ")"
        ),
        concat!(
            "DELETE FROM contacts WHERE id IN (",
            deleted_sources!(),
            ")"
        ),
    ];
    for sql in steps {
        exec(tx, sql, &[m, b]).await?;
    }
    Ok(deleted)
}

/// Conversations still in the source without a contact_inbox there (late or odd rows). How many.
async fn sweep(tx: &mut Tx, ctx: &BatchContext) -> Result<i64> {
    let (m, b) = (ctx.migration_id, ctx.batch);
    let journal = "INSERT INTO inbox_migration_conversations (migration_id, conversation_id, batch, inbox_id, \
                   contact_id, contact_inbox_id) \
                   SELECT $1, c.id, $2, c.inbox_id, c.contact_id, c.contact_inbox_id FROM conversations c \
                   WHERE c.inbox_id = $3 ORDER BY c.inbox_id, c.id LIMIT $4";
    let swept = exec(tx, journal, &[m, b, ctx.source_inbox_id, ctx.limit]).await?;
    let moved = "UPDATE conversations SET inbox_id = $3 WHERE id IN \
                 (SELECT conversation_id FROM inbox_migration_conversations WHERE migration_id = $1 AND batch = $2)";
    exec(tx, moved, &[m, b, ctx.destination_inbox_id]).await?;
    Ok(swept)
}

/// The moved conversations' own counts of messages and attachments (kept by triggers): no message is visited.
async fn moved_counts(tx: &mut Tx, m: i64, b: i64) -> Result<(i64, i64)> {
    Ok(db_run!(tx, |c| sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(c.messages_count), 0) AS BIGINT), \
         CAST(COALESCE(SUM(c.attachments_count), 0) AS BIGINT) \
         FROM inbox_migration_conversations j JOIN conversations c ON c.id = j.conversation_id \
         WHERE j.migration_id = $1 AND j.batch = $2",
    )
    .bind(m)
    .bind(b)
    .fetch_one(c)
    .await)?)
}

/// Progress, guarded by the lease: `None` when this worker lost its lease (the caller rolls everything back),
/// else whether a cancel was requested.
async fn record_progress(
    tx: &mut Tx,
    ctx: &BatchContext,
    out: &BatchOutcome,
) -> Result<Option<bool>> {
    Ok(db_run!(tx, |c| sqlx::query_scalar(
        "UPDATE inbox_migrations SET contact_inboxes_moved = contact_inboxes_moved + $3, \
         conversations_moved = conversations_moved + $4, messages_moved = messages_moved + $5, \
         attachments_moved = attachments_moved + $6, contacts_merged = contacts_merged + $7, \
         cursor_id = $8, updated_at = $9 \
         WHERE id = $1 AND lease_token = $2 AND status = 'running' RETURNING cancel_requested",
    )
    .bind(ctx.migration_id)
    .bind(&ctx.token)
    .bind(out.contact_inboxes)
    .bind(out.conversations)
    .bind(out.messages)
    .bind(out.attachments)
    .bind(out.merged_contact_inboxes)
    .bind(ctx.batch)
    .bind(chrono::Utc::now())
    .fetch_optional(c)
    .await)?)
}

/// Undoes one batch of one run, newest first (the caller's order). `None` when the revert's lease was lost,
/// else whether a cancel was requested.
pub(super) async fn revert_batch(pool: &Pool, revert: RevertBatch<'_>) -> Result<Option<bool>> {
    let mut tx = pool.begin_write().await?;
    let cancel_requested: Option<bool> = db_run!(&mut tx, |c| {
        sqlx::query_scalar(
        "UPDATE inbox_migrations SET revert_batches_done = revert_batches_done + 1, updated_at = $3 \
         WHERE id = $1 AND lease_token = $2 AND revert_state = 'running' RETURNING cancel_requested",
    )
    .bind(revert.revert_id)
    .bind(revert.token)
    .bind(chrono::Utc::now())
    .fetch_optional(c)
    .await
    })?;
    let Some(cancel_requested) = cancel_requested else {
        tx.rollback().await?;
        return Ok(None);
    };
    let (id, batch, source) = (revert.run, revert.batch, revert.source_inbox_id);
    for (sql, with_source) in REVERT_STEPS {
        let params: &[i64] = if with_source {
            &[id, batch, source]
        } else {
            &[id, batch]
        };
        exec(&mut tx, sql, params).await?;
    }
    let rewind = "UPDATE inbox_migrations SET cursor_id = $2 - 1, updated_at = $3 WHERE id = $1";
    db_run!(&mut tx, |c| sqlx::query(rewind)
        .bind(id)
        .bind(batch)
        .bind(chrono::Utc::now())
        .execute(c)
        .await
        .map(drop))?;
    tx.commit().await?;
    Ok(Some(cancel_requested))
}

/// A destination contact's column back from its before-image.
macro_rules! before_image {
    ($column:literal) => {
        concat!(
            $column,
            " = (SELECT s.",
            $column,
            " FROM inbox_migration_contacts s WHERE s.migration_id = $1 \
             AND s.role = 'destination' AND s.contact_id = contacts.id)"
        )
    };
}

/// A revert batch's statements in order, with whether they take the source inbox as `$3` (`$1` is the run,
/// `$2` its batch).
const REVERT_STEPS: [(&str, bool); 10] = [
    // a. destination contacts back to their before-image (frees emails taken from the source)
    (
        concat!(
            "UPDATE contacts SET ",
            before_image!("name"),
            ", ",
            before_image!("phone_number"),
            ", ",
            before_image!("email"),
            ", ",
            before_image!("identifier"),
            ", ",
            before_image!("custom_attributes"),
            ", ",
            before_image!("updated_at"),
            " WHERE id IN (SELECT p.destination_contact_id ",
            batch_merges!(),
            ") AND EXISTS (SELECT 1 FROM inbox_migration_contacts s WHERE s.migration_id = $1 \
             AND s.role = 'destination' AND s.contact_id = contacts.id)"
        ),
        false,
    ),
    // b. deleted source contacts come back with their ids
    (
        "INSERT INTO contacts (id, account_id, name, phone_number, email, identifier, custom_attributes, import_id, \
         created_at, updated_at) \
         SELECT s.contact_id, s.account_id, s.name, s.phone_number, s.email, s.identifier, s.custom_attributes, \
         s.import_id, s.created_at, s.updated_at FROM inbox_migration_contacts s \
         WHERE s.migration_id = $1 AND s.role = 'source' AND s.deleted \
         AND s.contact_id IN (SELECT p.contact_id FROM inbox_migration_contact_inboxes p \
         WHERE p.migration_id = $1 AND p.batch = $2 AND p.action = 'merge') \
         AND NOT EXISTS (SELECT 1 FROM contacts c WHERE c.id = s.contact_id)",
        false,
    ),
    // c. labels: the union undone, the deleted contacts' labels back with their ids
    (
        concat!(
            "DELETE FROM contact_labels WHERE contact_id IN (SELECT p.destination_contact_id ",
            batch_merges!(),
            ") AND EXISTS (SELECT 1 FROM inbox_migration_labels j WHERE j.migration_id = $1 \
             AND j.change = 'added' AND j.contact_id = contact_labels.contact_id \
             AND j.label = contact_labels.label)"
        ),
        false,
    ),
    (
        concat!(
            "INSERT INTO contact_labels (id, contact_id, label) SELECT j.label_id, j.contact_id, j.label \
             FROM inbox_migration_labels j WHERE j.migration_id = $1 AND j.change = 'deleted' \
             AND j.contact_id IN (SELECT p.contact_id ",
            batch_merges!(),
            ") AND NOT EXISTS (SELECT 1 FROM contact_labels x WHERE x.contact_id = j.contact_id \
             AND x.label = j.label)"
        ),
        false,
    ),
    // d. notes back to their contact
    (
        concat!(
            "UPDATE contact_notes SET contact_id = (SELECT j.contact_id FROM inbox_migration_notes j \
             WHERE j.migration_id = $1 AND j.note_id = contact_notes.id) \
             WHERE id IN (SELECT j.note_id FROM inbox_migration_notes j WHERE j.migration_id = $1 \
             AND j.contact_id IN (SELECT p.contact_id ",
            batch_merges!(),
            "))"
        ),
        false,
    ),
    // e. merged contact_inboxes re-created
    (
        "INSERT INTO contact_inboxes (id, contact_id, inbox_id, source_id, wa_identity, wa_key, wa_alias, import_id, \
         created_at) \
         SELECT p.contact_inbox_id, p.contact_id, $3, p.source_id, p.wa_identity, p.wa_key, p.wa_alias, \
         p.import_id, p.created_at FROM inbox_migration_contact_inboxes p \
         WHERE p.migration_id = $1 AND p.batch = $2 AND p.action = 'merge'",
        true,
    ),
    // f. moved ones back with their old source_id
    (
        "UPDATE contact_inboxes SET inbox_id = $3, source_id = (SELECT p.source_id \
         FROM inbox_migration_contact_inboxes p WHERE p.migration_id = $1 AND p.contact_inbox_id = contact_inboxes.id), \
         wa_alias = (SELECT p.wa_alias FROM inbox_migration_contact_inboxes p \
         WHERE p.migration_id = $1 AND p.contact_inbox_id = contact_inboxes.id) \
         WHERE id IN (SELECT contact_inbox_id FROM inbox_migration_contact_inboxes \
         WHERE migration_id = $1 AND batch = $2 AND action = 'move')",
        true,
    ),
    // g. conversations back to their inbox, contact and contact_inbox
    (
        "UPDATE conversations SET \
         inbox_id = (SELECT j.inbox_id FROM inbox_migration_conversations j \
         WHERE j.migration_id = $1 AND j.conversation_id = conversations.id), \
         contact_id = (SELECT j.contact_id FROM inbox_migration_conversations j \
         WHERE j.migration_id = $1 AND j.conversation_id = conversations.id), \
         contact_inbox_id = (SELECT j.contact_inbox_id FROM inbox_migration_conversations j \
         WHERE j.migration_id = $1 AND j.conversation_id = conversations.id) \
         WHERE id IN (SELECT conversation_id FROM inbox_migration_conversations WHERE migration_id = $1 AND batch = $2)",
        false,
    ),
    // h. dropped duplicates back with their ids, then their attachments
    (
        concat!(
            "INSERT INTO messages (",
            message_columns!(),
            ") SELECT ",
            message_columns!(),
            " FROM inbox_migration_messages WHERE migration_id = $1 AND batch = $2 \
             AND NOT EXISTS (SELECT 1 FROM messages x WHERE x.id = inbox_migration_messages.id)"
        ),
        false,
    ),
    (
        concat!(
            "INSERT INTO attachments (",
            attachment_columns!(),
            ") SELECT ",
            attachment_columns!(),
            " FROM inbox_migration_attachments WHERE migration_id = $1 AND batch = $2 \
             AND NOT EXISTS (SELECT 1 FROM attachments x WHERE x.id = inbox_migration_attachments.id)"
        ),
        false,
    ),
];
