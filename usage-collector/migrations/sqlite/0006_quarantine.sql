-- Usage events the collector could not store as they came, set aside with the reason:
-- a bad event neither blocks the good ones of its batch nor is lost unseen. Keyed by
-- the event id as sent and the reason, so a replayed batch adds nothing.
CREATE TABLE usage_quarantine (
    event_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    received_ms BIGINT NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (event_id, reason)
);
CREATE INDEX usage_quarantine_received ON usage_quarantine (received_ms);
