//! What any provider's webhook becomes once parsed: one internal event, the same for every provider, so that
//! ingestion (contact, conversation, de-duplicated message) is written once.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::WhatsAppIdentity;

#[derive(Debug, Clone, PartialEq)]
pub enum InboundEvent {
    Message(InboundMessage),
    /// A delivery receipt for a message ferry already holds (never moves a status backwards).
    Status {
        provider_message_id: String,
        status: MessageStatus,
    },
    /// An edit or a deletion, recorded on the message it names (reactions are messages with a target, recorded
    /// the same way when the target is stored).
    Change {
        target_message_id: String,
        change: MessageChange,
    },
    /// The customer moved to another phone number (Cloud `system` `user_changed_number`): their contact is
    /// re-keyed to the new number and an activity message says so.
    NumberChanged {
        from: WhatsAppIdentity,
        to: WhatsAppIdentity,
        notice: InboundMessage,
    },
    /// Understood, deliberately not stored (groups, broadcasts, connection events…); answered 2xx.
    Ignored {
        reason: String,
    },
}

/// One event of a delivery that may serve several business numbers (Cloud and 360dialog: one app or WABA
/// callback URL receives every number's `value`), with the number it is for.
#[derive(Debug, Clone, PartialEq)]
pub struct NumberedEvent {
    /// `value.metadata.phone_number_id`; None for bodies that name no number (360dialog on-premise).
    pub phone_number_id: Option<String>,
    pub event: InboundEvent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageChange {
    /// The sender edited the text: the message shows the new one and keeps the previous in its attributes.
    Edited { content: Option<String> },
    /// The sender deleted it for everyone: the text is cleared and the message marked deleted.
    Deleted,
    /// A reaction by the customer or the business; an empty emoji takes it back.
    Reacted {
        emoji: Option<String>,
        by_business: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct InboundMessage {
    /// The provider's stable id: the de-duplication key.
    pub provider_message_id: String,
    /// The other party of the chat (the customer), whoever sent this message.
    pub contact: WhatsAppIdentity,
    /// A second name of the same person in the same message (Cloud sends both `from` and `from_user_id` to
    /// users with a username who share their number): linked to the same contact, so that a later message
    /// naming only the username's id lands with them.
    pub alias: Option<WhatsAppIdentity>,
    pub contact_name: Option<String>,
    /// Sent by the business (from the phone or another tool), not by the customer.
    pub outgoing: bool,
    pub sent_at: DateTime<Utc>,
    pub content: Option<String>,
    pub kind: MessageKind,
    /// For reactions, edits and deletes: the message they act on.
    pub target_message_id: Option<String>,
    /// A file sent with the message: where its bytes are.
    pub media: Option<Media>,
    /// What the text alone does not keep: the replied-to message (`in_reply_to`), a location's coordinates,
    /// the ids and payloads of interactive and button replies. Stored as the message's `content_attributes`.
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    pub content_type: Option<String>,
    pub file_name: Option<String>,
    pub source: MediaSource,
}

/// Where a message's file comes from. Everything but `Inline` is fetched by a background job.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum MediaSource {
    /// Evolution with `webhook_base64`: the bytes are in the delivery (base64).
    Inline {
        #[serde(skip)]
        base64: String,
        message_id: String,
    },
    /// Evolution without it: `POST /chat/getBase64FromMediaMessage/{instance}` with the message's key.
    Evolution { message_id: String },
    /// WhatsApp Cloud and 360dialog: `GET /{media-id}` with the access token, then the URL it answers.
    Cloud { media_id: String },
    /// Twilio: the media URL, with HTTP basic auth (account SID and auth token).
    Url {
        url: String,
        account_sid: Option<String>,
    },
    /// An account import's file: the legacy media service (bearer JWT) or the export directory.
    Legacy { url: String },
}

impl MessageKind {
    /// The attachment `file_type` of a message of this kind that carries a file.
    pub fn file_type(self) -> &'static str {
        match self {
            MessageKind::Image => "image",
            MessageKind::Audio => "audio",
            MessageKind::Video => "video",
            MessageKind::Sticker => "sticker",
            _ => "file",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    Text,
    Image,
    Audio,
    Video,
    Document,
    Sticker,
    Location,
    Contact,
    Reaction,
    /// An event of the conversation, not a message of either party (a number change).
    Activity,
    Other,
}

/// Statuses in the order a message goes through them; a later one never gives way to an earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    Failed,
    Pending,
    Sent,
    Delivered,
    Read,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Failed => "failed",
            MessageStatus::Pending => "pending",
            MessageStatus::Sent => "sent",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Read => "read",
        }
    }
}

