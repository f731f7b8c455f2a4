//! Provider webhook routes (README: "Receiving webhooks"). Unknown or disabled token 404, malformed body 400 (kept as a dead letter
//! with its raw body and headers), stored or duplicate 200.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};
use super::extract::ApiPath;
use crate::domain::WebhookToken;
use crate::services::Ferry;
use crate::store::{NewDeadLetter, TokenRoute};
use crate::webhooks::body::BodyError;
use crate::webhooks::event::{InboundEvent, NumberedEvent, ParseError};
use crate::webhooks::ingest::{IngestOutcome, ingest, route_of_number};
use crate::webhooks::{cloud, dialog360, evolution, integrations, twilio};

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
        .route(
            "/webhooks/twilio/{token}",
            axum::routing::get(twilio_get).post(twilio_post),
        )
        .route(
            "/webhooks/evolution/{instance_name}",
            post(evolution_legacy),
        )
        // Evolution's "webhook by events" appends the event to the legacy URL too.
        .route(
            "/webhooks/evolution/{instance_name}/{event}",
            post(evolution_legacy_event),
        )
}

/// The legacy by-instance-name route (README: "Cutting over from the legacy layout"), served until the cut-over's cleanup turns it off. Resolved
/// through the legacy tables on every request (no cache: it is being retired), each hit counted per instance so
/// the cut-over can measure a quiet period, and logged as deprecated (once a minute per instance).
async fn evolution_legacy(
    State(ferry): State<Ferry>,
    ApiPath(instance): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    legacy_inner(ferry, instance, headers, body).await
}

async fn evolution_legacy_event(
    State(ferry): State<Ferry>,
    ApiPath((instance, _event)): ApiPath<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    legacy_inner(ferry, instance, headers, body).await
}

async fn legacy_inner(
    ferry: Ferry,
    instance: String,
    mut headers: HeaderMap,
    body: Body,
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
    let body = read_body(&ferry, &route, "legacy", &headers, body).await?;
    let delivery = Delivery {
        via: "legacy",
        ..Delivery::token(&ferry, &route, &headers, &body.bytes)
    };
    delivery.store_one(evolution::parse(&body.bytes)).await
}

pub use crate::webhooks::LEGACY_INSTANCE_HEADER;

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
    body: Body,
) -> ApiResult<Twiml> {
    let route = route_of(&ferry, &token, "twilio_whatsapp").await?;
    let body = read_body(&ferry, &route, "token", &headers, body).await?;
    let params = twilio::form(&body.bytes);
    twilio_inner(
        &ferry,
        &route,
        &uri,
        &headers,
        &body.bytes,
        &params,
        &params,
    )
    .await
}

/// A Twilio webhook configured as GET: the parameters are the query string, and the signature covers the URL
/// alone (with that query string).
async fn twilio_get(
    State(ferry): State<Ferry>,
    ApiPath(token): ApiPath<String>,
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
    headers: HeaderMap,
) -> ApiResult<Twiml> {
    let route = route_of(&ferry, &token, "twilio_whatsapp").await?;
    let query = uri.query().unwrap_or_default().as_bytes().to_vec();
    let params = twilio::form(&query);
    twilio_inner(&ferry, &route, &uri, &headers, &query, &params, &Vec::new()).await
}

type Twiml = (
    StatusCode,
    [(axum::http::HeaderName, &'static str); 1],
    &'static str,
);

async fn twilio_inner(
    ferry: &Ferry,
    route: &TokenRoute,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    raw: &[u8],
    params: &twilio::Params,
    signed_params: &twilio::Params,
) -> ApiResult<Twiml> {
    let secret = integrations::route_secret(ferry, route, "auth_token")?.unwrap_or_default();
    let url = format!(
        "{}{}",
        ferry.public_url(),
        uri.path_and_query()
            .map(|p| p.as_str())
            .unwrap_or(uri.path())
    );
    let signature = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok());
    if secret.is_empty()
        || !twilio::signature_is_valid(secret.as_bytes(), &url, signed_params, signature)
    {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            "X-Twilio-Signature does not match the URL and parameters",
        ));
    }
    let delivery = Delivery::token(ferry, route, headers, raw);
    let event = delivery.parsed(twilio::parse(params)).await?;
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
    body: Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let route = route_of(&ferry, &token, "dialog360").await?;
    let body = read_body(&ferry, &route, "token", &headers, body).await?;
    let delivery = Delivery::token(&ferry, &route, &headers, &body.bytes);
    delivery.store_numbered(dialog360::parse(&body.bytes)).await
}

async fn evolution_token(
    State(ferry): State<Ferry>,
    ApiPath(token): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    evolution_inner(ferry, token, headers, body).await
}

/// Evolution's "webhook by events" appends the event name to the URL; the body names it too.
async fn evolution_token_event(
    State(ferry): State<Ferry>,
    ApiPath((token, _event)): ApiPath<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    evolution_inner(ferry, token, headers, body).await
}

