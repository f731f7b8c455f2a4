//! Many nodes (README: "Running at scale"): two `ferry serve --no-worker` and two `ferry worker` processes on one PostgreSQL and one
//! Redis, on loopback. Jobs run exactly once and finish when a worker is killed; a rotated token stops routing on
//! the other server within a second (pub/sub) and within the cache TTL on a node without Redis; webhook traffic
//! spread over both servers loses and duplicates nothing.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferry::domain::ChannelType;
use serde_json::{Value, json};

use crate::helpers::{Db, ServeProcess, TestApp, inbox_of, redis_url, seeded};
use crate::imports::{Legacy, scalar, spec};
use crate::webhooks::upsert;

/// The settings every process of this deployment shares (database, key, Redis, legacy source), plus `extra`.
fn node_env(app: &TestApp, legacy: &Legacy, redis: bool) -> Vec<(String, String)> {
    let mut env = vec![
        ("FERRY_DATABASE_URL".into(), app.database_url.clone()),
        ("FERRY_SECRET_KEY".into(), app.secret_key.clone()),
        (
            "FERRY_DATA_DIR".into(),
            app.dir.path().display().to_string(),
        ),
        ("FERRY_PUBLIC_URL".into(), app.ferry.public_url()),
        ("FERRY_LOG".into(), "warn".into()),
        ("FERRY_LEASE_SECONDS".into(), "2".into()),
        // Slow enough that the kill lands in the middle of the work.
        ("FERRY_MIGRATION_BATCH_ROWS".into(), "60".into()),
        ("FERRY_MIGRATION_MAX_ROWS_PER_SECOND".into(), "500".into()),
        ("FERRY_IMPORT_MAX_MESSAGES_PER_SECOND".into(), "400".into()),
        (
            "FERRY_LEGACY_EXPORT_DIR".into(),
            legacy.dir.path().display().to_string(),
        ),
        ("FERRY_LEGACY_CONFIG_KEY".into(), legacy.key.clone()),
        ("FERRY_ROUTE_CACHE_SECONDS".into(), "2".into()),
    ];
    if redis {
        env.push(("FERRY_REDIS_URL".into(), redis_url()));
        env.push((
            "FERRY_REDIS_PREFIX".into(),
            app.ferry.config.redis_prefix.clone(),
        ));
    }
    env
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn server(app: &TestApp, env: &[(String, String)]) -> (ServeProcess, String) {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["serve", "--no-worker"])
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("FERRY_BIND", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .spawn()
        .expect("run ferry serve");
    let process = ServeProcess(child);
    for _ in 0..200 {
        if let Ok(r) = app.client.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            return (process, base);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("ferry serve did not become ready at {base}");
}

fn worker(env: &[(String, String)]) -> ServeProcess {
    ServeProcess(
        Command::new(env!("CARGO_BIN_EXE_ferry"))
            .arg("worker")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .spawn()
            .expect("run ferry worker"),
    )
}

async fn post(client: &reqwest::Client, url: &str, body: &Value) -> u16 {
    client
        .post(url)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).unwrap())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

pub async fn servers_and_workers_share_work_routes_and_traffic(db: Db) {
    assert_eq!(
        db,
        Db::Postgres,
        "many processes on one database: PostgreSQL"
    );
    let app = crate::helpers::spawn_app_with_redis(db).await;
    let (report, token) = seeded(&app, 200, 0.3).await;
    let account = report.account_id;
    let legacy = Legacy::new(
        &[spec("mn-1", 30, 20), spec("mn-2", 30, 20)],
        "file://media/",
    );
    let env = node_env(&app, &legacy, true);
    let (_a, base_a) = server(&app, &env).await;
    let (_b, base_b) = server(&app, &env).await;
    let api = |base: &str, path: &str| format!("{base}/api/v1/accounts/{account}{path}");
    let client = reqwest::Client::new();
    let send = |url: String, body: Value| {
        let client = client.clone();
        let token = token.clone();
        async move {
            let r = client
                .post(url)
                .header("api_access_token", token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };

    // Work for the workers, queued through both servers: two migrations (disjoint inbox pairs) and two imports.
    let pairs = [
        (
            inbox_of(&report, ChannelType::Evolution),
            inbox_of(&report, ChannelType::WhatsappCloud),
        ),
        (
            inbox_of(&report, ChannelType::Dialog360),
            inbox_of(&report, ChannelType::TwilioWhatsapp),
        ),
    ];
    let conversations_before = scalar(
        &app,
        format!("SELECT COUNT(*) FROM conversations WHERE account_id = {account}"),
    )
    .await;
    let messages_before = scalar(&app, "SELECT COUNT(*) FROM messages").await;
    let mut migrations = Vec::new();
    for ((source, destination), base) in pairs.iter().zip([&base_a, &base_b]) {
        let (status, m) = send(
            api(base, &format!("/inboxes/{source}/migrations")),
            json!({"destination_inbox_id": destination}),
        )
        .await;
        assert_eq!(status, 201, "{m}");
        migrations.push(m["id"].as_i64().unwrap());
    }
    let mut imported = Vec::new();
    for (legacy_ref, base) in [("mn-1", &base_a), ("mn-2", &base_b)] {
        let id = app
            .ferry
            .create_account(&format!("Legacy {legacy_ref}"), Some(legacy_ref))
            .await
            .unwrap()
            .id;
        app.ferry
            .store
            .set_account_role(
                id,
                app.ferry
                    .store
                    .find_user_by_email("admin@seed.test")
                    .await
                    .unwrap()
                    .unwrap()
                    .id,
                ferry::domain::Role::Administrator,
            )
            .await
            .unwrap();
        let r = client
            .post(format!("{base}/api/v1/accounts/{id}/migrate"))
            .header("api_access_token", &token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        imported.push(id);
    }

    // Two workers; the one holding a running migration is killed (SIGKILL: no release) while the work runs.
    let mut workers = [worker(&env), worker(&env)];
    let deadline = Instant::now() + Duration::from_secs(30);
    let holder = loop {
        // A worker's id (its lease owner) carries its pid.
        let holding = |pid: u32| {
            format!(
                "SELECT COUNT(*) FROM inbox_migrations WHERE status = 'running' AND conversations_moved > 0 \
                 AND lease_owner LIKE '%:{pid}:%'"
            )
        };
        let mut found = None;
        for (i, w) in workers.iter().enumerate() {
            if scalar(&app, holding(w.0.id())).await > 0 {
                found = Some(i);
            }
        }
        if let Some(i) = found {
            break i;
        }
        assert!(Instant::now() < deadline, "no migration started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    workers[holder].0.kill().unwrap();
    workers[holder].0.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let open = scalar(
            &app,
            "SELECT COUNT(*) FROM inbox_migrations WHERE status <> 'completed'",
        )
        .await
            + scalar(
                &app,
                "SELECT COUNT(*) FROM account_imports WHERE status <> 'completed'",
            )
            .await;
        if open == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "work did not finish after the kill"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The killed worker's job was taken over by the other after its lease expired.
    let takeovers = scalar(
        &app,
        "SELECT COUNT(*) FROM inbox_migrations WHERE attempts > 1",
    )
    .await
        + scalar(
            &app,
            "SELECT COUNT(*) FROM account_imports WHERE attempts > 1",
        )
        .await;
    assert!(
        takeovers >= 1,
        "no job was taken over from the killed worker"
    );
    // Exactly once: every invariant holds, nothing was added or lost, one import per account.
    for id in &migrations {
        let out = app.cli(&["migrations", "verify", &id.to_string(), "--json"]);
        let verdict: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(verdict["ok"], true, "{verdict}");
    }
    for (source, _) in pairs {
        assert_eq!(
            scalar(
                &app,
                format!("SELECT COUNT(*) FROM conversations WHERE inbox_id = {source}")
            )
            .await,
            0
        );
    }
    assert_eq!(
        scalar(
            &app,
            format!("SELECT COUNT(*) FROM conversations WHERE account_id = {account}")
        )
        .await,
        conversations_before
    );
    for id in &imported {
        let n = scalar(&app, format!("SELECT COUNT(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id WHERE c.account_id = {id}")).await;
        assert_eq!(n, 30 * 20, "account {id}");
        assert_eq!(
            scalar(
                &app,
                format!("SELECT COUNT(*) FROM account_imports WHERE account_id = {id}")
            )
            .await,
            1
        );
    }
    let imported_total: i64 = 2 * 30 * 20;
    assert_eq!(
        scalar(&app, "SELECT COUNT(*) FROM messages").await,
        messages_before + imported_total
    );

    // Webhooks spread over both servers, every message sent to both: each stored once, none lost.
    let inbox = inbox_of(&report, ChannelType::Evolution);
    let (status, integration) = send(
        api(&base_a, "/integrations"),
        json!({"inbox_id": inbox, "provider": "evolution", "instance_name": "clinica-sp"}),
    )
    .await;
    assert_eq!(status, 201, "{integration}");
    let path = integration["webhook_url"]
        .as_str()
        .unwrap()
        .replace(&app.ferry.public_url(), "");
    let deliveries = (0..100).flat_map(|i| {
        let body = upsert(
            &format!("MN-{i:03}"),
            &format!("55119{:08}@s.whatsapp.net", 10_000_000 + i % 37),
            false,
            "oi",
        );
        [
            (format!("{base_a}{path}"), body.clone()),
            (format!("{base_b}{path}"), body),
        ]
    });
    let statuses = futures::future::join_all(deliveries.map(|(url, body)| {
        let client = client.clone();
        async move { post(&client, &url, &body).await }
    }))
    .await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(
        scalar(
            &app,
            "SELECT COUNT(*) FROM messages WHERE source_id LIKE 'MN-%'"
        )
        .await,
        100
    );

    // A rotation through server A: server B (Redis) stops routing the old token within a second; a node
    // without Redis (as when Redis is down) within its cache TTL (2 s here).
    let (_c, base_c) = server(&app, &node_env(&app, &legacy, false)).await;
    for (i, base) in [&base_b, &base_c].into_iter().enumerate() {
        let warm = upsert(
            &format!("WARM-{i}"),
            "5511912345678@s.whatsapp.net",
            false,
            "oi",
        );
        assert_eq!(
            post(&client, &format!("{base}{path}"), &warm).await,
            200,
            "{base} routes the token"
        );
    }
    let id = integration["id"].as_i64().unwrap();
    let (status, rotated) = send(
        api(&base_a, &format!("/integrations/{id}/rotate")),
        json!({"overlap_seconds": 0}),
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let rotated_at = Instant::now();
    let new_path = rotated["webhook_url"]
        .as_str()
        .unwrap()
        .replace(&app.ferry.public_url(), "");
    let mut n = 0;
    let mut gone = |base: String| {
        n += 1;
        let body = upsert(
            &format!("OLD-{n}"),
            "5511912345678@s.whatsapp.net",
            false,
            "oi",
        );
        let (client, url) = (client.clone(), format!("{base}{path}"));
        async move { post(&client, &url, &body).await == 404 }
    };
    while !gone(base_b.clone()).await {
        assert!(
            rotated_at.elapsed() < Duration::from_secs(1),
            "server B still routes the rotated token after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while !gone(base_c.clone()).await {
        assert!(
            rotated_at.elapsed() < Duration::from_secs(2 + 3),
            "the node without Redis routes the old token past its TTL"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for base in [&base_a, &base_b, &base_c] {
        let body = upsert(
            &format!("NEW-{base}"),
            "5511912345678@s.whatsapp.net",
            false,
            "oi",
        );
        assert_eq!(
            post(&client, &format!("{base}{new_path}"), &body).await,
            200,
            "{base} routes the new token"
        );
    }
}

/// This module's tests, with the services they need beside the database.
pub fn suite() -> Vec<crate::Test> {
    [on_postgres!([crate::Service::Redis]; servers_and_workers_share_work_routes_and_traffic)]
        .concat()
}
