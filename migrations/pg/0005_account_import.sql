-- Capability C (SPEC 5): when each stage of an account import finished (the client's timeline and the
-- benchmark read them), and indexes that let a forced re-migration find exactly the rows imports created
-- (messages through their account's conversations: an index on messages.import_id would slow every import).
ALTER TABLE account_imports ADD COLUMN channels_migrated_at TIMESTAMPTZ;
ALTER TABLE account_imports ADD COLUMN recent_migrated_at TIMESTAMPTZ;
-- Threads and messages the recent stage had imported when it finished: the timeline's counts per stage.
ALTER TABLE account_imports ADD COLUMN recent_threads_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE account_imports ADD COLUMN recent_messages_count BIGINT NOT NULL DEFAULT 0;
-- The stage that failed last, kept after a resumed stage succeeds (for the administrators' view).
ALTER TABLE account_imports ADD COLUMN failed_stage TEXT;

CREATE INDEX account_imports_account ON account_imports (account_id, id);
CREATE INDEX attachments_import ON attachments (import_id, status) WHERE import_id IS NOT NULL;
CREATE INDEX conversations_import ON conversations (import_id) WHERE import_id IS NOT NULL;
CREATE INDEX contacts_import ON contacts (import_id) WHERE import_id IS NOT NULL;
CREATE INDEX contact_inboxes_import ON contact_inboxes (import_id) WHERE import_id IS NOT NULL;
CREATE INDEX inboxes_import ON inboxes (import_id) WHERE import_id IS NOT NULL;
-- Imports find a customer's contact across the account's inboxes by identity key.
CREATE INDEX contact_inboxes_wa_key ON contact_inboxes (wa_key);
-- Messages are looked up by provider message id only when they have one: imported (and other id-less)
-- messages stay out of the index, which makes bulk imports cheaper.
DROP INDEX messages_source;
CREATE INDEX messages_source ON messages (account_id, source_id) WHERE source_id IS NOT NULL;
-- A conversation's messages are listed by when they were sent: an import writes the recent ones first.
CREATE INDEX messages_conversation_time ON messages (conversation_id, created_at, id);
