//! `ferry bench chatwoot-migration`: an Evolution API inbox moved into a Cloud inbox on Chatwoot's own tables
//! (generated, Chatwoot-shaped), three ways on three copies of the same database: ferry (batched, journaled,
//! leased), the lower bound (the same moves by a few unbatched set-based statements in one transaction, no
//! journal), and the reference pattern (per conversation, update it and `update_all` its messages, one
//! transaction each).

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::watch;

use super::{Target, peak_rss_mb, reset_peak_rss, round, rss_mb};
use crate::chatwoot::Chatwoot;
use crate::chatwoot::bookkeeping::Migration;
use crate::chatwoot::generate::{self, Generated, Spec};
use crate::chatwoot::run::{self, RunOptions};

pub struct ChatwootMigrationBench {
    pub conversations: i64,
    pub messages_per_conversation: i64,
    pub batch_rows: i64,
    /// Time the reference pattern on this many conversations only, and extrapolate.
    pub reference_limit: Option<i64>,
}

pub async fn chatwoot_migration(
    database_url: Option<&str>,
    opts: &ChatwootMigrationBench,
) -> anyhow::Result<Value> {
    let url = database_url
        .filter(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
        .context(
            "bench chatwoot-migration needs --database-url postgres://… (a server where it may create databases)",
        )?;
    let mut target = Target::new(Some(url))?;
    let result = run_all(&mut target, opts).await;
    target.cleanup().await;
    result
}

async fn run_all(target: &mut Target, opts: &ChatwootMigrationBench) -> anyhow::Result<Value> {
    let (generated, generate_seconds) = generate_base(target, opts).await?;
    let ferry_url = target.copy("cw_base", "cw_ferry").await?;
    let lower_url = target.copy("cw_base", "cw_lower").await?;
    let reference_url = target.copy("cw_base", "cw_reference").await?;
    settle(&ferry_url).await;
    let ferry = time_ferry(&ferry_url, &generated, opts).await?;
    settle(&lower_url).await;
    let lower = time_lower_bound(&lower_url, &generated).await?;
    settle(&reference_url).await;
    let (reference, extrapolated) = time_reference(&reference_url, &generated, opts).await?;
    let seconds = ferry["seconds"].as_f64().unwrap_or(f64::NAN);
    Ok(json!({
        "benchmark": "chatwoot-migration",
        "conversations": opts.conversations,
        "messages": opts.conversations * opts.messages_per_conversation,
        "batch_rows": opts.batch_rows,
        "generate_seconds": round(generate_seconds),
        "ferry": ferry,
        "lower_bound": {"seconds": round(lower)},
        "reference": {"seconds": round(reference), "extrapolated": extrapolated},
        "ratios": {
            "ferry_vs_lower_bound": round(seconds / lower),
            "reference_vs_ferry": round(reference / seconds),
        },
    }))
}

/// Each run starts without the previous one's (or the copies') dirty pages still to be written: a checkpoint
/// (needs a superuser; without one the runs are timed as they come).
async fn settle(url: &str) {
    if let Ok(pool) = PgPool::connect(url).await {
        let _ = sqlx::raw_sql("CHECKPOINT").execute(&pool).await;
        pool.close().await;
    }
}

/// Chatwoot's tables and the generated account, vacuumed and analysed so that every copy starts alike.
async fn generate_base(
    target: &mut Target,
    opts: &ChatwootMigrationBench,
) -> anyhow::Result<(Generated, f64)> {
    let url = target.create("cw_base").await?;
    let pool = PgPool::connect(&url).await?;
    generate::create_schema(&pool).await?;
    let started = Instant::now();
    let spec = Spec {
        conversations: opts.conversations,
        messages_per_conversation: opts.messages_per_conversation,
        merge_every: 10,
        lid_every: 50,
        group_every: 97,
    };
    let generated = generate::generate(&pool, &spec).await?;
    let seconds = started.elapsed().as_secs_f64();
    sqlx::raw_sql("VACUUM ANALYZE").execute(&pool).await?;
    pool.close().await;
    Ok((generated, seconds))
}

async fn time_ferry(
    url: &str,
    g: &Generated,
    opts: &ChatwootMigrationBench,
) -> anyhow::Result<Value> {
    let cw = Chatwoot::open(url).await?;
    let preview = cw
        .preview(g.account_id, g.evolution_inbox, g.cloud_inbox)
        .await?;
    let (_stop_tx, stop) = watch::channel(false);
    let rss_before = rss_mb();
    reset_peak_rss();
    let options = RunOptions {
        owner: run::owner(),
        lease_secs: 30.0,
        stop,
        progress: Box::new(|_: &Migration| {}),
    };
    let started = Instant::now();
    let m = run::create_move(&cw, &preview, opts.batch_rows, &options).await?;
    let m = run::run_move(&cw, m, &options).await?;
    let seconds = started.elapsed().as_secs_f64();
    let verified = cw.verify(m.id).await?.ok;
    Ok(json!({
        "seconds": round(seconds),
        "status": m.status,
        "batches": m.batches,
        "longest_batch_ms": m.longest_batch_ms,
        "messages_moved": m.messages_moved,
        "messages_per_second": round(m.messages_moved as f64 / seconds),
        "contact_inboxes_merged": m.contact_inboxes_merged,
        "contacts_merged": m.contacts_merged,
        "left_behind": m.left_behind,
        "verify_ok": verified,
        "rss_mb_before": rss_before,
        "peak_rss_mb": peak_rss_mb(),
    }))
}

/// The same moves and merges by set-based statements in one transaction, with no journal and no batching:
/// what the database itself needs to write.
async fn time_lower_bound(url: &str, g: &Generated) -> anyhow::Result<f64> {
    let pool = PgPool::connect(url).await?;
    let sql = lower_bound_sql(g.evolution_inbox, g.cloud_inbox);
    let started = Instant::now();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&pool)
        .await
        .context("lower bound script")?;
    let seconds = started.elapsed().as_secs_f64();
    pool.close().await;
    Ok(seconds)
}

