//! The inbox migration page (README: "Web admin UI"): destination, preview, typed confirmation, a live progress panel fed by
//! Server-Sent Events, cancel, revert with its own typed confirmation, and the inbox's migration history.
//! Administrators only.

use std::collections::HashMap;
use std::convert::Infallible;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use futures::{Stream, StreamExt};
use serde::Deserialize;

use super::inboxes::InboxRow;
use super::session::{AccountUser, CsrfForm, NoFields};
use super::{Chrome, WebError, WebResult, count, duration, html, when};
use crate::inbox_migration::{self as im, Created, MigrationError, MigrationOptions};
use crate::services::Ferry;
use crate::store::InboxMigration;
use crate::store::MigrationStatus;

pub fn router() -> Router<Ferry> {
    let base = "/accounts/{account_id}/inboxes/{inbox_id}/migration";
    Router::new()
        .route(base, get(page).post(start))
        .route(&format!("{base}/preview"), get(preview))
        .route(&format!("{base}s/{{id}}/events"), get(events))
        .route(&format!("{base}s/{{id}}/cancel"), post(cancel))
        .route(&format!("{base}s/{{id}}/revert"), post(revert))
        .route(&format!("{base}s/{{id}}/retry"), post(retry))
}

impl From<MigrationError> for WebError {
    fn from(e: MigrationError) -> Self {
        match e {
            MigrationError::Refused { message, .. } => WebError::Conflict(message),
            MigrationError::NotFound(_) => WebError::NotFound,
            MigrationError::Service(s) => s.into(),
        }
    }
}

/// One migration as the panel and the history show it.
pub struct MigrationPanel {
    pub id: i64,
    pub status: String,
    pub status_label: &'static str,
    pub badge: &'static str,
    pub active: bool,
    pub destination: String,
    pub who: String,
    pub when: String,
    pub duration: String,
    pub summary: String,
    pub error: Option<String>,
    pub percentage: String,
    pub bars: Vec<Bar>,
    pub eta: String,
    pub cancel_requested: bool,
    pub contacts_merged: String,
    pub duplicates: String,
    /// A migration that moved rows and has no revert under way or done: the Revert button.
    pub revertible: bool,
    pub revert: Option<RevertPanel>,
    /// Every attempt, oldest first (`history` of the API), one line each.
    pub attempts: Vec<String>,
    /// After completing into an inbox that allows one open conversation per contact: who has several.
    pub conflicts: Vec<ConflictRow>,
}

/// The people with several open conversations a completed migration left, from its result.
fn result_conflicts(m: &InboxMigration) -> Vec<ConflictRow> {
    let Some(list) = m
        .result
        .as_ref()
        .and_then(|r| r.0.get("open_conflicts"))
        .and_then(|l| l.as_array())
    else {
        return Vec::new();
    };
    list.iter()
        .map(|c| ConflictRow {
            name: c["name"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("Contact {}", c["contact_id"])),
            conversations: c["conversations"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|at| at["conversation_id"].as_i64())
                        .map(|id| (id, "open".to_owned()))
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect()
}

/// The revert job's part of the panel.
pub struct RevertPanel {
    pub state: &'static str,
    pub active: bool,
    pub percentage: String,
    pub batches: String,
    /// "N conversations, M messages and K contacts back in this inbox".
    pub restored: String,
    /// Runs beyond the migration itself that the revert covers (cancelled runs it continued).
    pub other_runs: String,
    pub error: Option<String>,
}

fn revert_panel(revert: Option<&im::RevertView>) -> Option<RevertPanel> {
    let r = revert?;
    let state = r.status.as_str();
    let runs: Vec<String> = r.runs.iter().skip(1).map(|id| format!("#{id}")).collect();
    Some(RevertPanel {
        state,
        active: r.status.is_active(),
        percentage: format!("{:.1}", r.percentage),
        batches: format!("{} of {}", count(r.batches_done), count(r.batches_total)),
        restored: format!(
            "{} conversations, {} messages and {} contacts",
            count(r.restored.conversations),
            count(r.restored.messages),
            count(r.restored.contact_inboxes)
        ),
        other_runs: runs.join(", "),
        error: r.error.clone(),
    })
}

fn attempt_lines(history: &[crate::store::MigrationAttempt]) -> Vec<String> {
    history
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let outcome = a.outcome.as_deref().unwrap_or("running");
            let batches = format!(
                "batches {} → {}",
                a.batches_at_start,
                a.batches_at_end.map_or("…".into(), |b| b.to_string())
            );
            let error = a
                .error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            format!(
                "{}. {} by {} from {} · {outcome}{error} · {batches}",
                i + 1,
                a.kind,
                a.worker,
                a.started_at
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            )
        })
        .collect()
}

