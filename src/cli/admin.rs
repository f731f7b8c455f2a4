//! `ferry accounts|users|tokens|inboxes …`: an installation's accounts, users, API tokens and inboxes.

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;

use super::print_json;
use crate::domain::{ChannelType, Role};
use crate::services::{CreateInbox, CreateUser, Ferry};

#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// Create an account
    Create {
        /// The account's name
        #[arg(long)]
        name: String,
        /// The account's id in the legacy system (capability C)
        #[arg(long)]
        legacy_ref: Option<String>,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user with a role in an account
    Create {
        /// The account's id
        #[arg(long)]
        account: i64,
        /// The user's email address
        #[arg(long)]
        email: String,
        /// The user's password (or FERRY_USER_PASSWORD)
        #[arg(long, env = "FERRY_USER_PASSWORD", hide_env_values = true)]
        password: String,
        /// The user's display name
        #[arg(long)]
        name: Option<String>,
        /// The user's role in the account: administrator or agent
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// May run installation-wide operations (the legacy cut-over)
        #[arg(long)]
        installation_admin: bool,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Invite someone to an account by email: an existing user is added with the role at once, anyone else
    /// gets a one-time link (valid 7 days) to choose a name and password
    Invite {
        /// The account's id
        #[arg(long)]
        account: i64,
        /// The person's email address
        #[arg(long)]
        email: String,
        /// Their role in the account: administrator or agent
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Issue a personal API token for a user (printed once)
    Create {
        /// The user's email address
        #[arg(long)]
        email: String,
        /// A name for the token (shown in its listing)
        #[arg(long, default_value = "cli")]
        name: String,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum InboxesCommand {
    /// Create an inbox
    Create {
        /// The account's id
        #[arg(long)]
        account: i64,
        /// The inbox's name
        #[arg(long)]
        name: String,
        /// The channel: evolution, whatsapp_cloud, dialog360, twilio_whatsapp, twilio_sms, web_widget, email or api
        #[arg(long, value_parser = parse_channel_type)]
        channel_type: ChannelType,
        /// The phone number in international format (+5511…)
        #[arg(long)]
        phone_number: Option<String>,
        /// Provider settings as a JSON object; stored encrypted
        #[arg(long)]
        config: Option<String>,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// The account's inboxes with their conversation counts
    List {
        /// The account's id
        #[arg(long)]
        account: i64,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).map_err(|e| e.to_string())
}

fn parse_channel_type(s: &str) -> Result<ChannelType, String> {
    ChannelType::parse(s).map_err(|e| e.to_string())
}

pub async fn accounts(ferry: Ferry, command: AccountsCommand) -> anyhow::Result<()> {
    match command {
        AccountsCommand::Create {
            name,
            legacy_ref,
            json,
        } => {
            let account = ferry.create_account(&name, legacy_ref.as_deref()).await?;
            if json {
                print_json(&json!(account));
            } else {
                println!("account {} created: {}", account.id, account.name);
            }
            Ok(())
        }
    }
}

pub async fn users(ferry: Ferry, command: UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::Create {
            account,
            email,
            password,
            name,
            role,
            installation_admin,
            json,
        } => {
            let user = ferry
                .create_user(CreateUser {
                    account_id: account,
                    name: name.as_deref(),
                    email: &email,
                    password: &password,
                    role,
                    installation_admin,
                })
                .await?;
            if json {
                print_json(
                    &json!({"id": user.id, "email": user.email, "name": user.name, "account_id": account,
                    "role": role, "installation_admin": user.installation_admin}),
                );
            } else {
                println!(
                    "user {} created: {} ({} of account {account})",
                    user.id, user.email, role
                );
            }
            Ok(())
        }
        UsersCommand::Invite {
            account,
            email,
            role,
            json,
        } => {
            let invited = crate::members::invite(&ferry, account, &email, role, None).await?;
            print_invited(&invited, account, role, json);
            if let crate::members::Invited::Link { url, .. } = &invited
                && let Some(warning) = crate::public_url::person_warning(url)
            {
                eprintln!("warning: {warning}");
            }
            Ok(())
        }
    }
}

fn print_invited(invited: &crate::members::Invited, account: i64, role: Role, json: bool) {
    use crate::members::Invited;
    match (invited, json) {
        (Invited::Added(user), true) => print_json(&json!({"added": true, "user_id": user.id,
            "email": user.email, "account_id": account, "role": role})),
        (Invited::Added(user), false) => println!(
            "{} already had a ferry user: added to account {account} as {role}",
            user.email
        ),
        (
            Invited::Link {
                email,
                url,
                expires_at,
            },
            true,
        ) => print_json(&json!({"added": false,
            "email": email, "account_id": account, "role": role, "invitation_url": url,
            "expires_at": expires_at})),
        (
            Invited::Link {
                email,
                url,
                expires_at,
            },
            false,
        ) => {
            println!(
                "invitation for {email} ({role} of account {account}); pass this link on, it works once until {}:",
                expires_at.format("%Y-%m-%d %H:%M UTC")
            );
            println!("{url}");
        }
    }
}

pub async fn tokens(ferry: Ferry, command: TokensCommand) -> anyhow::Result<()> {
    match command {
        TokensCommand::Create { email, name, json } => {
            let (user, token) = ferry.create_token(&email, &name).await?;
            if json {
                print_json(&json!({"token": token.expose(), "user_id": user.id}));
            } else {
                println!("{}", token.expose());
            }
            Ok(())
        }
    }
}

pub async fn inboxes(ferry: Ferry, command: InboxesCommand) -> anyhow::Result<()> {
    match command {
        InboxesCommand::Create {
            account,
            name,
            channel_type,
            phone_number,
            config,
            json,
        } => {
            let provider_config = config
                .map(|c| serde_json::from_str::<serde_json::Value>(&c))
                .transpose()
                .context("--config is not valid JSON")?;
            let inbox = ferry
                .create_inbox(
                    CreateInbox {
                        account_id: account,
                        name,
                        channel_type,
                        phone_number,
                        provider_config,
                        lock_to_single_conversation: false,
                    },
                    None,
                )
                .await?;
            if json {
                print_json(
                    &json!({"id": inbox.id, "account_id": inbox.account_id, "name": inbox.name,
                    "channel_type": inbox.channel.as_str(), "phone_number": inbox.phone_number}),
                );
            } else {
                println!(
                    "inbox {} created: {} ({})",
                    inbox.id,
                    inbox.name,
                    inbox.channel.as_str()
                );
            }
        }
        InboxesCommand::List { account, json } => {
            ferry.store.get_account(account).await?;
            let inboxes = ferry.store.list_inboxes(account).await?;
            if json {
                print_json(&json!(
                    inboxes
                        .iter()
                        .map(|i| json!({"id": i.id, "name": i.name,
                    "channel_type": i.channel.as_str(), "phone_number": i.phone_number,
                    "conversations_count": i.conversations_count}))
                        .collect::<Vec<_>>()
                ));
            } else {
                for i in inboxes {
                    println!(
                        "{:>5}  {:<16} {:>8} conversations  {}",
                        i.id,
                        i.channel.as_str(),
                        i.conversations_count,
                        i.name
                    );
                }
            }
        }
    }
    Ok(())
}
