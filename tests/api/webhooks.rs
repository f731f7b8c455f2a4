use serde_json::{Value, json};

use crate::helpers::{Db, Fixture, TestApp, spawn_app};

/// One number from a query on the app's own database (what no API shows yet, such as dead letters).
pub(crate) async fn count(app: &TestApp, sql: &'static str) -> i64 {
    if app.database_url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
    } else {
        let pool = sqlx::SqlitePool::connect(&app.database_url).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
    }
}

pub(crate) fn upsert(id: &str, jid: &str, from_me: bool, text: &str) -> Value {
    json!({
        "event": "messages.upsert", "instance": "clinica-sp",
        "data": {"key": {"remoteJid": jid, "fromMe": from_me, "id": id}, "pushName": if from_me { "Você" } else { "Maria" },
                 "status": "DELIVERY_ACK", "message": {"conversation": text}, "messageType": "conversation",
                 "messageTimestamp": 1767225600, "source": "android"},
        "date_time": "2026-01-01T09:00:00.000Z", "sender": "551140028922@s.whatsapp.net"
    })
}

pub(crate) async fn post_raw(app: &TestApp, path: &str, body: &[u8]) -> (u16, Value) {
    // A body the server refuses unread (413) leaves its connection unusable: never pool that one.
    let connection = if body.len() > app.ferry.config.max_body_bytes {
        "close"
    } else {
        "keep-alive"
    };
    let resp = app
        .client
        .post(format!("{}{path}", app.base))
        .header("connection", connection)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// An inbox of `channel` with an integration created from `integration` (its `inbox_id` filled in), and the
/// path of its webhook URL.
pub(crate) async fn connected(
    app: &TestApp,
    f: &Fixture,
    channel: &str,
    mut integration: Value,
) -> (Value, String) {
    let inbox = app
        .post_json(
            &format!("/api/v1/accounts/{}/inboxes", f.account_id),
            Some(&f.admin_token),
            &json!({"name": channel, "channel_type": channel}),
        )
        .await
        .1["id"]
        .clone();
    integration["inbox_id"] = inbox;
    let (status, created) = app
        .post_json(
            &format!("/api/v1/accounts/{}/integrations", f.account_id),
            Some(&f.admin_token),
            &integration,
        )
        .await;
    assert_eq!(status, 201, "{created}");
    // The path of the URL the API told the administrator to paste into the provider.
    let hook = created["webhook_url"]
        .as_str()
        .unwrap()
        .strip_prefix(&app.ferry.public_url())
        .unwrap()
        .to_owned();
    (created, hook)
}

/// Evolution traffic through the token route: a new customer gets a contact, a contact_inbox in Evolution's
/// native format and a conversation; a re-delivery stores nothing; statuses only go forward; groups and
/// malformed bodies are not stored (the latter kept as a dead letter); unknown or disabled tokens are 404.
pub async fn evolution_webhooks_are_stored_once(db: Db) {
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    let integrations = format!("/api/v1/accounts/{}/integrations", f.account_id);
    let (created, hook) = connected(
        &app,
        &f,
        "evolution",
        json!({"provider": "evolution", "instance_name": "clinica-sp"}),
    )
    .await;
    let send = |body: Value| {
        let (app, hook) = (&app, hook.clone());
        async move { post_raw(app, &hook, &serde_json::to_vec(&body).unwrap()).await }
    };

    let (status, first) = send(upsert(
        "3EB0A1",
        "5511988887777@s.whatsapp.net",
        false,
        "Olá!",
    ))
    .await;
    assert_eq!(
        (status, &first["status"]),
        (200, &json!("stored")),
        "{first}"
    );
    let conversation = first["conversation_id"].as_i64().unwrap();
    let (status, again) = send(upsert(
        "3EB0A1",
        "5511988887777@s.whatsapp.net",
        false,
        "Olá!",
    ))
    .await;
    assert_eq!((status, &again["status"]), (200, &json!("duplicate")));
    assert_eq!(again["message_id"], first["message_id"]);
    let second = send(upsert(
        "3EB0A2",
        "5511988887777@s.whatsapp.net",
        false,
        "Tudo bem?",
    ))
    .await
    .1;
    assert_eq!(
        second["conversation_id"], conversation,
        "the open conversation continues"
    );
    // The business answering from the phone: outgoing, same chat, the push name "Você" is not taken.
    let reply = send(upsert(
        "BAE5R1",
        "5511988887777@s.whatsapp.net",
        true,
        "Tudo!",
    ))
    .await
    .1;
    assert_eq!(reply["conversation_id"], conversation);
    // By-event URLs carry the event name after the token.
    let (status, by_event) = post_raw(
        &app,
        &format!("{hook}/messages-upsert"),
        &serde_json::to_vec(&upsert(
            "3EB0A3",
            "5511988887777@s.whatsapp.net",
            false,
            "?",
        ))
        .unwrap(),
    )
    .await;
    assert_eq!((status, &by_event["status"]), (200, &json!("stored")));

    let messages = app
        .get(
            &format!(
                "/api/v1/accounts/{}/conversations/{conversation}/messages",
                f.account_id
            ),
            Some(&f.admin_token),
        )
        .await
        .1;
    let list = messages["data"].as_array().unwrap();
    assert_eq!(list.len(), 4, "{messages}");
    assert_eq!(
        list.iter()
            .filter(|m| m["message_type"] == "outgoing")
            .count(),
        1
    );
    let contacts = app
        .get(
            &format!("/api/v1/accounts/{}/contacts", f.account_id),
            Some(&f.admin_token),
        )
        .await
        .1;
    let maria = &contacts["data"][0];
    assert_eq!(maria["name"], "Maria", "{contacts}");
    assert_eq!(maria["phone_number"], "+5511988887777");
    assert_eq!(
        maria["contact_inboxes"][0]["source_id"], "5511988887777@s.whatsapp.net",
        "{maria}"
    );

    let receipt = |status: &str| {
        json!({"event": "messages.update", "instance": "clinica-sp",
               "data": {"keyId": "BAE5R1", "remoteJid": "5511988887777@s.whatsapp.net", "fromMe": true, "status": status}})
    };
    assert_eq!(send(receipt("READ")).await.1["changed"], true);
    assert_eq!(
        send(receipt("DELIVERY_ACK")).await.1["changed"],
        false,
        "never backwards"
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM messages WHERE source_id = 'BAE5R1' AND status = 'read'"
        )
        .await,
        1
    );

    let group = json!({"event": "messages.upsert", "data": {"key": {"remoteJid": "120363025@g.us", "fromMe": false, "id": "G1"},
        "message": {"conversation": "oi"}, "messageType": "conversation", "messageTimestamp": 1767225600}});
    assert_eq!(send(group).await.1["status"], "ignored");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM conversations").await, 1);

    let (status, bad) = post_raw(&app, &hook, b"{\"event\": \"messages.upsert\"").await;
    assert_eq!(status, 400, "{bad}");
    assert_eq!(bad["error"]["code"], "malformed_webhook");
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM webhook_dead_letters WHERE status_code = 400"
        )
        .await,
        1,
        "the raw body is kept"
    );

    let unknown = format!(
        "/webhooks/evolution/whatsapp/{}",
        ferry::domain::WebhookToken::generate().expose()
    );
    assert_eq!(post_raw(&app, &unknown, b"{}").await.0, 404);
    assert_eq!(
        post_raw(&app, "/webhooks/evolution/whatsapp/not-a-token", b"{}")
            .await
            .0,
        404
    );
    let id = created["id"].as_i64().unwrap();
    app.post_json(
        &format!("{integrations}/{id}/disable"),
        Some(&f.admin_token),
        &json!({}),
    )
    .await;
    assert_eq!(
        send(upsert("3EB0A9", "5511988887777@s.whatsapp.net", false, "x"))
            .await
            .0,
        404,
        "a disabled integration routes nothing"
    );
    assert_eq!(count(&app, "SELECT COUNT(*) FROM messages").await, 4);
}

