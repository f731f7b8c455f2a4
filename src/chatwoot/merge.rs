//! Contact merges on Chatwoot's tables: when a moved person's source contact has nothing left of its own (no
//! contact_inbox, no conversation), it is folded into the destination's contact of the same person, as Chatwoot's
//! own contact merge does (the destination contact wins, blank fields are filled from the source), and more:
//! notes, CSAT responses and labels follow, `tags.taggings_count` and `companies.contacts_count` stay true.
//! A batch's merges are set-based, a handful of statements whatever their number; every change is journaled and
//! the deleted contacts come back whole on revert.

use std::collections::HashSet;

use sqlx::PgConnection;

use super::ChatwootError;
use super::journal::{self, Update};
use super::mover::Move;

/// Folds each source contact of `pairs` (source, destination) that has nothing left into its destination
/// contact; how many it folded.
pub async fn contacts(
    tx: &mut PgConnection,
    m: &Move,
    pairs: &[(i64, i64)],
) -> Result<i64, ChatwootError> {
    let mut merged = 0;
    for round in rounds(pairs) {
        let (from, to) = orphans(tx, m, &round).await?;
        if from.is_empty() {
            continue;
        }
        move_belongings(tx, m, &from, &to).await?;
        merge_labels(tx, m, &from, &to).await?;
        if m.has_companies {
            keep_company_counts(tx, m, &from, &to).await?;
        }
        let rows: Vec<(i64, serde_json::Value)> = sqlx::query_as(
            "SELECT c.id::bigint, to_jsonb(c) FROM contacts c WHERE c.id = ANY($1) FOR UPDATE",
        )
        .bind(&from)
        .fetch_all(&mut *tx)
        .await?;
        let gone = journal::delete(tx, m.migration, "contacts", "t.id = ANY($2)", |q| {
            q.bind(from.clone())
        })
        .await?;
        // Each destination with the row of the source it absorbs.
        let (to, rows): (Vec<i64>, Vec<serde_json::Value>) = from
            .iter()
            .zip(&to)
            .filter_map(|(f, t)| {
                rows.iter()
                    .find(|(id, _)| id == f)
                    .map(|(_, row)| (*t, row.clone()))
            })
            .unzip();
        fill_fields(tx, m, &to, rows).await?;
        merged += gone.len() as i64;
    }
    Ok(merged)
}

/// Pairs split so that no destination contact appears twice in one round (two contacts merging into one are
/// merged one after the other), and none that is itself merged away in the same call.
fn rounds(pairs: &[(i64, i64)]) -> Vec<Vec<(i64, i64)>> {
    let sources: HashSet<i64> = pairs.iter().map(|(from, _)| *from).collect();
    let mut rounds: Vec<Vec<(i64, i64)>> = Vec::new();
    for &(from, to) in pairs
        .iter()
        .filter(|(from, to)| from != to && !sources.contains(to))
    {
        match rounds.iter_mut().find(|r| r.iter().all(|(_, t)| *t != to)) {
            Some(round) => round.push((from, to)),
            None => rounds.push(vec![(from, to)]),
        }
    }
    rounds
}

/// The pairs whose source contact has nothing left, and whose destination is a contact of the account.
async fn orphans(
    tx: &mut PgConnection,
    m: &Move,
    pairs: &[(i64, i64)],
) -> Result<(Vec<i64>, Vec<i64>), ChatwootError> {
    let (from, to): (Vec<i64>, Vec<i64>) = pairs.iter().copied().unzip();
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT p.f, p.t FROM unnest($1::bigint[], $2::bigint[]) AS p(f, t) \
         WHERE NOT EXISTS (SELECT 1 FROM contact_inboxes WHERE contact_id = p.f) \
           AND NOT EXISTS (SELECT 1 FROM conversations WHERE contact_id = p.f) \
           AND EXISTS (SELECT 1 FROM contacts WHERE id = p.t AND account_id = $3) \
         ORDER BY p.f",
    )
    .bind(&from)
    .bind(&to)
    .bind(m.account)
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows.into_iter().unzip())
}

/// The merge map: source contact → destination contact.
const MAP: &str = "unnest($2::bigint[], $3::bigint[]) AS map(old, new)";

/// Notes and any CSAT response still naming a source contact.
async fn move_belongings(
    tx: &mut PgConnection,
    m: &Move,
    from: &[i64],
    to: &[i64],
) -> Result<(), ChatwootError> {
    for table in ["notes", "csat_survey_responses"] {
        let (f, t) = (from.to_vec(), to.to_vec());
        Update::new(table, &["contact_id"])
            .rows("t.contact_id = ANY($2)")
            .map(MAP, "map.old = t.contact_id")
            .set("contact_id = map.new")
            .binds(move |q| q.bind(f).bind(t))
            .run(tx, m.migration)
            .await?;
    }
    Ok(())
}

