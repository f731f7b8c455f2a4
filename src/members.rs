//! Account membership (README: "Users and invitations"). An administrator invites by email: someone who already
//! has a ferry user is added to the account at once with the chosen role; anyone else gets a one-time link,
//! valid for seven days, where they choose their name and password. ferry sends no email: the administrator
//! passes the link on.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use crate::domain::Role;
use crate::password;
use crate::secrets::{random_token, token_hash};
use crate::services::{Ferry, Result, ServiceError, invalid, looks_like_email, required_name};
use crate::store::{Accepted, MemberChange, NewInvitation, NewUser, User};

pub const INVITATION_DAYS: i64 = 7;

/// What an invitation did.
#[derive(Debug)]
pub enum Invited {
    /// The email had a user: it now has the role in the account.
    Added(User),
    /// Nobody has this email yet: the link to pass on (shown once).
    Link {
        email: String,
        url: String,
        expires_at: DateTime<Utc>,
    },
}

pub async fn invite(
    ferry: &Ferry,
    account_id: i64,
    email: &str,
    role: Role,
    actor: Option<i64>,
) -> Result<Invited> {
    let account = ferry.store.get_account(account_id).await?;
    let email = email.trim().to_ascii_lowercase();
    if !looks_like_email(&email) {
        return Err(invalid("email", "is not an email address"));
    }
    if let Some(user) = ferry.store.find_user_by_email(&email).await? {
        return add_existing(ferry, account_id, &account.name, user, role, actor).await;
    }
    let token = random_token();
    let now = Utc::now();
    let expires_at = now + Duration::days(INVITATION_DAYS);
    ferry
        .store
        .put_invitation(&NewInvitation {
            account_id,
            email: &email,
            role,
            token_hash: &token_hash(&token),
            invited_by: actor,
            now,
            expires_at,
        })
        .await?;
    let details = json!({"email": email, "role": role});
    let target = format!("email:{email}");
    ferry
        .audit(Some(account_id), actor, "user.invited", target, details)
        .await;
    Ok(Invited::Link {
        url: format!(
            "{}/invite/{token}",
            ferry.public_url().trim_end_matches('/')
        ),
        email,
        expires_at,
    })
}

async fn add_existing(
    ferry: &Ferry,
    account_id: i64,
    account_name: &str,
    user: User,
    role: Role,
    actor: Option<i64>,
) -> Result<Invited> {
    // The insert decides, not a look first: two administrators adding the same person get one membership.
    if !ferry.store.add_member(account_id, user.id, role).await? {
        let current = ferry.store.account_role(account_id, user.id).await?;
        let as_role = current.map(|r| format!(" ({r})")).unwrap_or_default();
        return Err(ServiceError::Conflict(format!(
            "{} is already a member of {account_name}{as_role}",
            user.email
        )));
    }
    let details = json!({"email": user.email, "role": role});
    let target = format!("user:{}", user.id);
    ferry
        .audit(Some(account_id), actor, "user.added", target, details)
        .await;
    Ok(Invited::Added(user))
}

/// Accepts an invitation with the name and password its person chose. None for a used, expired or unknown link.
pub async fn accept(
    ferry: &Ferry,
    token: &str,
    name: &str,
    password: &str,
) -> Result<Option<Accepted>> {
    let name = required_name("name", name)?;
    let password_hash = password::hash(password).map_err(|e| invalid("password", e.to_string()))?;
    let new = NewUser {
        name,
        email: String::new(),
        password_hash,
        installation_admin: false,
    };
    let accepted = ferry
        .store
        .accept_invitation(&token_hash(token), Utc::now(), &new)
        .await?;
    if let Some(a) = &accepted {
        let details = json!({"email": a.user.email, "existing_user": a.existing_user});
        let target = format!("user:{}", a.user.id);
        ferry
            .audit(
                Some(a.account_id),
                Some(a.user.id),
                "invitation.accepted",
                target,
                details,
            )
            .await;
    }
    Ok(accepted)
}

pub async fn revoke(ferry: &Ferry, account_id: i64, id: i64, actor: Option<i64>) -> Result<()> {
    if !ferry.store.revoke_invitation(account_id, id).await? {
        return Err(ServiceError::NotFound("invitation"));
    }
    let target = format!("invitation:{id}");
    ferry
        .audit(
            Some(account_id),
            actor,
            "invitation.revoked",
            target,
            json!({}),
        )
        .await;
    Ok(())
}

/// Gives a member another role (`Some`) or removes them from the account (`None`). The account keeps at least
/// one administrator; a removed member's open sessions lose the account at their next request.
pub async fn change(
    ferry: &Ferry,
    account_id: i64,
    user_id: i64,
    role: Option<Role>,
    actor: Option<i64>,
) -> Result<()> {
    let account = ferry.store.get_account(account_id).await?;
    match ferry.store.change_member(account_id, user_id, role).await? {
        MemberChange::Done => {}
        MemberChange::NotAMember => return Err(ServiceError::NotFound("member")),
        MemberChange::LastAdministrator => {
            return Err(ServiceError::Conflict(format!(
                "{} needs at least one administrator: make someone else one first",
                account.name
            )));
        }
    }
    let (action, details) = match role {
        Some(role) => ("user.role_changed", json!({"role": role})),
        None => ("user.removed", json!({})),
    };
    let target = format!("user:{user_id}");
    ferry
        .audit(Some(account_id), actor, action, target, details)
        .await;
    Ok(())
}