pub(crate) fn sign(secret: &[u8], body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// WhatsApp Cloud: the hub.challenge handshake with the integration's verify token, signatures checked over the
/// raw bytes (nothing stored without one), batched messages and statuses, re-deliveries stored once.
pub async fn cloud_webhooks_are_verified_and_stored_once(db: Db) {
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    let (_, hook) = connected(
        &app,
        &f,
        "whatsapp_cloud",
        json!({"provider": "whatsapp_cloud", "phone_number_id": "106540352242922",
               "app_secret": "s3cret", "verify_token": "vt-1"}),
    )
    .await;

    let handshake = |verify: &str| {
        let url = format!(
            "{}{hook}?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token={verify}",
            app.base
        );
        let client = app.client.clone();
        async move {
            let resp = client.get(url).send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    assert_eq!(handshake("vt-1").await, (200, "1158201444".to_owned()));
    assert_eq!(handshake("wrong").await.0, 403);

    let body = serde_json::to_vec(&json!({"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [{
        "field": "messages", "value": {"messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": "106540352242922"},
        "contacts": [{"profile": {"name": "Maria"}, "wa_id": "5511988887777"}],
        "messages": [
            {"from": "5511988887777", "id": "wamid.A", "timestamp": "1767225600", "type": "text", "text": {"body": "Olá"}},
            {"from": "5511988887777", "id": "wamid.B", "timestamp": "1767225601", "type": "text", "text": {"body": "?"}}],
        "statuses": [{"id": "wamid.A", "status": "read", "timestamp": "1767225602", "recipient_id": "5511988887777"}]
    }}]}]}))
    .unwrap();
    let post = |signature: Option<String>, body: Vec<u8>| {
        let (client, url) = (app.client.clone(), format!("{}{hook}", app.base));
        async move {
            let mut req = client
                .post(url)
                .header("content-type", "application/json")
                .body(body);
            if let Some(s) = signature {
                req = req.header("x-hub-signature-256", s);
            }
            let resp = req.send().await.unwrap();
            (
                resp.status().as_u16(),
                resp.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    assert_eq!(post(None, body.clone()).await.0, 401);
    assert_eq!(post(Some(sign(b"other", &body)), body.clone()).await.0, 401);
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM messages").await,
        0,
        "nothing without a valid signature"
    );

    let (status, stored) = post(Some(sign(b"s3cret", &body)), body.clone()).await;
    assert_eq!(status, 200, "{stored}");
    let results = stored["results"].as_array().unwrap();
    assert_eq!(
        results
            .iter()
            .map(|r| r["status"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["stored", "stored", "status"]
    );
    assert_eq!(results[0]["conversation_id"], results[1]["conversation_id"]);
    let (_, again) = post(Some(sign(b"s3cret", &body)), body.clone()).await;
    assert_eq!(again["results"][0]["status"], "duplicate");
    assert_eq!(again["results"][1]["status"], "duplicate");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM messages").await, 2);
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM contact_inboxes WHERE source_id = '5511988887777'"
        )
        .await,
        1,
        "Cloud's native source_id is the bare number"
    );

    let junk = b"{\"entry\": 5}".to_vec();
    assert_eq!(post(Some(sign(b"s3cret", &junk)), junk).await.0, 400);
}

/// 360dialog: the URL check answers, both body shapes are stored (de-duplicated), and only the token
/// authenticates (no signature header exists for channel webhooks).
pub async fn dialog360_webhooks_read_both_shapes(db: Db) {
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    let (_, hook) = connected(&app, &f, "dialog360", json!({"provider": "dialog360"})).await;
    let check = app
        .client
        .get(format!("{}{hook}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(check.status().as_u16(), 200);

    let on_premise = br#"{"contacts": [{"profile": {"name": "Maria"}, "wa_id": "5511988887777"}],
        "messages": [{"from": "5511988887777", "id": "ABGGFlA5Fpa", "timestamp": "1767225600", "type": "text", "text": {"body": "Oi"}}]}"#;
    let (status, stored) = post_raw(&app, &hook, on_premise).await;
    assert_eq!(
        (status, &stored["results"][0]["status"]),
        (200, &json!("stored")),
        "{stored}"
    );
    let cloud_shaped = br#"{"object": "whatsapp_business_account", "entry": [{"id": "W", "changes": [{"field": "messages",
        "value": {"messages": [{"from": "5511988887777", "id": "wamid.Z", "timestamp": "1767225601", "type": "text", "text": {"body": "?"}}]}}]}]}"#;
    let (_, second) = post_raw(&app, &hook, cloud_shaped).await;
    assert_eq!(
        second["results"][0]["conversation_id"],
        stored["results"][0]["conversation_id"]
    );
    assert_eq!(
        post_raw(&app, &hook, on_premise).await.1["results"][0]["status"],
        "duplicate"
    );
    assert_eq!(count(&app, "SELECT COUNT(*) FROM messages").await, 2);
    assert_eq!(post_raw(&app, &hook, br#"{"hello": 1}"#).await.0, 400);
    // A token of another provider does not open this route.
    let (evolution, _) = connected(
        &app,
        &f,
        "evolution",
        json!({"provider": "evolution", "instance_name": "clinica-sp"}),
    )
    .await;
    let wrong = format!(
        "/webhooks/dialog360/{}",
        evolution["token"].as_str().unwrap()
    );
    assert_eq!(post_raw(&app, &wrong, on_premise).await.0, 404);
}

pub(crate) fn twilio_sign(token: &[u8], url: &str, params: &[(&str, &str)]) -> String {
    use base64::Engine;
    use hmac::Mac;
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(token).unwrap();
    mac.update(url.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Twilio: form posts signed over the configured URL and the sorted parameters; TwiML back; stored once;
/// a status callback raises the status; a wrong signature stores nothing.
pub async fn twilio_webhooks_are_verified_and_stored_once(db: Db) {
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    let (created, hook) = connected(
        &app,
        &f,
        "twilio_whatsapp",
        json!({"provider": "twilio_whatsapp", "auth_token": "tw-secret"}),
    )
    .await;
    let path = format!("/webhooks/twilio/{}", created["token"].as_str().unwrap());
    assert_eq!(hook, path);
    let url = format!("{}{path}", app.ferry.public_url());
    assert_eq!(created["webhook_url"], url.as_str());
    let post = |params: Vec<(&'static str, &'static str)>, signature: String| {
        let (client, target) = (app.client.clone(), format!("{}{path}", app.base));
        async move {
            let form: String = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&params)
                .finish();
            let resp = client
                .post(target)
                .header("x-twilio-signature", signature)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let kind = resp
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, kind, resp.text().await.unwrap())
        }
    };
    let inbound = vec![
        ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
        ("AccountSid", "AC1"),
        ("From", "whatsapp:+5511988887777"),
        ("To", "whatsapp:+15550001111"),
        ("Body", "Olá, Twilio"),
        ("NumMedia", "0"),
        ("ProfileName", "Maria"),
        ("WaId", "5511988887777"),
        ("SmsStatus", "received"),
    ];
    let good = twilio_sign(b"tw-secret", &url, &inbound);
    assert_eq!(post(inbound.clone(), "AAAA".into()).await.0, 401);
    assert_eq!(
        post(inbound.clone(), twilio_sign(b"other", &url, &inbound))
            .await
            .0,
        401
    );
    assert_eq!(count(&app, "SELECT COUNT(*) FROM messages").await, 0);
    let (status, kind, body) = post(inbound.clone(), good.clone()).await;
    assert_eq!(
        (status, kind.as_deref(), body.as_str()),
        (200, Some("text/xml"), "<Response/>")
    );
    assert_eq!(
        post(inbound.clone(), good).await.0,
        200,
        "a retry is answered"
    );
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM messages").await,
        1,
        "and stores nothing new"
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM contact_inboxes WHERE source_id = 'whatsapp:+5511988887777'"
        )
        .await,
        1,
        "Twilio's native source_id"
    );
    let receipt = vec![
        ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
        ("MessageStatus", "read"),
        ("AccountSid", "AC1"),
    ];
    let signature = twilio_sign(b"tw-secret", &url, &receipt);
    assert_eq!(post(receipt, signature).await.0, 200);
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM messages WHERE status = 'read'").await,
        1
    );
}

