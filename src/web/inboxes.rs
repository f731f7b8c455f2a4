//! The inbox list: every inbox with its channel, phone number and conversation count.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;

use super::session::AccountUser;
use super::{Chrome, WebResult, count, html};
use crate::services::Ferry;
use crate::store::Inbox;

pub fn router() -> Router<Ferry> {
    Router::new().route("/accounts/{account_id}/inboxes", get(inboxes))
}

pub struct InboxRow {
    pub id: i64,
    pub name: String,
    pub channel: &'static str,
    pub whatsapp: bool,
    pub phone_number: String,
    pub conversations: String,
    pub legacy: bool,
}

impl InboxRow {
    pub fn new(i: &Inbox) -> Self {
        InboxRow {
            id: i.id,
            name: i.name.clone(),
            channel: i.channel.label(),
            whatsapp: i.channel.is_whatsapp_like(),
            phone_number: i.phone_number.clone().unwrap_or_else(|| "—".into()),
            conversations: count(i.conversations_count),
            legacy: i.legacy_channel_id.is_some(),
        }
    }
}

#[derive(Template)]
#[template(path = "inboxes.html")]
struct InboxesPage {
    chrome: Chrome,
    inboxes: Vec<InboxRow>,
}

async fn inboxes(State(ferry): State<Ferry>, access: AccountUser) -> WebResult<Response> {
    let inboxes = ferry.store.list_inboxes(access.account.id).await?;
    let page = InboxesPage {
        chrome: Chrome::new(&access, "inboxes"),
        inboxes: inboxes.iter().map(InboxRow::new).collect(),
    };
    Ok(html(&page))
}
