//! Meta WhatsApp Cloud API webhooks (`reference/provider-webhooks.md` §4): signed with the app secret
//! (`X-Hub-Signature-256`, HMAC-SHA256 over the raw bytes), batched (every entry × change × message/status).

use chrono::{TimeZone, Utc};
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

use super::event::{
    InboundEvent, InboundMessage, Media, MediaSource, MessageKind, MessageStatus, NumberedEvent,
    ParseError,
};
use crate::domain::WhatsAppIdentity;

/// Whether `header` (`sha256=<hex>`) is the HMAC of `body` under `app_secret`, compared in constant time.
pub fn signature_is_valid(app_secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(hex_sig) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(app_secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// `X-Hub-Signature-256` of `body` under the app secret (what Meta sends; `ferry integrations test` signs so).
pub fn sign(app_secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(app_secret).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Every message and status of a (possibly batched) delivery, in order, each with the business number
/// (`value.metadata.phone_number_id`) it is for: one app's callback URL receives every number of the app.
pub fn parse(body: &[u8]) -> Result<Vec<NumberedEvent>, ParseError> {
    let root: Value =
        serde_json::from_slice(body).map_err(|e| ParseError(format!("not JSON: {e}")))?;
    let entries = root
        .get("entry")
        .and_then(Value::as_array)
        .ok_or_else(|| ParseError("no \"entry\" array".into()))?;
    let mut out = Vec::new();
    for change in entries
        .iter()
        .filter_map(|e| e.get("changes").and_then(Value::as_array))
        .flatten()
    {
        let Some(value) = change.get("value") else {
            return Err(ParseError("a change without \"value\"".into()));
        };
        match change.get("field").and_then(Value::as_str) {
            Some("messages") => value_events(value, &mut out)?,
            // WhatsApp Business app coexistence: what the business typed in the app, to a customer.
            Some("smb_message_echoes") => echo_events(value, &mut out)?,
            _ => out.push(NumberedEvent {
                phone_number_id: phone_number_id(value),
                event: InboundEvent::Ignored {
                    reason: "a change of another field".into(),
                },
            }),
        }
    }
    Ok(out)
}

fn phone_number_id(value: &Value) -> Option<String> {
    match value.pointer("/metadata/phone_number_id")? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The messages and statuses of one `value` object (a Cloud change, or a whole 360dialog on-premise body).
pub fn value_events(value: &Value, out: &mut Vec<NumberedEvent>) -> Result<(), ParseError> {
    let number = phone_number_id(value);
    let names = Names::of(value);
    let mut push = |event| {
        out.push(NumberedEvent {
            phone_number_id: number.clone(),
            event,
        })
    };
    for m in array(value, "messages") {
        push(message(m, &names)?);
    }
    for s in array(value, "statuses") {
        push(status(s)?);
    }
    Ok(())
}

fn echo_events(value: &Value, out: &mut Vec<NumberedEvent>) -> Result<(), ParseError> {
    let number = phone_number_id(value);
    for m in array(value, "message_echoes") {
        let event = match message_with(m, &Names::default(), Direction::Echo)? {
            InboundEvent::NumberChanged { notice, .. } => InboundEvent::Message(notice),
            other => other,
        };
        out.push(NumberedEvent {
            phone_number_id: number.clone(),
            event,
        });
    }
    Ok(())
}

fn array<'a>(value: &'a Value, name: &str) -> impl Iterator<Item = &'a Value> {
    value
        .get(name)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

/// `contacts[]`: a profile name per `wa_id` (phone) and per `user_id` (BSUID).
#[derive(Default)]
struct Names<'a>(Vec<(&'a str, &'a str)>);

impl<'a> Names<'a> {
    fn of(value: &'a Value) -> Self {
        let mut names = Vec::new();
        for c in array(value, "contacts") {
            let Some(name) = str_at(c, "/profile/name") else {
                continue;
            };
            for id in [str_at(c, "/wa_id"), str_at(c, "/user_id")]
                .into_iter()
                .flatten()
            {
                names.push((id, name));
            }
        }
        Self(names)
    }

    fn of_id(&self, id: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(known, _)| *known == id)
            .map(|(_, name)| name.trim().to_owned())
            .filter(|n| !n.is_empty())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// `messages[]`: customer → business.
    Inbound,
    /// `message_echoes[]`: business → customer (`to` is the customer).
    Echo,
}

fn message(m: &Value, names: &Names) -> Result<InboundEvent, ParseError> {
    message_with(m, names, Direction::Inbound)
}

/// The customer of a message: their phone (`from`, or `to` of an echo) and, for users with a username, their
/// business-scoped user id (`from_user_id`, `to_user_id`); either may be missing, not both.
fn customer(
    m: &Value,
    direction: Direction,
) -> Result<(WhatsAppIdentity, Option<WhatsAppIdentity>, String), ParseError> {
    let (phone_field, user_field) = match direction {
        Direction::Inbound => ("from", "from_user_id"),
        Direction::Echo => ("to", "to_user_id"),
    };
    let parse = |field: &str| -> Result<Option<(WhatsAppIdentity, &str)>, ParseError> {
        match str_at(m, &format!("/{field}")).filter(|v| !v.trim().is_empty()) {
            None => Ok(None),
            Some(raw) => WhatsAppIdentity::parse(raw)
                .map(|id| Some((id, raw)))
                .map_err(|e| ParseError(format!("{field}: {e}"))),
        }
    };
    let phone = parse(phone_field)?;
    let user = parse(user_field)?.filter(|(id, _)| id.is_bsuid());
    match (phone, user) {
        (Some((phone, raw)), user) => Ok((phone, user.map(|(id, _)| id), raw.to_owned())),
        (None, Some((user, raw))) => Ok((user, None, raw.to_owned())),
        (None, None) => Err(ParseError(format!(
            "a message without \"{phone_field}\" or \"{user_field}\""
        ))),
    }
}

fn message_with(
    m: &Value,
    names: &Names,
    direction: Direction,
) -> Result<InboundEvent, ParseError> {
    let id = str_at(m, "/id")
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ParseError("a message without \"id\"".into()))?;
    let (contact, alias, raw_id) = customer(m, direction)?;
    let contact_name = names
        .of_id(&raw_id)
        .or_else(|| alias.as_ref().and_then(|a| names.of_id(&a.canonical())));
    let sent_at = str_at(m, "/timestamp")
        .and_then(|t| t.parse::<i64>().ok())
        .and_then(|secs| Utc.timestamp_opt(secs, 0).single())
        .map(|at| at.min(Utc::now() + chrono::Duration::days(1)))
        .unwrap_or_else(Utc::now);
    let kind_name = str_at(m, "/type").unwrap_or("");
    let Content {
        kind,
        text,
        target,
        mut attributes,
    } = content(m, kind_name);
    if let Some(replied) = str_at(m, "/context/id").filter(|_| target.is_none()) {
        attributes.insert("in_reply_to".into(), replied.into());
    }
    let message = InboundMessage {
        provider_message_id: id.to_owned(),
        contact_name: contact_name.filter(|_| direction == Direction::Inbound),
        contact,
        alias,
        outgoing: direction == Direction::Echo,
        sent_at,
        content: text,
        kind,
        target_message_id: target,
        media: media(m, kind_name),
        attributes,
    };
    if kind_name == "system" {
        return Ok(system(m, message));
    }
    Ok(InboundEvent::Message(message))
}

/// A `system` message: an activity of the conversation; `user_changed_number` re-keys the contact.
fn system(m: &Value, notice: InboundMessage) -> InboundEvent {
    let new_number = str_at(m, "/system/new_wa_id")
        .or_else(|| str_at(m, "/system/wa_id"))
        .and_then(|n| WhatsAppIdentity::parse(n).ok())
        .filter(|_| {
            matches!(
                str_at(m, "/system/type"),
                Some("user_changed_number") | Some("customer_changed_number")
            )
        });
    match new_number {
        Some(to) if to != notice.contact => InboundEvent::NumberChanged {
            from: notice.contact.clone(),
            to,
            notice,
        },
        _ => InboundEvent::Message(notice),
    }
}

struct Content {
    kind: MessageKind,
    text: Option<String>,
    target: Option<String>,
    attributes: Map<String, Value>,
}

fn content(m: &Value, kind_name: &str) -> Content {
    let owned = |pointer: &str| str_at(m, pointer).map(str::to_owned);
    let mut attributes = Map::new();
    let (kind, text, target) = match kind_name {
        "text" => (MessageKind::Text, owned("/text/body"), None),
        "image" => (MessageKind::Image, owned("/image/caption"), None),
        "video" => (MessageKind::Video, owned("/video/caption"), None),
        "audio" => (MessageKind::Audio, None, None),
        "document" => (
            MessageKind::Document,
            owned("/document/caption").or_else(|| owned("/document/filename")),
            None,
        ),
        "sticker" => (MessageKind::Sticker, None, None),
        "location" => {
            let location = m.get("location").cloned().unwrap_or(Value::Null);
            attributes.insert("location".into(), location_attributes(&location));
            let text = owned("/location/name").or_else(|| owned("/location/address"));
            (MessageKind::Location, text, None)
        }
        "contacts" => (MessageKind::Contact, None, None),
        "reaction" => (
            MessageKind::Reaction,
            owned("/reaction/emoji"),
            owned("/reaction/message_id"),
        ),
        // A reply to an interactive message: the chosen button's or row's title is what the customer saw
        // and "said"; its id is what a bot keys on.
        "interactive" => {
            let reply = ["button_reply", "list_reply", "nfm_reply"]
                .into_iter()
                .find_map(|k| m.pointer(&format!("/interactive/{k}")).map(|r| (k, r)));
            match reply {
                Some((reply_type, reply)) => {
                    let mut kept = Map::new();
                    kept.insert("type".into(), reply_type.into());
                    for field in ["id", "title", "description", "response_json", "name"] {
                        if let Some(v) = reply.get(field) {
                            kept.insert(field.into(), v.clone());
                        }
                    }
                    attributes.insert("interactive".into(), Value::Object(kept));
                    let text = str_at(reply, "/title")
                        .or_else(|| str_at(reply, "/body"))
                        .map(str::to_owned);
                    (MessageKind::Text, text, None)
                }
                None => (MessageKind::Other, None, None),
            }
        }
        // A quick-reply button of a template.
        "button" => {
            let mut kept = Map::new();
            for field in ["payload", "text"] {
                if let Some(v) = m.pointer(&format!("/button/{field}")) {
                    kept.insert(field.into(), v.clone());
                }
            }
            attributes.insert("button".into(), Value::Object(kept));
            (MessageKind::Text, owned("/button/text"), None)
        }
        "system" => (MessageKind::Activity, owned("/system/body"), None),
        _ => (MessageKind::Other, None, None),
    };
    Content {
        kind,
        text,
        target,
        attributes,
    }
}

/// `{latitude, longitude, name, address}` of a shared location (what a map link needs).
pub fn location_attributes(location: &Value) -> Value {
    let mut kept = Map::new();
    for field in ["latitude", "longitude", "name", "address", "url"] {
        if let Some(v) = location.get(field).filter(|v| !v.is_null()) {
            kept.insert(field.into(), v.clone());
        }
    }
    Value::Object(kept)
}

fn media(m: &Value, kind_name: &str) -> Option<Media> {
    if !matches!(
        kind_name,
        "image" | "video" | "audio" | "document" | "sticker"
    ) {
        return None;
    }
    str_at(m, &format!("/{kind_name}/id")).map(|media_id| Media {
        content_type: str_at(m, &format!("/{kind_name}/mime_type")).map(str::to_owned),
        file_name: str_at(m, &format!("/{kind_name}/filename")).map(str::to_owned),
        source: MediaSource::Cloud {
            media_id: media_id.to_owned(),
        },
    })
}

fn status(s: &Value) -> Result<InboundEvent, ParseError> {
    let id = str_at(s, "/id").ok_or_else(|| ParseError("a status without \"id\"".into()))?;
    let status = match str_at(s, "/status").unwrap_or("") {
        "sent" => MessageStatus::Sent,
        "delivered" => MessageStatus::Delivered,
        "read" | "played" => MessageStatus::Read,
        "failed" => MessageStatus::Failed,
        other => {
            return Ok(InboundEvent::Ignored {
                reason: format!("status {other:?} is not a delivery receipt"),
            });
        }
    };
    Ok(InboundEvent::Status {
        provider_message_id: id.to_owned(),
        status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn body() -> Vec<u8> {
        serde_json::to_vec(&json!({"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [{
            "field": "messages", "value": {"messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111", "phone_number_id": "106540352242922"},
            "contacts": [{"profile": {"name": "Maria"}, "wa_id": "5511988887777"}],
            "messages": [
                {"from": "5511988887777", "id": "wamid.A", "timestamp": "1767225600", "type": "text", "text": {"body": "Olá"}},
                {"from": "5511988887777", "id": "wamid.B", "timestamp": "1767225601", "type": "image",
                 "image": {"caption": "segue a foto", "mime_type": "image/jpeg", "id": "1003"}}],
            "statuses": [{"id": "wamid.OUT", "status": "read", "timestamp": "1767225602", "recipient_id": "5511988887777"}]
        }}]}]}))
        .unwrap()
    }

    #[test]
    fn a_batched_delivery_yields_every_message_and_status() {
        let numbered = parse(&body()).unwrap();
        assert!(
            numbered
                .iter()
                .all(|e| e.phone_number_id.as_deref() == Some("106540352242922"))
        );
        let events: Vec<InboundEvent> = numbered.into_iter().map(|e| e.event).collect();
        assert_eq!(events.len(), 3);
        let InboundEvent::Message(first) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(first.provider_message_id, "wamid.A");
        assert_eq!(first.contact.canonical(), "5511988887777");
        assert_eq!(first.contact_name.as_deref(), Some("Maria"));
        assert_eq!(
            (first.content.as_deref(), first.sent_at.timestamp()),
            (Some("Olá"), 1767225600)
        );
        let InboundEvent::Message(second) = &events[1] else {
            panic!()
        };
        assert_eq!(
            (second.kind, second.content.as_deref()),
            (MessageKind::Image, Some("segue a foto"))
        );
        assert_eq!(
            events[2],
            InboundEvent::Status {
                provider_message_id: "wamid.OUT".into(),
                status: MessageStatus::Read
            }
        );
    }

    #[test]
    fn signatures_are_checked_over_the_raw_bytes() {
        let body = body();
        let mut mac = Hmac::<Sha256>::new_from_slice(b"app-secret").unwrap();
        mac.update(&body);
        let good = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert!(signature_is_valid(b"app-secret", &body, Some(&good)));
        assert!(!signature_is_valid(b"other-secret", &body, Some(&good)));
        let mut tampered = body.clone();
        tampered[10] ^= 1;
        assert!(!signature_is_valid(b"app-secret", &tampered, Some(&good)));
        assert!(!signature_is_valid(b"app-secret", &body, None));
        assert!(!signature_is_valid(b"app-secret", &body, Some("sha256=zz")));
        assert!(!signature_is_valid(b"app-secret", &body, Some(&good[7..])));
    }

    #[test]
    fn malformed_deliveries_are_refused() {
        assert!(parse(b"[]").is_err());
        assert!(parse(br#"{"entry": [{"changes": [{"field": "messages", "value": {"messages": [{"id": "x"}]}}]}]}"#).is_err());
        assert!(parse(br#"{"entry": [{"changes": [{"field": "messages", "value": {"messages": [{"id": "x", "from": "120363025@g.us"}]}}]}]}"#).is_err());
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&bytes);
            let _ = signature_is_valid(&bytes, &bytes, std::str::from_utf8(&bytes).ok());
        }
    }
}
