//! Prometheus metrics at `/metrics` (README: "Using the API"). Counters and histograms go through the `metrics` facade into one
//! recorder per process (scrape every node); what the database knows for the whole deployment — migrations and
//! imports by status, dead letters waiting — is counted at scrape time.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{counter, describe_counter, describe_histogram, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Seconds buckets from a cached webhook (sub-millisecond) to a long batch.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The process's recorder, installed on first use. Everything recorded before it exists is lost, so
/// `Ferry::open` calls this first.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
            .expect("non-empty buckets")
            .build_recorder();
        let handle = recorder.handle();
        // An embedder may have installed its own recorder: ours then renders only what ferry adds at scrape.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was installed before ferry's; /metrics shows less");
        }
        describe();
        handle
    })
}

fn describe() {
    describe_counter!(
        "ferry_http_requests_total",
        "HTTP requests by matched route, method and status."
    );
    describe_histogram!(
        "ferry_http_request_duration_seconds",
        "Time to the response's head, by matched route and method."
    );
    describe_counter!(
        "ferry_webhook_events_total",
        "Webhook events by provider and outcome (stored, duplicate, status, changed, ignored, malformed, failed)."
    );
    describe_counter!(
        "ferry_dead_letters_total",
        "Webhook bodies kept as dead letters by this process, by provider."
    );
    describe_counter!(
        "ferry_rows_moved_total",
        "Rows written by inbox migrations and account imports, by job and entity."
    );
    describe_histogram!(
        "ferry_batch_duration_seconds",
        "Duration of one committed batch transaction, by job."
    );
    describe_counter!(
        "ferry_outbound_refused_total",
        "Media downloads and provider API calls refused before or while being made, by reason (host, address, \
         redirects, url, too_large)."
    );
    describe_counter!(
        "ferry_connections_past_cap_total",
        "Connections accepted past FERRY_MAX_CONNECTIONS, by what became of them (reserve: health checks only; \
         closed: at once)."
    );
    describe_counter!(
        "ferry_lease_takeovers_total",
        "Jobs claimed from a worker whose lease had expired (it died or hung), by job."
    );
}

/// Counts and times every request by its route template (never the raw URI: ids would explode the labels).
pub async fn track_http(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    counter!("ferry_http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status)
        .increment(1);
    histogram!("ferry_http_request_duration_seconds", "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    response
}

pub fn webhook_event(provider: &str, outcome: &'static str) {
    counter!("ferry_webhook_events_total", "provider" => provider.to_owned(), "outcome" => outcome)
        .increment(1);
}

/// A delivery to a token URL that routes nowhere (`unknown_token`, `disabled_token`, `malformed_token`,
/// `other_provider`), per provider route.
pub fn webhook_refused(route: &'static str, reason: &'static str) {
    counter!("ferry_webhook_refused_total", "route" => route, "reason" => reason).increment(1);
}

/// A provider request ferry would not make or finish (`host`, `address`, `redirects`, `url`, `too_large`): see
/// `webhooks::outbound`.
pub fn outbound_refused(reason: &'static str) {
    counter!("ferry_outbound_refused_total", "reason" => reason).increment(1);
}

/// A job's batch that rolled back on a transient database failure and is run again.
pub fn transient_retry(job: &'static str) {
    counter!("ferry_transient_retries_total", "job" => job).increment(1);
}

pub fn dead_letter(provider: &str) {
    counter!("ferry_dead_letters_total", "provider" => provider.to_owned()).increment(1);
}

/// One committed batch of `job` and the rows it wrote per entity.
pub fn batch(job: &'static str, seconds: f64, rows: &[(&'static str, i64)]) {
    histogram!("ferry_batch_duration_seconds", "job" => job).record(seconds);
    for (entity, n) in rows {
        if *n > 0 {
            counter!("ferry_rows_moved_total", "job" => job, "entity" => *entity)
                .increment(*n as u64);
        }
    }
}

/// A connection accepted past `FERRY_MAX_CONNECTIONS`: `reserve` (health checks only) or `closed`.
pub fn connection_past_cap(outcome: &'static str) {
    counter!("ferry_connections_past_cap_total", "outcome" => outcome).increment(1);
}

pub fn lease_takeover(job: &'static str) {
    counter!("ferry_lease_takeovers_total", "job" => job).increment(1);
}

/// One labelled sample line (labels already escaped-safe: fixed words and statuses).
pub fn gauge_line(out: &mut String, name: &str, labels: &[(&str, &str)], value: i64) {
    let labels: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    if labels.is_empty() {
        out.push_str(&format!("{name} {value}\n"));
    } else {
        out.push_str(&format!("{name}{{{}}} {value}\n", labels.join(",")));
    }
}
