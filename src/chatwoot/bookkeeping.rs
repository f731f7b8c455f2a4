//! ferry's own tables inside the Chatwoot database, in a schema of their own (`ferry`), so that a batch commits
//! Chatwoot's rows, the journal that undoes them and the migration's progress in one transaction. Nothing is
//! added to Chatwoot's tables. Created on first use; each version applied once, under an advisory lock.

use serde::Serialize;
use sqlx::{FromRow, PgConnection, PgPool};

use super::ChatwootError;

/// Advisory-lock namespace of ferry in a Chatwoot database (`pg_advisory_lock(NAMESPACE, key)`).
pub const NAMESPACE: i32 = 0x6665_7272;
/// Key of the lock that serialises creating ferry's schema.
const SCHEMA_LOCK: i32 = 0;

/// ferry's schema, in versions; a version is never edited once released, only followed by another.
const VERSIONS: &[(i32, &str)] = &[(
    1,
    r#"
    CREATE TABLE ferry.migrations (
        id bigserial PRIMARY KEY,
        kind text NOT NULL CHECK (kind IN ('move', 'convert_provider')),
        account_id bigint NOT NULL,
        source_inbox_id bigint NOT NULL,
        destination_inbox_id bigint,
        params jsonb NOT NULL DEFAULT '{}',
        status text NOT NULL
            CHECK (status IN ('running', 'completed', 'failed', 'cancelled', 'reverting', 'reverted')),
        batch_rows integer NOT NULL,
        cursor bigint NOT NULL DEFAULT 0,
        conversations_total bigint NOT NULL DEFAULT 0,
        messages_total bigint NOT NULL DEFAULT 0,
        conversations_moved bigint NOT NULL DEFAULT 0,
        messages_moved bigint NOT NULL DEFAULT 0,
        contact_inboxes_moved bigint NOT NULL DEFAULT 0,
        contact_inboxes_merged bigint NOT NULL DEFAULT 0,
        contacts_merged bigint NOT NULL DEFAULT 0,
        left_behind bigint NOT NULL DEFAULT 0,
        batches integer NOT NULL DEFAULT 0,
        longest_batch_ms integer NOT NULL DEFAULT 0,
        cancel_requested boolean NOT NULL DEFAULT false,
        lease_owner text,
        lease_expires_at timestamptz,
        error text,
        revert_cursor bigint,
        revert_entries_total bigint NOT NULL DEFAULT 0,
        revert_entries_done bigint NOT NULL DEFAULT 0,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        finished_at timestamptz,
        reverted_at timestamptz
    );
    -- One run at a time per source inbox, enforced by the database rather than checked first.
    CREATE UNIQUE INDEX migrations_one_active_per_source ON ferry.migrations (source_inbox_id)
        WHERE status IN ('running', 'reverting');
    -- Every change ferry made, in order: `update` keeps the columns' previous values shared by `ids`,
    -- `delete` the whole row (it comes back with its id), `insert` the ids to delete again.
    CREATE TABLE ferry.journal (
        seq bigserial PRIMARY KEY,
        migration_id bigint NOT NULL REFERENCES ferry.migrations (id),
        table_name text NOT NULL,
        op text NOT NULL CHECK (op IN ('update', 'delete', 'insert')),
        ids bigint[] NOT NULL,
        before jsonb
    );
    CREATE INDEX journal_by_migration ON ferry.journal (migration_id, seq);
    -- Contact_inboxes whose identity cannot move to the destination's provider (LID, group, BSUID).
    CREATE TABLE ferry.left_behind (
        migration_id bigint NOT NULL REFERENCES ferry.migrations (id),
        contact_inbox_id bigint NOT NULL,
        contact_id bigint,
        name text,
        source_id text NOT NULL,
        reason text NOT NULL,
        PRIMARY KEY (migration_id, contact_inbox_id)
    );
    -- What merged into what, for the result and for people to check.
    CREATE TABLE ferry.merges (
        migration_id bigint NOT NULL REFERENCES ferry.migrations (id),
        source_contact_inbox_id bigint NOT NULL,
        destination_contact_inbox_id bigint NOT NULL,
        source_contact_id bigint,
        destination_contact_id bigint,
        contact_merged boolean NOT NULL,
        name text,
        source_identity text NOT NULL,
        destination_identity text NOT NULL,
        PRIMARY KEY (migration_id, source_contact_inbox_id)
    );
    "#,
)];

