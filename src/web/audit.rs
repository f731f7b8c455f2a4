//! The account's audit log: who did what and when, newest first, filtered by kind (the part of the action
//! before its first dot). Everyone in the account may read it; nothing here changes anything.

use std::collections::BTreeSet;

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;

use super::session::AccountUser;
use super::{Chrome, WebResult, html, urlencode, when};
use crate::services::Ferry;
use crate::store::{AuditRow, Page};

pub fn router() -> Router<Ferry> {
    Router::new().route("/accounts/{account_id}/audit", get(audit))
}

const EVENTS_PER_PAGE: i64 = 50;

#[derive(Deserialize)]
struct AuditQuery {
    kind: Option<String>,
    before: Option<i64>,
}

struct EventRow {
    at: String,
    who: String,
    action: String,
    subject: String,
    details: String,
}

impl EventRow {
    fn new(e: AuditRow) -> Self {
        EventRow {
            at: when(&e.at),
            who: match (e.user_name, e.user_email) {
                (Some(name), Some(email)) => format!("{name} ({email})"),
                (None, Some(email)) => email,
                _ => "ferry (CLI or a job)".into(),
            },
            action: e.action,
            subject: e.subject,
            details: match &e.details.0 {
                serde_json::Value::Null => String::new(),
                serde_json::Value::Object(o) if o.is_empty() => String::new(),
                other => serde_json::to_string(other).unwrap_or_default(),
            },
        }
    }
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    chrome: Chrome,
    kinds: Vec<String>,
    kind: String,
    events: Vec<EventRow>,
    older: Option<String>,
}

async fn audit(
    State(ferry): State<Ferry>,
    access: AccountUser,
    Query(q): Query<AuditQuery>,
) -> WebResult<Response> {
    let account = access.account.id;
    let kinds: BTreeSet<String> = ferry
        .store
        .audit_actions(account)
        .await?
        .into_iter()
        .map(|action| action.split('.').next().unwrap_or_default().to_owned())
        .collect();
    let kind = q
        .kind
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty());
    let page = Page {
        before: q.before,
        limit: EVENTS_PER_PAGE,
    };
    let found = ferry
        .store
        .browse_audit(account, kind.as_deref(), page)
        .await?;
    let older = (found.len() as i64 == EVENTS_PER_PAGE)
        .then(|| found.last().map(|e| e.id))
        .flatten()
        .map(|last| {
            let filter = kind
                .as_deref()
                .map(|k| format!("&kind={}", urlencode(k)))
                .unwrap_or_default();
            format!("/app/accounts/{account}/audit?before={last}{filter}")
        });
    Ok(html(&AuditPage {
        chrome: Chrome::new(&access, "audit"),
        kinds: kinds.into_iter().collect(),
        kind: kind.unwrap_or_default(),
        events: found.into_iter().map(EventRow::new).collect(),
        older,
    }))
}
