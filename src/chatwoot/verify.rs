//! `ferry chatwoot migrations verify`: what Chatwoot's database does not enforce (it has almost no foreign keys),
//! checked as SQL on its tables for a migration's pair of inboxes.

use serde::Serialize;

use super::bookkeeping::{self, MigrationKind, Status};
use super::matching::{self, Fate};
use super::{Chatwoot, ChatwootError, InboxKind};

#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub migration_id: i64,
    pub ok: bool,
    pub checks: Vec<Check>,
}

#[derive(Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub description: &'static str,
    pub ok: bool,
    /// Rows that break it.
    pub problems: i64,
    /// Ids of the first of them.
    pub sample: Vec<i64>,
}

/// Rows of a migration's journal of one table.
const JOURNALED: &str =
    "SELECT unnest(ids) FROM ferry.journal WHERE migration_id = $3 AND table_name = '{table}'";

impl Chatwoot {
    pub async fn verify(&self, id: i64) -> Result<VerifyReport, ChatwootError> {
        let m = bookkeeping::get(&self.pool, id).await?;
        let (from, to) = (
            m.source_inbox_id,
            m.destination_inbox_id.unwrap_or(m.source_inbox_id),
        );
        let mut checks = vec![
            self.run_check(LINKS, from, to, id, None).await?,
            self.run_check(MESSAGE_INBOX, from, to, id, None).await?,
        ];
        if m.kind == MigrationKind::Move && m.status != Status::Reverted {
            let to_kind = self.inbox(m.account_id, to).await?.kind;
            checks.push(
                self.run_check(FORMAT, from, to, id, source_id_pattern(to_kind))
                    .await?,
            );
            checks.push(self.nothing_portable_left(m.account_id, from, to).await?);
            checks.push(self.run_check(DUPLICATES, from, to, id, None).await?);
            checks.push(self.run_check(DELETABLE, from, to, id, None).await?);
        }
        Ok(VerifyReport {
            migration_id: id,
            ok: checks.iter().all(|c| c.ok),
            checks,
        })
    }

