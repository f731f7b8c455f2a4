use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use ferry::domain::{ChannelType, Role, WhatsAppIdentity};
use ferry::inbox_migration::engine;
use ferry::jobs::{Outcome, RunContext};
use ferry::services::{CreateInbox, Ferry};
use ferry::store::seed::*;
use ferry::store::{MatchKey, Page};
use ferry::worker::Worker;
use serde_json::{Value, json};

use crate::helpers::{Db, TestApp, assert_error, assert_same_rows, inbox_of, seeded, spawn_app};

#[allow(dead_code)]
pub struct Scenario {
    pub account_id: i64,
    pub token: String,
    pub evolution: i64,
    pub cloud: i64,
    pub web: i64,
}

async fn inbox(
    ferry: &Ferry,
    account_id: i64,
    name: &str,
    channel: ChannelType,
    phone: Option<&str>,
) -> i64 {
    ferry
        .create_inbox(
            CreateInbox {
                account_id,
                name: name.into(),
                channel_type: channel,
                phone_number: phone.map(str::to_owned),
                provider_config: None,
                lock_to_single_conversation: false,
            },
            None,
        )
        .await
        .unwrap()
        .id
}

fn contact(name: &str, phone: Option<&str>, email: Option<&str>, attrs: Value) -> SeedContact {
    SeedContact {
        name: name.into(),
        phone_number: phone.map(str::to_owned),
        email: email.map(str::to_owned),
        custom_attributes: attrs,
        created_at: Utc::now() - Duration::days(10),
    }
}

fn ci(contact: usize, inbox_id: i64, channel: ChannelType, raw: &str) -> SeedContactInbox {
    let id = WhatsAppIdentity::parse(raw).unwrap();
    SeedContactInbox {
        contact,
        inbox_id,
        source_id: id.to_source_id(channel).unwrap_or_else(|_| id.canonical()),
        wa_identity: Some(id.canonical()),
        wa_key: Some(id.match_key(true)),
    }
}

fn conversation(
    inbox_id: i64,
    contact: usize,
    contact_inbox: usize,
    messages: i64,
    attachment: bool,
) -> SeedConversation {
    SeedConversation {
        inbox_id,
        contact,
        contact_inbox,
        display_id: 0,
        status: "open",
        created_at: Utc::now() - Duration::days(5),
        last_activity_at: Utc::now() - Duration::days(4),
        messages,
        gap_seconds: 60,
        source_prefix: Some("3EB0"),
        channel: "evolution",
        attachment: attachment.then(|| SeedAttachment {
            file_type: "file",
            content_type: "text/plain",
            file_name: "a.txt".into(),
            byte_size: 3,
            storage_key: "ab/cd/abc".into(),
            checksum: "abc".into(),
        }),
    }
}

/// Ana: in Evolution with the ninth digit and in Cloud without it (two contacts, one person).
/// Bruno: only in Evolution. A LID-only sender in Evolution. Carla: only in Cloud.
pub async fn scenario(app: &TestApp) -> Scenario {
    let ferry = &app.ferry;
    let account = ferry.create_account("Clinic", None).await.unwrap();
    let email = format!("admin{}@clinic.test", account.id);
    let token = app
        .user_with_token(account.id, &email, Role::Administrator, false)
        .await;
    let evolution = inbox(
        ferry,
        account.id,
        "Evolution",
        ChannelType::Evolution,
        Some("+551140028922"),
    )
    .await;
    let cloud = inbox(
        ferry,
        account.id,
        "Cloud",
        ChannelType::WhatsappCloud,
        Some("+551140028922"),
    )
    .await;
    let web = inbox(ferry, account.id, "Site", ChannelType::WebWidget, None).await;
    let mut batch = SeedBatch {
        account_id: account.id,
        ..SeedBatch::default()
    };
    batch.contacts = vec![
        contact(
            "Ana",
            Some("+5511988887777"),
            Some("ana@example.com"),
            json!({"city": "SP", "plan": "basic"}),
        ),
        contact("", Some("+551188887777"), None, json!({"plan": "premium"})),
        contact("Bruno", Some("+5521977776666"), None, json!({})),
        contact("Hidden", None, None, json!({})),
        contact("Carla", Some("+5531966665555"), None, json!({})),
    ];
    batch.contact_inboxes = vec![
        ci(
            0,
            evolution,
            ChannelType::Evolution,
            "5511988887777@s.whatsapp.net",
        ),
        ci(1, cloud, ChannelType::WhatsappCloud, "551188887777"),
        ci(
            2,
            evolution,
            ChannelType::Evolution,
            "5521977776666@s.whatsapp.net",
        ),
        ci(3, evolution, ChannelType::Evolution, "123456789012345@lid"),
        ci(4, cloud, ChannelType::WhatsappCloud, "5531966665555"),
    ];
    batch.contact_labels = vec![(0, "vip".into()), (0, "lead".into()), (1, "lead".into())];
    batch.contact_notes = vec![(0, "Prefers mornings".into())];
    batch.conversations = vec![
        conversation(evolution, 0, 0, 3, true),
        conversation(evolution, 0, 0, 2, false),
        conversation(cloud, 1, 1, 4, false),
        conversation(evolution, 2, 2, 5, true),
        conversation(evolution, 3, 3, 1, false),
        conversation(cloud, 4, 4, 2, false),
    ];
    let first = ferry
        .store
        .reserve_display_ids(account.id, batch.conversations.len() as i64)
        .await
        .unwrap();
    for (i, c) in batch.conversations.iter_mut().enumerate() {
        c.display_id = first + i as i64;
    }
    ferry.store.seed_batch(&batch).await.unwrap();
    Scenario {
        account_id: account.id,
        token,
        evolution,
        cloud,
        web,
    }
}

/// Every message of the account as the API would show it, by id: a migration must not change one of them.
async fn all_messages(ferry: &Ferry, account_id: i64) -> BTreeMap<i64, String> {
    let mut out = BTreeMap::new();
    for inbox in ferry.store.list_inboxes(account_id).await.unwrap() {
        let mut page = Page::first(200);
        loop {
            let convs = ferry
                .store
                .list_conversations(account_id, inbox.id, page)
                .await
                .unwrap();
            for c in &convs {
                for m in ferry
                    .store
                    .list_messages(account_id, c.id, Page::first(200))
                    .await
                    .unwrap()
                {
                    out.insert(m.id, serde_json::to_string(&m).unwrap());
                }
            }
            match convs.last() {
                Some(last) if convs.len() as i64 == page.limit => page.before = Some(last.id),
                _ => break,
            }
        }
    }
    out
}

async fn drain(app: &TestApp) -> Vec<Outcome> {
    let worker = Worker::new(app.ferry.clone());
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let mut outcomes = Vec::new();
    while let Some(outcome) = worker.run_once(rx.clone()).await.unwrap() {
        outcomes.push(outcome);
    }
    outcomes
}

fn base(s: &Scenario, inbox: i64) -> String {
    format!(
        "/api/v1/accounts/{}/inboxes/{inbox}/migrations",
        s.account_id
    )
}

