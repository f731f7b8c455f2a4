//! SPEC 3.7: `/api/v1/accounts/{account_id}/inboxes/{inbox_id}/migrations`, administrators only.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::Stream;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};
use super::extract::{AccountAccess, ApiJson, ApiPath, ApiQuery};
use crate::inbox_migration::{self as im, Created, MigrationError, MigrationOptions};
use crate::services::Ferry;

pub fn router() -> Router<Ferry> {
    let base = "/accounts/{account_id}/inboxes/{inbox_id}/migrations";
    Router::new()
        .route(base, get(list).post(create))
        .route(&format!("{base}/preview"), get(preview))
        .route(&format!("{base}/eligible_destinations"), get(eligible))
        .route(&format!("{base}/{{id}}"), get(show))
        .route(&format!("{base}/{{id}}/cancel"), post(cancel))
        .route(&format!("{base}/{{id}}/retry"), post(retry))
        .route(&format!("{base}/{{id}}/revert"), post(revert))
        .route(&format!("{base}/{{id}}/events"), get(events))
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

async fn list(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiPath((_, inbox_id)): ApiPath<(i64, i64)>,
) -> ApiResult<Json<Value>> {
    access.require_admin()?;
    ferry.store.get_inbox(access.account_id, inbox_id).await?;
    let mut data = Vec::new();
    for m in ferry
        .store
        .list_inbox_migrations(access.account_id, Some(inbox_id), false)
        .await?
    {
        data.push(im::to_json(&ferry, &m).await?);
    }
    Ok(Json(json!({ "data": data })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    destination_inbox_id: i64,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    options: MigrationOptions,
}

async fn create(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiPath((_, inbox_id)): ApiPath<(i64, i64)>,
    ApiJson(body): ApiJson<CreateBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
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
    match created {
        Created::Queued(m) => Ok((StatusCode::CREATED, Json(im::to_json(&ferry, &m).await?))),
        Created::DryRun(plan) => Ok((StatusCode::OK, Json(json!({"dry_run": true, "plan": plan})))),
    }
}

#[derive(Debug, Deserialize)]
struct PreviewQuery {
    destination_inbox_id: i64,
}

async fn preview(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiPath((_, inbox_id)): ApiPath<(i64, i64)>,
    ApiQuery(q): ApiQuery<PreviewQuery>,
) -> ApiResult<Json<im::Preview>> {
    access.require_admin()?;
    Ok(Json(
        im::preview(&ferry, access.account_id, inbox_id, q.destination_inbox_id).await?,
    ))
}

async fn eligible(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiPath((_, inbox_id)): ApiPath<(i64, i64)>,
) -> ApiResult<Json<Value>> {
    access.require_admin()?;
    Ok(Json(
        json!({"data": im::eligible_destinations(&ferry, access.account_id, inbox_id).await?}),
    ))
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
) -> ApiResult<Json<Value>> {
    access.require_admin()?;
    let (account, source, user) = (access.account_id, Some(inbox_id), Some(access.user.id));
    let m = match action {
        Action::Show => im::get(ferry, account, source, id).await?,
        Action::Cancel => im::cancel(ferry, account, source, id, user).await?,
        Action::Retry => im::retry(ferry, account, source, id, user).await?,
        Action::Revert => im::revert(ferry, account, source, id, user).await?,
    };
    Ok(Json(im::to_json(ferry, &m).await?))
}

type MigrationPath = ApiPath<(i64, i64, i64)>;

async fn show(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiPath((_, inbox, id)): MigrationPath,
) -> ApiResult<Json<Value>> {
    act(&ferry, &access, inbox, id, Action::Show).await
}

async fn cancel(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiPath((_, inbox, id)): MigrationPath,
) -> ApiResult<Json<Value>> {
    act(&ferry, &access, inbox, id, Action::Cancel).await
}

async fn retry(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiPath((_, inbox, id)): MigrationPath,
) -> ApiResult<Json<Value>> {
    act(&ferry, &access, inbox, id, Action::Retry).await
}

async fn revert(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiPath((_, inbox, id)): MigrationPath,
) -> ApiResult<Json<Value>> {
    act(&ferry, &access, inbox, id, Action::Revert).await
}

/// Server-Sent Events: a `progress` event whenever the record changes, until a terminal status.
async fn events(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiPath((_, inbox_id, id)): ApiPath<(i64, i64, i64)>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    access.require_admin()?;
    let first = im::get(&ferry, access.account_id, Some(inbox_id), id).await?;
    Ok(progress_stream(ferry, first.id))
}

/// The migration's record as a `progress` event whenever it changes, then `done` at a terminal status. Shared
/// with the web UI's live panel.
pub(crate) fn progress_stream(
    ferry: Ferry,
    id: i64,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = futures::stream::unfold(
        (ferry, id, None::<String>, false),
        |(ferry, id, last, done)| async move {
            if done {
                return None;
            }
            loop {
                let m = match ferry.store.get_inbox_migration(id).await {
                    Ok(m) => m,
                    Err(_) => return None,
                };
                let body = im::to_json(&ferry, &m)
                    .await
                    .unwrap_or_else(|_| json!({"id": id, "status": m.status}));
                let text = body.to_string();
                let terminal = !m.is_active();
                if last.as_deref() != Some(text.as_str()) || terminal {
                    let event = Event::default()
                        .event(if terminal { "done" } else { "progress" })
                        .data(text.clone());
                    return Some((Ok(event), (ferry, id, Some(text), terminal)));
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}