/// A body that could not be stored is listed by `ferry webhooks dead-letters` and stored by `--replay` once
/// its cause is gone (here: kept as if the database had failed); a replay is de-duplicated; a body that still
/// does not parse is refused with one line.
pub async fn dead_letters_are_listed_and_replayed(db: Db) {
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    let (created, hook) = connected(
        &app,
        &f,
        "evolution",
        json!({"provider": "evolution", "instance_name": "clinica-sp"}),
    )
    .await;
    assert_eq!(post_raw(&app, &hook, b"{\"event\":").await.0, 400);
    let body = serde_json::to_vec(&upsert(
        "3EB0DL",
        "5511988887777@s.whatsapp.net",
        false,
        "lost?",
    ))
    .unwrap();
    let headers = json!({});
    let kept = app
        .ferry
        .store
        .record_dead_letter(&ferry::store::NewDeadLetter {
            provider: "evolution",
            route: "token",
            integration_id: created["id"].as_i64(),
            reason: "database error: connection refused",
            status_code: 500,
            headers: &headers,
            body: &body,
            body_bytes: body.len() as i64,
        })
        .await
        .unwrap();

    let out = app.cli(&["webhooks", "dead-letters", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert_eq!(listed[0]["id"], kept, "newest first");
    assert_eq!(listed[1]["status_code"], 400);

    let replay = |id: String| app.cli(&["webhooks", "dead-letters", "--replay", &id, "--json"]);
    let out = replay(kept.to_string());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (done["events"].as_i64(), done["stored"].as_i64()),
        (Some(1), Some(1))
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM messages WHERE source_id = '3EB0DL'"
        )
        .await,
        1
    );
    let again: Value = serde_json::from_slice(&replay(kept.to_string()).stdout).unwrap();
    assert_eq!(again["stored"], 0, "a second replay stores nothing new");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM messages").await, 1);

    let malformed = listed[1]["id"].to_string();
    let out = replay(malformed);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("does not parse"), "{stderr}");
}

