//! One batch of a move on Chatwoot's tables, in one transaction: the next contact_inboxes of the source (bounded
//! by the message rows their conversations hold), decided, moved or merged, with their conversations, messages,
//! reporting and SLA events, CSAT responses and, on a contact merge, the contact's notes and labels; the journal
//! and the migration's progress in the same transaction.

use std::collections::BTreeMap;

use sqlx::PgConnection;

use super::journal::{self, Update};
use super::matching::{self, ContactInbox, Fate};
use super::{ChatwootError, InboxKind};

/// What a batch works on and with.
#[derive(Debug, Clone)]
pub struct Move {
    pub migration: i64,
    pub account: i64,
    pub from: (i64, InboxKind),
    pub to: (i64, InboxKind),
    pub batch_rows: i64,
    pub has_sla_events: bool,
    pub has_companies: bool,
}

impl Move {
    /// The tables of events that name a conversation's inbox: `sla_events` only where the version has it.
    fn event_tables(&self) -> &'static [&'static str] {
        if self.has_sla_events {
            &["reporting_events", "sla_events"]
        } else {
            &["reporting_events"]
        }
    }
}

/// What one batch did.
#[derive(Debug, Default, Clone)]
pub struct Done {
    pub cursor: i64,
    pub contact_inboxes_moved: i64,
    pub contact_inboxes_merged: i64,
    pub contacts_merged: i64,
    pub left_behind: i64,
    pub conversations: i64,
    pub messages: i64,
}

/// A source contact_inbox of the next batch, with the rows its move costs.
#[derive(sqlx::FromRow)]
struct Next {
    #[sqlx(flatten)]
    ci: ContactInbox,
    messages: i64,
}

/// Runs the next batch after `cursor` in `tx`; `None` when no source contact_inbox is left after it.
pub async fn batch(
    tx: &mut PgConnection,
    m: &Move,
    cursor: i64,
) -> Result<Option<Done>, ChatwootError> {
    let next = next_contact_inboxes(tx, m, cursor).await?;
    let Some(last) = next.last().map(|n| n.ci.id) else {
        return Ok(None);
    };
    let sources: Vec<ContactInbox> = next.iter().map(|n| n.ci.clone()).collect();
    let candidates = matching::candidates(tx, m.account, m.from.1, m.to, &sources).await?;
    let fates = matching::decide(m.from.1, m.to.1, &sources, &candidates);
    if let [only] = next.as_slice()
        && only.messages > m.batch_rows
        && !matches!(fates[0], Fate::Stays { .. })
    {
        // One person's history larger than a batch: its messages go ahead in bounded steps, then the rest.
        let messages = messages_ahead(tx, m, only.ci.id).await?;
        if messages > 0 {
            return Ok(Some(Done {
                cursor,
                messages,
                ..Done::default()
            }));
        }
    }
    let mut done = apply(tx, m, &sources, &fates).await?;
    done.cursor = last;
    Ok(Some(done))
}

/// The next source contact_inboxes after `cursor` (not already left behind), as many as fit `batch_rows`
/// message rows, at least one. Read in chunks of about what a batch takes, so that rows are not counted for
/// contact_inboxes the batch will not reach.
async fn next_contact_inboxes(
    tx: &mut PgConnection,
    m: &Move,
    cursor: i64,
) -> Result<Vec<Next>, ChatwootError> {
    let chunk = (m.batch_rows / 8).clamp(16, 1000);
    let (mut next, mut rows_so_far, mut after) = (Vec::new(), 0, cursor);
    loop {
        let rows = count_next(tx, m, after, chunk).await?;
        let exhausted = (rows.len() as i64) < chunk;
        for row in rows {
            if !next.is_empty() && rows_so_far + row.messages + 1 > m.batch_rows {
                return Ok(next);
            }
            rows_so_far += row.messages + 1;
            after = row.ci.id;
            next.push(row);
        }
        if exhausted {
            return Ok(next);
        }
    }
}

/// Up to `limit` source contact_inboxes after `after`, each with the rows its conversations hold.
async fn count_next(
    tx: &mut PgConnection,
    m: &Move,
    after: i64,
    limit: i64,
) -> Result<Vec<Next>, ChatwootError> {
    Ok(sqlx::query_as(
        "SELECT ci.id::bigint, ci.contact_id::bigint, ci.source_id, ct.identifier, ct.phone_number, ct.name, \
             COALESCE((SELECT count(*) FROM conversations c JOIN messages mm ON mm.conversation_id = c.id \
                       WHERE c.contact_inbox_id = ci.id AND c.inbox_id = $1), 0) \
               + (SELECT count(*) FROM conversations c WHERE c.contact_inbox_id = ci.id AND c.inbox_id = $1) \
             AS messages \
         FROM contact_inboxes ci LEFT JOIN contacts ct ON ct.id = ci.contact_id \
         WHERE ci.inbox_id = $1 AND ci.id > $2 \
           AND NOT EXISTS (SELECT 1 FROM ferry.left_behind l WHERE l.migration_id = $3 AND l.contact_inbox_id = ci.id) \
         ORDER BY ci.id LIMIT $4",
    )
    .bind(m.from.0)
    .bind(after)
    .bind(m.migration)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?)
}

