use ferry::secrets::{Cipher, SecretKey};
use ferry::store::open_provider_config;
use serde_json::json;

use crate::helpers::{Db, assert_error, spawn_app};

pub async fn create_encrypts_the_config_and_never_returns_it(db: Db) {
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    let secret = "sk-evolution-THE-SECRET-9876";
    let (status, body) = app.post_json(&format!("/api/v1/accounts/{}/inboxes", f.account_id), Some(&f.admin_token),
        &json!({"name": "  Evolution  ", "channel_type": "evolution", "phone_number": "+55 (11) 4002-8922",
                "provider_config": {"api_key": secret, "base_url": "http://evo.local"}})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["name"], "Evolution");
    assert_eq!(body["channel_type"], "evolution");
    assert_eq!(body["whatsapp_like"], true);
    assert_eq!(body["phone_number"], "+551140028922");
    assert_eq!(body["conversations_count"], 0);
    assert_eq!(body["provider_config"]["api_key"], "****9876");
    assert!(!body.to_string().contains(secret));

    let id = body["id"].as_i64().unwrap();
    let shown = app
        .get(
            &format!("/api/v1/accounts/{}/inboxes/{id}", f.account_id),
            Some(&f.admin_token),
        )
        .await;
    assert!(!shown.1.to_string().contains(secret));

    // At rest: ciphertext bound to this row, readable with the key, not containing the secret.
    let inbox = app.ferry.store.get_inbox(f.account_id, id).await.unwrap();
    let raw = inbox.provider_config.clone().unwrap();
    assert!(!raw.windows(secret.len()).any(|w| w == secret.as_bytes()));
    let config = open_provider_config(&app.ferry.cipher, &inbox)
        .unwrap()
        .unwrap();
    assert_eq!(config["api_key"], secret);

    let audit = app.ferry.store.list_audit(f.account_id, 10).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "inbox.created" && e.subject == format!("inbox:{id}"))
    );
}

pub async fn update_changes_only_named_fields_and_null_clears(db: Db) {
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    let base = format!("/api/v1/accounts/{}/inboxes", f.account_id);
    let created = app.post_json(&base, Some(&f.admin_token), &json!({"name": "Cloud", "channel_type": "whatsapp_cloud",
        "phone_number": "+5511988887777", "provider_config": {"access_token": "old-token-aaaa-1111"}})).await;
    let id = created.1["id"].as_i64().unwrap();

    let renamed = app
        .patch_json(
            &format!("{base}/{id}"),
            Some(&f.admin_token),
            &json!({"name": "Cloud API"}),
        )
        .await;
    assert_eq!(renamed.0, 200, "{}", renamed.1);
    assert_eq!(renamed.1["name"], "Cloud API");
    assert_eq!(renamed.1["phone_number"], "+5511988887777");
    assert_eq!(renamed.1["provider_config"]["access_token"], "****1111");

    let changed = app.patch_json(&format!("{base}/{id}"), Some(&f.admin_token),
        &json!({"phone_number": null, "provider_config": {"access_token": "new-token-bbbb-2222"}, "lock_to_single_conversation": true})).await;
    assert_eq!(changed.0, 200, "{}", changed.1);
    assert_eq!(changed.1["phone_number"], serde_json::Value::Null);
    assert_eq!(changed.1["provider_config"]["access_token"], "****2222");
    assert_eq!(changed.1["lock_to_single_conversation"], true);
    assert_eq!(changed.1["name"], "Cloud API");

    let cleared = app
        .patch_json(
            &format!("{base}/{id}"),
            Some(&f.admin_token),
            &json!({"provider_config": null}),
        )
        .await;
    assert_eq!(cleared.1["provider_config_set"], false);
    assert_eq!(cleared.1["provider_config"], serde_json::Value::Null);
}

