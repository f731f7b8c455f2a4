//! Integrations: one per provider connection of an inbox (README: "Integrations and webhook tokens"). The webhook token is 256 random bits
//! (`fwh_…`), stored as SHA-256 for routing and sealed for the administrator who pastes the URL into the
//! provider; provider secrets are sealed too. Reveal and rotation are audited.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use crate::domain::{ChannelType, WebhookToken};
use crate::secrets::RowBinding;
use crate::services::{Ferry, ServiceError};
use crate::store::{Integration, NewIntegration, TokenRoute};

type Result<T> = std::result::Result<T, ServiceError>;

/// A provider is named by the WhatsApp channel it delivers into (`evolution`, `whatsapp_cloud`, `dialog360`,
/// `twilio_whatsapp`): the channel types already spell them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Provider(ChannelType);

impl Provider {
    pub fn parse(s: &str) -> Result<Self> {
        ChannelType::parse(s)
            .ok()
            .filter(|c| c.is_whatsapp_like())
            .map(Self)
            .ok_or_else(|| {
                invalid(
                    "provider",
                    "must be one of evolution, whatsapp_cloud, dialog360, twilio_whatsapp",
                )
            })
    }

    pub fn as_str(self) -> &'static str {
        self.0.as_str()
    }

    /// The inbox channel this provider delivers into.
    pub fn channel(self) -> ChannelType {
        self.0
    }

    /// The route a provider posts to (README: "Receiving webhooks").
    /// The route of this provider for `t` (a token, or a masked one for display).
    fn webhook_path(self, t: &str) -> String {
        match self.0 {
            ChannelType::Evolution => format!("/webhooks/evolution/whatsapp/{t}"),
            ChannelType::TwilioWhatsapp => format!("/webhooks/twilio/{t}"),
            other => format!("/webhooks/{}/{t}", other.as_str()),
        }
    }

    /// Secrets without which this provider's webhooks cannot be verified.
    fn required_secrets(self) -> &'static [&'static str] {
        match self.0 {
            ChannelType::WhatsappCloud => &["app_secret", "verify_token"],
            ChannelType::TwilioWhatsapp => &["auth_token"],
            _ => &[],
        }
    }
}

/// Provider secrets, sealed at rest; only the ones a provider uses are set.
#[derive(Debug, Default, Clone)]
pub struct ProviderSecrets {
    pub app_secret: Option<String>,
    pub verify_token: Option<String>,
    pub auth_token: Option<String>,
    pub api_key: Option<String>,
    pub access_token: Option<String>,
}

impl ProviderSecrets {
    fn to_json(&self) -> Value {
        let mut out = serde_json::Map::new();
        for (name, value) in [
            ("app_secret", &self.app_secret),
            ("verify_token", &self.verify_token),
            ("auth_token", &self.auth_token),
            ("api_key", &self.api_key),
            ("access_token", &self.access_token),
        ] {
            if let Some(v) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
                out.insert(name.into(), Value::String(v.to_owned()));
            }
        }
        Value::Object(out)
    }
}

#[derive(Debug, Clone)]
pub struct CreateIntegration {
    pub account_id: i64,
    pub inbox_id: i64,
    pub provider: Provider,
    pub instance_name: Option<String>,
    pub phone_number_id: Option<String>,
    /// Where media is fetched from (kept in the integration's config): the Evolution API server, or another
    /// base URL than the provider's for the Graph API or 360dialog.
    pub api_url: Option<String>,
    pub secrets: ProviderSecrets,
}

/// An integration with its token in the clear: only right after create, rotate or an audited reveal.
#[derive(Debug)]
pub struct Issued {
    pub integration: Integration,
    pub token: WebhookToken,
    pub webhook_url: String,
}

/// An integration with its token and webhook URL: the answer to create, rotate and reveal.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct IssuedView {
    #[serde(flatten)]
    pub integration: IntegrationView,
    /// The secret webhook token, shown only in this answer.
    pub token: String,
    pub webhook_url: String,
}

impl Issued {
    pub fn view(&self) -> IssuedView {
        IssuedView {
            integration: IntegrationView::of(&self.integration),
            token: self.token.expose().to_owned(),
            webhook_url: self.webhook_url.clone(),
        }
    }

    pub fn to_json(&self) -> Value {
        json!(self.view())
    }
}

