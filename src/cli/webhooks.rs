//! `ferry webhooks …`: what providers sent that could not be stored, and replaying it.

use clap::Subcommand;
use serde_json::json;

use super::print_json;
use crate::services::Ferry;
use crate::webhooks::dead_letters;
use crate::webhooks::ingest::IngestOutcome;

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Requests that could not be stored (newest first); `--replay ID` stores one now
    DeadLetters {
        /// Replay the dead letter through the route it came by
        #[arg(long)]
        replay: Option<i64>,
        /// At most this many, newest first
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
}

pub async fn webhooks(ferry: Ferry, command: WebhooksCommand) -> anyhow::Result<()> {
    let WebhooksCommand::DeadLetters {
        replay,
        limit,
        json,
    } = command;
    if let Some(id) = replay {
        let outcomes = dead_letters::replay(&ferry, id).await?;
        let stored = outcomes
            .iter()
            .filter(|o| matches!(o, IngestOutcome::Stored { .. }))
            .count();
        if json {
            print_json(&json!({"id": id, "events": outcomes.len(), "stored": stored}));
        } else {
            println!(
                "dead letter {id} replayed: {} event(s), {stored} newly stored",
                outcomes.len()
            );
        }
        return Ok(());
    }
    let letters = ferry.store.list_dead_letters(limit.clamp(1, 1000)).await?;
    if json {
        print_json(&json!(letters));
    } else {
        for l in letters {
            println!(
                "{:>6}  {}  {:<16} {}  {}{}",
                l.id,
                l.received_at.format("%Y-%m-%d %H:%M:%S"),
                l.provider,
                l.status_code,
                l.reason,
                if l.replayed_at.is_some() {
                    "  (replayed)"
                } else {
                    ""
                }
            );
        }
    }
    Ok(())
}
