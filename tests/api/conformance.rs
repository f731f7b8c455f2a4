//! Webhooks shaped exactly as the providers document and send them (Meta's webhook references, Evolution API
//! 2.3's source, Twilio's SDK vectors, 360dialog's docs): where each message lands (inbox, contact,
//! conversation), with what text and attributes, and what the dead letters hold.

use serde_json::{Value, json};

use crate::helpers::{Db, Fixture, TestApp, assert_same_rows, spawn_app, spawn_app_with};
use crate::webhooks::{connected, post_raw, upsert};

async fn column(app: &TestApp, sql: &str) -> Vec<Option<String>> {
    app.texts(sql).await
}

async fn one(app: &TestApp, sql: &str) -> String {
    let rows = column(app, sql).await;
    assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
    rows[0].clone().unwrap_or_default()
}

/// `(inbox_id, contact_id, conversation_id, message_type, content, content_attributes)` of the message the
/// provider calls `source_id`.
async fn message(app: &TestApp, source_id: &str) -> (i64, i64, i64, String, Option<String>, Value) {
    let row = one(
        app,
        &format!(
            "SELECT CAST(c.inbox_id AS TEXT) || '|' || CAST(c.contact_id AS TEXT) || '|' || CAST(c.id AS TEXT) \
             || '|' || m.message_type || '|' || COALESCE(m.content, '<null>') || '|' || CAST(m.content_attributes AS TEXT) \
             FROM messages m JOIN conversations c ON c.id = m.conversation_id WHERE m.source_id = '{source_id}'"
        ),
    )
    .await;
    let parts: Vec<&str> = row.splitn(6, '|').collect();
    (
        parts[0].parse().unwrap(),
        parts[1].parse().unwrap(),
        parts[2].parse().unwrap(),
        parts[3].to_owned(),
        Some(parts[4].to_owned()).filter(|c| c != "<null>"),
        serde_json::from_str(parts[5]).unwrap(),
    )
}