/// Moves up to `batch_rows` messages of one contact_inbox's conversations ahead of them.
async fn messages_ahead(tx: &mut PgConnection, m: &Move, ci: i64) -> Result<i64, ChatwootError> {
    let (from, to, limit) = (m.from.0, m.to.0, m.batch_rows);
    let moved = Update::new("messages", &["inbox_id"])
        .rows(
            "t.id IN (SELECT mm.id FROM messages mm JOIN conversations c ON c.id = mm.conversation_id \
             WHERE c.contact_inbox_id = $2 AND c.inbox_id = $3 AND mm.inbox_id <> $4 ORDER BY mm.id LIMIT $5)",
        )
        .set("inbox_id = $4")
        .binds(move |q| q.bind(ci).bind(from).bind(to).bind(limit))
        .run(tx, m.migration)
        .await?;
    Ok(moved.len() as i64)
}

/// The decided batch, applied.
async fn apply(
    tx: &mut PgConnection,
    m: &Move,
    sources: &[ContactInbox],
    fates: &[Fate],
) -> Result<Done, ChatwootError> {
    let mut done = Done::default();
    let mut moving = (Vec::new(), Vec::new(), Vec::new());
    let mut targets = Targets::default();
    let mut merged = Vec::new();
    let mut contact_merges: BTreeMap<i64, i64> = BTreeMap::new();
    let mut staying = Vec::new();
    for (source, fate) in sources.iter().zip(fates) {
        match fate {
            Fate::Move { source_id } => {
                moving.0.push(source.id);
                moving.1.push(source_id.clone());
                moving.2.push(source.source_id.clone());
                targets.push(source, source.id, source.contact_id);
            }
            Fate::Merge {
                into, contact_id, ..
            } => {
                targets.push(source, *into, *contact_id);
                merged.push((source, fate));
                if let (Some(from), Some(to)) = (source.contact_id, *contact_id)
                    && from != to
                {
                    contact_merges.entry(from).or_insert(to);
                }
            }
            Fate::Stays { reason } => staying.push((source, reason.as_str())),
        }
    }
    done.left_behind = record_left_behind(tx, m.migration, &staying).await?;
    done.contact_inboxes_moved = move_contact_inboxes(tx, m, &moving).await?;
    let conversations = move_conversations(tx, m, &targets).await?;
    done.conversations = conversations.len() as i64;
    done.messages = move_messages(tx, m, &conversations).await?;
    move_events(tx, m, &conversations).await?;
    let (old, new): (Vec<i64>, Vec<i64>) = contact_merges.iter().map(|(a, b)| (*a, *b)).unzip();
    repoint_contacts(tx, m, &conversations, &old, &new).await?;
    done.contact_inboxes_merged = drop_merged_contact_inboxes(tx, m, &merged).await?;
    let pairs: Vec<(i64, i64)> = contact_merges.into_iter().collect();
    done.contacts_merged = super::merge::contacts(tx, m, &pairs).await?;
    Ok(done)
}

/// The batch's contact_inboxes that stay, with why: one statement.
async fn record_left_behind(
    tx: &mut PgConnection,
    migration: i64,
    staying: &[(&ContactInbox, &str)],
) -> Result<i64, ChatwootError> {
    if staying.is_empty() {
        return Ok(0);
    }
    let ids: Vec<i64> = staying.iter().map(|(s, _)| s.id).collect();
    let contacts: Vec<Option<i64>> = staying.iter().map(|(s, _)| s.contact_id).collect();
    let names: Vec<Option<String>> = staying.iter().map(|(s, _)| s.name.clone()).collect();
    let identities: Vec<String> = staying
        .iter()
        .map(|(s, _)| s.identifier.clone().unwrap_or_else(|| s.source_id.clone()))
        .collect();
    let reasons: Vec<&str> = staying.iter().map(|(_, reason)| *reason).collect();
    sqlx::query(
        "INSERT INTO ferry.left_behind (migration_id, contact_inbox_id, contact_id, name, source_id, reason) \
         SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[]) \
         ON CONFLICT DO NOTHING",
    )
    .bind(migration)
    .bind(ids)
    .bind(contacts)
    .bind(names)
    .bind(identities)
    .bind(reasons)
    .execute(tx)
    .await?;
    Ok(staying.len() as i64)
}

