-- Message and attachment counts per conversation, kept by the database itself (triggers), so that an inbox
-- migration reports what a batch carried, and a preview counts an inbox, without visiting every message.
-- Inserts and deletes are counted per statement from transition tables (one UPDATE per statement, not per row);
-- messages never change conversation in ferry, the row trigger on UPDATE keeps the counts right if one ever does.
ALTER TABLE conversations ADD COLUMN messages_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE conversations ADD COLUMN attachments_count BIGINT NOT NULL DEFAULT 0;

UPDATE conversations c SET messages_count = n.count
FROM (SELECT conversation_id, COUNT(*) AS count FROM messages GROUP BY conversation_id) n
WHERE c.id = n.conversation_id;
UPDATE conversations c SET attachments_count = n.count
FROM (SELECT m.conversation_id, COUNT(*) AS count FROM attachments a JOIN messages m ON m.id = a.message_id
      GROUP BY m.conversation_id) n
WHERE c.id = n.conversation_id;

CREATE FUNCTION ferry_messages_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE conversations c SET messages_count = c.messages_count + n.count
    FROM (SELECT conversation_id, COUNT(*) AS count FROM new_rows GROUP BY conversation_id) n
    WHERE c.id = n.conversation_id;
    RETURN NULL;
END $$;
CREATE TRIGGER messages_count_insert AFTER INSERT ON messages REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ferry_messages_inserted();

CREATE FUNCTION ferry_messages_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE conversations c SET messages_count = c.messages_count - n.count
    FROM (SELECT conversation_id, COUNT(*) AS count FROM old_rows GROUP BY conversation_id) n
    WHERE c.id = n.conversation_id;
    RETURN NULL;
END $$;
CREATE TRIGGER messages_count_delete AFTER DELETE ON messages REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ferry_messages_deleted();

-- BEFORE each deleted message: its attachments are still there to be counted; when the cascade then deletes
-- them, their own trigger no longer finds the message and changes nothing.
CREATE FUNCTION ferry_message_attachments_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE conversations SET attachments_count = attachments_count
        - (SELECT COUNT(*) FROM attachments a WHERE a.message_id = OLD.id)
    WHERE id = OLD.conversation_id AND EXISTS (SELECT 1 FROM attachments a WHERE a.message_id = OLD.id);
    RETURN OLD;
END $$;
CREATE TRIGGER messages_attachments_count_delete BEFORE DELETE ON messages
    FOR EACH ROW EXECUTE FUNCTION ferry_message_attachments_deleted();

CREATE FUNCTION ferry_message_moved() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    files BIGINT := (SELECT COUNT(*) FROM attachments a WHERE a.message_id = NEW.id);
BEGIN
    UPDATE conversations SET messages_count = messages_count - 1, attachments_count = attachments_count - files
    WHERE id = OLD.conversation_id;
    UPDATE conversations SET messages_count = messages_count + 1, attachments_count = attachments_count + files
    WHERE id = NEW.conversation_id;
    RETURN NULL;
END $$;
CREATE TRIGGER messages_count_move AFTER UPDATE OF conversation_id ON messages
    FOR EACH ROW WHEN (OLD.conversation_id <> NEW.conversation_id) EXECUTE FUNCTION ferry_message_moved();

CREATE FUNCTION ferry_attachments_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE conversations c SET attachments_count = c.attachments_count + n.count
    FROM (SELECT m.conversation_id, COUNT(*) AS count FROM new_rows a JOIN messages m ON m.id = a.message_id
          GROUP BY m.conversation_id) n
    WHERE c.id = n.conversation_id;
    RETURN NULL;
END $$;
CREATE TRIGGER attachments_count_insert AFTER INSERT ON attachments REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ferry_attachments_inserted();

CREATE FUNCTION ferry_attachments_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE conversations c SET attachments_count = c.attachments_count - n.count
    FROM (SELECT m.conversation_id, COUNT(*) AS count FROM old_rows a JOIN messages m ON m.id = a.message_id
          GROUP BY m.conversation_id) n
    WHERE c.id = n.conversation_id;
    RETURN NULL;
END $$;
CREATE TRIGGER attachments_count_delete AFTER DELETE ON attachments REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ferry_attachments_deleted();

-- A migration batch journals each conversation's new contact and contact_inbox with it, so that the UPDATE of
-- the conversations reads one journal row per conversation.
ALTER TABLE inbox_migration_conversations ADD COLUMN new_contact_id BIGINT;
ALTER TABLE inbox_migration_conversations ADD COLUMN new_contact_inbox_id BIGINT;

-- Journal rows are written by a batch in the transaction whose progress UPDATE of the same inbox_migrations row
-- is guarded by the lease, and migrations are never deleted (they are kept for audit): the per-row foreign-key
-- check on every journal row cost about a tenth of a migration's time and protected nothing.
ALTER TABLE inbox_migration_contact_inboxes DROP CONSTRAINT inbox_migration_contact_inboxes_migration_id_fkey;
ALTER TABLE inbox_migration_conversations DROP CONSTRAINT inbox_migration_conversations_migration_id_fkey;
ALTER TABLE inbox_migration_contacts DROP CONSTRAINT inbox_migration_contacts_migration_id_fkey;
ALTER TABLE inbox_migration_notes DROP CONSTRAINT inbox_migration_notes_migration_id_fkey;
ALTER TABLE inbox_migration_labels DROP CONSTRAINT inbox_migration_labels_migration_id_fkey;
ALTER TABLE inbox_migration_members DROP CONSTRAINT inbox_migration_members_migration_id_fkey;

-- A message present in both inboxes under one provider id is kept once: the source's copy is dropped by the
-- batch that merges its contact, its row and its attachments' rows kept here for revert.
CREATE TABLE inbox_migration_messages (
    migration_id BIGINT NOT NULL,
    batch BIGINT NOT NULL,
    kept_message_id BIGINT NOT NULL,
    id BIGINT NOT NULL,
    account_id BIGINT NOT NULL,
    conversation_id BIGINT NOT NULL,
    message_type TEXT NOT NULL,
    content TEXT,
    content_type TEXT NOT NULL,
    content_attributes JSONB NOT NULL,
    source_id TEXT,
    dedupe_key TEXT,
    status TEXT NOT NULL,
    starred BOOLEAN NOT NULL,
    private BOOLEAN NOT NULL,
    sender_type TEXT,
    sender_id BIGINT,
    external_id TEXT,
    legacy_message_id TEXT,
    import_id BIGINT,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (migration_id, id)
);
CREATE INDEX inbox_migration_messages_batch ON inbox_migration_messages (migration_id, batch);

CREATE TABLE inbox_migration_attachments (
    migration_id BIGINT NOT NULL,
    batch BIGINT NOT NULL,
    id BIGINT NOT NULL,
    account_id BIGINT NOT NULL,
    message_id BIGINT NOT NULL,
    file_type TEXT NOT NULL,
    content_type TEXT,
    file_name TEXT,
    byte_size BIGINT,
    storage_key TEXT,
    checksum TEXT,
    status TEXT NOT NULL,
    external_url TEXT,
    failure_reason TEXT,
    import_id BIGINT,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (migration_id, id)
);
CREATE INDEX inbox_migration_attachments_batch ON inbox_migration_attachments (migration_id, batch);