/// What a row of the panel shows: the newest migration has its whole record (ETA, revert, attempts), older ones
/// their progress and duration.
struct Shown {
    progress: im::Progress,
    duration_seconds: Option<f64>,
    eta_seconds: Option<f64>,
    revert: Option<im::RevertView>,
    history: Vec<crate::store::MigrationAttempt>,
}

impl Shown {
    fn of_view(v: im::MigrationView) -> Self {
        Self {
            progress: v.progress,
            duration_seconds: v.timing.duration_seconds,
            eta_seconds: v.timing.eta_seconds,
            revert: v.revert,
            history: v.history,
        }
    }

    fn of_record(m: &InboxMigration) -> Self {
        let duration_seconds = match (m.started_at, m.completed_at) {
            (Some(s), Some(c)) => Some((c - s).num_milliseconds() as f64 / 1000.0),
            _ => None,
        };
        Self {
            progress: im::progress(m),
            duration_seconds,
            eta_seconds: None,
            revert: None,
            history: Vec::new(),
        }
    }
}

pub struct Bar {
    pub key: &'static str,
    pub label: &'static str,
    pub moved: String,
    pub total: String,
    pub percent: String,
}

pub fn status_label(status: MigrationStatus) -> (&'static str, &'static str) {
    match status {
        MigrationStatus::Queued => ("Queued", "badge-neutral"),
        MigrationStatus::Running => ("Running", "badge-info"),
        MigrationStatus::Completed => ("Completed", "badge-success"),
        MigrationStatus::Failed => ("Failed", "badge-danger"),
        MigrationStatus::Cancelled => ("Cancelled", "badge-warning"),
        MigrationStatus::Reverted => ("Reverted", "badge-neutral"),
    }
}

fn view(m: &InboxMigration, shown: &Shown, destination: String, who: String) -> MigrationPanel {
    let (status_label, badge) = if m.status == MigrationStatus::Running && m.cancel_requested {
        ("Cancelling…", "badge-warning")
    } else {
        status_label(m.status)
    };
    let progress = &shown.progress;
    let entity = |key: &'static str, label: &'static str, of: im::EntityProgress| {
        let total = of.total;
        let moved = of.moved.min(total.max(0));
        let percent = if m.status == MigrationStatus::Completed || total == 0 {
            if m.status == MigrationStatus::Completed {
                100.0
            } else {
                0.0
            }
        } else {
            moved as f64 * 100.0 / total as f64
        };
        Bar {
            key,
            label,
            moved: count(moved),
            total: count(total),
            percent: format!("{percent:.1}"),
        }
    };
    let duration_seconds = shown.duration_seconds;
    let eta = match shown.eta_seconds {
        Some(s) => format!("about {} left", duration(s)),
        None if m.is_active() => "estimating…".into(),
        None => String::new(),
    };
    MigrationPanel {
        id: m.id,
        status: m.status.to_string(),
        status_label,
        badge,
        active: m.has_work(),
        destination,
        who,
        when: when(&m.created_at),
        duration: duration_seconds.map(duration).unwrap_or_else(|| "—".into()),
        summary: format!(
            "{} conversations, {} messages, {} attachments, {} contacts",
            count(
                m.conversations_moved
                    .min(m.conversations_count.max(m.conversations_moved))
            ),
            count(m.messages_moved),
            count(m.attachments_moved),
            count(m.contact_inboxes_moved),
        ),
        error: m.error_message.clone(),
        percentage: format!("{:.1}", progress.percentage),
        bars: vec![
            entity("conversations", "Conversations", progress.conversations),
            entity("messages", "Messages", progress.messages),
            entity("attachments", "Attachments", progress.attachments),
            entity("contact_inboxes", "Contacts", progress.contact_inboxes),
        ],
        eta,
        cancel_requested: m.cancel_requested,
        contacts_merged: count(m.contacts_merged),
        duplicates: count(m.duplicates),
        revertible: m.status.is_revertible()
            && (m.status == MigrationStatus::Completed || m.cursor_id > 0)
            && !m
                .revert_state
                .is_some_and(crate::store::RevertState::is_active),
        revert: revert_panel(shown.revert.as_ref()),
        attempts: attempt_lines(&shown.history),
        conflicts: if m.status == MigrationStatus::Completed {
            result_conflicts(m)
        } else {
            Vec::new()
        },
    }
}

