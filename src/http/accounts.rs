//! `/api/v1/accounts/{account_id}`: the account, and its on-demand import from the legacy system (README: "What the client app does").

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiResult};
use super::extract::{AccountAccess, ApiQuery};
use super::params::AccountPath;
use crate::account_import::{self, ImportError, ImportStatusView, SourceError};
use crate::domain::Role;
use crate::services::Ferry;

pub fn router() -> OpenApiRouter<Ferry> {
    OpenApiRouter::new()
        .routes(routes!(show))
        .routes(routes!(migrate))
        .routes(routes!(migration_status))
        .routes(routes!(check_migration_status))
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

/// An account as its users see it.
#[derive(Debug, Serialize, ToSchema)]
struct AccountView {
    id: i64,
    name: String,
    /// The import from the legacy system as the client app sees it (README: "What the client app does").
    #[schema(example = "not-started")]
    migration_status: String,
    merge_brazil_ninth_digit: bool,
    /// The caller's role in this account.
    role: Role,
    created_at: chrono::DateTime<chrono::Utc>,
}

/// The account, with its import status. The first call asks the legacy system once whether it knows the account.
#[utoipa::path(
    get,
    path = "/accounts/{account_id}",
    operation_id = "get_account",
    tag = "accounts",
    params(AccountPath),
    responses(
        (status = 200, description = "The account", body = AccountView),
        (status = 503, description = "The legacy system could not be asked (`legacy_unavailable`)", body = super::openapi::ErrorBody),
    )
)]
async fn show(State(ferry): State<Ferry>, access: AccountAccess) -> ApiResult<Json<AccountView>> {
    let account = ferry.store.get_account(access.account_id).await?;
    let status = account_import::migration_status(&ferry, &account).await?;
    Ok(Json(AccountView {
        id: account.id,
        name: account.name,
        // The client's view: a failed history import shows as completed (README: "Stages and what happens on failure").
        migration_status: if status == "messages-failure" {
            "completed".to_owned()
        } else {
            status
        },
        merge_brazil_ninth_digit: account.merge_brazil_ninth_digit,
        role: access.role,
        created_at: account.created_at,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct MigrateQuery {
    /// Delete what earlier imports created and import again: administrators, with
    /// `FERRY_ALLOW_FORCE_REMIGRATION=true`.
    #[serde(default)]
    force: bool,
}

/// The import's status, and which import answered.
#[derive(Debug, Serialize, ToSchema)]
struct MigrateAccepted {
    #[serde(flatten)]
    status: ImportStatusView,
    import_id: i64,
    /// False when an import was already queued or running: this is that one.
    queued: bool,
}

/// Starts the import from the legacy system: 202 at once, the import runs on the worker. A call while one is
/// queued or running returns that one.
#[utoipa::path(
    post,
    path = "/accounts/{account_id}/migrate",
    operation_id = "start_account_import",
    tag = "accounts",
    params(AccountPath, MigrateQuery),
    responses(
        (status = 202, description = "Queued, or already under way", body = MigrateAccepted),
        (status = 403, description = "`force` without the administrator role (`forbidden`) or while forced \
            re-migration is disabled (`force_disabled`)", body = super::openapi::ErrorBody),
        (status = 409, description = "No legacy system is configured (`import_unavailable`) or the account is not \
            in it (`not_needed`)", body = super::openapi::ErrorBody),
        (status = 502, description = "The legacy system answered something unreadable (`legacy_invalid`)", body = super::openapi::ErrorBody),
        (status = 503, description = "The legacy system could not be asked (`legacy_unavailable`)", body = super::openapi::ErrorBody),
    )
)]
async fn migrate(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiQuery(query): ApiQuery<MigrateQuery>,
) -> ApiResult<(StatusCode, Json<MigrateAccepted>)> {
    if query.force {
        access.require_admin()?;
    }
    let (import, created) =
        account_import::start(&ferry, access.account_id, Some(access.user.id), query.force).await?;
    let account = ferry.store.get_account(access.account_id).await?;
    let status = account_import::status(&ferry, &account, false).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(MigrateAccepted {
            status,
            import_id: import.id,
            queued: created,
        }),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct StatusQuery {
    /// Administrators: the true status (`messages-failure` is not shown as `completed`) and the import record.
    #[serde(default)]
    detail: bool,
}

/// Where the account's import stands, with counts per kind of record.
#[utoipa::path(
    get,
    path = "/accounts/{account_id}/migration-status",
    operation_id = "get_account_import_status",
    tag = "accounts",
    params(AccountPath, StatusQuery),
    responses(
        (status = 200, description = "The status", body = ImportStatusView),
        (status = 403, description = "`detail` without the administrator role", body = super::openapi::ErrorBody),
        (status = 503, description = "The legacy system could not be asked (`legacy_unavailable`)", body = super::openapi::ErrorBody),
    )
)]
async fn migration_status(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiQuery(query): ApiQuery<StatusQuery>,
) -> ApiResult<Json<ImportStatusView>> {
    if query.detail {
        access.require_admin()?;
    }
    let account = ferry.store.get_account(access.account_id).await?;
    Ok(Json(
        account_import::status(&ferry, &account, query.detail).await?,
    ))
}

/// The same answer as `migration-status`, under the name the client app of the account-import design polls.
#[utoipa::path(
    get,
    path = "/accounts/{account_id}/check-migration-status",
    operation_id = "check_account_import_status",
    tag = "accounts",
    params(AccountPath, StatusQuery),
    responses(
        (status = 200, description = "The status", body = ImportStatusView),
        (status = 403, description = "`detail` without the administrator role", body = super::openapi::ErrorBody),
        (status = 503, description = "The legacy system could not be asked (`legacy_unavailable`)", body = super::openapi::ErrorBody),
    )
)]
async fn check_migration_status(
    state: State<Ferry>,
    access: AccountAccess,
    query: ApiQuery<StatusQuery>,
) -> ApiResult<Json<ImportStatusView>> {
    migration_status(state, access, query).await
}
