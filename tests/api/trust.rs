//! Trust boundaries (issue 17, items 13–15): what one account's administrator, an installation administrator
//! or anyone on the network can learn or leave behind.

use std::os::unix::fs::PermissionsExt;

use ferry::domain::Role;
use serde_json::{Value, json};

use crate::helpers::{Db, TestApp, spawn_app};
use crate::webhooks::{connected, post_raw};

async fn scalar(app: &TestApp, sql: &str) -> Option<String> {
    app.texts(sql).await.into_iter().next().flatten()
}

async fn evolution_hook(app: &TestApp, f: &crate::helpers::Fixture) -> String {
    connected(
        app,
        f,
        "evolution",
        json!({"provider": "evolution", "instance_name": "clinica-sp"}),
    )
    .await
    .1
}

/// Item 15: a dead letter keeps every header's name, but never the value of one that may carry a credential.
pub async fn dead_letters_keep_credential_header_names_not_values(db: Db) {
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    let hook = evolution_hook(&app, &f).await;
    let secrets = [
        ("apikey", "evo-global-key-123"),
        ("x-api-key", "x-key-456"),
        ("d360-api-key", "d360-789"),
        ("cookie", "session=abc"),
        ("authorization", "Bearer t0k3n"),
    ];
    let mut req = app
        .client
        .post(format!("{}{hook}", app.base))
        .header("content-type", "application/json")
        .header("user-agent", "axios/1.7.2")
        .body("{\"event\": 42}");
    for (name, value) in secrets {
        req = req.header(name, value);
    }
    assert_eq!(req.send().await.unwrap().status(), 400);
    let headers: Value = serde_json::from_str(
        &scalar(
            &app,
            "SELECT CAST(headers AS TEXT) FROM webhook_dead_letters",
        )
        .await
        .expect("kept as a dead letter"),
    )
    .unwrap();
    for (name, value) in secrets {
        assert_eq!(headers[name], "[redacted]", "{headers}");
        assert!(!headers.to_string().contains(value), "{headers}");
    }
    assert_eq!(headers["user-agent"], "axios/1.7.2", "other headers kept");
}

/// Item 15: deliveries to a token that routes nowhere are counted per route and reason (not stored).
pub async fn refused_webhook_tokens_are_counted_not_stored(db: Db) {
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    let hook = evolution_hook(&app, &f).await;
    let count = |metrics: &str| -> u64 {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("ferry_webhook_refused_total")
                    && l.contains("reason=\"unknown_token\"")
                    && l.contains("route=\"evolution\"")
            })
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    };
    let before = count(&app.metrics().await);
    let unknown = format!("/webhooks/evolution/whatsapp/fwh_{}", "A".repeat(43));
    let body = serde_json::to_vec(&json!({"event": "messages.upsert"})).unwrap();
    for _ in 0..3 {
        assert_eq!(post_raw(&app, &unknown, &body).await.0, 404);
    }
    assert!(count(&app.metrics().await) >= before + 3);
    assert_eq!(
        scalar(
            &app,
            "SELECT CAST(COUNT(*) AS TEXT) FROM webhook_dead_letters"
        )
        .await
        .as_deref(),
        Some("0"),
        "nothing stored for a wrong URL"
    );
    // The real token still routes.
    let ok = serde_json::to_vec(&crate::webhooks::upsert(
        "T1",
        "5511988887777@s.whatsapp.net",
        false,
        "oi",
    ))
    .unwrap();
    assert_eq!(post_raw(&app, &hook, &ok).await.0, 200);
}

