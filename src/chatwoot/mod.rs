//! Inbox migration on an existing Chatwoot database: ferry works directly on Chatwoot's PostgreSQL tables, with
//! its own bookkeeping (journal, leases, progress) in a schema `ferry` of that database. ferry's own store is not
//! involved.

pub mod bookkeeping;
pub mod convert;
pub mod generate;
pub mod guard;
pub mod identity;
pub mod journal;
pub mod matching;
mod merge;
pub mod mover;
pub mod preview;
pub mod run;
pub mod verify;

use std::time::Duration;

use serde::Serialize;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

#[derive(Debug, thiserror::Error)]
pub enum ChatwootError {
    #[error("cannot connect to the Chatwoot database at {url}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("this Chatwoot database (schema {version}) is not one ferry can work on: {problems}")]
    Schema { version: String, problems: String },
    /// A request that cannot be done as asked; the message says why and what to do.
    #[error("{0}")]
    Refused(String),
    #[error("migration {0} was taken over by another process (its lease expired)")]
    LeaseLost(i64),
    #[error("Chatwoot database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl ChatwootError {
    /// Whether the batch may succeed when tried again: a unique conflict with a row Chatwoot created meanwhile,
    /// a lock Chatwoot held too long, a serialization failure or deadlock, a lost connection.
    pub fn is_transient(&self) -> bool {
        match self {
            ChatwootError::Database(sqlx::Error::Database(e)) => matches!(
                e.code().as_deref(),
                Some("23505" | "40001" | "40P01" | "55P03" | "57P01" | "57P02" | "57P03")
            ),
            ChatwootError::Database(
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Protocol(_),
            ) => true,
            _ => false,
        }
    }
}

/// A connection to a Chatwoot database whose schema passed the guard.
pub struct Chatwoot {
    pool: PgPool,
    version: String,
    /// Optional tables of some versions, written to when present.
    has_sla_events: bool,
    has_companies: bool,
}

/// Where a WhatsApp-like Chatwoot inbox gets its messages from, which decides where a person's identity lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InboxKind {
    /// `Channel::Whatsapp` with provider `whatsapp_cloud`: `source_id` is the wa_id digits.
    WhatsappCloud,
    /// `Channel::Whatsapp` with provider `default`: the same digits.
    Dialog360,
    /// `Channel::TwilioSms` with `medium` 1: `source_id` is `whatsapp:+<digits>`.
    TwilioWhatsapp,
    /// `Channel::Api` fed by Evolution API (its webhook URL has `/chatwoot/webhook/`): the identity is the
    /// contact's `identifier` (a JID).
    Evolution,
}

/// An account with its WhatsApp-like inboxes.
#[derive(Debug, Serialize)]
pub struct AccountInboxes {
    pub id: i64,
    pub name: String,
    pub inboxes: Vec<InboxRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InboxRow {
    pub id: i64,
    pub name: String,
    pub kind: InboxKind,
    pub conversations: i64,
}

/// `ferry chatwoot check`: the schema version, and every account's WhatsApp-like inboxes.
#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub schema_version: String,
    /// Always `ok` in a report: a database that fails the guard is refused before.
    pub guard: &'static str,
    pub accounts: Vec<AccountInboxes>,
}

