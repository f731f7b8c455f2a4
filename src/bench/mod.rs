//! `ferry bench`: reproducible benchmarks on generated data, printed as JSON. Speed is reported, never asserted.
//!
//! `inbox-migration` seeds one database, then runs each contender on its own copy of it (a file copy on
//! SQLite, `CREATE DATABASE … TEMPLATE` on PostgreSQL): ferry's batched, resumable migration; with `--compare`
//! also `lower_bound` (the same end state by a handful of unbatched set-based statements in one transaction on
//! ferry's schema), `chatwoot_lower_bound` (the same on a Chatwoot-shaped schema, where messages and reporting
//! events carry `inbox_id` and must be rewritten) and `reference` (the reference implementation's statement
//! pattern on that schema).

mod account_import;
mod chatwoot;
mod webhooks;

pub use account_import::{AccountImportBench, LegacySourceKind, account_import};
pub use chatwoot::{ChatwootMigrationBench, chatwoot_migration};
pub use webhooks::{WebhooksBench, webhooks};

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use rand::Rng;
use serde_json::{Value, json};

use crate::config::Config;
use crate::datagen::{SeedOptions, seed_account};
use crate::domain::ChannelType;
use crate::inbox_migration::{self as im, Created, MigrationOptions};
use crate::secrets::SecretKey;
use crate::services::Ferry;
use crate::store::MigrationStatus;
use crate::store::{MatchKey, native_source_id_sql};
use crate::worker::Worker;

#[derive(Debug, Clone)]
pub struct InboxMigrationBench {
    pub conversations: u64,
    pub messages_per_conversation: Option<i64>,
    pub merge_ratio: f64,
    pub batch_rows: Option<i64>,
    pub compare: bool,
    /// Migrations run at once (each of its own generated account).
    pub migrations: usize,
    /// Workers claiming them from the queue.
    pub workers: usize,
}

/// Where the copies live: a temporary folder of SQLite files, or fresh databases on a PostgreSQL server.
enum Target {
    Sqlite {
        dir: tempfile::TempDir,
    },
    Postgres {
        admin_url: String,
        prefix: String,
        created: Vec<String>,
    },
}

impl Target {
    fn new(database_url: Option<&str>) -> anyhow::Result<Self> {
        match database_url {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Target::Postgres {
                    admin_url: url.to_owned(),
                    prefix: format!("ferry_bench_{:08x}", rand::thread_rng().r#gen::<u32>()),
                    created: Vec::new(),
                })
            }
            _ => Ok(Target::Sqlite {
                dir: tempfile::tempdir().context("temporary directory")?,
            }),
        }
    }

    fn backend(&self) -> &'static str {
        match self {
            Target::Sqlite { .. } => "sqlite",
            Target::Postgres { .. } => "postgres",
        }
    }

    fn sqlite_path(dir: &tempfile::TempDir, name: &str) -> PathBuf {
        dir.path().join(format!("{name}.db"))
    }

    async fn admin(url: &str) -> anyhow::Result<sqlx::PgPool> {
        Ok(sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await?)
    }

    fn pg_url(admin_url: &str, name: &str) -> anyhow::Result<String> {
        let mut url = url::Url::parse(admin_url)?;
        url.set_path(name);
        Ok(url.to_string())
    }

    /// A new empty database named `name`.
    async fn create(&mut self, name: &str) -> anyhow::Result<String> {
        match self {
            Target::Sqlite { dir } => Ok(format!(
                "sqlite://{}",
                Self::sqlite_path(dir, name).display()
            )),
            Target::Postgres {
                admin_url,
                prefix,
                created,
            } => {
                let db = format!("{prefix}_{name}");
                let pool = Self::admin(admin_url).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
                    .execute(&pool)
                    .await?;
                pool.close().await;
                created.push(db.clone());
                Self::pg_url(admin_url, &db)
            }
        }
    }

    /// A copy of database `from` (closed) named `name`.
    async fn copy(&mut self, from: &str, name: &str) -> anyhow::Result<String> {
        match self {
            Target::Sqlite { dir } => {
                let (src, dst) = (Self::sqlite_path(dir, from), Self::sqlite_path(dir, name));
                std::fs::copy(&src, &dst).context("copying the SQLite file")?;
                for suffix in ["-wal", "-shm"] {
                    let side = PathBuf::from(format!("{}{suffix}", src.display()));
                    if side.exists() {
                        std::fs::copy(&side, format!("{}{suffix}", dst.display()))?;
                    }
                }
                Ok(format!("sqlite://{}", dst.display()))
            }
            Target::Postgres {
                admin_url,
                prefix,
                created,
            } => {
                let db = format!("{prefix}_{name}");
                let pool = Self::admin(admin_url).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "CREATE DATABASE {db} TEMPLATE {prefix}_{from}"
                )))
                .execute(&pool)
                .await?;
                pool.close().await;
                created.push(db.clone());
                Self::pg_url(admin_url, &db)
            }
        }
    }

    async fn cleanup(&mut self) {
        if let Target::Postgres {
            admin_url, created, ..
        } = self
            && let Ok(pool) = Self::admin(admin_url).await
        {
            for db in created.drain(..) {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
                )))
                .execute(&pool)
                .await;
            }
        }
    }
}

