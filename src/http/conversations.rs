//! Contacts, conversations and messages: read-only listings with keyset pagination.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiResult;
use super::extract::{AccountAccess, ApiPath, ApiQuery};
use super::params::{AccountPath, ConversationPath, InboxPath};
use super::{Listing, PageQuery};
use crate::services::Ferry;
use crate::store::{Attachment, Contact, ContactInbox, Conversation, Message};

pub fn router() -> OpenApiRouter<Ferry> {
    OpenApiRouter::new()
        .routes(routes!(contacts))
        .routes(routes!(conversations))
        .routes(routes!(conversation))
        .routes(routes!(messages))
}

/// A contact with its identity in each inbox it wrote to.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContactView {
    #[serde(flatten)]
    contact: Contact,
    contact_inboxes: Vec<ContactInbox>,
}

/// A message with its attachments.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageView {
    #[serde(flatten)]
    message: Message,
    attachments: Vec<Attachment>,
}

/// The account's contacts, newest first.
#[utoipa::path(
    get,
    path = "/accounts/{account_id}/contacts",
    operation_id = "list_contacts",
    tag = "conversations",
    params(AccountPath, PageQuery),
    responses((status = 200, description = "A page of contacts", body = Listing<ContactView>))
)]
async fn contacts(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Listing<ContactView>>> {
    let page = q.page()?;
    let contacts = ferry.store.list_contacts(access.account_id, page).await?;
    let ids: Vec<i64> = contacts.iter().map(|c| c.id).collect();
    let mut by_contact: HashMap<i64, Vec<ContactInbox>> = HashMap::new();
    for ci in ferry.store.contact_inboxes_of(&ids).await? {
        by_contact.entry(ci.contact_id).or_default().push(ci);
    }
    let data = contacts
        .into_iter()
        .map(|c| ContactView {
            contact_inboxes: by_contact.remove(&c.id).unwrap_or_default(),
            contact: c,
        })
        .collect();
    Ok(Json(Listing::new(data, page, |v| v.contact.id)))
}

/// The inbox's conversations, newest first.
#[utoipa::path(
    get,
    path = "/accounts/{account_id}/inboxes/{inbox_id}/conversations",
    operation_id = "list_conversations",
    tag = "conversations",
    params(
        InboxPath,
        PageQuery
    ),
    responses((status = 200, description = "A page of conversations", body = Listing<Conversation>))
)]
async fn conversations(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiPath(InboxPath { inbox_id, .. }): ApiPath<InboxPath>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Listing<Conversation>>> {
    let page = q.page()?;
    // 404 for an inbox of another account before listing anything.
    ferry.store.get_inbox(access.account_id, inbox_id).await?;
    let rows = ferry
        .store
        .list_conversations(access.account_id, inbox_id, page)
        .await?;
    Ok(Json(Listing::new(rows, page, |c| c.id)))
}

/// One conversation.
#[utoipa::path(
    get,
    path = "/accounts/{account_id}/conversations/{conversation_id}",
    operation_id = "get_conversation",
    tag = "conversations",
    params(
        ConversationPath
    ),
    responses((status = 200, description = "The conversation", body = Conversation))
)]
async fn conversation(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiPath(ConversationPath {
        conversation_id, ..
    }): ApiPath<ConversationPath>,
) -> ApiResult<Json<Conversation>> {
    Ok(Json(
        ferry
            .store
            .get_conversation(access.account_id, conversation_id)
            .await?,
    ))
}

/// The conversation's messages with their attachments, newest first.
#[utoipa::path(
    get,
    path = "/accounts/{account_id}/conversations/{conversation_id}/messages",
    operation_id = "list_messages",
    tag = "conversations",
    params(
        ConversationPath,
        PageQuery
    ),
    responses((status = 200, description = "A page of messages", body = Listing<MessageView>))
)]
async fn messages(
    State(ferry): State<Ferry>,
    access: AccountAccess,
    ApiPath(ConversationPath {
        conversation_id, ..
    }): ApiPath<ConversationPath>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Listing<MessageView>>> {
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
    let mut by_message: HashMap<i64, Vec<Attachment>> = HashMap::new();
    for a in ferry.store.attachments_of(&ids).await? {
        by_message.entry(a.message_id).or_default().push(a);
    }
    let data = messages
        .into_iter()
        .map(|m| MessageView {
            attachments: by_message.remove(&m.id).unwrap_or_default(),
            message: m,
        })
        .collect();
    Ok(Json(Listing::new(data, page, |v| v.message.id)))
}