/// The source contacts' labels go to their destination contacts; a label both have is kept once, and its tag
/// counts one tagging less (`tags.taggings_count` is a counter cache, kept as Chatwoot keeps it).
async fn merge_labels(
    tx: &mut PgConnection,
    m: &Move,
    from: &[i64],
    to: &[i64],
) -> Result<(), ChatwootError> {
    let duplicates: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT t.id::bigint, t.tag_id::bigint FROM taggings t \
         JOIN unnest($1::bigint[], $2::bigint[]) AS p(old, new) ON p.old = t.taggable_id \
         WHERE t.taggable_type = 'Contact' AND t.tag_id IS NOT NULL AND EXISTS ( \
             SELECT 1 FROM taggings d WHERE d.taggable_type = 'Contact' AND d.taggable_id = p.new \
               AND d.tag_id = t.tag_id AND d.context IS NOT DISTINCT FROM t.context) \
         FOR UPDATE OF t",
    )
    .bind(from)
    .bind(to)
    .fetch_all(&mut *tx)
    .await?;
    if !duplicates.is_empty() {
        let (ids, tags): (Vec<i64>, Vec<i64>) = duplicates.into_iter().unzip();
        journal::delete(tx, m.migration, "taggings", "t.id = ANY($2)", |q| {
            q.bind(ids)
        })
        .await?;
        Update::new("tags", &["taggings_count"])
            .rows("t.id = ANY($2)")
            .map(
                "(SELECT tag, count(*) AS n FROM unnest($2::bigint[]) AS tag GROUP BY tag) AS map",
                "map.tag = t.id",
            )
            .set("taggings_count = GREATEST(COALESCE(t.taggings_count, 0) - map.n, 0)")
            .binds(move |q| q.bind(tags))
            .run(tx, m.migration)
            .await?;
    }
    let (f, t) = (from.to_vec(), to.to_vec());
    Update::new("taggings", &["taggable_id"])
        .rows("t.taggable_type = 'Contact' AND t.taggable_id = ANY($2)")
        .map(MAP, "map.old = t.taggable_id")
        .set("taggable_id = map.new")
        .binds(move |q| q.bind(f).bind(t))
        .run(tx, m.migration)
        .await?;
    Ok(())
}

/// Chatwoot keeps `companies.contacts_count` as a counter cache: a destination contact without a company takes
/// the source's (the count stays); otherwise the source's company loses the merged contact.
async fn keep_company_counts(
    tx: &mut PgConnection,
    m: &Move,
    from: &[i64],
    to: &[i64],
) -> Result<(), ChatwootError> {
    let (f, t) = (from.to_vec(), to.to_vec());
    Update::new("companies", &["contacts_count"])
        .rows("t.id IN (SELECT company_id FROM contacts WHERE id = ANY($2))")
        .map(
            "(SELECT s.company_id AS id, count(*) AS n FROM unnest($2::bigint[], $3::bigint[]) AS p(old, new) \
              JOIN contacts s ON s.id = p.old JOIN contacts d ON d.id = p.new \
              WHERE d.company_id IS NOT NULL GROUP BY s.company_id) AS map",
            "map.id = t.id",
        )
        .set("contacts_count = GREATEST(COALESCE(t.contacts_count, 0) - map.n, 0)")
        .binds(move |q| q.bind(f).bind(t))
        .run(tx, m.migration)
        .await?;
    Ok(())
}

/// The destination contacts win; their blank fields are filled from the (just deleted) source contacts, without
/// giving one a phone number another contact of the account already has.
async fn fill_fields(
    tx: &mut PgConnection,
    m: &Move,
    to: &[i64],
    rows: Vec<serde_json::Value>,
) -> Result<(), ChatwootError> {
    let (company, columns): (&str, &'static [&'static str]) = if m.has_companies {
        (
            ", company_id = COALESCE(t.company_id, (map.s->>'company_id')::bigint)",
            &FIELDS_WITH_COMPANY,
        )
    } else {
        ("", &FIELDS)
    };
    let to = to.to_vec();
    Update::new("contacts", columns)
        .rows("t.id = ANY($2)")
        .map("unnest($2::bigint[], $3::jsonb[]) AS map(new, s)", "map.new = t.id")
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
        .binds(move |q| q.bind(to).bind(rows))
        .run(tx, m.migration)
        .await?;
    Ok(())
}

const FIELDS: [&str; 7] = [
    "name",
    "email",
    "phone_number",
    "identifier",
    "additional_attributes",
    "custom_attributes",
    "last_activity_at",
];

const FIELDS_WITH_COMPANY: [&str; 8] = [
    "name",
    "email",
    "phone_number",
    "identifier",
    "additional_attributes",
    "custom_attributes",
    "last_activity_at",
    "company_id",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_destination_appears_once_per_round_and_chains_are_not_merged() {
        let rounds = rounds(&[(1, 10), (2, 10), (3, 11), (4, 4), (5, 1)]);
        assert_eq!(rounds, vec![vec![(1, 10), (3, 11)], vec![(2, 10)]]);
    }
}
