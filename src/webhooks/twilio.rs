//! Twilio WhatsApp webhooks (`reference/provider-webhooks.md` §6): form posts signed with `X-Twilio-Signature`
//! = base64(HMAC-SHA1(auth token, URL as configured + every parameter name and value, sorted by name)).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::Utc;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use super::event::{
    InboundEvent, InboundMessage, Media, MediaSource, MessageKind, MessageStatus, ParseError,
};
use crate::domain::WhatsAppIdentity;

pub type Params = Vec<(String, String)>;

pub fn form(body: &[u8]) -> Params {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn expected(auth_token: &[u8], url: &str, params: &Params) -> Option<Vec<u8>> {
    // As Twilio's SDKs do: sorted by name then value, and an identical (name, value) pair counted once.
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    sorted.dedup();
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token).ok()?;
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    Some(mac.finalize().into_bytes().to_vec())
}

/// Checks the signature against `url` and, as Twilio's own libraries do, the same URL with the scheme's
/// default port written out or left out.
/// `X-Twilio-Signature` of a form post to `url` (what Twilio sends; `ferry integrations test` signs so).
pub fn sign(auth_token: &[u8], url: &str, params: &Params) -> String {
    STANDARD.encode(expected(auth_token, url, params).unwrap_or_default())
}

pub fn signature_is_valid(
    auth_token: &[u8],
    url: &str,
    params: &Params,
    header: Option<&str>,
) -> bool {
    let Some(given) = header.and_then(|h| STANDARD.decode(h.trim()).ok()) else {
        return false;
    };
    let mut candidates = vec![url.to_owned()];
    if let Ok(mut parsed) = url::Url::parse(url) {
        let default = match parsed.scheme() {
            "https" => Some(443),
            "http" => Some(80),
            _ => None,
        };
        if parsed.port().is_some() {
            let _ = parsed.set_port(None);
        } else if let Some(port) = default {
            let _ = parsed.set_port(Some(port));
            // `Url` drops a default port on output; build the explicit form by hand.
            let host = parsed.host_str().unwrap_or_default().to_owned();
            let explicit = url.replacen(&host, &format!("{host}:{port}"), 1);
            candidates.push(explicit);
        }
        candidates.push(parsed.to_string());
    }
    candidates.iter().any(|candidate| {
        expected(auth_token, candidate, params).is_some_and(|mac| {
            // Constant time over equal lengths.
            mac.len() == given.len()
                && mac
                    .iter()
                    .zip(&given)
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        })
    })
}

fn get<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

