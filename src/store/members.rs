//! Who belongs to an account (README: "Users and invitations"): its members with their roles, and invitations
//! of people who have no ferry user yet. Invitation tokens arrive hashed; accepting one is a single
//! transaction that claims it, so a link works once however often it is clicked.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::db::{SqlStore, db_run};
use super::{NewUser, Result, User, role_from_db};
use crate::domain::Role;

#[derive(Debug, Clone)]
pub struct Member {
    pub user_id: i64,
    pub name: String,
    pub email: String,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Invitation {
    pub id: i64,
    pub account_id: i64,
    pub account_name: String,
    pub email: String,
    pub role: Role,
    pub invited_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

pub struct NewInvitation<'a> {
    pub account_id: i64,
    pub email: &'a str,
    pub role: Role,
    pub token_hash: &'a [u8],
    pub invited_by: Option<i64>,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// What accepting an invitation did.
#[derive(Debug)]
pub struct Accepted {
    pub user: User,
    pub account_id: i64,
    /// The email already had a user (made meanwhile): it keeps its password and only gains the account.
    pub existing_user: bool,
}

#[async_trait]
pub trait MemberStore: Send + Sync {
    async fn account_members(&self, account_id: i64) -> Result<Vec<Member>>;
    /// Gives a user a role in an account unless they have one; false if they had (the role is not changed).
    async fn add_member(&self, account_id: i64, user_id: i64, role: Role) -> Result<bool>;
    async fn pending_invitations(
        &self,
        account_id: i64,
        now: DateTime<Utc>,
    ) -> Result<Vec<Invitation>>;
    /// Stores an invitation, replacing a pending one for the same account and email (its link stops working).
    async fn put_invitation(&self, new: &NewInvitation<'_>) -> Result<()>;
    /// The pending, unexpired invitation of this token.
    async fn invitation_by_token(
        &self,
        token_hash: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Option<Invitation>>;
    /// Claims the invitation, creates its user (or finds the one its email has) and gives it the role, all at
    /// once; None when the token is unknown, used or expired. `user.email` is taken from the invitation.
    async fn accept_invitation(
        &self,
        token_hash: &[u8],
        now: DateTime<Utc>,
        user: &NewUser,
    ) -> Result<Option<Accepted>>;
    /// Withdraws a pending invitation; false if there was none.
    async fn revoke_invitation(&self, account_id: i64, invitation_id: i64) -> Result<bool>;
    /// Changes a member's role (`Some`) or removes them (`None`), unless that leaves the account without an
    /// administrator.
    async fn change_member(
        &self,
        account_id: i64,
        user_id: i64,
        role: Option<Role>,
    ) -> Result<MemberChange>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberChange {
    Done,
    NotAMember,
    /// Refused: the account would have no administrator left.
    LastAdministrator,
}

#[derive(sqlx::FromRow)]
struct MemberRow {
    user_id: i64,
    name: String,
    email: String,
    role: String,
    joined_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct InvitationRow {
    id: i64,
    account_id: i64,
    account_name: String,
    email: String,
    role: String,
    invited_by: Option<String>,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

impl InvitationRow {
    fn decode(self) -> Result<Invitation> {
        Ok(Invitation {
            role: role_from_db(&self.role)?,
            id: self.id,
            account_id: self.account_id,
            account_name: self.account_name,
            email: self.email,
            invited_by: self.invited_by,
            created_at: self.created_at,
            expires_at: self.expires_at,
        })
    }
}

const INVITATION_COLUMNS: &str = "SELECT i.id, i.account_id, a.name AS account_name, i.email, i.role, \
     u.name AS invited_by, i.created_at, i.expires_at FROM invitations i \
     JOIN accounts a ON a.id = i.account_id LEFT JOIN users u ON u.id = i.invited_by";

const USER_COLUMNS: &str = "id, name, email, password_hash, installation_admin, created_at";

/// A role for a user in an account, unless they have one there (which is kept).
const ADD_MEMBER: &str = "INSERT INTO account_users (account_id, user_id, role) VALUES ($1, $2, $3) \
     ON CONFLICT (account_id, user_id) DO NOTHING";

#[async_trait]
impl MemberStore for SqlStore {
    async fn account_members(&self, account_id: i64) -> Result<Vec<Member>> {
        let rows: Vec<MemberRow> = db_run!(self.pool(), |c| sqlx::query_as(
            "SELECT u.id AS user_id, u.name, u.email, au.role, au.created_at AS joined_at \
             FROM account_users au JOIN users u ON u.id = au.user_id \
             WHERE au.account_id = $1 ORDER BY u.name, u.id"
        )
        .bind(account_id)
        .fetch_all(c)
        .await)?;
        rows.into_iter()
            .map(|r| {
                Ok(Member {
                    role: role_from_db(&r.role)?,
                    user_id: r.user_id,
                    name: r.name,
                    email: r.email,
                    joined_at: r.joined_at,
                })
            })
            .collect()
    }

    async fn add_member(&self, account_id: i64, user_id: i64, role: Role) -> Result<bool> {
        let added = db_run!(self.pool(), |c| sqlx::query(ADD_MEMBER)
            .bind(account_id)
            .bind(user_id)
            .bind(role.as_str())
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(added == 1)
    }

    async fn pending_invitations(
        &self,
        account_id: i64,
        now: DateTime<Utc>,
    ) -> Result<Vec<Invitation>> {
        let sql = format!(
            "{INVITATION_COLUMNS} WHERE i.account_id = $1 AND i.accepted_at IS NULL \
             AND i.expires_at > $2 ORDER BY i.created_at DESC, i.id DESC"
        );
        let rows: Vec<InvitationRow> = db_run!(self.pool(), |c| sqlx::query_as(
            sqlx::AssertSqlSafe(sql.as_str())
        )
        .bind(account_id)
        .bind(now)
        .fetch_all(c)
        .await)?;
        rows.into_iter().map(InvitationRow::decode).collect()
    }

    async fn put_invitation(&self, new: &NewInvitation<'_>) -> Result<()> {
        db_run!(self.pool(), |c| {
            sqlx::query(
            "INSERT INTO invitations (account_id, email, role, token_hash, invited_by, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (account_id, email) WHERE accepted_at IS NULL DO UPDATE SET \
             role = excluded.role, token_hash = excluded.token_hash, invited_by = excluded.invited_by, \
             created_at = excluded.created_at, expires_at = excluded.expires_at"
        )
        .bind(new.account_id)
        .bind(new.email)
        .bind(new.role.as_str())
        .bind(new.token_hash)
        .bind(new.invited_by)
        .bind(new.now)
        .bind(new.expires_at)
        .execute(c)
        .await
        .map(|r| r.rows_affected())
        })?;
        Ok(())
    }

    async fn invitation_by_token(
        &self,
        token_hash: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Option<Invitation>> {
        let sql = format!(
            "{INVITATION_COLUMNS} WHERE i.token_hash = $1 AND i.accepted_at IS NULL AND i.expires_at > $2"
        );
        let row: Option<InvitationRow> = db_run!(self.pool(), |c| sqlx::query_as(
            sqlx::AssertSqlSafe(sql.as_str())
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(c)
        .await)?;
        row.map(InvitationRow::decode).transpose()
    }

    async fn accept_invitation(
        &self,
        token_hash: &[u8],
        now: DateTime<Utc>,
        user: &NewUser,
    ) -> Result<Option<Accepted>> {
        let mut tx = self.pool().begin_write().await?;
        // The claim is the guard: of two clicks at once, one updates the row and the other finds nothing.
        let claimed: Option<(i64, i64, String, String)> = db_run!(&mut tx, |c| sqlx::query_as(
            "UPDATE invitations SET accepted_at = $2 \
             WHERE token_hash = $1 AND accepted_at IS NULL AND expires_at > $2 \
             RETURNING id, account_id, email, role"
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(c)
        .await)?;
        let Some((id, account_id, email, role)) = claimed else {
            tx.rollback().await?;
            return Ok(None);
        };
        let role = role_from_db(&role)?;
        let insert = format!(
            "INSERT INTO users (name, email, password_hash, installation_admin) VALUES ($1, $2, $3, FALSE) \
             ON CONFLICT (email) DO NOTHING RETURNING {USER_COLUMNS}"
        );
        let created: Option<User> = db_run!(&mut tx, |c| sqlx::query_as(sqlx::AssertSqlSafe(
            insert.as_str()
        ))
        .bind(&user.name)
        .bind(&email)
        .bind(&user.password_hash)
        .fetch_optional(c)
        .await)?;
        let existing_user = created.is_none();
        let found = match created {
            Some(u) => u,
            None => {
                let select = format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1");
                db_run!(&mut tx, |c| sqlx::query_as(sqlx::AssertSqlSafe(
                    select.as_str()
                ))
                .bind(&email)
                .fetch_one(c)
                .await)?
            }
        };
        // A role the user already has in the account is kept (an administrator invited as agent stays one).
        db_run!(&mut tx, |c| sqlx::query(ADD_MEMBER)
            .bind(account_id)
            .bind(found.id)
            .bind(role.as_str())
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        db_run!(&mut tx, |c| sqlx::query(
            "UPDATE invitations SET accepted_user_id = $2 WHERE id = $1"
        )
        .bind(id)
        .bind(found.id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        tx.commit().await?;
        Ok(Some(Accepted {
            user: found,
            account_id,
            existing_user,
        }))
    }

    async fn change_member(
        &self,
        account_id: i64,
        user_id: i64,
        role: Option<Role>,
    ) -> Result<MemberChange> {
        let mut tx = self.pool().begin_write().await?;
        // Changes to one account's members queue behind this row lock (SQLite's write lock does the same), so
        // two administrators demoting each other at once cannot both see the other one still there.
        db_run!(&mut tx, |c| sqlx::query(
            "UPDATE accounts SET updated_at = updated_at WHERE id = $1"
        )
        .bind(account_id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        let current: Option<String> = db_run!(&mut tx, |c| sqlx::query_scalar(
            "SELECT role FROM account_users WHERE account_id = $1 AND user_id = $2"
        )
        .bind(account_id)
        .bind(user_id)
        .fetch_optional(c)
        .await)?;
        let Some(current) = current.as_deref().map(role_from_db).transpose()? else {
            tx.rollback().await?;
            return Ok(MemberChange::NotAMember);
        };
        let administrators: i64 = db_run!(&mut tx, |c| {
            sqlx::query_scalar(
            "SELECT COUNT(*) FROM account_users WHERE account_id = $1 AND role = 'administrator'"
        )
        .bind(account_id)
        .fetch_one(c)
        .await
        })?;
        let stays_administrator = role == Some(Role::Administrator);
        if current == Role::Administrator && !stays_administrator && administrators <= 1 {
            tx.rollback().await?;
            return Ok(MemberChange::LastAdministrator);
        }
        match role {
            Some(role) => db_run!(&mut tx, |c| sqlx::query(
                "UPDATE account_users SET role = $3 WHERE account_id = $1 AND user_id = $2"
            )
            .bind(account_id)
            .bind(user_id)
            .bind(role.as_str())
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?,
            None => db_run!(&mut tx, |c| sqlx::query(
                "DELETE FROM account_users WHERE account_id = $1 AND user_id = $2"
            )
            .bind(account_id)
            .bind(user_id)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?,
        };
        tx.commit().await?;
        Ok(MemberChange::Done)
    }

    async fn revoke_invitation(&self, account_id: i64, invitation_id: i64) -> Result<bool> {
        let deleted = db_run!(self.pool(), |c| sqlx::query(
            "DELETE FROM invitations WHERE id = $1 AND account_id = $2 AND accepted_at IS NULL"
        )
        .bind(invitation_id)
        .bind(account_id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(deleted == 1)
    }
}
