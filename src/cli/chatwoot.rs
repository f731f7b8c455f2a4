//! `ferry chatwoot …`: inbox migration on an existing Chatwoot database.

use anyhow::bail;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tokio::sync::watch;

use super::{confirm, print_json};
use crate::chatwoot::bookkeeping::{self, Migration, MigrationKind, Status};
use crate::chatwoot::convert::{Conversion, Provider};
use crate::chatwoot::preview::Preview;
use crate::chatwoot::run::{self, RunOptions};
use crate::chatwoot::verify::VerifyReport;
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
    /// What moving one inbox into another would do: counts, merges, identities that stay; changes nothing
    Preview {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        pair: Pair,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Move every conversation, message and contact of one inbox into another, in journaled batches
    Migrate {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        pair: Pair,
        /// Show the preview and change nothing
        #[arg(long)]
        dry_run: bool,
        /// Do not ask for the typed confirmation
        #[arg(long)]
        yes: bool,
        /// Message rows per batch transaction
        #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(i64).range(1..))]
        batch_rows: i64,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Migrations on this Chatwoot database: list, show, cancel, resume, revert, verify
    Migrations {
        #[command(subcommand)]
        command: MigrationsCommand,
    },
    /// Switch a WhatsApp inbox between 360dialog and Cloud in place (same number, same inbox), revertible
    ConvertProvider {
        #[command(flatten)]
        target: Target,
        /// The WhatsApp inbox's id
        #[arg(long)]
        inbox: i64,
        /// The provider it uses from now on
        #[arg(long, value_enum)]
        to: Provider,
        /// The new provider's API key (Cloud: the access token; 360dialog: the D360 API key)
        #[arg(long, env = "FERRY_CHATWOOT_API_KEY", hide_env_values = true)]
        api_key: String,
        /// Cloud: the phone number id in Meta's WhatsApp Manager
        #[arg(long)]
        phone_number_id: Option<String>,
        /// Cloud: the WhatsApp business account id
        #[arg(long)]
        business_account_id: Option<String>,
        /// Do not ask for the typed confirmation
        #[arg(long)]
        yes: bool,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum MigrationsCommand {
    /// Every migration ferry ran on this database, newest first
    List {
        #[command(flatten)]
        target: Target,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// One migration with its progress, merges and the identities left behind
    Show {
        /// The migration's id (`ferry chatwoot migrations list`)
        id: i64,
        #[command(flatten)]
        target: Target,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Stop a running migration at its next batch boundary
    Cancel {
        /// The migration's id (`ferry chatwoot migrations list`)
        id: i64,
        #[command(flatten)]
        target: Target,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Continue a cancelled or failed migration, or one whose process died (once its lease expired)
    Resume {
        /// The migration's id (`ferry chatwoot migrations list`)
        id: i64,
        #[command(flatten)]
        target: Target,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Undo a migration exactly, from its journal (continues an interrupted revert)
    Revert {
        /// The migration's id (`ferry chatwoot migrations list`)
        id: i64,
        #[command(flatten)]
        target: Target,
        /// Do not ask for the typed confirmation
        #[arg(long)]
        yes: bool,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Check on Chatwoot's tables what its database does not enforce; exit 0 only when every check holds
    Verify {
        /// The migration's id (`ferry chatwoot migrations list`)
        id: i64,
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

/// An account and two of its inboxes.
#[derive(Debug, Args)]
pub struct Pair {
    /// The Chatwoot account's id
    #[arg(long)]
    account: i64,
    /// Source inbox id
    #[arg(long)]
    from: i64,
    /// Destination inbox id
    #[arg(long)]
    to: i64,
}

pub async fn chatwoot(command: ChatwootCommand) -> anyhow::Result<()> {
    match command {
        ChatwootCommand::Check { target, json } => {
            let report = Chatwoot::connect(&target.chatwoot_url)
                .await?
                .check()
                .await?;
            if json {
                print_json(&json!(report));
            } else {
                print_check(&report);
            }
            Ok(())
        }
        ChatwootCommand::Preview { target, pair, json } => {
            let cw = Chatwoot::connect(&target.chatwoot_url).await?;
            let preview = cw.preview(pair.account, pair.from, pair.to).await?;
            if json {
                print_json(&json!(preview));
            } else {
                print_preview(&preview);
            }
            Ok(())
        }
        ChatwootCommand::Migrate {
            target,
            pair,
            dry_run,
            yes,
            batch_rows,
            json,
        } => migrate(&target, &pair, dry_run, yes, batch_rows, json).await,
        ChatwootCommand::Migrations { command } => migrations(command).await,
        ChatwootCommand::ConvertProvider {
            target,
            inbox,
            to,
            api_key,
            phone_number_id,
            business_account_id,
            yes,
            json,
        } => {
            let conversion = Conversion {
                inbox,
                to,
                api_key,
                phone_number_id,
                business_account_id,
            };
            convert(&target, &conversion, yes, json).await
        }
    }
}

async fn migrate(
    target: &Target,
    pair: &Pair,
    dry_run: bool,
    yes: bool,
    batch_rows: i64,
    json: bool,
) -> anyhow::Result<()> {
    let cw = Chatwoot::open(&target.chatwoot_url).await?;
    let preview = cw.preview(pair.account, pair.from, pair.to).await?;
    if dry_run {
        if json {
            print_json(&json!({"dry_run": true, "preview": preview}));
        } else {
            print_preview(&preview);
            println!("dry run: nothing was changed");
        }
        return Ok(());
    }
    if !json {
        print_preview(&preview);
    }
    if !yes {
        confirm("MIGRATE")?;
    }
    let runner = Runner::new(json);
    let m = run::create_move(&cw, &preview, batch_rows, &runner.options()).await?;
    if !json {
        eprintln!("migration {} started", m.id);
    }
    let ended = run::run_move(&cw, m, &runner.options()).await;
    runner.done();
    report_run(ended?, json)
}

async fn migrations(command: MigrationsCommand) -> anyhow::Result<()> {
    match command {
        MigrationsCommand::List { target, json } => {
            let cw = Chatwoot::open(&target.chatwoot_url).await?;
            let all = bookkeeping::list(cw.pool()).await?;
            if json {
                print_json(&json!(all));
            } else if all.is_empty() {
                println!("no migration yet on this Chatwoot database");
            } else {
                all.iter().for_each(|m| println!("{}", summary(m)));
            }
            Ok(())
        }
        MigrationsCommand::Show { id, target, json } => {
            let cw = Chatwoot::open(&target.chatwoot_url).await?;
            show(&cw, id, json).await
        }
        MigrationsCommand::Cancel { id, target, json } => {
            let cw = Chatwoot::open(&target.chatwoot_url).await?;
            let m = bookkeeping::cancel(cw.pool(), id).await?;
            if json {
                print_json(&json!(m));
            } else if m.status == Status::Cancelled {
                println!(
                    "migration {id} cancelled: resume it with `ferry chatwoot migrations resume {id}`"
                );
            } else {
                println!("migration {id} stops at its next batch boundary");
            }
            Ok(())
        }
        MigrationsCommand::Resume { id, target, json } => {
            let cw = Chatwoot::open(&target.chatwoot_url).await?;
            let runner = Runner::new(json);
            let ended = run::resume(&cw, id, &runner.options()).await;
            runner.done();
            report_run(ended?, json)
        }
        MigrationsCommand::Revert {
            id,
            target,
            yes,
            json,
        } => {
            let cw = Chatwoot::open(&target.chatwoot_url).await?;
            let m = bookkeeping::get(cw.pool(), id).await?;
            if !json {
                println!("{}", summary(&m));
            }
            if !yes {
                confirm("REVERT")?;
            }
            let runner = Runner::new(json);
            let ended = run::revert(&cw, id, &runner.options()).await;
            runner.done();
            let ended = ended?;
            if json {
                print_json(&json!(ended));
            } else {
                println!("{}", summary(&ended));
            }
            if ended.status != Status::Reverted {
                bail!(
                    "the revert of migration {id} stopped: run `ferry chatwoot migrations revert {id}` again to continue it"
                );
            }
            Ok(())
        }
        MigrationsCommand::Verify { id, target, json } => {
            let cw = Chatwoot::open(&target.chatwoot_url).await?;
            let report = cw.verify(id).await?;
            if json {
                print_json(&json!(report));
            } else {
                print_verify(&report);
            }
            if !report.ok {
                bail!(
                    "migration {id}: {} check(s) failed",
                    report.checks.iter().filter(|c| !c.ok).count()
                );
            }
            Ok(())
        }
    }
}

async fn convert(
    target: &Target,
    conversion: &Conversion,
    yes: bool,
    json: bool,
) -> anyhow::Result<()> {
    let cw = Chatwoot::open(&target.chatwoot_url).await?;
    if !yes {
        eprintln!(
            "inbox {} will use provider {} from now on (its conversations and contacts stay as they are)",
            conversion.inbox,
            serde_json::to_value(conversion.to)?.as_str().unwrap_or("?")
        );
        confirm("CONVERT")?;
    }
    let runner = Runner::new(true);
    let converted = cw.convert_provider(conversion, &runner.options()).await?;
    if json {
        print_json(&json!(converted));
    } else {
        let id = converted.migration.id;
        println!(
            "migration {id} completed: inbox {} now uses provider {}",
            conversion.inbox,
            converted.migration.params["to"].as_str().unwrap_or("?")
        );
        if let Some(token) = &converted.webhook_verify_token {
            println!("webhook verify token for Meta's webhook settings: {token}");
        }
        println!("undo it with `ferry chatwoot migrations revert {id}`");
    }
    Ok(())
}

/// The Ctrl-C handler and the progress bar of a run in this terminal.
struct Runner {
    stop: watch::Receiver<bool>,
    bar: ProgressBar,
    ctrl_c: tokio::task::JoinHandle<()>,
}

impl Runner {
    fn new(quiet: bool) -> Self {
        let (tx, stop) = watch::channel(false);
        let ctrl_c = tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("stopping at the next batch boundary…");
                let _ = tx.send(true);
            }
        });
        let bar = crate::telemetry::progress_bar(1000, !quiet);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {percent:>3}% {msg}").expect("template"),
        );
        Runner { stop, bar, ctrl_c }
    }

    fn options(&self) -> RunOptions<'static> {
        let bar = self.bar.clone();
        RunOptions {
            owner: run::owner(),
            lease_secs: lease_secs(),
            stop: self.stop.clone(),
            progress: Box::new(move |m: &Migration| {
                bar.set_position((m.percentage() * 10.0) as u64);
                bar.set_message(format!(
                    "{} · batch {} · conversations {}/{} · messages {}/{}",
                    m.status.as_str(),
                    m.batches,
                    m.conversations_moved,
                    m.conversations_total,
                    m.messages_moved,
                    m.messages_total
                ));
            }),
        }
    }

    fn done(&self) {
        self.bar.finish_and_clear();
        self.ctrl_c.abort();
    }
}

/// Seconds a run's lease lasts without a batch renewing it (default 30; tests shorten it).
fn lease_secs() -> f64 {
    std::env::var("FERRY_CHATWOOT_LEASE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|s: &f64| *s > 0.0)
        .unwrap_or(30.0)
}

fn report_run(m: Migration, json: bool) -> anyhow::Result<()> {
    if json {
        print_json(&json!(m));
    } else {
        println!("{}", summary(&m));
    }
    match m.status {
        Status::Completed => {
            if !json {
                println!("check it with `ferry chatwoot migrations verify {}`", m.id);
            }
            Ok(())
        }
        Status::Cancelled => bail!(
            "migration {} stopped at a batch boundary: continue it with `ferry chatwoot migrations resume {}`",
            m.id,
            m.id
        ),
        other => bail!(
            "migration {} ended {}{}",
            m.id,
            other.as_str(),
            m.error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ),
    }
}

fn summary(m: &Migration) -> String {
    let what = match m.kind {
        MigrationKind::Move => format!(
            "inbox {} → {}",
            m.source_inbox_id,
            m.destination_inbox_id.unwrap_or_default()
        ),
        MigrationKind::ConvertProvider => format!(
            "inbox {} provider {} → {}",
            m.source_inbox_id,
            m.params["from"].as_str().unwrap_or("?"),
            m.params["to"].as_str().unwrap_or("?")
        ),
    };
    format!(
        "migration {} {}: {what} · {:.1}% · conversations {}/{} · messages {}/{} · contact_inboxes moved {} merged {} · contacts merged {} · left behind {} · batches {} (longest {} ms)",
        m.id,
        m.status.as_str(),
        m.percentage(),
        m.conversations_moved,
        m.conversations_total,
        m.messages_moved,
        m.messages_total,
        m.contact_inboxes_moved,
        m.contact_inboxes_merged,
        m.contacts_merged,
        m.left_behind,
        m.batches,
        m.longest_batch_ms,
    )
}

async fn show(cw: &Chatwoot, id: i64, json: bool) -> anyhow::Result<()> {
    let m = bookkeeping::get(cw.pool(), id).await?;
    let merges: Vec<(i64, i64, Option<String>, String, String, bool)> = sqlx::query_as(
        "SELECT source_contact_inbox_id, destination_contact_inbox_id, name, source_identity, \
             destination_identity, contact_merged FROM ferry.merges WHERE migration_id = $1 \
         ORDER BY source_contact_inbox_id LIMIT 100",
    )
    .bind(id)
    .fetch_all(cw.pool())
    .await?;
    let left: Vec<(i64, Option<String>, String, String)> = sqlx::query_as(
        "SELECT contact_inbox_id, name, source_id, reason FROM ferry.left_behind WHERE migration_id = $1 \
         ORDER BY contact_inbox_id LIMIT 100",
    )
    .bind(id)
    .fetch_all(cw.pool())
    .await?;
    if json {
        let merges: Vec<_> = merges
            .iter()
            .map(|(s, d, name, si, di, contact)| json!({"source_contact_inbox_id": s, "destination_contact_inbox_id": d, "name": name, "identity": si, "destination_identity": di, "contact_merge": contact}))
            .collect();
        let left: Vec<_> = left
            .iter()
            .map(|(ci, name, identity, reason)| json!({"contact_inbox_id": ci, "name": name, "identity": identity, "reason": reason}))
            .collect();
        print_json(&json!({"migration": m, "merges": merges, "left_behind": left}));
        return Ok(());
    }
    println!("{}", summary(&m));
    if let Some(error) = &m.error {
        println!("  error: {error}");
    }
    for (s, d, name, si, di, contact) in &merges {
        let kind = if *contact {
            "contact merge"
        } else {
            "contact_inbox merge"
        };
        println!(
            "  merged {s} → {d}  {}  {si} = {di}  ({kind})",
            name.as_deref().unwrap_or("")
        );
    }
    for (ci, name, identity, reason) in &left {
        println!(
            "  left behind {ci}  {}  {identity}: {reason}",
            name.as_deref().unwrap_or("")
        );
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

fn print_preview(p: &Preview) {
    println!(
        "Move inbox {} ({}) → inbox {} ({}) of account {}",
        p.from.id, p.from.name, p.to.id, p.to.name, p.account_id
    );
    println!(
        "  conversations {}   messages {}   attachments {}   contacts {}   contact_inboxes {}",
        p.conversations, p.messages, p.attachments, p.contacts, p.contact_inboxes
    );
    println!(
        "  moving: conversations {}   messages {}   contact_inboxes {} ({} merge into the destination's)",
        p.conversations_moving, p.messages_moving, p.contact_inboxes_moving, p.merges_total
    );
    for m in &p.merges {
        let kind = if m.contact_merge {
            "contact merge"
        } else {
            "same contact"
        };
        println!(
            "  merge {} → {}  {}  {} = {}  ({kind})",
            m.source_contact_inbox_id,
            m.destination_contact_inbox_id,
            m.name.as_deref().unwrap_or(""),
            m.identity,
            m.destination_identity
        );
    }
    if p.merges_total > p.merges.len() {
        println!("  … and {} more merges", p.merges_total - p.merges.len());
    }
    for l in &p.left_behind {
        println!(
            "  stays {}  {}  {}: {}",
            l.contact_inbox_id,
            l.name.as_deref().unwrap_or(""),
            l.identity,
            l.reason
        );
    }
    if p.left_behind_total > p.left_behind.len() {
        println!(
            "  … and {} more stay",
            p.left_behind_total - p.left_behind.len()
        );
    }
    for w in &p.warnings {
        println!("  warning {}: {}", w.code, w.message);
    }
}

fn print_verify(report: &VerifyReport) {
    for c in &report.checks {
        let mark = if c.ok { "ok  " } else { "FAIL" };
        println!("{mark} {}: {}", c.name, c.description);
        if !c.ok {
            println!("     {} row(s), first ids {:?}", c.problems, c.sample);
        }
    }
}