/// Creates or updates ferry's schema in the Chatwoot database; concurrent callers wait for each other.
pub async fn ensure_schema(pool: &PgPool) -> Result<(), ChatwootError> {
    let mut tx = pool.begin().await?;
    // "already exists, skipping" notices would be logged on every command.
    sqlx::query("SET LOCAL client_min_messages = warning")
        .execute(&mut *tx)
        .await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
        .bind(NAMESPACE)
        .bind(SCHEMA_LOCK)
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(
        "CREATE SCHEMA IF NOT EXISTS ferry;
         CREATE TABLE IF NOT EXISTS ferry.schema_versions (
             version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());",
    )
    .execute(&mut *tx)
    .await?;
    let applied: Vec<i32> = sqlx::query_scalar("SELECT version FROM ferry.schema_versions")
        .fetch_all(&mut *tx)
        .await?;
    for (version, ddl) in VERSIONS.iter().filter(|(v, _)| !applied.contains(v)) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(*ddl))
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO ferry.schema_versions (version) VALUES ($1)")
            .bind(version)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The status of a migration on a Chatwoot database, decoded at the row boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Running,
    Completed,
    Failed,
    Cancelled,
    Reverting,
    Reverted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
            Status::Reverting => "reverting",
            Status::Reverted => "reverted",
        }
    }

    fn parse(s: &str) -> Result<Self, ChatwootError> {
        Ok(match s {
            "running" => Status::Running,
            "completed" => Status::Completed,
            "failed" => Status::Failed,
            "cancelled" => Status::Cancelled,
            "reverting" => Status::Reverting,
            "reverted" => Status::Reverted,
            other => return Err(ChatwootError::Refused(format!("unknown status {other}"))),
        })
    }
}

/// What a migration does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationKind {
    /// Every conversation of one inbox into another.
    Move,
    /// The provider of a WhatsApp channel rewritten in place.
    ConvertProvider,
}

