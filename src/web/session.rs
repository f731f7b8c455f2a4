//! Browser sessions: an HttpOnly cookie holding a random token (the database keeps its SHA-256), a CSRF token
//! per session checked on every form post, and throttling of repeated failed sign-ins.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use chrono::{Duration, Utc};
use serde::de::DeserializeOwned;

use super::WebError;
use crate::domain::Role;
use crate::services::Ferry;
use crate::store::{Account, User};

pub const SESSION_COOKIE: &str = "ferry_session";
/// The sign-in form's CSRF token lives in a cookie of its own (double submit): there is no session yet.
pub const LOGIN_CSRF_COOKIE: &str = "ferry_login_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";
pub const CSRF_FIELD: &str = "csrf_token";
pub const SESSION_HOURS: i64 = 12;
/// Sign-in failures within the window before further attempts are refused until it passes: for one email from
/// one client address (a guesser, or someone who forgot their password)…
pub const MAX_FAILURES: i64 = 5;
/// …from one address across emails (one guesser trying many accounts)…
pub const MAX_FAILURES_PER_ADDRESS: i64 = 20;
/// …and for one email from anywhere (guessers spread over many addresses). Only this one can lock a user out
/// from elsewhere, and it takes this many failures, not five.
pub const MAX_FAILURES_PER_EMAIL: i64 = 30;
pub const FAILURE_WINDOW_MINUTES: i64 = 15;

/// The connection's peer address (set when the server is served with connect info).
pub struct PeerAddr(pub Option<std::net::SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerAddr(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0),
        ))
    }
}

/// The client's address for throttling: the connection's peer, or behind a proxy you run
/// (`FERRY_TRUST_FORWARDED_FOR`) the last `X-Forwarded-For` entry, the one that proxy appended. Earlier entries
/// are whatever the client sent and prove nothing.
pub fn client_address(
    trust_forwarded_for: bool,
    headers: &HeaderMap,
    peer: Option<std::net::SocketAddr>,
) -> String {
    // Only the very last entry: if it cannot be read, an earlier one (the client's own) must not take its place.
    let forwarded = trust_forwarded_for
        .then(|| headers.get_all("x-forwarded-for").iter().next_back())
        .flatten()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|a| a.trim().parse::<std::net::IpAddr>().ok());
    match (forwarded, peer) {
        (Some(ip), _) => ip.to_string(),
        (None, Some(peer)) => peer.ip().to_string(),
        (None, None) => "unknown".into(),
    }
}

pub use crate::secrets::{random_token, token_hash};

/// Constant-time comparison of two CSRF tokens.
fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// `Set-Cookie` for a cookie of ours: HttpOnly, SameSite=Lax, Secure when ferry is served over HTTPS.
pub fn set_cookie(
    ferry: &Ferry,
    headers: &HeaderMap,
    name: &str,
    value: &str,
    max_age: i64,
) -> String {
    let secure = if served_over_https(ferry, headers) {
        "; Secure"
    } else {
        ""
    };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")
}

fn served_over_https(ferry: &Ferry, headers: &HeaderMap) -> bool {
    ferry.public_url().starts_with("https://")
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// The signed-in user of this request; without a valid session the browser is sent to the sign-in page.
pub struct SignedIn {
    pub user: User,
    pub csrf_token: String,
    pub token_hash: Vec<u8>,
}

impl SignedIn {
    pub fn check_csrf(&self, sent: Option<&str>) -> Result<(), WebError> {
        match sent {
            Some(sent) if same_token(sent, &self.csrf_token) => Ok(()),
            _ => Err(WebError::Csrf),
        }
    }
}

impl FromRequestParts<Ferry> for SignedIn {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, ferry: &Ferry) -> Result<Self, Self::Rejection> {
        let htmx = parts.headers.contains_key("hx-request");
        let next = return_path(parts, htmx);
        let sign_in = || WebError::SignIn {
            next: next.clone(),
            htmx,
        };
        let token = cookie(&parts.headers, SESSION_COOKIE).ok_or_else(sign_in)?;
        let hash = token_hash(&token);
        match ferry.store.web_session(&hash, Utc::now()).await? {
            Some(session) => Ok(SignedIn {
                user: session.user,
                csrf_token: session.csrf_token,
                token_hash: hash,
            }),
            None => Err(sign_in()),
        }
    }
}

