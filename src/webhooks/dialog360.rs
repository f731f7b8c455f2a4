//! 360dialog webhooks (`reference/provider-webhooks.md` §5): the Cloud API variant is Meta's shape without a
//! signature; the legacy on-premise variant is one flat `{contacts, messages, statuses}` object. Channel
//! webhooks are not signed: the secret token in the path authenticates them.

use serde_json::Value;

use super::cloud;
use super::event::{NumberedEvent, ParseError};

/// The events of a delivery with the number each is for (a WABA webhook serves all numbers of the WABA; an
/// on-premise body names none: it is the integration's own).
pub fn parse(body: &[u8]) -> Result<Vec<NumberedEvent>, ParseError> {
    let root: Value =
        serde_json::from_slice(body).map_err(|e| ParseError(format!("not JSON: {e}")))?;
    if root.get("object").is_some() || root.get("entry").is_some() {
        return cloud::parse(body);
    }
    if !root.is_object()
        || !["messages", "statuses", "contacts"]
            .iter()
            .any(|k| root.get(k).is_some_and(Value::is_array))
    {
        return Err(ParseError(
            "neither a Cloud (entry) nor an on-premise (messages/statuses) body".into(),
        ));
    }
    let mut out = Vec::new();
    cloud::value_events(&root, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhooks::event::{InboundEvent, MessageKind, MessageStatus};
    use proptest::prelude::*;

    #[test]
    fn both_shapes_are_read() {
        let on_premise = br#"{"contacts": [{"profile": {"name": "Maria"}, "wa_id": "5511988887777"}],
            "messages": [{"from": "5511988887777", "id": "ABGGFlA5Fpa", "timestamp": "1767225600", "type": "image",
                          "image": {"id": "m1", "mime_type": "image/jpeg", "caption": "foto"}}]}"#;
        let events = parse(on_premise).unwrap();
        assert_eq!(events[0].phone_number_id, None);
        let InboundEvent::Message(m) = &events[0].event else {
            panic!("{events:?}")
        };
        assert_eq!(
            (m.provider_message_id.as_str(), m.kind),
            ("ABGGFlA5Fpa", MessageKind::Image)
        );
        assert_eq!(m.contact_name.as_deref(), Some("Maria"));
        let statuses = br#"{"statuses": [{"id": "ABG", "recipient_id": "5511988887777", "status": "delivered", "timestamp": "1"}]}"#;
        assert_eq!(
            parse(statuses).unwrap(),
            vec![NumberedEvent {
                phone_number_id: None,
                event: InboundEvent::Status {
                    provider_message_id: "ABG".into(),
                    status: MessageStatus::Delivered
                }
            }]
        );
        let cloud_shaped = br#"{"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages",
            "value": {"messages": [{"from": "5511988887777", "id": "wamid.X", "timestamp": "1", "type": "text", "text": {"body": "oi"}}]}}]}]}"#;
        assert_eq!(parse(cloud_shaped).unwrap().len(), 1);
        assert!(parse(br#"{"hello": 1}"#).is_err());
        assert!(parse(b"[1]").is_err());
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&bytes);
        }
    }
}
