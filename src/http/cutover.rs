//! The cut-over (README: "Cutting over from the legacy layout") for installation administrators: `/api/v1/integrations/legacy/…`, the same
//! operations as `ferry integrations check|migrate|verify|tokens|cutover|cleanup`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiQuery, CurrentUser};
use super::openapi::ErrorBody;
use crate::services::Ferry;
use crate::webhooks::cutover::{
    self, CheckReport, CleanupReport, CutoverOptions, CutoverReport, CutoverScope, MigrateReport,
    TokenRow, VerifyReport,
};

pub fn router() -> OpenApiRouter<Ferry> {
    OpenApiRouter::new()
        .routes(routes!(check))
        .routes(routes!(migrate))
        .routes(routes!(verify))
        .routes(routes!(tokens))
        .routes(routes!(run_cutover))
        .routes(routes!(cleanup))
}

/// Only installation administrators: the legacy layout spans every account.
fn installation_admin(user: &CurrentUser) -> ApiResult<()> {
    if user.0.installation_admin {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "the cut-over is for installation administrators",
        ))
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct QuietDays {
    /// Days without legacy traffic after which an instance counts as quiet; default 14.
    #[param(minimum = 0)]
    quiet_days: Option<i64>,
}

/// What is left on the legacy layout: instances without an integration, legacy traffic, the legacy route's state.
#[utoipa::path(
    get,
    path = "/integrations/legacy/check",
    operation_id = "check_legacy_cutover",
    tag = "legacy cut-over",
    params(QuietDays),
    responses(
        (status = 200, description = "The report", body = CheckReport),
        (status = 400, description = "A query parameter of the wrong type or unknown (`invalid_query`)", body = ErrorBody),
        (status = 403, description = "Not an installation administrator", body = ErrorBody),
        (status = 409, description = "The legacy tables were removed by `cleanup` (`conflict`)", body = ErrorBody),
    )
)]
async fn check(
    State(ferry): State<Ferry>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<QuietDays>,
) -> ApiResult<Json<CheckReport>> {
    installation_admin(&user)?;
    Ok(Json(
        cutover::check(&ferry, q.quiet_days.unwrap_or(14)).await?,
    ))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct LegacyMigrateBody {
    /// Report what would be created and change nothing.
    #[serde(default)]
    dry_run: bool,
}

/// Creates an integration (with a token) for every legacy instance and channel row that has none. Idempotent.
#[utoipa::path(
    post,
    path = "/integrations/legacy/migrate",
    operation_id = "migrate_legacy_integrations",
    tag = "legacy cut-over",
    request_body = LegacyMigrateBody,
    responses(
        (status = 200, description = "What was (or would be) done", body = MigrateReport),
        (status = 403, description = "Not an installation administrator", body = ErrorBody),
        (status = 409, description = "The legacy tables were removed by `cleanup` (`conflict`)", body = ErrorBody),
    )
)]
async fn migrate(
    State(ferry): State<Ferry>,
    user: CurrentUser,
    ApiJson(body): ApiJson<LegacyMigrateBody>,
) -> ApiResult<Json<MigrateReport>> {
    installation_admin(&user)?;
    Ok(Json(
        cutover::migrate(&ferry, body.dry_run, Some(user.0.id)).await?,
    ))
}

/// The 409 of `verify`: the report of where they differ, or the error when the legacy tables are gone.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // Documentation only: the handler answers one or the other.
enum VerifyConflict {
    Report(VerifyReport),
    Error(ErrorBody),
}

