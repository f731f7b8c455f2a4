//! Where a person's WhatsApp identity lives in each kind of Chatwoot inbox, and the `source_id` it needs in
//! another. Cloud and 360dialog keep the wa_id digits in `contact_inboxes.source_id`, Twilio `whatsapp:+<digits>`;
//! an Evolution API inbox gives its contact_inboxes random UUIDs and keeps the JID on the contact
//! (`contacts.identifier`, with `contacts.phone_number`). LID, group and BSUID identities cannot follow a person
//! to another inbox: they stay in the source.

use super::InboxKind;
use crate::domain::{ChannelType, IdentityError, WhatsAppIdentity};

/// What the adapter reads of a contact_inbox and its contact to find the person.
#[derive(Debug, Clone, Copy)]
pub struct Person<'a> {
    pub source_id: &'a str,
    pub identifier: Option<&'a str>,
    pub phone_number: Option<&'a str>,
}

/// Where a contact_inbox goes in the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Its `source_id` there.
    SourceId(String),
    /// An Evolution inbox: the contact_inbox keeps its `source_id` (a UUID; the identity is on the contact).
    KeepSourceId,
}

impl InboxKind {
    fn channel(self) -> ChannelType {
        match self {
            InboxKind::WhatsappCloud => ChannelType::WhatsappCloud,
            InboxKind::Dialog360 => ChannelType::Dialog360,
            InboxKind::TwilioWhatsapp => ChannelType::TwilioWhatsapp,
            InboxKind::Evolution => ChannelType::Evolution,
        }
    }

    /// The person of a contact_inbox of an inbox of this kind.
    pub fn identity_of(self, person: Person<'_>) -> Result<WhatsAppIdentity, IdentityError> {
        match self {
            InboxKind::Evolution => {
                let phone = person.phone_number.filter(|p| !p.trim().is_empty());
                match person.identifier.filter(|i| !i.trim().is_empty()) {
                    // A LID with the contact's phone known is that phone: the person matches across providers.
                    Some(jid) => WhatsAppIdentity::from_evolution(jid, phone),
                    None => WhatsAppIdentity::parse(phone.unwrap_or_default()),
                }
            }
            kind => WhatsAppIdentity::from_source_id(kind.channel(), person.source_id),
        }
    }

    /// Where a person moves in an inbox of this kind; an error says why they cannot (a LID, a BSUID).
    pub fn destination_of(self, identity: &WhatsAppIdentity) -> Result<Destination, IdentityError> {
        // A BSUID names the person only within one business portfolio (one connection): it stays.
        if identity.is_bsuid() {
            return Err(IdentityError::BsuidNotAddressable(self.channel()));
        }
        match self {
            InboxKind::Evolution => Ok(Destination::KeepSourceId),
            kind => identity
                .to_source_id(kind.channel())
                .map(Destination::SourceId),
        }
    }
}

