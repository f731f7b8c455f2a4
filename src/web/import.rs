//! The account import page (README: "Account import"): the status as a timeline of the stages with their counts, attachment
//! failures with "Retry attachments", and "Start import" while the account is `not-started`. The timeline
//! refreshes itself while an import runs.

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::session::{AccountUser, CsrfForm, NoFields};
use super::{Chrome, WebError, WebResult, count, html, is_htmx, when};
use crate::account_import::{self, ImportError};
use crate::services::Ferry;
use crate::store::AccountImport;
use crate::store::ImportStatus;

pub fn router() -> Router<Ferry> {
    let base = "/accounts/{account_id}/import";
    Router::new()
        .route(base, get(page))
        .route(&format!("{base}/start"), post(start))
        .route(&format!("{base}/retry-attachments"), post(retry))
}

impl From<ImportError> for WebError {
    fn from(e: ImportError) -> Self {
        match e {
            ImportError::Store(s) => s.into(),
            other => WebError::Conflict(other.to_string()),
        }
    }
}

struct Stage {
    name: &'static str,
    description: &'static str,
    /// `done`, `running`, `failed`, `waiting`.
    state: &'static str,
    state_label: &'static str,
    at: String,
    counts: Vec<(String, &'static str)>,
}

fn status_text(status: &str) -> &'static str {
    match status {
        "not-started" => {
            "Not started: the legacy system holds this account's channels and history."
        }
        "not-needed" => "Nothing to import: the legacy system does not know this account.",
        "migrating" => "Importing the channels…",
        "channels-migrated" => "Channels are ready; the most recent conversations are arriving.",
        "recent-messages-migrated" => {
            "Recent conversations are ready to work with; the rest of the history is arriving."
        }
        "completed" => "Completed: every channel and the whole history are in ferry.",
        "channel-failure" => {
            "The channels could not be imported. Starting again begins from scratch."
        }
        "recent-messages-failure" => {
            "The recent conversations could not be imported. Starting again resumes where it stopped."
        }
        "messages-failure" => {
            "The older history could not be imported completely. It is repaired automatically, or resume it now."
        }
        _ => "",
    }
}

fn stages(import: Option<&AccountImport>, status: &str) -> Vec<Stage> {
    let active = import
        .is_some_and(|i| i.status == ImportStatus::Queued || i.status == ImportStatus::Running);
    let failed_stage = import
        .filter(|i| i.status == ImportStatus::Failed)
        .and_then(|i| i.failed_stage.as_deref());
    let current = import.map(|i| i.stage.as_str()).unwrap_or("");
    let state = |key: &str, done: bool| -> (&'static str, &'static str) {
        if done {
            ("done", "Done")
        } else if failed_stage == Some(key) {
            ("failed", "Failed")
        } else if active && current == key {
            ("running", "In progress")
        } else {
            ("waiting", "Waiting")
        }
    };
    let completed =
        status == "completed" || import.is_some_and(|i| i.status == ImportStatus::Completed);
    let (channels, recent, all) = match import {
        Some(i) => (
            i.channels_migrated_at.is_some(),
            i.recent_migrated_at.is_some(),
            completed,
        ),
        None => (completed, completed, completed),
    };
    let at = |t: Option<&chrono::DateTime<chrono::Utc>>| t.map(when).unwrap_or_default();
    let (recent_threads, recent_messages, threads, messages, channels_count) = match import {
        Some(i) if recent => (
            i.recent_threads_count,
            i.recent_messages_count,
            i.threads_count,
            i.messages_count,
            i.channels_count,
        ),
        Some(i) => (
            i.threads_count,
            i.messages_count,
            i.threads_count,
            i.messages_count,
            i.channels_count,
        ),
        None => (0, 0, 0, 0, 0),
    };
    let (s1, l1) = state("channels", channels);
    let (s2, l2) = state("recent", recent);
    let (s3, l3) = state("all", all);
    vec![
        Stage {
            name: "Channels",
            description: "Inboxes created or updated from the legacy channels, their settings re-encrypted.",
            state: s1,
            state_label: l1,
            at: at(import.and_then(|i| i.channels_migrated_at.as_ref())),
            counts: vec![(count(channels_count), "channels")],
        },
        Stage {
            name: "Recent conversations",
            description: "The newest conversations with their latest messages, so the team can work at once.",
            state: s2,
            state_label: l2,
            at: at(import.and_then(|i| i.recent_migrated_at.as_ref())),
            counts: if recent || current == "recent" {
                vec![
                    (count(recent_threads), "conversations"),
                    (count(recent_messages), "messages"),
                ]
            } else {
                Vec::new()
            },
        },
        Stage {
            name: "Full history",
            description: "Everything else: older conversations and the older messages of recent ones.",
            state: s3,
            state_label: l3,
            at: at(import.and_then(|i| i.completed_at.as_ref())),
            counts: if recent {
                vec![
                    (count(threads - recent_threads), "conversations"),
                    (count(messages - recent_messages), "messages"),
                ]
            } else {
                Vec::new()
            },
        },
    ]
}

struct Failure {
    what: String,
    reason: String,
    conversation_id: i64,
    at: String,
}

