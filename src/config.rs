//! The one typed configuration. Every option is a flag and a `FERRY_*` environment variable.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::webhooks::outbound::AllowedUrls;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, clap::Args)]
pub struct Config {
    /// `postgres://…` for PostgreSQL, `sqlite://…` for a SQLite file; default: DATA_DIR/ferry.db
    #[arg(
        long,
        env = "FERRY_DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    pub database_url: Option<String>,

    /// Where the embedded mode keeps its database, attachments and secret key
    #[arg(
        long,
        env = "FERRY_DATA_DIR",
        default_value = "./ferry-data",
        global = true
    )]
    pub data_dir: PathBuf,

    /// Address the HTTP server listens on
    #[arg(
        long,
        env = "FERRY_BIND",
        default_value = "127.0.0.1:3000",
        global = true
    )]
    pub bind: SocketAddr,

    /// 32-byte key (base64 or hex) encrypting secrets at rest; default: DATA_DIR/secret.key, created once
    #[arg(long, env = "FERRY_SECRET_KEY", global = true, hide_env_values = true)]
    pub secret_key: Option<String>,

    /// Redis for the shared token cache (multi-node deployments)
    #[arg(long, env = "FERRY_REDIS_URL", global = true, hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Prefix of ferry's Redis keys and invalidation channel (several installations on one Redis)
    #[arg(
        long,
        env = "FERRY_REDIS_PREFIX",
        default_value = "ferry",
        global = true
    )]
    pub redis_prefix: String,

    /// The URL providers reach this server at; webhook URLs are built from it
    #[arg(long, env = "FERRY_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,

    /// Behind a reverse proxy you run: sign-in throttling takes the client's address from the last
    /// `X-Forwarded-For` entry (the one the proxy appended) instead of the connection's peer
    #[arg(
        long = "trust-forwarded-for",
        env = "FERRY_TRUST_FORWARDED_FOR",
        default_value_t = false,
        global = true
    )]
    pub trust_forwarded_for: bool,

    /// Log filter, e.g. `info` or `ferry=debug,sqlx=warn`
    #[arg(long, env = "FERRY_LOG", default_value = "info", global = true)]
    pub log: String,

    /// Log lines as text or json
    #[arg(
        long,
        env = "FERRY_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,

    /// Seconds a worker's lease on a migration lasts without a heartbeat
    #[arg(long, env = "FERRY_LEASE_SECONDS", default_value_t = 30, global = true)]
    pub lease_seconds: u64,

    /// Seconds a node keeps a webhook token route in its own cache: how long a change made on another node can
    /// go unseen when Redis is not there to announce it
    #[arg(
        long,
        env = "FERRY_ROUTE_CACHE_SECONDS",
        default_value_t = 60,
        global = true
    )]
    pub route_cache_seconds: u64,

    /// Seconds a stopping server or worker (SIGTERM, Ctrl-C) waits for in-flight requests and the current
    /// batch before it exits anyway
    #[arg(
        long,
        env = "FERRY_SHUTDOWN_SECONDS",
        default_value_t = 30,
        global = true
    )]
    pub shutdown_seconds: u64,

    /// Client connections served at once. Past it, a reserve of a few more still answers `/healthz` and
    /// `/readyz` (everything else 503 `busy`, then closed), and connections beyond that are closed at once
    #[arg(
        long,
        env = "FERRY_MAX_CONNECTIONS",
        default_value_t = 1024,
        value_parser = clap::value_parser!(u32).range(1..),
        global = true
    )]
    pub max_connections: u32,

    /// Seconds a client has to send a request's headers; an idle keep-alive connection is closed after as long
    #[arg(
        long,
        env = "FERRY_HEADER_READ_TIMEOUT_SECONDS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub header_read_timeout_seconds: u64,

    /// Seconds a client has to send a whole request body once its headers are in; a slower one is answered 408
    #[arg(
        long,
        env = "FERRY_BODY_READ_TIMEOUT_SECONDS",
        default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub body_read_timeout_seconds: u64,

    /// Rows an inbox migration touches per batch transaction (about)
    #[arg(
        long,
        env = "FERRY_MIGRATION_BATCH_ROWS",
        default_value_t = 5000,
        global = true
    )]
    pub migration_batch_rows: i64,

    /// Throttle for inbox migrations, rows per second (unset: as fast as the database goes)
    #[arg(long, env = "FERRY_MIGRATION_MAX_ROWS_PER_SECOND", global = true)]
    pub migration_max_rows_per_second: Option<u64>,

    /// Largest accepted request body, in bytes
    #[arg(long, env = "FERRY_MAX_BODY_BYTES", default_value_t = 1024 * 1024, global = true)]
    pub max_body_bytes: usize,

    /// Progress event streams one migration may have open on this node (more are answered 503)
    #[arg(
        long,
        env = "FERRY_EVENT_STREAMS_PER_MIGRATION",
        default_value_t = 50,
        global = true
    )]
    pub event_streams_per_migration: usize,

    /// Progress event streams this node serves at once, over all migrations (more are answered 503)
    #[arg(
        long,
        env = "FERRY_EVENT_STREAMS_PER_NODE",
        default_value_t = 500,
        global = true
    )]
    pub event_streams_per_node: usize,

    /// Largest accepted webhook body, in bytes (Evolution with base64 inlines whole files; Meta sends up to 3 MB)
    #[arg(long, env = "FERRY_WEBHOOK_MAX_BODY_BYTES", default_value_t = 32 * 1024 * 1024, global = true)]
    pub webhook_max_body_bytes: usize,

    /// Memory that webhook bodies being read and parsed may hold at once, in bytes (more waits its turn)
    #[arg(long, env = "FERRY_WEBHOOK_BODY_MEMORY_BYTES", default_value_t = 256 * 1024 * 1024, global = true)]
    pub webhook_body_memory_bytes: usize,

    /// The installation's Evolution API server, for integrations without their own `api_url` (cut-over, media)
    #[arg(long, env = "FERRY_EVOLUTION_API_URL", global = true)]
    pub evolution_api_url: Option<String>,

    /// Its global API key, for integrations without their own
    #[arg(
        long,
        env = "FERRY_EVOLUTION_API_KEY",
        global = true,
        hide_env_values = true
    )]
    pub evolution_api_key: Option<String>,

    /// First retry delay of a failed media download, doubled per attempt (capped at an hour)
    #[arg(
        long,
        env = "FERRY_MEDIA_RETRY_BASE_MS",
        default_value_t = 30_000,
        global = true
    )]
    pub media_retry_base_ms: u64,

    /// Base URLs that media downloads and Evolution API calls may reach besides the providers' own hosts
    /// (comma-separated, e.g. `http://evolution:8080`): scheme, host, port and path prefix must match. These may
    /// be on loopback or private networks; link-local and cloud metadata addresses are never reached
    #[arg(
        long,
        env = "FERRY_MEDIA_ALLOWED_URLS",
        default_value_t = AllowedUrls::default(),
        hide_default_value = true,
        global = true
    )]
    pub media_allowed_urls: AllowedUrls,

    /// Largest media file downloaded, in bytes (WhatsApp's own limit for documents is 100 MB)
    #[arg(
        long,
        env = "FERRY_MEDIA_MAX_BYTES",
        default_value_t = 100 * 1024 * 1024,
        global = true
    )]
    pub media_max_bytes: u64,

    /// Where attachments are kept: s3://bucket[/prefix] (any S3-compatible service) or file:///path; default
    /// DATA_DIR/attachments
    #[arg(long, env = "FERRY_ATTACHMENTS_URL", global = true)]
    pub attachments_url: Option<String>,

    #[command(flatten)]
    pub s3: S3Config,

    #[command(flatten)]
    pub legacy: LegacyConfig,
}

