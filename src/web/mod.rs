//! The web admin UI (README: "Web admin UI"): server-rendered pages (askama templates in `templates/`) with a vendored
//! htmx and a small script of our own, no build step. A thin adapter over the same services the API uses;
//! administrator actions are hidden from agents and refused by the server anyway.

mod audit;
mod auth;
mod conversations;
mod import;
mod inbox_form;
mod inboxes;
mod integration_form;
mod integrations;
mod members;
mod migration;
pub mod session;

use askama::Template;
use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};

use crate::domain::Role;
use crate::services::{Ferry, ServiceError};
use crate::store::StoreError;
use session::AccountUser;

pub fn router() -> Router<Ferry> {
    let app = Router::new()
        .merge(auth::app_router())
        .merge(inboxes::router())
        .merge(inbox_form::router())
        .merge(conversations::router())
        .merge(audit::router())
        .merge(migration::router())
        .merge(integrations::router())
        .merge(integration_form::router())
        .merge(import::router())
        .merge(members::router())
        .fallback(|| async { WebError::NotFound });
    Router::new()
        .merge(auth::router())
        .merge(members::public_router())
        .nest("/app", app)
        .route("/static/{*path}", get(static_file))
        // Browsers ask for it on every site whatever the page names.
        .route(
            "/favicon.ico",
            get(|| static_file(axum::extract::Path("favicon.svg".into()))),
        )
}

/// Why a page could not be shown, as a page (or, for htmx, a message the script shows).
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("sign in first")]
    SignIn { next: String, htmx: bool },
    #[error("This page does not exist, or you have no access to it.")]
    NotFound,
    #[error("{0}")]
    Forbidden(String),
    #[error("This form has expired or did not come from ferry. Reload the page and try again.")]
    Csrf,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("Something went wrong on our side; it has been logged.")]
    Internal(String),
}

impl From<StoreError> for WebError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) => WebError::NotFound,
            StoreError::Conflict { .. } => WebError::Conflict(
                "This conflicts with a change made meanwhile. Reload the page and try again."
                    .into(),
            ),
            other => WebError::Internal(other.to_string()),
        }
    }
}

impl From<ServiceError> for WebError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound(_) => WebError::NotFound,
            ServiceError::Validation { field, message } => {
                WebError::BadRequest(format!("{field}: {message}"))
            }
            ServiceError::Conflict(m) => WebError::Conflict(m),
            other => WebError::Internal(other.to_string()),
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    title: String,
    message: String,
    status: u16,
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let (status, title) = match &self {
            WebError::SignIn { next, htmx } => {
                let to = format!("/login?next={}", urlencode(next));
                // An XHR follows a redirect by itself and htmx would swap the sign-in page into a fragment:
                // tell htmx to navigate instead.
                let mut response = if *htmx {
                    StatusCode::OK.into_response()
                } else {
                    Redirect::to(&to).into_response()
                };
                if *htmx && let Ok(v) = HeaderValue::from_str(&to) {
                    response.headers_mut().insert("hx-redirect", v);
                }
                return response;
            }
            WebError::NotFound => (StatusCode::NOT_FOUND, "Not found"),
            WebError::Forbidden(_) => (StatusCode::FORBIDDEN, "Not allowed"),
            WebError::Csrf => (StatusCode::FORBIDDEN, "Form expired"),
            WebError::BadRequest(_) => (StatusCode::BAD_REQUEST, "Check the form"),
            WebError::Conflict(_) => (StatusCode::CONFLICT, "Not possible right now"),
            WebError::Internal(detail) => {
                tracing::error!(error = %detail, "web page failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong")
            }
        };
        let message = self.to_string();
        let page = ErrorPage {
            title: title.into(),
            message: message.clone(),
            status: status.as_u16(),
        };
        let mut response = (status, html(&page)).into_response();
        // The script shows this message when an htmx request fails (headers carry ASCII only).
        let ascii: String = message
            .chars()
            .filter(|c| c.is_ascii() && !c.is_ascii_control())
            .collect();
        if let Ok(v) = HeaderValue::from_str(&ascii) {
            response.headers_mut().insert("x-ferry-message", v);
        }
        response
    }
}

pub type WebResult<T> = Result<T, WebError>;

