use ferry::domain::Role;
use serde_json::json;

use crate::helpers::{Db, assert_error, spawn_app};

pub async fn no_token_is_401_in_the_error_shape(db: Db) {
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    for path in [
        format!("/api/v1/accounts/{}", f.account_id),
        format!("/api/v1/accounts/{}/inboxes", f.account_id),
    ] {
        let got = app.get(&path, None).await;
        assert_error(&got, 401, "unauthorized");
        assert_eq!(
            got.1.as_object().unwrap().len(),
            1,
            "only the error key: {}",
            got.1
        );
    }
    // No token on a write: refused before anything is read or written.
    let got = app
        .post_json(
            &format!("/api/v1/accounts/{}/inboxes", f.account_id),
            None,
            &json!({"name": "x", "channel_type": "api"}),
        )
        .await;
    assert_error(&got, 401, "unauthorized");
    assert_eq!(
        app.ferry
            .store
            .list_inboxes(f.account_id)
            .await
            .unwrap()
            .len(),
        0
    );
}

pub async fn malformed_and_unknown_tokens_are_401(db: Db) {
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    let path = format!("/api/v1/accounts/{}/inboxes", f.account_id);
    let unknown = ferry::domain::ApiToken::generate();
    for token in [
        "nope",
        "fry_short",
        &f.admin_token[..f.admin_token.len() - 1],
        unknown.expose(),
    ] {
        assert_error(&app.get(&path, Some(token)).await, 401, "invalid_token");
    }
    let resp = app
        .client
        .get(format!("{}{path}", app.base))
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

pub async fn bearer_and_api_access_token_headers_both_work(db: Db) {
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    let path = format!("{}/api/v1/accounts/{}", app.base, f.account_id);
    let a = app
        .client
        .get(&path)
        .header("api_access_token", &f.admin_token)
        .send()
        .await
        .unwrap();
    let b = app
        .client
        .get(&path)
        .bearer_auth(&f.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(a.status(), 200);
    assert_eq!(b.status(), 200);
    let body: serde_json::Value = b.json().await.unwrap();
    assert_eq!(body["id"], f.account_id);
    assert_eq!(body["name"], "Acme");
    assert_eq!(body["role"], "administrator");
}

pub async fn a_user_of_another_account_gets_404(db: Db) {
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    let inbox = app
        .post_json(
            &format!("/api/v1/accounts/{}/inboxes", f.account_id),
            Some(&f.admin_token),
            &json!({"name": "Main", "channel_type": "evolution"}),
        )
        .await;
    assert_eq!(inbox.0, 201);
    let inbox_id = inbox.1["id"].as_i64().unwrap();
    for path in [
        format!("/api/v1/accounts/{}", f.account_id),
        format!("/api/v1/accounts/{}/inboxes", f.account_id),
        format!("/api/v1/accounts/{}/inboxes/{inbox_id}", f.account_id),
        format!("/api/v1/accounts/{}/contacts", f.account_id),
        format!(
            "/api/v1/accounts/{}/inboxes/{inbox_id}/conversations",
            f.account_id
        ),
        "/api/v1/accounts/999999".to_string(),
    ] {
        assert_error(
            &app.get(&path, Some(&f.other_admin_token)).await,
            404,
            "not_found",
        );
    }
    let got = app
        .patch_json(
            &format!("/api/v1/accounts/{}/inboxes/{inbox_id}", f.account_id),
            Some(&f.other_admin_token),
            &json!({"name": "Hijacked"}),
        )
        .await;
    assert_error(&got, 404, "not_found");
    assert_eq!(
        app.ferry
            .store
            .get_inbox(f.account_id, inbox_id)
            .await
            .unwrap()
            .name,
        "Main"
    );
}

pub async fn an_agent_reads_but_gets_403_on_admin_routes(db: Db) {
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    let base = format!("/api/v1/accounts/{}/inboxes", f.account_id);
    let created = app.post_json(&base, Some(&f.admin_token), &json!({"name": "Main", "channel_type": "whatsapp_cloud", "provider_config": {"access_token": "EAAG-secret-token-123456"}})).await;
    assert_eq!(created.0, 201, "{}", created.1);
    let id = created.1["id"].as_i64().unwrap();

    let list = app.get(&base, Some(&f.agent_token)).await;
    assert_eq!(list.0, 200);
    assert_eq!(list.1["data"][0]["name"], "Main");
    assert!(
        list.1["data"][0].get("provider_config").is_none(),
        "agents do not see even the masked config"
    );
    assert_eq!(list.1["data"][0]["provider_config_set"], true);

    assert_error(
        &app.post_json(
            &base,
            Some(&f.agent_token),
            &json!({"name": "Agent's", "channel_type": "api"}),
        )
        .await,
        403,
        "forbidden",
    );
    assert_error(
        &app.patch_json(
            &format!("{base}/{id}"),
            Some(&f.agent_token),
            &json!({"name": "Renamed"}),
        )
        .await,
        403,
        "forbidden",
    );
    let inboxes = app.ferry.store.list_inboxes(f.account_id).await.unwrap();
    assert_eq!(inboxes.len(), 1);
    assert_eq!(inboxes[0].name, "Main");
}

pub async fn installation_admin_flag_does_not_open_other_accounts(db: Db) {
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    let token = app
        .user_with_token(f.other_account_id, "root@other.test", Role::Agent, true)
        .await;
    assert_error(
        &app.get(&format!("/api/v1/accounts/{}", f.account_id), Some(&token))
            .await,
        404,
        "not_found",
    );
    let own = app
        .get(
            &format!("/api/v1/accounts/{}", f.other_account_id),
            Some(&token),
        )
        .await;
    assert_eq!(own.0, 200);
    assert_eq!(own.1["role"], "agent");
}

/// This module's tests, with the services they need beside the database.
pub fn suite() -> Vec<crate::Test> {
    [on_both_databases!(
        [];
        no_token_is_401_in_the_error_shape,
        malformed_and_unknown_tokens_are_401,
        bearer_and_api_access_token_headers_both_work,
        a_user_of_another_account_gets_404,
        an_agent_reads_but_gets_403_on_admin_routes,
        installation_admin_flag_does_not_open_other_accounts,
    )]
    .concat()
}
