-- Who changed what and when, written in the transaction of the change. Secrets never
-- reach it: before/after hold the same redacted views the API returns.
CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    owner_id TEXT,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    before_state TEXT,
    after_state TEXT
);
CREATE INDEX audit_log_owner ON audit_log (owner_id, seq);
