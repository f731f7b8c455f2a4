//! `Store` itself: accounts, users, access tokens, audit, inboxes, contacts, conversations, messages and the
//! data generator's batches, on either database.

use super::db::{SqlStore, db_run};
use super::*;
use crate::domain::Role;

/// Columns of `Inbox`, with the conversation count the UI and API show beside every inbox.
macro_rules! inbox_select {
    () => {
        "SELECT i.id, i.account_id, i.name, i.channel_type, i.phone_number, i.provider_config, \
         i.lock_to_single_conversation, i.legacy_channel_id, \
         (SELECT COUNT(*) FROM conversations c WHERE c.inbox_id = i.id) AS conversations_count, \
         i.created_at, i.updated_at FROM inboxes i "
    };
}

macro_rules! conversation_select {
    () => {
        "SELECT c.id, c.account_id, c.inbox_id, c.contact_id, c.contact_inbox_id, ct.name AS contact_name, \
         c.display_id, c.status, c.assignee_id, c.last_activity_at, c.created_at, c.updated_at \
         FROM conversations c JOIN contacts ct ON ct.id = c.contact_id "
    };
}

#[async_trait::async_trait]
impl Store for SqlStore {
    fn backend(&self) -> super::Backend {
        self.pool().backend()
    }

    async fn migrate(&self) -> super::Result<()> {
        self.pool().migrate().await
    }

