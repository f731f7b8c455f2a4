//! Extractors that answer bad input in the API's error shape, and the authentication / authorization ones.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::domain::{ApiToken, Role};
use crate::services::Ferry;
use crate::store::User;

/// JSON body: 400 for malformed JSON, 413 for an oversized body, 415 without a JSON content type, 422 for
/// unknown fields, wrong types or a NUL character in a string (no database text column can hold one).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(not_json());
        }
        let bytes = RawBody::from_request(req, state).await?.0;
        if has_nul_escape(&bytes) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "text may not contain the NUL character (\\u0000)",
            ));
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn not_json() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "send the body as JSON with Content-Type: application/json",
    )
}

/// `application/json` or `application/…+json`, as axum's own JSON extractor accepts.
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|subtype| subtype.ends_with("+json"))
}

/// Whether the JSON text holds a `\u0000` escape (JSON can carry NUL no other way): a `u0000` preceded by an odd
/// run of backslashes.
fn has_nul_escape(json: &[u8]) -> bool {
    json.windows(5).enumerate().any(|(i, w)| {
        w == b"u0000" && json[..i].iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 1
    })
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let text = rejection.body_text();
    match rejection {
        JsonRejection::JsonDataError(_) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            strip_axum_prefix(&text),
        ),
        JsonRejection::JsonSyntaxError(_) => {
            ApiError::bad_request("malformed_json", strip_axum_prefix(&text))
        }
        JsonRejection::MissingJsonContentType(_) => not_json(),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is too large",
        ),
        other => ApiError::bad_request("bad_request", other.body_text()),
    }
}

/// A raw body (webhooks verify signatures over the exact bytes): 413 in the error shape when oversized, 408 when
/// it does not arrive in time.
pub struct RawBody(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::body::Bytes::from_request(req, state).await {
            Ok(bytes) => Ok(RawBody(bytes)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the request body is too large",
                ))
            }
            Err(rejection) if crate::connections::is_read_timeout(&rejection) => {
                Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    "the request body did not arrive within FERRY_BODY_READ_TIMEOUT_SECONDS",
                ))
            }
            Err(rejection) => Err(ApiError::bad_request("bad_request", rejection.body_text())),
        }
    }
}

fn strip_axum_prefix(text: &str) -> String {
    text.split_once(": ")
        .map(|(_, rest)| rest)
        .unwrap_or(text)
        .to_owned()
}

/// Path parameters: 400 when an id is not a number.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e: PathRejection| ApiError::bad_request("invalid_path", e.body_text()))
    }
}

/// Query string: 400 when a parameter has the wrong type.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // A percent-encoded NUL: no database text column can hold one.
        if parts.uri.query().is_some_and(|q| q.contains("%00")) {
            return Err(ApiError::bad_request(
                "invalid_query",
                "a query parameter may not contain the NUL character (%00)",
            ));
        }
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e: QueryRejection| ApiError::bad_request("invalid_query", e.body_text()))
    }
}

/// The user behind the `api_access_token` header or `Authorization: Bearer`.
pub struct CurrentUser(pub User);

impl FromRequestParts<Ferry> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ferry: &Ferry) -> Result<Self, Self::Rejection> {
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        let raw = match (header("api_access_token"), header("authorization")) {
            (Some(token), _) => token,
            (None, Some(auth)) => auth
                .strip_prefix("Bearer ")
                .or_else(|| auth.strip_prefix("bearer "))
                .map(str::trim)
                .ok_or_else(|| ApiError::invalid_token("use Authorization: Bearer <token>"))?,
            (None, None) => {
                return Err(ApiError::unauthorized(
                    "send your API token in the api_access_token header or as Authorization: Bearer",
                ));
            }
        };
        let token = ApiToken::parse(raw).map_err(|e| ApiError::invalid_token(e.to_string()))?;
        match ferry.authenticate(&token).await? {
            Some(user) => Ok(CurrentUser(user)),
            None => Err(ApiError::invalid_token("this API token is not valid")),
        }
    }
}

/// A user with a role in the path's `{account_id}`. A user of another account learns nothing: 404.
pub struct AccountAccess {
    pub user: User,
    pub account_id: i64,
    pub role: Role,
}

impl AccountAccess {
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self.role {
            Role::Administrator => Ok(()),
            Role::Agent => Err(ApiError::forbidden(
                "this action needs the administrator role in this account",
            )),
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Administrator
    }
}

impl FromRequestParts<Ferry> for AccountAccess {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ferry: &Ferry) -> Result<Self, Self::Rejection> {
        let CurrentUser(user) = CurrentUser::from_request_parts(parts, ferry).await?;
        let params = axum::extract::RawPathParams::from_request_parts(parts, ferry)
            .await
            .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))?;
        let raw = params
            .iter()
            .find(|(k, _)| *k == "account_id")
            .map(|(_, v)| v.to_owned())
            .ok_or_else(|| ApiError::internal(&"route without {account_id} uses AccountAccess"))?;
        let account_id: i64 = raw
            .parse()
            .map_err(|_| ApiError::bad_request("invalid_path", "account_id must be a number"))?;
        match ferry.store.account_role(account_id, user.id).await? {
            Some(role) => Ok(AccountAccess {
                user,
                account_id,
                role,
            }),
            None => Err(ApiError::not_found("account")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_escaped_nul_is_a_nul() {
        assert!(has_nul_escape(br#"{"name": "\u0000"}"#));
        assert!(has_nul_escape(br#"{"name": "a\\\u0000"}"#));
        assert!(
            !has_nul_escape(br#"{"name": "\\u0000"}"#),
            "an escaped backslash, then text"
        );
        assert!(!has_nul_escape(br#"{"name": "u0000"}"#));
        assert!(!has_nul_escape(br#"{"name": "\u0001"}"#));
    }

    #[test]
    fn json_content_types() {
        let with = |ct: &str| {
            let mut h = axum::http::HeaderMap::new();
            h.insert(axum::http::header::CONTENT_TYPE, ct.parse().unwrap());
            is_json(&h)
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=utf-8"));
        assert!(with("application/merge-patch+json"));
        assert!(!with("text/plain"));
        assert!(!with("application/x-www-form-urlencoded"));
        assert!(!is_json(&axum::http::HeaderMap::new()));
    }
}
