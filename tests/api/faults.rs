//! Faults and inputs that one database accepts and the other refuses (issue 17).

use serde_json::json;

use crate::helpers::{Db, TestApp, spawn_app};
use crate::webhooks::{connected, post_raw, upsert};

async fn column(app: &TestApp, sql: &str) -> Vec<String> {
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    if app.database_url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
        sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap()
    } else {
        let pool = sqlx::SqlitePool::connect(&app.database_url).await.unwrap();
        sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap()
    }
}

/// Item 7: a NUL character in the text and a provider id of 3,000 bytes (PostgreSQL refuses the first in text
/// and the second in a unique index) are stored on both databases alike, de-duplicated, and what was changed is
/// recorded on the message; a receipt naming the long id still finds it.
pub async fn nul_text_and_long_provider_ids_are_stored_alike(db: Db) {
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    let hook = connected(
        &app,
        &f,
        "evolution",
        json!({"provider": "evolution", "instance_name": "clinica-sp"}),
    )
    .await
    .1;
    let jid = "5511988887777@s.whatsapp.net";
    let long_id = format!("3EB0{}", "A".repeat(2996));
    let mut first = upsert(&long_id, jid, true, "olá\u{0} mundo");
    first["data"]["pushName"] = json!("Maria");
    let body = serde_json::to_vec(&first).unwrap();
    let (status, answer) = post_raw(&app, &hook, &body).await;
    assert_eq!(
        (status, &answer["status"]),
        (200, &json!("stored")),
        "{answer}"
    );
    let (status, again) = post_raw(&app, &hook, &body).await;
    assert_eq!(
        (status, &again["status"]),
        (200, &json!("duplicate")),
        "{again}"
    );

    let row = column(
        &app,
        "SELECT content || '|' || source_id || '|' || CAST(content_attributes AS TEXT) FROM messages",
    )
    .await;
    assert_eq!(row.len(), 1, "{row:?}");
    let parts: Vec<&str> = row[0].splitn(3, '|').collect();
    assert_eq!(parts[0], "olá mundo");
    assert!(
        parts[1].starts_with("sha256:") && parts[1].len() == 71,
        "{}",
        parts[1]
    );
    let attributes: serde_json::Value = serde_json::from_str(parts[2]).unwrap();
    assert_eq!(attributes["nul_removed"], true);
    assert_eq!(attributes["provider_message_id"], long_id.as_str());

    // Evolution's receipt names the message by its (long) id.
    let receipt = json!({"event": "messages.update", "instance": "clinica-sp",
                         "data": {"keyId": long_id, "remoteJid": jid, "fromMe": true, "status": "READ"}});
    let (status, answer) = post_raw(&app, &hook, &serde_json::to_vec(&receipt).unwrap()).await;
    assert_eq!(
        (status, &answer["changed"]),
        (200, &json!(true)),
        "{answer}"
    );
    assert_eq!(column(&app, "SELECT status FROM messages").await, ["read"]);
}
