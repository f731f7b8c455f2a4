use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::{Db, TestApp, spawn_app};

fn json_out(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// A failure: non-zero exit and exactly one line on stderr starting with `error:`.
#[track_caller]
fn one_line_failure(out: &std::process::Output, needle: &str) {
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line, got: {stderr}");
    assert!(lines[0].starts_with("error:"), "{stderr}");
    assert!(lines[0].contains(needle), "{needle:?} in {stderr}");
}

pub async fn cli_creates_account_user_token_and_inbox(db: Db) {
    let app = spawn_app(db).await;
    let account = json_out(&app.cli(&[
        "accounts",
        "create",
        "--name",
        "CLI Co",
        "--legacy-ref",
        "legacy-77",
        "--json",
    ]));
    let id = account["id"].as_i64().unwrap();
    assert_eq!(account["legacy_ref"], "legacy-77");
    let id_s = id.to_string();
    let user = json_out(&app.cli(&[
        "users",
        "create",
        "--account",
        &id_s,
        "--email",
        "ops@cli.test",
        "--password",
        "s3cret-password",
        "--role",
        "administrator",
        "--installation-admin",
        "--json",
    ]));
    assert_eq!(user["installation_admin"], true);
    let token =
        json_out(&app.cli(&["tokens", "create", "--email", "ops@cli.test", "--json"]))["token"]
            .as_str()
            .unwrap()
            .to_owned();
    let (status, body) = app
        .get(&format!("/api/v1/accounts/{id}"), Some(&token))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["role"], "administrator");

    let inbox = json_out(&app.cli(&[
        "inboxes",
        "create",
        "--account",
        &id_s,
        "--name",
        "Evolution",
        "--channel-type",
        "evolution",
        "--phone-number",
        "+5511988887777",
        "--config",
        r#"{"api_key": "cli-secret-key-4321"}"#,
        "--json",
    ]));
    let inbox_id = inbox["id"].as_i64().unwrap();
    let shown = app
        .get(
            &format!("/api/v1/accounts/{id}/inboxes/{inbox_id}"),
            Some(&token),
        )
        .await
        .1;
    assert_eq!(shown["provider_config"]["api_key"], "****4321");
    let listed = json_out(&app.cli(&["inboxes", "list", "--account", &id_s, "--json"]));
    assert_eq!(listed[0]["id"], inbox_id);

    // Invitations: the existing user joins a second account at once; a new email gets a link; twice is refused.
    let second = json_out(&app.cli(&["accounts", "create", "--name", "Second Co", "--json"]))["id"]
        .as_i64()
        .unwrap()
        .to_string();
    let invite = |email: &'static str, json: bool| {
        let mut args = vec![
            "users",
            "invite",
            "--account",
            &second,
            "--email",
            email,
            "--role",
            "agent",
        ];
        if json {
            args.push("--json");
        }
        app.cli(&args)
    };
    let added = json_out(&invite("OPS@cli.test", true));
    assert_eq!(
        (added["added"].clone(), added["user_id"].clone()),
        (Value::Bool(true), user["id"].clone())
    );
    let (_, seen) = app
        .get(&format!("/api/v1/accounts/{second}"), Some(&token))
        .await;
    assert_eq!(
        seen["role"], "agent",
        "the same token now opens the second account"
    );
    one_line_failure(
        &invite("ops@cli.test", false),
        "already a member of Second Co (agent)",
    );
    let text = invite("new@cli.test", false);
    let printed = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.status.success(),
        "{}",
        String::from_utf8_lossy(&text.stderr)
    );
    let link = printed.lines().last().unwrap();
    let warned = String::from_utf8_lossy(&text.stderr);
    assert!(
        warned.starts_with(&format!(
            "warning: this link names {} (a loopback address)",
            app.base
        )),
        "{warned}"
    );
    assert!(
        link.starts_with(&format!("{}/invite/", app.base)),
        "{printed}"
    );
    let page = app.client.get(link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Join Second Co"));
    one_line_failure(&invite("not-an-email", false), "email");
}

