//! Storage: the `…Store` traits the capabilities use, implemented once by `SqlStore` over SQLite or PostgreSQL
//! (`db.rs`). SQL both dialects accept is written once and run by `db_run!`, one statement at a time; what
//! differs is a method of `Backend` (`for_update()`, `skip_locked()`, …) or a function per dialect (`pg.rs`,
//! `sqlite.rs`, `queries/pg/…` beside `queries/sqlite/…`). Each database owns its migrations.

mod bench;
mod browse;
mod common;
pub(crate) mod db;
mod health;
mod import_batch;
mod imports;
mod inbox_migration_batch;
mod inbox_migrations;
mod inbox_migrations_impl;
mod ingest;
mod integrations;
mod jobs;
mod lease;
mod members;
mod models;
mod pg;
pub mod seed;
mod settings;
mod sqlite;
mod states;
mod web;

use std::sync::Arc;

use async_trait::async_trait;

pub use bench::BenchStore;
pub use browse::{AuditRow, BrowseStore, ContactNote, ConversationSummary};
pub use db::SqlStore;
pub use health::WriteHealth;
pub use imports::*;
pub use inbox_migrations::*;
pub use ingest::{
    DeadLetter, IngestAttachment, IngestMessage, IngestStore, Ingested, NewDeadLetter, Rekey,
    Rewrite,
};
pub use integrations::{
    Integration, IntegrationStore, LegacyConfigRow, LegacyHits, LegacyInstanceRow, NewIntegration,
    TokenRoute,
};
pub use jobs::{FetchedFile, Job, JobStore};
pub use members::{Accepted, Invitation, Member, MemberChange, MemberStore, NewInvitation};
pub use models::*;
pub use settings::SettingsStore;
pub use states::*;
pub use web::{AttachmentFailure, WebSession, WebStore};

use crate::secrets::{Cipher, SecretsError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    /// Row locks for the rest of the transaction (SQLite's single writer needs none).
    pub fn for_update(self) -> &'static str {
        match self {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        }
    }

    /// Lets concurrent workers claim different rows (SQLite has one writer).
    pub fn skip_locked(self) -> &'static str {
        match self {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// The tail of every webhook route lookup (`queries/*/route.sql`).
    pub fn route_sql(self) -> &'static str {
        match self {
            Backend::Sqlite => include_str!("queries/sqlite/route.sql"),
            Backend::Postgres => include_str!("queries/pg/route.sql"),
        }
    }

    /// Folds a merged contact's fields into the one it merges into (`queries/*/merge_contact_fields.sql`).
    pub fn merge_contact_fields_sql(self) -> &'static str {
        match self {
            Backend::Sqlite => include_str!("queries/sqlite/merge_contact_fields.sql"),
            Backend::Postgres => include_str!("queries/pg/merge_contact_fields.sql"),
        }
    }

    /// Timestamp arithmetic for `queries/seed_messages.sql`.
    pub fn seed_created_at(self) -> &'static str {
        match self {
            Backend::Sqlite => {
                "strftime('%Y-%m-%dT%H:%M:%fZ', p.started_at, '+' || (p.gap_seconds * (n.i + 1)) || ' seconds')"
            }
            Backend::Postgres => "p.started_at + make_interval(secs => p.gap_seconds * (n.i + 1))",
        }
    }

    /// An inbox's contact_inbox of one identity, locked for the rest of the transaction.
    pub fn lock_contact_inbox_sql(self) -> &'static str {
        match self {
            Backend::Sqlite => {
                "SELECT id, contact_id FROM contact_inboxes WHERE inbox_id = $1 AND wa_identity = $2"
            }
            Backend::Postgres => {
                "SELECT id, contact_id FROM contact_inboxes WHERE inbox_id = $1 AND wa_identity = $2 FOR UPDATE"
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A unique constraint refused the write; `constraint` names it so callers can explain.
    #[error("already exists ({constraint})")]
    Conflict { constraint: String },
    /// A check or foreign-key constraint refused the write.
    #[error("refused by the database: {0}")]
    Invalid(String),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error("unsupported database URL {0:?}: use postgres://… or sqlite://…")]
    UnsupportedUrl(String),
    /// The database could not be reached or opened, said with what to do.
    #[error("{0}")]
    Connect(String),
    // Not a `#[source]`: sqlx's message already holds its cause, which a cause chain would print again.
    #[error("database error: {0}")]
    Database(sqlx::Error),
    #[error("schema migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// A failure worth running the same transaction again for (it rolled back whole, or never reached the
    /// database): a deadlock or serialization failure, a lost or refused connection (a terminated backend, a
    /// restarting server), a pool timeout, SQLite busy or locked, a full disk or an I/O error (space comes
    /// back). Data and invariant errors are not.
    pub fn is_transient(&self) -> bool {
        let StoreError::Database(e) = self else {
            return false;
        };
        match e {
            sqlx::Error::Database(db) => db.code().is_some_and(|code| match code.parse::<i32>() {
                // SQLite's extended result code: the primary code is its low byte.
                Ok(sqlite) => matches!(
                    sqlite & 0xff,
                    SQLITE_BUSY | SQLITE_LOCKED | SQLITE_IOERR | SQLITE_FULL
                ),
                Err(_) => {
                    matches!(
                        code.as_ref(),
                        "40P01" | "40001" | "55P03" | "57P01" | "57P02" | "57P03" | "58030"
                    ) || code.starts_with("08")
                        || code.starts_with("53")
                }
            }),
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => true,
            _ => false,
        }
    }

    /// The database cannot take this work now but may soon (the transient failures above, and a closed
    /// pool): answered 503 with `Retry-After`, never 500.
    pub fn is_unavailable(&self) -> bool {
        self.is_transient()
            || matches!(
                self,
                StoreError::Database(sqlx::Error::PoolClosed | sqlx::Error::Tls(_))
            )
    }
}

