//! `/api/v1/accounts/{account_id}/integrations`: provider connections and their webhook tokens (SPEC 4.3).
//! Administrators only; the token is shown on create, rotate and an audited reveal, never in listings.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};
use super::extract::{AccountAccess, ApiJson, ApiPath};
use crate::services::Ferry;
use crate::webhooks::integrations::{
    self as integrations, CreateIntegration, DEFAULT_OVERLAP, Provider, ProviderSecrets,
    integration_json,
};

pub fn router() -> Router<Ferry> {
    Router::new()
        .route(
            "/accounts/{account_id}/integrations",
            get(list).post(create),
        )
        .route("/accounts/{account_id}/integrations/{id}", get(show))
        .route(
            "/accounts/{account_id}/integrations/{id}/reveal",
            post(reveal),
        )
        .route(
            "/accounts/{account_id}/integrations/{id}/rotate",
            post(rotate),
        )
        .route(
            "/accounts/{account_id}/integrations/{id}/disable",
            post(disable),
        )
        .route(
            "/accounts/{account_id}/integrations/{id}/enable",
            post(enable),
        )
}

async fn list(State(ferry): State<Ferry>, access: AccountAccess) -> ApiResult<Json<Value>> {
    access.require_admin()?;
    let all = ferry.store.list_integrations(access.account_id).await?;
    Ok(Json(
        json!({"data": all.iter().map(integration_json).collect::<Vec<_>>()}),
    ))
}

async fn show(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiPath((_, id)): ApiPath<(i64, i64)>,
) -> ApiResult<Json<Value>> {
    access.require_admin()?;
    let integration = ferry.store.get_integration(access.account_id, id).await?;
    Ok(Json(integration_json(&integration)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    inbox_id: i64,
    provider: String,
    instance_name: Option<String>,
    phone_number_id: Option<String>,
    api_url: Option<String>,
    app_secret: Option<String>,
    verify_token: Option<String>,
    auth_token: Option<String>,
    api_key: Option<String>,
    access_token: Option<String>,
}

async fn create(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiJson(body): ApiJson<CreateBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    access.require_admin()?;
    let input = CreateIntegration {
        account_id: access.account_id,
        inbox_id: body.inbox_id,
        provider: Provider::parse(&body.provider)?,
        instance_name: body.instance_name,
        phone_number_id: body.phone_number_id,
        api_url: body.api_url,
        secrets: ProviderSecrets {
            app_secret: body.app_secret,
            verify_token: body.verify_token,
            auth_token: body.auth_token,
            api_key: body.api_key,
            access_token: body.access_token,
        },
    };
    let issued = integrations::create(&ferry, input, Some(access.user.id)).await?;
    Ok((StatusCode::CREATED, Json(issued.to_json())))
}

async fn reveal(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiPath((_, id)): ApiPath<(i64, i64)>,
) -> ApiResult<Json<Value>> {
    access.require_admin()?;
    let issued = integrations::reveal(&ferry, access.account_id, id, Some(access.user.id)).await?;
    Ok(Json(issued.to_json()))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    /// How long the current token keeps routing; default 24 hours.
    overlap_seconds: Option<i64>,
}

async fn rotate(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiPath((_, id)): ApiPath<(i64, i64)>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    access.require_admin()?;
    // The body is optional: no body rotates with the default overlap.
    let body: RotateBody = if body.iter().all(u8::is_ascii_whitespace) {
        RotateBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::validation("body", e.to_string()))?
    };
    let overlap = match body.overlap_seconds {
        Some(s) if s < 0 => {
            return Err(ApiError::validation(
                "overlap_seconds",
                "must not be negative",
            ));
        }
        Some(s) => chrono::Duration::seconds(s),
        None => DEFAULT_OVERLAP,
    };
    let issued =
        integrations::rotate(&ferry, access.account_id, id, overlap, Some(access.user.id)).await?;
    Ok(Json(issued.to_json()))
}

async fn disable(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiPath((_, id)): ApiPath<(i64, i64)>,
) -> ApiResult<Json<Value>> {
    set_enabled(ferry, access, id, false).await
}

async fn enable(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiPath((_, id)): ApiPath<(i64, i64)>,
) -> ApiResult<Json<Value>> {
    set_enabled(ferry, access, id, true).await
}

async fn set_enabled(
    ferry: Ferry,
    access: AccountAccess,
    id: i64,
    enabled: bool,
) -> ApiResult<Json<Value>> {
    access.require_admin()?;
    let integration =
        integrations::set_enabled(&ferry, access.account_id, id, enabled, Some(access.user.id))
            .await?;
    Ok(Json(integration_json(&integration)))
}
