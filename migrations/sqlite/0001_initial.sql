-- ferry schema, SQLite dialect. Keep in step with ../pg/0001_initial.sql.
-- Timestamps are ISO-8601 UTC text; booleans are 0/1; JSON is text.

CREATE TABLE accounts (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    -- capability C: NULL until ferry has asked the legacy system once
    migration_status TEXT CHECK (migration_status IN ('not-started', 'not-needed', 'migrating',
        'channels-migrated', 'recent-messages-migrated', 'completed', 'channel-failure',
        'recent-messages-failure', 'messages-failure')),
    legacy_ref TEXT UNIQUE,
    merge_brazil_ninth_digit BOOLEAN NOT NULL DEFAULT 1,
    -- display ids are allocated by incrementing this counter under the row lock
    last_display_id INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    installation_admin BOOLEAN NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE account_users (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('administrator', 'agent')),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (account_id, user_id)
);
CREATE INDEX account_users_user ON account_users (user_id);

CREATE TABLE access_tokens (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL DEFAULT 'default',
    token_hash BLOB NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    last_used_at TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE inboxes (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    channel_type TEXT NOT NULL CHECK (channel_type IN ('evolution', 'whatsapp_cloud', 'dialog360',
        'twilio_whatsapp', 'twilio_sms', 'web_widget', 'email', 'api')),
    phone_number TEXT,
    provider_config BLOB,
    -- a contact may have at most one open conversation in this inbox (Chatwoot's lock_to_single_conversation)
    lock_to_single_conversation BOOLEAN NOT NULL DEFAULT 0,
    legacy_channel_id TEXT,
    import_id INTEGER,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (account_id, legacy_channel_id)
);
CREATE INDEX inboxes_account ON inboxes (account_id, id);

CREATE TABLE inbox_members (
    id INTEGER PRIMARY KEY,
    inbox_id INTEGER NOT NULL REFERENCES inboxes(id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (inbox_id, user_id)
);

CREATE TABLE contacts (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name TEXT,
    phone_number TEXT,
    email TEXT,
    identifier TEXT,
    custom_attributes TEXT NOT NULL DEFAULT '{}',
    import_id INTEGER,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (account_id, email),
    UNIQUE (account_id, identifier)
);
CREATE INDEX contacts_account ON contacts (account_id, id);
CREATE INDEX contacts_phone ON contacts (account_id, phone_number);

CREATE TABLE contact_inboxes (
    id INTEGER PRIMARY KEY,
    contact_id INTEGER NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
    inbox_id INTEGER NOT NULL REFERENCES inboxes(id) ON DELETE CASCADE,
    -- in the inbox provider's native format (SPEC 2.2)
    source_id TEXT NOT NULL,
    -- canonical WhatsApp identity (E.164 digits, or a LID); NULL for non-WhatsApp inboxes
    wa_identity TEXT,
    import_id INTEGER,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (inbox_id, source_id)
);
CREATE UNIQUE INDEX contact_inboxes_identity ON contact_inboxes (inbox_id, wa_identity) WHERE wa_identity IS NOT NULL;
CREATE INDEX contact_inboxes_contact ON contact_inboxes (contact_id);

CREATE TABLE contact_notes (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    contact_id INTEGER NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
    user_id INTEGER REFERENCES users(id) ON DELETE SET NULL,
    content TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX contact_notes_contact ON contact_notes (contact_id);

CREATE TABLE contact_labels (
    id INTEGER PRIMARY KEY,
    contact_id INTEGER NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
    label TEXT NOT NULL,
    UNIQUE (contact_id, label)
);

CREATE TABLE conversations (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    inbox_id INTEGER NOT NULL REFERENCES inboxes(id),
    contact_id INTEGER NOT NULL REFERENCES contacts(id),
    contact_inbox_id INTEGER REFERENCES contact_inboxes(id),
    display_id INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved', 'pending', 'snoozed')),
    assignee_id INTEGER REFERENCES users(id) ON DELETE SET NULL,
    last_activity_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    legacy_thread_id TEXT,
    import_id INTEGER,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (account_id, display_id),
    UNIQUE (account_id, legacy_thread_id)
);
CREATE INDEX conversations_inbox ON conversations (inbox_id, id);
CREATE INDEX conversations_contact ON conversations (contact_id);
CREATE INDEX conversations_contact_inbox ON conversations (contact_inbox_id);

-- No inbox_id on purpose: a message is in its conversation's inbox (SPEC 2.3).
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    message_type TEXT NOT NULL CHECK (message_type IN ('incoming', 'outgoing', 'activity', 'template')),
    content TEXT,
    content_type TEXT NOT NULL DEFAULT 'text',
    content_attributes TEXT NOT NULL DEFAULT '{}',
    -- the provider's message id
    source_id TEXT,
    dedupe_key TEXT UNIQUE,
    status TEXT NOT NULL DEFAULT 'sent' CHECK (status IN ('pending', 'sent', 'delivered', 'read', 'failed')),
    starred BOOLEAN NOT NULL DEFAULT 0,
    private BOOLEAN NOT NULL DEFAULT 0,
    sender_type TEXT,
    sender_id INTEGER,
    external_id TEXT,
    legacy_message_id TEXT UNIQUE,
    import_id INTEGER,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX messages_conversation ON messages (conversation_id, id);
CREATE INDEX messages_source ON messages (account_id, source_id);

CREATE TABLE attachments (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    file_type TEXT NOT NULL DEFAULT 'file' CHECK (file_type IN ('image', 'audio', 'video', 'file', 'location', 'contact', 'sticker')),
    content_type TEXT,
    file_name TEXT,
    byte_size INTEGER,
    -- content-addressed key in the attachment store; NULL while pending or after a failed fetch
    storage_key TEXT,
    checksum TEXT,
    status TEXT NOT NULL DEFAULT 'ready' CHECK (status IN ('pending', 'ready', 'failed')),
    external_url TEXT,
    failure_reason TEXT,
    import_id INTEGER,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX attachments_message ON attachments (message_id);

CREATE TABLE reporting_events (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value REAL NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX reporting_events_conversation ON reporting_events (conversation_id);

CREATE TABLE integrations (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    inbox_id INTEGER REFERENCES inboxes(id) ON DELETE SET NULL,
    provider TEXT NOT NULL CHECK (provider IN ('evolution', 'whatsapp_cloud', 'dialog360', 'twilio_whatsapp')),
    instance_name TEXT,
    phone_number_id TEXT,
    token_hash BLOB UNIQUE,
    token_ciphertext BLOB,
    token_prefix TEXT,
    -- rotation: the previous token keeps routing until previous_token_expires_at
    previous_token_hash BLOB UNIQUE,
    previous_token_expires_at TEXT,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('active', 'pending', 'disconnected', 'error')),
    enabled BOOLEAN NOT NULL DEFAULT 1,
    -- non-secret settings (e.g. Evolution base URL); secrets live encrypted in secrets_ciphertext
    config TEXT NOT NULL DEFAULT '{}',
    secrets_ciphertext BLOB,
    legacy_hits INTEGER NOT NULL DEFAULT 0,
    last_legacy_hit_at TEXT,
    cutover_state TEXT NOT NULL DEFAULT 'legacy' CHECK (cutover_state IN ('legacy', 'token', 'failed')),
    migrated_from TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (provider, instance_name),
    UNIQUE (provider, phone_number_id)
);
CREATE INDEX integrations_account ON integrations (account_id);
CREATE INDEX integrations_inbox ON integrations (inbox_id);

CREATE TABLE inbox_migrations (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    source_inbox_id INTEGER NOT NULL REFERENCES inboxes(id),
    destination_inbox_id INTEGER NOT NULL REFERENCES inboxes(id),
    user_id INTEGER REFERENCES users(id) ON DELETE SET NULL,
    status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled', 'reverted')),
    phase TEXT NOT NULL DEFAULT 'plan',
    options TEXT NOT NULL DEFAULT '{}',
    conversations_count INTEGER NOT NULL DEFAULT 0,
    conversations_moved INTEGER NOT NULL DEFAULT 0,
    messages_count INTEGER NOT NULL DEFAULT 0,
    messages_moved INTEGER NOT NULL DEFAULT 0,
    attachments_count INTEGER NOT NULL DEFAULT 0,
    attachments_moved INTEGER NOT NULL DEFAULT 0,
    contact_inboxes_count INTEGER NOT NULL DEFAULT 0,
    contact_inboxes_moved INTEGER NOT NULL DEFAULT 0,
    contacts_merged INTEGER NOT NULL DEFAULT 0,
    duplicates INTEGER NOT NULL DEFAULT 0,
    cursor_id INTEGER NOT NULL DEFAULT 0,
    result TEXT,
    error_message TEXT,
    error_detail TEXT,
    lease_owner TEXT,
    lease_token TEXT,
    lease_expires_at TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    cancel_requested BOOLEAN NOT NULL DEFAULT 0,
    started_at TEXT,
    completed_at TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CHECK (source_inbox_id <> destination_inbox_id)
);
CREATE UNIQUE INDEX inbox_migrations_one_active ON inbox_migrations (source_inbox_id) WHERE status IN ('queued', 'running');
CREATE INDEX inbox_migrations_claim ON inbox_migrations (status, lease_expires_at);

-- Every inbox taking part in an active migration, as source or destination: the primary key makes chains
-- (A->B while B->C) and cycles (A->B while B->A) impossible, whatever the application does.
CREATE TABLE inbox_migration_locks (
    inbox_id INTEGER PRIMARY KEY REFERENCES inboxes(id) ON DELETE CASCADE,
    migration_id INTEGER NOT NULL REFERENCES inbox_migrations(id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('source', 'destination'))
);

-- Before-images of every row an inbox migration changed or deleted, for revert.
CREATE TABLE inbox_migration_journal (
    id INTEGER PRIMARY KEY,
    migration_id INTEGER NOT NULL REFERENCES inbox_migrations(id) ON DELETE CASCADE,
    entity TEXT NOT NULL,
    row_id INTEGER NOT NULL,
    action TEXT NOT NULL,
    before TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX inbox_migration_journal_migration ON inbox_migration_journal (migration_id, entity, id);

CREATE TABLE account_imports (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    user_id INTEGER REFERENCES users(id) ON DELETE SET NULL,
    status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
    stage TEXT NOT NULL DEFAULT 'channels' CHECK (stage IN ('channels', 'recent', 'all', 'done')),
    forced BOOLEAN NOT NULL DEFAULT 0,
    channels_count INTEGER NOT NULL DEFAULT 0,
    threads_count INTEGER NOT NULL DEFAULT 0,
    messages_count INTEGER NOT NULL DEFAULT 0,
    attachments_count INTEGER NOT NULL DEFAULT 0,
    attachments_failed INTEGER NOT NULL DEFAULT 0,
    recent_cursor TEXT,
    all_cursor TEXT,
    error_message TEXT,
    error_detail TEXT,
    lease_owner TEXT,
    lease_token TEXT,
    lease_expires_at TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    repair_attempts INTEGER NOT NULL DEFAULT 0,
    next_repair_at TEXT,
    started_at TEXT,
    completed_at TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE UNIQUE INDEX account_imports_one_active ON account_imports (account_id) WHERE status IN ('queued', 'running');
CREATE INDEX account_imports_claim ON account_imports (status, lease_expires_at);

-- Small background jobs (media downloads, repairs) claimed with leases like migrations.
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'completed', 'failed')),
    run_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 8,
    last_error TEXT,
    lease_owner TEXT,
    lease_token TEXT,
    lease_expires_at TEXT,
    dedupe_key TEXT UNIQUE,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX jobs_claim ON jobs (status, run_at);

CREATE TABLE audit_events (
    id INTEGER PRIMARY KEY,
    account_id INTEGER REFERENCES accounts(id) ON DELETE SET NULL,
    user_id INTEGER REFERENCES users(id) ON DELETE SET NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL DEFAULT '',
    details TEXT NOT NULL DEFAULT '{}',
    at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX audit_events_account ON audit_events (account_id, id);

-- The raw body of every webhook request that could not be stored, so nothing a provider sent is lost.
CREATE TABLE webhook_dead_letters (
    id INTEGER PRIMARY KEY,
    provider TEXT NOT NULL,
    route TEXT NOT NULL,
    integration_id INTEGER REFERENCES integrations(id) ON DELETE SET NULL,
    reason TEXT NOT NULL,
    status_code INTEGER NOT NULL,
    headers TEXT NOT NULL DEFAULT '{}',
    body BLOB NOT NULL,
    received_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    replayed_at TEXT
);
CREATE INDEX webhook_dead_letters_received ON webhook_dead_letters (received_at);

-- Installation-wide switches (e.g. whether the legacy by-name webhook route is served).
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- Legacy layout (SPEC 4.4): routing by instance name until the cut-over retires these tables.
CREATE TABLE organization_accounts (
    organization_id TEXT PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name TEXT
);

CREATE TABLE evolution_instances (
    id INTEGER PRIMARY KEY,
    instance_name TEXT NOT NULL UNIQUE,
    organization_id TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'close',
    phone_number TEXT,
    api_url TEXT,
    api_key TEXT,
    webhook_url TEXT,
    owner_jid TEXT,
    profile_name TEXT,
    error_message TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX evolution_instances_org ON evolution_instances (organization_id);

CREATE TABLE whatsapp_business_configs (
    id INTEGER PRIMARY KEY,
    organization_id TEXT NOT NULL,
    provider TEXT NOT NULL DEFAULT 'whatsapp_cloud',
    phone_number_id TEXT NOT NULL UNIQUE,
    phone_number TEXT,
    business_account_id TEXT,
    access_token TEXT,
    app_secret TEXT,
    verify_token TEXT,
    status TEXT NOT NULL DEFAULT 'active',
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX whatsapp_business_configs_org ON whatsapp_business_configs (organization_id);
