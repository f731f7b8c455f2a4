//! The application context and the store's administrative operations, shared by the HTTP API, the CLI and the
//! demo. Validation lives here so every adapter refuses the same input the same way.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::attachments::AttachmentStore;
use crate::config::Config;
use crate::domain::{ApiToken, ChannelType, Role, WhatsAppIdentity};
use crate::password;
use crate::secrets::{Cipher, SecretKey, SecretsError};
use crate::store::{
    self, Account, Inbox, InboxPatch, NewAccount, NewAuditEvent, NewInbox, NewUser, Store,
    StoreError, User,
};
use crate::webhooks::group_commit::GroupCommit;
use crate::webhooks::routing::TokenRoutes;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{field}: {message}")]
    Validation {
        field: &'static str,
        message: String,
    },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ServiceError::NotFound(what),
            StoreError::Secrets(s) => ServiceError::Secrets(s),
            other => ServiceError::Store(other),
        }
    }
}

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// Explains a unique-constraint refusal in the caller's terms.
fn on_conflict(message: &'static str) -> impl FnOnce(StoreError) -> ServiceError {
    move |e| match e {
        StoreError::Conflict { .. } => ServiceError::Conflict(message.into()),
        other => other.into(),
    }
}

pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> ServiceError {
    ServiceError::Validation {
        field,
        message: message.into(),
    }
}

