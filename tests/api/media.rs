//! Media of inbound messages, against an in-process fake of each provider's download API (the protocols of
//! `reference/provider-webhooks.md`): bytes in the delivery are stored at once; other files are fetched by a
//! background job with the integration's credentials, retried with backoff, and left as a failed placeholder
//! when the provider never serves them — the message is stored either way.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde_json::{Value, json};

use ferry::webhooks::outbound::AllowedUrls;

use crate::helpers::{Db, Fixture, TestApp, spawn_app, spawn_app_with};
use crate::webhooks::{connected, post_raw, sign, twilio_sign, upsert};

#[derive(Clone, Default)]
pub(crate) struct Fake {
    base: Arc<std::sync::OnceLock<String>>,
    evolution_calls: Arc<AtomicUsize>,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Evolution's getBase64FromMediaMessage (apikey header; 500 for ids starting with FAIL), the Graph API's
/// media id → URL → bytes (Bearer token), and a Twilio media URL behind basic auth.
pub(crate) async fn fake_providers() -> (String, Fake) {
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
pub(crate) async fn attachment(
    app: &TestApp,
    source_id: &str,
) -> (String, Option<Vec<u8>>, Option<String>) {
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

/// `FERRY_MEDIA_ALLOWED_URLS` of these base URLs.
pub(crate) fn allowed(bases: &[&str]) -> AllowedUrls {
    bases.join(",").parse().unwrap()
}

/// A Twilio integration (auth token `tw-secret`) and its webhook URL.
async fn twilio_integration(app: &TestApp, f: &Fixture) -> String {
    let (created, _) = connected(
        app,
        f,
        "twilio_whatsapp",
        json!({"provider": "twilio_whatsapp", "auth_token": "tw-secret"}),
    )
    .await;
    created["webhook_url"].as_str().unwrap().to_owned()
}

/// A Twilio message `sid` from account `AC1` with one file at `media_url`, signed as Twilio signs.
async fn twilio_media(app: &TestApp, webhook_url: &str, sid: &str, media_url: &str) {
    let params = vec![
        ("MessageSid", sid),
        ("AccountSid", "AC1"),
        ("From", "whatsapp:+5511988887777"),
        ("Body", ""),
        ("NumMedia", "1"),
        ("MediaContentType0", "image/png"),
        ("MediaUrl0", media_url),
    ];
    let form: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&params)
        .finish();
    let path = webhook_url.strip_prefix(&app.ferry.public_url()).unwrap();
    let status = app
        .client
        .post(format!("{}{path}", app.base))
        .header(
            "x-twilio-signature",
            twilio_sign(b"tw-secret", webhook_url, &params),
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
}

/// A Cloud image message `wamid` with media id `media_id`, signed with the app secret `s3cret`.
async fn cloud_image(app: &TestApp, hook: &str, wamid: &str, media_id: &str) {
    let body = serde_json::to_vec(&json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{
        "field": "messages", "value": {"messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "551140028922", "phone_number_id": "1065"},
        "contacts": [{"profile": {"name": "Maria"}, "wa_id": "5511988887777"}],
        "messages": [{"from": "5511988887777", "id": wamid, "timestamp": "1767225600", "type": "image",
                      "image": {"caption": "foto", "mime_type": "image/jpeg", "id": media_id}}]}}]}]}))
    .unwrap();
    let status = app
        .client
        .post(format!("{}{hook}", app.base))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", sign(b"s3cret", &body))
        .body(body)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
}

pub(crate) fn evolution_media(id: &str, message_type: &str, inline: Option<&[u8]>) -> Value {
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
    let app = spawn_app_with(db, |config| {
        config.media_retry_base_ms = 1;
        config.media_allowed_urls = allowed(&[&fake_base]);
    })
    .await;
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
    cloud_image(&app, &cloud, "wamid.IMG", "MEDIA42").await;
    fetch().await.unwrap();
    assert_eq!(
        attachment(&app, "wamid.IMG").await.1,
        Some(b"cloud:MEDIA42".to_vec())
    );

    // Twilio: the media URL with basic auth (account SID, auth token).
    let twilio = twilio_integration(&app, &f).await;
    twilio_media(
        &app,
        &twilio,
        "MM0123456789abcdef0123456789abcdef",
        &format!("{fake_base}/twilio/ME1"),
    )
    .await;
    fetch().await.unwrap();
    assert_eq!(
        attachment(&app, "MM0123456789abcdef0123456789abcdef").await,
        ("ready".into(), Some(b"twilio:ME1".to_vec()), None)
    );
}

