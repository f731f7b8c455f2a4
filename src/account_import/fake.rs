//! A small in-process stand-in for the legacy HTTP API and media service, following
//! `reference/legacy-source.md`: `GET /accounts/{ref}`, `POST /configs-migration` (bearer token checked),
//! `GET /media/{name}` (HS256 JWT checked). It serves an export directory's accounts, channels and media.
//! Tests and `ferry bench account-import --source dynamodb` use it; switches make it fail on purpose.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;

#[derive(Default)]
pub struct Switches {
    /// Non-zero: `GET /accounts/…` answers this status.
    pub accounts_status: AtomicU16,
    /// Non-zero: `POST /configs-migration` answers this status.
    pub configs_status: AtomicU16,
    /// Milliseconds every answer waits first (to cause timeouts).
    pub delay_ms: AtomicU64,
    /// Requests answered.
    pub requests: AtomicU64,
}

struct Shared {
    export: PathBuf,
    token: Option<String>,
    media_secret: Vec<u8>,
    switches: Arc<Switches>,
}

pub struct FakeLegacyApi {
    pub url: String,
    pub switches: Arc<Switches>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeLegacyApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeLegacyApi {
    /// Serves `export` on a loopback port.
    pub async fn start(
        export: PathBuf,
        token: Option<String>,
        media_secret: &[u8],
    ) -> std::io::Result<Self> {
        let switches = Arc::new(Switches::default());
        let shared = Arc::new(Shared {
            export,
            token,
            media_secret: media_secret.to_vec(),
            switches: switches.clone(),
        });
        let app = Router::new()
            .route("/accounts/{legacy_ref}", get(account))
            .route("/configs-migration", post(configs))
            .route("/media/{name}", get(media))
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            url,
            switches,
            task,
        })
    }

    /// The media URL prefix for data loaded into DynamoDB.
    pub fn media_url(&self) -> String {
        format!("{}/media/", self.url)
    }
}

async fn prelude(shared: &Shared) {
    shared.switches.requests.fetch_add(1, Ordering::Relaxed);
    let delay = shared.switches.delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
}

fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    let Some(expected) = &shared.token else {
        return true;
    };
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        == Some(expected.as_str())
}

fn forced(status: &AtomicU16) -> Option<Response> {
    match status.load(Ordering::Relaxed) {
        0 => None,
        code => Some(
            (
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "forced failure",
            )
                .into_response(),
        ),
    }
}

async fn account(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(legacy_ref): Path<String>,
) -> Response {
    prelude(&shared).await;
    if let Some(answer) = forced(&shared.switches.accounts_status) {
        return answer;
    }
    if !authorized(&shared, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let accounts: Vec<Value> = std::fs::read_to_string(shared.export.join("accounts.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    match accounts
        .into_iter()
        .find(|a| a["account_id"] == legacy_ref.as_str())
    {
        Some(found) => Json(found).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn configs(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    prelude(&shared).await;
    if let Some(answer) = forced(&shared.switches.configs_status) {
        return answer;
    }
    if !authorized(&shared, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Some(legacy_ref) = body["account_id"]
        .as_str()
        .filter(|r| !r.contains(['/', '.']))
    else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    match std::fs::read_to_string(
        shared
            .export
            .join("channels")
            .join(format!("{legacy_ref}.json")),
    ) {
        Ok(text) => ([("content-type", "application/json")], text).into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn media(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    prelude(&shared).await;
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if super::media_token::verify(&shared.media_secret, token, chrono::Utc::now().timestamp())
        .is_err()
    {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if name.contains(['/', '\\']) || name.starts_with('.') {
        return StatusCode::NOT_FOUND.into_response();
    }
    match std::fs::read(shared.export.join("media").join(&name)) {
        Ok(bytes) => ([("content-type", "image/jpeg")], bytes).into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}
