//! One integration-test binary (link once on 2 cores), run by our own harness so that every storage test runs
//! against SQLite and PostgreSQL, and PostgreSQL tests are reported as *ignored* — never passed — when no
//! server answers. Set `FERRY_TEST_REQUIRE_POSTGRES=1` (CI does) to fail instead.

mod auth;
mod browser;
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

use std::future::Future;
use std::pin::Pin;

use helpers::Db;
use libtest_mimic::{Arguments, Trial};

type TestFn = fn(Db) -> Pin<Box<dyn Future<Output = ()> + Send>>;

macro_rules! storage_tests {
    ($($module:ident :: $name:ident),* $(,)?) => {
        vec![$((concat!(stringify!($module), "::", stringify!($name)), (|db| Box::pin($module::$name(db))) as TestFn)),*]
    };
}

fn main() {
    let args = Arguments::from_args();
    ferry::install_tls();
    let tests: Vec<(&str, TestFn)> = storage_tests![
        auth::no_token_is_401_in_the_error_shape,
        auth::malformed_and_unknown_tokens_are_401,
        auth::bearer_and_api_access_token_headers_both_work,
        auth::a_user_of_another_account_gets_404,
        auth::an_agent_reads_but_gets_403_on_admin_routes,
        auth::installation_admin_flag_does_not_open_other_accounts,
        inboxes::create_encrypts_the_config_and_never_returns_it,
        inboxes::update_changes_only_named_fields_and_null_clears,
        inboxes::bad_input_is_refused_and_nothing_is_written,
        inboxes::inboxes_of_another_account_are_404,
        inboxes::a_wrong_secret_key_is_a_clear_error_never_garbage,
        read_api::conversations_page_through_every_row_once,
        read_api::messages_come_with_their_attachments,
        read_api::contacts_list_their_contact_inboxes_in_native_formats,
        read_api::unknown_routes_and_methods_answer_in_the_error_shape,
        read_api::health_and_readiness,
        sign_in::guessers_are_throttled_by_address_and_email,
        sign_in::forwarded_for_is_ignored_unless_trusted,
        openapi::the_document_matches_the_routes_and_the_answers,
        datagen::generated_data_matches_its_report,
        datagen::shared_contacts_are_the_same_person_in_two_formats,
        store::email_uniqueness_is_enforced_by_the_database_under_concurrency,
        store::display_ids_are_unique_under_concurrent_reservations,
        store::migrations_are_idempotent,
        store::conversation_counts_are_kept_by_the_database,
        integrations::integrations_issue_reveal_rotate_and_disable_tokens,
        integrations::integration_requests_are_refused_clearly,
        integrations::cli_manages_integrations,
        integrations::token_routes_are_cached_and_invalidated,
        webhooks::evolution_webhooks_are_stored_once,
        webhooks::cloud_webhooks_are_verified_and_stored_once,
        webhooks::dialog360_webhooks_read_both_shapes,
        webhooks::twilio_webhooks_are_verified_and_stored_once,
        webhooks::dead_letters_are_listed_and_replayed,
        webhooks::concurrent_first_messages_make_one_customer,
        webhooks::legacy_route_resolves_through_legacy_tables_and_counts_hits,
        webhooks::completed_migration_redirects_source_webhooks,
        conformance::values_are_routed_by_phone_number_id,
        conformance::an_integration_without_its_number_keeps_its_traffic,
        conformance::username_users_are_stored_and_linked_to_their_number,
        conformance::bsuid_aliases_survive_a_migration_and_its_revert,
        conformance::webhook_bodies_have_their_own_limit,
        conformance::evolution_edits_and_events_as_evolution_sends_them,
        conformance::cloud_content_as_meta_documents_it,
        conformance::evolution_content_as_baileys_builds_it,
        conformance::evolution_routes_instances_and_ninth_digit,
        conformance::ninth_digit_is_kept_apart_when_the_account_says_so,
        conformance::twilio_get_and_repeated_parameters,
        webhooks::cached_token_routes_run_no_statement,
        webhooks::edits_deletes_and_reactions_change_their_target,
        webhooks::random_bodies_get_200_or_a_dead_letter,
        webhooks::a_database_failure_keeps_the_delivery_as_a_dead_letter,
        media::media_is_fetched_in_the_background_with_backoff_and_placeholders,
        media::media_url_to_loopback_is_refused_and_no_credentials_leave,
        media::integration_api_urls_off_the_allowed_list_get_no_request,
        media::redirects_are_checked_per_hop_and_credentials_stay_on_their_host,
        media::media_over_the_size_cap_fails_at_once_with_its_reason,
        cutover::migrate_turns_each_usable_legacy_row_into_one_integration,
        cutover::concurrent_first_migrations_make_no_duplicates,
        cutover::cleanup_waits_for_a_quiet_window_then_backs_up_and_retires,
        cutover::cutover_repoints_one_at_a_time_and_restores_on_failure,
        cutover::cutover_sets_ferrys_events_and_no_base64,
        cutover::cutover_skips_disabled_webhooks_unless_included,
        cutover::cutover_restore_puts_back_the_previous_webhook_exactly,
        cutover::cutover_endpoints_are_for_installation_administrators,
        cutover::integration_test_sends_a_signed_message_and_cleans_up,
        cutover::cutover_calls_no_evolution_api_off_the_allowed_list,
        migrations::migration_moves_and_merges_across_formats,
        migrations::create_is_refused_with_clear_422s,
        migrations::two_simultaneous_creates_give_one_201_and_one_422,
        migrations::cancel_and_retry_follow_the_lifecycle,
        migrations::a_worker_that_lost_its_lease_writes_nothing,
        migrations::generated_inbox_migrates_in_many_batches_to_native_formats,
        migrations::revert_restores_the_exact_prior_state,
        migrations::a_killed_worker_process_is_taken_over_and_the_result_equals_an_uninterrupted_run,
        migrations::conversations_arriving_during_the_migration_end_up_in_the_destination,
        migrations::two_workers_claim_different_migrations_and_never_the_same,
        migrations::sigterm_finishes_the_batch_and_releases_the_lease,
        migrations::open_conversation_conflicts_are_reported,
        migrations::a_person_twice_in_the_source_ends_as_one_contact_inbox,
        migrations::duplicates_by_provider_message_id_are_kept_once,
        migrations::two_worker_processes_share_the_queue_without_overlap,
        cli::cli_creates_account_user_token_and_inbox,
        cli::cli_failures_are_one_line_and_write_nothing,
        cli::cli_migrates_an_inbox_and_manages_migrations,
        imports::import_runs_every_stage_once_and_is_idempotent,
        imports::cli_imports_an_account_through_every_stage,
        imports::each_failure_stage_has_its_status_and_its_next_migrate,
        imports::empty_pages_with_a_cursor_are_followed,
        imports::a_killed_worker_process_resumes_the_history_without_duplicates,
        imports::forced_remigration_deletes_only_what_imports_created,
        imports::legacy_existence_is_asked_once_and_outages_are_errors,
        imports::a_long_history_gives_way_to_another_accounts_first_stages,
        ops::metrics_count_requests_jobs_webhooks_and_takeovers,
        ops::config_show_redacts_secrets,
        ops::sigterm_stops_the_server_within_its_bound,
        ops::scale_benchmarks_run_with_several_workers_and_servers,
        pressure::idle_connections_at_the_cap_leave_health_answering,
        pressure::a_stalled_webhook_body_times_out,
        faults::nul_text_and_long_provider_ids_are_stored_alike,
        faults::a_terminated_connection_does_not_fail_a_migration,
        faults::a_terminated_connection_does_not_fail_a_media_job,
        faults::a_terminated_connection_does_not_fail_an_account_import,
        sequences::reverts_out_of_order_are_refused,
        sequences::migrating_back_ends_the_old_redirect,
        sequences::a_revert_is_a_job_that_resumes_after_a_kill,
        sequences::revert_after_cancel_and_continue_restores_every_run,
        sequences::every_attempt_is_kept_and_a_failed_run_is_revertible,
        sequences::progress_streams_share_one_poll_and_are_capped,
        trust::dead_letters_keep_credential_header_names_not_values,
        trust::refused_webhook_tokens_are_counted_not_stored,
        trust::webhook_tokens_stay_out_of_logs_and_files_are_private,
        trust::installation_admins_reveal_only_their_accounts_tokens,
    ];
    // Storage tests that also need Redis: ignored (never passed) without it, failed with FERRY_TEST_REQUIRE_REDIS=1.
    let redis_tests: Vec<(&str, TestFn)> = storage_tests![
        webhooks::redis_shares_routes_and_invalidations_between_nodes,
        faults::a_redis_restart_loses_no_invalidation,
    ];
    let moto_tests: Vec<(&str, TestFn)> = storage_tests![
        imports::dynamodb_source_imports_with_media_tokens,
        ops::attachments_are_kept_in_an_s3_bucket,
    ];
    // Browser tests: ignored (never passed) without chromium, failed with FERRY_TEST_REQUIRE_BROWSER=1.
    let browser_tests: Vec<(&str, TestFn)> = storage_tests![
        browser::admin_migrates_and_reverts_an_inbox_in_the_browser,
        browser::agents_forged_posts_and_guessers_are_refused,
        browser::integrations_reveal_rotate_and_cut_over_in_the_browser,
        browser::import_timeline_advances_in_the_browser,
    ];
    let postgres = helpers::postgres_available();
    let mut trials = Vec::new();
    for (name, test) in tests {
        for db in [Db::Sqlite, Db::Postgres] {
            let ignored = db == Db::Postgres && postgres.is_err();
            trials.push(
                Trial::test(format!("{}::{name}", db.as_str()), move || {
                    helpers::run(db, test)
                })
                .with_ignored_flag(ignored),
            );
        }
    }
    let redis = helpers::redis_available();
    for (name, test) in redis_tests {
        for db in [Db::Sqlite, Db::Postgres] {
            let ignored = redis.is_err() || (db == Db::Postgres && postgres.is_err());
            trials.push(
                Trial::test(format!("{}::{name}", db.as_str()), move || {
                    helpers::run(db, test)
                })
                .with_ignored_flag(ignored),
            );
        }
    }
    let browser = browser::browser_available();
    for (name, test) in browser_tests {
        for db in [Db::Sqlite, Db::Postgres] {
            let ignored = browser.is_err() || (db == Db::Postgres && postgres.is_err());
            trials.push(
                Trial::test(format!("{}::{name}", db.as_str()), move || {
                    helpers::run(db, test)
                })
                .with_ignored_flag(ignored),
            );
        }
    }
    // Many processes on one PostgreSQL and one Redis.
    trials.push(
        Trial::test(
            "postgres::multinode::servers_and_workers_share_work_routes_and_traffic",
            || {
                helpers::run(Db::Postgres, |db| {
                    Box::pin(multinode::servers_and_workers_share_work_routes_and_traffic(db))
                })
            },
        )
        .with_ignored_flag(redis.is_err() || postgres.is_err()),
    );
    let moto = imports::moto_available();
    for (name, test) in moto_tests {
        for db in [Db::Sqlite, Db::Postgres] {
            let ignored = moto.is_err() || (db == Db::Postgres && postgres.is_err());
            trials.push(
                Trial::test(format!("{}::{name}", db.as_str()), move || {
                    helpers::run(db, test)
                })
                .with_ignored_flag(ignored),
            );
        }
    }
    let tmpfs = faults::tmpfs_available();
    trials.push(
        Trial::test(
            "sqlite::faults::a_full_disk_answers_503_and_recovers_by_itself",
            || helpers::run_plain(faults::a_full_disk_answers_503_and_recovers_by_itself()),
        )
        .with_ignored_flag(tmpfs.is_err()),
    );
    trials.push(Trial::test(
        "cli::openapi_prints_the_committed_document",
        || helpers::run_plain(openapi::cli_prints_the_committed_document()),
    ));
    trials.push(Trial::test(
        "sqlite::cli::serve_demo_prints_a_working_token_and_keeps_data",
        || helpers::run_plain(cli::serve_demo_prints_a_working_token_and_keeps_data()),
    ));
    trials.push(
        Trial::test(
            "sqlite::browser::demo_newcomer_does_everything_in_the_browser",
            || helpers::run_plain(browser::demo_newcomer_does_everything_in_the_browser()),
        )
        .with_ignored_flag(browser.is_err()),
    );
    if let Err(reason) = &postgres {
        if std::env::var("FERRY_TEST_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
            eprintln!("FERRY_TEST_REQUIRE_POSTGRES=1 but {reason}");
            std::process::exit(1);
        }
        eprintln!("skipped: {reason} — the PostgreSQL variants are reported as ignored");
    }
    if let Err(reason) = &redis {
        if std::env::var("FERRY_TEST_REQUIRE_REDIS").is_ok_and(|v| v == "1") {
            eprintln!("FERRY_TEST_REQUIRE_REDIS=1 but {reason}");
            std::process::exit(1);
        }
        eprintln!("skipped: {reason} — the Redis tests are reported as ignored");
    }
    if let Err(reason) = &moto {
        if std::env::var("FERRY_TEST_REQUIRE_MOTO").is_ok_and(|v| v == "1") {
            eprintln!("FERRY_TEST_REQUIRE_MOTO=1 but {reason}");
            std::process::exit(1);
        }
        eprintln!("skipped: {reason} — the DynamoDB tests are reported as ignored");
    }
    if let Err(reason) = &tmpfs {
        if std::env::var("FERRY_TEST_REQUIRE_TMPFS").is_ok_and(|v| v == "1") {
            eprintln!("FERRY_TEST_REQUIRE_TMPFS=1 but {reason}");
            std::process::exit(1);
        }
        eprintln!("skipped: {reason} — the full-disk test is reported as ignored");
    }
    if let Err(reason) = &browser {
        if std::env::var("FERRY_TEST_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
            eprintln!("FERRY_TEST_REQUIRE_BROWSER=1 but {reason}");
            std::process::exit(1);
        }
        eprintln!("skipped: {reason} — the browser tests are reported as ignored");
    }
    let conclusion = libtest_mimic::run(&args, trials);
    helpers::drop_created_databases();
    conclusion.exit();
}
