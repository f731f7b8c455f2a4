//! `ferry serve --demo`: on an empty store, a realistic demo account (id 1 in a fresh data dir), an
//! administrator and an API token, remembered in `DATA_DIR/demo-login.json` (mode 0600) so a re-run can print
//! them again. A store that already holds accounts is left as it is.

use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::datagen::{SeedOptions, SeedReport, seed_account};
use crate::domain::Role;
use crate::services::{CreateUser, Ferry};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoLogin {
    pub account_id: i64,
    pub email: String,
    pub password: String,
    pub api_token: String,
}

pub const DEMO_EMAIL: &str = "admin@demo.ferry.local";
const LOGIN_FILE: &str = "demo-login.json";

#[derive(Debug)]
pub enum DemoState {
    Created {
        login: DemoLogin,
        report: Box<SeedReport>,
    },
    Existing(Option<DemoLogin>),
}

pub async fn ensure_demo(ferry: &Ferry) -> anyhow::Result<DemoState> {
    if ferry.store.count_accounts().await? > 0 {
        return Ok(DemoState::Existing(read_login(ferry)));
    }
    let report = seed_account(ferry, &SeedOptions::default()).await?;
    let password = random_password();
    let user = ferry
        .create_user(CreateUser {
            account_id: report.account_id,
            name: Some("Demo Admin"),
            email: DEMO_EMAIL,
            password: &password,
            role: Role::Administrator,
            installation_admin: true,
        })
        .await?;
    for inbox in &report.inboxes {
        ferry.store.add_inbox_member(inbox.id, user.id).await?;
    }
    let agent_password = random_password();
    ferry
        .create_user(CreateUser {
            account_id: report.account_id,
            name: Some("Demo Agent"),
            email: "agent@demo.ferry.local",
            password: &agent_password,
            role: Role::Agent,
            installation_admin: false,
        })
        .await?;
    // Accounts still in the legacy system (the demo's export directory), ready for an import.
    for (legacy_ref, name, _, _) in crate::account_import::generate::DEMO_ACCOUNTS {
        let account = ferry
            .create_account(&format!("{name} (legacy)"), Some(legacy_ref))
            .await?;
        ferry
            .store
            .set_account_role(account.id, user.id, Role::Administrator)
            .await?;
    }
    // The Cloud inbox already receives webhooks through a token integration (the integrations page shows it);
    // the Evolution inboxes still use the legacy by-name route, ready for the cut-over.
    if let Some(cloud) = report
        .inboxes
        .iter()
        .find(|i| i.channel_type == crate::domain::ChannelType::WhatsappCloud)
    {
        use crate::webhooks::integrations::{self, CreateIntegration, Provider, ProviderSecrets};
        integrations::create(
            ferry,
            CreateIntegration {
                account_id: report.account_id,
                inbox_id: cloud.id,
                provider: Provider::parse("whatsapp_cloud")?,
                instance_name: None,
                phone_number_id: Some("demo-phone-number-id".into()),
                api_url: None,
                secrets: ProviderSecrets {
                    app_secret: Some(random_password()),
                    verify_token: Some(random_password()),
                    access_token: Some(random_password()),
                    ..ProviderSecrets::default()
                },
            },
            Some(user.id),
        )
        .await?;
    }
    let (_, token) = ferry.create_token(DEMO_EMAIL, "demo").await?;
    let login = DemoLogin {
        account_id: report.account_id,
        email: DEMO_EMAIL.into(),
        password,
        api_token: token.expose().to_owned(),
    };
    write_login(ferry, &login)?;
    Ok(DemoState::Created {
        login,
        report: Box::new(report),
    })
}

fn read_login(ferry: &Ferry) -> Option<DemoLogin> {
    let text = std::fs::read_to_string(ferry.config.data_dir.join(LOGIN_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_login(ferry: &Ferry, login: &DemoLogin) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(ferry.config.data_dir.join(LOGIN_FILE))?;
    file.write_all(
        serde_json::to_string_pretty(login)
            .expect("serializable")
            .as_bytes(),
    )
}

fn random_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKMNPQRSTUVWXYZ23456789";
    let mut rng = rand::thread_rng();
    (0..16)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}
