//! `ferry bench webhooks`: ferry's HTTP server on a fresh database, driven over loopback by a closed loop of
//! `concurrency` clients (bounded load: a client sends its next request when the previous one is answered).
//!
//! Scenarios, in order: `trivial` (a 200 handler on the same server: the HTTP floor), `token` (distinct text
//! messages through the token route, cache warm), `legacy` (distinct messages through the legacy by-name route),
//! `duplicate` (the `token` messages delivered again), `by_number` (distinct 360dialog messages for one business
//! number posted to another number's URL, routed by `phone_number_id` as a WABA webhook's are). Statements are
//! this process's `ferry_db_statements_total` over the scenario; routing statements are measured apart, with
//! events ferry acknowledges without storing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::routing::post;
use serde_json::{Value, json};

use super::{Target, open, round};
use crate::domain::ChannelType;
use crate::secrets::SecretKey;
use crate::services::{CreateInbox, Ferry};
use crate::store::seed::LegacyEvolutionInstance;
use crate::webhooks::integrations::{self, CreateIntegration, Provider, ProviderSecrets};

#[derive(Debug, Clone)]
pub struct WebhooksBench {
    pub requests: usize,
    pub concurrency: usize,
    /// Distinct customers the messages come from.
    pub contacts: usize,
    /// HTTP servers on the same database (each its own pool, group commit and route cache), the clients spread
    /// over them round robin: what several nodes behind a load balancer do.
    pub servers: usize,
}

pub async fn webhooks(database_url: Option<&str>, opts: &WebhooksBench) -> anyhow::Result<Value> {
    anyhow::ensure!(opts.requests >= 100, "--requests must be at least 100");
    anyhow::ensure!(
        (1..=1024).contains(&opts.concurrency),
        "--concurrency must be between 1 and 1024"
    );
    anyhow::ensure!(
        (1..=8).contains(&opts.servers),
        "--servers must be between 1 and 8"
    );
    let mut target = Target::new(database_url)?;
    let result = run(&mut target, opts).await;
    target.cleanup().await;
    result
}

struct Load {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    statements: u64,
    failures: usize,
}

async fn run(target: &mut Target, opts: &WebhooksBench) -> anyhow::Result<Value> {
    let key = SecretKey::generate().encode().to_string();
    let url = target.create("webhooks").await?;
    let data = tempfile::tempdir().context("temporary directory")?;
    let ferry = open(&url, &key, data.path()).await?;
    let Paths {
        token: token_path,
        legacy: legacy_path,
        waba: waba_path,
    } = setup(&ferry).await?;

    let mut nodes = vec![ferry.clone()];
    for _ in 1..opts.servers {
        nodes.push(open(&url, &key, data.path()).await?);
    }
    let mut bases = Vec::new();
    let mut servers = Vec::new();
    for node in &nodes {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        bases.push(format!("http://{}", listener.local_addr()?));
        let app = crate::http::router(node.clone())
            .merge(axum::Router::new().route("/__bench/trivial", post(|| async { "ok" })));
        servers.push(tokio::spawn(
            async move { axum::serve(listener, app).await },
        ));
    }
    let base = &bases[..];
    crate::install_tls();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(opts.concurrency)
        .build()?;

    let n = opts.requests;
    let messages = |prefix: &str| -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| evolution_message(&format!("{prefix}{i:09}"), i % opts.contacts))
            .collect()
    };
    let token_bodies = Arc::new(messages("BENCHTOK"));
    let legacy_bodies = Arc::new(messages("BENCHLEG"));
    let ignored = Arc::new(vec![connection_update(); (n / 10).max(100)]);
    let waba_bodies = Arc::new(
        (0..n)
            .map(|i| waba_message(&format!("wamid.BENCHNUM{i:09}"), i % opts.contacts))
            .collect::<Vec<_>>(),
    );
    let waba_ignored = Arc::new(vec![waba_account_update(); ignored.len()]);

    // Warm-up, as a live installation is: every customer known with an open conversation, the route cached,
    // connections open, and the database settled (planner statistics on PostgreSQL, WAL folded on SQLite).
    let warm = Arc::new(
        (0..opts.contacts)
            .map(|i| evolution_message(&format!("BENCHWARM{i:09}"), i))
            .collect::<Vec<_>>(),
    );
    drive(&client, base, &token_path, &warm, opts.concurrency).await;
    let warm_waba = Arc::new(
        (0..opts.contacts)
            .map(|i| waba_message(&format!("wamid.BENCHWARM{i:09}"), i))
            .collect::<Vec<_>>(),
    );
    drive(&client, base, &waba_path, &warm_waba, opts.concurrency).await;
    ferry.store.bench_settle().await?;

    let trivial = drive(
        &client,
        base,
        "/__bench/trivial",
        &Arc::new(vec![b"{}".to_vec(); n]),
        opts.concurrency,
    )
    .await;
    let token = drive(&client, base, &token_path, &token_bodies, opts.concurrency).await;
    let legacy = drive(
        &client,
        base,
        &legacy_path,
        &legacy_bodies,
        opts.concurrency,
    )
    .await;
    let duplicate = drive(&client, base, &token_path, &token_bodies, opts.concurrency).await;
    let by_number = drive(&client, base, &waba_path, &waba_bodies, opts.concurrency).await;
    let token_routing = drive(&client, base, &token_path, &ignored, opts.concurrency).await;
    let legacy_routing = drive(&client, base, &legacy_path, &ignored, opts.concurrency).await;
    let number_routing = drive(&client, base, &waba_path, &waba_ignored, opts.concurrency).await;
    for server in servers {
        server.abort();
    }
    for node in nodes.iter().skip(1) {
        node.store.close().await;
    }

    let stored = ferry.store.bench_count_messages().await?;
    let warm_count = (warm.len() + warm_waba.len()) as i64;
    let expected = 3 * n as i64 + warm_count;
    let scenario = |load: &Load, requests: usize| {
        json!({
            "rps": load.rps,
            "p50_ms": load.p50_ms,
            "p99_ms": load.p99_ms,
            "statements_per_request": round(load.statements as f64 / requests as f64),
            "failures": load.failures,
        })
    };
    let per = |load: &Load| round(load.statements as f64 / ignored.len() as f64);
    ferry.store.close().await;
    Ok(json!({
        "backend": target.backend(),
        "requests": n,
        "concurrency": opts.concurrency,
        "servers": opts.servers,
        "contacts": opts.contacts,
        "scenarios": {
            "trivial": scenario(&trivial, n),
            "token": scenario(&token, n),
            "legacy": scenario(&legacy, n),
            "duplicate": scenario(&duplicate, n),
            "by_number": scenario(&by_number, n),
        },
        "routing_statements_per_request": {
            "token": per(&token_routing),
            "legacy": per(&legacy_routing),
            "by_number": per(&number_routing),
        },
        "messages_stored": stored,
        "messages_expected": expected,
    }))
}