/// Everything a request, a CLI command or a job needs. Cheap to clone.
#[derive(Clone)]
pub struct Ferry {
    pub store: Arc<dyn Store>,
    pub cipher: Cipher,
    pub attachments: AttachmentStore,
    pub config: Arc<Config>,
    pub token_routes: Arc<TokenRoutes>,
    /// Inbound webhook messages are stored through here: concurrent deliveries share a transaction.
    pub group_commit: Arc<GroupCommit>,
    /// The legacy system account imports read (README: "Account import"); None when none is configured.
    pub legacy: Option<Arc<dyn crate::account_import::LegacySource>>,
    /// The memory webhook bodies may hold at once (`FERRY_WEBHOOK_BODY_MEMORY_BYTES`).
    pub webhook_bodies: crate::webhooks::body::BodyBudget,
    /// Requests to provider APIs (media downloads, Evolution calls), under `FERRY_MEDIA_ALLOWED_URLS`.
    pub outbound: Arc<crate::webhooks::outbound::Outbound>,
    /// The URL providers reach this installation at (README: "One public URL").
    pub public: crate::public_url::PublicUrl,
    /// Migrations' live progress, read once per interval however many streams follow them.
    pub progress: Arc<crate::inbox_migration::progress::ProgressHub>,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    // The cause is in the message, not a `#[source]` a cause chain would print twice.
    #[error("cannot open the database {url}: {cause}")]
    Store { url: String, cause: StoreError },
    #[error(transparent)]
    Redis(#[from] crate::webhooks::routing::RedisError),
    #[error(transparent)]
    Attachments(#[from] crate::attachments::AttachmentsError),
}

impl Ferry {
    /// Loads the secret key (creating the embedded one on first start), connects and migrates the database.
    pub async fn open(config: Config) -> Result<Self, OpenError> {
        // Before anything records a metric.
        crate::metrics::handle();
        let key = SecretKey::load_or_create(config.secret_key.as_deref(), &config.data_dir)?;
        let url = config.effective_database_url();
        let store = store::connect(&url)
            .await
            .map_err(|cause| OpenError::Store {
                url: crate::config::redact_url(&url),
                cause,
            })?;
        let public = crate::public_url::PublicUrl::load(&config, store.as_ref())
            .await
            .map_err(|cause| OpenError::Store {
                url: crate::config::redact_url(&url),
                cause,
            })?;
        // Bounded (100k tokens ≈ tens of MB) and short-lived: without Redis, the TTL is how long a change made on
        // another node can go unseen.
        let ttl = std::time::Duration::from_secs(config.route_cache_seconds.max(1));
        let routes = TokenRoutes::new(100_000, ttl);
        let token_routes = match &config.redis_url {
            Some(url) => routes.with_redis(url, &config.redis_prefix).await?,
            None => Arc::new(routes),
        };
        // SQLite takes one writer at a time; PostgreSQL commits batches in parallel.
        let writers = match store.backend() {
            store::Backend::Sqlite => 1,
            // Two overlap one batch's round trips with the next one's; more only split batches smaller.
            store::Backend::Postgres => 2,
        };
        let group_commit = Arc::new(GroupCommit::start(store.clone(), writers, 256));
        let legacy = crate::account_import::open_source(&config).await;
        let attachments = AttachmentStore::from_config(&config)?;
        let webhook_bodies = crate::webhooks::body::BodyBudget::new(
            config.webhook_body_memory_bytes,
            config.webhook_max_body_bytes,
        );
        let outbound = Arc::new(crate::webhooks::outbound::Outbound::new(&config));
        Ok(Self {
            public,
            progress: Default::default(),
            legacy,
            webhook_bodies,
            outbound,
            group_commit,
            store,
            cipher: Cipher::new(key),
            attachments,
            config: Arc::new(config),
            token_routes,
        })
    }

    /// The installation's public URL, without a trailing slash: every webhook address starts with it.
    pub fn public_url(&self) -> String {
        self.public.get()
    }

    pub async fn audit(
        &self,
        account_id: Option<i64>,
        user_id: Option<i64>,
        action: &str,
        subject: String,
        details: Value,
    ) {
        let event = NewAuditEvent {
            account_id,
            user_id,
            action: action.to_owned(),
            subject,
            details,
        };
        if let Err(e) = self.store.record_audit(&event).await {
            // The action itself succeeded; losing its audit line must be loud but not undo it.
            tracing::error!(error = %e, action, "failed to write audit event");
        }
    }

    pub async fn create_account(&self, name: &str, legacy_ref: Option<&str>) -> Result<Account> {
        let name = required_name("name", name)?;
        let legacy_ref = legacy_ref
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_owned);
        let account = self
            .store
            .create_account(&NewAccount { name, legacy_ref })
            .await
            .map_err(on_conflict("an account with this legacy_ref exists"))?;
        self.audit(
            Some(account.id),
            None,
            "account.created",
            format!("account:{}", account.id),
            json!({}),
        )
        .await;
        Ok(account)
    }

    pub async fn create_user(&self, new: CreateUser<'_>) -> Result<User> {
        self.store.get_account(new.account_id).await?;
        let email = new.email.trim().to_ascii_lowercase();
        if !looks_like_email(&email) {
            return Err(invalid("email", "is not an email address"));
        }
        let password_hash =
            password::hash(new.password).map_err(|e| invalid("password", e.to_string()))?;
        let name = match new.name {
            Some(n) => required_name("name", n)?,
            None => email.split('@').next().unwrap_or("user").to_owned(),
        };
        let user = self
            .store
            .create_user(&NewUser {
                name,
                email,
                password_hash,
                installation_admin: new.installation_admin,
            })
            .await
            .map_err(on_conflict("a user with this email exists"))?;
        self.store
            .set_account_role(new.account_id, user.id, new.role)
            .await?;
        let details = json!({"role": new.role, "installation_admin": new.installation_admin});
        self.audit(
            Some(new.account_id),
            None,
            "user.created",
            format!("user:{}", user.id),
            details,
        )
        .await;
        Ok(user)
    }

    pub async fn create_token(&self, email: &str, name: &str) -> Result<(User, ApiToken)> {
        let user = self
            .store
            .find_user_by_email(&email.trim().to_ascii_lowercase())
            .await?
            .ok_or(ServiceError::NotFound("user"))?;
        let token = ApiToken::generate();
        self.store
            .create_access_token(user.id, name, &token.hash(), &token.display_prefix())
            .await?;
        self.audit(
            None,
            Some(user.id),
            "token.created",
            format!("user:{}", user.id),
            json!({"name": name}),
        )
        .await;
        Ok((user, token))
    }

    /// The user a token belongs to, or None for an unknown token.
    pub async fn authenticate(&self, token: &ApiToken) -> Result<Option<User>> {
        Ok(self.store.user_by_token_hash(&token.hash()).await?)
    }

    pub async fn create_inbox(&self, input: CreateInbox, actor: Option<i64>) -> Result<Inbox> {
        self.store.get_account(input.account_id).await?;
        let name = required_name("name", &input.name)?;
        let phone_number = input
            .phone_number
            .as_deref()
            .map(normalize_phone)
            .transpose()?;
        let config = input
            .provider_config
            .map(validate_provider_config)
            .transpose()?;
        let new = NewInbox {
            account_id: input.account_id,
            name,
            channel_type: input.channel_type,
            phone_number,
            lock_to_single_conversation: input.lock_to_single_conversation,
        };
        let cipher = &self.cipher;
        let seal = config
            .as_ref()
            .map(|c| move |id: i64| cipher.encrypt_json(c, store::provider_config_binding(id)));
        let inbox = match &seal {
            Some(s) => self.store.create_inbox(&new, Some(s)).await?,
            None => self.store.create_inbox(&new, None).await?,
        };
        let details = json!({"channel_type": inbox.channel.as_str(), "name": inbox.name});
        self.audit(
            Some(inbox.account_id),
            actor,
            "inbox.created",
            format!("inbox:{}", inbox.id),
            details,
        )
        .await;
        Ok(inbox)
    }

    pub async fn update_inbox(
        &self,
        account_id: i64,
        inbox_id: i64,
        input: UpdateInbox,
        actor: Option<i64>,
    ) -> Result<Inbox> {
        let name = input
            .name
            .as_deref()
            .map(|n| required_name("name", n))
            .transpose()?;
        let phone_number = match input.phone_number {
            Some(Some(p)) => Some(Some(normalize_phone(&p)?)),
            Some(None) => Some(None),
            None => None,
        };
        let config = match input.provider_config {
            Some(Some(c)) => Some(Some(validate_provider_config(c)?)),
            other => other,
        };
        let patch = InboxPatch {
            name,
            phone_number,
            lock_to_single_conversation: input.lock_to_single_conversation,
            replace_provider_config: config.is_some(),
        };
        let cipher = &self.cipher;
        let sealed = config.flatten();
        let seal = sealed
            .as_ref()
            .map(|c| move |id: i64| cipher.encrypt_json(c, store::provider_config_binding(id)));
        let inbox = match &seal {
            Some(s) => {
                self.store
                    .update_inbox(account_id, inbox_id, &patch, Some(s))
                    .await?
            }
            None => {
                self.store
                    .update_inbox(account_id, inbox_id, &patch, None)
                    .await?
            }
        };
        let details = json!({"fields": input.changed_fields});
        self.audit(
            Some(account_id),
            actor,
            "inbox.updated",
            format!("inbox:{inbox_id}"),
            details,
        )
        .await;
        Ok(inbox)
    }

    /// The provider config with every value masked except its last four characters, for display.
    pub fn masked_provider_config(&self, inbox: &Inbox) -> Result<Option<Value>> {
        Ok(store::open_provider_config(&self.cipher, inbox)?.map(|c| mask_values(&c)))
    }
}

pub struct CreateUser<'a> {
    pub account_id: i64,
    pub name: Option<&'a str>,
    pub email: &'a str,
    pub password: &'a str,
    pub role: Role,
    pub installation_admin: bool,
}

