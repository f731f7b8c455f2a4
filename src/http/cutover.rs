//! The cut-over (SPEC 4.4) for installation administrators: `/api/v1/integrations/legacy/…`, the same
//! operations as `ferry integrations check|migrate|verify|tokens|cutover|cleanup`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiQuery, CurrentUser};
use crate::services::Ferry;
use crate::webhooks::cutover::{self, CutoverScope};

pub fn router() -> Router<Ferry> {
    Router::new()
        .route("/integrations/legacy/check", get(check))
        .route("/integrations/legacy/migrate", post(migrate))
        .route("/integrations/legacy/verify", get(verify))
        .route("/integrations/legacy/tokens", get(tokens))
        .route("/integrations/legacy/cutover", post(run_cutover))
        .route("/integrations/legacy/cleanup", post(cleanup))
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuietDays {
    quiet_days: Option<i64>,
}

async fn check(
    State(ferry): State<Ferry>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<QuietDays>,
) -> ApiResult<Json<Value>> {
    installation_admin(&user)?;
    Ok(Json(
        cutover::check(&ferry, q.quiet_days.unwrap_or(14)).await?,
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MigrateBody {
    #[serde(default)]
    dry_run: bool,
}

async fn migrate(
    State(ferry): State<Ferry>,
    user: CurrentUser,
    ApiJson(body): ApiJson<MigrateBody>,
) -> ApiResult<Json<Value>> {
    installation_admin(&user)?;
    Ok(Json(json!(cutover::migrate(&ferry, body.dry_run).await?)))
}

/// 200 when the key sets and fields agree, 409 with the same report when they do not.
async fn verify(
    State(ferry): State<Ferry>,
    user: CurrentUser,
) -> ApiResult<(StatusCode, Json<Value>)> {
    installation_admin(&user)?;
    let report = cutover::verify(&ferry).await?;
    let status = if report["agree"] == true {
        StatusCode::OK
    } else {
        StatusCode::CONFLICT
    };
    Ok((status, Json(report)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Reveal {
    reveal: Option<bool>,
}

async fn tokens(
    State(ferry): State<Ferry>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<Reveal>,
) -> ApiResult<Json<Value>> {
    installation_admin(&user)?;
    Ok(Json(
        cutover::tokens(&ferry, q.reveal.unwrap_or(false)).await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CutoverBody {
    instance: Option<String>,
    #[serde(default)]
    all: bool,
    #[serde(default)]
    dry_run: bool,
}

/// 200 when every instance was re-pointed, 502 (the Evolution API failed) with the report when it stopped.
async fn run_cutover(
    State(ferry): State<Ferry>,
    user: CurrentUser,
    ApiJson(body): ApiJson<CutoverBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
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
    let report = cutover::cutover(&ferry, scope, body.dry_run).await?;
    let status = if report["ok"] == true {
        StatusCode::OK
    } else {
        StatusCode::BAD_GATEWAY
    };
    Ok((status, Json(report)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CleanupBody {
    quiet_days: Option<i64>,
    #[serde(default)]
    force: bool,
}

async fn cleanup(
    State(ferry): State<Ferry>,
    user: CurrentUser,
    ApiJson(body): ApiJson<CleanupBody>,
) -> ApiResult<Json<Value>> {
    installation_admin(&user)?;
    Ok(Json(
        cutover::cleanup(&ferry, body.quiet_days.unwrap_or(14), body.force).await?,
    ))
}
