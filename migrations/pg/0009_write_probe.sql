-- One row per node that /readyz rewrites: readiness means a write commits, not only that a read answers.
CREATE TABLE write_probe (
    id BIGINT PRIMARY KEY,
    checked_at TIMESTAMPTZ NOT NULL
);
