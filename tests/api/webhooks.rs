use serde_json::{Value, json};

use crate::helpers::{Db, TestApp, spawn_app};

/// One number from a query on the app's own database (what no API shows yet, such as dead letters).
async fn count(app: &TestApp, sql: &'static str) -> i64 {
    if app.database_url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
    } else {
        let pool = sqlx::SqlitePool::connect(&app.database_url).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
    }
}

fn upsert(id: &str, jid: &str, from_me: bool, text: &str) -> Value {
    json!({
        "event": "messages.upsert", "instance": "clinica-sp",
        "data": {"key": {"remoteJid": jid, "fromMe": from_me, "id": id}, "pushName": if from_me { "Você" } else { "Maria" },
                 "status": "DELIVERY_ACK", "message": {"conversation": text}, "messageType": "conversation",
                 "messageTimestamp": 1767225600, "source": "android"},
        "date_time": "2026-01-01T09:00:00.000Z", "sender": "551140028922@s.whatsapp.net"
    })
}

async fn post_raw(app: &TestApp, path: &str, body: &[u8]) -> (u16, Value) {
    let resp = app
        .client
        .post(format!("{}{path}", app.base))
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Evolution traffic through the token route: a new customer gets a contact, a contact_inbox in Evolution's
/// native format and a conversation; a re-delivery stores nothing; statuses only go forward; groups and
/// malformed bodies are not stored (the latter kept as a dead letter); unknown or disabled tokens are 404.
pub async fn evolution_webhooks_are_stored_once(db: Db) {
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    let inbox = app
        .post_json(
            &format!("/api/v1/accounts/{}/inboxes", f.account_id),
            Some(&f.admin_token),
            &json!({"name": "Evo", "channel_type": "evolution"}),
        )
        .await
        .1["id"]
        .as_i64()
        .unwrap();
    let integrations = format!("/api/v1/accounts/{}/integrations", f.account_id);
    let created = app
        .post_json(
            &integrations,
            Some(&f.admin_token),
            &json!({"inbox_id": inbox, "provider": "evolution", "instance_name": "clinica-sp"}),
        )
        .await
        .1;
    let token = created["token"].as_str().unwrap();
    let hook = format!("/webhooks/evolution/whatsapp/{token}");
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
