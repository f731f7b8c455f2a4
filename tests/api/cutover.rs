//! The cut-over from legacy instance routing (README: "Cutting over from the legacy layout"), on the generated account's legacy rows: three usable
//! Evolution instances (open, connecting, close), one in error, one whose organization maps to no account, and
//! a Cloud and a 360dialog business config.

use ferry::domain::ChannelType;
use serde_json::Value;

use crate::helpers::{Db, TestApp, inbox_of, seeded, spawn_app, spawn_app_with};
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
    // Without --json: the same figures for a person, one line per table.
    let text = app.cli(&["integrations", "check"]);
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("evolution_instances: 5 rows, 0 migrated, 1 in error")
            && text.contains("whatsapp_business_configs: ")
            && text.contains("legacy route on"),
        "{text}"
    );
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
        ferry::webhooks::cutover::migrate(&app.ferry, false, None),
        ferry::webhooks::cutover::migrate(&app.ferry, false, None)
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
    let text = app.cli(&["integrations", "verify"]);
    assert!(!text.status.success(), "verify must fail when they differ");
    let printed = String::from_utf8_lossy(&text.stdout);
    assert!(
        printed.contains("they differ")
            && printed.contains(&format!("missing  evolution clinica-{account}-nova")),
        "{printed}"
    );
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
        (0..3).map(|_| ferry::webhooks::cutover::migrate(&app.ferry, false, None)),
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
    // The envelope names the instance that sends it (another instance's event is a dead letter).
    let message = |id: &str| {
        let mut body = crate::webhooks::upsert(id, "5511977776666@s.whatsapp.net", false, "oi");
        body["instance"] = format!("clinica-{account}-principal").into();
        serde_json::to_vec(&body).unwrap()
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
    // A readable time (minutes, UTC), and the way to force it in the page and in the CLI.
    assert!(
        stderr.contains(" UTC)") && !stderr.contains("+00:00"),
        "{stderr}"
    );
    assert!(stderr.contains("box, or `--force` in the CLI"), "{stderr}");
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

/// Evolution's `EventController.events`: the only names its `set` accepts, and what `enabled: true` with no
/// events subscribes.
const ALL_EVOLUTION_EVENTS: [&str; 30] = [
    "APPLICATION_STARTUP",
    "QRCODE_UPDATED",
    "MESSAGES_SET",
    "MESSAGES_UPSERT",
    "MESSAGES_EDITED",
    "MESSAGES_UPDATE",
    "MESSAGES_DELETE",
    "SEND_MESSAGE",
    "CONTACTS_SET",
    "CONTACTS_UPSERT",
    "CONTACTS_UPDATE",
    "PRESENCE_UPDATE",
    "CHATS_SET",
    "CHATS_UPSERT",
    "CHATS_UPDATE",
    "CHATS_DELETE",
    "GROUPS_UPSERT",
    "GROUP_UPDATE",
    "GROUP_PARTICIPANTS_UPDATE",
    "CONNECTION_UPDATE",
    "LABELS_EDIT",
    "LABELS_ASSOCIATION",
    "CALL",
    "TYPEBOT_START",
    "TYPEBOT_CHANGE_STATUS",
    "REMOVE_INSTANCE",
    "LOGOUT_INSTANCE",
    "INSTANCE_CREATE",
    "INSTANCE_DELETE",
    "STATUS_INSTANCE",
];

/// The events ferry subscribes at the cut-over, spelled out.
fn ferry_events() -> Value {
    serde_json::json!([
        "MESSAGES_UPSERT",
        "MESSAGES_UPDATE",
        "MESSAGES_DELETE",
        "MESSAGES_EDITED",
        "SEND_MESSAGE"
    ])
}

/// The fields of Evolution's `Webhook` row that the cut-over changes and a restore must put back.
const ROW_FIELDS: [&str; 6] = [
    "url",
    "enabled",
    "events",
    "webhookByEvents",
    "webhookBase64",
    "headers",
];

fn row_fields(row: &Value) -> Value {
    if row.is_null() {
        return Value::Null;
    }
    ROW_FIELDS
        .iter()
        .map(|f| ((*f).to_owned(), row[*f].clone()))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// A legacy instance's webhook as Evolution stores it (the fields `set` writes).
fn webhook_row(
    url: &str,
    enabled: bool,
    events: &[&str],
    by_events: bool,
    base64: bool,
    headers: Value,
) -> Value {
    serde_json::json!({"url": url, "enabled": enabled, "events": events, "webhookByEvents": by_events,
                       "webhookBase64": base64, "headers": headers})
}

/// What the fake Evolution API gets wrong for an instance.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// Setting a token URL answers 500 and writes nothing.
    RefuseToken,
    /// Setting a token URL writes it, then answers 500; every later `set` answers 500 and writes nothing, so a
    /// restore cannot go through.
    WriteTokenThenBreak,
}

type Shared<T> = std::sync::Arc<std::sync::Mutex<T>>;

struct FakeEvolution {
    base: String,
    /// Each instance's stored `Webhook` row, `null` when it has none.
    rows: Shared<std::collections::HashMap<String, Value>>,
    /// Every `set` body received, with its instance, in order.
    sets: Shared<Vec<(String, Value)>>,
    /// Requests to either endpoint.
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl FakeEvolution {
    fn row(&self, instance: &str) -> Value {
        self.rows.lock().unwrap()[instance].clone()
    }

    fn sets_of(&self, instance: &str) -> Vec<Value> {
        self.sets
            .lock()
            .unwrap()
            .iter()
            .filter(|(i, _)| i == instance)
            .map(|(_, body)| body.clone())
            .collect()
    }
}

/// An in-process Evolution API v2 whose webhook endpoints behave as Evolution's source does (auth.guard,
/// webhook.router, webhook.schema and webhook.controller `set()`): header `apikey` required (401), an unknown
/// instance is 404; `POST /webhook/set/{instance}` takes the nested body only (a flat v1 body is 400 `instance
/// requires property "webhook"`), needs `enabled` and a valid `url`, accepts only Evolution's event names,
/// writes `enabled` and `events` exactly as sent — `enabled: false` clears the events, `enabled: true` with none
/// subscribes all — leaves `headers`, `byEvents` and `base64` alone when they are not sent (Prisma's upsert of
/// `undefined`), and answers 201 with the Prisma row; `GET /webhook/find/{instance}` answers the row or `null`.
/// `rows` are the instances and their webhooks (`null`: none); `faults` inject failures.
async fn fake_evolution(
    listener: tokio::net::TcpListener,
    rows: Vec<(String, Value)>,
    faults: Vec<(String, Fault)>,
) -> FakeEvolution {
    use axum::extract::{Path, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::{get, post};
    use serde_json::json;
    use std::collections::HashMap;
    #[derive(Clone)]
    struct Fake {
        rows: Shared<HashMap<String, Value>>,
        sets: Shared<Vec<(String, Value)>>,
        faults: Shared<HashMap<String, (Fault, bool)>>,
        requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }
    type Answer = (StatusCode, axum::Json<Value>);
    fn error(status: StatusCode, message: Value) -> Answer {
        let name = status.canonical_reason().unwrap_or_default();
        (
            status,
            axum::Json(
                json!({"status": status.as_u16(), "error": name, "response": {"message": message}}),
            ),
        )
    }
    fn guard(fake: &Fake, headers: &HeaderMap, instance: &str) -> Result<(), Answer> {
        fake.requests
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let key = headers
            .get("apikey")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !key.starts_with("legacy-key-") {
            return Err(error(StatusCode::UNAUTHORIZED, json!("Unauthorized")));
        }
        if !fake.rows.lock().unwrap().contains_key(instance) {
            return Err(error(
                StatusCode::NOT_FOUND,
                json!([format!("The \"{instance}\" instance does not exist")]),
            ));
        }
        Ok(())
    }
    fn is_url(url: &str) -> bool {
        ["http://", "https://"].iter().any(|scheme| {
            url.strip_prefix(scheme)
                .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
        })
    }
    fn set(fake: &Fake, instance: &str, body: &Value) -> Answer {
        let bad = |message: &str| error(StatusCode::BAD_REQUEST, json!([message]));
        let Some(hook) = body.get("webhook").and_then(Value::as_object) else {
            return bad("instance requires property \"webhook\"");
        };
        let (Some(enabled), Some(url)) = (
            hook.get("enabled").and_then(Value::as_bool),
            hook.get("url").and_then(Value::as_str),
        ) else {
            return bad("webhook requires property \"enabled\" and \"url\"");
        };
        let events = match hook.get("events") {
            None => None,
            Some(Value::Array(events))
                if events.iter().all(|e| {
                    e.as_str()
                        .is_some_and(|e| ALL_EVOLUTION_EVENTS.contains(&e))
                }) =>
            {
                Some(events.clone())
            }
            Some(_) => return bad("webhook.events must be equal to one of the allowed values"),
        };
        for flag in ["byEvents", "base64"] {
            if hook.get(flag).is_some_and(|v| !v.is_boolean()) {
                return bad(&format!("webhook.{flag} is not of a type(s) boolean"));
            }
        }
        if hook.get("headers").is_some_and(|v| !v.is_object()) {
            return bad("webhook.headers is not of a type(s) object");
        }
        if !is_url(url) {
            return error(StatusCode::BAD_REQUEST, json!("Invalid \"url\" property"));
        }
        let token = url.contains("/webhooks/evolution/whatsapp/");
        let mut faults = fake.faults.lock().unwrap();
        let mut fail_after_write = false;
        if let Some((fault, broken)) = faults.get_mut(instance) {
            match fault {
                _ if *broken => return error(StatusCode::INTERNAL_SERVER_ERROR, json!("broken")),
                Fault::RefuseToken if token => {
                    return error(StatusCode::INTERNAL_SERVER_ERROR, json!("injected"));
                }
                Fault::WriteTokenThenBreak if token => {
                    *broken = true;
                    fail_after_write = true;
                }
                _ => {}
            }
        }
        // webhook.controller.ts set(): disabled clears the events; enabled with none subscribes all.
        let events = if !enabled {
            json!([])
        } else {
            match events {
                None => {
                    return error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        json!("Cannot read properties of undefined (reading 'length')"),
                    );
                }
                Some(events) if events.is_empty() => json!(ALL_EVOLUTION_EVENTS),
                Some(events) => Value::Array(events),
            }
        };
        let mut rows = fake.rows.lock().unwrap();
        let now = chrono::Utc::now().to_rfc3339();
        let stored = rows.get_mut(instance).expect("guarded");
        if stored.is_null() {
            *stored = json!({"id": format!("wh-{instance}"), "url": null, "headers": null, "enabled": false,
                             "events": [], "webhookByEvents": false, "webhookBase64": false,
                             "createdAt": now, "updatedAt": now, "instanceId": format!("in-{instance}")});
        }
        stored["enabled"] = json!(enabled);
        stored["events"] = events;
        stored["url"] = json!(url);
        // Prisma's upsert leaves a field sent as `undefined` as it is.
        for (field, name) in [
            ("headers", "headers"),
            ("webhookBase64", "base64"),
            ("webhookByEvents", "byEvents"),
        ] {
            if let Some(v) = hook.get(name) {
                stored[field] = v.clone();
            }
        }
        stored["updatedAt"] = json!(now);
        if fail_after_write {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!("injected after the write"),
            );
        }
        (StatusCode::CREATED, axum::Json(stored.clone()))
    }
    let fake = Fake {
        rows: Default::default(),
        sets: Default::default(),
        requests: Default::default(),
        faults: std::sync::Arc::new(std::sync::Mutex::new(
            faults.into_iter().map(|(i, f)| (i, (f, false))).collect(),
        )),
    };
    for (name, row) in rows {
        let row = if row.is_null() {
            row
        } else {
            let mut row = row;
            row["id"] = json!(format!("wh-{name}"));
            row["instanceId"] = json!(format!("in-{name}"));
            row["createdAt"] = json!("2025-01-02T03:04:05.000Z");
            row["updatedAt"] = json!("2025-01-02T03:04:05.000Z");
            row
        };
        fake.rows.lock().unwrap().insert(name, row);
    }
    let app = axum::Router::new()
        .route(
            "/webhook/find/{instance}",
            get(
                |State(fake): State<Fake>, Path(instance): Path<String>, headers: HeaderMap| async move {
                    if let Err(answer) = guard(&fake, &headers, &instance) {
                        return answer;
                    }
                    let row = fake.rows.lock().unwrap()[&instance].clone();
                    (StatusCode::OK, axum::Json(row))
                },
            ),
        )
        .route(
            "/webhook/set/{instance}",
            post(
                |State(fake): State<Fake>,
                 Path(instance): Path<String>,
                 headers: HeaderMap,
                 axum::Json(body): axum::Json<Value>| async move {
                    if let Err(answer) = guard(&fake, &headers, &instance) {
                        return answer;
                    }
                    fake.sets
                        .lock()
                        .unwrap()
                        .push((instance.clone(), body.clone()));
                    set(&fake, &instance, &body)
                },
            ),
        )
        .with_state(fake.clone());
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    FakeEvolution {
        base,
        rows: fake.rows,
        sets: fake.sets,
        requests: fake.requests,
    }
}

/// The generated account's legacy Evolution instances (backup, principal, recepcao), served by a fake Evolution
/// API with the webhooks `rows` makes of their names, migrated to integrations. The fake's URL is allowed
/// (`FERRY_MEDIA_ALLOWED_URLS`), as an installation allows its self-hosted Evolution server.
async fn cutover_setup(
    db: Db,
    rows: impl Fn(&str) -> Value,
    faults: impl Fn(&[String]) -> Vec<(String, Fault)>,
) -> (TestApp, i64, Vec<String>, FakeEvolution) {
    cutover_setup_allowing(db, rows, faults, true).await
}

async fn cutover_setup_allowing(
    db: Db,
    rows: impl Fn(&str) -> Value,
    faults: impl Fn(&[String]) -> Vec<(String, Fault)>,
    allowed: bool,
) -> (TestApp, i64, Vec<String>, FakeEvolution) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = spawn_app_with(db, |config| {
        if allowed {
            config.media_allowed_urls = base.parse().unwrap();
        }
    })
    .await;
    let (report, _) = seeded(&app, 10, 0.2).await;
    let account = report.account_id;
    let names: Vec<String> = ["backup", "principal", "recepcao"]
        .iter()
        .map(|n| format!("clinica-{account}-{n}"))
        .collect();
    let fake = fake_evolution(
        listener,
        names.iter().map(|n| (n.clone(), rows(n))).collect(),
        faults(&names),
    )
    .await;
    app.execute(format!(
        "UPDATE evolution_instances SET api_url = '{}/'",
        fake.base
    ))
    .await;
    cli_json(&app, &["integrations", "migrate", "--json"]);
    (app, account, names, fake)
}