/// Where to go back after signing in: the page being viewed. For htmx requests that is the page around the
/// fragment (`HX-Current-URL`); after a form post, the app's start (a post cannot be repeated by a redirect).
fn return_path(parts: &Parts, htmx: bool) -> String {
    if htmx {
        return parts
            .headers
            .get("hx-current-url")
            .and_then(|v| v.to_str().ok())
            .and_then(|u| url::Url::parse(u).ok())
            .map(|u| match u.query() {
                Some(q) => format!("{}?{q}", u.path()),
                None => u.path().to_owned(),
            })
            .unwrap_or_else(|| "/app".into());
    }
    if parts.method != axum::http::Method::GET {
        return "/app".into();
    }
    // Routers nested under /app see their path without the prefix: the original URI has it.
    parts
        .extensions
        .get::<axum::extract::OriginalUri>()
        .map(|u| &u.0)
        .unwrap_or(&parts.uri)
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/app".into())
}

/// Only pages of the app are followed after signing in: no other site, however the path is disguised.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if (n == "/app" || n.starts_with("/app/") || n.starts_with("/app?"))
                && n.bytes().all(|b| b.is_ascii_graphic())
                && !n.contains('\\') =>
        {
            n.to_owned()
        }
        _ => "/app".to_owned(),
    }
}

/// A signed-in user with a role in the path's `{account_id}`; anyone else gets a 404 page and learns nothing.
pub struct AccountUser {
    pub signed_in: SignedIn,
    pub account: Account,
    pub role: Role,
    /// Every account the user can switch to.
    pub accounts: Vec<(Account, Role)>,
}

impl AccountUser {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Administrator
    }

    pub fn require_admin(&self, what: &str) -> Result<(), WebError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(WebError::Forbidden(format!(
                "Only administrators of {} can {what}.",
                self.account.name
            )))
        }
    }

    /// A state-changing form of an administrator: its CSRF token first, then the role.
    pub fn authorize_post(&self, sent: Option<&str>, what: &str) -> Result<(), WebError> {
        self.signed_in.check_csrf(sent)?;
        self.require_admin(what)
    }

    pub fn user(&self) -> &User {
        &self.signed_in.user
    }
}

impl FromRequestParts<Ferry> for AccountUser {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, ferry: &Ferry) -> Result<Self, Self::Rejection> {
        let signed_in = SignedIn::from_request_parts(parts, ferry).await?;
        let params = axum::extract::RawPathParams::from_request_parts(parts, ferry)
            .await
            .map_err(|_| WebError::NotFound)?;
        let account_id: i64 = params
            .iter()
            .find(|(k, _)| *k == "account_id")
            .and_then(|(_, v)| v.parse().ok())
            .ok_or(WebError::NotFound)?;
        let accounts = ferry.store.user_accounts(signed_in.user.id).await?;
        let (account, role) = accounts
            .iter()
            .find(|(a, _)| a.id == account_id)
            .cloned()
            .ok_or(WebError::NotFound)?;
        Ok(AccountUser {
            signed_in,
            account,
            role,
            accounts,
        })
    }
}

/// A form without fields of its own (only the CSRF token).
pub type NoFields = std::collections::HashMap<String, String>;

/// A form post (urlencoded) with the CSRF token it carried, as a field or as the header htmx sends.
pub struct CsrfForm<T> {
    pub token: Option<String>,
    pub data: T,
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for CsrfForm<T> {
    type Rejection = WebError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let header = req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|_| WebError::BadRequest("The form could not be read.".into()))?;
        let field = form_urlencoded_field(&bytes, CSRF_FIELD);
        let data = serde_urlencoded_from(&bytes)?;
        Ok(CsrfForm {
            token: field.or(header),
            data,
        })
    }
}

