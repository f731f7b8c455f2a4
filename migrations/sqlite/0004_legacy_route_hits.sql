-- Hits of the legacy by-instance-name webhook route, per instance and UTC day (SPEC 4.4): the cut-over's check
-- reports traffic of the last N days and cleanup refuses while the quiet window saw any. Kept apart from the
-- legacy tables, which cleanup drops.
CREATE TABLE legacy_route_hits (
    instance_name TEXT NOT NULL,
    day TEXT NOT NULL,
    hits INTEGER NOT NULL DEFAULT 0,
    last_hit_at TEXT NOT NULL,
    PRIMARY KEY (instance_name, day)
);

-- Completed inbox migrations looked up by source when routing webhooks (redirect_source).
CREATE INDEX inbox_migrations_completed_source ON inbox_migrations (source_inbox_id, completed_at)
    WHERE status = 'completed';
