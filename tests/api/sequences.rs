//! Operators' realistic sequences of migrations and reverts (issue 17, items 3, 5, 8–11): nothing ends in the
//! wrong inbox, a revert is a job of its own, every attempt is kept, and progress streams share one poll.

use ferry::domain::ChannelType;
use serde_json::{Value, json};

use crate::helpers::{Db, TestApp, inbox_of, seeded, spawn_app};

struct Account {
    id: i64,
    token: String,
}

impl Account {
    fn migrations(&self, source: i64) -> String {
        format!("/api/v1/accounts/{}/inboxes/{source}/migrations", self.id)
    }

    /// Starts a migration and runs it to its end in this process's worker.
    async fn migrate(&self, app: &TestApp, source: i64, destination: i64) -> i64 {
        let (status, created) = app
            .post_json(
                &self.migrations(source),
                Some(&self.token),
                &json!({"destination_inbox_id": destination}),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        app.drain_worker().await;
        created["id"].as_i64().unwrap()
    }

    async fn revert(&self, app: &TestApp, source: i64, id: i64) -> (u16, Value) {
        let (status, body) = app
            .post_json(
                &format!("{}/{id}/revert", self.migrations(source)),
                Some(&self.token),
                &json!({}),
            )
            .await;
        if status == 202 {
            // Queued: this process's worker runs the revert.
            app.drain_worker().await;
        }
        (status.as_u16(), body)
    }
}

async fn conversations_in(app: &TestApp, inbox: i64) -> i64 {
    app.ferry
        .store
        .inbox_counts(inbox)
        .await
        .unwrap()
        .conversations
}

/// Item 8: A→B, then B→C; reverting A→B first would pull conversations from under B→C, so it is refused,
/// naming B→C. Reverted newest first, every conversation is back where it started.
pub async fn reverts_out_of_order_are_refused(db: Db) {
    let app = spawn_app(db).await;
    let (report, token) = seeded(&app, 30, 0.3).await;
    let account = Account {
        id: report.account_id,
        token,
    };
    let a = inbox_of(&report, ChannelType::Evolution);
    let b = inbox_of(&report, ChannelType::WhatsappCloud);
    let c = inbox_of(&report, ChannelType::Dialog360);
    let before = [
        conversations_in(&app, a).await,
        conversations_in(&app, b).await,
        conversations_in(&app, c).await,
    ];
    let first = account.migrate(&app, a, b).await;
    let second = account.migrate(&app, b, c).await;
    assert_eq!(conversations_in(&app, c).await, before.iter().sum::<i64>());

    let (status, refused) = account.revert(&app, a, first).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"]["code"], "later_migration", "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("migration {second}")),
        "{refused}"
    );
    assert_eq!(
        conversations_in(&app, c).await,
        before.iter().sum::<i64>(),
        "nothing moved"
    );

    assert_eq!(account.revert(&app, b, second).await.0, 202);
    assert_eq!(account.revert(&app, a, first).await.0, 202);
    assert_eq!(
        [
            conversations_in(&app, a).await,
            conversations_in(&app, b).await,
            conversations_in(&app, c).await,
        ],
        before
    );
}

