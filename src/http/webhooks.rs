//! Provider webhook routes (SPEC 4.1). Unknown or disabled token 404, malformed body 400 (kept as a dead letter
//! with its raw body and headers), stored or duplicate 200.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};
use super::extract::{ApiPath, RawBody};
use crate::domain::WebhookToken;
use crate::services::Ferry;
use crate::store::{NewDeadLetter, TokenRoute};
use crate::webhooks::ingest::{Outcome, ingest};
use crate::webhooks::{cloud, dialog360, event::ParseError, evolution, integrations, twilio};

pub fn router() -> Router<Ferry> {
    Router::new()
        .route(
            "/webhooks/evolution/whatsapp/{token}",
            post(evolution_token),
        )
        .route(
            "/webhooks/evolution/whatsapp/{token}/{event}",
            post(evolution_token_event),
        )
        .route(
            "/webhooks/whatsapp_cloud/{token}",
            axum::routing::get(cloud_handshake).post(cloud_post),
        )
        .route(
            "/webhooks/dialog360/{token}",
            axum::routing::get(dialog360_check).post(dialog360_post),
        )
        .route("/webhooks/twilio/{token}", post(twilio_post))
        .route(
            "/webhooks/evolution/{instance_name}",
            post(evolution_legacy),
        )
}

/// The legacy by-instance-name route (SPEC 4.4), served until the cut-over's cleanup turns it off. Resolved
/// through the legacy tables on every request (no cache: it is being retired), each hit counted per instance so
/// the cut-over can measure a quiet period, and logged as deprecated (once a minute per instance).
async fn evolution_legacy(
    State(ferry): State<Ferry>,
    ApiPath(instance): ApiPath<String>,
    mut headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let unknown = || ApiError::not_found("evolution instance");
    if !ferry.store.legacy_route_enabled().await? {
        return Err(ApiError::new(
            StatusCode::GONE,
            "gone",
            "routing by instance name was retired: use the integration's token URL",
        ));
    }
    if instance.len() > 255 {
        return Err(unknown());
    }
    let route = ferry
        .store
        .route_by_instance_name(&instance)
        .await?
        .filter(|route| route.enabled)
        .ok_or_else(unknown)?;
    if let Err(e) = ferry
        .store
        .record_legacy_hit(&instance, route.integration_id, chrono::Utc::now())
        .await
    {
        tracing::error!(error = %e, instance, "legacy route hit not counted");
    }
    if deprecation_due(&instance) {
        tracing::warn!(
            instance,
            integration = route.integration_id,
            "deprecated: webhook routed by instance name; point the instance at its token URL \
             (ferry integrations cutover)"
        );
    }
    // Kept with a dead letter, so that a replay can route it the same way.
    if let Ok(name) = axum::http::HeaderValue::from_str(&instance) {
        headers.insert(LEGACY_INSTANCE_HEADER, name);
    }
    let delivery = Delivery {
        via: "legacy",
        ..Delivery::token(&ferry, &route, &headers, &body)
    };
    delivery.store_one(evolution::parse(&body)).await
}

pub const LEGACY_INSTANCE_HEADER: &str = "x-ferry-legacy-instance";

/// Whether to log the deprecation warning for this instance now: at most once a minute each.
fn deprecation_due(instance: &str) -> bool {
    static WARNED: std::sync::Mutex<Option<std::collections::HashMap<String, std::time::Instant>>> =
        std::sync::Mutex::new(None);
    let mut warned = WARNED.lock().expect("not poisoned");
    let warned = warned.get_or_insert_with(Default::default);
    let now = std::time::Instant::now();
    match warned.get(instance) {
        Some(at) if now.duration_since(*at) < std::time::Duration::from_secs(60) => false,
        _ => {
            if warned.len() > 10_000 {
                warned.clear();
            }
            warned.insert(instance.to_owned(), now);
            true
        }
    }
}

/// Twilio signs the URL it was given (ours: `FERRY_PUBLIC_URL` + path + query) and the form parameters;
/// it expects TwiML back, `<Response/>` for "no reply".
async fn twilio_post(
    State(ferry): State<Ferry>,
    ApiPath(token): ApiPath<String>,
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<(
    StatusCode,
    [(axum::http::HeaderName, &'static str); 1],
    &'static str,
)> {
    let route = route_of(&ferry, &token, "twilio_whatsapp").await?;
    let secret = integrations::route_secret(&ferry, &route, "auth_token")?.unwrap_or_default();
    let params = twilio::form(&body);
    let url = format!(
        "{}{}",
        ferry.config.public_url(),
        uri.path_and_query()
            .map(|p| p.as_str())
            .unwrap_or(uri.path())
    );
    let signature = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok());
    if secret.is_empty() || !twilio::signature_is_valid(secret.as_bytes(), &url, &params, signature)
    {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            "X-Twilio-Signature does not match the URL and parameters",
        ));
    }
    let delivery = Delivery::token(&ferry, &route, &headers, &body);
    let event = delivery.parsed(twilio::parse(&params)).await?;
    delivery.store(event).await?;
    Ok((
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "text/xml")],
        "<Response/>",
    ))
}

