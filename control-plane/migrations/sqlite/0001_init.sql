-- One row: the configuration revision. Every write bumps it in the same
-- transaction; it is the version of the snapshot compiled from that state.
CREATE TABLE config_revision (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL
);
INSERT INTO config_revision (id, revision) VALUES (1, 1);

CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    parent_id TEXT REFERENCES accounts (id),
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX accounts_parent ON accounts (parent_id);

CREATE TABLE issued_keys (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    hash TEXT NOT NULL UNIQUE,
    tail TEXT NOT NULL,
    status TEXT NOT NULL,
    expires_at INTEGER,
    created_at INTEGER NOT NULL
);
CREATE INDEX issued_keys_account ON issued_keys (account_id);

CREATE TABLE provider_keys (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL REFERENCES accounts (id),
    kind TEXT NOT NULL,
    base_url TEXT NOT NULL,
    secret_key_id TEXT NOT NULL,
    secret_blob BLOB NOT NULL,
    secret_hint TEXT NOT NULL,
    level INTEGER NOT NULL,
    models TEXT NOT NULL,
    weight INTEGER NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX provider_keys_owner ON provider_keys (owner_id);
