//! ferry: moves WhatsApp-like customer conversations without losing a message.
//!
//! Capabilities live in their own modules (`inbox_migration`, `webhooks`, `account_import`); `http` and `cli`
//! are thin adapters over them and over `store`.

pub mod account_import;
pub mod attachments;
pub mod bench;
pub mod chatwoot;
pub mod cli;
pub mod config;
pub mod connections;
pub mod datagen;
pub mod demo;
pub mod domain;
pub mod http;
pub mod inbox_migration;
pub mod jobs;
pub mod members;
pub mod metrics;
pub mod password;
pub mod public_url;
pub mod secrets;
pub mod services;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod web;
pub mod webhooks;
pub mod worker;

/// Installs the process's TLS provider (ring) for outgoing HTTPS (media downloads, provider APIs). Every HTTP
/// client is built after this; calling it again does nothing.
pub fn install_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Makes every file and folder ferry creates private to its user (0600 / 0700): the database, its WAL, the
/// attachments and the backups hold customers' conversations and secrets.
pub fn private_files() {
    // SAFETY: umask only sets this process's file-creation mask; called once at startup.
    unsafe {
        libc::umask(0o077);
    }
}
