//! The integrations page: every provider connection with its masked webhook URL (revealed on request, audited),
//! token rotation, legacy-route traffic and cut-over state; for installation administrators, the cut-over flow
//! of the cut-over (check → migrate, dry run first → verify → cleanup) with the CLI's safety rules.

use std::collections::HashMap;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::Value;

use super::session::{AccountUser, CsrfForm, NoFields};
use super::{Chrome, WebError, WebResult, count, html, when};
use crate::services::Ferry;
use crate::store::Integration;
use crate::webhooks::cutover;
use crate::webhooks::integrations::{self, Provider};

/// Traffic on the legacy route within this many days blocks the cleanup (as `ferry integrations cleanup`).
const QUIET_DAYS: i64 = 14;

pub fn router() -> Router<Ferry> {
    let base = "/accounts/{account_id}/integrations";
    Router::new()
        .route(base, get(page))
        .route(&format!("{base}/{{id}}/reveal"), post(reveal))
        .route(&format!("{base}/{{id}}/rotate"), post(rotate))
        .route(&format!("{base}/cutover/{{step}}"), post(cutover_step))
}

struct Row {
    id: i64,
    provider: &'static str,
    inbox: String,
    enabled: bool,
    status: String,
    masked_url: String,
    instance: String,
    legacy_hits: String,
    last_legacy_hit: String,
    cutover_state: String,
    revealed: Option<String>,
}

fn row(ferry: &Ferry, i: &Integration, inboxes: &HashMap<i64, String>) -> Row {
    Row {
        id: i.id,
        provider: Provider::parse(&i.provider)
            .map(|p| p.channel().label())
            .unwrap_or("Unknown provider"),
        inbox: i
            .inbox_id
            .and_then(|id| inboxes.get(&id).cloned())
            .unwrap_or_else(|| "—".into()),
        enabled: i.enabled,
        status: i.status.to_string(),
        masked_url: integrations::masked_webhook_url(ferry, i)
            .unwrap_or_else(|| "no token yet".into()),
        instance: i
            .instance_name
            .clone()
            .or_else(|| i.phone_number_id.clone())
            .unwrap_or_else(|| "—".into()),
        legacy_hits: count(i.legacy_hits),
        last_legacy_hit: i
            .last_legacy_hit_at
            .as_ref()
            .map(when)
            .unwrap_or_else(|| "never".into()),
        cutover_state: i.cutover_state.clone(),
        revealed: None,
    }
}

#[derive(Template)]
#[template(path = "integrations.html")]
struct IntegrationsPage {
    chrome: Chrome,
    rows: Vec<Row>,
    legacy_route_enabled: bool,
    new_url: Option<(String, String)>,
    /// Why providers cannot reach the URLs below, while they cannot.
    unreachable: Option<String>,
    /// Just created (not rotated): the notice says so.
    created: bool,
    /// A WhatsApp Cloud integration's verify token, to paste into Meta beside the URL.
    verify_token: Option<String>,
}

async fn render(
    ferry: &Ferry,
    access: &AccountUser,
    new_url: Option<(i64, String)>,
) -> WebResult<IntegrationsPage> {
    let inboxes: HashMap<i64, String> = ferry
        .store
        .list_inboxes(access.account.id)
        .await?
        .into_iter()
        .map(|i| (i.id, i.name))
        .collect();
    let list = ferry.store.list_integrations(access.account.id).await?;
    let mut rows: Vec<Row> = list.iter().map(|i| row(ferry, i, &inboxes)).collect();
    let mut announced = None;
    if let Some((id, url)) = new_url
        && let Some(r) = rows.iter_mut().find(|r| r.id == id)
    {
        r.revealed = Some(url.clone());
        announced = Some((format!("{} · {}", r.provider, r.inbox), url));
    }
    Ok(IntegrationsPage {
        chrome: Chrome::new(access, "integrations"),
        rows,
        legacy_route_enabled: ferry.store.legacy_route_enabled().await?,
        new_url: announced,
        unreachable: crate::public_url::warning(&ferry.public_url()),
        created: false,
        verify_token: None,
    })
}

/// After create, disable or enable; a mangled value is ignored, not an error page.
#[derive(Deserialize)]
struct DoneQuery {
    created: Option<String>,
    enabled: Option<String>,
    disabled: Option<String>,
}

