//! The account's users: members with their roles, pending invitations, and (administrators) the invite form.
//! Inviting an email that already has a ferry user adds it at once; any other email gets a one-time link shown
//! here once, and `/invite/{token}` is where its person picks a name and password.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::session::{self, AccountUser, CsrfForm, LOGIN_CSRF_COOKIE, NoFields, SESSION_COOKIE};
use super::{Chrome, WebError, WebResult, html, refusal, refused_page, when};
use crate::domain::Role;
use crate::members::{self, Invited};
use crate::services::{Ferry, ServiceError};

pub fn router() -> Router<Ferry> {
    Router::new()
        .route("/accounts/{account_id}/users", get(page))
        .route("/accounts/{account_id}/users/invite", post(invite))
        .route(
            "/accounts/{account_id}/invitations/{id}/revoke",
            post(revoke),
        )
        .route(
            "/accounts/{account_id}/users/{user_id}/role",
            post(set_role),
        )
        .route(
            "/accounts/{account_id}/users/{user_id}/remove",
            post(remove),
        )
}

/// Outside `/app`: the person invited has no session yet.
pub fn public_router() -> Router<Ferry> {
    Router::new().route("/invite/{token}", get(invitation).post(accept))
}

struct MemberRow {
    user_id: i64,
    name: String,
    email: String,
    role: &'static str,
    /// `administrator` or `agent`, for the role form.
    role_value: &'static str,
    joined: String,
    you: bool,
}

struct InvitationRow {
    id: i64,
    email: String,
    role: &'static str,
    invited_by: String,
    expires: String,
}

/// The link of an invitation just made: shown once.
struct NewLink {
    email: String,
    url: String,
    expires: String,
    /// Why people elsewhere cannot open it (a loopback public URL).
    warning: Option<String>,
}

#[derive(Template)]
#[template(path = "members.html")]
struct MembersPage {
    chrome: Chrome,
    members: Vec<MemberRow>,
    invitations: Vec<InvitationRow>,
    new_link: Option<NewLink>,
    /// The invite form's email, kept when it was refused.
    email: String,
    role: &'static str,
}

fn role_label(role: Role) -> &'static str {
    match role {
        Role::Administrator => "Administrator",
        Role::Agent => "Agent",
    }
}

async fn render(ferry: &Ferry, access: &AccountUser) -> WebResult<MembersPage> {
    let account_id = access.account.id;
    let members = ferry.store.account_members(account_id).await?;
    let invitations = if access.is_admin() {
        ferry
            .store
            .pending_invitations(account_id, chrono::Utc::now())
            .await?
    } else {
        Vec::new()
    };
    Ok(MembersPage {
        chrome: Chrome::new(access, "users"),
        members: members
            .into_iter()
            .map(|m| MemberRow {
                you: m.user_id == access.user().id,
                user_id: m.user_id,
                role_value: m.role.as_str(),
                name: m.name,
                email: m.email,
                role: role_label(m.role),
                joined: when(&m.joined_at),
            })
            .collect(),
        invitations: invitations
            .into_iter()
            .map(|i| InvitationRow {
                id: i.id,
                email: i.email,
                role: role_label(i.role),
                invited_by: i.invited_by.unwrap_or_else(|| "ferry (CLI)".into()),
                expires: when(&i.expires_at),
            })
            .collect(),
        new_link: None,
        email: String::new(),
        role: "agent",
    })
}

#[derive(Deserialize)]
struct DoneQuery {
    done: Option<String>,
}

async fn page(
    State(ferry): State<Ferry>,
    access: AccountUser,
    Query(q): Query<DoneQuery>,
) -> WebResult<Response> {
    let mut page = render(&ferry, &access).await?;
    page.chrome.notice = match q.done.as_deref() {
        Some("revoked") => Some("The invitation was withdrawn; its link no longer works.".into()),
        Some("role") => Some("The role was changed.".into()),
        Some("removed") => Some(format!(
            "The user was removed from {}: their sessions no longer open it.",
            access.account.name
        )),
        // Only a member's address is repeated: the link cannot make the page say anything else.
        Some(done) => done
            .strip_prefix("added:")
            .filter(|email| page.members.iter().any(|m| m.email == *email))
            .map(|email| {
                format!(
                    "{email} was added to {}. They sign in with their own password and can switch accounts at the top.",
                    access.account.name
                )
            }),
        _ => None,
    };
    Ok(html(&page))
}