/// Migrations the history lists (newest first).
const HISTORY_LENGTH: usize = 25;

/// The live part of the page: the current (or last completed) migration's panel and the history.
#[derive(Template)]
#[template(path = "migration_live.html")]
struct Live {
    account_id: i64,
    inbox_id: i64,
    csrf_token: String,
    current: Option<MigrationPanel>,
    history: Vec<MigrationPanel>,
}

async fn live_part(ferry: &Ferry, access: &AccountUser, inbox_id: i64) -> WebResult<Live> {
    let migrations = ferry
        .store
        .list_inbox_migrations(access.account.id, Some(inbox_id), false)
        .await?;
    let inbox_names: HashMap<i64, String> = ferry
        .store
        .list_inboxes(access.account.id)
        .await?
        .into_iter()
        .map(|i| (i.id, i.name))
        .collect();
    let mut names: HashMap<i64, String> = HashMap::new();
    let mut history = Vec::new();
    for m in migrations.iter().take(HISTORY_LENGTH) {
        let who = match m.user_id {
            Some(id) => match names.get(&id) {
                Some(n) => n.clone(),
                None => {
                    let n = ferry
                        .store
                        .get_user(id)
                        .await
                        .map(|u| u.name)
                        .unwrap_or_else(|_| "a deleted user".into());
                    names.insert(id, n.clone());
                    n
                }
            },
            None => "the CLI".into(),
        };
        let destination = inbox_names
            .get(&m.destination_inbox_id)
            .cloned()
            .unwrap_or_else(|| "(deleted inbox)".into());
        // The newest one gets the full record (with its ETA); older ones only what the history shows.
        let shown = if history.is_empty() {
            Shown::of_view(im::to_view(ferry, m).await?)
        } else {
            Shown::of_record(m)
        };
        history.push(view(m, &shown, destination, who));
    }
    // Newest first: the panel shows it while it runs, and after it completed (to offer the revert).
    // A reverted one stays while the panel tells what its revert restored.
    let shown = history
        .first()
        .is_some_and(|v| v.status != "reverted" || v.revert.is_some());
    let current = shown.then(|| history.remove(0));
    Ok(Live {
        account_id: access.account.id,
        inbox_id,
        csrf_token: access.signed_in.csrf_token.clone(),
        current,
        history,
    })
}

#[derive(Template)]
#[template(path = "migration.html")]
struct MigrationPage {
    chrome: Chrome,
    inbox: InboxRow,
    unavailable: Option<String>,
    destinations: Vec<(i64, String)>,
    can_start: bool,
    live: Live,
}