/// 200 when the legacy rows and the integrations agree (key sets and fields), 409 with the same report when they
/// do not.
#[utoipa::path(
    get,
    path = "/integrations/legacy/verify",
    operation_id = "verify_legacy_cutover",
    tag = "legacy cut-over",
    responses(
        (status = 200, description = "They agree", body = VerifyReport),
        (status = 409, description = "They differ (the report says where), or the legacy tables were removed by \
            `cleanup` (an error)", body = VerifyConflict),
        (status = 403, description = "Not an installation administrator", body = ErrorBody),
    )
)]
async fn verify(
    State(ferry): State<Ferry>,
    user: CurrentUser,
) -> ApiResult<(StatusCode, Json<VerifyReport>)> {
    installation_admin(&user)?;
    let report = cutover::verify(&ferry).await?;
    let status = if report.agree {
        StatusCode::OK
    } else {
        StatusCode::CONFLICT
    };
    Ok((status, Json(report)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct Reveal {
    /// Show the tokens in the clear (audited); masked otherwise.
    reveal: Option<bool>,
}

/// Every integration with the webhook URL to point its provider at.
#[utoipa::path(
    get,
    path = "/integrations/legacy/tokens",
    operation_id = "list_legacy_tokens",
    tag = "legacy cut-over",
    params(Reveal),
    responses(
        (status = 200, description = "Every integration with its webhook URL, masked unless `reveal` and the caller administers its account (`revealed`)", body = Vec<TokenRow>),
        (status = 400, description = "A query parameter of the wrong type or unknown (`invalid_query`)", body = ErrorBody),
        (status = 403, description = "Not an installation administrator", body = ErrorBody),
        (status = 409, description = "The legacy tables were removed by `cleanup` (`conflict`)", body = ErrorBody),
    )
)]
async fn tokens(
    State(ferry): State<Ferry>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<Reveal>,
) -> ApiResult<Json<Vec<TokenRow>>> {
    installation_admin(&user)?;
    Ok(Json(
        cutover::tokens(&ferry, q.reveal.unwrap_or(false), Some(user.0.id)).await?,
    ))
}

/// One instance, or `"all": true`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct LegacyCutoverBody {
    instance: Option<String>,
    #[serde(default)]
    all: bool,
    #[serde(default)]
    dry_run: bool,
    /// Also re-point instances whose webhook is disabled (or unset), which enables it; without it they are
    /// reported under `skipped` and left as they are.
    #[serde(default)]
    include_disabled: bool,
}

/// Re-points Evolution instances at their token URLs through the Evolution API, and checks that they took it.
///
/// Instances whose webhook is disabled (or unset) are skipped and reported under `skipped`, unless
/// `include_disabled`. On a failure the previous webhook is written back, read back and compared (`restored`).
#[utoipa::path(
    post,
    path = "/integrations/legacy/cutover",
    operation_id = "run_legacy_cutover",
    tag = "legacy cut-over",
    request_body = LegacyCutoverBody,
    responses(
        (status = 200, description = "Every instance named was re-pointed", body = CutoverReport),
        (status = 502, description = "The Evolution API failed; the report says which instance and where it stopped", body = CutoverReport),
        (status = 403, description = "Not an installation administrator", body = ErrorBody),
        (status = 409, description = "The legacy tables were removed by `cleanup` (`conflict`)", body = ErrorBody),
        (status = 404, description = "No enabled Evolution integration of that instance (`not_found`)", body = ErrorBody),
    )
)]
async fn run_cutover(
    State(ferry): State<Ferry>,
    user: CurrentUser,
    ApiJson(body): ApiJson<LegacyCutoverBody>,
) -> ApiResult<(StatusCode, Json<CutoverReport>)> {
    installation_admin(&user)?;
    let scope = match (body.instance, body.all) {
        (Some(instance), false) => CutoverScope::Instance(instance),
        (None, true) => CutoverScope::All,
        _ => {
            return Err(ApiError::validation(
                "instance",
                "name one instance, or send \"all\": true",
            ));
        }
    };
    let options = CutoverOptions {
        dry_run: body.dry_run,
        include_disabled: body.include_disabled,
        by: Some(user.0.id),
    };
    let report = cutover::cutover(&ferry, scope, options).await?;
    let status = if report.ok {
        StatusCode::OK
    } else {
        StatusCode::BAD_GATEWAY
    };
    Ok((status, Json(report)))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct LegacyCleanupBody {
    /// Refuse while the legacy route saw traffic in this many days; default 14.
    #[schema(minimum = 0)]
    quiet_days: Option<i64>,
    /// Clean up despite recent legacy traffic.
    #[serde(default)]
    force: bool,
}

/// Retires the legacy layout: a backup of every legacy table in the data directory, the legacy route turned off
/// (it answers 410 Gone), then the legacy tables dropped.
#[utoipa::path(
    post,
    path = "/integrations/legacy/cleanup",
    operation_id = "cleanup_legacy_layout",
    tag = "legacy cut-over",
    request_body = LegacyCleanupBody,
    responses(
        (status = 200, description = "What was cleaned up", body = CleanupReport),
        (status = 403, description = "Not an installation administrator", body = ErrorBody),
        (status = 409, description = "The legacy route saw traffic within `quiet_days` and `force` is not set, or the legacy tables are gone \
            (`conflict`)", body = ErrorBody),
    )
)]
async fn cleanup(
    State(ferry): State<Ferry>,
    user: CurrentUser,
    ApiJson(body): ApiJson<LegacyCleanupBody>,
) -> ApiResult<Json<CleanupReport>> {
    installation_admin(&user)?;
    Ok(Json(
        cutover::cleanup(
            &ferry,
            body.quiet_days.unwrap_or(14),
            body.force,
            Some(user.0.id),
        )
        .await?,
    ))
}
