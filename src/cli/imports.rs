//! `ferry import …`: capability C from the terminal (README: "The CLI").

use std::time::Duration;

use anyhow::bail;
use clap::Subcommand;
use indicatif::ProgressStyle;
use serde_json::json;

use super::print_json;
use crate::account_import;
use crate::services::Ferry;
use crate::store::ImportStage;
use crate::worker::Worker;

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Import an account from the legacy system and follow its stages (exit 0 only on `completed`)
    Account {
        /// ferry account id
        id: i64,
        /// Delete what earlier imports created, then import again (needs FERRY_ALLOW_FORCE_REMIGRATION=true)
        #[arg(long)]
        force: bool,
        /// Queue it for the workers and return
        #[arg(long)]
        detach: bool,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// The import status of an account (the real one: `messages-failure` is shown as itself)
    Status {
        id: i64,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Accounts whose history import failed (`messages-failure`)
    Failures {
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Resume failed history imports: one account, or every one with --all
    Repair {
        id: Option<i64>,
        /// Every one of them, not only the first
        #[arg(long, conflicts_with = "id")]
        all: bool,
        /// Queue them for the workers and return
        #[arg(long)]
        detach: bool,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Download failed imported attachments again (one account, or all)
    RetryAttachments {
        id: Option<i64>,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
}

pub async fn import(ferry: Ferry, command: ImportCommand) -> anyhow::Result<()> {
    match command {
        ImportCommand::Account {
            id,
            force,
            detach,
            json,
        } => {
            let (import, queued) = account_import::start(&ferry, id, None, force).await?;
            if !json {
                if queued {
                    println!("import {} of account {id} queued", import.id);
                } else {
                    println!(
                        "import {} of account {id} is already {}",
                        import.id, import.status
                    );
                }
            }
            if !detach {
                follow(&ferry, id, !json).await?;
            }
            finish(&ferry, id, json, !detach).await
        }
        ImportCommand::Status { id, json } => finish(&ferry, id, json, false).await,
        ImportCommand::Failures { json } => {
            let failures = account_import::failures(&ferry).await?;
            if json {
                print_json(&json!(failures));
            } else if failures.is_empty() {
                println!("no account has a failed history import");
            } else {
                for f in &failures {
                    println!(
                        "account {} ({}) import {} {} · {} repairs{} · {}",
                        f.account_id,
                        f.account_name,
                        f.import_id,
                        f.status,
                        f.repair_attempts,
                        f.next_repair_at
                            .map(|t| format!(", next at {t}"))
                            .unwrap_or_default(),
                        f.error_message.as_deref().unwrap_or("-"),
                    );
                }
            }
            Ok(())
        }
        ImportCommand::Repair {
            id,
            all,
            detach,
            json,
        } => {
            if id.is_none() && !all {
                bail!("name an account id, or --all");
            }
            let resumed = account_import::repair(&ferry, id).await?;
            if let Some(id) = id
                && resumed.is_empty()
            {
                bail!("account {id} has no failed history import to repair");
            }
            if !detach {
                for import in &resumed {
                    follow(&ferry, import.account_id, !json).await?;
                }
            }
            let mut rows = Vec::new();
            for import in &resumed {
                let account = ferry.store.get_account(import.account_id).await?;
                rows.push(account_import::status_view(&ferry, &account, true).await?);
            }
            if json {
                print_json(&json!({"repaired": rows}));
            } else {
                println!("{} import(s) resumed", resumed.len());
                for row in &rows {
                    println!("  {}", line(row));
                }
            }
            if !detach && rows.iter().any(|r| r["status"] != "completed") {
                bail!("not every repaired import completed");
            }
            Ok(())
        }
        ImportCommand::RetryAttachments { id, json } => {
            if let Some(id) = id {
                ferry.store.get_account(id).await?;
            }
            let n = account_import::retry_attachments(&ferry, id).await?;
            if json {
                print_json(&json!({"queued": n}));
            } else {
                println!("{n} attachment download(s) queued again");
            }
            Ok(())
        }
    }
}

fn line(view: &serde_json::Value) -> String {
    let c = &view["counts"];
    format!(
        "{} · stage {} · channels {} · threads {} · messages {} · attachments {} ({} failed)",
        view["status"].as_str().unwrap_or("-"),
        view["stage"].as_str().unwrap_or("-"),
        c["channels"],
        c["threads"],
        c["messages"],
        c["attachments"],
        c["attachments_failed"],
    )
}

/// Prints the status; with `require_completed`, fails unless the import completed.
async fn finish(ferry: &Ferry, id: i64, json: bool, require_completed: bool) -> anyhow::Result<()> {
    let account = ferry.store.get_account(id).await?;
    let view = account_import::status_view(ferry, &account, true).await?;
    if json {
        print_json(&view);
    } else {
        println!("account {id}: {}", line(&view));
        if let Some(error) = view["import"]["error_message"].as_str() {
            println!("  last error: {error}");
        }
    }
    let status = view["status"].as_str().unwrap_or_default();
    if require_completed && status != "completed" {
        let error = view["import"]["error_message"].as_str().unwrap_or("");
        bail!(
            "the import of account {id} ended {status}{}",
            if error.is_empty() {
                String::new()
            } else {
                format!(": {error}")
            }
        );
    }
    Ok(())
}

/// Runs a worker in this process and follows the account's import stage by stage until it ends.
async fn follow(ferry: &Ferry, account_id: i64, bar: bool) -> anyhow::Result<()> {
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(
        Worker::new(ferry.clone())
            .with_poll_interval(Duration::from_millis(100))
            .run(shutdown),
    );
    let progress = crate::telemetry::progress_bar(3, bar);
    progress.set_style(
        ProgressStyle::with_template("{bar:30} stage {pos}/{len} {msg}").expect("template"),
    );
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                let _ = stop.send(true);
                let _ = worker.await;
                progress.abandon();
                bail!("interrupted: the import continues from its last batch when a worker runs");
            }
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        let Some(import) = ferry.store.latest_account_import(account_id).await? else {
            break;
        };
        progress.set_position(match import.stage {
            ImportStage::Channels => 0,
            ImportStage::Recent => 1,
            ImportStage::All => 2,
            ImportStage::Done => 3,
        });
        progress.set_message(format!(
            "{} · threads {} · messages {}",
            import.stage, import.threads_count, import.messages_count
        ));
        if !import.status.is_active() {
            break;
        }
    }
    progress.finish_and_clear();
    let _ = stop.send(true);
    let _ = worker.await;
    Ok(())
}