pub const DEFAULT_OVERLAP: Duration = Duration::hours(24);

fn invalid(field: &'static str, message: impl Into<String>) -> ServiceError {
    ServiceError::Validation {
        field,
        message: message.into(),
    }
}

fn token_binding(id: i64) -> RowBinding<'static> {
    RowBinding {
        table: "integrations",
        column: "token_ciphertext",
        row_id: id,
    }
}

fn secrets_binding(id: i64) -> RowBinding<'static> {
    RowBinding {
        table: "integrations",
        column: "secrets_ciphertext",
        row_id: id,
    }
}

/// Seals `token` bound to the integration row it is stored in.
fn sealer<'a>(
    ferry: &'a Ferry,
    token: &WebhookToken,
) -> impl Fn(i64) -> Vec<u8> + Send + Sync + 'a {
    let plain = zeroize::Zeroizing::new(token.expose().to_owned());
    move |id| ferry.cipher.encrypt(plain.as_bytes(), token_binding(id))
}

pub fn webhook_url(ferry: &Ferry, provider: Provider, token: &WebhookToken) -> String {
    format!(
        "{}{}",
        ferry.public_url().trim_end_matches('/'),
        provider.webhook_path(token.expose())
    )
}

/// The webhook URL with only the token's first characters: what a listing may show.
pub fn masked_webhook_url(ferry: &Ferry, i: &Integration) -> Option<String> {
    let provider = Provider::parse(&i.provider).ok()?;
    let prefix = i.token_prefix.as_deref()?;
    Some(format!(
        "{}{}",
        ferry.public_url().trim_end_matches('/'),
        provider.webhook_path(&format!("{prefix}…"))
    ))
}

/// An integration as the API shows it: never a secret, only the token's first characters.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct IntegrationView {
    pub id: i64,
    pub account_id: i64,
    pub inbox_id: Option<i64>,
    /// `evolution`, `whatsapp_cloud`, `dialog360` or `twilio_whatsapp`.
    pub provider: String,
    pub instance_name: Option<String>,
    pub phone_number_id: Option<String>,
    pub api_url: Option<String>,
    pub token_prefix: Option<String>,
    /// While set and in the future, the token before the last rotation still routes.
    pub previous_token_expires_at: Option<chrono::DateTime<chrono::Utc>>,
    pub status: crate::store::IntegrationStatus,
    pub enabled: bool,
    pub secrets_set: bool,
    /// Webhooks that arrived by the legacy instance-name route.
    pub legacy_hits: i64,
    pub last_legacy_hit_at: Option<chrono::DateTime<chrono::Utc>>,
    pub cutover_state: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl IntegrationView {
    pub fn of(i: &Integration) -> Self {
        Self {
            id: i.id,
            account_id: i.account_id,
            inbox_id: i.inbox_id,
            provider: i.provider.clone(),
            instance_name: i.instance_name.clone(),
            phone_number_id: i.phone_number_id.clone(),
            api_url: i
                .config
                .get("api_url")
                .and_then(Value::as_str)
                .map(str::to_owned),
            token_prefix: i.token_prefix.clone(),
            previous_token_expires_at: i.previous_token_expires_at,
            status: i.status,
            enabled: i.enabled,
            secrets_set: i.secrets_ciphertext.is_some(),
            legacy_hits: i.legacy_hits,
            last_legacy_hit_at: i.last_legacy_hit_at,
            cutover_state: i.cutover_state.clone(),
            created_at: i.created_at,
            updated_at: i.updated_at,
        }
    }
}

pub fn integration_json(i: &Integration) -> Value {
    json!(IntegrationView::of(i))
}

