//! Faults and inputs that one database accepts and the other refuses (issue 17).

use serde_json::json;

use crate::helpers::{Db, TestApp, spawn_app};
use crate::webhooks::{connected, post_raw, upsert};

async fn column(app: &TestApp, sql: &str) -> Vec<String> {
    app.texts(sql).await.into_iter().flatten().collect()
}

/// Item 7: a NUL character in the text and a provider id of 3,000 bytes (PostgreSQL refuses the first in text
/// and the second in a unique index) are stored on both databases alike, de-duplicated, and what was changed is
/// recorded on the message; a receipt naming the long id still finds it.
pub async fn nul_text_and_long_provider_ids_are_stored_alike(db: Db) {
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    let hook = connected(
        &app,
        &f,
        "evolution",
        json!({"provider": "evolution", "instance_name": "clinica-sp"}),
    )
    .await
    .1;
    let jid = "5511988887777@s.whatsapp.net";
    let long_id = format!("3EB0{}", "A".repeat(2996));
    let mut first = upsert(&long_id, jid, true, "olá\u{0} mundo");
    first["data"]["pushName"] = json!("Maria");
    let body = serde_json::to_vec(&first).unwrap();
    let (status, answer) = post_raw(&app, &hook, &body).await;
    assert_eq!(
        (status, &answer["status"]),
        (200, &json!("stored")),
        "{answer}"
    );
    let (status, again) = post_raw(&app, &hook, &body).await;
    assert_eq!(
        (status, &again["status"]),
        (200, &json!("duplicate")),
        "{again}"
    );

    let row = column(
        &app,
        "SELECT content || '|' || source_id || '|' || CAST(content_attributes AS TEXT) FROM messages",
    )
    .await;
    assert_eq!(row.len(), 1, "{row:?}");
    let parts: Vec<&str> = row[0].splitn(3, '|').collect();
    assert_eq!(parts[0], "olá mundo");
    assert!(
        parts[1].starts_with("sha256:") && parts[1].len() == 71,
        "{}",
        parts[1]
    );
    let attributes: serde_json::Value = serde_json::from_str(parts[2]).unwrap();
    assert_eq!(attributes["nul_removed"], true);
    assert_eq!(attributes["provider_message_id"], long_id.as_str());

    // Evolution's receipt names the message by its (long) id.
    let receipt = json!({"event": "messages.update", "instance": "clinica-sp",
                         "data": {"keyId": long_id, "remoteJid": jid, "fromMe": true, "status": "READ"}});
    let (status, answer) = post_raw(&app, &hook, &serde_json::to_vec(&receipt).unwrap()).await;
    assert_eq!(
        (status, &answer["changed"]),
        (200, &json!(true)),
        "{answer}"
    );
    assert_eq!(column(&app, "SELECT status FROM messages").await, ["read"]);
}