struct Paths {
    token: String,
    legacy: String,
    /// The URL of one 360dialog number, which the bench posts the other number's messages to.
    waba: String,
}

/// An account with an Evolution inbox reached both by a token integration and by a legacy instance name, and two
/// 360dialog numbers of one WABA.
async fn setup(ferry: &Ferry) -> anyhow::Result<Paths> {
    let account = ferry.create_account("Bench", None).await?;
    let token = connected_inbox(
        ferry,
        account.id,
        ChannelType::Evolution,
        Some("+551140028922"),
        (Some("bench"), None),
    )
    .await?;
    ferry
        .store
        .insert_organization("org-bench", account.id, "Bench")
        .await?;
    ferry
        .store
        .insert_evolution_instance(&LegacyEvolutionInstance {
            instance_name: "bench-legacy".into(),
            organization_id: "org-bench".into(),
            status: "open".into(),
            phone_number: Some("+551140028922".into()),
            api_url: None,
            api_key: None,
            webhook_url: None,
            error_message: None,
        })
        .await?;
    let mut waba = Vec::new();
    for number in [WABA_URL_NUMBER, WABA_NUMBER] {
        waba.push(
            connected_inbox(
                ferry,
                account.id,
                ChannelType::Dialog360,
                None,
                (None, Some(number)),
            )
            .await?,
        );
    }
    Ok(Paths {
        token,
        legacy: "/webhooks/evolution/bench-legacy".into(),
        waba: waba.swap_remove(0),
    })
}

/// A new inbox of `channel` with its integration (`(instance_name, phone_number_id)`): its webhook path.
async fn connected_inbox(
    ferry: &Ferry,
    account_id: i64,
    channel: ChannelType,
    phone_number: Option<&str>,
    (instance_name, phone_number_id): (Option<&str>, Option<&str>),
) -> anyhow::Result<String> {
    let inbox = ferry
        .create_inbox(
            CreateInbox {
                account_id,
                name: format!("WhatsApp ({channel} {})", phone_number_id.unwrap_or("")),
                channel_type: channel,
                phone_number: phone_number.map(str::to_owned),
                provider_config: None,
                lock_to_single_conversation: false,
            },
            None,
        )
        .await?;
    let issued = integrations::create(
        ferry,
        CreateIntegration {
            account_id,
            inbox_id: inbox.id,
            provider: Provider::parse(channel.as_str())?,
            instance_name: instance_name.map(str::to_owned),
            phone_number_id: phone_number_id.map(str::to_owned),
            api_url: None,
            secrets: ProviderSecrets::default(),
        },
        None,
    )
    .await?;
    path_of(ferry, &issued.webhook_url)
}

