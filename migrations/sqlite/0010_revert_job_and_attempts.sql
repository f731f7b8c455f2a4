-- A revert is a leased job of its own (issue 17): its state, its progress and the runs it undoes live on the
-- migration it reverts; the lease columns are shared (a migration and its revert never run at once).
ALTER TABLE inbox_migrations ADD COLUMN revert_state TEXT
    CHECK (revert_state IN ('queued', 'running', 'reverted', 'cancelled', 'failed'));
ALTER TABLE inbox_migrations ADD COLUMN revert_user_id INTEGER REFERENCES users(id) ON DELETE SET NULL;
ALTER TABLE inbox_migrations ADD COLUMN revert_runs TEXT;
ALTER TABLE inbox_migrations ADD COLUMN revert_batches_total INTEGER NOT NULL DEFAULT 0;
ALTER TABLE inbox_migrations ADD COLUMN revert_batches_done INTEGER NOT NULL DEFAULT 0;
ALTER TABLE inbox_migrations ADD COLUMN revert_started_at TEXT;
ALTER TABLE inbox_migrations ADD COLUMN revert_completed_at TEXT;
ALTER TABLE inbox_migrations ADD COLUMN revert_error TEXT;
ALTER TABLE inbox_migrations ADD COLUMN revert_result TEXT;
ALTER TABLE inbox_migrations ADD COLUMN reverted_with INTEGER;
CREATE INDEX inbox_migrations_revert_claim ON inbox_migrations (revert_state, lease_expires_at)
    WHERE revert_state IN ('queued', 'running');

-- Every attempt of a migration or of its revert: a retry or a takeover adds one, none is overwritten.
CREATE TABLE inbox_migration_attempts (
    id INTEGER PRIMARY KEY,
    migration_id INTEGER NOT NULL REFERENCES inbox_migrations(id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('migrate', 'revert')),
    worker TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    outcome TEXT CHECK (outcome IN ('completed', 'failed', 'cancelled', 'released', 'lease_expired', 'reverted')),
    error TEXT,
    batches_at_start INTEGER NOT NULL,
    batches_at_end INTEGER
);
CREATE INDEX inbox_migration_attempts_migration ON inbox_migration_attempts (migration_id, id);
