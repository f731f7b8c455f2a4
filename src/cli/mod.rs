//! The `ferry` command line: a thin adapter over `services`. Human output by default, `--json` for scripts.

mod admin;
mod bench;
mod chatwoot;
mod demo;
mod imports;
mod integrations;
mod migrations;
mod parse;
mod server;
mod webhooks;

pub use parse::{Parsed, parse};

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::json;

use crate::config::Config;
use crate::services::Ferry;

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
        command: admin::AccountsCommand,
    },
    /// Users and their role in an account
    Users {
        #[command(subcommand)]
        command: admin::UsersCommand,
    },
    /// Personal API tokens
    Tokens {
        #[command(subcommand)]
        command: admin::TokensCommand,
    },
    /// Inboxes of an account
    Inboxes {
        #[command(subcommand)]
        command: admin::InboxesCommand,
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
        command: bench::BenchCommand,
    },
    /// Inbox migration on an existing Chatwoot database: check, preview, migrate, verify, revert, convert-provider
    Chatwoot {
        #[command(subcommand)]
        command: chatwoot::ChatwootCommand,
    },
    /// Demo data
    Demo {
        #[command(subcommand)]
        command: demo::DemoCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Every setting as this process sees it (flags, then FERRY_* variables, then defaults), secrets redacted
    Show {
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Store an installation-wide setting in the database, for every process: `public-url https://…` is the
    /// address providers reach ferry at, which webhook URLs are built from
    Set {
        #[arg(value_enum)]
        setting: Setting,
        value: String,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Apply pending schema migrations (also done at every start)
    Migrate {
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
}

impl Command {
    /// Commands that run until they are stopped (they keep ignoring SIGPIPE: their sockets report EPIPE).
    pub fn is_long_running(&self) -> bool {
        matches!(
            self,
            Command::Serve { .. } | Command::Worker | Command::Bench { .. }
        )
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    crate::telemetry::init(&cli.config.log, cli.config.log_format);
    crate::install_tls();
    match cli.command {
        // Benchmarks make their own fresh databases; --database-url names the server, not a database to use.
        Command::Bench { command } => {
            bench::bench(cli.config.database_url.as_deref(), &command).await
        }
        Command::Openapi => openapi(),
        // Works on Chatwoot's database, not ferry's.
        Command::Chatwoot { command } => chatwoot::chatwoot(command).await,
        // Needs no database: it shows what a server started the same way would use.
        Command::Config {
            command: ConfigCommand::Show { json },
        } => show_config(&cli.config, json).await,
        command => {
            let embedded = embedded_database(&cli.config);
            if let Some(db) = &embedded
                && !matches!(
                    command,
                    Command::Serve { .. } | Command::Db { .. } | Command::Demo { .. }
                )
            {
                ensure_data_exists(&cli.config, db)?;
            }
            // Held until the server stops: the kernel drops it with the process, however it ends.
            let _serving = match (&command, &embedded) {
                (Command::Serve { .. }, Some(db)) => Some(lock_serving(db)?),
                _ => None,
            };
            if let Command::Serve { demo: true, .. } = &command
                && cli.config.legacy.export_dir.is_none()
                && cli.config.legacy.api_url.is_none()
            {
                crate::account_import::generate::demo_export(&cli.config.data_dir)
                    .context("cannot write the demo's legacy export")?;
            }
            let ferry = Ferry::open(cli.config.clone()).await?;
            run_on_database(ferry, command).await
        }
    }
}

/// What `ferry config set` can store.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Setting {
    PublicUrl,
}

async fn set_setting(
    ferry: &Ferry,
    setting: Setting,
    value: &str,
    json: bool,
) -> anyhow::Result<()> {
    let Setting::PublicUrl = setting;
    let url = ferry
        .public
        .set_explicit(ferry.store.as_ref(), value)
        .await
        .map_err(|e| anyhow::anyhow!("public-url: {e}"))?;
    if json {
        print_json(&json!({"public_url": url}));
    } else {
        println!("public URL is now {url}; running servers pick it up within 10 seconds");
    }
    if let Some(warning) = crate::public_url::warning(&url) {
        eprintln!("warning: {warning}");
    }
    Ok(())
}

/// The SQLite file ferry's database is in, when it is one.
fn embedded_database(config: &Config) -> Option<std::path::PathBuf> {
    let url = config.effective_database_url();
    let path = url
        .strip_prefix("sqlite://")
        .or(url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next().unwrap_or(path);
    (!path.is_empty() && path != ":memory:").then(|| std::path::PathBuf::from(path))
}

/// A command that reads ferry's data refuses a data directory that was never created, instead of making an
/// empty one: a mistyped `--data-dir` would otherwise look like an installation without data.
fn ensure_data_exists(config: &Config, db: &std::path::Path) -> anyhow::Result<()> {
    if db.exists() {
        return Ok(());
    }
    let dir = db.parent().unwrap_or(std::path::Path::new("."));
    let near: std::collections::BTreeSet<String> =
        [std::path::Path::new("."), dir.parent().unwrap_or(dir)]
            .iter()
            .filter_map(|root| std::fs::read_dir(root).ok())
            .flatten()
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|p| p.join("ferry.db").is_file() && p.as_path() != dir)
            .map(|p| p.display().to_string())
            .collect();
    let near: Vec<String> = near.into_iter().take(3).collect();
    let hint = if near.is_empty() {
        String::new()
    } else {
        format!(" did you mean --data-dir {}?", near.join(" or "))
    };
    let what = if config
        .database_url
        .as_deref()
        .is_some_and(|u| !u.trim().is_empty())
    {
        format!("no ferry database at {}:", db.display())
    } else {
        format!("no ferry data in {}:", dir.display())
    };
    anyhow::bail!("{what}{hint} `ferry serve` (or `ferry db migrate`) creates it")
}

/// One `ferry serve` per SQLite database: a second one is refused with the first one's pid (an exclusive
/// `flock` on a file beside it, released by the kernel when the holder exits, however it ends).
fn lock_serving(db: &std::path::Path) -> anyhow::Result<std::fs::File> {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsRawFd;
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    }
    let path = std::path::PathBuf::from(format!("{}.serve.lock", db.display()));
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: flock on a descriptor this function owns; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let mut pid = String::new();
        let _ = file.read_to_string(&mut pid);
        anyhow::bail!(
            "another ferry serve (pid {}) is using {}: stop it first, or give this one another --data-dir",
            pid.trim(),
            db.display()
        );
    }
    file.set_len(0)?;
    file.rewind()?;
    write!(file, "{}", std::process::id())?;
    Ok(file)
}

/// The commands that work on ferry's database.
async fn run_on_database(ferry: Ferry, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve { demo, no_worker } => server::serve(ferry, demo, no_worker).await,
        Command::Worker => server::worker(ferry).await,
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
        Command::Accounts { command } => admin::accounts(ferry, command).await,
        Command::Users { command } => admin::users(ferry, command).await,
        Command::Tokens { command } => admin::tokens(ferry, command).await,
        Command::Inboxes { command } => admin::inboxes(ferry, command).await,
        Command::Integrations { command } => integrations::integrations(ferry, command).await,
        Command::Import { command } => imports::import(ferry, command).await,
        Command::Webhooks { command } => webhooks::webhooks(ferry, command).await,
        Command::Migrate { command } => migrations::migrate(ferry, command).await,
        Command::Migrations { command } => migrations::migrations(ferry, command).await,
        Command::Demo { command } => demo::demo(ferry, command).await,
        Command::Config {
            command:
                ConfigCommand::Set {
                    setting,
                    value,
                    json,
                },
        } => set_setting(&ferry, setting, &value, json).await,
        Command::Bench { .. }
        | Command::Openapi
        | Command::Config { .. }
        | Command::Chatwoot { .. } => {
            anyhow::bail!("this command does not open the database")
        }
    }
}

