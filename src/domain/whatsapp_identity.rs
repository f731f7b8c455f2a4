//! One person's WhatsApp identity, whatever a provider calls it (README: "Receiving webhooks").
//!
//! Canonical form: the digits of the E.164 number (`5511988887777`), or, for a WhatsApp "linked identity"
//! that hides the number and has no known phone, `<digits>@lid`, which is an identity of its own; or, for a user
//! with a WhatsApp username whose number is not shared with the business, Meta's business-scoped user id
//! (BSUID, `US.13491208655302741918`, a parent id `US.ENT.…`), valid only within one business portfolio.

use std::fmt;

use super::ChannelType;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WhatsAppIdentity(Kind);

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    Phone(String),
    Lid(String),
    Bsuid(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("empty WhatsApp identity")]
    Empty,
    #[error("{0:?} is a group chat, not a contact")]
    Group(String),
    #[error("{0:?} is a broadcast or newsletter address, not a contact")]
    Broadcast(String),
    #[error("{0:?} is not a phone number (E.164 has 8 to 15 digits and no leading zero)")]
    NotAPhoneNumber(String),
    #[error("{0:?} is not a WhatsApp address")]
    Unrecognised(String),
    #[error("a linked identity (@lid) without a phone number cannot be addressed on {0}")]
    LidNotAddressable(ChannelType),
    #[error("a business-scoped user id (BSUID) cannot be addressed on {0}")]
    BsuidNotAddressable(ChannelType),
    #[error("{0} is not a WhatsApp channel")]
    NotWhatsApp(ChannelType),
}

impl WhatsAppIdentity {
    /// Accepts every provider's native format: Evolution JIDs (`…@s.whatsapp.net`, `…@c.us`, with or without a
    /// `:device` suffix, `…@lid`), Cloud/360dialog `wa_id` digits or BSUID (`US.…`), Twilio `whatsapp:+…`, and
    /// plain `+55 (11) …`.
    pub fn parse(input: &str) -> Result<Self, IdentityError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(IdentityError::Empty);
        }
        if is_bsuid(s) {
            return Ok(Self(Kind::Bsuid(s.to_owned())));
        }
        if let Some((user, server)) = s.rsplit_once('@') {
            // `5511988887777:12@s.whatsapp.net` names device 12 of that number.
            let user = user.split(':').next().unwrap_or_default();
            return match server.to_ascii_lowercase().as_str() {
                "s.whatsapp.net" | "c.us" => {
                    phone_digits(user, input).map(|d| Self(Kind::Phone(d)))
                }
                "lid" if !user.is_empty() && user.bytes().all(|b| b.is_ascii_digit()) => {
                    Ok(Self(Kind::Lid(user.to_owned())))
                }
                "g.us" => Err(IdentityError::Group(input.to_owned())),
                "broadcast" | "newsletter" => Err(IdentityError::Broadcast(input.to_owned())),
                _ => Err(IdentityError::Unrecognised(input.to_owned())),
            };
        }
        let number = s.strip_prefix("whatsapp:").unwrap_or(s);
        phone_digits(number, input).map(|d| Self(Kind::Phone(d)))
    }

    /// Evolution (Baileys) names a sender by `remoteJid` and, when that is a LID, may add the phone JID as
    /// `remoteJidAlt`: prefer the phone so that the same person matches across providers.
    pub fn from_evolution(
        remote_jid: &str,
        remote_jid_alt: Option<&str>,
    ) -> Result<Self, IdentityError> {
        let primary = Self::parse(remote_jid)?;
        if primary.is_lid()
            && let Some(alt) = remote_jid_alt.and_then(|a| Self::parse(a).ok())
            && !alt.is_lid()
        {
            return Ok(alt);
        }
        Ok(primary)
    }

    /// Reads a `contact_inboxes.source_id` written for `channel`.
    pub fn from_source_id(channel: ChannelType, source_id: &str) -> Result<Self, IdentityError> {
        if !channel.is_whatsapp_like() {
            return Err(IdentityError::NotWhatsApp(channel));
        }
        Self::parse(source_id)
    }

    /// The `contact_inboxes.source_id` this identity has in an inbox of `channel`.
    pub fn to_source_id(&self, channel: ChannelType) -> Result<String, IdentityError> {
        match (&self.0, channel) {
            (Kind::Phone(d), ChannelType::Evolution) => Ok(format!("{d}@s.whatsapp.net")),
            (Kind::Lid(d), ChannelType::Evolution) => Ok(format!("{d}@lid")),
            (Kind::Phone(d), ChannelType::WhatsappCloud | ChannelType::Dialog360) => Ok(d.clone()),
            (Kind::Phone(d), ChannelType::TwilioWhatsapp) => Ok(format!("whatsapp:+{d}")),
            (Kind::Lid(_), c) if c.is_whatsapp_like() => Err(IdentityError::LidNotAddressable(c)),
            (Kind::Bsuid(b), ChannelType::WhatsappCloud | ChannelType::Dialog360) => Ok(b.clone()),
            (Kind::Bsuid(_), c) if c.is_whatsapp_like() => {
                Err(IdentityError::BsuidNotAddressable(c))
            }
            (_, c) => Err(IdentityError::NotWhatsApp(c)),
        }
    }

    /// The canonical form stored in `contact_inboxes.wa_identity`.
    pub fn canonical(&self) -> String {
        match &self.0 {
            Kind::Phone(d) => d.clone(),
            Kind::Lid(d) => format!("{d}@lid"),
            Kind::Bsuid(b) => b.clone(),
        }
    }

    /// E.164 digits, when this identity is a phone number.
    pub fn phone_digits(&self) -> Option<&str> {
        match &self.0 {
            Kind::Phone(d) => Some(d),
            Kind::Lid(_) | Kind::Bsuid(_) => None,
        }
    }

    /// `+5511988887777`, for `contacts.phone_number`.
    pub fn e164(&self) -> Option<String> {
        self.phone_digits().map(|d| format!("+{d}"))
    }

    pub fn is_lid(&self) -> bool {
        matches!(self.0, Kind::Lid(_))
    }

    /// A business-scoped user id: it names the person only within one business portfolio (one provider
    /// connection), so it cannot follow them to another provider.
    pub fn is_bsuid(&self) -> bool {
        matches!(self.0, Kind::Bsuid(_))
    }

    /// The key two identities are compared by. With `merge_brazil_ninth_digit`, a Brazilian mobile number
    /// written with the ninth digit (`55 11 9xxxx-xxxx`) and without it (`55 11 xxxx-xxxx`) get one key.
    pub fn match_key(&self, merge_brazil_ninth_digit: bool) -> String {
        match &self.0 {
            Kind::Phone(d) if merge_brazil_ninth_digit => {
                brazil_without_ninth_digit(d).unwrap_or_else(|| d.clone())
            }
            _ => self.canonical(),
        }
    }

    pub fn same_person(&self, other: &Self, merge_brazil_ninth_digit: bool) -> bool {
        self.match_key(merge_brazil_ninth_digit) == other.match_key(merge_brazil_ninth_digit)
    }
}