async fn render_page(
    ferry: &Ferry,
    access: &AccountUser,
    inbox_id: i64,
    notice: Option<String>,
) -> WebResult<MigrationPage> {
    access.require_admin("migrate inboxes")?;
    let inbox = ferry.store.get_inbox(access.account.id, inbox_id).await?;
    let unavailable = (!inbox.channel.is_whatsapp_like()).then(|| {
        format!(
            "{} is a {} inbox. Only WhatsApp inboxes (Evolution API, WhatsApp Cloud, 360dialog, Twilio WhatsApp) \
             can be migrated, because only their conversations can continue on another WhatsApp number.",
            inbox.name,
            inbox.channel.label()
        )
    });
    let destinations = if unavailable.is_none() {
        im::eligible_destinations(ferry, access.account.id, inbox_id)
            .await?
            .into_iter()
            .map(|d| (d.id, d.label))
            .collect()
    } else {
        Vec::new()
    };
    let live = live_part(ferry, access, inbox_id).await?;
    let can_start = unavailable.is_none() && live.current.as_ref().is_none_or(|c| !c.active);
    Ok(MigrationPage {
        chrome: Chrome::new(access, "inboxes").with_notice(notice),
        inbox: InboxRow::new(&inbox),
        unavailable,
        destinations,
        can_start,
        live,
    })
}

#[derive(Deserialize)]
struct PageQuery {
    done: Option<String>,
}

async fn page(
    State(ferry): State<Ferry>,
    access: AccountUser,
    Path((_, inbox_id)): Path<(i64, i64)>,
    Query(q): Query<PageQuery>,
) -> WebResult<Response> {
    let notice = match q.done.as_deref() {
        Some("started") => Some("Migration queued. Progress appears below as it runs.".to_owned()),
        Some("cancelled") => Some("Migration cancelled before it started.".to_owned()),
        Some("cancelling") => {
            Some("Cancellation requested: the migration stops after its current batch.".to_owned())
        }
        Some("reverting") => Some(
            "Revert queued: conversations go back to this inbox in batches, shown below.".to_owned(),
        ),
        Some("revert-cancelled") => {
            Some("Revert cancelled before it started; nothing was changed.".to_owned())
        }
        Some("revert-cancelling") => Some(
            "Cancellation requested: the revert stops after its current batch; what it undid stays undone."
                .to_owned(),
        ),
        Some("retried") => {
            Some("Migration queued again: it continues where it stopped.".to_owned())
        }
        _ => None,
    };
    Ok(html(&render_page(&ferry, &access, inbox_id, notice).await?))
}

#[derive(Template)]
#[template(path = "migration_preview.html")]
struct PreviewPart {
    account_id: i64,
    inbox_id: i64,
    csrf_token: String,
    destination_id: i64,
    destination_name: String,
    conversations: String,
    messages: String,
    attachments: String,
    contacts: String,
    contacts_to_merge: String,
    duplicates: String,
    warnings: Vec<String>,
    estimate: String,
    merging: Vec<crate::store::MergingContact>,
    /// How many merge beyond those listed.
    more_merging: String,
    conflicts: Vec<ConflictRow>,
}

pub struct ConflictRow {
    pub name: String,
    pub conversations: Vec<(i64, String)>,
}

#[derive(Deserialize)]
struct PreviewQuery {
    destination_inbox_id: Option<String>,
}

#[derive(Template)]
#[template(path = "migration_preview_empty.html")]
struct PreviewEmpty {
    message: String,
}