/// The S3-compatible attachment bucket. Unset values fall back to the AWS_* variables (and instance roles).
#[derive(Clone, Default, clap::Args)]
pub struct S3Config {
    /// Endpoint of an S3-compatible service (MinIO, Ceph, moto); default: AWS
    #[arg(long = "s3-endpoint", env = "FERRY_S3_ENDPOINT", global = true)]
    pub endpoint: Option<String>,
    /// Region of the bucket
    #[arg(long = "s3-region", env = "FERRY_S3_REGION", global = true)]
    pub region: Option<String>,
    /// The access key id of the S3 bucket (with FERRY_S3_SECRET_ACCESS_KEY)
    #[arg(
        long = "s3-access-key-id",
        env = "FERRY_S3_ACCESS_KEY_ID",
        global = true,
        hide_env_values = true
    )]
    pub access_key_id: Option<String>,
    /// The secret access key of the S3 bucket
    #[arg(
        long = "s3-secret-access-key",
        env = "FERRY_S3_SECRET_ACCESS_KEY",
        global = true,
        hide_env_values = true
    )]
    pub secret_access_key: Option<String>,
}

/// Capability C: where the legacy system is and how account imports read it (`reference/legacy-source.md`).
#[derive(Clone, clap::Args)]
pub struct LegacyConfig {
    /// Base URL of the legacy HTTP API (account existence, channel configs)
    #[arg(long = "legacy-api-url", env = "FERRY_LEGACY_API_URL", global = true)]
    pub api_url: Option<String>,