/// Eight first messages of one new customer at once: one contact, one contact_inbox, one conversation, eight
/// messages (on PostgreSQL the unique identity index and a row lock decide the race).
pub async fn concurrent_first_messages_make_one_customer(db: Db) {
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    let (_, hook) = connected(
        &app,
        &f,
        "evolution",
        json!({"provider": "evolution", "instance_name": "clinica-sp"}),
    )
    .await;
    let burst = |prefix: &'static str| {
        let sends = (0..8).map(|i| {
            let body = serde_json::to_vec(&upsert(
                &format!("{prefix}{i}"),
                "5511977776666@s.whatsapp.net",
                false,
                "oi",
            ))
            .unwrap();
            let (client, url) = (app.client.clone(), format!("{}{hook}", app.base));
            tokio::spawn(async move {
                client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        });
        futures::future::join_all(sends)
    };
    for status in burst("RACE").await {
        assert_eq!(status.unwrap(), 200);
    }
    assert_eq!(count(&app, "SELECT COUNT(*) FROM messages").await, 8);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM contact_inboxes").await, 1);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM conversations").await, 1);
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM contacts WHERE phone_number = '+5511977776666'"
        )
        .await,
        1
    );
    // The conversation resolved, eight more at once: exactly one new conversation is opened.
    app.ferry
        .store
        .bench_script("UPDATE conversations SET status = 'resolved'")
        .await
        .unwrap();
    for status in burst("AGAIN").await {
        assert_eq!(status.unwrap(), 200);
    }
    assert_eq!(count(&app, "SELECT COUNT(*) FROM conversations").await, 2);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM messages").await, 16);
}

async fn evolution_inbox(app: &TestApp, f: &Fixture, name: &str, phone: &str) -> i64 {
    let (status, inbox) = app
        .post_json(
            &format!("/api/v1/accounts/{}/inboxes", f.account_id),
            Some(&f.admin_token),
            &json!({"name": name, "channel_type": "evolution", "phone_number": phone}),
        )
        .await;
    assert_eq!(status, 201, "{inbox}");
    inbox["id"].as_i64().unwrap()
}

pub(crate) async fn legacy_instance(app: &TestApp, name: &str, organization: &str, phone: &str) {
    app.ferry
        .store
        .insert_evolution_instance(&ferry::store::seed::LegacyEvolutionInstance {
            instance_name: name.into(),
            organization_id: organization.into(),
            status: "open".into(),
            phone_number: Some(phone.into()),
            api_url: Some("http://127.0.0.1:8080".into()),
            api_key: Some(format!("legacy-key-{name}")),
            webhook_url: Some(format!("http://127.0.0.1:3000/webhooks/evolution/{name}")),
            error_message: None,
        })
        .await
        .unwrap();
}

/// The inbox a stored message's conversation belongs to, as the API shows it.
async fn inbox_of_conversation(app: &TestApp, f: &Fixture, stored: &Value) -> i64 {
    let (status, conversation) = app
        .get(
            &format!(
                "/api/v1/accounts/{}/conversations/{}",
                f.account_id, stored["conversation_id"]
            ),
            Some(&f.admin_token),
        )
        .await;
    assert_eq!(status, 200, "{conversation}");
    conversation["inbox_id"].as_i64().unwrap()
}