/// Item 2: a PostgreSQL connection terminated in the middle of a migration's batch (`pg_terminate_backend`, as a
/// failover or an administrator does) rolls that batch back; the worker waits it out and resumes under the same
/// lease, and the migration completes with every conversation moved — it is not marked `failed`.
pub async fn a_terminated_connection_does_not_fail_a_migration(db: Db) {
    let app = spawn_app(db).await;
    if !app.database_url.starts_with("postgres") {
        // SQLite has no connection to terminate; its transient failure (busy) is waited out by busy_timeout.
        eprintln!("skipped on SQLite: pg_terminate_backend is PostgreSQL's");
        return;
    }
    use ferry::domain::ChannelType;
    let (report, token) = crate::helpers::seeded(&app, 40, 0.3).await;
    let account = report.account_id;
    let source = crate::helpers::inbox_of(&report, ChannelType::Evolution);
    let destination = crate::helpers::inbox_of(&report, ChannelType::WhatsappCloud);
    let (status, created) = app
        .post_json(
            &format!("/api/v1/accounts/{account}/inboxes/{source}/migrations"),
            Some(&token),
            &json!({"destination_inbox_id": destination, "options": {"batch_rows": 10}}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().unwrap();

    // Hold the source's first conversation: the first batch moves it and waits, inside its transaction.
    let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("SELECT id FROM conversations WHERE inbox_id = $1 ORDER BY id LIMIT 1 FOR UPDATE")
        .bind(source)
        .fetch_one(&mut *holder)
        .await
        .unwrap();
    let worker = ferry::worker::Worker::new(app.ferry.clone());
    let (_stop, stop) = tokio::sync::watch::channel(false);
    let run = tokio::spawn(async move { worker.run_once(stop).await });

    let waiting = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
                   AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let batch = loop {
        let pids: Vec<i32> = sqlx::query_scalar(waiting).fetch_all(&pool).await.unwrap();
        if let Some(pid) = pids.first() {
            break *pid;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the batch never reached the held row"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(batch)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(terminated);
    holder.rollback().await.unwrap();
    let cut = std::time::Instant::now();

    let outcome = tokio::time::timeout(std::time::Duration::from_secs(60), run)
        .await
        .expect("the migration finishes")
        .unwrap()
        .unwrap();
    eprintln!(
        "fault figures: terminated migration batch → completed {:.2} s later",
        cut.elapsed().as_secs_f64()
    );
    assert_eq!(outcome, Some(ferry::jobs::Outcome::Completed));
    let (status, migration) = app
        .get(
            &format!("/api/v1/accounts/{account}/inboxes/{source}/migrations/{id}"),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(migration["status"], "completed", "{migration}");
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM conversations WHERE inbox_id = $1")
        .bind(source)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0, "every conversation moved");
}

/// A Redis server of the test's own on a free port, killable and restartable without touching anyone else's.
struct OwnRedis {
    port: u16,
    child: std::process::Child,
}

impl OwnRedis {
    async fn start(port: Option<u16>) -> Self {
        let port = port.unwrap_or_else(|| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        });
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Self { port, child }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, then a new server on the same port (empty: nothing was saved).
    async fn restart(mut self) -> Self {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let port = self.port;
        std::mem::forget(self);
        Self::start(Some(port)).await
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Item 6: two nodes share routes through Redis; Redis restarts. The first invalidation after the restart (its
/// publish meets a broken connection) is retried, so a disabled token stops routing on the other node within
/// seconds, not after the route TTL (60 s).
pub async fn a_redis_restart_loses_no_invalidation(db: Db) {
    let redis = OwnRedis::start(None).await;
    let url = redis.url();
    let app = crate::helpers::spawn_app_with(db, |config| {
        config.redis_url = Some(url);
        config.redis_prefix = "ferry-restart".into();
    })
    .await;
    let f = app.fixture().await;
    let (created, hook) = connected(
        &app,
        &f,
        "evolution",
        json!({"provider": "evolution", "instance_name": "clinica-sp"}),
    )
    .await;
    let id = created["id"].as_i64().unwrap();
    let (_b, base_b) = app.another_node().await;
    let post_b = |n: usize| {
        let (app, base_b, hook) = (&app, &base_b, &hook);
        async move {
            let body = serde_json::to_vec(&upsert(
                &format!("RR-{n}"),
                "5511988887777@s.whatsapp.net",
                false,
                "oi",
            ))
            .unwrap();
            app.client
                .post(format!("{base_b}{hook}"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(post_b(0).await, 200);

    let _redis = redis.restart().await;
    // Node B notices, resubscribes and drops its routes; then it caches the (still enabled) route again.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(post_b(1).await, 200);

    // Node A's first Redis command since the restart is this invalidation.
    let disabled_at = std::time::Instant::now();
    let (status, _) = app
        .post_json(
            &format!(
                "/api/v1/accounts/{}/integrations/{id}/disable",
                f.account_id
            ),
            Some(&f.admin_token),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let mut n = 2;
    while post_b(n).await != 404 {
        assert!(
            disabled_at.elapsed() < std::time::Duration::from_secs(15),
            "node B still routes a disabled token 15 s after the disable"
        );
        n += 1;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    eprintln!(
        "a_redis_restart_loses_no_invalidation: disabled token stopped routing on node B after {:?}",
        disabled_at.elapsed()
    );
}

/// A tmpfs of its own (CI runs as root): `None` when this machine cannot mount one.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(bytes: u64) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .map_err(|e| format!("mount: {e}"))?;
        if !status.success() {
            return Err("cannot mount a tmpfs (needs root)".into());
        }
        Ok(Self(dir))
    }

    /// Fills what is left of the file system; returns the filler's path.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.0.path().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        for chunk in [1 << 20, 4096, 1] {
            let block = vec![0u8; chunk];
            while file.write_all(&block).is_ok() {}
        }
        let _ = file.sync_all();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.0.path())
            .status();
    }
}

pub fn tmpfs_available() -> Result<(), String> {
    Tmpfs::mount(1 << 20).map(drop)
}

/// One webhook delivery: its status, its `Retry-After`, its answer.
async fn deliver(app: &TestApp, hook: &str, id: &str) -> (u16, Option<String>, serde_json::Value) {
    let body = upsert(
        id,
        "5511988887777@s.whatsapp.net",
        false,
        &format!("text {id}"),
    );
    let response = app
        .client
        .post(format!("{}{hook}", app.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (
        status,
        retry_after,
        response.json().await.unwrap_or_default(),
    )
}

async fn readyz(app: &TestApp) -> u16 {
    let url = format!("{}/readyz", app.base);
    app.client.get(url).send().await.unwrap().status().as_u16()
}

/// Item 1: SQLite on a file system that fills up. While it is full, webhooks are answered 503 with
/// `Retry-After` (providers retry 5xx) and `/readyz` is not ready; once space is freed ferry recovers by itself
/// within seconds — no connection keeps a half-open transaction — and every acknowledged message is stored once,
/// the refused ones too once the provider retries them.
pub async fn a_full_disk_answers_503_and_recovers_by_itself() {
    let disk = Tmpfs::mount(24 << 20).expect("tmpfs");
    let url = format!("sqlite://{}", disk.0.path().join("ferry.db").display());
    let data_dir = disk.0.path().to_owned();
    let mut app = crate::helpers::spawn_app_with(Db::Sqlite, |config| {
        config.database_url = Some(url.clone());
        config.data_dir = data_dir;
    })
    .await;
    app.database_url = url;
    let f = app.fixture().await;
    let hook = connected(
        &app,
        &f,
        "evolution",
        json!({"provider": "evolution", "instance_name": "clinica-sp"}),
    )
    .await
    .1;
    let mut acknowledged = Vec::new();
    let mut refused = Vec::new();
    for n in 0..20 {
        let id = format!("BEFORE{n}");
        assert_eq!(deliver(&app, &hook, &id).await.0, 200);
        acknowledged.push(id);
    }

    let filler = disk.fill();
    let mut saw_not_ready = false;
    for n in 0..200 {
        let id = format!("FULL{n}");
        let (status, retry_after, answer) = deliver(&app, &hook, &id).await;
        match status {
            200 => acknowledged.push(id),
            503 => {
                assert!(retry_after.is_some(), "a 503 says when to retry: {answer}");
                assert_eq!(answer["error"]["code"], "unavailable", "{answer}");
                refused.push(id);
            }
            other => panic!("a full disk answered {other}: {answer}"),
        }
        saw_not_ready |= readyz(&app).await == 503;
        if refused.len() >= 5 && saw_not_ready {
            break;
        }
    }
    assert!(refused.len() >= 5, "the full disk refused nothing");
    assert!(saw_not_ready, "/readyz said ready while writes failed");

    std::fs::remove_file(filler).unwrap();
    let freed = std::time::Instant::now();
    loop {
        let (status, _, _) = deliver(&app, &hook, &refused[0]).await;
        if status == 200 && readyz(&app).await == 200 {
            break;
        }
        assert!(
            freed.elapsed() < std::time::Duration::from_secs(15),
            "no recovery 15 s after space came back (last answer {status})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    eprintln!(
        "recovered {:.1} s after space came back; {} acknowledged and {} refused while full",
        freed.elapsed().as_secs_f64(),
        acknowledged.len() - 20,
        refused.len()
    );
    // The provider retries what was refused; new traffic flows.
    for id in refused
        .iter()
        .chain(&["AFTER0".to_owned(), "AFTER1".to_owned()])
    {
        let (status, _, answer) = deliver(&app, &hook, id).await;
        assert_eq!(status, 200, "{answer}");
        acknowledged.push(id.clone());
    }
    let mut stored = column(&app, "SELECT source_id FROM messages").await;
    stored.sort();
    acknowledged.sort();
    assert_eq!(stored, acknowledged, "every acknowledged message once");
}

/// Terminates the PostgreSQL backend that waits for a lock while running a statement starting with `statement`.
async fn terminate_waiting(pool: &sqlx::PgPool, statement: &str) {
    let waiting = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
                   AND wait_event_type = 'Lock' AND pid <> pg_backend_pid() AND query LIKE $1";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let pid: i32 = loop {
        let pids: Vec<i32> = sqlx::query_scalar(waiting)
            .bind(format!("{statement}%"))
            .fetch_all(pool)
            .await
            .unwrap();
        if let Some(pid) = pids.first() {
            break *pid;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no statement `{statement}…` ever waited for the held row"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(pool)
        .await
        .unwrap();
    assert!(terminated);
}

/// Item 2 for media jobs: the backend storing a downloaded file is terminated inside its transaction. The
/// transaction rolled back whole and runs again at once, so the attachment is ready and the job completed in
/// this run, instead of the job waiting out its five-minute lease.
pub async fn a_terminated_connection_does_not_fail_a_media_job(db: Db) {
    if db != Db::Postgres {
        eprintln!("skipped on SQLite: pg_terminate_backend is PostgreSQL's");
        return;
    }
    let (fake_base, _fake) = crate::media::fake_providers().await;
    let app = crate::helpers::spawn_app_with(db, |config| {
        config.media_allowed_urls = crate::media::allowed(&[&fake_base]);
    })
    .await;
    let f = app.fixture().await;
    let (_, hook) = connected(
        &app,
        &f,
        "evolution",
        json!({"provider": "evolution", "instance_name": "clinica-sp",
               "api_url": format!("{fake_base}/"), "api_key": "evo-key"}),
    )
    .await;
    let body = crate::media::evolution_media("AUD1", "audioMessage", None);
    assert_eq!(
        post_raw(&app, &hook, &serde_json::to_vec(&body).unwrap())
            .await
            .0,
        200
    );

    // Hold the attachment: the job downloads the file, then its transaction waits to mark it ready.
    let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("SELECT id FROM attachments WHERE status = 'pending' FOR UPDATE")
        .fetch_one(&mut *holder)
        .await
        .unwrap();
    let node = app.ferry.clone();
    let run =
        tokio::spawn(
            async move { ferry::webhooks::media::run_due(&node, "test", &|| false).await },
        );
    terminate_waiting(&pool, "UPDATE attachments SET status = 'ready'").await;
    holder.rollback().await.unwrap();
    let cut = std::time::Instant::now();

    let ran = tokio::time::timeout(std::time::Duration::from_secs(30), run)
        .await
        .expect("the fetcher finishes")
        .unwrap();
    eprintln!(
        "fault figures: terminated media job → stored {:.2} s later",
        cut.elapsed().as_secs_f64()
    );
    assert_eq!(
        ran.expect("a terminated connection is not the job's failure"),
        1
    );
    assert_eq!(
        crate::media::attachment(&app, "AUD1").await,
        ("ready".into(), Some(b"evolution:AUD1".to_vec()), None)
    );
    let jobs: Vec<(String, i64)> = sqlx::query_as("SELECT status, attempts FROM jobs")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(jobs, vec![("completed".to_owned(), 1)]);
}

/// Item 2 for account imports: the backend recording the channels stage is terminated inside its
/// transaction. The stage runs again under the same lease and the import completes, instead of ending as a
/// `channel-failure`.
pub async fn a_terminated_connection_does_not_fail_an_account_import(db: Db) {
    if db != Db::Postgres {
        eprintln!("skipped on SQLite: pg_terminate_backend is PostgreSQL's");
        return;
    }
    use crate::imports::{Legacy, account, export_app, migrate, spec};
    let legacy = Legacy::new(&[spec("t-1", 12, 5)], "file://media/");
    let app = export_app(db, &legacy, |_| {}).await;
    let (account, token) = account(&app, "t-1").await;
    let (status, answer) = migrate(&app, account, &token, "").await;
    assert!(status.is_success(), "{answer}");

    // Hold the account (not its key, which the new inboxes reference): the channels stage writes its inboxes,
    // then waits to mark the account.
    let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("SELECT id FROM accounts WHERE id = $1 FOR NO KEY UPDATE")
        .bind(account)
        .fetch_one(&mut *holder)
        .await
        .unwrap();
    let worker = ferry::worker::Worker::new(app.ferry.clone());
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let run = tokio::spawn(async move { worker.run_import_once(shutdown).await });
    terminate_waiting(
        &pool,
        "UPDATE accounts SET migration_status = 'channels-migrated'",
    )
    .await;
    holder.rollback().await.unwrap();
    let cut = std::time::Instant::now();

    let outcome = tokio::time::timeout(std::time::Duration::from_secs(60), run)
        .await
        .expect("the import finishes")
        .unwrap()
        .unwrap();
    eprintln!(
        "fault figures: terminated account import → completed {:.2} s later",
        cut.elapsed().as_secs_f64()
    );
    assert_eq!(outcome, Some(ferry::jobs::Outcome::Completed));
    let import = app
        .ferry
        .store
        .latest_account_import(account)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (import.status.as_str(), import.attempts),
        ("completed", 1),
        "{import:?}"
    );
}

/// This module's tests, with the services they need beside the database.
pub fn suite() -> Vec<crate::Test> {
    [
        on_both_databases!(
            [];
            nul_text_and_long_provider_ids_are_stored_alike,
            a_terminated_connection_does_not_fail_a_migration,
            a_terminated_connection_does_not_fail_a_media_job,
            a_terminated_connection_does_not_fail_an_account_import,
        ),
        on_both_databases!([crate::Service::Redis]; a_redis_restart_loses_no_invalidation),
        without_database!("sqlite", [crate::Service::Tmpfs]; a_full_disk_answers_503_and_recovers_by_itself),
    ]
    .concat()
}