    /// Sent as `Authorization: Bearer …` to the legacy HTTP API
    #[arg(
        long = "legacy-api-token",
        env = "FERRY_LEGACY_API_TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub api_token: Option<String>,

    /// Seconds before a legacy API request counts as an outage
    #[arg(
        long = "legacy-api-timeout",
        env = "FERRY_LEGACY_API_TIMEOUT_SECONDS",
        default_value_t = 10,
        global = true
    )]
    pub api_timeout_seconds: u64,

    /// Base64 of the 32-byte AES-256-GCM key of the config envelopes; default: DATA_DIR/legacy-config.key if present
    #[arg(
        long = "legacy-config-key",
        env = "FERRY_LEGACY_CONFIG_KEY",
        global = true,
        hide_env_values = true
    )]
    pub config_key: Option<String>,

    /// DynamoDB endpoint URL (unset: the AWS default for the region)
    #[arg(
        long = "legacy-dynamodb-endpoint",
        env = "FERRY_LEGACY_DYNAMODB_ENDPOINT",
        global = true
    )]
    pub dynamodb_endpoint: Option<String>,

    /// The AWS region of the legacy DynamoDB tables
    #[arg(
        long = "legacy-dynamodb-region",
        env = "FERRY_LEGACY_DYNAMODB_REGION",
        default_value = "us-east-1",
        global = true
    )]
    pub dynamodb_region: String,

    /// The legacy DynamoDB table of threads
    #[arg(
        long = "legacy-threads-table",
        env = "FERRY_LEGACY_THREADS_TABLE",
        default_value = "threads",
        global = true
    )]
    pub threads_table: String,

    /// The legacy DynamoDB table of messages
    #[arg(
        long = "legacy-messages-table",
        env = "FERRY_LEGACY_MESSAGES_TABLE",
        default_value = "messages",
        global = true
    )]
    pub messages_table: String,

    /// HS256 secret of the legacy media service's bearer tokens
    #[arg(
        long = "legacy-media-jwt-secret",
        env = "FERRY_LEGACY_MEDIA_JWT_SECRET",
        global = true,
        hide_env_values = true
    )]
    pub media_jwt_secret: Option<String>,

    /// Read an export directory instead of the API and DynamoDB
    #[arg(
        long = "legacy-export-dir",
        env = "FERRY_LEGACY_EXPORT_DIR",
        global = true
    )]
    pub export_dir: Option<PathBuf>,

    /// The recent stage's window, in days
    #[arg(
        long = "import-recent-days",
        env = "FERRY_IMPORT_RECENT_DAYS",
        default_value_t = 30,
        global = true
    )]
    pub recent_days: u32,

    /// Most threads the recent stage imports
    #[arg(
        long = "import-recent-threads",
        env = "FERRY_IMPORT_RECENT_THREADS",
        default_value_t = 500,
        global = true
    )]
    pub recent_threads: usize,

    /// Latest messages per thread the recent stage imports
    #[arg(
        long = "import-recent-messages",
        env = "FERRY_IMPORT_RECENT_MESSAGES",
        default_value_t = 20,
        global = true
    )]
    pub recent_messages: usize,

    /// Allow `POST …/migrate?force=true` (deletes what earlier imports created, then imports again)
    #[arg(
        long = "allow-force-remigration",
        env = "FERRY_ALLOW_FORCE_REMIGRATION",
        default_value_t = false,
        global = true
    )]
    pub allow_force_remigration: bool,

    /// First delay of the automatic repair of a failed history import, doubled per attempt (capped at a day)
    #[arg(
        long = "import-repair-base-seconds",
        env = "FERRY_IMPORT_REPAIR_BASE_SECONDS",
        default_value_t = 300,
        global = true
    )]
    pub repair_base_seconds: u64,

    /// Throttle for account imports, messages per second (unset: as fast as the database goes)
    #[arg(
        long = "import-max-messages-per-second",
        env = "FERRY_IMPORT_MAX_MESSAGES_PER_SECOND",
        global = true
    )]
    pub max_messages_per_second: Option<u64>,
}