pub async fn create(
    ferry: &Ferry,
    input: CreateIntegration,
    user_id: Option<i64>,
) -> Result<Issued> {
    let inbox = ferry
        .store
        .get_inbox(input.account_id, input.inbox_id)
        .await?;
    if inbox.channel != input.provider.channel() {
        return Err(invalid(
            "inbox_id",
            format!(
                "a {} integration delivers into a {} inbox; inbox {} is a {} inbox",
                input.provider.as_str(),
                input.provider.channel().label(),
                inbox.id,
                inbox.channel.label()
            ),
        ));
    }
    let secrets = input.secrets.to_json();
    for name in input.provider.required_secrets() {
        if secrets.get(*name).is_none() {
            return Err(invalid(
                "secrets",
                format!(
                    "{} needs {name} to verify its webhooks",
                    input.provider.as_str()
                ),
            ));
        }
    }
    let instance_name = clean(input.instance_name);
    if input.provider.channel() == ChannelType::Evolution && instance_name.is_none() {
        return Err(invalid(
            "instance_name",
            "an Evolution integration names its instance",
        ));
    }
    let api_url = clean(input.api_url);
    if let Some(url) = &api_url
        && !url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
    {
        return Err(invalid("api_url", "write an http:// or https:// URL"));
    }
    let token = WebhookToken::generate();
    let seal_token = sealer(ferry, &token);
    let cipher = &ferry.cipher;
    let seal_secrets = |id: i64| cipher.encrypt_json(&secrets, secrets_binding(id));
    let has_secrets = secrets.as_object().is_some_and(|o| !o.is_empty());
    let new = NewIntegration {
        account_id: input.account_id,
        inbox_id: inbox.id,
        provider: input.provider.as_str(),
        instance_name,
        phone_number_id: clean(input.phone_number_id),
        config: match api_url {
            Some(url) => json!({"api_url": url.trim_end_matches('/')}),
            None => json!({}),
        },
    };
    let integration = ferry
        .store
        .create_integration(
            &new,
            &token.hash(),
            &token.display_prefix(),
            &seal_token,
            has_secrets.then_some(&seal_secrets as _),
        )
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Conflict { .. } => ServiceError::Conflict(
                "an integration of this provider already has this instance name or phone number id"
                    .into(),
            ),
            other => other.into(),
        })?;
    ferry
        .audit(
            Some(input.account_id),
            user_id,
            "integration.create",
            format!("integration:{}", integration.id),
            json!({"provider": integration.provider, "inbox_id": integration.inbox_id}),
        )
        .await;
    ferry.token_routes.invalidate_token(&token).await;
    // Its business number may have been asked for (and cached as nobody's) before.
    ferry
        .token_routes
        .invalidate_integration(integration.id)
        .await;
    issued(ferry, integration, token)
}

/// The answer to create, reveal and rotate: the integration with its token and URL in the clear.
fn issued(ferry: &Ferry, integration: Integration, token: WebhookToken) -> Result<Issued> {
    let provider = Provider::parse(&integration.provider)?;
    let webhook_url = webhook_url(ferry, provider, &token);
    Ok(Issued {
        integration,
        token,
        webhook_url,
    })
}

/// The token in the clear, for the administrator who must paste the URL into the provider. Audited.
pub async fn reveal(
    ferry: &Ferry,
    account_id: i64,
    id: i64,
    user_id: Option<i64>,
) -> Result<Issued> {
    let integration = ferry.store.get_integration(account_id, id).await?;
    let sealed = integration
        .token_ciphertext
        .as_deref()
        .ok_or_else(|| ServiceError::Conflict("this integration has no token yet".into()))?;
    let plain = ferry.cipher.decrypt(sealed, token_binding(id))?;
    let token = std::str::from_utf8(&plain)
        .ok()
        .and_then(|t| WebhookToken::parse(t).ok())
        .ok_or_else(|| ServiceError::Conflict("the stored token is not a webhook token".into()))?;
    ferry
        .audit(
            Some(account_id),
            user_id,
            "integration.reveal",
            format!("integration:{id}"),
            json!({}),
        )
        .await;
    issued(ferry, integration, token)
}

/// A new token now; the current one keeps routing for `overlap` so the provider can be switched over. Audited.
pub async fn rotate(
    ferry: &Ferry,
    account_id: i64,
    id: i64,
    overlap: Duration,
    user_id: Option<i64>,
) -> Result<Issued> {
    if overlap < Duration::zero() || overlap > Duration::days(30) {
        return Err(invalid("overlap", "must be between 0 and 30 days"));
    }
    let token = WebhookToken::generate();
    let seal_token = sealer(ferry, &token);
    let previous_expires_at: DateTime<Utc> = Utc::now() + overlap;
    let integration = ferry
        .store
        .rotate_integration_token(
            account_id,
            id,
            &token.hash(),
            &token.display_prefix(),
            &seal_token,
            previous_expires_at,
        )
        .await?;
    ferry.token_routes.invalidate_integration(id).await;
    ferry.token_routes.invalidate_token(&token).await;
    ferry
        .audit(
            Some(account_id),
            user_id,
            "integration.rotate",
            format!("integration:{id}"),
            json!({"previous_token_expires_at": previous_expires_at}),
        )
        .await;
    issued(ferry, integration, token)
}