/// Contact_inboxes that move, with their `source_id` in the destination's format: in one pass where the
/// `source_id` is still the one the batch read (journaled with it), any other the general way. How many moved.
async fn move_contact_inboxes(
    tx: &mut PgConnection,
    m: &Move,
    moving: &(Vec<i64>, Vec<String>, Vec<String>),
) -> Result<i64, ChatwootError> {
    if moving.0.is_empty() {
        return Ok(0);
    }
    let (ids, source_ids, old_source_ids) = moving.clone();
    let (from, to) = (m.from.0, m.to.0);
    let rows = sqlx::query(
        "WITH changed AS ( \
             UPDATE contact_inboxes t SET inbox_id = $4, source_id = map.source_id \
             FROM unnest($2::bigint[], $5::text[], $6::text[]) AS map(id, source_id, old_source_id) \
             WHERE t.id = map.id AND t.inbox_id = $3 AND t.source_id = map.old_source_id \
             RETURNING t.id, map.old_source_id) \
         INSERT INTO ferry.journal (migration_id, table_name, op, ids, before) \
         SELECT $1, 'contact_inboxes', 'update', array_agg(id::bigint ORDER BY id), \
             jsonb_build_object('inbox_id', $3::bigint, 'source_id', old_source_id) \
         FROM changed GROUP BY old_source_id RETURNING cardinality(ids)::bigint",
    )
    .bind(m.migration)
    .bind(&ids)
    .bind(from)
    .bind(to)
    .bind(&source_ids)
    .bind(&old_source_ids)
    .fetch_all(&mut *tx)
    .await?;
    let fast: i64 = rows.iter().map(|r| sqlx::Row::get::<i64, _>(r, 0)).sum();
    let rest = Update::new("contact_inboxes", &["inbox_id", "source_id"])
        .rows("t.id = ANY($2) AND t.inbox_id = $3")
        .map(
            "unnest($2::bigint[], $4::text[]) AS map(id, source_id)",
            "map.id = t.id",
        )
        .set("inbox_id = $5, source_id = map.source_id")
        .binds(move |q| q.bind(ids).bind(from).bind(source_ids).bind(to))
        .run(tx, m.migration)
        .await?;
    Ok(fast + rest.len() as i64)
}

/// Where the conversations of each source contact_inbox of a batch go.
#[derive(Debug, Default)]
struct Targets {
    old_ci: Vec<i64>,
    new_ci: Vec<i64>,
    new_contact: Vec<Option<i64>>,
    old_contact: Vec<Option<i64>>,
}

impl Targets {
    fn push(&mut self, source: &ContactInbox, new_ci: i64, new_contact: Option<i64>) {
        self.old_ci.push(source.id);
        self.new_ci.push(new_ci);
        self.new_contact.push(new_contact);
        self.old_contact.push(source.contact_id);
    }
}

/// Conversations of the batch's contact_inboxes to the destination, each on its contact_inbox there; their ids.
/// Those whose contact is their contact_inbox's (all, in consistent data) in one pass, journaled with the
/// values the map already knows; any other the general way.
async fn move_conversations(
    tx: &mut PgConnection,
    m: &Move,
    targets: &Targets,
) -> Result<Vec<i64>, ChatwootError> {
    if targets.old_ci.is_empty() {
        return Ok(Vec::new());
    }
    let (from, to) = (m.from.0, m.to.0);
    let query = sqlx::query(
        "WITH changed AS ( \
             UPDATE conversations t SET inbox_id = $6, contact_inbox_id = map.new_ci, \
                 contact_id = COALESCE(map.new_contact, t.contact_id) \
             FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $7::bigint[]) \
                 AS map(old_ci, new_ci, new_contact, old_contact) \
             WHERE t.contact_inbox_id = map.old_ci AND t.inbox_id = $5 AND t.contact_id = map.old_contact \
             RETURNING t.id, map.old_ci, map.old_contact) \
         INSERT INTO ferry.journal (migration_id, table_name, op, ids, before) \
         SELECT $1, 'conversations', 'update', array_agg(id::bigint ORDER BY id), \
             jsonb_build_object('inbox_id', $5::bigint, 'contact_inbox_id', old_ci, 'contact_id', old_contact) \
         FROM changed GROUP BY old_ci, old_contact RETURNING ids",
    )
    .bind(m.migration)
    .bind(&targets.old_ci)
    .bind(&targets.new_ci)
    .bind(&targets.new_contact)
    .bind(from)
    .bind(to)
    .bind(&targets.old_contact);
    let mut moved = journal::journaled_ids(query, tx).await?;
    let (old, new, contacts) = (
        targets.old_ci.clone(),
        targets.new_ci.clone(),
        targets.new_contact.clone(),
    );
    let rest = Update::new("conversations", &["inbox_id", "contact_inbox_id", "contact_id"])
        .rows("t.contact_inbox_id = ANY($2) AND t.inbox_id = $5")
        .map(
            "unnest($2::bigint[], $3::bigint[], $4::bigint[]) AS map(old_ci, new_ci, new_contact)",
            "map.old_ci = t.contact_inbox_id",
        )
        .set("inbox_id = $6, contact_inbox_id = map.new_ci, contact_id = COALESCE(map.new_contact, t.contact_id)")
        .binds(move |q| q.bind(old).bind(new).bind(contacts).bind(from).bind(to))
        .run(tx, m.migration)
        .await?;
    moved.extend(rest);
    Ok(moved)
}

