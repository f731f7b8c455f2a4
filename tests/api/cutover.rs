//! The cut-over from legacy instance routing (SPEC 4.4), on the generated account's legacy rows: three usable
//! Evolution instances (open, connecting, close), one in error, one whose organization maps to no account, and
//! a Cloud and a 360dialog business config.

use ferry::domain::ChannelType;
use serde_json::Value;

use crate::helpers::{Db, TestApp, inbox_of, seeded, spawn_app};
use crate::webhooks::count;

fn cli_json(app: &TestApp, args: &[&str]) -> Value {
    let out = app.cli(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn keys(items: &Value) -> Vec<String> {
    let mut keys: Vec<String> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap().to_owned())
        .collect();
    keys.sort();
    keys
}

pub async fn migrate_turns_each_usable_legacy_row_into_one_integration(db: Db) {
    let app = spawn_app(db).await;
    let (report, _) = seeded(&app, 20, 0.2).await;
    let account = report.account_id;
    let inboxes_before = count(&app, "SELECT COUNT(*) FROM inboxes").await;

    let check = cli_json(&app, &["integrations", "check", "--json"]);
    assert_eq!(check["evolution_instances"]["total"], 5, "{check}");
    assert_eq!(check["evolution_instances"]["error"], 1);
    assert_eq!(check["evolution_instances"]["migrated"], 0);
    assert_eq!(
        check["evolution_instances"]["unmapped"][0],
        format!("orfa-{account}")
    );
    assert_eq!(
        check["whatsapp_business_configs"]["not_migrated"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // The dry run prints the plan and writes nothing.
    let plan = cli_json(&app, &["integrations", "migrate", "--dry-run", "--json"]);
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["migrated"].as_array().unwrap().len(), 5, "{plan}");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM integrations").await, 0);
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM inboxes").await,
        inboxes_before
    );

    let done = cli_json(&app, &["integrations", "migrate", "--json"]);
    assert_eq!(
        keys(&done["migrated"]),
        keys(&plan["migrated"]),
        "the run did what the plan said"
    );
    let skipped: Vec<(String, String)> = done["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["key"].as_str().unwrap().to_owned(),
                i["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(
        skipped
            .iter()
            .any(|(k, r)| k.ends_with("-antigo") && r.contains("error"))
    );
    assert!(
        skipped
            .iter()
            .any(|(k, r)| k.starts_with("orfa-") && r.contains("maps to no account"))
    );
    assert!(done["errors"].as_array().unwrap().is_empty());

    let by_key = |key: String| {
        done["migrated"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["key"] == key.as_str())
            .cloned()
            .unwrap_or_else(|| panic!("{key} not migrated: {done}"))
    };
    let principal = by_key(format!("clinica-{account}-principal"));
    assert_eq!(
        principal["inbox_id"],
        inbox_of(&report, ChannelType::Evolution),
        "same number, same inbox"
    );
    assert_eq!(principal["status"], "active");
    let recepcao = by_key(format!("clinica-{account}-recepcao"));
    assert_eq!(recepcao["status"], "pending");
    assert_ne!(
        recepcao["inbox_id"], principal["inbox_id"],
        "another number gets an inbox of its own"
    );
    assert_eq!(
        by_key(format!("clinica-{account}-backup"))["status"],
        "disconnected"
    );
    let cloud = done["migrated"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["provider"] == "whatsapp_cloud")
        .unwrap();
    assert_eq!(
        cloud["inbox_id"],
        inbox_of(&report, ChannelType::WhatsappCloud)
    );

    // The migrated instance routes by token now, and the legacy URL reaches the same inbox.
    let listed = cli_json(
        &app,
        &[
            "integrations",
            "list",
            "--account",
            &account.to_string(),
            "--json",
        ],
    );
    assert_eq!(listed.as_array().unwrap().len(), 5);
    let principal_row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == principal["integration_id"])
        .unwrap();
    assert_eq!(
        principal_row["instance_name"],
        format!("clinica-{account}-principal")
    );
    assert_eq!(
        principal_row["secrets_set"], true,
        "the legacy API key, sealed"
    );

    // An integration without a token (made by an older tool) gets one from the next run.
    app.execute(format!(
        "INSERT INTO integrations (account_id, inbox_id, provider, instance_name, status) \
             VALUES ({account}, {}, 'evolution', 'sem-token', 'active')",
        inbox_of(&report, ChannelType::Evolution)
    ))
    .await;
    let check = cli_json(&app, &["integrations", "check", "--json"]);
    assert_eq!(
        check["integrations_without_usable_token"][0]["key"], "sem-token",
        "{check}"
    );
    let fixed = cli_json(&app, &["integrations", "migrate", "--json"]);
    let updated = fixed["updated"].as_array().unwrap();
    assert_eq!(updated.len(), 1, "{fixed}");
    assert_eq!(updated[0]["key"], "sem-token");
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM integrations WHERE token_hash IS NULL"
        )
        .await,
        0
    );
    app.execute("DELETE FROM integrations WHERE instance_name = 'sem-token'")
        .await;

    // Twice, and twice at once: nothing new, nothing duplicated.
    let again = cli_json(&app, &["integrations", "migrate", "--json"]);
    assert!(again["migrated"].as_array().unwrap().is_empty(), "{again}");
    assert_eq!(again["unchanged"].as_array().unwrap().len(), 5);
    let inboxes_after = count(&app, "SELECT COUNT(*) FROM inboxes").await;
    let (a, b) = tokio::join!(
        ferry::webhooks::cutover::migrate(&app.ferry, false),
        ferry::webhooks::cutover::migrate(&app.ferry, false)
    );
    assert!(a.unwrap().migrated.is_empty() && b.unwrap().migrated.is_empty());
    assert_eq!(count(&app, "SELECT COUNT(*) FROM integrations").await, 5);
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM inboxes").await,
        inboxes_after
    );

    let check = cli_json(&app, &["integrations", "check", "--json"]);
    assert_eq!(check["evolution_instances"]["migrated"], 3, "{check}");
    assert_eq!(check["whatsapp_business_configs"]["migrated"], 2);

    // Every webhook URL, masked; revealed only on request, and each reveal audited.
    let masked = cli_json(&app, &["integrations", "tokens", "--json"]);
    assert_eq!(masked.as_array().unwrap().len(), 5);
    for t in masked.as_array().unwrap() {
        let url = t["webhook_url"].as_str().unwrap();
        assert!(url.ends_with('…') && url.contains("/fwh_"), "{url}");
    }
    let reveals_before = count(
        &app,
        "SELECT COUNT(*) FROM audit_events WHERE action = 'integration.reveal'",
    )
    .await;
    let revealed = cli_json(&app, &["integrations", "tokens", "--reveal", "--json"]);
    for t in revealed.as_array().unwrap() {
        let url = t["webhook_url"].as_str().unwrap();
        let token = &url[url.find("fwh_").unwrap()..];
        assert!(ferry::domain::WebhookToken::parse(token).is_ok(), "{url}");
    }
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM audit_events WHERE action = 'integration.reveal'"
        )
        .await,
        reveals_before + 5
    );

    // Verify compares keys and fields, not totals: a hand-edited row and a new one are both found, although
    // the totals still match (one instance put in error, one added).
    let verified = cli_json(&app, &["integrations", "verify", "--json"]);
    assert_eq!(verified["agree"], true, "{verified}");
    let edits = [
        format!(
            "UPDATE evolution_instances SET status = 'close' WHERE instance_name = 'clinica-{account}-principal'"
        ),
        format!(
            "UPDATE evolution_instances SET status = 'error' WHERE instance_name = 'clinica-{account}-backup'"
        ),
        format!(
            "INSERT INTO evolution_instances (instance_name, organization_id, status, phone_number) \
             VALUES ('clinica-{account}-nova', 'org-{account}', 'open', '+551140020001')"
        ),
    ];
    for sql in edits {
        app.execute(sql).await;
    }
    let out = app.cli(&["integrations", "verify", "--json"]);
    assert!(!out.status.success(), "verify must fail when they differ");
    let verified: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        verified["legacy_rows"], verified["migrated_rows"],
        "equal totals: {verified}"
    );
    assert_eq!(
        keys(&verified["missing"]),
        [format!("clinica-{account}-nova")]
    );
    assert_eq!(
        keys(&verified["extra"]),
        [format!("clinica-{account}-backup")]
    );
    assert_eq!(
        verified["different"][0]["key"],
        format!("clinica-{account}-principal")
    );
    assert_eq!(
        verified["different"][0]["fields"]["status"]["legacy"],
        "disconnected"
    );
}

