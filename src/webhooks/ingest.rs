//! From a parsed inbound event to stored rows: the message in the integration's inbox, de-duplicated on the
//! provider's stable id, or a status raised on the message it names.

use serde_json::json;

use super::event::{InboundEvent, InboundMessage, MessageChange, MessageKind};
use crate::domain::{ChannelType, WhatsAppIdentity};
use crate::services::Ferry;
use crate::store::{IngestMessage, Ingested, Rekey, StoreError, TokenRoute};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestOutcome {
    Stored {
        message_id: i64,
        conversation_id: i64,
    },
    Duplicate {
        message_id: i64,
    },
    StatusRaised(bool),
    /// An edit, deletion or reaction recorded on its target (false: the target is not stored here).
    Changed(bool),
    Ignored(String),
}

/// Where an event for the business number `phone_number_id` goes, when it arrived at `route`'s URL: that
/// integration when the number is its own (or the body names none), else the enabled integration of the same
/// provider and account that owns the number, from the route cache; None when nobody does (unless the receiving
/// integration has no number of its own).
pub async fn route_of_number(
    ferry: &Ferry,
    route: &TokenRoute,
    phone_number_id: Option<&str>,
) -> Result<Option<TokenRoute>, StoreError> {
    let Some(number) = phone_number_id else {
        return Ok(Some(route.clone()));
    };
    if route.phone_number_id.as_deref() == Some(number) {
        return Ok(Some(route.clone()));
    }
    let owner = ferry
        .token_routes
        .resolve_number(
            ferry.store.as_ref(),
            route.account_id,
            &route.provider,
            number,
        )
        .await?;
    Ok(match owner {
        Some(owner) => Some(owner).filter(|o| o.enabled && o.inbox_id.is_some()),
        // An integration created without its number takes what nobody else owns, as it always did: refusing
        // it would drop all of its traffic.
        None if route.phone_number_id.is_none() => {
            tracing::warn!(
                integration = route.integration_id,
                phone_number_id = number,
                "integration without phone_number_id: give it one so one URL can serve several numbers"
            );
            Some(route.clone())
        }
        None => None,
    })
}

pub async fn ingest(
    ferry: &Ferry,
    route: &TokenRoute,
    event: InboundEvent,
) -> Result<IngestOutcome, StoreError> {
    let inbox_id = route
        .inbox_id
        .ok_or(StoreError::NotFound("inbox of the integration"))?;
    match super::event::storable(event) {
        InboundEvent::Ignored { reason } => {
            tracing::info!(integration = route.integration_id, %reason, "webhook event not stored");
            Ok(IngestOutcome::Ignored(reason))
        }
        InboundEvent::Status {
            provider_message_id,
            status,
        } => Ok(IngestOutcome::StatusRaised(
            ferry
                .store
                .raise_message_status(
                    route.account_id,
                    inbox_id,
                    &provider_message_id,
                    status.as_str(),
                )
                .await?,
        )),
        InboundEvent::Change {
            target_message_id,
            change,
        } => Ok(IngestOutcome::Changed(
            record_change(ferry, route, inbox_id, &target_message_id, &change).await?,
        )),
        InboundEvent::Message(m)
            if m.kind == MessageKind::Reaction && m.target_message_id.is_some() =>
        {
            let change = MessageChange::Reacted {
                emoji: m.content.clone().filter(|e| !e.is_empty()),
                by_business: m.outgoing,
            };
            let target = m.target_message_id.as_deref().unwrap_or_default();
            if record_change(ferry, route, inbox_id, target, &change).await? {
                return Ok(IngestOutcome::Changed(true));
            }
            // A reaction to a message ferry does not hold is kept as a message of its own.
            store_message(ferry, route, inbox_id, m).await
        }
        InboundEvent::NumberChanged {
            from,
            to,
            mut notice,
        } => {
            rekey(ferry, route, inbox_id, &from, &to).await?;
            // The notice belongs to the customer's conversation, under their new number.
            notice.contact = to;
            store_message(ferry, route, inbox_id, notice).await
        }
        InboundEvent::Message(m) => store_message(ferry, route, inbox_id, m).await,
    }
}

/// The customer's contact_inbox follows them to their new number (when the new number has none yet).
async fn rekey(
    ferry: &Ferry,
    route: &TokenRoute,
    inbox_id: i64,
    from: &WhatsAppIdentity,
    to: &WhatsAppIdentity,
) -> Result<bool, StoreError> {
    let channel = channel_of(route)?;
    let fold = route.merge_brazil_ninth_digit;
    let rekey = Rekey {
        wa_identity: to.canonical(),
        wa_key: to.match_key(true),
        source_id: to.to_source_id(channel).unwrap_or_else(|_| to.canonical()),
        phone_number: to.e164(),
    };
    let from_key = fold.then(|| from.match_key(true));
    let moved = ferry
        .store
        .rekey_contact_inbox(inbox_id, &from.canonical(), from_key.as_deref(), &rekey)
        .await?;
    tracing::info!(integration = route.integration_id, from = %from, to = %to, moved, "customer changed number");
    Ok(moved)
}

