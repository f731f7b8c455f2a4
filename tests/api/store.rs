use ferry::domain::Role;
use ferry::services::{CreateUser, ServiceError};

use crate::helpers::{Db, spawn_app};

pub async fn email_uniqueness_is_enforced_by_the_database_under_concurrency(db: Db) {
    let app = spawn_app(db).await;
    let account = app.ferry.create_account("Race", None).await.unwrap();
    let attempts = (0..6).map(|_| {
        let ferry = app.ferry.clone();
        tokio::spawn(async move {
            ferry
                .create_user(CreateUser {
                    account_id: account.id,
                    name: None,
                    email: "Same@Example.com",
                    password: "long enough password",
                    role: Role::Agent,
                    installation_admin: false,
                })
                .await
        })
    });
    let results = futures::future::join_all(attempts).await;
    let ok = results
        .iter()
        .filter(|r| r.as_ref().unwrap().is_ok())
        .count();
    let conflicts = results
        .iter()
        .filter(|r| matches!(r.as_ref().unwrap(), Err(ServiceError::Conflict(_))))
        .count();
    assert_eq!((ok, conflicts), (1, 5));
    let user = app
        .ferry
        .store
        .find_user_by_email("same@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        app.ferry
            .store
            .account_role(account.id, user.id)
            .await
            .unwrap(),
        Some(Role::Agent)
    );
}

pub async fn display_ids_are_unique_under_concurrent_reservations(db: Db) {
    let app = spawn_app(db).await;
    let account = app.ferry.create_account("Ids", None).await.unwrap();
    let tasks = (0..8).map(|_| {
        let store = app.ferry.store.clone();
        tokio::spawn(async move { store.reserve_display_ids(account.id, 5).await.unwrap() })
    });
    let mut starts: Vec<i64> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    starts.sort();
    assert_eq!(starts, (0..8).map(|i| 1 + i * 5).collect::<Vec<_>>());
}

pub async fn migrations_are_idempotent(db: Db) {
    let app = spawn_app(db).await;
    app.ferry.store.migrate().await.unwrap();
    let out = app.cli(&["db", "migrate", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["backend"], db.as_str());
}

/// The per-conversation message and attachment counts that migrations report are kept by the database on
/// every write path: the generator's bulk inserts, a single insert, deletes (with their cascades) and a
/// message moved to another conversation.
pub async fn conversation_counts_are_kept_by_the_database(db: Db) {
    use ferry::domain::ChannelType;
    use ferry::store::{MatchKey, NewMessage, Page};

    use crate::helpers::{inbox_of, seeded};

    let app = spawn_app(db).await;
    let (report, _) = seeded(&app, 60, 0.3).await;
    let (evolution, cloud) = (
        inbox_of(&report, ChannelType::Evolution),
        inbox_of(&report, ChannelType::WhatsappCloud),
    );
    let store = &app.ferry.store;
    let agree = |label: &'static str| async move {
        let stored = store
            .inbox_migration_counts(evolution, cloud, MatchKey::Identity)
            .await
            .unwrap();
        let counted = store.inbox_counts(evolution).await.unwrap();
        assert_eq!(
            (stored.messages, stored.attachments),
            (counted.messages, counted.attachments),
            "{label}"
        );
        assert_eq!(
            store
                .count_conversation_counter_drift(evolution, cloud)
                .await
                .unwrap(),
            0,
            "{label}"
        );
        counted
    };
    let seeded_counts = agree("after the generator").await;
    assert!(
        seeded_counts.attachments > 0,
        "the generator attaches files"
    );

    let conversations = store
        .list_conversations(
            report.account_id,
            evolution,
            Page {
                before: None,
                limit: 2,
            },
        )
        .await
        .unwrap();
    let (first, second) = (conversations[0].id, conversations[1].id);
    store
        .create_message(&NewMessage {
            account_id: report.account_id,
            conversation_id: first,
            message_type: "incoming".into(),
            content: Some("one more".into()),
            source_id: Some("counter-test".into()),
            dedupe_key: None,
            status: "read".into(),
            created_at: chrono::Utc::now(),
        })
        .await
        .unwrap();
    assert_eq!(
        agree("after one insert").await.messages,
        seeded_counts.messages + 1
    );

    // A message with an attachment deleted: the cascade takes the attachment, both counts drop once.
    let script = format!(
        "DELETE FROM messages WHERE id = (SELECT MIN(a.message_id) FROM attachments a JOIN messages m \
         ON m.id = a.message_id JOIN conversations c ON c.id = m.conversation_id WHERE c.inbox_id = {evolution})"
    );
    store.bench_script(&script).await.unwrap();
    let after_delete = agree("after a cascading delete").await;
    assert_eq!(after_delete.messages, seeded_counts.messages);
    assert_eq!(after_delete.attachments, seeded_counts.attachments - 1);

    let script = format!(
        "DELETE FROM attachments WHERE id = (SELECT MIN(a.id) FROM attachments a JOIN messages m \
         ON m.id = a.message_id JOIN conversations c ON c.id = m.conversation_id WHERE c.inbox_id = {evolution})"
    );
    store.bench_script(&script).await.unwrap();
    assert_eq!(
        agree("after an attachment delete").await.attachments,
        seeded_counts.attachments - 2
    );

    let script = format!(
        "UPDATE messages SET conversation_id = {second} WHERE id = (SELECT MIN(id) FROM messages WHERE conversation_id = {first})"
    );
    store.bench_script(&script).await.unwrap();
    agree("after a message moved").await;
}