/// 360dialog checks a webhook URL with a GET before saving it.
async fn dialog360_check(
    State(ferry): State<Ferry>,
    ApiPath(token): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    route_of(&ferry, &token, "dialog360").await?;
    Ok(Json(json!({"status": "ok"})))
}

/// Not signed by 360dialog: the token in the path is the credential.
async fn dialog360_post(
    State(ferry): State<Ferry>,
    ApiPath(token): ApiPath<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let route = route_of(&ferry, &token, "dialog360").await?;
    let delivery = Delivery::token(&ferry, &route, &headers, &body);
    delivery.store_all(dialog360::parse(&body)).await
}

async fn evolution_token(
    State(ferry): State<Ferry>,
    ApiPath(token): ApiPath<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    evolution_inner(ferry, token, headers, body).await
}

/// Evolution's "webhook by events" appends the event name to the URL; the body names it too.
async fn evolution_token_event(
    State(ferry): State<Ferry>,
    ApiPath((token, _event)): ApiPath<(String, String)>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    evolution_inner(ferry, token, headers, body).await
}

async fn route_of(ferry: &Ferry, token: &str, provider: &str) -> ApiResult<TokenRoute> {
    let unknown = || ApiError::not_found("webhook token");
    let token = WebhookToken::parse(token).map_err(|_| unknown())?;
    match ferry
        .token_routes
        .resolve(ferry.store.as_ref(), &token)
        .await?
    {
        Some(route) if route.enabled && route.provider == provider => Ok(route),
        _ => Err(unknown()),
    }
}

#[derive(Debug, serde::Deserialize)]
struct Handshake {
    #[serde(rename = "hub.mode")]
    mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    challenge: Option<String>,
}

/// Meta's subscription check: the challenge echoed back when the verify token is this integration's.
async fn cloud_handshake(
    State(ferry): State<Ferry>,
    ApiPath(token): ApiPath<String>,
    axum::extract::Query(hub): axum::extract::Query<Handshake>,
) -> ApiResult<(StatusCode, String)> {
    let route = route_of(&ferry, &token, "whatsapp_cloud").await?;
    let expected = integrations::route_secret(&ferry, &route, "verify_token")?;
    // Constant time: the verify token is a secret.
    let matches = match (&expected, &hub.verify_token) {
        (Some(a), Some(b)) => {
            a.len() == b.len()
                && a.bytes()
                    .zip(b.bytes())
                    .fold(0u8, |acc, (x, y)| acc | (x ^ y))
                    == 0
        }
        _ => false,
    };
    match (hub.mode.as_deref(), hub.challenge) {
        (Some("subscribe"), Some(challenge)) if matches => Ok((StatusCode::OK, challenge)),
        _ => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the verify token does not match",
        )),
    }
}

async fn cloud_post(
    State(ferry): State<Ferry>,
    ApiPath(token): ApiPath<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let route = route_of(&ferry, &token, "whatsapp_cloud").await?;
    let secret = integrations::route_secret(&ferry, &route, "app_secret")?.unwrap_or_default();
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    if secret.is_empty() || !cloud::signature_is_valid(secret.as_bytes(), &body, signature) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            "X-Hub-Signature-256 does not match the body",
        ));
    }
    let delivery = Delivery::token(&ferry, &route, &headers, &body);
    delivery.store_all(cloud::parse(&body)).await
}

async fn evolution_inner(
    ferry: Ferry,
    token: String,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let route = route_of(&ferry, &token, "evolution").await?;
    Delivery::token(&ferry, &route, &headers, &body)
        .store_one(evolution::parse(&body))
        .await
}

/// One routed request: what it becomes, and where it goes when it cannot be stored.
struct Delivery<'a> {
    ferry: &'a Ferry,
    route: &'a TokenRoute,
    /// `token` or `legacy`.
    via: &'static str,
    headers: &'a HeaderMap,
    body: &'a [u8],
}

impl<'a> Delivery<'a> {
    fn token(
        ferry: &'a Ferry,
        route: &'a TokenRoute,
        headers: &'a HeaderMap,
        body: &'a [u8],
    ) -> Self {
        Self {
            ferry,
            route,
            via: "token",
            headers,
            body,
        }
    }

