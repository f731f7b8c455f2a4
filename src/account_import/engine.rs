//! Runs one account import under its lease: `channels` → `recent` → `all`. Every batch commits its rows with
//! its stage cursor (store `import_batch`), so a crashed or released import resumes after its last commit; a
//! stage that fails records the stage's failure status on the account (README: "Stages and what happens on failure") for the next `/migrate`.
//!
//! A transient database failure (a terminated connection, a deadlock or serialization failure, a busy
//! database, a pool timeout) is not a stage failure: the transaction rolled back whole, so it runs again at
//! once (`store::retrying`), and when the database stays away longer the import waits with backoff and
//! resumes from its last commit under the same lease. Only data and invariant errors fail a stage.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use super::envelope::EnvelopeError;
use super::source::{LegacyMessage, LegacySource, LegacyThread, SourceError};
use crate::domain::{ChannelType, WhatsAppIdentity};
use crate::jobs::{Outcome, RunContext};
use crate::services::Ferry;
use crate::store::ImportStage;
use crate::store::{
    AccountImport, ImportBatch, ImportMedia, ImportMessage, ImportThread, ImportedChannel,
    StoreError, retrying,
};

/// The job name of `store::retrying` and `ferry_transient_retries_total`.
const JOB: &str = "account_import";
/// Runs before a transient database failure fails the import, and the longest pause between two.
const TRANSIENT_ATTEMPTS: u32 = 8;
const TRANSIENT_MAX_PAUSE: Duration = Duration::from_secs(30);

/// Threads read per page of the `all` stage.
const THREADS_PAGE: usize = 100;
/// Messages read per page.
const MESSAGES_PAGE: usize = 1000;
/// A batch transaction holds about this many messages (or this many threads).
const BATCH_MESSAGES: usize = 5000;
const BATCH_THREADS: usize = 500;

#[derive(Debug, thiserror::Error)]
enum StageError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the lease was lost")]
    LeaseLost,
    #[error("shutting down")]
    Shutdown,
}

/// Where the `all` stage stands: the thread page being read, how many of its threads are done, and the
/// message cursor inside the next one.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
struct AllCursor {
    page: Option<String>,
    skip: usize,
    /// The thread `messages` belongs to: if the legacy page changed since, the cursor is used only for it.
    #[serde(default)]
    thread: Option<String>,
    messages: Option<String>,
    /// Every thread is in: a resume only finishes the stage.
    #[serde(default)]
    done: bool,
}

/// Where the `recent` stage stands: its window (kept, so a resume selects the same threads) and how many of
/// them are in.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
struct RecentCursor {
    since: i64,
    done: usize,
}

#[tracing::instrument(name = "account_import", skip_all, fields(id = import.id, account = import.account_id))]
pub async fn run(ferry: &Ferry, import: AccountImport, ctx: RunContext) -> Outcome {
    let token = ctx.token.clone();
    let stage = import.stage;
    let result = run_resuming(ferry, &import, &ctx).await;
    let error = match result {
        Ok(()) => return Outcome::Completed,
        Err(StageError::LeaseLost) => return Outcome::LeaseLost,
        Err(StageError::Shutdown) => {
            let _ = retrying(JOB, || {
                ferry.store.release_account_import(import.id, &token)
            })
            .await;
            return Outcome::Released;
        }
        Err(e) => e,
    };
    // The stage that failed is the one the import is at now.
    let stage = retrying(JOB, || ferry.store.get_account_import(import.id))
        .await
        .map(|i| i.stage)
        .unwrap_or(stage);
    let (status, repair_at) = match stage {
        ImportStage::Channels => ("channel-failure", None),
        ImportStage::Recent => ("recent-messages-failure", None),
        ImportStage::All | ImportStage::Done => (
            "messages-failure",
            Some(
                Utc::now()
                    + super::repair_backoff(
                        ferry.config.legacy.repair_base_seconds,
                        import.repair_attempts,
                    ),
            ),
        ),
    };
    tracing::error!(error = %error, %stage, status, "account import failed");
    let (message, detail) = (error.to_string(), format!("{error:?}"));
    let failed = retrying(JOB, || {
        ferry
            .store
            .fail_account_import(import.id, &token, status, &message, &detail, repair_at)
    })
    .await;
    match failed {
        Ok(true) => Outcome::Failed,
        Ok(false) => Outcome::LeaseLost,
        Err(e) => {
            // The lease expires and another worker takes the import over.
            tracing::error!(error = %e, "could not record the failure");
            Outcome::Failed
        }
    }
}

