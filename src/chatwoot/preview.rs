//! `ferry chatwoot preview`: what a move would do, decided by the same function the batches use, and changing
//! nothing.

use serde::Serialize;

use super::matching::{self, Fate};
use super::{Chatwoot, ChatwootError, InboxKind, InboxRow};

/// How many merges and left-behind contacts are listed (the totals count them all).
const LISTED: usize = 100;

#[derive(Debug, Serialize)]
pub struct Preview {
    pub account_id: i64,
    pub from: InboxRow,
    pub to: InboxRow,
    pub conversations: i64,
    pub messages: i64,
    pub attachments: i64,
    pub contacts: i64,
    pub contact_inboxes: i64,
    /// Conversations and messages that will move (those of left-behind identities stay).
    pub conversations_moving: i64,
    pub messages_moving: i64,
    pub contact_inboxes_moving: i64,
    pub merges_total: usize,
    pub merges: Vec<MergeRow>,
    pub left_behind_total: usize,
    pub left_behind: Vec<LeftRow>,
    pub warnings: Vec<Warning>,
}

/// A source contact_inbox that merges into the destination's contact_inbox of the same person.
#[derive(Debug, Serialize)]
pub struct MergeRow {
    pub source_contact_inbox_id: i64,
    pub destination_contact_inbox_id: i64,
    pub name: Option<String>,
    pub identity: String,
    pub destination_identity: String,
    /// Two contacts become one (not only two contact_inboxes).
    pub contact_merge: bool,
}

/// A source contact_inbox whose identity cannot move to the destination's provider.
#[derive(Debug, Serialize)]
pub struct LeftRow {
    pub contact_inbox_id: i64,
    pub name: Option<String>,
    pub identity: String,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct Warning {
    pub code: &'static str,
    pub message: String,
}

impl Chatwoot {
    /// Checks the pair of inboxes and decides every source contact_inbox; writes nothing.
    pub async fn preview(
        &self,
        account: i64,
        from: i64,
        to: i64,
    ) -> Result<Preview, ChatwootError> {
        if from == to {
            return Err(ChatwootError::Refused(format!(
                "--from and --to are both inbox {from}: choose two inboxes"
            )));
        }
        let (from, to) = (
            self.inbox(account, from).await?,
            self.inbox(account, to).await?,
        );
        let mut conn = self.pool.acquire().await?;
        let sources = matching::all_of(&mut conn, from.id).await?;
        let candidates = matching::all_of(&mut conn, to.id).await?;
        let fates = matching::decide(from.kind, to.kind, &sources, &candidates);
        let (merges, left) = listed(&sources, &fates);
        let staying: Vec<i64> = left.iter().map(|l| l.contact_inbox_id).collect();
        let counts = counts(&self.pool, from.id, &staying).await?;
        let warnings = warnings(&from, left.len());
        Ok(Preview {
            account_id: account,
            conversations: counts.0,
            messages: counts.1,
            attachments: counts.2,
            contacts: counts.3,
            contact_inboxes: sources.len() as i64,
            conversations_moving: counts.0 - counts.4,
            messages_moving: counts.1 - counts.5,
            contact_inboxes_moving: (sources.len() - left.len()) as i64,
            merges_total: merges.len(),
            merges: merges.into_iter().take(LISTED).collect(),
            left_behind_total: left.len(),
            left_behind: left.into_iter().take(LISTED).collect(),
            warnings,
            from,
            to,
        })
    }
}

fn listed(sources: &[matching::ContactInbox], fates: &[Fate]) -> (Vec<MergeRow>, Vec<LeftRow>) {
    let mut merges = Vec::new();
    let mut left = Vec::new();
    for (source, fate) in sources.iter().zip(fates) {
        match fate {
            Fate::Merge {
                into,
                contact_id,
                identity,
                destination_identity,
            } => merges.push(MergeRow {
                source_contact_inbox_id: source.id,
                destination_contact_inbox_id: *into,
                name: source.name.clone(),
                identity: identity.clone(),
                destination_identity: destination_identity.clone(),
                contact_merge: source.contact_id != *contact_id,
            }),
            Fate::Stays { reason } => left.push(LeftRow {
                contact_inbox_id: source.id,
                name: source.name.clone(),
                identity: source
                    .identifier
                    .clone()
                    .unwrap_or_else(|| source.source_id.clone()),
                reason: reason.clone(),
            }),
            Fate::Move { .. } => {}
        }
    }
    (merges, left)
}

/// Conversations, messages, attachments and contacts of the source; then conversations and messages of the
/// contact_inboxes that stay.
async fn counts(
    pool: &sqlx::PgPool,
    inbox: i64,
    staying: &[i64],
) -> Result<(i64, i64, i64, i64, i64, i64), ChatwootError> {
    Ok(sqlx::query_as(
        "SELECT (SELECT count(*) FROM conversations WHERE inbox_id = $1), \
                (SELECT count(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id \
                  WHERE c.inbox_id = $1), \
                (SELECT count(*) FROM attachments a JOIN messages m ON m.id = a.message_id \
                  JOIN conversations c ON c.id = m.conversation_id WHERE c.inbox_id = $1), \
                (SELECT count(DISTINCT contact_id) FROM contact_inboxes WHERE inbox_id = $1), \
                (SELECT count(*) FROM conversations WHERE inbox_id = $1 AND contact_inbox_id = ANY($2)), \
                (SELECT count(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id \
                  WHERE c.inbox_id = $1 AND c.contact_inbox_id = ANY($2))",
    )
    .bind(inbox)
    .bind(staying)
    .fetch_one(pool)
    .await?)
}

fn warnings(from: &InboxRow, left_behind: usize) -> Vec<Warning> {
    let mut warnings = vec![Warning {
        code: "NO_REALTIME_EVENTS",
        message:
            "Chatwoot does not see the move happen: agents must reload the page afterwards, and \
                  conversations open in a browser show their old inbox until then"
                .into(),
    }];
    if from.kind == InboxKind::Evolution {
        warnings.push(Warning {
            code: "EVOLUTION_STILL_CONNECTED",
            message: format!(
                "inbox {} is fed by Evolution API, which keeps sending new messages into it and remembers each \
                 chat's conversation for 8 hours: disconnect the instance's Chatwoot integration (or point it \
                 at the destination) before migrating",
                from.id
            ),
        });
    }
    if left_behind > 0 {
        warnings.push(Warning {
            code: "IDENTITIES_LEFT_BEHIND",
            message: format!(
                "{left_behind} contact_inbox(es) have an identity the destination's provider cannot address \
                 (a LID without a phone number, a group, a BSUID): they and their conversations stay in the source"
            ),
        });
    }
    warnings
}
