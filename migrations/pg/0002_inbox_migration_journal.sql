-- Capability A: the match key and the typed journal an inbox migration writes in the same transaction as each
-- batch, so a revert can restore every row exactly. Keep in step with ../sqlite/0002_inbox_migration_journal.sql.

-- The canonical identity with the Brazilian ninth digit folded (55 DD 9NNNN NNNN -> 55 DD NNNN NNNN), so that
-- matching under `merge_brazil_ninth_digit` is an indexed equality.
ALTER TABLE contact_inboxes ADD COLUMN wa_key TEXT;
UPDATE contact_inboxes SET wa_key = CASE
    WHEN char_length(wa_identity) = 13 AND substr(wa_identity, 1, 2) = '55' AND substr(wa_identity, 3, 1) <> '0'
         AND substr(wa_identity, 4, 1) <> '0' AND substr(wa_identity, 5, 1) = '9'
         AND substr(wa_identity, 6, 1) IN ('6', '7', '8', '9')
    THEN substr(wa_identity, 1, 4) || substr(wa_identity, 6)
    ELSE wa_identity END
WHERE wa_identity IS NOT NULL;
CREATE INDEX contact_inboxes_key ON contact_inboxes (inbox_id, wa_key);
-- Batches take the lowest ids of the source inbox.
CREATE INDEX contact_inboxes_inbox ON contact_inboxes (inbox_id, id);

-- Every source contact_inbox a migration handled: what it was, and whether it moved or merged.
CREATE TABLE inbox_migration_contact_inboxes (
    migration_id BIGINT NOT NULL REFERENCES inbox_migrations(id) ON DELETE CASCADE,
    contact_inbox_id BIGINT NOT NULL,
    batch BIGINT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('move', 'merge')),
    contact_id BIGINT NOT NULL,
    source_id TEXT NOT NULL,
    wa_identity TEXT,
    wa_key TEXT,
    import_id BIGINT,
    created_at TIMESTAMPTZ NOT NULL,
    new_source_id TEXT NOT NULL,
    destination_contact_inbox_id BIGINT,
    destination_contact_id BIGINT,
    PRIMARY KEY (migration_id, contact_inbox_id)
);
CREATE INDEX inbox_migration_contact_inboxes_batch ON inbox_migration_contact_inboxes (migration_id, batch);

-- Every conversation a migration moved, with its references before.
CREATE TABLE inbox_migration_conversations (
    migration_id BIGINT NOT NULL REFERENCES inbox_migrations(id) ON DELETE CASCADE,
    conversation_id BIGINT NOT NULL,
    batch BIGINT NOT NULL,
    inbox_id BIGINT NOT NULL,
    contact_id BIGINT NOT NULL,
    contact_inbox_id BIGINT,
    PRIMARY KEY (migration_id, conversation_id)
);
CREATE INDEX inbox_migration_conversations_batch ON inbox_migration_conversations (migration_id, batch);

-- Before-images of contacts a merge changed (role destination) or may delete (role source).
CREATE TABLE inbox_migration_contacts (
    migration_id BIGINT NOT NULL REFERENCES inbox_migrations(id) ON DELETE CASCADE,
    contact_id BIGINT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('destination', 'source')),
    account_id BIGINT NOT NULL,
    name TEXT,
    phone_number TEXT,
    email TEXT,
    identifier TEXT,
    custom_attributes JSONB NOT NULL,
    import_id BIGINT,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    deleted BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (migration_id, contact_id)
);

CREATE TABLE inbox_migration_notes (
    migration_id BIGINT NOT NULL REFERENCES inbox_migrations(id) ON DELETE CASCADE,
    note_id BIGINT NOT NULL,
    contact_id BIGINT NOT NULL,
    PRIMARY KEY (migration_id, note_id)
);

CREATE TABLE inbox_migration_labels (
    migration_id BIGINT NOT NULL REFERENCES inbox_migrations(id) ON DELETE CASCADE,
    contact_id BIGINT NOT NULL,
    label TEXT NOT NULL,
    label_id BIGINT,
    change TEXT NOT NULL CHECK (change IN ('added', 'deleted')),
    PRIMARY KEY (migration_id, contact_id, label, change)
);

CREATE TABLE inbox_migration_members (
    migration_id BIGINT NOT NULL REFERENCES inbox_migrations(id) ON DELETE CASCADE,
    inbox_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    PRIMARY KEY (migration_id, inbox_id, user_id)
);
