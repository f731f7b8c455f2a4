-- One row that /readyz rewrites: readiness means a write commits, not only that a read answers.
CREATE TABLE write_probe (
    id INTEGER PRIMARY KEY,
    checked_at TEXT NOT NULL
);
