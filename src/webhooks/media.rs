//! Files of inbound messages. The webhook is answered before any download: bytes that came in the delivery
//! (Evolution's `base64`) are written to the attachment store at once; anything else becomes a `pending`
//! attachment with a `fetch_media` job queued in the message's own transaction. The fetcher downloads with the
//! integration's credentials (Evolution `getBase64FromMediaMessage`, the Graph API with the access token,
//! 360dialog with its API key, Twilio's media URL with basic auth), retries with exponential backoff, and
//! after the last attempt leaves the attachment as a `failed` placeholder with the reason: the message itself
//! is never lost. Every request goes through `outbound` (provider hosts or allowed base URLs only, checked
//! addresses and redirects, credentials only to the provider's own hosts, `FERRY_MEDIA_MAX_BYTES`); a URL it
//! refuses, or a file over the cap, fails the attachment at once.
//!
//! Every database call of a job is one statement or transaction, and its endings change nothing unless the job
//! still holds its lease: one that failed transiently (a terminated connection, a deadlock, a busy database)
//! rolled back whole and runs again at once (`store::retrying`), instead of leaving the job to wait out its lease.

use std::time::Duration;

use base64::Engine;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::event::{Media, MediaSource, MessageKind};
use super::integrations::integration_secrets;
use super::outbound::{Call, Credential, OutboundError};
use crate::jobs::Outcome;
use crate::services::Ferry;
use crate::store::{FetchedFile, IngestAttachment, Job, StoreError, TokenRoute, retrying};

pub const JOB_KIND: &str = "fetch_media";
const GRAPH_API: &str = "https://graph.facebook.com/v21.0";
const DIALOG360_API: &str = "https://waba-v2.360dialog.io";
/// A media id's answer is a few hundred bytes of JSON.
const METADATA_MAX_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Serialize, Deserialize)]
struct FetchPayload {
    attachment_id: i64,
    integration_id: Option<i64>,
    source: MediaSource,
}

/// The attachment of a message being stored: ready when the delivery carried the bytes, else a placeholder
/// and the payload of its fetch job.
pub async fn attachment(
    ferry: &Ferry,
    route: &TokenRoute,
    kind: MessageKind,
    media: &Media,
) -> IngestAttachment {
    let mut attachment = IngestAttachment {
        file_type: kind.file_type(),
        content_type: media.content_type.clone(),
        file_name: media.file_name.clone(),
        stored: None,
        fetch: None,
    };
    let source = match &media.source {
        MediaSource::Inline { base64, message_id } => match store_inline(ferry, base64).await {
            Ok(blob) => {
                attachment.stored = Some((blob.storage_key, blob.checksum, blob.byte_size));
                return attachment;
            }
            Err(e) => {
                tracing::warn!(error = %e, "media in the delivery unusable; fetching it instead");
                MediaSource::Evolution {
                    message_id: message_id.clone(),
                }
            }
        },
        other => other.clone(),
    };
    attachment.fetch = Some(json!({"integration_id": route.integration_id, "source": source}));
    attachment
}

async fn store_inline(
    ferry: &Ferry,
    base64: &str,
) -> Result<crate::attachments::StoredBlob, String> {
    let bytes = decode(base64)?;
    ferry
        .attachments
        .put(&bytes)
        .await
        .map_err(|e| format!("attachment store: {e}"))
}

/// Base64 as providers send it: standard alphabet, maybe a `data:…;base64,` prefix, maybe line breaks.
fn decode(text: &str) -> Result<Vec<u8>, String> {
    let body = text.split_once(";base64,").map_or(text, |(_, rest)| rest);
    let clean: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(clean.as_bytes())
        .map_err(|e| format!("not base64: {e}"))
}

