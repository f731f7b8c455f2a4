//! Validated domain types. Each is built with `parse()` and is therefore valid wherever it appears.

mod api_token;
mod channel_type;
mod role;
mod secret_token;
mod webhook_token;
mod whatsapp_identity;

pub use api_token::{ApiToken, ApiTokenError};
pub use channel_type::{ChannelType, ChannelTypeError};
pub use role::{Role, RoleError};
pub use webhook_token::{WebhookToken, WebhookTokenError};
pub use whatsapp_identity::{IdentityError, WhatsAppIdentity};
