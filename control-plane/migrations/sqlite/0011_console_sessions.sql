-- Console sign-ins: one row per browser session. The cookie carries a random id; only
-- its SHA-256 is kept here. key_id is the issued key signed in with (NULL for the
-- operator's root key, whose fingerprint root_mark holds so a new root key ends them).
CREATE TABLE console_sessions (
    id_hash TEXT PRIMARY KEY,
    account_id TEXT REFERENCES accounts (id) ON DELETE CASCADE,
    key_id TEXT REFERENCES issued_keys (id) ON DELETE CASCADE,
    root_mark TEXT,
    created_at INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    csrf_token TEXT NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
