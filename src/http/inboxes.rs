use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiResult};
use super::extract::{AccountAccess, ApiJson, ApiPath};
use super::openapi::ErrorBody;
use super::params::{AccountPath, InboxPath};
use crate::domain::ChannelType;
use crate::services::{CreateInbox, Ferry, UpdateInbox};
use crate::store::Inbox;

pub fn router() -> OpenApiRouter<Ferry> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, update))
}

/// An inbox as the API shows it. Administrators see the provider config masked; nobody sees it in full.
#[derive(Debug, Serialize, ToSchema)]
pub struct InboxView {
    id: i64,
    account_id: i64,
    name: String,
    channel_type: ChannelType,
    channel_label: &'static str,
    /// Whether its conversations can move to another WhatsApp inbox.
    whatsapp_like: bool,
    phone_number: Option<String>,
    conversations_count: i64,
    lock_to_single_conversation: bool,
    provider_config_set: bool,
    /// Administrators only: the provider config with its secrets masked.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    provider_config: Option<Value>,
    created_at: chrono::DateTime<chrono::Utc>,
    updated_at: chrono::DateTime<chrono::Utc>,
}

pub(super) fn inbox_view(ferry: &Ferry, inbox: &Inbox, admin: bool) -> ApiResult<InboxView> {
    let channel = inbox.channel;
    let provider_config = if admin {
        Some(ferry.masked_provider_config(inbox)?.unwrap_or(Value::Null))
    } else {
        None
    };
    Ok(InboxView {
        id: inbox.id,
        account_id: inbox.account_id,
        name: inbox.name.clone(),
        channel_type: channel,
        channel_label: channel.label(),
        whatsapp_like: channel.is_whatsapp_like(),
        phone_number: inbox.phone_number.clone(),
        conversations_count: inbox.conversations_count,
        lock_to_single_conversation: inbox.lock_to_single_conversation,
        provider_config_set: inbox.provider_config.is_some(),
        provider_config,
        created_at: inbox.created_at,
        updated_at: inbox.updated_at,
    })
}

#[derive(Debug, Serialize, ToSchema)]
struct InboxList {
    data: Vec<InboxView>,
}

/// The account's inboxes.
#[utoipa::path(
    get,
    path = "/accounts/{account_id}/inboxes",
    operation_id = "list_inboxes",
    tag = "inboxes",
    params(AccountPath),
    responses((status = 200, description = "Every inbox of the account", body = InboxList))
)]
async fn list(State(ferry): State<Ferry>, access: AccountAccess) -> ApiResult<Json<InboxList>> {
    let inboxes = ferry.store.list_inboxes(access.account_id).await?;
    let data = inboxes
        .iter()
        .map(|i| inbox_view(&ferry, i, access.is_admin()))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(InboxList { data }))
}

/// One inbox.
#[utoipa::path(
    get,
    path = "/accounts/{account_id}/inboxes/{inbox_id}",
    operation_id = "get_inbox",
    tag = "inboxes",
    params(
        InboxPath
    ),
    responses((status = 200, description = "The inbox", body = InboxView))
)]
async fn show(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiPath(InboxPath { inbox_id, .. }): ApiPath<InboxPath>,
) -> ApiResult<Json<InboxView>> {
    let inbox = ferry.store.get_inbox(access.account_id, inbox_id).await?;
    Ok(Json(inbox_view(&ferry, &inbox, access.is_admin())?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateInboxBody {
    #[schema(example = "Support (Evolution)")]
    name: String,
    /// `evolution`, `whatsapp_cloud`, `dialog360`, `twilio_whatsapp`, `twilio_sms`, `web_widget`, `email` or
    /// `api`.
    #[schema(example = "evolution")]
    channel_type: String,
    phone_number: Option<String>,
    /// Provider settings; secrets in it are stored encrypted.
    #[schema(value_type = Option<Object>)]
    provider_config: Option<Value>,
    #[serde(default)]
    lock_to_single_conversation: bool,
}

/// Creates an inbox (administrators).
#[utoipa::path(
    post,
    path = "/accounts/{account_id}/inboxes",
    operation_id = "create_inbox",
    tag = "inboxes",
    params(AccountPath),
    request_body = CreateInboxBody,
    responses(
        (status = 201, description = "Created", body = InboxView),
        (status = 403, description = "Not an administrator of the account", body = ErrorBody),
        (status = 409, description = "Conflicts with an existing inbox (`conflict`)", body = ErrorBody),
    )
)]
async fn create(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiJson(body): ApiJson<CreateInboxBody>,
) -> ApiResult<(StatusCode, Json<InboxView>)> {
    access.require_admin()?;
    let channel_type = ChannelType::parse(&body.channel_type)
        .map_err(|e| ApiError::validation("channel_type", e.to_string()))?;
    let input = CreateInbox {
        account_id: access.account_id,
        name: body.name,
        channel_type,
        phone_number: body.phone_number,
        provider_config: body.provider_config,
        lock_to_single_conversation: body.lock_to_single_conversation,
    };
    let inbox = ferry.create_inbox(input, Some(access.user.id)).await?;
    Ok((StatusCode::CREATED, Json(inbox_view(&ferry, &inbox, true)?)))
}

/// `Some(None)` for an explicit `null`, `None` for an absent field.
fn explicit_null<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// The fields to change; at least one. `null` clears `phone_number` or `provider_config`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
struct UpdateInboxBody {
    name: Option<String>,
    #[serde(default, deserialize_with = "explicit_null")]
    #[schema(value_type = Option<String>)]
    phone_number: Option<Option<String>>,
    #[serde(default, deserialize_with = "explicit_null")]
    #[schema(value_type = Option<Object>)]
    provider_config: Option<Option<Value>>,
    lock_to_single_conversation: Option<bool>,
}

/// Changes an inbox (administrators).
#[utoipa::path(
    patch,
    path = "/accounts/{account_id}/inboxes/{inbox_id}",
    operation_id = "update_inbox",
    tag = "inboxes",
    params(
        InboxPath
    ),
    request_body = UpdateInboxBody,
    responses(
        (status = 200, description = "The changed inbox", body = InboxView),
        (status = 403, description = "Not an administrator of the account", body = ErrorBody),
        (status = 409, description = "Conflicts with an existing inbox (`conflict`)", body = ErrorBody),
    )
)]
async fn update(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiPath(InboxPath { inbox_id, .. }): ApiPath<InboxPath>,
    ApiJson(body): ApiJson<UpdateInboxBody>,
) -> ApiResult<Json<InboxView>> {
    access.require_admin()?;
    let mut changed = Vec::new();
    for (present, field) in [
        (body.name.is_some(), "name"),
        (body.phone_number.is_some(), "phone_number"),
        (body.provider_config.is_some(), "provider_config"),
        (
            body.lock_to_single_conversation.is_some(),
            "lock_to_single_conversation",
        ),
    ] {
        if present {
            changed.push(field);
        }
    }
    if changed.is_empty() {
        return Err(ApiError::validation(
            "body",
            "must name at least one field to change",
        ));
    }
    let input = UpdateInbox {
        name: body.name,
        phone_number: body.phone_number,
        provider_config: body.provider_config,
        lock_to_single_conversation: body.lock_to_single_conversation,
        changed_fields: changed,
    };
    let inbox = ferry
        .update_inbox(access.account_id, inbox_id, input, Some(access.user.id))
        .await?;
    Ok(Json(inbox_view(&ferry, &inbox, true)?))
}