    /// A delivery of one event (Evolution): stored, answered with what became of it.
    async fn store_one(
        &self,
        parsed: Result<crate::webhooks::event::InboundEvent, ParseError>,
    ) -> ApiResult<(StatusCode, Json<Value>)> {
        let event = self.parsed(parsed).await?;
        Ok((StatusCode::OK, Json(self.store(event).await?)))
    }

    /// A body the provider's parser refused: 400, kept as a dead letter.
    async fn parsed<T>(&self, parsed: Result<T, ParseError>) -> ApiResult<T> {
        match parsed {
            Ok(value) => Ok(value),
            Err(ParseError(reason)) => {
                crate::metrics::webhook_event(&self.route.provider, "malformed");
                dead_letter(
                    self.ferry,
                    self.route,
                    self.via,
                    &reason,
                    400,
                    self.headers,
                    self.body,
                )
                .await;
                Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "malformed_webhook",
                    reason,
                ))
            }
        }
    }

    /// Stores every event of a batched delivery, in order. On an error the provider redelivers; what was
    /// stored is de-duplicated then.
    async fn store_all(
        &self,
        parsed: Result<Vec<crate::webhooks::event::InboundEvent>, ParseError>,
    ) -> ApiResult<(StatusCode, Json<Value>)> {
        let mut results = Vec::new();
        for event in self.parsed(parsed).await? {
            results.push(self.store(event).await?);
        }
        Ok((StatusCode::OK, Json(json!({"results": results}))))
    }

    /// Stores one event; a failure is logged and the whole request kept as a dead letter.
    async fn store(&self, event: crate::webhooks::event::InboundEvent) -> ApiResult<Value> {
        let result = ingest(self.ferry, self.route, event).await;
        let outcome = match &result {
            Ok(Outcome::Stored { .. }) => "stored",
            Ok(Outcome::Duplicate { .. }) => "duplicate",
            Ok(Outcome::StatusRaised(_)) => "status",
            Ok(Outcome::Changed(_)) => "changed",
            Ok(Outcome::Ignored(_)) => "ignored",
            Err(_) => "failed",
        };
        crate::metrics::webhook_event(&self.route.provider, outcome);
        match result {
            Ok(outcome @ Outcome::Changed(false)) => {
                // An edit or deletion of a message not stored (yet: it may still be on its way): kept, so a
                // replay applies it once the message is there.
                dead_letter(
                    self.ferry,
                    self.route,
                    self.via,
                    "the message it changes is not stored (yet); replay once it is",
                    200,
                    self.headers,
                    self.body,
                )
                .await;
                Ok(outcome_json(&outcome))
            }
            Ok(outcome) => Ok(outcome_json(&outcome)),
            Err(e) => {
                tracing::error!(error = %e, integration = self.route.integration_id, "webhook not stored");
                dead_letter(
                    self.ferry,
                    self.route,
                    self.via,
                    &e.to_string(),
                    500,
                    self.headers,
                    self.body,
                )
                .await;
                Err(e.into())
            }
        }
    }
}

fn outcome_json(outcome: &Outcome) -> Value {
    match outcome {
        Outcome::Stored {
            message_id,
            conversation_id,
        } => {
            json!({"status": "stored", "message_id": message_id, "conversation_id": conversation_id})
        }
        Outcome::Duplicate { message_id } => {
            json!({"status": "duplicate", "message_id": message_id})
        }
        Outcome::StatusRaised(changed) => json!({"status": "status", "changed": changed}),
        Outcome::Changed(changed) => json!({"status": "changed", "changed": changed}),
        Outcome::Ignored(reason) => json!({"status": "ignored", "reason": reason}),
    }
}

/// Keeps what the provider sent; a failure to keep it is logged (the database may be what failed).
async fn dead_letter(
    ferry: &Ferry,
    route: &TokenRoute,
    via: &str,
    reason: &str,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
) {
    let headers: serde_json::Map<String, Value> = headers
        .iter()
        .filter(|(name, _)| name.as_str() != "authorization")
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned()),
            )
        })
        .collect();
    let letter = NewDeadLetter {
        provider: &route.provider,
        route: via,
        integration_id: route.integration_id,
        reason,
        status_code: status,
        headers: &Value::Object(headers),
        body,
    };
    crate::metrics::dead_letter(&route.provider);
    if let Err(e) = ferry.store.record_dead_letter(&letter).await {
        tracing::error!(error = %e, "dead letter not recorded");
    }
}
