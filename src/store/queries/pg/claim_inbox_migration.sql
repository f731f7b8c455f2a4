-- Claim the oldest queued migration, or a running one whose worker's lease expired. SKIP LOCKED lets any number
-- of workers claim concurrently without waiting on, or taking, the same row.
UPDATE inbox_migrations
SET status = 'running', lease_owner = $1, lease_token = $2, lease_expires_at = $3, attempts = attempts + 1,
    started_at = COALESCE(started_at, $4), updated_at = $4
WHERE id = (
    SELECT id FROM inbox_migrations
    WHERE status = 'queued' OR (status = 'running' AND lease_expires_at < $4)
    ORDER BY id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
RETURNING id
