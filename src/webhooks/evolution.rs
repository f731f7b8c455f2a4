//! Evolution API v2 (Baileys) webhooks: one JSON envelope `{event, instance, data, …}` per event
//! (`reference/provider-webhooks.md` §1). `messages.upsert` carries one message, `messages.update` a status.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Map, Value};

use super::event::{
    InboundEvent, InboundMessage, Media, MediaSource, MessageChange, MessageKind, MessageStatus,
    ParseError,
};
use crate::domain::{IdentityError, WhatsAppIdentity};

/// The instance name in an envelope (the legacy route keys on it).
pub fn instance_name(body: &Value) -> Option<&str> {
    body.get("instance").and_then(Value::as_str)
}

/// Events ferry stores; any other event is answered `ignored` whatever its `data` (an instance subscribed to
/// every event sends arrays for contacts and chats, objects for connection states…).
const STORED_EVENTS: [&str; 5] = [
    "messages.upsert",
    "send.message",
    "messages.update",
    "messages.delete",
    "messages.edited",
];

pub fn parse(body: &[u8]) -> Result<InboundEvent, ParseError> {
    let envelope: Value =
        serde_json::from_slice(body).map_err(|e| ParseError(format!("not JSON: {e}")))?;
    let event = envelope
        .get("event")
        .and_then(Value::as_str)
        .ok_or_else(|| ParseError("no \"event\"".into()))?;
    // Evolution names events `messages.upsert`; its UPPER_SNAKE form appears in configs and by-event URLs.
    let event = event.to_ascii_lowercase().replace(['_', '-'], ".");
    if !STORED_EVENTS.contains(&event.as_str()) {
        return Ok(InboundEvent::Ignored {
            reason: format!("event {event} carries no message"),
        });
    }
    let data = envelope
        .get("data")
        .filter(|d| d.is_object())
        .ok_or_else(|| ParseError(format!("{event} without a \"data\" object")))?;
    match event.as_str() {
        "messages.update" => status(data),
        "messages.delete" => deleted(data),
        "messages.edited" => protocol(data),
        _ => message(data),
    }
}

fn text<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(v, |v, key| v.get(key))
        .and_then(Value::as_str)
}

fn identity(key: &Value) -> Result<Result<WhatsAppIdentity, InboundEvent>, ParseError> {
    let remote = text(key, &["remoteJid"]).ok_or_else(|| ParseError("no key.remoteJid".into()))?;
    match WhatsAppIdentity::from_evolution(remote, text(key, &["remoteJidAlt"])) {
        Ok(id) => Ok(Ok(id)),
        Err(IdentityError::Group(_)) | Err(IdentityError::Broadcast(_)) => {
            Ok(Err(InboundEvent::Ignored {
                reason: format!("{remote} is a group or broadcast chat"),
            }))
        }
        Err(e) => Err(ParseError(format!("key.remoteJid: {e}"))),
    }
}

fn message(data: &Value) -> Result<InboundEvent, ParseError> {
    let key = data
        .get("key")
        .ok_or_else(|| ParseError("no data.key".into()))?;
    let id = text(key, &["id"])
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ParseError("no data.key.id".into()))?;
    let contact = match identity(key)? {
        Ok(contact) => contact,
        Err(ignored) => return Ok(ignored),
    };
    let outgoing = key.get("fromMe").and_then(Value::as_bool).unwrap_or(false);
    let sent_at = data
        .get("messageTimestamp")
        .and_then(|t| {
            t.as_i64()
                .or_else(|| t.as_str().and_then(|s| s.parse().ok()))
        })
        .and_then(|secs| Utc.timestamp_opt(secs, 0).single())
        .unwrap_or_else(Utc::now);
    let message_type = text(data, &["messageType"]).unwrap_or("");
    if matches!(message_type, "protocolMessage" | "editedMessage") {
        return protocol(data);
    }
    // Borrowed: with `webhook_base64` the message holds a whole file.
    let body = data.get("message").unwrap_or(&Value::Null);
    let (kind, content, target, mut attributes) = content_of(message_type, body);
    let media = media_of(message_type, body, id);
    // Evolution lifts the quoted message's context to `data.contextInfo`; older versions leave it inside.
    let replied = text(data, &["contextInfo", "stanzaId"])
        .or_else(|| text(body, &[message_type, "contextInfo", "stanzaId"]))
        .filter(|id| !id.is_empty());
    if let Some(replied) = replied.filter(|_| target.is_none()) {
        attributes.insert("in_reply_to".into(), replied.into());
    }
    Ok(InboundEvent::Message(InboundMessage {
        provider_message_id: id.to_owned(),
        contact,
        // Evolution writes "Você" as the push name of the business's own messages.
        contact_name: if outgoing {
            None
        } else {
            text(data, &["pushName"])
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
        },
        outgoing,
        sent_at: clamp(sent_at),
        content,
        kind,
        target_message_id: target,
        media,
        alias: None,
        attributes,
    }))
}

