use std::fmt;

use serde::{Deserialize, Serialize};

/// A user's role in one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Administrator,
    Agent,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}; expected administrator or agent")]
pub struct RoleError(pub String);

impl Role {
    pub fn parse(s: &str) -> Result<Self, RoleError> {
        match s {
            "administrator" => Ok(Role::Administrator),
            "agent" => Ok(Role::Agent),
            other => Err(RoleError(other.to_owned())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Administrator => "administrator",
            Role::Agent => "agent",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_roles_and_nothing_else() {
        assert_eq!(Role::parse("administrator"), Ok(Role::Administrator));
        assert_eq!(Role::parse("agent"), Ok(Role::Agent));
        assert!(Role::parse("admin").is_err());
        assert!(Role::parse("Agent").is_err());
    }
}
