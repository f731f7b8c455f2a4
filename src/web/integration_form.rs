//! Creating an integration for an inbox (administrators), and switching one off and on. The inbox decides the
//! provider (its channel), so the form asks for the inbox first and then only for that provider's fields; the
//! answer shows the webhook URL with a copy button and, for WhatsApp Cloud, the verify token to paste into Meta.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::session::{AccountUser, CsrfForm, NoFields, random_token};
use super::{Chrome, WebError, WebResult, html, refusal, refused_page};
use crate::domain::ChannelType;
use crate::services::Ferry;
use crate::store::Inbox;
use crate::webhooks::integrations::{self, CreateIntegration, Provider, ProviderSecrets};

pub fn router() -> Router<Ferry> {
    let base = "/accounts/{account_id}/integrations";
    Router::new()
        .route(&format!("{base}/new"), get(new_page).post(create))
        .route(&format!("{base}/{{id}}/disable"), post(disable))
        .route(&format!("{base}/{{id}}/enable"), post(enable))
}

/// One field of a provider's form.
struct ProviderField {
    name: &'static str,
    label: &'static str,
    hint: &'static str,
    secret: bool,
    required: bool,
    value: String,
}

/// name, label, hint, secret, required
type FieldSpec = (&'static str, &'static str, &'static str, bool, bool);

/// What each provider needs (README: "Integrations and webhook tokens").
fn provider_fields(channel: ChannelType) -> &'static [FieldSpec] {
    const EVOLUTION: &[FieldSpec] = &[
        (
            "instance_name",
            "Instance name",
            "as named in Evolution API",
            false,
            true,
        ),
        (
            "api_url",
            "Evolution API URL",
            "e.g. https://evolution.example.com, to fetch media",
            false,
            false,
        ),
        (
            "api_key",
            "Evolution API key",
            "the instance's apikey, to fetch media",
            true,
            false,
        ),
    ];
    const CLOUD: &[FieldSpec] = &[
        (
            "phone_number_id",
            "Phone number ID",
            "from Meta's WhatsApp Manager",
            false,
            false,
        ),
        (
            "app_secret",
            "App secret",
            "signs every webhook (X-Hub-Signature-256)",
            true,
            true,
        ),
        (
            "verify_token",
            "Verify token",
            "you choose it; paste the same into Meta",
            false,
            true,
        ),
        (
            "access_token",
            "Access token",
            "a system user token, to fetch media",
            true,
            false,
        ),
    ];
    const DIALOG360: &[FieldSpec] = &[
        (
            "phone_number_id",
            "Phone number ID",
            "of the number on 360dialog",
            false,
            false,
        ),
        ("api_key", "D360 API key", "to fetch media", true, false),
    ];
    const TWILIO: &[FieldSpec] = &[(
        "auth_token",
        "Auth token",
        "the account's auth token: it signs every webhook",
        true,
        true,
    )];
    match channel {
        ChannelType::Evolution => EVOLUTION,
        ChannelType::WhatsappCloud => CLOUD,
        ChannelType::Dialog360 => DIALOG360,
        ChannelType::TwilioWhatsapp => TWILIO,
        _ => &[],
    }
}

struct InboxOption {
    id: i64,
    label: String,
    selected: bool,
}

