//! `ferry bench …`: reproducible benchmarks on generated data, each on a fresh database of its own.

use clap::Subcommand;

use super::print_json;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Drive ferry's webhook routes over loopback on a fresh database: requests per second, p50/p99 latency and
    /// database statements per request for the trivial, token, legacy and duplicate scenarios.
    /// --database-url postgres://… runs on a fresh database of that server; otherwise on a temporary SQLite file.
    Webhooks {
        /// Requests per scenario
        #[arg(long, default_value_t = 20_000)]
        requests: usize,
        /// Clients sending at once (each sends its next request when the previous one is answered)
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Distinct customers the messages come from
        #[arg(long, default_value_t = 2_000)]
        contacts: usize,
        /// HTTP servers on the one database, the clients spread over them (several nodes)
        #[arg(long, default_value_t = 1)]
        servers: usize,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Import a generated legacy account (export directory, or DynamoDB on moto) into a fresh database: seconds
    /// from /migrate to channels-migrated, recent-messages-migrated and completed, and messages per second.
    /// --database-url postgres://… runs on a fresh database of that server; otherwise on a temporary SQLite file.
    AccountImport {
        /// Legacy threads to generate
        #[arg(long, default_value_t = 10_000)]
        threads: usize,
        /// Messages per generated thread
        #[arg(long, default_value_t = 20)]
        messages_per_thread: usize,
        /// Where the legacy data is read from
        #[arg(long, value_enum, default_value = "export")]
        source: crate::bench::LegacySourceKind,
        /// A running DynamoDB-compatible server (default: start moto_server on a free port)
        #[arg(long)]
        dynamodb_endpoint: Option<String>,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Migrate an Evolution inbox into a Cloud inbox on a fresh copy of generated data; with --compare, also
    /// time the unbatched lower bound, the Chatwoot-shaped lower bound and the reference statement pattern.
    /// --database-url postgres://… runs on fresh databases of that server; otherwise on temporary SQLite files.
    InboxMigration {
        /// Conversations to generate
        #[arg(long, default_value_t = 100_000)]
        conversations: u64,
        /// Messages per generated conversation (at most)
        #[arg(long)]
        messages_per_conversation: Option<i64>,
        /// Share of contacts the inboxes have in common (0 to 1)
        #[arg(long, default_value_t = 0.2)]
        merge_ratio: f64,
        /// Rows per batch
        #[arg(long)]
        batch_rows: Option<i64>,
        /// Also time the reference implementation and the floor on copies of the same data
        #[arg(long)]
        compare: bool,
        /// Migrations at once, each of its own generated account (scales the data)
        #[arg(long, default_value_t = 1)]
        migrations: usize,
        /// Workers claiming the queued migrations in parallel
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Move a generated Evolution API inbox into a Cloud inbox on Chatwoot's own tables (fresh databases of the
    /// --database-url postgres://… server): ferry against the unbatched lower bound and the reference pattern
    /// (per conversation, update it and its messages, one transaction each), with batch times and memory.
    ChatwootMigration {
        /// Conversations in the source inbox
        #[arg(long, default_value_t = 100_000)]
        conversations: i64,
        /// Messages per conversation
        #[arg(long, default_value_t = 10)]
        messages_per_conversation: i64,
        /// Message rows per batch
        #[arg(long, default_value_t = 5_000)]
        batch_rows: i64,
        /// Time the reference pattern on this many conversations only, and extrapolate
        #[arg(long)]
        reference_limit: Option<i64>,
        /// Print the result as JSON instead of text
        #[arg(long)]
        json: bool,
    },
}

pub async fn bench(database_url: Option<&str>, command: &BenchCommand) -> anyhow::Result<()> {
    // Benchmarks print JSON either way; --json is accepted for symmetry with the other commands.
    let out = match command {
        BenchCommand::Webhooks {
            requests,
            concurrency,
            contacts,
            servers,
            json: _,
        } => {
            let opts = crate::bench::WebhooksBench {
                requests: *requests,
                concurrency: *concurrency,
                contacts: (*contacts).max(1),
                servers: *servers,
            };
            crate::bench::webhooks(database_url, &opts).await?
        }
        BenchCommand::AccountImport {
            threads,
            messages_per_thread,
            source,
            dynamodb_endpoint,
            json: _,
        } => {
            let opts = crate::bench::AccountImportBench {
                threads: *threads,
                messages_per_thread: *messages_per_thread,
                source: *source,
                dynamodb_endpoint: dynamodb_endpoint.clone(),
            };
            crate::bench::account_import(database_url, &opts).await?
        }
        BenchCommand::InboxMigration {
            conversations,
            messages_per_conversation,
            merge_ratio,
            batch_rows,
            compare,
            migrations,
            workers,
            json: _,
        } => {
            let opts = crate::bench::InboxMigrationBench {
                conversations: *conversations,
                messages_per_conversation: *messages_per_conversation,
                merge_ratio: *merge_ratio,
                batch_rows: *batch_rows,
                compare: *compare,
                migrations: *migrations,
                workers: *workers,
            };
            crate::bench::inbox_migration(database_url, &opts).await?
        }
        BenchCommand::ChatwootMigration {
            conversations,
            messages_per_conversation,
            batch_rows,
            reference_limit,
            json: _,
        } => {
            let opts = crate::bench::ChatwootMigrationBench {
                conversations: *conversations,
                messages_per_conversation: *messages_per_conversation,
                batch_rows: *batch_rows,
                reference_limit: *reference_limit,
            };
            crate::bench::chatwoot_migration(database_url, &opts).await?
        }
    };
    print_json(&out);
    Ok(())
}