const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
const SQLITE_IOERR: i32 = 10;
const SQLITE_FULL: i32 = 13;

/// Runs `op` — one transaction — again when it failed transiently (it rolled back whole): up to four tries,
/// 50 ms, 100 ms, 150 ms apart, each retry counted for `job` in `ferry_transient_retries_total`.
pub async fn retrying<T, Fut>(
    job: &'static str,
    mut op: impl FnMut() -> Fut,
) -> std::result::Result<T, StoreError>
where
    Fut: std::future::Future<Output = std::result::Result<T, StoreError>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match op().await {
            Err(e) if attempt < 4 && e.is_transient() => {
                tracing::warn!(error = %e, attempt, job, "transaction rolled back; running it again");
                crate::metrics::transient_retry(job);
                tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
            }
            done => return done,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e {
            if db.is_unique_violation() {
                // PostgreSQL names the constraint; SQLite names the columns in its message.
                let constraint = db.constraint().map(str::to_owned).unwrap_or_else(|| {
                    db.message()
                        .trim_start_matches("UNIQUE constraint failed: ")
                        .to_owned()
                });
                return StoreError::Conflict { constraint };
            }
            if db.is_check_violation() || db.is_foreign_key_violation() {
                return StoreError::Invalid(db.message().to_owned());
            }
        }
        if matches!(e, sqlx::Error::RowNotFound) {
            return StoreError::NotFound("row");
        }
        StoreError::Database(e)
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Seals a secret for the row it is written to, once that row's id is known.
pub type Sealer<'a> = &'a (dyn Fn(i64) -> Vec<u8> + Send + Sync);

#[async_trait]
pub trait Store:
    InboxMigrationStore
    + AccountImportStore
    + IntegrationStore
    + IngestStore
    + JobStore
    + BenchStore
    + WebStore
    + BrowseStore
    + SettingsStore
    + MemberStore
    + Send
    + Sync
    + 'static
{
    fn backend(&self) -> Backend;
    async fn migrate(&self) -> Result<()>;
    async fn ping(&self) -> Result<()>;
    /// Commits a one-row write (readiness); its failure is remembered in `write_health`.
    async fn probe_write(&self) -> Result<()>;
    /// The outcome of recent writes (readiness).
    fn write_health(&self) -> &WriteHealth;
    async fn close(&self);

    // accounts and users
    async fn create_account(&self, new: &NewAccount) -> Result<Account>;
    async fn get_account(&self, id: i64) -> Result<Account>;
    async fn count_accounts(&self) -> Result<i64>;
    async fn create_user(&self, new: &NewUser) -> Result<User>;
    async fn find_user_by_email(&self, email: &str) -> Result<Option<User>>;
    async fn set_account_role(
        &self,
        account_id: i64,
        user_id: i64,
        role: crate::domain::Role,
    ) -> Result<()>;
    async fn account_role(
        &self,
        account_id: i64,
        user_id: i64,
    ) -> Result<Option<crate::domain::Role>>;
    async fn create_access_token(
        &self,
        user_id: i64,
        name: &str,
        token_hash: &[u8],
        prefix: &str,
    ) -> Result<i64>;
    async fn user_by_token_hash(&self, token_hash: &[u8]) -> Result<Option<User>>;
    async fn get_user(&self, id: i64) -> Result<User>;
    /// `(metric, status, count)`: inbox migrations and account imports by status, dead letters waiting.
    async fn status_counts(&self) -> Result<Vec<(String, String, i64)>>;
    async fn record_audit(&self, event: &NewAuditEvent) -> Result<()>;
    async fn list_audit(&self, account_id: i64, limit: i64) -> Result<Vec<AuditEvent>>;

    // inboxes
    async fn list_inboxes(&self, account_id: i64) -> Result<Vec<Inbox>>;
    async fn get_inbox(&self, account_id: i64, inbox_id: i64) -> Result<Inbox>;
    /// An inbox of any account (to tell "another account's" from "unknown").
    async fn find_inbox(&self, inbox_id: i64) -> Result<Option<Inbox>>;
    async fn create_inbox(&self, new: &NewInbox, seal: Option<Sealer<'_>>) -> Result<Inbox>;
    async fn update_inbox(
        &self,
        account_id: i64,
        inbox_id: i64,
        patch: &InboxPatch,
        seal: Option<Sealer<'_>>,
    ) -> Result<Inbox>;
    async fn add_inbox_member(&self, inbox_id: i64, user_id: i64) -> Result<()>;

    // contacts, conversations, messages
    async fn list_contacts(&self, account_id: i64, page: Page) -> Result<Vec<Contact>>;
    async fn contact_inboxes_of(&self, contact_ids: &[i64]) -> Result<Vec<ContactInbox>>;
    async fn list_conversations(
        &self,
        account_id: i64,
        inbox_id: i64,
        page: Page,
    ) -> Result<Vec<Conversation>>;
    async fn get_conversation(&self, account_id: i64, conversation_id: i64)
    -> Result<Conversation>;
    async fn list_messages(
        &self,
        account_id: i64,
        conversation_id: i64,
        page: Page,
    ) -> Result<Vec<Message>>;
    async fn attachments_of(&self, message_ids: &[i64]) -> Result<Vec<Attachment>>;
    /// One message; a repeated `dedupe_key` is a Conflict.
    async fn create_message(&self, new: &NewMessage) -> Result<i64>;
    async fn inbox_counts(&self, inbox_id: i64) -> Result<InboxCounts>;

    // data generator and legacy layout
    async fn reserve_display_ids(&self, account_id: i64, n: i64) -> Result<i64>;
    async fn seed_batch(&self, batch: &seed::SeedBatch) -> Result<()>;
    async fn insert_organization(
        &self,
        organization_id: &str,
        account_id: i64,
        name: &str,
    ) -> Result<()>;
    async fn insert_evolution_instance(&self, row: &seed::LegacyEvolutionInstance) -> Result<i64>;
    async fn insert_business_config(&self, row: &seed::LegacyBusinessConfig) -> Result<i64>;
}

/// Opens the database named by `url` (`postgres://` or `sqlite://`) and applies its migrations.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>> {
    let store: Arc<dyn Store> =
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Arc::new(SqlStore::connect_postgres(url).await?)
        } else if url.starts_with("sqlite:") {
            Arc::new(SqlStore::connect_sqlite(url).await?)
        } else {
            return Err(StoreError::UnsupportedUrl(crate::config::redact_url(url)));
        };
    store.migrate().await?;
    Ok(store)
}

/// Decrypts an inbox's provider config (it is bound to the inbox row).
pub fn open_provider_config(
    cipher: &Cipher,
    inbox: &Inbox,
) -> Result<Option<serde_json::Value>, SecretsError> {
    inbox
        .provider_config
        .as_deref()
        .map(|env| cipher.decrypt_json(env, provider_config_binding(inbox.id)))
        .transpose()
}

pub fn provider_config_binding(inbox_id: i64) -> crate::secrets::RowBinding<'static> {
    crate::secrets::RowBinding {
        table: "inboxes",
        column: "provider_config",
        row_id: inbox_id,
    }
}