/// Runs the fetcher until `shutdown` becomes true: due jobs, then a pause.
pub async fn run_fetcher(ferry: Ferry, owner: String, mut shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        let stop = shutdown.clone();
        if let Err(e) = run_due(&ferry, &owner, &|| *stop.borrow()).await {
            // Nothing was half-written; a job left running is taken over when its lease ends.
            tracing::error!(error = %e, "media fetcher: the database failed; trying again shortly");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Longer than the slowest fetch (two requests of at most 60 s each) plus storing it: a job is taken over
/// only when its worker is gone, and a late first worker can no longer finish it (the lease token).
const LEASE: chrono::Duration = chrono::Duration::minutes(5);

/// Runs every due fetch job until `stop` says so; returns how many ran.
pub async fn run_due(
    ferry: &Ferry,
    owner: &str,
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<usize, StoreError> {
    // A fetch is short and never stops half-way: it does not watch for shutdown, `stop` is asked between two.
    let (_running, no_shutdown) = watch::channel(false);
    let mut ran = 0;
    while !stop() {
        match crate::jobs::run_one::<Job>(ferry, owner, LEASE, no_shutdown.clone()).await? {
            Some(_) => ran += 1,
            None => return Ok(ran),
        }
    }
    Ok(ran)
}

#[async_trait::async_trait]
impl crate::jobs::LeasedJob for Job {
    async fn claim(
        ferry: &Ferry,
        owner: &str,
        token: &str,
        now: chrono::DateTime<Utc>,
        until: chrono::DateTime<Utc>,
    ) -> Result<Option<Self>, StoreError> {
        // A claim whose commit was lost in transit leaves its job to the lease's end, as a crash would.
        retrying(JOB_KIND, || {
            ferry.store.claim_job(JOB_KIND, owner, token, now, until)
        })
        .await
    }

    async fn renew(
        &self,
        ferry: &Ferry,
        _token: &str,
        until: chrono::DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        ferry.store.renew_job_lease(self, until).await
    }

    async fn run(
        self,
        ferry: &Ferry,
        _ctx: crate::jobs::RunContext,
    ) -> Result<Outcome, StoreError> {
        run_job(ferry, self).await
    }
}

enum Failure {
    /// Worth another attempt (network, provider errors).
    Retry(String),
    /// No attempt can succeed (missing credentials or configuration).
    GiveUp(String),
}

/// Fetches and stores one file: `Completed` when it is stored, `Failed` when this attempt failed (retried
/// later, or given up with the reason on the placeholder).
async fn run_job(ferry: &Ferry, job: Job) -> Result<Outcome, StoreError> {
    let payload: FetchPayload = match serde_json::from_value(job.payload.0.clone()) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(job = job.id, error = %e, "unreadable media job");
            let attachment = job.payload.0["attachment_id"].as_i64().unwrap_or(0);
            let reason = format!("unreadable job: {e}");
            return retrying(JOB_KIND, || {
                ferry.store.fail_media_job(&job, attachment, &reason)
            })
            .await
            .map(|_| Outcome::Failed);
        }
    };
    let fetched = match fetch(ferry, &payload).await {
        // The attachment store failing (a full disk, an unreachable bucket) is worth another attempt.
        Ok((bytes, content_type)) => match ferry.attachments.put(&bytes).await {
            Ok(blob) => Ok((blob, content_type)),
            Err(e) => Err(Failure::Retry(format!("attachment store: {e}"))),
        },
        Err(failure) => Err(failure),
    };
    // A non-transient database error here rolled its transaction back: the job stays leased to this run and
    // is taken over when the lease ends, counting an attempt, as after a crash.
    match fetched {
        Ok((blob, content_type)) => {
            let file = FetchedFile {
                storage_key: &blob.storage_key,
                checksum: &blob.checksum,
                byte_size: blob.byte_size,
                content_type: content_type.as_deref(),
            };
            retrying(JOB_KIND, || {
                ferry
                    .store
                    .complete_media_job(&job, payload.attachment_id, &file)
            })
            .await
            .map(|_| Outcome::Completed)
        }
        Err(Failure::Retry(reason)) if job.attempts < job.max_attempts => {
            let delay = backoff(ferry.config.media_retry_base_ms, job.attempts);
            tracing::warn!(job = job.id, attempt = job.attempts, %reason, ?delay, "media download failed; retrying");
            let run_at = Utc::now() + delay;
            retrying(JOB_KIND, || ferry.store.retry_job(&job, &reason, run_at))
                .await
                .map(|_| Outcome::Failed)
        }
        Err(Failure::Retry(reason) | Failure::GiveUp(reason)) => {
            tracing::warn!(job = job.id, attempt = job.attempts, %reason, "media download abandoned; placeholder kept");
            retrying(JOB_KIND, || {
                ferry
                    .store
                    .fail_media_job(&job, payload.attachment_id, &reason)
            })
            .await
            .map(|_| Outcome::Failed)
        }
    }
}

/// `base` × 2^(attempt − 1), at most an hour.
fn backoff(base_ms: u64, attempt: i64) -> chrono::Duration {
    let factor = 1u64 << attempt.clamp(1, 20).saturating_sub(1);
    let ms = base_ms.saturating_mul(factor).min(3_600_000);
    chrono::Duration::milliseconds(ms as i64)
}

async fn fetch(
    ferry: &Ferry,
    payload: &FetchPayload,
) -> Result<(Vec<u8>, Option<String>), Failure> {
    if let MediaSource::Legacy { url } = &payload.source {
        return crate::account_import::fetch_media(ferry, url)
            .await
            .map_err(|e| match e {
                crate::account_import::MediaError::Unavailable(_) => Failure::Retry(e.to_string()),
                other => Failure::GiveUp(other.to_string()),
            });
    }
    let id = payload.integration_id.ok_or_else(|| {
        Failure::GiveUp("no integration to download with (delivered by the legacy route)".into())
    })?;
    let gone = |e: StoreError| match e {
        StoreError::NotFound(_) => Failure::GiveUp(format!("integration {id} no longer exists")),
        other => Failure::Retry(other.to_string()),
    };
    let account = retrying(JOB_KIND, || ferry.store.integration_account(id))
        .await
        .map_err(gone)?;
    let integration = retrying(JOB_KIND, || ferry.store.get_integration(account, id))
        .await
        .map_err(gone)?;
    let secrets = integration_secrets(ferry, &integration)
        .map_err(|e| Failure::GiveUp(format!("integration secrets: {e}")))?;
    let secret = |name: &str| secrets.get(name).and_then(Value::as_str).map(str::to_owned);
    let api_url = integration
        .config
        .get("api_url")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let outbound = &ferry.outbound;
    match &payload.source {
        MediaSource::Evolution { message_id } | MediaSource::Inline { message_id, .. } => {
            let base = api_url.ok_or_else(|| {
                Failure::GiveUp("the integration has no api_url (the Evolution API server)".into())
            })?;
            let instance = integration
                .instance_name
                .ok_or_else(|| Failure::GiveUp("the integration has no instance name".into()))?;
            let key = secret("api_key").map(Credential::EvolutionKey);
            let body = json!({"message": {"key": {"id": message_id}}, "convertToMp4": false});
            let url = format!("{base}/chat/getBase64FromMediaMessage/{instance}");
            // The file comes as base64 in JSON: a third larger, plus the answer's other fields.
            let limit = outbound.max_bytes().saturating_mul(4) / 3 + 64 * 1024;
            let answer =
                json_of(ferry, Call::post_json(url, &body).with(key.as_ref()), limit).await?;
            let base64 = answer
                .get("base64")
                .and_then(Value::as_str)
                .ok_or_else(|| Failure::Retry("Evolution answered without base64".into()))?;
            let bytes = decode(base64).map_err(Failure::Retry)?;
            if bytes.len() as u64 > outbound.max_bytes() {
                crate::metrics::outbound_refused("too_large");
                return Err(failure(
                    ferry,
                    OutboundError::TooLarge(outbound.max_bytes()),
                ));
            }
            Ok((bytes, answer["mimetype"].as_str().map(str::to_owned)))
        }
        MediaSource::Cloud { media_id } => {
            let dialog360 = integration.provider == "dialog360";
            let base = api_url
                .unwrap_or_else(|| if dialog360 { DIALOG360_API } else { GRAPH_API }.to_owned());
            let credential = if dialog360 {
                Credential::Dialog360Key(secret("api_key").ok_or_else(|| {
                    Failure::GiveUp("the 360dialog integration has no api_key".into())
                })?)
            } else {
                Credential::MetaBearer(secret("access_token").ok_or_else(|| {
                    Failure::GiveUp("the Cloud integration has no access_token".into())
                })?)
            };
            let lookup = Call::get(format!("{base}/{media_id}")).with(Some(&credential));
            let meta = json_of(ferry, lookup, METADATA_MAX_BYTES).await?;
            let url = meta
                .get("url")
                .and_then(Value::as_str)
                .ok_or_else(|| Failure::Retry("the media id answered no url".into()))?;
            // 360dialog hands out Meta's lookaside URL; its own host serves it with the API key.
            let url = if dialog360 {
                rehost(url, &base).unwrap_or_else(|| url.to_owned())
            } else {
                url.to_owned()
            };
            let bytes = bytes_of(ferry, Call::get(url).with(Some(&credential))).await?;
            Ok((bytes, meta["mime_type"].as_str().map(str::to_owned)))
        }
        MediaSource::Legacy { .. } => unreachable!("answered above"),
        MediaSource::Url { url, account_sid } => {
            let credential = match (account_sid, secret("auth_token")) {
                (Some(sid), Some(token)) => Some(Credential::TwilioBasic {
                    sid: sid.clone(),
                    token,
                }),
                _ => None,
            };
            let bytes = bytes_of(ferry, Call::get(url.clone()).with(credential.as_ref())).await?;
            Ok((bytes, None))
        }
    }
}

/// `url` with the scheme, host and port of `base`.
fn rehost(url: &str, base: &str) -> Option<String> {
    let mut url = url::Url::parse(url).ok()?;
    let base = url::Url::parse(base).ok()?;
    url.set_scheme(base.scheme()).ok()?;
    url.set_host(base.host_str()).ok()?;
    url.set_port(base.port()).ok()?;
    Some(url.to_string())
}

/// A refused URL or an oversized file can never succeed: the attachment fails at once, saying why.
fn failure(ferry: &Ferry, e: OutboundError) -> Failure {
    match e {
        OutboundError::Refused(reason) => Failure::GiveUp(format!("media URL refused: {reason}")),
        OutboundError::TooLarge(_) => Failure::GiveUp(format!(
            "media larger than FERRY_MEDIA_MAX_BYTES ({} bytes)",
            ferry.outbound.max_bytes()
        )),
        OutboundError::Failed(reason) => Failure::Retry(reason),
    }
}

async fn answered(ferry: &Ferry, call: Call<'_>) -> Result<reqwest::Response, Failure> {
    let response = ferry
        .outbound
        .send(call)
        .await
        .map_err(|e| failure(ferry, e))?;
    if !response.status().is_success() {
        return Err(Failure::Retry(format!(
            "{} answered {}",
            response.url().host_str().unwrap_or("the provider"),
            response.status()
        )));
    }
    Ok(response)
}

async fn json_of(ferry: &Ferry, call: Call<'_>, limit: u64) -> Result<Value, Failure> {
    let response = answered(ferry, call).await?;
    let body = ferry
        .outbound
        .read(response, limit)
        .await
        .map_err(|e| failure(ferry, e))?;
    serde_json::from_slice(&body).map_err(|e| Failure::Retry(format!("unreadable answer: {e}")))
}

async fn bytes_of(ferry: &Ferry, call: Call<'_>) -> Result<Vec<u8>, Failure> {
    let response = answered(ferry, call).await?;
    let limit = ferry.outbound.max_bytes();
    ferry
        .outbound
        .read(response, limit)
        .await
        .map_err(|e| failure(ferry, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base_and_stops_at_an_hour() {
        let ms = |attempt| backoff(30_000, attempt).num_milliseconds();
        assert_eq!((ms(1), ms(2), ms(3)), (30_000, 60_000, 120_000));
        assert_eq!(ms(12), 3_600_000);
        assert_eq!(ms(1000), 3_600_000);
    }

    #[test]
    fn base64_with_prefix_and_line_breaks_decodes() {
        assert_eq!(
            decode("data:image/png;base64,aGVs\nbG8=").unwrap(),
            b"hello"
        );
        assert!(decode("***").is_err());
    }

    #[test]
    fn rehost_keeps_path_and_query() {
        assert_eq!(
            rehost(
                "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1&ext=2",
                "http://127.0.0.1:9000"
            )
            .unwrap(),
            "http://127.0.0.1:9000/whatsapp_business/attachments/?mid=1&ext=2"
        );
    }
}
