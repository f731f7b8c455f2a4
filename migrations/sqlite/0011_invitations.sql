-- Invitations of people who have no ferry user yet, to one account with a role (an existing user is added at
-- once and needs none). The link carries a random token; only its SHA-256 is stored. At most one pending
-- invitation per account and email: inviting again replaces the link.
CREATE TABLE invitations (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('administrator', 'agent')),
    token_hash BLOB NOT NULL UNIQUE,
    invited_by INTEGER REFERENCES users(id) ON DELETE SET NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    accepted_at TEXT,
    accepted_user_id INTEGER REFERENCES users(id) ON DELETE SET NULL
);
CREATE UNIQUE INDEX invitations_pending ON invitations (account_id, email) WHERE accepted_at IS NULL;