/// Item 9: A→B redirects A's webhooks to B; migrating back (B→A) ends that redirect, so a new message for A's
/// number lands in A with its history. The preview of B→A says so.
pub async fn migrating_back_ends_the_old_redirect(db: Db) {
    let app = spawn_app(db).await;
    let (report, token) = seeded(&app, 10, 0.0).await;
    let account = Account {
        id: report.account_id,
        token,
    };
    let a = inbox_of(&report, ChannelType::Evolution);
    let b = inbox_of(&report, ChannelType::WhatsappCloud);
    let (status, integration) = app
        .post_json(
            &format!("/api/v1/accounts/{}/integrations", account.id),
            Some(&account.token),
            &json!({"inbox_id": a, "provider": "evolution", "instance_name": "clinica-sp"}),
        )
        .await;
    assert_eq!(status, 201, "{integration}");
    let hook = integration["webhook_url"]
        .as_str()
        .unwrap()
        .replace(&app.ferry.public_url(), "");
    let deliver = |id: &'static str| {
        let (app, hook) = (&app, &hook);
        async move {
            let body = crate::webhooks::upsert(id, "5511977776666@s.whatsapp.net", false, "oi");
            let (status, answer) =
                crate::webhooks::post_raw(app, hook, &serde_json::to_vec(&body).unwrap()).await;
            assert_eq!(status, 200, "{answer}");
            let conversation = answer["conversation_id"].as_i64().unwrap();
            app.ferry
                .store
                .get_conversation(report.account_id, conversation)
                .await
                .unwrap()
                .inbox_id
        }
    };

    account.migrate(&app, a, b).await;
    assert_eq!(deliver("REDIR-1").await, b, "redirected to B");

    let (status, preview) = app
        .get(
            &format!("{}/preview?destination_inbox_id={a}", account.migrations(b)),
            Some(&account.token),
        )
        .await;
    assert_eq!(status, 200, "{preview}");
    assert!(
        preview["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["code"] == "REDIRECT_ENDS"),
        "{preview}"
    );
    account.migrate(&app, b, a).await;
    assert_eq!(
        deliver("REDIR-2").await,
        a,
        "after migrating back, A's webhooks land in A"
    );
}

