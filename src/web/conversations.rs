//! The conversations themselves: an inbox's conversations (most recently active first, searchable by the
//! contact's name or phone) and one conversation's thread with its contact's notes and labels. Attachments are
//! streamed to members of the account only, with their stored content type.

use std::collections::HashMap;

use askama::Template;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::session::AccountUser;
use super::{Chrome, WebError, WebResult, count, html, urlencode, when};
use crate::services::Ferry;
use crate::store::{Attachment, ContactNote, ConversationSummary, Message, Page};

pub fn router() -> Router<Ferry> {
    Router::new()
        .route(
            "/accounts/{account_id}/inboxes/{inbox_id}/conversations",
            get(inbox_conversations),
        )
        .route(
            "/accounts/{account_id}/conversations/{conversation_id}",
            get(conversation),
        )
        .route(
            "/accounts/{account_id}/attachments/{attachment_id}",
            get(attachment),
        )
}

const CONVERSATIONS_PER_PAGE: i64 = 50;
const MESSAGES_PER_PAGE: i64 = 100;

#[derive(Deserialize)]
struct ListQuery {
    q: Option<String>,
    before: Option<i64>,
}

struct ConversationRow {
    id: i64,
    display_id: i64,
    contact: String,
    identity: String,
    status: String,
    messages: String,
    last_activity: String,
}

impl ConversationRow {
    fn new(c: ConversationSummary) -> Self {
        ConversationRow {
            id: c.id,
            display_id: c.display_id,
            contact: c
                .contact_name
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| "Unnamed contact".into()),
            identity: c
                .phone_number
                .filter(|p| !p.is_empty())
                .or(c.source_id)
                .unwrap_or_else(|| "—".into()),
            status: c.status,
            messages: count(c.messages),
            last_activity: when(&c.last_activity_at),
        }
    }
}

#[derive(Template)]
#[template(path = "conversations.html")]
struct ConversationsPage {
    chrome: Chrome,
    inbox_id: i64,
    inbox_name: String,
    search: String,
    rows: Vec<ConversationRow>,
    /// The link to the next (older) page, when there may be one.
    older: Option<String>,
    first_page: bool,
}

async fn inbox_conversations(
    State(ferry): State<Ferry>,
    access: AccountUser,
    Path((_, inbox_id)): Path<(i64, i64)>,
    Query(q): Query<ListQuery>,
) -> WebResult<Response> {
    let inbox = ferry.store.get_inbox(access.account.id, inbox_id).await?;
    let search = q.q.unwrap_or_default().trim().to_owned();
    let page = Page {
        before: q.before,
        limit: CONVERSATIONS_PER_PAGE,
    };
    let found = ferry
        .store
        .browse_conversations(access.account.id, inbox_id, Some(&search), page)
        .await?;
    let older = (found.len() as i64 == CONVERSATIONS_PER_PAGE)
        .then(|| found.last().map(|c| c.id))
        .flatten()
        .map(|last| {
            let mut link = format!(
                "/app/accounts/{}/inboxes/{inbox_id}/conversations?before={last}",
                access.account.id
            );
            if !search.is_empty() {
                link.push_str(&format!("&q={}", urlencode(&search)));
            }
            link
        });
    let page = ConversationsPage {
        chrome: Chrome::new(&access, "inboxes"),
        inbox_id,
        inbox_name: inbox.name,
        search,
        rows: found.into_iter().map(ConversationRow::new).collect(),
        older,
        first_page: q.before.is_none(),
    };
    Ok(html(&page))
}

struct MessageRow {
    id: i64,
    /// incoming, outgoing, activity or template: the bubble's side and style.
    kind: String,
    sender: &'static str,
    at: String,
    status: String,
    private: bool,
    text: String,
    attachments: Vec<AttachmentRow>,
}

struct AttachmentRow {
    url: String,
    name: String,
    size: String,
    /// Shown inline (a raster image that has been stored).
    image: bool,
    ready: bool,
    problem: String,
}

impl AttachmentRow {
    fn new(account_id: i64, a: &Attachment) -> Self {
        let name = a
            .file_name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("{} attachment", a.file_type));
        let ready = a.status == "ready" && a.storage_key.is_some();
        AttachmentRow {
            url: format!("/app/accounts/{account_id}/attachments/{}", a.id),
            name,
            size: a.byte_size.map(bytes).unwrap_or_default(),
            image: ready && inline_image(a.content_type.as_deref()),
            ready,
            problem: match a.status.as_str() {
                "pending" => "still downloading".into(),
                "failed" => format!(
                    "could not be downloaded: {}",
                    a.failure_reason.as_deref().unwrap_or("unknown reason")
                ),
                _ => String::new(),
            },
        }
    }
}

/// "2.4 MB"
fn bytes(n: i64) -> String {
    match n {
        ..1_000 => format!("{n} B"),
        1_000..1_000_000 => format!("{:.1} kB", n as f64 / 1e3),
        _ => format!("{:.1} MB", n as f64 / 1e6),
    }
}

/// Raster images only: an SVG could carry script, so it is downloaded, never shown inline.
fn inline_image(content_type: Option<&str>) -> bool {
    matches!(
        content_type.map(|c| c.split(';').next().unwrap_or("").trim()),
        Some("image/jpeg" | "image/png" | "image/gif" | "image/webp")
    )
}

impl MessageRow {
    fn new(account_id: i64, m: Message, attachments: &[Attachment]) -> Self {
        MessageRow {
            id: m.id,
            sender: match m.message_type.as_str() {
                "incoming" => "Contact",
                "activity" => "Activity",
                "template" => "Template",
                _ => "Agent",
            },
            kind: m.message_type,
            at: when(&m.created_at),
            status: m.status,
            private: m.private,
            text: m.content.unwrap_or_default(),
            attachments: attachments
                .iter()
                .map(|a| AttachmentRow::new(account_id, a))
                .collect(),
        }
    }
}