/// Every message of the moved conversations names the destination inbox: in one pass for those that named the
/// source (nearly all), then any that named a third inbox (Chatwoot's data is not always consistent).
async fn move_messages(
    tx: &mut PgConnection,
    m: &Move,
    conversations: &[i64],
) -> Result<i64, ChatwootError> {
    if conversations.is_empty() {
        return Ok(0);
    }
    let (c, from, to) = (conversations.to_vec(), m.from.0, m.to.0);
    let mut moved = Update::new("messages", &["inbox_id"])
        .rows("t.conversation_id = ANY($2) AND t.inbox_id = $3")
        .set("inbox_id = $4")
        .binds(move |q| q.bind(c).bind(from).bind(to))
        .run_known(tx, m.migration, &["$3::bigint"])
        .await?
        .len();
    let c = conversations.to_vec();
    moved += Update::new("messages", &["inbox_id"])
        .rows("t.conversation_id = ANY($2) AND t.inbox_id NOT IN ($3, $4)")
        .set("inbox_id = $4")
        .binds(move |q| q.bind(c).bind(from).bind(to))
        .run(tx, m.migration)
        .await?
        .len();
    Ok(moved as i64)
}

/// Reporting (and SLA) events of the moved conversations follow them.
async fn move_events(
    tx: &mut PgConnection,
    m: &Move,
    conversations: &[i64],
) -> Result<(), ChatwootError> {
    if conversations.is_empty() {
        return Ok(());
    }
    for table in m.event_tables() {
        let (conversations, from, to) = (conversations.to_vec(), m.from.0, m.to.0);
        Update::new(table, &["inbox_id"])
            .rows("t.conversation_id = ANY($2) AND t.inbox_id = $3")
            .set("inbox_id = $4")
            .binds(move |q| q.bind(conversations).bind(from).bind(to))
            .run_known(tx, m.migration, &["$3::bigint"])
            .await?;
    }
    Ok(())
}

/// On a contact merge, what the moved conversations say about their contact: the sender of the messages the
/// contact sent, and their CSAT responses.
async fn repoint_contacts(
    tx: &mut PgConnection,
    m: &Move,
    conversations: &[i64],
    old: &[i64],
    new: &[i64],
) -> Result<(), ChatwootError> {
    if old.is_empty() || conversations.is_empty() {
        return Ok(());
    }
    let binds = (conversations.to_vec(), old.to_vec(), new.to_vec());
    let (c, o, n) = binds.clone();
    Update::new("messages", &["sender_id"])
        .rows("t.conversation_id = ANY($2) AND t.sender_type = 'Contact' AND t.sender_id = ANY($3)")
        .map(
            "unnest($3::bigint[], $4::bigint[]) AS map(old, new)",
            "map.old = t.sender_id",
        )
        .set("sender_id = map.new")
        .binds(move |q| q.bind(c).bind(o).bind(n))
        .run(tx, m.migration)
        .await?;
    let (c, o, n) = binds;
    Update::new("csat_survey_responses", &["contact_id"])
        .rows("t.conversation_id = ANY($2) AND t.contact_id = ANY($3)")
        .map(
            "unnest($3::bigint[], $4::bigint[]) AS map(old, new)",
            "map.old = t.contact_id",
        )
        .set("contact_id = map.new")
        .binds(move |q| q.bind(c).bind(o).bind(n))
        .run(tx, m.migration)
        .await?;
    Ok(())
}