async fn route_of(ferry: &Ferry, token: &str, provider: &'static str) -> ApiResult<TokenRoute> {
    // Counted, not stored: keeping what anyone may post to a wrong URL would let them fill the disk.
    let refuse = |reason| {
        crate::metrics::webhook_refused(provider, reason);
        ApiError::not_found("webhook token")
    };
    let token = WebhookToken::parse(token).map_err(|_| refuse("malformed_token"))?;
    match ferry
        .token_routes
        .resolve(ferry.store.as_ref(), &token)
        .await?
    {
        Some(route) if route.provider != provider => Err(refuse("other_provider")),
        Some(route) if !route.enabled => Err(refuse("disabled_token")),
        Some(route) => Ok(route),
        None => Err(refuse("unknown_token")),
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
    body: Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let route = route_of(&ferry, &token, "whatsapp_cloud").await?;
    let body = read_body(&ferry, &route, "token", &headers, body).await?;
    let body = &body.bytes;
    let secret = integrations::route_secret(&ferry, &route, "app_secret")?.unwrap_or_default();
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    if secret.is_empty() || !cloud::signature_is_valid(secret.as_bytes(), body, signature) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            "X-Hub-Signature-256 does not match the body",
        ));
    }
    let delivery = Delivery::token(&ferry, &route, &headers, body);
    delivery.store_numbered(cloud::parse(body)).await
}

async fn evolution_inner(
    ferry: Ferry,
    token: String,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let route = route_of(&ferry, &token, "evolution").await?;
    let body = read_body(&ferry, &route, "token", &headers, body).await?;
    let delivery = Delivery::token(&ferry, &route, &headers, &body.bytes);
    let parsed = evolution::parse(&body.bytes);
    // Evolution's global webhook posts every instance to one URL: another instance's message is not this
    // integration's to store (its events ferry ignores anyway are answered `ignored` below, not kept).
    if !matches!(parsed, Ok(InboundEvent::Ignored { .. }))
        && let Some(sender) = crate::webhooks::evolution::foreign_instance(&route, &body.bytes)
    {
        crate::metrics::webhook_event(&route.provider, "dead_letter");
        delivery.keep("instance mismatch", 200).await;
        return Ok((
            StatusCode::OK,
            Json(
                json!({"status": "dead_letter", "reason": "instance mismatch", "instance": sender}),
            ),
        ));
    }
    delivery.store_one(parsed).await
}

/// Reads a webhook's body under `FERRY_WEBHOOK_MAX_BODY_BYTES` and the memory budget. A body over the limit is
/// answered 413 and kept as a dead letter with its headers and size (not its bytes).
async fn read_body(
    ferry: &Ferry,
    route: &TokenRoute,
    via: &'static str,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<crate::webhooks::body::Body> {
    match ferry.webhook_bodies.read(headers, body).await {
        Ok(body) => Ok(body),
        Err(e @ BodyError::TooLarge { size, .. }) => {
            crate::metrics::webhook_event(&route.provider, "too_large");
            let reason = e.to_string();
            dead_letter(ferry, route, via, &reason, 413, headers, &[], size as i64).await;
            Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                reason,
            ))
        }
        // Kept without their bytes (none, or part of them, were held): the provider retries a 503, and a
        // broken or stalled upload is at least on record.
        Err(e @ (BodyError::Busy | BodyError::Unreadable(_) | BodyError::TimedOut)) => {
            let (status, code) = match e {
                BodyError::Busy => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
                BodyError::TimedOut => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
                _ => (StatusCode::BAD_REQUEST, "unreadable_body"),
            };
            crate::metrics::webhook_event(&route.provider, code);
            let reason = e.to_string();
            let size = declared_length(headers).unwrap_or(0);
            dead_letter(
                ferry,
                route,
                via,
                &reason,
                status.as_u16(),
                headers,
                &[],
                size,
            )
            .await;
            Err(ApiError::new(status, code, reason))
        }
    }
}