async fn preview(
    State(ferry): State<Ferry>,
    access: AccountUser,
    Path((_, inbox_id)): Path<(i64, i64)>,
    Query(q): Query<PreviewQuery>,
) -> WebResult<Response> {
    access.require_admin("migrate inboxes")?;
    let Some(destination_id) = q
        .destination_inbox_id
        .as_deref()
        .and_then(|d| d.parse::<i64>().ok())
    else {
        let message = "Choose the inbox that should receive this inbox's conversations.".into();
        return Ok(html(&PreviewEmpty { message }));
    };
    let p = match im::preview(&ferry, access.account.id, inbox_id, destination_id).await {
        Ok(p) => p,
        Err(MigrationError::Refused { message, .. }) => {
            return Ok(html(&PreviewEmpty { message }));
        }
        Err(e) => return Err(e.into()),
    };
    let part = PreviewPart {
        account_id: access.account.id,
        inbox_id,
        csrf_token: access.signed_in.csrf_token.clone(),
        destination_id,
        destination_name: p.destination_inbox.name.clone().unwrap_or_default(),
        conversations: count(p.conversations),
        messages: count(p.messages),
        attachments: count(p.attachments),
        contacts: count(p.contacts),
        contacts_to_merge: count(p.contacts_to_merge),
        duplicates: count(p.duplicates),
        warnings: p
            .warnings
            .iter()
            // The merge count is already said above, in the UI's own words.
            .filter(|w| {
                !matches!(
                    w.code,
                    "CONTACTS_WILL_MERGE" | "OPEN_CONVERSATION_CONFLICTS"
                )
            })
            .map(|w| w.message.clone())
            .collect(),
        estimate: duration(p.estimated_seconds),
        more_merging: count(p.contacts_to_merge - p.merging.len() as i64),
        merging: p.merging,
        conflicts: p
            .open_conflicts
            .into_iter()
            .map(|c| ConflictRow {
                name: c
                    .name
                    .unwrap_or_else(|| format!("Contact {}", c.contact_id)),
                conversations: c
                    .conversations
                    .iter()
                    .map(|at| {
                        let place = if at.inbox_id == inbox_id {
                            "here"
                        } else {
                            "in the destination"
                        };
                        (at.conversation_id, place.to_owned())
                    })
                    .collect(),
            })
            .collect(),
    };
    Ok(html(&part))
}

#[derive(Deserialize)]
struct StartForm {
    destination_inbox_id: String,
    #[serde(default)]
    confirmation: String,
}

fn confirmed(typed: &str, word: &str) -> bool {
    typed.trim().eq_ignore_ascii_case(word)
}

async fn start(
    State(ferry): State<Ferry>,
    access: AccountUser,
    Path((_, inbox_id)): Path<(i64, i64)>,
    form: CsrfForm<StartForm>,
) -> WebResult<Response> {
    access.authorize_post(form.token.as_deref(), "migrate inboxes")?;
    if !confirmed(&form.data.confirmation, "MIGRATE") {
        let message = "Type MIGRATE to confirm the migration; nothing was started.";
        return refused(&ferry, &access, inbox_id, message.into()).await;
    }
    let Ok(destination_id) = form.data.destination_inbox_id.trim().parse::<i64>() else {
        return refused(
            &ferry,
            &access,
            inbox_id,
            "Choose a destination inbox first.".into(),
        )
        .await;
    };
    let created = im::create(
        &ferry,
        access.account.id,
        inbox_id,
        destination_id,
        false,
        MigrationOptions::default(),
        Some(access.user().id),
    )
    .await;
    match created {
        Ok(Created::Queued(_)) | Ok(Created::DryRun(_)) => Ok(Redirect::to(&format!(
            "/app/accounts/{}/inboxes/{inbox_id}/migration?done=started",
            access.account.id
        ))
        .into_response()),
        Err(MigrationError::Refused { message, .. }) => {
            refused(&ferry, &access, inbox_id, message).await
        }
        Err(e) => Err(e.into()),
    }
}

/// The page again, saying why nothing was started.
async fn refused(
    ferry: &Ferry,
    access: &AccountUser,
    inbox_id: i64,
    message: String,
) -> WebResult<Response> {
    let mut page = render_page(ferry, access, inbox_id, None).await?;
    page.chrome.error = Some(message);
    Ok(super::refused_page(&page))
}

/// A lifecycle action's answer: the page again saying why it was refused, or back to the page with the
/// notice `done` names for the migration as it now is.
async fn answered(
    ferry: &Ferry,
    access: &AccountUser,
    inbox_id: i64,
    outcome: Result<InboxMigration, MigrationError>,
    done: impl FnOnce(&InboxMigration) -> &'static str,
) -> WebResult<Response> {
    let m = match outcome {
        Err(MigrationError::Refused { message, .. }) => {
            return refused(ferry, access, inbox_id, message).await;
        }
        other => other?,
    };
    Ok(Redirect::to(&format!(
        "/app/accounts/{}/inboxes/{inbox_id}/migration?done={}",
        access.account.id,
        done(&m)
    ))
    .into_response())
}