/// Concurrent first runs on a fresh installation: the unique key keeps one integration per legacy row, and an
/// inbox a losing run created for it is removed again.
pub async fn concurrent_first_migrations_make_no_duplicates(db: Db) {
    let app = spawn_app(db).await;
    seeded(&app, 10, 0.2).await;
    let inboxes_before = count(&app, "SELECT COUNT(*) FROM inboxes").await;
    let runs = futures::future::join_all(
        (0..3).map(|_| ferry::webhooks::cutover::migrate(&app.ferry, false)),
    )
    .await;
    let migrated: usize = runs.into_iter().map(|r| r.unwrap().migrated.len()).sum();
    assert_eq!(migrated, 5, "each row migrated by exactly one run");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM integrations").await, 5);
    // recepcao and backup have numbers no inbox has: one new inbox each, whoever won.
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM inboxes").await,
        inboxes_before + 2
    );
}

/// Cleanup refuses while the legacy route saw traffic within the quiet window (the legacy route keeps working),
/// and after it: a JSON Lines backup of every legacy row (owner-only), the route answering 410, the tables gone,
/// the token routes untouched.
pub async fn cleanup_waits_for_a_quiet_window_then_backs_up_and_retires(db: Db) {
    let app = spawn_app(db).await;
    let (report, _) = seeded(&app, 10, 0.2).await;
    let account = report.account_id;
    cli_json(&app, &["integrations", "migrate", "--json"]);
    let legacy = format!("/webhooks/evolution/clinica-{account}-principal");
    let message = |id: &str| {
        serde_json::to_vec(&crate::webhooks::upsert(
            id,
            "5511977776666@s.whatsapp.net",
            false,
            "oi",
        ))
        .unwrap()
    };
    assert_eq!(
        crate::webhooks::post_raw(&app, &legacy, &message("CLN1"))
            .await
            .0,
        200
    );

    let out = app.cli(&["integrations", "cleanup", "--json"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("clinica-{account}-principal (1 hits")),
        "{stderr}"
    );
    assert_eq!(
        crate::webhooks::post_raw(&app, &legacy, &message("CLN2"))
            .await
            .0,
        200,
        "the legacy route keeps working until cleanup"
    );

    // Three weeks later (the hits moved back in time): quiet.
    let old = (chrono::Utc::now() - chrono::Duration::days(21)).date_naive();
    app.execute(format!("UPDATE legacy_route_hits SET day = '{old}'"))
        .await;
    let legacy_rows = count(&app, "SELECT COUNT(*) FROM evolution_instances").await
        + count(&app, "SELECT COUNT(*) FROM whatsapp_business_configs").await
        + count(&app, "SELECT COUNT(*) FROM organization_accounts").await;
    let done = cli_json(&app, &["integrations", "cleanup", "--json"]);
    assert_eq!(done["rows_backed_up"], legacy_rows, "{done}");
    let backup = std::path::PathBuf::from(done["backup"].as_str().unwrap());
    let text = std::fs::read_to_string(&backup).unwrap();
    assert_eq!(text.lines().count() as i64, legacy_rows);
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert!(first["table"].is_string() && first["row"].is_object());
    assert!(
        text.contains("legacy-key-clinica-"),
        "the backup keeps the legacy secrets"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    assert!(!app.ferry.store.legacy_tables_exist().await.unwrap());
    let (status, gone) = crate::webhooks::post_raw(&app, &legacy, &message("CLN3")).await;
    assert_eq!(
        (status, &gone["error"]["code"]),
        (410, &serde_json::json!("gone"))
    );

    // The token route is untouched; the cut-over commands say the tables are gone.
    let principal = cli_json(
        &app,
        &[
            "integrations",
            "list",
            "--account",
            &account.to_string(),
            "--json",
        ],
    )
    .as_array()
    .unwrap()
    .iter()
    .find(|i| i["instance_name"] == format!("clinica-{account}-principal").as_str())
    .unwrap()["id"]
        .clone();
    let revealed = cli_json(
        &app,
        &["integrations", "reveal", &principal.to_string(), "--json"],
    );
    let url = revealed["webhook_url"].as_str().unwrap();
    // The CLI builds it from its own FERRY_PUBLIC_URL: the path is what routes.
    let path = &url[url.find("/webhooks/").unwrap()..];
    let (status, stored) = crate::webhooks::post_raw(&app, path, &message("CLN4")).await;
    assert_eq!(
        (status, &stored["status"]),
        (200, &serde_json::json!("stored")),
        "{stored}"
    );
    let out = app.cli(&["integrations", "check", "--json"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("removed by `ferry integrations cleanup`")
    );
}

/// An in-process Evolution API v2 following its documented webhook endpoints: `GET /webhook/find/{instance}`,
/// `POST /webhook/set/{instance}` with the nested body (a flat v1 body is refused with 400), header `apikey`;
/// setting a token URL on `fail_instance` answers 500 (an injected failure).
async fn fake_evolution(
    instances: &[String],
    fail_instance: String,
) -> (
    String,
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Value>>>,
) {
    use axum::extract::{Path, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::{get, post};
    use serde_json::json;
    type Hooks = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Value>>>;
    let hooks: Hooks = Default::default();
    for name in instances {
        hooks.lock().unwrap().insert(
            name.clone(),
            json!({"url": format!("https://old.example/webhooks/evolution/{name}"), "enabled": true,
                   "events": ["MESSAGES_UPSERT", "CONNECTION_UPDATE"], "webhookByEvents": false,
                   "webhookBase64": true}),
        );
    }
    let app = axum::Router::new()
        .route(
            "/webhook/find/{instance}",
            get(|State(hooks): State<Hooks>, Path(instance): Path<String>| async move {
                axum::Json(hooks.lock().unwrap().get(&instance).cloned().unwrap_or(json!({})))
            }),
        )
        .route(
            "/webhook/set/{instance}",
            post({
                let fail_instance = fail_instance.clone();
                move |State(hooks): State<Hooks>, Path(instance): Path<String>, headers: HeaderMap, axum::Json(body): axum::Json<Value>| async move {
                    let key = headers.get("apikey").and_then(|v| v.to_str().ok()).unwrap_or_default();
                    if !key.starts_with("legacy-key-") {
                        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "Unauthorized"})));
                    }
                    let Some(hook) = body.get("webhook") else {
                        return (StatusCode::BAD_REQUEST, axum::Json(json!({"status": 400, "error": "Bad Request",
                            "response": {"message": ["instance requires property \"webhook\""]}})));
                    };
                    let url = hook["url"].as_str().unwrap_or_default().to_owned();
                    if instance == fail_instance && url.contains("/whatsapp/") {
                        return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({"error": "injected"})));
                    }
                    let row = json!({"url": url, "enabled": hook["enabled"], "events": hook["events"],
                                     "webhookByEvents": hook["byEvents"], "webhookBase64": hook["base64"]});
                    hooks.lock().unwrap().insert(instance, row.clone());
                    (StatusCode::CREATED, axum::Json(row))
                }
            }),
        )
        .with_state(hooks.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, hooks)
}

