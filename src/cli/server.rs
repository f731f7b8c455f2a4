//! `ferry serve` and `ferry worker`: the long-running commands.

use anyhow::Context;

use crate::demo::{DemoState, ensure_demo};
use crate::services::Ferry;
use crate::startup::{Application, shutdown_signal};

pub async fn serve(ferry: Ferry, demo: bool, no_worker: bool) -> anyhow::Result<()> {
    let app = Application::bind(ferry.clone())
        .await
        .with_context(|| format!("cannot listen on {}", ferry.config.bind))?;
    let url = format!("http://{}", app.local_addr());
    // Every process builds webhook addresses from the stored public URL: this server's, unless set explicitly.
    if let Err(e) = ferry
        .public
        .record_serving(&ferry.config, ferry.store.as_ref(), &url)
        .await
    {
        tracing::warn!(error = %e, "could not store the public URL");
    }
    if let Some(warning) = crate::public_url::warning(&ferry.public_url()) {
        eprintln!("warning: {warning}");
    }
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
    // `config set public-url` from another process reaches this one within a refresh period.
    let refresher = {
        let ferry = ferry.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(crate::public_url::REFRESH).await;
                if let Err(e) = ferry
                    .public
                    .refresh(&ferry.config, ferry.store.as_ref())
                    .await
                {
                    tracing::warn!(error = %e, "could not read the public URL");
                }
            }
        })
    };
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
    println!("webhook URLs start with {}", ferry.public_url());
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
    refresher.abort();
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

/// Runs the worker until SIGTERM or Ctrl-C; the current batch commits and the lease is released.
pub async fn worker(ferry: Ferry) -> anyhow::Result<()> {
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

/// The demo's legacy accounts: waiting in the legacy export (and how to import them), being imported, or
/// imported already (a restarted demo says so).
async fn print_imports(ferry: &Ferry, demo_account: i64) {
    for id in demo_account + 1..=demo_account + 2 {
        let Ok(account) = ferry.store.get_account(id).await else {
            continue;
        };
        if account.legacy_ref.is_none() {
            continue;
        }
        let name = &account.name;
        let page = format!("/app/accounts/{id}/import");
        match account.migration_status.as_deref() {
            None | Some("not-started") => println!(
                "account {id} ({name}) waits in the legacy export: import it at {page}, with \
                 `ferry import account {id}` or POST /api/v1/accounts/{id}/migrate"
            ),
            Some("completed") => {
                println!("account {id} ({name}) was imported from the legacy export: see {page}")
            }
            Some("not-needed") => {}
            Some(failed) if failed.ends_with("failure") => println!(
                "account {id} ({name}): its import stopped ({failed}); resume it at {page} or with \
                 `ferry import account {id}`"
            ),
            Some(other) => {
                println!("account {id} ({name}) is being imported ({other}): follow it at {page}")
            }
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