    async fn run_check(
        &self,
        spec: Spec,
        from: i64,
        to: i64,
        migration: i64,
        pattern: Option<&str>,
    ) -> Result<Check, ChatwootError> {
        let sql = spec.sql.replace(
            "{journaled_messages}",
            &JOURNALED.replace("{table}", "messages"),
        );
        let sql = sql
            .replace(
                "{journaled_conversations}",
                &JOURNALED.replace("{table}", "conversations"),
            )
            .replace(
                "{journaled_contact_inboxes}",
                &JOURNALED.replace("{table}", "contact_inboxes"),
            )
            .replace(
                "{journaled_contacts}",
                &JOURNALED.replace("{table}", "contacts"),
            )
            .replace(
                "{journaled_reporting_events}",
                &JOURNALED.replace("{table}", "reporting_events"),
            );
        let ids: Vec<i64> = match (spec.name, pattern) {
            ("destination_source_id_format", None) => Vec::new(),
            _ => {
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(from)
                    .bind(to)
                    .bind(migration)
                    .bind(pattern.unwrap_or(""))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        Ok(Check {
            name: spec.name,
            description: spec.description,
            ok: ids.is_empty(),
            problems: ids.len() as i64,
            sample: ids.into_iter().take(10).collect(),
        })
    }

    /// Decides the source's contact_inboxes again: anything that could still move is a problem.
    async fn nothing_portable_left(
        &self,
        account: i64,
        from: i64,
        to: i64,
    ) -> Result<Check, ChatwootError> {
        let (from, to) = (
            self.inbox(account, from).await?,
            self.inbox(account, to).await?,
        );
        let mut conn = self.pool.acquire().await?;
        let sources = matching::all_of(&mut conn, from.id).await?;
        let fates = matching::decide(from.kind, to.kind, &sources, &[]);
        let ids: Vec<i64> = sources
            .iter()
            .zip(&fates)
            .filter(|(_, fate)| !matches!(fate, Fate::Stays { .. }))
            .map(|(s, _)| s.id)
            .collect();
        Ok(Check {
            name: "nothing_portable_left",
            description: "every contact_inbox still in the source has an identity the destination cannot address",
            ok: ids.is_empty(),
            problems: ids.len() as i64,
            sample: ids.into_iter().take(10).collect(),
        })
    }
}

/// The `source_id` format of an inbox kind (an Evolution inbox's are random UUIDs: not checked).
fn source_id_pattern(kind: InboxKind) -> Option<&'static str> {
    match kind {
        InboxKind::WhatsappCloud | InboxKind::Dialog360 => Some(r"^\d{1,15}$"),
        InboxKind::TwilioWhatsapp => Some(r"^whatsapp:\+\d{1,15}$"),
        InboxKind::Evolution => None,
    }
}

#[derive(Clone, Copy)]
struct Spec {
    name: &'static str,
    description: &'static str,
    /// Ids of the rows breaking it; `$1` source inbox, `$2` destination, `$3` migration, `$4` a pattern.
    sql: &'static str,
}

const LINKS: Spec = Spec {
    name: "conversation_contact_inbox",
    description: "every conversation of both inboxes has a contact_inbox in its own inbox, of its own contact",
    sql: "SELECT c.id::bigint FROM conversations c LEFT JOIN contact_inboxes ci ON ci.id = c.contact_inbox_id \
          WHERE c.inbox_id IN ($1, $2)\
            AND (ci.id IS NULL OR ci.inbox_id <> c.inbox_id OR ci.contact_id IS DISTINCT FROM c.contact_id) \
          ORDER BY c.id",
};

const MESSAGE_INBOX: Spec = Spec {
    name: "message_inbox",
    description: "every message of both inboxes names its conversation's inbox",
    sql: "SELECT m.id::bigint FROM messages m JOIN conversations c ON c.id = m.conversation_id \
          WHERE c.inbox_id IN ($1, $2) AND m.inbox_id <> c.inbox_id \
          UNION \
          SELECT m.id::bigint FROM messages m JOIN conversations c ON c.id = m.conversation_id \
          WHERE m.inbox_id IN ($1, $2) AND m.inbox_id <> c.inbox_id \
          ORDER BY 1",
};

const FORMAT: Spec = Spec {
    name: "destination_source_id_format",
    description: "every contact_inbox moved into the destination has a source_id in the destination's format",
    sql: "SELECT ci.id::bigint FROM contact_inboxes ci WHERE ci.inbox_id = $2 \
            AND ci.id IN ({journaled_contact_inboxes}) AND ci.source_id !~ $4 \
          ORDER BY ci.id",
};

const DUPLICATES: Spec = Spec {
    name: "no_duplicate_contacts",
    description: "no contact the migration changed shares a phone number, email or identifier with another \
                  contact of the account",
    // One indexed probe per column (an OR inside one EXISTS would compare every pair of contacts).
    sql: "SELECT t.id::bigint FROM contacts t WHERE t.id IN ({journaled_contacts}) AND ( \
            (COALESCE(t.phone_number, '') <> '' AND EXISTS (SELECT 1 FROM contacts o \
                WHERE o.phone_number = t.phone_number AND o.account_id = t.account_id AND o.id <> t.id)) \
         OR (COALESCE(t.email, '') <> '' AND EXISTS (SELECT 1 FROM contacts o \
                WHERE o.email = t.email AND o.account_id = t.account_id AND o.id <> t.id)) \
         OR (COALESCE(t.identifier, '') <> '' AND EXISTS (SELECT 1 FROM contacts o \
                WHERE o.identifier = t.identifier AND o.account_id = t.account_id AND o.id <> t.id))) \
          ORDER BY t.id",
};

const DELETABLE: Spec = Spec {
    name: "source_inbox_deletable",
    description: "nothing that moved still names the source inbox (deleting it would delete none of it)",
    sql: "SELECT id::bigint FROM messages WHERE inbox_id = $1 AND id IN ({journaled_messages}) \
          UNION ALL SELECT id::bigint FROM conversations WHERE inbox_id = $1 AND id IN ({journaled_conversations}) \
          UNION ALL SELECT id::bigint FROM contact_inboxes WHERE inbox_id = $1 \
                AND id IN ({journaled_contact_inboxes}) \
          UNION ALL SELECT id::bigint FROM reporting_events WHERE inbox_id = $1 \
                AND id IN ({journaled_reporting_events})",
};