/// The file of a media message: in the delivery when the webhook sends base64, else fetched by its key.
fn media_of(message_type: &str, m: &Value, id: &str) -> Option<Media> {
    if !matches!(
        message_type,
        "imageMessage" | "videoMessage" | "audioMessage" | "documentMessage" | "stickerMessage"
    ) {
        return None;
    }
    let inner = m.get(message_type)?;
    let source = match text(m, &["base64"]).filter(|b| !b.is_empty()) {
        Some(base64) => MediaSource::Inline {
            base64: base64.to_owned(),
            message_id: id.to_owned(),
        },
        None => MediaSource::Evolution {
            message_id: id.to_owned(),
        },
    };
    Some(Media {
        content_type: text(inner, &["mimetype"]).map(str::to_owned),
        file_name: text(inner, &["fileName"]).map(str::to_owned),
        source,
    })
}

/// A timestamp far in the future is a sender's clock error, not a fact.
fn clamp(at: DateTime<Utc>) -> DateTime<Utc> {
    at.min(Utc::now() + chrono::Duration::days(1))
}

type Content = (
    MessageKind,
    Option<String>,
    Option<String>,
    Map<String, Value>,
);

fn content_of(message_type: &str, m: &Value) -> Content {
    let owned = |path: &[&str]| text(m, path).map(str::to_owned);
    let plain = |kind, content| (kind, content, None, Map::new());
    match message_type {
        "conversation" => plain(MessageKind::Text, owned(&["conversation"])),
        "extendedTextMessage" => plain(MessageKind::Text, owned(&["extendedTextMessage", "text"])),
        "imageMessage" => plain(MessageKind::Image, owned(&["imageMessage", "caption"])),
        "videoMessage" => plain(MessageKind::Video, owned(&["videoMessage", "caption"])),
        "audioMessage" => plain(MessageKind::Audio, None),
        "documentMessage" => plain(
            MessageKind::Document,
            owned(&["documentMessage", "caption"])
                .or_else(|| owned(&["documentMessage", "fileName"])),
        ),
        "stickerMessage" => plain(MessageKind::Sticker, None),
        "locationMessage" | "liveLocationMessage" => {
            let l = &m[message_type];
            let location = serde_json::json!({
                "latitude": l["degreesLatitude"], "longitude": l["degreesLongitude"],
                "name": l["name"], "address": l["address"], "url": l["url"],
            });
            let mut attributes = Map::new();
            attributes.insert(
                "location".into(),
                super::cloud::location_attributes(&location),
            );
            let content = text(l, &["name"])
                .or_else(|| text(l, &["address"]))
                .or_else(|| text(l, &["caption"]))
                .map(str::to_owned);
            (MessageKind::Location, content, None, attributes)
        }
        "contactMessage" => plain(
            MessageKind::Contact,
            owned(&["contactMessage", "displayName"]),
        ),
        "reactionMessage" => (
            MessageKind::Reaction,
            owned(&["reactionMessage", "text"]),
            owned(&["reactionMessage", "key", "id"]),
            Map::new(),
        ),
        "buttonsResponseMessage" | "listResponseMessage" | "templateButtonReplyMessage" => {
            reply_of(message_type, &m[message_type])
        }
        _ => plain(MessageKind::Other, owned(&["conversation"])),
    }
}