pub struct CreateInbox {
    pub account_id: i64,
    pub name: String,
    pub channel_type: ChannelType,
    pub phone_number: Option<String>,
    pub provider_config: Option<Value>,
    pub lock_to_single_conversation: bool,
}

#[derive(Default)]
pub struct UpdateInbox {
    pub name: Option<String>,
    pub phone_number: Option<Option<String>>,
    pub provider_config: Option<Option<Value>>,
    pub lock_to_single_conversation: Option<bool>,
    pub changed_fields: Vec<&'static str>,
}

pub(crate) fn required_name(field: &'static str, name: &str) -> Result<String> {
    let name = name.trim();
    match name.chars().count() {
        0 => Err(invalid(field, "must not be empty")),
        n if n > 255 => Err(invalid(field, "must be at most 255 characters")),
        _ => Ok(name.to_owned()),
    }
}

pub(crate) fn looks_like_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && email.len() <= 254
        && !email.chars().any(char::is_whitespace)
}

/// An inbox number is stored as `+digits`.
fn normalize_phone(raw: &str) -> Result<String> {
    WhatsAppIdentity::parse(raw)
        .ok()
        .and_then(|id| id.e164())
        .ok_or_else(|| {
            invalid(
                "phone_number",
                format!("{raw:?} is not a phone number in international format"),
            )
        })
}

const MAX_CONFIG_BYTES: usize = 16 * 1024;

fn validate_provider_config(config: Value) -> Result<Value> {
    if !config.is_object() {
        return Err(invalid("provider_config", "must be a JSON object"));
    }
    if serde_json::to_vec(&config)
        .map(|v| v.len())
        .unwrap_or(usize::MAX)
        > MAX_CONFIG_BYTES
    {
        return Err(invalid(
            "provider_config",
            format!("must be at most {MAX_CONFIG_BYTES} bytes"),
        ));
    }
    Ok(config)
}

/// Keeps the shape and the last four characters of each string, so an administrator can tell which key is
/// configured without the API ever returning it.
pub fn mask_values(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), mask_values(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(mask_values).collect()),
        Value::String(s) => {
            let chars: Vec<char> = s.chars().collect();
            let tail: String = if chars.len() > 8 {
                chars[chars.len() - 4..].iter().collect()
            } else {
                String::new()
            };
            Value::String(format!("****{tail}"))
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_hides_every_string_but_a_short_tail() {
        let masked = mask_values(
            &json!({"api_key": "sk_live_1234567890abcd", "pin": "1234", "port": 8080, "n": [ "abc" ]}),
        );
        assert_eq!(
            masked,
            json!({"api_key": "****abcd", "pin": "****", "port": 8080, "n": ["****"]})
        );
    }

    #[test]
    fn phones_and_emails_are_validated() {
        assert_eq!(
            normalize_phone("+55 11 4002-8922").unwrap(),
            "+551140028922"
        );
        assert!(normalize_phone("call me").is_err());
        assert!(looks_like_email("ana@example.com"));
        assert!(
            !looks_like_email("ana@localhost")
                && !looks_like_email("@x.com")
                && !looks_like_email("a b@x.com")
        );
    }
}