/// How long after creating an integration its page shows the URL in full (revealing it, audited, as the
/// Reveal button does).
const SHOW_CREATED_MINUTES: i64 = 10;

/// Right after "Create integration": the page with the new URL (and a Cloud verify token) to paste.
async fn just_created(
    ferry: &Ferry,
    access: &AccountUser,
    id: i64,
) -> WebResult<Option<IntegrationsPage>> {
    let integration = ferry.store.get_integration(access.account.id, id).await?;
    let fresh = chrono::Utc::now() - integration.created_at
        < chrono::Duration::minutes(SHOW_CREATED_MINUTES);
    if !access.is_admin() || !fresh {
        return Ok(None);
    }
    let issued = integrations::reveal(ferry, access.account.id, id, Some(access.user().id)).await?;
    let mut page = render(ferry, access, Some((id, issued.webhook_url))).await?;
    page.created = true;
    page.verify_token = cloud_verify_token(ferry, &issued.integration)?;
    Ok(Some(page))
}

/// What Meta asks for beside the URL: a WhatsApp Cloud integration's verify token, from its sealed secrets.
fn cloud_verify_token(ferry: &Ferry, integration: &Integration) -> WebResult<Option<String>> {
    if integration.provider != "whatsapp_cloud" {
        return Ok(None);
    }
    Ok(integrations::integration_secrets(ferry, integration)?
        .get("verify_token")
        .and_then(Value::as_str)
        .map(str::to_owned))
}

async fn page(
    State(ferry): State<Ferry>,
    access: AccountUser,
    Query(done): Query<DoneQuery>,
) -> WebResult<Response> {
    if let Some(id) = done.created.as_deref().and_then(|id| id.parse().ok())
        && let Some(page) = just_created(&ferry, &access, id).await?
    {
        return Ok(html(&page));
    }
    let mut page = render(&ferry, &access, None).await?;
    let named = |id: &String| {
        page.rows
            .iter()
            .find(|r| id.parse() == Ok(r.id))
            .map(|r| format!("{} · {}", r.provider, r.inbox))
    };
    page.chrome.notice = match (&done.enabled, &done.disabled) {
        (Some(id), _) => {
            named(id).map(|n| format!("{n} is enabled: its webhooks are routed again."))
        }
        (_, Some(id)) => named(id).map(|n| {
            format!("{n} is disabled: its webhooks are refused (404) until you enable it.")
        }),
        _ => None,
    };
    Ok(html(&page))
}

#[derive(Template)]
#[template(path = "integration_url.html")]
struct RevealedUrl {
    id: i64,
    url: String,
    verify_token: Option<String>,
}

async fn reveal(
    State(ferry): State<Ferry>,
    access: AccountUser,
    Path((_, id)): Path<(i64, i64)>,
    form: CsrfForm<NoFields>,
) -> WebResult<Response> {
    access.authorize_post(form.token.as_deref(), "reveal webhook URLs")?;
    let issued =
        integrations::reveal(&ferry, access.account.id, id, Some(access.user().id)).await?;
    let verify_token = cloud_verify_token(&ferry, &issued.integration)?;
    Ok(html(&RevealedUrl {
        id,
        url: issued.webhook_url,
        verify_token,
    }))
}

#[derive(Deserialize)]
struct RotateForm {
    overlap_hours: String,
}

async fn rotate(
    State(ferry): State<Ferry>,
    access: AccountUser,
    Path((_, id)): Path<(i64, i64)>,
    form: CsrfForm<RotateForm>,
) -> WebResult<Response> {
    access.authorize_post(form.token.as_deref(), "rotate webhook tokens")?;
    let hours: i64 = match form.data.overlap_hours.parse() {
        Ok(h) if (0..=24 * 30).contains(&h) => h,
        _ => {
            return Err(WebError::BadRequest(
                "Choose how long the old URL keeps working.".into(),
            ));
        }
    };
    let issued = integrations::rotate(
        &ferry,
        access.account.id,
        id,
        chrono::Duration::hours(hours),
        Some(access.user().id),
    )
    .await?;
    // Answered to htmx, which swaps the page's main part: a reload is a plain GET, never a second rotation.
    let page = render(&ferry, &access, Some((id, issued.webhook_url))).await?;
    Ok(html(&page))
}

