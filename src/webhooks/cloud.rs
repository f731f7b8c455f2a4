//! Meta WhatsApp Cloud API webhooks (`reference/provider-webhooks.md` §4): signed with the app secret
//! (`X-Hub-Signature-256`, HMAC-SHA256 over the raw bytes), batched (every entry × change × message/status).

use chrono::{TimeZone, Utc};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::event::{
    InboundEvent, InboundMessage, Media, MediaSource, MessageKind, MessageStatus, ParseError,
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

/// Every message and status of a (possibly batched) delivery, in order.
pub fn parse(body: &[u8]) -> Result<Vec<InboundEvent>, ParseError> {
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
        if change.get("field").and_then(Value::as_str) != Some("messages") {
            out.push(InboundEvent::Ignored {
                reason: "a change of another field".into(),
            });
            continue;
        }
        value_events(value, &mut out)?;
    }
    Ok(out)
}

/// The messages and statuses of one `value` object (a Cloud change, or a whole 360dialog on-premise body).
pub fn value_events(value: &Value, out: &mut Vec<InboundEvent>) -> Result<(), ParseError> {
    let names: Vec<(&str, &str)> = value
        .get("contacts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| {
            Some((
                c.get("wa_id")?.as_str()?,
                c.pointer("/profile/name")?.as_str()?,
            ))
        })
        .collect();
    for m in value
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.push(message(m, &names)?);
    }
    for s in value
        .get("statuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.push(status(s)?);
    }
    Ok(())
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn message(m: &Value, names: &[(&str, &str)]) -> Result<InboundEvent, ParseError> {
    let id = str_at(m, "/id")
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ParseError("a message without \"id\"".into()))?;
    let from = str_at(m, "/from").ok_or_else(|| ParseError("a message without \"from\"".into()))?;
    let contact = WhatsAppIdentity::parse(from).map_err(|e| ParseError(format!("from: {e}")))?;
    let sent_at = str_at(m, "/timestamp")
        .and_then(|t| t.parse::<i64>().ok())
        .and_then(|secs| Utc.timestamp_opt(secs, 0).single())
        .map(|at| at.min(Utc::now() + chrono::Duration::days(1)))
        .unwrap_or_else(Utc::now);
    let kind_name = str_at(m, "/type").unwrap_or("");
    let caption = |kind: &str| str_at(m, &format!("/{kind}/caption")).map(str::to_owned);
    let (kind, content, target) = match kind_name {
        "text" => (
            MessageKind::Text,
            str_at(m, "/text/body").map(str::to_owned),
            None,
        ),
        "image" => (MessageKind::Image, caption("image"), None),
        "video" => (MessageKind::Video, caption("video"), None),
        "audio" => (MessageKind::Audio, None, None),
        "document" => (
            MessageKind::Document,
            caption("document").or_else(|| str_at(m, "/document/filename").map(str::to_owned)),
            None,
        ),
        "sticker" => (MessageKind::Sticker, None, None),
        "location" => (
            MessageKind::Location,
            str_at(m, "/location/name").map(str::to_owned),
            None,
        ),
        "contacts" => (MessageKind::Contact, None, None),
        "reaction" => (
            MessageKind::Reaction,
            str_at(m, "/reaction/emoji").map(str::to_owned),
            str_at(m, "/reaction/message_id").map(str::to_owned),
        ),
        _ => (MessageKind::Other, None, None),
    };
    Ok(InboundEvent::Message(InboundMessage {
        provider_message_id: id.to_owned(),
        contact_name: names
            .iter()
            .find(|(wa_id, _)| *wa_id == from)
            .map(|(_, name)| name.trim().to_owned())
            .filter(|n| !n.is_empty()),
        contact,
        // Cloud delivers only what customers send (business echoes are another field).
        outgoing: false,
        sent_at,
        content,
        kind,
        target_message_id: target,
        media: match kind_name {
            "image" | "video" | "audio" | "document" | "sticker" => {
                str_at(m, &format!("/{kind_name}/id")).map(|media_id| Media {
                    content_type: str_at(m, &format!("/{kind_name}/mime_type")).map(str::to_owned),
                    file_name: str_at(m, &format!("/{kind_name}/filename")).map(str::to_owned),
                    source: MediaSource::Cloud {
                        media_id: media_id.to_owned(),
                    },
                })
            }
            _ => None,
        },
    }))
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
        let events = parse(&body()).unwrap();
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