/// Runs the import; a transient database failure that outlasted `store::retrying` is waited out with backoff
/// and the run resumed from what the database holds (stage, cursors), under the same lease.
async fn run_resuming(
    ferry: &Ferry,
    import: &AccountImport,
    ctx: &RunContext,
) -> Result<(), StageError> {
    let mut import = import.clone();
    let mut attempt = 0;
    loop {
        let error = match run_inner(ferry, &import, ctx).await {
            Err(StageError::Store(e)) if e.is_transient() && attempt + 1 < TRANSIENT_ATTEMPTS => e,
            done => return done,
        };
        attempt += 1;
        let pause = (Duration::from_millis(500) * 2u32.pow(attempt)).min(TRANSIENT_MAX_PAUSE);
        tracing::warn!(error = %error, attempt, ?pause, "transient database failure; resuming from the last commit");
        crate::metrics::transient_retry(JOB);
        ctx.pause(pause).await;
        check(ctx)?;
        match ferry.store.get_account_import(import.id).await {
            Ok(current) => import = current,
            Err(e) if e.is_transient() => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

fn check(ctx: &RunContext) -> Result<(), StageError> {
    if ctx.lease_is_lost() {
        return Err(StageError::LeaseLost);
    }
    if ctx.shutting_down() {
        return Err(StageError::Shutdown);
    }
    Ok(())
}

async fn run_inner(
    ferry: &Ferry,
    import: &AccountImport,
    ctx: &RunContext,
) -> Result<(), StageError> {
    let source = ferry
        .legacy
        .clone()
        .ok_or_else(|| StageError::Invalid("no legacy system is configured".into()))?;
    let account = retrying(JOB, || ferry.store.get_account(import.account_id)).await?;
    let legacy_ref = account
        .legacy_ref
        .clone()
        .ok_or_else(|| StageError::Invalid("the account has no legacy_ref".into()))?;
    let mut import = import.clone();
    if import.stage == ImportStage::Channels {
        channels(ferry, &*source, &import, &legacy_ref, ctx).await?;
        import = retrying(JOB, || ferry.store.get_account_import(import.id)).await?;
    }
    let mut stage = Stage {
        ferry,
        source: &*source,
        ctx,
        import_id: import.id,
        legacy_ref,
        inboxes: HashMap::new(),
        merge_brazil_ninth_digit: account.merge_brazil_ninth_digit,
        started: std::time::Instant::now(),
        committed: std::sync::atomic::AtomicU64::new(0),
        batches: std::sync::atomic::AtomicU64::new(0),
    };
    for inbox in retrying(JOB, || ferry.store.list_inboxes(account.id)).await? {
        if let Some(channel) = inbox.legacy_channel_id {
            stage.inboxes.insert(channel, (inbox.id, inbox.channel));
        }
    }
    if import.stage == ImportStage::Recent {
        check(ctx)?;
        stage
            .recent(import.recent_cursor.as_deref(), &ferry.config.legacy)
            .await?;
        if !retrying(JOB, || {
            ferry
                .store
                .finish_import_stage(import.id, &ctx.token, "recent")
        })
        .await?
        {
            return Err(StageError::LeaseLost);
        }
        import = retrying(JOB, || ferry.store.get_account_import(import.id)).await?;
    }
    if import.stage == ImportStage::All {
        check(ctx)?;
        stage.all(import.all_cursor.as_deref()).await?;
        if !retrying(JOB, || {
            ferry
                .store
                .finish_import_stage(import.id, &ctx.token, "all")
        })
        .await?
        {
            return Err(StageError::LeaseLost);
        }
    }
    Ok(())
}

/// The channel types the legacy system has, and the settings each must carry.
fn required_settings(kind: ChannelType) -> Option<&'static [&'static str]> {
    Some(match kind {
        ChannelType::Evolution => &["instance_name"],
        ChannelType::WhatsappCloud => &["phone_number_id", "access_token"],
        ChannelType::Dialog360 => &["api_key"],
        ChannelType::TwilioWhatsapp => &["account_sid", "auth_token"],
        ChannelType::WebWidget => &[],
        _ => return None,
    })
}

async fn channels(
    ferry: &Ferry,
    source: &dyn LegacySource,
    import: &AccountImport,
    legacy_ref: &str,
    ctx: &RunContext,
) -> Result<(), StageError> {
    let key = super::config_key(&ferry.config)?.ok_or_else(|| {
        StageError::Invalid(
            "FERRY_LEGACY_CONFIG_KEY is not set: channel configs cannot be decrypted".into(),
        )
    })?;
    let answer = source.channels(legacy_ref).await?;
    let mut channels = Vec::with_capacity(answer.channels.len());
    for c in &answer.channels {
        let kind = ChannelType::parse(&c.kind)
            .ok()
            .filter(|k| required_settings(*k).is_some())
            .ok_or_else(|| {
                StageError::Invalid(format!(
                    "channel {}: unknown type {:?}",
                    c.channel_id, c.kind
                ))
            })?;
        let config = key.open(&c.channel_id, &c.config)?;
        for setting in required_settings(kind).unwrap_or_default() {
            if config
                .get(*setting)
                .and_then(|v| v.as_str())
                .is_none_or(str::is_empty)
            {
                return Err(StageError::Invalid(format!(
                    "channel {}: the {} config has no {setting}",
                    c.channel_id, c.kind
                )));
            }
        }
        let name = c.name.trim();
        channels.push(ImportedChannel {
            legacy_channel_id: c.channel_id.clone(),
            name: if name.is_empty() {
                c.channel_id.clone()
            } else {
                name.chars().take(255).collect()
            },
            channel_type: kind,
            phone_number: c.phone_number.clone(),
            config: serde_json::Value::Object(config),
        });
    }
    check(ctx)?;
    let cipher = ferry.cipher.clone();
    let seal = move |inbox_id: i64, config: &serde_json::Value| {
        cipher.encrypt_json(config, crate::store::provider_config_binding(inbox_id))
    };
    retrying(JOB, || {
        ferry
            .store
            .import_channels(import.id, &ctx.token, &channels, &seal)
    })
    .await?
    .ok_or(StageError::LeaseLost)?;
    tracing::info!(channels = channels.len(), "channels migrated");
    Ok(())
}

struct Stage<'a> {
    ferry: &'a Ferry,
    source: &'a dyn LegacySource,
    ctx: &'a RunContext,
    import_id: i64,
    legacy_ref: String,
    /// Legacy channel id → (inbox, its channel type).
    inboxes: HashMap<String, (i64, ChannelType)>,
    merge_brazil_ninth_digit: bool,
    started: std::time::Instant,
    committed: std::sync::atomic::AtomicU64,
    batches: std::sync::atomic::AtomicU64,
}

/// A thread as this stage imports it: a conversation, or (web widget) only starred flags.
enum Prepared {
    Thread(Box<ImportThread>),
    Widget,
    Skip,
}

impl Stage<'_> {
    fn prepare(&self, t: &LegacyThread) -> Prepared {
        let Some((inbox_id, kind)) = self.inboxes.get(&t.channel_id).copied() else {
            tracing::warn!(
                thread = t.thread_id,
                channel = t.channel_id,
                "thread of an unknown channel skipped"
            );
            return Prepared::Skip;
        };
        if kind == ChannelType::WebWidget {
            return Prepared::Widget;
        }
        let identity = match WhatsAppIdentity::parse(&t.contact_wa_id) {
            Ok(identity) => identity,
            Err(e) => {
                tracing::warn!(thread = t.thread_id, error = %e, "thread without a usable contact skipped");
                return Prepared::Skip;
            }
        };
        let Ok(source_id) = identity.to_source_id(kind) else {
            tracing::warn!(
                thread = t.thread_id,
                "contact not addressable in its channel; thread skipped"
            );
            return Prepared::Skip;
        };
        Prepared::Thread(Box::new(ImportThread {
            legacy_thread_id: t.thread_id.clone(),
            inbox_id,
            wa_identity: identity.canonical(),
            // Stored folded, as webhook ingestion stores it; matched per the account's setting.
            wa_key: identity.match_key(true),
            source_id,
            contact_name: t.contact_name.clone().filter(|n| !n.trim().is_empty()),
            phone_number: identity.e164(),
            status: if t.status == "resolved" {
                "resolved"
            } else {
                "open"
            },
            last_activity_at: Utc
                .timestamp_opt(t.last_message_at, 0)
                .single()
                .unwrap_or_else(Utc::now),
            messages: Vec::new(),
        }))
    }

    /// Adds a page of one thread's messages to the batch.
    fn add(&self, batch: &mut ImportBatch, prepared: &Prepared, messages: &[LegacyMessage]) {
        match prepared {
            Prepared::Skip => {}
            // A star from the legacy system is added; one that a ferry user gave is never taken away.
            Prepared::Widget => {
                batch
                    .starred
                    .extend(messages.iter().filter(|m| m.starred).filter_map(|m| {
                        let id = m.external_id.as_deref()?.trim().parse::<i64>().ok()?;
                        Some((id, true))
                    }))
            }
            Prepared::Thread(thread) => {
                let mut thread = ImportThread::clone(thread);
                thread.messages = messages.iter().map(message).collect();
                batch.threads.push(thread);
            }
        }
    }

    async fn commit(&self, stage: &str, batch: &mut ImportBatch) -> Result<(), StageError> {
        check(self.ctx)?;
        let mut done = std::mem::take(batch);
        done.merge_brazil_ninth_digit = self.merge_brazil_ninth_digit;
        let started = std::time::Instant::now();
        // A deadlock victim or a busy database: the transaction rolled back whole; it runs again.
        let outcome = retrying(JOB, || {
            self.ferry
                .store
                .import_batch(self.import_id, &self.ctx.token, stage, &done)
        })
        .await?
        .ok_or(StageError::LeaseLost)?;
        // The tables this import fills grow from nothing: with statistics from when they were empty, PostgreSQL
        // scans them where an index would serve. Refreshed whenever the batches run doubled (1, 2, 4, …), so
        // the estimates stay within a factor of two for a handful of cheap (sampling) ANALYZEs.
        let batches = self.batches.fetch_add(1, Ordering::Relaxed) + 1;
        if batches.is_power_of_two()
            && let Err(e) = retrying(JOB, || self.ferry.store.refresh_import_statistics()).await
        {
            // Only the planner's estimates: the import goes on without them.
            tracing::warn!(error = %e, "refreshing the import tables' statistics failed");
        }
        crate::metrics::batch(
            "account_import",
            started.elapsed().as_secs_f64(),
            &[
                ("conversations", outcome.threads_created as i64),
                ("messages", outcome.messages_created as i64),
            ],
        );
        tracing::debug!(
            stage,
            threads = outcome.threads_created,
            messages = outcome.messages_created,
            ms = started.elapsed().as_millis() as u64,
            "batch committed"
        );
        // The throttle: never ahead of the configured rate since this run started.
        if let Some(rate) = self
            .ferry
            .config
            .legacy
            .max_messages_per_second
            .filter(|r| *r > 0)
        {
            let messages: u64 = done.threads.iter().map(|t| t.messages.len() as u64).sum();
            let total = self.committed.fetch_add(messages, Ordering::Relaxed) + messages;
            let due = std::time::Duration::from_secs_f64(total as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(self.started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
        Ok(())
    }

    /// Between history batches: gives the worker back when another account's import waits for its first
    /// stages, so that a long history never keeps someone else from working (it resumes from its cursor).
    async fn yield_to_waiting(&self) -> Result<(), StageError> {
        if retrying(JOB, || {
            self.ferry.store.account_import_waiting(self.import_id)
        })
        .await?
        {
            tracing::info!("another account's import is waiting: pausing this history import");
            return Err(StageError::Shutdown);
        }
        Ok(())
    }

    /// The newest threads of the window, each with its latest messages. The cursor counts the threads done.
    async fn recent(
        &self,
        cursor: Option<&str>,
        settings: &crate::config::LegacyConfig,
    ) -> Result<(), StageError> {
        let at: RecentCursor = match cursor.map(serde_json::from_str) {
            Some(Ok(at)) => at,
            _ => RecentCursor {
                since: Utc::now().timestamp() - i64::from(settings.recent_days) * 86_400,
                done: 0,
            },
        };
        let since = at.since;
        let most = settings.recent_threads;
        let mut threads = Vec::new();
        let mut page_cursor: Option<String> = None;
        while threads.len() < most {
            let page = self
                .source
                .recent_threads_page(
                    &self.legacy_ref,
                    since,
                    page_cursor.as_deref(),
                    (most - threads.len()).min(100),
                )
                .await?;
            threads.extend(page.items);
            match page.next {
                Some(next) => page_cursor = Some(next),
                None => break,
            }
        }
        threads.truncate(most);
        let done = at.done;
        let mut batch = ImportBatch::default();
        let mut in_batch = 0;
        for (i, thread) in threads.iter().enumerate().skip(done) {
            let prepared = self.prepare(thread);
            if !matches!(prepared, Prepared::Skip) {
                let messages = self
                    .latest(&thread.thread_id, settings.recent_messages)
                    .await?;
                self.add(&mut batch, &prepared, &messages);
            }
            in_batch += 1;
            if in_batch >= 50 || i + 1 == threads.len() {
                let position = RecentCursor { since, done: i + 1 };
                batch.cursor = Some(serde_json::to_string(&position).expect("cursor"));
                self.commit("recent", &mut batch).await?;
                in_batch = 0;
            }
        }
        Ok(())
    }

    /// A thread's latest `n` messages, oldest first (pages may come back empty with a cursor).
    async fn latest(&self, thread_id: &str, n: usize) -> Result<Vec<LegacyMessage>, StageError> {
        let mut messages = Vec::new();
        let mut cursor: Option<String> = None;
        while messages.len() < n {
            let page = self
                .source
                .messages_page(thread_id, cursor.as_deref(), n - messages.len(), true)
                .await?;
            messages.extend(page.items);
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        messages.truncate(n);
        messages.reverse();
        Ok(messages)
    }

    /// Every thread with every message, in thread order; already imported messages are skipped by the
    /// database (unique legacy ids).
    async fn all(&self, cursor: Option<&str>) -> Result<(), StageError> {
        let mut at: AllCursor = match cursor {
            Some(c) => serde_json::from_str(c)
                .map_err(|e| StageError::Invalid(format!("stored cursor {c:?}: {e}")))?,
            None => AllCursor::default(),
        };
        if at.done {
            return Ok(());
        }
        let mut batch = ImportBatch::default();
        let mut in_batch = (0usize, 0usize);
        loop {
            let page = self
                .source
                .threads_page(&self.legacy_ref, at.page.as_deref(), THREADS_PAGE)
                .await?;
            // Where to go on in this page: the named thread where it is now (threads may have come or gone
            // since the cursor was written), else the position; its message cursor only for that thread.
            let (start, mut resume_messages) = match &at.thread {
                Some(id) => match page.items.iter().position(|t| &t.thread_id == id) {
                    Some(found) => (found, at.messages.take()),
                    None => (at.skip, None),
                },
                None => (at.skip, None),
            };
            for (i, thread) in page.items.iter().enumerate().skip(start) {
                let prepared = self.prepare(thread);
                let mut messages_cursor = if i == start {
                    resume_messages.take()
                } else {
                    None
                };
                loop {
                    if matches!(prepared, Prepared::Skip) {
                        messages_cursor = None;
                    } else {
                        let messages = self
                            .source
                            .messages_page(
                                &thread.thread_id,
                                messages_cursor.as_deref(),
                                MESSAGES_PAGE,
                                false,
                            )
                            .await?;
                        in_batch.0 += messages.items.len();
                        self.add(&mut batch, &prepared, &messages.items);
                        messages_cursor = messages.next;
                    }
                    let position = match &messages_cursor {
                        Some(m) => AllCursor {
                            page: at.page.clone(),
                            skip: i,
                            thread: Some(thread.thread_id.clone()),
                            messages: Some(m.clone()),
                            done: false,
                        },
                        None => AllCursor {
                            page: at.page.clone(),
                            skip: i + 1,
                            thread: page.items.get(i + 1).map(|t| t.thread_id.clone()),
                            messages: None,
                            done: false,
                        },
                    };
                    batch.cursor = Some(serde_json::to_string(&position).expect("cursor"));
                    if in_batch.0 >= BATCH_MESSAGES || in_batch.1 >= BATCH_THREADS {
                        self.commit("all", &mut batch).await?;
                        in_batch = (0, 0);
                        self.yield_to_waiting().await?;
                    }
                    if messages_cursor.is_none() {
                        break;
                    }
                }
                in_batch.1 += 1;
            }
            at = AllCursor {
                page: page.next.clone(),
                done: page.next.is_none(),
                ..AllCursor::default()
            };
            batch.cursor = Some(serde_json::to_string(&at).expect("cursor"));
            if page.next.is_none() {
                break;
            }
        }
        self.commit("all", &mut batch).await
    }
}

fn message(m: &LegacyMessage) -> ImportMessage {
    ImportMessage {
        legacy_message_id: m.message_id.clone(),
        message_type: if m.direction == "out" {
            "outgoing"
        } else {
            "incoming"
        },
        content: m.body.clone(),
        status: match m.status.as_deref() {
            Some("delivered") => "delivered",
            Some("read") => "read",
            Some("failed") => "failed",
            _ => "sent",
        },
        starred: m.starred,
        created_at: millis(m.sent_at),
        media: m
            .media
            .iter()
            .map(|f| ImportMedia {
                url: f.url.clone(),
                file_type: file_type(f.mime_type.as_deref()),
                content_type: f.mime_type.clone(),
                file_name: f.filename.clone(),
            })
            .collect(),
    }
}

fn millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_else(Utc::now)
}

fn file_type(mime: Option<&str>) -> &'static str {
    match mime.and_then(|m| m.split('/').next()) {
        Some("image") => "image",
        Some("audio") => "audio",
        Some("video") => "video",
        _ => "file",
    }
}

#[async_trait::async_trait]
impl crate::jobs::LeasedJob for AccountImport {
    async fn claim(
        ferry: &Ferry,
        owner: &str,
        token: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<Self>, StoreError> {
        ferry
            .store
            .claim_account_import(owner, token, now, until)
            .await
    }

    async fn renew(
        &self,
        ferry: &Ferry,
        token: &str,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        ferry
            .store
            .renew_account_import_lease(self.id, token, until)
            .await
    }

    async fn run(self, ferry: &Ferry, ctx: RunContext) -> Result<Outcome, StoreError> {
        if self.attempts > 1 {
            tracing::warn!(
                id = self.id,
                attempts = self.attempts,
                stage = %self.stage,
                "resuming an account import"
            );
        }
        Ok(run(ferry, self, ctx).await)
    }
}
