//! `ferry bench account-import`: an account of `threads` × `messages_per_thread` generated into the legacy
//! system (an export directory, or DynamoDB on a local moto server with the HTTP API served beside it), then
//! imported into a fresh database. Reports seconds from `/migrate` (the import's creation) to
//! `channels-migrated`, `recent-messages-migrated` and `completed` — the database's own timestamps — and
//! messages per second. With DynamoDB it also reports moto's raw read rate: the emulator, not ferry, is then
//! the bottleneck.

use std::time::Instant;

use anyhow::Context;
use serde_json::{Value, json};

use super::{Target, peak_rss_mb, reset_peak_rss, round};
use crate::account_import::envelope::{ConfigKey, generate_key};
use crate::account_import::fake::FakeLegacyApi;
use crate::account_import::generate::{self, AccountSpec};
use crate::worker::Worker;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LegacySourceKind {
    Export,
    Dynamodb,
}

#[derive(Debug, Clone)]
pub struct AccountImportBench {
    pub threads: usize,
    pub messages_per_thread: usize,
    pub source: LegacySourceKind,
    /// A running DynamoDB-compatible server; unset: `moto_server` is started on a free port.
    pub dynamodb_endpoint: Option<String>,
}

pub async fn account_import(
    database_url: Option<&str>,
    opts: &AccountImportBench,
) -> anyhow::Result<Value> {
    anyhow::ensure!(opts.threads >= 1, "--threads must be at least 1");
    let mut target = Target::new(database_url)?;
    let result = run(&mut target, opts).await;
    target.cleanup().await;
    result
}

/// `moto_server` on a free loopback port, stopped on drop.
struct Moto(std::process::Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_moto() -> anyhow::Result<(Moto, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = std::process::Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context(
            "cannot start moto_server (pip install 'moto[server]'), or pass --dynamodb-endpoint",
        )?;
    let moto = Moto(child);
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..300 {
        if reqwest::get(format!("{url}/moto-api/")).await.is_ok() {
            return Ok((moto, url));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    anyhow::bail!("moto_server did not start at {url}")
}

async fn run(target: &mut Target, opts: &AccountImportBench) -> anyhow::Result<Value> {
    let data = tempfile::tempdir().context("temporary directory")?;
    let export = data.path().join("export");
    let key = generate_key();
    let sealer = ConfigKey::parse(&key).expect("a generated key");
    let spec = AccountSpec {
        legacy_ref: "bench".into(),
        name: "Bench".into(),
        threads: opts.threads,
        messages_per_thread: opts.messages_per_thread,
        media_every: None,
        // Ten minutes apart: of 10,000 threads, 4,320 are inside the 30-day window.
        thread_spacing_seconds: 600,
    };
    let now = chrono::Utc::now().timestamp();
    let account = generate::account(&spec, &sealer, now, "file://media/");
    let expected = account.message_count() as i64;
    generate::write_export(&export, std::slice::from_ref(&account))?;

    let url = target.create("account_import").await?;
    let mut config = crate::config::Config::for_data_dir(data.path());
    config.database_url = Some(url);
    config.secret_key = Some(crate::secrets::SecretKey::generate().encode().to_string());
    config.legacy.config_key = Some(key);
    let mut source = json!({"kind": "export"});
    let mut _moto = None;
    let mut _api = None;
    match opts.source {
        LegacySourceKind::Export => config.legacy.export_dir = Some(export.clone()),
        LegacySourceKind::Dynamodb => {
            // SAFETY: set before the SDK starts its threads; the bench is the process's only work.
            if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
                unsafe {
                    std::env::set_var("AWS_ACCESS_KEY_ID", "bench");
                    std::env::set_var("AWS_SECRET_ACCESS_KEY", "bench");
                }
            }
            let endpoint = match &opts.dynamodb_endpoint {
                Some(e) => e.clone(),
                None => {
                    let (moto, url) = start_moto().await?;
                    _moto = Some(moto);
                    url
                }
            };
            let api = FakeLegacyApi::start(export.clone(), None, b"bench").await?;
            let settings = ferry_legacy_dynamodb::Settings {
                endpoint: Some(endpoint.clone()),
                region: "us-east-1".into(),
                threads_table: format!("threads_{now}"),
                messages_table: format!("messages_{now}"),
            };
            let dynamo = ferry_legacy_dynamodb::LegacyDynamo::connect(&settings).await;
            let load = Instant::now();
            generate::load_dynamodb(&dynamo, std::slice::from_ref(&account), true)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let load_seconds = load.elapsed().as_secs_f64();
            // The server's own rate: every thread page and every message page, read and thrown away.
            let read = Instant::now();
            let mut items = 0usize;
            let mut cursor: Option<String> = None;
            loop {
                let page = dynamo
                    .threads_page("bench", cursor.as_deref(), 100)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                for thread in &page.items {
                    let id = thread["thread_id"].as_str().unwrap_or_default();
                    let mut messages: Option<String> = None;
                    loop {
                        let m = dynamo
                            .messages_page(id, messages.as_deref(), 1000, false)
                            .await
                            .map_err(|e| anyhow::anyhow!("{e}"))?;
                        items += m.items.len();
                        match m.next {
                            Some(next) => messages = Some(next),
                            None => break,
                        }
                    }
                }
                match page.next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            let read_seconds = read.elapsed().as_secs_f64();
            source = json!({
                "kind": "dynamodb",
                "endpoint": endpoint,
                "load_seconds": round(load_seconds),
                "raw_read_messages": items,
                "raw_read_seconds": round(read_seconds),
                "raw_messages_per_second": round(items as f64 / read_seconds),
            });
            config.legacy.api_url = Some(api.url.clone());
            config.legacy.dynamodb_endpoint = Some(endpoint);
            config.legacy.threads_table = settings.threads_table.clone();
            config.legacy.messages_table = settings.messages_table.clone();
            _api = Some(api);
        }
    }
    let ferry = crate::services::Ferry::open(config).await?;
    let created = ferry.create_account("Bench", Some("bench")).await?;
    reset_peak_rss();
    let (import, _) = crate::account_import::start(&ferry, created.id, None, false).await?;
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let outcome = Worker::new(ferry.clone()).run_import_once(shutdown).await?;
    anyhow::ensure!(
        outcome == Some(crate::jobs::Outcome::Completed),
        "the import ended {outcome:?}: {:?}",
        ferry
            .store
            .get_account_import(import.id)
            .await?
            .error_message
    );
    let done = ferry.store.get_account_import(import.id).await?;
    let since = |at: Option<chrono::DateTime<chrono::Utc>>| {
        at.map(|at| round((at - done.created_at).num_microseconds().unwrap_or(0) as f64 / 1e6))
    };
    let total = since(done.completed_at).unwrap_or(0.0);
    let stored: i64 = ferry.store.bench_count_messages().await?;
    anyhow::ensure!(
        stored == expected,
        "imported {stored} messages of {expected}"
    );
    ferry.store.close().await;
    Ok(json!({
        "benchmark": "account-import",
        "backend": target.backend(),
        "source": source,
        "threads": opts.threads,
        "messages_expected": expected,
        "messages_imported": stored,
        "seconds_to_channels_migrated": since(done.channels_migrated_at),
        "seconds_to_recent_messages_migrated": since(done.recent_migrated_at),
        "seconds_to_completed": total,
        "messages_per_second": if total > 0.0 { round(expected as f64 / total) } else { 0.0 },
        "peak_rss_mb": peak_rss_mb(),
    }))
}
