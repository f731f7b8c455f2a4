//! Capability B, provider webhooks routed by a secret per-integration token (SPEC 4). This part: the
//! integrations that own the tokens (create, reveal, rotate with an overlap window, disable/enable) and the
//! cached token → integration routing.

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
pub mod routing;
pub mod twilio;
