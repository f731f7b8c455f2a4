//! Capability C, account import (README: "Account import"): every stage and status, the failure rules and their next `/migrate`,
//! idempotency, forced re-migration, media, and both legacy sources (export directory; HTTP API + DynamoDB on
//! a real moto server).

use std::sync::Arc;

use async_trait::async_trait;
use ferry::account_import::envelope::{ConfigKey, generate_key};
use ferry::account_import::fake::FakeLegacyApi;
use ferry::account_import::generate::{self, AccountSpec, LegacyAccount};
use ferry::account_import::source::*;
use ferry::domain::Role;
use ferry::jobs::Outcome;
use ferry::services::Ferry;
use ferry::worker::Worker;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::helpers::{Db, TestApp, assert_error, spawn_app_with};

pub(crate) async fn scalar(app: &TestApp, sql: impl Into<String>) -> i64 {
    let sql = sqlx::AssertSqlSafe(sql.into());
    if app.database_url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
    } else {
        let pool = sqlx::SqlitePool::connect(&app.database_url).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
    }
}

/// A legacy system's export directory with these accounts.
pub(crate) struct Legacy {
    pub dir: TempDir,
    pub key: String,
    pub accounts: Vec<LegacyAccount>,
}

impl Legacy {
    pub fn new(specs: &[AccountSpec], media_url: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = generate_key();
        let sealer = ConfigKey::parse(&key).unwrap();
        let now = chrono::Utc::now().timestamp();
        let accounts: Vec<_> = specs
            .iter()
            .map(|s| generate::account(s, &sealer, now, media_url))
            .collect();
        generate::write_export(dir.path(), &accounts).unwrap();
        Self { dir, key, accounts }
    }

    pub fn write(&self) {
        generate::write_export(self.dir.path(), &self.accounts).unwrap();
    }

    pub fn path(&self, relative: &str) -> std::path::PathBuf {
        self.dir.path().join(relative)
    }
}

pub(crate) fn spec(legacy_ref: &str, threads: usize, messages: usize) -> AccountSpec {
    AccountSpec {
        legacy_ref: legacy_ref.into(),
        name: format!("Loja {legacy_ref}"),
        threads,
        messages_per_thread: messages,
        media_every: Some(10),
        // Four days apart: threads 0..=7 are inside the 30-day window.
        thread_spacing_seconds: 4 * 86_400,
    }
}

pub(crate) async fn export_app(
    db: Db,
    legacy: &Legacy,
    customize: impl FnOnce(&mut ferry::config::Config),
) -> TestApp {
    let dir = legacy.dir.path().to_owned();
    let key = legacy.key.clone();
    spawn_app_with(db, move |c| {
        c.legacy.export_dir = Some(dir);
        c.legacy.config_key = Some(key);
        c.legacy.recent_threads = 5;
        c.legacy.recent_messages = 4;
        c.lease_seconds = 2;
        customize(c);
    })
    .await
}

/// An account that maps to `legacy_ref`, with an administrator's token.
pub(crate) async fn account(app: &TestApp, legacy_ref: &str) -> (i64, String) {
    let account = app
        .ferry
        .create_account(&format!("Acct {legacy_ref}"), Some(legacy_ref))
        .await
        .unwrap();
    let token = app
        .user_with_token(
            account.id,
            &format!("admin@{legacy_ref}.test"),
            Role::Administrator,
            false,
        )
        .await;
    (account.id, token)
}

/// Runs queued imports on a worker of `ferry` until none is left.
async fn drain(ferry: &Ferry) -> Vec<Outcome> {
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let worker = Worker::new(ferry.clone());
    let mut outcomes = Vec::new();
    while let Some(outcome) = worker.run_import_once(shutdown.clone()).await.unwrap() {
        outcomes.push(outcome);
    }
    outcomes
}