#[derive(Deserialize)]
struct InviteForm {
    email: String,
    role: String,
}

async fn invite(
    State(ferry): State<Ferry>,
    access: AccountUser,
    form: CsrfForm<InviteForm>,
) -> WebResult<Response> {
    access.authorize_post(form.token.as_deref(), "invite users")?;
    let role = Role::parse(&form.data.role)
        .map_err(|_| WebError::BadRequest("Choose a role: administrator or agent.".into()))?;
    let outcome = members::invite(
        &ferry,
        access.account.id,
        &form.data.email,
        role,
        Some(access.user().id),
    )
    .await;
    let message = match outcome {
        Ok(Invited::Added(user)) => {
            let to = format!(
                "/app/accounts/{}/users?done=added:{}",
                access.account.id,
                super::urlencode(&user.email)
            );
            return Ok(Redirect::to(&to).into_response());
        }
        Ok(Invited::Link {
            email,
            url,
            expires_at,
        }) => {
            // The link is a secret shown once: answered here, never put in a redirect.
            let mut page = render(&ferry, &access).await?;
            page.new_link = Some(NewLink {
                warning: crate::public_url::person_warning(&url),
                email,
                url,
                expires: when(&expires_at),
            });
            return Ok(html(&page));
        }
        Err(ServiceError::Validation { message, .. }) => {
            format!("The email address {message}.")
        }
        Err(e) => refusal(e)?,
    };
    let mut page = render(&ferry, &access).await?;
    page.chrome.error = Some(message);
    page.email = form.data.email.trim().to_owned();
    page.role = role.as_str();
    Ok(refused_page(&page))
}

async fn revoke(
    State(ferry): State<Ferry>,
    access: AccountUser,
    Path((_, id)): Path<(i64, i64)>,
    form: CsrfForm<NoFields>,
) -> WebResult<Response> {
    access.authorize_post(form.token.as_deref(), "withdraw invitations")?;
    members::revoke(&ferry, access.account.id, id, Some(access.user().id)).await?;
    let to = format!("/app/accounts/{}/users?done=revoked", access.account.id);
    Ok(Redirect::to(&to).into_response())
}

#[derive(Template)]
#[template(path = "invite.html")]
struct InvitePage {
    csrf_token: String,
    /// None: the link is used, expired or unknown.
    account_name: Option<String>,
    email: String,
    role: &'static str,
    name: String,
    error: Option<String>,
}