async fn open(url: &str, key: &str, data_dir: &std::path::Path) -> anyhow::Result<Ferry> {
    let mut config = Config::for_data_dir(data_dir);
    config.database_url = Some(url.to_owned());
    config.secret_key = Some(key.to_owned());
    Ok(Ferry::open(config).await?)
}

/// Peak resident memory since the last reset, in MiB (Linux).
fn peak_rss_mb() -> Option<f64> {
    status_mb("VmHWM:")
}

/// Resident memory now, in MiB (Linux).
fn rss_mb() -> Option<f64> {
    status_mb("VmRSS:")
}

fn status_mb(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some((kb / 1024.0 * 10.0).round() / 10.0)
}

/// `--migrations M --workers N`: M accounts generated alike, M migrations queued at once, N workers claiming
/// them (leases, SKIP LOCKED on PostgreSQL) until the queue is empty. Seconds are wall time for all of them.
async fn run_parallel(target: &mut Target, opts: &InboxMigrationBench) -> anyhow::Result<Value> {
    let key = SecretKey::generate().encode().to_string();
    let data = tempfile::tempdir()?;
    let base_url = target.create("base").await?;
    let base = open(&base_url, &key, data.path()).await?;
    let seeded = Instant::now();
    let mut pairs = Vec::new();
    for k in 0..opts.migrations {
        let report = seed_account(
            &base,
            &SeedOptions {
                account_name: format!("Bench account {}", k + 1),
                conversations: opts.conversations,
                merge_ratio: opts.merge_ratio,
                messages_per_conversation: opts.messages_per_conversation,
                seed: 42 + k as u64,
            },
        )
        .await?;
        let inbox = |c: ChannelType| {
            report
                .inboxes
                .iter()
                .find(|i| i.channel_type == c)
                .map(|i| i.id)
                .expect("seeded")
        };
        pairs.push((
            report.account_id,
            inbox(ChannelType::Evolution),
            inbox(ChannelType::WhatsappCloud),
        ));
    }
    let seed_seconds = seeded.elapsed().as_secs_f64();
    base.store.bench_settle().await?;
    base.store.close().await;

    let url = target.copy("base", "ferry").await?;
    let ferry = open(&url, &key, data.path()).await?;
    let mut ids = Vec::new();
    for (account, source, destination) in &pairs {
        let options = MigrationOptions {
            batch_rows: opts.batch_rows,
            ..MigrationOptions::default()
        };
        let Created::Queued(m) = im::create(
            &ferry,
            *account,
            *source,
            *destination,
            false,
            options,
            None,
        )
        .await?
        else {
            unreachable!("not a dry run")
        };
        ids.push(m.id);
    }
    let started = Instant::now();
    let workers: Vec<_> = (0..opts.workers)
        .map(|_| {
            let worker = Worker::new(ferry.clone());
            tokio::spawn(async move {
                let (_stop, shutdown) = tokio::sync::watch::channel(false);
                let mut ran = 0;
                while worker.run_once(shutdown.clone()).await?.is_some() {
                    ran += 1;
                }
                Ok::<usize, crate::store::StoreError>(ran)
            })
        })
        .collect();
    let mut per_worker = Vec::new();
    for w in workers {
        per_worker.push(w.await??);
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut rows = 0;
    let mut each = Vec::new();
    for id in &ids {
        let m = ferry.store.get_inbox_migration(*id).await?;
        anyhow::ensure!(
            m.status == MigrationStatus::Completed,
            "migration {id} ended {}: {:?}",
            m.status,
            m.error_message
        );
        rows += m.conversations_moved + m.messages_moved + m.contact_inboxes_moved;
        let own = match (m.started_at, m.completed_at) {
            (Some(s), Some(c)) => (c - s).num_milliseconds() as f64 / 1000.0,
            _ => 0.0,
        };
        each.push(round(own));
    }
    ferry.store.close().await;
    Ok(json!({
        "backend": target.backend(),
        "migrations": opts.migrations,
        "workers": opts.workers,
        "data": {"conversations_per_migration": opts.conversations, "seed_seconds": round(seed_seconds)},
        "ferry": {
            "seconds": round(seconds),
            "rows": rows,
            "rows_per_second": (rows as f64 / seconds).round(),
            "migration_seconds": each,
            "migrations_per_worker": per_worker,
        },
    }))
}

fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

pub async fn inbox_migration(
    database_url: Option<&str>,
    opts: &InboxMigrationBench,
) -> anyhow::Result<Value> {
    let mut target = Target::new(database_url)?;
    let result = run(&mut target, opts).await;
    target.cleanup().await;
    result
}

async fn run(target: &mut Target, opts: &InboxMigrationBench) -> anyhow::Result<Value> {
    anyhow::ensure!(
        (1..=16).contains(&opts.migrations) && (1..=16).contains(&opts.workers),
        "--migrations and --workers must be between 1 and 16"
    );
    if opts.migrations > 1 || opts.workers > 1 {
        anyhow::ensure!(
            !opts.compare,
            "--compare measures one migration: drop --migrations/--workers"
        );
        return run_parallel(target, opts).await;
    }
    let key = SecretKey::generate().encode().to_string();
    let data = tempfile::tempdir()?;

    let base_url = target.create("base").await?;
    let base = open(&base_url, &key, data.path()).await?;
    let seeded = Instant::now();
    let report = seed_account(
        &base,
        &SeedOptions {
            conversations: opts.conversations,
            merge_ratio: opts.merge_ratio,
            messages_per_conversation: opts.messages_per_conversation,
            ..SeedOptions::default()
        },
    )
    .await?;
    let seed_seconds = seeded.elapsed().as_secs_f64();
    let account = report.account_id;
    let inbox = |c: ChannelType| {
        report
            .inboxes
            .iter()
            .find(|i| i.channel_type == c)
            .map(|i| i.id)
            .expect("seeded")
    };
    let (source, destination) = (
        inbox(ChannelType::Evolution),
        inbox(ChannelType::WhatsappCloud),
    );
    let counts = base
        .store
        .inbox_migration_counts(source, destination, MatchKey::BrazilFolded)
        .await?;
    base.store.bench_settle().await?;
    base.store.close().await;

    // ferry: the real thing, batched and resumable, through the worker.
    let url = target.copy("base", "ferry").await?;
    let ferry = open(&url, &key, data.path()).await?;
    let options = MigrationOptions {
        batch_rows: opts.batch_rows,
        ..MigrationOptions::default()
    };
    let Created::Queued(migration) =
        im::create(&ferry, account, source, destination, false, options, None).await?
    else {
        unreachable!("not a dry run")
    };
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let worker = Worker::new(ferry.clone());
    reset_peak_rss();
    let rss_at_start = rss_mb();
    let started = Instant::now();
    let outcome = worker.run_once(shutdown).await?;
    let seconds = started.elapsed().as_secs_f64();
    let peak = peak_rss_mb();
    let done = ferry.store.get_inbox_migration(migration.id).await?;
    anyhow::ensure!(
        done.status == MigrationStatus::Completed,
        "the migration ended {} ({outcome:?}): {:?}",
        done.status,
        done.error_message
    );
    let rows = done.conversations_moved + done.messages_moved + done.contact_inboxes_moved;
    let result = done
        .result
        .as_ref()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    ferry.store.close().await;
    let mut out = json!({
        "backend": target.backend(),
        "data": {
            "conversations": counts.conversations,
            "messages": counts.messages,
            "attachments": counts.attachments,
            "contact_inboxes": counts.contact_inboxes,
            "merging_contact_inboxes": counts.merging_contact_inboxes,
            "seed_seconds": round(seed_seconds),
        },
        "ferry": {
            "seconds": round(seconds),
            "rows": rows,
            "rows_per_second": (rows as f64 / seconds).round(),
            "max_batch_ms": result["longest_batch_ms"],
            "batches": result["batches"],
            "peak_rss_mb": peak,
            // What the migration itself added: the peak is mostly what seeding left in this process.
            "rss_at_start_mb": rss_at_start,
            "rss_growth_mb": peak.zip(rss_at_start).map(|(p, s)| ((p - s) * 10.0).round() / 10.0),
        },
    });
    if !opts.compare {
        return Ok(out);
    }

    let destination_channel = ChannelType::WhatsappCloud;
    let lower_bound_sql = lower_bound_script(
        source,
        destination,
        destination_channel,
        target.backend() == "postgres",
    );
    let lower = timed_script(target, "lower", &key, data.path(), None, &lower_bound_sql).await?;
    let chatwoot_sql = format!(
        "{lower_bound_sql}\nUPDATE messages SET inbox_id = {destination} WHERE inbox_id = {source};\n\
         UPDATE reporting_events SET inbox_id = {destination} WHERE inbox_id = {source};"
    );
    let chatwoot = timed_script(
        target,
        "chatwoot",
        &key,
        data.path(),
        Some(CHATWOOT_SHAPE),
        &chatwoot_sql,
    )
    .await?;

    let url = target.copy("base", "reference").await?;
    let reference_db = open(&url, &key, data.path()).await?;
    reference_db.store.bench_script(CHATWOOT_SHAPE).await?;
    let started = Instant::now();
    reference_db
        .store
        .bench_reference(source, destination)
        .await?;
    let reference = started.elapsed().as_secs_f64();
    reference_db.store.close().await;

    out["lower_bound"] = json!({"seconds": round(lower)});
    out["chatwoot_lower_bound"] = json!({"seconds": round(chatwoot)});
    out["reference"] = json!({"seconds": round(reference)});
    out["ratios"] = json!({
        "ferry_vs_lower_bound": round(seconds / lower),
        "chatwoot_lower_bound_vs_ferry": round(chatwoot / seconds),
        "reference_vs_ferry": round(reference / seconds),
    });
    Ok(out)
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The Chatwoot shape: messages and reporting events carry their inbox, with an index, as Chatwoot has them;
/// contact_inboxes are unique on (inbox_id, source_id) only.
const CHATWOOT_SHAPE: &str = "DROP INDEX contact_inboxes_identity;
ALTER TABLE messages ADD COLUMN inbox_id BIGINT;
UPDATE messages SET inbox_id = (SELECT c.inbox_id FROM conversations c WHERE c.id = messages.conversation_id);
CREATE INDEX messages_inbox ON messages (inbox_id);
ALTER TABLE reporting_events ADD COLUMN inbox_id BIGINT;
UPDATE reporting_events SET inbox_id = (SELECT c.inbox_id FROM conversations c WHERE c.id = reporting_events.conversation_id);
CREATE INDEX reporting_events_inbox ON reporting_events (inbox_id);";

async fn timed_script(
    target: &mut Target,
    name: &str,
    key: &str,
    data: &std::path::Path,
    prepare: Option<&str>,
    script: &str,
) -> anyhow::Result<f64> {
    let url = target.copy("base", name).await?;
    let db = open(&url, key, data).await?;
    if let Some(prepare) = prepare {
        db.store.bench_script(prepare).await?;
    }
    let started = Instant::now();
    db.store
        .bench_script(script)
        .await
        .with_context(|| format!("{name} script"))?;
    let seconds = started.elapsed().as_secs_f64();
    db.store.close().await;
    Ok(seconds)
}

/// The migration's end state by a handful of unbatched set-based statements: the match computed once (with the
/// source contacts' fields), then conversations, labels, notes, contact_inboxes, emptied contacts and the merged
/// contacts' fields each in one statement.
fn lower_bound_script(
    source: i64,
    destination: i64,
    channel: ChannelType,
    postgres: bool,
) -> String {
    let native = native_source_id_sql(channel)
        .replace("s.wa_identity", "contact_inboxes.wa_identity")
        .replace("s.source_id", "contact_inboxes.source_id");
    // The destination wins on conflicting custom attributes.
    let attributes = if postgres {
        "src.custom_attributes || contacts.custom_attributes"
    } else {
        "json_patch(src.custom_attributes, contacts.custom_attributes)"
    };
    format!(
        "CREATE TEMP TABLE lb_map AS SELECT x.*, (SELECT d.contact_id FROM contact_inboxes d WHERE d.id = x.did) AS dcid \
           FROM (SELECT s.id AS sid, s.contact_id AS scid, c.name, c.phone_number, c.email, c.identifier, c.custom_attributes, \
           (SELECT MIN(d.id) FROM contact_inboxes d WHERE d.inbox_id = {destination} AND d.wa_key = s.wa_key) AS did \
           FROM contact_inboxes s JOIN contacts c ON c.id = s.contact_id WHERE s.inbox_id = {source}) x;
CREATE INDEX lb_map_sid ON lb_map (sid);
CREATE INDEX lb_map_scid ON lb_map (scid);
UPDATE conversations SET inbox_id = {destination},
  contact_inbox_id = COALESCE((SELECT m.did FROM lb_map m WHERE m.sid = conversations.contact_inbox_id), contact_inbox_id),
  contact_id = COALESCE((SELECT d.contact_id FROM lb_map m JOIN contact_inboxes d ON d.id = m.did
                         WHERE m.sid = conversations.contact_inbox_id), contact_id)
  WHERE inbox_id = {source};
INSERT INTO contact_labels (contact_id, label) SELECT DISTINCT d.contact_id, l.label FROM lb_map m
  JOIN contact_inboxes d ON d.id = m.did JOIN contact_labels l ON l.contact_id = m.scid ON CONFLICT DO NOTHING;
UPDATE contact_notes SET contact_id = (SELECT MIN(d.contact_id) FROM lb_map m JOIN contact_inboxes d ON d.id = m.did
  WHERE m.scid = contact_notes.contact_id) WHERE contact_id IN (SELECT scid FROM lb_map WHERE did IS NOT NULL);
DELETE FROM contact_inboxes WHERE id IN (SELECT sid FROM lb_map WHERE did IS NOT NULL);
UPDATE contact_inboxes SET inbox_id = {destination}, source_id = {native} WHERE inbox_id = {source};
DELETE FROM contacts WHERE id IN (SELECT scid FROM lb_map WHERE did IS NOT NULL)
  AND NOT EXISTS (SELECT 1 FROM contact_inboxes ci WHERE ci.contact_id = contacts.id)
  AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.contact_id = contacts.id);
UPDATE contacts SET name = COALESCE(NULLIF(contacts.name, ''), src.name),
  phone_number = COALESCE(NULLIF(contacts.phone_number, ''), src.phone_number),
  email = COALESCE(contacts.email, CASE WHEN NOT EXISTS (
    SELECT 1 FROM contacts o WHERE o.account_id = contacts.account_id AND o.email = src.email) THEN src.email END),
  identifier = COALESCE(contacts.identifier, CASE WHEN NOT EXISTS (
    SELECT 1 FROM contacts o WHERE o.account_id = contacts.account_id AND o.identifier = src.identifier) THEN src.identifier END),
  custom_attributes = {attributes}
  FROM (SELECT m.dcid, m.name, m.phone_number, m.email, m.identifier, m.custom_attributes,
        ROW_NUMBER() OVER (PARTITION BY m.dcid ORDER BY m.sid) AS rn FROM lb_map m WHERE m.did IS NOT NULL AND m.scid <> m.dcid) src
  WHERE contacts.id = src.dcid AND src.rn = 1;
DROP TABLE lb_map;"
    )
}
