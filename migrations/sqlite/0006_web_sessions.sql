-- Browser sessions of the web UI (SPEC 6.2). The cookie carries a random token; only its SHA-256 is stored, so a
-- copy of the database opens no session. Each session has its own CSRF token, checked on every form post.
CREATE TABLE web_sessions (
    token_hash BLOB PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX web_sessions_user ON web_sessions (user_id);
CREATE INDEX web_sessions_expires ON web_sessions (expires_at);

-- Failed sign-ins per email address in the current window: one row per email, counted by an atomic upsert, so
-- parallel guesses are all counted on every node alike.
CREATE TABLE web_login_failures (
    email TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    window_started_at TEXT NOT NULL
);
CREATE INDEX web_login_failures_window ON web_login_failures (window_started_at);
