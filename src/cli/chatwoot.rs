//! `ferry chatwoot …`: inbox migration on an existing Chatwoot database (so far: `check`).

use clap::{Args, Subcommand};
use serde_json::json;

use super::print_json;
use crate::chatwoot::{Chatwoot, CheckReport};

#[derive(Debug, Subcommand)]
pub enum ChatwootCommand {
    /// Connect, check the schema, and list every account's WhatsApp-like inboxes
    Check {
        #[command(flatten)]
        target: Target,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
}

/// The Chatwoot database a command works on.
#[derive(Debug, Args)]
pub struct Target {
    /// The Chatwoot PostgreSQL database, postgres://… (or FERRY_CHATWOOT_URL)
    #[arg(long, env = "FERRY_CHATWOOT_URL", hide_env_values = true)]
    chatwoot_url: String,
}

pub async fn chatwoot(command: ChatwootCommand) -> anyhow::Result<()> {
    match command {
        ChatwootCommand::Check { target, json } => {
            let chatwoot = Chatwoot::connect(&target.chatwoot_url).await?;
            let report = chatwoot.check().await?;
            if json {
                print_json(&json!(report));
            } else {
                print_check(&report);
            }
        }
    }
    Ok(())
}

fn print_check(report: &CheckReport) {
    println!(
        "Chatwoot schema {}: every table and column ferry needs is there",
        report.schema_version
    );
    for account in &report.accounts {
        println!("account {}  {}", account.id, account.name);
        if account.inboxes.is_empty() {
            println!("  no WhatsApp inbox");
        }
        for inbox in &account.inboxes {
            let kind = serde_json::to_value(inbox.kind).unwrap_or_default();
            println!(
                "  inbox {:>5}  {:<16} {:>8} conversations  {}",
                inbox.id,
                kind.as_str().unwrap_or("?"),
                inbox.conversations,
                inbox.name
            );
        }
    }
}