/// Source contact_inboxes whose conversations all went to another one are deleted (kept whole in the
/// journal), and the merge recorded.
async fn drop_merged_contact_inboxes(
    tx: &mut PgConnection,
    m: &Move,
    merged: &[(&ContactInbox, &Fate)],
) -> Result<i64, ChatwootError> {
    if merged.is_empty() {
        return Ok(0);
    }
    let ids: Vec<i64> = merged.iter().map(|(s, _)| s.id).collect();
    let from = m.from.0;
    let dropped = journal::delete(
        tx,
        m.migration,
        "contact_inboxes",
        "t.id = ANY($2) AND t.inbox_id = $3 \
         AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.contact_inbox_id = t.id)",
        |q| q.bind(ids).bind(from),
    )
    .await?;
    record_merges(tx, m.migration, merged).await?;
    Ok(dropped.len() as i64)
}

/// What merged into what, for the result: one statement.
async fn record_merges(
    tx: &mut PgConnection,
    migration: i64,
    merged: &[(&ContactInbox, &Fate)],
) -> Result<(), ChatwootError> {
    let mut rows = MergeRows::default();
    for (source, fate) in merged {
        if let Fate::Merge {
            into,
            contact_id,
            identity,
            destination_identity,
        } = fate
        {
            rows.source.push(source.id);
            rows.destination.push(*into);
            rows.source_contact.push(source.contact_id);
            rows.destination_contact.push(*contact_id);
            rows.contact_merged.push(source.contact_id != *contact_id);
            rows.name.push(source.name.clone());
            rows.identity.push(identity.clone());
            rows.destination_identity.push(destination_identity.clone());
        }
    }
    sqlx::query(
        "INSERT INTO ferry.merges (migration_id, source_contact_inbox_id, destination_contact_inbox_id, \
             source_contact_id, destination_contact_id, contact_merged, name, source_identity, \
             destination_identity) \
         SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bool[], \
             $7::text[], $8::text[], $9::text[]) \
         ON CONFLICT DO NOTHING",
    )
    .bind(migration)
    .bind(rows.source)
    .bind(rows.destination)
    .bind(rows.source_contact)
    .bind(rows.destination_contact)
    .bind(rows.contact_merged)
    .bind(rows.name)
    .bind(rows.identity)
    .bind(rows.destination_identity)
    .execute(tx)
    .await?;
    Ok(())
}

/// `ferry.merges` rows as columns.
#[derive(Default)]
struct MergeRows {
    source: Vec<i64>,
    destination: Vec<i64>,
    source_contact: Vec<Option<i64>>,
    destination_contact: Vec<Option<i64>>,
    contact_merged: Vec<bool>,
    name: Vec<Option<String>>,
    identity: Vec<String>,
    destination_identity: Vec<String>,
}

/// After the last batch: what Chatwoot wrote to the source meanwhile for what already moved (a message created
/// from a conversation loaded before its move, a conversation opened on a moved contact_inbox) follows it, and
/// the source's agents become members of the destination.
pub async fn sweep(tx: &mut PgConnection, m: &Move) -> Result<Done, ChatwootError> {
    let (from, to) = (m.from.0, m.to.0);
    let conversations = Update::new("conversations", &["inbox_id"])
        .rows("t.inbox_id = $2 AND t.contact_inbox_id IN (SELECT id FROM contact_inboxes WHERE inbox_id = $3)")
        .set("inbox_id = $3")
        .binds(move |q| q.bind(from).bind(to))
        .run(tx, m.migration)
        .await?;
    let messages = Update::new("messages", &["inbox_id"])
        .rows("t.inbox_id = $2 AND t.conversation_id IN (SELECT id FROM conversations WHERE inbox_id = $3)")
        .set("inbox_id = $3")
        .binds(move |q| q.bind(from).bind(to))
        .run(tx, m.migration)
        .await?;
    for table in m.event_tables() {
        Update::new(table, &["inbox_id"])
            .rows("t.inbox_id = $2 AND t.conversation_id IN (SELECT id FROM conversations WHERE inbox_id = $3)")
            .set("inbox_id = $3")
            .binds(move |q| q.bind(from).bind(to))
            .run(tx, m.migration)
            .await?;
    }
    journal::insert(
        tx,
        m.migration,
        "inbox_members",
        "INSERT INTO inbox_members (user_id, inbox_id, created_at, updated_at) \
         SELECT s.user_id, $3, now(), now() FROM inbox_members s WHERE s.inbox_id = $2 \
         ON CONFLICT (inbox_id, user_id) DO NOTHING",
        |q| q.bind(from).bind(to),
    )
    .await?;
    Ok(Done {
        conversations: conversations.len() as i64,
        messages: messages.len() as i64,
        ..Done::default()
    })
}
