-- Raw events of listed accounts (a subtree the control plane knows), newest first:
-- the logs of one account read its own rows instead of walking every event by time.
CREATE INDEX usage_events_account_at ON usage_events (account_id, at_ms);