/// Every request a `recorder` server received: its path, and whether it came with a credential header
/// (`authorization`, `apikey`, `d360-api-key`).
#[derive(Clone, Default)]
struct Seen(Arc<std::sync::Mutex<Vec<(String, bool)>>>);

impl Seen {
    fn paths(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(p, _)| p.clone())
            .collect()
    }

    fn with_credentials(&self) -> Vec<String> {
        let seen = self.0.lock().unwrap();
        seen.iter()
            .filter(|(_, c)| *c)
            .map(|(p, _)| p.clone())
            .collect()
    }
}

/// A server on loopback that records every request and answers what `answer` makes of its path and headers.
async fn recorder(
    answer: impl Fn(&str, &HeaderMap) -> Response + Clone + Send + Sync + 'static,
) -> (String, Seen) {
    let seen = Seen::default();
    let record = seen.clone();
    let app = Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
        let (record, answer) = (record.clone(), answer.clone());
        async move {
            let credential = ["authorization", "apikey", "d360-api-key"]
                .iter()
                .any(|h| headers.contains_key(*h));
            record
                .0
                .lock()
                .unwrap()
                .push((uri.path().to_owned(), credential));
            answer(uri.path(), &headers)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, seen)
}

fn redirect(status: StatusCode, to: &str) -> Response {
    (status, [(axum::http::header::LOCATION, to.to_owned())]).into_response()
}

/// Runs every due media job once; how many ran.
async fn fetch_all(app: &TestApp) -> usize {
    ferry::webhooks::media::run_due(&app.ferry, "test", &|| false)
        .await
        .unwrap()
}

/// One `ferry_outbound_refused_total` sample of `/metrics` (the process's counters: other tests add to them).
async fn refused_total(app: &TestApp, reason: &str) -> u64 {
    let line = format!("ferry_outbound_refused_total{{reason=\"{reason}\"}} ");
    app.metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix(line.as_str()))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[track_caller]
fn assert_refused(got: &(String, Option<Vec<u8>>, Option<String>), needle: &str) {
    let (status, bytes, reason) = got;
    let reason = reason.as_deref().unwrap_or_default();
    assert_eq!((status.as_str(), bytes), ("failed", &None), "{reason}");
    assert!(
        reason.starts_with("media URL refused: ") && reason.contains(needle),
        "{reason}"
    );
}

/// A Twilio `MediaUrl0` (in a webhook anyone with the auth token can sign) that names ferry's own `/metrics`,
/// another service on loopback, the cloud metadata address or a name for loopback is refused before any
/// request: the attachment fails at once with the reason, and the server there sees nothing — no basic auth.
pub async fn media_url_to_loopback_is_refused_and_no_credentials_leave(db: Db) {
    let (spy, seen) = recorder(|_, _| (StatusCode::OK, "internal secrets").into_response()).await;
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    let twilio = twilio_integration(&app, &f).await;
    let spy_port = spy.rsplit(':').next().unwrap();
    let refused_before = refused_total(&app, "host").await;
    let cases = [
        (format!("{}/metrics", app.base), app.base.clone()),
        (format!("{spy}/anything"), spy.clone()),
        (
            "http://169.254.169.254/latest/meta-data/iam/security-credentials/".into(),
            "http://169.254.169.254".into(),
        ),
        (
            format!("http://localhost:{spy_port}/x"),
            format!("http://localhost:{spy_port}"),
        ),
        (
            format!("http://[::ffff:127.0.0.1]:{spy_port}/x"),
            format!("http://[::ffff:7f00:1]:{spy_port}"),
        ),
        (
            format!("https://api.twilio.com.{spy_port}.nip.io/x"),
            format!("https://api.twilio.com.{spy_port}.nip.io"),
        ),
    ];
    for (n, (url, _)) in cases.iter().enumerate() {
        twilio_media(&app, &twilio, &format!("MM{n:032x}"), url).await;
    }
    assert_eq!(fetch_all(&app).await, cases.len(), "one attempt each");
    for (n, (url, origin)) in cases.iter().enumerate() {
        let got = attachment(&app, &format!("MM{n:032x}")).await;
        assert_refused(&got, &format!("{origin} is not a provider host"));
        assert!(
            got.2.unwrap().contains("FERRY_MEDIA_ALLOWED_URLS"),
            "{url}: says how to allow it"
        );
    }
    assert_eq!(
        seen.paths(),
        Vec::<String>::new(),
        "nothing reached loopback"
    );
    assert!(refused_total(&app, "host").await >= refused_before + cases.len() as u64);
}

