//! What the adapter needs of a Chatwoot database: every table and column it reads or writes, each with the
//! kind of type it must have. Checked through `information_schema` on connect, so that a Chatwoot version that
//! renamed or retyped one of them is refused with one line naming it, before anything is read or written.

use std::collections::HashMap;

use sqlx::PgPool;

/// The kind of a column's type, as far as the adapter cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `integer` or `bigint`.
    Int,
    /// `character varying` or `text`.
    Text,
    /// `jsonb` or `json`.
    Json,
    Time,
    Bool,
    Uuid,
}

impl Kind {
    fn accepts(self, data_type: &str) -> bool {
        match self {
            Kind::Int => matches!(data_type, "integer" | "bigint"),
            Kind::Text => matches!(data_type, "character varying" | "text"),
            Kind::Json => matches!(data_type, "jsonb" | "json"),
            Kind::Time => data_type.starts_with("timestamp"),
            Kind::Bool => data_type == "boolean",
            Kind::Uuid => data_type == "uuid",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Int => "integer",
            Kind::Text => "text",
            Kind::Json => "jsonb",
            Kind::Time => "timestamp",
            Kind::Bool => "boolean",
            Kind::Uuid => "uuid",
        }
    }
}

use Kind::*;

/// A table, whether it may be absent (older versions), and the columns of it the adapter reads or writes.
pub type Table = (&'static str, bool, &'static [(&'static str, Kind)]);

/// Tables and columns the adapter reads or writes.
pub const REQUIRED: &[Table] = &[
    ("schema_migrations", false, &[("version", Text)]),
    ("accounts", false, &[("id", Int), ("name", Text)]),
    (
        "inboxes",
        false,
        &[
            ("id", Int),
            ("account_id", Int),
            ("name", Text),
            ("channel_type", Text),
            ("channel_id", Int),
        ],
    ),
    (
        "channel_whatsapp",
        false,
        &[
            ("id", Int),
            ("phone_number", Text),
            ("provider", Text),
            ("provider_config", Json),
        ],
    ),
    ("channel_api", false, &[("id", Int), ("webhook_url", Text)]),
    (
        "channel_twilio_sms",
        false,
        &[("id", Int), ("medium", Int), ("phone_number", Text)],
    ),
    (
        "contacts",
        false,
        &[
            ("id", Int),
            ("account_id", Int),
            ("name", Text),
            ("email", Text),
            ("phone_number", Text),
            ("identifier", Text),
            ("custom_attributes", Json),
            ("last_activity_at", Time),
        ],
    ),
    (
        "contact_inboxes",
        false,
        &[
            ("id", Int),
            ("contact_id", Int),
            ("inbox_id", Int),
            ("source_id", Text),
        ],
    ),
    (
        "conversations",
        false,
        &[
            ("id", Int),
            ("account_id", Int),
            ("inbox_id", Int),
            ("contact_id", Int),
            ("contact_inbox_id", Int),
            ("display_id", Int),
            ("status", Int),
            ("uuid", Uuid),
        ],
    ),
    (
        "messages",
        false,
        &[
            ("id", Int),
            ("account_id", Int),
            ("inbox_id", Int),
            ("conversation_id", Int),
            ("message_type", Int),
            ("sender_type", Text),
            ("sender_id", Int),
            ("source_id", Text),
        ],
    ),
    ("attachments", false, &[("id", Int), ("message_id", Int)]),
    (
        "reporting_events",
        false,
        &[("id", Int), ("inbox_id", Int), ("conversation_id", Int)],
    ),
    (
        "inbox_members",
        false,
        &[("id", Int), ("inbox_id", Int), ("user_id", Int)],
    ),
    ("notes", false, &[("id", Int), ("contact_id", Int)]),
    (
        "csat_survey_responses",
        false,
        &[("id", Int), ("contact_id", Int)],
    ),
    (
        "taggings",
        false,
        &[
            ("id", Int),
            ("tag_id", Int),
            ("taggable_type", Text),
            ("taggable_id", Int),
        ],
    ),
    (
        "tags",
        false,
        &[("id", Int), ("name", Text), ("taggings_count", Int)],
    ),
    ("sla_events", true, &[("id", Int), ("inbox_id", Int)]),
    ("companies", true, &[("id", Int), ("contacts_count", Int)]),
];

/// What is missing or of another type, one phrase each; empty when the database has everything.
pub async fn problems(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_schema = current_schema()",
    )
    .fetch_all(pool)
    .await?;
    let mut found: HashMap<(&str, &str), &str> = HashMap::new();
    for (table, column, data_type) in &rows {
        found.insert((table.as_str(), column.as_str()), data_type.as_str());
    }
    let has_table = |table: &str| rows.iter().any(|(t, _, _)| t == table);
    let mut problems = Vec::new();
    for (table, optional, columns) in REQUIRED {
        if !has_table(table) {
            if !optional {
                problems.push(format!("table {table} is missing"));
            }
            continue;
        }
        for (column, kind) in *columns {
            match found.get(&(*table, *column)) {
                None => problems.push(format!("column {table}.{column} is missing")),
                Some(data_type) if !kind.accepts(data_type) => problems.push(format!(
                    "column {table}.{column} is {data_type}, not {}",
                    kind.name()
                )),
                Some(_) => {}
            }
        }
    }
    Ok(problems)
}
