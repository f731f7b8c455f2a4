//! Deciding, for each contact_inbox of the source inbox, what happens to it in the destination: it moves (with
//! the destination's `source_id`), it merges into the destination's contact_inbox of the same person, or it stays
//! because its identity cannot be addressed there. The preview and every batch decide with the same function.

use std::collections::HashMap;

use sqlx::{FromRow, PgConnection};

use super::identity::{Destination, Person, phone_forms};
use super::{ChatwootError, InboxKind};

/// A contact_inbox with what identifies its person.
#[derive(Debug, Clone, FromRow)]
pub struct ContactInbox {
    pub id: i64,
    pub contact_id: Option<i64>,
    pub source_id: String,
    pub identifier: Option<String>,
    pub phone_number: Option<String>,
    pub name: Option<String>,
}

impl ContactInbox {
    fn person(&self) -> Person<'_> {
        Person {
            source_id: &self.source_id,
            identifier: self.identifier.as_deref(),
            phone_number: self.phone_number.as_deref(),
        }
    }
}

/// What happens to one source contact_inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Moves to the destination inbox with this `source_id`.
    Move { source_id: String },
    /// Its conversations go to the destination's contact_inbox `into` (of contact `contact_id`).
    Merge {
        into: i64,
        contact_id: Option<i64>,
        identity: String,
        destination_identity: String,
    },
    /// Stays in the source: the reason its identity cannot be addressed in the destination.
    Stays { reason: String },
}

/// Decides every source contact_inbox against the destination's candidates, in order: a contact_inbox of the
/// same contact wins, then one of the same person (ninth digit folded), then an earlier one of this same call
/// that moved.
pub fn decide(
    from: InboxKind,
    to: InboxKind,
    sources: &[ContactInbox],
    candidates: &[ContactInbox],
) -> Vec<Fate> {
    let mut by_contact: HashMap<i64, &ContactInbox> = HashMap::new();
    let mut by_person: HashMap<String, (i64, Option<i64>, String)> = HashMap::new();
    for c in candidates {
        if let Some(contact) = c.contact_id {
            by_contact.entry(contact).or_insert(c);
        }
        if let Ok(identity) = to.identity_of(c.person()) {
            by_person.entry(identity.match_key(true)).or_insert((
                c.id,
                c.contact_id,
                identity.canonical(),
            ));
        }
    }
    sources
        .iter()
        .map(|source| {
            let identity = match from.identity_of(source.person()) {
                Ok(identity) => identity,
                Err(e) => {
                    return Fate::Stays {
                        reason: e.to_string(),
                    };
                }
            };
            let destination = match to.destination_of(&identity) {
                Ok(destination) => destination,
                Err(e) => {
                    return Fate::Stays {
                        reason: e.to_string(),
                    };
                }
            };
            let key = identity.match_key(true);
            if let Some(same) = source.contact_id.and_then(|c| by_contact.get(&c)) {
                return Fate::Merge {
                    into: same.id,
                    contact_id: same.contact_id,
                    identity: identity.canonical(),
                    destination_identity: to
                        .identity_of(same.person())
                        .map_or_else(|_| same.source_id.clone(), |i| i.canonical()),
                };
            }
            if let Some((into, contact_id, there)) = by_person.get(&key) {
                return Fate::Merge {
                    into: *into,
                    contact_id: *contact_id,
                    identity: identity.canonical(),
                    destination_identity: there.clone(),
                };
            }
            by_person.insert(key, (source.id, source.contact_id, identity.canonical()));
            let source_id = match destination {
                Destination::SourceId(id) => id,
                Destination::KeepSourceId => source.source_id.clone(),
            };
            Fate::Move { source_id }
        })
        .collect()
}

/// The destination's contact_inboxes that could be the same person as one of `sources`: same contact, a
/// `source_id` of one of their phone forms, or a contact with their JID or phone number.
pub async fn candidates(
    conn: &mut PgConnection,
    account: i64,
    from: InboxKind,
    to: (i64, InboxKind),
    sources: &[ContactInbox],
) -> Result<Vec<ContactInbox>, ChatwootError> {
    let (to_inbox, to_kind) = to;
    let mut source_ids = Vec::new();
    let mut jids = Vec::new();
    let mut phones = Vec::new();
    for source in sources {
        let Ok(identity) = from.identity_of(source.person()) else {
            continue;
        };
        if identity.is_lid() {
            jids.push(identity.canonical());
        }
        for digits in phone_forms(&identity) {
            let form = crate::domain::WhatsAppIdentity::parse(&digits).ok();
            if let Some(Ok(Destination::SourceId(id))) = form.map(|f| to_kind.destination_of(&f)) {
                source_ids.push(id);
            }
            jids.push(format!("{digits}@s.whatsapp.net"));
            phones.push(format!("+{digits}"));
        }
    }
    let contacts: Vec<i64> = sources.iter().filter_map(|s| s.contact_id).collect();
    Ok(sqlx::query_as(
        "SELECT ci.id::bigint, ci.contact_id::bigint, ci.source_id, ct.identifier, ct.phone_number, ct.name \
         FROM contact_inboxes ci LEFT JOIN contacts ct ON ct.id = ci.contact_id \
         WHERE ci.inbox_id = $1 AND ci.id IN ( \
             SELECT id FROM contact_inboxes WHERE inbox_id = $1 AND source_id = ANY($2) \
             UNION SELECT id FROM contact_inboxes WHERE inbox_id = $1 AND contact_id = ANY($3) \
             UNION SELECT x.id FROM contacts c JOIN contact_inboxes x ON x.contact_id = c.id \
                 WHERE c.account_id = $6 AND x.inbox_id = $1 \
                   AND (c.identifier = ANY($4) OR c.phone_number = ANY($5))) \
         ORDER BY ci.id",
    )
    .bind(to_inbox)
    .bind(&source_ids)
    .bind(&contacts)
    .bind(&jids)
    .bind(&phones)
    .bind(account)
    .fetch_all(conn)
    .await?)
}