/// The legacy by-name route resolves instance → organization → account → the Evolution inbox with the
/// instance's number (or the account's only one), stores like the token route (the same de-duplication, so a
/// message that arrives on both routes during the cut-over is kept once), counts every hit per instance and on
/// the migrated integration, and answers 404 for unknown or unmapped instances and once the route is disabled.
pub async fn legacy_route_resolves_through_legacy_tables_and_counts_hits(db: Db) {
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    let store = app.ferry.store.as_ref();
    let other = evolution_inbox(&app, &f, "Outro número", "+551140020000").await;
    let main = evolution_inbox(&app, &f, "Principal", "+551140028922").await;
    store
        .insert_organization("org-sp", f.account_id, "Clínica SP")
        .await
        .unwrap();
    legacy_instance(&app, "clinica-sp", "org-sp", "551140028922").await;
    legacy_instance(&app, "sem-numero", "org-sp", "+559999999999").await;
    legacy_instance(&app, "orfa", "org-sem-conta", "+551140028922").await;

    let body = |id: &str| {
        serde_json::to_vec(&upsert(id, "5511988887777@s.whatsapp.net", false, "Olá")).unwrap()
    };
    let (status, stored) = post_raw(&app, "/webhooks/evolution/clinica-sp", &body("LEG1")).await;
    assert_eq!(
        (status, &stored["status"]),
        (200, &json!("stored")),
        "{stored}"
    );
    assert_eq!(
        inbox_of_conversation(&app, &f, &stored).await,
        main,
        "matched by phone number, not {other}"
    );
    let (status, again) = post_raw(&app, "/webhooks/evolution/clinica-sp", &body("LEG1")).await;
    assert_eq!((status, &again["status"]), (200, &json!("duplicate")));

    // Two Evolution inboxes and no number match: nothing to route to; the body is kept as a dead letter.
    let (status, unroutable) =
        post_raw(&app, "/webhooks/evolution/sem-numero", &body("LEG2")).await;
    assert_eq!(status, 404, "{unroutable}");
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM webhook_dead_letters WHERE route = 'legacy'"
        )
        .await,
        1
    );
    for unknown in ["orfa", "nao-existe"] {
        let (status, answer) = post_raw(
            &app,
            &format!("/webhooks/evolution/{unknown}"),
            &body("LEG3"),
        )
        .await;
        assert_eq!(status, 404, "{unknown}: {answer}");
        assert_eq!(answer["error"]["code"], "not_found");
    }

    // Migrated to an integration (same instance, same inbox): legacy hits are counted on it too, and a message
    // the provider re-sends on the token route is the same message.
    let (created, hook) = {
        let (status, created) = app
            .post_json(
                &format!("/api/v1/accounts/{}/integrations", f.account_id),
                Some(&f.admin_token),
                &json!({"provider": "evolution", "instance_name": "clinica-sp", "inbox_id": main}),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        let url = created["webhook_url"].as_str().unwrap().to_owned();
        let hook = url
            .strip_prefix(&app.ferry.public_url())
            .unwrap()
            .to_owned();
        (created, hook)
    };
    let (status, via_token) = post_raw(&app, &hook, &body("LEG1")).await;
    assert_eq!(
        (status, &via_token["status"]),
        (200, &json!("duplicate")),
        "{via_token}"
    );
    assert_eq!(
        post_raw(&app, "/webhooks/evolution/clinica-sp", &body("LEG4"))
            .await
            .0,
        200
    );
    let (_, listed) = app
        .get(
            &format!("/api/v1/accounts/{}/integrations", f.account_id),
            Some(&f.admin_token),
        )
        .await;
    let integration = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == created["id"])
        .unwrap()
        .clone();
    assert_eq!(integration["legacy_hits"], 1, "{integration}");
    assert!(integration["last_legacy_hit_at"].is_string());

    let today = chrono::Utc::now().date_naive();
    let hits = store.legacy_hits_since(today).await.unwrap();
    let per_instance: Vec<(&str, i64)> = hits
        .iter()
        .map(|h| (h.instance_name.as_str(), h.hits))
        .collect();
    assert_eq!(
        per_instance,
        vec![("clinica-sp", 3), ("sem-numero", 1)],
        "unknown names are not counted"
    );

    store.set_legacy_route_enabled(false).await.unwrap();
    assert_eq!(
        post_raw(&app, "/webhooks/evolution/clinica-sp", &body("LEG5"))
            .await
            .0,
        410
    );
    assert_eq!(store.legacy_hits_since(today).await.unwrap()[0].hits, 3);
    store.set_legacy_route_enabled(true).await.unwrap();
    assert_eq!(
        post_raw(&app, "/webhooks/evolution/clinica-sp", &body("LEG5"))
            .await
            .0,
        200
    );

    // The unroutable delivery, once its instance has the main inbox's number, is replayed by instance.
    let fix = "UPDATE evolution_instances SET phone_number = '+551140028922' WHERE instance_name = 'sem-numero'";
    app.execute(fix).await;
    let out = app.cli(&["webhooks", "dead-letters", "--json"]);
    let letters: Value = serde_json::from_slice(&out.stdout).unwrap();
    let legacy = letters
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["route"] == "legacy")
        .unwrap();
    let out = app.cli(&[
        "webhooks",
        "dead-letters",
        "--replay",
        &legacy["id"].to_string(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM messages WHERE source_id = 'LEG2'"
        )
        .await,
        1
    );

    // A disabled integration is disabled on the legacy route too.
    let integration_path = format!(
        "/api/v1/accounts/{}/integrations/{}",
        f.account_id, created["id"]
    );
    let (status, _) = app
        .post_json(
            &format!("{integration_path}/disable"),
            Some(&f.admin_token),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        post_raw(&app, "/webhooks/evolution/clinica-sp", &body("LEG6"))
            .await
            .0,
        404
    );
    app.post_json(
        &format!("{integration_path}/enable"),
        Some(&f.admin_token),
        &json!({}),
    )
    .await;
    assert_eq!(
        post_raw(&app, "/webhooks/evolution/clinica-sp", &body("LEG6"))
            .await
            .0,
        200
    );
}

