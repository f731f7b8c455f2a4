//! Capability B, provider webhooks routed by token (SPEC 4). Built in a later issue; the schema it needs
//! (`integrations`, `webhook_dead_letters`, the legacy tables) exists.