fn path_of(ferry: &Ferry, webhook_url: &str) -> anyhow::Result<String> {
    Ok(webhook_url
        .strip_prefix(&ferry.public_url())
        .context("webhook URL outside the public URL")?
        .to_owned())
}

/// The number whose URL receives the WABA's deliveries, and the number they are for.
const WABA_URL_NUMBER: &str = "100000000000001";
const WABA_NUMBER: &str = "100000000000002";

/// A Cloud-shaped 360dialog delivery of one text message to `WABA_NUMBER`.
fn waba_message(id: &str, contact: usize) -> Vec<u8> {
    let number = (5_511_900_000_000_u64 + contact as u64).to_string();
    serde_json::to_vec(&json!({"object": "whatsapp_business_account", "entry": [{"id": "bench", "changes": [{
        "field": "messages",
        "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "551140028922", "phone_number_id": WABA_NUMBER},
            "contacts": [{"profile": {"name": format!("Cliente {contact}")}, "wa_id": number}],
            "messages": [{"from": number, "id": id, "timestamp": "1767225600", "type": "text",
                          "text": {"body": format!("Mensagem {id}")}}],
        },
    }]}]}))
    .expect("serializable")
}

/// A change ferry acknowledges without storing, for `WABA_NUMBER`: its routing alone.
fn waba_account_update() -> Vec<u8> {
    serde_json::to_vec(
        &json!({"object": "whatsapp_business_account", "entry": [{"id": "bench", "changes": [{
            "field": "account_update",
            "value": {"metadata": {"phone_number_id": WABA_NUMBER}, "event": "VERIFIED_ACCOUNT"},
        }]}]}),
    )
    .expect("serializable")
}

fn evolution_message(id: &str, contact: usize) -> Vec<u8> {
    // Brazilian mobiles: 55 11 9XXXX XXXX.
    let number = 5_511_900_000_000_u64 + contact as u64;
    serde_json::to_vec(&json!({
        "event": "messages.upsert",
        "instance": "bench",
        "data": {
            "key": {"remoteJid": format!("{number}@s.whatsapp.net"), "fromMe": false, "id": id},
            "pushName": format!("Cliente {contact}"),
            "message": {"conversation": format!("Mensagem {id}")},
            "messageType": "conversation",
            "messageTimestamp": 1_767_225_600,
        },
    }))
    .expect("serializable")
}

fn connection_update() -> Vec<u8> {
    serde_json::to_vec(
        &json!({"event": "connection.update", "instance": "bench", "data": {"state": "open"}}),
    )
    .expect("serializable")
}

/// Sends every body once, `concurrency` at a time, and measures each answer.
async fn drive(
    client: &reqwest::Client,
    bases: &[String],
    path: &str,
    bodies: &Arc<Vec<Vec<u8>>>,
    concurrency: usize,
) -> Load {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let statements = crate::telemetry::db_statements();
    let started = Instant::now();
    let clients: Vec<_> = (0..concurrency)
        .map(|k| {
            // Client k talks to server k mod N, as a balancer spreading connections would.
            let url = format!("{}{path}", bases[k % bases.len()]);
            let (client, next, bodies) = (client.clone(), next.clone(), bodies.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut failures = 0;
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else {
                        return (latencies, failures);
                    };
                    let sent = Instant::now();
                    let ok = client
                        .post(url.as_str())
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success());
                    latencies.push(sent.elapsed());
                    failures += usize::from(!ok);
                }
            })
        })
        .collect();
    let mut latencies: Vec<Duration> = Vec::with_capacity(bodies.len());
    let mut failures = 0;
    for client in clients {
        let (l, f) = client.await.expect("client task");
        latencies.extend(l);
        failures += f;
    }
    let elapsed = started.elapsed();
    let statements = crate::telemetry::db_statements() - statements;
    latencies.sort();
    let at = |q: f64| {
        let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
        round(latencies[i].as_secs_f64() * 1000.0)
    };
    Load {
        rps: round(bodies.len() as f64 / elapsed.as_secs_f64()),
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        statements,
        failures,
    }
}