pub async fn cli_failures_are_one_line_and_write_nothing(db: Db) {
    let app: TestApp = spawn_app(db).await;
    let account = json_out(&app.cli(&["accounts", "create", "--name", "Strict", "--json"]))["id"]
        .as_i64()
        .unwrap()
        .to_string();
    let user = |account: &str, password: &str, role: &str| {
        let args = [
            "users",
            "create",
            "--account",
            account,
            "--email",
            "a@b.test",
            "--password",
            password,
            "--role",
            role,
        ];
        args.map(str::to_owned).to_vec()
    };
    let inbox = |channel: &str, extra: &[&str]| {
        let mut args = [
            "inboxes",
            "create",
            "--account",
            &account,
            "--name",
            "X",
            "--channel-type",
            channel,
        ]
        .map(str::to_owned)
        .to_vec();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (user(&account, "long-password", "boss"), "role"),
        (
            user("999999", "long-password", "agent"),
            "account not found",
        ),
        (user(&account, "short", "agent"), "password"),
        (
            ["tokens", "create", "--email", "nobody@b.test"]
                .map(str::to_owned)
                .to_vec(),
            "user not found",
        ),
        (
            ["accounts", "create", "--name", "  "]
                .map(str::to_owned)
                .to_vec(),
            "name",
        ),
        (inbox("fax", &[]), "channel type"),
        (inbox("api", &["--config", "{bad"]), "--config"),
    ];
    for (args, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        one_line_failure(&app.cli(&args), needle);
    }
    let mut bad_key = app.cli(&["inboxes", "list", "--account", &account]);
    assert!(bad_key.status.success());
    bad_key = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["inboxes", "list", "--account", &account])
        .env("FERRY_DATABASE_URL", &app.database_url)
        .env("FERRY_SECRET_KEY", "too-short")
        .output()
        .unwrap();
    one_line_failure(&bad_key, "FERRY_SECRET_KEY");
    let account_id: i64 = account.parse().unwrap();
    assert!(
        app.ferry
            .store
            .list_inboxes(account_id)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        app.ferry
            .store
            .find_user_by_email("a@b.test")
            .await
            .unwrap()
            .is_none()
    );
}