/// The invitation's page with a fresh double-submit CSRF cookie (there is no session yet, as at sign-in).
fn invite_form(
    ferry: &Ferry,
    headers: &HeaderMap,
    page: InvitePage,
    status: StatusCode,
) -> Response {
    let mut response = (status, html(&page)).into_response();
    let cookie = session::set_cookie(ferry, headers, LOGIN_CSRF_COOKIE, &page.csrf_token, 3600);
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

async fn invitation_page(
    ferry: &Ferry,
    token: &str,
    name: String,
    error: Option<String>,
) -> WebResult<(InvitePage, StatusCode)> {
    let found = ferry
        .store
        .invitation_by_token(&session::token_hash(token), chrono::Utc::now())
        .await?;
    let status = match (&found, &error) {
        (None, _) => StatusCode::NOT_FOUND,
        (Some(_), Some(_)) => StatusCode::UNPROCESSABLE_ENTITY,
        (Some(_), None) => StatusCode::OK,
    };
    let page = InvitePage {
        csrf_token: session::random_token(),
        account_name: found.as_ref().map(|i| i.account_name.clone()),
        email: found.as_ref().map(|i| i.email.clone()).unwrap_or_default(),
        role: found.as_ref().map(|i| role_label(i.role)).unwrap_or(""),
        name,
        error,
    };
    Ok((page, status))
}

async fn invitation(
    State(ferry): State<Ferry>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> WebResult<Response> {
    let (page, status) = invitation_page(&ferry, &token, String::new(), None).await?;
    Ok(invite_form(&ferry, &headers, page, status))
}

#[derive(Deserialize)]
struct AcceptForm {
    name: String,
    password: String,
    password_again: String,
    #[serde(default)]
    csrf_token: String,
}

async fn accept(
    State(ferry): State<Ferry>,
    headers: HeaderMap,
    Path(token): Path<String>,
    axum::Form(form): axum::Form<AcceptForm>,
) -> WebResult<Response> {
    let expected = session::cookie(&headers, LOGIN_CSRF_COOKIE);
    let refusal = if form.csrf_token.is_empty() || expected.as_deref() != Some(&form.csrf_token) {
        Some("This form expired. Please try again.".to_owned())
    } else if form.password != form.password_again {
        Some("The two passwords differ. Type the same password twice.".to_owned())
    } else {
        None
    };
    let outcome = match refusal {
        Some(message) => Err(message),
        None => match members::accept(&ferry, &token, &form.name, &form.password).await {
            Ok(accepted) => Ok(accepted),
            Err(ServiceError::Validation { field, message }) => {
                Err(format!("The {field} {message}."))
            }
            Err(other) => return Err(other.into()),
        },
    };
    let accepted = match outcome {
        Ok(Some(accepted)) => accepted,
        // Used meanwhile (another click), expired or unknown: the page says so.
        Ok(None) => {
            let (page, status) = invitation_page(&ferry, &token, form.name, None).await?;
            return Ok(invite_form(&ferry, &headers, page, status));
        }
        Err(message) => {
            let (page, status) = invitation_page(&ferry, &token, form.name, Some(message)).await?;
            return Ok(invite_form(&ferry, &headers, page, status));
        }
    };
    let inboxes = format!("/app/accounts/{}/inboxes", accepted.account_id);
    if accepted.existing_user {
        // Someone made this user meanwhile: their password stands, not the one typed here.
        let to = format!("/login?next={}", super::urlencode(&inboxes));
        return Ok(Redirect::to(&to).into_response());
    }
    // Anyone signed in on this browser before is signed out: the new member's session replaces theirs.
    if let Some(previous) = session::cookie(&headers, SESSION_COOKIE) {
        let _ = ferry
            .store
            .delete_web_session(&session::token_hash(&previous))
            .await;
    }
    let token = session::start(&ferry, &accepted.user).await?;
    Ok(session::redirect_signed_in(
        &ferry, &headers, &token, &inboxes,
    ))
}

#[derive(Deserialize)]
struct RoleForm {
    role: String,
}

async fn set_role(
    State(ferry): State<Ferry>,
    access: AccountUser,
    Path((_, user_id)): Path<(i64, i64)>,
    form: CsrfForm<RoleForm>,
) -> WebResult<Response> {
    access.authorize_post(form.token.as_deref(), "change roles")?;
    let role = Role::parse(&form.data.role)
        .map_err(|_| WebError::BadRequest("Choose a role: administrator or agent.".into()))?;
    changed(&ferry, &access, user_id, Some(role), "role").await
}

async fn remove(
    State(ferry): State<Ferry>,
    access: AccountUser,
    Path((_, user_id)): Path<(i64, i64)>,
    form: CsrfForm<NoFields>,
) -> WebResult<Response> {
    access.authorize_post(form.token.as_deref(), "remove users")?;
    changed(&ferry, &access, user_id, None, "removed").await
}

/// Back to the list saying what was done, or the list with the refusal (the last administrator stays).
async fn changed(
    ferry: &Ferry,
    access: &AccountUser,
    user_id: i64,
    role: Option<Role>,
    done: &str,
) -> WebResult<Response> {
    let account_id = access.account.id;
    match members::change(ferry, account_id, user_id, role, Some(access.user().id)).await {
        Ok(()) => {
            let to = format!("/app/accounts/{account_id}/users?done={done}");
            Ok(Redirect::to(&to).into_response())
        }
        Err(e) => {
            let mut page = render(ferry, access).await?;
            page.chrome.error = Some(refusal(e)?);
            Ok(refused_page(&page))
        }
    }
}
