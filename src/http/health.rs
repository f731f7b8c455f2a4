use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::services::Ferry;

pub fn router() -> Router<Ferry> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the database takes a write: a one-row commit succeeds and no real write failed for want of the
/// database in the last seconds (a full disk may still fit the probe's row). Each dependency on its own line.
async fn readyz(State(ferry): State<Ferry>) -> (StatusCode, Json<Value>) {
    let failure = match ferry.store.probe_write().await {
        Ok(()) => ferry.store.write_health().recent_failure(),
        Err(e) => Some(e.to_string()),
    };
    let database = match failure {
        None => "ok".to_owned(),
        Some(error) => {
            tracing::warn!(%error, "readiness: the database cannot take writes");
            "unavailable".to_owned()
        }
    };
    // Redis only spares the database: reported, but not a reason to refuse traffic.
    let redis = match ferry.token_routes.redis_ping().await {
        None => "not configured",
        Some(true) => "ok",
        Some(false) => "unavailable",
    };
    let ready = database == "ok";
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ready { "ready" } else { "unavailable" },
        "database": {"backend": ferry.store.backend().as_str(), "status": database},
        "redis": {"status": redis},
    });
    (status, Json(body))
}

/// Prometheus text format. Counters of this process: scrape every node.
async fn metrics(
    State(ferry): State<Ferry>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    let routes = &ferry.token_routes;
    let lines = [
        (
            "ferry_db_statements_total",
            "Database statements executed by this process.",
            crate::telemetry::db_statements(),
        ),
        (
            "ferry_webhook_route_cache_hits_total",
            "Webhook token routes answered from the in-process cache.",
            routes.hits(),
        ),
        (
            "ferry_webhook_route_shared_hits_total",
            "Webhook token routes answered from Redis (in-process misses).",
            routes.shared_hits(),
        ),
        (
            "ferry_webhook_route_lookups_total",
            "Webhook token routes looked up in the database (cache misses).",
            routes.lookups(),
        ),
    ];
    let mut out = crate::metrics::handle().render();
    for (name, help, value) in lines {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
        ));
    }
    // What the database holds for the whole deployment (every node answers the same).
    let counting = tracing::info_span!(target: "ferry_uncounted", "ferry_uncounted");
    match tracing::Instrument::instrument(ferry.store.status_counts(), counting).await {
        Ok(counts) => {
            for (name, help) in [
                ("ferry_inbox_migrations", "Inbox migrations by status."),
                ("ferry_account_imports", "Account imports by status."),
                (
                    "ferry_dead_letters_waiting",
                    "Dead letters not replayed yet.",
                ),
            ] {
                out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
                for (kind, status, n) in counts.iter().filter(|(k, _, _)| k == name) {
                    let labels: &[(&str, &str)] = if kind == "ferry_dead_letters_waiting" {
                        &[]
                    } else {
                        &[("status", status.as_str())]
                    };
                    crate::metrics::gauge_line(&mut out, name, labels, *n);
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics: database counts unavailable"),
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        out,
    )
}