/// The two databases' migrations build the same schema: the same tables, columns and unique keys (primary keys
/// aside). Their DDL is written apart, so a column or a unique index added to one of them only would make the
/// same input behave differently on the other.
pub async fn both_databases_have_the_same_tables_columns_and_unique_keys(db: Db) {
    assert_eq!(
        db,
        Db::Postgres,
        "compares a fresh PostgreSQL database with a fresh SQLite one"
    );
    let postgres = spawn_app(Db::Postgres).await;
    let sqlite = spawn_app(Db::Sqlite).await;
    let (on_postgres, on_sqlite) = (
        schema(&postgres, POSTGRES_SCHEMA).await,
        schema(&sqlite, SQLITE_SCHEMA).await,
    );
    assert!(on_sqlite.len() > 100, "{on_sqlite:?}");
    let only = |a: &std::collections::BTreeSet<String>, b: &std::collections::BTreeSet<String>| {
        a.difference(b).cloned().collect::<Vec<_>>()
    };
    assert!(
        on_postgres == on_sqlite,
        "only on PostgreSQL: {:#?}\nonly on SQLite: {:#?}",
        only(&on_postgres, &on_sqlite),
        only(&on_sqlite, &on_postgres)
    );
}

/// Every table, `table.column` and `table unique (columns…)` of a database, as text.
async fn schema(
    app: &crate::helpers::TestApp,
    queries: [&str; 3],
) -> std::collections::BTreeSet<String> {
    let mut all = std::collections::BTreeSet::new();
    for sql in queries {
        all.extend(app.texts(sql).await.into_iter().flatten());
    }
    all
}

const SQLITE_SCHEMA: [&str; 3] = [
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%' AND name NOT LIKE '_sqlx%'",
    "SELECT m.name || '.' || p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p \
     WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite%' AND m.name NOT LIKE '_sqlx%'",
    "SELECT m.name || ' unique (' || (SELECT group_concat(name, ', ') FROM \
     (SELECT ii.name FROM pragma_index_info(il.name) ii WHERE ii.name IS NOT NULL ORDER BY ii.name)) || ')' \
     FROM sqlite_master m JOIN pragma_index_list(m.name) il \
     WHERE il.\"unique\" = 1 AND il.origin <> 'pk' AND m.type = 'table' AND m.name NOT LIKE 'sqlite%' \
     AND m.name NOT LIKE '_sqlx%'",
];

const POSTGRES_SCHEMA: [&str; 3] = [
    "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' \
     AND table_type = 'BASE TABLE' AND table_name NOT LIKE '_sqlx%'",
    "SELECT table_name || '.' || column_name FROM information_schema.columns \
     WHERE table_schema = 'public' AND table_name NOT LIKE '_sqlx%'",
    "SELECT t.relname || ' unique (' || (SELECT string_agg(a.attname::text, ', ' ORDER BY a.attname::text) \
     FROM pg_attribute a WHERE a.attrelid = t.oid AND a.attnum = ANY(i.indkey)) || ')' \
     FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace \
     WHERE n.nspname = 'public' AND i.indisunique AND NOT i.indisprimary AND t.relname NOT LIKE '_sqlx%'",
];

/// This module's tests, with the services they need beside the database.
pub fn suite() -> Vec<crate::Test> {
    [
        on_both_databases!(
            [];
            email_uniqueness_is_enforced_by_the_database_under_concurrency,
            display_ids_are_unique_under_concurrent_reservations,
            migrations_are_idempotent,
            conversation_counts_are_kept_by_the_database,
        ),
        on_postgres!([]; both_databases_have_the_same_tables_columns_and_unique_keys),
    ]
    .concat()
}