#[derive(Template)]
#[template(path = "integration_form.html")]
struct IntegrationForm {
    chrome: Chrome,
    inboxes: Vec<InboxOption>,
    /// The chosen inbox: its id, name and provider label.
    inbox: Option<(i64, String, &'static str)>,
    fields: Vec<ProviderField>,
}

#[derive(Deserialize)]
struct InboxQuery {
    inbox_id: Option<String>,
}

async fn form(
    ferry: &Ferry,
    access: &AccountUser,
    inbox_id: Option<i64>,
    sent: Option<&std::collections::HashMap<String, String>>,
) -> WebResult<IntegrationForm> {
    let inboxes: Vec<Inbox> = ferry
        .store
        .list_inboxes(access.account.id)
        .await?
        .into_iter()
        .filter(|i| i.channel.is_whatsapp_like())
        .collect();
    let chosen = inbox_id.and_then(|id| inboxes.iter().find(|i| i.id == id));
    let fields = chosen
        .map(|i| provider_fields(i.channel))
        .unwrap_or(&[])
        .iter()
        .map(|&(name, label, hint, secret, required)| ProviderField {
            name,
            label,
            hint,
            secret,
            required,
            // Secrets are never sent back to the page; a verify token is offered ready-made.
            value: match sent.and_then(|s| s.get(name)) {
                Some(v) if !secret => v.clone(),
                None if name == "verify_token" => random_token(),
                _ => String::new(),
            },
        })
        .collect();
    Ok(IntegrationForm {
        chrome: Chrome::new(access, "integrations"),
        inboxes: inboxes
            .iter()
            .map(|i| InboxOption {
                id: i.id,
                label: format!("{} ({})", i.name, i.channel.label()),
                selected: Some(i.id) == inbox_id,
            })
            .collect(),
        inbox: chosen.map(|i| (i.id, i.name.clone(), i.channel.label())),
        fields,
    })
}

async fn new_page(
    State(ferry): State<Ferry>,
    access: AccountUser,
    Query(q): Query<InboxQuery>,
) -> WebResult<Response> {
    access.require_admin("create integrations")?;
    let inbox_id = q.inbox_id.and_then(|i| i.parse().ok());
    Ok(html(&form(&ferry, &access, inbox_id, None).await?))
}

async fn create(
    State(ferry): State<Ferry>,
    access: AccountUser,
    sent: CsrfForm<std::collections::HashMap<String, String>>,
) -> WebResult<Response> {
    access.authorize_post(sent.token.as_deref(), "create integrations")?;
    let data = sent.data;
    let inbox_id: i64 = data
        .get("inbox_id")
        .and_then(|i| i.parse().ok())
        .ok_or_else(|| WebError::BadRequest("Choose the inbox first.".into()))?;
    let inbox = ferry.store.get_inbox(access.account.id, inbox_id).await?;
    let get = |name: &str| {
        data.get(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let provider = Provider::parse(inbox.channel.as_str())?;
    let input = CreateIntegration {
        account_id: access.account.id,
        inbox_id,
        provider,
        instance_name: get("instance_name"),
        phone_number_id: get("phone_number_id"),
        api_url: get("api_url"),
        secrets: ProviderSecrets {
            app_secret: get("app_secret"),
            verify_token: get("verify_token"),
            auth_token: get("auth_token"),
            api_key: get("api_key"),
            access_token: get("access_token"),
        },
    };
    let message = match integrations::create(&ferry, input, Some(access.user().id)).await {
        // Post/redirect/get: a reload shows the page again instead of creating a second integration.
        Ok(issued) => {
            let to = format!(
                "/app/accounts/{}/integrations?created={}",
                access.account.id, issued.integration.id
            );
            return Ok(Redirect::to(&to).into_response());
        }
        Err(e) => refusal(e)?,
    };
    let mut page = form(&ferry, &access, Some(inbox_id), Some(&data)).await?;
    page.chrome.error = Some(message);
    Ok(refused_page(&page))
}

async fn disable(
    State(ferry): State<Ferry>,
    access: AccountUser,
    Path((_, id)): Path<(i64, i64)>,
    form: CsrfForm<NoFields>,
) -> WebResult<Response> {
    switch(ferry, access, id, form, false).await
}

async fn enable(
    State(ferry): State<Ferry>,
    access: AccountUser,
    Path((_, id)): Path<(i64, i64)>,
    form: CsrfForm<NoFields>,
) -> WebResult<Response> {
    switch(ferry, access, id, form, true).await
}

async fn switch(
    ferry: Ferry,
    access: AccountUser,
    id: i64,
    form: CsrfForm<NoFields>,
    enabled: bool,
) -> WebResult<Response> {
    let what = if enabled {
        "enable integrations"
    } else {
        "disable integrations"
    };
    access.authorize_post(form.token.as_deref(), what)?;
    integrations::set_enabled(
        &ferry,
        access.account.id,
        id,
        enabled,
        Some(access.user().id),
    )
    .await?;
    let done = if enabled { "enabled" } else { "disabled" };
    Ok(Redirect::to(&format!(
        "/app/accounts/{}/integrations?{done}={id}",
        access.account.id
    ))
    .into_response())
}
