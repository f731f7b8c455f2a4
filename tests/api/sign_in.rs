//! Sign-in throttling over HTTP: failures count per client address and email, per address, and per email, so
//! a guesser is stopped without locking the user out from everywhere.

use ferry::domain::Role;

use crate::helpers::{Db, TestApp, login_form, spawn_app_with};

const PASSWORD: &str = "correct horse battery";

/// A sign-in attempt from `address` (sent as the proxy's `X-Forwarded-For` entry): the answer's status.
async fn sign_in(app: &TestApp, address: &str, email: &str, password: &str) -> u16 {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let (cookie, csrf) = login_form(app).await;
    let form: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("email", email),
            ("password", password),
            ("csrf_token", csrf.as_str()),
        ])
        .finish();
    client
        .post(format!("{}/login", app.base))
        .header("cookie", cookie)
        // A client's own entry first: only the last one, which the proxy appended, counts.
        .header("x-forwarded-for", format!("192.0.2.1, {address}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

pub async fn guessers_are_throttled_by_address_and_email(db: Db) {
    let app = spawn_app_with(db, |c| c.trust_forwarded_for = true).await;
    let account = app.fixture().await.account_id;
    for email in ["ana@clinic.test", "bo@clinic.test"] {
        app.user_with_token(account, email, Role::Administrator, false)
            .await;
    }

    // One address guessing one user: five failures, then refused even with the right password.
    for _ in 0..5 {
        assert_eq!(
            sign_in(&app, "198.51.100.7", "ana@clinic.test", "wrong guess").await,
            401
        );
    }
    assert_eq!(
        sign_in(&app, "198.51.100.7", "ana@clinic.test", PASSWORD).await,
        429
    );
    // The user, elsewhere, still signs in: one guesser cannot lock them out.
    assert_eq!(
        sign_in(&app, "203.0.113.9", "ana@clinic.test", PASSWORD).await,
        303
    );

    // Many people signing in behind one address: right passwords never add up to a lock.
    for _ in 0..25 {
        assert_eq!(
            sign_in(&app, "203.0.113.50", "bo@clinic.test", PASSWORD).await,
            303
        );
    }

    // One address trying many accounts: twenty failures in all, then refused for any email.
    for i in 0..20 {
        let email = format!("nobody{i}@clinic.test");
        assert_eq!(
            sign_in(&app, "198.51.100.8", &email, "wrong guess").await,
            401,
            "{email}"
        );
    }
    assert_eq!(
        sign_in(&app, "198.51.100.8", "bo@clinic.test", PASSWORD).await,
        429
    );
    // Signing in to one's own account does not reset the address's count.
    assert_eq!(
        sign_in(&app, "198.51.100.8", "bo@clinic.test", PASSWORD).await,
        429
    );

    // Guessers spread over many addresses: thirty attempts for one email lock it everywhere (the two refused
    // ones above count too: every attempt is counted before anything is checked).
    for i in 0..28 {
        let address = format!("198.51.100.{}", 100 + i);
        assert_eq!(
            sign_in(&app, &address, "bo@clinic.test", "wrong guess").await,
            401,
            "{address}"
        );
    }
    assert_eq!(
        sign_in(&app, "203.0.113.10", "bo@clinic.test", PASSWORD).await,
        429
    );
}

/// Without `FERRY_TRUST_FORWARDED_FOR`, the header is the client's word: attempts count by the connection's
/// address, so inventing addresses gets a guesser nothing.
pub async fn forwarded_for_is_ignored_unless_trusted(db: Db) {
    let app = spawn_app_with(db, |_| {}).await;
    let account = app.fixture().await.account_id;
    app.user_with_token(account, "ana@clinic.test", Role::Administrator, false)
        .await;
    for i in 0..5 {
        let invented = format!("198.51.100.{i}");
        assert_eq!(
            sign_in(&app, &invented, "ana@clinic.test", "wrong guess").await,
            401
        );
    }
    assert_eq!(
        sign_in(&app, "198.51.100.99", "ana@clinic.test", PASSWORD).await,
        429
    );
}

/// This module's tests, with the services they need beside the database.
pub fn suite() -> Vec<crate::Test> {
    [on_both_databases!(
        [];
        guessers_are_throttled_by_address_and_email,
        forwarded_for_is_ignored_unless_trusted,
    )]
    .concat()
}
