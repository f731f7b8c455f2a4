//! The web UI in a real browser: Debian's chromium driven through chromedriver by fantoccini, against the real
//! app on port 0 with a seeded database. Every page is saved to `target/screenshots/` for a person to look at.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use ferry::domain::{ChannelType, Role, WebhookToken};
use ferry::services::CreateUser;
use serde_json::json;
use tokio::sync::watch;

use crate::helpers::{Db, TestApp, inbox_of, seeded, spawn_app};
use crate::imports::{Legacy, export_app, scalar, spec};

pub const PASSWORD: &str = "correct horse battery";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

pub fn browser_available() -> Result<(), String> {
    for path in [CHROMEDRIVER, CHROMIUM] {
        if !std::path::Path::new(path).exists() {
            return Err(format!(
                "no browser at {path} (apt-get install chromium chromium-driver)"
            ));
        }
    }
    Ok(())
}

/// A chromedriver of this test's own with a fresh profile; both go away with it.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    base: String,
    /// Screenshots are named `{prefix}-{page}.png`.
    prefix: String,
}

impl Drop for Browser {
    /// Chromium outlives a killed chromedriver: kill the driver's whole process group, then anything still
    /// running on this browser's profile (a finished test must leave no browser behind).
    fn drop(&mut self) {
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let profile = self._profile.path().display().to_string();
        let _ = Command::new("pkill")
            .args(["-KILL", "-f", &profile])
            .status();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    pub async fn open(app: &TestApp, db: Db) -> Browser {
        Browser::open_at(&app.base, db.as_str()).await
    }

    pub async fn open_at(base: &str, prefix: &str) -> Browser {
        let port = free_port();
        use std::os::unix::process::CommandExt;
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            // Its own process group, with the browsers it starts: killed together on drop.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..100 {
            if http.get(format!("{url}/status")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&url)
            .await
            .expect("a chromium session");
        Browser {
            client,
            driver,
            _profile: profile,
            base: base.to_owned(),
            prefix: prefix.to_owned(),
        }
    }

    pub async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap();
    }