impl fmt::Display for WhatsAppIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

/// `CC.<id>` or `CC.ENT.<id>`: a two-letter country code, then an alphanumeric id (Meta's business-scoped user
/// ids). Never a phone number (letters) nor a JID (no `@`).
fn is_bsuid(s: &str) -> bool {
    let Some((country, rest)) = s.split_once('.') else {
        return false;
    };
    let id = rest.strip_prefix("ENT.").unwrap_or(rest);
    country.len() == 2
        && country.bytes().all(|b| b.is_ascii_uppercase())
        && (1..=128).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Digits of a phone number, tolerating the punctuation people and providers put in.
fn phone_digits(number: &str, original: &str) -> Result<String, IdentityError> {
    let number = number.trim();
    let number = number.strip_prefix('+').unwrap_or(number);
    let mut digits = String::with_capacity(number.len());
    for c in number.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '(' | ')' | '.' => {}
            _ => return Err(IdentityError::NotAPhoneNumber(original.to_owned())),
        }
    }
    if !(8..=15).contains(&digits.len()) || digits.starts_with('0') {
        return Err(IdentityError::NotAPhoneNumber(original.to_owned()));
    }
    Ok(digits)
}

/// `55 DD 9 NNNN NNNN` (13 digits, mobile) → `55 DD NNNN NNNN`. Brazilian mobile subscriber numbers begin with
/// 6–9 after the added nine; landlines (2–5) never had one, and area codes have no zero.
fn brazil_without_ninth_digit(d: &str) -> Option<String> {
    let b = d.as_bytes();
    let area_ok = b.len() == 13 && b[2] != b'0' && b[3] != b'0';
    if d.starts_with("55") && area_ok && b[4] == b'9' && (b'6'..=b'9').contains(&b[5]) {
        Some(format!("{}{}", &d[..4], &d[5..]))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const WA: [ChannelType; 4] = [
        ChannelType::Evolution,
        ChannelType::WhatsappCloud,
        ChannelType::Dialog360,
        ChannelType::TwilioWhatsapp,
    ];

    fn id(s: &str) -> WhatsAppIdentity {
        WhatsAppIdentity::parse(s).unwrap()
    }

    #[test]
    fn every_provider_format_gives_the_same_canonical_digits() {
        for s in [
            "5511988887777@s.whatsapp.net",
            "5511988887777:23@s.whatsapp.net",
            "5511988887777@c.us",
            "5511988887777",
            "whatsapp:+5511988887777",
            "+55 (11) 98888-7777",
        ] {
            assert_eq!(id(s).canonical(), "5511988887777", "{s}");
        }
    }

    #[test]
    fn native_source_ids_per_channel() {
        let p = id("5511988887777");
        assert_eq!(
            p.to_source_id(ChannelType::Evolution).unwrap(),
            "5511988887777@s.whatsapp.net"
        );
        assert_eq!(
            p.to_source_id(ChannelType::WhatsappCloud).unwrap(),
            "5511988887777"
        );
        assert_eq!(
            p.to_source_id(ChannelType::Dialog360).unwrap(),
            "5511988887777"
        );
        assert_eq!(
            p.to_source_id(ChannelType::TwilioWhatsapp).unwrap(),
            "whatsapp:+5511988887777"
        );
        assert_eq!(
            p.to_source_id(ChannelType::WebWidget),
            Err(IdentityError::NotWhatsApp(ChannelType::WebWidget))
        );
        assert_eq!(p.e164().as_deref(), Some("+5511988887777"));
    }

    #[test]
    fn a_lid_is_its_own_identity_unless_the_phone_is_known() {
        let lid = id("123456789012345@lid");
        assert!(lid.is_lid());
        assert_eq!(lid.canonical(), "123456789012345@lid");
        assert_eq!(lid.phone_digits(), None);
        assert_eq!(
            lid.to_source_id(ChannelType::Evolution).unwrap(),
            "123456789012345@lid"
        );
        assert_eq!(
            lid.to_source_id(ChannelType::WhatsappCloud),
            Err(IdentityError::LidNotAddressable(ChannelType::WhatsappCloud))
        );
        let resolved = WhatsAppIdentity::from_evolution(
            "123456789012345@lid",
            Some("5511988887777@s.whatsapp.net"),
        )
        .unwrap();
        assert_eq!(resolved.canonical(), "5511988887777");
        let unresolved = WhatsAppIdentity::from_evolution("123456789012345@lid", None).unwrap();
        assert_eq!(unresolved, lid);
        let phone_first =
            WhatsAppIdentity::from_evolution("5511988887777@s.whatsapp.net", Some("99@lid"))
                .unwrap();
        assert_eq!(phone_first.canonical(), "5511988887777");
    }

    #[test]
    fn a_bsuid_is_an_identity_of_cloud_numbers_only() {
        for raw in [
            "US.13491208655302741918",
            "US.ENT.13491208655302741918",
            " BR.Ab12 ",
        ] {
            let b = id(raw);
            assert!(b.is_bsuid() && !b.is_lid(), "{raw}");
            assert_eq!(b.canonical(), raw.trim());
            assert_eq!((b.phone_digits(), b.e164()), (None, None));
            assert_eq!(b.match_key(true), raw.trim(), "never folded like a phone");
            for channel in [ChannelType::WhatsappCloud, ChannelType::Dialog360] {
                assert_eq!(b.to_source_id(channel).unwrap(), raw.trim());
                assert_eq!(WhatsAppIdentity::from_source_id(channel, raw).unwrap(), b);
            }
            for channel in [ChannelType::Evolution, ChannelType::TwilioWhatsapp] {
                assert_eq!(
                    b.to_source_id(channel),
                    Err(IdentityError::BsuidNotAddressable(channel))
                );
            }
        }
        for bad in [
            "us.123",
            "USA.123",
            "US.",
            "US.ENT.",
            "US.12-3",
            "U.123",
            "US.123@lid",
        ] {
            assert!(!id_ok(bad).is_some_and(|i| i.is_bsuid()), "{bad}");
        }
    }

    fn id_ok(s: &str) -> Option<WhatsAppIdentity> {
        WhatsAppIdentity::parse(s).ok()
    }

    #[test]
    fn groups_broadcasts_and_junk_are_not_contacts() {
        assert!(matches!(
            WhatsAppIdentity::parse("120363025246125486@g.us"),
            Err(IdentityError::Group(_))
        ));
        assert!(matches!(
            WhatsAppIdentity::parse("status@broadcast"),
            Err(IdentityError::Broadcast(_))
        ));
        assert_eq!(WhatsAppIdentity::parse("  "), Err(IdentityError::Empty));
        for bad in [
            "abc",
            "0011988887777",
            "1234567",
            "1234567890123456",
            "5511988887777@example.com",
            "@lid",
            "whatsapp:+55x11",
            "9b2f6a7e-1f0c-4f59-9d9e-3c1f1c2a7b10",
        ] {
            assert!(WhatsAppIdentity::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn brazilian_ninth_digit_is_one_person_only_when_the_setting_is_on() {
        let with = id("5511988887777");
        let without = id("551188887777");
        assert!(with.same_person(&without, true));
        assert!(!with.same_person(&without, false));
        // a landline never had the ninth digit: never folded
        let landline = id("551140028922");
        assert_eq!(landline.match_key(true), "551140028922");
        // 13 digits but not Brazil, or a zero area code: untouched
        assert_eq!(id("4411988887777").match_key(true), "4411988887777");
        assert_eq!(id("5501988887777").match_key(true), "5501988887777");
        // a different subscriber stays a different person
        assert!(!with.same_person(&id("5511988887778"), true));
    }

    fn phone_strategy() -> impl Strategy<Value = String> {
        "[1-9][0-9]{7,14}"
    }

    proptest! {
        #[test]
        fn source_id_round_trips_for_every_whatsapp_channel(digits in phone_strategy()) {
            let identity = WhatsAppIdentity::parse(&digits).unwrap();
            for channel in WA {
                let source_id = identity.to_source_id(channel).unwrap();
                prop_assert_eq!(WhatsAppIdentity::from_source_id(channel, &source_id).unwrap(), identity.clone());
            }
        }

        #[test]
        fn converting_between_any_two_channels_keeps_the_person(digits in phone_strategy(), a in 0usize..4, b in 0usize..4) {
            let from = WhatsAppIdentity::parse(&digits).unwrap().to_source_id(WA[a]).unwrap();
            let to = WhatsAppIdentity::from_source_id(WA[a], &from).unwrap().to_source_id(WA[b]).unwrap();
            prop_assert_eq!(WhatsAppIdentity::parse(&to).unwrap().canonical(), digits);
        }

        #[test]
        fn brazilian_mobiles_match_with_and_without_the_nine(area in "[1-9][1-9]", first in "[6-9]", rest in "[0-9]{7}") {
            let with = WhatsAppIdentity::parse(&format!("55{area}9{first}{rest}")).unwrap();
            let without = WhatsAppIdentity::parse(&format!("55{area}{first}{rest}")).unwrap();
            prop_assert!(with.same_person(&without, true));
            prop_assert_eq!(with.match_key(true), without.canonical());
        }

        #[test]
        fn match_key_is_injective_off_the_brazil_rule(a in phone_strategy(), b in phone_strategy()) {
            let (x, y) = (WhatsAppIdentity::parse(&a).unwrap(), WhatsAppIdentity::parse(&b).unwrap());
            prop_assert_eq!(x.same_person(&y, false), a == b);
        }

        #[test]
        fn bsuids_round_trip_and_never_look_like_phones(country in "[A-Z]{2}", ent in any::<bool>(), digits in "[0-9]{1,24}", phone in phone_strategy()) {
            let raw = format!("{country}.{}{digits}", if ent { "ENT." } else { "" });
            let b = WhatsAppIdentity::parse(&raw).unwrap();
            prop_assert!(b.is_bsuid());
            prop_assert_eq!(WhatsAppIdentity::parse(&b.canonical()).unwrap(), b.clone());
            let p = WhatsAppIdentity::parse(&phone).unwrap();
            prop_assert!(!p.is_bsuid());
            prop_assert!(!b.same_person(&p, true));
            prop_assert_eq!(WhatsAppIdentity::from_source_id(ChannelType::WhatsappCloud, &b.to_source_id(ChannelType::Dialog360).unwrap()).unwrap(), b);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = WhatsAppIdentity::parse(&s);
        }
    }
}