/// Once an inbox migration with `redirect_source` (the default) completes, the source integration's traffic
/// is stored in the destination inbox — with the same de-duplication, so a re-delivery of a message that was
/// moved is still a duplicate; after a revert it goes to the source again. Without the option it never moves.
pub async fn completed_migration_redirects_source_webhooks(db: Db) {
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    let (_, hook) = connected(
        &app,
        &f,
        "evolution",
        json!({"provider": "evolution", "instance_name": "clinica-sp"}),
    )
    .await;
    let send = |id: &'static str| {
        let (app, hook) = (&app, hook.clone());
        async move {
            let body =
                serde_json::to_vec(&upsert(id, "5511988887777@s.whatsapp.net", false, id)).unwrap();
            post_raw(app, &hook, &body).await
        }
    };
    let (_, first) = send("RED1").await;
    let source = inbox_of_conversation(&app, &f, &first).await;
    let destination = evolution_inbox(&app, &f, "Destino", "+551140028999").await;
    let migrations = format!(
        "/api/v1/accounts/{}/inboxes/{source}/migrations",
        f.account_id
    );
    let (status, created) = app
        .post_json(
            &migrations,
            Some(&f.admin_token),
            &json!({"destination_inbox_id": destination}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let worker = ferry::worker::Worker::new(app.ferry.clone());
    let (_tx, rx) = tokio::sync::watch::channel(false);
    while worker.run_once(rx.clone()).await.unwrap().is_some() {}

    let (_, moved) = send("RED1").await;
    assert_eq!(
        moved["status"], "duplicate",
        "the moved message is still known: {moved}"
    );
    let (_, after) = send("RED2").await;
    assert_eq!(after["status"], "stored", "{after}");
    assert_eq!(inbox_of_conversation(&app, &f, &after).await, destination);

    let id = created["id"].as_i64().unwrap();
    let (status, reverted) = app
        .post_json(
            &format!("{migrations}/{id}/revert"),
            Some(&f.admin_token),
            &json!({}),
        )
        .await;
    assert!(status.is_success(), "{reverted}");
    while worker.run_once(rx.clone()).await.unwrap().is_some() {}
    let (_, shown) = app
        .get(&format!("{migrations}/{id}"), Some(&f.admin_token))
        .await;
    assert_eq!(shown["status"], "reverted", "{shown}");
    let (_, back) = send("RED3").await;
    assert_eq!(
        inbox_of_conversation(&app, &f, &back).await,
        source,
        "{back}"
    );

    // Opted out: the source keeps its traffic after completion.
    let third = evolution_inbox(&app, &f, "Terceiro", "+551140028998").await;
    let (status, kept) = app
        .post_json(
            &migrations,
            Some(&f.admin_token),
            &json!({"destination_inbox_id": third, "options": {"redirect_source": false}}),
        )
        .await;
    assert_eq!(status, 201, "{kept}");
    while worker.run_once(rx.clone()).await.unwrap().is_some() {}
    let (_, stays) = send("RED4").await;
    assert_eq!(
        inbox_of_conversation(&app, &f, &stays).await,
        source,
        "{stays}"
    );
}

/// One counter of a Prometheus text page.
async fn metric(app: &TestApp, base: &str, name: &str) -> u64 {
    let page = app
        .client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    page.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} missing from:\n{page}"))
        .parse()
        .unwrap()
}