async fn post_with(
    app: &TestApp,
    path: &str,
    body: &[u8],
    headers: &[(&str, String)],
) -> (u16, Value) {
    let mut req = app
        .client
        .post(format!("{}{path}", app.base))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

const SECRET: &str = "app-secret";

/// A Cloud integration of the business number `phone_number_id`, in an inbox of its own; its id, inbox and path.
async fn cloud(app: &TestApp, f: &Fixture, provider: &str, number: &str) -> (i64, i64, String) {
    let mut integration = json!({"provider": provider, "phone_number_id": number});
    if provider == "whatsapp_cloud" {
        integration["app_secret"] = json!(SECRET);
        integration["verify_token"] = json!("vt");
    }
    let (created, hook) = connected(app, f, provider, integration).await;
    (
        created["id"].as_i64().unwrap(),
        created["inbox_id"].as_i64().unwrap(),
        hook,
    )
}

async fn post_cloud(app: &TestApp, hook: &str, body: &Value) -> (u16, Value) {
    let raw = serde_json::to_vec(body).unwrap();
    let signature = ferry::webhooks::cloud::sign(SECRET.as_bytes(), &raw);
    post_with(app, hook, &raw, &[("x-hub-signature-256", signature)]).await
}

/// Meta's `object/entry/changes/value` envelope with one `value` per (field, value).
fn delivery(changes: Vec<(&str, Value)>) -> Value {
    json!({"object": "whatsapp_business_account", "entry": changes.into_iter().map(|(field, value)| json!({
        "id": "102290129340398", "changes": [{"field": field, "value": value}]})).collect::<Vec<_>>()})
}

fn value(number: &str, contacts: Value, messages: Value) -> Value {
    json!({"messaging_product": "whatsapp",
           "metadata": {"display_phone_number": "15550001111", "phone_number_id": number},
           "contacts": contacts, "messages": messages})
}

fn text(from: &str, id: &str, body: &str) -> Value {
    json!({"from": from, "id": id, "timestamp": "1767225600", "type": "text", "text": {"body": body}})
}

/// Item 1. One app callback URL receives every number of the app (and a 360dialog WABA webhook every number
/// of the WABA): each `value` is stored by the integration of the account that owns its `phone_number_id`,
/// one nobody owns is answered 200 and kept as a dead letter, never stored in the receiving inbox; once its
/// integration exists, a replay stores it there.
pub async fn values_are_routed_by_phone_number_id(db: Db) {
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    let (_, inbox_a, hook_a) = cloud(&app, &f, "whatsapp_cloud", "111").await;
    let (_, inbox_b, _) = cloud(&app, &f, "whatsapp_cloud", "222").await;
    let customer = json!([{"profile": {"name": "Maria"}, "wa_id": "5511988887777"}]);
    let body = delivery(vec![
        (
            "messages",
            value(
                "111",
                customer.clone(),
                json!([text("5511988887777", "wamid.A1", "para A")]),
            ),
        ),
        (
            "messages",
            value(
                "222",
                customer.clone(),
                json!([text("5511988887777", "wamid.B1", "para B")]),
            ),
        ),
        (
            "messages",
            value(
                "999",
                customer.clone(),
                json!([text("5511988887777", "wamid.X1", "de ninguém")]),
            ),
        ),
    ]);
    let (status, answer) = post_cloud(&app, &hook_a, &body).await;
    assert_eq!(status, 200, "{answer}");
    let statuses: Vec<&str> = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["stored", "stored", "dead_letter"], "{answer}");
    assert_eq!(message(&app, "wamid.A1").await.0, inbox_a);
    assert_eq!(
        message(&app, "wamid.B1").await.0,
        inbox_b,
        "stored in the inbox of its number, not of the URL"
    );
    assert!(
        column(
            &app,
            "SELECT content FROM messages WHERE source_id = 'wamid.X1'"
        )
        .await
        .is_empty()
    );
    assert_eq!(
        one(
            &app,
            "SELECT reason || ' ' || CAST(status_code AS TEXT) FROM webhook_dead_letters"
        )
        .await,
        "unknown phone_number_id 200"
    );

    // A re-delivery stores nothing twice, and keeps the unknown number once more.
    let (_, again) = post_cloud(&app, &hook_a, &body).await;
    assert_eq!(again["results"][1]["status"], "duplicate", "{again}");
    assert_eq!(again["results"][2]["status"], "dead_letter", "{again}");
    assert_eq!(
        one(
            &app,
            "SELECT CAST(COUNT(*) AS TEXT) FROM webhook_dead_letters"
        )
        .await,
        "2"
    );

    // The number's integration is created: the replay stores the kept delivery there.
    let (_, inbox_c, _) = cloud(&app, &f, "whatsapp_cloud", "999").await;
    let id = one(
        &app,
        "SELECT CAST(MIN(id) AS TEXT) FROM webhook_dead_letters",
    )
    .await;
    let out = app.cli(&["webhooks", "dead-letters", "--replay", &id, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(message(&app, "wamid.X1").await.0, inbox_c);
    assert_eq!(
        one(&app, "SELECT CAST(COUNT(*) AS TEXT) FROM messages").await,
        "3"
    );

    // A number of another account is not this account's to store.
    let other = app
        .post_json(
            &format!("/api/v1/accounts/{}/inboxes", f.other_account_id),
            Some(&f.other_admin_token),
            &json!({"name": "outra", "channel_type": "whatsapp_cloud"}),
        )
        .await
        .1["id"]
        .clone();
    let (status, _) = app
        .post_json(
            &format!("/api/v1/accounts/{}/integrations", f.other_account_id),
            Some(&f.other_admin_token),
            &json!({"provider": "whatsapp_cloud", "inbox_id": other, "phone_number_id": "333", "app_secret": SECRET, "verify_token": "vt"}),
        )
        .await;
    assert_eq!(status, 201);
    let foreign = delivery(vec![(
        "messages",
        value(
            "333",
            customer.clone(),
            json!([text("5511988887777", "wamid.F1", "outra conta")]),
        ),
    )]);
    let (status, answer) = post_cloud(&app, &hook_a, &foreign).await;
    assert_eq!(
        (status, &answer["results"][0]["status"]),
        (200, &json!("dead_letter"))
    );

    // 360dialog's WABA webhook: the same rule among 360dialog integrations.
    let (_, d1_inbox, d1_hook) = cloud(&app, &f, "dialog360", "444").await;
    let (_, d2_inbox, _) = cloud(&app, &f, "dialog360", "555").await;
    let waba = delivery(vec![
        (
            "messages",
            value(
                "555",
                customer.clone(),
                json!([text("5511988887777", "wamid.D2", "para o segundo número")]),
            ),
        ),
        (
            "messages",
            value(
                "444",
                customer,
                json!([text("5511988887777", "wamid.D1", "para o primeiro")]),
            ),
        ),
    ]);
    let (status, answer) =
        post_with(&app, &d1_hook, &serde_json::to_vec(&waba).unwrap(), &[]).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(message(&app, "wamid.D2").await.0, d2_inbox);
    assert_eq!(message(&app, "wamid.D1").await.0, d1_inbox);
}

/// Item 1, for integrations created before numbers were routed: one without `phone_number_id` keeps storing
/// what arrives at its URL for a number nobody owns, while a number another integration owns goes there.
pub async fn an_integration_without_its_number_keeps_its_traffic(db: Db) {
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    let (created, hook) = connected(
        &app,
        &f,
        "whatsapp_cloud",
        json!({"provider": "whatsapp_cloud", "app_secret": SECRET, "verify_token": "vt"}),
    )
    .await;
    let unnumbered_inbox = created["inbox_id"].as_i64().unwrap();
    let (_, owner_inbox, _) = cloud(&app, &f, "whatsapp_cloud", "222").await;
    let customer = json!([{"profile": {"name": "Maria"}, "wa_id": "5511988887777"}]);
    let body = delivery(vec![
        (
            "messages",
            value(
                "777",
                customer.clone(),
                json!([text("5511988887777", "wamid.N1", "sem dono")]),
            ),
        ),
        (
            "messages",
            value(
                "222",
                customer,
                json!([text("5511988887777", "wamid.N2", "do 222")]),
            ),
        ),
    ]);
    let (status, answer) = post_cloud(&app, &hook, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["results"][0]["status"], "stored", "{answer}");
    assert_eq!(message(&app, "wamid.N1").await.0, unnumbered_inbox);
    assert_eq!(message(&app, "wamid.N2").await.0, owner_inbox);
    assert!(
        column(&app, "SELECT reason FROM webhook_dead_letters")
            .await
            .is_empty()
    );
}

/// Item 2. Users with a WhatsApp username: Meta omits `from`/`wa_id` and sends `from_user_id`/`user_id`
/// (a BSUID); statuses carry `recipient_user_id`. Stored, and when a payload names both the number and the
/// BSUID, both lead to one contact and conversation. A BSUID is not portable: a migration to another
/// provider keeps it as it is and warns.
pub async fn username_users_are_stored_and_linked_to_their_number(db: Db) {
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    let (_, inbox, hook) = cloud(&app, &f, "whatsapp_cloud", "111").await;
    let bsuid = "US.13491208655302741918";
    let both = delivery(vec![(
        "messages",
        value(
            "111",
            json!([{"profile": {"name": "Ana", "username": "ana.s"}, "wa_id": "5511977776666", "user_id": bsuid}]),
            json!([{"from": "5511977776666", "from_user_id": bsuid, "id": "wamid.U1", "timestamp": "1767225600",
                    "type": "text", "text": {"body": "com número"}}]),
        ),
    )]);
    assert_eq!(post_cloud(&app, &hook, &both).await.0, 200);
    let only_bsuid = delivery(vec![(
        "messages",
        value(
            "111",
            json!([{"profile": {"name": "Ana", "username": "ana.s"}, "user_id": bsuid}]),
            json!([{"from_user_id": bsuid, "id": "wamid.U2", "timestamp": "1767225660", "type": "text",
                    "text": {"body": "só com o nome de usuário"}}]),
        ),
    )]);
    let (status, answer) = post_cloud(&app, &hook, &only_bsuid).await;
    assert_eq!(
        (status, &answer["results"][0]["status"]),
        (200, &json!("stored")),
        "{answer}"
    );
    let (in1, contact1, conv1, ..) = message(&app, "wamid.U1").await;
    let (in2, contact2, conv2, _, content, _) = message(&app, "wamid.U2").await;
    assert_eq!((in1, in2), (inbox, inbox));
    assert_eq!(
        (contact1, conv1),
        (contact2, conv2),
        "one person, one conversation"
    );
    assert_eq!(content.as_deref(), Some("só com o nome de usuário"));
    assert_eq!(
        one(
            &app,
            &format!(
                "SELECT source_id || ' ' || wa_alias FROM contact_inboxes WHERE inbox_id = {inbox}"
            )
        )
        .await,
        format!("5511977776666 {bsuid}")
    );

    // Someone who never shared a number: a contact of their own, addressed by the BSUID.
    let stranger = delivery(vec![(
        "messages",
        value(
            "111",
            json!([{"profile": {"name": "Bia"}, "user_id": "US.ENT.5550001", "parent_user_id": "US.ENT.5550001"}]),
            json!([{"from_user_id": "US.ENT.5550001", "id": "wamid.U3", "timestamp": "1767225700", "type": "text",
                    "text": {"body": "oi"}}]),
        ),
    )]);
    assert_eq!(post_cloud(&app, &hook, &stranger).await.0, 200);
    let (_, contact3, ..) = message(&app, "wamid.U3").await;
    assert_ne!(contact3, contact1);
    assert_eq!(
        one(
            &app,
            &format!(
                "SELECT COALESCE(c.name, '') || ' ' || ci.source_id FROM contacts c \
             JOIN contact_inboxes ci ON ci.contact_id = c.id WHERE c.id = {contact3}"
            )
        )
        .await,
        "Bia US.ENT.5550001"
    );
    // A receipt of a username user names them only by BSUID (no `recipient_id`): applied to the message.
    app.execute("UPDATE messages SET status = 'sent' WHERE source_id = 'wamid.U3'")
        .await;
    let receipt = delivery(vec![(
        "messages",
        json!({"messaging_product": "whatsapp", "metadata": {"phone_number_id": "111"},
               "statuses": [{"id": "wamid.U3", "status": "delivered", "timestamp": "1767225800",
                             "recipient_user_id": "US.ENT.5550001"}]}),
    )]);
    let (status, answer) = post_cloud(&app, &hook, &receipt).await;
    assert_eq!(
        (status, &answer["results"][0]),
        (200, &json!({"status": "status", "changed": true})),
        "{answer}"
    );
    assert_eq!(
        one(
            &app,
            "SELECT status FROM messages WHERE source_id = 'wamid.U3'"
        )
        .await,
        "delivered"
    );

    // A BSUID outlives a change of number: the same user writing from a new number is still one contact.
    let new_number = delivery(vec![(
        "messages",
        value(
            "111",
            json!([{"profile": {"name": "Ana"}, "wa_id": "5511955554444", "user_id": bsuid}]),
            json!([{"from": "5511955554444", "from_user_id": bsuid, "id": "wamid.U4",
                    "timestamp": "1767225900", "type": "text", "text": {"body": "número novo"}}]),
        ),
    )]);
    let (status, answer) = post_cloud(&app, &hook, &new_number).await;
    assert_eq!(
        (status, &answer["results"][0]["status"]),
        (200, &json!("stored")),
        "{answer}"
    );
    let (_, contact4, conv4, ..) = message(&app, "wamid.U4").await;
    assert_eq!((contact4, conv4), (contact1, conv1));

    // A migration into an Evolution inbox warns about the identity it cannot carry over.
    let evolution = app
        .post_json(
            &format!("/api/v1/accounts/{}/inboxes", f.account_id),
            Some(&f.admin_token),
            &json!({"name": "evo", "channel_type": "evolution"}),
        )
        .await
        .1["id"]
        .as_i64()
        .unwrap();
    let (status, preview) = app
        .get(
            &format!(
                "/api/v1/accounts/{}/inboxes/{inbox}/migrations/preview?destination_inbox_id={evolution}",
                f.account_id
            ),
            Some(&f.admin_token),
        )
        .await;
    assert_eq!(status, 200, "{preview}");
    let warning = preview["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["code"] == "UNPORTABLE_IDENTITIES")
        .unwrap_or_else(|| panic!("{preview}"));
    assert!(
        warning["message"]
            .as_str()
            .unwrap()
            .starts_with("1 contacts"),
        "{warning}"
    );
}

/// Item 2 and inbox migration: a BSUID linked to a number (an alias) moves with its contact_inbox unless the
/// destination already holds it (two numbers of one business portfolio share BSUIDs), and a revert gives every
/// alias back, merged rows included.
pub async fn bsuid_aliases_survive_a_migration_and_its_revert(db: Db) {
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    let (_, source, hook_a) = cloud(&app, &f, "whatsapp_cloud", "111").await;
    let (_, destination, hook_b) = cloud(&app, &f, "whatsapp_cloud", "222").await;
    let linked = |number: &str, phone: &str, bsuid: &str, id: &str| {
        delivery(vec![(
            "messages",
            value(
                number,
                json!([{"profile": {"name": "Cliente"}, "wa_id": phone, "user_id": bsuid}]),
                json!([{"from": phone, "from_user_id": bsuid, "id": id, "timestamp": "1767225600",
                        "type": "text", "text": {"body": id}}]),
            ),
        )])
    };
    // Ana wrote to both numbers, from a different phone each time: the destination holds her BSUID. Bia only
    // wrote to the source; Caio wrote to both from the same phone (merged by the migration).
    for (hook, number, phone, bsuid, id) in [
        (&hook_a, "111", "5511911110000", "US.100", "wamid.A"),
        (&hook_b, "222", "5511922220000", "US.100", "wamid.B"),
        (&hook_a, "111", "5511933330000", "US.200", "wamid.C"),
        (&hook_a, "111", "5511944440000", "US.300", "wamid.D"),
        (&hook_b, "222", "5511944440000", "US.300", "wamid.E"),
    ] {
        post_cloud(&app, hook, &linked(number, phone, bsuid, id)).await;
    }
    let before = app
        .ferry
        .store
        .account_rows_snapshot(f.account_id)
        .await
        .unwrap();

    let url = format!(
        "/api/v1/accounts/{}/inboxes/{source}/migrations",
        f.account_id
    );
    let (status, created) = app
        .post_json(
            &url,
            Some(&f.admin_token),
            &json!({"destination_inbox_id": destination}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().unwrap();
    app.drain_worker().await;
    let aliases = |inbox: i64| {
        format!(
            "SELECT source_id || '=' || COALESCE(wa_alias, '-') FROM contact_inboxes              WHERE inbox_id = {inbox} ORDER BY source_id"
        )
    };
    assert_eq!(
        column(&app, &aliases(destination)).await,
        [
            "5511911110000=-",
            "5511922220000=US.100",
            "5511933330000=US.200",
            "5511944440000=US.300"
        ]
        .map(|s| Some(s.to_owned())),
        "moved with its alias, unless the destination holds it"
    );

    let (status, body) = app
        .post_json(
            &format!("{url}/{id}/revert"),
            Some(&f.admin_token),
            &json!({}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    app.drain_worker().await;
    let after = app
        .ferry
        .store
        .account_rows_snapshot(f.account_id)
        .await
        .unwrap();
    assert_same_rows(&before, &after, "after revert");
}

/// Item 3. Webhook routes have their own limit (`FERRY_WEBHOOK_MAX_BODY_BYTES`): an Evolution image with its
/// file inline (base64) above the API's 1 MiB limit is stored; a body over the webhook limit is answered 413
/// and kept as a dead letter with its headers and size (not its bytes). The API keeps its own limit.
pub async fn webhook_bodies_have_their_own_limit(db: Db) {
    let app = spawn_app_with(db, |config| config.webhook_max_body_bytes = 3 * 1024 * 1024).await;
    let f = app.fixture().await;
    let (_, hook) = connected(
        &app,
        &f,
        "evolution",
        json!({"provider": "evolution", "instance_name": "clinica-sp"}),
    )
    .await;
    use base64::Engine;
    let file: Vec<u8> = (0..1_500_000u32).map(|i| (i % 251) as u8).collect();
    let inline = base64::engine::general_purpose::STANDARD.encode(&file);
    let image = |id: &str, base64: &str| {
        serde_json::to_vec(&json!({"event": "messages.upsert", "instance": "clinica-sp", "data": {
            "key": {"remoteJid": "5511988887777@s.whatsapp.net", "fromMe": false, "id": id},
            "pushName": "Maria", "messageType": "imageMessage", "messageTimestamp": 1767225600,
            "message": {"imageMessage": {"mimetype": "image/jpeg", "caption": "a foto", "fileLength": "1500000"},
                        "base64": base64}}}))
        .unwrap()
    };
    let body = image("BIG1", &inline);
    assert!(body.len() > app.ferry.config.max_body_bytes);
    let (status, answer) = post_raw(&app, &hook, &body).await;
    assert_eq!(
        (status, &answer["status"]),
        (200, &json!("stored")),
        "{answer}"
    );
    assert_eq!(
        one(
            &app,
            "SELECT status || ' ' || CAST(byte_size AS TEXT) FROM attachments"
        )
        .await,
        "ready 1500000"
    );

    let huge = image("BIG2", &format!("{inline}{inline}"));
    let resp = app
        .client
        .post(format!("{}{hook}", app.base))
        .header("connection", "close")
        .header("content-type", "application/json")
        .header("x-evolution-test", "kept")
        .body(huge.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["error"]["code"], "payload_too_large", "{answer}");
    assert_eq!(
        one(
            &app,
            "SELECT CAST(status_code AS TEXT) || ' ' || CAST(body_bytes AS TEXT) || ' ' || \
                   CAST(LENGTH(body) AS TEXT) FROM webhook_dead_letters"
        )
        .await,
        format!("413 {} 0", huge.len())
    );
    let headers = one(
        &app,
        "SELECT CAST(headers AS TEXT) FROM webhook_dead_letters",
    )
    .await;
    assert!(headers.contains("x-evolution-test"), "{headers}");
    let out = app.cli(&["webhooks", "dead-letters", "--json"]);
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["body_bytes"], json!(huge.len()), "{listed}");
    assert!(
        listed[0]["reason"]
            .as_str()
            .unwrap()
            .contains("FERRY_WEBHOOK_MAX_BODY_BYTES")
    );

    // The API's own limit is unchanged.
    let (status, _) = app
        .post_raw(
            &format!("/api/v1/accounts/{}/inboxes", f.account_id),
            &f.admin_token,
            Some("application/json"),
            body,
        )
        .await;
    assert_eq!(status.as_u16(), 413);
}

fn envelope(event: &str, data: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"event": event, "instance": "clinica-sp", "data": data,
        "destination": "https://ferry.example/webhooks", "date_time": "2026-01-01T09:00:00.000Z",
        "sender": "551140028922@s.whatsapp.net", "server_url": "https://evo.example", "apikey": null}))
    .unwrap()
}

async fn evolution(app: &TestApp, f: &Fixture) -> (i64, String) {
    let (created, hook) = connected(
        app,
        f,
        "evolution",
        json!({"provider": "evolution", "instance_name": "clinica-sp"}),
    )
    .await;
    (created["inbox_id"].as_i64().unwrap(), hook)
}

const JID: &str = "5511988887777@s.whatsapp.net";

/// Items 4 and 5. Evolution 2.x sends `messages.edited` with the protocol message itself as `data`: edits
/// and revokes apply to their target, other protocol types are ignored. Events ferry does not store are
/// answered `ignored` whatever their `data` (arrays, strings, nothing): an instance subscribed to all 31
/// events loses nothing and fills no dead letter.
pub async fn evolution_edits_and_events_as_evolution_sends_them(db: Db) {
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    let (_, hook) = evolution(&app, &f).await;
    let send = |body: Vec<u8>| {
        let (app, hook) = (&app, hook.clone());
        async move { post_raw(app, &hook, &body).await }
    };
    send(serde_json::to_vec(&upsert("E1", JID, false, "texto original")).unwrap()).await;
    send(serde_json::to_vec(&upsert("E2", JID, false, "vai sumir")).unwrap()).await;
    let key = |id: &str| json!({"remoteJid": JID, "fromMe": false, "id": id});

    let (status, answer) = send(envelope(
        "messages.edited",
        json!({"key": key("E1"), "type": "MESSAGE_EDIT", "editedMessage": {"conversation": "texto corrigido"},
               "timestampMs": "1767225700000"}),
    ))
    .await;
    assert_eq!(
        (status, &answer["status"]),
        (200, &json!("changed")),
        "{answer}"
    );
    let (.., content, attributes) = message(&app, "E1").await;
    assert_eq!(content.as_deref(), Some("texto corrigido"));
    assert_eq!(attributes["previous_content"], "texto original");

    let (_, answer) = send(envelope(
        "messages.edited",
        json!({"key": key("E2"), "type": "REVOKE", "timestampMs": "1767225800000"}),
    ))
    .await;
    assert_eq!(answer["status"], "changed", "{answer}");
    let (.., content, attributes) = message(&app, "E2").await;
    assert_eq!((content, &attributes["deleted"]), (None, &json!(true)));

    let (_, answer) = send(envelope(
        "messages.edited",
        json!({"key": key("E1"), "type": "EPHEMERAL_SETTING", "ephemeralExpiration": 604800}),
    ))
    .await;
    assert_eq!(answer["status"], "ignored", "{answer}");

    for (event, data) in [
        (
            "contacts.upsert",
            json!([{"remoteJid": JID, "pushName": "Maria", "profilePicUrl": null}]),
        ),
        (
            "contacts.update",
            json!({"remoteJid": JID, "pushName": "Maria"}),
        ),
        (
            "chats.upsert",
            json!([{"remoteJid": JID, "unreadMessages": 1}]),
        ),
        (
            "chats.update",
            json!([{"remoteJid": JID, "unreadMessages": 0}]),
        ),
        ("chats.delete", json!([JID])),
        (
            "messages.set",
            json!([{"key": key("OLD1"), "message": {"conversation": "histórico"}}]),
        ),
        ("presence.update", json!({"id": JID, "presences": {}})),
        ("qrcode.updated", Value::Null),
        (
            "CONNECTION_UPDATE",
            json!({"instance": "clinica-sp", "state": "open"}),
        ),
        ("labels.association", json!("x")),
    ] {
        let (status, answer) = send(envelope(event, data)).await;
        assert_eq!(
            (status, &answer["status"]),
            (200, &json!("ignored")),
            "{event}: {answer}"
        );
    }
    assert_eq!(
        one(
            &app,
            "SELECT CAST(COUNT(*) AS TEXT) FROM webhook_dead_letters"
        )
        .await,
        "0"
    );
    assert_eq!(
        one(&app, "SELECT CAST(COUNT(*) AS TEXT) FROM messages").await,
        "2"
    );
    // A stored event without its object is still malformed.
    let (status, _) = send(envelope("messages.upsert", json!([]))).await;
    assert_eq!(status, 400);
}

/// Items 7, 8 and 13 on WhatsApp Cloud: interactive and button replies keep the chosen title as text and
/// the ids in the attributes; coexistence echoes are the business's outgoing messages; a location keeps its
/// coordinates; a reply names the message it answers; a number change is an activity and the contact
/// follows the customer to the new number.
pub async fn cloud_content_as_meta_documents_it(db: Db) {
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    let (_, inbox, hook) = cloud(&app, &f, "whatsapp_cloud", "111").await;
    let from = "5511988887777";
    let messages = json!([
        {"from": from, "id": "wamid.I1", "timestamp": "1767225600", "type": "interactive",
         "context": {"from": "15550001111", "id": "wamid.MENU"},
         "interactive": {"type": "button_reply", "button_reply": {"id": "confirm-42", "title": "Confirmar"}}},
        {"from": from, "id": "wamid.I2", "timestamp": "1767225601", "type": "interactive",
         "interactive": {"type": "list_reply", "list_reply": {"id": "slot-9", "title": "9h", "description": "Manhã"}}},
        {"from": from, "id": "wamid.I3", "timestamp": "1767225602", "type": "button",
         "context": {"from": "15550001111", "id": "wamid.TPL"},
         "button": {"payload": "STOP_PROMOS", "text": "Parar promoções"}},
        {"from": from, "id": "wamid.L1", "timestamp": "1767225603", "type": "location",
         "location": {"latitude": -23.5613, "longitude": -46.6565, "name": "MASP", "address": "Av. Paulista, 1578"}},
        {"from": from, "id": "wamid.R1", "timestamp": "1767225604", "type": "text", "text": {"body": "sim"},
         "context": {"from": "15550001111", "id": "wamid.QUESTION"}}
    ]);
    let body = delivery(vec![(
        "messages",
        value(
            "111",
            json!([{"profile": {"name": "Maria"}, "wa_id": from}]),
            messages,
        ),
    )]);
    let (status, answer) = post_cloud(&app, &hook, &body).await;
    assert_eq!(status, 200, "{answer}");

    let (.., content, attributes) = message(&app, "wamid.I1").await;
    assert_eq!(content.as_deref(), Some("Confirmar"));
    assert_eq!(attributes["interactive"]["id"], "confirm-42");
    assert_eq!(attributes["interactive"]["type"], "button_reply");
    assert_eq!(attributes["in_reply_to"], "wamid.MENU");
    let (.., content, attributes) = message(&app, "wamid.I2").await;
    assert_eq!(content.as_deref(), Some("9h"));
    assert_eq!(
        (
            &attributes["interactive"]["id"],
            &attributes["interactive"]["description"]
        ),
        (&json!("slot-9"), &json!("Manhã"))
    );
    let (.., content, attributes) = message(&app, "wamid.I3").await;
    assert_eq!(content.as_deref(), Some("Parar promoções"));
    assert_eq!(attributes["button"]["payload"], "STOP_PROMOS");
    let (.., content, attributes) = message(&app, "wamid.L1").await;
    assert_eq!(content.as_deref(), Some("MASP"));
    assert_eq!(
        attributes["location"],
        json!({"latitude": -23.5613, "longitude": -46.6565, "name": "MASP", "address": "Av. Paulista, 1578"})
    );
    let (_, contact, conversation, kind, _, attributes) = message(&app, "wamid.R1").await;
    assert_eq!(
        (kind.as_str(), &attributes["in_reply_to"]),
        ("incoming", &json!("wamid.QUESTION"))
    );

    // What the business typed in the WhatsApp Business app (coexistence): outgoing, in the same conversation.
    let echo = delivery(vec![(
        "smb_message_echoes",
        json!({"messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550001111", "phone_number_id": "111"},
               "message_echoes": [{"from": "15550001111", "to": from, "id": "wamid.ECHO1", "timestamp": "1767225700",
                                   "type": "text", "text": {"body": "Pedido confirmado!"}}]}),
    )]);
    let (_, answer) = post_cloud(&app, &hook, &echo).await;
    assert_eq!(answer["results"][0]["status"], "stored", "{answer}");
    let (_, answer) = post_cloud(&app, &hook, &echo).await;
    assert_eq!(answer["results"][0]["status"], "duplicate", "{answer}");
    let (_, echo_contact, echo_conversation, kind, content, _) = message(&app, "wamid.ECHO1").await;
    assert_eq!((echo_contact, echo_conversation), (contact, conversation));
    assert_eq!(
        (kind.as_str(), content.as_deref()),
        ("outgoing", Some("Pedido confirmado!"))
    );

    // The customer changed their number: an activity, and the contact follows them.
    let changed = delivery(vec![(
        "messages",
        value(
            "111",
            json!([]),
            json!([{"from": from, "id": "wamid.SYS1", "timestamp": "1767225800", "type": "system",
                    "system": {"body": "Maria changed from 5511988887777 to 5511955554444",
                               "wa_id": "5511955554444", "type": "user_changed_number"}}]),
        ),
    )]);
    let (_, answer) = post_cloud(&app, &hook, &changed).await;
    assert_eq!(answer["results"][0]["status"], "stored", "{answer}");
    let (_, sys_contact, sys_conversation, kind, content, _) = message(&app, "wamid.SYS1").await;
    assert_eq!(
        (kind.as_str(), sys_contact, sys_conversation),
        ("activity", contact, conversation)
    );
    assert!(content.unwrap().contains("changed from"));
    assert_eq!(
        one(
            &app,
            &format!(
                "SELECT ci.source_id || ' ' || c.phone_number FROM contact_inboxes ci \
             JOIN contacts c ON c.id = ci.contact_id WHERE ci.inbox_id = {inbox}"
            )
        )
        .await,
        "5511955554444 +5511955554444"
    );
    let later = delivery(vec![(
        "messages",
        value(
            "111",
            json!([]),
            json!([text("5511955554444", "wamid.NEW1", "número novo")]),
        ),
    )]);
    post_cloud(&app, &hook, &later).await;
    assert_eq!(message(&app, "wamid.NEW1").await.2, conversation);
}

/// Items 7 and 13 on Evolution: button, list and template replies; a location's coordinates; the quoted
/// message (`contextInfo.stanzaId`).
pub async fn evolution_content_as_baileys_builds_it(db: Db) {
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    let (_, hook) = evolution(&app, &f).await;
    let upserted = |id: &str, message_type: &str, message: Value, context: Value| {
        envelope(
            "messages.upsert",
            json!({"key": {"remoteJid": JID, "fromMe": false, "id": id}, "pushName": "Maria",
                   "message": message, "messageType": message_type, "contextInfo": context,
                   "messageTimestamp": 1767225600, "instanceId": "6f1c", "source": "android"}),
        )
    };
    for body in [
        upserted(
            "B1",
            "buttonsResponseMessage",
            json!({"buttonsResponseMessage": {"selectedButtonId": "sim-1", "selectedDisplayText": "Sim"}}),
            json!({"stanzaId": "3EB0PERGUNTA", "participant": "551140028922@s.whatsapp.net"}),
        ),
        upserted(
            "B2",
            "listResponseMessage",
            json!({"listResponseMessage": {"title": "Terça 10h", "listType": 1, "description": "Dr. Silva",
                   "singleSelectReply": {"selectedRowId": "slot-terca-10"}}}),
            Value::Null,
        ),
        upserted(
            "B3",
            "templateButtonReplyMessage",
            json!({"templateButtonReplyMessage": {"selectedId": "promo-off", "selectedDisplayText": "Sair", "selectedIndex": 1}}),
            Value::Null,
        ),
        upserted(
            "L1",
            "locationMessage",
            json!({"locationMessage": {"degreesLatitude": -8.0476, "degreesLongitude": -34.877, "name": "Marco Zero",
                   "address": "Recife Antigo"}}),
            Value::Null,
        ),
    ] {
        let (status, answer) = post_raw(&app, &hook, &body).await;
        assert_eq!(
            (status, &answer["status"]),
            (200, &json!("stored")),
            "{answer}"
        );
    }
    let (.., content, attributes) = message(&app, "B1").await;
    assert_eq!(content.as_deref(), Some("Sim"));
    assert_eq!(attributes["interactive"]["id"], "sim-1");
    assert_eq!(attributes["in_reply_to"], "3EB0PERGUNTA");
    let (.., content, attributes) = message(&app, "B2").await;
    assert_eq!(content.as_deref(), Some("Terça 10h"));
    assert_eq!(attributes["interactive"]["id"], "slot-terca-10");
    let (.., content, attributes) = message(&app, "B3").await;
    assert_eq!(
        (content.as_deref(), &attributes["interactive"]["id"]),
        (Some("Sair"), &json!("promo-off"))
    );
    let (.., content, attributes) = message(&app, "L1").await;
    assert_eq!(content.as_deref(), Some("Marco Zero"));
    assert_eq!(
        attributes["location"],
        json!({"latitude": -8.0476, "longitude": -34.877, "name": "Marco Zero", "address": "Recife Antigo"})
    );
}

/// Items 9, 10 and 12 on Evolution: the legacy route with the by-events suffix is served (and counted); one
/// person writing with and without the Brazilian ninth digit is one contact when the account folds it; an
/// envelope of another instance (the global webhook) is kept as a dead letter, not stored.
pub async fn evolution_routes_instances_and_ninth_digit(db: Db) {
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    let (inbox, hook) = evolution(&app, &f).await;

    // Baileys without the ninth digit, then the same mobile with it: one contact, one conversation.
    let short = "558197088404@s.whatsapp.net";
    let long = "5581997088404@s.whatsapp.net";
    post_raw(
        &app,
        &hook,
        &serde_json::to_vec(&upsert("N1", short, false, "sem nove")).unwrap(),
    )
    .await;
    post_raw(
        &app,
        &hook,
        &serde_json::to_vec(&upsert("N2", long, false, "com nove")).unwrap(),
    )
    .await;
    let (_, c1, conv1, ..) = message(&app, "N1").await;
    let (_, c2, conv2, ..) = message(&app, "N2").await;
    assert_eq!((c1, conv1), (c2, conv2));
    assert_eq!(
        one(
            &app,
            &format!("SELECT CAST(COUNT(*) AS TEXT) FROM contact_inboxes WHERE inbox_id = {inbox}")
        )
        .await,
        "1"
    );

    // A NUL character in what the user typed (PostgreSQL text cannot hold one): stored without it.
    let mut nul = upsert("NUL1", JID, false, "antes\u{0}depois");
    nul["data"]["pushName"] = json!("Ma\u{0}ria");
    let (status, answer) = post_raw(&app, &hook, &serde_json::to_vec(&nul).unwrap()).await;
    assert_eq!(
        (status, &answer["status"]),
        (200, &json!("stored")),
        "{answer}"
    );
    assert_eq!(
        message(&app, "NUL1").await.4.as_deref(),
        Some("antesdepois")
    );

    // Another instance's event posted to this integration's URL.
    let mut foreign = upsert("G1", JID, false, "de outra instância");
    foreign["instance"] = json!("outra-instancia");
    let (status, answer) = post_raw(&app, &hook, &serde_json::to_vec(&foreign).unwrap()).await;
    assert_eq!(
        (status, &answer["status"]),
        (200, &json!("dead_letter")),
        "{answer}"
    );
    assert!(
        column(&app, "SELECT content FROM messages WHERE source_id = 'G1'")
            .await
            .is_empty()
    );
    assert_eq!(
        one(&app, "SELECT reason FROM webhook_dead_letters").await,
        "instance mismatch"
    );
    // Replaying it would store another instance's message here: refused.
    let id = one(&app, "SELECT CAST(id AS TEXT) FROM webhook_dead_letters").await;
    let out = app.cli(&["webhooks", "dead-letters", "--replay", &id]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("instance outra-instancia"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        column(&app, "SELECT content FROM messages WHERE source_id = 'G1'")
            .await
            .is_empty()
    );
    // The other instances' chatter that ferry does not store is ignored, not kept.
    let presence = json!({"event": "presence.update", "instance": "outra-instancia",
                          "data": {"id": JID, "presences": {}}});
    let (status, answer) = post_raw(&app, &hook, &serde_json::to_vec(&presence).unwrap()).await;
    assert_eq!(
        (status, &answer["status"]),
        (200, &json!("ignored")),
        "{answer}"
    );
    assert_eq!(
        one(
            &app,
            "SELECT CAST(COUNT(*) AS TEXT) FROM webhook_dead_letters"
        )
        .await,
        "1"
    );

    // The legacy route, with Evolution's by-events suffix.
    app.ferry
        .store
        .insert_organization("org-sp", f.account_id, "Clínica SP")
        .await
        .unwrap();
    crate::webhooks::legacy_instance(&app, "legado", "org-sp", "551140028922").await;
    let (status, answer) = post_raw(
        &app,
        "/webhooks/evolution/legado/messages-upsert",
        &serde_json::to_vec(&upsert("LEG1", JID, false, "pela rota antiga")).unwrap(),
    )
    .await;
    assert_eq!(
        (status, &answer["status"]),
        (200, &json!("stored")),
        "{answer}"
    );
    assert_eq!(
        one(
            &app,
            "SELECT CAST(SUM(hits) AS TEXT) FROM legacy_route_hits WHERE instance_name = 'legado'"
        )
        .await,
        "1"
    );
}

/// Item 10 with the setting off: the two forms stay two people.
pub async fn ninth_digit_is_kept_apart_when_the_account_says_so(db: Db) {
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    app.execute(format!(
        "UPDATE accounts SET merge_brazil_ninth_digit = FALSE WHERE id = {}",
        f.account_id
    ))
    .await;
    let (_, hook) = evolution(&app, &f).await;
    post_raw(
        &app,
        &hook,
        &serde_json::to_vec(&upsert("N1", "558197088404@s.whatsapp.net", false, "a")).unwrap(),
    )
    .await;
    post_raw(
        &app,
        &hook,
        &serde_json::to_vec(&upsert("N2", "5581997088404@s.whatsapp.net", false, "b")).unwrap(),
    )
    .await;
    assert_ne!(message(&app, "N1").await.1, message(&app, "N2").await.1);
}

/// Item 11. Twilio: a webhook configured as GET (parameters in the query string, the signature over the URL)
/// is stored; a POST whose form repeats an identical pair verifies as the SDKs sign it.
pub async fn twilio_get_and_repeated_parameters(db: Db) {
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    let (_, hook) = connected(
        &app,
        &f,
        "twilio_whatsapp",
        json!({"provider": "twilio_whatsapp", "auth_token": "twilio-token"}),
    )
    .await;
    let query = "MessageSid=SM1&AccountSid=AC123&From=whatsapp%3A%2B5511988887777&To=whatsapp%3A%2B15550001111\
                 &Body=Ol%C3%A1+por+GET&NumMedia=0&ProfileName=Maria&WaId=5511988887777&SmsStatus=received";
    let url = format!("{}{hook}?{query}", app.ferry.public_url());
    let signature = ferry::webhooks::twilio::sign(b"twilio-token", &url, &Vec::new());
    let resp = app
        .client
        .get(format!("{}{hook}?{query}", app.base))
        .header("x-twilio-signature", signature)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.text().await.unwrap(), "<Response/>");
    assert_eq!(message(&app, "SM1").await.4.as_deref(), Some("Olá por GET"));
    let bad = app
        .client
        .get(format!("{}{hook}?{query}&Body=forjado", app.base))
        .header(
            "x-twilio-signature",
            ferry::webhooks::twilio::sign(b"twilio-token", &url, &Vec::new()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 401);

    let form = "MessageSid=SM2&From=whatsapp%3A%2B5511988887777&Body=oi&NumMedia=0&ButtonPayload=A&ButtonPayload=A";
    let url = format!("{}{hook}", app.ferry.public_url());
    let params = ferry::webhooks::twilio::form(form.as_bytes());
    let mut deduped = params.clone();
    deduped.sort();
    deduped.dedup();
    // Signed the SDKs' way: the repeated identical pair once.
    let signature = ferry::webhooks::twilio::sign(b"twilio-token", &url, &deduped);
    let resp = app
        .client
        .post(format!("{}{hook}", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", signature)
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(message(&app, "SM2").await.5["button"]["payload"], "A");
}

/// This module's tests, with the services they need beside the database.
/// Browsers ask every site for /favicon.ico; the pages name /static/favicon.svg.
pub async fn the_pages_have_a_favicon(db: Db) {
    let app = spawn_app(db).await;
    for path in ["/favicon.ico", "/static/favicon.svg"] {
        let response = app
            .client
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "image/svg+xml",
            "{path}"
        );
        assert!(response.text().await.unwrap().starts_with("<svg"), "{path}");
    }
    let login = app
        .client
        .get(format!("{}/login", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        login.contains(r#"<link rel="icon" href="/static/favicon.svg""#),
        "{login}"
    );
}

pub fn suite() -> Vec<crate::Test> {
    [on_both_databases!(
        [];
        the_pages_have_a_favicon,
        values_are_routed_by_phone_number_id,
        an_integration_without_its_number_keeps_its_traffic,
        username_users_are_stored_and_linked_to_their_number,
        bsuid_aliases_survive_a_migration_and_its_revert,
        webhook_bodies_have_their_own_limit,
        evolution_edits_and_events_as_evolution_sends_them,
        cloud_content_as_meta_documents_it,
        evolution_content_as_baileys_builds_it,
        evolution_routes_instances_and_ninth_digit,
        ninth_digit_is_kept_apart_when_the_account_says_so,
        twilio_get_and_repeated_parameters,
    )]
    .concat()
}
