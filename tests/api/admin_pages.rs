//! Administering an account in the browser without the CLI: creating and editing inboxes, creating an
//! integration and receiving a webhook through the URL the page shows, switching it off and on, and inviting
//! users (an existing user joins a second account; a new person accepts a one-time link).

use fantoccini::Locator;
use ferry::domain::Role;
use serde_json::{Value, json};

use crate::browser::{Browser, PASSWORD, get_page, post_form, web_user};
use crate::helpers::{Db, TestApp, spawn_app};
use crate::imports::scalar;
use crate::webhooks::sign;

/// Clínica Sol with its administrator Alex (alex@clinic.test, `PASSWORD`).
async fn clinic_with_admin(app: &TestApp) -> i64 {
    let account = app
        .ferry
        .create_account("Clínica Sol", None)
        .await
        .unwrap()
        .id;
    web_user(app, account, "alex@clinic.test", Role::Administrator, false).await;
    account
}

async fn text_of(b: &Browser, xpath: &str) -> String {
    b.wait(xpath).await.text().await.unwrap()
}

async fn type_into(b: &Browser, label: &str, text: &str) {
    let field = b.field(label).await;
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

/// A Cloud webhook with one text message from `from`, signed with `secret`.
async fn post_cloud(app: &TestApp, url: &str, secret: &[u8], id: &str) -> (u16, Value) {
    let body = serde_json::to_vec(&json!({"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [{
        "field": "messages", "value": {"messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "551130001000", "phone_number_id": "106540352242922"},
        "contacts": [{"profile": {"name": "Bruna"}, "wa_id": "5511977776666"}],
        "messages": [{"from": "5511977776666", "id": id, "timestamp": "1767225600", "type": "text",
                      "text": {"body": "Quero marcar uma consulta"}}]
    }}]}]}))
    .unwrap();
    let resp = app
        .client
        .post(url)
        .header("content-type", "application/json")
        .header("x-hub-signature-256", sign(secret, &body))
        .body(body)
        .send()
        .await
        .unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