/// A separate `ferry serve` process, measured through its own `/metrics`: a cached token route costs no
/// database statement (re-deliveries cost at most one each: the de-duplication lookup), an unknown token is
/// looked up once and then answered from the negative cache, and the legacy route pays for its resolution on
/// every request.
pub async fn cached_token_routes_run_no_statement(db: Db) {
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    let (_, hook) = connected(
        &app,
        &f,
        "evolution",
        json!({"provider": "evolution", "instance_name": "clinica-sp"}),
    )
    .await;
    let (_server, base) = app.serve_process().await;
    let post = |path: String, id: String| {
        let app = &app;
        let base = base.clone();
        async move {
            let body = serde_json::to_vec(&upsert(&id, "5511988887777@s.whatsapp.net", false, &id))
                .unwrap();
            let resp = app
                .client
                .post(format!("{base}{path}"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            resp.status().as_u16()
        }
    };
    assert_eq!(
        post(hook.clone(), "M0".into()).await,
        200,
        "first request: cache miss"
    );
    let statements = metric(&app, &base, "ferry_db_statements_total").await;
    assert!(
        statements > 0,
        "the first request was stored by this process"
    );
    let lookups = metric(&app, &base, "ferry_webhook_route_lookups_total").await;
    assert_eq!(lookups, 1);
    assert_eq!(
        metric(&app, &base, "ferry_db_statements_total").await,
        statements,
        "/metrics runs none"
    );

    for _ in 0..10 {
        assert_eq!(post(hook.clone(), "M0".into()).await, 200);
    }
    let after_duplicates = metric(&app, &base, "ferry_db_statements_total").await;
    assert!(
        after_duplicates - statements <= 10,
        "10 re-deliveries ran {} statements",
        after_duplicates - statements
    );
    assert_eq!(
        metric(&app, &base, "ferry_webhook_route_lookups_total").await,
        lookups
    );
    assert!(metric(&app, &base, "ferry_webhook_route_cache_hits_total").await >= 10);

    let unknown = format!("/webhooks/evolution/whatsapp/fwh_{}", "A".repeat(43));
    for _ in 0..5 {
        assert_eq!(post(unknown.clone(), "M1".into()).await, 404);
    }
    assert_eq!(
        metric(&app, &base, "ferry_webhook_route_lookups_total").await,
        lookups + 1,
        "unknown tokens are cached too"
    );

    // The legacy route: at least two statements to route (setting, resolution) plus the hit count.
    app.ferry
        .store
        .insert_organization("org-m", f.account_id, "M")
        .await
        .unwrap();
    legacy_instance(&app, "medido", "org-m", "+551140028922").await;
    let before = metric(&app, &base, "ferry_db_statements_total").await;
    for _ in 0..3 {
        assert_eq!(
            post("/webhooks/evolution/medido".into(), "M0".into()).await,
            200
        );
    }
    let legacy = metric(&app, &base, "ferry_db_statements_total").await - before;
    assert!(
        legacy >= 3 * 3,
        "3 legacy re-deliveries ran only {legacy} statements"
    );
}

/// Waits (up to 5 s: pub/sub is asynchronous) until `check` holds.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("never: {what}");
}

/// Two nodes of one installation sharing Redis: a node that never saw a token is answered by Redis, not by the
/// database; disabling, enabling and rotating on one node reaches the other's in-process cache through pub/sub
/// (its own 60 s TTL would otherwise keep the old answer), and the rotated-out token keeps routing during the
/// overlap on both.
pub async fn redis_shares_routes_and_invalidations_between_nodes(db: Db) {
    let app = crate::helpers::spawn_app_with_redis(db).await;
    let f = app.fixture().await;
    let (created, hook) = connected(
        &app,
        &f,
        "evolution",
        json!({"provider": "evolution", "instance_name": "clinica-sp"}),
    )
    .await;
    let id = created["id"].as_i64().unwrap();
    let integration = format!("/api/v1/accounts/{}/integrations/{id}", f.account_id);
    let post = |base: String, path: String, message: &'static str| {
        let app = &app;
        async move {
            let body = serde_json::to_vec(&upsert(
                message,
                "5511988887777@s.whatsapp.net",
                false,
                message,
            ))
            .unwrap();
            app.client
                .post(format!("{base}{path}"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };

    assert_eq!(post(app.base.clone(), hook.clone(), "S1").await, 200);
    assert_eq!(
        app.ferry.token_routes.lookups(),
        1,
        "node A asked the database once"
    );
    let (b, base_b) = app.another_node().await;
    assert_eq!(post(base_b.clone(), hook.clone(), "S2").await, 200);
    assert_eq!(
        (b.token_routes.lookups(), b.token_routes.shared_hits()),
        (0, 1),
        "node B was answered by Redis"
    );
    assert_eq!(post(base_b.clone(), hook.clone(), "S3").await, 200);
    assert_eq!(b.token_routes.hits(), 1, "then by its own cache");

    let (status, _) = app
        .post_json(
            &format!("{integration}/disable"),
            Some(&f.admin_token),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200);
    eventually("node B answers 404 after the disable", || {
        let status = post(base_b.clone(), hook.clone(), "S4");
        async move { status.await == 404 }
    })
    .await;
    let (status, _) = app
        .post_json(
            &format!("{integration}/enable"),
            Some(&f.admin_token),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200);
    eventually("node B routes again after the enable", || {
        let status = post(base_b.clone(), hook.clone(), "S5");
        async move { status.await == 200 }
    })
    .await;

    let (status, rotated) = app
        .post_json(
            &format!("{integration}/rotate"),
            Some(&f.admin_token),
            &json!({"overlap_seconds": 3600}),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new_hook = rotated["webhook_url"]
        .as_str()
        .unwrap()
        .strip_prefix(&app.ferry.public_url())
        .unwrap()
        .to_owned();
    assert_eq!(
        post(base_b.clone(), new_hook, "S6").await,
        200,
        "the new token routes on node B"
    );
    assert_eq!(
        post(base_b.clone(), hook.clone(), "S7").await,
        200,
        "the old one during the overlap"
    );
}

/// The messages of a conversation as the API shows them, by provider id.
async fn messages_by_source(
    app: &TestApp,
    f: &Fixture,
    conversation: &Value,
) -> std::collections::HashMap<String, Value> {
    let (status, page) = app
        .get(
            &format!(
                "/api/v1/accounts/{}/conversations/{conversation}/messages?limit=100",
                f.account_id
            ),
            Some(&f.admin_token),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["source_id"].as_str().unwrap_or_default().to_owned(),
                m.clone(),
            )
        })
        .collect()
}

/// Reactions, edits and deletions change the message they name instead of adding messages: a reaction is kept
/// per side (customer, business) and an empty one takes it back, an edit keeps the previous text, a deletion
/// clears the text and marks the message; a reaction to a message ferry does not hold is kept as a message.
pub async fn edits_deletes_and_reactions_change_their_target(db: Db) {
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    let (_, hook) = connected(
        &app,
        &f,
        "evolution",
        json!({"provider": "evolution", "instance_name": "clinica-sp"}),
    )
    .await;
    let jid = "5511988887777@s.whatsapp.net";
    let send = |body: Value| {
        let (app, hook) = (&app, hook.clone());
        async move { post_raw(app, &hook, &serde_json::to_vec(&body).unwrap()).await }
    };
    let envelope =
        |event: &str, data: Value| json!({"event": event, "instance": "clinica-sp", "data": data});
    let reaction = |id: &str, target: &str, emoji: &str, from_me: bool| {
        envelope(
            "messages.upsert",
            json!({"key": {"remoteJid": jid, "fromMe": from_me, "id": id}, "messageType": "reactionMessage",
                   "message": {"reactionMessage": {"key": {"remoteJid": jid, "id": target}, "text": emoji}},
                   "messageTimestamp": 1767225700}),
        )
    };
    let (_, first) = send(upsert("ORIG1", jid, false, "Olá, tudo bem?")).await;
    assert_eq!(first["status"], "stored");
    send(upsert("ORIG2", jid, true, "Tudo ótimo!")).await;

    for (id, emoji, from_me) in [("R1", "👍", false), ("R2", "❤️", true)] {
        let (status, answer) = send(reaction(id, "ORIG1", emoji, from_me)).await;
        assert_eq!(
            (status, &answer["status"], &answer["changed"]),
            (200, &json!("changed"), &json!(true)),
            "{answer}"
        );
    }
    let (_, answer) = send(envelope(
        "messages.edited",
        json!({"key": {"remoteJid": jid, "fromMe": false, "id": "EDIT1"},
               "message": {"protocolMessage": {"key": {"remoteJid": jid, "id": "ORIG1"}, "type": "MESSAGE_EDIT",
                           "editedMessage": {"conversation": "Olá, tudo bem? (editado)"}}}}),
    ))
    .await;
    assert_eq!(answer["changed"], true, "{answer}");
    let (_, answer) = send(envelope(
        "messages.delete",
        json!({"remoteJid": jid, "fromMe": true, "id": "ORIG2"}),
    ))
    .await;
    assert_eq!(answer["changed"], true, "{answer}");
    let (_, answer) = send(reaction("R3", "ORIG1", "", true)).await;
    assert_eq!(
        answer["changed"], true,
        "an empty reaction takes the business's back: {answer}"
    );
    let (_, orphan) = send(reaction("R4", "NOT-HERE", "😮", false)).await;
    assert_eq!(orphan["status"], "stored", "{orphan}");
    let (_, unknown) = send(envelope(
        "messages.delete",
        json!({"remoteJid": jid, "id": "NOT-HERE-EITHER"}),
    ))
    .await;
    assert_eq!(
        (&unknown["status"], &unknown["changed"]),
        (&json!("changed"), &json!(false))
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM webhook_dead_letters WHERE status_code = 200"
        )
        .await,
        1,
        "a change to a message not stored yet is kept for a replay"
    );

    let messages = messages_by_source(&app, &f, &first["conversation_id"]).await;
    let mut ids: Vec<&String> = messages.keys().collect();
    ids.sort();
    assert_eq!(ids, ["ORIG1", "ORIG2", "R4"], "changes add no messages");
    let original = &messages["ORIG1"];
    assert_eq!(original["content"], "Olá, tudo bem? (editado)");
    assert_eq!(
        original["content_attributes"]["previous_content"],
        "Olá, tudo bem?"
    );
    assert_eq!(
        original["content_attributes"]["reactions"],
        json!({"customer": "👍"})
    );
    let deleted = &messages["ORIG2"];
    assert_eq!(
        (
            &deleted["content"],
            &deleted["content_attributes"]["deleted"]
        ),
        (&Value::Null, &json!(true))
    );
    assert_eq!(messages["R4"]["content_type"], "reaction");
}

/// Random bytes and mutilated deliveries through the real route: every answer is 200 (stored, duplicate or
/// ignored) or 400 (kept as a dead letter) — never a 500, never a lost body.
pub async fn random_bodies_get_200_or_a_dead_letter(db: Db) {
    use rand::{Rng, SeedableRng};
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    let (_, hook) = connected(
        &app,
        &f,
        "evolution",
        json!({"provider": "evolution", "instance_name": "clinica-sp"}),
    )
    .await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(20261122);
    let valid =
        serde_json::to_vec(&upsert("RND", "5511988887777@s.whatsapp.net", false, "oi")).unwrap();
    let mut refused = 0;
    for round in 0..120 {
        let body: Vec<u8> = match round % 3 {
            0 => (0..rng.gen_range(0..200)).map(|_| rng.r#gen()).collect(),
            // A valid delivery cut short or with bytes flipped.
            1 => valid[..rng.gen_range(0..valid.len())].to_vec(),
            _ => {
                let mut b = valid.clone();
                for _ in 0..3 {
                    let i = rng.gen_range(0..b.len());
                    b[i] = rng.r#gen();
                }
                b
            }
        };
        let (status, answer) = post_raw(&app, &hook, &body).await;
        assert!(
            status == 200 || status == 400,
            "round {round}: {status} {answer}"
        );
        // 400, or a flipped byte in the instance's name: another instance's event, kept too.
        refused += usize::from(status == 400 || answer["status"] == "dead_letter");
    }
    assert!(refused > 0);
    let letters = count(&app, "SELECT COUNT(*) FROM webhook_dead_letters").await;
    assert_eq!(letters as usize, refused, "every refused body is kept");
}

/// A database that refuses to store messages (a trigger raising an error, as a full disk or a broken constraint
/// would): the provider gets a 500 in the error shape without internals, the raw delivery is kept as a dead
/// letter with the reason, and once the database is fixed the replay stores it.
pub async fn a_database_failure_keeps_the_delivery_as_a_dead_letter(db: Db) {
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    let (_, hook) = connected(
        &app,
        &f,
        "evolution",
        json!({"provider": "evolution", "instance_name": "clinica-sp"}),
    )
    .await;
    let postgres = app.database_url.starts_with("postgres");
    let break_sql: &[&str] = if postgres {
        &[
            "CREATE FUNCTION refuse_messages() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN RAISE EXCEPTION 'could not extend file: No space left on device'; END $$",
            "CREATE TRIGGER refuse_messages BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION refuse_messages()",
        ]
    } else {
        &["CREATE TRIGGER refuse_messages BEFORE INSERT ON messages \
           BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"]
    };
    let fix_sql = "DROP TRIGGER refuse_messages ON messages";
    for sql in break_sql {
        app.execute(*sql).await;
    }
    let body = serde_json::to_vec(&upsert(
        "DBFAIL1",
        "5511988887777@s.whatsapp.net",
        false,
        "perdido?",
    ))
    .unwrap();
    let (status, answer) = post_raw(&app, &hook, &body).await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (500, &json!("internal_error")),
        "{answer}"
    );
    assert!(
        !["disk", "space"]
            .iter()
            .any(|w| answer.to_string().contains(w)),
        "internals stay in the log: {answer}"
    );
    assert_eq!(count(&app, "SELECT COUNT(*) FROM messages").await, 0);
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM webhook_dead_letters WHERE status_code = 500"
        )
        .await,
        1
    );

    app.execute(if postgres {
        fix_sql
    } else {
        "DROP TRIGGER refuse_messages"
    })
    .await;
    let out = app.cli(&["webhooks", "dead-letters", "--json"]);
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        ["disk", "space"]
            .iter()
            .any(|w| listed[0]["reason"].as_str().unwrap().contains(w)),
        "{listed}"
    );
    let id = listed[0]["id"].to_string();
    let out = app.cli(&["webhooks", "dead-letters", "--replay", &id, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM messages WHERE source_id = 'DBFAIL1'"
        )
        .await,
        1
    );
}

/// This module's tests, with the services they need beside the database.
pub fn suite() -> Vec<crate::Test> {
    [
        on_both_databases!(
            [];
            evolution_webhooks_are_stored_once,
            cloud_webhooks_are_verified_and_stored_once,
            dialog360_webhooks_read_both_shapes,
            twilio_webhooks_are_verified_and_stored_once,
            dead_letters_are_listed_and_replayed,
            concurrent_first_messages_make_one_customer,
            legacy_route_resolves_through_legacy_tables_and_counts_hits,
            completed_migration_redirects_source_webhooks,
            cached_token_routes_run_no_statement,
            edits_deletes_and_reactions_change_their_target,
            random_bodies_get_200_or_a_dead_letter,
            a_database_failure_keeps_the_delivery_as_a_dead_letter,
        ),
        on_both_databases!(
            [crate::Service::Redis];
            redis_shares_routes_and_invalidations_between_nodes,
        ),
    ]
    .concat()
}