pub async fn migration_moves_and_merges_across_formats(db: Db) {
    let app = spawn_app(db).await;
    let s = scenario(&app).await;
    let messages_before = all_messages(&app.ferry, s.account_id).await;
    let (status, created) = app
        .post_json(
            &base(&s, s.evolution),
            Some(&s.token),
            &json!({"destination_inbox_id": s.cloud}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["status"], "queued");
    assert_eq!(created["source_inbox"]["channel_type"], "evolution");
    assert!(
        created["initiated_by"]["email"]
            .as_str()
            .unwrap()
            .ends_with("@clinic.test")
    );
    let id = created["id"].as_i64().unwrap();

    assert_eq!(drain(&app).await, vec![Outcome::Completed]);
    let (_, shown) = app
        .get(&format!("{}/{id}", base(&s, s.evolution)), Some(&s.token))
        .await;
    assert_eq!(shown["status"], "completed", "{shown}");
    assert_eq!(shown["progress"]["percentage"], 100.0);
    assert_eq!(
        shown["progress"]["conversations"],
        json!({"total": 4, "moved": 4})
    );
    assert_eq!(
        shown["progress"]["messages"],
        json!({"total": 11, "moved": 11})
    );
    assert_eq!(
        shown["progress"]["attachments"],
        json!({"total": 2, "moved": 2})
    );
    assert_eq!(
        shown["progress"]["contact_inboxes"],
        json!({"total": 3, "moved": 3})
    );
    assert_eq!(shown["progress"]["contacts_merged"], 1);
    assert!(shown["timing"]["duration_seconds"].as_f64().is_some());

    let ferry = &app.ferry;
    let source = ferry.store.inbox_counts(s.evolution).await.unwrap();
    assert_eq!(
        (
            source.conversations,
            source.messages,
            source.contact_inboxes
        ),
        (0, 0, 0)
    );
    let dest = ferry.store.inbox_counts(s.cloud).await.unwrap();
    assert_eq!(
        (
            dest.conversations,
            dest.messages,
            dest.attachments,
            dest.contact_inboxes
        ),
        (6, 17, 2, 4)
    );
    assert_eq!(
        all_messages(ferry, s.account_id).await,
        messages_before,
        "no message row is written"
    );
    assert!(
        ferry
            .store
            .check_inbox_migration_invariants(s.evolution, s.cloud, MatchKey::BrazilFolded, None)
            .await
            .unwrap()
            .is_empty()
    );

    // Ana merged into the Cloud contact: fields filled, destination's attributes win, labels unioned, note moved.
    let contacts = ferry
        .store
        .list_contacts(s.account_id, Page::first(50))
        .await
        .unwrap();
    assert!(
        !contacts
            .iter()
            .any(|c| c.name.as_deref() == Some("Ana") && c.email.is_none())
    );
    assert_eq!(
        contacts.len(),
        4,
        "the emptied source contact is deleted: {contacts:?}"
    );
    let ana = contacts
        .iter()
        .find(|c| c.phone_number.as_deref() == Some("+551188887777"))
        .unwrap();
    assert_eq!(ana.name.as_deref(), Some("Ana"));
    assert_eq!(ana.email.as_deref(), Some("ana@example.com"));
    assert_eq!(
        ana.custom_attributes.0,
        json!({"city": "SP", "plan": "premium"})
    );
    let cis = ferry
        .store
        .contact_inboxes_of(&contacts.iter().map(|c| c.id).collect::<Vec<_>>())
        .await
        .unwrap();
    let ana_cis: Vec<_> = cis.iter().filter(|c| c.contact_id == ana.id).collect();
    assert_eq!(ana_cis.len(), 1);
    assert_eq!(ana_cis[0].source_id, "551188887777");
    let ana_conversations = ferry
        .store
        .list_conversations(s.account_id, s.cloud, Page::first(50))
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.contact_id == ana.id)
        .count();
    assert_eq!(ana_conversations, 3);
    // Bruno moved, his source_id rewritten to Cloud's format; the LID keeps its address.
    let bruno = contacts
        .iter()
        .find(|c| c.name.as_deref() == Some("Bruno"))
        .unwrap();
    let bruno_ci = cis.iter().find(|c| c.contact_id == bruno.id).unwrap();
    assert_eq!(
        (bruno_ci.inbox_id, bruno_ci.source_id.as_str()),
        (s.cloud, "5521977776666")
    );
    assert!(
        cis.iter()
            .any(|c| c.inbox_id == s.cloud && c.source_id == "123456789012345@lid")
    );

    let audit = ferry.store.list_audit(s.account_id, 20).await.unwrap();
    assert!(audit.iter().any(|e| e.action == "inbox_migration.created"));
    // The source is free again: a new migration back is accepted.
    let back = app
        .post_json(
            &base(&s, s.cloud),
            Some(&s.token),
            &json!({"destination_inbox_id": s.evolution, "dry_run": true}),
        )
        .await;
    assert_eq!(back.0, 200, "{}", back.1);
    assert_eq!(back.1["plan"]["conversations"], 6);
}