fn openapi() -> anyhow::Result<()> {
    let mut text = crate::http::openapi_document()
        .to_pretty_json()
        .context("cannot write the OpenAPI document")?;
    text.push('\n');
    write_stdout(&text)
}

async fn show_config(config: &Config, json: bool) -> anyhow::Result<()> {
    let shown = config.shown();
    let in_use = public_url_in_use(config).await;
    if json {
        let mut map: serde_json::Map<String, serde_json::Value> = shown
            .into_iter()
            .map(|(k, v)| (k.to_owned(), serde_json::Value::String(v)))
            .collect();
        map.insert(
            "public_url_in_use".into(),
            serde_json::Value::String(in_use),
        );
        print_json(&serde_json::Value::Object(map));
    } else {
        for (name, value) in shown {
            println!("{name:<38} {value}");
        }
        println!("{:<38} {in_use}", "webhook URLs start with");
    }
    Ok(())
}

/// The public URL every process builds webhook URLs from: this process's explicit one, else the database's
/// (`config set public-url`, or where `serve` last listened). Shown without creating a database that is not
/// there yet.
async fn public_url_in_use(config: &Config) -> String {
    if let Some(db) = embedded_database(config)
        && !db.exists()
    {
        return format!("{} (no database yet)", config.public_url());
    }
    let url = config.effective_database_url();
    let opened = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        let store = crate::store::connect(&url).await?;
        crate::public_url::PublicUrl::load(config, store.as_ref()).await
    })
    .await;
    match opened {
        Ok(Ok(public)) => public.get(),
        Ok(Err(e)) => format!("unknown: the database could not be read ({e})"),
        Err(_) => "unknown: the database did not answer within 5 s".into(),
    }
}

/// Asks for `word` to be typed before a change; refuses without a terminal (pass --yes there).
fn confirm(word: &str) -> anyhow::Result<()> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("confirmation needed: run in a terminal and type {word}, or pass --yes");
    }
    eprint!("Type {word} to confirm: ");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| anyhow::anyhow!("reading the confirmation: {e}"))?;
    if !line.trim().eq_ignore_ascii_case(word) {
        anyhow::bail!("aborted: the confirmation did not match {word}; nothing was changed");
    }
    Ok(())
}

fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("serializable")
    );
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
