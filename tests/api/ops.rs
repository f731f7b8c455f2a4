//! Operating ferry: `/metrics`, `ferry config show`, and a bounded graceful shutdown.

use std::time::Duration;

use ferry::domain::ChannelType;
use serde_json::json;
use tokio::sync::watch;

use crate::helpers::{Db, TestApp, inbox_of, seeded, spawn_app};

/// The value of the sample `name{…}` whose labels include all of `labels` (any order), if present.
fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(key, _)| {
            let (metric, rest) = key.split_once('{').unwrap_or((key, ""));
            metric == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|(_, value)| value.parse().ok())
}

async fn metrics(app: &TestApp) -> String {
    app.metrics().await
}

/// Requests by route and status with latency histograms, jobs by status (from the database), rows moved and
/// batch durations, lease takeovers, webhook outcomes and dead letters.
pub async fn metrics_count_requests_jobs_webhooks_and_takeovers(db: Db) {
    let app = spawn_app(db).await;
    let (report, token) = seeded(&app, 20, 0.2).await;
    let account = report.account_id;
    let inboxes = format!("/api/v1/accounts/{account}/inboxes");
    for _ in 0..2 {
        assert_eq!(app.get(&inboxes, Some(&token)).await.0, 200);
    }
    assert_eq!(
        app.get("/api/v1/accounts/999999/inboxes", Some(&token))
            .await
            .0,
        404
    );

    // A migration whose worker "died": running with an expired lease, then taken over and finished.
    let source = inbox_of(&report, ChannelType::Evolution);
    let destination = inbox_of(&report, ChannelType::WhatsappCloud);
    let (status, created) = app
        .post_json(
            &format!("{inboxes}/{source}/migrations"),
            Some(&token),
            &json!({"destination_inbox_id": destination}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    app.execute(
        "UPDATE inbox_migrations SET status = 'running', lease_owner = 'dead-worker', \
         lease_expires_at = '2000-01-01 00:00:00+00:00'",
    )
    .await;
    let before = metrics(&app).await;
    let takeovers_before = sample(
        &before,
        "ferry_lease_takeovers_total",
        &[("job", "inbox_migration")],
    )
    .unwrap_or(0.0);
    let (_stop, rx) = watch::channel(false);
    let worker = ferry::worker::Worker::new(app.ferry.clone());
    worker
        .run_once(rx)
        .await
        .unwrap()
        .expect("the expired migration is claimed");

    // A webhook body the parser refuses: a malformed event and a dead letter.
    let (status, integration) = app
        .post_json(
            &format!("/api/v1/accounts/{account}/integrations"),
            Some(&token),
            &json!({"inbox_id": source, "provider": "evolution", "instance_name": "metrics-1"}),
        )
        .await;
    assert_eq!(status, 201, "{integration}");
    let url = integration["webhook_url"]
        .as_str()
        .unwrap()
        .replace(&app.ferry.public_url(), &app.base);
    let refused = app
        .client
        .post(url)
        .header("content-type", "application/json")
        .body("{\"event\": 1}")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);

    let text = metrics(&app).await;
    let route = "/api/v1/accounts/{account_id}/inboxes".to_owned();
    let ok = sample(
        &text,
        "ferry_http_requests_total",
        &[("route", &route), ("method", "GET"), ("status", "200")],
    );
    assert!(ok.is_some_and(|n| n >= 2.0), "{text}");
    assert!(
        sample(
            &text,
            "ferry_http_requests_total",
            &[("route", &route), ("status", "404")]
        )
        .is_some_and(|n| n >= 1.0)
    );
    assert!(
        sample(
            &text,
            "ferry_http_request_duration_seconds_bucket",
            &[("route", &route), ("le", "+Inf")]
        )
        .is_some_and(|n| n >= 3.0),
        "{text}"
    );
    // From this app's database: exact.
    assert_eq!(
        sample(&text, "ferry_inbox_migrations", &[("status", "completed")]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "ferry_dead_letters_waiting", &[]),
        Some(1.0),
        "{text}"
    );
    // Process-wide (other tests run beside this one): at least what this test did.
    let takeovers = sample(
        &text,
        "ferry_lease_takeovers_total",
        &[("job", "inbox_migration")],
    )
    .unwrap_or(0.0);
    assert!(
        takeovers >= takeovers_before + 1.0,
        "{takeovers_before} → {takeovers}"
    );
    let moved = sample(
        &text,
        "ferry_rows_moved_total",
        &[("job", "inbox_migration"), ("entity", "conversations")],
    );
    assert!(moved.is_some_and(|n| n >= 20.0), "{text}");
    assert!(
        sample(
            &text,
            "ferry_batch_duration_seconds_count",
            &[("job", "inbox_migration")]
        )
        .is_some_and(|n| n >= 1.0)
    );
    assert!(
        sample(
            &text,
            "ferry_webhook_events_total",
            &[("provider", "evolution"), ("outcome", "malformed")]
        )
        .is_some_and(|n| n >= 1.0)
    );
    assert!(
        sample(
            &text,
            "ferry_dead_letters_total",
            &[("provider", "evolution")]
        )
        .is_some_and(|n| n >= 1.0)
    );
    assert!(
        text.contains("# TYPE ferry_http_request_duration_seconds histogram"),
        "{text}"
    );
}

/// `ferry config show`: every setting with its variable, secrets never printed; no database needed.
pub async fn config_show_redacts_secrets(db: Db) {
    let app = spawn_app(db).await;
    let out = app.cli_with_env(
        &[
            "config",
            "show",
            "--json",
            "--database-url",
            "postgres://ferry:hunter2@db.invalid:5432/ferry",
        ],
        &[
            ("FERRY_REDIS_URL", "redis://:redispass@cache.invalid:6379"),
            ("FERRY_LEGACY_API_TOKEN", "legacy-token-456"),
            ("FERRY_LEASE_SECONDS", "45"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for secret in ["hunter2", "redispass", "legacy-token-456", &app.secret_key] {
        assert!(!text.contains(secret), "{secret} printed: {text}");
    }
    let shown: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        shown["FERRY_DATABASE_URL"],
        "postgres://ferry:****@db.invalid:5432/ferry"
    );
    assert_eq!(shown["FERRY_LEASE_SECONDS"], "45");
    assert_eq!(shown["FERRY_SECRET_KEY"], "**** (set)");
    assert_eq!(shown["FERRY_LEGACY_API_TOKEN"], "**** (set)");
}

/// SIGTERM with an event stream still open: the server stops accepting, and exits cleanly once the shutdown
/// bound has passed instead of waiting for the stream forever.
pub async fn sigterm_stops_the_server_within_its_bound(db: Db) {
    let app = spawn_app(db).await;
    let (report, token) = seeded(&app, 5, 0.0).await;
    let account = report.account_id;
    let source = inbox_of(&report, ChannelType::Evolution);
    let destination = inbox_of(&report, ChannelType::WhatsappCloud);
    let (status, created) = app
        .post_json(
            &format!("/api/v1/accounts/{account}/inboxes/{source}/migrations"),
            Some(&token),
            &json!({"destination_inbox_id": destination}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().unwrap();
    let (mut process, base) = app
        .serve_process_with_env(&[("FERRY_SHUTDOWN_SECONDS", "1")])
        .await;
    // No worker runs: the migration stays queued and its event stream stays open.
    let stream = app
        .client
        .get(format!(
            "{base}/api/v1/accounts/{account}/inboxes/{source}/migrations/{id}/events"
        ))
        .header("api_access_token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &process.0.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut exit = None;
    for _ in 0..300 {
        if let Some(status) = process.0.try_wait().unwrap() {
            exit = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let exit = exit.expect("ferry serve still runs 15 s after SIGTERM with a 1 s bound");
    assert!(exit.success(), "{exit:?}");
    assert!(
        app.client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_err(),
        "still accepting"
    );
    drop(stream);
}

/// `FERRY_ATTACHMENTS_URL=s3://bucket/prefix`: attachments (here the generated account's files) are written to an
/// S3-compatible bucket — moto's S3 on loopback — read back through ferry, and visible to any S3 client.
pub async fn attachments_are_kept_in_an_s3_bucket(db: Db) {
    let moto = crate::imports::moto().await;
    let client = reqwest::Client::new();
    let created = client
        .put(format!("{}/ferry-files", moto.url))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{}", created.status());
    let endpoint = moto.url.clone();
    let app = crate::helpers::spawn_app_with(db, move |c| {
        c.attachments_url = Some("s3://ferry-files/node-shared".into());
        c.s3.endpoint = Some(endpoint);
        c.s3.region = Some("us-east-1".into());
        c.s3.access_key_id = Some("test".into());
        c.s3.secret_access_key = Some("test".into());
    })
    .await;
    assert_eq!(
        app.ferry.attachments.location(),
        "s3://ferry-files/node-shared"
    );
    let (report, _) = seeded(&app, 10, 0.0).await;
    assert!(report.attachments > 0);
    let key = crate::imports::sqlx_first_key(&app).await;
    let through_ferry = app.ferry.attachments.get(&key).await.unwrap();
    // Read back by a separate S3 client, not through ferry.
    use object_store::ObjectStoreExt;
    let bucket = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name("ferry-files")
        .with_endpoint(&moto.url)
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .build()
        .unwrap();
    let object = bucket
        .get(&object_store::path::Path::from(format!(
            "node-shared/{key}"
        )))
        .await
        .expect("the object is in the bucket under the prefix");
    assert_eq!(object.bytes().await.unwrap().to_vec(), through_ferry);
    assert!(
        !app.dir.path().join("attachments").join(&key).exists(),
        "also written locally"
    );
    // Content addressing holds in a bucket too: the same bytes are one object.
    let again = app.ferry.attachments.put(&through_ferry).await.unwrap();
    assert_eq!(again.storage_key, key);
    // A bucket that does not exist is an error, not a silent local fallback.
    let endpoint = moto.url.clone();
    let mut config = (*app.ferry.config).clone();
    config.attachments_url = Some("s3://no-such-bucket".into());
    config.s3.endpoint = Some(endpoint);
    let missing = ferry::attachments::AttachmentStore::from_config(&config).unwrap();
    assert!(missing.put(b"x").await.is_err());
}

/// The scale benchmarks run end to end (figures are for the closing notes, never asserted): two workers share
/// two migrations, and webhooks spread over two servers are all stored.
pub async fn scale_benchmarks_run_with_several_workers_and_servers(db: Db) {
    let database: Vec<String> = match db {
        Db::Sqlite => Vec::new(),
        Db::Postgres => vec![
            "--database-url".into(),
            crate::helpers::postgres_admin_url(),
        ],
    };
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(args)
            .args(&database)
            .env_remove("FERRY_DATABASE_URL")
            .env("FERRY_LOG", "warn")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let migrations = run(&[
        "bench",
        "inbox-migration",
        "--conversations",
        "40",
        "--migrations",
        "2",
        "--workers",
        "2",
        "--json",
    ]);
    assert_eq!(migrations["migrations"], 2, "{migrations}");
    let per_worker: Vec<i64> = migrations["ferry"]["migrations_per_worker"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_i64().unwrap())
        .collect();
    assert_eq!(per_worker.iter().sum::<i64>(), 2, "{migrations}");
    assert!(
        migrations["ferry"]["rows"].as_i64().unwrap() > 80,
        "{migrations}"
    );
    let webhooks = run(&[
        "bench",
        "webhooks",
        "--requests",
        "200",
        "--concurrency",
        "4",
        "--contacts",
        "20",
        "--servers",
        "2",
        "--json",
    ]);
    assert_eq!(webhooks["servers"], 2, "{webhooks}");
    assert_eq!(
        webhooks["messages_stored"], webhooks["messages_expected"],
        "{webhooks}"
    );
    for scenario in ["token", "legacy", "duplicate", "by_number"] {
        assert_eq!(webhooks["scenarios"][scenario]["failures"], 0, "{webhooks}");
    }
    // Routing by phone_number_id comes from the route cache, as routing by token does.
    assert_eq!(
        webhooks["routing_statements_per_request"]["by_number"], 0.0,
        "{webhooks}"
    );
}

/// This module's tests, with the services they need beside the database.
pub fn suite() -> Vec<crate::Test> {
    [
        on_both_databases!(
            [];
            metrics_count_requests_jobs_webhooks_and_takeovers,
            config_show_redacts_secrets,
            sigterm_stops_the_server_within_its_bound,
            scale_benchmarks_run_with_several_workers_and_servers,
        ),
        on_both_databases!([crate::Service::Moto]; attachments_are_kept_in_an_s3_bucket),
    ]
    .concat()
}
