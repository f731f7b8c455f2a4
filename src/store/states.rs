//! The states a stored row can be in, decoded where a row is read: a value the database holds that ferry does
//! not know is an error, never a silent default, and every `match` over them is exhaustive. Each is stored
//! and serialized as its lowercase name (the CHECK constraints of the migrations list the same names).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Implements `as_str` and `Display` from the variants' stored names.
macro_rules! stored_names {
    ($state:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $state {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($state::$variant => $name,)+
                }
            }
        }

        impl fmt::Display for $state {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// An inbox migration: `queued` → `running` → `completed`, or `failed` / `cancelled` (resumable), and
/// `reverted` once its revert finished.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[sqlx(type_name = "TEXT", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum MigrationStatus {
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
    Reverted,
}

stored_names!(MigrationStatus {
    Queued => "queued",
    Running => "running",
    Completed => "completed",
    Failed => "failed",
    Cancelled => "cancelled",
    Reverted => "reverted",
});

impl MigrationStatus {
    /// Still has batches to run (a worker holds it or will claim it).
    pub fn is_active(self) -> bool {
        matches!(self, MigrationStatus::Queued | MigrationStatus::Running)
    }

    /// Ended in a state a revert may undo.
    pub fn is_revertible(self) -> bool {
        matches!(
            self,
            MigrationStatus::Completed | MigrationStatus::Failed | MigrationStatus::Cancelled
        )
    }
}

/// Where a migration's batches stand: `plan` (counting), `moving`, `done`, or `reverted`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[sqlx(type_name = "TEXT", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum MigrationPhase {
    Plan,
    Moving,
    Done,
    Reverted,
}

stored_names!(MigrationPhase {
    Plan => "plan",
    Moving => "moving",
    Done => "done",
    Reverted => "reverted",
});

/// An account import: `queued` → `running` → `completed`, or `failed` (resumable).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[sqlx(type_name = "TEXT", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum ImportStatus {
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
}

stored_names!(ImportStatus {
    Queued => "queued",
    Running => "running",
    Completed => "completed",
    Failed => "failed",
    Cancelled => "cancelled",
});

impl ImportStatus {
    pub fn is_active(self) -> bool {
        matches!(self, ImportStatus::Queued | ImportStatus::Running)
    }
}

/// The stage an account import is at: `channels` → `recent` (messages) → `all` (history) → `done`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[sqlx(type_name = "TEXT", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum ImportStage {
    Channels,
    Recent,
    All,
    Done,
}

stored_names!(ImportStage {
    Channels => "channels",
    Recent => "recent",
    All => "all",
    Done => "done",
});

/// An integration's connection as its provider (or the legacy system) reports it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[sqlx(type_name = "TEXT", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum IntegrationStatus {
    Active,
    Pending,
    Disconnected,
    Error,
}

stored_names!(IntegrationStatus {
    Active => "active",
    Pending => "pending",
    Disconnected => "disconnected",
    Error => "error",
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_are_the_serialized_names() {
        let all = [
            serde_json::to_value(MigrationStatus::Cancelled).unwrap() == "cancelled",
            serde_json::to_value(MigrationPhase::Moving).unwrap() == "moving",
            serde_json::to_value(ImportStatus::Running).unwrap() == "running",
            serde_json::to_value(ImportStage::All).unwrap() == "all",
            serde_json::to_value(IntegrationStatus::Disconnected).unwrap() == "disconnected",
        ];
        assert!(all.iter().all(|same| *same));
        assert_eq!(MigrationStatus::Reverted.to_string(), "reverted");
    }
}
