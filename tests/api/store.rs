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