#[derive(Debug, FromRow)]
struct Row {
    id: i64,
    kind: String,
    account_id: i64,
    source_inbox_id: i64,
    destination_inbox_id: Option<i64>,
    params: serde_json::Value,
    status: String,
    batch_rows: i32,
    cursor: i64,
    conversations_total: i64,
    messages_total: i64,
    conversations_moved: i64,
    messages_moved: i64,
    contact_inboxes_moved: i64,
    contact_inboxes_merged: i64,
    contacts_merged: i64,
    left_behind: i64,
    batches: i32,
    longest_batch_ms: i32,
    cancel_requested: bool,
    lease_owner: Option<String>,
    lease_expires_at: Option<chrono::DateTime<chrono::Utc>>,
    error: Option<String>,
    revert_cursor: Option<i64>,
    revert_entries_total: i64,
    revert_entries_done: i64,
    created_at: chrono::DateTime<chrono::Utc>,
    finished_at: Option<chrono::DateTime<chrono::Utc>>,
    reverted_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A migration on a Chatwoot database, as `ferry chatwoot migrations show` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Migration {
    pub id: i64,
    pub kind: MigrationKind,
    pub account_id: i64,
    pub source_inbox_id: i64,
    pub destination_inbox_id: Option<i64>,
    pub params: serde_json::Value,
    pub status: Status,
    pub batch_rows: i64,
    #[serde(skip)]
    pub cursor: i64,
    pub conversations_total: i64,
    pub messages_total: i64,
    pub conversations_moved: i64,
    pub messages_moved: i64,
    pub contact_inboxes_moved: i64,
    pub contact_inboxes_merged: i64,
    pub contacts_merged: i64,
    pub left_behind: i64,
    pub batches: i64,
    pub longest_batch_ms: i64,
    pub cancel_requested: bool,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<chrono::DateTime<chrono::Utc>>,
    pub error: Option<String>,
    #[serde(skip)]
    pub revert_cursor: Option<i64>,
    pub revert_entries_total: i64,
    pub revert_entries_done: i64,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    pub reverted_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Migration {
    /// Share of the work done, 0 to 100: the revert's when reverting or reverted.
    pub fn percentage(&self) -> f64 {
        let (done, total) = match self.status {
            Status::Reverting | Status::Reverted => {
                (self.revert_entries_done, self.revert_entries_total)
            }
            Status::Completed => return 100.0,
            _ => (self.messages_moved, self.messages_total),
        };
        if self.status == Status::Reverted || total == 0 {
            return if self.status == Status::Reverted || self.status == Status::Completed {
                100.0
            } else {
                0.0
            };
        }
        (done as f64 * 100.0 / total as f64).min(100.0)
    }
}

impl TryFrom<Row> for Migration {
    type Error = ChatwootError;

    fn try_from(r: Row) -> Result<Self, ChatwootError> {
        Ok(Migration {
            id: r.id,
            kind: match r.kind.as_str() {
                "convert_provider" => MigrationKind::ConvertProvider,
                _ => MigrationKind::Move,
            },
            account_id: r.account_id,
            source_inbox_id: r.source_inbox_id,
            destination_inbox_id: r.destination_inbox_id,
            params: r.params,
            status: Status::parse(&r.status)?,
            batch_rows: r.batch_rows.into(),
            cursor: r.cursor,
            conversations_total: r.conversations_total,
            messages_total: r.messages_total,
            conversations_moved: r.conversations_moved,
            messages_moved: r.messages_moved,
            contact_inboxes_moved: r.contact_inboxes_moved,
            contact_inboxes_merged: r.contact_inboxes_merged,
            contacts_merged: r.contacts_merged,
            left_behind: r.left_behind,
            batches: r.batches.into(),
            longest_batch_ms: r.longest_batch_ms.into(),
            cancel_requested: r.cancel_requested,
            lease_owner: r.lease_owner,
            lease_expires_at: r.lease_expires_at,
            error: r.error,
            revert_cursor: r.revert_cursor,
            revert_entries_total: r.revert_entries_total,
            revert_entries_done: r.revert_entries_done,
            created_at: r.created_at,
            finished_at: r.finished_at,
            reverted_at: r.reverted_at,
        })
    }
}

/// A new migration, running under the caller's lease from the start.
pub struct NewMigration<'a> {
    pub kind: MigrationKind,
    pub account_id: i64,
    pub source_inbox_id: i64,
    pub destination_inbox_id: Option<i64>,
    pub params: serde_json::Value,
    pub batch_rows: i64,
    pub conversations_total: i64,
    pub messages_total: i64,
    pub owner: &'a str,
    pub lease_secs: f64,
}

pub async fn create(pool: &PgPool, new: &NewMigration<'_>) -> Result<Migration, ChatwootError> {
    let kind = match new.kind {
        MigrationKind::Move => "move",
        MigrationKind::ConvertProvider => "convert_provider",
    };
    let row: Result<Row, sqlx::Error> = sqlx::query_as(
        "INSERT INTO ferry.migrations (kind, account_id, source_inbox_id, destination_inbox_id, params, status, \
             batch_rows, conversations_total, messages_total, lease_owner, lease_expires_at) \
         VALUES ($1, $2, $3, $4, $5, 'running', $6, $7, $8, $9, now() + make_interval(secs => $10)) RETURNING *",
    )
    .bind(kind)
    .bind(new.account_id)
    .bind(new.source_inbox_id)
    .bind(new.destination_inbox_id)
    .bind(&new.params)
    .bind(new.batch_rows as i32)
    .bind(new.conversations_total)
    .bind(new.messages_total)
    .bind(new.owner)
    .bind(new.lease_secs)
    .fetch_one(pool)
    .await;
    match row {
        Ok(row) => row.try_into(),
        Err(e) if is_unique_violation(&e) => {
            let other = active_on(pool, new.source_inbox_id).await?;
            Err(ChatwootError::Refused(format!(
                "inbox {} already has a running migration ({}): wait for it, or `ferry chatwoot migrations cancel {}`",
                new.source_inbox_id,
                other.map_or("?".into(), |id| id.to_string()),
                other.map_or("ID".into(), |id| id.to_string()),
            )))
        }
        Err(e) => Err(e.into()),
    }
}

async fn active_on(pool: &PgPool, inbox: i64) -> Result<Option<i64>, ChatwootError> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM ferry.migrations WHERE source_inbox_id = $1 AND status IN ('running', 'reverting')",
    )
    .bind(inbox)
    .fetch_optional(pool)
    .await?)
}

pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("23505"))
}

pub async fn get(pool: &PgPool, id: i64) -> Result<Migration, ChatwootError> {
    let row: Option<Row> = sqlx::query_as("SELECT * FROM ferry.migrations WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.ok_or_else(|| {
        ChatwootError::Refused(format!("no migration {id} in this Chatwoot database"))
    })?
    .try_into()
}

pub async fn list(pool: &PgPool) -> Result<Vec<Migration>, ChatwootError> {
    let rows: Vec<Row> = sqlx::query_as("SELECT * FROM ferry.migrations ORDER BY id DESC")
        .fetch_all(pool)
        .await?;
    rows.into_iter().map(Migration::try_from).collect()
}

