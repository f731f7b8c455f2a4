//! `ferry migrate inbox` and `ferry migrations …`: capability A from the terminal.

use super::print_json;
use std::time::Duration;

use anyhow::bail;
use clap::Subcommand;
use indicatif::ProgressStyle;
use serde_json::{Value, json};

use crate::inbox_migration::{self as im, Created, MigrationOptions};
use crate::services::Ferry;
use crate::store::InboxMigration;
use crate::store::MigrationStatus;
use crate::worker::Worker;

#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Move every conversation, message, attachment and contact of one inbox into another
    Inbox {
        /// The account's id
        #[arg(long)]
        account: i64,
        /// Source inbox id
        #[arg(long)]
        from: i64,
        /// Destination inbox id
        #[arg(long)]
        to: i64,
        /// Show the plan and write nothing
        #[arg(long)]
        dry_run: bool,
        /// Do not ask for the typed confirmation
        #[arg(long)]
        yes: bool,
        /// Queue it and return; a worker (`ferry worker` or `ferry serve`) runs it
        #[arg(long)]
        detach: bool,
        /// Rows per batch transaction
        #[arg(long)]
        batch_rows: Option<i64>,
        /// Throttle in rows per second
        #[arg(long)]
        max_rows_per_second: Option<u64>,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum MigrationsCommand {
    /// The account's migrations, newest first
    List {
        /// The account's id
        #[arg(long)]
        account: i64,
        /// Only migrations with this source inbox
        #[arg(long)]
        inbox: Option<i64>,
        /// Only queued and running ones
        #[arg(long)]
        active: bool,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// One migration with its progress, attempts and result
    Show {
        id: i64,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Stop a queued or running migration at its next batch boundary
    Cancel {
        id: i64,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Continue a failed or cancelled migration from its last committed batch
    Retry {
        id: i64,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Undo a migration (and the cancelled runs it continued) from its journal: queued for a worker, followed
    /// here with a progress bar unless --detach
    Revert {
        id: i64,
        /// Do not ask for the typed confirmation (REVERT)
        #[arg(long)]
        yes: bool,
        /// Queue it and return; a worker (`ferry worker` or `ferry serve`) runs it
        #[arg(long)]
        detach: bool,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Check the migration invariants (see the README, "Inbox migration") on the migration's pair of inboxes; exit 0 only when all hold
    Verify {
        id: i64,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
}

fn summary(v: &im::MigrationView) -> String {
    let p = &v.progress;
    format!(
        "migration {} {}: {} → {} · {:.1}% · conversations {}/{} · messages {}/{} · contacts merged {}",
        v.id,
        v.status,
        v.source_inbox.name.as_deref().unwrap_or("?"),
        v.destination_inbox.name.as_deref().unwrap_or("?"),
        p.percentage,
        p.conversations.moved,
        p.conversations.total,
        p.messages.moved,
        p.messages.total,
        p.contacts_merged
    )
}

pub async fn migrate(ferry: Ferry, command: MigrateCommand) -> anyhow::Result<()> {
    let MigrateCommand::Inbox {
        account,
        from,
        to,
        dry_run,
        yes,
        detach,
        batch_rows,
        max_rows_per_second,
        json,
    } = command;
    let plan = im::preview(&ferry, account, from, to).await?;
    if !json {
        println!(
            "Migrate {} → {}",
            plan.source_inbox.name.as_deref().unwrap_or("?"),
            plan.destination_inbox.name.as_deref().unwrap_or("?")
        );
        println!(
            "  conversations {}   messages {}   attachments {}   contacts {} ({} will merge)",
            plan.conversations,
            plan.messages,
            plan.attachments,
            plan.contacts,
            plan.contacts_to_merge
        );
        for w in &plan.warnings {
            println!("  warning {}: {}", w.code, w.message);
        }
        println!("  estimated duration: {}s", plan.estimated_seconds);
    }
    if dry_run {
        if json {
            print_json(&json!({"dry_run": true, "plan": plan}));
        }
        return Ok(());
    }
    if !yes {
        super::confirm("MIGRATE")?;
    }
    let options = MigrationOptions {
        redirect_source: None,
        batch_rows,
        max_rows_per_second,
    };
    let Created::Queued(migration) =
        im::create(&ferry, account, from, to, false, options, None).await?
    else {
        unreachable!("not a dry run");
    };
    if detach {
        if json {
            print_json(&json!(im::to_view(&ferry, &migration).await?));
        } else {
            println!(
                "migration {} queued; follow it with `ferry migrations show {}`",
                migration.id, migration.id
            );
        }
        return Ok(());
    }
    let finished = follow(&ferry, migration.id, !json).await?;
    let view = im::to_view(&ferry, &finished).await?;
    if json {
        print_json(&json!(view));
    } else {
        println!("{}", summary(&view));
    }
    match finished.status {
        MigrationStatus::Completed => Ok(()),
        other => bail!(
            "migration {} ended {other}{}",
            finished.id,
            finished
                .error_message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        ),
    }
}

/// Runs the queued revert in this process, then prints what it restored; an exit status of 0 only when reverted.
async fn revert_and_follow(ferry: &Ferry, id: i64, json: bool) -> anyhow::Result<()> {
    let finished = follow(ferry, id, !json).await?;
    let view = im::to_view(ferry, &finished).await?;
    if json {
        print_json(&json!(view));
    } else if let Some(revert) = &view.revert {
        let restored = &revert.restored;
        println!(
            "migration {} revert {}: {} conversations, {} messages and {} contact inboxes back in {} (runs {})",
            id,
            revert.status.as_str(),
            restored.conversations,
            restored.messages,
            restored.contact_inboxes,
            view.source_inbox.name.as_deref().unwrap_or("?"),
            json!(restored.runs)
        );
    }
    match finished.revert_state {
        Some(crate::store::RevertState::Reverted) => Ok(()),
        other => bail!(
            "the revert of migration {id} ended {}{}",
            other.map_or("?".into(), |s| format!("{s:?}").to_lowercase()),
            finished
                .revert_error
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        ),
    }
}

/// Runs a worker in this process and follows the migration with a progress bar until it ends. Ctrl-C leaves
/// it at a batch boundary with its lease released, for any worker to continue.
async fn follow(ferry: &Ferry, id: i64, bar: bool) -> anyhow::Result<InboxMigration> {
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(
        Worker::new(ferry.clone())
            .with_poll_interval(Duration::from_millis(200))
            .run(shutdown),
    );
    let progress = crate::telemetry::progress_bar(1000, bar);
    progress
        .set_style(ProgressStyle::with_template("{bar:40} {percent:>3}% {msg}").expect("template"));
    let result = loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                let _ = stop.send(true);
                let _ = worker.await;
                progress.abandon();
                bail!("interrupted: migration {id} (or its revert) stays queued or running and continues when a worker runs");
            }
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        // The record alone (one cheap query): the full API shape is built once, at the end.
        let m = ferry.store.get_inbox_migration(id).await?;
        let (pct, message) = match m.revert_state {
            Some(state) => (
                im::revert_percentage(&m),
                format!(
                    "revert {} · batches {}/{}",
                    format!("{state:?}").to_lowercase(),
                    m.revert_batches_done,
                    m.revert_batches_total
                ),
            ),
            None => (
                im::progress(&m).percentage,
                format!(
                    "{} · messages {}/{}",
                    m.status, m.messages_moved, m.messages_count
                ),
            ),
        };
        progress.set_position((pct * 10.0) as u64);
        progress.set_message(message);
        if !m.has_work() {
            break m;
        }
    };
    progress.finish_and_clear();
    let _ = stop.send(true);
    let _ = worker.await;
    Ok(result)
}

pub async fn migrations(ferry: Ferry, command: MigrationsCommand) -> anyhow::Result<()> {
    let (record, json) = match command {
        MigrationsCommand::List {
            account,
            inbox,
            active,
            json,
        } => {
            ferry.store.get_account(account).await?;
            let mut rows = Vec::new();
            for m in ferry
                .store
                .list_inbox_migrations(account, inbox, active)
                .await?
            {
                rows.push(im::to_view(&ferry, &m).await?);
            }
            if json {
                print_json(&json!(rows));
            } else if rows.is_empty() {
                println!("no migrations");
            } else {
                for r in &rows {
                    println!("{}", summary(r));
                }
            }
            return Ok(());
        }
        MigrationsCommand::Show { id, json } => (ferry.store.get_inbox_migration(id).await?, json),
        MigrationsCommand::Cancel { id, json } => {
            let m = ferry.store.get_inbox_migration(id).await?;
            (
                im::cancel(&ferry, m.account_id, None, id, None).await?,
                json,
            )
        }
        MigrationsCommand::Retry { id, json } => {
            let m = ferry.store.get_inbox_migration(id).await?;
            (im::retry(&ferry, m.account_id, None, id, None).await?, json)
        }
        MigrationsCommand::Revert {
            id,
            yes,
            detach,
            json,
        } => {
            let m = ferry.store.get_inbox_migration(id).await?;
            if !yes {
                super::confirm("REVERT")?;
            }
            let queued = im::revert(&ferry, m.account_id, None, id, None).await?;
            if detach {
                (queued, json)
            } else {
                return revert_and_follow(&ferry, id, json).await;
            }
        }
        MigrationsCommand::Verify { id, json } => {
            let m = ferry.store.get_inbox_migration(id).await?;
            let key = im::match_key(&ferry, m.account_id).await?;
            let mut violations: Vec<Value> = ferry
                .store
                .check_inbox_migration_invariants(
                    m.source_inbox_id,
                    m.destination_inbox_id,
                    key,
                    m.completed_at,
                )
                .await?
                .iter()
                .map(|v| json!(v))
                .collect();
            let drift = ferry
                .store
                .count_conversation_counter_drift(m.source_inbox_id, m.destination_inbox_id)
                .await?;
            if drift > 0 {
                violations.push(json!({"invariant": 1, "count": drift,
                    "description": "conversations whose message or attachment count differs from their rows"}));
            }
            if m.status == MigrationStatus::Running || m.status == MigrationStatus::Queued {
                violations.push(json!({"invariant": 0, "count": 0, "description": format!("the migration is {}; verify after it ends", m.status)}));
            }
            if json {
                print_json(
                    &json!({"id": m.id, "ok": violations.is_empty(), "violations": violations}),
                );
            } else if violations.is_empty() {
                println!("migration {}: every invariant holds", m.id);
            } else {
                for v in &violations {
                    println!(
                        "violation of invariant {}: {} ({})",
                        v["invariant"],
                        v["description"].as_str().unwrap_or(""),
                        v["count"]
                    );
                }
            }
            if !violations.is_empty() {
                bail!("{} invariant violation(s)", violations.len());
            }
            return Ok(());
        }
    };
    let view = im::to_view(&ferry, &record).await?;
    if json {
        print_json(&json!(view));
    } else {
        println!("{}", summary(&view));
        if let Some(e) = &view.error {
            println!("  error: {}", e.message);
        }
    }
    Ok(())
}
