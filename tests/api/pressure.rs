//! Issue 17 item 4: the server under pressure. Idle and slow clients take at most `FERRY_MAX_CONNECTIONS`
//! connections; a reserve beyond them keeps `/healthz` and `/readyz` answering (everything else 503 `busy`); and
//! headers or bodies that do not arrive in time free their connection.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Db, TestApp, spawn_app_with};
use crate::webhooks::{connected, count};

/// A route that needs a token: 401 when served in full, 503 `busy` on a connection past the cap.
const API: &str = "/api/v1/accounts/1/inboxes";

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .expect("connect")
}

/// A GET on a connection of its own (none pooled): status, `Retry-After`, JSON body.
async fn fresh(app: &TestApp, path: &str) -> (u16, Option<String>, Value) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let response = client
        .get(format!("{}{path}", app.base))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (
        status,
        retry_after,
        response.json().await.unwrap_or(Value::Null),
    )
}

/// The status of `path` once the server has let go of a closed connection's slot (that happens a moment after
/// the client sees the connection end).
async fn served(app: &TestApp, path: &str) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (status, _, body) = fresh(app, path).await;
        if status != 503 || Instant::now() > deadline {
            assert_ne!(status, 503, "still busy: {body}");
            return status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the server sends until it closes the connection; panics when it is still open after `within`.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => panic!(
                "the connection is still open after {within:?} (got {:?})",
                String::from_utf8_lossy(&got)
            ),
            Ok(Ok(0) | Err(_)) => return String::from_utf8_lossy(&got).into_owned(),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sixty connections that send nothing or half a header, against a cap of 20 (and its reserve of 32): probes
/// are still answered at once on a fresh connection, other requests are 503 `busy`; after the header timeout the
/// server has closed every idle connection and serves requests in full again.
pub async fn idle_connections_at_the_cap_leave_health_answering(db: Db) {
    let app = spawn_app_with(db, |config| {
        config.max_connections = 20;
        config.header_read_timeout_seconds = 3;
    })
    .await;
    let opened = Instant::now();
    let mut idle = Vec::new();
    for i in 0..60 {
        let mut stream = connect(&app).await;
        if i % 3 == 0 {
            stream
                .write_all(format!("GET {API} HTTP/1.1\r\nHost: ferry\r\n").as_bytes())
                .await
                .unwrap();
        }
        idle.push(stream);
    }
    for path in ["/healthz", "/readyz"] {
        let (status, _, body) = fresh(&app, path).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (status, retry_after, body) = fresh(&app, API).await;
    assert!(
        opened.elapsed() < Duration::from_secs(3),
        "too slow to tell: the header timeout may have freed the connections"
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("busy")),
        "{body}"
    );
    assert!(retry_after.is_some(), "a busy answer says when to retry");

    for stream in &mut idle {
        let answer = read_until_closed(stream, Duration::from_secs(10)).await;
        assert_eq!(answer, "", "an idle connection is closed without an answer");
    }
    assert!(opened.elapsed() < Duration::from_secs(10));
    eprintln!(
        "fault figures: 60 idle connections at a cap of 20 → health 200, API 503 busy; all closed by the server {:.2} s after opening",
        opened.elapsed().as_secs_f64()
    );
    assert_eq!(served(&app, API).await, 401);
    assert_eq!(served(&app, "/healthz").await, 200);
}

/// Webhook POSTs whose bodies stop after 10 of their 1,000 declared bytes are answered 408 once the body timeout
/// runs out and kept as dead letters (as an unreadable body is); an API POST that stalls the same way is 408
/// too; and their connections' slots are free again.
pub async fn a_stalled_webhook_body_times_out(db: Db) {
    let app = spawn_app_with(db, |config| {
        config.max_connections = 3;
        config.header_read_timeout_seconds = 1;
        config.body_read_timeout_seconds = 1;
    })
    .await;
    let f = app.fixture().await;
    let (_, hook) = connected(
        &app,
        &f,
        "evolution",
        json!({"provider": "evolution", "instance_name": "clinica-sp"}),
    )
    .await;
    // The fixture's keep-alive connection is closed once idle for the header timeout.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let head = format!(
        "POST {hook} HTTP/1.1\r\nHost: ferry\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    );
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut stream = connect(&app).await;
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(br#"{"event":""#).await.unwrap();
        stalled.push(stream);
    }
    let mut api = connect(&app).await;
    let head = format!(
        "POST /api/v1/accounts/{}/inboxes HTTP/1.1\r\nHost: ferry\r\napi_access_token: {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
        f.account_id, f.admin_token
    );
    api.write_all(head.as_bytes()).await.unwrap();
    api.write_all(br#"{"name":""#).await.unwrap();
    stalled.push(api);
    let sent = Instant::now();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, _, body) = fresh(&app, API).await;
    assert_eq!(status, 503, "every slot is held by a stalled body: {body}");
    assert_eq!(fresh(&app, "/healthz").await.0, 200);

    for stream in &mut stalled {
        let answer = read_until_closed(stream, Duration::from_secs(10)).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("request_timeout"), "{answer}");
    }
    assert!(
        sent.elapsed() >= Duration::from_millis(900),
        "answered before the body timeout"
    );
    assert_eq!(served(&app, API).await, 401, "the slots are free again");
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM webhook_dead_letters WHERE status_code = 408"
        )
        .await,
        2
    );
}

/// This module's tests, with the services they need beside the database.
pub fn suite() -> Vec<crate::Test> {
    [on_both_databases!(
        [];
        idle_connections_at_the_cap_leave_health_answering,
        a_stalled_webhook_body_times_out,
    )]
    .concat()
}
