use std::collections::{HashMap, HashSet};

use ferry::datagen::{SeedOptions, seed_account};
use ferry::domain::{ChannelType, WhatsAppIdentity};
use ferry::store::Page;

use crate::helpers::{Db, spawn_app};

pub async fn generated_data_matches_its_report(db: Db) {
    let app = spawn_app(db).await;
    let report = seed_account(
        &app.ferry,
        &SeedOptions {
            conversations: 120,
            merge_ratio: 0.2,
            ..SeedOptions::default()
        },
    )
    .await
    .unwrap();
    let mut conversations = 0;
    let mut messages = 0;
    let mut attachments = 0;
    for inbox in &report.inboxes {
        let counts = app.ferry.store.inbox_counts(inbox.id).await.unwrap();
        assert_eq!(counts.conversations as u64, inbox.conversations);
        conversations += counts.conversations as u64;
        messages += counts.messages as u64;
        attachments += counts.attachments as u64;
    }
    assert_eq!(conversations, report.conversations);
    assert_eq!(messages, report.messages);
    assert_eq!(attachments, report.attachments);
    let evolution = report
        .inboxes
        .iter()
        .find(|i| i.channel_type == ChannelType::Evolution)
        .unwrap();
    assert_eq!(evolution.conversations, 120);
    let types: HashSet<_> = report.inboxes.iter().map(|i| i.channel_type).collect();
    assert_eq!(types.len(), 5, "every WhatsApp-like type plus a web widget");
    assert!(types.iter().any(|t| !t.is_whatsapp_like()));
    let ratio = report.messages as f64 / report.conversations as f64;
    assert!(
        (3.0..25.0).contains(&ratio),
        "skewed 1–50, mean near 10: {ratio}"
    );
    assert_eq!(
        (
            report.legacy_evolution_instances,
            report.legacy_business_configs
        ),
        (5, 2)
    );

    // A second account in the same database gets its own rows and display ids.
    let again = seed_account(
        &app.ferry,
        &SeedOptions {
            conversations: 10,
            ..SeedOptions::default()
        },
    )
    .await
    .unwrap();
    assert_ne!(again.account_id, report.account_id);
    let bad = seed_account(
        &app.ferry,
        &SeedOptions {
            merge_ratio: 1.5,
            ..SeedOptions::default()
        },
    )
    .await;
    assert!(bad.is_err());
}

pub async fn shared_contacts_are_the_same_person_in_two_formats(db: Db) {
    let app = spawn_app(db).await;
    let report = seed_account(
        &app.ferry,
        &SeedOptions {
            conversations: 150,
            merge_ratio: 0.3,
            ..SeedOptions::default()
        },
    )
    .await
    .unwrap();
    let inbox_channel: HashMap<i64, ChannelType> = report
        .inboxes
        .iter()
        .map(|i| (i.id, i.channel_type))
        .collect();
    let mut keys: HashMap<ChannelType, HashSet<String>> = HashMap::new();
    let mut exact: HashMap<ChannelType, HashSet<String>> = HashMap::new();
    let mut page = Page::first(200);
    loop {
        let contacts = app
            .ferry
            .store
            .list_contacts(report.account_id, page)
            .await
            .unwrap();
        let ids: Vec<i64> = contacts.iter().map(|c| c.id).collect();
        for ci in app.ferry.store.contact_inboxes_of(&ids).await.unwrap() {
            let channel = inbox_channel[&ci.inbox_id];
            if !channel.is_whatsapp_like() {
                continue;
            }
            let identity = WhatsAppIdentity::from_source_id(channel, &ci.source_id).unwrap();
            keys.entry(channel)
                .or_default()
                .insert(identity.match_key(true));
            exact
                .entry(channel)
                .or_default()
                .insert(identity.canonical());
        }
        match contacts.last() {
            Some(last) if contacts.len() as i64 == page.limit => page.before = Some(last.id),
            _ => break,
        }
    }
    let evolution = &keys[&ChannelType::Evolution];
    let cloud = &keys[&ChannelType::WhatsappCloud];
    let shared = evolution.intersection(cloud).count() as u64;
    assert_eq!(shared, report.shared_contacts);
    assert!(shared > 20, "about 30% of ~130 contacts: {shared}");
    // Some twins were written without the ninth digit: only the Brazil rule matches them.
    let exact_shared = exact[&ChannelType::Evolution]
        .intersection(&exact[&ChannelType::WhatsappCloud])
        .count() as u64;
    assert!(exact_shared < shared, "{exact_shared} < {shared}");
}

/// This module's tests, with the services they need beside the database.
pub fn suite() -> Vec<crate::Test> {
    [on_both_databases!(
        [];
        generated_data_matches_its_report,
        shared_contacts_are_the_same_person_in_two_formats,
    )]
    .concat()
}