/// Cutover re-points instances one at a time through the Evolution API, keeping their other webhook settings;
/// at the injected failure on the third it puts the old URL back and stops, and says so.
pub async fn cutover_repoints_one_at_a_time_and_restores_on_failure(db: Db) {
    let app = spawn_app(db).await;
    let (report, _) = seeded(&app, 10, 0.2).await;
    let account = report.account_id;
    let names: Vec<String> = ["backup", "principal", "recepcao"]
        .iter()
        .map(|n| format!("clinica-{account}-{n}"))
        .collect();
    let (base, hooks) = fake_evolution(&names, names[2].clone()).await;
    let flat = reqwest::Client::new()
        .post(format!("{base}/webhook/set/{}", names[0]))
        .header("apikey", "legacy-key-x")
        .json(&serde_json::json!({"enabled": true, "url": "https://flat.example"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        flat.status(),
        400,
        "the fake refuses v1's flat body, as v2 does"
    );
    app.execute(format!(
        "UPDATE evolution_instances SET api_url = '{base}/'"
    ))
    .await;
    cli_json(&app, &["integrations", "migrate", "--json"]);

    use ferry::webhooks::cutover::{CutoverScope, cutover};
    let plan = cutover(&app.ferry, CutoverScope::All, true).await.unwrap();
    assert_eq!(plan["ok"], true, "{plan}");
    assert_eq!(plan["done"].as_array().unwrap().len(), 3);
    assert!(
        hooks.lock().unwrap().values().all(|h| h["url"]
            .as_str()
            .unwrap()
            .starts_with("https://old.example")),
        "a dry run changes nothing"
    );
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM integrations WHERE provider = 'evolution' AND cutover_state = 'legacy'").await,
        3,
        "migrated instances still post to the legacy URL until re-pointed"
    );

    let out = app.cli(&["integrations", "cutover", "--all", "--json"]);
    assert!(!out.status.success(), "a stopped cutover exits non-zero");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&names[2]) && stderr.contains("500"),
        "{stderr}"
    );
    let ran: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ran["done"].as_array().unwrap().len(), 2, "{ran}");
    assert_eq!(ran["failed"]["instance"], names[2].as_str());
    assert_eq!(ran["failed"]["restored"], true);
    let hooks = hooks.lock().unwrap().clone();
    for name in &names[..2] {
        let hook = &hooks[name];
        assert!(
            hook["url"]
                .as_str()
                .unwrap()
                .contains("/webhooks/evolution/whatsapp/fwh_"),
            "{hook}"
        );
        assert_eq!(hook["webhookBase64"], true, "other settings kept");
        assert_eq!(
            hook["events"],
            serde_json::json!(["MESSAGES_UPSERT", "CONNECTION_UPDATE"])
        );
    }
    assert!(
        hooks[&names[2]]["url"]
            .as_str()
            .unwrap()
            .starts_with("https://old.example"),
        "restored"
    );
    let states: Vec<(String, String)> = cli_json(
        &app,
        &[
            "integrations",
            "list",
            "--account",
            &account.to_string(),
            "--json",
        ],
    )
    .as_array()
    .unwrap()
    .iter()
    .filter(|i| i["provider"] == "evolution")
    .map(|i| {
        (
            i["instance_name"].as_str().unwrap().to_owned(),
            i["cutover_state"].as_str().unwrap().to_owned(),
        )
    })
    .collect();
    assert_eq!(
        states,
        vec![
            (names[0].clone(), "token".into()),
            (names[1].clone(), "token".into()),
            (names[2].clone(), "failed".into())
        ]
    );
}

