//! Contacts, conversations and messages: read-only listings with keyset pagination.

use std::collections::HashMap;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::error::ApiResult;
use super::extract::{AccountAccess, ApiPath, ApiQuery};
use super::{Listing, PageQuery};
use crate::services::Ferry;

pub fn router() -> Router<Ferry> {
    Router::new()
        .route("/accounts/{account_id}/contacts", get(contacts))
        .route(
            "/accounts/{account_id}/inboxes/{inbox_id}/conversations",
            get(conversations),
        )
        .route(
            "/accounts/{account_id}/conversations/{conversation_id}",
            get(conversation),
        )
        .route(
            "/accounts/{account_id}/conversations/{conversation_id}/messages",
            get(messages),
        )
}

async fn contacts(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Listing<Value>>> {
    let page = q.page()?;
    let contacts = ferry.store.list_contacts(access.account_id, page).await?;
    let ids: Vec<i64> = contacts.iter().map(|c| c.id).collect();
    let mut by_contact: HashMap<i64, Vec<Value>> = HashMap::new();
    for ci in ferry.store.contact_inboxes_of(&ids).await? {
        by_contact.entry(ci.contact_id).or_default().push(json!(ci));
    }
    let data = contacts
        .into_iter()
        .map(|c| {
            let mut v = json!(c);
            v["contact_inboxes"] = Value::Array(by_contact.remove(&c.id).unwrap_or_default());
            v
        })
        .collect();
    Ok(Json(Listing::new(data, page, |v: &Value| {
        v["id"].as_i64().unwrap_or_default()
    })))
}

async fn conversations(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiPath((_, inbox_id)): ApiPath<(i64, i64)>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Listing<crate::store::Conversation>>> {
    let page = q.page()?;
    // 404 for an inbox of another account before listing anything.
    ferry.store.get_inbox(access.account_id, inbox_id).await?;
    let rows = ferry
        .store
        .list_conversations(access.account_id, inbox_id, page)
        .await?;
    Ok(Json(Listing::new(rows, page, |c| c.id)))
}

async fn conversation(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiPath((_, conversation_id)): ApiPath<(i64, i64)>,
) -> ApiResult<Json<crate::store::Conversation>> {
    Ok(Json(
        ferry
            .store
            .get_conversation(access.account_id, conversation_id)
            .await?,
    ))
}

async fn messages(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiPath((_, conversation_id)): ApiPath<(i64, i64)>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Listing<Value>>> {
    let page = q.page()?;
    ferry
        .store
        .get_conversation(access.account_id, conversation_id)
        .await?;
    let messages = ferry
        .store
        .list_messages(access.account_id, conversation_id, page)
        .await?;
    let ids: Vec<i64> = messages.iter().map(|m| m.id).collect();
    let mut by_message: HashMap<i64, Vec<Value>> = HashMap::new();
    for a in ferry.store.attachments_of(&ids).await? {
        by_message.entry(a.message_id).or_default().push(json!(a));
    }
    let data = messages
        .into_iter()
        .map(|m| {
            let mut v = json!(m);
            v["attachments"] = Value::Array(by_message.remove(&m.id).unwrap_or_default());
            v
        })
        .collect();
    Ok(Json(Listing::new(data, page, |v: &Value| {
        v["id"].as_i64().unwrap_or_default()
    })))
}
