//! Media of inbound messages, against an in-process fake of each provider's download API (the protocols of
//! `reference/provider-webhooks.md`): bytes in the delivery are stored at once; other files are fetched by a
//! background job with the integration's credentials, retried with backoff, and left as a failed placeholder
//! when the provider never serves them — the message is stored either way.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde_json::{Value, json};

use crate::helpers::{Db, TestApp, spawn_app_with};
use crate::webhooks::{connected, post_raw, sign, twilio_sign, upsert};

#[derive(Clone, Default)]
struct Fake {
    base: Arc<std::sync::OnceLock<String>>,
    evolution_calls: Arc<AtomicUsize>,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Evolution's getBase64FromMediaMessage (apikey header; 500 for ids starting with FAIL), the Graph API's
/// media id → URL → bytes (Bearer token), and a Twilio media URL behind basic auth.
async fn fake_providers() -> (String, Fake) {
    let fake = Fake::default();
    let app = Router::new()
        .route(
            "/chat/getBase64FromMediaMessage/{instance}",
            post(
                |State(fake): State<Fake>, Path(instance): Path<String>, headers: HeaderMap, Json(body): Json<Value>| async move {
                    fake.evolution_calls.fetch_add(1, Ordering::SeqCst);
                    let id = body["message"]["key"]["id"].as_str().unwrap_or_default().to_owned();
                    if headers.get("apikey").and_then(|v| v.to_str().ok()) != Some("evo-key") || instance != "clinica-sp" {
                        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "unauthorized"})));
                    }
                    if id.starts_with("FAIL") {
                        return (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error": "boom"})));
                    }
                    (
                        StatusCode::CREATED,
                        Json(json!({"mediaType": "audioMessage", "mimetype": "audio/ogg; codecs=opus",
                                    "base64": b64(format!("evolution:{id}").as_bytes())})),
                    )
                },
            ),
        )
        .route(
            "/graph/{media_id}",
            get(|State(fake): State<Fake>, Path(media_id): Path<String>, headers: HeaderMap| async move {
                if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer cloud-token") {
                    return (StatusCode::UNAUTHORIZED, Json(json!({})));
                }
                let base = fake.base.get().unwrap();
                (
                    StatusCode::OK,
                    Json(json!({"url": format!("{base}/lookaside/{media_id}?ext=1"), "mime_type": "image/jpeg",
                                "id": media_id})),
                )
            }),
        )
        .route(
            "/lookaside/{media_id}",
            get(|Path(media_id): Path<String>, headers: HeaderMap| async move {
                if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer cloud-token") {
                    return (StatusCode::UNAUTHORIZED, Vec::new());
                }
                (StatusCode::OK, format!("cloud:{media_id}").into_bytes())
            }),
        )
        .route(
            "/twilio/{sid}",
            get(|Path(sid): Path<String>, headers: HeaderMap| async move {
                let expected = format!("Basic {}", b64(b"AC1:tw-secret"));
                if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
                    return (StatusCode::UNAUTHORIZED, Vec::new());
                }
                (StatusCode::OK, format!("twilio:{sid}").into_bytes())
            }),
        )
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    fake.base.set(base.clone()).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, fake)
}

/// (status, file bytes if stored, failure reason) of the attachment of the message with this provider id.
async fn attachment(app: &TestApp, source_id: &str) -> (String, Option<Vec<u8>>, Option<String>) {
    let sql = "SELECT a.status, a.storage_key, a.failure_reason FROM attachments a \
               JOIN messages m ON m.id = a.message_id WHERE m.source_id = $1";
    let (status, key, reason): (String, Option<String>, Option<String>) =
        if app.database_url.starts_with("postgres") {
            let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
            sqlx::query_as(sql)
                .bind(source_id)
                .fetch_one(&pool)
                .await
                .unwrap()
        } else {
            let pool = sqlx::SqlitePool::connect(&app.database_url).await.unwrap();
            sqlx::query_as(sql)
                .bind(source_id)
                .fetch_one(&pool)
                .await
                .unwrap()
        };
    let bytes = match key {
        Some(key) => Some(app.ferry.attachments.get(&key).await.unwrap()),
        None => None,
    };
    (status, bytes, reason)
}

fn evolution_media(id: &str, message_type: &str, inline: Option<&[u8]>) -> Value {
    let mut message = json!({message_type: {"mimetype": "audio/ogg; codecs=opus", "url": "https://mmg.whatsapp.net/x.enc"}});
    if let Some(bytes) = inline {
        message["base64"] = json!(b64(bytes));
    }
    let mut body = upsert(id, "5511988887777@s.whatsapp.net", false, "");
    body["data"]["message"] = message;
    body["data"]["messageType"] = json!(message_type);
    body
}

