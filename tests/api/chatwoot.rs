//! The Chatwoot adapter on a real PostgreSQL database holding Chatwoot's tables, created from
//! `tests/fixtures/chatwoot/schema.sql` (written from Chatwoot's `db/schema.rb`, with its display-id triggers).

use std::process::{Command, Output};

use serde_json::Value;

use crate::helpers::{Db, fresh_postgres_database};

use ferry::chatwoot::generate::SCHEMA;

/// A Chatwoot database with one account and one inbox of every kind (and a plain API inbox, which is not
/// WhatsApp-like), one conversation in the Cloud inbox.
async fn chatwoot_database() -> (String, sqlx::PgPool) {
    let url = fresh_postgres_database().await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::raw_sql(SCHEMA)
        .execute(&pool)
        .await
        .expect("schema loads");
    sqlx::raw_sql(
        "INSERT INTO accounts (id, name, created_at, updated_at) VALUES (1, 'Acme', now(), now());
         INSERT INTO channel_whatsapp (id, account_id, phone_number, provider, provider_config, created_at, updated_at)
           VALUES (1, 1, '+5511999990001', 'whatsapp_cloud', '{}', now(), now()),
                  (2, 1, '+5511999990002', 'default', '{}', now(), now());
         INSERT INTO channel_twilio_sms (id, account_id, phone_number, medium, account_sid, auth_token, created_at, updated_at)
           VALUES (1, 1, '+5511999990003', 1, 'AC1', 'secret', now(), now());
         INSERT INTO channel_api (id, account_id, webhook_url, created_at, updated_at)
           VALUES (1, 1, 'http://evolution:8080/chatwoot/webhook/acme', now(), now()),
                  (2, 1, 'https://example.com/hook', now(), now());
         INSERT INTO inboxes (id, account_id, name, channel_type, channel_id, created_at, updated_at) VALUES
           (1, 1, 'Cloud', 'Channel::Whatsapp', 1, now(), now()),
           (2, 1, '360dialog', 'Channel::Whatsapp', 2, now(), now()),
           (3, 1, 'Twilio', 'Channel::TwilioSms', 1, now(), now()),
           (4, 1, 'Evolution', 'Channel::Api', 1, now(), now()),
           (5, 1, 'Plain API', 'Channel::Api', 2, now(), now());
         INSERT INTO contacts (id, account_id, name, phone_number, created_at, updated_at)
           VALUES (1, 1, 'Ana', '+5511988887777', now(), now());
         INSERT INTO contact_inboxes (id, contact_id, inbox_id, source_id, created_at, updated_at)
           VALUES (1, 1, 1, '5511988887777', now(), now());
         INSERT INTO conversations (account_id, inbox_id, contact_id, contact_inbox_id, status, created_at, updated_at)
           VALUES (1, 1, 1, 1, 0, now(), now());",
    )
    .execute(&pool)
    .await
    .expect("Chatwoot rows");
    (url, pool)
}

fn ferry_chatwoot(url: &str, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("--data-dir")
        .arg(dir.path())
        .arg("chatwoot")
        .args(args)
        .args(["--chatwoot-url", url])
        .output()
        .expect("run ferry")
}

/// `check` names every account's WhatsApp-like inboxes with their kind, and the guard refuses a database that
/// lacks a column the adapter needs, or has it with another type, in one line naming it.
pub async fn check_lists_whatsapp_inboxes_and_the_guard_names_what_is_missing(db: Db) {
    assert_eq!(db, Db::Postgres);
    let (url, pool) = chatwoot_database().await;
    // Chatwoot's trigger gave the conversation its display id.
    let display_id: i32 = sqlx::query_scalar("SELECT display_id FROM conversations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(display_id, 1);

    let out = ferry_chatwoot(&url, &["check", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["schema_version"], "20250816044639");
    assert_eq!(report["guard"], "ok");
    let inboxes = &report["accounts"][0]["inboxes"];
    let kinds: Vec<(i64, &str, i64)> = inboxes
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["id"].as_i64().unwrap(),
                i["kind"].as_str().unwrap(),
                i["conversations"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            (1, "whatsapp_cloud", 1),
            (2, "dialog360", 0),
            (3, "twilio_whatsapp", 0),
            (4, "evolution", 0)
        ],
        "the plain API inbox is not WhatsApp-like"
    );

    sqlx::raw_sql(
        "ALTER TABLE messages DROP COLUMN inbox_id; \
         ALTER TABLE conversations ALTER COLUMN status TYPE text",
    )
    .execute(&pool)
    .await
    .unwrap();
    let out = ferry_chatwoot(&url, &["check"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("schema 20250816044639"), "{stderr}");
    assert!(
        stderr.contains("column messages.inbox_id is missing"),
        "{stderr}"
    );
    assert!(
        stderr.contains("column conversations.status is text, not integer"),
        "{stderr}"
    );
}

/// This module's tests, with the services they need beside the database.
pub fn suite() -> Vec<crate::Test> {
    [on_postgres!(
        [];
        check_lists_whatsapp_inboxes_and_the_guard_names_what_is_missing
    )]
    .concat()
}
