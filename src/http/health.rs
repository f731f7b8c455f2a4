use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::services::Ferry;

pub fn router() -> Router<Ferry> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the database answers; each dependency is reported on its own line.
async fn readyz(State(ferry): State<Ferry>) -> (StatusCode, Json<Value>) {
    let database = match ferry.store.ping().await {
        Ok(()) => "ok".to_owned(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: database unavailable");
            "unavailable".to_owned()
        }
    };
    let ready = database == "ok";
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ready { "ready" } else { "unavailable" },
        "database": {"backend": ferry.store.backend().as_str(), "status": database},
    });
    (status, Json(body))
}
