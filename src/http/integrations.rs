//! `/api/v1/accounts/{account_id}/integrations`: provider connections and their webhook tokens (README: "Integrations and webhook tokens").
//! Administrators only; the token is shown on create, rotate and an audited reveal, never in listings.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiResult};
use super::extract::{AccountAccess, ApiJson, ApiPath};
use super::openapi::ErrorBody;
use super::params::{AccountPath, IntegrationPath};
use crate::services::Ferry;
use crate::webhooks::integrations::{
    self as integrations, CreateIntegration, DEFAULT_OVERLAP, IntegrationView, IssuedView,
    Provider, ProviderSecrets,
};

pub fn router() -> OpenApiRouter<Ferry> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show))
        .routes(routes!(reveal))
        .routes(routes!(rotate))
        .routes(routes!(disable))
        .routes(routes!(enable))
}

/// The provider an integration connects to.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)] // Documentation: the body carries the name, which `Provider::parse` checks.
enum ProviderName {
    Evolution,
    WhatsappCloud,
    Dialog360,
    TwilioWhatsapp,
}

#[derive(Debug, Serialize, ToSchema)]
struct IntegrationList {
    data: Vec<IntegrationView>,
}

/// The account's integrations, without their tokens.
#[utoipa::path(
    get,
    path = "/accounts/{account_id}/integrations",
    operation_id = "list_integrations",
    tag = "integrations",
    params(AccountPath),
    responses(
        (status = 200, description = "The integrations", body = IntegrationList),
        (status = 403, description = "Not an administrator of the account", body = ErrorBody),
    )
)]
async fn list(
    State(ferry): State<Ferry>,
    access: AccountAccess,
) -> ApiResult<Json<IntegrationList>> {
    access.require_admin()?;
    let all = ferry.store.list_integrations(access.account_id).await?;
    Ok(Json(IntegrationList {
        data: all.iter().map(IntegrationView::of).collect(),
    }))
}

/// One integration, without its token.
#[utoipa::path(
    get,
    path = "/accounts/{account_id}/integrations/{id}",
    operation_id = "get_integration",
    tag = "integrations",
    params(
        IntegrationPath
    ),
    responses(
        (status = 200, description = "The integration", body = IntegrationView),
        (status = 403, description = "Not an administrator of the account", body = ErrorBody),
    )
)]
async fn show(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiPath(IntegrationPath { id, .. }): ApiPath<IntegrationPath>,
) -> ApiResult<Json<IntegrationView>> {
    access.require_admin()?;
    let integration = ferry.store.get_integration(access.account_id, id).await?;
    Ok(Json(IntegrationView::of(&integration)))
}

/// A provider connection for one inbox. Secrets are stored encrypted and never shown again.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateIntegrationBody {
    #[schema(example = 1)]
    inbox_id: i64,
    #[schema(example = "evolution", value_type = ProviderName)]
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

/// Creates an integration and issues its secret webhook token, shown in this answer only.
#[utoipa::path(
    post,
    path = "/accounts/{account_id}/integrations",
    operation_id = "create_integration",
    tag = "integrations",
    params(AccountPath),
    request_body = CreateIntegrationBody,
    responses(
        (status = 201, description = "Created, with its token and webhook URL", body = IssuedView),
        (status = 403, description = "Not an administrator of the account", body = ErrorBody),
        (status = 409, description = "The inbox already has an integration, or the instance name is taken (`conflict`)", body = ErrorBody),
    )
)]
async fn create(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiJson(body): ApiJson<CreateIntegrationBody>,
) -> ApiResult<(StatusCode, Json<IssuedView>)> {
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
    Ok((StatusCode::CREATED, Json(issued.view())))
}

/// Shows the integration's token and webhook URL. Audited.
#[utoipa::path(
    post,
    path = "/accounts/{account_id}/integrations/{id}/reveal",
    operation_id = "reveal_integration_token",
    tag = "integrations",
    params(
        IntegrationPath
    ),
    responses(
        (status = 200, description = "The integration with its token", body = IssuedView),
        (status = 403, description = "Not an administrator of the account", body = ErrorBody),
    )
)]
async fn reveal(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiPath(IntegrationPath { id, .. }): ApiPath<IntegrationPath>,
) -> ApiResult<Json<IssuedView>> {
    access.require_admin()?;
    let issued = integrations::reveal(&ferry, access.account_id, id, Some(access.user.id)).await?;
    Ok(Json(issued.view()))
}

/// Optional: no body rotates with the default overlap.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    /// How long the current token keeps routing, at most 30 days; default 86,400 (24 hours).
    #[schema(minimum = 0, maximum = 2_592_000)]
    overlap_seconds: Option<i64>,
}

/// Issues a new token. The current one keeps routing for `overlap_seconds`, so the provider can be re-pointed.
#[utoipa::path(
    post,
    path = "/accounts/{account_id}/integrations/{id}/rotate",
    operation_id = "rotate_integration_token",
    tag = "integrations",
    params(
        IntegrationPath
    ),
    request_body(content = Option<RotateBody>, content_type = "application/json"),
    responses(
        (status = 200, description = "The integration with its new token", body = IssuedView),
        (status = 403, description = "Not an administrator of the account", body = ErrorBody),
    )
)]
async fn rotate(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiPath(IntegrationPath { id, .. }): ApiPath<IntegrationPath>,
    body: axum::body::Bytes,
) -> ApiResult<Json<IssuedView>> {
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
        // Beyond chrono's range is beyond the 30 days `rotate` allows (and must not panic).
        Some(s) => chrono::Duration::try_seconds(s).ok_or_else(|| {
            ApiError::validation("overlap_seconds", "must be between 0 and 30 days")
        })?,
        None => DEFAULT_OVERLAP,
    };
    let issued =
        integrations::rotate(&ferry, access.account_id, id, overlap, Some(access.user.id)).await?;
    Ok(Json(issued.view()))
}

/// Stops routing the integration's webhooks, on every node.
#[utoipa::path(
    post,
    path = "/accounts/{account_id}/integrations/{id}/disable",
    operation_id = "disable_integration",
    tag = "integrations",
    params(
        IntegrationPath
    ),
    responses(
        (status = 200, description = "The integration", body = IntegrationView),
        (status = 403, description = "Not an administrator of the account", body = ErrorBody),
    )
)]
async fn disable(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiPath(IntegrationPath { id, .. }): ApiPath<IntegrationPath>,
) -> ApiResult<Json<IntegrationView>> {
    set_enabled(ferry, access, id, false).await
}

/// Routes the integration's webhooks again.
#[utoipa::path(
    post,
    path = "/accounts/{account_id}/integrations/{id}/enable",
    operation_id = "enable_integration",
    tag = "integrations",
    params(
        IntegrationPath
    ),
    responses(
        (status = 200, description = "The integration", body = IntegrationView),
        (status = 403, description = "Not an administrator of the account", body = ErrorBody),
    )
)]
async fn enable(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiPath(IntegrationPath { id, .. }): ApiPath<IntegrationPath>,
) -> ApiResult<Json<IntegrationView>> {
    set_enabled(ferry, access, id, true).await
}

async fn set_enabled(
    ferry: Ferry,
    access: AccountAccess,
    id: i64,
    enabled: bool,
) -> ApiResult<Json<IntegrationView>> {
    access.require_admin()?;
    let integration =
        integrations::set_enabled(&ferry, access.account_id, id, enabled, Some(access.user.id))
            .await?;
    Ok(Json(IntegrationView::of(&integration)))
}
