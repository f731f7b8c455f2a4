-- Claim the oldest queued migration, or a running one whose worker's lease expired. SQLite runs one writer at a
-- time, so the single statement is atomic (and it runs inside BEGIN IMMEDIATE).
UPDATE inbox_migrations
SET status = 'running', lease_owner = $1, lease_token = $2, lease_expires_at = $3, attempts = attempts + 1,
    started_at = COALESCE(started_at, $4), updated_at = $4
WHERE id = (
    SELECT id FROM inbox_migrations
    WHERE status = 'queued' OR (status = 'running' AND lease_expires_at < $4)
    ORDER BY id
    LIMIT 1
)
RETURNING id