fn legacy_url(name: &str) -> String {
    format!("https://old.example/webhooks/evolution/{name}")
}

fn is_token_url(url: &Value) -> bool {
    url.as_str()
        .is_some_and(|u| u.contains("/webhooks/evolution/whatsapp/fwh_"))
}

fn cutover_states(app: &TestApp, account: i64) -> Vec<(String, String)> {
    cli_json(
        app,
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
    .collect()
}

/// Cutover re-points instances one at a time through the Evolution API; at the injected failure on the third it
/// writes the old webhook back exactly, reads it back, and stops, and says so.
pub async fn cutover_repoints_one_at_a_time_and_restores_on_failure(db: Db) {
    let legacy = |n: &str| {
        webhook_row(
            &legacy_url(n),
            true,
            &["MESSAGES_UPSERT", "CONNECTION_UPDATE"],
            false,
            true,
            serde_json::json!({"x-legacy-secret": "s3cr3t"}),
        )
    };
    let (app, account, names, fake) = cutover_setup(db, legacy, |names| {
        vec![(names[2].clone(), Fault::RefuseToken)]
    })
    .await;
    let flat = reqwest::Client::new()
        .post(format!("{}/webhook/set/{}", fake.base, names[0]))
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
    fake.sets.lock().unwrap().clear();

    use ferry::webhooks::cutover::{CutoverOptions, CutoverScope, cutover};
    let dry_run = CutoverOptions {
        dry_run: true,
        ..Default::default()
    };
    let plan = serde_json::to_value(
        cutover(&app.ferry, CutoverScope::All, dry_run)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(plan["ok"], true, "{plan}");
    assert_eq!(plan["done"].as_array().unwrap().len(), 3);
    assert_eq!(plan["done"][0]["events"], ferry_events(), "{plan}");
    assert!(
        fake.sets.lock().unwrap().is_empty(),
        "a dry run sets nothing"
    );
    assert!(
        names
            .iter()
            .all(|n| fake.row(n)["url"] == legacy_url(n).as_str()),
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
    assert_eq!(ran["failed"]["restored"], true, "{ran}");
    assert_eq!(ran["failed"]["restore_differs"], serde_json::json!({}));
    assert_eq!(
        ran["failed"]["previous"]["headers"],
        serde_json::json!(["x-legacy-secret"]),
        "header values stay out of the report"
    );
    for name in &names[..2] {
        let hook = fake.row(name);
        assert!(is_token_url(&hook["url"]), "{hook}");
        assert_eq!(hook["enabled"], true);
        assert_eq!(hook["events"], ferry_events(), "ferry's own events");
        assert_eq!(hook["webhookBase64"], false, "no base64 media");
        assert_eq!(hook["webhookByEvents"], false, "by-events kept");
        assert_eq!(
            hook["headers"],
            serde_json::json!({"x-legacy-secret": "s3cr3t"}),
            "headers are not sent, so Evolution keeps them"
        );
    }
    assert_eq!(
        row_fields(&fake.row(&names[2])),
        row_fields(&legacy(&names[2])),
        "the previous webhook, every field"
    );
    assert_eq!(
        cutover_states(&app, account),
        vec![
            (names[0].clone(), "token".into()),
            (names[1].clone(), "token".into()),
            (names[2].clone(), "failed".into())
        ]
    );
}

/// The `set` body subscribes ferry's own events (with `MESSAGES_EDITED`) and turns base64 media off, whatever
/// the instance had; by-events is kept.
pub async fn cutover_sets_ferrys_events_and_no_base64(db: Db) {
    let rows = |n: &str| {
        if n.ends_with("-principal") {
            webhook_row(
                &legacy_url(n),
                true,
                &["MESSAGES_UPSERT", "CONNECTION_UPDATE", "QRCODE_UPDATED"],
                true,
                true,
                Value::Null,
            )
        } else {
            webhook_row(
                &legacy_url(n),
                true,
                &ALL_EVOLUTION_EVENTS,
                false,
                false,
                Value::Null,
            )
        }
    };
    let (app, account, names, fake) = cutover_setup(db, rows, |_| Vec::new()).await;
    let ran = cli_json(&app, &["integrations", "cutover", "--all", "--json"]);
    assert_eq!(
        (&ran["ok"], ran["done"].as_array().unwrap().len()),
        (&serde_json::json!(true), 3),
        "{ran}"
    );
    assert_eq!(
        serde_json::json!(ferry::webhooks::cutover::EVOLUTION_EVENTS),
        ferry_events()
    );
    for name in &names {
        let sets = fake.sets_of(name);
        assert_eq!(sets.len(), 1, "one set per instance: {sets:?}");
        let hook = &sets[0]["webhook"];
        assert!(is_token_url(&hook["url"]), "{hook}");
        assert_eq!(hook["enabled"], true);
        assert_eq!(hook["events"], ferry_events(), "{name}: {hook}");
        assert_eq!(hook["base64"], false, "{name}: {hook}");
        assert_eq!(
            hook["byEvents"],
            name.ends_with("-principal"),
            "by-events kept: {hook}"
        );
        assert!(hook.get("headers").is_none(), "{hook}");
        let stored = fake.row(name);
        assert_eq!(
            (&stored["events"], &stored["webhookBase64"]),
            (&ferry_events(), &serde_json::json!(false)),
            "{stored}"
        );
    }
    assert!(
        cutover_states(&app, account)
            .iter()
            .all(|(_, state)| state == "token")
    );
}

/// An instance whose webhook is disabled, or that has none, is reported and left alone unless
/// `--include-disabled` (CLI) / `"include_disabled": true` (HTTP), which re-points and enables it.
pub async fn cutover_skips_disabled_webhooks_unless_included(db: Db) {
    use serde_json::json;
    let rows = |n: &str| {
        if n.ends_with("-backup") {
            webhook_row(&legacy_url(n), false, &[], false, true, Value::Null)
        } else if n.ends_with("-recepcao") {
            Value::Null
        } else {
            webhook_row(
                &legacy_url(n),
                true,
                &["MESSAGES_UPSERT"],
                false,
                false,
                Value::Null,
            )
        }
    };
    let (app, account, names, fake) = cutover_setup(db, rows, |_| Vec::new()).await;
    let (backup, principal, recepcao) = (&names[0], &names[1], &names[2]);

    let out = app.cli(&["integrations", "cutover", "--all", "--json"]);
    assert!(
        out.status.success(),
        "skipping is no failure: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("skipped \"{backup}\"")) && stderr.contains("disabled"),
        "{stderr}"
    );
    let ran: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ran["ok"], true, "{ran}");
    assert_eq!(ran["include_disabled"], false);
    let done: Vec<&Value> = ran["done"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["instance"])
        .collect();
    assert_eq!(done, [principal.as_str()], "{ran}");
    let skipped = ran["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 2, "{ran}");
    assert_eq!(skipped[0]["instance"], backup.as_str());
    assert!(
        skipped[0]["reason"].as_str().unwrap().contains("disabled"),
        "{ran}"
    );
    assert_eq!(skipped[0]["webhook"]["enabled"], false);
    assert_eq!(skipped[1]["instance"], recepcao.as_str());
    assert!(
        skipped[1]["reason"]
            .as_str()
            .unwrap()
            .contains("no webhook"),
        "{ran}"
    );
    assert!(fake.sets_of(backup).is_empty() && fake.sets_of(recepcao).is_empty());
    assert_eq!(row_fields(&fake.row(backup)), row_fields(&rows(backup)));
    assert!(fake.row(recepcao).is_null());
    assert_eq!(
        cutover_states(&app, account),
        vec![
            (backup.clone(), "legacy".into()),
            (principal.clone(), "token".into()),
            (recepcao.clone(), "legacy".into())
        ]
    );
    let one = app.cli(&["integrations", "cutover", "--instance", backup, "--json"]);
    assert!(one.status.success());
    let one: Value = serde_json::from_slice(&one.stdout).unwrap();
    assert_eq!(
        (
            one["done"].as_array().unwrap().len(),
            one["skipped"].as_array().unwrap().len()
        ),
        (0, 1),
        "{one}"
    );

    // Over HTTP: the same report, and the option.
    let root = app
        .user_with_token(
            account,
            "root@ferry.test",
            ferry::domain::Role::Administrator,
            true,
        )
        .await;
    let (status, plan) = app
        .post_json(
            "/api/v1/integrations/legacy/cutover",
            Some(&root),
            &json!({"all": true, "dry_run": true}),
        )
        .await;
    assert_eq!(status, 200, "{plan}");
    assert_eq!(plan["skipped"].as_array().unwrap().len(), 2, "{plan}");
    let (status, plan) = app
        .post_json(
            "/api/v1/integrations/legacy/cutover",
            Some(&root),
            &json!({"all": true, "dry_run": true, "include_disabled": true}),
        )
        .await;
    assert_eq!(status, 200, "{plan}");
    assert_eq!(
        (
            plan["done"].as_array().unwrap().len(),
            plan["skipped"].as_array().unwrap().len()
        ),
        (3, 0),
        "{plan}"
    );
    assert!(fake.sets_of(backup).is_empty(), "dry runs set nothing");

    let ran = cli_json(
        &app,
        &[
            "integrations",
            "cutover",
            "--instance",
            backup,
            "--include-disabled",
            "--json",
        ],
    );
    assert_eq!(ran["done"][0]["instance"], backup.as_str(), "{ran}");
    assert_eq!(ran["done"][0]["previous"]["enabled"], false);
    let hook = fake.row(backup);
    assert!(is_token_url(&hook["url"]), "{hook}");
    assert_eq!(
        (&hook["enabled"], &hook["events"], &hook["webhookBase64"]),
        (&json!(true), &ferry_events(), &json!(false))
    );
    let (status, ran) = app
        .post_json(
            "/api/v1/integrations/legacy/cutover",
            Some(&root),
            &json!({"instance": recepcao, "include_disabled": true}),
        )
        .await;
    assert_eq!((status.as_u16(), &ran["ok"]), (200, &json!(true)), "{ran}");
    assert_eq!(fake.row(recepcao)["events"], ferry_events());
    assert!(
        cutover_states(&app, account)
            .iter()
            .all(|(_, state)| state == "token")
    );
}

/// A restore sends back exactly the previous webhook (a disabled one stays disabled, with its empty events,
/// by-events, base64 and headers), reads it back, and reports `restored: true` only when the read-back equals
/// it; otherwise `restored: false` with what differs.
pub async fn cutover_restore_puts_back_the_previous_webhook_exactly(db: Db) {
    use serde_json::json;
    let rows = |n: &str| {
        if n.ends_with("-backup") {
            // Disabled: Evolution cleared its events.
            webhook_row(
                &legacy_url(n),
                false,
                &[],
                true,
                true,
                json!({"x-legacy-secret": "s3cr3t"}),
            )
        } else if n.ends_with("-principal") {
            // Disabled with events left over (set before `enabled: false` cleared them): Evolution cannot store
            // that again, since `enabled: false` clears the events.
            webhook_row(
                &legacy_url(n),
                false,
                &["MESSAGES_UPSERT"],
                false,
                false,
                Value::Null,
            )
        } else {
            webhook_row(
                &legacy_url(n),
                true,
                &["MESSAGES_UPSERT", "CONNECTION_UPDATE"],
                false,
                true,
                Value::Null,
            )
        }
    };
    let (app, _, names, fake) = cutover_setup(db, rows, |names| {
        vec![
            (names[0].clone(), Fault::RefuseToken),
            (names[1].clone(), Fault::RefuseToken),
            (names[2].clone(), Fault::WriteTokenThenBreak),
        ]
    })
    .await;
    let (backup, principal, recepcao) = (&names[0], &names[1], &names[2]);
    let run = |instance: &str| {
        let out = app.cli(&[
            "integrations",
            "cutover",
            "--instance",
            instance,
            "--include-disabled",
            "--json",
        ]);
        assert!(!out.status.success(), "the injected failure stops it");
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };

    // A disabled webhook is put back disabled, with everything else it had.
    let ran = run(backup);
    let failed = &ran["failed"];
    assert_eq!(failed["instance"], backup.as_str(), "{ran}");
    assert_eq!(failed["restored"], true, "{ran}");
    assert_eq!(failed["restore_differs"], json!({}));
    assert_eq!(row_fields(&fake.row(backup)), row_fields(&rows(backup)));
    assert_eq!(fake.row(backup)["enabled"], false, "still disabled");
    let sets = fake.sets_of(backup);
    assert_eq!(sets.len(), 2, "{sets:?}");
    assert_eq!(
        sets[1],
        json!({"webhook": {"url": legacy_url(backup), "enabled": false, "events": [], "byEvents": true,
                           "base64": true, "headers": {"x-legacy-secret": "s3cr3t"}}}),
        "the restore sends the previous row back exactly"
    );

    // Evolution answers the restore with 201 but clears the events it was sent: not restored, and the report
    // says what differs.
    let ran = run(principal);
    let failed = &ran["failed"];
    assert_eq!(failed["restored"], false, "{ran}");
    assert_eq!(
        failed["restore_differs"],
        json!({"events": {"expected": ["MESSAGES_UPSERT"], "read_back": []}}),
        "{ran}"
    );
    assert_eq!(failed["restore_error"], Value::Null);
    assert_eq!(fake.row(principal)["enabled"], false);
    assert_eq!(fake.row(principal)["url"], legacy_url(principal).as_str());

    // The token URL was written before the failure and the restore is refused: the instance is left on the
    // token URL, and the report says so.
    let ran = run(recepcao);
    let failed = &ran["failed"];
    assert_eq!(failed["restored"], false, "{ran}");
    assert!(
        failed["restore_error"].as_str().unwrap().contains("500"),
        "{ran}"
    );
    let differs = failed["restore_differs"].as_object().unwrap();
    assert_eq!(differs["url"]["expected"], legacy_url(recepcao).as_str());
    assert!(is_token_url(&differs["url"]["read_back"]), "{ran}");
    assert_eq!(
        differs["webhookBase64"],
        json!({"expected": true, "read_back": false})
    );
    assert!(differs.contains_key("events"), "{ran}");
    assert!(!differs.contains_key("enabled"), "{ran}");
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
    let public = app.ferry.public_url();
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

/// An integration's `api_url` is an account administrator's to set: a cut-over to an Evolution server that the
/// installation did not allow calls nothing there — no `webhook/find` with the API key — and says why.
pub async fn cutover_calls_no_evolution_api_off_the_allowed_list(db: Db) {
    let rows = |n: &str| {
        webhook_row(
            &legacy_url(n),
            true,
            &["MESSAGES_UPSERT"],
            false,
            false,
            serde_json::json!({}),
        )
    };
    let (app, account, names, fake) = cutover_setup_allowing(db, rows, |_| Vec::new(), false).await;
    let out = app.cli(&["integrations", "cutover", "--all", "--json"]);
    assert!(!out.status.success(), "a refused cut-over exits non-zero");
    let ran: Value = serde_json::from_slice(&out.stdout).unwrap();
    let reason = ran["failed"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("URL refused")
            && reason.contains(&fake.base)
            && reason.contains("FERRY_MEDIA_ALLOWED_URLS"),
        "{ran}"
    );
    assert_eq!(
        fake.requests.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no request reached the server, so no API key"
    );
    assert!(
        names
            .iter()
            .all(|n| fake.row(n)["url"] == legacy_url(n).as_str()),
        "nothing changed"
    );
    assert!(
        cutover_states(&app, account)
            .iter()
            .all(|(_, state)| state != "token"),
        "{:?}",
        cutover_states(&app, account)
    );
}

/// This module's tests, with the services they need beside the database.
pub fn suite() -> Vec<crate::Test> {
    [on_both_databases!(
        [];
        migrate_turns_each_usable_legacy_row_into_one_integration,
        concurrent_first_migrations_make_no_duplicates,
        cleanup_waits_for_a_quiet_window_then_backs_up_and_retires,
        cutover_repoints_one_at_a_time_and_restores_on_failure,
        cutover_sets_ferrys_events_and_no_base64,
        cutover_skips_disabled_webhooks_unless_included,
        cutover_restore_puts_back_the_previous_webhook_exactly,
        cutover_endpoints_are_for_installation_administrators,
        integration_test_sends_a_signed_message_and_cleans_up,
        cutover_calls_no_evolution_api_off_the_allowed_list,
    )]
    .concat()
}