    /// Waits (up to 20 s) for an element.
    pub async fn wait(&self, xpath: &str) -> Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::XPath(xpath))
            .await
            .unwrap_or_else(|e| panic!("never appeared: {xpath} ({e})"))
    }

    pub async fn text(&self) -> String {
        self.client
            .find(Locator::Css("body"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The input a `<label>` with this text names.
    pub async fn field(&self, label: &str) -> Element {
        let label_el = self
            .wait(&format!("//label[normalize-space()='{label}']"))
            .await;
        let id = label_el.attr("for").await.unwrap().expect("label for");
        self.client.find(Locator::Id(&id)).await.unwrap()
    }

    pub async fn button(&self, name: &str) -> Element {
        self.wait(&format!(
            "//button[normalize-space()='{name}' or @aria-label='{name}']"
        ))
        .await
    }

    /// The whole page (the window grows to its height for the picture).
    pub async fn screenshot(&self, name: &str) {
        let (width, height) = self.client.get_window_size().await.unwrap();
        let full = self
            .client
            .execute("return document.documentElement.scrollHeight;", vec![])
            .await
            .unwrap()
            .as_u64()
            .unwrap_or(height);
        self.client
            .set_window_size(width as u32, (full + 120).max(height) as u32)
            .await
            .unwrap();
        let png = self.client.screenshot().await.unwrap();
        self.client
            .set_window_size(width as u32, height as u32)
            .await
            .unwrap();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{}-{name}.png", self.prefix)), png).unwrap();
    }

    /// The page at 1280 px and at 390 px (a phone), where it must not scroll sideways; back to 1280 after.
    pub async fn screenshot_both(&self, name: &str) {
        self.screenshot(name).await;
        self.client.set_window_size(390, 844).await.unwrap();
        let overflow = self
            .client
            .execute(
                "return document.documentElement.scrollWidth > window.innerWidth + 1;",
                vec![],
            )
            .await
            .unwrap();
        self.screenshot(&format!("{name}-390")).await;
        self.client.set_window_size(1280, 900).await.unwrap();
        assert_eq!(overflow, json!(false), "{name} scrolls sideways at 390 px");
    }

    pub async fn sign_in(&self, email: &str, password: &str) {
        self.goto("/login").await;
        self.field("Email").await.send_keys(email).await.unwrap();
        self.field("Password")
            .await
            .send_keys(password)
            .await
            .unwrap();
        self.button("Sign in").await.click().await.unwrap();
    }

    /// A value the page keeps until it is reloaded: proves a change arrived without a reload.
    pub async fn mark_page(&self) {
        self.client
            .execute("window.__ferryMark = 'kept'; return true;", vec![])
            .await
            .unwrap();
    }

    pub async fn page_kept(&self) -> bool {
        self.client
            .execute("return window.__ferryMark === 'kept';", vec![])
            .await
            .unwrap()
            == json!(true)
    }

    pub async fn cookie(&self, name: &str) -> String {
        self.client
            .get_named_cookie(name)
            .await
            .unwrap()
            .value()
            .to_owned()
    }
}

/// A user who signs in with `PASSWORD`.
pub async fn web_user(
    app: &TestApp,
    account: i64,
    email: &str,
    role: Role,
    installation_admin: bool,
) {
    app.ferry
        .create_user(CreateUser {
            account_id: account,
            name: Some(if role == Role::Agent {
                "Ana Agent"
            } else {
                "Alex Admin"
            }),
            email,
            password: PASSWORD,
            role,
            installation_admin,
        })
        .await
        .unwrap();
}

fn start_worker(app: &TestApp) -> watch::Sender<bool> {
    let (tx, rx) = watch::channel(false);
    let worker = ferry::worker::Worker::new(app.ferry.clone())
        .with_poll_interval(Duration::from_millis(100));
    tokio::spawn(worker.run(rx));
    tx
}

async fn migrations_count(app: &TestApp) -> i64 {
    scalar(app, "SELECT COUNT(*) FROM inbox_migrations").await
}

/// Sign in (a wrong password first), preview, a wrong confirmation, `MIGRATE`, live progress to completed
/// without a reload, revert.
pub async fn admin_migrates_and_reverts_an_inbox_in_the_browser(db: Db) {
    let app = spawn_app(db).await;
    let (report, _) = seeded(&app, 60, 0.3).await;
    let account = report.account_id;
    web_user(
        &app,
        account,
        "alex@clinic.test",
        Role::Administrator,
        false,
    )
    .await;
    let source = inbox_of(&report, ChannelType::Evolution);
    let destination = inbox_of(&report, ChannelType::WhatsappCloud);
    let source_conversations = scalar(
        &app,
        format!("SELECT COUNT(*) FROM conversations WHERE inbox_id = {source}"),
    )
    .await;
    let destination_before = scalar(
        &app,
        format!("SELECT COUNT(*) FROM conversations WHERE inbox_id = {destination}"),
    )
    .await;
    let b = Browser::open(&app, db).await;

    // Signed out: any page leads to the sign-in form, which keeps where the user wanted to go.
    b.goto(&format!("/app/accounts/{account}/inboxes")).await;
    b.wait("//h1[normalize-space()='Sign in']").await;
    b.screenshot("login").await;
    b.sign_in("alex@clinic.test", "wrong password").await;
    b.wait("//*[@role='alert'][contains(., 'do not match')]")
        .await;
    b.field("Password").await.send_keys(PASSWORD).await.unwrap();
    b.button("Sign in").await.click().await.unwrap();

    // Inboxes: channel, phone number and conversation count of each.
    b.wait("//h1[normalize-space()='Inboxes']").await;
    let text = b.text().await;
    for inbox in &report.inboxes {
        assert!(
            text.contains(&inbox.name),
            "{} missing in {text}",
            inbox.name
        );
    }
    assert!(text.contains("WhatsApp Cloud API"), "{text}");
    assert!(text.contains(&source_conversations.to_string()), "{text}");
    b.screenshot("inboxes").await;
    let cookie = b.client.get_named_cookie("ferry_session").await.unwrap();
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(format!("{:?}", cookie.same_site()), "Some(Lax)");

    // The migration page: destinations as "name (N conversations)", then the preview.
    let evolution_name = &report.inboxes.iter().find(|i| i.id == source).unwrap().name;
    b.wait(&format!("//a[@aria-label='Migrate {evolution_name}']"))
        .await
        .click()
        .await
        .unwrap();
    let select = b.field("Destination inbox").await;
    let destination_name = &report
        .inboxes
        .iter()
        .find(|i| i.id == destination)
        .unwrap()
        .name;
    let label = format!("{destination_name} ({destination_before} conversations)");
    b.screenshot("migration").await;
    select.select_by_label(&label).await.unwrap();
    b.wait("//button[normalize-space()='Start migration']")
        .await;
    let preview = b
        .wait("//div[@class='preview']")
        .await
        .text()
        .await
        .unwrap();
    let preview = preview.to_lowercase();
    assert!(
        preview.contains(&format!("conversations\n{source_conversations}")),
        "{preview}"
    );
    assert!(preview.contains("contacts already talk to"), "{preview}");
    // The contacts that merge are listed, with their address in each inbox.
    b.wait("//details[@data-merging]/summary[starts-with(normalize-space(), 'Contacts that will merge (')]")
        .await
        .click()
        .await
        .unwrap();
    b.wait("//details[@data-merging]//tbody/tr[1]/td[2][normalize-space() != '']")
        .await;
    b.screenshot("migration-preview").await;

    // A wrong confirmation keeps "Migrate" disabled, and Enter does nothing.
    b.button("Start migration").await.click().await.unwrap();
    let confirm = b.field("Type MIGRATE to confirm").await;
    confirm.send_keys("MIGRATION").await.unwrap();
    let migrate = b.button("Migrate").await;
    assert!(
        !migrate.is_enabled().await.unwrap(),
        "Migrate enabled by MIGRATION"
    );
    confirm.send_keys("\u{E007}").await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        migrations_count(&app).await,
        0,
        "a wrong confirmation started a migration"
    );
    confirm.clear().await.unwrap();
    confirm.send_keys("migrate").await.unwrap();
    assert!(
        migrate.is_enabled().await.unwrap(),
        "Migrate stays disabled for 'migrate'"
    );
    b.screenshot("migration-confirm").await;
    confirm.send_keys("\u{E007}").await.unwrap();

    // Queued (no worker yet): cancelled at once, then retried.
    b.wait("//section[@id='migration-panel']//span[@data-status][normalize-space()='Queued']")
        .await;
    assert_eq!(migrations_count(&app).await, 1);
    b.button("Cancel migration").await.click().await.unwrap();
    b.wait("//section[@id='migration-panel']//span[@data-status][normalize-space()='Cancelled']")
        .await;
    b.screenshot("migration-cancelled").await;
    b.button("Retry migration").await.click().await.unwrap();
    // Queued again; the worker starts only now, so every change arrives live.
    b.wait("//section[@id='migration-panel']//span[@data-status][normalize-space()='Queued']")
        .await;
    assert_eq!(
        migrations_count(&app).await,
        1,
        "retry made a second migration"
    );
    b.mark_page().await;
    let stop = start_worker(&app);
    b.wait("//section[@id='migration-panel']//span[@data-status][normalize-space()='Completed']")
        .await;
    b.wait("//button[normalize-space()='Revert migration']")
        .await;
    assert!(b.page_kept().await, "the page was reloaded to show the end");
    let panel = b
        .wait("//section[@id='migration-panel']")
        .await
        .text()
        .await
        .unwrap();
    assert!(panel.contains("100.0%"), "{panel}");
    assert!(
        panel.contains(&format!("{source_conversations} / {source_conversations}")),
        "{panel}"
    );
    b.screenshot("migration-completed").await;
    assert_eq!(
        scalar(
            &app,
            format!("SELECT COUNT(*) FROM conversations WHERE inbox_id = {source}")
        )
        .await,
        0
    );
    assert_eq!(
        scalar(
            &app,
            format!("SELECT COUNT(*) FROM conversations WHERE inbox_id = {destination}")
        )
        .await,
        destination_before + source_conversations
    );

    // Revert with its own typed confirmation.
    b.button("Revert migration").await.click().await.unwrap();
    let confirm = b.field("Type REVERT to confirm").await;
    let revert = b.button("Revert").await;
    confirm.send_keys("MIGRATE").await.unwrap();
    assert!(!revert.is_enabled().await.unwrap());
    confirm.clear().await.unwrap();
    confirm.send_keys("Revert").await.unwrap();
    assert!(revert.is_enabled().await.unwrap());
    revert.click().await.unwrap();
    // A job: queued, run by the worker in batches, followed live; the page then says what came back. A small
    // revert can finish before the queued notice is seen: the page then reloads without it.
    b.wait(
        "//*[@role='status'][contains(., 'Revert queued')] \
         | //p[@data-revert-text][contains(., 'Reverted:')]",
    )
    .await;
    b.wait("//p[@data-revert-text][contains(., 'Reverted:')][contains(., 'conversations')]")
        .await;
    b.wait("//section[@id='migration-panel']//span[@data-status][normalize-space()='Reverted']")
        .await;
    b.screenshot("migration-reverted").await;
    assert_eq!(
        scalar(
            &app,
            format!("SELECT COUNT(*) FROM conversations WHERE inbox_id = {source}")
        )
        .await,
        source_conversations
    );
    let audited = scalar(
        &app,
        "SELECT COUNT(*) FROM audit_events WHERE action = 'inbox_migration.reverted'",
    )
    .await;
    assert_eq!(audited, 1);

    // Phone width: the same page, laid out for it.
    b.client.set_window_size(390, 844).await.unwrap();
    b.goto(&format!("/app/accounts/{account}/inboxes")).await;
    b.wait("//h1[normalize-space()='Inboxes']").await;
    b.screenshot("inboxes-phone").await;
    let _ = stop.send(true);
}

/// A moved conversation opens in the destination inbox with its whole thread, its contact's note and label and
/// an image attachment shown inline; after the revert, in the source. Search finds it by phone; the attachment
/// is served with its stored type to members of the account only.
pub async fn moved_conversations_are_read_in_the_browser(db: Db) {
    let app = spawn_app(db).await;
    let (report, token) = seeded(&app, 20, 0.3).await;
    let account = report.account_id;
    web_user(
        &app,
        account,
        "alex@clinic.test",
        Role::Administrator,
        false,
    )
    .await;
    let (source, destination) = (
        inbox_of(&report, ChannelType::Evolution),
        inbox_of(&report, ChannelType::WhatsappCloud),
    );
    let conversation = scalar(
        &app,
        format!(
            "SELECT c.id FROM conversations c JOIN contact_inboxes ci ON ci.id = c.contact_inbox_id \
             JOIN contacts ct ON ct.id = c.contact_id WHERE c.inbox_id = {source} \
             AND ci.wa_identity NOT LIKE '%@%' AND ci.wa_identity NOT LIKE '%.%' AND ct.phone_number IS NOT NULL ORDER BY \
             (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id) DESC, c.id LIMIT 1"
        ),
    )
    .await;
    let messages = scalar(
        &app,
        format!("SELECT COUNT(*) FROM messages WHERE conversation_id = {conversation}"),
    )
    .await;
    let attachment = attach_receipt(&app, account, conversation).await;
    let contact = scalar(
        &app,
        format!("SELECT contact_id FROM conversations WHERE id = {conversation}"),
    )
    .await;
    app.execute(format!(
        "INSERT INTO contact_notes (account_id, contact_id, content) \
         VALUES ({account}, {contact}, 'Prefers afternoon calls')"
    ))
    .await;
    app.execute(format!(
        "INSERT INTO contact_labels (contact_id, label) VALUES ({contact}, 'vip-customer')"
    ))
    .await;

    let url = format!("/api/v1/accounts/{account}/inboxes/{source}/migrations");
    let created = app
        .post_json(
            &url,
            Some(&token),
            &json!({"destination_inbox_id": destination}),
        )
        .await;
    assert_eq!(created.0, 201, "{}", created.1);

    // The inbox list says what migrations do: queued, then migrated, and where the source's webhooks go.
    let b = Browser::open(&app, db).await;
    b.sign_in("alex@clinic.test", PASSWORD).await;
    b.wait("//h1[normalize-space()='Inboxes']").await;
    let name_of = |id: i64| {
        report
            .inboxes
            .iter()
            .find(|i| i.id == id)
            .unwrap()
            .name
            .clone()
    };
    let (cloud_name, source_name) = (&name_of(destination), &name_of(source));
    b.wait(&format!(
        "//a[@data-migration-note][normalize-space()='Queued to migrate to {cloud_name}']"
    ))
    .await;
    app.drain_worker().await;
    b.goto(&format!("/app/accounts/{account}/inboxes")).await;
    b.wait(&format!(
        "//a[@data-migration-note][starts-with(normalize-space(), 'Migrated to {cloud_name} on ')]"
    ))
    .await;
    b.wait(&format!(
        "//a[@data-migration-note][normalize-space()=\"Receives {source_name}'s webhooks (redirected)\"]"
    ))
    .await;
    b.screenshot("inboxes-migrated").await;
    b.wait(&format!("//a[normalize-space()='{cloud_name}']"))
        .await
        .click()
        .await
        .unwrap();
    b.wait("//h1[normalize-space()='Conversations']").await;
    b.screenshot("conversations").await;
    // Found by the phone number of its contact (merged or not, the conversation's contact now).
    let phone = app
        .texts(&format!(
            "SELECT ct.phone_number FROM conversations c JOIN contacts ct ON ct.id = c.contact_id \
             WHERE c.id = {conversation}"
        ))
        .await
        .remove(0)
        .unwrap();
    let digits = &phone[phone.len() - 6..];
    let search = b.field("Search by contact name or phone").await;
    search.send_keys(digits).await.unwrap();
    b.button("Search").await.click().await.unwrap();
    // The answer page (it keeps the search in the field), not the list it replaces.
    b.wait(&format!("//input[@id='q'][@value='{digits}']"))
        .await;
    b.wait(&format!("//tr[@data-conversation='{conversation}']//a"))
        .await
        .click()
        .await
        .unwrap();

    // The whole thread, in the destination inbox, with what the contact carries.
    b.wait(&format!("//section[@data-conversation='{conversation}']"))
        .await;
    let shown = b
        .client
        .find_all(Locator::XPath("//li[@data-message]"))
        .await
        .unwrap()
        .len();
    assert_eq!(shown as i64, messages.min(100));
    let text = b.text().await;
    assert!(text.contains(cloud_name), "{text}");
    assert!(text.contains("Prefers afternoon calls"), "{text}");
    assert!(text.contains("vip-customer"), "{text}");
    assert!(text.contains("Download receipt.png"), "{text}");
    let loaded = b
        .client
        .execute(
            "const i = document.querySelector('.msg-attachment img'); \
             return i && i.complete ? i.naturalWidth : 0;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(loaded.as_i64(), Some(48), "the image shows inline");
    b.screenshot("conversation").await;
    b.client.set_window_size(390, 844).await.unwrap();
    b.screenshot("conversation-phone").await;
    b.goto(&format!(
        "/app/accounts/{account}/inboxes/{destination}/conversations"
    ))
    .await;
    b.wait("//h1[normalize-space()='Conversations']").await;
    b.screenshot("conversations-phone").await;
    b.client.set_window_size(1280, 900).await.unwrap();

    // The attachment: its bytes and type to the signed-in member, nothing to anyone else.
    let session = b.cookie("ferry_session").await;
    let path = format!("/app/accounts/{account}/attachments/{attachment}");
    let got = no_redirects()
        .get(format!("{}{path}", app.base))
        .header("cookie", format!("ferry_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["content-type"], "image/png");
    assert_eq!(got.headers()["x-content-type-options"], "nosniff");
    assert_eq!(got.bytes().await.unwrap().as_ref(), RECEIPT_PNG);
    let signed_out = no_redirects()
        .get(format!("{}{path}", app.base))
        .send()
        .await
        .unwrap();
    assert!(
        signed_out.status().is_redirection(),
        "{}",
        signed_out.status()
    );
    let other = ferry::datagen::seed_account(
        &app.ferry,
        &ferry::datagen::SeedOptions {
            conversations: 2,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let other_conversation = scalar(
        &app,
        format!(
            "SELECT MIN(id) FROM conversations WHERE account_id = {}",
            other.account_id
        ),
    )
    .await;
    let foreign = attach_receipt(&app, other.account_id, other_conversation).await;
    for path in [
        format!("/app/accounts/{account}/attachments/{foreign}"),
        format!("/app/accounts/{}/attachments/{foreign}", other.account_id),
        format!(
            "/app/accounts/{}/conversations/{other_conversation}",
            other.account_id
        ),
        format!("/app/accounts/{account}/conversations/{other_conversation}"),
    ] {
        let (status, _) = get_page(&app, &session, &path).await;
        assert!(matches!(status, 403 | 404), "{path}: {status}");
    }

    // A refused action is shown as an error, not as a notice.
    let page = format!("/app/accounts/{account}/inboxes/{source}/migration");
    let csrf = csrf_of(&app, &session, &page).await;
    let destination_field = destination.to_string();
    let (status, body) = post_form(
        &app,
        &session,
        &page,
        &[
            ("csrf_token", csrf.as_str()),
            ("destination_inbox_id", destination_field.as_str()),
            ("confirmation", "nope"),
        ],
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        body.contains("data-page-error") && body.contains("Type MIGRATE to confirm"),
        "{body}"
    );
    assert!(!body.contains("class=\"notice\""), "{body}");

    // Reverted: the same conversation is in the source again.
    let id = created.1["id"].as_i64().unwrap();
    let reverted = app
        .post_json(&format!("{url}/{id}/revert"), Some(&token), &json!({}))
        .await;
    assert!(reverted.0.is_success(), "{}", reverted.1);
    app.drain_worker().await;
    b.goto(&format!(
        "/app/accounts/{account}/conversations/{conversation}"
    ))
    .await;
    b.wait(&format!(
        "//nav[@class='breadcrumbs']/a[normalize-space()='{source_name}']"
    ))
    .await;
    let shown = b
        .client
        .find_all(Locator::XPath("//li[@data-message]"))
        .await
        .unwrap()
        .len();
    assert_eq!(shown as i64, messages.min(100));
    b.goto(&format!(
        "/app/accounts/{account}/inboxes/{source}/conversations?q=no-such-person"
    ))
    .await;
    b.wait("//h2[contains(., 'No conversation matches')]").await;
    b.goto(&format!("/app/accounts/{account}/inboxes")).await;
    b.wait("//h1[normalize-space()='Inboxes']").await;
    let notes = b
        .client
        .find_all(Locator::XPath("//*[@data-migration-note]"))
        .await
        .unwrap()
        .len();
    assert_eq!(notes, 0, "a reverted migration leaves no note");

    // The audit log lists the migration and its revert; filtered by kind it shows only migrations.
    b.goto(&format!("/app/accounts/{account}/audit")).await;
    b.wait("//h1[normalize-space()='Audit log']").await;
    for action in ["inbox_migration.created", "inbox_migration.reverted"] {
        b.wait(&format!("//tr[@data-action='{action}']")).await;
    }
    b.field("Kind")
        .await
        .select_by_value("inbox_migration")
        .await
        .unwrap();
    b.button("Filter").await.click().await.unwrap();
    b.wait("//select[@id='kind']/option[@value='inbox_migration'][@selected]")
        .await;
    let actions: Vec<String> = {
        let mut out = Vec::new();
        for row in b
            .client
            .find_all(Locator::XPath("//tr[@data-action]"))
            .await
            .unwrap()
        {
            out.push(row.attr("data-action").await.unwrap().unwrap());
        }
        out
    };
    assert!(!actions.is_empty());
    assert!(
        actions.iter().all(|a| a.starts_with("inbox_migration.")),
        "{actions:?}"
    );
    b.screenshot_both("audit").await;
}

const RECEIPT_PNG: &[u8] = include_bytes!("fixtures/receipt.png");

/// A stored PNG on the first message of a conversation; the attachment's id.
async fn attach_receipt(app: &TestApp, account: i64, conversation: i64) -> i64 {
    let blob = app.ferry.attachments.put(RECEIPT_PNG).await.unwrap();
    let message = scalar(
        app,
        format!("SELECT MIN(id) FROM messages WHERE conversation_id = {conversation}"),
    )
    .await;
    app.execute(format!(
        "INSERT INTO attachments (account_id, message_id, file_type, content_type, file_name, byte_size, \
         storage_key, checksum, status) VALUES ({account}, {message}, 'image', 'image/png', 'receipt.png', \
         {}, '{}', '{}', 'ready')",
        blob.byte_size, blob.storage_key, blob.checksum
    ))
    .await;
    scalar(
        app,
        format!("SELECT MAX(id) FROM attachments WHERE message_id = {message}"),
    )
    .await
}

/// An agent reads but cannot reach the migration form; a post without the session's CSRF token is refused;
/// repeated failed sign-ins are throttled.
pub async fn agents_forged_posts_and_guessers_are_refused(db: Db) {
    let app = spawn_app(db).await;
    let (report, _) = seeded(&app, 10, 0.0).await;
    let account = report.account_id;
    web_user(&app, account, "ana@clinic.test", Role::Agent, false).await;
    web_user(
        &app,
        account,
        "alex@clinic.test",
        Role::Administrator,
        false,
    )
    .await;
    let source = inbox_of(&report, ChannelType::Evolution);
    let destination = inbox_of(&report, ChannelType::WhatsappCloud);
    let b = Browser::open(&app, db).await;

    b.sign_in("ana@clinic.test", PASSWORD).await;
    b.wait("//h1[normalize-space()='Inboxes']").await;
    let text = b.text().await;
    assert!(
        !text.contains("Migrate…"),
        "an agent sees migrate links: {text}"
    );
    b.goto(&format!(
        "/app/accounts/{account}/inboxes/{source}/migration"
    ))
    .await;
    b.wait("//h1[normalize-space()='Not allowed']").await;
    assert!(b.client.find(Locator::Id("destination")).await.is_err());
    b.screenshot("agent-refused").await;
    // The import page is read-only for agents.
    b.goto(&format!("/app/accounts/{account}/import")).await;
    b.wait("//h1[normalize-space()='Account import']").await;
    assert!(!b.text().await.contains("Start import"));
    // An agent's post with a valid CSRF token is still refused by the server.
    let agent_cookie = b.cookie("ferry_session").await;
    let agent_csrf = csrf_of(
        &app,
        &agent_cookie,
        &format!("/app/accounts/{account}/inboxes"),
    )
    .await;
    let (status, _) = post_form(
        &app,
        &agent_cookie,
        &format!("/app/accounts/{account}/inboxes/{source}/migration"),
        &[
            ("csrf_token", agent_csrf.as_str()),
            ("destination_inbox_id", &destination.to_string()),
            ("confirmation", "MIGRATE"),
        ],
    )
    .await;
    assert_eq!(status, 403);

    // An administrator's session without (or with a wrong) CSRF token: refused, nothing created.
    b.client.delete_all_cookies().await.unwrap();
    b.sign_in("alex@clinic.test", PASSWORD).await;
    b.wait("//h1[normalize-space()='Inboxes']").await;
    let admin_cookie = b.cookie("ferry_session").await;
    let path = format!("/app/accounts/{account}/inboxes/{source}/migration");
    let dest = destination.to_string();
    for csrf in [None, Some("forged")] {
        let mut fields = vec![
            ("destination_inbox_id", dest.as_str()),
            ("confirmation", "MIGRATE"),
        ];
        if let Some(c) = csrf {
            fields.push(("csrf_token", c));
        }
        let (status, body) = post_form(&app, &admin_cookie, &path, &fields).await;
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("Form expired"), "{body}");
    }
    assert_eq!(migrations_count(&app).await, 0);
    // The same post with the session's token goes through: the refusals above were about the token.
    let csrf = csrf_of(&app, &admin_cookie, &path).await;
    let (status, body) = post_form(
        &app,
        &admin_cookie,
        &path,
        &[
            ("csrf_token", csrf.as_str()),
            ("destination_inbox_id", dest.as_str()),
            ("confirmation", "MIGRATE"),
        ],
    )
    .await;
    assert_eq!(status, 303, "{csrf}: {body}");
    assert_eq!(migrations_count(&app).await, 1);

    // Signing out ends the session on the server too.
    b.goto(&format!("/app/accounts/{account}/inboxes")).await;
    b.button("Sign out").await.click().await.unwrap();
    b.wait("//h1[normalize-space()='Sign in']").await;
    let (status, _) = get_page(
        &app,
        &admin_cookie,
        &format!("/app/accounts/{account}/inboxes"),
    )
    .await;
    assert_eq!(status, 303, "the old session cookie still opens pages");

    // Pages forbid framing and foreign scripts; an htmx request without a session is told to navigate to the
    // sign-in page instead of swapping it into a fragment.
    let r = no_redirects()
        .get(format!("{}/app/accounts/{account}/import", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/login?next=%2Fapp%2Faccounts%2F")
    );
    let r = no_redirects()
        .get(format!("{}/app/accounts/{account}/import", app.base))
        .header("hx-request", "true")
        .header(
            "hx-current-url",
            format!("{}/app/accounts/{account}/import", app.base),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("location").is_none());
    assert_eq!(
        r.headers()["hx-redirect"],
        format!("/login?next=%2Fapp%2Faccounts%2F{account}%2Fimport").as_str()
    );
    let r = no_redirects()
        .get(format!("{}/login", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert!(
        r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    // An open redirect disguised as a path is not followed.
    let login = no_redirects()
        .get(format!("{}/login?next=/%09/evil.example", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(login.contains("name=\"next\" value=\"/app\""), "{login}");

    // Parallel guesses are all counted: at most five are even checked.
    let (cookie, login_csrf) = crate::helpers::login_form(&app).await;
    let guesses = (0..12).map(|i| {
        let (cookie, csrf, base) = (cookie.clone(), login_csrf.clone(), app.base.clone());
        async move {
            let password = format!("guess {i}");
            let form = [
                ("email", "ana@clinic.test"),
                ("password", password.as_str()),
                ("csrf_token", csrf.as_str()),
            ];
            let body: String = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form)
                .finish();
            no_redirects()
                .post(format!("{base}/login"))
                .header("cookie", cookie)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    let statuses = futures::future::join_all(guesses).await;
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(checked + refused, 12, "{statuses:?}");
    assert!(checked <= 5 && refused >= 7, "{statuses:?}");

    // Five wrong passwords lock the email for a while, even for the right password.
    for _ in 0..5 {
        b.sign_in("alex@clinic.test", "not the password").await;
        b.wait("//*[@role='alert']").await;
    }
    b.sign_in("alex@clinic.test", PASSWORD).await;
    b.wait("//*[@role='alert'][contains(., 'Too many failed sign-ins')]")
        .await;
    b.screenshot("login-throttled").await;
}

/// The page's CSRF token (as the forms carry it).
pub async fn csrf_of(app: &TestApp, session: &str, path: &str) -> String {
    let (status, body) = get_page(app, session, path).await;
    assert_eq!(status, 200, "{body}");
    let pattern = "name=\"csrf_token\" value=\"";
    let at = body.find(pattern).expect("a form") + pattern.len();
    body[at..at + body[at..].find('"').unwrap()].to_owned()
}

pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub async fn get_page(app: &TestApp, session: &str, path: &str) -> (u16, String) {
    let r = no_redirects()
        .get(format!("{}{path}", app.base))
        .header("cookie", format!("ferry_session={session}"))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

pub async fn post_form(
    app: &TestApp,
    session: &str,
    path: &str,
    fields: &[(&str, &str)],
) -> (u16, String) {
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let r = no_redirects()
        .post(format!("{}{path}", app.base))
        .header("cookie", format!("ferry_session={session}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Integrations: masked URLs, an audited reveal, a rotation whose new URL routes and whose old one stops; the
/// cut-over's check and dry run for an installation administrator.
pub async fn integrations_reveal_rotate_and_cut_over_in_the_browser(db: Db) {
    let app = spawn_app(db).await;
    let (report, token) = seeded(&app, 10, 0.0).await;
    let account = report.account_id;
    web_user(&app, account, "root@clinic.test", Role::Administrator, true).await;
    let evolution = inbox_of(&report, ChannelType::Evolution);
    let (status, created) = app
        .post_json(
            &format!("/api/v1/accounts/{account}/integrations"),
            Some(&token),
            &json!({"inbox_id": evolution, "provider": "evolution", "instance_name": "clinica-web", "api_key": "k-1"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().unwrap();
    let original = created["webhook_url"].as_str().unwrap().to_owned();
    let b = Browser::open(&app, db).await;
    b.sign_in("root@clinic.test", PASSWORD).await;
    b.wait("//h1[normalize-space()='Inboxes']").await;
    b.goto(&format!("/app/accounts/{account}/integrations"))
        .await;
    let row = b
        .wait(&format!("//tr[@id='integration-{id}']"))
        .await
        .text()
        .await
        .unwrap();
    assert!(row.contains("clinica-web") && row.contains('…'), "{row}");
    assert!(
        !row.contains(&original),
        "the listing shows the token: {row}"
    );
    b.screenshot("integrations").await;

    b.wait(&format!(
        "//tr[@id='integration-{id}']//button[normalize-space()='Reveal']"
    ))
    .await
    .click()
    .await
    .unwrap();
    let shown = b
        .wait(&format!(
            "//tr[@id='integration-{id}']//code[@data-revealed]"
        ))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(shown, original);
    assert_eq!(
        scalar(
            &app,
            "SELECT COUNT(*) FROM audit_events WHERE action = 'integration.reveal'"
        )
        .await,
        1
    );

    b.wait(&format!(
        "//tr[@id='integration-{id}']//button[normalize-space()='Rotate token']"
    ))
    .await
    .click()
    .await
    .unwrap();
    // The dialog fits a 1280 px window: its text wraps, nothing scrolls sideways.
    b.client.set_window_size(1280, 900).await.unwrap();
    let overflow = b
        .client
        .execute(
            &format!(
                "const d = document.getElementById('rotate-{id}'); \
                 return [d.scrollWidth - d.clientWidth, \
                         document.documentElement.scrollWidth - document.documentElement.clientWidth];"
            ),
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        overflow,
        json!([0, 0]),
        "sideways overflow of the rotate dialog"
    );
    b.screenshot("integrations-rotate-dialog").await;
    b.field("Old URL keeps working for")
        .await
        .select_by_label("No time: stop it now")
        .await
        .unwrap();
    b.button("Rotate").await.click().await.unwrap();
    let new_url = b.wait("//code[@data-new-url]").await.text().await.unwrap();
    assert_ne!(new_url, original);
    b.screenshot("integrations-rotated").await;
    let token_of = |url: &str| WebhookToken::parse(url.rsplit('/').next().unwrap()).unwrap();
    let now = chrono::Utc::now() + chrono::Duration::seconds(1);
    let route = |t: WebhookToken| {
        let ferry = app.ferry.clone();
        async move {
            ferry
                .store
                .route_by_token_hash(&t.hash(), now)
                .await
                .unwrap()
        }
    };
    assert!(
        route(token_of(&new_url)).await.is_some(),
        "the new URL does not route"
    );
    assert!(
        route(token_of(&original)).await.is_none(),
        "the old URL still routes"
    );
    assert_eq!(
        scalar(
            &app,
            "SELECT COUNT(*) FROM audit_events WHERE action = 'integration.rotate'"
        )
        .await,
        1
    );
    // A reload after the rotation is a plain GET: it rotates nothing and shows no secret.
    b.client.refresh().await.unwrap();
    b.wait("//h1[normalize-space()='Integrations']").await;
    assert!(b.client.find(Locator::Css("[data-new-url]")).await.is_err());
    let rotations = "SELECT COUNT(*) FROM audit_events WHERE action = 'integration.rotate'";
    assert_eq!(scalar(&app, rotations).await, 1);

    // The cut-over: check, then a dry run that offers the real run.
    b.button("Check").await.click().await.unwrap();
    let result = b
        .wait("//div[@id='cutover-result']//h3[normalize-space()='Check']/..")
        .await
        .text()
        .await
        .unwrap();
    assert!(result.contains("Evolution instances"), "{result}");
    b.button("Dry run migrate").await.click().await.unwrap();
    b.wait("//div[@id='cutover-result']//h3[normalize-space()='Migrate (dry run)']")
        .await;
    b.button("Migrate now").await;
    let before = scalar(&app, "SELECT COUNT(*) FROM integrations").await;
    assert_eq!(before, 1, "a dry run created integrations");
    b.screenshot("integrations-cutover").await;
    b.button("Migrate now").await.click().await.unwrap();
    b.wait("//div[@id='cutover-result']//h3[normalize-space()='Migrate']")
        .await;
    let after = scalar(&app, "SELECT COUNT(*) FROM integrations").await;
    assert!(
        after > before,
        "the migration created no integration ({after})"
    );
    // The table shows the account's without a reload.
    let after = scalar(
        &app,
        format!("SELECT COUNT(*) FROM integrations WHERE account_id = {account}"),
    )
    .await;
    for _ in 0..100 {
        let rows = b
            .client
            .find_all(Locator::XPath("//div[@id='integrations-table']//tbody/tr"))
            .await
            .unwrap()
            .len() as i64;
        if rows == after {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows = b
        .client
        .find_all(Locator::XPath("//div[@id='integrations-table']//tbody/tr"))
        .await
        .unwrap()
        .len() as i64;
    assert_eq!(
        rows, after,
        "the integrations table is stale after Migrate now"
    );
    b.screenshot("integrations-after-migrate").await;
}

/// The import page: not-started with "Start import", the timeline advancing through the stages without a
/// reload, counts per stage, an attachment that could not be downloaded and "Retry attachments".
pub async fn import_timeline_advances_in_the_browser(db: Db) {
    let legacy = Legacy::new(&[spec("web-1", 14, 12)], "file://media/");
    let missing = legacy.accounts[0]
        .messages
        .values()
        .flatten()
        .flat_map(|m| m.media.iter())
        .next()
        .expect("media in the export")
        .url
        .clone();
    std::fs::remove_file(legacy.path(&format!("media/{}", missing.rsplit('/').next().unwrap())))
        .unwrap();
    let app = export_app(db, &legacy, |_| {}).await;
    let account = app
        .ferry
        .create_account("Loja Web", Some("web-1"))
        .await
        .unwrap()
        .id;
    web_user(&app, account, "alex@loja.test", Role::Administrator, false).await;
    let b = Browser::open(&app, db).await;
    b.sign_in("alex@loja.test", PASSWORD).await;
    b.wait("//h1[normalize-space()='Inboxes']").await;
    b.goto(&format!("/app/accounts/{account}/import")).await;
    b.wait("//span[@data-import-status][normalize-space()='not-started']")
        .await;
    b.screenshot("import-not-started").await;
    b.button("Start import").await.click().await.unwrap();
    b.wait("//*[@role='status'][contains(., 'Import started')]")
        .await;
    b.mark_page().await;
    let stop = start_worker(&app);
    b.wait("//span[@data-import-status][normalize-space()='completed']")
        .await;
    assert!(
        b.page_kept().await,
        "the timeline was reloaded instead of refreshed"
    );
    for stage in ["Channels", "Recent conversations", "Full history"] {
        b.wait(&format!("//li[@data-stage='{stage}'][@data-state='done']"))
            .await;
    }
    let timeline = b
        .wait("//ol[@class='timeline']")
        .await
        .text()
        .await
        .unwrap();
    let total: i64 = scalar(&app, format!("SELECT COUNT(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id WHERE c.account_id = {account}")).await;
    assert_eq!(total, 14 * 12);
    // Recent: 5 threads × 4 messages (the test app's window); the rest arrives with the full history.
    assert!(
        timeline.contains("5 conversations") && timeline.contains("20 messages"),
        "{timeline}"
    );
    assert!(
        timeline.contains("9 conversations")
            && timeline.contains(&format!("{} messages", total - 20)),
        "{timeline}"
    );
    b.screenshot("import-completed").await;

    // The missing file: a placeholder with its reason, and a retry.
    for _ in 0..100 {
        if scalar(
            &app,
            "SELECT COUNT(*) FROM attachments WHERE status = 'failed'",
        )
        .await
            > 0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.goto(&format!("/app/accounts/{account}/import")).await;
    b.wait("//h2[normalize-space()='Attachments that could not be downloaded']")
        .await;
    b.screenshot("import-attachments").await;
    b.button("Retry attachments").await.click().await.unwrap();
    b.wait("//*[@role='status'][contains(., 'queued for another download')]")
        .await;
    let _ = stop.send(true);
}

/// The newcomer's path: `ferry serve --demo`, the printed URL and login, then an inbox migration and its revert,
/// the integrations, and an account import, all from the browser (the server's own worker does the work).
pub async fn demo_newcomer_does_everything_in_the_browser() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _, output, _server) = crate::cli::start_demo(dir.path()).await;
    let login = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("administrator: email "))
        .unwrap_or_else(|| panic!("no login in: {output}"));
    let (email, password) = login.split_once("   password ").unwrap();
    assert!(
        output.contains(&format!("open:      {url}/login")),
        "{output}"
    );
    let b = Browser::open_at(&url, "demo").await;
    b.sign_in(email.trim(), password.trim()).await;
    // Three accounts: the chooser.
    b.wait("//h1[normalize-space()='Choose an account']").await;
    b.screenshot("accounts").await;
    b.wait("//a[contains(., 'Clínica Sorriso')]")
        .await
        .click()
        .await
        .unwrap();
    b.wait("//h1[normalize-space()='Inboxes']").await;

    // Migrate the small 360dialog inbox into the Twilio one, watch it complete, revert it.
    b.wait("//a[@aria-label='Migrate WhatsApp Filial Rio (360dialog)']")
        .await
        .click()
        .await
        .unwrap();
    b.field("Destination inbox")
        .await
        .select_by_index(1)
        .await
        .unwrap();
    b.button("Start migration").await.click().await.unwrap();
    b.field("Type MIGRATE to confirm")
        .await
        .send_keys("MIGRATE\u{E007}")
        .await
        .unwrap();
    b.wait("//section[@id='migration-panel']//span[@data-status][normalize-space()='Completed']")
        .await;
    b.button("Revert migration").await.click().await.unwrap();
    b.field("Type REVERT to confirm")
        .await
        .send_keys("revert")
        .await
        .unwrap();
    b.button("Revert").await.click().await.unwrap();
    b.wait("//ol[@class='history']//span[normalize-space()='Reverted']")
        .await;

    // The Cloud inbox's integration, masked.
    b.wait("//a[normalize-space()='Integrations']")
        .await
        .click()
        .await
        .unwrap();
    let table = b.wait("//table").await.text().await.unwrap();
    assert!(
        table.contains("WhatsApp Cloud API") && table.contains('…'),
        "{table}"
    );
    b.screenshot("integrations").await;

    // Account 3 waits in the legacy export: import it.
    b.goto("/app/accounts/3/import").await;
    b.wait("//span[@data-import-status][normalize-space()='not-started']")
        .await;
    b.button("Start import").await.click().await.unwrap();
    b.wait("//span[@data-import-status][normalize-space()='completed']")
        .await;
    b.wait("//li[@data-stage='Full history'][@data-state='done']")
        .await;
    b.screenshot("import").await;
    b.goto("/app/accounts/3/inboxes").await;
    let inboxes = b.wait("//table").await.text().await.unwrap();
    assert!(inboxes.contains("imported"), "{inboxes}");
}

/// This module's tests, with the services they need beside the database.
pub fn suite() -> Vec<crate::Test> {
    [
        on_both_databases!(
            [crate::Service::Browser];
            admin_migrates_and_reverts_an_inbox_in_the_browser,
            agents_forged_posts_and_guessers_are_refused,
            integrations_reveal_rotate_and_cut_over_in_the_browser,
            import_timeline_advances_in_the_browser,
            moved_conversations_are_read_in_the_browser,
        ),
        without_database!("sqlite", [crate::Service::Browser]; demo_newcomer_does_everything_in_the_browser),
    ]
    .concat()
}
