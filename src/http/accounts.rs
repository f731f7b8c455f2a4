//! `/api/v1/accounts/{account_id}`: the account, and its on-demand import from the legacy system (SPEC 5.1).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};
use super::extract::{AccountAccess, ApiQuery};
use crate::account_import::{self, ImportError, SourceError};
use crate::services::Ferry;

pub fn router() -> Router<Ferry> {
    Router::new()
        .route("/accounts/{account_id}", get(show))
        .route("/accounts/{account_id}/migrate", post(migrate))
        .route(
            "/accounts/{account_id}/migration-status",
            get(migration_status),
        )
}

impl From<ImportError> for ApiError {
    fn from(e: ImportError) -> Self {
        let message = e.to_string();
        match e {
            ImportError::NotConfigured => {
                ApiError::new(StatusCode::CONFLICT, "import_unavailable", message)
            }
            // An outage is never a "no": the client asks again later.
            ImportError::Legacy(SourceError::Unavailable(_)) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "legacy_unavailable",
                message,
            ),
            ImportError::Legacy(SourceError::Invalid(_)) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "legacy_invalid", message)
            }
            ImportError::NotNeeded => ApiError::new(StatusCode::CONFLICT, "not_needed", message),
            ImportError::NoLegacyRef => ApiError::new(StatusCode::CONFLICT, "not_needed", message),
            ImportError::ForceDisabled => {
                ApiError::new(StatusCode::FORBIDDEN, "force_disabled", message)
            }
            ImportError::Running => ApiError::new(StatusCode::CONFLICT, "import_running", message),
            ImportError::Store(s) => s.into(),
        }
    }
}

async fn show(State(ferry): State<Ferry>, access: AccountAccess) -> ApiResult<Json<Value>> {
    let account = ferry.store.get_account(access.account_id).await?;
    let status = account_import::migration_status(&ferry, &account).await?;
    Ok(Json(json!({
        "id": account.id,
        "name": account.name,
        // The client's view: a failed history import shows as completed (SPEC 5.2).
        "migration_status": if status == "messages-failure" { "completed" } else { status.as_str() },
        "merge_brazil_ninth_digit": account.merge_brazil_ninth_digit,
        "role": access.role,
        "created_at": account.created_at,
    })))
}

#[derive(Debug, Deserialize)]
struct MigrateQuery {
    #[serde(default)]
    force: bool,
}

/// 202 at once; the import runs on the worker. A call while one runs returns that one.
async fn migrate(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiQuery(query): ApiQuery<MigrateQuery>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if query.force {
        access.require_admin()?;
    }
    let (import, created) =
        account_import::start(&ferry, access.account_id, Some(access.user.id), query.force).await?;
    let account = ferry.store.get_account(access.account_id).await?;
    let mut view = account_import::status_view(&ferry, &account, false).await?;
    view["import_id"] = import.id.into();
    view["queued"] = created.into();
    Ok((StatusCode::ACCEPTED, Json(view)))
}

#[derive(Debug, Deserialize)]
struct StatusQuery {
    #[serde(default)]
    detail: bool,
}

async fn migration_status(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiQuery(query): ApiQuery<StatusQuery>,
) -> ApiResult<Json<Value>> {
    if query.detail {
        access.require_admin()?;
    }
    let account = ferry.store.get_account(access.account_id).await?;
    Ok(Json(
        account_import::status_view(&ferry, &account, query.detail).await?,
    ))
}
