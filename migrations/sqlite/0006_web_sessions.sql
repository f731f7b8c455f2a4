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

-- Failed sign-ins per email address: repeated failures are throttled on every node alike.
CREATE TABLE web_login_failures (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL,
    failed_at TEXT NOT NULL
);
CREATE INDEX web_login_failures_email ON web_login_failures (email, failed_at);
