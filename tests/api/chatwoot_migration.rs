//! Inbox migration on a Chatwoot database (`ferry chatwoot migrate …`), run as a user runs it: the real binary
//! on a real PostgreSQL holding Chatwoot's tables (`src/chatwoot/schema.sql`) filled by the Chatwoot-shaped
//! generator: an Evolution API inbox with UUID source_ids, JID identifiers, LID and group contacts; a Cloud inbox
//! that already knows some of its people (same contact, or the number without the Brazilian ninth digit);
//! labels, notes, CSAT responses, reporting and SLA events.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ferry::chatwoot::generate::{self, Generated, Spec};
use serde_json::Value;
use sqlx::PgPool;

use crate::helpers::{Db, fresh_postgres_database};

/// Chatwoot's tables that a migration may change, compared whole before and after.
const TABLES: &[&str] = &[
    "contacts",
    "contact_inboxes",
    "conversations",
    "messages",
    "attachments",
    "reporting_events",
    "sla_events",
    "inbox_members",
    "notes",
    "taggings",
    "tags",
    "csat_survey_responses",
    "channel_whatsapp",
];

async fn chatwoot(spec: Spec) -> (String, PgPool, Generated) {
    let url = fresh_postgres_database().await;
    let pool = PgPool::connect(&url).await.unwrap();
    generate::create_schema(&pool).await.expect("schema loads");
    let generated = generate::generate(&pool, &spec).await.expect("generates");
    (url, pool, generated)
}

fn small() -> Spec {
    Spec {
        conversations: 240,
        messages_per_conversation: 6,
        merge_every: 10,
        lid_every: 50,
        group_every: 97,
    }
}

fn command(url: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
    command
        .arg("chatwoot")
        .args(args)
        .env("FERRY_CHATWOOT_URL", url)
        .env("FERRY_CHATWOOT_LEASE_SECS", "2")
        .stdin(Stdio::null());
    command
}

fn ferry(url: &str, args: &[&str]) -> Output {
    command(url, args).output().expect("run ferry")
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "stdout {} stderr {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_owned()
}

fn pair(g: &Generated, from: i64, to: i64) -> Vec<String> {
    vec![
        "--account".into(),
        g.account_id.to_string(),
        "--from".into(),
        from.to_string(),
        "--to".into(),
        to.to_string(),
    ]
}

fn migrate(url: &str, g: &Generated, from: i64, to: i64, extra: &[&str]) -> Output {
    let mut args: Vec<String> = vec!["migrate".into()];
    args.extend(pair(g, from, to));
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ferry(url, &args)
}

/// Every row of every table a migration may change, as text, table by table.
async fn snapshot(pool: &PgPool) -> Vec<(String, String)> {
    snapshot_of(pool, "t").await
}

/// The same, except rows the migration inserts (inbox_members) compared by what they say, not their ids and
/// times: two runs insert them anew.
async fn end_state(pool: &PgPool) -> Vec<(String, String)> {
    snapshot_of(pool, "CASE WHEN '{table}' = 'inbox_members' THEN to_jsonb(t) - 'id' - 'created_at' - 'updated_at' ELSE to_jsonb(t) END").await
}

async fn snapshot_of(pool: &PgPool, row: &str) -> Vec<(String, String)> {
    let mut tables = Vec::new();
    for table in TABLES {
        let row = row.replace("{table}", table);
        let rows: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT json_agg({row} ORDER BY t.id)::text FROM {table} t"
        )))
        .fetch_one(pool)
        .await
        .unwrap();
        tables.push((table.to_string(), rows.unwrap_or_default()));
    }
    tables
}

fn assert_same(before: &[(String, String)], after: &[(String, String)], what: &str) {
    for ((table, a), (_, b)) in before.iter().zip(after) {
        if a != b {
            let at = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
            let from = at.saturating_sub(200);
            panic!(
                "{what}: table {table} differs at byte {at}:\n  before …{}\n  after  …{}",
                &a[from..(at + 200).min(a.len())],
                &b[from..(at + 200).min(b.len())]
            );
        }
    }
}