pub fn parse(params: &Params) -> Result<InboundEvent, ParseError> {
    let sid = get(params, "MessageSid")
        .or_else(|| get(params, "SmsMessageSid"))
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ParseError("no MessageSid".into()))?;
    // A status callback names the status and carries no inbound message.
    if let Some(status) =
        get(params, "MessageStatus").filter(|_| get(params, "SmsStatus") != Some("received"))
    {
        let status = match status {
            "queued" | "accepted" | "sending" => MessageStatus::Pending,
            "sent" => MessageStatus::Sent,
            "delivered" => MessageStatus::Delivered,
            "read" => MessageStatus::Read,
            "undelivered" | "failed" => MessageStatus::Failed,
            other => {
                return Ok(InboundEvent::Ignored {
                    reason: format!("status {other:?} is not a delivery receipt"),
                });
            }
        };
        return Ok(InboundEvent::Status {
            provider_message_id: sid.to_owned(),
            status,
        });
    }
    let from = get(params, "From").ok_or_else(|| ParseError("no From".into()))?;
    let contact = WhatsAppIdentity::parse(from).map_err(|e| ParseError(format!("From: {e}")))?;
    let media: usize = get(params, "NumMedia")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let kind = if media == 0 {
        if get(params, "Latitude").is_some() {
            MessageKind::Location
        } else {
            MessageKind::Text
        }
    } else {
        match get(params, "MediaContentType0")
            .unwrap_or("")
            .split('/')
            .next()
        {
            Some("image") => MessageKind::Image,
            Some("audio") => MessageKind::Audio,
            Some("video") => MessageKind::Video,
            _ => MessageKind::Document,
        }
    };
    let mut attributes = serde_json::Map::new();
    if let Some(replied) = get(params, "OriginalRepliedMessageSid").filter(|s| !s.is_empty()) {
        attributes.insert("in_reply_to".into(), replied.into());
    }
    if kind == MessageKind::Location {
        let number = |name| get(params, name).and_then(|v| v.parse::<f64>().ok());
        attributes.insert(
            "location".into(),
            super::cloud::location_attributes(&serde_json::json!({
                "latitude": number("Latitude"), "longitude": number("Longitude"),
                "name": get(params, "Label"), "address": get(params, "Address"),
            })),
        );
    }
    if let Some(payload) = get(params, "ButtonPayload") {
        attributes.insert(
            "button".into(),
            serde_json::json!({"payload": payload, "text": get(params, "ButtonText")}),
        );
    }
    Ok(InboundEvent::Message(InboundMessage {
        provider_message_id: sid.to_owned(),
        contact,
        contact_name: get(params, "ProfileName")
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned),
        // Twilio's inbound webhook is always customer → business.
        outgoing: false,
        // Twilio sends no timestamp: the message is as old as its arrival.
        sent_at: Utc::now(),
        content: get(params, "Body")
            .filter(|b| !b.is_empty())
            .map(str::to_owned),
        kind,
        target_message_id: None,
        alias: None,
        attributes,
        media: (media > 0)
            .then(|| get(params, "MediaUrl0"))
            .flatten()
            .map(|url| Media {
                content_type: get(params, "MediaContentType0").map(str::to_owned),
                file_name: None,
                source: MediaSource::Url {
                    url: url.to_owned(),
                    account_sid: get(params, "AccountSid").map(str::to_owned),
                },
            }),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn twilio_documentation_example_signature() {
        let params = p(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]);
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert!(signature_is_valid(
            b"12345",
            url,
            &params,
            Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=")
        ));
        assert!(!signature_is_valid(
            b"54321",
            url,
            &params,
            Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=")
        ));
        let mut changed = params.clone();
        changed[2].1 = "9999".into();
        assert!(!signature_is_valid(
            b"12345",
            url,
            &changed,
            Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=")
        ));
        assert!(!signature_is_valid(b"12345", url, &params, None));
    }

    /// twilio-python's published vector for repeated values: sorted by name then value, the identical
    /// (`Digits`, `1234`) pair counted once.
    #[test]
    fn twilio_sdk_vector_with_repeated_values() {
        let params = p(&[
            ("Sid", "CA123"),
            ("SidAccount", "AC123"),
            ("Digits", "5678"),
            ("Digits", "1234"),
            ("Digits", "1234"),
        ]);
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert!(signature_is_valid(
            b"12345",
            url,
            &params,
            Some("IK+Dwps556ElfBT0I3Rgjkr1wJU=")
        ));
        // The same signature without the de-duplication (what ferry computed before).
        assert!(!signature_is_valid(
            b"12345",
            url,
            &params,
            Some("tM//N+MVWOh7+ol2z8YCNxSY0Eg=")
        ));
        // A GET webhook: the signature covers the URL with its query string, and no parameters.
        let get = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(
            sign(b"12345", get, &Vec::new()),
            "zYQTYrRWXE7LtzbG4PfP7/bkkGo="
        );
    }

    #[test]
    fn the_default_port_may_be_written_or_not() {
        let params = p(&[("Body", "oi"), ("MessageSid", "SM1")]);
        let with_port = "https://ferry.example.com:443/webhooks/twilio/fwh_x";
        let mac = STANDARD.encode(expected(b"tok", with_port, &params).unwrap());
        assert!(signature_is_valid(
            b"tok",
            "https://ferry.example.com/webhooks/twilio/fwh_x",
            &params,
            Some(&mac)
        ));
        let without = STANDARD.encode(
            expected(
                b"tok",
                "https://ferry.example.com/webhooks/twilio/fwh_x",
                &params,
            )
            .unwrap(),
        );
        assert!(signature_is_valid(
            b"tok",
            with_port,
            &params,
            Some(&without)
        ));
    }

    #[test]
    fn messages_media_and_statuses() {
        let m = parse(&p(&[
            ("MessageSid", "SM1"),
            ("From", "whatsapp:+5511988887777"),
            ("To", "whatsapp:+15550001111"),
            ("Body", "Olá"),
            ("NumMedia", "0"),
            ("ProfileName", "Maria"),
            ("WaId", "5511988887777"),
            ("SmsStatus", "received"),
        ]))
        .unwrap();
        let InboundEvent::Message(m) = m else {
            panic!("{m:?}")
        };
        assert_eq!(
            (m.contact.canonical().as_str(), m.content.as_deref()),
            ("5511988887777", Some("Olá"))
        );
        assert_eq!(m.contact_name.as_deref(), Some("Maria"));
        let img = parse(&p(&[
            ("MessageSid", "MM2"),
            ("From", "whatsapp:+5511988887777"),
            ("NumMedia", "1"),
            ("MediaContentType0", "image/jpeg"),
            ("MediaUrl0", "https://api.twilio.com/x"),
        ]))
        .unwrap();
        assert!(matches!(
            img,
            InboundEvent::Message(InboundMessage {
                kind: MessageKind::Image,
                ..
            })
        ));
        assert_eq!(
            parse(&p(&[("MessageSid", "SM1"), ("MessageStatus", "read")])).unwrap(),
            InboundEvent::Status {
                provider_message_id: "SM1".into(),
                status: MessageStatus::Read
            }
        );
        assert!(parse(&p(&[("Body", "x")])).is_err());
        assert!(parse(&p(&[("MessageSid", "SM3"), ("From", "not a phone")])).is_err());
    }

    proptest! {
        #[test]
        fn random_forms_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let params = form(&bytes);
            let _ = parse(&params);
            let _ = signature_is_valid(&bytes, "https://x.example/a", &params, std::str::from_utf8(&bytes).ok());
        }
    }
}