impl Account {
    /// Queues a migration with these options; nothing runs it yet.
    async fn queue(&self, app: &TestApp, source: i64, destination: i64, options: Value) -> i64 {
        let (status, created) = app
            .post_json(
                &self.migrations(source),
                Some(&self.token),
                &json!({"destination_inbox_id": destination, "options": options}),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        created["id"].as_i64().unwrap()
    }

    async fn show(&self, app: &TestApp, source: i64, id: i64) -> Value {
        let (status, body) = app
            .get(
                &format!("{}/{id}", self.migrations(source)),
                Some(&self.token),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn post(&self, app: &TestApp, source: i64, id: i64, action: &str) -> (u16, Value) {
        let (status, body) = app
            .post_json(
                &format!("{}/{id}/{action}", self.migrations(source)),
                Some(&self.token),
                &json!({}),
            )
            .await;
        (status.as_u16(), body)
    }
}

impl Account {
    /// Runs the queued (throttled) migration in a worker of this process until it moved something, then
    /// cancels it and waits for it to stop at its batch boundary.
    async fn cancel_once_moving(&self, app: &TestApp, source: i64, id: i64) {
        let worker = BackgroundWorker::start(app);
        until(app, id, "moving", |m| m.conversations_moved > 0).await;
        assert_eq!(self.post(app, source, id, "cancel").await.0, 200);
        until(app, id, "cancelled", |m| m.status.as_str() == "cancelled").await;
        worker.stop().await;
    }
}

/// This process's worker, running in the background until stopped.
struct BackgroundWorker {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl BackgroundWorker {
    fn start(app: &TestApp) -> Self {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(
            ferry::worker::Worker::new(app.ferry.clone())
                .with_poll_interval(std::time::Duration::from_millis(50))
                .run(stopped),
        );
        Self { stop, task }
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        self.task.await.unwrap();
    }
}

async fn snapshot(app: &TestApp, account: i64) -> Vec<String> {
    app.ferry
        .store
        .account_rows_snapshot(account)
        .await
        .unwrap()
}

/// A `ferry worker` process of this app's database with a one-second lease.
fn worker_process(app: &TestApp) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("worker")
        .env("FERRY_DATABASE_URL", &app.database_url)
        .env("FERRY_DATA_DIR", app.dir.path())
        .env("FERRY_SECRET_KEY", &app.secret_key)
        .env("FERRY_LEASE_SECONDS", "1")
        .env("FERRY_LOG", "warn")
        .spawn()
        .unwrap()
}

/// Waits until the migration's record satisfies `done` (checked every 5 ms, at most a minute).
async fn until(
    app: &TestApp,
    id: i64,
    what: &str,
    done: impl Fn(&ferry::store::InboxMigration) -> bool,
) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let m = app.ferry.store.get_inbox_migration(id).await.unwrap();
        if done(&m) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "never {what}: {m:?}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Item 3: a revert is a leased job. The request only queues it (a client that goes away changes nothing); a
/// worker process SIGKILLed half-way leaves it `running` with its inboxes locked, and another worker takes it
/// over once the lease expires and finishes it: the exact prior state, every attempt in the history. A queued
/// revert can be cancelled and asked for again.
pub async fn a_revert_is_a_job_that_resumes_after_a_kill(db: Db) {
    let app = spawn_app(db).await;
    let (report, token) = seeded(&app, 1600, 0.3).await;
    let account = Account {
        id: report.account_id,
        token,
    };
    let a = inbox_of(&report, ChannelType::Evolution);
    let b = inbox_of(&report, ChannelType::WhatsappCloud);
    let before = snapshot(&app, account.id).await;
    let id = account.queue(&app, a, b, json!({"batch_rows": 10})).await;
    app.drain_worker().await;
    assert_eq!(account.show(&app, a, id).await["status"], "completed");

    // Queued, then cancelled before any worker ran it: nothing changed.
    let (status, queued) = account.post(&app, a, id, "revert").await;
    assert_eq!(status, 202, "{queued}");
    assert_eq!(
        (&queued["status"], &queued["revert"]["status"]),
        (&json!("completed"), &json!("queued"))
    );
    let (status, cancelled) = account.post(&app, a, id, "cancel").await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["revert"]["status"], "cancelled", "{cancelled}");
    assert_ne!(snapshot(&app, account.id).await, before);

    assert_eq!(account.post(&app, a, id, "revert").await.0, 202);
    let mut worker = worker_process(&app);
    until(&app, id, "half-way", |m| m.revert_batches_done >= 5).await;
    worker.kill().unwrap();
    worker.wait().unwrap();
    let cut = std::time::Instant::now();
    let killed = account.show(&app, a, id).await;
    let revert = &killed["revert"];
    assert_eq!(revert["status"], "running", "{killed}");
    assert!(
        revert["batches_done"].as_i64() < revert["batches_total"].as_i64(),
        "killed half-way: {revert}"
    );
    assert!(
        revert["restored"]["conversations"].as_i64().unwrap() > 0,
        "{revert}"
    );
    let (status, busy) = app
        .post_json(
            &account.migrations(a),
            Some(&account.token),
            &json!({"destination_inbox_id": inbox_of(&report, ChannelType::Dialog360)}),
        )
        .await;
    assert_eq!(
        (status.as_u16(), &busy["error"]["code"]),
        (422, &json!("migration_active")),
        "the inboxes stay locked while the revert is unfinished"
    );

    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    app.drain_worker().await;
    let done = account.show(&app, a, id).await;
    eprintln!(
        "fault figures: revert SIGKILLed after {} of {} batches → reverted {:.2} s later (1 s lease)",
        revert["batches_done"],
        revert["batches_total"],
        cut.elapsed().as_secs_f64()
    );
    assert_eq!(
        (&done["status"], &done["revert"]["status"]),
        (&json!("reverted"), &json!("reverted")),
        "{done}"
    );
    assert_eq!(
        done["revert"]["batches_done"], done["revert"]["batches_total"],
        "each batch undone once"
    );
    crate::helpers::assert_same_rows(
        &before,
        &snapshot(&app, account.id).await,
        "after the resumed revert",
    );
    let outcomes: Vec<(&str, &str)> = done["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["kind"].as_str().unwrap(),
                a["outcome"].as_str().unwrap_or("open"),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("migrate", "completed"),
            ("revert", "lease_expired"),
            ("revert", "reverted")
        ]
    );
}

/// Item 10: a run cancelled half-way and continued by a new migration of the same pair are reverted together:
/// the revert of the second covers the first, every conversation is back, and the migration says so.
pub async fn revert_after_cancel_and_continue_restores_every_run(db: Db) {
    let app = spawn_app(db).await;
    let (report, token) = seeded(&app, 200, 0.3).await;
    let account = Account {
        id: report.account_id,
        token,
    };
    let a = inbox_of(&report, ChannelType::Evolution);
    let b = inbox_of(&report, ChannelType::WhatsappCloud);
    let source_conversations = conversations_in(&app, a).await;
    let before = snapshot(&app, account.id).await;

    // Slow on purpose (20 rows a second), cancelled once it moved something.
    let first = account
        .queue(
            &app,
            a,
            b,
            json!({"batch_rows": 10, "max_rows_per_second": 20}),
        )
        .await;
    account.cancel_once_moving(&app, a, first).await;
    let moved_first = account.show(&app, a, first).await["progress"]["conversations"]["moved"]
        .as_i64()
        .unwrap();
    assert!(moved_first > 0 && moved_first < source_conversations);

    let second = account.queue(&app, a, b, json!({})).await;
    app.drain_worker().await;
    assert_eq!(conversations_in(&app, a).await, 0);
    let (status, queued) = account.post(&app, a, second, "revert").await;
    assert_eq!(status, 202, "{queued}");
    assert_eq!(queued["revert"]["runs"], json!([second, first]), "{queued}");
    app.drain_worker().await;

    crate::helpers::assert_same_rows(
        &before,
        &snapshot(&app, account.id).await,
        "after reverting both runs",
    );
    assert_eq!(conversations_in(&app, a).await, source_conversations);
    let done = account.show(&app, a, second).await;
    assert_eq!(done["revert"]["status"], "reverted", "{done}");
    assert_eq!(
        done["revert"]["restored"]["conversations"],
        json!(source_conversations),
        "the migration says exactly what came back: {done}"
    );
    let earlier = account.show(&app, a, first).await;
    assert_eq!(
        (&earlier["status"], &earlier["reverted_with"]),
        (&json!("reverted"), &json!(second))
    );
}

/// Item 11: a cancelled attempt and its retry are both kept (the history and the audit log), and a migration
/// that moved everything but failed its final check can be reverted to the exact prior state.
pub async fn every_attempt_is_kept_and_a_failed_run_is_revertible(db: Db) {
    let app = spawn_app(db).await;
    let (report, token) = seeded(&app, 60, 0.3).await;
    let account = Account {
        id: report.account_id,
        token,
    };
    let a = inbox_of(&report, ChannelType::Evolution);
    let b = inbox_of(&report, ChannelType::WhatsappCloud);
    let before = snapshot(&app, account.id).await;
    let id = account
        .queue(
            &app,
            a,
            b,
            json!({"batch_rows": 10, "max_rows_per_second": 20}),
        )
        .await;
    account.cancel_once_moving(&app, a, id).await;
    assert_eq!(account.post(&app, a, id, "retry").await.0, 200);
    app.drain_worker().await;
    let done = account.show(&app, a, id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let history = done["history"].as_array().unwrap();
    let outcomes: Vec<&str> = history
        .iter()
        .map(|h| h["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["cancelled", "completed"], "{done}");
    assert_eq!(
        history[1]["batches_at_start"], history[0]["batches_at_end"],
        "the retry went on from there"
    );
    let audit = app
        .texts(&format!(
            "SELECT action FROM audit_events WHERE subject = 'inbox_migration:{id}' ORDER BY id"
        ))
        .await;
    let audit: Vec<&str> = audit.iter().flatten().map(String::as_str).collect();
    for action in [
        "inbox_migration.created",
        "inbox_migration.cancelled",
        "inbox_migration.stopped_cancelled",
        "inbox_migration.retried",
        "inbox_migration.completed",
    ] {
        assert!(audit.contains(&action), "{action} missing from {audit:?}");
    }

    // What the worker writes when the final check fails after every batch committed.
    execute(
        &app,
        &format!(
            "UPDATE inbox_migrations SET status = 'failed', error_message = 'invariant check failed' WHERE id = {id}"
        ),
    )
    .await;
    let (status, queued) = account.post(&app, a, id, "revert").await;
    assert_eq!(
        status, 202,
        "a failed run that moved rows is revertible: {queued}"
    );
    app.drain_worker().await;
    assert_eq!(account.show(&app, a, id).await["status"], "reverted");
    crate::helpers::assert_same_rows(
        &before,
        &snapshot(&app, account.id).await,
        "after reverting the failed run",
    );
}

async fn execute(app: &TestApp, sql: &str) {
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    if app.database_url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
        sqlx::query(sql).execute(&pool).await.unwrap();
    } else {
        let pool = sqlx::SqlitePool::connect(&app.database_url).await.unwrap();
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
}

/// Reads `response`'s event stream for `window`; returns how many `progress` and `done` events came.
async fn events_within(response: reqwest::Response, window: std::time::Duration) -> (usize, usize) {
    use futures::StreamExt;
    let mut stream = response.bytes_stream();
    let mut text = String::new();
    let _ = tokio::time::timeout(window, async {
        while let Some(Ok(chunk)) = stream.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    (
        text.matches("event: progress").count(),
        text.matches("event: done").count(),
    )
}

/// Item 5: however many streams follow a running migration, the node reads it once per interval (one poller
/// shares each change with every stream), and streams beyond the caps per migration and per node are answered
/// 503 `too_many_streams` with `Retry-After`; closed streams give their places back.
pub async fn progress_streams_share_one_poll_and_are_capped(db: Db) {
    let app = crate::helpers::spawn_app_with(db, |config| {
        config.event_streams_per_migration = 4;
        config.event_streams_per_node = 6;
    })
    .await;
    let (report, token) = seeded(&app, 120, 0.3).await;
    let account = Account {
        id: report.account_id,
        token,
    };
    let a = inbox_of(&report, ChannelType::Evolution);
    let b = inbox_of(&report, ChannelType::WhatsappCloud);
    let c = inbox_of(&report, ChannelType::Dialog360);
    let d = inbox_of(&report, ChannelType::TwilioWhatsapp);
    let slow = json!({"batch_rows": 10, "max_rows_per_second": 20});
    let first = account.queue(&app, a, b, slow.clone()).await;
    let second = account.queue(&app, c, d, slow).await;
    let worker = BackgroundWorker::start(&app);
    until(&app, first, "moving", |m| m.conversations_moved > 0).await;
    let open = |source: i64, id: i64| {
        let url = format!("{}{}/{id}/events", app.base, account.migrations(source));
        app.client
            .get(url)
            .header("api_access_token", &account.token)
            .send()
    };

    let mut streams = Vec::new();
    for _ in 0..4 {
        let response = open(a, first).await.unwrap();
        assert_eq!(response.status(), 200);
        streams.push(response);
    }
    let refused = open(a, first).await.unwrap();
    assert_eq!(refused.status(), 503, "a fifth stream of one migration");
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_streams", "{body}");

    let polls_before = app.ferry.progress.polls();
    let window = std::time::Duration::from_secs(3);
    let counts =
        futures::future::join_all(streams.into_iter().map(|s| events_within(s, window))).await;
    let polls = app.ferry.progress.polls() - polls_before;
    assert!(
        counts.iter().all(|(progress, _)| *progress >= 2),
        "every stream follows the migration: {counts:?}"
    );
    // One poller at 2 reads a second, not one per stream (4 streams would make it 24 or more).
    assert!(polls <= 8, "{polls} reads in 3 s for 4 streams");

    // The node's cap: 6 streams over all migrations.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(open(a, first).await.unwrap());
    }
    for _ in 0..2 {
        let response = open(c, second).await.unwrap();
        assert_eq!(response.status(), 200);
        held.push(response);
    }
    assert_eq!(
        open(c, second).await.unwrap().status(),
        503,
        "the node's seventh stream"
    );
    drop(held);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.ferry.progress.streams() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "closed streams keep their places"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(open(c, second).await.unwrap().status(), 200);

    for (source, id) in [(a, first), (c, second)] {
        account.post(&app, source, id, "cancel").await;
    }
    worker.stop().await;
}

/// This module's tests, with the services they need beside the database.
pub fn suite() -> Vec<crate::Test> {
    [on_both_databases!(
        [];
        reverts_out_of_order_are_refused,
        migrating_back_ends_the_old_redirect,
        a_revert_is_a_job_that_resumes_after_a_kill,
        revert_after_cancel_and_continue_restores_every_run,
        every_attempt_is_kept_and_a_failed_run_is_revertible,
        progress_streams_share_one_poll_and_are_capped,
    )]
    .concat()
}
