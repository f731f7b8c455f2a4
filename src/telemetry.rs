//! Logging (`FERRY_LOG` filter, text or JSON lines on stderr) and the process's database statement counter.
//!
//! Every statement sqlx executes emits one `sqlx::query` event; a layer with its own filter counts them whatever
//! `FERRY_LOG` prints, so `/metrics` can show that a cached webhook route costs no statement at all.

use std::sync::atomic::{AtomicU64, Ordering};

use tracing::Subscriber;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;

static DB_STATEMENTS: AtomicU64 = AtomicU64::new(0);

/// Database statements executed by this process since it started (0 unless `init` ran).
pub fn db_statements() -> u64 {
    DB_STATEMENTS.load(Ordering::Relaxed)
}

struct StatementCounter;

/// The span `/metrics` runs its own queries in: they are not counted, so scraping does not move the count it
/// reports.
pub const UNCOUNTED_SPAN: &str = "ferry_uncounted";

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for StatementCounter {
    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        if ctx
            .event_scope(event)
            .is_some_and(|mut scope| scope.any(|span| span.name() == UNCOUNTED_SPAN))
        {
            return;
        }
        let mut housekeeping = Housekeeping(false);
        event.record(&mut housekeeping);
        if !housekeeping.0 {
            DB_STATEMENTS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// SQLite's background WAL checkpoint (a `PRAGMA` every 200 ms) is not work done for anybody's request.
struct Housekeeping(bool);

impl tracing::field::Visit for Housekeeping {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "summary" && value.starts_with("PRAGMA") {
            self.0 = true;
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "summary" {
            self.0 = format!("{value:?}")
                .trim_start_matches('"')
                .starts_with("PRAGMA");
        }
    }
}

/// The progress bar a command is drawing on stderr, if any: log lines are written around it.
static ACTIVE_BAR: std::sync::Mutex<Option<indicatif::WeakProgressBar>> =
    std::sync::Mutex::new(None);

/// A progress bar on stderr that log lines do not break: each one is written with the bar cleared, and the bar
/// is drawn again below it. Hidden when stderr is not a terminal or `visible` is false.
pub fn progress_bar(len: u64, visible: bool) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !visible || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(mut active) = ACTIVE_BAR.lock() {
        *active = Some(bar.downgrade());
    }
    bar
}

/// Collects one log line and writes it on drop: around the active progress bar if one is drawn.
pub struct LogLine(Vec<u8>);

impl std::io::Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        use std::io::Write;
        let bar = ACTIVE_BAR
            .lock()
            .ok()
            .and_then(|a| a.as_ref().and_then(indicatif::WeakProgressBar::upgrade));
        let write = || {
            let _ = std::io::stderr().lock().write_all(&self.0);
        };
        match bar {
            Some(bar) if !bar.is_finished() => bar.suspend(write),
            _ => write(),
        }
    }
}

fn log_line() -> LogLine {
    LogLine(Vec::with_capacity(256))
}

pub fn init(filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let output = tracing_subscriber::fmt::layer().with_writer(log_line);
    let output = match format {
        LogFormat::Json => output.json().boxed(),
        LogFormat::Text => output.boxed(),
    };
    // The counter sees sqlx's statements and the span that exempts some (per-layer filter: nothing else).
    let counter = StatementCounter.with_filter(
        Targets::new()
            .with_target("sqlx::query", LevelFilter::TRACE)
            .with_target(UNCOUNTED_SPAN, LevelFilter::TRACE),
    );
    // try_init: tests and embedders may have installed a subscriber already.
    let _ = tracing_subscriber::registry()
        .with(output.with_filter(filter))
        .with(counter)
        .try_init();
}