/// What a refused form says when its page comes back: a validation or conflict message (`field: why.`);
/// anything else is an error page.
pub fn refusal(e: ServiceError) -> Result<String, WebError> {
    match e {
        ServiceError::Validation { field, message } => Ok(format!(
            "{}: {message}.",
            field
                .replace('_', " ")
                .replace("provider config", "provider settings")
        )),
        ServiceError::Conflict(message) => Ok(format!("{message}.")),
        other => Err(other.into()),
    }
}

/// A page answered again with the reason its form or action was refused (its `chrome.error`), as 422.
pub fn refused_page<T: Template>(page: &T) -> Response {
    (StatusCode::UNPROCESSABLE_ENTITY, html(page)).into_response()
}

/// A rendered template as an HTML response; a template that fails to render is a logged 500.
pub fn html<T: Template>(template: &T) -> Response {
    match template.render() {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
                // No framing (clickjacking of one-click actions such as Reveal); scripts only from ferry.
                (header::X_FRAME_OPTIONS, "DENY"),
                (header::CONTENT_SECURITY_POLICY, CSP),
                (header::REFERRER_POLICY, "same-origin"),
            ],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "template error").into_response()
        }
    }
}

/// Inline style attributes (progress widths) need 'unsafe-inline' for styles; scripts never run inline.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
    connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Is this request made by htmx (answer with a fragment)?
pub fn is_htmx(headers: &HeaderMap) -> bool {
    headers.contains_key("hx-request")
}

/// What every page's frame shows: who is signed in, the account and its switcher, the active section.
pub struct Chrome {
    pub user_name: String,
    pub user_email: String,
    pub csrf_token: String,
    pub account_id: i64,
    pub account_name: String,
    pub role_label: &'static str,
    pub is_admin: bool,
    pub installation_admin: bool,
    pub accounts: Vec<AccountLink>,
    pub section: &'static str,
    pub notice: Option<String>,
    /// A refusal or failure, shown as an error (not as a notice).
    pub error: Option<String>,
}

pub struct AccountLink {
    pub id: i64,
    pub name: String,
    pub current: bool,
}

impl Chrome {
    pub fn new(access: &AccountUser, section: &'static str) -> Self {
        let user = access.user();
        Chrome {
            user_name: user.name.clone(),
            user_email: user.email.clone(),
            csrf_token: access.signed_in.csrf_token.clone(),
            account_id: access.account.id,
            account_name: access.account.name.clone(),
            role_label: match access.role {
                Role::Administrator => "Administrator",
                Role::Agent => "Agent",
            },
            is_admin: access.is_admin(),
            installation_admin: user.installation_admin,
            accounts: access
                .accounts
                .iter()
                .map(|(a, _)| AccountLink {
                    id: a.id,
                    name: a.name.clone(),
                    current: a.id == access.account.id,
                })
                .collect(),
            section,
            notice: None,
            error: None,
        }
    }

    pub fn with_notice(mut self, notice: Option<String>) -> Self {
        self.notice = notice;
        self
    }
}

/// 12,345
pub fn count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// "2026-11-26 07:41 UTC"
pub fn when(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// "3 s", "4 min 5 s", "2 h 10 min"
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as i64;
    match s {
        0 => "under 1 s".to_owned(),
        1..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

const APP_CSS: &str = include_str!("../../static/app.css");
const APP_JS: &str = include_str!("../../static/app.js");
const HTMX_JS: &str = include_str!("../../static/vendor/htmx.min.js");
const FAVICON: &str = include_str!("../../static/favicon.svg");

/// The stylesheet, scripts and icon, compiled into the binary (one file to deploy).
async fn static_file(axum::extract::Path(path): axum::extract::Path<String>) -> Response {
    let (body, content_type) = match path.as_str() {
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "vendor/htmx.min.js" => (HTMX_JS, "text/javascript; charset=utf-8"),
        "favicon.svg" => (FAVICON, "image/svg+xml"),
        _ => return WebError::NotFound.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_durations_read_well() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(count(-4500), "-4,500");
        assert_eq!(duration(0.4), "under 1 s");
        assert_eq!(duration(7.0), "7 s");
        assert_eq!(duration(59.6), "1 min 0 s");
        assert_eq!(duration(125.0), "2 min 5 s");
        assert_eq!(duration(7800.0), "2 h 10 min");
    }
}
