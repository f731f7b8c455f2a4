//! Requests that could not be stored are kept with their raw body (`webhook_dead_letters`); once the cause is
//! fixed they are replayed through the same parser and ingestion (de-duplicated, so a replay is safe twice).

use super::event::{NumberedEvent, ParseError};
use super::ingest::{IngestOutcome, ingest, route_of_number};
use super::{cloud, dialog360, evolution, twilio};
use crate::services::{Ferry, ServiceError};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("dead letter {0} names no integration or legacy instance that still exists")]
    NoIntegration(i64),
    #[error("dead letter {id} still does not parse: {reason}")]
    Malformed { id: i64, reason: String },
    #[error(
        "dead letter {id} is for phone_number_id {number}, which no enabled integration of the account owns"
    )]
    UnknownNumber { id: i64, number: String },
    #[error(
        "dead letter {id} is an event of Evolution instance {instance}, not of its integration's instance; \
         give that instance its own webhook URL (ferry integrations cutover)"
    )]
    InstanceMismatch { id: i64, instance: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ReplayError> for ServiceError {
    fn from(e: ReplayError) -> Self {
        match e {
            ReplayError::Store(s) => s.into(),
            other => ServiceError::Conflict(other.to_string()),
        }
    }
}

fn events(provider: &str, body: &[u8]) -> Result<Vec<NumberedEvent>, ParseError> {
    let own = |event| {
        vec![NumberedEvent {
            phone_number_id: None,
            event,
        }]
    };
    match provider {
        "evolution" => evolution::parse(body).map(own),
        "whatsapp_cloud" => cloud::parse(body),
        "dialog360" => dialog360::parse(body),
        "twilio_whatsapp" => twilio::parse(&twilio::form(body)).map(own),
        other => Err(ParseError(format!("unknown provider {other}"))),
    }
}

/// Replays one dead letter (signatures were checked when it arrived) and marks it replayed.
pub async fn replay(ferry: &Ferry, id: i64) -> Result<Vec<IngestOutcome>, ReplayError> {
    let letter = ferry.store.get_dead_letter(id).await?;
    // A legacy delivery is routed by its instance again (it may have no integration).
    let legacy_instance = letter
        .headers
        .get(super::LEGACY_INSTANCE_HEADER)
        .and_then(serde_json::Value::as_str);
    let route = match (letter.integration_id, legacy_instance) {
        (Some(integration), _) => ferry.store.route_of_integration(integration).await?,
        (None, Some(instance)) => ferry.store.route_by_instance_name(instance).await?,
        (None, None) => None,
    }
    .ok_or(ReplayError::NoIntegration(id))?;
    if route.provider == "evolution"
        && let Some(instance) = evolution::foreign_instance(&route, &letter.body)
    {
        return Err(ReplayError::InstanceMismatch { id, instance });
    }
    let parsed = events(&route.provider, &letter.body)
        .map_err(|ParseError(reason)| ReplayError::Malformed { id, reason })?;
    let mut outcomes = Vec::with_capacity(parsed.len());
    for NumberedEvent {
        phone_number_id,
        event,
    } in parsed
    {
        // Routed by number again: the number's integration may exist now.
        let number = phone_number_id.as_deref();
        let owner = route_of_number(ferry, &route, number)
            .await?
            .ok_or_else(|| ReplayError::UnknownNumber {
                id,
                number: number.unwrap_or_default().to_owned(),
            })?;
        outcomes.push(ingest(ferry, &owner, event).await?);
    }
    ferry.store.mark_dead_letter_replayed(id).await?;
    Ok(outcomes)
}