/// Every contact_inbox of an inbox (the preview decides them all at once).
pub async fn all_of(
    conn: &mut PgConnection,
    inbox: i64,
) -> Result<Vec<ContactInbox>, ChatwootError> {
    Ok(sqlx::query_as(
        "SELECT ci.id::bigint, ci.contact_id::bigint, ci.source_id, ct.identifier, ct.phone_number, ct.name \
         FROM contact_inboxes ci LEFT JOIN contacts ct ON ct.id = ci.contact_id \
         WHERE ci.inbox_id = $1 ORDER BY ci.id",
    )
    .bind(inbox)
    .fetch_all(conn)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ci(
        id: i64,
        contact: i64,
        source_id: &str,
        identifier: Option<&str>,
        phone: Option<&str>,
    ) -> ContactInbox {
        ContactInbox {
            id,
            contact_id: Some(contact),
            source_id: source_id.into(),
            identifier: identifier.map(Into::into),
            phone_number: phone.map(Into::into),
            name: None,
        }
    }

    #[test]
    fn same_contact_then_same_person_then_an_earlier_move() {
        let sources = [
            // Shared contact 1: merges into its own destination contact_inbox.
            ci(
                1,
                1,
                "u-1",
                Some("5511988880001@s.whatsapp.net"),
                Some("+5511988880001"),
            ),
            // Contact 2 is the destination's contact 20 without the ninth digit: a contact merge.
            ci(2, 2, "u-2", Some("5511988880002@s.whatsapp.net"), None),
            // New person: moves with the Cloud source_id.
            ci(3, 3, "u-3", Some("5511988880003@s.whatsapp.net"), None),
            // The same person again (another contact without the ninth digit): merges into 3's move.
            ci(4, 4, "u-4", None, Some("+551188880003")),
            // A LID without a phone and a group stay.
            ci(5, 5, "u-5", Some("123456789012345@lid"), None),
            ci(6, 6, "u-6", Some("120363025246125486@g.us"), None),
        ];
        let candidates = [
            ci(10, 1, "5511988880001", None, Some("+5511988880001")),
            ci(20, 20, "551188880002", None, Some("+551188880002")),
        ];
        let fates = decide(
            InboxKind::Evolution,
            InboxKind::WhatsappCloud,
            &sources,
            &candidates,
        );
        assert!(matches!(
            fates[0],
            Fate::Merge {
                into: 10,
                contact_id: Some(1),
                ..
            }
        ));
        assert!(matches!(
            fates[1],
            Fate::Merge {
                into: 20,
                contact_id: Some(20),
                ..
            }
        ));
        assert_eq!(
            fates[2],
            Fate::Move {
                source_id: "5511988880003".into()
            }
        );
        assert!(matches!(
            fates[3],
            Fate::Merge {
                into: 3,
                contact_id: Some(3),
                ..
            }
        ));
        assert!(matches!(fates[4], Fate::Stays { .. }));
        assert!(matches!(fates[5], Fate::Stays { .. }));
    }

    #[test]
    fn an_evolution_destination_keeps_the_uuid_and_twilio_gets_its_prefix() {
        let sources = [ci(1, 1, "5511988880001", None, None)];
        let to_evolution = decide(
            InboxKind::WhatsappCloud,
            InboxKind::Evolution,
            &sources,
            &[],
        );
        assert_eq!(
            to_evolution[0],
            Fate::Move {
                source_id: "5511988880001".into()
            }
        );
        let to_twilio = decide(
            InboxKind::WhatsappCloud,
            InboxKind::TwilioWhatsapp,
            &sources,
            &[],
        );
        assert_eq!(
            to_twilio[0],
            Fate::Move {
                source_id: "whatsapp:+5511988880001".into()
            }
        );
        let bsuid = [ci(2, 2, "US.13491208655302741918", None, None)];
        let fates = decide(InboxKind::WhatsappCloud, InboxKind::Dialog360, &bsuid, &[]);
        assert!(matches!(fates[0], Fate::Stays { .. }));
    }
}