/// `ferry serve --demo` on an empty data dir: prints a token that works; a second start keeps the data.
pub async fn serve_demo_prints_a_working_token_and_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let (url, token, first_output, mut first) = start_demo(dir.path()).await;
    // A second server on the same data directory is refused with the first one's pid.
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("FERRY_DATA_DIR", dir.path())
        .env_remove("FERRY_DATABASE_URL")
        .env("FERRY_LOG", "warn")
        .output()
        .unwrap();
    one_line_failure(&second, "another ferry serve (pid ");
    // The server stored where it listens: the CLI prints webhook URLs on it, not on the default address.
    let tokens = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["integrations", "tokens", "--json"])
        .env("FERRY_DATA_DIR", dir.path())
        .env_remove("FERRY_DATABASE_URL")
        .env_remove("FERRY_PUBLIC_URL")
        .env("FERRY_LOG", "warn")
        .output()
        .unwrap();
    let tokens: Value = serde_json::from_slice(&tokens.stdout).unwrap();
    let urls: Vec<&str> = tokens
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["webhook_url"].as_str())
        .collect();
    assert!(
        !urls.is_empty()
            && urls
                .iter()
                .all(|u| u.starts_with(&format!("{url}/webhooks/"))),
        "{url}: {urls:?}"
    );
    let client = reqwest::Client::new();
    let inboxes: Value = client
        .get(format!("{url}/api/v1/accounts/1/inboxes"))
        .header("api_access_token", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let data = inboxes["data"].as_array().unwrap();
    assert_eq!(data.len(), 5, "{inboxes}");
    assert_eq!(data[0]["channel_type"], "evolution");
    assert_eq!(data[0]["conversations_count"], 300);
    assert!(
        first_output.contains("demo account 1 created"),
        "{first_output}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("secret.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // The demo's legacy export: account 2 imports through every stage from the browser's API.
    assert!(
        first_output.contains("account 2 (Padaria Estrela (legacy)) waits in the legacy export"),
        "{first_output}"
    );
    let started = client
        .post(format!("{url}/api/v1/accounts/2/migrate"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    let mut view = Value::Null;
    for _ in 0..600 {
        view = client
            .get(format!("{url}/api/v1/accounts/2/migration-status"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if view["status"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(view["counts"]["channels"], 2);
    assert_eq!(view["counts"]["threads"], 400);
    assert_eq!(view["counts"]["messages"], 400 * 25);

    // Restarted on the same data (the first one stopped: two are refused, as above).
    first.kill().await.unwrap();
    let (url, again, second_output, _second) = start_demo(dir.path()).await;
    assert_eq!(again, token);
    assert!(
        second_output.contains("using the existing data"),
        "{second_output}"
    );
    // The restarted demo knows account 2 was imported.
    assert!(
        second_output
            .contains("account 2 (Padaria Estrela (legacy)) was imported from the legacy export")
            && !second_output.contains("account 2 (Padaria Estrela (legacy)) waits"),
        "{second_output}"
    );
    let inboxes: Value = client
        .get(format!("{url}/api/v1/accounts/1/inboxes"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(inboxes["data"].as_array().unwrap().len(), 5);
    let none: Value = client
        .get(format!("{url}/api/v1/accounts/4"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(none["error"]["code"], "not_found", "no other demo account");
}

/// Starts the demo server, returns its URL, the printed token, everything printed up to "listening", and the
/// process (killed when dropped).
pub(crate) async fn start_demo(
    data_dir: &std::path::Path,
) -> (String, String, String, tokio::process::Child) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["serve", "--demo", "--bind", "127.0.0.1:0"])
        .env("FERRY_DATA_DIR", data_dir)
        .env_remove("FERRY_DATABASE_URL")
        .env_remove("FERRY_SECRET_KEY")
        .env("FERRY_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut output = String::new();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            output.push_str(&line);
            output.push('\n');
            if let Some(url) = line.strip_prefix("ferry is listening on ") {
                return url.trim().to_owned();
            }
        }
        panic!("server exited: {output}");
    };
    let url = tokio::time::timeout(Duration::from_secs(120), read)
        .await
        .expect("demo server starts");
    let token = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("API token: "))
        .unwrap_or_else(|| panic!("no token in: {output}"))
        .trim()
        .to_owned();
    // Keep reading what it prints, or it would block on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (url, token, output, child)
}

/// Text as a terminal would show it: escape sequences dropped, each line only what follows its last carriage
/// return (what was drawn over is gone).
fn screen_lines(raw: &str) -> Vec<String> {
    let mut plain = String::new();
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // Parameters, then one final byte in @..~.
                for n in chars.by_ref() {
                    if ('@'..='~').contains(&n) {
                        break;
                    }
                }
            }
            continue;
        }
        plain.push(c);
    }
    // A terminal's line end is "\r\n": the carriage return there draws over nothing.
    plain
        .replace("\r\n", "\n")
        .split('\n')
        .map(|l| l.rsplit('\r').next().unwrap_or("").to_owned())
        .collect()
}

/// A migration followed in a terminal (a pty from `script`) with debug logging: every log line starts its own
/// line, none is glued to the bar, and the bar was drawn.
pub async fn log_lines_do_not_break_the_progress_bar(db: Db) {
    let app = spawn_app(db).await;
    let s = crate::migrations::scenario(&app).await;
    let command = format!(
        "{} migrate inbox --account {} --from {} --to {} --yes --batch-rows 10 --max-rows-per-second 10",
        env!("CARGO_BIN_EXE_ferry"),
        s.account_id,
        s.evolution,
        s.cloud
    );
    let out = std::process::Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .env("FERRY_DATABASE_URL", &app.database_url)
        .env("FERRY_DATA_DIR", app.dir.path())
        .env("FERRY_SECRET_KEY", &app.secret_key)
        .env("FERRY_LOG", "info,ferry=debug")
        .env("TERM", "xterm")
        .output()
        .expect("run script (util-linux)");
    let raw = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{raw}");
    let lines = screen_lines(&raw);
    let logged: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains(" DEBUG ") || l.contains(" INFO "))
        .collect();
    assert!(!logged.is_empty(), "the run logged nothing: {raw}");
    for line in &logged {
        let t = line.trim_start();
        assert!(
            t.starts_with("20") && t.as_bytes().get(4) == Some(&b'-'),
            "a log line glued to something: {line:?}"
        );
    }
    assert!(
        raw.contains('%') && raw.contains('\r'),
        "no progress bar was drawn: {raw}"
    );
    assert!(lines.iter().any(|l| l.contains("completed")), "{raw}");
}

pub async fn cli_migrates_an_inbox_and_manages_migrations(db: Db) {
    let app = spawn_app(db).await;
    let s = crate::migrations::scenario(&app).await;
    let (account, from, to) = (
        s.account_id.to_string(),
        s.evolution.to_string(),
        s.cloud.to_string(),
    );
    let base = [
        "migrate",
        "inbox",
        "--account",
        &account,
        "--from",
        &from,
        "--to",
        &to,
    ];
    fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        base.iter().chain(extra).copied().collect()
    }

    let plan = json_out(&app.cli(&with(&base, &["--dry-run", "--json"])));
    assert_eq!(plan["plan"]["conversations"], 4);
    assert!(
        app.ferry
            .store
            .list_inbox_migrations(s.account_id, None, false)
            .await
            .unwrap()
            .is_empty()
    );
    // No terminal, no --yes: refused, nothing queued.
    one_line_failure(&app.cli(&with(&base, &[])), "confirmation needed");
    assert!(
        app.ferry
            .store
            .list_inbox_migrations(s.account_id, None, false)
            .await
            .unwrap()
            .is_empty()
    );

    let done = json_out(&app.cli(&with(&base, &["--yes", "--json", "--batch-rows", "10"])));
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["progress"]["percentage"], 100.0);
    let id = done["id"].as_i64().unwrap().to_string();
    let listed = json_out(&app.cli(&["migrations", "list", "--account", &account, "--json"]));
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let verified = json_out(&app.cli(&["migrations", "verify", &id, "--json"]));
    assert_eq!(verified["ok"], true, "{verified}");
    // Revert asks for REVERT as the page does: without a terminal and --yes it changes nothing.
    one_line_failure(
        &app.cli(&["migrations", "revert", &id, "--json"]),
        "type REVERT, or pass --yes",
    );
    assert_eq!(
        app.ferry
            .store
            .get_inbox_migration(id.parse().unwrap())
            .await
            .unwrap()
            .status,
        ferry::store::MigrationStatus::Completed
    );
    let reverted = json_out(&app.cli(&["migrations", "revert", &id, "--yes", "--json"]));
    assert_eq!(reverted["status"], "reverted");
    assert_eq!(
        app.ferry
            .store
            .inbox_counts(s.evolution)
            .await
            .unwrap()
            .conversations,
        4
    );
    one_line_failure(
        &app.cli(&["migrations", "cancel", &id]),
        "cannot be cancelled",
    );
    let shown = json_out(&app.cli(&["migrations", "show", &id, "--json"]));
    assert_eq!(shown["status"], "reverted");
    // Queue and return; a second one for the same source is refused by the database.
    let queued = json_out(&app.cli(&with(&base, &["--yes", "--detach", "--json"])));
    assert_eq!(queued["status"], "queued");
    one_line_failure(
        &app.cli(&with(&base, &["--yes", "--detach"])),
        "active migration",
    );
    one_line_failure(
        &app.cli(&[
            "migrate",
            "inbox",
            "--account",
            &account,
            "--from",
            &from,
            "--to",
            &from,
            "--yes",
        ]),
        "same inbox",
    );
}

/// What a person can fix is said in one line with what to do: a data directory that was never created (with
/// the one they probably meant), and nothing is created by the mistake.
pub async fn database_mistakes_are_one_line_with_a_hint() {
    let run = |args: &[&str], dir: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(args)
            .current_dir(dir)
            .env_remove("FERRY_DATABASE_URL")
            .env_remove("FERRY_DATA_DIR")
            .env("FERRY_LOG", "warn")
            .output()
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let list = ["webhooks", "dead-letters"];
    let mistyped = run(
        &[&["--data-dir", "./ferry-dat"], &list[..]].concat(),
        dir.path(),
    );
    one_line_failure(
        &mistyped,
        "no ferry data in ./ferry-dat: `ferry serve` (or `ferry db migrate`) creates it",
    );
    assert!(!dir.path().join("ferry-dat").exists(), "nothing created");
    assert!(run(&["db", "migrate"], dir.path()).status.success());
    let mistyped = run(
        &[&["--data-dir", "./ferry-dat"], &list[..]].concat(),
        dir.path(),
    );
    one_line_failure(&mistyped, "did you mean --data-dir ./ferry-data?");
    assert!(
        run(&list, dir.path()).status.success(),
        "the default one exists now"
    );
}

/// PostgreSQL mistakes: a database that does not exist yet, a port nothing listens on (at once, not after a
/// 15 s pool timeout).
pub async fn postgres_mistakes_are_one_line_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let list = ["migrations", "list", "--account", "1"];
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(args)
            .current_dir(dir.path())
            .env("FERRY_LOG", "warn")
            .output()
            .unwrap()
    };
    let admin = crate::helpers::postgres_admin_url();
    let missing = admin.rsplit_once('/').unwrap().0.to_owned() + "/ferry_no_such_database";
    let out = run(&[&["--database-url", missing.as_str()], &list[..]].concat());
    one_line_failure(
        &out,
        "database ferry_no_such_database does not exist: create it with `createdb ferry_no_such_database`",
    );
    let started = std::time::Instant::now();
    let out = run(&[
        &["--database-url", "postgres://postgres@127.0.0.1:1/ferry"],
        &list[..],
    ]
    .concat());
    one_line_failure(&out, "cannot reach PostgreSQL at 127.0.0.1:1");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "not a 15 s pool timeout"
    );
}

/// This module's tests, with the services they need beside the database.
pub fn suite() -> Vec<crate::Test> {
    [
        on_both_databases!(
            [];
            cli_creates_account_user_token_and_inbox,
            cli_failures_are_one_line_and_write_nothing,
            cli_migrates_an_inbox_and_manages_migrations,
            log_lines_do_not_break_the_progress_bar,
        ),
        without_database!("sqlite", []; serve_demo_prints_a_working_token_and_keeps_data),
        without_database!("sqlite", []; database_mistakes_are_one_line_with_a_hint),
        without_database!("postgres", [crate::Service::Postgres]; postgres_mistakes_are_one_line_with_a_hint),
    ]
    .concat()
}
