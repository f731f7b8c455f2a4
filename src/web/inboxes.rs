//! The inbox list: every inbox with its channel, phone number and conversation count.

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;

use std::collections::HashMap;

use super::session::AccountUser;
use super::{Chrome, WebResult, count, html};
use crate::inbox_migration::{active_redirect, progress};
use crate::services::Ferry;
use crate::store::{Inbox, InboxMigration, MigrationStatus};

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
    /// What migrations say about it: migrating (with progress), migrated to, receiving redirected webhooks.
    pub migration_notes: Vec<MigrationNote>,
}

pub struct MigrationNote {
    pub text: String,
    /// badge-info (under way), badge-success (done), badge-neutral (redirect)
    pub style: &'static str,
    pub link: String,
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
            migration_notes: Vec::new(),
        }
    }
}

/// Each inbox's migration notes, from the account's migrations (newest first as listed).
fn migration_notes(
    account_id: i64,
    inboxes: &[Inbox],
    migrations: &[InboxMigration],
) -> HashMap<i64, Vec<MigrationNote>> {
    let names: HashMap<i64, &str> = inboxes.iter().map(|i| (i.id, i.name.as_str())).collect();
    let name = |id: i64| {
        names
            .get(&id)
            .copied()
            .unwrap_or("another inbox")
            .to_owned()
    };
    let page = |m: &InboxMigration| {
        format!(
            "/app/accounts/{account_id}/inboxes/{}/migration",
            m.source_inbox_id
        )
    };
    let mut notes: HashMap<i64, Vec<MigrationNote>> = HashMap::new();
    for inbox in inboxes {
        let from_here = migrations.iter().filter(|m| m.source_inbox_id == inbox.id);
        let under_way = from_here
            .clone()
            .find(|m| matches!(m.status, MigrationStatus::Queued | MigrationStatus::Running));
        let note = notes.entry(inbox.id).or_default();
        if let Some(m) = under_way {
            let text = match m.status {
                MigrationStatus::Queued => {
                    format!("Queued to migrate to {}", name(m.destination_inbox_id))
                }
                _ => format!(
                    "Migrating to {} · {:.1}%",
                    name(m.destination_inbox_id),
                    progress(m).percentage
                ),
            };
            note.push(MigrationNote {
                text,
                style: "badge-info",
                link: page(m),
            });
        } else if let Some(m) = from_here
            .filter(|m| m.status == MigrationStatus::Completed)
            .max_by_key(|m| (m.completed_at, m.id))
        {
            let on = m
                .completed_at
                .map(|t| t.format(" on %Y-%m-%d").to_string())
                .unwrap_or_default();
            note.push(MigrationNote {
                text: format!("Migrated to {}{on}", name(m.destination_inbox_id)),
                style: "badge-success",
                link: page(m),
            });
        }
        for other in inboxes.iter().filter(|o| o.id != inbox.id) {
            if let Some(m) =
                active_redirect(migrations, other.id).filter(|m| m.destination_inbox_id == inbox.id)
            {
                note.push(MigrationNote {
                    text: format!("Receives {}'s webhooks (redirected)", other.name),
                    style: "badge-neutral",
                    link: page(m),
                });
            }
        }
    }
    notes
}

#[derive(Template)]
#[template(path = "inboxes.html")]
struct InboxesPage {
    chrome: Chrome,
    inboxes: Vec<InboxRow>,
    /// The inbox just created, to offer its integration.
    created: Option<(i64, String, bool)>,
}

/// After create/edit; a mangled value is ignored, not an error page.
#[derive(Deserialize)]
struct DoneQuery {
    created: Option<String>,
    updated: Option<String>,
}

async fn inboxes(
    State(ferry): State<Ferry>,
    access: AccountUser,
    Query(done): Query<DoneQuery>,
) -> WebResult<Response> {
    let inboxes = ferry.store.list_inboxes(access.account.id).await?;
    let migrations = ferry
        .store
        .list_inbox_migrations(access.account.id, None, false)
        .await?;
    let mut notes = migration_notes(access.account.id, &inboxes, &migrations);
    let page = InboxesPage {
        chrome: Chrome::new(&access, "inboxes"),
        inboxes: inboxes
            .iter()
            .map(|i| InboxRow {
                migration_notes: notes.remove(&i.id).unwrap_or_default(),
                ..InboxRow::new(i)
            })
            .collect(),
        created: done
            .created
            .and_then(|id| id.parse::<i64>().ok())
            .and_then(|id| {
                inboxes
                    .iter()
                    .find(|i| i.id == id)
                    .map(|i| (i.id, i.name.clone(), i.channel.is_whatsapp_like()))
            }),
    };
    let updated = done
        .updated
        .and_then(|id| id.parse::<i64>().ok())
        .and_then(|id| inboxes.iter().find(|i| i.id == id));
    let page = InboxesPage {
        chrome: page
            .chrome
            .with_notice(updated.map(|i| format!("Inbox {} saved.", i.name))),
        ..page
    };
    Ok(html(&page))
}