/// The phone digits the same person may be stored under: the number itself, and its form with and without the
/// Brazilian ninth digit (`55 DD 9NNNN NNNN` and `55 DD NNNN NNNN`). Empty for a LID or BSUID.
pub fn phone_forms(identity: &WhatsAppIdentity) -> Vec<String> {
    let Some(digits) = identity.phone_digits() else {
        return Vec::new();
    };
    let folded = identity.match_key(true);
    let mut forms = vec![digits.to_owned()];
    let mobile_without_nine = folded.len() == 12
        && folded.starts_with("55")
        && matches!(folded.as_bytes()[4], b'6'..=b'9');
    if mobile_without_nine {
        forms.push(folded.clone());
        forms.push(format!("{}9{}", &folded[..4], &folded[4..]));
    }
    forms.sort();
    forms.dedup();
    forms
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cloud(source_id: &str) -> Person<'_> {
        Person {
            source_id,
            identifier: None,
            phone_number: None,
        }
    }

    fn evolution<'a>(identifier: Option<&'a str>, phone: Option<&'a str>) -> Person<'a> {
        Person {
            source_id: "1f0c7c5e-8d1b-4a6e-9b7a-3c2d1e0f9a8b",
            identifier,
            phone_number: phone,
        }
    }

    #[test]
    fn each_kind_reads_the_person_where_chatwoot_keeps_it() {
        let ana = WhatsAppIdentity::parse("5511988887777").unwrap();
        let read = |kind: InboxKind, p| kind.identity_of(p).unwrap();
        assert_eq!(read(InboxKind::WhatsappCloud, cloud("5511988887777")), ana);
        assert_eq!(read(InboxKind::Dialog360, cloud("5511988887777")), ana);
        assert_eq!(
            read(InboxKind::TwilioWhatsapp, cloud("whatsapp:+5511988887777")),
            ana
        );
        let jid = evolution(Some("5511988887777@s.whatsapp.net"), None);
        assert_eq!(read(InboxKind::Evolution, jid), ana);
        // No identifier: the contact's phone.
        let phone_only = evolution(None, Some("+5511988887777"));
        assert_eq!(read(InboxKind::Evolution, phone_only), ana);
        // A LID whose contact has a phone is that phone.
        let lid = evolution(Some("123456789012345@lid"), Some("+5511988887777"));
        assert_eq!(read(InboxKind::Evolution, lid), ana);
    }

    #[test]
    fn destinations_get_their_own_format_and_evolution_keeps_its_uuid() {
        let ana = WhatsAppIdentity::parse("5511988887777").unwrap();
        let to = |kind: InboxKind| kind.destination_of(&ana).unwrap();
        assert_eq!(
            to(InboxKind::WhatsappCloud),
            Destination::SourceId("5511988887777".into())
        );
        assert_eq!(
            to(InboxKind::TwilioWhatsapp),
            Destination::SourceId("whatsapp:+5511988887777".into())
        );
        assert_eq!(to(InboxKind::Evolution), Destination::KeepSourceId);
    }

    #[test]
    fn lids_groups_and_bsuids_stay_in_the_source() {
        let lid = InboxKind::Evolution
            .identity_of(evolution(Some("123456789012345@lid"), None))
            .unwrap();
        assert!(InboxKind::WhatsappCloud.destination_of(&lid).is_err());
        assert_eq!(
            InboxKind::Evolution.destination_of(&lid),
            Ok(Destination::KeepSourceId),
            "Evolution to Evolution keeps the LID on the contact"
        );
        let group = evolution(Some("120363025246125486@g.us"), None);
        assert!(matches!(
            InboxKind::Evolution.identity_of(group),
            Err(IdentityError::Group(_))
        ));
        let bsuid = InboxKind::WhatsappCloud
            .identity_of(cloud("US.13491208655302741918"))
            .unwrap();
        for kind in [
            InboxKind::WhatsappCloud,
            InboxKind::Dialog360,
            InboxKind::TwilioWhatsapp,
            InboxKind::Evolution,
        ] {
            assert!(kind.destination_of(&bsuid).is_err(), "{kind:?}");
        }
    }

    #[test]
    fn the_ninth_digit_folds_only_when_the_account_merges_it() {
        let with = InboxKind::Evolution
            .identity_of(evolution(Some("5511988887777@s.whatsapp.net"), None))
            .unwrap();
        let without = InboxKind::WhatsappCloud
            .identity_of(cloud("551188887777"))
            .unwrap();
        assert!(with.same_person(&without, true));
        assert!(!with.same_person(&without, false));
    }

    #[test]
    fn phone_forms_cover_both_ninth_digit_spellings() {
        let with = WhatsAppIdentity::parse("5511988887777").unwrap();
        let without = WhatsAppIdentity::parse("551188887777").unwrap();
        let both = vec!["551188887777".to_owned(), "5511988887777".to_owned()];
        assert_eq!(phone_forms(&with), both);
        assert_eq!(phone_forms(&without), both);
        // A landline and a number of another country have one form.
        let landline = WhatsAppIdentity::parse("551133334444").unwrap();
        assert_eq!(phone_forms(&landline), vec!["551133334444".to_owned()]);
        let us = WhatsAppIdentity::parse("14155550100").unwrap();
        assert_eq!(phone_forms(&us), vec!["14155550100".to_owned()]);
        let lid = WhatsAppIdentity::parse("123456789012345@lid").unwrap();
        assert!(phone_forms(&lid).is_empty());
    }

    proptest! {
        /// A person read in any kind of inbox and moved to any other reads back as the same person there.
        #[test]
        fn a_moved_person_is_the_same_person(digits in "[1-9][0-9]{9,13}") {
            let kinds = [
                InboxKind::WhatsappCloud,
                InboxKind::Dialog360,
                InboxKind::TwilioWhatsapp,
            ];
            let person = WhatsAppIdentity::parse(&digits).unwrap();
            for from in kinds {
                let Destination::SourceId(here) = from.destination_of(&person).unwrap() else {
                    unreachable!("not Evolution");
                };
                let read = from.identity_of(cloud(&here)).unwrap();
                prop_assert_eq!(&read, &person);
                for to in kinds {
                    let Destination::SourceId(there) = to.destination_of(&read).unwrap() else {
                        unreachable!("not Evolution");
                    };
                    prop_assert_eq!(to.identity_of(cloud(&there)).unwrap(), person.clone());
                }
            }
        }
    }
}
