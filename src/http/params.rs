//! The path parameters of `/api/v1`, each named once: the handlers extract them by name and the OpenAPI
//! document describes them from the same structs.

use serde::Deserialize;
use utoipa::IntoParams;

/// `/accounts/{account_id}`: the account is checked by `AccountAccess`, so handlers only document it.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AccountPath {
    /// Account id
    #[param(example = 1)]
    pub account_id: i64,
}

/// `/accounts/{account_id}/inboxes/{inbox_id}`
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct InboxPath {
    /// Account id
    #[param(example = 1)]
    pub account_id: i64,
    /// Inbox id (for migrations, the source inbox)
    #[param(example = 1)]
    pub inbox_id: i64,
}

/// `/accounts/{account_id}/conversations/{conversation_id}`
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ConversationPath {
    /// Account id
    #[param(example = 1)]
    pub account_id: i64,
    /// Conversation id
    #[param(example = 1)]
    pub conversation_id: i64,
}

/// `/accounts/{account_id}/inboxes/{inbox_id}/migrations/{id}`
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MigrationPath {
    /// Account id
    #[param(example = 1)]
    pub account_id: i64,
    /// Source inbox id
    #[param(example = 1)]
    pub inbox_id: i64,
    /// Migration id
    #[param(example = 1)]
    pub id: i64,
}

/// `/accounts/{account_id}/integrations/{id}`
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct IntegrationPath {
    /// Account id
    #[param(example = 1)]
    pub account_id: i64,
    /// Integration id
    #[param(example = 1)]
    pub id: i64,
}
