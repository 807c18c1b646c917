-- Alert rules an account sets on itself or a descendant (account_id NULL: the
-- operator's own rules), each with a webhook and its signing secret, sealed under
-- the keyring like provider secrets (the rule's id is the associated data).
CREATE TABLE alert_rules (
    id TEXT PRIMARY KEY,
    account_id TEXT REFERENCES accounts (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    thresholds TEXT NOT NULL,
    url TEXT NOT NULL,
    secret_key_id TEXT NOT NULL,
    secret_blob BLOB NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX alert_rules_account ON alert_rules (account_id, created_at);

-- One row per crossing: a rule fires once per period, threshold and subject (a
-- provider key, a data plane; '' for the account itself), whichever replica looks.
CREATE TABLE alert_firings (
    id TEXT PRIMARY KEY,
    rule_id TEXT NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
    period TEXT NOT NULL,
    threshold INTEGER NOT NULL,
    subject TEXT NOT NULL,
    value INTEGER NOT NULL,
    at INTEGER NOT NULL,
    UNIQUE (rule_id, period, threshold, subject)
);

-- Webhook deliveries (a firing's, or a test's with firing_id NULL): the body sent on
-- every attempt, the last attempt's answer, and when the next one is due.
CREATE TABLE alert_deliveries (
    id TEXT PRIMARY KEY,
    rule_id TEXT NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
    firing_id TEXT REFERENCES alert_firings (id) ON DELETE CASCADE,
    body TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    status_code INTEGER,
    error TEXT,
    next_attempt_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX alert_deliveries_due ON alert_deliveries (state, next_attempt_at);
CREATE INDEX alert_deliveries_rule ON alert_deliveries (rule_id, created_at);