fn lower_bound_sql(from: i64, to: i64) -> String {
    format!(
        "BEGIN;
CREATE TEMP TABLE lb AS
  SELECT s.id AS sid, s.contact_id AS scid, d.id AS did, d.contact_id AS dcid, x.digits
  FROM contact_inboxes s JOIN contacts c ON c.id = s.contact_id
  CROSS JOIN LATERAL (SELECT COALESCE(NULLIF(split_part(c.identifier, '@', 1), ''), ltrim(c.phone_number, '+'))
                      AS digits) x
  LEFT JOIN LATERAL (SELECT d.id, d.contact_id FROM contact_inboxes d WHERE d.inbox_id = {to}
        AND (d.contact_id = s.contact_id OR d.source_id IN (x.digits, overlay(x.digits PLACING '' FROM 5 FOR 1)))
        ORDER BY d.id LIMIT 1) d ON true
  WHERE s.inbox_id = {from} AND (c.identifier IS NULL OR c.identifier LIKE '%@s.whatsapp.net');
CREATE INDEX ON lb (sid);
UPDATE conversations c SET inbox_id = {to}, contact_inbox_id = COALESCE(lb.did, lb.sid),
    contact_id = COALESCE(lb.dcid, c.contact_id)
  FROM lb WHERE c.contact_inbox_id = lb.sid AND c.inbox_id = {from};
UPDATE messages m SET inbox_id = {to} FROM conversations c
  WHERE c.id = m.conversation_id AND c.inbox_id = {to} AND m.inbox_id = {from};
UPDATE messages m SET sender_id = lb.dcid FROM lb, conversations c
  WHERE lb.dcid <> lb.scid AND c.contact_inbox_id = lb.did AND m.conversation_id = c.id
    AND m.sender_type = 'Contact' AND m.sender_id = lb.scid;
UPDATE reporting_events r SET inbox_id = {to} FROM conversations c
  WHERE c.id = r.conversation_id AND c.inbox_id = {to} AND r.inbox_id = {from};
UPDATE sla_events r SET inbox_id = {to} FROM conversations c
  WHERE c.id = r.conversation_id AND c.inbox_id = {to} AND r.inbox_id = {from};
DELETE FROM contact_inboxes WHERE id IN (SELECT sid FROM lb WHERE did IS NOT NULL);
UPDATE contact_inboxes s SET inbox_id = {to}, source_id = lb.digits FROM lb WHERE s.id = lb.sid AND lb.did IS NULL;
UPDATE notes n SET contact_id = lb.dcid FROM lb WHERE n.contact_id = lb.scid AND lb.dcid <> lb.scid;
DELETE FROM taggings t USING lb WHERE t.taggable_type = 'Contact' AND t.taggable_id = lb.scid AND lb.dcid <> lb.scid;
DELETE FROM contacts WHERE id IN (SELECT scid FROM lb WHERE dcid <> scid);
INSERT INTO inbox_members (user_id, inbox_id, created_at, updated_at)
  SELECT user_id, {to}, now(), now() FROM inbox_members WHERE inbox_id = {from} ON CONFLICT DO NOTHING;
COMMIT;"
    )
}

/// The reference pattern, one transaction per conversation; on `reference_limit` conversations only when set,
/// extrapolated to all.
async fn time_reference(
    url: &str,
    g: &Generated,
    opts: &ChatwootMigrationBench,
) -> anyhow::Result<(f64, bool)> {
    let pool = PgPool::connect(url).await?;
    let all: Vec<i32> =
        sqlx::query_scalar("SELECT id FROM conversations WHERE inbox_id = $1 ORDER BY id")
            .bind(g.evolution_inbox)
            .fetch_all(&pool)
            .await?;
    let limit = opts
        .reference_limit
        .map_or(all.len(), |l| (l.max(1) as usize).min(all.len()));
    let started = Instant::now();
    for id in &all[..limit] {
        let mut tx = pool.begin().await?;
        sqlx::query("UPDATE conversations SET inbox_id = $2 WHERE id = $1")
            .bind(id)
            .bind(g.cloud_inbox)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE messages SET inbox_id = $2 WHERE conversation_id = $1")
            .bind(id)
            .bind(g.cloud_inbox)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    let elapsed = started.elapsed();
    pool.close().await;
    let scale = all.len() as f64 / limit.max(1) as f64;
    Ok((
        (elapsed.mul_f64(scale) + Duration::ZERO).as_secs_f64(),
        limit < all.len(),
    ))
}
