//! Property tests over every provider parser: random JSON (arbitrary, and shaped like each provider's envelope
//! with random leaves) never panics a parser, and what it yields is either a parse error (answered 400 and
//! kept as a dead letter) or events ingestion can store.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::event::{InboundEvent, NumberedEvent, ParseError};
use super::{cloud, dialog360, evolution, twilio};

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "\\PC{0,24}".prop_map(Value::from),
        // Values the parsers look for, so random trees reach deep branches.
        prop_oneof![
            Just("messages.upsert"),
            Just("messages.update"),
            Just("messages.delete"),
            Just("messages.edited"),
            Just("conversation"),
            Just("reactionMessage"),
            Just("protocolMessage"),
            Just("5511988887777@s.whatsapp.net"),
            Just("120363025@g.us"),
            Just("123@lid"),
            Just("whatsapp_business_account"),
            Just("text"),
            Just("image"),
            Just("DELIVERY_ACK"),
        ]
        .prop_map(Value::from),
    ]
}

fn tree() -> impl Strategy<Value = Value> {
    let keys = prop_oneof![
        Just("event".to_owned()),
        Just("data".to_owned()),
        Just("key".to_owned()),
        Just("id".to_owned()),
        Just("remoteJid".to_owned()),
        Just("fromMe".to_owned()),
        Just("message".to_owned()),
        Just("messageType".to_owned()),
        Just("messageTimestamp".to_owned()),
        Just("entry".to_owned()),
        Just("changes".to_owned()),
        Just("value".to_owned()),
        Just("messages".to_owned()),
        Just("statuses".to_owned()),
        Just("contacts".to_owned()),
        Just("from".to_owned()),
        Just("type".to_owned()),
        Just("timestamp".to_owned()),
        "[a-z]{1,8}",
    ];
    leaf().prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(keys.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn numbered(
    parsed: Result<Vec<NumberedEvent>, ParseError>,
) -> Result<Vec<InboundEvent>, ParseError> {
    parsed.map(|events| events.into_iter().map(|e| e.event).collect())
}

/// A parse yields a refusal or events; no event may carry an empty message id.
fn sound(parsed: Result<Vec<InboundEvent>, ParseError>) {
    for event in parsed.unwrap_or_default() {
        match event {
            InboundEvent::Message(m) | InboundEvent::NumberChanged { notice: m, .. } => {
                assert!(!m.provider_message_id.is_empty())
            }
            InboundEvent::Status {
                provider_message_id,
                ..
            } => assert!(!provider_message_id.is_empty()),
            InboundEvent::Change {
                target_message_id, ..
            } => assert!(!target_message_id.is_empty()),
            InboundEvent::Ignored { .. } => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_json_never_panics_any_parser(value in tree(), data in tree()) {
        let shaped = [
            value.clone(),
            json!({"event": "messages.upsert", "instance": "x", "data": data}),
            json!({"event": "messages.edited", "data": {"message": data}}),
            json!({"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", "value": data}]}]}),
            json!({"messages": [data.clone()], "contacts": [value]}),
        ];
        for body in shaped {
            let bytes = serde_json::to_vec(&body).unwrap();
            sound(evolution::parse(&bytes).map(|e| vec![e]));
            sound(numbered(cloud::parse(&bytes)));
            sound(numbered(dialog360::parse(&bytes)));
        }
    }

    #[test]
    fn random_forms_never_panic_twilio(pairs in proptest::collection::vec(("[A-Za-z0-9]{1,12}", "\\PC{0,20}"), 0..12)) {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &pairs {
            form.append_pair(k, v);
        }
        form.append_pair("From", "whatsapp:+5511988887777");
        let body = form.finish();
        sound(twilio::parse(&twilio::form(body.as_bytes())).map(|e| vec![e]));
    }
}