/// Messages whose `inbox_id` is not their conversation's.
async fn messages_off_their_inbox(pool: &PgPool) -> i64 {
    scalar(
        pool,
        "SELECT count(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id \
         WHERE m.inbox_id <> c.inbox_id",
    )
    .await
}

async fn scalar(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Preview lists the merges and the identities that stay; the migration moves the rest with every message's
/// inbox, merges contact_inboxes and contacts (notes, labels, CSAT follow), verifies, and reverts to a snapshot
/// identical to the one before, row for row.
pub async fn a_move_merges_verifies_and_reverts_exactly(db: Db) {
    assert_eq!(db, Db::Postgres);
    let (url, pool, g) = chatwoot(small()).await;
    let (from, to) = (g.evolution_inbox, g.cloud_inbox);
    let before = snapshot(&pool).await;

    let mut args = vec!["preview".to_string()];
    args.extend(pair(&g, from, to));
    args.push("--json".into());
    let preview = json_of(&ferry(
        &url,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    // 240 people: every 10th merges (24, half of them by contact merge); LIDs (every 50th) and groups (every
    // 97th) stay: 50, 100, 150, 200 are LIDs but 50, 100, 150, 200 are also merge people; groups 97, 194.
    let left = preview["left_behind_total"].as_i64().unwrap();
    let merges = preview["merges_total"].as_i64().unwrap();
    assert!(left >= 2, "{preview}");
    assert!(merges >= 10, "{preview}");
    assert!(
        preview["left_behind"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["identity"].as_str().unwrap().ends_with("@g.us")),
        "{preview}"
    );
    let codes: Vec<&str> = preview["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"NO_REALTIME_EVENTS") && codes.contains(&"EVOLUTION_STILL_CONNECTED"));
    let contact_merges = preview["merges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["contact_merge"] == true)
        .count() as i64;
    assert!(contact_merges > 0, "{preview}");
    assert_same(&before, &snapshot(&pool).await, "preview changes nothing");

    // Without --yes and without a terminal: refused, nothing changed.
    let out = migrate(&url, &g, from, to, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("type MIGRATE, or pass --yes"),
        "{}",
        stderr(&out)
    );

    let source_messages_staying = scalar(
        &pool,
        &format!(
            "SELECT count(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id \
             JOIN contacts ct ON ct.id = c.contact_id WHERE c.inbox_id = {from} \
             AND (ct.identifier LIKE '%@lid' OR ct.identifier LIKE '%@g.us')"
        ),
    )
    .await;
    let m = json_of(&migrate(
        &url,
        &g,
        from,
        to,
        &["--yes", "--json", "--batch-rows", "200"],
    ));
    assert_eq!(m["status"], "completed", "{m}");
    assert!(m["batches"].as_i64().unwrap() > 5, "bounded batches: {m}");
    assert_eq!(m["left_behind"].as_i64().unwrap(), left);
    assert_eq!(m["contact_inboxes_merged"].as_i64().unwrap(), merges);
    assert_eq!(m["contacts_merged"].as_i64().unwrap(), contact_merges);
    let id = m["id"].as_i64().unwrap().to_string();

    // What stays is exactly the left-behind people with their messages; every message names its inbox.
    assert_eq!(
        scalar(
            &pool,
            &format!("SELECT count(*) FROM messages WHERE inbox_id = {from}")
        )
        .await,
        source_messages_staying
    );
    assert_eq!(messages_off_their_inbox(&pool).await, 0);
    // Moved contact_inboxes carry the Cloud format; reporting events followed their conversations.
    assert_eq!(
        scalar(
            &pool,
            &format!("SELECT count(*) FROM contact_inboxes WHERE inbox_id = {to} AND source_id !~ '^(\\d{{1,15}}|US\\..*)$'")
        )
        .await,
        0
    );
    assert_eq!(
        scalar(
            &pool,
            "SELECT count(*) FROM reporting_events r JOIN conversations c ON c.id = r.conversation_id \
             WHERE r.inbox_id <> c.inbox_id"
        )
        .await,
        0
    );
    // Contact merges: no contact-sent message or note names a deleted contact; tag counts are true.
    assert_eq!(
        scalar(
            &pool,
            "SELECT count(*) FROM messages m WHERE m.sender_type = 'Contact' \
             AND NOT EXISTS (SELECT 1 FROM contacts c WHERE c.id = m.sender_id)"
        )
        .await,
        0
    );
    assert_eq!(
        scalar(
            &pool,
            "SELECT count(*) FROM notes n WHERE NOT EXISTS (SELECT 1 FROM contacts c WHERE c.id = n.contact_id)"
        )
        .await,
        0
    );
    assert_eq!(
        scalar(
            &pool,
            "SELECT count(*) FROM tags t WHERE taggings_count <> (SELECT count(*) FROM taggings g WHERE g.tag_id = t.id)"
        )
        .await,
        0
    );
    assert_eq!(
        scalar(
            &pool,
            &format!("SELECT count(*) FROM inbox_members WHERE inbox_id = {to}")
        )
        .await,
        3,
        "the source's agents became members of the destination"
    );
    let verify = json_of(&ferry(&url, &["migrations", "verify", &id, "--json"]));
    assert_eq!(verify["ok"], true, "{verify}");

    let show = json_of(&ferry(&url, &["migrations", "show", &id, "--json"]));
    assert_eq!(show["left_behind"].as_array().unwrap().len() as i64, left);

    let reverted = json_of(&ferry(
        &url,
        &["migrations", "revert", &id, "--yes", "--json"],
    ));
    assert_eq!(reverted["status"], "reverted", "{reverted}");
    assert_same(&before, &snapshot(&pool).await, "revert restores every row");
}

/// Migration ids of the database, newest first.
async fn latest_migration(pool: &PgPool) -> Option<(i64, String, i64)> {
    sqlx::query_as(
        "SELECT id, status, batches::bigint FROM ferry.migrations ORDER BY id DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await
    .ok()
    .flatten()
}

async fn wait_for_batches(pool: &PgPool, at_least: i64) -> i64 {
    let started = Instant::now();
    loop {
        let running: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM ferry.migrations WHERE status = 'running' AND batches >= $1",
        )
        .bind(at_least as i32)
        .fetch_optional(pool)
        .await
        .unwrap_or(None);
        if let Some(id) = running {
            return id;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn spawn_migrate(url: &str, g: &Generated, batch_rows: &str) -> Child {
    let mut args: Vec<String> = vec!["migrate".into()];
    args.extend(pair(g, g.evolution_inbox, g.cloud_inbox));
    args.extend([
        "--yes".into(),
        "--json".into(),
        "--batch-rows".into(),
        batch_rows.into(),
    ]);
    command(url, &args.iter().map(String::as_str).collect::<Vec<_>>())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ferry")
}

/// A run SIGKILLed mid-way is refused to others while its lease lives, then resumed to the same end state as an
/// uninterrupted run (compared on the same data: the uninterrupted run is reverted first).
pub async fn a_killed_run_resumes_to_the_same_end_state(db: Db) {
    assert_eq!(db, Db::Postgres);
    let (url, pool, g) = chatwoot(small()).await;
    let whole = json_of(&migrate(
        &url,
        &g,
        g.evolution_inbox,
        g.cloud_inbox,
        &["--yes", "--json", "--batch-rows", "40"],
    ));
    assert_eq!(whole["status"], "completed");
    let uninterrupted = end_state(&pool).await;
    let id = whole["id"].as_i64().unwrap().to_string();
    json_of(&ferry(
        &url,
        &["migrations", "revert", &id, "--yes", "--json"],
    ));

    let mut child = spawn_migrate(&url, &g, "40");
    let killed = wait_for_batches(&pool, 4).await;
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    let killed = killed.to_string();
    let (_, status, _) = latest_migration(&pool).await.unwrap();
    assert_eq!(
        status, "running",
        "a killed run stays running until its lease expires"
    );

    let early = ferry(&url, &["migrations", "resume", &killed]);
    assert_eq!(early.status.code(), Some(1));
    assert!(
        stderr(&early).contains("in another process"),
        "{}",
        stderr(&early)
    );
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let resumed = json_of(&ferry(&url, &["migrations", "resume", &killed, "--json"]));
    assert_eq!(resumed["status"], "completed", "{resumed}");
    assert_same(
        &uninterrupted,
        &end_state(&pool).await,
        "resumed run ends where an uninterrupted one does",
    );
    let verify = json_of(&ferry(&url, &["migrations", "verify", &killed, "--json"]));
    assert_eq!(verify["ok"], true, "{verify}");
}

/// A cancel stops the run at a batch boundary (the command exits non-zero saying how to resume); a second run on
/// the same inbox is refused while the first runs; resume finishes it.
pub async fn cancel_stops_at_a_batch_boundary_and_resume_finishes(db: Db) {
    assert_eq!(db, Db::Postgres);
    let (url, pool, g) = chatwoot(small()).await;
    let child = spawn_migrate(&url, &g, "20");
    let id = wait_for_batches(&pool, 2).await.to_string();
    let second = migrate(&url, &g, g.evolution_inbox, g.dialog_inbox, &["--yes"]);
    assert_eq!(second.status.code(), Some(1));
    assert!(
        stderr(&second).contains("already has a running migration"),
        "{}",
        stderr(&second)
    );
    let cancelled = ferry(&url, &["migrations", "cancel", &id]);
    assert!(cancelled.status.success(), "{}", stderr(&cancelled));
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("migrations resume"),
        "{}",
        stderr(&out)
    );
    let (_, status, _) = latest_migration(&pool).await.unwrap();
    assert_eq!(status, "cancelled");
    let moved = scalar(
        &pool,
        &format!(
            "SELECT count(*) FROM conversations WHERE inbox_id = {}",
            g.cloud_inbox
        ),
    )
    .await;
    assert!(moved > 0);
    // Even stopped mid-way, every batch committed whole: messages name their conversation's inbox.
    assert_eq!(messages_off_their_inbox(&pool).await, 0);
    let resumed = json_of(&ferry(&url, &["migrations", "resume", &id, "--json"]));
    assert_eq!(resumed["status"], "completed");
    let verify = json_of(&ferry(&url, &["migrations", "verify", &id, "--json"]));
    assert_eq!(verify["ok"], true, "{verify}");
}

/// Chatwoot keeps writing during the migration: new people in both inboxes, new messages in moved and unmoved
/// conversations (some with the inbox the conversation had when Chatwoot loaded it). Everything ends in the
/// destination and verify holds.
pub async fn chatwoot_writing_during_the_migration_is_carried(db: Db) {
    assert_eq!(db, Db::Postgres);
    let (url, pool, g) = chatwoot(small()).await;
    let (from, to) = (g.evolution_inbox, g.cloud_inbox);
    let last_source = scalar(
        &pool,
        &format!("SELECT max(id) FROM contact_inboxes WHERE inbox_id = {from}"),
    )
    .await;
    let mut child = spawn_migrate(&url, &g, "20");
    let mut writes = 0;
    let mut stale = 0;
    loop {
        let cursor: Option<i64> =
            sqlx::query_scalar("SELECT cursor FROM ferry.migrations ORDER BY id DESC LIMIT 1")
                .fetch_optional(&pool)
                .await
                .unwrap_or(None);
        if cursor.is_some_and(|c| c > last_source - 60) || child.try_wait().unwrap().is_some() {
            break;
        }
        writes += 1;
        for inbox in [from, to] {
            chatwoot_receives(&pool, &g, inbox, writes).await;
        }
        // A message from a conversation Chatwoot loaded before it moved: it names the source inbox.
        stale += sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO messages (content, account_id, inbox_id, conversation_id, message_type, created_at, \
                 updated_at, sender_type, sender_id) \
             SELECT 'late', c.account_id, {from}, c.id, 0, now(), now(), 'Contact', c.contact_id \
             FROM conversations c WHERE c.inbox_id = {to} ORDER BY c.id DESC LIMIT 1"
        )))
        .execute(&pool)
        .await
        .unwrap()
        .rows_affected();
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        writes > 2 && stale > 0,
        "the writer ran during the migration ({writes} writes, {stale} stale)"
    );
    let m: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = m["id"].as_i64().unwrap().to_string();
    let verify = json_of(&ferry(&url, &["migrations", "verify", &id, "--json"]));
    assert_eq!(verify["ok"], true, "{verify}");
    assert_eq!(
        scalar(
            &pool,
            &format!("SELECT count(*) FROM contacts WHERE name LIKE 'New % {from}'")
        )
        .await,
        writes,
        "new people were not lost"
    );
    assert_eq!(
        scalar(
            &pool,
            &format!(
                "SELECT count(*) FROM conversations c JOIN contacts ct ON ct.id = c.contact_id \
                 WHERE ct.name LIKE 'New % {from}' AND c.inbox_id = {to}"
            )
        )
        .await,
        writes,
        "the source's new people moved too"
    );
}

/// What Chatwoot does when a new person writes to `inbox`: a contact, a contact_inbox, a conversation, a message.
async fn chatwoot_receives(pool: &PgPool, g: &Generated, inbox: i64, n: i64) {
    let digits = format!("55819{}", 70_000_000 + n * 10 + (inbox % 10));
    let source_id = if inbox == g.evolution_inbox {
        format!("00000000-0000-4000-8000-{:012}", n * 100 + inbox)
    } else {
        digits.clone()
    };
    let sql = format!(
        "WITH ct AS (INSERT INTO contacts (account_id, name, phone_number, identifier, created_at, updated_at) \
             VALUES ({a}, 'New {n} {inbox}', '+{digits}', '{digits}@s.whatsapp.net', now(), now()) RETURNING id), \
         ci AS (INSERT INTO contact_inboxes (contact_id, inbox_id, source_id, created_at, updated_at) \
             SELECT id, {inbox}, '{source_id}', now(), now() FROM ct RETURNING id, contact_id), \
         cv AS (INSERT INTO conversations (account_id, inbox_id, contact_id, contact_inbox_id, created_at, updated_at) \
             SELECT {a}, {inbox}, contact_id, id, now(), now() FROM ci RETURNING id, contact_id) \
         INSERT INTO messages (content, account_id, inbox_id, conversation_id, message_type, created_at, updated_at, \
             sender_type, sender_id) SELECT 'hello', {a}, {inbox}, id, 0, now(), now(), 'Contact', contact_id FROM cv",
        a = g.account_id
    );
    if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
        .execute(pool)
        .await
    {
        panic!("{e}: {sql}");
    }
}

/// Verify catches a row broken by hand (a message left naming the source inbox) and exits non-zero naming the
/// check and the row.
pub async fn verify_catches_a_hand_broken_row(db: Db) {
    assert_eq!(db, Db::Postgres);
    let (url, pool, g) = chatwoot(small()).await;
    let m = json_of(&migrate(
        &url,
        &g,
        g.evolution_inbox,
        g.cloud_inbox,
        &["--yes", "--json"],
    ));
    let id = m["id"].as_i64().unwrap().to_string();
    let broken: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "UPDATE messages SET inbox_id = {} WHERE id = (SELECT min(id) FROM messages WHERE inbox_id = {}) \
         RETURNING id::bigint",
        g.evolution_inbox, g.cloud_inbox
    )))
    .fetch_one(&pool)
    .await
    .unwrap();
    let out = ferry(&url, &["migrations", "verify", &id]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("FAIL message_inbox"), "{text}");
    assert!(text.contains(&broken.to_string()), "{text}");
    assert!(stderr(&out).contains("check(s) failed"), "{}", stderr(&out));
}

/// A revert that a later migration would make inexact is refused naming it; in the right order both revert,
/// back to the snapshot before either.
pub async fn reverts_out_of_order_are_refused(db: Db) {
    assert_eq!(db, Db::Postgres);
    let (url, pool, g) = chatwoot(small()).await;
    let before = snapshot(&pool).await;
    let first = json_of(&migrate(
        &url,
        &g,
        g.evolution_inbox,
        g.cloud_inbox,
        &["--yes", "--json"],
    ));
    let second = json_of(&migrate(
        &url,
        &g,
        g.cloud_inbox,
        g.twilio_inbox,
        &["--yes", "--json"],
    ));
    assert_eq!(second["status"], "completed");
    let (first, second) = (first["id"].to_string(), second["id"].to_string());
    // Twilio's format: whatsapp:+<digits>.
    assert_eq!(
        scalar(
            &pool,
            &format!("SELECT count(*) FROM contact_inboxes WHERE inbox_id = {} AND source_id !~ '^whatsapp:\\+\\d+$'", g.twilio_inbox)
        )
        .await,
        0
    );
    let out = ferry(&url, &["migrations", "revert", &first, "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("revert {second} first")),
        "{}",
        stderr(&out)
    );
    json_of(&ferry(
        &url,
        &["migrations", "revert", &second, "--yes", "--json"],
    ));
    json_of(&ferry(
        &url,
        &["migrations", "revert", &first, "--yes", "--json"],
    ));
    assert_same(
        &before,
        &snapshot(&pool).await,
        "both reverts restore every row",
    );
}

/// A 360dialog inbox switched to Cloud in place keeps its conversations; the verify token is printed; the
/// revert restores the channel row.
pub async fn convert_provider_in_place_and_revert(db: Db) {
    assert_eq!(db, Db::Postgres);
    let (url, pool, g) = chatwoot(small()).await;
    let before = snapshot(&pool).await;
    let inbox = g.dialog_inbox.to_string();
    let missing = ferry(
        &url,
        &[
            "convert-provider",
            "--inbox",
            &inbox,
            "--to",
            "whatsapp_cloud",
            "--api-key",
            "EAAG",
            "--yes",
        ],
    );
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("--phone-number-id"),
        "{}",
        stderr(&missing)
    );
    let converted = json_of(&ferry(
        &url,
        &[
            "convert-provider",
            "--inbox",
            &inbox,
            "--to",
            "whatsapp_cloud",
            "--api-key",
            "EAAG",
            "--phone-number-id",
            "1234567890",
            "--business-account-id",
            "987654321",
            "--yes",
            "--json",
        ],
    ));
    let token = converted["webhook_verify_token"].as_str().unwrap();
    assert_eq!(token.len(), 32);
    let (provider, config): (String, Value) = sqlx::query_as(
        "SELECT w.provider, w.provider_config FROM channel_whatsapp w JOIN inboxes i ON i.channel_id = w.id \
         AND i.channel_type = 'Channel::Whatsapp' WHERE i.id = $1",
    )
    .bind(g.dialog_inbox)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(provider, "whatsapp_cloud");
    assert_eq!(config["phone_number_id"], "1234567890");
    assert_eq!(config["webhook_verify_token"], token);
    let check = json_of(&ferry(&url, &["check", "--json"]));
    assert!(
        check
            .to_string()
            .contains(&format!("\"id\":{inbox},\"kind\":\"whatsapp_cloud\"")),
        "{check}"
    );
    let again = ferry(
        &url,
        &[
            "convert-provider",
            "--inbox",
            &inbox,
            "--to",
            "whatsapp_cloud",
            "--api-key",
            "x",
            "--phone-number-id",
            "1",
            "--business-account-id",
            "2",
            "--yes",
        ],
    );
    assert!(
        stderr(&again).contains("already uses provider whatsapp_cloud"),
        "{}",
        stderr(&again)
    );
    let id = converted["migration"]["id"].to_string();
    json_of(&ferry(
        &url,
        &["migrations", "revert", &id, "--yes", "--json"],
    ));
    assert_same(
        &before,
        &snapshot(&pool).await,
        "the conversion's revert restores the channel",
    );
}

/// This module's tests, with the services they need beside the database.
pub fn suite() -> Vec<crate::Test> {
    [on_postgres!(
        [];
        a_move_merges_verifies_and_reverts_exactly,
        a_killed_run_resumes_to_the_same_end_state,
        cancel_stops_at_a_batch_boundary_and_resume_finishes,
        chatwoot_writing_during_the_migration_is_carried,
        verify_catches_a_hand_broken_row,
        reverts_out_of_order_are_refused,
        convert_provider_in_place_and_revert
    )]
    .concat()
}
