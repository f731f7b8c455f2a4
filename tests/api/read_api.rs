use std::collections::HashSet;

use ferry::domain::{ChannelType, WhatsAppIdentity};
use serde_json::Value;

use crate::helpers::{Db, assert_error, inbox_of, seeded, spawn_app};

pub async fn conversations_page_through_every_row_once(db: Db) {
    let app = spawn_app(db).await;
    let (report, token) = seeded(&app, 45, 0.2).await;
    let inbox = inbox_of(&report, ChannelType::Evolution);
    let mut seen = HashSet::new();
    let mut before: Option<i64> = None;
    let mut pages = 0;
    loop {
        let q = before.map(|b| format!("&before={b}")).unwrap_or_default();
        let (status, body) = app
            .get(
                &format!(
                    "/api/v1/accounts/{}/inboxes/{inbox}/conversations?limit=10{q}",
                    report.account_id
                ),
                Some(&token),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let ids: Vec<i64> = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_i64().unwrap())
            .collect();
        assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
        for c in body["data"].as_array().unwrap() {
            assert_eq!(c["inbox_id"], inbox);
            assert!(c["contact_name"].as_str().is_some());
        }
        for id in ids {
            assert!(seen.insert(id), "conversation {id} listed twice");
        }
        pages += 1;
        match body["meta"]["next_before"].as_i64() {
            Some(next) => before = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len() as u64, 45);
    assert!(pages >= 5);
}

pub async fn messages_come_with_their_attachments(db: Db) {
    let app = spawn_app(db).await;
    let (report, token) = seeded(&app, 60, 0.2).await;
    assert!(
        report.attachments > 0,
        "a 10% share of 60+ conversations carries attachments"
    );
    // Find a conversation with an attachment through the API alone.
    let inbox = inbox_of(&report, ChannelType::Evolution);
    let convs = app
        .get(
            &format!(
                "/api/v1/accounts/{}/inboxes/{inbox}/conversations?limit=200",
                report.account_id
            ),
            Some(&token),
        )
        .await
        .1;
    let mut found = None;
    let mut total_messages = 0;
    for c in convs["data"].as_array().unwrap() {
        let id = c["id"].as_i64().unwrap();
        let msgs = app
            .get(
                &format!(
                    "/api/v1/accounts/{}/conversations/{id}/messages?limit=200",
                    report.account_id
                ),
                Some(&token),
            )
            .await;
        assert_eq!(msgs.0, 200);
        let data = msgs.1["data"].as_array().unwrap().clone();
        assert!(
            !data.is_empty() && data.len() <= 50,
            "1–50 messages per conversation"
        );
        total_messages += data.len();
        for m in &data {
            assert_eq!(m["conversation_id"], id);
            assert!(m["message_type"] == "incoming" || m["message_type"] == "outgoing");
            if let Some(a) = m["attachments"].as_array().and_then(|a| a.first()) {
                found = Some(a.clone());
            }
        }
    }
    let attachment: Value = found.expect("some message has an attachment");
    let key = attachment["storage_key"].as_str().unwrap();
    let bytes = app
        .ferry
        .attachments
        .get(key)
        .await
        .expect("blob exists in the attachment store");
    assert_eq!(
        bytes.len() as i64,
        attachment["byte_size"].as_i64().unwrap()
    );
    assert_eq!(
        attachment["checksum"].as_str().unwrap(),
        key.rsplit('/').next().unwrap()
    );
    assert!(total_messages > 60);

    // Paging messages: limit 1 gives the newest and a cursor.
    let first = convs["data"][0]["id"].as_i64().unwrap();
    let page = app
        .get(
            &format!(
                "/api/v1/accounts/{}/conversations/{first}/messages?limit=1",
                report.account_id
            ),
            Some(&token),
        )
        .await
        .1;
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
}

pub async fn contacts_list_their_contact_inboxes_in_native_formats(db: Db) {
    let app = spawn_app(db).await;
    let (report, token) = seeded(&app, 40, 0.2).await;
    let evolution = inbox_of(&report, ChannelType::Evolution);
    let cloud = inbox_of(&report, ChannelType::WhatsappCloud);
    let twilio = inbox_of(&report, ChannelType::TwilioWhatsapp);
    let body = app
        .get(
            &format!("/api/v1/accounts/{}/contacts?limit=200", report.account_id),
            Some(&token),
        )
        .await
        .1;
    let mut checked = 0;
    for contact in body["data"].as_array().unwrap() {
        for ci in contact["contact_inboxes"].as_array().unwrap() {
            let source_id = ci["source_id"].as_str().unwrap();
            let inbox = ci["inbox_id"].as_i64().unwrap();
            if inbox == evolution {
                assert!(
                    source_id.ends_with("@s.whatsapp.net") || source_id.ends_with("@lid"),
                    "{source_id}"
                );
            } else if inbox == cloud {
                assert!(source_id.bytes().all(|b| b.is_ascii_digit()), "{source_id}");
            } else if inbox == twilio {
                assert!(source_id.starts_with("whatsapp:+"), "{source_id}");
            } else {
                continue;
            }
            let identity = WhatsAppIdentity::parse(source_id).unwrap();
            assert_eq!(ci["wa_identity"].as_str().unwrap(), identity.canonical());
            checked += 1;
        }
    }
    assert!(checked > 40, "checked {checked}");
}

pub async fn unknown_routes_and_methods_answer_in_the_error_shape(db: Db) {
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    assert_error(
        &app.get("/api/v1/nothing-here", Some(&f.admin_token)).await,
        404,
        "not_found",
    );
    let resp = app
        .client
        .delete(format!(
            "{}/api/v1/accounts/{}/inboxes",
            app.base, f.account_id
        ))
        .header("api_access_token", &f.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
    assert_error(
        &app.get(
            &format!("/api/v1/accounts/{}/conversations/424242", f.account_id),
            Some(&f.admin_token),
        )
        .await,
        404,
        "not_found",
    );
    assert_error(
        &app.get(
            &format!(
                "/api/v1/accounts/{}/conversations/424242/messages",
                f.account_id
            ),
            Some(&f.admin_token),
        )
        .await,
        404,
        "not_found",
    );
}

pub async fn health_and_readiness(db: Db) {
    let app = spawn_app(db).await;
    let (status, body) = app.get("/healthz", None).await;
    assert_eq!(
        (status.as_u16(), body["status"].as_str()),
        (200, Some("ok"))
    );
    let (status, body) = app.get("/readyz", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["database"]["status"], "ok");
    assert_eq!(body["database"]["backend"], db.as_str());
    // With the database gone, readiness says so.
    app.ferry.store.close().await;
    let (status, body) = app.get("/readyz", None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["database"]["status"], "unavailable");
}

/// This module's tests, with the services they need beside the database.
pub fn suite() -> Vec<crate::Test> {
    [on_both_databases!(
        [];
        conversations_page_through_every_row_once,
        messages_come_with_their_attachments,
        contacts_list_their_contact_inboxes_in_native_formats,
        unknown_routes_and_methods_answer_in_the_error_shape,
        health_and_readiness,
    )]
    .concat()
}