/// Takes the migration's lease if it is free or expired and its status is one of `from`, setting `to`.
/// Refuses with the holder when another process holds it.
pub async fn claim(
    pool: &PgPool,
    id: i64,
    from: &[Status],
    to: Status,
    owner: &str,
    lease_secs: f64,
) -> Result<Migration, ChatwootError> {
    let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
    let row: Result<Option<Row>, sqlx::Error> = sqlx::query_as(
        "UPDATE ferry.migrations SET status = $3, lease_owner = $4, \
             lease_expires_at = now() + make_interval(secs => $5), cancel_requested = false, error = NULL, \
             updated_at = now() \
         WHERE id = $1 AND status = ANY($2) AND (lease_expires_at IS NULL OR lease_expires_at < now()) \
         RETURNING *",
    )
    .bind(id)
    .bind(&from)
    .bind(to.as_str())
    .bind(owner)
    .bind(lease_secs)
    .fetch_optional(pool)
    .await;
    match row {
        Ok(Some(row)) => row.try_into(),
        Ok(None) => Err(refusal(&get(pool, id).await?, to)),
        Err(e) if is_unique_violation(&e) => Err(ChatwootError::Refused(format!(
            "inbox of migration {id} already has another running migration or revert"
        ))),
        Err(e) => Err(e.into()),
    }
}

fn refusal(m: &Migration, wanted: Status) -> ChatwootError {
    let alive = m
        .lease_expires_at
        .is_some_and(|until| until > chrono::Utc::now());
    ChatwootError::Refused(if alive {
        format!(
            "migration {} is {} in another process ({}) until its lease expires at {}",
            m.id,
            m.status.as_str(),
            m.lease_owner.as_deref().unwrap_or("?"),
            m.lease_expires_at
                .map(|t| t.format("%H:%M:%S UTC").to_string())
                .unwrap_or_default()
        )
    } else {
        format!(
            "migration {} is {}: it cannot be {}",
            m.id,
            m.status.as_str(),
            match wanted {
                Status::Reverting => "reverted",
                _ => "resumed",
            }
        )
    })
}

/// Extends the lease inside a batch's transaction; false when another process took it over.
pub async fn renew(
    conn: &mut PgConnection,
    id: i64,
    owner: &str,
    lease_secs: f64,
) -> Result<bool, ChatwootError> {
    let renewed = sqlx::query(
        "UPDATE ferry.migrations SET lease_expires_at = now() + make_interval(secs => $3), updated_at = now() \
         WHERE id = $1 AND lease_owner = $2",
    )
    .bind(id)
    .bind(owner)
    .bind(lease_secs)
    .execute(conn)
    .await?;
    Ok(renewed.rows_affected() == 1)
}

/// Ends a run: its status, error, and the lease released.
pub async fn finish(
    pool: &PgPool,
    id: i64,
    owner: &str,
    status: Status,
    error: Option<&str>,
) -> Result<(), ChatwootError> {
    sqlx::query(
        "UPDATE ferry.migrations SET status = $3, error = $4, lease_owner = NULL, lease_expires_at = NULL, \
             updated_at = now(), \
             finished_at = CASE WHEN $3 IN ('completed', 'failed', 'cancelled') THEN now() ELSE finished_at END, \
             reverted_at = CASE WHEN $3 = 'reverted' THEN now() ELSE reverted_at END \
         WHERE id = $1 AND lease_owner = $2",
    )
    .bind(id)
    .bind(owner)
    .bind(status.as_str())
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}

/// Asks a running migration to stop at its next batch boundary; one whose process is gone (lease expired) is
/// cancelled at once.
pub async fn cancel(pool: &PgPool, id: i64) -> Result<Migration, ChatwootError> {
    let m = get(pool, id).await?;
    if !matches!(m.status, Status::Running) {
        return Err(ChatwootError::Refused(format!(
            "migration {id} is {}: only a running migration can be cancelled",
            m.status.as_str()
        )));
    }
    sqlx::query(
        "UPDATE ferry.migrations SET cancel_requested = true, updated_at = now(), \
             status = CASE WHEN lease_expires_at IS NULL OR lease_expires_at < now() THEN 'cancelled' ELSE status END, \
             finished_at = CASE WHEN lease_expires_at IS NULL OR lease_expires_at < now() THEN now() ELSE finished_at END \
         WHERE id = $1 AND status = 'running'",
    )
    .bind(id)
    .execute(pool)
    .await?;
    get(pool, id).await
}

/// Whether someone asked the migration to stop.
pub async fn cancel_requested(conn: &mut PgConnection, id: i64) -> Result<bool, ChatwootError> {
    Ok(
        sqlx::query_scalar("SELECT cancel_requested FROM ferry.migrations WHERE id = $1")
            .bind(id)
            .fetch_one(conn)
            .await?,
    )
}
