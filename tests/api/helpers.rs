//! `spawn_app()`: the real application on port 0 with a fresh database of its own (a temporary SQLite file or
//! a new PostgreSQL database), plus typed request helpers and fixtures.

use std::future::Future;
use std::sync::Mutex;

use ferry::config::Config;
use ferry::datagen::{SeedOptions, SeedReport, seed_account};
use ferry::domain::ChannelType;
use ferry::domain::Role;
use ferry::secrets::SecretKey;
use ferry::services::{CreateUser, Ferry};
use ferry::startup::Application;
use libtest_mimic::Failed;
use rand::Rng;
use reqwest::StatusCode;
use serde_json::Value;
use tempfile::TempDir;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

impl Db {
    pub fn as_str(self) -> &'static str {
        match self {
            Db::Sqlite => "sqlite",
            Db::Postgres => "postgres",
        }
    }
}

pub fn postgres_admin_url() -> String {
    std::env::var("FERRY_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Databases created by this process, dropped when the run ends.
static CREATED_DATABASES: Mutex<Vec<String>> = Mutex::new(Vec::new());

pub fn postgres_available() -> Result<(), String> {
    let url = postgres_admin_url();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let connect = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(std::time::Duration::from_secs(3))
            .connect(&url);
        match connect.await {
            Ok(pool) => {
                pool.close().await;
                Ok(())
            }
            Err(e) => Err(format!(
                "no PostgreSQL at {} ({e})",
                ferry::config::redact_url(&url)
            )),
        }
    })
}

pub async fn fresh_postgres_database() -> String {
    let admin = postgres_admin_url();
    let name = format!("ferry_test_{:016x}", rand::thread_rng().r#gen::<u64>());
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&admin)
        .await
        .expect("postgres");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&pool)
        .await
        .expect("create database");
    pool.close().await;
    CREATED_DATABASES.lock().unwrap().push(name.clone());
    let mut url = url::Url::parse(&admin).unwrap();
    url.set_path(&name);
    url.to_string()
}

pub fn drop_created_databases() {
    let names = std::mem::take(&mut *CREATED_DATABASES.lock().unwrap());
    if names.is_empty() {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        if let Ok(pool) = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&postgres_admin_url())
            .await
        {
            for name in names {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&pool)
                .await;
            }
        }
    });
}

pub fn run(db: Db, test: crate::TestFn) -> Result<(), Failed> {
    run_plain(test(db))
}

pub fn run_plain(test: impl Future<Output = ()>) -> Result<(), Failed> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(test);
    Ok(())
}

pub struct TestApp {
    pub base: String,
    pub ferry: Ferry,
    pub client: reqwest::Client,
    pub database_url: String,
    pub secret_key: String,
    pub dir: TempDir,
}

pub async fn spawn_app(db: Db) -> TestApp {
    spawn_app_with(db, |_| {}).await
}

/// The Redis tests' server; `FERRY_TEST_REDIS_URL` overrides.
pub fn redis_url() -> String {
    std::env::var("FERRY_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub fn redis_available() -> Result<(), String> {
    let url = redis_url();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let ping = async {
            let client = redis::Client::open(url.as_str())?;
            let mut conn = client.get_multiplexed_async_connection().await?;
            redis::cmd("PING").query_async::<String>(&mut conn).await
        };
        match tokio::time::timeout(std::time::Duration::from_secs(3), ping).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("no Redis at {url} ({e})")),
            Err(_) => Err(format!("no Redis at {url} (timed out)")),
        }
    })
}

