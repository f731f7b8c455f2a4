//! A contact merge on Chatwoot's tables: when a moved person's source contact has nothing left of its own (no
//! contact_inbox, no conversation), it is folded into the destination's contact of the same person, as Chatwoot's
//! own contact merge does (the destination contact wins, blank fields are filled from the source), and more:
//! notes, CSAT responses and labels follow, `tags.taggings_count` and `companies.contacts_count` stay true.
//! Every change is journaled; the deleted contact comes back whole on revert.

use sqlx::PgConnection;

use super::ChatwootError;
use super::journal::{self, Update};
use super::mover::Move;

/// Folds contact `from` into `to` when `from` has nothing left; whether it did.
pub async fn contact(tx: &mut PgConnection, m: &Move, from: i64, to: i64) -> Result<bool, ChatwootError> {
    let orphan: bool = sqlx::query_scalar(
        "SELECT NOT EXISTS (SELECT 1 FROM contact_inboxes WHERE contact_id = $1) \
            AND NOT EXISTS (SELECT 1 FROM conversations WHERE contact_id = $1) \
            AND EXISTS (SELECT 1 FROM contacts WHERE id = $2 AND account_id = $3)",
    )
    .bind(from)
    .bind(to)
    .bind(m.account)
    .fetch_one(&mut *tx)
    .await?;
    if !orphan {
        return Ok(false);
    }
    move_belongings(tx, m, from, to).await?;
    merge_labels(tx, m, from, to).await?;
    if m.has_companies {
        keep_company_count(tx, m, from, to).await?;
    }
    let gone = journal::delete(tx, m.migration, "contacts", "t.id = $2", |q| q.bind(from)).await?;
    if gone.is_empty() {
        return Ok(false);
    }
    fill_fields(tx, m, from, to).await?;
    Ok(true)
}

/// Notes and any CSAT response still naming the source contact.
async fn move_belongings(tx: &mut PgConnection, m: &Move, from: i64, to: i64) -> Result<(), ChatwootError> {
    for table in ["notes", "csat_survey_responses"] {
        Update::new(table, &["contact_id"])
            .rows("t.contact_id = $2")
            .set("contact_id = $3")
            .binds(move |q| q.bind(from).bind(to))
            .run(tx, m.migration)
            .await?;
    }
    Ok(())
}

/// The source contact's labels go to the destination contact; a label both have is kept once; the counts of
/// the tags involved are recounted.
async fn merge_labels(tx: &mut PgConnection, m: &Move, from: i64, to: i64) -> Result<(), ChatwootError> {
    let tags: Vec<i64> = sqlx::query_scalar(
        "SELECT DISTINCT tag_id::bigint FROM taggings WHERE taggable_type = 'Contact' AND taggable_id = $1 \
         AND tag_id IS NOT NULL",
    )
    .bind(from)
    .fetch_all(&mut *tx)
    .await?;
    if tags.is_empty() {
        return Ok(());
    }
    journal::delete(
        tx,
        m.migration,
        "taggings",
        "t.taggable_type = 'Contact' AND t.taggable_id = $2 AND EXISTS (SELECT 1 FROM taggings d \
         WHERE d.taggable_type = 'Contact' AND d.taggable_id = $3 AND d.tag_id = t.tag_id \
           AND d.context IS NOT DISTINCT FROM t.context)",
        |q| q.bind(from).bind(to),
    )
    .await?;
    Update::new("taggings", &["taggable_id"])
        .rows("t.taggable_type = 'Contact' AND t.taggable_id = $2")
        .set("taggable_id = $3")
        .binds(move |q| q.bind(from).bind(to))
        .run(tx, m.migration)
        .await?;
    Update::new("tags", &["taggings_count"])
        .rows("t.id = ANY($2)")
        .set("taggings_count = (SELECT count(*) FROM taggings g WHERE g.tag_id = t.id)")
        .binds(move |q| q.bind(tags))
        .run(tx, m.migration)
        .await?;
    Ok(())
}

/// Chatwoot keeps `companies.contacts_count` as a counter cache: the destination contact takes the source's
/// company when it has none (the count stays), otherwise the source's company loses one contact.
async fn keep_company_count(tx: &mut PgConnection, m: &Move, from: i64, to: i64) -> Result<(), ChatwootError> {
    Update::new("companies", &["contacts_count"])
        .rows(
            "t.id = (SELECT company_id FROM contacts WHERE id = $2) \
             AND (SELECT company_id FROM contacts WHERE id = $3) IS NOT NULL",
        )
        .set("contacts_count = GREATEST(COALESCE(t.contacts_count, 0) - 1, 0)")
        .binds(move |q| q.bind(from).bind(to))
        .run(tx, m.migration)
        .await?;
    Ok(())
}

/// The destination contact wins; its blank fields are filled from the source contact (just deleted, read back
/// from the journal), without giving it a phone number another contact of the account already has.
async fn fill_fields(tx: &mut PgConnection, m: &Move, from: i64, to: i64) -> Result<(), ChatwootError> {
    let company = if m.has_companies {
        ", company_id = COALESCE(t.company_id, (map.s->>'company_id')::bigint)"
    } else {
        ""
    };
    let columns: &'static [&'static str] = if m.has_companies {
        &[
            "name",
            "email",
            "phone_number",
            "identifier",
            "additional_attributes",
            "custom_attributes",
            "last_activity_at",
            "company_id",
        ]
    } else {
        &[
            "name",
            "email",
            "phone_number",
            "identifier",
            "additional_attributes",
            "custom_attributes",
            "last_activity_at",
        ]
    };
    let migration = m.migration;
    Update::new("contacts", columns)
        .rows("t.id = $2")
        .map(
            "(SELECT before AS s FROM ferry.journal WHERE migration_id = $1 AND table_name = 'contacts' \
              AND op = 'delete' AND ids = ARRAY[$3::bigint] ORDER BY seq DESC LIMIT 1) AS map",
            "true",
        )
        .set(format!(
            "name = CASE WHEN COALESCE(t.name, '') = '' THEN COALESCE(map.s->>'name', t.name) ELSE t.name END, \
             email = COALESCE(NULLIF(t.email, ''), NULLIF(map.s->>'email', '')), \
             identifier = COALESCE(NULLIF(t.identifier, ''), NULLIF(map.s->>'identifier', '')), \
             phone_number = CASE WHEN COALESCE(t.phone_number, '') = '' AND NOT EXISTS ( \
                 SELECT 1 FROM contacts o WHERE o.account_id = t.account_id \
                   AND o.phone_number = map.s->>'phone_number' AND o.id <> t.id) \
               THEN NULLIF(map.s->>'phone_number', '') ELSE t.phone_number END, \
             additional_attributes = COALESCE(map.s->'additional_attributes', '{{}}'::jsonb) \
                 || COALESCE(t.additional_attributes, '{{}}'::jsonb), \
             custom_attributes = COALESCE(map.s->'custom_attributes', '{{}}'::jsonb) \
                 || COALESCE(t.custom_attributes, '{{}}'::jsonb), \
             last_activity_at = GREATEST(t.last_activity_at, (map.s->>'last_activity_at')::timestamp){company}"
        ))
        .binds(move |q| q.bind(to).bind(from))
        .run(tx, migration)
        .await?;
    Ok(())
}
