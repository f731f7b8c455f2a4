//! Creating and editing inboxes (administrators), over the same service the API uses. Provider settings are
//! shown masked as in the API: a value is replaced by typing a new one, kept by leaving it blank, removed by
//! ticking it; the page never holds a secret in the clear.

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::session::{AccountUser, CsrfForm};
use super::{Chrome, WebError, WebResult, html, refusal, refused_page};
use crate::domain::ChannelType;
use crate::services::{CreateInbox, Ferry, UpdateInbox, mask_values};
use crate::store::{self, Inbox};

pub fn router() -> Router<Ferry> {
    Router::new()
        .route(
            "/accounts/{account_id}/inboxes/new",
            get(new_page).post(create),
        )
        .route(
            "/accounts/{account_id}/inboxes/{inbox_id}/edit",
            get(edit_page).post(update),
        )
}

/// Blank rows offered for settings not there yet.
const NEW_SETTING_ROWS: usize = 3;

struct ChannelOption {
    value: &'static str,
    label: &'static str,
    selected: bool,
}

struct SettingRow {
    key: String,
    masked: String,
}

#[derive(Template)]
#[template(path = "inbox_form.html")]
struct InboxForm {
    chrome: Chrome,
    /// None while creating.
    inbox_id: Option<i64>,
    name: String,
    channel_label: &'static str,
    channels: Vec<ChannelOption>,
    phone_number: String,
    lock_to_single_conversation: bool,
    settings: Vec<SettingRow>,
    new_rows: Vec<usize>,
}

impl InboxForm {
    fn blank(access: &AccountUser) -> Self {
        InboxForm {
            chrome: Chrome::new(access, "inboxes"),
            inbox_id: None,
            name: String::new(),
            channel_label: "",
            channels: channel_options(ChannelType::Evolution),
            phone_number: String::new(),
            lock_to_single_conversation: false,
            settings: Vec::new(),
            new_rows: (0..NEW_SETTING_ROWS).collect(),
        }
    }

    fn of(ferry: &Ferry, access: &AccountUser, inbox: &Inbox) -> WebResult<Self> {
        let config = current_config(ferry, inbox)?;
        let settings = config
            .iter()
            .map(|(key, value)| SettingRow {
                key: key.clone(),
                masked: match mask_values(value) {
                    Value::String(s) => s,
                    other => other.to_string(),
                },
            })
            .collect();
        Ok(InboxForm {
            inbox_id: Some(inbox.id),
            name: inbox.name.clone(),
            channel_label: inbox.channel.label(),
            channels: channel_options(inbox.channel),
            phone_number: inbox.phone_number.clone().unwrap_or_default(),
            lock_to_single_conversation: inbox.lock_to_single_conversation,
            settings,
            ..InboxForm::blank(access)
        })
    }

    /// The form again as it was sent, saying why it was refused.
    fn refused(mut self, sent: &FormFields, message: String) -> Response {
        self.name = sent.name.clone();
        self.phone_number = sent.phone_number.clone();
        self.lock_to_single_conversation = sent.lock_to_single_conversation.is_some();
        if let Some(c) = sent
            .channel_type
            .as_deref()
            .and_then(|c| ChannelType::parse(c).ok())
        {
            self.channels = channel_options(c);
        }
        self.chrome.error = Some(message);
        refused_page(&self)
    }
}

fn channel_options(selected: ChannelType) -> Vec<ChannelOption> {
    ChannelType::ALL
        .iter()
        .map(|c| ChannelOption {
            value: c.as_str(),
            label: c.label(),
            selected: *c == selected,
        })
        .collect()
}

fn current_config(ferry: &Ferry, inbox: &Inbox) -> WebResult<Map<String, Value>> {
    let config = store::open_provider_config(&ferry.cipher, inbox)
        .map_err(|e| WebError::Internal(e.to_string()))?;
    Ok(match config {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    })
}

/// The form as posted: fixed fields, and the settings as `setting:KEY` (new value), `remove:KEY`,
/// `new_key_N`/`new_value_N` pairs.
#[derive(Deserialize)]
struct FormFields {
    name: String,
    #[serde(default)]
    channel_type: Option<String>,
    #[serde(default)]
    phone_number: String,
    #[serde(default)]
    lock_to_single_conversation: Option<String>,
    #[serde(flatten)]
    rest: std::collections::HashMap<String, String>,
}