    async fn ping(&self) -> super::Result<()> {
        db_run!(self.pool(), |c| sqlx::query("SELECT 1")
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    async fn probe_write(&self) -> super::Result<()> {
        let result = async {
            let mut tx = self.pool().begin_write().await?;
            db_run!(&mut tx, |c| sqlx::query(
                "INSERT INTO write_probe (id, checked_at) VALUES (1, $1) \
                 ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
            )
            .bind(chrono::Utc::now())
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
            tx.commit().await?;
            Ok(())
        }
        .await;
        self.health().observe(&result);
        result
    }

    fn write_health(&self) -> &super::WriteHealth {
        self.health()
    }

    async fn close(&self) {
        self.pool().close().await
    }

    async fn create_account(&self, new: &NewAccount) -> Result<Account> {
        let id: i64 = db_run!(self.pool(), |c| sqlx::query_scalar(
            "INSERT INTO accounts (name, legacy_ref) VALUES ($1, $2) RETURNING id"
        )
        .bind(&new.name)
        .bind(&new.legacy_ref)
        .fetch_one(c)
        .await)?;
        self.get_account(id).await
    }

    async fn status_counts(&self) -> Result<Vec<(String, String, i64)>> {
        Ok(db_run!(self.pool(), |c| {
            sqlx::query_as(
            "SELECT 'ferry_inbox_migrations', status, COUNT(*) FROM inbox_migrations GROUP BY status \
             UNION ALL SELECT 'ferry_account_imports', status, COUNT(*) FROM account_imports GROUP BY status \
             UNION ALL SELECT 'ferry_dead_letters_waiting', '', COUNT(*) FROM webhook_dead_letters \
             WHERE replayed_at IS NULL",
        )
        .fetch_all(c).await
        })?)
    }

    async fn get_account(&self, id: i64) -> Result<Account> {
        db_run!(self.pool(), |c| sqlx::query_as(
            "SELECT id, name, migration_status, legacy_ref, merge_brazil_ninth_digit, created_at, updated_at \
             FROM accounts WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(c).await)?
        .ok_or(StoreError::NotFound("account"))
    }

    async fn count_accounts(&self) -> Result<i64> {
        Ok(db_run!(self.pool(), |c| sqlx::query_scalar(
            "SELECT COUNT(*) FROM accounts"
        )
        .fetch_one(c)
        .await)?)
    }

    async fn create_user(&self, new: &NewUser) -> Result<User> {
        Ok(db_run!(self.pool(), |c| {
            sqlx::query_as(
            "INSERT INTO users (name, email, password_hash, installation_admin) VALUES ($1, $2, $3, $4) \
             RETURNING id, name, email, password_hash, installation_admin, created_at",
        )
        .bind(&new.name)
        .bind(&new.email)
        .bind(&new.password_hash)
        .bind(new.installation_admin)
        .fetch_one(c).await
        })?)
    }

    async fn find_user_by_email(&self, email: &str) -> Result<Option<User>> {
        Ok(db_run!(self.pool(), |c| {
            sqlx::query_as(
            "SELECT id, name, email, password_hash, installation_admin, created_at FROM users WHERE email = $1",
        )
        .bind(email)
        .fetch_optional(c).await
        })?)
    }

    async fn set_account_role(&self, account_id: i64, user_id: i64, role: Role) -> Result<()> {
        db_run!(self.pool(), |c| sqlx::query(
            "INSERT INTO account_users (account_id, user_id, role) VALUES ($1, $2, $3) \
             ON CONFLICT (account_id, user_id) DO UPDATE SET role = excluded.role",
        )
        .bind(account_id)
        .bind(user_id)
        .bind(role.as_str())
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    async fn account_role(&self, account_id: i64, user_id: i64) -> Result<Option<Role>> {
        let role: Option<String> = db_run!(self.pool(), |c| sqlx::query_scalar(
            "SELECT role FROM account_users WHERE account_id = $1 AND user_id = $2"
        )
        .bind(account_id)
        .bind(user_id)
        .fetch_optional(c)
        .await)?;
        role.as_deref().map(role_from_db).transpose()
    }

    async fn create_access_token(
        &self,
        user_id: i64,
        name: &str,
        token_hash: &[u8],
        prefix: &str,
    ) -> Result<i64> {
        Ok(db_run!(self.pool(), |c| {
            sqlx::query_scalar(
            "INSERT INTO access_tokens (user_id, name, token_hash, prefix) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(user_id)
        .bind(name)
        .bind(token_hash)
        .bind(prefix)
        .fetch_one(c).await
        })?)
    }

    async fn user_by_token_hash(&self, token_hash: &[u8]) -> Result<Option<User>> {
        Ok(db_run!(self.pool(), |c| sqlx::query_as(
            "SELECT u.id, u.name, u.email, u.password_hash, u.installation_admin, u.created_at \
             FROM access_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(c)
        .await)?)
    }

    async fn get_user(&self, id: i64) -> Result<User> {
        db_run!(self.pool(), |c| sqlx::query_as("SELECT id, name, email, password_hash, installation_admin, created_at FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(c).await)?
            .ok_or(StoreError::NotFound("user"))
    }

    async fn record_audit(&self, event: &NewAuditEvent) -> Result<()> {
        db_run!(self.pool(), |c| {
            sqlx::query(
            "INSERT INTO audit_events (account_id, user_id, action, subject, details) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(event.account_id)
        .bind(event.user_id)
        .bind(&event.action)
        .bind(&event.subject)
        .bind(sqlx::types::Json(&event.details))
        .execute(c).await.map(|r| r.rows_affected())
        })?;
        Ok(())
    }

    async fn list_audit(&self, account_id: i64, limit: i64) -> Result<Vec<AuditEvent>> {
        Ok(db_run!(self.pool(), |c| sqlx::query_as(
            "SELECT id, account_id, user_id, action, subject, details, at FROM audit_events \
             WHERE account_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(account_id)
        .bind(limit)
        .fetch_all(c)
        .await)?)
    }

    async fn list_inboxes(&self, account_id: i64) -> Result<Vec<Inbox>> {
        Ok(db_run!(self.pool(), |c| sqlx::query_as(concat!(
            inbox_select!(),
            "WHERE i.account_id = $1 ORDER BY i.id"
        ))
        .bind(account_id)
        .fetch_all(c)
        .await)?)
    }

    async fn get_inbox(&self, account_id: i64, inbox_id: i64) -> Result<Inbox> {
        db_run!(self.pool(), |c| sqlx::query_as(concat!(
            inbox_select!(),
            "WHERE i.account_id = $1 AND i.id = $2"
        ))
        .bind(account_id)
        .bind(inbox_id)
        .fetch_optional(c)
        .await)?
        .ok_or(StoreError::NotFound("inbox"))
    }

    async fn find_inbox(&self, inbox_id: i64) -> Result<Option<Inbox>> {
        Ok(db_run!(self.pool(), |c| sqlx::query_as(concat!(
            inbox_select!(),
            "WHERE i.id = $1"
        ))
        .bind(inbox_id)
        .fetch_optional(c)
        .await)?)
    }

    async fn create_inbox(&self, new: &NewInbox, seal: Option<Sealer<'_>>) -> Result<Inbox> {
        let mut tx = self.pool().begin().await?;
        let id: i64 = db_run!(&mut tx, |c| {
            sqlx::query_scalar(
            "INSERT INTO inboxes (account_id, name, channel_type, phone_number, lock_to_single_conversation) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(new.account_id)
        .bind(&new.name)
        .bind(new.channel_type.as_str())
        .bind(&new.phone_number)
        .bind(new.lock_to_single_conversation)
        .fetch_one(c).await
        })?;
        if let Some(seal) = seal {
            db_run!(&mut tx, |c| sqlx::query(
                "UPDATE inboxes SET provider_config = $1 WHERE id = $2"
            )
            .bind(seal(id))
            .bind(id)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        }
        tx.commit().await?;
        self.get_inbox(new.account_id, id).await
    }

    async fn update_inbox(
        &self,
        account_id: i64,
        inbox_id: i64,
        patch: &InboxPatch,
        seal: Option<Sealer<'_>>,
    ) -> Result<Inbox> {
        let mut tx = self.pool().begin().await?;
        let updated = db_run!(&mut tx, |c| {
            sqlx::query(
            "UPDATE inboxes SET name = COALESCE($1, name), \
             lock_to_single_conversation = COALESCE($2, lock_to_single_conversation), updated_at = $3 \
             WHERE account_id = $4 AND id = $5",
        )
        .bind(&patch.name)
        .bind(patch.lock_to_single_conversation)
        .bind(chrono::Utc::now())
        .bind(account_id)
        .bind(inbox_id)
        .execute(c).await.map(|r| r.rows_affected())
        })?;
        if updated == 0 {
            return Err(StoreError::NotFound("inbox"));
        }
        if let Some(phone) = &patch.phone_number {
            db_run!(&mut tx, |c| sqlx::query(
                "UPDATE inboxes SET phone_number = $1 WHERE id = $2"
            )
            .bind(phone)
            .bind(inbox_id)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        }
        if patch.replace_provider_config {
            db_run!(&mut tx, |c| sqlx::query(
                "UPDATE inboxes SET provider_config = $1 WHERE id = $2"
            )
            .bind(seal.map(|s| s(inbox_id)))
            .bind(inbox_id)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        }
        tx.commit().await?;
        self.get_inbox(account_id, inbox_id).await
    }

    async fn add_inbox_member(&self, inbox_id: i64, user_id: i64) -> Result<()> {
        db_run!(self.pool(), |c| sqlx::query(
            "INSERT INTO inbox_members (inbox_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
        )
        .bind(inbox_id)
        .bind(user_id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    async fn list_contacts(&self, account_id: i64, page: Page) -> Result<Vec<Contact>> {
        Ok(db_run!(self.pool(), |c| {
            sqlx::query_as(
            "SELECT id, account_id, name, phone_number, email, identifier, custom_attributes, created_at, \
             updated_at FROM contacts WHERE account_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
        )
        .bind(account_id)
        .bind(page.before_bound())
        .bind(page.limit)
        .fetch_all(c).await
        })?)
    }

    async fn contact_inboxes_of(&self, contact_ids: &[i64]) -> Result<Vec<ContactInbox>> {
        if contact_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT id, contact_id, inbox_id, source_id, wa_identity, created_at FROM contact_inboxes WHERE contact_id IN ({}) ORDER BY id",
            super::ingest::placeholders(1, contact_ids.len())
        );
        Ok(db_run!(self.pool(), |c| {
            let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql));
            for id in contact_ids {
                q = q.bind(*id);
            }
            q.fetch_all(c).await
        })?)
    }

    async fn list_conversations(
        &self,
        account_id: i64,
        inbox_id: i64,
        page: Page,
    ) -> Result<Vec<Conversation>> {
        Ok(db_run!(self.pool(), |c| sqlx::query_as(concat!(
            conversation_select!(),
            "WHERE c.account_id = $1 AND c.inbox_id = $2 AND c.id < $3 ORDER BY c.id DESC LIMIT $4"
        ))
        .bind(account_id)
        .bind(inbox_id)
        .bind(page.before_bound())
        .bind(page.limit)
        .fetch_all(c)
        .await)?)
    }

    async fn get_conversation(
        &self,
        account_id: i64,
        conversation_id: i64,
    ) -> Result<Conversation> {
        db_run!(self.pool(), |c| sqlx::query_as(concat!(
            conversation_select!(),
            "WHERE c.account_id = $1 AND c.id = $2"
        ))
        .bind(account_id)
        .bind(conversation_id)
        .fetch_optional(c)
        .await)?
        .ok_or(StoreError::NotFound("conversation"))
    }

    async fn list_messages(
        &self,
        account_id: i64,
        conversation_id: i64,
        page: Page,
    ) -> Result<Vec<Message>> {
        Ok(db_run!(self.pool(), |c| {
            sqlx::query_as(
            // Newest first by when they were sent (an import writes recent messages before older
            // history); `before` is the last message of the previous page.
            "SELECT m.id, m.account_id, m.conversation_id, m.message_type, m.content, m.content_type, \
             m.content_attributes, m.source_id, m.status, m.starred, m.private, m.sender_type, m.sender_id, \
             m.created_at FROM messages m LEFT JOIN messages b ON b.id = $3 \
             WHERE m.account_id = $1 AND m.conversation_id = $2 AND (b.id IS NULL \
               OR m.created_at < b.created_at OR (m.created_at = b.created_at AND m.id < b.id)) \
             ORDER BY m.created_at DESC, m.id DESC LIMIT $4",
        )
        .bind(account_id)
        .bind(conversation_id)
        .bind(page.before_bound())
        .bind(page.limit)
        .fetch_all(c).await
        })?)
    }

    async fn attachments_of(&self, message_ids: &[i64]) -> Result<Vec<Attachment>> {
        if message_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT id, message_id, file_type, content_type, file_name, byte_size, storage_key, checksum, status, failure_reason FROM attachments WHERE message_id IN ({}) ORDER BY id",
            super::ingest::placeholders(1, message_ids.len())
        );
        Ok(db_run!(self.pool(), |c| {
            let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql));
            for id in message_ids {
                q = q.bind(*id);
            }
            q.fetch_all(c).await
        })?)
    }

    async fn create_message(&self, new: &NewMessage) -> Result<i64> {
        Ok(db_run!(self.pool(), |c| {
            sqlx::query_scalar(
            "INSERT INTO messages (account_id, conversation_id, message_type, content, source_id, dedupe_key, status, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING id",
        )
        .bind(new.account_id)
        .bind(new.conversation_id)
        .bind(&new.message_type)
        .bind(&new.content)
        .bind(&new.source_id)
        .bind(&new.dedupe_key)
        .bind(&new.status)
        .bind(new.created_at)
        .fetch_one(c).await
        })?)
    }

    async fn inbox_counts(&self, inbox_id: i64) -> Result<InboxCounts> {
        Ok(db_run!(self.pool(), |c| {
            sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM conversations WHERE inbox_id = $1) AS conversations, \
             (SELECT COUNT(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id \
              WHERE c.inbox_id = $1) AS messages, \
             (SELECT COUNT(*) FROM attachments a JOIN messages m ON m.id = a.message_id \
              JOIN conversations c ON c.id = m.conversation_id WHERE c.inbox_id = $1) AS attachments, \
             (SELECT COUNT(*) FROM contact_inboxes WHERE inbox_id = $1) AS contact_inboxes",
        )
        .bind(inbox_id)
        .fetch_one(c).await
        })?)
    }

    async fn reserve_display_ids(&self, account_id: i64, n: i64) -> Result<i64> {
        let last: i64 = db_run!(self.pool(), |c| sqlx::query_scalar(
            "UPDATE accounts SET last_display_id = last_display_id + $1 WHERE id = $2 RETURNING last_display_id",
        )
        .bind(n)
        .bind(account_id)
        .fetch_optional(c).await)?
        .ok_or(StoreError::NotFound("account"))?;
        Ok(last - n + 1)
    }

    async fn seed_batch(&self, batch: &super::seed::SeedBatch) -> Result<()> {
        super::seed::write_batch(self.pool(), batch).await
    }

    async fn insert_organization(
        &self,
        organization_id: &str,
        account_id: i64,
        name: &str,
    ) -> Result<()> {
        db_run!(self.pool(), |c| {
            sqlx::query("INSERT INTO organization_accounts (organization_id, account_id, name) VALUES ($1, $2, $3)")
            .bind(organization_id)
            .bind(account_id)
            .bind(name)
            .execute(c).await.map(|r| r.rows_affected())
        })?;
        Ok(())
    }

    async fn insert_evolution_instance(
        &self,
        r: &super::seed::LegacyEvolutionInstance,
    ) -> Result<i64> {
        Ok(db_run!(self.pool(), |c| {
            sqlx::query_scalar(
            "INSERT INTO evolution_instances (instance_name, organization_id, status, phone_number, api_url, \
             api_key, webhook_url, error_message) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(&r.instance_name)
        .bind(&r.organization_id)
        .bind(&r.status)
        .bind(&r.phone_number)
        .bind(&r.api_url)
        .bind(&r.api_key)
        .bind(&r.webhook_url)
        .bind(&r.error_message)
        .fetch_one(c).await
        })?)
    }

    async fn insert_business_config(&self, r: &super::seed::LegacyBusinessConfig) -> Result<i64> {
        Ok(db_run!(self.pool(), |c| {
            sqlx::query_scalar(
            "INSERT INTO whatsapp_business_configs (organization_id, provider, phone_number_id, phone_number, \
             business_account_id, access_token, app_secret, verify_token, status) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(&r.organization_id)
        .bind(&r.provider)
        .bind(&r.phone_number_id)
        .bind(&r.phone_number)
        .bind(&r.business_account_id)
        .bind(&r.access_token)
        .bind(&r.app_secret)
        .bind(&r.verify_token)
        .bind(&r.status)
        .fetch_one(c).await
        })?)
    }
}