impl Chatwoot {
    /// Connects (within 5 s) and refuses a database that lacks a table or column the adapter needs.
    pub async fn connect(url: &str) -> Result<Self, ChatwootError> {
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|source| ChatwootError::Connect {
                url: crate::config::redact_url(url),
                source,
            })?;
        let version = schema_version(&pool).await;
        let problems = guard::problems(&pool).await?;
        if !problems.is_empty() {
            return Err(ChatwootError::Schema {
                version,
                problems: problems.join("; "),
            });
        }
        let optional: (bool, bool) = sqlx::query_as(
            "SELECT to_regclass('sla_events') IS NOT NULL, \
                    to_regclass('companies') IS NOT NULL AND EXISTS (SELECT 1 FROM information_schema.columns \
                        WHERE table_schema = current_schema() AND table_name = 'contacts' \
                          AND column_name = 'company_id')",
        )
        .fetch_one(&pool)
        .await?;
        Ok(Self {
            pool,
            version,
            has_sla_events: optional.0,
            has_companies: optional.1,
        })
    }

    /// Connects, and creates or updates ferry's schema `ferry` in the database (every command but `check`).
    pub async fn open(url: &str) -> Result<Self, ChatwootError> {
        let chatwoot = Self::connect(url).await?;
        bookkeeping::ensure_schema(&chatwoot.pool).await?;
        Ok(chatwoot)
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A WhatsApp-like inbox of the account, or one line saying why it is not.
    pub async fn inbox(&self, account: i64, id: i64) -> Result<InboxRow, ChatwootError> {
        let found = self
            .whatsapp_inboxes()
            .await?
            .into_iter()
            .find(|(_, row)| row.id == id);
        let channel: Option<(i64, Option<String>)> =
            sqlx::query_as("SELECT account_id::bigint, channel_type FROM inboxes WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        match (found, channel) {
            (_, None) => Err(ChatwootError::Refused(format!(
                "no inbox {id} in this Chatwoot"
            ))),
            (_, Some((owner, _))) if owner != account => Err(ChatwootError::Refused(format!(
                "inbox {id} is not an inbox of account {account}"
            ))),
            (Some((_, row)), _) => Ok(row),
            (None, Some((_, channel))) => Err(ChatwootError::Refused(format!(
                "inbox {id} is a {} inbox, not a WhatsApp one (Cloud, 360dialog, Twilio WhatsApp or Evolution API)",
                channel.unwrap_or_else(|| "channel-less".into())
            ))),
        }
    }

    /// What the batches of a move migration work on.
    pub async fn move_of(&self, m: &bookkeeping::Migration) -> Result<mover::Move, ChatwootError> {
        let to = m.destination_inbox_id.ok_or_else(|| {
            ChatwootError::Refused(format!("migration {} has no destination inbox", m.id))
        })?;
        let from = self.inbox(m.account_id, m.source_inbox_id).await?;
        let to = self.inbox(m.account_id, to).await?;
        Ok(mover::Move {
            migration: m.id,
            account: m.account_id,
            from: (from.id, from.kind),
            to: (to.id, to.kind),
            batch_rows: m.batch_rows,
            has_sla_events: self.has_sla_events,
            has_companies: self.has_companies,
        })
    }

    pub async fn check(&self) -> Result<CheckReport, ChatwootError> {
        let accounts: Vec<(i64, String)> =
            sqlx::query_as("SELECT id::bigint, name FROM accounts ORDER BY id")
                .fetch_all(&self.pool)
                .await?;
        let inboxes = self.whatsapp_inboxes().await?;
        let accounts = accounts
            .into_iter()
            .map(|(id, name)| AccountInboxes {
                inboxes: inboxes
                    .iter()
                    .filter(|(account, _)| *account == id)
                    .map(|(_, row)| row.clone())
                    .collect(),
                id,
                name,
            })
            .collect();
        Ok(CheckReport {
            schema_version: self.version.clone(),
            guard: "ok",
            accounts,
        })
    }

    /// `(account id, inbox)` of every WhatsApp-like inbox, by id.
    async fn whatsapp_inboxes(&self) -> Result<Vec<(i64, InboxRow)>, ChatwootError> {
        let rows: Vec<(i64, i64, String, String, i64)> = sqlx::query_as(WHATSAPP_INBOXES)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(account, id, name, kind, conversations)| {
                let kind = match kind.as_str() {
                    "whatsapp_cloud" => InboxKind::WhatsappCloud,
                    "dialog360" => InboxKind::Dialog360,
                    "twilio_whatsapp" => InboxKind::TwilioWhatsapp,
                    "evolution" => InboxKind::Evolution,
                    _ => return None,
                };
                let row = InboxRow {
                    id,
                    name,
                    kind,
                    conversations,
                };
                Some((account, row))
            })
            .collect())
    }
}

/// Every inbox with its kind (`other` for the ones that are not WhatsApp-like) and conversation count.
const WHATSAPP_INBOXES: &str = "SELECT i.account_id::bigint, i.id::bigint, i.name, \
     CASE WHEN i.channel_type = 'Channel::Whatsapp' AND w.provider = 'whatsapp_cloud' THEN 'whatsapp_cloud' \
          WHEN i.channel_type = 'Channel::Whatsapp' AND w.provider = 'default' THEN 'dialog360' \
          WHEN i.channel_type = 'Channel::TwilioSms' AND t.medium = 1 THEN 'twilio_whatsapp' \
          WHEN i.channel_type = 'Channel::Api' AND a.webhook_url LIKE '%/chatwoot/webhook/%' THEN 'evolution' \
          ELSE 'other' END, \
     (SELECT COUNT(*) FROM conversations c WHERE c.inbox_id = i.id) \
     FROM inboxes i \
     LEFT JOIN channel_whatsapp w ON i.channel_type = 'Channel::Whatsapp' AND w.id = i.channel_id \
     LEFT JOIN channel_twilio_sms t ON i.channel_type = 'Channel::TwilioSms' AND t.id = i.channel_id \
     LEFT JOIN channel_api a ON i.channel_type = 'Channel::Api' AND a.id = i.channel_id \
     ORDER BY i.id";

/// The newest applied Rails migration (`schema_migrations`), or `unknown`.
async fn schema_version(pool: &PgPool) -> String {
    sqlx::query_scalar::<_, String>("SELECT MAX(version) FROM schema_migrations")
        .fetch_one(pool)
        .await
        .unwrap_or_else(|_| "unknown".into())
}