#[derive(Template)]
#[template(path = "import_timeline.html")]
struct Timeline {
    account_id: i64,
    is_admin: bool,
    csrf_token: String,
    status: String,
    status_text: String,
    active: bool,
    unavailable: Option<String>,
    can_start: bool,
    can_resume: bool,
    stages: Vec<Stage>,
    totals: Vec<(String, &'static str)>,
    attachments_failed: i64,
    attachments_pending: String,
    failures: Vec<Failure>,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "import.html")]
struct ImportPage {
    chrome: Chrome,
    timeline: Timeline,
}

async fn timeline(ferry: &Ferry, access: &AccountUser) -> WebResult<Timeline> {
    let account = ferry.store.get_account(access.account.id).await?;
    let (status, unavailable) = match account_import::migration_status(ferry, &account).await {
        Ok(s) => (s, None),
        // An outage is said as such, never shown as "nothing to import".
        Err(ImportError::Legacy(e)) => {
            let said = "The legacy system did not answer, so the import status is unknown. Try again later.";
            // The reason may name internal hosts: administrators only.
            let reason = if access.is_admin() {
                format!("{said} ({e})")
            } else {
                said.to_owned()
            };
            ("unknown".to_owned(), Some(reason))
        }
        Err(e) => return Err(e.into()),
    };
    let import = ferry.store.latest_account_import(account.id).await?;
    let files = ferry.store.import_attachment_counts(account.id).await?;
    // Agents see what the client app sees: a failed history import is "completed" while repairs retry it.
    let status = if status == "messages-failure" && !access.is_admin() {
        "completed".to_owned()
    } else {
        status
    };
    let active = import
        .as_ref()
        .is_some_and(|i| i.status == ImportStatus::Queued || i.status == ImportStatus::Running);
    let failures = if files.failed > 0 {
        ferry
            .store
            .import_attachment_failures(account.id, 20)
            .await?
            .into_iter()
            .map(|f| Failure {
                what: f
                    .file_name
                    .unwrap_or_else(|| format!("{} #{}", f.file_type, f.id)),
                reason: f.failure_reason.unwrap_or_else(|| "unknown".into()),
                conversation_id: f.conversation_id,
                at: when(&f.created_at),
            })
            .collect()
    } else {
        Vec::new()
    };
    let totals = match &import {
        Some(i) => vec![
            (count(i.channels_count), "channels"),
            (count(i.threads_count), "conversations"),
            (count(i.messages_count), "messages"),
            (count(files.total), "attachments"),
        ],
        None => Vec::new(),
    };
    Ok(Timeline {
        account_id: account.id,
        is_admin: access.is_admin(),
        csrf_token: access.signed_in.csrf_token.clone(),
        status_text: status_text(&status).to_owned(),
        can_start: status == "not-started",
        can_resume: !active
            && matches!(
                status.as_str(),
                "channel-failure" | "recent-messages-failure" | "messages-failure"
            ),
        active,
        unavailable,
        stages: stages(import.as_ref(), &status),
        totals,
        attachments_failed: files.failed,
        attachments_pending: count(files.pending),
        failures,
        error: import
            .as_ref()
            .filter(|i| i.status == ImportStatus::Failed && access.is_admin())
            .and_then(|i| i.error_message.clone()),
        status,
    })
}

#[derive(Deserialize)]
struct PageQuery {
    done: Option<String>,
    n: Option<u64>,
}

async fn page(
    State(ferry): State<Ferry>,
    access: AccountUser,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> WebResult<Response> {
    let timeline = timeline(&ferry, &access).await?;
    // The timeline polls this page while an import runs: answer with the fragment.
    if is_htmx(&headers) {
        return Ok(html(&timeline));
    }
    let notice = match q.done.as_deref() {
        Some("started") => Some("Import started. The timeline below follows it.".to_owned()),
        Some("running") => Some(
            "An import of this account is already running; the timeline below follows it."
                .to_owned(),
        ),
        Some("retried") => Some(format!(
            "{} failed attachment(s) queued for another download.",
            q.n.unwrap_or(0)
        )),
        _ => None,
    };
    Ok(html(&ImportPage {
        chrome: Chrome::new(&access, "import").with_notice(notice),
        timeline,
    }))
}

async fn start(
    State(ferry): State<Ferry>,
    access: AccountUser,
    form: CsrfForm<NoFields>,
) -> WebResult<Response> {
    access.authorize_post(form.token.as_deref(), "start imports")?;
    let (_, created) =
        account_import::start(&ferry, access.account.id, Some(access.user().id), false).await?;
    let done = if created { "started" } else { "running" };
    Ok(Redirect::to(&format!(
        "/app/accounts/{}/import?done={done}",
        access.account.id
    ))
    .into_response())
}

async fn retry(
    State(ferry): State<Ferry>,
    access: AccountUser,
    form: CsrfForm<NoFields>,
) -> WebResult<Response> {
    access.authorize_post(form.token.as_deref(), "retry attachments")?;
    let n = account_import::retry_attachments(&ferry, Some(access.account.id)).await?;
    ferry
        .audit(
            Some(access.account.id),
            Some(access.user().id),
            "account_import.retry_attachments",
            format!("account:{}", access.account.id),
            serde_json::json!({"attachments": n}),
        )
        .await;
    Ok(Redirect::to(&format!(
        "/app/accounts/{}/import?done=retried&n={n}",
        access.account.id
    ))
    .into_response())
}