impl Default for LegacyConfig {
    fn default() -> Self {
        Self {
            api_url: None,
            api_token: None,
            api_timeout_seconds: 10,
            config_key: None,
            dynamodb_endpoint: None,
            dynamodb_region: "us-east-1".into(),
            threads_table: "threads".into(),
            messages_table: "messages".into(),
            media_jwt_secret: None,
            export_dir: None,
            recent_days: 30,
            recent_threads: 500,
            recent_messages: 20,
            allow_force_remigration: false,
            repair_base_seconds: 300,
            max_messages_per_second: None,
        }
    }
}

impl Config {
    /// A configuration for tests and tools: everything under `data_dir`, port 0.
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            database_url: None,
            data_dir: data_dir.into(),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            secret_key: None,
            redis_url: None,
            redis_prefix: "ferry".into(),
            public_url: None,
            trust_forwarded_for: false,
            log: "info".into(),
            log_format: LogFormat::Text,
            max_body_bytes: 1024 * 1024,
            event_streams_per_migration: 50,
            event_streams_per_node: 500,
            webhook_max_body_bytes: 32 * 1024 * 1024,
            webhook_body_memory_bytes: 256 * 1024 * 1024,
            media_retry_base_ms: 30_000,
            media_allowed_urls: AllowedUrls::default(),
            media_max_bytes: 100 * 1024 * 1024,
            evolution_api_url: None,
            evolution_api_key: None,
            lease_seconds: 30,
            shutdown_seconds: 30,
            max_connections: 1024,
            header_read_timeout_seconds: 10,
            body_read_timeout_seconds: 60,
            route_cache_seconds: 60,
            attachments_url: None,
            s3: S3Config::default(),
            migration_batch_rows: 5000,
            migration_max_rows_per_second: None,
            legacy: LegacyConfig::default(),
        }
    }

    /// The database URL in effect: the configured one, or the embedded SQLite file.
    pub fn effective_database_url(&self) -> String {
        match &self.database_url {
            Some(url) if !url.trim().is_empty() => url.trim().to_owned(),
            _ => format!("sqlite://{}", self.data_dir.join("ferry.db").display()),
        }
    }

    pub fn attachments_dir(&self) -> PathBuf {
        self.data_dir.join("attachments")
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.bind),
        }
    }
}

/// A URL with its password replaced, for logs and `config show`.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("****"));
            url.to_string()
        }
        _ => raw.to_owned(),
    }
}

