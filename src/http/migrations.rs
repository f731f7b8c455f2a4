//! `/api/v1/accounts/{account_id}/inboxes/{inbox_id}/migrations`, administrators only.

use std::convert::Infallible;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiResult};
use super::extract::{AccountAccess, ApiJson, ApiPath, ApiQuery};
use super::openapi::ErrorBody;
use super::params::{InboxPath, MigrationPath};
use crate::inbox_migration::{
    self as im, Created, Destination, MigrationError, MigrationOptions, MigrationView, Preview,
};
use crate::services::Ferry;

pub fn router() -> OpenApiRouter<Ferry> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(preview))
        .routes(routes!(eligible))
        .routes(routes!(show))
        .routes(routes!(cancel))
        .routes(routes!(retry))
        .routes(routes!(revert))
        .routes(routes!(events))
}

impl From<MigrationError> for ApiError {
    fn from(e: MigrationError) -> Self {
        match e {
            MigrationError::Refused { code, message } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
            }
            MigrationError::NotFound(what) => ApiError::not_found(what),
            MigrationError::Service(s) => s.into(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
struct MigrationList {
    data: Vec<MigrationView>,
}

#[derive(Debug, Serialize, ToSchema)]
struct DestinationList {
    data: Vec<Destination>,
}

/// What a dry run would do: nothing is queued.
#[derive(Debug, Serialize, ToSchema)]
struct DryRun {
    dry_run: bool,
    plan: Preview,
}

/// One Server-Sent Event of a migration's stream.
#[derive(ToSchema)]
#[allow(dead_code)] // Documentation of what `progress::events` writes.
struct MigrationEvent {
    event: EventName,
    /// The migration (a `MigrationView`) as JSON.
    data: String,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
enum EventName {
    /// Whenever the migration changes while it is queued or running.
    Progress,
    /// Once, with the migration at its final status; the stream then ends.
    Done,
}

/// The inbox's migrations (as source), newest first.
#[utoipa::path(
    get,
    path = "/accounts/{account_id}/inboxes/{inbox_id}/migrations",
    operation_id = "list_inbox_migrations",
    tag = "inbox migrations",
    params(
        InboxPath
    ),
    responses(
        (status = 200, description = "The migrations", body = MigrationList),
        (status = 403, description = "Not an administrator of the account", body = ErrorBody),
    )
)]
async fn list(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiPath(InboxPath { inbox_id, .. }): ApiPath<InboxPath>,
) -> ApiResult<Json<MigrationList>> {
    access.require_admin()?;
    ferry.store.get_inbox(access.account_id, inbox_id).await?;
    let mut data = Vec::new();
    for m in ferry
        .store
        .list_inbox_migrations(access.account_id, Some(inbox_id), false)
        .await?
    {
        data.push(im::to_view(&ferry, &m).await?);
    }
    Ok(Json(MigrationList { data }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateMigrationBody {
    #[schema(example = 2)]
    destination_inbox_id: i64,
    /// Answer the plan and queue nothing.
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    options: MigrationOptions,
}

/// Queues a migration of this inbox into another inbox of the account; the worker runs it.
#[utoipa::path(
    post,
    path = "/accounts/{account_id}/inboxes/{inbox_id}/migrations",
    operation_id = "create_inbox_migration",
    tag = "inbox migrations",
    params(
        InboxPath
    ),
    request_body = CreateMigrationBody,
    responses(
        (status = 201, description = "Queued", body = MigrationView),
        (status = 200, description = "The plan of a dry run", body = DryRun),
        (status = 403, description = "Not an administrator of the account", body = ErrorBody),
        (status = 422, description = "Refused: `same_inbox`, `unknown_destination` (also for another account's inbox), \
            `not_whatsapp_like`, `migration_active` (one of the two inboxes is in a running migration), `invalid_options`, or `validation_failed` for the body", body = ErrorBody),
    )
)]
async fn create(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiPath(InboxPath { inbox_id, .. }): ApiPath<InboxPath>,
    ApiJson(body): ApiJson<CreateMigrationBody>,
) -> ApiResult<Response> {
    access.require_admin()?;
    let created = im::create(
        &ferry,
        access.account_id,
        inbox_id,
        body.destination_inbox_id,
        body.dry_run,
        body.options,
        Some(access.user.id),
    )
    .await?;
    Ok(match created {
        Created::Queued(m) => {
            (StatusCode::CREATED, Json(im::to_view(&ferry, &m).await?)).into_response()
        }
        Created::DryRun(plan) => Json(DryRun {
            dry_run: true,
            plan: *plan,
        })
        .into_response(),
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PreviewQuery {
    /// The inbox to move into.
    #[param(example = 2)]
    destination_inbox_id: i64,
}

/// What a migration into the destination would move, with warnings and an estimated duration.
#[utoipa::path(
    get,
    path = "/accounts/{account_id}/inboxes/{inbox_id}/migrations/preview",
    operation_id = "preview_inbox_migration",
    tag = "inbox migrations",
    params(
        InboxPath,
        PreviewQuery
    ),
    responses(
        (status = 200, description = "The counts", body = Preview),
        (status = 403, description = "Not an administrator of the account", body = ErrorBody),
        (status = 422, description = "Refused, as `create` would be", body = ErrorBody),
    )
)]
async fn preview(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiPath(InboxPath { inbox_id, .. }): ApiPath<InboxPath>,
    ApiQuery(q): ApiQuery<PreviewQuery>,
) -> ApiResult<Json<im::Preview>> {
    access.require_admin()?;
    Ok(Json(
        im::preview(&ferry, access.account_id, inbox_id, q.destination_inbox_id).await?,
    ))
}

/// The other WhatsApp inboxes of the account this one can move into.
#[utoipa::path(
    get,
    path = "/accounts/{account_id}/inboxes/{inbox_id}/migrations/eligible_destinations",
    operation_id = "list_eligible_destinations",
    tag = "inbox migrations",
    params(
        InboxPath
    ),
    responses(
        (status = 200, description = "The destinations", body = DestinationList),
        (status = 403, description = "Not an administrator of the account", body = ErrorBody),
    )
)]
async fn eligible(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiPath(InboxPath { inbox_id, .. }): ApiPath<InboxPath>,
) -> ApiResult<Json<DestinationList>> {
    access.require_admin()?;
    Ok(Json(DestinationList {
        data: im::eligible_destinations(&ferry, access.account_id, inbox_id).await?,
    }))
}

/// Show and the lifecycle actions share one shape: an administrator, a migration of this source inbox.
#[derive(Clone, Copy)]
enum Action {
    Show,
    Cancel,
    Retry,
    Revert,
}

async fn act(
    ferry: &Ferry,
    access: &AccountAccess,
    inbox_id: i64,
    id: i64,
    action: Action,
) -> ApiResult<Json<MigrationView>> {
    access.require_admin()?;
    let (account, source, user) = (access.account_id, Some(inbox_id), Some(access.user.id));
    let m = match action {
        Action::Show => im::get(ferry, account, source, id).await?,
        Action::Cancel => im::cancel(ferry, account, source, id, user).await?,
        Action::Retry => im::retry(ferry, account, source, id, user).await?,
        Action::Revert => im::revert(ferry, account, source, id, user).await?,
    };
    Ok(Json(im::to_view(ferry, &m).await?))
}

/// One migration with its progress.
#[utoipa::path(
    get,
    path = "/accounts/{account_id}/inboxes/{inbox_id}/migrations/{id}",
    operation_id = "get_inbox_migration",
    tag = "inbox migrations",
    params(
        MigrationPath
    ),
    responses(
        (status = 200, description = "The migration", body = MigrationView),
        (status = 403, description = "Not an administrator of the account", body = ErrorBody),
    )
)]
async fn show(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiPath(MigrationPath {
        inbox_id: inbox,
        id,
        ..
    }): ApiPath<MigrationPath>,
) -> ApiResult<Json<MigrationView>> {
    act(&ferry, &access, inbox, id, Action::Show).await
}

