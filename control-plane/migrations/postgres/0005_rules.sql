-- The rules of a main account (/x-conf) as one JSON document. The version makes
-- concurrent edits compare-and-set: a stale write is refused, never merged blindly.
CREATE TABLE rules (
    owner_id TEXT PRIMARY KEY REFERENCES accounts (id),
    doc TEXT NOT NULL,
    version BIGINT NOT NULL
);
