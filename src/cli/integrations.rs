//! `ferry integrations …`: provider connections and their webhook tokens (README: "Integrations and webhook tokens"), as the API has them.

use clap::Subcommand;
use serde_json::json;

use super::print_json;
use crate::services::Ferry;
use crate::webhooks::integrations::{
    self as integrations, CreateIntegration, Provider, ProviderSecrets, integration_json,
    parse_duration,
};

#[derive(Debug, Subcommand)]
pub enum IntegrationsCommand {
    /// Connect an inbox to a provider; prints the webhook URL to paste into the provider
    Create {
        /// The account's id
        #[arg(long)]
        account: i64,
        /// The inbox's id
        #[arg(long)]
        inbox: i64,
        /// evolution, whatsapp_cloud, dialog360 or twilio_whatsapp
        #[arg(long)]
        provider: String,
        /// The Evolution API instance's name
        #[arg(long)]
        instance_name: Option<String>,
        /// The WhatsApp Cloud phone number id (Meta's id of the number)
        #[arg(long)]
        phone_number_id: Option<String>,
        /// Where media is downloaded from: the Evolution API server (required for Evolution media), or another
        /// Graph API / 360dialog base URL than the provider's own
        #[arg(long)]
        api_url: Option<String>,
        /// WhatsApp Cloud: the Meta app secret that signs webhooks (X-Hub-Signature-256)
        #[arg(long, env = "FERRY_APP_SECRET", hide_env_values = true)]
        app_secret: Option<String>,
        /// WhatsApp Cloud: the verify token of the hub.challenge handshake
        #[arg(long)]
        verify_token: Option<String>,
        /// Twilio: the auth token that signs webhooks (X-Twilio-Signature)
        #[arg(long, env = "FERRY_AUTH_TOKEN", hide_env_values = true)]
        auth_token: Option<String>,
        /// Evolution API key / 360dialog D360-API-KEY (media downloads)
        #[arg(long)]
        api_key: Option<String>,
        /// WhatsApp Cloud access token (media downloads)
        #[arg(long)]
        access_token: Option<String>,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// The integrations of an account (tokens are never listed)
    List {
        /// The account's id
        #[arg(long)]
        account: i64,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// A new token; the current one keeps routing for the overlap (default 24h)
    Rotate {
        id: i64,
        /// Hours the previous token keeps routing after a rotation
        #[arg(long, default_value = "24h")]
        overlap: String,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Show the webhook URL with its token (audited)
    Reveal {
        id: i64,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Stop routing this integration's webhooks
    Disable {
        id: i64,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Route webhooks for this integration again
    Enable {
        id: i64,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Cut-over: the legacy tables, what is migrated, and legacy-route traffic of the last N days
    Check {
        /// Days without legacy-route traffic the integration must have had (the quiet window)
        #[arg(long, default_value_t = 14)]
        quiet_days: i64,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Cut-over: every integration's webhook URL (token masked unless --reveal, which is audited)
    Tokens {
        /// Print the full webhook token (administrators only; it is a secret)
        #[arg(long)]
        reveal: bool,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Send a signed synthetic message through the running server's token route; report status, latency and
    /// whether the route was cached; then remove the message
    Test {
        id: i64,
        /// The running server (default FERRY_PUBLIC_URL)
        #[arg(long)]
        url: Option<String>,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Cut-over: re-point Evolution instances at their token URLs through the Evolution API (ferry's events, no
    /// base64), one at a time, restoring the previous webhook exactly and stopping at the first failure;
    /// instances whose webhook is disabled are skipped and reported unless --include-disabled
    Cutover {
        /// The Evolution API instance's name
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        instance: Option<String>,
        /// Every one of them, not only the first
        #[arg(long)]
        all: bool,
        /// Report what would be done and change nothing
        #[arg(long)]
        dry_run: bool,
        /// Also re-point instances whose webhook is disabled (or unset), which enables it
        #[arg(long)]
        include_disabled: bool,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Cut-over: back up and drop the legacy tables and retire the legacy route (410 Gone); refused while the
    /// legacy route saw traffic within the quiet window, unless --force
    Cleanup {
        /// Days without legacy-route traffic the integration must have had (the quiet window)
        #[arg(long, default_value_t = 14)]
        quiet_days: i64,
        /// Do it even though a safety check refuses
        #[arg(long)]
        force: bool,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Cut-over: compare the legacy rows with their integrations, key by key and field by field (exit 1 unless
    /// they agree)
    Verify {
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Cut-over: every non-error legacy row becomes exactly one integration (idempotent; --dry-run writes nothing)
    Migrate {
        /// Report what would be done and change nothing
        #[arg(long)]
        dry_run: bool,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
}

pub async fn integrations(ferry: Ferry, command: IntegrationsCommand) -> anyhow::Result<()> {
    let issued = match command {
        IntegrationsCommand::Create {
            account,
            inbox,
            provider,
            instance_name,
            phone_number_id,
            api_url,
            app_secret,
            verify_token,
            auth_token,
            api_key,
            access_token,
            json,
        } => {
            let input = CreateIntegration {
                account_id: account,
                inbox_id: inbox,
                provider: Provider::parse(&provider)?,
                instance_name,
                phone_number_id,
                api_url,
                secrets: ProviderSecrets {
                    app_secret,
                    verify_token,
                    auth_token,
                    api_key,
                    access_token,
                },
            };
            (integrations::create(&ferry, input, None).await?, json)
        }
        IntegrationsCommand::Rotate { id, overlap, json } => {
            let account = ferry.store.integration_account(id).await?;
            let overlap = parse_duration(&overlap)?;
            (
                integrations::rotate(&ferry, account, id, overlap, None).await?,
                json,
            )
        }
        IntegrationsCommand::Reveal { id, json } => {
            let account = ferry.store.integration_account(id).await?;
            (integrations::reveal(&ferry, account, id, None).await?, json)
        }
        IntegrationsCommand::Disable { id, json } | IntegrationsCommand::Enable { id, json } => {
            let enabled = matches!(command, IntegrationsCommand::Enable { .. });
            let account = ferry.store.integration_account(id).await?;
            let integration = integrations::set_enabled(&ferry, account, id, enabled, None).await?;
            if json {
                print_json(&integration_json(&integration));
            } else {
                println!(
                    "integration {id} {}",
                    if enabled { "enabled" } else { "disabled" }
                );
            }
            return Ok(());
        }
        IntegrationsCommand::Check { quiet_days, json } => {
            let report = crate::webhooks::cutover::check(&ferry, quiet_days).await?;
            if json {
                print_json(&json!(report));
            } else {
                print_check(&report);
            }
            return Ok(());
        }
        IntegrationsCommand::Test { id, url, json: _ } => return test(&ferry, id, url).await,
        IntegrationsCommand::Tokens { reveal, json } => return tokens(&ferry, reveal, json).await,
        IntegrationsCommand::Cutover {
            instance,
            all: _,
            dry_run,
            include_disabled,
            json,
        } => return cutover(&ferry, instance, dry_run, include_disabled, json).await,
        IntegrationsCommand::Cleanup {
            quiet_days,
            force,
            json,
        } => {
            let report = crate::webhooks::cutover::cleanup(&ferry, quiet_days, force, None).await?;
            if json {
                print_json(&json!(report));
            } else {
                println!(
                    "cleaned up{}: {} legacy rows backed up to {}; legacy route {}, legacy tables {}",
                    if report.forced { " (forced)" } else { "" },
                    report.rows_backed_up,
                    report.backup,
                    report.legacy_route,
                    report.legacy_tables
                );
            }
            return Ok(());
        }
        IntegrationsCommand::Verify { json } => return verify(&ferry, json).await,
        IntegrationsCommand::Migrate { dry_run, json } => {
            return migrate(&ferry, dry_run, json).await;
        }
        IntegrationsCommand::List { account, json } => {
            ferry.store.get_account(account).await?;
            let all = ferry.store.list_integrations(account).await?;
            if json {
                print_json(&json!(all.iter().map(integration_json).collect::<Vec<_>>()));
            } else {
                for i in all {
                    println!(
                        "{:>5}  {:<16} inbox {:>5}  {}  {}",
                        i.id,
                        i.provider,
                        i.inbox_id.unwrap_or_default(),
                        if i.enabled { "enabled " } else { "disabled" },
                        i.token_prefix.unwrap_or_default()
                    );
                }
            }
            return Ok(());
        }
    };
    let (issued, json) = issued;
    if json {
        print_json(
            &json!({"id": issued.integration.id, "token": issued.token.expose(),
            "webhook_url": issued.webhook_url, "previous_token_expires_at": issued.integration.previous_token_expires_at}),
        );
    } else {
        println!(
            "integration {}: {}",
            issued.integration.id, issued.webhook_url
        );
    }
    warn_if_unreachable(&ferry);
    Ok(())
}

/// Said on stderr after the webhook URLs a command printed, while providers cannot reach them.
fn warn_if_unreachable(ferry: &Ferry) {
    if let Some(warning) = crate::public_url::warning(&ferry.public_url()) {
        eprintln!("warning: {warning}");
    }
}

/// Every integration with its webhook URL (`integrations tokens`).
async fn tokens(ferry: &Ferry, reveal: bool, json: bool) -> anyhow::Result<()> {
    let all = crate::webhooks::cutover::tokens(ferry, reveal, None).await?;
    if json {
        print_json(&json!(all));
    } else {
        for i in &all {
            println!(
                "{:>5}  {:<16} {:<24} {:<12} {}",
                i.id,
                i.provider,
                i.key.as_deref().unwrap_or("-"),
                i.cutover_state,
                i.webhook_url.as_deref().unwrap_or("(no token)")
            );
        }
    }
    warn_if_unreachable(ferry);
    Ok(())
}

/// Re-points Evolution's webhooks at ferry's token URLs (`integrations cutover`).
async fn cutover(
    ferry: &Ferry,
    instance: Option<String>,
    dry_run: bool,
    include_disabled: bool,
    json: bool,
) -> anyhow::Result<()> {
    use crate::webhooks::cutover::{CutoverOptions, CutoverScope};
    let scope = instance.map_or(CutoverScope::All, CutoverScope::Instance);
    let options = CutoverOptions {
        dry_run,
        include_disabled,
        by: None,
    };
    let report = crate::webhooks::cutover::cutover(ferry, scope, options).await?;
    if json {
        print_json(&json!(report));
    } else {
        println!(
            "{}{} instance(s) re-pointed at their token URL, {} skipped",
            if dry_run { "dry run: would have " } else { "" },
            report.done.len(),
            report.skipped.len()
        );
        for done in &report.done {
            println!(
                "  {}: {}",
                done["instance"].as_str().unwrap_or("?"),
                done["to"].as_str().unwrap_or("")
            );
        }
    }
    for skipped in &report.skipped {
        eprintln!("skipped {}: {}", skipped["instance"], skipped["reason"]);
    }
    if let Some(failed) = &report.failed {
        anyhow::bail!(
            "cutover stopped at {}: {}",
            failed["instance"],
            failed["reason"]
        );
    }
    Ok(())
}

/// Turns every usable legacy row into one integration (`integrations migrate`).
async fn migrate(ferry: &Ferry, dry_run: bool, json: bool) -> anyhow::Result<()> {
    let report = crate::webhooks::cutover::migrate(ferry, dry_run, None).await?;
    if json {
        print_json(&json!(report));
    } else {
        println!(
            "{}migrated {}, updated {}, unchanged {}, skipped {}, errors {}",
            if dry_run { "dry run: would have " } else { "" },
            report.migrated.len(),
            report.updated.len(),
            report.unchanged.len(),
            report.skipped.len(),
            report.errors.len()
        );
        for item in report.skipped.iter().chain(&report.errors) {
            println!(
                "  {} {}: {}",
                item.provider,
                item.key.as_deref().unwrap_or("?"),
                item.reason.as_deref().unwrap_or("")
            );
        }
    }
    if !report.errors.is_empty() {
        anyhow::bail!("{} legacy rows could not be migrated", report.errors.len());
    }
    Ok(())
}

/// Compares the legacy rows with the integrations (`integrations verify`): fails when they differ.
async fn verify(ferry: &Ferry, json: bool) -> anyhow::Result<()> {
    let report = crate::webhooks::cutover::verify(ferry).await?;
    if json {
        print_json(&json!(report));
    } else {
        println!(
            "legacy rows {}, integrations from them {}: {}",
            report.legacy_rows,
            report.migrated_rows,
            if report.agree {
                "they agree key by key and field by field"
            } else {
                "they differ"
            }
        );
        for key in &report.missing {
            println!("  missing  {} {}", key.provider, key.key);
        }
        for key in &report.extra {
            println!("  extra    {} {}", key.provider, key.key);
        }
        for row in &report.different {
            let fields: Vec<&str> = row.fields.keys().map(String::as_str).collect();
            println!(
                "  differs  {} {} (integration {}): {}",
                row.provider,
                row.key,
                row.integration_id,
                fields.join(", ")
            );
        }
    }
    if !report.agree {
        anyhow::bail!(
            "the legacy rows and the integrations differ: {} missing, {} extra, {} different",
            report.missing.len(),
            report.extra.len(),
            report.different.len()
        );
    }
    Ok(())
}

/// `integrations check` for a person: what the cut-over would find.
fn print_check(report: &crate::webhooks::cutover::CheckReport) {
    for (name, table) in [
        ("evolution_instances", &report.evolution_instances),
        (
            "whatsapp_business_configs",
            &report.whatsapp_business_configs,
        ),
    ] {
        println!(
            "{name}: {} rows, {} migrated, {} in error, {} not migrated, {} unmapped",
            table.total,
            table.migrated,
            table.error,
            table.not_migrated.len(),
            table.unmapped.len()
        );
    }
    for i in &report.integrations_without_usable_token {
        println!(
            "integration {} ({} {}): {}",
            i.integration_id,
            i.provider,
            i.key.as_deref().unwrap_or("-"),
            i.reason
        );
    }
    for d in &report.duplicate_integrations {
        println!("duplicate integrations for {} {}", d.provider, d.key);
    }
    let route = &report.legacy_route;
    println!(
        "legacy route {}: {} instance(s) used it in the last {} days",
        if route.enabled { "on" } else { "off" },
        route.hits.len(),
        route.quiet_days
    );
    for h in &route.hits {
        println!(
            "  {}: {} hits, last {}",
            h.instance_name,
            h.hits,
            h.last_hit_at.format("%Y-%m-%d %H:%M UTC")
        );
    }
}

/// Sends a signed test message through the integration's own webhook URL (`integrations test`).
async fn test(ferry: &Ferry, id: i64, url: Option<String>) -> anyhow::Result<()> {
    let report = crate::webhooks::cutover::test_delivery(ferry, id, url.as_deref()).await?;
    print_json(&json!(report));
    if !report.ok {
        let status = report.status.map_or("no answer".into(), |s| s.to_string());
        anyhow::bail!("the test message was answered {status}: {}", report.answer);
    }
    Ok(())
}