/// A body that is not a webhook of this provider: answered 400 and kept as a dead letter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed webhook: {0}")]
pub struct ParseError(pub String);

/// What a database stores the same way on PostgreSQL and SQLite: PostgreSQL text (and JSONB) cannot hold the NUL
/// character, which a provider may pass on from what a user typed, so it is dropped from everything stored (the
/// message says so in `content_attributes.nul_removed`); and an index entry cannot exceed ~2.7 KB, so a provider id
/// longer than `MAX_ID_BYTES` is stored as `sha256:<hex>` of itself (the full id kept in
/// `content_attributes.provider_message_id`). Receipts, edits and reactions naming the id get the same treatment,
/// so they still find their message.
pub fn storable(event: InboundEvent) -> InboundEvent {
    match event {
        InboundEvent::Message(m) => InboundEvent::Message(storable_message(m)),
        InboundEvent::NumberChanged { from, to, notice } => InboundEvent::NumberChanged {
            from,
            to,
            notice: storable_message(notice),
        },
        InboundEvent::Status {
            provider_message_id,
            status,
        } => InboundEvent::Status {
            provider_message_id: storable_id(&provider_message_id),
            status,
        },
        InboundEvent::Change {
            target_message_id,
            change,
        } => InboundEvent::Change {
            target_message_id: storable_id(&target_message_id),
            change: match change {
                MessageChange::Edited { content } => MessageChange::Edited {
                    content: content.map(|c| without_nul(c).0),
                },
                MessageChange::Reacted { emoji, by_business } => MessageChange::Reacted {
                    emoji: emoji.map(|e| without_nul(e).0),
                    by_business,
                },
                other => other,
            },
        },
        ignored @ InboundEvent::Ignored { .. } => ignored,
    }
}

/// Longest provider id stored as it is.
pub const MAX_ID_BYTES: usize = 256;

fn storable_id(id: &str) -> String {
    let id: String = id.chars().filter(|&c| c != '\0').collect();
    if id.len() <= MAX_ID_BYTES {
        return id;
    }
    use sha2::Digest;
    format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(id.as_bytes()))
    )
}

fn storable_message(mut m: InboundMessage) -> InboundMessage {
    let original_id = m.provider_message_id.clone();
    m.provider_message_id = storable_id(&original_id);
    if m.provider_message_id != original_id && original_id.len() > MAX_ID_BYTES {
        m.attributes
            .insert("provider_message_id".into(), original_id.into());
    }
    m.target_message_id = m.target_message_id.as_deref().map(storable_id);
    let mut removed = false;
    let mut clean = |s: String| {
        let (s, had) = without_nul(s);
        removed |= had;
        s
    };
    m.contact_name = m.contact_name.map(&mut clean);
    m.content = m.content.map(&mut clean);
    if let Some(media) = &mut m.media {
        media.content_type = media.content_type.take().map(&mut clean);
        media.file_name = media.file_name.take().map(&mut clean);
    }
    let attributes = std::mem::take(&mut m.attributes);
    m.attributes = attributes
        .into_iter()
        .map(|(k, v)| (clean(k), value_without_nul(v, &mut clean)))
        .collect();
    if removed {
        m.attributes.insert("nul_removed".into(), true.into());
    }
    m
}

fn without_nul(mut s: String) -> (String, bool) {
    let had = s.contains('\0');
    if had {
        s.retain(|c| c != '\0');
    }
    (s, had)
}

fn value_without_nul(
    v: serde_json::Value,
    clean: &mut impl FnMut(String) -> String,
) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::String(s) => Value::String(clean(s)),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| value_without_nul(v, clean))
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (clean(k), value_without_nul(v, clean)))
                .collect(),
        ),
        other => other,
    }
}