/// Create inbox (a refused phone number first), edit it keeping its secret setting, create its Cloud
/// integration, verify with Meta's handshake and receive a message through the shown URL, disable and enable.
pub async fn administrator_sets_up_an_inbox_and_integration_in_the_browser(db: Db) {
    let app = spawn_app(db).await;
    let account = clinic_with_admin(&app).await;
    let b = Browser::open(&app, db).await;
    b.sign_in("alex@clinic.test", PASSWORD).await;
    b.wait("//h1[normalize-space()='Inboxes']").await;

    b.wait("//a[normalize-space()='Create inbox']")
        .await
        .click()
        .await
        .unwrap();
    b.wait("//h1[normalize-space()='New inbox']").await;
    type_into(&b, "Name", "Vendas").await;
    b.field("Channel")
        .await
        .select_by_value("whatsapp_cloud")
        .await
        .unwrap();
    b.wait("//input[@name='phone_number']")
        .await
        .send_keys("not a phone")
        .await
        .unwrap();
    b.field("New setting name")
        .await
        .send_keys("business_account_id")
        .await
        .unwrap();
    b.wait("//input[@name='new_value_0']")
        .await
        .send_keys("WABA-102290129340398")
        .await
        .unwrap();
    b.screenshot_both("inbox-new").await;
    b.button("Create inbox").await.click().await.unwrap();
    let error = text_of(&b, "//*[@data-page-error]").await;
    assert!(error.contains("phone number"), "{error}");
    assert_eq!(
        scalar(&app, "SELECT COUNT(*) FROM inboxes").await,
        0,
        "nothing half-made"
    );
    // The form keeps what was typed, except the secret value.
    let kept = b.field("Name").await.prop("value").await.unwrap();
    assert_eq!(kept.as_deref(), Some("Vendas"));
    let phone = b.wait("//input[@name='phone_number']").await;
    phone.clear().await.unwrap();
    phone.send_keys("+55 11 3000-1000").await.unwrap();
    b.field("New setting name").await.clear().await.unwrap();
    b.field("New setting name")
        .await
        .send_keys("business_account_id")
        .await
        .unwrap();
    b.wait("//input[@name='new_value_0']")
        .await
        .send_keys("WABA-102290129340398")
        .await
        .unwrap();
    b.button("Create inbox").await.click().await.unwrap();
    let created = text_of(&b, "//*[@data-created-inbox]").await;
    assert!(created.contains("Inbox Vendas created"), "{created}");
    let inbox = scalar(&app, "SELECT id FROM inboxes WHERE name = 'Vendas'").await;
    assert_eq!(
        app.texts("SELECT channel_type || ' ' || phone_number FROM inboxes")
            .await,
        [Some("whatsapp_cloud +551130001000".to_owned())]
    );
    b.screenshot_both("inbox-created").await;

    // Edit: the setting shows masked; a new name and the lock change, the secret stays as it was.
    b.wait("//a[@aria-label='Edit Vendas']")
        .await
        .click()
        .await
        .unwrap();
    let setting = text_of(&b, "//*[@data-setting='business_account_id']").await;
    assert!(
        setting.contains("****0398") && !setting.contains("WABA-1022"),
        "{setting}"
    );
    b.screenshot_both("inbox-edit").await;
    type_into(&b, "Name", "Vendas Cloud").await;
    b.wait("//input[@name='lock_to_single_conversation']")
        .await
        .click()
        .await
        .unwrap();
    b.button("Save inbox").await.click().await.unwrap();
    b.wait("//*[@role='status'][contains(., 'Inbox Vendas Cloud saved')]")
        .await;
    let stored = app.ferry.store.get_inbox(account, inbox).await.unwrap();
    assert!(stored.lock_to_single_conversation);
    let config = ferry::store::open_provider_config(&app.ferry.cipher, &stored).unwrap();
    assert_eq!(
        config,
        Some(json!({"business_account_id": "WABA-102290129340398"}))
    );

    // Its integration, from the link the created notice offered (the inbox is chosen already).
    b.goto(&format!(
        "/app/accounts/{account}/integrations/new?inbox_id={inbox}"
    ))
    .await;
    b.wait("//h2[contains(., 'WhatsApp Cloud API for Vendas Cloud')]")
        .await;
    let offered = b
        .field("Verify token")
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    assert!(
        offered.len() >= 32,
        "a verify token is offered ready-made: {offered:?}"
    );
    b.field("Phone number ID (optional)")
        .await
        .send_keys("106540352242922")
        .await
        .unwrap();
    b.field("App secret")
        .await
        .send_keys("app-s3cret")
        .await
        .unwrap();
    b.screenshot_both("integration-new").await;
    b.button("Create integration").await.click().await.unwrap();
    let url = text_of(&b, "//code[@data-new-url]").await;
    let verify = text_of(&b, "//code[@data-verify-token]").await;
    assert_eq!(verify, offered);
    // A reload shows the same again and creates nothing (the form's answer was a redirect).
    b.client.refresh().await.unwrap();
    assert_eq!(text_of(&b, "//code[@data-new-url]").await, url);
    assert_eq!(scalar(&app, "SELECT COUNT(*) FROM integrations").await, 1);
    assert!(
        url.starts_with(&app.base) && url.contains("/webhooks/whatsapp_cloud/fwh_"),
        "{url}"
    );
    b.wait("//button[@aria-label='Copy the webhook URL']")
        .await
        .click()
        .await
        .unwrap();
    // It says what happened: copied, or (no clipboard) the text is selected to copy by hand.
    b.wait("//button[@aria-label='Copy the webhook URL'][normalize-space()='Copied' or normalize-space()='Press Ctrl+C']")
        .await;
    b.screenshot_both("integration-created").await;

    // Meta's handshake and a signed message, through exactly what the page showed.
    let handshake = app
        .client
        .get(format!(
            "{url}?hub.mode=subscribe&hub.challenge=8812&hub.verify_token={verify}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(handshake.status(), 200);
    assert_eq!(handshake.text().await.unwrap(), "8812");
    let (status, stored) = post_cloud(&app, &url, b"app-s3cret", "wamid.WEB1").await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["results"][0]["status"], "stored", "{stored}");
    let in_inbox = format!(
        "SELECT COUNT(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id WHERE c.inbox_id = {inbox}"
    );
    assert_eq!(scalar(&app, &in_inbox).await, 1);

    // Disabled, the URL is refused; enabled, it routes again.
    let id = scalar(&app, "SELECT id FROM integrations").await;
    b.wait(&format!(
        "//tr[@id='integration-{id}']//button[normalize-space()='Disable']"
    ))
    .await
    .click()
    .await
    .unwrap();
    // The page before had a notice too: wait for this one, not that.
    b.wait("//*[@role='status'][contains(., 'is disabled')]")
        .await;
    assert_eq!(
        post_cloud(&app, &url, b"app-s3cret", "wamid.WEB2").await.0,
        404
    );
    b.wait(&format!(
        "//tr[@id='integration-{id}']//button[normalize-space()='Enable']"
    ))
    .await
    .click()
    .await
    .unwrap();
    b.wait("//*[@role='status'][contains(., 'is enabled')]")
        .await;
    assert_eq!(
        post_cloud(&app, &url, b"app-s3cret", "wamid.WEB3").await.0,
        200
    );
    assert_eq!(scalar(&app, &in_inbox).await, 2);

    // Reveal shows the URL and, for Cloud, the verify token again.
    b.wait(&format!(
        "//tr[@id='integration-{id}']//button[normalize-space()='Reveal']"
    ))
    .await
    .click()
    .await
    .unwrap();
    let again = text_of(
        &b,
        &format!("//tr[@id='integration-{id}']//code[@data-verify-token]"),
    )
    .await;
    assert_eq!(again, verify);
    let actions = app
        .texts("SELECT action FROM audit_events WHERE action LIKE 'in%' ORDER BY id")
        .await;
    for expected in [
        "inbox.created",
        "inbox.updated",
        "integration.create",
        "integration.disable",
        "integration.enable",
        "integration.reveal",
    ] {
        assert!(
            actions.contains(&Some(expected.to_owned())),
            "{expected} missing from {actions:?}"
        );
    }
}

/// An existing user of another account is added at once; a second try says they are a member already; a new
/// person gets a link that works once; an agent sees no invite form and a forged invite is refused.
pub async fn administrator_invites_users_in_the_browser(db: Db) {
    let app = spawn_app(db).await;
    let sol = clinic_with_admin(&app).await;
    let lua = app
        .ferry
        .create_account("Clínica Lua", None)
        .await
        .unwrap()
        .id;
    web_user(&app, lua, "ana@clinic.test", Role::Agent, false).await;
    let b = Browser::open(&app, db).await;
    b.sign_in("alex@clinic.test", PASSWORD).await;
    b.wait("//h1[normalize-space()='Inboxes']").await;
    b.wait("//nav[@aria-label='Settings']//a[normalize-space()='Users']")
        .await
        .click()
        .await
        .unwrap();
    b.wait("//h1[normalize-space()='Users']").await;

    type_into(&b, "Email", "Ana@Clinic.test").await;
    b.button("Invite user").await.click().await.unwrap();
    let notice = text_of(&b, "//*[@role='status']").await;
    assert!(
        notice.contains("ana@clinic.test was added to Clínica Sol"),
        "{notice}"
    );
    let ana_row = text_of(&b, "//tr[@data-member='ana@clinic.test']").await;
    assert!(ana_row.contains("Agent"), "{ana_row}");
    let roles = format!(
        "SELECT au.role FROM account_users au JOIN users u ON u.id = au.user_id \
         WHERE u.email = 'ana@clinic.test' AND au.account_id = {sol}"
    );
    assert_eq!(app.texts(&roles).await, [Some("agent".to_owned())]);
    assert_eq!(
        scalar(
            &app,
            "SELECT COUNT(*) FROM users WHERE email = 'ana@clinic.test'"
        )
        .await,
        1
    );

    type_into(&b, "Email", "ana@clinic.test").await;
    b.field("Role")
        .await
        .select_by_value("administrator")
        .await
        .unwrap();
    b.button("Invite user").await.click().await.unwrap();
    let error = text_of(&b, "//*[@data-page-error]").await;
    assert!(
        error.contains("already a member of Clínica Sol (agent)"),
        "{error}"
    );
    assert_eq!(
        app.texts(&roles).await,
        [Some("agent".to_owned())],
        "the role is not changed by a second invite"
    );

    type_into(&b, "Email", "nope").await;
    b.button("Invite user").await.click().await.unwrap();
    // The browser's own check (type=email) or the server's: either way nothing is stored.
    assert_eq!(scalar(&app, "SELECT COUNT(*) FROM invitations").await, 0);

    b.goto(&format!("/app/accounts/{sol}/users")).await;
    type_into(&b, "Email", "bea@clinic.test").await;
    b.field("Role")
        .await
        .select_by_value("administrator")
        .await
        .unwrap();
    b.button("Invite user").await.click().await.unwrap();
    let link = text_of(&b, "//*[@data-invitation-link]//code").await;
    assert!(link.starts_with(&format!("{}/invite/", app.base)), "{link}");
    // The test server's public URL is a loopback one: the page says who cannot open the link.
    let careful = text_of(&b, "//*[@data-link-warning]").await;
    assert!(careful.contains("(a loopback address)"), "{careful}");
    let pending = text_of(&b, "//tr[@data-invitation='bea@clinic.test']").await;
    assert!(
        pending.contains("Administrator") && pending.contains("Alex Admin"),
        "{pending}"
    );
    b.screenshot_both("users-invited").await;

    // The agent: a member list without the form; a forged invite is refused and stores nothing.
    let agent = Browser::open(&app, db).await;
    agent.sign_in("ana@clinic.test", PASSWORD).await;
    // Two accounts now: she chooses between them.
    agent
        .wait("//h1[normalize-space()='Choose an account']")
        .await;
    agent.goto(&format!("/app/accounts/{sol}/users")).await;
    agent.wait("//tr[@data-member='alex@clinic.test']").await;
    assert!(
        agent
            .client
            .find(Locator::XPath("//button[normalize-space()='Invite user']"))
            .await
            .is_err()
    );
    assert!(
        !agent.text().await.contains("bea@clinic.test"),
        "agents see no pending invitations"
    );
    let session = agent.cookie("ferry_session").await;
    let (_, page) = get_page(&app, &session, &format!("/app/accounts/{sol}/users")).await;
    let csrf = page
        .split("name=\"csrf_token\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    let (status, _) = post_form(
        &app,
        &session,
        &format!("/app/accounts/{sol}/users/invite"),
        &[
            ("csrf_token", &csrf),
            ("email", "eve@evil.test"),
            ("role", "administrator"),
        ],
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(
        scalar(
            &app,
            "SELECT COUNT(*) FROM invitations WHERE email = 'eve@evil.test'"
        )
        .await,
        0
    );
    drop(agent);

    // Bea accepts in a browser of her own: passwords that differ first, then the real ones.
    let bea = Browser::open(&app, db).await;
    bea.client.goto(&link).await.unwrap();
    bea.wait("//h1[normalize-space()='Join Clínica Sol']").await;
    bea.screenshot_both("invite-accept").await;
    type_into(&bea, "Your name", "Bea Lima").await;
    bea.field("Password (at least 8 characters)")
        .await
        .send_keys("sunny days ahead")
        .await
        .unwrap();
    bea.field("Password again")
        .await
        .send_keys("sunny days")
        .await
        .unwrap();
    bea.button("Join Clínica Sol").await.click().await.unwrap();
    let error = text_of(&bea, "//*[@role='alert']").await;
    assert!(error.contains("differ"), "{error}");
    assert_eq!(
        scalar(
            &app,
            "SELECT COUNT(*) FROM users WHERE email = 'bea@clinic.test'"
        )
        .await,
        0
    );
    bea.field("Password (at least 8 characters)")
        .await
        .send_keys("sunny days ahead")
        .await
        .unwrap();
    bea.field("Password again")
        .await
        .send_keys("sunny days ahead")
        .await
        .unwrap();
    bea.button("Join Clínica Sol").await.click().await.unwrap();
    bea.wait("//h1[normalize-space()='Inboxes']").await;
    let top = text_of(&bea, "//header").await;
    assert!(
        top.contains("Bea Lima") && top.contains("Administrator"),
        "{top}"
    );
    // The link worked once.
    bea.client.goto(&link).await.unwrap();
    bea.wait("//h1[normalize-space()='This invitation link does not work']")
        .await;
    bea.screenshot_both("invite-used").await;
    drop(bea);

    // She signs in with her password from now on; the list shows her and no pending invitation.
    let again = Browser::open(&app, db).await;
    again.sign_in("bea@clinic.test", "sunny days ahead").await;
    again.wait("//h1[normalize-space()='Inboxes']").await;
    b.goto(&format!("/app/accounts/{sol}/users")).await;
    b.wait("//tr[@data-member='bea@clinic.test']").await;
    assert!(
        b.client
            .find(Locator::XPath("//tr[@data-invitation]"))
            .await
            .is_err()
    );

    // Ana becomes an administrator, then leaves Sol; her other account stays hers.
    b.button("Make Ana Agent an administrator")
        .await
        .click()
        .await
        .unwrap();
    b.wait("//*[@role='status'][contains(., 'The role was changed')]")
        .await;
    assert_eq!(app.texts(&roles).await, [Some("administrator".to_owned())]);
    b.button("Remove Ana Agent").await.click().await.unwrap();
    b.wait("//dialog[@open]//button[normalize-space()='Remove']")
        .await
        .click()
        .await
        .unwrap();
    b.wait("//*[@role='status'][contains(., 'was removed from Clínica Sol')]")
        .await;
    assert!(app.texts(&roles).await.is_empty());
    assert_eq!(
        scalar(&app, &format!("SELECT COUNT(*) FROM account_users au JOIN users u ON u.id = au.user_id WHERE u.email = 'ana@clinic.test' AND au.account_id = {lua}")).await,
        1
    );

    // A withdrawn invitation's link stops working at once.
    type_into(&b, "Email", "cleo@clinic.test").await;
    b.button("Invite user").await.click().await.unwrap();
    let withdrawn = text_of(&b, "//*[@data-invitation-link]//code").await;
    assert_eq!(
        app.client.get(&withdrawn).send().await.unwrap().status(),
        200
    );
    b.button("Withdraw the invitation of cleo@clinic.test")
        .await
        .click()
        .await
        .unwrap();
    b.wait("//*[@role='status'][contains(., 'withdrawn')]")
        .await;
    assert_eq!(
        app.client.get(&withdrawn).send().await.unwrap().status(),
        404
    );
    assert!(
        b.client
            .find(Locator::XPath("//tr[@data-invitation]"))
            .await
            .is_err()
    );

    let actions = app.texts("SELECT action FROM audit_events WHERE (action LIKE 'user.%' OR action LIKE 'invitation.%') AND action <> 'user.signed_in' ORDER BY id").await;
    assert_eq!(
        actions,
        [
            "user.created",
            "user.created",
            "user.added",
            "user.invited",
            "invitation.accepted",
            "user.role_changed",
            "user.removed",
            "user.invited",
            "invitation.revoked"
        ]
        .map(|a| Some(a.to_owned()))
    );
}

/// Two acceptances of one link at the same moment: one user, one membership, and the other gets "does not work".
/// Inviting again replaces the link; an expired one is refused.
pub async fn an_invitation_link_works_once(db: Db) {
    use ferry::members::{self, Invited};
    let app = spawn_app(db).await;
    let account = app
        .ferry
        .create_account("Clínica Sol", None)
        .await
        .unwrap()
        .id;
    let link = |invited: Invited| match invited {
        Invited::Link { url, .. } => url.rsplit('/').next().unwrap().to_owned(),
        other => panic!("a link, not {other:?}"),
    };
    let invite = || members::invite(&app.ferry, account, "dora@clinic.test", Role::Agent, None);
    let first = link(invite().await.unwrap());
    let token = link(invite().await.unwrap());
    assert!(
        members::accept(&app.ferry, &first, "Dora", "long enough pw")
            .await
            .unwrap()
            .is_none(),
        "inviting again replaces the first link"
    );
    let (a, b) = tokio::join!(
        members::accept(&app.ferry, &token, "Dora A", "long enough pw"),
        members::accept(&app.ferry, &token, "Dora B", "long enough pw"),
    );
    let accepted: Vec<_> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
    assert_eq!(accepted.len(), 1, "exactly one acceptance");
    assert!(!accepted[0].existing_user);
    assert_eq!(
        scalar(
            &app,
            "SELECT COUNT(*) FROM users WHERE email = 'dora@clinic.test'"
        )
        .await,
        1
    );
    assert_eq!(
        scalar(
            &app,
            "SELECT COUNT(*) FROM account_users WHERE role = 'agent'"
        )
        .await,
        1
    );

    // A short password is refused before the link is used up; an expired link is refused.
    let later = link(
        members::invite(&app.ferry, account, "eli@clinic.test", Role::Agent, None)
            .await
            .unwrap(),
    );
    assert!(
        members::accept(&app.ferry, &later, "Eli", "short")
            .await
            .is_err()
    );
    let pending =
        "SELECT COUNT(*) FROM invitations WHERE email = 'eli@clinic.test' AND accepted_at IS NULL";
    assert_eq!(scalar(&app, pending).await, 1, "still usable");
    app.execute("UPDATE invitations SET expires_at = created_at WHERE email = 'eli@clinic.test'")
        .await;
    assert!(
        members::accept(&app.ferry, &later, "Eli", "long enough pw")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        scalar(
            &app,
            "SELECT COUNT(*) FROM users WHERE email = 'eli@clinic.test'"
        )
        .await,
        0
    );
}

/// Two administrators demoting each other at the same moment leave one administrator, not none; the last
/// one can be neither demoted nor removed.
pub async fn an_account_keeps_an_administrator(db: Db) {
    use ferry::members;
    let app = spawn_app(db).await;
    let account = clinic_with_admin(&app).await;
    let bia = app
        .ferry
        .create_user(ferry::services::CreateUser {
            account_id: account,
            name: Some("Bia"),
            email: "bia@clinic.test",
            password: PASSWORD,
            role: Role::Administrator,
            installation_admin: false,
        })
        .await
        .unwrap()
        .id;
    let alex = scalar(
        &app,
        "SELECT id FROM users WHERE email = 'alex@clinic.test'",
    )
    .await;
    let admins = "SELECT COUNT(*) FROM account_users WHERE role = 'administrator'";
    // Raced many times: without the guard's lock the two would sometimes both pass.
    for round in 0..10 {
        app.execute("UPDATE account_users SET role = 'administrator'")
            .await;
        let (a, b) = tokio::join!(
            members::change(&app.ferry, account, alex, Some(Role::Agent), Some(bia)),
            members::change(&app.ferry, account, bia, Some(Role::Agent), Some(alex)),
        );
        assert_eq!(
            [a.is_ok(), b.is_ok()].iter().filter(|ok| **ok).count(),
            1,
            "round {round}: {a:?} {b:?}"
        );
        assert_eq!(scalar(&app, admins).await, 1, "round {round}");
    }
    let left = scalar(
        &app,
        "SELECT user_id FROM account_users WHERE role = 'administrator'",
    )
    .await;
    let refused = members::change(&app.ferry, account, left, None, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("needs at least one administrator"),
        "{refused}"
    );
    assert_eq!(scalar(&app, admins).await, 1);
    assert!(matches!(
        members::change(&app.ferry, account, 9999, None, None).await,
        Err(ferry::services::ServiceError::NotFound(_))
    ));
}

pub fn suite() -> Vec<crate::Test> {
    [
        on_both_databases!(
            [crate::Service::Browser];
            administrator_sets_up_an_inbox_and_integration_in_the_browser,
            administrator_invites_users_in_the_browser,
        ),
        on_both_databases!([]; an_invitation_link_works_once, an_account_keeps_an_administrator),
    ]
    .concat()
}