pub async fn set_enabled(
    ferry: &Ferry,
    account_id: i64,
    id: i64,
    enabled: bool,
    user_id: Option<i64>,
) -> Result<Integration> {
    let integration = ferry
        .store
        .set_integration_enabled(account_id, id, enabled)
        .await?;
    ferry.token_routes.invalidate_integration(id).await;
    ferry
        .audit(
            Some(account_id),
            user_id,
            if enabled {
                "integration.enable"
            } else {
                "integration.disable"
            },
            format!("integration:{id}"),
            json!({}),
        )
        .await;
    Ok(integration)
}

/// Every provider secret of an integration, opened in memory (`{}` when it has none).
pub fn integration_secrets(ferry: &Ferry, i: &Integration) -> Result<Value> {
    match i.secrets_ciphertext.as_deref() {
        Some(sealed) => Ok(ferry.cipher.decrypt_json(sealed, secrets_binding(i.id))?),
        None => Ok(Value::Object(Default::default())),
    }
}

/// One provider secret of a routed integration (an app secret, a verify token…), opened in memory.
pub fn route_secret(ferry: &Ferry, route: &TokenRoute, name: &str) -> Result<Option<String>> {
    let (Some(sealed), Some(id)) = (route.secrets_ciphertext.as_deref(), route.integration_id)
    else {
        return Ok(None);
    };
    let secrets = ferry.cipher.decrypt_json(sealed, secrets_binding(id))?;
    Ok(secrets.get(name).and_then(Value::as_str).map(str::to_owned))
}

/// `24h`, `30m`, `90s`, `2d` (CLI `--overlap`).
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = digits
        .parse()
        .map_err(|_| invalid("overlap", "write a number and a unit: 24h, 30m, 90s or 2d"))?;
    let duration = match unit {
        "s" => Duration::try_seconds(n),
        "m" => Duration::try_minutes(n),
        "h" | "" => Duration::try_hours(n),
        "d" => Duration::try_days(n),
        _ => {
            return Err(invalid(
                "overlap",
                "write a number and a unit: 24h, 30m, 90s or 2d",
            ));
        }
    };
    // Out of chrono's range is certainly more than the 30 days `rotate` allows.
    duration.ok_or_else(|| invalid("overlap", "must be between 0 and 30 days"))
}

fn clean(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    #[test]
    fn overlaps_too_large_for_a_duration_are_refused_not_a_panic() {
        assert!(parse_duration("99999999999999999d").is_err());
        assert!(parse_duration("9223372036854775807s").is_err());
        assert_eq!(parse_duration("2d").unwrap(), Duration::days(2));
    }

    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("24h").unwrap(), Duration::hours(24));
        assert_eq!(parse_duration("30m").unwrap(), Duration::minutes(30));
        assert_eq!(parse_duration("0s").unwrap(), Duration::zero());
        assert_eq!(parse_duration("2d").unwrap(), Duration::days(2));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5w").is_err());
    }

    #[test]
    fn providers_round_trip_and_map_to_their_channel() {
        let providers: Vec<Provider> = [
            "evolution",
            "whatsapp_cloud",
            "dialog360",
            "twilio_whatsapp",
        ]
        .into_iter()
        .map(|p| Provider::parse(p).unwrap())
        .collect();
        for p in &providers {
            assert_eq!(Provider::parse(p.as_str()).unwrap(), *p);
            assert!(p.channel().is_whatsapp_like());
        }
        assert!(Provider::parse("telegram").is_err());
        assert!(
            Provider::parse("web_widget").is_err(),
            "not a WhatsApp channel"
        );
        let token = WebhookToken::generate();
        let t = token.expose();
        let paths: Vec<String> = providers
            .iter()
            .map(|p| p.webhook_path(token.expose()))
            .collect();
        assert_eq!(
            paths,
            [
                format!("/webhooks/evolution/whatsapp/{t}"),
                format!("/webhooks/whatsapp_cloud/{t}"),
                format!("/webhooks/dialog360/{t}"),
                format!("/webhooks/twilio/{t}"),
            ]
        );
    }
}
