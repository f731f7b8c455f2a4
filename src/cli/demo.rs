//! `ferry demo …`: generated demo data.

use clap::Subcommand;
use serde_json::json;

use super::print_json;
use crate::datagen::{SeedOptions, seed_account};
use crate::services::Ferry;

#[derive(Debug, Subcommand)]
pub enum DemoCommand {
    /// Generate a realistic account into the configured database
    Seed {
        /// Conversations of the Evolution inbox (the other inboxes are sized relative to it)
        #[arg(long, default_value_t = 300)]
        conversations: u64,
        /// Share of Evolution contacts that also exist in the Cloud inbox
        #[arg(long, default_value_t = 0.2)]
        merge_ratio: f64,
        /// A name for it
        #[arg(long, default_value = "Clínica Sorriso")]
        name: String,
        /// Random seed: the same seed gives the same data
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Exactly this many messages per conversation (default: 1–50, skewed, mean near 10)
        #[arg(long)]
        messages_per_conversation: Option<i64>,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
}

pub async fn demo(ferry: Ferry, command: DemoCommand) -> anyhow::Result<()> {
    match command {
        DemoCommand::Seed {
            conversations,
            merge_ratio,
            name,
            seed,
            messages_per_conversation,
            json,
        } => {
            let opts = SeedOptions {
                account_name: name,
                conversations,
                merge_ratio,
                seed,
                messages_per_conversation,
            };
            let report = seed_account(&ferry, &opts).await?;
            if json {
                print_json(&json!(report));
            } else {
                println!(
                    "account {}: {} conversations, {} messages, {} attachments, {} contacts ({} shared) in {:.1}s ({:.0} messages/s)",
                    report.account_id,
                    report.conversations,
                    report.messages,
                    report.attachments,
                    report.contacts,
                    report.shared_contacts,
                    report.seconds,
                    report.messages_per_second
                );
                for i in &report.inboxes {
                    println!(
                        "  inbox {:>4}  {:<16} {:>8} conversations  {}",
                        i.id,
                        i.channel_type.as_str(),
                        i.conversations,
                        i.name
                    );
                }
            }
            Ok(())
        }
    }
}
