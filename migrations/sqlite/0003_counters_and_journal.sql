-- Message and attachment counts per conversation, kept by the database itself (triggers), so that an inbox
-- migration reports what a batch carried, and a preview counts an inbox, without visiting every message.
-- Messages never change conversation in ferry; the UPDATE trigger keeps the counts right if one ever does.
ALTER TABLE conversations ADD COLUMN messages_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conversations ADD COLUMN attachments_count INTEGER NOT NULL DEFAULT 0;

UPDATE conversations SET
    messages_count = (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = conversations.id),
    attachments_count = (SELECT COUNT(*) FROM attachments a JOIN messages m ON m.id = a.message_id
                         WHERE m.conversation_id = conversations.id);

CREATE TRIGGER messages_count_insert AFTER INSERT ON messages BEGIN
    UPDATE conversations SET messages_count = messages_count + 1 WHERE id = NEW.conversation_id;
END;

-- BEFORE: the message's attachments are still there to be counted; when they are then deleted by the cascade,
-- their own trigger no longer finds the message and changes nothing.
CREATE TRIGGER messages_count_delete BEFORE DELETE ON messages BEGIN
    UPDATE conversations SET messages_count = messages_count - 1,
        attachments_count = attachments_count - (SELECT COUNT(*) FROM attachments a WHERE a.message_id = OLD.id)
    WHERE id = OLD.conversation_id;
END;

CREATE TRIGGER messages_count_move AFTER UPDATE OF conversation_id ON messages
WHEN OLD.conversation_id <> NEW.conversation_id BEGIN
    UPDATE conversations SET messages_count = messages_count - 1,
        attachments_count = attachments_count - (SELECT COUNT(*) FROM attachments a WHERE a.message_id = OLD.id)
    WHERE id = OLD.conversation_id;
    UPDATE conversations SET messages_count = messages_count + 1,
        attachments_count = attachments_count + (SELECT COUNT(*) FROM attachments a WHERE a.message_id = NEW.id)
    WHERE id = NEW.conversation_id;
END;

CREATE TRIGGER attachments_count_insert AFTER INSERT ON attachments BEGIN
    UPDATE conversations SET attachments_count = attachments_count + 1
    WHERE id = (SELECT m.conversation_id FROM messages m WHERE m.id = NEW.message_id);
END;

CREATE TRIGGER attachments_count_delete AFTER DELETE ON attachments BEGIN
    UPDATE conversations SET attachments_count = attachments_count - 1
    WHERE id = (SELECT m.conversation_id FROM messages m WHERE m.id = OLD.message_id);
END;

-- A migration batch journals each conversation's new contact and contact_inbox with it, so that the UPDATE of
-- the conversations reads one journal row per conversation.
ALTER TABLE inbox_migration_conversations ADD COLUMN new_contact_id BIGINT;
ALTER TABLE inbox_migration_conversations ADD COLUMN new_contact_inbox_id BIGINT;

-- A message present in both inboxes under one provider id is kept once: the source's copy is dropped by the
-- batch that merges its contact, its row and its attachments' rows kept here for revert.
CREATE TABLE inbox_migration_messages (
    migration_id INTEGER NOT NULL,
    batch INTEGER NOT NULL,
    kept_message_id INTEGER NOT NULL,
    id INTEGER NOT NULL,
    account_id INTEGER NOT NULL,
    conversation_id INTEGER NOT NULL,
    message_type TEXT NOT NULL,
    content TEXT,
    content_type TEXT NOT NULL,
    content_attributes TEXT NOT NULL,
    source_id TEXT,
    dedupe_key TEXT,
    status TEXT NOT NULL,
    starred BOOLEAN NOT NULL,
    private BOOLEAN NOT NULL,
    sender_type TEXT,
    sender_id INTEGER,
    external_id TEXT,
    legacy_message_id TEXT,
    import_id INTEGER,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (migration_id, id)
);
CREATE INDEX inbox_migration_messages_batch ON inbox_migration_messages (migration_id, batch);

CREATE TABLE inbox_migration_attachments (
    migration_id INTEGER NOT NULL,
    batch INTEGER NOT NULL,
    id INTEGER NOT NULL,
    account_id INTEGER NOT NULL,
    message_id INTEGER NOT NULL,
    file_type TEXT NOT NULL,
    content_type TEXT,
    file_name TEXT,
    byte_size INTEGER,
    storage_key TEXT,
    checksum TEXT,
    status TEXT NOT NULL,
    external_url TEXT,
    failure_reason TEXT,
    import_id INTEGER,
    created_at TEXT NOT NULL,
    PRIMARY KEY (migration_id, id)
);
CREATE INDEX inbox_migration_attachments_batch ON inbox_migration_attachments (migration_id, batch);
