use chrono::Utc;
use ferry::domain::WebhookToken;
use serde_json::{Value, json};

use crate::helpers::{Db, TestApp, assert_error, spawn_app};

struct Setup {
    account: i64,
    admin: String,
    agent: String,
    evolution: i64,
    cloud: i64,
}

async fn setup(app: &TestApp) -> Setup {
    let f = app.fixture().await;
    let inbox = |name: &str, channel: &str| json!({"name": name, "channel_type": channel, "phone_number": "+551140028922"});
    let base = format!("/api/v1/accounts/{}/inboxes", f.account_id);
    let evolution = app
        .post_json(&base, Some(&f.admin_token), &inbox("Evo", "evolution"))
        .await
        .1["id"]
        .as_i64()
        .unwrap();
    let cloud = app
        .post_json(
            &base,
            Some(&f.admin_token),
            &inbox("Cloud", "whatsapp_cloud"),
        )
        .await
        .1["id"]
        .as_i64()
        .unwrap();
    Setup {
        account: f.account_id,
        admin: f.admin_token,
        agent: f.agent_token,
        evolution,
        cloud,
    }
}

async fn route(app: &TestApp, token: &str) -> Option<ferry::store::TokenRoute> {
    let token = WebhookToken::parse(token).unwrap();
    app.ferry
        .store
        .route_by_token_hash(&token.hash(), Utc::now())
        .await
        .unwrap()
}