pub async fn bad_input_is_refused_and_nothing_is_written(db: Db) {
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    let base = format!("/api/v1/accounts/{}/inboxes", f.account_id);
    let t = Some(f.admin_token.as_str());
    let cases = [
        (
            json!({"name": "X", "channel_type": "carrier_pigeon"}),
            422,
            "validation_failed",
        ),
        (
            json!({"name": "X", "channel_type": "api", "colour": "red"}),
            422,
            "validation_failed",
        ),
        (
            json!({"name": 42, "channel_type": "api"}),
            422,
            "validation_failed",
        ),
        (json!({"channel_type": "api"}), 422, "validation_failed"),
        (
            json!({"name": "   ", "channel_type": "api"}),
            422,
            "validation_failed",
        ),
        (
            json!({"name": "x".repeat(256), "channel_type": "api"}),
            422,
            "validation_failed",
        ),
        (
            json!({"name": "X", "channel_type": "evolution", "phone_number": "call me"}),
            422,
            "validation_failed",
        ),
        (
            json!({"name": "X", "channel_type": "evolution", "provider_config": ["not", "an", "object"]}),
            422,
            "validation_failed",
        ),
    ];
    for (body, status, code) in cases {
        let got = app.post_json(&base, t, &body).await;
        assert_error(&got, status, code);
    }
    let got = app
        .post_json(
            &base,
            t,
            &json!({"name": "X", "channel_type": "carrier_pigeon"}),
        )
        .await;
    assert_eq!(got.1["error"]["details"]["field"], "channel_type");
    assert_error(
        &app.post_raw(
            &base,
            &f.admin_token,
            Some("application/json"),
            b"{\"name\": ".to_vec(),
        )
        .await,
        400,
        "malformed_json",
    );
    assert_error(
        &app.post_raw(&base, &f.admin_token, None, b"{}".to_vec())
            .await,
        415,
        "unsupported_media_type",
    );
    let huge = serde_json::to_vec(&json!({"name": "X", "channel_type": "api", "provider_config": {"blob": "a".repeat(200_000)}})).unwrap();
    assert_error(
        &app.post_raw(&base, &f.admin_token, Some("application/json"), huge)
            .await,
        413,
        "payload_too_large",
    );
    assert_error(
        &app.get(&format!("/api/v1/accounts/{}/inboxes/abc", f.account_id), t)
            .await,
        400,
        "invalid_path",
    );
    assert_error(
        &app.get(
            &format!("/api/v1/accounts/{}/contacts?limit=0", f.account_id),
            t,
        )
        .await,
        422,
        "validation_failed",
    );
    assert_error(
        &app.get(
            &format!("/api/v1/accounts/{}/contacts?limit=ten", f.account_id),
            t,
        )
        .await,
        400,
        "invalid_query",
    );

    assert!(
        app.ferry
            .store
            .list_inboxes(f.account_id)
            .await
            .unwrap()
            .is_empty(),
        "nothing written"
    );

    // An update with an unknown field or nothing to change leaves the inbox as it was.
    let id = app
        .post_json(&base, t, &json!({"name": "Kept", "channel_type": "api"}))
        .await
        .1["id"]
        .as_i64()
        .unwrap();
    assert_error(
        &app.patch_json(
            &format!("{base}/{id}"),
            t,
            &json!({"name": "New", "channel_type": "email"}),
        )
        .await,
        422,
        "validation_failed",
    );
    assert_error(
        &app.patch_json(&format!("{base}/{id}"), t, &json!({})).await,
        422,
        "validation_failed",
    );
    // A NUL character (PostgreSQL text cannot hold one), in a name or deep in the config: refused, not a 500.
    for body in [
        json!({"name": "\u{0}"}),
        json!({"provider_config": {"k\u{0}": [1]}}),
    ] {
        assert_error(
            &app.patch_json(&format!("{base}/{id}"), t, &body).await,
            422,
            "validation_failed",
        );
    }
    assert_error(
        &app.get(
            &format!("/api/v1/accounts/{}/contacts?q=a%00b", f.account_id),
            t,
        )
        .await,
        400,
        "invalid_query",
    );
    assert_eq!(
        app.ferry
            .store
            .get_inbox(f.account_id, id)
            .await
            .unwrap()
            .name,
        "Kept"
    );
}

pub async fn inboxes_of_another_account_are_404(db: Db) {
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    let theirs = app
        .post_json(
            &format!("/api/v1/accounts/{}/inboxes", f.other_account_id),
            Some(&f.other_admin_token),
            &json!({"name": "Theirs", "channel_type": "api"}),
        )
        .await
        .1["id"]
        .as_i64()
        .unwrap();
    // Our account in the path, their inbox id: not found, and untouched.
    let path = format!("/api/v1/accounts/{}/inboxes/{theirs}", f.account_id);
    assert_error(
        &app.get(&path, Some(&f.admin_token)).await,
        404,
        "not_found",
    );
    assert_error(
        &app.patch_json(&path, Some(&f.admin_token), &json!({"name": "Mine now"}))
            .await,
        404,
        "not_found",
    );
    assert_error(
        &app.get(&format!("{path}/conversations"), Some(&f.admin_token))
            .await,
        404,
        "not_found",
    );
    assert_eq!(
        app.ferry
            .store
            .get_inbox(f.other_account_id, theirs)
            .await
            .unwrap()
            .name,
        "Theirs"
    );
}

pub async fn a_wrong_secret_key_is_a_clear_error_never_garbage(db: Db) {
    let app = spawn_app(db).await;
    let f = app.fixture().await;
    let created = app.post_json(&format!("/api/v1/accounts/{}/inboxes", f.account_id), Some(&f.admin_token),
        &json!({"name": "Twilio", "channel_type": "twilio_whatsapp", "provider_config": {"auth_token": "abcdef0123456789"}})).await;
    let inbox = app
        .ferry
        .store
        .get_inbox(f.account_id, created.1["id"].as_i64().unwrap())
        .await
        .unwrap();
    let wrong = Cipher::new(SecretKey::generate());
    let err = open_provider_config(&wrong, &inbox).unwrap_err();
    assert!(err.to_string().contains("FERRY_SECRET_KEY"), "{err}");
    // The same ciphertext under another inbox id does not open either.
    let mut moved = inbox.clone();
    moved.id += 1;
    assert!(open_provider_config(&app.ferry.cipher, &moved).is_err());
}

/// This module's tests, with the services they need beside the database.
pub fn suite() -> Vec<crate::Test> {
    [on_both_databases!(
        [];
        create_encrypts_the_config_and_never_returns_it,
        update_changes_only_named_fields_and_null_clears,
        bad_input_is_refused_and_nothing_is_written,
        inboxes_of_another_account_are_404,
        a_wrong_secret_key_is_a_clear_error_never_garbage,
    )]
    .concat()
}