pub async fn create_is_refused_with_clear_422s(db: Db) {
    let app = spawn_app(db).await;
    let s = scenario(&app).await;
    let other = app.ferry.create_account("Other", None).await.unwrap();
    let foreign = inbox(
        &app.ferry,
        other.id,
        "Foreign",
        ChannelType::Evolution,
        None,
    )
    .await;
    let t = Some(s.token.as_str());
    let url = base(&s, s.evolution);
    for (body, code) in [
        (json!({"destination_inbox_id": s.evolution}), "same_inbox"),
        (
            json!({"destination_inbox_id": 987654}),
            "unknown_destination",
        ),
        (json!({"destination_inbox_id": s.web}), "not_whatsapp_like"),
        (
            json!({"destination_inbox_id": s.cloud, "options": {"batch_rows": 1}}),
            "invalid_options",
        ),
    ] {
        assert_error(&app.post_json(&url, t, &body).await, 422, code);
    }
    // Another account's inbox is answered exactly as a missing one: no oracle for which ids exist.
    let missing = foreign + 1_000_000;
    let answer = |id: i64| {
        let (app, url) = (&app, &url);
        async move {
            let (status, body) = app
                .post_json(url, t, &json!({"destination_inbox_id": id}))
                .await;
            (status, body.to_string().replace(&id.to_string(), "<id>"))
        }
    };
    let (foreign_answer, missing_answer) = (answer(foreign).await, answer(missing).await);
    assert_eq!(foreign_answer.0, 422);
    assert_eq!(foreign_answer, missing_answer);
    assert!(
        foreign_answer.1.contains("unknown_destination"),
        "{foreign_answer:?}"
    );
    assert_error(
        &app.post_json(
            &base(&s, s.web),
            t,
            &json!({"destination_inbox_id": s.cloud}),
        )
        .await,
        422,
        "not_whatsapp_like",
    );
    assert_error(
        &app.post_json(
            &url,
            t,
            &json!({"destination_inbox_id": s.cloud, "speed": "fast"}),
        )
        .await,
        422,
        "validation_failed",
    );

    // Dry run: the plan, and nothing written.
    let (status, dry) = app
        .post_json(
            &url,
            t,
            &json!({"destination_inbox_id": s.cloud, "dry_run": true}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(dry["plan"]["conversations"], 4);
    assert_eq!(dry["plan"]["messages"], 11);
    assert_eq!(dry["plan"]["contacts_to_merge"], 1);
    let codes: Vec<_> = dry["plan"]["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["code"].clone())
        .collect();
    // The LID contact cannot be addressed through Cloud: it is reported before the start.
    assert_eq!(
        codes,
        vec![json!("CONTACTS_WILL_MERGE"), json!("UNPORTABLE_IDENTITIES")]
    );
    assert!(
        dry["plan"]["warnings"][1]["message"]
            .as_str()
            .unwrap()
            .starts_with("1 contacts"),
        "{dry}"
    );
    assert!(
        app.ferry
            .store
            .list_inbox_migrations(s.account_id, None, false)
            .await
            .unwrap()
            .is_empty()
    );

    // One active migration per inbox, as source or destination: no second, no chain, no cycle.
    assert_eq!(
        app.post_json(&url, t, &json!({"destination_inbox_id": s.cloud}))
            .await
            .0,
        201
    );
    assert_error(
        &app.post_json(&url, t, &json!({"destination_inbox_id": s.cloud}))
            .await,
        422,
        "migration_active",
    );
    assert_error(
        &app.post_json(
            &base(&s, s.cloud),
            t,
            &json!({"destination_inbox_id": s.evolution}),
        )
        .await,
        422,
        "migration_active",
    );
    let third = inbox(
        &app.ferry,
        s.account_id,
        "Third",
        ChannelType::TwilioWhatsapp,
        None,
    )
    .await;
    assert_error(
        &app.post_json(
            &base(&s, third),
            t,
            &json!({"destination_inbox_id": s.cloud}),
        )
        .await,
        422,
        "migration_active",
    );
    assert_eq!(
        app.ferry
            .store
            .list_inbox_migrations(s.account_id, None, false)
            .await
            .unwrap()
            .len(),
        1
    );

    // Agents may not, other accounts see nothing.
    let agent = app
        .user_with_token(s.account_id, "agent@clinic.test", Role::Agent, false)
        .await;
    assert_error(&app.get(&url, Some(&agent)).await, 403, "forbidden");
    assert_error(
        &app.post_json(&url, Some(&agent), &json!({"destination_inbox_id": third}))
            .await,
        403,
        "forbidden",
    );
}

pub async fn two_simultaneous_creates_give_one_201_and_one_422(db: Db) {
    let app = spawn_app(db).await;
    let s = scenario(&app).await;
    let url = format!("{}{}", app.base, base(&s, s.evolution));
    let send = || {
        app.client
            .post(&url)
            .header("api_access_token", &s.token)
            .json(&json!({"destination_inbox_id": s.cloud}))
            .send()
    };
    let (a, b) = tokio::join!(send(), send());
    let mut statuses = [a.unwrap().status().as_u16(), b.unwrap().status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [201, 422]);
    assert_eq!(
        app.ferry
            .store
            .list_inbox_migrations(s.account_id, None, true)
            .await
            .unwrap()
            .len(),
        1
    );
}

pub async fn cancel_and_retry_follow_the_lifecycle(db: Db) {
    let app = spawn_app(db).await;
    let s = scenario(&app).await;
    let t = Some(s.token.as_str());
    let url = base(&s, s.evolution);
    let id = app
        .post_json(&url, t, &json!({"destination_inbox_id": s.cloud}))
        .await
        .1["id"]
        .as_i64()
        .unwrap();
    // Queued: cancelled at once, inboxes free again.
    let cancelled = app
        .post_json(&format!("{url}/{id}/cancel"), t, &json!({}))
        .await;
    assert_eq!(
        (cancelled.0.as_u16(), cancelled.1["status"].as_str()),
        (200, Some("cancelled"))
    );
    assert_error(
        &app.post_json(&format!("{url}/{id}/cancel"), t, &json!({}))
            .await,
        422,
        "not_cancellable",
    );
    // Retry re-queues and completes.
    let retried = app
        .post_json(&format!("{url}/{id}/retry"), t, &json!({}))
        .await;
    assert_eq!(retried.1["status"], "queued", "{}", retried.1);
    assert_eq!(drain(&app).await, vec![Outcome::Completed]);
    assert_error(
        &app.post_json(&format!("{url}/{id}/retry"), t, &json!({}))
            .await,
        422,
        "not_retryable",
    );

    // Running: stops at the next batch boundary, consistent; a new migration of the pair finishes the job.
    let s2 = scenario(&app).await;
    let url2 = base(&s2, s2.evolution);
    let id2 = app
        .post_json(
            &url2,
            Some(&s2.token),
            &json!({"destination_inbox_id": s2.cloud, "options": {"batch_rows": 10}}),
        )
        .await
        .1["id"]
        .as_i64()
        .unwrap();
    let claimed = app
        .ferry
        .store
        .claim_inbox_migration("test", "tok-1", Utc::now() + Duration::seconds(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, id2);
    let running = app
        .post_json(&format!("{url2}/{id2}/cancel"), Some(&s2.token), &json!({}))
        .await;
    assert_eq!(
        (
            running.1["status"].as_str(),
            running.1["cancel_requested"].as_bool()
        ),
        (Some("running"), Some(true))
    );
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let ctx = RunContext {
        token: "tok-1".into(),
        lease_lost: Default::default(),
        shutdown: rx,
    };
    assert_eq!(
        engine::run(&app.ferry, claimed, ctx).await,
        Outcome::Cancelled
    );
    let after = app.ferry.store.get_inbox_migration(id2).await.unwrap();
    assert_eq!(after.status.as_str(), "cancelled");
    assert!(
        after.conversations_moved > 0 && after.conversations_moved < 4,
        "stopped part-way: {after:?}"
    );
    assert!(
        app.ferry
            .store
            .check_inbox_migration_invariants(s2.evolution, s2.cloud, MatchKey::BrazilFolded, None)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        app.post_json(
            &url2,
            Some(&s2.token),
            &json!({"destination_inbox_id": s2.cloud})
        )
        .await
        .0,
        201
    );
    assert_eq!(drain(&app).await, vec![Outcome::Completed]);
    assert_eq!(
        app.ferry
            .store
            .inbox_counts(s2.evolution)
            .await
            .unwrap()
            .conversations,
        0
    );
    assert_eq!(
        app.ferry
            .store
            .inbox_counts(s2.cloud)
            .await
            .unwrap()
            .conversations,
        6
    );
}

pub async fn a_worker_that_lost_its_lease_writes_nothing(db: Db) {
    let app = spawn_app(db).await;
    let s = scenario(&app).await;
    let id = app
        .post_json(
            &base(&s, s.evolution),
            Some(&s.token),
            &json!({"destination_inbox_id": s.cloud, "options": {"batch_rows": 10}}),
        )
        .await
        .1["id"]
        .as_i64()
        .unwrap();
    // Worker A claims with a lease that has already run out; worker B takes the migration over.
    let stale = app
        .ferry
        .store
        .claim_inbox_migration("a", "tok-a", Utc::now() - Duration::seconds(1))
        .await
        .unwrap()
        .unwrap();
    let taken = app
        .ferry
        .store
        .claim_inbox_migration("b", "tok-b", Utc::now() + Duration::seconds(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((taken.id, taken.attempts), (id, 2));
    assert!(
        app.ferry
            .store
            .claim_inbox_migration("c", "tok-c", Utc::now() + Duration::seconds(30))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        !app.ferry
            .store
            .renew_inbox_migration_lease(id, "tok-a", Utc::now() + Duration::seconds(30))
            .await
            .unwrap()
    );
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let outcome = engine::run(
        &app.ferry,
        stale,
        RunContext {
            token: "tok-a".into(),
            lease_lost: Default::default(),
            shutdown: rx.clone(),
        },
    )
    .await;
    assert_eq!(outcome, Outcome::LeaseLost);
    // A batch attempted directly with the stale token is rolled back whole.
    let stale_batch = ferry::store::BatchContext {
        migration_id: id,
        token: "tok-a".into(),
        source_inbox_id: s.evolution,
        destination_inbox_id: s.cloud,
        destination_channel: ChannelType::WhatsappCloud,
        key: MatchKey::BrazilFolded,
        batch: 1,
        limit: 100,
        after_contact_inbox_id: 0,
        drop_duplicates: false,
    };
    assert!(
        app.ferry
            .store
            .run_inbox_migration_batch(&stale_batch)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        app.ferry
            .store
            .inbox_counts(s.evolution)
            .await
            .unwrap()
            .conversations,
        4,
        "nothing moved by A"
    );
    let outcome = engine::run(
        &app.ferry,
        taken,
        RunContext {
            token: "tok-b".into(),
            lease_lost: Default::default(),
            shutdown: rx,
        },
    )
    .await;
    assert_eq!(outcome, Outcome::Completed);
    assert_eq!(
        app.ferry
            .store
            .inbox_counts(s.evolution)
            .await
            .unwrap()
            .conversations,
        0
    );
}

pub async fn generated_inbox_migrates_in_many_batches_to_native_formats(db: Db) {
    let app = spawn_app(db).await;
    let (report, token) = seeded(&app, 150, 0.3).await;
    let (evolution, cloud, twilio) = (
        inbox_of(&report, ChannelType::Evolution),
        inbox_of(&report, ChannelType::WhatsappCloud),
        inbox_of(&report, ChannelType::TwilioWhatsapp),
    );
    let before_source = app.ferry.store.inbox_counts(evolution).await.unwrap();
    let before_twilio = app.ferry.store.inbox_counts(twilio).await.unwrap();
    let messages_before = all_messages(&app.ferry, report.account_id).await;
    let url = format!(
        "/api/v1/accounts/{}/inboxes/{evolution}/migrations",
        report.account_id
    );
    let eligible = app
        .get(&format!("{url}/eligible_destinations"), Some(&token))
        .await
        .1;
    let names: Vec<_> = eligible["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        names.len(),
        3,
        "the other WhatsApp inboxes, not the web widget: {eligible}"
    );
    assert!(names.contains(&cloud) && names.contains(&twilio));
    let created = app
        .post_json(
            &url,
            Some(&token),
            &json!({"destination_inbox_id": twilio, "options": {"batch_rows": 40}}),
        )
        .await;
    assert_eq!(created.0, 201, "{}", created.1);
    assert_eq!(drain(&app).await, vec![Outcome::Completed]);
    let m = app
        .ferry
        .store
        .get_inbox_migration(created.1["id"].as_i64().unwrap())
        .await
        .unwrap();
    assert!(m.cursor_id > 10, "many batches: {}", m.cursor_id);
    assert_eq!(m.conversations_moved, before_source.conversations);
    assert_eq!(m.messages_moved, before_source.messages);
    let after_twilio = app.ferry.store.inbox_counts(twilio).await.unwrap();
    assert_eq!(
        after_twilio.conversations,
        before_source.conversations + before_twilio.conversations
    );
    assert_eq!(
        after_twilio.messages,
        before_source.messages + before_twilio.messages
    );
    assert_eq!(
        all_messages(&app.ferry, report.account_id).await,
        messages_before
    );
    // Every contact_inbox now in the Twilio inbox has Twilio's native format, as the Rust conversion says.
    let mut page = Page::first(200);
    let mut checked = 0;
    loop {
        let contacts = app
            .ferry
            .store
            .list_contacts(report.account_id, page)
            .await
            .unwrap();
        let ids: Vec<i64> = contacts.iter().map(|c| c.id).collect();
        for ci in app
            .ferry
            .store
            .contact_inboxes_of(&ids)
            .await
            .unwrap()
            .into_iter()
            .filter(|c| c.inbox_id == twilio)
        {
            let identity = WhatsAppIdentity::parse(ci.wa_identity.as_deref().unwrap()).unwrap();
            let expected = identity
                .to_source_id(ChannelType::TwilioWhatsapp)
                .unwrap_or_else(|_| ci.source_id.clone());
            assert_eq!(ci.source_id, expected);
            checked += 1;
        }
        match contacts.last() {
            Some(last) if contacts.len() as i64 == page.limit => page.before = Some(last.id),
            _ => break,
        }
    }
    assert!(checked as i64 >= before_source.contact_inboxes);
    assert!(
        app.ferry
            .store
            .check_inbox_migration_invariants(evolution, twilio, MatchKey::BrazilFolded, None)
            .await
            .unwrap()
            .is_empty()
    );

    // The event stream of a finished migration ends with a `done` event carrying the record.
    let events = app
        .client
        .get(format!("{}{url}/{}/events", app.base, m.id))
        .header("api_access_token", &token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(events.contains("event: done"), "{events}");
    assert!(events.contains("\"status\":\"completed\""));
}

pub async fn revert_restores_the_exact_prior_state(db: Db) {
    let app = spawn_app(db).await;
    let s = scenario(&app).await;
    // An agent who works the source inbox: the migration adds them to the destination, the revert removes them.
    let agent = app
        .ferry
        .create_user(ferry::services::CreateUser {
            account_id: s.account_id,
            name: None,
            email: "agent@clinic.test",
            password: "long enough",
            role: Role::Agent,
            installation_admin: false,
        })
        .await
        .unwrap();
    app.ferry
        .store
        .add_inbox_member(s.evolution, agent.id)
        .await
        .unwrap();
    let before = app
        .ferry
        .store
        .account_rows_snapshot(s.account_id)
        .await
        .unwrap();
    let messages_before = all_messages(&app.ferry, s.account_id).await;
    let url = base(&s, s.evolution);
    let id = app
        .post_json(
            &url,
            Some(&s.token),
            &json!({"destination_inbox_id": s.cloud, "options": {"batch_rows": 10}}),
        )
        .await
        .1["id"]
        .as_i64()
        .unwrap();
    assert_error(
        &app.post_json(&format!("{url}/{id}/revert"), Some(&s.token), &json!({}))
            .await,
        422,
        "not_revertible",
    );
    assert_eq!(drain(&app).await, vec![Outcome::Completed]);
    let migrated = app
        .ferry
        .store
        .account_rows_snapshot(s.account_id)
        .await
        .unwrap();
    assert_ne!(migrated, before);
    let (status, body) = app
        .post_json(&format!("{url}/{id}/revert"), Some(&s.token), &json!({}))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["revert"]["status"], "queued", "{body}");
    assert_eq!(drain(&app).await, vec![Outcome::Completed]);
    let body = app.get(&format!("{url}/{id}"), Some(&s.token)).await.1;
    assert_eq!(body["status"], "reverted");
    assert_eq!(body["revert"]["status"], "reverted", "{body}");
    assert_eq!(body["revert"]["percentage"], 100.0, "{body}");
    let after = app
        .ferry
        .store
        .account_rows_snapshot(s.account_id)
        .await
        .unwrap();
    assert_same_rows(&before, &after, "after revert");
    assert_eq!(after, before);
    assert_eq!(
        all_messages(&app.ferry, s.account_id).await,
        messages_before
    );
    assert_error(
        &app.post_json(&format!("{url}/{id}/revert"), Some(&s.token), &json!({}))
            .await,
        422,
        "not_revertible",
    );
    // The inboxes are free: the same migration can run again.
    assert_eq!(
        app.post_json(
            &url,
            Some(&s.token),
            &json!({"destination_inbox_id": s.cloud})
        )
        .await
        .0,
        201
    );
    assert_eq!(drain(&app).await, vec![Outcome::Completed]);
    assert_eq!(
        app.ferry
            .store
            .account_rows_snapshot(s.account_id)
            .await
            .unwrap()
            .len(),
        migrated.len()
    );
}

/// A real `ferry worker` process on the app's database.
fn worker_process(app: &TestApp, lease_seconds: u64) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("worker")
        .env("FERRY_DATABASE_URL", &app.database_url)
        .env("FERRY_DATA_DIR", app.dir.path())
        .env("FERRY_SECRET_KEY", &app.secret_key)
        .env("FERRY_LEASE_SECONDS", lease_seconds.to_string())
        .env("FERRY_LOG", "warn")
        .spawn()
        .unwrap()
}

/// Waits until the migration has committed a batch and is running; returns the test's deadline.
async fn wait_for_progress(app: &TestApp, id: i64) -> std::time::Instant {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let m = app.ferry.store.get_inbox_migration(id).await.unwrap();
        if m.conversations_moved > 0 {
            assert_eq!(m.status.as_str(), "running");
            return deadline;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the worker process never started the migration"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Timestamps differ between two runs of the generator; everything else must be equal.
fn without_timestamps(rows: Vec<String>) -> Vec<String> {
    rows.into_iter()
        .map(|r| {
            let mut out = String::with_capacity(r.len());
            let mut rest = r.as_str();
            while let Some(pos) = rest.find("T") {
                // A timestamp looks like 2026-05-31T18:51:24.37Z: drop from the date to the Z.
                let (head, tail) = rest.split_at(pos);
                if head.len() >= 10 && head.as_bytes()[head.len() - 3] == b'-' && tail.contains('Z')
                {
                    out.push_str(&head[..head.len() - 10]);
                    out.push_str("<ts>");
                    rest = &tail[tail.find('Z').unwrap() + 1..];
                } else {
                    out.push_str(head);
                    out.push('T');
                    rest = &tail[1..];
                }
            }
            out.push_str(rest);
            out
        })
        .collect()
}

async fn generated(app: &TestApp) -> (i64, String, i64, i64) {
    let (report, token) = seeded(app, 80, 0.3).await;
    let (evolution, cloud) = (
        inbox_of(&report, ChannelType::Evolution),
        inbox_of(&report, ChannelType::WhatsappCloud),
    );
    (report.account_id, token, evolution, cloud)
}

pub async fn a_killed_worker_process_is_taken_over_and_the_result_equals_an_uninterrupted_run(
    db: Db,
) {
    // The reference: the same data migrated without interruption.
    let reference = spawn_app(db).await;
    let (account, token, evolution, cloud) = generated(&reference).await;
    let url = format!("/api/v1/accounts/{account}/inboxes/{evolution}/migrations");
    reference
        .post_json(
            &url,
            Some(&token),
            &json!({"destination_inbox_id": cloud, "options": {"batch_rows": 20}}),
        )
        .await;
    assert_eq!(drain(&reference).await, vec![Outcome::Completed]);
    let expected = without_timestamps(
        reference
            .ferry
            .store
            .account_rows_snapshot(account)
            .await
            .unwrap(),
    );

    let app = spawn_app(db).await;
    let same = generated(&app).await;
    assert_eq!(
        (same.0, same.2, same.3),
        (account, evolution, cloud),
        "the same data in a fresh database"
    );
    let token = same.1;
    let messages_before = all_messages(&app.ferry, account).await;
    let created = app.post_json(&url, Some(&token),
        &json!({"destination_inbox_id": cloud, "options": {"batch_rows": 20, "max_rows_per_second": 400}})).await;
    let id = created.1["id"].as_i64().unwrap();
    let mut child = worker_process(&app, 2);
    let deadline = wait_for_progress(&app, id).await;
    // SIGKILL: no chance to release anything.
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = app.ferry.store.get_inbox_migration(id).await.unwrap();
    assert_eq!(killed.status.as_str(), "running");
    assert!(
        killed.conversations_moved < killed.conversations_count,
        "killed part-way: {killed:?}"
    );

    // Another worker takes it over once the lease expires and finishes it.
    let worker = Worker::new(app.ferry.clone());
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let outcome = loop {
        if let Some(outcome) = worker.run_once(rx.clone()).await.unwrap() {
            break outcome;
        }
        assert!(std::time::Instant::now() < deadline, "no takeover");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(outcome, Outcome::Completed);
    let done = app.ferry.store.get_inbox_migration(id).await.unwrap();
    assert_eq!(done.attempts, 2);
    assert_eq!(
        done.conversations_moved, done.conversations_count,
        "nothing moved twice, nothing lost"
    );
    assert_eq!(done.messages_moved, done.messages_count);
    assert_eq!(all_messages(&app.ferry, account).await, messages_before);
    assert_eq!(
        without_timestamps(
            app.ferry
                .store
                .account_rows_snapshot(account)
                .await
                .unwrap()
        ),
        expected
    );
}

pub async fn conversations_arriving_during_the_migration_end_up_in_the_destination(db: Db) {
    let app = spawn_app(db).await;
    let (account, token, evolution, cloud) = generated(&app).await;
    let url = format!("/api/v1/accounts/{account}/inboxes/{evolution}/migrations");
    let id = app.post_json(&url, Some(&token),
        &json!({"destination_inbox_id": cloud, "options": {"batch_rows": 20, "max_rows_per_second": 400}})).await.1["id"].as_i64().unwrap();
    let ferry = app.ferry.clone();
    let running = tokio::spawn(async move {
        let worker = Worker::new(ferry);
        let (_tx, rx) = tokio::sync::watch::channel(false);
        worker.run_once(rx).await.unwrap()
    });
    loop {
        if app
            .ferry
            .store
            .get_inbox_migration(id)
            .await
            .unwrap()
            .conversations_moved
            > 0
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // A new customer writes to the old number mid-migration.
    let mut batch = SeedBatch {
        account_id: account,
        ..SeedBatch::default()
    };
    batch.contacts = vec![contact("Late", Some("+5511911112222"), None, json!({}))];
    batch.contact_inboxes = vec![ci(
        0,
        evolution,
        ChannelType::Evolution,
        "5511911112222@s.whatsapp.net",
    )];
    batch.conversations = vec![conversation(evolution, 0, 0, 2, false)];
    batch.conversations[0].display_id = app
        .ferry
        .store
        .reserve_display_ids(account, 1)
        .await
        .unwrap();
    app.ferry.store.seed_batch(&batch).await.unwrap();
    assert_eq!(running.await.unwrap(), Some(Outcome::Completed));
    assert_eq!(
        app.ferry
            .store
            .inbox_counts(evolution)
            .await
            .unwrap()
            .conversations,
        0
    );
    let late = app
        .ferry
        .store
        .list_conversations(account, cloud, Page::first(200))
        .await
        .unwrap();
    assert!(
        late.iter()
            .any(|c| c.contact_name.as_deref() == Some("Late"))
    );
}

pub async fn two_workers_claim_different_migrations_and_never_the_same(db: Db) {
    let app = spawn_app(db).await;
    let a = scenario(&app).await;
    let b = scenario(&app).await;
    for s in [&a, &b] {
        let created = app
            .post_json(
                &base(s, s.evolution),
                Some(&s.token),
                &json!({"destination_inbox_id": s.cloud, "options": {"batch_rows": 10}}),
            )
            .await;
        assert_eq!(created.0, 201);
    }
    let run = |ferry: Ferry| async move {
        let worker = Worker::new(ferry);
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let mut outcomes = Vec::new();
        while let Some(o) = worker.run_once(rx.clone()).await.unwrap() {
            outcomes.push(o);
        }
        outcomes
    };
    let (x, y) = tokio::join!(
        tokio::spawn(run(app.ferry.clone())),
        tokio::spawn(run(app.ferry.clone()))
    );
    let mut all = x.unwrap();
    all.extend(y.unwrap());
    assert_eq!(
        all,
        vec![Outcome::Completed, Outcome::Completed],
        "each migration ran exactly once"
    );
    for s in [&a, &b] {
        let m = &app
            .ferry
            .store
            .list_inbox_migrations(s.account_id, None, false)
            .await
            .unwrap()[0];
        assert_eq!((m.status.as_str(), m.attempts), ("completed", 1));
        assert_eq!(m.conversations_moved, 4);
    }
}

pub async fn sigterm_finishes_the_batch_and_releases_the_lease(db: Db) {
    let app = spawn_app(db).await;
    let (account, token, evolution, cloud) = generated(&app).await;
    let url = format!("/api/v1/accounts/{account}/inboxes/{evolution}/migrations");
    let id = app.post_json(&url, Some(&token),
        &json!({"destination_inbox_id": cloud, "options": {"batch_rows": 20, "max_rows_per_second": 300}})).await.1["id"].as_i64().unwrap();
    let mut child = worker_process(&app, 60);
    let deadline = wait_for_progress(&app, id).await;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exited = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the worker did not stop on SIGTERM"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(exited.success(), "{exited:?}");
    let paused = app.ferry.store.get_inbox_migration(id).await.unwrap();
    assert_eq!(paused.status.as_str(), "running");
    assert!(paused.lease_owner.is_none(), "lease released: {paused:?}");
    assert!(paused.lease_expires_at.unwrap() < Utc::now());
    assert!(paused.conversations_moved < paused.conversations_count);
    // Despite a 60 s lease, another worker continues at once.
    assert_eq!(drain(&app).await, vec![Outcome::Completed]);
    let done = app.ferry.store.get_inbox_migration(id).await.unwrap();
    assert_eq!(
        (done.attempts, done.conversations_moved),
        (2, done.conversations_count)
    );
}

pub async fn open_conversation_conflicts_are_reported(db: Db) {
    let app = spawn_app(db).await;
    let s = scenario(&app).await;
    let single = ferry::services::UpdateInbox {
        lock_to_single_conversation: Some(true),
        ..Default::default()
    };
    app.ferry
        .update_inbox(s.account_id, s.cloud, single, None)
        .await
        .unwrap();
    // The preview names the conflict beforehand, with Ana's open conversations in both inboxes, and lists the
    // contacts that merge with their address in each inbox.
    let preview = app
        .get(
            &format!(
                "{}/preview?destination_inbox_id={}",
                base(&s, s.evolution),
                s.cloud
            ),
            Some(&s.token),
        )
        .await
        .1;
    // Ana's contact in the source, and the Cloud contact of her number without the ninth digit.
    let merging = preview["merging"].as_array().unwrap();
    let (ana, cloud_ana) = (
        merging[0]["contact_id"].as_i64().unwrap(),
        merging[0]["destination_contact_id"].as_i64().unwrap(),
    );
    let open: Vec<i64> = app
        .texts(&format!(
            "SELECT CAST(id AS TEXT) FROM conversations WHERE status = 'open' AND \
             ((inbox_id = {} AND contact_id = {ana}) OR (inbox_id = {} AND contact_id = {cloud_ana})) ORDER BY id",
            s.evolution, s.cloud
        ))
        .await
        .into_iter()
        .map(|id| id.unwrap().parse().unwrap())
        .collect();
    let conflicts = preview["open_conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 1, "{preview}");
    assert_eq!(conflicts[0]["name"], "Ana");
    let listed: Vec<i64> = conflicts[0]["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["conversation_id"].as_i64().unwrap())
        .collect();
    assert_eq!(listed, open, "{preview}");
    assert!(
        preview["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["code"] == "OPEN_CONVERSATION_CONFLICTS"),
        "{preview}"
    );
    assert_eq!(
        merging.len() as i64,
        preview["contacts_to_merge"].as_i64().unwrap(),
        "{preview}"
    );
    assert!(
        merging
            .iter()
            .all(|m| m["source_identity"].is_string() && m["destination_identity"].is_string()),
        "{preview}"
    );
    let created = app
        .post_json(
            &base(&s, s.evolution),
            Some(&s.token),
            &json!({"destination_inbox_id": s.cloud}),
        )
        .await;
    assert_eq!(drain(&app).await, vec![Outcome::Completed]);
    let shown = app
        .get(
            &format!("{}/{}", base(&s, s.evolution), created.1["id"]),
            Some(&s.token),
        )
        .await
        .1;
    let conflicts = shown["result"]["open_conversation_conflicts"]
        .as_array()
        .unwrap()
        .clone();
    // Ana now has her two open Evolution conversations and her open Cloud one in an inbox that allows one.
    let contacts = app
        .ferry
        .store
        .list_contacts(s.account_id, Page::first(50))
        .await
        .unwrap();
    let ana = contacts
        .iter()
        .find(|c| c.name.as_deref() == Some("Ana"))
        .unwrap();
    assert_eq!(conflicts, vec![json!(ana.id)], "{shown}");
    // With her open conversations, now all in the destination: the migration page links to each.
    let now_open: Vec<i64> = app
        .texts(&format!(
            "SELECT CAST(id AS TEXT) FROM conversations WHERE status = 'open' AND inbox_id = {} \
             AND contact_id = {} ORDER BY id",
            s.cloud, ana.id
        ))
        .await
        .into_iter()
        .map(|id| id.unwrap().parse().unwrap())
        .collect();
    assert_eq!(now_open.len(), 3, "two from Evolution and her Cloud one");
    let details = &shown["result"]["open_conflicts"];
    assert_eq!(details[0]["name"], "Ana", "{shown}");
    let linked: Vec<i64> = details[0]["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["conversation_id"].as_i64().unwrap())
        .collect();
    assert_eq!(linked, now_open, "{shown}");
    let email = app
        .texts("SELECT email FROM users ORDER BY id LIMIT 1")
        .await[0]
        .clone()
        .unwrap();
    let user = app
        .ferry
        .store
        .find_user_by_email(&email)
        .await
        .unwrap()
        .unwrap();
    let session = ferry::web::session::start(&app.ferry, &user).await.unwrap();
    let (status, page) = crate::browser::get_page(
        &app,
        &session,
        &format!(
            "/app/accounts/{}/inboxes/{}/migration",
            s.account_id, s.evolution
        ),
    )
    .await;
    assert_eq!(status, 200);
    let box_at = page
        .find("data-result-conflicts")
        .expect("the result lists the conflicts");
    for id in &now_open {
        let link = format!("/app/accounts/{}/conversations/{id}\"", s.account_id);
        assert!(
            page[box_at..].contains(&link),
            "no link to conversation {id}"
        );
    }
}

/// Ana's number is also on a second Evolution inbox (same id family), whose conversation with her already holds
/// one of her messages under the same provider id: the migration keeps that copy, drops the source's (and its
/// attachment), reports it, and a revert brings the dropped rows back with their ids.
pub async fn duplicates_by_provider_message_id_are_kept_once(db: Db) {
    let app = spawn_app(db).await;
    let s = scenario(&app).await;
    let other = inbox(
        &app.ferry,
        s.account_id,
        "Evolution 2",
        ChannelType::Evolution,
        Some("+551140028999"),
    )
    .await;
    let mut batch = SeedBatch {
        account_id: s.account_id,
        ..SeedBatch::default()
    };
    batch.contacts = vec![contact("Ana (2)", Some("+5511988887777"), None, json!({}))];
    batch.contact_inboxes = vec![ci(
        0,
        other,
        ChannelType::Evolution,
        "5511988887777@s.whatsapp.net",
    )];
    batch.conversations = vec![conversation(other, 0, 0, 1, false)];
    batch.conversations[0].display_id = app
        .ferry
        .store
        .reserve_display_ids(s.account_id, 1)
        .await
        .unwrap();
    app.ferry.store.seed_batch(&batch).await.unwrap();
    // Ana's first conversation in the source: three messages, a file on the first one.
    let source_conversation = app
        .ferry
        .store
        .list_conversations(s.account_id, s.evolution, Page::first(100))
        .await
        .unwrap()
        .into_iter()
        .min_by_key(|c| c.id)
        .unwrap()
        .id;
    let duplicated = app
        .ferry
        .store
        .list_messages(s.account_id, source_conversation, Page::first(100))
        .await
        .unwrap()
        .into_iter()
        .min_by_key(|m| m.id)
        .unwrap();
    let destination_conversation = app
        .ferry
        .store
        .list_conversations(s.account_id, other, Page::first(1))
        .await
        .unwrap()[0]
        .id;
    let kept = app
        .ferry
        .store
        .create_message(&ferry::store::NewMessage {
            account_id: s.account_id,
            conversation_id: destination_conversation,
            message_type: "incoming".into(),
            content: duplicated.content.clone(),
            source_id: duplicated.source_id.clone(),
            dedupe_key: None,
            status: "read".into(),
            created_at: duplicated.created_at,
        })
        .await
        .unwrap();
    let messages_before = all_messages(&app.ferry, s.account_id).await;
    let source_before = app.ferry.store.inbox_counts(s.evolution).await.unwrap();
    let other_before = app.ferry.store.inbox_counts(other).await.unwrap();
    assert!(source_before.attachments > 0);

    let url = base(&s, s.evolution);
    let dry = app
        .post_json(
            &url,
            Some(&s.token),
            &json!({"destination_inbox_id": other, "dry_run": true}),
        )
        .await;
    assert_eq!(dry.1["plan"]["duplicates"], 1, "{}", dry.1);
    // Across id families (Evolution → Cloud) ids cannot coincide: nothing to look for.
    let cross = app
        .post_json(
            &url,
            Some(&s.token),
            &json!({"destination_inbox_id": s.cloud, "dry_run": true}),
        )
        .await;
    assert_eq!(cross.1["plan"]["duplicates"], 0);
    let id = app
        .post_json(
            &url,
            Some(&s.token),
            &json!({"destination_inbox_id": other}),
        )
        .await
        .1["id"]
        .as_i64()
        .unwrap();
    assert_eq!(drain(&app).await, vec![Outcome::Completed]);
    let shown = app.get(&format!("{url}/{id}"), Some(&s.token)).await.1;
    assert_eq!(shown["status"], "completed", "{shown}");
    assert_eq!(shown["progress"]["duplicates"], 1);
    assert_eq!(shown["result"]["duplicates_dropped"], 1, "{shown}");
    let after = all_messages(&app.ferry, s.account_id).await;
    assert!(
        !after.contains_key(&duplicated.id),
        "the source's copy is dropped"
    );
    assert!(after.contains_key(&kept), "the destination's copy is kept");
    // Every other message is untouched.
    let mut expected = messages_before.clone();
    expected.remove(&duplicated.id);
    assert_eq!(after, expected);
    let other_after = app.ferry.store.inbox_counts(other).await.unwrap();
    assert_eq!(
        other_after.messages,
        other_before.messages + source_before.messages - 1
    );
    assert_eq!(
        other_after.attachments,
        other_before.attachments + source_before.attachments - 1,
        "the dropped message's attachment goes with it"
    );
    assert_eq!(
        app.ferry
            .store
            .count_conversation_counter_drift(s.evolution, other)
            .await
            .unwrap(),
        0
    );

    let (status, body) = app
        .post_json(&format!("{url}/{id}/revert"), Some(&s.token), &json!({}))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(drain(&app).await, vec![Outcome::Completed]);
    assert_eq!(
        all_messages(&app.ferry, s.account_id).await,
        messages_before,
        "revert brings the dropped message back with its id"
    );
    let source_reverted = app.ferry.store.inbox_counts(s.evolution).await.unwrap();
    assert_eq!(source_reverted.attachments, source_before.attachments);
    assert_eq!(
        app.ferry
            .store
            .count_conversation_counter_drift(s.evolution, other)
            .await
            .unwrap(),
        0
    );
}

pub async fn two_worker_processes_share_the_queue_without_overlap(db: Db) {
    let app = spawn_app(db).await;
    let scenarios = [scenario(&app).await, scenario(&app).await];
    let mut ids = Vec::new();
    for s in &scenarios {
        let created = app.post_json(&base(s, s.evolution), Some(&s.token),
            &json!({"destination_inbox_id": s.cloud, "options": {"batch_rows": 10, "max_rows_per_second": 40}})).await;
        assert_eq!(created.0, 201);
        ids.push(created.1["id"].as_i64().unwrap());
    }
    let mut workers = [worker_process(&app, 30), worker_process(&app, 30)];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let mut done = 0;
        for id in &ids {
            if !app
                .ferry
                .store
                .get_inbox_migration(*id)
                .await
                .unwrap()
                .is_active()
            {
                done += 1;
            }
        }
        if done == ids.len() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the worker processes did not finish"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for w in &mut workers {
        w.kill().unwrap();
        w.wait().unwrap();
    }
    for (s, id) in scenarios.iter().zip(&ids) {
        let m = app.ferry.store.get_inbox_migration(*id).await.unwrap();
        // Claimed once, every batch committed once: nothing moved twice, nothing lost.
        assert_eq!((m.status.as_str(), m.attempts), ("completed", 1), "{m:?}");
        assert_eq!((m.conversations_moved, m.messages_moved), (4, 11));
        assert_eq!(
            app.ferry
                .store
                .inbox_counts(s.cloud)
                .await
                .unwrap()
                .conversations,
            6
        );
        assert!(
            app.ferry
                .store
                .check_inbox_migration_invariants(
                    s.evolution,
                    s.cloud,
                    MatchKey::BrazilFolded,
                    None
                )
                .await
                .unwrap()
                .is_empty()
        );
    }
}

/// One person twice in the source (with and without the Brazilian ninth digit, two contacts) and many others:
/// the second row waits while the first moves, the keyset cursor runs past it, and the batch that starts over
/// from the beginning merges it into the first one's new home.
pub async fn a_person_twice_in_the_source_ends_as_one_contact_inbox(db: Db) {
    let app = spawn_app(db).await;
    let ferry = &app.ferry;
    let account = ferry.create_account("Twice", None).await.unwrap();
    let token = app
        .user_with_token(account.id, "admin@twice.test", Role::Administrator, false)
        .await;
    let evolution = inbox(ferry, account.id, "Evo", ChannelType::Evolution, None).await;
    let cloud = inbox(ferry, account.id, "Cloud", ChannelType::WhatsappCloud, None).await;
    let mut batch = SeedBatch {
        account_id: account.id,
        ..SeedBatch::default()
    };
    let mut phones: Vec<String> = vec!["5511988887777".into()];
    phones.extend((0..3).map(|i| format!("55219777700{i:02}")));
    phones.push("551188887777".into());
    phones.extend((3..23).map(|i| format!("55219777700{i:02}")));
    for (i, phone) in phones.iter().enumerate() {
        batch.contacts.push(contact(
            &format!("P{i}"),
            Some(&format!("+{phone}")),
            None,
            json!({}),
        ));
        batch.contact_inboxes.push(ci(
            i,
            evolution,
            ChannelType::Evolution,
            &format!("{phone}@s.whatsapp.net"),
        ));
        batch
            .conversations
            .push(conversation(evolution, i, i, 2, false));
    }
    let first = ferry
        .store
        .reserve_display_ids(account.id, batch.conversations.len() as i64)
        .await
        .unwrap();
    for (i, c) in batch.conversations.iter_mut().enumerate() {
        c.display_id = first + i as i64;
    }
    ferry.store.seed_batch(&batch).await.unwrap();

    let path = format!(
        "/api/v1/accounts/{}/inboxes/{evolution}/migrations",
        account.id
    );
    let (status, created) = app
        .post_json(
            &path,
            Some(&token),
            &json!({"destination_inbox_id": cloud, "options": {"batch_rows": 40}}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(drain(&app).await, vec![Outcome::Completed]);
    let (_, done) = app
        .get(&format!("{path}/{}", created["id"]), Some(&token))
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["progress"]["contacts_merged"], 1, "{done}");
    assert_eq!(done["progress"]["contact_inboxes"]["moved"], 25, "{done}");

    let contacts = ferry
        .store
        .list_contacts(account.id, Page::first(100))
        .await
        .unwrap();
    assert_eq!(
        contacts.len(),
        24,
        "the second contact of the same person is merged away"
    );
    let conversations = ferry
        .store
        .list_conversations(account.id, cloud, Page::first(100))
        .await
        .unwrap();
    assert_eq!(conversations.len(), 25);
    let ana: Vec<_> = conversations
        .iter()
        .filter(|c| {
            c.contact_id
                == conversations
                    .iter()
                    .find(|x| x.display_id == first)
                    .unwrap()
                    .contact_id
        })
        .collect();
    assert_eq!(
        ana.len(),
        2,
        "both conversations of the person are on one contact"
    );
    assert_eq!(ana[0].contact_inbox_id, ana[1].contact_inbox_id);
    assert!(
        ferry
            .store
            .check_inbox_migration_invariants(evolution, cloud, MatchKey::BrazilFolded, None)
            .await
            .unwrap()
            .is_empty()
    );
}

/// This module's tests, with the services they need beside the database.
pub fn suite() -> Vec<crate::Test> {
    [on_both_databases!(
        [];
        migration_moves_and_merges_across_formats,
        create_is_refused_with_clear_422s,
        two_simultaneous_creates_give_one_201_and_one_422,
        cancel_and_retry_follow_the_lifecycle,
        a_worker_that_lost_its_lease_writes_nothing,
        generated_inbox_migrates_in_many_batches_to_native_formats,
        revert_restores_the_exact_prior_state,
        a_killed_worker_process_is_taken_over_and_the_result_equals_an_uninterrupted_run,
        conversations_arriving_during_the_migration_end_up_in_the_destination,
        two_workers_claim_different_migrations_and_never_the_same,
        sigterm_finishes_the_batch_and_releases_the_lease,
        open_conversation_conflicts_are_reported,
        a_person_twice_in_the_source_ends_as_one_contact_inbox,
        duplicates_by_provider_message_id_are_kept_once,
        two_worker_processes_share_the_queue_without_overlap,
    )]
    .concat()
}
