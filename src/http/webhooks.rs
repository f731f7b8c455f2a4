//! Provider webhook routes (SPEC 4.1). Unknown or disabled token 404, malformed body 400 (kept as a dead letter
//! with its raw body and headers), stored or duplicate 200.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};
use super::extract::ApiPath;
use crate::domain::WebhookToken;
use crate::services::Ferry;
use crate::store::{NewDeadLetter, TokenRoute};
use crate::webhooks::ingest::{Outcome, ingest};
use crate::webhooks::{event::ParseError, evolution};

pub fn router() -> Router<Ferry> {
    Router::new()
        .route(
            "/webhooks/evolution/whatsapp/{token}",
            post(evolution_token),
        )
        .route(
            "/webhooks/evolution/whatsapp/{token}/{event}",
            post(evolution_token_event),
        )
}

async fn evolution_token(
    State(ferry): State<Ferry>,
    ApiPath(token): ApiPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    evolution_inner(ferry, token, headers, body).await
}

/// Evolution's "webhook by events" appends the event name to the URL; the body names it too.
async fn evolution_token_event(
    State(ferry): State<Ferry>,
    ApiPath((token, _event)): ApiPath<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    evolution_inner(ferry, token, headers, body).await
}

async fn route_of(ferry: &Ferry, token: &str) -> ApiResult<TokenRoute> {
    let unknown = || ApiError::not_found("webhook token");
    let token = WebhookToken::parse(token).map_err(|_| unknown())?;
    match ferry
        .token_routes
        .resolve(ferry.store.as_ref(), &token)
        .await?
    {
        Some(route) if route.enabled && route.provider == "evolution" => Ok(route),
        _ => Err(unknown()),
    }
}

async fn evolution_inner(
    ferry: Ferry,
    token: String,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let route = route_of(&ferry, &token).await?;
    let event = match evolution::parse(&body) {
        Ok(event) => event,
        Err(ParseError(reason)) => {
            dead_letter(&ferry, &route, &reason, 400, &headers, &body).await;
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_webhook",
                reason,
            ));
        }
    };
    match ingest(&ferry, &route, event).await {
        Ok(outcome) => Ok((StatusCode::OK, Json(outcome_json(&outcome)))),
        Err(e) => {
            tracing::error!(error = %e, integration = route.integration_id, "webhook not stored");
            dead_letter(&ferry, &route, &e.to_string(), 500, &headers, &body).await;
            Err(e.into())
        }
    }
}

fn outcome_json(outcome: &Outcome) -> Value {
    match outcome {
        Outcome::Stored {
            message_id,
            conversation_id,
        } => {
            json!({"status": "stored", "message_id": message_id, "conversation_id": conversation_id})
        }
        Outcome::Duplicate { message_id } => {
            json!({"status": "duplicate", "message_id": message_id})
        }
        Outcome::StatusRaised(changed) => json!({"status": "status", "changed": changed}),
        Outcome::Ignored(reason) => json!({"status": "ignored", "reason": reason}),
    }
}

/// Keeps what the provider sent; a failure to keep it is logged (the database may be what failed).
async fn dead_letter(
    ferry: &Ferry,
    route: &TokenRoute,
    reason: &str,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
) {
    let headers: serde_json::Map<String, Value> = headers
        .iter()
        .filter(|(name, _)| name.as_str() != "authorization")
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned()),
            )
        })
        .collect();
    let letter = NewDeadLetter {
        provider: &route.provider,
        route: "token",
        integration_id: Some(route.integration_id),
        reason,
        status_code: status,
        headers: &Value::Object(headers),
        body,
    };
    if let Err(e) = ferry.store.record_dead_letter(&letter).await {
        tracing::error!(error = %e, "dead letter not recorded");
    }
}