pub async fn media_is_fetched_in_the_background_with_backoff_and_placeholders(db: Db) {
    let (fake_base, fake) = fake_providers().await;
    let app = spawn_app_with(db, |config| config.media_retry_base_ms = 1).await;
    let f = app.fixture().await;
    let fetch = || ferry::webhooks::media::run_due(&app.ferry, "test", &|| false);

    // Evolution: bytes in the delivery are ready at once; without them, fetched by the job.
    let (_, evolution) = connected(
        &app,
        &f,
        "evolution",
        json!({"provider": "evolution", "instance_name": "clinica-sp", "api_url": format!("{fake_base}/"),
               "api_key": "evo-key"}),
    )
    .await;
    let send = |body: Value| {
        let (app, hook) = (&app, evolution.clone());
        async move { post_raw(app, &hook, &serde_json::to_vec(&body).unwrap()).await }
    };
    let (status, stored) = send(evolution_media(
        "IMG1",
        "imageMessage",
        Some(b"inline-jpeg"),
    ))
    .await;
    assert_eq!(
        (status, &stored["status"]),
        (200, &json!("stored")),
        "{stored}"
    );
    assert_eq!(
        attachment(&app, "IMG1").await,
        ("ready".into(), Some(b"inline-jpeg".to_vec()), None)
    );
    assert_eq!(
        send(evolution_media("AUD1", "audioMessage", None)).await.0,
        200
    );
    assert_eq!(
        attachment(&app, "AUD1").await.0,
        "pending",
        "answered before the download"
    );
    assert_eq!(fetch().await.unwrap(), 1);
    assert_eq!(
        attachment(&app, "AUD1").await,
        ("ready".into(), Some(b"evolution:AUD1".to_vec()), None)
    );
    assert_eq!(
        fetch().await.unwrap(),
        0,
        "a finished job does not run again"
    );

    // A worker whose lease ran out cannot finish the job another worker took over.
    assert_eq!(
        send(evolution_media("AUD2", "audioMessage", None)).await.0,
        200
    );
    let store = app.ferry.store.as_ref();
    let now = chrono::Utc::now();
    let late = store
        .claim_job(
            "fetch_media",
            "late",
            "token-a",
            now,
            now - chrono::Duration::seconds(1),
        )
        .await
        .unwrap()
        .expect("the job is due");
    let taker = store
        .claim_job(
            "fetch_media",
            "taker",
            "token-b",
            now,
            now + chrono::Duration::minutes(5),
        )
        .await
        .unwrap()
        .expect("an expired lease is taken over");
    assert_eq!((taker.id, taker.attempts), (late.id, 2));
    let file = ferry::store::FetchedFile {
        storage_key: "x",
        checksum: "x",
        byte_size: 1,
        content_type: None,
    };
    let attachment_id = late.payload.0["attachment_id"].as_i64().unwrap();
    assert!(
        !store
            .complete_media_job(&late, attachment_id, &file)
            .await
            .unwrap()
    );
    assert!(!store.retry_job(&late, "late", now).await.unwrap());
    assert_eq!(
        attachment(&app, "AUD2").await.0,
        "pending",
        "the late worker changed nothing"
    );
    assert!(
        store
            .fail_media_job(&taker, attachment_id, "given up")
            .await
            .unwrap()
    );
    assert_eq!(attachment(&app, "AUD2").await.0, "failed");

    // A provider that never serves the file: retried with growing delays, then a failed placeholder.
    assert_eq!(
        send(evolution_media("FAIL1", "audioMessage", None)).await.0,
        200
    );
    let calls_before = fake.evolution_calls.load(Ordering::SeqCst);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        fetch().await.unwrap();
        let (status, _, reason) = attachment(&app, "FAIL1").await;
        if status == "failed" {
            assert!(
                reason.as_deref().unwrap_or_default().contains("500"),
                "{reason:?}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never gave up");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        fake.evolution_calls.load(Ordering::SeqCst) - calls_before,
        8,
        "max_attempts downloads, no more"
    );
    let messages = crate::webhooks::count(&app, "SELECT COUNT(*) FROM messages").await;
    assert_eq!(
        messages, 4,
        "every message is stored, with or without its file"
    );

    // WhatsApp Cloud: media id → URL → bytes, with the access token.
    let (_, cloud) = connected(
        &app,
        &f,
        "whatsapp_cloud",
        json!({"provider": "whatsapp_cloud", "phone_number_id": "1065", "app_secret": "s3cret", "verify_token": "vt",
               "access_token": "cloud-token", "api_url": format!("{fake_base}/graph")}),
    )
    .await;
    let body = serde_json::to_vec(&json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{
        "field": "messages", "value": {"messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "551140028922", "phone_number_id": "1065"},
        "contacts": [{"profile": {"name": "Maria"}, "wa_id": "5511988887777"}],
        "messages": [{"from": "5511988887777", "id": "wamid.IMG", "timestamp": "1767225600", "type": "image",
                      "image": {"caption": "foto", "mime_type": "image/jpeg", "id": "MEDIA42"}}]}}]}]}))
    .unwrap();
    let status = app
        .client
        .post(format!("{}{cloud}", app.base))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", sign(b"s3cret", &body))
        .body(body)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    fetch().await.unwrap();
    assert_eq!(
        attachment(&app, "wamid.IMG").await.1,
        Some(b"cloud:MEDIA42".to_vec())
    );

    // Twilio: the media URL with basic auth (account SID, auth token).
    let (created, _) = connected(
        &app,
        &f,
        "twilio_whatsapp",
        json!({"provider": "twilio_whatsapp", "auth_token": "tw-secret"}),
    )
    .await;
    let url = created["webhook_url"].as_str().unwrap().to_owned();
    let media_url = format!("{fake_base}/twilio/ME1");
    let params = vec![
        ("MessageSid", "MM0123456789abcdef0123456789abcdef"),
        ("AccountSid", "AC1"),
        ("From", "whatsapp:+5511988887777"),
        ("Body", ""),
        ("NumMedia", "1"),
        ("MediaContentType0", "image/png"),
        ("MediaUrl0", media_url.as_str()),
    ];
    let form: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&params)
        .finish();
    let path = url.strip_prefix(&app.ferry.config.public_url()).unwrap();
    let status = app
        .client
        .post(format!("{}{path}", app.base))
        .header(
            "x-twilio-signature",
            twilio_sign(b"tw-secret", &url, &params),
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    fetch().await.unwrap();
    assert_eq!(
        attachment(&app, "MM0123456789abcdef0123456789abcdef").await,
        ("ready".into(), Some(b"twilio:ME1".to_vec()), None)
    );
}