/// The import status, as `migration-status` and as `check-migration-status` (the client app's name): the same.
async fn status(app: &TestApp, account: i64, token: &str, detail: bool) -> Value {
    let query = if detail { "?detail=true" } else { "" };
    let (code, body) = app
        .get(
            &format!("/api/v1/accounts/{account}/migration-status{query}"),
            Some(token),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let (code, alias) = app
        .get(
            &format!("/api/v1/accounts/{account}/check-migration-status{query}"),
            Some(token),
        )
        .await;
    assert_eq!(code, 200, "{alias}");
    assert_eq!(
        alias, body,
        "check-migration-status answers as migration-status"
    );
    body
}

pub(crate) async fn migrate(
    app: &TestApp,
    account: i64,
    token: &str,
    query: &str,
) -> (reqwest::StatusCode, Value) {
    app.post_json(
        &format!("/api/v1/accounts/{account}/migrate{query}"),
        Some(token),
        &json!({}),
    )
    .await
}

/// What the import should create for `a`: (threads, messages, attachments).
fn expected(a: &LegacyAccount) -> (i64, i64, i64) {
    let media = a
        .messages
        .values()
        .flatten()
        .map(|m| m.media.len())
        .sum::<usize>();
    (
        a.threads.len() as i64,
        a.message_count() as i64,
        media as i64,
    )
}

async fn imported_rows(app: &TestApp, account: i64) -> (i64, i64, i64) {
    (
        scalar(app, format!("SELECT COUNT(*) FROM conversations WHERE account_id = {account} AND legacy_thread_id IS NOT NULL")).await,
        scalar(app, format!("SELECT COUNT(*) FROM messages WHERE account_id = {account} AND legacy_message_id IS NOT NULL")).await,
        scalar(app, format!("SELECT COUNT(*) FROM attachments WHERE account_id = {account} AND import_id IS NOT NULL")).await,
    )
}

pub async fn import_runs_every_stage_once_and_is_idempotent(db: Db) {
    let mut legacy = Legacy::new(&[spec("loja-1", 12, 30)], "file://media/");
    // A web-widget channel: its messages are in ferry already; only their starred flag is imported.
    let sealer = ConfigKey::parse(&legacy.key).unwrap();
    let a = &mut legacy.accounts[0];
    a.channels.channels.push(LegacyChannel {
        channel_id: "loja-1-site".into(),
        kind: "web_widget".into(),
        name: "Site".into(),
        phone_number: None,
        config: sealer.seal("loja-1-site", &json!({"website": "https://loja.test"})),
    });
    let mut widget = a.threads[0].clone();
    widget.thread_id = "loja-1-site-t1".into();
    widget.channel_id = "loja-1-site".into();
    a.threads.push(widget);
    let mut starred = a.messages["loja-1-t000000"][0].clone();
    starred.thread_id = "loja-1-site-t1".into();
    starred.message_id = "site-m1".into();
    starred.starred = true;
    starred.media.clear();
    starred.external_id = Some("900001".into());
    a.messages.insert("loja-1-site-t1".into(), vec![starred]);
    legacy.write();
    let app = export_app(db, &legacy, |_| {}).await;
    let (account, token) = account(&app, "loja-1").await;
    // ferry's own web-widget message that the legacy widget message names.
    for sql in [
        format!(
            "INSERT INTO inboxes (id, account_id, name, channel_type) VALUES (900001, {account}, 'Chat', 'api')"
        ),
        format!(
            "INSERT INTO contacts (id, account_id, name) VALUES (900001, {account}, 'Visitante')"
        ),
        format!(
            "INSERT INTO conversations (id, account_id, inbox_id, contact_id, display_id) VALUES (900001, {account}, 900001, 900001, 900001)"
        ),
        format!(
            "INSERT INTO messages (id, account_id, conversation_id, message_type, content) VALUES (900001, {account}, 900001, 'incoming', 'oi do site')"
        ),
    ] {
        app.execute(sql).await;
    }
    let legacy_account = legacy.accounts[0].clone();
    let (threads, messages, files) = expected(&legacy_account);
    // The widget thread is not a conversation and its message is not imported.
    let (threads, messages) = (threads - 1, messages - 1);

    let (code, body) = app
        .get(&format!("/api/v1/accounts/{account}"), Some(&token))
        .await;
    assert_eq!(
        (code.as_u16(), body["migration_status"].as_str()),
        (200, Some("not-started")),
        "{body}"
    );
    let before = status(&app, account, &token, false).await;
    assert_eq!(before["status"], "not-started");
    assert_eq!(before["stage"], Value::Null);

    let (code, first) = migrate(&app, account, &token, "").await;
    assert_eq!(code, 202, "{first}");
    assert_eq!(first["status"], "migrating");
    assert_eq!(first["queued"], true);
    let (code, again) = migrate(&app, account, &token, "").await;
    assert_eq!(code, 202);
    assert_eq!(
        again["import_id"], first["import_id"],
        "a second /migrate returns the running import"
    );
    assert_eq!(again["queued"], false);

    assert_eq!(drain(&app.ferry).await, vec![Outcome::Completed]);
    let done = status(&app, account, &token, true).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["stage"], "done");
    if db == Db::Postgres {
        // The import refreshed the planner's statistics of the tables it filled (a never-analyzed table has
        // reltuples -1, and autovacuum does not run within a test): without them PostgreSQL scans them.
        let analyzed = scalar(
            &app,
            "SELECT COUNT(*) FROM pg_class WHERE relname IN ('conversations', 'contacts', 'contact_inboxes') \
             AND relkind = 'r' AND reltuples > 0",
        )
        .await;
        assert_eq!(analyzed, 3);
    }
    assert_eq!(
        done["counts"],
        json!({"channels": 3, "threads": threads, "messages": messages, "attachments": files, "attachments_failed": 0})
    );
    let import = &done["import"];
    let at = |k: &str| chrono::DateTime::parse_from_rfc3339(import[k].as_str().unwrap()).unwrap();
    assert!(
        at("channels_migrated_at") <= at("recent_migrated_at")
            && at("recent_migrated_at") <= at("completed_at")
    );
    assert_eq!(
        imported_rows(&app, account).await,
        (threads, messages, files)
    );
    assert_eq!(
        scalar(
            &app,
            "SELECT COUNT(*) FROM messages WHERE id = 900001 AND starred = TRUE"
        )
        .await,
        1,
        "the widget message's starred flag was applied to ferry's message"
    );
    // Channels became inboxes keyed by legacy id, their configs re-encrypted under ferry's key.
    let inboxes = app.ferry.store.list_inboxes(account).await.unwrap();
    let evolution = inboxes
        .iter()
        .find(|i| i.legacy_channel_id.as_deref() == Some("loja-1-evolution"))
        .unwrap();
    assert_eq!(evolution.channel.as_str(), "evolution");
    let config = ferry::store::open_provider_config(&app.ferry.cipher, evolution)
        .unwrap()
        .unwrap();
    assert_eq!(config["instance_name"], "loja-1-principal");
    // Contacts by canonical identity, with native source ids; conversations keep the legacy status.
    assert_eq!(
        scalar(&app, format!("SELECT COUNT(*) FROM contact_inboxes ci JOIN inboxes i ON i.id = ci.inbox_id \
            WHERE i.account_id = {account} AND i.channel_type = 'evolution' AND ci.source_id LIKE '%@s.whatsapp.net'")).await,
        6
    );
    assert_eq!(
        scalar(&app, format!("SELECT COUNT(*) FROM conversations WHERE account_id = {account} AND status = 'resolved'")).await,
        4
    );
    // Recent stage first: the newest threads' latest 4 messages were written before any older history.
    let recent_max: i64 = scalar(&app, format!(
        "SELECT MAX(id) FROM messages WHERE account_id = {account} AND legacy_message_id IN \
         ('loja-1-t000000-m00029', 'loja-1-t000001-m00029', 'loja-1-t000002-m00029', 'loja-1-t000003-m00029')")).await;
    let history_min: i64 = scalar(&app, format!(
        "SELECT id FROM messages WHERE account_id = {account} AND legacy_message_id = 'loja-1-t000000-m00000'")).await;
    assert!(
        recent_max < history_min,
        "the recent stage ran before the history"
    );
    // …and a conversation still lists its messages newest first.
    let conversation = scalar(&app, format!("SELECT id FROM conversations WHERE legacy_thread_id = 'loja-1-t000000' AND account_id = {account}")).await;
    let (_, listed) = app
        .get(
            &format!("/api/v1/accounts/{account}/conversations/{conversation}/messages?limit=5"),
            Some(&token),
        )
        .await;
    let first: Vec<_> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    let newest = scalar(&app, format!("SELECT id FROM messages WHERE legacy_message_id = 'loja-1-t000000-m00029' AND account_id = {account}")).await;
    assert_eq!(first[0], newest, "{listed}");
    let (_, older) = app.get(&format!("/api/v1/accounts/{account}/conversations/{conversation}/messages?limit=30&before={}", first[4]), Some(&token)).await;
    assert_eq!(
        older["data"].as_array().unwrap().len(),
        25,
        "the rest, once each"
    );
    assert_eq!(older["data"][24]["id"], history_min, "the oldest last");

    // Media: placeholders whose downloads run in the background.
    assert_eq!(
        scalar(&app, format!("SELECT COUNT(*) FROM attachments WHERE account_id = {account} AND status = 'pending'")).await,
        files
    );
    ferry::webhooks::media::run_due(&app.ferry, "test", &|| false)
        .await
        .unwrap();
    assert_eq!(
        scalar(
            &app,
            format!(
                "SELECT COUNT(*) FROM attachments WHERE account_id = {account} AND status = 'ready'"
            )
        )
        .await,
        files
    );

    // Every stage again (channels, recent, all) creates nothing twice.
    app.execute(format!(
        "UPDATE account_imports SET status = 'queued', stage = 'channels', recent_cursor = NULL, all_cursor = NULL WHERE account_id = {account}"
    ))
    .await;
    assert_eq!(drain(&app.ferry).await, vec![Outcome::Completed]);
    assert_eq!(
        imported_rows(&app, account).await,
        (threads, messages, files)
    );
    assert_eq!(
        app.ferry.store.list_inboxes(account).await.unwrap().len(),
        inboxes.len()
    );
    assert_eq!(
        status(&app, account, &token, false).await["counts"]["messages"],
        messages
    );

    // The CLI shows the real status; a not-needed account fails with one line.
    let out = app.cli_with_env(
        &["import", "status", &account.to_string(), "--json"],
        &[
            (
                "FERRY_LEGACY_EXPORT_DIR",
                legacy.dir.path().to_str().unwrap(),
            ),
            ("FERRY_LEGACY_CONFIG_KEY", &legacy.key),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["status"], "completed");
    let (stranger, _) = self::account(&app, "nobody-knows").await;
    let out = app.cli_with_env(
        &["import", "account", &stranger.to_string()],
        &[
            (
                "FERRY_LEGACY_EXPORT_DIR",
                legacy.dir.path().to_str().unwrap(),
            ),
            ("FERRY_LEGACY_CONFIG_KEY", &legacy.key),
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("does not know this account"), "{stderr}");
}

pub async fn cli_imports_an_account_through_every_stage(db: Db) {
    let legacy = Legacy::new(&[spec("cli-1", 9, 12)], "file://media/");
    let app = export_app(db, &legacy, |_| {}).await;
    let (account, _) = account(&app, "cli-1").await;
    let out = app.cli_with_env(
        &["import", "account", &account.to_string(), "--json"],
        &[
            (
                "FERRY_LEGACY_EXPORT_DIR",
                legacy.dir.path().to_str().unwrap(),
            ),
            ("FERRY_LEGACY_CONFIG_KEY", &legacy.key),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let view: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(view["status"], "completed");
    assert_eq!(view["counts"]["messages"], 9 * 12);
    assert_eq!(
        imported_rows(&app, account).await,
        expected(&legacy.accounts[0])
    );
}

pub async fn each_failure_stage_has_its_status_and_its_next_migrate(db: Db) {
    let legacy = Legacy::new(&[spec("f-1", 10, 6), spec("f-2", 10, 6)], "file://media/");
    let app = export_app(db, &legacy, |c| c.legacy.repair_base_seconds = 0).await;
    let (account, token) = account(&app, "f-1").await;
    let channels = legacy.path("channels/f-1.json");
    let good_channels = std::fs::read_to_string(&channels).unwrap();

    // 1. A config that does not decrypt fails the channels stage; the next /migrate starts from scratch.
    let mut tampered: Value = serde_json::from_str(&good_channels).unwrap();
    tampered["channels"][1]["config"] = tampered["channels"][0]["config"].clone();
    std::fs::write(&channels, tampered.to_string()).unwrap();
    let first = migrate(&app, account, &token, "").await.1["import_id"]
        .as_i64()
        .unwrap();
    assert_eq!(drain(&app.ferry).await, vec![Outcome::Failed]);
    let failed = status(&app, account, &token, true).await;
    assert_eq!(failed["status"], "channel-failure", "{failed}");
    assert!(
        failed["import"]["error_message"]
            .as_str()
            .unwrap()
            .contains("does not decrypt"),
        "{failed}"
    );
    assert_eq!(
        app.ferry.store.list_inboxes(account).await.unwrap().len(),
        0,
        "nothing half-written"
    );
    std::fs::write(&channels, &good_channels).unwrap();

    // 2. The threads index breaks during the recent stage: recent-messages-failure; the next /migrate resumes
    //    the same import at the recent stage.
    let threads = legacy.path("threads/f-1.jsonl");
    let good_threads = std::fs::read_to_string(&threads).unwrap();
    std::fs::write(&threads, format!("{good_threads}{{not json\n")).unwrap();
    let (code, restarted) = migrate(&app, account, &token, "").await;
    assert_eq!(code, 202);
    let second = restarted["import_id"].as_i64().unwrap();
    assert_ne!(
        second, first,
        "after channel-failure the import restarts from scratch"
    );
    assert_eq!(restarted["status"], "migrating");
    assert_eq!(drain(&app.ferry).await, vec![Outcome::Failed]);
    let failed = status(&app, account, &token, false).await;
    assert_eq!(failed["status"], "recent-messages-failure");
    assert_eq!(failed["counts"]["channels"], 2);
    assert_eq!(
        app.ferry.store.list_inboxes(account).await.unwrap().len(),
        2
    );
    std::fs::write(&threads, &good_threads).unwrap();

    // 3. An old thread's messages break during the history: messages-failure, which the client sees as
    //    completed; the CLI lists it.
    let old = legacy.path("messages/f-1-t000009.jsonl");
    let good_old = std::fs::read_to_string(&old).unwrap();
    std::fs::write(&old, "{broken\n").unwrap();
    let (_, resumed) = migrate(&app, account, &token, "").await;
    assert_eq!(
        resumed["import_id"], second,
        "recent-messages-failure resumes the same import"
    );
    assert_eq!(resumed["status"], "channels-migrated");
    assert_eq!(resumed["stage"], "recent");
    assert_eq!(drain(&app.ferry).await, vec![Outcome::Failed]);
    let client = status(&app, account, &token, false).await;
    assert_eq!(
        client["status"], "completed",
        "messages-failure is completed to the client"
    );
    let (_, shown) = app
        .get(&format!("/api/v1/accounts/{account}"), Some(&token))
        .await;
    assert_eq!(shown["migration_status"], "completed");
    let admin = status(&app, account, &token, true).await;
    assert_eq!(admin["status"], "messages-failure");
    assert!(admin["import"]["next_repair_at"].is_string(), "{admin}");
    let env = [
        (
            "FERRY_LEGACY_EXPORT_DIR",
            legacy.dir.path().to_str().unwrap(),
        ),
        ("FERRY_LEGACY_CONFIG_KEY", legacy.key.as_str()),
    ];
    let out = app.cli_with_env(&["import", "failures", "--json"], &env);
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["account_id"], account);
    let recent_only = imported_rows(&app, account).await;
    assert!(recent_only.1 > 0 && recent_only.1 < 60, "{recent_only:?}");

    // 4. Repaired from the CLI once the data is fixed: completed, nothing twice.
    std::fs::write(&old, &good_old).unwrap();
    let out = app.cli_with_env(&["import", "repair", &account.to_string(), "--json"], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = status(&app, account, &token, true).await;
    assert_eq!(after["status"], "completed");
    assert_eq!(after["import"]["id"], second);
    assert_eq!(
        imported_rows(&app, account).await,
        expected(&legacy.accounts[0])
    );

    // 5. The periodic repair job retries a messages-failure by itself once its backoff has passed.
    let (other, other_token) = self::account(&app, "f-2").await;
    let broken = legacy.path("messages/f-2-t000008.jsonl");
    let good = std::fs::read_to_string(&broken).unwrap();
    std::fs::write(&broken, "{broken\n").unwrap();
    migrate(&app, other, &other_token, "").await;
    assert_eq!(drain(&app.ferry).await, vec![Outcome::Failed]);
    assert_eq!(
        ferry::account_import::run_due_repairs(&app.ferry)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        drain(&app.ferry).await,
        vec![Outcome::Failed],
        "still broken: failed again"
    );
    let again = status(&app, other, &other_token, true).await;
    assert_eq!(again["import"]["repair_attempts"], 1, "{again}");
    std::fs::write(&broken, good).unwrap();
    app.execute(format!("UPDATE account_imports SET next_repair_at = '2000-01-01T00:00:00Z' WHERE account_id = {other}")).await;
    assert_eq!(
        ferry::account_import::run_due_repairs(&app.ferry)
            .await
            .unwrap(),
        1
    );
    assert_eq!(drain(&app.ferry).await, vec![Outcome::Completed]);
    assert_eq!(
        status(&app, other, &other_token, true).await["status"],
        "completed"
    );
    assert_eq!(
        imported_rows(&app, other).await,
        expected(&legacy.accounts[1])
    );
    assert_eq!(
        ferry::account_import::run_due_repairs(&app.ferry)
            .await
            .unwrap(),
        0
    );
}

/// Every other page comes back empty with a cursor, as DynamoDB may answer.
struct EmptyPages(Arc<dyn LegacySource>);

fn split(cursor: Option<&str>) -> Option<Option<String>> {
    match cursor {
        Some(c) if c.starts_with("E:") => Some(Some(c[2..].to_owned()).filter(|c| !c.is_empty())),
        _ => None,
    }
}

fn empty<T>(cursor: Option<&str>) -> Page<T> {
    Page {
        items: Vec::new(),
        next: Some(format!("E:{}", cursor.unwrap_or_default())),
    }
}

#[async_trait]
impl LegacySource for EmptyPages {
    fn kind(&self) -> &'static str {
        "empty-pages"
    }
    async fn account_exists(&self, r: &str) -> Result<bool, SourceError> {
        self.0.account_exists(r).await
    }
    async fn channels(&self, r: &str) -> Result<ConfigsAnswer, SourceError> {
        self.0.channels(r).await
    }
    async fn recent_threads_page(
        &self,
        r: &str,
        since: i64,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<LegacyThread>, SourceError> {
        match split(cursor) {
            Some(inner) => {
                self.0
                    .recent_threads_page(r, since, inner.as_deref(), limit)
                    .await
            }
            None => Ok(empty(cursor)),
        }
    }
    async fn threads_page(
        &self,
        r: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<LegacyThread>, SourceError> {
        match split(cursor) {
            Some(inner) => self.0.threads_page(r, inner.as_deref(), limit.min(3)).await,
            None => Ok(empty(cursor)),
        }
    }
    async fn messages_page(
        &self,
        t: &str,
        cursor: Option<&str>,
        limit: usize,
        newest_first: bool,
    ) -> Result<Page<LegacyMessage>, SourceError> {
        match split(cursor) {
            Some(inner) => {
                self.0
                    .messages_page(t, inner.as_deref(), limit.min(4), newest_first)
                    .await
            }
            None => Ok(empty(cursor)),
        }
    }
    async fn media(&self, url: &str) -> Result<(Vec<u8>, Option<String>), MediaError> {
        self.0.media(url).await
    }
}

pub async fn empty_pages_with_a_cursor_are_followed(db: Db) {
    let legacy = Legacy::new(&[spec("e-1", 11, 9)], "file://media/");
    let app = export_app(db, &legacy, |_| {}).await;
    let (account, token) = account(&app, "e-1").await;
    let mut ferry = app.ferry.clone();
    ferry.legacy = Some(Arc::new(EmptyPages(app.ferry.legacy.clone().unwrap())));
    migrate(&app, account, &token, "").await;
    assert_eq!(drain(&ferry).await, vec![Outcome::Completed]);
    assert_eq!(
        imported_rows(&app, account).await,
        expected(&legacy.accounts[0])
    );
    let view = status(&app, account, &token, false).await;
    assert_eq!(view["counts"]["threads"], 11);
}

pub async fn a_killed_worker_process_resumes_the_history_without_duplicates(db: Db) {
    let legacy = Legacy::new(
        &[AccountSpec {
            media_every: None,
            ..spec("k-1", 400, 40)
        }],
        "file://media/",
    );
    let app = export_app(db, &legacy, |_| {}).await;
    let (account, token) = account(&app, "k-1").await;
    migrate(&app, account, &token, "").await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("worker")
        .env("FERRY_DATABASE_URL", &app.database_url)
        .env("FERRY_DATA_DIR", app.dir.path())
        .env("FERRY_SECRET_KEY", &app.secret_key)
        .env("FERRY_LEGACY_EXPORT_DIR", legacy.dir.path())
        .env("FERRY_LEGACY_CONFIG_KEY", &legacy.key)
        .env("FERRY_LEASE_SECONDS", "1")
        .env("FERRY_IMPORT_MAX_MESSAGES_PER_SECOND", "4000")
        .env("FERRY_LOG", "warn")
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let import = app
            .ferry
            .store
            .latest_account_import(account)
            .await
            .unwrap()
            .unwrap();
        if import.stage == ferry::store::ImportStage::All && import.messages_count > 2000 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the worker never got into the history: {import:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // SIGKILL: no chance to release anything.
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = app
        .ferry
        .store
        .latest_account_import(account)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (killed.status.as_str(), killed.stage.as_str()),
        ("running", "all")
    );
    assert!(
        killed.messages_count < 16_000,
        "killed half-way: {killed:?}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    assert_eq!(drain(&app.ferry).await, vec![Outcome::Completed]);
    let done = app
        .ferry
        .store
        .latest_account_import(account)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.id, killed.id);
    assert_eq!(done.attempts, 2, "taken over once");
    assert_eq!(done.messages_count, 16_000);
    assert_eq!(imported_rows(&app, account).await, (400, 16_000, 0));
    assert_eq!(
        scalar(&app, format!("SELECT COUNT(DISTINCT legacy_message_id) FROM messages WHERE account_id = {account}")).await,
        16_000
    );
}

pub async fn forced_remigration_deletes_only_what_imports_created(db: Db) {
    let legacy = Legacy::new(&[spec("r-1", 6, 5)], "file://media/");
    let strict = export_app(db, &legacy, |_| {}).await;
    let (account, token) = account(&strict, "r-1").await;
    migrate(&strict, account, &token, "").await;
    drain(&strict.ferry).await;
    assert_error(
        &migrate(&strict, account, &token, "?force=true").await,
        403,
        "force_disabled",
    );

    let app = export_app(db, &legacy, |c| c.legacy.allow_force_remigration = true).await;
    let (account, token) = self::account(&app, "r-1").await;
    let agent = app
        .user_with_token(account, "agent@r-1.test", Role::Agent, false)
        .await;
    migrate(&app, account, &token, "").await;
    assert_eq!(drain(&app.ferry).await, vec![Outcome::Completed]);
    let full = expected(&legacy.accounts[0]);
    assert_eq!(imported_rows(&app, account).await, full);
    // ferry's own rows: a message that arrived in an imported conversation, and a conversation of its own in
    // an imported inbox.
    let conversation = scalar(
        &app,
        format!("SELECT MIN(id) FROM conversations WHERE account_id = {account}"),
    )
    .await;
    let inbox = scalar(
        &app,
        format!("SELECT inbox_id FROM conversations WHERE id = {conversation}"),
    )
    .await;
    for sql in [
        format!(
            "INSERT INTO messages (id, account_id, conversation_id, message_type, content) VALUES (800001, {account}, {conversation}, 'incoming', 'chegou depois')"
        ),
        format!("INSERT INTO contacts (id, account_id, name) VALUES (800001, {account}, 'Nova')"),
        format!(
            "INSERT INTO conversations (id, account_id, inbox_id, contact_id, display_id) VALUES (800001, {account}, {inbox}, 800001, 800001)"
        ),
        format!(
            "INSERT INTO messages (id, account_id, conversation_id, message_type, content) VALUES (800002, {account}, 800001, 'outgoing', 'nativa')"
        ),
    ] {
        app.execute(sql).await;
    }
    // …and an agent's note on an imported customer whose conversation goes.
    let noted = scalar(&app, format!("SELECT contact_id FROM conversations WHERE account_id = {account} AND id <> {conversation} ORDER BY id DESC LIMIT 1")).await;
    app.execute(format!("INSERT INTO contact_notes (account_id, contact_id, content) VALUES ({account}, {noted}, 'cliente VIP')")).await;
    assert_error(
        &migrate(&app, account, &agent, "?force=true").await,
        403,
        "forbidden",
    );
    let (code, forced) = migrate(&app, account, &token, "?force=true").await;
    assert_eq!(code, 202, "{forced}");
    assert_eq!(forced["status"], "migrating");
    // Before the new import runs: the imported rows are gone, ferry's own are all there.
    assert_eq!(
        imported_rows(&app, account).await,
        (1, 0, 0),
        "only the conversation holding a native message stays"
    );
    assert_eq!(
        scalar(
            &app,
            "SELECT COUNT(*) FROM messages WHERE id IN (800001, 800002)"
        )
        .await,
        2
    );
    assert_eq!(
        scalar(&app, "SELECT COUNT(*) FROM conversations WHERE id = 800001").await,
        1
    );
    assert_eq!(
        scalar(
            &app,
            format!("SELECT COUNT(*) FROM contacts WHERE id = {noted}")
        )
        .await,
        1,
        "a contact with a note stays"
    );
    assert_eq!(
        scalar(
            &app,
            "SELECT COUNT(*) FROM contact_notes WHERE content = 'cliente VIP'"
        )
        .await,
        1
    );
    let kept = app.ferry.store.list_inboxes(account).await.unwrap();
    assert_eq!(
        kept.iter().map(|i| i.id).collect::<Vec<_>>(),
        vec![inbox],
        "the imported inbox that ferry's conversations use is kept, the other one is deleted"
    );
    let audit = app.ferry.store.list_audit(account, 10).await.unwrap();
    let event = audit
        .iter()
        .find(|e| e.action == "account_import.forced")
        .expect("audited");
    assert_eq!(event.details["deleted"]["messages"], full.1);
    assert_eq!(event.details["deleted"]["conversations_kept"], 1);

    assert_eq!(drain(&app.ferry).await, vec![Outcome::Completed]);
    assert_eq!(
        imported_rows(&app, account).await,
        full,
        "imported again, once"
    );
    assert_eq!(
        app.ferry.store.list_inboxes(account).await.unwrap().len(),
        2
    );
    assert_eq!(
        scalar(
            &app,
            "SELECT COUNT(*) FROM messages WHERE id IN (800001, 800002)"
        )
        .await,
        2
    );
    assert_eq!(
        status(&app, account, &token, false).await["counts"]["messages"],
        full.1
    );
}

/// `moto_server` on a free loopback port, stopped on drop.
pub(crate) struct Moto {
    child: std::process::Child,
    pub url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn moto_available() -> Result<(), String> {
    match std::process::Command::new("moto_server")
        .arg("--help")
        .output()
    {
        Ok(out) if out.status.success() => Ok(()),
        _ => Err("no moto_server on PATH (pip install 'moto[server]')".into()),
    }
}

pub(crate) async fn moto() -> Moto {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start moto_server");
    let url = format!("http://127.0.0.1:{port}");
    let moto = Moto { child, url };
    for _ in 0..200 {
        if reqwest::get(format!("{}/moto-api/", moto.url))
            .await
            .is_ok()
        {
            return moto;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("moto_server did not start at {}", moto.url);
}

pub async fn dynamodb_source_imports_with_media_tokens(db: Db) {
    let moto = moto().await;
    // SAFETY: set before any thread reads them in this test's process; every test uses the same values.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    }
    let secret = b"media-secret";
    let legacy = Legacy::new(&[spec("d-1", 14, 25)], "placeholder/");
    let api = FakeLegacyApi::start(
        legacy.dir.path().to_owned(),
        Some("legacy-token".into()),
        secret,
    )
    .await
    .unwrap();
    // The DynamoDB copy names media by the fake media service's URL; one file is missing there.
    let mut accounts = legacy.accounts.clone();
    for list in accounts[0].messages.values_mut() {
        for m in list {
            for f in &mut m.media {
                f.url = f.url.replace("placeholder/", &api.media_url());
            }
        }
    }
    let missing = accounts[0].messages["d-1-t000003"][9].media[0].url.clone();
    std::fs::remove_file(legacy.path(&format!("media/{}", missing.rsplit('/').next().unwrap())))
        .unwrap();
    let settings = ferry_legacy_dynamodb::Settings {
        endpoint: Some(moto.url.clone()),
        region: "us-east-1".into(),
        threads_table: "threads".into(),
        messages_table: "messages".into(),
    };
    let dynamo = ferry_legacy_dynamodb::LegacyDynamo::connect(&settings).await;
    generate::load_dynamodb(&dynamo, &accounts, true)
        .await
        .unwrap();

    let configure = |c: &mut ferry::config::Config, media_secret: &str| {
        c.legacy.api_url = Some(api.url.clone());
        c.legacy.api_token = Some("legacy-token".into());
        c.legacy.config_key = Some(legacy.key.clone());
        c.legacy.dynamodb_endpoint = Some(moto.url.clone());
        c.legacy.media_jwt_secret = Some(media_secret.into());
        c.legacy.recent_threads = 5;
        c.legacy.recent_messages = 4;
    };
    // First with a wrong media secret: the import completes, the files fail with the reason.
    let app = spawn_app_with(db, |c| configure(c, "wrong-secret")).await;
    let (account, token) = account(&app, "d-1").await;
    let (_, shown) = app
        .get(&format!("/api/v1/accounts/{account}"), Some(&token))
        .await;
    assert_eq!(shown["migration_status"], "not-started");
    migrate(&app, account, &token, "").await;
    assert_eq!(drain(&app.ferry).await, vec![Outcome::Completed]);
    let full = expected(&accounts[0]);
    assert_eq!(imported_rows(&app, account).await, full);
    ferry::webhooks::media::run_due(&app.ferry, "test", &|| false)
        .await
        .unwrap();
    let view = status(&app, account, &token, false).await;
    assert_eq!(
        view["status"], "completed",
        "attachment failures never fail a stage"
    );
    assert_eq!(view["counts"]["attachments_failed"], full.2, "{view}");
    assert!(
        scalar(&app, "SELECT COUNT(*) FROM attachments WHERE failure_reason LIKE '%refused the token (HTTP 401)%'").await == full.2
    );

    // The right secret, then `ferry import retry-attachments`: all but the missing file arrive.
    let mut fixed = app.ferry.clone();
    let mut config = (*app.ferry.config).clone();
    configure(&mut config, "media-secret");
    fixed.legacy = ferry::account_import::open_source(&config).await;
    let env = [
        ("FERRY_LEGACY_API_URL", api.url.as_str()),
        ("FERRY_LEGACY_DYNAMODB_ENDPOINT", moto.url.as_str()),
        ("FERRY_LEGACY_CONFIG_KEY", legacy.key.as_str()),
    ];
    let out = app.cli_with_env(
        &[
            "import",
            "retry-attachments",
            &account.to_string(),
            "--json",
        ],
        &env,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["queued"],
        full.2
    );
    ferry::webhooks::media::run_due(&fixed, "test", &|| false)
        .await
        .unwrap();
    let view = status(&app, account, &token, false).await;
    assert_eq!(view["counts"]["attachments_failed"], 1, "{view}");
    let reason: i64 = scalar(&app, "SELECT COUNT(*) FROM attachments WHERE status = 'failed' AND failure_reason LIKE '%missing%'").await;
    assert_eq!(reason, 1);
    let bytes = app
        .ferry
        .attachments
        .get(&sqlx_first_key(&app).await)
        .await
        .unwrap();
    assert!(
        bytes.starts_with(b"JPEG d-1-t"),
        "the file's bytes were stored"
    );
}

/// The storage key of the first stored attachment.
pub(crate) async fn sqlx_first_key(app: &TestApp) -> String {
    let sql = "SELECT storage_key FROM attachments WHERE status = 'ready' ORDER BY id LIMIT 1";
    if app.database_url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
    } else {
        let pool = sqlx::SqlitePool::connect(&app.database_url).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
    }
}

pub async fn legacy_existence_is_asked_once_and_outages_are_errors(db: Db) {
    let legacy = Legacy::new(&[spec("known", 2, 2)], "file://media/");
    let api = FakeLegacyApi::start(legacy.dir.path().to_owned(), Some("t".into()), b"s")
        .await
        .unwrap();
    let app = spawn_app_with(db, |c| {
        c.legacy.api_url = Some(api.url.clone());
        c.legacy.api_token = Some("t".into());
        c.legacy.api_timeout_seconds = 1;
        c.legacy.dynamodb_endpoint = Some("http://127.0.0.1:9".into());
    })
    .await;
    let (known, known_token) = account(&app, "known").await;
    let (unknown, unknown_token) = account(&app, "unknown").await;
    let (later, later_token) = account(&app, "known-later").await;
    let get = |id: i64, token: String| {
        let app = &app;
        async move {
            app.get(&format!("/api/v1/accounts/{id}"), Some(&token))
                .await
        }
    };
    assert_eq!(
        get(known, known_token.clone()).await.1["migration_status"],
        "not-started"
    );
    assert_eq!(
        get(unknown, unknown_token.clone()).await.1["migration_status"],
        "not-needed"
    );
    let asked = api
        .switches
        .requests
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        get(unknown, unknown_token.clone()).await.1["migration_status"],
        "not-needed"
    );
    assert_eq!(
        api.switches
            .requests
            .load(std::sync::atomic::Ordering::Relaxed),
        asked,
        "asked once, then remembered"
    );
    assert_error(
        &migrate(&app, unknown, &unknown_token, "").await,
        409,
        "not_needed",
    );

    // A 500 and a timeout are errors, and nothing is remembered.
    api.switches
        .accounts_status
        .store(500, std::sync::atomic::Ordering::Relaxed);
    assert_error(
        &get(later, later_token.clone()).await,
        503,
        "legacy_unavailable",
    );
    assert_error(
        &app.get(
            &format!("/api/v1/accounts/{later}/migration-status"),
            Some(&later_token),
        )
        .await,
        503,
        "legacy_unavailable",
    );
    api.switches
        .accounts_status
        .store(0, std::sync::atomic::Ordering::Relaxed);
    api.switches
        .delay_ms
        .store(3000, std::sync::atomic::Ordering::Relaxed);
    assert_error(
        &get(later, later_token.clone()).await,
        503,
        "legacy_unavailable",
    );
    api.switches
        .delay_ms
        .store(0, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        scalar(
            &app,
            format!(
                "SELECT COUNT(*) FROM accounts WHERE id = {later} AND migration_status IS NULL"
            )
        )
        .await,
        1
    );
    // known-later is not in the export: once the legacy system answers, it is not-needed.
    assert_eq!(
        get(later, later_token).await.1["migration_status"],
        "not-needed"
    );
    // Agents may start their account's import but not see the administrators' detail.
    let agent = app
        .user_with_token(known, "agent@known.test", Role::Agent, false)
        .await;
    assert_error(
        &app.get(
            &format!("/api/v1/accounts/{known}/migration-status?detail=true"),
            Some(&agent),
        )
        .await,
        403,
        "forbidden",
    );
    let (code, _) = migrate(&app, known, &agent, "").await;
    assert_eq!(code, 202);
}

pub async fn a_long_history_gives_way_to_another_accounts_first_stages(db: Db) {
    let legacy = Legacy::new(
        &[
            AccountSpec {
                media_every: None,
                ..spec("y-1", 600, 2)
            },
            spec("y-2", 3, 2),
        ],
        "file://media/",
    );
    let app = export_app(db, &legacy, |_| {}).await;
    let (first, first_token) = account(&app, "y-1").await;
    let (second, second_token) = account(&app, "y-2").await;
    migrate(&app, first, &first_token, "").await;
    migrate(&app, second, &second_token, "").await;
    // One worker: the first import pauses after a history batch, the second runs all its stages, then the
    // first resumes where it paused.
    assert_eq!(
        drain(&app.ferry).await,
        vec![Outcome::Released, Outcome::Completed, Outcome::Completed]
    );
    let a = app
        .ferry
        .store
        .latest_account_import(first)
        .await
        .unwrap()
        .unwrap();
    let b = app
        .ferry
        .store
        .latest_account_import(second)
        .await
        .unwrap()
        .unwrap();
    assert!(
        b.completed_at < a.completed_at,
        "the second account was done first"
    );
    assert!(b.completed_at > a.recent_migrated_at);
    assert_eq!(
        imported_rows(&app, first).await,
        expected(&legacy.accounts[0])
    );
    assert_eq!(
        imported_rows(&app, second).await,
        expected(&legacy.accounts[1])
    );
    assert_eq!(a.messages_count, 1200);
}

/// This module's tests, with the services they need beside the database.
pub fn suite() -> Vec<crate::Test> {
    [
        on_both_databases!(
            [];
            import_runs_every_stage_once_and_is_idempotent,
            cli_imports_an_account_through_every_stage,
            each_failure_stage_has_its_status_and_its_next_migrate,
            empty_pages_with_a_cursor_are_followed,
            a_killed_worker_process_resumes_the_history_without_duplicates,
            forced_remigration_deletes_only_what_imports_created,
            legacy_existence_is_asked_once_and_outages_are_errors,
            a_long_history_gives_way_to_another_accounts_first_stages,
        ),
        on_both_databases!([crate::Service::Moto]; dynamodb_source_imports_with_media_tokens),
    ]
    .concat()
}