/// The same cut-over over HTTP, for installation administrators only.
pub async fn cutover_endpoints_are_for_installation_administrators(db: Db) {
    use serde_json::json;
    let app = spawn_app(db).await;
    let (report, account_admin) = seeded(&app, 10, 0.2).await;
    let root = app
        .user_with_token(
            report.account_id,
            "root@ferry.test",
            ferry::domain::Role::Administrator,
            true,
        )
        .await;
    let (status, refused) = app
        .get("/api/v1/integrations/legacy/check", Some(&account_admin))
        .await;
    crate::helpers::assert_error(&(status, refused), 403, "forbidden");

    let (status, check) = app
        .get(
            "/api/v1/integrations/legacy/check?quiet_days=7",
            Some(&root),
        )
        .await;
    assert_eq!(status, 200, "{check}");
    assert_eq!(check["legacy_route"]["quiet_days"], 7);
    let (status, verified) = app
        .get("/api/v1/integrations/legacy/verify", Some(&root))
        .await;
    assert_eq!(
        (
            status.as_u16(),
            verified["missing"].as_array().unwrap().len()
        ),
        (409, 5)
    );
    let (status, plan) = app
        .post_json(
            "/api/v1/integrations/legacy/migrate",
            Some(&root),
            &json!({"dry_run": true}),
        )
        .await;
    assert_eq!(
        (status.as_u16(), plan["migrated"].as_array().unwrap().len()),
        (200, 5)
    );
    assert_eq!(count(&app, "SELECT COUNT(*) FROM integrations").await, 0);
    let (status, _) = app
        .post_json(
            "/api/v1/integrations/legacy/migrate",
            Some(&root),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, verified) = app
        .get("/api/v1/integrations/legacy/verify", Some(&root))
        .await;
    assert_eq!((status.as_u16(), &verified["agree"]), (200, &json!(true)));
    let (status, tokens) = app
        .get("/api/v1/integrations/legacy/tokens", Some(&root))
        .await;
    assert_eq!(
        (status.as_u16(), tokens.as_array().unwrap().len()),
        (200, 5)
    );
    let ambiguous = app
        .post_json(
            "/api/v1/integrations/legacy/cutover",
            Some(&root),
            &json!({"dry_run": true}),
        )
        .await;
    crate::helpers::assert_error(&ambiguous, 422, "validation_failed");
    let (status, refused) = app
        .post_json(
            "/api/v1/integrations/legacy/cleanup",
            Some(&account_admin),
            &json!({}),
        )
        .await;
    crate::helpers::assert_error(&(status, refused), 403, "forbidden");
}

