//! Sign-in, sign-out and the account chooser.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use chrono::{Duration, Utc};
use serde::Deserialize;

use super::session::{self, CsrfForm, LOGIN_CSRF_COOKIE, NoFields, SESSION_COOKIE, SignedIn};
use super::{WebError, WebResult, html};
use crate::password;
use crate::services::Ferry;

pub fn router() -> Router<Ferry> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/app") }))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
}

pub fn app_router() -> Router<Ferry> {
    Router::new().route("/", get(accounts)).route(
        "/accounts/{account_id}",
        get(
            |axum::extract::Path(id): axum::extract::Path<i64>| async move {
                Redirect::to(&format!("/app/accounts/{id}/inboxes"))
            },
        ),
    )
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    csrf_token: String,
    email: String,
    next: String,
    error: Option<String>,
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

fn login_form(
    ferry: &Ferry,
    headers: &HeaderMap,
    email: String,
    next: String,
    error: Option<String>,
    status: axum::http::StatusCode,
) -> Response {
    let csrf_token = session::random_token();
    let page = LoginPage {
        csrf_token: csrf_token.clone(),
        email,
        next,
        error,
    };
    let mut response = (status, html(&page)).into_response();
    let cookie = session::set_cookie(ferry, headers, LOGIN_CSRF_COOKIE, &csrf_token, 3600);
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

async fn login_page(
    State(ferry): State<Ferry>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    let next = session::safe_next(q.next.as_deref());
    // Already signed in: straight on.
    if let Some(token) = session::cookie(&headers, SESSION_COOKIE)
        && let Ok(Some(_)) = ferry
            .store
            .web_session(&session::token_hash(&token), Utc::now())
            .await
    {
        return Redirect::to(&next).into_response();
    }
    login_form(
        &ferry,
        &headers,
        String::new(),
        next,
        None,
        axum::http::StatusCode::OK,
    )
}

#[derive(Deserialize)]
struct LoginForm {
    email: String,
    password: String,
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    csrf_token: String,
}

async fn login(
    State(ferry): State<Ferry>,
    peer: session::PeerAddr,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    use axum::http::StatusCode;
    let next = session::safe_next(form.next.as_deref());
    // No address holds a NUL, and PostgreSQL text cannot: it is dropped rather than looked up.
    let email = form.email.trim().to_ascii_lowercase().replace('\0', "");
    let expected = session::cookie(&headers, LOGIN_CSRF_COOKIE);
    if expected.as_deref() != Some(form.csrf_token.as_str()) || form.csrf_token.is_empty() {
        let message = "The sign-in form expired. Please try again.".to_owned();
        return login_form(
            &ferry,
            &headers,
            email,
            next,
            Some(message),
            StatusCode::FORBIDDEN,
        );
    }
    let now = Utc::now();
    let since = now - Duration::minutes(session::FAILURE_WINDOW_MINUTES);
    let fail = |message: String, status| {
        login_form(
            &ferry,
            &headers,
            email.clone(),
            next.clone(),
            Some(message),
            status,
        )
    };
    // Every attempt counts as a failure until the password is verified, and is counted in the same
    // transaction that records it: parallel guesses cannot all pass a check made before any was recorded.
    // Three counters, so that guessing from one address cannot lock the user out everywhere.
    let address = session::client_address(ferry.config.trust_forwarded_for, &headers, peer.0);
    let pair = format!("pair {address} {email}");
    let by_address = format!("address {address}");
    let by_email = format!("email {email}");
    let counters = [
        (&pair, session::MAX_FAILURES),
        (&by_address, session::MAX_FAILURES_PER_ADDRESS),
        (&by_email, session::MAX_FAILURES_PER_EMAIL),
    ];
    let mut locked = None;
    for (key, limit) in counters {
        match ferry.store.record_login_failure(key, now, since).await {
            Ok((n, Some(oldest))) if n > limit => locked = locked.max(Some(oldest)),
            Ok(_) => {}
            Err(e) => return WebError::from(e).into_response(),
        }
    }
    if let Some(oldest) = locked {
        return fail(locked_message(oldest), StatusCode::TOO_MANY_REQUESTS);
    }
    let user = match ferry.store.find_user_by_email(&email).await {
        Ok(u) => u,
        Err(e) => return WebError::from(e).into_response(),
    };
    // Hash work is done for unknown emails too, so timing does not tell which emails exist.
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let password = form.password.clone();
    let verified = tokio::task::spawn_blocking(move || match stored {
        Some(h) => password::verify(&password, &h),
        None => {
            password::verify(&password, &DUMMY_HASH);
            false
        }
    })
    .await
    .unwrap_or(false);
    let Some(user) = user.filter(|_| verified) else {
        return fail(
            "That email and password do not match an account.".into(),
            StatusCode::UNAUTHORIZED,
        );
    };
    // The address's earlier failures stay (signing in to one's own account must not reset a guesser's count);
    // only this attempt, which was right, is taken back: many people signing in behind one address are fine.
    let cleared = async {
        ferry.store.clear_login_failures(&pair).await?;
        ferry.store.clear_login_failures(&by_email).await?;
        ferry.store.forgive_login_attempt(&by_address).await
    };
    if let Err(e) = cleared.await {
        return WebError::from(e).into_response();
    }
    // A new session on every sign-in (no fixation); the one this browser had ends.
    if let Some(previous) = session::cookie(&headers, SESSION_COOKIE) {
        let _ = ferry
            .store
            .delete_web_session(&session::token_hash(&previous))
            .await;
    }
    let token = match session::start(&ferry, &user).await {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    ferry
        .audit(
            None,
            Some(user.id),
            "user.signed_in",
            format!("user:{}", user.id),
            serde_json::json!({}),
        )
        .await;
    session::redirect_signed_in(&ferry, &headers, &token, &next)
}

/// A real argon2 hash of a throwaway password: verifying against it costs what a real check costs.
static DUMMY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| password::hash(&session::random_token()).unwrap_or_default());

fn locked_message(oldest: chrono::DateTime<Utc>) -> String {
    let until = oldest + Duration::minutes(session::FAILURE_WINDOW_MINUTES);
    let minutes = ((until - Utc::now()).num_seconds() as f64 / 60.0)
        .ceil()
        .max(1.0) as i64;
    format!(
        "Too many failed sign-ins from here or for this email. Try again in {minutes} minute{}.",
        if minutes == 1 { "" } else { "s" }
    )
}

/// Ends the session on the server and in the browser. A session that already expired just loses its cookie.
async fn logout(
    State(ferry): State<Ferry>,
    headers: HeaderMap,
    form: CsrfForm<NoFields>,
) -> WebResult<Response> {
    if let Some(token) = session::cookie(&headers, SESSION_COOKIE) {
        let hash = session::token_hash(&token);
        if let Some(live) = ferry.store.web_session(&hash, Utc::now()).await? {
            let signed_in = SignedIn {
                user: live.user,
                csrf_token: live.csrf_token,
                token_hash: hash.clone(),
            };
            signed_in.check_csrf(form.token.as_deref())?;
            ferry.store.delete_web_session(&hash).await?;
        }
    }
    let mut response = Redirect::to("/login").into_response();
    let cookie = session::set_cookie(&ferry, &headers, SESSION_COOKIE, "", 0);
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(response)
}

#[derive(Template)]
#[template(path = "accounts.html")]
struct AccountsPage {
    user_name: String,
    csrf_token: String,
    accounts: Vec<AccountRow>,
}

struct AccountRow {
    id: i64,
    name: String,
    role: &'static str,
}

/// The accounts of the signed-in user; with exactly one, straight to its inboxes.
async fn accounts(State(ferry): State<Ferry>, signed_in: SignedIn) -> WebResult<Response> {
    let accounts = ferry.store.user_accounts(signed_in.user.id).await?;
    if let [(only, _)] = accounts.as_slice() {
        return Ok(Redirect::to(&format!("/app/accounts/{}/inboxes", only.id)).into_response());
    }
    let page = AccountsPage {
        user_name: signed_in.user.name.clone(),
        csrf_token: signed_in.csrf_token.clone(),
        accounts: accounts
            .into_iter()
            .map(|(a, role)| AccountRow {
                id: a.id,
                name: a.name,
                role: match role {
                    crate::domain::Role::Administrator => "Administrator",
                    crate::domain::Role::Agent => "Agent",
                },
            })
            .collect(),
    };
    Ok(html(&page))
}