/// An integration's `api_url` is an account administrator's to set: off the allowed list, neither the Cloud
/// media lookup nor Evolution's getBase64FromMediaMessage is requested, so the access token and the API key
/// never leave.
pub async fn integration_api_urls_off_the_allowed_list_get_no_request(db: Db) {
    let (spy, seen) = recorder(|_, _| {
        Json(json!({"url": "https://lookaside.fbsbx.com/x", "base64": b64(b"internal")}))
            .into_response()
    })
    .await;
    let (allowed_base, _) = recorder(|_, _| StatusCode::NOT_FOUND.into_response()).await;
    let app = spawn_app_with(db, |config| {
        config.media_allowed_urls = allowed(&[&format!("{allowed_base}/graph")]);
    })
    .await;
    let f = app.fixture().await;
    let (_, cloud) = connected(
        &app,
        &f,
        "whatsapp_cloud",
        json!({"provider": "whatsapp_cloud", "phone_number_id": "1065", "app_secret": "s3cret", "verify_token": "vt",
               "access_token": "cloud-token", "api_url": format!("{spy}/graph")}),
    )
    .await;
    cloud_image(&app, &cloud, "wamid.SSRF", "MEDIA1").await;
    let (_, evolution) = connected(
        &app,
        &f,
        "evolution",
        json!({"provider": "evolution", "instance_name": "clinica-sp", "api_url": spy, "api_key": "evo-key"}),
    )
    .await;
    let body = serde_json::to_vec(&evolution_media("AUDSSRF", "audioMessage", None)).unwrap();
    assert_eq!(post_raw(&app, &evolution, &body).await.0, 200);

    assert_eq!(fetch_all(&app).await, 2, "one attempt each");
    assert_refused(&attachment(&app, "wamid.SSRF").await, &spy);
    assert_refused(&attachment(&app, "AUDSSRF").await, &spy);
    assert_eq!(seen.paths(), Vec::<String>::new(), "no request, no token");
}

/// Redirects are followed by hand, each hop checked again: from an allowed server to one that is not allowed
/// is refused before that server sees anything; to another allowed server it is followed, without the
/// credential; on the same server with it; and more than five hops are refused.
pub async fn redirects_are_checked_per_hop_and_credentials_stay_on_their_host(db: Db) {
    let (cdn, cdn_seen) =
        recorder(|path, _| (StatusCode::OK, format!("cdn:{path}")).into_response()).await;
    let (spy, spy_seen) =
        recorder(|_, _| (StatusCode::OK, "internal secrets").into_response()).await;
    let (cdn_to, spy_to) = (cdn.clone(), spy.clone());
    let (media, media_seen) = recorder(move |path, headers| {
        let basic = format!("Basic {}", b64(b"AC1:tw-secret"));
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(basic.as_str()) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        match path {
            "/twilio/ME1" => redirect(StatusCode::FOUND, &format!("{cdn_to}/file/ME1")),
            "/twilio/ME2" => redirect(StatusCode::FOUND, &format!("{spy_to}/file/ME2")),
            "/twilio/ME3" => redirect(StatusCode::TEMPORARY_REDIRECT, "/twilio/ME1"),
            _ => redirect(StatusCode::FOUND, path),
        }
    })
    .await;
    let app = spawn_app_with(db, |config| {
        config.media_allowed_urls = allowed(&[&media, &cdn]);
    })
    .await;
    let f = app.fixture().await;
    let twilio = twilio_integration(&app, &f).await;
    for me in ["ME1", "ME2", "ME3", "ME4"] {
        let sid = format!("MM{me:0>32}");
        twilio_media(&app, &twilio, &sid, &format!("{media}/twilio/{me}")).await;
    }
    assert_eq!(fetch_all(&app).await, 4, "one attempt each");

    let sid = |me: &str| format!("MM{me:0>32}");
    assert_eq!(
        attachment(&app, &sid("ME1")).await,
        ("ready".into(), Some(b"cdn:/file/ME1".to_vec()), None)
    );
    assert_refused(
        &attachment(&app, &sid("ME2")).await,
        &format!("redirected to {spy}: {spy} is not a provider host"),
    );
    assert_eq!(
        spy_seen.paths(),
        Vec::<String>::new(),
        "the redirect target saw nothing"
    );
    assert_eq!(
        attachment(&app, &sid("ME3")).await.1,
        Some(b"cdn:/file/ME1".to_vec()),
        "a relative redirect on the same server, then to the CDN"
    );
    assert_refused(
        &attachment(&app, &sid("ME4")).await,
        "more than 5 redirects",
    );
    assert_eq!(cdn_seen.paths(), ["/file/ME1", "/file/ME1"]);
    assert_eq!(
        cdn_seen.with_credentials(),
        Vec::<String>::new(),
        "no basic auth past the first server"
    );
    assert_eq!(
        media_seen.paths().len(),
        media_seen.with_credentials().len(),
        "on its own server the credential goes along: {:?}",
        media_seen.paths()
    );
    assert_eq!(
        media_seen
            .paths()
            .iter()
            .filter(|p| p.ends_with("ME4"))
            .count(),
        6,
        "the first request and five redirects"
    );
}

