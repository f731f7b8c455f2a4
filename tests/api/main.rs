//! One integration-test binary (link once on 2 cores), run by our own harness so that every storage test runs
//! against SQLite and PostgreSQL, and a test whose service is missing (PostgreSQL, Redis, moto, chromium, a
//! tmpfs) is reported as *ignored* — never passed. `FERRY_TEST_REQUIRE_<SERVICE>=1` (CI sets them all) fails
//! the run instead. Each module lists its own tests in its `suite()`.

use std::future::Future;
use std::pin::Pin;

use helpers::Db;
use libtest_mimic::{Arguments, Trial};

type TestFn = fn(Db) -> Pin<Box<dyn Future<Output = ()> + Send>>;
type PlainFn = fn() -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// One test and where it runs.
#[derive(Clone, Copy)]
pub struct Test {
    /// `module::function`.
    name: &'static str,
    run: Run,
    /// What it needs besides the database it runs on.
    needs: &'static [Service],
}

#[derive(Clone, Copy)]
enum Run {
    /// On SQLite and on PostgreSQL, named `sqlite::…` and `postgres::…`.
    BothDatabases(TestFn),
    PostgresOnly(TestFn),
    /// With no database of the harness's, named `<prefix>::…`.
    WithoutDatabase(&'static str, PlainFn),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Service {
    Postgres,
    Redis,
    Moto,
    Browser,
    Tmpfs,
}

/// How each service is found, the variable that makes its absence fail the run, and what is ignored without it.
type Probe = fn() -> Result<(), String>;

const SERVICES: [(Service, Probe, &str, &str); 5] = [
    (
        Service::Postgres,
        helpers::postgres_available,
        "FERRY_TEST_REQUIRE_POSTGRES",
        "the PostgreSQL variants",
    ),
    (
        Service::Redis,
        helpers::redis_available,
        "FERRY_TEST_REQUIRE_REDIS",
        "the Redis tests",
    ),
    (
        Service::Moto,
        imports::moto_available,
        "FERRY_TEST_REQUIRE_MOTO",
        "the DynamoDB tests",
    ),
    (
        Service::Browser,
        browser::browser_available,
        "FERRY_TEST_REQUIRE_BROWSER",
        "the browser tests",
    ),
    (
        Service::Tmpfs,
        faults::tmpfs_available,
        "FERRY_TEST_REQUIRE_TMPFS",
        "the full-disk test",
    ),
];

/// `Test`s of the calling module's `fn(Db)` tests, on both databases.
macro_rules! on_both_databases {
    ($needs:tt; $($name:ident),+ $(,)?) => {
        vec![$(crate::Test::new(
            concat!(module_path!(), "::", stringify!($name)),
            crate::Run::BothDatabases(|db| Box::pin($name(db))),
            &$needs,
        )),+]
    };
}

macro_rules! on_postgres {
    ($needs:tt; $($name:ident),+ $(,)?) => {
        vec![$(crate::Test::new(
            concat!(module_path!(), "::", stringify!($name)),
            crate::Run::PostgresOnly(|db| Box::pin($name(db))),
            &$needs,
        )),+]
    };
}

macro_rules! without_database {
    ($prefix:literal, $needs:tt; $name:ident) => {
        vec![crate::Test::new(
            concat!(module_path!(), "::", stringify!($name)),
            crate::Run::WithoutDatabase($prefix, || Box::pin($name())),
            &$needs,
        )]
    };
}

mod admin_pages;
mod auth;
mod browser;
mod chatwoot;
mod chatwoot_migration;
mod cli;
mod conformance;
mod cutover;
mod datagen;
mod faults;
mod helpers;
mod imports;
mod inboxes;
mod integrations;
mod media;
mod migrations;
mod multinode;
mod openapi;
mod ops;
mod pressure;
mod read_api;
mod sequences;
mod sign_in;
mod store;
mod trust;
mod webhooks;

fn main() {
    let args = Arguments::from_args();
    ferry::install_tls();
    let suites = [
        admin_pages::suite(),
        auth::suite(),
        inboxes::suite(),
        read_api::suite(),
        sign_in::suite(),
        openapi::suite(),
        datagen::suite(),
        store::suite(),
        integrations::suite(),
        webhooks::suite(),
        conformance::suite(),
        media::suite(),
        cutover::suite(),
        migrations::suite(),
        cli::suite(),
        imports::suite(),
        ops::suite(),
        pressure::suite(),
        faults::suite(),
        sequences::suite(),
        trust::suite(),
        multinode::suite(),
        chatwoot::suite(),
        chatwoot_migration::suite(),
        browser::suite(),
    ];
    let found: Vec<(Service, Result<(), String>)> = SERVICES
        .iter()
        .map(|(service, probe, ..)| (*service, probe()))
        .collect();
    let missing = |service: Service| found.iter().any(|(s, r)| *s == service && r.is_err());
    let trials: Vec<Trial> = suites
        .into_iter()
        .flatten()
        .flat_map(|test| test.trials(&missing))
        .collect();
    report_missing(&found);
    let conclusion = libtest_mimic::run(&args, trials);
    helpers::drop_created_databases();
    conclusion.exit();
}

/// Says what is ignored for want of a service, or stops the run when that service is required.
fn report_missing(found: &[(Service, Result<(), String>)]) {
    for ((_, result), (_, _, require, ignored)) in found.iter().zip(SERVICES) {
        let Err(reason) = result else { continue };
        if std::env::var(require).is_ok_and(|v| v == "1") {
            eprintln!("{require}=1 but {reason}");
            std::process::exit(1);
        }
        eprintln!("skipped: {reason} — {ignored} are reported as ignored");
    }
}

impl Test {
    const fn new(name: &'static str, run: Run, needs: &'static [Service]) -> Self {
        Self { name, run, needs }
    }

    fn trials(self, missing: &dyn Fn(Service) -> bool) -> Vec<Trial> {
        let name = self.name.trim_start_matches("api::");
        let lacking = self.needs.iter().any(|s| missing(*s));
        let on = |db: Db, test: TestFn| {
            Trial::test(format!("{}::{name}", db.as_str()), move || {
                helpers::run(db, test)
            })
            .with_ignored_flag(lacking || (db == Db::Postgres && missing(Service::Postgres)))
        };
        match self.run {
            Run::BothDatabases(test) => vec![on(Db::Sqlite, test), on(Db::Postgres, test)],
            Run::PostgresOnly(test) => vec![on(Db::Postgres, test)],
            Run::WithoutDatabase(prefix, test) => vec![
                Trial::test(format!("{prefix}::{name}"), move || {
                    helpers::run_plain(test())
                })
                .with_ignored_flag(lacking),
            ],
        }
    }
}