/// Asks a queued or running migration — or its queued or running revert — to stop; the current batch finishes
/// and is kept.
#[utoipa::path(
    post,
    path = "/accounts/{account_id}/inboxes/{inbox_id}/migrations/{id}/cancel",
    operation_id = "cancel_inbox_migration",
    tag = "inbox migrations",
    params(
        MigrationPath
    ),
    responses(
        (status = 200, description = "The migration", body = MigrationView),
        (status = 403, description = "Not an administrator of the account", body = ErrorBody),
        (status = 422, description = "Not queued or running (`not_cancellable`)", body = ErrorBody),
    )
)]
async fn cancel(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiPath(MigrationPath {
        inbox_id: inbox,
        id,
        ..
    }): ApiPath<MigrationPath>,
) -> ApiResult<Json<MigrationView>> {
    act(&ferry, &access, inbox, id, Action::Cancel).await
}

/// Queues a failed or cancelled migration again; it goes on from where it stopped.
#[utoipa::path(
    post,
    path = "/accounts/{account_id}/inboxes/{inbox_id}/migrations/{id}/retry",
    operation_id = "retry_inbox_migration",
    tag = "inbox migrations",
    params(
        MigrationPath
    ),
    responses(
        (status = 200, description = "The migration", body = MigrationView),
        (status = 403, description = "Not an administrator of the account", body = ErrorBody),
        (status = 422, description = "Not failed or cancelled (`not_retryable`), or another migration of these inboxes is active (`migration_active`)", body = ErrorBody),
    )
)]
async fn retry(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiPath(MigrationPath {
        inbox_id: inbox,
        id,
        ..
    }): ApiPath<MigrationPath>,
) -> ApiResult<Json<MigrationView>> {
    act(&ferry, &access, inbox, id, Action::Retry).await
}

