-- A second identity of the same person in an inbox: Meta's business-scoped user id (BSUID) of a user who also
-- shares their number. A later message naming only the BSUID finds the contact (and conversation) this way.
ALTER TABLE contact_inboxes ADD COLUMN wa_alias TEXT;
CREATE UNIQUE INDEX contact_inboxes_alias ON contact_inboxes (inbox_id, wa_alias) WHERE wa_alias IS NOT NULL;
-- An inbox migration journals it, so that a revert gives it back.
ALTER TABLE inbox_migration_contact_inboxes ADD COLUMN wa_alias TEXT;

-- How big a refused request was (a body over the webhook limit is not kept, its size is).
ALTER TABLE webhook_dead_letters ADD COLUMN body_bytes BIGINT;
