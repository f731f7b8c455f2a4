//! The `ferry` command line: a thin adapter over `services`. Human output by default, `--json` for scripts.

mod imports;
mod integrations;
mod migrations;
mod webhooks;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::json;

use crate::config::Config;
use crate::datagen::{SeedOptions, seed_account};
use crate::demo::{DemoState, ensure_demo};
use crate::domain::{ChannelType, Role};
use crate::services::{CreateInbox, CreateUser, Ferry};
use crate::startup::{Application, shutdown_signal};

#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    about = "Moves WhatsApp-like customer conversations without losing a message"
)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// HTTP API (and its background worker)
    Serve {
        /// Fill an empty data directory with a demo account first and print how to sign in
        #[arg(long)]
        demo: bool,
        /// Serve HTTP only; run `ferry worker` processes separately
        #[arg(long)]
        no_worker: bool,
    },
    /// Background worker only: claims inbox migrations, account imports and downloads from the database
    Worker,
    /// Inbox migration (capability A)
    Migrate {
        #[command(subcommand)]
        command: migrations::MigrateCommand,
    },
    /// Manage inbox migrations: list, show, cancel, retry, revert, verify
    Migrations {
        #[command(subcommand)]
        command: migrations::MigrationsCommand,
    },
    /// Print the OpenAPI document of /api/v1 (the same as GET /api/openapi.json; committed as docs/openapi.json)
    Openapi,
    /// The effective configuration
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Database schema
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Accounts (tenants)
    Accounts {
        #[command(subcommand)]
        command: AccountsCommand,
    },
    /// Users and their role in an account
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Personal API tokens
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Inboxes of an account
    Inboxes {
        #[command(subcommand)]
        command: InboxesCommand,
    },
    /// Webhook requests that could not be stored
    Webhooks {
        #[command(subcommand)]
        command: webhooks::WebhooksCommand,
    },
    /// Provider connections and their webhook tokens
    Integrations {
        #[command(subcommand)]
        command: integrations::IntegrationsCommand,
    },
    /// On-demand account import from the legacy system (capability C)
    Import {
        #[command(subcommand)]
        command: imports::ImportCommand,
    },
    /// Reproducible benchmarks on generated data (JSON)
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Demo data
    Demo {
        #[command(subcommand)]
        command: DemoCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Every setting as this process sees it (flags, then FERRY_* variables, then defaults), secrets redacted
    Show {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Apply pending schema migrations (also done at every start)
    Migrate {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    Create {
        #[arg(long)]
        name: String,
        /// The account's id in the legacy system (capability C)
        #[arg(long)]
        legacy_ref: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    Create {
        #[arg(long)]
        account: i64,
        #[arg(long)]
        email: String,
        #[arg(long, env = "FERRY_USER_PASSWORD", hide_env_values = true)]
        password: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// May run installation-wide operations (the legacy cut-over)
        #[arg(long)]
        installation_admin: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    Create {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "cli")]
        name: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum InboxesCommand {
    Create {
        #[arg(long)]
        account: i64,
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = parse_channel_type)]
        channel_type: ChannelType,
        #[arg(long)]
        phone_number: Option<String>,
        /// Provider settings as a JSON object; stored encrypted
        #[arg(long)]
        config: Option<String>,
        #[arg(long)]
        json: bool,
    },
    List {
        #[arg(long)]
        account: i64,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Drive ferry's webhook routes over loopback on a fresh database: requests per second, p50/p99 latency and
    /// database statements per request for the trivial, token, legacy and duplicate scenarios.
    /// --database-url postgres://… runs on a fresh database of that server; otherwise on a temporary SQLite file.
    Webhooks {
        #[arg(long, default_value_t = 20_000)]
        requests: usize,
        /// Clients sending at once (each sends its next request when the previous one is answered)
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Distinct customers the messages come from
        #[arg(long, default_value_t = 2_000)]
        contacts: usize,
        /// HTTP servers on the one database, the clients spread over them (several nodes)
        #[arg(long, default_value_t = 1)]
        servers: usize,
        #[arg(long)]
        json: bool,
    },
    /// Import a generated legacy account (export directory, or DynamoDB on moto) into a fresh database: seconds
    /// from /migrate to channels-migrated, recent-messages-migrated and completed, and messages per second.
    /// --database-url postgres://… runs on a fresh database of that server; otherwise on a temporary SQLite file.
    AccountImport {
        #[arg(long, default_value_t = 10_000)]
        threads: usize,
        #[arg(long, default_value_t = 20)]
        messages_per_thread: usize,
        #[arg(long, value_enum, default_value = "export")]
        source: crate::bench::LegacySourceKind,
        /// A running DynamoDB-compatible server (default: start moto_server on a free port)
        #[arg(long)]
        dynamodb_endpoint: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Migrate an Evolution inbox into a Cloud inbox on a fresh copy of generated data; with --compare, also
    /// time the unbatched lower bound, the Chatwoot-shaped lower bound and the reference statement pattern.
    /// --database-url postgres://… runs on fresh databases of that server; otherwise on temporary SQLite files.
    InboxMigration {
        #[arg(long, default_value_t = 100_000)]
        conversations: u64,
        #[arg(long)]
        messages_per_conversation: Option<i64>,
        #[arg(long, default_value_t = 0.2)]
        merge_ratio: f64,
        #[arg(long)]
        batch_rows: Option<i64>,
        #[arg(long)]
        compare: bool,
        /// Migrations at once, each of its own generated account (scales the data)
        #[arg(long, default_value_t = 1)]
        migrations: usize,
        /// Workers claiming the queued migrations in parallel
        #[arg(long, default_value_t = 1)]
        workers: usize,
        #[arg(long)]
        json: bool,
    },
}

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
        #[arg(long, default_value = "Clínica Sorriso")]
        name: String,
        /// Random seed: the same seed gives the same data
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Exactly this many messages per conversation (default: 1–50, skewed, mean near 10)
        #[arg(long)]
        messages_per_conversation: Option<i64>,
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

fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("serializable")
    );
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    crate::telemetry::init(&cli.config.log, cli.config.log_format);
    crate::install_tls();
    if let Command::Bench { command } = &cli.command {
        // Benchmarks make their own fresh databases; --database-url names the server, not a database to use.
        return bench(cli.config.database_url.as_deref(), command).await;
    }
    if let Command::Serve { demo: true, .. } = &cli.command
        && cli.config.legacy.export_dir.is_none()
        && cli.config.legacy.api_url.is_none()
    {
        crate::account_import::generate::demo_export(&cli.config.data_dir)
            .context("cannot write the demo's legacy export")?;
    }
    if let Command::Openapi = &cli.command {
        let mut text = crate::http::openapi_document()
            .to_pretty_json()
            .context("cannot write the OpenAPI document")?;
        text.push('\n');
        return write_stdout(&text);
    }
    if let Command::Config {
        command: ConfigCommand::Show { json },
    } = &cli.command
    {
        // Needs no database: it shows what a server started the same way would use.
        let shown = cli.config.shown();
        if *json {
            let map: serde_json::Map<String, serde_json::Value> = shown
                .into_iter()
                .map(|(k, v)| (k.to_owned(), serde_json::Value::String(v)))
                .collect();
            print_json(&serde_json::Value::Object(map));
        } else {
            for (name, value) in shown {
                println!("{name:<38} {value}");
            }
        }
        return Ok(());
    }
    let ferry = Ferry::open(cli.config.clone()).await?;
    match cli.command {
        Command::Serve { demo, no_worker } => serve(ferry, demo, no_worker).await,
        Command::Worker => {
            let (tx, rx) = tokio::sync::watch::channel(false);
            let worker = tokio::spawn(crate::worker::Worker::new(ferry.clone()).run(rx));
            shutdown_signal().await;
            let _ = tx.send(true);
            // The current batch commits and the lease is released, within the shutdown bound.
            let grace = std::time::Duration::from_secs(ferry.config.shutdown_seconds);
            match tokio::time::timeout(grace, worker).await {
                Ok(done) => done.context("worker task failed")?,
                Err(_) => tracing::warn!(
                    ?grace,
                    "the worker did not stop in time; exiting anyway (its lease expires)"
                ),
            }
            ferry.store.close().await;
            Ok(())
        }
        Command::Db {
            command: DbCommand::Migrate { json },
        } => {
            // Ferry::open has applied every pending migration.
            if json {
                print_json(&json!({"migrated": true, "backend": ferry.store.backend()}));
            } else {
                println!("schema is up to date ({})", ferry.store.backend().as_str());
            }
            Ok(())
        }
        Command::Accounts {
            command:
                AccountsCommand::Create {
                    name,
                    legacy_ref,
                    json,
                },
        } => {
            let account = ferry.create_account(&name, legacy_ref.as_deref()).await?;
            if json {
                print_json(&json!(account));
            } else {
                println!("account {} created: {}", account.id, account.name);
            }
            Ok(())
        }
        Command::Users {
            command:
                UsersCommand::Create {
                    account,
                    email,
                    password,
                    name,
                    role,
                    installation_admin,
                    json,
                },
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
        Command::Tokens {
            command: TokensCommand::Create { email, name, json },
        } => {
            let (user, token) = ferry.create_token(&email, &name).await?;
            if json {
                print_json(&json!({"token": token.expose(), "user_id": user.id}));
            } else {
                println!("{}", token.expose());
            }
            Ok(())
        }
        Command::Inboxes { command } => inboxes(ferry, command).await,
        Command::Integrations { command } => integrations::integrations(ferry, command).await,
        Command::Import { command } => imports::import(ferry, command).await,
        Command::Webhooks { command } => webhooks::webhooks(ferry, command).await,
        Command::Bench { .. } | Command::Config { .. } | Command::Openapi => {
            unreachable!("handled above")
        }
        Command::Migrate { command } => migrations::migrate(ferry, command).await,
        Command::Migrations { command } => migrations::migrations(ferry, command).await,
        Command::Demo {
            command:
                DemoCommand::Seed {
                    conversations,
                    merge_ratio,
                    name,
                    seed,
                    messages_per_conversation,
                    json,
                },
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

async fn inboxes(ferry: Ferry, command: InboxesCommand) -> anyhow::Result<()> {
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

async fn serve(ferry: Ferry, demo: bool, no_worker: bool) -> anyhow::Result<()> {
    let app = Application::bind(ferry.clone())
        .await
        .with_context(|| format!("cannot listen on {}", ferry.config.bind))?;
    let url = format!("http://{}", app.local_addr());
    if demo {
        match ensure_demo(&ferry).await? {
            DemoState::Created { login, report } => {
                println!(
                    "demo account {} created: {} conversations, {} messages",
                    login.account_id, report.conversations, report.messages
                );
                print_login(&url, &login);
                print_imports(&ferry, login.account_id).await;
            }
            DemoState::Existing(Some(login)) => {
                println!(
                    "using the existing data in {}",
                    ferry.config.data_dir.display()
                );
                print_login(&url, &login);
                print_imports(&ferry, login.account_id).await;
            }
            DemoState::Existing(None) => {
                println!(
                    "using the existing data in {} (not created by --demo: no demo login to show)",
                    ferry.config.data_dir.display()
                );
            }
        }
    }
    // The background worker (migrations, imports, downloads) runs beside the server unless --no-worker.
    let (stop_worker, worker_shutdown) = tokio::sync::watch::channel(false);
    let worker = if no_worker {
        tracing::info!("worker disabled (--no-worker)");
        None
    } else {
        Some(tokio::spawn(
            crate::worker::Worker::new(ferry.clone()).run(worker_shutdown),
        ))
    };
    println!("ferry is listening on {url}");
    tracing::info!(%url, backend = ferry.store.backend().as_str(), "listening");
    // On SIGTERM: stop accepting, let in-flight requests finish, and stop the worker at its next batch boundary
    // (it releases its lease), all at once and within FERRY_SHUTDOWN_SECONDS. Open event streams would keep
    // the server waiting forever: the bound ends them.
    let (stopping_tx, mut stopping) = tokio::sync::watch::channel(false);
    let server = app.run_until(async move {
        shutdown_signal().await;
        let _ = stopping_tx.send(true);
    });
    tokio::pin!(server);
    let grace = std::time::Duration::from_secs(ferry.config.shutdown_seconds);
    let deadline = async {
        let _ = stopping.wait_for(|s| *s).await;
        let _ = stop_worker.send(true);
        tokio::time::sleep(grace).await;
    };
    let served = tokio::select! {
        served = &mut server => served,
        _ = deadline => {
            tracing::warn!(?grace, "requests still open after the shutdown bound; closing them");
            Ok(())
        }
    };
    let _ = stop_worker.send(true);
    if let Some(worker) = worker {
        match tokio::time::timeout(grace, worker).await {
            Ok(done) => done.context("worker task failed")?,
            Err(_) => tracing::warn!(
                ?grace,
                "the worker did not stop in time; exiting anyway (its lease expires)"
            ),
        }
    }
    served.context("server failed")?;
    ferry.store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// The demo's accounts that wait in the legacy export, and how to import them.
async fn print_imports(ferry: &Ferry, demo_account: i64) {
    for id in demo_account + 1..=demo_account + 2 {
        if let Ok(account) = ferry.store.get_account(id).await
            && account.legacy_ref.is_some()
        {
            println!(
                "account {id} ({}) waits in the legacy export: import it at /app/accounts/{id}/import, with \
                 `ferry import account {id}` or POST /api/v1/accounts/{id}/migrate",
                account.name
            );
        }
    }
}

fn print_login(url: &str, login: &crate::demo::DemoLogin) {
    println!("  open:      {url}/login  and sign in as the administrator below");
    println!(
        "  administrator: email {}   password {}",
        login.email, login.password
    );
    println!("  API token: {}", login.api_token);
    println!(
        "  try:       curl -H \"api_access_token: {}\" {url}/api/v1/accounts/{}/inboxes",
        login.api_token, login.account_id
    );
}

async fn bench(database_url: Option<&str>, command: &BenchCommand) -> anyhow::Result<()> {
    // Benchmarks print JSON either way; --json is accepted for symmetry with the other commands.
    let out = match command {
        BenchCommand::Webhooks {
            requests,
            concurrency,
            contacts,
            servers,
            json: _,
        } => {
            let opts = crate::bench::WebhooksBench {
                requests: *requests,
                concurrency: *concurrency,
                contacts: (*contacts).max(1),
                servers: *servers,
            };
            crate::bench::webhooks(database_url, &opts).await?
        }
        BenchCommand::AccountImport {
            threads,
            messages_per_thread,
            source,
            dynamodb_endpoint,
            json: _,
        } => {
            let opts = crate::bench::AccountImportBench {
                threads: *threads,
                messages_per_thread: *messages_per_thread,
                source: *source,
                dynamodb_endpoint: dynamodb_endpoint.clone(),
            };
            crate::bench::account_import(database_url, &opts).await?
        }
        BenchCommand::InboxMigration {
            conversations,
            messages_per_conversation,
            merge_ratio,
            batch_rows,
            compare,
            migrations,
            workers,
            json: _,
        } => {
            let opts = crate::bench::InboxMigrationBench {
                conversations: *conversations,
                messages_per_conversation: *messages_per_conversation,
                merge_ratio: *merge_ratio,
                batch_rows: *batch_rows,
                compare: *compare,
                migrations: *migrations,
                workers: *workers,
            };
            crate::bench::inbox_migration(database_url, &opts).await?
        }
    };
    print_json(&out);
    Ok(())
}

/// Writes to stdout; a reader that went away (`| head`) is no error. (Run from `main`, SIGPIPE usually ends the
/// command first; this covers callers that ignore it.)
fn write_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
