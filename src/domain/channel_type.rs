use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The kind of channel an inbox receives messages from (README: "Using the API").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelType {
    Evolution,
    WhatsappCloud,
    Dialog360,
    TwilioWhatsapp,
    TwilioSms,
    WebWidget,
    Email,
    Api,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown channel type {0:?}; expected one of {list}", list = ChannelType::ALL_NAMES.join(", "))]
pub struct ChannelTypeError(pub String);

/// How a stored inbox's channel is read: an unknown name is an error, not a default.
impl TryFrom<String> for ChannelType {
    type Error = ChannelTypeError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl ChannelType {
    pub const ALL: [ChannelType; 8] = [
        ChannelType::Evolution,
        ChannelType::WhatsappCloud,
        ChannelType::Dialog360,
        ChannelType::TwilioWhatsapp,
        ChannelType::TwilioSms,
        ChannelType::WebWidget,
        ChannelType::Email,
        ChannelType::Api,
    ];
    const ALL_NAMES: [&'static str; 8] = [
        "evolution",
        "whatsapp_cloud",
        "dialog360",
        "twilio_whatsapp",
        "twilio_sms",
        "web_widget",
        "email",
        "api",
    ];

    pub fn parse(s: &str) -> Result<Self, ChannelTypeError> {
        Self::ALL
            .iter()
            .zip(Self::ALL_NAMES)
            .find(|(_, name)| *name == s)
            .map(|(t, _)| *t)
            .ok_or_else(|| ChannelTypeError(s.to_owned()))
    }

    pub fn as_str(self) -> &'static str {
        let index = Self::ALL.iter().position(|t| *t == self).expect("listed");
        Self::ALL_NAMES[index]
    }

    /// Only WhatsApp-like inboxes can be a migration source or destination.
    pub fn is_whatsapp_like(self) -> bool {
        matches!(
            self,
            ChannelType::Evolution
                | ChannelType::WhatsappCloud
                | ChannelType::Dialog360
                | ChannelType::TwilioWhatsapp
        )
    }

    /// Whether two channels name messages with the same kind of provider id, so the same message can arrive
    /// through both with one id (Baileys ids for Evolution; Meta `wamid.` ids for Cloud and 360dialog; Twilio SIDs).
    pub fn shares_message_ids_with(self, other: ChannelType) -> bool {
        let family = |c: ChannelType| match c {
            ChannelType::Evolution => Some(0),
            ChannelType::WhatsappCloud | ChannelType::Dialog360 => Some(1),
            ChannelType::TwilioWhatsapp | ChannelType::TwilioSms => Some(2),
            _ => None,
        };
        family(self).is_some() && family(self) == family(other)
    }

    /// A human name for pages and CLI output.
    pub fn label(self) -> &'static str {
        match self {
            ChannelType::Evolution => "WhatsApp (Evolution API)",
            ChannelType::WhatsappCloud => "WhatsApp Cloud API",
            ChannelType::Dialog360 => "WhatsApp (360dialog)",
            ChannelType::TwilioWhatsapp => "WhatsApp (Twilio)",
            ChannelType::TwilioSms => "SMS (Twilio)",
            ChannelType::WebWidget => "Website chat",
            ChannelType::Email => "Email",
            ChannelType::Api => "API",
        }
    }
}

impl fmt::Display for ChannelType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChannelType {
    type Err = ChannelTypeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips_through_its_name_and_serde() {
        for t in ChannelType::ALL {
            assert_eq!(ChannelType::parse(t.as_str()), Ok(t));
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.as_str()));
            assert_eq!(serde_json::from_str::<ChannelType>(&json).unwrap(), t);
        }
    }

    #[test]
    fn exactly_the_four_whatsapp_providers_are_whatsapp_like() {
        let like: Vec<_> = ChannelType::ALL
            .into_iter()
            .filter(|t| t.is_whatsapp_like())
            .collect();
        assert_eq!(
            like,
            [
                ChannelType::Evolution,
                ChannelType::WhatsappCloud,
                ChannelType::Dialog360,
                ChannelType::TwilioWhatsapp
            ]
        );
    }

    #[test]
    fn message_id_families() {
        use ChannelType::*;
        assert!(WhatsappCloud.shares_message_ids_with(Dialog360));
        assert!(Evolution.shares_message_ids_with(Evolution));
        assert!(!Evolution.shares_message_ids_with(WhatsappCloud));
        assert!(!WebWidget.shares_message_ids_with(WebWidget));
    }

    #[test]
    fn unknown_and_differently_cased_names_are_rejected() {
        for bad in ["", "Evolution", "whatsapp", "sms", "twilio", " api"] {
            let err = ChannelType::parse(bad).unwrap_err();
            assert!(err.to_string().contains("whatsapp_cloud"), "{err}");
        }
    }
}