#[derive(Template)]
#[template(path = "cutover_result.html")]
struct StepResult {
    account_id: i64,
    title: String,
    ok: bool,
    facts: Vec<(String, String)>,
    lists: Vec<(String, Vec<String>)>,
    raw: String,
    /// After a dry run: the real migration may follow.
    offer_migrate: bool,
}

#[derive(Deserialize)]
struct CleanupForm {
    #[serde(default)]
    confirmation: String,
    #[serde(default)]
    force: Option<String>,
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|x| match x {
                    Value::String(s) => s.clone(),
                    other => other
                        .get("key")
                        .or_else(|| other.get("instance_name"))
                        .and_then(Value::as_str)
                        .map(|k| match other.get("reason").and_then(Value::as_str) {
                            Some(r) => format!("{k}: {r}"),
                            None => k.to_owned(),
                        })
                        .unwrap_or_else(|| other.to_string()),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn table_facts(label: &str, t: &cutover::TableCheck, facts: &mut Vec<(String, String)>) {
    facts.push((
        label.to_owned(),
        format!(
            "{} rows: {} migrated, {} not yet, {} unmapped, {} in error",
            t.total,
            t.migrated,
            t.not_migrated.len(),
            t.unmapped.len(),
            t.error
        ),
    ));
}

async fn cutover_step(
    State(ferry): State<Ferry>,
    access: AccountUser,
    Path((_, step)): Path<(i64, String)>,
    form: CsrfForm<CleanupForm>,
) -> WebResult<Response> {
    access.signed_in.check_csrf(form.token.as_deref())?;
    if !access.user().installation_admin {
        return Err(WebError::Forbidden(
            "The cut-over is for installation administrators.".into(),
        ));
    }
    let mut shown = Shown::default();
    let user = access.user().id;
    let outcome = match step.as_str() {
        "check" => check_step(&ferry, &mut shown).await,
        "dry-run" | "migrate" => migrate_step(&ferry, step == "dry-run", user, &mut shown).await,
        "verify" => verify_step(&ferry, &mut shown).await,
        "cleanup" => cleanup_step(&ferry, &form.data, user, &mut shown).await,
        _ => return Err(WebError::NotFound),
    };
    // The cut-over's own audit lines name no user: say who ran it from here.
    if matches!(step.as_str(), "migrate" | "cleanup") {
        ferry
            .audit(
                None,
                Some(access.user().id),
                "integrations.cutover.web",
                "legacy".into(),
                serde_json::json!({"step": step, "ok": outcome.is_ok()}),
            )
            .await;
    }
    let (title, ok, raw) = match outcome {
        Ok(done) => done,
        // A refusal (traffic in the quiet window, tables already gone) is shown in place, like the CLI's line.
        Err(WebError::Conflict(message)) => {
            shown.facts.push(("Refused".into(), message));
            (format!("{} refused", step_title(&step)), false, Value::Null)
        }
        Err(e) => return Err(e),
    };
    let part = StepResult {
        account_id: access.account.id,
        title,
        ok,
        facts: shown.facts,
        lists: shown
            .lists
            .into_iter()
            .filter(|(_, l)| !l.is_empty())
            .collect(),
        raw: if raw.is_null() {
            String::new()
        } else {
            serde_json::to_string_pretty(&raw).unwrap_or_default()
        },
        offer_migrate: shown.offer_migrate,
    };
    let mut response = html(&part);
    // What changed the integrations refreshes their table on the page (it listens for this event).
    if ok && matches!(step.as_str(), "migrate" | "cleanup") {
        response.headers_mut().insert(
            "hx-trigger",
            axum::http::HeaderValue::from_static("integrations-changed"),
        );
    }
    Ok(response)
}

/// What a cut-over step shows besides its title: facts, lists, and whether the real migration may follow.
#[derive(Default)]
struct Shown {
    facts: Vec<(String, String)>,
    lists: Vec<(String, Vec<String>)>,
    offer_migrate: bool,
}

type Step = Result<(String, bool, Value), WebError>;

async fn check_step(ferry: &Ferry, shown: &mut Shown) -> Step {
    let report = cutover::check(ferry, QUIET_DAYS).await?;
    let v = serde_json::to_value(&report).unwrap_or_default();
    table_facts(
        "Evolution instances",
        &report.evolution_instances,
        &mut shown.facts,
    );
    table_facts(
        "Business configs",
        &report.whatsapp_business_configs,
        &mut shown.facts,
    );
    let route = &report.legacy_route;
    shown.facts.push((
        "Legacy route".into(),
        format!(
            "{}; {} instance(s) used it in the last {QUIET_DAYS} days",
            if route.enabled { "on" } else { "off" },
            route.hits.len()
        ),
    ));
    shown.lists.push((
        "Not migrated yet".into(),
        report.evolution_instances.not_migrated.clone(),
    ));
    shown.lists.push((
        "Unmapped (no account)".into(),
        report.evolution_instances.unmapped.clone(),
    ));
    shown.lists.push((
        "Recent legacy traffic".into(),
        names(&v["legacy_route"]["hits"]),
    ));
    shown.lists.push((
        "Integrations without a usable token".into(),
        names(&v["integrations_without_usable_token"]),
    ));
    Ok(("Check".to_owned(), true, v))
}

async fn migrate_step(ferry: &Ferry, dry_run: bool, user: i64, shown: &mut Shown) -> Step {
    let report = cutover::migrate(ferry, dry_run, Some(user)).await?;
    let v = serde_json::to_value(&report).unwrap_or_default();
    for (done, planned, key) in [
        ("Migrated", "Would migrate", "migrated"),
        ("Updated", "Would update", "updated"),
        ("Unchanged", "Unchanged", "unchanged"),
        ("Skipped", "Skipped", "skipped"),
        ("Errors", "Errors", "errors"),
    ] {
        let n = v[key].as_array().map_or(0, Vec::len);
        shown.facts.push((
            (if dry_run { planned } else { done }).to_owned(),
            n.to_string(),
        ));
    }
    shown.lists.push(("Skipped".into(), names(&v["skipped"])));
    shown.lists.push(("Errors".into(), names(&v["errors"])));
    shown.offer_migrate = dry_run && report.errors.is_empty();
    let title = if dry_run {
        "Migrate (dry run)"
    } else {
        "Migrate"
    };
    Ok((title.to_owned(), report.errors.is_empty(), v))
}

async fn verify_step(ferry: &Ferry, shown: &mut Shown) -> Step {
    let report = cutover::verify(ferry).await?;
    let agree = report.agree;
    let v = serde_json::to_value(&report).unwrap_or_default();
    shown.facts.push((
        "Agree".into(),
        if agree { "yes".into() } else { "no".into() },
    ));
    shown
        .facts
        .push(("Legacy rows".into(), report.legacy_rows.to_string()));
    shown
        .facts
        .push(("Integrations".into(), report.migrated_rows.to_string()));
    shown.lists.push(("Missing".into(), names(&v["missing"])));
    shown.lists.push(("Extra".into(), names(&v["extra"])));
    shown
        .lists
        .push(("Different".into(), names(&v["different"])));
    Ok(("Verify".to_owned(), agree, v))
}

async fn cleanup_step(ferry: &Ferry, form: &CleanupForm, user: i64, shown: &mut Shown) -> Step {
    if !form.confirmation.trim().eq_ignore_ascii_case("CLEANUP") {
        return Err(WebError::BadRequest(
            "Type CLEANUP to confirm; nothing was changed.".into(),
        ));
    }
    let force = form.force.is_some();
    let report = cutover::cleanup(ferry, QUIET_DAYS, force, Some(user)).await?;
    shown.facts.push(("Backup".into(), report.backup.clone()));
    shown
        .facts
        .push(("Rows backed up".into(), report.rows_backed_up.to_string()));
    let v = serde_json::to_value(&report).unwrap_or_default();
    shown
        .facts
        .push(("Legacy route".into(), "off (410 Gone)".into()));
    shown.facts.push(("Legacy tables".into(), "dropped".into()));
    Ok(("Cleanup".to_owned(), true, v))
}

fn step_title(step: &str) -> &'static str {
    match step {
        "check" => "Check",
        "dry-run" => "Dry run",
        "migrate" => "Migrate",
        "verify" => "Verify",
        _ => "Cleanup",
    }
}