async fn cancel(
    State(ferry): State<Ferry>,
    access: AccountUser,
    Path((_, inbox_id, id)): Path<(i64, i64, i64)>,
    form: CsrfForm<NoFields>,
) -> WebResult<Response> {
    access.authorize_post(form.token.as_deref(), "cancel migrations")?;
    let user = Some(access.user().id);
    let cancelled = im::cancel(&ferry, access.account.id, Some(inbox_id), id, user).await;
    // A queued migration stops at once; a running one at its next batch.
    answered(&ferry, &access, inbox_id, cancelled, |m| {
        match m.revert_state {
            Some(crate::store::RevertState::Cancelled) => "revert-cancelled",
            Some(_) if m.cancel_requested => "revert-cancelling",
            _ if m.status == MigrationStatus::Cancelled => "cancelled",
            _ => "cancelling",
        }
    })
    .await
}

#[derive(Deserialize)]
struct RevertForm {
    #[serde(default)]
    confirmation: String,
}

async fn revert(
    State(ferry): State<Ferry>,
    access: AccountUser,
    Path((_, inbox_id, id)): Path<(i64, i64, i64)>,
    form: CsrfForm<RevertForm>,
) -> WebResult<Response> {
    access.authorize_post(form.token.as_deref(), "revert migrations")?;
    if !confirmed(&form.data.confirmation, "REVERT") {
        let message = "Type REVERT to confirm; nothing was reverted.";
        return refused(&ferry, &access, inbox_id, message.into()).await;
    }
    let user = Some(access.user().id);
    let reverted = im::revert(&ferry, access.account.id, Some(inbox_id), id, user).await;
    answered(&ferry, &access, inbox_id, reverted, |_| "reverting").await
}

async fn retry(
    State(ferry): State<Ferry>,
    access: AccountUser,
    Path((_, inbox_id, id)): Path<(i64, i64, i64)>,
    form: CsrfForm<NoFields>,
) -> WebResult<Response> {
    access.authorize_post(form.token.as_deref(), "retry migrations")?;
    let user = Some(access.user().id);
    let retried = im::retry(&ferry, access.account.id, Some(inbox_id), id, user).await;
    answered(&ferry, &access, inbox_id, retried, |_| "retried").await
}

async fn events(
    State(ferry): State<Ferry>,
    access: AccountUser,
    Path((_, inbox_id, id)): Path<(i64, i64, i64)>,
) -> WebResult<(
    [(&'static str, &'static str); 1],
    Sse<impl Stream<Item = Result<Event, Infallible>>>,
)> {
    access.require_admin("migrate inboxes")?;
    let m = im::get(&ferry, access.account.id, Some(inbox_id), id).await?;
    // Proxies must pass each event on at once, not buffer the stream.
    let events = im::progress::events(&ferry, m.id)
        .map_err(|busy| WebError::Conflict(format!("{busy}; reload the page later")))?;
    let events = events.map(|e| Ok(Event::default().event(e.name).data(e.data.as_str())));
    let stream = Sse::new(events).keep_alive(KeepAlive::default());
    Ok(([("x-accel-buffering", "no")], stream))
}

#[cfg(test)]
mod tests {
    use super::confirmed;

    #[test]
    fn confirmation_is_case_insensitive_and_exact() {
        assert!(confirmed("MIGRATE", "MIGRATE"));
        assert!(confirmed("migrate", "MIGRATE"));
        assert!(confirmed(" Migrate ", "MIGRATE"));
        assert!(!confirmed("migrat", "MIGRATE"));
        assert!(!confirmed("MIGRATE NOW", "MIGRATE"));
        assert!(!confirmed("", "MIGRATE"));
    }
}