/// An app whose nodes share Redis under a prefix of their own (tests run in parallel on one server).
pub async fn spawn_app_with_redis(db: Db) -> TestApp {
    let prefix = format!("ferry-test-{}", rand_suffix());
    spawn_app_with(db, |config| {
        config.redis_url = Some(redis_url());
        config.redis_prefix = prefix;
    })
    .await
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub async fn spawn_app_with(db: Db, customize: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let database_url = match db {
        Db::Sqlite => format!("sqlite://{}", dir.path().join("ferry.db").display()),
        Db::Postgres => fresh_postgres_database().await,
    };
    let secret_key = SecretKey::generate().encode().to_string();
    let mut config = Config::for_data_dir(dir.path());
    config.database_url = Some(database_url.clone());
    config.secret_key = Some(secret_key.clone());
    config.max_body_bytes = 64 * 1024;
    customize(&mut config);
    if std::env::var("TEST_LOG").is_ok() {
        ferry::telemetry::init("debug,sqlx=warn", ferry::config::LogFormat::Text);
    }
    let ferry = Ferry::open(config).await.expect("open ferry");
    let app = Application::bind(ferry.clone()).await.expect("bind");
    let base = format!("http://{}", app.local_addr());
    // As `serve` does: webhook and invitation URLs name the address really listened on.
    ferry
        .public
        .record_serving(&ferry.config, ferry.store.as_ref(), &base)
        .await
        .expect("record the public URL");
    tokio::spawn(app.run_until(std::future::pending()));
    TestApp {
        base,
        ferry,
        client: reqwest::Client::new(),
        database_url,
        secret_key,
        dir,
    }
}

/// Two accounts: the first with an administrator and an agent, the second with its own administrator.
pub struct Fixture {
    pub account_id: i64,
    pub admin_token: String,
    pub agent_token: String,
    pub other_account_id: i64,
    pub other_admin_token: String,
}

impl TestApp {
    pub async fn user_with_token(
        &self,
        account_id: i64,
        email: &str,
        role: Role,
        installation_admin: bool,
    ) -> String {
        self.ferry
            .create_user(CreateUser {
                account_id,
                name: None,
                email,
                password: "correct horse battery",
                role,
                installation_admin,
            })
            .await
            .unwrap();
        self.ferry
            .create_token(email, "test")
            .await
            .unwrap()
            .1
            .expose()
            .to_owned()
    }

    pub async fn fixture(&self) -> Fixture {
        let account = self.ferry.create_account("Acme", None).await.unwrap();
        let other = self.ferry.create_account("Other Co", None).await.unwrap();
        Fixture {
            account_id: account.id,
            admin_token: self
                .user_with_token(account.id, "admin@acme.test", Role::Administrator, false)
                .await,
            agent_token: self
                .user_with_token(account.id, "agent@acme.test", Role::Agent, false)
                .await,
            other_account_id: other.id,
            other_admin_token: self
                .user_with_token(other.id, "admin@other.test", Role::Administrator, false)
                .await,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut req = self.client.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.header("api_access_token", t);
        }
        into_parts(req.send().await.expect("request")).await
    }

    pub async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .json(body);
        if let Some(t) = token {
            req = req.header("api_access_token", t);
        }
        into_parts(req.send().await.expect("request")).await
    }

    pub async fn post_json(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> (StatusCode, Value) {
        self.send_json(reqwest::Method::POST, path, token, body)
            .await
    }

    pub async fn patch_json(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> (StatusCode, Value) {
        self.send_json(reqwest::Method::PATCH, path, token, body)
            .await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        token: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        // A body the server refuses unread (413) leaves its connection unusable: never pool that one.
        let refused_unread = body.len() > self.ferry.config.max_body_bytes;
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("api_access_token", token)
            .body(body);
        if refused_unread {
            req = req.header("connection", "close");
        }
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        into_parts(req.send().await.expect("request")).await
    }

    /// Runs a statement on the app's own database: to break, repair or hand-edit what no API changes.
    pub async fn execute(&self, sql: impl Into<String>) {
        let sql = sqlx::AssertSqlSafe(sql.into());
        if self.database_url.starts_with("postgres") {
            let pool = sqlx::PgPool::connect(&self.database_url).await.unwrap();
            sqlx::query(sql).execute(&pool).await.unwrap();
        } else {
            let pool = sqlx::SqlitePool::connect(&self.database_url).await.unwrap();
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
    }

    /// The first column of every row of a query on the app's own database, as text (`CAST(… AS TEXT)` in the
    /// query where it is not text already).
    pub async fn texts(&self, sql: &str) -> Vec<Option<String>> {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        if self.database_url.starts_with("postgres") {
            let pool = sqlx::PgPool::connect(&self.database_url).await.unwrap();
            sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap()
        } else {
            let pool = sqlx::SqlitePool::connect(&self.database_url).await.unwrap();
            sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap()
        }
    }

    /// Runs this process's worker until no migration or job is left to run.
    pub async fn drain_worker(&self) {
        let worker = ferry::worker::Worker::new(self.ferry.clone());
        let (_stop, stop) = tokio::sync::watch::channel(false);
        while worker.run_once(stop.clone()).await.unwrap().is_some() {}
    }

    /// What `/metrics` answers now.
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Another node of the same installation (same database, key and Redis), in this process, answering at the
    /// returned base URL.
    pub async fn another_node(&self) -> (Ferry, String) {
        let ferry = Ferry::open((*self.ferry.config).clone())
            .await
            .expect("open node");
        let app = Application::bind(ferry.clone()).await.expect("bind");
        let base = format!("http://{}", app.local_addr());
        tokio::spawn(app.run_until(std::future::pending()));
        (ferry, base)
    }

    /// A real `ferry serve` process (no worker) on this app's database and key, answering at the returned base
    /// URL: what only a separate process can show, such as its own `/metrics` counters.
    pub async fn serve_process(&self) -> (ServeProcess, String) {
        self.serve_process_with_env(&[]).await
    }

    pub async fn serve_process_with_env(&self, env: &[(&str, &str)]) -> (ServeProcess, String) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let base = format!("http://127.0.0.1:{port}");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["serve", "--no-worker"])
            .env("FERRY_DATABASE_URL", &self.database_url)
            .env("FERRY_DATA_DIR", self.dir.path())
            .env("FERRY_SECRET_KEY", &self.secret_key)
            .env("FERRY_BIND", format!("127.0.0.1:{port}"))
            .env("FERRY_PUBLIC_URL", self.ferry.public_url())
            .env("FERRY_LOG", "warn")
            .env("FERRY_MEDIA_ALLOWED_URLS", self.allowed_urls())
            .envs(env.iter().copied())
            .spawn()
            .expect("run ferry serve");
        let process = ServeProcess(child);
        for _ in 0..200 {
            if let Ok(resp) = self.client.get(format!("{base}/healthz")).send().await
                && resp.status().is_success()
            {
                return (process, base);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("ferry serve did not answer at {base}");
    }

    /// The app's `FERRY_MEDIA_ALLOWED_URLS`, for the processes it starts.
    fn allowed_urls(&self) -> String {
        self.ferry.config.media_allowed_urls.to_string()
    }

    /// Runs the real `ferry` binary against this app's database and key.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        self.cli_with_env(args, &[])
    }

    pub fn cli_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(args)
            .env("FERRY_MEDIA_ALLOWED_URLS", self.allowed_urls())
            .envs(env.iter().copied())
            .env("FERRY_DATABASE_URL", &self.database_url)
            .env("FERRY_DATA_DIR", self.dir.path())
            .env("FERRY_SECRET_KEY", &self.secret_key)
            .env("FERRY_LOG", "warn")
            .output()
            .expect("run ferry")
    }
}

async fn into_parts(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let bytes = resp.bytes().await.expect("body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    (status, body)
}

/// Asserts the API's error shape with this status and code.
#[track_caller]
pub fn assert_error(got: &(StatusCode, Value), status: u16, code: &str) {
    assert_eq!(got.0.as_u16(), status, "body: {}", got.1);
    assert_eq!(got.1["error"]["code"], code, "body: {}", got.1);
    assert!(
        got.1["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "body: {}",
        got.1
    );
}

/// A generated account (see `ferry::datagen`) and an administrator's token for it.
pub async fn seeded(app: &TestApp, conversations: u64, merge_ratio: f64) -> (SeedReport, String) {
    let options = SeedOptions {
        conversations,
        merge_ratio,
        ..SeedOptions::default()
    };
    let report = seed_account(&app.ferry, &options).await.unwrap();
    let token = app
        .user_with_token(
            report.account_id,
            "admin@seed.test",
            Role::Administrator,
            false,
        )
        .await;
    (report, token)
}

pub fn inbox_of(report: &SeedReport, channel: ChannelType) -> i64 {
    report
        .inboxes
        .iter()
        .find(|i| i.channel_type == channel)
        .unwrap()
        .id
}

/// Killed when dropped, so a failing test leaves no server behind.
pub struct ServeProcess(pub std::process::Child);

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The sign-in page's double-submit pair: the CSRF cookie (as a `Cookie` header value) and the form's token.
pub async fn login_form(app: &TestApp) -> (String, String) {
    let page = app
        .client
        .get(format!("{}/login", app.base))
        .send()
        .await
        .unwrap();
    let cookie = page.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let body = page.text().await.unwrap();
    let pattern = "name=\"csrf_token\" value=\"";
    let at = body.find(pattern).unwrap() + pattern.len();
    let csrf = body[at..at + body[at..].find('"').unwrap()].to_owned();
    (cookie, csrf)
}

/// Two `account_rows_snapshot`s hold the same rows (the rows that differ are shown when not).
pub fn assert_same_rows(before: &[String], after: &[String], what: &str) {
    let diff: Vec<_> = before
        .iter()
        .filter(|r| !after.contains(r))
        .chain(after.iter().filter(|r| !before.contains(r)))
        .collect();
    assert!(diff.is_empty(), "rows differ {what}: {diff:#?}");
}