fn declared_length(headers: &HeaderMap) -> Option<i64> {
    headers
        .get(axum::http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
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
        parsed: Result<InboundEvent, ParseError>,
    ) -> ApiResult<(StatusCode, Json<Value>)> {
        let event = self.parsed(parsed).await?;
        Ok((StatusCode::OK, Json(self.store(event).await?)))
    }

    /// Keeps the whole request as a dead letter.
    async fn keep(&self, reason: &str, status: u16) {
        dead_letter(
            self.ferry,
            self.route,
            self.via,
            reason,
            status,
            self.headers,
            self.body,
            self.body.len() as i64,
        )
        .await;
    }

    /// A delivery that may carry several business numbers (Cloud, 360dialog): each event stored by the
    /// integration of the account that owns its number. A number nobody owns is answered 200 and the request
    /// kept as a dead letter (`unknown phone_number_id`): never stored in another number's inbox.
    async fn store_numbered(
        &self,
        parsed: Result<Vec<NumberedEvent>, ParseError>,
    ) -> ApiResult<(StatusCode, Json<Value>)> {
        let mut results = Vec::new();
        let mut kept = false;
        for NumberedEvent {
            phone_number_id,
            event,
        } in self.parsed(parsed).await?
        {
            let number = phone_number_id.as_deref();
            let routed = match route_of_number(self.ferry, self.route, number).await {
                Ok(routed) => routed,
                Err(e) => {
                    tracing::error!(error = %e, integration = self.route.integration_id, "webhook not routed");
                    self.keep(&e.to_string(), 500).await;
                    return Err(e.into());
                }
            };
            match routed {
                Some(route) => results.push(self.store_on(&route, event).await?),
                None => {
                    crate::metrics::webhook_event(&self.route.provider, "dead_letter");
                    if !kept {
                        self.keep("unknown phone_number_id", 200).await;
                        kept = true;
                    }
                    results.push(
                        json!({"status": "dead_letter", "reason": "unknown phone_number_id",
                                        "phone_number_id": number}),
                    );
                }
            }
        }
        Ok((StatusCode::OK, Json(json!({"results": results}))))
    }

    /// A body the provider's parser refused: 400, kept as a dead letter.
    async fn parsed<T>(&self, parsed: Result<T, ParseError>) -> ApiResult<T> {
        match parsed {
            Ok(value) => Ok(value),
            Err(ParseError(reason)) => {
                crate::metrics::webhook_event(&self.route.provider, "malformed");
                self.keep(&reason, 400).await;
                Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "malformed_webhook",
                    reason,
                ))
            }
        }
    }

    /// Stores one event; a failure is logged and the whole request kept as a dead letter.
    async fn store(&self, event: InboundEvent) -> ApiResult<Value> {
        self.store_on(self.route, event).await
    }

    /// Stores one event through `route` (this request's integration, or the one owning the event's number).
    async fn store_on(&self, route: &TokenRoute, event: InboundEvent) -> ApiResult<Value> {
        let result = ingest(self.ferry, route, event).await;
        let outcome = match &result {
            Ok(IngestOutcome::Stored { .. }) => "stored",
            Ok(IngestOutcome::Duplicate { .. }) => "duplicate",
            Ok(IngestOutcome::StatusRaised(_)) => "status",
            Ok(IngestOutcome::Changed(_)) => "changed",
            Ok(IngestOutcome::Ignored(_)) => "ignored",
            Err(_) => "failed",
        };
        crate::metrics::webhook_event(&route.provider, outcome);
        match result {
            Ok(outcome @ IngestOutcome::Changed(false)) => {
                // An edit or deletion of a message not stored (yet: it may still be on its way): kept, so a
                // replay applies it once the message is there.
                self.keep(
                    "the message it changes is not stored (yet); replay once it is",
                    200,
                )
                .await;
                Ok(outcome_json(&outcome))
            }
            Ok(outcome) => Ok(outcome_json(&outcome)),
            Err(e) => {
                tracing::error!(error = %e, integration = route.integration_id, "webhook not stored");
                self.keep(&e.to_string(), 500).await;
                Err(e.into())
            }
        }
    }
}

fn outcome_json(outcome: &IngestOutcome) -> Value {
    match outcome {
        IngestOutcome::Stored {
            message_id,
            conversation_id,
        } => {
            json!({"status": "stored", "message_id": message_id, "conversation_id": conversation_id})
        }
        IngestOutcome::Duplicate { message_id } => {
            json!({"status": "duplicate", "message_id": message_id})
        }
        IngestOutcome::StatusRaised(changed) => json!({"status": "status", "changed": changed}),
        IngestOutcome::Changed(changed) => json!({"status": "changed", "changed": changed}),
        IngestOutcome::Ignored(reason) => json!({"status": "ignored", "reason": reason}),
    }
}

/// What a dead letter keeps of a credential header: its name, never its value.
pub const REDACTED: &str = "[redacted]";

/// Headers that may carry a credential (`apikey` from Evolution, `D360-API-KEY`, cookies, bearer tokens…).
fn is_credential(name: &str) -> bool {
    const WORDS: [&str; 8] = [
        "auth",
        "cookie",
        "key",
        "token",
        "secret",
        "password",
        "session",
        "credential",
    ];
    WORDS.iter().any(|word| name.contains(word))
}

/// Keeps what the provider sent; a failure to keep it is logged (the database may be what failed).
#[allow(clippy::too_many_arguments)]
async fn dead_letter(
    ferry: &Ferry,
    route: &TokenRoute,
    via: &str,
    reason: &str,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    body_bytes: i64,
) {
    let headers: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(name, value)| {
            let kept = if is_credential(name.as_str()) {
                REDACTED.to_owned()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            (name.as_str().to_owned(), Value::String(kept))
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
        body_bytes,
    };
    crate::metrics::dead_letter(&route.provider);
    if let Err(e) = ferry.store.record_dead_letter(&letter).await {
        tracing::error!(error = %e, "dead letter not recorded");
    }
}