/// Create shows the token and the URL once; listings never do; reveal is audited and gives the same token;
/// rotation keeps the old token routing for the overlap only; disable and enable are seen by routing.
pub async fn integrations_issue_reveal_rotate_and_disable_tokens(db: Db) {
    let app = spawn_app(db).await;
    let s = setup(&app).await;
    let url = format!("/api/v1/accounts/{}/integrations", s.account);
    let (status, created) = app
        .post_json(
            &url,
            Some(&s.admin),
            &json!({"inbox_id": s.evolution, "provider": "evolution", "instance_name": "clinica-sp", "api_key": "k-123"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("fwh_") && token.len() == 47, "{token}");
    let public = app.ferry.public_url();
    assert_eq!(
        created["webhook_url"],
        format!("{public}/webhooks/evolution/whatsapp/{token}")
    );
    assert_eq!(created["secrets_set"], true);
    let id = created["id"].as_i64().unwrap();
    let routed = route(&app, &token).await.expect("the new token routes");
    assert_eq!(
        (
            routed.integration_id,
            routed.inbox_id,
            routed.enabled,
            routed.expires_at
        ),
        (Some(id), Some(s.evolution), true, None)
    );

    let (_, listed) = app.get(&url, Some(&s.admin)).await;
    let text = listed.to_string();
    assert!(
        !text.contains(&token[4..]),
        "a listing never shows the token"
    );
    assert!(!text.contains("k-123"), "nor a provider secret");
    assert_eq!(listed["data"][0]["token_prefix"], &token[..10]);

    let (status, revealed) = app
        .post_json(&format!("{url}/{id}/reveal"), Some(&s.admin), &json!({}))
        .await;
    assert_eq!(status, 200, "{revealed}");
    assert_eq!(revealed["token"], token.as_str());

    let (status, rotated) = app
        .post_json(
            &format!("{url}/{id}/rotate"),
            Some(&s.admin),
            &json!({"overlap_seconds": 3600}),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let second = rotated["token"].as_str().unwrap().to_owned();
    assert_ne!(second, token);
    assert!(route(&app, &second).await.unwrap().expires_at.is_none());
    let old = route(&app, &token)
        .await
        .expect("the old token routes during the overlap");
    assert!(old.expires_at.unwrap() > Utc::now() + chrono::Duration::minutes(59));

    // A rotation without overlap: the second token stops at once, the first is forgotten.
    let third = app
        .post_json(
            &format!("{url}/{id}/rotate"),
            Some(&s.admin),
            &json!({"overlap_seconds": 0}),
        )
        .await
        .1["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(route(&app, &second).await.is_none());
    assert!(route(&app, &token).await.is_none());
    assert!(route(&app, &third).await.is_some());

    let (status, disabled) = app
        .post_json(&format!("{url}/{id}/disable"), Some(&s.admin), &json!({}))
        .await;
    assert_eq!(
        (status.as_u16(), &disabled["enabled"]),
        (200, &json!(false))
    );
    assert!(!route(&app, &third).await.unwrap().enabled);
    app.post_json(&format!("{url}/{id}/enable"), Some(&s.admin), &json!({}))
        .await;
    assert!(route(&app, &third).await.unwrap().enabled);

    let actions: Vec<String> = app
        .ferry
        .store
        .list_audit(s.account, 50)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.subject == format!("integration:{id}"))
        .map(|e| e.action)
        .collect();
    for action in [
        "integration.create",
        "integration.reveal",
        "integration.rotate",
        "integration.disable",
        "integration.enable",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} in {actions:?}"
        );
    }
    // The secrets are sealed at rest: the raw column holds no plaintext.
    let stored = app
        .ferry
        .store
        .get_integration(s.account, id)
        .await
        .unwrap();
    let sealed = stored.secrets_ciphertext.unwrap();
    assert!(!sealed.windows(5).any(|w| w == b"k-123"));
}

pub async fn integration_requests_are_refused_clearly(db: Db) {
    let app = spawn_app(db).await;
    let s = setup(&app).await;
    let url = format!("/api/v1/accounts/{}/integrations", s.account);
    let post = |token: &str, body: Value| {
        let (app, url, token) = (&app, url.clone(), token.to_owned());
        async move { app.post_json(&url, Some(&token), &body).await }
    };
    assert_error(
        &post(
            &s.agent,
            json!({"inbox_id": s.evolution, "provider": "evolution", "instance_name": "x"}),
        )
        .await,
        403,
        "forbidden",
    );
    assert_error(
        &post(
            &s.admin,
            json!({"inbox_id": s.evolution, "provider": "telegram"}),
        )
        .await,
        422,
        "validation_failed",
    );
    assert_error(
        &post(&s.admin, json!({"inbox_id": s.evolution, "provider": "whatsapp_cloud", "app_secret": "a", "verify_token": "v"})).await,
        422,
        "validation_failed",
    );
    assert_error(
        &post(
            &s.admin,
            json!({"inbox_id": s.cloud, "provider": "whatsapp_cloud", "verify_token": "v"}),
        )
        .await,
        422,
        "validation_failed",
    );
    assert_error(
        &post(
            &s.admin,
            json!({"inbox_id": 999_999, "provider": "evolution", "instance_name": "x"}),
        )
        .await,
        404,
        "not_found",
    );
    let first = post(
        &s.admin,
        json!({"inbox_id": s.evolution, "provider": "evolution", "instance_name": "same"}),
    )
    .await;
    assert_eq!(first.0, 201, "{}", first.1);
    // The database refuses a second integration of one Evolution instance.
    assert_error(
        &post(
            &s.admin,
            json!({"inbox_id": s.evolution, "provider": "evolution", "instance_name": "same"}),
        )
        .await,
        409,
        "conflict",
    );
    let listed = app.get(&url, Some(&s.admin)).await.1;
    assert_eq!(
        listed["data"].as_array().unwrap().len(),
        1,
        "nothing half-written"
    );
    assert_error(&app.get(&url, Some(&s.agent)).await, 403, "forbidden");
}

pub async fn cli_manages_integrations(db: Db) {
    let app = spawn_app(db).await;
    let s = setup(&app).await;
    let account = s.account.to_string();
    let inbox = s.cloud.to_string();
    let out = app.cli(&[
        "integrations",
        "create",
        "--account",
        &account,
        "--inbox",
        &inbox,
        "--provider",
        "whatsapp_cloud",
        "--phone-number-id",
        "1234567890",
        "--app-secret",
        "shh",
        "--verify-token",
        "vt",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = created["token"].as_str().unwrap();
    assert!(
        created["webhook_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/webhooks/whatsapp_cloud/{token}"))
    );
    // Nothing told ferry where providers reach it: the URL is a loopback one, and the command says so.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "warning: providers cannot reach {} (a loopback address)",
            app.base
        )),
        "{stderr}"
    );
    let shown = app.cli(&["config", "show"]);
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains(&app.base),
        "config show names where the server listens"
    );
    // Set once in the database, the public URL is what every later command prints.
    let bad = app.cli(&["config", "set", "public-url", "ferry.example.com"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not a URL"));
    let set = app.cli(&["config", "set", "public-url", "https://ferry.example.com/"]);
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let shown = String::from_utf8_lossy(&app.cli(&["config", "show"]).stdout).into_owned();
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("webhook URLs start with")
                && l.ends_with("https://ferry.example.com")),
        "{shown}"
    );
    // The running server picks the stored URL up (it re-reads it every few seconds) without a restart.
    assert_eq!(app.ferry.public_url(), app.base);
    app.ferry
        .public
        .refresh(&app.ferry.config, app.ferry.store.as_ref())
        .await
        .unwrap();
    assert_eq!(app.ferry.public_url(), "https://ferry.example.com");
    let listed = app.cli(&["integrations", "tokens", "--json"]);
    assert!(listed.status.success());
    assert!(
        listed.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let urls: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["webhook_url"].as_str())
        .collect();
    assert!(!urls.is_empty());
    assert!(
        urls.iter()
            .all(|u| u.starts_with("https://ferry.example.com/webhooks/")),
        "{urls:?}"
    );
    let id = created["id"].to_string();
    let out = app.cli(&["integrations", "rotate", &id, "--overlap", "0s", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rotated: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_ne!(rotated["token"], created["token"]);
    assert!(
        route(&app, token).await.is_none(),
        "no overlap: the old token is gone"
    );
    let out = app.cli(&["integrations", "disable", &id]);
    assert!(out.status.success());
    assert!(
        !route(&app, rotated["token"].as_str().unwrap())
            .await
            .unwrap()
            .enabled
    );
    let out = app.cli(&[
        "integrations",
        "create",
        "--account",
        &account,
        "--inbox",
        &inbox,
        "--provider",
        "fax",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("provider"), "{stderr}");
}

/// A cache hit costs no database lookup, an unknown token is looked up once, and disable or rotate are seen at
/// once by the node that made them.
pub async fn token_routes_are_cached_and_invalidated(db: Db) {
    let app = spawn_app(db).await;
    let s = setup(&app).await;
    let url = format!("/api/v1/accounts/{}/integrations", s.account);
    let created = app
        .post_json(
            &url,
            Some(&s.admin),
            &json!({"inbox_id": s.evolution, "provider": "evolution", "instance_name": "cached"}),
        )
        .await
        .1;
    let id = created["id"].as_i64().unwrap();
    let token = WebhookToken::parse(created["token"].as_str().unwrap()).unwrap();
    let routes = &app.ferry.token_routes;
    let store = app.ferry.store.as_ref();
    let start = routes.lookups();
    for _ in 0..5 {
        let route = routes.resolve(store, &token).await.unwrap().unwrap();
        assert_eq!((route.integration_id, route.enabled), (Some(id), true));
    }
    assert_eq!(routes.lookups() - start, 1, "four of five were cache hits");

    let unknown = WebhookToken::generate();
    for _ in 0..3 {
        assert!(routes.resolve(store, &unknown).await.unwrap().is_none());
    }
    assert_eq!(
        routes.lookups() - start,
        2,
        "an unknown token is remembered as unknown"
    );

    let disabled = app
        .post_json(&format!("{url}/{id}/disable"), Some(&s.admin), &json!({}))
        .await;
    assert_eq!(disabled.0, 200, "{}", disabled.1);
    let route = routes.resolve(store, &token).await.unwrap().unwrap();
    assert!(
        !route.enabled,
        "{route:?} lookups {}",
        routes.lookups() - start
    );
    assert_eq!(routes.lookups() - start, 3, "disable invalidated the entry");

    let rotated = app
        .post_json(
            &format!("{url}/{id}/rotate"),
            Some(&s.admin),
            &json!({"overlap_seconds": 0}),
        )
        .await
        .1;
    assert!(routes.resolve(store, &token).await.unwrap().is_none());
    let new = WebhookToken::parse(rotated["token"].as_str().unwrap()).unwrap();
    assert_eq!(
        routes
            .resolve(store, &new)
            .await
            .unwrap()
            .unwrap()
            .integration_id,
        Some(id)
    );
}

/// This module's tests, with the services they need beside the database.
pub fn suite() -> Vec<crate::Test> {
    [on_both_databases!(
        [];
        integrations_issue_reveal_rotate_and_disable_tokens,
        integration_requests_are_refused_clearly,
        cli_manages_integrations,
        token_routes_are_cached_and_invalidated,
    )]
    .concat()
}