impl Config {
    /// The effective settings by environment variable, secrets redacted: what `ferry config show` prints.
    pub fn shown(&self) -> Vec<(&'static str, String)> {
        let secret = |v: &Option<String>| match v {
            Some(_) => "**** (set)".to_owned(),
            None => "(not set)".to_owned(),
        };
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "(not set)".into());
        let num = |v: Option<u64>| v.map_or("(no limit)".to_owned(), |n| n.to_string());
        let l = &self.legacy;
        vec![
            (
                "FERRY_DATABASE_URL",
                redact_url(&self.effective_database_url()),
            ),
            ("FERRY_DATA_DIR", self.data_dir.display().to_string()),
            ("FERRY_BIND", self.bind.to_string()),
            (
                "FERRY_SECRET_KEY",
                match &self.secret_key {
                    Some(_) => "**** (set)".into(),
                    None => format!("(file {})", self.data_dir.join("secret.key").display()),
                },
            ),
            (
                "FERRY_REDIS_URL",
                self.redis_url
                    .as_deref()
                    .map_or("(not set)".into(), redact_url),
            ),
            ("FERRY_REDIS_PREFIX", self.redis_prefix.clone()),
            ("FERRY_PUBLIC_URL", self.public_url()),
            (
                "FERRY_TRUST_FORWARDED_FOR",
                self.trust_forwarded_for.to_string(),
            ),
            ("FERRY_LOG", self.log.clone()),
            (
                "FERRY_LOG_FORMAT",
                format!("{:?}", self.log_format).to_lowercase(),
            ),
            ("FERRY_LEASE_SECONDS", self.lease_seconds.to_string()),
            ("FERRY_SHUTDOWN_SECONDS", self.shutdown_seconds.to_string()),
            ("FERRY_MAX_CONNECTIONS", self.max_connections.to_string()),
            (
                "FERRY_HEADER_READ_TIMEOUT_SECONDS",
                self.header_read_timeout_seconds.to_string(),
            ),
            (
                "FERRY_BODY_READ_TIMEOUT_SECONDS",
                self.body_read_timeout_seconds.to_string(),
            ),
            (
                "FERRY_ROUTE_CACHE_SECONDS",
                self.route_cache_seconds.to_string(),
            ),
            (
                "FERRY_MIGRATION_BATCH_ROWS",
                self.migration_batch_rows.to_string(),
            ),
            (
                "FERRY_EVENT_STREAMS_PER_MIGRATION",
                self.event_streams_per_migration.to_string(),
            ),
            (
                "FERRY_EVENT_STREAMS_PER_NODE",
                self.event_streams_per_node.to_string(),
            ),
            (
                "FERRY_MIGRATION_MAX_ROWS_PER_SECOND",
                num(self.migration_max_rows_per_second),
            ),
            ("FERRY_MAX_BODY_BYTES", self.max_body_bytes.to_string()),
            (
                "FERRY_WEBHOOK_MAX_BODY_BYTES",
                self.webhook_max_body_bytes.to_string(),
            ),
            (
                "FERRY_WEBHOOK_BODY_MEMORY_BYTES",
                self.webhook_body_memory_bytes.to_string(),
            ),
            ("FERRY_EVOLUTION_API_URL", opt(&self.evolution_api_url)),
            ("FERRY_EVOLUTION_API_KEY", secret(&self.evolution_api_key)),
            (
                "FERRY_MEDIA_RETRY_BASE_MS",
                self.media_retry_base_ms.to_string(),
            ),
            (
                "FERRY_MEDIA_ALLOWED_URLS",
                if self.media_allowed_urls.0.is_empty() {
                    "(none: the providers' hosts only)".into()
                } else {
                    self.media_allowed_urls.to_string()
                },
            ),
            ("FERRY_MEDIA_MAX_BYTES", self.media_max_bytes.to_string()),
            (
                "FERRY_ATTACHMENTS_URL",
                self.attachments_url
                    .clone()
                    .unwrap_or_else(|| format!("(folder {})", self.attachments_dir().display())),
            ),
            ("FERRY_S3_ENDPOINT", opt(&self.s3.endpoint)),
            ("FERRY_S3_REGION", opt(&self.s3.region)),
            ("FERRY_S3_ACCESS_KEY_ID", secret(&self.s3.access_key_id)),
            (
                "FERRY_S3_SECRET_ACCESS_KEY",
                secret(&self.s3.secret_access_key),
            ),
            ("FERRY_LEGACY_API_URL", opt(&l.api_url)),
            ("FERRY_LEGACY_API_TOKEN", secret(&l.api_token)),
            (
                "FERRY_LEGACY_API_TIMEOUT_SECONDS",
                l.api_timeout_seconds.to_string(),
            ),
            ("FERRY_LEGACY_CONFIG_KEY", secret(&l.config_key)),
            ("FERRY_LEGACY_DYNAMODB_ENDPOINT", opt(&l.dynamodb_endpoint)),
            ("FERRY_LEGACY_DYNAMODB_REGION", l.dynamodb_region.clone()),
            ("FERRY_LEGACY_THREADS_TABLE", l.threads_table.clone()),
            ("FERRY_LEGACY_MESSAGES_TABLE", l.messages_table.clone()),
            ("FERRY_LEGACY_MEDIA_JWT_SECRET", secret(&l.media_jwt_secret)),
            (
                "FERRY_LEGACY_EXPORT_DIR",
                l.export_dir
                    .as_ref()
                    .map_or("(not set)".into(), |d| d.display().to_string()),
            ),
            ("FERRY_IMPORT_RECENT_DAYS", l.recent_days.to_string()),
            ("FERRY_IMPORT_RECENT_THREADS", l.recent_threads.to_string()),
            (
                "FERRY_IMPORT_RECENT_MESSAGES",
                l.recent_messages.to_string(),
            ),
            (
                "FERRY_ALLOW_FORCE_REMIGRATION",
                l.allow_force_remigration.to_string(),
            ),
            (
                "FERRY_IMPORT_REPAIR_BASE_SECONDS",
                l.repair_base_seconds.to_string(),
            ),
            (
                "FERRY_IMPORT_MAX_MESSAGES_PER_SECOND",
                num(l.max_messages_per_second),
            ),
        ]
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &redact_url(&self.effective_database_url()))
            .field("data_dir", &self.data_dir)
            .field("bind", &self.bind)
            .field("secret_key", &self.secret_key.as_ref().map(|_| "****"))
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("public_url", &self.public_url)
            .field("log", &self.log)
            .field("log_format", &self.log_format)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_to_the_embedded_sqlite_file_and_redacts_secrets() {
        let mut c = Config::for_data_dir("/tmp/x");
        assert_eq!(c.effective_database_url(), "sqlite:///tmp/x/ferry.db");
        c.database_url = Some("postgres://ferry:hunter2@db/ferry".into());
        c.secret_key = Some("c2VjcmV0".into());
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("c2VjcmV0"),
            "{shown}"
        );
        assert!(shown.contains("postgres://ferry:****@db/ferry"));
    }

    #[test]
    fn config_show_names_every_variable_and_no_secret() {
        let mut c = Config::for_data_dir("/tmp/x");
        c.database_url = Some("postgres://ferry:hunter2@db/ferry".into());
        c.secret_key = Some("c2VjcmV0".into());
        c.redis_url = Some("redis://:redispass@cache:6379".into());
        c.evolution_api_key = Some("evo-key-123".into());
        c.legacy.api_token = Some("legacy-token-456".into());
        c.legacy.media_jwt_secret = Some("jwt-789".into());
        c.legacy.config_key = Some("config-key-000".into());
        let shown = c.shown();
        let text = format!("{shown:?}");
        for secret in [
            "hunter2",
            "c2VjcmV0",
            "redispass",
            "evo-key-123",
            "legacy-token-456",
            "jwt-789",
            "config-key-000",
        ] {
            assert!(!text.contains(secret), "{secret} shown: {text}");
        }
        let get = |k: &str| {
            shown
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(get("FERRY_DATABASE_URL"), "postgres://ferry:****@db/ferry");
        assert_eq!(get("FERRY_SECRET_KEY"), "**** (set)");
        assert_eq!(get("FERRY_LEGACY_API_TOKEN"), "**** (set)");
        assert_eq!(get("FERRY_LEGACY_API_URL"), "(not set)");
        // Every FERRY_ variable the flags read is listed (the flags are the source of truth).
        use clap::CommandFactory;
        #[derive(clap::Parser)]
        struct Probe {
            #[command(flatten)]
            config: Config,
        }
        for arg in Probe::command().get_arguments() {
            if let Some(env) = arg.get_env() {
                let env = env.to_string_lossy();
                assert!(
                    shown.iter().any(|(n, _)| *n == env),
                    "{env} missing from config show"
                );
            }
        }
    }
}