/// `ferry integrations test` against a running `ferry serve`: a signed synthetic message per provider is
/// accepted, the second one is routed from the server's cache, and nothing of it stays behind.
pub async fn integration_test_sends_a_signed_message_and_cleans_up(db: Db) {
    use serde_json::json;
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    let mut ids = Vec::new();
    for (channel, integration) in [
        (
            "evolution",
            json!({"provider": "evolution", "instance_name": "teste"}),
        ),
        (
            "whatsapp_cloud",
            json!({"provider": "whatsapp_cloud", "phone_number_id": "777", "app_secret": "s", "verify_token": "v"}),
        ),
        (
            "twilio_whatsapp",
            json!({"provider": "twilio_whatsapp", "auth_token": "tw"}),
        ),
    ] {
        let (created, _) = crate::webhooks::connected(&app, &f, channel, integration).await;
        ids.push(created["id"].to_string());
    }
    let (_server, base) = app.serve_process().await;
    let public = app.ferry.config.public_url();
    let contacts = count(&app, "SELECT COUNT(*) FROM contacts").await;
    for id in &ids {
        let run = || {
            let out = app.cli_with_env(
                &["integrations", "test", id, "--url", &base, "--json"],
                &[("FERRY_PUBLIC_URL", public.as_str())],
            );
            assert!(
                out.status.success(),
                "{id}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice::<Value>(&out.stdout).unwrap()
        };
        let first = run();
        assert_eq!(
            (&first["ok"], &first["messages_removed"]),
            (&json!(true), &json!(1)),
            "{first}"
        );
        assert_eq!(
            first["cache_hit"], false,
            "a fresh server looks the token up once"
        );
        let second = run();
        assert_eq!(second["cache_hit"], true, "{second}");
        assert!(second["latency_ms"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM messages").await,
        0,
        "test messages removed"
    );
    assert_eq!(count(&app, "SELECT COUNT(*) FROM conversations").await, 0);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM contacts").await, contacts);
}