#[derive(Template)]
#[template(path = "conversation.html")]
struct ConversationPage {
    chrome: Chrome,
    id: i64,
    display_id: i64,
    status: String,
    inbox_id: i64,
    inbox_name: String,
    contact_name: String,
    facts: Vec<(&'static str, String)>,
    labels: Vec<String>,
    notes: Vec<NoteRow>,
    messages: Vec<MessageRow>,
    total_messages: String,
    earlier: Option<String>,
    later: Option<String>,
}

struct NoteRow {
    content: String,
    by: String,
}

impl NoteRow {
    fn new(n: ContactNote) -> Self {
        NoteRow {
            content: n.content,
            by: match n.author {
                Some(a) => format!("{a}, {}", when(&n.created_at)),
                None => when(&n.created_at),
            },
        }
    }
}

#[derive(Deserialize)]
struct ThreadQuery {
    before: Option<i64>,
}

async fn conversation(
    State(ferry): State<Ferry>,
    access: AccountUser,
    Path((_, conversation_id)): Path<(i64, i64)>,
    Query(q): Query<ThreadQuery>,
) -> WebResult<Response> {
    let account = access.account.id;
    let c = ferry
        .store
        .get_conversation(account, conversation_id)
        .await?;
    let inbox = ferry.store.get_inbox(account, c.inbox_id).await?;
    let contact = ferry.store.get_contact(account, c.contact_id).await?;
    let (notes, labels) = ferry.store.contact_notes_and_labels(contact.id).await?;
    let page = Page {
        before: q.before,
        limit: MESSAGES_PER_PAGE,
    };
    // Newest first from the store; shown oldest first, as a thread reads.
    let mut newest_first = ferry.store.list_messages(account, c.id, page).await?;
    let earlier = (newest_first.len() as i64 == MESSAGES_PER_PAGE)
        .then(|| newest_first.last().map(|m| m.id))
        .flatten()
        .map(|oldest| {
            format!(
                "/app/accounts/{account}/conversations/{}?before={oldest}",
                c.id
            )
        });
    newest_first.reverse();
    let ids: Vec<i64> = newest_first.iter().map(|m| m.id).collect();
    let mut by_message: HashMap<i64, Vec<Attachment>> = HashMap::new();
    for a in ferry.store.attachments_of(&ids).await? {
        by_message.entry(a.message_id).or_default().push(a);
    }
    let total = ferry.store.count_messages(c.id).await?;
    let mut facts = vec![("Inbox", inbox.name.clone())];
    for (label, value) in [
        ("Phone", contact.phone_number.clone()),
        ("Email", contact.email.clone()),
        ("Identifier", contact.identifier.clone()),
    ] {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            facts.push((label, v));
        }
    }
    facts.push(("Last activity", when(&c.last_activity_at)));
    let page = ConversationPage {
        chrome: Chrome::new(&access, "inboxes"),
        id: c.id,
        display_id: c.display_id,
        status: c.status,
        inbox_id: inbox.id,
        inbox_name: inbox.name,
        contact_name: contact
            .name
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| "Unnamed contact".into()),
        facts,
        labels,
        notes: notes.into_iter().map(NoteRow::new).collect(),
        messages: newest_first
            .into_iter()
            .map(|m| {
                let attachments = by_message.remove(&m.id).unwrap_or_default();
                MessageRow::new(account, m, &attachments)
            })
            .collect(),
        total_messages: count(total),
        earlier,
        later: q
            .before
            .map(|_| format!("/app/accounts/{account}/conversations/{}", c.id)),
    };
    Ok(html(&page))
}

/// The attachment's bytes, streamed, to members of its account only.
async fn attachment(
    State(ferry): State<Ferry>,
    access: AccountUser,
    Path((_, attachment_id)): Path<(i64, i64)>,
) -> WebResult<Response> {
    let (a, _) = ferry
        .store
        .get_attachment(access.account.id, attachment_id)
        .await?;
    let Some(key) = a.storage_key.as_deref().filter(|_| a.status == "ready") else {
        return Err(WebError::NotFound);
    };
    let stream = ferry.attachments.stream(key).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            WebError::NotFound
        } else {
            WebError::Internal(format!("attachment {attachment_id}: {e}"))
        }
    })?;
    let content_type = a
        .content_type
        .clone()
        .filter(|c| c.contains('/'))
        .unwrap_or_else(|| "application/octet-stream".into());
    let name = a
        .file_name
        .clone()
        .unwrap_or_else(|| format!("attachment-{}", a.id));
    let disposition = if inline_image(a.content_type.as_deref()) {
        "inline"
    } else {
        "attachment"
    };
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, content_type),
        (
            header::CONTENT_DISPOSITION,
            format!("{disposition}; filename*=UTF-8''{}", urlencode(&name)),
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".into()),
        (header::CACHE_CONTROL, "private, max-age=3600".into()),
        // Never a document that runs anything, whatever the file says it is.
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; sandbox".into(),
        ),
    ] {
        if let Ok(v) = value.parse() {
            headers.insert(name, v);
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_raster_images_show_inline_and_sizes_read_well() {
        assert!(inline_image(Some("image/jpeg")));
        assert!(inline_image(Some("image/png; charset=binary")));
        assert!(!inline_image(Some("image/svg+xml")));
        assert!(!inline_image(Some("text/html")));
        assert!(!inline_image(None));
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(2_400), "2.4 kB");
        assert_eq!(bytes(2_400_000), "2.4 MB");
    }
}