/// Item 15: at debug level the server logs each request's route template, never its URI (a webhook URI holds
/// the secret token); and the files it creates are its user's alone.
pub async fn webhook_tokens_stay_out_of_logs_and_files_are_private(db: Db) {
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    let hook = evolution_hook(&app, &f).await;
    let token = hook.rsplit('/').next().unwrap().to_owned();
    let data = app.dir.path().join("fresh");
    let log = app.dir.path().join("serve.log");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["serve", "--no-worker"])
        .env("FERRY_DATABASE_URL", &app.database_url)
        .env("FERRY_DATA_DIR", &data)
        .env("FERRY_SECRET_KEY", &app.secret_key)
        .env("FERRY_BIND", format!("127.0.0.1:{port}"))
        .env("FERRY_LOG", "debug")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let mut up = false;
    for _ in 0..200 {
        if app
            .client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let body = serde_json::to_vec(&crate::webhooks::upsert(
        "LOG1",
        "5511988887777@s.whatsapp.net",
        false,
        "oi",
    ))
    .unwrap();
    let status = app
        .client
        .post(format!("{base}{hook}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map(|r| r.status().as_u16());
    let _ = child.kill();
    let _ = child.wait();
    assert!(up, "ferry serve did not start");
    assert_eq!(status.unwrap(), 200);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("/webhooks/evolution/whatsapp/{token}"),
        "the route template is logged: {logged}"
    );
    assert!(!logged.contains(&token), "the token is in the log");

    // Private files: the data folder (and, on SQLite, the database the binary creates there).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["db", "migrate"])
        .env_remove("FERRY_DATABASE_URL")
        .env("FERRY_DATA_DIR", data.join("own"))
        .env("FERRY_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = |p: std::path::PathBuf| std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(data.join("own")), 0o700);
    assert_eq!(mode(data.join("own/ferry.db")), 0o600);
}

/// Item 13: an installation administrator sees other accounts' webhook URLs masked (the installation flag does
/// not open other accounts), their own in the clear, and the reveal is audited with their user.
pub async fn installation_admins_reveal_only_their_accounts_tokens(db: Db) {
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    // Their own account's integration, and one of an account where they are only an agent.
    let own_hook = evolution_hook(&app, &f).await;
    let other = crate::helpers::Fixture {
        account_id: f.other_account_id,
        admin_token: f.other_admin_token.clone(),
        agent_token: String::new(),
        other_account_id: f.account_id,
        other_admin_token: f.admin_token.clone(),
    };
    let other_hook = connected(
        &app,
        &other,
        "evolution",
        json!({"provider": "evolution", "instance_name": "outra-conta"}),
    )
    .await
    .1;
    let token = app
        .user_with_token(f.account_id, "ops@acme.test", Role::Administrator, true)
        .await;
    let ops = app
        .ferry
        .store
        .find_user_by_email("ops@acme.test")
        .await
        .unwrap()
        .unwrap();
    app.ferry
        .store
        .set_account_role(f.other_account_id, ops.id, Role::Agent)
        .await
        .unwrap();

    let (status, listed) = app
        .get(
            "/api/v1/integrations/legacy/tokens?reveal=true",
            Some(&token),
        )
        .await;
    assert_eq!(status, 200, "{listed}");
    let of = |account: i64| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["account_id"] == account)
            .unwrap_or_else(|| panic!("{listed}"))
            .clone()
    };
    let (own, foreign) = (of(f.account_id), of(f.other_account_id));
    assert_eq!(own["revealed"], true);
    assert!(own["webhook_url"].as_str().unwrap().ends_with(&own_hook));
    assert_eq!(foreign["revealed"], false);
    let other_token = other_hook.rsplit('/').next().unwrap();
    assert!(
        !listed.to_string().contains(other_token),
        "another account's token revealed: {listed}"
    );
    assert_eq!(
        scalar(
            &app,
            "SELECT CAST(user_id AS TEXT) FROM audit_events WHERE action = 'integration.reveal'"
        )
        .await,
        Some(ops.id.to_string()),
        "the reveal is audited with its user"
    );
}

/// This module's tests, with the services they need beside the database.
pub fn suite() -> Vec<crate::Test> {
    [on_both_databases!(
        [];
        dead_letters_keep_credential_header_names_not_values,
        refused_webhook_tokens_are_counted_not_stored,
        webhook_tokens_stay_out_of_logs_and_files_are_private,
        installation_admins_reveal_only_their_accounts_tokens,
    )]
    .concat()
}