/// A reply to buttons, a list or a template's quick reply: the title the customer chose is the text, the id
/// (what a bot keys on) is kept in the attributes.
fn reply_of(message_type: &str, r: &Value) -> Content {
    let (kind, id, title) = match message_type {
        "buttonsResponseMessage" => (
            "button_reply",
            text(r, &["selectedButtonId"]),
            text(r, &["selectedDisplayText"]),
        ),
        "listResponseMessage" => (
            "list_reply",
            text(r, &["singleSelectReply", "selectedRowId"]),
            text(r, &["title"]),
        ),
        _ => (
            "template_button_reply",
            text(r, &["selectedId"]),
            text(r, &["selectedDisplayText"]),
        ),
    };
    let mut reply = Map::new();
    reply.insert("type".into(), kind.into());
    if let Some(id) = id {
        reply.insert("id".into(), id.into());
    }
    if let Some(title) = title {
        reply.insert("title".into(), title.into());
    }
    if let Some(description) = text(r, &["description"]) {
        reply.insert("description".into(), description.into());
    }
    let mut attributes = Map::new();
    attributes.insert("interactive".into(), Value::Object(reply));
    (
        MessageKind::Text,
        title.map(str::to_owned),
        None,
        attributes,
    )
}

/// `messages.delete`: the data is the deleted message's key (or the key under `key`).
fn deleted(data: &Value) -> Result<InboundEvent, ParseError> {
    let key = data.get("key").unwrap_or(data);
    let id = text(key, &["id"])
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ParseError("no key.id of the deleted message".into()))?;
    Ok(InboundEvent::Change {
        target_message_id: id.to_owned(),
        change: MessageChange::Deleted,
    })
}