impl FormFields {
    /// The settings after this form's changes to `current`; None when it changes none.
    fn settings(&self, current: &Map<String, Value>) -> Result<Option<Map<String, Value>>, String> {
        let mut next = current.clone();
        for (field, value) in &self.rest {
            if let Some(key) = field.strip_prefix("setting:")
                && !value.trim().is_empty()
                && current.contains_key(key)
            {
                next.insert(key.to_owned(), Value::String(value.trim().to_owned()));
            }
        }
        for field in self.rest.keys() {
            if let Some(key) = field.strip_prefix("remove:") {
                next.remove(key);
            }
        }
        for n in 0..NEW_SETTING_ROWS {
            let key = self.field(&format!("new_key_{n}"));
            let value = self.field(&format!("new_value_{n}"));
            match (key.is_empty(), value.is_empty()) {
                (true, true) => {}
                (true, false) => return Err("A new provider setting needs a name.".into()),
                (false, _) if !valid_key(key) => {
                    return Err(format!(
                        "{key:?} cannot name a setting: use letters, digits, '_', '-' or '.'."
                    ));
                }
                (false, true) => return Err(format!("The new setting {key} needs a value.")),
                (false, false) => {
                    next.insert(key.to_owned(), Value::String(value.to_owned()));
                }
            }
        }
        Ok((&next != current).then_some(next))
    }

    fn field(&self, name: &str) -> &str {
        self.rest.get(name).map(|v| v.trim()).unwrap_or("")
    }

    fn phone(&self) -> Option<String> {
        Some(self.phone_number.trim().to_owned()).filter(|p| !p.is_empty())
    }
}

fn valid_key(key: &str) -> bool {
    key.len() <= 64
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

async fn new_page(access: AccountUser) -> WebResult<Response> {
    access.require_admin("create inboxes")?;
    Ok(html(&InboxForm::blank(&access)))
}

async fn create(
    State(ferry): State<Ferry>,
    access: AccountUser,
    form: CsrfForm<FormFields>,
) -> WebResult<Response> {
    access.authorize_post(form.token.as_deref(), "create inboxes")?;
    let sent = form.data;
    let blank = InboxForm::blank(&access);
    let channel_type = match sent.channel_type.as_deref().map(ChannelType::parse) {
        Some(Ok(c)) => c,
        _ => return Ok(blank.refused(&sent, "Choose the inbox's channel.".into())),
    };
    let config = match sent.settings(&Map::new()) {
        Ok(c) => c.map(Value::Object),
        Err(message) => return Ok(blank.refused(&sent, message)),
    };
    let input = CreateInbox {
        account_id: access.account.id,
        name: sent.name.clone(),
        channel_type,
        phone_number: sent.phone(),
        provider_config: config,
        lock_to_single_conversation: sent.lock_to_single_conversation.is_some(),
    };
    match ferry.create_inbox(input, Some(access.user().id)).await {
        Ok(inbox) => Ok(Redirect::to(&format!(
            "/app/accounts/{}/inboxes?created={}",
            access.account.id, inbox.id
        ))
        .into_response()),
        Err(e) => Ok(blank.refused(&sent, refusal(e)?)),
    }
}

async fn edit_page(
    State(ferry): State<Ferry>,
    access: AccountUser,
    Path((_, inbox_id)): Path<(i64, i64)>,
) -> WebResult<Response> {
    access.require_admin("edit inboxes")?;
    let inbox = ferry.store.get_inbox(access.account.id, inbox_id).await?;
    Ok(html(&InboxForm::of(&ferry, &access, &inbox)?))
}

async fn update(
    State(ferry): State<Ferry>,
    access: AccountUser,
    Path((_, inbox_id)): Path<(i64, i64)>,
    form: CsrfForm<FormFields>,
) -> WebResult<Response> {
    access.authorize_post(form.token.as_deref(), "edit inboxes")?;
    let inbox = ferry.store.get_inbox(access.account.id, inbox_id).await?;
    let sent = form.data;
    let shown = InboxForm::of(&ferry, &access, &inbox)?;
    let config = match sent.settings(&current_config(&ferry, &inbox)?) {
        Ok(c) => c,
        Err(message) => return Ok(shown.refused(&sent, message)),
    };
    let lock = sent.lock_to_single_conversation.is_some();
    let mut input = UpdateInbox {
        name: Some(sent.name.clone()).filter(|n| *n != inbox.name),
        phone_number: Some(sent.phone()).filter(|p| *p != inbox.phone_number),
        // An emptied settings object is no settings.
        provider_config: config
            .map(|c| Some(Value::Object(c)).filter(|v| v != &Value::Object(Map::new()))),
        lock_to_single_conversation: Some(lock).filter(|l| *l != inbox.lock_to_single_conversation),
        changed_fields: Vec::new(),
    };
    for (changed, field) in [
        (input.name.is_some(), "name"),
        (input.phone_number.is_some(), "phone_number"),
        (input.provider_config.is_some(), "provider_config"),
        (
            input.lock_to_single_conversation.is_some(),
            "lock_to_single_conversation",
        ),
    ] {
        if changed {
            input.changed_fields.push(field);
        }
    }
    let to = format!(
        "/app/accounts/{}/inboxes?updated={inbox_id}",
        access.account.id
    );
    if input.changed_fields.is_empty() {
        return Ok(Redirect::to(&to).into_response());
    }
    match ferry
        .update_inbox(access.account.id, inbox_id, input, Some(access.user().id))
        .await
    {
        Ok(_) => Ok(Redirect::to(&to).into_response()),
        Err(e) => Ok(shown.refused(&sent, refusal(e)?)),
    }
}