/// A file over `FERRY_MEDIA_MAX_BYTES` — announced by its `Content-Length`, streamed without one, or inside
/// Evolution's base64 answer — fails its attachment at once with the reason, after one request; a file under
/// the cap is stored.
pub async fn media_over_the_size_cap_fails_at_once_with_its_reason(db: Db) {
    let (fake, seen) = recorder(|path, _| match path {
        "/twilio/small" => vec![b's'; 900].into_response(),
        "/twilio/big" => vec![b'b'; 5000].into_response(),
        "/twilio/stream" => {
            let chunks = (0..5).map(|_| Ok::<_, std::io::Error>(vec![b'c'; 1000]));
            axum::body::Body::from_stream(futures::stream::iter(chunks)).into_response()
        }
        _ => (
            StatusCode::CREATED,
            Json(json!({"mimetype": "audio/ogg", "base64": b64(&[b'e'; 1200])})),
        )
            .into_response(),
    })
    .await;
    let app = spawn_app_with(db, |config| {
        config.media_allowed_urls = allowed(&[&fake]);
        config.media_max_bytes = 1000;
    })
    .await;
    let f = app.fixture().await;
    let twilio = twilio_integration(&app, &f).await;
    for name in ["small", "big", "stream"] {
        let sid = format!("MM{name:0>32}");
        twilio_media(&app, &twilio, &sid, &format!("{fake}/twilio/{name}")).await;
    }
    let (_, evolution) = connected(
        &app,
        &f,
        "evolution",
        json!({"provider": "evolution", "instance_name": "clinica-sp", "api_url": fake, "api_key": "evo-key"}),
    )
    .await;
    let body = serde_json::to_vec(&evolution_media("AUDBIG", "audioMessage", None)).unwrap();
    assert_eq!(post_raw(&app, &evolution, &body).await.0, 200);
    let too_large_before = refused_total(&app, "too_large").await;

    assert_eq!(fetch_all(&app).await, 4, "one attempt each");
    assert_eq!(
        attachment(&app, &format!("MM{:0>32}", "small")).await,
        ("ready".into(), Some(vec![b's'; 900]), None)
    );
    let reason = Some("media larger than FERRY_MEDIA_MAX_BYTES (1000 bytes)".to_owned());
    for sid in [
        format!("MM{:0>32}", "big"),
        format!("MM{:0>32}", "stream"),
        "AUDBIG".into(),
    ] {
        assert_eq!(
            attachment(&app, &sid).await,
            ("failed".into(), None, reason.clone()),
            "{sid}"
        );
    }
    let mut paths = seen.paths();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/chat/getBase64FromMediaMessage/clinica-sp",
            "/twilio/big",
            "/twilio/small",
            "/twilio/stream"
        ],
        "no retries"
    );
    assert!(refused_total(&app, "too_large").await >= too_large_before + 3);
}

/// This module's tests, with the services they need beside the database.
pub fn suite() -> Vec<crate::Test> {
    [on_both_databases!(
        [];
        media_is_fetched_in_the_background_with_backoff_and_placeholders,
        media_url_to_loopback_is_refused_and_no_credentials_leave,
        integration_api_urls_off_the_allowed_list_get_no_request,
        redirects_are_checked_per_hop_and_credentials_stay_on_their_host,
        media_over_the_size_cap_fails_at_once_with_its_reason,
    )]
    .concat()
}