fn form_urlencoded_field(body: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn serde_urlencoded_from<T: DeserializeOwned>(body: &[u8]) -> Result<T, WebError> {
    // A percent-encoded NUL: no database text column can hold one.
    if body.windows(3).any(|w| w == b"%00") {
        return Err(WebError::BadRequest(
            "The form holds a NUL character (%00), which no field may contain.".into(),
        ));
    }
    serde_urlencoded::from_bytes(body)
        .map_err(|e| WebError::BadRequest(format!("The form is incomplete or invalid: {e}.")))
}

/// A redirect to `to` that hands the browser its new session cookie and drops the sign-in form's CSRF cookie.
pub fn redirect_signed_in(
    ferry: &Ferry,
    headers: &HeaderMap,
    token: &str,
    to: &str,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut response = axum::response::Redirect::to(to).into_response();
    let max_age = SESSION_HOURS * 3600;
    for cookie in [
        set_cookie(ferry, headers, SESSION_COOKIE, token, max_age),
        set_cookie(ferry, headers, LOGIN_CSRF_COOKIE, "", 0),
    ] {
        if let Ok(v) = axum::http::HeaderValue::from_str(&cookie) {
            response
                .headers_mut()
                .append(axum::http::header::SET_COOKIE, v);
        }
    }
    response
}

/// Starts a session for `user`: the cookie's token and the CSRF token of its forms.
pub async fn start(ferry: &Ferry, user: &User) -> Result<String, WebError> {
    let token = random_token();
    let now = Utc::now();
    ferry
        .store
        .create_web_session(
            &token_hash(&token),
            user.id,
            &random_token(),
            now,
            now + Duration::hours(SESSION_HOURS),
        )
        .await?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_address_is_the_proxys_last_entry_only_when_trusted() {
        let peer = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 5000)));
        let mut headers = HeaderMap::new();
        headers.append(
            "x-forwarded-for",
            "192.0.2.1, 198.51.100.7".parse().unwrap(),
        );
        assert_eq!(client_address(true, &headers, peer), "198.51.100.7");
        assert_eq!(client_address(false, &headers, peer), "127.0.0.1");
        // A second header line is appended by the next proxy: its entry is the last one.
        headers.append("x-forwarded-for", "2001:db8::1".parse().unwrap());
        assert_eq!(client_address(true, &headers, peer), "2001:db8::1");
        // Not an address: the peer, never the text (it would be a key the client chooses), nor an earlier entry.
        let mut junk = HeaderMap::new();
        junk.insert(
            "x-forwarded-for",
            "198.51.100.9, not-an-ip".parse().unwrap(),
        );
        assert_eq!(client_address(true, &junk, peer), "127.0.0.1");
        assert_eq!(client_address(true, &HeaderMap::new(), None), "unknown");
    }

    #[test]
    fn only_app_paths_are_followed_after_signing_in() {
        for good in [
            "/app",
            "/app/accounts/1/inboxes",
            "/app?x=1",
            "/app/accounts/2/import?done=started",
        ] {
            assert_eq!(safe_next(Some(good)), good);
        }
        for bad in [
            "//evil.com",
            "/\t/evil.com",
            "/app/\t/evil.com",
            "/\\evil.com",
            "/app\\..\\evil",
            "https://evil.com/app",
            "/application",
            "/login",
            "",
            "/app/ space",
        ] {
            assert_eq!(safe_next(Some(bad)), "/app", "{bad:?} was followed");
        }
        assert_eq!(safe_next(None), "/app");
    }

    #[test]
    fn csrf_tokens_compare_whole() {
        let t = random_token();
        assert_eq!(t.len(), 43);
        assert!(same_token(&t, &t.clone()));
        assert!(!same_token(&t, &t[..42]));
        assert!(!same_token(&t, &random_token()));
        assert!(!same_token("", &t));
    }
}