fn channel_of(route: &TokenRoute) -> Result<ChannelType, StoreError> {
    route
        .channel_type
        .as_deref()
        .and_then(|c| c.parse::<ChannelType>().ok())
        .ok_or(StoreError::NotFound("inbox of the integration"))
}

/// Applies an edit, a deletion or a reaction to the stored message it names.
async fn record_change(
    ferry: &Ferry,
    route: &TokenRoute,
    inbox_id: i64,
    target: &str,
    change: &MessageChange,
) -> Result<bool, StoreError> {
    let now = chrono::Utc::now().to_rfc3339();
    let rewrite = |content: Option<String>, mut attributes: serde_json::Value| {
        if !attributes.is_object() {
            attributes = json!({});
        }
        match change {
            MessageChange::Edited { content: new } => {
                attributes["edited_at"] = json!(now);
                attributes["previous_content"] = json!(content);
                (new.clone().or(content), attributes)
            }
            MessageChange::Deleted => {
                attributes["deleted"] = json!(true);
                attributes["deleted_at"] = json!(now);
                (None, attributes)
            }
            MessageChange::Reacted { emoji, by_business } => {
                let by = if *by_business { "business" } else { "customer" };
                if !attributes["reactions"].is_object() {
                    attributes["reactions"] = json!({});
                }
                match emoji {
                    Some(emoji) => attributes["reactions"][by] = json!(emoji),
                    None => {
                        if let Some(reactions) = attributes["reactions"].as_object_mut() {
                            reactions.remove(by);
                        }
                    }
                }
                (content, attributes)
            }
        }
    };
    ferry
        .store
        .rewrite_message(route.account_id, inbox_id, target, &rewrite)
        .await
}

async fn store_message(
    ferry: &Ferry,
    route: &TokenRoute,
    inbox_id: i64,
    m: InboundMessage,
) -> Result<IngestOutcome, StoreError> {
    let channel = channel_of(route)?;
    let mut row = to_row(route, inbox_id, channel, &m);
    if let Some(media) = &m.media {
        row.attachment = Some(super::media::attachment(ferry, route, m.kind, media).await);
    }
    // Answered once its batch committed (or found to be a re-delivery).
    Ok(match ferry.group_commit.ingest(row).await? {
        Ingested::Stored {
            message_id,
            conversation_id,
        } => IngestOutcome::Stored {
            message_id,
            conversation_id,
        },
        Ingested::Duplicate { message_id } => IngestOutcome::Duplicate { message_id },
    })
}

fn to_row(
    route: &TokenRoute,
    inbox_id: i64,
    channel: ChannelType,
    m: &InboundMessage,
) -> IngestMessage {
    let content_type = match m.kind {
        MessageKind::Text => "text",
        MessageKind::Image => "image",
        MessageKind::Audio => "audio",
        MessageKind::Video => "video",
        MessageKind::Document => "file",
        MessageKind::Sticker => "sticker",
        MessageKind::Location => "location",
        MessageKind::Contact => "contact",
        MessageKind::Reaction => "reaction",
        MessageKind::Activity => "text",
        MessageKind::Other => "other",
    };
    let mut attributes = m.attributes.clone();
    if let Some(target) = &m.target_message_id {
        // A reaction kept as a message of its own names the message it reacts to.
        attributes.insert("in_reply_to".into(), json!(target));
    }
    IngestMessage {
        account_id: route.account_id,
        inbox_id,
        wa_identity: m.contact.canonical(),
        wa_key: m.contact.match_key(true),
        by_key: route.merge_brazil_ninth_digit,
        alias: m.alias.as_ref().map(WhatsAppIdentity::canonical),
        source_id: m
            .contact
            .to_source_id(channel)
            .unwrap_or_else(|_| m.contact.canonical()),
        contact_name: m.contact_name.clone(),
        phone_number: m.contact.e164(),
        // One provider id names one message of one chat of one connection (the integration's own inbox, the
        // same whether it arrives by token or legacy route, before or after a redirect), in either direction.
        dedupe_key: format!(
            "{}:{}:{}:{}:{}:{}",
            route.account_id,
            route.provider,
            route.origin_inbox_id.unwrap_or(inbox_id),
            m.contact.canonical(),
            if m.outgoing { "out" } else { "in" },
            m.provider_message_id
        ),
        provider_message_id: m.provider_message_id.clone(),
        message_type: match (m.kind, m.outgoing) {
            (MessageKind::Activity, _) => "activity",
            (_, true) => "outgoing",
            (_, false) => "incoming",
        },
        content: m.content.clone(),
        content_type,
        content_attributes: serde_json::Value::Object(attributes),
        created_at: m.sent_at,
        attachment: None,
    }
}