/// `messages.edited`, or an upsert of a `protocolMessage`: a revoke (deleted for everyone) or an edit naming
/// the message's key, with the new content. Evolution 2.x sends `messages.edited` with the protocol message
/// itself as `data` (`{key, type, editedMessage, timestampMs}`); older shapes wrap it in `message`.
fn protocol(data: &Value) -> Result<InboundEvent, ParseError> {
    let message = data.get("message").unwrap_or(data);
    let protocol = message
        .get("protocolMessage")
        .or_else(|| message.pointer("/editedMessage/message/protocolMessage"))
        .or_else(|| (data.get("key").is_some() && data.get("type").is_some()).then_some(data))
        .ok_or_else(|| ParseError("no protocolMessage".into()))?;
    let id = text(protocol, &["key", "id"])
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ParseError("no protocolMessage.key.id".into()))?;
    // Baileys' enum, by name or number: REVOKE = 0, MESSAGE_EDIT = 14 (an edit event may omit it).
    let kind = protocol.get("type").map(|t| match t {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    let change = match kind.as_deref() {
        Some("REVOKE") | Some("0") => MessageChange::Deleted,
        Some("MESSAGE_EDIT") | Some("14") | None => {
            let new = protocol.get("editedMessage").unwrap_or(&Value::Null);
            // An edited caption comes as the media message with its new caption.
            let caption = ["imageMessage", "videoMessage", "documentMessage"]
                .into_iter()
                .find_map(|kind| text(new, &[kind, "caption"]));
            MessageChange::Edited {
                content: text(new, &["conversation"])
                    .or_else(|| text(new, &["extendedTextMessage", "text"]))
                    .or(caption)
                    .map(str::to_owned),
            }
        }
        Some(other) => {
            return Ok(InboundEvent::Ignored {
                reason: format!("protocol message {other} changes no message"),
            });
        }
    };
    Ok(InboundEvent::Change {
        target_message_id: id.to_owned(),
        change,
    })
}

fn status(data: &Value) -> Result<InboundEvent, ParseError> {
    let id = text(data, &["keyId"])
        .or_else(|| text(data, &["key", "id"]))
        .ok_or_else(|| ParseError("no data.keyId".into()))?;
    let raw = text(data, &["status"]).ok_or_else(|| ParseError("no data.status".into()))?;
    let status = match raw {
        "ERROR" => MessageStatus::Failed,
        "PENDING" => MessageStatus::Pending,
        "SERVER_ACK" => MessageStatus::Sent,
        "DELIVERY_ACK" => MessageStatus::Delivered,
        "READ" | "PLAYED" => MessageStatus::Read,
        other => {
            return Ok(InboundEvent::Ignored {
                reason: format!("status {other} is not a delivery receipt"),
            });
        }
    };
    Ok(InboundEvent::Status {
        provider_message_id: id.to_owned(),
        status,
    })
}

/// The envelope's `instance` when it is not the integration's own (Evolution's global webhook posts every
/// instance to one URL).
pub fn foreign_instance(route: &crate::store::TokenRoute, body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        instance: Option<String>,
    }
    let sender = serde_json::from_slice::<Envelope>(body)
        .ok()?
        .instance
        .filter(|i| !i.is_empty())?;
    let mine = route.instance_name.as_deref()?;
    (mine != sender).then_some(sender)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn upsert(key: Value, message_type: &str, message: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "event": "messages.upsert", "instance": "acme-sales",
            "data": {"key": key, "pushName": "Maria", "status": "DELIVERY_ACK", "message": message,
                     "messageType": message_type, "messageTimestamp": 1767225600, "source": "android"},
            "date_time": "2026-01-01T09:00:00.000Z", "sender": "5511911112222@s.whatsapp.net"
        }))
        .unwrap()
    }

    fn msg(event: InboundEvent) -> InboundMessage {
        match event {
            InboundEvent::Message(m) => m,
            other => panic!("not a message: {other:?}"),
        }
    }

    #[test]
    fn revokes_and_edits_arrive_as_protocol_messages() {
        let key =
            json!({"remoteJid": "5511988887777@s.whatsapp.net", "fromMe": false, "id": "3EB0P1"});
        let revoke = upsert(
            key.clone(),
            "protocolMessage",
            json!({"protocolMessage": {"key": {"id": "3EB0A1"}, "type": 0}}),
        );
        assert_eq!(
            parse(&revoke).unwrap(),
            InboundEvent::Change {
                target_message_id: "3EB0A1".into(),
                change: MessageChange::Deleted
            }
        );
        let edit = upsert(
            key,
            "editedMessage",
            json!({"editedMessage": {"message": {"protocolMessage": {"key": {"id": "3EB0A1"}, "type": "MESSAGE_EDIT",
                   "editedMessage": {"extendedTextMessage": {"text": "novo"}}}}}}),
        );
        assert_eq!(
            parse(&edit).unwrap(),
            InboundEvent::Change {
                target_message_id: "3EB0A1".into(),
                change: MessageChange::Edited {
                    content: Some("novo".into())
                }
            }
        );
    }

    #[test]
    fn a_text_message_from_a_customer() {
        let body = upsert(
            json!({"remoteJid": "5511988887777@s.whatsapp.net", "fromMe": false, "id": "3EB0A1"}),
            "conversation",
            json!({"conversation": "Olá!"}),
        );
        let m = msg(parse(&body).unwrap());
        assert_eq!(m.provider_message_id, "3EB0A1");
        assert_eq!(m.contact.canonical(), "5511988887777");
        assert_eq!((m.outgoing, m.kind), (false, MessageKind::Text));
        assert_eq!(m.content.as_deref(), Some("Olá!"));
        assert_eq!(m.contact_name.as_deref(), Some("Maria"));
        assert_eq!(m.sent_at.timestamp(), 1767225600);
    }

    #[test]
    fn from_me_lid_with_phone_alt_image_and_reaction() {
        let body = upsert(
            json!({"remoteJid": "123456789012345@lid", "remoteJidAlt": "5511988887777@s.whatsapp.net",
                   "fromMe": true, "id": "BAE5"}),
            "imageMessage",
            json!({"imageMessage": {"mimetype": "image/jpeg", "caption": "segue a foto"}, "base64": "AAAA"}),
        );
        let m = msg(parse(&body).unwrap());
        assert!(m.outgoing);
        assert_eq!(
            m.contact_name, None,
            "the business's own push name is not the customer's"
        );
        assert_eq!(
            m.contact.canonical(),
            "5511988887777",
            "the phone wins over the LID"
        );
        assert_eq!(
            (m.kind, m.content.as_deref()),
            (MessageKind::Image, Some("segue a foto"))
        );

        let body = upsert(
            json!({"remoteJid": "5511988887777@s.whatsapp.net", "fromMe": false, "id": "R1"}),
            "reactionMessage",
            json!({"reactionMessage": {"key": {"remoteJid": "5511988887777@s.whatsapp.net", "id": "3EB0A1"}, "text": "👍"}}),
        );
        let m = msg(parse(&body).unwrap());
        assert_eq!(m.kind, MessageKind::Reaction);
        assert_eq!(m.target_message_id.as_deref(), Some("3EB0A1"));
    }

    #[test]
    fn groups_and_other_events_are_ignored_statuses_understood() {
        let body = upsert(
            json!({"remoteJid": "120363025@g.us", "participant": "5511988887777@s.whatsapp.net", "fromMe": false, "id": "G1"}),
            "conversation",
            json!({"conversation": "oi grupo"}),
        );
        assert!(matches!(
            parse(&body).unwrap(),
            InboundEvent::Ignored { .. }
        ));
        let body =
            serde_json::to_vec(&json!({"event": "connection.update", "data": {"state": "open"}}))
                .unwrap();
        assert!(matches!(
            parse(&body).unwrap(),
            InboundEvent::Ignored { .. }
        ));
        let body = serde_json::to_vec(&json!({"event": "MESSAGES_UPDATE",
            "data": {"keyId": "3EB0A1", "remoteJid": "5511988887777@s.whatsapp.net", "fromMe": true, "status": "READ"}})).unwrap();
        assert_eq!(
            parse(&body).unwrap(),
            InboundEvent::Status {
                provider_message_id: "3EB0A1".into(),
                status: MessageStatus::Read
            }
        );
        assert!(MessageStatus::Read > MessageStatus::Delivered);
    }

    #[test]
    fn malformed_bodies_are_refused_with_a_reason() {
        assert!(parse(b"not json").unwrap_err().0.contains("not JSON"));
        assert!(parse(br#"{"data": {}}"#).unwrap_err().0.contains("event"));
        assert!(parse(br#"{"event": "messages.upsert", "data": {"key": {"remoteJid": "5511988887777@s.whatsapp.net"}}}"#)
            .unwrap_err().0.contains("key.id"));
        assert!(parse(br#"{"event": "messages.upsert", "data": {"key": {"remoteJid": "not a number", "id": "x"}}}"#).is_err());
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn random_envelopes_never_panic(event in "[a-zA-Z._]{0,20}", id in "\\PC{0,12}", jid in "\\PC{0,30}", t in any::<i64>()) {
            let body = serde_json::to_vec(&json!({"event": event,
                "data": {"key": {"remoteJid": jid, "id": id, "fromMe": t % 2 == 0}, "messageTimestamp": t,
                         "messageType": "conversation", "message": {"conversation": id}}})).unwrap();
            if let Ok(InboundEvent::Message(m)) = parse(&body) {
                prop_assert!(!m.provider_message_id.is_empty());
                prop_assert!(m.sent_at <= Utc::now() + chrono::Duration::days(1));
            }
        }
    }
}
