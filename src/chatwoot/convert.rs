//! `ferry chatwoot convert-provider`: a WhatsApp inbox switched between 360dialog and Cloud in place. Chatwoot
//! refuses a second `channel_whatsapp` on the same number (its phone number is unique installation-wide), so a
//! business moving its number from 360dialog to Meta's Cloud API cannot create the new inbox first: the channel
//! row's `provider` and `provider_config` are rewritten instead, journaled and revertible like a move. Both
//! providers name a person by the same wa_id digits, so the inbox's contact_inboxes keep their `source_id`s.

use serde::Serialize;
use serde_json::json;

use super::bookkeeping::{self, Migration, MigrationKind, NewMigration, Status};
use super::journal::Update;
use super::run::{self, RunOptions};
use super::{Chatwoot, ChatwootError};

/// A `channel_whatsapp.provider`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// Meta's WhatsApp Cloud API.
    #[value(name = "whatsapp_cloud")]
    WhatsappCloud,
    /// 360dialog (Chatwoot calls it `default`).
    #[value(name = "default")]
    Default,
}

impl Provider {
    fn as_str(self) -> &'static str {
        match self {
            Provider::WhatsappCloud => "whatsapp_cloud",
            Provider::Default => "default",
        }
    }
}

pub struct Conversion {
    pub inbox: i64,
    pub to: Provider,
    pub api_key: String,
    pub phone_number_id: Option<String>,
    pub business_account_id: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Converted {
    pub migration: Migration,
    /// For Cloud: the verify token to paste into Meta's webhook settings.
    pub webhook_verify_token: Option<String>,
}

impl Chatwoot {
    pub async fn convert_provider(
        &self,
        c: &Conversion,
        opts: &RunOptions<'_>,
    ) -> Result<Converted, ChatwootError> {
        let (account, channel, from, config) = self.whatsapp_channel(c.inbox).await?;
        if from == c.to.as_str() {
            return Err(ChatwootError::Refused(format!(
                "inbox {} already uses provider {from}",
                c.inbox
            )));
        }
        let config = provider_config(c, &config)?;
        let token = config["webhook_verify_token"].as_str().map(str::to_owned);
        let new = NewMigration {
            kind: MigrationKind::ConvertProvider,
            account_id: account,
            source_inbox_id: c.inbox,
            destination_inbox_id: None,
            params: json!({"from": from, "to": c.to.as_str()}),
            batch_rows: 1,
            conversations_total: 0,
            messages_total: 0,
            owner: &opts.owner,
            lease_secs: opts.lease_secs,
        };
        let m = bookkeeping::create(&self.pool, &new).await?;
        let _lock = run::lock_inbox(&self.pool, c.inbox).await?;
        let (status, error) = match self.rewrite_channel(m.id, channel, c.to, config).await {
            Ok(()) => (Status::Completed, None),
            Err(e) => (Status::Failed, Some(e)),
        };
        let message = error.as_ref().map(|e| e.to_string());
        bookkeeping::finish(&self.pool, m.id, &opts.owner, status, message.as_deref()).await?;
        if let Some(e) = error {
            return Err(e);
        }
        Ok(Converted {
            migration: bookkeeping::get(&self.pool, m.id).await?,
            webhook_verify_token: token,
        })
    }

    /// The channel row rewritten, journaled, in one transaction.
    async fn rewrite_channel(
        &self,
        migration: i64,
        channel: i64,
        to: Provider,
        config: serde_json::Value,
    ) -> Result<(), ChatwootError> {
        let mut tx = self.pool.begin().await?;
        let to = to.as_str();
        Update::new("channel_whatsapp", &["provider", "provider_config"])
            .rows("t.id = $2")
            .set("provider = $3, provider_config = $4")
            .binds(move |q| q.bind(channel).bind(to).bind(config))
            .run(&mut tx, migration)
            .await?;
        sqlx::query("UPDATE ferry.migrations SET batches = 1 WHERE id = $1")
            .bind(migration)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The account, channel_whatsapp id, provider and provider_config of a WhatsApp inbox.
    async fn whatsapp_channel(
        &self,
        inbox: i64,
    ) -> Result<(i64, i64, String, serde_json::Value), ChatwootError> {
        let row: Option<ChannelRow> =
            sqlx::query_as(
                "SELECT i.account_id::bigint, i.channel_type, w.id::bigint, w.provider, w.provider_config \
                 FROM inboxes i LEFT JOIN channel_whatsapp w \
                   ON i.channel_type = 'Channel::Whatsapp' AND w.id = i.channel_id WHERE i.id = $1",
            )
            .bind(inbox)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            None => Err(ChatwootError::Refused(format!(
                "no inbox {inbox} in this Chatwoot"
            ))),
            Some(ChannelRow(account, _, Some(channel), provider, config)) => Ok((
                account,
                channel,
                provider.unwrap_or_else(|| "default".into()),
                config.unwrap_or_else(|| json!({})),
            )),
            Some(ChannelRow(_, channel_type, None, ..)) => Err(ChatwootError::Refused(format!(
                "inbox {inbox} is a {} inbox: only a WhatsApp (Channel::Whatsapp) inbox changes provider in place",
                channel_type.unwrap_or_else(|| "channel-less".into())
            ))),
        }
    }
}

/// An inbox's account and channel type, and its channel_whatsapp id, provider and provider_config if it has one.
#[derive(sqlx::FromRow)]
struct ChannelRow(
    i64,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<serde_json::Value>,
);

/// The provider_config Chatwoot reads for the new provider. A Cloud channel keeps the verify token it had, or
/// gets a new one (as Chatwoot generates: 16 random bytes, hex).
fn provider_config(
    c: &Conversion,
    old: &serde_json::Value,
) -> Result<serde_json::Value, ChatwootError> {
    if c.api_key.trim().is_empty() {
        return Err(ChatwootError::Refused("--api-key is empty".into()));
    }
    match c.to {
        Provider::Default => Ok(json!({"api_key": c.api_key})),
        Provider::WhatsappCloud => {
            let (Some(phone_number_id), Some(business_account_id)) = (
                c.phone_number_id.as_deref(),
                c.business_account_id.as_deref(),
            ) else {
                return Err(ChatwootError::Refused(
                    "--to whatsapp_cloud needs --phone-number-id and --business-account-id".into(),
                ));
            };
            let token = old["webhook_verify_token"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| {
                    rand::random::<[u8; 16]>()
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect()
                });
            Ok(json!({
                "api_key": c.api_key,
                "phone_number_id": phone_number_id,
                "business_account_id": business_account_id,
                "webhook_verify_token": token,
            }))
        }
    }
}
