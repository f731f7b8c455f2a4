//! Capability B, provider webhooks routed by a secret per-integration token (README: "Integrations and webhook tokens"). This part: the
//! integrations that own the tokens (create, reveal, rotate with an overlap window, disable/enable) and the
//! cached token → integration routing.

/// The header a legacy-routed delivery keeps with its dead letter (the instance that routed it), so that a
/// replay routes it the same way.
pub const LEGACY_INSTANCE_HEADER: &str = "x-ferry-legacy-instance";

pub mod body;
pub mod cloud;
pub mod cutover;
pub mod dead_letters;
pub mod dialog360;
pub mod event;
pub mod evolution;
#[cfg(test)]
mod fuzz;
pub mod group_commit;
pub mod ingest;
pub mod integrations;
pub mod media;
pub mod outbound;
pub mod routing;
pub mod twilio;

/// A plain HTTP client (TLS, a 60 s timeout) for what the installation itself configured, such as `ferry
/// integrations test` posting to this server. Provider APIs at URLs an account can choose (media downloads, the
/// cut-over's Evolution calls) go through `outbound::Outbound` instead.
pub fn http_client() -> &'static reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        crate::install_tls();
        reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .expect("HTTP client")
    })
}