/// Queues the revert: every moved row back where it was, exactly, from the journals of this migration and of
/// the cancelled or failed runs of the same pair it continued. A leased job (resumed after any crash,
/// cancellable at a batch boundary with `…/cancel`).
#[utoipa::path(
    post,
    path = "/accounts/{account_id}/inboxes/{inbox_id}/migrations/{id}/revert",
    operation_id = "revert_inbox_migration",
    tag = "inbox migrations",
    params(
        MigrationPath
    ),
    responses(
        (status = 202, description = "The revert is queued: a worker runs it in batches; follow `revert` in the migration (or its events)", body = MigrationView),
        (status = 403, description = "Not an administrator of the account", body = ErrorBody),
        (status = 422, description = "Not revertible (`not_revertible`: active, moved nothing, already reverted or reverting), another migration of these inboxes is active (`migration_active`), or a later migration of these inboxes must be reverted first (`later_migration`)", body = ErrorBody),
    )
)]
async fn revert(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiPath(MigrationPath {
        inbox_id: inbox,
        id,
        ..
    }): ApiPath<MigrationPath>,
) -> ApiResult<(StatusCode, Json<MigrationView>)> {
    let queued = act(&ferry, &access, inbox, id, Action::Revert).await?;
    Ok((StatusCode::ACCEPTED, queued))
}

/// Server-Sent Events: a `progress` event with the migration whenever it changes, then `done` at a terminal
/// status.
#[utoipa::path(
    get,
    path = "/accounts/{account_id}/inboxes/{inbox_id}/migrations/{id}/events",
    operation_id = "stream_inbox_migration_events",
    tag = "inbox migrations",
    params(
        MigrationPath
    ),
    responses(
        (status = 200, description = "A stream of events", content_type = "text/event-stream", body = MigrationEvent),
        (status = 403, description = "Not an administrator of the account", body = ErrorBody),
    )
)]
async fn events(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiPath(MigrationPath { inbox_id, id, .. }): ApiPath<MigrationPath>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    access.require_admin()?;
    let first = im::get(&ferry, access.account_id, Some(inbox_id), id).await?;
    let events = im::progress::events(&ferry, first.id).map_err(|busy| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_streams",
            busy.to_string(),
        )
    })?;
    Ok(sse(events))
}

/// The migration's progress events as Server-Sent Events (shared with the web UI's live panel).
pub(crate) fn sse(
    events: impl Stream<Item = im::progress::ProgressEvent> + Send + 'static,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let events = events.map(|e| Ok(Event::default().event(e.name).data(e.data.as_str())));
    Sse::new(events).keep_alive(KeepAlive::default())
}
