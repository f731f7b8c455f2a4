use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};
use super::extract::{AccountAccess, ApiJson, ApiPath};
use crate::domain::ChannelType;
use crate::services::{CreateInbox, Ferry, UpdateInbox};
use crate::store::Inbox;

pub fn router() -> Router<Ferry> {
    Router::new()
        .route("/accounts/{account_id}/inboxes", get(list).post(create))
        .route(
            "/accounts/{account_id}/inboxes/{inbox_id}",
            get(show).patch(update),
        )
}

/// An inbox as the API shows it. Administrators see the provider config masked; nobody sees it in full.
pub(super) fn inbox_json(ferry: &Ferry, inbox: &Inbox, admin: bool) -> ApiResult<Value> {
    let channel = inbox.channel();
    let mut body = json!({
        "id": inbox.id,
        "account_id": inbox.account_id,
        "name": inbox.name,
        "channel_type": channel,
        "channel_label": channel.label(),
        "whatsapp_like": channel.is_whatsapp_like(),
        "phone_number": inbox.phone_number,
        "conversations_count": inbox.conversations_count,
        "lock_to_single_conversation": inbox.lock_to_single_conversation,
        "provider_config_set": inbox.provider_config.is_some(),
        "created_at": inbox.created_at,
        "updated_at": inbox.updated_at,
    });
    if admin {
        body["provider_config"] = ferry.masked_provider_config(inbox)?.unwrap_or(Value::Null);
    }
    Ok(body)
}

async fn list(State(ferry): State<Ferry>, access: AccountAccess) -> ApiResult<Json<Value>> {
    let inboxes = ferry.store.list_inboxes(access.account_id).await?;
    let data = inboxes
        .iter()
        .map(|i| inbox_json(&ferry, i, access.is_admin()))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(json!({ "data": data })))
}

async fn show(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiPath((_, inbox_id)): ApiPath<(i64, i64)>,
) -> ApiResult<Json<Value>> {
    let inbox = ferry.store.get_inbox(access.account_id, inbox_id).await?;
    Ok(Json(inbox_json(&ferry, &inbox, access.is_admin())?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    channel_type: String,
    phone_number: Option<String>,
    provider_config: Option<Value>,
    #[serde(default)]
    lock_to_single_conversation: bool,
}

async fn create(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiJson(body): ApiJson<CreateBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
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
    Ok((StatusCode::CREATED, Json(inbox_json(&ferry, &inbox, true)?)))
}

/// `Some(None)` for an explicit `null`, `None` for an absent field.
fn explicit_null<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    name: Option<String>,
    #[serde(default, deserialize_with = "explicit_null")]
    phone_number: Option<Option<String>>,
    #[serde(default, deserialize_with = "explicit_null")]
    provider_config: Option<Option<Value>>,
    lock_to_single_conversation: Option<bool>,
}

async fn update(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiPath((_, inbox_id)): ApiPath<(i64, i64)>,
    ApiJson(body): ApiJson<UpdateBody>,
) -> ApiResult<Json<Value>> {
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
    Ok(Json(inbox_json(&ferry, &inbox, true)?))
}
